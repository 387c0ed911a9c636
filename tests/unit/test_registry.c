/* SPDX-License-Identifier: MIT */
/*
 * The registry: register / unregister / lookup / counts, every invalid input
 * (each checked to change nothing), read sections and extract_meta.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tc.h"

/* A view of everything a failing call could have touched. */
struct snap {
	long reg, local_reg, members, local_members;
	shmg_id_t owner;
	char meta[64];
	size_t meta_len;
	uint64_t time_ns;
	uint64_t pages_used;
};

static void take_snap(shmg_t *h, struct snap *s)
{
	struct shmg_info in;

	memset(s, 0, sizeof(*s));
	s->reg = shmg_registry_count(h, NULL);
	s->local_reg = shmg_local_registry_count(h, NULL);
	s->members = shmg_member_count(h, SHMG_KEY("s/"), NULL);
	s->local_members = shmg_local_member_count(h, SHMG_KEY("s/"), NULL);
	TC_EQ(shmg_lookup(h, SHMG_KEY("s/known"), &s->owner, s->meta, sizeof(s->meta),
			  &s->meta_len, NULL),
	      0);
	TC_EQ(shmg_read_begin(h), 0);
	struct shmg_entry e;
	TC_EQ(shmg_lookup_ref(h, SHMG_KEY("s/known"), &e, NULL), 0);
	s->time_ns = e.time_ns;
	TC_EQ(shmg_read_end(h), 0);
	TC_EQ(shmg_info(h, &in), 0);
	s->pages_used = in.pages_used;
}

static void assert_same(const struct snap *a, const struct snap *b, const char *what)
{
	ck_assert_msg(a->reg == b->reg, "%s: registry_count %ld -> %ld", what, a->reg, b->reg);
	ck_assert_msg(a->local_reg == b->local_reg, "%s: local_registry_count changed", what);
	ck_assert_msg(a->members == b->members, "%s: member_count changed", what);
	ck_assert_msg(a->local_members == b->local_members, "%s: local_member_count changed", what);
	ck_assert_msg(shmg_id_equal(a->owner, b->owner), "%s: owner changed", what);
	ck_assert_msg(a->meta_len == b->meta_len && memcmp(a->meta, b->meta, a->meta_len) == 0,
		      "%s: meta changed", what);
	ck_assert_msg(a->time_ns == b->time_ns, "%s: time changed", what);
	ck_assert_msg(a->pages_used == b->pages_used, "%s: pages_used changed", what);
}

/* An arena with one registration and one membership to watch. */
static shmg_t *open_seeded(void)
{
	shmg_t *h = tc_open(tc_arena, NULL);

	TC_EQ(shmg_register(h, SHMG_KEY("s/known"), "known-meta", 10, NULL), 0);
	TC_EQ(shmg_join(h, SHMG_KEY("s/group"), "gm", 2, NULL), 0);
	return h;
}

/* ---- basics ------------------------------------------------------------- */

START_TEST(test_register_lookup_unregister)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	shmg_t *other = tc_open(tc_arena, NULL);
	shmg_id_t id = { 0, 0, 0 };
	char meta[16] = { 0 };
	size_t ml = 0;

	TC_EQ(shmg_registry_count(h, NULL), 0);
	TC_EQ(shmg_register(h, SHMG_KEY("alpha"), "m1", 2, NULL), 0);
	TC_EQ(shmg_registry_count(h, NULL), 1);
	TC_EQ(shmg_local_registry_count(h, NULL), 1);

	/* Seen from this handle and from another endpoint. */
	TC_EQ(shmg_lookup(other, SHMG_KEY("alpha"), &id, meta, sizeof(meta), &ml, NULL), 0);
	ck_assert(shmg_id_equal(id, shmg_self(h)));
	ck_assert_uint_eq(ml, 2);
	ck_assert_mem_eq(meta, "m1", 2);
	/* Each out-parameter is optional. */
	TC_EQ(shmg_lookup(h, SHMG_KEY("alpha"), NULL, NULL, 0, NULL, NULL), 0);
	ml = 0;
	TC_EQ(shmg_lookup(h, SHMG_KEY("alpha"), NULL, NULL, 0, &ml, NULL), 0);
	ck_assert_uint_eq(ml, 2);

	/* Another key is not found, and outputs are left alone. */
	shmg_id_t sentinel = { 77, 77, 77 };
	id = sentinel;
	ml = 999;
	TC_EQ(shmg_lookup(h, SHMG_KEY("alphA"), &id, meta, sizeof(meta), &ml, NULL), -ENOENT);
	TC_EQ(shmg_lookup(h, SHMG_KEY("alph"), &id, meta, sizeof(meta), &ml, NULL), -ENOENT);
	TC_EQ(shmg_lookup(h, SHMG_KEY("alpha2"), &id, meta, sizeof(meta), &ml, NULL), -ENOENT);
	ck_assert(shmg_id_equal(id, sentinel));
	ck_assert_uint_eq(ml, 999);

	TC_EQ(shmg_unregister(h, SHMG_KEY("alpha"), NULL), 0);
	TC_EQ(shmg_lookup(other, SHMG_KEY("alpha"), &id, NULL, 0, NULL, NULL), -ENOENT);
	TC_EQ(shmg_registry_count(h, NULL), 0);
	TC_EQ(shmg_unregister(h, SHMG_KEY("alpha"), NULL), -ENOENT);

	/* Free again: the other endpoint may take it. */
	TC_EQ(shmg_register(other, SHMG_KEY("alpha"), NULL, 0, NULL), 0);
	ml = 5;
	TC_EQ(shmg_lookup(h, SHMG_KEY("alpha"), &id, meta, sizeof(meta), &ml, NULL), 0);
	ck_assert(shmg_id_equal(id, shmg_self(other)));
	ck_assert_uint_eq(ml, 0);
	TC_ASSERT_CLEAN(h);
	shmg_close(other);
	shmg_close(h);
}
END_TEST

START_TEST(test_many_keys)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	char key[32], meta[32];
	size_t ml;
	const int n = 5000;

	for (int i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "many/%d", i);
		TC_EQ(shmg_register(h, SHMG_KEY(key), key, strlen(key), NULL), 0);
	}
	TC_EQ(shmg_registry_count(h, NULL), n);
	for (int i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "many/%d", i);
		TC_EQ(shmg_lookup(h, SHMG_KEY(key), NULL, meta, sizeof(meta), &ml, NULL), 0);
		ck_assert_uint_eq(ml, strlen(key));
		ck_assert_mem_eq(meta, key, ml);
	}
	for (int i = 0; i < n; i += 2) {
		snprintf(key, sizeof(key), "many/%d", i);
		TC_EQ(shmg_unregister(h, SHMG_KEY(key), NULL), 0);
	}
	TC_EQ(shmg_registry_count(h, NULL), n / 2);
	for (int i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "many/%d", i);
		TC_EQ(shmg_lookup(h, SHMG_KEY(key), NULL, NULL, 0, NULL, NULL),
		      i % 2 ? 0 : -ENOENT);
	}
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

/* A reader keeps each shard's table as it last checked it: tables that
 * grow under it (moved to new extents) must be followed, not read stale. */
START_TEST(test_lookup_follows_resized_tables)
{
	struct shmg_config cfg = {.shards = 1};
	shmg_t *h = tc_open(tc_arena, &cfg);
	shmg_t *r = tc_open(tc_arena, NULL);
	char key[32];
	const int n = 8000; /* two resizes of the one shard's table */

	TC_EQ(shmg_register(h, "grow/0", 6, NULL, 0, NULL), 0);
	TC_EQ(shmg_lookup(r, "grow/0", 6, NULL, NULL, 0, NULL, NULL), 0);
	for (int i = 1; i < n; i++) {
		snprintf(key, sizeof(key), "grow/%d", i);
		TC_EQ(shmg_register(h, SHMG_KEY(key), NULL, 0, NULL), 0);
		if (i % 512 == 0)
			TC_EQ(shmg_lookup(r, SHMG_KEY(key), NULL, NULL, 0, NULL, NULL), 0);
	}
	for (int i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "grow/%d", i);
		TC_EQ(shmg_lookup(r, SHMG_KEY(key), NULL, NULL, 0, NULL, NULL), 0);
	}
	TC_EQ(shmg_lookup(r, "grow/x", 6, NULL, NULL, 0, NULL, NULL), -ENOENT);
	TC_ASSERT_CLEAN(r);
	shmg_close(r);
	shmg_close(h);
}
END_TEST

START_TEST(test_reregister_updates_in_place)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	shmg_t *r = tc_open(tc_arena, NULL);
	shmg_id_t id;
	char meta[16];
	size_t ml;

	TC_EQ(shmg_register(h, SHMG_KEY("k"), "old", 3, NULL), 0);
	TC_EQ(shmg_register(h, SHMG_KEY("k"), "newer", 5, NULL), 0);
	TC_EQ(shmg_registry_count(r, NULL), 1);
	TC_EQ(shmg_lookup(r, SHMG_KEY("k"), &id, meta, sizeof(meta), &ml, NULL), 0);
	ck_assert(shmg_id_equal(id, shmg_self(h)));
	ck_assert_uint_eq(ml, 5);
	ck_assert_mem_eq(meta, "newer", 5);
	/* Shorter, then empty. */
	TC_EQ(shmg_register(h, SHMG_KEY("k"), "x", 1, NULL), 0);
	TC_EQ(shmg_lookup(r, SHMG_KEY("k"), NULL, meta, sizeof(meta), &ml, NULL), 0);
	ck_assert_uint_eq(ml, 1);
	ck_assert_int_eq(meta[0], 'x');
	TC_EQ(shmg_register(h, SHMG_KEY("k"), NULL, 0, NULL), 0);
	TC_EQ(shmg_lookup(r, SHMG_KEY("k"), NULL, meta, sizeof(meta), &ml, NULL), 0);
	ck_assert_uint_eq(ml, 0);
	TC_EQ(shmg_registry_count(r, NULL), 1);
	TC_ASSERT_CLEAN(h);
	shmg_close(r);
	shmg_close(h);
}
END_TEST

START_TEST(test_reregister_identical_is_noop)
{
	shmg_t *h = open_seeded();
	struct snap a, b;

	take_snap(h, &a);
	TC_EQ(shmg_register(h, SHMG_KEY("s/known"), "known-meta", 10, NULL), 0);
	take_snap(h, &b);
	assert_same(&a, &b, "identical re-register");
	/* A different meta does change the time. */
	TC_EQ(shmg_register(h, SHMG_KEY("s/known"), "known-metA", 10, NULL), 0);
	take_snap(h, &b);
	ck_assert_mem_eq(b.meta, "known-metA", 10);
	ck_assert_uint_ge(b.time_ns, a.time_ns);
	shmg_close(h);
}
END_TEST

START_TEST(test_taken_by_other)
{
	shmg_t *h = open_seeded();
	shmg_t *o = tc_open(tc_arena, NULL);
	struct snap a, b;

	take_snap(h, &a);
	TC_EQ(shmg_register(o, SHMG_KEY("s/known"), "intruder", 8, NULL), -EEXIST);
	TC_EQ(shmg_register(o, SHMG_KEY("s/known"), "known-meta", 10, NULL), -EEXIST);
	TC_EQ(shmg_unregister(o, SHMG_KEY("s/known"), NULL), -EPERM);
	TC_EQ(shmg_unregister(o, SHMG_KEY("s/nobody"), NULL), -ENOENT);
	take_snap(h, &b);
	assert_same(&a, &b, "-EEXIST / -EPERM");
	ck_assert(shmg_id_equal(b.owner, shmg_self(h)));
	TC_EQ(shmg_local_registry_count(o, NULL), 1); /* local = this node, not endpoint */
	shmg_close(o);
	shmg_close(h);
}
END_TEST

START_TEST(test_any_bytes_key)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	const char key[] = { '\x01', '\xff', ' ', '\n', '/', 'x', '\x7f' };
	shmg_id_t id;

	TC_EQ(shmg_register(h, key, sizeof(key), "m", 1, NULL), 0);
	TC_EQ(shmg_lookup(h, key, sizeof(key), &id, NULL, 0, NULL, NULL), 0);
	TC_EQ(shmg_lookup(h, key, sizeof(key) - 1, &id, NULL, 0, NULL, NULL), -ENOENT);
	/* "/" alone is a prefix key; a '/' inside is fine. */
	TC_EQ(shmg_register(h, SHMG_KEY("a/b"), NULL, 0, NULL), 0);
	TC_EQ(shmg_unregister(h, key, sizeof(key), NULL), 0);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

START_TEST(test_limits_exact)
{
	struct shmg_config c = { 0 };
	shmg_t *h;
	char key[101], meta[201], out[201];
	size_t ml;

	c.key_max = 100;
	c.meta_max = 200;
	h = tc_open(tc_arena, &c);
	memset(key, 'k', sizeof(key));
	memset(meta, 'm', sizeof(meta));
	TC_EQ(shmg_register(h, key, 100, meta, 200, NULL), 0);
	TC_EQ(shmg_lookup(h, key, 100, NULL, out, sizeof(out), &ml, NULL), 0);
	ck_assert_uint_eq(ml, 200);
	TC_EQ(shmg_register(h, key, 101, meta, 1, NULL), -EINVAL);
	TC_EQ(shmg_register(h, key, 99, meta, 201, NULL), -EINVAL);
	TC_EQ(shmg_lookup(h, key, 101, NULL, NULL, 0, NULL, NULL), -EINVAL);
	TC_EQ(shmg_registry_count(h, NULL), 1);
	shmg_close(h);
}
END_TEST

/* ---- invalid input changes nothing -------------------------------------- */

static char long_key[300];
static char long_meta[SHMG_META_MAX_LIMIT + 2];

struct bad_key {
	const char *what;
	const char *key;
	size_t len;
};

static const struct bad_key bad_keys[] = {
	{ "NULL key", NULL, 3 },
	{ "NULL key len 0", NULL, 0 },
	{ "empty key", "abc", 0 },
	{ "embedded NUL", "ab\0cd", 5 },
	{ "trailing NUL", "abc\0", 4 },
	{ "leading NUL", "\0abc", 4 },
	{ "ends in /", "room/", 5 },
	{ "just /", "/", 1 },
	{ "key_max + 1", long_key, 256 },
	{ "far too long", long_key, 300 },
};
#define N_BAD_KEYS ((int)(sizeof(bad_keys) / sizeof(bad_keys[0])))

START_TEST(test_bad_key_changes_nothing)
{
	const struct bad_key *b = &bad_keys[_i];
	shmg_t *h = open_seeded();
	struct snap a, z;
	shmg_id_t id = { 5, 5, 5 };

	memset(long_key, 'q', sizeof(long_key));
	take_snap(h, &a);
	ck_assert_msg(shmg_register(h, b->key, b->len, "m", 1, NULL) == -EINVAL,
		      "register %s", b->what);
	ck_assert_msg(shmg_unregister(h, b->key, b->len, NULL) == -EINVAL, "unregister %s",
		      b->what);
	ck_assert_msg(shmg_join(h, b->key, b->len, "m", 1, NULL) == -EINVAL, "join %s", b->what);
	ck_assert_msg(shmg_leave(h, b->key, b->len, NULL) == -EINVAL, "leave %s", b->what);
	take_snap(h, &z);
	assert_same(&a, &z, b->what);
	/* Lookups refuse malformed keys too, except that a prefix key is simply
	 * never registered. */
	int rc = shmg_lookup(h, b->key, b->len, &id, NULL, 0, NULL, NULL);
	if (b->key && b->len > 0 && b->key[b->len - 1] == '/' && b->len <= 255)
		ck_assert_msg(rc == -ENOENT, "lookup %s = %d", b->what, rc);
	else
		ck_assert_msg(rc == -EINVAL, "lookup %s = %d", b->what, rc);
	ck_assert_uint_eq(id.node, 5);
	shmg_close(h);
}
END_TEST

START_TEST(test_bad_meta_changes_nothing)
{
	shmg_t *h = open_seeded();
	struct snap a, z;

	memset(long_meta, 'M', sizeof(long_meta));
	take_snap(h, &a);
	/* New key and existing key, register and join. */
	TC_EQ(shmg_register(h, SHMG_KEY("s/new"), long_meta, 1025, NULL), -EINVAL);
	TC_EQ(shmg_register(h, SHMG_KEY("s/known"), long_meta, 1025, NULL), -EINVAL);
	TC_EQ(shmg_register(h, SHMG_KEY("s/new"), long_meta, SHMG_META_MAX_LIMIT + 1, NULL),
	      -EINVAL);
	TC_EQ(shmg_register(h, SHMG_KEY("s/new"), NULL, 1, NULL), -EINVAL);
	TC_EQ(shmg_register(h, SHMG_KEY("s/known"), NULL, 10, NULL), -EINVAL);
	TC_EQ(shmg_register(h, SHMG_KEY("s/new"), NULL, SIZE_MAX, NULL), -EINVAL);
	TC_EQ(shmg_join(h, SHMG_KEY("s/group"), long_meta, 1025, NULL), -EINVAL);
	TC_EQ(shmg_join(h, SHMG_KEY("s/g2"), NULL, 4, NULL), -EINVAL);
	take_snap(h, &z);
	assert_same(&a, &z, "bad meta");
	TC_EQ(shmg_lookup(h, SHMG_KEY("s/new"), NULL, NULL, 0, NULL, NULL), -ENOENT);
	/* meta_max itself is fine. */
	TC_EQ(shmg_register(h, SHMG_KEY("s/new"), long_meta, 1024, NULL), 0);
	shmg_close(h);
}
END_TEST

static const char *const bad_clusters[] = {
	"",
	"0123456789012345678901234567890123456789012345678901234567890123", /* 64 */
	"has space",
	"ctl\x01",
	"tab\there",
	"del\x7f",
	"caf\xc3\xa9",
	"nl\n",
};
#define N_BAD_CLUSTERS ((int)(sizeof(bad_clusters) / sizeof(bad_clusters[0])))

START_TEST(test_bad_cluster_changes_nothing)
{
	const char *cl = bad_clusters[_i];
	shmg_t *h = open_seeded();
	struct snap a, z;
	struct shmg_opts o = { .cluster = cl };

	take_snap(h, &a);
	ck_assert_msg(shmg_register(h, SHMG_KEY("s/x"), "m", 1, &o) == -EINVAL, "register '%s'",
		      cl);
	ck_assert_msg(shmg_unregister(h, SHMG_KEY("s/known"), &o) == -EINVAL, "unregister");
	ck_assert_msg(shmg_join(h, SHMG_KEY("s/x"), "m", 1, &o) == -EINVAL, "join");
	ck_assert_msg(shmg_leave(h, SHMG_KEY("s/group"), &o) == -EINVAL, "leave");
	TC_EQ(shmg_lookup(h, SHMG_KEY("s/known"), NULL, NULL, 0, NULL, &o), -EINVAL);
	TC_EQ(shmg_registry_count(h, &o), -EINVAL);
	TC_EQ(shmg_local_registry_count(h, &o), -EINVAL);
	TC_EQ(shmg_member_count(h, SHMG_KEY("s/"), &o), -EINVAL);
	TC_EQ(shmg_local_member_count(h, SHMG_KEY("s/"), &o), -EINVAL);
	TC_EQ(shmg_member_ids(h, SHMG_KEY("s/group"), NULL, 0, &o), -EINVAL);
	TC_EQ(shmg_members(h, SHMG_KEY("s/group"), tc_count_cb, &(long){ 0 }, &o), -EINVAL);
	TC_EQ(shmg_connect(h, cl, NULL), -EINVAL);
	TC_EQ(shmg_connected(h, cl), -EINVAL);
	TC_EQ(shmg_disconnect(h, cl), -EINVAL);
	TC_EQ(shmg_nodes(h, cl, NULL, 0), -EINVAL);
	take_snap(h, &z);
	assert_same(&a, &z, cl);
	struct shmg_info in;
	TC_EQ(shmg_info(h, &in), 0);
	ck_assert_uint_eq(in.clusters_connected, 0);
	shmg_close(h);
}
END_TEST

START_TEST(test_good_cluster_names)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	const char *good[] = { "a", "org/1", "ttl/x", "!~", "012345678901234567890123456789012345678901234567890123456789012" };

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct shmg_opts o = { .cluster = good[i] };

		TC_EQ(shmg_register(h, SHMG_KEY("k"), NULL, 0, &o), -ENOTCONN);
		TC_EQ(shmg_connect(h, good[i], NULL), 0);
		TC_EQ(shmg_register(h, SHMG_KEY("k"), NULL, 0, &o), 0);
		TC_EQ(shmg_registry_count(h, &o), 1);
	}
	shmg_close(h);
}
END_TEST

START_TEST(test_null_handle)
{
	struct shmg_entry e;
	shmg_id_t ids[2];
	uint32_t nodes[2];
	struct shmg_info in;

	TC_EQ(shmg_register(NULL, SHMG_KEY("k"), "m", 1, NULL), -EBADF);
	TC_EQ(shmg_unregister(NULL, SHMG_KEY("k"), NULL), -EBADF);
	TC_EQ(shmg_lookup(NULL, SHMG_KEY("k"), NULL, NULL, 0, NULL, NULL), -EBADF);
	TC_EQ(shmg_lookup_ref(NULL, SHMG_KEY("k"), &e, NULL), -EBADF);
	TC_EQ(shmg_read_begin(NULL), -EBADF);
	TC_EQ(shmg_read_end(NULL), -EBADF);
	TC_EQ(shmg_registry_count(NULL, NULL), -EBADF);
	TC_EQ(shmg_local_registry_count(NULL, NULL), -EBADF);
	TC_EQ(shmg_join(NULL, SHMG_KEY("k"), "m", 1, NULL), -EBADF);
	TC_EQ(shmg_leave(NULL, SHMG_KEY("k"), NULL), -EBADF);
	TC_EQ(shmg_members(NULL, SHMG_KEY("k"), tc_count_cb, &(long){ 0 }, NULL), -EBADF);
	TC_EQ(shmg_local_members(NULL, SHMG_KEY("k"), tc_count_cb, &(long){ 0 }, NULL), -EBADF);
	TC_EQ(shmg_member_ids(NULL, SHMG_KEY("k"), ids, 2, NULL), -EBADF);
	TC_EQ(shmg_member_count(NULL, SHMG_KEY("k"), NULL), -EBADF);
	TC_EQ(shmg_local_member_count(NULL, SHMG_KEY("k"), NULL), -EBADF);
	TC_EQ(shmg_local_entries(NULL, tc_count_cb, &(long){ 0 }), -EBADF);
	TC_EQ(shmg_entries(NULL, 1, tc_count_cb, &(long){ 0 }), -EBADF);
	TC_EQ(shmg_set_extract_meta(NULL, NULL, NULL), -EBADF);
	TC_EQ(shmg_connect(NULL, "c", NULL), -EBADF);
	TC_EQ(shmg_disconnect(NULL, "c"), -EBADF);
	TC_EQ(shmg_disconnect_many(NULL, (const char *const[]){ "c" }, 1), -EBADF);
	TC_EQ(shmg_connected(NULL, "c"), -EBADF);
	TC_EQ(shmg_nodes(NULL, NULL, nodes, 2), -EBADF);
	TC_EQ(shmg_reap(NULL), -EBADF);
	TC_EQ(shmg_check(NULL, NULL, NULL), -EBADF);
	TC_EQ(shmg_info(NULL, &in), -EBADF);
	TC_EQ(shmg_log_level(NULL, -1), -EBADF);
}
END_TEST

START_TEST(test_closed_handle)
{
	shmg_t *h = open_seeded();
	shmg_t *dead = tc_open(tc_arena, NULL);
	struct snap a, z;
	struct shmg_entry e;

	TC_EQ(shmg_register(dead, SHMG_KEY("s/dead"), "d", 1, NULL), 0);
	TC_EQ(shmg_close(dead), 0);
	take_snap(h, &a);
	/* Best effort like a closed fd: the library must recognise it. */
	TC_EQ(shmg_register(dead, SHMG_KEY("s/x"), "m", 1, NULL), -EBADF);
	TC_EQ(shmg_register(dead, SHMG_KEY("s/known"), "m", 1, NULL), -EBADF);
	TC_EQ(shmg_unregister(dead, SHMG_KEY("s/known"), NULL), -EBADF);
	TC_EQ(shmg_join(dead, SHMG_KEY("s/group"), "m", 1, NULL), -EBADF);
	TC_EQ(shmg_leave(dead, SHMG_KEY("s/group"), NULL), -EBADF);
	TC_EQ(shmg_lookup(dead, SHMG_KEY("s/known"), NULL, NULL, 0, NULL, NULL), -EBADF);
	TC_EQ(shmg_lookup_ref(dead, SHMG_KEY("s/known"), &e, NULL), -EBADF);
	TC_EQ(shmg_registry_count(dead, NULL), -EBADF);
	TC_EQ(shmg_member_count(dead, SHMG_KEY("s/"), NULL), -EBADF);
	TC_EQ(shmg_read_begin(dead), -EBADF);
	TC_EQ(shmg_reap(dead), -EBADF);
	TC_EQ(shmg_close(dead), -EBADF);
	take_snap(h, &z);
	assert_same(&a, &z, "closed handle");
	TC_EQ(shmg_lookup(h, SHMG_KEY("s/dead"), NULL, NULL, 0, NULL, NULL), -ENOENT);
	shmg_close(h);
}
END_TEST

/* ---- lookup buffers, read sections -------------------------------------- */

START_TEST(test_lookup_enobufs)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	char buf[8];
	size_t ml = 1234;
	shmg_id_t id = { 9, 9, 9 };

	TC_EQ(shmg_register(h, SHMG_KEY("k"), "0123456789", 10, NULL), 0);
	memset(buf, '#', sizeof(buf));
	TC_EQ(shmg_lookup(h, SHMG_KEY("k"), &id, buf, sizeof(buf), &ml, NULL), -ENOBUFS);
	for (size_t i = 0; i < sizeof(buf); i++)
		ck_assert_int_eq(buf[i], '#');
	ck_assert_uint_eq(ml, 1234);
	ck_assert_uint_eq(id.node, 9);
	TC_EQ(shmg_lookup(h, SHMG_KEY("k"), &id, buf, 0, &ml, NULL), -ENOBUFS);
	char exact[10];
	TC_EQ(shmg_lookup(h, SHMG_KEY("k"), &id, exact, sizeof(exact), &ml, NULL), 0);
	ck_assert_uint_eq(ml, 10);
	ck_assert_mem_eq(exact, "0123456789", 10);
	shmg_close(h);
}
END_TEST

/* Key of length len (1..255): its length in the first bytes, then never-NUL
 * filler, so that no two lengths share a key. */
static void len_key(size_t len, char *key)
{
	char tag[8];

	for (size_t i = 0; i < len; i++)
		key[i] = (char)('a' + (i * 7 + len) % 26);
	snprintf(tag, sizeof(tag), "%zu:", len);
	memcpy(key, tag, strlen(tag) < len ? strlen(tag) : len);
}

static size_t len_meta(size_t len, uint8_t *meta)
{
	size_t n = len % 70;

	for (size_t i = 0; i < n; i++)
		meta[i] = (uint8_t)(len * 3 + i * 11);
	return n;
}

/* Child: every length looked up from this process, the answers and the
 * refusals checked byte for byte. */
static int lookup_every_length(void *arg)
{
	(void)arg;
	shmg_t *h = NULL;
	char key[256];
	uint8_t want[80], got[80];
	size_t ml;

	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 10;
	for (size_t len = 1; len <= 255; len++) {
		size_t n = len_meta(len, want);
		struct shmg_entry e;

		len_key(len, key);
		ml = 9999;
		if (shmg_lookup(h, key, len, NULL, got, sizeof(got), &ml, NULL) != 0 || ml != n ||
		    memcmp(got, want, n) != 0)
			return 11;
		if (n) { /* one byte short: -ENOBUFS, nothing written */
			memset(got, '#', sizeof(got));
			ml = 9999;
			if (shmg_lookup(h, key, len, NULL, got, n - 1, &ml, NULL) != -ENOBUFS ||
			    ml != 9999 || got[0] != '#' || got[n - 1] != '#')
				return 12;
		}
		memset(got, 0, sizeof(got));
		if (shmg_lookup_entry(h, key, len, &e, got, sizeof(got), NULL) != 0 ||
		    e.key_len != len || e.meta_len != n || memcmp(got, want, n) != 0)
			return 13;
		for (size_t j = 0; j < len; j++) {
			char keep = key[j];

			key[j] ^= 0x40; /* every byte counts in the compare */
			if (shmg_lookup(h, key, len, NULL, got, sizeof(got), &ml, NULL) != -ENOENT ||
			    shmg_lookup_entry(h, key, len, &e, got, sizeof(got), NULL) != -ENOENT)
				return 14;
			key[j] = 0; /* and a NUL anywhere is refused */
			if (shmg_lookup(h, key, len, NULL, got, sizeof(got), &ml, NULL) != -EINVAL ||
			    shmg_lookup_entry(h, key, len, &e, got, sizeof(got), NULL) != -EINVAL)
				return 15;
			if (shmg_read_begin(h) != 0)
				return 16;
			int rc = shmg_lookup_ref(h, key, len, &e, NULL);
			if (shmg_read_end(h) != 0 || rc != -EINVAL)
				return 17;
			key[j] = keep;
		}
	}
	len_key(255, key);
	if (shmg_lookup(h, key, 0, NULL, NULL, 0, NULL, NULL) != -EINVAL ||
	    shmg_lookup(h, key, 256, NULL, NULL, 0, NULL, NULL) != -EINVAL ||
	    shmg_lookup(h, NULL, 5, NULL, NULL, 0, NULL, NULL) != -EINVAL)
		return 18;
	return shmg_close(h) == 0 ? 0 : 19;
}

/* Keys of every length the default key_max allows, with metadata of 0..69
 * bytes: the copying lookups from another process answer, refuse and copy
 * exactly, on every path of the word and vector key compare, NUL scan and
 * metadata copy. */
START_TEST(test_lookup_every_length)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	char key[256];
	uint8_t meta[80];

	for (size_t len = 1; len <= 255; len++) {
		len_key(len, key);
		TC_EQ(shmg_register(h, key, len, meta, len_meta(len, meta), NULL), 0);
	}
	TC_EQ(tc_wait_exit(tc_fork(lookup_every_length, NULL), 20000), 0);
	shmg_close(h);
}
END_TEST

/* The copying lookup that gives the whole entry: owner, pid, time, meta. */
START_TEST(test_lookup_entry)
{
	shmg_t *a = tc_open(tc_arena, NULL), *b = tc_open(tc_arena, NULL);
	struct shmg_opts o = { .cluster = "c1" };
	struct shmg_entry e, untouched;
	char meta[16], small[2];
	uint64_t t0 = (uint64_t)time(NULL) * 1000000000u;

	TC_EQ(shmg_register(a, SHMG_KEY("svc/db"), "host=a", 6, NULL), 0);
	memset(&e, 0, sizeof(e));
	TC_EQ(shmg_lookup_entry(b, SHMG_KEY("svc/db"), &e, meta, sizeof(meta), NULL), 0);
	ck_assert_int_eq(e.kind, SHMG_REGISTRY);
	ck_assert(shmg_id_equal(e.id, shmg_self(a)));
	ck_assert_int_eq(e.pid, getpid());
	ck_assert_uint_ge(e.time_ns, t0 - 1000000000u);
	ck_assert_ptr_null(e.cluster);
	ck_assert_uint_eq(e.key_len, 6);
	ck_assert_int_eq(memcmp(e.key, "svc/db", 6), 0);
	ck_assert_ptr_eq(e.meta, meta);
	ck_assert_uint_eq(e.meta_len, 6);
	ck_assert_int_eq(memcmp(meta, "host=a", 6), 0);

	/* Only the length, and no room: nothing written. */
	TC_EQ(shmg_lookup_entry(b, SHMG_KEY("svc/db"), &e, NULL, 0, NULL), 0);
	ck_assert_uint_eq(e.meta_len, 6);
	memset(&untouched, 0x5a, sizeof(untouched));
	e = untouched;
	TC_EQ(shmg_lookup_entry(b, SHMG_KEY("svc/db"), &e, small, sizeof(small), NULL), -ENOBUFS);
	ck_assert_int_eq(memcmp(&e, &untouched, sizeof(e)), 0);
	TC_EQ(shmg_lookup_entry(b, SHMG_KEY("svc/none"), &e, NULL, 0, NULL), -ENOENT);
	TC_EQ(shmg_lookup_entry(b, SHMG_KEY("svc/"), &e, NULL, 0, NULL), -ENOENT);
	TC_EQ(shmg_lookup_entry(b, SHMG_KEY("svc/db"), NULL, NULL, 0, NULL), -EINVAL);
	TC_EQ(shmg_lookup_entry(NULL, SHMG_KEY("svc/db"), NULL, NULL, 0, NULL), -EBADF);

	/* In a named cluster, with empty metadata. */
	TC_EQ(shmg_connect(a, "c1", NULL), 0);
	TC_EQ(shmg_register(a, SHMG_KEY("svc/db"), NULL, 0, &o), 0);
	TC_EQ(shmg_lookup_entry(b, SHMG_KEY("svc/db"), &e, meta, sizeof(meta), &o), 0);
	ck_assert_str_eq(e.cluster, "c1");
	ck_assert_ptr_null(e.meta);
	ck_assert_uint_eq(e.meta_len, 0);
	shmg_close(b);
	shmg_close(a);
}
END_TEST

START_TEST(test_lookup_ref_needs_read_section)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	struct shmg_entry e;

	TC_EQ(shmg_register(h, SHMG_KEY("ref"), "raw-meta", 8, NULL), 0);
	TC_EQ(shmg_lookup_ref(h, SHMG_KEY("ref"), &e, NULL), -EPERM);
	TC_EQ(shmg_read_end(h), -EPERM);

	TC_EQ(shmg_read_begin(h), 0);
	TC_EQ(shmg_read_begin(h), 0); /* nests */
	memset(&e, 0, sizeof(e));
	TC_EQ(shmg_lookup_ref(h, SHMG_KEY("ref"), &e, NULL), 0);
	ck_assert_int_eq(e.kind, SHMG_REGISTRY);
	ck_assert(shmg_id_equal(e.id, shmg_self(h)));
	ck_assert_int_eq(e.pid, getpid());
	ck_assert_ptr_null(e.cluster);
	ck_assert_uint_eq(e.key_len, 3);
	ck_assert_mem_eq(e.key, "ref", 3);
	ck_assert_uint_eq(e.meta_len, 8);
	ck_assert_mem_eq(e.meta, "raw-meta", 8);
	ck_assert_uint_gt(e.time_ns, 0);
	TC_EQ(shmg_lookup_ref(h, SHMG_KEY("nope"), &e, NULL), -ENOENT);
	TC_EQ(shmg_lookup_ref(h, SHMG_KEY(""), &e, NULL), -EINVAL);
	TC_EQ(shmg_read_end(h), 0);
	/* Still inside the outer section. */
	TC_EQ(shmg_lookup_ref(h, SHMG_KEY("ref"), &e, NULL), 0);
	TC_EQ(shmg_read_end(h), 0);
	TC_EQ(shmg_lookup_ref(h, SHMG_KEY("ref"), &e, NULL), -EPERM);
	TC_EQ(shmg_read_end(h), -EPERM);
	shmg_close(h);
}
END_TEST

START_TEST(test_read_section_pins_entry)
{
	/* An entry read inside a section stays readable after another endpoint
	 * replaces and removes it, until the section ends. */
	shmg_t *r = tc_open(tc_arena, NULL);
	shmg_t *w = tc_open(tc_arena, NULL);
	struct shmg_entry e;
	char copy[32];

	TC_EQ(shmg_register(w, SHMG_KEY("pin"), "first-version", 13, NULL), 0);
	TC_EQ(shmg_read_begin(r), 0);
	TC_EQ(shmg_lookup_ref(r, SHMG_KEY("pin"), &e, NULL), 0);
	memcpy(copy, e.meta, 13);
	for (int i = 0; i < 200; i++) {
		char m[16];
		snprintf(m, sizeof(m), "v%d", i);
		TC_EQ(shmg_register(w, SHMG_KEY("pin"), m, strlen(m), NULL), 0);
	}
	TC_EQ(shmg_unregister(w, SHMG_KEY("pin"), NULL), 0);
	for (int i = 0; i < 200; i++) {
		char k[16];
		snprintf(k, sizeof(k), "fill%d", i);
		TC_EQ(shmg_register(w, SHMG_KEY(k), "0123456789abcdef", 13, NULL), 0);
	}
	ck_assert_uint_eq(e.meta_len, 13);
	ck_assert_mem_eq(e.meta, copy, 13);
	ck_assert_mem_eq(e.meta, "first-version", 13);
	ck_assert_mem_eq(e.key, "pin", 3);
	TC_EQ(shmg_read_end(r), 0);
	TC_EQ(shmg_lookup(r, SHMG_KEY("pin"), NULL, NULL, 0, NULL, NULL), -ENOENT);
	TC_ASSERT_CLEAN(r);
	shmg_close(w);
	shmg_close(r);
}
END_TEST

/* ---- extract_meta -------------------------------------------------------- */

static int extract_calls;

static ssize_t extract_first3(const void *meta, size_t len, void *out, size_t cap, void *arg)
{
	size_t n = len < 3 ? len : 3;

	extract_calls++;
	ck_assert_ptr_eq(arg, &extract_calls);
	ck_assert_uint_ge(cap, 3);
	memcpy(out, meta, n);
	return (ssize_t)n;
}

static ssize_t extract_upper(const void *meta, size_t len, void *out, size_t cap, void *arg)
{
	const unsigned char *m = meta;
	unsigned char *o = out;

	(void)arg;
	if (len > cap)
		return -E2BIG;
	for (size_t i = 0; i < len; i++)
		o[i] = (unsigned char)toupper(m[i]);
	return (ssize_t)len;
}

static ssize_t extract_fail(const void *meta, size_t len, void *out, size_t cap, void *arg)
{
	(void)meta, (void)len, (void)out, (void)cap, (void)arg;
	return -EBADMSG;
}

struct got_meta {
	char meta[64];
	size_t len;
	long n;
};

static int got_meta_cb(const struct shmg_entry *e, void *arg)
{
	struct got_meta *g = arg;

	g->len = e->meta_len < sizeof(g->meta) ? e->meta_len : sizeof(g->meta);
	memcpy(g->meta, e->meta, g->len);
	g->n++;
	return 0;
}

START_TEST(test_extract_meta)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	shmg_t *plain = tc_open(tc_arena, NULL);
	char m[64];
	size_t ml;
	struct shmg_opts up = { .extract_meta = extract_upper };
	struct shmg_opts fail = { .extract_meta = extract_fail };

	TC_EQ(shmg_register(h, SHMG_KEY("x"), "hello", 5, NULL), 0);
	TC_EQ(shmg_join(h, SHMG_KEY("g"), "world", 5, NULL), 0);
	TC_EQ(shmg_set_extract_meta(h, extract_first3, &extract_calls), 0);

	extract_calls = 0;
	TC_EQ(shmg_lookup(h, SHMG_KEY("x"), NULL, m, sizeof(m), &ml, NULL), 0);
	ck_assert_uint_eq(ml, 3);
	ck_assert_mem_eq(m, "hel", 3);
	ck_assert_int_eq(extract_calls, 1);
	/* Per-call override. */
	TC_EQ(shmg_lookup(h, SHMG_KEY("x"), NULL, m, sizeof(m), &ml, &up), 0);
	ck_assert_uint_eq(ml, 5);
	ck_assert_mem_eq(m, "HELLO", 5);
	ck_assert_int_eq(extract_calls, 1);
	/* Its error is the call's error, and nothing is written. */
	ml = 77;
	TC_EQ(shmg_lookup(h, SHMG_KEY("x"), NULL, m, sizeof(m), &ml, &fail), -EBADMSG);
	ck_assert_uint_eq(ml, 77);
	/* ENOBUFS is judged on the extracted size. */
	TC_EQ(shmg_lookup(h, SHMG_KEY("x"), NULL, m, 3, &ml, NULL), 0);
	ck_assert_uint_eq(ml, 3);

	/* Members too. */
	struct got_meta g = { 0 };
	TC_EQ(shmg_members(h, SHMG_KEY("g"), got_meta_cb, &g, NULL), 1);
	ck_assert_uint_eq(g.len, 3);
	ck_assert_mem_eq(g.meta, "wor", 3);
	memset(&g, 0, sizeof(g));
	TC_EQ(shmg_members(h, SHMG_KEY("g"), got_meta_cb, &g, &up), 1);
	ck_assert_uint_eq(g.len, 5);
	ck_assert_mem_eq(g.meta, "WORLD", 5);
	TC_EQ(shmg_members(h, SHMG_KEY("g"), got_meta_cb, &g, &fail), -EBADMSG);

	/* Stored data unchanged: another handle without a function sees it all. */
	TC_EQ(shmg_lookup(plain, SHMG_KEY("x"), NULL, m, sizeof(m), &ml, NULL), 0);
	ck_assert_uint_eq(ml, 5);
	ck_assert_mem_eq(m, "hello", 5);
	memset(&g, 0, sizeof(g));
	TC_EQ(shmg_members(plain, SHMG_KEY("g"), got_meta_cb, &g, NULL), 1);
	ck_assert_mem_eq(g.meta, "world", 5);
	/* Re-registering the full meta is still a no-op (comparison is on stored bytes). */
	TC_EQ(shmg_register(h, SHMG_KEY("x"), "hello", 5, NULL), 0);
	/* lookup_ref gives raw metadata. */
	struct shmg_entry e;
	TC_EQ(shmg_read_begin(h), 0);
	TC_EQ(shmg_lookup_ref(h, SHMG_KEY("x"), &e, NULL), 0);
	ck_assert_uint_eq(e.meta_len, 5);
	ck_assert_mem_eq(e.meta, "hello", 5);
	TC_EQ(shmg_read_end(h), 0);

	/* NULL restores identity. */
	TC_EQ(shmg_set_extract_meta(h, NULL, NULL), 0);
	TC_EQ(shmg_lookup(h, SHMG_KEY("x"), NULL, m, sizeof(m), &ml, NULL), 0);
	ck_assert_uint_eq(ml, 5);
	ck_assert_mem_eq(m, "hello", 5);
	shmg_close(plain);
	shmg_close(h);
}
END_TEST

static Suite *registry_suite(void)
{
	Suite *s = suite_create("registry");
	TCase *tc;

	tc = tc_case(s, "basics", 20);
	tcase_add_test(tc, test_register_lookup_unregister);
	tcase_add_test(tc, test_many_keys);
	tcase_add_test(tc, test_lookup_follows_resized_tables);
	tcase_add_test(tc, test_reregister_updates_in_place);
	tcase_add_test(tc, test_reregister_identical_is_noop);
	tcase_add_test(tc, test_taken_by_other);
	tcase_add_test(tc, test_any_bytes_key);
	tcase_add_test(tc, test_limits_exact);

	tc = tc_case(s, "invalid", 20);
	tcase_add_loop_test(tc, test_bad_key_changes_nothing, 0, N_BAD_KEYS);
	tcase_add_test(tc, test_bad_meta_changes_nothing);
	tcase_add_loop_test(tc, test_bad_cluster_changes_nothing, 0, N_BAD_CLUSTERS);
	tcase_add_test(tc, test_good_cluster_names);
	tcase_add_test(tc, test_null_handle);
	tcase_add_test(tc, test_closed_handle);

	tc = tc_case(s, "reads", 20);
	tcase_add_test(tc, test_lookup_enobufs);
	tcase_add_test(tc, test_lookup_every_length);
	tcase_add_test(tc, test_lookup_entry);
	tcase_add_test(tc, test_lookup_ref_needs_read_section);
	tcase_add_test(tc, test_read_section_pins_entry);
	tcase_add_test(tc, test_extract_meta);
	return s;
}

int main(void)
{
	return tc_run(registry_suite());
}
