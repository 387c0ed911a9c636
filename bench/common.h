/* SPDX-License-Identifier: MIT */
/*
 * Pieces shared by the benchmark programs: the 64-bit key hash used by every
 * reference table, the key set, a small PRNG, machine facts, CPU pinning,
 * anonymous shared mappings for results, and JSON output helpers.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Hash                                                                     */
/* ------------------------------------------------------------------------ */

static inline uint64_t bench_rotl(uint64_t x, unsigned r)
{
	return (x << r) | (x >> (64 - r));
}

/* Mixes a 64-bit word so that every input bit affects every output bit
 * (two multiply / xor-shift rounds with odd constants). */
static inline uint64_t bench_mix64(uint64_t x)
{
	x ^= x >> 32;
	x *= 0xd6e8feb86659fd93ull;
	x ^= x >> 32;
	x *= 0xd6e8feb86659fd93ull;
	x ^= x >> 32;
	return x;
}

/* The hash every reference implementation uses for the same keys: 8-byte
 * words folded with a multiply and a rotation, then a final mix. */
static inline uint64_t bench_hash(const void *key, size_t len)
{
	const unsigned char *p = (const unsigned char *)key;
	uint64_t h = 0x9e3779b97f4a7c15ull ^ ((uint64_t)len * 0xff51afd7ed558ccdull);
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		h = bench_rotl(h ^ (w * 0xc4ceb9fe1a85ec53ull), 29) * 0x9fb21c651e98df25ull;
		p += 8;
		len -= 8;
	}
	if (len > 0) {
		uint64_t w = 0;
		memcpy(&w, p, len);
		h = bench_rotl(h ^ (w * 0xc4ceb9fe1a85ec53ull), 29) * 0x9fb21c651e98df25ull;
	}
	return bench_mix64(h);
}

/* ------------------------------------------------------------------------ */
/* PRNG (xorshift64*, one per process)                                       */
/* ------------------------------------------------------------------------ */

static inline uint64_t bench_rand(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* Uniform in [0, n) without a division (Lemire's multiply-shift). */
static inline uint64_t bench_below(uint64_t *s, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)bench_rand(s) * n) >> 64);
}

/* ------------------------------------------------------------------------ */
/* Key set                                                                  */
/* ------------------------------------------------------------------------ */

/* Keys live in one flat array with a fixed stride (a multiple of 8, so a key
 * of up to 32 bytes never straddles a cache line).  Key i for i < count is a
 * "hit" key; the miss keys use numbers count..2*count-1 and are never
 * inserted.  With one length (key_min == key_max) the form is, for 22 bytes,
 * "user/000000123456/sess"; a longer length pads with 'x', a shorter one is
 * "k" + zero-padded number.  With a range of lengths (keyset_make_mix) key n
 * has a length in [key_min, key_max] drawn from a hash of n and the form
 * "user/session/" + zero-padded number, e.g. "user/session/000001234567". */
struct keyset {
	size_t count;     /* hit keys */
	size_t key_len;   /* the longest key (key_max) */
	size_t key_min;   /* the shortest key; == key_len for one length */
	size_t stride;
	char *hit;        /* count * stride */
	char *miss;       /* count * stride, or NULL */
};

int keyset_make(struct keyset *ks, size_t count, size_t key_len, int with_misses);
/* Keys of lengths key_min..key_max (8 <= key_min <= key_max <= 1000). */
int keyset_make_mix(struct keyset *ks, size_t count, size_t key_min, size_t key_max,
		    int with_misses);
void keyset_free(struct keyset *ks);
/* Length of key number n. */
static inline size_t keyset_len(const struct keyset *ks, uint64_t n)
{
	size_t span = ks->key_len - ks->key_min + 1;
	return span == 1 ? ks->key_len : ks->key_min + (size_t)(bench_mix64(n ^ 0x6b79) % span);
}
/* Formats key number n into buf (at least key_len bytes); returns its length. */
size_t keyset_format(const struct keyset *ks, uint64_t n, char *buf);
static inline const char *keyset_hit(const struct keyset *ks, size_t i)
{
	return ks->hit + i * ks->stride;
}
static inline size_t keyset_hit_len(const struct keyset *ks, size_t i)
{
	return keyset_len(ks, i);
}
static inline const char *keyset_miss(const struct keyset *ks, size_t i)
{
	return ks->miss + i * ks->stride;
}
static inline size_t keyset_miss_len(const struct keyset *ks, size_t i)
{
	return keyset_len(ks, ks->count + i);
}
/* Mean key length over the hit keys. */
double keyset_mean_len(const struct keyset *ks);
/* Parses "L" or "A-B" (key lengths) into *lo, *hi; -1 if malformed. */
int keyset_parse_lens(const char *s, uint64_t *lo, uint64_t *hi);

/* ------------------------------------------------------------------------ */
/* Machine, processes                                                       */
/* ------------------------------------------------------------------------ */

struct machine {
	char cpu[128];
	int cores;         /* online */
	char kernel[128];
	char clocksource[32];
	char date[40];     /* UTC, ISO 8601 */
	char host[64];
};
void machine_get(struct machine *m);
void machine_print(FILE *f, const struct machine *m);
void machine_json(FILE *f, const struct machine *m);

/* Pins the calling process to cpu (mod online CPUs).  Returns 0 or -errno. */
int bench_pin(int cpu);

/* An anonymous MAP_SHARED mapping: survives fork, seen by parent and children. */
void *bench_shared_alloc(size_t bytes);
void bench_shared_free(void *p, size_t bytes);

/* Waits for every pid; returns the number that did not exit with status 0. */
int bench_wait_all(const int *pids, int n);

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

/* Numbers on the command line are written the same way for every option of
 * every program: decimal digits, an optional fraction, and an optional suffix
 * k, M or G (x 1e3, x 1e6, x 1e9, either case): 250, 10k, 1.5M, 0.25.
 * Nothing else is a number: no sign, space, exponent, hex, inf or nan, and
 * no trailing characters. */

/* A count: the value must come out whole ("1.5k" is 1500, "2.5" is refused)
 * and fit 64 bits.  Returns 0 and sets *out, or -1 and leaves it. */
int bench_parse_count(const char *s, uint64_t *out);
/* A real number >= 0 (rates, seconds, ratios), same notation.  0 or -1. */
int bench_parse_real(const char *s, double *out);
/* Parses "a,b,c" of counts into out (at most cap, no empty item); returns the
 * count or -1. */
int bench_parse_list(const char *s, uint64_t *out, int cap);

/* The value of option `name` (given as arg) as a count, a real or a list of
 * counts within [min, max], or else a message on stderr that names the
 * program, the option, the value and what was expected, and exit status 2. */
uint64_t bench_opt_count(const char *prog, const char *name, const char *arg, uint64_t min,
			 uint64_t max);
double bench_opt_real(const char *prog, const char *name, const char *arg, double min, double max);
int bench_opt_list(const char *prog, const char *name, const char *arg, uint64_t *out, int cap,
		   uint64_t min, uint64_t max);
/* A length or a range of lengths (`22`, `22-30`), both ends within [min, max]. */
void bench_opt_lens(const char *prog, const char *name, const char *arg, uint64_t min,
		    uint64_t max, uint64_t *lo, uint64_t *hi);

/* JSON string with escaping. */
void json_str(FILE *f, const char *s);

/* A histogram's quantiles as JSON members "<prefix>p50_ns" ... "<prefix>max_ns"
 * (no braces, no leading or trailing comma). */
struct hist;
void json_hist(FILE *f, const char *prefix, const struct hist *h);
/* The end of a text row: " p50 p90 p99 p99.9 max" in microseconds, columns
 * 9 wide, and the newline. */
void print_hist_us(const struct hist *h);

#endif
