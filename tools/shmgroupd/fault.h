/* SPDX-License-Identifier: MIT */
/*
 * Faults on the agent's own datagrams, off unless configured (replconf.h
 * struct fault_conf): loss, duplication, reordering and delay on sending,
 * and a partition on command that drops what goes to and comes from the
 * chosen peers (or one direction only: an asymmetric partition).  Seeded,
 * so a drill can be repeated; the draws depend on the order of the
 * datagrams too, which the network decides, so a seed repeats the mix of
 * faults rather than their exact targets.
 *
 * Threading: the agent's protocol thread only.
 */
#ifndef SHMGROUPD_FAULT_H
#define SHMGROUPD_FAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "replconf.h"

struct fault;

struct fault_stats {
	uint64_t dropped, duplicated, reordered, delayed, partitioned_tx, partitioned_rx;
};

typedef void (*fault_sink)(void *arg, uint32_t to, const void *buf, size_t len);

/* 0 and *out, or -ENOMEM.  With nothing configured it passes every
 * datagram through until a partition is commanded. */
int fault_new(const struct fault_conf *c, const struct peer_conf *peers, unsigned n_peers,
	      struct fault **out);
void fault_free(struct fault *f);

/* A datagram to `to`: passed to sink now, later, twice, or never. */
void fault_send(struct fault *f, uint64_t now_us, uint32_t to, const void *buf, size_t len,
		fault_sink sink, void *arg);
/* Sends what was held and is due. */
void fault_flush(struct fault *f, uint64_t now_us, fault_sink sink, void *arg);
/* When fault_flush should next run; UINT64_MAX: nothing held. */
uint64_t fault_deadline(const struct fault *f);
/* True if a received datagram is to be dropped (its sender is cut off). */
bool fault_drop_input(struct fault *f, const void *buf, size_t len);
void fault_partition(struct fault *f, bool on);
const struct fault_stats *fault_stats(const struct fault *f);

#endif
