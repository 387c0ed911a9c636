/* SPDX-License-Identifier: MIT */
/*
 * Remote dispatch, the agent's part (docs/PROTOCOL.md section 10): the
 * messages shmg_dispatch handed to this host's agent wait in the mailbox of
 * the replication handle's endpoint (lib/dispatch.c); the protocol thread
 * takes them out and gives each to the core for every peer holding entries
 * of its key, and delivers what the core receives from peers to this host's
 * endpoints.
 *
 * Threading: the protocol thread only (it owns the handle and the core).
 */
#ifndef SHMGROUPD_OUTBOUND_H
#define SHMGROUPD_OUTBOUND_H

#include <stdint.h>

#include "repl.h"
#include "shmgroup.h"

struct outbound_stats {
	uint64_t taken;     /* messages taken from the queue */
	uint64_t handed;    /* (message, peer) pairs given to the core */
	uint64_t refused;   /* pairs the core refused: peer down, or its window full */
	uint64_t no_peer;   /* messages whose key no peer holds any more */
	uint64_t lost;      /* messages the queue dropped (overflow markers) */
	uint64_t delivered; /* messages from peers delivered here */
	uint64_t deliver_failed;
};

/* Makes the handle's mailbox this host's queue of messages for other hosts.
 * 0 or the library's error. */
int outbound_open(shmg_t *h);
/* Withdraws it (a clean stop). */
void outbound_close(shmg_t *h);
/* Takes every waiting message and queues it in the core; returns how many
 * (message, peer) pairs were queued. */
unsigned outbound_take(shmg_t *h, struct repl *core, struct outbound_stats *st);
/* The core's deliver callback's work: m to this host's endpoints of its key. */
void outbound_deliver(shmg_t *h, const struct repl_message *m, struct outbound_stats *st);

#endif
