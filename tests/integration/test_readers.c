/* SPDX-License-Identifier: MIT */
/*
 * Lock-free readers against churning writers, in separate processes.
 *
 * Writers register, re-register, unregister, join, re-join and leave keys
 * with self-checking metadata: [u64 seq][payload][u64 checksum], where the
 * checksum covers the key, seq and payload and the payload is a function of
 * seq.  Readers look keys up (copying and zero-copy inside read sections),
 * iterate prefix members, and verify every byte they see.  A torn, stale-
 * freed or misattributed read shows as a bad checksum or a wrong owner.
 */
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tc.h"

#define NWRITERS 2
#define NREADERS 2
#define NREGKEYS 64
#define NGROUPS 8
#define RUN_MS 2500
#define MAXMETA 256

struct stats {
	long ops, errors, first_error;
	long good, bad, absent, members_seen;
	char first_bad[160];
	int done;
};

struct shared {
	_Atomic int stop;
	_Atomic int ready;
	shmg_id_t writer_ids[NWRITERS];
	struct stats st[NWRITERS + NREADERS];
};

static struct shared *sh;

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static uint64_t sum(const char *key, size_t klen, const unsigned char *body, size_t blen)
{
	return tc_hash64(key, klen) * 31u ^ tc_hash64(body, blen);
}

static size_t make_meta(unsigned char *m, const char *key, uint64_t seq)
{
	size_t plen = (size_t)(seq * 7 % (MAXMETA - 16));
	uint64_t c;

	memcpy(m, &seq, 8);
	for (size_t i = 0; i < plen; i++)
		m[8 + i] = (unsigned char)(seq * 131 + i);
	c = sum(key, strlen(key), m, 8 + plen);
	memcpy(m + 8 + plen, &c, 8);
	return 16 + plen;
}

/* 0 if meta is a well-formed record for key, else a reason. */
static const char *verify_meta(const char *key, size_t klen, const void *meta, size_t len)
{
	const unsigned char *m = meta;
	uint64_t seq, c;
	size_t plen;

	if (len < 16)
		return "short meta";
	memcpy(&seq, m, 8);
	plen = len - 16;
	if (plen != (size_t)(seq * 7 % (MAXMETA - 16)))
		return "length does not match seq";
	for (size_t i = 0; i < plen; i++)
		if (m[8 + i] != (unsigned char)(seq * 131 + i))
			return "payload torn";
	memcpy(&c, m + 8 + plen, 8);
	if (c != sum(key, klen, m, 8 + plen))
		return "checksum mismatch";
	return NULL;
}

static void bad(struct stats *st, const char *why, const char *key, size_t klen)
{
	if (st->bad++ == 0)
		snprintf(st->first_bad, sizeof(st->first_bad), "%s at key %.*s", why, (int)klen, key);
}

static int writer(void *arg)
{
	int w = (int)(intptr_t)arg;
	struct stats *st = &sh->st[w];
	shmg_t *h = NULL;
	uint64_t rng = 0x9e3779b97f4a7c15ull * (uint64_t)(w + 1), seq = (uint64_t)w << 40;
	unsigned char meta[MAXMETA];
	char key[32];

	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 1;
	sh->writer_ids[w] = shmg_self(h);
	atomic_fetch_add(&sh->ready, 1);
	while (!atomic_load(&sh->stop)) {
		uint64_t r = rng_next(&rng);
		int i = (int)(r % NREGKEYS), op = (int)((r >> 8) % 6);
		long rc;

		if (op < 3)
			snprintf(key, sizeof(key), "r/%d/%d", w, i);
		else
			snprintf(key, sizeof(key), "g/%d", i % NGROUPS);
		size_t ml = make_meta(meta, key, ++seq);
		switch (op) {
		case 0:
		case 1:
			rc = shmg_register(h, SHMG_KEY(key), meta, ml, NULL);
			break;
		case 2:
			rc = shmg_unregister(h, SHMG_KEY(key), NULL);
			if (rc == -ENOENT)
				rc = 0;
			break;
		case 3:
		case 4:
			rc = shmg_join(h, SHMG_KEY(key), meta, ml, NULL);
			break;
		default:
			rc = shmg_leave(h, SHMG_KEY(key), NULL);
			if (rc == -ENOENT)
				rc = 0;
			break;
		}
		st->ops++;
		if (rc != 0 && st->errors++ == 0)
			st->first_error = rc;
	}
	/* Leave the entries in place until the parent has looked: it reads
	 * the final state after readers stopped. */
	st->done = 1;
	while (atomic_load(&sh->stop) < 2)
		poll(NULL, 0, 1);
	return shmg_close(h) == 0 ? 0 : 2;
}

static int writer_index(shmg_id_t id)
{
	for (int w = 0; w < NWRITERS; w++)
		if (shmg_id_equal(id, sh->writer_ids[w]))
			return w;
	return -1;
}

static int member_cb(const struct shmg_entry *e, void *arg)
{
	struct stats *st = arg;
	const char *why;

	st->members_seen++;
	if (e->kind != SHMG_MEMBER)
		bad(st, "member of wrong kind", e->key, e->key_len);
	else if (writer_index(e->id) < 0)
		bad(st, "member of unknown endpoint", e->key, e->key_len);
	else if ((why = verify_meta(e->key, e->key_len, e->meta, e->meta_len)))
		bad(st, why, e->key, e->key_len);
	else
		st->good++;
	return 0;
}

static int reader(void *arg)
{
	int r = (int)(intptr_t)arg;
	struct stats *st = &sh->st[NWRITERS + r];
	shmg_t *h = NULL;
	uint64_t rng = 0x2545f4914f6cdd1dull * (uint64_t)(r + 7);
	unsigned char meta[MAXMETA];
	char key[32];
	long iter = 0;

	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 1;
	atomic_fetch_add(&sh->ready, 1);
	while (!atomic_load(&sh->stop)) {
		uint64_t x = rng_next(&rng);
		int w = (int)(x % NWRITERS), i = (int)((x >> 8) % NREGKEYS);
		shmg_id_t id;
		size_t ml;
		long rc;
		const char *why;

		snprintf(key, sizeof(key), "r/%d/%d", w, i);
		rc = shmg_lookup(h, SHMG_KEY(key), &id, meta, sizeof(meta), &ml, NULL);
		if (rc == 0) {
			if (writer_index(id) != w)
				bad(st, "lookup: wrong owner", key, strlen(key));
			else if ((why = verify_meta(key, strlen(key), meta, ml)))
				bad(st, why, key, strlen(key));
			else
				st->good++;
		} else if (rc == -ENOENT) {
			st->absent++;
		} else {
			bad(st, "lookup error", key, strlen(key));
		}

		if (++iter % 16 == 0) {
			/* Zero-copy: hold a few entries across a section while
			 * writers replace them, and re-verify at the end. */
			struct shmg_entry held[4];
			char hkeys[4][32];
			int n = 0;

			if (shmg_read_begin(h) != 0) {
				bad(st, "read_begin", "", 0);
				continue;
			}
			for (int k = 0; k < 4; k++) {
				snprintf(hkeys[n], sizeof(hkeys[n]), "r/%d/%d", k % NWRITERS,
					 (int)((x >> (16 + k * 6)) % NREGKEYS));
				if (shmg_lookup_ref(h, SHMG_KEY(hkeys[n]), &held[n], NULL) == 0)
					n++;
			}
			for (int k = 0; k < n; k++)
				if ((why = verify_meta(held[k].key, held[k].key_len, held[k].meta,
						       held[k].meta_len)) ||
				    held[k].key_len != strlen(hkeys[k]) ||
				    memcmp(held[k].key, hkeys[k], held[k].key_len) != 0)
					bad(st, why ? why : "ref: wrong key", hkeys[k], strlen(hkeys[k]));
			/* Let the writers run on; nothing held may change. */
			for (int spin = 0; spin < 20000; spin++)
				__asm__ __volatile__("" ::: "memory");
			for (int k = 0; k < n; k++) {
				if ((why = verify_meta(held[k].key, held[k].key_len, held[k].meta,
						       held[k].meta_len)))
					bad(st, "held entry changed inside read section", hkeys[k],
					    strlen(hkeys[k]));
				else
					st->good++;
			}
			if (shmg_read_end(h) != 0)
				bad(st, "read_end", "", 0);

			/* Prefix iteration over every group key. */
			long m = shmg_members(h, SHMG_KEY("g/"), member_cb, st, NULL);
			if (m < 0)
				bad(st, "members error", "g/", 2);
			long c = shmg_member_count(h, SHMG_KEY("g/"), NULL);
			if (c < 0 || c > NWRITERS * NGROUPS)
				bad(st, "member_count out of range", "g/", 2);
			long rc2 = shmg_registry_count(h, NULL);
			if (rc2 < 0 || rc2 > NWRITERS * NREGKEYS)
				bad(st, "registry_count out of range", "", 0);
		}
	}
	st->done = 1;
	shmg_close(h);
	return 0;
}

static bool all_ready(void *arg)
{
	(void)arg;
	return atomic_load(&sh->ready) == NWRITERS + NREADERS;
}

START_TEST(test_readers_vs_writers)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	pid_t pids[NWRITERS + NREADERS];

	sh = tc_shared_alloc(sizeof(*sh));
	for (int w = 0; w < NWRITERS; w++)
		pids[w] = tc_fork(writer, (void *)(intptr_t)w);
	for (int r = 0; r < NREADERS; r++)
		pids[NWRITERS + r] = tc_fork(reader, (void *)(intptr_t)r);
	ck_assert(tc_wait_until(all_ready, NULL, 20000));
	/* Run for a fixed time: this is a bounded soak, not a wait for an event. */
	poll(NULL, 0, RUN_MS);
	atomic_store(&sh->stop, 1);
	for (int r = 0; r < NREADERS; r++)
		TC_EQ(tc_wait_exit(pids[NWRITERS + r], 20000), 0);

	for (int w = 0; w < NWRITERS; w++) {
		struct stats *st = &sh->st[w];
		ck_assert_msg(st->errors == 0, "writer %d: %ld errors, first %ld (%s)", w,
			      st->errors, st->first_error, shmg_strerror((int)st->first_error));
		ck_assert_int_gt(st->ops, 1000);
	}
	for (int r = 0; r < NREADERS; r++) {
		struct stats *st = &sh->st[NWRITERS + r];
		ck_assert_msg(st->bad == 0, "reader %d: %ld bad reads of %ld, first: %s", r,
			      st->bad, st->bad + st->good, st->first_bad);
		ck_assert_int_gt(st->good, 100);
		ck_assert_int_gt(st->members_seen, 0);
		ck_assert_int_eq(st->done, 1);
	}

	/* Final state, writers alive but idle: every entry well formed. */
	struct stats mine = { 0 };
	long regs = 0;
	for (int w = 0; w < NWRITERS; w++)
		for (int i = 0; i < NREGKEYS; i++) {
			char key[32];
			unsigned char meta[MAXMETA];
			size_t ml;
			shmg_id_t id;
			int rc;

			snprintf(key, sizeof(key), "r/%d/%d", w, i);
			rc = shmg_lookup(h, SHMG_KEY(key), &id, meta, sizeof(meta), &ml, NULL);
			if (rc == -ENOENT)
				continue;
			TC_EQ(rc, 0);
			regs++;
			ck_assert_int_eq(writer_index(id), w);
			ck_assert_ptr_null(verify_meta(key, strlen(key), meta, ml));
		}
	TC_EQ(shmg_registry_count(h, NULL), regs);
	long m = shmg_members(h, SHMG_KEY("g/"), member_cb, &mine, NULL);
	ck_assert_int_eq(mine.bad, 0);
	TC_EQ(shmg_member_count(h, SHMG_KEY("g/"), NULL), m);
	TC_ASSERT_CLEAN(h);

	atomic_store(&sh->stop, 2);
	for (int w = 0; w < NWRITERS; w++)
		TC_EQ(tc_wait_exit(pids[w], 20000), 0);
	TC_EQ(shmg_registry_count(h, NULL), 0);
	TC_EQ(shmg_member_count(h, SHMG_KEY("g/"), NULL), 0);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

/* ---- growth: no false negatives while tables resize ---------------------- */

#define GROW_KEYS 60000

struct grow {
	_Atomic long registered; /* keys grow/0 .. registered-1 are in, for good */
	_Atomic long joined;     /* members growm/0 .. joined-1 likewise */
	_Atomic int stop;
	long writer_rc;
	long missing[NREADERS], wrong[NREADERS], checked[NREADERS], short_count[NREADERS];
	char first[NREADERS][96];
};

static struct grow *gr;

static int grow_writer(void *arg)
{
	shmg_t *h = NULL;
	char key[32];
	long rc;

	(void)arg;
	if ((rc = shmg_open(tc_arena, NULL, &h)) != 0)
		goto out;
	for (long i = 0; i < GROW_KEYS; i++) {
		snprintf(key, sizeof(key), "grow/%ld", i);
		if ((rc = shmg_register(h, SHMG_KEY(key), &i, sizeof(i), NULL)) != 0)
			goto out;
		atomic_store(&gr->registered, i + 1);
		if (i % 4 == 0) {
			snprintf(key, sizeof(key), "growm/%ld", i / 4);
			if ((rc = shmg_join(h, SHMG_KEY(key), &i, sizeof(i), NULL)) != 0)
				goto out;
			atomic_store(&gr->joined, i / 4 + 1);
		}
	}
	rc = 0;
out:
	gr->writer_rc = rc;
	atomic_store(&gr->stop, 1);
	/* Stay alive (entries must stay live) until the parent is done. */
	while (atomic_load(&gr->stop) < 2)
		poll(NULL, 0, 1);
	return 0;
}

static int grow_reader(void *arg)
{
	int r = (int)(intptr_t)arg;
	shmg_t *h = NULL;
	uint64_t rng = 0x1234567ull * (uint64_t)(r + 3);
	char key[32];

	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 1;
	while (!atomic_load(&gr->stop)) {
		long n = atomic_load(&gr->registered);
		long m = atomic_load(&gr->joined);
		long i, got = -1;
		size_t ml = 0;
		int rc;

		if (n == 0)
			continue;
		/* Mostly recent keys: those most likely to be moving. */
		i = (long)(rng_next(&rng) % 2 ? n - 1 - (long)(rng_next(&rng) % (n < 64 ? n : 64))
					      : (long)(rng_next(&rng) % (uint64_t)n));
		snprintf(key, sizeof(key), "grow/%ld", i);
		rc = shmg_lookup(h, SHMG_KEY(key), NULL, &got, sizeof(got), &ml, NULL);
		gr->checked[r]++;
		if (rc != 0) {
			if (gr->missing[r]++ == 0)
				snprintf(gr->first[r], sizeof(gr->first[r]), "lookup %s = %d", key, rc);
		} else if (ml != sizeof(got) || got != i) {
			if (gr->wrong[r]++ == 0)
				snprintf(gr->first[r], sizeof(gr->first[r]), "lookup %s: meta %ld", key,
					 got);
		}
		if (gr->checked[r] % 256 == 0 && m > 0) {
			long c = shmg_member_count(h, SHMG_KEY("growm/"), NULL);
			if (c < m && gr->short_count[r]++ == 0)
				snprintf(gr->first[r], sizeof(gr->first[r]),
					 "member_count %ld < %ld joined before", c, m);
			snprintf(key, sizeof(key), "growm/%ld", (long)(rng_next(&rng) % (uint64_t)m));
			if (shmg_member_count(h, SHMG_KEY(key), NULL) != 1 &&
			    gr->missing[r]++ == 0)
				snprintf(gr->first[r], sizeof(gr->first[r]), "member %s missing", key);
		}
	}
	shmg_close(h);
	return 0;
}

START_TEST(test_no_false_negatives_while_growing)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	pid_t w, rd[NREADERS];

	gr = tc_shared_alloc(sizeof(*gr));
	w = tc_fork(grow_writer, NULL);
	for (int r = 0; r < NREADERS; r++)
		rd[r] = tc_fork(grow_reader, (void *)(intptr_t)r);
	for (int r = 0; r < NREADERS; r++)
		TC_EQ(tc_wait_exit(rd[r], 40000), 0);
	TC_EQ(gr->writer_rc, 0);
	for (int r = 0; r < NREADERS; r++) {
		ck_assert_msg(gr->missing[r] == 0 && gr->wrong[r] == 0 && gr->short_count[r] == 0,
			      "reader %d: %ld missing, %ld wrong, %ld short counts of %ld; first: %s",
			      r, gr->missing[r], gr->wrong[r], gr->short_count[r], gr->checked[r],
			      gr->first[r]);
		ck_assert_int_gt(gr->checked[r], 1000);
	}
	TC_EQ(shmg_registry_count(h, NULL), GROW_KEYS);
	TC_EQ(shmg_member_count(h, SHMG_KEY("growm/"), NULL), GROW_KEYS / 4);
	TC_ASSERT_CLEAN(h);
	atomic_store(&gr->stop, 2);
	TC_EQ(tc_wait_exit(w, 20000), 0);
	shmg_close(h);
}
END_TEST

static Suite *readers_suite(void)
{
	Suite *s = suite_create("readers");
	TCase *tc = tc_case(s, "readers", 50);

	tcase_add_test(tc, test_readers_vs_writers);
	tcase_add_test(tc, test_no_false_negatives_while_growing);
	return s;
}

int main(void)
{
	return tc_run(readers_suite());
}
