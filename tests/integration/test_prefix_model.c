/* SPDX-License-Identifier: MIT */
/*
 * The prefix trees against a model.  A set of forked workers, each its own
 * endpoint, joins and leaves groups of a small hierarchical key space at the
 * test's command; the test keeps the model (who is a member of what) itself
 * and, after every command, compares every prefix query — counts, local
 * counts and the member ids — with the answer computed from the model.
 *
 * Some commands arm a crash point of the tree's code (or of the join and
 * leave around it): the worker SIGKILLs itself there, mid-write, holding the
 * shard lock.  The queries must still match the model without the dead
 * worker's memberships (they are hidden at once), before and after
 * shmg_reap() repairs the shard and removes them, and shmg_check() must find
 * the arena sound.  A new worker then takes the dead one's place.
 *
 * Exact member counts come from counters in the group heads; a second test
 * holds an endpoint hidden (its reaper parked between hiding it and removing
 * its entries) and checks that the counts still equal what a walk gives,
 * with local, remote and hidden members in one group.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "remote.h"
#include "tc.h"

#define WORKERS 4
#define NKEYS 40

static char keys[NKEYS][32];
static char prefixes[64][32];
static int nprefixes;

/* Keys at three depths under a few roots; a key's prefixes are collected
 * from the keys themselves. */
static void make_keys(void)
{
	for (int i = 0; i < NKEYS; i++) {
		switch (i % 4) {
		case 0:
			snprintf(keys[i], sizeof(keys[i]), "p%d/k%d", i % 3, i);
			break;
		case 1:
			snprintf(keys[i], sizeof(keys[i]), "p%d/q%d/k%d", i % 3, i % 2, i);
			break;
		case 2:
			snprintf(keys[i], sizeof(keys[i]), "p%d/q%d/r/k%d", i % 3, i % 2, i);
			break;
		default:
			snprintf(keys[i], sizeof(keys[i]), "flat%d", i);
		}
		const char *k = keys[i];
		for (size_t n = 1; n < strlen(k); n++) {
			if (k[n - 1] != '/')
				continue;
			int seen = 0;
			for (int p = 0; p < nprefixes; p++)
				seen |= strlen(prefixes[p]) == n && strncmp(prefixes[p], k, n) == 0;
			if (!seen && nprefixes < 64) {
				memcpy(prefixes[nprefixes], k, n);
				prefixes[nprefixes++][n] = 0;
			}
		}
	}
}

static bool under(const char *key, const char *prefix)
{
	return strncmp(key, prefix, strlen(prefix)) == 0;
}

/* ---- workers ------------------------------------------------------------ */

enum { CMD_JOIN = 1, CMD_LEAVE = 2, CMD_EXIT = 3 };

struct cmd {
	int op, key;
	char point[32]; /* "" or the crash point to die at during this command */
};

static const char *armed_point;

static void hook(const char *point)
{
	if (armed_point && strcmp(point, armed_point) == 0)
		raise(SIGKILL);
}

struct worker {
	pid_t pid;
	int cmd_fd, reply_fd;
	shmg_id_t id;
	bool member[NKEYS];
};

struct worker_fds {
	int cmd, reply;
};

static int worker_main(void *arg)
{
	struct worker_fds *fds = arg;
	shmg_t *h;
	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 10;
	shmg_id_t id = shmg_self(h);
	if (tc_write_full(fds->reply, &id, sizeof(id)) < 0)
		return 11;
	sg_test_hook = hook;
	for (;;) {
		struct cmd c;
		if (tc_read_full(fds->cmd, &c, sizeof(c), 60000) < 0)
			return 12;
		if (c.op == CMD_EXIT)
			break;
		armed_point = c.point[0] ? c.point : NULL;
		const char *k = keys[c.key];
		int rc = c.op == CMD_JOIN ? shmg_join(h, k, strlen(k), "meta", 4, NULL)
					  : shmg_leave(h, k, strlen(k), NULL);
		armed_point = NULL;
		if (tc_write_full(fds->reply, &rc, sizeof(rc)) < 0)
			return 13;
	}
	shmg_close(h);
	return 0;
}

static void worker_start(struct worker *w)
{
	int cmd[2], reply[2];
	ck_assert_int_eq(pipe(cmd), 0);
	ck_assert_int_eq(pipe(reply), 0);
	struct worker_fds fds = {cmd[0], reply[1]};
	memset(w, 0, sizeof(*w));
	w->pid = tc_fork(worker_main, &fds);
	close(cmd[0]);
	close(reply[1]);
	w->cmd_fd = cmd[1];
	w->reply_fd = reply[0];
	TC_EQ(tc_read_full(w->reply_fd, &w->id, sizeof(w->id), 10000), 0);
}

static void worker_close_fds(struct worker *w)
{
	close(w->cmd_fd);
	close(w->reply_fd);
}

/* Runs one command; returns its rc, or -EPIPE if the worker died. */
static int worker_do(struct worker *w, int op, int key, const char *point)
{
	struct cmd c = {op, key, ""};
	if (point)
		snprintf(c.point, sizeof(c.point), "%s", point);
	TC_EQ(tc_write_full(w->cmd_fd, &c, sizeof(c)), 0);
	int rc;
	int r = tc_read_full(w->reply_fd, &rc, sizeof(rc), 20000);
	if (r == -EPIPE)
		return -EPIPE;
	TC_EQ(r, 0);
	return rc;
}

/* ---- comparing with the model ------------------------------------------- */

static struct worker workers[WORKERS];

static int id_cmp(const void *a, const void *b)
{
	const shmg_id_t *x = a, *y = b;
	if (x->slot != y->slot)
		return x->slot < y->slot ? -1 : 1;
	if (x->gen != y->gen)
		return x->gen < y->gen ? -1 : 1;
	return 0;
}

/* ignore: an endpoint whose memberships are not compared (a worker killed
 * mid-write, whose death may not be noticed yet), or NULL; counts are
 * compared only without one. */
static void compare_query(shmg_t *h, const char *q, const char *when, const shmg_id_t *ignore)
{
	shmg_id_t want[WORKERS * NKEYS], got[WORKERS * NKEYS];
	long n = 0, m = 0;
	for (int w = 0; w < WORKERS; w++)
		for (int k = 0; k < NKEYS; k++)
			if (workers[w].member[k] &&
			    (q[strlen(q) - 1] == '/' ? under(keys[k], q) : strcmp(keys[k], q) == 0))
				want[n++] = workers[w].id;
	if (!ignore) {
		long c = shmg_member_count(h, q, strlen(q), NULL);
		ck_assert_msg(c == n, "%s: member_count(%s) = %ld, model says %ld", when, q, c, n);
		/* The test's own endpoint is a member of nothing: every member
		 * is a worker's, and all share the node. */
		c = shmg_local_member_count(h, q, strlen(q), NULL);
		ck_assert_msg(c == n, "%s: local_member_count(%s) = %ld, model says %ld", when, q, c,
			      n);
	}
	long c = shmg_member_ids(h, q, strlen(q), got, WORKERS * NKEYS, NULL);
	ck_assert_msg(c >= n && c <= WORKERS * NKEYS, "%s: member_ids(%s) = %ld, model says %ld",
		      when, q, c, n);
	for (long i = 0; i < c; i++)
		if (!ignore || id_cmp(&got[i], ignore) != 0)
			got[m++] = got[i];
	ck_assert_msg(m == n, "%s: member_ids(%s) gives %ld compared, model says %ld", when, q, m,
		      n);
	qsort(want, (size_t)n, sizeof(want[0]), id_cmp);
	qsort(got, (size_t)n, sizeof(got[0]), id_cmp);
	for (long i = 0; i < n; i++)
		ck_assert_msg(id_cmp(&want[i], &got[i]) == 0, "%s: member_ids(%s) differ from the model",
			      when, q);
}

static void compare_all(shmg_t *h, const char *when, const shmg_id_t *ignore)
{
	for (int p = 0; p < nprefixes; p++)
		compare_query(h, prefixes[p], when, ignore);
	for (int k = 0; k < NKEYS; k += 3)
		compare_query(h, keys[k], when, ignore);
}

/* ---- the test ------------------------------------------------------------ */

static const char *const points[] = {
	"join:head",      "prefix:indexed",  "prefix:linked", "join:allocated",  "join:linked",
	"leave:unlinked", "prefix:unlinked", "prefix:pruned", "join:converting", "prefix:replaced",
	"prefix:parked",
};
#define NPOINTS (int)(sizeof(points) / sizeof(points[0]))

START_TEST(test_random_against_model)
{
	make_keys();
	shmg_t *h = tc_open(tc_arena, NULL);
	for (int w = 0; w < WORKERS; w++)
		worker_start(&workers[w]);
	unsigned seed = 12345u + (unsigned)_i;
	int steps = getenv("SHMG_PREFIX_STEPS") ? atoi(getenv("SHMG_PREFIX_STEPS")) : 1500;
	int crashes = 0;
	for (int step = 0; step < steps; step++) {
		struct worker *w = &workers[rand_r(&seed) % WORKERS];
		int k = rand_r(&seed) % NKEYS;
		int op = w->member[k] ? CMD_LEAVE : CMD_JOIN;
		const char *point = rand_r(&seed) % 6 == 0 ? points[rand_r(&seed) % NPOINTS] : NULL;
		int rc = worker_do(w, op, k, point);
		if (rc == -EPIPE) {
			/* Killed mid-write, the shard lock held: the others'
			 * memberships read as before, through a tree the
			 * writer may have left half changed. */
			TC_EQ(tc_wait_exit(w->pid, 10000), TC_KILLED(SIGKILL));
			worker_close_fds(w);
			memset(w->member, 0, sizeof(w->member));
			compare_all(h, "after a kill", &w->id);
			ck_assert_int_ge(shmg_reap(h), 0);
			compare_all(h, "after the reap", NULL);
			TC_ASSERT_CLEAN(h);
			worker_start(w);
			crashes++;
			continue;
		}
		TC_EQ(rc, 0);
		w->member[k] = op == CMD_JOIN;
		compare_all(h, op == CMD_JOIN ? "after a join" : "after a leave", NULL);
		if (step % 100 == 0)
			TC_ASSERT_CLEAN(h);
	}
	ck_assert_msg(crashes > 0, "no crash point was reached");
	for (int w = 0; w < WORKERS; w++) {
		TC_EQ(worker_do(&workers[w], CMD_EXIT, 0, NULL), -EPIPE);
		TC_EQ(tc_wait_exit(workers[w].pid, 10000), 0);
		worker_close_fds(&workers[w]);
		memset(workers[w].member, 0, sizeof(workers[w].member));
	}
	compare_all(h, "at the end", NULL);
	TC_ASSERT_CLEAN(h);
	TC_EQ(shmg_close(h), 0);
}
END_TEST

/* ---- exact counts while an endpoint is hidden ---------------------------- */

static int park_fd = -1;

static void park_hook(const char *point)
{
	if (strcmp(point, "close:removing") != 0)
		return;
	(void)!write(park_fd, "P", 1);
	for (;;)
		pause();
}

struct pipes {
	int go[2], ready[2];
};

/* Joins the groups, says so, and waits to be killed. */
static int member_main(void *arg)
{
	struct pipes *p = arg;
	shmg_t *h;
	if (shmg_open(tc_arena, NULL, &h) || shmg_join(h, SHMG_KEY("cnt/g"), "a", 1, NULL) ||
	    shmg_join(h, SHMG_KEY("cnt/x/y"), "a", 1, NULL))
		return 10;
	(void)!write(p->ready[1], "R", 1);
	for (;;)
		pause();
}

/* Opens, waits for the word, then reaps with the hook parking it once the
 * dead endpoint is hidden, before its entries are removed. */
static int reaper_main(void *arg)
{
	struct pipes *p = arg;
	shmg_t *h;
	char c;
	if (shmg_open(tc_arena, NULL, &h))
		return 10;
	(void)!write(p->ready[1], "R", 1);
	if (tc_read_full(p->go[0], &c, 1, 30000) < 0)
		return 11;
	park_fd = p->ready[1];
	sg_test_hook = park_hook;
	shmg_reap(h);
	return 12;
}

static long walked(shmg_t *h, const char *key, bool local)
{
	long n = 0;
	long rc = local ? shmg_local_members(h, key, strlen(key), tc_count_cb, &n, NULL)
			: shmg_members(h, key, strlen(key), tc_count_cb, &n, NULL);
	ck_assert_int_eq(rc, n);
	return n;
}

static void assert_counts(shmg_t *h, const char *key, long all, long local)
{
	TC_EQ(shmg_member_count(h, key, strlen(key), NULL), all);
	TC_EQ(shmg_local_member_count(h, key, strlen(key), NULL), local);
	ck_assert_int_eq(walked(h, key, false), all);
	ck_assert_int_eq(walked(h, key, true), local);
}

START_TEST(test_exact_counts_hidden)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	struct pipes p;
	char c;
	ck_assert_int_eq(pipe(p.go), 0);
	ck_assert_int_eq(pipe(p.ready), 0);
	pid_t reaper = tc_fork(reaper_main, &p);
	TC_EQ(tc_read_full(p.ready[0], &c, 1, 10000), 0);
	pid_t member = tc_fork(member_main, &p);
	TC_EQ(tc_read_full(p.ready[0], &c, 1, 10000), 0);

	TC_EQ(shmg_join(h, SHMG_KEY("cnt/g"), "self", 4, NULL), 0);
	struct remote_change rc = {.op = REMOTE_JOIN, .key = "cnt/g", .key_len = 5,
				   .id = {.node = 2, .slot = 7, .gen = 1}, .pid = 4242};
	TC_EQ(remote_put(h, 99, &rc), 0);
	assert_counts(h, "cnt/g", 3, 2);
	assert_counts(h, "cnt/", 4, 3);

	/* Dead, not yet noticed: still counted, by the counters and a walk. */
	kill(member, SIGKILL);
	TC_EQ(tc_wait_exit(member, 10000), TC_KILLED(SIGKILL));
	assert_counts(h, "cnt/g", 3, 2);

	/* Hidden, its entries not removed: the counters are not trusted. */
	TC_EQ(tc_write_full(p.go[1], "G", 1), 0);
	TC_EQ(tc_read_full(p.ready[0], &c, 1, 10000), 0);
	ck_assert_uint_eq((uint32_t)load_acquire(&h->hdr->hidden), 1);
	assert_counts(h, "cnt/g", 2, 1);
	assert_counts(h, "cnt/x/y", 0, 0);
	assert_counts(h, "cnt/", 2, 1);

	/* Removed: the counters say the same again. */
	kill(reaper, SIGKILL);
	TC_EQ(tc_wait_exit(reaper, 10000), TC_KILLED(SIGKILL));
	ck_assert_int_ge(shmg_reap(h), 1);
	ck_assert_uint_eq((uint32_t)load_acquire(&h->hdr->hidden), 0);
	assert_counts(h, "cnt/g", 2, 1);
	TC_ASSERT_CLEAN(h);
	TC_EQ(remote_purge(h, 2, SHMG_REASON_NODEDOWN), 1);
	assert_counts(h, "cnt/g", 1, 1);
	TC_EQ(shmg_leave(h, SHMG_KEY("cnt/g"), NULL), 0);
	assert_counts(h, "cnt/g", 0, 0);
	TC_ASSERT_CLEAN(h);
	TC_EQ(shmg_close(h), 0);
}
END_TEST

static void kill_hook(const char *point)
{
	if (strcmp(point, "join:linked") == 0)
		raise(SIGKILL);
}

/* Dies between linking its membership and counting it. */
static int dying_joiner(void *arg)
{
	(void)arg;
	shmg_t *h;
	if (shmg_open(tc_arena, NULL, &h) || shmg_join(h, SHMG_KEY("cnt/d"), "a", 1, NULL))
		return 10;
	sg_test_hook = kill_hook;
	shmg_join(h, SHMG_KEY("cnt/e"), "a", 1, NULL);
	return 11;
}

/* A join killed after its link, before its count: until the shard is
 * repaired, the counts still agree with a walk. */
START_TEST(test_exact_counts_after_crash)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	pid_t p = tc_fork(dying_joiner, NULL);
	TC_EQ(tc_wait_exit(p, 10000), TC_KILLED(SIGKILL));
	assert_counts(h, "cnt/e", 1, 1);
	assert_counts(h, "cnt/d", 1, 1);
	ck_assert_int_ge(shmg_reap(h), 1);
	assert_counts(h, "cnt/e", 0, 0);
	assert_counts(h, "cnt/d", 0, 0);
	TC_ASSERT_CLEAN(h);
	TC_EQ(shmg_close(h), 0);
}
END_TEST

/* A remote member joining a group whose one member is local turns it into
 * a list; a resync of the remote node leaves the local member alone. */
START_TEST(test_remote_joins_single_member_group)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	TC_EQ(shmg_join(h, SHMG_KEY("rc/g"), "self", 4, NULL), 0);
	struct remote_change rc = {.op = REMOTE_JOIN, .key = "rc/g", .key_len = 4,
				   .id = {.node = 3, .slot = 9, .gen = 2}, .pid = 77};
	TC_EQ(remote_put(h, 5, &rc), 0);
	assert_counts(h, "rc/g", 2, 1);
	assert_counts(h, "rc/", 2, 1);
	TC_ASSERT_CLEAN(h);
	struct keyref k;
	TC_EQ(key_prepare(h, SHMG_KEY("rc/g"), NULL, 0, &k), 0);
	TC_EQ(remote_resync(h, 3, 5, k.shard, NULL, 0, 1, NULL), 0);
	assert_counts(h, "rc/g", 1, 1);
	rc.op = REMOTE_LEAVE;
	TC_EQ(remote_put(h, 5, &rc), -ENOENT);
	rc.op = REMOTE_JOIN;
	TC_EQ(remote_put(h, 5, &rc), 0);
	TC_EQ(shmg_leave(h, SHMG_KEY("rc/g"), NULL), 0);
	assert_counts(h, "rc/g", 1, 0);
	TC_ASSERT_CLEAN(h);
	TC_EQ(remote_purge(h, 3, SHMG_REASON_NODEDOWN), 1);
	assert_counts(h, "rc/", 0, 0);
	TC_ASSERT_CLEAN(h);
	TC_EQ(shmg_close(h), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("prefix_model");
	TCase *tc = tc_case(s, "model", 300);
	tcase_add_loop_test(tc, test_random_against_model, 0, 3);
	tc = tc_case(s, "counts", 60);
	tcase_add_test(tc, test_exact_counts_hidden);
	tcase_add_test(tc, test_exact_counts_after_crash);
	tcase_add_test(tc, test_remote_joins_single_member_group);
	return tc_run(s);
}
