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
 * Crash windows: killed while holding cluster_lock, the next locker finds each
 * slot either published or not (one store), recounts clusters_connected, and
 * bumps the counter in case the dead one tombstoned a slot without bumping
 * it.  Killed after the bump, the shards it had not swept are swept by their
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

static int cluster_lock(shmg_t *h)
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
	return -rc;
}

static void cluster_unlock(shmg_t *h)
{
	pthread_mutex_unlock(&h->hdr->cluster_lock);
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
	/* Stopped by a limbo ring held full past the deadline: the counter
	 * stays behind and the next locker goes on from what is left. */
	if (removed >= 0)
		store_relaxed(&shard_at(h, shard)->swept, target);
}

/* Under cluster_lock: has every shard that lags the counter swept (taking
 * its lock does it).  -EBUSY if a shard stayed locked, or its limbo ring
 * full, past the busy budget: the others are swept, and that one's entries
 * (hidden, their cluster being gone) go with its next locker. */
static int sweep_all(shmg_t *h)
{
	uint64_t deadline = busy_deadline(h);
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
	/* Already connected: a cheap no-op that does not touch the lease. */
	if (find_slot(h, cluster, len, hash, NULL))
		return 0;
	if ((rc = cluster_lock(h)) < 0)
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
			 * before reuse: counters are kept per slot. */
			if (c->state == CL_TOMB && (rc = sweep_all(h)) < 0)
				goto out;
			memset(c->name, 0, sizeof(c->name));
			memcpy(c->name, cluster, len);
			c->name_len = (uint32_t)len;
			c->name_hash = hash;
			c->gen = gen;
			c->connected_ns = now_realtime_ns();
			c->ttl_ms = o ? o->ttl_ms : 0;
			c->lease_expires_ns = c->ttl_ms ? now_monotonic_ns() + c->ttl_ms * 1000000ull : 0;
			store_release(&c->state, CL_CONNECTED);
			h->hdr->clusters_connected++;
			sg_log(h, SHMG_LOG_INFO, "connected to cluster %s", cluster);
		}
	}
out:
	cluster_unlock(h);
	return rc;
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
	if ((rc = cluster_lock(h)) < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(clusters[i]);
		uint32_t s = find_slot(h, clusters[i], len, name_hash(clusters[i], len), NULL);
		if (!s)
			continue;
		store_release(&cluster_at(h, s)->state, CL_TOMB); /* writes now fail with -ENOTCONN */
		h->hdr->clusters_connected--;
		/* Pairs with cluster_sweep_shard's acquire. */
		__atomic_add_fetch(&h->hdr->disconnects, 1, __ATOMIC_RELEASE);
		sg_log(h, SHMG_LOG_INFO, "disconnected from cluster %s", clusters[i]);
	}
	TEST_POINT("disconnect:tombstoned");
	/* Disconnected all the same when a shard is busy (-EBUSY): its
	 * next locker sweeps it. */
	rc = sweep_all(h);
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

long shmg_nodes(shmg_t *h, const char *cluster, uint32_t *nodes, size_t cap)
{
	int rc = shmg_connected(h, cluster);
	if (rc < 0)
		return rc;
	if (!cluster)
		return connected_peers(h, nodes, cap);
	if (!rc)
		return 0;
	if (cap && nodes)
		nodes[0] = h->node;
	return 1;
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
