/* SPDX-License-Identifier: MIT */
/*
 * A deterministic simulation of shmgroupd's replication: dozens of nodes,
 * each a protocol core (tools/shmgroupd/repl) over an in-memory store and
 * change log, joined by a seeded network that loses, duplicates, delays,
 * reorders and partitions datagrams, with host crashes (a new incarnation),
 * agent restarts (a new session, the store kept) and clean leaves.
 *
 * Everything (workload, network, faults, nonces) is drawn from one PRNG
 * seeded by the run's number, and time is the simulation's, so a seed
 * replays exactly.  The checker (sim_check.c) verifies after every batch a
 * node applies that the slice it touched equals a state the owner really had
 * (no partial resync, no zombie, no reordering), and at the end that every
 * survivor holds exactly every live owner's current entries and nothing of
 * the dead.
 */
#ifndef SHMG_SIM_H
#define SHMG_SIM_H

#include <stdint.h>

#include "claims.h"
#include "repl.h"

#define SIM_MAX_NODES 48
#define SIM_MAX_SHARDS 8
#define SIM_ENDPOINTS 4
#define SIM_KEY_MAX 16
#define SIM_CLUSTER_MAX 8
#define SIM_CLUSTERS 2 /* named clusters "c0", "c1" */

/* One entry as a store holds it; also a change-log record (op set). */
struct sim_rec {
	uint64_t seq;
	uint8_t op, reason;
	uint16_t shard;
	uint32_t node, ep_slot, ep_gen;
	int32_t pid;
	uint64_t time_ns;
	uint8_t cluster_len, key_len;
	char cluster[SIM_CLUSTER_MAX], key[SIM_KEY_MAX];
	uint32_t meta_len;
	uint8_t *meta; /* owned by whoever holds the sim_rec */
};

/* What a store holds of one owner. */
struct sim_slice {
	uint64_t inc; /* 0: nothing */
	uint64_t cursor[SIM_MAX_SHARDS];
	struct sim_rec *e;
	uint32_t n, cap;
};

/* Every change-log record one node wrote in one incarnation, per shard. */
struct sim_history {
	uint32_t node;
	uint64_t inc;
	struct sim_rec *rec[SIM_MAX_SHARDS];
	uint64_t n[SIM_MAX_SHARDS], cap[SIM_MAX_SHARDS];
	struct sim_history *next;
};

struct sim_node {
	uint32_t id;
	char name[16];
	int host_up, agent_up;
	uint64_t inc;
	uint32_t session;
	struct repl *repl;
	uint64_t timer_at;                          /* the pending poll event, UINT64_MAX none */
	struct sim_slice slices[SIM_MAX_NODES + 1]; /* by owner node; own at [id] */
	struct sim_history *hist;                   /* the current incarnation's log */
	uint32_t ep_gen[SIM_ENDPOINTS];
	uint64_t rng;   /* the core's nonces */
	int log_remote; /* the change log also records applied remote changes */
	int retired;    /* stays down to the end of the run */
	/* The registry as readers see it (sim_conflicts.c): one claim per
	 * (cluster, key), the rule's winner among the claims held; the others
	 * wait in `hidden`.  registry_count is the store's count of it, kept
	 * as the arena keeps its counters, for the index check. */
	struct sim_slice visible;
	struct repl_claims *hidden;
	uint32_t registry_count;
	uint8_t connected; /* named clusters connected, bit i = "c<i>" (sim_clusters.c) */
	uint8_t marks[SIM_MAX_NODES + 1]; /* peers' clusters, as peer_cluster told */
};

struct sim_params {
	uint32_t nodes, shards, log_cap;
	uint32_t loss_pct, dup_pct, delay_us, jitter_us;
	uint64_t chaos_us, settle_us;
	uint32_t ops_per_s_per_node;
	uint32_t crash_pct, agent_restart_pct, leave_pct, partition_pct; /* per 100 ms */
	uint32_t big_meta_pct;
	int resolver; /* a user resolver decides conflicts (sim_conflicts.c) */
	struct repl_knobs knobs;
};

struct sim_event;
struct sim_msg;

/* The last message delivered at a receiver from one sender (sim_dispatch.c). */
struct sim_msg_last {
	int valid;
	uint64_t index, src_inc, dst_inc;
	uint32_t src_session, dst_session;
};

struct sim {
	uint64_t seed, rng, now, event_seq;
	struct sim_params p;
	struct sim_node node[SIM_MAX_NODES + 1];
	uint8_t blocked[SIM_MAX_NODES + 1][SIM_MAX_NODES + 1]; /* [from][to] */
	uint64_t heal_at;
	struct sim_event **heap;
	uint32_t heap_n, heap_cap;
	struct sim_history *histories;
	struct sim_shadow *shadows; /* [(receiver * (N+1) + owner) * shards + shard] */
	uint64_t next_inc;
	int verbose;
	char failure[512];
	/* Figures for the report. */
	uint64_t by_type[8];
	uint64_t datagrams, delivered, lost, batches, resyncs, purges, crashes, restarts;
	/* Remote dispatch (sim_dispatch.c). */
	uint64_t msg_rng;
	struct sim_msg *msgs;
	uint32_t n_msgs, cap_msgs;
	uint64_t msgs_delivered;
	struct sim_msg_last msg_last[SIM_MAX_NODES + 1][SIM_MAX_NODES + 1];
	/* Conflicts (sim_conflicts.c, sim_invariants.c). */
	uint64_t conflicts, digest;
	uint64_t cl_rng; /* named clusters' draws (sim_clusters.c) */
};

/* sim_net.c: the event queue and the faulty network. */
void sim_send(struct sim *s, uint32_t from, uint32_t to, const void *buf, size_t len);
void sim_schedule_poll(struct sim *s, uint32_t node);
void sim_schedule(struct sim *s, uint64_t at, int type, uint32_t node);
int sim_step(struct sim *s, uint64_t until);
void sim_partition(struct sim *s);
void sim_heal(struct sim *s);
void sim_net_free(struct sim *s);
enum {
	EV_DELIVER = 1,
	EV_POLL = 2,
	EV_OP = 3,
	EV_FAULT = 4,
	EV_RESTART = 5
};

/* sim_node.c: stores, change logs, the core's callbacks, faults. */
uint64_t sim_rand(uint64_t *state);
uint32_t sim_below(struct sim *s, uint32_t n);
void sim_node_start(struct sim *s, uint32_t id);
void sim_node_stop_agent(struct sim *s, uint32_t id, int clean);
void sim_node_crash(struct sim *s, uint32_t id);
void sim_local_op(struct sim *s, uint32_t id);
void sim_free(struct sim *s);
uint16_t sim_shard_of(const struct sim *s, const char *cluster, size_t cl, const char *key,
		      size_t kl);

/* Appends a marker (op CLUSTER_CONNECT/DISCONNECT) to the node's log. */
void sim_log_marker(struct sim *s, struct sim_node *n, const struct sim_rec *m);
/* Removes the node's own entries of a cluster, each change logged with
 * reason cluster_disconnect. */
void sim_remove_own(struct sim *s, struct sim_node *n, const char *cluster, size_t len);

/* sim_clusters.c: hosts connecting and disconnecting named clusters. */
int sim_cluster_index(const char *name, size_t len);
const char *sim_cluster_name(int i); /* "c<i>" */
/* 1 if the node's arena is connected to the cluster (len 0: the default). */
int sim_cluster_open(const struct sim_node *n, const char *name, size_t len);
void sim_clusters_new_arena(struct sim *s, struct sim_node *n);
void sim_clusters_op(struct sim *s, uint32_t id);
void sim_clusters_emit(const struct sim_node *n,
		       void (*emit)(void *arg, const char *name, size_t len), void *arg);
void sim_clusters_mark(struct sim *s, uint32_t id, uint32_t peer, const char *name, size_t len,
		       int connected);
/* The final check of what running node rn holds of, and marks for, on. */
void sim_clusters_check_final(struct sim *s, const struct sim_node *rn, const struct sim_node *on);

/* sim_dispatch.c: messages dispatched to the nodes holding a key's entries,
 * checked delivered once, in order, to the run they were meant for. */
void sim_dispatch_op(struct sim *s, uint32_t id);
void sim_dispatch_delivered(struct sim *s, uint32_t receiver, const struct repl_message *m);
void sim_dispatch_check_final(struct sim *s);
void sim_dispatch_free(struct sim *s);

/* sim_conflicts.c: the store's registry over the claims it holds (claims.h),
 * and the loser's owner evicting its endpoint. */
/* A REGISTER or UNREGISTER the node's store took (local or remote). */
void sim_claims_change(struct sim *s, uint32_t id, const struct sim_rec *r);
void sim_claims_purge(struct sim *s, uint32_t id, uint32_t owner);
/* Other owners' claims of a named cluster node `id` left (len 0: of every
 * cluster it is not connected to), visible and hidden, as purge_cluster
 * removes their entries. */
void sim_claims_purge_cluster(struct sim *s, uint32_t id, const char *cluster, size_t len);
void sim_claims_forget(struct sim *s, uint32_t id);
int sim_claims_taken(const struct sim *s, uint32_t id, const struct sim_rec *r);
int sim_claims_resolver(const struct repl_record *a, const struct repl_record *b, void *arg);
void sim_rec_to_repl(const struct sim_rec *in, struct repl_record *out);
/* A claim (a REGISTER) as a sim_rec; the metadata is borrowed. */
void sim_rec_from_claim(const struct sim *s, const struct repl_record *in, struct sim_rec *out);
int sim_same_key(const struct sim_rec *a, const struct sim_rec *b);
/* Same owner endpoint, time, key and metadata. */
int sim_same_claim(const struct sim_rec *a, const struct sim_rec *b);
/* sim_node.c: endpoint ep (0-based) of node id dies; its entries go with `reason`. */
void sim_endpoint_exit(struct sim *s, uint32_t id, uint32_t ep, uint8_t reason);

/* sim_invariants.c: the invariants of the checker (docs/PROTOCOL.md
 * section 16): after a batch, the visible claim of each key it touched is
 * the rule's winner among the claims held; at the end, the cross-node ones. */
void sim_invariants_batch(struct sim *s, uint32_t id, const struct repl_batch *b);
void sim_invariants_eviction(struct sim *s, uint32_t id, const struct sim_rec *loser,
			     const struct sim_rec *winner);
void sim_invariants_final(struct sim *s, int pass);

/* sim_check.c */
void sim_check_batch(struct sim *s, uint32_t receiver, const struct repl_batch *b);
void sim_check_final(struct sim *s);
/* The receiver's store is gone (host crash): its shadows start over. */
void sim_check_forget(struct sim *s, uint32_t receiver);
void sim_check_free(struct sim *s);
int sim_rec_equal(const struct sim_rec *a, const struct sim_rec *b);
void sim_fail(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Runs one seed; 0 if every check held, -1 with s->failure set. */
int sim_run(uint64_t seed, int verbose, struct sim *out_stats);

#endif
