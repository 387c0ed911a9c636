/* SPDX-License-Identifier: MIT */
#include "rto.h"

void rto_init(struct rto *r, uint64_t initial_us, uint64_t min_us, uint64_t max_us)
{
	r->srtt = 0;
	r->rttvar = 0;
	r->rto = initial_us;
	r->min = min_us;
	r->max = max_us;
	r->sampled = 0;
}

void rto_sample(struct rto *r, uint64_t rtt_us)
{
	if (!r->sampled) {
		r->srtt = rtt_us;
		r->rttvar = rtt_us / 2;
		r->sampled = 1;
	} else {
		uint64_t dev = r->srtt > rtt_us ? r->srtt - rtt_us : rtt_us - r->srtt;
		r->rttvar = (3 * r->rttvar + dev) / 4;
		r->srtt = (7 * r->srtt + rtt_us) / 8;
	}
	uint64_t v = r->srtt + (4 * r->rttvar > 1000 ? 4 * r->rttvar : 1000);
	r->rto = v < r->min ? r->min : v > r->max ? r->max : v;
}

uint64_t rto_backoff(const struct rto *r, unsigned tries)
{
	uint64_t v = r->rto;
	for (unsigned i = 0; i < tries && v < r->max; i++)
		v *= 2;
	return v > r->max ? r->max : v;
}
