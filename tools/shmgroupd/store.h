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

/* How registry conflicts are settled (docs/PROTOCOL.md section 15). */
struct store_config {
	/* The user's rule, or NULL for the default (the later registration
	 * wins, ties to the larger endpoint identity). */
	shmg_resolve_fn resolver;
	/* A signal sent through a pidfd to the process of a local endpoint
	 * that lost a conflict; 0 sends none. */
	int conflict_signal;
};

struct store_stats {
	/* conflicts: remote claims met on a key held here by another owner;
	 * conflicts_lost: local endpoints evicted; conflicts_hidden: remote
	 * claims kept hidden (lost here, or replaced by a better one);
	 * promoted_in_place: hidden claims shown in the same step as their
	 * owner's removal of the visible one (remote_replace). */
	uint64_t batches, changes, conflicts, missing, rejected, retries, failed;
	uint64_t conflicts_lost, conflicts_hidden, promoted_in_place;
	/* Changes of a named cluster this host is not connected to: a peer
	 * sent them before it learnt that this host left it. */
	uint64_t not_connected;
	uint64_t log_reads, log_lapped, log_resets;
};

/* 0 and *out, -ENOMEM, or the library's error.  cfg NULL: the defaults. */
int store_open(shmg_t *h, const struct store_config *cfg, struct store **out);
void store_close(struct store *st);

void store_apply(struct store *st, const struct repl_batch *b);
int store_log_read(struct store *st, uint16_t shard, uint64_t seq, struct repl_record *out);
uint64_t store_log_head(struct store *st, uint16_t shard);
int64_t store_snapshot(struct store *st, uint16_t shard,
		       void (*emit)(void *arg, const struct repl_record *r), void *arg);
void store_held(struct store *st, uint32_t node, uint64_t *inc, uint64_t *cursors);
/* The named clusters this host is connected to (shmg_clusters). */
void store_clusters(struct store *st, void (*emit)(void *arg, const char *name, size_t len),
		    void *arg);
/* Peer `node` is (not) in the named cluster: the arena's mark that
 * shmg_nodes(cluster) lists. */
void store_peer_cluster(struct store *st, uint32_t node, const char *name, size_t len,
			int connected);

/* True if a shard's change log moved (or was repaired) since the last call:
 * a few loads per shard, no lock, no syscall. */
bool store_logs_moved(struct store *st);
/* The next shard whose log a repair may have cut (oplog resets moved), which
 * the core must resync everywhere (repl_log_reset); -1 when none.  Outside
 * any core call, since the core's callbacks may not call back into it. */
int store_take_reset(struct store *st);

const struct store_stats *store_stats(const struct store *st);

#endif
