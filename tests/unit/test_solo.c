/* SPDX-License-Identifier: MIT */
/*
 * Single-member groups kept in one block (the group head is its own one
 * member): they read, count, log and announce like any membership; the
 * second member turns the group into a list without the first one moving
 * (same id, pid, time, metadata, and no event); a re-join replaces it in
 * place with the previous metadata in its event; and the arena stays sound
 * (shmg_check) through every step.
 */
#include <stdio.h>
#include <string.h>

#include "tc.h"
#include "tc_events.h"

struct seen {
	int n;
	struct shmg_entry e[4]; /* pointers not kept: copied below */
	char meta[4][16], key[4][16];
};

static int keep(const struct shmg_entry *e, void *arg)
{
	struct seen *s = arg;
	if (s->n < 4) {
		s->e[s->n] = *e;
		memcpy(s->meta[s->n], e->meta, e->meta_len < 16 ? e->meta_len : 16);
		memcpy(s->key[s->n], e->key, e->key_len < 16 ? e->key_len : 16);
		s->e[s->n].key = s->e[s->n].meta = NULL;
	}
	s->n++;
	return 0;
}

static const struct shmg_entry *of(const struct seen *s, shmg_id_t id)
{
	for (int i = 0; i < s->n && i < 4; i++)
		if (s->e[i].id.slot == id.slot && s->e[i].id.gen == id.gen)
			return &s->e[i];
	return NULL;
}

START_TEST(test_second_member_keeps_the_first)
{
	shmg_t *a = tc_open(tc_arena, NULL), *b = tc_open(tc_arena, NULL);
	shmg_id_t ia = shmg_self(a), ib = shmg_self(b);
	struct seen s1 = {0}, s2 = {0};

	TC_EQ(shmg_join(a, SHMG_KEY("solo"), "A", 1, NULL), 0);
	ck_assert_uint_eq(tc_index_used(a), 1); /* one slot: the group is one block */
	TC_EQ(shmg_members(a, SHMG_KEY("solo"), keep, &s1, NULL), 1);
	ck_assert_int_eq(s1.e[0].kind, SHMG_MEMBER);
	TC_EQ(shmg_member_count(a, SHMG_KEY("solo"), NULL), 1);
	TC_ASSERT_CLEAN(a);

	TC_EQ(shmg_join(b, SHMG_KEY("solo"), "B", 1, NULL), 0);
	TC_EQ(shmg_members(a, SHMG_KEY("solo"), keep, &s2, NULL), 2);
	const struct shmg_entry *ea = of(&s2, ia), *eb = of(&s2, ib);
	ck_assert_ptr_nonnull(ea);
	ck_assert_ptr_nonnull(eb);
	ck_assert_uint_eq(ea->time_ns, s1.e[0].time_ns);
	ck_assert_int_eq(ea->pid, s1.e[0].pid);
	ck_assert_int_eq(s2.meta[ea - s2.e][0], 'A');
	ck_assert_int_eq(s2.meta[eb - s2.e][0], 'B');
	TC_EQ(shmg_member_count(a, SHMG_KEY("solo"), NULL), 2);
	TC_EQ(shmg_local_member_count(a, SHMG_KEY("solo"), NULL), 2);
	TC_ASSERT_CLEAN(a);

	/* a's membership is found where the conversion put it. */
	TC_EQ(shmg_leave(a, SHMG_KEY("solo"), NULL), 0);
	TC_EQ(shmg_leave(a, SHMG_KEY("solo"), NULL), -ENOENT);
	TC_EQ(shmg_member_count(a, SHMG_KEY("solo"), NULL), 1);
	TC_EQ(shmg_leave(b, SHMG_KEY("solo"), NULL), 0);
	ck_assert_uint_eq(tc_index_used(a), tc_parked_nodes(a));
	TC_ASSERT_CLEAN(a);
	shmg_close(b);
	shmg_close(a);
}
END_TEST

START_TEST(test_events_and_rejoin)
{
	shmg_t *m = tc_open(tc_arena, NULL), *a = tc_open(tc_arena, NULL);
	shmg_t *b = tc_open(tc_arena, NULL);
	struct tc_ev ev[4];
	TC_EQ(shmg_monitor(m, SHMG_KEY("room/"), NULL), 0);

	TC_EQ(shmg_join(a, SHMG_KEY("room/1"), "A", 1, NULL), 0);
	TC_EQ(tc_ev_recv_n(m, ev, 1, 2000), 1);
	tc_ev_expect(&ev[0], SHMG_EV_JOINED, SHMG_REASON_NONE, shmg_self(a), NULL, "room/1", "A", 1);

	/* Same metadata: nothing; other metadata: replaced, previous given. */
	TC_EQ(shmg_join(a, SHMG_KEY("room/1"), "A", 1, NULL), 0);
	tc_ev_expect_empty(m, "a re-join with the same metadata");
	TC_EQ(shmg_join(a, SHMG_KEY("room/1"), "AA", 2, NULL), 0);
	TC_EQ(tc_ev_recv_n(m, ev, 1, 2000), 1);
	tc_ev_expect(&ev[0], SHMG_EV_JOINED, SHMG_REASON_NONE, shmg_self(a), NULL, "room/1", "AA", 2);
	tc_ev_expect_prev(&ev[0], "A", 1);
	TC_EQ(shmg_member_count(a, SHMG_KEY("room/"), NULL), 1);
	TC_ASSERT_CLEAN(a);

	/* The second member: one event, its own; the first is not announced again. */
	TC_EQ(shmg_join(b, SHMG_KEY("room/1"), "B", 1, NULL), 0);
	TC_EQ(tc_ev_recv_n(m, ev, 1, 2000), 1);
	tc_ev_expect(&ev[0], SHMG_EV_JOINED, SHMG_REASON_NONE, shmg_self(b), NULL, "room/1", "B", 1);
	tc_ev_expect_empty(m, "the conversion to a list");

	/* A close removes b's membership with its event; a's single one goes
	 * with a's close, reason normal. */
	shmg_id_t ia = shmg_self(a);
	TC_EQ(shmg_close(b), 0);
	TC_EQ(tc_ev_recv_n(m, ev, 1, 2000), 1);
	ck_assert_int_eq(ev[0].type, SHMG_EV_LEFT);
	TC_EQ(shmg_close(a), 0);
	TC_EQ(tc_ev_recv_n(m, ev, 1, 2000), 1);
	tc_ev_expect(&ev[0], SHMG_EV_LEFT, SHMG_REASON_NORMAL, ia, NULL, "room/1", "AA", 2);
	TC_EQ(shmg_member_count(m, SHMG_KEY("room/1"), NULL), 0);
	TC_ASSERT_CLEAN(m);
	shmg_close(m);
}
END_TEST

/* shmg_entries gives a single-member group as the membership it is. */
START_TEST(test_entries_listing)
{
	shmg_t *a = tc_open(tc_arena, NULL);
	struct seen s = {0};
	TC_EQ(shmg_join(a, SHMG_KEY("e/1"), "x", 1, NULL), 0);
	TC_EQ(shmg_register(a, SHMG_KEY("e/r"), "y", 1, NULL), 0);
	TC_EQ(shmg_local_entries(a, keep, &s), 2);
	int members = 0;
	for (int i = 0; i < 2; i++)
		if (s.e[i].kind == SHMG_MEMBER) {
			members++;
			ck_assert_int_eq(s.e[i].key_len, 3);
			ck_assert(memcmp(s.key[i], "e/1", 3) == 0);
			ck_assert_int_eq(s.meta[i][0], 'x');
		}
	ck_assert_int_eq(members, 1);
	shmg_close(a);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("solo");
	TCase *tc = tc_case(s, "solo", 30);
	tcase_add_test(tc, test_second_member_keeps_the_first);
	tcase_add_test(tc, test_events_and_rejoin);
	tcase_add_test(tc, test_entries_listing);
	return tc_run(s);
}
