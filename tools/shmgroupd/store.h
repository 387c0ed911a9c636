/* SPDX-License-Identifier: MIT */
/*
 * The protocol core's store (repl_ops apply, log_read, log_head, snapshot,
 * held) over this host's arena, through lib/remote.h.  docs/PROTOCOL.md
 * section 11 is the contract.
 *
 * Sequence numbers: the arena's change log numbers its records from 0, the
 * protocol from 1, so protocol seq s is the log's record s - 1, and the
 * protocol's head is the log's next seq.
 *
 * Threading: one thread (the agent's protocol thread) calls everything here.
 */
#ifndef SHMGROUPD_STORE_H
#define SHMGROUPD_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "repl.h"
#include "shmgroup.h"

struct store;

#ifndef SHMG_RESOLVE_FN_DEFINED
/* The user's conflict resolver (contract of issue 10).  Declared here until
 * the public header's "Conflict resolution" section carries it: then this
 * block goes. */
struct shmg_claim {
	shmg_id_t id;
	int32_t pid;
	uint64_t time_ns;
	const char *cluster;
	const char *key;
	size_t key_len;
	const void *meta;
	size_t meta_len;
};
/* Returns 0 when a wins, 1 when b wins; must be deterministic and fast. */
typedef int (*shmg_resolve_fn)(const struct shmg_claim *a, const struct shmg_claim *b);
#endif

/* What the agent's configuration says about conflicts (shmgroupd.conf
 * conflict_resolver and conflict_signal). */
struct store_config {
	shmg_resolve_fn resolver; /* NULL: the default rule */
	void *resolver_arg;       /* reserved for a resolver taking an argument: NULL */
	int conflict_signal;      /* signal sent to a losing endpoint's process, 0 = none */
};

struct store_stats {
	uint64_t batches, changes, conflicts, missing, rejected, retries, failed;
	uint64_t log_reads, log_lapped, log_resets;
};

/* 0 and *out, -ENOMEM, or the library's error. */
int store_open(shmg_t *h, struct store **out);
void store_close(struct store *st);
/* Takes the conflict settings (a copy); before the core's first call. */
void store_set_config(struct store *st, const struct store_config *cfg);

void store_apply(struct store *st, const struct repl_batch *b);
int store_log_read(struct store *st, uint16_t shard, uint64_t seq, struct repl_record *out);
uint64_t store_log_head(struct store *st, uint16_t shard);
int64_t store_snapshot(struct store *st, uint16_t shard,
		       void (*emit)(void *arg, const struct repl_record *r), void *arg);
void store_held(struct store *st, uint32_t node, uint64_t *inc, uint64_t *cursors);

/* True if a shard's change log moved (or was repaired) since the last call:
 * a few loads per shard, no lock, no syscall. */
bool store_logs_moved(struct store *st);
/* The next shard whose log a repair may have cut (oplog resets moved), which
 * the core must resync everywhere (repl_log_reset); -1 when none.  Outside
 * any core call, since the core's callbacks may not call back into it. */
int store_take_reset(struct store *st);

const struct store_stats *store_stats(const struct store *st);

#endif
