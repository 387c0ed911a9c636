/* SPDX-License-Identifier: MIT */
/*
 * Writers killed inside critical sections (lib/testhook.h crash points).
 *
 * For each point a child opens the arena, arms sg_test_hook to SIGKILL itself
 * at that point and performs the write.  The test process then writes on the
 * same key and shard (the arena has one shard, so every key shares the lock
 * the child died holding): it must not hang (the tcase timeout catches that)
 * and must find a state that is either "the child's complete entry, owned by
 * a dead endpoint and reapable" or "absent", never half-visible.  shmg_reap()
 * and shmg_check() then leave a clean arena.
 *
 * The park variant stops the child at the point instead, proves that readers
 * in another process go on without blocking while it holds the lock, starts
 * a writer that queues on the lock, SIGKILLs the child, and checks that the
 * writer proceeds and the arena is clean.
 *
 * A third group kills a *reader* inside a read section and checks that
 * reclamation recovers once it is reaped.
 */
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tc.h"
#include "testhook.h"

#define KEY "crash/k"
#define GROUP "crash/g"
#define M1 "meta-one-0123456789"
#define M2 "meta-two-abcdefghijklmnopqrstuvwxyz"

/* ---- the hook ----------------------------------------------------------- */

static const char *hook_point;
static int hook_park_fd = -1; /* >= 0: park instead of dying */

static void hook(const char *point)
{
	if (strcmp(point, hook_point) != 0)
		return;
	if (hook_park_fd >= 0) {
		(void)!write(hook_park_fd, "P", 1);
		for (;;)
			pause();
	}
	raise(SIGKILL);
}

/* ---- scenarios ---------------------------------------------------------- */

struct shared {
	shmg_id_t child_id;
	_Atomic long progress; /* loop scenarios: writes completed before the crash */
	long setup_rc;
};

static struct shared *sh;

struct scenario {
	const char *point;
	/* Runs in the child before arming: must return 0. */
	int (*setup)(shmg_t *h);
	/* Runs armed: should never return. */
	void (*crash)(shmg_t *h);
	/* Runs in the test process after the child died, before any write. */
	void (*verify_before)(shmg_t *h);
	/* Writes on the same key/shard, then reap; asserts the final state. */
	void (*write_after)(shmg_t *h);
	int in_lock; /* shard_repairs must count it */
};

static struct shmg_config one_shard(void)
{
	struct shmg_config c;

	memset(&c, 0, sizeof(c));
	c.shards = 1;
	return c;
}

static int setup_none(shmg_t *h)
{
	(void)h;
	return 0;
}

static int setup_registered(shmg_t *h)
{
	return shmg_register(h, SHMG_KEY(KEY), M1, strlen(M1), NULL);
}

static int setup_joined(shmg_t *h)
{
	return shmg_join(h, SHMG_KEY(GROUP), M1, strlen(M1), NULL);
}

static int setup_many(shmg_t *h)
{
	char key[32];
	int rc;

	for (int i = 0; i < 20; i++) {
		snprintf(key, sizeof(key), "many/r%d", i);
		if ((rc = shmg_register(h, SHMG_KEY(key), M1, strlen(M1), NULL)) != 0)
			return rc;
		snprintf(key, sizeof(key), "many/g%d", i);
		if ((rc = shmg_join(h, SHMG_KEY(key), M1, strlen(M1), NULL)) != 0)
			return rc;
	}
	return 0;
}

static void crash_register(shmg_t *h)
{
	shmg_register(h, SHMG_KEY(KEY), M1, strlen(M1), NULL);
}

static void crash_reregister(shmg_t *h)
{
	shmg_register(h, SHMG_KEY(KEY), M2, strlen(M2), NULL);
}

static void crash_unregister(shmg_t *h)
{
	shmg_unregister(h, SHMG_KEY(KEY), NULL);
}

static void crash_join(shmg_t *h)
{
	shmg_join(h, SHMG_KEY(GROUP), M1, strlen(M1), NULL);
}

static void crash_leave(shmg_t *h)
{
	shmg_leave(h, SHMG_KEY(GROUP), NULL);
}

static void crash_close(shmg_t *h)
{
	shmg_close(h);
}

/* Registers keys until the point is reached (page claims, table resizes). */
static void crash_register_many(shmg_t *h)
{
	static char meta[512];
	char key[32];

	memset(meta, 'p', sizeof(meta));
	for (long i = 0; i < 300000; i++) {
		snprintf(key, sizeof(key), "fill/%ld", i);
		if (shmg_register(h, SHMG_KEY(key), meta, i % 2 ? sizeof(meta) : 8, NULL) != 0)
			return;
		atomic_store(&sh->progress, i + 1);
	}
}

/* Churns until retired blocks are reclaimed. */
static void crash_churn(shmg_t *h)
{
	char key[32];

	for (long i = 0; i < 300000; i++) {
		snprintf(key, sizeof(key), "churn/%ld", i % 64);
		if (shmg_register(h, SHMG_KEY(key), &i, sizeof(i), NULL) != 0)
			return;
		if (i % 3 == 0 && shmg_unregister(h, SHMG_KEY(key), NULL) != 0)
			return;
	}
}

/* The key is absent, or the child's whole entry with meta `want` (or
 * `alt`): never someone else's, never torn. */
static void assert_key_absent_or_child(shmg_t *h, const char *want, const char *alt)
{
	shmg_id_t id;
	char m[128];
	size_t ml;
	int rc = shmg_lookup(h, SHMG_KEY(KEY), &id, m, sizeof(m), &ml, NULL);

	if (rc == -ENOENT)
		return;
	TC_EQ(rc, 0);
	ck_assert(shmg_id_equal(id, sh->child_id));
	if (ml == strlen(want) && memcmp(m, want, ml) == 0)
		return;
	ck_assert_msg(alt && ml == strlen(alt) && memcmp(m, alt, ml) == 0,
		      "torn meta after crash: %.*s", (int)ml, m);
}

static void verify_key_absent(shmg_t *h)
{
	TC_EQ(shmg_lookup(h, SHMG_KEY(KEY), NULL, NULL, 0, NULL, NULL), -ENOENT);
	TC_EQ(shmg_registry_count(h, NULL), 0);
}

static void verify_key_m1(shmg_t *h)
{
	assert_key_absent_or_child(h, M1, NULL);
}

static void verify_key_m1_or_m2(shmg_t *h)
{
	assert_key_absent_or_child(h, M1, M2);
}

struct member_check {
	long n, bad;
};

static int member_cb(const struct shmg_entry *e, void *arg)
{
	struct member_check *mc = arg;

	mc->n++;
	if (!shmg_id_equal(e->id, sh->child_id) || e->meta_len != strlen(M1) ||
	    memcmp(e->meta, M1, e->meta_len) != 0)
		mc->bad++;
	return 0;
}

static void verify_group_0_or_1(shmg_t *h)
{
	struct member_check mc = { 0 };
	long n = shmg_member_count(h, SHMG_KEY(GROUP), NULL);

	ck_assert_msg(n == 0 || n == 1, "member_count after crash = %ld", n);
	TC_EQ(shmg_members(h, SHMG_KEY(GROUP), member_cb, &mc, NULL), mc.n);
	ck_assert_int_le(mc.n, 1);
	ck_assert_int_eq(mc.bad, 0);
}

static void verify_many(shmg_t *h)
{
	struct member_check mc = { 0 };
	char key[32];

	for (int i = 0; i < 20; i++) {
		snprintf(key, sizeof(key), "many/r%d", i);
		int rc = shmg_lookup(h, SHMG_KEY(key), NULL, NULL, 0, NULL, NULL);
		ck_assert_msg(rc == 0 || rc == -ENOENT, "lookup %s: %d", key, rc);
	}
	long n = shmg_members(h, SHMG_KEY("many/"), member_cb, &mc, NULL);
	ck_assert_int_ge(n, 0);
	ck_assert_int_eq(mc.bad, 0);
}

static void verify_fill(shmg_t *h)
{
	long done = atomic_load(&sh->progress);
	char key[32];
	shmg_id_t id;

	for (long i = 0; i < done; i += 1 + done / 500) {
		snprintf(key, sizeof(key), "fill/%ld", i);
		int rc = shmg_lookup(h, SHMG_KEY(key), &id, NULL, 0, NULL, NULL);
		if (rc == 0)
			ck_assert(shmg_id_equal(id, sh->child_id));
		else
			TC_EQ(rc, -ENOENT);
	}
}

static void verify_nothing(shmg_t *h)
{
	(void)h;
}

/* After: the test process takes the key, then reaps. */
static void write_register_key(shmg_t *h)
{
	shmg_id_t id;
	char m[16];
	size_t ml;

	TC_EQ(shmg_register(h, SHMG_KEY(KEY), "mine", 4, NULL), 0);
	TC_EQ(shmg_lookup(h, SHMG_KEY(KEY), &id, m, sizeof(m), &ml, NULL), 0);
	ck_assert(shmg_id_equal(id, shmg_self(h)));
	ck_assert_uint_eq(ml, 4);
	int r = shmg_reap(h);
	ck_assert_msg(r == 0 || r == 1, "reap = %d", r);
	TC_EQ(shmg_registry_count(h, NULL), 1);
	TC_EQ(shmg_lookup(h, SHMG_KEY(KEY), &id, NULL, 0, NULL, NULL), 0);
	ck_assert(shmg_id_equal(id, shmg_self(h)));
}

static void write_join_group(shmg_t *h)
{
	shmg_id_t ids[4];

	TC_EQ(shmg_join(h, SHMG_KEY(GROUP), "mine", 4, NULL), 0);
	TC_EQ(shmg_register(h, SHMG_KEY(KEY), "mine", 4, NULL), 0);
	int r = shmg_reap(h);
	ck_assert_msg(r == 0 || r == 1, "reap = %d", r);
	TC_EQ(shmg_member_ids(h, SHMG_KEY(GROUP), ids, 4, NULL), 1);
	ck_assert(shmg_id_equal(ids[0], shmg_self(h)));
	TC_EQ(shmg_leave(h, SHMG_KEY(GROUP), NULL), 0);
	TC_EQ(shmg_member_count(h, SHMG_KEY(GROUP), NULL), 0);
}

static void write_many(shmg_t *h)
{
	char key[32];

	for (int i = 0; i < 20; i++) {
		snprintf(key, sizeof(key), "many/r%d", i);
		TC_EQ(shmg_register(h, SHMG_KEY(key), "mine", 4, NULL), 0);
	}
	int r = shmg_reap(h);
	ck_assert_msg(r == 0 || r == 1, "reap = %d", r);
	TC_EQ(shmg_registry_count(h, NULL), 20);
	TC_EQ(shmg_member_count(h, SHMG_KEY("many/"), NULL), 0);
}

static void write_fill(shmg_t *h)
{
	char key[32];

	/* The same keys the child was writing, then many more. */
	for (int i = 0; i < 2000; i++) {
		snprintf(key, sizeof(key), "fill/%d", i);
		TC_EQ(shmg_register(h, SHMG_KEY(key), "mine", 4, NULL), 0);
	}
	int r = shmg_reap(h);
	ck_assert_msg(r == 0 || r == 1, "reap = %d", r);
	TC_EQ(shmg_registry_count(h, NULL), 2000);
}

static void write_churn(shmg_t *h)
{
	char key[32];

	for (int i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "churn/%d", i % 64);
		TC_EQ(shmg_register(h, SHMG_KEY(key), &i, sizeof(i), NULL), 0);
		if (i % 2)
			TC_EQ(shmg_unregister(h, SHMG_KEY(key), NULL), 0);
	}
	int r = shmg_reap(h);
	ck_assert_msg(r == 0 || r == 1, "reap = %d", r);
}

static const struct scenario scenarios[] = {
	{ "register:locked", setup_none, crash_register, verify_key_absent, write_register_key, 1 },
	{ "register:allocated", setup_none, crash_register, verify_key_absent, write_register_key, 1 },
	{ "register:published", setup_none, crash_register, verify_key_m1, write_register_key, 1 },
	{ "register:replaced", setup_registered, crash_reregister, verify_key_m1_or_m2,
	  write_register_key, 1 },
	{ "unregister:unlinked", setup_registered, crash_unregister, verify_key_m1,
	  write_register_key, 1 },
	{ "oplog:append", setup_none, crash_register, verify_key_m1, write_register_key, 1 },
	{ "join:head", setup_none, crash_join, verify_group_0_or_1, write_join_group, 1 },
	{ "join:allocated", setup_none, crash_join, verify_group_0_or_1, write_join_group, 1 },
	{ "join:linked", setup_none, crash_join, verify_group_0_or_1, write_join_group, 1 },
	{ "leave:unlinked", setup_joined, crash_leave, verify_group_0_or_1, write_join_group, 1 },
	{ "alloc:page", setup_none, crash_register_many, verify_fill, write_fill, 1 },
	{ "resize:built", setup_none, crash_register_many, verify_fill, write_fill, 1 },
	{ "resize:published", setup_none, crash_register_many, verify_fill, write_fill, 1 },
	{ "reclaim:popping", setup_none, crash_churn, verify_nothing, write_churn, 1 },
	{ "close:removing", setup_many, crash_close, verify_many, write_many, 0 },
};
#define N_SCENARIOS ((int)(sizeof(scenarios) / sizeof(scenarios[0])))

static const struct scenario *cur;

/* The child: open, set up, arm, write.  Exit codes say what went wrong. */
static int crash_child(void *arg)
{
	shmg_t *h = NULL;

	(void)arg;
	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 10;
	sh->child_id = shmg_self(h);
	if ((sh->setup_rc = cur->setup(h)) != 0)
		return 11;
	hook_point = cur->point;
	sg_test_hook = hook;
	cur->crash(h);
	return 12; /* the point was never reached */
}

static void finish_and_check(shmg_t *h, uint64_t repairs_before)
{
	struct shmg_info in;

	cur->write_after(h);
	TC_EQ(shmg_reap(h), 0); /* nothing left to reap */
	TC_ASSERT_CLEAN(h);
	TC_EQ(shmg_info(h, &in), 0);
	ck_assert_uint_eq(in.endpoints_live, 1);
	if (cur->in_lock)
		ck_assert_msg(in.shard_repairs > repairs_before,
			      "%s: the shard lock died with its owner but shard_repairs "
			      "did not move (%llu)",
			      cur->point, (unsigned long long)in.shard_repairs);
	/* The slot of the dead endpoint is reusable and the arena writable. */
	shmg_t *again = tc_open(tc_arena, NULL);
	TC_EQ(shmg_register(again, SHMG_KEY("after/again"), "x", 1, NULL), 0);
	TC_EQ(shmg_close(again), 0);
	TC_ASSERT_CLEAN(h);
}

START_TEST(test_crash_point)
{
	struct shmg_config c = one_shard();
	shmg_t *h;
	struct shmg_info in;
	int st;

	/* Who meets the dead writer's shard first: 0 a writer, 1 shmg_check(),
	 * 2 shmg_reap(). */
	int mode = _i % 3;

	cur = &scenarios[_i / 3];
	sh = tc_shared_alloc(sizeof(*sh));
	h = tc_open(tc_arena, &c);
	TC_EQ(shmg_info(h, &in), 0);

	pid_t pid = tc_fork(crash_child, NULL);
	st = tc_wait_exit(pid, 60000);
	ck_assert_msg(st == TC_KILLED(SIGKILL),
		      "%s: child exit %d (10 open failed, 11 setup failed [%ld], 12 point never "
		      "reached)",
		      cur->point, st, sh->setup_rc);

	if (mode == 1)
		TC_ASSERT_CLEAN(h); /* repairs the shard first */
	cur->verify_before(h);
	if (mode == 2) {
		TC_EQ(shmg_reap(h), 1);
		/* Nothing of the dead endpoint is left. */
		TC_EQ(shmg_registry_count(h, NULL), 0);
		TC_EQ(shmg_lookup(h, SHMG_KEY(KEY), NULL, NULL, 0, NULL, NULL), -ENOENT);
		TC_EQ(shmg_member_count(h, SHMG_KEY(GROUP), NULL), 0);
		TC_EQ(shmg_member_count(h, SHMG_KEY("many/"), NULL), 0);
		TC_ASSERT_CLEAN(h);
	}
	finish_and_check(h, in.shard_repairs);
	shmg_close(h);
}
END_TEST

/* ---- park --------------------------------------------------------------- */

static int park_pipe[2];

static int park_child(void *arg)
{
	shmg_t *h = NULL;

	(void)arg;
	close(park_pipe[0]);
	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 10;
	sh->child_id = shmg_self(h);
	if ((sh->setup_rc = cur->setup(h)) != 0)
		return 11;
	hook_point = cur->point;
	hook_park_fd = park_pipe[1];
	sg_test_hook = hook;
	cur->crash(h);
	return 12;
}

/* A writer in yet another process, queued on the lock the child holds. */
static int queued_writer(void *arg)
{
	shmg_t *h = NULL;

	(void)arg;
	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 10;
	int rc = shmg_register(h, SHMG_KEY("crash/queued"), "q", 1, NULL);
	if (rc != 0)
		return 20 + (-rc & 0xff) % 200;
	/* Keep the entry: closing would remove it before the parent looks. */
	atomic_store(&sh->progress, 1);
	for (;;)
		pause();
}

static bool queued_done(void *arg)
{
	(void)arg;
	return atomic_load(&sh->progress) == 1;
}

static const int park_scenarios[] = { 1, 2, 3, 4, 7, 8, 9 };
#define N_PARK ((int)(sizeof(park_scenarios) / sizeof(park_scenarios[0])))

START_TEST(test_park_point)
{
	struct shmg_config c = one_shard();
	shmg_t *h;
	struct shmg_info in;
	char b;
	int st;

	cur = &scenarios[park_scenarios[_i]];
	sh = tc_shared_alloc(sizeof(*sh));
	h = tc_open(tc_arena, &c);
	TC_EQ(shmg_register(h, SHMG_KEY("crash/stable"), "stable", 6, NULL), 0);
	TC_EQ(shmg_join(h, SHMG_KEY("crash/sg"), "sg", 2, NULL), 0);
	TC_EQ(shmg_info(h, &in), 0);
	ck_assert_int_eq(pipe(park_pipe), 0);

	pid_t pid = tc_fork(park_child, NULL);
	close(park_pipe[1]);
	st = tc_read_full(park_pipe[0], &b, 1, 30000);
	if (st != 0) {
		int ex = tc_wait_exit(pid, 1000);
		ck_abort_msg("%s: child did not park (%d), exit %d", cur->point, st, ex);
	}

	/* The child holds the shard lock.  Readers are not blocked. */
	for (int i = 0; i < 1000; i++) {
		shmg_id_t id;
		char m[16];
		size_t ml;

		TC_EQ(shmg_lookup(h, SHMG_KEY("crash/stable"), &id, m, sizeof(m), &ml, NULL), 0);
		ck_assert(shmg_id_equal(id, shmg_self(h)));
		ck_assert_uint_eq(ml, 6);
		TC_EQ(shmg_member_count(h, SHMG_KEY("crash/sg"), NULL), 1);
		long rc = shmg_registry_count(h, NULL);
		ck_assert_int_ge(rc, 1);
		ck_assert_int_le(rc, 2);
	}
	verify_group_0_or_1(h);
	assert_key_absent_or_child(h, M1, M2);

	/* A writer queues on the lock... */
	atomic_store(&sh->progress, 0);
	pid_t w = tc_fork(queued_writer, NULL);
	/* ...and proceeds once the owner dies. */
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	TC_EQ(tc_wait_exit(pid, 10000), TC_KILLED(SIGKILL));
	ck_assert_msg(tc_wait_until(queued_done, NULL, 15000),
		      "%s: writer still blocked after the lock owner died (exit %d)", cur->point,
		      tc_wait_exit(w, 0));
	TC_EQ(shmg_lookup(h, SHMG_KEY("crash/queued"), NULL, NULL, 0, NULL, NULL), 0);
	kill(w, SIGKILL);
	TC_EQ(tc_wait_exit(w, 10000), TC_KILLED(SIGKILL));

	/* Two dead endpoints now (the child and the writer). */
	verify_group_0_or_1(h);
	int r = shmg_reap(h);
	ck_assert_msg(r == 1 || r == 2, "reap = %d", r);
	TC_EQ(shmg_lookup(h, SHMG_KEY("crash/queued"), NULL, NULL, 0, NULL, NULL), -ENOENT);
	TC_EQ(shmg_lookup(h, SHMG_KEY(KEY), NULL, NULL, 0, NULL, NULL), -ENOENT);
	TC_EQ(shmg_member_count(h, SHMG_KEY(GROUP), NULL), 0);
	TC_EQ(shmg_lookup(h, SHMG_KEY("crash/stable"), NULL, NULL, 0, NULL, NULL), 0);
	TC_EQ(shmg_registry_count(h, NULL), 1);
	/* The key and group the child was writing are free for anyone. */
	TC_EQ(shmg_register(h, SHMG_KEY(KEY), "mine", 4, NULL), 0);
	TC_EQ(shmg_join(h, SHMG_KEY(GROUP), "mine", 4, NULL), 0);
	TC_EQ(shmg_registry_count(h, NULL), 2);
	TC_EQ(shmg_member_count(h, SHMG_KEY(GROUP), NULL), 1);
	TC_ASSERT_CLEAN(h);
	TC_EQ(shmg_info(h, &in), 0);
	ck_assert_uint_ge(in.shard_repairs, 1);
	ck_assert_uint_eq(in.endpoints_live, 1);
	shmg_close(h);
}
END_TEST

/* ---- a reader dies inside a read section -------------------------------- */

static int reader_dies(void *arg)
{
	shmg_t *h = NULL;
	struct shmg_entry e;

	(void)arg;
	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 10;
	sh->child_id = shmg_self(h);
	if (shmg_read_begin(h) != 0)
		return 11;
	if (shmg_lookup_ref(h, SHMG_KEY("crash/stable"), &e, NULL) != 0)
		return 12;
	raise(SIGKILL);
	return 13;
}

START_TEST(test_reader_dies_in_section)
{
	struct shmg_config c = one_shard();
	static char meta[1000];
	shmg_t *h;
	int st;

	c.arena_size = 4u << 20;
	c.oplog_bytes = 64 * 1024;
	c.max_endpoints = 8;
	c.max_clusters = 2;
	sh = tc_shared_alloc(sizeof(*sh));
	h = tc_open(tc_arena, &c);
	TC_EQ(shmg_register(h, SHMG_KEY("crash/stable"), "stable", 6, NULL), 0);
	st = tc_wait_exit(tc_fork(reader_dies, NULL), 10000);
	TC_EQ(st, TC_KILLED(SIGKILL));
	TC_EQ(shmg_reap(h), 1);
	/* Churn far more than the arena holds: only works if reclamation is no
	 * longer held back by the dead reader. */
	memset(meta, 'c', sizeof(meta));
	for (int i = 0; i < 20000; i++) {
		TC_EQ(shmg_register(h, SHMG_KEY("crash/churn"), meta, sizeof(meta) - (size_t)(i % 2),
				    NULL),
		      0);
		if (i % 4 == 3)
			TC_EQ(shmg_unregister(h, SHMG_KEY("crash/churn"), NULL), 0);
	}
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST


/* ---- events across a writer's death -------------------------------------- */

static int event_child(void *arg)
{
	shmg_t *h = NULL;

	hook_point = (const char *)arg;
	if (strcmp(hook_point, "reap:events-sent") == 0) {
		/* shmg_open reaps dead endpoints itself: killed inside it, after
		 * the dead endpoint's batch went out. */
		sg_test_hook = hook;
		shmg_open(tc_arena, NULL, &h);
		return 12;
	}
	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 10;
	sh->child_id = shmg_self(h);
	sg_test_hook = hook;
	shmg_register(h, SHMG_KEY(KEY), M1, sizeof(M1) - 1, NULL);
	return 12;
}

static int count_events(shmg_t *h, enum shmg_event_type type, const char *key, int *batches)
{
	struct shmg_event ev[64];
	int n, total = 0;
	uint32_t last_batch = UINT32_MAX;

	*batches = 0;
	while ((n = shmg_receive(h, ev, 64, 0)) > 0) {
		for (int i = 0; i < n; i++) {
			if (ev[i].type != type || ev[i].key_len != strlen(key) ||
			    memcmp(ev[i].key, key, ev[i].key_len) != 0)
				continue;
			total++;
			if (ev[i].batch != last_batch)
				(*batches)++;
			last_batch = ev[i].batch;
		}
	}
	ck_assert_int_ge(n, 0);
	return total;
}

/* A writer dies after its event reached the first of two monitors: the
 * repair delivers it to the second, and not again to the first. */
START_TEST(test_crash_between_monitors)
{
	struct shmg_config c = one_shard();
	shmg_t *m1, *m2;
	int batches;

	sh = tc_shared_alloc(sizeof(*sh));
	m1 = tc_open(tc_arena, &c);
	m2 = tc_open(tc_arena, NULL);
	ck_assert_uint_lt(shmg_self(m1).slot, shmg_self(m2).slot);
	TC_EQ(shmg_monitor(m1, NULL, 0, NULL), 0);
	TC_EQ(shmg_monitor(m2, NULL, 0, NULL), 0);

	pid_t pid = tc_fork(event_child, (void *)"event:delivered");
	TC_EQ(tc_wait_exit(pid, 60000), TC_KILLED(SIGKILL));

	TC_EQ(count_events(m1, SHMG_EV_REGISTERED, KEY, &batches), 1);
	TC_EQ(count_events(m2, SHMG_EV_REGISTERED, KEY, &batches), 0); /* not yet */
	/* The next writer on the shard repairs it and finishes the delivery. */
	TC_EQ(shmg_register(m1, SHMG_KEY("crash/other"), "x", 1, NULL), 0);
	TC_EQ(count_events(m2, SHMG_EV_REGISTERED, KEY, &batches), 1);
	TC_EQ(count_events(m1, SHMG_EV_REGISTERED, KEY, &batches), 0); /* not twice */
	TC_EQ(shmg_reap(m1), 1);
	TC_EQ(count_events(m2, SHMG_EV_UNREGISTERED, KEY, &batches), 1);
	TC_ASSERT_CLEAN(m1);
	shmg_close(m2);
	shmg_close(m1);
}
END_TEST

static int victim_pipe[2];

static int registers_and_waits(void *arg)
{
	shmg_t *h = NULL;

	(void)arg;
	close(victim_pipe[0]);
	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 10;
	sh->child_id = shmg_self(h);
	if (shmg_register(h, SHMG_KEY(KEY), M1, sizeof(M1) - 1, NULL) != 0 ||
	    shmg_join(h, SHMG_KEY(GROUP), M1, sizeof(M1) - 1, NULL) != 0)
		return 11;
	/* Both calls returned: their events are in the monitor's mailbox. */
	(void)!write(victim_pipe[1], "r", 1);
	for (;;)
		pause();
}

/* A reaper dies after delivering a death batch, before removing the entries:
 * the next reaper removes them without reporting the death again. */
START_TEST(test_crash_reaper_after_batch)
{
	struct shmg_config c = one_shard();
	shmg_t *m;
	int batches;

	sh = tc_shared_alloc(sizeof(*sh));
	m = tc_open(tc_arena, &c);
	TC_EQ(shmg_monitor(m, NULL, 0, NULL), 0);
	char b;
	ck_assert_int_eq(pipe(victim_pipe), 0);
	pid_t victim = tc_fork(registers_and_waits, NULL);
	TC_EQ(tc_read_full(victim_pipe[0], &b, 1, 20000), 0);
	ck_assert_int_eq(kill(victim, SIGKILL), 0);
	TC_EQ(tc_wait_exit(victim, 20000), TC_KILLED(SIGKILL));
	TC_EQ(count_events(m, SHMG_EV_REGISTERED, KEY, &batches), 1); /* and drains the join */

	pid_t reaper = tc_fork(event_child, (void *)"reap:events-sent");
	TC_EQ(tc_wait_exit(reaper, 60000), TC_KILLED(SIGKILL));

	TC_EQ(shmg_reap(m), 2); /* the victim (entries left) and the dead reaper */
	TC_EQ(shmg_lookup(m, SHMG_KEY(KEY), NULL, NULL, 0, NULL, NULL), -ENOENT);
	TC_EQ(shmg_member_count(m, SHMG_KEY(GROUP), NULL), 0);
	struct shmg_event ev[16];
	int n = shmg_receive(m, ev, 16, 0);
	TC_EQ(n, 2); /* one batch: unregistered, then left, reason exit */
	ck_assert_int_eq(ev[0].type, SHMG_EV_UNREGISTERED);
	ck_assert_int_eq(ev[1].type, SHMG_EV_LEFT);
	ck_assert_int_eq(ev[0].reason, SHMG_REASON_EXIT);
	ck_assert_uint_eq(ev[0].batch, ev[1].batch);
	ck_assert_int_eq(ev[1].batch_end, 1);
	TC_EQ(shmg_receive(m, ev, 16, 0), 0); /* and nothing more */
	TC_ASSERT_CLEAN(m);
	shmg_close(m);
}
END_TEST

static Suite *crash_suite(void)
{
	Suite *s = suite_create("crash");
	TCase *tc;

	tc = tc_case(s, "kill", 60);
	tcase_add_loop_test(tc, test_crash_point, 0, 3 * N_SCENARIOS);
	tc = tc_case(s, "park", 60);
	tcase_add_loop_test(tc, test_park_point, 0, N_PARK);
	tc = tc_case(s, "reader", 60);
	tcase_add_test(tc, test_reader_dies_in_section);
	tcase_add_test(tc, test_crash_between_monitors);
	tcase_add_test(tc, test_crash_reaper_after_batch);
	return s;
}

int main(void)
{
	return tc_run(crash_suite());
}
