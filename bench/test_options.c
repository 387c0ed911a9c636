/* SPDX-License-Identifier: MIT */
/*
 * The benchmarks' number notation (bench/common.c): every program reads
 * counts, rates and durations the way bench/README.md writes them (10k,
 * 1.5M, 0.25), and refuses anything else with a message and exit status 2
 * instead of reading "10k" as 10 or "10q" as 10.
 *
 * Arguments: the bench programs to run with a malformed value.
 */
#include <check.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "tc.h"

static char **g_programs;
static int g_nprograms;

static uint64_t count_of(const char *s)
{
	uint64_t v = 12345;

	ck_assert_msg(bench_parse_count(s, &v) == 0, "'%s' refused", s);
	return v;
}

static void count_refused(const char *s)
{
	uint64_t v = 12345;

	ck_assert_msg(bench_parse_count(s, &v) == -1, "'%s' accepted as %llu", s,
		      (unsigned long long)v);
	ck_assert_uint_eq(v, 12345); /* left as it was */
}

START_TEST(test_counts)
{
	ck_assert_uint_eq(count_of("0"), 0);
	ck_assert_uint_eq(count_of("250"), 250);
	ck_assert_uint_eq(count_of("10k"), 10000);
	ck_assert_uint_eq(count_of("10K"), 10000);
	ck_assert_uint_eq(count_of("1M"), 1000000);
	ck_assert_uint_eq(count_of("1m"), 1000000);
	ck_assert_uint_eq(count_of("2G"), 2000000000);
	ck_assert_uint_eq(count_of("1.5M"), 1500000);
	ck_assert_uint_eq(count_of("1.1k"), 1100);
	ck_assert_uint_eq(count_of("0.5k"), 500);
	ck_assert_uint_eq(count_of(".5k"), 500);
	ck_assert_uint_eq(count_of("007"), 7);
	ck_assert_uint_eq(count_of("18446744073709551615"), UINT64_MAX);
	ck_assert_uint_eq(count_of("18446744073.709551615G"), UINT64_MAX);
}
END_TEST

START_TEST(test_counts_refused)
{
	static const char *const bad[] = {
		"", "-5", "+5", " 5", "5 ", "10q", "10kk", "k", ".", "5.", "2.5", "1.0001k",
		"1e3", "0x10", "inf", "nan", "10k0", "1,000", "18446744073709551616",
		"18446744073709552k", "99999999999999999999999",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		count_refused(bad[i]);
	count_refused(NULL);
}
END_TEST

START_TEST(test_reals)
{
	double v = -1;

	ck_assert_int_eq(bench_parse_real("10k", &v), 0);
	ck_assert(v == 10000.0);
	ck_assert_int_eq(bench_parse_real("0.25", &v), 0);
	ck_assert(v == 0.25);
	ck_assert_int_eq(bench_parse_real("2.5", &v), 0);
	ck_assert(v == 2.5);
	ck_assert_int_eq(bench_parse_real("1.5M", &v), 0);
	ck_assert(v == 1500000.0);
	ck_assert_int_eq(bench_parse_real(".5", &v), 0);
	ck_assert(v == 0.5);
	v = -1;
	static const char *const bad[] = { "", "-1", "1e3", "10q", "inf", "nan", "0x1p3", " 1", "1." };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(bench_parse_real(bad[i], &v) == -1, "'%s' accepted", bad[i]);
	ck_assert(v == -1);
}
END_TEST

START_TEST(test_lists)
{
	uint64_t v[4] = { 0 };

	ck_assert_int_eq(bench_parse_list("10k,1M,5", v, 4), 3);
	ck_assert_uint_eq(v[0], 10000);
	ck_assert_uint_eq(v[1], 1000000);
	ck_assert_uint_eq(v[2], 5);
	ck_assert_int_eq(bench_parse_list("7", v, 4), 1);
	ck_assert_uint_eq(v[0], 7);
	ck_assert_int_eq(bench_parse_list("", v, 4), -1);
	ck_assert_int_eq(bench_parse_list("1,,2", v, 4), -1);
	ck_assert_int_eq(bench_parse_list("1,2,", v, 4), -1);
	ck_assert_int_eq(bench_parse_list(",1", v, 4), -1);
	ck_assert_int_eq(bench_parse_list("1,2x", v, 4), -1);
	ck_assert_int_eq(bench_parse_list("1,2,3,4,5", v, 4), -1);
}
END_TEST

START_TEST(test_programs_refuse)
{
	/* --seconds is an option of every program but memory, --key-len of
	 * every program but events: one of them reaches each parser. */
	for (int i = 0; i < g_nprograms; i++) {
		const char *prog = g_programs[i];
		const char *opt = strstr(prog, "events") ? "--seconds" : "--key-len";
		char out[1024];
		int p[2];

		ck_assert_int_eq(pipe(p), 0);
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			dup2(p[1], STDERR_FILENO);
			dup2(p[1], STDOUT_FILENO);
			close(p[0]);
			execl(prog, prog, opt, "10q", (char *)NULL);
			_exit(127);
		}
		close(p[1]);
		ssize_t n = 0, r;
		while ((size_t)n + 1 < sizeof(out) &&
		       (r = read(p[0], out + n, sizeof(out) - 1 - (size_t)n)) > 0)
			n += r;
		out[n] = 0;
		close(p[0]);
		ck_assert_int_eq(tc_wait_exit(pid, 30000), 2);
		ck_assert_msg(strstr(out, "'10q'") && strstr(out, opt + 2), "%s %s 10q said: %s", prog,
			      opt, out);
	}
}
END_TEST

int main(int argc, char **argv)
{
	g_programs = argv + 1;
	g_nprograms = argc - 1;
	Suite *s = suite_create("bench-options");
	TCase *tc = tcase_create("options");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_counts);
	tcase_add_test(tc, test_counts_refused);
	tcase_add_test(tc, test_reals);
	tcase_add_test(tc, test_lists);
	tcase_add_test(tc, test_programs_refuse);
	suite_add_tcase(s, tc);
	return tc_run(s);
}
