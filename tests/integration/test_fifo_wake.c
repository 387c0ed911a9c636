/* SPDX-License-Identifier: MIT */
/*
 * The epoll consumer's wakeup FIFO (lib/wake_fifo.c), across processes.
 *
 * Woken.  A consumer process waits in epoll on shmg_fd; a producer process
 * registers a key the consumer monitors, joins a group it monitors and
 * dispatches to a group it is a member of.  Each time the consumer must be
 * woken, with the byte in its FIFO (not a datagram), and receive the event.
 *
 * Another uid (root only; skipped otherwise).  The consumer runs as nobody
 * on root's arena (SHMG_OPEN_OWNER): a root producer wakes it through its
 * FIFO, owned by nobody as its mailbox records; a producer of a third uid
 * that may not open the FIFO wakes it with the datagram instead.
 *
 * Removal.  The FIFO exists while its endpoint does: removed by close, by
 * the reap of a SIGKILLed consumer, and by shmg_destroy.
 *
 * Stopped.  A SIGSTOPped consumer whose FIFO is full costs producers
 * nothing: every dispatch returns, the FIFO stays full, and the consumer,
 * killed, leaves no FIFO once reaped.
 *
 * Scribbled.  A mailbox record pointing at a regular file, at another FIFO
 * or at a wrong uid is never written to (the producer falls back to the
 * datagram and the consumer is woken all the same), and the reap of a
 * consumer whose record was scribbled removes nothing that is not the FIFO
 * it made.
 */
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "tc.h"

#define NOBODY 65534
#define THIRD_UID 65533
#define WAIT_MS 10000

/* ---- helpers ------------------------------------------------------------- */

/* The FIFO name of endpoint (slot, gen) of arena `name` with that nonce. */
static void fifo_name(char *buf, size_t cap, const char *name, uint32_t slot, uint32_t gen,
		      uint64_t nonce)
{
	snprintf(buf, cap, "/dev/shm/shmgroup.%s@wake.%08x.%08x.%016llx", name, slot, gen,
		 (unsigned long long)nonce);
}

static void fifo_path_of(const shmg_t *h, char *buf, size_t cap)
{
	fifo_name(buf, cap, h->name, h->fifo.slot, h->fifo.gen, h->fifo.nonce);
}

static int count_fifos(const char *name)
{
	char prefix[300];
	int n = 0;

	snprintf(prefix, sizeof(prefix), "shmgroup.%s@wake.", name);
	DIR *d = opendir("/dev/shm");
	ck_assert_ptr_nonnull(d);
	for (struct dirent *e; (e = readdir(d)) != NULL;)
		n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
	closedir(d);
	return n;
}

static bool exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

static int become(uid_t uid)
{
	if (setgroups(0, NULL) != 0 || setresgid(uid, uid, uid) != 0 ||
	    setresuid(uid, uid, uid) != 0)
		return -1;
	return 0;
}

/* Bytes waiting in h's FIFO; whether a datagram waits in its socket. */
static int fifo_bytes(const shmg_t *h)
{
	int n = 0;
	return h->fifo.fd >= 0 && ioctl(h->fifo.fd, FIONREAD, &n) == 0 ? n : -1;
}

static bool dgram_waiting(const shmg_t *h)
{
	char b;
	return recv(h->mb_sock, &b, 1, MSG_PEEK | MSG_DONTWAIT) >= 0;
}

/* ---- a consumer in epoll, a producer, in their own processes -------------- */

enum { ROUND_REGISTER, ROUND_JOIN, ROUND_DISPATCH, NROUNDS };
enum { VIA_NONE, VIA_FIFO, VIA_DGRAM };

struct shared {
	uint32_t consumer_uid, producer_uid; /* 0: stay root */
	char fifo[320];                      /* the consumer's FIFO */
	int32_t got[NROUNDS];                   /* event type received in that round */
	int32_t via[NROUNDS];
};

static struct shared *sh;
static int c2t[2], t2c[2], t2p[2], p2t[2];

static const struct shmg_config owner_root = {.flags = SHMG_OPEN_OWNER, .owner_uid = 0};

/* Receives everything waiting; returns the type of the first event, or 0. */
static int drain_events(shmg_t *h)
{
	struct shmg_event ev[16];
	int n, type = 0;
	while ((n = shmg_receive(h, ev, 16, 0)) > 0)
		if (!type)
			type = (int)ev[0].type;
	return n < 0 ? n : type;
}

/* In a child: opens the arena as uid (0: as root); NULL on failure. */
static shmg_t *open_as(uid_t uid)
{
	shmg_t *h;
	if (uid && become(uid) != 0)
		return NULL;
	return shmg_open(tc_arena, &owner_root, &h) == 0 ? h : NULL;
}

static int epoll_consumer(void *arg)
{
	(void)arg;
	char b;
	shmg_t *h = open_as(sh->consumer_uid);
	if (!h)
		return 11;
	if (shmg_monitor(h, SHMG_KEY("fw/"), NULL) != 0 ||
	    shmg_join(h, SHMG_KEY("fw/msg"), NULL, 0, NULL) != 0)
		return 12;
	if (h->fifo.fd < 0)
		return 13;
	fifo_path_of(h, sh->fifo, sizeof(sh->fifo));
	int ep = epoll_create1(0);
	struct epoll_event e = {.events = EPOLLIN}, out;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, shmg_fd(h), &e) != 0)
		return 14;
	if (drain_events(h) < 0) /* our own join */
		return 15;
	(void)!write(c2t[1], "r", 1);
	for (int op = 0; op < NROUNDS; op++) {
		if (tc_read_full(t2c[0], &b, 1, WAIT_MS * 3) != 0)
			return 16;
		if (epoll_wait(ep, &out, 1, WAIT_MS) != 1)
			return 17; /* not woken */
		sh->via[op] = fifo_bytes(h) > 0 ? VIA_FIFO : dgram_waiting(h) ? VIA_DGRAM : VIA_NONE;
		int type = drain_events(h);
		if (type < 0)
			return 18;
		sh->got[op] = type;
		/* Drained: nothing left to report readable. */
		if (epoll_wait(ep, &out, 1, 0) != 0)
			return 19;
		(void)!write(c2t[1], "d", 1);
	}
	return shmg_close(h) == 0 ? 0 : 20;
}

static int producer(void *arg)
{
	(void)arg;
	char b;
	shmg_t *h = open_as(sh->producer_uid);
	if (!h)
		return 11;
	for (int op = 0; op < NROUNDS; op++) {
		if (tc_read_full(t2p[0], &b, 1, WAIT_MS * 3) != 0)
			return 12;
		int rc = op == ROUND_REGISTER ? shmg_register(h, SHMG_KEY("fw/r"), NULL, 0, NULL)
			 : op == ROUND_JOIN   ? shmg_join(h, SHMG_KEY("fw/j"), NULL, 0, NULL)
					   : shmg_dispatch(h, SHMG_KEY("fw/msg"), "m", 1, NULL);
		if (rc < 0)
			return 13 + op;
		(void)!write(p2t[1], "p", 1);
	}
	/* Its close makes events too: not before the consumer is done. */
	if (tc_read_full(t2p[0], &b, 1, WAIT_MS * 3) != 0)
		return 19;
	return shmg_close(h) == 0 ? 0 : 20;
}

/* Runs the three rounds; chmod_fifo: mode given to the consumer's FIFO
 * before them (0: left alone).  Expects every round woken `via`. */
static void run_rounds(uid_t consumer_uid, uid_t producer_uid, mode_t chmod_fifo, int via)
{
	char b;
	struct shmg_config cfg = {.mode = 0666};
	shmg_t *owner = tc_open(tc_arena, &cfg); /* root's arena, open to all */

	sh = tc_shared_alloc(sizeof(*sh));
	sh->consumer_uid = consumer_uid;
	sh->producer_uid = producer_uid;
	ck_assert_int_eq(pipe(c2t), 0);
	ck_assert_int_eq(pipe(t2c), 0);
	ck_assert_int_eq(pipe(t2p), 0);
	ck_assert_int_eq(pipe(p2t), 0);
	pid_t c = tc_fork(epoll_consumer, NULL);
	TC_EQ(tc_read_full(c2t[0], &b, 1, WAIT_MS), 0);
	struct stat st;
	ck_assert_int_eq(stat(sh->fifo, &st), 0);
	ck_assert(S_ISFIFO(st.st_mode));
	ck_assert_uint_eq(st.st_uid, consumer_uid);
	ck_assert_uint_eq(st.st_mode & 0777, 0666); /* the arena's mode */
	if (chmod_fifo)
		ck_assert_int_eq(chmod(sh->fifo, chmod_fifo), 0);
	pid_t p = tc_fork(producer, NULL);
	for (int op = 0; op < NROUNDS; op++) {
		/* The consumer is in epoll_wait, or about to be. */
		ck_assert_int_eq(write(t2c[1], "g", 1), 1);
		ck_assert_int_eq(write(t2p[1], "g", 1), 1);
		TC_EQ(tc_read_full(p2t[0], &b, 1, WAIT_MS), 0);
		TC_EQ(tc_read_full(c2t[0], &b, 1, WAIT_MS * 2), 0);
	}
	ck_assert_int_eq(write(t2p[1], "x", 1), 1);
	TC_EQ(tc_wait_exit(p, WAIT_MS), 0);
	TC_EQ(tc_wait_exit(c, WAIT_MS), 0);
	TC_EQ(sh->got[ROUND_REGISTER], SHMG_EV_REGISTERED);
	TC_EQ(sh->got[ROUND_JOIN], SHMG_EV_JOINED);
	TC_EQ(sh->got[ROUND_DISPATCH], SHMG_EV_MESSAGE);
	for (int op = 0; op < NROUNDS; op++)
		ck_assert_msg(sh->via[op] == via, "round %d woken via %d, expected %d", op,
			      sh->via[op], via);
	ck_assert(!exists(sh->fifo)); /* its close removed it */
	TC_EQ(count_fifos(tc_arena), 1); /* the owner's */
	TC_ASSERT_CLEAN(owner);
	shmg_close(owner);
	TC_EQ(count_fifos(tc_arena), 0);
	int fds[] = {c2t[0], c2t[1], t2c[0], t2c[1], t2p[0], t2p[1], p2t[0], p2t[1]};
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		close(fds[i]);
}

START_TEST(test_epoll_consumer_woken_through_fifo)
{
	run_rounds(geteuid(), geteuid(), 0, VIA_FIFO);
}
END_TEST

START_TEST(test_other_uid_consumer_woken_through_fifo)
{
	if (!tc_second_user_ok(__func__))
		return;
	run_rounds(NOBODY, 0, 0, VIA_FIFO);
}
END_TEST

START_TEST(test_producer_without_access_sends_datagram)
{
	if (!tc_second_user_ok(__func__))
		return;
	/* nobody's FIFO closed to everyone else: the third user cannot open
	 * it, and wakes nobody with the datagram. */
	run_rounds(NOBODY, THIRD_UID, 0600, VIA_DGRAM);
}
END_TEST

/* ---- removal ------------------------------------------------------------- */

struct victim {
	int sig;        /* what it does to itself once open: SIGKILL, SIGSTOP */
	char fifo[320]; /* and tells */
	uint32_t slot;
};

static int victim_main(void *arg)
{
	struct victim *v = arg;
	shmg_t *h;
	if (shmg_open(tc_arena, NULL, &h) != 0 || shmg_join(h, SHMG_KEY("fw/msg"), NULL, 0, NULL))
		return 10;
	fifo_path_of(h, v->fifo, sizeof(v->fifo));
	v->slot = h->slot;
	raise(v->sig);
	for (;;)
		pause(); /* killed */
}

static struct victim *victim_new(int sig)
{
	struct victim *v = tc_shared_alloc(sizeof(*v));
	v->sig = sig;
	return v;
}

START_TEST(test_fifo_removed_by_close_reap_destroy)
{
	struct shmg_config cfg = {.mode = 0640};
	shmg_t *a = tc_open(tc_arena, &cfg), *b = tc_open(tc_arena, NULL);
	char path[320];
	struct stat st;

	/* One FIFO per endpoint, with the arena's mode, in shmg_fd's set. */
	TC_EQ(count_fifos(tc_arena), 2);
	fifo_path_of(b, path, sizeof(path));
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert(S_ISFIFO(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 0777, 0640);
	ck_assert_uint_eq(st.st_ino, b->fifo.ino);
	TC_EQ(shmg_close(b), 0);
	ck_assert(!exists(path));

	/* A consumer killed leaves it until its endpoint is reaped. */
	struct victim *v = victim_new(SIGKILL);
	TC_EQ(tc_wait_exit(tc_fork(victim_main, v), WAIT_MS), TC_KILLED(SIGKILL));
	ck_assert(exists(v->fifo));
	ck_assert_int_ge(shmg_reap(a), 1);
	ck_assert(!exists(v->fifo));
	TC_EQ(count_fifos(tc_arena), 1);

	/* And destroy removes what a dead consumer left unreaped. */
	TC_EQ(tc_wait_exit(tc_fork(victim_main, v), WAIT_MS), TC_KILLED(SIGKILL));
	TC_EQ(count_fifos(tc_arena), 2);
	TC_EQ(shmg_destroy(tc_arena), 0);
	TC_EQ(count_fifos(tc_arena), 0);
	shmg_close(a);
}
END_TEST

static const char *crash_point;

static void die_at(const char *point)
{
	if (strcmp(point, crash_point) == 0)
		raise(SIGKILL);
}

static int open_and_die(void *arg)
{
	shmg_t *h;
	crash_point = arg;
	sg_test_hook = die_at;
	return shmg_open(tc_arena, NULL, &h) == 0 ? 1 : 2; /* the point was never reached */
}

START_TEST(test_reap_removes_predecessors_fifo_left_recorded)
{
	struct shmg_config two = {.max_endpoints = 2};
	shmg_t *p = tc_open(tc_arena, &two);
	struct victim *v = victim_new(SIGKILL);
	char left[320];
	struct stat st;

	/* A dead consumer's FIFO that its reaper could not remove (as when it
	 * is another user's): made again at its name, and recorded. */
	TC_EQ(tc_wait_exit(tc_fork(victim_main, v), WAIT_MS), TC_KILLED(SIGKILL));
	struct mailbox_header *mb = mailbox_at(p, v->slot);
	uint64_t nonce = load_relaxed(&mb->fifo_nonce);
	uint32_t gen = load_relaxed(&mb->fifo_gen);
	ck_assert_int_ge(shmg_reap(p), 1);
	ck_assert(!exists(v->fifo));
	fifo_name(left, sizeof(left), tc_arena, v->slot, gen, nonce);
	ck_assert_str_eq(left, v->fifo);
	ck_assert_int_eq(mkfifo(left, 0600), 0);
	ck_assert_int_eq(lstat(left, &st), 0);
	store_relaxed(&mb->fifo_ino, (uint64_t)st.st_ino);
	store_relaxed(&mb->fifo_uid, (uint32_t)st.st_uid);
	store_relaxed(&mb->fifo_nonce, nonce);

	/* The slot's next owner dies before it has a FIFO of its own: its
	 * reap removes the one recorded, of the generation before. */
	TC_EQ(tc_wait_exit(tc_fork(open_and_die, "open:opening"), WAIT_MS), TC_KILLED(SIGKILL));
	ck_assert_uint_ne(load_relaxed(&endpoint_at(p, v->slot)->gen), gen);
	ck_assert_int_ge(shmg_reap(p), 1);
	ck_assert(!exists(left));
	TC_EQ(count_fifos(tc_arena), 1);
	TC_ASSERT_CLEAN(p);
	shmg_close(p);
}
END_TEST

/* ---- the slot of a consumer killed asleep ------------------------------------ */

static int sleeper_fd[2];

/* Monitors s/, says its slot, then sleeps in shmg_receive until killed. */
static int sleeper_main(void *arg)
{
	shmg_t *h;
	struct shmg_event ev[4];
	(void)arg;
	if (shmg_open(tc_arena, NULL, &h) != 0 || shmg_monitor(h, "s/", 2, NULL) != 0)
		return 1;
	uint32_t slot = shmg_self(h).slot;
	(void)!write(sleeper_fd[1], &slot, sizeof(slot));
	for (;;)
		shmg_receive(h, ev, 4, -1);
}

static bool asleep(void *arg)
{
	return load_relaxed(&((struct mailbox_header *)arg)->sleeping) != 0;
}

/* A consumer SIGKILLed while asleep in shmg_receive leaves its mailbox
 * marked asleep; the slot's next owner, which only ever waits on its
 * descriptor, must still be woken through it, as must a consumer whose
 * mark was scribbled on. */
START_TEST(test_next_owner_of_killed_sleeper_woken_on_fd)
{
	struct shmg_config two = {.max_endpoints = 2};
	shmg_t *p = tc_open(tc_arena, &two);
	uint32_t slot;
	ck_assert_int_eq(pipe(sleeper_fd), 0);
	pid_t pid = tc_fork(sleeper_main, NULL);
	TC_EQ(tc_read_full(sleeper_fd[0], &slot, sizeof(slot), WAIT_MS), 0);
	struct mailbox_header *mb = mailbox_at(p, slot);
	ck_assert_msg(tc_wait_until(asleep, mb, WAIT_MS), "the consumer never slept");
	kill(pid, SIGKILL);
	TC_EQ(tc_wait_exit(pid, WAIT_MS), TC_KILLED(SIGKILL));
	ck_assert_int_ge(shmg_reap(p), 1);

	shmg_t *q = tc_open(tc_arena, NULL);
	TC_EQ(shmg_self(q).slot, slot);
	TC_EQ(shmg_monitor(q, "s/", 2, NULL), 0);
	struct pollfd pf = {.fd = shmg_fd(q), .events = POLLIN};
	TC_EQ(poll(&pf, 1, 0), 0);
	for (int i = 0; i < 3; i++) {
		char key[8];
		snprintf(key, sizeof(key), "s/%d", i);
		TC_EQ(shmg_register(p, key, strlen(key), NULL, 0, NULL), 0);
		ck_assert_msg(poll(&pf, 1, WAIT_MS) == 1, "event %d: the descriptor never woke", i);
		ck_assert_int_eq(drain_events(q), SHMG_EV_REGISTERED);
		TC_EQ(poll(&pf, 1, 0), 0);
	}
	/* The same with `sleeping` scribbled on while it waits on the fd: a
	 * futex wake that finds no waiter falls back to the descriptor. */
	store_relaxed(&mb->sleeping, 1);
	TC_EQ(shmg_register(p, SHMG_KEY("s/scribbled"), NULL, 0, NULL), 0);
	ck_assert_msg(poll(&pf, 1, WAIT_MS) == 1, "the descriptor never woke");
	ck_assert_int_eq(drain_events(q), SHMG_EV_REGISTERED);
	close(sleeper_fd[0]);
	close(sleeper_fd[1]);
	shmg_close(q);
	shmg_close(p);
}
END_TEST

/* ---- a stopped consumer ---------------------------------------------------- */

START_TEST(test_stopped_consumer_costs_producers_nothing)
{
	shmg_t *p = tc_open(tc_arena, NULL);
	struct victim *v = victim_new(SIGSTOP);
	int st;

	pid_t c = tc_fork(victim_main, v);
	ck_assert_int_eq(waitpid(c, &st, WUNTRACED), c);
	ck_assert(WIFSTOPPED(st));
	/* Its FIFO full, as if it had been stopped for a long time. */
	int fd = open(v->fifo, O_WRONLY | O_NONBLOCK);
	ck_assert_int_ge(fd, 0);
	char buf[4096] = {0};
	while (write(fd, buf, sizeof(buf)) > 0)
		;
	ck_assert_int_eq(errno, EAGAIN);
	int full = 0;
	ck_assert_int_eq(ioctl(fd, FIONREAD, &full), 0);
	ck_assert_int_gt(full, 0);

	/* Every dispatch wakes it afresh (re-armed by hand): each finds the
	 * FIFO full and goes on.  Its mailbox fills: then they count drops. */
	struct mailbox_header *mb = mailbox_at(p, v->slot);
	for (int i = 0; i < 2000; i++) {
		__atomic_store_n(&mb->signalled, 0, __ATOMIC_SEQ_CST);
		ck_assert_int_ge(shmg_dispatch(p, SHMG_KEY("fw/msg"), "m", 1, NULL), 1);
	}
	int now = 0;
	ck_assert_int_eq(ioctl(fd, FIONREAD, &now), 0);
	ck_assert_int_eq(now, full);
	ck_assert_uint_gt(load_relaxed(&mb->dropped), 0);
	close(fd);

	/* Killed while stopped: its FIFO goes with the reap. */
	kill(c, SIGKILL);
	TC_EQ(tc_wait_exit(c, WAIT_MS), TC_KILLED(SIGKILL));
	ck_assert(exists(v->fifo));
	ck_assert_int_ge(shmg_reap(p), 1);
	ck_assert(!exists(v->fifo));
	TC_ASSERT_CLEAN(p);
	shmg_close(p);
}
END_TEST

/* ---- a scribbled record ------------------------------------------------------ */

/* Dispatches to c from p and checks c was woken without its FIFO, by the
 * datagram, and receives the message. */
static void woken_by_datagram(shmg_t *p, shmg_t *c)
{
	struct epoll_event e = {.events = EPOLLIN}, out;
	int ep = epoll_create1(0);
	ck_assert_int_eq(epoll_ctl(ep, EPOLL_CTL_ADD, shmg_fd(c), &e), 0);
	TC_EQ(shmg_dispatch(p, SHMG_KEY("fw/msg"), "m", 1, NULL), 1);
	ck_assert_int_eq(epoll_wait(ep, &out, 1, WAIT_MS), 1);
	TC_EQ(fifo_bytes(c), 0);
	ck_assert(dgram_waiting(c));
	TC_EQ(drain_events(c), SHMG_EV_MESSAGE);
	ck_assert_int_eq(epoll_wait(ep, &out, 1, 0), 0);
	close(ep);
}

/* Nonces of two names in an endpoint's FIFO namespace that are not its own. */
#define DECOY_FILE_NONCE 0x1111
#define DECOY_FIFO_NONCE 0x2222

/* Plants what a scribbled record might name, in the FIFO namespace of
 * (slot, gen): a regular file (DECOY_FILE_NONCE) and a FIFO
 * (DECOY_FIFO_NONCE).  Their paths go to file and fifo, the regular file's
 * stat to st; returns the regular file's descriptor. */
static int plant_decoys(uint32_t slot, uint32_t gen, char file[320], char fifo[320],
			struct stat *st)
{
	fifo_name(file, 320, tc_arena, slot, gen, DECOY_FILE_NONCE);
	fifo_name(fifo, 320, tc_arena, slot, gen, DECOY_FIFO_NONCE);
	int ffd = open(file, O_CREAT | O_EXCL | O_RDWR, 0600);
	ck_assert_int_ge(ffd, 0);
	ck_assert_int_eq(fstat(ffd, st), 0);
	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	return ffd;
}

START_TEST(test_scribbled_record_never_writes_elsewhere)
{
	shmg_t *p = tc_open(tc_arena, NULL), *c = tc_open(tc_arena, NULL);
	struct mailbox_header *mb = mailbox_at(p, c->slot);
	char file[320], other[320];
	struct stat st;

	TC_EQ(shmg_join(c, SHMG_KEY("fw/msg"), NULL, 0, NULL), 0);
	TC_EQ(drain_events(c), 0);
	/* A regular file and another FIFO in c's FIFO namespace. */
	int ffd = plant_decoys(c->slot, c->gen, file, other, &st);
	int ofd = open(other, O_RDWR | O_NONBLOCK);
	ck_assert_int_ge(ofd, 0);

	/* The record names the regular file, inode and owner right. */
	store_relaxed(&mb->fifo_ino, (uint64_t)st.st_ino);
	store_relaxed(&mb->fifo_nonce, DECOY_FILE_NONCE);
	woken_by_datagram(p, c);
	ck_assert_int_eq(fstat(ffd, &st), 0);
	TC_EQ(st.st_size, 0);
	/* The receive put the true record back. */
	ck_assert_uint_eq(load_relaxed(&mb->fifo_nonce), c->fifo.nonce);
	ck_assert_uint_eq(load_relaxed(&mb->fifo_ino), c->fifo.ino);

	/* Another FIFO of the recorded owner, not the recorded inode. */
	store_relaxed(&mb->fifo_nonce, DECOY_FIFO_NONCE);
	woken_by_datagram(p, c);
	int n = -1;
	ck_assert_int_eq(ioctl(ofd, FIONREAD, &n), 0);
	TC_EQ(n, 0);

	/* The consumer's own FIFO, another owner recorded. */
	store_relaxed(&mb->fifo_uid, 12345);
	woken_by_datagram(p, c);

	/* Intact again: the FIFO. */
	TC_EQ(shmg_dispatch(p, SHMG_KEY("fw/msg"), "m", 1, NULL), 1);
	ck_assert_int_gt(fifo_bytes(c), 0);
	TC_EQ(drain_events(c), SHMG_EV_MESSAGE);
	TC_EQ(fifo_bytes(c), 0);

	/* Its close goes by what it made, whatever the record says. */
	char own[320];
	fifo_path_of(c, own, sizeof(own));
	store_relaxed(&mb->fifo_nonce, DECOY_FIFO_NONCE);
	TC_EQ(shmg_close(c), 0);
	ck_assert(!exists(own));
	ck_assert(exists(file) && exists(other));
	close(ffd);
	close(ofd);
	unlink(file);
	unlink(other);
	TC_ASSERT_CLEAN(p);
	shmg_close(p);
}
END_TEST

START_TEST(test_reap_of_scribbled_record_removes_nothing_else)
{
	shmg_t *p = tc_open(tc_arena, NULL);
	struct victim *v = victim_new(SIGKILL);
	char file[320], other[320];
	struct stat st;

	TC_EQ(tc_wait_exit(tc_fork(victim_main, v), WAIT_MS), TC_KILLED(SIGKILL));
	struct mailbox_header *mb = mailbox_at(p, v->slot);
	uint32_t gen = load_relaxed(&endpoint_at(p, v->slot)->gen);
	/* Files at two other names of the dead consumer's slot and generation. */
	int ffd = plant_decoys(v->slot, gen, file, other, &st);

	/* Recorded: the regular file with its true inode and owner. */
	store_relaxed(&mb->fifo_nonce, DECOY_FILE_NONCE);
	store_relaxed(&mb->fifo_ino, (uint64_t)st.st_ino);
	ck_assert_int_ge(shmg_reap(p), 1);
	ck_assert(exists(file));
	ck_assert(exists(v->fifo)); /* the record no longer names it */
	unlink(v->fifo);

	/* Recorded: a FIFO of the right owner, the wrong inode. */
	TC_EQ(tc_wait_exit(tc_fork(victim_main, v), WAIT_MS), TC_KILLED(SIGKILL));
	gen = load_relaxed(&endpoint_at(p, v->slot)->gen);
	char other2[320];
	fifo_name(other2, sizeof(other2), tc_arena, v->slot, gen, DECOY_FIFO_NONCE);
	ck_assert_int_eq(mkfifo(other2, 0600), 0);
	mb = mailbox_at(p, v->slot);
	store_relaxed(&mb->fifo_nonce, DECOY_FIFO_NONCE);
	ck_assert_int_ge(shmg_reap(p), 1);
	ck_assert(exists(other2));
	ck_assert(exists(v->fifo));

	/* destroy removes the arena's FIFOs, and only FIFOs. */
	TC_EQ(shmg_destroy(tc_arena), 0);
	ck_assert(!exists(v->fifo) && !exists(other) && !exists(other2));
	ck_assert(exists(file));
	close(ffd);
	unlink(file);
	shmg_close(p);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fifo_wake");
	TCase *tc = tc_case(s, "woken", 60);
	tcase_add_test(tc, test_epoll_consumer_woken_through_fifo);
	tcase_add_test(tc, test_next_owner_of_killed_sleeper_woken_on_fd);
	tcase_add_test(tc, test_other_uid_consumer_woken_through_fifo);
	tcase_add_test(tc, test_producer_without_access_sends_datagram);
	tc = tc_case(s, "removal", 60);
	tcase_add_test(tc, test_fifo_removed_by_close_reap_destroy);
	tcase_add_test(tc, test_reap_removes_predecessors_fifo_left_recorded);
	tcase_add_test(tc, test_stopped_consumer_costs_producers_nothing);
	tc = tc_case(s, "scribbled", 60);
	tcase_add_test(tc, test_scribbled_record_never_writes_elsewhere);
	tcase_add_test(tc, test_reap_of_scribbled_record_removes_nothing_else);
	return tc_run(s);
}
