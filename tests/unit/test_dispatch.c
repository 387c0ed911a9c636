/* SPDX-License-Identifier: MIT */
/*
 * Dispatch on one host: a message reaches every member of the exact key and
 * the endpoint registered at it, once per endpoint, nobody else; the return
 * value counts the endpoints reached; size and key errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tc.h"
#include "tc_events.h"

#define CAP 64

static struct tc_ev ev[CAP];

typedef long (*dispatch_fn)(shmg_t *, const char *, size_t, const void *, size_t,
			    const struct shmg_opts *);

/* Asserts that h received exactly one message from `from` on key. */
static void expect_one_message(shmg_t *h, shmg_id_t from, const char *cluster, const char *key,
			       const void *msg, size_t len, const char *who)
{
	int n = tc_ev_drain(h, ev, CAP);

	ck_assert_msg(n == 1, "%s: %d events, expected one message", who, n);
	tc_ev_expect(&ev[0], SHMG_EV_MESSAGE, SHMG_REASON_NONE, from, cluster, key, msg, len);
	tc_ev_expect_prev(&ev[0], NULL, 0);
	tc_ev_expect_single(&ev[0]);
	ck_assert_int_eq(ev[0].pid, getpid());
}

static void expect_no_message(shmg_t *h, const char *who)
{
	int n = tc_ev_drain(h, ev, CAP);

	for (int i = 0; i < n; i++)
		ck_assert_msg(ev[i].type != SHMG_EV_MESSAGE, "%s received a message on '%s'", who,
			      ev[i].key);
}

static void reaches_members_and_registered(dispatch_fn fn)
{
	shmg_t *s = tc_open(tc_arena, NULL);   /* sender, not a member */
	shmg_t *reg = tc_open(tc_arena, NULL); /* registered at the key */
	shmg_t *m1 = tc_open(tc_arena, NULL);
	shmg_t *m2 = tc_open(tc_arena, NULL);
	shmg_t *other = tc_open(tc_arena, NULL); /* member of another key */
	shmg_t *mon = tc_open(tc_arena, NULL);   /* monitors the key */
	shmg_t *incl = tc_open(tc_arena, NULL);  /* member of the key in a named cluster */
	shmg_t *pre = tc_open(tc_arena, NULL);   /* member of keys the key is a prefix of */
	struct shmg_opts cl = { .cluster = "cl" };

	TC_EQ(shmg_register(reg, SHMG_KEY("d/k"), "r", 1, NULL), 0);
	TC_EQ(shmg_join(m1, SHMG_KEY("d/k"), "1", 1, NULL), 0);
	TC_EQ(shmg_join(m2, SHMG_KEY("d/k"), "2", 1, NULL), 0);
	TC_EQ(shmg_join(other, SHMG_KEY("d/other"), NULL, 0, NULL), 0);
	TC_EQ(shmg_monitor(mon, SHMG_KEY("d/k"), NULL), 0);
	TC_EQ(shmg_monitor(mon, NULL, 0, NULL), 0);
	TC_EQ(shmg_connect(incl, "cl", NULL), 0);
	TC_EQ(shmg_join(incl, SHMG_KEY("d/k"), NULL, 0, &cl), 0);
	TC_EQ(shmg_register(incl, SHMG_KEY("d/k"), NULL, 0, &cl), 0);
	TC_EQ(shmg_join(pre, SHMG_KEY("d/k/sub"), NULL, 0, NULL), 0);
	TC_EQ(shmg_join(pre, SHMG_KEY("d/kk"), NULL, 0, NULL), 0);

	/* Members and the registered endpoint. */
	TC_EQ(fn(s, SHMG_KEY("d/k"), "hello", 5, NULL), 3);
	expect_one_message(reg, shmg_self(s), NULL, "d/k", "hello", 5, "registered");
	expect_one_message(m1, shmg_self(s), NULL, "d/k", "hello", 5, "m1");
	expect_one_message(m2, shmg_self(s), NULL, "d/k", "hello", 5, "m2");
	tc_ev_expect_empty(s, "the sender, not a member");
	tc_ev_expect_empty(other, "member of another key");
	expect_no_message(mon, "monitor of the key");
	tc_ev_expect_empty(incl, "member of the key in another cluster");
	tc_ev_expect_empty(pre, "member of longer keys");

	/* Registered and a member: reached once. */
	TC_EQ(shmg_join(reg, SHMG_KEY("d/k"), "r", 1, NULL), 0);
	TC_EQ(fn(s, SHMG_KEY("d/k"), "both", 4, NULL), 3);
	expect_one_message(reg, shmg_self(s), NULL, "d/k", "both", 4, "registered + member");
	expect_one_message(m1, shmg_self(s), NULL, "d/k", "both", 4, "m1");
	expect_one_message(m2, shmg_self(s), NULL, "d/k", "both", 4, "m2");

	/* In the named cluster: only its endpoint (registered and joined: once). */
	TC_EQ(fn(s, SHMG_KEY("d/k"), "c", 1, &cl), 1);
	expect_one_message(incl, shmg_self(s), "cl", "d/k", "c", 1, "cluster member");
	tc_ev_expect_empty(m1, "default-cluster member, cluster dispatch");
	tc_ev_expect_empty(reg, "default-cluster registration, cluster dispatch");

	/* A registration only, no group. */
	TC_EQ(shmg_register(reg, SHMG_KEY("d/solo"), NULL, 0, NULL), 0);
	TC_EQ(fn(s, SHMG_KEY("d/solo"), "x", 1, NULL), 1);
	expect_one_message(reg, shmg_self(s), NULL, "d/solo", "x", 1, "registered only");
	/* Nobody: 0. */
	TC_EQ(fn(s, SHMG_KEY("d/nobody"), "x", 1, NULL), 0);
	/* The sender as a member receives its own message. */
	TC_EQ(shmg_join(s, SHMG_KEY("d/k"), NULL, 0, NULL), 0);
	TC_EQ(fn(s, SHMG_KEY("d/k"), "self", 4, NULL), 4);
	expect_one_message(s, shmg_self(s), NULL, "d/k", "self", 4, "sender as member");
	(void)tc_ev_drain(reg, ev, CAP);
	(void)tc_ev_drain(m1, ev, CAP);
	(void)tc_ev_drain(m2, ev, CAP);
	/* A member that left, a registration that went: no longer reached
	 * (reg stays a member). */
	TC_EQ(shmg_leave(m2, SHMG_KEY("d/k"), NULL), 0);
	TC_EQ(shmg_unregister(reg, SHMG_KEY("d/k"), NULL), 0);
	TC_EQ(fn(s, SHMG_KEY("d/k"), "after", 5, NULL), 3); /* reg, m1, s */
	tc_ev_expect_empty(m2, "member that left");
	expect_one_message(reg, shmg_self(s), NULL, "d/k", "after", 5, "still a member");
	/* A closed member is gone too. */
	TC_EQ(shmg_close(m1), 0);
	TC_EQ(fn(s, SHMG_KEY("d/k"), "z", 1, NULL), 2);
	expect_no_message(mon, "monitor of the key");

	shmg_close(pre);
	shmg_close(incl);
	shmg_close(mon);
	shmg_close(other);
	shmg_close(m2);
	shmg_close(reg);
	shmg_close(s);
}

START_TEST(test_dispatch_reaches_members_and_registered)
{
	reaches_members_and_registered(shmg_dispatch);
}
END_TEST

START_TEST(test_dispatch_local_reaches_members_and_registered)
{
	reaches_members_and_registered(shmg_dispatch_local);
}
END_TEST

static void payloads(dispatch_fn fn)
{
	struct shmg_config c = { 0 };
	c.meta_max = 300;
	shmg_t *s = tc_open(tc_arena, &c);
	shmg_t *r = tc_open(tc_arena, NULL);
	unsigned char big[301];
	struct shmg_event e[2];

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (unsigned char)(i * 7 + 1);
	TC_EQ(shmg_join(r, SHMG_KEY("p/k"), NULL, 0, NULL), 0);
	TC_EQ(fn(s, SHMG_KEY("p/k"), big, 301, NULL), -E2BIG);
	tc_ev_expect_empty(r, "refused message");
	TC_EQ(fn(s, SHMG_KEY("p/k"), big, 300, NULL), 1);
	TC_EQ(shmg_receive(r, e, 2, 0), 1);
	ck_assert_int_eq(e[0].type, SHMG_EV_MESSAGE);
	ck_assert_uint_eq(e[0].meta_len, 300);
	ck_assert_mem_eq(e[0].meta, big, 300);
	ck_assert(shmg_id_equal(e[0].id, shmg_self(s)));
	/* Binary payload with NULs, and the empty message. */
	TC_EQ(fn(s, SHMG_KEY("p/k"), "a\0b\0", 4, NULL), 1);
	TC_EQ(fn(s, SHMG_KEY("p/k"), NULL, 0, NULL), 1);
	TC_EQ(fn(s, SHMG_KEY("p/k"), "", 0, NULL), 1);
	TC_EQ(shmg_receive(r, e, 2, 0), 2);
	ck_assert_uint_eq(e[0].meta_len, 4);
	ck_assert_mem_eq(e[0].meta, "a\0b\0", 4);
	ck_assert_uint_eq(e[1].meta_len, 0);
	TC_EQ(tc_ev_drain(r, ev, CAP), 1);
	ck_assert_uint_eq(ev[0].meta_len, 0);
	ck_assert_int_eq(ev[0].type, SHMG_EV_MESSAGE);

	/* Keys: prefix, empty, NUL, too long; NULL message with a length. */
	char longkey[300];
	memset(longkey, 'k', sizeof(longkey));
	TC_EQ(fn(s, SHMG_KEY("p/"), "x", 1, NULL), -EINVAL);
	TC_EQ(fn(s, "", 0, "x", 1, NULL), -EINVAL);
	TC_EQ(fn(s, NULL, 0, "x", 1, NULL), -EINVAL);
	TC_EQ(fn(s, NULL, 3, "x", 1, NULL), -EINVAL);
	TC_EQ(fn(s, "p/\0k", 4, "x", 1, NULL), -EINVAL);
	TC_EQ(fn(s, longkey, 256, "x", 1, NULL), -EINVAL);
	TC_EQ(fn(s, SHMG_KEY("p/k"), NULL, 5, NULL), -EINVAL);
	tc_ev_expect_empty(r, "refused dispatches");
	shmg_close(r);
	shmg_close(s);
}

START_TEST(test_dispatch_payload_and_errors)
{
	payloads(shmg_dispatch);
}
END_TEST

START_TEST(test_dispatch_local_payload_and_errors)
{
	payloads(shmg_dispatch_local);
}
END_TEST

/* A message to a key of a cluster this host is not connected to reaches
 * nobody; disconnecting removes the members it would have reached. */
START_TEST(test_dispatch_cluster_connection)
{
	shmg_t *s = tc_open(tc_arena, NULL);
	shmg_t *r = tc_open(tc_arena, NULL);
	struct shmg_opts cl = { .cluster = "dc" };

	TC_EQ(shmg_dispatch(s, SHMG_KEY("k"), "x", 1, &cl), 0);
	TC_EQ(shmg_connect(r, "dc", NULL), 0);
	TC_EQ(shmg_join(r, SHMG_KEY("k"), NULL, 0, &cl), 0);
	TC_EQ(shmg_dispatch(s, SHMG_KEY("k"), "x", 1, &cl), 1);
	TC_EQ(shmg_dispatch_local(s, SHMG_KEY("k"), "y", 1, &cl), 1);
	TC_EQ(tc_ev_drain(r, ev, CAP), 2);
	tc_ev_expect(&ev[0], SHMG_EV_MESSAGE, SHMG_REASON_NONE, shmg_self(s), "dc", "k", "x", 1);
	tc_ev_expect(&ev[1], SHMG_EV_MESSAGE, SHMG_REASON_NONE, shmg_self(s), "dc", "k", "y", 1);
	TC_EQ(shmg_disconnect(s, "dc"), 0);
	TC_EQ(shmg_dispatch(s, SHMG_KEY("k"), "x", 1, &cl), 0);
	tc_ev_expect_empty(r, "after disconnect");
	shmg_close(r);
	shmg_close(s);
}
END_TEST

/* Messages and events share one mailbox, in the order they were produced,
 * each a batch of its own. */
START_TEST(test_messages_and_events_in_order)
{
	shmg_t *s = tc_open(tc_arena, NULL);
	shmg_t *r = tc_open(tc_arena, NULL);

	TC_EQ(shmg_monitor(r, SHMG_KEY("o/"), NULL), 0);
	TC_EQ(shmg_join(r, SHMG_KEY("o/k"), "r", 1, NULL), 0);
	TC_EQ(shmg_dispatch(s, SHMG_KEY("o/k"), "m1", 2, NULL), 1);
	TC_EQ(shmg_join(s, SHMG_KEY("o/k"), "s", 1, NULL), 0);
	TC_EQ(shmg_dispatch(s, SHMG_KEY("o/k"), "m2", 2, NULL), 2);
	TC_EQ(tc_ev_drain(s, ev, CAP), 1);
	TC_EQ(tc_ev_drain(r, ev, CAP), 4);
	tc_ev_expect(&ev[0], SHMG_EV_JOINED, SHMG_REASON_NONE, shmg_self(r), NULL, "o/k", "r", 1);
	tc_ev_expect(&ev[1], SHMG_EV_MESSAGE, SHMG_REASON_NONE, shmg_self(s), NULL, "o/k", "m1", 2);
	tc_ev_expect(&ev[2], SHMG_EV_JOINED, SHMG_REASON_NONE, shmg_self(s), NULL, "o/k", "s", 1);
	tc_ev_expect(&ev[3], SHMG_EV_MESSAGE, SHMG_REASON_NONE, shmg_self(s), NULL, "o/k", "m2", 2);
	for (int i = 1; i < 4; i++)
		ck_assert_uint_gt(ev[i].batch, ev[i - 1].batch);
	shmg_close(r);
	shmg_close(s);
}
END_TEST

static Suite *dispatch_suite(void)
{
	Suite *s = suite_create("dispatch");
	TCase *tc = tc_case(s, "dispatch", 20);

	tcase_add_test(tc, test_dispatch_reaches_members_and_registered);
	tcase_add_test(tc, test_dispatch_local_reaches_members_and_registered);
	tcase_add_test(tc, test_dispatch_payload_and_errors);
	tcase_add_test(tc, test_dispatch_local_payload_and_errors);
	tcase_add_test(tc, test_dispatch_cluster_connection);
	tcase_add_test(tc, test_messages_and_events_in_order);
	return s;
}

int main(void)
{
	return tc_run(dispatch_suite());
}
