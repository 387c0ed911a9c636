/* SPDX-License-Identifier: MIT */
/*
 * writes: write throughput and latency of shmgroup.
 *
 * For each process count in --procs, two phases: register+unregister pairs,
 * then join+leave pairs.  Each process opens its own handle and works on its
 * own keys (so processes contend only on shard locks, never on a key): pair n
 * inserts key n and removes key n - window, so `window` of its entries stay
 * live and the arena keeps changing.  The arena holds --preload registrations
 * (made by the parent) so the index is not empty.  Each pair is timed alone
 * with the timer overhead subtracted.  Throughput is pairs per second per
 * process and in all.
 */
#include "common.h"
#include "hist.h"

#include <errno.h>
#include <getopt.h>
#include <shmgroup.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PROCS 64
#define MAX_ROWS 32

static struct {
	uint64_t procs[8];
	int nprocs;
	double seconds;
	uint64_t preload;
	uint64_t key_len;
	uint64_t meta_len;
	uint64_t window;
	uint64_t arena_size;
	const char *timer;
	const char *json;
	int pin;
	int quick;
} opt = {
	.seconds = 3,
	.preload = 100000,
	.key_len = 22,
	.meta_len = 8,
	.window = 1024,
};

struct proc_result {
	struct hist h;
	uint64_t pairs, errors, elapsed_ns;
	char msg[128];
};

struct run_shared {
	_Atomic int ready, failed, go;
	uint64_t start_tick, end_tick;
	struct proc_result r[];
};

struct row {
	const char *op;
	int procs;
	struct hist h;
	double pairs_proc, pairs_total;
	uint64_t errors;
	char note[160];
};

static struct timer_info g_timer;
static char g_group[64];
static struct keyset g_ks;
static struct row g_rows[MAX_ROWS];
static int g_nrows;

static void usage(FILE *f)
{
	fprintf(f, "usage: writes [options]\n"
		   "  --procs LIST     process counts to run, e.g. 1,2 [1,2]\n"
		   "  --seconds S      per phase and process count [3]\n"
		   "  --preload N      registrations already in the arena [100000]\n"
		   "  --key-len L      [22]   --meta-len M [8]   --window W live keys per process [1024]\n"
		   "  --arena-size B   [max(64 MiB, 512 B per preloaded key)]\n"
		   "  --pin            pin process i to CPU i\n"
		   "  --timer tsc|clock, --json FILE, --quick (10k preload, 0.5 s phases)\n");
}

static void parse_args(int argc, char **argv)
{
	enum { O_PROCS = 256, O_SECS, O_PRE, O_KL, O_ML, O_WIN, O_ARENA, O_PIN, O_TIMER, O_JSON,
	       O_QUICK };
	static const struct option lo[] = {
		{"procs", 1, 0, O_PROCS},   {"seconds", 1, 0, O_SECS}, {"preload", 1, 0, O_PRE},
		{"key-len", 1, 0, O_KL},    {"meta-len", 1, 0, O_ML},  {"window", 1, 0, O_WIN},
		{"arena-size", 1, 0, O_ARENA}, {"pin", 0, 0, O_PIN},  {"timer", 1, 0, O_TIMER},
		{"json", 1, 0, O_JSON},     {"quick", 0, 0, O_QUICK}, {"help", 0, 0, 'h'},
		{0, 0, 0, 0},
	};
	int c, pre_set = 0, secs_set = 0;
	opt.procs[0] = 1;
	opt.procs[1] = 2;
	opt.nprocs = 2;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case O_PROCS:
			opt.nprocs = bench_opt_list("writes", "procs", optarg, opt.procs, 8, 1, MAX_PROCS);
			break;
		case O_SECS:
			opt.seconds = bench_opt_real("writes", "seconds", optarg, 0.001, 1e6);
			secs_set = 1;
			break;
		case O_PRE:
			opt.preload = bench_opt_count("writes", "preload", optarg, 0, 1ull << 32);
			pre_set = 1;
			break;
		case O_KL: opt.key_len = bench_opt_count("writes", "key-len", optarg, 8, 1000); break;
		case O_ML: opt.meta_len = bench_opt_count("writes", "meta-len", optarg, 0, 16384); break;
		case O_WIN: opt.window = bench_opt_count("writes", "window", optarg, 1, 1u << 24); break;
		case O_ARENA:
			opt.arena_size = bench_opt_count("writes", "arena-size", optarg, 0, 1ull << 40);
			break;
		case O_PIN: opt.pin = 1; break;
		case O_TIMER: opt.timer = optarg; break;
		case O_JSON: opt.json = optarg; break;
		case O_QUICK: opt.quick = 1; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "writes: unexpected argument '%s' (see --help)\n", argv[optind]);
		exit(2);
	}
	if (opt.quick) {
		if (!pre_set)
			opt.preload = 10000;
		if (!secs_set)
			opt.seconds = 0.5;
	}
	if (opt.arena_size == 0) {
		opt.arena_size = (opt.preload + MAX_PROCS * opt.window) * 512;
		if (opt.arena_size < (64ull << 20))
			opt.arena_size = 64ull << 20;
	}
}

static void cleanup(void)
{
	if (g_group[0])
		shmg_destroy(g_group);
}

static void on_signal(int sig)
{
	cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

typedef int (*insert_fn)(shmg_t *, const char *, size_t, const void *, size_t,
			 const struct shmg_opts *);
typedef int (*remove_fn)(shmg_t *, const char *, size_t, const struct shmg_opts *);

static void worker(int idx, int member, struct run_shared *rs)
{
	struct proc_result *res = &rs->r[idx];
	hist_init(&res->h);
	if (opt.pin)
		bench_pin(idx);
	shmg_t *h;
	struct shmg_config cfg = {0};
	cfg.flags = SHMG_OPEN_NOCREATE;
	int rc = shmg_open(g_group, &cfg, &h);
	if (rc < 0) {
		snprintf(res->msg, sizeof(res->msg), "shmg_open: %s", shmg_strerror(rc));
		atomic_fetch_add(&rs->failed, 1);
		_exit(1);
	}
	insert_fn ins = member ? shmg_join : shmg_register;
	remove_fn rem = member ? shmg_leave : shmg_unregister;
	char meta[16384];
	memset(meta, 'm', opt.meta_len);
	/* The 2*window keys this process cycles through, made before timing. */
	uint64_t base = opt.preload + (uint64_t)idx * 2 * opt.window + (member ? 1u << 30 : 0);
	size_t nk = 2 * opt.window, stride = g_ks.stride;
	char *keys = malloc(nk * stride);
	if (!keys) {
		snprintf(res->msg, sizeof(res->msg), "out of memory");
		atomic_fetch_add(&rs->failed, 1);
		_exit(1);
	}
	for (size_t i = 0; i < nk; i++)
		keyset_format(&g_ks, base + i, keys + i * stride);
	uint64_t over = (uint64_t)(g_timer.overhead_ns / g_timer.ns_per_tick);
	double ps = g_timer.ns_per_tick * 1000.0;
	atomic_fetch_add(&rs->ready, 1);
	while (!atomic_load(&rs->go)) {
		struct timespec d = {0, 100 * 1000};
		nanosleep(&d, NULL);
	}
	while (timer_now(&g_timer) < rs->start_tick)
		;
	uint64_t n = 0, errors = 0, t_start = timer_now(&g_timer), t1 = t_start;
	while (t1 < rs->end_tick) {
		const char *key = keys + (n % nk) * stride;
		int have_rm = n >= opt.window;
		const char *rkey = keys + ((n - opt.window) % nk) * stride;
		uint64_t t0 = timer_now(&g_timer);
		int a = ins(h, key, opt.key_len, meta, opt.meta_len, NULL);
		int b = have_rm ? rem(h, rkey, opt.key_len, NULL) : 0;
		t1 = timer_now(&g_timer);
		errors += (a < 0) + (b < 0);
		if (a < 0 && !res->msg[0])
			snprintf(res->msg, sizeof(res->msg), "insert: %s", shmg_strerror(a));
		if (b < 0 && !res->msg[0])
			snprintf(res->msg, sizeof(res->msg), "remove: %s", shmg_strerror(b));
		if (have_rm) {
			uint64_t d = t1 - t0;
			d = d > over ? d - over : 0;
			hist_record_ps(&res->h, (uint64_t)((double)d * ps), 1);
		}
		n++;
	}
	res->pairs = n > opt.window ? n - opt.window : 0;
	res->errors = errors;
	res->elapsed_ns = (uint64_t)((double)(t1 - t_start) * g_timer.ns_per_tick);
	shmg_close(h);
	free(keys);
	_exit(0);
}

static int run_phase(int procs, int member, struct row *row)
{
	size_t bytes = sizeof(struct run_shared) + (size_t)procs * sizeof(struct proc_result);
	struct run_shared *rs = bench_shared_alloc(bytes);
	if (!rs)
		return -ENOMEM;
	int pids[MAX_PROCS] = {0};
	fflush(NULL);
	for (int i = 0; i < procs; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			signal(SIGINT, SIG_DFL);
			signal(SIGTERM, SIG_DFL);
			worker(i, member, rs);
		}
		if (pids[i] < 0)
			return -errno;
	}
	while (atomic_load(&rs->ready) + atomic_load(&rs->failed) < procs) {
		struct timespec d = {0, 1000 * 1000};
		nanosleep(&d, NULL);
	}
	rs->start_tick = timer_now(&g_timer) + (uint64_t)(20e6 / g_timer.ns_per_tick);
	rs->end_tick = rs->start_tick + (uint64_t)(opt.seconds * 1e9 / g_timer.ns_per_tick);
	atomic_store(&rs->go, 1);
	int bad = bench_wait_all(pids, procs);
	memset(row, 0, sizeof(*row));
	row->op = member ? "join+leave" : "register+unregister";
	row->procs = procs;
	hist_init(&row->h);
	for (int i = 0; i < procs; i++) {
		struct proc_result *r = &rs->r[i];
		hist_merge(&row->h, &r->h);
		row->errors += r->errors;
		if (r->elapsed_ns)
			row->pairs_total += (double)r->pairs / (double)r->elapsed_ns * 1e9;
		if (r->msg[0])
			snprintf(row->note, sizeof(row->note), "process %d: %s", i, r->msg);
	}
	row->pairs_proc = row->pairs_total / procs;
	bench_shared_free(rs, bytes);
	return bad ? -ECHILD : 0;
}

static void write_json(const struct machine *m)
{
	FILE *f = fopen(opt.json, "w");
	if (!f) {
		fprintf(stderr, "writes: %s: %s\n", opt.json, strerror(errno));
		return;
	}
	fprintf(f, "{\"program\": \"writes\", \"machine\": ");
	machine_json(f, m);
	fprintf(f, ",\n \"timer\": {\"name\": ");
	json_str(f, timer_name(&g_timer));
	fprintf(f, ", \"overhead_ns\": %.2f},\n", g_timer.overhead_ns);
	fprintf(f,
		" \"params\": {\"preload\": %llu, \"key_len\": %llu, \"meta_len\": %llu, "
		"\"window\": %llu, \"seconds\": %.3f, \"pin\": %s},\n \"results\": [",
		(unsigned long long)opt.preload, (unsigned long long)opt.key_len,
		(unsigned long long)opt.meta_len, (unsigned long long)opt.window, opt.seconds,
		opt.pin ? "true" : "false");
	for (int i = 0; i < g_nrows; i++) {
		const struct row *r = &g_rows[i];
		fprintf(f,
			"%s\n  {\"op\": \"%s\", \"procs\": %d, \"pairs_per_s_per_proc\": %.0f, "
			"\"pairs_per_s_total\": %.0f, \"pairs\": %llu, \"p50_ns\": %.1f, \"p90_ns\": %.1f, "
			"\"p99_ns\": %.1f, \"p999_ns\": %.1f, \"max_ns\": %.1f, \"errors\": %llu}",
			i ? "," : "", r->op, r->procs, r->pairs_proc, r->pairs_total,
			(unsigned long long)r->h.count, hist_quantile_ns(&r->h, 0.5),
			hist_quantile_ns(&r->h, 0.9), hist_quantile_ns(&r->h, 0.99),
			hist_quantile_ns(&r->h, 0.999), hist_max_ns(&r->h),
			(unsigned long long)r->errors);
	}
	fprintf(f, "\n]}\n");
	fclose(f);
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	struct machine m;
	machine_get(&m);
	if (timer_setup(&g_timer, opt.timer) < 0)
		return 2;
	if (keyset_make(&g_ks, opt.preload ? opt.preload : 1, opt.key_len, 0) < 0) {
		fprintf(stderr, "writes: bad key length or count\n");
		return 2;
	}
	snprintf(g_group, sizeof(g_group), "bench-writes-%d", (int)getpid());
	atexit(cleanup);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	struct shmg_config cfg = {0};
	cfg.arena_size = opt.arena_size;
	cfg.meta_max = opt.meta_len > 1024 ? (uint32_t)opt.meta_len : 0;
	cfg.flags = SHMG_OPEN_EXCL;
	shmg_t *owner;
	int rc = shmg_open(g_group, &cfg, &owner);
	if (rc < 0) {
		fprintf(stderr, "writes: shmg_open: %s\n", shmg_strerror(rc));
		return 1;
	}
	uint64_t meta = 0;
	uint64_t t0 = timer_clock_ns();
	for (uint64_t i = 0; i < opt.preload; i++) {
		rc = shmg_register(owner, keyset_hit(&g_ks, i), opt.key_len, &meta, sizeof(meta), NULL);
		if (rc < 0) {
			fprintf(stderr, "writes: preload #%llu: %s\n", (unsigned long long)i,
				shmg_strerror(rc));
			return 1;
		}
	}
	double pre_s = (timer_clock_ns() - t0) * 1e-9;

	machine_print(stdout, &m);
	printf("arena:   %llu registrations preloaded in %.2f s (%.0f/s, one process, no "
	       "unregister); keys of %llu bytes, metadata %llu bytes\n",
	       (unsigned long long)opt.preload, pre_s, pre_s > 0 ? opt.preload / pre_s : 0,
	       (unsigned long long)opt.key_len, (unsigned long long)opt.meta_len);
	printf("method:  each process has its own keys; pair n inserts key n and removes key n-%llu; "
	       "each pair timed with %s, overhead %.1f ns subtracted; %.2f s per phase\n",
	       (unsigned long long)opt.window, timer_name(&g_timer), g_timer.overhead_ns,
	       opt.seconds);
	fflush(stdout);

	int failed = 0;
	for (int p = 0; p < opt.nprocs; p++) {
		for (int member = 0; member < 2; member++) {
			struct row *row = &g_rows[g_nrows++];
			if (run_phase((int)opt.procs[p], member, row) < 0)
				failed = 1;
		}
	}
	shmg_close(owner);

	printf("\n%-20s %5s %14s %14s %9s %9s %9s %9s %10s\n", "operation", "procs", "pairs/s/proc",
	       "pairs/s total", "p50 ns", "p90 ns", "p99 ns", "p99.9 ns", "max ns");
	for (int i = 0; i < g_nrows; i++) {
		const struct row *r = &g_rows[i];
		printf("%-20s %5d %14.0f %14.0f %9.0f %9.0f %9.0f %9.0f %10.0f\n", r->op, r->procs,
		       r->pairs_proc, r->pairs_total, hist_quantile_ns(&r->h, 0.5),
		       hist_quantile_ns(&r->h, 0.9), hist_quantile_ns(&r->h, 0.99),
		       hist_quantile_ns(&r->h, 0.999), hist_max_ns(&r->h));
	}
	for (int i = 0; i < g_nrows; i++) {
		const struct row *r = &g_rows[i];
		if (r->errors || r->note[0]) {
			printf("ERROR: %s x%d: %llu failed calls; %s\n", r->op, r->procs,
			       (unsigned long long)r->errors, r->note);
			failed = 1;
		}
	}
	if (opt.json)
		write_json(&m);
	keyset_free(&g_ks);
	return failed;
}
