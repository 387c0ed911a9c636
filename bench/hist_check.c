/* SPDX-License-Identifier: MIT */
/*
 * hist-check: proves the harness's own tools before any figure is trusted.
 * The histogram must report known distributions within its stated precision
 * and merge exactly; the timer must calibrate to a sane rate; the key hash
 * must spread the harness's sequential keys evenly over power-of-two tables.
 * Exits non-zero on any failure.  Takes well under a second.
 */
#include "common.h"
#include "hist.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int failures;

static void expect_near(const char *what, double got, double want, double rel)
{
	double err = fabs(got - want) / (want != 0 ? want : 1);
	if (err > rel) {
		printf("FAIL %s: got %.3f want %.3f (error %.2f%% > %.2f%%)\n", what, got, want,
		       err * 100, rel * 100);
		failures++;
	}
}

static void check_hist(void)
{
	static struct hist a, b, all;
	hist_init(&a);
	hist_init(&b);
	hist_init(&all);
	/* Uniform 1..100000 ns, split across two histograms. */
	for (uint64_t v = 1; v <= 100000; v++) {
		hist_record_ns(v & 1 ? &a : &b, v);
		hist_record_ns(&all, v);
	}
	hist_merge(&a, &b);
	if (a.count != all.count || a.max_ps != all.max_ps || a.min_ps != all.min_ps) {
		printf("FAIL merge: counts or extremes differ\n");
		failures++;
	}
	static const double qs[] = {0.5, 0.9, 0.99, 0.999};
	for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
		char what[32];
		snprintf(what, sizeof(what), "uniform q%.3f", qs[i]);
		expect_near(what, hist_quantile_ns(&a, qs[i]), qs[i] * 100000, 0.008);
	}
	expect_near("uniform max", hist_max_ns(&a), 100000, 0);
	expect_near("uniform mean", hist_mean_ns(&a), 50000.5, 1e-9);

	/* Fractional ns survive (values are kept in picoseconds). */
	struct hist *c = malloc(sizeof(*c));
	hist_init(c);
	hist_record_ps(c, 23400, 16);
	expect_near("23.4 ns x16", hist_quantile_ns(c, 0.5), 23.4, 0.008);
	if (c->count != 16) {
		printf("FAIL weighted count\n");
		failures++;
	}
	/* Every bucket boundary: a value maps to a bucket that contains it. */
	for (int s = 0; s < 63; s++) {
		uint64_t v = (uint64_t)1 << s;
		hist_init(c);
		hist_record_ps(c, v + v / 3, 1);
		expect_near("single value", hist_quantile_ns(c, 0.5) * 1000, (double)(v + v / 3),
			    0.008);
	}
	free(c);
}

static void check_timer(void)
{
	struct timer_info t;
	if (timer_setup(&t, NULL) < 0) {
		printf("FAIL timer setup\n");
		failures++;
		return;
	}
	printf("timer: %s, %.4f ns/tick, overhead %.1f ns (min %.1f)\n", timer_name(&t),
	       t.ns_per_tick, t.overhead_ns, t.overhead_min_ns);
	uint64_t c0 = timer_clock_ns(), k0 = timer_now(&t);
	struct timespec d = {0, 20 * 1000 * 1000};
	nanosleep(&d, NULL);
	uint64_t c1 = timer_clock_ns(), k1 = timer_now(&t);
	expect_near("timer vs CLOCK_MONOTONIC", (double)(k1 - k0) * t.ns_per_tick,
		    (double)(c1 - c0), 0.01);
	if (t.overhead_ns <= 0 || t.overhead_ns > 2000) {
		printf("FAIL timer overhead %.1f ns\n", t.overhead_ns);
		failures++;
	}
}

static void check_hash(void)
{
	struct keyset ks;
	const size_t n = 1 << 16;
	if (keyset_make(&ks, n, 22, 0) < 0) {
		printf("FAIL keyset\n");
		failures++;
		return;
	}
	/* Chi-square of bucket loads, low and high bits, 4096 buckets. */
	enum { B = 4096 };
	static unsigned lo[B], hi[B];
	for (size_t i = 0; i < n; i++) {
		uint64_t h = bench_hash(keyset_hit(&ks, i), ks.key_len);
		lo[h & (B - 1)]++;
		hi[h >> 52]++;
	}
	double e = (double)n / B, x_lo = 0, x_hi = 0;
	for (int i = 0; i < B; i++) {
		x_lo += (lo[i] - e) * (lo[i] - e) / e;
		x_hi += (hi[i] - e) * (hi[i] - e) / e;
	}
	/* Expected about B-1 with sd sqrt(2(B-1)) ~ 90. */
	printf("hash: chi-square over %d buckets: low bits %.0f, high bits %.0f (expect ~%d)\n", B,
	       x_lo, x_hi, B - 1);
	if (x_lo > B + 500 || x_hi > B + 500) {
		printf("FAIL hash distribution\n");
		failures++;
	}
	keyset_free(&ks);
}

int main(void)
{
	check_hist();
	check_timer();
	check_hash();
	printf("%s\n", failures ? "hist-check: FAILED" : "hist-check: ok");
	return failures ? 1 : 0;
}
