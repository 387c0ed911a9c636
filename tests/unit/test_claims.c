/* SPDX-License-Identifier: MIT */
/*
 * The conflict rule and the hidden-claims table (tools/shmgroupd/repl/claims.h):
 * the default rule and its tie-break, the canonical order a user resolver
 * is called in, the same winner for every arrival order of three claims,
 * and the promotion of hidden claims when the visible one goes.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "claims.h"
#include "tc_check.h"

static struct repl_record claim(uint32_t node, uint32_t slot, uint64_t time_ns, const char *meta)
{
	return (struct repl_record){
		.op = REPL_OP_REGISTER,
		.cluster_len = 2,
		.cluster = "c1",
		.key_len = 3,
		.key = "job",
		.node = node,
		.ep_slot = slot,
		.ep_gen = 1,
		.pid = (int32_t)(100 * node + slot),
		.time_ns = time_ns,
		.meta = meta,
		.meta_len = (uint32_t)strlen(meta),
	};
}

START_TEST(test_default_rule_later_wins_then_larger_identity)
{
	struct repl_record a = claim(1, 5, 100, "a"), b = claim(2, 1, 200, "b");
	ck_assert_int_lt(repl_claim_cmp(&a, &b, NULL, NULL), 0);
	ck_assert_int_gt(repl_claim_cmp(&b, &a, NULL, NULL), 0);
	/* Equal times: the larger node, then slot, then generation. */
	b.time_ns = 100;
	ck_assert_int_lt(repl_claim_cmp(&a, &b, NULL, NULL), 0);
	ck_assert_int_gt(repl_claim_cmp(&b, &a, NULL, NULL), 0);
	struct repl_record c = claim(1, 6, 100, "c");
	ck_assert_int_gt(repl_claim_cmp(&c, &a, NULL, NULL), 0);
	struct repl_record d = claim(1, 5, 100, "d");
	d.ep_gen = 2;
	ck_assert_int_gt(repl_claim_cmp(&d, &a, NULL, NULL), 0);
	/* The same endpoint's claim is no conflict. */
	ck_assert_int_eq(repl_claim_cmp(&a, &a, NULL, NULL), 0);
}
END_TEST

static int calls;
static uint32_t first_node_seen;

/* Not symmetric: whatever comes first wins. */
static int first_wins(const struct repl_record *a, const struct repl_record *b, void *arg)
{
	(void)b;
	calls++;
	first_node_seen = a->node;
	ck_assert_ptr_eq(arg, &calls);
	return 0;
}

START_TEST(test_resolver_sees_canonical_order)
{
	struct repl_record lo = claim(2, 1, 900, "x"), hi = claim(3, 1, 100, "y");
	calls = 0;
	ck_assert_int_gt(repl_claim_cmp(&lo, &hi, first_wins, &calls), 0);
	ck_assert_uint_eq(first_node_seen, 2);
	ck_assert_int_lt(repl_claim_cmp(&hi, &lo, first_wins, &calls), 0);
	ck_assert_uint_eq(first_node_seen, 2);
	ck_assert_int_eq(calls, 2);
	/* Not asked about one endpoint's own claim. */
	ck_assert_int_eq(repl_claim_cmp(&lo, &lo, first_wins, &calls), 0);
	ck_assert_int_eq(calls, 2);
}
END_TEST

/* A consistent preference that is not symmetric on ties: the shorter
 * metadata, and on equal lengths the first argument. */
static int shorter_meta(const struct repl_record *a, const struct repl_record *b, void *arg)
{
	(void)arg;
	return a->meta_len <= b->meta_len ? 0 : 1;
}

/* A store's registry of one key: the visible claim, the others hidden. */
struct model {
	struct repl_record visible;
	int shown;
	struct repl_claims *hidden;
	repl_resolver_fn rule;
};

static void model_arrive(struct model *m, const struct repl_record *r)
{
	if (!m->shown) {
		m->visible = *r;
		m->shown = 1;
	} else if (repl_claim_cmp(r, &m->visible, m->rule, NULL) > 0) {
		ck_assert_int_eq(repl_claims_hide(m->hidden, &m->visible, 0), 0);
		m->visible = *r;
	} else {
		ck_assert_int_eq(repl_claims_hide(m->hidden, r, 0), 0);
	}
}

/* The visible claim's owner removes it: the best hidden one shows. */
static void model_remove_visible(struct model *m)
{
	const struct repl_record *best = repl_claims_best(m->hidden, "c1", 2, "job", 3, m->rule, NULL);
	m->shown = best != NULL;
	if (!best)
		return;
	m->visible = *best;
	m->visible.meta = NULL; /* the table's copy goes with the drop */
	ck_assert_int_eq(repl_claims_drop(m->hidden, best->node, "c1", 2, "job", 3), 1);
}

static void every_order_same_winner(repl_resolver_fn rule, const struct repl_record c[3],
				    uint32_t want[3])
{
	static const int orders[6][3] = { { 0, 1, 2 }, { 0, 2, 1 }, { 1, 0, 2 },
					  { 1, 2, 0 }, { 2, 0, 1 }, { 2, 1, 0 } };
	for (int o = 0; o < 6; o++) {
		struct model m = { .rule = rule };
		ck_assert_int_eq(repl_claims_new(&m.hidden), 0);
		for (int i = 0; i < 3; i++)
			model_arrive(&m, &c[orders[o][i]]);
		ck_assert_uint_eq(repl_claims_count(m.hidden), 2);
		/* The winner, then the order of succession as each goes. */
		for (int i = 0; i < 3; i++) {
			ck_assert_msg(m.shown && m.visible.node == want[i],
				      "order %d: step %d shows n%u, want n%u", o, i,
				      m.shown ? m.visible.node : 0, want[i]);
			model_remove_visible(&m);
		}
		ck_assert(!m.shown);
		ck_assert_uint_eq(repl_claims_count(m.hidden), 0);
		repl_claims_free(m.hidden);
	}
}

START_TEST(test_every_arrival_order_of_three_claims_same_winner)
{
	/* n2 and n3 tie on time: the larger identity, n3, beats n2. */
	struct repl_record c[3] = { claim(1, 1, 300, "aaaa"), claim(2, 1, 500, "bb"),
				    claim(3, 1, 500, "cc") };
	every_order_same_winner(NULL, c, (uint32_t[]){ 3, 2, 1 });
	/* With the resolver: n2 and n3 tie on length, and the canonical
	 * order hands the tie to the smaller identity, n2. */
	every_order_same_winner(shorter_meta, c, (uint32_t[]){ 2, 3, 1 });
}
END_TEST

START_TEST(test_table_copies_replaces_and_drops)
{
	struct repl_claims *t;
	ck_assert_int_eq(repl_claims_new(&t), 0);
	char meta[8] = "first";
	struct repl_record a = claim(4, 1, 10, meta);
	ck_assert_int_eq(repl_claims_hide(t, &a, 3), 0);
	strcpy(meta, "later"); /* the table keeps its own copy */
	const struct repl_record *f = repl_claims_find(t, 4, "c1", 2, "job", 3);
	ck_assert_ptr_nonnull(f);
	ck_assert_mem_eq(f->meta, "first", 5);
	ck_assert_uint_eq(repl_claims_shard_at(t, 0), 3);

	/* One claim per owner and key: a second replaces the first. */
	struct repl_record a2 = claim(4, 2, 20, "second");
	ck_assert_int_eq(repl_claims_hide(t, &a2, 3), 0);
	ck_assert_uint_eq(repl_claims_count(t), 1);
	ck_assert_uint_eq(repl_claims_find(t, 4, "c1", 2, "job", 3)->ep_slot, 2);

	/* Other keys, clusters and owners are apart. */
	struct repl_record other = claim(4, 1, 10, "");
	other.key = "jab";
	struct repl_record plain = claim(5, 1, 10, "");
	plain.cluster_len = 0;
	plain.cluster = "";
	struct repl_record b = claim(6, 1, 99, "b");
	ck_assert_int_eq(repl_claims_hide(t, &other, 1), 0);
	ck_assert_int_eq(repl_claims_hide(t, &plain, 2), 0);
	ck_assert_int_eq(repl_claims_hide(t, &b, 3), 0);
	ck_assert_uint_eq(repl_claims_count(t), 4);
	ck_assert_uint_eq(repl_claims_best(t, "c1", 2, "job", 3, NULL, NULL)->node, 6);
	ck_assert_ptr_null(repl_claims_find(t, 5, "c1", 2, "job", 3));
	ck_assert_ptr_null(repl_claims_best(t, "c2", 2, "job", 3, NULL, NULL));

	ck_assert_int_eq(repl_claims_drop(t, 9, "c1", 2, "job", 3), 0);
	ck_assert_uint_eq(repl_claims_drop_shard(t, 4, 1), 1);         /* "jab" */
	ck_assert_uint_eq(repl_claims_drop_node(t, 0, "c1", 2), 2);    /* n4, n6 in c1 */
	ck_assert_uint_eq(repl_claims_count(t), 1);
	ck_assert_uint_eq(repl_claims_drop_node(t, 5, NULL, 0), 1);    /* a purge */
	ck_assert_uint_eq(repl_claims_count(t), 0);
	repl_claims_free(t);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("claims");
	TCase *tc = tcase_create("claims");
	tcase_add_test(tc, test_default_rule_later_wins_then_larger_identity);
	tcase_add_test(tc, test_resolver_sees_canonical_order);
	tcase_add_test(tc, test_every_arrival_order_of_three_claims_same_winner);
	tcase_add_test(tc, test_table_copies_replaces_and_drops);
	suite_add_tcase(s, tc);
	return tc_run_suite(s);
}
