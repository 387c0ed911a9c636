/* SPDX-License-Identifier: MIT */
/*
 * One simulated run: the scenario a seed draws (cluster size, shards, log
 * size, network faults, knobs, fault rates), the chaos phase with workload
 * and faults, then the network healed, faults stopped and the cluster left
 * to settle, then the final checks, twice (two identical quiescent
 * observations).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

static uint32_t pick(uint64_t *rng, uint32_t lo, uint32_t hi)
{
	return lo + (uint32_t)(sim_rand(rng) % (hi - lo + 1));
}

static void draw_params(uint64_t seed, struct sim_params *p, int *log_remote)
{
	uint64_t rng = seed * 0x2545f4914f6cdd1dull + 1;
	int big = seed % 32 == 31; /* one run in 32 has dozens of nodes */
	struct repl_knobs *k = &p->knobs;

	memset(p, 0, sizeof(*p));
	p->nodes = big ? pick(&rng, 24, 40) : pick(&rng, 3, 10);
	p->shards = pick(&rng, 1, SIM_MAX_SHARDS);
	p->log_cap = pick(&rng, 16, 128);
	p->loss_pct = pick(&rng, 0, 3) ? pick(&rng, 0, 30) : 0;
	p->dup_pct = pick(&rng, 0, 10);
	p->delay_us = pick(&rng, 50, 2000);
	p->jitter_us = pick(&rng, 0, 3) ? pick(&rng, 0, 5000) : 0;
	p->chaos_us = big ? 1200000 : pick(&rng, 1500, 3000) * 1000ull;
	p->settle_us = 2500000;
	p->ops_per_s_per_node = big ? 15 : pick(&rng, 10, 100);
	p->crash_pct = pick(&rng, 0, 4);
	p->agent_restart_pct = pick(&rng, 0, 4);
	p->leave_pct = pick(&rng, 0, 2);
	p->partition_pct = pick(&rng, 0, 15);
	p->big_meta_pct = pick(&rng, 0, 3) ? 0 : 2;
	*log_remote = (int)pick(&rng, 0, 1);

	/* The protocol's timers scaled down so that many faults fit in a
	 * short run; the batching knobs drawn over their whole useful range. */
	repl_knobs_default(k);
	k->replicated_sender_buffer_size = pick(&rng, 1, 64);
	k->replicated_sender_flush_interval = pick(&rng, 0, 5);
	k->replicated_registry_receiver_buffer_size = pick(&rng, 1, 64);
	k->replicated_registry_receiver_flush_interval = pick(&rng, 0, 5);
	k->replicated_pg_receiver_buffer_size = pick(&rng, 1, 64);
	k->replicated_pg_receiver_flush_interval = pick(&rng, 0, 5);
	k->busy_retry_attempts = 20;
	k->busy_retry_interval = 100;
	k->slow_retry_interval = 400;
	k->max_datagram = pick(&rng, 600, 1400);
	k->heartbeat_interval = big ? 150 : 100;
	k->down_after = big ? 1000 : 600;
	k->rto_initial = 30;
	k->rto_min = 5;
	k->rto_max = 300;
}

static void end_chaos(struct sim *s)
{
	/* Faults stop: the network heals and stops losing and duplicating
	 * (delay and reordering stay), so that what is checked at the end is
	 * convergence, not a last-moment false suspicion. */
	sim_heal(s);
	s->p.loss_pct = 0;
	s->p.dup_pct = 0;
	s->heal_at = 0;
	for (uint32_t id = 1; id <= s->p.nodes; id++) {
		struct sim_node *n = &s->node[id];
		if (n->agent_up)
			continue;
		/* Some stay down for good: their entries must leave everywhere. */
		if (sim_below(s, 2))
			sim_node_start(s, id);
		else
			n->retired = 1;
	}
}

int sim_run(uint64_t seed, int verbose, struct sim *out_stats)
{
	struct sim *s = calloc(1, sizeof(*s));
	int log_remote, rc;

	if (!s)
		return -1;
	s->seed = seed;
	s->rng = seed;
	s->verbose = verbose;
	draw_params(seed, &s->p, &log_remote);
	if (verbose)
		printf("seed %llu: %u nodes, %u shards, log %u, loss %u%%, dup %u%%, delay %u+%u us, "
		       "datagram %u, remote logging %d\n",
		       (unsigned long long)seed, s->p.nodes, s->p.shards, s->p.log_cap,
		       s->p.loss_pct, s->p.dup_pct, s->p.delay_us, s->p.jitter_us,
		       s->p.knobs.max_datagram, log_remote);
	for (uint32_t id = 1; id <= s->p.nodes; id++) {
		struct sim_node *n = &s->node[id];
		n->id = id;
		snprintf(n->name, sizeof(n->name), "node-%u", id);
		n->rng = seed ^ ((uint64_t)id << 40);
		n->log_remote = log_remote;
		n->timer_at = UINT64_MAX;
	}
	for (uint32_t id = 1; id <= s->p.nodes; id++) {
		sim_node_start(s, id);
		sim_schedule(s, sim_below(s, 10000), EV_OP, id);
	}
	for (uint64_t t = 100000; t < s->p.chaos_us; t += 100000)
		sim_schedule(s, t, EV_FAULT, 0);
	rc = sim_step(s, s->p.chaos_us);
	if (rc == 0) {
		end_chaos(s);
		rc = sim_step(s, s->p.chaos_us + s->p.settle_us);
	}
	if (rc == 0) {
		sim_check_final(s);
		rc = sim_step(s, s->p.chaos_us + s->p.settle_us + 500000);
	}
	if (rc == 0) {
		sim_check_final(s);
		sim_dispatch_check_final(s);
	}
	rc = s->failure[0] ? -1 : 0;
	if (verbose)
		for (uint32_t id = 1; id <= s->p.nodes; id++) {
			const struct sim_node *n = &s->node[id];
			if (!n->repl)
				continue;
			const struct repl_counters *c = repl_counters(n->repl);
			printf("n%u: rx %llu (bad mac %llu, other key %llu, stale %llu, not peered %llu, "
			       "replay %llu, bad body %llu) tx %llu (retransmits %llu, heartbeats %llu) "
			       "handshakes %llu resyncs sent %llu applied %llu\n",
			       id, (unsigned long long)c->rx_datagrams,
			       (unsigned long long)c->rx_bad_mac,
			       (unsigned long long)c->rx_other_key, (unsigned long long)c->rx_stale,
			       (unsigned long long)c->rx_not_peered,
			       (unsigned long long)c->rx_replay, (unsigned long long)c->rx_bad_body,
			       (unsigned long long)c->tx_datagrams,
			       (unsigned long long)c->tx_retransmits,
			       (unsigned long long)c->tx_heartbeats,
			       (unsigned long long)c->handshakes,
			       (unsigned long long)c->resyncs_sent,
			       (unsigned long long)c->resyncs_applied);
		}
	if (verbose)
		printf("datagrams by type: hello %llu ack %llu confirm %llu reject %llu data %llu bye %llu\n",
		       (unsigned long long)s->by_type[1], (unsigned long long)s->by_type[2],
		       (unsigned long long)s->by_type[3], (unsigned long long)s->by_type[4],
		       (unsigned long long)s->by_type[5], (unsigned long long)s->by_type[6]);
	if (out_stats) {
		memcpy(out_stats->failure, s->failure, sizeof(s->failure));
		out_stats->p = s->p;
		out_stats->now = s->now;
		out_stats->datagrams = s->datagrams;
		out_stats->delivered = s->delivered;
		out_stats->lost = s->lost;
		out_stats->batches = s->batches;
		out_stats->resyncs = s->resyncs;
		out_stats->purges = s->purges;
		out_stats->crashes = s->crashes;
		out_stats->restarts = s->restarts;
	}
	if (verbose)
		printf("messages: %u dispatched, %llu delivered\n", s->n_msgs,
		       (unsigned long long)s->msgs_delivered);
	if (out_stats) {
		out_stats->n_msgs = s->n_msgs;
		out_stats->msgs_delivered = s->msgs_delivered;
	}
	sim_dispatch_free(s);
	sim_check_free(s);
	sim_free(s);
	free(s);
	return rc;
}
