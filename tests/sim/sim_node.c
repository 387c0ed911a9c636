/* SPDX-License-Identifier: MIT */
/*
 * A simulated host: its store (one slice per owner, its own slice being the
 * truth of what it owns), its change log (a window of log_cap records over
 * the incarnation's history, so that a lagging peer gets lapped), its local
 * workload, and the callbacks through which the protocol core reads the log
 * and applies batches.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

uint64_t sim_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

uint32_t sim_below(struct sim *s, uint32_t n)
{
	return (uint32_t)(sim_rand(&s->rng) % n);
}

uint16_t sim_shard_of(const struct sim *s, const char *cluster, size_t cl, const char *key,
		      size_t kl)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < cl; i++)
		h = (h ^ (uint8_t)cluster[i]) * 16777619u;
	h = (h ^ 0xff) * 16777619u;
	for (size_t i = 0; i < kl; i++)
		h = (h ^ (uint8_t)key[i]) * 16777619u;
	return (uint16_t)(h % s->p.shards);
}

/* ---- slices --------------------------------------------------------- */

static void rec_copy(struct sim_rec *dst, const struct sim_rec *src)
{
	*dst = *src;
	dst->meta = NULL;
	if (src->meta_len) {
		dst->meta = malloc(src->meta_len);
		if (!dst->meta)
			abort();
		memcpy(dst->meta, src->meta, src->meta_len);
	}
}

static void slice_clear(struct sim_slice *sl)
{
	for (uint32_t i = 0; i < sl->n; i++)
		free(sl->e[i].meta);
	free(sl->e);
	memset(sl, 0, sizeof(*sl));
}

static int same_entry(const struct sim_rec *a, const struct sim_rec *b)
{
	int kind_a = a->op == REPL_OP_REGISTER || a->op == REPL_OP_UNREGISTER;
	int kind_b = b->op == REPL_OP_REGISTER || b->op == REPL_OP_UNREGISTER;
	return kind_a == kind_b && a->ep_slot == b->ep_slot && a->ep_gen == b->ep_gen &&
	       a->key_len == b->key_len && !memcmp(a->key, b->key, a->key_len) &&
	       a->cluster_len == b->cluster_len && !memcmp(a->cluster, b->cluster, a->cluster_len);
}

static int slice_find(const struct sim_slice *sl, const struct sim_rec *r)
{
	for (uint32_t i = 0; i < sl->n; i++)
		if (same_entry(&sl->e[i], r))
			return (int)i;
	return -1;
}

/* Applies one change (REGISTER/JOIN upsert, UNREGISTER/LEAVE remove). */
static void slice_apply(struct sim_slice *sl, const struct sim_rec *r)
{
	int i = slice_find(sl, r);
	if (r->op == REPL_OP_UNREGISTER || r->op == REPL_OP_LEAVE) {
		if (i >= 0) {
			free(sl->e[i].meta);
			sl->e[i] = sl->e[--sl->n];
		}
		return;
	}
	if (i >= 0) {
		free(sl->e[i].meta);
		rec_copy(&sl->e[i], r);
		sl->e[i].seq = 0;
		sl->e[i].reason = 0;
		return;
	}
	if (sl->n == sl->cap) {
		sl->cap = sl->cap ? sl->cap * 2 : 16;
		sl->e = realloc(sl->e, sl->cap * sizeof(*sl->e));
		if (!sl->e)
			abort();
	}
	rec_copy(&sl->e[sl->n], r);
	sl->e[sl->n].seq = 0;
	sl->e[sl->n].reason = 0;
	sl->n++;
}

static void from_repl(const struct sim *s, const struct repl_record *in, struct sim_rec *out)
{
	memset(out, 0, sizeof(*out));
	out->seq = in->seq;
	out->op = in->op;
	out->reason = in->reason;
	out->node = in->node;
	out->ep_slot = in->ep_slot;
	out->ep_gen = in->ep_gen;
	out->pid = in->pid;
	out->time_ns = in->time_ns;
	out->cluster_len = in->cluster_len < SIM_CLUSTER_MAX ? in->cluster_len : SIM_CLUSTER_MAX;
	out->key_len = (uint8_t)(in->key_len < SIM_KEY_MAX ? in->key_len : SIM_KEY_MAX);
	memcpy(out->cluster, in->cluster, out->cluster_len);
	memcpy(out->key, in->key, out->key_len);
	out->meta_len = in->meta_len;
	out->meta = (uint8_t *)in->meta; /* borrowed; slice_apply copies */
	out->shard = sim_shard_of(s, out->cluster, out->cluster_len, out->key, out->key_len);
}

void sim_rec_to_repl(const struct sim_rec *in, struct repl_record *out)
{
	*out = (struct repl_record){
		.seq = in->seq,
		.op = in->op,
		.reason = in->reason,
		.cluster_len = in->cluster_len,
		.key_len = in->key_len,
		.meta_len = in->meta_len,
		.node = in->node,
		.ep_slot = in->ep_slot,
		.ep_gen = in->ep_gen,
		.pid = in->pid,
		.time_ns = in->time_ns,
		.cluster = in->cluster,
		.key = in->key,
		.meta = in->meta,
	};
}

/* ---- the change log ------------------------------------------------- */

static struct sim_history *history_new(struct sim *s, uint32_t node, uint64_t inc)
{
	struct sim_history *h = calloc(1, sizeof(*h));
	if (!h)
		abort();
	h->node = node;
	h->inc = inc;
	h->next = s->histories;
	s->histories = h;
	return h;
}

/* Appends to the node's change log (and so to its history). */
static void log_append(struct sim *s, struct sim_node *n, const struct sim_rec *r)
{
	struct sim_history *h = n->hist;
	uint16_t sh = r->shard;
	(void)s;
	if (h->n[sh] == h->cap[sh]) {
		h->cap[sh] = h->cap[sh] ? h->cap[sh] * 2 : 64;
		h->rec[sh] = realloc(h->rec[sh], h->cap[sh] * sizeof(struct sim_rec));
		if (!h->rec[sh])
			abort();
	}
	struct sim_rec *dst = &h->rec[sh][h->n[sh]];
	rec_copy(dst, r);
	dst->seq = ++h->n[sh];
}

static void log_moved(struct sim *s, struct sim_node *n)
{
	if (n->agent_up && n->timer_at != s->now) {
		n->timer_at = s->now; /* the log moved: poll now */
		sim_schedule(s, s->now, EV_POLL, n->id);
	}
}

/* A local change by one of this node's endpoints: to its own slice, then to
 * its change log, as the library does under the shard lock. */
static void local_change(struct sim *s, struct sim_node *n, struct sim_rec *r)
{
	r->node = n->id;
	r->shard = sim_shard_of(s, r->cluster, r->cluster_len, r->key, r->key_len);
	slice_apply(&n->slices[n->id], r);
	log_append(s, n, r);
	log_moved(s, n);
	if (r->op == REPL_OP_REGISTER || r->op == REPL_OP_UNREGISTER)
		sim_claims_change(s, n->id, r);
}

void sim_log_marker(struct sim *s, struct sim_node *n, const struct sim_rec *m)
{
	struct sim_rec r = *m;
	r.node = n->id;
	log_append(s, n, &r);
	log_moved(s, n);
}

/* Removes entry i of the node's own slice, as its owner's removal. */
static void remove_own(struct sim *s, struct sim_node *n, uint32_t i, uint8_t reason)
{
	struct sim_rec gone = n->slices[n->id].e[i];
	gone.meta = NULL;
	gone.meta_len = 0;
	gone.op = gone.op == REPL_OP_REGISTER ? REPL_OP_UNREGISTER : REPL_OP_LEAVE;
	gone.reason = reason;
	local_change(s, n, &gone); /* removes that entry */
}

void sim_remove_own(struct sim *s, struct sim_node *n, const char *cluster, size_t len)
{
	struct sim_slice *own = &n->slices[n->id];
	for (uint32_t i = 0; i < own->n;) {
		if (own->e[i].cluster_len != len || memcmp(own->e[i].cluster, cluster, len)) {
			i++;
			continue;
		}
		remove_own(s, n, i, REPL_REASON_CLUSTER_DISCONNECT);
	}
}

/* Every other owner's entries of a cluster this node left (len 0: of every
 * cluster it is not connected to). */
static void purge_cluster(struct sim *s, struct sim_node *n, const char *cluster, size_t len)
{
	for (uint32_t o = 0; o <= SIM_MAX_NODES; o++) {
		struct sim_slice *sl = &n->slices[o];
		if (o == n->id)
			continue;
		for (uint32_t i = 0; i < sl->n;) {
			const struct sim_rec *e = &sl->e[i];
			if (len ? e->cluster_len == len && !memcmp(e->cluster, cluster, len)
				: !sim_cluster_open(n, e->cluster, e->cluster_len)) {
				free(sl->e[i].meta);
				sl->e[i] = sl->e[--sl->n];
			} else {
				i++;
			}
		}
	}
	sim_claims_purge_cluster(s, n->id, cluster, len);
}

/* Registry entries of one shard of a slice, copied (a resync's before). */
static void slice_registry_of(const struct sim_slice *sl, uint16_t shard, struct sim_slice *out)
{
	for (uint32_t i = 0; i < sl->n; i++)
		if (sl->e[i].shard == shard && sl->e[i].op == REPL_OP_REGISTER)
			slice_apply(out, &sl->e[i]);
}

/* ---- callbacks of the core ------------------------------------------ */

struct node_ctx {
	struct sim *s;
	uint32_t id;
};
static struct node_ctx ctxs[SIM_MAX_NODES + 1];

static void cb_send(void *ctx, uint32_t to, const void *buf, size_t len)
{
	struct node_ctx *c = ctx;
	c->s->by_type[((const uint8_t *)buf)[5] & 7]++;
	sim_send(c->s, c->id, to, buf, len);
}

static void cb_apply(void *ctx, const struct repl_batch *b)
{
	struct node_ctx *c = ctx;
	struct sim *s = c->s;
	struct sim_node *n = &s->node[c->id];
	struct sim_slice *sl, before = { 0 }; /* a resync's registry entries before */

	s->batches++;
	if (b->type == REPL_BATCH_PURGE_CLUSTER) {
		if (b->node != 0 || b->reason != REPL_REASON_CLUSTER_DISCONNECT ||
		    sim_cluster_index(b->cluster, b->cluster_len) < 0)
			sim_fail(s, "node %u: a bad cluster purge", n->id);
		else
			purge_cluster(s, n, b->cluster, b->cluster_len);
		return;
	}
	if (b->node == 0 || b->node > s->p.nodes || b->node == n->id) {
		sim_fail(s, "node %u: batch for owner %u", n->id, b->node);
		return;
	}
	sl = &n->slices[b->node];
	switch (b->type) {
	case REPL_BATCH_PURGE:
		slice_clear(sl);
		sim_claims_purge(s, n->id, b->node);
		n->marks[b->node] = 0; /* as the library clears them with the purge */
		s->purges++;
		break;
	case REPL_BATCH_DELTA:
	case REPL_BATCH_RESYNC:
		if (b->type == REPL_BATCH_RESYNC) {
			/* Survivors are replaced in place, the rest removed: one step. */
			struct sim_slice keep = { 0 };
			slice_registry_of(sl, b->shard, &before);
			for (uint32_t i = 0; i < sl->n; i++)
				if (sl->e[i].shard != b->shard)
					slice_apply(&keep, &sl->e[i]);
			uint64_t cursors[SIM_MAX_SHARDS];
			memcpy(cursors, sl->cursor, sizeof(cursors));
			slice_clear(sl);
			*sl = keep;
			memcpy(sl->cursor, cursors, sizeof(cursors));
			s->resyncs++;
		}
		sl->inc = b->inc;
		for (uint32_t i = 0; i < b->n; i++) {
			struct sim_rec r;
			from_repl(s, &b->records[i], &r);
			if (r.shard != b->shard)
				sim_fail(s, "node %u: record of shard %u in a batch of shard %u",
					 n->id, r.shard, b->shard);
			if (!sim_cluster_open(n, r.cluster, r.cluster_len))
				continue; /* the library's -ENOTCONN */
			slice_apply(sl, &r);
			if (n->log_remote && b->type == REPL_BATCH_DELTA)
				log_append(s, n, &r);
			if (b->type == REPL_BATCH_DELTA &&
			    (r.op == REPL_OP_REGISTER || r.op == REPL_OP_UNREGISTER))
				sim_claims_change(s, n->id, &r);
		}
		sl->cursor[b->shard] = b->cursor;
		if (b->type == REPL_BATCH_RESYNC) {
			/* The registry follows the slice: claims gone, then claims held. */
			for (uint32_t i = 0; i < before.n; i++)
				if (slice_find(sl, &before.e[i]) < 0) {
					struct sim_rec gone = before.e[i];
					gone.op = REPL_OP_UNREGISTER;
					gone.reason = REPL_REASON_RESYNC;
					sim_claims_change(s, n->id, &gone);
				}
			for (uint32_t i = 0; i < sl->n; i++)
				if (sl->e[i].shard == b->shard && sl->e[i].op == REPL_OP_REGISTER)
					sim_claims_change(s, n->id, &sl->e[i]);
		}
		slice_clear(&before);
		break;
	}
	sim_check_batch(s, c->id, b);
	sim_invariants_batch(s, c->id, b);
}

static int cb_log_read(void *ctx, uint16_t shard, uint64_t seq, struct repl_record *out)
{
	struct node_ctx *c = ctx;
	struct sim_node *n = &c->s->node[c->id];
	struct sim_history *h = n->hist;
	if (seq == 0 || seq > h->n[shard])
		return -EAGAIN;
	if (h->n[shard] - seq >= c->s->p.log_cap)
		return -ESTALE; /* overwritten */
	sim_rec_to_repl(&h->rec[shard][seq - 1], out);
	return 0;
}

static uint64_t cb_log_head(void *ctx, uint16_t shard)
{
	struct node_ctx *c = ctx;
	return c->s->node[c->id].hist->n[shard];
}

static int64_t cb_snapshot(void *ctx, uint16_t shard,
			   void (*emit)(void *arg, const struct repl_record *r), void *arg)
{
	struct node_ctx *c = ctx;
	struct sim_node *n = &c->s->node[c->id];
	const struct sim_slice *own = &n->slices[n->id];
	for (uint32_t i = 0; i < own->n; i++) {
		struct repl_record r;
		if (own->e[i].shard != shard)
			continue;
		sim_rec_to_repl(&own->e[i], &r);
		emit(arg, &r);
	}
	return (int64_t)n->hist->n[shard];
}

static void cb_held(void *ctx, uint32_t node, uint64_t *inc, uint64_t *cursors)
{
	struct node_ctx *c = ctx;
	const struct sim_slice *sl = &c->s->node[c->id].slices[node];
	*inc = sl->inc;
	for (uint32_t s = 0; s < c->s->p.shards; s++)
		cursors[s] = sl->cursor[s];
}

static uint64_t cb_random(void *ctx)
{
	struct node_ctx *c = ctx;
	return sim_rand(&c->s->node[c->id].rng);
}

static void cb_peer_event(void *ctx, uint32_t node, enum repl_peer_event ev, const char *detail)
{
	struct node_ctx *c = ctx;
	static const char *names[] = { "?",       "up",        "down",       "left",
				       "refused", "restarted", "reconnected" };
	if (c->s->verbose)
		printf("%10.3f ms  n%u: peer n%u %s%s%s\n", c->s->now / 1000.0, c->id, node,
		       names[ev <= 6 ? ev : 0], detail ? ": " : "", detail ? detail : "");
}

static void cb_deliver(void *ctx, const struct repl_message *m)
{
	struct node_ctx *c = ctx;
	sim_dispatch_delivered(c->s, c->id, m);
}

static void cb_clusters(void *ctx, void (*emit)(void *arg, const char *name, size_t len),
			void *arg)
{
	struct node_ctx *c = ctx;
	sim_clusters_emit(&c->s->node[c->id], emit, arg);
}

static void cb_peer_cluster(void *ctx, uint32_t node, const char *cluster, size_t len,
			    int connected)
{
	struct node_ctx *c = ctx;
	sim_clusters_mark(c->s, c->id, node, cluster, len, connected);
}

static const struct repl_ops sim_ops = {
	.send = cb_send,
	.apply = cb_apply,
	.log_read = cb_log_read,
	.log_head = cb_log_head,
	.snapshot = cb_snapshot,
	.held = cb_held,
	.random = cb_random,
	.peer_event = cb_peer_event,
	.deliver = cb_deliver,
	.clusters = cb_clusters,
	.peer_cluster = cb_peer_cluster,
};

/* ---- lifecycle ------------------------------------------------------ */

static const uint8_t sim_key[REPL_KEY_LEN] = "simulation cluster key 32 bytes";

void sim_node_start(struct sim *s, uint32_t id)
{
	struct sim_node *n = &s->node[id];
	struct repl_config cfg = {
		.node = id,
		.node_name = n->name,
		.group = "sim",
		.shards = (uint16_t)s->p.shards,
		.key = sim_key,
		.knobs = s->p.knobs,
	};

	if (n->agent_up || !n->name[0] || n->retired)
		return;
	if (!n->host_up) {
		/* A new arena: a new incarnation with an empty store and log. */
		n->host_up = 1;
		n->inc = ++s->next_inc;
		n->session = 0;
		n->hist = history_new(s, id, n->inc);
		sim_clusters_new_arena(s, n);
		s->restarts++;
	}
	n->session++;
	memset(n->marks, 0, sizeof(n->marks)); /* the agent's remote_nodes_down at start */
	/* The library sweeps other nodes' entries of a cluster it leaves; the
	 * store here leaves that to the core while one runs (to check that it
	 * does), and does it for the disconnects no core saw. */
	purge_cluster(s, n, NULL, 0);
	cfg.inc = n->inc;
	cfg.session = n->session;
	ctxs[id] = (struct node_ctx){ .s = s, .id = id };
	if (repl_new(&cfg, &sim_ops, &ctxs[id], &n->repl) < 0) {
		sim_fail(s, "node %u: repl_new failed", id);
		return;
	}
	for (uint32_t p = 1; p <= s->p.nodes; p++)
		if (p != id)
			repl_peer_add(n->repl, p, s->node[p].name);
	n->agent_up = 1;
	n->timer_at = UINT64_MAX;
	if (s->verbose)
		printf("%10.3f ms  n%u: agent up, inc %llu session %u\n", s->now / 1000.0, id,
		       (unsigned long long)n->inc, n->session);
	sim_schedule_poll(s, id);
}

void sim_node_stop_agent(struct sim *s, uint32_t id, int clean)
{
	struct sim_node *n = &s->node[id];
	if (!n->agent_up)
		return;
	if (clean)
		repl_leave(n->repl, s->now);
	repl_free(n->repl);
	n->repl = NULL;
	n->agent_up = 0;
	n->timer_at = UINT64_MAX;
	if (s->verbose)
		printf("%10.3f ms  n%u: agent %s\n", s->now / 1000.0, id,
		       clean ? "stopped cleanly" : "killed");
}

void sim_node_crash(struct sim *s, uint32_t id)
{
	struct sim_node *n = &s->node[id];
	sim_node_stop_agent(s, id, 0);
	for (uint32_t o = 0; o <= SIM_MAX_NODES; o++)
		slice_clear(&n->slices[o]);
	sim_claims_forget(s, id);
	n->host_up = 0;
	n->hist = NULL;
	sim_check_forget(s, id);
	s->crashes++;
	if (s->verbose)
		printf("%10.3f ms  n%u: host crashed\n", s->now / 1000.0, id);
}

void sim_endpoint_exit(struct sim *s, uint32_t id, uint32_t ep, uint8_t reason)
{
	struct sim_node *n = &s->node[id];
	struct sim_slice *own = &n->slices[id];
	uint32_t gen = n->ep_gen[ep];
	/* The next generation first: the removals below may promote hidden
	 * claims, never this endpoint's again. */
	n->ep_gen[ep]++;
	for (uint32_t i = 0; i < own->n;) {
		if (own->e[i].ep_slot == ep + 1 && own->e[i].ep_gen == gen) {
			remove_own(s, n, i, reason);
		} else {
			i++;
		}
	}
}

/* One random local operation: register, unregister, join, leave, or the
 * death of an endpoint (all its entries go, reason exit). */
void sim_local_op(struct sim *s, uint32_t id)
{
	struct sim_node *n = &s->node[id];
	struct sim_slice *own = &n->slices[id];
	uint32_t roll = sim_below(s, 100);
	uint8_t meta[4096];
	struct sim_rec r = { 0 };

	if (s->now + 1 < s->p.chaos_us) {
		uint32_t rate = s->p.ops_per_s_per_node;
		uint64_t gap = 2000000ull / rate;
		sim_schedule(s, s->now + 1 + sim_below(s, (uint32_t)gap), EV_OP, id);
	}
	if (!n->host_up)
		return;
	sim_dispatch_op(s, id);
	sim_clusters_op(s, id);
	if (roll < 5) {
		sim_endpoint_exit(s, id, sim_below(s, SIM_ENDPOINTS), REPL_REASON_EXIT);
		return;
	}
	uint32_t ep = sim_below(s, SIM_ENDPOINTS);
	r.ep_slot = ep + 1;
	r.ep_gen = n->ep_gen[ep];
	r.pid = (int32_t)(1000 * id + ep);
	r.time_ns = s->now * 1000;
	r.key_len = (uint8_t)snprintf(r.key, sizeof(r.key), "k%u", sim_below(s, 24));
	if (sim_below(s, 4) == 0)
		r.cluster_len =
			(uint8_t)snprintf(r.cluster, sizeof(r.cluster), "c%u", sim_below(s, 2));
	r.meta_len = sim_below(s, 100) < s->p.big_meta_pct ? 1500 + sim_below(s, 2500)
							   : sim_below(s, 40);
	for (uint32_t i = 0; i < r.meta_len; i++)
		meta[i] = (uint8_t)sim_rand(&s->rng);
	r.meta = meta;
	int registry = roll < 50;
	r.op = registry ? REPL_OP_REGISTER : REPL_OP_JOIN;
	if (!sim_cluster_open(n, r.cluster, r.cluster_len))
		return; /* -ENOTCONN */
	int at = slice_find(own, &r);
	if (roll % 3 == 0) {
		/* A removal of something held, when there is one. */
		if (at < 0)
			return;
		r.op = registry ? REPL_OP_UNREGISTER : REPL_OP_LEAVE;
		r.reason = REPL_REASON_NORMAL;
		r.meta_len = 0;
		local_change(s, n, &r);
		return;
	}
	if (registry && at < 0 && sim_claims_taken(s, id, &r))
		return; /* -EEXIST: another endpoint's claim is visible here */
	local_change(s, n, &r);
}

void sim_free(struct sim *s)
{
	for (uint32_t id = 1; id <= SIM_MAX_NODES; id++) {
		struct sim_node *n = &s->node[id];
		if (n->repl)
			repl_free(n->repl);
		for (uint32_t o = 0; o <= SIM_MAX_NODES; o++)
			slice_clear(&n->slices[o]);
		sim_claims_forget(s, id);
	}
	while (s->histories) {
		struct sim_history *h = s->histories;
		s->histories = h->next;
		for (uint32_t sh = 0; sh < SIM_MAX_SHARDS; sh++) {
			for (uint64_t i = 0; i < h->n[sh]; i++)
				free(h->rec[sh][i].meta);
			free(h->rec[sh]);
		}
		free(h);
	}
	sim_net_free(s);
}
