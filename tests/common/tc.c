/* SPDX-License-Identifier: MIT */
/* Test helpers: see tc.h. */
#include "tc.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TC_MAX_NAMES 64

char tc_arena[64];

static char names[TC_MAX_NAMES][64];
static unsigned n_names;
static pid_t names_owner;
static unsigned counter;

static void destroy_names(void)
{
	/* Only the process that made the names destroys them: a forked child
	 * that somehow reaches exit() must not pull the arena from under the
	 * test. */
	if (names_owner != getpid())
		return;
	for (unsigned i = 0; i < n_names; i++)
		(void)shmg_destroy(names[i]);
	n_names = 0;
}

const char *tc_new_name(void)
{
	pid_t me = getpid();

	if (names_owner != me) {
		if (names_owner == 0)
			atexit(destroy_names);
		names_owner = me;
		n_names = 0;
		counter = 0;
	}
	ck_assert_uint_lt(n_names, TC_MAX_NAMES);
	snprintf(names[n_names], sizeof(names[n_names]), "t-%ld-%u", (long)me, counter++);
	/* A stale object of a previous run with the same pid is not ours. */
	(void)shmg_destroy(names[n_names]);
	return names[n_names++];
}

void tc_setup(void)
{
	snprintf(tc_arena, sizeof(tc_arena), "%s", tc_new_name());
}

void tc_teardown(void)
{
	destroy_names();
}

TCase *tc_case(Suite *s, const char *name, double timeout_s)
{
	TCase *tc = tcase_create(name);

	tcase_add_checked_fixture(tc, tc_setup, tc_teardown);
	tcase_set_timeout(tc, timeout_s);
	suite_add_tcase(s, tc);
	return tc;
}

/* Removes "shmgroup.t-<pid>-*" objects whose test process is gone. */
static void sweep_stale(void)
{
	DIR *d = opendir("/dev/shm");
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d)) != NULL) {
		long pid;
		char path[300];

		if (sscanf(de->d_name, "shmgroup.t-%ld-", &pid) != 1 || pid <= 0)
			continue;
		if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		snprintf(path, sizeof(path), "/dev/shm/%s", de->d_name);
		(void)unlink(path);
	}
	closedir(d);
}

int tc_run(Suite *s)
{
	int rc = tc_run_suite(s);

	sweep_stale();
	return rc;
}

void tc_arena_path(const char *name, char *buf, size_t cap)
{
	snprintf(buf, cap, "/dev/shm/shmgroup.%s", name);
}

bool tc_second_user_ok(const char *test)
{
	if (geteuid() != 0) {
		fprintf(stderr, "%s: skipped: needs root to act as a second user\n", test);
		return false;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		if (setgroups(0, NULL) != 0 || setresgid(65534, 65534, 65534) != 0 ||
		    setresuid(65534, 65534, 65534) != 0)
			_exit(1);
		_exit(access("/dev/shm", W_OK | X_OK) == 0 ? 0 : 2);
	}
	int st = pid > 0 ? tc_wait_exit(pid, 10000) : -1;
	if (st != 0)
		fprintf(stderr, "%s: skipped: user nobody cannot %s here\n", test,
			st == 2 ? "reach /dev/shm" : "be switched to");
	return st == 0;
}

bool tc_arena_exists(const char *name)
{
	char path[300];
	struct stat st;

	tc_arena_path(name, path, sizeof(path));
	return stat(path, &st) == 0;
}

shmg_t *tc_open(const char *name, const struct shmg_config *cfg)
{
	shmg_t *h = NULL;
	int rc = shmg_open(name, cfg, &h);

	ck_assert_msg(rc == 0, "shmg_open(%s) = %d (%s)", name, rc, shmg_strerror(rc));
	ck_assert_ptr_nonnull(h);
	return h;
}

pid_t tc_fork(int (*fn)(void *arg), void *arg)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(fn(arg) & 0xff);
	return pid;
}

uint64_t tc_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void pause_1ms(void)
{
	struct timespec ts = { 0, 1000000 };

	nanosleep(&ts, NULL);
}

int tc_wait_exit(pid_t pid, int timeout_ms)
{
	uint64_t deadline = tc_now_ms() + (uint64_t)timeout_ms;
	int status;

	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			break;
		if (r < 0 && errno != EINTR)
			return -errno;
		if (tc_now_ms() >= deadline)
			return -ETIMEDOUT;
		pause_1ms();
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return TC_KILLED(WTERMSIG(status));
	return -EINVAL;
}

bool tc_wait_until(bool (*pred)(void *arg), void *arg, int timeout_ms)
{
	uint64_t deadline = tc_now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		if (pred(arg))
			return true;
		if (tc_now_ms() >= deadline)
			return pred(arg);
		pause_1ms();
	}
}

int tc_read_full(int fd, void *buf, size_t n, int timeout_ms)
{
	uint64_t deadline = tc_now_ms() + (uint64_t)timeout_ms;
	char *p = buf;

	while (n > 0) {
		uint64_t now = tc_now_ms();
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int r;
		ssize_t got;

		if (now >= deadline)
			return -ETIMEDOUT;
		r = poll(&pfd, 1, (int)(deadline - now));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ETIMEDOUT;
		got = read(fd, p, n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return -errno;
		if (got == 0)
			return -EPIPE;
		p += got;
		n -= (size_t)got;
	}
	return 0;
}

int tc_write_full(int fd, const void *buf, size_t n)
{
	const char *p = buf;

	while (n > 0) {
		ssize_t put = write(fd, p, n);

		if (put < 0 && errno == EINTR)
			continue;
		if (put < 0)
			return -errno;
		p += put;
		n -= (size_t)put;
	}
	return 0;
}

void *tc_map_arena(const char *name, size_t *size)
{
	char path[300];
	struct stat st;
	void *p;
	int fd;

	tc_arena_path(name, path, sizeof(path));
	fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fstat(fd, &st), 0);
	p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ck_assert_ptr_ne(p, MAP_FAILED);
	close(fd);
	*size = (size_t)st.st_size;
	return p;
}

void *tc_shared_alloc(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	ck_assert_ptr_ne(p, MAP_FAILED);
	return p;
}

uint64_t tc_hash64(const void *p, size_t n)
{
	const unsigned char *b = p;
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

int tc_count_cb(const struct shmg_entry *e, void *arg)
{
	(void)e;
	(*(long *)arg)++;
	return 0;
}

struct report_buf {
	char *buf;
	size_t cap, len;
};

static void report_cb(const char *msg, void *arg)
{
	struct report_buf *rb = arg;
	int n;

	if (rb->len + 1 >= rb->cap)
		return;
	n = snprintf(rb->buf + rb->len, rb->cap - rb->len, "%s; ", msg);
	if (n > 0)
		rb->len += (size_t)n < rb->cap - rb->len ? (size_t)n : rb->cap - rb->len - 1;
}

long tc_check(shmg_t *h, char *msgbuf, size_t cap)
{
	struct report_buf rb = { msgbuf, cap, 0 };

	if (cap)
		msgbuf[0] = '\0';
	return shmg_check(h, report_cb, &rb);
}

/* One uint64_t field of shmg_shard_stats, summed over every shard. */
static uint64_t shard_stats_sum(shmg_t *h, size_t field)
{
	struct shmg_info in;
	uint64_t n = 0;
	ck_assert_int_eq(shmg_info(h, &in), 0);
	for (uint32_t s = 0; s < in.shards; s++) {
		struct shmg_shard_stats st;
		ck_assert_int_gt(shmg_shard_stats(h, s, &st, sizeof(st)), 0);
		ck_assert_uint_le(st.parked_nodes, 6);
		uint64_t v;
		memcpy(&v, (const char *)&st + field, sizeof(v));
		n += v;
	}
	return n;
}

uint64_t tc_index_used(shmg_t *h)
{
	return shard_stats_sum(h, offsetof(struct shmg_shard_stats, index_used));
}

uint64_t tc_parked_nodes(shmg_t *h)
{
	return shard_stats_sum(h, offsetof(struct shmg_shard_stats, parked_nodes));
}
