/* SPDX-License-Identifier: MIT */
/*
 * replication: how fast a change on one host reaches another through
 * shmgroupd.
 *
 * Two "hosts" on this machine: arenas A (node 1) and B (node 2), each with
 * its own shmgroupd (the binary built with the project, or --agent PATH),
 * the agents talking UDP on 127.0.0.1 under a fresh cluster key.  This
 * program holds a handle on each arena.
 *
 *   pingpong     the floor: a UDP datagram to a child process on loopback
 *                and back, the child blocked in recv.  One round trip
 *                wakes two sleeping processes, as a propagation wakes at
 *                least A's agent and B's agent.
 *   chain        the floor of a propagation's wakeups: a byte on a Unix
 *                datagram socket wakes process A (in epoll), which sends a
 *                datagram on UDP to process B (in epoll), which wakes the
 *                writer through a futex and replies; no shmgroup code.
 *   propagation  t0 before shmg_register of a fresh key on A; t1 once a
 *                shmg_lookup of that key on B hits.  wait "event": blocked
 *                in shmg_receive on B (monitoring the keys' prefix), then
 *                the lookup; wait "spin": lookups in a loop, with a
 *                sched_yield between them (--spin).  One change at
 *                a time, 6-12 ms apart (random), so each finds the link idle
 *                (nothing sent for a flush interval).  "load": meanwhile a child process churns
 *                register/unregister pairs of other keys on A at --load
 *                pairs/s (open loop, in 1 ms steps), which the agents
 *                replicate too.
 *   throughput   N registers on A as fast as one process writes them, then
 *                N unregisters; the clock stops when B holds all N, then
 *                none.  ops/s = 2N / time, for --rounds rounds.  Bytes,
 *                datagrams and retransmissions per op are A's agent's
 *                counters (its stats file) over the rounds: tx_bytes is
 *                the UDP payload, headers and MAC included.
 *   ... and the propagation (idle, event) and throughput runs again with
 *   the agents' fault layer dropping --loss % of the datagrams each sends.
 *
 * Percentiles from bench/hist; times from CLOCK_MONOTONIC, which is one
 * clock for every process of the machine.
 */
#include "common.h"
#include "hist.h"
#include "stats_file.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <shmgroup.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <linux/futex.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SHMGROUPD_PATH
#define SHMGROUPD_PATH ""
#endif

#define HOSTS 2
#define WAIT_MS 30000
/* Changes 6-12 ms apart: more than the agents' flush interval (5 ms), so
 * each one finds the link idle and leaves (and is applied) at once. */
#define IDLE_GAP_NS 6000000ull

static struct {
	double seconds;
	uint64_t ops;
	uint64_t rounds;
	double load;
	unsigned loss;
	const char *agent;
	const char *agent_args[8]; /* passed to both agents */
	int n_agent_args;
	const char *json;
	int quick;
	int spin; /* enum spin_mode */
} opt = {
	.seconds = 3,
	.ops = 100000,
	.rounds = 3,
	.load = 20000,
	.loss = 5,
	.agent = SHMGROUPD_PATH,
};

/* How the "spin" reader waits between lookups (see wait_hit). */
enum spin_mode { SPIN_YIELD, SPIN_PAUSE, SPIN_BUSY };
static const char *const spin_names[] = { "yield", "pause", "busy" };

struct host {
	char arena[64];
	char stats[96];
	int port;
	pid_t agent;
	shmg_t *h;
};

static struct host g_host[HOSTS];
static char g_key_path[96];
static char g_wire_group[64];

struct row {
	char test[16];    /* pingpong | propagation | throughput */
	char cond[16];    /* idle | load | loss5 ... */
	char wait[8];     /* event | spin | - */
	struct hist h;    /* latency (pingpong: round trip) */
	double ops_per_s; /* throughput */
	double bytes_per_op, datagrams_per_op, retransmits_per_op;
	double load_pairs_s;
	char error[160];
};

#define MAX_ROWS 10
static struct row g_rows[MAX_ROWS];
static int g_nrows;

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000u), (long)(ns % 1000000000u) };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: replication [options]\n"
		"  --seconds S   propagation: per run [3]\n"
		"  --ops N       throughput: registers (then unregisters) per round [100k]\n"
		"  --rounds R    throughput: rounds [3]\n"
		"  --load P      propagation under load: churn pairs/s on A [20k]\n"
		"  --loss PCT    the lossy runs: datagrams each agent drops [5]\n"
		"  --agent PATH  shmgroupd binary [%s]\n"
		"  --agent-arg A an argument for both agents, e.g. --rto-min=20 (up to 8)\n"
		"  --spin MODE   the spinning reader, between lookups: yield (sched_yield),\n"
		"                pause (a pause instruction) or busy (nothing) [yield]\n"
		"  --json FILE, --quick (0.5 s runs, 20k ops, 1 round)\n",
		SHMGROUPD_PATH[0] ? SHMGROUPD_PATH : "none built");
}

static void parse_args(int argc, char **argv)
{
	enum {
		O_SECS = 256,
		O_OPS,
		O_ROUNDS,
		O_LOAD,
		O_LOSS,
		O_AGENT,
		O_AGENT_ARG,
		O_JSON,
		O_QUICK,
		O_SPIN
	};
	static const struct option lo[] = {
		{ "seconds", 1, 0, O_SECS },
		{ "ops", 1, 0, O_OPS },
		{ "rounds", 1, 0, O_ROUNDS },
		{ "load", 1, 0, O_LOAD },
		{ "loss", 1, 0, O_LOSS },
		{ "agent", 1, 0, O_AGENT },
		{ "json", 1, 0, O_JSON },
		{ "quick", 0, 0, O_QUICK },
		{ "help", 0, 0, 'h' },
		{ "agent-arg", 1, 0, O_AGENT_ARG },
		{ "spin", 1, 0, O_SPIN },
		{ 0, 0, 0, 0 },
	};
	int c, secs_set = 0, ops_set = 0, rounds_set = 0;
	uint64_t v;

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case O_SECS:
			opt.seconds = atof(optarg);
			secs_set = 1;
			if (opt.seconds <= 0)
				goto bad;
			break;
		case O_OPS:
			if (bench_parse_count(optarg, &opt.ops) < 0 || opt.ops < 1 ||
			    opt.ops > 10000000)
				goto bad;
			ops_set = 1;
			break;
		case O_ROUNDS:
			if (bench_parse_count(optarg, &opt.rounds) < 0 || opt.rounds < 1)
				goto bad;
			rounds_set = 1;
			break;
		case O_LOAD:
			opt.load = atof(optarg);
			if (opt.load < 0 || opt.load > 1e7)
				goto bad;
			break;
		case O_LOSS:
			if (bench_parse_count(optarg, &v) < 0 || v > 100)
				goto bad;
			opt.loss = (unsigned)v;
			break;
		case O_AGENT:
			opt.agent = optarg;
			break;
		case O_AGENT_ARG:
			if (opt.n_agent_args == 8)
				goto bad;
			opt.agent_args[opt.n_agent_args++] = optarg;
			break;
		case O_JSON:
			opt.json = optarg;
			break;
		case O_QUICK:
			opt.quick = 1;
			break;
		case O_SPIN:
			for (opt.spin = 0; opt.spin < 3 && strcmp(optarg, spin_names[opt.spin]) != 0;
			     opt.spin++)
				;
			if (opt.spin == 3)
				goto bad;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind < argc)
		goto bad;
	if (opt.quick) {
		if (!secs_set)
			opt.seconds = 0.5;
		if (!ops_set)
			opt.ops = 20000;
		if (!rounds_set)
			opt.rounds = 1;
	}
	return;
bad:
	usage(stderr);
	exit(2);
}

/* ------------------------------------------------------------------------ */
/* Agents                                                                   */
/* ------------------------------------------------------------------------ */

static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	int port = -1;
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static void stop_agents(void)
{
	for (int i = 0; i < HOSTS; i++)
		if (g_host[i].agent > 0) {
			kill(g_host[i].agent, SIGTERM);
			waitpid(g_host[i].agent, NULL, 0);
			g_host[i].agent = 0;
		}
}

static int start_agent(int i, unsigned loss)
{
	char a[12][128];
	const char *argv[24];
	int n = 0, p[2];

	if (pipe(p) < 0)
		return -errno;
#define ARG(...) (snprintf(a[n], sizeof(a[n]), __VA_ARGS__), argv[n] = a[n], n++)
	ARG("shmgroupd");
	ARG("--group=%s", g_host[i].arena);
	ARG("--node-name=h%d", i + 1);
	ARG("--listen=127.0.0.1:%d", g_host[i].port);
	ARG("--replication-group=%s", g_wire_group);
	ARG("--key-file=%s", g_key_path);
	ARG("--stats-file=%s", g_host[i].stats);
	ARG("--stats-interval=50");
	ARG("--peer=%d h%d 127.0.0.1:%d", 2 - i, 2 - i, g_host[1 - i].port);
	ARG("--ready-fd=%d", p[1]);
	if (loss)
		ARG("--fault-loss=%u", loss);
#undef ARG
	for (int k = 0; k < opt.n_agent_args; k++)
		argv[n++] = opt.agent_args[k];
	argv[n] = NULL;
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		close(p[0]);
		if (null >= 0)
			dup2(null, STDERR_FILENO); /* its info lines would swamp the report */
		execv(opt.agent, (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	if (pid < 0) {
		close(p[0]);
		return -errno;
	}
	g_host[i].agent = pid;
	struct pollfd pf = { .fd = p[0], .events = POLLIN };
	char b;
	int ok = poll(&pf, 1, 10000) == 1 && read(p[0], &b, 1) == 1;
	close(p[0]);
	return ok ? 0 : -ENOEXEC;
}

/* Both agents up and connected to each other; 0 or -errno. */
static int start_agents(unsigned loss)
{
	int rc = 0;
	for (int i = 0; i < HOSTS && rc == 0; i++)
		rc = start_agent(i, loss);
	for (uint64_t end = mono_ns() + WAIT_MS * 1000000ull; rc == 0;) {
		if (shmg_nodes(g_host[0].h, NULL, NULL, 0) == 1 &&
		    shmg_nodes(g_host[1].h, NULL, NULL, 0) == 1)
			break;
		if (mono_ns() > end)
			rc = -ETIMEDOUT;
		sleep_ns(1000000);
	}
	if (rc < 0)
		stop_agents();
	return rc;
}

/* A counter of host i's stats file, -1 if not there (yet). */
static long long stat_of(int i, const char *name)
{
	return stats_file_get(g_host[i].stats, name);
}

/* A's sending counters once they stopped moving (the stats file is
 * rewritten every 50 ms). */
struct tx_counters {
	long long bytes, datagrams, retransmits;
};

static struct tx_counters tx_settled(void)
{
	struct tx_counters c = { 0 }, prev = { -1, -1, -1 };
	for (int k = 0; k < 100; k++) {
		sleep_ns(120000000);
		c = (struct tx_counters){ stat_of(0, "tx_bytes"), stat_of(0, "tx_datagrams"),
					  stat_of(0, "tx_retransmits") };
		if (c.bytes == prev.bytes && c.datagrams == prev.datagrams)
			break;
		prev = c;
	}
	return c;
}

static void cleanup(void)
{
	stop_agents();
	for (int i = 0; i < HOSTS; i++) {
		if (g_host[i].arena[0])
			shmg_destroy(g_host[i].arena);
		if (g_host[i].stats[0])
			unlink(g_host[i].stats);
	}
	if (g_key_path[0])
		unlink(g_key_path);
}

static void on_signal(int sig)
{
	(void)sig;
	for (int i = 0; i < HOSTS; i++)
		if (g_host[i].agent > 0)
			kill(g_host[i].agent, SIGKILL);
	for (int i = 0; i < HOSTS; i++)
		if (g_host[i].arena[0])
			shmg_destroy(g_host[i].arena);
	_exit(130);
}

static int setup_hosts(void)
{
	uint8_t key[32];
	int pid = (int)getpid();

	snprintf(g_wire_group, sizeof(g_wire_group), "bench-repl-%d", pid);
	snprintf(g_key_path, sizeof(g_key_path), "/tmp/bench-repl-%d.key", pid);
	if (getrandom(key, sizeof(key), 0) != (ssize_t)sizeof(key))
		return -EIO;
	int fd = open(g_key_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	ssize_t w = write(fd, key, sizeof(key));
	close(fd);
	if (w != (ssize_t)sizeof(key))
		return -EIO;
	for (int i = 0; i < HOSTS; i++) {
		struct host *ho = &g_host[i];
		snprintf(ho->arena, sizeof(ho->arena), "bench-repl-%d-%d", pid, i);
		snprintf(ho->stats, sizeof(ho->stats), "/tmp/bench-repl-%d-%d.stats", pid, i);
		ho->port = free_port();
		/* Change logs large enough that a burst never laps the agent. */
		struct shmg_config cfg = { .flags = SHMG_OPEN_EXCL,
					   .node_id = (uint32_t)i + 1,
					   .arena_size = 128ull << 20,
					   .arena_max = 1ull << 30,
					   .oplog_bytes = 4u << 20,
					   .max_endpoints = 64,
					   .mailbox_bytes = 256u << 10 };
		int rc = shmg_open(ho->arena, &cfg, &ho->h);
		if (rc < 0 || ho->port < 0) {
			fprintf(stderr, "replication: shmg_open %s: %s\n", ho->arena,
				shmg_strerror(rc));
			return rc < 0 ? rc : -EADDRNOTAVAIL;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Floor: UDP ping-pong                                                     */
/* ------------------------------------------------------------------------ */

static int udp_socket(int *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0)
		return -1;
	*port = ntohs(a.sin_port);
	return fd;
}

static int connect_to(int fd, int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	return connect(fd, (struct sockaddr *)&a, sizeof(a));
}

static void run_pingpong(struct row *row)
{
	int pport, cport;
	int pfd = udp_socket(&pport), cfd = udp_socket(&cport);
	char buf[64] = { 0 };

	snprintf(row->test, sizeof(row->test), "pingpong");
	snprintf(row->cond, sizeof(row->cond), "idle");
	snprintf(row->wait, sizeof(row->wait), "-");
	hist_init(&row->h);
	if (pfd < 0 || cfd < 0 || connect_to(pfd, cport) < 0 || connect_to(cfd, pport) < 0) {
		snprintf(row->error, sizeof(row->error), "sockets: %s", strerror(errno));
		return;
	}
	pid_t pid = fork();
	if (pid == 0) {
		for (;;) {
			ssize_t n = recv(cfd, buf, sizeof(buf), 0);
			if (n <= 0 || buf[0] == 'q')
				_exit(0);
			if (send(cfd, buf, (size_t)n, 0) < 0)
				_exit(1);
		}
	}
	uint64_t seed = mono_ns() | 1, end = mono_ns() + (uint64_t)(opt.seconds * 1e9);
	while (mono_ns() < end) {
		/* The same idle gaps as the propagation runs. */
		sleep_ns(IDLE_GAP_NS + bench_below(&seed, IDLE_GAP_NS));
		uint64_t t0 = mono_ns();
		buf[0] = 'p';
		struct pollfd p = { .fd = pfd, .events = POLLIN };
		if (send(pfd, buf, 32, 0) < 0 || poll(&p, 1, 1000) != 1 ||
		    recv(pfd, buf, sizeof(buf), 0) <= 0)
			continue; /* a lost datagram (unlikely on loopback) is not timed */
		hist_record_ns(&row->h, mono_ns() - t0);
	}
	buf[0] = 'q';
	(void)send(pfd, buf, 1, 0);
	waitpid(pid, NULL, 0);
	close(pfd);
	close(cfd);
}

/* The wakeups of an idle propagation without shmgroup: the writer sends a
 * byte on a Unix datagram socket to process "A" (in epoll, as the agent
 * waits), A sends a datagram of an update's size on UDP to process "B" (in
 * epoll), B reads it, wakes the writer through a futex in shared memory (as
 * a mailbox wakes a blocked shmg_receive) and sends A a reply (the ack).
 * Each process does only that: what remains between this and propagation
 * is the agents' and the library's own work. */
struct chain {
	_Atomic uint32_t arrived; /* FUTEX word: B sets it, the writer waits on it */
};

static void futex_op(_Atomic uint32_t *w, int op, uint32_t val, const struct timespec *t)
{
	syscall(SYS_futex, (uint32_t *)w, op, val, t, NULL, 0);
}

/* A or B of the chain, in epoll on in (and udp): A sends the change when
 * the writer's byte comes, B wakes the writer and replies. */
static void chain_hop(int in, int udp, struct chain *c, bool is_a)
{
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN };
	char buf[256] = { 0 };
	epoll_ctl(ep, EPOLL_CTL_ADD, in, &ev);
	if (in != udp)
		epoll_ctl(ep, EPOLL_CTL_ADD, udp, &ev);
	for (;;) {
		if (epoll_wait(ep, &ev, 1, -1) < 0 && errno != EINTR)
			_exit(1);
		if (is_a) {
			/* A writer's byte sends the change; an ack only wakes A. */
			if (recv(in, buf, sizeof(buf), MSG_DONTWAIT) == 1) {
				if (buf[0] == 'q')
					_exit(0);
				(void)send(udp, buf, 176, MSG_DONTWAIT);
			}
			while (recv(udp, buf, sizeof(buf), MSG_DONTWAIT) > 0)
				; /* acks */
		} else {
			ssize_t n = recv(udp, buf, sizeof(buf), MSG_DONTWAIT);
			if (n == 1)
				_exit(0);
			if (n <= 0)
				continue;
			atomic_store(&c->arrived, 1);
			futex_op(&c->arrived, FUTEX_WAKE, 1, NULL);
			(void)send(udp, buf, 116, MSG_DONTWAIT); /* the ack */
		}
	}
}

static void run_chain(struct row *row)
{
	int wake[2], aport, bport;
	int afd = udp_socket(&aport), bfd = udp_socket(&bport);
	struct chain *c = bench_shared_alloc(sizeof(*c));
	pid_t pa = -1, pb = -1;

	snprintf(row->test, sizeof(row->test), "chain");
	snprintf(row->cond, sizeof(row->cond), "idle");
	snprintf(row->wait, sizeof(row->wait), "-");
	hist_init(&row->h);
	if (!c || afd < 0 || bfd < 0 || connect_to(afd, bport) < 0 ||
	    connect_to(bfd, aport) < 0 ||
	    socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, wake) < 0) {
		snprintf(row->error, sizeof(row->error), "sockets: %s", strerror(errno));
		return;
	}
	fflush(stdout);
	if ((pa = fork()) == 0)
		chain_hop(wake[1], afd, c, true);
	if ((pb = fork()) == 0)
		chain_hop(bfd, bfd, c, false);
	if (pa < 0 || pb < 0)
		snprintf(row->error, sizeof(row->error), "fork: %s", strerror(errno));
	uint64_t seed = mono_ns() | 1, end = mono_ns() + (uint64_t)(opt.seconds * 1e9);
	while (pa > 0 && pb > 0 && mono_ns() < end) {
		sleep_ns(IDLE_GAP_NS + bench_below(&seed, IDLE_GAP_NS));
		atomic_store(&c->arrived, 0);
		uint64_t t0 = mono_ns();
		if (send(wake[0], "w", 1, 0) < 0)
			break;
		const struct timespec second = { 1, 0 };
		while (!atomic_load(&c->arrived) && mono_ns() - t0 < 1000000000u)
			futex_op(&c->arrived, FUTEX_WAIT, 0, &second);
		if (atomic_load(&c->arrived)) /* a lost datagram (unlikely) is not timed */
			hist_record_ns(&row->h, mono_ns() - t0);
	}
	(void)send(wake[0], "q", 1, 0);
	(void)send(afd, "q", 1, 0);
	if (pa > 0)
		waitpid(pa, NULL, 0);
	if (pb > 0)
		waitpid(pb, NULL, 0);
	close(wake[0]);
	close(wake[1]);
	close(afd);
	close(bfd);
	bench_shared_free(c, sizeof(*c));
}

/* ------------------------------------------------------------------------ */
/* Propagation                                                              */
/* ------------------------------------------------------------------------ */

struct churn {
	_Atomic int stop;
	uint64_t pairs;
	char error[128];
};

/* Open loop: every millisecond, the pairs due by then. */
static void churn_main(struct churn *c)
{
	shmg_t *h;
	char key[32];
	int rc = shmg_open(g_host[0].arena, NULL, &h);
	if (rc < 0) {
		snprintf(c->error, sizeof(c->error), "churn: shmg_open: %s", shmg_strerror(rc));
		_exit(1);
	}
	uint64_t start = mono_ns(), done = 0;
	while (!atomic_load(&c->stop)) {
		uint64_t due = (uint64_t)((double)(mono_ns() - start) * opt.load / 1e9);
		for (; done < due && rc == 0; done++) {
			snprintf(key, sizeof(key), "c/%llu", (unsigned long long)(done % 1024));
			rc = shmg_register(h, key, strlen(key), "churn", 5, NULL);
			if (rc == 0)
				rc = shmg_unregister(h, key, strlen(key), NULL);
		}
		if (rc < 0) {
			snprintf(c->error, sizeof(c->error), "churn: %s", shmg_strerror(rc));
			_exit(1);
		}
		sleep_ns(1000000);
	}
	c->pairs = done;
	shmg_close(h);
	_exit(0);
}

static inline void cpu_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

static bool hit_on_b(const char *key)
{
	shmg_id_t id;
	return shmg_lookup(g_host[1].h, key, strlen(key), &id, NULL, 0, NULL, NULL) == 0;
}

/* Waits (event or spin) until key is found on B; false after WAIT_MS.
 * The spinning reader yields between lookups by default: both "hosts" share
 * this machine's CPUs, and a reader spinning flat out would take a CPU from
 * the agents that a reader on host B never takes from host A's side (and,
 * on 2 CPUs, from B's agent too), which measures the scheduler's time slice
 * rather than the propagation.  A yielding reader still never sleeps, so
 * its CPU is never idle when the change lands: what a polling reader buys. */
static bool wait_hit(const char *key, bool spin)
{
	uint64_t end = mono_ns() + WAIT_MS * 1000000ull;
	struct shmg_event ev[16];
	while (!hit_on_b(key)) {
		if (mono_ns() > end)
			return false;
		if (!spin) {
			if (shmg_receive(g_host[1].h, ev, 16, 100) < 0)
				return false;
		} else if (opt.spin == SPIN_YIELD) {
			sched_yield();
		} else if (opt.spin == SPIN_PAUSE) {
			for (int i = 0; i < 64; i++)
				cpu_pause();
		}
	}
	return true;
}

static void run_propagation(struct row *row, const char *cond, bool spin, bool load)
{
	static unsigned serial;
	char key[32];
	struct churn *c = NULL;
	pid_t churner = -1;
	int rc;

	snprintf(row->test, sizeof(row->test), "propagation");
	snprintf(row->cond, sizeof(row->cond), "%s", cond);
	snprintf(row->wait, sizeof(row->wait), "%s", spin ? "spin" : "event");
	hist_init(&row->h);
	if (!spin && (rc = shmg_monitor(g_host[1].h, "p/", 2, NULL)) < 0) {
		snprintf(row->error, sizeof(row->error), "shmg_monitor: %s", shmg_strerror(rc));
		return;
	}
	if (load) {
		c = bench_shared_alloc(sizeof(*c));
		fflush(stdout);
		churner = fork();
		if (churner == 0)
			churn_main(c);
		row->load_pairs_s = opt.load;
	}
	uint64_t seed = mono_ns() | 1, end = mono_ns() + (uint64_t)(opt.seconds * 1e9);
	unsigned first = serial;
	while (mono_ns() < end) {
		sleep_ns(IDLE_GAP_NS + bench_below(&seed, IDLE_GAP_NS));
		snprintf(key, sizeof(key), "p/%u", serial++);
		uint64_t t0 = mono_ns();
		rc = shmg_register(g_host[0].h, key, strlen(key), "v", 1, NULL);
		if (rc < 0) {
			snprintf(row->error, sizeof(row->error), "register: %s", shmg_strerror(rc));
			break;
		}
		if (!wait_hit(key, spin)) {
			snprintf(row->error, sizeof(row->error), "%s never reached B", key);
			break;
		}
		hist_record_ns(&row->h, mono_ns() - t0);
	}
	if (c) {
		atomic_store(&c->stop, 1);
		int st = 0;
		waitpid(churner, &st, 0);
		if (c->error[0])
			snprintf(row->error, sizeof(row->error), "%s", c->error);
		else if (st == 0)
			row->load_pairs_s = (double)c->pairs / opt.seconds;
		bench_shared_free(c, sizeof(*c));
	}
	for (unsigned k = first; k < serial; k++) {
		snprintf(key, sizeof(key), "p/%u", k);
		shmg_unregister(g_host[0].h, key, strlen(key), NULL);
	}
	if (!spin)
		shmg_demonitor(g_host[1].h, "p/", 2, NULL);
	/* B empties, and its mailbox with it. */
	struct shmg_event ev[64];
	uint64_t until = mono_ns() + WAIT_MS * 1000000ull;
	while (shmg_registry_count(g_host[1].h, NULL) > 0 && mono_ns() < until)
		sleep_ns(1000000);
	while (shmg_receive(g_host[1].h, ev, 64, 0) > 0)
		;
}

/* ------------------------------------------------------------------------ */
/* Throughput                                                               */
/* ------------------------------------------------------------------------ */

static bool b_count_is(long want)
{
	uint64_t end = mono_ns() + WAIT_MS * 1000000ull;
	while (shmg_registry_count(g_host[1].h, NULL) != want) {
		if (mono_ns() > end)
			return false;
		sleep_ns(100000);
	}
	return true;
}

static void run_throughput(struct row *row, const char *cond)
{
	char key[32];
	int rc = 0;
	uint64_t total_ns = 0;

	snprintf(row->test, sizeof(row->test), "throughput");
	snprintf(row->cond, sizeof(row->cond), "%s", cond);
	snprintf(row->wait, sizeof(row->wait), "-");
	hist_init(&row->h);
	struct tx_counters before = tx_settled();
	for (uint64_t r = 0; r < opt.rounds && rc == 0; r++) {
		uint64_t t0 = mono_ns();
		for (uint64_t k = 0; k < opt.ops && rc == 0; k++) {
			snprintf(key, sizeof(key), "t/%016llu", (unsigned long long)k);
			rc = shmg_register(g_host[0].h, key, strlen(key), "meta-16-bytes...", 16,
					   NULL);
		}
		if (rc == 0 && !b_count_is((long)opt.ops))
			rc = -ETIMEDOUT;
		for (uint64_t k = 0; k < opt.ops && rc == 0; k++) {
			snprintf(key, sizeof(key), "t/%016llu", (unsigned long long)k);
			rc = shmg_unregister(g_host[0].h, key, strlen(key), NULL);
		}
		if (rc == 0 && !b_count_is(0))
			rc = -ETIMEDOUT;
		total_ns += mono_ns() - t0;
	}
	if (rc < 0) {
		snprintf(row->error, sizeof(row->error), "%s",
			 rc == -ETIMEDOUT ? "B never caught up" : shmg_strerror(rc));
		return;
	}
	struct tx_counters after = tx_settled();
	double ops = 2.0 * (double)opt.ops * (double)opt.rounds;
	row->ops_per_s = ops / ((double)total_ns / 1e9);
	row->bytes_per_op = (double)(after.bytes - before.bytes) / ops;
	row->datagrams_per_op = (double)(after.datagrams - before.datagrams) / ops;
	row->retransmits_per_op = (double)(after.retransmits - before.retransmits) / ops;
}

/* ------------------------------------------------------------------------ */
/* Report                                                                   */
/* ------------------------------------------------------------------------ */

static void print_row(const struct row *r)
{
	if (r->error[0]) {
		printf("%-12s %-6s %-5s failed: %s\n", r->test, r->cond, r->wait, r->error);
		return;
	}
	if (strcmp(r->test, "throughput") == 0) {
		printf("%-12s %-6s %-5s %10.0f ops/s  %6.1f B/op  %.4f datagrams/op  "
		       "%.4f retransmits/op\n",
		       r->test, r->cond, r->wait, r->ops_per_s, r->bytes_per_op,
		       r->datagrams_per_op, r->retransmits_per_op);
		return;
	}
	printf("%-12s %-6s %-5s %7llu", r->test, r->cond, r->wait, (unsigned long long)r->h.count);
	print_hist_us(&r->h);
}

static void write_json(const struct machine *m)
{
	FILE *f = fopen(opt.json, "w");
	if (!f) {
		fprintf(stderr, "replication: %s: %s\n", opt.json, strerror(errno));
		return;
	}
	fprintf(f, "{\"program\": \"replication\", \"machine\": ");
	machine_json(f, m);
	fprintf(f,
		",\n \"params\": {\"seconds\": %.3f, \"ops\": %llu, \"rounds\": %llu, "
		"\"load\": %.0f, \"loss\": %u, \"spin\": \"%s\", \"agent\": ",
		opt.seconds, (unsigned long long)opt.ops, (unsigned long long)opt.rounds, opt.load,
		opt.loss, spin_names[opt.spin]);
	json_str(f, opt.agent);
	fprintf(f, "},\n \"results\": [");
	for (int i = 0; i < g_nrows; i++) {
		const struct row *r = &g_rows[i];
		fprintf(f, "%s\n  {\"test\": \"%s\", \"cond\": \"%s\", \"wait\": \"%s\"",
			i ? "," : "", r->test, r->cond, r->wait);
		if (r->error[0]) {
			fprintf(f, ", \"error\": ");
			json_str(f, r->error);
		} else if (strcmp(r->test, "throughput") == 0) {
			fprintf(f,
				", \"ops_per_s\": %.0f, \"bytes_per_op\": %.2f, "
				"\"datagrams_per_op\": %.5f, \"retransmits_per_op\": %.5f",
				r->ops_per_s, r->bytes_per_op, r->datagrams_per_op,
				r->retransmits_per_op);
		} else {
			fprintf(f, ", \"count\": %llu, ", (unsigned long long)r->h.count);
			json_hist(f, "", &r->h);
			if (r->load_pairs_s > 0)
				fprintf(f, ", \"load_pairs_s\": %.0f", r->load_pairs_s);
		}
		fprintf(f, "}");
	}
	fprintf(f, "\n]}\n");
	fclose(f);
}

static struct row *next_row(void)
{
	struct row *r = &g_rows[g_nrows++];
	memset(r, 0, sizeof(*r));
	return r;
}

/* The runs of one agent setting (loss 0 or opt.loss). */
static void run_with_agents(unsigned loss)
{
	char cond[16];
	snprintf(cond, sizeof(cond), loss ? "loss%u" : "idle", loss);
	int rc = start_agents(loss);
	if (rc < 0) {
		struct row *r = next_row();
		snprintf(r->test, sizeof(r->test), "agents");
		snprintf(r->cond, sizeof(r->cond), "%s", cond);
		snprintf(r->wait, sizeof(r->wait), "-");
		snprintf(r->error, sizeof(r->error), "cannot start %s: %s", opt.agent,
			 strerror(-rc));
		return;
	}
	run_propagation(next_row(), cond, false, false);
	if (!loss) {
		run_propagation(next_row(), cond, true, false);
		if (opt.load > 0)
			run_propagation(next_row(), "load", false, true);
	}
	run_throughput(next_row(), loss ? cond : "-");
	stop_agents();
}

int main(int argc, char **argv)
{
	struct machine m;
	int failed = 0;

	parse_args(argc, argv);
	if (!opt.agent || !opt.agent[0]) {
		fprintf(stderr, "replication: no shmgroupd (--agent PATH)\n");
		return 2;
	}
	machine_get(&m);
	atexit(cleanup);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (setup_hosts() < 0)
		return 1;
	machine_print(stdout, &m);
	printf("method:  two arenas, one shmgroupd each, UDP on 127.0.0.1; propagation = "
	       "shmg_register on A until shmg_lookup hits on B,\n"
	       "         one change at a time %.2f s per run; throughput = %llu registers then "
	       "unregisters on A until B holds them, then none, x%llu\n",
	       opt.seconds, (unsigned long long)opt.ops, (unsigned long long)opt.rounds);
	fflush(stdout);

	run_pingpong(next_row());
	run_chain(next_row());
	run_with_agents(0);
	if (opt.loss)
		run_with_agents(opt.loss);

	printf("\n%-12s %-6s %-5s %7s %9s %9s %9s %9s %9s\n", "test", "cond", "wait", "count",
	       "p50 us", "p90 us", "p99 us", "p99.9 us", "max us");
	for (int i = 0; i < g_nrows; i++) {
		print_row(&g_rows[i]);
		failed |= g_rows[i].error[0] != 0;
	}
	if (opt.json)
		write_json(&m);
	return failed;
}
