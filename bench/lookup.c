/* SPDX-License-Identifier: MIT */
/*
 * lookup: lookup latency and throughput of shmgroup from several reader
 * processes, against reference implementations in the same run on the same
 * keys (see impl.h for the list and how each is driven).
 *
 * Method.  The parent makes the key set (in a shared mapping, so every process
 * sees the same bytes), prepares the implementation, then forks P reader
 * processes (and W writer processes for implementations whose readers can see
 * another process's writes).  Every process attaches, reports ready, and all
 * start at one instant; each runs a warm-up, then the measured phase for a
 * fixed time.  A reader picks B keys at random (uniform; a miss key with
 * probability 1 - hit ratio), touches them so they are in its cache, then
 * times the batch of B lookups with one pair of timer reads.  The timer's own
 * median overhead is subtracted and the rest divided by B: that per-operation
 * value is recorded B times in the reader's histogram.  With B > 1 the high
 * percentiles and the maximum are therefore of batch means (single slow
 * lookups are smoothed); --batch 1 times each lookup alone.  Every answer is
 * checked against the expected value (the key's index).
 *
 * Keys are by default of mixed lengths, 22 to 30 bytes (drawn per key from a
 * hash of its number, e.g. "user/session/000001234567"), and shmgroup's
 * entries carry 16 bytes of metadata: the shape of real registrations, which
 * decides the entries' size class and how many cache lines a lookup touches.
 */
#include "common.h"
#include "hist.h"
#include "impl.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BATCH_MAX 64
#define MAX_PROCS 256
#define MAX_IMPLS 16

static const struct impl *const all_impls[] = {
	&impl_shmgroup_copy, &impl_shmgroup_ref, &impl_shmgroup_batch, &impl_lfht,
	&impl_lfht_batch,    &impl_ckhs,        &impl_rwlock,         &impl_redis,
};

static struct {
	uint64_t keys;
	uint64_t key_min, key_max;
	uint64_t meta_len;
	double hit_ratio;
	int procs;
	int writers;
	uint64_t write_rate;
	uint64_t churn_window;
	double seconds;
	double warmup;
	int batch;
	int pin;
	const char *timer;
	const char *json;
	const char *impls;
	uint64_t arena_size;
	int quick;
	int rounds;
	int churn_compare;
} opt = {
	.rounds = 3,
	.keys = 1000000,
	.key_min = 22,
	.key_max = 30,
	.meta_len = 16,
	.hit_ratio = 1.0,
	.procs = 1,
	.writers = 0,
	.write_rate = 50000,
	.churn_window = 256,
	.seconds = 5,
	.warmup = -1,
	.batch = 16,
	.impls = "shmgroup,shmgroup-ref,shmgroup-batch,lfht,lfht-batch,ckhs,rwlock,redis",
};

struct proc_result {
	struct hist h;
	uint64_t ops;
	uint64_t errors;
	uint64_t found;
	uint64_t elapsed_ns;
	int rc;
	char msg[160];
};

struct run_shared {
	_Atomic int ready;
	_Atomic int failed;
	_Atomic int go;
	_Atomic int stop;
	uint64_t start_tick, warm_tick, end_tick;
	struct proc_result r[];
};

struct row {
	char name[32];
	const char *kind;
	uint64_t keys;
	int procs, writers, batch;
	double write_pairs_s; /* achieved, all writers */
	struct hist h;
	double mops_proc, mops_total;
	uint64_t errors;
	int skipped;
	char note[256];
};

static struct timer_info g_timer;
static struct impl_env g_env;
/* Implementations whose shared state exists (prepare ran), for teardown. */
static const struct impl *g_prepared[MAX_IMPLS];
static int g_nprepared;
static struct row g_rows[MAX_IMPLS * 2];
static int g_nrows;

static void cleanup(void)
{
	while (g_nprepared > 0) {
		const struct impl *im = g_prepared[--g_nprepared];
		if (im->teardown)
			im->teardown(&g_env);
	}
}

static void on_signal(int sig)
{
	cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: lookup [options]\n"
		"  --impl LIST       comma list of: shmgroup (shmg_lookup, copying),\n"
		"                    shmgroup-ref (shmg_lookup_ref in one read section per batch),\n"
		"                    shmgroup-batch (shmg_lookup_many_ref, the whole batch in one call),\n"
		"                    lfht, lfht-batch (the batch's lfht lookups in one loop and\n"
		"                    one read section), ckhs, rwlock, redis   [%s]\n"
		"  --keys N          keys in the table (suffixes k, M) [1M]\n"
		"  --key-len L|A-B   key length in bytes, or a range A..B each key draws its\n"
		"                    length from (\"user/session/0001234567\" form), 8..1000 [22-30]\n"
		"  --meta-len N      shmgroup metadata bytes per key (the index, then filler),\n"
		"                    8..1024; the copying lookup copies all of it [16]\n"
		"  --hit-ratio R     fraction of lookups for present keys [1.0]\n"
		"  --procs P         reader processes [1]\n"
		"  --writers W       writer processes churning their own keys [0]\n"
		"  --churn-compare   with --writers: every turn is run twice, idle and with the\n"
		"                    writers, alternating, so both medians see the same machine\n"
		"  --write-rate N    register+unregister (or join+leave) pairs/s per writer, 0 = flat out [50000]\n"
		"  --seconds S       measured time per implementation, in all rounds [5]\n"
		"  --rounds N        the implementations take turns N times, S/N seconds each,\n"
		"                    so that drift of the machine hits them alike [3]\n"
		"  --warmup S        unmeasured time before each turn [min(0.5, S/N/5)]\n"
		"  --batch B         lookups per timed batch, 1..%d [16; redis always 1]\n"
		"  --pin             pin reader i to CPU i, writers after them\n"
		"  --timer tsc|clock force the timer\n"
		"  --arena-size B    shmgroup arena bytes [max(64 MiB, 512 B per key)]\n"
		"  --json FILE       write results as JSON\n"
		"  --quick           a few seconds in all: 10k keys, 0.5 s per implementation, 1 round\n",
		opt.impls, BATCH_MAX);
}

static void parse_args(int argc, char **argv)
{
	enum { O_IMPL = 256, O_KEYS, O_KEYLEN, O_METALEN, O_HIT, O_PROCS, O_WRITERS, O_RATE, O_SECS,
	       O_WARM, O_BATCH, O_PIN, O_TIMER, O_ARENA, O_JSON, O_QUICK, O_WINDOW, O_ROUNDS,
	       O_CHURN_CMP };
	static const struct option lo[] = {
		{"impl", 1, 0, O_IMPL},         {"keys", 1, 0, O_KEYS},
		{"key-len", 1, 0, O_KEYLEN},    {"hit-ratio", 1, 0, O_HIT},
		{"meta-len", 1, 0, O_METALEN},
		{"procs", 1, 0, O_PROCS},       {"writers", 1, 0, O_WRITERS},
		{"write-rate", 1, 0, O_RATE},   {"seconds", 1, 0, O_SECS},
		{"warmup", 1, 0, O_WARM},       {"batch", 1, 0, O_BATCH},
		{"pin", 0, 0, O_PIN},           {"timer", 1, 0, O_TIMER},
		{"arena-size", 1, 0, O_ARENA},  {"json", 1, 0, O_JSON},
		{"quick", 0, 0, O_QUICK},       {"churn-window", 1, 0, O_WINDOW},
		{"churn-compare", 0, 0, O_CHURN_CMP},
		{"rounds", 1, 0, O_ROUNDS},
		{"help", 0, 0, 'h'},            {0, 0, 0, 0},
	};
	int c;
	int keys_set = 0, secs_set = 0, rounds_set = 0;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case O_IMPL: opt.impls = optarg; break;
		case O_KEYS:
			opt.keys = bench_opt_count("lookup", "keys", optarg, 1, 1ull << 32);
			keys_set = 1;
			break;
		case O_KEYLEN:
			bench_opt_lens("lookup", "key-len", optarg, 8, 1000, &opt.key_min, &opt.key_max);
			break;
		case O_METALEN:
			opt.meta_len = bench_opt_count("lookup", "meta-len", optarg, 8, 1024);
			break;
		case O_HIT:
			opt.hit_ratio = bench_opt_real("lookup", "hit-ratio", optarg, 0, 1);
			break;
		case O_PROCS:
			opt.procs = (int)bench_opt_count("lookup", "procs", optarg, 1, MAX_PROCS / 2);
			break;
		case O_WRITERS:
			opt.writers = (int)bench_opt_count("lookup", "writers", optarg, 0, MAX_PROCS / 2);
			break;
		case O_RATE:
			opt.write_rate = bench_opt_count("lookup", "write-rate", optarg, 0, 1000000000);
			break;
		case O_WINDOW:
			opt.churn_window =
				bench_opt_count("lookup", "churn-window", optarg, 2, 1ull << 32);
			opt.churn_window &= ~(uint64_t)1;
			break;
		case O_SECS:
			opt.seconds = bench_opt_real("lookup", "seconds", optarg, 0.001, 1e6);
			secs_set = 1;
			break;
		case O_WARM: opt.warmup = bench_opt_real("lookup", "warmup", optarg, 0, 1e6); break;
		case O_BATCH:
			opt.batch = (int)bench_opt_count("lookup", "batch", optarg, 1, BATCH_MAX);
			break;
		case O_ROUNDS:
			opt.rounds = (int)bench_opt_count("lookup", "rounds", optarg, 1, 100);
			rounds_set = 1;
			break;
		case O_PIN: opt.pin = 1; break;
		case O_TIMER: opt.timer = optarg; break;
		case O_ARENA:
			opt.arena_size = bench_opt_count("lookup", "arena-size", optarg, 0, 1ull << 40);
			break;
		case O_JSON: opt.json = optarg; break;
		case O_QUICK: opt.quick = 1; break;
		case O_CHURN_CMP: opt.churn_compare = 1; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind < argc)
		goto bad;
	if (opt.quick) {
		if (!keys_set)
			opt.keys = 10000;
		if (!secs_set)
			opt.seconds = 0.5;
		if (!rounds_set)
			opt.rounds = 1;
	}
	if (opt.warmup < 0) {
		double per = opt.seconds / opt.rounds;
		opt.warmup = per / 5 < 0.5 ? per / 5 : 0.5;
	}
	if (opt.arena_size == 0) {
		opt.arena_size = opt.keys * 512;
		if (opt.arena_size < (64ull << 20))
			opt.arena_size = 64ull << 20;
	}
	return;
bad:
	fprintf(stderr, "lookup: bad argument (see --help)\n");
	exit(2);
}

/* ------------------------------------------------------------------------ */

static uint64_t ns_to_ticks(double ns)
{
	return (uint64_t)(ns / g_timer.ns_per_tick);
}

static void wait_start(struct run_shared *rs)
{
	while (!atomic_load_explicit(&rs->go, memory_order_acquire)) {
		struct timespec d = {0, 100 * 1000};
		nanosleep(&d, NULL);
	}
	while (timer_now(&g_timer) < rs->start_tick)
		;
}

static void child_fail(struct proc_result *r, int rc, const char *what)
{
	r->rc = rc;
	snprintf(r->msg, sizeof(r->msg), "%s: %s", what, strerror(rc < 0 ? -rc : rc));
}

static void reader_main(const struct impl *im, int idx, int batch, struct run_shared *rs)
{
	struct proc_result *res = &rs->r[idx];
	hist_init(&res->h);
	if (opt.pin)
		bench_pin(idx);
	void *st = NULL;
	int rc = im->reader_attach(&g_env, &st);
	if (rc < 0) {
		child_fail(res, rc, "attach");
		atomic_fetch_add(&rs->failed, 1);
		_exit(1);
	}
	atomic_fetch_add(&rs->ready, 1);
	wait_start(rs);

	const struct keyset *ks = g_env.ks;
	uint64_t seed = 0x9e3779b97f4a7c15ull * (uint64_t)(idx + 1) ^ (uint64_t)getpid();
	uint64_t thr = opt.hit_ratio >= 1.0 ? UINT64_MAX
					    : (uint64_t)(opt.hit_ratio * 18446744073709551615.0);
	const char *keys[BATCH_MAX];
	size_t lens[BATCH_MAX];
	uint64_t want[BATCH_MAX], vals[BATCH_MAX];
	uint64_t over = ns_to_ticks(g_timer.overhead_ns);
	double ps_per_tick = g_timer.ns_per_tick * 1000.0;
	volatile unsigned char sink = 0;
	uint64_t ops = 0, errors = 0, found_total = 0, t_meas = 0, t_last = 0;
	int measuring = 0;
	for (;;) {
		unsigned char acc = 0;
		for (int j = 0; j < batch; j++) {
			uint64_t i = bench_below(&seed, ks->count);
			if (thr == UINT64_MAX || bench_rand(&seed) < thr) {
				keys[j] = keyset_hit(ks, i);
				lens[j] = keyset_hit_len(ks, i);
				want[j] = i;
			} else {
				keys[j] = keyset_miss(ks, i);
				lens[j] = keyset_miss_len(ks, i);
				want[j] = IMPL_MISS;
			}
			acc ^= (unsigned char)keys[j][0] ^ (unsigned char)keys[j][lens[j] - 1];
		}
		sink = acc;
		uint64_t t0 = timer_now(&g_timer);
		int found = im->lookup(st, keys, lens, vals, batch);
		uint64_t t1 = timer_now(&g_timer);
		if (found < 0) {
			child_fail(res, found, "lookup");
			_exit(1);
		}
		if (!measuring && t1 >= rs->warm_tick) {
			measuring = 1;
			t_meas = t1;
			continue;
		}
		if (measuring) {
			uint64_t d = t1 - t0;
			d = d > over ? d - over : 0;
			hist_record_ps(&res->h, (uint64_t)((double)d * ps_per_tick / batch), batch);
			ops += batch;
			found_total += found;
			for (int j = 0; j < batch; j++)
				errors += vals[j] != want[j];
			t_last = t1;
		}
		if (t1 >= rs->end_tick)
			break;
	}
	(void)sink;
	res->ops = ops;
	res->errors = errors;
	res->found = found_total;
	res->elapsed_ns = (uint64_t)((double)(t_last - t_meas) * g_timer.ns_per_tick);
	if (im->reader_detach)
		im->reader_detach(st);
	_exit(0);
}

static void writer_main(const struct impl *im, int w, struct run_shared *rs)
{
	struct proc_result *res = &rs->r[opt.procs + w];
	hist_init(&res->h);
	if (opt.pin)
		bench_pin(opt.procs + w);
	void *st = NULL;
	int rc = im->writer_attach(&g_env, w, &st);
	if (rc < 0) {
		child_fail(res, rc, "writer attach");
		atomic_fetch_add(&rs->failed, 1);
		_exit(1);
	}
	atomic_fetch_add(&rs->ready, 1);
	wait_start(rs);
	const struct keyset *ks = g_env.ks;
	size_t win = opt.churn_window;
	/* Churn key numbers lie past the miss keys: 2*count + w*2*win + slot. */
	uint64_t base = 2 * (uint64_t)ks->count + (uint64_t)w * 2 * win;
	char key[1024];
	uint64_t n = 0, errors = 0;
	uint64_t t0 = timer_clock_ns();
	while (!atomic_load_explicit(&rs->stop, memory_order_relaxed)) {
		if (opt.write_rate) {
			uint64_t due = (uint64_t)((double)(timer_clock_ns() - t0) * 1e-9 *
						  (double)opt.write_rate);
			if (n >= due) {
				struct timespec d = {0, 100 * 1000};
				nanosleep(&d, NULL);
				continue;
			}
		}
		int kind = (int)(n & 1);
		size_t len = keyset_format(ks, base + n % (2 * win), key);
		if (im->writer_insert(st, key, len, n, kind) < 0)
			errors++;
		if (n >= win) {
			len = keyset_format(ks, base + (n - win) % (2 * win), key);
			if (im->writer_remove(st, key, len, kind) < 0)
				errors++;
		}
		n++;
	}
	res->elapsed_ns = timer_clock_ns() - t0;
	res->ops = n;
	res->errors = errors;
	/* Leave the table as found: the next turn reuses these key numbers. */
	for (uint64_t k = n > win ? n - win : 0; k < n; k++) {
		size_t len = keyset_format(ks, base + k % (2 * win), key);
		im->writer_remove(st, key, len, (int)(k & 1));
	}
	if (im->writer_detach)
		im->writer_detach(st);
	_exit(0);
}

static int g_turn_writers; /* writers for the turn being run */

static int run_impl(const struct impl *im, struct row *row)
{
	int writers = im->supports_writers ? g_turn_writers : 0;
	int nproc = opt.procs + writers;
	int batch = im->default_batch ? im->default_batch : opt.batch;
	size_t bytes = sizeof(struct run_shared) + (size_t)nproc * sizeof(struct proc_result);
	struct run_shared *rs = bench_shared_alloc(bytes);
	if (!rs)
		return -ENOMEM;
	int pids[MAX_PROCS] = {0};
	fflush(NULL);
	for (int i = 0; i < nproc; i++) {
		pids[i] = fork();
		if (pids[i] < 0) {
			int e = -errno;
			atomic_store(&rs->stop, 1);
			atomic_store(&rs->go, 1);
			bench_wait_all(pids, i);
			return e;
		}
		if (pids[i] == 0) {
			signal(SIGINT, SIG_DFL);
			signal(SIGTERM, SIG_DFL);
			if (i < opt.procs)
				reader_main(im, i, batch, rs);
			else
				writer_main(im, i - opt.procs, rs);
		}
	}
	/* All attached (in-process references build their tables here). */
	while (atomic_load(&rs->ready) + atomic_load(&rs->failed) < nproc) {
		struct timespec d = {0, 1000 * 1000};
		nanosleep(&d, NULL);
	}
	uint64_t now = timer_now(&g_timer);
	rs->start_tick = now + ns_to_ticks(20e6);
	rs->warm_tick = rs->start_tick + ns_to_ticks(opt.warmup * 1e9);
	rs->end_tick = rs->warm_tick + ns_to_ticks(opt.seconds / opt.rounds * 1e9);
	atomic_store_explicit(&rs->go, 1, memory_order_release);
	int bad = bench_wait_all(pids, opt.procs);
	atomic_store(&rs->stop, 1);
	bad += bench_wait_all(pids + opt.procs, writers);

	memset(row, 0, sizeof(*row));
	snprintf(row->name, sizeof(row->name), "%s", im->name);
	row->kind = im->kind;
	row->keys = opt.keys;
	row->procs = opt.procs;
	row->writers = writers;
	row->batch = batch;
	hist_init(&row->h);
	for (int i = 0; i < opt.procs; i++) {
		struct proc_result *r = &rs->r[i];
		hist_merge(&row->h, &r->h);
		row->errors += r->errors;
		double mops = r->elapsed_ns ? (double)r->ops / (double)r->elapsed_ns * 1e3 : 0;
		row->mops_total += mops;
		if (r->msg[0])
			snprintf(row->note, sizeof(row->note), "reader %d: %s", i, r->msg);
	}
	row->mops_proc = row->mops_total / opt.procs;
	for (int w = 0; w < writers; w++) {
		struct proc_result *r = &rs->r[opt.procs + w];
		if (r->elapsed_ns)
			row->write_pairs_s += (double)r->ops / (double)r->elapsed_ns * 1e9;
		row->errors += r->errors;
		if (r->msg[0])
			snprintf(row->note, sizeof(row->note), "writer %d: %s", w, r->msg);
	}
	if (opt.writers && !im->supports_writers)
		snprintf(row->note, sizeof(row->note),
			 "in-process table: no writer can reach it from another process; measured idle");
	bench_shared_free(rs, bytes);
	return bad ? -ECHILD : 0;
}

/* ------------------------------------------------------------------------ */

static const struct row *find_row(const char *name)
{
	for (int i = 0; i < g_nrows; i++)
		if (!g_rows[i].skipped && strcmp(g_rows[i].name, name) == 0)
			return &g_rows[i];
	return NULL;
}

static double p50(const struct row *r)
{
	return hist_quantile_ns(&r->h, 0.5);
}

static void print_table(void)
{
	const struct row *lf = find_row("lfht");
	printf("\n%-20s %-13s %8s %5s %4s %9s %9s %9s %9s %10s %9s %9s %8s\n", "impl", "kind", "keys",
	       "procs", "wr", "p50 ns", "p90 ns", "p99 ns", "p99.9 ns", "max ns", "Mops/proc",
	       "Mops tot", "p50/lfht");
	for (int i = 0; i < g_nrows; i++) {
		const struct row *r = &g_rows[i];
		if (r->skipped) {
			printf("%-20s skipped: %s\n", r->name, r->note);
			continue;
		}
		char ratio[16] = "-";
		if (lf && p50(lf) > 0)
			snprintf(ratio, sizeof(ratio), "%.2fx", p50(r) / p50(lf));
		printf("%-20s %-13s %8llu %5d %4d %9.1f %9.1f %9.1f %9.1f %10.1f %9.3f %9.3f %8s\n",
		       r->name, r->kind, (unsigned long long)r->keys, r->procs, r->writers, p50(r),
		       hist_quantile_ns(&r->h, 0.9), hist_quantile_ns(&r->h, 0.99),
		       hist_quantile_ns(&r->h, 0.999), hist_max_ns(&r->h), r->mops_proc,
		       r->mops_total, ratio);
	}
	for (int i = 0; i < g_nrows; i++) {
		const struct row *r = &g_rows[i];
		if (r->skipped)
			continue;
		if (r->writers)
			printf("note: %s: %d writer(s) churned %.0f pairs/s in all\n", r->name,
			       r->writers, r->write_pairs_s);
		if (r->errors)
			printf("ERROR: %s: %llu wrong answers or failed writes\n", r->name,
			       (unsigned long long)r->errors);
		if (r->note[0])
			printf("note: %s: %s\n", r->name, r->note);
	}
	const struct row *sb = find_row("shmgroup-batch"), *lb = find_row("lfht-batch");
	if (sb && lb && p50(lb) > 0)
		printf("shmgroup-batch p50 / lfht-batch p50 = %.2fx (same batch of %d keys)\n",
		       p50(sb) / p50(lb), sb->batch);
	const struct row *rd = find_row("redis"), *sg = find_row("shmgroup");
	if (rd && sg && p50(sg) > 0)
		printf("redis p50 / shmgroup p50 = %.0fx\n", p50(rd) / p50(sg));
	for (int i = 0; i < g_nrows; i++) {
		const struct row *r = &g_rows[i];
		const char *plus = strstr(r->name, "+churn");
		if (!plus || r->skipped)
			continue;
		char idle[64];
		snprintf(idle, sizeof(idle), "%.*s", (int)(plus - r->name), r->name);
		const struct row *base = find_row(idle);
		if (base && p50(base) > 0)
			printf("churned / idle p50, same run: %s %.2fx\n", idle, p50(r) / p50(base));
	}
}

static void write_json(const char *path, const struct machine *m)
{
	FILE *f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "lookup: %s: %s\n", path, strerror(errno));
		return;
	}
	fprintf(f, "{\"program\": \"lookup\", \"machine\": ");
	machine_json(f, m);
	fprintf(f, ",\n \"timer\": {\"name\": ");
	json_str(f, timer_name(&g_timer));
	fprintf(f, ", \"ns_per_tick\": %.6f, \"overhead_ns\": %.2f},\n", g_timer.ns_per_tick,
		g_timer.overhead_ns);
	fprintf(f,
		" \"params\": {\"keys\": %llu, \"key_min\": %llu, \"key_max\": %llu, "
		"\"key_mean\": %.2f, \"meta_len\": %llu, \"hit_ratio\": %.4f, \"procs\": %d, "
		"\"writers\": %d, \"write_rate\": %llu, \"seconds\": %.3f, \"rounds\": %d, \"warmup\": %.3f, "
		"\"batch\": %d, \"pin\": %s, \"arena_size\": %llu},\n \"results\": [",
		(unsigned long long)opt.keys, (unsigned long long)opt.key_min,
		(unsigned long long)opt.key_max, keyset_mean_len(g_env.ks),
		(unsigned long long)opt.meta_len, opt.hit_ratio,
		opt.procs, opt.writers, (unsigned long long)opt.write_rate, opt.seconds, opt.rounds, opt.warmup,
		opt.batch, opt.pin ? "true" : "false", (unsigned long long)opt.arena_size);
	const struct row *lf = find_row("lfht"), *lb = find_row("lfht-batch");
	int first = 1;
	for (int i = 0; i < g_nrows; i++) {
		const struct row *r = &g_rows[i];
		fprintf(f, "%s\n  {\"impl\": ", first ? "" : ",");
		first = 0;
		json_str(f, r->name);
		if (r->skipped) {
			fprintf(f, ", \"skipped\": ");
			json_str(f, r->note);
			fprintf(f, "}");
			continue;
		}
		fprintf(f, ", \"kind\": ");
		json_str(f, r->kind);
		fprintf(f,
			", \"keys\": %llu, \"procs\": %d, \"writers\": %d, \"write_pairs_s\": %.0f, "
			"\"batch\": %d, \"ops\": %llu, \"p50_ns\": %.2f, \"p90_ns\": %.2f, "
			"\"p99_ns\": %.2f, \"p999_ns\": %.2f, \"max_ns\": %.2f, \"mean_ns\": %.2f, "
			"\"mops_per_proc\": %.4f, \"mops_total\": %.4f, \"errors\": %llu",
			(unsigned long long)r->keys, r->procs, r->writers, r->write_pairs_s, r->batch,
			(unsigned long long)r->h.count, p50(r), hist_quantile_ns(&r->h, 0.9),
			hist_quantile_ns(&r->h, 0.99), hist_quantile_ns(&r->h, 0.999),
			hist_max_ns(&r->h), hist_mean_ns(&r->h), r->mops_proc, r->mops_total,
			(unsigned long long)r->errors);
		if (lf && p50(lf) > 0)
			fprintf(f, ", \"p50_vs_lfht\": %.4f", p50(r) / p50(lf));
		if (lb && p50(lb) > 0 && r->batch == lb->batch)
			fprintf(f, ", \"p50_vs_lfht_batch\": %.4f", p50(r) / p50(lb));
		if (r->note[0]) {
			fprintf(f, ", \"note\": ");
			json_str(f, r->note);
		}
		fprintf(f, "}");
	}
	fprintf(f, "\n]}\n");
	fclose(f);
}

static int select_impls(const struct impl **out)
{
	int n = 0;
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", opt.impls);
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int hit = 0;
		for (size_t i = 0; i < sizeof(all_impls) / sizeof(all_impls[0]); i++) {
			const struct impl *im = all_impls[i];
			if (strcmp(t, im->name) == 0 ||
			    (strcmp(t, "shmgroup-copy") == 0 && im == &impl_shmgroup_copy)) {
				if (n < MAX_IMPLS)
					out[n++] = im;
				hit = 1;
			}
		}
		if (!hit) {
			fprintf(stderr, "lookup: unknown implementation '%s'\n", t);
			exit(2);
		}
	}
	return n;
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	const struct impl *impls[MAX_IMPLS];
	int nimpl = select_impls(impls);

	struct machine m;
	machine_get(&m);
	if (timer_setup(&g_timer, opt.timer) < 0)
		return 2;
	struct keyset ks;
	int rc = keyset_make_mix(&ks, opt.keys, opt.key_min, opt.key_max, opt.hit_ratio < 1.0);
	if (rc < 0) {
		fprintf(stderr, "lookup: cannot make %llu keys of %llu-%llu bytes: %s\n",
			(unsigned long long)opt.keys, (unsigned long long)opt.key_min,
			(unsigned long long)opt.key_max, strerror(-rc));
		return 2;
	}
	g_env.ks = &ks;
	g_env.readers = opt.procs;
	g_env.writers = opt.writers;
	g_env.churn_window = opt.churn_window;
	g_env.arena_size = opt.arena_size;
	g_env.meta_len = opt.meta_len;
	snprintf(g_env.group, sizeof(g_env.group), "bench-lookup-%d", (int)getpid());
	atexit(cleanup);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	machine_print(stdout, &m);
	printf("keys:    %llu of %llu-%llu bytes (mean %.1f, e.g. \"%.*s\"), hit ratio %.2f, uniform "
	       "random; %llu B of metadata each\n",
	       (unsigned long long)opt.keys, (unsigned long long)opt.key_min,
	       (unsigned long long)opt.key_max, keyset_mean_len(&ks),
	       (int)keyset_hit_len(&ks, ks.count / 2), keyset_hit(&ks, ks.count / 2), opt.hit_ratio,
	       (unsigned long long)opt.meta_len);
	printf("procs:   %d reader process(es)%s, %d writer process(es) at %llu pairs/s each%s\n",
	       opt.procs, opt.pin ? " pinned" : "", opt.writers,
	       (unsigned long long)opt.write_rate, opt.write_rate ? "" : " (flat out)");
	printf("timing:  %.2f s measured per implementation, in %d turn(s) of %.2f s taken in "
	       "rotation, each after %.2f s warm-up\n",
	       opt.seconds, opt.rounds, opt.seconds / opt.rounds, opt.warmup);
	printf("method:  batches of %d lookups timed with %s; timer overhead %.1f ns (median, min "
	       "%.1f) subtracted per batch, remainder / batch = per-lookup latency; percentiles "
	       "above p99 are of batch means; redis is timed per call\n",
	       opt.batch, timer_name(&g_timer), g_timer.overhead_ns, g_timer.overhead_min_ns);
	printf("refs:    lfht, lfht-batch and ckhs are in-process: each reader process builds its own "
	       "table of the same keys (same hash) before the timed phase; rwlock is a shared-memory "
	       "map behind a process-shared pthread_rwlock; redis is a GET over a unix socket\n");
	fflush(stdout);

	/* Prepare every implementation once; their shared states coexist. */
	int ok[MAX_IMPLS] = {0};
	for (int i = 0; i < nimpl; i++) {
		const struct impl *im = impls[i];
		struct row *row = &g_rows[g_nrows++];
		memset(row, 0, sizeof(*row));
		snprintf(row->name, sizeof(row->name), "%s", im->name);
		row->kind = im->kind;
		hist_init(&row->h);
		char why[200] = "";
		if (im->available && !im->available(why, sizeof(why))) {
			row->skipped = 1;
			snprintf(row->note, sizeof(row->note), "%s", why);
			printf("%s: skipped: %s\n", im->name, why);
			continue;
		}
		int shared = 0;
		for (int j = 0; j < g_nprepared; j++)
			shared |= g_prepared[j]->prepare == im->prepare;
		if (im->prepare && !shared) {
			uint64_t t0 = timer_clock_ns();
			g_env.note[0] = 0;
			rc = im->prepare(&g_env);
			if (rc < 0) {
				row->skipped = 1;
				snprintf(row->note, sizeof(row->note), "prepare failed: %s %s",
					 strerror(-rc), g_env.note);
				printf("%s: skipped: %s\n", im->name, row->note);
				if (im->teardown)
					im->teardown(&g_env);
				continue;
			}
			g_prepared[g_nprepared++] = im;
			printf("%s: prepared in %.2f s\n", im->name, (timer_clock_ns() - t0) * 1e-9);
		}
		ok[i] = 1;
	}
	fflush(stdout);
	/* Turns: every implementation once per round, in the same order; with
	 * --churn-compare each is run idle and then churned, into two rows. */
	int churn_row[MAX_IMPLS];
	for (int i = 0; i < nimpl; i++) {
		churn_row[i] = -1;
		if (!opt.churn_compare || !opt.writers || !ok[i] || !impls[i]->supports_writers ||
		    g_nrows >= MAX_IMPLS * 2)
			continue;
		struct row *row = &g_rows[g_nrows];
		*row = g_rows[i];
		hist_init(&row->h);
		snprintf(row->name, sizeof(row->name), "%s+churn", impls[i]->name);
		churn_row[i] = g_nrows++;
	}
	for (int r = 0; r < opt.rounds; r++) {
		for (int i = 0; i < nimpl; i++) {
			if (!ok[i])
				continue;
			for (int pass = 0; pass < (churn_row[i] >= 0 ? 2 : 1); pass++) {
				const struct impl *im = impls[i];
				struct row *row = &g_rows[pass ? churn_row[i] : i], one;
				g_turn_writers = churn_row[i] >= 0 && pass == 0 ? 0 : opt.writers;
				rc = run_impl(im, &one);
				if (rc < 0) {
					printf("%s: a process failed: %s\n", row->name,
					       one.note[0] ? one.note : strerror(-rc));
					row->errors++;
				}
				printf("%s: round %d: p50 %.1f ns, p99 %.1f ns, %.3f Mops/s in all\n",
				       row->name, r + 1, p50(&one), hist_quantile_ns(&one.h, 0.99),
				       one.mops_total);
				fflush(stdout);
				row->keys = one.keys;
				row->procs = one.procs;
				row->writers = one.writers;
				row->batch = one.batch;
				hist_merge(&row->h, &one.h);
				row->errors += one.errors;
				row->mops_proc += one.mops_proc / opt.rounds;
				row->mops_total += one.mops_total / opt.rounds;
				row->write_pairs_s += one.write_pairs_s / opt.rounds;
				if (one.note[0])
					snprintf(row->note, sizeof(row->note), "%s", one.note);
			}
		}
	}
	cleanup();
	print_table();
	if (opt.json)
		write_json(opt.json, &m);
	int errs = 0;
	for (int i = 0; i < g_nrows; i++)
		errs += g_rows[i].errors != 0;
	keyset_free(&ks);
	return errs ? 1 : 0;
}
