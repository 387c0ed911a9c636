/* SPDX-License-Identifier: MIT */
/*
 * What is read from the arena is untrusted.  An arena whose entry pages,
 * index or page descriptors were scribbled over (a stray write of another
 * process, a bad disk image of /dev/shm) must give error codes and a report
 * from shmg_check(), never a crash or a hang of the process that reads it.
 *
 * The arena geometry comes from lib/layout.h (tests link the static library).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "layout.h"
#include "tc.h"

#define NKEYS 3000

static const char *const stage_names[] = { "open", "lookup", "members", "member_count",
					   "registry_count", "entries", "check", "register",
					   "reap", "done" };
static volatile int *stage; /* shared: how far the reader got */

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

enum region { R_PAGES, R_PAGEDESC, R_SHARDS, N_REGIONS };
static const char *const region_names[] = { "entry pages", "page descriptors", "shard headers" };

/* Runs every read and the checker on the corrupt arena; the exit code says
 * how far it got (0 = all calls returned). */
static int reader_on_corrupt(void *arg)
{
	shmg_t *h = NULL;
	char key[32], meta[64];
	size_t ml;
	long n = 0;
	int rc;

	(void)arg;
	*stage = 0;
	rc = shmg_open(tc_arena, NULL, &h);
	if (rc == -EPROTO)
		return 0; /* refusing it outright is fine too */
	if (rc != 0)
		return 10;
	*stage = 1;
	for (int i = 0; i < NKEYS; i++) {
		snprintf(key, sizeof(key), "c/%d", i);
		(void)shmg_lookup(h, SHMG_KEY(key), NULL, meta, sizeof(meta), &ml, NULL);
	}
	*stage = 2;
	(void)shmg_members(h, SHMG_KEY("g/"), tc_count_cb, &n, NULL);
	*stage = 3;
	(void)shmg_member_count(h, SHMG_KEY("g/"), NULL);
	*stage = 4;
	(void)shmg_registry_count(h, NULL);
	*stage = 5;
	(void)shmg_entries(h, 1, tc_count_cb, &n);
	*stage = 6;
	long problems = shmg_check(h, NULL, NULL);
	if (problems < 0)
		return 11;
	/* Writes give an error or work; they do not crash either. */
	*stage = 7;
	for (int i = 0; i < 100; i++) {
		snprintf(key, sizeof(key), "c/%d", i);
		(void)shmg_register(h, SHMG_KEY(key), "w", 1, NULL);
		snprintf(key, sizeof(key), "new/%d", i);
		(void)shmg_register(h, SHMG_KEY(key), "w", 1, NULL);
	}
	*stage = 8;
	(void)shmg_reap(h);
	*stage = 9;
	return problems > 0 ? 0 : 12;
}

START_TEST(test_scribbled_arena)
{
	int region = _i % N_REGIONS;
	uint64_t seed = 0x9e3779b97f4a7c15ull + (uint64_t)_i;
	shmg_t *h = tc_open(tc_arena, NULL);
	char key[32];
	size_t size;

	for (int i = 0; i < NKEYS; i++) {
		snprintf(key, sizeof(key), "c/%d", i);
		TC_EQ(shmg_register(h, SHMG_KEY(key), key, strlen(key), NULL), 0);
		snprintf(key, sizeof(key), "g/%d", i % 50);
		if (i < 50)
			TC_EQ(shmg_join(h, SHMG_KEY(key), "m", 1, NULL), 0);
	}
	TC_ASSERT_CLEAN(h);

	unsigned char *base = tc_map_arena(tc_arena, &size);
	struct arena_header *hdr = (struct arena_header *)base;
	uint64_t lo, hi;
	switch (region) {
	case R_PAGES:
		lo = hdr->off_pages;
		hi = lo + 4ull * PAGE_SIZE;
		break;
	case R_PAGEDESC:
		lo = hdr->off_pagedesc;
		hi = lo + 64ull * sizeof(struct page_desc);
		break;
	default:
		lo = hdr->off_shards;
		hi = lo + hdr->shard_stride * hdr->shards;
		break;
	}
	ck_assert_uint_le(hi, size);
	/* A few hundred random 4-byte writes: small values and wild ones. */
	for (int i = 0; i < 300; i++) {
		uint64_t r = rng_next(&seed);
		uint64_t off = lo + (r % (hi - lo)) / 4 * 4;
		uint32_t v = (r >> 32) & 1 ? (uint32_t)(r >> 40) : (uint32_t)rng_next(&seed);

		/* Leave the shard locks alone: a scribbled mutex is not a case
		 * a library can detect. */
		if (region == R_SHARDS) {
			uint64_t in = (off - hdr->off_shards) % hdr->shard_stride;
			if (in < 128)
				continue;
		}
		memcpy(base + off, &v, 4);
	}

	stage = tc_shared_alloc(sizeof(*stage));
	pid_t pid = tc_fork(reader_on_corrupt, NULL);
	int st = tc_wait_exit(pid, 20000);
	if (st == -ETIMEDOUT) {
		kill(pid, SIGKILL);
		tc_wait_exit(pid, 5000);
	}
	ck_assert_msg(st == 0,
		      "corrupt %s (seed %d): reader %s %d in shmg_%s (10 open, 11 check error, "
		      "12 check found nothing, 256+n signal n, -110 hang)",
		      region_names[region], _i, st >= 256 ? "killed by" : "exit", st,
		      stage_names[*stage]);
	munmap(base, size);
	/* The arena is beyond use: drop it without letting close walk it. */
	TC_EQ(shmg_destroy(tc_arena), 0);
}
END_TEST

static Suite *corrupt_suite(void)
{
	Suite *s = suite_create("corrupt");
	TCase *tc = tc_case(s, "scribble", 30);

	tcase_add_loop_test(tc, test_scribbled_arena, 0, 3 * N_REGIONS);
	return s;
}

int main(void)
{
	return tc_run(corrupt_suite());
}
