/* SPDX-License-Identifier: MIT */
/*
 * shmgroup-top's screen, run in a detached tmux session of 80x24 (argv[1] is
 * the tool): the test sends keys and reads the pane until it shows what the
 * keys should bring, or fails after a deadline.  It switches views by number
 * and Tab, sorts, filters, opens the help, removes the arena under the tool
 * (which must say so) and makes it again (which the tool must show), and
 * quits with q.  Without tmux the test is skipped (exit 77) with a message.
 *
 * The arena: endpoint a registers svc/0..9 and joins room/a; endpoint b
 * joins room/a and room/b and monitors svc/ before a registers; the tool's
 * own endpoint makes three.  Each test run uses its own tmux server socket
 * (-L), killed at the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmgroup.h"
#include "tc.h"

static const char *top_path;
static char sock[64];
static shmg_t *a, *b;

/* Runs tmux -L sock ARGS... (NULL-terminated), output into out (may be
 * NULL).  Returns its exit status. */
static int tmux(char *out, size_t cap, const char *const *args)
{
	const char *argv[32] = { "tmux", "-L", sock };
	int o[2], n = 3, st;
	size_t len = 0;
	ssize_t k;
	pid_t pid;

	for (int i = 0; args[i]; i++)
		argv[n++] = args[i];
	ck_assert_int_eq(pipe(o), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		dup2(o[1], STDOUT_FILENO);
		if (null >= 0)
			dup2(null, STDERR_FILENO); /* "no server running" at the end */
		close(o[0]);
		close(o[1]);
		execvp("tmux", (char *const *)argv);
		_exit(127);
	}
	close(o[1]);
	while (out && len < cap - 1 && (k = read(o[0], out + len, cap - 1 - len)) > 0)
		len += (size_t)k;
	if (out)
		out[len] = '\0';
	close(o[0]);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void kill_server(void)
{
	if (sock[0])
		tmux(NULL, 0, (const char *const[]){ "kill-server", NULL });
}

static void keys(const char *k)
{
	ck_assert_int_eq(tmux(NULL, 0, (const char *const[]){ "send-keys", "-t", "top", k, NULL }),
			 0);
}

static char pane[8192];

/* Waits until the pane contains every string of want (NULL-terminated). */
static void expect(const char *const *want)
{
	uint64_t end = tc_now_ms() + 10000;

	for (;;) {
		bool all = true;

		if (tmux(pane, sizeof(pane),
			 (const char *const[]){ "capture-pane", "-p", "-t", "top", NULL }) != 0)
			pane[0] = '\0';
		for (int i = 0; want[i] && all; i++)
			all = strstr(pane, want[i]) != NULL;
		if (all)
			return;
		ck_assert_msg(tc_now_ms() < end, "the screen never showed '%s' and the rest:\n%s",
			      want[0], pane);
		usleep(20000);
	}
}

/* The pane's line that starts (after blanks) with first, or NULL. */
static const char *pane_row(const char *first, char *buf, size_t cap)
{
	for (const char *p = pane; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		const char *s = p, *e = strchr(p, '\n');

		while (*s == ' ')
			s++;
		if (strncmp(s, first, strlen(first)) == 0 && s[strlen(first)] == ' ') {
			size_t n = e ? (size_t)(e - p) : strlen(p);

			snprintf(buf, cap, "%.*s", (int)n, p);
			return buf;
		}
	}
	return NULL;
}

static void setup(void)
{
	char key[16];

	atexit(kill_server);
	snprintf(sock, sizeof(sock), "shmgroup-top-test-%d", (int)getpid());
	a = tc_open(tc_arena, &(struct shmg_config){ .shards = 4, .max_endpoints = 32 });
	b = tc_open(tc_arena, NULL);
	TC_EQ(shmg_monitor(b, SHMG_KEY("svc/"), NULL), 0);
	for (int i = 0; i < 10; i++) {
		snprintf(key, sizeof(key), "svc/%d", i);
		TC_EQ(shmg_register(a, SHMG_KEY(key), NULL, 0, NULL), 0);
	}
	TC_EQ(shmg_join(a, SHMG_KEY("room/a"), NULL, 0, NULL), 0);
	TC_EQ(shmg_join(b, SHMG_KEY("room/a"), NULL, 0, NULL), 0);
	TC_EQ(shmg_join(b, SHMG_KEY("room/b"), NULL, 0, NULL), 0);
}

static void teardown(void)
{
	kill_server();
	shmg_close(b);
	shmg_close(a);
}

START_TEST(test_screen)
{
	char cmd[512], row[256], slot_a[16], slot_b[16], want[128];
	shmg_t *again;

	/* TERM=screen: a terminal tmux emulates whose description every ncurses
	 * install has, whatever tmux's default-terminal is. */
	snprintf(cmd, sizeof(cmd), "TERM=screen exec '%s' -g %s -d 0.2", top_path, tc_arena);
	ck_assert_int_eq(tmux(NULL, 0,
			      (const char *const[]){ "-f", "/dev/null", "new-session", "-d", "-s",
						     "top", "-x", "80", "-y", "24", cmd, NULL }),
			 0);
	tmux(NULL, 0,
	     (const char *const[]){ "set-option", "-t", "top", "remain-on-exit", "on", NULL });

	/* The header and the Shards view, with the footer naming the views. */
	expect((const char *const[]){ "shards 4  endpoints 3/32  registered 10  members 3",
				      "Shards: 4  sort SHARD", "1:Shards 2:Endpoints 3:Clusters",
				      "5:Keys", NULL });

	/* Endpoints by number key: a's and b's rows. */
	keys("2");
	expect((const char *const[]){ "Endpoints: 3  sort SLOT", "shmgroup-top*", NULL });
	snprintf(slot_a, sizeof(slot_a), "%u", shmg_self(a).slot);
	snprintf(slot_b, sizeof(slot_b), "%u", shmg_self(b).slot);
	ck_assert_ptr_nonnull(pane_row(slot_a, row, sizeof(row)));
	snprintf(want, sizeof(want), "%d test_top_tui ", (int)getpid());
	ck_assert_msg(strstr(row, want) && strstr(row, "  10      1    0 "), "a: %s", row);
	ck_assert_ptr_nonnull(pane_row(slot_b, row, sizeof(row)));
	ck_assert_msg(strstr(row, "   0      2    1 "), "b: %s", row);

	/* Sort by MEMBS (the fifth column): b, with two, before a. */
	for (int i = 0; i < 4; i++)
		keys("s");
	expect((const char *const[]){ "sort MEMBS", NULL });
	{
		const char *first = strstr(pane, "AGE\n");

		ck_assert_ptr_nonnull(first);
		snprintf(want, sizeof(want), "\n%*s ", 5, slot_b);
		ck_assert_msg(strncmp(first + 3, want, strlen(want)) == 0, "not b first:\n%s",
			      pane);
	}

	/* Filter: only the tool's own row. */
	keys("/");
	expect((const char *const[]){ "filter:", NULL });
	keys("shmgroup-top");
	keys("Enter");
	expect((const char *const[]){ "Endpoints: 1  sort MEMBS  filter shmgroup-top", NULL });
	ck_assert_ptr_null(pane_row(slot_a, row, sizeof(row)));

	/* Tab on to Clusters and Peers; Keys by number. */
	keys("Tab");
	expect((const char *const[]){ "Clusters: 1", "(default)", NULL });
	keys("Tab");
	expect((const char *const[]){ "Peers: 0", "no peers", NULL });
	keys("5");
	expect((const char *const[]){ "Keys: 1  sort MEMBERS", NULL });
	ck_assert_ptr_nonnull(pane_row("room/", row, sizeof(row)));
	ck_assert_msg(strstr(row, "         3        2"), "%s", row);

	/* Help, and any key closes it. */
	keys("h");
	expect((const char *const[]){ "shmgroup-top keys", "any key closes this help", NULL });
	keys("x");
	expect((const char *const[]){ "Keys: 1", NULL });

	/* The arena goes: the tool says so; it comes back: the tool shows it. */
	TC_EQ(shmg_destroy(tc_arena), 0);
	expect((const char *const[]){ "no arena: /dev/shm/shmgroup.", "waiting for it",
				      "not attached", NULL });
	again = tc_open(tc_arena, &(struct shmg_config){ .shards = 2 });
	TC_EQ(shmg_join(again, SHMG_KEY("new/x"), NULL, 0, NULL), 0);
	expect((const char *const[]){ "shards 2  endpoints 2/1024  registered 0  members 1",
				      "Keys: 1", NULL });
	ck_assert_ptr_nonnull(pane_row("new/", row, sizeof(row)));

	/* Pause: the figures stay while the arena changes. */
	keys("p");
	expect((const char *const[]){ "[paused]", NULL });
	TC_EQ(shmg_join(again, SHMG_KEY("new/y"), NULL, 0, NULL), 0);
	usleep(500000); /* two refreshes' time: nothing may change on the screen */
	expect((const char *const[]){ "members 1", "[paused]", NULL });
	keys("p");
	expect((const char *const[]){ "members 2", NULL });

	/* q ends it, restoring the terminal. */
	keys("q");
	{
		uint64_t end = tc_now_ms() + 10000;
		char dead[16];

		while (tmux(dead, sizeof(dead),
			    (const char *const[]){ "display-message", "-p", "-t", "top",
						   "#{pane_dead}", NULL }) == 0 &&
		       strncmp(dead, "1", 1) != 0) {
			ck_assert_msg(tc_now_ms() < end, "q did not end it");
			usleep(20000);
		}
	}
	shmg_close(again);
}
END_TEST

int main(int argc, char **argv)
{
	Suite *s = suite_create("shmgroup-top screen");
	TCase *tc = tc_case(s, "tmux", 60);

	if (argc != 2) {
		fprintf(stderr, "usage: %s PATH-TO-SHMGROUP-TOP\n", argv[0]);
		return 2;
	}
	if (system("tmux -V >/dev/null 2>&1") != 0) {
		printf("SKIP: tmux not found (Debian package tmux); shmgroup-top's screen not "
		       "tested\n");
		return 77;
	}
	top_path = argv[1];
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_screen);
	return tc_run(s);
}
