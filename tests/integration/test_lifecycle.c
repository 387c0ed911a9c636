/* SPDX-License-Identifier: MIT */
/*
 * Lifecycle across processes: a member SIGKILLed in a forked child is reaped
 * by an in-process reaper and reported to a monitor in another process as one
 * batch with reason exit; reaper failover; per-key event order under
 * concurrent writers; dispatch between processes.
 */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tc.h"
#include "tc_events.h"

#define CAP 256

static struct tc_ev ev[CAP];

/* ---- a victim that registers and joins, then waits to be killed -------- */

#define VREGS 3
#define VJOINS 2

struct victim {
	shmg_id_t id;
	long rc;
	int reaper_rc;
};

static struct victim *vic;
static int vpipe[2];

static int victim_main(void *arg)
{
	int idx = (int)(intptr_t)arg & 0xff;
	int as_reaper = (int)(intptr_t)arg & 0x100;
	shmg_t *h = NULL;
	char key[32];
	long rc;

	if ((rc = shmg_open(tc_arena, NULL, &h)) != 0)
		goto out;
	vic[idx].id = shmg_self(h);
	if (as_reaper)
		vic[idx].reaper_rc = shmg_reaper_enable(h);
	for (int i = 0; i < VREGS && rc == 0; i++) {
		snprintf(key, sizeof(key), "lc/%d/r%d", idx, i);
		rc = shmg_register(h, SHMG_KEY(key), "v", 1, NULL);
	}
	for (int i = 0; i < VJOINS && rc == 0; i++) {
		snprintf(key, sizeof(key), "lc/g%d", i);
		rc = shmg_join(h, SHMG_KEY(key), "v", 1, NULL);
	}
	if (rc == 0)
		rc = shmg_monitor(h, NULL, 0, NULL);
out:
	vic[idx].rc = rc;
	(void)!write(vpipe[1], "r", 1);
	for (;;) {
		/* A reaper must be driven; the others just wait. */
		if (as_reaper && h) {
			int t = shmg_reaper_dispatch(h);
			struct pollfd p = { .fd = shmg_reaper_fd(h), .events = POLLIN };
			(void)poll(&p, 1, t > 0 ? t : 100);
		} else {
			pause();
		}
	}
	return 0;
}

static pid_t start_victim(int idx, int as_reaper)
{
	char b;
	pid_t pid = tc_fork(victim_main, (void *)(intptr_t)(idx | (as_reaper ? 0x100 : 0)));

	TC_EQ(tc_read_full(vpipe[0], &b, 1, 20000), 0);
	ck_assert_msg(vic[idx].rc == 0, "victim %d: %ld (%s)", idx, vic[idx].rc,
		      shmg_strerror((int)vic[idx].rc));
	return pid;
}

static void setup_victims(void)
{
	vic = tc_shared_alloc(8 * sizeof(*vic));
	ck_assert_int_eq(pipe(vpipe), 0);
}

static void kill_and_wait(pid_t pid)
{
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	TC_EQ(tc_wait_exit(pid, 10000), TC_KILLED(SIGKILL));
}

/* Drives h's reaper and receives until `want` events of `who` arrived (or
 * 10 s passed).  Returns the number of events copied to out. */
static int reap_and_receive(shmg_t *h, struct tc_ev *out, int cap, int want)
{
	uint64_t deadline = tc_now_ms() + 10000;
	struct shmg_event e[16];
	int got = 0;

	while (got < want && tc_now_ms() < deadline) {
		int t = shmg_reaper_dispatch(h);

		ck_assert_msg(t >= 0, "shmg_reaper_dispatch = %d (%s)", t, shmg_strerror(t));
		int n = shmg_receive(h, e, 16, 0);
		ck_assert_int_ge(n, 0);
		for (int i = 0; i < n; i++) {
			ck_assert_int_lt(got, cap);
			tc_ev_copy(&out[got++], &e[i]);
		}
		if (n)
			continue;
		struct pollfd p[2] = { { .fd = shmg_reaper_fd(h), .events = POLLIN },
				       { .fd = shmg_fd(h), .events = POLLIN } };
		(void)poll(p, 2, t < 100 ? t : 100);
	}
	return got;
}

/* The events of the victim's death: one batch, its registrations then its
 * memberships, reason exit. */
static void expect_death_batch(const struct tc_ev *e, int n, const struct victim *v, pid_t pid)
{
	ck_assert_msg(n == VREGS + VJOINS, "%d events for the death, expected %d", n,
		      VREGS + VJOINS);
	tc_ev_expect_one_batch(e, n);
	for (int i = 0; i < n; i++) {
		ck_assert_int_eq(e[i].type, i < VREGS ? SHMG_EV_UNREGISTERED : SHMG_EV_LEFT);
		ck_assert_int_eq(e[i].reason, SHMG_REASON_EXIT);
		ck_assert(shmg_id_equal(e[i].id, v->id));
		ck_assert_int_eq(e[i].pid, pid);
		ck_assert_uint_eq(e[i].meta_len, 1);
	}
}

START_TEST(test_kill_in_process_reaper)
{
	struct shmg_config c = { 0 };
	c.max_endpoints = 2;
	setup_victims();
	shmg_t *h = tc_open(tc_arena, &c);
	struct shmg_info in;

	TC_EQ(shmg_reaper_enable(h), 1);
	ck_assert_int_ge(shmg_reaper_fd(h), 0);
	TC_EQ(shmg_info(h, &in), 0);
	ck_assert_uint_eq(in.reaper_pid, (uint32_t)getpid());
	TC_EQ(shmg_monitor(h, SHMG_KEY("lc/"), NULL), 0);
	pid_t pid = start_victim(0, 0);
	TC_EQ(tc_ev_recv_n(h, ev, VREGS + VJOINS, 10000), VREGS + VJOINS);
	TC_EQ(shmg_member_count(h, SHMG_KEY("lc/"), NULL), VJOINS);
	/* Let the reaper see the new endpoint before it dies (not required:
	 * the periodic sweep finds it too). */
	ck_assert_int_ge(shmg_reaper_dispatch(h), 0);

	kill_and_wait(pid);
	int n = reap_and_receive(h, ev, CAP, VREGS + VJOINS);
	expect_death_batch(ev, n, &vic[0], pid);
	tc_ev_expect_empty(h, "after the death batch");

	char key[32];
	for (int i = 0; i < VREGS; i++) {
		snprintf(key, sizeof(key), "lc/0/r%d", i);
		TC_EQ(shmg_lookup(h, SHMG_KEY(key), NULL, NULL, 0, NULL, NULL), -ENOENT);
	}
	TC_EQ(shmg_member_count(h, SHMG_KEY("lc/"), NULL), 0);
	TC_EQ(shmg_member_ids(h, SHMG_KEY("lc/g0"), NULL, 0, NULL), 0);
	TC_EQ(shmg_registry_count(h, NULL), 0);
	TC_EQ(shmg_info(h, &in), 0);
	ck_assert_uint_eq(in.endpoints_live, 1);
	TC_EQ(shmg_reap(h), 0); /* nothing left for anyone */
	TC_ASSERT_CLEAN(h);

	/* The slot is reused (only two exist) with an empty mailbox and none
	 * of the dead endpoint's monitors. */
	shmg_t *again = tc_open(tc_arena, NULL);
	ck_assert_uint_eq(shmg_self(again).slot, vic[0].id.slot);
	ck_assert_uint_ne(shmg_self(again).gen, vic[0].id.gen);
	TC_EQ(shmg_register(h, SHMG_KEY("lc/0/r0"), "new", 3, NULL), 0);
	TC_EQ(shmg_join(h, SHMG_KEY("lc/g0"), "new", 3, NULL), 0);
	tc_ev_expect_empty(again, "new owner of a dead monitor's slot");
	TC_EQ(shmg_register(again, SHMG_KEY("lc/0/r1"), "x", 1, NULL), 0);
	TC_EQ(tc_ev_drain(h, ev, CAP), 3);
	tc_ev_expect(&ev[2], SHMG_EV_REGISTERED, SHMG_REASON_NONE, shmg_self(again), NULL,
		     "lc/0/r1", "x", 1);
	TC_EQ(shmg_close(again), 0);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

/* Several deaths at once: each is its own batch, none mixed. */
START_TEST(test_several_deaths_separate_batches)
{
	setup_victims();
	shmg_t *h = tc_open(tc_arena, NULL);
	pid_t pids[3];

	TC_EQ(shmg_reaper_enable(h), 1);
	TC_EQ(shmg_monitor(h, NULL, 0, NULL), 0);
	for (int i = 0; i < 3; i++)
		pids[i] = start_victim(i, 0);
	TC_EQ(tc_ev_recv_n(h, ev, 3 * (VREGS + VJOINS), 10000), 3 * (VREGS + VJOINS));
	for (int i = 0; i < 3; i++)
		kill_and_wait(pids[i]);
	int n = reap_and_receive(h, ev, CAP, 3 * (VREGS + VJOINS));
	TC_EQ(n, 3 * (VREGS + VJOINS));
	for (int b = 0; b < 3; b++) {
		const struct tc_ev *e = &ev[b * (VREGS + VJOINS)];
		int idx = -1;

		for (int i = 0; i < 3; i++)
			if (shmg_id_equal(e[0].id, vic[i].id))
				idx = i;
		ck_assert_int_ge(idx, 0);
		expect_death_batch(e, VREGS + VJOINS, &vic[idx], pids[idx]);
	}
	TC_EQ(shmg_member_count(h, SHMG_KEY("lc/"), NULL), 0);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

/* A monitor in a process that is not the reaper gets the death too. */
START_TEST(test_monitor_in_other_process_than_reaper)
{
	setup_victims();
	shmg_t *h = tc_open(tc_arena, NULL);

	TC_EQ(shmg_monitor(h, SHMG_KEY("lc/"), NULL), 0);
	pid_t reaper = start_victim(1, 1); /* a victim that hosts the reaper */
	TC_EQ(vic[1].reaper_rc, 1);
	pid_t pid = start_victim(0, 0);
	TC_EQ(tc_ev_recv_n(h, ev, 2 * (VREGS + VJOINS), 10000), 2 * (VREGS + VJOINS));
	kill_and_wait(pid);
	int n = tc_ev_recv_n(h, ev, VREGS + VJOINS, 10000);
	expect_death_batch(ev, n, &vic[0], pid);
	kill_and_wait(reaper);
	shmg_close(h);
}
END_TEST

START_TEST(test_reaper_failover)
{
	setup_victims();
	shmg_t *b = tc_open(tc_arena, NULL);
	struct shmg_info in;

	/* A is elected; B (this process) is a candidate. */
	pid_t a = start_victim(0, 1);
	TC_EQ(vic[0].reaper_rc, 1);
	TC_EQ(shmg_reaper_enable(b), 0);
	TC_EQ(shmg_info(b, &in), 0);
	ck_assert_uint_eq(in.reaper_pid, (uint32_t)a);
	int t = shmg_reaper_dispatch(b);
	ck_assert_int_gt(t, 0); /* a candidate asks to be called again */
	TC_EQ(shmg_info(b, &in), 0);
	ck_assert_uint_eq(in.reaper_pid, (uint32_t)a);
	TC_EQ(shmg_monitor(b, SHMG_KEY("lc/"), NULL), 0);

	kill_and_wait(a);
	ck_assert_int_ge(shmg_reaper_dispatch(b), 0);
	TC_EQ(shmg_info(b, &in), 0);
	ck_assert_uint_eq(in.reaper_pid, (uint32_t)getpid());
	/* A's own death is reaped by the new reaper. */
	int n = reap_and_receive(b, ev, CAP, VREGS + VJOINS);
	expect_death_batch(ev, n, &vic[0], a);

	/* And a later death. */
	pid_t c = start_victim(1, 0);
	TC_EQ(tc_ev_recv_n(b, ev, VREGS + VJOINS, 10000), VREGS + VJOINS);
	ck_assert_int_ge(shmg_reaper_dispatch(b), 0);
	kill_and_wait(c);
	n = reap_and_receive(b, ev, CAP, VREGS + VJOINS);
	expect_death_batch(ev, n, &vic[1], c);
	TC_EQ(shmg_member_count(b, SHMG_KEY("lc/"), NULL), 0);
	TC_EQ(shmg_registry_count(b, NULL), 0);

	/* Disabling gives the role up; another candidate takes it. */
	shmg_t *d = tc_open(tc_arena, NULL);
	TC_EQ(shmg_reaper_enable(d), 0);
	TC_EQ(shmg_reaper_disable(b), 0);
	TC_EQ(shmg_reaper_fd(b), -EPERM);
	TC_EQ(shmg_reaper_dispatch(b), -EPERM);
	ck_assert_int_ge(shmg_reaper_dispatch(d), 0);
	TC_EQ(shmg_info(d, &in), 0);
	ck_assert_uint_eq(in.reaper_pid, (uint32_t)getpid());
	TC_EQ(shmg_close(d), 0);
	TC_EQ(shmg_info(b, &in), 0);
	ck_assert_uint_eq(in.reaper_pid, 0);
	TC_ASSERT_CLEAN(b);
	shmg_close(b);
}
END_TEST

/* ---- ordering per key under concurrent writers ------------------------- */

#define OWRITERS 3
#define OKEYS 3
#define OITERS 1500

struct ostats {
	shmg_id_t id[OWRITERS];
	long events[OWRITERS]; /* events each writer's successful calls produce */
	long rc[OWRITERS];
	int ready;
};
static struct ostats *ost;

/* Repeatedly registers (new or update) / unregisters and joins / leaves
 * the same few keys, meta = a sequence number that only grows. */
static int order_writer(void *arg)
{
	int w = (int)(intptr_t)arg;
	shmg_t *h = NULL;
	char key[16];
	uint32_t seq = 0;
	unsigned rnd = (unsigned)w * 2654435761u + 1;
	long rc;

	if ((rc = shmg_open(tc_arena, NULL, &h)) != 0)
		goto out;
	ost->id[w] = shmg_self(h);
	__atomic_add_fetch(&ost->ready, 1, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&ost->ready, __ATOMIC_SEQ_CST) < OWRITERS)
		;
	for (int i = 0; i < OITERS; i++) {
		rnd = rnd * 1103515245u + 12345u;
		int k = (int)((rnd >> 16) % OKEYS), op = (int)((rnd >> 8) % 4);
		seq++;
		if (op < 2) {
			snprintf(key, sizeof(key), "ord/r%d", k);
			if (op == 0) {
				rc = shmg_register(h, SHMG_KEY(key), &seq, sizeof(seq), NULL);
				if (rc == 0)
					ost->events[w]++;
				else if (rc != -EEXIST)
					goto out;
			} else {
				rc = shmg_unregister(h, SHMG_KEY(key), NULL);
				if (rc == 0)
					ost->events[w]++;
				else if (rc != -ENOENT && rc != -EPERM)
					goto out;
			}
		} else {
			snprintf(key, sizeof(key), "ord/g%d", k);
			if (op == 2) {
				rc = shmg_join(h, SHMG_KEY(key), &seq, sizeof(seq), NULL);
				if (rc != 0)
					goto out;
				ost->events[w]++;
			} else {
				rc = shmg_leave(h, SHMG_KEY(key), NULL);
				if (rc == 0)
					ost->events[w]++;
				else if (rc != -ENOENT)
					goto out;
			}
		}
	}
	rc = 0;
out:
	ost->rc[w] = rc;
	/* Leave the rest to close: one batch, reason normal. */
	shmg_close(h);
	return rc == 0 ? 0 : 1;
}

struct keystate {
	int holder;          /* registry: writer index holding it, -1 none */
	uint32_t last[OWRITERS];
	int member[OWRITERS];
	uint32_t mlast[OWRITERS];
};

static int writer_of(shmg_id_t id)
{
	for (int w = 0; w < OWRITERS; w++)
		if (shmg_id_equal(id, ost->id[w]))
			return w;
	return -1;
}

static uint32_t seq_of(const struct tc_ev *e, const unsigned char *p)
{
	uint32_t s;

	ck_assert_uint_eq(e->meta_len, sizeof(s));
	memcpy(&s, p, sizeof(s));
	return s;
}

START_TEST(test_order_per_key_concurrent_writers)
{
	struct shmg_config c = { 0 };
	c.mailbox_bytes = 4u << 20; /* the monitor keeps up; no overflow */
	c.max_endpoints = 8;
	shmg_t *m = tc_open(tc_arena, &c);
	struct keystate ks[2][OKEYS]; /* [0] registry keys, [1] groups */
	pid_t pids[OWRITERS];
	struct shmg_event e[64];
	long seen[OWRITERS] = { 0 };
	int exited = 0;

	memset(ks, 0, sizeof(ks));
	for (int k = 0; k < OKEYS; k++)
		ks[0][k].holder = -1;
	ost = tc_shared_alloc(sizeof(*ost));
	TC_EQ(shmg_monitor(m, SHMG_KEY("ord/"), NULL), 0);
	for (int w = 0; w < OWRITERS; w++)
		pids[w] = tc_fork(order_writer, (void *)(intptr_t)w);

	uint64_t deadline = tc_now_ms() + 60000;
	int done[OWRITERS] = { 0 };
	for (;;) {
		int n = shmg_receive(m, e, 64, 20);

		ck_assert_int_ge(n, 0);
		for (int i = 0; i < n; i++) {
			struct tc_ev x;

			tc_ev_copy(&x, &e[i]);
			ck_assert_msg(x.type != SHMG_EV_OVERFLOW, "overflow: the test cannot check");
			int w = writer_of(x.id);
			ck_assert_msg(w >= 0, "event of an unknown endpoint");
			ck_assert(x.key_len == 6);
			int k = x.key[5] - '0';
			ck_assert(k >= 0 && k < OKEYS);
			seen[w]++;
			if (x.key[4] == 'r') {
				struct keystate *s = &ks[0][k];
				if (x.type == SHMG_EV_REGISTERED) {
					uint32_t q = seq_of(&x, x.meta);
					if (x.has_previous) {
						ck_assert_msg(s->holder == w, "update of %s by a non-holder",
							      x.key);
						ck_assert_uint_eq(x.prev_len, 4);
						ck_assert_uint_eq(seq_of(&x, x.prev), s->last[w]);
					} else {
						ck_assert_msg(s->holder == -1,
							      "%s registered by %d while held by %d",
							      x.key, w, s->holder);
					}
					ck_assert_msg(q > s->last[w], "%s: seq %u after %u", x.key, q,
						      s->last[w]);
					s->holder = w;
					s->last[w] = q;
				} else {
					ck_assert_int_eq(x.type, SHMG_EV_UNREGISTERED);
					ck_assert_msg(s->holder == w, "%s unregistered by a non-holder",
						      x.key);
					ck_assert_uint_eq(seq_of(&x, x.meta), s->last[w]);
					ck_assert_int_eq(x.reason, SHMG_REASON_NORMAL);
					s->holder = -1;
				}
			} else {
				struct keystate *s = &ks[1][k];
				if (x.type == SHMG_EV_JOINED) {
					uint32_t q = seq_of(&x, x.meta);
					ck_assert_msg(x.has_previous == s->member[w],
						      "%s: joined (previous %d) while member %d", x.key,
						      x.has_previous, s->member[w]);
					if (x.has_previous)
						ck_assert_uint_eq(seq_of(&x, x.prev), s->mlast[w]);
					ck_assert_msg(q > s->mlast[w], "%s: seq %u after %u", x.key, q,
						      s->mlast[w]);
					s->member[w] = 1;
					s->mlast[w] = q;
				} else {
					ck_assert_int_eq(x.type, SHMG_EV_LEFT);
					ck_assert_msg(s->member[w], "%s: left while not a member", x.key);
					ck_assert_uint_eq(seq_of(&x, x.meta), s->mlast[w]);
					s->member[w] = 0;
				}
			}
		}
		for (int w = 0; w < OWRITERS; w++)
			if (!done[w]) {
				int r = tc_wait_exit(pids[w], 0);
				if (r == -ETIMEDOUT)
					continue;
				ck_assert_msg(r == 0, "writer %d: exit %d, rc %ld", w, r, ost->rc[w]);
				done[w] = 1;
				exited++;
			}
		if (exited == OWRITERS && n == 0)
			break;
		ck_assert_msg(tc_now_ms() < deadline, "writers did not finish");
	}
	/* Every successful call was seen, plus what each close removed. */
	for (int w = 0; w < OWRITERS; w++) {
		int left_over = 0;

		for (int k = 0; k < OKEYS; k++)
			left_over += (ks[0][k].holder == w) + ks[1][k].member[w];
		ck_assert_msg(left_over == 0, "writer %d's entries survived its close", w);
		ck_assert_int_gt(ost->events[w], OITERS / 8); /* the writers did contend */
		ck_assert_msg(seen[w] >= ost->events[w], "writer %d: %ld events seen, %ld made", w,
			      seen[w], ost->events[w]);
		ck_assert_int_le(seen[w] - ost->events[w], 2 * OKEYS);
	}
	TC_EQ(shmg_registry_count(m, NULL), 0);
	TC_EQ(shmg_member_count(m, SHMG_KEY("ord/"), NULL), 0);
	TC_ASSERT_CLEAN(m);
	shmg_close(m);
}
END_TEST

/* ---- dispatch across processes ----------------------------------------- */

#define DMEMBERS 3

struct dres {
	shmg_id_t id[DMEMBERS + 1];
	long rc[DMEMBERS + 1];
	char payload[DMEMBERS + 1][16];
	shmg_id_t from[DMEMBERS + 1];
	int type[DMEMBERS + 1];
	long reply_rc;
};
static struct dres *dres;
static int dready[2];

/* Member i joins dx/room (member 0 also registers dx/boss), reports ready,
 * waits for one message and records it.  Member 0 then dispatches a reply
 * to dx/parent. */
static int dmember(void *arg)
{
	int i = (int)(intptr_t)arg;
	shmg_t *h = NULL;
	struct shmg_event e[2];
	long rc;

	if ((rc = shmg_open(tc_arena, NULL, &h)) != 0)
		goto out;
	dres->id[i] = shmg_self(h);
	if ((rc = shmg_join(h, SHMG_KEY("dx/room"), NULL, 0, NULL)) != 0)
		goto out;
	if (i == 0 && (rc = shmg_register(h, SHMG_KEY("dx/boss"), NULL, 0, NULL)) != 0)
		goto out;
	(void)!write(dready[1], "r", 1);
	rc = shmg_receive(h, e, 2, 20000);
	if (rc == 1) {
		dres->type[i] = e[0].type;
		dres->from[i] = e[0].id;
		snprintf(dres->payload[i], sizeof(dres->payload[i]), "%.*s", (int)e[0].meta_len,
			 (const char *)e[0].meta);
		rc = 0;
		if (i == 0)
			dres->reply_rc = shmg_dispatch(h, SHMG_KEY("dx/parent"), "pong", 4, NULL);
	} else {
		rc = rc == 0 ? -ETIMEDOUT : rc;
	}
out:
	dres->rc[i] = rc;
	if (rc != 0)
		(void)!write(dready[1], "e", 1);
	shmg_close(h);
	return rc == 0 ? 0 : 1;
}

START_TEST(test_dispatch_across_processes)
{
	shmg_t *p = tc_open(tc_arena, NULL);
	pid_t pids[DMEMBERS];
	char b;

	dres = tc_shared_alloc(sizeof(*dres));
	ck_assert_int_eq(pipe(dready), 0);
	TC_EQ(shmg_register(p, SHMG_KEY("dx/parent"), NULL, 0, NULL), 0);
	for (int i = 0; i < DMEMBERS; i++) {
		pids[i] = tc_fork(dmember, (void *)(intptr_t)i);
		TC_EQ(tc_read_full(dready[0], &b, 1, 20000), 0);
		ck_assert_msg(b == 'r', "member %d: %ld", i, dres->rc[i]);
	}
	TC_EQ(shmg_dispatch(p, SHMG_KEY("dx/room"), "ping", 4, NULL), DMEMBERS);
	TC_EQ(tc_ev_recv_n(p, ev, 1, 20000), 1);
	tc_ev_expect(&ev[0], SHMG_EV_MESSAGE, SHMG_REASON_NONE, dres->id[0], NULL, "dx/parent",
		     "pong", 4);
	for (int i = 0; i < DMEMBERS; i++) {
		TC_EQ(tc_wait_exit(pids[i], 20000), 0);
		TC_EQ(dres->rc[i], 0);
		ck_assert_int_eq(dres->type[i], SHMG_EV_MESSAGE);
		ck_assert(shmg_id_equal(dres->from[i], shmg_self(p)));
		ck_assert_str_eq(dres->payload[i], "ping");
	}
	TC_EQ(dres->reply_rc, 1);
	/* Gone members are not reached. */
	TC_EQ(shmg_dispatch(p, SHMG_KEY("dx/room"), "late", 4, NULL), 0);
	TC_EQ(shmg_dispatch_local(p, SHMG_KEY("dx/boss"), "late", 4, NULL), 0);
	shmg_close(p);
}
END_TEST

static Suite *lifecycle_suite(void)
{
	Suite *s = suite_create("lifecycle");
	TCase *tc = tc_case(s, "death", 30);

	tcase_add_test(tc, test_kill_in_process_reaper);
	tcase_add_test(tc, test_several_deaths_separate_batches);
	tcase_add_test(tc, test_monitor_in_other_process_than_reaper);
	tcase_add_test(tc, test_reaper_failover);

	tc = tc_case(s, "concurrency", 60);
	tcase_add_test(tc, test_order_per_key_concurrent_writers);
	tcase_add_test(tc, test_dispatch_across_processes);
	return s;
}

int main(void)
{
	return tc_run(lifecycle_suite());
}
