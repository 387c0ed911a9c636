/* SPDX-License-Identifier: MIT */
/*
 * Full resync of one owner's shard (docs/PROTOCOL.md section 7).
 *
 * Sender: when the change log no longer holds the next seq a peer needs, the
 * stream switches to SNAP mode: the store hands over a consistent copy of
 * this node's entries of the shard as of seq S0, encoded once into chunks;
 * the chunks travel as ids 1..n of the same stream machinery, and the stream
 * returns to LOG mode from S0 + 1 when the peer acks seq S0 on the log.
 *
 * Receiver: chunks are staged in memory, never applied piecemeal.  When all n
 * are in, the whole slice goes to the store as one REPL_BATCH_RESYNC, which
 * the store applies in one step: so no reader ever sees a half-replaced
 * slice.  A snapshot older than what the receiver already applied (S0 below
 * its cursor) is discarded rather than committed, because committing it would
 * move the view back in time; the receiver acks its cursor instead and the
 * sender resumes the log from there.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Room for records in one chunk: a default datagram less the header, MAC,
 * the F_SNAP frame's fixed part and a PEER_ACK frame. */
static size_t chunk_budget(const struct repl *r)
{
	return r->cfg.knobs.max_datagram - WIRE_OVERHEAD - WIRE_FRAME_HEADER_LEN - 32 - 16;
}

void resync_tx_free(struct resync_tx *s)
{
	free(s->data);
	free(s->chunk_off);
	free(s->chunk_n);
	memset(s, 0, sizeof(*s));
}

struct build {
	const struct peer *p; /* the snapshot holds only its clusters' entries */
	struct shard_tx *tx;
	struct resync_tx *s;
	size_t budget;
	uint32_t cap_chunks;
	int failed;
};

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t n = *cap ? *cap : 64;
	while (n < need)
		n *= 2;
	void *q = realloc(*p, n * elem);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = n;
	return 0;
}

static void emit(void *arg, const struct repl_record *rec)
{
	struct build *b = arg;
	struct resync_tx *s = b->s;
	struct wire_record w = {
		.op = rec->op,
		.reason = REPL_REASON_NONE,
		.cluster_len = rec->cluster_len,
		.key_len = rec->key_len,
		.meta_len = rec->meta_len,
		.ep_slot = rec->ep_slot,
		.ep_gen = rec->ep_gen,
		.pid = rec->pid,
		.time_ns = rec->time_ns,
		.cluster = rec->cluster,
		.key = rec->key,
		.meta = rec->meta,
	};
	size_t size = wire_record_size(&w);
	struct wire_writer ww;

	if (b->failed || !clusters_send(b->p, b->tx, rec))
		return;
	if (grow((void **)&s->data, &s->cap, s->len + size, 1) < 0)
		goto fail;
	/* A new chunk when this record would overflow the current one (a
	 * record larger than a chunk gets one of its own). */
	size_t cur = s->len - s->chunk_off[s->n_chunks - 1];
	if (cur > 0 && (cur + size > b->budget || s->chunk_n[s->n_chunks - 1] == UINT16_MAX)) {
		size_t cap = b->cap_chunks;
		if (grow((void **)&s->chunk_off, &cap, s->n_chunks + 2, sizeof(uint32_t)) < 0)
			goto fail;
		cap = b->cap_chunks;
		if (grow((void **)&s->chunk_n, &cap, s->n_chunks + 2, sizeof(uint16_t)) < 0)
			goto fail;
		b->cap_chunks = (uint32_t)cap;
		s->chunk_off[s->n_chunks] = (uint32_t)s->len;
		s->chunk_n[s->n_chunks] = 0;
		s->n_chunks++;
	}
	wire_writer_init(&ww, s->data + s->len, size);
	wire_record_encode(&ww, &w);
	s->len += size;
	s->chunk_off[s->n_chunks] = (uint32_t)s->len;
	s->chunk_n[s->n_chunks - 1]++;
	return;
fail:
	b->failed = 1;
}

int resync_tx_start(struct repl *r, struct peer *p, uint16_t shard)
{
	struct shard_tx *tx = &p->tx[shard];
	struct resync_tx *s = &tx->snap;
	struct build b = { .p = p, .tx = tx, .s = s, .budget = chunk_budget(r), .cap_chunks = 64 };

	resync_tx_free(s);
	s->chunk_off = calloc(b.cap_chunks, sizeof(uint32_t));
	s->chunk_n = calloc(b.cap_chunks, sizeof(uint16_t));
	if (!s->chunk_off || !s->chunk_n) {
		resync_tx_free(s);
		return -ENOMEM;
	}
	/* Chunk 1 exists even when the slice is empty: an empty snapshot is
	 * what tells the peer to drop everything it holds of this shard. */
	s->n_chunks = 1;
	tx->named = 0; /* the snapshot replaces all that was sent before */
	int64_t at = r->ops->snapshot(r->ctx, shard, emit, &b);
	if (at < 0 || b.failed) {
		tx->named = 1; /* as unknown as before */
		resync_tx_free(s);
		return at < 0 ? (int)at : -ENOMEM;
	}
	if (tx->mode == WIRE_MODE_SNAP)
		r->c.resyncs_restarted++;
	s->at_seq = (uint64_t)at;
	s->sync_id = ++r->next_sync_id;
	tx->mode = WIRE_MODE_SNAP;
	stream_tx_reset(&tx->st, 0, r->now);
	r->c.resyncs_sent++;
	return 0;
}

/* The snapshot is done: the log resumes after `cum`, what the peer holds. */
static void snap_done(struct repl *r, struct shard_tx *tx, uint64_t cum)
{
	resync_tx_free(&tx->snap);
	tx->mode = WIRE_MODE_LOG;
	tx->skip_to = 0;
	tx->cluster_resync = 0;
	stream_tx_reset(&tx->st, cum, r->now);
}

void resync_tx_on_ack(struct repl *r, struct peer *p, uint16_t shard, const struct wire_ack *a)
{
	struct shard_tx *tx = &p->tx[shard];

	if (tx->mode != WIRE_MODE_SNAP) {
		return; /* a SNAP ack for a snapshot already finished */
	}
	if (a->mode == WIRE_MODE_LOG) {
		/* The peer applied the snapshot (or already had more): the log
		 * resumes after what it holds.  Not for a cluster the peer
		 * joined: its log may be complete with that cluster's records
		 * filtered out, so only the snapshot itself will do. */
		if (a->cum >= tx->snap.at_seq && !tx->cluster_resync)
			snap_done(r, tx, a->cum);
		return;
	}
	if (a->sync_id != tx->snap.sync_id)
		return;
	struct wire_ack capped = *a;
	if (capped.cum > tx->snap.n_chunks)
		capped.cum = tx->snap.n_chunks;
	stream_tx_on_ack(&tx->st, &capped, r->now);
	/* Every chunk in: the peer committed it and holds the shard as of
	 * at_seq (it never holds more, at_seq being our head when taken). */
	if (tx->cluster_resync && tx->st.acked >= tx->snap.n_chunks)
		snap_done(r, tx, tx->snap.at_seq);
}

/* ---- receiving ------------------------------------------------------ */

static void free_chunks(struct resync_rx *s)
{
	for (uint32_t i = 0; i < s->n_delivered; i++)
		free(s->chunks[i]);
	free(s->chunks);
	s->chunks = NULL;
	s->n_delivered = 0;
}

void resync_rx_reset(struct resync_rx *s)
{
	if (s->sync_id)
		stream_rx_clear(&s->rx, free);
	free_chunks(s);
	s->sync_id = 0;
	s->at_seq = 0;
	s->n_chunks = 0;
}

/* A staged chunk: its record count, then the encoded records. */
struct chunk {
	uint16_t n;
	size_t len;
	uint8_t bytes[];
};

static void on_chunk(void *arg, uint64_t id, void *payload)
{
	struct resync_rx *s = arg;
	(void)id;
	s->chunks[s->n_delivered++] = payload;
}

/* Decodes a staged chunk's records (validated on arrival) into out[c->n]. */
static uint32_t chunk_records(const struct chunk *c, uint32_t node, struct repl_record *out)
{
	struct wire_record w;
	size_t off = 0;
	uint32_t n = 0;

	while (n < c->n && wire_record_next(c->bytes, c->len, &off, &w) == 1)
		repl_record_from_wire(node, &w, &out[n++]);
	return n;
}

#ifdef REPL_MUTANT_PIECEMEAL_RESYNC
/* The mutant the simulation must catch: chunks applied as they arrive, so
 * readers see a slice that is half old, half new. */
static void apply_piecemeal(struct repl *r, struct peer *p, uint16_t shard, uint32_t from)
{
	struct resync_rx *s = &p->rx[shard].snap;
	static struct repl_record recs[UINT16_MAX];
	for (uint32_t i = from; i < s->n_delivered; i++) {
		struct repl_batch b = { .type = REPL_BATCH_DELTA,
					.shard = shard,
					.node = p->node,
					.inc = p->held_inc,
					.cursor = p->rx[shard].log.cum,
					.records = recs,
					.n = chunk_records(s->chunks[i], p->node, recs) };
		r->ops->apply(r->ctx, &b);
	}
}
#endif

/* Every chunk is in: the slice replaces what we hold, in one batch. */
static void commit(struct repl *r, struct peer *p, uint16_t shard)
{
	struct shard_rx *rx = &p->rx[shard];
	struct resync_rx *s = &rx->snap;
	size_t total = 0;

	for (uint32_t i = 0; i < s->n_delivered; i++)
		total += ((struct chunk *)s->chunks[i])->n;
	struct repl_record *recs = malloc((total ? total : 1) * sizeof(*recs));
	if (!recs)
		return; /* retried when a chunk is resent */
	size_t n = 0;
	for (uint32_t i = 0; i < s->n_delivered; i++)
		n += chunk_records(s->chunks[i], p->node, recs + n);
	struct repl_batch b = {
		.type = REPL_BATCH_RESYNC,
		.shard = shard,
		.node = p->node,
		.inc = p->held_inc,
		.cursor = s->at_seq,
		.records = recs,
		.n = (uint32_t)n,
	};
	/* Changes delivered but not applied are older than the snapshot. */
	for (uint32_t i = 0; i < rx->n_pend; i++)
		free(rx->pend[i].bytes);
	rx->n_pend = 0;
	r->ops->apply(r->ctx, &b);
	free(recs);
	stream_rx_clear(&rx->log, free);
	stream_rx_init(&rx->log, s->at_seq);
	s->committed_id = s->sync_id;
	resync_rx_reset(s);
	rx->ack_log = 1;
	rx->ack_snap = 1;
	rx->want_snapshot = false;
	r->c.resyncs_applied++;
}

void resync_rx_input(struct repl *r, struct peer *p, const struct wire_data_frame *d)
{
	struct shard_rx *rx = &p->rx[d->shard];
	struct resync_rx *s = &rx->snap;

	rx->ack_snap = 1;
	if (d->sync_id <= s->committed_id || d->sync_id < s->sync_id) {
		rx->ack_log = 1; /* a chunk of a finished or superseded snapshot */
		return;
	}
	if (d->n_chunks > r->cfg.knobs.max_snapshot_chunks) {
		r->c.rx_bad_body++;
		return;
	}
	if (d->sync_id > s->sync_id) {
		resync_rx_reset(s);
		s->sync_id = d->sync_id;
		s->at_seq = d->at_seq;
		s->n_chunks = d->n_chunks;
		s->chunks = calloc(d->n_chunks, sizeof(void *));
		stream_rx_init(&s->rx, 0);
		if (!s->chunks) {
			s->sync_id = 0;
			return;
		}
	}
	if (d->n_chunks != s->n_chunks || d->at_seq != s->at_seq) {
		r->c.rx_bad_body++; /* one snapshot, two descriptions: not ours */
		return;
	}
	struct chunk *c = malloc(sizeof(*c) + d->records_len);
	if (!c)
		return;
	c->n = d->n;
	c->len = d->records_len;
	memcpy(c->bytes, d->records, d->records_len);
	if (stream_rx_put(&s->rx, d->chunk_no, c) != 1) {
		free(c);
		return;
	}
#ifdef REPL_MUTANT_PIECEMEAL_RESYNC
	uint32_t before = s->n_delivered;
	stream_rx_deliver(&s->rx, on_chunk, s);
	apply_piecemeal(r, p, d->shard, before);
#else
	stream_rx_deliver(&s->rx, on_chunk, s);
#endif
	if (s->n_delivered < s->n_chunks)
		return;
	if (s->at_seq < rx->log.cum) {
		/* Older than what we hold: committing would go back in time. */
		s->committed_id = s->sync_id;
		resync_rx_reset(s);
		rx->ack_log = 1;
		return;
	}
	commit(r, p, d->shard);
}
