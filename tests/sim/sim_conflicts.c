/* SPDX-License-Identifier: MIT */
/*
 * The simulated store's registry over the claims it holds, as the agent's
 * store keeps it over the arena (tools/shmgroupd/store.c, docs/PROTOCOL.md
 * section 15): per (cluster, key) one visible claim, the winner under
 * repl_claim_cmp of the claims held, and the others hidden (claims.h).
 *
 * A remote claim that beats the visible one: a remote visible claim is
 * hidden; a local one is the loser's owner's to act on, so this node
 * evicts its endpoint (all of its entries go with reason conflict, as a
 * death), and the removal of the local claim promotes the best hidden claim,
 * which is the winner.  A remote claim that loses is hidden.  When the
 * visible claim goes, the best hidden one becomes visible.
 *
 * Some seeds decide with a user resolver that is deterministic but not
 * symmetric (on equal metadata lengths the first argument wins), so only the
 * canonical order of repl_claim_cmp makes every node agree on ties.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

/* The shorter metadata, counted in 16-byte units, wins; on equal lengths
 * (frequent) the first argument. */
int sim_claims_resolver(const struct repl_record *a, const struct repl_record *b, void *arg)
{
	(void)arg;
	return a->meta_len / 16 <= b->meta_len / 16 ? 0 : 1;
}

static repl_resolver_fn resolver_of(const struct sim *s)
{
	return s->p.resolver ? sim_claims_resolver : NULL;
}

int sim_same_key(const struct sim_rec *a, const struct sim_rec *b)
{
	return a->key_len == b->key_len && !memcmp(a->key, b->key, a->key_len) &&
	       a->cluster_len == b->cluster_len && !memcmp(a->cluster, b->cluster, a->cluster_len);
}

static int visible_find(const struct sim_node *n, const struct sim_rec *r)
{
	for (uint32_t i = 0; i < n->visible.n; i++)
		if (sim_same_key(&n->visible.e[i], r))
			return (int)i;
	return -1;
}

static void set_meta(struct sim_rec *dst, const struct sim_rec *src)
{
	uint8_t *meta = NULL;
	if (src->meta_len) {
		meta = malloc(src->meta_len);
		if (!meta)
			abort();
		memcpy(meta, src->meta, src->meta_len);
	}
	free(dst->meta);
	*dst = *src;
	dst->meta = meta;
	dst->seq = 0;
	dst->reason = 0;
	dst->op = REPL_OP_REGISTER;
}

static void visible_put(struct sim_node *n, int at, const struct sim_rec *r)
{
	if (at < 0) {
		struct sim_slice *v = &n->visible;
		if (v->n == v->cap) {
			v->cap = v->cap ? v->cap * 2 : 16;
			v->e = realloc(v->e, v->cap * sizeof(*v->e));
			if (!v->e)
				abort();
		}
		at = (int)v->n++;
		v->e[at].meta = NULL;
		n->registry_count++;
	}
	set_meta(&n->visible.e[at], r);
}

static void visible_remove(struct sim_node *n, int at)
{
	free(n->visible.e[at].meta);
	n->visible.e[at] = n->visible.e[--n->visible.n];
	n->registry_count--;
}

void sim_rec_from_claim(const struct sim *s, const struct repl_record *in, struct sim_rec *out)
{
	memset(out, 0, sizeof(*out));
	out->op = REPL_OP_REGISTER;
	out->node = in->node;
	out->ep_slot = in->ep_slot;
	out->ep_gen = in->ep_gen;
	out->pid = in->pid;
	out->time_ns = in->time_ns;
	out->cluster_len = in->cluster_len;
	out->key_len = (uint8_t)in->key_len;
	memcpy(out->cluster, in->cluster, in->cluster_len);
	memcpy(out->key, in->key, in->key_len);
	out->meta_len = in->meta_len;
	out->meta = (uint8_t *)in->meta;
	out->shard = sim_shard_of(s, out->cluster, out->cluster_len, out->key, out->key_len);
}

static void hide(struct sim *s, struct sim_node *n, const struct sim_rec *r)
{
	struct repl_record rr;
	sim_rec_to_repl(r, &rr);
	rr.op = REPL_OP_REGISTER;
	rr.seq = 0;
	rr.reason = 0;
	if (repl_claims_hide(n->hidden, &rr, r->shard) < 0)
		sim_fail(s, "n%u: out of memory hiding a claim", n->id);
}

/* The visible claim at `at` went: the best hidden claim of its key, if any,
 * takes its place. */
static void promote(struct sim *s, struct sim_node *n, const struct sim_rec *key)
{
	const struct repl_record *best = repl_claims_best(
		n->hidden, key->cluster, key->cluster_len, key->key, key->key_len, resolver_of(s), NULL);
#ifdef SIM_MUTANT_NO_PROMOTE
	/* Mutant: the hidden claims stay hidden when the visible one goes. */
	best = NULL;
#endif
	if (!best)
		return;
	struct sim_rec r;
	sim_rec_from_claim(s, best, &r);
	visible_put(n, -1, &r); /* copies meta before the drop frees it */
#ifdef SIM_MUTANT_PROMOTE_UNCOUNTED
	n->registry_count--; /* Mutant: a promotion is not counted. */
#endif
	repl_claims_drop(n->hidden, r.node, r.cluster, r.cluster_len, r.key, r.key_len);
}

static int wins(const struct sim *s, const struct sim_rec *a, const struct sim_rec *b)
{
	struct repl_record ra, rb;
	sim_rec_to_repl(a, &ra);
	sim_rec_to_repl(b, &rb);
	return repl_claim_cmp(&ra, &rb, resolver_of(s), NULL) > 0;
}

int sim_same_claim(const struct sim_rec *a, const struct sim_rec *b)
{
	return a->node == b->node && a->ep_slot == b->ep_slot && a->ep_gen == b->ep_gen &&
	       a->time_ns == b->time_ns && sim_same_key(a, b) && a->meta_len == b->meta_len &&
	       (!a->meta_len || !memcmp(a->meta, b->meta, a->meta_len));
}

/* The local claim at `at` lost to r: its owner (this node) terminates the
 * endpoint; the removal of its claim promotes the winner, hidden first. */
static void evict_local(struct sim *s, struct sim_node *n, int at, const struct sim_rec *r)
{
	struct sim_rec loser = n->visible.e[at];
	s->conflicts++;
	sim_invariants_eviction(s, n->id, &loser, r);
	if (s->verbose)
		printf("%10.3f ms  n%u: n%u.%u.%u loses '%.*s' to n%u.%u.%u: evicted\n",
		       s->now / 1000.0, n->id, n->id, loser.ep_slot, loser.ep_gen,
		       (int)loser.key_len, loser.key, r->node, r->ep_slot, r->ep_gen);
	sim_endpoint_exit(s, n->id, loser.ep_slot - 1, REPL_REASON_CONFLICT);
}

/* r (a REGISTER, any owner's) arrives as a claim not held yet. */
static void claim_arrives(struct sim *s, struct sim_node *n, const struct sim_rec *r)
{
	int at = visible_find(n, r);
	if (at < 0) {
		visible_put(n, -1, r);
		return;
	}
	struct sim_rec *v = &n->visible.e[at];
	if (!wins(s, r, v)) {
		hide(s, n, r);
		return;
	}
	hide(s, n, r);
	if (v->node == n->id) {
#ifndef SIM_MUTANT_NO_EVICT
		evict_local(s, n, at, r);
#endif
		return;
	}
	struct sim_rec key = *v;
	hide(s, n, v);
	visible_remove(n, at);
	promote(s, n, &key);
}

static void claim_put(struct sim *s, struct sim_node *n, const struct sim_rec *r)
{
	int at = visible_find(n, r);
	if (at >= 0 && n->visible.e[at].node == r->node) {
		struct sim_rec *v = &n->visible.e[at];
		if (sim_same_claim(v, r))
			return;
		/* The visible owner's update: in place, then against the hidden. */
#ifdef SIM_MUTANT_STALE_META
		if (v->ep_slot == r->ep_slot && v->ep_gen == r->ep_gen && r->node != n->id)
			return; /* Mutant: a remote owner's update of its visible claim is lost. */
#endif
		visible_put(n, at, r);
		const struct repl_record *best =
			repl_claims_best(n->hidden, r->cluster, r->cluster_len, r->key,
					 r->key_len, resolver_of(s), NULL);
		struct sim_rec h;
		if (!best)
			return;
		sim_rec_from_claim(s, best, &h);
		if (!wins(s, &h, &n->visible.e[at]))
			return;
		if (r->node == n->id) {
			evict_local(s, n, at, &h);
			return;
		}
		struct sim_rec key = n->visible.e[at];
		hide(s, n, &key);
		visible_remove(n, at);
		promote(s, n, &key);
		return;
	}
	/* Not visible: a hidden claim of the owner is replaced by this one. */
	repl_claims_drop(n->hidden, r->node, r->cluster, r->cluster_len, r->key, r->key_len);
	claim_arrives(s, n, r);
}

static void claim_gone(struct sim *s, struct sim_node *n, const struct sim_rec *r)
{
	int at = visible_find(n, r);
	if (at >= 0 && n->visible.e[at].node == r->node) {
		struct sim_rec key = n->visible.e[at];
		visible_remove(n, at);
		promote(s, n, &key);
		return;
	}
#ifndef SIM_MUTANT_GONE_KEEPS_HIDDEN
	/* (Mutant: the owner's removal of a hidden claim is ignored.) */
	repl_claims_drop(n->hidden, r->node, r->cluster, r->cluster_len, r->key, r->key_len);
#endif
}

static struct sim_node *store_of(struct sim *s, uint32_t id)
{
	struct sim_node *n = &s->node[id];
	if (!n->hidden && repl_claims_new(&n->hidden) < 0)
		abort();
	return n;
}

void sim_claims_change(struct sim *s, uint32_t id, const struct sim_rec *r)
{
	struct sim_node *n = store_of(s, id);
	if (r->op == REPL_OP_REGISTER)
		claim_put(s, n, r);
	else
		claim_gone(s, n, r);
}

void sim_claims_purge(struct sim *s, uint32_t id, uint32_t owner)
{
	struct sim_node *n = store_of(s, id);
	repl_claims_drop_node(n->hidden, owner, NULL, 0);
	for (uint32_t i = 0; i < n->visible.n;) {
		if (n->visible.e[i].node != owner) {
			i++;
			continue;
		}
		struct sim_rec key = n->visible.e[i];
		visible_remove(n, (int)i);
		promote(s, n, &key);
	}
}

void sim_claims_purge_cluster(struct sim *s, uint32_t id, const char *cluster, size_t len)
{
	struct sim_node *n = store_of(s, id);
	for (int c = 0; c < SIM_CLUSTERS; c++) {
		const char *name = sim_cluster_name(c);
		size_t nl = strlen(name);
		if (len ? nl != len || memcmp(name, cluster, len) : sim_cluster_open(n, name, nl))
			continue;
		repl_claims_drop_node(n->hidden, 0, name, nl);
		for (uint32_t i = 0; i < n->visible.n;) {
			const struct sim_rec *e = &n->visible.e[i];
			if (e->node == id || e->cluster_len != nl || memcmp(e->cluster, name, nl)) {
				i++;
				continue;
			}
			visible_remove(n, (int)i); /* every claim of the cluster goes */
		}
	}
}

int sim_claims_taken(const struct sim *s, uint32_t id, const struct sim_rec *r)
{
	return visible_find(&s->node[id], r) >= 0;
}

void sim_claims_forget(struct sim *s, uint32_t id)
{
	struct sim_node *n = &s->node[id];
	for (uint32_t i = 0; i < n->visible.n; i++)
		free(n->visible.e[i].meta);
	free(n->visible.e);
	memset(&n->visible, 0, sizeof(n->visible));
	n->registry_count = 0;
	repl_claims_free(n->hidden);
	n->hidden = NULL;
}
