/* SPDX-License-Identifier: MIT */
/*
 * Prefix queries (keys ending in '/') over the per-shard prefix trees:
 * nesting, limits, clusters, local counts, keys 511 levels deep, and that
 * the tree's nodes come
 * and go with the groups below them (no index slot is left behind but the
 * few nodes parked for reuse, and shmg_check finds the trees sound at every
 * step).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc.h"

static long count(shmg_t *h, const char *key)
{
	return shmg_member_count(h, key, strlen(key), NULL);
}

static const char *const nested[] = {
	"room/a", "room/x/1", "room/x/2", "room/x/y/3", "room", "roomy/1", "other/room/1", "/lead",
};

START_TEST(test_nested_prefixes)
{
	shmg_t *a = tc_open(tc_arena, NULL), *b = tc_open(tc_arena, NULL);
	for (size_t i = 0; i < sizeof(nested) / sizeof(nested[0]); i++) {
		TC_EQ(shmg_join(a, SHMG_KEY(nested[i]), "m", 1, NULL), 0);
		TC_ASSERT_CLEAN(a);
	}
	TC_EQ(shmg_join(b, SHMG_KEY("room/x/1"), NULL, 0, NULL), 0);
	TC_EQ(count(a, "room/"), 5);
	TC_EQ(count(a, "room/x/"), 4);
	TC_EQ(count(a, "room/x/y/"), 1);
	TC_EQ(count(a, "room/x/y/3/"), 0);
	TC_EQ(count(a, "roomy/"), 1);
	TC_EQ(count(a, "other/"), 1);
	TC_EQ(count(a, "other/room/"), 1);
	TC_EQ(count(a, "/"), 1);
	TC_EQ(count(a, "r/"), 0);
	TC_EQ(count(a, "room"), 1); /* exact */
	TC_EQ(shmg_local_member_count(a, SHMG_KEY("room/x/"), NULL), 4);

	/* Ids: two of b's endpoint under room/x/1 and room/ only once. */
	shmg_id_t ids[8];
	shmg_id_t bid = shmg_self(b);
	long n = shmg_member_ids(a, SHMG_KEY("room/x/"), ids, 8, NULL);
	TC_EQ(n, 4);
	int of_b = 0;
	for (long i = 0; i < n; i++)
		of_b += ids[i].slot == bid.slot && ids[i].gen == bid.gen;
	ck_assert_int_eq(of_b, 1);

	/* b gone: its membership with it, the group stays (a is a member). */
	TC_EQ(shmg_close(b), 0);
	TC_EQ(count(a, "room/x/"), 3);
	for (size_t i = 0; i < sizeof(nested) / sizeof(nested[0]); i++) {
		TC_EQ(shmg_leave(a, SHMG_KEY(nested[i]), NULL), 0);
		TC_ASSERT_CLEAN(a);
	}
	TC_EQ(count(a, "room/"), 0);
	TC_EQ(count(a, "/"), 0);
	/* Every prefix node went with the last group below it, but those
	 * parked for the next group under their prefix. */
	ck_assert_uint_eq(tc_index_used(a), tc_parked_nodes(a));
	TC_EQ(shmg_close(a), 0);
}
END_TEST

static int stop_at_three(const struct shmg_entry *e, void *arg)
{
	(void)e;
	return ++*(int *)arg == 3 ? 42 : 0;
}

START_TEST(test_limit_and_stop)
{
	shmg_t *a = tc_open(tc_arena, NULL);
	char key[32];
	for (int i = 0; i < 50; i++) {
		snprintf(key, sizeof(key), "lim/%d/k%d", i % 5, i);
		TC_EQ(shmg_join(a, SHMG_KEY(key), NULL, 0, NULL), 0);
	}
	struct shmg_opts o = {.limit = 7};
	long seen = 0;
	TC_EQ(shmg_members(a, SHMG_KEY("lim/"), tc_count_cb, &seen, &o), 7);
	ck_assert_int_eq(seen, 7);
	TC_EQ(shmg_member_count(a, SHMG_KEY("lim/"), &o), 50); /* counts ignore the limit */
	TC_EQ(shmg_member_count(a, SHMG_KEY("lim/3/"), NULL), 10);
	int calls = 0;
	TC_EQ(shmg_members(a, SHMG_KEY("lim/"), stop_at_three, &calls, NULL), 42);
	ck_assert_int_eq(calls, 3);
	shmg_id_t ids[4];
	TC_EQ(shmg_member_ids(a, SHMG_KEY("lim/"), ids, 4, NULL), 50);
	TC_EQ(shmg_close(a), 0);
}
END_TEST

START_TEST(test_clusters_apart)
{
	shmg_t *a = tc_open(tc_arena, NULL);
	TC_EQ(shmg_connect(a, "blue", NULL), 0);
	struct shmg_opts blue = {.cluster = "blue"};
	TC_EQ(shmg_join(a, SHMG_KEY("c/x/1"), NULL, 0, &blue), 0);
	TC_EQ(shmg_join(a, SHMG_KEY("c/x/2"), NULL, 0, &blue), 0);
	TC_EQ(shmg_join(a, SHMG_KEY("c/x/1"), NULL, 0, NULL), 0);
	TC_EQ(shmg_member_count(a, SHMG_KEY("c/"), NULL), 1);
	TC_EQ(shmg_member_count(a, SHMG_KEY("c/"), &blue), 2);
	TC_ASSERT_CLEAN(a);
	/* A disconnect sweeps the cluster's groups and their prefix nodes. */
	TC_EQ(shmg_disconnect(a, "blue"), 0);
	TC_EQ(shmg_member_count(a, SHMG_KEY("c/x/"), NULL), 1);
	TC_EQ(shmg_leave(a, SHMG_KEY("c/x/1"), NULL), 0);
	TC_ASSERT_CLEAN(a);
	ck_assert_uint_eq(tc_index_used(a), tc_parked_nodes(a));
	TC_EQ(shmg_close(a), 0);
}
END_TEST

/* Many groups under one prefix, left in an order other than joined: the
 * sibling links stay sound (shmg_check) and the count follows. */
START_TEST(test_many_siblings)
{
	struct shmg_config one = {.shards = 1};
	shmg_t *a = tc_open(tc_arena, &one);
	char key[32];
	enum { N = 300 };
	for (int i = 0; i < N; i++) {
		snprintf(key, sizeof(key), "sib/%d/g%d", i % 3, i);
		TC_EQ(shmg_join(a, SHMG_KEY(key), NULL, 0, NULL), 0);
	}
	TC_ASSERT_CLEAN(a);
	for (int i = 0; i < N; i++) {
		int j = (i * 7) % N; /* 7 and 300 coprime: every group once */
		snprintf(key, sizeof(key), "sib/%d/g%d", j % 3, j);
		TC_EQ(shmg_leave(a, SHMG_KEY(key), NULL), 0);
		if (i % 37 == 0)
			TC_ASSERT_CLEAN(a);
		TC_EQ(count(a, "sib/"), N - 1 - i);
	}
	TC_ASSERT_CLEAN(a);
	ck_assert_uint_eq(tc_index_used(a), tc_parked_nodes(a));
	TC_EQ(shmg_close(a), 0);
}
END_TEST

/* A key as deep as the key limit allows: a node per level, made and pruned
 * without recursion, and every level's prefix finds the group. */
START_TEST(test_deep_key)
{
	struct shmg_config cfg = {.key_max = 1024};
	shmg_t *a = tc_open(tc_arena, &cfg);
	char key[1025];
	for (int i = 0; i < 1022; i += 2)
		memcpy(key + i, i % 4 ? "b/" : "a/", 2);
	memcpy(key + 1022, "zz", 2);
	key[1024] = 0;
	TC_EQ(shmg_join(a, key, 1024, NULL, 0, NULL), 0);
	TC_ASSERT_CLEAN(a);
	for (size_t n = 2; n < 1024; n += 2 * 37)
		TC_EQ(shmg_member_count(a, key, n, NULL), 1);
	TC_EQ(shmg_member_count(a, "//", 2, NULL), 0);
	TC_EQ(shmg_leave(a, key, 1024, NULL), 0);
	ck_assert_uint_eq(tc_index_used(a), tc_parked_nodes(a));
	TC_ASSERT_CLEAN(a);
	TC_EQ(shmg_close(a), 0);
}
END_TEST

/* Registrations are no groups: they never show in a prefix query. */
START_TEST(test_registrations_not_members)
{
	shmg_t *a = tc_open(tc_arena, NULL);
	TC_EQ(shmg_register(a, SHMG_KEY("mix/r"), "m", 1, NULL), 0);
	TC_EQ(shmg_join(a, SHMG_KEY("mix/g"), "m", 1, NULL), 0);
	TC_EQ(count(a, "mix/"), 1);
	TC_EQ(shmg_leave(a, SHMG_KEY("mix/g"), NULL), 0);
	TC_EQ(count(a, "mix/"), 0);
	ck_assert_uint_eq(tc_index_used(a), 1 + tc_parked_nodes(a));
	TC_ASSERT_CLEAN(a);
	TC_EQ(shmg_close(a), 0);
}
END_TEST

/* A top-level node whose last group leaves is parked, not pruned: the next
 * join under its prefix finds it.  Deeper nodes go at once. */
START_TEST(test_parked_node_reused)
{
	struct shmg_config one = {.shards = 1};
	shmg_t *a = tc_open(tc_arena, &one);
	TC_EQ(shmg_join(a, SHMG_KEY("solo/deep/er/g"), NULL, 0, NULL), 0);
	ck_assert_uint_eq(tc_index_used(a), 4); /* solo/, solo/deep/, solo/deep/er/, the group */
	TC_EQ(shmg_leave(a, SHMG_KEY("solo/deep/er/g"), NULL), 0);
	ck_assert_uint_eq(tc_index_used(a), 1); /* solo/, parked */
	ck_assert_uint_eq(tc_parked_nodes(a), 1);
	TC_ASSERT_CLEAN(a);
	TC_EQ(count(a, "solo/"), 0);
	for (int i = 0; i < 5; i++) {
		TC_EQ(shmg_join(a, SHMG_KEY("solo/g"), "m", 1, NULL), 0);
		ck_assert_uint_eq(tc_index_used(a), 2); /* the parked node, in use again */
		ck_assert_uint_eq(tc_parked_nodes(a), 0);
		TC_EQ(count(a, "solo/"), 1);
		TC_ASSERT_CLEAN(a);
		TC_EQ(shmg_leave(a, SHMG_KEY("solo/g"), NULL), 0);
		ck_assert_uint_eq(tc_index_used(a), 1);
		ck_assert_uint_eq(tc_parked_nodes(a), 1);
	}
	/* Under a parent with other children, the child node is pruned. */
	TC_EQ(shmg_join(a, SHMG_KEY("solo/x/1"), NULL, 0, NULL), 0);
	TC_EQ(shmg_join(a, SHMG_KEY("solo/y/1"), NULL, 0, NULL), 0);
	ck_assert_uint_eq(tc_parked_nodes(a), 0);
	TC_EQ(shmg_leave(a, SHMG_KEY("solo/x/1"), NULL), 0);
	ck_assert_uint_eq(tc_index_used(a), 3); /* solo/, solo/y/, the group */
	ck_assert_uint_eq(tc_parked_nodes(a), 0);
	TC_EQ(count(a, "solo/x/"), 0);
	TC_EQ(count(a, "solo/"), 1);
	TC_ASSERT_CLEAN(a);
	TC_EQ(shmg_close(a), 0);
}
END_TEST

/* The ring is bounded: many prefixes left empty one after another keep at
 * most six nodes per shard, each pushed-out node pruned with every ancestor
 * it alone held. */
START_TEST(test_parked_nodes_bounded)
{
	struct shmg_config two = {.shards = 2};
	shmg_t *a = tc_open(tc_arena, &two);
	char key[32];
	for (int i = 0; i < 200; i++) {
		snprintf(key, sizeof(key), "p%d/q/g", i);
		TC_EQ(shmg_join(a, SHMG_KEY(key), NULL, 0, NULL), 0);
		TC_EQ(shmg_leave(a, SHMG_KEY(key), NULL), 0);
		ck_assert_uint_eq(tc_index_used(a), tc_parked_nodes(a));
		ck_assert_uint_le(tc_parked_nodes(a), 12);
		if (i % 41 == 0)
			TC_ASSERT_CLEAN(a);
	}
	ck_assert_uint_ge(tc_parked_nodes(a), 6);
	TC_ASSERT_CLEAN(a);
	TC_EQ(shmg_close(a), 0);
}
END_TEST

/* A disconnect prunes the parked nodes of the cluster it sweeps: a slot
 * reused by another cluster finds none of the old one's. */
START_TEST(test_parked_nodes_go_with_their_cluster)
{
	shmg_t *a = tc_open(tc_arena, NULL);
	TC_EQ(shmg_connect(a, "green", NULL), 0);
	struct shmg_opts green = {.cluster = "green"};
	TC_EQ(shmg_join(a, SHMG_KEY("room/1"), NULL, 0, &green), 0);
	TC_EQ(shmg_leave(a, SHMG_KEY("room/1"), &green), 0);
	ck_assert_uint_eq(tc_parked_nodes(a), 1);
	TC_EQ(shmg_disconnect(a, "green"), 0);
	ck_assert_uint_eq(tc_parked_nodes(a), 0);
	ck_assert_uint_eq(tc_index_used(a), 0);
	TC_ASSERT_CLEAN(a);
	TC_EQ(shmg_close(a), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("prefix");
	TCase *tc = tc_case(s, "prefix", 30);
	tcase_add_test(tc, test_nested_prefixes);
	tcase_add_test(tc, test_limit_and_stop);
	tcase_add_test(tc, test_clusters_apart);
	tcase_add_test(tc, test_many_siblings);
	tcase_add_test(tc, test_registrations_not_members);
	tcase_add_test(tc, test_deep_key);
	tcase_add_test(tc, test_parked_node_reused);
	tcase_add_test(tc, test_parked_nodes_bounded);
	tcase_add_test(tc, test_parked_nodes_go_with_their_cluster);
	return tc_run(s);
}
