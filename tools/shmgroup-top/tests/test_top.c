/* SPDX-License-Identifier: MIT */
/*
 * shmgroup-top's batch output, run as its own binary (path in argv[1]),
 * against a live arena whose figures the test knows, while a forked writer
 * keeps registering and unregistering keys of its own: every figure the test
 * set up is exact in the plain text and in every JSON object, the churning
 * writer's figures stay within what it can have, and rates move.  The tool
 * reports a destroyed arena and attaches to the group's next one; usage
 * errors exit 64.
 *
 * The fixture: an arena with 4 shards and 64 endpoint slots; endpoint a
 * (hosting the reaper) registers b/1 and b/2 in cluster "blue" (lease 60 s)
 * and joins room/z there; endpoint b registers svc/0..9 and joins room/a;
 * endpoint c joins room/a, room/b and room/c/x and monitors svc/ (so it got
 * 10 events).  The tool's own endpoint makes one more.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmgroup.h"
#include "tc.h"

static const char *top_path;
static shmg_t *a, *b, *c;
static pid_t churner, tool;

static struct shmg_opts blue = { .cluster = "blue" };

static void stop_children(void)
{
	pid_t *p[] = { &churner, &tool };

	for (size_t i = 0; i < 2; i++)
		if (*p[i] > 0) {
			kill(*p[i], SIGKILL);
			waitpid(*p[i], NULL, 0);
			*p[i] = 0;
		}
}

static void setup(void)
{
	struct shmg_config cfg = { .shards = 4, .max_endpoints = 64, .flags = SHMG_OPEN_EXCL };
	struct shmg_connect_opts lease = { .ttl_ms = 60000 };
	char key[16];

	atexit(stop_children);
	ck_assert_int_eq(shmg_open(tc_arena, &cfg, &a), 0);
	ck_assert_int_eq(shmg_open(tc_arena, NULL, &b), 0);
	ck_assert_int_eq(shmg_open(tc_arena, NULL, &c), 0);
	ck_assert_int_eq(shmg_reaper_enable(a), 1);
	TC_EQ(shmg_connect(a, "blue", &lease), 0);
	TC_EQ(shmg_register(a, SHMG_KEY("b/1"), NULL, 0, &blue), 0);
	TC_EQ(shmg_register(a, SHMG_KEY("b/2"), NULL, 0, &blue), 0);
	TC_EQ(shmg_join(a, SHMG_KEY("room/z"), NULL, 0, &blue), 0);
	TC_EQ(shmg_monitor(c, SHMG_KEY("svc/"), NULL), 0);
	for (int i = 0; i < 10; i++) {
		snprintf(key, sizeof(key), "svc/%d", i);
		TC_EQ(shmg_register(b, SHMG_KEY(key), "m", 1, NULL), 0);
	}
	TC_EQ(shmg_join(b, SHMG_KEY("room/a"), NULL, 0, NULL), 0);
	TC_EQ(shmg_join(c, SHMG_KEY("room/a"), NULL, 0, NULL), 0);
	TC_EQ(shmg_join(c, SHMG_KEY("room/b"), NULL, 0, NULL), 0);
	TC_EQ(shmg_join(c, SHMG_KEY("room/c/x"), NULL, 0, NULL), 0);
}

static void teardown(void)
{
	stop_children();
	shmg_close(c);
	shmg_close(b);
	shmg_close(a);
}

/* A writer that registers and unregisters churn/N for ever: at any time it
 * holds at most one registration and no membership. */
static int churn(void *arg)
{
	shmg_t *h;

	(void)arg;
	if (shmg_open(tc_arena, NULL, &h) < 0)
		return 1;
	for (unsigned long i = 0;; i++) {
		char key[32];

		snprintf(key, sizeof(key), "churn/%lu", i % 1000);
		if (shmg_register(h, SHMG_KEY(key), NULL, 0, NULL) < 0 ||
		    shmg_unregister(h, SHMG_KEY(key), NULL) < 0)
			return 2;
	}
}

/* Runs the tool with args (NULL-terminated) to its end; its stdout into
 * out, its exit status returned.  stderr goes to the test's. */
static int run_tool(char *out, size_t cap, const char *const *args)
{
	const char *argv[32] = { "shmgroup-top", "-g", tc_arena };
	int o[2], n = 3, st;
	size_t len = 0;
	ssize_t k;

	for (int i = 0; args[i]; i++)
		argv[n++] = args[i];
	ck_assert_int_eq(pipe(o), 0);
	tool = fork();
	ck_assert_int_ge(tool, 0);
	if (tool == 0) {
		dup2(o[1], STDOUT_FILENO);
		close(o[0]);
		close(o[1]);
		execv(top_path, (char *const *)argv);
		_exit(127);
	}
	close(o[1]);
	while (len < cap - 1 && (k = read(o[0], out + len, cap - 1 - len)) > 0)
		len += (size_t)k;
	out[len] = '\0';
	close(o[0]);
	ck_assert_int_eq(waitpid(tool, &st, 0), tool);
	tool = 0;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The number after "key": at or after p. */
static long long json_num(const char *p, const char *key)
{
	char pat[64];
	const char *q;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	q = strstr(p, pat);
	ck_assert_msg(q != NULL, "no %s in %.200s", key, p);
	return strtoll(q + strlen(pat), NULL, 10);
}

/* The endpoint object of a slot, up to its closing brace, into buf. */
static void json_endpoint(const char *line, uint32_t slot, char *buf, size_t cap)
{
	char pat[32];
	const char *p, *end;

	snprintf(pat, sizeof(pat), "{\"slot\":%u,", slot);
	p = strstr(line, pat);
	ck_assert_msg(p != NULL, "no endpoint %u in %s", slot, line);
	end = strchr(p, '}');
	ck_assert_ptr_nonnull(end);
	ck_assert_uint_lt((size_t)(end - p), cap);
	memcpy(buf, p, (size_t)(end - p));
	buf[end - p] = '\0';
}

/* The figures of one JSON object that the fixture fixes, whatever the
 * churning writer is doing. */
static void check_known_json(const char *line)
{
	char ep[1024], pat[128];
	const char *p;

	ck_assert_msg(strncmp(line, "{\"group\":\"", 10) == 0, "%s", line);
	ck_assert_int_eq(json_num(line, "node"), 1);
	ck_assert_msg(strstr(line, "\"attached\":true,\"error\":null"), "%s", line);
	snprintf(pat, sizeof(pat), "\"reaper\":{\"pid\":%d,\"command\":\"", (int)getpid());
	ck_assert_msg(strstr(line, pat), "reaper: %s", line);
	ck_assert_int_eq(json_num(strstr(line, "\"arena\":"), "shards"), 4);
	ck_assert_int_eq(json_num(strstr(line, "\"arena\":"), "max_endpoints"), 64);
	ck_assert_int_eq(json_num(strstr(line, "\"arena\":"), "layout_version"), 7);
	p = strstr(line, "\"totals\":");
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(json_num(p, "endpoints"), churner ? 5 : 4);
	ck_assert_int_ge(json_num(p, "registered"), 12);
	/* The churner holds at most one key at a time, but the shards are read
	 * one after the other: its key, moving on, may be counted in each. */
	ck_assert_int_le(json_num(p, "registered"), churner ? 12 + 4 : 12);
	ck_assert_int_eq(json_num(p, "members"), 5);
	ck_assert_int_eq(json_num(p, "monitors"), 1);
	ck_assert_int_eq(json_num(p, "repairs"), 0);
	ck_assert_int_eq(json_num(p, "events_delivered"), 10);

	json_endpoint(line, shmg_self(a).slot, ep, sizeof(ep));
	ck_assert_int_eq(json_num(ep, "pid"), getpid());
	ck_assert_int_eq(json_num(ep, "registrations"), 2);
	ck_assert_int_eq(json_num(ep, "memberships"), 1);
	ck_assert_int_eq(json_num(ep, "monitors"), 0);
	ck_assert_msg(strstr(ep, "\"self\":false,\"state\":\"live\""), "%s", ep);
	json_endpoint(line, shmg_self(b).slot, ep, sizeof(ep));
	ck_assert_int_eq(json_num(ep, "registrations"), 10);
	ck_assert_int_eq(json_num(ep, "memberships"), 1);
	json_endpoint(line, shmg_self(c).slot, ep, sizeof(ep));
	ck_assert_int_eq(json_num(ep, "registrations"), 0);
	ck_assert_int_eq(json_num(ep, "memberships"), 3);
	ck_assert_int_eq(json_num(ep, "monitors"), 1);
	ck_assert_int_eq(json_num(ep, "events_delivered"), 10);
	ck_assert_int_eq(json_num(ep, "events_dropped"), 0);
	ck_assert_int_gt(json_num(ep, "mailbox_used"), 0);
	ck_assert_msg(strstr(line, "\"command\":\"shmgroup-top\",\"self\":true"), "%s", line);

	/* Clusters: the default one (this node, no peers) and blue. */
	ck_assert_msg(strstr(line, "{\"name\":null,\"nodes\":[1],\"registered\":"), "%s", line);
	ck_assert_msg(strstr(line, "{\"name\":\"blue\",\"nodes\":[1],\"registered\":2,"
				   "\"members\":1,\"ttl_ms\":60000,\"lease_left_ms\":"),
		      "%s", line);
	ck_assert_msg(strstr(line, "\"peers\":[]"), "%s", line);
	/* Prefixes by members; the churner's keys have none. */
	ck_assert_msg(strstr(line, "\"prefixes\":[{\"prefix\":\"room/\",\"cluster\":null,"
				   "\"members\":4,\"keys\":3},"),
		      "%s", line);
	ck_assert_msg(strstr(line, "{\"prefix\":\"room/\",\"cluster\":\"blue\",\"members\":1,"
				   "\"keys\":1}"),
		      "%s", line);
	ck_assert_msg(strstr(line, "{\"prefix\":\"room/c/\",\"cluster\":null,\"members\":1,"
				   "\"keys\":1}"),
		      "%s", line);
	ck_assert_ptr_null(strstr(line, "churn/"));
}

/* The sum of one field over the shards' objects. */
static long long sum_shards(const char *line, const char *key)
{
	const char *p = strstr(line, "\"shards\":[");
	const char *end = strstr(line, "\"endpoints\":[");
	long long sum = 0;

	ck_assert_ptr_nonnull(p);
	while ((p = strstr(p + 1, "{\"shard\":")) && p < end)
		sum += json_num(p, key);
	return sum;
}

static bool churner_in(void *arg)
{
	struct shmg_info in;

	(void)arg;
	return shmg_info(a, &in) == 0 && in.endpoints_live == 4;
}

START_TEST(test_json_under_writers)
{
	static char out[1 << 18];
	char *line, *save = NULL;
	long long writes_before = -1;
	int lines = 0;

	churner = tc_fork(churn, NULL);
	ck_assert(tc_wait_until(churner_in, NULL, 10000));
	ck_assert_int_eq(run_tool(out, sizeof(out),
				  (const char *const[]){ "--json", "-n", "3", "-d", "0.2", NULL }),
			 0);
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		const char *totals = strstr(line, "\"totals\":");
		long long writes;

		check_known_json(line);
		/* The shards' figures add up to the totals. */
		writes = sum_shards(line, "writes");
		ck_assert_int_eq(writes, json_num(totals, "writes"));
		ck_assert_int_eq(sum_shards(line, "members"), 5);
		ck_assert_int_eq(sum_shards(line, "monitors"), 1);
		ck_assert_int_eq(sum_shards(line, "lock_waits") >= 0, 1);
		/* 10 + 2 registrations and 5 joins, then the churn. */
		ck_assert_int_ge(writes, 17);
		if (lines == 0) {
			ck_assert_msg(strstr(line, "\"interval_s\":null") &&
					      strstr(line, "\"ops_per_s\":null"),
				      "%s", line);
		} else {
			ck_assert_int_gt(writes, writes_before);
			ck_assert_msg(!strstr(line, "\"ops_per_s\":null") &&
					      !strstr(line, "\"ops_per_s\":0.000"),
				      "the churn shows no ops/s: %s", line);
		}
		writes_before = writes;
		lines++;
	}
	ck_assert_int_eq(lines, 3);
}
END_TEST

/* A row of a [view] section of the text output whose first cell is first. */
static const char *text_row(const char *out, const char *view, const char *first, char *buf,
			    size_t cap)
{
	char pat[64];
	const char *p = strstr(out, view), *end;

	ck_assert_msg(p != NULL, "no %s in %s", view, out);
	end = strstr(p, "\n\n");
	snprintf(pat, sizeof(pat), "\n%s", first);
	for (const char *q = p; (q = strstr(q, "\n")) && (!end || q < end); q++) {
		const char *s = q + 1;

		while (*s == ' ')
			s++;
		if (strncmp(s, first, strlen(first)) == 0 && s[strlen(first)] == ' ') {
			const char *e = strchr(s, '\n');
			size_t n = e ? (size_t)(e - s) : strlen(s);

			ck_assert_uint_lt(n, cap);
			memcpy(buf, s, n);
			buf[n] = '\0';
			return buf;
		}
	}
	ck_abort_msg("no row %s in %s: %s", first, view, out);
	return NULL;
}

START_TEST(test_text_snapshot)
{
	static char out[1 << 16];
	char row[256], want[256], slot[16];

	ck_assert_int_eq(run_tool(out, sizeof(out), (const char *const[]){ "-b", "-n", "1", NULL }),
			 0);
	ck_assert_msg(strstr(out, "shards 4  endpoints 4/64  registered 12  members 5\n"), "%s",
		      out);
	ck_assert_msg(strstr(out, "events/s -  ops/s -  repairs 0  monitors 1\n"), "%s", out);
	snprintf(slot, sizeof(slot), "%u", shmg_self(b).slot);
	text_row(out, "[endpoints]", slot, row, sizeof(row));
	snprintf(want, sizeof(want), "%s %7d test_top ", slot, (int)getpid());
	ck_assert_msg(strncmp(row, want, strlen(want)) == 0, "row '%s', want '%s'", row, want);
	/* REGS MEMBS MONS MBOX DROPPED EV/S */
	ck_assert_msg(strstr(row, "      10      1    0      0       0      - "), "%s", row);
	snprintf(slot, sizeof(slot), "%u", shmg_self(c).slot);
	text_row(out, "[endpoints]", slot, row, sizeof(row));
	ck_assert_msg(strstr(row, "       0      3    1"), "%s", row);
	text_row(out, "[clusters]", "blue", row, sizeof(row));
	ck_assert_msg(strstr(row, "1                   2        1      60s "), "%s", row);
	text_row(out, "[clusters]", "(default)", row, sizeof(row));
	ck_assert_msg(strstr(row, "1                  10        4        -        -"), "%s", row);
	text_row(out, "[keys]", "room/", row, sizeof(row));
	ck_assert_msg(strstr(row, "room/ ") && strstr(row, "         4        3"), "%s", row);
	text_row(out, "[keys]", "room/c/", row, sizeof(row));
	ck_assert_msg(strstr(row, "         1        1"), "%s", row);
	ck_assert_msg(strstr(out, "[peers]\n  NODE ADDRESS"), "%s", out);
	ck_assert_msg(strstr(out, "\nno peers (replication is not running on this host)\n"), "%s",
		      out);
	/* Entries per shard add up: 12 registrations and 5 memberships. */
	{
		long sum = 0;

		for (int s = 0; s < 4; s++) {
			char first[4];

			snprintf(first, sizeof(first), "%d", s);
			text_row(out, "[shards]", first, row, sizeof(row));
			sum += strtol(row + 1, NULL, 10);
		}
		ck_assert_int_eq(sum, 17);
	}
}
END_TEST

/* Batch JSON while the arena is destroyed and made again: attached false
 * with the reason, then the new arena's figures. */
static int destroy_and_recreate(void *arg)
{
	struct shmg_config cfg = { .shards = 2 };
	shmg_t *h;

	(void)arg;
	usleep(300000);
	if (shmg_destroy(tc_arena) < 0)
		return 1;
	usleep(600000);
	if (shmg_open(tc_arena, &cfg, &h) < 0 || shmg_register(h, SHMG_KEY("again"), NULL, 0, NULL))
		return 2;
	pause();
	return 0;
}

START_TEST(test_json_follows_the_arena)
{
	static char out[1 << 18];
	char *line, *save = NULL;
	int phase = 0, lines = 0;

	churner = tc_fork(destroy_and_recreate, NULL);
	ck_assert_int_eq(run_tool(out, sizeof(out),
				  (const char *const[]){ "--json", "-n", "16", "-d", "0.1", NULL }),
			 0);
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save), lines++) {
		bool attached = strstr(line, "\"attached\":true") != NULL;

		if (phase == 0 && !attached)
			phase = 1;
		else if (phase == 1 && attached)
			phase = 2;
		if (phase == 0)
			ck_assert_int_eq(json_num(strstr(line, "\"arena\":"), "shards"), 4);
		if (phase == 1 && !attached)
			ck_assert_msg(strstr(line, "\"error\":\"no arena: /dev/shm/shmgroup."),
				      "%s", line);
		if (phase == 2) {
			ck_assert_msg(attached, "attached again, then not: %s", line);
			ck_assert_int_eq(json_num(strstr(line, "\"arena\":"), "shards"), 2);
			ck_assert_int_eq(json_num(strstr(line, "\"totals\":"), "registered"), 1);
			ck_assert_msg(strstr(line, "\"interval_s\":null") || lines > 0, "%s", line);
		}
	}
	ck_assert_int_eq(lines, 16);
	ck_assert_msg(phase == 2, "never saw the arena go and come back (phase %d)", phase);
}
END_TEST

START_TEST(test_usage)
{
	static const char *const bad[][4] = {
		{ "-n", "2", NULL },          /* iterations without batch */
		{ "-b", "-n", "0", NULL },    /* not a positive number */
		{ "-b", "-d", "0.01", NULL }, /* below 0.1 s */
		{ "-b", "-v", "nope", NULL }, /* no such view */
		{ "-b", "extra", NULL },      /* an argument */
		{ NULL },                     /* the screen without a terminal */
	};
	char out[4096];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(run_tool(out, sizeof(out), bad[i]) == 64, "case %zu", i);
	ck_assert_int_eq(run_tool(out, sizeof(out), (const char *const[]){ "--help", NULL }), 0);
	ck_assert_msg(strstr(out, "--json"), "%s", out);
}
END_TEST

int main(int argc, char **argv)
{
	Suite *s = suite_create("shmgroup-top");
	TCase *tc = tc_case(s, "batch", 60);

	if (argc != 2) {
		fprintf(stderr, "usage: %s PATH-TO-SHMGROUP-TOP\n", argv[0]);
		return 2;
	}
	top_path = argv[1];
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_json_under_writers);
	tcase_add_test(tc, test_text_snapshot);
	tcase_add_test(tc, test_json_follows_the_arena);
	tcase_add_test(tc, test_usage);
	return tc_run(s);
}
