/* SPDX-License-Identifier: MIT */
/*
 * Mailbox wakeups across crashes and against another local user.
 *
 * Crash points.  Two consumers join one key: R blocks in shmg_receive(-1)
 * (woken by FUTEX_WAKE), F blocks in poll() on shmg_fd (woken by a
 * datagram).  A dispatcher D arms sg_test_hook to SIGKILL itself at one of
 * the mailbox producer points (lib/testhook.h), on its first delivery (R's
 * mailbox) or its second (F's), and dispatches message 1.  Then either a
 * later producer dispatches message 2 and both consumers must receive it, or
 * nobody produces and the reap of D's endpoint alone must wake the consumer
 * D died on; in both cases within WAKE_MS.  No lost wakeup, and shmg_check
 * clean.
 *
 * A dispatcher stopped (SIGSTOP) holding R's mailbox lock must cost R an
 * overflow marker and the next producer a bounded wait, not a hang; closing
 * the endpoint whose mailbox it holds, and reusing its slot, must not hang.
 *
 * Two users (root only; skipped with a message otherwise).  A child drops to
 * nobody, takes the arena incarnation (which /proc/net/unix shows), binds every name
 * the old naming scheme would give the next endpoints and the reaper, and
 * floods every shmgroup socket it can see with datagrams.  Opens, the
 * reaper election and wakeups must all go on as if it were not there.
 */
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "tc.h"

#define KEY "wake/k"
#define WAKE_MS 2000
#define MSG_STOP 0xffffffffu

/* ---- consumers ------------------------------------------------------- */

enum {
	CONS_R,
	CONS_F,
	NCONS
};

struct shared {
	shmg_id_t id[NCONS];
	uint32_t got[NCONS][4];  /* got[c][m]: consumer c received message m */
	uint64_t dropped[NCONS]; /* overflow markers' counts */
	int32_t err[NCONS];
};

static struct shared *sh;
static int ready[2];

/* Records the messages of one receive; returns 1 once MSG_STOP arrived. */
static int consume(int c, const struct shmg_event *ev, int n)
{
	int stop = 0;
	for (int i = 0; i < n; i++) {
		uint32_t m;
		if (ev[i].type == SHMG_EV_OVERFLOW) {
			__atomic_add_fetch(&sh->dropped[c], ev[i].dropped, __ATOMIC_RELEASE);
			continue;
		}
		if (ev[i].type != SHMG_EV_MESSAGE || ev[i].meta_len != sizeof(m)) {
			sh->err[c] = 1000 + (int)ev[i].type;
			continue;
		}
		memcpy(&m, ev[i].meta, sizeof(m));
		if (m == MSG_STOP)
			stop = 1;
		else if (m < 4)
			__atomic_store_n(&sh->got[c][m], 1, __ATOMIC_RELEASE);
	}
	return stop;
}

static int consumer_main(void *arg)
{
	int c = (int)(intptr_t)arg;
	struct shmg_event ev[16];
	shmg_t *h;
	int n;

	if (shmg_open(tc_arena, NULL, &h) != 0 || shmg_join(h, SHMG_KEY(KEY), NULL, 0, NULL) != 0)
		return 10;
	sh->id[c] = shmg_self(h);
	(void)!write(ready[1], "r", 1);
	for (;;) {
		if (c == CONS_F) {
			struct pollfd p = { .fd = shmg_fd(h), .events = POLLIN };
			if (poll(&p, 1, -1) < 0)
				return 11;
			n = shmg_receive(h, ev, 16, 0);
		} else {
			n = shmg_receive(h, ev, 16, -1);
		}
		if (n < 0) {
			sh->err[c] = n;
			return 12;
		}
		if (consume(c, ev, n))
			break;
	}
	return shmg_close(h) == 0 ? 0 : 13;
}

/* ---- the dispatcher that dies ------------------------------------------ */

static const char *kill_point;
static int kill_hit, hits;

static int kill_sig = SIGKILL;

static void kill_hook(const char *point)
{
	if (strcmp(point, kill_point) == 0 && ++hits == kill_hit)
		raise(kill_sig);
}

static void send_msg(shmg_t *h, uint32_t m)
{
	(void)shmg_dispatch(h, SHMG_KEY(KEY), &m, sizeof(m), NULL);
}

static int dispatcher_main(void *arg)
{
	shmg_t *h;

	(void)arg;
	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 10;
	sg_test_hook = kill_hook;
	send_msg(h, 1);
	return 20; /* the hook should have killed it */
}

/* ---- the test ---------------------------------------------------------- */

struct got_arg {
	int c;
	uint32_t m;
};

static bool got(void *p)
{
	struct got_arg *g = p;
	return __atomic_load_n(&sh->got[g->c][g->m], __ATOMIC_ACQUIRE);
}

static bool r_asleep(void *p)
{
	shmg_t *h = p;
	return __atomic_load_n(&mailbox_at(h, sh->id[CONS_R].slot)->sleeping, __ATOMIC_ACQUIRE);
}

static const char *const points[] = { "mailbox:published", "mailbox:signalled", "mailbox:woken" };

/* Starts both consumers on a fresh arena and waits until R sleeps in the
 * futex (else a producer would send it a datagram instead). */
static shmg_t *start_consumers(pid_t *cons)
{
	char b;

	shmg_t *h = tc_open(tc_arena, NULL);
	sh = tc_shared_alloc(sizeof(*sh));
	ck_assert_int_eq(pipe(ready), 0);
	for (int c = 0; c < NCONS; c++) {
		cons[c] = tc_fork(consumer_main, (void *)(intptr_t)c);
		TC_EQ(tc_read_full(ready[0], &b, 1, 10000), 0);
	}
	ck_assert(tc_wait_until(r_asleep, h, 5000));
	return h;
}

/* Stops both consumers, then checks the arena and closes h. */
static void stop_consumers(shmg_t *h, const pid_t *cons)
{
	uint32_t stop = MSG_STOP;

	TC_EQ(shmg_dispatch(h, SHMG_KEY(KEY), &stop, sizeof(stop), NULL), 2);
	for (int c = 0; c < NCONS; c++) {
		TC_EQ(tc_wait_exit(cons[c], 10000), 0);
		TC_EQ(sh->err[c], 0);
	}
	TC_EQ(shmg_reap(h), 0);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}

/* _i: point * 4 + hit - 1 (hit 1 = R's mailbox, 2 = F's) + 2 * repair_only */
static void crash_case(int _i)
{
	const char *point = points[_i / 4];
	int hit = _i % 2 + 1, repair_only = _i / 2 % 2;
	int victim = hit == 1 ? CONS_R : CONS_F;
	pid_t cons[NCONS];
	shmg_t *h = start_consumers(cons);

	kill_point = point;
	kill_hit = hit;
	pid_t d = tc_fork(dispatcher_main, NULL);
	TC_EQ(tc_wait_exit(d, 10000), TC_KILLED(SIGKILL));

	if (repair_only) {
		/* Nobody produces: the reap of the dead dispatcher must redo the
		 * wakeup it owed. */
		TC_EQ(shmg_reap(h), 1);
		struct got_arg g = { victim, 1 };
		ck_assert_msg(tc_wait_until(got, &g, WAKE_MS),
			      "%s, hit %d: consumer %c not woken by the reap", point, hit,
			      "RF"[victim]);
	} else {
		send_msg(h, 2);
		for (int c = 0; c < NCONS; c++) {
			struct got_arg g = { c, 2 };
			ck_assert_msg(tc_wait_until(got, &g, WAKE_MS),
				      "%s, hit %d: consumer %c missed the later event", point, hit,
				      "RF"[c]);
		}
		/* Message 1 was published in the victim's mailbox before the
		 * kill; it must have come with (or before) message 2. */
		ck_assert(sh->got[victim][1]);
		TC_EQ(shmg_reap(h), 1);
	}
	stop_consumers(h, cons);
}

START_TEST(test_producer_killed)
{
	crash_case(_i);
}
END_TEST

static bool dropped_seen(void *p)
{
	return __atomic_load_n(&sh->dropped[(intptr_t)p], __ATOMIC_ACQUIRE) > 0;
}

/* A producer stopped while it holds a mailbox lock costs that consumer an
 * overflow marker, promptly, and the other producers nothing but a bounded
 * wait: they neither hang nor lose the consumer's wakeup. */
START_TEST(test_producer_stopped)
{
	pid_t cons[NCONS];
	shmg_t *h = start_consumers(cons);

	kill_point = "mailbox:published";
	kill_hit = 1;
	kill_sig = SIGSTOP;
	pid_t d = tc_fork(dispatcher_main, NULL);
	int st;
	ck_assert_int_eq(waitpid(d, &st, WUNTRACED), d);
	ck_assert(WIFSTOPPED(st));

	uint64_t t0 = tc_now_ms();
	send_msg(h, 2); /* R's mailbox lock is held by a stopped process */
	ck_assert_msg(tc_now_ms() - t0 < 3000, "dispatch waited %llu ms",
		      (unsigned long long)(tc_now_ms() - t0));
	struct got_arg g = { CONS_F, 2 };
	ck_assert(tc_wait_until(got, &g, WAKE_MS));
	ck_assert_msg(tc_wait_until(dropped_seen, (void *)(intptr_t)CONS_R, WAKE_MS),
		      "R was not told of the batch it could not get");
	ck_assert(sh->got[CONS_R][1]); /* published before the stop */

	/* Once the stopped producer dies, its lock is taken again at once. */
	kill(d, SIGKILL);
	TC_EQ(tc_wait_exit(d, 10000), TC_KILLED(SIGKILL));
	send_msg(h, 3);
	for (int c = 0; c < NCONS; c++) {
		struct got_arg g3 = { c, 3 };
		ck_assert(tc_wait_until(got, &g3, WAKE_MS));
	}
	TC_EQ(shmg_reap(h), 1);
	stop_consumers(h, cons);
}
END_TEST

/* Closing the endpoint whose mailbox lock a stopped producer holds, and
 * opening another (which skips that slot), end within a bounded time. */
START_TEST(test_close_beside_stopped_producer)
{
	shmg_t *h = tc_open(tc_arena, NULL), *x = tc_open(tc_arena, NULL), *y = NULL;
	int st;

	TC_EQ(shmg_join(x, SHMG_KEY(KEY), NULL, 0, NULL), 0);
	kill_point = "mailbox:published";
	kill_hit = 1;
	kill_sig = SIGSTOP;
	pid_t d = tc_fork(dispatcher_main, NULL);
	ck_assert_int_eq(waitpid(d, &st, WUNTRACED), d);
	ck_assert(WIFSTOPPED(st));

	uint64_t t0 = tc_now_ms();
	uint32_t x_slot = shmg_self(x).slot;
	TC_EQ(shmg_close(x), 0);
	/* The freed slot's mailbox is held: the open takes another slot. */
	TC_EQ(shmg_open(tc_arena, NULL, &y), 0);
	ck_assert_uint_ne(shmg_self(y).slot, x_slot);
	ck_assert_msg(tc_now_ms() - t0 < 5000, "close and open took %llu ms",
		      (unsigned long long)(tc_now_ms() - t0));
	shmg_close(y);

	kill(d, SIGKILL);
	TC_EQ(tc_wait_exit(d, 10000), TC_KILLED(SIGKILL));
	TC_EQ(shmg_reap(h), 1);
	y = tc_open(tc_arena, NULL);
	TC_ASSERT_CLEAN(h);
	shmg_close(y);
	shmg_close(h);
}
END_TEST

/* ---- another user ------------------------------------------------------- */

static socklen_t abstract(struct sockaddr_un *a, const char *name)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	size_t n = strlen(name);
	memcpy(a->sun_path + 1, name, n);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

/* Sends a datagram to every name of the arena in /proc/net/unix. */
static void flood_once(int out, const char *prefix)
{
	FILE *f = fopen("/proc/net/unix", "r");
	char line[512];

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *p = strstr(line, prefix), name[108];
		if (!p || sscanf(p + 1, "%100s", name) != 1)
			continue;
		struct sockaddr_un a;
		socklen_t len = abstract(&a, name);
		(void)sendto(out, "x", 1, MSG_DONTWAIT, (struct sockaddr *)&a, len);
	}
	fclose(f);
}

struct squat {
	unsigned long long incarnation; /* shown to all in /proc/net/unix */
	int stop;                       /* set by the test */
	int squatted;
};

static int squatter_main(void *arg)
{
	struct squat *sq = arg;
	unsigned long long inc = sq->incarnation;
	char name[100], prefix[40];
	shmg_t *h = NULL;

	if (setgroups(0, NULL) != 0 || setresgid(65534, 65534, 65534) != 0 ||
	    setresuid(65534, 65534, 65534) != 0)
		return 10;
	/* It may not use the arena... */
	if (shmg_open(tc_arena, NULL, &h) != -EACCES)
		return 11;
	/* ...but it sees the names: take every one the old scheme would give
	 * the next endpoints, and the reaper's. */
	for (unsigned slot = 0; slot < 16; slot++)
		for (unsigned gen = 0; gen < 8; gen++) {
			snprintf(name, sizeof(name), "shmgroup.%016llx.mb.%u.%u", inc, slot, gen);
			int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
			struct sockaddr_un a;
			socklen_t len = abstract(&a, name);
			if (fd >= 0 && bind(fd, (struct sockaddr *)&a, len) == 0)
				sq->squatted++;
		}
	snprintf(name, sizeof(name), "shmgroup.%016llx.reaper.0.0", inc);
	struct sockaddr_un a;
	socklen_t len = abstract(&a, name);
	int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, len) == 0)
		sq->squatted++;
	int out = socket(AF_UNIX, SOCK_DGRAM, 0);
	(void)!write(ready[1], "r", 1);
	snprintf(prefix, sizeof(prefix), "@shmgroup.%016llx.", inc);
	while (!__atomic_load_n(&sq->stop, __ATOMIC_ACQUIRE))
		flood_once(out, prefix);
	return 0;
}

static bool fd_readable(void *p)
{
	struct pollfd pf = { .fd = shmg_fd(p), .events = POLLIN };
	return poll(&pf, 1, 0) == 1;
}

START_TEST(test_other_user_cannot_squat)
{
	if (!tc_second_user_ok(__func__))
		return;
	struct squat *sq = tc_shared_alloc(sizeof(*sq));
	struct shmg_event ev[16];
	shmg_t *first = tc_open(tc_arena, NULL), *hs[8];
	char b;

	struct shmg_info in;
	TC_EQ(shmg_info(first, &in), 0);
	sq->incarnation = in.incarnation;
	ck_assert_int_eq(pipe(ready), 0);
	pid_t pid = tc_fork(squatter_main, sq);
	int st = tc_read_full(ready[0], &b, 1, 10000);
	ck_assert_msg(st == 0, "squatter failed: exit %d", tc_wait_exit(pid, 1000));
	ck_assert_int_gt(sq->squatted, 0);

	/* Opens go on, and so does the reaper election. */
	for (int i = 0; i < 8; i++) {
		int rc = shmg_open(tc_arena, NULL, &hs[i]);
		ck_assert_msg(rc == 0, "open %d beside a squatter: %d (%s)", i, rc,
			      shmg_strerror(rc));
		TC_EQ(shmg_join(hs[i], SHMG_KEY(KEY), NULL, 0, NULL), 0);
	}
	TC_EQ(shmg_reaper_enable(first), 1);

	/* Foreign datagrams make a descriptor readable for nothing, and a
	 * receive that drains them answers 0 and does not hang. */
	for (int i = 0; i < 8; i++)
		TC_EQ(shmg_receive(hs[i], ev, 16, 0), 0);

	/* Real events still wake consumers, during the flood and after it. */
	for (uint32_t m = 7; m < 9; m++) {
		TC_EQ(shmg_dispatch(first, SHMG_KEY(KEY), &m, sizeof(m), NULL), 8);
		ck_assert(tc_wait_until(fd_readable, hs[0], WAKE_MS));
		for (int i = 0; i < 8; i++) {
			int n = shmg_receive(hs[i], ev, 16, WAKE_MS);
			ck_assert_msg(n == 1 && ev[0].type == SHMG_EV_MESSAGE, "consumer %d: %d", i,
				      n);
			TC_EQ(shmg_receive(hs[i], ev, 16, 0), 0);
		}
		if (m == 7) {
			__atomic_store_n(&sq->stop, 1, __ATOMIC_RELEASE);
			TC_EQ(tc_wait_exit(pid, 10000), 0);
			for (int i = 0; i < 8; i++)
				TC_EQ(shmg_receive(hs[i], ev, 16, 0), 0);
			ck_assert(!fd_readable(hs[0]));
		}
	}
	for (int i = 0; i < 8; i++)
		TC_EQ(shmg_close(hs[i]), 0);
	TC_ASSERT_CLEAN(first);
	shmg_close(first);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("wakeup");
	TCase *tc = tc_case(s, "crash", 60);
	tcase_add_loop_test(tc, test_producer_killed, 0,
			    (int)(sizeof(points) / sizeof(points[0])) * 4);
	tcase_add_test(tc, test_producer_stopped);
	tcase_add_test(tc, test_close_beside_stopped_producer);
	tc = tc_case(s, "users", 60);
	tcase_add_test(tc, test_other_user_cannot_squat);
	return tc_run(s);
}
