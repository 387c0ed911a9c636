/* SPDX-License-Identifier: MIT */
/*
 * Monitors and events on one host: every event type and reason that one host
 * can produce, exact/prefix/all routing, cluster scoping, self-events,
 * previous_meta, extract_meta, batches, the overflow marker, shmg_fd
 * readiness, blocking receive and the argument checks of the new calls.
 */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tc.h"
#include "tc_events.h"

#define CAP 64

static struct tc_ev ev[CAP];

#define ID(h) shmg_self(h)

/* ---- every type and reason --------------------------------------------- */

START_TEST(test_registered_new_update_unregistered)
{
	shmg_t *m = tc_open(tc_arena, NULL);
	shmg_t *w = tc_open(tc_arena, NULL);

	TC_EQ(shmg_monitor(m, SHMG_KEY("reg/a"), NULL), 0);
	tc_ev_expect_empty(m, "after monitor");

	TC_EQ(shmg_register(w, SHMG_KEY("reg/a"), "one", 3, NULL), 0);
	TC_EQ(tc_ev_drain(m, ev, CAP), 1);
	tc_ev_expect(&ev[0], SHMG_EV_REGISTERED, SHMG_REASON_NONE, ID(w), NULL, "reg/a", "one", 3);
	tc_ev_expect_prev(&ev[0], NULL, 0);
	ck_assert_int_eq(ev[0].pid, getpid());
	tc_ev_expect_single(&ev[0]);
	uint32_t b0 = ev[0].batch;

	/* Re-register by the owner: an update carrying previous_meta. */
	TC_EQ(shmg_register(w, SHMG_KEY("reg/a"), "second", 6, NULL), 0);
	TC_EQ(tc_ev_drain(m, ev, CAP), 1);
	tc_ev_expect(&ev[0], SHMG_EV_REGISTERED, SHMG_REASON_NONE, ID(w), NULL, "reg/a", "second",
		     6);
	tc_ev_expect_prev(&ev[0], "one", 3);
	tc_ev_expect_single(&ev[0]);
	ck_assert_uint_ne(ev[0].batch, b0);
	uint32_t b1 = ev[0].batch;

	/* Update to empty metadata and back: previous_meta of length 0 is
	 * still "previous" (has_previous 1). */
	TC_EQ(shmg_register(w, SHMG_KEY("reg/a"), NULL, 0, NULL), 0);
	TC_EQ(shmg_register(w, SHMG_KEY("reg/a"), "3", 1, NULL), 0);
	TC_EQ(tc_ev_drain(m, ev, CAP), 2);
	tc_ev_expect(&ev[0], SHMG_EV_REGISTERED, SHMG_REASON_NONE, ID(w), NULL, "reg/a", NULL, 0);
	tc_ev_expect_prev(&ev[0], "second", 6);
	tc_ev_expect(&ev[1], SHMG_EV_REGISTERED, SHMG_REASON_NONE, ID(w), NULL, "reg/a", "3", 1);
	tc_ev_expect_prev(&ev[1], "", 0);
	ck_assert_uint_ne(ev[0].batch, ev[1].batch);
	ck_assert_uint_ne(ev[0].batch, b1);

	/* Identical metadata: a documented no-op, no event. */
	TC_EQ(shmg_register(w, SHMG_KEY("reg/a"), "3", 1, NULL), 0);
	tc_ev_expect_empty(m, "identical re-register");
	/* Refused: no event. */
	TC_EQ(shmg_register(m, SHMG_KEY("reg/a"), "x", 1, NULL), -EEXIST);
	TC_EQ(shmg_unregister(m, SHMG_KEY("reg/a"), NULL), -EPERM);
	tc_ev_expect_empty(m, "refused writes");

	TC_EQ(shmg_unregister(w, SHMG_KEY("reg/a"), NULL), 0);
	TC_EQ(tc_ev_drain(m, ev, CAP), 1);
	tc_ev_expect(&ev[0], SHMG_EV_UNREGISTERED, SHMG_REASON_NORMAL, ID(w), NULL, "reg/a", "3",
		     1);
	tc_ev_expect_prev(&ev[0], NULL, 0);
	tc_ev_expect_single(&ev[0]);
	TC_EQ(shmg_unregister(w, SHMG_KEY("reg/a"), NULL), -ENOENT);
	tc_ev_expect_empty(m, "unregister of nothing");
	TC_ASSERT_CLEAN(m);
	shmg_close(w);
	shmg_close(m);
}
END_TEST

START_TEST(test_joined_new_update_left)
{
	shmg_t *m = tc_open(tc_arena, NULL);
	shmg_t *a = tc_open(tc_arena, NULL);
	shmg_t *b = tc_open(tc_arena, NULL);

	TC_EQ(shmg_monitor(m, SHMG_KEY("room/1"), NULL), 0);
	TC_EQ(shmg_join(a, SHMG_KEY("room/1"), "a1", 2, NULL), 0);
	TC_EQ(shmg_join(b, SHMG_KEY("room/1"), "b1", 2, NULL), 0);
	TC_EQ(shmg_join(a, SHMG_KEY("room/1"), "a22", 3, NULL), 0);
	TC_EQ(shmg_join(a, SHMG_KEY("room/1"), "a22", 3, NULL), 0); /* identical: no event */
	TC_EQ(shmg_leave(b, SHMG_KEY("room/1"), NULL), 0);
	TC_EQ(shmg_leave(b, SHMG_KEY("room/1"), NULL), -ENOENT);
	TC_EQ(shmg_leave(a, SHMG_KEY("room/1"), NULL), 0);

	TC_EQ(tc_ev_drain(m, ev, CAP), 5);
	tc_ev_expect(&ev[0], SHMG_EV_JOINED, SHMG_REASON_NONE, ID(a), NULL, "room/1", "a1", 2);
	tc_ev_expect_prev(&ev[0], NULL, 0);
	tc_ev_expect(&ev[1], SHMG_EV_JOINED, SHMG_REASON_NONE, ID(b), NULL, "room/1", "b1", 2);
	tc_ev_expect_prev(&ev[1], NULL, 0);
	tc_ev_expect(&ev[2], SHMG_EV_JOINED, SHMG_REASON_NONE, ID(a), NULL, "room/1", "a22", 3);
	tc_ev_expect_prev(&ev[2], "a1", 2);
	tc_ev_expect(&ev[3], SHMG_EV_LEFT, SHMG_REASON_NORMAL, ID(b), NULL, "room/1", "b1", 2);
	tc_ev_expect_prev(&ev[3], NULL, 0);
	tc_ev_expect(&ev[4], SHMG_EV_LEFT, SHMG_REASON_NORMAL, ID(a), NULL, "room/1", "a22", 3);
	/* Each operation its own batch of one, numbers strictly increasing. */
	for (int i = 0; i < 5; i++) {
		tc_ev_expect_single(&ev[i]);
		if (i)
			ck_assert_uint_gt(ev[i].batch, ev[i - 1].batch);
	}
	shmg_close(b);
	shmg_close(a);
	shmg_close(m);
}
END_TEST

/* A leave seen through a prefix monitor. */
START_TEST(test_left_normal)
{
	shmg_t *m = tc_open(tc_arena, NULL);
	shmg_t *a = tc_open(tc_arena, NULL);

	TC_EQ(shmg_monitor(m, SHMG_KEY("room/"), NULL), 0);
	TC_EQ(shmg_join(a, SHMG_KEY("room/2"), "x", 1, NULL), 0);
	TC_EQ(tc_ev_drain(m, ev, CAP), 1);
	TC_EQ(shmg_leave(a, SHMG_KEY("room/2"), NULL), 0);
	TC_EQ(tc_ev_drain(m, ev, CAP), 1);
	tc_ev_expect(&ev[0], SHMG_EV_LEFT, SHMG_REASON_NORMAL, ID(a), NULL, "room/2", "x", 1);
	tc_ev_expect_prev(&ev[0], NULL, 0);
	tc_ev_expect_single(&ev[0]);
	shmg_close(a);
	shmg_close(m);
}
END_TEST

/* close removes everything with reason normal, in one batch: its
 * unregistered events, then its left events. */
START_TEST(test_close_is_one_normal_batch)
{
	shmg_t *m = tc_open(tc_arena, NULL);
	shmg_t *w = tc_open(tc_arena, NULL);
	shmg_id_t wid = shmg_self(w);

	TC_EQ(shmg_monitor(m, NULL, 0, NULL), 0);
	TC_EQ(shmg_register(w, SHMG_KEY("c/r1"), "r1", 2, NULL), 0);
	TC_EQ(shmg_join(w, SHMG_KEY("c/g1"), "g1", 2, NULL), 0);
	TC_EQ(shmg_register(w, SHMG_KEY("zz/r2"), "r2", 2, NULL), 0);
	TC_EQ(shmg_join(w, SHMG_KEY("zz/g2"), "g2", 2, NULL), 0);
	TC_EQ(shmg_monitor(w, NULL, 0, NULL), 0);
	TC_EQ(tc_ev_drain(m, ev, CAP), 4);
	/* An endpoint of m's own that stays: not part of w's batch. */
	TC_EQ(shmg_join(m, SHMG_KEY("c/g1"), "m", 1, NULL), 0);
	TC_EQ(tc_ev_drain(m, ev, CAP), 1);

	TC_EQ(shmg_close(w), 0);
	TC_EQ(tc_ev_drain(m, ev, CAP), 4);
	tc_ev_expect_one_batch(ev, 4);
	int unreg = 0, left = 0;
	for (int i = 0; i < 4; i++) {
		ck_assert(shmg_id_equal(ev[i].id, wid));
		ck_assert_int_eq(ev[i].reason, SHMG_REASON_NORMAL);
		ck_assert_int_eq(ev[i].has_previous, 0);
		if (ev[i].type == SHMG_EV_UNREGISTERED) {
			ck_assert_msg(left == 0, "unregistered after left in a close batch");
			unreg++;
			ck_assert(strcmp(ev[i].key, "c/r1") == 0 || strcmp(ev[i].key, "zz/r2") == 0);
		} else {
			ck_assert_int_eq(ev[i].type, SHMG_EV_LEFT);
			left++;
			ck_assert(strcmp(ev[i].key, "c/g1") == 0 || strcmp(ev[i].key, "zz/g2") == 0);
		}
		/* meta is the entry's own */
		ck_assert_uint_eq(ev[i].meta_len, 2);
		ck_assert_int_eq(ev[i].meta[1], ev[i].key[strlen(ev[i].key) - 1]);
	}
	ck_assert_int_eq(unreg, 2);
	ck_assert_int_eq(left, 2);
	TC_EQ(shmg_member_count(m, SHMG_KEY("c/g1"), NULL), 1);
	TC_ASSERT_CLEAN(m);
	shmg_close(m);
}
END_TEST

/* Monitors die with their endpoint: the next owner of the slot receives
 * nothing for the old endpoint's monitors. */
START_TEST(test_monitor_dies_with_endpoint)
{
	struct shmg_config c = { 0 };
	c.max_endpoints = 2;
	shmg_t *w = tc_open(tc_arena, &c);
	shmg_t *m = tc_open(tc_arena, NULL);
	shmg_id_t old = shmg_self(m);

	TC_EQ(shmg_monitor(m, NULL, 0, NULL), 0);
	TC_EQ(shmg_monitor(m, SHMG_KEY("dead/"), NULL), 0);
	TC_EQ(shmg_monitor(m, SHMG_KEY("dead/k"), NULL), 0);
	TC_EQ(shmg_close(m), 0);
	m = tc_open(tc_arena, NULL);
	ck_assert_uint_eq(shmg_self(m).slot, old.slot);
	ck_assert_uint_ne(shmg_self(m).gen, old.gen);
	TC_EQ(shmg_register(w, SHMG_KEY("dead/k"), "x", 1, NULL), 0);
	TC_EQ(shmg_join(w, SHMG_KEY("dead/g"), "x", 1, NULL), 0);
	tc_ev_expect_empty(m, "old endpoint's monitors");
	TC_ASSERT_CLEAN(w);
	shmg_close(m);
	shmg_close(w);
}
END_TEST

START_TEST(test_cluster_disconnect_reason)
{
	shmg_t *m = tc_open(tc_arena, NULL);
	shmg_t *w = tc_open(tc_arena, NULL);
	struct shmg_opts cl = { .cluster = "cl" };

	TC_EQ(shmg_connect(m, "cl", NULL), 0);
	TC_EQ(shmg_monitor(m, NULL, 0, &cl), 0);
	TC_EQ(shmg_monitor(m, NULL, 0, NULL), 0);
	TC_EQ(shmg_register(w, SHMG_KEY("d/r"), "r", 1, &cl), 0);
	TC_EQ(shmg_join(w, SHMG_KEY("d/g"), "g", 1, &cl), 0);
	TC_EQ(shmg_join(m, SHMG_KEY("d/g"), "m", 1, &cl), 0);
	/* The default cluster is not touched by a disconnect. */
	TC_EQ(shmg_register(w, SHMG_KEY("d/r"), "def", 3, NULL), 0);
	TC_EQ(tc_ev_drain(m, ev, CAP), 4);

	TC_EQ(shmg_disconnect(w, "cl"), 0);
	int n = tc_ev_drain(m, ev, CAP);
	TC_EQ(n, 3);
	int unreg = 0, left = 0;
	for (int i = 0; i < n; i++) {
		ck_assert_int_eq(ev[i].reason, SHMG_REASON_CLUSTER_DISCONNECT);
		ck_assert(ev[i].has_cluster);
		ck_assert_str_eq(ev[i].cluster, "cl");
		if (ev[i].type == SHMG_EV_UNREGISTERED) {
			tc_ev_expect(&ev[i], SHMG_EV_UNREGISTERED, SHMG_REASON_CLUSTER_DISCONNECT,
				     ID(w), "cl", "d/r", "r", 1);
			unreg++;
		} else {
			ck_assert_int_eq(ev[i].type, SHMG_EV_LEFT);
			ck_assert_str_eq(ev[i].key, "d/g");
			left++;
		}
		/* Batches are well formed: every batch ends with batch_end. */
		if (i + 1 < n && ev[i + 1].batch != ev[i].batch)
			ck_assert_int_eq(ev[i].batch_end, 1);
	}
	ck_assert_int_eq(ev[n - 1].batch_end, 1);
	ck_assert_int_eq(unreg, 1);
	ck_assert_int_eq(left, 2);
	TC_EQ(shmg_lookup(m, SHMG_KEY("d/r"), NULL, NULL, 0, NULL, NULL), 0);
	TC_ASSERT_CLEAN(m);
	shmg_close(w);
	shmg_close(m);
}
END_TEST

/* ---- death, noticed lazily ----------------------------------------------- */

struct victim_info {
	shmg_id_t id;
	long rc;
};
static struct victim_info *vi;
static int vpipe[2];

static int lazy_victim(void *arg)
{
	shmg_t *h = NULL;

	(void)arg;
	if ((vi->rc = shmg_open(tc_arena, NULL, &h)) == 0) {
		vi->id = shmg_self(h);
		if ((vi->rc = shmg_register(h, SHMG_KEY("lazy/k"), "dead", 4, NULL)) == 0)
			vi->rc = shmg_join(h, SHMG_KEY("lazy/g"), "dead", 4, NULL);
	}
	(void)!write(vpipe[1], "r", 1);
	for (;;)
		pause();
	return 0;
}

static pid_t start_lazy_victim(void)
{
	char b;

	vi = tc_shared_alloc(sizeof(*vi));
	ck_assert_int_eq(pipe(vpipe), 0);
	pid_t pid = tc_fork(lazy_victim, NULL);
	TC_EQ(tc_read_full(vpipe[0], &b, 1, 20000), 0);
	TC_EQ(vi->rc, 0);
	return pid;
}

/* A register that meets a key held by a dead endpoint reaps it: monitors get
 * unregistered with reason exit before the new registration. */
START_TEST(test_lazy_reap_on_register_is_exit)
{
	shmg_t *m = tc_open(tc_arena, NULL);

	TC_EQ(shmg_monitor(m, SHMG_KEY("lazy/"), NULL), 0);
	pid_t pid = start_lazy_victim();
	TC_EQ(tc_ev_drain(m, ev, CAP), 2);
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	TC_EQ(tc_wait_exit(pid, 10000), TC_KILLED(SIGKILL));

	TC_EQ(shmg_register(m, SHMG_KEY("lazy/k"), "mine", 4, NULL), 0);
	TC_EQ(shmg_reap(m), 0); /* the register reaped the whole dead endpoint */
	int n = tc_ev_drain(m, ev, CAP);
	TC_EQ(n, 3);
	int seen_unreg = -1, seen_left = -1, seen_reg = -1;
	for (int i = 0; i < n; i++) {
		if (ev[i].type == SHMG_EV_UNREGISTERED) {
			tc_ev_expect(&ev[i], SHMG_EV_UNREGISTERED, SHMG_REASON_EXIT, vi->id, NULL,
				     "lazy/k", "dead", 4);
			ck_assert_int_eq(ev[i].pid, pid);
			seen_unreg = i;
		} else if (ev[i].type == SHMG_EV_LEFT) {
			tc_ev_expect(&ev[i], SHMG_EV_LEFT, SHMG_REASON_EXIT, vi->id, NULL, "lazy/g",
				     "dead", 4);
			seen_left = i;
		} else {
			tc_ev_expect(&ev[i], SHMG_EV_REGISTERED, SHMG_REASON_NONE, ID(m), NULL,
				     "lazy/k", "mine", 4);
			tc_ev_expect_prev(&ev[i], NULL, 0);
			seen_reg = i;
		}
	}
	ck_assert_int_ge(seen_unreg, 0);
	ck_assert_int_ge(seen_left, 0);
	ck_assert_int_ge(seen_reg, 0);
	/* Per key, in apply order: the old owner goes before the new one comes. */
	ck_assert_int_lt(seen_unreg, seen_reg);
	TC_ASSERT_CLEAN(m);
	shmg_close(m);
}
END_TEST

/* DESIGN.md section 2 and shmg_receive's comment: a death is one batch
 * holding all of that endpoint's unregistered and left events, also when the
 * death is noticed lazily by a register on one of its keys. */
START_TEST(test_lazy_reap_death_is_one_batch)
{
	shmg_t *m = tc_open(tc_arena, NULL);

	TC_EQ(shmg_monitor(m, SHMG_KEY("lazy/"), NULL), 0);
	pid_t pid = start_lazy_victim();
	TC_EQ(tc_ev_drain(m, ev, CAP), 2);
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	TC_EQ(tc_wait_exit(pid, 10000), TC_KILLED(SIGKILL));

	TC_EQ(shmg_register(m, SHMG_KEY("lazy/k"), "mine", 4, NULL), 0);
	(void)shmg_reap(m);
	int n = tc_ev_drain(m, ev, CAP);
	TC_EQ(n, 3);
	struct tc_ev dead[2];
	int nd = 0;
	for (int i = 0; i < n; i++)
		if (shmg_id_equal(ev[i].id, vi->id)) {
			ck_assert_int_lt(nd, 2);
			dead[nd++] = ev[i];
		}
	TC_EQ(nd, 2);
	ck_assert_int_eq(dead[0].type, SHMG_EV_UNREGISTERED);
	ck_assert_int_eq(dead[1].type, SHMG_EV_LEFT);
	ck_assert_msg(dead[0].batch == dead[1].batch && !dead[0].batch_end && dead[1].batch_end,
		      "the dead endpoint's events came in batches %u (end %d) and %u (end %d), "
		      "not one batch",
		      dead[0].batch, dead[0].batch_end, dead[1].batch, dead[1].batch_end);
	shmg_close(m);
}
END_TEST

/* ---- routing ----------------------------------------------------------- */

START_TEST(test_exact_prefix_all_routing)
{
	shmg_t *w = tc_open(tc_arena, NULL);
	shmg_t *exact = tc_open(tc_arena, NULL);
	shmg_t *prefix = tc_open(tc_arena, NULL);
	shmg_t *top = tc_open(tc_arena, NULL);
	shmg_t *all = tc_open(tc_arena, NULL);
	shmg_t *other = tc_open(tc_arena, NULL);
	shmg_t *noslash = tc_open(tc_arena, NULL);

	TC_EQ(shmg_monitor(exact, SHMG_KEY("r/a/x"), NULL), 0);
	TC_EQ(shmg_monitor(prefix, SHMG_KEY("r/a/"), NULL), 0);
	TC_EQ(shmg_monitor(top, SHMG_KEY("r/"), NULL), 0);
	TC_EQ(shmg_monitor(all, NULL, 0, NULL), 0);
	TC_EQ(shmg_monitor(other, SHMG_KEY("r/b/"), NULL), 0);
	TC_EQ(shmg_monitor(noslash, SHMG_KEY("r/a"), NULL), 0); /* exact key "r/a" */

	struct {
		const char *key;
		int exact, prefix, top, all, other, noslash;
	} cases[] = {
		{ "r/a/x", 1, 1, 1, 1, 0, 0 },
		{ "r/a/y", 0, 1, 1, 1, 0, 0 },
		{ "r/a/x/deeper", 0, 1, 1, 1, 0, 0 },
		{ "r/a", 0, 0, 1, 1, 0, 1 },
		{ "r/ax", 0, 0, 1, 1, 0, 0 },
		{ "r/b/1", 0, 0, 1, 1, 1, 0 },
		{ "zz", 0, 0, 0, 1, 0, 0 },
		{ "r", 0, 0, 0, 1, 0, 0 },
		{ "r/a/x2", 0, 1, 1, 1, 0, 0 },
	};
	shmg_t *mons[] = { exact, prefix, top, all, other, noslash };
	const char *names[] = { "exact", "prefix", "top", "all", "other", "noslash" };

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		int want[] = { cases[c].exact, cases[c].prefix, cases[c].top,
			       cases[c].all,   cases[c].other,  cases[c].noslash };

		/* One registration and one join per key: both routed alike. */
		TC_EQ(shmg_register(w, SHMG_KEY(cases[c].key), "m", 1, NULL), 0);
		TC_EQ(shmg_join(w, SHMG_KEY(cases[c].key), "j", 1, NULL), 0);
		for (int i = 0; i < 6; i++) {
			int n = tc_ev_drain(mons[i], ev, CAP);

			ck_assert_msg(n == 2 * want[i], "key %s, monitor %s: %d events, expected %d",
				      cases[c].key, names[i], n, 2 * want[i]);
			if (n) {
				tc_ev_expect(&ev[0], SHMG_EV_REGISTERED, SHMG_REASON_NONE, ID(w), NULL,
					     cases[c].key, "m", 1);
				tc_ev_expect(&ev[1], SHMG_EV_JOINED, SHMG_REASON_NONE, ID(w), NULL,
					     cases[c].key, "j", 1);
			}
		}
	}
	for (int i = 0; i < 6; i++)
		shmg_close(mons[i]);
	shmg_close(w);
}
END_TEST

START_TEST(test_cluster_scoping)
{
	shmg_t *w = tc_open(tc_arena, NULL);
	shmg_t *mdef = tc_open(tc_arena, NULL);
	shmg_t *mcl = tc_open(tc_arena, NULL);
	shmg_t *mother = tc_open(tc_arena, NULL);
	struct shmg_opts cl = { .cluster = "cl" };
	struct shmg_opts c2 = { .cluster = "c2" };

	/* Monitoring a named cluster needs no connect. */
	TC_EQ(shmg_connected(mcl, "cl"), 0);
	TC_EQ(shmg_monitor(mcl, NULL, 0, &cl), 0);
	TC_EQ(shmg_monitor(mcl, SHMG_KEY("sc/"), &cl), 0);
	TC_EQ(shmg_connected(mcl, "cl"), 0);
	TC_EQ(shmg_monitor(mdef, NULL, 0, NULL), 0);
	TC_EQ(shmg_monitor(mother, NULL, 0, &c2), 0);

	TC_EQ(shmg_connect(w, "cl", NULL), 0);
	TC_EQ(shmg_connect(w, "c2x", NULL), 0);
	struct shmg_opts c2x = { .cluster = "c2x" };
	TC_EQ(shmg_register(w, SHMG_KEY("sc/k"), "in-cl", 5, &cl), 0);
	TC_EQ(shmg_join(w, SHMG_KEY("sc/g"), "in-cl", 5, &cl), 0);
	TC_EQ(shmg_register(w, SHMG_KEY("sc/k"), "in-c2x", 6, &c2x), 0);

	TC_EQ(tc_ev_drain(mcl, ev, CAP), 2);
	tc_ev_expect(&ev[0], SHMG_EV_REGISTERED, SHMG_REASON_NONE, ID(w), "cl", "sc/k", "in-cl", 5);
	tc_ev_expect(&ev[1], SHMG_EV_JOINED, SHMG_REASON_NONE, ID(w), "cl", "sc/g", "in-cl", 5);
	tc_ev_expect_empty(mdef, "default all-monitor, events of a named cluster");
	tc_ev_expect_empty(mother, "all-monitor of c2, events of cl and c2x");

	TC_EQ(shmg_register(w, SHMG_KEY("sc/k"), "def", 3, NULL), 0);
	TC_EQ(shmg_join(w, SHMG_KEY("sc/g"), "def", 3, NULL), 0);
	TC_EQ(tc_ev_drain(mdef, ev, CAP), 2);
	tc_ev_expect(&ev[0], SHMG_EV_REGISTERED, SHMG_REASON_NONE, ID(w), NULL, "sc/k", "def", 3);
	tc_ev_expect(&ev[1], SHMG_EV_JOINED, SHMG_REASON_NONE, ID(w), NULL, "sc/g", "def", 3);
	tc_ev_expect_empty(mcl, "named-cluster monitor, events of the default cluster");
	tc_ev_expect_empty(mother, "all-monitor of c2, events of the default cluster");

	/* c2 is connected only now; its monitor (set before) receives. */
	TC_EQ(shmg_connect(w, "c2", NULL), 0);
	TC_EQ(shmg_join(w, SHMG_KEY("sc/g"), "c2", 2, &c2), 0);
	TC_EQ(tc_ev_drain(mother, ev, CAP), 1);
	tc_ev_expect(&ev[0], SHMG_EV_JOINED, SHMG_REASON_NONE, ID(w), "c2", "sc/g", "c2", 2);
	tc_ev_expect_empty(mcl, "cl monitor, event of c2");
	tc_ev_expect_empty(mdef, "default monitor, event of c2");

	shmg_close(mother);
	shmg_close(mcl);
	shmg_close(mdef);
	shmg_close(w);
}
END_TEST

START_TEST(test_self_events)
{
	shmg_t *m = tc_open(tc_arena, NULL);
	struct shmg_opts cl = { .cluster = "cl" };

	TC_EQ(shmg_connect(m, "cl", NULL), 0);
	TC_EQ(shmg_monitor(m, SHMG_KEY("self/"), NULL), 0);
	TC_EQ(shmg_monitor(m, SHMG_KEY("self/"), &cl), 0);
	TC_EQ(shmg_register(m, SHMG_KEY("self/r"), "1", 1, NULL), 0);
	TC_EQ(shmg_register(m, SHMG_KEY("self/r"), "2", 1, NULL), 0);
	TC_EQ(shmg_join(m, SHMG_KEY("self/g"), "1", 1, &cl), 0);
	TC_EQ(shmg_leave(m, SHMG_KEY("self/g"), &cl), 0);
	TC_EQ(shmg_unregister(m, SHMG_KEY("self/r"), NULL), 0);
	TC_EQ(tc_ev_drain(m, ev, CAP), 5);
	tc_ev_expect(&ev[0], SHMG_EV_REGISTERED, SHMG_REASON_NONE, ID(m), NULL, "self/r", "1", 1);
	tc_ev_expect(&ev[1], SHMG_EV_REGISTERED, SHMG_REASON_NONE, ID(m), NULL, "self/r", "2", 1);
	tc_ev_expect_prev(&ev[1], "1", 1);
	tc_ev_expect(&ev[2], SHMG_EV_JOINED, SHMG_REASON_NONE, ID(m), "cl", "self/g", "1", 1);
	tc_ev_expect(&ev[3], SHMG_EV_LEFT, SHMG_REASON_NORMAL, ID(m), "cl", "self/g", "1", 1);
	tc_ev_expect(&ev[4], SHMG_EV_UNREGISTERED, SHMG_REASON_NORMAL, ID(m), NULL, "self/r", "2",
		     1);
	ck_assert_int_eq(ev[0].pid, getpid());
	shmg_close(m);
}
END_TEST

START_TEST(test_overlapping_patterns_deliver_once)
{
	shmg_t *m = tc_open(tc_arena, NULL);
	shmg_t *w = tc_open(tc_arena, NULL);

	TC_EQ(shmg_monitor(m, SHMG_KEY("o/a/k"), NULL), 0);
	TC_EQ(shmg_monitor(m, SHMG_KEY("o/a/"), NULL), 0);
	TC_EQ(shmg_monitor(m, SHMG_KEY("o/"), NULL), 0);
	TC_EQ(shmg_monitor(m, NULL, 0, NULL), 0);
	TC_EQ(shmg_register(w, SHMG_KEY("o/a/k"), "x", 1, NULL), 0);
	TC_EQ(shmg_join(w, SHMG_KEY("o/a/k"), "y", 1, NULL), 0);
	TC_EQ(tc_ev_drain(m, ev, CAP), 2);
	tc_ev_expect(&ev[0], SHMG_EV_REGISTERED, SHMG_REASON_NONE, ID(w), NULL, "o/a/k", "x", 1);
	tc_ev_expect(&ev[1], SHMG_EV_JOINED, SHMG_REASON_NONE, ID(w), NULL, "o/a/k", "y", 1);
	/* Closing w: one batch, each event once. */
	shmg_id_t wid = shmg_self(w);
	TC_EQ(shmg_close(w), 0);
	TC_EQ(tc_ev_drain(m, ev, CAP), 2);
	tc_ev_expect_one_batch(ev, 2);
	tc_ev_expect(&ev[0], SHMG_EV_UNREGISTERED, SHMG_REASON_NORMAL, wid, NULL, "o/a/k", "x", 1);
	tc_ev_expect(&ev[1], SHMG_EV_LEFT, SHMG_REASON_NORMAL, wid, NULL, "o/a/k", "y", 1);
	shmg_close(m);
}
END_TEST

START_TEST(test_double_monitor_and_demonitor)
{
	shmg_t *m = tc_open(tc_arena, NULL);
	shmg_t *w = tc_open(tc_arena, NULL);
	struct shmg_info i1, i2;

	TC_EQ(shmg_monitor(m, SHMG_KEY("dm/k"), NULL), 0);
	TC_EQ(shmg_info(m, &i1), 0);
	TC_EQ(shmg_monitor(m, SHMG_KEY("dm/k"), NULL), 0);
	TC_EQ(shmg_info(m, &i2), 0);
	ck_assert_uint_eq(i1.pages_used, i2.pages_used);
	TC_EQ(shmg_register(w, SHMG_KEY("dm/k"), "1", 1, NULL), 0);
	TC_EQ(tc_ev_drain(m, ev, CAP), 1);
	/* Twice monitored is one monitor: one demonitor ends it. */
	TC_EQ(shmg_demonitor(m, SHMG_KEY("dm/k"), NULL), 0);
	TC_EQ(shmg_register(w, SHMG_KEY("dm/k"), "2", 1, NULL), 0);
	tc_ev_expect_empty(m, "after demonitor");
	TC_EQ(shmg_demonitor(m, SHMG_KEY("dm/k"), NULL), 0);

	/* Demonitor of a pattern never monitored (or of another endpoint's). */
	TC_EQ(shmg_demonitor(m, SHMG_KEY("never"), NULL), 0);
	TC_EQ(shmg_demonitor(m, SHMG_KEY("never/"), NULL), 0);
	TC_EQ(shmg_demonitor(m, NULL, 0, NULL), 0);
	TC_EQ(shmg_demonitor(m, NULL, 0, &(struct shmg_opts){ .cluster = "nocl" }), 0);
	TC_EQ(shmg_monitor(w, SHMG_KEY("dm/"), NULL), 0);
	TC_EQ(shmg_demonitor(m, SHMG_KEY("dm/"), NULL), 0);
	TC_EQ(shmg_register(w, SHMG_KEY("dm/k"), "3", 1, NULL), 0);
	TC_EQ(tc_ev_drain(w, ev, CAP), 1); /* w's own monitor is untouched */
	tc_ev_expect_prev(&ev[0], "2", 1);

	/* Demonitoring one pattern leaves the others. */
	TC_EQ(shmg_monitor(m, SHMG_KEY("dm/"), NULL), 0);
	TC_EQ(shmg_monitor(m, NULL, 0, NULL), 0);
	TC_EQ(shmg_demonitor(m, SHMG_KEY("dm/"), NULL), 0);
	TC_EQ(shmg_register(w, SHMG_KEY("dm/k"), "4", 1, NULL), 0);
	TC_EQ(tc_ev_drain(m, ev, CAP), 1);
	TC_EQ(shmg_demonitor(m, NULL, 0, NULL), 0);
	TC_EQ(shmg_register(w, SHMG_KEY("dm/k"), "5", 1, NULL), 0);
	tc_ev_expect_empty(m, "after every demonitor");
	TC_EQ(shmg_close(m), 0);
	TC_ASSERT_CLEAN(w);
	shmg_close(w);
}
END_TEST

/* Demonitor frees what monitor took: after churn over the same patterns,
 * pages_used is back where it was (the first pass claims the pages each
 * shard keeps for the size class; later passes must claim nothing more). */
static void monitor_all_patterns(shmg_t *m, int demonitor_too)
{
	char pat[32];

	for (int i = 0; i < 50; i++) {
		snprintf(pat, sizeof(pat), "churn/%02d/", i);
		TC_EQ(shmg_monitor(m, SHMG_KEY(pat), NULL), 0);
		if (demonitor_too)
			TC_EQ(shmg_demonitor(m, SHMG_KEY(pat), NULL), 0);
	}
}

START_TEST(test_monitor_churn_leaks_nothing)
{
	shmg_t *m = tc_open(tc_arena, NULL);
	shmg_t *o = tc_open(tc_arena, NULL);
	struct shmg_info a, b;
	char pat[32];

	monitor_all_patterns(m, 1);
	TC_EQ(shmg_info(m, &a), 0);
	for (int round = 0; round < 200; round++) {
		monitor_all_patterns(m, 0);
		monitor_all_patterns(o, 0);
		for (int i = 0; i < 50; i++) {
			snprintf(pat, sizeof(pat), "churn/%02d/", i);
			TC_EQ(shmg_demonitor(m, SHMG_KEY(pat), NULL), 0);
			TC_EQ(shmg_demonitor(o, SHMG_KEY(pat), NULL), 0);
		}
	}
	TC_ASSERT_CLEAN(m);
	TC_EQ(shmg_info(m, &b), 0);
	ck_assert_msg(a.pages_used == b.pages_used, "pages_used %llu -> %llu after monitor churn",
		      (unsigned long long)a.pages_used, (unsigned long long)b.pages_used);
	shmg_close(o);
	shmg_close(m);
}
END_TEST

START_TEST(test_monitoring_and_membership_independent)
{
	shmg_t *m = tc_open(tc_arena, NULL);
	shmg_t *j = tc_open(tc_arena, NULL);
	shmg_t *w = tc_open(tc_arena, NULL);

	/* Monitoring does not make a member or a registration. */
	TC_EQ(shmg_monitor(m, SHMG_KEY("ind/g"), NULL), 0);
	TC_EQ(shmg_monitor(m, SHMG_KEY("ind/"), NULL), 0);
	TC_EQ(shmg_member_count(m, SHMG_KEY("ind/g"), NULL), 0);
	TC_EQ(shmg_member_count(m, SHMG_KEY("ind/"), NULL), 0);
	TC_EQ(shmg_lookup(m, SHMG_KEY("ind/g"), NULL, NULL, 0, NULL, NULL), -ENOENT);
	TC_EQ(shmg_registry_count(m, NULL), 0);
	long n = 0;
	TC_EQ(shmg_local_entries(m, tc_count_cb, &n), 0);
	TC_EQ(shmg_leave(m, SHMG_KEY("ind/g"), NULL), -ENOENT);
	TC_EQ(shmg_dispatch(w, SHMG_KEY("ind/g"), "msg", 3, NULL), 0);
	tc_ev_expect_empty(m, "a monitor is not a dispatch target");

	/* Joining does not monitor: j gets no events, not even its own. */
	TC_EQ(shmg_join(j, SHMG_KEY("ind/g"), "j", 1, NULL), 0);
	TC_EQ(shmg_register(j, SHMG_KEY("ind/r"), "j", 1, NULL), 0);
	TC_EQ(shmg_join(w, SHMG_KEY("ind/g"), "w", 1, NULL), 0);
	TC_EQ(shmg_leave(w, SHMG_KEY("ind/g"), NULL), 0);
	tc_ev_expect_empty(j, "a member is not a monitor");
	TC_EQ(tc_ev_drain(m, ev, CAP), 4);
	/* Leaving keeps the monitor; demonitoring keeps the membership. */
	TC_EQ(shmg_join(m, SHMG_KEY("ind/g"), "m", 1, NULL), 0);
	TC_EQ(shmg_leave(m, SHMG_KEY("ind/g"), NULL), 0);
	TC_EQ(tc_ev_drain(m, ev, CAP), 2);
	TC_EQ(shmg_demonitor(m, SHMG_KEY("ind/g"), NULL), 0);
	TC_EQ(shmg_demonitor(m, SHMG_KEY("ind/"), NULL), 0);
	TC_EQ(shmg_member_count(m, SHMG_KEY("ind/g"), NULL), 1);
	shmg_close(w);
	shmg_close(j);
	shmg_close(m);
}
END_TEST

/* ---- extract_meta ------------------------------------------------------ */

/* Keeps the first two bytes and upper-cases them. */
static ssize_t head2_upper(const void *meta, size_t len, void *out, size_t cap, void *arg)
{
	size_t n = len < 2 ? len : 2;
	const char *in = meta;
	char *o = out;

	(*(int *)arg)++;
	if (n > cap)
		return -ENOBUFS;
	for (size_t i = 0; i < n; i++)
		o[i] = (char)(in[i] >= 'a' && in[i] <= 'z' ? in[i] - 32 : in[i]);
	return (ssize_t)n;
}

START_TEST(test_extract_meta_on_events)
{
	shmg_t *m = tc_open(tc_arena, NULL);
	shmg_t *w = tc_open(tc_arena, NULL);
	int calls = 0;

	TC_EQ(shmg_set_extract_meta(m, head2_upper, &calls), 0);
	TC_EQ(shmg_monitor(m, SHMG_KEY("x/"), NULL), 0);
	TC_EQ(shmg_register(w, SHMG_KEY("x/r"), "abcdef", 6, NULL), 0);
	TC_EQ(shmg_register(w, SHMG_KEY("x/r"), "xyz", 3, NULL), 0);
	TC_EQ(shmg_join(w, SHMG_KEY("x/g"), "q", 1, NULL), 0);
	TC_EQ(shmg_join(w, SHMG_KEY("x/g"), "pqrs", 4, NULL), 0);
	TC_EQ(shmg_leave(w, SHMG_KEY("x/g"), NULL), 0);
	TC_EQ(tc_ev_drain(m, ev, CAP), 5);
	tc_ev_expect(&ev[0], SHMG_EV_REGISTERED, SHMG_REASON_NONE, ID(w), NULL, "x/r", "AB", 2);
	tc_ev_expect_prev(&ev[0], NULL, 0);
	tc_ev_expect(&ev[1], SHMG_EV_REGISTERED, SHMG_REASON_NONE, ID(w), NULL, "x/r", "XY", 2);
	tc_ev_expect_prev(&ev[1], "AB", 2);
	tc_ev_expect(&ev[2], SHMG_EV_JOINED, SHMG_REASON_NONE, ID(w), NULL, "x/g", "Q", 1);
	tc_ev_expect(&ev[3], SHMG_EV_JOINED, SHMG_REASON_NONE, ID(w), NULL, "x/g", "PQ", 2);
	tc_ev_expect_prev(&ev[3], "Q", 1);
	tc_ev_expect(&ev[4], SHMG_EV_LEFT, SHMG_REASON_NORMAL, ID(w), NULL, "x/g", "PQ", 2);
	ck_assert_int_ge(calls, 7);
	/* Another handle without extract_meta sees the stored bytes. */
	TC_EQ(shmg_monitor(w, SHMG_KEY("x/r"), NULL), 0);
	TC_EQ(shmg_register(w, SHMG_KEY("x/r"), "stored", 6, NULL), 0);
	TC_EQ(tc_ev_drain(w, ev, CAP), 1);
	tc_ev_expect(&ev[0], SHMG_EV_REGISTERED, SHMG_REASON_NONE, ID(w), NULL, "x/r", "stored", 6);
	tc_ev_expect_prev(&ev[0], "xyz", 3);
	/* Restoring the identity. */
	TC_EQ(tc_ev_drain(m, ev, CAP), 1);
	TC_EQ(shmg_set_extract_meta(m, NULL, NULL), 0);
	TC_EQ(shmg_register(w, SHMG_KEY("x/r"), "plain", 5, NULL), 0);
	TC_EQ(tc_ev_drain(m, ev, CAP), 1);
	tc_ev_expect(&ev[0], SHMG_EV_REGISTERED, SHMG_REASON_NONE, ID(w), NULL, "x/r", "plain", 5);
	tc_ev_expect_prev(&ev[0], "stored", 6);
	shmg_close(w);
	shmg_close(m);
}
END_TEST

static ssize_t failing_extract(const void *meta, size_t len, void *out, size_t cap, void *arg)
{
	(void)meta, (void)len, (void)out, (void)cap, (void)arg;
	return -EBADMSG;
}

/* An extract_meta error is returned by shmg_receive, and the events are not
 * lost: nothing is dropped silently (DESIGN.md section 5). */
START_TEST(test_extract_meta_error_loses_nothing)
{
	shmg_t *m = tc_open(tc_arena, NULL);
	shmg_t *w = tc_open(tc_arena, NULL);
	struct shmg_event e[4];

	TC_EQ(shmg_monitor(m, SHMG_KEY("xe"), NULL), 0);
	TC_EQ(shmg_register(w, SHMG_KEY("xe"), "meta", 4, NULL), 0);
	TC_EQ(shmg_set_extract_meta(m, failing_extract, NULL), 0);
	TC_EQ(shmg_receive(m, e, 4, 0), -EBADMSG);
	TC_EQ(shmg_set_extract_meta(m, NULL, NULL), 0);
	int n = tc_ev_drain(m, ev, CAP);
	ck_assert_msg(n == 1, "after a failed extract_meta the event is gone (%d events, "
			      "no overflow marker)", n);
	tc_ev_expect(&ev[0], SHMG_EV_REGISTERED, SHMG_REASON_NONE, ID(w), NULL, "xe", "meta", 4);
	shmg_close(w);
	shmg_close(m);
}
END_TEST

/* ---- batches ----------------------------------------------------------- */

START_TEST(test_batch_numbers)
{
	shmg_t *m = tc_open(tc_arena, NULL);
	shmg_t *w = tc_open(tc_arena, NULL);
	struct shmg_event e[8];

	TC_EQ(shmg_monitor(m, NULL, 0, NULL), 0);
	for (int i = 0; i < 6; i++) {
		char k[8];

		snprintf(k, sizeof(k), "b%d", i);
		TC_EQ(shmg_register(w, SHMG_KEY(k), "m", 1, NULL), 0);
	}
	/* Received one at a time or all at once, the batches are the same. */
	TC_EQ(shmg_receive(m, e, 1, 0), 1);
	tc_ev_copy(&ev[0], &e[0]);
	TC_EQ(shmg_receive(m, e, 2, 0), 2);
	tc_ev_copy(&ev[1], &e[0]);
	tc_ev_copy(&ev[2], &e[1]);
	TC_EQ(tc_ev_drain(m, ev + 3, CAP - 3), 3);
	for (int i = 0; i < 6; i++) {
		char k[8];

		snprintf(k, sizeof(k), "b%d", i);
		ck_assert_str_eq(ev[i].key, k);
		tc_ev_expect_single(&ev[i]);
		if (i)
			ck_assert_uint_gt(ev[i].batch, ev[i - 1].batch);
	}
	/* A close batch received in pieces keeps its number and ends once. */
	TC_EQ(shmg_join(w, SHMG_KEY("bg"), "m", 1, NULL), 0);
	TC_EQ(tc_ev_drain(m, ev, CAP), 1);
	shmg_id_t wid = shmg_self(w);
	TC_EQ(shmg_close(w), 0);
	int got = 0;
	for (;;) {
		int n = shmg_receive(m, e, 2, 0);

		ck_assert_int_ge(n, 0);
		if (!n)
			break;
		for (int i = 0; i < n; i++)
			tc_ev_copy(&ev[got++], &e[i]);
	}
	TC_EQ(got, 7);
	tc_ev_expect_one_batch(ev, 7);
	for (int i = 0; i < 6; i++)
		ck_assert_int_eq(ev[i].type, SHMG_EV_UNREGISTERED);
	tc_ev_expect(&ev[6], SHMG_EV_LEFT, SHMG_REASON_NORMAL, wid, NULL, "bg", "m", 1);
	shmg_close(m);
}
END_TEST

/* ---- overflow ---------------------------------------------------------- */

static struct shmg_config small_mailbox(void)
{
	struct shmg_config c = { 0 };

	/* Valid: mailbox_bytes >= 2 x the largest record + the header. */
	c.mailbox_bytes = 4096;
	c.key_max = 64;
	c.meta_max = 512;
	c.max_endpoints = 8;
	return c;
}

START_TEST(test_overflow_marker)
{
	struct shmg_config c = small_mailbox();
	shmg_t *m = tc_open(tc_arena, &c);
	shmg_t *w = tc_open(tc_arena, NULL);
	struct shmg_info in;
	enum { N = 300 };
	char k[16], meta[16];

	TC_EQ(shmg_info(m, &in), 0);
	ck_assert_uint_eq(in.mailbox_bytes, 4096);
	TC_EQ(shmg_monitor(m, NULL, 0, NULL), 0);
	for (int i = 0; i < N; i++) {
		snprintf(k, sizeof(k), "ov%03d", i);
		snprintf(meta, sizeof(meta), "%d", i);
		TC_EQ(shmg_register(w, SHMG_KEY(k), meta, strlen(meta), NULL), 0);
	}
	/* The events that fit, in order, then one marker counting the rest. */
	static struct tc_ev got[N + 2];
	int n = tc_ev_drain(m, got, N + 2);
	ck_assert_int_ge(n, 2);
	ck_assert_int_lt(n, N);
	int kept = n - 1;
	for (int i = 0; i < kept; i++) {
		snprintf(k, sizeof(k), "ov%03d", i);
		ck_assert_int_eq(got[i].type, SHMG_EV_REGISTERED);
		ck_assert_str_eq(got[i].key, k);
	}
	ck_assert_msg(got[kept].type == SHMG_EV_OVERFLOW, "last event: %s, expected overflow",
		      shmg_event_type_name(got[kept].type));
	ck_assert_uint_eq(got[kept].dropped, (uint64_t)(N - kept));
	ck_assert_int_eq(got[kept].batch_end, 1);

	/* Exactly one marker: nothing more now, later events come normally. */
	tc_ev_expect_empty(m, "after the overflow marker");
	TC_EQ(shmg_unregister(w, SHMG_KEY("ov000"), NULL), 0);
	TC_EQ(shmg_join(w, SHMG_KEY("ovg"), "j", 1, NULL), 0);
	TC_EQ(tc_ev_drain(m, got, N), 2);
	tc_ev_expect(&got[0], SHMG_EV_UNREGISTERED, SHMG_REASON_NORMAL, ID(w), NULL, "ov000", "0",
		     1);
	tc_ev_expect(&got[1], SHMG_EV_JOINED, SHMG_REASON_NONE, ID(w), NULL, "ovg", "j", 1);

	/* A second overflow counts from zero again; a batch (a close) is
	 * dropped whole, counted by its events. */
	for (int i = 0; i < N; i++) {
		snprintf(k, sizeof(k), "ov%03d", i);
		snprintf(meta, sizeof(meta), "u%d", i);
		TC_EQ(shmg_register(w, SHMG_KEY(k), meta, strlen(meta), NULL), 0);
	}
	TC_EQ(shmg_close(w), 0); /* N unregistered + 1 left, one batch */
	n = tc_ev_drain(m, got, N + 2);
	kept = n - 1;
	ck_assert_int_ge(kept, 1);
	ck_assert_int_eq(got[kept].type, SHMG_EV_OVERFLOW);
	ck_assert_uint_eq(got[kept].dropped, (uint64_t)(N + N + 1 - kept));
	for (int i = 0; i < kept; i++)
		ck_assert_int_eq(got[i].type, SHMG_EV_REGISTERED);
	tc_ev_expect_empty(m, "after the second marker");
	TC_ASSERT_CLEAN(m);
	shmg_close(m);
}
END_TEST

/* A process that watches two groups tells their events apart by group,
 * overflow markers included. */
START_TEST(test_event_names_its_group)
{
	struct shmg_config c = small_mailbox();
	const char *other = tc_new_name();
	shmg_t *a = tc_open(tc_arena, &c), *b = tc_open(other, NULL);
	struct shmg_event e[CAP];
	char k[16];
	int n;

	TC_EQ(shmg_monitor(a, NULL, 0, NULL), 0);
	TC_EQ(shmg_monitor(b, NULL, 0, NULL), 0);
	TC_EQ(shmg_register(a, SHMG_KEY("in-a"), NULL, 0, NULL), 0);
	TC_EQ(shmg_register(b, SHMG_KEY("in-b"), NULL, 0, NULL), 0);
	TC_EQ(shmg_receive(a, e, CAP, 0), 1);
	ck_assert_str_eq(e[0].group, tc_arena);
	TC_EQ(shmg_receive(b, e, CAP, 0), 1);
	ck_assert_str_eq(e[0].group, other);
	for (int i = 0; i < 300; i++) {
		snprintf(k, sizeof(k), "ov%03d", i);
		TC_EQ(shmg_register(a, SHMG_KEY(k), NULL, 0, NULL), 0);
	}
	while ((n = shmg_receive(a, e, CAP, 0)) > 0)
		for (int i = 0; i < n; i++)
			ck_assert_str_eq(e[i].group, tc_arena);
	ck_assert_int_eq(e[0].type, SHMG_EV_OVERFLOW);
	shmg_close(b);
	shmg_close(a);
}
END_TEST

/* Messages count towards the overflow too. */
START_TEST(test_overflow_with_messages)
{
	struct shmg_config c = small_mailbox();
	shmg_t *m = tc_open(tc_arena, &c);
	shmg_t *w = tc_open(tc_arena, NULL);
	enum { N = 200 };
	static struct tc_ev got[N + 2];

	TC_EQ(shmg_join(m, SHMG_KEY("ovm"), NULL, 0, NULL), 0);
	for (int i = 0; i < N; i++)
		TC_EQ(shmg_dispatch(w, SHMG_KEY("ovm"), "0123456789", 10, NULL), 1);
	int n = tc_ev_drain(m, got, N + 2);
	int kept = n - 1;
	ck_assert_int_ge(kept, 1);
	for (int i = 0; i < kept; i++)
		ck_assert_int_eq(got[i].type, SHMG_EV_MESSAGE);
	ck_assert_int_eq(got[kept].type, SHMG_EV_OVERFLOW);
	ck_assert_uint_eq(got[kept].dropped, (uint64_t)(N - kept));
	shmg_close(w);
	shmg_close(m);
}
END_TEST

/* ---- readiness and blocking receive ------------------------------------ */

static int poll_in(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int r = poll(&p, 1, timeout_ms);

	ck_assert_int_ge(r, 0);
	return r == 1 && (p.revents & POLLIN);
}

struct child_ctl {
	int go[2], done[2];
};
static struct child_ctl ctl;

/* Waits for a byte on go, then registers fd/k<byte>; repeats; ends on 'q'. */
static int registering_child(void *arg)
{
	shmg_t *h = NULL;
	char b, k[16];

	(void)arg;
	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 1;
	(void)!write(ctl.done[1], "o", 1);
	for (;;) {
		if (read(ctl.go[0], &b, 1) != 1 || b == 'q')
			break;
		snprintf(k, sizeof(k), "fd/k%c", b);
		if (shmg_register(h, SHMG_KEY(k), &b, 1, NULL) != 0)
			return 2;
		(void)!write(ctl.done[1], "d", 1);
	}
	shmg_close(h);
	return 0;
}

static pid_t start_registering_child(void)
{
	char b;

	ck_assert_int_eq(pipe(ctl.go), 0);
	ck_assert_int_eq(pipe(ctl.done), 0);
	pid_t pid = tc_fork(registering_child, NULL);
	TC_EQ(tc_read_full(ctl.done[0], &b, 1, 20000), 0);
	return pid;
}

/* A writer keeps its wakeup socket connected to the consumer it woke last:
 * one event to two consumers wakes both, and a consumer that closed and was
 * replaced in its slot (a new socket) is woken, not the old one's remains. */
START_TEST(test_fd_readiness_follows_consumers)
{
	shmg_t *w = tc_open(tc_arena, NULL);
	shmg_t *m[3] = { tc_open(tc_arena, NULL), tc_open(tc_arena, NULL), NULL };

	for (int i = 0; i < 2; i++)
		TC_EQ(shmg_monitor(m[i], SHMG_KEY("fd/"), NULL), 0);
	TC_EQ(shmg_register(w, SHMG_KEY("fd/a"), NULL, 0, NULL), 0);
	for (int i = 0; i < 2; i++) {
		ck_assert_msg(poll_in(shmg_fd(m[i]), 10000), "consumer %d not woken", i);
		TC_EQ(tc_ev_drain(m[i], ev, CAP), 1);
	}
	uint32_t slot = shmg_self(m[0]).slot;
	shmg_close(m[0]);
	m[0] = NULL;
	m[2] = tc_open(tc_arena, NULL);
	ck_assert_uint_eq(shmg_self(m[2]).slot, slot); /* the closed one's slot */
	TC_EQ(shmg_monitor(m[2], SHMG_KEY("fd/"), NULL), 0);
	for (int round = 0; round < 2; round++) {
		TC_EQ(shmg_register(w, SHMG_KEY(round ? "fd/c" : "fd/b"), NULL, 0, NULL), 0);
		for (int i = 1; i < 3; i++) {
			ck_assert_msg(poll_in(shmg_fd(m[i]), 10000), "consumer %d not woken", i);
			TC_EQ(tc_ev_drain(m[i], ev, CAP), 1);
			ck_assert(!poll_in(shmg_fd(m[i]), 0));
		}
	}
	shmg_close(m[1]);
	shmg_close(m[2]);
	shmg_close(w);
}
END_TEST

START_TEST(test_fd_readiness)
{
	shmg_t *m = tc_open(tc_arena, NULL);
	int fd = shmg_fd(m);
	char b;

	ck_assert_int_ge(fd, 0);
	TC_EQ(shmg_fd(m), fd); /* the same descriptor every time */
	TC_EQ(shmg_monitor(m, SHMG_KEY("fd/"), NULL), 0);
	pid_t pid = start_registering_child();
	ck_assert_int_eq(poll_in(fd, 0), 0);

	for (char c = '1'; c <= '3'; c++) {
		TC_EQ(tc_write_full(ctl.go[1], &c, 1), 0);
		TC_EQ(tc_read_full(ctl.done[0], &b, 1, 20000), 0);
		ck_assert_msg(poll_in(fd, 10000), "fd not readable after an event");
		int n = tc_ev_drain(m, ev, CAP);
		TC_EQ(n, 1);
		ck_assert_int_eq(ev[0].type, SHMG_EV_REGISTERED);
		ck_assert_int_eq(ev[0].meta[0], c);
		ck_assert_int_eq(ev[0].pid, pid);
		ck_assert_msg(!poll_in(fd, 0), "fd readable after draining the mailbox");
	}
	/* Two events before looking: readable; still readable after taking
	 * only one (records wait); quiet after draining. */
	for (char c = '4'; c <= '5'; c++) {
		TC_EQ(tc_write_full(ctl.go[1], &c, 1), 0);
		TC_EQ(tc_read_full(ctl.done[0], &b, 1, 20000), 0);
	}
	ck_assert(poll_in(fd, 10000));
	struct shmg_event e[1];
	TC_EQ(shmg_receive(m, e, 1, 0), 1);
	ck_assert_msg(poll_in(fd, 0), "fd not readable while an event waits");
	TC_EQ(tc_ev_drain(m, ev, CAP), 1);
	ck_assert(!poll_in(fd, 0));

	TC_EQ(tc_write_full(ctl.go[1], "q", 1), 0);
	TC_EQ(tc_wait_exit(pid, 10000), 0);
	shmg_close(m);
}
END_TEST

START_TEST(test_blocking_receive)
{
	shmg_t *m = tc_open(tc_arena, NULL);
	struct shmg_event e[4];
	char b;

	TC_EQ(shmg_monitor(m, SHMG_KEY("fd/"), NULL), 0);
	/* Empty: 0 after about the timeout (never earlier). */
	uint64_t t0 = tc_now_ms();
	TC_EQ(shmg_receive(m, e, 4, 60), 0);
	ck_assert_uint_ge(tc_now_ms() - t0, 55);
	TC_EQ(shmg_receive(m, e, 4, 0), 0);

	/* Wakes on an event another process produces. */
	pid_t pid = start_registering_child();
	TC_EQ(tc_write_full(ctl.go[1], "a", 1), 0);
	TC_EQ(shmg_receive(m, e, 4, 20000), 1);
	tc_ev_copy(&ev[0], &e[0]);
	ck_assert_str_eq(ev[0].key, "fd/ka");
	TC_EQ(tc_read_full(ctl.done[0], &b, 1, 20000), 0);
	/* And with no timeout at all (-1). */
	TC_EQ(tc_write_full(ctl.go[1], "b", 1), 0);
	TC_EQ(shmg_receive(m, e, 4, -1), 1);
	tc_ev_copy(&ev[0], &e[0]);
	ck_assert_str_eq(ev[0].key, "fd/kb");
	TC_EQ(tc_read_full(ctl.done[0], &b, 1, 20000), 0);
	/* Woken in a blocking receive, then waiting on the descriptor: the
	 * non-blocking receive that finds the ring empty re-arms for the fd. */
	for (char c = 'c'; c <= 'e'; c++) {
		char want[] = {'f', 'd', '/', 'k', c, 0};
		TC_EQ(shmg_receive(m, e, 4, 0), 0);
		TC_EQ(tc_write_full(ctl.go[1], &c, 1), 0);
		TC_EQ(tc_read_full(ctl.done[0], &b, 1, 20000), 0);
		ck_assert_msg(poll_in(shmg_fd(m), 10000), "fd not readable after %c", c);
		TC_EQ(shmg_receive(m, e, 4, 0), 1);
		tc_ev_copy(&ev[0], &e[0]);
		ck_assert_str_eq(ev[0].key, want);
		TC_EQ(shmg_receive(m, e, 4, 0), 0);
		/* Asleep in the next receive when the event comes. */
		c++;
		want[4] = c;
		TC_EQ(tc_write_full(ctl.go[1], &c, 1), 0);
		TC_EQ(shmg_receive(m, e, 4, -1), 1);
		tc_ev_copy(&ev[0], &e[0]);
		ck_assert_str_eq(ev[0].key, want);
		TC_EQ(tc_read_full(ctl.done[0], &b, 1, 20000), 0);
	}
	/* max 0 returns at once, events may be NULL. */
	TC_EQ(shmg_receive(m, NULL, 0, 0), 0);
	TC_EQ(shmg_receive(m, NULL, 0, 50), 0);

	TC_EQ(tc_write_full(ctl.go[1], "q", 1), 0);
	TC_EQ(tc_wait_exit(pid, 10000), 0);
	/* The child's close: six unregistered events, one batch. */
	TC_EQ(tc_ev_recv_n(m, ev, 6, 10000), 6);
	tc_ev_expect_one_batch(ev, 6);
	shmg_close(m);
}
END_TEST

/* ---- invalid input ----------------------------------------------------- */

START_TEST(test_invalid_patterns)
{
	struct shmg_config c = { 0 };
	c.key_max = 16;
	shmg_t *m = tc_open(tc_arena, &c);
	char big[17];

	memset(big, 'k', sizeof(big));
	TC_EQ(shmg_monitor(m, "", 0, NULL), -EINVAL);
	TC_EQ(shmg_monitor(m, "abc", 0, NULL), -EINVAL);
	TC_EQ(shmg_monitor(m, "a\0b", 3, NULL), -EINVAL);
	TC_EQ(shmg_monitor(m, big, 17, NULL), -EINVAL);
	TC_EQ(shmg_monitor(m, big, 16, NULL), 0);
	/* NULL means "every key" only without a length. */
	TC_EQ(shmg_monitor(m, NULL, 3, NULL), -EINVAL);
	TC_EQ(shmg_demonitor(m, "", 0, NULL), -EINVAL);
	TC_EQ(shmg_demonitor(m, "a\0b", 3, NULL), -EINVAL);
	TC_EQ(shmg_demonitor(m, big, 17, NULL), -EINVAL);
	TC_EQ(shmg_demonitor(m, NULL, 3, NULL), -EINVAL);
	TC_EQ(shmg_demonitor(m, big, 16, NULL), 0);

	const char *bad_clusters[] = { "", "has space", "tab\tx", "\x7f",
				       "0123456789012345678901234567890123456789012345678901234567890123" };
	for (size_t i = 0; i < sizeof(bad_clusters) / sizeof(bad_clusters[0]); i++) {
		struct shmg_opts o = { .cluster = bad_clusters[i] };

		TC_EQ(shmg_monitor(m, SHMG_KEY("k"), &o), -EINVAL);
		TC_EQ(shmg_monitor(m, NULL, 0, &o), -EINVAL);
		TC_EQ(shmg_demonitor(m, SHMG_KEY("k"), &o), -EINVAL);
		TC_EQ(shmg_dispatch(m, SHMG_KEY("k"), "x", 1, &o), -EINVAL);
		TC_EQ(shmg_dispatch_local(m, SHMG_KEY("k"), "x", 1, &o), -EINVAL);
	}
	/* 63 bytes is the longest valid name. */
	struct shmg_opts ok = { .cluster = "012345678901234567890123456789012345678901234567890123456789012" };
	TC_EQ(shmg_monitor(m, SHMG_KEY("k"), &ok), 0);

	TC_EQ(shmg_receive(m, NULL, 1, 0), -EINVAL);
	TC_EQ(shmg_receive(m, NULL, 4, 10), -EINVAL);
	/* Nothing was registered by the refused calls. */
	shmg_t *w = tc_open(tc_arena, NULL);
	TC_EQ(shmg_register(w, SHMG_KEY("abc"), "x", 1, NULL), 0);
	tc_ev_expect_empty(m, "refused monitors must not monitor");
	TC_ASSERT_CLEAN(m);
	shmg_close(w);
	shmg_close(m);
}
END_TEST

START_TEST(test_closed_handle)
{
	shmg_t *keep = tc_open(tc_arena, NULL);
	shmg_t *h = tc_open(tc_arena, NULL);
	struct shmg_event e[2];

	TC_EQ(shmg_monitor(h, NULL, 0, NULL), 0);
	TC_EQ(shmg_close(h), 0);
	TC_EQ(shmg_monitor(h, SHMG_KEY("k"), NULL), -EBADF);
	TC_EQ(shmg_demonitor(h, SHMG_KEY("k"), NULL), -EBADF);
	TC_EQ(shmg_receive(h, e, 2, 0), -EBADF);
	TC_EQ(shmg_receive(h, e, 2, 100), -EBADF);
	TC_EQ(shmg_fd(h), -EBADF);
	TC_EQ(shmg_dispatch(h, SHMG_KEY("k"), "m", 1, NULL), -EBADF);
	TC_EQ(shmg_dispatch_local(h, SHMG_KEY("k"), "m", 1, NULL), -EBADF);
	TC_EQ(shmg_reaper_enable(h), -EBADF);
	TC_EQ(shmg_reaper_fd(h), -EBADF);
	TC_EQ(shmg_reaper_dispatch(h), -EBADF);
	TC_EQ(shmg_reaper_disable(h), -EBADF);
	TC_EQ(shmg_monitor(NULL, SHMG_KEY("k"), NULL), -EBADF);
	TC_EQ(shmg_demonitor(NULL, SHMG_KEY("k"), NULL), -EBADF);
	TC_EQ(shmg_receive(NULL, e, 2, 0), -EBADF);
	TC_EQ(shmg_fd(NULL), -EBADF);
	TC_EQ(shmg_dispatch(NULL, SHMG_KEY("k"), "m", 1, NULL), -EBADF);
	TC_EQ(shmg_dispatch_local(NULL, SHMG_KEY("k"), "m", 1, NULL), -EBADF);
	TC_EQ(shmg_reaper_enable(NULL), -EBADF);
	TC_EQ(shmg_reaper_fd(NULL), -EBADF);
	TC_EQ(shmg_reaper_dispatch(NULL), -EBADF);
	TC_EQ(shmg_reaper_disable(NULL), -EBADF);
	/* Its monitor died with it. */
	TC_EQ(shmg_register(keep, SHMG_KEY("k"), "m", 1, NULL), 0);
	TC_ASSERT_CLEAN(keep);
	shmg_close(keep);
}
END_TEST

struct fork_res {
	long rc[16];
	int n;
};
static shmg_t *inherited;
static struct fork_res *fres;

static int echild_child(void *arg)
{
	struct shmg_event e[2];
	int i = 0;

	(void)arg;
	fres->rc[i++] = shmg_monitor(inherited, SHMG_KEY("k"), NULL);
	fres->rc[i++] = shmg_demonitor(inherited, SHMG_KEY("fk"), NULL);
	fres->rc[i++] = shmg_receive(inherited, e, 2, 0);
	fres->rc[i++] = shmg_receive(inherited, e, 2, 50);
	fres->rc[i++] = shmg_fd(inherited);
	fres->rc[i++] = shmg_dispatch(inherited, SHMG_KEY("fk"), "m", 1, NULL);
	fres->rc[i++] = shmg_dispatch_local(inherited, SHMG_KEY("fk"), "m", 1, NULL);
	fres->rc[i++] = shmg_reaper_enable(inherited);
	fres->rc[i++] = shmg_reaper_fd(inherited);
	fres->rc[i++] = shmg_reaper_dispatch(inherited);
	fres->rc[i++] = shmg_reaper_disable(inherited);
	fres->n = i;
	return 0;
}

START_TEST(test_forked_child_echild)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	shmg_t *w = tc_open(tc_arena, NULL);

	TC_EQ(shmg_monitor(h, SHMG_KEY("fk"), NULL), 0);
	TC_EQ(shmg_join(h, SHMG_KEY("fk"), NULL, 0, NULL), 0);
	TC_EQ(shmg_reaper_enable(h), 1);
	TC_EQ(tc_ev_drain(h, ev, CAP), 1);
	inherited = h;
	fres = tc_shared_alloc(sizeof(*fres));
	pid_t pid = tc_fork(echild_child, NULL);
	TC_EQ(tc_wait_exit(pid, 10000), 0);
	TC_EQ(fres->n, 11);
	for (int i = 0; i < fres->n; i++)
		ck_assert_msg(fres->rc[i] == -ECHILD, "call %d in the child: %ld (%s)", i,
			      fres->rc[i], shmg_strerror((int)fres->rc[i]));
	/* The parent's handle is intact: monitor, mailbox, reaper. */
	TC_EQ(shmg_register(w, SHMG_KEY("fk"), "p", 1, NULL), 0);
	TC_EQ(tc_ev_drain(h, ev, CAP), 1);
	tc_ev_expect(&ev[0], SHMG_EV_REGISTERED, SHMG_REASON_NONE, ID(w), NULL, "fk", "p", 1);
	/* h is a member, w the registered endpoint: two targets. */
	TC_EQ(shmg_dispatch(w, SHMG_KEY("fk"), "hi", 2, NULL), 2);
	TC_EQ(tc_ev_drain(h, ev, CAP), 1);
	ck_assert_int_eq(ev[0].type, SHMG_EV_MESSAGE);
	struct shmg_info in;
	TC_EQ(shmg_info(h, &in), 0);
	ck_assert_uint_eq(in.reaper_pid, (uint32_t)getpid());
	ck_assert_int_ge(shmg_reaper_dispatch(h), 0);
	shmg_close(w);
	shmg_close(h);
}
END_TEST

static Suite *events_suite(void)
{
	Suite *s = suite_create("events");
	TCase *tc = tc_case(s, "types", 20);

	tcase_add_test(tc, test_registered_new_update_unregistered);
	tcase_add_test(tc, test_joined_new_update_left);
	tcase_add_test(tc, test_left_normal);
	tcase_add_test(tc, test_close_is_one_normal_batch);
	tcase_add_test(tc, test_monitor_dies_with_endpoint);
	tcase_add_test(tc, test_cluster_disconnect_reason);
	tcase_add_test(tc, test_lazy_reap_on_register_is_exit);
	tcase_add_test(tc, test_lazy_reap_death_is_one_batch);

	tc = tc_case(s, "routing", 20);
	tcase_add_test(tc, test_exact_prefix_all_routing);
	tcase_add_test(tc, test_cluster_scoping);
	tcase_add_test(tc, test_self_events);
	tcase_add_test(tc, test_overlapping_patterns_deliver_once);
	tcase_add_test(tc, test_double_monitor_and_demonitor);
	tcase_add_test(tc, test_monitor_churn_leaks_nothing);
	tcase_add_test(tc, test_monitoring_and_membership_independent);

	tc = tc_case(s, "delivery", 20);
	tcase_add_test(tc, test_extract_meta_on_events);
	tcase_add_test(tc, test_extract_meta_error_loses_nothing);
	tcase_add_test(tc, test_batch_numbers);
	tcase_add_test(tc, test_overflow_marker);
	tcase_add_test(tc, test_overflow_with_messages);
	tcase_add_test(tc, test_event_names_its_group);
	tcase_add_test(tc, test_fd_readiness);
	tcase_add_test(tc, test_fd_readiness_follows_consumers);
	tcase_add_test(tc, test_blocking_receive);

	tc = tc_case(s, "errors", 20);
	tcase_add_test(tc, test_invalid_patterns);
	tcase_add_test(tc, test_closed_handle);
	tcase_add_test(tc, test_forked_child_echild);
	return s;
}

int main(void)
{
	return tc_run(events_suite());
}
