/* SPDX-License-Identifier: MIT */
/*
 * Entries owned by other nodes (remote.h): the host agent's writes.
 *
 * A remote write is a local write with another author: the block is filled
 * while unreachable with the owner's node, endpoint, pid and time
 * (h->author, read by entry_new and list_join), then published by the same
 * single release store, counted, and announced in flight for repair, like
 * any write (shard.c).  oplog_append skips it: the owner logs its own
 * changes.
 *
 * Per-node state: arena_header.nodes[] holds each node's incarnation and
 * whether the agent's connection to it is up (read by shmg_nodes), and
 * each shard's node_cursor[] the last seq applied, written under that
 * shard's lock with the changes (so never ahead of them).  A resync marks
 * its cursor CURSOR_DIRTY for as long as it runs.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "remote.h"

static_assert(REMOTE_MAX_NODES == MAX_NODES, "remote.h and layout.h agree");
static_assert((int)REMOTE_REGISTER == (int)OP_REGISTER && (int)REMOTE_LEAVE == (int)OP_LEAVE,
	      "op numbers");

#define CURSOR_DIRTY UINT64_MAX

/* The node table slot of `node`, claiming a free one if `claim`; -1 if none. */
static int node_slot(shmg_t *h, uint32_t node, bool claim)
{
	struct node_state *t = h->hdr->nodes;
	for (uint32_t i = 0; i < MAX_NODES; i++)
		if (load_acquire(&t[i].node) == node)
			return (int)i;
	for (uint32_t i = 0; claim && i < MAX_NODES; i++) {
		uint32_t zero = 0;
		if (__atomic_compare_exchange_n(&t[i].node, &zero, node, false, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE))
			return (int)i;
		if (zero == node)
			return (int)i;
	}
	return -1;
}

/* The arguments of a batch, and the slot of its node: -ESTALE if another
 * incarnation of it is held. */
static int batch_check(shmg_t *h, uint32_t node, uint64_t inc, uint32_t shard,
		       const struct remote_change *c, size_t n)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	if (!node || node == h->node || !inc || shard >= h->geo.shards || (n && !c))
		return -EINVAL;
	int i = node_slot(h, node, true);
	if (i < 0)
		return -ENOSPC;
	struct node_state *ns = &h->hdr->nodes[i];
	uint64_t held = load_relaxed(&ns->inc);
	if (held && held != inc)
		return -ESTALE;
	if (!held)
		store_relaxed(&ns->inc, inc);
	return i;
}

static int change_prepare(shmg_t *h, uint32_t node, uint32_t shard, const struct remote_change *c,
			  struct keyref *k)
{
	if (c->id.node != node || c->id.slot > 0xffffu || meta_check(h, c->meta, c->meta_len))
		return -EINVAL;
	if (c->op < REMOTE_REGISTER || c->op > REMOTE_LEAVE)
		return -EINVAL;
	struct shmg_opts o = {.cluster = c->cluster && *c->cluster ? c->cluster : NULL};
	int rc = key_prepare(h, c->key, c->key_len, &o, KEY_WRITE, k);
	if (rc)
		return rc;
	if (k->shard != shard)
		return -EINVAL;
	return cluster_ref_valid(h, k->cluster) ? 0 : -ENOTCONN;
}

static bool same_endpoint(const struct entry *e, const shmg_id_t *id)
{
	return e->node == id->node && e->ep_slot == id->slot && e->ep_gen == id->gen;
}

/* A register.  resync: a registration of the same key by another endpoint
 * of the same node is stale (the snapshot says who holds it now) and goes
 * first, with reason RESYNC. */
static int put_reg(shmg_t *h, const struct keyref *k, const struct remote_change *c, bool resync,
		   ref_t *out)
{
	uint32_t pos;
	struct entry *old = index_find(h, k, K_REG, &pos);
	if (old && same_endpoint(old, &c->id))
		return reg_replace(h, k, old, pos, c->meta, c->meta_len, out);
	if (old) {
		if (!resync || old->node != c->id.node)
			return -EEXIST;
		shard_remove_reg(h, k->shard, old, pos, SHMG_REASON_RESYNC);
	}
	return reg_add(h, k, c->meta, c->meta_len, out);
}

static int put_member(shmg_t *h, const struct keyref *k, const struct remote_change *c, ref_t *out)
{
	int rc = list_join(h, k, K_GROUP, c->meta, c->meta_len);
	/* The member held now, even if the change failed (-ENOSPC): a resync
	 * keeps the old version rather than sweeping it. */
	struct entry *head = index_find(h, k, K_GROUP, NULL);
	struct entry *m = head ? index_find_member(h, k->shard, ref_of(h, head),
						   member_hash(k->hash, c->id.slot, c->id.gen),
						   c->id.node, c->id.slot, c->id.gen, NULL)
			       : NULL;
	*out = m ? ref_of(h, m) : 0;
	return rc;
}

static int remove_one(shmg_t *h, const struct keyref *k, const struct remote_change *c)
{
	int reason = c->reason ? c->reason : SHMG_REASON_NORMAL;
	uint32_t pos;
	if (c->op == REMOTE_UNREGISTER) {
		struct entry *e = index_find(h, k, K_REG, &pos);
		if (!e || !same_endpoint(e, &c->id))
			return -ENOENT;
		shard_remove_reg(h, k->shard, e, pos, reason);
		return 0;
	}
	struct entry *head = index_find(h, k, K_GROUP, NULL);
	struct entry *m = head ? index_find_member(h, k->shard, ref_of(h, head),
						   member_hash(k->hash, c->id.slot, c->id.gen),
						   c->id.node, c->id.slot, c->id.gen, &pos)
			       : NULL;
	if (!m)
		return -ENOENT;
	shard_remove_member(h, k->shard, m, pos, reason);
	return 0;
}

/* One change under the lock, with room made for it first. */
static int change_locked(shmg_t *h, uint32_t node, uint32_t shard, const struct remote_change *c,
			 bool resync, uint64_t deadline_ns, ref_t *out)
{
	struct keyref k;
	int rc = change_prepare(h, node, shard, c, &k);
	if (rc)
		return rc;
	if (resync && c->op != REMOTE_REGISTER && c->op != REMOTE_JOIN)
		return -EINVAL;
	/* A replaced registration and its stale predecessor, or a member and
	 * its head, plus two resizes: as for a local write. */
	if ((rc = epoch_make_room(h, shard, WRITE_RETIRES_MAX, deadline_ns)) < 0)
		return rc;
	const struct author a = {c->id.node, c->id.slot, c->id.gen, c->pid, c->time_ns};
	h->author = &a;
	*out = 0;
	if (c->op == REMOTE_REGISTER)
		rc = put_reg(h, &k, c, resync, out);
	else if (c->op == REMOTE_JOIN)
		rc = put_member(h, &k, c, out);
	else
		rc = remove_one(h, &k, c);
	h->author = NULL;
	return rc;
}

/* ---- resync ---------------------------------------------------------- */

/* The refs a resync kept or added: an open-addressing set, process-private. */
struct refset {
	ref_t *v;
	size_t mask;
};

static void refset_add(struct refset *s, ref_t r)
{
	size_t i = (r * 0x9e3779b1u) & s->mask;
	while (s->v[i] && s->v[i] != r)
		i = (i + 1) & s->mask;
	s->v[i] = r;
}

static bool refset_has(const struct refset *s, ref_t r)
{
	for (size_t i = (r * 0x9e3779b1u) & s->mask; s->v[i]; i = (i + 1) & s->mask)
		if (s->v[i] == r)
			return true;
	return false;
}

struct sweep_ctx {
	uint32_t node;
	const struct refset *keep;
};

static bool sweep_pred(const shmg_t *h, const struct entry *e, const void *arg)
{
	const struct sweep_ctx *s = arg;
	return e->node == s->node && !refset_has(s->keep, ref_of(h, e));
}

/* remote_apply and remote_resync: the changes in order under one lock hold,
 * then (resync) the sweep of the node's entries not among them, then the
 * cursor. */
static int apply_batch(shmg_t *h, uint32_t node, uint64_t inc, uint32_t shard,
		       const struct remote_change *c, size_t n, uint64_t cursor, int *rcs,
		       bool resync)
{
	int slot = batch_check(h, node, inc, shard, c, n);
	if (slot < 0)
		return slot;
	struct refset keep = {NULL, 0};
	if (resync) {
		size_t cap = 16;
		while (cap < 2 * n)
			cap <<= 1;
		if (!(keep.v = calloc(cap, sizeof(ref_t))))
			return -ENOMEM;
		keep.mask = cap - 1;
	}
	uint64_t deadline = busy_deadline(h);
	int rc = shard_lock_until(h, shard, deadline, WRITE_RETIRES_MAX);
	if (rc < 0) {
		free(keep.v);
		return rc;
	}
	uint64_t *cur = &shard_node_cursors(h, shard)[slot];
	if (resync)
		store_relaxed(cur, CURSOR_DIRTY);
	for (size_t i = 0; i < n; i++) {
		if (resync)
			TEST_POINT("remote:resync-upsert");
		ref_t ref = 0;
		int r = change_locked(h, node, shard, &c[i], resync, deadline, &ref);
		if (r == -EBUSY) {
			/* A reader holds the limbo ring full: stop here, the
			 * cursor behind (or dirty); the agent applies again. */
			rc = r;
			goto out;
		}
		if (ref && resync)
			refset_add(&keep, ref);
		if (rcs)
			rcs[i] = r;
	}
	if (resync) {
		TEST_POINT("remote:resync-sweep");
		struct sweep_ctx sc = {node, &keep};
		long removed =
			shard_remove_matching(h, shard, sweep_pred, &sc, SHMG_REASON_RESYNC, deadline);
		if (removed < 0) {
			rc = (int)removed;
			goto out;
		}
		TEST_POINT("remote:resync-swept");
	}
	if (cursor || resync)
		store_relaxed(cur, cursor);
out:
	shard_unlock(h, shard);
	free(keep.v);
	return rc;
}

int remote_apply(shmg_t *h, uint32_t node, uint64_t inc, uint32_t shard,
		 const struct remote_change *c, size_t n, uint64_t cursor, int *rcs)
{
	return apply_batch(h, node, inc, shard, c, n, cursor, rcs, false);
}

int remote_resync(shmg_t *h, uint32_t node, uint64_t inc, uint32_t shard,
		  const struct remote_change *c, size_t n, uint64_t cursor, int *rcs)
{
	return apply_batch(h, node, inc, shard, c, n, cursor, rcs, true);
}

int remote_put(shmg_t *h, uint64_t inc, const struct remote_change *c)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	if (!c)
		return -EINVAL;
	struct keyref k;
	struct shmg_opts o = {.cluster = c->cluster && *c->cluster ? c->cluster : NULL};
	if ((rc = key_prepare(h, c->key, c->key_len, &o, KEY_WRITE, &k)))
		return rc;
	int one;
	rc = remote_apply(h, c->id.node, inc, k.shard, c, 1, 0, &one);
	return rc ? rc : one;
}

/* ---- purge and state ------------------------------------------------- */

/* Keeps only the bits of `keep` in every cluster's node marks. */
static void clear_marks(shmg_t *h, uint64_t keep)
{
	for (uint32_t s = 1; s < h->geo.max_clusters; s++)
		__atomic_and_fetch(&cluster_at(h, s)->node_marks, keep, __ATOMIC_RELEASE);
}

static bool of_node(const shmg_t *h, const struct entry *e, const void *arg)
{
	(void)h;
	return e->node == *(const uint32_t *)arg;
}

/* Removes, shard by shard, the entries pred() accepts, each with its event
 * of reason; with the node table slot cursor_slot (>= 0), zeroes that node's
 * cursor of each shard with its removals.  The number removed, or -EBUSY /
 * -EIO from a shard not reached (the shards before it are done). */
static long remove_everywhere(shmg_t *h, entry_pred pred, const void *ctx, int reason,
			      int cursor_slot)
{
	long total = 0;
	uint64_t deadline = busy_deadline(h);
	for (uint32_t s = 0; s < h->geo.shards; s++) {
		int rc = shard_lock_until(h, s, deadline, 2);
		if (rc < 0)
			return rc;
		long n = shard_remove_matching(h, s, pred, ctx, reason, deadline);
		TEST_POINT("remote:purged-shard");
		if (n >= 0 && cursor_slot >= 0)
			store_relaxed(&shard_node_cursors(h, s)[cursor_slot], 0);
		shard_unlock(h, s);
		if (n < 0)
			return n;
		total += n;
	}
	return total;
}

long remote_purge(shmg_t *h, uint32_t node, int reason)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	if (!node || node == h->node)
		return -EINVAL;
	int slot = node_slot(h, node, false);
	/* Forgotten first: a purge cut short reads as "nothing held", and the
	 * agent purges again before it trusts anything of the node. */
	if (slot >= 0)
		store_relaxed(&h->hdr->nodes[slot].inc, 0);
	/* Not connected either, to the host or any cluster, before the slot
	 * can serve another node. */
	if (slot >= 0) {
		store_relaxed(&h->hdr->nodes[slot].up, 0);
		clear_marks(h, ~(1ull << slot));
	}
	long total = remove_everywhere(h, of_node, &node, reason, slot);
	if (total < 0)
		return total;
	/* Every cursor is 0 and no entry is left: the slot may serve another node. */
	if (slot >= 0)
		store_release(&h->hdr->nodes[slot].node, 0);
	return total;
}

struct snap_ctx {
	int (*fn)(const struct oplog_entry *e, void *arg);
	void *arg;
	long n;
	int stop;
};

static int snap_visit(shmg_t *h, struct entry *e, uint32_t pos, void *arg)
{
	(void)pos;
	struct snap_ctx *sc = arg;
	if ((entry_role(e) != K_REG && entry_role(e) != K_MEMBER) || e->node != h->node ||
	    !entry_live(h, e) ||
	    !cluster_ref_valid(h, e->cluster))
		return 0;
	struct entry hd, khd;
	const struct entry *blk = entry_read(h, ref_of(h, e), &hd);
	const struct entry *keyholder =
		blk && hd.kind == K_MEMBER ? entry_read(h, links_of(blk, &hd)->aux, &khd) : blk;
	if (!blk || !keyholder)
		return 0;
	if (keyholder == blk)
		khd = hd;
	char clbuf[64];
	const char *cl = cluster_name_of(h, hd.cluster, clbuf);
	struct oplog_entry out = {
		.op = entry_role(&hd) == K_REG ? OP_REGISTER : OP_JOIN,
		.id = {hd.node, hd.ep_slot, hd.ep_gen},
		.pid = hd.pid,
		.time_ns = hd.time_ns,
		.cluster = cl ? cl : "",
		.key = entry_key(keyholder),
		.key_len = khd.key_len,
		.meta = entry_meta_of(blk, &hd),
		.meta_len = hd.meta_len,
	};
	sc->n++;
	return sc->fn ? (sc->stop = sc->fn(&out, sc->arg)) : 0;
}

long remote_snapshot(shmg_t *h, uint32_t shard, int (*fn)(const struct oplog_entry *e, void *arg),
		     void *arg, uint64_t *next_seq)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	if (shard >= h->geo.shards)
		return -EINVAL;
	if ((rc = shard_lock_until(h, shard, busy_deadline(h), 0)) < 0)
		return rc;
	struct snap_ctx sc = {fn, arg, 0, 0};
	index_foreach(h, shard, snap_visit, &sc);
	/* Under the lock: no record is being appended. */
	if (next_seq)
		*next_seq = oplog_at(h, shard)->seq;
	shard_unlock(h, shard);
	return sc.stop ? sc.stop : sc.n;
}

uint32_t remote_session_next(shmg_t *h)
{
	if (handle_check(h))
		return 0;
	uint32_t s = __atomic_add_fetch(&h->hdr->agent_session, 1, __ATOMIC_ACQ_REL);
	return s ? s : __atomic_add_fetch(&h->hdr->agent_session, 1, __ATOMIC_ACQ_REL);
}

void remote_held(shmg_t *h, uint32_t node, uint64_t *inc, uint64_t *cursors)
{
	int slot = handle_check(h) ? -1 : node_slot(h, node, false);
	uint64_t held = slot >= 0 ? load_relaxed(&h->hdr->nodes[slot].inc) : 0;
	for (uint32_t s = 0; held && s < h->geo.shards; s++)
		if (load_relaxed(&shard_node_cursors(h, s)[slot]) == CURSOR_DIRTY)
			held = 0; /* a resync was cut short: trust nothing */
	for (uint32_t s = 0; cursors && s < h->geo.shards; s++)
		cursors[s] = held ? load_relaxed(&shard_node_cursors(h, s)[slot]) : 0;
	if (inc)
		*inc = held;
}

int remote_node_up(shmg_t *h, uint32_t node, bool up)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	if (!node || node == h->node)
		return -EINVAL;
	int slot = node_slot(h, node, up);
	if (slot < 0)
		return up ? -ENOSPC : 0;
	store_release(&h->hdr->nodes[slot].up, up ? 1u : 0u); /* pairs with shmg_nodes' acquire */
	return 0;
}

void remote_nodes_down(shmg_t *h)
{
	if (handle_check(h))
		return;
	for (uint32_t i = 0; i < MAX_NODES; i++)
		store_relaxed(&h->hdr->nodes[i].up, 0);
	clear_marks(h, 0);
}

/* ---- named clusters ---------------------------------------------------- */

/* Named cluster `cluster`: 1 with its ref if connected here, 0 if not,
 * -EINVAL for no name or a bad one. */
static int named_ref(shmg_t *h, const char *cluster, uint32_t *ref)
{
	uint64_t seed;
	int rc = cluster ? cluster_resolve(h, cluster, ref, &seed) : -EINVAL;
	return rc == -ENOTCONN ? 0 : rc < 0 ? rc : 1;
}

struct cluster_of {
	uint32_t node; /* 0: every other node */
	uint32_t ref;
};

static bool of_node_in_cluster(const shmg_t *h, const struct entry *e, const void *arg)
{
	const struct cluster_of *c = arg;
	return e->cluster == c->ref && e->node != h->node && (!c->node || e->node == c->node);
}

long remote_purge_cluster(shmg_t *h, uint32_t node, const char *cluster, int reason)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	if (node == h->node || reason < SHMG_REASON_NORMAL || reason > SHMG_REASON_RESYNC)
		return -EINVAL;
	struct cluster_of c = {node, 0};
	if ((rc = named_ref(h, cluster, &c.ref)) <= 0)
		return rc; /* not connected: nothing of it is held here */
	/* The ref names the connection resolved, generation and all: if it is
	 * gone and its slot connected again by now, the new connection's
	 * entries carry another ref and stay. */
	TEST_POINT("remote:cluster-resolved");
	return remove_everywhere(h, of_node_in_cluster, &c, reason, -1);
}

int remote_node_cluster(shmg_t *h, uint32_t node, const char *cluster, bool connected)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	if (!node || node == h->node)
		return -EINVAL;
	uint32_t ref;
	if ((rc = named_ref(h, cluster, &ref)) <= 0)
		return rc;
	TEST_POINT("remote:cluster-resolved");
	/* The marks word belongs to the slot, not to the connection: it is
	 * changed under cluster_lock, and only if the slot still holds the
	 * connection resolved (a disconnect and a connect reusing the slot
	 * take that lock too). */
	if ((rc = cluster_lock(h, busy_deadline(h))) < 0)
		return rc;
	bool same = cluster_ref_valid(h, ref);
	int i = same ? node_slot(h, node, connected) : -1;
	if (i >= 0) {
		uint64_t *marks = &cluster_at(h, cluster_slot_of(ref))->node_marks;
		/* Pairs with shmg_nodes' acquire. */
		if (connected)
			__atomic_or_fetch(marks, 1ull << i, __ATOMIC_RELEASE);
		else
			__atomic_and_fetch(marks, ~(1ull << i), __ATOMIC_RELEASE);
	}
	cluster_unlock(h);
	return same && i < 0 && connected ? -ENOSPC : 0;
}

/* ---- conflicts ------------------------------------------------------- */

/* The loser's last record: the registration it lost and who won it. */
static void conflict_record(shmg_t *h, uint32_t slot, uint32_t gen, const struct keyref *k,
			    const char *cluster, const struct remote_change *w)
{
	size_t clen = cluster ? strlen(cluster) : 0;
	struct mailbox_record r = {
		.type = SHMG_EV_CONFLICT,
		.reason = SHMG_REASON_CONFLICT,
		.cluster_len = (uint8_t)clen,
		.key_len = (uint16_t)k->len,
		.meta_len = (uint32_t)w->meta_len,
		.node = w->id.node,
		.ep_slot = w->id.slot,
		.ep_gen = w->id.gen,
		.pid = w->pid,
		.time_ns = w->time_ns,
	};
	r.size = (uint32_t)((sizeof(r) + clen + k->len + w->meta_len + 7) & ~7ull);
	struct mb_batch *one = &h->single;
	one->len = one->count = 0;
	if (mb_batch_add(one, &r, cluster, k->key, w->meta, NULL) == 0)
		(void)mailbox_deliver(h, slot, gen, one);
}

int remote_conflict_evict(shmg_t *h, const char *cluster, const char *key, size_t key_len,
			  shmg_id_t loser, const struct remote_change *winner, int32_t *loser_pid)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	if (!winner || loser.node != h->node || loser.slot >= h->geo.max_endpoints || !loser.gen ||
	    (winner->meta_len && !winner->meta) || meta_check(h, winner->meta, winner->meta_len))
		return -EINVAL;
	struct keyref k;
	struct shmg_opts o = {.cluster = cluster && *cluster ? cluster : NULL};
	if ((rc = key_prepare(h, key, key_len, &o, KEY_WRITE, &k)))
		return rc == -ENOTCONN ? -ENOENT : rc;
	struct endpoint_slot *ep = endpoint_at(h, loser.slot);
	if ((rc = shard_lock_until(h, k.shard, busy_deadline(h), 0)) < 0)
		return rc;
	struct entry *e = cluster_ref_valid(h, k.cluster) ? index_find(h, &k, K_REG, NULL) : NULL;
	shmg_id_t held = e ? (shmg_id_t){e->node, e->ep_slot, e->ep_gen} : (shmg_id_t){0, 0, 0};
	bool holds = e && shmg_id_equal(held, loser) && load_relaxed(&ep->gen) == loser.gen;
	int32_t pid = load_relaxed(&ep->pid); /* before its owner can close and free the slot */
	/* Under the lock of the key it holds: the record first, then
	 * `terminated`, from which on its owner's writes are refused
	 * (shard_lock), so none can slip behind the removal.  An eviction
	 * retried after ours was cut short finds `terminated` set and its
	 * record sent; whoever reaps finishes the removal (endpoint.c). */
	if (holds && load_relaxed(&ep->terminated) != REASON_CONFLICT) {
		char clbuf[SHMG_CLUSTER_NAME_MAX + 1];
		conflict_record(h, loser.slot, loser.gen, &k, cluster_name_of(h, k.cluster, clbuf),
				winner);
		store_release(&ep->terminated, (uint32_t)REASON_CONFLICT);
	}
	shard_unlock(h, k.shard);
	if (!holds)
		return -ENOENT;
	TEST_POINT("evict:terminated");
	if ((rc = endpoint_terminate(h, loser.slot, loser.gen)) < 0)
		return rc;
	sg_log(h, SHMG_LOG_INFO, "endpoint n%u.%u.%u (pid %d) lost a registry conflict to n%u.%u.%u",
	       loser.node, loser.slot, loser.gen, pid, winner->id.node, winner->id.slot,
	       winner->id.gen);
	if (loser_pid)
		*loser_pid = pid;
	return 0;
}

/* ---- one registration replaced by another node's ------------------------- */

/* The swap under the lock: the winner's block is filled unreachable and
 * published by one store of the index slot.  Both events go to each monitor
 * as one batch, under one in-flight record naming the two entries, so that
 * a repair after a crash delivers the pair from the monitor it stopped at. */
static int swap_locked(shmg_t *h, const struct keyref *k, shmg_id_t loser, int reason,
		       const struct remote_change *w)
{
	uint32_t pos;
	struct entry *old = index_find(h, k, K_REG, &pos);
	if (!old || !same_endpoint(old, &loser))
		return -ENOENT;
	const struct author a = {w->id.node, w->id.slot, w->id.gen, w->pid, w->time_ns};
	h->author = &a;
	ref_t ref;
	struct entry *e = entry_new(h, k->shard, K_REG, k, w->meta, w->meta_len, &ref);
	h->author = NULL;
	if (!e)
		return -ENOSPC;
	TEST_POINT("replace:allocated");
	inflight_set(h, k->shard, INFLIGHT_SWAP, ref, ref_of(h, old), (uint32_t)reason);
	index_replace_slot(h, k->shard, pos, ref);
	TEST_POINT("replace:published");
	/* Counted as a removal and an addition, neither logged (other nodes'). */
	oplog_append(h, k->shard, OP_UNREGISTER, (uint8_t)reason, old, k->key, k->len);
	oplog_append(h, k->shard, OP_REGISTER, REASON_NONE, e, k->key, k->len);
	shard_count(h, k->shard, old, -1);
	shard_count(h, k->shard, e, +1);
	shard_event_swap(h, k->shard, old, (uint8_t)reason, e);
	TEST_POINT("replace:told");
	inflight_clear(h, k->shard);
	epoch_retire(h, k->shard, ref_of(h, old), LIMBO_BLOCK);
	return 0;
}

int remote_replace(shmg_t *h, shmg_id_t loser, int reason, uint64_t inc,
		   const struct remote_change *winner)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	if (!winner || winner->op != REMOTE_REGISTER || !loser.node || loser.node == h->node ||
	    loser.node == winner->id.node || reason < SHMG_REASON_NORMAL ||
	    reason > SHMG_REASON_RESYNC)
		return -EINVAL;
	struct keyref k;
	struct shmg_opts o = {.cluster = winner->cluster && *winner->cluster ? winner->cluster : NULL};
	if ((rc = key_prepare(h, winner->key, winner->key_len, &o, KEY_WRITE, &k)))
		return rc;
	uint32_t node = winner->id.node;
	int slot = batch_check(h, node, inc, k.shard, winner, 1);
	if (slot < 0)
		return slot;
	if ((rc = change_prepare(h, node, k.shard, winner, &k)))
		return rc;
	/* With room for the loser's retirement, as for any write. */
	if ((rc = shard_lock_until(h, k.shard, busy_deadline(h), WRITE_RETIRES_MAX)) < 0)
		return rc;
	rc = cluster_ref_valid(h, k.cluster) ? swap_locked(h, &k, loser, reason, winner) : -ENOTCONN;
	shard_unlock(h, k.shard);
	return rc;
}

/* ---- the loser's process ------------------------------------------------ */

int remote_signal_endpoint(shmg_t *h, shmg_id_t id, int sig)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	if (id.node != h->node || id.slot >= h->geo.max_endpoints || !id.gen || sig <= 0 ||
	    sig > SIGRTMAX)
		return -EINVAL;
	const struct endpoint_slot *ep = endpoint_at(h, id.slot);
	uint32_t gen = load_acquire(&ep->gen);
	int32_t pid = load_relaxed(&ep->pid);
	uint64_t start = load_relaxed(&ep->start_time);
	if (gen != id.gen || load_acquire(&ep->state) == EP_FREE || pid <= 0 || !start)
		return -ESRCH;
	/* The pidfd pins one process; its start time, read after opening it,
	 * says whether that is still the endpoint's (a pid is reused, a start
	 * time with it is not), and the slot read again whether the endpoint
	 * is still the one named. */
	int fd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
	if (fd < 0)
		return -ESRCH;
	uint64_t now_start = 0;
	if (proc_start_time((pid_t)pid, &now_start) < 0 || now_start != start ||
	    load_acquire(&ep->gen) != id.gen) {
		close(fd);
		return -ESRCH;
	}
	rc = (int)syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0) < 0 ? -errno : 0;
	close(fd);
	return rc;
}
