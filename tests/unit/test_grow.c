/* SPDX-License-Identifier: MIT */
/*
 * A growing arena: the configuration of its maximum, growth when the pages
 * run out (and -ENOSPC only at the maximum), handles opened before a growth
 * reading what lies in the new pages, and a published page count that
 * disagrees with the object (scribbled, or left by a grower that died).
 * The multi-process and crash cases are in tests/integration/test_grow_procs.c.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "tc.h"

#define BOUND 200000
#define META 1000

static struct shmg_config small_cfg(uint64_t max)
{
	struct shmg_config c;

	memset(&c, 0, sizeof(c));
	c.arena_size = 4u << 20;
	c.arena_max = max;
	c.shards = 2;
	c.oplog_bytes = 64 * 1024;
	c.max_endpoints = 16;
	c.max_clusters = 4;
	return c;
}

static char meta[META];

static uint64_t object_size(void)
{
	char path[300];
	struct stat st;

	tc_arena_path(tc_arena, path, sizeof(path));
	ck_assert_int_eq(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

/* Registers prefix<i> from 0 on until -ENOSPC; returns how many. */
static long fill(shmg_t *h, const char *prefix)
{
	char key[32];
	long i;

	for (i = 0; i < BOUND; i++) {
		snprintf(key, sizeof(key), "%s%ld", prefix, i);
		memcpy(meta, &i, sizeof(i));
		int rc = shmg_register(h, SHMG_KEY(key), meta, sizeof(meta), NULL);
		if (rc == -ENOSPC)
			break;
		ck_assert_msg(rc == 0, "register %s: %d (%s)", key, rc, shmg_strerror(rc));
	}
	ck_assert_msg(i < BOUND, "arena never filled after %d entries", BOUND);
	return i;
}

/* Every prefix<i> below n reads back with its own metadata through h. */
static void verify(shmg_t *h, const char *prefix, long n)
{
	char key[32], out[META];
	size_t ml;

	for (long i = 0; i < n; i++) {
		long got;

		snprintf(key, sizeof(key), "%s%ld", prefix, i);
		TC_EQ(shmg_lookup(h, SHMG_KEY(key), NULL, out, sizeof(out), &ml, NULL), 0);
		ck_assert_uint_eq(ml, META);
		memcpy(&got, out, sizeof(got));
		ck_assert_int_eq(got, i);
	}
}

START_TEST(test_config_validation)
{
	struct shmg_config c = small_cfg(0);
	shmg_t *h = NULL;

	c.arena_max = c.arena_size - 1; /* below the initial size */
	TC_EQ(shmg_open(tc_arena, &c, &h), -EINVAL);
	c.arena_max = (64ull << 30) + 1; /* above the largest arena */
	TC_EQ(shmg_open(tc_arena, &c, &h), -EINVAL);
	/* 64 GiB needs 32 MiB of page descriptors: not in a 4 MiB arena. */
	c.arena_max = 64ull << 30;
	TC_EQ(shmg_open(tc_arena, &c, &h), -EINVAL);
	c = small_cfg(0);
	c.reserved0 = 1;
	TC_EQ(shmg_open(tc_arena, &c, &h), -EINVAL);
	c = small_cfg(0);
	c.reserved[1] = 1;
	TC_EQ(shmg_open(tc_arena, &c, &h), -EINVAL);
	ck_assert_ptr_null(h);
	ck_assert(!tc_arena_exists(tc_arena));
}
END_TEST

START_TEST(test_default_maximum)
{
	struct shmg_config c = small_cfg(0);
	struct shmg_info in;
	shmg_t *h = tc_open(tc_arena, &c);

	TC_EQ(shmg_info(h, &in), 0);
	ck_assert_uint_eq(in.arena_max, 8 * c.arena_size);
	ck_assert_uint_eq(in.arena_initial, c.arena_size);
	ck_assert_uint_eq(in.arena_size, c.arena_size);
	ck_assert_uint_lt(in.pages_total, in.pages_max);
	ck_assert_uint_eq(in.grows, 0);
	/* Created the size asked for: growth is not ahead of use. */
	ck_assert_uint_eq(object_size(), c.arena_size);
	shmg_close(h);
}
END_TEST

START_TEST(test_attach_mismatch)
{
	struct shmg_config c = small_cfg(12u << 20), other;
	shmg_t *h = tc_open(tc_arena, &c), *h2 = NULL;

	other = small_cfg(16u << 20);
	TC_EQ(shmg_open(tc_arena, &other, &h2), -EEXIST);
	ck_assert_ptr_null(h2);
	/* The same maximum, or none given, attaches. */
	h2 = tc_open(tc_arena, &c);
	shmg_close(h2);
	other = small_cfg(0);
	h2 = tc_open(tc_arena, &other);
	shmg_close(h2);
	h2 = tc_open(tc_arena, NULL);
	shmg_close(h2);
	shmg_close(h);
}
END_TEST

/* A full arena grows, a handle opened before reads the new pages, and
 * -ENOSPC comes only once the object is at its maximum. */
START_TEST(test_grows_to_max_then_enospc)
{
	struct shmg_config fixed = small_cfg(4u << 20);
	struct shmg_info in;
	const char *fixed_name = tc_new_name();
	shmg_t *f = tc_open(fixed_name, &fixed);
	long n_fixed = fill(f, "k/");
	shmg_close(f);
	TC_EQ(shmg_destroy(fixed_name), 0);

	struct shmg_config c = small_cfg(16u << 20);
	shmg_t *w = tc_open(tc_arena, &c);
	shmg_t *early = tc_open(tc_arena, NULL); /* opened before any growth */
	long n = fill(w, "k/");

	ck_assert_msg(n > 3 * n_fixed, "%ld entries at 16 MiB, %ld at 4 MiB", n, n_fixed);
	TC_EQ(shmg_info(w, &in), 0);
	ck_assert_uint_gt(in.grows, 0);
	ck_assert_uint_eq(in.pages_total, in.pages_max);
	ck_assert_uint_le(in.arena_size, in.arena_max);
	ck_assert_uint_gt(in.arena_size, in.arena_max - 2 * 65536);
	ck_assert_uint_eq(object_size(), in.arena_size);
	/* Still full on retries of the key that did not fit, nothing half-written. */
	char key[32];
	snprintf(key, sizeof(key), "k/%ld", n);
	for (int i = 0; i < 5; i++)
		TC_EQ(shmg_register(w, SHMG_KEY(key), meta, sizeof(meta), NULL), -ENOSPC);
	TC_EQ(shmg_registry_count(early, NULL), n);
	verify(early, "k/", n);
	TC_EQ(shmg_info(early, &in), 0);
	ck_assert_uint_eq(in.pages_total, in.pages_max);
	TC_ASSERT_CLEAN(early);
	/* The grown pages are reused once freed. */
	for (long i = 0; i < n; i += 2) {
		snprintf(key, sizeof(key), "k/%ld", i);
		TC_EQ(shmg_unregister(w, SHMG_KEY(key), NULL), 0);
	}
	ck_assert_int_gt(fill(early, "again/"), n / 3);
	TC_ASSERT_CLEAN(w);
	shmg_close(early);
	shmg_close(w);
}
END_TEST

/* A handle attached after growth maps the grown object whole. */
START_TEST(test_attach_after_growth)
{
	struct shmg_config c = small_cfg(8u << 20);
	shmg_t *w = tc_open(tc_arena, &c);
	long n = fill(w, "k/");
	shmg_t *late = tc_open(tc_arena, NULL);

	verify(late, "k/", n);
	TC_ASSERT_CLEAN(late);
	shmg_close(late);
	shmg_close(w);
}
END_TEST

/* The published page count is shared memory: a scribbled value is put
 * right from the object's size; it never hands out pages past the end. */
START_TEST(test_published_count_untrusted)
{
	static const uint32_t values[] = {0, 1, 0xffffffffu, 0x7fffffffu};
	struct shmg_config c = small_cfg(8u << 20);

	for (size_t v = 0; v < sizeof(values) / sizeof(values[0]); v++) {
		const char *name = tc_new_name();
		shmg_t *h = tc_open(name, &c);
		size_t size;
		struct arena_header *hdr = tc_map_arena(name, &size);
		long before = fill(h, "a/");
		uint32_t held = hdr->pages_avail;

		/* Free a few, then lie about the count. */
		char key[32];
		for (long i = 0; i < 16; i++) {
			snprintf(key, sizeof(key), "a/%ld", i);
			TC_EQ(shmg_unregister(h, SHMG_KEY(key), NULL), 0);
		}
		hdr->pages_avail = values[v];
		/* The check says so, and writes go on within the object. */
		char report[512];
		ck_assert_int_gt(tc_check(h, report, sizeof(report)), 0);
		long again = fill(h, "b/");
		ck_assert_int_ge(again, 1);
		ck_assert_uint_eq(hdr->pages_avail, held);
		TC_EQ(shmg_registry_count(h, NULL), before - 16 + again);
		TC_ASSERT_CLEAN(h);
		munmap(hdr, size);
		shmg_close(h);
	}
}
END_TEST

/* A grower that died between sizing the object and publishing leaves a
 * count below the object's: the next claim publishes what is there. */
START_TEST(test_unpublished_growth_adopted)
{
	struct shmg_config c = small_cfg(8u << 20);
	shmg_t *h = tc_open(tc_arena, &c);
	size_t size;
	struct arena_header *hdr = tc_map_arena(tc_arena, &size);
	uint32_t start = hdr->pages_avail;
	uint64_t bigger = hdr->off_pages + ((uint64_t)(start + 8) << PAGE_SHIFT);
	char path[300];

	tc_arena_path(tc_arena, path, sizeof(path));
	ck_assert_int_eq(truncate(path, (off_t)bigger), 0);
	TC_ASSERT_CLEAN(h); /* a count below the object's is no damage */
	long n = fill(h, "k/");
	ck_assert_int_gt(n, 0);
	ck_assert_uint_eq(hdr->pages_avail, hdr->npages);
	TC_ASSERT_CLEAN(h);
	munmap(hdr, size);
	shmg_close(h);
}
END_TEST

/* Offsets into the reservation past the object's end (what a scribbler
 * could write) are errors for every process, never a fault. */
START_TEST(test_offsets_past_the_end)
{
	struct shmg_config c = small_cfg(16u << 20);
	shmg_t *h = tc_open(tc_arena, &c);
	size_t size;
	char key[32], out[META];
	size_t ml;

	for (int i = 0; i < 32; i++) {
		snprintf(key, sizeof(key), "k/%d", i);
		TC_EQ(shmg_register(h, SHMG_KEY(key), "v", 1, NULL), 0);
	}
	shmg_t *reader = tc_open(tc_arena, NULL);
	struct arena_header *hdr = tc_map_arena(tc_arena, &size);
	uint64_t saved[2];
	for (uint32_t s = 0; s < 2; s++) {
		struct shard_header *sh =
			(void *)((uint8_t *)hdr + hdr->off_shards + (uint64_t)s * hdr->shard_stride);
		saved[s] = sh->table_off;
		sh->table_off = size + 65536 * (s + 1); /* reserved, not in the object */
	}
	for (int i = 0; i < 32; i++) {
		snprintf(key, sizeof(key), "k/%d", i);
		ck_assert_int_ne(shmg_lookup(reader, SHMG_KEY(key), NULL, out, sizeof(out), &ml, NULL), 0);
	}
	char report[512];
	ck_assert_int_gt(tc_check(reader, report, sizeof(report)), 0);
	for (uint32_t s = 0; s < 2; s++) {
		struct shard_header *sh =
			(void *)((uint8_t *)hdr + hdr->off_shards + (uint64_t)s * hdr->shard_stride);
		sh->table_off = saved[s];
	}
	for (int i = 0; i < 32; i++) {
		snprintf(key, sizeof(key), "k/%d", i);
		TC_EQ(shmg_lookup(reader, SHMG_KEY(key), NULL, out, sizeof(out), &ml, NULL), 0);
	}
	TC_ASSERT_CLEAN(reader);
	munmap(hdr, size);
	shmg_close(reader);
	shmg_close(h);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("grow");
	TCase *tc = tc_case(s, "grow", 60);

	tcase_add_test(tc, test_config_validation);
	tcase_add_test(tc, test_default_maximum);
	tcase_add_test(tc, test_attach_mismatch);
	tcase_add_test(tc, test_grows_to_max_then_enospc);
	tcase_add_test(tc, test_attach_after_growth);
	tcase_add_test(tc, test_published_count_untrusted);
	tcase_add_test(tc, test_unpublished_growth_adopted);
	tcase_add_test(tc, test_offsets_past_the_end);
	return tc_run(s);
}
