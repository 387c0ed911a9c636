/* SPDX-License-Identifier: MIT */
/*
 * Reference: liburcu's cds_lfht with the urcu-memb flavour, in-process.  Each
 * reader process builds its own table of the same keys with the same hash
 * before the timed phase (a cds_lfht cannot live in shared memory: its nodes
 * are malloc'ed and linked by absolute pointers).  _LGPL_SOURCE makes the read
 * lock and unlock inline, as a performance-minded user would build it.  One
 * read-side critical section per lookup, the usual pattern for a single
 * lookup.
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
		n->len = ks->key_len;
		n->val = i;
		urcu_memb_read_lock();
		cds_lfht_add(s->ht, bench_hash(n->key, n->len), &n->node);
		urcu_memb_read_unlock();
	}
	*out = s;
	return 0;
}

static int lfht_lookup(void *state, const char *const *keys, size_t len, uint64_t *vals, int n)
{
	struct lfht_state *s = state;
	int found = 0;
	for (int i = 0; i < n; i++) {
		struct probe p = {keys[i], len};
		struct cds_lfht_iter iter;
		uint64_t h = bench_hash(keys[i], len);
		urcu_memb_read_lock();
		cds_lfht_lookup(s->ht, h, lfht_match, &p, &iter);
		struct cds_lfht_node *node = cds_lfht_iter_get_node(&iter);
		if (node) {
			vals[i] = caa_container_of(node, struct lfht_node, node)->val;
			found++;
		} else {
			vals[i] = IMPL_MISS;
		}
		urcu_memb_read_unlock();
	}
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
