/* SPDX-License-Identifier: MIT */
/*
 * Remote dispatch in the agent (outbound.h).  A message goes to every peer
 * that holds entries of its key in this host's view at the moment the agent
 * takes it, which is never a node that has none (PROTOCOL.md section 10).
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "log.h"
#include "outbound.h"
#include "remote.h"

#define TAKE_BURST 64
#define KEY_NODES 64 /* REMOTE_MAX_NODES */

int outbound_open(shmg_t *h)
{
	return remote_outbound_claim(h);
}

void outbound_close(shmg_t *h)
{
	remote_outbound_release(h);
}

static unsigned hand_over(shmg_t *h, struct repl *core, const struct shmg_event *e,
			  struct outbound_stats *st)
{
	uint32_t nodes[KEY_NODES];
	long n = remote_key_nodes(h, e->cluster, e->key, e->key_len, nodes, KEY_NODES);
	unsigned queued = 0;

	if (n <= 0) {
		st->no_peer++;
		return 0;
	}
	struct repl_message m = {
		.ep_slot = e->id.slot,
		.ep_gen = e->id.gen,
		.cluster_len = (uint8_t)(e->cluster ? strlen(e->cluster) : 0),
		.key_len = (uint16_t)e->key_len,
		.payload_len = (uint32_t)e->meta_len,
		.cluster = e->cluster,
		.key = e->key,
		.payload = e->meta,
	};
	for (long i = 0; i < n; i++) {
		int rc = repl_dispatch(core, nodes[i], &m);
		if (rc == 0) {
			queued++;
			st->handed++;
			continue;
		}
		st->refused++;
		logf_(L_VERBOSE, "message for node %" PRIu32 " not sent: %s", nodes[i],
		      rc == -EAGAIN ? "its window is full" : shmg_strerror(rc));
	}
	return queued;
}

unsigned outbound_take(shmg_t *h, struct repl *core, struct outbound_stats *st)
{
	struct shmg_event ev[TAKE_BURST];
	unsigned queued = 0;
	int n;

	while ((n = shmg_receive(h, ev, TAKE_BURST, 0)) > 0) {
		for (int i = 0; i < n; i++) {
			const struct shmg_event *e = &ev[i];
			if (e->type == SHMG_EV_OVERFLOW) {
				st->lost += e->dropped;
				logf_(L_WARN,
				      "%" PRIu64 " messages for other hosts were dropped: the "
				      "queue was full",
				      (uint64_t)e->dropped);
				continue;
			}
			if (e->type != SHMG_EV_MESSAGE)
				continue; /* the endpoint monitors nothing: cannot happen */
			st->taken++;
			queued += hand_over(h, core, e, st);
		}
	}
	return queued;
}

void outbound_deliver(shmg_t *h, const struct repl_message *m, struct outbound_stats *st)
{
	char cluster[256];
	shmg_id_t from = { .node = m->node, .slot = m->ep_slot, .gen = m->ep_gen };

	memcpy(cluster, m->cluster, m->cluster_len);
	cluster[m->cluster_len] = 0;
	long rc = remote_message_deliver(h, from, m->cluster_len ? cluster : NULL, m->key,
					 m->key_len, m->payload, m->payload_len);
	if (rc >= 0) {
		st->delivered++;
		return;
	}
	st->deliver_failed++;
	logf_(L_WARN, "message from node %" PRIu32 " not delivered: %s", m->node,
	      shmg_strerror((int)rc));
}
