/* SPDX-License-Identifier: MIT */
/*
 * Reference: the naive shared-memory map a user might write first.  A chained
 * hash table in one anonymous MAP_SHARED mapping made before the readers fork,
 * linked by node indices (not pointers), behind one process-shared
 * pthread_rwlock.  Readers take the read lock around each lookup; writers take
 * the write lock for each insert or remove.  Same keys, same hash.
 *
 * Not crash-safe (a process killed holding the lock wedges the map): it is a
 * baseline for speed only.
 */
#include "impl.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

struct rw_node {
	uint64_t hash;
	uint64_t val;
	uint32_t next; /* node index + 1; 0 = end */
	uint32_t len;
	char key[];
};

struct rw_map {
	pthread_rwlock_t lock;
	uint64_t mask;
	uint32_t cap;       /* nodes */
	uint32_t used;      /* high-water mark */
	uint32_t free_head; /* index + 1 */
	uint32_t node_size;
	size_t bytes;
	/* then: uint32_t buckets[mask + 1]; nodes */
};

static struct rw_map *g_map;

static uint32_t *rw_buckets(struct rw_map *m)
{
	return (uint32_t *)(m + 1);
}

static struct rw_node *rw_node_at(struct rw_map *m, uint32_t idx1)
{
	char *base = (char *)(rw_buckets(m) + m->mask + 1);
	return (struct rw_node *)(base + (size_t)(idx1 - 1) * m->node_size);
}

static int rw_insert_locked(struct rw_map *m, const char *key, size_t len, uint64_t val)
{
	uint64_t h = bench_hash(key, len);
	uint32_t *b = &rw_buckets(m)[h & m->mask];
	for (uint32_t i = *b; i; i = rw_node_at(m, i)->next) {
		struct rw_node *n = rw_node_at(m, i);
		if (n->hash == h && n->len == len && memcmp(n->key, key, len) == 0)
			return -EEXIST;
	}
	uint32_t idx;
	if (m->free_head) {
		idx = m->free_head;
		m->free_head = rw_node_at(m, idx)->next;
	} else if (m->used < m->cap) {
		idx = ++m->used;
	} else {
		return -ENOSPC;
	}
	struct rw_node *n = rw_node_at(m, idx);
	n->hash = h;
	n->val = val;
	n->len = (uint32_t)len;
	memcpy(n->key, key, len);
	n->next = *b;
	*b = idx;
	return 0;
}

static int rw_prepare(struct impl_env *env)
{
	const struct keyset *ks = env->ks;
	uint64_t nb = 1;
	while (nb < ks->count)
		nb <<= 1;
	size_t cap = ks->count + (size_t)env->writers * (env->churn_window + 1) + 16;
	size_t node_size = (sizeof(struct rw_node) + ks->key_len + 7) & ~(size_t)7;
	size_t bytes = sizeof(struct rw_map) + nb * sizeof(uint32_t) + cap * node_size;
	struct rw_map *m = bench_shared_alloc(bytes);
	if (!m)
		return -ENOMEM;
	pthread_rwlockattr_t a;
	pthread_rwlockattr_init(&a);
	pthread_rwlockattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_rwlock_init(&m->lock, &a);
	pthread_rwlockattr_destroy(&a);
	m->mask = nb - 1;
	m->cap = (uint32_t)cap;
	m->node_size = (uint32_t)node_size;
	m->bytes = bytes;
	for (size_t i = 0; i < ks->count; i++) {
		int rc = rw_insert_locked(m, keyset_hit(ks, i), keyset_hit_len(ks, i), i);
		if (rc < 0)
			return rc;
	}
	g_map = m;
	return 0;
}

static void rw_teardown(struct impl_env *env)
{
	(void)env;
	if (g_map) {
		pthread_rwlock_destroy(&g_map->lock);
		bench_shared_free(g_map, g_map->bytes);
		g_map = NULL;
	}
}

static int rw_attach(struct impl_env *env, void **out)
{
	(void)env;
	*out = g_map;
	return g_map ? 0 : -EINVAL;
}

static int rw_lookup(void *state, const char *const *keys, const size_t *lens, uint64_t *vals,
		     int n)
{
	struct rw_map *m = state;
	int found = 0;
	for (int k = 0; k < n; k++) {
		size_t len = lens[k];
		uint64_t h = bench_hash(keys[k], len);
		vals[k] = IMPL_MISS;
		pthread_rwlock_rdlock(&m->lock);
		for (uint32_t i = rw_buckets(m)[h & m->mask]; i; i = rw_node_at(m, i)->next) {
			struct rw_node *e = rw_node_at(m, i);
			if (e->hash == h && e->len == len && memcmp(e->key, keys[k], len) == 0) {
				vals[k] = e->val;
				found++;
				break;
			}
		}
		pthread_rwlock_unlock(&m->lock);
	}
	return found;
}

static void rw_detach(void *state)
{
	(void)state;
}

static int rw_writer_attach(struct impl_env *env, int w, void **out)
{
	(void)w;
	return rw_attach(env, out);
}

static int rw_writer_insert(void *state, const char *key, size_t len, uint64_t val, int kind)
{
	struct rw_map *m = state;
	(void)kind;
	pthread_rwlock_wrlock(&m->lock);
	int rc = rw_insert_locked(m, key, len, val);
	pthread_rwlock_unlock(&m->lock);
	return rc;
}

static int rw_writer_remove(void *state, const char *key, size_t len, int kind)
{
	struct rw_map *m = state;
	(void)kind;
	uint64_t h = bench_hash(key, len);
	int rc = -ENOENT;
	pthread_rwlock_wrlock(&m->lock);
	for (uint32_t *pp = &rw_buckets(m)[h & m->mask]; *pp; pp = &rw_node_at(m, *pp)->next) {
		struct rw_node *e = rw_node_at(m, *pp);
		if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0) {
			uint32_t idx = *pp;
			*pp = e->next;
			e->next = m->free_head;
			m->free_head = idx;
			rc = 0;
			break;
		}
	}
	pthread_rwlock_unlock(&m->lock);
	return rc;
}

const struct impl impl_rwlock = {
	.name = "rwlock",
	.kind = "shared memory",
	.supports_writers = 1,
	.prepare = rw_prepare,
	.teardown = rw_teardown,
	.reader_attach = rw_attach,
	.lookup = rw_lookup,
	.reader_detach = rw_detach,
	.writer_attach = rw_writer_attach,
	.writer_insert = rw_writer_insert,
	.writer_remove = rw_writer_remove,
	.writer_detach = rw_detach,
};
