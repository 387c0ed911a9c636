/* SPDX-License-Identifier: MIT */
/*
 * What a stopped process (SIGSTOP, a debugger) costs the others.
 *
 * A writer is parked at "register:locked" (holding its shard's lock) and
 * SIGSTOPped.  Readers, shmg_info, writers on other shards, shmg_close of an
 * endpoint with nothing on that shard and `shmgroupctl lookup/info` must not
 * wait for it; writers on its shard, a close that needs its shard and
 * `shmgroupctl check` wait at most the busy-retry budget and then answer
 * -EBUSY (check: "busy").  Once it is continued everything proceeds, the
 * closed endpoint's entries go in one batch with reason "normal", and the
 * arena is clean.
 *
 * A reader is stopped inside a read section while a writer fills the limbo
 * ring: the writer must back off (its CPU time stays far below what a 50 us
 * retry loop burns) and get -EBUSY within the budget, having changed
 * nothing; a close whose batch went out leaves the rest to the next reap.
 *
 * Without bounded waits these tests hang, and the tcase timeout fails them.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "tc.h"

/* The budget the tests give their writers: 20 x 50 ms. */
#define ATTEMPTS 20u
#define INTERVAL_MS 50u
#define BUDGET_MS (ATTEMPTS * INTERVAL_MS)
/* What "promptly" means for something that must not wait at all: far less
 * than a budget, with room for a loaded machine. */
#define PROMPT_MS 500u

static int park_pipe[2], go_pipe[2];
static char stuck_key[64];

static void park_hook(const char *point)
{
	char b;

	if (strcmp(point, "register:locked") != 0)
		return;
	(void)!write(park_pipe[1], "P", 1);
	(void)!read(go_pipe[0], &b, 1);
}

/* A key of o's cluster on `shard`, "<prefix><n>". */
static void key_in(shmg_t *h, const struct shmg_opts *o, const char *prefix, uint32_t shard,
		   char *buf, size_t cap)
{
	struct keyref k;

	for (int i = 0; i < 100000; i++) {
		snprintf(buf, cap, "%s%d", prefix, i);
		ck_assert_int_eq(key_prepare(h, buf, strlen(buf), o, KEY_WRITE, &k), 0);
		if (k.shard == shard)
			return;
	}
	ck_abort_msg("no key on shard %u", shard);
}

/* A key of the default cluster on `shard`. */
static void key_on_shard(shmg_t *h, const char *prefix, uint32_t shard, char *buf, size_t cap)
{
	key_in(h, NULL, prefix, shard, buf, cap);
}

static struct shmg_config four_shards(void)
{
	struct shmg_config c;

	memset(&c, 0, sizeof(c));
	c.shards = 4;
	return c;
}

/* ---- a writer stopped holding a shard lock ----------------------------- */

static int stuck_writer(void *arg)
{
	shmg_t *h = NULL;
	int rc;

	(void)arg;
	close(park_pipe[0]);
	close(go_pipe[1]);
	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 10;
	sg_test_hook = park_hook;
	rc = shmg_register(h, SHMG_KEY(stuck_key), "w", 1, NULL);
	sg_test_hook = NULL;
	if (rc != 0)
		return 20 + (-rc & 0xff) % 200;
	return shmg_close(h) == 0 ? 0 : 11;
}

/* Starts the writer, waits until it holds the lock of stuck_key's shard and
 * stops it. */
static pid_t park_and_stop(void)
{
	char b;
	int st;

	ck_assert_int_eq(pipe(park_pipe), 0);
	ck_assert_int_eq(pipe(go_pipe), 0);
	pid_t pid = tc_fork(stuck_writer, NULL);
	close(park_pipe[1]);
	close(go_pipe[0]);
	st = tc_read_full(park_pipe[0], &b, 1, 30000);
	ck_assert_msg(st == 0, "writer did not park (%d), exit %d", st, tc_wait_exit(pid, 1000));
	ck_assert_int_eq(kill(pid, SIGSTOP), 0);
	ck_assert_int_eq(waitpid(pid, &st, WUNTRACED), pid);
	ck_assert(WIFSTOPPED(st));
	return pid;
}

/* Continues the writer and lets it finish its write. */
static void resume(pid_t pid)
{
	ck_assert_int_eq(kill(pid, SIGCONT), 0);
	ck_assert_int_eq(tc_write_full(go_pipe[1], "G", 1), 0);
	TC_EQ(tc_wait_exit(pid, 30000), 0);
	close(go_pipe[1]);
	close(park_pipe[0]);
}

static uint64_t elapsed_since(uint64_t t0)
{
	return tc_now_ms() - t0;
}

/* Asserts that call took a budget, not much less nor more than twice it. */
#define ASSERT_WAITED_BUDGET(ms)                                                                   \
	ck_assert_msg((ms) >= BUDGET_MS - 20 && (ms) < 2 * BUDGET_MS,                              \
		      "waited %llu ms, budget %u ms", (unsigned long long)(ms), BUDGET_MS)
#define ASSERT_PROMPT(ms) ck_assert_msg((ms) < PROMPT_MS, "took %llu ms", (unsigned long long)(ms))

struct reader_result {
	long lookups_ok;
	int info_rc;
	uint64_t ms;
};

static struct reader_result *rres;

/* Another process: open, look up, info, close, all without waiting. */
static int other_reader(void *arg)
{
	shmg_t *h = NULL;
	struct shmg_info in;
	uint64_t t0 = tc_now_ms();

	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 10;
	for (int i = 0; i < 1000; i++)
		rres->lookups_ok += shmg_lookup(h, (const char *)arg, strlen(arg), NULL, NULL, 0,
						NULL, NULL) == 0;
	rres->info_rc = shmg_info(h, &in);
	if (shmg_close(h) != 0)
		return 11;
	rres->ms = elapsed_since(t0);
	return 0;
}

START_TEST(test_stopped_writer)
{
	struct shmg_config c = four_shards();
	char a_key[64], b_key[64], a_key2[64], c_key[64], c_key2[64];
	struct shmg_opts c1 = { .cluster = "c1" };
	struct shmg_info in;
	shmg_t *h = tc_open(tc_arena, &c);
	uint64_t t0, ms;

	key_on_shard(h, "stop/stuck", 1, stuck_key, sizeof(stuck_key));
	key_on_shard(h, "stop/a", 1, a_key, sizeof(a_key));
	key_on_shard(h, "stop/a2-", 1, a_key2, sizeof(a_key2));
	key_on_shard(h, "stop/b", 2, b_key, sizeof(b_key));
	TC_EQ(shmg_register(h, SHMG_KEY(a_key), "a", 1, NULL), 0);
	TC_EQ(shmg_connect(h, "c1", NULL), 0);
	key_in(h, &c1, "stop/c", 1, c_key, sizeof(c_key));
	key_in(h, &c1, "stop/c", 2, c_key2, sizeof(c_key2));
	TC_EQ(shmg_register(h, SHMG_KEY(c_key), "c", 1, &c1), 0);
	TC_EQ(shmg_register(h, SHMG_KEY(c_key2), "c", 1, &c1), 0);
	pid_t pid = park_and_stop();

	/* Readers go on, in this process and another. */
	t0 = tc_now_ms();
	for (int i = 0; i < 10000; i++)
		TC_EQ(shmg_lookup(h, SHMG_KEY(a_key), NULL, NULL, 0, NULL, NULL), 0);
	TC_EQ(shmg_info(h, &in), 0);
	ASSERT_PROMPT(elapsed_since(t0));
	rres = tc_shared_alloc(sizeof(*rres));
	TC_EQ(tc_wait_exit(tc_fork(other_reader, a_key), 5000), 0);
	TC_EQ(rres->lookups_ok, 1000);
	TC_EQ(rres->info_rc, 0);
	ASSERT_PROMPT(rres->ms);

	/* Writers on the stopped writer's shard: -EBUSY after the budget, and
	 * nothing changed. */
	TC_EQ(shmg_set_busy_retry(h, ATTEMPTS, INTERVAL_MS), 0);
	t0 = tc_now_ms();
	TC_EQ(shmg_register(h, SHMG_KEY(a_key2), "x", 1, NULL), -EBUSY);
	ms = elapsed_since(t0);
	ASSERT_WAITED_BUDGET(ms);
	TC_EQ(shmg_lookup(h, SHMG_KEY(a_key2), NULL, NULL, 0, NULL, NULL), -ENOENT);
	t0 = tc_now_ms();
	TC_EQ(shmg_unregister(h, SHMG_KEY(a_key), NULL), -EBUSY);
	ASSERT_WAITED_BUDGET(elapsed_since(t0));
	TC_EQ(shmg_lookup(h, SHMG_KEY(a_key), NULL, NULL, 0, NULL, NULL), 0);
	TC_EQ(shmg_join(h, SHMG_KEY(a_key2), NULL, 0, NULL), -EBUSY);
	TC_EQ(shmg_member_count(h, SHMG_KEY(a_key2), NULL), 0);
	/* attempts 0: one try, no wait. */
	TC_EQ(shmg_set_busy_retry(h, 0, INTERVAL_MS), 0);
	t0 = tc_now_ms();
	TC_EQ(shmg_register(h, SHMG_KEY(a_key2), "x", 1, NULL), -EBUSY);
	ASSERT_PROMPT(elapsed_since(t0));
	TC_EQ(shmg_set_busy_retry(h, ATTEMPTS, INTERVAL_MS), 0);

	/* A writer on another shard does not wait. */
	t0 = tc_now_ms();
	TC_EQ(shmg_register(h, SHMG_KEY(b_key), "b", 1, NULL), 0);
	TC_EQ(shmg_join(h, SHMG_KEY(b_key), "b", 1, NULL), 0);
	ASSERT_PROMPT(elapsed_since(t0));

	/* A disconnect sweeps the shards it can and says -EBUSY: the cluster is
	 * gone all the same, and reconnecting would need the held shard. */
	t0 = tc_now_ms();
	TC_EQ(shmg_disconnect(h, "c1"), -EBUSY);
	ASSERT_WAITED_BUDGET(elapsed_since(t0));
	TC_EQ(shmg_connected(h, "c1"), 0);
	TC_EQ(shmg_lookup(h, SHMG_KEY(c_key), NULL, NULL, 0, NULL, &c1), -ENOENT);
	TC_EQ(shmg_connect(h, "c1", NULL), -EBUSY);
	TC_EQ(shmg_connected(h, "c1"), 0);

	/* Once continued, the writer finishes and so does everyone else;
	 * reconnecting sweeps what the disconnect left. */
	resume(pid);
	TC_EQ(shmg_connect(h, "c1", NULL), 0);
	TC_EQ(shmg_lookup(h, SHMG_KEY(c_key), NULL, NULL, 0, NULL, &c1), -ENOENT);
	TC_EQ(shmg_registry_count(h, &c1), 0);
	TC_EQ(shmg_lookup(h, SHMG_KEY(stuck_key), NULL, NULL, 0, NULL, NULL), -ENOENT);
	TC_EQ(shmg_register(h, SHMG_KEY(a_key2), "x", 1, NULL), 0);
	TC_EQ(shmg_unregister(h, SHMG_KEY(a_key), NULL), 0);
	TC_ASSERT_CLEAN(h);
	TC_EQ(shmg_close(h), 0);
}
END_TEST

/* ---- close while a shard is held ---------------------------------------- */

/* Receives what m has waiting and keeps the events of endpoint id. */
static int events_of(shmg_t *m, shmg_id_t id, struct shmg_event *out, int max)
{
	struct shmg_event ev[16];
	int n, kept = 0;

	while ((n = shmg_receive(m, ev, 16, 0)) > 0)
		for (int i = 0; i < n; i++)
			if (shmg_id_equal(ev[i].id, id) && kept < max)
				out[kept++] = ev[i];
	TC_EQ(n, 0);
	return kept;
}

static shmg_t *reaper_h;

/* Runs the reaper until only this test's two endpoints are left. */
static bool reaped_all(void *arg)
{
	struct shmg_info in;

	(void)arg;
	if (shmg_reaper_dispatch(reaper_h) < 0 || shmg_info(reaper_h, &in) != 0)
		return false;
	return in.endpoints_live == 2;
}

START_TEST(test_stopped_writer_close)
{
	struct shmg_config c = four_shards();
	char a_key[64], b_key[64], b_group[64];
	struct shmg_event ev[16];
	shmg_t *h = tc_open(tc_arena, &c);
	shmg_t *m = tc_open(tc_arena, NULL);
	shmg_t *q = tc_open(tc_arena, NULL);
	shmg_t *r = tc_open(tc_arena, NULL);
	uint64_t t0;
	int n;

	key_on_shard(h, "stop/stuck", 1, stuck_key, sizeof(stuck_key));
	key_on_shard(h, "stop/a", 1, a_key, sizeof(a_key));
	key_on_shard(h, "stop/b", 2, b_key, sizeof(b_key));
	key_on_shard(h, "stop/g", 3, b_group, sizeof(b_group));
	TC_EQ(shmg_monitor(m, SHMG_KEY("stop/"), NULL), 0);
	/* q has entries on the stuck shard and another; r only elsewhere. */
	TC_EQ(shmg_register(q, SHMG_KEY(a_key), "q", 1, NULL), 0);
	TC_EQ(shmg_join(q, SHMG_KEY(b_group), "q", 1, NULL), 0);
	TC_EQ(shmg_register(r, SHMG_KEY(b_key), "r", 1, NULL), 0);
	while (shmg_receive(m, ev, 16, 0) > 0)
		;
	pid_t pid = park_and_stop();

	/* No entry on the held shard: close does not go near it. */
	t0 = tc_now_ms();
	TC_EQ(shmg_close(r), 0);
	ASSERT_PROMPT(elapsed_since(t0));
	TC_EQ(shmg_lookup(h, SHMG_KEY(b_key), NULL, NULL, 0, NULL, NULL), -ENOENT);
	n = shmg_receive(m, ev, 16, 0);
	TC_EQ(n, 1);
	ck_assert_int_eq(ev[0].type, SHMG_EV_UNREGISTERED);
	ck_assert_int_eq(ev[0].reason, SHMG_REASON_NORMAL);

	/* An entry there: the close gives up after the budget, its entries
	 * hidden at once but not yet removed, and no event yet. */
	shmg_id_t qid = shmg_self(q);
	TC_EQ(shmg_set_busy_retry(q, ATTEMPTS, INTERVAL_MS), 0);
	t0 = tc_now_ms();
	TC_EQ(shmg_close(q), -EBUSY);
	ASSERT_WAITED_BUDGET(elapsed_since(t0));
	TC_EQ(shmg_lookup(h, SHMG_KEY(a_key), NULL, NULL, 0, NULL, NULL), -ENOENT);
	TC_EQ(shmg_member_count(h, SHMG_KEY(b_group), NULL), 0);
	TC_EQ(shmg_receive(m, ev, 16, 0), 0);
	/* A reap meets the same shard: -EBUSY within the budget. */
	TC_EQ(shmg_set_busy_retry(h, ATTEMPTS, INTERVAL_MS), 0);
	t0 = tc_now_ms();
	TC_EQ(shmg_reap(h), -EBUSY);
	ASSERT_WAITED_BUDGET(elapsed_since(t0));
	/* Opening reaps too, and so does the reaper, but neither waits for a
	 * stopped writer. */
	t0 = tc_now_ms();
	shmg_t *o = tc_open(tc_arena, NULL);
	ASSERT_PROMPT(elapsed_since(t0));
	TC_EQ(shmg_close(o), 0);
	TC_EQ(shmg_reaper_enable(h), 1);
	t0 = tc_now_ms();
	ck_assert_int_gt(shmg_reaper_dispatch(h), 0);
	ASSERT_PROMPT(elapsed_since(t0));

	/* Continued: the reaper's next sweep removes q's entries in one batch,
	 * reason normal since q closed (nobody died). */
	resume(pid);
	reaper_h = h;
	ck_assert_msg(tc_wait_until(reaped_all, NULL, 5000), "the reaper did not finish q");
	TC_EQ(shmg_reap(h), 0);
	n = events_of(m, qid, ev, 16);
	TC_EQ(n, 2);
	ck_assert_int_eq(ev[0].type, SHMG_EV_UNREGISTERED);
	ck_assert_int_eq(ev[1].type, SHMG_EV_LEFT);
	ck_assert_int_eq(ev[0].reason, SHMG_REASON_NORMAL);
	ck_assert_int_eq(ev[1].reason, SHMG_REASON_NORMAL);
	ck_assert_uint_eq(ev[0].batch, ev[1].batch);
	ck_assert_int_eq(ev[1].batch_end, 1);
	/* (the stuck writer registered and closed meanwhile) */
	TC_EQ(shmg_registry_count(h, NULL), 0);
	TC_ASSERT_CLEAN(h);
	struct shmg_info in;
	TC_EQ(shmg_info(h, &in), 0);
	ck_assert_uint_eq(in.endpoints_live, 2);
	TC_EQ(shmg_close(m), 0);
	TC_EQ(shmg_close(h), 0);
}
END_TEST

/* ---- the command-line tool ---------------------------------------------- */

/* Runs `shmgroupctl -g <arena> args...`, returns its exit code (or
 * -ETIMEDOUT) and its standard output in out. */
static int run_ctl(const char *const *args, char *out, size_t cap, uint64_t *ms)
{
	const char *ctl = getenv("SHMGROUPCTL");
	char *argv[8];
	int p[2], n = 0;

	ck_assert_msg(ctl != NULL, "SHMGROUPCTL is not set");
	argv[n++] = (char *)ctl;
	argv[n++] = (char *)"-g";
	argv[n++] = tc_arena;
	for (; *args && n < 7; args++)
		argv[n++] = (char *)*args;
	argv[n] = NULL;
	ck_assert_int_eq(pipe(p), 0);
	uint64_t t0 = tc_now_ms();
	fflush(NULL);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(p[1], 1);
		close(p[0]);
		execv(ctl, argv);
		_exit(127);
	}
	close(p[1]);
	size_t len = 0;
	ssize_t r;
	while (len + 1 < cap && (r = read(p[0], out + len, cap - 1 - len)) > 0)
		len += (size_t)r;
	out[len] = 0;
	close(p[0]);
	int st = tc_wait_exit(pid, 10000);
	*ms = elapsed_since(t0);
	return st;
}

START_TEST(test_stopped_writer_tools)
{
	struct shmg_config c = four_shards();
	char a_key[64], out[4096];
	uint64_t ms;
	int st;
	shmg_t *h = tc_open(tc_arena, &c);

	key_on_shard(h, "stop/stuck", 1, stuck_key, sizeof(stuck_key));
	key_on_shard(h, "stop/a", 1, a_key, sizeof(a_key));
	TC_EQ(shmg_register(h, SHMG_KEY(a_key), "a", 1, NULL), 0);
	pid_t pid = park_and_stop();

	const char *lookup[] = { "lookup", a_key, NULL };
	st = run_ctl(lookup, out, sizeof(out), &ms);
	ck_assert_msg(st == 0, "lookup: exit %d: %s", st, out);
	ck_assert_msg(strstr(out, a_key) != NULL, "lookup printed: %s", out);
	ASSERT_PROMPT(ms);

	const char *info[] = { "info", NULL };
	st = run_ctl(info, out, sizeof(out), &ms);
	ck_assert_msg(st == 0, "info: exit %d: %s", st, out);
	ASSERT_PROMPT(ms);

	/* check waits one default budget for the held shard, then reports it
	 * busy (a problem: exit 1) and checks the others. */
	const char *check[] = { "check", NULL };
	st = run_ctl(check, out, sizeof(out), &ms);
	ck_assert_msg(st == 1, "check: exit %d: %s", st, out);
	ck_assert_msg(strstr(out, "shard 1: busy") != NULL, "check printed: %s", out);
	ck_assert_msg(strstr(out, "1 problem found") != NULL, "check printed: %s", out);
	ck_assert_msg(ms < 2 * SHMG_BUSY_RETRY_ATTEMPTS * SHMG_BUSY_RETRY_INTERVAL_MS,
		      "check took %llu ms", (unsigned long long)ms);

	resume(pid);
	st = run_ctl(check, out, sizeof(out), &ms);
	ck_assert_msg(st == 0, "check after resume: exit %d: %s", st, out);
	TC_ASSERT_CLEAN(h);
	TC_EQ(shmg_close(h), 0);
}
END_TEST

/* ---- a reader stopped inside a read section ---------------------------- */

static int stuck_reader(void *arg)
{
	shmg_t *h = NULL;

	(void)arg;
	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 10;
	if (shmg_read_begin(h) != 0)
		return 11;
	raise(SIGSTOP);
	if (shmg_read_end(h) != 0)
		return 12;
	return shmg_close(h) == 0 ? 0 : 13;
}

/* Registrations of the endpoint closed while the ring is full: more than
 * its few free places can take. */
#define NQ 10

static uint64_t thread_cpu_us(void)
{
	struct rusage ru;

	ck_assert_int_eq(getrusage(RUSAGE_THREAD, &ru), 0);
	return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
	       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

START_TEST(test_stopped_reader)
{
	struct shmg_config c;
	struct shmg_event ev[16];
	char meta[2][8] = { "churn-0", "churn-1" }, got[8], qkey[16];
	size_t len;
	int st, rc = 0, i;

	memset(&c, 0, sizeof(c));
	c.shards = 1;
	shmg_t *h = tc_open(tc_arena, &c);
	shmg_t *m = tc_open(tc_arena, NULL);
	shmg_t *q = tc_open(tc_arena, NULL);
	TC_EQ(shmg_monitor(m, SHMG_KEY("q/"), NULL), 0);
	for (i = 0; i < NQ; i++) {
		snprintf(qkey, sizeof(qkey), "q/%d", i);
		TC_EQ(shmg_register(q, SHMG_KEY(qkey), "q", 1, NULL), 0);
	}
	TC_EQ(shmg_register(h, SHMG_KEY("churn"), meta[0], 7, NULL), 0);
	while (shmg_receive(m, ev, 16, 0) > 0)
		;

	pid_t pid = tc_fork(stuck_reader, NULL);
	ck_assert_int_eq(waitpid(pid, &st, WUNTRACED), pid);
	ck_assert_msg(WIFSTOPPED(st), "reader did not stop: status %#x", st);

	/* Every replacement retires a block the stopped reader may still see:
	 * the ring fills, and then a write gives up. */
	TC_EQ(shmg_set_busy_retry(h, ATTEMPTS, INTERVAL_MS), 0);
	uint64_t t0 = 0, cpu0 = 0;
	for (i = 1; i <= (int)LIMBO_CAP + 1; i++) {
		t0 = tc_now_ms();
		cpu0 = thread_cpu_us();
		rc = shmg_register(h, SHMG_KEY("churn"), meta[i % 2], 7, NULL);
		if (rc != 0)
			break;
	}
	uint64_t ms = elapsed_since(t0), cpu_us = thread_cpu_us() - cpu0;
	TC_EQ(rc, -EBUSY);
	ck_assert_msg(i > (int)(LIMBO_CAP - WRITE_RETIRES_MAX), "gave up after %d writes", i);
	ASSERT_WAITED_BUDGET(ms);
	/* A 50 us retry loop of grace periods burnt about a quarter of a CPU;
	 * backing off to 5 ms keeps it to a few per cent at most. */
	ck_assert_msg(cpu_us * 100 < ms * 1000 * 5, "blocked writer used %llu us of CPU in %llu ms",
		      (unsigned long long)cpu_us, (unsigned long long)ms);
	/* Nothing changed: the last successful write is what readers see. */
	TC_EQ(shmg_lookup(h, SHMG_KEY("churn"), NULL, got, sizeof(got), &len, NULL), 0);
	ck_assert_int_eq(memcmp(got, meta[(i - 1) % 2], 7), 0);
	/* Readers never wait. */
	t0 = tc_now_ms();
	for (int k = 0; k < 10000; k++)
		TC_EQ(shmg_lookup(h, SHMG_KEY("q/0"), NULL, NULL, 0, NULL, NULL), 0);
	ASSERT_PROMPT(elapsed_since(t0));

	/* A close takes its lock and sends its batch, then removes what the
	 * few free places of the ring allow: -EBUSY, its entries hidden, the
	 * rest left to the next reap. */
	TC_EQ(shmg_set_busy_retry(q, ATTEMPTS, INTERVAL_MS), 0);
	t0 = tc_now_ms();
	TC_EQ(shmg_close(q), -EBUSY);
	ASSERT_WAITED_BUDGET(elapsed_since(t0));
	TC_EQ(shmg_lookup(h, SHMG_KEY("q/0"), NULL, NULL, 0, NULL, NULL), -ENOENT);
	TC_EQ(shmg_member_count(h, SHMG_KEY("q/"), NULL), 0);
	TC_EQ(shmg_receive(m, ev, 16, 0), NQ);
	for (i = 0; i < NQ; i++) {
		ck_assert_int_eq(ev[i].type, SHMG_EV_UNREGISTERED);
		ck_assert_int_eq(ev[i].reason, SHMG_REASON_NORMAL);
		ck_assert_uint_eq(ev[i].batch, ev[0].batch);
		ck_assert_int_eq(ev[i].batch_end, i == NQ - 1);
	}
	long left = shmg_registry_count(h, NULL);
	ck_assert_msg(left > 1 && left < 1 + NQ, "%ld registrations left", left);

	/* Continued, the reader leaves its section: writes go on, the reap
	 * finishes the close without a second batch, and all is clean. */
	ck_assert_int_eq(kill(pid, SIGCONT), 0);
	TC_EQ(tc_wait_exit(pid, 30000), 0);
	TC_EQ(shmg_register(h, SHMG_KEY("churn"), "after", 5, NULL), 0);
	TC_EQ(shmg_reap(h), 1);
	TC_EQ(shmg_receive(m, ev, 16, 0), 0);
	TC_EQ(shmg_registry_count(h, NULL), 1);
	TC_ASSERT_CLEAN(h);
	TC_EQ(shmg_close(m), 0);
	TC_EQ(shmg_close(h), 0);
}
END_TEST

/* ---- the setting itself -------------------------------------------------- */

START_TEST(test_busy_retry_args)
{
	shmg_t *h = tc_open(tc_arena, NULL);

	TC_EQ(shmg_set_busy_retry(h, 10, 0), -EINVAL);
	TC_EQ(shmg_set_busy_retry(h, 10, 60001), -EINVAL);
	TC_EQ(shmg_set_busy_retry(h, 2000000, 60000), -EINVAL);
	TC_EQ(shmg_set_busy_retry(NULL, 10, 10), -EBADF);
	TC_EQ(shmg_set_busy_retry(h, 0, 1), 0);
	TC_EQ(shmg_set_busy_retry(h, SHMG_BUSY_RETRY_ATTEMPTS, SHMG_BUSY_RETRY_INTERVAL_MS), 0);
	/* Without contention the budget changes nothing. */
	TC_EQ(shmg_register(h, SHMG_KEY("k"), NULL, 0, NULL), 0);
	TC_EQ(shmg_close(h), 0);
}
END_TEST

static Suite *stopped_suite(void)
{
	Suite *s = suite_create("stopped");
	TCase *tc;

	tc = tc_case(s, "writer", 60);
	tcase_add_test(tc, test_stopped_writer);
	tcase_add_test(tc, test_stopped_writer_close);
	tcase_add_test(tc, test_stopped_writer_tools);
	tc = tc_case(s, "reader", 60);
	tcase_add_test(tc, test_stopped_reader);
	tc = tc_case(s, "setting", 10);
	tcase_add_test(tc, test_busy_retry_args);
	return s;
}

int main(void)
{
	return tc_run(stopped_suite());
}
