/* SPDX-License-Identifier: MIT */
/*
 * A growing arena across processes.
 *
 * Readers that opened the arena before it grew look up keys that live in
 * the new pages while two writer processes grow it, concurrently, up to its
 * maximum: every key a writer has reported written is found with its own
 * metadata, no reader faults.
 *
 * A writer killed (SIGKILL) at each step of a growth (lib/testhook.h:
 * "grow:sized", the object grown and the count not published;
 * "grow:published", published, no page claimed yet), holding the pool lock
 * and its shard's lock: the other processes carry on writing up to the
 * maximum and shmg_check is clean.  A writer stopped at the same points
 * holds up no reader.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "tc.h"

#define NWRITERS 2
#define NREADERS 3
#define META 600
#define BOUND 100000

static struct shmg_config grow_cfg(void)
{
	struct shmg_config c;

	memset(&c, 0, sizeof(c));
	c.arena_size = 4u << 20;
	c.arena_max = 24u << 20;
	c.shards = 4;
	c.oplog_bytes = 64 * 1024;
	c.max_endpoints = 32;
	c.max_clusters = 4;
	return c;
}

struct shared {
	_Atomic long written[NWRITERS]; /* keys w<i>/0 .. written-1 are in */
	_Atomic int writers_done;
	_Atomic int ready;
};
static struct shared *sh;

static void meta_of(char *m, int w, long i)
{
	memset(m, 'a' + w, META);
	memcpy(m, &i, sizeof(i));
}

static int writer(void *arg)
{
	int w = (int)(intptr_t)arg;
	shmg_t *h = NULL;
	char key[32], m[META];

	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 10;
	for (long i = 0; i < BOUND; i++) {
		snprintf(key, sizeof(key), "w%d/%ld", w, i);
		meta_of(m, w, i);
		int rc = shmg_register(h, SHMG_KEY(key), m, sizeof(m), NULL);
		if (rc == -ENOSPC)
			break;
		if (rc != 0)
			return 11;
		atomic_store(&sh->written[w], i + 1);
	}
	atomic_fetch_add(&sh->writers_done, 1);
	/* Stays open: its entries must outlive it only while it lives. */
	for (;;)
		pause();
}

/* Looks up key w<w>/<i> and checks its metadata: 0, or an exit code. */
static int check_key(shmg_t *h, int w, long i)
{
	char key[32], m[META], out[META];
	size_t ml;

	snprintf(key, sizeof(key), "w%d/%ld", w, i);
	meta_of(m, w, i);
	if (shmg_lookup(h, SHMG_KEY(key), NULL, out, sizeof(out), &ml, NULL) != 0)
		return 20;
	if (ml != META || memcmp(out, m, META) != 0)
		return 21;
	return 0;
}

static int reader(void *arg)
{
	shmg_t *h = NULL;
	unsigned seed = (unsigned)(uintptr_t)arg;
	int rc;

	(void)arg;
	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 10;
	atomic_fetch_add(&sh->ready, 1);
	/* The newest keys (in the newest pages) and random older ones. */
	while (atomic_load(&sh->writers_done) < NWRITERS) {
		for (int w = 0; w < NWRITERS; w++) {
			long n = atomic_load(&sh->written[w]);
			if (n == 0)
				continue;
			if ((rc = check_key(h, w, n - 1)) || (rc = check_key(h, w, rand_r(&seed) % n)))
				return rc;
		}
	}
	for (int w = 0; w < NWRITERS; w++)
		for (long i = 0; i < atomic_load(&sh->written[w]); i++)
			if ((rc = check_key(h, w, i)))
				return rc + 10;
	shmg_close(h);
	return 0;
}

static bool readers_ready(void *arg)
{
	(void)arg;
	return atomic_load(&sh->ready) == NREADERS;
}

START_TEST(test_readers_opened_before_growth)
{
	struct shmg_config c = grow_cfg();
	shmg_t *h = tc_open(tc_arena, &c);
	struct shmg_info in;
	pid_t readers[NREADERS], writers[NWRITERS];

	sh = tc_shared_alloc(sizeof(*sh));
	TC_EQ(shmg_info(h, &in), 0);
	ck_assert_uint_eq(in.grows, 0);
	for (int r = 0; r < NREADERS; r++)
		readers[r] = tc_fork(reader, (void *)(intptr_t)(r + 1));
	ck_assert(tc_wait_until(readers_ready, NULL, 10000));
	for (int w = 0; w < NWRITERS; w++)
		writers[w] = tc_fork(writer, (void *)(intptr_t)w);
	for (int r = 0; r < NREADERS; r++) {
		int st = tc_wait_exit(readers[r], 60000);
		ck_assert_msg(st == 0, "reader %d: exit %d", r, st);
	}
	TC_EQ(shmg_info(h, &in), 0);
	ck_assert_uint_gt(in.grows, 0);
	ck_assert_uint_eq(in.pages_total, in.pages_max);
	TC_EQ(shmg_registry_count(h, NULL), atomic_load(&sh->written[0]) + atomic_load(&sh->written[1]));
	for (int w = 0; w < NWRITERS; w++)
		for (long i = 0; i < atomic_load(&sh->written[w]); i++)
			TC_EQ(check_key(h, w, i), 0);
	TC_ASSERT_CLEAN(h);
	for (int w = 0; w < NWRITERS; w++) {
		kill(writers[w], SIGKILL);
		tc_wait_exit(writers[w], 10000);
	}
	TC_EQ(shmg_reap(h), NWRITERS);
	TC_EQ(shmg_registry_count(h, NULL), 0);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

/* ---- a grower killed or stopped inside a growth ----------------------- */

static const char *const grow_points[] = {"grow:sized", "grow:published"};
static const char *hook_point;
static int park_fd = -1; /* >= 0: park at the point instead of dying */

static void hook(const char *point)
{
	if (strcmp(point, hook_point) != 0)
		return;
	if (park_fd >= 0) {
		(void)!write(park_fd, "P", 1);
		for (;;)
			pause();
	}
	raise(SIGKILL);
}

/* Writes g/<i> until the armed point stops it (it must). */
static int grower(void *arg)
{
	shmg_t *h = NULL;
	char key[32], m[META];

	(void)arg;
	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 10;
	sg_test_hook = hook;
	memset(m, 'g', sizeof(m));
	for (long i = 0; i < BOUND; i++) {
		snprintf(key, sizeof(key), "g/%ld", i);
		if (shmg_register(h, SHMG_KEY(key), m, sizeof(m), NULL) != 0)
			return 11;
		atomic_store(&sh->written[0], i + 1);
	}
	return 12;
}

/* Registers s/<i> from 0 until -ENOSPC; returns how many, or -1. */
static long fill(shmg_t *h, const char *prefix)
{
	char key[32], m[META];

	memset(m, 's', sizeof(m));
	for (long i = 0; i < BOUND; i++) {
		snprintf(key, sizeof(key), "%s%ld", prefix, i);
		int rc = shmg_register(h, SHMG_KEY(key), m, sizeof(m), NULL);
		if (rc == -ENOSPC)
			return i;
		if (rc != 0)
			return -1;
	}
	return -1;
}

START_TEST(test_killed_inside_growth)
{
	struct shmg_config c = grow_cfg();
	shmg_t *h = tc_open(tc_arena, &c);
	struct shmg_info in;

	sh = tc_shared_alloc(sizeof(*sh));
	hook_point = grow_points[_i];
	TC_EQ(shmg_register(h, SHMG_KEY("before"), "b", 1, NULL), 0);
	pid_t pid = tc_fork(grower, NULL);
	TC_EQ(tc_wait_exit(pid, 60000), TC_KILLED(SIGKILL));
	long written = atomic_load(&sh->written[0]);
	ck_assert_int_gt(written, 0);
	/* The object grew once; the count may not say so yet. */
	TC_EQ(shmg_info(h, &in), 0);
	ck_assert_uint_gt(in.arena_size, c.arena_size);
	/* Readers that opened before go on; writers carry on to the maximum. */
	char key[32], out[META];
	size_t ml;
	for (long i = 0; i < written; i++) {
		snprintf(key, sizeof(key), "g/%ld", i);
		TC_EQ(shmg_lookup(h, SHMG_KEY(key), NULL, out, sizeof(out), &ml, NULL), 0);
	}
	long n = fill(h, "s/");
	ck_assert_int_gt(n, written);
	TC_EQ(shmg_info(h, &in), 0);
	ck_assert_uint_eq(in.pages_total, in.pages_max);
	TC_ASSERT_CLEAN(h);
	/* The dead writer's entries go with it; what it left is reusable. */
	TC_EQ(shmg_reap(h), 1);
	TC_EQ(shmg_registry_count(h, NULL), n + 1);
	ck_assert_int_gt(fill(h, "t/"), 0);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

START_TEST(test_stopped_inside_growth)
{
	struct shmg_config c = grow_cfg();
	shmg_t *h = tc_open(tc_arena, &c);
	int fds[2];
	char b, key[32], out[META];
	size_t ml;

	sh = tc_shared_alloc(sizeof(*sh));
	hook_point = grow_points[_i];
	ck_assert_int_eq(pipe(fds), 0);
	park_fd = fds[1];
	pid_t pid = tc_fork(grower, NULL);
	park_fd = -1;
	close(fds[1]);
	TC_EQ(tc_read_full(fds[0], &b, 1, 60000), 0);
	/* It holds the pool lock and a shard lock: reads do not wait for it. */
	long written = atomic_load(&sh->written[0]);
	for (int round = 0; round < 3; round++)
		for (long i = 0; i < written; i++) {
			snprintf(key, sizeof(key), "g/%ld", i);
			TC_EQ(shmg_lookup(h, SHMG_KEY(key), NULL, out, sizeof(out), &ml, NULL), 0);
		}
	TC_EQ(shmg_registry_count(h, NULL), written);
	kill(pid, SIGKILL);
	TC_EQ(tc_wait_exit(pid, 10000), TC_KILLED(SIGKILL));
	close(fds[0]);
	ck_assert_int_gt(fill(h, "s/"), 0);
	TC_EQ(shmg_reap(h), 1);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("grow_procs");
	TCase *tc = tc_case(s, "readers", 120);
	tcase_add_test(tc, test_readers_opened_before_growth);
	tc = tc_case(s, "crash", 120);
	tcase_add_loop_test(tc, test_killed_inside_growth, 0, 2);
	tcase_add_loop_test(tc, test_stopped_inside_growth, 0, 2);
	return tc_run(s);
}
