/* SPDX-License-Identifier: MIT */
/*
 * The replication datagram format (docs/PROTOCOL.md section 3): pure encode
 * and decode, no state, no allocation.  Every decode checks every length
 * against the bytes it was given and returns -EBADMSG rather than reading
 * past them, so the decoder is safe on any input (tests/fuzz/fuzz_wire.c).
 *
 * All integers are little-endian and unaligned.  A datagram is
 *   header (WIRE_HEADER_LEN) | body (body_len) | MAC (WIRE_MAC_LEN)
 * and a DATA body is a sequence of frames, each `kind, flags, len, payload`.
 */
#ifndef REPL_WIRE_H
#define REPL_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define WIRE_MAGIC 0x31524753u /* "SGR1" little-endian */
#define WIRE_VERSION 1u
#define WIRE_HEADER_LEN 64u
#define WIRE_MAC_LEN 16u
#define WIRE_OVERHEAD (WIRE_HEADER_LEN + WIRE_MAC_LEN)
#define WIRE_MAX_DATAGRAM 65507u /* the largest UDP payload over IPv4 */
#define WIRE_MAX_BODY (WIRE_MAX_DATAGRAM - WIRE_OVERHEAD)
#define WIRE_FRAME_HEADER_LEN 4u
#define WIRE_RECORD_FIXED_LEN 40u
#define WIRE_DISPATCH_FIXED_LEN 24u
#define WIRE_CLUSTER_MAX 255u
#define WIRE_KEY_MAX 1024u   /* shmgroup's key_max ceiling */
#define WIRE_META_MAX 16384u /* shmgroup's meta_max ceiling */
#define WIRE_NAME_MAX 64u    /* node names */
#define WIRE_GROUP_MAX 200u  /* group names, as shmgroupd accepts them */
#define WIRE_MAX_SHARDS 256u
#define WIRE_MAX_RANGES 8u
#define WIRE_REASON_TEXT_MAX 200u
#define WIRE_CLUSTERS_FIXED_LEN 8u
#define WIRE_SET_NAME_MAX 63u  /* named clusters in a CLUSTERS frame (shmgroup's limit) */
#define WIRE_SET_MAX 512u      /* clusters in one CLUSTERS frame */

enum wire_type {
	WIRE_HELLO = 1,
	WIRE_HELLO_ACK = 2,
	WIRE_HELLO_CONFIRM = 3,
	WIRE_REJECT = 4,
	WIRE_DATA = 5,
	WIRE_BYE = 6,
};

enum wire_frame_kind {
	WIRE_F_PEER_ACK = 1,
	WIRE_F_LOG = 2,
	WIRE_F_SNAP = 3,
	WIRE_F_ACK = 4,
	WIRE_F_DISPATCH = 5,
	WIRE_F_CLUSTERS = 6,
};

/* Change-log operations, numbered as lib/layout.h's enum oplog_op. */
enum wire_op {
	WIRE_OP_REGISTER = 1,
	WIRE_OP_UNREGISTER = 2,
	WIRE_OP_JOIN = 3,
	WIRE_OP_LEAVE = 4,
};

enum wire_stream_mode {
	WIRE_MODE_LOG = 1,
	WIRE_MODE_SNAP = 2,
	WIRE_MODE_MSG = 3, /* the message stream: ids are message numbers, shard 0 */
	WIRE_MODE_SET = 4, /* the sender's cluster set: cum is its version, shard 0, no ranges */
};

enum wire_reject_reason {
	WIRE_REJECT_GROUP = 1,
	WIRE_REJECT_SHARDS = 2,
	WIRE_REJECT_KEY = 3,
	WIRE_REJECT_NODE = 4,
	WIRE_REJECT_VERSION = 5,
};

struct wire_header {
	uint32_t magic;
	uint8_t version, type;
	uint16_t body_len;
	uint64_t group_hash;
	uint32_t key_id;
	uint32_t src_node;
	uint64_t src_inc;
	uint32_t src_session;
	uint32_t dst_node;
	uint64_t dst_inc;
	uint32_t dst_session;
	uint32_t conn; /* the handshake's connection id: DATA and BYE only, else 0 */
	uint64_t pkt_no;
};

/* HELLO, HELLO_ACK and HELLO_CONFIRM share one body. */
struct wire_hello {
	uint16_t shards;
	uint64_t nonce;     /* the sender's fresh nonce for this handshake */
	uint64_t echo;      /* the nonce this answers; 0 in HELLO */
	uint64_t held_inc;  /* incarnation of the receiver whose entries the sender holds, 0 none */
	uint16_t n_cursors; /* 0 or shards */
	const char *name;   /* not NUL-terminated */
	uint8_t name_len;
	const char *group;
	uint8_t group_len;
	const uint8_t *cursors; /* n_cursors u64 LE: per shard, the last seq applied */
};

struct wire_reject {
	uint8_t reason;
	uint8_t text_len;
	const char *text;
};

struct wire_frame {
	uint8_t kind, flags;
	uint16_t len;
	const uint8_t *payload;
};

/* One change-log record or snapshot entry (seq 0 in a snapshot). */
struct wire_record {
	uint64_t seq;
	uint8_t op, reason, cluster_len;
	uint16_t key_len;
	uint32_t meta_len;
	uint32_t ep_slot, ep_gen;
	int32_t pid;
	uint64_t time_ns;
	const char *cluster, *key;
	const void *meta;
};

struct wire_peer_ack {
	uint64_t largest_pkt_no;
	uint32_t delay_us;
};

/* F_LOG covers [from_seq, to_seq]: seqs inside it without a record were
 * filtered out by the sender and count as delivered.  F_SNAP is chunk
 * chunk_no of n_chunks of the snapshot sync_id taken at seq at_seq. */
struct wire_data_frame {
	uint16_t shard, n;
	uint32_t sync_id, chunk_no, n_chunks;
	uint64_t from_seq, to_seq, at_seq;
	const uint8_t *records; /* n encoded records */
	size_t records_len;
};

/* F_DISPATCH: message msg_no of the sender's message stream to this peer,
 * from the sender's endpoint (slot, gen), for (cluster, key). */
struct wire_dispatch {
	uint64_t msg_no;
	uint8_t cluster_len;
	uint16_t key_len;
	uint32_t payload_len;
	uint32_t ep_slot, ep_gen;
	const char *cluster, *key;
	const void *payload;
};

/* F_CLUSTERS: the named clusters the sender is connected to, as of its
 * `version` (which only grows within one run of the sender).  Each item is
 * (gen, name): gen changes at every new connect of that name, so a receiver
 * can tell a reconnect from the same connection.  Items are read with
 * wire_cluster_next; they are strictly ascending (by length, then bytes). */
struct wire_clusters {
	uint32_t version;
	uint16_t n;
	const uint8_t *items;
	size_t items_len;
};

struct wire_cluster {
	uint32_t gen;
	uint8_t name_len;
	const char *name; /* not NUL-terminated */
};

struct wire_range {
	uint32_t start; /* offset from cum + 1 */
	uint32_t len;
};

struct wire_ack {
	uint16_t shard;
	uint8_t mode, n_ranges;
	uint32_t sync_id;
	uint64_t cum;
	struct wire_range ranges[WIRE_MAX_RANGES];
};

/* ---- decoding: 0 or -EBADMSG ------------------------------------------ */

/* Checks magic, version, type and that len == header + body_len + MAC. */
int wire_header_decode(const void *buf, size_t len, struct wire_header *h);
int wire_hello_decode(const uint8_t *body, size_t len, struct wire_hello *out);
int wire_reject_decode(const uint8_t *body, size_t len, struct wire_reject *out);
/* Frame iteration: *off starts at 0; returns 1 with a frame, 0 at the end. */
int wire_frame_next(const uint8_t *body, size_t len, size_t *off, struct wire_frame *f);
int wire_peer_ack_decode(const struct wire_frame *f, struct wire_peer_ack *out);
/* Decodes the frame's fixed part; records are read with wire_record_next. */
int wire_data_decode(const struct wire_frame *f, struct wire_data_frame *out);
int wire_ack_decode(const struct wire_frame *f, struct wire_ack *out);
int wire_dispatch_decode(const struct wire_frame *f, struct wire_dispatch *out);
/* Checks the whole frame, every item included. */
int wire_clusters_decode(const struct wire_frame *f, struct wire_clusters *out);
/* Item iteration over a decoded frame: *off starts at 0; 1 with an item, 0
 * at the end. */
int wire_cluster_next(const struct wire_clusters *c, size_t *off, struct wire_cluster *out);
/* The order items must follow: < 0, 0, > 0 as a sorts before, equal to, after b. */
int wire_cluster_cmp(const char *a, size_t a_len, const char *b, size_t b_len);
/* Record iteration over a data frame's records: *off starts at 0; returns 1
 * with a record, 0 at the end. */
int wire_record_next(const uint8_t *p, size_t len, size_t *off, struct wire_record *r);
/* Decodes every layer of a datagram without authenticating it (the fuzz
 * target and the corpus test); returns the number of records seen or
 * -EBADMSG. */
int wire_decode_all(const void *buf, size_t len);

/* ---- encoding ------------------------------------------------------- */

/* A bounded writer; `overflow` is set instead of writing past cap. */
struct wire_writer {
	uint8_t *buf;
	size_t cap, len;
	int overflow;
};

void wire_writer_init(struct wire_writer *w, void *buf, size_t cap);
void wire_put_u8(struct wire_writer *w, uint8_t v);
void wire_put_u16(struct wire_writer *w, uint16_t v);
void wire_put_u32(struct wire_writer *w, uint32_t v);
void wire_put_u64(struct wire_writer *w, uint64_t v);
void wire_put_bytes(struct wire_writer *w, const void *p, size_t n);

/* The header with body_len 0; wire_finish_body sets it once the body is in. */
void wire_header_encode(struct wire_writer *w, const struct wire_header *h);
void wire_finish_body(struct wire_writer *w);
void wire_hello_encode(struct wire_writer *w, const struct wire_hello *hello);
void wire_reject_encode(struct wire_writer *w, const struct wire_reject *r);
/* Frames: begin returns the frame's offset, end patches its length. */
size_t wire_frame_begin(struct wire_writer *w, uint8_t kind);
void wire_frame_end(struct wire_writer *w, size_t frame_off);
void wire_peer_ack_encode(struct wire_writer *w, const struct wire_peer_ack *a);
void wire_ack_encode(struct wire_writer *w, const struct wire_ack *a);
/* A whole F_DISPATCH frame; wire_dispatch_size is its length with the frame
 * header. */
void wire_dispatch_encode(struct wire_writer *w, const struct wire_dispatch *d);
size_t wire_dispatch_size(const struct wire_dispatch *d);
/* An F_CLUSTERS frame: the fixed part after wire_frame_begin, then each
 * item in ascending order, then wire_frame_end. */
void wire_clusters_encode(struct wire_writer *w, uint32_t version, uint16_t n);
void wire_cluster_encode(struct wire_writer *w, const struct wire_cluster *c);

/* The fixed part of an F_LOG or F_SNAP frame (after wire_frame_begin); n is
 * patched by wire_data_set_count once the records are in. */
size_t wire_data_encode(struct wire_writer *w, uint8_t kind, const struct wire_data_frame *d);
void wire_data_set_count(struct wire_writer *w, size_t fixed_off, uint16_t n, uint64_t to_seq);
void wire_record_encode(struct wire_writer *w, const struct wire_record *r);
size_t wire_record_size(const struct wire_record *r);

uint64_t wire_get_u64(const uint8_t *p);

/* FNV-1a 64 of the group name: the header's group_hash. */
uint64_t wire_group_hash(const char *name, size_t len);

#endif
