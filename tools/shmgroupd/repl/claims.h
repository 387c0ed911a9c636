/* SPDX-License-Identifier: MIT */
/*
 * Registry conflicts between owners (docs/PROTOCOL.md section 15).
 *
 * A registry key is unique per owner node, but two nodes can register the
 * same (cluster, key) while they cannot hear each other, or at the same
 * moment.  A store keeps every owner's claim and shows one: the winner of the
 * claims it holds under repl_claim_cmp.  The visible claim lives in the
 * store proper (the arena); the others wait in a hidden-claims table
 * (struct repl_claims) until the visible one goes, when the best of them
 * becomes visible.  Because the visible claim is always the rule's winner
 * among the claims held, and the rule is a total order that does not depend
 * on who asks, every node ends with the same winner whatever order the
 * claims arrived in.  Only the loser's owner acts on a loss: it removes its
 * own claim, and that removal replicates like any other change.
 *
 * No I/O, no clock, no allocation beyond the table's own copies; one thread
 * at a time per table.
 */
#ifndef REPL_CLAIMS_H
#define REPL_CLAIMS_H

#include <stddef.h>
#include <stdint.h>

#include "repl.h"

/* A user's rule: 0 when a wins, any other value when b wins.  It is called
 * with the two claims in canonical order (a has the smaller endpoint
 * identity), so it gives the same answer on every node even when it is not
 * symmetric; it must be deterministic (a function of the two claims only)
 * and fast: the store's apply waits for it. */
typedef int (*repl_resolver_fn)(const struct repl_record *a, const struct repl_record *b,
				void *arg);

/* The total order on endpoint identity: (node, ep_slot, ep_gen).  Two
 * claims of one key held at once are of different owners (a node's registry
 * is unique per key) and of one incarnation each (a new incarnation is
 * purged first), so the incarnation is never needed to tell them apart. */
int repl_claim_identity_cmp(const struct repl_record *a, const struct repl_record *b);

/* > 0 when claim a wins over claim b, < 0 when b wins, 0 when they are the
 * same endpoint's.  Without a resolver: the larger time_ns wins (the later
 * registration), and on equal times the larger identity.  With one, it
 * decides between the two, called in canonical order. */
int repl_claim_cmp(const struct repl_record *a, const struct repl_record *b,
		   repl_resolver_fn resolver, void *arg);

/* The claims of one store that lost to the visible one, at most one per
 * owner node per (cluster, key).  Each is a private copy. */
struct repl_claims;

/* 0 and *out, -ENOMEM. */
int repl_claims_new(struct repl_claims **out);
void repl_claims_free(struct repl_claims *t);

/* r into *out with its cluster, key and metadata copied into the returned
 * buffer (out's pointers point there), the caller's to free; NULL if out of
 * memory. */
char *repl_record_copy(const struct repl_record *r, struct repl_record *out);

/* Keeps r as r->node's hidden claim of (r->cluster, r->key), replacing the
 * one it had; `shard` is the key's, for repl_claims_drop_shard.  0, -ENOMEM
 * (the table is unchanged). */
int repl_claims_hide(struct repl_claims *t, const struct repl_record *r, uint16_t shard);

/* node's hidden claim of (cluster, key), or NULL.  The pointer is valid
 * until the table next changes. */
const struct repl_record *repl_claims_find(const struct repl_claims *t, uint32_t node,
					   const char *cluster, size_t cluster_len,
					   const char *key, size_t key_len);

/* The best hidden claim of (cluster, key) under the rule, or NULL; valid
 * until the table next changes. */
const struct repl_record *repl_claims_best(const struct repl_claims *t, const char *cluster,
					   size_t cluster_len, const char *key, size_t key_len,
					   repl_resolver_fn resolver, void *arg);

/* Removes node's hidden claim of (cluster, key): 1, or 0 if it had none. */
int repl_claims_drop(struct repl_claims *t, uint32_t node, const char *cluster,
		     size_t cluster_len, const char *key, size_t key_len);

/* Removes every hidden claim of `node` (a purge), or only those of one
 * named cluster when cluster is not NULL (a cluster disconnect; node 0:
 * every node's).  Returns how many went. */
size_t repl_claims_drop_node(struct repl_claims *t, uint32_t node, const char *cluster,
			     size_t cluster_len);

/* Removes node's hidden claims of keys of `shard` (before a resync of it,
 * which brings back the ones the node still holds).  Returns how many. */
size_t repl_claims_drop_shard(struct repl_claims *t, uint32_t node, uint16_t shard);

/* How many hidden claims the table holds, and the i-th (i < count; for
 * iteration, valid until the table next changes). */
size_t repl_claims_count(const struct repl_claims *t);
const struct repl_record *repl_claims_at(const struct repl_claims *t, size_t i);
/* The shard given with the i-th claim. */
uint16_t repl_claims_shard_at(const struct repl_claims *t, size_t i);

#endif
