/* SPDX-License-Identifier: MIT */
/*
 * events: how fast shmgroup tells a process that something happened.
 *
 * (a) Delivery latency, write to receiver wake-up.  A producer process sends
 *     events at a fixed rate (open loop: event i is due at start + i/rate,
 *     whether or not the previous ones were delivered, so a slow consumer
 *     cannot hide its delay by slowing the producer down; wrk2's model).
 *     Each event carries two CLOCK_MONOTONIC stamps in its metadata: when it
 *     was due and when the write call began.  The consumer process sleeps in
 *     shmg_receive(timeout -1), or in epoll_wait on shmg_fd() then receives
 *     with timeout 0, and on waking takes one clock reading for the batch it
 *     got.  Two figures per run:
 *       write->wake   now - write stamp   (the DESIGN.md section 8 target)
 *       due->wake     now - due stamp     (includes producer lateness: the
 *                                          coordinated-omission-free figure)
 *     Kinds: "dispatch" (shmg_dispatch to the consumer's registered key: a
 *     message record), "register" and "join" (the consumer monitors the
 *     prefix; the producer registers a key, or joins it, in one period and
 *     unregisters it, or leaves, in the next: one write and one event per
 *     period, as for dispatch, so every kind runs at the rate asked for).
 *     Every event is timed, the removals too: an addition carries its stamps
 *     in its metadata, a removal (whose event carries the removed entry's
 *     metadata) has them in delivery_shared.removal, by key.  Timing only
 *     every other wake-up would sample one phase of a wake-up cost that
 *     alternates from one wake-up to the next (bench/analysis.md).
 *     Reference "pipe": the same stamps written to a pipe the consumer waits
 *     on in read(), or in epoll_wait then read() for the epoll rows: the
 *     floor for waking a sleeping process that waits the same way.
 *     Reference "raw": shmgroup's wake-ups without the library, a stamp
 *     in shared memory and a FUTEX_WAKE (receive row) or a datagram to an
 *     abstract socket the consumer watches with epoll (epoll row), armed
 *     the way a mailbox is: what the mechanism costs by itself.  shmg_fd is
 *     woken through a FIFO now, the datagram only when a producer cannot
 *     use it: the epoll row is that fallback, against which the FIFO's
 *     rows compare in the same run.
 *
 * (b) Death to event.  A worker process registers a key and waits; the
 *     driver, which monitors the prefix, takes t0 = CLOCK_MONOTONIC, SIGKILLs
 *     the worker and blocks until it receives the unregistered event (reason
 *     exit) for that key; the figure is receipt - t0.  Reaper: the agent
 *     (the shmgroupd binary, started by this program) or "inproc" (the driver
 *     hosts the reaper itself with shmg_reaper_enable and one epoll set over
 *     the reaper fd and its mailbox fd).  The worker is waited for only
 *     after the event, so reaping the zombie is not in the figure.
 *
 * Percentiles come from bench/hist (HDR-style, < 0.8 % bucket error).
 */
#include "common.h"
#include "hist.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <shmgroup.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <linux/futex.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SHMGROUPD_PATH
#define SHMGROUPD_PATH ""
#endif

static struct {
	double rate;
	double seconds;
	uint64_t rounds;
	uint64_t deaths;
	const char *agent;
	const char *json;
	int pin;
	int quick;
} opt = {
	.rate = 10000,
	.seconds = 3,
	.rounds = 3,
	.deaths = 200,
	.agent = SHMGROUPD_PATH,
};

static char g_group[64];
static pid_t g_agent_pid;

struct row {
	char test[16];    /* delivery | death */
	char kind[16];    /* dispatch | register | agent | inproc */
	char wait[16];    /* receive | epoll | - */
	struct hist h;    /* write->wake, or kill->event */
	struct hist due;  /* due->wake (delivery only) */
	uint64_t sent, received, overflows, late;
	double achieved_rate;
	double rated_events, rated_ns; /* delivery: over every turn, for achieved_rate */
	char error[160];
};

#define MAX_ROWS 14
static struct row g_rows[MAX_ROWS];
static int g_nrows;

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: events [options]\n"
		"  --rate R         delivery: events per second, open loop [10000]\n"
		"  --seconds S      delivery: per run [3]\n"
		"  --rounds N       delivery: the runs take turns N times, S/N seconds each,\n"
		"                   so that drift of the machine hits them alike [3]\n"
		"  --deaths N       death: workers killed per reaper kind [200]\n"
		"  --agent PATH     shmgroupd binary for the agent runs [%s]\n"
		"                   ('' skips them; the in-process reaper runs always)\n"
		"  --pin            consumer on CPU 0, producer on CPU 1\n"
		"  --json FILE, --quick (0.5 s runs, 1 round, 50 deaths)\n",
		SHMGROUPD_PATH[0] ? SHMGROUPD_PATH : "none built");
}

static void parse_args(int argc, char **argv)
{
	enum { O_RATE = 256, O_SECS, O_ROUNDS, O_DEATHS, O_AGENT, O_PIN, O_JSON, O_QUICK };
	static const struct option lo[] = {
		{ "rate", 1, 0, O_RATE }, { "seconds", 1, 0, O_SECS }, { "rounds", 1, 0, O_ROUNDS },
		{ "deaths", 1, 0, O_DEATHS },
		{ "agent", 1, 0, O_AGENT }, { "pin", 0, 0, O_PIN }, { "json", 1, 0, O_JSON },
		{ "quick", 0, 0, O_QUICK }, { "help", 0, 0, 'h' }, { 0, 0, 0, 0 },
	};
	int c, secs_set = 0, rounds_set = 0, deaths_set = 0;

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case O_RATE: opt.rate = bench_opt_real("events", "rate", optarg, 0.001, 1e7); break;
		case O_SECS:
			opt.seconds = bench_opt_real("events", "seconds", optarg, 0.001, 1e6);
			secs_set = 1;
			break;
		case O_ROUNDS:
			opt.rounds = bench_opt_count("events", "rounds", optarg, 1, 1000);
			rounds_set = 1;
			break;
		case O_DEATHS:
			opt.deaths = bench_opt_count("events", "deaths", optarg, 1, 1000000);
			deaths_set = 1;
			break;
		case O_AGENT: opt.agent = optarg; break;
		case O_PIN: opt.pin = 1; break;
		case O_JSON: opt.json = optarg; break;
		case O_QUICK: opt.quick = 1; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "events: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		exit(2);
	}
	if (opt.quick) {
		if (!secs_set)
			opt.seconds = 0.5;
		if (!rounds_set)
			opt.rounds = 1;
		if (!deaths_set)
			opt.deaths = 50;
	}
}

static void stop_agent(void)
{
	if (g_agent_pid > 0) {
		kill(g_agent_pid, SIGTERM);
		waitpid(g_agent_pid, NULL, 0);
		g_agent_pid = 0;
	}
}

static void cleanup(void)
{
	stop_agent();
	if (g_group[0])
		shmg_destroy(g_group);
}

static void on_signal(int sig)
{
	(void)sig;
	if (g_agent_pid > 0)
		kill(g_agent_pid, SIGKILL);
	if (g_group[0])
		shmg_destroy(g_group);
	_exit(130);
}

/* Reads one byte within timeout_ms; 1, 0 on EOF, -1 on timeout or error. */
static int read_byte(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char b;

	if (poll(&p, 1, timeout_ms) <= 0)
		return -1;
	return (int)read(fd, &b, 1);
}

/* ------------------------------------------------------------------------ */
/* (a) delivery                                                             */
/* ------------------------------------------------------------------------ */

struct stamp {
	uint64_t due_ns;
	uint64_t write_ns;
};

#define END_MARK UINT64_MAX

#define RAW_RING 4096
/* register/join cycle through keys "ev/0".."ev/1023". */
#define KEY_SLOTS 1024

struct delivery_shared {
	struct hist h, due;
	uint64_t received, overflows, sent, late;
	uint64_t first_ns, last_ns;
	char error[160];
	/* The raw reference: stamp i in raw_ring[i % RAW_RING], published by
	 * raw_seq = i + 1; raw_armed is 0 while the consumer may sleep. */
	struct stamp raw_ring[RAW_RING];
	_Atomic uint32_t raw_seq, raw_armed;
	/* register/join: the stamps of the removal of key "ev/<i>", written
	 * by the producer before the removal, read by the consumer once its
	 * event arrived (the mailbox lock orders the two). */
	struct stamp removal[KEY_SLOTS];
};

enum kind { K_DISPATCH, K_REGISTER, K_JOIN, K_PIPE, K_RAW };
static const char *const kind_names[] = { "dispatch", "register", "join", "pipe", "raw" };
/* The events each kind times: its addition (stamps in the metadata) and,
 * for register and join, its removal (stamps in delivery_shared.removal). */
static const enum shmg_event_type kind_event[] = { SHMG_EV_MESSAGE, SHMG_EV_REGISTERED,
						   SHMG_EV_JOINED };
static const enum shmg_event_type kind_removal[] = { SHMG_EV_MESSAGE, SHMG_EV_UNREGISTERED,
						     SHMG_EV_LEFT };
static int g_pipe[2];

/* The slot of key "ev/<i>" in delivery_shared.removal, or -1. */
static int key_slot(const char *key, size_t len)
{
	unsigned v = 0;
	size_t i = 3;

	if (len < 4 || len > 7 || memcmp(key, "ev/", 3) != 0)
		return -1;
	for (; i < len && key[i] >= '0' && key[i] <= '9'; i++)
		v = v * 10 + (unsigned)(key[i] - '0');
	return i == len && v < KEY_SLOTS ? (int)v : -1;
}

static void record(struct delivery_shared *sh, const struct stamp *s, uint64_t now)
{
	if (!sh->first_ns)
		sh->first_ns = now;
	sh->last_ns = now;
	hist_record_ns(&sh->h, now > s->write_ns ? now - s->write_ns : 0);
	hist_record_ns(&sh->due, now > s->due_ns ? now - s->due_ns : 0);
	sh->received++;
}

/* An epoll set watching fd for input, or -1. */
static int epoll_on(int fd)
{
	struct epoll_event e = { .events = EPOLLIN };
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0) {
		close(ep);
		return -1;
	}
	return ep;
}

static int pipe_consumer(struct delivery_shared *sh, int use_epoll, int ready_fd)
{
	struct stamp s[64];
	int ep = -1;

	if (opt.pin)
		bench_pin(0);
	if (use_epoll && (ep = epoll_on(g_pipe[0])) < 0) {
		snprintf(sh->error, sizeof(sh->error), "pipe consumer: epoll: %s", strerror(errno));
		return 1;
	}
	(void)!write(ready_fd, "r", 1);
	for (;;) {
		struct epoll_event e;

		if (use_epoll && epoll_wait(ep, &e, 1, -1) < 0 && errno != EINTR) {
			snprintf(sh->error, sizeof(sh->error), "pipe consumer: epoll_wait: %s",
				 strerror(errno));
			return 1;
		}
		ssize_t n = read(g_pipe[0], s, sizeof(s));
		uint64_t now = mono_ns();

		if (n <= 0 || n % (ssize_t)sizeof(s[0])) {
			snprintf(sh->error, sizeof(sh->error), "pipe consumer: short read");
			return 1;
		}
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(s[0]); i++) {
			if (s[i].due_ns == END_MARK)
				return 0;
			record(sh, &s[i], now);
		}
	}
}

/* The raw reference's datagram socket: an abstract name of this run. */
static socklen_t raw_addr(struct sockaddr_un *a)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	int n = snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "%s.raw", g_group);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

static void raw_wake(struct delivery_shared *sh, int use_epoll, int sock)
{
	if (atomic_exchange(&sh->raw_armed, 1) != 0)
		return; /* the consumer has not re-armed: it is awake */
	if (use_epoll) {
		struct sockaddr_un a;
		char b = 1;
		socklen_t len = raw_addr(&a);

		(void)sendto(sock, &b, 1, MSG_DONTWAIT, (struct sockaddr *)&a, len);
	} else {
		syscall(SYS_futex, &sh->raw_armed, FUTEX_WAKE, 1, NULL, NULL, 0);
	}
}

static int raw_consumer(struct delivery_shared *sh, int use_epoll, int ready_fd)
{
	struct sockaddr_un a;
	socklen_t len = raw_addr(&a);
	int sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), ep = -1;
	uint32_t seen = 0;
	char b[64];

	if (opt.pin)
		bench_pin(0);
	if (sock < 0 || bind(sock, (struct sockaddr *)&a, len) < 0 ||
	    (use_epoll && (ep = epoll_on(sock)) < 0)) {
		snprintf(sh->error, sizeof(sh->error), "raw consumer: %s", strerror(errno));
		return 1;
	}
	(void)!write(ready_fd, "r", 1);
	for (;;) {
		uint32_t seq = atomic_load(&sh->raw_seq);

		if (seq == seen) {
			/* Empty: re-arm, look once more, then sleep (as shmg_receive). */
			while (use_epoll && recv(sock, b, sizeof(b), MSG_DONTWAIT) > 0)
				;
			atomic_store(&sh->raw_armed, 0);
			if (atomic_load(&sh->raw_seq) != seen)
				continue;
			if (use_epoll) {
				struct epoll_event e;

				epoll_wait(ep, &e, 1, -1);
			} else {
				syscall(SYS_futex, &sh->raw_armed, FUTEX_WAIT, 0, NULL, NULL, 0);
			}
			continue;
		}
		uint64_t now = mono_ns();

		if (seq - seen > RAW_RING) { /* overwritten while this one lagged */
			sh->overflows += seq - seen - RAW_RING;
			seen = seq - RAW_RING;
		}
		for (; seen != seq; seen++) {
			const struct stamp *s = &sh->raw_ring[seen % RAW_RING];

			if (s->due_ns == END_MARK)
				return 0;
			record(sh, s, now);
		}
	}
}

static int consumer_main(struct delivery_shared *sh, enum kind kind, int use_epoll, int ready_fd)
{
	struct shmg_event ev[64];
	shmg_t *h;
	int rc, ep = -1, fd;

	if (opt.pin)
		bench_pin(0);
	if ((rc = shmg_open(g_group, NULL, &h)) < 0)
		goto fail;
	if (kind == K_DISPATCH)
		rc = shmg_register(h, SHMG_KEY("consumer"), NULL, 0, NULL);
	else
		rc = shmg_monitor(h, SHMG_KEY("ev/"), NULL);
	if (rc < 0)
		goto fail;
	if (use_epoll) {
		fd = shmg_fd(h);
		if (fd < 0 || (ep = epoll_on(fd)) < 0) {
			rc = fd < 0 ? fd : -errno;
			goto fail;
		}
	}
	(void)!write(ready_fd, "r", 1);
	for (;;) {
		if (use_epoll) {
			struct epoll_event e;

			if (epoll_wait(ep, &e, 1, -1) < 0 && errno != EINTR) {
				rc = -errno;
				goto fail;
			}
			rc = shmg_receive(h, ev, 64, 0);
		} else {
			rc = shmg_receive(h, ev, 64, -1);
		}
		uint64_t now = mono_ns(); /* wake-up, once per batch */
		if (rc < 0) {
			if (rc == -EINTR)
				continue;
			goto fail;
		}
		for (int i = 0; i < rc; i++) {
			struct stamp s;

			if (ev[i].type == SHMG_EV_OVERFLOW) {
				sh->overflows += ev[i].dropped;
				continue;
			}
			if (kind != K_DISPATCH && ev[i].type == kind_removal[kind]) {
				int slot = key_slot(ev[i].key, ev[i].key_len);

				if (slot >= 0)
					record(sh, &sh->removal[slot], now);
				continue;
			}
			if (ev[i].type != kind_event[kind] || ev[i].meta_len != sizeof(s))
				continue;
			memcpy(&s, ev[i].meta, sizeof(s));
			if (s.due_ns == END_MARK) {
				shmg_close(h);
				return 0;
			}
			record(sh, &s, now);
		}
	}
fail:
	snprintf(sh->error, sizeof(sh->error), "consumer: %s", shmg_strerror(rc));
	return 1;
}

/* Sleeps until the monotonic time t: a timed sleep up to 60 us before it,
 * then a spin, so that each event leaves within about a microsecond of its
 * due time without the producer holding a CPU between events. */
static void wait_until(uint64_t t)
{
	uint64_t now = mono_ns();

	if (t > now + 60000) {
		uint64_t w = t - 60000;
		struct timespec ts = { (time_t)(w / 1000000000u), (long)(w % 1000000000u) };

		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
	}
	while (mono_ns() < t)
		;
}

/* One write of the producer: event i of a kind, stamped with s.  Returns
 * 1 (one timed event) or -errno. */
static long produce(struct delivery_shared *sh, shmg_t *h, enum kind kind, int use_epoll,
		    uint64_t i, const struct stamp *s)
{
	char key[32];
	long rc;

	switch (kind) {
	case K_PIPE:
		return write(g_pipe[1], s, sizeof(*s)) == (ssize_t)sizeof(*s) ? 1 : -EPIPE;
	case K_RAW:
		sh->raw_ring[i % RAW_RING] = *s;
		atomic_store(&sh->raw_seq, (uint32_t)i + 1);
		raw_wake(sh, use_epoll, g_pipe[1]);
		return 1;
	case K_DISPATCH:
		rc = shmg_dispatch(h, SHMG_KEY("consumer"), s, sizeof(*s), NULL);
		return rc == 0 ? -ENOENT : rc < 0 ? rc : 1;
	case K_REGISTER:
	case K_JOIN:
		break;
	}
	/* The addition of period 2j is removed in period 2j + 1. */
	unsigned slot = (unsigned)((i / 2) % KEY_SLOTS);
	snprintf(key, sizeof(key), "ev/%u", slot);
	if (s->due_ns == END_MARK) {
		snprintf(key, sizeof(key), "ev/end");
	} else if (i % 2) {
		sh->removal[slot] = *s;
		rc = kind == K_REGISTER ? shmg_unregister(h, SHMG_KEY(key), NULL)
					: shmg_leave(h, SHMG_KEY(key), NULL);
		return rc < 0 ? rc : 1;
	}
	rc = kind == K_REGISTER ? shmg_register(h, SHMG_KEY(key), s, sizeof(*s), NULL)
				: shmg_join(h, SHMG_KEY(key), s, sizeof(*s), NULL);
	return rc < 0 ? rc : 1;
}

static int producer_main(struct delivery_shared *sh, enum kind kind, int use_epoll)
{
	shmg_t *h = NULL;
	struct stamp s;
	uint64_t n = (uint64_t)(opt.rate * opt.seconds / (double)opt.rounds),
		 period = (uint64_t)(1e9 / opt.rate);
	long rc;

	if (opt.pin)
		bench_pin(1);
	if (kind < K_PIPE && (rc = shmg_open(g_group, NULL, &h)) < 0)
		goto fail;
	/* The raw reference sends its datagrams from a socket of its own. */
	if (kind == K_RAW && (g_pipe[1] = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0) {
		rc = -errno;
		goto fail;
	}
	uint64_t start = mono_ns() + 10000000; /* 10 ms from now */
	for (uint64_t i = 0; i < n; i++) {
		s.due_ns = start + i * period;
		wait_until(s.due_ns);
		s.write_ns = mono_ns();
		if (s.write_ns > s.due_ns + period)
			sh->late++;
		if ((rc = produce(sh, h, kind, use_epoll, i, &s)) < 0)
			goto fail;
		sh->sent += (uint64_t)rc;
	}
	s.due_ns = s.write_ns = END_MARK;
	if ((rc = produce(sh, h, kind, use_epoll, n, &s)) < 0)
		goto fail;
	if (h)
		shmg_close(h);
	return 0;
fail:
	snprintf(sh->error, sizeof(sh->error), "producer: %s", shmg_strerror((int)rc));
	return 1;
}

static int run_delivery(struct row *row, enum kind kind, int use_epoll)
{
	struct delivery_shared *sh = bench_shared_alloc(sizeof(*sh));
	int p[2], pids[2];

	snprintf(row->test, sizeof(row->test), "delivery");
	snprintf(row->kind, sizeof(row->kind), "%s", kind_names[kind]);
	snprintf(row->wait, sizeof(row->wait), "%s",
		 use_epoll ? "epoll" : kind == K_PIPE ? "read" : "receive");
	if (kind == K_PIPE && pipe(g_pipe) < 0)
		return -1;
	hist_init(&sh->h);
	hist_init(&sh->due);
	if (pipe(p) < 0)
		return -1;
	fflush(stdout);
	pids[0] = fork();
	if (pids[0] == 0) {
		close(p[0]);
		if (kind == K_PIPE) {
			close(g_pipe[1]);
			_exit(pipe_consumer(sh, use_epoll, p[1]));
		}
		if (kind == K_RAW)
			_exit(raw_consumer(sh, use_epoll, p[1]));
		_exit(consumer_main(sh, kind, use_epoll, p[1]));
	}
	close(p[1]);
	if (read_byte(p[0], 10000) != 1) {
		close(p[0]);
		kill(pids[0], SIGKILL);
		waitpid(pids[0], NULL, 0);
		snprintf(row->error, sizeof(row->error), "%s",
			 sh->error[0] ? sh->error : "consumer did not start");
		return -1;
	}
	close(p[0]);
	pids[1] = fork();
	if (pids[1] == 0)
		_exit(producer_main(sh, kind, use_epoll));
	if (kind == K_PIPE) {
		close(g_pipe[0]);
		close(g_pipe[1]);
	}
	int bad = bench_wait_all(pids, 2);
	/* One turn of the row: added to the turns before it. */
	hist_merge(&row->h, &sh->h);
	hist_merge(&row->due, &sh->due);
	row->sent += sh->sent;
	row->received += sh->received;
	row->overflows += sh->overflows;
	row->late += sh->late;
	if (sh->last_ns > sh->first_ns && sh->received > 1) {
		row->rated_events += (double)(sh->received - 1);
		row->rated_ns += (double)(sh->last_ns - sh->first_ns);
		row->achieved_rate = row->rated_events * 1e9 / row->rated_ns;
	}
	if (row->error[0])
		; /* the first turn's error stands */
	else if (sh->error[0])
		snprintf(row->error, sizeof(row->error), "%s", sh->error);
	else if (bad)
		snprintf(row->error, sizeof(row->error), "a process failed");
	bench_shared_free(sh, sizeof(*sh));
	return bad ? -1 : 0;
}

/* ------------------------------------------------------------------------ */
/* (b) death to event                                                       */
/* ------------------------------------------------------------------------ */

static int start_agent(void)
{
	int p[2];
	char fdbuf[16];

	if (pipe(p) < 0)
		return -errno;
	snprintf(fdbuf, sizeof(fdbuf), "%d", p[1]);
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		close(p[0]);
		if (null >= 0)
			dup2(null, STDERR_FILENO); /* its info lines would swamp the report */
		execl(opt.agent, "shmgroupd", "--group", g_group, "--ready-fd", fdbuf,
		      (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	g_agent_pid = pid;
	int rc = read_byte(p[0], 10000);
	close(p[0]);
	return rc == 1 ? 0 : -ENOEXEC;
}

static pid_t start_worker(uint64_t i)
{
	int p[2];

	if (pipe(p) < 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		shmg_t *h;
		char key[32];

		close(p[0]);
		if (shmg_open(g_group, NULL, &h) < 0)
			_exit(1);
		snprintf(key, sizeof(key), "d/%llu", (unsigned long long)i);
		if (shmg_register(h, SHMG_KEY(key), NULL, 0, NULL) < 0)
			_exit(2);
		(void)!write(p[1], "r", 1);
		for (;;)
			pause();
	}
	close(p[1]);
	int rc = read_byte(p[0], 10000);
	close(p[0]);
	if (rc != 1) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return -1;
	}
	return pid;
}

/* Waits for the unregistered/exit event of d/<i>; with the in-process
 * reaper, drives it from the same epoll set.  Returns receipt time or 0. */
static uint64_t await_death(shmg_t *h, int ep, int inproc, uint64_t i, uint64_t deadline,
			    uint64_t *overflows)
{
	struct shmg_event ev[16];
	char key[32];
	int timeout = 1000;

	snprintf(key, sizeof(key), "d/%llu", (unsigned long long)i);
	for (;;) {
		int n = shmg_receive(h, ev, 16, 0);

		if (n > 0) {
			uint64_t now = mono_ns();

			for (int k = 0; k < n; k++) {
				if (ev[k].type == SHMG_EV_OVERFLOW)
					(*overflows)++;
				if (ev[k].type == SHMG_EV_UNREGISTERED &&
				    ev[k].reason == SHMG_REASON_EXIT &&
				    ev[k].key_len == strlen(key) &&
				    memcmp(ev[k].key, key, ev[k].key_len) == 0)
					return now;
			}
			continue;
		}
		if (n < 0 && n != -EINTR)
			return 0;
		if (mono_ns() > deadline)
			return 0;
		struct epoll_event e[4];

		epoll_wait(ep, e, 4, timeout);
		if (inproc) {
			timeout = shmg_reaper_dispatch(h);
			if (timeout < 0)
				return 0;
		}
	}
}

static int run_deaths(struct row *row, int inproc)
{
	shmg_t *h = NULL;
	int ep = -1, rc;
	struct epoll_event e = { .events = EPOLLIN };

	snprintf(row->test, sizeof(row->test), "death");
	snprintf(row->kind, sizeof(row->kind), "%s", inproc ? "inproc" : "agent");
	snprintf(row->wait, sizeof(row->wait), "-");
	hist_init(&row->h);
	hist_init(&row->due);
	if (!inproc && (rc = start_agent()) < 0) {
		snprintf(row->error, sizeof(row->error), "cannot start %s", opt.agent);
		stop_agent();
		return -1;
	}
	if ((rc = shmg_open(g_group, NULL, &h)) < 0 || (rc = shmg_monitor(h, SHMG_KEY("d/"), NULL)) < 0)
		goto fail;
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (epoll_ctl(ep, EPOLL_CTL_ADD, shmg_fd(h), &e) < 0) {
		rc = -errno;
		goto fail;
	}
	if (inproc) {
		if ((rc = shmg_reaper_enable(h)) != 1) {
			snprintf(row->error, sizeof(row->error),
				 "in-process reaper not elected (%d)", rc);
			goto out;
		}
		e.data.u32 = 1;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, shmg_reaper_fd(h), &e) < 0) {
			rc = -errno;
			goto fail;
		}
		shmg_reaper_dispatch(h);
	}
	for (uint64_t i = 0; i < opt.deaths; i++) {
		pid_t w = start_worker(i);

		if (w < 0) {
			snprintf(row->error, sizeof(row->error), "worker %llu did not start",
				 (unsigned long long)i);
			goto out;
		}
		if (inproc)
			shmg_reaper_dispatch(h); /* picks the new endpoint up */
		/* The worker's registered event is skipped by await_death. */
		uint64_t t0 = mono_ns();
		kill(w, SIGKILL);
		uint64_t t1 = await_death(h, ep, inproc, i, t0 + 5000000000ull, &row->overflows);
		waitpid(w, NULL, 0);
		row->sent++;
		if (!t1) {
			snprintf(row->error, sizeof(row->error),
				 "no exit event for worker %llu within 5 s", (unsigned long long)i);
			goto out;
		}
		hist_record_ns(&row->h, t1 - t0);
		row->received++;
	}
	shmg_close(h);
	close(ep);
	stop_agent();
	return 0;
fail:
	snprintf(row->error, sizeof(row->error), "%s", shmg_strerror(rc));
out:
	if (h)
		shmg_close(h);
	if (ep >= 0)
		close(ep);
	stop_agent();
	return -1;
}

/* ------------------------------------------------------------------------ */
/* Report                                                                   */
/* ------------------------------------------------------------------------ */

static void print_row(const struct row *r)
{
	const char *what = strcmp(r->test, "death") == 0 ? "kill->event" : "write->wake";

	printf("%-8s %-8s %-7s %-11s %8llu", r->test, r->kind, r->wait, what,
	       (unsigned long long)r->h.count);
	print_hist_us(&r->h);
	if (!r->due.count)
		return;
	printf("%-8s %-8s %-7s %-11s %8llu", "", "", "", "due->wake",
	       (unsigned long long)r->due.count);
	print_hist_us(&r->due);
}

static void write_json(const struct machine *m)
{
	FILE *f = fopen(opt.json, "w");

	if (!f) {
		fprintf(stderr, "events: %s: %s\n", opt.json, strerror(errno));
		return;
	}
	fprintf(f, "{\"program\": \"events\", \"machine\": ");
	machine_json(f, m);
	fprintf(f,
		",\n \"params\": {\"rate\": %.0f, \"seconds\": %.3f, \"rounds\": %llu, "
		"\"deaths\": %llu, \"pin\": %s, \"agent\": ",
		opt.rate, opt.seconds, (unsigned long long)opt.rounds, (unsigned long long)opt.deaths,
		opt.pin ? "true" : "false");
	json_str(f, opt.agent);
	fprintf(f, "},\n \"results\": [");
	for (int i = 0; i < g_nrows; i++) {
		const struct row *r = &g_rows[i];

		fprintf(f, "%s\n  {\"test\": \"%s\", \"kind\": \"%s\", \"wait\": \"%s\", ",
			i ? "," : "", r->test, r->kind, r->wait);
		if (r->error[0]) {
			fprintf(f, "\"error\": ");
			json_str(f, r->error);
			fprintf(f, ", ");
		}
		fprintf(f, "\"count\": %llu, ", (unsigned long long)r->h.count);
		json_hist(f, "", &r->h);
		if (r->due.count) {
			fprintf(f, ", ");
			json_hist(f, "due_", &r->due);
			fprintf(f, ", \"achieved_rate\": %.0f, \"late\": %llu", r->achieved_rate,
				(unsigned long long)r->late);
		}
		fprintf(f, ", \"sent\": %llu, \"received\": %llu, \"overflows\": %llu}",
			(unsigned long long)r->sent, (unsigned long long)r->received,
			(unsigned long long)r->overflows);
	}
	fprintf(f, "\n]}\n");
	fclose(f);
}

int main(int argc, char **argv)
{
	struct machine m;
	int failed = 0;

	parse_args(argc, argv);
	machine_get(&m);
	snprintf(g_group, sizeof(g_group), "bench-events-%d", (int)getpid());
	atexit(cleanup);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	struct shmg_config cfg = { .flags = SHMG_OPEN_EXCL, .arena_size = 64ull << 20,
				   .max_endpoints = 64, .mailbox_bytes = 256u << 10 };
	shmg_t *owner;
	int rc = shmg_open(g_group, &cfg, &owner);
	if (rc < 0) {
		fprintf(stderr, "events: shmg_open: %s\n", shmg_strerror(rc));
		return 1;
	}
	machine_print(stdout, &m);
	printf("method:  (a) open loop at %.0f events/s for %.2f s per run in %llu turns taken in "
	       "rotation, one write per period (register/join: add, then remove; both timed);\n"
	       "         pipe: the floor of each way of waiting; raw: shmgroup's futex or datagram "
	       "wake-up alone;\n"
	       "         consumer stamps CLOCK_MONOTONIC once per wake-up;\n"
	       "         write->wake from the write call, due->wake from the scheduled time "
	       "(coordinated-omission free)\n"
	       "         (b) %llu workers SIGKILLed one at a time; kill->event until the "
	       "monitor holds the unregistered/exit event\n",
	       opt.rate, opt.seconds, (unsigned long long)opt.rounds, (unsigned long long)opt.deaths);
	fflush(stdout);

	/* Every kind and way of waiting takes its turn in each round, so that
	 * the pipe a ratio is taken against saw the same minutes of the
	 * machine as the kinds compared with it. */
	int first = g_nrows;
	for (int kind = K_DISPATCH; kind <= K_RAW; kind++)
		for (int use_epoll = 0; use_epoll <= 1; use_epoll++) {
			hist_init(&g_rows[g_nrows].h);
			hist_init(&g_rows[g_nrows].due);
			g_nrows++;
		}
	for (uint64_t round = 0; round < opt.rounds; round++) {
		int i = first;
		for (int kind = K_DISPATCH; kind <= K_RAW; kind++)
			for (int use_epoll = 0; use_epoll <= 1; use_epoll++)
				if (run_delivery(&g_rows[i++], (enum kind)kind, use_epoll) < 0)
					failed = 1;
	}
	/* The owner handle is not the reaper: the in-process run elects its own. */
	if (run_deaths(&g_rows[g_nrows++], 1) < 0)
		failed = 1;
	if (opt.agent && opt.agent[0]) {
		if (run_deaths(&g_rows[g_nrows++], 0) < 0)
			failed = 1;
	}
	shmg_close(owner);

	printf("\n%-8s %-8s %-7s %-11s %8s %9s %9s %9s %9s %9s\n", "test", "kind", "wait",
	       "latency", "count", "p50 us", "p90 us", "p99 us", "p99.9 us", "max us");
	for (int i = 0; i < g_nrows; i++)
		print_row(&g_rows[i]);
	for (int i = 0; i < g_nrows; i++) {
		const struct row *r = &g_rows[i];

		if (strcmp(r->test, "death") == 0 && !r->error[0])
			continue;
		if (r->error[0])
			printf("ERROR: %s %s %s: %s\n", r->test, r->kind, r->wait, r->error);
		else if (r->received != r->sent || r->overflows)
			printf("note: %s %s %s: sent %llu, timed %llu, overflowed %llu, producer late "
			       "%llu times; achieved %.0f/s\n",
			       r->test, r->kind, r->wait, (unsigned long long)r->sent,
			       (unsigned long long)r->received, (unsigned long long)r->overflows,
			       (unsigned long long)r->late, r->achieved_rate);
	}
	if (opt.json)
		write_json(&m);
	return failed;
}
