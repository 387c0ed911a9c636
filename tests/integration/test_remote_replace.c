/* SPDX-License-Identifier: MIT */
/*
 * remote_replace (lib/remote.h): one node's registration replaced by another
 * node's in one step, as the agent's store does when a remote claim beats a
 * visible one of a third node (the conflict rule) or when a hidden claim
 * takes the place of a visible one its owner removed.  A reader in another
 * process never finds the key empty; monitors see the loser leave with the
 * given reason, then the winner; bad calls change nothing; a writer killed
 * at each step leaves an arena that checks clean, the key held by one of
 * the two, and the event that was under way delivered by the repair.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "remote.h"
#include "tc.h"
#include "tc_events.h"

#define INC_B 77u
#define INC_C 88u

/* A claim of key by endpoint (node, slot, 1), registered at time_ns. */
static struct remote_change claim(uint32_t node, uint32_t slot, const char *key, const char *meta,
				  uint64_t time_ns)
{
	return (struct remote_change){
		.op = REMOTE_REGISTER,
		.key = key,
		.key_len = strlen(key),
		.meta = meta,
		.meta_len = meta ? strlen(meta) : 0,
		.id = {node, slot, 1},
		.pid = (int32_t)(1000 * node + slot),
		.time_ns = time_ns,
	};
}

static uint64_t inc_of(uint32_t node)
{
	return node == 2 ? INC_B : INC_C;
}

/* ---- the step is atomic for readers ------------------------------------- */

struct rp_shared {
	_Atomic int stop, ready;
	_Atomic long loops, missed, wrong;
};
static struct rp_shared *rp;

static int lookup_loop(void *arg)
{
	shmg_t *h;
	shmg_id_t id;
	char meta[16];
	size_t len;

	(void)arg;
	if (shmg_open(tc_arena, NULL, &h))
		return 10;
	atomic_store(&rp->ready, 1);
	while (!atomic_load(&rp->stop)) {
		int rc = shmg_lookup(h, SHMG_KEY("rp/k"), &id, meta, sizeof(meta), &len, NULL);
		if (rc == -ENOENT)
			atomic_fetch_add(&rp->missed, 1);
		else if (rc || (id.node != 2 && id.node != 3) || len != 1 ||
			 meta[0] != (char)('0' + id.node))
			atomic_fetch_add(&rp->wrong, 1);
		atomic_fetch_add(&rp->loops, 1);
	}
	shmg_close(h);
	return 0;
}

START_TEST(test_replace_never_empty)
{
	struct shmg_config cfg = {.shards = 1, .mailbox_bytes = 1 << 16};
	shmg_t *h = tc_open(tc_arena, &cfg);
	rp = tc_shared_alloc(sizeof(*rp));

	struct remote_change first = claim(2, 1, "rp/k", "2", 10);
	TC_EQ(remote_put(h, INC_B, &first), 0);
	pid_t pid = tc_fork(lookup_loop, NULL);
	while (!atomic_load(&rp->ready))
		usleep(1000);
	/* Nodes 2 and 3 take the key from each other, each time a later claim. */
	long start = atomic_load(&rp->loops);
	uint32_t holder = 2;
	for (int i = 0; i < 20000 || atomic_load(&rp->loops) < start + 1000; i++) {
		uint32_t next = holder == 2 ? 3 : 2;
		struct remote_change w = claim(next, 1, "rp/k", next == 2 ? "2" : "3",
					       (uint64_t)i + 11);
		TC_EQ(remote_replace(h, (shmg_id_t){holder, 1, 1}, SHMG_REASON_CONFLICT, inc_of(next),
				     &w),
		      0);
		holder = next;
	}
	atomic_store(&rp->stop, 1);
	TC_EQ(tc_wait_exit(pid, 30000), 0);
	ck_assert_msg(atomic_load(&rp->missed) == 0 && atomic_load(&rp->wrong) == 0,
		      "a reader found the key empty %ld times, wrong %ld times (%ld loops)",
		      atomic_load(&rp->missed), atomic_load(&rp->wrong), atomic_load(&rp->loops));
	ck_assert_int_gt(atomic_load(&rp->loops), 1000);
	TC_EQ(shmg_registry_count(h, NULL), 1);
	TC_EQ(shmg_local_registry_count(h, NULL), 0);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

/* ---- events and refusals --------------------------------------------------- */

START_TEST(test_replace_events_and_refusals)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	struct tc_ev ev[4];
	shmg_id_t b = {2, 4, 1}, c = {3, 5, 1};

	struct remote_change cb = claim(2, 4, "ev/k", "mb", 10);
	struct remote_change cc = claim(3, 5, "ev/k", "mc", 20);
	TC_EQ(remote_put(h, INC_B, &cb), 0);
	TC_EQ(shmg_monitor(h, SHMG_KEY("ev/"), NULL), 0);

	/* Refused, nothing changed: not the holder, the winner's own node,
	 * this node, a bad reason, not a register, another incarnation. */
	TC_EQ(remote_replace(h, (shmg_id_t){2, 9, 1}, SHMG_REASON_CONFLICT, INC_C, &cc), -ENOENT);
	TC_EQ(remote_replace(h, (shmg_id_t){3, 9, 1}, SHMG_REASON_CONFLICT, INC_C, &cc), -EINVAL);
	TC_EQ(remote_replace(h, shmg_self(h), SHMG_REASON_CONFLICT, INC_C, &cc), -EINVAL);
	TC_EQ(remote_replace(h, b, SHMG_REASON_NONE, INC_C, &cc), -EINVAL);
	TC_EQ(remote_replace(h, b, SHMG_REASON_RESYNC + 1, INC_C, &cc), -EINVAL);
	TC_EQ(remote_replace(h, b, SHMG_REASON_CONFLICT, INC_C, NULL), -EINVAL);
	struct remote_change bad = cc;
	bad.op = REMOTE_JOIN;
	TC_EQ(remote_replace(h, b, SHMG_REASON_CONFLICT, INC_C, &bad), -EINVAL);
	bad = claim(shmg_self(h).node, 5, "ev/k", "x", 1);
	TC_EQ(remote_replace(h, b, SHMG_REASON_CONFLICT, INC_C, &bad), -EINVAL);
	TC_EQ(remote_put(h, INC_C, &(struct remote_change){.op = REMOTE_REGISTER,
							    .key = "ev/other",
							    .key_len = 8,
							    .id = {3, 6, 1}}),
	      0);
	TC_EQ(remote_replace(h, b, SHMG_REASON_CONFLICT, INC_C + 1, &cc), -ESTALE);
	/* A local holder is not another node's claim: remote_conflict_evict. */
	TC_EQ(shmg_register(h, SHMG_KEY("ev/mine"), NULL, 0, NULL), 0);
	struct remote_change mine = claim(3, 5, "ev/mine", "mc", 20);
	TC_EQ(remote_replace(h, shmg_self(h), SHMG_REASON_CONFLICT, INC_C, &mine), -EINVAL);
	TC_EQ(tc_ev_drain(h, ev, 4), 2); /* ev/other and ev/mine registered */
	shmg_id_t id;
	TC_EQ(shmg_lookup(h, SHMG_KEY("ev/k"), &id, NULL, 0, NULL, NULL), 0);
	ck_assert(shmg_id_equal(id, b));

	TC_EQ(remote_replace(h, b, SHMG_REASON_CONFLICT, INC_C, &cc), 0);
	TC_EQ(tc_ev_drain(h, ev, 4), 2);
	tc_ev_expect(&ev[0], SHMG_EV_UNREGISTERED, SHMG_REASON_CONFLICT, b, NULL, "ev/k", "mb", 2);
	ck_assert_int_eq(ev[0].pid, 2004);
	tc_ev_expect(&ev[1], SHMG_EV_REGISTERED, SHMG_REASON_NONE, c, NULL, "ev/k", "mc", 2);
	ck_assert_int_eq(ev[1].pid, 3005);
	struct shmg_entry e;
	char meta[8];
	TC_EQ(shmg_lookup_entry(h, SHMG_KEY("ev/k"), &e, meta, sizeof(meta), NULL), 0);
	ck_assert(shmg_id_equal(e.id, c) && e.time_ns == 20 && e.meta_len == 2);
	/* The loser is gone: its owner's removal finds nothing; the winner's
	 * owner removes it as any entry of its node. */
	TC_EQ(remote_put(h, INC_B, &(struct remote_change){.op = REMOTE_UNREGISTER,
							    .key = "ev/k",
							    .key_len = 4,
							    .id = b}),
	      -ENOENT);
	/* A promotion: the holder's owner removed it (reason exit). */
	TC_EQ(remote_replace(h, c, SHMG_REASON_EXIT, INC_B, &cb), 0);
	TC_EQ(tc_ev_drain(h, ev, 4), 2);
	tc_ev_expect(&ev[0], SHMG_EV_UNREGISTERED, SHMG_REASON_EXIT, c, NULL, "ev/k", "mc", 2);
	tc_ev_expect(&ev[1], SHMG_EV_REGISTERED, SHMG_REASON_NONE, b, NULL, "ev/k", "mb", 2);
	TC_EQ(shmg_registry_count(h, NULL), 3);
	/* Purging the winner's node leaves the key free. */
	TC_EQ(remote_purge(h, 2, SHMG_REASON_NODEDOWN), 1);
	TC_EQ(shmg_lookup(h, SHMG_KEY("ev/k"), NULL, NULL, 0, NULL, NULL), -ENOENT);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

/* ---- crashes ----------------------------------------------------------------- */

/* Before the store; after it, nothing told; the first of two monitors told,
 * the second not yet; the first's batch appended and its progress recorded,
 * its wakeup not yet sent; both told, the in-flight record not cleared. */
static const char *crash_points[] = {"replace:allocated", "replace:published", "event:delivered",
				     "mailbox:published", "replace:told"};
#define N_CRASH (int)(sizeof(crash_points) / sizeof(crash_points[0]))
static const char *armed;

static void hook(const char *point)
{
	if (armed && strcmp(point, armed) == 0)
		raise(SIGKILL);
}

static int crash_child(void *arg)
{
	shmg_t *h;
	if (shmg_open(tc_arena, NULL, &h))
		return 10;
	armed = crash_points[(intptr_t)arg];
	sg_test_hook = hook;
	struct remote_change w = claim(3, 5, "cr/k", "mc", 20);
	remote_replace(h, (shmg_id_t){2, 4, 1}, SHMG_REASON_CONFLICT, INC_C, &w);
	return 12;
}

/* Killed at any point after the store, the winner holds the key and each
 * monitor gets the pair of events once: the loser's removal, then the
 * winner's registration, in one batch. */
START_TEST(test_replace_crash)
{
	struct shmg_config cfg = {.shards = 1};
	shmg_t *h = tc_open(tc_arena, &cfg);
	shmg_t *mon2 = tc_open(tc_arena, NULL);
	struct remote_change cb = claim(2, 4, "cr/k", "mb", 10);
	TC_EQ(remote_put(h, INC_B, &cb), 0);
	TC_EQ(shmg_monitor(h, SHMG_KEY("cr/"), NULL), 0);
	TC_EQ(shmg_monitor(mon2, SHMG_KEY("cr/k"), NULL), 0);

	TC_EQ(tc_wait_exit(tc_fork(crash_child, (void *)(intptr_t)_i), 30000), TC_KILLED(SIGKILL));
	TC_ASSERT_CLEAN(h); /* repairs the shard the child died holding */
	shmg_id_t id;
	TC_EQ(shmg_lookup(h, SHMG_KEY("cr/k"), &id, NULL, 0, NULL, NULL), 0);
	TC_EQ(shmg_registry_count(h, NULL), 1);
	shmg_t *mons[] = {h, mon2};
	for (int m = 0; m < 2; m++) {
		struct tc_ev ev[8];
		int n = tc_ev_drain(mons[m], ev, 8);
		if (_i == 0) {
			/* Killed before the store: the loser holds the key, no event. */
			ck_assert_uint_eq(id.node, 2);
			TC_EQ(n, 0);
			continue;
		}
		ck_assert_uint_eq(id.node, 3);
		TC_EQ(n, 2);
		tc_ev_expect_one_batch(ev, 2);
		tc_ev_expect(&ev[0], SHMG_EV_UNREGISTERED, SHMG_REASON_CONFLICT, cb.id, NULL, "cr/k",
			     "mb", 2);
		tc_ev_expect(&ev[1], SHMG_EV_REGISTERED, SHMG_REASON_NONE, (shmg_id_t){3, 5, 1}, NULL,
			     "cr/k", "mc", 2);
	}
	/* The agent then goes on: the winner's owner removes it. */
	TC_EQ(remote_purge(h, 3, SHMG_REASON_NODEDOWN), _i == 0 ? 0 : 1);
	TC_ASSERT_CLEAN(h);
	shmg_close(mon2);
	shmg_close(h);
}
END_TEST

/* The replaced entry named by a damaged in-flight record: the repair after
 * the crash reads no block through it and still tells the winner. */
static const uint32_t bad_old[] = {0, 1, 0xffffffffu, 0x7fffffffu};

START_TEST(test_replace_crash_damaged_record)
{
	struct shmg_config cfg = {.shards = 1};
	shmg_t *h = tc_open(tc_arena, &cfg);
	struct remote_change cb = claim(2, 4, "cr/k", "mb", 10);
	TC_EQ(remote_put(h, INC_B, &cb), 0);
	TC_EQ(shmg_monitor(h, SHMG_KEY("cr/"), NULL), 0);
	TC_EQ(tc_wait_exit(tc_fork(crash_child, (void *)(intptr_t)1), 30000), TC_KILLED(SIGKILL));
	TC_EQ(shard_at(h, 0)->inflight_op, INFLIGHT_SWAP);
	shard_at(h, 0)->inflight_old = bad_old[_i];
	TC_ASSERT_CLEAN(h);
	struct tc_ev ev[4];
	TC_EQ(tc_ev_drain(h, ev, 4), 1);
	tc_ev_expect(&ev[0], SHMG_EV_REGISTERED, SHMG_REASON_NONE, (shmg_id_t){3, 5, 1}, NULL,
		     "cr/k", "mc", 2);
	TC_EQ(remote_purge(h, 3, SHMG_REASON_NODEDOWN), 1);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

static Suite *replace_suite(void)
{
	Suite *s = suite_create("remote_replace");
	TCase *tc = tc_case(s, "remote_replace", 120);

	tcase_add_test(tc, test_replace_never_empty);
	tcase_add_test(tc, test_replace_events_and_refusals);
	tcase_add_loop_test(tc, test_replace_crash, 0, N_CRASH);
	tcase_add_loop_test(tc, test_replace_crash_damaged_record, 0,
			    (int)(sizeof(bad_old) / sizeof(bad_old[0])));
	return s;
}

int main(void)
{
	return tc_run(replace_suite());
}
