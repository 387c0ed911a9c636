/* SPDX-License-Identifier: MIT */
/*
 * The replication simulation as a check test (suite "sim").
 *
 *   SHMG_SIM_SEEDS=N     how many seeds (default 2000; CI's sanitizer run uses fewer)
 *   SHMG_SIM_FIRST=K     the first seed (default 1)
 *   SHMG_SIM_SEED=K      run only seed K, printing its events: reproduces a failure
 *                        (SHMG_SIM_TRACE=1 also prints every datagram delivered)
 *
 * `test_sim PART PARTS` runs one PARTS-th of the seeds (the large ones, one
 * in 32, spread evenly), so that meson can run the sweep as PARTS tests in
 * parallel.
 *
 * A failure prints the seed, what broke and the command that replays it.
 *
 * Built a second time against a core with one guard removed (SIM_MUTANT set
 * to the seed known to catch it, docs/PROTOCOL.md section 11): that build
 * asserts the seed fails, showing the checks can see the fault.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim.h"

static uint64_t env_u64(const char *name, uint64_t def)
{
	const char *v = getenv(name);
	return v && *v ? strtoull(v, NULL, 10) : def;
}

#ifndef SIM_MUTANT
static double wall_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}
#endif

#ifndef SIM_MUTANT

static uint64_t part, parts = 1;

START_TEST(test_sim_seeds)
{
	uint64_t one = env_u64("SHMG_SIM_SEED", 0);
	uint64_t first = one ? one : env_u64("SHMG_SIM_FIRST", 1);
	uint64_t count = one ? 1 : env_u64("SHMG_SIM_SEEDS", 2000);
	uint64_t sim_us = 0, datagrams = 0, resyncs = 0, purges = 0, crashes = 0, nodes = 0;
	uint64_t conflicts = 0;
	uint32_t max_nodes = 0;
	double t0 = wall_s();

	uint64_t ran = 0;
	for (uint64_t seed = first; seed < first + count; seed++) {
		struct sim st;
		if (!one && (seed / 32 + seed) % parts != part)
			continue;
		ran++;
		if (sim_run(seed, one ? 1 + (int)env_u64("SHMG_SIM_TRACE", 0) : 0, &st) < 0) {
			printf("sim: seed %llu FAILED: %s\n", (unsigned long long)seed, st.failure);
			printf("sim: reproduce with SHMG_SIM_SEED=%llu %s\n",
			       (unsigned long long)seed, "build/tests/sim/test_sim");
			ck_abort_msg("seed %llu: %s", (unsigned long long)seed, st.failure);
		}
		sim_us += st.now;
		datagrams += st.datagrams;
		resyncs += st.resyncs;
		purges += st.purges;
		crashes += st.crashes;
		conflicts += st.conflicts;
		nodes += st.p.nodes;
		if (st.p.nodes > max_nodes)
			max_nodes = st.p.nodes;
	}
	printf("sim: %llu seeds from %llu passed in %.1f s: %.0f s simulated, %llu node runs "
	       "(up to %u nodes), %llu datagrams, %llu resyncs applied, %llu purges, %llu crashes, "
	       "%llu conflicts lost by their owner\n",
	       (unsigned long long)ran, (unsigned long long)first, wall_s() - t0, sim_us / 1e6,
	       (unsigned long long)nodes, max_nodes, (unsigned long long)datagrams,
	       (unsigned long long)resyncs, (unsigned long long)purges,
	       (unsigned long long)crashes, (unsigned long long)conflicts);
}
END_TEST

#else

/* SHMG_SIM_FIND=1 searches for the first seed that catches the mutant (with
 * SHMG_SIM_FIND_MATCH, the first whose failure message holds that text);
 * SHMG_SIM_FIND=N (N > 1) counts how many of seeds 1..N catch it. */
START_TEST(test_sim_catches_mutant)
{
	uint64_t find = env_u64("SHMG_SIM_FIND", 0);
	if (find > 1) {
		uint64_t caught = 0;
		for (uint64_t seed = 1; seed <= find; seed++) {
			struct sim st;
			caught += sim_run(seed, 0, &st) < 0;
		}
		printf("sim: mutant %s caught by %llu of seeds 1..%llu\n", SIM_MUTANT_NAME,
		       (unsigned long long)caught, (unsigned long long)find);
		return;
	}
	if (find) {
		/* SHMG_SIM_FIND_MATCH=TEXT: the first seed whose failure says TEXT. */
		const char *match = getenv("SHMG_SIM_FIND_MATCH");
		for (uint64_t seed = 1; seed < 100000; seed++) {
			struct sim st;
			if (sim_run(seed, 0, &st) < 0 && (!match || strstr(st.failure, match))) {
				printf("sim: mutant caught by seed %llu: %s\n",
				       (unsigned long long)seed, st.failure);
				return;
			}
		}
		ck_abort_msg("no seed caught the mutant");
	}
	struct sim st;
	int rc = sim_run(SIM_MUTANT, 0, &st);
	printf("sim: mutant %s, seed %d: %s\n", SIM_MUTANT_NAME, SIM_MUTANT,
	       rc < 0 ? st.failure : "NOT CAUGHT");
	ck_assert_msg(rc < 0, "seed %d no longer catches the mutant %s", SIM_MUTANT,
		      SIM_MUTANT_NAME);
}
END_TEST

#endif

int main(int argc, char **argv)
{
	Suite *s = suite_create("sim");
	TCase *tc = tcase_create("sim");
	SRunner *sr;
	int failed;

	tcase_set_timeout(tc, 600);
#ifndef SIM_MUTANT
	if (argc == 3) {
		part = strtoull(argv[1], NULL, 10);
		parts = strtoull(argv[2], NULL, 10);
		if (parts == 0 || part >= parts)
			return EXIT_FAILURE;
	}
#else
	(void)argc;
	(void)argv;
#endif
#ifndef SIM_MUTANT
	tcase_add_test(tc, test_sim_seeds);
#else
	tcase_add_test(tc, test_sim_catches_mutant);
#endif
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
