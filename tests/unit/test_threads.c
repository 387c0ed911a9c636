/* SPDX-License-Identifier: MIT */
/*
 * The thread-safety contract: a handle is used by one thread at a time, and
 * threads that work concurrently open one handle each.  Such handles are
 * independent endpoints; here four threads hammer register / join / lookup /
 * unregister at once, each on its own handle, and everything must add up.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc.h"

#define NTHREADS 4
#define NKEYS 2000
#define NGROUPS 16
#define NRACE 2000

struct worker {
	int idx;
	shmg_t *h;
	pthread_barrier_t *start;
	long errors;
	char first_error[128];
	long wins;
	unsigned char *race_owner; /* NRACE entries: 1 + idx of the winner */
};

static void fail_once(struct worker *w, const char *what, long rc)
{
	if (w->errors++ == 0)
		snprintf(w->first_error, sizeof(w->first_error), "%s: %ld (%s)", what, rc,
			 shmg_strerror((int)rc));
}

static void *hammer(void *arg)
{
	struct worker *w = arg;
	char key[32], meta[32], other[32], buf[64];
	size_t ml;
	shmg_id_t id;
	long rc;

	pthread_barrier_wait(w->start);
	for (int j = 0; j < NKEYS; j++) {
		snprintf(key, sizeof(key), "t%d/k%d", w->idx, j);
		snprintf(meta, sizeof(meta), "m%d.%d", w->idx, j);
		if ((rc = shmg_register(w->h, SHMG_KEY(key), meta, strlen(meta), NULL)) != 0)
			fail_once(w, "register", rc);
		snprintf(key, sizeof(key), "shared/%d", j % NGROUPS);
		if ((rc = shmg_join(w->h, SHMG_KEY(key), meta, strlen(meta), NULL)) != 0)
			fail_once(w, "join", rc);
		/* Own key: must be there, exactly. */
		snprintf(key, sizeof(key), "t%d/k%d", w->idx, j);
		rc = shmg_lookup(w->h, SHMG_KEY(key), &id, buf, sizeof(buf), &ml, NULL);
		if (rc != 0 || ml != strlen(meta) || memcmp(buf, meta, ml) != 0 ||
		    !shmg_id_equal(id, shmg_self(w->h)))
			fail_once(w, "lookup own", rc);
		/* Another thread's key: absent or exactly its meta. */
		int o = (w->idx + 1) % NTHREADS;
		snprintf(other, sizeof(other), "t%d/k%d", o, j);
		rc = shmg_lookup(w->h, SHMG_KEY(other), &id, buf, sizeof(buf), &ml, NULL);
		if (rc == 0) {
			snprintf(meta, sizeof(meta), "m%d.%d", o, j);
			if (ml != strlen(meta) || memcmp(buf, meta, ml) != 0)
				fail_once(w, "lookup other meta", 0);
		} else if (rc != -ENOENT) {
			fail_once(w, "lookup other", rc);
		}
		/* Unregister every other key again. */
		if (j % 2 == 1 && (rc = shmg_unregister(w->h, SHMG_KEY(key), NULL)) != 0)
			fail_once(w, "unregister", rc);
	}
	return NULL;
}

START_TEST(test_four_threads_one_handle_each)
{
	struct worker w[NTHREADS];
	pthread_t t[NTHREADS];
	pthread_barrier_t start;

	pthread_barrier_init(&start, NULL, NTHREADS);
	for (int i = 0; i < NTHREADS; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].idx = i;
		w[i].h = tc_open(tc_arena, NULL);
		w[i].start = &start;
	}
	for (int i = 0; i < NTHREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, hammer, &w[i]), 0);
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < NTHREADS; i++)
		ck_assert_msg(w[i].errors == 0, "thread %d: %ld errors, first %s", i, w[i].errors,
			      w[i].first_error);

	shmg_t *h = w[0].h;
	char key[32];
	TC_EQ(shmg_registry_count(h, NULL), NTHREADS * NKEYS / 2);
	TC_EQ(shmg_member_count(h, SHMG_KEY("shared/"), NULL), NTHREADS * NGROUPS);
	for (int g = 0; g < NGROUPS; g++) {
		snprintf(key, sizeof(key), "shared/%d", g);
		TC_EQ(shmg_member_count(h, SHMG_KEY(key), NULL), NTHREADS);
	}
	for (int i = 0; i < NTHREADS; i++)
		for (int j = 0; j < NKEYS; j++) {
			shmg_id_t id;

			snprintf(key, sizeof(key), "t%d/k%d", i, j);
			if (j % 2) {
				TC_EQ(shmg_lookup(h, SHMG_KEY(key), &id, NULL, 0, NULL, NULL), -ENOENT);
			} else {
				TC_EQ(shmg_lookup(h, SHMG_KEY(key), &id, NULL, 0, NULL, NULL), 0);
				ck_assert(shmg_id_equal(id, shmg_self(w[i].h)));
			}
		}
	TC_ASSERT_CLEAN(h);
	for (int i = NTHREADS - 1; i >= 0; i--)
		TC_EQ(shmg_close(w[i].h), 0);
	pthread_barrier_destroy(&start);
}
END_TEST

static void *race(void *arg)
{
	struct worker *w = arg;
	char key[32];

	pthread_barrier_wait(w->start);
	for (int j = 0; j < NRACE; j++) {
		snprintf(key, sizeof(key), "race/%d", j);
		long rc = shmg_register(w->h, SHMG_KEY(key), &w->idx, sizeof(w->idx), NULL);
		if (rc == 0) {
			w->wins++;
			unsigned char expect = 0;
			if (!atomic_compare_exchange_strong(
				    (_Atomic unsigned char *)&w->race_owner[j], &expect,
				    (unsigned char)(1 + w->idx)))
				fail_once(w, "second winner", j);
		} else if (rc != -EEXIST) {
			fail_once(w, "register", rc);
		}
	}
	return NULL;
}

START_TEST(test_threads_race_same_keys)
{
	struct worker w[NTHREADS];
	pthread_t t[NTHREADS];
	pthread_barrier_t start;
	static unsigned char owner[NRACE];
	long total = 0;

	memset(owner, 0, sizeof(owner));
	pthread_barrier_init(&start, NULL, NTHREADS);
	for (int i = 0; i < NTHREADS; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].idx = i;
		w[i].h = tc_open(tc_arena, NULL);
		w[i].start = &start;
		w[i].race_owner = owner;
	}
	for (int i = 0; i < NTHREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, race, &w[i]), 0);
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < NTHREADS; i++) {
		ck_assert_msg(w[i].errors == 0, "thread %d: %s", i, w[i].first_error);
		total += w[i].wins;
	}
	ck_assert_int_eq(total, NRACE);
	TC_EQ(shmg_registry_count(w[0].h, NULL), NRACE);
	for (int j = 0; j < NRACE; j++) {
		char key[32];
		shmg_id_t id;
		int idx = -1;
		size_t ml;

		snprintf(key, sizeof(key), "race/%d", j);
		TC_EQ(shmg_lookup(w[0].h, SHMG_KEY(key), &id, &idx, sizeof(idx), &ml, NULL), 0);
		ck_assert_uint_eq(ml, sizeof(idx));
		ck_assert_int_eq(idx + 1, owner[j]);
		ck_assert(shmg_id_equal(id, shmg_self(w[idx].h)));
	}
	TC_ASSERT_CLEAN(w[0].h);
	for (int i = 0; i < NTHREADS; i++)
		shmg_close(w[i].h);
	pthread_barrier_destroy(&start);
}
END_TEST

static Suite *threads_suite(void)
{
	Suite *s = suite_create("threads");
	TCase *tc = tc_case(s, "threads", 45);

	tcase_add_test(tc, test_four_threads_one_handle_each);
	tcase_add_test(tc, test_threads_race_same_keys);
	return s;
}

int main(void)
{
	return tc_run(threads_suite());
}
