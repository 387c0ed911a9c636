/* SPDX-License-Identifier: MIT */
/*
 * The locks an open takes, scribbled on or held by a process that never lets
 * go: every open must come back with an error naming the problem within the
 * library's wait limit (shortened here), never hang, and a repaired lock
 * must make the arena usable again.
 *
 *  - the endpoint lock's word naming a thread that does not exist: the kernel
 *    never marks such a lock owner-dead, so a plain wait never ends: -EBUSY;
 *  - the endpoint lock filled with garbage: not a usable mutex: -EIO (not the
 *    -EINVAL that would blame the caller's arguments);
 *  - the cluster lock naming a thread that does not exist: connect -EBUSY;
 *  - the creation lock (flock) held by a stopped creator: -EBUSY (and
 *    shmg_destroy, which takes it too, the same).
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "layout.h"
#include "tc.h"

extern uint32_t lock_wait_limit_ms;

#define LIMIT_MS 300u

/* A thread id that names nobody: a child's pid after it was reaped. */
static uint32_t dead_tid(void)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(0);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	return (uint32_t)pid;
}

/* The arena's header, mapped from its object, for scribbling. */
static struct arena_header *map_header(void)
{
	char path[300];
	int fd;

	tc_arena_path(tc_arena, path, sizeof(path));
	fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	void *p =
		mmap(NULL, sizeof(struct arena_header), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	ck_assert_ptr_ne(p, MAP_FAILED);
	return p;
}

/* The futex word of a glibc mutex is its first int (__data.__lock). */
static uint32_t *lock_word(pthread_mutex_t *m)
{
	return (uint32_t *)(void *)m;
}

static void shorten_limit(void)
{
	lock_wait_limit_ms = LIMIT_MS;
}

/* shmg_open of tc_arena: rc, and how long it took in *ms. */
static int timed_open(shmg_t **out, uint64_t *ms)
{
	uint64_t t0 = tc_now_ms();
	int rc = shmg_open(tc_arena, NULL, out);

	*ms = tc_now_ms() - t0;
	return rc;
}

/* With the lock restored: a new open works and the arena is clean. */
static void finish_usable(shmg_t *h, struct arena_header *hdr)
{
	shmg_t *o = tc_open(tc_arena, NULL);

	TC_ASSERT_CLEAN(o);
	shmg_close(o);
	shmg_close(h);
	munmap(hdr, sizeof(*hdr));
}

START_TEST(test_endpoint_lock_names_no_thread)
{
	shmg_t *h = tc_open(tc_arena, NULL), *o = NULL;
	struct arena_header *hdr = map_header();
	uint64_t ms;

	shorten_limit();
	TC_EQ(shmg_register(h, SHMG_KEY("k"), "v", 1, NULL), 0);
	__atomic_store_n(lock_word(&hdr->endpoint_lock), dead_tid(), __ATOMIC_RELEASE);
	TC_EQ(timed_open(&o, &ms), -EBUSY);
	ck_assert_ptr_null(o);
	ck_assert_uint_ge(ms, LIMIT_MS);
	ck_assert_uint_lt(ms, LIMIT_MS + 5000);
	/* Readers never take it. */
	TC_EQ(shmg_lookup(h, SHMG_KEY("k"), NULL, NULL, 0, NULL, NULL), 0);

	__atomic_store_n(lock_word(&hdr->endpoint_lock), 0, __ATOMIC_RELEASE);
	finish_usable(h, hdr);
}
END_TEST

START_TEST(test_endpoint_lock_garbage)
{
	shmg_t *h = tc_open(tc_arena, NULL), *o = NULL;
	struct arena_header *hdr = map_header();
	pthread_mutex_t saved;
	uint64_t ms;

	shorten_limit();
	memcpy(&saved, &hdr->endpoint_lock, sizeof(saved));
	memset(&hdr->endpoint_lock, 0xa5, sizeof(hdr->endpoint_lock));
	TC_EQ(timed_open(&o, &ms), -EIO);
	ck_assert_ptr_null(o);
	ck_assert_uint_lt(ms, LIMIT_MS + 5000);

	memcpy(&hdr->endpoint_lock, &saved, sizeof(saved));
	finish_usable(h, hdr);
}
END_TEST

START_TEST(test_cluster_lock_names_no_thread)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	struct arena_header *hdr = map_header();

	shorten_limit();
	__atomic_store_n(lock_word(&hdr->cluster_lock), dead_tid(), __ATOMIC_RELEASE);
	TC_EQ(shmg_connect(h, "c1", NULL), -EBUSY);
	TC_EQ(shmg_connected(h, "c1"), 0);
	__atomic_store_n(lock_word(&hdr->cluster_lock), 0, __ATOMIC_RELEASE);
	TC_EQ(shmg_connect(h, "c1", NULL), 0);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
	munmap(hdr, sizeof(*hdr));
}
END_TEST

/* A creator stopped while it holds the creation lock. */
START_TEST(test_creation_lock_held)
{
	char path[300];
	shmg_t *h = tc_open(tc_arena, NULL), *o = NULL;
	int p[2];
	char b;
	uint64_t ms;

	shorten_limit();
	tc_arena_path(tc_arena, path, sizeof(path));
	ck_assert_int_eq(pipe(p), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fd = open(path, O_RDWR);

		if (fd < 0 || flock(fd, LOCK_EX) < 0)
			_exit(1);
		(void)!write(p[1], "L", 1);
		for (;;)
			pause();
	}
	close(p[1]);
	TC_EQ(tc_read_full(p[0], &b, 1, 5000), 0);
	close(p[0]);
	TC_EQ(timed_open(&o, &ms), -EBUSY);
	ck_assert_uint_ge(ms, LIMIT_MS);
	TC_EQ(shmg_destroy(tc_arena), -EBUSY);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	o = tc_open(tc_arena, NULL);
	shmg_close(o);
	shmg_close(h);
}
END_TEST

static Suite *locks_suite(void)
{
	Suite *s = suite_create("locks");
	TCase *tc = tc_case(s, "locks", 20);

	tcase_add_test(tc, test_endpoint_lock_names_no_thread);
	tcase_add_test(tc, test_endpoint_lock_garbage);
	tcase_add_test(tc, test_cluster_lock_names_no_thread);
	tcase_add_test(tc, test_creation_lock_held);
	return s;
}

int main(void)
{
	return tc_run(locks_suite());
}
