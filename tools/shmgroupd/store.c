/* SPDX-License-Identifier: MIT */
/*
 * The protocol core's store over the arena (store.h).
 *
 * Reading this node's change log by seq.  The library reads the log with a
 * cursor that only moves forward; the core asks for any seq it has in
 * flight (retransmissions) or next.  So each shard has a tail cursor that
 * reads forward, and a ring of the cursors it had before each record it
 * read (`saved`, indexed by seq): a saved copy reads its record again, or
 * says -ESTALE once the ring has overwritten it (remote.h).  Records written
 * before the agent started, or lost to a lapping or a repair, are below the
 * tail's `floor`: -ESTALE, and the core resyncs that peer's shard.
 *
 * Writing: each batch is one remote_apply / remote_resync / remote_purge,
 * one shard-lock hold.  -EBUSY (a stalled process holds the lock or the
 * reclamation ring) is retried: the core counts a batch as applied when the
 * callback returns, so giving up would leave the arena behind the cursor the
 * core believes in.  The retries are bounded; a batch still refused is
 * counted and logged, and the shard's cursor stays where the arena has it,
 * so the next handshake (or resync) with that peer repairs it.
 *
 * Registry conflicts (docs/PROTOCOL.md section 15, repl/claims.h): a
 * remote register refused with -EEXIST meets the visible claim of another
 * owner, and the rule decides.  The arena shows the winner; remote claims
 * that lost wait in a hidden-claims table in this process's memory, and the
 * best of them is shown when the visible one goes.  The table holds at most
 * each owner's current claim of a key: a newer claim or a removal from the
 * owner supersedes the one hidden (kept, it would be shown again once the
 * newer one went, a claim nobody holds).  A local endpoint that loses is
 * evicted here (its owner's side: the removal replicates), and the winner
 * installed.  A remote claim replaced by a better one, and a hidden
 * claim taking the place of one its owner removed, are one step for readers
 * (remote_replace).  The table is lost with the process, so a restarted
 * agent fetches every shard it holds again by snapshot (store_held).
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "claims.h"
#include "log.h"
#include "remote.h"
#include "store.h"

#define SAVED_MIN 2048u /* beyond the core's 1024-id window */
#define APPLY_TRIES 50

struct log_tail {
	struct oplog_cursor cur; /* next record to read */
	struct oplog_cursor *saved;
	uint64_t floor;  /* first seq (the log's) readable since the last restart */
	uint64_t seen;   /* the log's next seq when last looked at */
	uint64_t resets; /* the log's repair counter when last looked at */
	bool reset_due;  /* a repair: the core must resync the shard everywhere */
};

struct store {
	shmg_t *h;
	uint32_t shards, saved_mask;
	struct log_tail *tails;
	uint8_t *rec_buf;
	size_t rec_cap;
	/* apply's scratch, grown as needed */
	struct remote_change *changes;
	int *rcs;
	char (*clusters)[64];
	size_t scratch_n;
	struct store_stats stats;
	/* Conflicts: the rule's configuration, the claims that lost here, and
	 * a buffer for the visible claim's metadata. */
	struct store_config cfg;
	uint32_t self;
	struct repl_claims *hidden;
	bool orphans_due; /* local removals not read (log lapped or repaired) */
	uint8_t *meta_buf;
	size_t meta_cap;
};

static void promote_orphans(struct store *st);
static bool promote_key(struct store *st, uint16_t shard, const char *cluster,
			size_t cluster_len, const char *key, size_t key_len);

static int tail_restart(struct store *st, uint32_t shard)
{
	struct log_tail *t = &st->tails[shard];
	int rc = oplog_cursor_init(st->h, shard, &t->cur);
	if (rc < 0)
		return rc;
	t->floor = t->cur.seq;
	t->seen = t->cur.seq;
	t->resets = t->cur.resets;
	return 0;
}

int store_open(shmg_t *h, const struct store_config *cfg, struct store **out)
{
	struct shmg_info in;
	int rc = shmg_info(h, &in);
	if (rc < 0)
		return rc;
	struct store *st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->h = h;
	st->shards = in.shards;
	if (cfg)
		st->cfg = *cfg;
	st->self = in.node_id;
	st->meta_cap = in.meta_max ? in.meta_max : 1;
	st->meta_buf = malloc(st->meta_cap);
	if (!st->meta_buf || repl_claims_new(&st->hidden) < 0)
		goto nomem;
	st->saved_mask = SAVED_MIN - 1;
	st->rec_cap = oplog_record_max(h);
	st->rec_buf = malloc(st->rec_cap);
	st->tails = calloc(in.shards, sizeof(*st->tails));
	if (!st->rec_buf || !st->tails)
		goto nomem;
	for (uint32_t s = 0; s < in.shards; s++) {
		st->tails[s].saved = calloc(SAVED_MIN, sizeof(struct oplog_cursor));
		if (!st->tails[s].saved)
			goto nomem;
		/* An impossible seq, so that no slot matches before it is written. */
		for (uint32_t i = 0; i < SAVED_MIN; i++)
			st->tails[s].saved[i].seq = UINT64_MAX;
		if ((rc = tail_restart(st, s)) < 0) {
			store_close(st);
			return rc;
		}
	}
	*out = st;
	return 0;
nomem:
	store_close(st);
	return -ENOMEM;
}

void store_close(struct store *st)
{
	if (!st)
		return;
	for (uint32_t s = 0; st->tails && s < st->shards; s++)
		free(st->tails[s].saved);
	free(st->tails);
	free(st->rec_buf);
	free(st->changes);
	free(st->rcs);
	free(st->clusters);
	free(st->meta_buf);
	repl_claims_free(st->hidden);
	free(st);
}

const struct store_stats *store_stats(const struct store *st)
{
	return &st->stats;
}

/* ---- this node's change log ------------------------------------------ */

static void to_record(const struct oplog_entry *e, struct repl_record *out)
{
	size_t cl = strlen(e->cluster);
	*out = (struct repl_record){
		.seq = e->seq + 1,
		.op = e->op,
		.reason = e->reason,
		.cluster_len = (uint8_t)cl,
		.key_len = (uint16_t)e->key_len,
		.meta_len = (uint32_t)e->meta_len,
		.node = e->id.node,
		.ep_slot = e->id.slot,
		.ep_gen = e->id.gen,
		.pid = e->pid,
		.time_ns = e->time_ns,
		.cluster = e->cluster,
		.key = e->key,
		.meta = e->meta,
	};
}

/* The tail could not go on (lapped, or a repair): it restarts at the head,
 * and everything before is -ESTALE. */
static void tail_lost(struct store *st, uint32_t shard)
{
	struct log_tail *t = &st->tails[shard];
	uint64_t resets = t->cur.resets;
	/* The local removals skipped may have left hidden claims orphaned. */
	st->orphans_due = true;
	if (tail_restart(st, shard) < 0)
		return;
	if (t->cur.resets != resets) {
		t->reset_due = true;
		st->stats.log_resets++;
	} else {
		st->stats.log_lapped++;
	}
}

int store_log_read(struct store *st, uint16_t shard, uint64_t seq, struct repl_record *out)
{
	if (shard >= st->shards || seq == 0)
		return -ESTALE;
	struct log_tail *t = &st->tails[shard];
	uint64_t want = seq - 1;
	struct oplog_entry e;

	st->stats.log_reads++;
	if (st->orphans_due) {
		st->orphans_due = false;
		if (repl_claims_count(st->hidden))
			promote_orphans(st);
	}
	if (want < t->floor)
		return -ESTALE;
	if (want < t->cur.seq) {
		/* Read before: a retransmission. */
		struct oplog_cursor c = t->saved[want & st->saved_mask];
		if (c.seq != want || oplog_cursor_next(st->h, &c, st->rec_buf, st->rec_cap, &e) < 0)
			return -ESTALE;
		to_record(&e, out);
		return 0;
	}
	for (;;) {
		struct oplog_cursor before = t->cur;
		int rc = oplog_cursor_next(st->h, &t->cur, st->rec_buf, st->rec_cap, &e);
		if (rc == -EAGAIN)
			return -EAGAIN;
		if (rc < 0) {
			tail_lost(st, shard);
			return -ESTALE;
		}
		t->saved[before.seq & st->saved_mask] = before;
		/* A local claim went: a remote one hidden behind it may show now. */
		if (e.op == REPL_OP_UNREGISTER && repl_claims_count(st->hidden))
			promote_key(st, shard, e.cluster, strlen(e.cluster), e.key, e.key_len);
		if (before.seq == want) {
			to_record(&e, out);
			return 0;
		}
	}
}

uint64_t store_log_head(struct store *st, uint16_t shard)
{
	struct oplog_cursor c;
	if (shard >= st->shards || oplog_cursor_init(st->h, shard, &c) < 0)
		return 0;
	return c.seq;
}

bool store_logs_moved(struct store *st)
{
	bool moved = false;
	for (uint32_t s = 0; s < st->shards; s++) {
		struct log_tail *t = &st->tails[s];
		struct oplog_cursor c;
		if (oplog_cursor_init(st->h, s, &c) < 0)
			continue;
		if (c.resets != t->resets) {
			tail_lost(st, s);
			moved = true;
		} else if (c.seq != t->seen) {
			t->seen = c.seq;
			moved = true;
		}
	}
	return moved;
}

int store_take_reset(struct store *st)
{
	for (uint32_t s = 0; s < st->shards; s++)
		if (st->tails[s].reset_due) {
			st->tails[s].reset_due = false;
			return (int)s;
		}
	return -1;
}

struct snap_arg {
	void (*emit)(void *arg, const struct repl_record *r);
	void *arg;
};

static int snap_one(const struct oplog_entry *e, void *arg)
{
	struct snap_arg *sa = arg;
	struct repl_record r;
	to_record(e, &r);
	r.seq = 0;
	sa->emit(sa->arg, &r);
	return 0;
}

int64_t store_snapshot(struct store *st, uint16_t shard,
		       void (*emit)(void *arg, const struct repl_record *r), void *arg)
{
	struct snap_arg sa = { emit, arg };
	uint64_t next = 0;
	long rc = remote_snapshot(st->h, shard, snap_one, &sa, &next);
	return rc < 0 ? rc : (int64_t)next;
}

/* Called when the agent adds a peer, so at start: what the arena holds of
 * the node is kept, but each of its shards is fetched again by snapshot
 * rather than resumed from the cursor.  The claims of the node that lost a
 * conflict here lived in the previous agent's memory; a snapshot brings
 * back every claim the node still holds, and the refused ones are hidden
 * again (docs/PROTOCOL.md section 9).  A resync leaves unchanged entries
 * untouched, so readers see nothing of it. */
void store_held(struct store *st, uint32_t node, uint64_t *inc, uint64_t *cursors)
{
	remote_held(st->h, node, inc, cursors);
	for (uint32_t s = 0; *inc && s < st->shards; s++)
		cursors[s] = REPL_CURSOR_RESYNC;
}

/* ---- named clusters ------------------------------------------------------ */

struct clusters_arg {
	void (*emit)(void *arg, const char *name, size_t len);
	void *arg;
};

static int cluster_one(const char *name, void *arg)
{
	struct clusters_arg *ca = arg;
	ca->emit(ca->arg, name, strlen(name));
	return 0;
}

void store_clusters(struct store *st, void (*emit)(void *arg, const char *name, size_t len),
		    void *arg)
{
	struct clusters_arg ca = { emit, arg };
	long rc = shmg_clusters(st->h, cluster_one, &ca);
	if (rc < 0)
		logf_(L_ERR, "cannot list the connected clusters: %s", shmg_strerror((int)rc));
}

void store_peer_cluster(struct store *st, uint32_t node, const char *name, size_t len,
			int connected)
{
	char cluster[SHMG_CLUSTER_NAME_MAX + 1];
	if (len > SHMG_CLUSTER_NAME_MAX)
		return; /* the core announces and accepts no longer name */
	memcpy(cluster, name, len);
	cluster[len] = '\0';
	int rc = remote_node_cluster(st->h, node, cluster, connected);
	if (rc < 0)
		logf_(L_WARN, "node %" PRIu32 ": cannot mark it %s cluster %s: %s", node,
		      connected ? "in" : "out of", cluster, shmg_strerror(rc));
}

/* ---- other nodes' entries ---------------------------------------------- */

static int scratch_reserve(struct store *st, size_t n)
{
	if (n <= st->scratch_n)
		return 0;
	size_t cap = st->scratch_n ? st->scratch_n : 64;
	while (cap < n)
		cap *= 2;
	struct remote_change *c = realloc(st->changes, cap * sizeof(*c));
	if (c)
		st->changes = c;
	int *r = realloc(st->rcs, cap * sizeof(*r));
	if (r)
		st->rcs = r;
	char(*cl)[64] = realloc(st->clusters, cap * sizeof(*cl));
	if (cl)
		st->clusters = cl;
	if (!c || !r || !cl)
		return -ENOMEM;
	st->scratch_n = cap;
	return 0;
}

/* The cluster name of r as a C string in cluster (truncated to 63 bytes);
 * its length. */
static size_t cluster_of(const struct repl_record *r, char cluster[64])
{
	size_t cl = r->cluster_len < 64 ? r->cluster_len : 63;
	memcpy(cluster, r->cluster, cl);
	cluster[cl] = '\0';
	return cl;
}

static void to_change(const struct repl_record *r, char cluster[64], struct remote_change *out)
{
	cluster_of(r, cluster);
	*out = (struct remote_change){
		.op = r->op,
		.reason = r->reason,
		.cluster = cluster,
		.key = r->key,
		.key_len = r->key_len,
		.meta = r->meta,
		.meta_len = r->meta_len,
		.id = { r->node, r->ep_slot, r->ep_gen },
		.pid = r->pid,
		.time_ns = r->time_ns,
	};
}

static void backoff(int attempt)
{
	struct timespec ts = { 0, (long)(attempt < 10 ? 1 : 10) * 1000000L };
	nanosleep(&ts, NULL);
}

/* Whether a write to the arena that answered rc is tried again: -EBUSY (a
 * shard held past the budget) and -EIO (a repair under way), up to
 * APPLY_TRIES attempts in all, each after a backoff and counted. */
static bool try_again(struct store *st, int *attempt, int rc)
{
	if ((rc != -EBUSY && rc != -EIO) || ++*attempt >= APPLY_TRIES)
		return false;
	st->stats.retries++;
	backoff(*attempt);
	return true;
}

/* ---- registry conflicts ------------------------------------------------ */

static void claim_of(const struct repl_record *r, char cluster[64], struct shmg_claim *out)
{
	size_t cl = cluster_of(r, cluster);
	*out = (struct shmg_claim){
		.id = { r->node, r->ep_slot, r->ep_gen },
		.pid = r->pid,
		.time_ns = r->time_ns,
		.cluster = cl ? cluster : NULL,
		.key = r->key,
		.key_len = r->key_len,
		.meta = r->meta,
		.meta_len = r->meta_len,
	};
}

static int user_rule(const struct repl_record *a, const struct repl_record *b, void *arg)
{
	const struct store *st = arg;
	char ca[64], cb[64];
	struct shmg_claim x, y;
	claim_of(a, ca, &x);
	claim_of(b, cb, &y);
	return st->cfg.resolver(&x, &y) == 0 ? 0 : 1;
}

static repl_resolver_fn rule_of(const struct store *st)
{
	return st->cfg.resolver ? user_rule : NULL;
}

/* The claim the arena shows for the key of r: 0 and *v (its metadata in
 * st->meta_buf), -ENOENT, or the library's error. */
static int visible_claim(struct store *st, const char *cluster, const struct repl_record *r,
			 struct repl_record *v)
{
	struct shmg_opts o = { .cluster = *cluster ? cluster : NULL };
	struct shmg_entry e;
	int rc = shmg_lookup_entry(st->h, r->key, r->key_len, &e, st->meta_buf, st->meta_cap, &o);
	if (rc < 0)
		return rc;
	*v = *r;
	v->op = REPL_OP_REGISTER;
	v->seq = 0;
	v->reason = 0;
	v->node = e.id.node;
	v->ep_slot = e.id.slot;
	v->ep_gen = e.id.gen;
	v->pid = e.pid;
	v->time_ns = e.time_ns;
	v->meta = e.meta;
	v->meta_len = (uint32_t)e.meta_len;
	return 0;
}

static void hide(struct store *st, const struct repl_record *r, uint16_t shard)
{
	if (repl_claims_hide(st->hidden, r, shard) < 0) {
		logf_(L_ERR, "out of memory keeping a claim of '%.*s' by node %" PRIu32,
		      (int)r->key_len, r->key, r->node);
		return;
	}
	st->stats.conflicts_hidden++;
}

/* The claim c (incarnation inc) written, retried as a batch is (-EBUSY,
 * -EIO): in place of the registration of `loser` (removed with `reason`) in
 * one step if loser.node is not 0, else as a plain put. */
static int write_retried(struct store *st, uint64_t inc, const struct remote_change *c,
			 shmg_id_t loser, int reason)
{
	int rc, attempt = 0;
	do
		rc = loser.node ? remote_replace(st->h, loser, reason, inc, c)
				: remote_put(st->h, inc, c);
	while (try_again(st, &attempt, rc));
	return rc;
}

static int put_retried(struct store *st, uint64_t inc, const struct remote_change *c)
{
	return write_retried(st, inc, c, (shmg_id_t){ 0, 0, 0 }, 0);
}

static uint64_t inc_of(struct store *st, uint32_t node)
{
	uint64_t inc = 0;
	remote_held(st->h, node, &inc, NULL);
	return inc;
}

static void signal_loser(struct store *st, shmg_id_t loser, int32_t pid)
{
	if (!st->cfg.conflict_signal)
		return;
	/* Through a pidfd, and only to the process recorded with the endpoint
	 * (remote_signal_endpoint checks its start time): never a reused pid. */
	int rc = remote_signal_endpoint(st->h, loser, st->cfg.conflict_signal);
	if (rc < 0)
		logf_(L_VERBOSE, "conflict: no signal sent to pid %" PRId32 ": %s", pid,
		      shmg_strerror(rc));
}

/* The local endpoint `loser` lost the key to c: this host is its owner, so
 * it terminates it (remote_conflict_evict, the library's side of the
 * contract) and tells its process if configured. */
static int evict_local(struct store *st, const char *cluster, const struct remote_change *c,
		       shmg_id_t loser)
{
	int32_t pid = 0;
	int rc, attempt = 0;
	do
		rc = remote_conflict_evict(st->h, cluster, c->key, c->key_len, loser, c, &pid);
	while (try_again(st, &attempt, rc));
	if (rc == 0) {
		st->stats.conflicts_lost++;
		logf_(L_INFO, "'%.*s': n%" PRIu32 ".%" PRIu32 ".%" PRIu32
			      " (pid %" PRId32 ") lost it to n%" PRIu32 ".%" PRIu32 ".%" PRIu32,
		      (int)c->key_len, c->key, loser.node, loser.slot, loser.gen, pid, c->id.node,
		      c->id.slot, c->id.gen);
		signal_loser(st, loser, pid);
	}
	return rc;
}

/* The remote claim r (change c, of incarnation inc, key of `shard`) was
 * refused because another owner's claim is visible: the rule decides which
 * one the arena shows, the other is hidden or, if local, evicted. */
static void settle(struct store *st, uint64_t inc, uint16_t shard, const struct repl_record *r,
		   const struct remote_change *c)
{
	struct repl_record v;
	st->stats.conflicts++;
	/* r is its owner's claim of the key now: one it made before and that
	 * lost here is superseded.  Left hidden, it would be shown again when
	 * r goes, a claim its owner no longer holds. */
	repl_claims_drop(st->hidden, r->node, r->cluster, r->cluster_len, r->key, r->key_len);
	for (int round = 0; round < 3; round++) {
		int rc = visible_claim(st, c->cluster, r, &v);
		if (rc == -ENOENT) {
			/* Gone since the refusal: show r, unless yet another came. */
			if ((rc = put_retried(st, inc, c)) == 0 || rc == -ENOTCONN)
				return;
			if (rc != -EEXIST)
				break; /* not shown (no space, busy): kept aside */
			continue;
		}
		if (rc < 0 || v.node == r->node)
			break; /* unreadable, or the owner's own older claim: keep r aside */
		if (repl_claim_cmp(r, &v, rule_of(st), st) < 0)
			break;
		shmg_id_t loser = { v.node, v.ep_slot, v.ep_gen };
		if (v.node != st->self) {
			/* Another node's claim loses: hidden, and replaced in
			 * one step (a reader finds one claim or the other). */
			rc = write_retried(st, inc, c, loser, SHMG_REASON_CONFLICT);
			if (rc == 0) {
				hide(st, &v, shard);
				return;
			}
			if (rc == -ENOENT)
				continue; /* it went meanwhile: look again */
			break;
		}
		if ((rc = evict_local(st, c->cluster, c, loser)) < 0 && rc != -ENOENT)
			break;
		if ((rc = put_retried(st, inc, c)) == 0 || rc == -ENOTCONN)
			return;
		if (rc != -EEXIST)
			break;
	}
	/* Lost to the visible claim, or not shown: kept aside, so that it is
	 * shown when the key is free (promote_key), never dropped. */
	hide(st, r, shard);
}

/* The best hidden claim of (cluster, key) in *best, copied out of the table
 * (which may drop it) into the returned buffer, the caller's to free; NULL
 * if none, or out of memory. */
static char *best_hidden(struct store *st, const char *cluster, size_t cluster_len,
			 const char *key, size_t key_len, struct repl_record *best)
{
	const struct repl_record *b =
		repl_claims_best(st->hidden, cluster, cluster_len, key, key_len, rule_of(st), st);
	return b ? repl_record_copy(b, best) : NULL;
}

/* If the arena shows nothing for (cluster, key) of `shard`, the best claim
 * hidden for it is shown.  True if the table changed.  A claim the arena
 * refuses (no space, busy) stays hidden, for the next promotion. */
static bool promote_key(struct store *st, uint16_t shard, const char *cluster,
			size_t cluster_len, const char *key, size_t key_len)
{
	struct repl_record best, v;
	struct repl_record of_key = { .cluster = cluster, .cluster_len = (uint8_t)cluster_len,
				      .key = key, .key_len = (uint16_t)key_len };
	struct remote_change c;
	char cl[64];
	/* The table first: most keys have no hidden claim, and the arena's
	 * answer costs a lookup. */
	char *copy = best_hidden(st, cluster, cluster_len, key, key_len, &best);
	if (!copy)
		return false;
	cluster_of(&of_key, cl);
	if (visible_claim(st, cl, &of_key, &v) != -ENOENT) {
		free(copy);
		return false;
	}
	/* From here on only the copy: cluster and key may be the table's. */
	to_change(&best, cl, &c);
	uint64_t inc = inc_of(st, best.node);
	int rc = put_retried(st, inc, &c);
	if (rc < 0 && rc != -EEXIST) {
		logf_(L_WARN, "'%.*s': the claim of node %" PRIu32 " could not be shown: %s",
		      (int)best.key_len, best.key, best.node, shmg_strerror(rc));
		free(copy);
		return false;
	}
	/* Shown, or refused by a claim that came meanwhile: settle decides. */
	repl_claims_drop(st->hidden, best.node, best.cluster, best.cluster_len, best.key,
			 best.key_len);
	if (rc == -EEXIST)
		settle(st, inc, shard, &best, &c);
	free(copy);
	return true;
}

/* Claims left hidden with nothing visible for their key (the visible one
 * went by a purge, a resync or a removal not read): the best of each key
 * becomes visible. */
static void promote_orphans(struct store *st)
{
	size_t i = 0;
	while (i < repl_claims_count(st->hidden)) {
		const struct repl_record *h = repl_claims_at(st->hidden, i);
		if (promote_key(st, repl_claims_shard_at(st->hidden, i), h->cluster,
				h->cluster_len, h->key, h->key_len))
			i = 0; /* the table changed */
		else
			i++;
	}
}

/* Does the removal r of another node's claim have a hidden successor (a
 * claim of a third node that lost to it here)? */
static bool has_successor(struct store *st, const struct repl_record *r)
{
	if (r->op != REPL_OP_UNREGISTER || !repl_claims_count(st->hidden))
		return false;
	const struct repl_record *b = repl_claims_best(st->hidden, r->cluster, r->cluster_len,
						       r->key, r->key_len, rule_of(st), st);
	return b && b->node != r->node;
}

/* The removal r (change c) of a visible claim, done as the promotion of the
 * best hidden claim of its key in the same step (remote_replace): a reader
 * never finds the key empty between the two.  False if the claim removed is
 * not the visible one (the caller applies r as usual). */
static bool promote_in_place(struct store *st, const struct repl_record *r,
			     const struct remote_change *c)
{
	struct repl_record best;
	struct remote_change w;
	char cluster[64];
	char *copy = best_hidden(st, r->cluster, r->cluster_len, r->key, r->key_len, &best);
	if (!copy)
		return false;
	to_change(&best, cluster, &w);
	int reason = r->reason ? r->reason : SHMG_REASON_NORMAL;
	int rc = write_retried(st, inc_of(st, best.node), &w, c->id, reason);
	if (rc == 0) {
		repl_claims_drop(st->hidden, best.node, best.cluster, best.cluster_len, best.key,
				 best.key_len);
		st->stats.promoted_in_place++;
	}
	free(copy);
	return rc == 0;
}

static const char *batch_kind(uint8_t type)
{
	return type == REPL_BATCH_DELTA           ? "changes"
	       : type == REPL_BATCH_RESYNC        ? "resync"
	       : type == REPL_BATCH_PURGE_CLUSTER ? "cluster purge"
						  : "purge";
}

/* This host left the cluster: other nodes' entries of it go (the library's
 * disconnect sweep removed them already unless a shard was busy). */
static int purge_cluster(struct store *st, const struct repl_batch *b)
{
	char cluster[SHMG_CLUSTER_NAME_MAX + 1];
	if (b->cluster_len == 0 || b->cluster_len > SHMG_CLUSTER_NAME_MAX)
		return -EINVAL;
	memcpy(cluster, b->cluster, b->cluster_len);
	cluster[b->cluster_len] = '\0';
	long n = remote_purge_cluster(st->h, 0, cluster, b->reason);
	return n < 0 ? (int)n : 0;
}

/* Records [from, to) of b applied as one remote_apply (with cursor, if not
 * 0), or b as one remote_resync / remote_purge, retried on -EBUSY / -EIO. */
static int apply_retried(struct store *st, const struct repl_batch *b, uint32_t from, uint32_t to,
			 uint64_t cursor)
{
	int rc = 0;
	for (int attempt = 0; attempt < APPLY_TRIES; attempt++) {
		if (attempt)
			st->stats.retries++;
		if (b->type == REPL_BATCH_PURGE) {
			long n = remote_purge(st->h, b->node, b->reason);
			rc = n < 0 ? (int)n : 0;
		} else if (b->type == REPL_BATCH_PURGE_CLUSTER) {
			rc = purge_cluster(st, b);
		} else if (b->type == REPL_BATCH_DELTA) {
			rc = remote_apply(st->h, b->node, b->inc, b->shard, st->changes + from,
					  to - from, cursor, st->rcs + from);
		} else {
			rc = remote_resync(st->h, b->node, b->inc, b->shard, st->changes, b->n,
					   b->cursor, st->rcs);
		}
		if (rc == -ESTALE) {
			/* Another life of the node is held: the core purged it
			 * already, or the arena is older than the core's view. */
			logf_(L_WARN,
			      "node %" PRIu32 ": the arena holds another incarnation; purging it",
			      b->node);
			(void)remote_purge(st->h, b->node, SHMG_REASON_NODEDOWN);
			continue;
		}
		if (rc != -EBUSY && rc != -EIO)
			break;
		backoff(attempt);
	}
	return rc;
}

/* a is a register or unregister of b's key by b's owner. */
static bool same_claim_key(const struct repl_record *a, const struct repl_record *b)
{
	return (a->op == REPL_OP_REGISTER || a->op == REPL_OP_UNREGISTER) && a->node == b->node &&
	       a->key_len == b->key_len && a->cluster_len == b->cluster_len &&
	       !memcmp(a->key, b->key, a->key_len) && !memcmp(a->cluster, b->cluster, a->cluster_len);
}

/* The owner's changes of the key of record i after it in [i + 1, to) were
 * applied before record i's refusal was settled: applied again now, in
 * order, so the batch's outcome is that of its changes one at a time (an
 * unregister that follows a claim that won here removes the winner just
 * installed, rather than finding nothing and leaving it behind). */
static void reapply_after(struct store *st, const struct repl_batch *b, uint32_t i, uint32_t to)
{
	for (uint32_t j = i + 1; j < to; j++)
		if (same_claim_key(&b->records[j], &b->records[i]))
			st->rcs[j] = put_retried(st, b->inc, &st->changes[j]);
}

/* What records [from, to) of b came to: refused claims settled by the rule,
 * hidden claims dropped with their owner's register or removal. */
static void settle_outcomes(struct store *st, const struct repl_batch *b, uint32_t from,
			    uint32_t to)
{
	for (uint32_t i = from; i < to; i++) {
		const struct repl_record *r = &b->records[i];
		const struct remote_change *c = &st->changes[i];
		switch (st->rcs[i]) {
		case 0:
			/* Shown, or removed by its owner: no older claim of
			 * the owner's stays hidden behind it. */
			if (r->op == REPL_OP_REGISTER || r->op == REPL_OP_UNREGISTER)
				repl_claims_drop(st->hidden, r->node, r->cluster, r->cluster_len,
						 r->key, r->key_len);
			break;
		case -EEXIST:
			settle(st, b->inc, b->shard, r, c);
			reapply_after(st, b, i, to);
			break;
		case -ENOENT:
			if (r->op != REPL_OP_UNREGISTER ||
			    !repl_claims_drop(st->hidden, r->node, r->cluster, r->cluster_len,
					      r->key, r->key_len))
				st->stats.missing++;
			break;
		case -ENOTCONN:
			st->stats.not_connected++;
			break;
		default:
			st->stats.rejected++;
			logf_(L_WARN, "node %" PRIu32 ": a change of '%.*s' was refused: %s",
			      b->node, (int)r->key_len, r->key, shmg_strerror(st->rcs[i]));
		}
	}
}

/* After the records [from, to) of a delta batch are applied: each key whose
 * claim they removed shows its best hidden claim, if it has one.  Only those
 * keys: no other key's visible claim went.  (A removal by a purge, a resync
 * or one not read from the log promotes over the whole table instead.) */
static void promote_removed(struct store *st, const struct repl_batch *b, uint32_t from,
			    uint32_t to)
{
	for (uint32_t i = from; i < to && repl_claims_count(st->hidden); i++) {
		const struct repl_record *r = &b->records[i];
		if (r->op == REPL_OP_UNREGISTER && st->rcs[i] == 0)
			promote_key(st, b->shard, r->cluster, r->cluster_len, r->key, r->key_len);
	}
}

void store_apply(struct store *st, const struct repl_batch *b)
{
	int rc = 0;

	st->stats.batches++;
	if (b->type == REPL_BATCH_PURGE_CLUSTER) {
		if ((rc = apply_retried(st, b, 0, 0, 0)) < 0)
			goto failed;
		/* This host left the cluster: every claim of it goes, hidden too. */
		repl_claims_drop_node(st->hidden, 0, b->cluster, b->cluster_len);
		return;
	}
	if (b->type != REPL_BATCH_PURGE) {
		if ((rc = scratch_reserve(st, b->n ? b->n : 1)) < 0)
			goto failed;
		for (uint32_t i = 0; i < b->n; i++)
			to_change(&b->records[i], st->clusters[i], &st->changes[i]);
	}
	if (b->type == REPL_BATCH_PURGE) {
		if ((rc = apply_retried(st, b, 0, 0, 0)) < 0)
			goto failed;
		repl_claims_drop_node(st->hidden, b->node, NULL, 0);
		if (repl_claims_count(st->hidden))
			promote_orphans(st);
		return;
	}
	if (b->type == REPL_BATCH_RESYNC) {
		/* The node's hidden claims of the shard come back as refusals
		 * if the snapshot still has them. */
		repl_claims_drop_shard(st->hidden, b->node, b->shard);
		if ((rc = apply_retried(st, b, 0, b->n, b->cursor)) < 0)
			goto failed;
		settle_outcomes(st, b, 0, b->n);
		/* The snapshot may have swept any claim of the node's. */
		if (repl_claims_count(st->hidden))
			promote_orphans(st);
	} else {
		/* A removal of a claim with a hidden successor is that claim's
		 * replacement, done alone between the changes before and after
		 * it; the cursor goes with the last part, so it is never ahead
		 * of the arena (a crash between parts re-applies them: each
		 * change is idempotent). */
		uint32_t from = 0;
		for (uint32_t i = 0; i <= b->n; i++) {
			bool end = i == b->n;
			if (!end && !has_successor(st, &b->records[i]))
				continue;
			if (i > from || end) {
				rc = apply_retried(st, b, from, i, end ? b->cursor : 0);
				if (rc < 0)
					goto failed;
				settle_outcomes(st, b, from, i);
			}
			if (end)
				continue;
			/* Replaced in place: its key shows the successor already. */
			st->rcs[i] = -EALREADY;
			from = promote_in_place(st, &b->records[i], &st->changes[i]) ? i + 1 : i;
		}
		promote_removed(st, b, 0, b->n);
	}
	st->stats.changes += b->n;
	return;
failed:
	st->stats.failed++;
	logf_(L_ERR, "node %" PRIu32 ": %s of shard %u not applied: %s", b->node,
	      batch_kind(b->type), (unsigned)b->shard, shmg_strerror(rc));
}
