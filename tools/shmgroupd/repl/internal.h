/* SPDX-License-Identifier: MIT */
/*
 * State shared by the core's files: the node (struct repl), its peer table,
 * and per peer the streams of each shard in both directions.
 */
#ifndef REPL_INTERNAL_H
#define REPL_INTERNAL_H

#include <stdint.h>

#include "auth.h"
#include "repl.h"
#include "rto.h"
#include "stream.h"
#include "wire.h"

#define REPL_MAX_PEERS 256u
#define PKT_LOG 256u /* send times of the last packets, for RTT samples */

enum peer_state {
	PEER_DOWN = 0,    /* no session: sending HELLOs on the retry schedule */
	PEER_UP = 1,      /* handshake done both ways as far as we know */
	PEER_REFUSED = 2, /* incompatible: retried only on the slow schedule */
};

/* A snapshot being sent (resync.c). */
struct resync_tx {
	uint32_t sync_id;
	uint64_t at_seq;
	uint8_t *data; /* encoded records */
	size_t len, cap;
	uint32_t *chunk_off; /* chunk k (1-based) is data[chunk_off[k-1], chunk_off[k]) */
	uint16_t *chunk_n;   /* records per chunk */
	uint32_t n_chunks;
};

/* A snapshot being received: chunks staged, applied only when complete. */
struct resync_rx {
	uint32_t sync_id; /* 0: none */
	uint64_t at_seq;
	uint32_t n_chunks;
	uint32_t committed_id; /* the last applied, to re-ack its duplicates */
	struct stream_rx rx; /* chunk numbers as ids */
	void **chunks;       /* delivered chunk copies, in order */
	uint32_t n_delivered;
};

/* One queued in-order change copy (LOG receive path). */
struct pending_rec {
	uint64_t seq;
	uint8_t *bytes; /* the encoded record */
	size_t len;
};

struct shard_tx {
	uint8_t mode; /* WIRE_MODE_LOG or WIRE_MODE_SNAP */
	struct stream_tx st;
	struct resync_tx snap;
	uint64_t skip_to; /* seqs from st.next up to here are other owners' */
	/* A resync for a cluster the peer joined is owed until the peer
	 * applied it: a new handshake restarts it rather than the log. */
	uint8_t cluster_resync;
	/* A record or entry of a named cluster was read for the peer (sent
	 * or held back) since the last snapshot, or this run does not know
	 * (set from the start): only such a shard needs a snapshot when the
	 * peer joins a cluster.  A shard that never held a named cluster's
	 * entry is never resent. */
	uint8_t named;
};

struct shard_rx {
	struct stream_rx log;
	struct resync_rx snap;
	struct pending_rec *pend; /* delivered, waiting for the apply flush */
	uint32_t n_pend, cap_pend;
	uint8_t ack_log, ack_snap;
	bool want_snapshot; /* the store asked for it (REPL_CURSOR_RESYNC): until
			     * one commits, handshakes ask for it again */
};

/* A queued message's copy: the encoded DISPATCH frame, for resends. */
struct msg_copy {
	uint8_t *frame;
	size_t len;
};

/* The message stream in both directions (message.c).  Its numbering
 * belongs to one run of each side: `run_inc`/`run_session` name the peer's
 * run it was last reset for. */
struct msg_stream {
	struct stream_tx tx;
	struct msg_copy q[REPL_MSG_WINDOW]; /* message n at n % REPL_MSG_WINDOW, for n in (acked, last] */
	uint64_t last; /* highest number queued */
	size_t bytes;  /* payload bytes of the queued copies */
	struct stream_rx rx;
	int ack_owed;
	uint64_t run_inc;
	uint32_t run_session;
};

/* A set of named clusters (clusters.c), sorted by wire_cluster_cmp. */
struct cluster_mark {
	uint32_t gen; /* the announcer's number for this connection of the name */
	uint8_t len;
	char name[WIRE_SET_NAME_MAX];
};

struct cluster_set {
	struct cluster_mark *c;
	uint32_t n, cap;
};

/* What a peer announced (clusters.c), and our announcements to it. */
struct peer_clusters {
	struct cluster_set known;
	uint32_t version;       /* of `known`; 0: nothing announced by this run */
	uint64_t run_inc;       /* the peer's run `known` belongs to */
	uint32_t run_session;
	int reported;           /* peer_cluster told the store about `known` */
	int ack_owed;
	uint32_t acked;         /* our version the peer acked under this connection */
	uint32_t sent_version;  /* ours last sent, and when */
	uint64_t sent_at;
	unsigned tries;
};

struct peer {
	uint32_t node;
	char name[WIRE_NAME_MAX + 1];
	enum peer_state state;
	/* Who the peer is now (valid when UP) and which incarnation our store
	 * holds entries of. */
	uint64_t inc;
	uint32_t session;
	uint64_t held_inc;
	/* Handshake.  conn identifies the completed handshake; DATA under
	 * any other id is dropped. */
	uint32_t conn;
	int confirm_pending;         /* completed on HELLO_ACK: HELLO_CONFIRM is repeated
			      * until DATA under conn arrives */
	uint64_t hs_ours, hs_theirs; /* the nonces conn was made of */
	uint64_t nonce;              /* ours for the current attempt */
	uint64_t next_hello;         /* when to send the next HELLO */
	uint32_t attempts;
	uint64_t last_reject_sent;
	/* Transport. */
	uint64_t pkt_no; /* last packet number sent to it, this session */
	uint64_t pkt_sent_at[PKT_LOG];
	uint64_t largest_acked_pkt;
	struct auth_replay replay;
	uint64_t largest_rx_pkt, largest_rx_at;
	int peer_ack_owed;
	struct rto rto;
	/* Failure detector and batching. */
	uint64_t last_heard;     /* last authenticated DATA from it */
	uint64_t last_sent;      /* last DATA datagram to it */
	uint64_t last_data_sent; /* last datagram carrying new records */
	uint64_t pending_since;  /* new records noticed but not yet sent, 0 none */
	struct shard_tx *tx;     /* [shards] */
	struct shard_rx *rx;     /* [shards] */
	struct msg_stream msg;
	struct peer_clusters cl;
};

struct repl {
	struct repl_config cfg;
	char node_name[WIRE_NAME_MAX + 1];
	char group[WIRE_GROUP_MAX + 1];
	uint64_t group_hash;
	struct auth_key key;
	const struct repl_ops *ops;
	void *ctx;
	struct peer *peers[REPL_MAX_PEERS];
	unsigned n_peers;
	uint64_t now;
	uint64_t deadline;
	uint32_t next_sync_id;
	struct repl_counters c;
	uint8_t *buf; /* one datagram being built */
	/* This node's named clusters, learnt from its log's markers. */
	struct cluster_set clusters;
	uint32_t clusters_version; /* grows at each change; 0: never had one */
	uint32_t clusters_gen;     /* the last gen given to a connection */
	uint64_t marker_seen;      /* shard 0's log is read for markers up to here */
};

/* peer.c */
struct peer *peer_find(struct repl *r, uint32_t node);
void peer_input_hello(struct repl *r, const struct wire_header *h, const uint8_t *body);
void peer_input_reject(struct repl *r, const struct wire_header *h, const uint8_t *body);
void peer_input_bye(struct repl *r, struct peer *p);
void peer_poll_handshake(struct repl *r, struct peer *p);
void peer_down(struct repl *r, struct peer *p, enum repl_peer_event ev, const char *why);
void peer_free_streams(struct repl *r, struct peer *p);
void peer_event(struct repl *r, struct peer *p, enum repl_peer_event ev, const char *detail);

/* detector.c */
void detector_poll(struct repl *r, struct peer *p);
void detector_heard(struct repl *r, struct peer *p);

/* resync.c */
int resync_tx_start(struct repl *r, struct peer *p, uint16_t shard);
void resync_tx_free(struct resync_tx *s);
void resync_rx_reset(struct resync_rx *s);
void resync_rx_input(struct repl *r, struct peer *p, const struct wire_data_frame *d);
void resync_tx_on_ack(struct repl *r, struct peer *p, uint16_t shard, const struct wire_ack *a);

/* message.c */
void msg_init(struct repl *r, struct peer *p);
void msg_free(struct msg_stream *m);
/* The handshake is done with the peer's run p->inc, p->session. */
void msg_peer_run(struct repl *r, struct peer *p);
void msg_input(struct repl *r, struct peer *p, const struct wire_frame *f);
void msg_ack_input(struct repl *r, struct peer *p, const struct wire_ack *a);

/* clusters.c */
void clusters_init(struct repl *r);
void clusters_free(struct repl *r);
void clusters_peer_free(struct peer *p);
/* Reads this node's new markers (shard 0's log) up to what the streams read. */
void clusters_scan(struct repl *r);
/* The CLUSTERS frame for p is due (never sent, or unacked past the RTO). */
int clusters_due(struct repl *r, struct peer *p);
size_t clusters_frame_size(const struct repl *r);
void clusters_encode(struct repl *r, struct peer *p, struct wire_writer *w);
void clusters_input(struct repl *r, struct peer *p, const struct wire_frame *f);
void clusters_ack_input(struct repl *r, struct peer *p, const struct wire_ack *a);
/* The handshake with p completed (p->inc, p->session are the new run). */
void clusters_peer_up(struct repl *r, struct peer *p);
void clusters_peer_down(struct repl *r, struct peer *p);
int clusters_find(const struct cluster_set *s, const char *name, size_t len);

/* 1 if the record goes to p: not a marker, and of a cluster p is in. */
static inline int clusters_peer_wants(const struct peer *p, const struct repl_record *rec)
{
	if (rec->op > REPL_OP_LEAVE)
		return 0;
	if (rec->cluster_len == 0)
		return 1;
	return clusters_find(&p->cl.known, rec->cluster, rec->cluster_len) >= 0;
}

/* Whether this node's record goes to p (clusters_peer_wants), noting in
 * tx->named one of a named cluster. */
static inline int clusters_send(const struct peer *p, struct shard_tx *tx,
				const struct repl_record *rec)
{
	if (rec->cluster_len && rec->op <= REPL_OP_LEAVE)
		tx->named = 1;
	return clusters_peer_wants(p, rec);
}

/* repl.c: datagram building shared by the handshake and the streams */
size_t repl_begin(struct repl *r, struct peer *p, uint8_t type, struct wire_writer *w);
void repl_send(struct repl *r, struct peer *p, struct wire_writer *w);
void repl_output(struct repl *r, struct peer *p, int force);
void repl_tx_init(struct repl *r, struct peer *p, const uint8_t *cursors, uint64_t held_inc);
void repl_rx_reset(struct repl *r, struct peer *p);
void repl_set_deadline(struct repl *r, uint64_t at);
uint64_t repl_ms(uint32_t ms);
/* The change a decoded record carries, owned by `node`. */
void repl_record_from_wire(uint32_t node, const struct wire_record *w, struct repl_record *out);

#endif
