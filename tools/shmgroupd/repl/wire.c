/* SPDX-License-Identifier: MIT */
/*
 * Encode and decode of replication datagrams (layout: docs/PROTOCOL.md
 * section 3).  Decoding trusts nothing: each field is read only after the
 * bytes holding it were checked to exist, lengths are checked against both
 * the enclosing container and the protocol's ceilings, and reserved fields
 * must be zero so that a later version can give them a meaning.
 */
#include <errno.h>
#include <string.h>

#include "wire.h"

#define HELLO_FIXED_LEN 32u
#define PEER_ACK_LEN 12u
#define DATA_FIXED_LEN 32u
#define ACK_FIXED_LEN 16u
#define RANGE_LEN 8u

static uint16_t get_u16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint64_t wire_get_u64(const uint8_t *p)
{
	return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

static void set_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void set_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- decoding ------------------------------------------------------- */

int wire_header_decode(const void *buf, size_t len, struct wire_header *h)
{
	const uint8_t *p = buf;

	if (len < WIRE_OVERHEAD || len > WIRE_MAX_DATAGRAM)
		return -EBADMSG;
	h->magic = get_u32(p);
	h->version = p[4];
	h->type = p[5];
	h->body_len = get_u16(p + 6);
	h->group_hash = wire_get_u64(p + 8);
	h->key_id = get_u32(p + 16);
	h->src_node = get_u32(p + 20);
	h->src_inc = wire_get_u64(p + 24);
	h->src_session = get_u32(p + 32);
	h->dst_node = get_u32(p + 36);
	h->dst_inc = wire_get_u64(p + 40);
	h->dst_session = get_u32(p + 48);
	h->conn = get_u32(p + 52);
	h->pkt_no = wire_get_u64(p + 56);
	if (h->magic != WIRE_MAGIC || h->version != WIRE_VERSION)
		return -EBADMSG;
	if (h->type < WIRE_HELLO || h->type > WIRE_BYE)
		return -EBADMSG;
	if (h->src_node == 0 || h->pkt_no == 0)
		return -EBADMSG;
	if ((h->type == WIRE_DATA || h->type == WIRE_BYE) != (h->conn != 0))
		return -EBADMSG;
	if ((size_t)h->body_len + WIRE_OVERHEAD != len)
		return -EBADMSG;
	return 0;
}

int wire_hello_decode(const uint8_t *body, size_t len, struct wire_hello *out)
{
	if (len < HELLO_FIXED_LEN)
		return -EBADMSG;
	out->shards = get_u16(body);
	out->name_len = body[2];
	out->group_len = body[3];
	out->nonce = wire_get_u64(body + 4);
	out->echo = wire_get_u64(body + 12);
	out->held_inc = wire_get_u64(body + 20);
	out->n_cursors = get_u16(body + 28);
	if (get_u16(body + 30) != 0)
		return -EBADMSG;
	if (out->shards == 0 || out->shards > WIRE_MAX_SHARDS || out->nonce == 0)
		return -EBADMSG;
	if (out->name_len == 0 || out->name_len > WIRE_NAME_MAX || out->group_len == 0 ||
	    out->group_len > WIRE_GROUP_MAX)
		return -EBADMSG;
	if (out->n_cursors != 0 && out->n_cursors != out->shards)
		return -EBADMSG;
	size_t need = HELLO_FIXED_LEN + out->name_len + out->group_len + (size_t)out->n_cursors * 8;
	if (need != len)
		return -EBADMSG;
	out->name = (const char *)body + HELLO_FIXED_LEN;
	out->group = out->name + out->name_len;
	out->cursors = (const uint8_t *)out->group + out->group_len;
	return 0;
}

int wire_reject_decode(const uint8_t *body, size_t len, struct wire_reject *out)
{
	if (len < 2)
		return -EBADMSG;
	out->reason = body[0];
	out->text_len = body[1];
	if (out->reason < WIRE_REJECT_GROUP || out->reason > WIRE_REJECT_VERSION)
		return -EBADMSG;
	if ((size_t)out->text_len + 2 != len || out->text_len > WIRE_REASON_TEXT_MAX)
		return -EBADMSG;
	out->text = (const char *)body + 2;
	return 0;
}

int wire_frame_next(const uint8_t *body, size_t len, size_t *off, struct wire_frame *f)
{
	if (*off == len)
		return 0;
	if (*off > len || len - *off < WIRE_FRAME_HEADER_LEN)
		return -EBADMSG;
	const uint8_t *p = body + *off;
	f->kind = p[0];
	f->flags = p[1];
	f->len = get_u16(p + 2);
	if (f->flags != 0 || f->kind == 0)
		return -EBADMSG;
	if (len - *off - WIRE_FRAME_HEADER_LEN < f->len)
		return -EBADMSG;
	f->payload = p + WIRE_FRAME_HEADER_LEN;
	*off += WIRE_FRAME_HEADER_LEN + f->len;
	return 1;
}

int wire_peer_ack_decode(const struct wire_frame *f, struct wire_peer_ack *out)
{
	if (f->kind != WIRE_F_PEER_ACK || f->len != PEER_ACK_LEN)
		return -EBADMSG;
	out->largest_pkt_no = wire_get_u64(f->payload);
	out->delay_us = get_u32(f->payload + 8);
	return 0;
}

int wire_data_decode(const struct wire_frame *f, struct wire_data_frame *out)
{
	const uint8_t *p = f->payload;

	if ((f->kind != WIRE_F_LOG && f->kind != WIRE_F_SNAP) || f->len < DATA_FIXED_LEN)
		return -EBADMSG;
	out->shard = get_u16(p);
	out->n = get_u16(p + 2);
	out->sync_id = get_u32(p + 4);
	out->records = p + DATA_FIXED_LEN;
	out->records_len = f->len - DATA_FIXED_LEN;
	if (out->shard >= WIRE_MAX_SHARDS)
		return -EBADMSG;
	if (f->kind == WIRE_F_LOG) {
		out->from_seq = wire_get_u64(p + 8);
		out->to_seq = wire_get_u64(p + 16);
		out->chunk_no = out->n_chunks = 0;
		out->at_seq = 0;
		if (out->sync_id != 0 || wire_get_u64(p + 24) != 0)
			return -EBADMSG;
		if (out->from_seq == 0 || out->to_seq < out->from_seq)
			return -EBADMSG;
		if (out->n > out->to_seq - out->from_seq + 1)
			return -EBADMSG;
	} else {
		out->chunk_no = get_u32(p + 8);
		out->n_chunks = get_u32(p + 12);
		out->at_seq = wire_get_u64(p + 16);
		out->from_seq = out->to_seq = 0;
		if (wire_get_u64(p + 24) != 0)
			return -EBADMSG;
		if (out->sync_id == 0 || out->chunk_no == 0 || out->chunk_no > out->n_chunks)
			return -EBADMSG;
	}
	/* Every record takes at least the fixed part. */
	if ((size_t)out->n * WIRE_RECORD_FIXED_LEN > out->records_len)
		return -EBADMSG;
	return 0;
}

int wire_ack_decode(const struct wire_frame *f, struct wire_ack *out)
{
	const uint8_t *p = f->payload;

	if (f->kind != WIRE_F_ACK || f->len < ACK_FIXED_LEN)
		return -EBADMSG;
	out->shard = get_u16(p);
	out->mode = p[2];
	out->n_ranges = p[3];
	out->sync_id = get_u32(p + 4);
	out->cum = wire_get_u64(p + 8);
	if (out->shard >= WIRE_MAX_SHARDS || out->n_ranges > WIRE_MAX_RANGES)
		return -EBADMSG;
	if (out->mode == WIRE_MODE_SNAP ? out->sync_id == 0
					: (out->mode != WIRE_MODE_LOG && out->mode != WIRE_MODE_MSG &&
					   out->mode != WIRE_MODE_SET) ||
						  out->sync_id != 0)
		return -EBADMSG;
	if ((out->mode == WIRE_MODE_MSG || out->mode == WIRE_MODE_SET) && out->shard != 0)
		return -EBADMSG;
	if (out->mode == WIRE_MODE_SET && out->n_ranges != 0)
		return -EBADMSG;
	if (f->len != ACK_FIXED_LEN + (size_t)out->n_ranges * RANGE_LEN)
		return -EBADMSG;
	uint64_t prev_end = 0;
	for (unsigned i = 0; i < out->n_ranges; i++) {
		const uint8_t *r = p + ACK_FIXED_LEN + i * RANGE_LEN;
		out->ranges[i].start = get_u32(r);
		out->ranges[i].len = get_u32(r + 4);
		/* Ranges are ascending, disjoint, non-empty and never touch cum + 1
		 * (that one would have moved cum). */
		if (out->ranges[i].len == 0 || out->ranges[i].start <= prev_end)
			return -EBADMSG;
		prev_end = (uint64_t)out->ranges[i].start + out->ranges[i].len;
		if (prev_end > UINT32_MAX)
			return -EBADMSG;
	}
	return 0;
}

int wire_dispatch_decode(const struct wire_frame *f, struct wire_dispatch *out)
{
	const uint8_t *p = f->payload;

	if (f->kind != WIRE_F_DISPATCH || f->len < WIRE_DISPATCH_FIXED_LEN)
		return -EBADMSG;
	out->msg_no = wire_get_u64(p);
	out->cluster_len = p[8];
	out->key_len = get_u16(p + 10);
	out->payload_len = get_u32(p + 12);
	out->ep_slot = get_u32(p + 16);
	out->ep_gen = get_u32(p + 20);
	if (out->msg_no == 0 || p[9] != 0)
		return -EBADMSG;
	if (out->key_len == 0 || out->key_len > WIRE_KEY_MAX || out->payload_len > WIRE_META_MAX)
		return -EBADMSG;
	if ((size_t)WIRE_DISPATCH_FIXED_LEN + out->cluster_len + out->key_len + out->payload_len !=
	    f->len)
		return -EBADMSG;
	out->cluster = (const char *)p + WIRE_DISPATCH_FIXED_LEN;
	out->key = out->cluster + out->cluster_len;
	out->payload = out->key + out->key_len;
	if (memchr(out->cluster, 0, out->cluster_len) || memchr(out->key, 0, out->key_len))
		return -EBADMSG;
	return 0;
}

int wire_cluster_cmp(const char *a, size_t a_len, const char *b, size_t b_len)
{
	if (a_len != b_len)
		return a_len < b_len ? -1 : 1;
	return memcmp(a, b, a_len);
}

/* One item at *off, unchecked against its predecessor. */
static int cluster_item(const uint8_t *p, size_t len, size_t *off, struct wire_cluster *out)
{
	if (*off > len || len - *off < 5)
		return -EBADMSG;
	const uint8_t *q = p + *off;
	out->gen = get_u32(q);
	out->name_len = q[4];
	if (out->gen == 0 || out->name_len == 0 || out->name_len > WIRE_SET_NAME_MAX ||
	    len - *off - 5 < out->name_len)
		return -EBADMSG;
	out->name = (const char *)q + 5;
	/* Names as shmgroup accepts them: printable ASCII, no space. */
	for (unsigned i = 0; i < out->name_len; i++)
		if ((uint8_t)out->name[i] < 0x21 || (uint8_t)out->name[i] > 0x7e)
			return -EBADMSG;
	*off += 5 + (size_t)out->name_len;
	return 0;
}

int wire_clusters_decode(const struct wire_frame *f, struct wire_clusters *out)
{
	const uint8_t *p = f->payload;
	struct wire_cluster c, prev = { 0 };
	size_t off = 0;

	if (f->kind != WIRE_F_CLUSTERS || f->len < WIRE_CLUSTERS_FIXED_LEN)
		return -EBADMSG;
	out->version = get_u32(p);
	out->n = get_u16(p + 4);
	out->items = p + WIRE_CLUSTERS_FIXED_LEN;
	out->items_len = f->len - WIRE_CLUSTERS_FIXED_LEN;
	if (out->version == 0 || out->n > WIRE_SET_MAX || get_u16(p + 6) != 0)
		return -EBADMSG;
	for (unsigned i = 0; i < out->n; i++) {
		if (cluster_item(out->items, out->items_len, &off, &c) < 0)
			return -EBADMSG;
		if (i && wire_cluster_cmp(prev.name, prev.name_len, c.name, c.name_len) >= 0)
			return -EBADMSG; /* out of order, or twice */
		prev = c;
	}
	return off == out->items_len ? 0 : -EBADMSG;
}

int wire_cluster_next(const struct wire_clusters *c, size_t *off, struct wire_cluster *out)
{
	if (*off == c->items_len)
		return 0;
	return cluster_item(c->items, c->items_len, off, out) < 0 ? -EBADMSG : 1;
}

int wire_record_next(const uint8_t *p, size_t len, size_t *off, struct wire_record *r)
{
	if (*off == len)
		return 0;
	if (*off > len || len - *off < WIRE_RECORD_FIXED_LEN)
		return -EBADMSG;
	const uint8_t *q = p + *off;
	r->seq = wire_get_u64(q);
	r->op = q[8];
	r->reason = q[9];
	r->cluster_len = q[10];
	r->key_len = get_u16(q + 12);
	r->meta_len = get_u32(q + 16);
	r->ep_slot = get_u32(q + 20);
	r->ep_gen = get_u32(q + 24);
	r->pid = (int32_t)get_u32(q + 28);
	r->time_ns = wire_get_u64(q + 32);
	if (q[11] != 0 || get_u16(q + 14) != 0)
		return -EBADMSG;
	if (r->op < WIRE_OP_REGISTER || r->op > WIRE_OP_LEAVE || r->reason > 6)
		return -EBADMSG;
	if (r->key_len == 0 || r->key_len > WIRE_KEY_MAX || r->meta_len > WIRE_META_MAX)
		return -EBADMSG;
	size_t var = (size_t)r->cluster_len + r->key_len + r->meta_len;
	if (len - *off - WIRE_RECORD_FIXED_LEN < var)
		return -EBADMSG;
	r->cluster = (const char *)q + WIRE_RECORD_FIXED_LEN;
	r->key = r->cluster + r->cluster_len;
	r->meta = r->key + r->key_len;
	/* Keys and cluster names are NUL-free byte strings (DESIGN.md section 2). */
	if (memchr(r->cluster, 0, r->cluster_len) || memchr(r->key, 0, r->key_len))
		return -EBADMSG;
	*off += WIRE_RECORD_FIXED_LEN + var;
	return 1;
}

static int decode_records(const struct wire_data_frame *d, int is_log)
{
	struct wire_record r;
	size_t off = 0;
	uint64_t prev = 0;
	int n = 0, rc;

	while ((rc = wire_record_next(d->records, d->records_len, &off, &r)) == 1) {
		if (is_log ? r.seq < d->from_seq || r.seq > d->to_seq || r.seq <= prev : r.seq != 0)
			return -EBADMSG;
		prev = r.seq;
		n++;
	}
	if (rc < 0 || n != d->n)
		return -EBADMSG;
	return n;
}

int wire_decode_all(const void *buf, size_t len)
{
	struct wire_header h;
	const uint8_t *body = (const uint8_t *)buf + WIRE_HEADER_LEN;
	int records = 0;

	if (wire_header_decode(buf, len, &h) < 0)
		return -EBADMSG;
	switch (h.type) {
	case WIRE_HELLO:
	case WIRE_HELLO_ACK:
	case WIRE_HELLO_CONFIRM: {
		struct wire_hello hello;
		return wire_hello_decode(body, h.body_len, &hello) < 0 ? -EBADMSG : 0;
	}
	case WIRE_REJECT: {
		struct wire_reject rej;
		return wire_reject_decode(body, h.body_len, &rej) < 0 ? -EBADMSG : 0;
	}
	case WIRE_BYE:
		return h.body_len == 1 ? 0 : -EBADMSG;
	default:
		break;
	}
	struct wire_frame f;
	size_t off = 0;
	int rc;
	while ((rc = wire_frame_next(body, h.body_len, &off, &f)) == 1) {
		struct wire_peer_ack pa;
		struct wire_data_frame d;
		struct wire_ack a;
		struct wire_dispatch m;
		struct wire_clusters cs;
		switch (f.kind) {
		case WIRE_F_PEER_ACK:
			if (wire_peer_ack_decode(&f, &pa) < 0)
				return -EBADMSG;
			break;
		case WIRE_F_LOG:
		case WIRE_F_SNAP:
			if (wire_data_decode(&f, &d) < 0)
				return -EBADMSG;
			rc = decode_records(&d, f.kind == WIRE_F_LOG);
			if (rc < 0)
				return -EBADMSG;
			records += rc;
			break;
		case WIRE_F_ACK:
			if (wire_ack_decode(&f, &a) < 0)
				return -EBADMSG;
			break;
		case WIRE_F_DISPATCH:
			if (wire_dispatch_decode(&f, &m) < 0)
				return -EBADMSG;
			break;
		case WIRE_F_CLUSTERS:
			if (wire_clusters_decode(&f, &cs) < 0)
				return -EBADMSG;
			break;
		default:
			break; /* unknown kinds are skipped: later versions add frames */
		}
	}
	return rc < 0 ? -EBADMSG : records;
}

/* ---- encoding ------------------------------------------------------- */

void wire_writer_init(struct wire_writer *w, void *buf, size_t cap)
{
	w->buf = buf;
	w->cap = cap;
	w->len = 0;
	w->overflow = 0;
}

void wire_put_bytes(struct wire_writer *w, const void *p, size_t n)
{
	if (w->overflow || w->cap - w->len < n) {
		w->overflow = 1;
		return;
	}
	if (n)
		memcpy(w->buf + w->len, p, n);
	w->len += n;
}

void wire_put_u8(struct wire_writer *w, uint8_t v)
{
	wire_put_bytes(w, &v, 1);
}

void wire_put_u16(struct wire_writer *w, uint16_t v)
{
	uint8_t b[2];
	set_u16(b, v);
	wire_put_bytes(w, b, 2);
}

void wire_put_u32(struct wire_writer *w, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
	wire_put_bytes(w, b, 4);
}

void wire_put_u64(struct wire_writer *w, uint64_t v)
{
	uint8_t b[8];
	set_u64(b, v);
	wire_put_bytes(w, b, 8);
}

void wire_header_encode(struct wire_writer *w, const struct wire_header *h)
{
	wire_put_u32(w, WIRE_MAGIC);
	wire_put_u8(w, WIRE_VERSION);
	wire_put_u8(w, h->type);
	wire_put_u16(w, 0); /* body_len, set by wire_finish_body */
	wire_put_u64(w, h->group_hash);
	wire_put_u32(w, h->key_id);
	wire_put_u32(w, h->src_node);
	wire_put_u64(w, h->src_inc);
	wire_put_u32(w, h->src_session);
	wire_put_u32(w, h->dst_node);
	wire_put_u64(w, h->dst_inc);
	wire_put_u32(w, h->dst_session);
	wire_put_u32(w, h->conn);
	wire_put_u64(w, h->pkt_no);
}

void wire_finish_body(struct wire_writer *w)
{
	if (w->overflow || w->len < WIRE_HEADER_LEN || w->len - WIRE_HEADER_LEN > UINT16_MAX) {
		w->overflow = 1;
		return;
	}
	set_u16(w->buf + 6, (uint16_t)(w->len - WIRE_HEADER_LEN));
}

void wire_hello_encode(struct wire_writer *w, const struct wire_hello *hello)
{
	wire_put_u16(w, hello->shards);
	wire_put_u8(w, hello->name_len);
	wire_put_u8(w, hello->group_len);
	wire_put_u64(w, hello->nonce);
	wire_put_u64(w, hello->echo);
	wire_put_u64(w, hello->held_inc);
	wire_put_u16(w, hello->n_cursors);
	wire_put_u16(w, 0);
	wire_put_bytes(w, hello->name, hello->name_len);
	wire_put_bytes(w, hello->group, hello->group_len);
	wire_put_bytes(w, hello->cursors, (size_t)hello->n_cursors * 8);
}

void wire_reject_encode(struct wire_writer *w, const struct wire_reject *r)
{
	wire_put_u8(w, r->reason);
	wire_put_u8(w, r->text_len);
	wire_put_bytes(w, r->text, r->text_len);
}

size_t wire_frame_begin(struct wire_writer *w, uint8_t kind)
{
	size_t off = w->len;
	wire_put_u8(w, kind);
	wire_put_u8(w, 0);
	wire_put_u16(w, 0);
	return off;
}

void wire_frame_end(struct wire_writer *w, size_t frame_off)
{
	size_t len = w->len - frame_off - WIRE_FRAME_HEADER_LEN;
	if (w->overflow || len > UINT16_MAX) {
		w->overflow = 1;
		return;
	}
	set_u16(w->buf + frame_off + 2, (uint16_t)len);
}

void wire_peer_ack_encode(struct wire_writer *w, const struct wire_peer_ack *a)
{
	size_t f = wire_frame_begin(w, WIRE_F_PEER_ACK);
	wire_put_u64(w, a->largest_pkt_no);
	wire_put_u32(w, a->delay_us);
	wire_frame_end(w, f);
}

void wire_ack_encode(struct wire_writer *w, const struct wire_ack *a)
{
	size_t f = wire_frame_begin(w, WIRE_F_ACK);
	wire_put_u16(w, a->shard);
	wire_put_u8(w, a->mode);
	wire_put_u8(w, a->n_ranges);
	wire_put_u32(w, a->sync_id);
	wire_put_u64(w, a->cum);
	for (unsigned i = 0; i < a->n_ranges; i++) {
		wire_put_u32(w, a->ranges[i].start);
		wire_put_u32(w, a->ranges[i].len);
	}
	wire_frame_end(w, f);
}

size_t wire_dispatch_size(const struct wire_dispatch *d)
{
	return WIRE_FRAME_HEADER_LEN + WIRE_DISPATCH_FIXED_LEN + (size_t)d->cluster_len +
	       d->key_len + d->payload_len;
}

void wire_dispatch_encode(struct wire_writer *w, const struct wire_dispatch *d)
{
	size_t f = wire_frame_begin(w, WIRE_F_DISPATCH);
	wire_put_u64(w, d->msg_no);
	wire_put_u8(w, d->cluster_len);
	wire_put_u8(w, 0);
	wire_put_u16(w, d->key_len);
	wire_put_u32(w, d->payload_len);
	wire_put_u32(w, d->ep_slot);
	wire_put_u32(w, d->ep_gen);
	wire_put_bytes(w, d->cluster, d->cluster_len);
	wire_put_bytes(w, d->key, d->key_len);
	wire_put_bytes(w, d->payload, d->payload_len);
	wire_frame_end(w, f);
}

void wire_clusters_encode(struct wire_writer *w, uint32_t version, uint16_t n)
{
	wire_put_u32(w, version);
	wire_put_u16(w, n);
	wire_put_u16(w, 0);
}

void wire_cluster_encode(struct wire_writer *w, const struct wire_cluster *c)
{
	wire_put_u32(w, c->gen);
	wire_put_u8(w, c->name_len);
	wire_put_bytes(w, c->name, c->name_len);
}

size_t wire_data_encode(struct wire_writer *w, uint8_t kind, const struct wire_data_frame *d)
{
	size_t fixed = w->len;
	wire_put_u16(w, d->shard);
	wire_put_u16(w, d->n);
	wire_put_u32(w, kind == WIRE_F_LOG ? 0 : d->sync_id);
	if (kind == WIRE_F_LOG) {
		wire_put_u64(w, d->from_seq);
		wire_put_u64(w, d->to_seq);
	} else {
		wire_put_u32(w, d->chunk_no);
		wire_put_u32(w, d->n_chunks);
		wire_put_u64(w, d->at_seq);
	}
	wire_put_u64(w, 0);
	return fixed;
}

void wire_data_set_count(struct wire_writer *w, size_t fixed_off, uint16_t n, uint64_t to_seq)
{
	if (w->overflow)
		return;
	set_u16(w->buf + fixed_off + 2, n);
	if (to_seq)
		set_u64(w->buf + fixed_off + 16, to_seq);
}

size_t wire_record_size(const struct wire_record *r)
{
	return WIRE_RECORD_FIXED_LEN + r->cluster_len + r->key_len + r->meta_len;
}

void wire_record_encode(struct wire_writer *w, const struct wire_record *r)
{
	wire_put_u64(w, r->seq);
	wire_put_u8(w, r->op);
	wire_put_u8(w, r->reason);
	wire_put_u8(w, r->cluster_len);
	wire_put_u8(w, 0);
	wire_put_u16(w, r->key_len);
	wire_put_u16(w, 0);
	wire_put_u32(w, r->meta_len);
	wire_put_u32(w, r->ep_slot);
	wire_put_u32(w, r->ep_gen);
	wire_put_u32(w, (uint32_t)r->pid);
	wire_put_u64(w, r->time_ns);
	wire_put_bytes(w, r->cluster, r->cluster_len);
	wire_put_bytes(w, r->key, r->key_len);
	wire_put_bytes(w, r->meta, r->meta_len);
}

uint64_t wire_group_hash(const char *name, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < len; i++) {
		h ^= (uint8_t)name[i];
		h *= 0x100000001b3ull;
	}
	return h;
}
