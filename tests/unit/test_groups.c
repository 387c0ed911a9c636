/* SPDX-License-Identifier: MIT */
/*
 * Process groups: join / leave / members (exact and prefix) / member_ids /
 * counts / limit / local_entries, and their separation from the registry.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tc.h"

#define MAXC 64

/* Everything members() gave, copied. */
struct collected {
	long n;
	struct {
		enum shmg_kind kind;
		shmg_id_t id;
		char key[64];
		size_t key_len;
		char meta[64];
		size_t meta_len;
		char cluster[64];
		int has_cluster;
	} e[MAXC];
};

static int collect_cb(const struct shmg_entry *e, void *arg)
{
	struct collected *c = arg;

	if (c->n < MAXC) {
		c->e[c->n].kind = e->kind;
		c->e[c->n].id = e->id;
		c->e[c->n].key_len = e->key_len < 64 ? e->key_len : 64;
		memcpy(c->e[c->n].key, e->key, c->e[c->n].key_len);
		c->e[c->n].meta_len = e->meta_len < 64 ? e->meta_len : 64;
		memcpy(c->e[c->n].meta, e->meta, c->e[c->n].meta_len);
		c->e[c->n].has_cluster = e->cluster != NULL;
		if (e->cluster)
			snprintf(c->e[c->n].cluster, 64, "%s", e->cluster);
	}
	c->n++;
	return 0;
}

static long find(const struct collected *c, const char *key, shmg_id_t id)
{
	for (long i = 0; i < c->n && i < MAXC; i++)
		if (c->e[i].key_len == strlen(key) && memcmp(c->e[i].key, key, strlen(key)) == 0 &&
		    shmg_id_equal(c->e[i].id, id))
			return i;
	return -1;
}

START_TEST(test_join_members_leave)
{
	shmg_t *a = tc_open(tc_arena, NULL);
	shmg_t *b = tc_open(tc_arena, NULL);
	struct collected c = { 0 };
	long i;

	TC_EQ(shmg_member_count(a, SHMG_KEY("room/1"), NULL), 0);
	TC_EQ(shmg_members(a, SHMG_KEY("room/1"), collect_cb, &c, NULL), 0);
	TC_EQ(shmg_join(a, SHMG_KEY("room/1"), "ma", 2, NULL), 0);
	TC_EQ(shmg_join(b, SHMG_KEY("room/1"), "mb", 2, NULL), 0);
	TC_EQ(shmg_member_count(a, SHMG_KEY("room/1"), NULL), 2);
	TC_EQ(shmg_members(b, SHMG_KEY("room/1"), collect_cb, &c, NULL), 2);
	ck_assert_int_eq(c.n, 2);
	i = find(&c, "room/1", shmg_self(a));
	ck_assert_int_ge(i, 0);
	ck_assert_int_eq(c.e[i].kind, SHMG_MEMBER);
	ck_assert_uint_eq(c.e[i].meta_len, 2);
	ck_assert_mem_eq(c.e[i].meta, "ma", 2);
	ck_assert_int_eq(c.e[i].has_cluster, 0);
	i = find(&c, "room/1", shmg_self(b));
	ck_assert_int_ge(i, 0);
	ck_assert_mem_eq(c.e[i].meta, "mb", 2);

	TC_EQ(shmg_leave(a, SHMG_KEY("room/1"), NULL), 0);
	TC_EQ(shmg_member_count(b, SHMG_KEY("room/1"), NULL), 1);
	memset(&c, 0, sizeof(c));
	TC_EQ(shmg_members(b, SHMG_KEY("room/1"), collect_cb, &c, NULL), 1);
	ck_assert(shmg_id_equal(c.e[0].id, shmg_self(b)));
	TC_EQ(shmg_leave(a, SHMG_KEY("room/1"), NULL), -ENOENT);
	TC_EQ(shmg_leave(a, SHMG_KEY("never"), NULL), -ENOENT);
	TC_EQ(shmg_leave(b, SHMG_KEY("room/1"), NULL), 0);
	TC_EQ(shmg_member_count(b, SHMG_KEY("room/1"), NULL), 0);
	TC_ASSERT_CLEAN(a);
	shmg_close(b);
	shmg_close(a);
}
END_TEST

START_TEST(test_rejoin_updates_meta)
{
	shmg_t *a = tc_open(tc_arena, NULL);
	struct collected c = { 0 };
	struct shmg_info i1, i2;

	TC_EQ(shmg_join(a, SHMG_KEY("g"), "one", 3, NULL), 0);
	TC_EQ(shmg_join(a, SHMG_KEY("g"), "second", 6, NULL), 0);
	TC_EQ(shmg_member_count(a, SHMG_KEY("g"), NULL), 1);
	TC_EQ(shmg_members(a, SHMG_KEY("g"), collect_cb, &c, NULL), 1);
	ck_assert_uint_eq(c.e[0].meta_len, 6);
	ck_assert_mem_eq(c.e[0].meta, "second", 6);
	/* Identical: no-op. */
	TC_EQ(shmg_info(a, &i1), 0);
	TC_EQ(shmg_join(a, SHMG_KEY("g"), "second", 6, NULL), 0);
	TC_EQ(shmg_info(a, &i2), 0);
	ck_assert_uint_eq(i1.pages_used, i2.pages_used);
	TC_EQ(shmg_member_count(a, SHMG_KEY("g"), NULL), 1);
	/* One leave removes it. */
	TC_EQ(shmg_leave(a, SHMG_KEY("g"), NULL), 0);
	TC_EQ(shmg_leave(a, SHMG_KEY("g"), NULL), -ENOENT);
	TC_EQ(shmg_member_count(a, SHMG_KEY("g"), NULL), 0);
	shmg_close(a);
}
END_TEST

START_TEST(test_prefix)
{
	shmg_t *a = tc_open(tc_arena, NULL);
	shmg_t *b = tc_open(tc_arena, NULL);
	struct collected c = { 0 };

	TC_EQ(shmg_join(a, SHMG_KEY("room/1"), "a1", 2, NULL), 0);
	TC_EQ(shmg_join(a, SHMG_KEY("room/2"), "a2", 2, NULL), 0);
	TC_EQ(shmg_join(b, SHMG_KEY("room/2"), "b2", 2, NULL), 0);
	TC_EQ(shmg_join(b, SHMG_KEY("room/sub/3"), "b3", 2, NULL), 0);
	TC_EQ(shmg_join(a, SHMG_KEY("room"), "no", 2, NULL), 0);   /* not under "room/" */
	TC_EQ(shmg_join(a, SHMG_KEY("roomy/1"), "no", 2, NULL), 0);
	TC_EQ(shmg_join(a, SHMG_KEY("rooo/1"), "no", 2, NULL), 0);
	TC_EQ(shmg_join(a, SHMG_KEY("room0"), "no", 2, NULL), 0);  /* '0' == '/' + 1 */
	TC_EQ(shmg_register(a, SHMG_KEY("room/9"), "reg", 3, NULL), 0); /* registry: never a member */

	TC_EQ(shmg_member_count(a, SHMG_KEY("room/"), NULL), 4);
	TC_EQ(shmg_members(a, SHMG_KEY("room/"), collect_cb, &c, NULL), 4);
	ck_assert_int_ge(find(&c, "room/1", shmg_self(a)), 0);
	ck_assert_int_ge(find(&c, "room/2", shmg_self(a)), 0);
	ck_assert_int_ge(find(&c, "room/2", shmg_self(b)), 0);
	ck_assert_int_ge(find(&c, "room/sub/3", shmg_self(b)), 0);
	TC_EQ(shmg_member_count(a, SHMG_KEY("room/sub/"), NULL), 1);
	TC_EQ(shmg_member_count(a, SHMG_KEY("room/2"), NULL), 2);
	TC_EQ(shmg_member_count(a, SHMG_KEY("nothing/"), NULL), 0);
	TC_EQ(shmg_member_count(a, SHMG_KEY("r"), NULL), 0);
	/* "/" matches keys that start with '/', none here. */
	TC_EQ(shmg_member_count(a, SHMG_KEY("/"), NULL), 0);
	TC_EQ(shmg_local_member_count(a, SHMG_KEY("room/"), NULL), 4);
	TC_EQ(shmg_local_member_count(a, SHMG_KEY("room/2"), NULL), 2);

	/* Many keys, across shards. */
	char key[32];
	for (int i = 0; i < 300; i++) {
		snprintf(key, sizeof(key), "wide/%d", i);
		TC_EQ(shmg_join(i % 2 ? a : b, SHMG_KEY(key), NULL, 0, NULL), 0);
	}
	TC_EQ(shmg_member_count(a, SHMG_KEY("wide/"), NULL), 300);
	long n = 0;
	TC_EQ(shmg_members(b, SHMG_KEY("wide/"), tc_count_cb, &n, NULL), 300);
	ck_assert_int_eq(n, 300);
	TC_EQ(shmg_member_ids(a, SHMG_KEY("wide/"), NULL, 0, NULL), 300);
	shmg_close(b);
	shmg_close(a);
}
END_TEST

START_TEST(test_member_ids)
{
	shmg_t *h[5];
	shmg_id_t ids[8];
	shmg_id_t sentinel = { 42, 42, 42 };

	for (int i = 0; i < 5; i++) {
		h[i] = tc_open(tc_arena, NULL);
		TC_EQ(shmg_join(h[i], SHMG_KEY("ids/x"), NULL, 0, NULL), 0);
	}
	for (int i = 0; i < 8; i++)
		ids[i] = sentinel;
	/* cap < total: total returned, only cap written. */
	TC_EQ(shmg_member_ids(h[0], SHMG_KEY("ids/x"), ids, 3, NULL), 5);
	for (int i = 0; i < 3; i++) {
		int found = 0;
		for (int j = 0; j < 5; j++)
			found += shmg_id_equal(ids[i], shmg_self(h[j]));
		ck_assert_int_eq(found, 1);
	}
	for (int i = 3; i < 8; i++)
		ck_assert(shmg_id_equal(ids[i], sentinel));
	/* cap >= total: all distinct. */
	TC_EQ(shmg_member_ids(h[0], SHMG_KEY("ids/x"), ids, 8, NULL), 5);
	for (int j = 0; j < 5; j++) {
		int found = 0;
		for (int i = 0; i < 5; i++)
			found += shmg_id_equal(ids[i], shmg_self(h[j]));
		ck_assert_int_eq(found, 1);
	}
	ck_assert(shmg_id_equal(ids[5], sentinel));
	TC_EQ(shmg_member_ids(h[0], SHMG_KEY("ids/"), ids, 8, NULL), 5);
	TC_EQ(shmg_member_ids(h[0], SHMG_KEY("ids/x"), NULL, 0, NULL), 5);
	TC_EQ(shmg_member_ids(h[0], SHMG_KEY("ids/none"), ids, 8, NULL), 0);
	for (int i = 0; i < 5; i++)
		shmg_close(h[i]);
}
END_TEST

static int stop_at_two(const struct shmg_entry *e, void *arg)
{
	(void)e;
	return ++*(long *)arg == 2 ? 99 : 0;
}

START_TEST(test_limit_and_stop)
{
	shmg_t *h[6];
	char key[16];

	for (int i = 0; i < 6; i++) {
		h[i] = tc_open(tc_arena, NULL);
		TC_EQ(shmg_join(h[i], SHMG_KEY("lim/a"), NULL, 0, NULL), 0);
		snprintf(key, sizeof(key), "lim/b%d", i);
		TC_EQ(shmg_join(h[i], SHMG_KEY(key), NULL, 0, NULL), 0);
	}
	for (size_t lim = 1; lim <= 7; lim++) {
		struct shmg_opts o = { .limit = lim };
		long n = 0;
		long want = lim < 6 ? (long)lim : 6;

		TC_EQ(shmg_members(h[0], SHMG_KEY("lim/a"), tc_count_cb, &n, &o), want);
		ck_assert_int_eq(n, want);
		/* One global limit across a prefix query (12 entries in all). */
		n = 0;
		TC_EQ(shmg_members(h[0], SHMG_KEY("lim/"), tc_count_cb, &n, &o), (long)lim);
		ck_assert_int_eq(n, (long)lim);
		n = 0;
		TC_EQ(shmg_local_members(h[0], SHMG_KEY("lim/"), tc_count_cb, &n, &o), (long)lim);
	}
	struct shmg_opts zero = { .limit = 0 };
	long n = 0;
	TC_EQ(shmg_members(h[0], SHMG_KEY("lim/"), tc_count_cb, &n, &zero), 12);
	/* The callback's non-zero value stops the walk and is returned. */
	n = 0;
	TC_EQ(shmg_members(h[0], SHMG_KEY("lim/"), stop_at_two, &n, NULL), 99);
	ck_assert_int_eq(n, 2);
	n = 0;
	TC_EQ(shmg_local_members(h[0], SHMG_KEY("lim/a"), tc_count_cb, &n, NULL), 6);
	for (int i = 0; i < 6; i++)
		shmg_close(h[i]);
}
END_TEST

START_TEST(test_separate_namespaces)
{
	shmg_t *a = tc_open(tc_arena, NULL);
	shmg_t *b = tc_open(tc_arena, NULL);
	struct collected c = { 0 };
	shmg_id_t id;

	/* Registered at a key: not a member. */
	TC_EQ(shmg_register(a, SHMG_KEY("both"), "reg", 3, NULL), 0);
	TC_EQ(shmg_member_count(a, SHMG_KEY("both"), NULL), 0);
	TC_EQ(shmg_leave(a, SHMG_KEY("both"), NULL), -ENOENT);
	/* Joined at a key: not registered, and registering it is not taken. */
	TC_EQ(shmg_join(b, SHMG_KEY("both"), "mem", 3, NULL), 0);
	TC_EQ(shmg_join(a, SHMG_KEY("both"), "mem-a", 5, NULL), 0);
	TC_EQ(shmg_join(b, SHMG_KEY("only-group"), NULL, 0, NULL), 0);
	TC_EQ(shmg_lookup(a, SHMG_KEY("only-group"), &id, NULL, 0, NULL, NULL), -ENOENT);
	TC_EQ(shmg_unregister(b, SHMG_KEY("only-group"), NULL), -ENOENT);
	TC_EQ(shmg_register(b, SHMG_KEY("only-group"), NULL, 0, NULL), 0);

	TC_EQ(shmg_members(a, SHMG_KEY("both"), collect_cb, &c, NULL), 2);
	for (long i = 0; i < c.n; i++)
		ck_assert_int_eq(c.e[i].kind, SHMG_MEMBER);
	TC_EQ(shmg_lookup(b, SHMG_KEY("both"), &id, NULL, 0, NULL, NULL), 0);
	ck_assert(shmg_id_equal(id, shmg_self(a)));
	TC_EQ(shmg_registry_count(a, NULL), 2);
	/* Leaving does not unregister and vice versa. */
	TC_EQ(shmg_leave(a, SHMG_KEY("both"), NULL), 0);
	TC_EQ(shmg_lookup(b, SHMG_KEY("both"), NULL, NULL, 0, NULL, NULL), 0);
	TC_EQ(shmg_unregister(a, SHMG_KEY("both"), NULL), 0);
	TC_EQ(shmg_member_count(a, SHMG_KEY("both"), NULL), 1);
	TC_ASSERT_CLEAN(a);
	shmg_close(b);
	shmg_close(a);
}
END_TEST

struct entries_seen {
	int reg_default, mem_default, reg_named, mem_named, other;
};

static int entries_cb(const struct shmg_entry *e, void *arg)
{
	struct entries_seen *s = arg;

	if (e->kind == SHMG_REGISTRY && !e->cluster && e->key_len == 1 && e->key[0] == 'r')
		s->reg_default++;
	else if (e->kind == SHMG_MEMBER && !e->cluster && e->key_len == 1 && e->key[0] == 'm')
		s->mem_default++;
	else if (e->kind == SHMG_REGISTRY && e->cluster && strcmp(e->cluster, "game") == 0 &&
		 e->key_len == 1 && e->key[0] == 'r')
		s->reg_named++;
	else if (e->kind == SHMG_MEMBER && e->cluster && strcmp(e->cluster, "game") == 0 &&
		 e->key_len == 1 && e->key[0] == 'm')
		s->mem_named++;
	else
		s->other++;
	return 0;
}

START_TEST(test_local_entries)
{
	shmg_t *a = tc_open(tc_arena, NULL);
	shmg_t *b = tc_open(tc_arena, NULL);
	struct shmg_opts g = { .cluster = "game" };
	struct entries_seen s = { 0 };

	TC_EQ(shmg_local_entries(a, entries_cb, &s), 0);
	TC_EQ(shmg_connect(a, "game", NULL), 0);
	TC_EQ(shmg_register(a, SHMG_KEY("r"), "1", 1, NULL), 0);
	TC_EQ(shmg_join(a, SHMG_KEY("m"), "2", 1, NULL), 0);
	TC_EQ(shmg_join(b, SHMG_KEY("m"), "3", 1, NULL), 0);
	TC_EQ(shmg_register(b, SHMG_KEY("r"), "4", 1, &g), 0);
	TC_EQ(shmg_join(a, SHMG_KEY("m"), "5", 1, &g), 0);

	TC_EQ(shmg_local_entries(a, entries_cb, &s), 5);
	ck_assert_int_eq(s.reg_default, 1);
	ck_assert_int_eq(s.mem_default, 2);
	ck_assert_int_eq(s.reg_named, 1);
	ck_assert_int_eq(s.mem_named, 1);
	ck_assert_int_eq(s.other, 0);
	memset(&s, 0, sizeof(s));
	TC_EQ(shmg_entries(b, 1, entries_cb, &s), 5);
	ck_assert_int_eq(s.other, 0);
	shmg_close(b);
	shmg_close(a);
}
END_TEST

START_TEST(test_counts_per_cluster)
{
	shmg_t *a = tc_open(tc_arena, NULL);
	struct shmg_opts g = { .cluster = "game" };

	TC_EQ(shmg_connect(a, "game", NULL), 0);
	TC_EQ(shmg_join(a, SHMG_KEY("lobby/1"), NULL, 0, NULL), 0);
	TC_EQ(shmg_join(a, SHMG_KEY("lobby/1"), NULL, 0, &g), 0);
	TC_EQ(shmg_join(a, SHMG_KEY("lobby/2"), NULL, 0, &g), 0);
	TC_EQ(shmg_member_count(a, SHMG_KEY("lobby/"), NULL), 1);
	TC_EQ(shmg_member_count(a, SHMG_KEY("lobby/"), &g), 2);
	TC_EQ(shmg_local_member_count(a, SHMG_KEY("lobby/"), &g), 2);
	TC_EQ(shmg_leave(a, SHMG_KEY("lobby/2"), NULL), -ENOENT);
	TC_EQ(shmg_leave(a, SHMG_KEY("lobby/2"), &g), 0);
	TC_EQ(shmg_member_count(a, SHMG_KEY("lobby/"), &g), 1);
	shmg_close(a);
}
END_TEST

START_TEST(test_close_leaves_groups)
{
	shmg_t *a = tc_open(tc_arena, NULL);
	shmg_t *b = tc_open(tc_arena, NULL);
	char key[16];

	for (int i = 0; i < 50; i++) {
		snprintf(key, sizeof(key), "cl/%d", i);
		TC_EQ(shmg_join(b, SHMG_KEY(key), "x", 1, NULL), 0);
		TC_EQ(shmg_join(a, SHMG_KEY(key), "y", 1, NULL), 0);
	}
	TC_EQ(shmg_member_count(a, SHMG_KEY("cl/"), NULL), 100);
	TC_EQ(shmg_close(b), 0);
	TC_EQ(shmg_member_count(a, SHMG_KEY("cl/"), NULL), 50);
	TC_EQ(shmg_local_member_count(a, SHMG_KEY("cl/"), NULL), 50);
	TC_ASSERT_CLEAN(a);
	shmg_close(a);
}
END_TEST

struct nested {
	shmg_t *h;
	long found, errors;
};

static int nested_cb(const struct shmg_entry *e, void *arg)
{
	struct nested *n = arg;
	char m[16];
	size_t ml;

	/* Reads on the same handle are allowed inside the callback. */
	if (shmg_lookup(n->h, e->key, e->key_len, NULL, m, sizeof(m), &ml, NULL) == 0 && ml == 3 &&
	    memcmp(m, "reg", 3) == 0)
		n->found++;
	if (shmg_member_count(n->h, e->key, e->key_len, NULL) != 1)
		n->errors++;
	return 0;
}

START_TEST(test_reads_inside_callback)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	struct nested n = { h, 0, 0 };
	char key[16];

	for (int i = 0; i < 20; i++) {
		snprintf(key, sizeof(key), "nest/%d", i);
		TC_EQ(shmg_join(h, SHMG_KEY(key), NULL, 0, NULL), 0);
		TC_EQ(shmg_register(h, SHMG_KEY(key), "reg", 3, NULL), 0);
	}
	TC_EQ(shmg_members(h, SHMG_KEY("nest/"), nested_cb, &n, NULL), 20);
	ck_assert_int_eq(n.found, 20);
	ck_assert_int_eq(n.errors, 0);
	/* The section of members() was closed: lookup_ref needs its own. */
	struct shmg_entry e;
	TC_EQ(shmg_lookup_ref(h, SHMG_KEY("nest/0"), &e, NULL), -EPERM);
	shmg_close(h);
}
END_TEST

START_TEST(test_prefix_binary_bytes)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	const char k1[] = { 'b', '/', (char)0xff }, k2[] = { 'b', '/', (char)0x80, 0x01 },
		   k3[] = { 'b', (char)0xff, '/' }, k4[] = { 'b', '0' };

	TC_EQ(shmg_join(h, k1, sizeof(k1), NULL, 0, NULL), 0);
	TC_EQ(shmg_join(h, k2, sizeof(k2), NULL, 0, NULL), 0);
	TC_EQ(shmg_join(h, k3 + 0, 2, NULL, 0, NULL), 0); /* "b\xff" */
	TC_EQ(shmg_join(h, k4, sizeof(k4), NULL, 0, NULL), 0);
	TC_EQ(shmg_member_count(h, SHMG_KEY("b/"), NULL), 2);
	TC_EQ(shmg_member_count(h, k3, sizeof(k3), NULL), 0);
	TC_EQ(shmg_member_count(h, k1, sizeof(k1), NULL), 1);
	shmg_close(h);
}
END_TEST

static Suite *groups_suite(void)
{
	Suite *s = suite_create("groups");
	TCase *tc = tc_case(s, "groups", 20);

	tcase_add_test(tc, test_join_members_leave);
	tcase_add_test(tc, test_rejoin_updates_meta);
	tcase_add_test(tc, test_prefix);
	tcase_add_test(tc, test_member_ids);
	tcase_add_test(tc, test_limit_and_stop);
	tcase_add_test(tc, test_separate_namespaces);
	tcase_add_test(tc, test_local_entries);
	tcase_add_test(tc, test_counts_per_cluster);
	tcase_add_test(tc, test_close_leaves_groups);
	tcase_add_test(tc, test_reads_inside_callback);
	tcase_add_test(tc, test_prefix_binary_bytes);
	return s;
}

int main(void)
{
	return tc_run(groups_suite());
}
