/* SPDX-License-Identifier: MIT */
/*
 * TTL leases of named clusters, enforced by the reaper: a forked process
 * hosts it (shmg_reaper_enable / shmg_reaper_dispatch), as the agent or an
 * application would.  A due lease disconnects the cluster unless this host
 * has a monitor, a registration or a membership in it; then it is extended
 * and shmg_cluster_stats says why.  Only a new connect creates a lease.
 * Nothing here asserts a time: the tests wait for the outcome.
 */
#include <poll.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "tc.h"

struct reaper_ctl {
	_Atomic int stop;
	_Atomic int elected;
};
static struct reaper_ctl *rc_ctl;

/* The reaper's process: elected, then driven until told to stop. */
static int reaper_child(void *arg)
{
	shmg_t *h;
	(void)arg;
	if (shmg_open(tc_arena, NULL, &h))
		return 10;
	if (shmg_reaper_enable(h) != 1)
		return 11;
	atomic_store(&rc_ctl->elected, 1);
	struct pollfd p = {.fd = shmg_reaper_fd(h), .events = POLLIN};
	while (!atomic_load(&rc_ctl->stop)) {
		int ms = shmg_reaper_dispatch(h);
		if (ms < 0)
			return 12;
		(void)poll(&p, 1, ms < 20 ? ms : 20);
	}
	shmg_close(h);
	return 0;
}

static pid_t start_reaper(void)
{
	rc_ctl = tc_shared_alloc(sizeof(*rc_ctl));
	pid_t pid = tc_fork(reaper_child, NULL);
	for (int i = 0; i < 10000 && !atomic_load(&rc_ctl->elected); i++)
		usleep(1000);
	ck_assert_msg(atomic_load(&rc_ctl->elected), "the reaper child was not elected");
	return pid;
}

static void stop_reaper(pid_t pid)
{
	atomic_store(&rc_ctl->stop, 1);
	TC_EQ(tc_wait_exit(pid, 10000), 0);
}

struct watched {
	shmg_t *h;
	const char *cluster;
	uint32_t bit;
};

static int slot_of(shmg_t *h, const char *cluster, struct shmg_cluster_stats *st)
{
	for (uint32_t s = 1;; s++) {
		int rc = shmg_cluster_stats(h, s, st, sizeof(*st));
		if (rc == -ERANGE)
			return -ENOENT;
		if (rc > 0 && strcmp(st->name, cluster) == 0)
			return (int)s;
	}
}

static bool disconnected(void *arg)
{
	struct watched *w = arg;
	return shmg_connected(w->h, w->cluster) == 0;
}

static bool kept(void *arg)
{
	struct watched *w = arg;
	struct shmg_cluster_stats st;
	return slot_of(w->h, w->cluster, &st) > 0 && (st.lease_kept & w->bit);
}

START_TEST(test_lease_expires_without_interest)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	struct shmg_connect_opts t = {.ttl_ms = 30};
	struct shmg_opts o = {.cluster = "idle"};
	struct shmg_cluster_stats st;

	TC_EQ(shmg_connect(h, "idle", &t), 0);
	ck_assert_int_gt(slot_of(h, "idle", &st), 0);
	ck_assert_uint_eq(st.ttl_ms, 30);
	/* Interest elsewhere (the default cluster, another cluster) does not count. */
	TC_EQ(shmg_connect(h, "busy", NULL), 0);
	TC_EQ(shmg_register(h, SHMG_KEY("k"), NULL, 0, NULL), 0);
	struct shmg_opts busy = {.cluster = "busy"};
	TC_EQ(shmg_join(h, SHMG_KEY("k"), NULL, 0, &busy), 0);
	/* An entry that was there and is gone does not either. */
	TC_EQ(shmg_register(h, SHMG_KEY("gone"), NULL, 0, &o), 0);
	TC_EQ(shmg_unregister(h, SHMG_KEY("gone"), &o), 0);
	pid_t r = start_reaper();
	struct watched w = {h, "idle", 0};
	ck_assert_msg(tc_wait_until(disconnected, &w, 10000), "lease never expired");
	TC_EQ(shmg_connected(h, "busy"), 1); /* no lease: stays */
	stop_reaper(r);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

/* One keep-condition: the lease is extended while it holds, and expires
 * once it is withdrawn. */
static void keep_case(int what)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	struct shmg_connect_opts t = {.ttl_ms = 30};
	struct shmg_opts o = {.cluster = "leased"};
	static const uint32_t bits[] = {SHMG_LEASE_KEPT_REGISTRATIONS, SHMG_LEASE_KEPT_MEMBERSHIPS,
					SHMG_LEASE_KEPT_MONITORS};

	TC_EQ(shmg_connect(h, "leased", &t), 0);
	if (what == 0)
		TC_EQ(shmg_register(h, SHMG_KEY("svc"), "m", 1, &o), 0);
	else if (what == 1)
		TC_EQ(shmg_join(h, SHMG_KEY("room"), "m", 1, &o), 0);
	else
		TC_EQ(shmg_monitor(h, SHMG_KEY("room/"), &o), 0);
	pid_t r = start_reaper();
	struct watched w = {h, "leased", bits[what]};
	/* Kept: the reaper saw it due and extended it, at least twice. */
	ck_assert_msg(tc_wait_until(kept, &w, 10000), "lease never checked");
	struct shmg_cluster_stats st;
	ck_assert_int_gt(slot_of(h, "leased", &st), 0);
	ck_assert_uint_eq(st.lease_kept, bits[what]);
	TC_EQ(shmg_connected(h, "leased"), 1);
	if (what == 0)
		TC_EQ(shmg_registry_count(h, &o), 1);
	if (what == 1)
		TC_EQ(shmg_member_count(h, SHMG_KEY("room"), &o), 1);
	/* Withdrawn: the next due check disconnects. */
	if (what == 0)
		TC_EQ(shmg_unregister(h, SHMG_KEY("svc"), &o), 0);
	else if (what == 1)
		TC_EQ(shmg_leave(h, SHMG_KEY("room"), &o), 0);
	else
		TC_EQ(shmg_demonitor(h, SHMG_KEY("room/"), &o), 0);
	w.bit = 0;
	ck_assert_msg(tc_wait_until(disconnected, &w, 10000), "lease never expired");
	stop_reaper(r);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}

START_TEST(test_lease_kept_by_registration) { keep_case(0); }
END_TEST
START_TEST(test_lease_kept_by_membership) { keep_case(1); }
END_TEST
START_TEST(test_lease_kept_by_monitor) { keep_case(2); }
END_TEST

START_TEST(test_repeated_connect_does_not_refresh)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	struct shmg_connect_opts shortl = {.ttl_ms = 200}, longl = {.ttl_ms = 600000};
	struct shmg_cluster_stats a, b;

	TC_EQ(shmg_connect(h, "once", &shortl), 0);
	ck_assert_int_gt(slot_of(h, "once", &a), 0);
	/* Again with a longer ttl, and without: the first lease stands. */
	TC_EQ(shmg_connect(h, "once", &longl), 0);
	TC_EQ(shmg_connect(h, "once", NULL), 0);
	ck_assert_int_gt(slot_of(h, "once", &b), 0);
	ck_assert_uint_eq(b.ttl_ms, 200);
	ck_assert_int_le(b.lease_left_ms, a.lease_left_ms);
	/* A plain connect makes no lease, and a later ttl does not add one. */
	TC_EQ(shmg_connect(h, "plain", NULL), 0);
	TC_EQ(shmg_connect(h, "plain", &shortl), 0);
	ck_assert_int_gt(slot_of(h, "plain", &b), 0);
	ck_assert_uint_eq(b.ttl_ms, 0);
	ck_assert_int_eq(b.lease_left_ms, 0);
	/* So it expires on the first lease's terms, though connected again since. */
	pid_t r = start_reaper();
	struct watched w = {h, "once", 0};
	ck_assert_msg(tc_wait_until(disconnected, &w, 10000), "lease never expired");
	TC_EQ(shmg_connected(h, "plain"), 1);
	stop_reaper(r);
	/* Disconnected: a new connect makes a new lease. */
	TC_EQ(shmg_connect(h, "once", &longl), 0);
	ck_assert_int_gt(slot_of(h, "once", &b), 0);
	ck_assert_uint_eq(b.ttl_ms, 600000);
	ck_assert_uint_eq(b.lease_kept, 0);
	shmg_close(h);
}
END_TEST

static Suite *lease_suite(void)
{
	Suite *s = suite_create("lease");
	TCase *tc = tc_case(s, "lease", 30);

	tcase_add_test(tc, test_lease_expires_without_interest);
	tcase_add_test(tc, test_lease_kept_by_registration);
	tcase_add_test(tc, test_lease_kept_by_membership);
	tcase_add_test(tc, test_lease_kept_by_monitor);
	tcase_add_test(tc, test_repeated_connect_does_not_refresh);
	return s;
}

int main(void)
{
	return tc_run(lease_suite());
}
