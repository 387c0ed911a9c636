/* SPDX-License-Identifier: MIT */
/* Helpers shared by the benchmark programs; see common.h. */
#include "common.h"
#include "hist.h"

#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int keyset_make_mix(struct keyset *ks, size_t count, size_t key_min, size_t key_max,
		    int with_misses)
{
	memset(ks, 0, sizeof(*ks));
	if (count == 0 || key_min < 8 || key_min > key_max || key_max > 1000)
		return -EINVAL;
	/* The short forms need enough digits for 2*count numbers. */
	size_t digits = key_min == key_max ? key_min - 1 : key_min < 22 ? key_min - 1 : key_min - 13;
	if (key_min < 22 || key_min != key_max) {
		uint64_t lim = 1;
		for (size_t d = 0; d < digits && lim < (uint64_t)1e18; d++)
			lim *= 10;
		if ((uint64_t)count * 2 > lim)
			return -ERANGE;
	}
	ks->count = count;
	ks->key_len = key_max;
	ks->key_min = key_min;
	ks->stride = (key_max + 7) & ~(size_t)7;
	ks->hit = bench_shared_alloc(count * ks->stride);
	if (!ks->hit)
		return -ENOMEM;
	if (with_misses) {
		ks->miss = bench_shared_alloc(count * ks->stride);
		if (!ks->miss)
			return -ENOMEM;
	}
	for (size_t i = 0; i < count; i++) {
		keyset_format(ks, i, ks->hit + i * ks->stride);
		if (ks->miss)
			keyset_format(ks, count + i, ks->miss + i * ks->stride);
	}
	return 0;
}

int keyset_make(struct keyset *ks, size_t count, size_t key_len, int with_misses)
{
	return keyset_make_mix(ks, count, key_len, key_len, with_misses);
}

void keyset_free(struct keyset *ks)
{
	if (ks->hit)
		bench_shared_free(ks->hit, ks->count * ks->stride);
	if (ks->miss)
		bench_shared_free(ks->miss, ks->count * ks->stride);
	memset(ks, 0, sizeof(*ks));
}

size_t keyset_format(const struct keyset *ks, uint64_t n, char *buf)
{
	char tmp[64];
	size_t len = keyset_len(ks, n);
	if (ks->key_min != ks->key_len && len >= 22) {
		snprintf(tmp, sizeof(tmp), "user/session/%0*llu", (int)(len - 13), (unsigned long long)n);
		memcpy(buf, tmp, len);
	} else if (len >= 22) {
		snprintf(tmp, sizeof(tmp), "user/%012llu/sess", (unsigned long long)n);
		memcpy(buf, tmp, 22);
		memset(buf + 22, 'x', len - 22);
	} else {
		snprintf(tmp, sizeof(tmp), "k%0*llu", (int)(len - 1), (unsigned long long)n);
		memcpy(buf, tmp, len);
	}
	return len;
}

double keyset_mean_len(const struct keyset *ks)
{
	double sum = 0;
	for (size_t i = 0; i < ks->count; i++)
		sum += (double)keyset_hit_len(ks, i);
	return ks->count ? sum / (double)ks->count : 0;
}

int keyset_parse_lens(const char *s, uint64_t *lo, uint64_t *hi)
{
	char buf[64];
	snprintf(buf, sizeof(buf), "%s", s);
	char *dash = strchr(buf, '-');
	if (dash)
		*dash = 0;
	if (bench_parse_count(buf, lo) < 0 || (dash && bench_parse_count(dash + 1, hi) < 0))
		return -1;
	if (!dash)
		*hi = *lo;
	return *lo <= *hi ? 0 : -1;
}

static void read_first_line_with(const char *path, const char *prefix, char *out, size_t cap)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	char line[1024];
	size_t pl = strlen(prefix);
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, prefix, pl) != 0)
			continue;
		char *v = strchr(line, ':');
		v = v ? v + 1 : line + pl;
		while (*v == ' ' || *v == '\t')
			v++;
		v[strcspn(v, "\n")] = 0;
		size_t l = strlen(v);
		if (l >= cap)
			l = cap - 1;
		memcpy(out, v, l);
		out[l] = 0;
		break;
	}
	fclose(f);
}

void machine_get(struct machine *m)
{
	memset(m, 0, sizeof(*m));
	snprintf(m->cpu, sizeof(m->cpu), "unknown");
	read_first_line_with("/proc/cpuinfo", "model name", m->cpu, sizeof(m->cpu));
	m->cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
	struct utsname u;
	if (uname(&u) == 0) {
		snprintf(m->kernel, sizeof(m->kernel), "%.20s %.80s %.20s", u.sysname, u.release, u.machine);
		snprintf(m->host, sizeof(m->host), "%.60s", u.nodename);
	}
	FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
	if (f) {
		if (fgets(m->clocksource, sizeof(m->clocksource), f))
			m->clocksource[strcspn(m->clocksource, "\n")] = 0;
		fclose(f);
	}
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(m->date, sizeof(m->date), "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void machine_print(FILE *f, const struct machine *m)
{
	fprintf(f, "machine: %s, %d online CPUs, %s, clocksource %s\n", m->cpu, m->cores, m->kernel,
		m->clocksource[0] ? m->clocksource : "?");
	fprintf(f, "date:    %s\n", m->date);
}

void machine_json(FILE *f, const struct machine *m)
{
	fprintf(f, "{\"cpu\": ");
	json_str(f, m->cpu);
	fprintf(f, ", \"cores\": %d, \"kernel\": ", m->cores);
	json_str(f, m->kernel);
	fprintf(f, ", \"clocksource\": ");
	json_str(f, m->clocksource);
	fprintf(f, ", \"date\": ");
	json_str(f, m->date);
	fprintf(f, "}");
}

int bench_pin(int cpu)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n <= 0)
		n = 1;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu % n, &set);
	return sched_setaffinity(0, sizeof(set), &set) == 0 ? 0 : -errno;
}

void *bench_shared_alloc(size_t bytes)
{
	void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		       -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

void bench_shared_free(void *p, size_t bytes)
{
	if (p)
		munmap(p, bytes ? bytes : 1);
}

int bench_wait_all(const int *pids, int n)
{
	int bad = 0;
	for (int i = 0; i < n; i++) {
		if (pids[i] <= 0)
			continue;
		int st;
		while (waitpid(pids[i], &st, 0) < 0 && errno == EINTR)
			;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			bad++;
	}
	return bad;
}

/* Checks the notation (see common.h): on success the digits before and after
 * the point and the suffix's multiplier, else -1. */
static int split_number(const char *s, const char **whole, size_t *whole_len, const char **frac,
			size_t *frac_len, uint64_t *mult)
{
	const char *p = s;
	*whole = p;
	while (*p >= '0' && *p <= '9')
		p++;
	*whole_len = (size_t)(p - s);
	*frac = p;
	*frac_len = 0;
	if (*p == '.') {
		*frac = ++p;
		while (*p >= '0' && *p <= '9')
			p++;
		*frac_len = (size_t)(p - *frac);
		if (!*frac_len)
			return -1; /* "5." */
	}
	if (!*whole_len && !*frac_len)
		return -1; /* empty, a sign, a space, "inf" ... */
	switch (*p) {
	case 'k': case 'K': *mult = 1000; p++; break;
	case 'm': case 'M': *mult = 1000000; p++; break;
	case 'g': case 'G': *mult = 1000000000; p++; break;
	default: *mult = 1; break;
	}
	return *p ? -1 : 0;
}

int bench_parse_count(const char *s, uint64_t *out)
{
	const char *whole, *frac;
	size_t wlen, flen;
	uint64_t mult;
	if (!s || split_number(s, &whole, &wlen, &frac, &flen, &mult) < 0 || flen > 18)
		return -1;
	unsigned __int128 v = 0, num = 0, den = 1;
	for (size_t i = 0; i < wlen; i++) {
		v = v * 10 + (unsigned)(whole[i] - '0');
		if (v > UINT64_MAX)
			return -1;
	}
	for (size_t i = 0; i < flen; i++) {
		num = num * 10 + (unsigned)(frac[i] - '0');
		den *= 10;
	}
	/* The fraction times the multiplier must be whole: 1.5k, not 1.5. */
	if (num * mult % den)
		return -1;
	v = v * mult + num * mult / den;
	if (v > UINT64_MAX)
		return -1;
	*out = (uint64_t)v;
	return 0;
}

int bench_parse_real(const char *s, double *out)
{
	const char *whole, *frac;
	size_t wlen, flen;
	uint64_t mult;
	char buf[64];
	if (!s || split_number(s, &whole, &wlen, &frac, &flen, &mult) < 0 ||
	    wlen + flen + 2 > sizeof(buf))
		return -1;
	/* Digits and a point only, so strtod can read nothing else. */
	snprintf(buf, sizeof(buf), "%.*s.%.*s", (int)wlen, whole, (int)flen, flen ? frac : "0");
	*out = strtod(buf, NULL) * (double)mult;
	return 0;
}

int bench_parse_list(const char *s, uint64_t *out, int cap)
{
	int n = 0;
	for (const char *p = s;; n++) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		char item[64];
		if (n >= cap || len == 0 || len >= sizeof(item))
			return -1;
		memcpy(item, p, len);
		item[len] = 0;
		if (bench_parse_count(item, &out[n]) < 0)
			return -1;
		if (!comma)
			return n + 1;
		p = comma + 1;
	}
}

static const char notation[] =
	"digits with an optional fraction and k, M or G suffix, e.g. 500, 10k, 1.5M";

/* A bound as the user would write it: 10M rather than 10000000. */
static const char *bound(double v, char buf[32])
{
	static const struct { double mult; char suffix; } units[] = {
		{1e9, 'G'}, {1e6, 'M'}, {1e3, 'k'},
	};
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (v >= units[i].mult && fmod(v, units[i].mult) == 0) {
			snprintf(buf, 32, "%.0f%c", v / units[i].mult, units[i].suffix);
			return buf;
		}
	}
	snprintf(buf, 32, "%.15g", v);
	return buf;
}

static _Noreturn void bad_value(const char *prog, const char *name, const char *arg,
				const char *what)
{
	fprintf(stderr, "%s: --%s '%s': not %s (%s)\n", prog, name, arg, what, notation);
	exit(2);
}

/* Exits unless min <= v <= max; `item` names a list item (0: not a list).
 * Compared as doubles: exact for every bound the programs use (< 2^53). */
static void check_range(const char *prog, const char *name, const char *arg, double v,
			double min, double max, int item)
{
	if (v >= min && v <= max)
		return;
	char lo[32], hi[32], which[32] = "";
	if (item)
		snprintf(which, sizeof(which), "item %d ", item);
	fprintf(stderr, "%s: --%s '%s': %sout of range, %s to %s\n", prog, name, arg, which,
		bound(min, lo), bound(max, hi));
	exit(2);
}

uint64_t bench_opt_count(const char *prog, const char *name, const char *arg, uint64_t min,
			 uint64_t max)
{
	uint64_t v;
	if (bench_parse_count(arg, &v) < 0)
		bad_value(prog, name, arg, "a whole number");
	check_range(prog, name, arg, (double)v, (double)min, (double)max, 0);
	return v;
}

double bench_opt_real(const char *prog, const char *name, const char *arg, double min, double max)
{
	double v;
	if (bench_parse_real(arg, &v) < 0)
		bad_value(prog, name, arg, "a number");
	check_range(prog, name, arg, v, min, max, 0);
	return v;
}

int bench_opt_list(const char *prog, const char *name, const char *arg, uint64_t *out, int cap,
		   uint64_t min, uint64_t max)
{
	int n = bench_parse_list(arg, out, cap);
	if (n < 0) {
		char what[64];
		snprintf(what, sizeof(what), "a list of 1 to %d comma-separated whole numbers", cap);
		bad_value(prog, name, arg, what);
	}
	for (int i = 0; i < n; i++)
		check_range(prog, name, arg, (double)out[i], (double)min, (double)max, i + 1);
	return n;
}

void bench_opt_lens(const char *prog, const char *name, const char *arg, uint64_t min,
		    uint64_t max, uint64_t *lo, uint64_t *hi)
{
	if (keyset_parse_lens(arg, lo, hi) < 0)
		bad_value(prog, name, arg, "a length or a range LO-HI of whole numbers");
	check_range(prog, name, arg, (double)*lo, (double)min, (double)max, 0);
	check_range(prog, name, arg, (double)*hi, (double)min, (double)max, 0);
}

void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

void json_hist(FILE *f, const char *prefix, const struct hist *h)
{
	fprintf(f,
		"\"%sp50_ns\": %.1f, \"%sp90_ns\": %.1f, \"%sp99_ns\": %.1f, \"%sp999_ns\": %.1f, "
		"\"%smax_ns\": %.1f",
		prefix, hist_quantile_ns(h, 0.5), prefix, hist_quantile_ns(h, 0.9), prefix,
		hist_quantile_ns(h, 0.99), prefix, hist_quantile_ns(h, 0.999), prefix,
		hist_max_ns(h));
}

void print_hist_us(const struct hist *h)
{
	printf(" %9.1f %9.1f %9.1f %9.1f %9.1f\n", hist_quantile_ns(h, 0.5) / 1e3,
	       hist_quantile_ns(h, 0.9) / 1e3, hist_quantile_ns(h, 0.99) / 1e3,
	       hist_quantile_ns(h, 0.999) / 1e3, hist_max_ns(h) / 1e3);
}
