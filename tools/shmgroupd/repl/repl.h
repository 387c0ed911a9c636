/* SPDX-License-Identifier: MIT */
/*
 * The replication protocol core of shmgroupd (docs/PROTOCOL.md).
 *
 * One `struct repl` is one node's side of the protocol.  It does no I/O and
 * reads no clock: the agent hands it each datagram received and the current
 * time (repl_input), calls repl_poll when the change log moved or the
 * deadline it was given passed, and the core answers through the callbacks
 * of struct repl_ops: datagrams to send to a node, batches of changes to
 * apply to the local store, and reads of this node's change log and
 * snapshots of its own entries.  The same code runs in the agent and in the
 * deterministic simulation (tests/sim/), which is what makes it testable.
 *
 * Threading: none inside.  One repl is driven by one thread at a time; the
 * callbacks run on that thread, inside the call that triggered them, and must
 * not call back into the same repl.
 */
#ifndef REPL_H
#define REPL_H

#include <stddef.h>
#include <stdint.h>

#define REPL_KEY_LEN 32u

/* Reasons, numbered as the library's (enum shmg_reason) plus one. */
enum repl_reason {
	REPL_REASON_NONE = 0,
	REPL_REASON_NORMAL = 1,
	REPL_REASON_EXIT = 2,
	REPL_REASON_NODEDOWN = 3,
	REPL_REASON_CONFLICT = 4,
	REPL_REASON_CLUSTER_DISCONNECT = 5,
	REPL_REASON_RESYNC = 6, /* gone from the owner's slice while this node lagged */
};

/* Operations, numbered as the change log's (lib/layout.h enum oplog_op). */
enum repl_op {
	REPL_OP_REGISTER = 1,
	REPL_OP_UNREGISTER = 2,
	REPL_OP_JOIN = 3,
	REPL_OP_LEAVE = 4,
	/* Markers of this node's own log (never sent): shmg_connect of a new
	 * named cluster and shmg_disconnect append one to every shard, with
	 * the cluster's name, an empty key and no meta (docs/PROTOCOL.md
	 * section 15). */
	REPL_OP_CLUSTER_CONNECT = 5,
	REPL_OP_CLUSTER_DISCONNECT = 6,
};

/* One change, or (in a snapshot or resync) one entry as a REGISTER/JOIN.
 * Pointers stay valid for the duration of the callback that carries it. */
struct repl_record {
	uint64_t seq; /* change-log seq of the owner's shard; 0 in snapshots */
	uint8_t op, reason;
	uint8_t cluster_len; /* 0: the default cluster */
	uint16_t key_len;
	uint32_t meta_len;
	uint32_t node; /* owner: this endpoint's node */
	uint32_t ep_slot, ep_gen;
	int32_t pid;
	uint64_t time_ns; /* registration or join time at the owner */
	const char *cluster, *key;
	const void *meta;
};

enum repl_batch_type {
	/* In-order changes from one owner's shard; `cursor` is the seq of the
	 * last, to be stored with them atomically. */
	REPL_BATCH_DELTA = 1,
	/* The owner's complete slice of one shard as of seq `cursor`: the
	 * store makes its entries of (node, shard) exactly these, in one step
	 * (survivors updated in place, missing ones removed with reason
	 * RESYNC), and stores the cursor. */
	REPL_BATCH_RESYNC = 2,
	/* Every entry of `node`, all shards, goes with `reason`; its cursors
	 * are forgotten. */
	REPL_BATCH_PURGE = 3,
	/* This node left the named cluster `cluster`: every other node's
	 * entries of it go with `reason` (CLUSTER_DISCONNECT); `node` is 0,
	 * cursors and incarnations are kept. */
	REPL_BATCH_PURGE_CLUSTER = 4,
};

struct repl_batch {
	uint8_t type, reason;
	uint16_t shard;
	uint32_t node;
	uint64_t inc; /* the owner's incarnation the entries belong to */
	uint64_t cursor;
	const struct repl_record *records;
	uint32_t n;
	const char *cluster; /* PURGE_CLUSTER: the name, not NUL-terminated */
	uint8_t cluster_len;
};

/* A dispatched message (docs/PROTOCOL.md section 10): from the endpoint
 * (node, ep_slot, ep_gen) to every endpoint of (cluster, key) on the node it
 * is sent to.  Pointers are read during the call that carries it. */
struct repl_message {
	uint64_t msg_no; /* set by the core: the sender's number, per peer */
	uint32_t node;   /* the sender's node (on delivery) */
	uint32_t ep_slot, ep_gen;
	uint8_t cluster_len; /* 0: the default cluster */
	uint16_t key_len;
	uint32_t payload_len;
	const char *cluster, *key;
	const void *payload;
};

enum repl_peer_event {
	REPL_PEER_UP = 1,          /* handshake done; shmg_nodes lists it */
	REPL_PEER_DOWN = 2,        /* silent past down_after, or left: entries purged */
	REPL_PEER_LEFT = 3,        /* said BYE */
	REPL_PEER_REFUSED = 4,     /* handshake refused, by either side; detail says why */
	REPL_PEER_RESTARTED = 5,   /* a new incarnation: old entries purged */
	REPL_PEER_RECONNECTED = 6, /* a new handshake with the same peer run */
};

/* A cursor held() may report: the shard is held, but wanted again by
 * snapshot.  The handshake sends it as the shard's cursor; a sender takes
 * any cursor above its log's head for a snapshot (section 8). */
#define REPL_CURSOR_RESYNC UINT64_MAX

struct repl_ops {
	/* A datagram for node `to`; the agent maps node to address. */
	void (*send)(void *ctx, uint32_t to, const void *buf, size_t len);
	/* Applies a batch to the local store (one shard lock hold in the arena). */
	void (*apply)(void *ctx, const struct repl_batch *b);
	/* The record at `seq` of this node's change log of `shard`: 0, -EAGAIN
	 * if not written yet, -ESTALE if overwritten (or lost to a repair). */
	int (*log_read)(void *ctx, uint16_t shard, uint64_t seq, struct repl_record *out);
	/* The seq of the newest record of `shard` (0: none yet). */
	uint64_t (*log_head)(void *ctx, uint16_t shard);
	/* A consistent copy of this node's own entries of `shard` as of the
	 * returned seq: emit(arg, r) for each; returns the seq, or -errno. */
	int64_t (*snapshot)(void *ctx, uint16_t shard,
			    void (*emit)(void *arg, const struct repl_record *r), void *arg);
	/* What the store holds of `node`: its incarnation (0 none) and, per
	 * shard, the last seq applied (cursors[shards]), or REPL_CURSOR_RESYNC:
	 * the entries are held but the store wants the shard by snapshot
	 * rather than resumed (it lost state of its own, section 17 of
	 * PROTOCOL.md).  Called when a peer is added. */
	void (*held)(void *ctx, uint32_t node, uint64_t *inc, uint64_t *cursors);
	/* A random 64-bit value (handshake nonces). */
	uint64_t (*random)(void *ctx);
	/* Peer state changes, for the agent's log and shmg_nodes; may be NULL. */
	void (*peer_event)(void *ctx, uint32_t node, enum repl_peer_event ev, const char *detail);
	/* A message from peer m->node, once and in its sender's order; may be
	 * NULL (messages are then acked and dropped). */
	void (*deliver)(void *ctx, const struct repl_message *m);
	/* The named clusters this node is connected to now: emit(arg, name,
	 * len) for each.  Called by repl_new, and again if the change log lost
	 * markers before the core read them.  May be NULL: no named clusters
	 * but those the markers announce. */
	void (*clusters)(void *ctx, void (*emit)(void *arg, const char *name, size_t len),
			 void *arg);
	/* Peer `node` is now (not) connected to the named cluster, for
	 * shmg_nodes(cluster).  Every peer that goes down, leaves or restarts
	 * gets `connected` 0 for each of its clusters first.  May be NULL. */
	void (*peer_cluster)(void *ctx, uint32_t node, const char *cluster, size_t len,
			     int connected);
};

/* The seed's knobs under their names (milliseconds, counts), and the
 * protocol's own.  repl_knobs_default fills in the documented defaults. */
struct repl_knobs {
	uint32_t replicated_sender_buffer_size;               /* 64 ops */
	uint32_t replicated_sender_flush_interval;            /* 5 ms */
	uint32_t replicated_registry_receiver_buffer_size;    /* 64 ops */
	uint32_t replicated_registry_receiver_flush_interval; /* 5 ms */
	uint32_t replicated_pg_receiver_buffer_size;          /* 64 ops */
	uint32_t replicated_pg_receiver_flush_interval;       /* 5 ms */
	uint32_t busy_retry_attempts;                         /* 300 */
	uint32_t busy_retry_interval;                         /* 1000 ms */
	uint32_t slow_retry_interval;                         /* 30000 ms, after the attempts */
	uint32_t max_datagram;                                /* 1400 bytes */
	uint32_t heartbeat_interval;                          /* 250 ms */
	uint32_t down_after;                                  /* 5000 ms */
	uint32_t rto_initial, rto_min, rto_max;               /* 200, 50, 2000 ms */
	uint32_t max_snapshot_chunks;                         /* 1 << 20 per resync received */
};

void repl_knobs_default(struct repl_knobs *k);

struct repl_config {
	uint32_t node;         /* this node's number, >= 1 */
	const char *node_name; /* unique in the cluster, 1..64 bytes */
	const char *group;     /* the group (arena) name */
	uint64_t inc;          /* arena incarnation, > 0 */
	uint32_t session;      /* agent run, > 0, larger at each start */
	uint16_t shards;
	const uint8_t *key; /* REPL_KEY_LEN bytes, or NULL: no-key mode */
	struct repl_knobs knobs;
};

struct repl_counters {
	uint64_t rx_datagrams, rx_bad_len, rx_bad_header, rx_wrong_group, rx_other_key;
	uint64_t rx_bad_mac, rx_replay, rx_stale, rx_not_for_us, rx_unknown_peer, rx_not_peered;
	uint64_t rx_bad_body, rx_dup_records, rx_beyond_window, rx_rejects;
	uint64_t tx_datagrams, tx_bytes, tx_records, tx_retransmits, tx_heartbeats;
	uint64_t resyncs_sent, resyncs_applied, resyncs_restarted, purges, handshakes;
	/* The message stream (section 10): first sends, resends, deliveries,
	 * duplicates and out-of-window arrivals dropped, and unacked messages
	 * given up because the receiving peer started a new run. */
	uint64_t tx_messages, tx_message_retransmits, rx_messages, rx_dup_messages;
	uint64_t rx_messages_beyond_window, messages_abandoned;
	/* Named clusters (section 15): this node's set changes, CLUSTERS
	 * frames sent (first and resent) and taken in, peers' sets that gained
	 * a cluster (each resyncs that peer), and markers the change log lost
	 * (the set was read again). */
	uint64_t cluster_changes, tx_cluster_sets, rx_cluster_sets, cluster_gains;
	uint64_t cluster_markers_lost;
};

struct repl;

/* 0 and *out, or -EINVAL (bad config), -ENOMEM, -ENOSYS (libsodium). */
int repl_new(const struct repl_config *cfg, const struct repl_ops *ops, void *ctx,
	     struct repl **out);
void repl_free(struct repl *r);

/* Adds a configured peer (handshakes start at the next repl_poll).
 * -EEXIST (node already a peer, or this node), -EINVAL, -ENOSPC. */
int repl_peer_add(struct repl *r, uint32_t node, const char *name);

/* One received datagram.  Never fails: bad input is counted and dropped. */
void repl_input(struct repl *r, uint64_t now_us, const void *buf, size_t len);
/* Timers, new local changes, batching: call when the change log moved or at
 * the deadline. */
void repl_poll(struct repl *r, uint64_t now_us);
/* The time repl_poll should next run, absent input (UINT64_MAX: never). */
uint64_t repl_deadline(const struct repl *r);
/* A clean stop: BYE to every peer that is up. */
void repl_leave(struct repl *r, uint64_t now_us);
/* The change log of `shard` lost records (a repair): resync every peer. */
void repl_log_reset(struct repl *r, uint16_t shard);

/* Messages a peer may have unacked at once, and their bytes (cluster, key
 * and payload). */
#define REPL_MSG_WINDOW 256u
#define REPL_MSG_WINDOW_BYTES (256u * 1024u)

/* Queues m (msg_no and node ignored) for peer `node`: it is sent at the next
 * repl_poll (the deadline becomes now) and resent until acked; the peer
 * delivers it once, in this node's order.  Messages still unacked when the
 * peer starts a new run (new incarnation or session) are given up
 * (messages_abandoned).  0; -ENOTCONN (not a peer, or not up); -EAGAIN
 * (REPL_MSG_WINDOW messages or REPL_MSG_WINDOW_BYTES unacked: nothing
 * queued); -EINVAL (key empty or too long, payload too long, NUL in the key
 * or cluster); -ENOMEM. */
int repl_dispatch(struct repl *r, uint32_t node, const struct repl_message *m);

const struct repl_counters *repl_counters(const struct repl *r);
/* Named clusters this node announces at most; beyond, the rest are not
 * announced and peers do not send their entries (section 17). */
#define REPL_MAX_CLUSTERS 512u
/* 1 if this node's set (as the core knows it from the markers) holds the
 * named cluster; 1 for the default one (len 0). */
int repl_cluster_connected(const struct repl *r, const char *name, size_t len);
/* 1 if peer `node` announced the named cluster (len 0: up). */
int repl_peer_in_cluster(const struct repl *r, uint32_t node, const char *name, size_t len);

/* 1 if `node` is a peer whose handshake is done. */
int repl_peer_is_up(const struct repl *r, uint32_t node);
/* The run (incarnation, session) of peer `node` this node's message stream
 * towards it is numbered for: 0, or -ENOENT (not a peer, or never up). */
int repl_peer_run(const struct repl *r, uint32_t node, uint64_t *inc, uint32_t *session);

#endif
