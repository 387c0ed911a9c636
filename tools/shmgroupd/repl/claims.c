/* SPDX-License-Identifier: MIT */
/*
 * The conflict rule and the hidden-claims table (claims.h).
 *
 * The table is an array searched linearly: a hidden claim exists only while
 * two owners hold one key, which lasts from a partition's heal until the
 * loser's removal arrives, so a store holds few at any time.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "claims.h"

struct hidden_claim {
	struct repl_record r; /* its pointers into buf */
	char *buf;            /* cluster, key, meta */
	uint16_t shard;
};

struct repl_claims {
	struct hidden_claim *c;
	size_t n, cap;
};

static int cmp_u32(uint32_t a, uint32_t b)
{
	return (a > b) - (a < b);
}

int repl_claim_identity_cmp(const struct repl_record *a, const struct repl_record *b)
{
	int c = cmp_u32(a->node, b->node);
	if (!c)
		c = cmp_u32(a->ep_slot, b->ep_slot);
	if (!c)
		c = cmp_u32(a->ep_gen, b->ep_gen);
	return c;
}

int repl_claim_cmp(const struct repl_record *a, const struct repl_record *b,
		   repl_resolver_fn resolver, void *arg)
{
	int id = repl_claim_identity_cmp(a, b);
	if (id == 0)
		return 0;
	if (resolver) {
#ifdef REPL_MUTANT_NO_CANONICAL_ORDER
		/* Mutant: the resolver sees the claims in the caller's order. */
		return resolver(a, b, arg) == 0 ? 1 : -1;
#else
		/* Canonical order: the smaller identity first, whoever asks. */
		const struct repl_record *lo = id < 0 ? a : b;
		const struct repl_record *hi = id < 0 ? b : a;
		const struct repl_record *winner = resolver(lo, hi, arg) == 0 ? lo : hi;
		return winner == a ? 1 : -1;
#endif
	}
	if (a->time_ns != b->time_ns)
		return a->time_ns > b->time_ns ? 1 : -1;
	return id;
}

/* ---- the hidden-claims table ------------------------------------------ */

int repl_claims_new(struct repl_claims **out)
{
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : -ENOMEM;
}

void repl_claims_free(struct repl_claims *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++)
		free(t->c[i].buf);
	free(t->c);
	free(t);
}

/* The default cluster may come as a NULL pointer with length 0. */
static int bytes_eq(const void *a, const void *b, size_t n)
{
	return n == 0 || !memcmp(a, b, n);
}

static int same_key(const struct repl_record *r, const char *cluster, size_t cluster_len,
		    const char *key, size_t key_len)
{
	return r->cluster_len == cluster_len && r->key_len == key_len &&
	       bytes_eq(r->cluster, cluster, cluster_len) && bytes_eq(r->key, key, key_len);
}

static long find(const struct repl_claims *t, uint32_t node, const char *cluster,
		 size_t cluster_len, const char *key, size_t key_len)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->c[i].r.node == node &&
		    same_key(&t->c[i].r, cluster, cluster_len, key, key_len))
			return (long)i;
	return -1;
}

static void remove_at(struct repl_claims *t, size_t i)
{
	free(t->c[i].buf);
	t->c[i] = t->c[--t->n];
}

char *repl_record_copy(const struct repl_record *r, struct repl_record *out)
{
	size_t len = (size_t)r->cluster_len + r->key_len + r->meta_len;
	char *buf = malloc(len ? len : 1);
	if (!buf)
		return NULL;
	if (r->cluster_len)
		memcpy(buf, r->cluster, r->cluster_len);
	if (r->key_len)
		memcpy(buf + r->cluster_len, r->key, r->key_len);
	if (r->meta_len)
		memcpy(buf + r->cluster_len + r->key_len, r->meta, r->meta_len);
	*out = *r;
	out->cluster = buf;
	out->key = buf + r->cluster_len;
	out->meta = r->meta_len ? buf + r->cluster_len + r->key_len : NULL;
	return buf;
}

int repl_claims_hide(struct repl_claims *t, const struct repl_record *r, uint16_t shard)
{
	struct repl_record copy;
	char *buf = repl_record_copy(r, &copy);
	if (!buf)
		return -ENOMEM;
	long at = find(t, r->node, r->cluster, r->cluster_len, r->key, r->key_len);
	if (at < 0) {
		if (t->n == t->cap) {
			size_t cap = t->cap ? t->cap * 2 : 8;
			struct hidden_claim *c = realloc(t->c, cap * sizeof(*c));
			if (!c) {
				free(buf);
				return -ENOMEM;
			}
			t->c = c;
			t->cap = cap;
		}
		at = (long)t->n++;
	} else {
		free(t->c[at].buf);
	}
	struct hidden_claim *h = &t->c[at];
	h->buf = buf;
	h->shard = shard;
	h->r = copy;
	return 0;
}

const struct repl_record *repl_claims_find(const struct repl_claims *t, uint32_t node,
					   const char *cluster, size_t cluster_len,
					   const char *key, size_t key_len)
{
	long at = find(t, node, cluster, cluster_len, key, key_len);
	return at < 0 ? NULL : &t->c[at].r;
}

const struct repl_record *repl_claims_best(const struct repl_claims *t, const char *cluster,
					   size_t cluster_len, const char *key, size_t key_len,
					   repl_resolver_fn resolver, void *arg)
{
	const struct repl_record *best = NULL;
	for (size_t i = 0; i < t->n; i++) {
		const struct repl_record *r = &t->c[i].r;
		if (same_key(r, cluster, cluster_len, key, key_len) &&
		    (!best || repl_claim_cmp(r, best, resolver, arg) > 0))
			best = r;
	}
	return best;
}

int repl_claims_drop(struct repl_claims *t, uint32_t node, const char *cluster,
		     size_t cluster_len, const char *key, size_t key_len)
{
	long at = find(t, node, cluster, cluster_len, key, key_len);
	if (at < 0)
		return 0;
	remove_at(t, (size_t)at);
	return 1;
}

size_t repl_claims_drop_node(struct repl_claims *t, uint32_t node, const char *cluster,
			     size_t cluster_len)
{
	size_t gone = 0;
	for (size_t i = 0; i < t->n;) {
		const struct repl_record *r = &t->c[i].r;
#ifdef REPL_MUTANT_PURGE_KEEPS_HIDDEN
		/* Mutant: a purged node's hidden claims stay. */
		if (!cluster) {
			i++;
			continue;
		}
#endif
		if ((node == 0 || r->node == node) &&
		    (!cluster ||
		     (r->cluster_len == cluster_len && bytes_eq(r->cluster, cluster, cluster_len)))) {
			remove_at(t, i);
			gone++;
		} else {
			i++;
		}
	}
	return gone;
}

size_t repl_claims_drop_shard(struct repl_claims *t, uint32_t node, uint16_t shard)
{
	size_t gone = 0;
	for (size_t i = 0; i < t->n;) {
		if (t->c[i].r.node == node && t->c[i].shard == shard) {
			remove_at(t, i);
			gone++;
		} else {
			i++;
		}
	}
	return gone;
}

size_t repl_claims_count(const struct repl_claims *t)
{
	return t->n;
}

const struct repl_record *repl_claims_at(const struct repl_claims *t, size_t i)
{
	return i < t->n ? &t->c[i].r : NULL;
}

uint16_t repl_claims_shard_at(const struct repl_claims *t, size_t i)
{
	return i < t->n ? t->c[i].shard : 0;
}
