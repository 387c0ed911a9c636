/* SPDX-License-Identifier: MIT */
/*
 * The store side of replication, for the host agent (shmgroupd): entries
 * owned by other nodes written into this arena, per-node replication state
 * kept in it, and a reader of this node's change log.  Internal: the agent
 * links shmgroup_internal_dep; applications never call these.
 *
 * One writer: only the agent calls the writing functions, from one thread
 * at a time (docs/ARCHITECTURE.md section "Remote entries").  Readers need
 * nothing: remote entries are found by the same lock-free lookups.
 *
 * Remote entries are never written to the change log (oplog_append skips
 * entries of other nodes), so what arrives from a peer is never sent on.
 * They count in the totals (shmg_registry_count, member counts) and never in
 * the local_* ones, and they live until replication removes them: the
 * reaper does not look at them.
 */
#ifndef SHMG_REMOTE_H
#define SHMG_REMOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shmgroup.h"

/* Nodes whose entries one arena can hold at once (layout.h MAX_NODES). */
#define REMOTE_MAX_NODES 64u

/* Operations, numbered as the change log's and repl.h's. */
enum remote_op {
	REMOTE_REGISTER = 1,
	REMOTE_UNREGISTER = 2,
	REMOTE_JOIN = 3,
	REMOTE_LEAVE = 4
};

/* One change of an entry owned by id.node, or (resync) one entry, given as
 * a REGISTER or JOIN.  Pointers are read during the call only. */
struct remote_change {
	uint8_t op;          /* enum remote_op */
	uint8_t reason;      /* removals: enum shmg_reason of the owner's change */
	const char *cluster; /* NULL or "": the default cluster */
	const char *key;
	size_t key_len;
	const void *meta;
	size_t meta_len;
	shmg_id_t id; /* the owner's endpoint; id.node is not this node, slot < 65536 */
	int32_t pid;
	uint64_t time_ns; /* registration or join time at the owner */
};

/* Applies n changes of `node`'s entries of `shard`, in order, under one hold
 * of the shard lock, then stores `cursor` (if not 0) as the last seq of the
 * node's log of that shard applied here.  `inc` is the owner's incarnation:
 * stored if none is held, -ESTALE (nothing applied) if another is (purge
 * first).  Per change, rcs[i] (if rcs) is:
 *   0          applied, or already so (same endpoint, same metadata: no event);
 *   -EEXIST    a register of a key held by another endpoint (local, or of
 *              another node): the existing entry is kept.  Issue 10's
 *              conflict rule will replace this;
 *   -ENOENT    a removal of an entry not held;
 *   -ENOTCONN  the change's named cluster is not connected here;
 *   -EINVAL    a bad change (this node's id, a slot >= 65536, a bad key or
 *              metadata, or a key of another shard);
 *   -ENOSPC    the arena is full.
 * Returns 0 (each change's outcome is in rcs), or -EBUSY / -EIO (the lock
 * was not had: nothing applied), -EINVAL (bad arguments), -ENOSPC (node
 * table full).  Events: one per change, as for a local write, with the
 * change's reason for removals.  A crash half way leaves each change either
 * applied or not and the cursor behind: the changes are idempotent, so the
 * agent re-applies from the stored cursor. */
int remote_apply(shmg_t *h, uint32_t node, uint64_t inc, uint32_t shard,
		 const struct remote_change *c, size_t n, uint64_t cursor, int *rcs);

/* One change, in whatever shard its key hashes to, storing no cursor. */
int remote_put(shmg_t *h, uint64_t inc, const struct remote_change *c);

/* Makes `node`'s entries of `shard` exactly the n given (REGISTER or JOIN
 * changes) in one hold of the shard lock, and stores `cursor`:
 *   an entry held with the same endpoint and metadata is not touched;
 *   one with new metadata is replaced in place (one store: readers see the
 *   old or the new version, never neither), event with previous meta;
 *   a new one is added; a held one not given is removed, reason RESYNC.
 * The shard's cursor of the node reads "dirty" while this runs, so a crash
 * part way makes remote_held report nothing held (the handshake then purges
 * and refetches the node); the entries themselves are each whole, and the
 * shard's next locker repairs what the crash left.  The outcome of each entry
 * is in rcs as for remote_apply (an -EEXIST entry is not held, and a held
 * one it conflicts with that belongs to the node is replaced).  Returns 0,
 * -EBUSY (lock, or a reader holding the limbo ring full: stopped part way,
 * cursor left dirty), -EIO, -EINVAL, -ENOMEM, -ESTALE (other incarnation). */
int remote_resync(shmg_t *h, uint32_t node, uint64_t inc, uint32_t shard,
		  const struct remote_change *c, size_t n, uint64_t cursor, int *rcs);

/* Removes every entry of `node` in every shard, each with its own event of
 * `reason` (SHMG_REASON_NODEDOWN, or RESYNC / CLUSTER_DISCONNECT), shard by
 * shard, and forgets its incarnation (first) and cursors (with each shard).
 * Returns the number removed, or -EBUSY / -EIO (shards not reached keep
 * their entries; the incarnation is already forgotten, so call again). */
long remote_purge(shmg_t *h, uint32_t node, int reason);

/* What this arena holds of `node`: its incarnation (0: none) and, if cursors
 * is not NULL, the last seq applied per shard (cursors[shards]).  A shard
 * left dirty by a crashed resync reports inc 0 and all cursors 0. */
void remote_held(shmg_t *h, uint32_t node, uint64_t *inc, uint64_t *cursors);

/* Marks whether the agent's connection to `node` is up, which shmg_nodes
 * lists; marking it up claims the node's table slot.  A purge clears the
 * mark with the node's state.  0, -EINVAL (this node, or 0), -ENOSPC (the
 * node table is full), -EBADF, -ECHILD. */
int remote_node_up(shmg_t *h, uint32_t node, bool up);
/* Clears every mark (connection and clusters): the agent at start (a killed
 * agent's marks are stale) and at a clean stop. */
void remote_nodes_down(shmg_t *h);

/* ---- named clusters (issue 10) ----------------------------------------- */

/* Removes the entries of the named `cluster` that `node` owns (node 0: that
 * every other node owns; this node's are never touched) from every shard,
 * each with its own event of `reason` (SHMG_REASON_CLUSTER_DISCONNECT when
 * the node disconnected from it), shard by shard.  The node's cursors, its
 * incarnation and its cluster mark (remote_node_cluster) are kept.  It
 * acts on the connection the name resolves to on entry: if this host
 * disconnects and connects the cluster again meanwhile, the new
 * connection's entries are not touched (the old one's go with the
 * disconnect).
 * Returns the number removed (0 if the cluster is not connected here: none
 * of it is held); -EBUSY / -EIO (the shards done stay done: call again);
 * -EINVAL (no cluster name or a bad one, this node, reason out of range);
 * -EBADF, -ECHILD. */
long remote_purge_cluster(shmg_t *h, uint32_t node, const char *cluster, int reason);

/* Marks whether peer `node` is connected to the named `cluster`, which
 * shmg_nodes(h, cluster, ...) lists (with this node).  Marking it connected
 * claims the node's table slot.  A cluster not connected here marks
 * nothing (0): its marks start empty at each connect, so the agent marks
 * its peers again after this host connects.  Marks are cleared with the
 * node's purge (remote_purge), by remote_nodes_down, and when this host
 * disconnects from the cluster.  The mark is changed under cluster_lock,
 * and only if the connection the name resolved to on entry is still there:
 * one that went away meanwhile marks (or unmarks) nothing, whatever
 * connection took its slot since.  0; -EINVAL (node 0 or this node, no
 * cluster name or a bad one); -ENOSPC (node table full); -EBUSY (the
 * cluster lock stayed held past the busy budget: nothing changed); -EIO;
 * -EBADF, -ECHILD. */
int remote_node_cluster(shmg_t *h, uint32_t node, const char *cluster, bool connected);

/* Replaces, in one step, the registration that endpoint `loser` of another
 * node holds by `winner` (a REGISTER of the same cluster and key, of a third
 * node whose incarnation is inc): the registry conflict rule's replacement
 * of a losing remote claim (reason SHMG_REASON_CONFLICT), or the promotion
 * of a hidden claim when the visible one's owner removes it (that removal's
 * reason).  Under the key's shard lock, the winner's block is filled while
 * unreachable and published by one release store of the index slot, as a
 * re-register by its owner is: a lock-free reader finds the loser or the
 * winner, never neither.  Events: the loser's SHMG_EV_UNREGISTERED with
 * `reason`, then the winner's SHMG_EV_REGISTERED (no previous meta: another
 * endpoint), as one batch to each monitor.  Neither is logged (both are
 * other nodes' entries).
 * Returns 0; -ENOENT the key is not held by `loser` (nothing done);
 * -ESTALE another incarnation of the winner's node is held; -ENOTCONN the
 * named cluster is not connected here; -EINVAL (winner NULL or not a
 * REGISTER, loser or winner of this node or node 0, both of one node, a
 * slot >= 65536, bad key, cluster, meta or reason); -ENOSPC (arena or node
 * table full); -EBUSY, -EIO (the lock was not had: nothing done); -EBADF,
 * -ECHILD.  A crash before the store leaves the loser, after it the winner;
 * the shard's next locker repairs the rest and delivers the pair of events
 * to the monitors not yet reached (the one being appended to at the crash
 * may get the pair twice). */
int remote_replace(shmg_t *h, shmg_id_t loser, int reason, uint64_t inc,
		   const struct remote_change *winner);

/* Terminates the LOCAL endpoint `loser`, which holds the registration
 * (cluster, key) and lost it to `winner` by the conflict rule (DESIGN.md
 * section 2, docs/PROTOCOL.md section 15), as Group kills the loser:
 *   - when the holding is confirmed (under the key's shard lock), a final
 *     SHMG_EV_CONFLICT record (cluster, key, the winner's id, pid, time and
 *     meta) is appended to its mailbox, waking its consumer, and from then
 *     on every write of its handle fails with -ECONNABORTED; once it has
 *     read its mailbox empty, shmg_receive returns -ECONNABORTED;
 *   - it is hidden at once and all of its entries and monitors are removed
 *     in one batch with reason SHMG_REASON_CONFLICT, as a death's are (its
 *     registration of the key among them: the key is then free).
 * It does not install the winner: the caller applies it (remote_apply).
 * *loser_pid (if not NULL) gets the loser's OS pid, for the optional signal.
 * Returns 0; -ENOENT the loser does not hold the key (or the cluster is not
 * connected here): nothing done; -EBUSY, -EIO: a lock was not had; if the
 * holding was confirmed the endpoint is terminated already and its removal
 * is finished by a retry, its owner's close or the next reap pass, still
 * with reason conflict; -EINVAL (loser not a local id, winner NULL, bad
 * key, cluster or meta); -EBADF, -ECHILD.
 * The record goes once: a retry of an eviction cut short finds the
 * endpoint terminated and sends none.  Killed after confirming, the caller
 * leaves the removal to the next reap pass (shmg_reap, the reaper), which
 * finishes it as above, once. */
int remote_conflict_evict(shmg_t *h, const char *cluster, const char *key, size_t key_len,
			  shmg_id_t loser, const struct remote_change *winner, int32_t *loser_pid);

/* Sends signal sig to the process of local endpoint id (the conflict's
 * loser, for the agent's conflict_signal) through a pidfd, and only if the
 * process is still the one recorded with the endpoint: same slot
 * generation, same start time (so a pid reused by another process is never
 * signalled).  It may be called after remote_conflict_evict, whose loser
 * keeps its slot until it closes.  0; -ESRCH the endpoint or its process
 * is gone (or the pid names another process now); -EPERM; -EINVAL (not a
 * local id, bad signal); -EBADF, -ECHILD. */
int remote_signal_endpoint(shmg_t *h, shmg_id_t id, int sig);

/* The agent's run number (the protocol's session): one more than the last
 * agent's on this arena, never 0; 0 for a bad handle.  Call once at start. */
uint32_t remote_session_next(shmg_t *h);

/* ---- dispatch to other hosts (dispatch.c) ------------------------------ */

/* Makes this handle's endpoint mailbox the host's outbound queue: from now
 * on shmg_dispatch appends there (as SHMG_EV_MESSAGE records from the
 * sender) each message for a key with entries on other nodes.  The endpoint
 * must register, join and monitor nothing.  0, -EBADF, -ECHILD. */
int remote_outbound_claim(shmg_t *h);
/* Withdraws it, if it is still this handle's (a clean stop). */
void remote_outbound_release(shmg_t *h);

/* The other nodes holding entries (registration or memberships) of (cluster,
 * key) in this arena's view, at most max of them, into nodes.  Returns the
 * count; 0 for a named cluster not connected here; -EINVAL bad key or
 * cluster; -EBADF, -ECHILD. */
long remote_key_nodes(shmg_t *h, const char *cluster, const char *key, size_t key_len,
		      uint32_t *nodes, size_t max);

/* A message from endpoint `from` of another node: delivered as
 * shmg_dispatch_local delivers (the endpoint registered at the key and every
 * member, of this node, once each), the events naming `from` as the sender
 * (pid 0: not carried).  Returns the number of local endpoints; 0 for a named
 * cluster not connected here; -EINVAL (bad key or cluster, `from` of this
 * node, node or gen 0, slot >= 65536), -E2BIG, -EBADF, -ECHILD. */
long remote_message_deliver(shmg_t *h, shmg_id_t from, const char *cluster, const char *key,
			    size_t key_len, const void *msg, size_t len);

/* ---- this node's change log, for the agent to send (oplog.c) ---------- */

/* A record read from the log; pointers into the caller's buffer. */
struct oplog_entry {
	uint64_t seq; /* the log's seqs start at 0 */
	uint8_t op, reason;
	shmg_id_t id;
	int32_t pid;
	uint64_t time_ns;
	const char *cluster; /* NUL-terminated, "" for the default cluster */
	const char *key;
	size_t key_len;
	const void *meta;
	size_t meta_len;
};

struct oplog_cursor {
	uint32_t shard;
	uint64_t pos;    /* byte position of the next record */
	uint64_t seq;    /* its expected seq */
	uint64_t resets; /* the log's resets when the cursor was made */
};

/* A cursor is plain data.  A copy saved before a read reads that record
 * again later, or answers -ESTALE once it is overwritten: that is how the
 * agent serves log_read(seq) for a retransmission (keep (seq, cursor) pairs
 * of what is in flight; the checks below make a stale copy harmless). */

/* A cursor at the log's head: the next record written is the first read. */
int oplog_cursor_init(shmg_t *h, uint32_t shard, struct oplog_cursor *cur);
/* The next record into buf (cap: at least oplog_record_max bytes): 0 and
 * *out, -EAGAIN (nothing new), or -ESTALE: the cursor was lapped (records
 * were overwritten before it read them, or are about to be while it
 * copies) or a repair may have lost a record (`resets` moved).  Then the
 * agent resyncs the shard and makes a new cursor. */
int oplog_cursor_next(shmg_t *h, struct oplog_cursor *cur, void *buf, size_t cap,
		      struct oplog_entry *out);
/* The largest record this arena's limits allow. */
size_t oplog_record_max(const shmg_t *h);

/* Waking the agent instead of its polling the heads (the agent_sleeping
 * line of the header).  oplog_wake_bind makes the agent's socket (an fd to
 * poll, or -errno) and publishes its name; oplog_wake_unbind withdraws it.
 * Before sleeping the agent calls oplog_wake_sleeping(h, true), then looks
 * at the heads once more (oplog_cursor_init) and sleeps only if none moved;
 * a writer appending after that sends one datagram.  On waking it calls
 * oplog_wake_sleeping(h, false) and oplog_wake_drain.  A lost wakeup (a
 * writer killed between its record and its send, a scribbled mark) is the
 * agent's to bound with a slow poll. */
int oplog_wake_bind(shmg_t *h);
void oplog_wake_unbind(shmg_t *h, int fd);
void oplog_wake_sleeping(shmg_t *h, bool sleeping);
void oplog_wake_drain(int fd);

/* The protocol's snapshot: this node's own live registrations and
 * memberships of `shard`, each as a REGISTER or JOIN entry (seq 0) given to
 * fn under the shard lock (so fn only copies; the pointers last for the
 * call), and in *next_seq the seq the log's next record will have: the copy
 * is the state after every record before it.  fn's non-zero value stops the
 * walk and is returned; else the number of entries.  -EBUSY, -EIO: the lock
 * was not had. */
long remote_snapshot(shmg_t *h, uint32_t shard, int (*fn)(const struct oplog_entry *e, void *arg),
		     void *arg, uint64_t *next_seq);

#endif
