/* SPDX-License-Identifier: MIT */
/*
 * Test helpers shared by the unit and integration suites.
 *
 * Arena names.  Every test gets its own arena name "t-<pid>-<counter>" from
 * tc_new_name(); the name is remembered and shmg_destroy()ed by the checked
 * teardown, by an atexit handler of the process that made it (check's fork
 * mode exits without running teardown when an assertion fails), and finally
 * by tc_run(), which sweeps /dev/shm for "shmgroup.t-<pid>-*" objects whose
 * <pid> is no longer alive (a test killed by check's timeout runs nothing).
 *
 * Processes.  tc_fork() runs a function in a child that leaves with _exit():
 * never call ck_assert in a child, report through the exit code, a pipe or a
 * tc_shared_alloc() region and assert in the test process.  check kills the
 * test's whole process group when the test ends, so a leaked child dies too.
 *
 * Waiting.  Never sleep() for something to happen: wait for it with
 * tc_wait_until() (a bounded poll loop) or a pipe read with a timeout.
 */
#ifndef SHMG_TC_H
#define SHMG_TC_H

#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shmgroup.h"
#include "tc_check.h"

/* Name of the current test's arena (set by tc_setup). */
extern char tc_arena[64];

/* A fresh unique arena name, registered for cleanup.  Returns a static copy
 * that stays valid for the life of the process (up to 64 names). */
const char *tc_new_name(void);
/* Checked fixture: tc_arena = tc_new_name(); teardown destroys every name. */
void tc_setup(void);
void tc_teardown(void);
/* Adds a tcase with the fixture and a timeout in seconds to s. */
TCase *tc_case(Suite *s, const char *name, double timeout_s);
/* Runs the suite with tc_run_suite(), sweeps stale arenas, returns the exit
 * code. */
int tc_run(Suite *s);

/* Whether a test may act as a second user (nobody, 65534): it runs as root,
 * and nobody can reach /dev/shm here (in a chroot whose root directory is
 * private it cannot).  Otherwise prints that `test` is skipped, and why. */
bool tc_second_user_ok(const char *test);
/* 1 if /dev/shm/shmgroup.<name> exists. */
bool tc_arena_exists(const char *name);
/* Path of the shared-memory object of name into buf. */
void tc_arena_path(const char *name, char *buf, size_t cap);

/* Opens name with cfg (may be NULL), asserting success. */
shmg_t *tc_open(const char *name, const struct shmg_config *cfg);

/* Forks; the child runs fn(arg) and _exit()s with its return value. */
pid_t tc_fork(int (*fn)(void *arg), void *arg);
/* Waits for pid at most timeout_ms.  Returns the exit code (0..255),
 * 256 + signal number if it was killed, or -ETIMEDOUT (the child is left
 * running), or -errno. */
int tc_wait_exit(pid_t pid, int timeout_ms);
#define TC_KILLED(sig) (256 + (sig))

/* Polls pred(arg) every ~1 ms until true or timeout_ms elapsed. */
bool tc_wait_until(bool (*pred)(void *arg), void *arg, int timeout_ms);

/* Reads/writes exactly n bytes (read waits at most timeout_ms in all).
 * Return 0, -ETIMEDOUT, -EPIPE on EOF, or -errno. */
int tc_read_full(int fd, void *buf, size_t n, int timeout_ms);
int tc_write_full(int fd, const void *buf, size_t n);

/* Maps the whole shared-memory object of arena name read-write, as a
 * process that bypasses the library would (corruption tests).  *size gets
 * its size; munmap() it when done. */
void *tc_map_arena(const char *name, size_t *size);

/* MAP_SHARED|MAP_ANONYMOUS zeroed memory inherited by forked children. */
void *tc_shared_alloc(size_t size);

/* Monotonic milliseconds. */
uint64_t tc_now_ms(void);

/* FNV-1a 64. */
uint64_t tc_hash64(const void *p, size_t n);

/* Index slots in use over every shard (shmg_shard_stats), asserting success. */
uint64_t tc_index_used(shmg_t *h);
/* Prefix nodes parked for reuse (shmg_shard_stats.parked_nodes), all shards. */
uint64_t tc_parked_nodes(shmg_t *h);

/* Counts entries through shmg_members-style callback (arg is a long *). */
int tc_count_cb(const struct shmg_entry *e, void *arg);

/* Collects the shmg_check() report of h as a single string (for messages). */
long tc_check(shmg_t *h, char *msgbuf, size_t cap);

/* Asserts that shmg_check(h) finds no problem, printing what it found. */
#define TC_ASSERT_CLEAN(h)                                                             \
	do {                                                                           \
		char tc_msg_[2048];                                                    \
		long tc_n_ = tc_check((h), tc_msg_, sizeof(tc_msg_));                  \
		ck_assert_msg(tc_n_ == 0, "shmg_check() = %ld: %s", tc_n_, tc_msg_);   \
	} while (0)

/* Asserts rc == expected, printing both with shmg_strerror(). */
#define TC_EQ(rc, expected)                                                            \
	do {                                                                           \
		long tc_rc_ = (long)(rc), tc_ex_ = (long)(expected);                   \
		ck_assert_msg(tc_rc_ == tc_ex_, "%s = %ld (%s), expected %ld (%s)", #rc,  \
			      tc_rc_, shmg_strerror((int)tc_rc_), tc_ex_,              \
			      shmg_strerror((int)tc_ex_));                             \
	} while (0)

#endif
