/* SPDX-License-Identifier: MIT */
/*
 * Arena full: -ENOSPC with nothing half-written, the arena still consistent,
 * and freed space reusable.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc.h"

#define BOUND 200000

static struct shmg_config small_cfg(void)
{
	struct shmg_config c;

	memset(&c, 0, sizeof(c));
	c.arena_size = 4u << 20;
	c.arena_max = c.arena_size; /* full at once: no growth */
	c.shards = 2;
	c.oplog_bytes = 64 * 1024;
	c.max_endpoints = 16;
	c.max_clusters = 4;
	return c;
}

static char meta[1024];

/* Registers full/<i> from *n on until -ENOSPC; returns how many. */
static long fill(shmg_t *h, const char *prefix, size_t mlen, int join)
{
	char key[32];
	long i;

	for (i = 0; i < BOUND; i++) {
		snprintf(key, sizeof(key), "%s%ld", prefix, i);
		memcpy(meta, &i, sizeof(i));
		int rc = join ? shmg_join(h, SHMG_KEY(key), meta, mlen, NULL)
			      : shmg_register(h, SHMG_KEY(key), meta, mlen, NULL);
		if (rc == -ENOSPC)
			break;
		ck_assert_msg(rc == 0, "%s %s: %d (%s)", join ? "join" : "register", key, rc,
			      shmg_strerror(rc));
	}
	ck_assert_msg(i < BOUND, "arena never filled after %d entries", BOUND);
	return i;
}

START_TEST(test_fill_register)
{
	struct shmg_config c = small_cfg();
	shmg_t *h = tc_open(tc_arena, &c);
	char key[32], out[1024];
	size_t ml;
	long n;

	memset(meta, 'x', sizeof(meta));
	n = fill(h, "full/", sizeof(meta), 0);
	ck_assert_int_gt(n, 0);
	/* The failed call changed nothing. */
	TC_EQ(shmg_registry_count(h, NULL), n);
	snprintf(key, sizeof(key), "full/%ld", n);
	TC_EQ(shmg_lookup(h, SHMG_KEY(key), NULL, NULL, 0, NULL, NULL), -ENOENT);
	TC_ASSERT_CLEAN(h);
	/* Still full, still consistent, on repeated attempts. */
	for (int i = 0; i < 10; i++)
		TC_EQ(shmg_register(h, SHMG_KEY(key), meta, sizeof(meta), NULL), -ENOSPC);
	TC_EQ(shmg_registry_count(h, NULL), n);
	/* Every entry intact. */
	for (long i = 0; i < n; i++) {
		long got;

		snprintf(key, sizeof(key), "full/%ld", i);
		TC_EQ(shmg_lookup(h, SHMG_KEY(key), NULL, out, sizeof(out), &ml, NULL), 0);
		ck_assert_uint_eq(ml, sizeof(meta));
		memcpy(&got, out, sizeof(got));
		ck_assert_int_eq(got, i);
	}

	/* Free some; then registering again succeeds. */
	for (long i = 0; i < 64 && i < n; i++) {
		snprintf(key, sizeof(key), "full/%ld", i);
		TC_EQ(shmg_unregister(h, SHMG_KEY(key), NULL), 0);
	}
	TC_EQ(shmg_registry_count(h, NULL), n - (n < 64 ? n : 64));
	TC_EQ(shmg_register(h, SHMG_KEY("again/0"), meta, sizeof(meta), NULL), 0);
	TC_EQ(shmg_registry_count(h, NULL), n - (n < 64 ? n : 64) + 1);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

START_TEST(test_full_reregister_keeps_old)
{
	struct shmg_config c = small_cfg();
	shmg_t *h = tc_open(tc_arena, &c);
	char out[1024];
	size_t ml;
	long n, v;

	memset(meta, 'y', sizeof(meta));
	TC_EQ(shmg_register(h, SHMG_KEY("victim"), "small", 5, NULL), 0);
	n = fill(h, "pad/", 1000, 0);
	TC_EQ(shmg_registry_count(h, NULL), n + 1);
	/* A bigger meta may not fit; if it doesn't, the old one stays whole. */
	int rc = shmg_register(h, SHMG_KEY("victim"), meta, sizeof(meta), NULL);
	if (rc == -ENOSPC) {
		TC_EQ(shmg_lookup(h, SHMG_KEY("victim"), NULL, out, sizeof(out), &ml, NULL), 0);
		ck_assert_uint_eq(ml, 5);
		ck_assert_mem_eq(out, "small", 5);
	} else {
		TC_EQ(rc, 0);
	}
	/* Joins fail cleanly too: the other shards may still hold a few blocks of
	 * this size, so join until the first -ENOSPC, which must change nothing. */
	long joined = fill(h, "g/full/", sizeof(meta), 1);
	TC_EQ(shmg_member_count(h, SHMG_KEY("g/"), NULL), joined);
	TC_EQ(shmg_registry_count(h, NULL), n + 1);
	TC_ASSERT_CLEAN(h);
	(void)v;
	shmg_close(h);
}
END_TEST

START_TEST(test_freed_space_reused_fully)
{
	struct shmg_config c = small_cfg();
	shmg_t *h = tc_open(tc_arena, &c);
	char key[32];
	long n1, n2, n3;

	memset(meta, 'z', sizeof(meta));
	n1 = fill(h, "a/", 512, 1);
	TC_EQ(shmg_member_count(h, SHMG_KEY("a/"), NULL), n1);
	TC_ASSERT_CLEAN(h);
	for (long i = 0; i < n1; i++) {
		snprintf(key, sizeof(key), "a/%ld", i);
		TC_EQ(shmg_leave(h, SHMG_KEY(key), NULL), 0);
	}
	TC_EQ(shmg_member_count(h, SHMG_KEY("a/"), NULL), 0);
	/* All of it comes back: the same kind of fill fits (about) as many. */
	n2 = fill(h, "b/", 512, 1);
	ck_assert_msg(n2 >= n1 - n1 / 50, "first fill %ld, after freeing all %ld", n1, n2);
	for (long i = 0; i < n2; i++) {
		snprintf(key, sizeof(key), "b/%ld", i);
		TC_EQ(shmg_leave(h, SHMG_KEY(key), NULL), 0);
	}
	/* And for the other kind of entry. */
	n3 = fill(h, "c/", 512, 0);
	ck_assert_msg(n3 >= n1 - n1 / 50, "group fill %ld, registry fill after %ld", n1, n3);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

START_TEST(test_full_by_other_endpoint_close)
{
	/* Space freed by another endpoint's close is reusable too. */
	struct shmg_config c = small_cfg();
	shmg_t *a = tc_open(tc_arena, &c);
	shmg_t *b = tc_open(tc_arena, NULL);
	long n;

	memset(meta, 'w', sizeof(meta));
	n = fill(b, "b/", 800, 0);
	ck_assert_int_gt(n, 10);
	TC_EQ(shmg_register(a, SHMG_KEY("a/0"), meta, 800, NULL), -ENOSPC);
	TC_EQ(shmg_close(b), 0);
	TC_EQ(shmg_registry_count(a, NULL), 0);
	TC_EQ(shmg_register(a, SHMG_KEY("a/0"), meta, 800, NULL), 0);
	TC_ASSERT_CLEAN(a);
	shmg_close(a);
}
END_TEST

static Suite *full_suite(void)
{
	Suite *s = suite_create("full");
	TCase *tc = tc_case(s, "full", 45);

	tcase_add_test(tc, test_fill_register);
	tcase_add_test(tc, test_full_reregister_keeps_old);
	tcase_add_test(tc, test_freed_space_reused_fully);
	tcase_add_test(tc, test_full_by_other_endpoint_close);
	return s;
}

int main(void)
{
	return tc_run(full_suite());
}
