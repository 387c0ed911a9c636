/* SPDX-License-Identifier: MIT */
/*
 * Reliable, ordered delivery of one stream: a space of ids (change-log seqs
 * in LOG mode, chunk numbers in SNAP mode) sent as frames that each cover a
 * contiguous id range (docs/PROTOCOL.md section 6).
 *
 * Sender (stream_tx): knows the cumulative ack `acked` (every id <= acked was
 * delivered), the selectively acked ids above it, and up to STREAM_INFLIGHT
 * frames in flight with their send times.  It never holds data: a frame due
 * for retransmission is re-read from its source (the change log or the
 * snapshot copy) by the caller.  At most STREAM_WINDOW ids above `acked` may
 * be sent, which is also the receiver's buffer: a receiver never has to drop
 * what an honest sender sends, except to loss.
 *
 * Receiver (stream_rx): keeps `cum` and, for ids in (cum, cum + WINDOW], a
 * received bit (ck_bitmap ring indexed by id % WINDOW) and the payload copy
 * the caller attached, until the ids below it arrive and it can be delivered
 * in order.
 */
#ifndef REPL_STREAM_H
#define REPL_STREAM_H

#include <ck_bitmap.h>
#include <stddef.h>
#include <stdint.h>

#include "rto.h"
#include "wire.h"

#define STREAM_WINDOW 1024u
#define STREAM_INFLIGHT 64u

struct stream_frame {
	uint64_t from, to; /* ids covered */
	uint64_t sent_at;
	uint32_t tries; /* retransmissions so far */
};

struct stream_tx {
	uint64_t acked;         /* cumulative */
	uint64_t next;          /* lowest id never sent */
	uint64_t progress_at;   /* when acked last moved, or the stream started */
	uint64_t acked_sent_at; /* send time of the newest frame acked so far */
	CK_BITMAP_INSTANCE(STREAM_WINDOW) sacked;
	struct stream_frame fl[STREAM_INFLIGHT]; /* in send order */
	unsigned n_fl;
};

void stream_tx_reset(struct stream_tx *tx, uint64_t acked, uint64_t now);
/* The highest id that may be sent now (acked + WINDOW), or 0 if no frame
 * slot is free. */
uint64_t stream_tx_limit(const struct stream_tx *tx);
/* Records a first send of [from, to]. */
void stream_tx_sent(struct stream_tx *tx, uint64_t from, uint64_t to, uint64_t now);
/* Applies an ack; returns 1 if it acknowledged anything new. */
int stream_tx_on_ack(struct stream_tx *tx, const struct wire_ack *a, uint64_t now);
/* The first frame due for retransmission at `now` (RTO with backoff, or an
 * earlier frame overtaken by a later acked one for more than 9/8 srtt);
 * returns its index and the part still unacked in *from, *to, or -1.  *at
 * gets the earliest time a frame will be due (UINT64_MAX if none). */
int stream_tx_due(const struct stream_tx *tx, const struct rto *rto, uint64_t now, uint64_t *from,
		  uint64_t *to, uint64_t *at);
/* The frame at index i was resent as [from, covered]: ids above covered, if
 * any, stay in flight under the old send time. */
void stream_tx_resent(struct stream_tx *tx, int i, uint64_t covered, uint64_t now);
/* 1 if every id sent so far is acknowledged. */
int stream_tx_idle(const struct stream_tx *tx);

struct stream_rx {
	uint64_t cum;
	uint64_t highest; /* highest id received */
	void **slot;      /* STREAM_WINDOW payloads, allocated on the first gap */
	CK_BITMAP_INSTANCE(STREAM_WINDOW) got;
	int ack_owed;
};

void stream_rx_init(struct stream_rx *rx, uint64_t cum);
/* Frees held payloads with free_fn. */
void stream_rx_clear(struct stream_rx *rx, void (*free_fn)(void *));
/* Marks id received with payload (may be NULL: a filtered id).  Returns 1 if
 * the id is new and the payload is now held, 0 for a duplicate, -1 if it is
 * beyond the window; in both latter cases the caller keeps the payload. */
int stream_rx_put(struct stream_rx *rx, uint64_t id, void *payload);
/* Delivers, in order, every id contiguous with cum: fn(arg, id, payload). */
void stream_rx_deliver(struct stream_rx *rx, void (*fn)(void *arg, uint64_t id, void *payload),
		       void *arg);
/* The ack to send: cum and up to WIRE_MAX_RANGES received ranges above it. */
void stream_rx_ack(const struct stream_rx *rx, struct wire_ack *a);

#endif
