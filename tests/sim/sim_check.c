/* SPDX-License-Identifier: MIT */
/*
 * The simulation's checker.
 *
 * After every batch: for the receiver R, owner O and shard s the batch
 * touched, a shadow replays O's own history up to the batch's cursor; R's
 * slice of (O, s) must equal it exactly.  So every state a reader of R could
 * ever observe (a batch is one step in the store) is a state O really had:
 * no half-applied resync, no zombie row, no lost or reordered change.  The
 * shadow's cursor may only move forward within one incarnation of O, and a
 * batch of a new incarnation must come after a purge of the old one.
 *
 * At the end (network healed, faults stopped, settled): every running node
 * holds exactly each running owner's current entries, of its current
 * incarnation, and nothing of an owner whose agent is not running.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

struct sim_shadow {
	uint64_t inc, cursor;
	struct sim_slice view;
};

void sim_fail(struct sim *s, const char *fmt, ...)
{
	va_list ap;
	if (s->failure[0])
		return; /* the first failure is the one to explain */
	int n = snprintf(s->failure, sizeof(s->failure), "t=%.3f ms: ", s->now / 1000.0);
	va_start(ap, fmt);
	vsnprintf(s->failure + n, sizeof(s->failure) - (size_t)n, fmt, ap);
	va_end(ap);
}

static int is_registry(uint8_t op)
{
	return op == REPL_OP_REGISTER || op == REPL_OP_UNREGISTER;
}

int sim_rec_equal(const struct sim_rec *a, const struct sim_rec *b)
{
	return is_registry(a->op) == is_registry(b->op) && a->ep_slot == b->ep_slot &&
	       a->ep_gen == b->ep_gen && a->pid == b->pid && a->time_ns == b->time_ns &&
	       a->key_len == b->key_len && !memcmp(a->key, b->key, a->key_len) &&
	       a->cluster_len == b->cluster_len &&
	       !memcmp(a->cluster, b->cluster, a->cluster_len) && a->meta_len == b->meta_len &&
	       (!a->meta_len || !memcmp(a->meta, b->meta, a->meta_len));
}

/* Whether an entry counts in a comparison: of the shard (all if < 0), and
 * of a cluster `in` is connected to (the default one only if in is NULL). */
static int counts(const struct sim_rec *e, int shard, const struct sim_node *in)
{
	if (shard >= 0 && e->shard != shard)
		return 0;
	return in ? sim_cluster_open(in, e->cluster, e->cluster_len) : e->cluster_len == 0;
}

/* 1 if a and b hold the same entries that count. */
static int same_view(const struct sim_slice *a, const struct sim_slice *b, int shard,
		     const struct sim_node *in)
{
	uint32_t na = 0, nb = 0;
	for (uint32_t i = 0; i < b->n; i++)
		nb += counts(&b->e[i], shard, in);
	for (uint32_t i = 0; i < a->n; i++) {
		const struct sim_rec *x = &a->e[i];
		if (!counts(x, shard, in))
			continue;
		na++;
		uint32_t j = 0;
		while (j < b->n && !sim_rec_equal(x, &b->e[j]))
			j++;
		if (j == b->n)
			return 0;
	}
	return na == nb;
}

/* An entry of a that counts (for `in`) and is not in b, or NULL. */
static const struct sim_rec *missing(const struct sim_slice *a, const struct sim_slice *b,
				     const struct sim_node *in)
{
	for (uint32_t i = 0; i < a->n; i++) {
		if (!counts(&a->e[i], -1, in))
			continue;
		uint32_t j = 0;
		while (j < b->n && !sim_rec_equal(&a->e[i], &b->e[j]))
			j++;
		if (j == b->n)
			return &a->e[i];
	}
	return NULL;
}

static struct sim_shadow *shadow(struct sim *s, uint32_t r, uint32_t o, uint32_t shard)
{
	uint32_t n = s->p.nodes + 1;
	if (!s->shadows) {
		s->shadows = calloc((size_t)n * n * s->p.shards, sizeof(struct sim_shadow));
		if (!s->shadows)
			abort();
	}
	return &s->shadows[((size_t)r * n + o) * s->p.shards + shard];
}

static void shadow_reset(struct sim_shadow *sh)
{
	for (uint32_t i = 0; i < sh->view.n; i++)
		free(sh->view.e[i].meta);
	free(sh->view.e);
	memset(sh, 0, sizeof(*sh));
}

static const struct sim_history *history(struct sim *s, uint32_t node, uint64_t inc)
{
	for (const struct sim_history *h = s->histories; h; h = h->next)
		if (h->node == node && h->inc == inc)
			return h;
	return NULL;
}

/* The shadow's own copy of a change, applied the way a store applies it. */
static void shadow_apply(struct sim_shadow *sh, const struct sim_rec *r)
{
	struct sim_slice *v = &sh->view;
	uint32_t i = 0;
	for (; i < v->n; i++) {
		const struct sim_rec *e = &v->e[i];
		if (is_registry(e->op) == is_registry(r->op) && e->ep_slot == r->ep_slot &&
		    e->ep_gen == r->ep_gen && e->key_len == r->key_len &&
		    !memcmp(e->key, r->key, r->key_len) && e->cluster_len == r->cluster_len &&
		    !memcmp(e->cluster, r->cluster, r->cluster_len))
			break;
	}
	int removal = r->op == REPL_OP_UNREGISTER || r->op == REPL_OP_LEAVE;
	if (i < v->n) {
		free(v->e[i].meta);
		if (removal) {
			v->e[i] = v->e[--v->n];
			return;
		}
	} else {
		if (removal)
			return;
		if (v->n == v->cap) {
			v->cap = v->cap ? v->cap * 2 : 16;
			v->e = realloc(v->e, v->cap * sizeof(*v->e));
			if (!v->e)
				abort();
		}
		i = v->n++;
	}
	v->e[i] = *r;
	v->e[i].meta = NULL;
	if (r->meta_len) {
		v->e[i].meta = malloc(r->meta_len);
		if (!v->e[i].meta)
			abort();
		memcpy(v->e[i].meta, r->meta, r->meta_len);
	}
}

void sim_check_batch(struct sim *s, uint32_t rid, const struct repl_batch *b)
{
	const struct sim_slice *held = &s->node[rid].slices[b->node];
	uint32_t o = b->node;

	if (b->type == REPL_BATCH_PURGE) {
		for (uint32_t t = 0; t < s->p.shards; t++)
			shadow_reset(shadow(s, rid, o, t));
		if (held->n)
			sim_fail(s, "n%u: entries of n%u left after a purge", rid, o);
		return;
	}
	for (uint32_t t = 0; t < s->p.shards; t++) {
		const struct sim_shadow *other = shadow(s, rid, o, t);
		if (other->inc && other->inc != b->inc) {
			sim_fail(s,
				 "n%u: applied n%u's incarnation %llu while holding its "
				 "incarnation %llu (shard %u) without a purge",
				 rid, o, (unsigned long long)b->inc, (unsigned long long)other->inc,
				 t);
			return;
		}
	}
	struct sim_shadow *sh = shadow(s, rid, o, b->shard);
	const struct sim_history *h = history(s, o, b->inc);
	if (!h) {
		sim_fail(s, "n%u: batch of n%u for an incarnation %llu that never existed", rid, o,
			 (unsigned long long)b->inc);
		return;
	}
	if (b->cursor < sh->cursor) {
		sim_fail(s, "n%u: n%u shard %u went back from seq %llu to %llu", rid, o, b->shard,
			 (unsigned long long)sh->cursor, (unsigned long long)b->cursor);
		return;
	}
	if (b->cursor > h->n[b->shard]) {
		sim_fail(s, "n%u: n%u shard %u at seq %llu, beyond the owner's %llu", rid, o,
			 b->shard, (unsigned long long)b->cursor,
			 (unsigned long long)h->n[b->shard]);
		return;
	}
	for (uint64_t q = sh->cursor + 1; q <= b->cursor; q++) {
		const struct sim_rec *r = &h->rec[b->shard][q - 1];
		if (r->node == o && r->op <= REPL_OP_LEAVE)
			shadow_apply(sh, r);
	}
	sh->cursor = b->cursor;
	sh->inc = b->inc;
	/* Named clusters' entries come and go with connections, which the
	 * owner's history does not show: the final check covers them. */
	if (!same_view(held, &sh->view, b->shard, NULL) ||
	    !same_view(&sh->view, held, b->shard, NULL))
		sim_fail(s,
			 "n%u: after a %s batch, its view of n%u shard %u is not n%u's state at "
			 "seq %llu (%u entries held)",
			 rid, b->type == REPL_BATCH_RESYNC ? "resync" : "delta", o, b->shard, o,
			 (unsigned long long)b->cursor, held->n);
}

void sim_check_forget(struct sim *s, uint32_t receiver)
{
	for (uint32_t o = 0; o <= s->p.nodes; o++)
		for (uint32_t t = 0; t < s->p.shards; t++)
			shadow_reset(shadow(s, receiver, o, t));
}

void sim_check_final(struct sim *s)
{
	for (uint32_t r = 1; r <= s->p.nodes; r++) {
		const struct sim_node *rn = &s->node[r];
		if (!rn->agent_up)
			continue;
		for (uint32_t o = 1; o <= s->p.nodes; o++) {
			const struct sim_node *on = &s->node[o];
			const struct sim_slice *held = &rn->slices[o];
			if (o == r)
				continue;
			sim_clusters_check_final(s, rn, on);
			if (!on->agent_up) {
				if (held->n)
					sim_fail(
						s,
						"final: n%u holds %u entries of n%u, which is down",
						r, held->n, o);
				continue;
			}
			if (!repl_peer_is_up(rn->repl, o))
				sim_fail(s, "final: n%u does not see n%u up", r, o);
			else if (held->n && held->inc != on->inc)
				sim_fail(s,
					 "final: n%u holds n%u's incarnation %llu, it is at %llu",
					 r, o, (unsigned long long)held->inc,
					 (unsigned long long)on->inc);
			else if (!same_view(held, &on->slices[o], -1, rn) ||
				 !same_view(&on->slices[o], held, -1, rn)) {
				const struct sim_rec *x = missing(held, &on->slices[o], rn);
				const char *what = "holds";
				if (!x) {
					x = missing(&on->slices[o], held, rn);
					what = "lacks";
				}
				sim_fail(s,
					 "final: n%u's view of n%u (%u entries) differs from n%u's "
					 "own (%u entries): it %s %.*s/%.*s",
					 r, o, held->n, o, on->slices[o].n, what,
					 x ? x->cluster_len : 0, x ? x->cluster : "",
					 x ? x->key_len : 0, x ? x->key : "");
			}
		}
	}
}

void sim_check_free(struct sim *s)
{
	if (!s->shadows)
		return;
	size_t n = (size_t)(s->p.nodes + 1) * (s->p.nodes + 1) * s->p.shards;
	for (size_t i = 0; i < n; i++)
		shadow_reset(&s->shadows[i]);
	free(s->shadows);
	s->shadows = NULL;
}
