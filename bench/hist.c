/* SPDX-License-Identifier: MIT */
/*
 * Log-bucketed histogram and batch timer; see hist.h for the model.
 *
 * Bucket index of a value v: v itself below 2*HIST_SUB; above, with
 * shift = msb(v) - HIST_SUB_BITS and top = v >> shift (HIST_SUB <= top <
 * 2*HIST_SUB), index = shift*HIST_SUB + top.  Indices are contiguous and
 * monotonic in v, and each bucket spans 2^shift <= v/HIST_SUB.
 */
#include "hist.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static unsigned bucket_of(uint64_t v)
{
	if (v < 2 * HIST_SUB)
		return (unsigned)v;
	unsigned msb = 63u - (unsigned)__builtin_clzll(v);
	unsigned shift = msb - HIST_SUB_BITS;
	return shift * HIST_SUB + (unsigned)(v >> shift);
}

static void bucket_range(unsigned idx, uint64_t *low, uint64_t *width)
{
	if (idx < 2 * HIST_SUB) {
		*low = idx;
		*width = 1;
		return;
	}
	unsigned shift = idx / HIST_SUB - 1;
	uint64_t top = idx - (uint64_t)shift * HIST_SUB;
	*low = top << shift;
	*width = (uint64_t)1 << shift;
}

void hist_init(struct hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min_ps = UINT64_MAX;
}

void hist_record_ps(struct hist *h, uint64_t ps, uint64_t n)
{
	if (n == 0)
		return;
	h->bucket[bucket_of(ps)] += n;
	h->count += n;
	h->sum_ps += (double)ps * (double)n;
	if (ps < h->min_ps)
		h->min_ps = ps;
	if (ps > h->max_ps)
		h->max_ps = ps;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
	if (src->count == 0)
		return;
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		dst->bucket[i] += src->bucket[i];
	dst->count += src->count;
	dst->sum_ps += src->sum_ps;
	if (src->min_ps < dst->min_ps)
		dst->min_ps = src->min_ps;
	if (src->max_ps > dst->max_ps)
		dst->max_ps = src->max_ps;
}

double hist_quantile_ns(const struct hist *h, double q)
{
	if (h->count == 0)
		return 0.0;
	if (q <= 0.0)
		return (double)h->min_ps / 1000.0;
	if (q >= 1.0)
		return (double)h->max_ps / 1000.0;
	uint64_t rank = (uint64_t)ceil(q * (double)h->count);
	if (rank == 0)
		rank = 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->bucket[i];
		if (seen >= rank) {
			uint64_t low, width;
			bucket_range(i, &low, &width);
			double v = (double)low + (double)(width - 1) / 2.0;
			if (v < (double)h->min_ps)
				v = (double)h->min_ps;
			if (v > (double)h->max_ps)
				v = (double)h->max_ps;
			return v / 1000.0;
		}
	}
	return (double)h->max_ps / 1000.0;
}

double hist_mean_ns(const struct hist *h)
{
	return h->count ? h->sum_ps / (double)h->count / 1000.0 : 0.0;
}

double hist_max_ns(const struct hist *h)
{
	return h->count ? (double)h->max_ps / 1000.0 : 0.0;
}

double hist_min_ns(const struct hist *h)
{
	return h->count ? (double)h->min_ps / 1000.0 : 0.0;
}

/* ------------------------------------------------------------------------ */

uint64_t timer_clock_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cpu_has_invariant_tsc(void)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (!f)
		return 0;
	char line[8192];
	int constant = 0, nonstop = 0, rdtscp = 0;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "flags", 5) != 0)
			continue;
		constant = strstr(line, " constant_tsc") != NULL;
		nonstop = strstr(line, " nonstop_tsc") != NULL;
		rdtscp = strstr(line, " rdtscp") != NULL;
		break;
	}
	fclose(f);
	return constant && nonstop && rdtscp;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int timer_setup(struct timer_info *t, const char *force)
{
	memset(t, 0, sizeof(*t));
	t->kind = TIMER_CLOCK;
	t->ns_per_tick = 1.0;
	if (BENCH_HAVE_TSC && (force == NULL || strcmp(force, "tsc") == 0)) {
		if (force != NULL || cpu_has_invariant_tsc())
			t->kind = TIMER_TSC;
	} else if (force != NULL && strcmp(force, "clock") != 0) {
		fprintf(stderr, "unknown timer '%s' (tsc or clock)\n", force);
		return -1;
	}
	if (t->kind == TIMER_TSC) {
		/* Three 50 ms windows; the median ratio is kept. */
		double r[3];
		for (int i = 0; i < 3; i++) {
			uint64_t c0 = timer_clock_ns(), k0 = timer_tsc();
			struct timespec d = {0, 50 * 1000 * 1000};
			nanosleep(&d, NULL);
			uint64_t c1 = timer_clock_ns(), k1 = timer_tsc();
			r[i] = (double)(c1 - c0) / (double)(k1 - k0);
		}
		qsort(r, 3, sizeof(r[0]), cmp_double);
		t->ns_per_tick = r[1];
	}
	/* Overhead: many back-to-back pairs; median and minimum. */
	enum { N = 20001 };
	static double d[N];
	for (int i = 0; i < N; i++) {
		uint64_t a = timer_now(t);
		uint64_t b = timer_now(t);
		d[i] = (double)(b - a) * t->ns_per_tick;
	}
	qsort(d, N, sizeof(d[0]), cmp_double);
	t->overhead_ns = d[N / 2];
	t->overhead_min_ns = d[0];
	return 0;
}

const char *timer_name(const struct timer_info *t)
{
	return t->kind == TIMER_TSC ? "rdtscp+lfence (TSC, calibrated against CLOCK_MONOTONIC)"
				    : "clock_gettime(CLOCK_MONOTONIC)";
}
