/* SPDX-License-Identifier: MIT */
/*
 * Remote dispatch in the simulation (docs/PROTOCOL.md section 10).  During
 * the chaos phase a node dispatches now and then to a key: like the agent,
 * it hands the message to the core for every peer whose entries of that
 * (cluster, key) its store holds.  Every accepted message is recorded with
 * the runs of both sides, and the checks are:
 *
 *   at delivery: the receiver is the run the sender numbered the message
 *                for, the sender's identity and payload came intact, the
 *                message was not delivered before, and it comes after every
 *                earlier message of the same sender run delivered here;
 *   at the end:  every message whose sender run and receiver run are both
 *                still alive was delivered (exactly once, by the above).
 *
 * Draws come from a PRNG of their own, so the workload of changes is the
 * one the seed always drew.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

struct sim_msg {
	uint32_t src, dst;
	uint64_t src_inc, dst_inc;
	uint32_t src_session, dst_session;
	uint32_t ep_slot, ep_gen;
	uint32_t deliveries;
};

static int same_run(const struct sim_node *n, uint64_t inc, uint32_t session)
{
	return n->agent_up && n->inc == inc && n->session == session;
}

/* The payload: the message's index, then filler up to its length. */
static void payload_fill(uint8_t *buf, uint32_t len, uint64_t index)
{
	memcpy(buf, &index, sizeof(index));
	for (uint32_t i = sizeof(index); i < len; i++)
		buf[i] = (uint8_t)(index * 31 + i);
}

void sim_dispatch_op(struct sim *s, uint32_t id)
{
	struct sim_node *n = &s->node[id];
	char key[SIM_KEY_MAX];
	uint8_t payload[600];

	if (!s->msg_rng)
		s->msg_rng = s->seed ^ 0x6d657373616765ull;
	if (!n->agent_up || sim_rand(&s->msg_rng) % 2 != 0)
		return;
	int kl = snprintf(key, sizeof(key), "k%u", (unsigned)(sim_rand(&s->msg_rng) % 24));
	uint32_t len = sizeof(uint64_t) + (uint32_t)(sim_rand(&s->msg_rng) % 500);
	uint32_t ep = (uint32_t)(sim_rand(&s->msg_rng) % SIM_ENDPOINTS);
	for (uint32_t to = 1; to <= s->p.nodes; to++) {
		const struct sim_slice *sl = &n->slices[to];
		int holds = 0;
		if (to == id)
			continue;
		for (uint32_t i = 0; i < sl->n && !holds; i++)
			holds = sl->e[i].cluster_len == 0 && sl->e[i].key_len == kl &&
				memcmp(sl->e[i].key, key, (size_t)kl) == 0;
		if (!holds)
			continue;
		if (s->n_msgs == s->cap_msgs) {
			uint32_t cap = s->cap_msgs ? s->cap_msgs * 2 : 256;
			struct sim_msg *m = realloc(s->msgs, cap * sizeof(*m));
			if (!m) {
				sim_fail(s, "out of memory");
				return;
			}
			s->msgs = m;
			s->cap_msgs = cap;
		}
		uint64_t index = s->n_msgs;
		struct sim_msg *m = &s->msgs[index];
		*m = (struct sim_msg){ .src = id,
				       .dst = to,
				       .src_inc = n->inc,
				       .src_session = n->session,
				       .ep_slot = ep + 1,
				       .ep_gen = n->ep_gen[ep] };
		if (repl_peer_run(n->repl, to, &m->dst_inc, &m->dst_session) < 0)
			continue;
		payload_fill(payload, len, index);
		struct repl_message rm = { .ep_slot = m->ep_slot,
					   .ep_gen = m->ep_gen,
					   .key_len = (uint16_t)kl,
					   .payload_len = len,
					   .key = key,
					   .payload = payload };
		if (repl_dispatch(n->repl, to, &rm) == 0) {
			s->n_msgs++;
			sim_schedule_poll(s, id);
		}
	}
}

void sim_dispatch_delivered(struct sim *s, uint32_t receiver, const struct repl_message *rm)
{
	const struct sim_node *rn = &s->node[receiver];
	uint8_t expect[600];
	uint64_t index;

	if (rm->payload_len < sizeof(index) || rm->payload_len > sizeof(expect)) {
		sim_fail(s, "n%u: a message of %u bytes, never sent", receiver, rm->payload_len);
		return;
	}
	memcpy(&index, rm->payload, sizeof(index));
	if (index >= s->n_msgs) {
		sim_fail(s, "n%u: message %llu was never sent", receiver, (unsigned long long)index);
		return;
	}
	struct sim_msg *m = &s->msgs[index];
	payload_fill(expect, rm->payload_len, index);
	if (m->dst != receiver || rm->node != m->src || rm->ep_slot != m->ep_slot ||
	    rm->ep_gen != m->ep_gen || memcmp(rm->payload, expect, rm->payload_len) != 0) {
		sim_fail(s, "n%u: message %llu (n%u to n%u) arrived altered or misrouted", receiver,
			 (unsigned long long)index, m->src, m->dst);
		return;
	}
	if (!same_run(rn, m->dst_inc, m->dst_session)) {
		sim_fail(s, "n%u: message %llu was meant for its run %llu.%u, delivered in %llu.%u",
			 receiver, (unsigned long long)index, (unsigned long long)m->dst_inc,
			 m->dst_session, (unsigned long long)rn->inc, rn->session);
		return;
	}
	if (m->deliveries++) {
		sim_fail(s, "n%u: message %llu from n%u delivered twice", receiver,
			 (unsigned long long)index, m->src);
		return;
	}
	/* The previous delivery here from this sender: same sender run and
	 * same receiver run means it must have been dispatched earlier. */
	struct sim_msg_last *last = &s->msg_last[receiver][m->src];
	if (last->valid && last->src_inc == m->src_inc && last->src_session == m->src_session &&
	    last->dst_inc == m->dst_inc && last->dst_session == m->dst_session &&
	    last->index > index)
		sim_fail(s, "n%u: message %llu from n%u delivered after its successor %llu", receiver,
			 (unsigned long long)index, m->src, (unsigned long long)last->index);
	*last = (struct sim_msg_last){ .valid = 1,
				       .index = index,
				       .src_inc = m->src_inc,
				       .src_session = m->src_session,
				       .dst_inc = m->dst_inc,
				       .dst_session = m->dst_session };
	s->msgs_delivered++;
}

void sim_dispatch_check_final(struct sim *s)
{
	for (uint64_t i = 0; i < s->n_msgs; i++) {
		const struct sim_msg *m = &s->msgs[i];
		if (m->deliveries || !same_run(&s->node[m->src], m->src_inc, m->src_session) ||
		    !same_run(&s->node[m->dst], m->dst_inc, m->dst_session))
			continue;
		sim_fail(s, "final: message %llu from n%u to n%u (both runs alive) never delivered",
			 (unsigned long long)i, m->src, m->dst);
		return;
	}
}

void sim_dispatch_free(struct sim *s)
{
	free(s->msgs);
	s->msgs = NULL;
	s->n_msgs = s->cap_msgs = 0;
}
