/* SPDX-License-Identifier: MIT */
/*
 * Named clusters: the host-wide table of clusters this host is connected to.
 *
 * Slot 0 is the default cluster (NULL), always connected.  Named clusters
 * live in slots 1..max_clusters-1, found by open addressing on the name's
 * hash; a disconnected slot becomes a tombstone (CL_TOMB) so probe chains stay
 * intact, and a later connect may reuse it with a new generation.  Entries name
 * their cluster by ref = slot | gen << 16, so entries of an old connection can
 * never be mistaken for a new one's.
 *
 * Writers (connect/disconnect) hold cluster_lock; a slot is published by the
 * release store of its state after its name and generation are written.
 * Readers resolve names lock-free; a torn read of a slot being reused yields a
 * ref that matches no entry.
 *
 * A disconnect first tombstones the slot, then bumps hdr->disconnects, then
 * locks every shard in turn.  A shard whose `swept` lags the counter is swept
 * by whoever locks it next (shard_lock calls cluster_sweep_shard): the
 * entries of clusters no longer connected (their ref's slot is not CONNECTED
 * or has another generation) are removed one by one, each with its event and
 * in-flight record (shard.c), and then `swept` catches up.  A writer that
 * resolved the cluster earlier re-checks it under the shard lock
 * (cluster_ref_valid), so no entry can be added behind the sweep.  A connect
 * that reuses a tombstone first has every shard swept, since the per-cluster
 * counters are kept by slot.
 *
 * Markers: a new connect, and a disconnect after its sweep, append an
 * OP_CLUSTER_CONNECT / OP_CLUSTER_DISCONNECT record naming the cluster to
 * every shard's change log (oplog.c), which is how the host agent learns of
 * them, in order with each shard's changes.  The slot's marks_pending is set
 * before the slot is published or tombstoned and cleared once every shard
 * has its marker; every holder of cluster_lock first appends the markers
 * still owed, to every shard again.  So the markers of one connect or
 * disconnect may be missing from some shards for a while and doubled in
 * others: they state "connected" / "not connected" and are idempotent to
 * the agent, and the table here is the truth they describe.
 *
 * Crash windows: killed while holding cluster_lock, the next locker finds each
 * slot either published or not (one store), recounts clusters_connected, and
 * bumps the counter in case the dead one tombstoned a slot without bumping
 * it; then it writes the markers the dead one owed (a connect killed before
 * publishing owes none: its pending mark on a free slot is dropped).  Killed after the bump, the shards it had not swept are swept by their
 * next locker; killed inside a shard's sweep, that shard's repair delivers the
 * event in flight to the monitors not yet reached and the sweep goes on: every
 * removal is reported once (see shard.c for the one exception).
 */
#include <string.h>

#include "internal.h"

int cluster_name_valid(const char *name)
{
	if (!name)
		return 0;
	size_t n = strnlen(name, SHMG_CLUSTER_NAME_MAX + 1);
	if (n == 0 || n > SHMG_CLUSTER_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)name[i] < 0x21 || (unsigned char)name[i] > 0x7e)
			return 0;
	return 1;
}

static uint64_t name_hash(const char *name, size_t len)
{
	return sg_hash(name, len, DEFAULT_CLUSTER_SEED ^ 0x636c7573746572ull);
}

uint64_t cluster_name_seed(const char *name)
{
	return name_hash(name, strlen(name));
}

/* Finds the connected slot for name; returns its index or 0. */
static uint32_t find_slot(const shmg_t *h, const char *name, size_t len, uint64_t hash,
			  uint32_t *free_out)
{
	uint32_t n = h->geo.max_clusters - 1, start = (uint32_t)(hash % n);
	if (free_out)
		*free_out = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t s = 1 + (start + i) % n;
		struct cluster_slot *c = cluster_at(h, s);
		uint32_t st = load_acquire(&c->state); /* pairs with connect's release */
		if (st == CL_FREE) {
			if (free_out && !*free_out)
				*free_out = s;
			return 0;
		}
		if (st == CL_TOMB) {
			if (free_out && !*free_out)
				*free_out = s;
			continue;
		}
		if (c->name_hash == hash && c->name_len == len && memcmp(c->name, name, len) == 0)
			return s;
	}
	return 0;
}

int cluster_resolve(shmg_t *h, const char *name, uint32_t *ref_out, uint64_t *seed_out)
{
	if (!name) {
		*ref_out = cluster_default_ref(h);
		*seed_out = DEFAULT_CLUSTER_SEED;
		return 0;
	}
	if (!cluster_name_valid(name))
		return -EINVAL;
	size_t len = strlen(name);
	uint64_t hash = name_hash(name, len);
	*seed_out = hash; /* the same on every host, whatever the slot */
	uint32_t s = find_slot(h, name, len, hash, NULL);
	if (!s)
		return -ENOTCONN;
	*ref_out = s | load_relaxed(&cluster_at(h, s)->gen) << 16;
	return 0;
}

bool cluster_ref_valid(const shmg_t *h, uint32_t ref)
{
	uint32_t s = cluster_slot_of(ref);
	if (s >= h->geo.max_clusters)
		return false;
	struct cluster_slot *c = cluster_at(h, s);
	return load_acquire(&c->state) == CL_CONNECTED && load_relaxed(&c->gen) == ref >> 16;
}

const char *cluster_name_of(const shmg_t *h, uint32_t ref, char buf[64])
{
	uint32_t s = cluster_slot_of(ref);
	if (s == 0 || s >= h->geo.max_clusters)
		return NULL;
	struct cluster_slot *c = cluster_at(h, s);
	uint32_t len = load_relaxed(&c->name_len); /* the length checked is the length copied */
	if (len > SHMG_CLUSTER_NAME_MAX)
		len = SHMG_CLUSTER_NAME_MAX;
	memcpy(buf, c->name, len);
	buf[len] = 0;
	return buf;
}

/* Under cluster_lock: appends slot s's marker (connect or disconnect, from
 * its state) to every shard's change log, and clears marks_pending once each
 * shard has it.  A shard that stays busy leaves it pending: the next holder
 * of cluster_lock appends the marker to every shard again (markers are
 * idempotent).  A shard's lock sweeps it first if it lags a disconnect, so a
 * disconnect's marker follows the removals of the cluster's entries there. */
static int write_markers(shmg_t *h, uint32_t s, uint64_t deadline)
{
	struct cluster_slot *c = cluster_at(h, s);
	uint32_t len = c->name_len;
	if (len == 0 || len > SHMG_CLUSTER_NAME_MAX) {
		c->marks_pending = 0; /* damaged: nothing to name */
		return 0;
	}
	char name[SHMG_CLUSTER_NAME_MAX + 1];
	memcpy(name, c->name, len);
	name[len] = 0;
	uint8_t op = c->state == CL_CONNECTED ? OP_CLUSTER_CONNECT : OP_CLUSTER_DISCONNECT;
	int busy = 0;
	for (uint32_t sh = 0; sh < h->geo.shards; sh++) {
		int rc = shard_lock_until(h, sh, deadline, 0);
		if (rc == -EBUSY) {
			busy = rc;
			continue;
		}
		if (rc < 0)
			return rc;
		oplog_append_marker(h, sh, op, name);
		shard_unlock(h, sh);
		TEST_POINT("cluster:marked");
	}
	if (!busy)
		c->marks_pending = 0;
	return busy;
}

/* Under cluster_lock: the markers a killed or busy connect or disconnect
 * left unwritten. */
static int finish_markers(shmg_t *h, uint64_t deadline)
{
	int rc = 0;
	for (uint32_t s = 1; s < h->geo.max_clusters && rc >= 0; s++) {
		struct cluster_slot *c = cluster_at(h, s);
		if (!c->marks_pending)
			continue;
		if (c->state == CL_FREE)
			c->marks_pending = 0; /* a connect killed before publishing: nothing happened */
		else
			rc = write_markers(h, s, deadline);
	}
	return rc;
}

int cluster_lock(shmg_t *h, uint64_t deadline)
{
	int rc = robust_lock_limited(h, &h->hdr->cluster_lock, "cluster");
	if (rc == EOWNERDEAD) {
		uint32_t n = 0;
		for (uint32_t s = 1; s < h->geo.max_clusters; s++)
			n += cluster_at(h, s)->state == CL_CONNECTED;
		h->hdr->clusters_connected = n;
		__atomic_add_fetch(&h->hdr->disconnects, 1, __ATOMIC_RELEASE);
		pthread_mutex_consistent(&h->hdr->cluster_lock);
		rc = 0;
	}
	if (rc)
		return -rc;
	/* Busy shards keep their markers pending; the caller goes on. */
	if ((rc = finish_markers(h, deadline)) < 0 && rc != -EBUSY) {
		pthread_mutex_unlock(&h->hdr->cluster_lock);
		return rc;
	}
	return 0;
}

void cluster_unlock(shmg_t *h)
{
	pthread_mutex_unlock(&h->hdr->cluster_lock);
}

bool cluster_markers_pending(const shmg_t *h)
{
	for (uint32_t s = 1; s < h->geo.max_clusters; s++)
		if (load_relaxed(&cluster_at(h, s)->marks_pending))
			return true;
	return false;
}

static bool stale_pred(const shmg_t *h, const struct entry *e, const void *arg)
{
	(void)arg;
	if (e->kind == K_MONITOR || cluster_ref_valid(h, e->cluster))
		return false;
	TEST_POINT("disconnect:removing");
	return true;
}

void cluster_sweep_shard(shmg_t *h, uint32_t shard, uint64_t deadline_ns)
{
	/* Pairs with the release bump after a tombstone: the slots read below
	 * are at least as new as the counter. */
	uint32_t target = load_acquire(&h->hdr->disconnects);
	struct event_mode mode = events_single(h);
	long removed = shard_remove_matching(h, shard, stale_pred, NULL, REASON_CLUSTER_DISCONNECT,
					     deadline_ns);
	events_restore(h, mode);
	/* The gone cluster's nodes may be parked: its slot may be reused. */
	prefix_prune_parked(h, shard);
	/* Stopped by a limbo ring held full past the deadline: the counter
	 * stays behind and the next locker goes on from what is left. */
	if (removed >= 0)
		store_relaxed(&shard_at(h, shard)->swept, target);
}

/* Under cluster_lock: has every shard that lags the counter swept (taking
 * its lock does it).  -EBUSY if a shard stayed locked, or its limbo ring
 * full, past the busy budget: the others are swept, and that one's entries
 * (hidden, their cluster being gone) go with its next locker. */
static int sweep_all(shmg_t *h, uint64_t deadline)
{
	int busy = 0;
	for (uint32_t s = 0; s < h->geo.shards; s++) {
		if (load_relaxed(&shard_at(h, s)->swept) == load_relaxed(&h->hdr->disconnects))
			continue;
		int rc = shard_lock_until(h, s, deadline, 0);
		if (rc == -EBUSY) {
			busy = rc;
			continue;
		}
		if (rc < 0)
			return rc;
		if (load_relaxed(&shard_at(h, s)->swept) != load_relaxed(&h->hdr->disconnects))
			busy = -EBUSY;
		shard_unlock(h, s);
		TEST_POINT("disconnect:swept");
	}
	return busy;
}

int shmg_connect(shmg_t *h, const char *cluster, const struct shmg_connect_opts *o)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	if (!cluster_name_valid(cluster))
		return -EINVAL;
	if (o)
		for (unsigned i = 0; i < sizeof(o->reserved) / sizeof(o->reserved[0]); i++)
			if (o->reserved[i])
				return -EINVAL;
	size_t len = strlen(cluster);
	uint64_t hash = name_hash(cluster, len);
	/* Already connected: a cheap no-op that does not touch the lease
	 * (unless its markers are still pending: the lock writes them). */
	uint32_t held = find_slot(h, cluster, len, hash, NULL);
	if (held && !load_relaxed(&cluster_at(h, held)->marks_pending))
		return 0;
	/* One busy budget for the whole call. */
	uint64_t deadline = busy_deadline(h);
	if ((rc = cluster_lock(h, deadline)) < 0)
		return rc;
	uint32_t free_slot;
	if (!find_slot(h, cluster, len, hash, &free_slot)) {
		if (!free_slot) {
			rc = -ENOSPC;
		} else {
			struct cluster_slot *c = cluster_at(h, free_slot);
			uint32_t gen = (c->gen + 1) & 0xffffu;
			if (!gen)
				gen = 1;
			/* Entries of whatever this slot held before are gone
			 * before reuse: counters are kept per slot.  So is its
			 * last disconnect's marker. */
			if (c->state == CL_TOMB && ((rc = sweep_all(h, deadline)) < 0 ||
						    (c->marks_pending && (rc = -EBUSY))))
				goto out;
			memset(c->name, 0, sizeof(c->name));
			memcpy(c->name, cluster, len);
			c->name_len = (uint32_t)len;
			c->name_hash = hash;
			c->gen = gen;
			c->connected_ns = now_realtime_ns();
			c->ttl_ms = o ? o->ttl_ms : 0;
			c->lease_expires_ns = c->ttl_ms ? now_monotonic_ns() + c->ttl_ms * 1000000ull : 0;
			c->lease_kept = 0;
			store_relaxed(&c->node_marks, 0); /* peers say so again (remote_node_cluster) */
			/* Before it is published: a crash from here on leaves
			 * the markers to the next holder of the lock. */
			c->marks_pending = 1;
			store_release(&c->state, CL_CONNECTED);
			h->hdr->clusters_connected++;
			TEST_POINT("connect:published");
			sg_log(h, SHMG_LOG_INFO, "connected to cluster %s", cluster);
			/* Connected all the same when a shard is busy: its
			 * marker stays pending. */
			(void)write_markers(h, free_slot, deadline);
		}
	}
out:
	cluster_unlock(h);
	return rc;
}

/* Under cluster_lock: tombstones connected slot s.  Writes to the cluster
 * fail with -ENOTCONN from here on; its entries go with each shard's next
 * locker (or disconnect_finish). */
static void tombstone(shmg_t *h, uint32_t s)
{
	struct cluster_slot *c = cluster_at(h, s);
	c->marks_pending = 1; /* before the state: see write_markers */
	store_release(&c->state, CL_TOMB);
	store_relaxed(&c->node_marks, 0);
	h->hdr->clusters_connected--;
	/* Pairs with cluster_sweep_shard's acquire. */
	__atomic_add_fetch(&h->hdr->disconnects, 1, __ATOMIC_RELEASE);
}

/* Under cluster_lock, after tombstones: every shard swept (this host's
 * entries of the clusters and other nodes' alike, each with its event of
 * reason cluster_disconnect), then the markers.  -EBUSY: disconnected all
 * the same; a busy shard is swept by its next locker and its marker stays
 * pending. */
static int disconnect_finish(shmg_t *h, uint64_t deadline)
{
	int rc = sweep_all(h, deadline);
	TEST_POINT("disconnect:swept-all");
	int mk = finish_markers(h, deadline);
	return rc < 0 ? rc : mk;
}

int cluster_disconnect_slot(shmg_t *h, uint32_t s, uint64_t deadline)
{
	if (cluster_at(h, s)->state != CL_CONNECTED)
		return 0;
	tombstone(h, s);
	return disconnect_finish(h, deadline);
}

int shmg_disconnect_many(shmg_t *h, const char *const *clusters, size_t n)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	if (n && !clusters)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!cluster_name_valid(clusters[i]))
			return -EINVAL;
	uint64_t deadline = busy_deadline(h);
	if ((rc = cluster_lock(h, deadline)) < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(clusters[i]);
		uint32_t s = find_slot(h, clusters[i], len, name_hash(clusters[i], len), NULL);
		if (!s)
			continue;
		tombstone(h, s);
		sg_log(h, SHMG_LOG_INFO, "disconnected from cluster %s", clusters[i]);
	}
	TEST_POINT("disconnect:tombstoned");
	rc = disconnect_finish(h, deadline);
	cluster_unlock(h);
	return rc;
}

int shmg_disconnect(shmg_t *h, const char *cluster)
{
	return shmg_disconnect_many(h, &cluster, 1);
}

int shmg_connected(shmg_t *h, const char *cluster)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	uint32_t ref;
	uint64_t seed;
	rc = cluster_resolve(h, cluster, &ref, &seed);
	return rc == 0 ? 1 : rc == -ENOTCONN ? 0 : rc;
}

/* The nodes the host agent marked connected (remote_node_up).  Each slot is
 * read once; 0, this node's number and a mark other than 1 are skipped. */
static long connected_peers(shmg_t *h, uint32_t *nodes, size_t cap)
{
	long n = 0;
	for (uint32_t i = 0; i < MAX_NODES; i++) {
		const struct node_state *ns = &h->hdr->nodes[i];
		uint32_t up = load_acquire(&ns->up); /* pairs with remote_node_up's release */
		uint32_t node = load_relaxed(&ns->node);
		if (up != 1 || !node || node == h->node)
			continue;
		if (nodes && (size_t)n < cap)
			nodes[n] = node;
		n++;
	}
	return n;
}

/* This node and the peers the host agent marked connected to the cluster in
 * slot s (remote_node_cluster).  The marks word is read once; a bit whose
 * node table slot is free or names this node is skipped. */
static long cluster_peers(shmg_t *h, uint32_t s, uint32_t *nodes, size_t cap)
{
	uint64_t marks = load_acquire(&cluster_at(h, s)->node_marks); /* pairs with remote.c's or */
	long n = 0;
	if (nodes && cap)
		nodes[0] = h->node;
	n++;
	for (uint32_t i = 0; i < MAX_NODES; i++) {
		uint32_t node = load_relaxed(&h->hdr->nodes[i].node);
		if (!(marks >> i & 1) || !node || node == h->node)
			continue;
		if (nodes && (size_t)n < cap)
			nodes[n] = node;
		n++;
	}
	return n;
}

long shmg_nodes(shmg_t *h, const char *cluster, uint32_t *nodes, size_t cap)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	if (!cluster)
		return connected_peers(h, nodes, cap);
	uint32_t ref;
	uint64_t seed;
	rc = cluster_resolve(h, cluster, &ref, &seed);
	if (rc == -ENOTCONN)
		return 0;
	return rc < 0 ? rc : cluster_peers(h, cluster_slot_of(ref), nodes, cap);
}

long shmg_clusters(shmg_t *h, int (*fn)(const char *name, void *arg), void *arg)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	long n = 0;
	for (uint32_t s = 1; s < h->geo.max_clusters; s++) {
		struct cluster_slot *c = cluster_at(h, s);
		if (load_acquire(&c->state) != CL_CONNECTED)
			continue;
		char buf[64];
		n++;
		if (fn && (rc = fn(cluster_name_of(h, s | c->gen << 16, buf), arg)))
			return rc;
	}
	return n;
}
