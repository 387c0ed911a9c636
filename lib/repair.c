/* SPDX-License-Identifier: MIT */
/*
 * Repair of a shard whose writer died holding its lock (EOWNERDEAD), or whose
 * last repair did not complete (shard_header.repair_pending).
 *
 * There is no intent log.  Every write publishes with single stores, so what
 * readers can reach — the index table, the group lists, the limbo ring — is
 * always a valid state; everything else a shard keeps is derived from it and
 * is rebuilt here.  Repair never waits for readers: one that entered its
 * section before the writer died may still hold a block the writer had
 * unlinked, so a block or table that is neither reachable, nor queued, nor
 * already free is queued in limbo (epoch_defer) instead of being freed.
 *   0. limbo: items naming no block or extent of the shard, the current table
 *      or an extent queued twice are dropped (kind 0, skipped by reclaim);
 *   1. lists: each group list is cut at its first invalid link or where it
 *      runs into a cycle, prev links and member counts are rewritten; index
 *      slots naming no sane entry are cleared; heads without members go;
 *      then each prefix node's list keeps only its sound, indexed children
 *      (prefix_repair_lists), so nothing but the index reaches a block;
 *   2. the event of the write the dead writer had in flight is delivered, if
 *      its change took effect (before any block is rewritten);
 *   3. per window of the shard's slab pages: mark what is indexed, listed or
 *      queued (a duplicate slot is cleared, a limbo item naming a reachable
 *      or twice-queued block is dropped); drop an indexed membership on no
 *      list (a join that had not become visible, or a leave that had); then
 *      rebuild each page: its free list becomes the blocks that were free and
 *      are unmarked, and a block that is unmarked but was not free (unlinked,
 *      or allocated and not yet published, by the dead writer) is queued;
 *   4. listed memberships missing from the index are re-indexed, in a pass of
 *      their own so that no resize happens under an iteration of the index;
 *   5. extents: the current table and queued ones stay; another table of the
 *      shard (half built, or replaced and not yet retired) is queued; tail
 *      pages of no extent go back to the pool;
 *   6. the prefix tree is completed (prefix_repair_links): indexed heads and
 *      nodes on no list are linked under their parent prefix, empty nodes
 *      pruned (blocks can be allocated again by now);
 *   7. entries and per-cluster/per-endpoint counters are recounted, and the
 *      change log's consumer is told that a record may be missing.
 * Killed during repair, the next locker runs it again from the start (the
 * mutex is owner-dead again, and repair_pending is still set): every step is
 * idempotent.  A repair that fails leaves repair_pending set, so the next
 * locker retries.  If the limbo ring is full, a block that should be queued
 * stays allocated — a leak, never a free under a reader — and repair_pending
 * says REPAIR_LEAKED: the shard is usable and is repaired again once the ring
 * has room.
 *
 * What repair reads is as untrusted as what a reader reads, and a process may
 * scribble on it while the repair runs.  So every entry is taken from one
 * checked copy of its header (scan_entry: a sane kind, lengths within the
 * limits and the block's size class), links only through links_of() on that
 * copy, and a page's size class from one read of its descriptor; the limbo
 * cursors are read once and clamped to a ring's worth, and every list walk
 * stops after as many steps as the shard has blocks.  Repair writes only
 * through such checked addresses: a damaged arena costs a wrong repair,
 * never a write off a block, a page or the mapping.
 *
 * Memory: the marks are bitmaps over a window of the shard's slab pages, one
 * allocation of at most WINDOW_MAX pages' worth (1.5 MiB), or a window of
 * WINDOW_STACK pages on the stack if that fails: repair cannot fail for want
 * of memory, a large shard only takes more passes.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "scan.h"

bool (*sg_test_fail)(const char *point);

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
	sc->tree = calloc(words, 8);
	sc->extent_keep = calloc(h->geo.npages, 1);
	if (!sc->live || !sc->listed || !sc->indexed || !sc->retired || !sc->tree ||
	    !sc->extent_keep) {
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
	free(sc->tree);
	free(sc->extent_keep);
	memset(sc, 0, sizeof(*sc));
}

int64_t scan_block(shmg_t *h, const struct scan *sc, ref_t ref)
{
	uint32_t page, idx, cls;
	if (!ref || !alloc_block_valid(h, sc->shard, ref, &page, &idx, &cls))
		return -1;
	return (int64_t)page * SCAN_BLOCKS_PER_PAGE + idx;
}

struct entry *scan_entry(shmg_t *h, const struct scan *sc, ref_t ref, struct entry *hd, int64_t *b)
{
	uint32_t page, idx, cls;
	if (!ref || !alloc_block_valid(h, sc->shard, ref, &page, &idx, &cls))
		return NULL;
	const struct entry *e = entry_read(h, ref, hd);
	if (!e || hd->kind < K_REG || hd->kind > K_PREFIX || hd->key_len > h->geo.key_max ||
	    hd->meta_len > h->geo.meta_max ||
	    entry_size(hd->kind, hd->key_len, hd->meta_len) > alloc_class_size(cls) ||
	    ((hd->kind == K_REG || hd->kind == K_GROUP || hd->kind == K_PREFIX) && hd->key_len == 0))
		return NULL;
	if (b)
		*b = (int64_t)page * SCAN_BLOCKS_PER_PAGE + idx;
	return (struct entry *)e;
}

uint32_t scan_table_page(const shmg_t *h, uint32_t shard)
{
	uint64_t off = load_relaxed(&shard_at(h, shard)->table_off);
	if (off < h->geo.off_pages || !arena_span_ok(h, off, 1))
		return UINT32_MAX;
	return (uint32_t)((off - h->geo.off_pages) >> PAGE_SHIFT);
}

/* ---- state of one repair --------------------------------------------- */

#define PAGE_WORDS (SCAN_BLOCKS_PER_PAGE / 64)
#define WINDOW_MAX 4096u
#define WINDOW_STACK 8u

struct page_marks {
	uint64_t indexed[PAGE_WORDS]; /* referenced by an index slot */
	uint64_t listed[PAGE_WORDS];  /* on a group list */
	uint64_t retired[PAGE_WORDS]; /* queued in limbo */
	uint32_t cls;                 /* the page's size class when the window was made */
};

struct repair {
	struct scan sc; /* only .shard: for scan_block */
	uint32_t shard;
	uint32_t npages, cap; /* the window: pages[0..npages), ascending */
	uint32_t *pages;
	struct page_marks *marks; /* one per window page */
	uint32_t partial[NCLASSES]; /* heads of the rebuilt slab lists (page + 1) */
	uint64_t max_list;          /* no sound list is longer: the shard's blocks */
	bool leaked;              /* a block or table could not be queued */
	bool relist;              /* a listed membership is not indexed */
	int err;
};

/* Queues what a reader may still hold; if the ring is full it stays
 * allocated until a later repair (REPAIR_LEAKED). */
static void defer(shmg_t *h, struct repair *r, uint32_t ref, uint32_t kind)
{
	if (epoch_defer(h, r->shard, ref, kind) < 0)
		r->leaked = true;
}

/* The marks of block b (a scan_block result) if its page is in the window. */
static struct page_marks *window_find(const struct repair *r, int64_t b, uint32_t *idx)
{
	if (b < 0)
		return NULL;
	uint32_t page = (uint32_t)(b / SCAN_BLOCKS_PER_PAGE), lo = 0, hi = r->npages;
	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;
		if (r->pages[mid] < page)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == r->npages || r->pages[lo] != page)
		return NULL;
	*idx = (uint32_t)(b % SCAN_BLOCKS_PER_PAGE);
	return &r->marks[lo];
}

/* The size class of a slab page of shard whose descriptor word is w, or
 * NCLASSES if it is no such page. */
static uint32_t slab_class(uint32_t w, uint32_t shard)
{
	return PG_OWNER(w) == shard + 1 && PG_KIND(w) == PG_SLAB && PG_CLASS(w) < NCLASSES
		       ? PG_CLASS(w)
		       : NCLASSES;
}

static uint32_t page_word(const shmg_t *h, uint32_t page)
{
	return load_relaxed(&page_desc_at(h, page)->word);
}

/* Runs pass over the shard's slab pages, window by window.  Each page's
 * class is the one read here: sizes in the pass come from it. */
static void for_each_window(shmg_t *h, struct repair *r, void (*pass)(shmg_t *, struct repair *))
{
	for (uint32_t p = 0; p < h->geo.npages;) {
		r->npages = 0;
		for (; p < h->geo.npages && r->npages < r->cap; p++) {
			uint32_t cls = slab_class(page_word(h, p), r->shard);
			/* A descriptor naming a page past the object's end is
			 * damage: its page is never read. */
			if (cls == NCLASSES || !page_backed(h, p))
				continue;
			r->marks[r->npages] = (struct page_marks){.cls = cls};
			r->pages[r->npages++] = p;
		}
		if (r->npages)
			pass(h, r);
	}
}

/* ---- step 0: the limbo ring ------------------------------------------ */

static bool extent_head_of(const shmg_t *h, uint32_t shard, uint32_t page)
{
	if (page >= h->geo.npages)
		return false;
	uint32_t w = page_word(h, page);
	return PG_OWNER(w) == shard + 1 && PG_KIND(w) == PG_EXTENT;
}

/* The queue [*tail, head) from one read of each cursor, at most a ring's
 * worth whatever the cursors say.  Returns head. */
static uint32_t limbo_span(const shmg_t *h, uint32_t shard, uint32_t *tail)
{
	const struct shard_header *sh = shard_at(h, shard);
	uint32_t head = load_relaxed(&sh->limbo_head), t = load_relaxed(&sh->limbo_tail);
	*tail = head - t > LIMBO_CAP ? head - LIMBO_CAP : t;
	return head;
}

/* Is extent page queued in limbo at an index in [from, to) (a limbo_span)? */
static bool extent_queued(shmg_t *h, uint32_t shard, uint32_t page, uint32_t from, uint32_t to)
{
	const struct limbo_item *ring = shard_limbo(h, shard);
	for (uint32_t i = from; i != to; i++) {
		const struct limbo_item *it = &ring[i % LIMBO_CAP];
		if (load_relaxed(&it->kind) == LIMBO_EXTENT && load_relaxed(&it->ref) == page)
			return true;
	}
	return false;
}

static void check_limbo(shmg_t *h, struct repair *r)
{
	struct limbo_item *ring = shard_limbo(h, r->shard);
	uint32_t tail, head = limbo_span(h, r->shard, &tail);
	store_relaxed(&shard_at(h, r->shard)->limbo_tail, tail);
	uint32_t table = scan_table_page(h, r->shard);
	for (uint32_t i = tail; i != head; i++) {
		struct limbo_item *it = &ring[i % LIMBO_CAP];
		uint32_t kind = load_relaxed(&it->kind), ref = load_relaxed(&it->ref);
		bool ok = false;
		if (kind == LIMBO_BLOCK)
			ok = scan_block(h, &r->sc, ref) >= 0;
		else if (kind == LIMBO_EXTENT)
			ok = ref != table && extent_head_of(h, r->shard, ref) &&
			     !extent_queued(h, r->shard, ref, tail, i);
		if (!ok)
			store_relaxed(&it->kind, 0);
	}
}

/* ---- step 1: lists and slots ----------------------------------------- */

/* The entry at ref if it is a sane member of the list of head href; *hd its
 * checked header copy. */
static struct entry *member_of(shmg_t *h, const struct repair *r, ref_t ref, uint8_t mkind,
			       ref_t href, struct entry *hd)
{
	struct entry *m = scan_entry(h, &r->sc, ref, hd, NULL);
	return m && hd->kind == mkind && load_relaxed(&links_of(m, hd)->aux) == href ? m : NULL;
}

static ref_t next_member(shmg_t *h, const struct repair *r, ref_t ref, uint8_t mkind, ref_t href)
{
	struct entry hd;
	struct entry *m = member_of(h, r, ref, mkind, href, &hd);
	return m ? load_relaxed(&links_of(m, &hd)->next) : 0;
}

/* Cuts the list starting at first where it runs back into itself (only a
 * damaged arena has a cycle): Brent's algorithm finds the cycle's length,
 * then its first node, in constant memory.  Links that change under the
 * walk may never close a cycle, so each phase gives up after max_list steps
 * (fix_list then cuts the list at that length). */
static void cut_cycle(shmg_t *h, const struct repair *r, ref_t href, ref_t first, uint8_t mkind)
{
	ref_t slow = first, fast = next_member(h, r, first, mkind, href);
	uint64_t power = 1, len = 1;
	while (fast && fast != slow) {
		if (len > r->max_list)
			return;
		if (power == len) {
			slow = fast;
			power *= 2;
			len = 0;
		}
		fast = next_member(h, r, fast, mkind, href);
		len++;
	}
	if (!fast)
		return; /* it ends */
	ref_t a = first, b = first;
	for (uint64_t i = 0; i < len; i++)
		b = next_member(h, r, b, mkind, href);
	for (uint64_t i = 0; a != b; i++) {
		if (i > r->max_list)
			return;
		a = next_member(h, r, a, mkind, href);
		b = next_member(h, r, b, mkind, href);
	}
	ref_t last = a; /* the cycle starts at a: cut the link that returns to it */
	for (uint64_t i = 1; i < len; i++)
		last = next_member(h, r, last, mkind, href);
	struct entry hd;
	struct entry *m = member_of(h, r, last, mkind, href, &hd);
	if (m && load_relaxed(&links_of(m, &hd)->next) == a)
		store_release(&links_of(m, &hd)->next, 0);
}

/* head is a list head, hhd its checked header copy. */
static void fix_list(shmg_t *h, const struct repair *r, struct entry *head, const struct entry *hhd)
{
	uint8_t mkind = hhd->kind == K_MONHEAD ? K_MONITOR : K_MEMBER;
	ref_t href = ref_of(h, head), prev = 0;
	struct entry_links *hl = links_of(head, hhd);
	cut_cycle(h, r, href, load_relaxed(&hl->next), mkind);
	uint32_t *link = &hl->next, n = 0, local = 0;
	for (ref_t ref = load_relaxed(link); ref; ref = load_relaxed(link)) {
		struct entry mhd;
		struct entry *m = n < r->max_list ? member_of(h, r, ref, mkind, href, &mhd) : NULL;
		if (!m) {
			store_release(link, 0);
			break;
		}
		struct entry_links *ml = links_of(m, &mhd);
		ml->prev = prev;
		prev = ref;
		link = &ml->next;
		n++;
		local += mhd.node == h->node;
	}
	store_relaxed(&hl->aux, n);
	if (hhd->kind == K_GROUP) /* (a monitor head's word is its seed) */
		store_relaxed(&hl->tree.local, local);
}

static int fix_slot(shmg_t *h, struct entry *blk, uint32_t pos, void *arg)
{
	struct repair *r = arg;
	struct entry hd;
	ref_t ref = ref_of(h, blk);
	struct entry *e = scan_entry(h, &r->sc, ref, &hd, NULL);
	if (!e) {
		index_clear_slot(h, r->shard, pos);
		return 0;
	}
	if (entry_solo(&hd)) {
		/* Its own one member: no list. */
		struct entry_links *l = links_of(e, &hd);
		store_relaxed(&l->next, 0);
		store_relaxed(&l->aux, 1);
		store_relaxed(&l->tree.local, hd.node == h->node);
	} else if (hd.kind == K_GROUP || hd.kind == K_MONHEAD) {
		fix_list(h, r, e, &hd);
		if (!load_relaxed(&links_of(e, &hd)->next)) {
			index_clear_slot(h, r->shard, pos);
			defer(h, r, ref, LIMBO_BLOCK);
		}
	}
	return 0;
}

/* ---- step 2: the write in flight ------------------------------------- */

static int is_entry(shmg_t *h, const struct entry *m, const struct entry *mhd, void *arg)
{
	(void)h;
	(void)mhd;
	return m == arg;
}

/* Did the change of e (hd: its checked header copy) take effect: is it
 * indexed (registration) or on its group's list (membership)?  Lists are
 * sound after step 1, and list_walk is bounded even if they are not. */
static bool inflight_visible(shmg_t *h, const struct repair *r, const struct entry *e,
			     const struct entry *hd)
{
	struct entry khd = *hd;
	const struct entry *keyholder = e;
	if (hd->kind == K_MEMBER)
		keyholder = scan_entry(h, &r->sc, load_relaxed(&links_of(e, hd)->aux), &khd, NULL);
	uint8_t kind = hd->kind == K_MEMBER || entry_solo(hd) ? K_GROUP : K_REG;
	if (!keyholder || khd.kind != kind)
		return false;
	struct keyref k = {entry_key(keyholder), khd.key_len, khd.cluster,
			   entry_hash(h, keyholder), r->shard, 0};
	if (index_find(h, &k, kind, NULL) != keyholder)
		return false;
	return kind == K_REG || entry_solo(hd) || list_walk(h, keyholder, &khd, is_entry, (void *)e);
}

/* The event of the write in flight, if its change took effect, to the
 * monitors the dead writer had not reached yet (it recorded its progress
 * after each one; only the one it was appending to when it died can get the
 * event twice). */
static void finish_inflight(shmg_t *h, struct repair *r)
{
	struct shard_header *sh = shard_at(h, r->shard);
	uint32_t op = load_relaxed(&sh->inflight_op);
	struct entry hd, ohd;
	const struct entry *e =
		op ? scan_entry(h, &r->sc, load_relaxed(&sh->inflight_ref), &hd, NULL) : NULL;
	if (e) {
		bool in = inflight_visible(h, r, e, &hd);
		bool member = entry_role(&hd) == K_MEMBER;
		uint8_t added = member ? SHMG_EV_JOINED : SHMG_EV_REGISTERED;
		uint8_t removed = member ? SHMG_EV_LEFT : SHMG_EV_UNREGISTERED;
		const struct entry *old = NULL;
		if (op == INFLIGHT_REPLACE || op == INFLIGHT_SWAP)
			old = scan_entry(h, &r->sc, load_relaxed(&sh->inflight_old), &ohd, NULL);
		struct event_mode mode = events_single(h);
		/* Where the dead writer stopped. */
		h->deliver_from = load_relaxed(&sh->inflight_done);
		if (op == INFLIGHT_SWAP && in && old)
			shard_event_swap(h, r->shard, old,
					 (uint8_t)load_relaxed(&sh->inflight_reason), e);
		else if ((op == INFLIGHT_ADD || op == INFLIGHT_REPLACE || op == INFLIGHT_SWAP) && in)
			shard_event(h, r->shard, added, REASON_NONE, e, old);
		else if (op == INFLIGHT_REMOVE && !in)
			shard_event(h, r->shard, removed,
				    (uint8_t)load_relaxed(&sh->inflight_reason), e, NULL);
		events_restore(h, mode);
	}
	sh->inflight_op = INFLIGHT_NONE;
}

/* ---- step 3: marks and pages, window by window ----------------------- */

/* The marks of the block at ref if it is the shard's and its page is in the
 * window; *i its index there. */
static struct page_marks *marks_of(shmg_t *h, const struct repair *r, ref_t ref, uint32_t *i)
{
	return window_find(r, scan_block(h, &r->sc, ref), i);
}

static int mark_listed(shmg_t *h, const struct entry *m, const struct entry *mhd, void *arg)
{
	uint32_t i;
	(void)mhd;
	struct page_marks *pm = marks_of(h, arg, ref_of(h, m), &i);
	if (pm)
		bm_set(pm->listed, i);
	return 0;
}

static int mark_reachable(shmg_t *h, struct entry *blk, uint32_t pos, void *arg)
{
	struct repair *r = arg;
	ref_t ref = ref_of(h, blk);
	uint32_t i;
	struct page_marks *pm = marks_of(h, r, ref, &i);
	if (pm && bm_test(pm->indexed, i))
		index_clear_slot(h, r->shard, pos); /* the same block in two slots */
	else if (pm)
		bm_set(pm->indexed, i);
	struct entry hd;
	const struct entry *e = entry_read(h, ref, &hd);
	if (e)
		list_walk(h, e, &hd, mark_listed, r); /* nothing unless it is a head */
	return 0;
}

static void mark_limbo(shmg_t *h, struct repair *r)
{
	struct limbo_item *ring = shard_limbo(h, r->shard);
	uint32_t tail, head = limbo_span(h, r->shard, &tail);
	for (uint32_t n = tail; n != head; n++) {
		struct limbo_item *it = &ring[n % LIMBO_CAP];
		uint32_t i;
		struct page_marks *pm = load_relaxed(&it->kind) == LIMBO_BLOCK
						? marks_of(h, r, load_relaxed(&it->ref), &i)
						: NULL;
		if (!pm)
			continue;
		/* Reachable or queued twice: reclaim must not free it. */
		if (bm_test(pm->indexed, i) || bm_test(pm->listed, i) || bm_test(pm->retired, i))
			store_relaxed(&it->kind, 0);
		else
			bm_set(pm->retired, i);
	}
}

static int drop_unlisted(shmg_t *h, struct entry *blk, uint32_t pos, void *arg)
{
	struct repair *r = arg;
	ref_t ref = ref_of(h, blk);
	uint32_t i;
	struct page_marks *pm = marks_of(h, r, ref, &i);
	struct entry hd;
	if (pm && entry_read(h, ref, &hd) && (hd.kind == K_MEMBER || hd.kind == K_MONITOR) &&
	    !bm_test(pm->listed, i)) {
		index_clear_slot(h, r->shard, pos);
		defer(h, r, ref, LIMBO_BLOCK);
		bm_set(pm->retired, i);
	}
	return 0;
}

static void rebuild_page(shmg_t *h, struct repair *r, uint32_t page, struct page_marks *pm)
{
	struct page_desc *d = page_desc_at(h, page);
	uint32_t cls = pm->cls, size = alloc_class_size(cls);
	uint32_t n = PAGE_SIZE / size, used = 0, free_head = 0;
	uint8_t *base = page_at(h, page);
	/* What was free: the free list up to a bad or repeated link, and the
	 * blocks never handed out. */
	uint64_t was_free[PAGE_WORDS] = {0};
	for (uint32_t f = load_relaxed(&d->free_head); f && f <= n && !bm_test(was_free, f - 1);) {
		bm_set(was_free, f - 1);
		memcpy(&f, base + (uint64_t)(f - 1) * size, sizeof(f));
	}
	for (uint32_t i = load_relaxed(&d->bump); i < n; i++)
		bm_set(was_free, i);
	for (uint32_t i = n; i-- > 0;) {
		if (bm_test(pm->indexed, i) || bm_test(pm->listed, i) || bm_test(pm->retired, i)) {
			used++;
			continue;
		}
		if (!bm_test(was_free, i)) {
			/* Unreachable yet handed out: the dead writer unlinked it (a
			 * reader may still hold it) or had not published it yet. */
			defer(h, r, ref_of(h, base + (uint64_t)i * size), LIMBO_BLOCK);
			bm_set(pm->retired, i);
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
		alloc_release_page(h, page); /* every block was free: nobody holds one */
		return;
	}
	if (free_head) {
		/* Linked from the private list heads, never from what the shard
		 * header says now. */
		uint32_t next = r->partial[cls];
		d->next = next;
		if (next)
			page_desc_at(h, next - 1)->prev = page + 1;
		r->partial[cls] = page + 1;
		shard_at(h, r->shard)->partial[cls] = page + 1;
	}
}

static void mark_and_rebuild(shmg_t *h, struct repair *r)
{
	index_foreach(h, r->shard, mark_reachable, r);
	mark_limbo(h, r);
	index_foreach(h, r->shard, drop_unlisted, r);
	for (uint32_t w = 0; w < r->npages; w++) {
		struct page_marks *pm = &r->marks[w];
		for (uint32_t i = 0; i < PAGE_WORDS; i++)
			if (pm->listed[i] & ~pm->indexed[i])
				r->relist = true;
		rebuild_page(h, r, r->pages[w], pm);
	}
}

/* ---- step 4: re-index listed memberships ----------------------------- */

static void relist_window(shmg_t *h, struct repair *r)
{
	index_foreach(h, r->shard, mark_reachable, r);
	/* Inserted only now that the walk is over: an insert may resize the
	 * table and retire the one the walk was on. */
	for (uint32_t w = 0; w < r->npages; w++) {
		struct page_marks *pm = &r->marks[w];
		uint32_t size = alloc_class_size(pm->cls);
		for (uint32_t i = 0; i < PAGE_SIZE / size; i++) {
			if (!bm_test(pm->listed, i) || bm_test(pm->indexed, i))
				continue;
			struct entry *m =
				(struct entry *)(page_at(h, r->pages[w]) + (uint64_t)i * size);
			if (index_insert(h, r->shard, entry_hash(h, m), ref_of(h, m)) < 0)
				r->err = -ENOSPC;
		}
	}
}

/* ---- step 5: extents ------------------------------------------------- */

static void repair_extents(shmg_t *h, struct repair *r)
{
	uint32_t table = scan_table_page(h, r->shard), tail = PG_WORD(r->shard + 1, PG_EXTENT_TAIL, 0);
	uint32_t from, to = limbo_span(h, r->shard, &from);
	for (uint32_t p = 0; p < h->geo.npages; p++) {
		uint32_t w = page_word(h, p);
		if (PG_OWNER(w) != r->shard + 1 || slab_class(w, r->shard) < NCLASSES)
			continue;
		if (PG_KIND(w) != PG_EXTENT) {
			alloc_release_page(h, p); /* part of no extent: never seen by a reader */
			continue;
		}
		if (p != table && !extent_queued(h, r->shard, p, from, to))
			defer(h, r, p, LIMBO_EXTENT); /* readers may still be on this table */
		/* Its tail pages go with it. */
		uint32_t n = load_relaxed(&page_desc_at(h, p)->used);
		while (n-- > 1 && p + 1 < h->geo.npages && page_word(h, p + 1) == tail)
			p++;
	}
}

/* ---- step 6 and the whole -------------------------------------------- */

static int recount_visit(shmg_t *h, struct entry *blk, uint32_t pos, void *arg)
{
	uint32_t shard = *(uint32_t *)arg;
	struct entry hd;
	(void)pos;
	if (!entry_read(h, ref_of(h, blk), &hd))
		return 0;
	shard_at(h, shard)->nentries++;
	/* The copy is counted: the counter it indexes is the one checked. */
	shard_count(h, shard, &hd, +1);
	return 0;
}

static void repair_recount(shmg_t *h, uint32_t shard)
{
	struct shard_header *sh = shard_at(h, shard);
	memset(shard_counts(h, shard), 0, (size_t)h->geo.max_clusters * sizeof(struct cluster_counts));
	memset(shard_ep_entries(h, shard), 0, (size_t)h->geo.max_endpoints * sizeof(uint32_t));
	memset(shard_ep_kinds(h, shard), 0,
	       (size_t)h->geo.max_endpoints * sizeof(struct ep_kind_counts));
	sh->nentries = 0;
	sh->monitors = 0;
	index_foreach(h, shard, recount_visit, &shard);
}

int repair_shard(shmg_t *h, uint32_t shard)
{
	struct shard_header *sh = shard_at(h, shard);
	if (TEST_FAIL("repair:fail"))
		return -EIO;
	oplog_mark_reset(h, shard);
	if (!index_table(h, shard))
		return -EIO;
	struct repair r = {.sc = {.shard = shard}, .shard = shard};
	uint32_t owned = 0;
	for (uint32_t p = 0; p < h->geo.npages; p++)
		owned += slab_class(page_word(h, p), shard) < NCLASSES;
	uint32_t want = owned < WINDOW_MAX ? owned : WINDOW_MAX;
	void *buf = want > WINDOW_STACK ? malloc(want * (sizeof(struct page_marks) + sizeof(uint32_t)))
					: NULL;
	struct page_marks stack_marks[WINDOW_STACK];
	uint32_t stack_pages[WINDOW_STACK];
	r.cap = buf ? want : WINDOW_STACK;
	r.marks = buf ? buf : stack_marks;
	r.pages = buf ? (uint32_t *)(r.marks + want) : stack_pages;
	r.max_list = (uint64_t)owned * SCAN_BLOCKS_PER_PAGE;

	check_limbo(h, &r);
	index_foreach(h, shard, fix_slot, &r);
	if (prefix_repair_lists(h, shard, r.max_list) < 0)
		r.err = -ENOMEM;
	finish_inflight(h, &r);
	memset(sh->partial, 0, sizeof(sh->partial));
	for_each_window(h, &r, mark_and_rebuild);
	if (r.relist)
		for_each_window(h, &r, relist_window);
	repair_extents(h, &r);
	if (!r.err && prefix_repair_links(h, shard, r.max_list) < 0)
		r.err = -ENOMEM;
	repair_recount(h, shard);
	free(buf);
	if (r.err)
		return r.err;
	sh->repair_pending = r.leaked ? REPAIR_LEAKED : REPAIR_NONE;
	epoch_reclaim(h, shard); /* what no reader holds can go now */
	return 0;
}

int repair_if_pending(shmg_t *h, uint32_t shard)
{
	struct shard_header *sh = shard_at(h, shard);
	/* Blocks held for want of room in the ring: nothing to gain until the
	 * ring has drained, and the shard is usable meanwhile. */
	if (sh->repair_pending == REPAIR_LEAKED && sh->limbo_head - sh->limbo_tail > LIMBO_CAP / 2)
		return 0;
	int rc = repair_shard(h, shard);
	sh->repairs++;
	__atomic_add_fetch(&h->hdr->shard_repairs, 1, __ATOMIC_RELAXED);
	sg_log(h, SHMG_LOG_INFO, "shard %u repaired (last writer: endpoint %u): %s", shard,
	       sh->owner_slot,
	       rc < 0 ? shmg_strerror(rc) : sh->repair_pending ? "blocks held, limbo full" : "ok");
	return rc < 0 ? -EIO : 0;
}
