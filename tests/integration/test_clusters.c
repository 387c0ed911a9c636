/* SPDX-License-Identifier: MIT */
/*
 * The library side of named clusters across hosts (issue 10):
 *   - the change-log markers of a connect and a disconnect, in every shard,
 *     after the disconnect's removals, and complete after a connect or a
 *     disconnect killed half way;
 *   - a disconnect removes the cluster's entries of every node here, with
 *     reason cluster_disconnect;
 *   - remote_purge_cluster and remote_node_cluster (shmg_nodes of a cluster);
 *   - remote_conflict_evict: a loser in another process loses its entries and
 *     monitors in one batch with reason conflict, reads a final conflict
 *     record, and its handle's writes fail with -ECONNABORTED; killed half
 *     way, the removal is finished with the same reason;
 *   - remote_signal_endpoint signals the endpoint's own process, and never a
 *     process whose start time is not the one recorded.
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
#include "testhook.h"

#define PEER 2u
#define PEER2 3u
#define INC 77u

static struct remote_change change(uint8_t op, const char *cluster, const char *key,
				   const char *meta, uint32_t node, uint32_t slot)
{
	return (struct remote_change){
		.op = op,
		.cluster = cluster,
		.key = key,
		.key_len = strlen(key),
		.meta = meta,
		.meta_len = meta ? strlen(meta) : 0,
		.id = {node, slot, 1},
		.pid = 4000 + (int32_t)slot,
		.time_ns = 1000 + slot,
	};
}

static int put(shmg_t *h, uint8_t op, const char *cluster, const char *key, uint32_t node,
	       uint32_t slot)
{
	struct remote_change c = change(op, cluster, key, "rm", node, slot);
	return remote_put(h, INC, &c);
}

/* ---- the hook ----------------------------------------------------------- */

static const char *hook_point;
static int hook_skip; /* passes of the point to let go by first */

static void hook(const char *point)
{
	if (strcmp(point, hook_point) == 0 && hook_skip-- <= 0)
		raise(SIGKILL);
}

/* ---- change-log markers ------------------------------------------------- */

struct logs {
	struct oplog_cursor cur[8];
	uint32_t n;
};

static void logs_start(shmg_t *h, struct logs *l)
{
	l->n = h->geo.shards;
	for (uint32_t s = 0; s < l->n; s++)
		TC_EQ(oplog_cursor_init(h, s, &l->cur[s]), 0);
}

/* Reads shard s's new records; counts the markers of op for cluster, and
 * (if removals) counts the removals, checking that none follows a marker. */
static int markers(shmg_t *h, struct logs *l, uint32_t s, uint8_t op, const char *cluster,
		   int *removals)
{
	size_t cap = oplog_record_max(h);
	char *buf = malloc(cap);
	struct oplog_entry e;
	int n = 0;
	while (oplog_cursor_next(h, &l->cur[s], buf, cap, &e) == 0) {
		if (e.op == OP_CLUSTER_CONNECT || e.op == OP_CLUSTER_DISCONNECT) {
			if (strcmp(e.cluster, cluster) != 0)
				continue; /* another cluster's */
			ck_assert_uint_eq(e.key_len, 0);
			ck_assert_uint_eq(e.meta_len, 0);
			ck_assert_uint_eq(e.id.node, shmg_self(h).node);
			ck_assert_uint_eq(e.id.slot, 0);
			ck_assert_uint_eq(e.id.gen, 0);
			n += e.op == op;
		} else if (removals) {
			ck_assert_msg(n == 0, "a removal after the marker in shard %u", s);
			ck_assert_int_eq(e.reason, SHMG_REASON_CLUSTER_DISCONNECT);
			(*removals)++;
		}
	}
	free(buf);
	return n;
}

START_TEST(test_markers_in_every_shard)
{
	shmg_t *h = tc_open(tc_arena, NULL); /* 8 shards */
	struct shmg_opts o = {.cluster = "mk"};
	struct logs l;
	char key[16];

	logs_start(h, &l);
	TC_EQ(shmg_connect(h, "mk", NULL), 0);
	for (uint32_t s = 0; s < l.n; s++)
		TC_EQ(markers(h, &l, s, OP_CLUSTER_CONNECT, "mk", NULL), 1);
	/* Connected already: a no-op, no marker. */
	TC_EQ(shmg_connect(h, "mk", NULL), 0);
	for (uint32_t s = 0; s < l.n; s++)
		TC_EQ(markers(h, &l, s, OP_CLUSTER_CONNECT, "mk", NULL), 0);
	for (int i = 0; i < 16; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		TC_EQ(shmg_register(h, SHMG_KEY(key), "m", 1, &o), 0);
	}
	for (uint32_t s = 0; s < l.n; s++)
		markers(h, &l, s, OP_CLUSTER_CONNECT, "mk", NULL); /* skip the registers */
	TC_EQ(shmg_disconnect(h, "mk"), 0);
	int removals = 0;
	for (uint32_t s = 0; s < l.n; s++)
		TC_EQ(markers(h, &l, s, OP_CLUSTER_DISCONNECT, "mk", &removals), 1);
	TC_EQ(removals, 16);
	/* Not connected: nothing to say. */
	TC_EQ(shmg_disconnect(h, "mk"), 0);
	for (uint32_t s = 0; s < l.n; s++)
		TC_EQ(markers(h, &l, s, OP_CLUSTER_DISCONNECT, "mk", NULL), 0);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

struct crash_arg {
	const char *point;
	int skip;
	bool disconnect;
};

static int cluster_crasher(void *arg)
{
	const struct crash_arg *a = arg;
	shmg_t *h;
	if (shmg_open(tc_arena, NULL, &h))
		return 10;
	hook_point = a->point;
	hook_skip = a->skip;
	sg_test_hook = hook;
	if (a->disconnect)
		shmg_disconnect(h, "cr");
	else
		shmg_connect(h, "cr", NULL);
	return 11; /* not reached */
}

static void crash_case(const char *point, int skip, bool disconnect)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	struct shmg_opts o = {.cluster = "cr"};
	struct logs l;
	struct crash_arg a = {point, skip, disconnect};

	if (disconnect) {
		TC_EQ(shmg_connect(h, "cr", NULL), 0);
		TC_EQ(shmg_register(h, SHMG_KEY("local"), "m", 1, &o), 0);
		TC_EQ(put(h, REMOTE_REGISTER, "cr", "remote", PEER, 4), 0);
	}
	logs_start(h, &l);
	TC_EQ(tc_wait_exit(tc_fork(cluster_crasher, &a), 10000), TC_KILLED(SIGKILL));
	/* Connected (or not) already, from the first step on. */
	TC_EQ(shmg_connected(h, "cr"), disconnect ? 0 : 1);
	/* The next holder of the cluster lock writes the markers the dead one
	 * owed: here a connect (of the same cluster, or another). */
	if (disconnect)
		TC_EQ(shmg_connect(h, "other", NULL), 0);
	else
		TC_EQ(shmg_connect(h, "cr", NULL), 0);
	for (uint32_t s = 0; s < l.n; s++)
		ck_assert_int_ge(markers(h, &l, s, disconnect ? OP_CLUSTER_DISCONNECT
							      : OP_CLUSTER_CONNECT,
					 "cr", NULL),
				 1);
	if (disconnect) {
		TC_EQ(shmg_connect(h, "cr", NULL), 0);
		TC_EQ(shmg_registry_count(h, &o), 0);
	}
	TC_EQ(shmg_reap(h), 1);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}

START_TEST(test_connect_killed_after_one_marker) { crash_case("cluster:marked", 0, false); }
END_TEST
START_TEST(test_connect_killed_after_publishing) { crash_case("connect:published", 0, false); }
END_TEST
START_TEST(test_disconnect_killed_after_tombstone) { crash_case("disconnect:tombstoned", 0, true); }
END_TEST
START_TEST(test_disconnect_killed_between_markers) { crash_case("cluster:marked", 2, true); }
END_TEST

/* ---- entries of other nodes --------------------------------------------- */

START_TEST(test_disconnect_removes_every_node)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	shmg_t *mon = tc_open(tc_arena, NULL);
	struct shmg_opts o = {.cluster = "dx"};
	struct tc_ev ev[16];

	TC_EQ(shmg_connect(h, "dx", NULL), 0);
	TC_EQ(shmg_monitor(mon, SHMG_KEY("d/"), &o), 0);
	TC_EQ(shmg_register(h, SHMG_KEY("d/local"), "lm", 2, &o), 0);
	TC_EQ(put(h, REMOTE_REGISTER, "dx", "d/remote", PEER, 4), 0);
	TC_EQ(put(h, REMOTE_JOIN, "dx", "d/group", PEER2, 5), 0);
	TC_EQ(put(h, REMOTE_REGISTER, NULL, "d/default", PEER, 6), 0); /* another cluster */
	TC_EQ(tc_ev_drain(mon, ev, 16), 3);
	TC_EQ(shmg_registry_count(h, &o), 2);

	TC_EQ(shmg_disconnect(h, "dx"), 0);
	TC_EQ(tc_ev_drain(mon, ev, 16), 3);
	int remote = 0;
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(ev[i].reason, SHMG_REASON_CLUSTER_DISCONNECT);
		ck_assert_str_eq(ev[i].cluster, "dx");
		tc_ev_expect_single(&ev[i]);
		remote += ev[i].id.node != shmg_self(h).node;
	}
	TC_EQ(remote, 2);
	/* Connected again: nothing of the old connection comes back. */
	TC_EQ(shmg_connect(h, "dx", NULL), 0);
	TC_EQ(shmg_registry_count(h, &o), 0);
	TC_EQ(shmg_member_count(h, SHMG_KEY("d/group"), &o), 0);
	TC_EQ(shmg_registry_count(h, NULL), 1);
	TC_ASSERT_CLEAN(h);
	shmg_close(mon);
	shmg_close(h);
}
END_TEST

START_TEST(test_purge_cluster)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	struct shmg_opts o = {.cluster = "pc"}, q = {.cluster = "other"};
	struct tc_ev ev[32];
	char key[16];
	uint64_t inc, cur[8];

	TC_EQ(shmg_connect(h, "pc", NULL), 0);
	TC_EQ(shmg_connect(h, "other", NULL), 0);
	TC_EQ(shmg_monitor(h, SHMG_KEY("p/"), &o), 0);
	TC_EQ(shmg_register(h, SHMG_KEY("p/mine"), "m", 1, &o), 0);
	for (uint32_t i = 0; i < 6; i++) {
		snprintf(key, sizeof(key), "p/r%u", i);
		TC_EQ(put(h, REMOTE_REGISTER, "pc", key, i % 2 ? PEER : PEER2, i), 0);
		TC_EQ(put(h, REMOTE_JOIN, "pc", "p/g", i % 2 ? PEER : PEER2, i), 0);
	}
	TC_EQ(put(h, REMOTE_REGISTER, "other", "p/r0", PEER, 9), 0);
	TC_EQ(put(h, REMOTE_REGISTER, NULL, "p/r0", PEER, 9), 0);
	struct remote_change c = change(REMOTE_REGISTER, "pc", "p/r1", "rm", PEER, 1);
	TC_EQ(remote_apply(h, PEER, INC, shard_of(h, sg_hash("p/r1", 4, cluster_name_seed("pc"))), &c, 1, 42, NULL), 0);
	TC_EQ(tc_ev_drain(h, ev, 32), 13);

	TC_EQ(remote_purge_cluster(h, PEER, NULL, SHMG_REASON_CLUSTER_DISCONNECT), -EINVAL);
	TC_EQ(remote_purge_cluster(h, PEER, "", SHMG_REASON_CLUSTER_DISCONNECT), -EINVAL);
	TC_EQ(remote_purge_cluster(h, shmg_self(h).node, "pc", SHMG_REASON_CLUSTER_DISCONNECT), -EINVAL);
	TC_EQ(remote_purge_cluster(h, PEER, "pc", 99), -EINVAL);
	TC_EQ(remote_purge_cluster(h, PEER, "not-here", SHMG_REASON_CLUSTER_DISCONNECT), 0);

	/* PEER's six entries of pc; PEER2's, this node's and other clusters' stay. */
	TC_EQ(remote_purge_cluster(h, PEER, "pc", SHMG_REASON_CLUSTER_DISCONNECT), 6);
	TC_EQ(tc_ev_drain(h, ev, 32), 6);
	for (int i = 0; i < 6; i++) {
		ck_assert_int_eq(ev[i].reason, SHMG_REASON_CLUSTER_DISCONNECT);
		ck_assert_uint_eq(ev[i].id.node, PEER);
		tc_ev_expect_single(&ev[i]);
	}
	TC_EQ(shmg_registry_count(h, &o), 4);
	TC_EQ(shmg_member_count(h, SHMG_KEY("p/g"), &o), 3);
	TC_EQ(shmg_registry_count(h, &q), 1);
	TC_EQ(shmg_registry_count(h, NULL), 1);
	/* Its incarnation and cursors are kept. */
	remote_held(h, PEER, &inc, cur);
	TC_EQ(inc, INC);
	uint64_t sum = 0;
	for (int s = 0; s < 8; s++)
		sum += cur[s];
	TC_EQ(sum, 42);
	/* Node 0: every other node's. */
	TC_EQ(remote_purge_cluster(h, 0, "pc", SHMG_REASON_CLUSTER_DISCONNECT), 6);
	TC_EQ(tc_ev_drain(h, ev, 32), 6);
	TC_EQ(shmg_registry_count(h, &o), 1);
	TC_EQ(remote_purge_cluster(h, 0, "pc", SHMG_REASON_CLUSTER_DISCONNECT), 0);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

START_TEST(test_node_cluster_marks)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	uint32_t self = shmg_self(h).node, nodes[8];

	TC_EQ(remote_node_cluster(h, 0, "nc", true), -EINVAL);
	TC_EQ(remote_node_cluster(h, self, "nc", true), -EINVAL);
	TC_EQ(remote_node_cluster(h, PEER, NULL, true), -EINVAL);
	TC_EQ(remote_node_cluster(h, PEER, "bad name", true), -EINVAL);
	/* Not connected here: nothing to mark, nothing listed. */
	TC_EQ(remote_node_cluster(h, PEER, "nc", true), 0);
	TC_EQ(shmg_nodes(h, "nc", nodes, 8), 0);
	TC_EQ(shmg_connect(h, "nc", NULL), 0);
	TC_EQ(shmg_connect(h, "nd", NULL), 0);
	TC_EQ(shmg_nodes(h, "nc", nodes, 8), 1);
	TC_EQ(remote_node_cluster(h, PEER, "nc", true), 0);
	TC_EQ(remote_node_cluster(h, PEER2, "nc", true), 0);
	TC_EQ(remote_node_cluster(h, PEER2, "nc", true), 0); /* twice: once */
	TC_EQ(remote_node_cluster(h, PEER2, "nd", true), 0);
	TC_EQ(shmg_nodes(h, "nc", nodes, 8), 3);
	ck_assert_uint_eq(nodes[0], self);
	ck_assert(nodes[1] != nodes[2] && (nodes[1] == PEER || nodes[1] == PEER2) &&
		  (nodes[2] == PEER || nodes[2] == PEER2));
	TC_EQ(shmg_nodes(h, "nc", nodes, 2), 3); /* the count, whatever the room */
	/* Marks of clusters are not the host connection (shmg_nodes(NULL)). */
	TC_EQ(shmg_nodes(h, NULL, nodes, 8), 0);
	struct shmg_cluster_stats st;
	for (uint32_t s = 1; shmg_cluster_stats(h, s, &st, sizeof(st)) != -ERANGE; s++)
		if (strcmp(st.name, "nc") == 0)
			TC_EQ(st.nodes, 3);
	TC_EQ(remote_node_cluster(h, PEER, "nc", false), 0);
	TC_EQ(shmg_nodes(h, "nc", nodes, 8), 2);
	ck_assert_uint_eq(nodes[1], PEER2);
	/* Cleared with the node's purge, ... */
	TC_EQ(put(h, REMOTE_REGISTER, NULL, "x", PEER2, 1), 0);
	TC_EQ(remote_purge(h, PEER2, SHMG_REASON_NODEDOWN), 1);
	TC_EQ(shmg_nodes(h, "nc", nodes, 8), 1);
	TC_EQ(shmg_nodes(h, "nd", nodes, 8), 1);
	/* ... by remote_nodes_down, ... */
	TC_EQ(remote_node_cluster(h, PEER, "nc", true), 0);
	TC_EQ(remote_node_cluster(h, PEER, "nd", true), 0);
	remote_nodes_down(h);
	TC_EQ(shmg_nodes(h, "nc", nodes, 8), 1);
	TC_EQ(shmg_nodes(h, "nd", nodes, 8), 1);
	/* ... and by this host's disconnect (a new connect starts empty). */
	TC_EQ(remote_node_cluster(h, PEER, "nc", true), 0);
	TC_EQ(shmg_disconnect(h, "nc"), 0);
	TC_EQ(shmg_connect(h, "nc", NULL), 0);
	TC_EQ(shmg_nodes(h, "nc", nodes, 8), 1);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

/* ---- a cluster slot reused between resolving and acting -------------------- */

static shmg_t *reuse_h;
static const char *reuse_cluster;
static void (*reuse_then)(void); /* what is done with the new connection */

/* At the point between resolving the cluster and acting on it: the cluster
 * disconnected (its entries swept) and connected again in the same slot,
 * then reuse_then; once. */
static void reuse_hook(const char *point)
{
	if (strcmp(point, "remote:cluster-resolved") != 0 || !reuse_cluster)
		return;
	const char *name = reuse_cluster;
	reuse_cluster = NULL;
	uint32_t before, after;
	uint64_t seed;
	TC_EQ(cluster_resolve(reuse_h, name, &before, &seed), 0);
	TC_EQ(shmg_disconnect(reuse_h, name), 0);
	TC_EQ(shmg_connect(reuse_h, name, NULL), 0);
	TC_EQ(cluster_resolve(reuse_h, name, &after, &seed), 0);
	ck_assert_uint_eq(cluster_slot_of(after), cluster_slot_of(before));
	ck_assert_uint_ne(after, before);
	if (reuse_then)
		reuse_then();
}

static void arm_reuse(shmg_t *h, const char *cluster, void (*then)(void))
{
	reuse_h = h;
	reuse_cluster = cluster;
	reuse_then = then;
	sg_test_hook = reuse_hook;
}

static void mark_peer(void)
{
	TC_EQ(remote_node_cluster(reuse_h, PEER, "ru", true), 0);
}

static void put_peer_entries(void)
{
	TC_EQ(put(reuse_h, REMOTE_REGISTER, "ru", "r/new", PEER, 2), 0);
	TC_EQ(put(reuse_h, REMOTE_JOIN, "ru", "r/g", PEER, 2), 0);
}

/* An agent's mark or unmark of a peer, or its purge of the peer's entries,
 * aimed at a connection that went away meanwhile: the new connection of
 * the same slot is left as it is. */
START_TEST(test_cluster_reused_before_acting)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	struct shmg_opts o = {.cluster = "ru"};
	uint32_t nodes[8];
	struct tc_ev ev[16];

	TC_EQ(shmg_connect(h, "ru", NULL), 0);
	TC_EQ(shmg_monitor(h, SHMG_KEY("r/"), &o), 0);
	/* A mark of the old connection lands on no connection. */
	arm_reuse(h, "ru", NULL);
	TC_EQ(remote_node_cluster(h, PEER, "ru", true), 0);
	TC_EQ(shmg_nodes(h, "ru", nodes, 8), 1);
	/* An unmark of the old one leaves the new one's mark. */
	arm_reuse(h, "ru", mark_peer);
	TC_EQ(remote_node_cluster(h, PEER, "ru", false), 0);
	TC_EQ(shmg_nodes(h, "ru", nodes, 8), 2);
	ck_assert_uint_eq(nodes[1], PEER);
	/* A purge of the old one's entries: swept with the disconnect; the new
	 * one's, put after, stay. */
	TC_EQ(put(h, REMOTE_REGISTER, "ru", "r/old", PEER, 1), 0);
	TC_EQ(tc_ev_drain(h, ev, 16), 1);
	arm_reuse(h, "ru", put_peer_entries);
	TC_EQ(remote_purge_cluster(h, PEER, "ru", SHMG_REASON_CLUSTER_DISCONNECT), 0);
	sg_test_hook = NULL;
	TC_EQ(shmg_lookup(h, SHMG_KEY("r/old"), NULL, NULL, 0, NULL, &o), -ENOENT);
	TC_EQ(shmg_lookup(h, SHMG_KEY("r/new"), NULL, NULL, 0, NULL, &o), 0);
	TC_EQ(shmg_member_count(h, SHMG_KEY("r/g"), &o), 1);
	/* The old entry went with the disconnect; the new ones came, and no
	 * removal of them was told. */
	TC_EQ(tc_ev_drain(h, ev, 16), 3);
	tc_ev_expect(&ev[0], SHMG_EV_UNREGISTERED, SHMG_REASON_CLUSTER_DISCONNECT,
		     (shmg_id_t){PEER, 1, 1}, "ru", "r/old", "rm", 2);
	ck_assert_int_eq(ev[1].type, SHMG_EV_REGISTERED);
	ck_assert_int_eq(ev[2].type, SHMG_EV_JOINED);
	/* Aimed at the connection that is there, they act as before. */
	TC_EQ(remote_purge_cluster(h, PEER, "ru", SHMG_REASON_CLUSTER_DISCONNECT), 2);
	TC_EQ(tc_ev_drain(h, ev, 16), 2);
	TC_EQ(remote_node_cluster(h, PEER, "ru", false), 0);
	TC_EQ(shmg_nodes(h, "ru", nodes, 8), 1);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

/* ---- conflict eviction ---------------------------------------------------- */

struct evict_shared {
	shmg_id_t loser;
	_Atomic int ready, evicted;
	int rc[16];
	struct tc_ev last;
	int nevents;
};
static struct evict_shared *es;

static bool loser_ready(void *arg)
{
	(void)arg;
	return atomic_load(&es->ready);
}

static bool loser_done(void *arg)
{
	(void)arg;
	return atomic_load(&es->ready) == 2;
}

/* The loser: holds "svc" in cluster "cf", a membership there and one in
 * the default cluster, a monitor; after its eviction, reads its mailbox to
 * the end and tries every kind of call. */
static int loser_child(void *arg)
{
	shmg_t *h;
	struct shmg_opts o = {.cluster = "cf"};
	struct shmg_event ev[16];
	(void)arg;
	if (shmg_open(tc_arena, NULL, &h))
		return 10;
	if (shmg_register(h, SHMG_KEY("svc"), "loser", 5, &o) || shmg_join(h, SHMG_KEY("grp"), "j", 1, &o) ||
	    shmg_join(h, SHMG_KEY("other"), "j", 1, NULL) || shmg_monitor(h, SHMG_KEY("svc"), &o))
		return 11;
	es->loser = shmg_self(h);
	atomic_store(&es->ready, 1);
	int n, rc;
	/* Everything up to the conflict record, which is last. */
	while ((n = shmg_receive(h, ev, 16, 10000)) > 0) {
		for (int i = 0; i < n; i++)
			tc_ev_copy(&es->last, &ev[i]);
		es->nevents += n;
	}
	es->rc[0] = n;
	es->rc[1] = shmg_receive(h, ev, 16, 0);
	es->rc[2] = shmg_register(h, SHMG_KEY("svc2"), NULL, 0, &o);
	es->rc[3] = shmg_join(h, SHMG_KEY("grp"), NULL, 0, &o);
	es->rc[4] = shmg_leave(h, SHMG_KEY("other"), NULL);
	es->rc[5] = shmg_unregister(h, SHMG_KEY("svc"), &o);
	es->rc[6] = shmg_monitor(h, SHMG_KEY("x"), NULL);
	es->rc[7] = shmg_demonitor(h, SHMG_KEY("svc"), &o);
	es->rc[8] = (int)shmg_dispatch(h, SHMG_KEY("grp"), "m", 1, &o);
	es->rc[9] = (int)shmg_dispatch_local(h, SHMG_KEY("grp"), "m", 1, &o);
	/* Reads go on. */
	es->rc[10] = (int)shmg_member_count(h, SHMG_KEY("grp"), &o);
	rc = shmg_close(h);
	es->rc[11] = rc;
	atomic_store(&es->ready, 2);
	return 0;
}

START_TEST(test_conflict_evict)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	shmg_t *mon = tc_open(tc_arena, NULL);
	struct shmg_opts o = {.cluster = "cf"};
	struct tc_ev ev[16];
	int32_t pid = 0;

	es = tc_shared_alloc(sizeof(*es));
	TC_EQ(shmg_connect(h, "cf", NULL), 0);
	TC_EQ(shmg_monitor(mon, SHMG_KEY("svc"), &o), 0);
	TC_EQ(shmg_monitor(mon, SHMG_KEY("grp"), &o), 0);
	TC_EQ(shmg_monitor(mon, SHMG_KEY("other"), NULL), 0);
	pid_t child = tc_fork(loser_child, NULL);
	ck_assert(tc_wait_until(loser_ready, NULL, 10000));
	TC_EQ(tc_ev_drain(mon, ev, 16), 3);

	struct remote_change w = change(REMOTE_REGISTER, "cf", "svc", "winner-meta", PEER, 7);
	/* Bad arguments, and a loser that does not hold the key: nothing done. */
	TC_EQ(remote_conflict_evict(h, "cf", SHMG_KEY("svc"), es->loser, NULL, &pid), -EINVAL);
	shmg_id_t remote_id = {PEER, 1, 1};
	TC_EQ(remote_conflict_evict(h, "cf", SHMG_KEY("svc"), remote_id, &w, &pid), -EINVAL);
	TC_EQ(remote_conflict_evict(h, "cf", SHMG_KEY("grp"), es->loser, &w, &pid), -ENOENT);
	TC_EQ(remote_conflict_evict(h, NULL, SHMG_KEY("svc"), es->loser, &w, &pid), -ENOENT);
	TC_EQ(remote_conflict_evict(h, "gone", SHMG_KEY("svc"), es->loser, &w, &pid), -ENOENT);
	TC_EQ(remote_conflict_evict(h, "cf", SHMG_KEY("svc"), shmg_self(h), &w, &pid), -ENOENT);
	TC_EQ(shmg_lookup(h, SHMG_KEY("svc"), NULL, NULL, 0, NULL, &o), 0);
	TC_EQ(tc_ev_drain(mon, ev, 16), 0);

	TC_EQ(remote_conflict_evict(h, "cf", SHMG_KEY("svc"), es->loser, &w, &pid), 0);
	TC_EQ(pid, child);
	/* Its monitors heard one batch, reason conflict, as for a death. */
	TC_EQ(tc_ev_drain(mon, ev, 16), 3);
	tc_ev_expect_one_batch(ev, 3);
	tc_ev_expect(&ev[0], SHMG_EV_UNREGISTERED, SHMG_REASON_CONFLICT, es->loser, "cf", "svc",
		     "loser", 5);
	/* The two leaves in shard order. */
	int grp = strcmp(ev[1].key, "grp") == 0 ? 1 : 2;
	tc_ev_expect(&ev[grp], SHMG_EV_LEFT, SHMG_REASON_CONFLICT, es->loser, "cf", "grp", "j", 1);
	tc_ev_expect(&ev[3 - grp], SHMG_EV_LEFT, SHMG_REASON_CONFLICT, es->loser, NULL, "other", "j",
		     1);
	/* The key is free for the winner, which the caller installs. */
	TC_EQ(shmg_lookup(h, SHMG_KEY("svc"), NULL, NULL, 0, NULL, &o), -ENOENT);
	TC_EQ(remote_put(h, INC, &w), 0);
	TC_EQ(tc_ev_drain(mon, ev, 16), 1);
	tc_ev_expect(&ev[0], SHMG_EV_REGISTERED, SHMG_REASON_NONE, w.id, "cf", "svc", "winner-meta",
		     11);
	shmg_id_t got;
	TC_EQ(shmg_lookup(h, SHMG_KEY("svc"), &got, NULL, 0, NULL, &o), 0);
	ck_assert(shmg_id_equal(got, w.id));
	/* Once is enough. */
	TC_EQ(remote_conflict_evict(h, "cf", SHMG_KEY("svc"), es->loser, &w, &pid), -ENOENT);
	/* A terminated endpoint whose owner lives on is a consistent state. */
	TC_ASSERT_CLEAN(h);

	ck_assert(tc_wait_until(loser_done, NULL, 20000));
	TC_EQ(tc_wait_exit(child, 10000), 0);
	/* The loser, hidden like a dead endpoint, is no target of its own
	 * batch: it reads only the final record, the winner's id and meta. */
	TC_EQ(es->nevents, 1);
	tc_ev_expect(&es->last, SHMG_EV_CONFLICT, SHMG_REASON_CONFLICT, w.id, "cf", "svc",
		     "winner-meta", 11);
	ck_assert_int_eq(es->last.pid, w.pid);
	TC_EQ(es->rc[0], -ECONNABORTED);
	TC_EQ(es->rc[1], -ECONNABORTED);
	for (int i = 2; i <= 9; i++)
		ck_assert_msg(es->rc[i] == -ECONNABORTED, "call %d = %d", i, es->rc[i]);
	TC_EQ(es->rc[10], 0);
	TC_EQ(es->rc[11], 0);
	TC_EQ(tc_ev_drain(mon, ev, 16), 0); /* its close had nothing left to say */
	TC_ASSERT_CLEAN(h);
	shmg_close(mon);
	shmg_close(h);
}
END_TEST

struct evictor_arg {
	shmg_id_t loser;
	const char *point;
};

static int evictor_child(void *arg)
{
	const struct evictor_arg *a = arg;
	shmg_t *h;
	if (shmg_open(tc_arena, NULL, &h))
		return 10;
	struct remote_change w = change(REMOTE_REGISTER, "ck", "svc", "w", PEER, 7);
	hook_point = a->point;
	hook_skip = 0;
	sg_test_hook = hook;
	remote_conflict_evict(h, "ck", SHMG_KEY("svc"), a->loser, &w, NULL);
	return 11; /* not reached */
}

/* The loser holds svc in cluster ck and is a member of g; mon monitors
 * both. */
static void loser_setup(shmg_t *loser, shmg_t *mon, const struct shmg_opts *ck)
{
	TC_EQ(shmg_connect(loser, "ck", NULL), 0);
	TC_EQ(shmg_monitor(mon, SHMG_KEY("svc"), ck), 0);
	TC_EQ(shmg_monitor(mon, SHMG_KEY("g"), NULL), 0);
	TC_EQ(shmg_register(loser, SHMG_KEY("svc"), "l", 1, ck), 0);
	TC_EQ(shmg_join(loser, SHMG_KEY("g"), "j", 1, NULL), 0);
}

/* The agent killed half way through an eviction: the loser is refused from
 * the first step on, and whoever finishes the removal (here the loser's own
 * close) reports reason conflict. */
static void evict_crash_case(const char *point)
{
	shmg_t *loser = tc_open(tc_arena, NULL);
	shmg_t *mon = tc_open(tc_arena, NULL);
	struct shmg_opts o = {.cluster = "ck"};
	struct tc_ev ev[16];

	loser_setup(loser, mon, &o);
	TC_EQ(tc_ev_drain(mon, ev, 16), 2);
	struct evictor_arg a = {shmg_self(loser), point};
	TC_EQ(tc_wait_exit(tc_fork(evictor_child, &a), 10000), TC_KILLED(SIGKILL));
	TC_EQ(shmg_register(loser, SHMG_KEY("svc2"), NULL, 0, &o), -ECONNABORTED);
	TC_EQ(shmg_join(loser, SHMG_KEY("g2"), NULL, 0, NULL), -ECONNABORTED);
	TC_EQ(shmg_close(loser), 0);
	TC_EQ(tc_ev_drain(mon, ev, 16), 2);
	tc_ev_expect_one_batch(ev, 2);
	ck_assert_int_eq(ev[0].reason, SHMG_REASON_CONFLICT);
	ck_assert_int_eq(ev[1].reason, SHMG_REASON_CONFLICT);
	TC_EQ(shmg_registry_count(mon, &o), 0);
	TC_EQ(shmg_member_count(mon, SHMG_KEY("g"), NULL), 0);
	TC_EQ(shmg_reap(mon), 1); /* the evictor */
	TC_ASSERT_CLEAN(mon);
	/* The next owner of the loser's slot starts with a clean record. */
	shmg_t *next = tc_open(tc_arena, NULL);
	TC_EQ(shmg_self(next).slot, a.loser.slot);
	TC_EQ(shmg_register(next, SHMG_KEY("svc3"), NULL, 0, NULL), 0);
	shmg_close(next);
	shmg_close(mon);
}

START_TEST(test_evict_killed_after_terminated) { evict_crash_case("evict:terminated"); }
END_TEST
START_TEST(test_evict_killed_after_hidden) { evict_crash_case("terminate:hidden"); }
END_TEST

/* The agent killed half way through an eviction, the loser alive and not
 * closing: a reap pass finishes the removal (reason conflict, one batch,
 * once), the loser's calls stay refused, its conflict record (sent before
 * `terminated`) is in its mailbox once, and nothing else changes. */
static void evict_reap_case(const char *point)
{
	shmg_t *loser = tc_open(tc_arena, NULL);
	shmg_t *other = tc_open(tc_arena, NULL);
	shmg_t *mon = tc_open(tc_arena, NULL);
	struct shmg_opts o = {.cluster = "ck"};
	struct tc_ev ev[16];

	loser_setup(loser, mon, &o);
	TC_EQ(shmg_monitor(mon, SHMG_KEY("svc-b"), &o), 0);
	TC_EQ(shmg_monitor(loser, SHMG_KEY("g"), NULL), 0);
	TC_EQ(shmg_register(other, SHMG_KEY("svc-b"), "b", 1, &o), 0);
	TC_EQ(shmg_join(other, SHMG_KEY("g"), "k", 1, NULL), 0);
	TC_EQ(tc_ev_drain(mon, ev, 16), 4);
	TC_EQ(tc_ev_drain(loser, ev, 16), 1); /* other's join of g */
	struct evictor_arg a = {shmg_self(loser), point};
	TC_EQ(tc_wait_exit(tc_fork(evictor_child, &a), 10000), TC_KILLED(SIGKILL));
	TC_EQ(shmg_register(loser, SHMG_KEY("svc2"), NULL, 0, &o), -ECONNABORTED);

	/* One pass: the evictor reaped (dead), the loser's removal finished
	 * (alive: not counted); a second pass has nothing left to do. */
	TC_EQ(shmg_reap(mon), 1);
	TC_EQ(shmg_reap(mon), 0);
	TC_EQ(tc_ev_drain(mon, ev, 16), 2);
	tc_ev_expect_one_batch(ev, 2);
	tc_ev_expect(&ev[0], SHMG_EV_UNREGISTERED, SHMG_REASON_CONFLICT, a.loser, "ck", "svc", "l",
		     1);
	tc_ev_expect(&ev[1], SHMG_EV_LEFT, SHMG_REASON_CONFLICT, a.loser, NULL, "g", "j", 1);
	TC_EQ(shmg_lookup(mon, SHMG_KEY("svc"), NULL, NULL, 0, NULL, &o), -ENOENT);
	TC_EQ(shmg_member_count(mon, SHMG_KEY("g"), NULL), 1);
	/* Nothing of it left in any shard, its monitor included. */
	for (uint32_t s = 0; s < mon->geo.shards; s++)
		TC_EQ(shard_ep_entries(mon, s)[a.loser.slot], 0);
	/* Its calls stay refused; its mailbox holds the one final record. */
	TC_EQ(shmg_join(loser, SHMG_KEY("g2"), NULL, 0, NULL), -ECONNABORTED);
	TC_EQ(shmg_monitor(loser, SHMG_KEY("x"), NULL), -ECONNABORTED);
	struct shmg_event raw[4];
	TC_EQ(shmg_receive(loser, raw, 4, 0), 1);
	tc_ev_copy(&ev[0], &raw[0]);
	tc_ev_expect(&ev[0], SHMG_EV_CONFLICT, SHMG_REASON_CONFLICT, (shmg_id_t){PEER, 7, 1}, "ck",
		     "svc", "w", 1);
	TC_EQ(shmg_receive(loser, raw, 4, 0), -ECONNABORTED);

	/* The other endpoint: untouched, and its writes still tell mon. */
	shmg_id_t id;
	TC_EQ(shmg_lookup(mon, SHMG_KEY("svc-b"), &id, NULL, 0, NULL, &o), 0);
	ck_assert(shmg_id_equal(id, shmg_self(other)));
	TC_EQ(shmg_unregister(other, SHMG_KEY("svc-b"), &o), 0);
	TC_EQ(tc_ev_drain(mon, ev, 16), 1);
	tc_ev_expect(&ev[0], SHMG_EV_UNREGISTERED, SHMG_REASON_NORMAL, shmg_self(other), "ck",
		     "svc-b", "b", 1);
	TC_EQ(tc_ev_drain(other, ev, 16), 0);
	TC_ASSERT_CLEAN(mon);

	/* Its close has nothing left to say. */
	TC_EQ(shmg_close(loser), 0);
	TC_EQ(tc_ev_drain(mon, ev, 16), 0);
	TC_EQ(shmg_reap(mon), 0);
	TC_ASSERT_CLEAN(mon);
	shmg_close(other);
	shmg_close(mon);
}

/* Every crash point of remote_conflict_evict after the holding is confirmed:
 * before anything is hidden, hidden, the batch delivered to its one target,
 * the batch marked sent (the last two with every shard lock held). */
static const char *evict_points[] = {"evict:terminated", "terminate:hidden", "batch:delivered",
				     "reap:events-sent"};

START_TEST(test_evict_killed_then_reaped) { evict_reap_case(evict_points[_i]); }
END_TEST

/* ---- the optional signal ------------------------------------------------- */

static int sleeper_child(void *arg)
{
	shmg_t *h;
	(void)arg;
	signal(SIGTERM, SIG_DFL); /* not check's handler, which ends the test */
	if (shmg_open(tc_arena, NULL, &h))
		return 10;
	es->loser = shmg_self(h);
	atomic_store(&es->ready, 1);
	for (;;)
		pause();
}

START_TEST(test_signal_endpoint)
{
	shmg_t *h = tc_open(tc_arena, NULL);

	es = tc_shared_alloc(sizeof(*es));
	pid_t child = tc_fork(sleeper_child, NULL);
	ck_assert(tc_wait_until(loser_ready, NULL, 10000));
	shmg_id_t id = es->loser;
	TC_EQ(remote_signal_endpoint(h, id, 0), -EINVAL);
	TC_EQ(remote_signal_endpoint(h, (shmg_id_t){PEER, id.slot, id.gen}, SIGTERM), -EINVAL);
	TC_EQ(remote_signal_endpoint(h, (shmg_id_t){id.node, id.slot, id.gen + 1}, SIGTERM), -ESRCH);
	/* The recorded start time is not the process's (as for a pid reused by
	 * another process): refused, and nothing is sent. */
	struct endpoint_slot *ep = endpoint_at(h, id.slot);
	uint64_t start = ep->start_time;
	ep->start_time = start + 1;
	TC_EQ(remote_signal_endpoint(h, id, SIGTERM), -ESRCH);
	ep->start_time = start;
	TC_EQ(tc_wait_exit(child, 50), -ETIMEDOUT);
	/* The endpoint's own process. */
	TC_EQ(remote_signal_endpoint(h, id, SIGTERM), 0);
	TC_EQ(tc_wait_exit(child, 10000), TC_KILLED(SIGTERM));
	TC_EQ(shmg_reap(h), 1);
	TC_EQ(remote_signal_endpoint(h, id, SIGTERM), -ESRCH);
	shmg_close(h);
}
END_TEST

static Suite *clusters_suite(void)
{
	Suite *s = suite_create("clusters");
	TCase *tc = tc_case(s, "clusters", 60);

	tcase_add_test(tc, test_markers_in_every_shard);
	tcase_add_test(tc, test_connect_killed_after_one_marker);
	tcase_add_test(tc, test_connect_killed_after_publishing);
	tcase_add_test(tc, test_disconnect_killed_after_tombstone);
	tcase_add_test(tc, test_disconnect_killed_between_markers);
	tcase_add_test(tc, test_disconnect_removes_every_node);
	tcase_add_test(tc, test_purge_cluster);
	tcase_add_test(tc, test_node_cluster_marks);
	tcase_add_test(tc, test_cluster_reused_before_acting);
	tcase_add_test(tc, test_conflict_evict);
	tcase_add_test(tc, test_evict_killed_after_terminated);
	tcase_add_test(tc, test_evict_killed_after_hidden);
	tcase_add_loop_test(tc, test_evict_killed_then_reaped, 0,
			    (int)(sizeof(evict_points) / sizeof(evict_points[0])));
	tcase_add_test(tc, test_signal_endpoint);
	return s;
}

int main(void)
{
	return tc_run(clusters_suite());
}
