/* SPDX-License-Identifier: MIT */
/*
 * Running a check suite, for every test executable: the ones that open
 * arenas (through tc_run() in tc.h, which also sweeps stale arenas) and the
 * ones that never touch the library (the replication core, its decoder
 * corpus and its simulation), which link this alone.
 */
#ifndef SHMG_TC_CHECK_H
#define SHMG_TC_CHECK_H

#include <check.h>

/* Runs every test of s in check's fork mode (one child per test, so a crash
 * or a timeout fails that test only), verbosity from CK_VERBOSITY; frees s.
 * Returns EXIT_SUCCESS if no test failed, else EXIT_FAILURE. */
int tc_run_suite(Suite *s);

#endif
