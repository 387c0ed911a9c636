/* SPDX-License-Identifier: MIT */
/*
 * Dead endpoints: a child registers and joins, is SIGKILLed, and another
 * process finds its entries reapable: lazily (a register on its key
 * succeeds) or by shmg_reap(), after which counts drop, nothing of it is
 * returned and its endpoint slot is reused with a new generation.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tc.h"

#define NKEYS 10

struct shared {
	shmg_id_t id[8];
	long rc[8];
};

static struct shared *sh;
static int ready_pipe[2];

/* Registers reap/r<i>, joins reap/g<i> and, if connected, the same in
 * cluster "cl"; reports its id, then waits to be killed (or exits when
 * arg has bit 8 set, without closing). */
static int victim(void *arg)
{
	int idx = (int)(intptr_t)arg & 0xff;
	int exit_plain = (int)(intptr_t)arg & 0x100;
	shmg_t *h = NULL;
	char key[32];
	struct shmg_opts cl = { .cluster = "cl" };
	long rc;

	close(ready_pipe[0]);
	if ((rc = shmg_open(tc_arena, NULL, &h)) != 0)
		goto out;
	sh->id[idx] = shmg_self(h);
	for (int i = 0; i < NKEYS; i++) {
		snprintf(key, sizeof(key), "reap/r%d.%d", idx, i);
		if ((rc = shmg_register(h, SHMG_KEY(key), "dead-meta", 9, NULL)) != 0)
			goto out;
		snprintf(key, sizeof(key), "reap/g%d", i);
		if ((rc = shmg_join(h, SHMG_KEY(key), "dead-meta", 9, NULL)) != 0)
			goto out;
	}
	if (shmg_connected(h, "cl") == 1) {
		if ((rc = shmg_register(h, SHMG_KEY("reap/incl"), NULL, 0, &cl)) != 0)
			goto out;
		if ((rc = shmg_join(h, SHMG_KEY("reap/g0"), NULL, 0, &cl)) != 0)
			goto out;
	}
out:
	sh->rc[idx] = rc;
	(void)!write(ready_pipe[1], "r", 1);
	if (rc != 0)
		return 1;
	if (exit_plain)
		return 0; /* dies without shmg_close */
	for (;;)
		pause();
}

static pid_t start_victim(int idx, int exit_plain)
{
	char b;
	pid_t pid = tc_fork(victim, (void *)(intptr_t)(idx | (exit_plain ? 0x100 : 0)));

	TC_EQ(tc_read_full(ready_pipe[0], &b, 1, 20000), 0);
	ck_assert_msg(sh->rc[idx] == 0, "victim %d: %ld (%s)", idx, sh->rc[idx],
		      shmg_strerror((int)sh->rc[idx]));
	return pid;
}

static void kill_and_wait(pid_t pid)
{
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	TC_EQ(tc_wait_exit(pid, 10000), TC_KILLED(SIGKILL));
}

static void setup_pipes(void)
{
	sh = tc_shared_alloc(sizeof(*sh));
	ck_assert_int_eq(pipe(ready_pipe), 0);
}

/* Before the death is noticed a lookup may still show the dead owner, but
 * only with its complete entry. */
static void lookup_dead_or_absent(shmg_t *h, const char *key, shmg_id_t dead)
{
	shmg_id_t id;
	char m[16];
	size_t ml;
	int rc = shmg_lookup(h, SHMG_KEY(key), &id, m, sizeof(m), &ml, NULL);

	if (rc == -ENOENT)
		return;
	TC_EQ(rc, 0);
	ck_assert(shmg_id_equal(id, dead));
	ck_assert_uint_eq(ml, 9);
	ck_assert_mem_eq(m, "dead-meta", 9);
}

START_TEST(test_reap_after_kill)
{
	struct shmg_config c = { 0 };
	shmg_t *h;
	char key[32];
	struct shmg_opts cl = { .cluster = "cl" };

	c.max_endpoints = 2;
	setup_pipes();
	h = tc_open(tc_arena, &c);
	TC_EQ(shmg_connect(h, "cl", NULL), 0);
	pid_t pid = start_victim(0, 0);
	shmg_id_t dead = sh->id[0];

	TC_EQ(shmg_registry_count(h, NULL), NKEYS);
	TC_EQ(shmg_member_count(h, SHMG_KEY("reap/"), NULL), NKEYS);
	TC_EQ(shmg_registry_count(h, &cl), 1);
	TC_EQ(shmg_member_count(h, SHMG_KEY("reap/g0"), &cl), 1);
	kill_and_wait(pid);

	lookup_dead_or_absent(h, "reap/r0.0", dead);
	TC_EQ(shmg_reap(h), 1);
	TC_EQ(shmg_reap(h), 0);
	for (int i = 0; i < NKEYS; i++) {
		snprintf(key, sizeof(key), "reap/r0.%d", i);
		TC_EQ(shmg_lookup(h, SHMG_KEY(key), NULL, NULL, 0, NULL, NULL), -ENOENT);
	}
	TC_EQ(shmg_registry_count(h, NULL), 0);
	TC_EQ(shmg_local_registry_count(h, NULL), 0);
	TC_EQ(shmg_member_count(h, SHMG_KEY("reap/"), NULL), 0);
	TC_EQ(shmg_local_member_count(h, SHMG_KEY("reap/"), NULL), 0);
	TC_EQ(shmg_member_ids(h, SHMG_KEY("reap/g1"), NULL, 0, NULL), 0);
	TC_EQ(shmg_registry_count(h, &cl), 0);
	TC_EQ(shmg_member_count(h, SHMG_KEY("reap/g0"), &cl), 0);
	long n = 0;
	TC_EQ(shmg_local_entries(h, tc_count_cb, &n), 0);
	struct shmg_info in;
	TC_EQ(shmg_info(h, &in), 0);
	ck_assert_uint_eq(in.endpoints_live, 1);
	TC_ASSERT_CLEAN(h);

	/* Its slot is reusable (only two exist), with a new generation. */
	shmg_t *again = tc_open(tc_arena, NULL);
	shmg_id_t nu = shmg_self(again);
	ck_assert_uint_eq(nu.slot, dead.slot);
	ck_assert_uint_ne(nu.gen, dead.gen);
	TC_EQ(shmg_register(again, SHMG_KEY("reap/r0.0"), "new", 3, NULL), 0);
	shmg_id_t id;
	TC_EQ(shmg_lookup(h, SHMG_KEY("reap/r0.0"), &id, NULL, 0, NULL, NULL), 0);
	ck_assert(shmg_id_equal(id, nu));
	ck_assert(!shmg_id_equal(id, dead));
	TC_EQ(shmg_close(again), 0);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

START_TEST(test_lazy_reap_on_register)
{
	shmg_t *h;
	shmg_id_t id;
	char m[16];
	size_t ml;

	setup_pipes();
	h = tc_open(tc_arena, NULL);
	pid_t pid = start_victim(0, 0);
	shmg_id_t dead = sh->id[0];

	TC_EQ(shmg_register(h, SHMG_KEY("reap/r0.3"), "mine", 4, NULL), -EEXIST);
	kill_and_wait(pid);
	lookup_dead_or_absent(h, "reap/r0.3", dead);
	/* Meeting the dead owner, register reaps it first. */
	TC_EQ(shmg_register(h, SHMG_KEY("reap/r0.3"), "mine", 4, NULL), 0);
	TC_EQ(shmg_lookup(h, SHMG_KEY("reap/r0.3"), &id, m, sizeof(m), &ml, NULL), 0);
	ck_assert(shmg_id_equal(id, shmg_self(h)));
	ck_assert_uint_eq(ml, 4);
	/* Its other entries: gone already, or reapable now. */
	for (int i = 0; i < NKEYS; i++) {
		char key[32];

		snprintf(key, sizeof(key), "reap/r0.%d", i);
		if (i != 3)
			lookup_dead_or_absent(h, key, dead);
	}
	int r = shmg_reap(h);
	ck_assert_msg(r == 0 || r == 1, "reap = %d", r);
	TC_EQ(shmg_reap(h), 0);
	TC_EQ(shmg_registry_count(h, NULL), 1);
	TC_EQ(shmg_member_count(h, SHMG_KEY("reap/"), NULL), 0);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

START_TEST(test_dead_member_not_listed_after_reap)
{
	shmg_t *h;

	setup_pipes();
	h = tc_open(tc_arena, NULL);
	TC_EQ(shmg_join(h, SHMG_KEY("reap/g5"), "live", 4, NULL), 0);
	pid_t pid = start_victim(0, 0);
	TC_EQ(shmg_member_count(h, SHMG_KEY("reap/g5"), NULL), 2);
	kill_and_wait(pid);
	long n = shmg_member_count(h, SHMG_KEY("reap/g5"), NULL);
	ck_assert_msg(n == 1 || n == 2, "member_count = %ld", n);
	/* Joining the dead member's group does not disturb anything. */
	TC_EQ(shmg_join(h, SHMG_KEY("reap/g5"), "live2", 5, NULL), 0);
	TC_EQ(shmg_reap(h), 1);
	shmg_id_t ids[4];
	TC_EQ(shmg_member_ids(h, SHMG_KEY("reap/g5"), ids, 4, NULL), 1);
	ck_assert(shmg_id_equal(ids[0], shmg_self(h)));
	TC_EQ(shmg_member_count(h, SHMG_KEY("reap/"), NULL), 1);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

START_TEST(test_reap_several_and_plain_exit)
{
	shmg_t *h;
	pid_t pids[3];

	setup_pipes();
	h = tc_open(tc_arena, NULL);
	pids[0] = start_victim(0, 0);
	pids[1] = start_victim(1, 0);
	pids[2] = start_victim(2, 1); /* exits normally, never closes */
	TC_EQ(shmg_registry_count(h, NULL), 3 * NKEYS);
	TC_EQ(shmg_member_count(h, SHMG_KEY("reap/g0"), NULL), 3);
	TC_EQ(tc_wait_exit(pids[2], 10000), 0);
	kill_and_wait(pids[0]);
	kill_and_wait(pids[1]);
	TC_EQ(shmg_reap(h), 3);
	TC_EQ(shmg_registry_count(h, NULL), 0);
	TC_EQ(shmg_member_count(h, SHMG_KEY("reap/"), NULL), 0);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

START_TEST(test_reap_leaves_live_alone)
{
	shmg_t *h;

	setup_pipes();
	h = tc_open(tc_arena, NULL);
	pid_t pid = start_victim(0, 0);
	/* Alive: nothing to reap, nothing hidden. */
	TC_EQ(shmg_reap(h), 0);
	TC_EQ(shmg_registry_count(h, NULL), NKEYS);
	TC_EQ(shmg_register(h, SHMG_KEY("reap/r0.0"), "x", 1, NULL), -EEXIST);
	TC_EQ(shmg_lookup(h, SHMG_KEY("reap/r0.1"), NULL, NULL, 0, NULL, NULL), 0);
	kill_and_wait(pid);
	TC_EQ(shmg_reap(h), 1);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

/* Dead endpoints do not hold slots forever: with every slot taken by live
 * or dead endpoints, an open reclaims a dead one rather than fail. */
START_TEST(test_dead_slot_reclaimed_by_open)
{
	struct shmg_config c = { 0 };
	shmg_t *h, *x = NULL;

	c.max_endpoints = 2;
	setup_pipes();
	h = tc_open(tc_arena, &c);
	pid_t pid = start_victim(0, 0);
	TC_EQ(shmg_open(tc_arena, NULL, &x), -EUSERS);
	kill_and_wait(pid);
	/* No explicit reap: the open meets the dead slot itself. */
	TC_EQ(shmg_open(tc_arena, NULL, &x), 0);
	ck_assert_uint_eq(shmg_self(x).slot, sh->id[0].slot);
	TC_EQ(shmg_registry_count(h, NULL), 0);
	TC_EQ(shmg_member_count(h, SHMG_KEY("reap/"), NULL), 0);
	TC_ASSERT_CLEAN(h);
	shmg_close(x);
	shmg_close(h);
}
END_TEST

/* A killed child that its parent has not waited for yet (a zombie) is dead:
 * it can never run again. */
START_TEST(test_zombie_is_dead)
{
	shmg_t *h;

	setup_pipes();
	h = tc_open(tc_arena, NULL);
	pid_t pid = start_victim(0, 0);
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	/* Wait until it is a zombie, without reaping it. */
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	ck_assert_int_eq(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
	ck_assert_int_eq(si.si_pid, pid);
	TC_EQ(shmg_reap(h), 1);
	TC_EQ(shmg_registry_count(h, NULL), 0);
	TC_EQ(shmg_register(h, SHMG_KEY("reap/r0.0"), "x", 1, NULL), 0);
	TC_EQ(tc_wait_exit(pid, 10000), TC_KILLED(SIGKILL));
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

/* A dead endpoint is dead even if a child it forked (and that never
 * touched the inherited handle) lives on: a pre-forking server's master
 * dies, its workers keep running. */
static int forking_victim(void *arg)
{
	shmg_t *h = NULL;
	long rc;

	(void)arg;
	close(ready_pipe[0]);
	if ((rc = shmg_open(tc_arena, NULL, &h)) != 0)
		goto out;
	sh->id[0] = shmg_self(h);
	if ((rc = shmg_register(h, SHMG_KEY("reap/master"), "m", 1, NULL)) != 0)
		goto out;
	if ((rc = shmg_join(h, SHMG_KEY("reap/masters"), "m", 1, NULL)) != 0)
		goto out;
	int started[2];
	if (pipe(started) != 0) {
		rc = -errno;
		goto out;
	}
	pid_t worker = fork();
	if (worker < 0) {
		rc = -errno;
		goto out;
	}
	if (worker == 0) {
		/* The worker: inherits the handle, never uses it.  By the time
		 * fork returns here the atfork handler has closed the worker's
		 * copy of the liveness descriptor: say so. */
		(void)!write(started[1], "w", 1);
		for (;;)
			pause();
	}
	/* Until the worker runs, its copy of the descriptor keeps the lock
	 * (an inherent window of fork, closed by the reaper's next sweep). */
	char b;
	if (read(started[0], &b, 1) != 1) {
		rc = -EIO;
		goto out;
	}
	sh->rc[1] = worker;
out:
	sh->rc[0] = rc;
	(void)!write(ready_pipe[1], "r", 1);
	for (;;)
		pause();
	return 0;
}

START_TEST(test_dead_endpoint_with_live_forked_child)
{
	shmg_t *h;
	char b;

	setup_pipes();
	h = tc_open(tc_arena, NULL);
	pid_t pid = tc_fork(forking_victim, NULL);
	TC_EQ(tc_read_full(ready_pipe[0], &b, 1, 20000), 0);
	TC_EQ(sh->rc[0], 0);
	pid_t worker = (pid_t)sh->rc[1];
	kill_and_wait(pid);
	/* The worker lives on (it is reparented; check kills it at the end). */
	ck_assert_int_eq(kill(worker, 0), 0);
	int r = shmg_reap(h);
	ck_assert_msg(r == 1, "reap = %d: the endpoint of a SIGKILLed process is still "
			      "taken for alive while a child it forked lives", r);
	TC_EQ(shmg_lookup(h, SHMG_KEY("reap/master"), NULL, NULL, 0, NULL, NULL), -ENOENT);
	TC_EQ(shmg_register(h, SHMG_KEY("reap/master"), "new", 3, NULL), 0);
	kill(worker, SIGKILL);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

static Suite *reap_suite(void)
{
	Suite *s = suite_create("reap");
	TCase *tc = tc_case(s, "reap", 30);

	tcase_add_test(tc, test_reap_after_kill);
	tcase_add_test(tc, test_lazy_reap_on_register);
	tcase_add_test(tc, test_dead_member_not_listed_after_reap);
	tcase_add_test(tc, test_reap_several_and_plain_exit);
	tcase_add_test(tc, test_reap_leaves_live_alone);
	tcase_add_test(tc, test_dead_slot_reclaimed_by_open);
	tcase_add_test(tc, test_zombie_is_dead);
	tcase_add_test(tc, test_dead_endpoint_with_live_forked_child);
	return s;
}

int main(void)
{
	return tc_run(reap_suite());
}
