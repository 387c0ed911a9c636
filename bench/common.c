/* SPDX-License-Identifier: MIT */
/* Helpers shared by the benchmark programs; see common.h. */
#include "common.h"

#include <errno.h>
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

int bench_parse_count(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || v < 0)
		return -1;
	switch (*end) {
	case 'k': case 'K': v *= 1e3; end++; break;
	case 'm': case 'M': v *= 1e6; end++; break;
	case 'g': case 'G': v *= 1e9; end++; break;
	default: break;
	}
	if (*end)
		return -1;
	*out = (uint64_t)(v + 0.5);
	return 0;
}

int bench_parse_list(const char *s, uint64_t *out, int cap)
{
	int n = 0;
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", s);
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (n >= cap || bench_parse_count(t, &out[n]) < 0)
			return -1;
		n++;
	}
	return n;
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
