/* SPDX-License-Identifier: MIT */
/*
 * The host agent, run as its own binary (path in argv[1]).
 *
 * Each test starts shmgroupd on a fresh group, waits for it through
 * --ready-fd (never by sleeping), and checks one promise: a SIGKILLed worker's
 * entries are reaped and a monitor in another process gets one batch with
 * reason exit within REAP_BOUND_MS; killing and restarting the agent disturbs
 * no reader; SIGTERM is a clean stop with status 0 that leaves the arena and
 * its entries alone; a second agent stays a candidate and takes over when the
 * first dies; when the arena is destroyed, the agent moves to the new one and
 * reaps there.  Every agent started is SIGKILLed in the teardown (and by an
 * atexit handler, since check's fork mode skips the teardown after a failed
 * assertion, and check kills each test's process group in the end); arenas and
 * the work directory are swept by main() after the run.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmgroup.h"

#define REAP_BOUND_MS 2000
#define READY_BOUND_MS 10000
#define MAX_AGENTS 8

static const char *agent_path;
static pid_t main_pid;
static char workdir[64]; /* logs and config files; removed by main() */
static char group[64];
static struct {
	pid_t pid;
	char log[256];
} agents[MAX_AGENTS];

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Reads one byte from fd within timeout_ms.  Returns 1, 0 on EOF, -ETIMEDOUT. */
static int read_byte(int fd, char *b, int timeout_ms)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t now = now_ms();
		int rc;

		if (now >= end)
			return -ETIMEDOUT;
		rc = poll(&p, 1, (int)(end - now));
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc <= 0)
			continue;
		ssize_t n = read(fd, b, 1);
		if (n < 0 && errno == EINTR)
			continue;
		return n < 0 ? -errno : (int)n;
	}
}

/* Waits for pid at most timeout_ms: its wait status, or -ETIMEDOUT. */
static int wait_status(pid_t pid, int timeout_ms)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;
	int st;

	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return st;
		if (r < 0)
			return -errno;
		if (now_ms() >= end)
			return -ETIMEDOUT;
		/* A child's exit is not a descriptor here; poll its state. */
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
}

static void kill_agents(void)
{
	for (int i = 0; i < MAX_AGENTS; i++) {
		if (agents[i].pid > 0) {
			kill(agents[i].pid, SIGKILL);
			waitpid(agents[i].pid, NULL, 0);
			agents[i].pid = 0;
		}
		if (agents[i].log[0]) {
			unlink(agents[i].log);
			agents[i].log[0] = '\0';
		}
	}
}

static char conf_path[256];

static void cleanup(void)
{
	kill_agents();
	if (conf_path[0]) {
		unlink(conf_path);
		conf_path[0] = '\0';
	}
	if (group[0])
		shmg_destroy(group);
}

static void setup(void)
{
	snprintf(group, sizeof(group), "tagent-%d-%d", (int)main_pid, (int)getpid());
	atexit(cleanup);
}

static void teardown(void)
{
	cleanup();
	group[0] = '\0';
}

/* Whole agent log as a string (static buffer). */
static const char *agent_log(int slot)
{
	static char buf[8192];
	int fd = open(agents[slot].log, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

/* Starts the agent with extra arguments (NULL-terminated list) and waits
 * until it is ready.  Its stderr goes to a file, agents[i].log; with journal
 * set, JOURNAL_STREAM names that file so the agent logs with "<N>"
 * prefixes.  Returns the slot index. */
static int start_agent(bool journal, const char *const *extra)
{
	const char *argv[32];
	char fdbuf[16];
	int p[2], i, n = 0, slot = -1, logfd;
	char b;

	for (i = 0; i < MAX_AGENTS; i++)
		if (agents[i].pid == 0) {
			slot = i;
			break;
		}
	ck_assert_int_ge(slot, 0);
	snprintf(agents[slot].log, sizeof(agents[slot].log), "%s/%s.agent%d.log", workdir,
		 group, slot);
	logfd = open(agents[slot].log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_int_ge(logfd, 0);
	ck_assert_int_eq(pipe(p), 0);
	snprintf(fdbuf, sizeof(fdbuf), "%d", p[1]);
	argv[n++] = "shmgroupd";
	argv[n++] = "--group";
	argv[n++] = group;
	argv[n++] = "--ready-fd";
	argv[n++] = fdbuf;
	for (i = 0; extra && extra[i]; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;

	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(p[0]);
		dup2(logfd, STDERR_FILENO);
		if (journal) {
			struct stat st;
			char js[64];

			fstat(STDERR_FILENO, &st);
			snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
				 (unsigned long long)st.st_ino);
			setenv("JOURNAL_STREAM", js, 1);
		} else {
			unsetenv("JOURNAL_STREAM");
		}
		unsetenv("NOTIFY_SOCKET");
		execv(agent_path, (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	close(logfd);
	agents[slot].pid = pid;
	int rc = read_byte(p[0], &b, READY_BOUND_MS);
	close(p[0]);
	ck_assert_msg(rc == 1, "agent did not become ready (%d); its log: %s", rc,
		      agent_log(slot));
	return slot;
}

static void stop_agent_kill(int slot)
{
	ck_assert_int_eq(kill(agents[slot].pid, SIGKILL), 0);
	int st = wait_status(agents[slot].pid, 5000);
	ck_assert(st >= 0 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	agents[slot].pid = 0;
}

static uint32_t reaper_pid(shmg_t *h)
{
	struct shmg_info in;

	ck_assert_int_eq(shmg_info(h, &in), 0);
	return in.reaper_pid;
}

/* Waits until the reaper is pid (bounded): true if it happened. */
static bool wait_reaper(shmg_t *h, pid_t pid, int timeout_ms)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;

	while (reaper_pid(h) != (uint32_t)pid) {
		if (now_ms() >= end)
			return false;
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	return true;
}

/* A worker: opens the group, registers w/reg, joins w/grp, says so on the
 * pipe and waits to be killed. */
static pid_t start_worker(const char *tag)
{
	int p[2];
	char b = 0, key[64];

	ck_assert_int_eq(pipe(p), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		shmg_t *h;

		close(p[0]);
		if (shmg_open(group, NULL, &h) != 0)
			_exit(1);
		snprintf(key, sizeof(key), "w/%s", tag);
		if (shmg_register(h, SHMG_KEY(key), "meta", 4, NULL) != 0 ||
		    shmg_join(h, SHMG_KEY("w/grp"), "m", 1, NULL) != 0)
			_exit(2);
		b = 'R';
		(void)!write(p[1], &b, 1);
		for (;;)
			pause();
	}
	close(p[1]);
	ck_assert_int_eq(read_byte(p[0], &b, READY_BOUND_MS), 1);
	close(p[0]);
	ck_assert_int_eq(b, 'R');
	return pid;
}

/* Kills a worker and asserts that the monitor h (watching everything)
 * receives its death as one batch: unregistered w/<tag> then left w/grp,
 * both with reason exit, within REAP_BOUND_MS.  Earlier events are skipped. */
static void kill_worker_expect_batch(shmg_t *h, pid_t pid, const char *tag)
{
	struct shmg_event ev[16];
	char key[64];
	int got_unreg = 0, got_left = 0, n, i;
	uint32_t batch = 0;
	bool end_seen = false;

	snprintf(key, sizeof(key), "w/%s", tag);
	/* Drain the registered/joined events of the worker first. */
	while ((n = shmg_receive(h, ev, 16, 0)) > 0)
		;
	ck_assert_int_eq(n, 0);

	uint64_t t0 = now_ms();
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	int st = wait_status(pid, 5000);
	ck_assert(st >= 0 && WIFSIGNALED(st));
	while (!end_seen) {
		uint64_t now = now_ms();
		ck_assert_msg(now - t0 < REAP_BOUND_MS, "no exit batch within %d ms (got %d+%d)",
			      REAP_BOUND_MS, got_unreg, got_left);
		n = shmg_receive(h, ev, 16, (int)(REAP_BOUND_MS - (now - t0)));
		ck_assert_int_ge(n, 0);
		for (i = 0; i < n; i++) {
			ck_assert_int_ne(ev[i].type, SHMG_EV_OVERFLOW);
			if (ev[i].pid != pid)
				continue;
			ck_assert_int_eq(ev[i].reason, SHMG_REASON_EXIT);
			if (!got_unreg && !got_left)
				batch = ev[i].batch;
			ck_assert_uint_eq(ev[i].batch, batch);
			if (ev[i].type == SHMG_EV_UNREGISTERED) {
				ck_assert_uint_eq(ev[i].key_len, strlen(key));
				ck_assert(memcmp(ev[i].key, key, ev[i].key_len) == 0);
				ck_assert_int_eq(got_left, 0); /* unregistered, then left */
				got_unreg++;
			} else {
				ck_assert_int_eq(ev[i].type, SHMG_EV_LEFT);
				ck_assert_uint_eq(ev[i].key_len, 5);
				ck_assert(memcmp(ev[i].key, "w/grp", 5) == 0);
				got_left++;
			}
			if (ev[i].batch_end)
				end_seen = true;
		}
	}
	ck_assert_int_eq(got_unreg, 1);
	ck_assert_int_eq(got_left, 1);
	ck_assert_int_eq(shmg_lookup(h, SHMG_KEY(key), NULL, NULL, 0, NULL, NULL), -ENOENT);
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                    */
/* ------------------------------------------------------------------------ */

START_TEST(test_reap_batch)
{
	shmg_t *h;
	int a = start_agent(true, NULL);

	ck_assert_int_eq(shmg_open(group, NULL, &h), 0);
	ck_assert_uint_eq(reaper_pid(h), (uint32_t)agents[a].pid);
	ck_assert_int_eq(shmg_monitor(h, NULL, 0, NULL), 0);
	pid_t w = start_worker("one");
	ck_assert_int_eq(shmg_member_count(h, SHMG_KEY("w/grp"), NULL), 1);
	kill_worker_expect_batch(h, w, "one");
	ck_assert_int_eq(shmg_member_count(h, SHMG_KEY("w/grp"), NULL), 0);
	/* Journal style: every line starts with a priority. */
	const char *log = agent_log(a);
	ck_assert_msg(strncmp(log, "<6>", 3) == 0, "log: %s", log);
	ck_assert_ptr_null(strstr(log, "shmgroupd: info:"));
	ck_assert_int_eq(shmg_close(h), 0);
}
END_TEST

struct reader_shared {
	_Atomic int stop;
	_Atomic long lookups;
	_Atomic long errors;
};

#define NKEYS 64

START_TEST(test_restart_under_readers)
{
	struct reader_shared *rs = mmap(NULL, sizeof(*rs), PROT_READ | PROT_WRITE,
					MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	shmg_t *h;
	char key[32];
	int a = start_agent(false, NULL);

	ck_assert_ptr_ne(rs, MAP_FAILED);
	ck_assert_int_eq(shmg_open(group, NULL, &h), 0);
	for (int i = 0; i < NKEYS; i++) {
		snprintf(key, sizeof(key), "k/%d", i);
		ck_assert_int_eq(shmg_register(h, SHMG_KEY(key), key, strlen(key), NULL), 0);
	}
	pid_t r = fork();
	ck_assert_int_ge(r, 0);
	if (r == 0) {
		shmg_t *rh;
		char k[32], meta[64];
		size_t ml;

		if (shmg_open(group, NULL, &rh) != 0)
			_exit(1);
		for (long n = 0; !rs->stop; n++) {
			snprintf(k, sizeof(k), "k/%ld", n % NKEYS);
			if (shmg_lookup(rh, SHMG_KEY(k), NULL, meta, sizeof(meta), &ml, NULL) != 0 ||
			    ml != strlen(k) || memcmp(meta, k, ml) != 0)
				rs->errors++;
			rs->lookups++;
		}
		_exit(shmg_close(rh) == 0 ? 0 : 2);
	}
	for (int round = 0; round < 3; round++) {
		long before = rs->lookups;

		stop_agent_kill(a);
		a = start_agent(false, NULL);
		/* The dead agent's election lock passed on at once. */
		ck_assert_uint_eq(reaper_pid(h), (uint32_t)agents[a].pid);
		/* The reader kept going through the restart. */
		uint64_t end = now_ms() + 5000;
		while (rs->lookups == before && now_ms() < end)
			sched_yield();
		ck_assert_int_gt(rs->lookups, before);
	}
	/* The restarted agent reaps. */
	ck_assert_int_eq(shmg_monitor(h, SHMG_KEY("w/"), NULL), 0);
	pid_t w = start_worker("after-restart");
	kill_worker_expect_batch(h, w, "after-restart");

	rs->stop = 1;
	int st = wait_status(r, 5000);
	ck_assert_msg(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "reader status %d", st);
	ck_assert_int_eq(rs->errors, 0);
	ck_assert_int_gt(rs->lookups, 0);
	ck_assert_int_eq(shmg_registry_count(h, NULL), NKEYS + 0);
	ck_assert_int_eq(shmg_check(h, NULL, NULL), 0);
	ck_assert_int_eq(shmg_close(h), 0);
	munmap(rs, sizeof(*rs));
}
END_TEST

START_TEST(test_sigterm_and_config)
{
	char *path = conf_path;
	shmg_t *h;
	FILE *f;

	/* The config names the group and the level; the command line adds the
	 * ready fd (and would override the file). */
	snprintf(conf_path, sizeof(conf_path), "%s/%s.conf", workdir, group);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "# test\n[shmgroupd]\ngroup = %s\nlog_level = verbose\nmailbox_bytes = 32k\n",
		group);
	fclose(f);
	const char *extra[] = { "--config", path, NULL };
	int a = start_agent(false, extra);

	ck_assert_int_eq(shmg_open(group, NULL, &h), 0);
	ck_assert_int_eq(shmg_log_level(h, -1), SHMG_LOG_VERBOSE);
	struct shmg_info in;
	ck_assert_int_eq(shmg_info(h, &in), 0);
	ck_assert_uint_eq(in.mailbox_bytes, 32768);
	ck_assert_int_eq(shmg_register(h, SHMG_KEY("stays"), NULL, 0, NULL), 0);

	ck_assert_int_eq(kill(agents[a].pid, SIGTERM), 0);
	int st = wait_status(agents[a].pid, 5000);
	ck_assert_msg(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "agent status %d", st);
	agents[a].pid = 0;
	const char *log = agent_log(a);
	ck_assert_msg(strstr(log, "shmgroupd: info: SIGTERM received; stopping") != NULL, "log: %s",
		      log);
	/* A clean stop leaves the arena and everyone's entries alone. */
	ck_assert_uint_eq(reaper_pid(h), 0);
	ck_assert_int_eq(shmg_lookup(h, SHMG_KEY("stays"), NULL, NULL, 0, NULL, NULL), 0);
	ck_assert_int_eq(shmg_close(h), 0);
	ck_assert_int_eq(shmg_open(group, &(struct shmg_config){ .flags = SHMG_OPEN_NOCREATE },
				   &h),
			 0);
	ck_assert_int_eq(shmg_close(h), 0);
}
END_TEST

START_TEST(test_second_agent_takes_over)
{
	shmg_t *h;
	int a = start_agent(false, NULL);
	int b = start_agent(false, NULL);

	ck_assert_int_eq(shmg_open(group, NULL, &h), 0);
	ck_assert_int_eq(shmg_monitor(h, NULL, 0, NULL), 0);
	ck_assert_uint_eq(reaper_pid(h), (uint32_t)agents[a].pid);
	const char *log = agent_log(b);
	ck_assert_msg(strstr(log, "staying a candidate") != NULL, "log: %s", log);

	stop_agent_kill(a);
	ck_assert_msg(wait_reaper(h, agents[b].pid, REAP_BOUND_MS),
		      "candidate did not take over; reaper pid %u", reaper_pid(h));
	pid_t w = start_worker("two");
	kill_worker_expect_batch(h, w, "two");
	ck_assert_int_eq(shmg_close(h), 0);
}
END_TEST

/* A destroyed arena: the agent serves the group's name, so it moves to the
 * arena that the next open makes, and reaps there within the bound. */
#define FOLLOW_BOUND_MS 3000

static void expect_agent_moved(int a, shmg_t *old, shmg_t *h)
{
	ck_assert_int_eq(shmg_destroyed(h), 0);
	ck_assert_msg(wait_reaper(h, agents[a].pid, FOLLOW_BOUND_MS),
		      "agent did not move to the new arena; reaper pid %u; log: %s", reaper_pid(h),
		      agent_log(a));
	ck_assert_int_eq(shmg_monitor(h, NULL, 0, NULL), 0);
	pid_t w = start_worker("moved");
	kill_worker_expect_batch(h, w, "moved");
	/* It left the old one. */
	ck_assert_uint_eq(reaper_pid(old), 0);
	const char *log = agent_log(a);
	ck_assert_msg(strstr(log, "was destroyed; serving its new arena") != NULL, "log: %s", log);
}

START_TEST(test_follows_arena_a_worker_recreates)
{
	shmg_t *old, *h;
	int a = start_agent(false, NULL);

	ck_assert_int_eq(shmg_open(group, NULL, &old), 0);
	ck_assert_uint_eq(reaper_pid(old), (uint32_t)agents[a].pid);
	ck_assert_int_eq(shmg_destroy(group), 0);
	ck_assert_int_eq(shmg_destroyed(old), 1);
	ck_assert_int_eq(shmg_open(group, NULL, &h), 0);
	expect_agent_moved(a, old, h);
	ck_assert_int_eq(shmg_close(h), 0);
	ck_assert_int_eq(shmg_close(old), 0);
}
END_TEST

START_TEST(test_follows_arena_it_recreates)
{
	struct shmg_config nocreate = { .flags = SHMG_OPEN_NOCREATE };
	shmg_t *old, *h = NULL;
	int a = start_agent(false, NULL), rc;
	uint64_t end = now_ms() + FOLLOW_BOUND_MS;

	ck_assert_int_eq(shmg_open(group, NULL, &old), 0);
	ck_assert_int_eq(shmg_destroy(group), 0);
	/* Nobody else opens the name: the agent makes the arena itself. */
	while ((rc = shmg_open(group, &nocreate, &h)) == -ENOENT && now_ms() < end) {
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	ck_assert_msg(rc == 0, "no new arena within %d ms: %s", FOLLOW_BOUND_MS, shmg_strerror(rc));
	expect_agent_moved(a, old, h);
	ck_assert_int_eq(shmg_close(h), 0);
	ck_assert_int_eq(shmg_close(old), 0);
}
END_TEST

/* After every test, even one that failed or timed out: removes the work
 * directory and every arena a test of this run left behind. */
static void sweep(void)
{
	char prefix[64], path[512];
	struct dirent *d;
	DIR *dir;

	if ((dir = opendir(workdir))) {
		while ((d = readdir(dir)))
			if (d->d_name[0] != '.') {
				snprintf(path, sizeof(path), "%s/%s", workdir, d->d_name);
				unlink(path);
			}
		closedir(dir);
		rmdir(workdir);
	}
	snprintf(prefix, sizeof(prefix), "shmgroup.tagent-%d-", (int)main_pid);
	if ((dir = opendir("/dev/shm"))) {
		while ((d = readdir(dir)))
			if (strncmp(d->d_name, prefix, strlen(prefix)) == 0)
				shmg_destroy(d->d_name + strlen("shmgroup."));
		closedir(dir);
	}
}

int main(int argc, char **argv)
{
	Suite *s = suite_create("agent");
	TCase *tc = tcase_create("agent");
	SRunner *sr;
	int failed;

	if (argc < 2) {
		fprintf(stderr, "usage: %s PATH-TO-shmgroupd\n", argv[0]);
		return 77;
	}
	agent_path = argv[1];
	main_pid = getpid();
	snprintf(workdir, sizeof(workdir), "%s", "/tmp/shmgroupd-test.XXXXXX");
	if (!mkdtemp(workdir)) {
		perror("mkdtemp");
		return 1;
	}
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_reap_batch);
	tcase_add_test(tc, test_restart_under_readers);
	tcase_add_test(tc, test_sigterm_and_config);
	tcase_add_test(tc, test_second_agent_takes_over);
	tcase_add_test(tc, test_follows_arena_a_worker_recreates);
	tcase_add_test(tc, test_follows_arena_it_recreates);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	sweep();
	return failed ? 1 : 0;
}
