/* SPDX-License-Identifier: MIT */
/*
 * A shard's writer side: its robust lock, the steps shared by every kind of
 * write (making an entry block, counting, removing a registration or a
 * membership) and the order in which they touch shared memory.
 *
 * Lock order across the library: endpoint_lock or cluster_lock, then one
 * shard lock (the removal of a whole endpoint takes several, in ascending
 * order), then pool_lock.
 *
 * A stopped holder (SIGSTOP, a debugger) is not dead: the kernel never hands
 * its lock on.  So a shard lock is waited for only until a deadline, the
 * handle's busy budget (busy_attempts x busy_interval_ms), and then the
 * caller gets -EBUSY having changed nothing.  The same deadline bounds the
 * wait for room in the limbo ring, which a stopped reader can hold full;
 * that room is made right after locking, before any change, for the most a
 * write retires (WRITE_RETIRES_MAX), so that a write never has to wait for
 * readers half way.  Bulk removals make room entry by entry.
 *
 * Each removal is: announce it in flight -> unpublish (one release store of a
 * slot or list link) -> log it -> count it -> deliver its event -> withdraw
 * the announcement -> retire the block; an addition is the same with publish
 * in place of unpublish.  A writer killed between any two of these leaves a
 * state repair_shard turns back into a consistent one: counts are
 * recomputed, an unretired block is reclaimed, a lost log record is signalled
 * to the log's consumer by oplog_mark_reset, and the event of a change that
 * took effect is delivered by the repairer (at most once more to a monitor
 * that got it just before the writer died), so monitors never keep an entry
 * that is gone nor miss one that appeared.
 *
 * The removal of a whole endpoint (death, close) is done the other way round:
 * the batch of events is delivered first, then the entries removed with
 * events suppressed.  The entries are already hidden from readers (live_gen)
 * and writers are locked out, so nobody can see the events ahead of the
 * change.  An endpoint's slot records how far the delivery got (batch_done)
 * and that its batch went out (EPF_EVENTS_SENT), so a remover killed half way
 * leaves the rest to the next one, which neither repeats nor skips a target.
 * A cluster's entries (disconnect) are removed one by one as above.
 *
 * shard_lock: a holder that died leaves the mutex owner-dead; the next locker
 * sets repair_pending, makes the mutex consistent, and repairs while the mark
 * is set (repair.c).  Then a shard whose swept counter lags hdr->disconnects
 * is swept (cluster.c).
 */
#include <string.h>

#include "internal.h"

int shard_lock_until(shmg_t *h, uint32_t shard, uint64_t deadline_ns, uint32_t room)
{
	struct shard_header *sh = shard_at(h, shard);
	/* A trylock first, so that a wait is known (and counted below, once the
	 * lock is ours) without costing the uncontended path anything. */
	int rc = pthread_mutex_trylock(&sh->lock);
	bool waited = rc == EBUSY;
	if (waited)
		rc = robust_lock_until(&sh->lock, deadline_ns, h->busy_interval_ms * 1000000ull);
	if (unlikely(rc == EOWNERDEAD)) {
		/* The holder died inside its critical section.  The shard is marked
		 * for repair before the mutex is made usable again (unlocking it
		 * while inconsistent would make it unusable for good): a repair that
		 * fails or is killed leaves the mark, and the next locker repairs. */
		sh->repair_pending = REPAIR_NEEDED;
		pthread_mutex_consistent(&sh->lock);
	} else if (unlikely(rc)) {
		/* A holder that is stopped, not dead: leave it the shard. */
		return rc == ETIMEDOUT ? -EBUSY : rc == ENOTRECOVERABLE ? -EIO : -rc;
	}
	if (unlikely(sh->repair_pending) && (rc = repair_if_pending(h, shard)) < 0) {
		pthread_mutex_unlock(&sh->lock);
		return rc;
	}
	sh->owner_slot = h->slot;
	sh->owner_gen = h->gen;
	if (waited)
		store_relaxed(&sh->lock_waits, sh->lock_waits + 1); /* shmg_shard_stats reads it */
	/* A disconnect requested a sweep that has not reached this shard.  One
	 * left unfinished (limbo full past the deadline) stays lagging: the next
	 * locker goes on with it. */
	if (unlikely(load_relaxed(&sh->swept) != load_acquire(&h->hdr->disconnects)))
		cluster_sweep_shard(h, shard, deadline_ns);
	if (room && (rc = epoch_make_room(h, shard, room, deadline_ns)) < 0) {
		pthread_mutex_unlock(&sh->lock);
		return rc;
	}
	return 0;
}

int shard_lock(shmg_t *h, uint32_t shard)
{
	int rc = shard_lock_until(h, shard, busy_deadline(h), WRITE_RETIRES_MAX);
	/* Checked under the lock: remote_conflict_evict sets it under the lock
	 * of the key it found held and then sweeps every shard, so a write
	 * either comes before that sweep (which removes it) or is refused. */
	if (rc == 0 && unlikely(load_acquire(&h->ep->terminated))) {
		shard_unlock(h, shard);
		return -ECONNABORTED;
	}
	return rc;
}

void shard_unlock(shmg_t *h, uint32_t shard)
{
	pthread_mutex_unlock(&shard_at(h, shard)->lock);
}

bool entry_live(const shmg_t *h, const struct entry *e)
{
	if (e->node != h->node)
		return true; /* remote entries live and die by replication */
	/* One load of the slot: the index checked is the index used. */
	return endpoint_visible(h, load_relaxed(&e->ep_slot), e->ep_gen);
}

void shard_count(shmg_t *h, uint32_t shard, const struct entry *e, int delta)
{
	uint32_t cs = cluster_slot_of(e->cluster);
	bool local = e->node == h->node;
	uint8_t role = entry_role(e);
	if (cs < h->geo.max_clusters) {
		struct cluster_counts *c = &shard_counts(h, shard)[cs];
		if (role == K_REG) {
			store_relaxed(&c->registered, c->registered + (uint32_t)delta);
			if (local)
				store_relaxed(&c->registered_local, c->registered_local + (uint32_t)delta);
		} else if (role == K_MEMBER) {
			store_relaxed(&c->members, c->members + (uint32_t)delta);
			if (local)
				store_relaxed(&c->members_local, c->members_local + (uint32_t)delta);
		}
	}
	if (e->kind == K_MONITOR)
		store_relaxed(&shard_at(h, shard)->monitors, shard_at(h, shard)->monitors + (uint32_t)delta);
	if (local && (role == K_REG || role == K_MEMBER || role == K_MONITOR) &&
	    e->ep_slot < h->geo.max_endpoints) {
		uint32_t *n = &shard_ep_entries(h, shard)[e->ep_slot];
		struct ep_kind_counts *k = &shard_ep_kinds(h, shard)[e->ep_slot];
		store_relaxed(n, *n + (uint32_t)delta);
		if (e->kind == K_REG)
			store_relaxed(&k->registered, k->registered + (uint32_t)delta);
		else if (e->kind == K_MONITOR)
			store_relaxed(&k->monitors, k->monitors + (uint32_t)delta);
	}
}

struct entry *entry_new(shmg_t *h, uint32_t shard, uint8_t kind, const struct keyref *k,
			const void *meta, size_t meta_len, ref_t *ref_out)
{
	size_t key_len = kind == K_MEMBER || kind == K_MONITOR ? 0 : k->len;
	ref_t ref = alloc_block(h, shard, (uint32_t)entry_size(kind, (uint32_t)key_len, (uint32_t)meta_len));
	if (!ref)
		return NULL;
	struct entry *e = (struct entry *)(h->base + ((uint64_t)ref << REF_SHIFT));
	*e = (struct entry){
		.cluster = k->cluster,
		.node = h->node,
		.ep_gen = h->gen,
		.ep_slot = (uint16_t)h->slot,
		.key_len = (uint16_t)key_len,
		.kind = kind,
		.meta_len = (uint16_t)meta_len,
		.pid = h->ep->pid,
		.time_ns = now_realtime_ns(),
	};
	const struct author *a = h->author;
	if (a) {
		e->node = a->node;
		e->ep_slot = (uint16_t)a->slot;
		e->ep_gen = a->gen;
		e->pid = a->pid;
		e->time_ns = a->time_ns ? a->time_ns : e->time_ns;
	}
	memcpy((uint8_t *)(e + 1), k->key, key_len);
	if (meta_len)
		memcpy((uint8_t *)(e + 1) + key_len, meta, meta_len);
	if (kind_has_links(kind))
		*L(e) = (struct entry_links){.seed = kind == K_MONHEAD ? k->seed : 0};
	*ref_out = ref;
	return e;
}

void inflight_set(shmg_t *h, uint32_t shard, uint32_t op, ref_t ref, ref_t old, uint32_t reason)
{
	struct shard_header *sh = shard_at(h, shard);
	if (h->suppress_events)
		return; /* its event went out with a batch already */
	sh->inflight_ref = ref;
	sh->inflight_old = old;
	sh->inflight_reason = reason;
	sh->inflight_done = 0;
	sh->inflight_op = op;
}

void inflight_clear(shmg_t *h, uint32_t shard)
{
	shard_at(h, shard)->inflight_op = INFLIGHT_NONE;
}

void shard_event(shmg_t *h, uint32_t shard, uint8_t type, uint8_t reason, const struct entry *e,
		 const struct entry *prev)
{
	if (h->suppress_events || (entry_role(e) != K_REG && entry_role(e) != K_MEMBER))
		return;
	struct entry khd;
	const struct entry *keyholder =
		entry_read(h, e->kind == K_MEMBER ? links_at(h, e)->aux : ref_of(h, e), &khd);
	if (!keyholder)
		return;
	/* Outside a batch, record how far delivery got, target by target, so
	 * that a repair after our death resumes there instead of repeating. */
	if (!h->batching)
		h->progress_word = &shard_at(h, shard)->inflight_done;
	events_emit(h, type, reason, e, entry_key(keyholder), khd.key_len, prev);
	h->progress_word = NULL;
}

void shard_event_swap(shmg_t *h, uint32_t shard, const struct entry *gone, uint8_t reason,
		      const struct entry *came)
{
	if (h->suppress_events)
		return;
	h->progress_word = &shard_at(h, shard)->inflight_done;
	events_emit_swap(h, gone, reason, came);
	h->progress_word = NULL;
}

/* Logs the removal of e, whose key is keyholder's, with the key length of
 * one checked read of keyholder's header. */
static void log_removal(shmg_t *h, uint32_t shard, uint8_t op, int reason, const struct entry *e,
			const struct entry *keyholder)
{
	struct entry khd;
	if (entry_read(h, ref_of(h, keyholder), &khd))
		oplog_append(h, shard, op, (uint8_t)reason, e, entry_key(keyholder), khd.key_len);
	else
		oplog_mark_reset(h, shard);
}

void shard_remove_reg(shmg_t *h, uint32_t shard, struct entry *e, uint32_t pos, int reason)
{
	bool solo = entry_solo(e);
	inflight_set(h, shard, INFLIGHT_REMOVE, ref_of(h, e), 0, (uint32_t)reason);
	if (solo)
		prefix_unlink_head(h, shard, e);
	index_clear_slot(h, shard, pos);
	TEST_POINT(solo ? "leave:unlinked" : "unregister:unlinked");
	shard_count(h, shard, e, -1);
	shard_event(h, shard, solo ? SHMG_EV_LEFT : SHMG_EV_UNREGISTERED, (uint8_t)reason, e, NULL);
	log_removal(h, shard, solo ? OP_LEAVE : OP_UNREGISTER, reason, e, e);
	inflight_clear(h, shard);
	epoch_retire(h, shard, ref_of(h, e), LIMBO_BLOCK);
}

/* Unlinks m from its group's list (one release store makes it unreachable
 * from the head; prev links are for writers only). */
static void list_unlink(shmg_t *h, struct entry *head, struct entry *m)
{
	struct entry_links *ml = links_at(h, m);
	ref_t pref = ml->prev, nref = ml->next;
	struct entry *prev = pref ? entry_at(h, pref) : NULL;
	struct entry *next = nref ? entry_at(h, nref) : NULL;
	if (prev)
		store_release(&links_at(h, prev)->next, nref);
	else
		store_release(&links_at(h, head)->next, nref);
	if (next)
		links_at(h, next)->prev = pref;
}

void shard_remove_member(shmg_t *h, uint32_t shard, struct entry *m, uint32_t pos, int reason)
{
	struct entry *head = entry_at(h, links_at(h, m)->aux);
	uint8_t head_kind = m->kind == K_MONITOR ? K_MONHEAD : K_GROUP;
	if (!head || head->kind != head_kind) {
		/* Only a damaged arena gets here; drop the index slot. */
		index_clear_slot(h, shard, pos);
		return;
	}
	if (m->kind == K_MEMBER)
		inflight_set(h, shard, INFLIGHT_REMOVE, ref_of(h, m), 0, (uint32_t)reason);
	list_unlink(h, head, m);
	TEST_POINT("leave:unlinked");
	index_clear_slot(h, shard, pos);
	struct entry_links *hl = links_at(h, head);
	store_relaxed(&hl->aux, hl->aux - 1);
	if (m->kind == K_MEMBER && m->node == h->node)
		store_relaxed(&hl->tree.local, hl->tree.local - 1);
	shard_count(h, shard, m, -1);
	shard_event(h, shard, SHMG_EV_LEFT, (uint8_t)reason, m, NULL);
	if (m->kind == K_MEMBER)
		log_removal(h, shard, OP_LEAVE, reason, m, head);
	inflight_clear(h, shard);
	epoch_retire(h, shard, ref_of(h, m), LIMBO_BLOCK);
	if (hl->aux == 0 && hl->next == 0)
		shard_drop_head(h, shard, head);
}

void shard_drop_head(shmg_t *h, uint32_t shard, struct entry *head)
{
	struct entry hhd;
	if (!entry_read(h, ref_of(h, head), &hhd))
		return;
	struct keyref k = {entry_key(head), hhd.key_len, hhd.cluster, entry_hash(h, head), shard, 0};
	uint32_t hpos;
	if (index_find(h, &k, hhd.kind, &hpos) != head)
		return;
	if (hhd.kind == K_GROUP)
		prefix_unlink_head(h, shard, head);
	index_clear_slot(h, shard, hpos);
	epoch_retire(h, shard, ref_of(h, head), LIMBO_BLOCK);
}

struct remove_ctx {
	entry_pred pred;
	const void *ctx;
	int reason;
	uint32_t shard;
	long removed;
	uint64_t deadline_ns;
};

static int remove_visit(shmg_t *h, struct entry *e, uint32_t pos, void *arg)
{
	struct remove_ctx *rc = arg;
	uint8_t role = entry_role(e);
	if (role == K_GROUP || role == K_MONHEAD || role == K_PREFIX || !rc->pred(h, e, rc->ctx))
		return 0;
	/* The entry and maybe its group head: room first, so that a reader
	 * holding the ring full stops the sweep between two entries. */
	if (epoch_make_room(h, rc->shard, 2, rc->deadline_ns) < 0) {
		rc->removed = -EBUSY;
		return 1;
	}
	if (role == K_REG || entry_solo(e))
		shard_remove_reg(h, rc->shard, e, pos, rc->reason);
	else
		shard_remove_member(h, rc->shard, e, pos, rc->reason);
	rc->removed++;
	return 0;
}

long shard_remove_matching(shmg_t *h, uint32_t shard, entry_pred pred, const void *ctx,
			   int reason, uint64_t deadline_ns)
{
	struct remove_ctx rc = {pred, ctx, reason, shard, 0, deadline_ns};
	index_foreach(h, shard, remove_visit, &rc);
	return rc.removed;
}

struct emit_ctx {
	entry_pred pred;
	const void *ctx;
	uint8_t kind;
	int reason;
	uint32_t shard;
};

static int emit_visit(shmg_t *h, struct entry *e, uint32_t pos, void *arg)
{
	(void)pos;
	struct emit_ctx *c = arg;
	if (entry_role(e) == c->kind && c->pred(h, e, c->ctx))
		shard_event(h, c->shard, e->kind == K_REG ? SHMG_EV_UNREGISTERED : SHMG_EV_LEFT,
			    (uint8_t)c->reason, e, NULL);
	return 0;
}

void shard_emit_matching(shmg_t *h, uint32_t shard, entry_pred pred, const void *ctx,
			 uint8_t kind, int reason)
{
	struct emit_ctx c = {pred, ctx, kind, reason, shard};
	index_foreach(h, shard, emit_visit, &c);
}
