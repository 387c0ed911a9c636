/* SPDX-License-Identifier: MIT */
/*
 * Counters for tools: shmg_shard_stats, shmg_endpoint_stats and
 * shmg_cluster_stats copy what writers count in the arena into a caller's
 * struct.
 *
 * Who writes what.  Nothing here is written on the read path: lookups and
 * member walks store only their own reader slot.  Writers count under locks
 * they hold anyway, on lines readers of keys never load:
 *   - shard_header.writes (oplog_append) and lock_waits (shard_lock_until,
 *     only after a failed trylock), repairs, nentries, the change-log header:
 *     the shard's writer, under its lock;
 *   - cluster_counts, endpoint_entries and ep_kind_counts (shard_count): the
 *     same writer;
 *   - mailbox_header.delivered (under the mailbox lock) and dropped_total
 *     (atomic adds): producers.
 *
 * How they are read.  Every shared value is one relaxed load, taken as
 * untrusted: indexes come from the validated geometry only, counts are
 * clamped to what they can describe (a kind count to its endpoint's entries,
 * a mailbox's fill to its ring), and a value that can only be damage (an
 * unknown state, a cluster name too long) gives a bounded result, never an
 * address off the mapping.  No lock is taken, so a figure may be one write
 * behind another; an endpoint slot whose generation changed while it was read
 * is read again.
 *
 * The callers' structs may be older or newer than this library's: each call
 * takes the caller's sizeof, fills that many bytes at most and zeroes what it
 * does not know, and returns how many bytes it filled.
 */
#include <string.h>

#include "internal.h"

/* Copies the library's struct (own bytes of it) into the caller's (size
 * bytes): a prefix for an older caller, zeros past it for a newer one. */
static int copy_out(void *out, size_t size, const void *own, size_t own_size)
{
	size_t n = size < own_size ? size : own_size;
	if (n)
		memcpy(out, own, n); /* out may be NULL with size 0 */
	if (size > n)
		memset((uint8_t *)out + n, 0, size - n);
	return (int)n;
}

static int stats_args(const shmg_t *h, const void *out, size_t size)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	if (!out && size)
		return -EINVAL;
	return 0;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

int shmg_shard_stats(shmg_t *h, uint32_t shard, struct shmg_shard_stats *out, size_t size)
{
	int rc = stats_args(h, out, size);
	if (rc)
		return rc;
	if (shard >= h->geo.shards)
		return -ERANGE;
	const struct shard_header *sh = shard_at(h, shard);
	const struct cluster_counts *cc = shard_counts(h, shard);
	struct shmg_shard_stats s = {.shard = shard};
	for (uint32_t c = 0; c < h->geo.max_clusters; c++) {
		s.registered += load_relaxed(&cc[c].registered);
		s.members += load_relaxed(&cc[c].members);
	}
	s.monitors = load_relaxed(&sh->monitors);
	struct table_view v;
	if (index_view(h, shard, &v)) {
		s.index_slots = (uint64_t)BUCKET_SLOTS << v.log2;
		s.index_used = min_u64(load_relaxed(&sh->nentries), s.index_slots);
	}
	s.writes = load_relaxed(&sh->writes);
	s.lock_waits = load_relaxed(&sh->lock_waits);
	s.repairs = load_relaxed(&sh->repairs);
	uint32_t limbo = load_relaxed(&sh->limbo_head) - load_relaxed(&sh->limbo_tail);
	s.retired = limbo <= LIMBO_CAP ? limbo : LIMBO_CAP;
	for (unsigned i = 0; i < PARKED_NODES; i++)
		s.parked_nodes += load_relaxed(&sh->parked[i]) != 0;
	const struct oplog_header *ol = oplog_at(h, shard);
	s.log_capacity = h->geo.oplog_bytes - sizeof(*ol);
	s.log_records = load_relaxed(&ol->seq);
	s.log_bytes = min_u64(load_relaxed(&ol->head), s.log_capacity);
	s.log_resets = load_relaxed(&ol->resets);
	return copy_out(out, size, &s, sizeof(s));
}

/* The endpoint's entries of each kind, over every shard: endpoint_entries
 * counts all three, ep_kind_counts the registrations and monitors among
 * them (layout.h); the rest are memberships. */
static void endpoint_entries(const shmg_t *h, uint32_t slot, struct shmg_endpoint_stats *s)
{
	for (uint32_t sh = 0; sh < h->geo.shards; sh++) {
		uint64_t all = load_relaxed(&shard_ep_entries(h, sh)[slot]);
		const struct ep_kind_counts *k = &shard_ep_kinds(h, sh)[slot];
		if (!all)
			continue; /* nothing here: skip the two loads */
		uint64_t reg = min_u64(load_relaxed(&k->registered), all);
		uint64_t mon = min_u64(load_relaxed(&k->monitors), all - reg);
		s->registrations += reg;
		s->monitors += mon;
		s->memberships += all - reg - mon;
	}
}

static void endpoint_mailbox(const shmg_t *h, uint32_t slot, uint32_t gen,
			     struct shmg_endpoint_stats *s)
{
	const struct mailbox_header *mb = mailbox_at(h, slot);
	s->mailbox_capacity = h->geo.mailbox_bytes - sizeof(*mb);
	if (load_relaxed(&mb->gen) != gen)
		return; /* not yet reset for this owner, or retired */
	uint64_t head = load_relaxed(&mb->head);
	uint64_t tail = load_relaxed(&mb->tail); /* read after head: never behind it but by damage */
	s->mailbox_used = tail >= head ? min_u64(tail - head, s->mailbox_capacity) : 0;
	s->events_delivered = load_relaxed(&mb->delivered);
	s->events_dropped = load_relaxed(&mb->dropped_total);
}

int shmg_endpoint_stats(shmg_t *h, uint32_t slot, struct shmg_endpoint_stats *out, size_t size)
{
	int rc = stats_args(h, out, size);
	if (rc)
		return rc;
	if (slot >= h->geo.max_endpoints)
		return -ERANGE;
	const struct endpoint_slot *ep = endpoint_at(h, slot);
	for (int attempt = 0; attempt < 4; attempt++) {
		uint32_t gen = load_acquire(&ep->gen); /* pairs with the claim's stores */
		uint32_t state = load_acquire(&ep->state);
		if (state == EP_FREE || gen == 0)
			return -ENOENT;
		struct shmg_endpoint_stats s = {
			.id = {h->node, slot, gen},
			.pid = (pid_t)load_relaxed(&ep->pid),
			.state = state <= EP_CLOSING ? state : 0,
			.opened_ns = load_relaxed(&ep->opened_ns),
		};
		endpoint_entries(h, slot, &s);
		endpoint_mailbox(h, slot, gen, &s);
		if (load_acquire(&ep->gen) == gen)
			return copy_out(out, size, &s, sizeof(s));
	}
	return -EAGAIN; /* reused again and again while it was read */
}

static_assert((int)SHMG_LEASE_KEPT_MONITORS == LEASE_KEPT_MONITORS &&
		      (int)SHMG_LEASE_KEPT_REGISTRATIONS == LEASE_KEPT_REGISTRATIONS &&
		      (int)SHMG_LEASE_KEPT_MEMBERSHIPS == LEASE_KEPT_MEMBERSHIPS,
	      "lease kept bits");

int shmg_cluster_stats(shmg_t *h, uint32_t slot, struct shmg_cluster_stats *out, size_t size)
{
	int rc = stats_args(h, out, size);
	if (rc)
		return rc;
	if (slot >= h->geo.max_clusters)
		return -ERANGE;
	const struct cluster_slot *c = cluster_at(h, slot);
	if (slot != 0 && load_acquire(&c->state) != CL_CONNECTED)
		return -ENOENT;
	struct shmg_cluster_stats s = {.slot = slot};
	char buf[64];
	const char *name = cluster_name_of(h, slot, buf);
	if (name) {
		/* A name that is not one (damage) reads as "?": tools print it. */
		if (!cluster_name_valid(name))
			name = "?";
		memcpy(s.name, name, strlen(name) + 1);
	}
	if (slot != 0) {
		s.connected_ns = load_relaxed(&c->connected_ns);
		s.ttl_ms = load_relaxed(&c->ttl_ms);
		uint64_t expires = load_relaxed(&c->lease_expires_ns), now = now_monotonic_ns();
		if (s.ttl_ms && expires)
			s.lease_left_ms = expires >= now ? (int64_t)((expires - now) / 1000000u)
							 : -(int64_t)((now - expires) / 1000000u);
	}
	if (slot != 0) {
		s.lease_kept = load_relaxed(&c->lease_kept) &
			       (LEASE_KEPT_MONITORS | LEASE_KEPT_REGISTRATIONS | LEASE_KEPT_MEMBERSHIPS);
		long n = shmg_nodes(h, s.name, NULL, 0);
		s.nodes = n > 0 ? (uint32_t)n : 0;
	}
	for (uint32_t sh = 0; sh < h->geo.shards; sh++) {
		const struct cluster_counts *cc = &shard_counts(h, sh)[slot];
		s.registered += load_relaxed(&cc->registered);
		s.members += load_relaxed(&cc->members);
	}
	return copy_out(out, size, &s, sizeof(s));
}
