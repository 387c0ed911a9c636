/* SPDX-License-Identifier: MIT */
/*
 * The open path under races and crashes.
 *
 * Race: workers open the group (creating it when it is missing), register a
 * key of their own, check it again and again while reaping others, and close,
 * in a loop, while another process destroys the group as fast as it can.
 * Every open must succeed (an open racing a destroy is retried, never
 * -ENOENT), and no worker's own key may ever vanish: a key vanishes only when
 * another process reaps the worker as dead, which happens when the worker's
 * liveness lock sits on another object than the one it maps.
 *
 * Crash: an opener is SIGKILLed at each open-path crash point of
 * lib/testhook.h.  The next opener must not hang, a reap must free the slot
 * (the arena has two endpoint slots, so a slot that no reap visits shows up
 * as -EUSERS), and shmg_check must find the arena clean.
 */
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tc.h"
#include "testhook.h"

#define RACE_MS_DEFAULT 3000
#define RACE_WORKERS 4
#define CHECKS_PER_OPEN 8

/* ---- race --------------------------------------------------------------- */

struct race {
	_Atomic int stop;
	_Atomic long opens, open_errors, other_errors, vanished, destroys;
	_Atomic int last_open_error, last_other_error;
};

static void note_error(_Atomic long *count, _Atomic int *last, int rc)
{
	(*count)++;
	*last = rc;
}

static int race_worker(void *arg)
{
	struct race *r = arg;
	char key[32];

	snprintf(key, sizeof(key), "w/%d", (int)getpid());
	while (!r->stop) {
		shmg_t *h = NULL;
		int rc = shmg_open(tc_arena, NULL, &h);

		if (rc != 0) {
			note_error(&r->open_errors, &r->last_open_error, rc);
			continue;
		}
		r->opens++;
		rc = shmg_register(h, SHMG_KEY(key), NULL, 0, NULL);
		if (rc != 0)
			note_error(&r->other_errors, &r->last_other_error, rc);
		for (int i = 0; rc == 0 && i < CHECKS_PER_OPEN; i++) {
			shmg_id_t id;

			/* Every open reaps too; this makes more of them. */
			if ((rc = shmg_reap(h)) < 0) {
				note_error(&r->other_errors, &r->last_other_error, rc);
				break;
			}
			rc = shmg_lookup(h, SHMG_KEY(key), &id, NULL, 0, NULL, NULL);
			if (rc != 0 || !shmg_id_equal(id, shmg_self(h))) {
				r->vanished++;
				break;
			}
		}
		if ((rc = shmg_close(h)) != 0)
			note_error(&r->other_errors, &r->last_other_error, rc);
	}
	return 0;
}

static int race_destroyer(void *arg)
{
	struct race *r = arg;

	while (!r->stop) {
		int rc = shmg_destroy(tc_arena);

		if (rc == 0)
			r->destroys++;
		else if (rc != -ENOENT)
			note_error(&r->other_errors, &r->last_other_error, rc);
		/* Let some opens land in each arena. */
		sched_yield();
	}
	return 0;
}

START_TEST(test_open_destroy_race)
{
	struct race *r = tc_shared_alloc(sizeof(*r));
	const char *env = getenv("SHMG_RACE_MS");
	int ms = env ? atoi(env) : RACE_MS_DEFAULT;
	pid_t pids[RACE_WORKERS + 1];

	for (int i = 0; i < RACE_WORKERS; i++)
		pids[i] = tc_fork(race_worker, r);
	pids[RACE_WORKERS] = tc_fork(race_destroyer, r);
	nanosleep(&(struct timespec){ ms / 1000, (long)(ms % 1000) * 1000000L }, NULL);
	r->stop = 1;
	for (int i = 0; i <= RACE_WORKERS; i++)
		TC_EQ(tc_wait_exit(pids[i], 30000), 0);
	ck_assert_msg(r->open_errors == 0 && r->vanished == 0 && r->other_errors == 0,
		      "in %ld opens and %ld destroys: %ld opens failed (last %s), a live "
		      "worker's own key vanished %ld times, %ld other errors (last %s)",
		      (long)r->opens, (long)r->destroys, (long)r->open_errors,
		      shmg_strerror(r->last_open_error), (long)r->vanished, (long)r->other_errors,
		      shmg_strerror(r->last_other_error));
	ck_assert_int_gt(r->opens, 100);
	ck_assert_int_gt(r->destroys, 10);
}
END_TEST

/* ---- one open against a destroy and a create, step by step -------------- */

static int park_out = -1, park_in = -1;

/* Says where it is, then waits for a byte to go on. */
static void park_at(const char *point)
{
	char b;

	if (strcmp(point, "open:mapped") != 0)
		return;
	(void)!write(park_out, "P", 1);
	(void)!read(park_in, &b, 1);
}

struct step_pipes {
	int parked[2], go[2], done[2];
};

static int parked_opener(void *arg)
{
	struct step_pipes *p = arg;
	shmg_t *h = NULL;

	park_out = p->parked[1];
	park_in = p->go[0];
	sg_test_hook = park_at;
	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 1;
	sg_test_hook = NULL;
	if (shmg_register(h, SHMG_KEY("opener/k"), NULL, 0, NULL) != 0)
		return 2;
	(void)!write(p->done[1], "R", 1);
	for (;;)
		pause();
}

static int destroy_child(void *arg)
{
	(void)arg;
	return -shmg_destroy(tc_arena);
}

static int create_child(void *arg)
{
	shmg_t *h = NULL;
	(void)arg;

	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 1;
	return shmg_close(h) == 0 ? 0 : 2;
}

/* An opener stopped with the arena mapped while the name is destroyed and
 * created again must hold its liveness lock on the object it maps: a process
 * of that arena reaping dead endpoints must not take it for dead. */
START_TEST(test_lock_on_mapped_object)
{
	struct step_pipes p;
	shmg_t *h0 = tc_open(tc_arena, NULL);
	char b;

	ck_assert_int_eq(pipe(p.parked), 0);
	ck_assert_int_eq(pipe(p.go), 0);
	ck_assert_int_eq(pipe(p.done), 0);
	pid_t opener = tc_fork(parked_opener, &p);
	TC_EQ(tc_read_full(p.parked[0], &b, 1, 10000), 0);
	/* Each may wait for the opener's creation lock: not for long here. */
	pid_t d = tc_fork(destroy_child, NULL);
	int d_st = tc_wait_exit(d, 500);
	pid_t c = tc_fork(create_child, NULL);
	int c_st = tc_wait_exit(c, 500);
	ck_assert_int_eq(write(p.go[1], "G", 1), 1);
	TC_EQ(tc_read_full(p.done[0], &b, 1, 10000), 0);
	TC_EQ(d_st == -ETIMEDOUT ? tc_wait_exit(d, 10000) : d_st, 0);
	TC_EQ(c_st == -ETIMEDOUT ? tc_wait_exit(c, 10000) : c_st, 0);

	/* The old arena is destroyed; the opener is alive in one of them. */
	TC_EQ(shmg_destroyed(h0), 1);
	TC_EQ(shmg_reap(h0), 0);
	int in_old = shmg_lookup(h0, SHMG_KEY("opener/k"), NULL, NULL, 0, NULL, NULL);
	shmg_t *h1 = tc_open(tc_arena, NULL);
	TC_EQ(shmg_reap(h1), 0);
	int in_new = shmg_lookup(h1, SHMG_KEY("opener/k"), NULL, NULL, 0, NULL, NULL);
	ck_assert_msg((in_old == 0) != (in_new == 0), "opener's key: old arena %d, new arena %d",
		      in_old, in_new);
	kill(opener, SIGKILL);
	TC_EQ(tc_wait_exit(opener, 10000), TC_KILLED(SIGKILL));
	TC_ASSERT_CLEAN(h1);
	TC_ASSERT_CLEAN(h0);
	shmg_close(h1);
	shmg_close(h0);
}
END_TEST

/* ---- crash points ------------------------------------------------------- */

static const char *crash_point;

static void die_at(const char *point)
{
	if (strcmp(point, crash_point) == 0)
		raise(SIGKILL);
}

struct open_point {
	const char *point;
	int creates; /* killed while creating the arena */
	int reaped;  /* endpoints the reap after the crash finds dead */
};

static const struct open_point open_points[] = {
	{ "open:init", 1, 0 },
	{ "open:claimed", 0, 0 },
	{ "open:opening", 0, 1 },
	{ "open:live", 0, 1 },
};

static struct shmg_config two_slots(void)
{
	struct shmg_config c;

	memset(&c, 0, sizeof(c));
	c.max_endpoints = 2;
	return c;
}

static int open_and_die(void *arg)
{
	struct shmg_config c = two_slots();
	shmg_t *h = NULL;

	crash_point = arg;
	sg_test_hook = die_at;
	int rc = shmg_open(tc_arena, &c, &h);
	return rc == 0 ? 1 : 2; /* the point was never reached */
}

START_TEST(test_open_crash_point)
{
	const struct open_point *p = &open_points[_i];
	struct shmg_config c = two_slots();
	shmg_t *h = NULL, *h2;
	struct shmg_info in;

	if (!p->creates)
		h = tc_open(tc_arena, &c);
	int st = tc_wait_exit(tc_fork(open_and_die, (void *)p->point), 10000);
	ck_assert_msg(st == TC_KILLED(SIGKILL), "%s: opener ended with %d", p->point, st);
	if (p->creates) {
		/* Half made: no arena for an attach-only open, and none made. */
		c.flags = SHMG_OPEN_NOCREATE;
		TC_EQ(shmg_open(tc_arena, &c, &h), -ENOENT);
		c.flags = 0;
		h = tc_open(tc_arena, &c);
	}
	TC_EQ(shmg_reap(h), p->reaped);
	TC_ASSERT_CLEAN(h);
	TC_EQ(shmg_info(h, &in), 0);
	ck_assert_uint_eq(in.endpoints_live, 1);
	/* The slot the opener died in is usable again. */
	h2 = tc_open(tc_arena, NULL);
	ck_assert_uint_eq(shmg_self(h2).slot, 1 - shmg_self(h).slot);
	TC_EQ(shmg_register(h2, SHMG_KEY("after"), NULL, 0, NULL), 0);
	TC_ASSERT_CLEAN(h2);
	shmg_close(h2);
	shmg_close(h);
}
END_TEST

static Suite *open_race_suite(void)
{
	Suite *s = suite_create("open_race");
	TCase *tc = tc_case(s, "race", 60);

	tcase_add_test(tc, test_open_destroy_race);
	tcase_add_test(tc, test_lock_on_mapped_object);
	tc = tc_case(s, "crash", 20);
	tcase_add_loop_test(tc, test_open_crash_point, 0,
			    (int)(sizeof(open_points) / sizeof(open_points[0])));
	return s;
}

int main(void)
{
	return tc_run(open_race_suite());
}
