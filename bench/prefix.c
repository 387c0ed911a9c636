/* SPDX-License-Identifier: MIT */
/*
 * prefix: latency of group queries among many other entries.  For each
 * count E of other entries (registrations of 22-byte keys, default 10k and
 * 1M) a fresh arena is made, and for each k (default 1, 10, 1000) the
 * endpoint joins k groups "room/k<k>/g<i>" (one member each: every member
 * costs the walk a head as well, the most a prefix query can pay per
 * member).  Timed, one call at a time, timer overhead subtracted:
 *   count    shmg_member_count("room/k<k>/")        (the prefix tree)
 *   members  shmg_members("room/k<k>/", fn)         (fn reads each entry)
 *   exact    shmg_member_count("room/k<k>/g0")      (the head's counter)
 *   scan     the reference: shmg_entries() over the whole arena, counting
 *            the memberships whose key starts with the prefix — the cost of
 *            a query that visits every entry, as prefix queries did before
 *            the tree (fewer samples: it takes milliseconds at 1M).
 * Every answer is checked (k members).
 */
#include "common.h"
#include "hist.h"

#include <errno.h>
#include <getopt.h>
#include <shmgroup.h>
#include <stdlib.h>
#include <unistd.h>

static struct {
	uint64_t entries[8], ks[8];
	int nentries, nks;
	uint64_t samples, scan_samples;
	const char *json;
} opt = {.samples = 20000, .scan_samples = 20};

static struct timer_info g_timer;
static char g_group[64];

enum query { Q_COUNT, Q_MEMBERS, Q_EXACT, Q_SCAN, NQUERIES };
static const char *const query_name[NQUERIES] = {"count", "members", "exact", "scan"};

struct row {
	uint64_t entries, k;
	enum query q;
	struct hist h;
	long wrong; /* answers that were not k (or 1 for exact) */
	char msg[128];
};

static void cleanup(void)
{
	if (g_group[0])
		shmg_destroy(g_group);
}

static int touch(const struct shmg_entry *e, void *arg)
{
	*(uint64_t *)arg += e->key_len + e->meta_len + e->id.slot;
	return 0;
}

struct scan_ctx {
	const char *prefix;
	size_t len;
	long n;
};

static int scan_visit(const struct shmg_entry *e, void *arg)
{
	struct scan_ctx *c = arg;
	if (e->kind == SHMG_MEMBER && e->key_len >= c->len && memcmp(e->key, c->prefix, c->len) == 0)
		c->n++;
	return 0;
}

static long run_query(shmg_t *h, enum query q, const char *prefix, const char *exact)
{
	uint64_t sink = 0;
	switch (q) {
	case Q_COUNT:
		return shmg_member_count(h, prefix, strlen(prefix), NULL);
	case Q_MEMBERS: {
		long n = shmg_members(h, prefix, strlen(prefix), touch, &sink, NULL);
		__asm__ __volatile__("" ::"r"(sink));
		return n;
	}
	case Q_EXACT:
		return shmg_member_count(h, exact, strlen(exact), NULL);
	default: {
		struct scan_ctx c = {prefix, strlen(prefix), 0};
		long rc = shmg_entries(h, 1, scan_visit, &c);
		return rc < 0 ? rc : c.n;
	}
	}
}

static void time_query(shmg_t *h, enum query q, const char *prefix, const char *exact,
		       struct row *r)
{
	uint64_t n = q == Q_SCAN ? opt.scan_samples : opt.samples;
	long want = q == Q_EXACT ? 1 : (long)r->k;
	double ps = g_timer.ns_per_tick * 1000.0, over = g_timer.overhead_ns * 1000.0;
	hist_init(&r->h);
	for (uint64_t i = 0; i < n / 10 + 1; i++) /* warm-up */
		(void)run_query(h, q, prefix, exact);
	for (uint64_t i = 0; i < n; i++) {
		uint64_t t0 = timer_now(&g_timer);
		long got = run_query(h, q, prefix, exact);
		uint64_t t1 = timer_now(&g_timer);
		double d = (double)(t1 - t0) * ps - over;
		hist_record_ps(&r->h, d > 0 ? (uint64_t)d : 0, 1);
		if (got != want) {
			r->wrong++;
			if (!r->msg[0])
				snprintf(r->msg, sizeof(r->msg), "%s gave %ld, expected %ld",
					 query_name[q], got, want);
		}
	}
}

/* One arena of E other entries; rows for every k and query.  Returns the
 * number of rows filled, or -1 (message printed). */
static int measure(uint64_t e, const struct keyset *ks, struct row *rows)
{
	struct shmg_config cfg = {0};
	uint64_t kmax = 0;
	for (int i = 0; i < opt.nks; i++)
		kmax += opt.ks[i];
	cfg.arena_size = (e + kmax) * 384 < (64ull << 20) ? 64ull << 20 : (e + kmax) * 384;
	cfg.flags = SHMG_OPEN_EXCL;
	shmg_destroy(g_group);
	shmg_t *h;
	int rc = shmg_open(g_group, &cfg, &h);
	if (rc < 0) {
		fprintf(stderr, "prefix: open: %s\n", shmg_strerror(rc));
		return -1;
	}
	for (uint64_t i = 0; i < e && rc == 0; i++)
		rc = shmg_register(h, keyset_hit(ks, i), ks->key_len, "meta-123", 8, NULL);
	char key[64], prefix[32], exact[64];
	for (int j = 0; j < opt.nks && rc == 0; j++)
		for (uint64_t i = 0; i < opt.ks[j] && rc == 0; i++) {
			snprintf(key, sizeof(key), "room/k%llu/g%llu", (unsigned long long)opt.ks[j],
				 (unsigned long long)i);
			rc = shmg_join(h, key, strlen(key), "meta-123", 8, NULL);
		}
	if (rc < 0) {
		fprintf(stderr, "prefix: filling the arena: %s\n", shmg_strerror(rc));
		shmg_close(h);
		return -1;
	}
	int n = 0;
	for (int j = 0; j < opt.nks; j++) {
		snprintf(prefix, sizeof(prefix), "room/k%llu/", (unsigned long long)opt.ks[j]);
		snprintf(exact, sizeof(exact), "%sg0", prefix);
		for (int q = 0; q < NQUERIES; q++) {
			struct row *r = &rows[n++];
			memset(r, 0, sizeof(*r));
			r->entries = e;
			r->k = opt.ks[j];
			r->q = (enum query)q;
			time_query(h, r->q, prefix, exact, r);
		}
	}
	shmg_close(h);
	shmg_destroy(g_group);
	return n;
}

static void print_row(const struct row *r)
{
	printf("%9llu %6llu %-8s %9llu %10.0f %10.0f %10.0f %10.0f %12.0f%s%s\n",
	       (unsigned long long)r->entries, (unsigned long long)r->k, query_name[r->q],
	       (unsigned long long)r->h.count, hist_quantile_ns(&r->h, 0.5),
	       hist_quantile_ns(&r->h, 0.9), hist_quantile_ns(&r->h, 0.99),
	       hist_quantile_ns(&r->h, 0.999), hist_max_ns(&r->h), r->wrong ? "  WRONG: " : "",
	       r->msg);
}

static int write_json(const struct machine *m, const struct row *rows, int n)
{
	FILE *f = fopen(opt.json, "w");
	if (!f) {
		fprintf(stderr, "prefix: %s: %s\n", opt.json, strerror(errno));
		return -1;
	}
	fprintf(f, "{\"program\": \"prefix\", \"machine\": ");
	machine_json(f, m);
	fprintf(f, ",\n \"timer\": {\"name\": ");
	json_str(f, timer_name(&g_timer));
	fprintf(f, ", \"overhead_ns\": %.2f},\n \"params\": {\"samples\": %llu, \"scan_samples\": %llu},\n \"results\": [",
		g_timer.overhead_ns, (unsigned long long)opt.samples,
		(unsigned long long)opt.scan_samples);
	for (int i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		fprintf(f,
			"%s\n  {\"entries\": %llu, \"k\": %llu, \"query\": \"%s\", \"count\": %llu, "
			"\"p50_ns\": %.1f, \"p90_ns\": %.1f, \"p99_ns\": %.1f, \"p999_ns\": %.1f, "
			"\"max_ns\": %.1f, \"wrong\": %ld}",
			i ? "," : "", (unsigned long long)r->entries, (unsigned long long)r->k,
			query_name[r->q], (unsigned long long)r->h.count, hist_quantile_ns(&r->h, 0.5),
			hist_quantile_ns(&r->h, 0.9), hist_quantile_ns(&r->h, 0.99),
			hist_quantile_ns(&r->h, 0.999), hist_max_ns(&r->h), r->wrong);
	}
	fprintf(f, "\n]}\n");
	fclose(f);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{"entries", 1, 0, 'e'}, {"members", 1, 0, 'k'}, {"samples", 1, 0, 's'},
		{"scan-samples", 1, 0, 'S'}, {"json", 1, 0, 'j'}, {"quick", 0, 0, 'q'},
		{"seconds", 1, 0, 'T'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0},
	};
	opt.entries[0] = 10000;
	opt.entries[1] = 1000000;
	opt.nentries = 2;
	opt.ks[0] = 1;
	opt.ks[1] = 10;
	opt.ks[2] = 1000;
	opt.nks = 3;
	int c;
	uint64_t ignored;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'e':
			if ((opt.nentries = bench_parse_list(optarg, opt.entries, 8)) < 1)
				goto bad;
			break;
		case 'k':
			if ((opt.nks = bench_parse_list(optarg, opt.ks, 8)) < 1)
				goto bad;
			break;
		case 's':
			if (bench_parse_count(optarg, &opt.samples) < 0 || !opt.samples)
				goto bad;
			break;
		case 'S':
			if (bench_parse_count(optarg, &opt.scan_samples) < 0 || !opt.scan_samples)
				goto bad;
			break;
		case 'T': /* accepted for the harness; the sample counts decide */
			if (bench_parse_count(optarg, &ignored) < 0)
				goto bad;
			break;
		case 'j': opt.json = optarg; break;
		case 'q':
			opt.entries[0] = 10000;
			opt.entries[1] = 100000;
			opt.nentries = 2;
			opt.samples = 2000;
			opt.scan_samples = 5;
			break;
		case 'h':
			printf("usage: prefix [--entries LIST (10k,1M)] [--members LIST (1,10,1000)] "
			       "[--samples N (20000)] [--scan-samples N (20)] [--json FILE] [--quick]\n");
			return 0;
		default: goto bad;
		}
	}
	uint64_t emax = 0;
	for (int i = 0; i < opt.nentries; i++)
		emax = opt.entries[i] > emax ? opt.entries[i] : emax;
	struct keyset ks;
	if (emax == 0 || keyset_make(&ks, emax, 22, 0) < 0)
		goto bad;
	if (timer_setup(&g_timer, NULL) < 0) {
		fprintf(stderr, "prefix: no usable timer\n");
		return 1;
	}
	snprintf(g_group, sizeof(g_group), "bench-prefix-%d", (int)getpid());
	atexit(cleanup);

	struct machine m;
	machine_get(&m);
	machine_print(stdout, &m);
	printf("timer:   %s, overhead %.1f ns (subtracted); groups of one member each under "
	       "room/k<k>/\n",
	       timer_name(&g_timer), g_timer.overhead_ns);
	printf("\n%9s %6s %-8s %9s %10s %10s %10s %10s %12s\n", "entries", "k", "query", "samples",
	       "p50 ns", "p90 ns", "p99 ns", "p99.9 ns", "max ns");
	struct row *rows = calloc((size_t)opt.nentries * opt.nks * NQUERIES, sizeof(*rows));
	int n = 0, failed = 0;
	for (int i = 0; i < opt.nentries && rows; i++) {
		int got = measure(opt.entries[i], &ks, rows + n);
		if (got < 0) {
			failed = 1;
			continue;
		}
		for (int j = 0; j < got; j++) {
			print_row(&rows[n + j]);
			failed |= rows[n + j].wrong != 0;
		}
		n += got;
	}
	if (!rows || (opt.json && write_json(&m, rows, n) < 0))
		failed = 1;
	free(rows);
	keyset_free(&ks);
	return failed;
bad:
	fprintf(stderr, "prefix: bad argument (see --help)\n");
	return 2;
}
