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
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
};

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

int store_open(shmg_t *h, struct store **out)
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

void store_held(struct store *st, uint32_t node, uint64_t *inc, uint64_t *cursors)
{
	remote_held(st->h, node, inc, cursors);
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

static void to_change(const struct repl_record *r, char cluster[64], struct remote_change *out)
{
	size_t cl = r->cluster_len < 64 ? r->cluster_len : 63;
	memcpy(cluster, r->cluster, cl);
	cluster[cl] = '\0';
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

void store_apply(struct store *st, const struct repl_batch *b)
{
	int rc = 0;

	st->stats.batches++;
	if (b->type != REPL_BATCH_PURGE && b->type != REPL_BATCH_PURGE_CLUSTER) {
		if ((rc = scratch_reserve(st, b->n ? b->n : 1)) < 0)
			goto failed;
		for (uint32_t i = 0; i < b->n; i++)
			to_change(&b->records[i], st->clusters[i], &st->changes[i]);
	}
	for (int attempt = 0; attempt < APPLY_TRIES; attempt++) {
		if (attempt)
			st->stats.retries++;
		if (b->type == REPL_BATCH_PURGE) {
			long n = remote_purge(st->h, b->node, b->reason);
			rc = n < 0 ? (int)n : 0;
		} else if (b->type == REPL_BATCH_PURGE_CLUSTER) {
			rc = purge_cluster(st, b);
		} else if (b->type == REPL_BATCH_DELTA) {
			rc = remote_apply(st->h, b->node, b->inc, b->shard, st->changes, b->n,
					  b->cursor, st->rcs);
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
	if (rc < 0)
		goto failed;
	if (b->type == REPL_BATCH_PURGE || b->type == REPL_BATCH_PURGE_CLUSTER)
		return;
	st->stats.changes += b->n;
	for (uint32_t i = 0; i < b->n; i++) {
		switch (st->rcs[i]) {
		case 0:
			break;
		case -EEXIST:
			st->stats.conflicts++;
			logf_(L_VERBOSE,
			      "node %" PRIu32 " registered '%.*s', held here by another "
			      "endpoint: kept the existing one",
			      b->node, (int)b->records[i].key_len, b->records[i].key);
			break;
		case -ENOENT:
			st->stats.missing++;
			break;
		case -ENOTCONN:
			st->stats.not_connected++;
			break;
		default:
			st->stats.rejected++;
			logf_(L_WARN, "node %" PRIu32 ": a change of '%.*s' was refused: %s",
			      b->node, (int)b->records[i].key_len, b->records[i].key,
			      shmg_strerror(st->rcs[i]));
		}
	}
	return;
failed:
	st->stats.failed++;
	logf_(L_ERR, "node %" PRIu32 ": %s of shard %u not applied: %s", b->node,
	      batch_kind(b->type), (unsigned)b->shard, shmg_strerror(rc));
}
