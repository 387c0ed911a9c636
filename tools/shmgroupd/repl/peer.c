/* SPDX-License-Identifier: MIT */
/*
 * The peer table and the handshake (docs/PROTOCOL.md section 4).
 *
 * A peer is UP only after it echoed a nonce we drew for the current attempt:
 * a captured HELLO, HELLO_ACK or HELLO_CONFIRM replayed later can never
 * complete a handshake, because our nonce changes every time one completes
 * and whenever the peer goes down.  Completing a handshake is the only place
 * where a peer's identity (incarnation, session) changes, and where our
 * streams towards it restart from the cursors it reported.
 *
 * Incarnations order a peer's lives: a packet from an older (inc, session)
 * than the one we know is dropped; a completed handshake with a newer inc
 * than the entries we hold purges those entries first, so nothing of the old
 * life survives into the new one.  A newer session with the same inc is the
 * same arena with a restarted agent: its entries stay, and its streams resume
 * from our cursors (the change log's seqs did not restart).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct peer *peer_find(struct repl *r, uint32_t node)
{
	for (unsigned i = 0; i < r->n_peers; i++)
		if (r->peers[i]->node == node)
			return r->peers[i];
	return NULL;
}

void peer_event(struct repl *r, struct peer *p, enum repl_peer_event ev, const char *detail)
{
	if (r->ops->peer_event)
		r->ops->peer_event(r->ctx, p->node, ev, detail);
}

static uint64_t fresh_nonce(struct repl *r)
{
	uint64_t n;
	do
		n = r->ops->random(r->ctx);
	while (n == 0);
	return n;
}

static int newer(uint64_t inc_a, uint32_t ses_a, uint64_t inc_b, uint32_t ses_b)
{
	return inc_a > inc_b || (inc_a == inc_b && ses_a > ses_b);
}

/* HELLO, HELLO_ACK or HELLO_CONFIRM to p, carrying our cursors for it. */
static void send_hello(struct repl *r, struct peer *p, uint8_t type, uint64_t nonce, uint64_t echo)
{
	uint8_t cursors[WIRE_MAX_SHARDS * 8];
	struct wire_writer w;
	uint16_t shards = r->cfg.shards;

	for (unsigned s = 0; s < shards; s++) {
		uint64_t c = !p->rx                  ? 0
			     : p->rx[s].want_snapshot ? REPL_CURSOR_RESYNC
						      : p->rx[s].log.cum;
		for (int i = 0; i < 8; i++)
			cursors[s * 8 + i] = (uint8_t)(c >> (8 * i));
	}
	struct wire_hello hello = {
		.shards = shards,
		.nonce = nonce,
		.echo = echo,
		.held_inc = p->held_inc,
		.n_cursors = p->held_inc ? shards : 0,
		.name = r->node_name,
		.name_len = (uint8_t)strlen(r->node_name),
		.group = r->group,
		.group_len = (uint8_t)strlen(r->group),
		.cursors = cursors,
	};
	repl_begin(r, p, type, &w);
	wire_hello_encode(&w, &hello);
	repl_send(r, p, &w);
}

static void send_reject(struct repl *r, struct peer *p, uint32_t dst, uint8_t reason,
			const char *text)
{
	struct wire_writer w;
	struct peer tmp;

	/* One refusal per retry interval and peer: a refusal is an answer to
	 * a packet, and answers must not be a lever for amplification. */
	if (p && p->last_reject_sent &&
	    r->now - p->last_reject_sent < repl_ms(r->cfg.knobs.busy_retry_interval))
		return;
	if (!p) {
		memset(&tmp, 0, sizeof(tmp));
		tmp.node = dst;
		p = &tmp;
	}
	p->last_reject_sent = r->now ? r->now : 1;
	size_t tl = strlen(text);
	struct wire_reject rej = {
		.reason = reason,
		.text_len = (uint8_t)(tl > WIRE_REASON_TEXT_MAX ? WIRE_REASON_TEXT_MAX : tl),
		.text = text
	};
	repl_begin(r, p, WIRE_REJECT, &w);
	wire_reject_encode(&w, &rej);
	repl_send(r, p, &w);
}

void peer_free_streams(struct repl *r, struct peer *p)
{
	if (p->tx) {
		for (unsigned s = 0; s < r->cfg.shards; s++)
			resync_tx_free(&p->tx[s].snap);
	}
}

void peer_down(struct repl *r, struct peer *p, enum repl_peer_event ev, const char *why)
{
	int tell = p->state == PEER_UP || p->held_inc;

	peer_free_streams(r, p);
	clusters_peer_down(r, p);
	if (p->held_inc) {
		struct repl_batch b = {
			.type = REPL_BATCH_PURGE,
			.reason = REPL_REASON_NODEDOWN,
			.node = p->node,
			.inc = p->held_inc,
		};
		repl_rx_reset(r, p);
		r->ops->apply(r->ctx, &b);
		r->c.purges++;
		p->held_inc = 0;
	}
	p->state = PEER_DOWN;
	p->conn = 0;
	p->confirm_pending = 0;
	p->nonce = fresh_nonce(r);
	p->attempts = 0;
	p->next_hello = r->now;
	p->pending_since = 0;
	if (tell)
		peer_event(r, p, ev, why);
}

/* Both sides derive the same id from the two nonces, whichever way round. */
static uint32_t conn_id(uint64_t a, uint64_t b)
{
	uint64_t x = a ^ b;
	uint32_t c = (uint32_t)(x ^ (x >> 32));
	return c ? c : 1;
}

/* The handshake is done: p is UP as (inc, session) under a new connection id,
 * and our streams towards it start from the cursors it holds for us. */
static void complete(struct repl *r, struct peer *p, const struct wire_header *h,
		     const struct wire_hello *hello, uint64_t ours, uint64_t theirs)
{
	int same = p->state == PEER_UP && p->inc == h->src_inc && p->session == h->src_session;

#ifndef REPL_MUTANT_NO_INC_CHECK
	if (p->held_inc && p->held_inc != h->src_inc) {
		/* A new life of the peer: the old one's entries go first. */
		struct repl_batch b = {
			.type = REPL_BATCH_PURGE,
			.reason = REPL_REASON_NODEDOWN,
			.node = p->node,
			.inc = p->held_inc,
		};
		repl_rx_reset(r, p);
		r->ops->apply(r->ctx, &b);
		r->c.purges++;
		p->held_inc = 0;
		peer_event(r, p, REPL_PEER_RESTARTED, "new incarnation");
	}
#endif
	if (!same) {
		/* Another session numbers its snapshots afresh. */
		for (unsigned s = 0; s < r->cfg.shards; s++) {
			resync_rx_reset(&p->rx[s].snap);
			p->rx[s].snap.committed_id = 0;
		}
	}
	/* Packets of the previous connection are dropped by their id, so the
	 * replay window starts over with this one. */
	auth_replay_reset(&p->replay);
	p->largest_rx_pkt = 0;
	p->conn = conn_id(ours, theirs);
	p->hs_ours = ours;
	p->hs_theirs = theirs;
	p->inc = h->src_inc;
	p->session = h->src_session;
	p->held_inc = h->src_inc;
	p->state = PEER_UP;
	p->attempts = 0;
	p->last_heard = r->now;
	p->nonce = fresh_nonce(r); /* the echoed one is spent */
	rto_init(&p->rto, repl_ms(r->cfg.knobs.rto_initial), repl_ms(r->cfg.knobs.rto_min),
		 repl_ms(r->cfg.knobs.rto_max));
	p->largest_acked_pkt = p->pkt_no;
	clusters_peer_up(r, p);
	repl_tx_init(r, p, hello->n_cursors ? hello->cursors : NULL, hello->held_inc);
	msg_peer_run(r, p);
	r->c.handshakes++;
	peer_event(r, p, same ? REPL_PEER_RECONNECTED : REPL_PEER_UP, NULL);
}

static int check_hello(struct repl *r, struct peer *p, const struct wire_header *h,
		       const struct wire_hello *hello)
{
	char text[512];

	if (hello->shards != r->cfg.shards) {
		snprintf(text, sizeof(text), "shard count %u, this node has %u", hello->shards,
			 r->cfg.shards);
		peer_event(r, p, REPL_PEER_REFUSED, text);
		snprintf(text, sizeof(text), "shard count %u, the peer has %u", hello->shards,
			 r->cfg.shards);
		send_reject(r, p, h->src_node, WIRE_REJECT_SHARDS, text);
		return -1;
	}
	if (strlen(p->name) != hello->name_len || memcmp(p->name, hello->name, hello->name_len)) {
		snprintf(text, sizeof(text), "node %u calls itself %.*s, configured as %s",
			 h->src_node, hello->name_len, hello->name, p->name);
		peer_event(r, p, REPL_PEER_REFUSED, text);
		send_reject(r, p, h->src_node, WIRE_REJECT_NODE, text);
		return -1;
	}
	if (strlen(r->group) != hello->group_len ||
	    memcmp(r->group, hello->group, hello->group_len)) {
		snprintf(text, sizeof(text), "group %.*s, this node serves %s", hello->group_len,
			 hello->group, r->group);
		peer_event(r, p, REPL_PEER_REFUSED, text);
		send_reject(r, p, h->src_node, WIRE_REJECT_GROUP, text);
		return -1;
	}
	return 0;
}

void peer_input_hello(struct repl *r, const struct wire_header *h, const uint8_t *body)
{
	struct wire_hello hello;
	struct peer *p;

	if (wire_hello_decode(body, h->body_len, &hello) < 0) {
		r->c.rx_bad_body++;
		return;
	}
	if (h->src_node == r->cfg.node) {
		send_reject(r, NULL, h->src_node, WIRE_REJECT_NODE, "node number in use");
		return;
	}
	p = peer_find(r, h->src_node);
	if (!p) {
		r->c.rx_unknown_peer++;
		return;
	}
	if (check_hello(r, p, h, &hello) < 0)
		return;
	if (p->state == PEER_UP && newer(p->inc, p->session, h->src_inc, h->src_session)) {
		r->c.rx_stale++; /* an older life of the peer, or a replay */
		return;
	}
	if (p->state == PEER_REFUSED)
		p->state = PEER_DOWN;
	if (!p->nonce)
		p->nonce = fresh_nonce(r);
	switch (h->type) {
	case WIRE_HELLO:
		send_hello(r, p, WIRE_HELLO_ACK, p->nonce, hello.nonce);
		break;
	case WIRE_HELLO_ACK:
		if (hello.echo != p->nonce) {
			r->c.rx_stale++;
			return;
		}
		complete(r, p, h, &hello, hello.echo, hello.nonce);
		/* Until DATA under the new id arrives, the peer may not have
		 * completed: the CONFIRM is repeated (peer_poll_handshake). */
		p->confirm_pending = 1;
		p->next_hello = r->now + repl_ms(r->cfg.knobs.busy_retry_interval);
		send_hello(r, p, WIRE_HELLO_CONFIRM, p->hs_ours, p->hs_theirs);
		break;
	case WIRE_HELLO_CONFIRM:
		if (hello.echo != p->nonce) {
			r->c.rx_stale++;
			return;
		}
		complete(r, p, h, &hello, hello.echo, hello.nonce);
		p->confirm_pending = 0;
		break;
	}
}

void peer_input_reject(struct repl *r, const struct wire_header *h, const uint8_t *body)
{
	struct wire_reject rej;
	char text[WIRE_REASON_TEXT_MAX + 32];
	struct peer *p = peer_find(r, h->src_node);

	if (!p || wire_reject_decode(body, h->body_len, &rej) < 0) {
		r->c.rx_bad_body++;
		return;
	}
	r->c.rx_rejects++;
	snprintf(text, sizeof(text), "refused by the peer: %.*s", rej.text_len, rej.text);
	peer_event(r, p, REPL_PEER_REFUSED, text);
	if (p->state != PEER_UP) {
		p->state = PEER_REFUSED;
		p->next_hello = r->now + repl_ms(r->cfg.knobs.slow_retry_interval);
	}
}

void peer_input_bye(struct repl *r, struct peer *p)
{
	peer_down(r, p, REPL_PEER_LEFT, "left");
}

void peer_poll_handshake(struct repl *r, struct peer *p)
{
	if (p->state == PEER_UP) {
		if (!p->confirm_pending)
			return;
		if (r->now >= p->next_hello) {
			send_hello(r, p, WIRE_HELLO_CONFIRM, p->hs_ours, p->hs_theirs);
			p->next_hello = r->now + repl_ms(r->cfg.knobs.busy_retry_interval);
		}
		repl_set_deadline(r, p->next_hello);
		return;
	}
#ifdef REPL_MUTANT_GIVE_UP_HELLO
	/* Mutant: handshakes stop after busy_retry_attempts. */
	if (p->attempts >= r->cfg.knobs.busy_retry_attempts)
		return;
#endif
	if (r->now >= p->next_hello) {
		const struct repl_knobs *k = &r->cfg.knobs;
		if (!p->nonce)
			p->nonce = fresh_nonce(r);
		send_hello(r, p, WIRE_HELLO, p->nonce, 0);
		p->attempts++;
		p->next_hello = r->now + repl_ms(p->attempts < k->busy_retry_attempts
							 ? k->busy_retry_interval
							 : k->slow_retry_interval);
	}
	repl_set_deadline(r, p->next_hello);
}
