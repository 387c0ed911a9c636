/* SPDX-License-Identifier: MIT */
/*
 * Log-bucketed latency histogram for the benchmark programs, in the manner of
 * HdrHistogram: each power-of-two range of values is split into 128 linear
 * sub-buckets, so any recorded value is reported to within 1/128 (< 0.8 %).
 * Values are kept in picoseconds so that per-operation figures derived from a
 * batch (a few tens of nanoseconds, with a fractional part) keep their
 * precision; every query answers in nanoseconds as a double.
 *
 * A histogram is a flat struct with no pointers, so a child process can write
 * one into a shared mapping and the parent can merge it.
 *
 * Also here: the timer used to time batches (TSC read with rdtscp when the CPU
 * has an invariant TSC, else clock_gettime(CLOCK_MONOTONIC)), its calibration
 * against CLOCK_MONOTONIC, and a measurement of its own overhead.
 */
#ifndef BENCH_HIST_H
#define BENCH_HIST_H

#include <stddef.h>
#include <stdint.h>

#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
/* Values below 2*HIST_SUB are exact; then 56 ranges of HIST_SUB buckets. */
#define HIST_BUCKETS (2 * HIST_SUB + (64 - HIST_SUB_BITS - 1) * HIST_SUB)

struct hist {
	uint64_t count;
	uint64_t min_ps;
	uint64_t max_ps;
	double sum_ps;
	uint64_t bucket[HIST_BUCKETS];
};

void hist_init(struct hist *h);
/* Records n occurrences of a value given in picoseconds. */
void hist_record_ps(struct hist *h, uint64_t ps, uint64_t n);
static inline void hist_record_ns(struct hist *h, uint64_t ns)
{
	hist_record_ps(h, ns * 1000u, 1);
}
void hist_merge(struct hist *dst, const struct hist *src);
/* Value (ns) at quantile q in [0,1]: the midpoint of the bucket holding the
 * ceil(q*count)-th smallest value, clamped to [min, max].  0 when empty. */
double hist_quantile_ns(const struct hist *h, double q);
double hist_mean_ns(const struct hist *h);
double hist_max_ns(const struct hist *h);
double hist_min_ns(const struct hist *h);

/* ------------------------------------------------------------------------ */
/* Timer                                                                    */
/* ------------------------------------------------------------------------ */

enum timer_kind { TIMER_TSC, TIMER_CLOCK };

struct timer_info {
	enum timer_kind kind;
	double ns_per_tick;  /* 1.0 for TIMER_CLOCK */
	double overhead_ns;  /* median cost of one back-to-back pair of reads */
	double overhead_min_ns;
};

/* Picks the timer (force: "tsc", "clock" or NULL for automatic), calibrates
 * the TSC against CLOCK_MONOTONIC over ~50 ms and measures the overhead. */
int timer_setup(struct timer_info *t, const char *force);
const char *timer_name(const struct timer_info *t);

uint64_t timer_clock_ns(void);

#if defined(__x86_64__) || defined(__i386__)
static inline uint64_t timer_tsc(void)
{
	uint32_t lo, hi, aux;
	/* rdtscp waits for earlier instructions; the lfence keeps later ones
	 * from starting before the read. */
	__asm__ __volatile__("rdtscp\n\tlfence" : "=a"(lo), "=d"(hi), "=c"(aux)::"memory");
	return ((uint64_t)hi << 32) | lo;
}
#define BENCH_HAVE_TSC 1
#else
static inline uint64_t timer_tsc(void)
{
	return timer_clock_ns();
}
#define BENCH_HAVE_TSC 0
#endif

/* Ticks of the chosen timer. */
static inline uint64_t timer_now(const struct timer_info *t)
{
	return t->kind == TIMER_TSC ? timer_tsc() : timer_clock_ns();
}

#endif
