/* SPDX-License-Identifier: MIT */
/*
 * The failure detector (docs/PROTOCOL.md section 8): a peer is down when no
 * authenticated DATA of its current session arrived for down_after.  Only
 * DATA counts: HELLOs prove the peer runs, not that it hears us, and a peer
 * that keeps sending HELLOs is one whose side of the session is gone.  So an
 * asymmetric partition (we hear it, it does not hear us) ends the same way
 * on both sides: it declares us down for silence, re-handshakes, cannot
 * complete, stops sending DATA, and we declare it down in turn.
 *
 * Heartbeats: a peer that got no datagram from us for heartbeat_interval gets
 * one carrying only a PEER_ACK frame, which is also what lets it sample the
 * round trip when the link carries no data.
 */
#include "internal.h"

void detector_heard(struct repl *r, struct peer *p)
{
	p->last_heard = r->now;
}

void detector_poll(struct repl *r, struct peer *p)
{
	const struct repl_knobs *k = &r->cfg.knobs;

	if (p->state != PEER_UP) {
		/* Entries held from before our own restart, of a peer that has
		 * not completed a handshake since: unverified, and purged if it
		 * stays silent as long as an up peer would be allowed to. */
#ifdef REPL_MUTANT_NO_HELD_PURGE
		if (0) {
#else
		if (p->held_inc) {
#endif
			if (!p->last_heard)
				p->last_heard = r->now;
			if (r->now - p->last_heard >= repl_ms(k->down_after))
				peer_down(r, p, REPL_PEER_DOWN, "not back after a restart");
			else
				repl_set_deadline(r, p->last_heard + repl_ms(k->down_after));
		}
		return;
	}
	if (r->now - p->last_heard >= repl_ms(k->down_after)) {
		peer_down(r, p, REPL_PEER_DOWN, "silent past down_after");
		return;
	}
	repl_set_deadline(r, p->last_heard + repl_ms(k->down_after));
#ifndef REPL_MUTANT_NO_HEARTBEAT
	if (r->now - p->last_sent >= repl_ms(k->heartbeat_interval)) {
		repl_output(r, p, 1);
		r->c.tx_heartbeats++;
	}
	repl_set_deadline(r, p->last_sent + repl_ms(k->heartbeat_interval));
#endif
}
