/* SPDX-License-Identifier: MIT */
/*
 * The simulation's clock and network.  Events sit in a binary heap ordered
 * by (time, insertion number), so equal times keep a fixed order and a seed
 * replays exactly.  A datagram is lost, duplicated and delayed (base delay
 * plus jitter, which reorders) as it is sent; a partition blocks one
 * direction of a pair at a time, so asymmetric partitions come for free.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

struct sim_event {
	uint64_t at, seq;
	int type;
	uint32_t node, from;
	size_t len;
	uint8_t data[];
};

static int before(const struct sim_event *a, const struct sim_event *b)
{
	return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static void push(struct sim *s, struct sim_event *e)
{
	if (s->heap_n == s->heap_cap) {
		s->heap_cap = s->heap_cap ? s->heap_cap * 2 : 1024;
		s->heap = realloc(s->heap, s->heap_cap * sizeof(*s->heap));
		if (!s->heap)
			abort();
	}
	e->seq = s->event_seq++;
	uint32_t i = s->heap_n++;
	while (i > 0) {
		uint32_t parent = (i - 1) / 2;
		if (!before(e, s->heap[parent]))
			break;
		s->heap[i] = s->heap[parent];
		i = parent;
	}
	s->heap[i] = e;
}

static struct sim_event *pop(struct sim *s)
{
	struct sim_event *top = s->heap[0], *last = s->heap[--s->heap_n];
	uint32_t i = 0;
	for (;;) {
		uint32_t c = 2 * i + 1;
		if (c >= s->heap_n)
			break;
		if (c + 1 < s->heap_n && before(s->heap[c + 1], s->heap[c]))
			c++;
		if (!before(s->heap[c], last))
			break;
		s->heap[i] = s->heap[c];
		i = c;
	}
	if (s->heap_n)
		s->heap[i] = last;
	return top;
}

static struct sim_event *event_new(uint64_t at, int type, uint32_t node, size_t len)
{
	struct sim_event *e = malloc(sizeof(*e) + len);
	if (!e)
		abort();
	e->at = at;
	e->type = type;
	e->node = node;
	e->from = 0;
	e->len = len;
	return e;
}

void sim_schedule(struct sim *s, uint64_t at, int type, uint32_t node)
{
	push(s, event_new(at, type, node, 0));
}

void sim_schedule_poll(struct sim *s, uint32_t id)
{
	struct sim_node *n = &s->node[id];
	if (!n->agent_up)
		return;
	uint64_t at = repl_deadline(n->repl);
	if (at < s->now)
		at = s->now;
	if (at >= n->timer_at)
		return; /* an earlier poll is already queued */
	n->timer_at = at;
	sim_schedule(s, at, EV_POLL, id);
}

static uint64_t delay(struct sim *s)
{
	return s->p.delay_us + (s->p.jitter_us ? sim_below(s, s->p.jitter_us) : 0);
}

void sim_send(struct sim *s, uint32_t from, uint32_t to, const void *buf, size_t len)
{
	s->datagrams++;
	if (to == 0 || to > s->p.nodes || s->blocked[from][to] ||
	    sim_below(s, 100) < s->p.loss_pct) {
		s->lost++;
		return;
	}
	int copies = sim_below(s, 100) < s->p.dup_pct ? 2 : 1;
	for (int i = 0; i < copies; i++) {
		struct sim_event *e = event_new(s->now + delay(s), EV_DELIVER, to, len);
		e->from = from;
		memcpy(e->data, buf, len);
		push(s, e);
	}
}

void sim_partition(struct sim *s)
{
	uint32_t n = s->p.nodes;
	int shape = (int)sim_below(s, 3);
	int one_way = sim_below(s, 2);
	uint8_t side[SIM_MAX_NODES + 1] = { 0 };

	if (shape == 0) {
		side[1 + sim_below(s, n)] = 1; /* isolate one node */
	} else {
		for (uint32_t i = 1; i <= n; i++)
			side[i] = (uint8_t)sim_below(s, 2);
	}
	for (uint32_t a = 1; a <= n; a++)
		for (uint32_t b = 1; b <= n; b++)
			if (side[a] == 1 && side[b] == 0)
				s->blocked[a][b] = s->blocked[b][a] = 1;
	if (one_way) /* only the direction from side 0 to side 1 stays cut */
		for (uint32_t a = 1; a <= n; a++)
			for (uint32_t b = 1; b <= n; b++)
				if (side[a] == 1 && side[b] == 0)
					s->blocked[a][b] = 0;
	if (s->verbose)
		printf("%10.3f ms  partition (%s, %s)\n", s->now / 1000.0,
		       shape == 0 ? "one node" : "split", one_way ? "one way" : "both ways");
}

void sim_heal(struct sim *s)
{
	memset(s->blocked, 0, sizeof(s->blocked));
	if (s->verbose)
		printf("%10.3f ms  heal\n", s->now / 1000.0);
}

static void deliver(struct sim *s, struct sim_event *e)
{
	struct sim_node *n = &s->node[e->node];
	if (!n->agent_up)
		return;
	s->delivered++;
	if (s->verbose > 1)
		printf("%10.3f ms  n%u -> n%u type %u len %zu\n", s->now / 1000.0, e->from, e->node,
		       e->data[5], e->len);
	repl_input(n->repl, s->now, e->data, e->len);
	sim_schedule_poll(s, e->node);
}

static void fault(struct sim *s)
{
	const struct sim_params *p = &s->p;
	uint32_t id = 1 + sim_below(s, p->nodes);
	struct sim_node *n = &s->node[id];
	uint32_t roll = sim_below(s, 100);

	if (roll < p->crash_pct) {
		if (n->host_up) {
			sim_node_crash(s, id);
			sim_schedule(s, s->now + 200000 + sim_below(s, 1500000), EV_RESTART, id);
		}
	} else if ((roll -= p->crash_pct) < p->agent_restart_pct) {
		if (n->agent_up) {
			sim_node_stop_agent(s, id, 0);
			sim_schedule(s, s->now + sim_below(s, 800000), EV_RESTART, id);
		}
	} else if ((roll -= p->agent_restart_pct) < p->leave_pct) {
		if (n->agent_up) {
			sim_node_stop_agent(s, id, 1);
			sim_schedule(s, s->now + sim_below(s, 800000), EV_RESTART, id);
		}
	} else if ((roll -= p->leave_pct) < p->partition_pct) {
		if (!s->heal_at) {
			sim_partition(s);
			s->heal_at = s->now + 100000 + sim_below(s, 2000000);
		}
	}
	if (s->heal_at && s->now >= s->heal_at) {
		sim_heal(s);
		s->heal_at = 0;
	}
}

int sim_step(struct sim *s, uint64_t until)
{
	while (s->heap_n && s->heap[0]->at <= until && !s->failure[0]) {
		struct sim_event *e = pop(s);
		s->now = e->at;
		switch (e->type) {
		case EV_DELIVER:
			deliver(s, e);
			break;
		case EV_POLL: {
			struct sim_node *n = &s->node[e->node];
			if (n->agent_up && n->timer_at == e->at) {
				n->timer_at = UINT64_MAX;
				repl_poll(n->repl, s->now);
				sim_schedule_poll(s, e->node);
			}
			break;
		}
		case EV_OP:
			sim_local_op(s, e->node);
			break;
		case EV_FAULT:
			fault(s);
			break;
		case EV_RESTART:
			sim_node_start(s, e->node);
			break;
		}
		free(e);
	}
	s->now = until;
	return s->failure[0] ? -1 : 0;
}

void sim_net_free(struct sim *s)
{
	while (s->heap_n)
		free(pop(s));
	free(s->heap);
	s->heap = NULL;
	s->heap_cap = 0;
}
