/* SPDX-License-Identifier: MIT */
/*
 * Named clusters: connect / connected / disconnect (one and many), writes
 * needing a connect, reads of unconnected clusters, isolation of keys between
 * clusters, nodes() and clusters().
 */
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>

#include "tc.h"

START_TEST(test_write_needs_connect)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	struct shmg_opts o = { .cluster = "game" };

	TC_EQ(shmg_connected(h, "game"), 0);
	TC_EQ(shmg_register(h, SHMG_KEY("k"), "m", 1, &o), -ENOTCONN);
	TC_EQ(shmg_unregister(h, SHMG_KEY("k"), &o), -ENOTCONN);
	TC_EQ(shmg_join(h, SHMG_KEY("k"), "m", 1, &o), -ENOTCONN);
	TC_EQ(shmg_leave(h, SHMG_KEY("k"), &o), -ENOTCONN);
	/* Nothing landed anywhere. */
	TC_EQ(shmg_registry_count(h, &o), 0);
	TC_EQ(shmg_registry_count(h, NULL), 0);
	TC_EQ(shmg_member_count(h, SHMG_KEY("k"), &o), 0);
	TC_EQ(shmg_member_count(h, SHMG_KEY("k"), NULL), 0);
	TC_EQ(shmg_connected(h, "game"), 0);
	shmg_close(h);
}
END_TEST

START_TEST(test_reads_unconnected_are_empty)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	struct shmg_opts o = { .cluster = "elsewhere" };
	shmg_id_t ids[4];
	long n = 0;

	TC_EQ(shmg_register(h, SHMG_KEY("k"), "m", 1, NULL), 0);
	TC_EQ(shmg_join(h, SHMG_KEY("k"), "m", 1, NULL), 0);
	TC_EQ(shmg_lookup(h, SHMG_KEY("k"), NULL, NULL, 0, NULL, &o), -ENOENT);
	TC_EQ(shmg_members(h, SHMG_KEY("k"), tc_count_cb, &n, &o), 0);
	TC_EQ(shmg_local_members(h, SHMG_KEY("k"), tc_count_cb, &n, &o), 0);
	ck_assert_int_eq(n, 0);
	TC_EQ(shmg_member_ids(h, SHMG_KEY("k"), ids, 4, &o), 0);
	TC_EQ(shmg_member_count(h, SHMG_KEY("k"), &o), 0);
	TC_EQ(shmg_member_count(h, SHMG_KEY("/"), &o), 0);
	TC_EQ(shmg_local_member_count(h, SHMG_KEY("k"), &o), 0);
	TC_EQ(shmg_registry_count(h, &o), 0);
	TC_EQ(shmg_local_registry_count(h, &o), 0);
	/* Reading did not connect it. */
	TC_EQ(shmg_connected(h, "elsewhere"), 0);
	shmg_close(h);
}
END_TEST

static int name_cb(const char *name, void *arg)
{
	char *buf = arg;

	strncat(buf, name, 255 - strlen(buf));
	strncat(buf, ",", 255 - strlen(buf));
	return 0;
}

START_TEST(test_connect_disconnect)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	shmg_t *other = tc_open(tc_arena, NULL);
	struct shmg_opts o = { .cluster = "game" };
	struct shmg_info in;
	char names[256] = "";

	TC_EQ(shmg_connected(h, NULL), 1);
	TC_EQ(shmg_connect(h, NULL, NULL), -EINVAL);
	TC_EQ(shmg_connect(h, "game", NULL), 0);
	TC_EQ(shmg_connected(h, "game"), 1);
	/* Per host, not per endpoint. */
	TC_EQ(shmg_connected(other, "game"), 1);
	TC_EQ(shmg_connect(other, "game", NULL), 0); /* no-op */
	TC_EQ(shmg_info(h, &in), 0);
	ck_assert_uint_eq(in.clusters_connected, 1);
	TC_EQ(shmg_clusters(h, name_cb, names), 1);
	ck_assert_str_eq(names, "game,");

	TC_EQ(shmg_register(h, SHMG_KEY("k"), "m", 1, &o), 0);
	TC_EQ(shmg_join(other, SHMG_KEY("k"), "m", 1, &o), 0);
	TC_EQ(shmg_registry_count(h, &o), 1);
	TC_EQ(shmg_registry_count(h, NULL), 0);

	TC_EQ(shmg_disconnect(h, "game"), 0);
	TC_EQ(shmg_connected(h, "game"), 0);
	TC_EQ(shmg_connected(other, "game"), 0);
	/* This host's entries in it are gone, of every endpoint. */
	TC_EQ(shmg_registry_count(h, &o), 0);
	TC_EQ(shmg_member_count(h, SHMG_KEY("k"), &o), 0);
	TC_EQ(shmg_lookup(other, SHMG_KEY("k"), NULL, NULL, 0, NULL, &o), -ENOENT);
	TC_EQ(shmg_register(h, SHMG_KEY("k"), "m", 1, &o), -ENOTCONN);
	TC_EQ(shmg_info(h, &in), 0);
	ck_assert_uint_eq(in.clusters_connected, 0);
	names[0] = '\0';
	TC_EQ(shmg_clusters(h, name_cb, names), 0);
	ck_assert_str_eq(names, "");
	/* Disconnecting again, or a cluster never connected, is a no-op. */
	TC_EQ(shmg_disconnect(h, "game"), 0);
	TC_EQ(shmg_disconnect(h, "never"), 0);
	TC_EQ(shmg_disconnect(h, NULL), -EINVAL);
	/* Reconnect: clean. */
	TC_EQ(shmg_connect(h, "game", NULL), 0);
	TC_EQ(shmg_registry_count(h, &o), 0);
	TC_EQ(shmg_register(other, SHMG_KEY("k"), "m2", 2, &o), 0);
	TC_ASSERT_CLEAN(h);
	shmg_close(other);
	shmg_close(h);
}
END_TEST

START_TEST(test_disconnect_keeps_other_clusters)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	struct shmg_opts a = { .cluster = "a" }, b = { .cluster = "b" };

	TC_EQ(shmg_connect(h, "a", NULL), 0);
	TC_EQ(shmg_connect(h, "b", NULL), 0);
	TC_EQ(shmg_register(h, SHMG_KEY("k"), NULL, 0, &a), 0);
	TC_EQ(shmg_register(h, SHMG_KEY("k"), NULL, 0, &b), 0);
	TC_EQ(shmg_register(h, SHMG_KEY("k"), NULL, 0, NULL), 0);
	TC_EQ(shmg_join(h, SHMG_KEY("g"), NULL, 0, &a), 0);
	TC_EQ(shmg_join(h, SHMG_KEY("g"), NULL, 0, &b), 0);
	TC_EQ(shmg_disconnect(h, "a"), 0);
	TC_EQ(shmg_registry_count(h, &a), 0);
	TC_EQ(shmg_member_count(h, SHMG_KEY("g"), &a), 0);
	TC_EQ(shmg_registry_count(h, &b), 1);
	TC_EQ(shmg_member_count(h, SHMG_KEY("g"), &b), 1);
	TC_EQ(shmg_registry_count(h, NULL), 1);
	TC_EQ(shmg_connected(h, "b"), 1);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

START_TEST(test_disconnect_many)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	const char *good[] = { "c1", "c2", "c3" };
	const char *with_bad[] = { "c1", "c2", "bad name", "c3" };
	const char *with_null[] = { "c1", NULL };

	for (int i = 0; i < 3; i++) {
		struct shmg_opts o = { .cluster = good[i] };

		TC_EQ(shmg_connect(h, good[i], NULL), 0);
		TC_EQ(shmg_register(h, SHMG_KEY("k"), NULL, 0, &o), 0);
	}
	/* One bad name: nothing disconnected. */
	TC_EQ(shmg_disconnect_many(h, with_bad, 4), -EINVAL);
	TC_EQ(shmg_disconnect_many(h, with_null, 2), -EINVAL);
	TC_EQ(shmg_disconnect_many(h, NULL, 1), -EINVAL);
	for (int i = 0; i < 3; i++) {
		struct shmg_opts o = { .cluster = good[i] };

		TC_EQ(shmg_connected(h, good[i]), 1);
		TC_EQ(shmg_registry_count(h, &o), 1);
	}
	TC_EQ(shmg_disconnect_many(h, good, 0), 0);
	TC_EQ(shmg_connected(h, "c1"), 1);
	/* Two of three, one of them listed twice, plus one never connected. */
	const char *some[] = { "c1", "c3", "c1", "never" };
	TC_EQ(shmg_disconnect_many(h, some, 4), 0);
	TC_EQ(shmg_connected(h, "c1"), 0);
	TC_EQ(shmg_connected(h, "c2"), 1);
	TC_EQ(shmg_connected(h, "c3"), 0);
	struct shmg_opts o2 = { .cluster = "c2" };
	TC_EQ(shmg_registry_count(h, &o2), 1);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

START_TEST(test_same_key_two_clusters)
{
	shmg_t *a = tc_open(tc_arena, NULL);
	shmg_t *b = tc_open(tc_arena, NULL);
	struct shmg_opts x = { .cluster = "x" }, y = { .cluster = "y" };
	shmg_id_t id;
	char m[8];
	size_t ml;

	TC_EQ(shmg_connect(a, "x", NULL), 0);
	TC_EQ(shmg_connect(a, "y", NULL), 0);
	TC_EQ(shmg_register(a, SHMG_KEY("same"), "ax", 2, &x), 0);
	TC_EQ(shmg_register(b, SHMG_KEY("same"), "by", 2, &y), 0);
	TC_EQ(shmg_register(b, SHMG_KEY("same"), "bd", 2, NULL), 0);
	TC_EQ(shmg_register(b, SHMG_KEY("same"), "bx", 2, &x), -EEXIST);
	TC_EQ(shmg_lookup(b, SHMG_KEY("same"), &id, m, sizeof(m), &ml, &x), 0);
	ck_assert(shmg_id_equal(id, shmg_self(a)));
	ck_assert_mem_eq(m, "ax", 2);
	TC_EQ(shmg_lookup(a, SHMG_KEY("same"), &id, m, sizeof(m), &ml, &y), 0);
	ck_assert(shmg_id_equal(id, shmg_self(b)));
	ck_assert_mem_eq(m, "by", 2);
	TC_EQ(shmg_lookup(a, SHMG_KEY("same"), &id, m, sizeof(m), &ml, NULL), 0);
	ck_assert_mem_eq(m, "bd", 2);
	TC_EQ(shmg_unregister(a, SHMG_KEY("same"), &y), -EPERM);
	TC_EQ(shmg_unregister(a, SHMG_KEY("same"), &x), 0);
	TC_EQ(shmg_lookup(a, SHMG_KEY("same"), &id, NULL, 0, NULL, &y), 0);
	TC_EQ(shmg_lookup(a, SHMG_KEY("same"), &id, NULL, 0, NULL, &x), -ENOENT);

	/* Groups too, including prefix queries. */
	TC_EQ(shmg_join(a, SHMG_KEY("p/1"), NULL, 0, &x), 0);
	TC_EQ(shmg_join(a, SHMG_KEY("p/1"), NULL, 0, &y), 0);
	TC_EQ(shmg_join(b, SHMG_KEY("p/2"), NULL, 0, &y), 0);
	TC_EQ(shmg_member_count(a, SHMG_KEY("p/"), &x), 1);
	TC_EQ(shmg_member_count(a, SHMG_KEY("p/"), &y), 2);
	TC_EQ(shmg_member_count(a, SHMG_KEY("p/"), NULL), 0);
	TC_EQ(shmg_leave(a, SHMG_KEY("p/1"), &x), 0);
	TC_EQ(shmg_member_count(a, SHMG_KEY("p/1"), &y), 1);
	shmg_close(b);
	shmg_close(a);
}
END_TEST

START_TEST(test_connect_ttl)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	struct shmg_connect_opts t = { .ttl_ms = 60000 };
	struct shmg_connect_opts bad = { .ttl_ms = 10 };

	TC_EQ(shmg_connect(h, "ttl/a", &t), 0);
	TC_EQ(shmg_connected(h, "ttl/a"), 1);
	/* Repeated connects are no-ops, with or without a ttl. */
	TC_EQ(shmg_connect(h, "ttl/a", &t), 0);
	TC_EQ(shmg_connect(h, "ttl/a", NULL), 0);
	struct shmg_connect_opts none = { 0 };
	TC_EQ(shmg_connect(h, "ttl/b", &none), 0);
	bad.reserved[0] = 1;
	TC_EQ(shmg_connect(h, "ttl/c", &bad), -EINVAL);
	TC_EQ(shmg_connected(h, "ttl/c"), 0);
	bad.reserved[0] = 0;
	bad.reserved[3] = 7;
	TC_EQ(shmg_connect(h, "ttl/c", &bad), -EINVAL);
	TC_EQ(shmg_connected(h, "ttl/c"), 0);
	struct shmg_opts o = { .cluster = "ttl/a" };
	TC_EQ(shmg_register(h, SHMG_KEY("k"), NULL, 0, &o), 0);
	shmg_close(h);
}
END_TEST

START_TEST(test_cluster_table_full)
{
	struct shmg_config c = { 0 };
	shmg_t *h;
	char name[16];

	c.max_clusters = 4; /* default + 3 named */
	h = tc_open(tc_arena, &c);
	for (int i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "c%d", i);
		TC_EQ(shmg_connect(h, name, NULL), 0);
	}
	TC_EQ(shmg_connect(h, "one-too-many", NULL), -ENOSPC);
	TC_EQ(shmg_connected(h, "one-too-many"), 0);
	TC_EQ(shmg_connect(h, "c1", NULL), 0); /* already there: fine */
	TC_EQ(shmg_disconnect(h, "c1"), 0);
	TC_EQ(shmg_connect(h, "one-too-many", NULL), 0);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

START_TEST(test_nodes)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	uint32_t nodes[4] = { 99, 99, 99, 99 };

	/* No agent, no peers. */
	TC_EQ(shmg_nodes(h, NULL, nodes, 4), 0);
	ck_assert_uint_eq(nodes[0], 99);
	TC_EQ(shmg_nodes(h, "game", nodes, 4), 0);
	TC_EQ(shmg_connect(h, "game", NULL), 0);
	TC_EQ(shmg_nodes(h, "game", nodes, 4), 1);
	ck_assert_uint_eq(nodes[0], shmg_self(h).node);
	ck_assert_uint_eq(nodes[1], 99);
	/* Count only. */
	TC_EQ(shmg_nodes(h, "game", NULL, 0), 1);
	nodes[0] = 99;
	TC_EQ(shmg_nodes(h, "game", nodes, 0), 1);
	ck_assert_uint_eq(nodes[0], 99);
	TC_EQ(shmg_disconnect(h, "game"), 0);
	TC_EQ(shmg_nodes(h, "game", nodes, 4), 0);
	shmg_close(h);
}
END_TEST

START_TEST(test_cluster_slot_reuse_is_clean)
{
	struct shmg_config c = { 0 };
	shmg_t *h;
	char name[16];

	c.max_clusters = 2; /* default + one named: every connect reuses the slot */
	h = tc_open(tc_arena, &c);
	for (int i = 0; i < 5; i++) {
		struct shmg_opts o = { .cluster = name };

		snprintf(name, sizeof(name), "cl%d", i);
		TC_EQ(shmg_connect(h, name, NULL), 0);
		/* Nothing of the previous cluster shows through. */
		TC_EQ(shmg_registry_count(h, &o), 0);
		TC_EQ(shmg_lookup(h, SHMG_KEY("k"), NULL, NULL, 0, NULL, &o), -ENOENT);
		TC_EQ(shmg_member_count(h, SHMG_KEY("g"), &o), 0);
		TC_EQ(shmg_register(h, SHMG_KEY("k"), name, strlen(name), &o), 0);
		TC_EQ(shmg_join(h, SHMG_KEY("g"), name, strlen(name), &o), 0);
		TC_EQ(shmg_disconnect(h, name), 0);
		TC_EQ(shmg_registry_count(h, &o), 0);
	}
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

/* Disconnect races with another process writing in the cluster: once it
 * returns nothing of this host is left in the cluster. */
struct dc_shared {
	_Atomic long ok, notconn, other;
	_Atomic int stop;
};
static struct dc_shared *dcs;

static int dc_writer(void *arg)
{
	shmg_t *h = NULL;
	struct shmg_opts o = { .cluster = "dc" };
	char key[32];

	(void)arg;
	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 1;
	for (long i = 0; !atomic_load(&dcs->stop); i++) {
		int rc;

		snprintf(key, sizeof(key), "dc/%ld", i % 500);
		rc = i % 3 ? shmg_register(h, SHMG_KEY(key), NULL, 0, &o)
			   : shmg_join(h, SHMG_KEY(key), NULL, 0, &o);
		if (rc == 0)
			atomic_fetch_add(&dcs->ok, 1);
		else if (rc == -ENOTCONN)
			atomic_fetch_add(&dcs->notconn, 1);
		else
			atomic_fetch_add(&dcs->other, 1);
	}
	/* Exit without close: its entries (if any were left) stay. */
	return 0;
}

static bool some_writes(void *arg)
{
	(void)arg;
	return atomic_load(&dcs->ok) >= 200;
}

START_TEST(test_disconnect_races_writer)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	struct shmg_opts o = { .cluster = "dc" };

	dcs = tc_shared_alloc(sizeof(*dcs));
	for (int round = 0; round < 10; round++) {
		atomic_store(&dcs->ok, 0);
		atomic_store(&dcs->notconn, 0);
		atomic_store(&dcs->stop, 0);
		TC_EQ(shmg_connect(h, "dc", NULL), 0);
		pid_t pid = tc_fork(dc_writer, NULL);
		ck_assert(tc_wait_until(some_writes, NULL, 10000));
		TC_EQ(shmg_disconnect(h, "dc"), 0);
		/* The writer keeps trying; nothing may land any more. */
		TC_EQ(shmg_registry_count(h, &o), 0);
		TC_EQ(shmg_member_count(h, SHMG_KEY("dc/"), &o), 0);
		atomic_store(&dcs->stop, 1);
		TC_EQ(tc_wait_exit(pid, 10000), 0);
		TC_EQ(atomic_load(&dcs->other), 0);
		TC_EQ(shmg_registry_count(h, &o), 0);
		TC_EQ(shmg_member_count(h, SHMG_KEY("dc/"), &o), 0);
		TC_EQ(shmg_connected(h, "dc"), 0);
		TC_EQ(shmg_reap(h), 1);
		TC_ASSERT_CLEAN(h);
	}
	shmg_close(h);
}
END_TEST

static Suite *cluster_suite(void)
{
	Suite *s = suite_create("cluster");
	TCase *tc = tc_case(s, "cluster", 20);

	tcase_add_test(tc, test_write_needs_connect);
	tcase_add_test(tc, test_reads_unconnected_are_empty);
	tcase_add_test(tc, test_connect_disconnect);
	tcase_add_test(tc, test_disconnect_keeps_other_clusters);
	tcase_add_test(tc, test_disconnect_many);
	tcase_add_test(tc, test_same_key_two_clusters);
	tcase_add_test(tc, test_connect_ttl);
	tcase_add_test(tc, test_cluster_table_full);
	tcase_add_test(tc, test_nodes);
	tcase_add_test(tc, test_cluster_slot_reuse_is_clean);
	tcase_add_test(tc, test_disconnect_races_writer);
	return s;
}

int main(void)
{
	return tc_run(cluster_suite());
}
