/* SPDX-License-Identifier: MIT */
/*
 * Round-trip time and retransmission timeout of one peer (RFC 6298
 * smoothing).  Samples come from packet numbers, which are never reused, so
 * a sample is never ambiguous and Karn's rule is not needed (as in QUIC).
 */
#ifndef REPL_RTO_H
#define REPL_RTO_H

#include <stdint.h>

struct rto {
	uint64_t srtt, rttvar, rto; /* microseconds */
	uint64_t min, max;
	int sampled;
};

void rto_init(struct rto *r, uint64_t initial_us, uint64_t min_us, uint64_t max_us);
void rto_sample(struct rto *r, uint64_t rtt_us);
/* The timeout after `tries` unanswered sends of the same data: doubled per
 * try, up to max. */
uint64_t rto_backoff(const struct rto *r, unsigned tries);

#endif
