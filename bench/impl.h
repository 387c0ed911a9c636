/* SPDX-License-Identifier: MIT */
/*
 * The lookup implementations that bench/lookup.c compares.  Each one is a
 * table of functions; lookup.c drives them the same way:
 *
 *   prepare()        in the parent, before any fork: builds whatever is shared
 *                    (the shmgroup arena, the rwlock map, the redis server);
 *   reader_attach()  in each reader process after fork: opens its handle or,
 *                    for in-process references, builds its own table;
 *   lookup()         looks up n keys (one timed batch; key i is lens[i] bytes) and
 *                    writes each value,
 *                    or IMPL_MISS, into vals; returns the number found or a
 *                    negative errno;
 *   writer_*()       in writer processes: insert and remove churn keys;
 *   teardown()       in the parent at the end (also on error paths).
 *
 * Every stored value is the key's index in the key set, so a reader checks
 * each answer.  shmgroup stores it in the first 8 bytes of meta_len bytes of
 * metadata, which the copying lookup copies out whole.
 *
 * "shmgroup-batch" hands each timed batch to the library's batched call
 * (shmg_lookup_many_ref), which prefetches across the batch's keys;
 * "lfht-batch" is its in-process reference: the same batch size, the batch's
 * lfht lookups one after the other in one loop and one read section, so the
 * CPU may overlap their misses as far as it can on its own.
 */
#ifndef BENCH_IMPL_H
#define BENCH_IMPL_H

#include "common.h"

#include <stdint.h>

#define IMPL_MISS UINT64_MAX

struct impl_env {
	const struct keyset *ks;
	int readers;
	int writers;
	size_t churn_window;   /* live churn keys per writer */
	uint64_t arena_size;   /* shmgroup */
	size_t meta_len;       /* shmgroup: metadata bytes per key, >= 8 */
	char group[64];        /* shmgroup arena name */
	char note[256];        /* filled by prepare when something is worth saying */
};

struct impl {
	const char *name;
	const char *kind;      /* "shared memory", "in-process", "server" */
	int default_batch;     /* 0: the harness default */
	int supports_writers;  /* writers can change what the readers see */
	int (*available)(char *why, size_t cap);
	int (*prepare)(struct impl_env *env);
	void (*teardown)(struct impl_env *env);
	int (*reader_attach)(struct impl_env *env, void **state);
	int (*lookup)(void *state, const char *const *keys, const size_t *lens, uint64_t *vals,
		      int n);
	void (*reader_detach)(void *state);
	int (*writer_attach)(struct impl_env *env, int w, void **state);
	/* kind: 0 registry (register/unregister), 1 group member (join/leave). */
	int (*writer_insert)(void *state, const char *key, size_t len, uint64_t val, int kind);
	int (*writer_remove)(void *state, const char *key, size_t len, int kind);
	void (*writer_detach)(void *state);
};

extern const struct impl impl_lfht;
extern const struct impl impl_lfht_batch;
extern const struct impl impl_ckhs;
extern const struct impl impl_rwlock;
extern const struct impl impl_redis;
extern const struct impl impl_shmgroup_copy;
extern const struct impl impl_shmgroup_ref;
extern const struct impl impl_shmgroup_batch;

#endif
