/* SPDX-License-Identifier: MIT */
/*
 * Process-private state and the interfaces between the library's modules.
 * Dependencies point one way:
 *   hash, errors  <-  arena  <-  epoch, alloc  <-  index, oplog  <-  shard,
 *   prefix  <-  repair  <-  registry, groups, cluster, endpoint  <-  handle, check
 */
#ifndef SHMG_INTERNAL_H
#define SHMG_INTERNAL_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "layout.h"
#include "shmgroup.h"
#include "testhook.h"

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* Atomics on shared fields: one family (C11 builtins via these wrappers). */
#define load_relaxed(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define load_acquire(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define store_relaxed(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define compiler_barrier() __atomic_signal_fence(__ATOMIC_SEQ_CST)

#define HANDLE_MAGIC 0x53484d47u
#define HANDLE_CLOSED 0x636c6f73u

/* Records being built for one mailbox (process-local). */
struct mb_batch {
	uint8_t *buf;
	size_t len, cap;
	uint32_t count;
};

struct reaper;

/* A producer's descriptor for one consumer's wakeup FIFO (wake_fifo.c),
 * kept per consumer (slot, gen, nonce) like the datagram path keeps its
 * socket connected. */
#define WAKE_FIFO_CACHE 16
struct wake_fifo_out {
	int fd;             /* -1: that FIFO is not usable, wake by datagram */
	uint32_t slot, gen; /* gen 0: entry unused */
	uint64_t nonce, ino; /* and uid: the consumer's record when opened */
	uint32_t uid;
};
/* The consumer's own FIFO, as it made it (never read back from the arena). */
struct wake_fifo_own {
	int fd;             /* read end, in the mb_fd epoll set; -1: none */
	uint32_t slot, gen;
	uint64_t nonce, ino;
	uint32_t uid;
};

/* A shard's current table as one load of table_off and of nbuckets_log2
 * found it, checked to lie in the arena: users take the size from here. */
struct table_view {
	struct table_header *t;
	struct bucket *B;
	uint32_t log2, mask;
};

/* The creator-written part of the arena header, copied once at open after
 * validation (arena.c).  Every address this process computes comes from this
 * private copy, never from the shared header, so a process that scribbles on
 * the header later cannot move another's view of the arena. */
struct arena_geometry {
	uint64_t arena_size, arena_max, incarnation, created_ns;
	uint32_t layout_version, shards, shard_bits, max_endpoints, key_max, meta_max;
	uint32_t max_clusters, node_id, oplog_bytes, mode, mailbox_bytes;
	uint32_t shard_stride, npages; /* npages: descriptors, for an arena of arena_max */
	uint64_t off_endpoints, off_live_gen, off_clusters, off_shards, off_oplogs;
	uint64_t off_mailboxes, off_pagedesc, off_pages;
};

/* A shard's table as this handle last validated it (index_view_cached),
 * with the address of the shard's table_off word in this mapping. */
struct view_cache {
	const uint64_t *table_off;
	uint64_t off; /* table_off when v was validated */
	struct table_view v;
};

struct shmg {
	uint32_t magic;
	uint32_t fork_gen;    /* handle_fork_gen at open; differs in a forked child */
	int fd;               /* the arena object, mapped */
	int lock_fd;          /* the same object, never mapped: holds the endpoint lock */
	uint8_t *base;
	/* Bytes of the object this handle has seen it hold (fstat): every
	 * address it forms lies below.  Raised by arena_refresh when an offset
	 * beyond it turns up (another process grew the arena), never above
	 * map_size, the address space reserved at open (arena_max). */
	uint64_t size;
	uint64_t map_size;
	struct arena_header *hdr;
	struct arena_geometry geo; /* validated copy of hdr's read-only fields */
	struct endpoint_slot *ep;
	uint32_t *live_gen;
	uint32_t slot, gen, node;
	int read_depth;
	bool use_fence;       /* membarrier registration failed: fence on read entry */
	shmg_extract_fn extract;
	void *extract_arg;
	uint8_t *scratch;     /* meta_max bytes: extract_meta output */
	int mb_fd;            /* shmg_fd: an epoll set of mb_sock and the FIFO */
	int mb_sock;          /* this endpoint's wakeup socket */
	struct wake_fifo_own fifo; /* and its wakeup FIFO (wake_fifo.c) */
	int wake_out;         /* unbound socket for sending wakeups, connected to: */
	uint64_t wake_peer;   /* the nonce of the last socket woken (0: none) */
	const char *wake_peer_role; /* and its role ("mb" or "reaper") */
	uint64_t wake_nonce;  /* names mb_sock; published in the mailbox header */
	struct wake_fifo_out fifo_out[WAKE_FIFO_CACHE]; /* consumers' FIFOs, by slot */
	uint8_t *rx, *rx_meta; /* receive buffers the events point into */
	size_t rx_cap, rx_meta_cap;
	uint64_t *targets;    /* bitmap of endpoint slots an event goes to */
	uint32_t *target_gen;
	bool batching;        /* events_batch_begin .. events_batch_flush */
	bool suppress_events; /* removal whose events were delivered beforehand */
	uint32_t *progress_word; /* in-flight delivery progress to record, or NULL */
	uint32_t deliver_from;   /* repair: skip targets below this slot */
	struct mb_batch *pending; /* per target slot while batching */
	struct mb_batch single;   /* one event's record, outside batches */
	uint32_t warm_slot;       /* the mailbox last appended to, + 1 (0: none) */
	uint32_t warm_pos;        /* and its ring offset after that append */
	uint32_t *pending_gen;
	uint32_t busy_attempts;    /* how long to wait for a shard lock or limbo room: */
	uint32_t busy_interval_ms; /* attempts x interval (shmg_set_busy_retry) */
	struct reaper *reaper;
	/* Set by remote.c under a shard lock: the other node's endpoint that
	 * entry_new and list_join write for, instead of this handle's. */
	const struct author *author;
	char name[SHMG_NAME_MAX + 1];
	/* Per shard, the table the last lookup validated (index_view_cached). */
	struct view_cache views[MAX_SHARDS];
};

/* Whose entry a write makes (remote.c); time_ns 0: now. */
struct author {
	uint32_t node, slot, gen;
	int32_t pid;
	uint64_t time_ns;
};

/* ---- small inline byte helpers for the lookup path -------------------- */
/* Keys and metadata on the read path are short: these avoid a libc call
 * (and its wide-vector variants) per lookup.  Word loads use memcpy of a
 * constant size, which compiles to a plain unaligned load.  From 16 bytes
 * on, x86-64 works in 16-byte vectors (SSE2 is part of the base ISA); the
 * last vector, or word, ends at the last byte and may overlap the one
 * before, so a 16..32-byte key is two loads without a loop or a tail, and
 * nothing is read outside [p, p + n). */
static inline uint64_t load64(const void *p)
{
	uint64_t v;
	__builtin_memcpy(&v, p, 8);
	return v;
}
#if defined(__SSE2__)
static inline __m128i load128(const void *p)
{
	return _mm_loadu_si128((const __m128i *)p);
}
#endif
/* Bits 0x80 of the bytes of v that are zero (and maybe of bytes above a
 * zero one): non-zero iff v has a zero byte, also after OR-ing words. */
static inline uint64_t zero_byte_bits(uint64_t v)
{
	return (v - 0x0101010101010101ull) & ~v;
}
/* Non-zero iff [data, data + n) holds a zero byte: one value from every
 * path, so that the caller's test is the only branch on it. */
static inline uint64_t bytes_nul_bits(const void *data, size_t n)
{
	const uint8_t *p = data;
#if defined(__SSE2__)
	if (n >= 16) {
		__m128i low = _mm_min_epu8(load128(p), load128(p + n - 16));
		for (size_t i = 16; i + 16 < n; i += 16)
			low = _mm_min_epu8(low, load128(p + i));
		return (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(low, _mm_setzero_si128()));
	}
#endif
	uint64_t z = 0;
	if (n >= 8) {
		z = zero_byte_bits(load64(p)) | zero_byte_bits(load64(p + n - 8));
		for (size_t i = 8; i + 8 < n; i += 8)
			z |= zero_byte_bits(load64(p + i));
	} else if (n >= 4) {
		uint32_t lo, hi;
		__builtin_memcpy(&lo, p, 4);
		__builtin_memcpy(&hi, p + n - 4, 4);
		z = zero_byte_bits(lo | (uint64_t)hi << 32);
	} else {
		for (size_t i = 0; i < n; i++)
			z |= p[i] ? 0 : 0x80;
	}
	return z & 0x8080808080808080ull;
}
static inline bool bytes_have_nul(const void *data, size_t n)
{
	return bytes_nul_bits(data, n) != 0;
}
static inline bool bytes_equal(const void *a, const void *b, size_t n)
{
	const uint8_t *x = a, *y = b;
#if defined(__SSE2__)
	if (n >= 16) {
		__m128i eq = _mm_and_si128(_mm_cmpeq_epi8(load128(x), load128(y)),
					   _mm_cmpeq_epi8(load128(x + n - 16), load128(y + n - 16)));
		for (size_t i = 16; i + 16 < n; i += 16)
			eq = _mm_and_si128(eq, _mm_cmpeq_epi8(load128(x + i), load128(y + i)));
		return _mm_movemask_epi8(eq) == 0xffff;
	}
#endif
	if (n >= 8) {
		uint64_t d = (load64(x) ^ load64(y)) | (load64(x + n - 8) ^ load64(y + n - 8));
		for (size_t i = 8; i + 8 < n; i += 8)
			d |= load64(x + i) ^ load64(y + i);
		return d == 0;
	}
	if (n >= 4) {
		uint32_t x0, x1, y0, y1;
		__builtin_memcpy(&x0, x, 4);
		__builtin_memcpy(&x1, x + n - 4, 4);
		__builtin_memcpy(&y0, y, 4);
		__builtin_memcpy(&y1, y + n - 4, 4);
		return ((x0 ^ y0) | (x1 ^ y1)) == 0;
	}
	for (; n; x++, y++, n--)
		if (*x != *y)
			return false;
	return true;
}
static inline void bytes_copy(void *dst, const void *src, size_t n)
{
	uint8_t *d = dst;
	const uint8_t *s = src;
#if defined(__SSE2__)
	if (n >= 16 && n <= 64) {
		__m128i first = load128(s), last = load128(s + n - 16);
		for (size_t i = 16; i + 16 < n; i += 16)
			_mm_storeu_si128((__m128i *)(d + i), load128(s + i));
		_mm_storeu_si128((__m128i *)d, first);
		_mm_storeu_si128((__m128i *)(d + n - 16), last);
		return;
	}
#endif
	if (n > 64) {
		memcpy(dst, src, n);
	} else if (n >= 8) {
		uint64_t first = load64(s), last = load64(s + n - 8);
		for (size_t i = 8; i + 8 < n; i += 8)
			__builtin_memcpy(d + i, s + i, 8);
		__builtin_memcpy(d, &first, 8);
		__builtin_memcpy(d + n - 8, &last, 8);
	} else if (n >= 4) {
		uint32_t lo, hi;
		__builtin_memcpy(&lo, s, 4);
		__builtin_memcpy(&hi, s + n - 4, 4);
		__builtin_memcpy(d, &lo, 4);
		__builtin_memcpy(d + n - 4, &hi, 4);
	} else {
		for (; n; d++, s++, n--)
			*d = *s;
	}
}

/* ---- handle.c -------------------------------------------------------- */
extern _Atomic uint32_t handle_fork_gen;
/* 0, or -EBADF / -ECHILD. */
static inline int handle_check(const shmg_t *h)
{
	if (unlikely(!h || h->magic != HANDLE_MAGIC))
		return -EBADF;
	if (unlikely(h->fork_gen != atomic_load_explicit(&handle_fork_gen, memory_order_relaxed)))
		return -ECHILD;
	return 0;
}

/* When a wait for a held shard lock or a full limbo ring gives up (-EBUSY). */
uint64_t busy_deadline(const shmg_t *h);

/* ---- errors.c -------------------------------------------------------- */
void sg_log(const shmg_t *h, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- hash.c ---------------------------------------------------------- */
uint64_t sg_hash(const void *data, size_t len, uint64_t seed);
#define HASH_ID 2u /* identifies sg_hash in the arena header */
static inline uint64_t sg_mix(uint64_t a, uint64_t b)
{
	__uint128_t r = (__uint128_t)a * b;
	return (uint64_t)r ^ (uint64_t)(r >> 64);
}
static inline uint64_t read64le(const void *p)
{
	uint64_t v = load64(p);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}
/* sg_hash (hash.c says what it is), inline for the lookups.  Every read
 * lies in [data, data + len): the last 16 bytes (17..32-byte keys and the
 * tail of longer ones) are two 8-byte loads ending at the key's end, which
 * may overlap the bytes before them; the length, mixed in at the end, tells
 * such keys apart. */
static inline __attribute__((always_inline)) uint64_t
sg_hash_inline(const void *data, size_t len, uint64_t seed)
{
	const uint64_t K0 = 0xa0761d6478bd642full, K1 = 0xe7037ed1a0b428dbull,
		       K2 = 0x8ebc6af09c88c6e3ull;
	const uint8_t *p = data;
	uint64_t s = seed ^ K0, a, b;
	if (likely(len > 16)) {
		const uint8_t *end = p + len - 16;
		/* 16 bytes per step while more than 16 are left; the first
		 * step peeled: a 17..32-byte key takes no loop. */
		s = sg_mix(read64le(p) ^ K1, read64le(p + 8) ^ s);
		for (p += 16; p < end; p += 16)
			s = sg_mix(read64le(p) ^ K1, read64le(p + 8) ^ s);
		a = read64le(end);
		b = read64le(end + 8);
	} else if (len >= 8) {
		a = read64le(p);
		b = read64le(p + len - 8);
	} else if (len >= 4) {
		uint32_t lo, hi;
		__builtin_memcpy(&lo, p, 4);
		__builtin_memcpy(&hi, p + len - 4, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
		lo = __builtin_bswap32(lo);
		hi = __builtin_bswap32(hi);
#endif
		a = lo;
		b = hi;
	} else if (len) {
		a = (uint64_t)p[0] << 16 | (uint64_t)p[len / 2] << 8 | p[len - 1];
		b = 0;
	} else {
		a = b = 0;
	}
	return sg_mix(K2 ^ len, sg_mix(a ^ K1, b ^ s));
}

/* ---- arena.c --------------------------------------------------------- */
int arena_open(shmg_t *h, const char *name, const struct shmg_config *cfg);
void arena_unmap(shmg_t *h);
int arena_name_valid(const char *name);
int mutex_init_robust(pthread_mutex_t *m);
/* Every robust mutex of the arena is taken through one of these (arena.c):
 * timed slices of interval_ns until deadline_ns (CLOCK_MONOTONIC), then
 * ETIMEDOUT; there is no unbounded wait. */
int robust_lock_until(pthread_mutex_t *m, uint64_t deadline_ns, uint64_t interval_ns);
/* As robust_lock_until, giving up after lock_wait_limit_ms (EBUSY), or EIO for a
 * damaged mutex; logs naming `what`. */
int robust_lock_limited(const shmg_t *h, pthread_mutex_t *m, const char *what);
extern uint32_t lock_wait_limit_ms; /* tests shorten it */
uint32_t mailbox_record_max(uint32_t key_max, uint32_t meta_max);
uint64_t now_realtime_ns(void);
uint64_t now_monotonic_ns(void);

/* Re-reads the object's size (fstat) into h->size, clamped to the
 * reservation; returns it.  The handle's one mutable bound: raised only,
 * by whichever call on the handle meets an offset beyond it (one thread at
 * a time uses a handle), hence the const: callers hold a const view. */
uint64_t arena_refresh(const shmg_t *h);
/* The slow half of arena_span_ok: [off, off+len) lies beyond h->size; true
 * if it lies in the reservation and the object has grown over it since. */
bool arena_span_grown(const shmg_t *h, uint64_t off, uint64_t len) __attribute__((cold));
/* Grows the object to at least `size` bytes (never shrinks it) and
 * refreshes the handle's view.  0 or -errno (-ENOSPC: no room in /dev/shm). */
int arena_grow_to(shmg_t *h, uint64_t size);

/* Does [off, off+len) lie in the part of the object this process may touch?
 * One compare while it lies below the size already seen; beyond it, an
 * fstat decides (the arena may have grown), so a scribbled offset costs a
 * system call and an error, never a fault. */
static inline bool arena_span_ok(const shmg_t *h, uint64_t off, uint64_t len)
{
	uint64_t end;
	if (likely(!__builtin_add_overflow(off, len, &end) && end <= h->size))
		return true;
	return arena_span_grown(h, off, len);
}
/* How many of the pages lie in an object of `size` bytes. */
static inline uint32_t arena_pages_in(const struct arena_geometry *g, uint64_t size)
{
	uint64_t n = size > g->off_pages ? (size - g->off_pages) >> PAGE_SHIFT : 0;
	return n < g->npages ? (uint32_t)n : g->npages;
}
/* Page `page` (below geo.npages) lies in the object. */
static inline bool page_backed(const shmg_t *h, uint32_t page)
{
	return arena_span_ok(h, h->geo.off_pages + ((uint64_t)page << PAGE_SHIFT), PAGE_SIZE);
}

/* Bounds-checked views into the arena: NULL when [off, off+len) is outside. */
static inline void *arena_at(const shmg_t *h, uint64_t off, uint64_t len)
{
	if (unlikely(off == 0 || !arena_span_ok(h, off, len)))
		return NULL;
	return h->base + off;
}
static inline bool kind_has_links(uint8_t kind)
{
	return kind >= K_GROUP;
}
/* Offset of the links behind key and metadata, and the block's used size. */
static inline uint64_t entry_links_off(uint32_t key_len, uint32_t meta_len)
{
	return (sizeof(struct entry) + (uint64_t)key_len + meta_len + 7) & ~7ull;
}
static inline uint64_t entry_size(uint8_t kind, uint32_t key_len, uint32_t meta_len)
{
	return kind_has_links(kind) ? entry_links_off(key_len, meta_len) + sizeof(struct entry_links)
				    : sizeof(struct entry) + (uint64_t)key_len + meta_len;
}
static inline struct entry *entry_at(const shmg_t *h, ref_t ref)
{
	uint64_t off = (uint64_t)ref << REF_SHIFT;
	struct entry *e = arena_at(h, off, sizeof(struct entry));
	if (unlikely(!e))
		return NULL;
	if (unlikely(!arena_span_ok(h, off, entry_size(e->kind, e->key_len, e->meta_len))))
		return NULL;
	return e;
}
/* A reader's private copy of an entry's header, loaded once (four single
 * 8-byte loads: the compiler may neither split nor repeat them) and checked:
 * the block with the copy's kind and lengths lies in the arena.  Readers take
 * every length, kind and index from *hd and only the key and metadata bytes
 * from the block, so a block changed after the check cannot move a read off
 * the mapping.  Returns the block, or NULL; entry_read_as also NULL when the
 * copy's kind is not `kind` (0: any), which, given as a constant, leaves
 * one block size to check. */
static inline __attribute__((always_inline)) const struct entry *
entry_read_as(const shmg_t *h, ref_t ref, uint8_t kind, struct entry *hd)
{
	uint64_t off = (uint64_t)ref << REF_SHIFT;
	if (unlikely(off == 0 || !arena_span_ok(h, off, sizeof(struct entry))))
		return NULL;
	const uint64_t *w = (const uint64_t *)(h->base + off);
	union {
		uint64_t w[4];
		struct entry e;
	} c = {{load_relaxed(&w[0]), load_relaxed(&w[1]), load_relaxed(&w[2]), load_relaxed(&w[3])}};
	if (kind && c.e.kind != kind)
		return NULL;
	if (unlikely(!arena_span_ok(h, off, entry_size(c.e.kind, c.e.key_len, c.e.meta_len))))
		return NULL;
	*hd = c.e;
	return (const struct entry *)w;
}
static inline const struct entry *entry_read(const shmg_t *h, ref_t ref, struct entry *hd)
{
	return entry_read_as(h, ref, 0, hd);
}
static inline const uint8_t *entry_meta_of(const struct entry *e, const struct entry *hd)
{
	return (const uint8_t *)(e + 1) + hd->key_len;
}
/* Links of a list-kind block whose header copy hd came from entry_read. */
static inline struct entry_links *links_of(const struct entry *e, const struct entry *hd)
{
	return (struct entry_links *)((uint8_t *)e + entry_links_off(hd->key_len, hd->meta_len));
}
/* Writers' links: from one read of the lengths; lengths that put them past
 * the arena give a zeroed private stand-in (reads say "no link", writes go
 * nowhere) instead of a wild pointer. */
static inline struct entry_links *links_at(const shmg_t *h, const struct entry *e)
{
	static _Thread_local struct entry_links none;
	uint64_t off = (uint64_t)((const uint8_t *)e - h->base) +
		       entry_links_off(load_relaxed(&e->key_len), load_relaxed(&e->meta_len));
	if (unlikely(!arena_span_ok(h, off, sizeof(struct entry_links)))) {
		none = (struct entry_links){0};
		return &none;
	}
	return (struct entry_links *)(h->base + off);
}
static inline const char *entry_key(const struct entry *e) { return (const char *)(e + 1); }
/* A single-member group in one block (K_GROUP with EF_SOLO): its own one
 * member.  hd is a header (or a checked copy of one). */
static inline bool entry_solo(const struct entry *hd)
{
	return hd->kind == K_GROUP && (hd->flags & EF_SOLO);
}
/* The kind an entry counts as: a solo group is a membership. */
static inline uint8_t entry_role(const struct entry *hd)
{
	return entry_solo(hd) ? K_MEMBER : hd->kind;
}
static inline const uint8_t *entry_meta(const struct entry *e)
{
	return (const uint8_t *)(e + 1) + e->key_len;
}
/* Only for the list kinds (kind_has_links); bounds checked by entry_at. */
static inline struct entry_links *L(const struct entry *e)
{
	return (struct entry_links *)((uint8_t *)e + entry_links_off(e->key_len, e->meta_len));
}
static inline ref_t ref_of(const shmg_t *h, const void *p)
{
	return (ref_t)(((const uint8_t *)p - h->base) >> REF_SHIFT);
}
static inline struct shard_header *shard_at(const shmg_t *h, uint32_t s)
{
	return (struct shard_header *)(h->base + h->geo.off_shards +
				       (uint64_t)s * h->geo.shard_stride);
}
static inline struct cluster_counts *shard_counts(const shmg_t *h, uint32_t s)
{
	return (struct cluster_counts *)((uint8_t *)shard_at(h, s) + sizeof(struct shard_header));
}
static inline uint32_t *shard_ep_entries(const shmg_t *h, uint32_t s)
{
	return (uint32_t *)(shard_counts(h, s) + h->geo.max_clusters);
}
static inline struct limbo_item *shard_limbo(const shmg_t *h, uint32_t s)
{
	return (struct limbo_item *)(shard_ep_entries(h, s) + h->geo.max_endpoints);
}
static inline struct ep_kind_counts *shard_ep_kinds(const shmg_t *h, uint32_t s)
{
	return (struct ep_kind_counts *)(shard_limbo(h, s) + LIMBO_CAP);
}
/* Per shard: the last seq of each node table slot's log applied here (remote.c). */
static inline uint64_t *shard_node_cursors(const shmg_t *h, uint32_t s)
{
	return (uint64_t *)(shard_ep_kinds(h, s) + h->geo.max_endpoints);
}
static inline struct page_desc *page_desc_at(const shmg_t *h, uint32_t page)
{
	return (struct page_desc *)(h->base + h->geo.off_pagedesc) + page;
}
static inline uint8_t *page_at(const shmg_t *h, uint32_t page)
{
	return h->base + h->geo.off_pages + ((uint64_t)page << PAGE_SHIFT);
}
static inline struct endpoint_slot *endpoint_at(const shmg_t *h, uint32_t slot)
{
	return (struct endpoint_slot *)(h->base + h->geo.off_endpoints) + slot;
}
static inline struct cluster_slot *cluster_at(const shmg_t *h, uint32_t slot)
{
	return (struct cluster_slot *)(h->base + h->geo.off_clusters) + slot;
}

/* ---- epoch.c: cross-process read sections and grace periods --------- */
static inline void read_enter(shmg_t *h)
{
	if (likely(h->read_depth++ == 0)) { /* sections seldom nest */
		/* Announce the epoch we read under.  Pairs with the membarrier (or,
		 * without it, the fence) in epoch_grace: a grace period either sees
		 * this store or our table loads below see its unlinks. */
		store_relaxed(&h->ep->read_epoch, load_relaxed(&h->hdr->epoch));
		if (unlikely(h->use_fence))
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
		else
			compiler_barrier();
	}
}
static inline void read_exit(shmg_t *h)
{
	if (--h->read_depth == 0)
		store_release(&h->ep->read_epoch, 0); /* pairs with the scan in epoch_grace */
}
void epoch_process_init(shmg_t *h);
/* Under the shard lock: queues a block or extent for freeing after a grace period. */
int epoch_retire(shmg_t *h, uint32_t shard, uint32_t ref, uint32_t kind);
/* Under the shard lock: frees what no reader can still see; returns number freed. */
uint32_t epoch_reclaim(shmg_t *h, uint32_t shard);
/* Under the shard lock: epoch_retire that neither waits nor reclaims (repair
 * runs it while free lists are being rebuilt).  -ENOSPC if the ring is full. */
int epoch_defer(shmg_t *h, uint32_t shard, uint32_t ref, uint32_t kind);
/* Under the shard lock: makes room for n more retirements, reclaiming with
 * a growing back-off while a reader holds the ring full.  0, or -EBUSY at
 * deadline_ns (nothing changed). */
int epoch_make_room(shmg_t *h, uint32_t shard, uint32_t n, uint64_t deadline_ns);

/* ---- alloc.c: pages, slab blocks, extents --------------------------- */
#define PG_WORD(owner, kind, cls) ((uint32_t)(owner) | (uint32_t)(kind) << 16 | (uint32_t)(cls) << 24)
#define PG_OWNER(w) ((w)&0xffffu)
#define PG_KIND(w) (((w) >> 16) & 0xffu)
#define PG_CLASS(w) ((w) >> 24)
uint32_t alloc_class_of(uint32_t bytes);     /* NCLASSES if too big */
uint32_t alloc_class_size(uint32_t cls);
/* Under the shard lock.  Return a ref (0 = no space). */
ref_t alloc_block(shmg_t *h, uint32_t shard, uint32_t bytes);
void alloc_free_block(shmg_t *h, uint32_t shard, ref_t ref);
/* Returns the first page index + 1 of npages contiguous pages (0 = none). */
uint32_t alloc_extent(shmg_t *h, uint32_t shard, uint32_t npages);
void alloc_free_extent(shmg_t *h, uint32_t shard, uint32_t page);
void alloc_release_page(shmg_t *h, uint32_t page);
bool alloc_block_valid(const shmg_t *h, uint32_t shard, ref_t ref, uint32_t *page, uint32_t *idx,
		       uint32_t *cls);
int pool_lock(shmg_t *h);
void pool_unlock(shmg_t *h);

/* ---- index.c: the per-shard hash index ------------------------------ */
static inline struct bucket *table_buckets(struct table_header *t)
{
	return (struct bucket *)(t + 1);
}
static inline __attribute__((always_inline)) bool
index_view(const shmg_t *h, uint32_t shard, struct table_view *v)
{
	uint64_t off = load_acquire(&shard_at(h, shard)->table_off); /* pairs with resize's release */
	struct table_header *t = arena_at(h, off, sizeof(*t));
	if (unlikely(!t || off % CACHE_LINE)) /* tables start on a page */
		return false;
	uint32_t log2 = load_relaxed(&t->nbuckets_log2); /* the one read: everything sizes from it */
	if (unlikely(load_relaxed(&t->magic) != TABLE_MAGIC || log2 > 28 ||
		     !arena_at(h, off, sizeof(*t) + ((uint64_t)sizeof(struct bucket) << log2))))
		return false;
	*v = (struct table_view){t, table_buckets(t), log2, (1u << log2) - 1};
	return true;
}

/* index_view for readers: while table_off and the table's size read as
 * they did when this handle last validated them, the private checked copy
 * stands, so a lookup's bucket address does not wait for the table header.
 * A table moved, or made anew at the same offset (a resize may reuse the
 * extent of a table freed earlier) with another size, is validated afresh.
 * The magic is not read again: a table at the offset table_off names is
 * the table published there, and if a scribbled table_off names it after
 * it was freed, the checked copy still lies in the arena, so the lookup
 * reads garbage refs, which are checked like any.  Offsets are compared,
 * not pointers: base + a scribbled offset may not even be a pointer.  A
 * cache entry never validated stands for an empty table at offset 0
 * (index_views_init), so the fast test needs no NULL check. */
static inline __attribute__((always_inline)) bool
index_view_cached(shmg_t *h, uint32_t shard, struct table_view *v)
{
	struct view_cache *c = &h->views[shard];
	uint64_t off = load_acquire(c->table_off); /* pairs with resize's release */
	if (likely(off == c->off && load_relaxed(&c->v.t->nbuckets_log2) == c->v.log2)) {
		*v = c->v;
		return true;
	}
	if (unlikely(!index_view(h, shard, v)))
		return false;
	c->off = off;
	c->v = *v;
	return true;
}
/* At open, once the geometry is known: every shard's cache entry unset. */
void index_views_init(shmg_t *h);
struct table_header *index_table(const shmg_t *h, uint32_t shard);
/* The top shard_bits bits of hash; two shifts, so that 0 bits needs no
 * branch (a shift by 64 is undefined). */
static inline uint32_t shard_of(const shmg_t *h, uint64_t hash)
{
	return (uint32_t)((hash >> 1) >> (63 - h->geo.shard_bits));
}
/* Key identity of a lookup. */
struct keyref {
	const char *key;
	size_t len;
	uint32_t cluster; /* cluster ref */
	uint64_t hash;    /* sg_hash(key, seed) */
	uint32_t shard;
	uint64_t seed;    /* the cluster name's hash seed */
};
/* Recomputes the index hash of an entry (resize, repair, check). */
uint64_t entry_hash(const shmg_t *h, const struct entry *e);
/* Readers (inside a read section) and writers.  index_get also gives the
 * header copy the match was made on (see entry_read). */
struct entry *index_find(shmg_t *h, const struct keyref *k, uint8_t kind, uint32_t *slot_out);
const struct entry *index_get(shmg_t *h, const struct keyref *k, uint8_t kind, struct entry *hd);
struct entry *index_find_member(shmg_t *h, uint32_t shard, ref_t head, uint64_t mhash,
				uint32_t node, uint32_t ep_slot, uint32_t ep_gen, uint32_t *slot_out);
/* Writers (under the shard lock). */
int index_insert(shmg_t *h, uint32_t shard, uint64_t hash, ref_t ref);
void index_clear_slot(shmg_t *h, uint32_t shard, uint32_t slot_pos);
void index_replace_slot(shmg_t *h, uint32_t shard, uint32_t slot_pos, ref_t ref);
int index_create(shmg_t *h, uint32_t shard, uint32_t log2);
/* Calls fn for each entry ref in the shard's current table (readers or writers). */
typedef int (*index_visit_fn)(shmg_t *h, struct entry *e, uint32_t pos, void *arg);
int index_foreach(shmg_t *h, uint32_t shard, index_visit_fn fn, void *arg);
uint64_t member_hash(uint64_t head_hash, uint32_t slot, uint32_t gen);

/* ---- shard.c: the writer lock --------------------------------------- */
typedef bool (*entry_pred)(const shmg_t *h, const struct entry *e, const void *ctx);
/* Retirements one write may make (a removal, a replaced block, a group head
 * and the old tables of two resizes): a writer gets room for them with the
 * lock, so that it never waits for readers once it has changed something. */
#define WRITE_RETIRES_MAX 8u
/* Takes the shard lock by deadline_ns, repairing the shard if its last
 * holder died, then makes room in its limbo ring for `room` retirements.
 * Returns 0, -EBUSY (the lock stayed held, or the ring full, until the
 * deadline: nothing changed, the lock is not held) or -EIO (unrecoverable). */
int shard_lock_until(shmg_t *h, uint32_t shard, uint64_t deadline_ns, uint32_t room);
/* shard_lock_until with the handle's busy budget and room for one write,
 * for this handle's own writes: -ECONNABORTED (not held) once its endpoint
 * was terminated (remote_conflict_evict). */
int shard_lock(shmg_t *h, uint32_t shard);
void shard_unlock(shmg_t *h, uint32_t shard);
/* Is endpoint (slot, gen) of this node visible to readers?  Its live_gen
 * entry holds gen from the end of its open until its death or close is
 * noticed (endpoint.c).  Lock-free: one load, no write. */
static inline bool endpoint_visible(const shmg_t *h, uint32_t slot, uint32_t gen)
{
	return likely(slot < h->geo.max_endpoints) && load_relaxed(&h->live_gen[slot]) == gen;
}
/* Shared helpers used by registry, groups, endpoint and cluster (under lock). */
bool entry_live(const shmg_t *h, const struct entry *e);
int endpoint_alive(shmg_t *h, uint32_t slot, uint32_t gen);
void shard_count(shmg_t *h, uint32_t shard, const struct entry *e, int delta);
/* The in-flight record (shard_header.inflight_*): a write announces its
 * change before publishing it and withdraws it once the change's event has
 * gone out, so that repair_shard can deliver the event of a writer that died
 * in between. */
void inflight_set(shmg_t *h, uint32_t shard, uint32_t op, ref_t ref, ref_t old, uint32_t reason);
void inflight_clear(shmg_t *h, uint32_t shard);
/* The event of a change to a registration or membership (nothing for the
 * other kinds, or while events are suppressed). */
void shard_event(shmg_t *h, uint32_t shard, uint8_t type, uint8_t reason, const struct entry *e,
		 const struct entry *prev);
/* The two events of registration `gone` replaced by `came` (another
 * endpoint's), in one batch per monitor: events_emit_swap. */
void shard_event_swap(shmg_t *h, uint32_t shard, const struct entry *gone, uint8_t reason,
		      const struct entry *came);
/* Delivers, without removing anything, the removal events of the entries of
 * `kind` that pred() accepts (a batch is then flushed before removing them). */
void shard_emit_matching(shmg_t *h, uint32_t shard, entry_pred pred, const void *ctx,
			 uint8_t kind, int reason);
/* Drops an empty group or monitor head: out of the prefix tree and the
 * index, retired. */
void shard_drop_head(shmg_t *h, uint32_t shard, struct entry *head);
/* Unpublishes and retires one registry entry (or a single-member group,
 * which is keyed like one) / one membership of a list, logging it. */
void shard_remove_reg(shmg_t *h, uint32_t shard, struct entry *e, uint32_t pos, int reason);
void shard_remove_member(shmg_t *h, uint32_t shard, struct entry *m, uint32_t pos, int reason);
/* Removes every registration and membership pred() accepts, logging each
 * with reason.  Returns how many, or -EBUSY if the limbo ring stayed full
 * until deadline_ns (the entries not yet removed stay). */
long shard_remove_matching(shmg_t *h, uint32_t shard, entry_pred pred, const void *ctx,
			   int reason, uint64_t deadline_ns);
/* Fills a new entry block's header and bytes. */
struct entry *entry_new(shmg_t *h, uint32_t shard, uint8_t kind, const struct keyref *k,
			const void *meta, size_t meta_len, ref_t *ref_out);

/* Repair and disconnect sweeps deliver single events, to every target,
 * whatever batch the caller is building. */
struct event_mode {
	bool batching, suppress;
	uint32_t deliver_from;
};
static inline struct event_mode events_single(shmg_t *h)
{
	struct event_mode m = {h->batching, h->suppress_events, h->deliver_from};
	h->batching = h->suppress_events = false;
	h->deliver_from = 0;
	return m;
}
static inline void events_restore(shmg_t *h, struct event_mode m)
{
	h->batching = m.batching;
	h->suppress_events = m.suppress;
	h->deliver_from = m.deliver_from;
}

/* ---- repair.c -------------------------------------------------------- */
/* Under the shard lock: rebuilds everything derivable; sets repair_pending
 * to REPAIR_NONE (or REPAIR_LEAKED) only once it completed. */
int repair_shard(shmg_t *h, uint32_t shard);
/* Under the shard lock, repair_pending set: repairs if it is due.  0 or -EIO. */
int repair_if_pending(shmg_t *h, uint32_t shard);

/* ---- oplog.c --------------------------------------------------------- */
void oplog_append(shmg_t *h, uint32_t shard, uint8_t op, uint8_t reason, const struct entry *e,
		  const char *key, size_t key_len);
void oplog_mark_reset(shmg_t *h, uint32_t shard);
/* Under the shard lock: a marker record of op (OP_CLUSTER_*) for the named
 * cluster, from this node (empty key, no meta, endpoint 0.0). */
void oplog_append_marker(shmg_t *h, uint32_t shard, uint8_t op, const char *cluster);
struct oplog_header *oplog_at(const shmg_t *h, uint32_t shard);

/* ---- cluster.c ------------------------------------------------------- */
/* Validates opts->cluster and resolves it.  For writes, a named cluster must
 * be connected (-ENOTCONN).  For reads an unconnected cluster gives
 * -ENOTCONN too, which callers turn into an empty result. */
int cluster_resolve(shmg_t *h, const char *name, uint32_t *ref_out, uint64_t *seed_out);
int cluster_name_valid(const char *name);
uint64_t cluster_name_seed(const char *name);
const char *cluster_name_of(const shmg_t *h, uint32_t ref, char buf[64]);
/* Under a shard lock: is the cluster still connected (a disconnect that
 * started after the caller resolved it makes this false)? */
bool cluster_ref_valid(const shmg_t *h, uint32_t ref);
/* Under the shard lock, when its `swept` lags hdr->disconnects: removes the
 * entries of disconnected clusters, each with its event. */
void cluster_sweep_shard(shmg_t *h, uint32_t shard, uint64_t deadline_ns);
/* The host-wide cluster table's lock: taking it first appends the markers a
 * killed or busy connect/disconnect left pending, waiting for busy shards
 * until deadline (the caller's one budget).  0, -EBUSY, -EIO. */
int cluster_lock(shmg_t *h, uint64_t deadline);
void cluster_unlock(shmg_t *h);
/* Under cluster_lock: disconnects the connected cluster in slot s as
 * shmg_disconnect does (0, or -EBUSY: disconnected, a shard left to its next
 * locker). */
int cluster_disconnect_slot(shmg_t *h, uint32_t s, uint64_t deadline);
/* Whether some connect or disconnect still owes markers to a change log. */
bool cluster_markers_pending(const shmg_t *h);

/* ---- lease.c --------------------------------------------------------- */
/* The reaper's check of TTL leases: expires those due (see lease.c) and
 * returns the milliseconds until the next one is due (INT32_MAX: none). */
int lease_check(shmg_t *h);
#define DEFAULT_CLUSTER_SEED 0x9e3779b97f4a7c15ull
/* The default cluster (slot 0) is always connected: its ref needs no lookup. */
static inline uint32_t cluster_default_ref(const shmg_t *h)
{
	return load_relaxed(&cluster_at(h, 0)->gen) << 16;
}
static inline uint32_t cluster_slot_of(uint32_t ref) { return ref & 0xffffu; }
/* The hash seed of the cluster an entry's ref names (its name's hash). */
static inline uint64_t cluster_ref_seed(const shmg_t *h, uint32_t ref)
{
	uint32_t s = cluster_slot_of(ref);
	return s && s < h->geo.max_clusters ? load_relaxed(&cluster_at(h, s)->name_hash)
					      : DEFAULT_CLUSTER_SEED;
}

/* ---- key checks (registry.c) ---------------------------------------- */
#define KEY_WRITE 1 /* register/unregister/join/leave: no trailing '/' */
int key_prepare(shmg_t *h, const char *key, size_t len, const struct shmg_opts *o, int flags,
		struct keyref *k);
/* Under the lock: publishes a new registration of k / replaces the one at
 * index position pos in place (nothing if the metadata is the same), with
 * the handle's identity or h->author's; *ref_out is the entry now held. */
int reg_add(shmg_t *h, const struct keyref *k, const void *meta, size_t meta_len, ref_t *ref_out);
int reg_replace(shmg_t *h, const struct keyref *k, struct entry *old, uint32_t pos,
		const void *meta, size_t meta_len, ref_t *ref_out);
/* 0, or -EINVAL for metadata longer than meta_max or NULL with a length. */
int meta_check(const shmg_t *h, const void *meta, size_t len);
/* Does e (a block) carry exactly these metadata bytes (re-register, re-join)? */
bool meta_equal(const shmg_t *h, const struct entry *e, const void *meta, size_t len);
/* Readers: e and keyholder are blocks, ehd and khd their header copies. */
ssize_t meta_extract(shmg_t *h, const struct shmg_opts *o, const struct entry *e,
		     const struct entry *ehd, const void **out);
void entry_fill_public(shmg_t *h, const struct entry *e, const struct entry *ehd,
		       const struct entry *keyholder, const struct entry *khd,
		       struct shmg_entry *pub, char clbuf[64]);

/* ---- mailbox.c ------------------------------------------------------- */
struct mailbox_header *mailbox_at(const shmg_t *h, uint32_t slot);
int mailbox_init(shmg_t *h, uint32_t slot);
int mailbox_reset(shmg_t *h, uint32_t slot, uint32_t gen);
void mailbox_retire(shmg_t *h, uint32_t slot, uint32_t gen);
int mb_batch_add(struct mb_batch *b, const struct mailbox_record *r, const char *cluster,
		 const void *key, const void *meta, const void *prev);
/* 0 appended; -EAGAIN counted as dropped (full, or the lock not had);
 * -ESRCH the slot has another owner now. */
int mailbox_deliver(shmg_t *h, uint32_t slot, uint32_t gen, struct mb_batch *b);
/* At the start of a write: prefetches the mailbox lines the handle's last
 * delivery touched, the likeliest target of this write's event. */
void mailbox_warm(const shmg_t *h);
/* Binds a wakeup socket to a fresh unguessable name; *nonce names it. */
int wake_bind(const shmg_t *h, const char *what, uint64_t *nonce);
void wake_send(shmg_t *h, const char *what, uint64_t nonce);
void wake_drain(int fd);
/* The handle's wakeup socket and shmg_fd's epoll set, before its endpoint
 * is claimed (handle.c). */
int wake_open(shmg_t *h);
uint64_t wake_nonce_new(void);
/* Redoes the wakeups of producers that died holding a mailbox lock (reap). */
void mailbox_rewake_orphans(shmg_t *h);

/* ---- wake_fifo.c ----------------------------------------------------- */
/* Makes this handle's FIFO for endpoint (slot, gen) into h->fifo and adds it
 * to the mb_fd set; on failure h->fifo.fd is -1 (woken by datagram). */
int wake_fifo_create(shmg_t *h, uint32_t slot, uint32_t gen);
/* Removes FIFO (slot, gen, nonce) if it is one of inode ino owned by uid:
 * 0 removed or gone, -errno left there (another user's: -EPERM). */
int wake_fifo_remove(const shmg_t *h, uint32_t slot, uint32_t gen, uint64_t nonce, uint64_t ino,
		     uint32_t uid);
/* Writes one byte to consumer (slot, gen)'s FIFO as its mailbox header
 * advertises it; false: no usable FIFO, the caller sends the datagram. */
bool wake_fifo_send(shmg_t *h, uint32_t slot, uint32_t gen, const struct mailbox_header *mb);
/* Empties the handle's own FIFO (bounded). */
void wake_fifo_drain(shmg_t *h);
void wake_fifo_reset_cache(shmg_t *h);
/* close() only: safe in a fork child handler. */
void wake_fifo_close_cache(shmg_t *h);
/* Removes every wakeup FIFO left in /dev/shm for arena `name` (destroy). */
void wake_fifo_remove_all(const char *name);

/* ---- monitor.c ------------------------------------------------------- */
uint32_t mon_cluster_tag(uint64_t seed);
void record_fill(shmg_t *h, struct mailbox_record *r, uint8_t type, uint8_t reason,
		 const struct entry *e, const char *cluster, size_t key_len, size_t meta_len,
		 size_t prev_len, bool has_prev);
void targets_deliver(shmg_t *h, const struct mailbox_record *r, const char *cluster,
		     const void *key, const void *meta, const void *prev);
/* Routes a change of e (key given separately: members have none) to the
 * monitors of its key; prev is the replaced entry, if any. */
void events_emit(shmg_t *h, uint8_t type, uint8_t reason, const struct entry *e, const char *key,
		 size_t key_len, const struct entry *prev);
/* Registration `gone` replaced by `came` of the same key (remote_replace):
 * gone's SHMG_EV_UNREGISTERED with reason, then came's SHMG_EV_REGISTERED,
 * as one batch to each monitor of the key, so that the delivery progress
 * of the one in-flight record covers both. */
void events_emit_swap(shmg_t *h, const struct entry *gone, uint8_t reason,
		      const struct entry *came);
void events_batch_begin(shmg_t *h);
void events_batch_flush(shmg_t *h);
/* Other nodes holding entries of a key (message_targets). */
struct node_set {
	uint32_t node[MAX_NODES];
	uint32_t n;
};
/* A message's recipients on this host: targets the live local endpoints
 * registered at or members of k (each once) and returns their number; if
 * `remote` is not NULL, it gets the other nodes holding entries of k in
 * this arena's view. */
long message_targets(shmg_t *h, const struct keyref *k, struct node_set *remote);
/* Delivers the message to the targets message_targets chose, as from
 * `sender` (a header copy: node, ep_slot, ep_gen, pid; NULL: this handle's
 * endpoint). */
void message_send(shmg_t *h, const struct keyref *k, const void *msg, size_t len,
		  const struct entry *sender);

/* ---- groups.c: lists shared by groups and monitors (under the lock) -- */
int list_join(shmg_t *h, const struct keyref *k, uint8_t head_kind, const void *meta,
	      size_t meta_len);
int list_leave(shmg_t *h, const struct keyref *k, uint8_t head_kind);
/* Readers: calls fn(member block, its header copy, arg) for each member on
 * the list of head (hhd: its copy) until fn returns non-zero, which is
 * returned.  A damaged list (a link off the arena, a member of another head,
 * a cycle) ends the walk early. */
typedef int (*member_fn)(shmg_t *h, const struct entry *m, const struct entry *mhd, void *arg);
int list_walk(shmg_t *h, const struct entry *head, const struct entry *hhd, member_fn fn,
	      void *arg);

/* ---- prefix.c: the per-shard prefix tree of group heads -------------- */
/* Length of the parent prefix of key[0..len): its longest '/'-terminated
 * proper prefix, 0 if it has none.  Applied again, it gives each prefix. */
size_t prefix_parent_len(const char *key, size_t len);
/* Under the lock: links a new, indexed group head (k: its key) under its
 * parent prefix node, making missing nodes.  0, or -ENOSPC (not linked). */
int prefix_link_head(shmg_t *h, const struct keyref *k, struct entry *head);
/* Under the lock, for a head published with one store (a single-member
 * group): makes its parent prefix node beforehand (0 or -ENOSPC, nothing
 * left behind), so that prefix_link_head cannot fail afterwards; or prunes
 * it again if the head is not published after all. */
int prefix_make_parent(shmg_t *h, const struct keyref *k);
void prefix_drop_parent(shmg_t *h, const struct keyref *k);
/* Under the lock: puts `new` in `old`'s place on its parent's list (one
 * release store), if old is on one. */
void prefix_replace_child(shmg_t *h, struct entry *old, struct entry *new);
/* Under the lock: unlinks a group head about to leave the index; its parent
 * node, if left without children, is parked (see prefix.c). */
void prefix_unlink_head(shmg_t *h, uint32_t shard, struct entry *head);
/* Under the shard lock: prunes the shard's parked nodes that are still
 * childless and empties the ring. */
void prefix_prune_parked(shmg_t *h, uint32_t shard);
/* Readers: calls fn(head, its header copy, arg) for each group head of
 * `shard` below prefix p (p->key ends in '/'; p->shard is ignored) until fn
 * returns non-zero, which is returned.  Bounded on any arena. */
int prefix_walk(shmg_t *h, const struct keyref *p, uint32_t shard, member_fn fn, void *arg);
/* Does c (head or node) fit under node n by kind, cluster and key?  (n, c:
 * blocks; nhd, chd: their checked header copies.) */
bool prefix_child_fits(const struct entry *n, const struct entry *nhd, const struct entry *c,
		       const struct entry *chd);
/* Repair, under the lock (see prefix.c): before reachable blocks are
 * marked, and once blocks can be allocated again.  0 or -ENOMEM. */
int prefix_repair_lists(shmg_t *h, uint32_t shard, uint64_t max_list);
int prefix_repair_links(shmg_t *h, uint32_t shard, uint64_t max_list);

/* ---- reaper.c -------------------------------------------------------- */
void reaper_close(shmg_t *h);
void reaper_drop_after_fork(shmg_t *h);
void reaper_poke(shmg_t *h);
uint32_t reaper_alive_pid(shmg_t *h);

/* ---- endpoint.c ------------------------------------------------------ */
int endpoint_claim(shmg_t *h);
int endpoint_release(shmg_t *h, uint32_t slot, uint32_t gen, int reason);
int endpoint_reap_all(shmg_t *h);
/* Ends live endpoint (slot, gen) of this node for `reason` (its terminated
 * field already set): hidden, every entry and monitor removed in one batch
 * as a death, the slot left CLOSING until its owner closes it or dies.
 * Idempotent: a reap finishes one whose evictor died (endpoint_reap_all).
 * 0, -ENOENT (not that endpoint any more, or its terminated field not set),
 * -EBUSY, -EIO. */
int endpoint_terminate(shmg_t *h, uint32_t slot, uint32_t gen);
int proc_start_time(pid_t pid, uint64_t *out);

#endif
