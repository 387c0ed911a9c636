/* SPDX-License-Identifier: MIT */
/* Hosts with real agents, and workers writing to them: see tc_agents.h. */
#include "tc_agents.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stats_file.h"

#define VIEW_MAX (256 * 1024)

const char *agent_path;


struct host hosts[HOSTS];
int n_hosts;
static char wire_group[64];
static char hub_netns[64]; /* the bridge's namespace (hosts_in_netns), or "" */
static char key_path[64];
const char *const *fault_args;    /* extra agent arguments */
const char *down_after = "10000"; /* long: a loaded machine must not fake a failure */
int unlisted = -1;                /* a host that host 0 is not told about at start */
const char *host1_name;           /* host 1's name when not "h2" */
uint32_t host1_shards;            /* host 1's arena shard count, 0 = the default */
uint32_t oplog_bytes;             /* the arenas' change logs; 0 = default */

/* ---- agents ----------------------------------------------------------- */

int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

void kill_agents(void)
{
	for (int i = 0; i < n_hosts; i++)
		if (hosts[i].agent > 0) {
			kill(hosts[i].agent, SIGKILL);
			waitpid(hosts[i].agent, NULL, 0);
			hosts[i].agent = 0;
		}
}

bool run_quiet(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	fflush(NULL);
	int st = system(cmd);
	return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void cleanup(void)
{
	kill_agents();
	for (int i = 0; i < n_hosts; i++) {
		unlink(hosts[i].stats);
		unlink(hosts[i].log);
		if (hosts[i].netns[0]) /* its end of the veth pair goes with it */
			run_quiet("ip netns del %s 2>/dev/null", hosts[i].netns);
		hosts[i].netns[0] = '\0';
	}
	if (hub_netns[0]) /* the bridge and the hosts' veth peers go with it */
		run_quiet("ip netns del %s 2>/dev/null", hub_netns);
	hub_netns[0] = '\0';
	if (key_path[0])
		unlink(key_path);
}

/* Back to 127.0.0.1 after a failed hosts_in_netns; returns false. */
static bool netns_undo(void)
{
	for (int i = 0; i < n_hosts; i++) {
		if (hosts[i].netns[0])
			run_quiet("ip netns del %s 2>/dev/null", hosts[i].netns);
		hosts[i].netns[0] = '\0';
		hosts[i].addr = NULL;
	}
	if (hub_netns[0])
		run_quiet("ip netns del %s 2>/dev/null", hub_netns);
	hub_netns[0] = '\0';
	return false;
}

/* Makes network namespace name; false, with why, if it cannot. */
static bool netns_add(const char *test, char *name, size_t cap, const char *fmt, int a, int b)
{
	snprintf(name, cap, fmt, a, b);
	if (run_quiet("ip netns add %s 2>/dev/null", name))
		return true;
	name[0] = '\0';
	fprintf(stderr, "%s: skipped: network namespaces unavailable (ip netns add failed)\n",
		test);
	return false;
}

/* Removes the namespaces of test processes that are gone: a failed check
 * ends its test with _exit, past agents_teardown and the atexit cleanup. */
static void sweep_stale_netns(void)
{
	char line[256];
	FILE *f = popen("ip netns list 2>/dev/null", "r");
	while (f && fgets(line, sizeof(line), f)) {
		int pid;
		char name[128];
		if (sscanf(line, "%127s", name) != 1 || sscanf(name, "trepl-%d-", &pid) != 1 ||
		    pid <= 0 || kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		run_quiet("ip netns del %s 2>/dev/null", name);
	}
	if (f)
		pclose(f);
}

bool hosts_in_netns(const char *test)
{
	int pid = (int)getpid();
	static char addrs[HOSTS][32];

	if (geteuid() != 0) {
		fprintf(stderr, "%s: skipped: needs root\n", test);
		return false;
	}
	if (!run_quiet("ip -V >/dev/null 2>&1")) {
		fprintf(stderr, "%s: skipped: no ip (iproute2)\n", test);
		return false;
	}
	sweep_stale_netns();
	if (!netns_add(test, hub_netns, sizeof(hub_netns), "trepl-%d-hub%d", pid, 0))
		return false;
	bool ok = run_quiet("ip -n %s link add tbr type bridge", hub_netns) &&
		  run_quiet("ip -n %s link set tbr up", hub_netns);
	for (int i = 0; i < n_hosts && ok; i++) {
		char veth[16], peer[16];
		if (!netns_add(test, hosts[i].netns, sizeof(hosts[i].netns), "trepl-%d-%d", pid, i))
			return netns_undo();
		snprintf(veth, sizeof(veth), "tr%d%c", pid % 1000000, 'a' + i);
		snprintf(peer, sizeof(peer), "tr%d%cb", pid % 1000000, 'a' + i);
		snprintf(addrs[i], sizeof(addrs[i]), "10.201.%d.%d", pid % 250, i + 1);
		hosts[i].addr = addrs[i];
		ok = run_quiet("ip link add %s netns %s type veth peer name %s netns %s", veth,
			       hosts[i].netns, peer, hub_netns) &&
		     run_quiet("ip -n %s link set %s master tbr", hub_netns, peer) &&
		     run_quiet("ip -n %s link set %s up", hub_netns, peer) &&
		     run_quiet("ip -n %s addr add %s/24 dev %s", hosts[i].netns, addrs[i], veth) &&
		     run_quiet("ip -n %s link set %s up", hosts[i].netns, veth) &&
		     run_quiet("ip -n %s link set lo up", hosts[i].netns);
	}
	if (!ok)
		fprintf(stderr, "%s: skipped: cannot join the namespaces by a bridge\n", test);
	return ok || netns_undo();
}

void hosts_init(int n)
{
	uint8_t key[32];

	atexit(cleanup);
	n_hosts = n;
	snprintf(wire_group, sizeof(wire_group), "trepl-%d", (int)getpid());
	snprintf(key_path, sizeof(key_path), "/tmp/trepl-%d.key", (int)getpid());
	ck_assert_int_eq(getrandom(key, sizeof(key), 0), (ssize_t)sizeof(key));
	int fd = open(key_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(tc_write_full(fd, key, sizeof(key)), 0);
	close(fd);
	for (int i = 0; i < n; i++) {
		struct host *ho = &hosts[i];
		memset(ho, 0, sizeof(*ho));
		ho->arena = tc_new_name();
		ho->port = free_port();
		snprintf(ho->stats, sizeof(ho->stats), "/tmp/trepl-%d-%d.stats", (int)getpid(), i);
		snprintf(ho->log, sizeof(ho->log), "/tmp/trepl-%d-%d.log", (int)getpid(), i);
		/* Left by a killed run whose pid this process has now: its
		 * sanitizer reports and counters are not this test's. */
		unlink(ho->log);
		unlink(ho->stats);
		struct shmg_config cfg = { .node_id = (uint32_t)i + 1, .oplog_bytes = oplog_bytes,
					   .shards = i == 1 ? host1_shards : 0 };
		ho->h = tc_open(ho->arena, &cfg);
	}
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++)
			hosts[i].peer_port_of[j] = hosts[j].port;
}

static const char *addr_of(int i)
{
	return hosts[i].addr ? hosts[i].addr : "127.0.0.1";
}

/* In a forked child of host i: into the host's network namespace, if any. */
static void enter_netns(int i)
{
	char path[96];
	if (!hosts[i].netns[0])
		return;
	snprintf(path, sizeof(path), "/var/run/netns/%s", hosts[i].netns);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, CLONE_NEWNET) < 0)
		_exit(126);
	close(fd);
}

/* Starts host i's agent with argv, its stderr on errfd. */
pid_t spawn(int i, const char *const *argv, int errfd)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		enter_netns(i);
		dup2(errfd, STDERR_FILENO);
		execv(agent_path, (char *const *)argv);
		_exit(127);
	}
	close(errfd);
	return pid;
}

void agent_start(int i)
{
	char args[48][160];
	const char *argv[64];
	int n = 0, p[2];

#define ARG(...) snprintf(args[n], sizeof(args[n]), __VA_ARGS__), argv[n] = args[n], n++
	ARG("shmgroupd");
	ARG("--group=%s", hosts[i].arena);
	if (i == 1 && host1_name)
		ARG("--node-name=%s", host1_name);
	else
		ARG("--node-name=h%d", i + 1);
	ARG("--listen=%s:%d", addr_of(i), hosts[i].port);
	ARG("--replication-group=%s", wire_group);
	ARG("--key-file=%s", key_path);
	ARG("--stats-file=%s", hosts[i].stats);
	ARG("--stats-interval=50");
	ARG("--heartbeat-interval=100");
	ARG("--busy-retry-interval=200");
	ARG("--down-after=%s", down_after);
	for (int j = 0; j < n_hosts; j++)
		if (j != i && !(i == 0 && j == unlisted))
			ARG("--peer=%d h%d %s:%d", j + 1, j + 1, addr_of(j),
			    hosts[i].peer_port_of[j]);
	ck_assert_int_eq(pipe(p), 0);
	ARG("--ready-fd=%d", p[1]);
#undef ARG
	for (int k = 0; fault_args && fault_args[k]; k++)
		argv[n++] = fault_args[k];
	argv[n] = NULL;

	int logfd = open(hosts[i].log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	ck_assert_int_ge(logfd, 0);
	pid_t pid = spawn(i, argv, logfd);
	close(p[1]);
	char b;
	ck_assert_msg(tc_read_full(p[0], &b, 1, READY_MS) == 0, "agent %d not ready", i);
	close(p[0]);
	hosts[i].agent = pid;
}

void agent_kill(int i)
{
	kill(hosts[i].agent, SIGKILL);
	waitpid(hosts[i].agent, NULL, 0);
	hosts[i].agent = 0;
}

bool all_connected(void *arg)
{
	(void)arg;
	for (int i = 0; i < n_hosts; i++)
		if (shmg_nodes(hosts[i].h, NULL, NULL, 0) != n_hosts - 1)
			return false;
	return true;
}

void start_all(void)
{
	for (int i = 0; i < n_hosts; i++)
		agent_start(i);
	ck_assert_msg(tc_wait_until(all_connected, NULL, CONVERGE_MS), "agents did not connect");
}

long long stat_of(int i, const char *name)
{
	return stats_file_get(hosts[i].stats, name);
}

struct stat_arg {
	int host;
	const char *name;
	long long above;
};

static bool stat_above(void *arg)
{
	const struct stat_arg *a = arg;
	return stat_of(a->host, a->name) > a->above;
}

void expect_stat_above(int i, const char *name, long long v)
{
	struct stat_arg a = { i, name, v };
	ck_assert_msg(tc_wait_until(stat_above, &a, CONVERGE_MS), "host %d: %s stays %lld", i, name,
		      stat_of(i, name));
}

/* ---- workers ---------------------------------------------------------- */

static int do_command(shmg_t *h, char *line)
{
	char op = line[0], *save = NULL;
	char *a = strtok_r(line + 1, " \n", &save), *b = strtok_r(NULL, " \n", &save);
	char *c = strtok_r(NULL, " \n", &save);
	char key[128];
	int rc = 0;

	switch (op) {
	case 'R':
		return shmg_register(h, a, strlen(a), b, b ? strlen(b) : 0, NULL);
	case 'U':
		return shmg_unregister(h, a, strlen(a), NULL);
	case 'J':
		return shmg_join(h, a, strlen(a), b, b ? strlen(b) : 0, NULL);
	case 'L':
		return shmg_leave(h, a, strlen(a), NULL);
	case 'X': /* X cluster key meta */
		return shmg_register(h, b, strlen(b), c, c ? strlen(c) : 0,
				     &(struct shmg_opts){ .cluster = a });
	case 'Y': /* Y cluster key */
		return shmg_unregister(h, b, strlen(b), &(struct shmg_opts){ .cluster = a });
	case 'N':
		for (int k = 0; k < atoi(b) && rc == 0; k++) {
			snprintf(key, sizeof(key), "%s%d", a, k);
			rc = shmg_register(h, key, strlen(key), "v", 1, NULL);
		}
		return rc;
	case 'D':
		for (int k = 0; k < atoi(b) && rc == 0; k += atoi(c)) {
			snprintf(key, sizeof(key), "%s%d", a, k);
			rc = shmg_unregister(h, key, strlen(key), NULL);
		}
		return rc;
	case 'S':
		return (int)shmg_dispatch(h, a, strlen(a), b, b ? strlen(b) : 0, NULL);
	case 'T':
		return (int)shmg_dispatch_local(h, a, strlen(a), b, b ? strlen(b) : 0, NULL);
	case 'M':
		for (int k = 0; k < atoi(b) && rc >= 0; k++) {
			snprintf(key, sizeof(key), "%s%d", c, k);
			rc = (int)shmg_dispatch(h, a, strlen(a), key, strlen(key), NULL);
		}
		return rc;
	}
	return -EINVAL;
}

static void worker_main(int host, int cmd, int res)
{
	shmg_t *h;
	char line[256];
	if (shmg_open(hosts[host].arena, NULL, &h) < 0)
		_exit(1);
	shmg_id_t id = shmg_self(h);
	if (tc_write_full(res, &id, sizeof(id)) < 0)
		_exit(1);
	FILE *in = fdopen(cmd, "r");
	while (in && fgets(line, sizeof(line), in)) {
		int rc = do_command(h, line);
		if (tc_write_full(res, &rc, sizeof(rc)) < 0)
			_exit(1);
	}
	_exit(0);
}

struct worker worker_start(int host)
{
	int c[2], r[2];
	struct worker w;
	ck_assert_int_eq(pipe(c), 0);
	ck_assert_int_eq(pipe(r), 0);
	w.pid = fork();
	ck_assert_int_ge(w.pid, 0);
	if (w.pid == 0) {
		close(c[1]);
		close(r[0]);
		enter_netns(host); /* its wakeups reach the agent's socket there */
		worker_main(host, c[0], r[1]);
	}
	close(c[0]);
	close(r[1]);
	w.cmd = c[1];
	w.res = r[0];
	ck_assert_int_eq(tc_read_full(w.res, &w.id, sizeof(w.id), READY_MS), 0);
	return w;
}

int worker_do(struct worker *w, const char *line)
{
	int rc;
	ck_assert_int_eq(tc_write_full(w->cmd, line, strlen(line)), 0);
	ck_assert_int_eq(tc_write_full(w->cmd, "\n", 1), 0);
	ck_assert_int_eq(tc_read_full(w->res, &rc, sizeof(rc), CONVERGE_MS), 0);
	return rc;
}

/* ---- views ------------------------------------------------------------ */

static char used_keys[1024][32];
static int n_used_keys;
static char used_groups[8][32];
static int n_used_groups;

void use_key(const char *k)
{
	for (int i = 0; i < n_used_keys; i++)
		if (strcmp(used_keys[i], k) == 0)
			return;
	ck_assert_int_lt(n_used_keys, 1024);
	snprintf(used_keys[n_used_keys++], sizeof(used_keys[0]), "%s", k);
}

void use_keys(const char *prefix, int count)
{
	char k[32];
	for (int i = 0; i < count; i++) {
		snprintf(k, sizeof(k), "%s%d", prefix, i);
		use_key(k);
	}
}

void use_group(const char *g)
{
	snprintf(used_groups[n_used_groups++], sizeof(used_groups[0]), "%s", g);
}


int collect_member(const struct shmg_entry *e, void *arg)
{
	struct strs *s = arg;
	if (s->n < s->cap)
		snprintf(s->v[s->n++], sizeof(s->v[0]), "n%u.%u.%u:%.*s", e->id.node, e->id.slot,
			 e->id.gen, (int)e->meta_len, (const char *)e->meta);
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(a, b);
}

void view_of(int i, char *out, size_t cap)
{
	size_t len = 0;
	out[0] = '\0';
	for (int k = 0; k < n_used_keys; k++) {
		shmg_id_t id;
		char meta[64];
		size_t ml = 0;
		int rc = shmg_lookup(hosts[i].h, used_keys[k], strlen(used_keys[k]), &id, meta,
				     sizeof(meta), &ml, NULL);
		if (rc == 0)
			len += (size_t)snprintf(out + len, cap - len, "%s=n%u.%u.%u:%.*s\n",
						used_keys[k], id.node, id.slot, id.gen, (int)ml,
						meta);
		else
			len += (size_t)snprintf(out + len, cap - len, "%s:%d\n", used_keys[k], rc);
		ck_assert_uint_lt(len, cap);
	}
	static char v[4096][96];
	for (int g = 0; g < n_used_groups; g++) {
		struct strs s = { v, 0, 4096 };
		shmg_members(hosts[i].h, used_groups[g], strlen(used_groups[g]), collect_member, &s,
			     NULL);
		qsort(v, (size_t)s.n, sizeof(v[0]), cmp_str);
		len += (size_t)snprintf(out + len, cap - len, "[%s]", used_groups[g]);
		for (int m = 0; m < s.n; m++)
			len += (size_t)snprintf(out + len, cap - len, " %s", v[m]);
		len += (size_t)snprintf(out + len, cap - len, "\n");
		ck_assert_uint_lt(len, cap);
	}
}

static char view_a[VIEW_MAX], view_b[VIEW_MAX];

bool views_equal(void *arg)
{
	(void)arg;
	view_of(0, view_a, sizeof(view_a));
	for (int i = 1; i < n_hosts; i++) {
		view_of(i, view_b, sizeof(view_b));
		if (strcmp(view_a, view_b) != 0)
			return false;
	}
	return true;
}

void expect_converged(const char *what)
{
	if (tc_wait_until(views_equal, NULL, CONVERGE_MS))
		return;
	for (int i = 0; i < n_hosts; i++) {
		view_of(i, view_a, sizeof(view_a));
		fprintf(stderr, "--- host %d view:\n%.2000s\n", i, view_a);
	}
	ck_abort_msg("views did not converge: %s", what);
}

struct lookup_arg {
	int host;
	const char *key;
	int want; /* 0 found, -ENOENT gone */
};

static bool lookup_is(void *arg)
{
	struct lookup_arg *l = arg;
	shmg_id_t id;
	return shmg_lookup(hosts[l->host].h, l->key, strlen(l->key), &id, NULL, 0, NULL, NULL) ==
	       l->want;
}

void wait_lookup(int host, const char *key, int want)
{
	struct lookup_arg l = { host, key, want };
	ck_assert_msg(tc_wait_until(lookup_is, &l, CONVERGE_MS), "host %d: lookup %s never %d",
		      host, key, want);
}

void agents_setup(void)
{
	tc_setup();
	n_used_keys = n_used_groups = 0;
	fault_args = NULL;
	down_after = "10000";
	unlisted = -1;
	host1_name = NULL;
	host1_shards = 0;
	oplog_bytes = 0;
}

void host_log(int i, char *buf, size_t size)
{
	int fd = open(hosts[i].log, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, size - 1) : -1;
	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = '\0';
}

/* A sanitizer build's agents report there: a report fails the test. */
static void expect_clean_logs(void)
{
	char buf[65536];
	for (int i = 0; i < n_hosts; i++) {
		host_log(i, buf, sizeof(buf));
		bool clean = !strstr(buf, "runtime error") && !strstr(buf, "Sanitizer");
		if (!clean)
			fprintf(stderr, "--- agent %d's log:\n%s\n", i, buf);
		ck_assert_msg(clean, "agent %d reported a sanitizer error (its log is above)", i);
	}
}

void agents_teardown(void)
{
	kill_agents();
	expect_clean_logs();
	cleanup();
	for (int i = 0; i < n_hosts; i++)
		if (hosts[i].h)
			shmg_close(hosts[i].h);
	n_hosts = 0;
	tc_teardown();
}

bool agents_args(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s PATH-TO-SHMGROUPD\n", argv[0]);
		return false;
	}
	agent_path = argv[1];
	return true;
}

TCase *agents_tcase(const char *name)
{
	TCase *tc = tcase_create(name);
	tcase_add_checked_fixture(tc, agents_setup, agents_teardown);
	tcase_set_timeout(tc, 150);
	return tc;
}

void recv_one(shmg_t *h, struct tc_ev *e)
{
	ck_assert_int_eq(tc_ev_recv_n(h, e, 1, CONVERGE_MS), 1);
}

void step(struct worker *w, const char *cmd, shmg_t *mon, struct tc_ev *e)
{
	ck_assert_int_eq(worker_do(w, cmd), 0);
	recv_one(mon, e);
}


bool counts_are(void *arg)
{
	const struct count_arg *c = arg;
	for (int i = 0; i < n_hosts; i++)
		if (shmg_registry_count(hosts[i].h, NULL) != c->want)
			return false;
	return true;
}

bool nodes_are(void *arg)
{
	const int *want = arg;
	for (int i = 0; i < n_hosts; i++)
		if (want[i] >= 0 && shmg_nodes(hosts[i].h, NULL, NULL, 0) != want[i])
			return false;
	return true;
}
