/* SPDX-License-Identifier: MIT */
/*
 * Memory for entries and index tables: 64 KiB pages, owned one shard at a time.
 *
 * The page pool (pool_lock) hands whole pages to shards and takes them back;
 * a page's owner, kind and size class are one word of its page_desc, written
 * with a single store under the pool lock, so the pool has no state that a
 * crash can leave half-written (pages_used is recounted on EOWNERDEAD).
 *
 * Growth.  The pool hands out pages [0, pages_avail).  When no run of free
 * pages is found there, pool_grow grows the object (ftruncate, sparse) to
 * twice its pages or what the claim needs, up to the npages that arena_max
 * holds, and only then publishes the new pages_avail: a page is never
 * handed out before the object holds it, so whoever is given a ref into it
 * finds it there (other processes' bounds follow by fstat: arena_span_ok).
 * The pool itself goes by what the object holds (pool_pages), so a
 * scribbled pages_avail is put right, never trusted.  Killed after the
 * ftruncate, before publishing: the next claim finds the object bigger and
 * publishes it; killed holding the lock: EOWNERDEAD recounts pages_used.
 * Readers never take the pool lock, so a grower that is stopped stops only
 * writers that need a page (-EBUSY after lock_wait_limit_ms).
 *
 * Inside a shard (under its lock) a page is either a slab of equal blocks of
 * one size class — with its own free list threaded through free blocks, a bump
 * index for never-used blocks, and membership in the shard's partial list for
 * its class — or part of an extent (contiguous pages for an index table).
 * Lock order: shard lock, then pool lock.
 *
 * Crash windows.  Everything a shard keeps here (free lists, used counts,
 * partial lists, orphaned pages of a half-claimed extent) is derivable from
 * what is reachable from the shard's index and limbo ring; repair_shard
 * rebuilds it all, so a writer killed at any step leaks nothing for longer
 * than the next lock acquisition.
 */
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

/* 16-byte steps from 48 to 192 bytes, then 224 and 256: a registration
 * (32-byte header, key, metadata) is rarely more than 15 bytes short of its
 * block, where 64-byte steps left 40 on average (a 22-30-byte key with 16
 * bytes of metadata took a 128-byte block for 70-78 bytes).  16 is the unit
 * of an entry ref, so every block stays addressable; a block may now
 * straddle two cache lines, which the lookup covers by asking for both at
 * once (probe.h).  Above 256 bytes, four classes per power of two as before. */
static const uint16_t class_sizes[] = {
	CLASS_MIN_BYTES, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
	320,   384,   448,   512,   640,   768,   896,   1024,  1280,  1536,  1792,  2048,
	2560,  3072,  3584,  4096,  5120,  6144,  7168,  8192,  10240, 12288, 14336, 16384,
	20480, 24576, 28672, 32768,
};
static_assert(sizeof(class_sizes) / sizeof(class_sizes[0]) == NCLASSES, "one size per class");
static_assert(CLASS_MIN_BYTES % (1u << REF_SHIFT) == 0 && CLASS_MIN_BYTES >= sizeof(struct entry) + 1,
	      "the smallest block holds an entry and is addressable by a ref");

uint32_t alloc_class_size(uint32_t cls)
{
	return cls < NCLASSES ? class_sizes[cls] : 0;
}

uint32_t alloc_class_of(uint32_t bytes)
{
	uint32_t lo = 0, hi = NCLASSES;
	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;
		if (class_sizes[mid] < bytes)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static uint32_t blocks_per_page(uint32_t cls)
{
	return PAGE_SIZE / class_sizes[cls];
}

int pool_lock(shmg_t *h)
{
	int rc = robust_lock_limited(h, &h->hdr->pool_lock, "page pool");
	if (rc == EOWNERDEAD) {
		uint32_t used = 0;
		for (uint32_t p = 0; p < h->geo.npages; p++)
			used += load_relaxed(&page_desc_at(h, p)->word) != 0;
		h->hdr->pages_used = used;
		/* pool_pages puts pages_avail right at the next claim. */
		pthread_mutex_consistent(&h->hdr->pool_lock);
		sg_log(h, SHMG_LOG_INFO, "page pool lock recovered after its holder died");
		rc = 0;
	}
	return -rc;
}

void pool_unlock(shmg_t *h)
{
	pthread_mutex_unlock(&h->hdr->pool_lock);
}

/* Under the pool lock: the pages the pool may hand out, those the object
 * holds.  pages_avail only says when to look again (another process grew
 * it); a published count that differs from the object's is put right:
 * smaller, a grower died before publishing; larger, it was scribbled. */
static uint32_t pool_pages(shmg_t *h)
{
	uint32_t avail = load_relaxed(&h->hdr->pages_avail);
	uint32_t held = arena_pages_in(&h->geo, h->size);
	if (avail > held)
		held = arena_pages_in(&h->geo, arena_refresh(h));
	if (avail != held) {
		if (avail > held)
			sg_log(h, SHMG_LOG_INFO, "page pool: %u pages published, the arena holds %u",
			       avail, held);
		store_release(&h->hdr->pages_avail, held);
	}
	return held;
}

/* Under the pool lock: grows the object so that the pool has room for a
 * run of npages past its current `avail` pages.  Returns the new count of
 * pages, or avail when the arena is at its maximum or cannot grow. */
static uint32_t pool_grow(shmg_t *h, uint32_t avail, uint32_t npages)
{
	uint64_t want = (uint64_t)avail * 2 > (uint64_t)avail + npages ? (uint64_t)avail * 2
									: (uint64_t)avail + npages;
	uint32_t target = want < h->geo.npages ? (uint32_t)want : h->geo.npages;
	if (target - avail < npages)
		return avail; /* at arena_max: -ENOSPC */
	int rc = arena_grow_to(h, h->geo.off_pages + ((uint64_t)target << PAGE_SHIFT));
	if (rc < 0) {
		sg_log(h, SHMG_LOG_INFO, "page pool: cannot grow the arena to %u pages: %s", target,
		       shmg_strerror(rc));
		return avail;
	}
	TEST_POINT("grow:sized");
	store_release(&h->hdr->pages_avail, target);
	h->hdr->grows++;
	TEST_POINT("grow:published");
	return target;
}

/* Under the pool lock: the first of npages free pages in [0, total), + 1
 * (0 = none), from the hint on; runs do not wrap. */
static uint32_t pool_find(const shmg_t *h, uint32_t total, uint32_t npages)
{
	if (npages > total)
		return 0;
	uint32_t start = h->hdr->pool_hint % total;
	for (uint32_t scanned = 0, run = 0, p = start; scanned < total + npages; scanned++) {
		if (p == 0)
			run = 0;
		if (load_relaxed(&page_desc_at(h, p)->word) == 0) {
			if (++run == npages)
				return p - npages + 2;
		} else {
			run = 0;
		}
		p = (p + 1) % total;
	}
	return 0;
}

/* Claims npages contiguous free pages for shard, growing the arena if need
 * be; returns first + 1, or 0. */
static uint32_t pool_claim(shmg_t *h, uint32_t shard, uint32_t kind, uint32_t cls, uint32_t npages)
{
	if (!npages || npages > h->geo.npages || pool_lock(h) < 0)
		return 0;
	uint32_t total = pool_pages(h), found = pool_find(h, total, npages);
	if (!found) {
		uint32_t grown = pool_grow(h, total, npages);
		/* The new pages are free: a run that ends there is found too. */
		if (grown != total)
			found = pool_find(h, grown, npages);
	}
	if (found) {
		uint32_t first = found - 1;
		for (uint32_t i = npages; i-- > 1;)
			store_relaxed(&page_desc_at(h, first + i)->word,
				      PG_WORD(shard + 1, PG_EXTENT_TAIL, 0));
		struct page_desc *d = page_desc_at(h, first);
		memset(&d->used, 0, sizeof(*d) - sizeof(d->word));
		d->used = kind == PG_EXTENT ? npages : 0;
		store_release(&d->word, PG_WORD(shard + 1, kind, cls));
		h->hdr->pool_hint = first + npages;
		h->hdr->pages_used += npages;
	}
	pool_unlock(h);
	return found;
}

void alloc_release_page(shmg_t *h, uint32_t page)
{
	if (pool_lock(h) < 0)
		return;
	store_release(&page_desc_at(h, page)->word, 0);
	h->hdr->pages_used--;
	pool_unlock(h);
}

/* ---- slab partial lists (page index + 1 links) ---------------------- */

/* Page descriptors are shared data and may be damaged: a link is followed only
 * if it names a slab page of this shard and class. */
static bool slab_page_ok(const shmg_t *h, uint32_t shard, uint32_t cls, uint32_t page1)
{
	if (!page1 || page1 > h->geo.npages || !page_backed(h, page1 - 1))
		return false;
	uint32_t w = load_relaxed(&page_desc_at(h, page1 - 1)->word);
	return PG_OWNER(w) == shard + 1 && PG_KIND(w) == PG_SLAB && PG_CLASS(w) == cls;
}

static void partial_push(shmg_t *h, uint32_t shard, uint32_t cls, uint32_t page)
{
	struct shard_header *sh = shard_at(h, shard);
	struct page_desc *d = page_desc_at(h, page);
	d->prev = 0;
	d->next = slab_page_ok(h, shard, cls, sh->partial[cls]) ? sh->partial[cls] : 0;
	if (d->next)
		page_desc_at(h, d->next - 1)->prev = page + 1;
	sh->partial[cls] = page + 1;
}

static void partial_unlink(shmg_t *h, uint32_t shard, uint32_t cls, uint32_t page)
{
	struct shard_header *sh = shard_at(h, shard);
	struct page_desc *d = page_desc_at(h, page);
	if (slab_page_ok(h, shard, cls, d->prev))
		page_desc_at(h, d->prev - 1)->next = d->next;
	else if (sh->partial[cls] == page + 1)
		sh->partial[cls] = slab_page_ok(h, shard, cls, d->next) ? d->next : 0;
	if (slab_page_ok(h, shard, cls, d->next))
		page_desc_at(h, d->next - 1)->prev = d->prev;
	d->next = d->prev = 0;
}

static ref_t slab_take(shmg_t *h, uint32_t shard, uint32_t cls)
{
	struct shard_header *sh = shard_at(h, shard);
	uint32_t p1 = sh->partial[cls];
	if (!p1)
		return 0;
	if (!slab_page_ok(h, shard, cls, p1)) {
		/* Damaged list: forget it.  Its pages leak until a repair or
		 * shmg_check finds them; nothing is handed out twice. */
		sg_log(h, SHMG_LOG_INFO, "shard %u: damaged free list for class %u dropped", shard, cls);
		sh->partial[cls] = 0;
		return 0;
	}
	uint32_t page = p1 - 1;
	struct page_desc *d = page_desc_at(h, page);
	uint32_t size = class_sizes[cls], n = blocks_per_page(cls), idx;
	uint8_t *base = page_at(h, page);
	if (d->free_head > n || d->bump > n || (!d->free_head && d->bump >= n)) {
		partial_unlink(h, shard, cls, page);
		sh->partial[cls] = 0;
		return 0;
	}
	if (d->free_head) {
		idx = d->free_head - 1;
		uint32_t next;
		memcpy(&next, base + (uint64_t)idx * size, sizeof(next));
		d->free_head = next <= n ? next : 0;
	} else {
		idx = d->bump++;
	}
	d->used++;
	if (!d->free_head && d->bump >= n)
		partial_unlink(h, shard, cls, page);
	return ref_of(h, base + (uint64_t)idx * size);
}

ref_t alloc_block(shmg_t *h, uint32_t shard, uint32_t bytes)
{
	uint32_t cls = alloc_class_of(bytes);
	if (cls >= NCLASSES)
		return 0;
	ref_t r = slab_take(h, shard, cls);
	if (r)
		return r;
	/* Freeing retired blocks may refill this class without a new page. */
	if (epoch_reclaim(h, shard) && (r = slab_take(h, shard, cls)))
		return r;
	uint32_t p1 = pool_claim(h, shard, PG_SLAB, cls, 1);
	if (!p1)
		return 0;
	TEST_POINT("alloc:page");
	partial_push(h, shard, cls, p1 - 1);
	return slab_take(h, shard, cls);
}

/* Locates ref's slab page and block index; false if ref is not a block of a
 * slab page owned by shard. */
bool alloc_block_valid(const shmg_t *h, uint32_t shard, ref_t ref, uint32_t *page_out,
		       uint32_t *idx_out, uint32_t *cls_out)
{
	uint64_t off = (uint64_t)ref << REF_SHIFT;
	if (off < h->geo.off_pages)
		return false;
	uint64_t rel = off - h->geo.off_pages;
	if ((rel >> PAGE_SHIFT) >= h->geo.npages)
		return false;
	uint32_t page = (uint32_t)(rel >> PAGE_SHIFT);
	if (!page_backed(h, page))
		return false;
	uint32_t w = load_relaxed(&page_desc_at(h, page)->word);
	if (PG_OWNER(w) != shard + 1 || PG_KIND(w) != PG_SLAB || PG_CLASS(w) >= NCLASSES)
		return false;
	uint32_t size = class_sizes[PG_CLASS(w)];
	uint32_t in = (uint32_t)(rel & (PAGE_SIZE - 1));
	if (in % size || in / size >= blocks_per_page(PG_CLASS(w)))
		return false;
	*page_out = page;
	*idx_out = in / size;
	*cls_out = PG_CLASS(w);
	return true;
}


void alloc_free_block(shmg_t *h, uint32_t shard, ref_t ref)
{
	uint32_t page, idx, cls;
	if (!alloc_block_valid(h, shard, ref, &page, &idx, &cls)) {
		sg_log(h, SHMG_LOG_INFO, "shard %u: refusing to free invalid block ref %u", shard, ref);
		return;
	}
	struct page_desc *d = page_desc_at(h, page);
	uint32_t n = blocks_per_page(cls);
	bool was_full = !d->free_head && d->bump >= n;
	memcpy(page_at(h, page) + (uint64_t)idx * class_sizes[cls], &d->free_head, sizeof(uint32_t));
	d->free_head = idx + 1;
	d->used--;
	if (was_full)
		partial_push(h, shard, cls, page);
	/* Give an empty page back unless it is the class's only partial page
	 * (that one would be claimed again at the next insert). */
	struct shard_header *sh = shard_at(h, shard);
	if (d->used == 0 && !(sh->partial[cls] == page + 1 && !d->next)) {
		partial_unlink(h, shard, cls, page);
		alloc_release_page(h, page);
	}
}

uint32_t alloc_extent(shmg_t *h, uint32_t shard, uint32_t npages)
{
	return pool_claim(h, shard, PG_EXTENT, 0, npages);
}

void alloc_free_extent(shmg_t *h, uint32_t shard, uint32_t page)
{
	if (page >= h->geo.npages)
		return;
	struct page_desc *d = page_desc_at(h, page);
	uint32_t w = load_relaxed(&d->word);
	if (PG_OWNER(w) != shard + 1 || PG_KIND(w) != PG_EXTENT) {
		sg_log(h, SHMG_LOG_INFO, "shard %u: refusing to free invalid extent %u", shard, page);
		return;
	}
	uint32_t n = d->used;
	if (n > h->geo.npages - page)
		n = h->geo.npages - page;
	/* Hand the memory back to the system: an index table's predecessors
	 * would otherwise stay allocated in the file until the pool happened
	 * to reuse their pages, a third of the index's memory after a series
	 * of doublings.  Nothing reads these pages any more (a grace period
	 * passed, or the table was never published), and a page claimed later
	 * reads as zeros, which every claimant starts from anyway. */
	madvise(page_at(h, page), (size_t)n << PAGE_SHIFT, MADV_REMOVE);
	if (pool_lock(h) < 0)
		return;
	for (uint32_t i = 0; i < n; i++)
		store_release(&page_desc_at(h, page + i)->word, 0);
	h->hdr->pages_used -= n;
	pool_unlock(h);
}
