/* SPDX-License-Identifier: MIT */
/*
 * Reference: liburcu's cds_lfht with the urcu-memb flavour, in-process.  Each
 * reader process builds its own table of the same keys with the same hash
 * before the timed phase (a cds_lfht cannot live in shared memory: its nodes
 * are malloc'ed and linked by absolute pointers).  _LGPL_SOURCE makes the read
 * lock and unlock inline, as a performance-minded user would build it.
 *   lfht        one read-side critical section per lookup, the usual pattern
 *               for a single lookup;
 *   lfht-batch  the reference for shmgroup-batch: the whole timed batch (same
 *               size) in one read section, its lookups one after the other in
 *               one loop, so the CPU overlaps their misses as far as it can
 *               without help.
 */
#define _LGPL_SOURCE 1
#include <urcu/urcu-memb.h>
#include <urcu/rculfhash.h>

#include "impl.h"

#include <errno.h>
#include <stdlib.h>

struct lfht_node {
	struct cds_lfht_node node;
	const char *key;
	size_t len;
	uint64_t val;
};

struct lfht_state {
	struct cds_lfht *ht;
	struct lfht_node *nodes;
	size_t n;
};

struct probe {
	const char *key;
	size_t len;
};

static int lfht_match(struct cds_lfht_node *node, const void *key)
{
	const struct lfht_node *n = caa_container_of(node, struct lfht_node, node);
	const struct probe *p = key;
	return n->len == p->len && memcmp(n->key, p->key, p->len) == 0;
}

static int lfht_attach(struct impl_env *env, void **out)
{
	const struct keyset *ks = env->ks;
	struct lfht_state *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	unsigned long size = 1;
	while (size < ks->count)
		size <<= 1;
	urcu_memb_register_thread();
	s->ht = cds_lfht_new_flavor(size, size, 0, 0, &urcu_memb_flavor, NULL);
	s->nodes = calloc(ks->count, sizeof(*s->nodes));
	if (!s->ht || !s->nodes)
		return -ENOMEM;
	s->n = ks->count;
	for (size_t i = 0; i < ks->count; i++) {
		struct lfht_node *n = &s->nodes[i];
		cds_lfht_node_init(&n->node);
		n->key = keyset_hit(ks, i);
		n->len = keyset_hit_len(ks, i);
		n->val = i;
		urcu_memb_read_lock();
		cds_lfht_add(s->ht, bench_hash(n->key, n->len), &n->node);
		urcu_memb_read_unlock();
	}
	*out = s;
	return 0;
}

/* One lookup inside the caller's read section. */
static inline int lfht_get(struct lfht_state *s, const char *key, size_t len, uint64_t *val)
{
	struct probe p = {key, len};
	struct cds_lfht_iter iter;
	cds_lfht_lookup(s->ht, bench_hash(key, len), lfht_match, &p, &iter);
	struct cds_lfht_node *node = cds_lfht_iter_get_node(&iter);
	*val = node ? caa_container_of(node, struct lfht_node, node)->val : IMPL_MISS;
	return node != NULL;
}

static int lfht_lookup(void *state, const char *const *keys, const size_t *lens, uint64_t *vals,
		       int n)
{
	struct lfht_state *s = state;
	int found = 0;
	for (int i = 0; i < n; i++) {
		urcu_memb_read_lock();
		found += lfht_get(s, keys[i], lens[i], &vals[i]);
		urcu_memb_read_unlock();
	}
	return found;
}

static int lfht_lookup_batch(void *state, const char *const *keys, const size_t *lens,
			     uint64_t *vals, int n)
{
	struct lfht_state *s = state;
	int found = 0;
	urcu_memb_read_lock();
	for (int i = 0; i < n; i++)
		found += lfht_get(s, keys[i], lens[i], &vals[i]);
	urcu_memb_read_unlock();
	return found;
}

static void lfht_detach(void *state)
{
	struct lfht_state *s = state;
	/* The process exits right after; the table is left to it. */
	urcu_memb_unregister_thread();
	free(s);
}

const struct impl impl_lfht = {
	.name = "lfht",
	.kind = "in-process",
	.reader_attach = lfht_attach,
	.lookup = lfht_lookup,
	.reader_detach = lfht_detach,
};

const struct impl impl_lfht_batch = {
	.name = "lfht-batch",
	.kind = "in-process",
	.default_batch = 32, /* as shmgroup-batch */
	.reader_attach = lfht_attach,
	.lookup = lfht_lookup_batch,
	.reader_detach = lfht_detach,
};
