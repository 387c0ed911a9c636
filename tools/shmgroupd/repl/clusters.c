/* SPDX-License-Identifier: MIT */
/*
 * Named clusters across hosts (docs/PROTOCOL.md section 15).
 *
 * This node's set.  The library appends a CLUSTER_CONNECT or
 * CLUSTER_DISCONNECT marker to every shard's change log; the core reads
 * shard 0's, which is enough to learn every change in order, no further than
 * the fastest stream has read (so the agent's forward log reader is never
 * pulled ahead of the streams).  Each new connection of a name gets a fresh
 * `gen`; the set has a version that grows at each change.  When the log lost
 * markers before they were read, the set is read again from the store and
 * every cluster gets a new gen: peers cannot know what happened in between,
 * so each resends its state (below).
 *
 * Peers' sets.  Each node announces its set to every UP peer in a CLUSTERS
 * frame, resent on the RTO until acked, and again after every handshake.  A
 * receiver keeps the newest version of the peer's current run.  When a
 * peer's set gains a cluster (a name it did not have, or a new gen of one),
 * this node resyncs towards it every shard that had a named cluster's record
 * or entry for it since the shard's last snapshot (shard_tx.named: where it
 * may lack something, held back by us or refused by its store while it was
 * out): the snapshot is filtered to the peer's clusters, so it brings the
 * gained cluster's entries, and the other entries arrive unchanged and are
 * left untouched by the store's one-step resync.  That is the "per-cluster
 * pull", at the price of a snapshot of the whole shard.
 *
 * The sender's filter.  Records of a named cluster go only to peers that
 * announced it; the others get covered-but-empty seqs.  A wrong guess either
 * way is harmless: a record sent to a peer that left the cluster is refused
 * by its store (the library answers -ENOTCONN), and one held back from a peer
 * that joined is repaired by the resync its announcement triggers.
 *
 * Leaving.  When this node disconnects from X, every other node's entries of
 * X go here (REPL_BATCH_PURGE_CLUSTER).  When a peer disconnects, its own
 * entries of X are removed by its library with reason cluster_disconnect,
 * and those removals replicate like any change; here the peer's mark goes.
 * Nothing is purged on a peer's announcement: it is not ordered against the
 * peer's stream, so a late announcement could remove entries of a later
 * connection.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- sets --------------------------------------------------------------- */

/* The index of name in s, or -(insertion point) - 1. */
static int set_search(const struct cluster_set *s, const char *name, size_t len)
{
	uint32_t lo = 0, hi = s->n;
	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;
		int c = wire_cluster_cmp(s->c[mid].name, s->c[mid].len, name, len);
		if (c == 0)
			return (int)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -(int)lo - 1;
}

int clusters_find(const struct cluster_set *s, const char *name, size_t len)
{
	int i = set_search(s, name, len);
	return i >= 0 ? i : -1;
}

/* Adds name with gen (or sets its gen); -ENOSPC past REPL_MAX_CLUSTERS. */
static int set_put(struct cluster_set *s, const char *name, size_t len, uint32_t gen)
{
	if (len == 0 || len > WIRE_SET_NAME_MAX)
		return -EINVAL;
	int i = set_search(s, name, len);
	if (i >= 0) {
		s->c[i].gen = gen;
		return 0;
	}
	if (s->n == REPL_MAX_CLUSTERS)
		return -ENOSPC;
	if (s->n == s->cap) {
		uint32_t cap = s->cap ? s->cap * 2 : 8;
		struct cluster_mark *c = realloc(s->c, cap * sizeof(*c));
		if (!c)
			return -ENOMEM;
		s->c = c;
		s->cap = cap;
	}
	uint32_t at = (uint32_t)(-i - 1);
	memmove(&s->c[at + 1], &s->c[at], (s->n - at) * sizeof(*s->c));
	s->c[at] = (struct cluster_mark){ .gen = gen, .len = (uint8_t)len };
	memcpy(s->c[at].name, name, len);
	s->n++;
	return 0;
}

static int set_drop(struct cluster_set *s, const char *name, size_t len)
{
	int i = set_search(s, name, len);
	if (i < 0)
		return 0;
	memmove(&s->c[i], &s->c[i + 1], (s->n - (uint32_t)i - 1) * sizeof(*s->c));
	s->n--;
	return 1;
}

static void set_free(struct cluster_set *s)
{
	free(s->c);
	memset(s, 0, sizeof(*s));
}

/* ---- this node's set ------------------------------------------------------ */

static void changed(struct repl *r)
{
	r->clusters_version++;
	r->c.cluster_changes++;
	r->deadline = 0; /* announce at the next poll */
}

static void reload_one(void *arg, const char *name, size_t len)
{
	struct repl *r = arg;
	set_put(&r->clusters, name, len, ++r->clusters_gen);
}

/* The set as the store has it now, every cluster with a new gen. */
static void reload(struct repl *r)
{
	r->clusters.n = 0;
	if (r->ops->clusters)
		r->ops->clusters(r->ctx, reload_one, r);
	changed(r);
}

void clusters_init(struct repl *r)
{
	/* The head first: a connect between the two reads is seen twice, as
	 * a reconnect, which costs peers a resync and loses nothing. */
	r->marker_seen = r->ops->log_head(r->ctx, 0);
	if (r->ops->clusters)
		r->ops->clusters(r->ctx, reload_one, r);
	if (r->clusters.n)
		r->clusters_version = 1;
}

void clusters_free(struct repl *r)
{
	set_free(&r->clusters);
}

static void marker(struct repl *r, const struct repl_record *m)
{
	if (m->cluster_len == 0 || m->cluster_len > WIRE_SET_NAME_MAX)
		return; /* the default cluster is never connected or left */
	if (m->op == REPL_OP_CLUSTER_CONNECT) {
		if (set_put(&r->clusters, m->cluster, m->cluster_len, ++r->clusters_gen) == 0)
			changed(r);
		return;
	}
	if (set_drop(&r->clusters, m->cluster, m->cluster_len))
		changed(r);
#ifndef REPL_MUTANT_NO_CLUSTER_PURGE
	/* Other nodes' entries of it leave this node, whatever it knew. */
	struct repl_batch b = {
		.type = REPL_BATCH_PURGE_CLUSTER,
		.reason = REPL_REASON_CLUSTER_DISCONNECT,
		.cluster = m->cluster,
		.cluster_len = m->cluster_len,
	};
	r->ops->apply(r->ctx, &b);
#endif
}

/* How far shard 0's log may be read: as far as the fastest stream read it
 * (sent, or found to hold nothing for its peer), or the head when no stream
 * reads it. */
static uint64_t scan_bound(struct repl *r)
{
	uint64_t bound = 0;
	int reading = 0;
	for (unsigned i = 0; i < r->n_peers; i++) {
		const struct shard_tx *tx = &r->peers[i]->tx[0];
		if (r->peers[i]->state != PEER_UP || tx->mode != WIRE_MODE_LOG)
			continue;
		reading = 1;
		uint64_t read = tx->st.next - 1 > tx->skip_to ? tx->st.next - 1 : tx->skip_to;
		if (read > bound)
			bound = read;
	}
	uint64_t head = r->ops->log_head(r->ctx, 0);
	return !reading || bound > head ? head : bound;
}

void clusters_scan(struct repl *r)
{
	uint64_t bound = scan_bound(r);
	struct repl_record rec;

	while (r->marker_seen < bound) {
		int rc = r->ops->log_read(r->ctx, 0, r->marker_seen + 1, &rec);
		if (rc == -EAGAIN)
			return;
		if (rc < 0) {
			/* Overwritten before it was read: markers may be lost. */
			r->marker_seen = r->ops->log_head(r->ctx, 0);
			r->c.cluster_markers_lost++;
			reload(r);
			return;
		}
		r->marker_seen++;
		if (rec.node == r->cfg.node && rec.op > REPL_OP_LEAVE)
			marker(r, &rec);
	}
}

int repl_cluster_connected(const struct repl *r, const char *name, size_t len)
{
	return len == 0 || clusters_find(&r->clusters, name, len) >= 0;
}

/* ---- announcing it ---------------------------------------------------------- */

int clusters_due(struct repl *r, struct peer *p)
{
	struct peer_clusters *c = &p->cl;
	if (c->acked >= r->clusters_version)
		return 0;
	if (c->sent_version != r->clusters_version)
		return 1;
	uint64_t at = c->sent_at + rto_backoff(&p->rto, c->tries);
	if (r->now >= at)
		return 1;
	repl_set_deadline(r, at);
	return 0;
}

size_t clusters_frame_size(const struct repl *r)
{
	size_t n = WIRE_FRAME_HEADER_LEN + WIRE_CLUSTERS_FIXED_LEN;
	for (uint32_t i = 0; i < r->clusters.n; i++)
		n += 5 + (size_t)r->clusters.c[i].len;
	return n;
}

void clusters_encode(struct repl *r, struct peer *p, struct wire_writer *w)
{
	struct peer_clusters *c = &p->cl;
	size_t f = wire_frame_begin(w, WIRE_F_CLUSTERS);
	wire_clusters_encode(w, r->clusters_version, (uint16_t)r->clusters.n);
	for (uint32_t i = 0; i < r->clusters.n; i++) {
		const struct cluster_mark *m = &r->clusters.c[i];
		struct wire_cluster wc = { .gen = m->gen, .name_len = m->len, .name = m->name };
		wire_cluster_encode(w, &wc);
	}
	wire_frame_end(w, f);
	c->tries = c->sent_version == r->clusters_version ? c->tries + 1 : 0;
	c->sent_version = r->clusters_version;
	c->sent_at = r->now;
	r->c.tx_cluster_sets++;
	repl_set_deadline(r, r->now + rto_backoff(&p->rto, c->tries));
}

void clusters_ack_input(struct repl *r, struct peer *p, const struct wire_ack *a)
{
	if (a->cum <= r->clusters_version && a->cum > p->cl.acked)
		p->cl.acked = (uint32_t)a->cum;
}

/* ---- peers' sets ---------------------------------------------------------- */

static void report(struct repl *r, struct peer *p, const struct cluster_mark *m, int connected)
{
	if (r->ops->peer_cluster)
		r->ops->peer_cluster(r->ctx, p->node, m->name, m->len, connected);
}

static void report_all(struct repl *r, struct peer *p, int connected)
{
	for (uint32_t i = 0; i < p->cl.known.n; i++)
		report(r, p, &p->cl.known.c[i], connected);
	p->cl.reported = connected;
}

void clusters_input(struct repl *r, struct peer *p, const struct wire_frame *f)
{
	struct peer_clusters *pc = &p->cl;
	struct wire_clusters in;
	struct wire_cluster item;
	struct cluster_set next = { 0 };
	size_t off = 0;
	int gained = 0;

	if (wire_clusters_decode(f, &in) < 0)
		return; /* checked with the datagram: cannot happen */
	pc->ack_owed = 1;
	r->c.rx_cluster_sets++;
	if (in.version <= pc->version)
		return; /* an older announcement, or a repeat */
	while (wire_cluster_next(&in, &off, &item) == 1) {
		int was = clusters_find(&pc->known, item.name, item.name_len);
		if (set_put(&next, item.name, item.name_len, item.gen) < 0) {
			set_free(&next);
			pc->ack_owed = 0; /* not taken: the peer sends it again */
			return;
		}
		if (was < 0 || pc->known.c[was].gen != item.gen) {
			gained = 1;
			if (pc->reported && was < 0)
				report(r, p,
				       &next.c[clusters_find(&next, item.name, item.name_len)], 1);
		}
	}
	for (uint32_t i = 0; pc->reported && i < pc->known.n; i++)
		if (clusters_find(&next, pc->known.c[i].name, pc->known.c[i].len) < 0)
			report(r, p, &pc->known.c[i], 0);
	set_free(&pc->known);
	pc->known = next;
	pc->version = in.version;
#ifdef REPL_MUTANT_NO_CLUSTER_PULL
	gained = 0;
#endif
	if (!gained)
		return;
	/* What the peer may lack of a cluster it joined (held back by us, or
	 * refused by its store while it was out): each shard that had
	 * anything of a named cluster for it, again, filtered to its clusters
	 * now (resync.c). */
	r->c.cluster_gains++;
	for (unsigned s = 0; s < r->cfg.shards; s++) {
		struct shard_tx *tx = &p->tx[s];
		if (!tx->named && !tx->cluster_resync)
			continue;
		tx->cluster_resync = 1;
		resync_tx_start(r, p, (uint16_t)s);
	}
}

int repl_peer_in_cluster(const struct repl *r, uint32_t node, const char *name, size_t len)
{
	for (unsigned i = 0; i < r->n_peers; i++) {
		const struct peer *p = r->peers[i];
		if (p->node != node)
			continue;
		if (p->state != PEER_UP)
			return 0;
		return len == 0 || clusters_find(&p->cl.known, name, len) >= 0;
	}
	return 0;
}

void clusters_peer_up(struct repl *r, struct peer *p)
{
	struct peer_clusters *pc = &p->cl;

	if (pc->run_inc != p->inc || pc->run_session != p->session) {
		/* Another run of the peer numbers its sets afresh. */
		if (pc->reported)
			report_all(r, p, 0);
		pc->known.n = 0;
		pc->version = 0;
		/* Its announcement starts any resync it needs afresh. */
		for (unsigned s = 0; s < r->cfg.shards; s++)
			p->tx[s].cluster_resync = 0;
		pc->run_inc = p->inc;
		pc->run_session = p->session;
	}
	if (!pc->reported)
		report_all(r, p, 1);
	/* The peer may be a new run that knows nothing of ours. */
	pc->acked = 0;
	pc->sent_version = 0;
	pc->tries = 0;
	pc->ack_owed = 0;
}

void clusters_peer_down(struct repl *r, struct peer *p)
{
	if (p->cl.reported)
		report_all(r, p, 0);
}

void clusters_peer_free(struct peer *p)
{
	set_free(&p->cl.known);
}
