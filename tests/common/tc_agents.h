/* SPDX-License-Identifier: MIT */
/*
 * Hosts with real agents, for the tests of replication between hosts
 * (test_replication, test_multihost): shmgroupd (agent_path, the test's
 * argv[1]) run once per "host", each host an arena of its own with its own
 * node number, the agents talking UDP on 127.0.0.1 ports (or across a
 * bridge, a host's agent and workers in a network namespace of its own)
 * under one cluster key and one group name on the wire.  Workers are forked
 * processes that open a host's arena and write on command (a pipe); the test
 * process reads every host's arena through hosts[i].h.
 *
 * The settings below (fault_args ... oplog_bytes) are read by hosts_init and
 * agent_start; agents_setup, the checked fixture, resets them, and
 * agents_teardown kills the agents, fails the test on a sanitizer report in
 * their logs, and removes every file and arena the test made.
 *
 * Waits are bounded polls for the awaited state (never a sleep); the bounds
 * only turn a hang into a failure.
 */
#ifndef SHMG_TC_AGENTS_H
#define SHMG_TC_AGENTS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "shmgroup.h"
#include "tc.h"
#include "tc_events.h"

#define HOSTS 5 /* the most hosts a test runs */
#define CONVERGE_MS 60000
#define READY_MS 10000

struct host {
	const char *arena;
	int port;                /* the agent's */
	int peer_port_of[HOSTS]; /* where this agent sends to host j (a relay, or j's port) */
	pid_t agent;
	char stats[128];
	char log[128];
	const char *addr; /* the agent's IPv4 address; NULL = 127.0.0.1 */
	char netns[64];   /* a network namespace the agent and workers run in, or "" */
	shmg_t *h;        /* the test process's handle */
};

/* A process of host `host` writing on command: lines "R key meta",
 * "U key", "J key meta", "L key", "N prefix count" (registers
 * prefix0..prefixN-1), "D prefix count step" (unregisters every step-th),
 * "S key msg" (shmg_dispatch), "T key msg" (shmg_dispatch_local), "M key
 * count prefix" (dispatches prefix0..prefixN-1, answering the first error
 * or the last count); each answered with the int result. */
struct worker {
	pid_t pid;
	int cmd, res;
	shmg_id_t id;
};

struct strs {
	char (*v)[96];
	int n, cap;
};

/* Every host's registry count is want. */
struct count_arg {
	long want;
};

extern const char *agent_path;
extern struct host hosts[HOSTS];
extern int n_hosts;
extern const char *const *fault_args; /* extra agent arguments, NULL-terminated */
extern const char *down_after;        /* 10000 ms: a loaded machine must not fake a failure */
extern int unlisted;                  /* a host that host 0 is not told about at start */
extern const char *host1_name;        /* host 1's name when not "h2" */
extern uint32_t host1_shards;         /* host 1's arena shard count, 0 = the default */
extern uint32_t oplog_bytes;          /* the arenas' change logs; 0 = default */

void agents_setup(void);
void agents_teardown(void);
/* The agent's path from argv[1] into agent_path; false, with the usage on
 * stderr, without one. */
bool agents_args(int argc, char **argv);
/* The start of host i's agent log (its stderr), NUL-terminated in buf. */
void host_log(int i, char *buf, size_t size);
/* A test case `name` with the agents' fixture (agents_setup, agents_teardown)
 * and their timeout. */
TCase *agents_tcase(const char *name);

/* ---- agents ----------------------------------------------------------- */

/* A UDP port of 127.0.0.1 free a moment ago. */
int free_port(void);
/* Runs a shell command line; true if it exited 0. */
bool run_quiet(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* n hosts with fresh arenas (node i + 1) and ports, and a fresh cluster key. */
void hosts_init(int n);
/* Forks host i's agent (in its network namespace) with argv, stderr on errfd. */
pid_t spawn(int i, const char *const *argv, int errfd);
/* Starts host i's agent with every other host as a peer; returns once it is ready. */
void agent_start(int i);
void agent_kill(int i);
void kill_agents(void);
/* Every host's agent has every other as a peer (shmg_nodes). */
bool all_connected(void *arg);
void start_all(void);
/* After hosts_init, before any agent starts: each host's agent and workers
 * in a network namespace of its own, all joined by a bridge in another
 * (10.201.x.1, .2, ... /24); agents_teardown removes them, and the next
 * call those a failed test (ended by _exit) left behind.  false, with why
 * on stderr (naming test), when that cannot be done here (not root, no
 * iproute2, namespaces unavailable): the hosts are left on 127.0.0.1. */
bool hosts_in_netns(const char *test);
/* want[i] (or any, for -1) is host i's count of peers. */
bool nodes_are(void *arg);
/* A counter of host i's stats file, -1 if not there (yet). */
long long stat_of(int i, const char *name);
/* Waits for host i's counter to pass v (the stats file is rewritten every
 * stats interval, so a count lags what happened by up to that). */
void expect_stat_above(int i, const char *name, long long v);

/* ---- workers ---------------------------------------------------------- */

struct worker worker_start(int host);
/* Sends a command line to w and returns its result. */
int worker_do(struct worker *w, const char *line);
/* A worker's command, and the one event it causes at the monitor. */
void step(struct worker *w, const char *cmd, shmg_t *mon, struct tc_ev *e);
void recv_one(shmg_t *h, struct tc_ev *e);

/* ---- views ------------------------------------------------------------ */

/* The keys (up to 1024) and groups (up to 8) a test used, whose state is
 * compared. */
void use_key(const char *k);
void use_keys(const char *prefix, int count);
void use_group(const char *g);
/* An entry as "n<node>.<slot>.<gen>:<meta>" into a struct strs (arg). */
int collect_member(const struct shmg_entry *e, void *arg);
/* Host i's view of every used key and group, as text. */
void view_of(int i, char *out, size_t cap);
bool views_equal(void *arg);
/* Waits for every host's view to be the same; prints them and fails if not. */
void expect_converged(const char *what);
/* Waits for host's lookup of key to return want (0 found, -ENOENT gone). */
void wait_lookup(int host, const char *key, int want);
bool counts_are(void *arg);

#endif
