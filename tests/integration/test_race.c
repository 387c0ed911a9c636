/* SPDX-License-Identifier: MIT */
/*
 * Processes racing to register the same keys: exactly one winner per key,
 * every loser gets -EEXIST, the winners are what lookup says, and the owner
 * (and only the owner) can then update its metadata in place.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tc.h"

#define NPROC 4
#define NKEYS 10000

struct shared {
	_Atomic unsigned char winner[NKEYS]; /* 1 + index of the process that got 0 */
	_Atomic long duplicates;             /* a second 0 for a key */
	long wins[NPROC], eexist[NPROC], other[NPROC];
	long first_other_rc[NPROC];
	long rereg_ok[NPROC], rereg_eexist[NPROC], rereg_other[NPROC];
	shmg_id_t ids[NPROC];
	long open_rc[NPROC];
};

static struct shared *sh;
static int cmd_pipe[2], done_pipe[2];
/* One command pipe per racer: a fast racer must never read a command meant
 * for a slow one. */
static int cmd_pipes[NPROC][2];

static void make_cmd_pipes(void)
{
	for (int i = 0; i < NPROC; i++)
		ck_assert_int_eq(pipe(cmd_pipes[i]), 0);
}

static void race_key(char *buf, size_t cap, int i)
{
	snprintf(buf, cap, "race/%d", i);
}

static void meta_for(char *buf, int version, int idx)
{
	/* 4 bytes: 'v', version, ':', index. */
	buf[0] = 'v';
	buf[1] = (char)('0' + version);
	buf[2] = ':';
	buf[3] = (char)('0' + idx);
}

static int racer(void *arg)
{
	int idx = (int)(intptr_t)arg;
	shmg_t *h = NULL;
	char key[32], meta[4], cmd;

	close(done_pipe[0]);
	sh->open_rc[idx] = shmg_open(tc_arena, NULL, &h);
	if (sh->open_rc[idx] != 0)
		return 1;
	sh->ids[idx] = shmg_self(h);
	if (tc_write_full(done_pipe[1], "r", 1) != 0)
		return 2;
	if (tc_read_full(cmd_pipes[idx][0], &cmd, 1, 60000) != 0 || cmd != 'G')
		return 3;

	meta_for(meta, 1, idx);
	/* Half go forwards, half backwards: they collide in the middle too. */
	for (int n = 0; n < NKEYS; n++) {
		int i = idx % 2 ? NKEYS - 1 - n : n;
		int rc;

		race_key(key, sizeof(key), i);
		rc = shmg_register(h, SHMG_KEY(key), meta, sizeof(meta), NULL);
		if (rc == 0) {
			unsigned char expect = 0;

			sh->wins[idx]++;
			if (!atomic_compare_exchange_strong(&sh->winner[i], &expect,
							    (unsigned char)(idx + 1)))
				atomic_fetch_add(&sh->duplicates, 1);
		} else if (rc == -EEXIST) {
			sh->eexist[idx]++;
		} else {
			if (sh->other[idx]++ == 0)
				sh->first_other_rc[idx] = rc;
		}
	}
	if (tc_write_full(done_pipe[1], "d", 1) != 0)
		return 4;

	/* Phase 2: re-register everything with v2 meta. */
	if (tc_read_full(cmd_pipes[idx][0], &cmd, 1, 60000) != 0 || cmd != 'R')
		return 5;
	meta_for(meta, 2, idx);
	for (int i = 0; i < NKEYS; i++) {
		int rc;

		race_key(key, sizeof(key), i);
		rc = shmg_register(h, SHMG_KEY(key), meta, sizeof(meta), NULL);
		if (rc == 0)
			sh->rereg_ok[idx]++;
		else if (rc == -EEXIST)
			sh->rereg_eexist[idx]++;
		else
			sh->rereg_other[idx]++;
	}
	if (tc_write_full(done_pipe[1], "d", 1) != 0)
		return 6;
	if (tc_read_full(cmd_pipes[idx][0], &cmd, 1, 60000) != 0 || cmd != 'X')
		return 7;
	return shmg_close(h) == 0 ? 0 : 8;
}

static void send_all(char c)
{
	for (int i = 0; i < NPROC; i++)
		ck_assert_int_eq(tc_write_full(cmd_pipes[i][1], &c, 1), 0);
}

static void wait_all(int timeout_ms)
{
	for (int i = 0; i < NPROC; i++) {
		char c;
		int rc = tc_read_full(done_pipe[0], &c, 1, timeout_ms);

		ck_assert_msg(rc == 0, "waiting for racer %d of %d: %d", i, NPROC, rc);
	}
}

static void verify_owners(shmg_t *h, int version)
{
	char key[32], meta[8], want[4];
	shmg_id_t id;
	size_t ml;

	for (int i = 0; i < NKEYS; i++) {
		int w = sh->winner[i];

		ck_assert_msg(w >= 1 && w <= NPROC, "key %d has no winner", i);
		race_key(key, sizeof(key), i);
		TC_EQ(shmg_lookup(h, SHMG_KEY(key), &id, meta, sizeof(meta), &ml, NULL), 0);
		ck_assert_msg(shmg_id_equal(id, sh->ids[w - 1]), "key %d: lookup owner differs", i);
		meta_for(want, version, w - 1);
		ck_assert_uint_eq(ml, sizeof(want));
		ck_assert_mem_eq(meta, want, sizeof(want));
	}
}

START_TEST(test_race_register)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	pid_t pids[NPROC];
	long total = 0;

	sh = tc_shared_alloc(sizeof(*sh));
	make_cmd_pipes();
	ck_assert_int_eq(pipe(done_pipe), 0);
	for (int i = 0; i < NPROC; i++)
		pids[i] = tc_fork(racer, (void *)(intptr_t)i);
	wait_all(20000); /* all opened */
	send_all('G');
	wait_all(90000);

	ck_assert_int_eq(atomic_load(&sh->duplicates), 0);
	for (int i = 0; i < NPROC; i++) {
		ck_assert_msg(sh->other[i] == 0, "racer %d: %ld unexpected errors, first %ld (%s)", i,
			      sh->other[i], sh->first_other_rc[i],
			      shmg_strerror((int)sh->first_other_rc[i]));
		ck_assert_int_eq(sh->wins[i] + sh->eexist[i], NKEYS);
		total += sh->wins[i];
	}
	ck_assert_int_eq(total, NKEYS);
	TC_EQ(shmg_registry_count(h, NULL), NKEYS);
	TC_EQ(shmg_local_registry_count(h, NULL), NKEYS);
	verify_owners(h, 1);

	/* Re-register: owners update in place, the others are still refused. */
	send_all('R');
	wait_all(90000);
	for (int i = 0; i < NPROC; i++) {
		ck_assert_int_eq(sh->rereg_other[i], 0);
		ck_assert_int_eq(sh->rereg_ok[i], sh->wins[i]);
		ck_assert_int_eq(sh->rereg_eexist[i], NKEYS - sh->wins[i]);
	}
	TC_EQ(shmg_registry_count(h, NULL), NKEYS);
	verify_owners(h, 2);
	TC_ASSERT_CLEAN(h);

	send_all('X');
	for (int i = 0; i < NPROC; i++)
		TC_EQ(tc_wait_exit(pids[i], 30000), 0);
	/* Closing removed every registration. */
	TC_EQ(shmg_registry_count(h, NULL), 0);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

/* Join races: no duplicate members, and counts add up. */
static int joiner(void *arg)
{
	int idx = (int)(intptr_t)arg;
	shmg_t *h = NULL;
	char key[32], cmd;
	long bad = 0;

	close(done_pipe[0]);
	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 1;
	sh->ids[idx] = shmg_self(h);
	if (tc_write_full(done_pipe[1], "r", 1) != 0)
		return 2;
	if (tc_read_full(cmd_pipes[idx][0], &cmd, 1, 60000) != 0)
		return 3;
	for (int round = 0; round < 3; round++)
		for (int i = 0; i < 1000; i++) {
			snprintf(key, sizeof(key), "jr/%d", i);
			if (shmg_join(h, SHMG_KEY(key), &round, sizeof(round), NULL) != 0)
				bad++;
			if (round == 1 && i % 2 && shmg_leave(h, SHMG_KEY(key), NULL) != 0)
				bad++;
		}
	sh->other[idx] = bad;
	if (tc_write_full(done_pipe[1], "d", 1) != 0)
		return 4;
	if (tc_read_full(cmd_pipes[idx][0], &cmd, 1, 60000) != 0)
		return 5;
	return shmg_close(h) == 0 ? 0 : 6;
}

START_TEST(test_race_join)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	pid_t pids[NPROC];
	shmg_id_t ids[NPROC + 1];
	char key[32];

	sh = tc_shared_alloc(sizeof(*sh));
	make_cmd_pipes();
	ck_assert_int_eq(pipe(done_pipe), 0);
	for (int i = 0; i < NPROC; i++)
		pids[i] = tc_fork(joiner, (void *)(intptr_t)i);
	wait_all(20000);
	send_all('G');
	wait_all(90000);
	for (int i = 0; i < NPROC; i++)
		ck_assert_int_eq(sh->other[i], 0);
	TC_EQ(shmg_member_count(h, SHMG_KEY("jr/"), NULL), 1000 * NPROC);
	for (int i = 0; i < 1000; i += 97) {
		snprintf(key, sizeof(key), "jr/%d", i);
		TC_EQ(shmg_member_ids(h, SHMG_KEY(key), ids, NPROC + 1, NULL), NPROC);
		for (int p = 0; p < NPROC; p++) {
			int found = 0;
			for (int q = 0; q < NPROC; q++)
				found += shmg_id_equal(ids[q], sh->ids[p]);
			ck_assert_int_eq(found, 1);
		}
	}
	TC_ASSERT_CLEAN(h);
	send_all('X');
	for (int i = 0; i < NPROC; i++)
		TC_EQ(tc_wait_exit(pids[i], 30000), 0);
	TC_EQ(shmg_member_count(h, SHMG_KEY("jr/"), NULL), 0);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

/* Many processes open a fresh name at once: one creates, the others wait
 * on the creation lock and attach; all see the same arena. */
#define NOPEN 6

struct open_result {
	long rc;
	uint64_t incarnation;
	shmg_id_t id;
	long reg_rc;
};

static struct open_result *ores;
static int exit_pipe[2]; /* separate from cmd_pipe: a fast opener must not eat a 'G' */

static int opener(void *arg)
{
	int idx = (int)(intptr_t)arg;
	shmg_t *h = NULL;
	struct shmg_info in;
	char c, key[16];

	close(cmd_pipe[1]);
	close(done_pipe[0]);
	if (tc_read_full(cmd_pipe[0], &c, 1, 30000) != 0)
		return 1;
	ores[idx].rc = shmg_open(tc_arena, NULL, &h);
	if (ores[idx].rc != 0) {
		(void)!write(done_pipe[1], "d", 1);
		return 0;
	}
	if (shmg_info(h, &in) == 0)
		ores[idx].incarnation = in.incarnation;
	ores[idx].id = shmg_self(h);
	snprintf(key, sizeof(key), "o/%d", idx);
	ores[idx].reg_rc = shmg_register(h, SHMG_KEY(key), NULL, 0, NULL);
	(void)!write(done_pipe[1], "d", 1);
	/* Stay open until told. */
	close(exit_pipe[1]);
	if (tc_read_full(exit_pipe[0], &c, 1, 30000) != 0)
		return 2;
	return shmg_close(h) == 0 ? 0 : 3;
}

START_TEST(test_race_create)
{
	pid_t pids[NOPEN];

	ores = tc_shared_alloc(sizeof(*ores) * NOPEN);
	ck_assert_int_eq(pipe(cmd_pipe), 0);
	ck_assert_int_eq(pipe(done_pipe), 0);
	ck_assert_int_eq(pipe(exit_pipe), 0);
	ck_assert(!tc_arena_exists(tc_arena));
	for (int i = 0; i < NOPEN; i++)
		pids[i] = tc_fork(opener, (void *)(intptr_t)i);
	for (int i = 0; i < NOPEN; i++)
		ck_assert_int_eq(tc_write_full(cmd_pipe[1], "G", 1), 0);
	for (int i = 0; i < NOPEN; i++) {
		char c;
		int rc = tc_read_full(done_pipe[0], &c, 1, 30000);

		ck_assert_msg(rc == 0, "opener %d of %d did not finish: %d", i, NOPEN, rc);
	}
	for (int i = 0; i < NOPEN; i++) {
		TC_EQ(ores[i].rc, 0);
		TC_EQ(ores[i].reg_rc, 0);
		ck_assert_uint_eq(ores[i].incarnation, ores[0].incarnation);
		for (int j = 0; j < i; j++)
			ck_assert(!shmg_id_equal(ores[i].id, ores[j].id));
	}
	shmg_t *h = tc_open(tc_arena, NULL);
	struct shmg_info in;
	TC_EQ(shmg_info(h, &in), 0);
	ck_assert_uint_eq(in.incarnation, ores[0].incarnation);
	ck_assert_uint_eq(in.endpoints_live, NOPEN + 1);
	TC_EQ(shmg_registry_count(h, NULL), NOPEN);
	for (int i = 0; i < NOPEN; i++)
		ck_assert_int_eq(tc_write_full(exit_pipe[1], "X", 1), 0);
	for (int i = 0; i < NOPEN; i++)
		TC_EQ(tc_wait_exit(pids[i], 30000), 0);
	TC_EQ(shmg_registry_count(h, NULL), 0);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

static Suite *race_suite(void)
{
	Suite *s = suite_create("race");
	TCase *tc = tc_case(s, "race", 100);

	tcase_add_test(tc, test_race_register);
	tcase_add_test(tc, test_race_join);
	tcase_add_loop_test(tc, test_race_create, 0, 3);
	return s;
}

int main(void)
{
	return tc_run(race_suite());
}
