/* SPDX-License-Identifier: MIT */
/*
 * The node: datagram intake (checks in the order docs/PROTOCOL.md section 5
 * gives), the LOG receive path with its apply batching, and the output path
 * that packs acks, retransmissions and new records into datagrams under the
 * batching rule (section 7).  The handshake is peer.c's, snapshots resync.c's,
 * liveness detector.c's, the ack windows stream.c's.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

uint64_t repl_ms(uint32_t ms)
{
	return (uint64_t)ms * 1000;
}

void repl_set_deadline(struct repl *r, uint64_t at)
{
	if (at < r->deadline)
		r->deadline = at;
}

void repl_knobs_default(struct repl_knobs *k)
{
	*k = (struct repl_knobs){
		.replicated_sender_buffer_size = 64,
		.replicated_sender_flush_interval = 5,
		.replicated_registry_receiver_buffer_size = 64,
		.replicated_registry_receiver_flush_interval = 5,
		.replicated_pg_receiver_buffer_size = 64,
		.replicated_pg_receiver_flush_interval = 5,
		.busy_retry_attempts = 300,
		.busy_retry_interval = 1000,
		.slow_retry_interval = 30000,
		.max_datagram = 1400,
		.heartbeat_interval = 250,
		.down_after = 5000,
		.rto_initial = 200,
		.rto_min = 50,
		.rto_max = 2000,
		.max_snapshot_chunks = 1u << 20,
	};
}

static int knobs_valid(const struct repl_knobs *k)
{
	return k->replicated_sender_buffer_size > 0 &&
	       k->replicated_registry_receiver_buffer_size > 0 &&
	       k->replicated_pg_receiver_buffer_size > 0 && k->busy_retry_interval > 0 &&
	       k->slow_retry_interval > 0 && k->max_datagram >= 512 &&
	       k->max_datagram <= WIRE_MAX_DATAGRAM && k->heartbeat_interval > 0 &&
	       k->down_after > k->heartbeat_interval && k->rto_min > 0 &&
	       k->rto_min <= k->rto_initial && k->rto_initial <= k->rto_max &&
	       k->max_snapshot_chunks > 0;
}

int repl_new(const struct repl_config *cfg, const struct repl_ops *ops, void *ctx,
	     struct repl **out)
{
	struct repl *r;

	if (!cfg || !ops || !out || !ops->send || !ops->apply || !ops->log_read || !ops->log_head ||
	    !ops->snapshot || !ops->held || !ops->random)
		return -EINVAL;
	if (cfg->node == 0 || cfg->inc == 0 || cfg->session == 0 || cfg->shards == 0 ||
	    cfg->shards > WIRE_MAX_SHARDS || !cfg->node_name || !cfg->group)
		return -EINVAL;
	size_t nl = strlen(cfg->node_name), gl = strlen(cfg->group);
	if (nl == 0 || nl > WIRE_NAME_MAX || gl == 0 || gl > WIRE_GROUP_MAX)
		return -EINVAL;
	if (!knobs_valid(&cfg->knobs))
		return -EINVAL;
	if (auth_init() < 0)
		return -ENOSYS;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->buf = malloc(WIRE_MAX_DATAGRAM);
	if (!r->buf) {
		free(r);
		return -ENOMEM;
	}
	r->cfg = *cfg;
	memcpy(r->node_name, cfg->node_name, nl + 1);
	memcpy(r->group, cfg->group, gl + 1);
	r->cfg.node_name = r->node_name;
	r->cfg.group = r->group;
	r->cfg.key = NULL;
	r->group_hash = wire_group_hash(r->group, gl);
	auth_key_set(&r->key, cfg->key);
	r->ops = ops;
	r->ctx = ctx;
	r->deadline = 0;
	clusters_init(r);
	*out = r;
	return 0;
}

static void free_pending(struct shard_rx *rx)
{
	for (uint32_t i = 0; i < rx->n_pend; i++)
		free(rx->pend[i].bytes);
	rx->n_pend = 0;
}

static void free_peer(struct repl *r, struct peer *p)
{
	peer_free_streams(r, p);
	msg_free(&p->msg);
	clusters_peer_free(p);
	if (p->rx) {
		for (unsigned s = 0; s < r->cfg.shards; s++) {
			stream_rx_clear(&p->rx[s].log, free);
			resync_rx_reset(&p->rx[s].snap);
			free_pending(&p->rx[s]);
			free(p->rx[s].pend);
		}
	}
	free(p->tx);
	free(p->rx);
	free(p);
}

void repl_free(struct repl *r)
{
	if (!r)
		return;
	for (unsigned i = 0; i < r->n_peers; i++)
		free_peer(r, r->peers[i]);
	clusters_free(r);
	auth_key_wipe(&r->key);
	free(r->buf);
	free(r);
}

int repl_peer_add(struct repl *r, uint32_t node, const char *name)
{
	uint64_t cursors[WIRE_MAX_SHARDS] = { 0 };
	uint64_t inc = 0;
	struct peer *p;
	size_t nl = name ? strlen(name) : 0;

	if (node == 0 || nl == 0 || nl > WIRE_NAME_MAX)
		return -EINVAL;
	if (node == r->cfg.node || peer_find(r, node))
		return -EEXIST;
	if (r->n_peers == REPL_MAX_PEERS)
		return -ENOSPC;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->tx = calloc(r->cfg.shards, sizeof(*p->tx));
	p->rx = calloc(r->cfg.shards, sizeof(*p->rx));
	if (!p->tx || !p->rx) {
		free(p->tx);
		free(p->rx);
		free(p);
		return -ENOMEM;
	}
	p->node = node;
	memcpy(p->name, name, nl + 1);
	/* Entries of this peer may already be in the store from before an
	 * agent restart: resume from the cursors stored with them. */
	r->ops->held(r->ctx, node, &inc, cursors);
	p->held_inc = inc;
	for (unsigned s = 0; s < r->cfg.shards; s++) {
		bool resync = inc && cursors[s] == REPL_CURSOR_RESYNC;
		stream_rx_init(&p->rx[s].log, inc && !resync ? cursors[s] : 0);
		p->rx[s].want_snapshot = resync;
		resync_rx_reset(&p->rx[s].snap);
		p->tx[s].mode = WIRE_MODE_LOG;
		p->tx[s].named = 1; /* what an earlier run sent is not known */
	}
	auth_replay_reset(&p->replay);
	msg_init(r, p);
	p->state = PEER_DOWN;
	r->peers[r->n_peers++] = p;
	r->deadline = 0;
	return 0;
}

const struct repl_counters *repl_counters(const struct repl *r)
{
	return &r->c;
}

int repl_peer_is_up(const struct repl *r, uint32_t node)
{
	for (unsigned i = 0; i < r->n_peers; i++)
		if (r->peers[i]->node == node)
			return r->peers[i]->state == PEER_UP;
	return 0;
}

uint64_t repl_deadline(const struct repl *r)
{
	return r->deadline;
}

/* ---- datagram assembly -------------------------------------------- */

size_t repl_begin(struct repl *r, struct peer *p, uint8_t type, struct wire_writer *w)
{
	int known = p->state == PEER_UP && type != WIRE_HELLO;
	struct wire_header h = {
		.type = type,
		.group_hash = r->group_hash,
		.key_id = r->key.id,
		.src_node = r->cfg.node,
		.src_inc = r->cfg.inc,
		.src_session = r->cfg.session,
		.dst_node = p->node,
		.dst_inc = known ? p->inc : 0,
		.dst_session = known ? p->session : 0,
		.conn = type == WIRE_DATA || type == WIRE_BYE ? p->conn : 0,
		.pkt_no = ++p->pkt_no,
	};
	wire_writer_init(w, r->buf, WIRE_MAX_DATAGRAM - WIRE_MAC_LEN);
	wire_header_encode(w, &h);
	return w->len;
}

void repl_send(struct repl *r, struct peer *p, struct wire_writer *w)
{
	wire_finish_body(w);
	if (w->overflow)
		return; /* a bug, not an input: the builders check room first */
	auth_sign(&r->key, w->buf, w->len);
	size_t len = w->len + WIRE_MAC_LEN;
	p->pkt_sent_at[p->pkt_no % PKT_LOG] = r->now;
	if (w->buf[5] == WIRE_DATA)
		p->last_sent = r->now; /* what the peer's failure detector counts */
	r->c.tx_datagrams++;
	r->c.tx_bytes += len;
	r->ops->send(r->ctx, p->node, w->buf, len);
}

/* The datagram being filled for one peer by repl_output; opened lazily so
 * that a packet number is spent only on a datagram that is sent. */
struct out {
	struct repl *r;
	struct peer *p;
	struct wire_writer w;
	size_t soft; /* max_datagram less the MAC */
	int open;
	int has_acks;  /* anything worth sending besides the PEER_ACK: acks, messages */
	int has_data;  /* LOG or SNAP frames */
	int sent_data; /* a datagram with data went out */
};

static void out_open(struct out *o)
{
	if (o->open)
		return;
	repl_begin(o->r, o->p, WIRE_DATA, &o->w);
	if (o->p->largest_rx_pkt) {
		uint64_t d = o->r->now - o->p->largest_rx_at;
		struct wire_peer_ack a = { .largest_pkt_no = o->p->largest_rx_pkt,
					   .delay_us = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d };
		wire_peer_ack_encode(&o->w, &a);
	}
	o->open = 1;
	o->has_acks = o->has_data = 0;
}

static void out_send(struct out *o, int force)
{
	if (force)
		out_open(o);
	if (o->open && (o->has_acks || o->has_data || force)) {
		repl_send(o->r, o->p, &o->w);
		o->sent_data |= o->has_data;
	}
	o->open = 0;
}

/* Makes room for `need` bytes under the soft limit, sending the datagram if
 * it has to; 1 if the bytes fit (or the datagram is empty of data, where an
 * oversized item may use the hard limit), 0 otherwise. */
static int out_room(struct out *o, size_t need)
{
	out_open(o);
	if (o->w.len + need <= o->soft)
		return 1;
	if (o->has_data || o->has_acks) {
		out_send(o, 0);
		out_open(o);
	}
	return o->w.len + need <= o->w.cap;
}

static void put_ack(struct out *o, const struct wire_ack *a)
{
	out_room(o, WIRE_FRAME_HEADER_LEN + 16 + (size_t)a->n_ranges * 8);
	wire_ack_encode(&o->w, a);
	o->has_acks = 1;
}

static void put_acks(struct out *o)
{
	struct peer *p = o->p;

	for (unsigned s = 0; s < o->r->cfg.shards; s++) {
		struct shard_rx *rx = &p->rx[s];
		struct wire_ack a = { .shard = (uint16_t)s };
		if (rx->ack_log) {
			a.mode = WIRE_MODE_LOG;
			stream_rx_ack(&rx->log, &a);
			put_ack(o, &a);
			rx->ack_log = 0;
		}
		if (rx->ack_snap && (rx->snap.sync_id || rx->snap.committed_id)) {
			a.mode = WIRE_MODE_SNAP;
			if (rx->snap.sync_id) {
				a.sync_id = rx->snap.sync_id;
				stream_rx_ack(&rx->snap.rx, &a);
			} else {
				/* A committed snapshot's chunks are all acked. */
				a.sync_id = rx->snap.committed_id;
				a.cum = UINT32_MAX;
				a.n_ranges = 0;
			}
			put_ack(o, &a);
		}
		rx->ack_snap = 0;
	}
	if (p->msg.ack_owed) {
		struct wire_ack a = { .mode = WIRE_MODE_MSG };
		stream_rx_ack(&p->msg.rx, &a);
		put_ack(o, &a);
		p->msg.ack_owed = 0;
	}
	if (p->cl.ack_owed) {
		struct wire_ack a = { .mode = WIRE_MODE_SET, .cum = p->cl.version };
		put_ack(o, &a);
		p->cl.ack_owed = 0;
	}
}

/* This node's cluster set, until the peer acks its version. */
static void put_clusters(struct out *o)
{
	if (!clusters_due(o->r, o->p))
		return;
	out_room(o, clusters_frame_size(o->r));
	clusters_encode(o->r, o->p, &o->w);
	o->has_acks = 1;
}

/* Encodes one F_LOG frame covering [from, at most to]; *covered gets the
 * last seq it covers.  -ESTALE if the log no longer holds `from`, -EAGAIN if
 * there was nothing to cover, or if `lazy` and the range held only other
 * owners' changes: such a frame carries nothing the peer applies, so it
 * waits for a record to ride with, a heartbeat, or window pressure. */
static int put_log(struct out *o, uint16_t shard, uint64_t from, uint64_t to, int lazy,
		   uint64_t known_skip, uint64_t *covered)
{
	struct repl *r = o->r;
	struct repl_record rec;
	const size_t fixed = WIRE_FRAME_HEADER_LEN + 32;
	uint16_t n = 0;

	if (!out_room(o, fixed + WIRE_RECORD_FIXED_LEN))
		return -EAGAIN;
	size_t frame = wire_frame_begin(&o->w, WIRE_F_LOG);
	struct wire_data_frame d = { .shard = shard, .from_seq = from, .to_seq = from };
	size_t fx = wire_data_encode(&o->w, WIRE_F_LOG, &d);
	*covered = from - 1;
	for (uint64_t seq = from; seq <= to && n < UINT16_MAX; seq++) {
		if (seq <= known_skip) {
			*covered = seq; /* read before: another owner's */
			continue;
		}
		int rc = r->ops->log_read(r->ctx, shard, seq, &rec);
		if (rc == -ESTALE) {
			o->w.len = frame;
			return -ESTALE;
		}
		if (rc < 0)
			break;
		if (rec.node != r->cfg.node || !clusters_send(o->p, &o->p->tx[shard], &rec)) {
			/* Another owner's change (only its owner sends it), a
			 * marker, or a cluster the peer is not in. */
			*covered = seq;
			continue;
		}
		struct wire_record wr = {
			.seq = seq,
			.op = rec.op,
			.reason = rec.reason,
			.cluster_len = rec.cluster_len,
			.key_len = rec.key_len,
			.meta_len = rec.meta_len,
			.ep_slot = rec.ep_slot,
			.ep_gen = rec.ep_gen,
			.pid = rec.pid,
			.time_ns = rec.time_ns,
			.cluster = rec.cluster,
			.key = rec.key,
			.meta = rec.meta,
		};
		size_t size = wire_record_size(&wr);
		int alone = n == 0 && !o->has_data;
		if (o->w.len + size > (alone ? o->w.cap : o->soft))
			break;
		wire_record_encode(&o->w, &wr);
		n++;
		*covered = seq;
		r->c.tx_records++;
		if (alone && o->w.len > o->soft)
			break; /* an oversized record travels alone */
	}
	if (*covered < from || (lazy && n == 0)) {
		o->w.len = frame; /* *covered says how far it is only others' */
		return -EAGAIN;
	}
	wire_data_set_count(&o->w, fx, n, *covered);
	wire_frame_end(&o->w, frame);
	o->has_data = 1;
	return 0;
}

/* Encodes chunk k of the stream's snapshot. */
static void put_chunk(struct out *o, uint16_t shard, const struct resync_tx *s, uint32_t k)
{
	size_t len = s->chunk_off[k] - s->chunk_off[k - 1];
	out_room(o, WIRE_FRAME_HEADER_LEN + 32 + len);
	size_t frame = wire_frame_begin(&o->w, WIRE_F_SNAP);
	struct wire_data_frame d = { .shard = shard,
				     .n = s->chunk_n[k - 1],
				     .sync_id = s->sync_id,
				     .chunk_no = k,
				     .n_chunks = s->n_chunks,
				     .at_seq = s->at_seq };
	wire_data_encode(&o->w, WIRE_F_SNAP, &d);
	wire_put_bytes(&o->w, s->data + s->chunk_off[k - 1], len);
	wire_frame_end(&o->w, frame);
	o->has_data = 1;
}

/* Retransmissions and new sends of one shard's stream towards o->p. */
static void output_shard(struct out *o, uint16_t s, int send_new, int force, uint64_t *next_due)
{
	struct repl *r = o->r;
	struct peer *p = o->p;
	struct shard_tx *tx = &p->tx[s];
	uint64_t from, to, at, covered;
	int i;

	/* A pull for a cluster the peer joined whose snapshot could not be
	 * taken (the store was busy) is tried again. */
	if (tx->cluster_resync && tx->mode == WIRE_MODE_LOG && resync_tx_start(r, p, s) < 0)
		return;
	while ((i = stream_tx_due(&tx->st, &p->rto, r->now, &from, &to, &at)) >= 0) {
		if (tx->mode == WIRE_MODE_SNAP) {
			for (uint64_t k = from; k <= to; k++)
				put_chunk(o, s, &tx->snap, (uint32_t)k);
			covered = to;
		} else {
			int rc = put_log(o, s, from, to, 0, 0, &covered);
			if (rc == -ESTALE) {
				resync_tx_start(r, p, s);
				return;
			}
			if (rc < 0)
				break;
		}
		stream_tx_resent(&tx->st, i, covered, r->now);
		r->c.tx_retransmits++;
	}
	if (at < *next_due)
		*next_due = at;
	if (!send_new)
		return;
	uint64_t limit = stream_tx_limit(&tx->st);
	if (tx->mode == WIRE_MODE_SNAP) {
		if (limit > tx->snap.n_chunks)
			limit = tx->snap.n_chunks;
		for (uint64_t k = tx->st.next; k <= limit && stream_tx_limit(&tx->st); k++) {
			put_chunk(o, s, &tx->snap, (uint32_t)k);
			stream_tx_sent(&tx->st, k, k, r->now);
		}
	} else {
		uint64_t head = r->ops->log_head(r->ctx, s);
		while (tx->st.next <= head && tx->st.next <= limit) {
			uint64_t lim = head < limit ? head : limit;
			int lazy = !force && tx->st.next - tx->st.acked < STREAM_WINDOW / 2;
			int rc = put_log(o, s, tx->st.next, lim, lazy, tx->skip_to, &covered);
			if (rc == -ESTALE) {
				resync_tx_start(r, p, s);
				return;
			}
			if (rc < 0) {
				/* Remember the stretch of others' changes, so that the
				 * log overwriting it does not force a resync. */
				if (covered >= tx->st.next && covered > tx->skip_to)
					tx->skip_to = covered;
				break;
			}
			stream_tx_sent(&tx->st, tx->st.next, covered, r->now);
			limit = stream_tx_limit(&tx->st);
		}
	}
	if (tx->st.n_fl) {
		uint64_t d;
		stream_tx_due(&tx->st, &p->rto, r->now, &from, &to, &d);
		if (d < *next_due)
			*next_due = d;
	}
}

/* The message stream towards o->p: its resends, then every queued message
 * the window lets out.  Messages are not batched: the agent hands them over
 * in bursts already (one poll after each drain of its queue). */
static void output_messages(struct out *o, uint64_t *next_due)
{
	struct repl *r = o->r;
	struct msg_stream *m = &o->p->msg;
	uint64_t from, to, at;
	int i;

	while ((i = stream_tx_due(&m->tx, &o->p->rto, r->now, &from, &to, &at)) >= 0) {
		const struct msg_copy *c = &m->q[from % REPL_MSG_WINDOW];
		out_room(o, c->len);
		wire_put_bytes(&o->w, c->frame, c->len);
		o->has_acks = 1;
		stream_tx_resent(&m->tx, i, from, r->now);
		r->c.tx_message_retransmits++;
	}
	while (m->tx.next <= m->last && stream_tx_limit(&m->tx)) {
		const struct msg_copy *c = &m->q[m->tx.next % REPL_MSG_WINDOW];
		out_room(o, c->len);
		wire_put_bytes(&o->w, c->frame, c->len);
		o->has_acks = 1;
		stream_tx_sent(&m->tx, m->tx.next, m->tx.next, r->now);
		r->c.tx_messages++;
	}
	stream_tx_due(&m->tx, &o->p->rto, r->now, &from, &to, &at);
	if (at < *next_due)
		*next_due = at;
}

/* How many records (or chunks) towards p could go out now. */
static uint64_t sendable(struct repl *r, struct peer *p)
{
	uint64_t n = 0;

	for (unsigned s = 0; s < r->cfg.shards; s++) {
		struct shard_tx *tx = &p->tx[s];
		uint64_t limit = stream_tx_limit(&tx->st);
		uint64_t top = tx->mode == WIRE_MODE_SNAP ? tx->snap.n_chunks
							  : r->ops->log_head(r->ctx, (uint16_t)s);
		if (top > limit)
			top = limit;
		if (top >= tx->st.next)
			n += top - tx->st.next + 1;
	}
	return n;
}

/* Every change sent to p acked, and no shard resyncing. */
static int all_acked(const struct repl *r, const struct peer *p)
{
	for (unsigned s = 0; s < r->cfg.shards; s++)
		if (p->tx[s].mode != WIRE_MODE_LOG || !stream_tx_idle(&p->tx[s].st))
			return 0;
	return 1;
}

void repl_output(struct repl *r, struct peer *p, int force)
{
	const struct repl_knobs *k = &r->cfg.knobs;
	struct out o = { .r = r, .p = p, .soft = k->max_datagram - WIRE_MAC_LEN };
	uint64_t next_due = UINT64_MAX;
	int send_new = 0;

	if (p->state != PEER_UP)
		return;
	/* The batching rule: a change on an idle link leaves at once; under
	 * load, changes wait for sender_buffer_size of them, for
	 * sender_flush_interval since the first, or for the peer to have acked
	 * every change sent (as Nagle's rule), whichever comes first.  So a
	 * change waits at most about a round trip unless a full batch is
	 * ready, and batches grow with the load. */
	uint64_t n = sendable(r, p);
	if (n) {
		uint64_t iv = repl_ms(k->replicated_sender_flush_interval);
		if (!p->pending_since)
			p->pending_since = r->now;
		send_new = iv == 0 || !p->last_data_sent || r->now - p->last_data_sent >= iv ||
			   n >= k->replicated_sender_buffer_size ||
			   r->now - p->pending_since >= iv || all_acked(r, p);
		if (!send_new)
			repl_set_deadline(r, p->pending_since + iv);
	}
	put_acks(&o);
	put_clusters(&o);
	for (unsigned s = 0; s < r->cfg.shards; s++)
		output_shard(&o, (uint16_t)s, send_new, force, &next_due);
	output_messages(&o, &next_due);
	out_send(&o, force);
	if (o.sent_data) {
		p->pending_since = 0;
		p->last_data_sent = r->now;
	}
	repl_set_deadline(r, next_due);
}

void repl_tx_init(struct repl *r, struct peer *p, const uint8_t *cursors, uint64_t held_inc)
{
	for (unsigned s = 0; s < r->cfg.shards; s++) {
		struct shard_tx *tx = &p->tx[s];
		uint64_t c = 0;
		if (cursors && held_inc == r->cfg.inc)
			c = wire_get_u64(cursors + 8 * s);
		resync_tx_free(&tx->snap);
		tx->mode = WIRE_MODE_LOG;
		tx->skip_to = 0;
		stream_tx_reset(&tx->st, c, r->now);
		if (c > r->ops->log_head(r->ctx, (uint16_t)s) || tx->cluster_resync)
			resync_tx_start(r, p, (uint16_t)s); /* a cursor we never wrote */
	}
	p->pending_since = 0;
}

/* ---- receiving changes ---------------------------------------------- */

void repl_rx_reset(struct repl *r, struct peer *p)
{
	for (unsigned s = 0; s < r->cfg.shards; s++) {
		struct shard_rx *rx = &p->rx[s];
		stream_rx_clear(&rx->log, free);
		stream_rx_init(&rx->log, 0);
		resync_rx_reset(&rx->snap);
		rx->snap.committed_id = 0;
		free_pending(rx);
		rx->ack_log = rx->ack_snap = 0;
		rx->want_snapshot = false;
	}
}

struct deliver_ctx {
	struct repl *r;
	struct shard_rx *rx;
};

static void on_deliver(void *arg, uint64_t id, void *payload)
{
	struct deliver_ctx *dc = arg;
	struct shard_rx *rx = dc->rx;
	uint8_t *bytes = payload;

	if (!bytes)
		return; /* a filtered seq */
	if (rx->n_pend == rx->cap_pend) {
		uint32_t cap = rx->cap_pend ? rx->cap_pend * 2 : 64;
		struct pending_rec *np = realloc(rx->pend, cap * sizeof(*np));
		if (!np) {
			free(bytes); /* cannot happen in practice; the resync repairs it */
			return;
		}
		rx->pend = np;
		rx->cap_pend = cap;
	}
	rx->pend[rx->n_pend++] = (struct pending_rec){ .seq = id, .bytes = bytes };
}

void repl_record_from_wire(uint32_t node, const struct wire_record *w, struct repl_record *out)
{
	*out = (struct repl_record){
		.seq = w->seq,
		.op = w->op,
		.reason = w->reason,
		.cluster_len = w->cluster_len,
		.key_len = w->key_len,
		.meta_len = w->meta_len,
		.node = node,
		.ep_slot = w->ep_slot,
		.ep_gen = w->ep_gen,
		.pid = w->pid,
		.time_ns = w->time_ns,
		.cluster = w->cluster,
		.key = w->key,
		.meta = w->meta,
	};
}

/* Applies every pending change of (p, shard) in batches of at most the
 * larger receiver buffer size. */
static void apply_pending(struct repl *r, struct peer *p, uint16_t shard)
{
	const struct repl_knobs *k = &r->cfg.knobs;
	struct shard_rx *rx = &p->rx[shard];
	uint32_t max = k->replicated_registry_receiver_buffer_size;
	struct repl_record *recs;

	if (k->replicated_pg_receiver_buffer_size > max)
		max = k->replicated_pg_receiver_buffer_size;
	recs = malloc(max * sizeof(*recs));
	if (!recs)
		return; /* tried again at the next poll */
	for (uint32_t i = 0; i < rx->n_pend;) {
		uint32_t n = 0;
		for (; i < rx->n_pend && n < max; i++, n++) {
			struct wire_record w;
			size_t off = 0;
			/* Validated when it arrived; decoding again cannot fail. */
			wire_record_next(rx->pend[i].bytes, SIZE_MAX, &off, &w);
			repl_record_from_wire(p->node, &w, &recs[n]);
		}
		struct repl_batch b = {
			.type = REPL_BATCH_DELTA,
			.shard = shard,
			.node = p->node,
			.inc = p->held_inc,
			.cursor = i == rx->n_pend ? rx->log.cum : rx->pend[i - 1].seq,
			.records = recs,
			.n = n,
		};
		r->ops->apply(r->ctx, &b);
	}
	free(recs);
	free_pending(rx);
}

/* The receiver's batching rule: delivered changes are acked with the
 * datagram that brought them (repl_input answers before anything is
 * applied) and applied at the next repl_poll, which the caller makes once
 * it has handed over the datagrams it had (the deadline is "now").  So
 * the acks never wait behind applying, an idle link applies each change
 * at once, and under load a poll applies everything a burst brought, in
 * batches of the receiver buffer size. */
static void apply_poll(struct repl *r, struct peer *p, uint16_t shard)
{
	if (p->rx[shard].n_pend)
		apply_pending(r, p, shard);
}

static void log_input(struct repl *r, struct peer *p, const struct wire_data_frame *d)
{
	struct shard_rx *rx = &p->rx[d->shard];
	struct wire_record w;
	size_t off = 0, prev = 0;
	uint64_t id = d->from_seq;

	/* Records and the filtered seqs between them, in seq order. */
	for (;;) {
		int more = wire_record_next(d->records, d->records_len, &off, &w) == 1;
		uint64_t upto = more ? w.seq : d->to_seq + 1;
		for (; id < upto && id <= rx->log.cum + STREAM_WINDOW; id++)
			stream_rx_put(&rx->log, id, NULL);
		if (!more)
			break;
		id = w.seq + 1;
		if (w.seq <= rx->log.cum) {
			r->c.rx_dup_records++;
		} else {
			size_t len = off - prev;
			uint8_t *copy = malloc(len);
			int rc = -1;
			if (copy) {
				memcpy(copy, d->records + prev, len);
				rc = stream_rx_put(&rx->log, w.seq, copy);
			}
			if (rc != 1) {
				free(copy);
				if (rc == 0)
					r->c.rx_dup_records++;
				else
					r->c.rx_beyond_window++;
			}
		}
		prev = off;
	}
	struct deliver_ctx dc = { .r = r, .rx = rx };
	stream_rx_deliver(&rx->log, on_deliver, &dc);
	rx->ack_log = 1;
	if (rx->n_pend)
		repl_set_deadline(r, r->now); /* applied by the next repl_poll */
}

static void peer_ack_input(struct repl *r, struct peer *p, const struct wire_peer_ack *a)
{
	if (a->largest_pkt_no <= p->largest_acked_pkt || a->largest_pkt_no > p->pkt_no)
		return;
	p->largest_acked_pkt = a->largest_pkt_no;
	if (p->pkt_no - a->largest_pkt_no >= PKT_LOG)
		return;
	uint64_t sent = p->pkt_sent_at[a->largest_pkt_no % PKT_LOG];
	if (r->now >= sent + a->delay_us)
		rto_sample(&p->rto, r->now - sent - a->delay_us);
}

static void ack_input(struct repl *r, struct peer *p, const struct wire_ack *a)
{
	struct shard_tx *tx = &p->tx[a->shard];

	if (a->mode == WIRE_MODE_MSG)
		msg_ack_input(r, p, a);
	else if (a->mode == WIRE_MODE_SET)
		clusters_ack_input(r, p, a);
	else if (tx->mode == WIRE_MODE_LOG && a->mode == WIRE_MODE_LOG)
		stream_tx_on_ack(&tx->st, a, r->now);
	else
		resync_tx_on_ack(r, p, a->shard, a);
}

static void data_input(struct repl *r, struct peer *p, const uint8_t *body, size_t len)
{
	struct wire_frame f;
	size_t off = 0;

	while (wire_frame_next(body, len, &off, &f) == 1) {
		struct wire_peer_ack pa;
		struct wire_data_frame d;
		struct wire_ack a;
		switch (f.kind) {
		case WIRE_F_PEER_ACK:
			wire_peer_ack_decode(&f, &pa);
			peer_ack_input(r, p, &pa);
			break;
		case WIRE_F_LOG:
		case WIRE_F_SNAP:
			wire_data_decode(&f, &d);
			if (d.shard >= r->cfg.shards) {
				r->c.rx_bad_body++;
				break;
			}
			if (f.kind == WIRE_F_LOG)
				log_input(r, p, &d);
			else
				resync_rx_input(r, p, &d);
			break;
		case WIRE_F_ACK:
			wire_ack_decode(&f, &a);
			if (a.shard < r->cfg.shards)
				ack_input(r, p, &a);
			else
				r->c.rx_bad_body++;
			break;
		case WIRE_F_DISPATCH:
			msg_input(r, p, &f);
			break;
		case WIRE_F_CLUSTERS:
			clusters_input(r, p, &f);
			break;
		}
	}
}

/* A HELLO from a configured peer signed with another key: both sides log
 * it; the refusal cannot be authenticated, so it only informs. */
static void other_key(struct repl *r, const struct wire_header *h)
{
	struct peer *p = peer_find(r, h->src_node);

	r->c.rx_other_key++;
	if (p && h->type == WIRE_REJECT) {
		/* Our HELLO's refusal, signed with the other key: it cannot be
		 * verified, so it is only logged. */
		peer_event(r, p, REPL_PEER_REFUSED,
			   "the peer uses another cluster key (its refusal is unverified)");
		return;
	}
	if (!p || h->type != WIRE_HELLO)
		return;
	if (p->last_reject_sent &&
	    r->now - p->last_reject_sent < repl_ms(r->cfg.knobs.busy_retry_interval))
		return;
	peer_event(r, p, REPL_PEER_REFUSED, "the peer signs with another cluster key");
	struct wire_writer w;
	struct wire_reject rej = { .reason = WIRE_REJECT_KEY,
				   .text_len = 11,
				   .text = "another key" };
	p->last_reject_sent = r->now ? r->now : 1;
	repl_begin(r, p, WIRE_REJECT, &w);
	wire_reject_encode(&w, &rej);
	repl_send(r, p, &w);
}

void repl_input(struct repl *r, uint64_t now_us, const void *buf, size_t len)
{
	struct wire_header h;
	const uint8_t *body = (const uint8_t *)buf + WIRE_HEADER_LEN;
	struct peer *p;

	r->now = now_us;
	r->c.rx_datagrams++;
	if (len < WIRE_OVERHEAD || len > WIRE_MAX_DATAGRAM) {
		r->c.rx_bad_len++;
		return;
	}
	if (wire_header_decode(buf, len, &h) < 0) {
		r->c.rx_bad_header++;
		return;
	}
	if (h.key_id != r->key.id) {
		other_key(r, &h);
		return;
	}
	if (!auth_verify(&r->key, buf, len - WIRE_MAC_LEN)) {
		r->c.rx_bad_mac++;
		return;
	}
	if (h.group_hash != r->group_hash && h.type != WIRE_HELLO) {
		r->c.rx_wrong_group++; /* a HELLO is answered with a refusal below */
		return;
	}
	if (h.dst_node != 0 && h.dst_node != r->cfg.node) {
		r->c.rx_not_for_us++;
		return;
	}
	if (wire_decode_all(buf, len) < 0) {
		r->c.rx_bad_body++;
		return;
	}
	switch (h.type) {
	case WIRE_HELLO:
	case WIRE_HELLO_ACK:
	case WIRE_HELLO_CONFIRM:
		peer_input_hello(r, &h, body);
		return;
	case WIRE_REJECT:
		peer_input_reject(r, &h, body);
		return;
	default:
		break;
	}
	p = peer_find(r, h.src_node);
	if (!p) {
		r->c.rx_unknown_peer++;
		return;
	}
	if (p->state != PEER_UP || h.conn != p->conn || h.src_inc != p->inc ||
	    h.src_session != p->session) {
		r->c.rx_not_peered++; /* another handshake's, or none */
		return;
	}
	if (h.dst_inc != r->cfg.inc || h.dst_session != r->cfg.session) {
		r->c.rx_stale++; /* meant for an earlier life of this node */
		return;
	}
	if (!auth_replay_accept(&p->replay, h.pkt_no)) {
		r->c.rx_replay++;
		return;
	}
	detector_heard(r, p);
	p->confirm_pending = 0; /* it completed the handshake too */
	if (h.type == WIRE_BYE) {
		peer_input_bye(r, p);
		return;
	}
	if (h.pkt_no > p->largest_rx_pkt) {
		p->largest_rx_pkt = h.pkt_no;
		p->largest_rx_at = now_us;
	}
	data_input(r, p, body, h.body_len);
	repl_output(r, p, 0);
}

void repl_poll(struct repl *r, uint64_t now_us)
{
	r->now = now_us;
	r->deadline = UINT64_MAX;
	for (unsigned i = 0; i < r->n_peers; i++) {
		struct peer *p = r->peers[i];
		peer_poll_handshake(r, p);
		detector_poll(r, p);
		if (p->state != PEER_UP)
			continue;
		for (unsigned s = 0; s < r->cfg.shards; s++)
			apply_poll(r, p, (uint16_t)s);
		repl_output(r, p, 0);
	}
	/* After the streams read the log: markers they passed are seen now. */
	clusters_scan(r);
}

void repl_leave(struct repl *r, uint64_t now_us)
{
	r->now = now_us;
	for (unsigned i = 0; i < r->n_peers; i++) {
		struct peer *p = r->peers[i];
		struct wire_writer w;
		if (p->state != PEER_UP)
			continue;
		repl_begin(r, p, WIRE_BYE, &w);
		wire_put_u8(&w, REPL_REASON_NODEDOWN);
		repl_send(r, p, &w);
	}
}

void repl_log_reset(struct repl *r, uint16_t shard)
{
	if (shard >= r->cfg.shards)
		return;
	for (unsigned i = 0; i < r->n_peers; i++)
		if (r->peers[i]->state == PEER_UP)
			resync_tx_start(r, r->peers[i], shard);
}
