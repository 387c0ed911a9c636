/* SPDX-License-Identifier: MIT */
/*
 * The replication core's pieces on their own: the wire format (round trips,
 * every truncation and every flipped byte of valid datagrams), the MAC and
 * the replay window, the ack windows, and two cores talking directly (the
 * handshake, its refusals on both sides, and the batching rule).
 *
 * `test_repl --write-corpus DIR` writes the valid datagrams built here into
 * DIR: that is how tests/fuzz/corpus was made.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "repl.h"
#include "stream.h"
#include "tc_check.h"
#include "wire.h"

/* ---- sample datagrams ------------------------------------------------ */

static size_t header(struct wire_writer *w, uint8_t *buf, size_t cap, uint8_t type)
{
	struct wire_header h = { .type = type,
				 .group_hash = wire_group_hash("g", 1),
				 .key_id = 7,
				 .src_node = 1,
				 .src_inc = 10,
				 .src_session = 1,
				 .dst_node = 2,
				 .dst_inc = 20,
				 .dst_session = 3,
				 .conn = type == WIRE_DATA || type == WIRE_BYE ? 99 : 0,
				 .pkt_no = 5 };
	wire_writer_init(w, buf, cap);
	wire_header_encode(w, &h);
	return w->len;
}

static size_t finish(struct wire_writer *w)
{
	wire_finish_body(w);
	memset(w->buf + w->len, 0xAB, WIRE_MAC_LEN); /* the decoder does not check MACs */
	return w->len + WIRE_MAC_LEN;
}

static size_t sample_hello(uint8_t *buf, size_t cap)
{
	struct wire_writer w;
	uint8_t cursors[16] = { 1, 0, 0, 0, 0, 0, 0, 0, 2 };
	struct wire_hello h = { .shards = 2,
				.nonce = 0x1234,
				.echo = 0x5678,
				.held_inc = 10,
				.n_cursors = 2,
				.name = "node-a",
				.name_len = 6,
				.group = "g",
				.group_len = 1,
				.cursors = cursors };
	header(&w, buf, cap - WIRE_MAC_LEN, WIRE_HELLO_ACK);
	wire_hello_encode(&w, &h);
	return finish(&w);
}

static size_t sample_reject(uint8_t *buf, size_t cap)
{
	struct wire_writer w;
	struct wire_reject r = { .reason = WIRE_REJECT_SHARDS, .text_len = 9, .text = "shards 4 " };
	header(&w, buf, cap - WIRE_MAC_LEN, WIRE_REJECT);
	wire_reject_encode(&w, &r);
	return finish(&w);
}

static size_t sample_data(uint8_t *buf, size_t cap)
{
	struct wire_writer w;
	header(&w, buf, cap - WIRE_MAC_LEN, WIRE_DATA);
	struct wire_peer_ack pa = { .largest_pkt_no = 4, .delay_us = 30 };
	wire_peer_ack_encode(&w, &pa);
	struct wire_ack a = { .shard = 1,
			      .mode = WIRE_MODE_LOG,
			      .cum = 7,
			      .n_ranges = 2,
			      .ranges = { { 1, 2 }, { 5, 1 } } };
	wire_ack_encode(&w, &a);
	size_t f = wire_frame_begin(&w, WIRE_F_LOG);
	struct wire_data_frame d = { .shard = 1, .from_seq = 8, .to_seq = 8 };
	size_t fx = wire_data_encode(&w, WIRE_F_LOG, &d);
	struct wire_record r = { .seq = 8,
				 .op = WIRE_OP_REGISTER,
				 .cluster_len = 2,
				 .key_len = 5,
				 .meta_len = 3,
				 .ep_slot = 4,
				 .ep_gen = 1,
				 .pid = 77,
				 .time_ns = 123456789,
				 .cluster = "c1",
				 .key = "k/one",
				 .meta = "abc" };
	wire_record_encode(&w, &r);
	r.seq = 10;
	r.op = WIRE_OP_LEAVE;
	r.meta_len = 0;
	wire_record_encode(&w, &r);
	wire_data_set_count(&w, fx, 2, 11);
	wire_frame_end(&w, f);
	f = wire_frame_begin(&w, WIRE_F_SNAP);
	struct wire_data_frame sd = {
		.shard = 0, .n = 1, .sync_id = 3, .chunk_no = 1, .n_chunks = 2, .at_seq = 40
	};
	wire_data_encode(&w, WIRE_F_SNAP, &sd);
	r.seq = 0;
	r.op = WIRE_OP_JOIN;
	wire_record_encode(&w, &r);
	wire_frame_end(&w, f);
	return finish(&w);
}

/* A message and the acks of a message stream (PROTOCOL.md section 10). */
static size_t sample_dispatch(uint8_t *buf, size_t cap)
{
	struct wire_writer w;
	header(&w, buf, cap - WIRE_MAC_LEN, WIRE_DATA);
	struct wire_ack a = { .mode = WIRE_MODE_MSG, .cum = 3, .n_ranges = 1, .ranges = { { 2, 1 } } };
	wire_ack_encode(&w, &a);
	struct wire_dispatch d = { .msg_no = 9,
				   .cluster_len = 2,
				   .key_len = 5,
				   .payload_len = 4,
				   .ep_slot = 6,
				   .ep_gen = 2,
				   .cluster = "c1",
				   .key = "k/two",
				   .payload = "ping" };
	wire_dispatch_encode(&w, &d);
	return finish(&w);
}

/* A node's cluster set and the ack of a peer's (PROTOCOL.md section 3.5). */
static size_t sample_clusters(uint8_t *buf, size_t cap)
{
	struct wire_writer w;
	header(&w, buf, cap - WIRE_MAC_LEN, WIRE_DATA);
	struct wire_ack a = { .mode = WIRE_MODE_SET, .cum = 4 };
	wire_ack_encode(&w, &a);
	size_t f = wire_frame_begin(&w, WIRE_F_CLUSTERS);
	wire_clusters_encode(&w, 6, 2);
	wire_cluster_encode(&w, &(struct wire_cluster){ .gen = 3, .name_len = 2, .name = "c1" });
	wire_cluster_encode(&w, &(struct wire_cluster){ .gen = 1, .name_len = 5, .name = "alpha" });
	wire_frame_end(&w, f);
	return finish(&w);
}

static size_t sample_bye(uint8_t *buf, size_t cap)
{
	struct wire_writer w;
	header(&w, buf, cap - WIRE_MAC_LEN, WIRE_BYE);
	wire_put_u8(&w, 3);
	return finish(&w);
}

typedef size_t (*sample_fn)(uint8_t *buf, size_t cap);
static const struct {
	const char *name;
	sample_fn fn;
	int records;
} samples[] = {
	{ "hello-ack", sample_hello, 0 },
	{ "reject", sample_reject, 0 },
	{ "data", sample_data, 3 },
	{ "dispatch", sample_dispatch, 0 },
	{ "clusters", sample_clusters, 0 },
	{ "bye", sample_bye, 0 },
};
#define NSAMPLES (sizeof(samples) / sizeof(samples[0]))

START_TEST(test_wire_samples_decode)
{
	uint8_t buf[2048];
	for (unsigned i = 0; i < NSAMPLES; i++) {
		size_t len = samples[i].fn(buf, sizeof(buf));
		ck_assert_int_eq(wire_decode_all(buf, len), samples[i].records);
	}
}
END_TEST

START_TEST(test_wire_fields_round_trip)
{
	uint8_t buf[2048];
	size_t len = sample_data(buf, sizeof(buf));
	struct wire_header h;
	ck_assert_int_eq(wire_header_decode(buf, len, &h), 0);
	ck_assert_uint_eq(h.src_inc, 10);
	ck_assert_uint_eq(h.dst_session, 3);
	ck_assert_uint_eq(h.conn, 99);
	const uint8_t *body = buf + WIRE_HEADER_LEN;
	struct wire_frame f;
	size_t off = 0;
	int kinds = 0;
	while (wire_frame_next(body, h.body_len, &off, &f) == 1) {
		kinds++;
		if (f.kind == WIRE_F_ACK) {
			struct wire_ack a;
			ck_assert_int_eq(wire_ack_decode(&f, &a), 0);
			ck_assert_uint_eq(a.cum, 7);
			ck_assert_uint_eq(a.n_ranges, 2);
			ck_assert_uint_eq(a.ranges[1].start, 5);
		}
		if (f.kind == WIRE_F_LOG) {
			struct wire_data_frame d;
			struct wire_record r;
			size_t roff = 0;
			ck_assert_int_eq(wire_data_decode(&f, &d), 0);
			ck_assert_uint_eq(d.to_seq, 11);
			ck_assert_int_eq(wire_record_next(d.records, d.records_len, &roff, &r), 1);
			ck_assert_uint_eq(r.time_ns, 123456789);
			ck_assert_int_eq(r.pid, 77);
			ck_assert_int_eq(memcmp(r.key, "k/one", 5), 0);
			ck_assert_int_eq(memcmp(r.meta, "abc", 3), 0);
		}
	}
	ck_assert_int_eq(kinds, 4);
	ck_assert_uint_eq(off, h.body_len);
}
END_TEST

START_TEST(test_wire_dispatch_round_trip)
{
	uint8_t buf[2048];
	size_t len = sample_dispatch(buf, sizeof(buf));
	struct wire_header h;
	ck_assert_int_eq(wire_header_decode(buf, len, &h), 0);
	const uint8_t *body = buf + WIRE_HEADER_LEN;
	struct wire_frame f;
	struct wire_ack a;
	struct wire_dispatch d;
	size_t off = 0;
	ck_assert_int_eq(wire_frame_next(body, h.body_len, &off, &f), 1);
	ck_assert_int_eq(wire_ack_decode(&f, &a), 0);
	ck_assert_uint_eq(a.mode, WIRE_MODE_MSG);
	ck_assert_uint_eq(a.cum, 3);
	ck_assert_int_eq(wire_frame_next(body, h.body_len, &off, &f), 1);
	ck_assert_int_eq(wire_dispatch_decode(&f, &d), 0);
	ck_assert_uint_eq(d.msg_no, 9);
	ck_assert_uint_eq(d.ep_slot, 6);
	ck_assert_uint_eq(d.ep_gen, 2);
	ck_assert_int_eq(memcmp(d.cluster, "c1", 2), 0);
	ck_assert_int_eq(memcmp(d.key, "k/two", 5), 0);
	ck_assert_int_eq(memcmp(d.payload, "ping", 4), 0);
	/* A message stream's ack names shard 0; a NUL in the key is refused. */
	uint8_t *ackp = (uint8_t *)body + WIRE_FRAME_HEADER_LEN;
	ackp[0] = 1;
	ck_assert_int_eq(wire_decode_all(buf, len), -EBADMSG);
	ackp[0] = 0;
	((uint8_t *)d.key)[1] = 0;
	ck_assert_int_eq(wire_decode_all(buf, len), -EBADMSG);
}
END_TEST

START_TEST(test_wire_clusters_round_trip)
{
	uint8_t buf[2048];
	size_t len = sample_clusters(buf, sizeof(buf));
	struct wire_header h;
	ck_assert_int_eq(wire_header_decode(buf, len, &h), 0);
	uint8_t *body = buf + WIRE_HEADER_LEN;
	struct wire_frame f;
	struct wire_ack a;
	struct wire_clusters c;
	struct wire_cluster item;
	size_t off = 0, ioff = 0;
	ck_assert_int_eq(wire_frame_next(body, h.body_len, &off, &f), 1);
	ck_assert_int_eq(wire_ack_decode(&f, &a), 0);
	ck_assert_uint_eq(a.mode, WIRE_MODE_SET);
	ck_assert_uint_eq(a.cum, 4);
	ck_assert_int_eq(wire_frame_next(body, h.body_len, &off, &f), 1);
	ck_assert_uint_eq(f.kind, WIRE_F_CLUSTERS);
	ck_assert_int_eq(wire_clusters_decode(&f, &c), 0);
	ck_assert_uint_eq(c.version, 6);
	ck_assert_uint_eq(c.n, 2);
	ck_assert_int_eq(wire_cluster_next(&c, &ioff, &item), 1);
	ck_assert_uint_eq(item.gen, 3);
	ck_assert_int_eq(item.name_len, 2);
	ck_assert_int_eq(memcmp(item.name, "c1", 2), 0);
	ck_assert_int_eq(wire_cluster_next(&c, &ioff, &item), 1);
	ck_assert_uint_eq(item.gen, 1);
	ck_assert_int_eq(memcmp(item.name, "alpha", 5), 0);
	ck_assert_int_eq(wire_cluster_next(&c, &ioff, &item), 0);
	ck_assert_uint_eq(off, h.body_len);

	/* Each rule of the frame, broken on a copy, is refused. */
	uint8_t *ack = body + WIRE_FRAME_HEADER_LEN;
	uint8_t *set = (uint8_t *)f.payload;
	uint8_t *first = set + WIRE_CLUSTERS_FIXED_LEN, *second = first + 5 + 2;
	struct {
		uint8_t *at;
		uint8_t value;
	} bad[] = {
		{ ack, 1 },          /* a set ack names shard 0 */
		{ ack + 3, 1 },      /* and has no ranges */
		{ set, 0 },          /* version 0 (its other bytes are 0) */
		{ set + 4, 3 },      /* more items than the frame holds */
		{ set + 6, 1 },      /* reserved */
		{ first, 0 },        /* gen 0 (its other bytes are 0) */
		{ first + 4, 0 },    /* an empty name */
		{ first + 4, 64 },   /* a name longer than shmgroup allows */
		{ first + 6, ' ' },  /* a space in a name */
		{ first + 6, 0 },    /* a NUL in a name */
		{ second + 4, 2 },   /* a name cut short: the frame has bytes left */
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t keep = *bad[i].at;
		*bad[i].at = bad[i].value;
		ck_assert_msg(wire_decode_all(buf, len) == -EBADMSG, "case %u decoded", i);
		*bad[i].at = keep;
	}
	ck_assert_int_eq(wire_decode_all(buf, len), 0);
	/* Items out of order, or twice: "alpha" before "c1" is out of order
	 * (shorter names first); "c1" twice is a repeat. */
	uint8_t again[2048];
	struct wire_writer w;
	for (int dup = 0; dup < 2; dup++) {
		header(&w, again, sizeof(again) - WIRE_MAC_LEN, WIRE_DATA);
		size_t fr = wire_frame_begin(&w, WIRE_F_CLUSTERS);
		wire_clusters_encode(&w, 1, 2);
		wire_cluster_encode(&w, &(struct wire_cluster){ .gen = 1, .name_len = dup ? 2 : 5,
								 .name = dup ? "c1" : "alpha" });
		wire_cluster_encode(&w, &(struct wire_cluster){ .gen = 2, .name_len = 2, .name = "c1" });
		wire_frame_end(&w, fr);
		ck_assert_int_eq(wire_decode_all(again, finish(&w)), -EBADMSG);
	}
}
END_TEST

/* Every prefix and every single-byte change of a valid datagram decodes or
 * is refused; under the sanitizer build, never a read out of bounds. */
START_TEST(test_wire_truncations_and_flips)
{
	uint8_t buf[2048], copy[2048];
	for (unsigned i = 0; i < NSAMPLES; i++) {
		size_t len = samples[i].fn(buf, sizeof(buf));
		for (size_t cut = 0; cut < len; cut++) {
			uint8_t *exact = malloc(cut ? cut : 1);
			memcpy(exact, buf, cut);
			ck_assert_int_eq(wire_decode_all(exact, cut), -EBADMSG);
			free(exact);
		}
		for (size_t at = 0; at < len; at++) {
			for (int bit = 0; bit < 8; bit++) {
				memcpy(copy, buf, len);
				copy[at] ^= (uint8_t)(1u << bit);
				int rc = wire_decode_all(copy, len);
				ck_assert(rc == -EBADMSG || rc >= 0);
			}
		}
	}
}
END_TEST

/* ---- MAC and replay window ------------------------------------------- */

START_TEST(test_auth_mac)
{
	struct auth_key k1, k2;
	uint8_t key1[AUTH_KEY_LEN] = "one key of thirty-two bytes ....";
	uint8_t key2[AUTH_KEY_LEN] = "another key of thirty-two bytes.";
	uint8_t buf[2048];

	ck_assert_int_eq(auth_init(), 0);
	auth_key_set(&k1, key1);
	auth_key_set(&k2, key2);
	ck_assert_uint_ne(k1.id, 0);
	ck_assert_uint_ne(k1.id, k2.id);
	size_t len = sample_data(buf, sizeof(buf)) - WIRE_MAC_LEN;
	auth_sign(&k1, buf, len);
	ck_assert_int_eq(auth_verify(&k1, buf, len), 1);
	ck_assert_int_eq(auth_verify(&k2, buf, len), 0);
	buf[len / 2] ^= 1;
	ck_assert_int_eq(auth_verify(&k1, buf, len), 0);
}
END_TEST

START_TEST(test_auth_replay_window)
{
	struct auth_replay r;
	auth_replay_reset(&r);
	ck_assert_int_eq(auth_replay_accept(&r, 0), 0);
	ck_assert_int_eq(auth_replay_accept(&r, 5), 1);
	ck_assert_int_eq(auth_replay_accept(&r, 5), 0);
	ck_assert_int_eq(auth_replay_accept(&r, 3), 1); /* late but new */
	ck_assert_int_eq(auth_replay_accept(&r, 3), 0);
	ck_assert_int_eq(auth_replay_accept(&r, 5 + AUTH_REPLAY_WINDOW), 1);
	ck_assert_int_eq(auth_replay_accept(&r, 5), 0); /* out of the window now */
	ck_assert_int_eq(auth_replay_accept(&r, 6), 1); /* the oldest still inside */
	ck_assert_int_eq(auth_replay_accept(&r, 10 + 3 * AUTH_REPLAY_WINDOW), 1);
	ck_assert_int_eq(auth_replay_accept(&r, 9 + 3 * AUTH_REPLAY_WINDOW), 1);
	ck_assert_int_eq(auth_replay_accept(&r, 9 + 3 * AUTH_REPLAY_WINDOW), 0);
}
END_TEST

/* ---- ack windows ------------------------------------------------------ */

static uint64_t delivered[64];
static unsigned n_delivered;

static void collect(void *arg, uint64_t id, void *payload)
{
	(void)arg;
	(void)payload;
	delivered[n_delivered++] = id;
}

START_TEST(test_stream_rx_orders_and_acks)
{
	struct stream_rx rx;
	struct wire_ack a;
	int p5, p3;

	stream_rx_init(&rx, 1);
	ck_assert_int_eq(stream_rx_put(&rx, 5, &p5), 1);
	ck_assert_int_eq(stream_rx_put(&rx, 3, &p3), 1);
	ck_assert_int_eq(stream_rx_put(&rx, 3, &p3), 0);
	ck_assert_int_eq(stream_rx_put(&rx, 1, NULL), 0);
	ck_assert_int_eq(stream_rx_put(&rx, 2 + STREAM_WINDOW, NULL), -1);
	n_delivered = 0;
	stream_rx_deliver(&rx, collect, NULL);
	ck_assert_uint_eq(n_delivered, 0);
	stream_rx_ack(&rx, &a);
	ck_assert_uint_eq(a.cum, 1);
	ck_assert_uint_eq(a.n_ranges, 2); /* 3 and 5 */
	ck_assert_uint_eq(a.ranges[0].start, 1);
	ck_assert_uint_eq(a.ranges[1].start, 3);
	stream_rx_put(&rx, 2, NULL);
	stream_rx_put(&rx, 4, NULL);
	stream_rx_deliver(&rx, collect, NULL);
	ck_assert_uint_eq(n_delivered, 4);
	ck_assert_uint_eq(delivered[3], 5);
	ck_assert_uint_eq(rx.cum, 5);
	stream_rx_clear(&rx, free);
}
END_TEST

START_TEST(test_stream_tx_retransmits)
{
	struct stream_tx tx;
	struct rto rto;
	uint64_t from, to, at;

	rto_init(&rto, 200000, 20000, 2000000);
	stream_tx_reset(&tx, 0, 0);
	stream_tx_sent(&tx, 1, 4, 1000);
	stream_tx_sent(&tx, 5, 9, 2000);
	ck_assert_int_eq(stream_tx_due(&tx, &rto, 100000, &from, &to, &at), -1);
	ck_assert_uint_eq(at, 201000);
	/* The later frame acked selectively: the earlier one is presumed lost
	 * after 9/8 of a round trip rather than a whole timeout. */
	rto_sample(&rto, 10000);
	struct wire_ack a = {
		.mode = WIRE_MODE_LOG, .cum = 0, .n_ranges = 1, .ranges = { { 4, 5 } }
	};
	ck_assert_int_eq(stream_tx_on_ack(&tx, &a, 15000), 1);
	ck_assert_uint_eq(tx.n_fl, 1);
	int i = stream_tx_due(&tx, &rto, 15000, &from, &to, &at);
	ck_assert_int_eq(i, 0);
	ck_assert_uint_eq(from, 1);
	ck_assert_uint_eq(to, 4);
	stream_tx_resent(&tx, i, 4, 15000);
	a = (struct wire_ack){ .mode = WIRE_MODE_LOG, .cum = 9 };
	stream_tx_on_ack(&tx, &a, 20000);
	ck_assert_uint_eq(tx.n_fl, 0);
	ck_assert_int_eq(stream_tx_idle(&tx), 1);
}
END_TEST

/* ---- two cores ------------------------------------------------------- */

struct two {
	struct repl *r[3];
	char got[3][64][16]; /* payloads delivered at each node, in order */
	uint32_t got_from[3][64];
	unsigned n_got[3];
	uint8_t q[64][2048];
	size_t qlen[64];
	uint32_t qto[64];
	unsigned nq;
	char refused[3][256];
	int up[3];
	uint64_t head[3];
	uint64_t now;
	uint64_t rng;
	uint8_t batch_type[3][16]; /* what each node's store was given */
	uint64_t batch_cursor[3][16];
	unsigned n_batches[3];
};

/* What node 2's store says it holds of node 1 (incarnation 101, one
 * shard): nothing (0), the shard at cursor 0 (1), or the shard wanted again
 * by snapshot (2: REPL_CURSOR_RESYNC, as a restarted agent says). */
static int held_by_2;

struct ctx {
	struct two *t;
	int id;
};

static void t_send(void *c, uint32_t to, const void *buf, size_t len)
{
	struct ctx *x = c;
	if (x->t->nq < 64 && len <= 2048) {
		memcpy(x->t->q[x->t->nq], buf, len);
		x->t->qlen[x->t->nq] = len;
		x->t->qto[x->t->nq++] = to;
	}
}

static void t_apply(void *c, const struct repl_batch *b)
{
	struct ctx *x = c;
	unsigned n = x->t->n_batches[x->id];
	if (n < 16) {
		x->t->batch_type[x->id][n] = b->type;
		x->t->batch_cursor[x->id][n] = b->cursor;
		x->t->n_batches[x->id]++;
	}
}

static int t_log_read(void *c, uint16_t shard, uint64_t seq, struct repl_record *out)
{
	struct ctx *x = c;
	(void)shard;
	if (seq > x->t->head[x->id])
		return -EAGAIN;
	*out = (struct repl_record){ .seq = seq,
				     .op = REPL_OP_JOIN,
				     .key_len = 1,
				     .key = "k",
				     .node = (uint32_t)x->id,
				     .ep_slot = 1,
				     .ep_gen = 1 };
	return 0;
}

static uint64_t t_log_head(void *c, uint16_t shard)
{
	struct ctx *x = c;
	(void)shard;
	return x->t->head[x->id];
}

static int64_t t_snapshot(void *c, uint16_t shard, void (*emit)(void *, const struct repl_record *),
			  void *arg)
{
	struct ctx *x = c;
	(void)shard;
	(void)emit;
	(void)arg;
	return (int64_t)x->t->head[x->id];
}

static void t_held(void *c, uint32_t node, uint64_t *inc, uint64_t *cursors)
{
	struct ctx *x = c;
	(void)node;
	*inc = x->id == 2 && held_by_2 ? 101 : 0;
	if (*inc)
		cursors[0] = held_by_2 == 2 ? REPL_CURSOR_RESYNC : 0;
}

static uint64_t t_random(void *c)
{
	struct ctx *x = c;
	return ++x->t->rng * 0x9e3779b97f4a7c15ull;
}

static void t_event(void *c, uint32_t node, enum repl_peer_event ev, const char *detail)
{
	struct ctx *x = c;
	(void)node;
	if (ev == REPL_PEER_REFUSED)
		snprintf(x->t->refused[x->id], sizeof(x->t->refused[0]), "%s", detail);
	if (ev == REPL_PEER_UP)
		x->t->up[x->id] = 1;
}

static void t_deliver(void *c, const struct repl_message *m)
{
	struct ctx *x = c;
	unsigned n = x->t->n_got[x->id];
	if (n < 64 && m->payload_len < 16) {
		memcpy(x->t->got[x->id][n], m->payload, m->payload_len);
		x->t->got[x->id][n][m->payload_len] = 0;
		x->t->got_from[x->id][n] = m->node;
		x->t->n_got[x->id]++;
	}
}

static const struct repl_ops t_ops = { t_send,     t_apply, t_log_read, t_log_head, t_snapshot,
				       t_held,     t_random, t_event,   t_deliver };
static struct ctx ctxs[3];

/* Node i (1 or 2, named "a" and "b") of the two-core tests. */
static struct repl_config core_config(int i, uint16_t shards, const uint8_t *key)
{
	struct repl_config cfg = { .node = (uint32_t)i,
				   .node_name = i == 1 ? "a" : "b",
				   .group = "g",
				   .inc = 100 + (uint64_t)i,
				   .session = 1,
				   .shards = shards,
				   .key = key };
	repl_knobs_default(&cfg.knobs);
	return cfg;
}

static void two_start(struct two *t, const uint8_t *key1, const uint8_t *key2, uint16_t shards2)
{
	memset(t, 0, sizeof(*t));
	for (int i = 1; i <= 2; i++) {
		struct repl_config cfg = core_config(i, i == 2 ? shards2 : 1, i == 1 ? key1 : key2);
		ctxs[i] = (struct ctx){ t, i };
		ck_assert_int_eq(repl_new(&cfg, &t_ops, &ctxs[i], &t->r[i]), 0);
		ck_assert_int_eq(repl_peer_add(t->r[i], (uint32_t)(3 - i), i == 1 ? "b" : "a"), 0);
	}
}

/* Delivers queued datagrams (and what they cause) until none is left;
 * returns how many were delivered. */
static unsigned pump(struct two *t)
{
	unsigned n = 0;
	while (t->nq) {
		uint8_t buf[2048];
		size_t len = t->qlen[0];
		uint32_t to = t->qto[0];
		memcpy(buf, t->q[0], len);
		memmove(t->q, t->q + 1, (t->nq - 1) * sizeof(t->q[0]));
		memmove(t->qlen, t->qlen + 1, (t->nq - 1) * sizeof(t->qlen[0]));
		memmove(t->qto, t->qto + 1, (t->nq - 1) * sizeof(t->qto[0]));
		t->nq--;
		repl_input(t->r[to], t->now, buf, len);
		n++;
	}
	return n;
}

static void two_stop(struct two *t)
{
	repl_free(t->r[1]);
	repl_free(t->r[2]);
}

static const uint8_t key_a[REPL_KEY_LEN] = "the cluster key, thirty-two byte";
static const uint8_t key_b[REPL_KEY_LEN] = "some other key of thirty-two byt";

START_TEST(test_handshake_up_both_sides)
{
	struct two t;
	two_start(&t, key_a, key_a, 1);
	repl_poll(t.r[1], 0);
	pump(&t);
	ck_assert_int_eq(repl_peer_is_up(t.r[1], 2), 1);
	ck_assert_int_eq(repl_peer_is_up(t.r[2], 1), 1);
	ck_assert_int_eq(t.up[1] && t.up[2], 1);
	two_stop(&t);
}
END_TEST

START_TEST(test_handshake_refusals_logged_on_both_sides)
{
	struct two t;
	two_start(&t, key_a, key_b, 1);
	repl_poll(t.r[1], 0);
	pump(&t);
	ck_assert_int_eq(repl_peer_is_up(t.r[1], 2), 0);
	ck_assert_ptr_nonnull(strstr(t.refused[2], "another cluster key"));
	ck_assert_ptr_nonnull(strstr(t.refused[1], "another cluster key"));
	ck_assert_uint_eq(repl_counters(t.r[1])->rx_other_key, 1);
	ck_assert_uint_eq(repl_counters(t.r[2])->rx_other_key, 1);
	two_stop(&t);

	two_start(&t, key_a, key_a, 4);
	repl_poll(t.r[1], 0);
	pump(&t);
	ck_assert_int_eq(repl_peer_is_up(t.r[2], 1), 0);
	ck_assert_ptr_nonnull(strstr(t.refused[2], "shard count"));
	ck_assert_ptr_nonnull(strstr(t.refused[1], "shard count"));
	two_stop(&t);
}
END_TEST

START_TEST(test_lone_change_leaves_at_once_and_load_is_batched)
{
	struct two t;
	two_start(&t, key_a, key_a, 1);
	repl_poll(t.r[1], 0);
	pump(&t);
	t.now = 1000;
	t.head[1] = 1; /* one change on an idle link */
	repl_poll(t.r[1], t.now);
	ck_assert_uint_eq(t.nq, 1);
	pump(&t);
	/* Changes right behind an unacked one wait for its ack, the flush
	 * interval (5 ms)... */
	t.now += 100;
	t.head[1] = 2;
	repl_poll(t.r[1], t.now);
	ck_assert_uint_eq(t.nq, 1);
	t.now += 100;
	t.head[1] = 3;
	repl_poll(t.r[1], t.now);
	ck_assert_uint_eq(t.nq, 1); /* nothing new queued */
	ck_assert_uint_eq(repl_deadline(t.r[1]), t.now + 5000);
	/* ...or for the buffer size (64), whichever comes first. */
	t.head[1] = 70;
	repl_poll(t.r[1], t.now);
	ck_assert_uint_ge(t.nq, 2);
	pump(&t);
	/* Once everything sent is acked, a change leaves at once again. */
	t.now += 100;
	t.head[1] = 71;
	repl_poll(t.r[1], t.now);
	ck_assert_uint_eq(t.nq, 1);
	two_stop(&t);
}
END_TEST

/* Node 1 has written 5 changes; node 2's store holds node 1 as held_by_2
 * says.  Runs both until node 2's store got a batch of node 1's. */
static void first_batch_from_1(struct two *t, int held)
{
	held_by_2 = held;
	two_start(t, key_a, key_a, 1);
	held_by_2 = 0;
	t->head[1] = 5;
	repl_poll(t->r[1], 0);
	pump(t);
	for (int i = 0; i < 100 && !t->n_batches[2]; i++) {
		t->now += 10000;
		repl_poll(t->r[1], t->now);
		repl_poll(t->r[2], t->now);
		pump(t);
	}
	ck_assert_uint_ge(t->n_batches[2], 1);
}

/* A store that holds a peer's shard but wants it again (a restarted agent,
 * whose hidden claims were in its memory) gets it by one snapshot, as of the
 * sender's head; one that reports cursor 0 gets the log replayed from seq
 * 1 instead, which is why the marker exists. */
START_TEST(test_shard_wanted_again_comes_by_snapshot)
{
	struct two t;
	first_batch_from_1(&t, 2);
	ck_assert_uint_eq(t.batch_type[2][0], REPL_BATCH_RESYNC);
	ck_assert_uint_eq(t.batch_cursor[2][0], 5);
	two_stop(&t);

	first_batch_from_1(&t, 1);
	ck_assert_uint_eq(t.batch_type[2][0], REPL_BATCH_DELTA);
	two_stop(&t);
}
END_TEST

static struct repl_message msg_of(const char *payload)
{
	return (struct repl_message){ .ep_slot = 3,
				      .ep_gen = 1,
				      .key_len = 1,
				      .key = "k",
				      .payload_len = (uint32_t)strlen(payload),
				      .payload = payload };
}

/* Messages go once each, in order, through loss of the first send; the
 * window refuses the 257th unacked one; a peer's new run gives up what it
 * had not acked. */
START_TEST(test_messages_once_in_order_and_bounded)
{
	struct two t;
	struct repl_message m = msg_of("m0");
	two_start(&t, key_a, key_a, 1);
	ck_assert_int_eq(repl_dispatch(t.r[1], 2, &m), -ENOTCONN); /* not up yet */
	repl_poll(t.r[1], 0);
	pump(&t);
	char text[16];
	for (int i = 0; i < 3; i++) {
		snprintf(text, sizeof(text), "m%d", i);
		m = msg_of(text);
		ck_assert_int_eq(repl_dispatch(t.r[1], 2, &m), 0);
	}
	ck_assert_uint_eq(repl_deadline(t.r[1]), 0);
	t.now = 1000;
	repl_poll(t.r[1], t.now);
	ck_assert_uint_eq(t.nq, 1);
	t.nq = 0; /* lost */
	t.now += 2000000; /* past any retransmission timeout */
	repl_poll(t.r[1], t.now);
	ck_assert_uint_ge(t.nq, 1);
	/* The resend arrives, and the receiver's acks are lost: the next
	 * resend is a duplicate there. */
	static uint8_t held[8][2048];
	size_t held_len[8];
	unsigned n_held = t.nq < 8 ? t.nq : 8;
	for (unsigned i = 0; i < n_held; i++) {
		memcpy(held[i], t.q[i], t.qlen[i]);
		held_len[i] = t.qlen[i];
	}
	t.nq = 0;
	for (unsigned i = 0; i < n_held; i++)
		repl_input(t.r[2], t.now, held[i], held_len[i]);
	t.nq = 0;
	ck_assert_uint_eq(t.n_got[2], 3);
	t.now += 1000000; /* past the backed-off timeout, short of down_after */
	repl_poll(t.r[1], t.now);
	pump(&t);
	ck_assert_uint_eq(t.n_got[2], 3);
	for (unsigned i = 0; i < 3; i++) {
		snprintf(text, sizeof(text), "m%u", i);
		ck_assert_str_eq(t.got[2][i], text);
		ck_assert_uint_eq(t.got_from[2][i], 1);
	}
	ck_assert_uint_eq(repl_counters(t.r[2])->rx_dup_messages, 3);
	ck_assert_uint_eq(repl_counters(t.r[1])->tx_message_retransmits, 6);
	/* The window: REPL_MSG_WINDOW unacked, then -EAGAIN, nothing queued. */
	m = msg_of("w");
	for (unsigned i = 0; i < REPL_MSG_WINDOW; i++)
		ck_assert_int_eq(repl_dispatch(t.r[1], 2, &m), 0);
	ck_assert_int_eq(repl_dispatch(t.r[1], 2, &m), -EAGAIN);
	m.key_len = 0;
	ck_assert_int_eq(repl_dispatch(t.r[1], 2, &m), -EINVAL);
	ck_assert_int_eq(repl_dispatch(t.r[1], 9, &m), -ENOTCONN);
	/* Node 2 comes back as a new run: the 256 are given up. */
	repl_free(t.r[2]);
	struct repl_config cfg = { .node = 2, .node_name = "b", .group = "g", .inc = 102,
				   .session = 2, .shards = 1, .key = key_a };
	repl_knobs_default(&cfg.knobs);
	ck_assert_int_eq(repl_new(&cfg, &t_ops, &ctxs[2], &t.r[2]), 0);
	ck_assert_int_eq(repl_peer_add(t.r[2], 1, "a"), 0);
	t.n_got[2] = 0;
	t.now += 10000000;
	repl_poll(t.r[2], t.now);
	pump(&t);
	repl_poll(t.r[1], t.now);
	pump(&t);
	ck_assert_int_eq(repl_peer_is_up(t.r[1], 2), 1);
	ck_assert_uint_eq(repl_counters(t.r[1])->messages_abandoned, REPL_MSG_WINDOW);
	ck_assert_uint_eq(t.n_got[2], 0);
	m = msg_of("after");
	ck_assert_int_eq(repl_dispatch(t.r[1], 2, &m), 0);
	repl_poll(t.r[1], t.now);
	pump(&t);
	ck_assert_uint_eq(t.n_got[2], 1);
	ck_assert_str_eq(t.got[2][0], "after");
	two_stop(&t);
}
END_TEST

/* ---- the corpus writer ---------------------------------------------- */

/* ---- named clusters: two cores over tiny stores ----------------------- */

/* Each node has a log of its own changes and markers, its own entries as
 * that log leaves them, and a store of the other node's entries that, as
 * the library does, refuses a cluster it is not connected to. */
struct clu_entry {
	char cluster[4], key[4];
};

struct clu_node {
	struct repl *r;
	struct repl_record log[32];
	struct clu_entry log_names[32];
	uint64_t head;
	int connected_x;  /* to the named cluster "x" */
	int marks_x;      /* the peer is in "x", as peer_cluster says */
	struct clu_entry held[16]; /* the peer's entries here */
	unsigned n_held;
	unsigned records_of_x; /* the peer's records of "x" that reached this store */
	unsigned cluster_purges;
};

static struct {
	struct clu_node n[3];
	uint8_t q[64][2048];
	size_t qlen[64];
	uint32_t qto[64];
	unsigned nq;
	uint64_t now, rng;
	int partitioned; /* datagrams are lost */
} clu;

static void clu_send(void *c, uint32_t to, const void *buf, size_t len)
{
	(void)c;
	ck_assert(clu.nq < 64 && len <= 2048);
	memcpy(clu.q[clu.nq], buf, len);
	clu.qlen[clu.nq] = len;
	clu.qto[clu.nq++] = to;
}

static int clu_find(const struct clu_node *n, const char *cluster, size_t cl, const char *key,
		    size_t kl)
{
	for (unsigned i = 0; i < n->n_held; i++)
		if (strlen(n->held[i].cluster) == cl && !memcmp(n->held[i].cluster, cluster, cl) &&
		    strlen(n->held[i].key) == kl && !memcmp(n->held[i].key, key, kl))
			return (int)i;
	return -1;
}

static void clu_apply(void *c, const struct repl_batch *b)
{
	struct clu_node *n = &clu.n[(intptr_t)c];
	if (b->type == REPL_BATCH_PURGE_CLUSTER) {
		n->cluster_purges++;
		for (unsigned i = 0; i < n->n_held;)
			if (strlen(n->held[i].cluster) == b->cluster_len &&
			    !memcmp(n->held[i].cluster, b->cluster, b->cluster_len))
				n->held[i] = n->held[--n->n_held];
			else
				i++;
		return;
	}
	if (b->type != REPL_BATCH_DELTA)
		n->n_held = 0; /* one shard: a resync or purge replaces everything */
	for (uint32_t i = 0; i < b->n; i++) {
		const struct repl_record *rec = &b->records[i];
		if (rec->cluster_len) {
			n->records_of_x++;
			if (!n->connected_x)
				continue; /* -ENOTCONN */
		}
		int at = clu_find(n, rec->cluster, rec->cluster_len, rec->key, rec->key_len);
		if (rec->op == REPL_OP_LEAVE) {
			if (at >= 0)
				n->held[at] = n->held[--n->n_held];
		} else if (at < 0) {
			ck_assert(n->n_held < 16 && rec->cluster_len < 4 && rec->key_len < 4);
			struct clu_entry *e = &n->held[n->n_held++];
			memset(e, 0, sizeof(*e));
			memcpy(e->cluster, rec->cluster, rec->cluster_len);
			memcpy(e->key, rec->key, rec->key_len);
		}
	}
}

static int clu_log_read(void *c, uint16_t shard, uint64_t seq, struct repl_record *out)
{
	struct clu_node *n = &clu.n[(intptr_t)c];
	(void)shard;
	if (seq == 0 || seq > n->head)
		return -EAGAIN;
	*out = n->log[seq - 1];
	out->cluster = n->log_names[seq - 1].cluster;
	out->key = n->log_names[seq - 1].key;
	return 0;
}

static uint64_t clu_log_head(void *c, uint16_t shard)
{
	(void)shard;
	return clu.n[(intptr_t)c].head;
}

/* Its own entries: the joins of its log not left since. */
static int64_t clu_snapshot(void *c, uint16_t shard,
			    void (*emit)(void *, const struct repl_record *), void *arg)
{
	struct clu_node *n = &clu.n[(intptr_t)c];
	(void)shard;
	for (uint64_t i = 0; i < n->head; i++) {
		if (n->log[i].op != REPL_OP_JOIN)
			continue;
		int left = 0;
		for (uint64_t j = i + 1; j < n->head; j++)
			left |= n->log[j].op == REPL_OP_LEAVE &&
				!strcmp(n->log_names[j].key, n->log_names[i].key) &&
				!strcmp(n->log_names[j].cluster, n->log_names[i].cluster);
		if (left)
			continue;
		struct repl_record rec = n->log[i];
		rec.seq = 0;
		rec.cluster = n->log_names[i].cluster;
		rec.key = n->log_names[i].key;
		emit(arg, &rec);
	}
	return (int64_t)n->head;
}

static void clu_held(void *c, uint32_t node, uint64_t *inc, uint64_t *cursors)
{
	(void)c;
	(void)node;
	(void)cursors;
	*inc = 0;
}

static uint64_t clu_random(void *c)
{
	(void)c;
	return ++clu.rng * 0x9e3779b97f4a7c15ull;
}

static void clu_clusters(void *c, void (*emit)(void *, const char *, size_t), void *arg)
{
	if (clu.n[(intptr_t)c].connected_x)
		emit(arg, "x", 1);
}

static void clu_peer_cluster(void *c, uint32_t node, const char *name, size_t len, int connected)
{
	(void)node;
	ck_assert(len == 1 && name[0] == 'x');
	clu.n[(intptr_t)c].marks_x = connected;
}

static const struct repl_ops clu_ops = {
	.send = clu_send,
	.apply = clu_apply,
	.log_read = clu_log_read,
	.log_head = clu_log_head,
	.snapshot = clu_snapshot,
	.held = clu_held,
	.random = clu_random,
	.clusters = clu_clusters,
	.peer_cluster = clu_peer_cluster,
};

/* Appends to node i's log: a join, a leave, or a marker of "x". */
static void clu_log(int i, uint8_t op, const char *cluster, const char *key)
{
	struct clu_node *n = &clu.n[i];
	ck_assert(n->head < 32);
	struct clu_entry *names = &n->log_names[n->head];
	snprintf(names->cluster, sizeof(names->cluster), "%s", cluster);
	snprintf(names->key, sizeof(names->key), "%s", key);
	n->log[n->head] = (struct repl_record){ .seq = n->head + 1,
						.op = op,
						.cluster_len = (uint8_t)strlen(cluster),
						.key_len = (uint16_t)strlen(key),
						.node = (uint32_t)i,
						.ep_slot = 1,
						.ep_gen = 1 };
	n->head++;
}

/* Runs both cores for a simulated second, delivering everything. */
static void clu_run(void)
{
	for (int step = 0; step < 100; step++) {
		clu.now += 10000;
		for (int i = 1; i <= 2; i++)
			repl_poll(clu.n[i].r, clu.now);
		while (clu.nq) {
			uint8_t buf[2048];
			size_t len = clu.qlen[0];
			uint32_t to = clu.qto[0];
			memcpy(buf, clu.q[0], len);
			clu.nq--;
			memmove(clu.q, clu.q + 1, clu.nq * sizeof(clu.q[0]));
			memmove(clu.qlen, clu.qlen + 1, clu.nq * sizeof(clu.qlen[0]));
			memmove(clu.qto, clu.qto + 1, clu.nq * sizeof(clu.qto[0]));
			if (!clu.partitioned)
				repl_input(clu.n[to].r, clu.now, buf, len);
		}
	}
}

/* Node 1 is in "x" from the start, node 2 joins it and leaves it: node 2
 * gets no record of "x" while out of it (the sender's filter), marks node 1
 * in it all along, pulls its state on joining (a resync, nothing sent twice
 * in the log), and drops it on leaving; node 1's mark of node 2 follows.
 * Then node 2 leaves "x" again while partitioned from node 1. */
START_TEST(test_clusters_filter_pull_and_leave)
{
	memset(&clu, 0, sizeof(clu));
	clu.n[1].connected_x = 1;
	for (int i = 1; i <= 2; i++) {
		struct repl_config cfg = core_config(i, 1, key_a);
		ck_assert_int_eq(repl_new(&cfg, &clu_ops, (void *)(intptr_t)i, &clu.n[i].r), 0);
		ck_assert_int_eq(repl_peer_add(clu.n[i].r, (uint32_t)(3 - i), i == 1 ? "b" : "a"), 0);
	}
	clu_log(1, REPL_OP_JOIN, "", "d");
	clu_log(1, REPL_OP_JOIN, "x", "k1");
	clu_run();
	struct clu_node *a = &clu.n[1], *b = &clu.n[2];
	ck_assert_int_eq(b->n_held, 1);
	ck_assert_int_eq(clu_find(b, "", 0, "d", 1), 0);
	ck_assert_int_eq(b->records_of_x, 0);
	ck_assert_int_eq(b->marks_x, 1);
	ck_assert_int_eq(a->marks_x, 0);
	ck_assert_int_eq(repl_peer_in_cluster(b->r, 1, "x", 1), 1);
	ck_assert_int_eq(repl_peer_in_cluster(a->r, 2, "x", 1), 0);

	/* Node 2 connects: its marker makes it announce, and node 1 sends
	 * the state of "x" it holds; a change made after goes by the log. */
	b->connected_x = 1;
	clu_log(2, REPL_OP_CLUSTER_CONNECT, "x", "");
	clu_run();
	ck_assert_int_eq(repl_cluster_connected(b->r, "x", 1), 1);
	ck_assert_int_eq(a->marks_x, 1);
	ck_assert_int_ge(clu_find(b, "x", 1, "k1", 2), 0);
	ck_assert_int_eq(b->n_held, 2);
	ck_assert_uint_ge(repl_counters(a->r)->cluster_gains, 1);
	clu_log(1, REPL_OP_JOIN, "x", "k2");
	clu_run();
	ck_assert_int_ge(clu_find(b, "x", 1, "k2", 2), 0);

	/* Node 2 disconnects: what it holds of "x" goes here, the mark there. */
	b->connected_x = 0;
	clu_log(2, REPL_OP_CLUSTER_DISCONNECT, "x", "");
	clu_run();
	ck_assert_int_eq(b->cluster_purges, 1);
	ck_assert_int_eq(b->n_held, 1);
	ck_assert_int_eq(clu_find(b, "", 0, "d", 1), 0);
	ck_assert_int_eq(a->marks_x, 0);
	ck_assert_int_eq(repl_cluster_connected(b->r, "x", 1), 0);
	unsigned before = b->records_of_x;
	clu_log(1, REPL_OP_LEAVE, "x", "k2");
	clu_run();
	ck_assert_int_eq(b->records_of_x, before);

	/* Back in "x", then out of it again while partitioned from node 1
	 * (shorter than down_after), node 1 writing to "x" meanwhile: after
	 * the heal node 2 holds nothing of "x" and node 1's mark goes. */
	b->connected_x = 1;
	clu_log(2, REPL_OP_CLUSTER_CONNECT, "x", "");
	clu_log(1, REPL_OP_JOIN, "x", "k3");
	clu_run();
	ck_assert_int_ge(clu_find(b, "x", 1, "k3", 2), 0);
	ck_assert_int_eq(a->marks_x, 1);
	clu.partitioned = 1;
	b->connected_x = 0;
	clu_log(2, REPL_OP_CLUSTER_DISCONNECT, "x", "");
	clu_log(1, REPL_OP_JOIN, "x", "k4");
	clu_run();
	ck_assert_int_eq(b->cluster_purges, 2);
	ck_assert_int_eq(clu_find(b, "x", 1, "k3", 2), -1);
	ck_assert_int_eq(a->marks_x, 1); /* not told yet */
	clu.partitioned = 0;
	clu_run();
	ck_assert_int_eq(repl_peer_is_up(a->r, 2), 1);
	ck_assert_int_eq(a->marks_x, 0);
	ck_assert_int_eq(b->n_held, 1);
	ck_assert_int_eq(clu_find(b, "", 0, "d", 1), 0);
	repl_free(a->r);
	repl_free(b->r);
}
END_TEST

static int write_corpus(const char *dir)
{
	uint8_t buf[2048];
	for (unsigned i = 0; i < NSAMPLES; i++) {
		char path[512];
		size_t len = samples[i].fn(buf, sizeof(buf));
		snprintf(path, sizeof(path), "%s/valid-%s", dir, samples[i].name);
		FILE *f = fopen(path, "wb");
		if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
			perror(path);
			return 1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--write-corpus"))
		return write_corpus(argv[2]);
	Suite *s = suite_create("repl");
	TCase *tc = tcase_create("repl");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_wire_samples_decode);
	tcase_add_test(tc, test_wire_fields_round_trip);
	tcase_add_test(tc, test_wire_dispatch_round_trip);
	tcase_add_test(tc, test_wire_clusters_round_trip);
	tcase_add_test(tc, test_clusters_filter_pull_and_leave);
	tcase_add_test(tc, test_wire_truncations_and_flips);
	tcase_add_test(tc, test_auth_mac);
	tcase_add_test(tc, test_auth_replay_window);
	tcase_add_test(tc, test_stream_rx_orders_and_acks);
	tcase_add_test(tc, test_stream_tx_retransmits);
	tcase_add_test(tc, test_handshake_up_both_sides);
	tcase_add_test(tc, test_handshake_refusals_logged_on_both_sides);
	tcase_add_test(tc, test_lone_change_leaves_at_once_and_load_is_batched);
	tcase_add_test(tc, test_messages_once_in_order_and_bounded);
	tcase_add_test(tc, test_shard_wanted_again_comes_by_snapshot);
	suite_add_tcase(s, tc);
	return tc_run_suite(s);
}
