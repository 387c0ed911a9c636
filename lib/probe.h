/* SPDX-License-Identifier: MIT */
/* The readers' half of the hash index (index.c says how it works), inline so
 * that a lookup is one function: index.c and the registry's lookups include
 * it. */
#ifndef SHMG_PROBE_H
#define SHMG_PROBE_H

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "internal.h"

static inline uint32_t bucket_of(uint64_t hash, uint32_t mask)
{
	return (uint32_t)(hash >> 16) & mask;
}

static inline uint32_t tag_matches(const struct bucket *b, uint16_t tag)
{
#if defined(__SSE2__)
	__m128i tags = _mm_loadu_si128((const __m128i *)b->tag);
	__m128i eq = _mm_cmpeq_epi16(tags, _mm_set1_epi16((short)tag));
	/* movemask gives 2 bits per 16-bit lane; keep one. */
	return (uint32_t)_mm_movemask_epi8(eq) & 0x5555u;
#else
	uint32_t m = 0;
	for (unsigned i = 0; i < BUCKET_SLOTS; i++)
		if (b->tag[i] == tag)
			m |= 1u << (2 * i);
	return m;
#endif
}

/* Blocks are 16-byte aligned and packed at their class's size (alloc.c), so
 * the bytes a lookup reads may run into the next cache line.  Where they do,
 * that line is asked for as soon as the ref is known, beside the first:
 * otherwise the metadata's address, which depends on the key length in the
 * header, would wait for the first line to arrive and the two misses would
 * follow each other.  reach is how many bytes from the block's start the
 * caller will read (1: do not guess); the line of the last of them is
 * prefetched, which is the block's first line (on its way anyway) when they
 * do not cross.  A prefetch never faults, so the address needs no bounds
 * check (it is computed as an integer: a ref may be garbage). */
static inline void prefetch_block_tail(const shmg_t *h, ref_t r, uint64_t reach)
{
	uintptr_t block = (uintptr_t)h->base + ((uint64_t)r << REF_SHIFT);
	__builtin_prefetch((const void *)(block + reach - 1));
}

/* A key lookup reads the header, the key and the metadata, which is
 * typically small: this many bytes of it are counted in its reach. */
#define LOOKUP_META_REACH 16u

static inline uint64_t key_reach(const struct keyref *k)
{
	return sizeof(struct entry) + (uint64_t)k->len + LOOKUP_META_REACH;
}

/* Matches a candidate block by its header copy hd (see entry_read). */
typedef bool (*match_fn)(const struct entry *e, const struct entry *hd, const void *ctx);

/* The first candidate of bucket b (tag, kind) that match() accepts, *hd its
 * header copy, *slot its slot; or NULL. */
static inline __attribute__((always_inline)) struct entry *
probe_bucket(shmg_t *h, struct bucket *b, uint16_t tag, uint8_t kind, match_fn match,
	     const void *ctx, uint64_t reach, uint32_t *slot, struct entry *hd)
{
	for (uint32_t m = tag_matches(b, tag); m; m &= m - 1) {
		uint32_t i = (uint32_t)__builtin_ctz(m) / 2;
		ref_t r = load_acquire(&b->ent[i]); /* pairs with index_insert's release */
		if (!r)
			continue;
		prefetch_block_tail(h, r, reach);
		const struct entry *e = entry_read_as(h, r, kind, hd);
		if (e && match(e, hd, ctx)) {
			*slot = i;
			return (struct entry *)e;
		}
	}
	return NULL;
}

/* Probes for hash; returns the first entry of `kind` (0: any) that match()
 * accepts, *hd its header copy.  The probe count is one load, clamped;
 * bucket indexes are masked.  The home bucket is searched before its probe
 * count (same line) is read: most searches end there.  reach: see
 * prefetch_block_tail. */
static inline __attribute__((always_inline)) struct entry *
probe(shmg_t *h, const struct table_view *v, uint64_t hash, uint8_t kind, match_fn match,
      const void *ctx, uint64_t reach, uint32_t *pos_out, struct entry *hd)
{
	struct bucket *B = v->B;
	uint32_t mask = v->mask, home = bucket_of(hash, mask), bi = home, slot = 0;
	uint16_t tag = (uint16_t)hash;
	struct entry *e = probe_bucket(h, &B[home], tag, kind, match, ctx, reach, &slot, hd);
	if (!e) {
		uint32_t probe_len = load_relaxed(&B[home].probe);
		if (probe_len > MAX_PROBE)
			probe_len = MAX_PROBE;
		for (uint32_t d = 1; !e && d <= probe_len; d++) {
			bi = (home + d) & mask;
			e = probe_bucket(h, &B[bi], tag, kind, match, ctx, reach, &slot, hd);
		}
		if (!e)
			return NULL;
	}
	if (pos_out)
		*pos_out = bi * BUCKET_SLOTS + slot;
	return e;
}

struct key_match {
	const struct keyref *k;
	uint8_t kind;
};

/* k->len <= key_max was checked by key_prepare and equals the copy's key
 * length, which entry_read checked against the arena.  The kind is the one
 * probe() filtered on (a repeated test the compiler drops), except for a
 * kind of 0, which probe() takes as any. */
static inline __attribute__((always_inline)) bool
match_key(const struct entry *e, const struct entry *hd, const void *ctx)
{
	const struct key_match *m = ctx;
	return hd->kind == m->kind && hd->cluster == m->k->cluster && hd->key_len == m->k->len &&
	       bytes_equal(entry_key(e), m->k->key, m->k->len);
}


/* index_get on a view the caller took inside its read section. */
static inline __attribute__((always_inline)) const struct entry *
index_lookup_in(shmg_t *h, const struct table_view *v, const struct keyref *k, uint8_t kind,
		struct entry *hd)
{
	struct key_match m = {k, kind};
	return probe(h, v, k->hash, kind, match_key, &m, key_reach(k), NULL, hd);
}

/* index_get, inline. */
static inline __attribute__((always_inline)) const struct entry *
index_lookup(shmg_t *h, const struct keyref *k, uint8_t kind, struct entry *hd)
{
	struct table_view v;
	if (unlikely(!index_view_cached(h, k->shard, &v)))
		return NULL;
	return index_lookup_in(h, &v, k, kind, hd);
}

/* Batched lookups: prefetch the home bucket, then the first candidate entry
 * (both its lines if it straddles). */
static inline void index_prefetch(const struct table_view *v, uint64_t hash)
{
	__builtin_prefetch(&v->B[bucket_of(hash, v->mask)]);
}

static inline void index_prefetch_candidate(const shmg_t *h, const struct table_view *v,
					    const struct keyref *k)
{
	const struct bucket *b = &v->B[bucket_of(k->hash, v->mask)];
	uint32_t m = tag_matches(b, (uint16_t)k->hash);
	if (m) {
		ref_t r = load_acquire(&b->ent[__builtin_ctz(m) / 2]);
		uint64_t off = (uint64_t)r << REF_SHIFT;
		if (r && off < h->size) {
			__builtin_prefetch(h->base + off);
			prefetch_block_tail(h, r, key_reach(k));
		}
	}
}

#endif
