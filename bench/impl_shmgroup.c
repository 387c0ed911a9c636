/* SPDX-License-Identifier: MIT */
/*
 * shmgroup itself, in two read paths:
 *   shmgroup      shmg_lookup(), the copying call: owner id and metadata are
 *                 copied out, one read section per call (inside the library);
 *   shmgroup-ref  shmg_lookup_ref() inside one shmg_read_begin()/end() per
 *                 timed batch: zero-copy, the section's cost shared by the
 *                 batch;
 *   shmgroup-batch  shmg_lookup_many_ref(): the whole timed batch in one call,
 *                 which overlaps the keys' cache misses with prefetching.
 * prepare() creates a private arena (unique name, sized for the key count),
 * and registers every key from the parent's handle with env->meta_len bytes
 * of metadata (the key's index, then filler); the parent keeps that handle
 * open so the entries stay.  The copying lookup copies the whole metadata
 * out, the others read the index in place.
 * Each reader and writer process opens its own handle (handles do not survive
 * fork).  Writers alternate register/unregister and join/leave of their own
 * churn keys in the same arena and shards as the looked-up keys.
 */
#include "impl.h"

#include <errno.h>
#include <stdlib.h>

#ifdef BENCH_HAVE_SHMGROUP
#include <shmgroup.h>

static shmg_t *g_owner;
static size_t g_meta_len; /* set by prepare, inherited by the forked readers */

#define META_MAX 1024

/* The metadata stored for key index v: v, then filler. */
static size_t meta_of(uint64_t v, uint8_t *buf)
{
	memset(buf, 'm', g_meta_len);
	memcpy(buf, &v, sizeof(v));
	return g_meta_len;
}

static int sg_prepare(struct impl_env *env)
{
	const struct keyset *ks = env->ks;
	struct shmg_config cfg = {0};
	cfg.arena_size = env->arena_size;
	cfg.flags = SHMG_OPEN_EXCL;
	g_meta_len = env->meta_len < sizeof(uint64_t) ? sizeof(uint64_t) : env->meta_len;
	if (g_meta_len > META_MAX)
		return -EINVAL;
	shmg_destroy(env->group);
	int rc = shmg_open(env->group, &cfg, &g_owner);
	if (rc < 0) {
		snprintf(env->note, sizeof(env->note), "shmg_open(%s): %s", env->group,
			 shmg_strerror(rc));
		return rc;
	}
	for (size_t i = 0; i < ks->count; i++) {
		uint8_t meta[META_MAX];
		rc = shmg_register(g_owner, keyset_hit(ks, i), keyset_hit_len(ks, i), meta,
				   meta_of(i, meta), NULL);
		if (rc < 0) {
			snprintf(env->note, sizeof(env->note), "shmg_register #%zu: %s", i,
				 shmg_strerror(rc));
			return rc;
		}
	}
	return 0;
}

static void sg_teardown(struct impl_env *env)
{
	if (g_owner) {
		shmg_close(g_owner);
		g_owner = NULL;
	}
	shmg_destroy(env->group);
}

static int sg_attach(struct impl_env *env, void **out)
{
	struct shmg_config cfg = {0};
	cfg.flags = SHMG_OPEN_NOCREATE;
	shmg_t *h;
	int rc = shmg_open(env->group, &cfg, &h);
	if (rc < 0)
		return rc;
	*out = h;
	return 0;
}

static int sg_attach_w(struct impl_env *env, int w, void **out)
{
	(void)w;
	return sg_attach(env, out);
}

static int sg_lookup_copy(void *state, const char *const *keys, const size_t *lens,
			  uint64_t *vals, int n)
{
	shmg_t *h = state;
	int found = 0;
	for (int i = 0; i < n; i++) {
		uint64_t meta[META_MAX / 8];
		size_t mlen;
		int rc = shmg_lookup(h, keys[i], lens[i], NULL, meta, sizeof(meta), &mlen, NULL);
		if (rc == 0 && mlen == g_meta_len) {
			vals[i] = meta[0];
			found++;
		} else if (rc == -ENOENT) {
			vals[i] = IMPL_MISS;
		} else {
			return rc < 0 ? rc : -EPROTO;
		}
	}
	return found;
}

static int sg_lookup_ref(void *state, const char *const *keys, const size_t *lens,
			 uint64_t *vals, int n)
{
	shmg_t *h = state;
	int found = 0;
	int rc = shmg_read_begin(h);
	if (rc < 0)
		return rc;
	for (int i = 0; i < n; i++) {
		struct shmg_entry e;
		rc = shmg_lookup_ref(h, keys[i], lens[i], &e, NULL);
		if (rc == 0 && e.meta_len == g_meta_len) {
			memcpy(&vals[i], e.meta, sizeof(uint64_t));
			found++;
		} else if (rc == -ENOENT) {
			vals[i] = IMPL_MISS;
		} else {
			shmg_read_end(h);
			return rc < 0 ? rc : -EPROTO;
		}
	}
	shmg_read_end(h);
	return found;
}

static int sg_lookup_batch(void *state, const char *const *keys, const size_t *lens,
			   uint64_t *vals, int n)
{
	shmg_t *h = state;
	struct shmg_key k[64];
	struct shmg_entry e[64];
	int rcs[64], found = 0;
	int rc = shmg_read_begin(h);
	if (rc < 0)
		return rc;
	for (int base = 0; base < n; base += 64) {
		int m = n - base < 64 ? n - base : 64;
		for (int i = 0; i < m; i++)
			k[i] = (struct shmg_key){keys[base + i], lens[base + i]};
		long got = shmg_lookup_many_ref(h, k, (size_t)m, e, rcs, NULL);
		if (got < 0) {
			shmg_read_end(h);
			return (int)got;
		}
		for (int i = 0; i < m; i++) {
			if (rcs[i] == 0 && e[i].meta_len == g_meta_len) {
				memcpy(&vals[base + i], e[i].meta, sizeof(uint64_t));
				found++;
			} else if (rcs[i] == -ENOENT) {
				vals[base + i] = IMPL_MISS;
			} else {
				shmg_read_end(h);
				return rcs[i] < 0 ? rcs[i] : -EPROTO;
			}
		}
	}
	shmg_read_end(h);
	return found;
}

static void sg_detach(void *state)
{
	shmg_close(state);
}

static int sg_insert(void *state, const char *key, size_t len, uint64_t val, int kind)
{
	uint8_t meta[META_MAX];
	size_t mlen = meta_of(val, meta);
	if (kind == 0)
		return shmg_register(state, key, len, meta, mlen, NULL);
	return shmg_join(state, key, len, meta, mlen, NULL);
}

static int sg_remove(void *state, const char *key, size_t len, int kind)
{
	if (kind == 0)
		return shmg_unregister(state, key, len, NULL);
	return shmg_leave(state, key, len, NULL);
}

#define SG_COMMON                                                                           \
	.kind = "shared memory", .supports_writers = 1, .prepare = sg_prepare,              \
	.teardown = sg_teardown, .reader_attach = sg_attach, .reader_detach = sg_detach,    \
	.writer_attach = sg_attach_w, .writer_insert = sg_insert, .writer_remove = sg_remove, \
	.writer_detach = sg_detach

const struct impl impl_shmgroup_copy = {.name = "shmgroup", .lookup = sg_lookup_copy, SG_COMMON};
const struct impl impl_shmgroup_ref = {.name = "shmgroup-ref", .lookup = sg_lookup_ref, SG_COMMON};
const struct impl impl_shmgroup_batch = {.name = "shmgroup-batch", .default_batch = 32,
					 .lookup = sg_lookup_batch, SG_COMMON};

#else /* !BENCH_HAVE_SHMGROUP */

static int sg_unavailable(char *why, size_t cap)
{
	snprintf(why, cap, "built without the library (lib/ did not build)");
	return 0;
}

const struct impl impl_shmgroup_copy = {.name = "shmgroup", .kind = "shared memory",
					.available = sg_unavailable};
const struct impl impl_shmgroup_ref = {.name = "shmgroup-ref", .kind = "shared memory",
				       .available = sg_unavailable};
const struct impl impl_shmgroup_batch = {.name = "shmgroup-batch", .kind = "shared memory",
					 .available = sg_unavailable};

#endif
