/* SPDX-License-Identifier: MIT */
/*
 * The agent's replication: the protocol core (repl/) run over UDP against
 * this host's arena, on two threads of its own (docs/ARCHITECTURE.md "The
 * agent's threads").
 *
 * Every function here is called from the agent's main thread.
 */
#ifndef SHMGROUPD_REPLICATION_H
#define SHMGROUPD_REPLICATION_H

#include <stdbool.h>
#include <stdint.h>

#include "replconf.h"
#include "shmgroup.h"
#include "store.h"

struct replication;

struct replication_params {
	const char *arena;             /* the group served: replication opens its own
				 * handle on it (a handle is for one thread) */
	const struct shmg_config *cfg; /* as the agent opened it (owner_uid) */
	const char *group;             /* the name on the wire: the same on every host */
	const struct replconf *conf;
	const uint8_t *key; /* REPL_KEY_LEN bytes, or NULL: no-key mode */
	struct store_config conflicts; /* the resolver loaded, the signal */
};

/* Binds the socket and starts the threads.  0 and *out, or -1 (logged). */
int replication_start(const struct replication_params *p, struct replication **out);

/* SIGHUP: peers new in conf are added (handshakes start at once); a known
 * peer's new address is used from the next datagram.  Removing a peer, or
 * changing this node's settings, takes a restart (logged). */
void replication_update(struct replication *r, const struct replconf *conf);

/* SIGUSR1 (on) and SIGUSR2 (off): the fault layer's partition. */
void replication_partition(struct replication *r, bool on);

/* A clean stop: BYE to every peer that is up, then the threads end and the
 * socket and the replication's handle close.  The arena's entries stay; this
 * node's peers are marked down for shmg_nodes.  NULL is a no-op. */
void replication_stop(struct replication *r);

#endif
