/* SPDX-License-Identifier: MIT */
/*
 * The per-shard change log, read the way the host agent will read it: a
 * consumer keeps (byte cursor, expected sequence number), walks records up to
 * the published head, and must be able to tell when writers lapped it.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "tc.h"

struct consumer {
	uint64_t cursor, seq;
	int lapped;
};

/* Reads every record published since the cursor; calls fn for each. */
static int consume(shmg_t *h, uint32_t shard, struct consumer *c,
		   void (*fn)(const struct oplog_record *r, void *arg), void *arg)
{
	struct oplog_header *ol = oplog_at(h, shard);
	uint8_t *ring = (uint8_t *)(ol + 1);
	uint64_t head = __atomic_load_n(&ol->head, __ATOMIC_ACQUIRE);
	int n = 0;

	if (head - c->cursor > ol->ring_bytes) {
		c->lapped = 1;
		return -1;
	}
	while (c->cursor < head) {
		uint32_t pos = (uint32_t)(c->cursor % ol->ring_bytes);
		if (ol->ring_bytes - pos < sizeof(struct oplog_record)) {
			c->cursor += ol->ring_bytes - pos;
			continue;
		}
		struct oplog_record r;
		memcpy(&r, ring + pos, sizeof(r));
		if (r.op == OP_PAD) {
			c->cursor += ol->ring_bytes - pos;
			continue;
		}
		if (r.seq != c->seq) {
			c->lapped = 1;
			return -1;
		}
		if (fn)
			fn((const struct oplog_record *)(ring + pos), arg);
		c->cursor += r.size;
		c->seq++;
		n++;
	}
	return n;
}

struct seen {
	int n;
	uint8_t ops[16];
	char keys[16][32];
};

static void record(const struct oplog_record *r, void *arg)
{
	struct seen *s = arg;
	if (s->n >= 16)
		return;
	s->ops[s->n] = r->op;
	const char *p = (const char *)(r + 1) + r->cluster_len;
	snprintf(s->keys[s->n], sizeof(s->keys[0]), "%.*s", (int)r->key_len, p);
	s->n++;
}

static struct shmg_config one_shard(void)
{
	struct shmg_config c = {0};
	c.shards = 1;
	c.oplog_bytes = 64 * 1024;
	c.arena_size = 16ull << 20;
	c.max_endpoints = 16;
	return c;
}

START_TEST(test_oplog_in_order)
{
	struct shmg_config c = one_shard();
	shmg_t *h = tc_open(tc_arena, &c);
	struct consumer con = {0};
	struct seen s = {0};

	TC_EQ(shmg_register(h, SHMG_KEY("log/a"), "1", 1, NULL), 0);
	TC_EQ(shmg_join(h, SHMG_KEY("log/g"), "2", 1, NULL), 0);
	TC_EQ(shmg_register(h, SHMG_KEY("log/a"), "3", 1, NULL), 0); /* update */
	TC_EQ(shmg_register(h, SHMG_KEY("log/a"), "3", 1, NULL), 0); /* identical: no record */
	TC_EQ(shmg_leave(h, SHMG_KEY("log/g"), NULL), 0);
	TC_EQ(shmg_unregister(h, SHMG_KEY("log/a"), NULL), 0);
	TC_EQ(consume(h, 0, &con, record, &s), 5);
	ck_assert_int_eq(s.ops[0], OP_REGISTER);
	ck_assert_str_eq(s.keys[0], "log/a");
	ck_assert_int_eq(s.ops[1], OP_JOIN);
	ck_assert_str_eq(s.keys[1], "log/g");
	ck_assert_int_eq(s.ops[2], OP_REGISTER);
	ck_assert_int_eq(s.ops[3], OP_LEAVE);
	ck_assert_str_eq(s.keys[3], "log/g");
	ck_assert_int_eq(s.ops[4], OP_UNREGISTER);
	/* Nothing new: nothing read. */
	TC_EQ(consume(h, 0, &con, record, &s), 0);
	ck_assert_int_eq(con.lapped, 0);
	shmg_close(h);
}
END_TEST

START_TEST(test_oplog_lapping_is_detected)
{
	struct shmg_config c = one_shard();
	shmg_t *h = tc_open(tc_arena, &c);
	struct consumer con = {0};
	char key[32], meta[512];

	memset(meta, 'm', sizeof(meta));
	TC_EQ(shmg_register(h, SHMG_KEY("lap/first"), "x", 1, NULL), 0);
	TC_EQ(consume(h, 0, &con, NULL, NULL), 1);
	/* Far more than the 64 KiB ring holds, without consuming. */
	for (int i = 0; i < 400; i++) {
		snprintf(key, sizeof(key), "lap/%d", i);
		TC_EQ(shmg_register(h, SHMG_KEY(key), meta, sizeof(meta), NULL), 0);
	}
	TC_EQ(consume(h, 0, &con, NULL, NULL), -1);
	ck_assert_int_eq(con.lapped, 1);
	shmg_close(h);
}
END_TEST

START_TEST(test_oplog_repair_marks_reset)
{
	struct shmg_config c = one_shard();
	shmg_t *h = tc_open(tc_arena, &c);
	uint64_t before = oplog_at(h, 0)->resets;

	/* Any repair may have lost a record: the consumer is told to resync. */
	TC_EQ(shard_lock(h, 0), 0);
	TC_EQ(repair_shard(h, 0), 0);
	shard_unlock(h, 0);
	ck_assert_uint_eq(oplog_at(h, 0)->resets, before + 1);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("oplog");
	TCase *tc = tc_case(s, "oplog", 30);

	tcase_add_test(tc, test_oplog_in_order);
	tcase_add_test(tc, test_oplog_lapping_is_detected);
	tcase_add_test(tc, test_oplog_repair_marks_reset);
	return tc_run(s);
}
