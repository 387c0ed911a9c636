/* SPDX-License-Identifier: MIT */
/*
 * The counters for tools (shmg_shard_stats, shmg_endpoint_stats,
 * shmg_cluster_stats): every figure equals what the test did, reads leave
 * every counter as it was, a writer that waited for the shard lock is
 * counted once, per-endpoint kind counts survive a repair that recounts the
 * shard, and the size argument lets older and newer callers' structs through.
 *
 * Arenas have one shard where a test needs to know which shard a key is in.
 * Linked against the static library for the crash hook (lib/testhook.h).
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "tc.h"

static const struct shmg_config one_shard = { .shards = 1 };

static struct shmg_shard_stats shard0(shmg_t *h)
{
	struct shmg_shard_stats s;

	TC_EQ(shmg_shard_stats(h, 0, &s, sizeof(s)), sizeof(s));
	return s;
}

static struct shmg_endpoint_stats ep_stats(shmg_t *h, shmg_t *of)
{
	struct shmg_endpoint_stats s;

	TC_EQ(shmg_endpoint_stats(h, shmg_self(of).slot, &s, sizeof(s)), sizeof(s));
	return s;
}

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

START_TEST(test_shard_figures)
{
	shmg_t *a = tc_open(tc_arena, &one_shard), *b = tc_open(tc_arena, NULL);
	struct shmg_shard_stats s = shard0(a);

	ck_assert_uint_eq(s.shard, 0);
	ck_assert_uint_eq(s.registered + s.members + s.monitors + s.writes, 0);
	ck_assert_uint_eq(s.lock_waits + s.repairs + s.log_records + s.log_resets, 0);
	ck_assert_uint_gt(s.index_slots, 0);
	ck_assert_uint_eq(s.log_capacity, 256 * 1024 - 64);

	TC_EQ(shmg_register(a, SHMG_KEY("r/1"), "m", 1, NULL), 0);
	TC_EQ(shmg_register(a, SHMG_KEY("r/2"), "m", 1, NULL), 0);
	TC_EQ(shmg_register(b, SHMG_KEY("r/3"), "m", 1, NULL), 0);
	TC_EQ(shmg_register(a, SHMG_KEY("r/1"), "new", 3, NULL), 0); /* a change */
	TC_EQ(shmg_register(a, SHMG_KEY("r/1"), "new", 3, NULL), 0); /* a no-op */
	TC_EQ(shmg_join(a, SHMG_KEY("g/x"), NULL, 0, NULL), 0);
	TC_EQ(shmg_join(b, SHMG_KEY("g/x"), NULL, 0, NULL), 0);
	TC_EQ(shmg_monitor(a, SHMG_KEY("r/"), NULL), 0);
	TC_EQ(shmg_monitor(b, SHMG_KEY("r/"), NULL), 0);
	TC_EQ(shmg_unregister(a, SHMG_KEY("r/2"), NULL), 0);

	s = shard0(a);
	ck_assert_uint_eq(s.registered, 2);
	ck_assert_uint_eq(s.members, 2);
	ck_assert_uint_eq(s.monitors, 2);
	/* 3 registrations, 1 change, 2 joins, 1 removal; monitors are not logged. */
	ck_assert_uint_eq(s.writes, 7);
	ck_assert_uint_eq(s.log_records, 7);
	ck_assert_uint_gt(s.log_bytes, 7 * sizeof(struct oplog_record));
	ck_assert_uint_eq(s.lock_waits, 0);
	/* r/1, r/3, the group head, its prefix node "g/" and its 2 members, the
	 * pattern head and its 2 monitors */
	ck_assert_uint_eq(s.index_used, 9);
	/* r/2, r/1's first block and g/x's single-member block (b's join made
	 * it a list), until a grace period */
	ck_assert_uint_le(s.retired, 3);
	TC_EQ(shmg_shard_stats(a, 1, &s, sizeof(s)), -ERANGE);
	shmg_close(b);
	shmg_close(a);
}
END_TEST

START_TEST(test_endpoint_figures)
{
	struct shmg_config cfg = { .mailbox_bytes = 4096, .key_max = 64, .meta_max = 64 };
	shmg_t *a, *b, *c;
	struct shmg_endpoint_stats s;
	struct shmg_event ev[64];
	uint64_t t0 = realtime_ns(), t1;
	char key[32];
	int i, n;

	a = tc_open(tc_arena, &cfg);
	b = tc_open(tc_arena, NULL);
	t1 = realtime_ns();
	TC_EQ(shmg_monitor(a, NULL, 0, NULL), 0);
	TC_EQ(shmg_monitor(a, SHMG_KEY("x/"), NULL), 0);
	for (i = 0; i < 3; i++) {
		snprintf(key, sizeof(key), "r/%d", i);
		TC_EQ(shmg_register(b, SHMG_KEY(key), NULL, 0, NULL), 0);
	}
	TC_EQ(shmg_join(b, SHMG_KEY("g/1"), NULL, 0, NULL), 0);
	TC_EQ(shmg_join(b, SHMG_KEY("g/2"), NULL, 0, NULL), 0);

	s = ep_stats(a, b);
	ck_assert_uint_eq(s.id.slot, shmg_self(b).slot);
	ck_assert_uint_eq(s.id.gen, shmg_self(b).gen);
	ck_assert_int_eq(s.pid, getpid());
	ck_assert_uint_eq(s.state, SHMG_ENDPOINT_LIVE);
	ck_assert_uint_ge(s.opened_ns, t0);
	ck_assert_uint_le(s.opened_ns, t1);
	ck_assert_uint_eq(s.registrations, 3);
	ck_assert_uint_eq(s.memberships, 2);
	ck_assert_uint_eq(s.monitors, 0);
	ck_assert_uint_eq(s.events_delivered + s.events_dropped + s.mailbox_used, 0);

	s = ep_stats(b, a);
	ck_assert_uint_eq(s.registrations + s.memberships, 0);
	ck_assert_uint_eq(s.monitors, 2);
	ck_assert_uint_eq(s.events_delivered, 5);
	ck_assert_uint_gt(s.mailbox_used, 0);
	ck_assert_uint_eq(s.mailbox_capacity, 4096 - sizeof(struct mailbox_header));
	TC_EQ(shmg_receive(a, ev, 64, 0), 5);
	s = ep_stats(b, a);
	ck_assert_uint_eq(s.mailbox_used, 0);
	ck_assert_uint_eq(s.events_delivered, 5);

	/* Overflow: every event past what the ring holds is counted dropped. */
	for (i = 0; i < 200; i++) {
		snprintf(key, sizeof(key), "d/%d", i);
		TC_EQ(shmg_register(b, SHMG_KEY(key), NULL, 0, NULL), 0);
	}
	s = ep_stats(b, a);
	ck_assert_uint_gt(s.events_dropped, 0);
	ck_assert_uint_eq(s.events_delivered + s.events_dropped, 205);
	struct shmg_event last = { 0 };
	for (n = 0; (i = shmg_receive(a, ev, 64, 0)) > 0; n += i)
		last = ev[i - 1];
	ck_assert_int_eq(last.type, SHMG_EV_OVERFLOW);
	ck_assert_uint_eq(last.dropped, s.events_dropped);
	ck_assert_uint_eq((uint64_t)n, s.events_delivered - 5 + 1);

	/* A slot's next owner starts from zero; a free slot is not in use. */
	uint32_t slot = shmg_self(b).slot;
	shmg_close(b);
	TC_EQ(shmg_endpoint_stats(a, slot, &s, sizeof(s)), -ENOENT);
	c = tc_open(tc_arena, NULL);
	ck_assert_uint_eq(shmg_self(c).slot, slot);
	s = ep_stats(a, c);
	ck_assert_uint_eq(s.registrations + s.memberships + s.monitors, 0);
	ck_assert_uint_eq(s.events_delivered + s.events_dropped, 0);
	TC_EQ(shmg_endpoint_stats(a, 1024, &s, sizeof(s)), -ERANGE);
	shmg_close(c);
	shmg_close(a);
}
END_TEST

/* Everything a tool can read, as one blob. */
struct all_stats {
	struct shmg_shard_stats shard[4];
	struct shmg_endpoint_stats ep[3];
	struct shmg_cluster_stats cl;
};

static void read_all(shmg_t *h, struct all_stats *a)
{
	memset(a, 0, sizeof(*a));
	for (uint32_t i = 0; i < 4; i++)
		TC_EQ(shmg_shard_stats(h, i, &a->shard[i], sizeof(a->shard[i])),
		      sizeof(a->shard[i]));
	for (uint32_t i = 0; i < 3; i++)
		TC_EQ(shmg_endpoint_stats(h, i, &a->ep[i], sizeof(a->ep[i])), sizeof(a->ep[i]));
	TC_EQ(shmg_cluster_stats(h, 0, &a->cl, sizeof(a->cl)), sizeof(a->cl));
}

START_TEST(test_reads_count_nothing)
{
	struct shmg_config cfg = { .shards = 4 };
	shmg_t *w = tc_open(tc_arena, &cfg), *r = tc_open(tc_arena, NULL),
	       *m = tc_open(tc_arena, NULL);
	struct all_stats before, after;
	struct shmg_key keys[16];
	char names[16][16];
	shmg_id_t id;
	int rcs[16];
	long n;

	TC_EQ(shmg_monitor(m, NULL, 0, NULL), 0);
	for (int i = 0; i < 16; i++) {
		snprintf(names[i], sizeof(names[i]), "k/%d", i);
		keys[i] = (struct shmg_key){ names[i], strlen(names[i]) };
		TC_EQ(shmg_register(w, keys[i].key, keys[i].len, "m", 1, NULL), 0);
		TC_EQ(shmg_join(w, keys[i].key, keys[i].len, NULL, 0, NULL), 0);
	}
	read_all(r, &before);
	for (int i = 0; i < 1000; i++) {
		TC_EQ(shmg_lookup(r, keys[i % 16].key, keys[i % 16].len, &id, NULL, 0, NULL, NULL),
		      0);
		TC_EQ(shmg_lookup(r, SHMG_KEY("absent"), &id, NULL, 0, NULL, NULL), -ENOENT);
	}
	TC_EQ(shmg_lookup_many(r, keys, 16, NULL, rcs, NULL), 16);
	n = 0;
	TC_EQ(shmg_members(r, SHMG_KEY("k/"), tc_count_cb, &n, NULL), 16);
	TC_EQ(shmg_member_count(r, SHMG_KEY("k/1"), NULL), 1);
	TC_EQ(shmg_registry_count(r, NULL), 16);
	n = 0;
	TC_EQ(shmg_entries(r, 1, tc_count_cb, &n), 32);
	read_all(r, &after);
	for (int i = 0; i < 4; i++)
		ck_assert_msg(memcmp(&before.shard[i], &after.shard[i], sizeof(before.shard[i])) ==
				      0,
			      "shard %d's counters moved under reads", i);
	for (int i = 0; i < 3; i++)
		ck_assert_msg(memcmp(&before.ep[i], &after.ep[i], sizeof(before.ep[i])) == 0,
			      "endpoint %d's counters moved under reads", i);
	ck_assert_int_eq(memcmp(&before.cl, &after.cl, sizeof(before.cl)), 0);
	shmg_close(m);
	shmg_close(r);
	shmg_close(w);
}
END_TEST

/* A writer parked at "register:locked" in one thread holds the shard lock
 * while another thread's writer has to wait for it. */
static pthread_t parker;
static int park_pipe[2], parked_pipe[2];
static _Atomic pid_t waiter_tid;

static void park_hook(const char *point)
{
	char c;

	if (!pthread_equal(pthread_self(), parker) || strcmp(point, "register:locked") != 0)
		return;
	ck_assert_int_eq(write(parked_pipe[1], "p", 1), 1);
	ck_assert_int_eq(read(park_pipe[0], &c, 1), 1);
}

static void *park_register(void *arg)
{
	return (void *)(intptr_t)shmg_register(arg, SHMG_KEY("held"), NULL, 0, NULL);
}

static void *plain_register(void *arg)
{
	waiter_tid = gettid();
	return (void *)(intptr_t)shmg_register(arg, SHMG_KEY("waiter"), NULL, 0, NULL);
}

/* The waiter is asleep: in its wait for the lock, the only place it sleeps. */
static bool waiter_asleep(void *arg)
{
	char path[64], buf[256], *p;
	FILE *f;
	bool asleep = false;

	(void)arg;
	if (!waiter_tid)
		return false;
	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)waiter_tid);
	if (!(f = fopen(path, "r")))
		return false;
	if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')))
		asleep = p[1] == ' ' && p[2] == 'S';
	fclose(f);
	return asleep;
}

START_TEST(test_lock_waits_counted_once)
{
	shmg_t *a = tc_open(tc_arena, &one_shard), *b = tc_open(tc_arena, NULL);
	pthread_t waiter;
	void *ra, *rb;
	char c;

	TC_EQ(shmg_register(a, SHMG_KEY("alone"), NULL, 0, NULL), 0);
	ck_assert_uint_eq(shard0(a).lock_waits, 0);
	ck_assert_int_eq(pipe(park_pipe), 0);
	ck_assert_int_eq(pipe(parked_pipe), 0);
	sg_test_hook = park_hook;
	ck_assert_int_eq(pthread_create(&parker, NULL, park_register, a), 0);
	ck_assert_int_eq(read(parked_pipe[0], &c, 1), 1);
	ck_assert_int_eq(pthread_create(&waiter, NULL, plain_register, b), 0);
	ck_assert(tc_wait_until(waiter_asleep, NULL, 10000));
	ck_assert_uint_eq(shard0(a).lock_waits, 0); /* counted once it has the lock */
	ck_assert_int_eq(write(park_pipe[1], "go", 1), 1);
	ck_assert_int_eq(pthread_join(parker, &ra), 0);
	ck_assert_int_eq(pthread_join(waiter, &rb), 0);
	sg_test_hook = NULL;
	ck_assert_int_eq((int)(intptr_t)ra, 0);
	ck_assert_int_eq((int)(intptr_t)rb, 0);
	ck_assert_uint_eq(shard0(a).lock_waits, 1);
	ck_assert_uint_eq(shard0(a).writes, 3);
	shmg_close(b);
	shmg_close(a);
}
END_TEST

static void kill_hook(const char *point)
{
	if (strcmp(point, "register:published") == 0)
		raise(SIGKILL);
}

static int die_registering(void *arg)
{
	shmg_t *h;

	(void)arg;
	if (shmg_open(tc_arena, NULL, &h) < 0)
		return 1;
	sg_test_hook = kill_hook;
	shmg_register(h, SHMG_KEY("dies/here"), NULL, 0, NULL);
	return 2; /* not reached */
}

START_TEST(test_kind_counts_survive_repair)
{
	shmg_t *a = tc_open(tc_arena, &one_shard), *b = tc_open(tc_arena, NULL);
	struct shmg_endpoint_stats s;

	TC_EQ(shmg_register(a, SHMG_KEY("a/1"), NULL, 0, NULL), 0);
	TC_EQ(shmg_register(a, SHMG_KEY("a/2"), NULL, 0, NULL), 0);
	TC_EQ(shmg_join(a, SHMG_KEY("g"), NULL, 0, NULL), 0);
	TC_EQ(shmg_monitor(a, SHMG_KEY("m/"), NULL), 0);
	ck_assert_int_eq(tc_wait_exit(tc_fork(die_registering, NULL), 10000), TC_KILLED(SIGKILL));
	/* The next writer repairs the shard, recounting every endpoint's entries. */
	TC_EQ(shmg_register(b, SHMG_KEY("b/1"), NULL, 0, NULL), 0);
	ck_assert_uint_eq(shard0(b).repairs, 1);
	s = ep_stats(b, a);
	ck_assert_uint_eq(s.registrations, 2);
	ck_assert_uint_eq(s.memberships, 1);
	ck_assert_uint_eq(s.monitors, 1);
	s = ep_stats(a, b);
	ck_assert_uint_eq(s.registrations, 1);
	ck_assert_uint_eq(s.memberships + s.monitors, 0);
	/* And they go on from the recount. */
	TC_EQ(shmg_unregister(a, SHMG_KEY("a/1"), NULL), 0);
	TC_EQ(shmg_leave(a, SHMG_KEY("g"), NULL), 0);
	s = ep_stats(b, a);
	ck_assert_uint_eq(s.registrations, 1);
	ck_assert_uint_eq(s.memberships, 0);
	ck_assert_uint_eq(s.monitors, 1);
	TC_ASSERT_CLEAN(b);
	shmg_close(b);
	shmg_close(a);
}
END_TEST

START_TEST(test_cluster_figures)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	struct shmg_connect_opts co = { .ttl_ms = 60000 };
	struct shmg_opts o = { .cluster = "blue" };
	struct shmg_cluster_stats s;
	uint64_t t0 = realtime_ns();
	uint32_t slot, found = 0;
	int rc;

	TC_EQ(shmg_connect(h, "blue", &co), 0);
	TC_EQ(shmg_register(h, SHMG_KEY("a"), NULL, 0, &o), 0);
	TC_EQ(shmg_register(h, SHMG_KEY("b"), NULL, 0, &o), 0);
	TC_EQ(shmg_join(h, SHMG_KEY("g"), NULL, 0, &o), 0);
	TC_EQ(shmg_register(h, SHMG_KEY("a"), NULL, 0, NULL), 0);

	TC_EQ(shmg_cluster_stats(h, 0, &s, sizeof(s)), sizeof(s));
	ck_assert_str_eq(s.name, "");
	ck_assert_uint_eq(s.registered, 1);
	ck_assert_uint_eq(s.members, 0);
	ck_assert_uint_eq(s.ttl_ms, 0);
	for (slot = 1; (rc = shmg_cluster_stats(h, slot, &s, sizeof(s))) != -ERANGE; slot++) {
		if (rc == -ENOENT)
			continue;
		TC_EQ(rc, sizeof(s));
		found++;
		ck_assert_str_eq(s.name, "blue");
		ck_assert_uint_eq(s.slot, slot);
		ck_assert_uint_eq(s.registered, 2);
		ck_assert_uint_eq(s.members, 1);
		ck_assert_uint_eq(s.ttl_ms, 60000);
		ck_assert_int_gt(s.lease_left_ms, 50000);
		ck_assert_int_le(s.lease_left_ms, 60000);
		ck_assert_uint_ge(s.connected_ns, t0);
	}
	ck_assert_uint_eq(found, 1);
	ck_assert_uint_eq(slot, 256);
	TC_EQ(shmg_disconnect(h, "blue"), 0);
	for (slot = 1; slot < 256; slot++)
		TC_EQ(shmg_cluster_stats(h, slot, &s, sizeof(s)), -ENOENT);
	shmg_close(h);
}
END_TEST

START_TEST(test_size_contract)
{
	shmg_t *h = tc_open(tc_arena, &one_shard);
	struct shmg_shard_stats full;
	unsigned char buf[sizeof(full) + 32];
	size_t prefix = offsetof(struct shmg_shard_stats, writes);

	TC_EQ(shmg_register(h, SHMG_KEY("k"), NULL, 0, NULL), 0);
	full = shard0(h);
	/* An older caller's shorter struct: its prefix, nothing past it. */
	memset(buf, 0xab, sizeof(buf));
	TC_EQ(shmg_shard_stats(h, 0, (struct shmg_shard_stats *)(void *)buf, prefix), prefix);
	ck_assert_int_eq(memcmp(buf, &full, prefix), 0);
	ck_assert_uint_eq(buf[prefix], 0xab);
	/* A newer caller's longer struct: zeros where this library has no field. */
	memset(buf, 0xab, sizeof(buf));
	TC_EQ(shmg_shard_stats(h, 0, (struct shmg_shard_stats *)(void *)buf, sizeof(buf)),
	      sizeof(full));
	ck_assert_int_eq(memcmp(buf, &full, sizeof(full)), 0);
	for (size_t i = sizeof(full); i < sizeof(buf); i++)
		ck_assert_uint_eq(buf[i], 0);
	TC_EQ(shmg_shard_stats(h, 0, NULL, 0), 0);
	TC_EQ(shmg_shard_stats(h, 0, NULL, sizeof(full)), -EINVAL);
	TC_EQ(shmg_endpoint_stats(h, 0, NULL, 8), -EINVAL);
	TC_EQ(shmg_cluster_stats(h, 0, NULL, 8), -EINVAL);
	TC_EQ(shmg_shard_stats(NULL, 0, &full, sizeof(full)), -EBADF);
	shmg_close(h);
}
END_TEST

/* Damaged counters give clamped figures, never more entries of a kind than
 * the endpoint has, nor a mailbox fuller than its ring. */
START_TEST(test_damaged_counters_clamped)
{
	shmg_t *h = tc_open(tc_arena, &one_shard);
	struct shmg_endpoint_stats s;
	size_t size;
	uint8_t *base = tc_map_arena(tc_arena, &size);
	const struct arena_header *hdr = (const void *)base;
	uint32_t slot = shmg_self(h).slot;

	TC_EQ(shmg_register(h, SHMG_KEY("k"), NULL, 0, NULL), 0);
	TC_EQ(shmg_join(h, SHMG_KEY("g"), NULL, 0, NULL), 0);
	uint8_t *shard = base + hdr->off_shards;
	uint32_t *all = (uint32_t *)(shard + sizeof(struct shard_header) +
				     hdr->max_clusters * sizeof(struct cluster_counts));
	struct ep_kind_counts *kinds =
		(struct ep_kind_counts *)((uint8_t *)(all + hdr->max_endpoints) +
					  LIMBO_CAP * sizeof(struct limbo_item));
	ck_assert_uint_eq(all[slot], 2);
	ck_assert_uint_eq(kinds[slot].registered, 1);
	kinds[slot].registered = 1000;
	kinds[slot].monitors = 1000;
	struct mailbox_header *mb = (struct mailbox_header *)(base + hdr->off_mailboxes +
							      (uint64_t)slot * hdr->mailbox_bytes);
	mb->tail = mb->head + (1ull << 40);
	s = ep_stats(h, h);
	ck_assert_uint_eq(s.registrations, 2);
	ck_assert_uint_eq(s.memberships + s.monitors, 0);
	ck_assert_uint_eq(s.mailbox_used, s.mailbox_capacity);
	mb->tail = mb->head;
	munmap(base, size);
	shmg_close(h);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("stats");
	TCase *tc = tc_case(s, "stats", 30);

	tcase_add_test(tc, test_shard_figures);
	tcase_add_test(tc, test_endpoint_figures);
	tcase_add_test(tc, test_reads_count_nothing);
	tcase_add_test(tc, test_lock_waits_counted_once);
	tcase_add_test(tc, test_kind_counts_survive_repair);
	tcase_add_test(tc, test_cluster_figures);
	tcase_add_test(tc, test_size_contract);
	tcase_add_test(tc, test_damaged_counters_clamped);
	return tc_run(s);
}
