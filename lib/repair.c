/* SPDX-License-Identifier: MIT */
/*
 * Repair of a shard whose writer died holding its lock (EOWNERDEAD).
 *
 * There is no intent log.  Every write publishes with single stores, so what
 * readers can reach — the index table, the group lists, the limbo ring — is
 * always a valid state; everything else a shard keeps is derived from it and
 * is rebuilt here:
 *   1. a grace period, so no reader still holds a block that the dead writer
 *      unlinked before it died;
 *   2. mark: every block reachable from the table or a group list, and every
 *      block or extent queued in limbo (invalid refs are cut off: a slot is
 *      cleared, a list is truncated);
 *   3. rebuild the allocator: each slab page's free list becomes exactly its
 *      unmarked blocks, empty pages and unreferenced extents (a half-built or
 *      already-replaced table) go back to the pool;
 *   4. finish or undo interrupted group operations: a membership in the index
 *      but not on its list is dropped (a join that had not become visible, or
 *      a leave that had), a listed one missing from the index is re-indexed,
 *      a head without members goes; blocks unlinked here are retired, not
 *      freed, since readers may have reached them after step 1;
 *   5. recount entries and per-cluster/per-endpoint counters;
 *   6. tell the change log's consumer that a record may be missing;
 *   7. deliver the event of the write the dead writer had in flight, if its
 *      change took effect (done between steps 2 and 3, while the blocks it
 *      names are still intact).
 * Killed during repair, the mutex is still marked owner-dead (consistent is
 * called after repair) and the next locker runs it again from the start:
 * every step is idempotent.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "scan.h"

static bool bm_test(const uint64_t *bm, uint64_t i)
{
	return bm[i / 64] >> (i % 64) & 1;
}

static void bm_set(uint64_t *bm, uint64_t i)
{
	bm[i / 64] |= 1ull << (i % 64);
}

bool scan_test(const uint64_t *bm, uint64_t i)
{
	return bm_test(bm, i);
}

int scan_init(shmg_t *h, uint32_t shard, struct scan *sc)
{
	memset(sc, 0, sizeof(*sc));
	sc->shard = shard;
	sc->nbits = (uint64_t)h->geo.npages * SCAN_BLOCKS_PER_PAGE;
	size_t words = (size_t)(sc->nbits + 63) / 64;
	sc->live = calloc(words, 8);
	sc->listed = calloc(words, 8);
	sc->indexed = calloc(words, 8);
	sc->retired = calloc(words, 8);
	sc->extent_keep = calloc(h->geo.npages, 1);
	if (!sc->live || !sc->listed || !sc->indexed || !sc->retired || !sc->extent_keep) {
		scan_free(sc);
		return -ENOMEM;
	}
	return 0;
}

void scan_free(struct scan *sc)
{
	free(sc->live);
	free(sc->listed);
	free(sc->indexed);
	free(sc->retired);
	free(sc->extent_keep);
	memset(sc, 0, sizeof(*sc));
}

/* Block index of ref within the bitmaps, or -1 if ref is not one of the
 * shard's blocks or its contents do not describe a sane entry. */
int64_t scan_block(shmg_t *h, const struct scan *sc, ref_t ref, bool check_entry)
{
	uint32_t page, idx, cls;
	if (!ref || !alloc_block_valid(h, sc->shard, ref, &page, &idx, &cls))
		return -1;
	if (check_entry) {
		struct entry *e = entry_at(h, ref);
		if (!e || e->kind < K_REG || e->kind > K_MONITOR || e->key_len > h->geo.key_max ||
		    e->meta_len > h->geo.meta_max ||
		    entry_size(e->kind, e->key_len, e->meta_len) > alloc_class_size(cls) ||
		    ((e->kind == K_REG || e->kind == K_GROUP) && e->key_len == 0))
			return -1;
	}
	return (int64_t)page * SCAN_BLOCKS_PER_PAGE + idx;
}

uint32_t scan_table_page(const shmg_t *h, uint32_t shard)
{
	uint64_t off = load_relaxed(&shard_at(h, shard)->table_off);
	if (off < h->geo.off_pages || off >= h->size)
		return UINT32_MAX;
	return (uint32_t)((off - h->geo.off_pages) >> PAGE_SHIFT);
}

static int mark_slot(shmg_t *h, struct entry *e, uint32_t pos, void *arg)
{
	struct scan *sc = arg;
	int64_t b = scan_block(h, sc, ref_of(h, e), true);
	if (b < 0 || bm_test(sc->indexed, (uint64_t)b)) {
		index_clear_slot(h, sc->shard, pos); /* invalid, or a duplicate ref */
		return 0;
	}
	bm_set(sc->indexed, (uint64_t)b);
	bm_set(sc->live, (uint64_t)b);
	return 0;
}

/* Walks one group's list, truncating it at the first invalid link and
 * rewriting prev links and the member count. */
static void mark_list(shmg_t *h, struct scan *sc, struct entry *head)
{
	uint8_t mkind = head->kind == K_MONHEAD ? K_MONITOR : K_MEMBER;
	ref_t href = ref_of(h, head), prev = 0;
	uint32_t *link = &L(head)->next, n = 0;
	for (ref_t r = *link; r; r = *link) {
		int64_t b = scan_block(h, sc, r, true);
		struct entry *m = b >= 0 ? entry_at(h, r) : NULL;
		if (!m || m->kind != mkind || L(m)->aux != href || bm_test(sc->listed, (uint64_t)b)) {
			store_release(link, 0);
			break;
		}
		bm_set(sc->listed, (uint64_t)b);
		bm_set(sc->live, (uint64_t)b);
		L(m)->prev = prev;
		prev = r;
		link = &L(m)->next;
		n++;
	}
	L(head)->aux = n;
}

static int mark_lists(shmg_t *h, struct entry *e, uint32_t pos, void *arg)
{
	(void)pos;
	if (e->kind == K_GROUP || e->kind == K_MONHEAD)
		mark_list(h, arg, e);
	return 0;
}

static void mark_extent(shmg_t *h, struct scan *sc, uint32_t page)
{
	if (page >= h->geo.npages)
		return;
	uint32_t w = load_relaxed(&page_desc_at(h, page)->word);
	if (PG_OWNER(w) != sc->shard + 1 || PG_KIND(w) != PG_EXTENT)
		return;
	uint32_t n = page_desc_at(h, page)->used;
	for (uint32_t i = 0; i < n && page + i < h->geo.npages; i++)
		sc->extent_keep[page + i] = 1;
}

static void mark_limbo(shmg_t *h, struct scan *sc)
{
	struct shard_header *sh = shard_at(h, sc->shard);
	struct limbo_item *ring = shard_limbo(h, sc->shard);
	if (sh->limbo_head - sh->limbo_tail > LIMBO_CAP)
		sh->limbo_tail = sh->limbo_head - LIMBO_CAP;
	for (uint32_t i = sh->limbo_tail; i != sh->limbo_head; i++) {
		struct limbo_item *it = &ring[i % LIMBO_CAP];
		if (it->kind == LIMBO_EXTENT && it->ref != scan_table_page(h, sc->shard)) {
			mark_extent(h, sc, it->ref);
			continue;
		}
		int64_t b = it->kind == LIMBO_BLOCK ? scan_block(h, sc, it->ref, false) : -1;
		if (b < 0 || bm_test(sc->live, (uint64_t)b) || bm_test(sc->retired, (uint64_t)b)) {
			it->kind = 0; /* invalid, reachable or queued twice: drop the item */
			continue;
		}
		bm_set(sc->retired, (uint64_t)b);
	}
}

/* Step 7: the event of the write in flight, if its change took effect, to
 * the monitors the dead writer had not reached yet (it recorded its progress
 * after each one; only the one it was appending to when it died can get the
 * event twice). */
static void finish_inflight(shmg_t *h, struct scan *sc)
{
	struct shard_header *sh = shard_at(h, sc->shard);
	uint32_t op = sh->inflight_op;
	int64_t b = op ? scan_block(h, sc, sh->inflight_ref, true) : -1;
	if (b >= 0) {
		const struct entry *e = entry_at(h, sh->inflight_ref);
		bool in = e->kind == K_MEMBER ? bm_test(sc->listed, (uint64_t)b)
					      : bm_test(sc->indexed, (uint64_t)b);
		uint8_t added = e->kind == K_MEMBER ? SHMG_EV_JOINED : SHMG_EV_REGISTERED;
		uint8_t removed = e->kind == K_MEMBER ? SHMG_EV_LEFT : SHMG_EV_UNREGISTERED;
		const struct entry *old = NULL;
		if (op == INFLIGHT_REPLACE && scan_block(h, sc, sh->inflight_old, true) >= 0)
			old = entry_at(h, sh->inflight_old);
		/* The repairer may be building a batch of its own: keep them apart. */
		bool batching = h->batching, suppress = h->suppress_events;
		h->batching = h->suppress_events = false;
		h->deliver_from = sh->inflight_done; /* where the dead writer stopped */
		if ((op == INFLIGHT_ADD || op == INFLIGHT_REPLACE) && in)
			shard_event(h, sc->shard, added, REASON_NONE, e, old);
		else if (op == INFLIGHT_REMOVE && !in)
			shard_event(h, sc->shard, removed, (uint8_t)sh->inflight_reason, e, NULL);
		h->deliver_from = 0;
		h->batching = batching;
		h->suppress_events = suppress;
	}
	sh->inflight_op = INFLIGHT_NONE;
}

static void rebuild_slab(shmg_t *h, struct scan *sc, uint32_t page)
{
	struct page_desc *d = page_desc_at(h, page);
	uint32_t cls = PG_CLASS(d->word), size = alloc_class_size(cls);
	uint32_t n = PAGE_SIZE / size, used = 0, free_head = 0;
	uint8_t *base = page_at(h, page);
	for (uint32_t i = n; i-- > 0;) {
		uint64_t b = (uint64_t)page * SCAN_BLOCKS_PER_PAGE + i;
		if (bm_test(sc->live, b) || bm_test(sc->retired, b)) {
			used++;
			continue;
		}
		memcpy(base + (uint64_t)i * size, &free_head, sizeof(free_head));
		free_head = i + 1;
	}
	d->used = used;
	d->free_head = free_head;
	d->bump = n;
	d->next = d->prev = 0;
	if (!used) {
		alloc_release_page(h, page);
		return;
	}
	if (free_head) {
		struct shard_header *sh = shard_at(h, sc->shard);
		d->next = sh->partial[cls];
		if (d->next)
			page_desc_at(h, d->next - 1)->prev = page + 1;
		sh->partial[cls] = page + 1;
	}
}

static void rebuild_allocator(shmg_t *h, struct scan *sc)
{
	struct shard_header *sh = shard_at(h, sc->shard);
	memset(sh->partial, 0, sizeof(sh->partial));
	mark_extent(h, sc, scan_table_page(h, sc->shard));
	for (uint32_t p = 0; p < h->geo.npages; p++) {
		uint32_t w = load_relaxed(&page_desc_at(h, p)->word);
		if (PG_OWNER(w) != sc->shard + 1)
			continue;
		if (PG_KIND(w) == PG_SLAB && PG_CLASS(w) < NCLASSES)
			rebuild_slab(h, sc, p);
		else if (!sc->extent_keep[p])
			alloc_release_page(h, p); /* orphaned table page */
	}
}

static int fix_members(shmg_t *h, struct entry *e, uint32_t pos, void *arg)
{
	struct scan *sc = arg;
	int64_t b = scan_block(h, sc, ref_of(h, e), false);
	if (b < 0)
		return 0;
	bool member = e->kind == K_MEMBER || e->kind == K_MONITOR;
	bool head = e->kind == K_GROUP || e->kind == K_MONHEAD;
	if ((member && !bm_test(sc->listed, (uint64_t)b)) || (head && L(e)->next == 0)) {
		index_clear_slot(h, sc->shard, pos);
		epoch_retire(h, sc->shard, ref_of(h, e), LIMBO_BLOCK);
	}
	return 0;
}

static int relist_visit(shmg_t *h, struct entry *e, uint32_t pos, void *arg)
{
	(void)pos;
	struct scan *sc = arg;
	if (e->kind != K_GROUP && e->kind != K_MONHEAD)
		return 0;
	for (ref_t r = L(e)->next; r;) {
		struct entry *m = entry_at(h, r);
		int64_t b = scan_block(h, sc, r, false);
		if (!m || b < 0)
			break;
		if (!bm_test(sc->indexed, (uint64_t)b) && index_insert(h, sc->shard, entry_hash(h, m), r) == 0)
			bm_set(sc->indexed, (uint64_t)b);
		r = L(m)->next;
	}
	return 0;
}

static int recount_visit(shmg_t *h, struct entry *e, uint32_t pos, void *arg)
{
	(void)pos;
	shard_at(h, *(uint32_t *)arg)->nentries++;
	shard_count(h, *(uint32_t *)arg, e, +1);
	return 0;
}

void repair_recount(shmg_t *h, uint32_t shard)
{
	struct shard_header *sh = shard_at(h, shard);
	memset(shard_counts(h, shard), 0, (size_t)h->geo.max_clusters * sizeof(struct cluster_counts));
	memset(shard_ep_entries(h, shard), 0, (size_t)h->geo.max_endpoints * sizeof(uint32_t));
	sh->nentries = 0;
	sh->monitors = 0;
	index_foreach(h, shard, recount_visit, &shard);
}

int repair_shard(shmg_t *h, uint32_t shard)
{
	oplog_mark_reset(h, shard);
	epoch_synchronize(h);
	if (!index_table(h, shard))
		return -EIO;
	struct scan sc;
	int rc = scan_init(h, shard, &sc);
	if (rc < 0)
		return rc;
	index_foreach(h, shard, mark_slot, &sc);
	index_foreach(h, shard, mark_lists, &sc);
	mark_limbo(h, &sc);
	finish_inflight(h, &sc);
	rebuild_allocator(h, &sc);
	index_foreach(h, shard, fix_members, &sc);
	index_foreach(h, shard, relist_visit, &sc);
	repair_recount(h, shard);
	scan_free(&sc);
	return 0;
}
