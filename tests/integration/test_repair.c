/* SPDX-License-Identifier: MIT */
/*
 * Shard repair (lib/repair.c) and the disconnect sweep (lib/cluster.c) when
 * processes die at the crash points of lib/testhook.h.
 *
 *  - A reader stopped inside a read section must not hold up the repair of a
 *    writer's death: the next writer proceeds at once, the block the reader
 *    holds is not reused under it, and once the reader is gone every deferred
 *    block is freed (pages back to where they were); with the limbo ring full
 *    the block is held and the repair done again once the ring has room.
 *  - A repair that fails is retried by the next locker.
 *  - Limbo items that repair drops are not freed by reclaim.
 *  - Re-indexing listed memberships may resize the table: the table the
 *    repair was walking may then be freed and reused.
 *  - A death batch resumed after the reaper died still reaches each monitor
 *    once when monitors came and went in between.
 *  - A disconnect killed at each of its points is finished by the next locker
 *    of each shard: the entries are gone and each monitor got each removal
 *    once, and a later connect reports nothing again.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "scan.h"
#include "tc.h"
#include "tc_events.h"

#define KEY "repair/k"
#define GROUP "repair/g"
#define M1 "meta-one-0123456789"
#define M2 "meta-two-abcdefghijklmnopqrstuvwxyz"

/* ---- hooks and helpers -------------------------------------------------- */

static const char *hook_point;
static int hook_left;
static shmg_t *fill_ring_of; /* fill its shard 0 limbo ring once locked */

/* SIGKILL at the nth time the point is reached.  A writer told to fill the
 * ring does so inside its critical section, after it made room for its own
 * write, so that only the repair of its death meets a full ring. */
static void kill_hook(const char *point)
{
	if (fill_ring_of && strcmp(point, "register:locked") == 0) {
		while (epoch_defer(fill_ring_of, 0, 0, 0) == 0)
			;
		fill_ring_of = NULL;
	}
	if (hook_point && strcmp(point, hook_point) == 0 && --hook_left == 0)
		raise(SIGKILL);
}

static void arm(const char *point, int nth)
{
	hook_point = point;
	hook_left = nth;
	sg_test_hook = kill_hook;
}

static struct shmg_config one_shard(void)
{
	struct shmg_config c;

	memset(&c, 0, sizeof(c));
	c.shards = 1;
	return c;
}

static int locks_and_dies(void *arg)
{
	shmg_t *h = NULL;

	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 10;
	if (shard_lock(h, (uint32_t)(uintptr_t)arg) != 0)
		return 11;
	raise(SIGKILL);
	return 12;
}

/* Leaves the shard's mutex owner-dead: its next locker repairs it. */
static void kill_holding_lock(uint32_t shard)
{
	pid_t pid = tc_fork(locks_and_dies, (void *)(uintptr_t)shard);

	TC_EQ(tc_wait_exit(pid, 20000), TC_KILLED(SIGKILL));
}

static void reclaim_all(shmg_t *h)
{
	for (uint32_t s = 0; s < h->geo.shards; s++) {
		TC_EQ(shard_lock(h, s), 0);
		epoch_reclaim(h, s);
		shard_unlock(h, s);
	}
}

static ref_t ref_of_key(shmg_t *h, const char *key)
{
	struct shmg_entry e;

	TC_EQ(shmg_read_begin(h), 0);
	TC_EQ(shmg_lookup_ref(h, SHMG_KEY(key), &e, NULL), 0);
	ref_t ref = ref_of(h, e.key - sizeof(struct entry));
	TC_EQ(shmg_read_end(h), 0);
	return ref;
}

static uint64_t pages_used(shmg_t *h)
{
	struct shmg_info in;

	TC_EQ(shmg_info(h, &in), 0);
	return in.pages_used;
}

static uint64_t repairs(shmg_t *h)
{
	struct shmg_info in;

	TC_EQ(shmg_info(h, &in), 0);
	return in.shard_repairs;
}

/* ---- a reader stopped in its section, a writer killed ------------------- */

static int ready_pipe[2], go_pipe[2];
static const char *writer_point;
static bool writer_fills_ring;

static int crashing_writer(void *arg)
{
	shmg_t *h = NULL;
	char b;

	(void)arg;
	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 10;
	if (shmg_register(h, SHMG_KEY(KEY), M1, strlen(M1), NULL) != 0)
		return 11;
	(void)!write(ready_pipe[1], "w", 1);
	if (read(go_pipe[0], &b, 1) != 1)
		return 13;
	arm(writer_point, 1);
	if (writer_fills_ring)
		fill_ring_of = h;
	if (strcmp(writer_point, "unregister:unlinked") == 0)
		shmg_unregister(h, SHMG_KEY(KEY), NULL);
	else
		shmg_register(h, SHMG_KEY(KEY), M2, strlen(M2), NULL);
	return 12;
}

/* Looks KEY up, stops inside the section, and once continued checks that
 * what it looked up is untouched. */
static int stopped_reader(void *arg)
{
	shmg_t *h = NULL;
	struct shmg_entry e;

	(void)arg;
	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 10;
	if (shmg_read_begin(h) != 0 || shmg_lookup_ref(h, SHMG_KEY(KEY), &e, NULL) != 0)
		return 11;
	(void)!write(ready_pipe[1], "r", 1);
	raise(SIGSTOP);
	int intact = e.key_len == strlen(KEY) && memcmp(e.key, KEY, e.key_len) == 0 &&
		     e.meta_len == strlen(M1) && memcmp(e.meta, M1, e.meta_len) == 0;
	shmg_read_end(h);
	return intact ? 0 : 20;
}

/* The next writer: reaps the dead one (repairing the shard) and registers
 * keys of the orphaned block's size class, which would reuse it if it had
 * been freed. */
static int next_writer(void *arg)
{
	shmg_t *h = NULL;
	char key[32];

	(void)arg;
	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 10;
	for (int i = 0; i < 64; i++) {
		snprintf(key, sizeof(key), "after/%02d", i);
		if (shmg_register(h, SHMG_KEY(key), M1, strlen(M1), NULL) != 0)
			return 11;
	}
	return shmg_close(h) == 0 ? 0 : 12;
}

/* Opens the test's handle with the size classes of the scenario holding a
 * page each, so that pages_used can be compared at the end. */
static shmg_t *open_warmed(void)
{
	struct shmg_config c = one_shard();
	shmg_t *h = tc_open(tc_arena, &c);

	TC_EQ(shmg_register(h, SHMG_KEY("base/stable"), M1, strlen(M1), NULL), 0);
	TC_EQ(shmg_register(h, SHMG_KEY(KEY), M2, strlen(M2), NULL), 0);
	TC_EQ(shmg_unregister(h, SHMG_KEY(KEY), NULL), 0);
	TC_EQ(shmg_register(h, SHMG_KEY("repair/next"), "x", 1, NULL), 0);
	TC_EQ(shmg_unregister(h, SHMG_KEY("repair/next"), NULL), 0);
	reclaim_all(h);
	return h;
}

/* Forks the writer (which registers KEY and waits) and the reader (which
 * looks KEY up and stops inside its section). */
static void start_writer_and_stopped_reader(pid_t *w, pid_t *r)
{
	char b;
	int st;

	ck_assert_int_eq(pipe(ready_pipe), 0);
	ck_assert_int_eq(pipe(go_pipe), 0);
	*w = tc_fork(crashing_writer, NULL);
	TC_EQ(tc_read_full(ready_pipe[0], &b, 1, 20000), 0);
	*r = tc_fork(stopped_reader, NULL);
	TC_EQ(tc_read_full(ready_pipe[0], &b, 1, 20000), 0);
	ck_assert_int_eq(waitpid(*r, &st, WUNTRACED), *r);
	ck_assert_msg(WIFSTOPPED(st), "reader did not stop (status %#x)", st);
}

/* Lets the writer go on to its crash point. */
static void writer_dies(pid_t w)
{
	TC_EQ(tc_write_full(go_pipe[1], "g", 1), 0);
	TC_EQ(tc_wait_exit(w, 20000), TC_KILLED(SIGKILL));
}

START_TEST(test_stopped_reader_does_not_stall_repair)
{
	pid_t w, r;
	int st;

	writer_point = _i == 0 ? "register:replaced" : "unregister:unlinked";
	shmg_t *h = open_warmed();
	uint64_t baseline = pages_used(h), repairs_before = repairs(h);
	start_writer_and_stopped_reader(&w, &r);
	writer_dies(w);

	/* The reader is still inside its section: writers must not wait for it. */
	pid_t x = tc_fork(next_writer, NULL);
	st = tc_wait_exit(x, 10000);
	ck_assert_msg(st == 0, "%s: the next writer %s (%d)", writer_point,
		      st == -ETIMEDOUT ? "is blocked behind the stopped reader" : "failed", st);
	ck_assert_uint_gt(repairs(h), repairs_before);

	ck_assert_int_eq(kill(r, SIGCONT), 0);
	TC_EQ(tc_wait_exit(r, 20000), 0); /* what it held was not reused */
	int reaped = shmg_reap(h);
	ck_assert_msg(reaped == 1 || reaped == 2, "reap = %d", reaped);
	reclaim_all(h);
	TC_ASSERT_CLEAN(h);
	ck_assert_uint_le(pages_used(h), baseline);
	TC_EQ(shmg_registry_count(h, NULL), 1);
	shmg_close(h);
}
END_TEST

/* The same with the limbo ring full: the orphan cannot be queued, so repair
 * keeps it allocated (REPAIR_LEAKED), the shard stays usable, and once the
 * reader is gone and the ring drained the next locker repairs it again. */
START_TEST(test_full_ring_during_repair)
{
	pid_t w, r;

	writer_point = "register:replaced";
	shmg_t *h = open_warmed();
	uint64_t baseline = pages_used(h);
	/* The writer fills the ring, with items the stopped reader holds back,
	 * once it holds the lock. */
	writer_fills_ring = true;
	start_writer_and_stopped_reader(&w, &r);
	writer_dies(w);

	/* The next writer repairs, holding the orphan it cannot queue, then
	 * finds no room for its own write while the reader holds the ring. */
	TC_EQ(shmg_set_busy_retry(h, 4, 50), 0);
	uint64_t repairs_before = repairs(h);
	TC_EQ(shmg_register(h, SHMG_KEY("repair/next"), "x", 1, NULL), -EBUSY);
	ck_assert_uint_eq(repairs(h), repairs_before + 1);
	TC_EQ(shard_at(h, 0)->repair_pending, REPAIR_LEAKED);

	ck_assert_int_eq(kill(r, SIGCONT), 0);
	TC_EQ(tc_wait_exit(r, 20000), 0);
	TC_EQ(shmg_reap(h), 2);
	reclaim_all(h);     /* drains the ring */
	TC_ASSERT_CLEAN(h); /* its lock repairs again, now with room */
	TC_EQ(shard_at(h, 0)->repair_pending, REPAIR_NONE);
	TC_EQ(shmg_register(h, SHMG_KEY("repair/next"), "x", 1, NULL), 0);
	TC_EQ(shmg_lookup(h, SHMG_KEY("repair/next"), NULL, NULL, 0, NULL, NULL), 0);
	TC_EQ(shmg_unregister(h, SHMG_KEY("repair/next"), NULL), 0);
	reclaim_all(h);
	ck_assert_uint_le(pages_used(h), baseline);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

/* ---- a failed repair is retried ----------------------------------------- */

static int fails_left;

static bool fail_repair(const char *point)
{
	if (strcmp(point, "repair:fail") != 0 || fails_left == 0)
		return false;
	fails_left--;
	return true;
}

static int dies_registering(void *arg)
{
	shmg_t *h = NULL;

	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 10;
	arm(arg, 1);
	shmg_register(h, SHMG_KEY(KEY), M1, strlen(M1), NULL);
	return 12;
}

START_TEST(test_failed_repair_is_retried)
{
	static const char *const points[] = { "register:allocated", "register:published" };
	struct shmg_config c = one_shard();
	shmg_t *h = tc_open(tc_arena, &c);

	pid_t pid = tc_fork(dies_registering, (void *)points[_i]);
	TC_EQ(tc_wait_exit(pid, 20000), TC_KILLED(SIGKILL));
	fails_left = 1;
	sg_test_fail = fail_repair;
	TC_EQ(shmg_register(h, SHMG_KEY("repair/other"), "x", 1, NULL), -EIO);
	sg_test_fail = NULL;
	TC_EQ(fails_left, 0);
	/* Nothing says the owner died any more: only the shard's mark makes
	 * this locker repair. */
	uint64_t before = repairs(h);
	TC_EQ(shmg_register(h, SHMG_KEY("repair/other"), "x", 1, NULL), 0);
	ck_assert_uint_eq(repairs(h), before + 1);
	TC_ASSERT_CLEAN(h);
	TC_EQ(shmg_reap(h), 1);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

/* ---- limbo items dropped by repair -------------------------------------- */

START_TEST(test_dropped_limbo_items_are_not_freed)
{
	struct shmg_config c = one_shard();
	shmg_t *h = tc_open(tc_arena, &c);
	char key[32], m[64];
	size_t ml;

	TC_EQ(shmg_register(h, SHMG_KEY("live/a"), M1, strlen(M1), NULL), 0);
	TC_EQ(shmg_register(h, SHMG_KEY("gone/b"), M1, strlen(M1), NULL), 0);
	ref_t live = ref_of_key(h, "live/a"), gone = ref_of_key(h, "gone/b");
	TC_EQ(shmg_unregister(h, SHMG_KEY("gone/b"), NULL), 0); /* queued once */
	/* A damaged ring: a reachable block, and a block queued twice. */
	TC_EQ(shard_lock(h, 0), 0);
	TC_EQ(epoch_defer(h, 0, live, LIMBO_BLOCK), 0);
	TC_EQ(epoch_defer(h, 0, gone, LIMBO_BLOCK), 0);
	shard_unlock(h, 0);

	kill_holding_lock(0);
	reclaim_all(h); /* repairs (dropping both items), then frees what is queued */
	for (int i = 0; i < 40; i++) {
		snprintf(key, sizeof(key), "new/%02d", i);
		TC_EQ(shmg_register(h, SHMG_KEY(key), M1, strlen(M1), NULL), 0);
	}
	TC_EQ(shmg_lookup(h, SHMG_KEY("live/a"), NULL, m, sizeof(m), &ml, NULL), 0);
	ck_assert_uint_eq(ml, strlen(M1));
	ck_assert(memcmp(m, M1, ml) == 0);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

/* ---- re-indexing memberships resizes the table -------------------------- */

#define NGROUPS 900

static shmg_t *scribble_h;
static uint32_t t0_page, t0_npages;
static int scribbled;

/* At a resize during the repair: if the table the repair started from was
 * freed meanwhile, another shard may claim its pages and write them at any
 * moment; do so now. */
static void scribble_hook(const char *point)
{
	if (strcmp(point, "resize:built") != 0 || scribbled ||
	    load_relaxed(&page_desc_at(scribble_h, t0_page)->word) != 0)
		return;
	memset(page_at(scribble_h, t0_page), 0, (size_t)t0_npages * PAGE_SIZE);
	scribbled = 1;
}

static int unindex_member(shmg_t *h, struct entry *e, uint32_t pos, void *arg)
{
	(void)arg;
	if (e->kind == K_MEMBER)
		index_clear_slot(h, 0, pos);
	return 0;
}

START_TEST(test_relist_resize_under_iteration)
{
	struct shmg_config c = one_shard();
	shmg_t *h;
	char key[32];

	h = tc_open(tc_arena, &c);
	shmg_t *h2 = tc_open(tc_arena, &c);
	/* Two members each: groups with lists (a single member is its head). */
	for (int i = 0; i < NGROUPS; i++) {
		snprintf(key, sizeof(key), "rg/%d", i);
		TC_EQ(shmg_join(h, SHMG_KEY(key), "m", 1, NULL), 0);
		TC_EQ(shmg_join(h2, SHMG_KEY(key), "m", 1, NULL), 0);
	}
	TC_EQ(shard_lock(h, 0), 0);
	struct shard_header *sh = shard_at(h, 0);
	/* Every membership listed but not indexed, in a table that holds the
	 * heads at ~90% load: putting them back needs two resizes. */
	index_foreach(h, 0, unindex_member, NULL);
	TC_EQ(index_create(h, 0, 7), 0);
	/* A ring one short of the reclaim threshold: the first resize's retire
	 * of the table frees it at once. */
	epoch_reclaim(h, 0);
	while (sh->limbo_head - sh->limbo_tail < LIMBO_RECLAIM_AT - 1)
		TC_EQ(epoch_defer(h, 0, 0, 0), 0);
	t0_page = scan_table_page(h, 0);
	t0_npages = page_desc_at(h, t0_page)->used;
	shard_unlock(h, 0);

	kill_holding_lock(0);
	scribble_h = h;
	scribbled = 0;
	sg_test_hook = scribble_hook;
	TC_EQ(shard_lock(h, 0), 0); /* repairs */
	shard_unlock(h, 0);
	sg_test_hook = NULL;
	ck_assert_msg(scribbled, "the first table was not freed during the repair");
	for (int i = 0; i < NGROUPS; i++) {
		snprintf(key, sizeof(key), "rg/%d", i);
		TC_EQ(shmg_leave(h, SHMG_KEY(key), NULL), 0); /* found through the index */
		TC_EQ(shmg_leave(h2, SHMG_KEY(key), NULL), 0);
	}
	TC_ASSERT_CLEAN(h);
	shmg_close(h2);
	shmg_close(h);
}
END_TEST

/* ---- a death batch resumed after monitors changed ----------------------- */

static int victim_pipe[2];

static int registers_and_waits(void *arg)
{
	shmg_t *h = NULL;

	(void)arg;
	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 10;
	if (shmg_register(h, SHMG_KEY(KEY), M1, strlen(M1), NULL) != 0 ||
	    shmg_join(h, SHMG_KEY(GROUP), M1, strlen(M1), NULL) != 0)
		return 11;
	(void)!write(victim_pipe[1], "v", 1);
	for (;;)
		pause();
}

/* Opens, which reaps the dead victim, and dies after the death batch reached
 * two monitors. */
static int reaper_dies(void *arg)
{
	shmg_t *h = NULL;

	(void)arg;
	arm("batch:delivered", 2);
	shmg_open(tc_arena, NULL, &h);
	return 12;
}

static void expect_death_batch(shmg_t *m, int batches, const char *who)
{
	struct tc_ev ev[8];
	int n = tc_ev_drain(m, ev, 8);

	ck_assert_msg(n == 2 * batches, "%s: %d events, expected %d", who, n, 2 * batches);
	for (int i = 0; i < n; i += 2) {
		ck_assert_int_eq(ev[i].type, SHMG_EV_UNREGISTERED);
		ck_assert_str_eq(ev[i].key, KEY);
		ck_assert_int_eq(ev[i + 1].type, SHMG_EV_LEFT);
		ck_assert_str_eq(ev[i + 1].key, GROUP);
		ck_assert_int_eq(ev[i].reason, SHMG_REASON_EXIT);
		tc_ev_expect_one_batch(&ev[i], 2);
	}
}

START_TEST(test_death_batch_resumed_after_monitors_changed)
{
	struct shmg_config c = one_shard();
	shmg_t *m[4];
	struct tc_ev ev[8];
	char b;

	m[0] = tc_open(tc_arena, &c);
	for (int i = 1; i < 4; i++)
		m[i] = tc_open(tc_arena, NULL);
	for (int i = 0; i < 4; i++)
		ck_assert_uint_eq(shmg_self(m[i]).slot, (unsigned)i);
	TC_EQ(shmg_monitor(m[0], NULL, 0, NULL), 0);
	TC_EQ(shmg_monitor(m[2], NULL, 0, NULL), 0);
	TC_EQ(shmg_monitor(m[3], NULL, 0, NULL), 0);

	ck_assert_int_eq(pipe(victim_pipe), 0);
	pid_t v = tc_fork(registers_and_waits, NULL);
	TC_EQ(tc_read_full(victim_pipe[0], &b, 1, 20000), 0);
	ck_assert_int_eq(kill(v, SIGKILL), 0);
	TC_EQ(tc_wait_exit(v, 20000), TC_KILLED(SIGKILL));
	for (int i = 0; i < 4; i++)
		TC_EQ(tc_ev_drain(m[i], ev, 8), i == 1 ? 0 : 2);

	/* The reaper delivers to slots 0 and 2 and dies. */
	TC_EQ(tc_wait_exit(tc_fork(reaper_dies, NULL), 60000), TC_KILLED(SIGKILL));
	expect_death_batch(m[0], 1, "slot 0 before the resume");
	expect_death_batch(m[2], 1, "slot 2 before the resume");
	expect_death_batch(m[3], 0, "slot 3 before the resume");

	/* The monitors change: 0 stops, 1 starts (below the resume point), 2
	 * stops and starts again, 3 stays. */
	TC_EQ(shmg_demonitor(m[0], NULL, 0, NULL), 0);
	TC_EQ(shmg_monitor(m[1], NULL, 0, NULL), 0);
	TC_EQ(shmg_demonitor(m[2], NULL, 0, NULL), 0);
	TC_EQ(shmg_monitor(m[2], NULL, 0, NULL), 0);

	TC_EQ(shmg_reap(m[3]), 2); /* the victim, resumed, and the reaper */
	expect_death_batch(m[0], 0, "slot 0 (stopped monitoring, had it)");
	expect_death_batch(m[1], 0, "slot 1 (started after the entries were hidden)");
	expect_death_batch(m[2], 0, "slot 2 (had it, monitors again)");
	expect_death_batch(m[3], 1, "slot 3 (not reached before the reaper died)");
	TC_EQ(shmg_lookup(m[3], SHMG_KEY(KEY), NULL, NULL, 0, NULL, NULL), -ENOENT);
	TC_ASSERT_CLEAN(m[3]);
	for (int i = 3; i >= 0; i--)
		shmg_close(m[i]);
}
END_TEST

/* ---- a disconnect killed at each point ---------------------------------- */

#define NREG 16
#define NJOIN 6

static const struct {
	const char *point;
	int nth;
} dc_points[] = {
	{ "disconnect:tombstoned", 1 }, { "disconnect:removing", 1 }, { "disconnect:removing", 9 },
	{ "disconnect:swept", 1 },      { "disconnect:swept", 3 },    { "event:delivered", 1 },
	{ "event:delivered", 8 },
};
#define N_DC ((int)(sizeof(dc_points) / sizeof(dc_points[0])))

static int dc_index;

static int disconnects_and_dies(void *arg)
{
	shmg_t *h = NULL;

	(void)arg;
	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 10;
	arm(dc_points[dc_index].point, dc_points[dc_index].nth);
	shmg_disconnect(h, "cl");
	return 12;
}

static int count_in_cl(const struct shmg_entry *e, void *arg)
{
	if (e->cluster && strcmp(e->cluster, "cl") == 0)
		++*(long *)arg;
	return 0;
}

/* Each removal exactly once, nothing else. */
static void expect_removals(shmg_t *m, const char *who)
{
	static struct tc_ev ev[4 * (NREG + NJOIN)];
	int n = tc_ev_drain(m, ev, 4 * (NREG + NJOIN));
	int seen[NREG + NJOIN] = { 0 };

	for (int i = 0; i < n; i++) {
		int k = -1;
		ck_assert_int_eq(ev[i].reason, SHMG_REASON_CLUSTER_DISCONNECT);
		ck_assert_str_eq(ev[i].cluster, "cl");
		ck_assert_int_eq(ev[i].batch_end, 1);
		if (ev[i].type == SHMG_EV_UNREGISTERED)
			ck_assert_int_eq(sscanf(ev[i].key, "d/r%d", &k), 1);
		else if (ev[i].type == SHMG_EV_LEFT && sscanf(ev[i].key, "d/g%d", &k) == 1)
			k += NREG;
		ck_assert_msg(k >= 0 && k < NREG + NJOIN, "%s: unexpected event %d %s", who,
			      ev[i].type, ev[i].key);
		seen[k]++;
	}
	for (int k = 0; k < NREG + NJOIN; k++)
		ck_assert_msg(seen[k] == 1, "%s: removal %d reported %d times (%s at %s #%d)", who,
			      k, seen[k], "killed", dc_points[dc_index].point,
			      dc_points[dc_index].nth);
}

START_TEST(test_disconnect_killed)
{
	struct shmg_config c;
	struct shmg_opts cl = { .cluster = "cl" };
	struct tc_ev ev[64];
	char key[32];
	long n = 0;

	memset(&c, 0, sizeof(c));
	c.shards = 4;
	dc_index = _i;
	shmg_t *h = tc_open(tc_arena, &c);
	shmg_t *m1 = tc_open(tc_arena, NULL);
	shmg_t *m2 = tc_open(tc_arena, NULL);
	TC_EQ(shmg_connect(h, "cl", NULL), 0);
	TC_EQ(shmg_monitor(m1, NULL, 0, &cl), 0);
	TC_EQ(shmg_monitor(m2, NULL, 0, &cl), 0);
	for (int i = 0; i < NREG; i++) {
		snprintf(key, sizeof(key), "d/r%d", i);
		TC_EQ(shmg_register(h, SHMG_KEY(key), "r", 1, &cl), 0);
	}
	for (int i = 0; i < NJOIN; i++) {
		snprintf(key, sizeof(key), "d/g%d", i);
		TC_EQ(shmg_join(h, SHMG_KEY(key), "g", 1, &cl), 0);
	}
	TC_EQ(shmg_register(h, SHMG_KEY("d/r0"), "default", 7, NULL), 0);
	TC_EQ(tc_ev_drain(m1, ev, 64), NREG + NJOIN);
	TC_EQ(tc_ev_drain(m2, ev, 64), NREG + NJOIN);

	pid_t pid = tc_fork(disconnects_and_dies, NULL);
	TC_EQ(tc_wait_exit(pid, 60000), TC_KILLED(SIGKILL));
	TC_EQ(shmg_connected(h, "cl"), 0);
	/* Entries not yet swept are not listed. */
	ck_assert_int_ge(shmg_entries(h, 1, count_in_cl, &n), 1);
	ck_assert_int_eq(n, 0);

	TC_ASSERT_CLEAN(h); /* locks every shard: the sweep is finished */
	ck_assert_int_ge(shmg_entries(h, 1, count_in_cl, &n), 1);
	ck_assert_int_eq(n, 0);
	TC_EQ(shmg_lookup(h, SHMG_KEY("d/r0"), NULL, NULL, 0, NULL, NULL), 0);
	expect_removals(m1, "first monitor");
	expect_removals(m2, "second monitor");

	/* A later connect and disconnect report nothing again. */
	TC_EQ(shmg_connect(h, "cl", NULL), 0);
	TC_EQ(shmg_disconnect(h, "cl"), 0);
	tc_ev_expect_empty(m1, "after reconnecting");
	tc_ev_expect_empty(m2, "after reconnecting");
	TC_EQ(shmg_reap(h), 1);
	TC_ASSERT_CLEAN(h);
	shmg_close(m2);
	shmg_close(m1);
	shmg_close(h);
}
END_TEST

static Suite *repair_suite(void)
{
	Suite *s = suite_create("repair");
	TCase *tc;

	tc = tc_case(s, "readers", 60);
	tcase_add_loop_test(tc, test_stopped_reader_does_not_stall_repair, 0, 2);
	tcase_add_test(tc, test_full_ring_during_repair);
	tc = tc_case(s, "retry", 30);
	tcase_add_loop_test(tc, test_failed_repair_is_retried, 0, 2);
	tc = tc_case(s, "suspicions", 60);
	tcase_add_test(tc, test_dropped_limbo_items_are_not_freed);
	tcase_add_test(tc, test_relist_resize_under_iteration);
	tcase_add_test(tc, test_death_batch_resumed_after_monitors_changed);
	tc = tc_case(s, "disconnect", 60);
	tcase_add_loop_test(tc, test_disconnect_killed, 0, N_DC);
	return s;
}

int main(void)
{
	return tc_run(repair_suite());
}
