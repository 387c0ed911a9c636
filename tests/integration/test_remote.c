/* SPDX-License-Identifier: MIT */
/*
 * Entries of other nodes written by the host agent's store side (lib/remote.h):
 * visible to plain lookups in other processes, left out of the local_* calls,
 * announced to monitors, resynced without a reader ever missing a surviving
 * entry, purged with reason nodedown, never logged again, and left
 * repairable by a crash at every step.  Also the agent's change-log reader.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "remote.h"
#include "tc.h"
#include "tc_events.h"

#define NODE 2u
#define INC 77u

static struct remote_change change(uint8_t op, const char *key, const char *meta, uint32_t slot)
{
	return (struct remote_change){
		.op = op,
		.key = key,
		.key_len = strlen(key),
		.meta = meta,
		.meta_len = meta ? strlen(meta) : 0,
		.id = {NODE, slot, 1},
		.pid = 4000 + (int32_t)slot,
		.time_ns = 1000 + slot,
	};
}

static int put(shmg_t *h, uint8_t op, const char *key, const char *meta, uint32_t slot)
{
	struct remote_change c = change(op, key, meta, slot);
	return remote_put(h, INC, &c);
}

static uint32_t shard_of_key(shmg_t *h, const char *key)
{
	struct keyref k;
	ck_assert_int_eq(key_prepare(h, key, strlen(key), NULL, 0, &k), 0);
	return k.shard;
}

/* ---- visibility ----------------------------------------------------------- */

static int reader_child(void *arg)
{
	shmg_t *h;
	shmg_id_t id;
	char meta[64];
	size_t len;

	(void)arg;
	if (shmg_open(tc_arena, NULL, &h))
		return 10;
	if (shmg_lookup(h, SHMG_KEY("svc/a"), &id, meta, sizeof(meta), &len, NULL) ||
	    id.node != NODE || id.slot != 5 || len != 2 || memcmp(meta, "m1", 2))
		return 11;
	if (shmg_member_count(h, SHMG_KEY("room/x"), NULL) != 2 ||
	    shmg_local_member_count(h, SHMG_KEY("room/x"), NULL) != 1)
		return 12;
	if (shmg_registry_count(h, NULL) != 1 || shmg_local_registry_count(h, NULL) != 0)
		return 13;
	if (shmg_entries(h, 1, NULL, NULL) != 3 || shmg_local_entries(h, NULL, NULL) != 1)
		return 14;
	/* A local register of a key a remote endpoint holds. */
	if (shmg_register(h, SHMG_KEY("svc/a"), "x", 1, NULL) != -EEXIST)
		return 15;
	shmg_close(h);
	return 0;
}

START_TEST(test_put_visible_elsewhere)
{
	shmg_t *h = tc_open(tc_arena, NULL);

	TC_EQ(put(h, REMOTE_REGISTER, "svc/a", "m1", 5), 0);
	/* A remote member with a local one's slot and gen is another member. */
	TC_EQ(shmg_join(h, SHMG_KEY("room/x"), "local", 5, NULL), 0);
	shmg_id_t self = shmg_self(h);
	struct remote_change c = change(REMOTE_JOIN, "room/x", "twin", self.slot);
	c.id.gen = self.gen;
	TC_EQ(remote_put(h, INC, &c), 0);
	TC_EQ(shmg_member_count(h, SHMG_KEY("room/x"), NULL), 2);
	c.op = REMOTE_LEAVE;
	TC_EQ(remote_put(h, INC, &c), 0);
	TC_EQ(shmg_local_member_count(h, SHMG_KEY("room/x"), NULL), 1);
	TC_EQ(put(h, REMOTE_JOIN, "room/x", "remote", 5), 0);

	TC_EQ(tc_wait_exit(tc_fork(reader_child, NULL), 10000), 0);
	/* A remote register of a key held elsewhere keeps the holder. */
	TC_EQ(shmg_register(h, SHMG_KEY("mine"), "l", 1, NULL), 0);
	TC_EQ(put(h, REMOTE_REGISTER, "mine", "r", 6), -EEXIST);
	TC_EQ(put(h, REMOTE_REGISTER, "svc/a", "r", 6), -EEXIST);
	shmg_id_t id;
	TC_EQ(shmg_lookup(h, SHMG_KEY("mine"), &id, NULL, 0, NULL, NULL), 0);
	ck_assert_uint_eq(id.node, shmg_self(h).node);
	/* Bad changes: this node's id, another incarnation. */
	c = change(REMOTE_REGISTER, "x", NULL, 1);
	c.id.node = shmg_self(h).node;
	TC_EQ(remote_put(h, INC, &c), -EINVAL);
	TC_EQ(put(h, REMOTE_REGISTER, "y", NULL, 1), 0);
	c = change(REMOTE_REGISTER, "z", NULL, 1);
	TC_EQ(remote_put(h, INC + 1, &c), -ESTALE);
	/* Removals; the reaper leaves remote entries alone. */
	TC_EQ(shmg_reap(h), 0);
	TC_EQ(put(h, REMOTE_UNREGISTER, "svc/a", NULL, 5), 0);
	TC_EQ(put(h, REMOTE_UNREGISTER, "svc/a", NULL, 5), -ENOENT);
	TC_EQ(shmg_lookup(h, SHMG_KEY("svc/a"), NULL, NULL, 0, NULL, NULL), -ENOENT);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

/* ---- events --------------------------------------------------------------- */

START_TEST(test_events_for_remote_changes)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	struct tc_ev ev[8];
	shmg_id_t id = {NODE, 3, 1};

	TC_EQ(shmg_monitor(h, SHMG_KEY("ev/"), NULL), 0);
	TC_EQ(put(h, REMOTE_REGISTER, "ev/r", "a", 3), 0);
	TC_EQ(put(h, REMOTE_REGISTER, "ev/r", "b", 3), 0);
	TC_EQ(put(h, REMOTE_REGISTER, "ev/r", "b", 3), 0); /* same: no event */
	TC_EQ(put(h, REMOTE_JOIN, "ev/g", "j", 3), 0);
	struct remote_change c = change(REMOTE_UNREGISTER, "ev/r", NULL, 3);
	c.reason = SHMG_REASON_EXIT;
	TC_EQ(remote_put(h, INC, &c), 0);
	c = change(REMOTE_LEAVE, "ev/g", NULL, 3);
	c.reason = SHMG_REASON_CLUSTER_DISCONNECT;
	TC_EQ(remote_put(h, INC, &c), 0);
	TC_EQ(put(h, REMOTE_JOIN, "ev/g", "k", 3), 0);
	TC_EQ(put(h, REMOTE_LEAVE, "ev/g", NULL, 3), 0); /* no reason given: normal */

	TC_EQ(tc_ev_drain(h, ev, 8), 7);
	tc_ev_expect(&ev[0], SHMG_EV_REGISTERED, SHMG_REASON_NONE, id, NULL, "ev/r", "a", 1);
	ck_assert_int_eq(ev[0].pid, 4003);
	tc_ev_expect(&ev[1], SHMG_EV_REGISTERED, SHMG_REASON_NONE, id, NULL, "ev/r", "b", 1);
	tc_ev_expect_prev(&ev[1], "a", 1);
	tc_ev_expect(&ev[2], SHMG_EV_JOINED, SHMG_REASON_NONE, id, NULL, "ev/g", "j", 1);
	tc_ev_expect(&ev[3], SHMG_EV_UNREGISTERED, SHMG_REASON_EXIT, id, NULL, "ev/r", "b", 1);
	tc_ev_expect(&ev[4], SHMG_EV_LEFT, SHMG_REASON_CLUSTER_DISCONNECT, id, NULL, "ev/g", "j",
		     1);
	tc_ev_expect(&ev[6], SHMG_EV_LEFT, SHMG_REASON_NORMAL, id, NULL, "ev/g", "k", 1);
	for (int i = 0; i < 7; i++)
		tc_ev_expect_single(&ev[i]);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

/* ---- resync ---------------------------------------------------------------- */

#define NSURV 64
#define NDOOM 32

struct rs_shared {
	_Atomic int phase; /* 1 resyncing, 2 done: doomed keys must be gone */
	_Atomic long loops, missed, zombies, bad_members;
	_Atomic int ready;
};
static struct rs_shared *rs;

static void key_of(char *buf, size_t cap, const char *what, int i)
{
	snprintf(buf, cap, "rs/%s%d", what, i);
}

static int resync_reader(void *arg)
{
	shmg_t *h;
	char key[32];

	(void)arg;
	if (shmg_open(tc_arena, NULL, &h))
		return 10;
	atomic_store(&rs->ready, 1);
	while (atomic_load(&rs->phase) < 2) {
		for (int i = 0; i < NSURV; i++) {
			key_of(key, sizeof(key), "s", i);
			if (shmg_lookup(h, SHMG_KEY(key), NULL, NULL, 0, NULL, NULL) != 0)
				atomic_fetch_add(&rs->missed, 1);
		}
		if (shmg_member_count(h, SHMG_KEY("rs/group"), NULL) != NSURV)
			atomic_fetch_add(&rs->bad_members, 1);
		atomic_fetch_add(&rs->loops, 1);
	}
	for (int i = 0; i < NDOOM; i++) {
		key_of(key, sizeof(key), "d", i);
		if (shmg_lookup(h, SHMG_KEY(key), NULL, NULL, 0, NULL, NULL) != -ENOENT)
			atomic_fetch_add(&rs->zombies, 1);
	}
	shmg_close(h);
	return 0;
}

/* The node's slice of shard 0 (one shard): survivors with meta `gen`, their
 * memberships, and the doomed keys if `doomed`. */
static size_t slice(struct remote_change *c, char (*keys)[32], char (*metas)[16], int gen,
		    bool doomed)
{
	size_t n = 0;
	for (int i = 0; i < NSURV; i++) {
		key_of(keys[n], 32, "s", i);
		snprintf(metas[n], 16, "v%d", gen % 3 == 0 ? 0 : gen); /* some rounds: unchanged */
		c[n] = change(REMOTE_REGISTER, keys[n], metas[n], (uint32_t)i);
		n++;
		c[n] = change(REMOTE_JOIN, "rs/group", metas[n - 1], (uint32_t)i);
		n++;
	}
	for (int i = 0; doomed && i < NDOOM; i++) {
		key_of(keys[n], 32, "d", i);
		c[n] = change(REMOTE_REGISTER, keys[n], "d", (uint32_t)(100 + i));
		n++;
		c[n] = change(REMOTE_JOIN, "rs/group-doomed", "d", (uint32_t)(100 + i));
		n++;
	}
	return n;
}

START_TEST(test_resync_atomic_for_readers)
{
	/* Every event of the last resync fits in the mailbox. */
	struct shmg_config cfg = {.shards = 1, .max_endpoints = 16, .mailbox_bytes = 1 << 18};
	shmg_t *h = tc_open(tc_arena, &cfg);
	static struct remote_change c[2 * (NSURV + NDOOM)];
	static char keys[2 * (NSURV + NDOOM)][32], metas[2 * (NSURV + NDOOM)][16];
	static int rcs[2 * (NSURV + NDOOM)];
	uint64_t inc, cur;

	rs = tc_shared_alloc(sizeof(*rs));
	size_t n = slice(c, keys, metas, 1, true);
	TC_EQ(remote_resync(h, NODE, INC, 0, c, n, 10, rcs), 0);
	for (size_t i = 0; i < n; i++)
		TC_EQ(rcs[i], 0);
	remote_held(h, NODE, &inc, &cur);
	ck_assert_uint_eq(inc, INC);
	ck_assert_uint_eq(cur, 10);
	TC_EQ(shmg_registry_count(h, NULL), NSURV + NDOOM);

	atomic_store(&rs->phase, 1);
	pid_t pid = tc_fork(resync_reader, NULL);
	while (!atomic_load(&rs->ready))
		usleep(1000);
	/* Every round rewrites the survivors (new metadata two rounds in three)
	 * and alternately drops and brings back the doomed keys. */
	long start = atomic_load(&rs->loops);
	for (int round = 2; round < 200 || atomic_load(&rs->loops) < start + 50; round++) {
		n = slice(c, keys, metas, round, round % 2 == 1);
		TC_EQ(remote_resync(h, NODE, INC, 0, c, n, (uint64_t)round * 10, rcs), 0);
	}
	/* The last one drops the doomed keys, watched by a monitor. */
	TC_EQ(shmg_monitor(h, SHMG_KEY("rs/"), NULL), 0);
	n = slice(c, keys, metas, 1000, false);
	TC_EQ(remote_resync(h, NODE, INC, 0, c, n, 99999, rcs), 0);
	atomic_store(&rs->phase, 2);
	TC_EQ(tc_wait_exit(pid, 30000), 0);
	ck_assert_msg(atomic_load(&rs->missed) == 0 && atomic_load(&rs->bad_members) == 0,
		      "a reader missed survivors %ld times, saw a wrong member count %ld times "
		      "(%ld loops)",
		      atomic_load(&rs->missed), atomic_load(&rs->bad_members), atomic_load(&rs->loops));
	TC_EQ(atomic_load(&rs->zombies), 0);
	ck_assert_int_gt(atomic_load(&rs->loops), 50);

	TC_EQ(shmg_registry_count(h, NULL), NSURV);
	TC_EQ(shmg_member_count(h, SHMG_KEY("rs/group-doomed"), NULL), 0);
	char meta[16];
	size_t len;
	TC_EQ(shmg_lookup(h, SHMG_KEY("rs/s7"), NULL, meta, sizeof(meta), &len, NULL), 0);
	ck_assert(len == 5 && memcmp(meta, "v1000", 5) == 0);
	remote_held(h, NODE, &inc, &cur);
	ck_assert_uint_eq(cur, 99999);
	/* Survivors changed in place (registered/joined with the previous
	 * metadata), the doomed left with reason resync. */
	static struct tc_ev ev[4 * (NSURV + NDOOM)];
	int got = tc_ev_drain(h, ev, 4 * (NSURV + NDOOM)), removed = 0, changed = 0;
	for (int i = 0; i < got; i++) {
		if (ev[i].type == SHMG_EV_UNREGISTERED || ev[i].type == SHMG_EV_LEFT) {
			ck_assert_int_eq(ev[i].reason, SHMG_REASON_RESYNC);
			removed++;
		} else {
			ck_assert_msg(ev[i].has_previous, "event %d of %d (type %d, %s) has no previous meta",
				      i, got, ev[i].type, ev[i].key);
			changed++;
		}
	}
	TC_EQ(removed, 2 * NDOOM);
	TC_EQ(changed, 2 * NSURV);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

START_TEST(test_resync_same_meta_no_event)
{
	struct shmg_config cfg = {.shards = 1};
	shmg_t *h = tc_open(tc_arena, &cfg);
	struct remote_change c[3] = {change(REMOTE_REGISTER, "q/a", "1", 1),
				     change(REMOTE_JOIN, "q/g", "1", 1),
				     change(REMOTE_REGISTER, "q/b", "1", 2)};
	struct tc_ev ev[8];

	TC_EQ(remote_resync(h, NODE, INC, 0, c, 3, 5, NULL), 0);
	TC_EQ(shmg_monitor(h, SHMG_KEY("q/"), NULL), 0);
	TC_EQ(remote_resync(h, NODE, INC, 0, c, 3, 6, NULL), 0);
	tc_ev_expect_empty(h, "a resync with the same entries");
	/* q/b is not in the next one: it leaves, reason resync. */
	TC_EQ(remote_resync(h, NODE, INC, 0, c, 2, 7, NULL), 0);
	TC_EQ(tc_ev_drain(h, ev, 8), 1);
	ck_assert_msg(ev[0].type != SHMG_EV_OVERFLOW, "overflow, %llu dropped",
		      (unsigned long long)ev[0].dropped);
	tc_ev_expect(&ev[0], SHMG_EV_UNREGISTERED, SHMG_REASON_RESYNC, c[2].id, NULL, "q/b", "1",
		     1);
	TC_EQ(shmg_lookup(h, SHMG_KEY("q/b"), NULL, NULL, 0, NULL, NULL), -ENOENT);
	TC_EQ(shmg_lookup(h, SHMG_KEY("q/a"), NULL, NULL, 0, NULL, NULL), 0);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

/* ---- purge ------------------------------------------------------------------ */

START_TEST(test_purge_nodedown)
{
	shmg_t *h = tc_open(tc_arena, NULL); /* 8 shards */
	char key[32];
	uint64_t inc, cur[8];

	TC_EQ(shmg_monitor(h, SHMG_KEY("p/"), NULL), 0);
	for (uint32_t i = 0; i < 40; i++) {
		snprintf(key, sizeof(key), "p/r%u", i);
		TC_EQ(put(h, REMOTE_REGISTER, key, "m", i), 0);
		snprintf(key, sizeof(key), "p/g%u", i % 4);
		TC_EQ(put(h, REMOTE_JOIN, key, "m", i), 0);
	}
	struct remote_change c = change(REMOTE_REGISTER, "p/r0", "m", 0);
	TC_EQ(remote_apply(h, NODE, INC, shard_of_key(h, "p/r0"), &c, 1, 42, NULL), 0);
	TC_EQ(shmg_register(h, SHMG_KEY("p/local"), "l", 1, NULL), 0);
	struct tc_ev ev[128];
	TC_EQ(tc_ev_drain(h, ev, 128), 81);

	TC_EQ(remote_purge(h, NODE, SHMG_REASON_NODEDOWN), 80);
	TC_EQ(tc_ev_drain(h, ev, 128), 80);
	for (int i = 0; i < 80; i++) {
		ck_assert_int_eq(ev[i].reason, SHMG_REASON_NODEDOWN);
		ck_assert_uint_eq(ev[i].id.node, NODE);
		tc_ev_expect_single(&ev[i]);
	}
	TC_EQ(shmg_registry_count(h, NULL), 1);
	TC_EQ(shmg_member_count(h, SHMG_KEY("p/"), NULL), 0);
	remote_held(h, NODE, &inc, cur);
	TC_EQ(inc, 0);
	for (int s = 0; s < 8; s++)
		TC_EQ(cur[s], 0);
	TC_EQ(remote_purge(h, NODE, SHMG_REASON_NODEDOWN), 0);
	/* A new incarnation may come now. */
	c = change(REMOTE_REGISTER, "p/new", "m", 0);
	TC_EQ(remote_put(h, INC + 1, &c), 0);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

START_TEST(test_state_survives_reopen)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	uint64_t inc, cur[8];
	struct remote_change c = change(REMOTE_REGISTER, "st/a", "m", 1);
	uint32_t s = shard_of_key(h, "st/a");

	uint32_t s1 = remote_session_next(h);
	ck_assert_uint_gt(s1, 0);
	TC_EQ(remote_apply(h, NODE, INC, s, &c, 1, 17, NULL), 0);
	shmg_close(h);
	/* A restarted agent: a larger session, and the state it left. */
	h = tc_open(tc_arena, NULL);
	ck_assert_uint_eq(remote_session_next(h), s1 + 1);
	remote_held(h, NODE, &inc, cur);
	TC_EQ(inc, INC);
	for (uint32_t i = 0; i < 8; i++)
		TC_EQ(cur[i], i == s ? 17 : 0);
	remote_held(h, NODE + 1, &inc, cur);
	TC_EQ(inc, 0);
	TC_EQ(shmg_lookup(h, SHMG_KEY("st/a"), NULL, NULL, 0, NULL, NULL), 0);
	shmg_close(h);
}
END_TEST

/* ---- change log --------------------------------------------------------------- */

START_TEST(test_remote_not_logged)
{
	struct shmg_config cfg = {.shards = 1};
	shmg_t *h = tc_open(tc_arena, &cfg);
	struct oplog_cursor cur;
	struct oplog_entry e;
	char buf[2048];

	ck_assert_uint_le(oplog_record_max(h), sizeof(buf));
	TC_EQ(oplog_cursor_init(h, 0, &cur), 0);
	TC_EQ(put(h, REMOTE_REGISTER, "l/a", "m", 1), 0);
	TC_EQ(put(h, REMOTE_JOIN, "l/g", "m", 1), 0);
	TC_EQ(put(h, REMOTE_UNREGISTER, "l/a", NULL, 1), 0);
	struct remote_change c = change(REMOTE_REGISTER, "l/b", "m", 1);
	TC_EQ(remote_resync(h, NODE, INC, 0, &c, 1, 3, NULL), 0);
	TC_EQ(remote_purge(h, NODE, SHMG_REASON_NODEDOWN), 1); /* l/g went with the resync */
	TC_EQ(oplog_cursor_next(h, &cur, buf, sizeof(buf), &e), -EAGAIN);
	/* Local changes are, in order, with their seqs. */
	TC_EQ(shmg_register(h, SHMG_KEY("l/mine"), "abc", 3, NULL), 0);
	TC_EQ(shmg_unregister(h, SHMG_KEY("l/mine"), NULL), 0);
	TC_EQ(oplog_cursor_next(h, &cur, buf, sizeof(buf), &e), 0);
	ck_assert_uint_eq(e.seq, 0);
	ck_assert_int_eq(e.op, REMOTE_REGISTER);
	ck_assert(e.key_len == 6 && memcmp(e.key, "l/mine", 6) == 0);
	ck_assert(e.meta_len == 3 && memcmp(e.meta, "abc", 3) == 0);
	ck_assert_str_eq(e.cluster, "");
	ck_assert_uint_eq(e.id.node, shmg_self(h).node);
	TC_EQ(oplog_cursor_next(h, &cur, buf, sizeof(buf), &e), 0);
	ck_assert_uint_eq(e.seq, 1);
	ck_assert_int_eq(e.op, REMOTE_UNREGISTER);
	ck_assert_int_eq(e.reason, SHMG_REASON_NORMAL);
	TC_EQ(oplog_cursor_next(h, &cur, buf, sizeof(buf), &e), -EAGAIN);
	shmg_close(h);
}
END_TEST

struct snap_seen {
	int n, reg, member;
};

static int snap_cb(const struct oplog_entry *e, void *arg)
{
	struct snap_seen *s = arg;
	s->n++;
	if (e->op == REMOTE_REGISTER && e->key_len == 5 && !memcmp(e->key, "sn/me", 5) &&
	    e->meta_len == 2 && !memcmp(e->meta, "m1", 2) && !strcmp(e->cluster, ""))
		s->reg++;
	if (e->op == REMOTE_JOIN && e->key_len == 5 && !memcmp(e->key, "sn/gr", 5) &&
	    e->meta_len == 2 && !memcmp(e->meta, "m2", 2))
		s->member++;
	return 0;
}

START_TEST(test_snapshot_own_entries)
{
	struct shmg_config cfg = {.shards = 1};
	shmg_t *h = tc_open(tc_arena, &cfg);
	struct snap_seen seen = {0};
	struct oplog_cursor cur;
	struct oplog_entry e;
	char buf[2048];
	uint64_t next;

	TC_EQ(shmg_register(h, SHMG_KEY("sn/me"), "m1", 2, NULL), 0);
	TC_EQ(shmg_join(h, SHMG_KEY("sn/gr"), "m2", 2, NULL), 0);
	TC_EQ(shmg_register(h, SHMG_KEY("sn/gone"), "x", 1, NULL), 0);
	TC_EQ(shmg_unregister(h, SHMG_KEY("sn/gone"), NULL), 0);
	TC_EQ(put(h, REMOTE_REGISTER, "sn/theirs", "r", 1), 0);
	TC_EQ(put(h, REMOTE_JOIN, "sn/gr", "r", 1), 0);
	TC_EQ(oplog_cursor_init(h, 0, &cur), 0);
	TC_EQ(remote_snapshot(h, 0, snap_cb, &seen, &next), 2);
	ck_assert(seen.n == 2 && seen.reg == 1 && seen.member == 1);
	/* The copy is the state before the record of seq `next`. */
	TC_EQ(shmg_leave(h, SHMG_KEY("sn/gr"), NULL), 0);
	TC_EQ(oplog_cursor_next(h, &cur, buf, sizeof(buf), &e), 0);
	ck_assert_uint_eq(e.seq, next);
	TC_EQ(remote_snapshot(h, 0, NULL, NULL, NULL), 1);
	shmg_close(h);
}
END_TEST

START_TEST(test_log_reader_lapped)
{
	struct shmg_config cfg = {.shards = 1, .oplog_bytes = 65536};
	shmg_t *h = tc_open(tc_arena, &cfg);
	struct oplog_cursor cur;
	struct oplog_entry e;
	static char buf[1 << 16], meta[200];

	memset(meta, 'm', sizeof(meta));
	TC_EQ(oplog_cursor_init(h, 0, &cur), 0);
	/* Read as it goes: never lapped, every seq in order, across wraps. */
	uint64_t want = 0;
	for (int i = 0; i < 2000; i++) {
		TC_EQ(shmg_register(h, SHMG_KEY("lap/k"), meta, (size_t)(i % 200), NULL), 0);
		TC_EQ(oplog_cursor_next(h, &cur, buf, sizeof(buf), &e), 0);
		ck_assert_uint_eq(e.seq, want++);
		ck_assert_uint_eq(e.meta_len, (size_t)(i % 200));
	}
	/* A saved copy of a cursor reads its record again (a retransmission). */
	TC_EQ(shmg_register(h, SHMG_KEY("lap/k"), "again", 5, NULL), 0);
	TC_EQ(shmg_register(h, SHMG_KEY("lap/k"), "other", 5, NULL), 0);
	struct oplog_cursor saved = cur;
	TC_EQ(oplog_cursor_next(h, &cur, buf, sizeof(buf), &e), 0);
	TC_EQ(oplog_cursor_next(h, &cur, buf, sizeof(buf), &e), 0);
	TC_EQ(oplog_cursor_next(h, &saved, buf, sizeof(buf), &e), 0);
	ck_assert(e.meta_len == 5 && memcmp(e.meta, "again", 5) == 0);
	ck_assert_uint_eq(e.seq, want);
	/* Fall behind by more than the ring. */
	for (int i = 0; i < 1000; i++)
		TC_EQ(shmg_register(h, SHMG_KEY("lap/k"), meta, (size_t)(i % 200), NULL), 0);
	TC_EQ(oplog_cursor_next(h, &cur, buf, sizeof(buf), &e), -ESTALE);
	TC_EQ(oplog_cursor_next(h, &saved, buf, sizeof(buf), &e), -ESTALE); /* so is the copy */
	/* A reset (a repair may have lost a record) makes a cursor stale, with
	 * or without a record behind it. */
	TC_EQ(oplog_cursor_init(h, 0, &cur), 0);
	oplog_mark_reset(h, 0);
	TC_EQ(oplog_cursor_next(h, &cur, buf, sizeof(buf), &e), -ESTALE);
	TC_EQ(oplog_cursor_init(h, 0, &cur), 0);
	TC_EQ(shmg_register(h, SHMG_KEY("lap/k"), "x", 1, NULL), 0);
	oplog_mark_reset(h, 0);
	TC_EQ(oplog_cursor_next(h, &cur, buf, sizeof(buf), &e), -ESTALE);
	/* Close enough to being lapped that a writer could be overwriting the
	 * record while it is copied: stale, though the record is still whole. */
	uint64_t ring = 65536 - sizeof(struct oplog_header), slack = 2 * oplog_record_max(h);
	struct oplog_header *ol = oplog_at(h, 0);
	TC_EQ(oplog_cursor_init(h, 0, &cur), 0);
	uint64_t start = ol->head;
	while (ol->head - start + slack <= ring)
		TC_EQ(shmg_register(h, SHMG_KEY("lap/k"), meta, (size_t)(ol->seq % 200), NULL), 0);
	ck_assert_uint_lt(ol->head - start, ring - 2 * 256); /* not lapped for real */
	TC_EQ(oplog_cursor_next(h, &cur, buf, sizeof(buf), &e), -ESTALE);
	/* A record whose seq is not the one expected (the ring was rewritten
	 * under the cursor) is stale. */
	TC_EQ(oplog_cursor_init(h, 0, &cur), 0);
	TC_EQ(shmg_register(h, SHMG_KEY("lap/k"), "s", 1, NULL), 0);
	cur.seq++;
	TC_EQ(oplog_cursor_next(h, &cur, buf, sizeof(buf), &e), -ESTALE);
	/* A buffer too small says so. */
	TC_EQ(oplog_cursor_init(h, 0, &cur), 0);
	TC_EQ(shmg_register(h, SHMG_KEY("lap/k"), "xyz", 3, NULL), 0);
	TC_EQ(oplog_cursor_next(h, &cur, buf, 4, &e), -ENOBUFS);
	TC_EQ(oplog_cursor_next(h, &cur, buf, sizeof(buf), &e), 0);
	shmg_close(h);
}
END_TEST

/* ---- crashes ------------------------------------------------------------------ */

static const char *crash_points[] = {
	"remote:resync-upsert", "remote:resync-sweep", "remote:resync-swept",
	"register:published",   "remote:purged-shard", "join:linked",
	"leave:unlinked",       "unregister:unlinked",
};
#define N_CRASH (int)(sizeof(crash_points) / sizeof(crash_points[0]))
static const char *armed;

static void hook(const char *point)
{
	if (armed && strcmp(point, armed) == 0)
		raise(SIGKILL);
}

/* The before state: c/a (meta 1), c/gone, member c/g; the resync makes it
 * c/a (meta 2), c/new, member c/g (meta 2). */
static size_t before(struct remote_change *c)
{
	c[0] = change(REMOTE_REGISTER, "c/a", "1", 1);
	c[1] = change(REMOTE_REGISTER, "c/gone", "1", 2);
	c[2] = change(REMOTE_JOIN, "c/g", "1", 1);
	return 3;
}
static size_t after(struct remote_change *c)
{
	c[0] = change(REMOTE_REGISTER, "c/a", "2", 1);
	c[1] = change(REMOTE_REGISTER, "c/new", "2", 3);
	c[2] = change(REMOTE_JOIN, "c/g", "2", 1);
	return 3;
}

static int crash_child(void *arg)
{
	shmg_t *h;
	struct remote_change c[3];
	int i = (int)(intptr_t)arg;

	if (shmg_open(tc_arena, NULL, &h))
		return 10;
	armed = crash_points[i];
	sg_test_hook = hook;
	if (i < 3) {
		remote_resync(h, NODE, INC, 0, c, after(c), 20, NULL);
	} else if (i == 3) {
		c[0] = change(REMOTE_REGISTER, "c/fresh", "f", 9);
		remote_put(h, INC, &c[0]);
	} else if (i == 4) {
		remote_purge(h, NODE, SHMG_REASON_NODEDOWN);
	} else if (i == 5) {
		c[0] = change(REMOTE_JOIN, "c/g2", "f", 9);
		remote_put(h, INC, &c[0]);
	} else if (i == 6) {
		c[0] = change(REMOTE_LEAVE, "c/g", NULL, 1);
		remote_put(h, INC, &c[0]);
	} else {
		c[0] = change(REMOTE_UNREGISTER, "c/a", NULL, 1);
		remote_put(h, INC, &c[0]);
	}
	return 12;
}

START_TEST(test_crash_then_repair)
{
	struct shmg_config cfg = {.shards = 1};
	shmg_t *h = tc_open(tc_arena, &cfg);
	struct remote_change c[3];
	uint64_t inc, cur;

	TC_EQ(remote_resync(h, NODE, INC, 0, c, before(c), 10, NULL), 0);
	TC_EQ(shmg_monitor(h, SHMG_KEY("c/"), NULL), 0);
	TC_EQ(tc_wait_exit(tc_fork(crash_child, (void *)(intptr_t)_i), 30000), TC_KILLED(SIGKILL));
	TC_ASSERT_CLEAN(h); /* repairs the shard the child died holding */
	if (_i == 3 || _i == 5) {
		/* The change took effect: the repairer announces it. */
		struct tc_ev ev[4];
		TC_EQ(tc_ev_drain(h, ev, 4), 1);
		ck_assert_int_eq(ev[0].type, _i == 3 ? SHMG_EV_REGISTERED : SHMG_EV_JOINED);
		ck_assert(ev[0].id.node == NODE && ev[0].id.slot == 9 && ev[0].pid == 4009);
	}
	remote_held(h, NODE, &inc, &cur);
	if (_i < 3 || _i == 4)
		ck_assert_msg(inc == 0, "%s: a cut short resync or purge still reads as held",
			      crash_points[_i]);
	else
		ck_assert_msg(inc == INC && cur == 10, "%s: held %llu/%llu", crash_points[_i],
			      (unsigned long long)inc, (unsigned long long)cur);
	/* What the agent then does: purge and apply the owner's state again. */
	TC_EQ(remote_purge(h, NODE, SHMG_REASON_NODEDOWN) >= 0, 1);
	TC_EQ(remote_resync(h, NODE, INC, 0, c, after(c), 30, NULL), 0);
	TC_EQ(shmg_registry_count(h, NULL), 2);
	TC_EQ(shmg_member_count(h, SHMG_KEY("c/"), NULL), 1);
	TC_EQ(shmg_lookup(h, SHMG_KEY("c/gone"), NULL, NULL, 0, NULL, NULL), -ENOENT);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

static Suite *remote_suite(void)
{
	Suite *s = suite_create("remote");
	TCase *tc = tc_case(s, "remote", 60);

	tcase_add_test(tc, test_put_visible_elsewhere);
	tcase_add_test(tc, test_events_for_remote_changes);
	tcase_add_test(tc, test_resync_atomic_for_readers);
	tcase_add_test(tc, test_resync_same_meta_no_event);
	tcase_add_test(tc, test_purge_nodedown);
	tcase_add_test(tc, test_state_survives_reopen);
	tcase_add_test(tc, test_remote_not_logged);
	tcase_add_test(tc, test_log_reader_lapped);
	tcase_add_test(tc, test_snapshot_own_entries);
	tcase_add_loop_test(tc, test_crash_then_repair, 0, N_CRASH);
	return s;
}

int main(void)
{
	return tc_run(remote_suite());
}
