/* SPDX-License-Identifier: MIT */
/*
 * Size classes and what rides on them (lib/alloc.c, lib/probe.h, lib/scan.h).
 *
 *  - The classes step by 16 bytes up to 192: each block size is the smallest
 *    class that holds it, a ref can address every block, and the largest
 *    entry the limits allow still has a class.
 *  - The key hash is the one HASH_ID names: pinned values for every length
 *    up to 72 (a faster hash must not change them: a different one needs a
 *    new HASH_ID), and the NUL it reports wherever one sits.
 *  - The hash reads nothing outside the key, whatever its length and place,
 *    and every byte and the length count.
 *  - The lookup's byte helpers (NUL scan, compare, copy), which read whole
 *    words and vectors that overlap at the tail, answer as memchr, memcmp and
 *    memcpy do for every length up to 130 and never touch a byte outside the
 *    n they are given: the bytes sit flush against inaccessible pages.
 *  - Entries of every small class, most of them straddling two cache lines,
 *    read back whole from another process by the copying, zero-copy and
 *    batched lookups.
 *  - A page of the smallest class holds 1365 blocks: more than the 1024 a
 *    64-byte minimum left room for in the repair and check bitmaps.  A full
 *    page with holes survives a repair (a writer killed holding the lock) and
 *    shmg_check finds nothing wrong.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "scan.h"
#include "tc.h"

static struct shmg_config one_shard(void)
{
	struct shmg_config c;

	memset(&c, 0, sizeof(c));
	c.shards = 1;
	return c;
}

/* ---- the class table ------------------------------------------------- */

START_TEST(test_classes)
{
	ck_assert_uint_eq(alloc_class_size(0), CLASS_MIN_BYTES);
	for (uint32_t c = 0; c < NCLASSES; c++) {
		uint32_t size = alloc_class_size(c);
		ck_assert_uint_eq(size % (1u << REF_SHIFT), 0);
		if (c)
			ck_assert_uint_gt(size, alloc_class_size(c - 1));
		if (size <= 192)
			ck_assert_uint_eq(size, CLASS_MIN_BYTES + 16 * c);
		ck_assert_uint_le(PAGE_SIZE / size, SCAN_BLOCKS_PER_PAGE);
	}
	ck_assert_uint_eq(alloc_class_size(NCLASSES), 0);
	for (uint32_t bytes = 1; bytes <= alloc_class_size(NCLASSES - 1); bytes++) {
		uint32_t c = alloc_class_of(bytes);
		ck_assert_uint_lt(c, NCLASSES);
		ck_assert_uint_ge(alloc_class_size(c), bytes);
		ck_assert(c == 0 || alloc_class_size(c - 1) < bytes);
	}
	ck_assert_uint_eq(alloc_class_of(alloc_class_size(NCLASSES - 1) + 1), NCLASSES);
	/* A registration of a 22-30-byte key and 16 bytes of metadata. */
	ck_assert_uint_eq(alloc_class_size(alloc_class_of(entry_size(K_REG, 22, 16))), 80);
	ck_assert_uint_eq(alloc_class_size(alloc_class_of(entry_size(K_REG, 30, 16))), 80);
	/* The largest entry the limits allow. */
	ck_assert_uint_lt(alloc_class_of((uint32_t)entry_size(K_MONHEAD, SHMG_KEY_MAX_LIMIT,
							       SHMG_META_MAX_LIMIT)),
			  NCLASSES);
}
END_TEST

/* ---- the hash ---------------------------------------------------------- */

/* Fold of sg_hash over lengths 0..72 of a fixed byte pattern under three
 * seeds, from the implementation HASH_ID 2 names (HASH_ID 1, arena layouts
 * 1..6, folded to 0x09856fe3c285b4f7).  A change of either moves both. */
#define HASH_ID_PINNED 2u
#define HASH_FOLD_PINNED 0x671c2f489c979fe3ull

START_TEST(test_hash_pinned)
{
	static const uint64_t seeds[] = {DEFAULT_CLUSTER_SEED, 0, 0x0123456789abcdefull};
	uint8_t buf[72];
	uint64_t fold = 0;

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 37 + 11) | 1; /* never NUL */
	for (size_t s = 0; s < sizeof(seeds) / sizeof(seeds[0]); s++) {
		for (size_t len = 0; len <= sizeof(buf); len++) {
			uint64_t h = sg_hash_inline(buf, len, seeds[s]);
			ck_assert(!bytes_have_nul(buf, len));
			ck_assert_uint_eq(h, sg_hash(buf, len, seeds[s]));
			fold = sg_mix(fold ^ h, 0x9e3779b97f4a7c15ull) + len;
		}
	}
	ck_assert_uint_eq(HASH_ID, HASH_ID_PINNED);
	ck_assert_msg(fold == HASH_FOLD_PINNED, "hash values changed: fold %#llx",
		      (unsigned long long)fold);
	/* A NUL anywhere is seen, whatever the length. */
	for (size_t len = 1; len <= 40; len++) {
		for (size_t at = 0; at < len; at++) {
			uint8_t k[40];
			memcpy(k, buf, len);
			k[at] = 0;
			ck_assert_msg(bytes_have_nul(k, len), "NUL at %zu of %zu missed", at, len);
		}
	}
}
END_TEST

/* ---- the lookup's byte helpers ---------------------------------------- */

#define HELPER_MAX 130

/* Two usable pages between two inaccessible ones. */
static uint8_t *guarded_pages(size_t page)
{
	uint8_t *m = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ck_assert_ptr_ne(m, MAP_FAILED);
	ck_assert_int_eq(mprotect(m, page, PROT_NONE), 0);
	ck_assert_int_eq(mprotect(m + 3 * page, page, PROT_NONE), 0);
	return m + page;
}

/* n bytes of the usable span starting right after the guard below it (or
 * ending right before the one above), filled with never-NUL bytes. */
static uint8_t *flush(uint8_t *span, size_t page, size_t n, bool at_end, uint8_t salt)
{
	uint8_t *p = at_end ? span + 2 * page - n : span;

	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)((i * 37 + salt) | 1);
	return p;
}

START_TEST(test_byte_helpers_in_bounds)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	uint8_t *sa = guarded_pages(page), *sb = guarded_pages(page);
	uint8_t out[HELPER_MAX + 32];

	for (size_t n = 0; n <= HELPER_MAX; n++) {
		for (int place = 0; place < 4; place++) {
			uint8_t *a = flush(sa, page, n, place & 1, 11);
			uint8_t *b = flush(sb, page, n, place & 2, 11);

			ck_assert(!bytes_have_nul(a, n));
			ck_assert(bytes_equal(a, b, n));
			for (size_t j = 0; j < n; j++) {
				uint8_t keep = a[j];

				a[j] = 0;
				ck_assert_msg(bytes_have_nul(a, n), "NUL at %zu of %zu missed", j, n);
				a[j] = keep ^ 0x80; /* top bit: no signed byte compare */
				ck_assert_msg(!bytes_have_nul(a, n), "no NUL, %zu bytes", n);
				ck_assert_msg(!bytes_equal(a, b, n) && !bytes_equal(b, a, n),
					      "byte %zu of %zu differs unseen", j, n);
				a[j] = keep;
			}
			/* Copies exactly n bytes, from a guarded source, into a
			 * buffer whose bytes around them must stay as they were. */
			memset(out, 0xa5, sizeof(out));
			bytes_copy(out + 16, a, n);
			ck_assert(memcmp(out + 16, a, n) == 0);
			for (size_t i = 0; i < sizeof(out); i++)
				if (i < 16 || i >= 16 + n)
					ck_assert_msg(out[i] == 0xa5, "copy of %zu wrote byte %zu", n, i);
			/* And into guarded memory, flush against either guard. */
			uint8_t *d = flush(sb, page, n, place & 2, 99);
			bytes_copy(d, a, n);
			ck_assert(memcmp(d, a, n) == 0);
		}
	}
	munmap(sa - page, 4 * page);
	munmap(sb - page, 4 * page);
}
END_TEST

/* The hash reads its words and overlapping last 16 bytes only inside the
 * key, whatever its length and placement against inaccessible pages (a read
 * outside faults); it answers the same wherever the bytes sit; every byte
 * counts (a change of any one changes the value); and the length counts,
 * also where overlapping windows see the same bytes (runs of one byte). */
START_TEST(test_hash_in_bounds_every_byte)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	uint8_t *span = guarded_pages(page);
	uint64_t run[HELPER_MAX + 1];

	for (size_t n = 0; n <= HELPER_MAX; n++) {
		uint64_t h = sg_hash(flush(span, page, n, false, 11), n, DEFAULT_CLUSTER_SEED);
		uint8_t *a = flush(span, page, n, true, 11);

		ck_assert_uint_eq(sg_hash(a, n, DEFAULT_CLUSTER_SEED), h);
		for (size_t j = 0; j < n; j++) {
			a[j] ^= 0x80;
			ck_assert_msg(sg_hash(a, n, DEFAULT_CLUSTER_SEED) != h,
				      "byte %zu of %zu does not count", j, n);
			a[j] ^= 0x80;
		}
		memset(a, 'a', n);
		run[n] = sg_hash(a, n, DEFAULT_CLUSTER_SEED);
		for (size_t m = 0; m < n; m++)
			ck_assert_msg(run[m] != run[n], "runs of %zu and %zu bytes collide", m, n);
	}
	munmap(span - page, 4 * page);
}
END_TEST

/* ---- every small class, read from another process ---------------------- */

#define NSIZES 300

/* Key i: "c/<i>-" padded to a length that cycles through 4..40 bytes, with
 * metadata of 0..240 bytes, so entries take every class up to 320 bytes. */
static size_t class_key(int i, char *key)
{
	size_t len = 4 + (size_t)i % 37;
	char tmp[64];

	snprintf(tmp, sizeof(tmp), "c/%d-", i);
	memset(key, 'x', len);
	memcpy(key, tmp, strlen(tmp) < len ? strlen(tmp) : len);
	return len;
}

static size_t class_meta(int i, uint8_t *meta)
{
	size_t len = (size_t)(i * 7) % 241;

	for (size_t j = 0; j < len; j++)
		meta[j] = (uint8_t)(i + j * 13);
	return len;
}

/* Child: every key by the three lookups, each answer checked byte for byte. */
static int read_every_class(void *arg)
{
	const shmg_id_t *owner = arg;
	shmg_t *h = NULL;
	char key[64];
	uint8_t want[256], got[256];

	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 10;
	for (int i = 0; i < NSIZES; i++) {
		size_t klen = class_key(i, key), mlen = class_meta(i, want), glen = 0;
		shmg_id_t id;
		struct shmg_entry e;
		struct shmg_key k = {key, klen};
		int rc = 0;

		if (shmg_lookup(h, key, klen, &id, got, sizeof(got), &glen, NULL) != 0 ||
		    glen != mlen || memcmp(got, want, mlen) != 0 || !shmg_id_equal(id, *owner))
			return 11;
		if (shmg_read_begin(h) != 0)
			return 12;
		if (shmg_lookup_ref(h, key, klen, &e, NULL) != 0 || e.key_len != klen ||
		    memcmp(e.key, key, klen) != 0 || e.meta_len != mlen ||
		    (mlen && memcmp(e.meta, want, mlen) != 0))
			return 13;
		if (shmg_lookup_many_ref(h, &k, 1, &e, &rc, NULL) != 1 || rc != 0 ||
		    e.meta_len != mlen || (mlen && memcmp(e.meta, want, mlen) != 0))
			return 14;
		if (shmg_read_end(h) != 0)
			return 15;
	}
	return shmg_close(h) == 0 ? 0 : 16;
}

START_TEST(test_every_class_across_processes)
{
	struct shmg_config c = one_shard();
	shmg_t *h = tc_open(tc_arena, &c);
	shmg_id_t *owner = tc_shared_alloc(sizeof(*owner));
	char key[64];
	uint8_t meta[256];
	bool used[NCLASSES] = {false};
	int straddling = 0;

	*owner = shmg_self(h);
	for (int i = 0; i < NSIZES; i++) {
		size_t klen = class_key(i, key), mlen = class_meta(i, meta);
		struct shmg_entry e;

		TC_EQ(shmg_register(h, key, klen, meta, mlen, NULL), 0);
		TC_EQ(shmg_read_begin(h), 0);
		TC_EQ(shmg_lookup_ref(h, key, klen, &e, NULL), 0);
		uint64_t off = (uint64_t)((const uint8_t *)e.key - sizeof(struct entry) - h->base);
		TC_EQ(shmg_read_end(h), 0);
		ck_assert_uint_eq(off % (1u << REF_SHIFT), 0);
		straddling += off % CACHE_LINE + entry_size(K_REG, klen, mlen) > CACHE_LINE;
		used[alloc_class_of((uint32_t)entry_size(K_REG, klen, mlen))] = true;
	}
	for (uint32_t cl = 0; alloc_class_size(cl) <= 320; cl++)
		ck_assert_msg(used[cl], "no entry of class %u", cl);
	ck_assert_int_gt(straddling, NSIZES / 2);
	TC_EQ(tc_wait_exit(tc_fork(read_every_class, owner), 20000), 0);
	TC_EQ(shmg_check(h, NULL, NULL), 0);
	shmg_close(h);
}
END_TEST

/* ---- a full page of the smallest class through a repair --------------- */

#define NSMALL 1500 /* more than one page of 48-byte blocks (1365) */

static size_t small_key(int i, char *key)
{
	return (size_t)snprintf(key, 16, "s%d", i); /* 2-5 bytes: 48-byte blocks */
}

static int locks_and_dies(void *arg)
{
	shmg_t *h = NULL;

	(void)arg;
	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 10;
	if (shard_lock(h, 0) != 0)
		return 11;
	raise(SIGKILL);
	return 12;
}

START_TEST(test_smallest_class_repair)
{
	struct shmg_config c = one_shard();
	shmg_t *h = tc_open(tc_arena, &c);
	char key[16];
	struct shmg_info before, after;

	for (int i = 0; i < NSMALL; i++)
		TC_EQ(shmg_register(h, key, small_key(i, key), NULL, 0, NULL), 0);
	ck_assert_uint_eq(alloc_class_of((uint32_t)entry_size(K_REG, 5, 0)), 0);
	/* Holes in both pages' free lists, past block 1024 of the first. */
	for (int i = 0; i < NSMALL; i += 3)
		TC_EQ(shmg_unregister(h, key, small_key(i, key), NULL), 0);
	TC_EQ(shmg_info(h, &before), 0);

	TC_EQ(tc_wait_exit(tc_fork(locks_and_dies, NULL), 20000), TC_KILLED(SIGKILL));
	TC_EQ(shmg_register(h, SHMG_KEY("after/repair"), NULL, 0, NULL), 0);
	TC_EQ(shmg_info(h, &after), 0);
	ck_assert_uint_eq(after.shard_repairs, before.shard_repairs + 1);

	TC_EQ(shmg_check(h, NULL, NULL), 0);
	for (int i = 0; i < NSMALL; i++)
		TC_EQ(shmg_lookup(h, key, small_key(i, key), NULL, NULL, 0, NULL, NULL),
		      i % 3 ? 0 : -ENOENT);
	/* The freed blocks are reused, not leaked or handed out twice. */
	for (int i = 0; i < NSMALL; i += 3)
		TC_EQ(shmg_register(h, key, small_key(i, key), NULL, 0, NULL), 0);
	TC_EQ(shmg_check(h, NULL, NULL), 0);
	TC_EQ(shmg_info(h, &after), 0);
	ck_assert_uint_le(after.pages_used, before.pages_used);
	shmg_close(h);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("alloc");
	TCase *tc = tc_case(s, "classes", 30);

	tcase_add_test(tc, test_classes);
	tcase_add_test(tc, test_hash_pinned);
	tcase_add_test(tc, test_byte_helpers_in_bounds);
	tcase_add_test(tc, test_hash_in_bounds_every_byte);
	tc = tc_case(s, "entries", 60);
	tcase_add_test(tc, test_every_class_across_processes);
	tcase_add_test(tc, test_smallest_class_repair);
	return tc_run(s);
}
