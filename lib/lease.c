/* SPDX-License-Identifier: MIT */
/*
 * TTL leases of named clusters, enforced by whoever hosts the reaper (the
 * host agent, or an application through shmg_reaper_dispatch).
 *
 * shmg_connect with a ttl on a new connect stores ttl_ms and
 * lease_expires_ns (CLOCK_MONOTONIC, which is the same clock in every
 * process of the host); a repeated connect is a no-op and does not refresh
 * it (cluster.c).  When the lease is due, as in Group (lease sweep):
 *   - if this host has, in that cluster, a local registration, a local
 *     membership or a monitor, the lease is extended by its ttl from now,
 *     and lease_kept records which of the three kept it (shmgroupctl
 *     clusters shows it); activity of other nodes never keeps it;
 *   - otherwise the cluster is disconnected as shmg_disconnect does (its
 *     entries here removed with reason cluster_disconnect, the
 *     disconnect markers in the change logs for the agent).
 * The check runs under cluster_lock, so it never races a connect or a
 * disconnect; a write to the cluster racing the decision is removed by the
 * disconnect like a write racing shmg_disconnect.
 *
 * Shared fields: lease_expires_ns and lease_kept of the cluster slot, written
 * under cluster_lock.  Killed at any point, the lease is either extended or
 * not (one store), and a disconnect begun is finished as cluster.c says.
 */
#include <stdint.h>

#include "internal.h"

struct mon_scan {
	uint32_t tag;
	bool found;
};

static int find_monitor(shmg_t *h, struct entry *e, uint32_t pos, void *arg)
{
	(void)pos;
	struct mon_scan *m = arg;
	struct entry hd;
	if (!entry_read(h, ref_of(h, e), &hd) || hd.kind != K_MONITOR || hd.cluster != m->tag ||
	    !entry_live(h, &hd))
		return 0;
	m->found = true;
	return 1;
}

/* What this host holds in the cluster of slot s: LEASE_KEPT_* bits.  The
 * counters are exact per slot; monitors name the cluster by a tag of its
 * name, so they are looked for, lock-free, in the shards that have any. */
static uint32_t local_interest(shmg_t *h, uint32_t s, const char *name)
{
	uint32_t kept = 0;
	for (uint32_t sh = 0; sh < h->geo.shards; sh++) {
		const struct cluster_counts *cc = &shard_counts(h, sh)[s];
		if (load_relaxed(&cc->registered_local))
			kept |= LEASE_KEPT_REGISTRATIONS;
		if (load_relaxed(&cc->members_local))
			kept |= LEASE_KEPT_MEMBERSHIPS;
	}
	struct mon_scan m = {mon_cluster_tag(cluster_name_seed(name)), false};
	read_enter(h);
	for (uint32_t sh = 0; sh < h->geo.shards && !m.found; sh++)
		if (load_relaxed(&shard_at(h, sh)->monitors))
			index_foreach(h, sh, find_monitor, &m);
	read_exit(h);
	return kept | (m.found ? LEASE_KEPT_MONITORS : 0);
}

/* When the lease of slot s is due: UINT64_MAX if it has none (not
 * connected, or connected without a ttl). */
static uint64_t lease_due(const shmg_t *h, uint32_t s)
{
	const struct cluster_slot *c = cluster_at(h, s);
	uint64_t exp = load_relaxed(&c->lease_expires_ns);
	if (load_acquire(&c->state) != CL_CONNECTED || !load_relaxed(&c->ttl_ms) || !exp)
		return UINT64_MAX;
	return exp;
}

/* The earliest lease due among connected clusters, UINT64_MAX if none. */
static uint64_t next_expiry(const shmg_t *h)
{
	uint64_t next = UINT64_MAX;
	for (uint32_t s = 1; s < h->geo.max_clusters; s++) {
		uint64_t due = lease_due(h, s);
		if (due < next)
			next = due;
	}
	return next;
}

/* Under cluster_lock: the lease of slot s, due at `now`. */
static void lease_expire(shmg_t *h, uint32_t s, uint64_t now, uint64_t deadline)
{
	struct cluster_slot *c = cluster_at(h, s);
	char name[SHMG_CLUSTER_NAME_MAX + 1];
	if (!cluster_name_of(h, s | c->gen << 16, name))
		return;
	uint64_t ttl = c->ttl_ms;
	uint32_t kept = local_interest(h, s, name);
	TEST_POINT("lease:checked");
	if (kept) {
		c->lease_kept = kept;
		/* A ttl scribbled to something huge must not wrap the clock. */
		uint64_t ns = ttl > UINT64_MAX / 2000000u ? UINT64_MAX / 2 : ttl * 1000000u;
		store_relaxed(&c->lease_expires_ns, now + ns);
		sg_log(h, SHMG_LOG_VERBOSE, "lease of cluster %s kept for %llu ms (%s%s%s)", name,
		       (unsigned long long)ttl, kept & LEASE_KEPT_MONITORS ? "monitors " : "",
		       kept & LEASE_KEPT_REGISTRATIONS ? "registrations " : "",
		       kept & LEASE_KEPT_MEMBERSHIPS ? "memberships" : "");
		return;
	}
	sg_log(h, SHMG_LOG_INFO, "lease of cluster %s expired: disconnecting", name);
	(void)cluster_disconnect_slot(h, s, deadline);
}

int lease_check(shmg_t *h)
{
	uint64_t now = now_monotonic_ns(), next = next_expiry(h);
	if ((next > now || next == UINT64_MAX) && !cluster_markers_pending(h))
		goto out;
	/* Markers a killed connect left pending are written by the lock too. */
	uint64_t deadline = busy_deadline(h);
	if (cluster_lock(h, deadline) < 0)
		return 100; /* held past the budget: the next pass retries */
	now = now_monotonic_ns();
	for (uint32_t s = 1; s < h->geo.max_clusters; s++)
		if (lease_due(h, s) <= now)
			lease_expire(h, s, now, deadline);
	cluster_unlock(h);
	next = next_expiry(h);
	now = now_monotonic_ns();
out:
	if (next == UINT64_MAX)
		return INT32_MAX;
	if (next <= now)
		return 10; /* still due (a busy shard): soon again, never a spin */
	uint64_t ms = (next - now + 999999u) / 1000000u;
	return ms > INT32_MAX ? INT32_MAX : (int)ms;
}
