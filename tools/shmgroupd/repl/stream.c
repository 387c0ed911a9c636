/* SPDX-License-Identifier: MIT */
/*
 * Sender and receiver halves of a stream (stream.h).  The bitmaps are rings:
 * id i lives at bit i % STREAM_WINDOW, which is unambiguous because only ids
 * in (base, base + WINDOW] are ever marked, and a bit is cleared when the
 * base moves past its id.
 */
#include <stdlib.h>
#include <string.h>

#include "stream.h"

#define BIT(id) ((unsigned)((id) % STREAM_WINDOW))

/* ---- sender --------------------------------------------------------- */

void stream_tx_reset(struct stream_tx *tx, uint64_t acked, uint64_t now)
{
	tx->acked = acked;
	tx->next = acked + 1;
	tx->progress_at = now;
	tx->n_fl = 0;
	tx->acked_sent_at = 0;
	CK_BITMAP_INIT(&tx->sacked, STREAM_WINDOW, false);
}

uint64_t stream_tx_limit(const struct stream_tx *tx)
{
	if (tx->n_fl == STREAM_INFLIGHT)
		return 0;
	return tx->acked + STREAM_WINDOW;
}

void stream_tx_sent(struct stream_tx *tx, uint64_t from, uint64_t to, uint64_t now)
{
	if (tx->n_fl == STREAM_INFLIGHT)
		return; /* callers check stream_tx_limit first */
	tx->fl[tx->n_fl++] = (struct stream_frame){ .from = from, .to = to, .sent_at = now };
	if (to + 1 > tx->next)
		tx->next = to + 1;
}

static int sacked(const struct stream_tx *tx, uint64_t id)
{
	return id <= tx->acked ||
	       (id <= tx->acked + STREAM_WINDOW && CK_BITMAP_TEST(&tx->sacked, BIT(id)));
}

/* The frame's lowest id not yet acknowledged, or 0 if all are. */
static uint64_t first_unacked(const struct stream_tx *tx, const struct stream_frame *f)
{
	uint64_t id = f->from > tx->acked ? f->from : tx->acked + 1;
	for (; id <= f->to; id++)
		if (!sacked(tx, id))
			return id;
	return 0;
}

static void drop_frame(struct stream_tx *tx, unsigned i)
{
	memmove(&tx->fl[i], &tx->fl[i + 1], (tx->n_fl - i - 1) * sizeof(tx->fl[0]));
	tx->n_fl--;
}

int stream_tx_on_ack(struct stream_tx *tx, const struct wire_ack *a, uint64_t now)
{
	int news = 0;

	if (a->cum > tx->acked) {
		uint64_t n = a->cum - tx->acked;
		if (n >= STREAM_WINDOW)
			CK_BITMAP_CLEAR(&tx->sacked);
		else
			for (uint64_t id = tx->acked + 1; id <= a->cum; id++)
				CK_BITMAP_RESET(&tx->sacked, BIT(id));
		tx->acked = a->cum;
		tx->progress_at = now;
		if (tx->next <= a->cum)
			tx->next = a->cum + 1;
		news = 1;
	}
	for (unsigned r = 0; r < a->n_ranges; r++) {
		uint64_t lo = a->cum + 1 + a->ranges[r].start;
		uint64_t hi = lo + a->ranges[r].len - 1;
		/* Only ids we sent and that fit the window can be acked. */
		if (hi >= tx->next)
			hi = tx->next - 1;
		if (hi > tx->acked + STREAM_WINDOW)
			hi = tx->acked + STREAM_WINDOW;
		for (uint64_t id = lo > tx->acked ? lo : tx->acked + 1; id <= hi; id++)
			if (!CK_BITMAP_BTS(&tx->sacked, BIT(id)))
				news = 1;
	}
	for (unsigned i = 0; i < tx->n_fl;) {
		const struct stream_frame *f = &tx->fl[i];
		uint64_t first = first_unacked(tx, f);
		if (first != f->from && f->sent_at > tx->acked_sent_at)
			tx->acked_sent_at = f->sent_at;
		if (first == 0)
			drop_frame(tx, i);
		else
			i++;
	}
	return news;
}

int stream_tx_due(const struct stream_tx *tx, const struct rto *rto, uint64_t now, uint64_t *from,
		  uint64_t *to, uint64_t *at)
{
	/* A frame is presumed lost early when a frame sent after it was acked
	 * (even partly) and 9/8 of a round trip has passed since it was sent. */
	uint64_t newest_acked_sent = tx->acked_sent_at;
	uint64_t fast = rto->sampled ? rto->srtt + rto->srtt / 8 : rto->rto;
	*at = UINT64_MAX;
	for (unsigned i = 0; i < tx->n_fl; i++) {
		const struct stream_frame *f = &tx->fl[i];
		uint64_t due = f->sent_at + rto_backoff(rto, f->tries);
		if (f->sent_at < newest_acked_sent && f->sent_at + fast < due)
			due = f->sent_at + fast;
		if (due <= now) {
			*from = first_unacked(tx, f);
			*to = f->to;
			return (int)i;
		}
		if (due < *at)
			*at = due;
	}
	return -1;
}

void stream_tx_resent(struct stream_tx *tx, int i, uint64_t covered, uint64_t now)
{
	struct stream_frame f = tx->fl[i];

	if (covered < f.to && tx->n_fl == STREAM_INFLIGHT) {
		/* No slot to split into: the whole frame counts as resent, and
		 * its tail goes again at its next timeout. */
		tx->fl[i].sent_at = now;
		tx->fl[i].tries++;
		return;
	}
	if (covered < f.to)
		tx->fl[i].from = covered + 1; /* the rest stays due */
	else
		drop_frame(tx, (unsigned)i);
	f.to = covered;
	f.sent_at = now;
	f.tries++;
	tx->fl[tx->n_fl++] = f;
}

int stream_tx_idle(const struct stream_tx *tx)
{
	return tx->acked + 1 >= tx->next;
}

/* ---- receiver ------------------------------------------------------- */

void stream_rx_init(struct stream_rx *rx, uint64_t cum)
{
	rx->cum = cum;
	rx->highest = cum;
	rx->slot = NULL;
	rx->ack_owed = 0;
	CK_BITMAP_INIT(&rx->got, STREAM_WINDOW, false);
}

void stream_rx_clear(struct stream_rx *rx, void (*free_fn)(void *))
{
	if (rx->slot) {
		for (unsigned i = 0; i < STREAM_WINDOW; i++)
			if (rx->slot[i])
				free_fn(rx->slot[i]);
		free(rx->slot);
	}
	rx->slot = NULL;
	CK_BITMAP_CLEAR(&rx->got);
	rx->highest = rx->cum;
}

int stream_rx_put(struct stream_rx *rx, uint64_t id, void *payload)
{
	if (id <= rx->cum)
		return 0;
	if (id > rx->cum + STREAM_WINDOW)
		return -1;
	if (payload && !rx->slot) {
		rx->slot = calloc(STREAM_WINDOW, sizeof(void *));
		if (!rx->slot)
			return -1;
	}
	if (CK_BITMAP_BTS(&rx->got, BIT(id)))
		return 0;
	if (rx->slot)
		rx->slot[BIT(id)] = payload;
	if (id > rx->highest)
		rx->highest = id;
	return 1;
}

void stream_rx_deliver(struct stream_rx *rx, void (*fn)(void *arg, uint64_t id, void *payload),
		       void *arg)
{
	while (CK_BITMAP_TEST(&rx->got, BIT(rx->cum + 1))) {
		uint64_t id = ++rx->cum;
		void *p = NULL;
		CK_BITMAP_RESET(&rx->got, BIT(id));
		if (rx->slot) {
			p = rx->slot[BIT(id)];
			rx->slot[BIT(id)] = NULL;
		}
		fn(arg, id, p);
	}
	if (rx->highest < rx->cum)
		rx->highest = rx->cum;
}

void stream_rx_ack(const struct stream_rx *rx, struct wire_ack *a)
{
	a->cum = rx->cum;
	a->n_ranges = 0;
	uint64_t id = rx->cum + 2; /* cum + 1 is missing, or cum would be past it */
	while (id <= rx->highest && a->n_ranges < WIRE_MAX_RANGES) {
		if (!CK_BITMAP_TEST(&rx->got, BIT(id))) {
			id++;
			continue;
		}
		uint64_t start = id;
		while (id <= rx->highest && CK_BITMAP_TEST(&rx->got, BIT(id)))
			id++;
		a->ranges[a->n_ranges].start = (uint32_t)(start - rx->cum - 1);
		a->ranges[a->n_ranges].len = (uint32_t)(id - start);
		a->n_ranges++;
	}
}
