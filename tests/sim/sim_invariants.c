/* SPDX-License-Identifier: MIT */
/*
 * The invariants of the checker that concern registry claims and
 * the end of a run (docs/PROTOCOL.md section 16 maps each to Group's TLA+
 * invariants and Jepsen checks).  sim_check.c keeps the per-batch replay of
 * each owner's history (no partially applied resync) and the per-owner
 * final views.
 *
 * The rule is written out again here, apart from claims.c, so that a fault
 * in the rule's code cannot hide itself from its own check.
 *
 *   per batch: the visible claim of each key the batch touched is the
 *      rule's winner among the claims the node holds (deterministic winners);
 *   per eviction: the evicted claim loses to its winner under the rule;
 *   final, in this order:
 *      every live owner's claim is visible on every survivor;
 *      every survivor's registry is the same, exactly;
 *      a retired node is purged everywhere and up nowhere;
 *      no survivor holds entries of an owner whose agent is down, nor shows
 *      or hides a claim that its owner no longer holds;
 *      each node's registry count equals its registry, its hidden claims
 *      are the claims held that are not visible, and none of them is its own;
 *      the second final observation equals the first.
 */
#include <stdio.h>
#include <string.h>

#include "sim.h"

static int id_cmp(const struct sim_rec *a, const struct sim_rec *b)
{
	if (a->node != b->node)
		return a->node < b->node ? -1 : 1;
	if (a->ep_slot != b->ep_slot)
		return a->ep_slot < b->ep_slot ? -1 : 1;
	if (a->ep_gen != b->ep_gen)
		return a->ep_gen < b->ep_gen ? -1 : 1;
	return 0;
}

/* The rule, as PROTOCOL.md section 15 states it: 1 if a beats b. */
static int rule_wins(const struct sim *s, const struct sim_rec *a, const struct sim_rec *b)
{
	int id = id_cmp(a, b);
	if (s->p.resolver) {
		const struct sim_rec *lo = id < 0 ? a : b, *hi = id < 0 ? b : a;
		struct repl_record rlo, rhi;
		sim_rec_to_repl(lo, &rlo);
		sim_rec_to_repl(hi, &rhi);
		return (sim_claims_resolver(&rlo, &rhi, NULL) == 0 ? lo : hi) == a;
	}
	if (a->time_ns != b->time_ns)
		return a->time_ns > b->time_ns;
	return id > 0;
}

static const struct sim_rec *visible_of(const struct sim_node *n, const struct sim_rec *key)
{
	for (uint32_t i = 0; i < n->visible.n; i++)
		if (sim_same_key(&n->visible.e[i], key))
			return &n->visible.e[i];
	return NULL;
}

static void describe(const struct sim_rec *r, char *buf, size_t len)
{
	if (!r)
		snprintf(buf, len, "none");
	else
		snprintf(buf, len, "n%u.%u.%u (t %llu)", r->node, r->ep_slot, r->ep_gen,
			 (unsigned long long)r->time_ns);
}

/* The claim of `key` node id should show: the rule's best of those held. */
static void check_key(struct sim *s, uint32_t id, const struct sim_rec *key)
{
	const struct sim_node *n = &s->node[id];
	const struct sim_rec *best = NULL;
	for (uint32_t o = 1; o <= s->p.nodes; o++) {
		const struct sim_slice *sl = &n->slices[o];
		for (uint32_t i = 0; i < sl->n; i++) {
			const struct sim_rec *e = &sl->e[i];
			if (e->op == REPL_OP_REGISTER && sim_same_key(e, key) &&
			    (!best || rule_wins(s, e, best)))
				best = e;
		}
	}
	const struct sim_rec *v = visible_of(n, key);
	if ((!best && !v) || (best && v && sim_same_claim(best, v)))
		return;
	char want[64], got[64];
	describe(best, want, sizeof(want));
	describe(v, got, sizeof(got));
	sim_fail(s, "n%u: '%.*s%s%.*s' shows %s, the rule's winner among the claims held is %s",
		 id, (int)key->cluster_len, key->cluster, key->cluster_len ? "/" : "",
		 (int)key->key_len, key->key, got, want);
}

static void check_all_keys(struct sim *s, uint32_t id)
{
	const struct sim_node *n = &s->node[id];
	for (uint32_t i = 0; i < n->visible.n && !s->failure[0]; i++)
		check_key(s, id, &n->visible.e[i]);
	for (uint32_t o = 1; o <= s->p.nodes && !s->failure[0]; o++)
		for (uint32_t i = 0; i < n->slices[o].n; i++)
			if (n->slices[o].e[i].op == REPL_OP_REGISTER)
				check_key(s, id, &n->slices[o].e[i]);
}

void sim_invariants_batch(struct sim *s, uint32_t id, const struct repl_batch *b)
{
	if (b->type != REPL_BATCH_DELTA) {
		check_all_keys(s, id);
		return;
	}
	for (uint32_t i = 0; i < b->n && !s->failure[0]; i++) {
		const struct repl_record *r = &b->records[i];
		struct sim_rec key = { 0 };
		if (r->op != REPL_OP_REGISTER && r->op != REPL_OP_UNREGISTER)
			continue;
		key.cluster_len = r->cluster_len < SIM_CLUSTER_MAX ? r->cluster_len : SIM_CLUSTER_MAX;
		key.key_len = (uint8_t)(r->key_len < SIM_KEY_MAX ? r->key_len : SIM_KEY_MAX);
		memcpy(key.cluster, r->cluster, key.cluster_len);
		memcpy(key.key, r->key, key.key_len);
		check_key(s, id, &key);
	}
}

void sim_invariants_eviction(struct sim *s, uint32_t id, const struct sim_rec *loser,
			     const struct sim_rec *winner)
{
	if (rule_wins(s, winner, loser))
		return;
	char l[64], w[64];
	describe(loser, l, sizeof(l));
	describe(winner, w, sizeof(w));
	sim_fail(s, "n%u: evicted %s for '%.*s' in favour of %s, which the rule says loses", id,
		 l, (int)loser->key_len, loser->key, w);
}

/* ---- the end of a run ------------------------------------------------- */

static int survivor(const struct sim *s, uint32_t id)
{
	return s->node[id].agent_up;
}

static void check_retired(struct sim *s)
{
	for (uint32_t x = 1; x <= s->p.nodes; x++) {
		if (!s->node[x].retired)
			continue;
		for (uint32_t r = 1; r <= s->p.nodes; r++) {
			const struct sim_node *rn = &s->node[r];
			if (!survivor(s, r))
				continue;
			uint32_t shown = 0, hidden = 0;
			for (uint32_t i = 0; i < rn->visible.n; i++)
				shown += rn->visible.e[i].node == x;
			for (size_t i = 0; rn->hidden && i < repl_claims_count(rn->hidden); i++)
				hidden += repl_claims_at(rn->hidden, i)->node == x;
			if (rn->slices[x].n || shown || hidden || repl_peer_is_up(rn->repl, x))
				sim_fail(s,
					 "final: n%u still has retired n%u: %u entries, %u claims "
					 "shown, %u hidden, %s",
					 r, x, rn->slices[x].n, shown, hidden,
					 repl_peer_is_up(rn->repl, x) ? "up" : "down");
		}
	}
}

/* 1 if c is a claim its owner holds now, in a run that is up. */
static int live_claim(const struct sim *s, const struct sim_rec *c)
{
	const struct sim_node *o = &s->node[c->node];
	if (!o->agent_up)
		return 0;
	const struct sim_slice *own = &o->slices[c->node];
	for (uint32_t i = 0; i < own->n; i++)
		if (own->e[i].op == REPL_OP_REGISTER && sim_same_claim(&own->e[i], c))
			return 1;
	return 0;
}

static void check_no_dead_claims(struct sim *s)
{
	for (uint32_t r = 1; r <= s->p.nodes && !s->failure[0]; r++) {
		const struct sim_node *rn = &s->node[r];
		char d[64];
		if (!survivor(s, r))
			continue;
		for (uint32_t o = 1; o <= s->p.nodes; o++)
			if (o != r && rn->slices[o].n && !survivor(s, o)) {
				sim_fail(s, "final: n%u holds %u entries of n%u, which is down", r,
					 rn->slices[o].n, o);
				return;
			}
		for (uint32_t i = 0; i < rn->visible.n; i++)
			if (!live_claim(s, &rn->visible.e[i])) {
				describe(&rn->visible.e[i], d, sizeof(d));
				sim_fail(s, "final: n%u shows '%.*s' of %s, which its owner no longer holds",
					 r, (int)rn->visible.e[i].key_len, rn->visible.e[i].key, d);
				return;
			}
		for (size_t i = 0; rn->hidden && i < repl_claims_count(rn->hidden); i++) {
			struct sim_rec c;
			sim_rec_from_claim(s, repl_claims_at(rn->hidden, i), &c);
			if (!live_claim(s, &c)) {
				describe(&c, d, sizeof(d));
				sim_fail(s, "final: n%u hides a claim of '%.*s' by %s, which its owner no "
					    "longer holds",
					 r, (int)c.key_len, c.key, d);
				return;
			}
		}
	}
}

static void check_live_claims_visible(struct sim *s)
{
	for (uint32_t o = 1; o <= s->p.nodes && !s->failure[0]; o++) {
		if (!survivor(s, o))
			continue;
		const struct sim_slice *own = &s->node[o].slices[o];
		for (uint32_t i = 0; i < own->n; i++) {
			const struct sim_rec *c = &own->e[i];
			if (c->op != REPL_OP_REGISTER)
				continue;
			for (uint32_t r = 1; r <= s->p.nodes; r++) {
				/* Only the nodes of the claim's cluster hold it. */
				if (!survivor(s, r) || !sim_cluster_open(&s->node[r], c->cluster, c->cluster_len))
					continue;
				const struct sim_rec *v = visible_of(&s->node[r], c);
				if (v && sim_same_claim(v, c))
					continue;
				char want[64], got[64];
				describe(c, want, sizeof(want));
				describe(v, got, sizeof(got));
				sim_fail(s, "final: live claim %s of '%.*s' is not visible on n%u (it shows %s)",
					 want, (int)c->key_len, c->key, r, got);
				return;
			}
		}
	}
}

/* 1 if every claim a shows of a cluster b is connected to, b shows too. */
static int shows_all_of(const struct sim_node *a, const struct sim_node *b)
{
	for (uint32_t i = 0; i < a->visible.n; i++) {
		const struct sim_rec *e = &a->visible.e[i];
		if (!sim_cluster_open(b, e->cluster, e->cluster_len))
			continue; /* a named cluster b is not in: b holds none of it */
		const struct sim_rec *v = visible_of(b, e);
		if (!v || !sim_same_claim(v, e))
			return 0;
	}
	return 1;
}

/* Survivors show the same claims in the clusters they share: every pair is
 * compared, since two nodes of a named cluster may share it with no other
 * (named clusters' isolation is sim_check.c's). */
static void check_same_registry(struct sim *s)
{
	for (uint32_t r = 1; r <= s->p.nodes && !s->failure[0]; r++) {
		for (uint32_t q = r + 1; survivor(s, r) && q <= s->p.nodes; q++) {
			const struct sim_node *a = &s->node[r], *b = &s->node[q];
			if (!survivor(s, q) || (shows_all_of(a, b) && shows_all_of(b, a)))
				continue;
			sim_fail(s, "final: n%u's registry (%u claims) differs from n%u's (%u)", q,
				 b->visible.n, r, a->visible.n);
			return;
		}
	}
}

static void check_indexes(struct sim *s)
{
	for (uint32_t r = 1; r <= s->p.nodes && !s->failure[0]; r++) {
		const struct sim_node *rn = &s->node[r];
		if (!survivor(s, r))
			continue;
		uint32_t held = 0;
		for (uint32_t o = 1; o <= s->p.nodes; o++)
			for (uint32_t i = 0; i < rn->slices[o].n; i++)
				held += rn->slices[o].e[i].op == REPL_OP_REGISTER;
		size_t hidden = rn->hidden ? repl_claims_count(rn->hidden) : 0;
		if (rn->registry_count != rn->visible.n)
			sim_fail(s, "final: n%u counts %u registrations, it shows %u", r,
				 rn->registry_count, rn->visible.n);
		else if (hidden + rn->visible.n != held)
			sim_fail(s, "final: n%u holds %u claims, shows %u and hides %zu", r, held,
				 rn->visible.n, hidden);
		for (size_t i = 0; i < hidden && !s->failure[0]; i++)
			if (repl_claims_at(rn->hidden, i)->node == r)
				sim_fail(s, "final: n%u hides a claim of its own", r);
	}
}

static uint64_t mix(uint64_t h, uint64_t v)
{
	return (h ^ v) * 0x100000001b3ull;
}

/* A digest of what every survivor shows: the same twice when quiescent.
 * Order-independent (a sum over claims), since the tables are unordered. */
static uint64_t observation(const struct sim *s)
{
	uint64_t d = 0;
	for (uint32_t r = 1; r <= s->p.nodes; r++) {
		const struct sim_node *rn = &s->node[r];
		if (!survivor(s, r))
			continue;
		d += mix(r, 0xa5a5);
		for (uint32_t i = 0; i < rn->visible.n; i++) {
			const struct sim_rec *v = &rn->visible.e[i];
			uint64_t h = mix(mix(mix(mix(14695981039346656037ull, r), v->node), v->ep_slot),
					 v->ep_gen);
			h = mix(mix(h, v->time_ns), v->meta_len);
			for (uint32_t k = 0; k < v->key_len; k++)
				h = mix(h, (uint8_t)v->key[k]);
			for (uint32_t k = 0; k < v->cluster_len; k++)
				h = mix(h, (uint8_t)v->cluster[k]);
			for (uint32_t k = 0; k < v->meta_len; k++)
				h = mix(h, v->meta[k]);
			d += h;
		}
		for (uint32_t o = 1; o <= s->p.nodes; o++)
			d += mix(mix(mix(r, o), rn->slices[o].n), rn->slices[o].inc);
	}
	return d;
}

void sim_invariants_final(struct sim *s, int pass)
{
	check_live_claims_visible(s);
	check_same_registry(s);
	check_retired(s);
	check_no_dead_claims(s);
	check_indexes(s);
	uint64_t d = observation(s);
	if (pass == 1)
		s->digest = d;
	else if (!s->failure[0] && d != s->digest)
		sim_fail(s, "final: the second quiescent observation differs from the first");
}
