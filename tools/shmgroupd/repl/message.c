/* SPDX-License-Identifier: MIT */
/*
 * The message stream (docs/PROTOCOL.md section 10): per peer, the messages
 * shmg_dispatch handed to this node's agent for members on that peer, sent
 * as DISPATCH frames under the same acks and retransmission as the change
 * streams (stream.c), and delivered at the peer once each, in this node's
 * order.
 *
 * Unlike a change stream, whose source (the change log) can be re-read, a
 * message exists only here: the sender keeps a copy of each unacked one, at
 * most REPL_MSG_WINDOW of them and REPL_MSG_WINDOW_BYTES, and refuses more
 * (-EAGAIN) rather than buffer without bound.  Numbers start at 1 for each
 * pair of runs: when the peer comes back as a new run (incarnation or
 * session), its receiver starts from nothing, so both sides start over and
 * the messages it had not acked are given up (the new run's members are not
 * the ones they were meant for, or the agent that held them is gone).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define SLOT(n) ((n) % REPL_MSG_WINDOW)

static void free_copies(struct msg_stream *m, uint64_t from, uint64_t to)
{
	for (uint64_t n = from; n <= to; n++) {
		struct msg_copy *c = &m->q[SLOT(n)];
		free(c->frame);
		if (m->bytes >= c->len)
			m->bytes -= c->len;
		*c = (struct msg_copy){ 0 };
	}
}

void msg_init(struct repl *r, struct peer *p)
{
	struct msg_stream *m = &p->msg;

	memset(m->q, 0, sizeof(m->q));
	stream_tx_reset(&m->tx, 0, r->now);
	stream_rx_init(&m->rx, 0);
	m->last = 0;
	m->bytes = 0;
	m->ack_owed = 0;
	m->run_inc = 0;
	m->run_session = 0;
}

void msg_free(struct msg_stream *m)
{
	free_copies(m, m->tx.acked + 1, m->last);
	stream_rx_clear(&m->rx, free);
}

void msg_peer_run(struct repl *r, struct peer *p)
{
	struct msg_stream *m = &p->msg;

	if (m->run_inc == p->inc && m->run_session == p->session)
		return; /* the same two runs: the streams go on where they were */
	r->c.messages_abandoned += m->last - m->tx.acked;
	free_copies(m, m->tx.acked + 1, m->last);
	stream_tx_reset(&m->tx, 0, r->now);
	m->last = 0;
	m->bytes = 0;
	stream_rx_clear(&m->rx, free);
	stream_rx_init(&m->rx, 0);
	m->ack_owed = 0;
	m->run_inc = p->inc;
	m->run_session = p->session;
}

int repl_dispatch(struct repl *r, uint32_t node, const struct repl_message *msg)
{
	struct peer *p = peer_find(r, node);

	if (!p || p->state != PEER_UP)
		return -ENOTCONN;
	if (msg->key_len == 0 || msg->key_len > WIRE_KEY_MAX || msg->payload_len > WIRE_META_MAX ||
	    !msg->key || (msg->cluster_len && !msg->cluster) ||
	    (msg->payload_len && !msg->payload) || memchr(msg->key, 0, msg->key_len) ||
	    (msg->cluster_len && memchr(msg->cluster, 0, msg->cluster_len)))
		return -EINVAL;
	struct msg_stream *m = &p->msg;
	struct wire_dispatch d = {
		.msg_no = m->last + 1,
		.cluster_len = msg->cluster_len,
		.key_len = msg->key_len,
		.payload_len = msg->payload_len,
		.ep_slot = msg->ep_slot,
		.ep_gen = msg->ep_gen,
		.cluster = msg->cluster,
		.key = msg->key,
		.payload = msg->payload,
	};
	size_t len = wire_dispatch_size(&d);
	if (m->last - m->tx.acked >= REPL_MSG_WINDOW || m->bytes + len > REPL_MSG_WINDOW_BYTES)
		return -EAGAIN;
	uint8_t *frame = malloc(len);
	if (!frame)
		return -ENOMEM;
	struct wire_writer w;
	wire_writer_init(&w, frame, len);
	wire_dispatch_encode(&w, &d);
	m->last++;
	m->q[SLOT(m->last)] = (struct msg_copy){ .frame = frame, .len = len };
	m->bytes += len;
	r->deadline = 0; /* sent at the next poll */
	return 0;
}

/* A held copy of a DISPATCH frame: its length, then its payload. */
static uint8_t *frame_copy(const struct wire_frame *f)
{
	uint8_t *copy = malloc(sizeof(f->len) + f->len);
	if (copy) {
		memcpy(copy, &f->len, sizeof(f->len));
		memcpy(copy + sizeof(f->len), f->payload, f->len);
	}
	return copy;
}

struct deliver_arg {
	struct repl *r;
	struct peer *p;
};

static void on_deliver(void *arg, uint64_t id, void *payload)
{
	struct deliver_arg *da = arg;
	struct repl *r = da->r;
	const uint8_t *frame = payload;
	struct wire_frame f = { .kind = WIRE_F_DISPATCH };
	struct wire_dispatch d;

	(void)id;
	if (!frame)
		return;
	memcpy(&f.len, frame, sizeof(f.len));
	f.payload = frame + sizeof(f.len);
	/* Checked when it arrived; decoding again cannot fail. */
	if (wire_dispatch_decode(&f, &d) == 0) {
		struct repl_message m = {
			.msg_no = d.msg_no,
			.node = da->p->node,
			.ep_slot = d.ep_slot,
			.ep_gen = d.ep_gen,
			.cluster_len = d.cluster_len,
			.key_len = d.key_len,
			.payload_len = d.payload_len,
			.cluster = d.cluster,
			.key = d.key,
			.payload = d.payload,
		};
		r->c.rx_messages++;
		if (r->ops->deliver)
			r->ops->deliver(r->ctx, &m);
	}
	free(payload);
}

void msg_input(struct repl *r, struct peer *p, const struct wire_frame *f)
{
	struct msg_stream *m = &p->msg;
	struct wire_dispatch d;

	if (wire_dispatch_decode(f, &d) < 0)
		return; /* checked with the whole datagram: cannot happen */
	m->ack_owed = 1; /* duplicates too: the ack that would stop them was lost */
	if (d.msg_no <= m->rx.cum) {
#ifdef REPL_MUTANT_NO_MSG_DUP_CHECK
		/* The guard removed: a message delivered before is delivered
		 * again when a duplicate or a resend arrives. */
		struct deliver_arg again = { r, p };
		on_deliver(&again, d.msg_no, frame_copy(f));
#endif
		r->c.rx_dup_messages++;
		return;
	}
	/* An honest sender never has more than the window unacked. */
	if (d.msg_no > m->rx.cum + REPL_MSG_WINDOW) {
		r->c.rx_messages_beyond_window++;
		return;
	}
	uint8_t *copy = frame_copy(f);
	if (!copy)
		return; /* held nowhere: the sender resends it */
	int rc = stream_rx_put(&m->rx, d.msg_no, copy);
	if (rc != 1) {
		free(copy);
		if (rc == 0)
			r->c.rx_dup_messages++;
		else
			r->c.rx_messages_beyond_window++;
		return;
	}
	struct deliver_arg da = { r, p };
	stream_rx_deliver(&m->rx, on_deliver, &da);
}

void msg_ack_input(struct repl *r, struct peer *p, const struct wire_ack *a)
{
	struct msg_stream *m = &p->msg;
	uint64_t before = m->tx.acked;

	if (a->cum >= m->tx.next)
		return; /* acks what was never sent (another run's): ignored */
	stream_tx_on_ack(&m->tx, a, r->now);
	if (m->tx.acked > before)
		free_copies(m, before + 1, m->tx.acked);
}

int repl_peer_run(const struct repl *r, uint32_t node, uint64_t *inc, uint32_t *session)
{
	for (unsigned i = 0; i < r->n_peers; i++) {
		const struct peer *p = r->peers[i];
		if (p->node != node)
			continue;
		if (!p->msg.run_inc)
			return -ENOENT;
		*inc = p->msg.run_inc;
		*session = p->msg.run_session;
		return 0;
	}
	return -ENOENT;
}
