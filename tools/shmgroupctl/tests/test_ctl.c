/* SPDX-License-Identifier: MIT */
/*
 * shmgroupctl, run as its own binary (path in argv[1]), against a live arena
 * whose figures the test knows: `stats` once (text and JSON), `stats --watch`
 * following changes made between two of its lines, ending on SIGINT, and
 * stopping when the arena is removed under it; and its usage errors.
 * As root, it also attaches to another user's arena only when told its
 * owner with --owner (skipped with a message when not root).
 *
 * The fixture creates the group with max_endpoints 100, connects two named
 * clusters, opens three endpoints (one of them hosting the reaper, so
 * reaper_pid is this process) and registers keys; shmgroupctl's own endpoint
 * makes four live endpoints.  `clusters` lists leases: time left, due, and
 * kept by a registration after a reaper pass.  A tool left running by a failed assertion is
 * killed by the teardown or an atexit handler; the arena is tc's (tc.h).
 */
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmgroup.h"
#include "tc.h"

#define MAX_ENDPOINTS 100

static const char *ctl_path;
static shmg_t *h[3];

/* A running shmgroupctl: its stdout as a stream, its stderr as a pipe. */
struct run {
	pid_t pid;
	FILE *out;
	int err;
};
static struct run running;

static uint64_t real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Starts `shmgroupctl -g GROUP ARGS...` (args NULL-terminated). */
static void ctl_start(struct run *r, const char *const *args)
{
	const char *argv[32];
	int o[2], e[2], n = 0, i;

	argv[n++] = "shmgroupctl";
	argv[n++] = "-g";
	argv[n++] = tc_arena;
	for (i = 0; args[i]; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	ck_assert_int_eq(pipe(o), 0);
	ck_assert_int_eq(pipe(e), 0);
	r->pid = fork();
	ck_assert_int_ge(r->pid, 0);
	if (r->pid == 0) {
		dup2(o[1], STDOUT_FILENO);
		dup2(e[1], STDERR_FILENO);
		close(o[0]);
		close(o[1]);
		close(e[0]);
		close(e[1]);
		execv(ctl_path, (char *const *)argv);
		_exit(127);
	}
	close(o[1]);
	close(e[1]);
	r->out = fdopen(o[0], "r");
	ck_assert_ptr_nonnull(r->out);
	r->err = e[0];
}

/* Reads the rest of stdout into out (may be NULL) and all of stderr into
 * err, and reaps the tool.  Returns its exit status, or -1 if it did not
 * exit normally. */
static int ctl_finish(struct run *r, char *out, size_t out_cap, char *err, size_t err_cap)
{
	size_t n = 0;
	ssize_t k;
	int st;

	if (out) {
		n = fread(out, 1, out_cap - 1, r->out);
		out[n] = '\0';
	}
	fclose(r->out);
	n = 0;
	while (n < err_cap - 1 && (k = read(r->err, err + n, err_cap - 1 - n)) > 0)
		n += (size_t)k;
	err[n] = '\0';
	close(r->err);
	ck_assert_int_eq(waitpid(r->pid, &st, 0), r->pid);
	r->pid = 0;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Runs the tool to its end. */
static int ctl_run(char *out, size_t out_cap, char *err, size_t err_cap, const char *const *args)
{
	ctl_start(&running, args);
	return ctl_finish(&running, out, out_cap, err, err_cap);
}

static void next_line(struct run *r, char *buf, size_t cap)
{
	ck_assert_msg(fgets(buf, (int)cap, r->out) != NULL, "shmgroupctl ended early");
	ck_assert_msg(strchr(buf, '\n') != NULL, "line too long: %s", buf);
}

/* The number after "key": in a one-line JSON object. */
static uint64_t json_u64(const char *line, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(line, pat);
	ck_assert_msg(p != NULL, "no %s in %s", key, line);
	return strtoull(p + strlen(pat), NULL, 10);
}

static void stop_tool(void)
{
	if (running.pid > 0) {
		kill(running.pid, SIGKILL);
		waitpid(running.pid, NULL, 0);
		running.pid = 0;
	}
}

/* After tc_setup, which named the arena. */
static void setup(void)
{
	struct shmg_config cfg = { .max_endpoints = MAX_ENDPOINTS, .flags = SHMG_OPEN_EXCL };
	char key[32];
	int i;

	atexit(stop_tool);
	ck_assert_int_eq(shmg_open(tc_arena, &cfg, &h[0]), 0);
	ck_assert_int_eq(shmg_open(tc_arena, NULL, &h[1]), 0);
	ck_assert_int_eq(shmg_open(tc_arena, NULL, &h[2]), 0);
	ck_assert_int_eq(shmg_reaper_enable(h[0]), 1);
	ck_assert_int_eq(shmg_connect(h[0], "c1", NULL), 0);
	ck_assert_int_eq(shmg_connect(h[0], "c2", NULL), 0);
	for (i = 0; i < 200; i++) {
		snprintf(key, sizeof(key), "k/%d", i);
		ck_assert_int_eq(shmg_register(h[1 + i % 2], SHMG_KEY(key), "meta", 4, NULL), 0);
	}
}

static void teardown(void)
{
	stop_tool();
	for (int i = 2; i >= 0; i--)
		shmg_close(h[i]);
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                    */
/* ------------------------------------------------------------------------ */

START_TEST(test_stats_json_once)
{
	struct shmg_info before, after;
	char out[4096], err[1024], quoted[96];
	uint64_t t0, t1, ns;
	int rc;

	ck_assert_int_eq(shmg_info(h[0], &before), 0);
	t0 = real_ns();
	rc = ctl_run(out, sizeof(out), err, sizeof(err), (const char *const[]){ "stats", "--json", NULL });
	t1 = real_ns();
	ck_assert_int_eq(shmg_info(h[0], &after), 0);
	ck_assert_msg(rc == 0, "exit %d, stderr: %s", rc, err);
	ck_assert_str_eq(err, "");
	ck_assert_msg(strchr(out, '\n') == out + strlen(out) - 1, "not one line: %s", out);
	snprintf(quoted, sizeof(quoted), "{\"group\":\"%s\",", tc_arena);
	ck_assert_msg(strncmp(out, quoted, strlen(quoted)) == 0, "%s", out);

	ck_assert_uint_eq(before.pages_used, after.pages_used);
	ck_assert_uint_gt(before.pages_used, 0);
	ck_assert_uint_eq(json_u64(out, "pages_used"), before.pages_used);
	ck_assert_uint_eq(json_u64(out, "pages_total"), before.pages_total);
	ck_assert_uint_eq(json_u64(out, "endpoints_live"), 4); /* three here, one the tool's */
	ck_assert_uint_eq(json_u64(out, "max_endpoints"), MAX_ENDPOINTS);
	ck_assert_uint_eq(json_u64(out, "clusters_connected"), 2);
	ck_assert_uint_eq(json_u64(out, "shard_repairs"), 0);
	ck_assert_uint_eq(json_u64(out, "reaper_pid"), (uint64_t)getpid());
	ck_assert_uint_ge(json_u64(out, "global_epoch"), before.global_epoch);
	ck_assert_uint_le(json_u64(out, "global_epoch"), after.global_epoch);
	ns = json_u64(out, "time_ns");
	ck_assert(ns >= t0 && ns <= t1);
}
END_TEST

START_TEST(test_stats_text_once)
{
	struct shmg_info in;
	char out[4096], err[1024], when[16], *row;
	unsigned long long used, total, epoch, repairs;
	unsigned int live, max, clusters, reaper;
	int rc;

	ck_assert_int_eq(shmg_info(h[0], &in), 0);
	rc = ctl_run(out, sizeof(out), err, sizeof(err), (const char *const[]){ "stats", NULL });
	ck_assert_msg(rc == 0, "exit %d, stderr: %s", rc, err);
	ck_assert_msg(strncmp(out, "TIME ", 5) == 0, "%s", out);
	row = strchr(out, '\n');
	ck_assert_ptr_nonnull(row);
	*row++ = '\0';
	ck_assert_msg(strstr(out, "PAGES") && strstr(out, "ENDPOINTS") && strstr(out, "CLUSTERS") &&
			      strstr(out, "EPOCH") && strstr(out, "REPAIRS") && strstr(out, "REAPER"),
		      "header: %s", out);
	ck_assert_int_eq(sscanf(row, "%15s %llu/%llu %u/%u %u %llu %llu %u", when, &used, &total,
				&live, &max, &clusters, &epoch, &repairs, &reaper),
			 9);
	ck_assert_uint_eq(strlen(when), 8); /* HH:MM:SS */
	ck_assert_uint_eq(used, in.pages_used);
	ck_assert_uint_eq(total, in.pages_total);
	ck_assert_uint_eq(live, 4);
	ck_assert_uint_eq(max, MAX_ENDPOINTS);
	ck_assert_uint_eq(clusters, 2);
	ck_assert_uint_eq(repairs, 0);
	ck_assert_uint_eq(reaper, (unsigned int)getpid());
	ck_assert_ptr_eq(strchr(row, '\n'), row + strlen(row) - 1); /* one row */
}
END_TEST

/* Each change is made right after the tool printed a line, a second before
 * it takes the next. */
START_TEST(test_stats_watch_follows_changes)
{
	char line[1024], err[1024];
	uint64_t t[3];
	shmg_t *extra;

	ctl_start(&running, (const char *const[]){ "stats", "--watch", "1", "--count", "3",
						   "--json", NULL });
	next_line(&running, line, sizeof(line));
	t[0] = json_u64(line, "time_ns");
	ck_assert_uint_eq(json_u64(line, "endpoints_live"), 4);
	ck_assert_uint_eq(json_u64(line, "clusters_connected"), 2);
	ck_assert_int_eq(shmg_open(tc_arena, NULL, &extra), 0);
	ck_assert_int_eq(shmg_connect(h[0], "c3", NULL), 0);

	next_line(&running, line, sizeof(line));
	t[1] = json_u64(line, "time_ns");
	ck_assert_uint_eq(json_u64(line, "endpoints_live"), 5);
	ck_assert_uint_eq(json_u64(line, "clusters_connected"), 3);
	ck_assert_int_eq(shmg_close(extra), 0);
	ck_assert_int_eq(shmg_disconnect(h[0], "c3"), 0);

	next_line(&running, line, sizeof(line));
	t[2] = json_u64(line, "time_ns");
	ck_assert_uint_eq(json_u64(line, "endpoints_live"), 4);
	ck_assert_uint_eq(json_u64(line, "clusters_connected"), 2);
	ck_assert_int_eq(ctl_finish(&running, NULL, 0, err, sizeof(err)), 0); /* --count 3 */
	ck_assert_str_eq(err, "");
	ck_assert_uint_ge(t[1] - t[0], 500000000u);
	ck_assert_uint_ge(t[2] - t[1], 500000000u);
}
END_TEST

START_TEST(test_stats_watch_sigint)
{
	char line[1024], err[1024];

	ctl_start(&running, (const char *const[]){ "stats", "-w", "0.05", NULL });
	next_line(&running, line, sizeof(line));
	ck_assert_msg(strncmp(line, "TIME ", 5) == 0, "%s", line);
	next_line(&running, line, sizeof(line));
	next_line(&running, line, sizeof(line));
	ck_assert_int_eq(kill(running.pid, SIGINT), 0);
	ck_assert_int_eq(ctl_finish(&running, NULL, 0, err, sizeof(err)), 0);
	ck_assert_str_eq(err, "");
}
END_TEST

START_TEST(test_stats_watch_arena_removed)
{
	char line[1024], err[1024];

	ctl_start(&running, (const char *const[]){ "stats", "--watch=0.05", "--json", NULL });
	next_line(&running, line, sizeof(line));
	ck_assert_int_eq(shmg_destroy(tc_arena), 0);
	ck_assert_int_eq(ctl_finish(&running, NULL, 0, err, sizeof(err)), 2);
	ck_assert_msg(strstr(err, "the arena was removed or recreated") != NULL, "%s", err);
}
END_TEST

START_TEST(test_stats_usage)
{
	static const char *const bad[][6] = {
		{ "stats", "2", NULL },                     /* SECONDS without --watch */
		{ "stats", "--count", "2", NULL },          /* --count without --watch */
		{ "stats", "--watch", "0", NULL },          /* below 0.01 s */
		{ "stats", "--watch", "x", NULL },
		{ "stats", "--watch=1", "2", NULL },        /* SECONDS twice */
		{ "stats", "--local", NULL },               /* not a stats option */
	};
	char out[1024], err[1024];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = ctl_run(out, sizeof(out), err, sizeof(err), bad[i]);

		ck_assert_msg(rc == 64, "case %zu: exit %d", i, rc);
		ck_assert_str_eq(out, "");
	}
	ck_assert_int_eq(shmg_destroy(tc_arena), 0);
	ck_assert_int_eq(ctl_run(out, sizeof(out), err, sizeof(err),
				 (const char *const[]){ "stats", NULL }),
			 2);
	ck_assert_msg(strstr(err, "no such arena") != NULL, "%s", err);
}
END_TEST

/* In a child: becomes nobody and leaves an arena of its own behind. */
static int nobody_creates_arena(void *arg)
{
	shmg_t *nh = NULL;

	(void)arg;
	if (setgroups(0, NULL) != 0 || setresgid(65534, 65534, 65534) != 0 ||
	    setresuid(65534, 65534, 65534) != 0)
		return 1;
	if (shmg_open(tc_arena, NULL, &nh) != 0)
		return 2;
	return shmg_close(nh) == 0 ? 0 : 3;
}

/* The line of `clusters` output naming cluster name. */
static const char *cluster_line(const char *out, const char *name, char *buf, size_t cap)
{
	size_t n = strlen(name);
	for (const char *p = out; *p;) {
		const char *end = strchr(p, '\n');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len > n && strncmp(p, name, n) == 0 && (p[n] == '\t' || p[n] == '"')) {
			snprintf(buf, cap, "%.*s", (int)len, p);
			return buf;
		}
		p += len + (end != NULL);
	}
	return NULL;
}

static bool lease_due(void *arg)
{
	struct shmg_cluster_stats st;
	for (uint32_t s = 1; shmg_cluster_stats(h[0], s, &st, sizeof(st)) != -ERANGE; s++)
		if (strcmp(st.name, arg) == 0 && st.lease_left_ms < 0)
			return true;
	return false;
}

START_TEST(test_clusters_leases)
{
	char out[4096], err[1024], line[256];
	struct shmg_opts kept = { .cluster = "kept" };

	ck_assert_int_eq(shmg_connect(h[0], "long", &(struct shmg_connect_opts){ .ttl_ms = 600000 }), 0);
	ck_assert_int_eq(shmg_connect(h[0], "kept", &(struct shmg_connect_opts){ .ttl_ms = 1 }), 0);
	ck_assert_int_eq(shmg_connect(h[0], "gone", &(struct shmg_connect_opts){ .ttl_ms = 1 }), 0);
	ck_assert_int_eq(shmg_register(h[1], SHMG_KEY("svc"), NULL, 0, &kept), 0);
	ck_assert(tc_wait_until(lease_due, "kept", 5000));
	ck_assert(tc_wait_until(lease_due, "gone", 5000));

	/* Due, and no reaper pass yet. */
	ck_assert_int_eq(ctl_run(out, sizeof(out), err, sizeof(err), (const char *const[]){ "clusters", NULL }), 0);
	ck_assert_ptr_nonnull(cluster_line(out, "c1", line, sizeof(line)));
	ck_assert_str_eq(line, "c1\tnodes=1\tregistered=0\tmembers=0\tlease=none");
	ck_assert_ptr_nonnull(cluster_line(out, "long", line, sizeof(line)));
	ck_assert_msg(strstr(line, "\tlease=600000ms\tleft=") && strstr(line, "ms\tkept=-"), "%s", line);
	ck_assert_ptr_nonnull(cluster_line(out, "kept", line, sizeof(line)));
	ck_assert_str_eq(line, "kept\tnodes=1\tregistered=1\tmembers=0\tlease=1ms\tleft=due\tkept=-");

	/* The reaper's pass: "kept" is extended for its registration, "gone"
	 * is disconnected. */
	ck_assert_int_ge(shmg_reaper_dispatch(h[0]), 0);
	ck_assert_int_eq(ctl_run(out, sizeof(out), err, sizeof(err), (const char *const[]){ "clusters", NULL }), 0);
	ck_assert_ptr_null(cluster_line(out, "gone", line, sizeof(line)));
	ck_assert_ptr_nonnull(cluster_line(out, "kept", line, sizeof(line)));
	ck_assert_msg(strstr(line, "\tkept=registrations"), "%s", line);
	ck_assert_int_eq(ctl_run(out, sizeof(out), err, sizeof(err),
				 (const char *const[]){ "clusters", "--json", NULL }), 0);
	ck_assert_ptr_nonnull(strstr(out, "{\"cluster\":\"kept\",\"nodes\":1,\"registered\":1,\"members\":0,\"ttl_ms\":1,\"lease_left_ms\":"));
	ck_assert_ptr_nonnull(strstr(out, "\"lease_kept\":\"registrations\"}"));
	ck_assert_ptr_nonnull(strstr(out, "{\"cluster\":\"c2\",\"nodes\":1,\"registered\":0,\"members\":0,\"ttl_ms\":0}"));
}
END_TEST

START_TEST(test_owner_option)
{
	char out[4096], err[1024];

	if (!tc_second_user_ok(__func__))
		return;
	ck_assert_int_eq(tc_wait_exit(tc_fork(nobody_creates_arena, NULL), 10000), 0);
	ck_assert_int_eq(ctl_run(out, sizeof(out), err, sizeof(err),
				 (const char *const[]){ "info", NULL }),
			 2);
	ck_assert_msg(strstr(err, "permission denied") && strstr(err, "--owner"), "%s", err);
	ck_assert_int_eq(ctl_run(out, sizeof(out), err, sizeof(err),
				 (const char *const[]){ "--owner", "nobody", "info", NULL }),
			 0);
	ck_assert_int_eq(ctl_run(out, sizeof(out), err, sizeof(err),
				 (const char *const[]){ "-u", "65534", "info", NULL }),
			 0);
	ck_assert_int_eq(ctl_run(out, sizeof(out), err, sizeof(err),
				 (const char *const[]){ "--owner", "no-such-user-x", "info", NULL }),
			 64);
	ck_assert_int_eq(shmg_destroy(tc_arena), 0);
}
END_TEST

int main(int argc, char **argv)
{
	Suite *s = suite_create("shmgroupctl");
	TCase *tc = tc_case(s, "stats", 30);

	if (argc < 2) {
		fprintf(stderr, "usage: %s PATH-TO-shmgroupctl\n", argv[0]);
		return 77;
	}
	ctl_path = argv[1];
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_stats_json_once);
	tcase_add_test(tc, test_stats_text_once);
	tcase_add_test(tc, test_stats_watch_follows_changes);
	tcase_add_test(tc, test_stats_watch_sigint);
	tcase_add_test(tc, test_stats_watch_arena_removed);
	tcase_add_test(tc, test_stats_usage);
	tcase_add_test(tc, test_clusters_leases);
	tc = tc_case(s, "owner", 30);
	tcase_add_test(tc, test_owner_option);
	return tc_run(s);
}
