/* SPDX-License-Identifier: MIT */
/*
 * Several hosts with real agents (shmgroupd, path in argv[1]; hosts and
 * workers as tests/common/tc_agents.h makes them) through partitions,
 * conflicts, kills and leases.
 *
 * What each test shows:
 *   - the same key registered on both sides of a partition with different
 *     metadata, then healed: every host shows the later registration; a
 *     monitor on the loser's host sees the loser's entry go with reason
 *     conflict; the loser's mailbox ends with a SHMG_EV_CONFLICT record
 *     (default cluster, the key, the winner's id and metadata), after which
 *     its receive and its writes fail with -ECONNABORTED; with
 *     conflict_signal = SIGUSR1 its process gets SIGUSR1 from its agent;
 *   - the same with a resolver loaded by every agent (conflict_resolver,
 *     integration/resolver_fixture.c: the smaller metadata wins): the
 *     earlier registration, which the default rule would drop, wins
 *     everywhere;
 *   - a key registered on B while A holds it, unregistered and registered
 *     again by another endpoint of B, all within one partition: after the
 *     heal A applies the three changes as one batch, and both hosts show
 *     the last claim (the store settles a refusal, then applies the batch's
 *     later changes of that key again);
 *   - A sees y's claim (on B), then z's later one (on C) replace it, then
 *     y's later update replace z's: once y unregisters, no host shows the
 *     key (A does not keep y's first claim hidden behind its update, to
 *     show it again);
 *   - a claim hidden behind a local one (A deaf to B for a while, B's
 *     claim preferred by the resolver) is shown when the local endpoint
 *     unregisters: the agent reads the removal from its log and promotes
 *     the best hidden claim of that key;
 *   - an asymmetric partition (A's agent stops sending to B but still hears
 *     it: fault_partition_direction = send) with writes on both sides: B
 *     declares A down, and after the heal every host holds the same view;
 *   - five agents (as root, each in a network namespace of its own, joined
 *     by a bridge) under loss, through a random but seeded schedule of
 *     partitions, agent kills and restarts, worker kills, and workers'
 *     registers, unregisters, joins and leaves: after the heal, every host's view of
 *     every key and group used is exactly the one the workers' own results
 *     imply: identical everywhere, every live claim visible, no entry of a
 *     killed worker or of a conflict's loser, and exactly one winner of
 *     every contested key (the invariants of tests/sim/sim_invariants.c
 *     that can be seen from outside, docs/PROTOCOL.md section 16).  Each
 *     host's workers write keys of their own; in the contested run (or
 *     with SHMG_MULTIHOST_CONTESTED set) all write the same ten, so that
 *     partitions make conflicts, some of three claims or more
 *     (docs/PROTOCOL.md section 16).  The seed
 *     is printed; SHMG_MULTIHOST_SEED repeats the schedule (the outcomes
 *     still depend on timing), SHMG_MULTIHOST_STEPS makes it longer and
 *     SHMG_MULTIHOST_HOSTS (2..5) runs fewer hosts;
 *   - a leased named cluster on a host whose agent runs (and so hosts the
 *     reaper) expires when nothing of the host's is in it, and is kept,
 *     saying why, while a registration of the host is.
 * Every test starts and stops its own agents and workers (agents_teardown
 * removes the files and arenas).
 */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tc_agents.h"

/* ---- conflicts after a partition -------------------------------------- */

struct owner_arg {
	const char *key;
	shmg_id_t id;
	const char *meta;
};

/* Does host i show `key` held by o's endpoint with o's metadata? */
static bool host_shows(int i, const struct owner_arg *o)
{
	char meta[64];
	size_t ml = 0;
	shmg_id_t id;
	return shmg_lookup(hosts[i].h, o->key, strlen(o->key), &id, meta, sizeof(meta), &ml,
			   NULL) == 0 &&
	       shmg_id_equal(id, o->id) && ml == strlen(o->meta) && !memcmp(meta, o->meta, ml);
}

static bool everyone_shows(void *arg)
{
	for (int i = 0; i < n_hosts; i++)
		if (!host_shows(i, arg))
			return false;
	return true;
}

/* Cuts host 0 off from host 1 and waits until neither counts the other. */
static void partition_both_ways(void)
{
	kill(hosts[0].agent, SIGUSR1);
	int apart[HOSTS] = { 0, 0 };
	ck_assert_msg(tc_wait_until(nodes_are, apart, CONVERGE_MS), "the partition did not take");
}

static void heal(void)
{
	kill(hosts[0].agent, SIGUSR2);
	ck_assert_msg(tc_wait_until(all_connected, NULL, CONVERGE_MS), "the heal did not take");
}

/* One side's registration of "dup": by a worker (the expected winner) or
 * by a handle of the test process (the expected loser, whose mailbox only
 * this process can read). */
struct claim {
	int host;
	const char *meta;
};

/* Registers "dup" with `first` then, later, with `second` on the other side
 * of a partition, heals, and checks that the claim `winner_is_first`
 * names won everywhere and that the other's endpoint was terminated and
 * told.  Returns the loser's handle (terminated) for more checks. */
static shmg_t *contested_register(struct claim first, struct claim second, bool winner_is_first)
{
	const struct claim *win = winner_is_first ? &first : &second;
	const struct claim *lose = winner_is_first ? &second : &first;
	shmg_t *loser = tc_open(hosts[lose->host].arena, NULL);
	shmg_id_t loser_id = shmg_self(loser);
	struct worker w = worker_start(win->host);
	char cmd[64];

	use_key("dup");
	shmg_t *watch = hosts[lose->host].h;
	ck_assert_int_eq(shmg_monitor(watch, "dup", 3, NULL), 0);
	partition_both_ways();
	snprintf(cmd, sizeof(cmd), "R dup %s", win->meta);
	for (int k = 0; k < 2; k++) { /* first, then second */
		const struct claim *c = k == 0 ? &first : &second;
		if (c == win)
			ck_assert_int_eq(worker_do(&w, cmd), 0);
		else
			TC_EQ(shmg_register(loser, "dup", 3, lose->meta, strlen(lose->meta), NULL), 0);
	}
	heal();

	struct owner_arg o = { "dup", w.id, win->meta };
	ck_assert_msg(tc_wait_until(everyone_shows, &o, CONVERGE_MS),
		      "the winner (%s) is not shown on every host", win->meta);
	expect_converged("after the conflict");

	/* The monitor on the loser's host: the loser's entry gone with reason
	 * conflict (and, before or after, the winner's claim arriving). */
	struct tc_ev e;
	bool lost = false;
	while (!lost) {
		recv_one(watch, &e);
		if (e.type == SHMG_EV_UNREGISTERED && shmg_id_equal(e.id, loser_id)) {
			ck_assert_int_eq(e.reason, SHMG_REASON_CONFLICT);
			lost = true;
		}
	}

	/* The loser's own mailbox: the final conflict record, then nothing but
	 * -ECONNABORTED; its writes are refused. */
	struct shmg_event ev;
	TC_EQ(shmg_receive(loser, &ev, 1, CONVERGE_MS), 1);
	ck_assert_int_eq(ev.type, SHMG_EV_CONFLICT);
	ck_assert_int_eq(ev.reason, SHMG_REASON_CONFLICT);
	ck_assert_ptr_null(ev.cluster);
	ck_assert_uint_eq(ev.key_len, 3);
	ck_assert_mem_eq(ev.key, "dup", 3);
	ck_assert(shmg_id_equal(ev.id, w.id));
	ck_assert_uint_eq(ev.meta_len, strlen(win->meta));
	ck_assert_mem_eq(ev.meta, win->meta, ev.meta_len);
	TC_EQ(shmg_receive(loser, &ev, 1, 0), -ECONNABORTED);
	TC_EQ(shmg_register(loser, "again", 5, NULL, 0, NULL), -ECONNABORTED);
	TC_EQ(shmg_join(loser, "g", 1, NULL, 0, NULL), -ECONNABORTED);
	expect_stat_above(lose->host, "store_conflicts_lost", 0);
	return loser;
}

/* Default rule, with conflict_signal = SIGUSR1: the later registration (B's)
 * wins; A's endpoint, a handle of this process, loses, and this process
 * gets SIGUSR1 from A's agent. */
START_TEST(test_heal_conflict_later_wins)
{
	static const char *const signal_usr1[] = { "--conflict-signal=SIGUSR1", NULL };
	sigset_t usr1;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	ck_assert_int_eq(sigprocmask(SIG_BLOCK, &usr1, NULL), 0);
	fault_args = signal_usr1;
	down_after = "1000";
	hosts_init(2);
	start_all();

	struct claim a = { 0, "from-a" }, b = { 1, "from-b" };
	shmg_t *loser = contested_register(a, b, false);

	siginfo_t si;
	struct timespec bound = { CONVERGE_MS / 1000, 0 };
	ck_assert_int_eq(sigtimedwait(&usr1, &si, &bound), SIGUSR1);
	ck_assert_int_eq(si.si_pid, hosts[0].agent);
	shmg_close(loser);
}
END_TEST

/* A resolver loaded by both agents (the smaller metadata wins): A's
 * earlier, shorter claim wins, though the default rule would pick B's. */
START_TEST(test_heal_conflict_user_resolver)
{
	static char resolver[4200];
	static const char *args[] = { resolver, NULL };
	snprintf(resolver, sizeof(resolver), "--conflict-resolver=%s:fixture_resolve",
		 getenv("SHMG_TEST_RESOLVER"));
	fault_args = args;
	down_after = "1000";
	hosts_init(2);
	start_all();

	struct claim a = { 0, "a" }, b = { 1, "from-b-later" };
	shmg_t *loser = contested_register(a, b, true);
	shmg_close(loser);
}
END_TEST

/* Within one partition B's endpoint y registers the key A's x holds, y
 * unregisters it and B's z registers it: after the heal A gets the three
 * changes in one batch.  y's claim, refused at first, wins the settlement
 * (x is terminated); y's removal and z's claim, refused against the arena
 * of before, are applied again after it: both hosts show z's claim. */
START_TEST(test_refused_claim_replaced_in_one_batch)
{
	down_after = "1000";
	hosts_init(2);
	start_all();
	struct worker x = worker_start(0), y = worker_start(1), z = worker_start(1);
	use_key("k");
	partition_both_ways();
	ck_assert_int_eq(worker_do(&x, "R k x1"), 0);
	ck_assert_int_eq(worker_do(&y, "R k y1"), 0);
	ck_assert_int_eq(worker_do(&y, "U k"), 0);
	ck_assert_int_eq(worker_do(&z, "R k z1"), 0);
	heal();
	struct owner_arg o = { "k", z.id, "z1" };
	ck_assert_msg(tc_wait_until(everyone_shows, &o, CONVERGE_MS), "z's claim is not shown everywhere");
	expect_converged("after the heal");
	ck_assert_int_eq(worker_do(&x, "U k"), -ECONNABORTED); /* the loser */
	ck_assert_int_eq(worker_do(&z, "R k z2"), 0);        /* still the owner */
	expect_converged("after z's update");
}
END_TEST

struct host_owner {
	int host;
	const struct owner_arg *o;
};

static bool host_shows_arg(void *arg)
{
	const struct host_owner *ho = arg;
	return host_shows(ho->host, ho->o);
}

/* Host i cut off from every other host, for as long as its agent runs. */
static void isolate(int i)
{
	long long before = stat_of(i, "fault_partitioned_tx");
	kill(hosts[i].agent, SIGUSR1);
	expect_stat_above(i, "fault_partitioned_tx", before > 0 ? before : 0);
}

/* Host A watches y (on B) and z (on C) claim one key in turn: y1, then
 * z1 (later: it replaces y1 on A, which hides y1), then y's update y2
 * (later still: it replaces z1 on A).  A must not keep y1 hidden once
 * y2 shows: a node holds one claim per key, so y2 supersedes it.  When y
 * unregisters, the key is free everywhere; a forgotten y1 would come back
 * on A, a claim nobody holds. */
START_TEST(test_superseded_hidden_claim_not_promoted)
{
	down_after = "600000"; /* streams resume after each heal: no purge */
	hosts_init(3);
	start_all();
	struct worker y = worker_start(1), z = worker_start(2);
	use_key("k");

	isolate(2);
	ck_assert_int_eq(worker_do(&y, "R k y1"), 0);
	struct owner_arg y1 = { "k", y.id, "y1" };
	ck_assert_msg(tc_wait_until(host_shows_arg, &(struct host_owner){ 0, &y1 }, CONVERGE_MS),
		      "A does not show y1");
	ck_assert_int_eq(worker_do(&z, "R k z1"), 0); /* C has not heard of y1 */

	isolate(1);
	kill(hosts[2].agent, SIGUSR2);
	struct owner_arg z1 = { "k", z.id, "z1" };
	ck_assert_msg(tc_wait_until(host_shows_arg, &(struct host_owner){ 0, &z1 }, CONVERGE_MS),
		      "A does not show z1");
	ck_assert_int_eq(worker_do(&y, "R k y2"), 0); /* B has not heard of z1 */

	kill(hosts[1].agent, SIGUSR2);
	struct owner_arg y2 = { "k", y.id, "y2" };
	ck_assert_msg(tc_wait_until(everyone_shows, &y2, CONVERGE_MS), "y2 is not shown everywhere");
	ck_assert_int_eq(worker_do(&z, "U k"), -ECONNABORTED); /* z lost on C */

	ck_assert_int_eq(worker_do(&y, "U k"), 0);
	for (int i = 0; i < n_hosts; i++)
		wait_lookup(i, "k", -ENOENT);
	expect_converged("after y's removal");
}
END_TEST

/* A claim hidden behind a local one is shown when the local one goes (the
 * agent reads the removal from its log and looks at that key).  With the
 * resolver of every agent (the shorter metadata wins), B's claim "a" beats
 * A's later "zz"; A's agent hears nothing from B for a while, so A keeps
 * its claim and B keeps it hidden.  B's endpoint unregisters: B shows A's
 * claim.  Once A hears B again it applies B's claim (A's endpoint loses and
 * is terminated) and its removal: the key ends free everywhere. */
START_TEST(test_hidden_claim_shown_after_local_unregister)
{
	static char resolver[4200];
	static const char *deaf_a[] = { resolver, "--fault-partition=h2",
					"--fault-partition-direction=receive", NULL };
	static const char *plain_b[] = { resolver, NULL };
	snprintf(resolver, sizeof(resolver), "--conflict-resolver=%s:fixture_resolve",
		 getenv("SHMG_TEST_RESOLVER"));
	down_after = "600000"; /* A never declares B down while deaf */
	hosts_init(2);
	fault_args = deaf_a;
	agent_start(0);
	fault_args = plain_b;
	agent_start(1);
	ck_assert(tc_wait_until(all_connected, NULL, CONVERGE_MS));
	struct worker a = worker_start(0), b = worker_start(1);
	use_key("k");

	kill(hosts[0].agent, SIGUSR1); /* A stops hearing B */
	expect_stat_above(0, "fault_partitioned_rx", 0); /* the signal has been acted on */
	ck_assert_int_eq(worker_do(&b, "R k a"), 0);
	ck_assert_int_eq(worker_do(&a, "R k zz"), 0); /* A has not heard of "a" */
	expect_stat_above(1, "store_conflicts_hidden", 0); /* B hides A's claim */
	struct owner_arg bs = { "k", b.id, "a" };
	ck_assert(host_shows(1, &bs));

	ck_assert_int_eq(worker_do(&b, "U k"), 0);
	struct owner_arg as = { "k", a.id, "zz" };
	ck_assert_msg(tc_wait_until(host_shows_arg, &(struct host_owner){ 1, &as }, CONVERGE_MS),
		      "B does not show A's claim after its own went");

	kill(hosts[0].agent, SIGUSR2);
	for (int i = 0; i < n_hosts; i++)
		wait_lookup(i, "k", -ENOENT);
	ck_assert_int_eq(worker_do(&a, "U k"), -ECONNABORTED); /* it lost to "a" */
	expect_converged("after the heal");
}
END_TEST

/* ---- an asymmetric partition ------------------------------------------ */

START_TEST(test_asymmetric_partition_converges)
{
	static const char *const one_way[] = { "--fault-partition-direction=send", NULL };
	fault_args = one_way;
	down_after = "1000";
	hosts_init(2);
	start_all();
	struct worker a = worker_start(0), b = worker_start(1);
	use_keys("a/", 20);
	use_keys("b/", 20);
	use_group("g/both");
	ck_assert_int_eq(worker_do(&a, "N a/ 10"), 0);
	ck_assert_int_eq(worker_do(&b, "N b/ 10"), 0);
	expect_converged("before the partition");

	kill(hosts[0].agent, SIGUSR1); /* B stops hearing A; A still hears B */
	int b_alone[HOSTS] = { -1, 0 };
	ck_assert_msg(tc_wait_until(nodes_are, b_alone, CONVERGE_MS), "B never declared A down");
	/* Writes on both sides while one direction is cut. */
	ck_assert_int_eq(worker_do(&a, "N a/ 20"), 0);
	ck_assert_int_eq(worker_do(&a, "D a/ 20 3"), 0);
	ck_assert_int_eq(worker_do(&a, "J g/both from-a"), 0);
	ck_assert_int_eq(worker_do(&b, "N b/ 20"), 0);
	ck_assert_int_eq(worker_do(&b, "D b/ 20 4"), 0);
	ck_assert_int_eq(worker_do(&b, "J g/both from-b"), 0);
	expect_stat_above(0, "fault_partitioned_tx", 0);
	ck_assert_int_le(stat_of(0, "fault_partitioned_rx"), 0); /* A heard everything */

	kill(hosts[0].agent, SIGUSR2);
	ck_assert_msg(tc_wait_until(all_connected, NULL, CONVERGE_MS), "the heal did not take");
	/* a/: 20 less every third (7); b/: 20 less every fourth (5). */
	struct count_arg all = { 13 + 15 };
	ck_assert_msg(tc_wait_until(counts_are, &all, CONVERGE_MS), "registry counts %ld and %ld",
		      shmg_registry_count(hosts[0].h, NULL), shmg_registry_count(hosts[1].h, NULL));
	expect_converged("after the asymmetric partition healed");
	ck_assert_int_eq(shmg_member_count(hosts[0].h, "g/both", 6, NULL), 2);
}
END_TEST

/* ---- five agents through a seeded schedule ------------------------------ */

#define CHAOS_HOSTS 5 /* SHMG_MULTIHOST_HOSTS: 2..5 */
#define CHAOS_WORKERS_PER_HOST 2
#define CHAOS_WORKERS (CHAOS_HOSTS * CHAOS_WORKERS_PER_HOST)
#define POOL 10  /* keys c/0..c/9: c/2h and c/2h+1 host h's, or everyone's */
#define GROUPS 2 /* groups g/0, g/1 */
#define META_MAX 16

struct chaos_worker {
	struct worker w;
	int host;
	bool killed;     /* SIGKILLed: its entries must go */
	bool terminated; /* lost a conflict: its entries must go */
	char reg[POOL][META_MAX];  /* its registration of c/k, "" if none */
	char join[GROUPS][META_MAX]; /* its membership of g/k, "" if none */
};

struct chaos {
	uint64_t rng;
	struct chaos_worker *w; /* every worker ever started */
	int n_w;
	int cur[CHAOS_WORKERS]; /* the current worker of each place */
	bool agent_down[CHAOS_HOSTS], partitioned[CHAOS_HOSTS];
	unsigned seq;
	int hosts, places; /* hosts, and workers at a time */
	bool contested;     /* every host writes every key; else each its own two */
	char why[256]; /* the last mismatch seen while settling */
};

static uint64_t chaos_rand(struct chaos *c)
{
	/* splitmix64 */
	uint64_t z = (c->rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static unsigned pick(struct chaos *c, unsigned n)
{
	return (unsigned)(chaos_rand(c) % n);
}

static uint64_t env_u64(const char *name, uint64_t otherwise)
{
	const char *v = getenv(name);
	return v && *v ? strtoull(v, NULL, 0) : otherwise;
}

static void chaos_worker_start(struct chaos *c, int place)
{
	struct chaos_worker *cw = &c->w[c->n_w];
	memset(cw, 0, sizeof(*cw));
	cw->host = place / CHAOS_WORKERS_PER_HOST;
	cw->w = worker_start(cw->host);
	c->cur[place] = c->n_w++;
}

/* A worker's command whose result must be one of the allowed ones. */
static int chaos_do(struct chaos_worker *cw, const char *cmd, const int *allowed, int n_allowed)
{
	int rc = worker_do(&cw->w, cmd);
	if (rc == -ECONNABORTED) {
		cw->terminated = true;
		return rc;
	}
	for (int i = 0; i < n_allowed; i++)
		if (rc == allowed[i])
			return rc;
	ck_abort_msg("worker on host %d: \"%s\" = %d (%s)", cw->host, cmd, rc, shmg_strerror(rc));
	return rc;
}

/* One write by a random worker. */
static void chaos_write(struct chaos *c)
{
	struct chaos_worker *cw = &c->w[c->cur[pick(c, (unsigned)c->places)]];
	unsigned op = pick(c, 10), k = pick(c, POOL), g = pick(c, GROUPS);
	char cmd[64], meta[META_MAX];
	snprintf(meta, sizeof(meta), "m%u", c->seq++);
	if (cw->terminated)
		return;
	if (!c->contested)
		k = (unsigned)cw->host * 2 + k % 2;
	if (op < 5) { /* register (or update) */
		static const int ok[] = { 0, -EEXIST };
		snprintf(cmd, sizeof(cmd), "R c/%u %s", k, meta);
		if (chaos_do(cw, cmd, ok, 2) == 0)
			snprintf(cw->reg[k], META_MAX, "%s", meta);
	} else if (op < 7) { /* unregister: only a claim it holds may go */
		static const int held[] = { 0 }, not_held[] = { -ENOENT, -EPERM };
		bool holds = cw->reg[k][0];
		snprintf(cmd, sizeof(cmd), "U c/%u", k);
		if (chaos_do(cw, cmd, holds ? held : not_held, holds ? 1 : 2) == 0)
			cw->reg[k][0] = '\0';
	} else if (op < 9) {
		static const int ok[] = { 0 };
		snprintf(cmd, sizeof(cmd), "J g/%u %s", g, meta);
		if (chaos_do(cw, cmd, ok, 1) == 0)
			snprintf(cw->join[g], META_MAX, "%s", meta);
	} else {
		static const int member[] = { 0 }, not_member[] = { -ENOENT };
		bool in = cw->join[g][0];
		snprintf(cmd, sizeof(cmd), "L g/%u", g);
		if (chaos_do(cw, cmd, in ? member : not_member, 1) == 0)
			cw->join[g][0] = '\0';
	}
}

static void chaos_step(struct chaos *c)
{
	unsigned what = pick(c, 100), host = pick(c, (unsigned)c->hosts);
	int place = (int)pick(c, (unsigned)c->places);
	struct host *ho = &hosts[host];

	if (what < 75) {
		chaos_write(c);
	} else if (what < 83) { /* partition a host off, or heal it */
		if (c->agent_down[host])
			return;
		c->partitioned[host] = !c->partitioned[host];
		kill(ho->agent, c->partitioned[host] ? SIGUSR1 : SIGUSR2);
	} else if (what < 91) { /* kill an agent (at most two down), or restart it */
		int down = 0;
		for (int i = 0; i < c->hosts; i++)
			down += c->agent_down[i];
		if (c->agent_down[host]) {
			agent_start((int)host);
			c->agent_down[host] = c->partitioned[host] = false;
		} else if (down < 2) {
			agent_kill((int)host);
			c->agent_down[host] = true;
		}
	} else { /* kill a worker and put a new one in its place */
		struct chaos_worker *cw = &c->w[c->cur[place]];
		kill(cw->w.pid, SIGKILL);
		waitpid(cw->w.pid, NULL, 0);
		cw->killed = true;
		chaos_worker_start(c, place);
	}
}

/* Whether the termination of each worker still running has been seen: a
 * terminated endpoint answers every write with -ECONNABORTED. */
static void chaos_probe(struct chaos *c)
{
	static const int not_held[] = { -ENOENT };
	for (int i = 0; i < c->n_w; i++)
		if (!c->w[i].killed && !c->w[i].terminated)
			chaos_do(&c->w[i], "U probe/none", not_held, 1);
}

static bool chaos_alive(const struct chaos_worker *cw)
{
	return !cw->killed && !cw->terminated;
}

static int cmp_member(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* The view (as view_of writes it) that the workers' own results imply: each
 * key held by the one live worker whose register of it last succeeded, each
 * group's live members.  false, with why, if two live workers hold a key
 * (a conflict not resolved yet, or a lost claim not terminated). */
static bool chaos_expected(struct chaos *c, char *out, size_t cap)
{
	size_t len = 0;
	for (int k = 0; k < POOL; k++) {
		const struct chaos_worker *holder = NULL;
		for (int i = 0; i < c->n_w; i++) {
			const struct chaos_worker *cw = &c->w[i];
			if (!chaos_alive(cw) || !cw->reg[k][0])
				continue;
			if (holder) {
				snprintf(c->why, sizeof(c->why),
					 "c/%d held by two live workers, n%u.%u.%u and n%u.%u.%u", k,
					 holder->w.id.node, holder->w.id.slot, holder->w.id.gen,
					 cw->w.id.node, cw->w.id.slot, cw->w.id.gen);
				return false;
			}
			holder = cw;
		}
		if (holder)
			len += (size_t)snprintf(out + len, cap - len, "c/%d=n%u.%u.%u:%s\n", k,
						holder->w.id.node, holder->w.id.slot,
						holder->w.id.gen, holder->reg[k]);
		else
			len += (size_t)snprintf(out + len, cap - len, "c/%d:%d\n", k, -ENOENT);
	}
	for (int g = 0; g < GROUPS; g++) {
		static char v[64][96];
		int n = 0;
		for (int i = 0; i < c->n_w; i++) {
			const struct chaos_worker *cw = &c->w[i];
			if (chaos_alive(cw) && cw->join[g][0])
				snprintf(v[n++], sizeof(v[0]), "n%u.%u.%u:%s", cw->w.id.node,
					 cw->w.id.slot, cw->w.id.gen, cw->join[g]);
		}
		qsort(v, (size_t)n, sizeof(v[0]), cmp_member);
		len += (size_t)snprintf(out + len, cap - len, "[g/%d]", g);
		for (int m = 0; m < n; m++)
			len += (size_t)snprintf(out + len, cap - len, " %s", v[m]);
		len += (size_t)snprintf(out + len, cap - len, "\n");
	}
	ck_assert_uint_lt(len, cap);
	return true;
}

static char expected[16384], actual[16384];

/* Every host's view is exactly the expected one. */
static bool chaos_settled(void *arg)
{
	struct chaos *c = arg;
	if (!views_equal(NULL)) {
		snprintf(c->why, sizeof(c->why), "the hosts' views differ");
		return false;
	}
	chaos_probe(c);
	if (!chaos_expected(c, expected, sizeof(expected)))
		return false;
	for (int i = 0; i < n_hosts; i++) {
		view_of(i, actual, sizeof(actual));
		if (strcmp(actual, expected) != 0) {
			snprintf(c->why, sizeof(c->why), "host %d's view is not the expected one", i);
			return false;
		}
	}
	return true;
}

static void chaos_run(const char *name, bool contested)
{
	uint64_t seed;
	if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
		seed = (uint64_t)time(NULL);
	seed = env_u64("SHMG_MULTIHOST_SEED", seed);
	unsigned steps = (unsigned)env_u64("SHMG_MULTIHOST_STEPS", 300);
	fprintf(stderr, "%s: seed %llu, %u steps (SHMG_MULTIHOST_SEED=%llu repeats the schedule)\n",
		name, (unsigned long long)seed, steps, (unsigned long long)seed);
	contested = contested || getenv("SHMG_MULTIHOST_CONTESTED") != NULL;
	if (!contested)
		fprintf(stderr, "%s: each host's workers write keys of their own "
				"(SHMG_MULTIHOST_CONTESTED=1: all write the same keys)\n",
			name);

	static char seed_arg[64];
	snprintf(seed_arg, sizeof(seed_arg), "--fault-seed=%llu", (unsigned long long)seed | 1);
	static const char *args[] = { "--fault-loss=10", "--fault-duplicate=5",
				      "--fault-reorder=5", seed_arg, NULL };
	fault_args = args;
	down_after = "2000";
	struct chaos *c = calloc(1, sizeof(*c));
	ck_assert_ptr_nonnull(c);
	c->hosts = (int)env_u64("SHMG_MULTIHOST_HOSTS", CHAOS_HOSTS);
	ck_assert(c->hosts >= 2 && c->hosts <= CHAOS_HOSTS);
	c->places = c->hosts * CHAOS_WORKERS_PER_HOST;
	c->contested = contested;
	hosts_init(c->hosts);
	bool netns = hosts_in_netns(name); /* as root; 127.0.0.1 otherwise */
	start_all();
	c->rng = seed;
	c->w = calloc(CHAOS_WORKERS + steps, sizeof(*c->w));
	ck_assert_ptr_nonnull(c->w);
	use_keys("c/", POOL);
	use_group("g/0");
	use_group("g/1");
	for (int p = 0; p < c->places; p++)
		chaos_worker_start(c, p);

	for (unsigned s = 0; s < steps; s++)
		chaos_step(c);

	/* Heal: every agent up and no partition. */
	for (int i = 0; i < c->hosts; i++) {
		if (c->agent_down[i])
			agent_start(i);
		else if (c->partitioned[i])
			kill(hosts[i].agent, SIGUSR2);
	}
	ck_assert_msg(tc_wait_until(all_connected, NULL, CONVERGE_MS),
		      "seed %llu: the agents did not all connect again", (unsigned long long)seed);
	if (!tc_wait_until(chaos_settled, c, CONVERGE_MS)) {
		chaos_expected(c, expected, sizeof(expected));
		for (int i = 0; i < c->n_w; i++)
			fprintf(stderr, "worker n%u.%u.%u on host %d:%s%s\n", c->w[i].w.id.node,
				c->w[i].w.id.slot, c->w[i].w.id.gen, c->w[i].host,
				c->w[i].killed ? " killed" : "",
				c->w[i].terminated ? " lost a conflict" : "");
		fprintf(stderr, "--- expected:\n%s", expected);
		for (int i = 0; i < n_hosts; i++) {
			view_of(i, actual, sizeof(actual));
			fprintf(stderr, "--- host %d:\n%s", i, actual);
		}
		ck_abort_msg("seed %llu: not settled: %s", (unsigned long long)seed, c->why);
	}
	int terminated = 0, killed = 0;
	for (int i = 0; i < c->n_w; i++) {
		terminated += c->w[i].terminated;
		killed += c->w[i].killed;
	}
	fprintf(stderr, "%s: seed %llu settled (%s): %d workers, %d killed, %d lost a conflict\n",
		name, (unsigned long long)seed, netns ? "a namespace per host" : "127.0.0.1", c->n_w,
		killed, terminated);
	for (int i = 0; i < c->n_w; i++)
		if (!c->w[i].killed) {
			kill(c->w[i].w.pid, SIGKILL);
			waitpid(c->w[i].w.pid, NULL, 0);
		}
	free(c->w);
	free(c);
}

START_TEST(test_five_agents_seeded_schedule)
{
	chaos_run("test_five_agents_seeded_schedule", false);
}
END_TEST

START_TEST(test_five_agents_contested_keys)
{
	chaos_run("test_five_agents_contested_keys", true);
}
END_TEST

/* ---- leases ------------------------------------------------------------- */

/* The stats of host 0's named cluster `name`; false if not connected. */
static bool cluster_stats_of(const char *name, struct shmg_cluster_stats *out)
{
	for (uint32_t slot = 1;; slot++) {
		int rc = shmg_cluster_stats(hosts[0].h, slot, out, sizeof(*out));
		if (rc == -ENOENT)
			continue;
		if (rc < 0)
			return false;
		if (strcmp(out->name, name) == 0)
			return true;
	}
}

static bool disconnected(void *arg)
{
	return shmg_connected(hosts[0].h, arg) == 0;
}

static bool kept_for_registration(void *arg)
{
	struct shmg_cluster_stats st;
	return cluster_stats_of(arg, &st) && (st.lease_kept & SHMG_LEASE_KEPT_REGISTRATIONS);
}

START_TEST(test_lease_expiry_with_agent)
{
	hosts_init(2);
	start_all();
	struct shmg_connect_opts lease = { .ttl_ms = 200 };
	shmg_t *h = hosts[0].h;

	/* Nothing of this host's in it: the agent's reaper disconnects it. */
	ck_assert_int_eq(shmg_connect(h, "lease/idle", &lease), 0);
	ck_assert_int_eq(shmg_connected(h, "lease/idle"), 1);
	ck_assert_msg(tc_wait_until(disconnected, "lease/idle", CONVERGE_MS),
		      "the idle cluster's lease never expired");

	/* A registration of this host's in it: the lease comes due and is kept. */
	ck_assert_int_eq(shmg_connect(h, "lease/used", &lease), 0);
	shmg_t *owner = tc_open(hosts[0].arena, NULL);
	struct shmg_opts in_cluster = { .cluster = "lease/used" };
	ck_assert_int_eq(shmg_register(owner, "k", 1, "m", 1, &in_cluster), 0);
	ck_assert_msg(tc_wait_until(kept_for_registration, "lease/used", CONVERGE_MS),
		      "the lease was never kept for the registration");
	ck_assert_int_eq(shmg_connected(h, "lease/used"), 1);
	/* Its registration gone, the next due lease is not kept. */
	ck_assert_int_eq(shmg_unregister(owner, "k", 1, &in_cluster), 0);
	ck_assert_msg(tc_wait_until(disconnected, "lease/used", CONVERGE_MS),
		      "the lease was kept after the registration went");
	shmg_close(owner);
}
END_TEST

int main(int argc, char **argv)
{
	if (!agents_args(argc, argv))
		return 2;
	Suite *s = suite_create("multihost");
	TCase *tc = agents_tcase("agents");
	tcase_add_test(tc, test_heal_conflict_later_wins);
	tcase_add_test(tc, test_heal_conflict_user_resolver);
	tcase_add_test(tc, test_refused_claim_replaced_in_one_batch);
	tcase_add_test(tc, test_superseded_hidden_claim_not_promoted);
	tcase_add_test(tc, test_hidden_claim_shown_after_local_unregister);
	tcase_add_test(tc, test_asymmetric_partition_converges);
	tcase_add_test(tc, test_five_agents_seeded_schedule);
	tcase_add_test(tc, test_five_agents_contested_keys);
	tcase_add_test(tc, test_lease_expiry_with_agent);
	suite_add_tcase(s, tc);
	return tc_run(s);
}
