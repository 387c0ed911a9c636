/* SPDX-License-Identifier: MIT */
/*
 * The per-shard hash index: an array of 64-byte buckets of 8 slots (16-bit
 * tag + 32-bit entry ref each), bucketised linear probing, in an extent whose
 * offset the shard publishes in table_off.
 *
 * Readers (lock-free, inside a read section): load table_off (acquire), read
 * the home bucket's probe count, compare the 8 tags of each probed bucket at
 * once, load a matching slot's ref (acquire, pairs with the release that
 * published it) and compare the full entry.  They never write.  What they
 * read is untrusted: the table size is one load of nbuckets_log2, checked
 * (index_view), the probe count is clamped, and an entry is compared on a
 * checked private copy of its header (entry_read), never on a second read.
 *
 * Writers (shard lock): every change a reader can see is one aligned store —
 * a slot's ref (insert, delete, replace), a home bucket's probe count (only
 * grows, stored before the slot it covers), or table_off (resize).  There are
 * no moves, so a reader never misses an entry that stays present during its
 * search.  Resize builds a bigger table off to the side, publishes it, and
 * retires the old one; readers still on the old one see a consistent, at
 * worst slightly older, snapshot until their section ends.
 *
 * Tags are loaded with a plain 16-byte vector load; a torn or stale tag only
 * makes a reader compare (or skip) a slot whose ref it then loads atomically.
 *
 * Crash windows: a half-built table is an unreachable extent (repair frees
 * it); a published table whose predecessor was not yet retired leaves the old
 * extent unreachable (repair frees it); a slot's tag written without its ref
 * is an empty slot.
 */
#include <string.h>

#include "probe.h"

/* What an unset view cache entry stands for: offset 0, which no table has
 * (a table_off of 0 finds no view in index_view either), and an empty
 * private table of one bucket, so that a table_off that reads 0 is a lookup
 * of an empty table, not a special case. */
static const struct table_header no_table;
static const struct bucket no_buckets[1];

void index_views_init(shmg_t *h)
{
	for (uint32_t s = 0; s < MAX_SHARDS; s++) {
		/* Shards past geo.shards are never looked at: any word will do. */
		uint32_t at = s < h->geo.shards ? s : 0;
		h->views[s] = (struct view_cache){
			.table_off = &shard_at(h, at)->table_off,
			.off = 0,
			.v = {.t = (struct table_header *)&no_table,
			      .B = (struct bucket *)no_buckets, .log2 = 0, .mask = 0},
		};
	}
}

struct table_header *index_table(const shmg_t *h, uint32_t shard)
{
	struct table_view v;
	return index_view(h, shard, &v) ? v.t : NULL;
}

const struct entry *index_get(shmg_t *h, const struct keyref *k, uint8_t kind, struct entry *hd)
{
	return index_lookup(h, k, kind, hd);
}

struct entry *index_find(shmg_t *h, const struct keyref *k, uint8_t kind, uint32_t *pos_out)
{
	struct table_view v;
	struct entry hd;
	if (unlikely(!index_view(h, k->shard, &v)))
		return NULL;
	struct key_match m = {k, kind};
	return probe(h, &v, k->hash, kind, match_key, &m, 1, pos_out, &hd);
}

struct member_match {
	ref_t head;
	uint32_t node, slot, gen;
};

static bool match_member(const struct entry *e, const struct entry *hd, const void *ctx)
{
	const struct member_match *m = ctx;
	/* The node too: a remote member may share a local one's slot and gen. */
	return (hd->kind == K_MEMBER || hd->kind == K_MONITOR) && hd->node == m->node &&
	       hd->ep_slot == m->slot &&
	       hd->ep_gen == m->gen && load_relaxed(&links_of(e, hd)->aux) == m->head;
}

/* The hash of a head or registration (not a membership), from its copy. */
static uint64_t key_hash(const shmg_t *h, const struct entry *e, const struct entry *hd)
{
	if (hd->kind == K_MONHEAD)
		return sg_hash(entry_key(e), hd->key_len, load_relaxed(&links_of(e, hd)->seed));
	uint32_t s = cluster_slot_of(hd->cluster);
	uint64_t seed = s && s < h->geo.max_clusters ? load_relaxed(&cluster_at(h, s)->name_hash)
						      : DEFAULT_CLUSTER_SEED;
	return sg_hash(entry_key(e), hd->key_len, seed);
}

uint64_t entry_hash(const shmg_t *h, const struct entry *e)
{
	struct entry hd, headhd;
	if (!entry_read(h, ref_of(h, e), &hd))
		return 0;
	if (hd.kind != K_MEMBER && hd.kind != K_MONITOR)
		return key_hash(h, e, &hd);
	/* A membership hashes by its head, which must be a head of its kind:
	 * anything else is damage (repair drops it), never a recursion. */
	const struct entry *head = entry_read(h, load_relaxed(&links_of(e, &hd)->aux), &headhd);
	if (!head || headhd.kind != (hd.kind == K_MEMBER ? K_GROUP : K_MONHEAD))
		return 0;
	return member_hash(key_hash(h, head, &headhd), hd.ep_slot, hd.ep_gen);
}

uint64_t member_hash(uint64_t head_hash, uint32_t slot, uint32_t gen)
{
	return sg_mix(head_hash ^ 0x2545f4914f6cdd1dull, ((uint64_t)slot << 32 | gen) ^ 0x9e3779b97f4a7c15ull) ^
	       head_hash;
}

struct entry *index_find_member(shmg_t *h, uint32_t shard, ref_t head, uint64_t mhash,
				uint32_t node, uint32_t ep_slot, uint32_t ep_gen, uint32_t *pos_out)
{
	struct table_view v;
	struct entry hd;
	if (unlikely(!index_view(h, shard, &v)))
		return NULL;
	struct member_match m = {head, node, ep_slot, ep_gen};
	return probe(h, &v, mhash, 0, match_member, &m, 1, pos_out, &hd);
}

/* ---- writers --------------------------------------------------------- */

static uint64_t table_bytes(uint32_t log2)
{
	return sizeof(struct table_header) + ((uint64_t)sizeof(struct bucket) << log2);
}

/* Places ref in v's table; publish = false while it is private (resize). */
static int place(const struct table_view *v, uint64_t hash, ref_t ref, bool publish)
{
	struct bucket *B = v->B;
	uint32_t mask = v->mask, home = bucket_of(hash, mask);
	for (uint32_t d = 0; d <= MAX_PROBE && d <= mask; d++) {
		struct bucket *b = &B[(home + d) & mask];
		for (uint32_t i = 0; i < BUCKET_SLOTS; i++) {
			if (b->ent[i])
				continue;
			b->tag[i] = (uint16_t)hash;
			if (d > B[home].probe)
				store_release(&B[home].probe, d); /* before the slot it covers */
			if (publish)
				store_release(&b->ent[i], ref); /* linearisation point */
			else
				b->ent[i] = ref;
			return 0;
		}
	}
	return -ENOSPC;
}

static uint32_t extent_page_of(const shmg_t *h, uint64_t off)
{
	return (uint32_t)((off - h->geo.off_pages) >> PAGE_SHIFT);
}

/* Builds a table of 2^log2 buckets holding every entry of the current one
 * and publishes it. */
static int resize(shmg_t *h, uint32_t shard, uint32_t log2)
{
	struct shard_header *sh = shard_at(h, shard);
	uint64_t bytes = table_bytes(log2);
	uint32_t npages = (uint32_t)((bytes + PAGE_SIZE - 1) >> PAGE_SHIFT);
	uint32_t p1 = alloc_extent(h, shard, npages);
	if (!p1)
		return -ENOSPC;
	struct table_header *t = (struct table_header *)page_at(h, p1 - 1);
	memset(t, 0, bytes);
	t->nbuckets_log2 = log2;
	t->npages = npages;
	t->shard = shard;
	t->magic = TABLE_MAGIC;
	struct table_view nv = {t, table_buckets(t), log2, (1u << log2) - 1}, old;
	bool have_old = index_view(h, shard, &old);
	uint32_t n = 0;
	if (have_old) {
		for (uint64_t i = 0; i < ((uint64_t)old.mask + 1) * BUCKET_SLOTS; i++) {
			ref_t r = old.B[i / BUCKET_SLOTS].ent[i % BUCKET_SLOTS];
			struct entry *e = r ? entry_at(h, r) : NULL;
			if (!e)
				continue;
			if (place(&nv, entry_hash(h, e), r, false) < 0) {
				alloc_free_extent(h, shard, p1 - 1);
				return -ENOSPC;
			}
			n++;
		}
	}
	TEST_POINT("resize:built");
	store_release(&sh->table_off, (uint64_t)((uint8_t *)t - h->base)); /* pairs with index_table */
	sh->nentries = n;
	TEST_POINT("resize:published");
	if (have_old)
		epoch_retire(h, shard, extent_page_of(h, (uint64_t)((uint8_t *)old.t - h->base)),
			     LIMBO_EXTENT);
	return 0;
}

int index_create(shmg_t *h, uint32_t shard, uint32_t log2)
{
	return resize(h, shard, log2);
}

int index_insert(shmg_t *h, uint32_t shard, uint64_t hash, ref_t ref)
{
	struct shard_header *sh = shard_at(h, shard);
	struct table_view v;
	if (!index_view(h, shard, &v))
		return -EIO;
	uint64_t capacity = (uint64_t)BUCKET_SLOTS << v.log2;
	/* Grow at 3/4 full; if there is no room for a bigger table, keep using
	 * this one while it has space. */
	if ((uint64_t)(sh->nentries + 1) * 4 > capacity * 3 && resize(h, shard, v.log2 + 1) == 0 &&
	    !index_view(h, shard, &v))
		return -EIO;
	int rc = place(&v, hash, ref, true);
	if (rc < 0 && resize(h, shard, v.log2 + 1) == 0) {
		if (!index_view(h, shard, &v))
			return -EIO;
		rc = place(&v, hash, ref, true);
	}
	if (rc == 0)
		sh->nentries++;
	return rc;
}

static ref_t *slot_ptr(shmg_t *h, uint32_t shard, uint32_t pos)
{
	struct table_view v;
	if (!index_view(h, shard, &v) || pos / BUCKET_SLOTS > v.mask)
		return NULL;
	return &v.B[pos / BUCKET_SLOTS].ent[pos % BUCKET_SLOTS];
}

void index_clear_slot(shmg_t *h, uint32_t shard, uint32_t pos)
{
	ref_t *p = slot_ptr(h, shard, pos);
	if (p && *p) {
		store_release(p, 0);
		shard_at(h, shard)->nentries--;
	}
}

void index_replace_slot(shmg_t *h, uint32_t shard, uint32_t pos, ref_t ref)
{
	ref_t *p = slot_ptr(h, shard, pos);
	if (p)
		store_release(p, ref); /* readers see the old or the new block, never neither */
}

int index_foreach(shmg_t *h, uint32_t shard, index_visit_fn fn, void *arg)
{
	struct table_view v;
	if (!index_view(h, shard, &v))
		return 0;
	for (uint64_t b = 0; b <= v.mask; b++) {
		for (uint32_t i = 0; i < BUCKET_SLOTS; i++) {
			ref_t r = load_acquire(&v.B[b].ent[i]);
			struct entry *e = r ? entry_at(h, r) : NULL;
			if (!e)
				continue;
			int rc = fn(h, e, (uint32_t)(b * BUCKET_SLOTS + i), arg);
			if (rc)
				return rc;
		}
	}
	return 0;
}
