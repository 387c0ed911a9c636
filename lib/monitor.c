/* SPDX-License-Identifier: MIT */
/*
 * Monitors and event routing.
 *
 * A monitor is a pattern head (K_MONHEAD, key = exact key, prefix ending in
 * '/', or "" for every key) with a list of monitoring endpoints (K_MONITOR),
 * stored in the shard index like a group, keyed by hash(cluster name, pattern).
 * Routing an event for key K never scans monitors: it probes the index for K
 * itself, for each '/'-terminated prefix of K, and for "", and takes the union
 * of their lists (a bitmap of endpoint slots, so overlapping patterns deliver
 * once).  Probes into other shards happen inside a read section while the
 * caller holds the key's own shard lock, so events for one key are routed and
 * appended in the order the key's shard applied the changes.
 *
 * Batching: normally every event is its own batch, appended at once.  Between
 * events_batch_begin and events_batch_flush (the death or close of an
 * endpoint, one shard of a cluster disconnect) events are collected per
 * target and each target gets one batch.
 *
 * Nothing here writes shared memory except the mailboxes (mailbox.c).
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

uint32_t mon_cluster_tag(uint64_t seed)
{
	return (uint32_t)(seed >> 32) | 1u;
}

static bool any_monitors(const shmg_t *h)
{
	for (uint32_t s = 0; s < h->geo.shards; s++)
		if (load_relaxed(&shard_at(h, s)->monitors))
			return true;
	return false;
}

static void targets_clear(shmg_t *h)
{
	memset(h->targets, 0, ((size_t)h->geo.max_endpoints + 63) / 64 * 8);
}

static void target_add(shmg_t *h, uint32_t slot, uint32_t gen)
{
	if (slot >= h->geo.max_endpoints)
		return;
	h->targets[slot / 64] |= 1ull << (slot % 64);
	h->target_gen[slot] = gen;
}

/* member_fn: targets a live monitoring endpoint (monitors are this host's). */
static int add_live(shmg_t *h, const struct entry *m, const struct entry *mhd, void *arg)
{
	(void)m;
	(void)arg;
	if (entry_live(h, mhd) && mhd->node == h->node)
		target_add(h, mhd->ep_slot, mhd->ep_gen);
	return 0;
}

/* Inside a read section: adds the live endpoints on the list of k's head. */
static void add_list(shmg_t *h, const struct keyref *k, uint8_t head_kind)
{
	struct entry hhd;
	const struct entry *head = index_get(h, k, head_kind, &hhd);
	if (head)
		list_walk(h, head, &hhd, add_live, NULL);
}

/* Inside a read section: adds the live monitors of one pattern. */
static void route_pattern(shmg_t *h, uint64_t seed, const char *pat, size_t len)
{
	struct keyref k = {pat, len, mon_cluster_tag(seed), sg_hash(pat, len, seed), 0, seed};
	k.shard = shard_of(h, k.hash);
	add_list(h, &k, K_MONHEAD);
}

static void route(shmg_t *h, uint32_t cluster_ref, const char *key, size_t len)
{
	uint64_t seed = cluster_ref_seed(h, cluster_ref);
	read_enter(h);
	route_pattern(h, seed, key, len);
	for (size_t n = prefix_parent_len(key, len); n; n = prefix_parent_len(key, n))
		route_pattern(h, seed, key, n);
	route_pattern(h, seed, "", 0);
	read_exit(h);
}

/* e, if any, is a header copy (entry_read). */
void record_fill(shmg_t *h, struct mailbox_record *r, uint8_t type, uint8_t reason,
		 const struct entry *e, const char *cluster, size_t key_len, size_t meta_len,
		 size_t prev_len, bool has_prev)
{
	size_t clen = cluster ? strlen(cluster) : 0;
	*r = (struct mailbox_record){
		.type = type,
		.reason = reason,
		.cluster_len = (uint8_t)clen,
		.flags = has_prev ? MB_HAS_PREV : 0,
		.key_len = (uint16_t)key_len,
		.meta_len = (uint32_t)meta_len,
		.prev_len = (uint32_t)prev_len,
		.node = e ? e->node : h->node,
		.ep_slot = e ? e->ep_slot : h->slot,
		.ep_gen = e ? e->ep_gen : h->gen,
		.pid = e ? e->pid : h->ep->pid,
		/* When the change was applied: a registration's own time, or now
		 * for a removal or a message. */
		.time_ns = e && (type == SHMG_EV_REGISTERED || type == SHMG_EV_JOINED) ? e->time_ns
										       : now_realtime_ns(),
	};
	r->size = (uint32_t)((sizeof(*r) + clen + key_len + meta_len + prev_len + 7) & ~7ull);
}

/* Appends batch `one` to the mailbox of every target in the bitmap, in
 * slot order (the progress word, if set, records each). */
static void deliver_each(shmg_t *h, struct mb_batch *one)
{
	uint32_t words = (h->geo.max_endpoints + 63) / 64;
	for (uint32_t w = 0; w < words; w++) {
		for (uint64_t bits = h->targets[w]; bits; bits &= bits - 1) {
			uint32_t slot = w * 64 + (uint32_t)__builtin_ctzll(bits);
			if (slot < h->deliver_from)
				continue; /* reached before its writer died */
			mailbox_deliver(h, slot, h->target_gen[slot], one);
			TEST_POINT("event:delivered");
		}
	}
}

/* Sends one record to every target in the bitmap (or queues it per target
 * while batching). */
void targets_deliver(shmg_t *h, const struct mailbox_record *r, const char *cluster,
		     const void *key, const void *meta, const void *prev)
{
	uint32_t words = (h->geo.max_endpoints + 63) / 64;
	if (!h->batching) {
		uint64_t any = 0;
		for (uint32_t w = 0; w < words; w++)
			any |= h->targets[w];
		struct mb_batch *one = &h->single; /* reused: no allocation per event */
		one->len = one->count = 0;
		/* Built only for someone: most keys have no monitor. */
		if (any && mb_batch_add(one, r, cluster, key, meta, prev) == 0)
			deliver_each(h, one);
		return;
	}
	for (uint32_t w = 0; w < words; w++) {
		for (uint64_t bits = h->targets[w]; bits; bits &= bits - 1) {
			uint32_t slot = w * 64 + (uint32_t)__builtin_ctzll(bits);
			if (slot < h->deliver_from)
				continue;
			struct mb_batch *b = &h->pending[slot];
			if (b->count && h->pending_gen[slot] != h->target_gen[slot])
				b->len = b->count = 0;
			h->pending_gen[slot] = h->target_gen[slot];
			mb_batch_add(b, r, cluster, key, meta, prev);
		}
	}
}

void events_emit(shmg_t *h, uint8_t type, uint8_t reason, const struct entry *e, const char *key,
		 size_t key_len, const struct entry *prev)
{
	if (!any_monitors(h))
		return;
	/* Lengths from one read of each header, checked against the arena. */
	struct entry hd, phd = {0};
	if (!entry_read(h, ref_of(h, e), &hd) || (prev && !entry_read(h, ref_of(h, prev), &phd)))
		return;
	targets_clear(h);
	route(h, hd.cluster, key, key_len);
	char clbuf[64];
	const char *cl = cluster_name_of(h, hd.cluster, clbuf);
	struct mailbox_record r;
	record_fill(h, &r, type, reason, &hd, cl, key_len, hd.meta_len, phd.meta_len, prev != NULL);
	targets_deliver(h, &r, cl, key, entry_meta_of(e, &hd),
			prev ? entry_meta_of(prev, &phd) : NULL);
}

void events_emit_swap(shmg_t *h, const struct entry *gone, uint8_t reason,
		      const struct entry *came)
{
	if (!any_monitors(h))
		return;
	struct entry ghd, chd;
	if (!entry_read(h, ref_of(h, gone), &ghd) || !entry_read(h, ref_of(h, came), &chd))
		return;
	const char *key = entry_key(came);
	targets_clear(h);
	route(h, chd.cluster, key, chd.key_len);
	char clbuf[64];
	const char *cl = cluster_name_of(h, chd.cluster, clbuf);
	struct mailbox_record r1, r2;
	record_fill(h, &r1, SHMG_EV_UNREGISTERED, reason, &ghd, cl, chd.key_len, ghd.meta_len, 0,
		    false);
	record_fill(h, &r2, SHMG_EV_REGISTERED, REASON_NONE, &chd, cl, chd.key_len, chd.meta_len, 0,
		    false);
	struct mb_batch *one = &h->single;
	one->len = one->count = 0;
	if (mb_batch_add(one, &r1, cl, key, entry_meta_of(gone, &ghd), NULL) == 0 &&
	    mb_batch_add(one, &r2, cl, key, entry_meta_of(came, &chd), NULL) == 0)
		deliver_each(h, one);
}

void events_batch_begin(shmg_t *h)
{
	h->batching = true;
}

void events_batch_flush(shmg_t *h)
{
	h->batching = false;
	for (uint32_t s = 0; s < h->geo.max_endpoints; s++) {
		struct mb_batch *b = &h->pending[s];
		if (!b->count)
			continue;
		mailbox_deliver(h, s, h->pending_gen[s], b);
		b->len = b->count = 0;
		TEST_POINT("batch:delivered");
	}
}

/* ---- monitor / demonitor --------------------------------------------- */

static int pattern_prepare(shmg_t *h, const char *pat, size_t len, const struct shmg_opts *o,
			   struct keyref *k)
{
	const char *cluster = o ? o->cluster : NULL;
	if (cluster && !cluster_name_valid(cluster))
		return -EINVAL;
	if ((!pat && len) || (pat && (len == 0 || len > h->geo.key_max || memchr(pat, 0, len))))
		return -EINVAL;
	uint64_t seed = cluster ? cluster_name_seed(cluster) : DEFAULT_CLUSTER_SEED;
	k->key = pat ? pat : "";
	k->len = pat ? len : 0;
	k->cluster = mon_cluster_tag(seed);
	k->seed = seed;
	k->hash = sg_hash(k->key, k->len, seed);
	k->shard = shard_of(h, k->hash);
	return 0;
}

int shmg_monitor(shmg_t *h, const char *pattern, size_t pattern_len, const struct shmg_opts *opts)
{
	struct keyref k;
	int rc = handle_check(h);
	if (rc || (rc = pattern_prepare(h, pattern, pattern_len, opts, &k)))
		return rc;
	if ((rc = shard_lock(h, k.shard)) < 0)
		return rc;
	rc = list_join(h, &k, K_MONHEAD, NULL, 0);
	shard_unlock(h, k.shard);
	return rc;
}

int shmg_demonitor(shmg_t *h, const char *pattern, size_t pattern_len,
		   const struct shmg_opts *opts)
{
	struct keyref k;
	int rc = handle_check(h);
	if (rc || (rc = pattern_prepare(h, pattern, pattern_len, opts, &k)))
		return rc;
	if ((rc = shard_lock(h, k.shard)) < 0)
		return rc;
	rc = list_leave(h, &k, K_MONHEAD);
	shard_unlock(h, k.shard);
	return rc == -ENOENT ? 0 : rc;
}

/* ---- messages --------------------------------------------------------- */

/* member_fn: targets a live endpoint of this node; notes another node in
 * the node_set arg (if any). */
static int add_message_target(shmg_t *h, const struct entry *m, const struct entry *mhd, void *arg)
{
	struct node_set *remote = arg;
	(void)m;
	if (mhd->node == h->node) {
		if (entry_live(h, mhd))
			target_add(h, mhd->ep_slot, mhd->ep_gen);
		return 0;
	}
	if (!remote)
		return 0;
	for (uint32_t i = 0; i < remote->n; i++)
		if (remote->node[i] == mhd->node)
			return 0;
	if (remote->n < MAX_NODES)
		remote->node[remote->n++] = mhd->node;
	return 0;
}

long message_targets(shmg_t *h, const struct keyref *k, struct node_set *remote)
{
	struct entry hd, ghd;
	targets_clear(h);
	if (remote)
		remote->n = 0;
	read_enter(h);
	const struct entry *reg = index_get(h, k, K_REG, &hd);
	if (reg)
		add_message_target(h, reg, &hd, remote);
	const struct entry *group = index_get(h, k, K_GROUP, &ghd);
	if (group)
		list_walk(h, group, &ghd, add_message_target, remote);
	read_exit(h);
	long n = 0;
	for (uint32_t w = 0; w < (h->geo.max_endpoints + 63) / 64; w++)
		n += __builtin_popcountll(h->targets[w]);
	return n;
}

void message_send(shmg_t *h, const struct keyref *k, const void *msg, size_t len,
		  const struct entry *sender)
{
	char clbuf[64];
	const char *cl = cluster_name_of(h, k->cluster, clbuf);
	struct mailbox_record r;
	record_fill(h, &r, SHMG_EV_MESSAGE, REASON_NONE, sender, cl, k->len, len, 0, false);
	targets_deliver(h, &r, cl, k->key, msg, NULL);
}
