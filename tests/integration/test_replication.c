/* SPDX-License-Identifier: MIT */
/*
 * Replication between real agents: shmgroupd (path in argv[1]) run once per
 * "host" (tests/common/tc_agents.h: each host an arena of its own, the agents
 * talking UDP on 127.0.0.1 ports; workers are forked processes that write to
 * a host's arena on command; the test process reads every host's arena).
 *
 * What each test shows:
 *   - propagation: a register, a metadata update, a join on A appear on B and
 *     C; an unregister, a leave and a SIGKILLed worker's entries leave them
 *     with reasons normal, normal and exit; B's monitor sees each event with
 *     its metadata and previous metadata;
 *   - a register on B of a key A holds is -EEXIST once A's entry arrived;
 *   - 30 % loss, duplication and reordering on every agent during bursts
 *     from three hosts: the views converge;
 *   - an agent SIGKILLed and restarted while both sides kept writing: both
 *     directions catch up;
 *   - an agent SIGSTOPped past down_after: its entries leave the others with
 *     reason nodedown (and shmg_nodes drops it); after SIGCONT it comes back
 *     and everything is synced again;
 *   - replayed, truncated, forged and short datagrams (taken from real
 *     traffic through a relay) are refused and counted in the stats file,
 *     and replication goes on;
 *   - a clean stop says BYE: the peer purges at once (down_after is ten
 *     minutes); a peer added to the config file joins on SIGHUP; a peer with
 *     a wrong name is refused, and so is a different shard count (logged on
 *     both sides); bad configurations stop the agent with why;
 *   - the partition command (SIGUSR1, SIGUSR2) cuts a node off and heals it;
 *   - a lone change leaves and is applied at once, though the flush
 *     intervals are ten minutes;
 *   - a stream of 20,000 registers makes B's protocol thread hand the UDP
 *     socket to its receive thread, which gives it back afterwards; lone
 *     changes then still arrive both ways;
 *   - shmg_dispatch from B reaches a member and the registered endpoint on
 *     A (payload, sender id, in order); shmg_dispatch_local from B does not;
 *     under 30 % loss, duplication and reordering, every one of a burst of
 *     messages arrives exactly once, in order.
 *   - the change log overwritten while A is partitioned: after the heal A
 *     resyncs, and B holds exactly A's entries;
 *   - a reader on B looking up A's surviving keys throughout A's agent
 *     restart and the resync that follows never misses one;
 *   - the lossy burst is 50,000 changes from three hosts
 *     (SHMG_REPL_BURST_OPS sets another size);
 *   - as root: the propagation scenario with each agent in a network
 *     namespace of its own, joined by a bridge (skipped otherwise);
 *   - a writer stopped between publishing its change and waking the
 *     sleeping agent: the change still reaches B.
 * Every test ends with every host's view (a lookup of every key used, the
 * members of every group used) equal on every host.
 *
 * Waits are bounded polls for the awaited state (never a sleep); the bounds
 * only turn a hang into a failure.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <stdarg.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tc_agents.h"
#include "testhook.h"

START_TEST(test_propagation)
{
	struct tc_ev e;
	hosts_init(3);
	start_all();
	shmg_t *mon = hosts[1].h;
	ck_assert_int_eq(shmg_monitor(mon, NULL, 0, NULL), 0);

	uint32_t peers[4];
	ck_assert_int_eq(shmg_nodes(hosts[0].h, NULL, peers, 4), 2);
	ck_assert_uint_eq(peers[0] + peers[1], 2 + 3); /* nodes 2 and 3, in some order */
	ck_assert_uint_ne(peers[0], peers[1]);

	struct worker w = worker_start(0);
	use_key("k/a");
	use_key("k/u");
	use_group("g/a");
	step(&w, "R k/a m1", mon, &e);
	tc_ev_expect(&e, SHMG_EV_REGISTERED, SHMG_REASON_NONE, w.id, NULL, "k/a", "m1", 2);
	tc_ev_expect_prev(&e, NULL, 0);
	step(&w, "R k/a m2", mon, &e);
	tc_ev_expect(&e, SHMG_EV_REGISTERED, SHMG_REASON_NONE, w.id, NULL, "k/a", "m2", 2);
	tc_ev_expect_prev(&e, "m1", 2);
	step(&w, "J g/a gm", mon, &e);
	tc_ev_expect(&e, SHMG_EV_JOINED, SHMG_REASON_NONE, w.id, NULL, "g/a", "gm", 2);
	step(&w, "R k/u mu", mon, &e);
	tc_ev_expect(&e, SHMG_EV_REGISTERED, SHMG_REASON_NONE, w.id, NULL, "k/u", "mu", 2);
	expect_converged("after the writes");
	ck_assert_int_eq(e.pid, w.pid);

	step(&w, "U k/u", mon, &e);
	tc_ev_expect(&e, SHMG_EV_UNREGISTERED, SHMG_REASON_NORMAL, w.id, NULL, "k/u", "mu", 2);
	step(&w, "L g/a", mon, &e);
	tc_ev_expect(&e, SHMG_EV_LEFT, SHMG_REASON_NORMAL, w.id, NULL, "g/a", "gm", 2);
	wait_lookup(2, "k/u", -ENOENT);

	step(&w, "J g/a gm2", mon, &e);
	tc_ev_expect(&e, SHMG_EV_JOINED, SHMG_REASON_NONE, w.id, NULL, "g/a", "gm2", 3);
	kill(w.pid, SIGKILL);
	/* A's reaper removes both with reason exit, in some order. */
	struct tc_ev two[2];
	ck_assert_int_eq(tc_ev_recv_n(mon, two, 2, CONVERGE_MS), 2);
	int reg = two[0].type == SHMG_EV_UNREGISTERED ? 0 : 1;
	tc_ev_expect(&two[reg], SHMG_EV_UNREGISTERED, SHMG_REASON_EXIT, w.id, NULL, "k/a", "m2", 2);
	tc_ev_expect(&two[1 - reg], SHMG_EV_LEFT, SHMG_REASON_EXIT, w.id, NULL, "g/a", "gm2", 3);
	waitpid(w.pid, NULL, 0);
	wait_lookup(2, "k/a", -ENOENT);
	expect_converged("after the worker died");
}
END_TEST

START_TEST(test_register_conflict)
{
	hosts_init(2);
	start_all();
	struct worker a = worker_start(0), b = worker_start(1);
	use_key("dup");
	ck_assert_int_eq(worker_do(&a, "R dup from-a"), 0);
	wait_lookup(1, "dup", 0);
	ck_assert_int_eq(worker_do(&b, "R dup from-b"), -EEXIST);
	expect_converged("after the refused register");
	char meta[16];
	size_t ml;
	shmg_id_t id;
	ck_assert_int_eq(shmg_lookup(hosts[1].h, "dup", 3, &id, meta, sizeof(meta), &ml, NULL), 0);
	ck_assert_uint_eq(id.node, 1);
	ck_assert_mem_eq(meta, "from-a", 6);
}
END_TEST

static const char *const lossy[] = { "--fault-loss=30", "--fault-duplicate=30",
				     "--fault-reorder=30", NULL };

/* The lossy burst's changes from all three hosts (SHMG_REPL_BURST_OPS). */
static int burst_ops(void)
{
	const char *e = getenv("SHMG_REPL_BURST_OPS");
	int n = e ? atoi(e) : 50000;
	return n < 12 ? 12 : n;
}

START_TEST(test_lossy_burst)
{
	struct worker w[HOSTS];
	char cmd[64], prefix[16];
	/* Per host: n registers, a join, and the removal of every third
	 * register (ceil(n / 3)): 4n / 3 + 1 changes. */
	int n = burst_ops() * 3 / 4 / 3;
	int survivors = n - (n + 2) / 3;

	fault_args = lossy;
	down_after = "10000";
	hosts_init(3);
	start_all();
	use_group("burst");
	for (int i = 0; i < 3; i++) {
		w[i] = worker_start(i);
		snprintf(prefix, sizeof(prefix), "b%d/", i);
		use_keys(prefix, n < 300 ? n : 300); /* compared key by key; the rest counted */
	}
	/* Three hosts write at once. */
	for (int i = 0; i < 3; i++) {
		snprintf(cmd, sizeof(cmd), "N b%d/ %d\n", i, n);
		ck_assert_int_eq(tc_write_full(w[i].cmd, cmd, strlen(cmd)), 0);
	}
	for (int i = 0; i < 3; i++) {
		int rc;
		ck_assert_int_eq(tc_read_full(w[i].res, &rc, sizeof(rc), CONVERGE_MS), 0);
		ck_assert_int_eq(rc, 0);
		ck_assert_int_eq(worker_do(&w[i], "J burst x"), 0);
		snprintf(cmd, sizeof(cmd), "D b%d/ %d 3", i, n);
		ck_assert_int_eq(worker_do(&w[i], cmd), 0);
	}
	struct count_arg all = { 3 * survivors };
	ck_assert_msg(tc_wait_until(counts_are, &all, CONVERGE_MS),
		      "registry counts %ld %ld %ld, not %d", shmg_registry_count(hosts[0].h, NULL),
		      shmg_registry_count(hosts[1].h, NULL), shmg_registry_count(hosts[2].h, NULL),
		      3 * survivors);
	expect_converged("after bursts with 30% loss, duplication and reordering");
	/* The faults did happen, and were repaired. */
	for (int i = 0; i < 3; i++) {
		ck_assert_int_gt(stat_of(i, "fault_dropped"), 0);
		ck_assert_int_gt(stat_of(i, "fault_duplicated"), 0);
		ck_assert_int_gt(stat_of(i, "fault_reordered"), 0);
	}
	/* Each host holds every host's survivors, and three members. */
	ck_assert_int_eq(shmg_registry_count(hosts[0].h, NULL), 3 * survivors);
	static char v[8][96];
	struct strs members = { v, 0, 8 };
	ck_assert_int_eq(shmg_members(hosts[2].h, "burst", 5, collect_member, &members, NULL), 3);
}
END_TEST

START_TEST(test_agent_restart)
{
	hosts_init(2);
	start_all();
	struct worker a = worker_start(0), b = worker_start(1);
	use_keys("a/", 40);
	use_keys("b/", 40);
	use_keys("a2/", 40);
	use_keys("b2/", 40);
	ck_assert_int_eq(worker_do(&a, "N a/ 40"), 0);
	ck_assert_int_eq(worker_do(&b, "N b/ 40"), 0);
	expect_converged("before the kill");

	agent_kill(0);
	/* Both sides write while A's agent is gone. */
	ck_assert_int_eq(worker_do(&a, "N a2/ 40"), 0);
	ck_assert_int_eq(worker_do(&a, "D a/ 40 2"), 0);
	ck_assert_int_eq(worker_do(&b, "N b2/ 40"), 0);
	ck_assert_int_eq(worker_do(&b, "D b/ 40 4"), 0);
	agent_start(0);
	ck_assert(tc_wait_until(all_connected, NULL, CONVERGE_MS));
	expect_converged("after the agent's restart");
	ck_assert_int_eq(shmg_registry_count(hosts[1].h, NULL), 20 + 40 + 30 + 40);
	ck_assert_int_eq(shmg_registry_count(hosts[0].h, NULL), 20 + 40 + 30 + 40);
}
END_TEST

START_TEST(test_agent_stopped)
{
	struct tc_ev e;
	down_after = "1000";
	hosts_init(3);
	start_all();
	struct worker a = worker_start(0);
	use_keys("s/", 10);
	ck_assert_int_eq(worker_do(&a, "N s/ 10"), 0);
	expect_converged("before the stop");
	ck_assert_int_eq(shmg_monitor(hosts[1].h, "s/", 2, NULL), 0);

	kill(hosts[0].agent, SIGSTOP);
	wait_lookup(1, "s/0", -ENOENT);
	wait_lookup(2, "s/9", -ENOENT);
	for (int k = 0; k < 10; k++) {
		recv_one(hosts[1].h, &e);
		ck_assert_int_eq(e.type, SHMG_EV_UNREGISTERED);
		ck_assert_int_eq(e.reason, SHMG_REASON_NODEDOWN);
		ck_assert_uint_eq(e.id.node, 1);
	}
	int b_and_c_alone[HOSTS] = { -1, 1, 1 };
	ck_assert(tc_wait_until(nodes_are, b_and_c_alone, CONVERGE_MS));
	/* A's arena still holds its own entries. */
	wait_lookup(0, "s/0", 0);

	kill(hosts[0].agent, SIGCONT);
	ck_assert(tc_wait_until(all_connected, NULL, CONVERGE_MS));
	expect_converged("after SIGCONT");
	wait_lookup(1, "s/5", 0);
	recv_one(hosts[1].h, &e);
	ck_assert_int_eq(e.type, SHMG_EV_REGISTERED);
	ck_assert_uint_eq(e.id.node, 1);
}
END_TEST

/* A relay between A and B's port, A -> B only: it keeps the last DATA
 * datagram it forwarded. */
struct relay {
	int fd, to_port;
	int stop; /* atomic */
	pthread_mutex_t lock;
	uint8_t last[2048];
	size_t last_len;
	pthread_t th;
};

static void send_to(int fd, int port, const void *buf, size_t len)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	ssize_t n = sendto(fd, buf, len, 0, (struct sockaddr *)&a, sizeof(a));
	(void)n;
}

static void *relay_main(void *arg)
{
	struct relay *r = arg;
	uint8_t buf[65536];
	while (!__atomic_load_n(&r->stop, __ATOMIC_RELAXED)) {
		struct pollfd p = { .fd = r->fd, .events = POLLIN };
		if (poll(&p, 1, 20) <= 0)
			continue;
		ssize_t n = recv(r->fd, buf, sizeof(buf), 0);
		if (n <= 0)
			continue;
		send_to(r->fd, r->to_port, buf, (size_t)n);
		if (n > 5 && buf[5] == 5 && (size_t)n <= sizeof(r->last)) { /* DATA */
			pthread_mutex_lock(&r->lock);
			memcpy(r->last, buf, (size_t)n);
			r->last_len = (size_t)n;
			pthread_mutex_unlock(&r->lock);
		}
	}
	return NULL;
}

static bool counted_on_a_unknown(void *arg)
{
	(void)arg;
	return stat_of(0, "rx_unknown_peer") >= 1;
}

static bool counted(void *arg)
{
	const char *const *names = arg;
	for (int k = 0; names[k]; k++)
		if (stat_of(1, names[k]) < 1)
			return false;
	return true;
}

/* w registers key with meta; returns once host `at` finds it. */
static void register_seen(struct worker *w, const char *key, const char *meta, int at)
{
	char cmd[96];
	use_key(key);
	snprintf(cmd, sizeof(cmd), "R %s %s", key, meta);
	ck_assert_int_eq(worker_do(w, cmd), 0);
	wait_lookup(at, key, 0);
}

START_TEST(test_bad_datagrams)
{
	struct relay r = { .lock = PTHREAD_MUTEX_INITIALIZER };
	uint8_t pkt[2048];
	size_t len;

	hosts_init(2);
	int relay_port = free_port();
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)relay_port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	r.fd = socket(AF_INET, SOCK_DGRAM, 0);
	ck_assert_int_eq(bind(r.fd, (struct sockaddr *)&a, sizeof(a)), 0);
	r.to_port = hosts[1].port;
	hosts[0].peer_port_of[1] = relay_port;
	ck_assert_int_eq(pthread_create(&r.th, NULL, relay_main, &r), 0);
	start_all();

	struct worker w = worker_start(0);
	register_seen(&w, "x", "1", 1);
	pthread_mutex_lock(&r.lock);
	len = r.last_len;
	memcpy(pkt, r.last, len);
	pthread_mutex_unlock(&r.lock);
	ck_assert_uint_gt(len, 80);

	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	send_to(fd, hosts[1].port, pkt, len);     /* replayed */
	send_to(fd, hosts[1].port, pkt, len - 1); /* truncated */
	send_to(fd, hosts[1].port, pkt, 40);      /* shorter than any datagram */
	pkt[len - 20] ^= 0x40;                    /* forged: a byte of the body changed */
	send_to(fd, hosts[1].port, pkt, len);
	close(fd);
	static const char *const names[] = { "rx_replay", "rx_bad_header", "rx_bad_len",
					     "rx_bad_mac", NULL };
	if (!tc_wait_until(counted, (void *)names, CONVERGE_MS))
		ck_abort_msg(
			"not counted: replay %lld, bad header %lld, bad len %lld, bad mac %lld",
			stat_of(1, "rx_replay"), stat_of(1, "rx_bad_header"),
			stat_of(1, "rx_bad_len"), stat_of(1, "rx_bad_mac"));
	/* Replication goes on. */
	ck_assert_int_eq(worker_do(&w, "R x 2"), 0);
	expect_converged("after the bad datagrams");
	char meta[4];
	size_t ml;
	shmg_id_t id;
	ck_assert_int_eq(shmg_lookup(hosts[1].h, "x", 1, &id, meta, sizeof(meta), &ml, NULL), 0);
	ck_assert_int_eq(meta[0], '2');
	ck_assert_int_eq(shmg_nodes(hosts[1].h, NULL, NULL, 0), 1);
	__atomic_store_n(&r.stop, 1, __ATOMIC_RELAXED);
	pthread_join(r.th, NULL);
	close(r.fd);
}
END_TEST

START_TEST(test_clean_stop_says_bye)
{
	struct tc_ev e;
	down_after = "600000"; /* only a BYE can explain a prompt purge */
	hosts_init(2);
	start_all();
	struct worker a = worker_start(0);
	register_seen(&a, "bye", "m", 1);
	ck_assert_int_eq(shmg_monitor(hosts[1].h, "bye", 3, NULL), 0);
	kill(hosts[0].agent, SIGTERM);
	ck_assert_int_eq(tc_wait_exit(hosts[0].agent, READY_MS), 0);
	hosts[0].agent = 0;
	recv_one(hosts[1].h, &e);
	tc_ev_expect(&e, SHMG_EV_UNREGISTERED, SHMG_REASON_NODEDOWN, a.id, NULL, "bye", "m", 1);
	ck_assert_int_eq(shmg_nodes(hosts[1].h, NULL, NULL, 0), 0);
	/* The arena of the stopped agent keeps its own entry. */
	wait_lookup(0, "bye", 0);
}
END_TEST

START_TEST(test_sighup_adds_peer)
{
	char conf[64], line[96];
	const char *args[2] = { conf, NULL };
	snprintf(conf, sizeof(conf), "--config=/tmp/trepl-%d.conf", (int)getpid());
	int fd = open(conf + 9, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	hosts_init(2);
	unlisted = 1;
	fault_args = args;
	agent_start(0);
	fault_args = NULL;
	agent_start(1);
	/* B knocks; A does not know it yet and counts it. */
	ck_assert_msg(tc_wait_until(counted_on_a_unknown, NULL, CONVERGE_MS),
		      "A never counted B's handshakes as from an unknown peer");
	ck_assert_int_eq(shmg_nodes(hosts[0].h, NULL, NULL, 0), 0);
	snprintf(line, sizeof(line), "peer = 2 h2 127.0.0.1:%d\n", hosts[1].port);
	fd = open(conf + 9, O_WRONLY | O_TRUNC | O_CLOEXEC);
	ck_assert_int_eq(tc_write_full(fd, line, strlen(line)), 0);
	close(fd);
	kill(hosts[0].agent, SIGHUP);
	ck_assert(tc_wait_until(all_connected, NULL, CONVERGE_MS));
	struct worker b = worker_start(1);
	use_key("late");
	ck_assert_int_eq(worker_do(&b, "R late m"), 0);
	expect_converged("after the peer was added");
	wait_lookup(0, "late", 0);
	unlink(conf + 9);
}
END_TEST

START_TEST(test_partition_on_command)
{
	down_after = "1000";
	hosts_init(3);
	start_all();
	struct worker a = worker_start(0), c = worker_start(2);
	use_keys("p/", 5);
	use_keys("q/", 5);
	ck_assert_int_eq(worker_do(&a, "N p/ 5"), 0);
	expect_converged("before the partition");
	kill(hosts[0].agent, SIGUSR1); /* A cut off from everyone */
	wait_lookup(1, "p/0", -ENOENT);
	wait_lookup(2, "p/4", -ENOENT);
	ck_assert_int_eq(worker_do(&c, "N q/ 5"), 0); /* while A cannot hear */
	int a_alone[HOSTS] = { 0, 1, 1 };
	ck_assert_msg(tc_wait_until(nodes_are, a_alone, CONVERGE_MS), "nodes %ld %ld %ld",
		      shmg_nodes(hosts[0].h, NULL, NULL, 0), shmg_nodes(hosts[1].h, NULL, NULL, 0),
		      shmg_nodes(hosts[2].h, NULL, NULL, 0));
	ck_assert_int_gt(stat_of(0, "fault_partitioned_tx"), 0);
	ck_assert_int_gt(stat_of(0, "fault_partitioned_rx"), 0);
	kill(hosts[0].agent, SIGUSR2);
	ck_assert(tc_wait_until(all_connected, NULL, CONVERGE_MS));
	expect_converged("after the partition healed");
	wait_lookup(0, "q/4", 0);
	wait_lookup(1, "p/4", 0);
}
END_TEST

/* The same key registered on both sides of a partition, with different
 * metadata, then healed: both hosts show the later registration (B's), and
 * A's agent, the loser's owner, removed A's claim with reason conflict,
 * which A's monitor sees. */
struct winner_arg {
	uint32_t node;
	const char *meta;
};

static bool shows(int host, const struct winner_arg *w)
{
	char meta[16];
	size_t ml = 0;
	shmg_id_t id;
	return shmg_lookup(hosts[host].h, "dup", 3, &id, meta, sizeof(meta), &ml, NULL) == 0 &&
	       id.node == w->node && ml == strlen(w->meta) && !memcmp(meta, w->meta, ml);
}

static bool everyone_shows(void *arg)
{
	for (int i = 0; i < n_hosts; i++)
		if (!shows(i, arg))
			return false;
	return true;
}

struct shows_arg {
	int host;
	const struct winner_arg *w;
};

static bool host_shows(void *arg)
{
	const struct shows_arg *s = arg;
	return shows(s->host, s->w);
}

START_TEST(test_partition_heal_conflict)
{
	down_after = "1000";
	hosts_init(2);
	start_all();
	struct worker a = worker_start(0), b = worker_start(1);
	use_key("dup");
	ck_assert_int_eq(shmg_monitor(hosts[0].h, "dup", 3, NULL), 0);
	kill(hosts[0].agent, SIGUSR1); /* A and B cannot hear each other */
	int apart[HOSTS] = { 0, 0 };
	ck_assert(tc_wait_until(nodes_are, apart, CONVERGE_MS));
	ck_assert_int_eq(worker_do(&a, "R dup from-a"), 0);
	struct tc_ev e;
	recv_one(hosts[0].h, &e);
	ck_assert_int_eq(e.type, SHMG_EV_REGISTERED);
	ck_assert_int_eq(worker_do(&b, "R dup from-b"), 0); /* later: it wins */
	kill(hosts[0].agent, SIGUSR2);
	ck_assert(tc_wait_until(all_connected, NULL, CONVERGE_MS));
	struct winner_arg w = { b.id.node, "from-b" };
	ck_assert_msg(tc_wait_until(everyone_shows, &w, CONVERGE_MS), "B's claim is not shown everywhere");
	expect_converged("after the conflict");
	/* A's monitor: A's endpoint lost with reason conflict, then B's claim. */
	bool lost = false, shown = false;
	while (!(lost && shown)) {
		recv_one(hosts[0].h, &e);
		if (e.type == SHMG_EV_UNREGISTERED && shmg_id_equal(e.id, a.id))
			lost = e.reason == SHMG_REASON_CONFLICT;
		if (e.type == SHMG_EV_REGISTERED && shmg_id_equal(e.id, b.id))
			shown = e.meta_len == 6 && !memcmp(e.meta, "from-b", 6);
	}
	ck_assert(lost && shown);
	expect_stat_above(0, "store_conflicts_lost", 0);   /* A evicted its endpoint */
	expect_stat_above(1, "store_conflicts_hidden", 0); /* B kept A's claim aside */
}
END_TEST

/* B hears both A and C, which cannot hear each other.  A's claim of the key
 * loses to C's later one on B, which keeps it hidden (A never learns of
 * C's, so it keeps its claim).  B's agent is SIGKILLed and restarted, which
 * loses that agent's memory; its restart fetches every shard it holds again
 * by snapshot, which brings A's claim back hidden.  C then unregisters: B
 * shows A's claim in the same step (the best one left).  Once A and C hear
 * each other again, A applies C's changes in order: C's claim beat A's, so
 * A's endpoint is terminated (reason conflict) although C's claim is gone
 * by then, and every host ends with the key free. */
START_TEST(test_hidden_claim_survives_agent_restart)
{
	static const char *const cut_a_from_c[] = { "--fault-partition=h1,h3", NULL };
	fault_args = cut_a_from_c;
	/* A and C never declare each other down: after the heal, C's stream
	 * to A resumes (C's claim and its removal), rather than a snapshot. */
	down_after = "600000";
	hosts_init(3);
	start_all();
	struct worker a = worker_start(0), c = worker_start(2);
	use_key("dup");
	kill(hosts[0].agent, SIGUSR1); /* A and C cannot hear each other */
	expect_stat_above(0, "fault_partitioned_tx", 0); /* the signal has been acted on */
	ck_assert_int_eq(worker_do(&a, "R dup from-a"), 0);
	ck_assert_int_eq(worker_do(&c, "R dup from-c"), 0); /* later: it wins */
	struct winner_arg w = { c.id.node, "from-c" };
	ck_assert_msg(tc_wait_until(host_shows, &(struct shows_arg){ 1, &w }, CONVERGE_MS),
		      "B does not show C's claim");
	expect_stat_above(1, "store_conflicts_hidden", 0); /* B hides A's claim */

	agent_kill(1);
	agent_start(1);
	int b_back[HOSTS] = { -1, 2, -1 };
	ck_assert(tc_wait_until(nodes_are, b_back, CONVERGE_MS));
	/* The restarted agent's snapshots brought A's claim back, hidden. */
	expect_stat_above(1, "store_conflicts_hidden", 0);

	ck_assert_int_eq(worker_do(&c, "U dup"), 0);
	struct winner_arg wa = { a.id.node, "from-a" };
	ck_assert_msg(tc_wait_until(host_shows, &(struct shows_arg){ 1, &wa }, CONVERGE_MS),
		      "B does not show A's claim after C's went");
	expect_stat_above(1, "store_promoted_in_place", 0);
	kill(hosts[0].agent, SIGUSR2);
	ck_assert(tc_wait_until(all_connected, NULL, CONVERGE_MS));
	expect_stat_above(0, "store_conflicts_lost", 0);
	for (int i = 0; i < n_hosts; i++)
		wait_lookup(i, "dup", -ENOENT);
	expect_converged("after the heal");
}
END_TEST

/* A writer stopped (in a child, by sg_test_hook) after publishing its
 * change-log record and before waking the sleeping agent: the wakeup never
 * comes, and the agent finds the change on its own (its backstop poll of
 * the heads, or any other reason to wake), so B gets it anyway. */
static int parked_fd = -1;

static void park_before_wakeup(const char *point)
{
	if (strcmp(point, "oplog:published") != 0)
		return;
	(void)!write(parked_fd, "P", 1);
	for (;;)
		pause();
}

START_TEST(test_writer_stopped_before_waking_agent)
{
	int p[2];
	char b;
	hosts_init(2);
	start_all();
	use_key("parked");
	ck_assert_int_eq(pipe(p), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		shmg_t *h;
		if (shmg_open(hosts[0].arena, NULL, &h) < 0)
			_exit(1);
		parked_fd = p[1];
		sg_test_hook = park_before_wakeup;
		shmg_register(h, "parked", 6, "m", 1, NULL);
		_exit(2); /* not reached: parked */
	}
	close(p[1]);
	ck_assert_int_eq(tc_read_full(p[0], &b, 1, READY_MS), 0);
	close(p[0]);
	wait_lookup(1, "parked", 0);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	/* A's reaper (the agent) removes the dead writer's entry. */
	wait_lookup(1, "parked", -ENOENT);
	expect_converged("after the stopped writer was reaped");
}
END_TEST

/* The smallest change logs (64 KiB a shard): 16,000 registers and 8,000
 * removals (about 170 KiB of records a shard) while A is cut off overwrite
 * every shard's log, so after the heal A cannot resend B the records it
 * missed (they are gone from the log) and resyncs those shards. */
START_TEST(test_log_overflow_while_partitioned)
{
	oplog_bytes = 64 * 1024;
	hosts_init(2);
	start_all();
	struct worker a = worker_start(0);
	use_keys("o/", 1000);
	ck_assert_int_eq(worker_do(&a, "N o/ 100"), 0);
	expect_converged("before the partition");
	long long resyncs = stat_of(0, "resyncs_sent");
	kill(hosts[0].agent, SIGUSR1);
	expect_stat_above(0, "fault_partitioned_tx", 0); /* the signal has been acted on */
	ck_assert_int_eq(worker_do(&a, "D o/ 100 1"), 0);
	ck_assert_int_eq(worker_do(&a, "N o/ 16000"), 0);
	ck_assert_int_eq(worker_do(&a, "D o/ 16000 2"), 0);
	/* B still holds the 100 from before: the partition hid everything. */
	ck_assert_int_eq(shmg_registry_count(hosts[1].h, NULL), 100);
	kill(hosts[0].agent, SIGUSR2);
	struct count_arg half = { 8000 };
	ck_assert_msg(tc_wait_until(counts_are, &half, CONVERGE_MS), "B holds %ld, not 8000",
		      shmg_registry_count(hosts[1].h, NULL));
	expect_converged("after the partition healed");
	expect_stat_above(0, "resyncs_sent", resyncs);
	ck_assert_int_gt(stat_of(0, "fault_partitioned_tx"), 0);
}
END_TEST

/* A reader process on B looks up a fixed set of A's keys in a loop while
 * A's agent is killed and restarted and A's shards are resynced to B: the
 * survivors are replaced in place, so not one lookup misses. */
struct reader_stats {
	int stop;     /* atomic */
	long lookups; /* atomic */
	long misses;  /* atomic */
	char first_miss[32];
};

static void reader_main(int host, const char *prefix, int count, struct reader_stats *st)
{
	shmg_t *h;
	char key[32];
	if (shmg_open(hosts[host].arena, NULL, &h) < 0)
		_exit(1);
	while (!__atomic_load_n(&st->stop, __ATOMIC_ACQUIRE))
		for (int k = 0; k < count; k++) {
			shmg_id_t id;
			snprintf(key, sizeof(key), "%s%d", prefix, k);
			int rc = shmg_lookup(h, key, strlen(key), &id, NULL, 0, NULL, NULL);
			__atomic_add_fetch(&st->lookups, 1, __ATOMIC_RELAXED);
			if (rc != 0 && __atomic_add_fetch(&st->misses, 1, __ATOMIC_RELAXED) == 1)
				snprintf(st->first_miss, sizeof(st->first_miss), "%s: %d", key, rc);
		}
	_exit(0);
}

static bool reader_looked(void *arg)
{
	const struct reader_stats *st = arg;
	return __atomic_load_n(&st->lookups, __ATOMIC_RELAXED) > 10000;
}

START_TEST(test_readers_keep_survivors_during_restart_resync)
{
	hosts_init(2);
	start_all();
	struct worker a = worker_start(0);
	use_keys("keep/", 200);
	use_keys("gone/", 200);
	use_keys("new/", 200);
	ck_assert_int_eq(worker_do(&a, "N keep/ 200"), 0);
	ck_assert_int_eq(worker_do(&a, "N gone/ 200"), 0);
	expect_converged("before the restart");

	struct reader_stats *st = tc_shared_alloc(sizeof(*st));
	pid_t reader = fork();
	ck_assert_int_ge(reader, 0);
	if (reader == 0)
		reader_main(1, "keep/", 200, st);
	ck_assert(tc_wait_until(reader_looked, st, CONVERGE_MS));
	long long resyncs = stat_of(0, "resyncs_sent");

	agent_kill(0);
	/* Every shard's log moves while the agent is away, so the new agent
	 * (whose reader starts at the heads) sends B each shard by snapshot. */
	ck_assert_int_eq(worker_do(&a, "D gone/ 200 1"), 0);
	ck_assert_int_eq(worker_do(&a, "N new/ 200"), 0);
	agent_start(0);
	ck_assert(tc_wait_until(all_connected, NULL, CONVERGE_MS));
	expect_converged("after the restart");
	__atomic_store_n(&st->stop, 1, __ATOMIC_RELEASE);
	int status;
	ck_assert_int_eq(waitpid(reader, &status, 0), reader);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_msg(st->misses == 0, "the reader on B missed %ld of %ld lookups (first %s)",
		      st->misses, st->lookups, st->first_miss);
	expect_stat_above(0, "resyncs_sent", resyncs);
	ck_assert_int_eq(shmg_registry_count(hosts[1].h, NULL), 400);
}
END_TEST

/* The propagation scenario across a bridge, each agent (and the workers
 * writing to its arena) in a network namespace of its own: the arenas are
 * still on this host's /dev/shm, read here. */
START_TEST(test_propagation_in_netns)
{
	struct tc_ev e;
	hosts_init(2);
	if (!hosts_in_netns("test_propagation_in_netns"))
		return;
	start_all();
	shmg_t *mon = hosts[1].h;
	ck_assert_int_eq(shmg_monitor(mon, NULL, 0, NULL), 0);
	struct worker w = worker_start(0);
	use_key("n/a");
	use_group("n/g");
	step(&w, "R n/a m1", mon, &e);
	tc_ev_expect(&e, SHMG_EV_REGISTERED, SHMG_REASON_NONE, w.id, NULL, "n/a", "m1", 2);
	step(&w, "R n/a m2", mon, &e);
	tc_ev_expect(&e, SHMG_EV_REGISTERED, SHMG_REASON_NONE, w.id, NULL, "n/a", "m2", 2);
	tc_ev_expect_prev(&e, "m1", 2);
	step(&w, "J n/g gm", mon, &e);
	tc_ev_expect(&e, SHMG_EV_JOINED, SHMG_REASON_NONE, w.id, NULL, "n/g", "gm", 2);
	expect_converged("after the writes");
	step(&w, "L n/g", mon, &e);
	tc_ev_expect(&e, SHMG_EV_LEFT, SHMG_REASON_NORMAL, w.id, NULL, "n/g", "gm", 2);
	kill(w.pid, SIGKILL);
	recv_one(mon, &e);
	tc_ev_expect(&e, SHMG_EV_UNREGISTERED, SHMG_REASON_EXIT, w.id, NULL, "n/a", "m2", 2);
	waitpid(w.pid, NULL, 0);
	expect_converged("after the worker died");
	/* And the other way. */
	struct worker b = worker_start(1);
	register_seen(&b, "n/b", "mb", 0);
	expect_converged("after B's write");
	ck_assert_int_gt(stat_of(0, "tx_datagrams"), 0);
}
END_TEST

/* Whether host i's agent log holds a text. */
static bool host_log_says(int i, const char *text)
{
	char buf[16384];
	host_log(i, buf, sizeof(buf));
	return strstr(buf, text) != NULL;
}

static bool log_says(void *arg)
{
	return host_log_says(0, arg);
}

static bool both_logs_say(void *arg)
{
	return host_log_says(0, arg) && host_log_says(1, arg);
}

/* Two hosts' agents started: says(text) comes true (the logs say why they
 * refuse each other) and neither ever has a peer. */
static void expect_refused(bool (*says)(void *), const char *text, const char *why_not)
{
	hosts_init(2);
	agent_start(0);
	agent_start(1);
	ck_assert_msg(tc_wait_until(says, (void *)text, CONVERGE_MS), "%s", why_not);
	ck_assert_int_eq(shmg_nodes(hosts[0].h, NULL, NULL, 0), 0);
	ck_assert_int_eq(shmg_nodes(hosts[1].h, NULL, NULL, 0), 0);
}

START_TEST(test_wrong_name_refused)
{
	host1_name = "impostor"; /* A has node 2 as h2 */
	expect_refused(log_says, "peer h2 (node 2) refused", "A did not refuse node 2's wrong name");
}
END_TEST

/* Agents of one group whose arenas differ in shard count never become
 * peers, and both say why. */
START_TEST(test_shard_count_mismatch_refused)
{
	host1_shards = 16; /* A has the default 8 */
	expect_refused(both_logs_say, "shard count",
		       "the shard counts' mismatch was not logged on both sides");
}
END_TEST

/* Flush intervals of ten minutes: only the rule that a change on an idle
 * link leaves (and is applied) at once can bring it within the bound. */
static const char *const slow_flush[] = { "--replicated-sender-flush-interval=600000",
					  "--replicated-registry-receiver-flush-interval=600000",
					  "--replicated-pg-receiver-flush-interval=600000", NULL };

/* The protocol thread reads the socket itself while idle and hands it to
 * the receive thread for a stream; it gets it back when the stream ends. */
START_TEST(test_socket_handed_over_for_a_stream_and_back)
{
	hosts_init(2);
	start_all();
	struct worker a = worker_start(0);
	/* A lone change, read by B's protocol thread. */
	register_seen(&a, "before", "m", 1);
	/* A stream: B's protocol thread sees a full read and hands the socket
	 * over; once the stream is over, the receive thread gives it back.
	 * B's agent is stopped while A sends, so that its socket holds a
	 * backlog when it resumes, however fast the machine (well inside
	 * down_after: A keeps B up). */
	kill(hosts[1].agent, SIGSTOP);
	ck_assert_int_eq(worker_do(&a, "N s/ 20000"), 0);
	usleep(200 * 1000);
	kill(hosts[1].agent, SIGCONT);
	struct count_arg all = { 20001 };
	ck_assert(tc_wait_until(counts_are, &all, CONVERGE_MS));
	expect_stat_above(1, "rx_handoffs", 0);
	expect_stat_above(1, "rx_handbacks", 0);
	/* Lone changes still arrive, in both directions. */
	register_seen(&a, "after", "m", 1);
	struct worker b = worker_start(1);
	register_seen(&b, "back", "m", 0);
	expect_converged("after a stream and lone changes");
	ck_assert_int_eq(stat_of(1, "rx_errors"), 0);
}
END_TEST

START_TEST(test_lone_change_leaves_at_once)
{
	fault_args = slow_flush;
	hosts_init(2);
	start_all();
	struct worker a = worker_start(0);
	register_seen(&a, "lone", "m", 1);
	expect_converged("after a lone register");
}
END_TEST

/* With flush intervals of ten minutes, a change after the first leaves at
 * once only if the peer acked everything sent before it.  A receiving agent
 * sends the acks of lone datagrams after applying them (not as the core
 * makes them), so each change of this sequence, and then its removal,
 * arrives only if every earlier one's ack left B after its apply. */
START_TEST(test_lone_changes_in_a_row_are_each_acked)
{
	char cmd[64], key[32];
	fault_args = slow_flush;
	hosts_init(2);
	start_all();
	struct worker a = worker_start(0);
	use_keys("row", 10);
	for (int i = 0; i < 10; i++) {
		snprintf(key, sizeof(key), "row%d", i);
		snprintf(cmd, sizeof(cmd), "R %s m", key);
		ck_assert_int_eq(worker_do(&a, cmd), 0);
		wait_lookup(1, key, 0);
	}
	for (int i = 0; i < 10; i++) {
		snprintf(key, sizeof(key), "row%d", i);
		snprintf(cmd, sizeof(cmd), "U %s", key);
		ck_assert_int_eq(worker_do(&a, cmd), 0);
		wait_lookup(1, key, -ENOENT);
	}
	expect_converged("after lone changes in a row");
	ck_assert_int_eq(stat_of(0, "tx_errors"), 0);
	ck_assert_int_eq(stat_of(1, "tx_errors"), 0);
}
END_TEST

/* Runs the agent with the given arguments; returns its exit status and
 * its stderr in out. */
/* ---- remote dispatch ---------------------------------------------------- */

struct members_arg {
	int host;
	const char *key;
	long want;
};

static bool members_are(void *arg)
{
	struct members_arg *m = arg;
	return shmg_member_count(hosts[m->host].h, m->key, strlen(m->key), NULL) == m->want;
}

static void wait_members(int host, const char *key, long want)
{
	struct members_arg m = { host, key, want };
	ck_assert_msg(tc_wait_until(members_are, &m, CONVERGE_MS), "host %d: %s never has %ld members",
		      host, key, want);
}

/* The next message at h is `text` from `from`. */
static void expect_message(shmg_t *h, shmg_id_t from, const char *key, const char *text)
{
	struct tc_ev e;
	recv_one(h, &e);
	tc_ev_expect(&e, SHMG_EV_MESSAGE, SHMG_REASON_NONE, from, NULL, key, text, strlen(text));
	ck_assert_int_eq(e.pid, 0); /* not carried over the network */
}

START_TEST(test_dispatch_reaches_other_hosts)
{
	hosts_init(2);
	start_all();
	shmg_t *member = tc_open(hosts[0].arena, NULL);
	shmg_t *registered = tc_open(hosts[0].arena, NULL);
	struct worker b = worker_start(1), bm = worker_start(1);
	use_key("d/k");
	use_group("d/k");
	ck_assert_int_eq(shmg_join(member, "d/k", 3, "a", 1, NULL), 0);
	ck_assert_int_eq(shmg_register(registered, "d/k", 3, "r", 1, NULL), 0);
	ck_assert_int_eq(worker_do(&bm, "J d/k b"), 0); /* a member on B too */
	wait_members(1, "d/k", 2);
	wait_lookup(1, "d/k", 0);

	/* One member on B, and host A: 2. */
	ck_assert_int_eq(worker_do(&b, "S d/k hello"), 2);
	expect_message(member, b.id, "d/k", "hello");
	expect_message(registered, b.id, "d/k", "hello");
	/* dispatch_local stays on B: the next message A sees is the one after. */
	ck_assert_int_eq(worker_do(&b, "T d/k local"), 1);
	ck_assert_int_eq(worker_do(&b, "M d/k 20 m"), 2);
	char text[16];
	for (int i = 0; i < 20; i++) {
		snprintf(text, sizeof(text), "m%d", i);
		expect_message(member, b.id, "d/k", text);
	}
	tc_ev_expect_empty(member, "the member on A, after the last message");
	shmg_close(registered);
	shmg_close(member);
	expect_converged("after dispatching");
}
END_TEST

START_TEST(test_dispatch_under_loss_arrives_once)
{
	enum { N = 200 };
	fault_args = lossy;
	hosts_init(2);
	start_all();
	shmg_t *member = tc_open(hosts[0].arena, NULL);
	struct worker b = worker_start(1);
	use_group("d/lossy");
	ck_assert_int_eq(shmg_join(member, "d/lossy", 7, NULL, 0, NULL), 0);
	wait_members(1, "d/lossy", 1);

	/* Rounds of N messages until the faults have hit one: a round can go
	 * through whole when B packs it into a few datagrams (about one time in
	 * eight under 30 % loss), but not ten rounds in a row. */
	static const char *const resent[] = { "tx_message_retransmits", NULL };
	char text[16];
	for (int round = 0; round < 10; round++) {
		ck_assert_int_eq(worker_do(&b, "M d/lossy 200 n"), 1);
		ck_assert_int_eq(worker_do(&b, "S d/lossy end"), 1);
		for (int i = 0; i < N; i++) {
			snprintf(text, sizeof(text), "n%d", i);
			expect_message(member, b.id, "d/lossy", text);
		}
		expect_message(member, b.id, "d/lossy", "end");
		tc_ev_expect_empty(member, "the member, after every message arrived once");
		if (tc_wait_until(counted, (void *)resent, 2000))
			break;
	}
	/* The faults hit the messages (dropped on either side) and were repaired. */
	ck_assert(counted((void *)resent));
	ck_assert_int_gt(stat_of(0, "fault_dropped") + stat_of(1, "fault_dropped"), 0);
	shmg_close(member);
	expect_converged("after dispatching under loss");
}
END_TEST

static int agent_run_fails(const char *const *extra, char *out, size_t cap)
{
	const char *argv[16];
	int n = 0, p[2];
	argv[n++] = "shmgroupd";
	argv[n++] = "--group";
	argv[n++] = hosts[0].arena;
	for (int k = 0; extra[k]; k++)
		argv[n++] = extra[k];
	argv[n] = NULL;
	ck_assert_int_eq(pipe(p), 0);
	pid_t pid = spawn(0, argv, p[1]);
	size_t len = 0;
	ssize_t k;
	while (len + 1 < cap && (k = read(p[0], out + len, cap - 1 - len)) > 0)
		len += (size_t)k;
	out[len] = '\0';
	close(p[0]);
	return tc_wait_exit(pid, READY_MS);
}

START_TEST(test_config_refused)
{
	char err[2048], listen[64], self[64], twice_a[64], twice_b[64];
	/* Each makes the agent exit 1 and say why. */
	hosts_init(1);
	snprintf(listen, sizeof(listen), "--listen=127.0.0.1:%d", hosts[0].port);
	snprintf(self, sizeof(self), "--peer=1 other 127.0.0.1:%d", free_port());
	const char *own_number[] = { "--node-name=h1", listen, self, NULL };
	ck_assert_int_eq(agent_run_fails(own_number, err, sizeof(err)), 1);
	ck_assert_ptr_nonnull(strstr(err, "belong to one node only"));

	snprintf(twice_a, sizeof(twice_a), "--peer=2 twin 127.0.0.1:%d", free_port());
	snprintf(twice_b, sizeof(twice_b), "--peer=3 twin 127.0.0.1:%d", free_port());
	const char *same_name[] = { "--node-name=h1", listen, twice_a, twice_b, NULL };
	ck_assert_int_eq(agent_run_fails(same_name, err, sizeof(err)), 1);
	ck_assert_ptr_nonnull(strstr(err, "duplicate node number or name"));

	char any[64];
	snprintf(any, sizeof(any), "--listen=0.0.0.0:%d", hosts[0].port);
	const char *no_key_off_loopback[] = { "--node-name=h1", any, NULL };
	ck_assert_int_eq(agent_run_fails(no_key_off_loopback, err, sizeof(err)), 1);
	ck_assert_ptr_nonnull(strstr(err, "loopback addresses only"));

	const char *no_name[] = { listen, NULL };
	ck_assert_int_eq(agent_run_fails(no_name, err, sizeof(err)), 1);
	ck_assert_ptr_nonnull(strstr(err, "needs node_name"));

	/* A conflict resolver that cannot be loaded stops the agent at start:
	 * a host resolving by another rule than its peers would diverge. */
	const char *no_file[] = { "--node-name=h1", listen,
				  "--conflict-resolver=/nonexistent/r.so:fn", NULL };
	ck_assert_int_eq(agent_run_fails(no_file, err, sizeof(err)), 1);
	ck_assert_ptr_nonnull(strstr(err, "cannot load /nonexistent/r.so"));
	char no_sym_arg[4200];
	snprintf(no_sym_arg, sizeof(no_sym_arg), "--conflict-resolver=%s:no_such_function",
		 getenv("SHMG_TEST_RESOLVER"));
	const char *no_sym[] = { "--node-name=h1", listen, no_sym_arg, NULL };
	ck_assert_int_eq(agent_run_fails(no_sym, err, sizeof(err)), 1);
	ck_assert_ptr_nonnull(strstr(err, "no function no_such_function"));
	const char *bad_form[] = { "--node-name=h1", listen, "--conflict-resolver=r.so", NULL };
	ck_assert_int_ne(agent_run_fails(bad_form, err, sizeof(err)), 0);
	const char *bad_signal[] = { "--node-name=h1", listen, "--conflict-signal=SIGNOPE", NULL };
	ck_assert_int_ne(agent_run_fails(bad_signal, err, sizeof(err)), 0);
}
END_TEST

/* A named cluster's connect and disconnect put markers in every shard's
 * change log; the streams go on past them. */
START_TEST(test_cluster_markers_in_streams)
{
	struct tc_ev e;
	hosts_init(2);
	start_all();
	shmg_t *mon = hosts[1].h;
	ck_assert_int_eq(shmg_monitor(mon, NULL, 0, NULL), 0);
	ck_assert_int_eq(shmg_connect(hosts[0].h, "mk", NULL), 0);
	ck_assert_int_eq(shmg_disconnect(hosts[0].h, "mk"), 0);
	ck_assert_int_eq(shmg_connect(hosts[0].h, "mk", NULL), 0);
	struct worker w = worker_start(0);
	use_key("k/after-markers");
	step(&w, "R k/after-markers m", mon, &e);
	tc_ev_expect(&e, SHMG_EV_REGISTERED, SHMG_REASON_NONE, w.id, NULL, "k/after-markers", "m",
		     1);
	expect_converged("after the markers");
	kill(w.pid, SIGKILL);
	waitpid(w.pid, NULL, 0);
}
END_TEST

/* conflict_resolver and conflict_signal accepted: the resolver loaded. */
START_TEST(test_conflict_config)
{
	char resolver[4200];
	snprintf(resolver, sizeof(resolver), "--conflict-resolver=%s:fixture_resolve",
		 getenv("SHMG_TEST_RESOLVER"));
	const char *extra[] = { resolver, "--conflict-signal=SIGUSR1", NULL };
	hosts_init(1);
	fault_args = extra;
	agent_start(0);
	fault_args = NULL;
	ck_assert_msg(tc_wait_until(log_says, "conflicts resolved by", CONVERGE_MS),
		      "the resolver was not loaded");
}
END_TEST

/* Named clusters (docs/PROTOCOL.md section 15).  Until the library logs
 * its connect and disconnect markers, an agent learns its host's clusters
 * when it starts, so B's joining is made known by restarting its agent. */
START_TEST(test_named_cluster_isolation)
{
	struct tc_ev e;
	const struct shmg_opts x = { .cluster = "X" };
	shmg_id_t id;
	hosts_init(2);
	ck_assert_int_eq(shmg_connect(hosts[0].h, "X", NULL), 0);
	ck_assert_int_eq(shmg_monitor(hosts[1].h, NULL, 0, &x), 0); /* needs no connect */
	start_all();
	struct worker a = worker_start(0);
	use_key("plain");
	ck_assert_int_eq(worker_do(&a, "X X xk in-x"), 0);
	ck_assert_int_eq(worker_do(&a, "R plain p"), 0);
	wait_lookup(1, "plain", 0);
	/* B is not in X: A sent it nothing of X, so B's store refused none. */
	ck_assert_int_eq(shmg_lookup(hosts[1].h, "xk", 2, &id, NULL, 0, NULL, &x), -ENOENT);
	expect_stat_above(1, "rx_cluster_sets", 0);
	expect_stat_above(1, "store_changes", 0); /* a file written after "plain" was applied */
	ck_assert_int_eq(stat_of(1, "store_not_connected"), 0);
	ck_assert_int_eq(stat_of(0, "cluster_gains"), 0);
	ck_assert_int_eq(tc_ev_recv_n(hosts[1].h, &e, 1, 200), 0); /* and no event of X */

	/* B joins X: A sends it X's state, and X's later changes by the log. */
	ck_assert_int_eq(shmg_connect(hosts[1].h, "X", NULL), 0);
	agent_kill(1);
	agent_start(1);
	recv_one(hosts[1].h, &e);
	tc_ev_expect(&e, SHMG_EV_REGISTERED, SHMG_REASON_NONE, a.id, "X", "xk", "in-x", 4);
	expect_stat_above(0, "cluster_gains", 0);
	ck_assert_int_eq(worker_do(&a, "Y X xk"), 0);
	recv_one(hosts[1].h, &e);
	tc_ev_expect(&e, SHMG_EV_UNREGISTERED, SHMG_REASON_NORMAL, a.id, "X", "xk", "in-x", 4);
	ck_assert_int_eq(worker_do(&a, "X X xk2 two"), 0);
	recv_one(hosts[1].h, &e);
	tc_ev_expect(&e, SHMG_EV_REGISTERED, SHMG_REASON_NONE, a.id, "X", "xk2", "two", 3);

	/* B leaves X: A's entries of X go here, reason cluster_disconnect. */
	ck_assert_int_eq(shmg_disconnect(hosts[1].h, "X"), 0);
	recv_one(hosts[1].h, &e);
	tc_ev_expect(&e, SHMG_EV_UNREGISTERED, SHMG_REASON_CLUSTER_DISCONNECT, a.id, "X", "xk2",
		     "two", 3);
	ck_assert_int_eq(shmg_lookup(hosts[1].h, "xk2", 3, &id, NULL, 0, NULL, &x), -ENOENT);
	ck_assert_int_eq(shmg_lookup(hosts[0].h, "xk2", 3, &id, NULL, 0, NULL, &x), 0);
	expect_converged("the default cluster, after B left X");
}
END_TEST

struct x_lookup {
	int host;
	const char *key;
	int want; /* 0 = found, -ENOENT = not */
};

static bool x_lookup_is(void *arg)
{
	const struct x_lookup *l = arg;
	const struct shmg_opts x = { .cluster = "X" };
	shmg_id_t id;
	return shmg_lookup(hosts[l->host].h, l->key, strlen(l->key), &id, NULL, 0, NULL, &x) ==
	       l->want;
}

static void wait_x_lookup(int host, const char *key, int want)
{
	struct x_lookup l = { host, key, want };
	ck_assert_msg(tc_wait_until(x_lookup_is, &l, CONVERGE_MS), "host %d: lookup of %s in X never %d",
		      host, key, want);
}

/* Three hosts, each in its own network namespace; A and C are connected to
 * X, B is not.  B never holds X's entries nor gets X's events; its connect
 * pulls X's state from both, with no restart; its disconnect removes them
 * here (reason cluster_disconnect) and nowhere else. */
START_TEST(test_named_cluster_isolation_in_netns)
{
	struct tc_ev e;
	const struct shmg_opts x = { .cluster = "X" };
	hosts_init(3);
	if (!hosts_in_netns("test_named_cluster_isolation_in_netns"))
		return;
	ck_assert_int_eq(shmg_connect(hosts[0].h, "X", NULL), 0);
	ck_assert_int_eq(shmg_connect(hosts[2].h, "X", NULL), 0);
	ck_assert_int_eq(shmg_monitor(hosts[1].h, NULL, 0, &x), 0); /* needs no connect */
	start_all();
	struct worker a = worker_start(0), c = worker_start(2);
	use_key("plain");
	ck_assert_int_eq(worker_do(&a, "X X xa from-a"), 0);
	ck_assert_int_eq(worker_do(&c, "X X xc from-c"), 0);
	ck_assert_int_eq(worker_do(&c, "R plain p"), 0);
	wait_x_lookup(0, "xc", 0);
	wait_x_lookup(2, "xa", 0);
	wait_lookup(1, "plain", 0); /* B has what C sent after X's changes */
	ck_assert_int_eq(shmg_lookup(hosts[1].h, "xa", 2, NULL, NULL, 0, NULL, &x), -ENOENT);
	ck_assert_int_eq(shmg_lookup(hosts[1].h, "xc", 2, NULL, NULL, 0, NULL, &x), -ENOENT);
	ck_assert_int_eq(stat_of(1, "store_not_connected"), 0); /* sent nothing of X */
	ck_assert_int_eq(tc_ev_recv_n(hosts[1].h, &e, 1, 200), 0);

	/* B connects: X's state comes from both, as events. */
	ck_assert_int_eq(shmg_connect(hosts[1].h, "X", NULL), 0);
	wait_x_lookup(1, "xa", 0);
	wait_x_lookup(1, "xc", 0);
	struct tc_ev two[2];
	ck_assert_int_eq(tc_ev_recv_n(hosts[1].h, two, 2, CONVERGE_MS), 2);
	for (int i = 0; i < 2; i++) {
		bool from_a = strcmp(two[i].key, "xa") == 0;
		tc_ev_expect(&two[i], SHMG_EV_REGISTERED, SHMG_REASON_NONE, from_a ? a.id : c.id, "X",
			     from_a ? "xa" : "xc", from_a ? "from-a" : "from-c", 6);
	}
	ck_assert_str_ne(two[0].key, two[1].key);
	/* Later changes by the change log. */
	ck_assert_int_eq(worker_do(&c, "Y X xc"), 0);
	recv_one(hosts[1].h, &e);
	tc_ev_expect(&e, SHMG_EV_UNREGISTERED, SHMG_REASON_NORMAL, c.id, "X", "xc", "from-c", 6);

	/* B disconnects: A's entry of X leaves B only. */
	ck_assert_int_eq(shmg_disconnect(hosts[1].h, "X"), 0);
	recv_one(hosts[1].h, &e);
	tc_ev_expect(&e, SHMG_EV_UNREGISTERED, SHMG_REASON_CLUSTER_DISCONNECT, a.id, "X", "xa",
		     "from-a", 6);
	ck_assert_int_eq(shmg_lookup(hosts[1].h, "xa", 2, NULL, NULL, 0, NULL, &x), -ENOENT);
	ck_assert_int_eq(worker_do(&a, "X X xa2 again"), 0);
	wait_x_lookup(2, "xa2", 0);
	wait_x_lookup(0, "xa", 0);
	wait_x_lookup(2, "xa", 0);
	ck_assert_int_eq(shmg_lookup(hosts[1].h, "xa2", 3, NULL, NULL, 0, NULL, &x), -ENOENT);
	ck_assert_int_eq(tc_ev_recv_n(hosts[1].h, &e, 1, 200), 0);
	expect_converged("the default cluster");
}
END_TEST

int main(int argc, char **argv)
{
	if (!agents_args(argc, argv))
		return 2;
	Suite *s = suite_create("replication");
	TCase *tc = agents_tcase("agents");
	tcase_add_test(tc, test_propagation);
	tcase_add_test(tc, test_register_conflict);
	tcase_add_test(tc, test_partition_heal_conflict);
	tcase_add_test(tc, test_hidden_claim_survives_agent_restart);
	tcase_add_test(tc, test_lossy_burst);
	tcase_add_test(tc, test_agent_restart);
	tcase_add_test(tc, test_agent_stopped);
	tcase_add_test(tc, test_bad_datagrams);
	tcase_add_test(tc, test_clean_stop_says_bye);
	tcase_add_test(tc, test_sighup_adds_peer);
	tcase_add_test(tc, test_config_refused);
	tcase_add_test(tc, test_conflict_config);
	tcase_add_test(tc, test_cluster_markers_in_streams);
	tcase_add_test(tc, test_partition_on_command);
	tcase_add_test(tc, test_wrong_name_refused);
	tcase_add_test(tc, test_shard_count_mismatch_refused);
	tcase_add_test(tc, test_lone_change_leaves_at_once);
	tcase_add_test(tc, test_lone_changes_in_a_row_are_each_acked);
	tcase_add_test(tc, test_socket_handed_over_for_a_stream_and_back);
	tcase_add_test(tc, test_dispatch_reaches_other_hosts);
	tcase_add_test(tc, test_dispatch_under_loss_arrives_once);
	tcase_add_test(tc, test_log_overflow_while_partitioned);
	tcase_add_test(tc, test_readers_keep_survivors_during_restart_resync);
	tcase_add_test(tc, test_propagation_in_netns);
	tcase_add_test(tc, test_writer_stopped_before_waking_agent);
	suite_add_tcase(s, tc);
	TCase *tcc = agents_tcase("clusters");
	tcase_add_test(tcc, test_named_cluster_isolation);
	tcase_add_test(tcc, test_named_cluster_isolation_in_netns);
	suite_add_tcase(s, tcc);
	return tc_run(s);
}
