/* SPDX-License-Identifier: MIT */
/*
 * Every field of every shared struct, corrupted under a reader that has the
 * arena open.  A process that can write the arena must not be able to crash,
 * hang or corrupt the heap of another that only reads it: the reader gets
 * errors, empty results or wrong answers, never a signal, a sanitizer report
 * or a call that does not return.
 *
 * One check test per field (the table below).  For each hostile value of the
 * field's type (0, all ones, a reference or offset just past the arena, one
 * naming its last bytes, the old value + 1, ...):
 *   1. the test process builds a small arena: registrations in two
 *      clusters, groups of several members, monitors, retired blocks in
 *      limbo, change-log records, events waiting in mailboxes;
 *   2. a reader process opens it, monitors, puts events in its own mailbox
 *      and says it is ready; the test process then fills the arena, so that
 *      entries sit in its last bytes and a length read past one runs off
 *      the mapping;
 *   3. the test process writes the value into that field of every
 *      instance of the struct (every shard, bucket, entry, record ...);
 *   4. the reader runs every read call, receive with timeout 0, dispatch,
 *      info, check and close, touching every byte it is handed and checking
 *      that it lies in the arena or the handle's buffers, and must exit 0
 *      within READER_TIMEOUT_MS.
 * A failure names the field, the value and the call the reader was in.
 * Padding is not a field and is left alone.
 *
 * The "flips" cases check the other half of the rule, that what is checked
 * is what is used: a corrupter toggles a length or link between its true
 * value and a hostile one while the reader loops over the read calls, so a
 * reader that checks one load and uses another gets caught.
 *
 * The robust mutexes are fields too.  A mutex word naming a thread that
 * never unlocks (V_HELD) is a wait that only the bounded lock waits end: the
 * reader shortens them so that every call still fits its time.
 *
 * The "fresh" cases corrupt every field with the same values before a
 * process opens the arena: the open may fail with an error, and a process
 * that gets a handle runs the reader's calls, check and close on it.
 *
 * The "repair" cases flip the fields repair reads while another process
 * repairs: a writer dies holding every shard lock (one of them in a leave,
 * its membership unlinked and its in-flight record set), then a process
 * opens, takes every lock (so repairs), repairs every shard a few rounds
 * more as the next locker after a death would, and reads, checks, closes.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "remote.h"
#include "tc.h"

#define READER_TIMEOUT_MS 10000
#define FLIP_LOOPS 300 /* read_all rounds while a field flips */
#define NREG 16 /* k/0 .. k/15 */
#define NGROUPS 4

/* ---- where the instances of each struct are -------------------------- */

enum where {
	W_HEADER,
	W_EP_READER,  /* the reader's endpoint slot */
	W_EP_OWNER,   /* the slot of the endpoint owning most entries */
	W_LIVE_GEN,   /* u32 live_gen[max_endpoints] */
	W_CL_DEFAULT, /* cluster slot 0 */
	W_CL_NAMED,   /* the connected named cluster's slot */
	W_SHARDS,
	W_COUNTS,     /* cluster_counts[max_clusters] of every shard */
	W_EP_ENTRIES, /* u32 endpoint_entries[max_endpoints] of every shard */
	W_LIMBO,      /* queued limbo items */
	W_EP_KINDS,   /* ep_kind_counts[max_endpoints] of every shard */
	W_NODES,      /* the header's node_state[MAX_NODES] */
	W_NODE_CURSORS, /* u64 node_cursor[MAX_NODES] of every shard */
	W_TABLES,     /* every shard's current table header */
	W_BUCKETS,
	W_ENTRIES,    /* every indexed entry */
	W_LINKS,      /* the links of every indexed list entry */
	W_MB_READER,  /* the reader's mailbox header */
	W_MB_MONITOR, /* the header of another monitor's mailbox (a producer's view) */
	W_MB_RECORDS, /* the records waiting in the reader's mailbox */
	W_PAGEDESC,
	W_OPLOG,
	W_OPLOG_RECORDS,
};

enum { F_SCALAR, F_ARRAY, F_BYTES, F_MUTEX };

struct field {
	const char *name;
	enum where where;
	uint32_t off, size, elem;
	int kind;
	uint64_t extra; /* a field-specific hostile value, 0 = none */
};

#define MSIZE(type, m) sizeof(((struct type *)0)->m)
#define FIELD(type, m, name, w, elem, kind, x) \
	{ name, w, offsetof(struct type, m), MSIZE(type, m), elem, kind, x }
#define F(type, m, w) FIELD(type, m, #type "." #m, w, MSIZE(type, m), F_SCALAR, 0)
#define FX(type, m, w, x) FIELD(type, m, #type "." #m, w, MSIZE(type, m), F_SCALAR, x)
#define FA(type, m, w) FIELD(type, m, #type "." #m "[]", w, MSIZE(type, m[0]), F_ARRAY, 0)
#define FB(type, m, w) FIELD(type, m, #type "." #m, w, 1, F_BYTES, 0)
#define FM(type, m, w) FIELD(type, m, #type "." #m, w, 1, F_MUTEX, 0)
#define FU32(name, w) { name, w, 0, 4, 4, F_SCALAR, 0 }
#define FU64(name, w) { name, w, 0, 8, 8, F_SCALAR, 0 }

#define ENDPOINT_FIELDS(w)                                                                   \
	F(endpoint_slot, state, w), F(endpoint_slot, gen, w), F(endpoint_slot, pid, w),       \
		F(endpoint_slot, flags, w), F(endpoint_slot, start_time, w),                  \
		F(endpoint_slot, opened_ns, w), F(endpoint_slot, batch_done, w),              \
		F(endpoint_slot, terminated, w), F(endpoint_slot, read_epoch, w)
#define CLUSTER_FIELDS(w)                                                                    \
	F(cluster_slot, state, w), F(cluster_slot, gen, w), F(cluster_slot, name_len, w),     \
		F(cluster_slot, name_hash, w), F(cluster_slot, ttl_ms, w),                    \
		F(cluster_slot, lease_expires_ns, w), F(cluster_slot, connected_ns, w),       \
		FB(cluster_slot, name, w), F(cluster_slot, node_marks, w),                    \
		F(cluster_slot, marks_pending, w), F(cluster_slot, lease_kept, w)
#define MAILBOX_FIELDS(w)                                                                    \
	FM(mailbox_header, lock, w), F(mailbox_header, gen, w), F(mailbox_header, dropped, w), \
		F(mailbox_header, batch_seq, w), F(mailbox_header, signalled, w),             \
		F(mailbox_header, tail, w), F(mailbox_header, head, w),                       \
		F(mailbox_header, sleeping, w), F(mailbox_header, wake_nonce, w),             \
		F(mailbox_header, fifo_nonce, w), F(mailbox_header, fifo_ino, w),             \
		F(mailbox_header, fifo_uid, w), F(mailbox_header, fifo_gen, w),               \
		F(mailbox_header, delivered, w), F(mailbox_header, dropped_total, w)

static const struct field fields[] = {
	F(arena_header, magic, W_HEADER),
	F(arena_header, layout_version, W_HEADER),
	F(arena_header, layout_signature, W_HEADER),
	F(arena_header, arena_size, W_HEADER),
	F(arena_header, incarnation, W_HEADER),
	F(arena_header, created_ns, W_HEADER),
	F(arena_header, shards, W_HEADER),
	F(arena_header, shard_bits, W_HEADER),
	F(arena_header, max_endpoints, W_HEADER),
	F(arena_header, key_max, W_HEADER),
	F(arena_header, meta_max, W_HEADER),
	F(arena_header, max_clusters, W_HEADER),
	F(arena_header, node_id, W_HEADER),
	F(arena_header, oplog_bytes, W_HEADER),
	F(arena_header, mode, W_HEADER),
	F(arena_header, hash_id, W_HEADER),
	F(arena_header, off_endpoints, W_HEADER),
	F(arena_header, off_live_gen, W_HEADER),
	F(arena_header, off_clusters, W_HEADER),
	F(arena_header, off_shards, W_HEADER),
	F(arena_header, off_oplogs, W_HEADER),
	F(arena_header, off_pagedesc, W_HEADER),
	F(arena_header, off_pages, W_HEADER),
	F(arena_header, shard_stride, W_HEADER),
	F(arena_header, npages, W_HEADER),
	F(arena_header, off_mailboxes, W_HEADER),
	F(arena_header, mailbox_bytes, W_HEADER),
	F(arena_header, arena_max, W_HEADER),
	F(arena_header, epoch, W_HEADER),
	FM(arena_header, pool_lock, W_HEADER),
	F(arena_header, pool_hint, W_HEADER),
	F(arena_header, pages_used, W_HEADER),
	F(arena_header, pages_avail, W_HEADER),
	F(arena_header, grows, W_HEADER),
	FM(arena_header, endpoint_lock, W_HEADER),
	F(arena_header, endpoint_hwm, W_HEADER),
	F(arena_header, endpoints_live, W_HEADER),
	FM(arena_header, cluster_lock, W_HEADER),
	F(arena_header, clusters_connected, W_HEADER),
	F(arena_header, disconnects, W_HEADER),
	F(arena_header, log_level, W_HEADER),
	F(arena_header, destroyed, W_HEADER),
	F(arena_header, shard_repairs, W_HEADER),
	FM(arena_header, reaper_lock, W_HEADER),
	F(arena_header, reaper_pid, W_HEADER),
	F(arena_header, reaper_slot, W_HEADER),
	F(arena_header, endpoint_epoch, W_HEADER),
	F(arena_header, reaper_wake, W_HEADER),
	F(arena_header, agent_session, W_HEADER),
	F(arena_header, hidden, W_HEADER),
	F(arena_header, agent_mailbox, W_HEADER),
	F(arena_header, agent_sleeping, W_HEADER),
	F(arena_header, agent_wake, W_HEADER),
	F(node_state, node, W_NODES),
	F(node_state, up, W_NODES),
	F(node_state, inc, W_NODES),
	FU64("node_cursor[]", W_NODE_CURSORS),

	ENDPOINT_FIELDS(W_EP_READER),
	ENDPOINT_FIELDS(W_EP_OWNER),
	FU32("live_gen[]", W_LIVE_GEN),
	CLUSTER_FIELDS(W_CL_DEFAULT),
	CLUSTER_FIELDS(W_CL_NAMED),

	FM(shard_header, lock, W_SHARDS),
	F(shard_header, owner_slot, W_SHARDS),
	F(shard_header, owner_gen, W_SHARDS),
	F(shard_header, table_off, W_SHARDS),
	F(shard_header, monitors, W_SHARDS),
	F(shard_header, nentries, W_SHARDS),
	F(shard_header, limbo_head, W_SHARDS),
	F(shard_header, limbo_tail, W_SHARDS),
	F(shard_header, repairs, W_SHARDS),
	FA(shard_header, partial, W_SHARDS),
	F(shard_header, inflight_op, W_SHARDS),
	F(shard_header, inflight_ref, W_SHARDS),
	F(shard_header, inflight_old, W_SHARDS),
	F(shard_header, inflight_reason, W_SHARDS),
	F(shard_header, inflight_done, W_SHARDS),
	F(shard_header, repair_pending, W_SHARDS),
	F(shard_header, swept, W_SHARDS),
	F(shard_header, writes, W_SHARDS),
	F(shard_header, lock_waits, W_SHARDS),
	FA(shard_header, parked, W_SHARDS),
	F(shard_header, parked_next, W_SHARDS),
	F(cluster_counts, registered, W_COUNTS),
	F(cluster_counts, registered_local, W_COUNTS),
	F(cluster_counts, members, W_COUNTS),
	F(cluster_counts, members_local, W_COUNTS),
	FU32("endpoint_entries[]", W_EP_ENTRIES),
	F(limbo_item, stamp, W_LIMBO),
	F(limbo_item, ref, W_LIMBO),
	F(limbo_item, kind, W_LIMBO),
	F(ep_kind_counts, registered, W_EP_KINDS),
	F(ep_kind_counts, monitors, W_EP_KINDS),

	F(table_header, nbuckets_log2, W_TABLES),
	F(table_header, npages, W_TABLES),
	F(table_header, shard, W_TABLES),
	F(table_header, magic, W_TABLES),
	FA(bucket, tag, W_BUCKETS),
	FA(bucket, ent, W_BUCKETS),
	F(bucket, probe, W_BUCKETS),

	F(entry, cluster, W_ENTRIES),
	F(entry, node, W_ENTRIES),
	F(entry, ep_gen, W_ENTRIES),
	F(entry, ep_slot, W_ENTRIES),
	F(entry, key_len, W_ENTRIES),
	FX(entry, kind, W_ENTRIES, K_MONITOR),
	FIELD(entry, kind, "entry.kind=prefix", W_ENTRIES, MSIZE(entry, kind), F_SCALAR, K_PREFIX),
	FX(entry, flags, W_ENTRIES, EF_SOLO),
	F(entry, meta_len, W_ENTRIES),
	F(entry, pid, W_ENTRIES),
	F(entry, time_ns, W_ENTRIES),
	F(entry_links, next, W_LINKS),
	F(entry_links, prev, W_LINKS),
	F(entry_links, aux, W_LINKS),
	F(entry_links, sib, W_LINKS),
	F(entry_links, seed, W_LINKS),
	F(entry_links, tree.parent, W_LINKS),
	F(entry_links, tree.local, W_LINKS),

	MAILBOX_FIELDS(W_MB_READER),
	MAILBOX_FIELDS(W_MB_MONITOR),
	FX(mailbox_record, size, W_MB_RECORDS, 8),
	F(mailbox_record, type, W_MB_RECORDS),
	F(mailbox_record, reason, W_MB_RECORDS),
	F(mailbox_record, cluster_len, W_MB_RECORDS),
	F(mailbox_record, flags, W_MB_RECORDS),
	F(mailbox_record, batch, W_MB_RECORDS),
	F(mailbox_record, key_len, W_MB_RECORDS),
	F(mailbox_record, meta_len, W_MB_RECORDS),
	F(mailbox_record, prev_len, W_MB_RECORDS),
	F(mailbox_record, node, W_MB_RECORDS),
	F(mailbox_record, ep_slot, W_MB_RECORDS),
	F(mailbox_record, ep_gen, W_MB_RECORDS),
	F(mailbox_record, pid, W_MB_RECORDS),
	F(mailbox_record, time_ns, W_MB_RECORDS),

	FX(page_desc, word, W_PAGEDESC, PG_WORD(1, PG_SLAB, 0xff)),
	F(page_desc, used, W_PAGEDESC),
	F(page_desc, free_head, W_PAGEDESC),
	F(page_desc, bump, W_PAGEDESC),
	F(page_desc, next, W_PAGEDESC),
	F(page_desc, prev, W_PAGEDESC),
	F(oplog_header, head, W_OPLOG),
	F(oplog_header, seq, W_OPLOG),
	F(oplog_header, resets, W_OPLOG),
	F(oplog_header, ring_bytes, W_OPLOG),
	F(oplog_record, seq, W_OPLOG_RECORDS),
	F(oplog_record, size, W_OPLOG_RECORDS),
	F(oplog_record, op, W_OPLOG_RECORDS),
	F(oplog_record, reason, W_OPLOG_RECORDS),
	F(oplog_record, cluster_len, W_OPLOG_RECORDS),
	F(oplog_record, time_ns, W_OPLOG_RECORDS),
	F(oplog_record, node, W_OPLOG_RECORDS),
	F(oplog_record, ep_slot, W_OPLOG_RECORDS),
	F(oplog_record, ep_gen, W_OPLOG_RECORDS),
	F(oplog_record, pid, W_OPLOG_RECORDS),
	F(oplog_record, key_len, W_OPLOG_RECORDS),
	F(oplog_record, meta_len, W_OPLOG_RECORDS),
};
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

/* ---- hostile values --------------------------------------------------- */

enum value {
	V_ZERO,
	V_ONES,
	V_PLUS1, /* the old value + 1 */
	V_HIGH,  /* top bit set */
	V_PAST,  /* a ref (u32) or offset (u64) just past the arena */
	V_LAST,  /* a ref or offset naming the arena's last bytes */
	V_LASTB, /* u32: the byte offset of the last 8 bytes */
	V_EXTRA, /* the field's own */
	V_HELD,  /* mutex: locked by a thread that does not exist */
	NVALUES
};
static const char *const value_names[NVALUES] = {
	"0", "all ones", "old + 1", "top bit", "just past the arena", "the last bytes",
	"offset of the last bytes", "field-specific", "held by a thread that does not exist",
};

static bool value_applies(const struct field *f, enum value v)
{
	if (f->kind == F_MUTEX)
		return v == V_ZERO || v == V_ONES || v == V_HELD;
	if (f->kind == F_BYTES)
		return v == V_ZERO || v == V_ONES;
	switch (v) {
	case V_PAST:
	case V_LAST:
		return f->elem >= 4;
	case V_LASTB:
		return f->elem == 4;
	case V_EXTRA:
		return f->extra != 0;
	case V_HELD:
		return false;
	default:
		return true;
	}
}

static uint64_t value_of(const struct field *f, enum value v, uint64_t old, uint64_t size)
{
	uint64_t ones = f->elem == 8 ? UINT64_MAX : (1ull << (8 * f->elem)) - 1;
	switch (v) {
	case V_ZERO:
		return 0;
	case V_ONES:
		return ones;
	case V_PLUS1:
		return (old + 1) & ones;
	case V_HIGH:
		return (ones >> 1) + 1;
	case V_PAST:
		return f->elem == 8 ? size : size >> REF_SHIFT;
	case V_LAST:
		return f->elem == 8 ? size - 8 : (size - 16) >> REF_SHIFT;
	case V_LASTB:
		return (size - 8) & ones;
	case V_EXTRA:
		return f->extra;
	default:
		return 0;
	}
}

/* ---- the arena -------------------------------------------------------- */

static struct shmg_config small_config(void)
{
	struct shmg_config c;

	memset(&c, 0, sizeof(c));
	c.shards = 4;
	c.key_max = 64;
	c.meta_max = 2048;
	c.max_clusters = 8;
	c.mailbox_bytes = 16384;
	c.oplog_bytes = 65536;
	c.arena_size = 4u << 20;
	/* No growth: the cases need an arena that fills up before every shard
	 * has reclaimed its limbo ring.  Readers of a grown arena, with its
	 * page count corrupted, are tests/unit/test_grow.c's. */
	c.arena_max = c.arena_size;
	/* Mailboxes take most of the arena, so the entry pages are its last
	 * MiB: filled up, a length read past an entry runs off the mapping.
	 * 120 endpoints leave enough pages: room for populate's entries, which
	 * spread over several of the 16-byte size classes in each shard, and
	 * few enough that fill() still finds retired blocks in limbo. */
	c.max_endpoints = 120;
	return c;
}

static const struct shmg_opts named = { .cluster = "c1" };

/* Three endpoints of the test process fill the arena and stay open (the
 * arena is destroyed, never closed, once it is corrupt). */
static void populate(shmg_t *h[3])
{
	struct shmg_config cfg = small_config();
	char key[32], meta[300];

	for (int i = 0; i < 3; i++)
		h[i] = tc_open(tc_arena, &cfg);
	/* A monitor of everything and of a prefix, so events go to mailboxes. */
	TC_EQ(shmg_monitor(h[1], NULL, 0, NULL), 0);
	TC_EQ(shmg_monitor(h[1], SHMG_KEY("g/"), NULL), 0);
	TC_EQ(shmg_connect(h[0], "c1", &(struct shmg_connect_opts){.ttl_ms = 600000}), 0);
	for (int i = 0; i < NREG; i++) {
		int len = i == 3 ? 256 : 1 + i * 7;
		memset(meta, 'a' + i, sizeof(meta));
		snprintf(key, sizeof(key), "k/%d", i);
		TC_EQ(shmg_register(h[0], SHMG_KEY(key), meta, (size_t)len, NULL), 0);
	}
	TC_EQ(shmg_register(h[0], SHMG_KEY("c/0"), "named", 5, &named), 0);
	TC_EQ(shmg_join(h[0], SHMG_KEY("c/g"), "m", 1, &named), 0);
	for (int g = 0; g < NGROUPS; g++) {
		snprintf(key, sizeof(key), "g/%d", g);
		for (int i = 0; i <= g && i < 3; i++)
			TC_EQ(shmg_join(h[i], SHMG_KEY(key), "member", 6, NULL), 0);
	}
	/* A group two prefix levels down: its shard's tree has a nested node. */
	TC_EQ(shmg_join(h[1], SHMG_KEY("g/n/0"), "deep", 4, NULL), 0);
	/* Retired blocks in limbo: replaced metadata, an unregistration, a leave. */
	for (int i = 0; i < 4; i++) {
		snprintf(key, sizeof(key), "k/%d", i);
		TC_EQ(shmg_register(h[0], SHMG_KEY(key), "new", 3, NULL), 0);
	}
	TC_EQ(shmg_unregister(h[0], SHMG_KEY("k/15"), NULL), 0);
	TC_EQ(shmg_leave(h[2], SHMG_KEY("g/3"), NULL), 0);
	TC_EQ(shmg_register(h[2], SHMG_KEY("k/20"), "two", 3, NULL), 0);
	/* A member on another node, and an agent's outbound mailbox: the
	 * reader's dispatch to g/0 hands a message over (agent_mailbox). */
	struct remote_change far = { .op = REMOTE_JOIN,
				     .key = "g/0",
				     .key_len = 3,
				     .meta = "far",
				     .meta_len = 3,
				     .id = { .node = 7, .slot = 1, .gen = 1 },
				     .pid = 1 };
	TC_EQ(remote_put(h[0], 11, &far), 0);
	TC_EQ(remote_outbound_claim(h[2]), 0);
}

/* Registrations with the largest metadata until the arena is full, so that
 * entries sit in its last bytes. */
static void fill(shmg_t *h)
{
	static char meta[2048];
	char key[32];
	int rc = 0;

	for (int i = 0; rc == 0; i++) {
		snprintf(key, sizeof(key), "f/%d", i);
		rc = shmg_register(h, SHMG_KEY(key), meta, sizeof(meta), NULL);
		ck_assert_msg(rc == 0 || rc == -ENOSPC, "fill: %s", shmg_strerror(rc));
		ck_assert_int_lt(i, 10000);
	}
}

/* ---- the reader -------------------------------------------------------- */

enum stage {
	S_SETUP, S_READY, S_OPEN, S_REPAIR, S_LOOKUP, S_LOOKUP_REF, S_LOOKUP_MANY, S_MEMBERS,
	S_MEMBER_IDS, S_COUNTS, S_ENTRIES, S_RECEIVE, S_DISPATCH, S_INFO, S_CHECK, S_CLOSE, S_DONE
};
static const char *const stage_names[] = {
	"setup", "ready", "shmg_open", "shard_lock_until/repair_shard", "shmg_lookup",
	"shmg_lookup_ref", "shmg_lookup_many", "shmg_members", "shmg_member_ids", "shmg_*count",
	"shmg_entries", "shmg_receive", "shmg_dispatch", "shmg_info/shmg_nodes", "shmg_check",
	"shmg_close", "done",
};

struct shared {
	volatile int stage;
	volatile int go, stop, setup_failed, joined, die, flipping;
	int loops;
	uint32_t slot;
	volatile uint64_t sink; /* keeps the byte sums alive */
};
static struct shared *sh;

static uint64_t touch(const void *p, size_t n)
{
	const volatile uint8_t *b = p;
	uint64_t s = 0;

	for (size_t i = 0; i < n; i++)
		s += b[i];
	return s;
}

static shmg_t *reader_h;

/* A result's bytes lie in the arena, or in the handle's own buffers (which
 * ASan watches).  Anything else is a wild pointer even if it does not fault. */
static void in_bounds(const void *p, size_t n)
{
	const uint8_t *b = p, *base = reader_h->base;
	if (b >= base && b <= base + reader_h->size && n <= (size_t)(base + reader_h->size - b))
		return;
	if (b >= reader_h->scratch && b + n <= reader_h->scratch + reader_h->geo.meta_max)
		return;
	_exit(104);
}

/* Reads every byte a result points at, so a bad pointer or length shows. */
static int touch_entry(const struct shmg_entry *e, void *arg)
{
	uint64_t s = touch(e->key, e->key_len) + touch(e->meta, e->meta_len);

	in_bounds(e->key, e->key_len);
	in_bounds(e->meta, e->meta_len);
	if (e->cluster)
		s += strlen(e->cluster);
	*(uint64_t *)arg += s;
	return 0;
}

/* An extract_meta that reads all of its input and writes what fits. */
static ssize_t extract_copy(const void *meta, size_t len, void *out, size_t cap, void *arg)
{
	size_t n = len < cap ? len : cap;

	*(uint64_t *)arg += touch(meta, len);
	memcpy(out, meta, n);
	return (ssize_t)n;
}

static const char *const read_keys[] = { "k/0", "k/3", "k/7", "k/14", "k/15", "k/20", "r/0",
					 "g/0", "missing" };
#define NREAD (sizeof(read_keys) / sizeof(read_keys[0]))

static void read_all(shmg_t *h, uint64_t *sum)
{
	char meta[512], big[SHMG_META_MAX_LIMIT];
	struct shmg_key keys[NREAD];
	struct shmg_entry ents[NREAD];
	shmg_id_t ids[NREAD];
	int rcs[NREAD];
	size_t len;

	sh->stage = S_LOOKUP;
	for (size_t i = 0; i < NREAD; i++) {
		const char *key = read_keys[i];
		if (shmg_lookup(h, SHMG_KEY(key), &ids[0], meta, sizeof(meta), &len, NULL) == 0)
			*sum += touch(meta, len);
		if (shmg_lookup(h, SHMG_KEY(key), NULL, big, sizeof(big), &len, NULL) == 0)
			*sum += touch(big, len);
	}
	(void)shmg_lookup(h, SHMG_KEY("c/0"), NULL, meta, sizeof(meta), &len, &named);

	sh->stage = S_LOOKUP_REF;
	shmg_read_begin(h);
	for (size_t i = 0; i < NREAD; i++)
		if (shmg_lookup_ref(h, SHMG_KEY(read_keys[i]), &ents[0], NULL) == 0)
			touch_entry(&ents[0], sum);
	if (shmg_lookup_ref(h, SHMG_KEY("c/0"), &ents[0], &named) == 0)
		touch_entry(&ents[0], sum);
	shmg_read_end(h);

	sh->stage = S_LOOKUP_MANY;
	for (size_t i = 0; i < NREAD; i++)
		keys[i] = (struct shmg_key){ read_keys[i], strlen(read_keys[i]) };
	(void)shmg_lookup_many(h, keys, NREAD, ids, rcs, NULL);
	shmg_read_begin(h);
	if (shmg_lookup_many_ref(h, keys, NREAD, ents, rcs, NULL) >= 0)
		for (size_t i = 0; i < NREAD; i++)
			if (rcs[i] == 0)
				touch_entry(&ents[i], sum);
	shmg_read_end(h);

	sh->stage = S_MEMBERS;
	static const char *const groups[] = { "g/0", "g/1", "g/3", "g/", "c/g", "k/", "r/0" };
	for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++) {
		(void)shmg_members(h, SHMG_KEY(groups[i]), touch_entry, sum, NULL);
		(void)shmg_local_members(h, SHMG_KEY(groups[i]), touch_entry, sum, NULL);
	}
	(void)shmg_members(h, SHMG_KEY("c/g"), touch_entry, sum, &named);
	(void)shmg_members(h, SHMG_KEY("c/"), touch_entry, sum, &named);

	sh->stage = S_MEMBER_IDS;
	(void)shmg_member_ids(h, SHMG_KEY("g/2"), ids, NREAD, NULL);
	(void)shmg_member_ids(h, SHMG_KEY("g/"), ids, NREAD, NULL);

	sh->stage = S_COUNTS;
	(void)shmg_member_count(h, SHMG_KEY("g/2"), NULL);
	(void)shmg_member_count(h, SHMG_KEY("g/"), NULL);
	(void)shmg_local_member_count(h, SHMG_KEY("g/"), NULL);
	(void)shmg_registry_count(h, NULL);
	(void)shmg_local_registry_count(h, NULL);
	(void)shmg_registry_count(h, &named);
	(void)shmg_connected(h, "c1");

	sh->stage = S_ENTRIES;
	(void)shmg_entries(h, 1, touch_entry, sum);
	(void)shmg_local_entries(h, touch_entry, sum);
}

static int receive_all(shmg_t *h, uint64_t *sum)
{
	struct shmg_event ev[8];

	/* A mailbox holds a bounded number of events: a receive that keeps
	 * returning some for longer is looping on damaged records.  (Not so
	 * while a field flips: a process that keeps moving head back replays
	 * the ring on purpose, and each call still returns.) */
	for (int calls = 0; calls < 1000; calls++) {
		int n = shmg_receive(h, ev, 8, 0);
		if (n <= 0)
			return 0;
		for (int i = 0; i < n; i++) {
			*sum += touch(ev[i].key, ev[i].key_len) + touch(ev[i].meta, ev[i].meta_len);
			if (ev[i].has_previous)
				*sum += touch(ev[i].previous_meta, ev[i].previous_meta_len);
			if (ev[i].cluster)
				*sum += strlen(ev[i].cluster);
		}
	}
	return 1;
}

/* What every process of a case runs once it has a handle: the read calls,
 * receive, dispatch, info, check and close.  0, or an exit code of the
 * legend. */
static int reader_calls(shmg_t *h, uint64_t *sum)
{
	struct shmg_info info;

	for (int i = 0; i < sh->loops; i++)
		read_all(h, sum);
	sh->stage = S_RECEIVE;
	if (receive_all(h, sum) && sh->loops == 1)
		return 103;
	sh->stage = S_DISPATCH;
	(void)shmg_dispatch(h, SHMG_KEY("g/0"), "again", 5, NULL);
	(void)shmg_dispatch(h, SHMG_KEY("k/7"), "again", 5, NULL);
	sh->stage = S_INFO;
	(void)shmg_info(h, &info);
	uint32_t nodes[8];
	long n_nodes = shmg_nodes(h, NULL, nodes, 8); /* the node table's marks */
	for (long i = 0; i < n_nodes && i < 8; i++)
		*sum += nodes[i];
	n_nodes = shmg_nodes(h, "c1", nodes, 8); /* and the named cluster's */
	for (long i = 0; i < n_nodes && i < 8; i++)
		*sum += nodes[i];
	struct shmg_cluster_stats cs;
	for (uint32_t s = 0; shmg_cluster_stats(h, s, &cs, sizeof(cs)) != -ERANGE && s < 64; s++)
		*sum += cs.lease_kept + cs.nodes + (uint64_t)cs.lease_left_ms;
	/* A reaper's pass: leases due, markers pending (lease.c, cluster.c). */
	if (shmg_reaper_enable(h) == 1)
		(void)shmg_reaper_dispatch(h);
	(void)shmg_reaper_disable(h);
	sh->stage = S_CHECK;
	(void)shmg_check(h, NULL, NULL);
	sh->stage = S_CLOSE;
	(void)shmg_close(h);
	sh->stage = S_DONE;
	sh->sink = *sum;
	return 0;
}

/* Opens the arena as a process under test.  A mutex held by a thread that
 * does not exist costs bounded waits, an open's too: they are kept short so
 * that every call still fits the process's time.  NULL if open failed. */
static shmg_t *open_arena(uint64_t *sum)
{
	shmg_t *h;

	lock_wait_limit_ms = 200;
	sh->stage = S_OPEN;
	if (shmg_open(tc_arena, NULL, &h) != 0)
		return NULL;
	reader_h = h;
	shmg_set_busy_retry(h, 4, 50);
	shmg_set_extract_meta(h, extract_copy, sum);
	return h;
}

/* Waits for the test process to set *flag. */
static bool wait_flag(volatile int *flag)
{
	uint64_t deadline = tc_now_ms() + READER_TIMEOUT_MS;

	while (!*flag)
		if (tc_now_ms() > deadline)
			return false;
	return true;
}

static int reader(void *arg)
{
	uint64_t sum = 0;
	shmg_t *h = open_arena(&sum);

	(void)arg;
	if (!h) {
		sh->setup_failed = 1;
		return 100;
	}
	/* Events waiting in our own mailbox: a registration, a join, a message. */
	if (shmg_monitor(h, NULL, 0, NULL) != 0 ||
	    shmg_register(h, SHMG_KEY("r/0"), "mine", 4, NULL) ||
	    shmg_join(h, SHMG_KEY("g/0"), "mine", 4, NULL) ||
	    shmg_dispatch(h, SHMG_KEY("g/0"), "hello", 5, NULL) < 1) {
		sh->setup_failed = 1;
		return 101;
	}
	sh->slot = shmg_self(h).slot;
	sh->stage = S_READY;
	return wait_flag(&sh->go) ? reader_calls(h, &sum) : 102;
}

/* Opens the arena only once it is corrupt.  Failing to open is an answer. */
static int fresh_reader(void *arg)
{
	uint64_t sum = 0;
	shmg_t *h = open_arena(&sum);

	(void)arg;
	return h ? reader_calls(h, &sum) : 0;
}

/* ---- a writer that dies holding every shard lock, and its repairer ---- */

#define DYING_GROUP "g/2"
#define REPAIR_ROUNDS 40

static void die_unlinked(const char *point)
{
	if (strcmp(point, "leave:unlinked") == 0)
		raise(SIGKILL);
}

/* Joins while the arena has room, waits for the word, then takes every
 * other shard's lock and dies in a leave: its membership unlinked from the
 * list but still indexed, the leave in flight. */
static int dying_writer(void *arg)
{
	struct keyref k;
	shmg_t *h;

	(void)arg;
	if (shmg_open(tc_arena, NULL, &h) != 0 ||
	    shmg_join(h, SHMG_KEY(DYING_GROUP), "dying", 5, NULL) != 0 ||
	    key_prepare(h, SHMG_KEY(DYING_GROUP), NULL, KEY_WRITE, &k) != 0) {
		sh->setup_failed = 1;
		return 10;
	}
	sh->joined = 1;
	if (!wait_flag(&sh->die))
		return 11;
	for (uint32_t s = 0; s < h->geo.shards; s++)
		if (s != k.shard && shard_lock(h, s) != 0)
			return 12;
	sg_test_hook = die_unlinked;
	(void)shmg_leave(h, SHMG_KEY(DYING_GROUP), NULL);
	return 13;
}

/* The next locker after the death: its open reaps the writer, and taking
 * each lock repairs what the reap did not.  Then each shard is repaired
 * again, round after round, while the field flips. */
static int repairer(void *arg)
{
	uint64_t sum = 0;
	shmg_t *h = open_arena(&sum);

	(void)arg;
	if (!h)
		return 105;
	sh->stage = S_REPAIR;
	for (int i = 0; i < REPAIR_ROUNDS; i++) {
		for (uint32_t s = 0; s < h->geo.shards; s++) {
			if (shard_lock_until(h, s, busy_deadline(h), 0) != 0)
				continue;
			if (i > 0)
				(void)repair_shard(h, s);
			shard_unlock(h, s);
		}
	}
	return reader_calls(h, &sum);
}

/* ---- finding the instances ------------------------------------------- */

struct arena_view {
	uint8_t *base;
	uint64_t size;
	struct arena_header hdr; /* as it was before the corruption */
	uint32_t reader_slot, owner_slot, monitor_slot, records_slot;
};

struct offsets {
	uint64_t *off;
	size_t n, cap;
};

static void add(struct offsets *o, uint64_t off)
{
	if (o->n == o->cap) {
		o->cap = o->cap ? 2 * o->cap : 64;
		o->off = realloc(o->off, o->cap * sizeof(*o->off));
		ck_assert_ptr_nonnull(o->off);
	}
	o->off[o->n++] = off;
}

static uint64_t shard_off(const struct arena_view *a, uint32_t s)
{
	return a->hdr.off_shards + (uint64_t)s * a->hdr.shard_stride;
}

static const struct table_header *table_of(const struct arena_view *a, uint32_t s)
{
	const struct shard_header *shh = (const void *)(a->base + shard_off(a, s));
	return (const void *)(a->base + shh->table_off);
}

/* Calls fn for each indexed entry (every entry is indexed, members too). */
static void each_entry(const struct arena_view *a, struct offsets *o, bool links)
{
	for (uint32_t s = 0; s < a->hdr.shards; s++) {
		const struct table_header *t = table_of(a, s);
		const struct bucket *b = (const void *)(t + 1);
		for (uint64_t i = 0; i < ((uint64_t)BUCKET_SLOTS << t->nbuckets_log2); i++) {
			ref_t r = b[i / BUCKET_SLOTS].ent[i % BUCKET_SLOTS];
			if (!r)
				continue;
			uint64_t off = (uint64_t)r << REF_SHIFT;
			const struct entry *e = (const void *)(a->base + off);
			if (!links)
				add(o, off);
			else if (kind_has_links(e->kind))
				add(o, off + entry_links_off(e->key_len, e->meta_len));
		}
	}
}

static void mailbox_records(const struct arena_view *a, struct offsets *o)
{
	uint64_t mb_off = a->hdr.off_mailboxes + (uint64_t)a->records_slot * a->hdr.mailbox_bytes;
	const struct mailbox_header *mb = (const void *)(a->base + mb_off);
	uint32_t cap = a->hdr.mailbox_bytes - (uint32_t)sizeof(*mb);
	for (uint64_t p = mb->head; p < mb->tail;) {
		uint32_t pos = (uint32_t)(p % cap);
		const struct mailbox_record *r = (const void *)((const uint8_t *)(mb + 1) + pos);
		ck_assert_uint_ge(r->size, 8);
		if (r->type != MB_PAD)
			add(o, mb_off + sizeof(*mb) + pos);
		p += r->size;
	}
}

static void oplog_records(const struct arena_view *a, struct offsets *o)
{
	for (uint32_t s = 0; s < a->hdr.shards; s++) {
		uint64_t ol_off = a->hdr.off_oplogs + (uint64_t)s * a->hdr.oplog_bytes;
		const struct oplog_header *ol = (const void *)(a->base + ol_off);
		ck_assert_uint_le(ol->head, ol->ring_bytes); /* the test writes less than a lap */
		for (uint64_t p = 0; p < ol->head;) {
			const struct oplog_record *r = (const void *)((const uint8_t *)(ol + 1) + p);
			add(o, ol_off + sizeof(*ol) + p);
			p += r->size;
		}
	}
}

static void instances(const struct arena_view *a, enum where w, struct offsets *o)
{
	const struct arena_header *g = &a->hdr;
	switch (w) {
	case W_HEADER:
		add(o, 0);
		break;
	case W_EP_READER:
	case W_EP_OWNER: {
		uint32_t slot = w == W_EP_READER ? a->reader_slot : a->owner_slot;
		add(o, g->off_endpoints + (uint64_t)slot * sizeof(struct endpoint_slot));
		break;
	}
	case W_LIVE_GEN:
		for (uint32_t i = 0; i < g->max_endpoints; i++)
			add(o, g->off_live_gen + 4ull * i);
		break;
	case W_CL_DEFAULT:
		add(o, g->off_clusters);
		break;
	case W_CL_NAMED:
		for (uint32_t i = 1; i < g->max_clusters; i++) {
			uint64_t off = g->off_clusters + (uint64_t)i * sizeof(struct cluster_slot);
			if (((const struct cluster_slot *)(a->base + off))->state == CL_CONNECTED)
				add(o, off);
		}
		ck_assert_uint_eq(o->n, 1);
		break;
	case W_SHARDS:
		for (uint32_t s = 0; s < g->shards; s++)
			add(o, shard_off(a, s));
		break;
	case W_COUNTS:
		for (uint32_t s = 0; s < g->shards; s++)
			for (uint32_t i = 0; i < g->max_clusters; i++)
				add(o, shard_off(a, s) + sizeof(struct shard_header) +
					       i * sizeof(struct cluster_counts));
		break;
	case W_EP_ENTRIES:
		for (uint32_t s = 0; s < g->shards; s++)
			for (uint32_t i = 0; i < g->max_endpoints; i++)
				add(o, shard_off(a, s) + sizeof(struct shard_header) +
					       g->max_clusters * sizeof(struct cluster_counts) +
					       4ull * i);
		break;
	case W_LIMBO:
		for (uint32_t s = 0; s < g->shards; s++) {
			const struct shard_header *shh = (const void *)(a->base + shard_off(a, s));
			uint64_t ring = shard_off(a, s) + sizeof(struct shard_header) +
					g->max_clusters * sizeof(struct cluster_counts) +
					4ull * g->max_endpoints;
			for (uint32_t i = shh->limbo_tail; i != shh->limbo_head; i++)
				add(o, ring + (i % LIMBO_CAP) * sizeof(struct limbo_item));
		}
		ck_assert_uint_gt(o->n, 0);
		break;
	case W_EP_KINDS:
		for (uint32_t s = 0; s < g->shards; s++) {
			uint64_t kinds = shard_off(a, s) + sizeof(struct shard_header) +
					 g->max_clusters * sizeof(struct cluster_counts) +
					 4ull * g->max_endpoints +
					 LIMBO_CAP * sizeof(struct limbo_item);
			for (uint32_t i = 0; i < g->max_endpoints; i++)
				add(o, kinds + i * sizeof(struct ep_kind_counts));
		}
		break;
	case W_NODES:
		for (uint32_t i = 0; i < MAX_NODES; i++)
			add(o, offsetof(struct arena_header, nodes) + i * sizeof(struct node_state));
		break;
	case W_NODE_CURSORS:
		for (uint32_t s = 0; s < g->shards; s++) {
			uint64_t cursors = shard_off(a, s) + sizeof(struct shard_header) +
					   g->max_clusters * sizeof(struct cluster_counts) +
					   4ull * g->max_endpoints +
					   LIMBO_CAP * sizeof(struct limbo_item) +
					   g->max_endpoints * sizeof(struct ep_kind_counts);
			for (uint32_t i = 0; i < MAX_NODES; i++)
				add(o, cursors + 8ull * i);
		}
		break;
	case W_TABLES:
		for (uint32_t s = 0; s < g->shards; s++)
			add(o, (uint64_t)((const uint8_t *)table_of(a, s) - a->base));
		break;
	case W_BUCKETS:
		for (uint32_t s = 0; s < g->shards; s++) {
			const struct table_header *t = table_of(a, s);
			uint64_t first = (uint64_t)((const uint8_t *)(t + 1) - a->base);
			for (uint64_t i = 0; i < (1ull << t->nbuckets_log2); i++)
				add(o, first + i * sizeof(struct bucket));
		}
		break;
	case W_ENTRIES:
	case W_LINKS:
		each_entry(a, o, w == W_LINKS);
		break;
	case W_MB_READER:
	case W_MB_MONITOR: {
		uint32_t slot = w == W_MB_READER ? a->reader_slot : a->monitor_slot;
		add(o, g->off_mailboxes + (uint64_t)slot * g->mailbox_bytes);
		break;
	}
	case W_MB_RECORDS:
		mailbox_records(a, o);
		ck_assert_uint_gt(o->n, 0);
		break;
	case W_PAGEDESC:
		for (uint32_t p = 0; p < g->npages; p++)
			add(o, g->off_pagedesc + (uint64_t)p * sizeof(struct page_desc));
		break;
	case W_OPLOG:
		for (uint32_t s = 0; s < g->shards; s++)
			add(o, g->off_oplogs + (uint64_t)s * g->oplog_bytes);
		break;
	case W_OPLOG_RECORDS:
		oplog_records(a, o);
		ck_assert_uint_gt(o->n, 0);
		break;
	}
}

/* ---- corrupting ------------------------------------------------------- */

struct corruption {
	const struct field *f;
	enum value v;
	const struct arena_view *a;
	const struct offsets *o;
	bool flip; /* alternate the value with the true one until told to stop */
};

/* One store of the element's width, so a reader sees the old or the new
 * value, never a mix (the fields are naturally aligned). */
static void write_elem(uint8_t *p, uint32_t size, uint64_t v)
{
	switch (size) {
	case 1:
		__atomic_store_n(p, (uint8_t)v, __ATOMIC_RELAXED);
		break;
	case 2:
		__atomic_store_n((uint16_t *)p, (uint16_t)v, __ATOMIC_RELAXED);
		break;
	case 4:
		__atomic_store_n((uint32_t *)p, (uint32_t)v, __ATOMIC_RELAXED);
		break;
	default:
		__atomic_store_n((uint64_t *)p, v, __ATOMIC_RELAXED);
		break;
	}
}

static uint64_t read_elem(const uint8_t *p, uint32_t size)
{
	uint64_t v = 0;
	memcpy(&v, p, size);
	return v;
}

static void corrupt_once(const struct corruption *c)
{
	const struct field *f = c->f;

	for (size_t i = 0; i < c->o->n; i++) {
		uint8_t *p = c->a->base + c->o->off[i] + f->off;
		if (f->kind == F_BYTES || f->kind == F_MUTEX) {
			memset(p, c->v == V_ONES ? 0xff : 0, f->size);
			if (c->v == V_HELD) {
				uint32_t tid = 0x3ffffff0; /* above any pid_max */
				memcpy(p, &tid, sizeof(tid));
			}
			continue;
		}
		for (uint32_t e = 0; e < f->size; e += f->elem) {
			uint64_t old = read_elem(p + e, f->elem);
			write_elem(p + e, f->elem, value_of(f, c->v, old, c->a->size));
		}
	}
}

/* Scalars only: each instance toggles between its true and the hostile value. */
static void flip_until_stopped(const struct corruption *c)
{
	const struct field *f = c->f;
	size_t n = c->o->n;
	uint64_t *good = calloc(n, sizeof(*good)), *bad = calloc(n, sizeof(*bad));

	for (size_t i = 0; i < n; i++) {
		good[i] = read_elem(c->a->base + c->o->off[i] + f->off, f->elem);
		bad[i] = value_of(f, c->v, good[i], c->a->size);
	}
	for (unsigned round = 0; !sh->stop; round++) {
		for (size_t i = 0; i < n; i++) {
			uint8_t *p = c->a->base + c->o->off[i] + f->off;
			uint64_t v = round & 1 ? good[i] : bad[i];
			for (uint32_t e = 0; e < f->size; e += f->elem) {
				write_elem(p + e, f->elem, v);
			}
		}
		sh->flipping = 1;
	}
	free(good);
	free(bad);
}

static int flipper(void *arg)
{
	flip_until_stopped(arg);
	return 0;
}

enum mode {
	M_ATTACHED, /* corrupted after the reader opened */
	M_FRESH,    /* corrupted before a process opens it */
	M_REPAIR,   /* flipping while a process repairs after a writer died */
};
static const char *const mode_names[] = { "reader", "opener", "repairer" };

static bool flipping(void *arg)
{
	(void)arg;
	return sh->flipping;
}

/* Ready, or failed to get there. */
static bool reader_ready(void *arg)
{
	(void)arg;
	return sh->stage == S_READY || sh->setup_failed;
}

static bool writer_joined(void *arg)
{
	(void)arg;
	return sh->joined || sh->setup_failed;
}

/* What has to be in place before the arena is filled: the attached reader,
 * ready with events in its mailbox, or the writer that is to die (it needs
 * room to join).  Returns its pid, or 0. */
static pid_t start_before_fill(const struct field *f, enum mode m)
{
	if (m == M_FRESH)
		return 0;
	bool attached = m == M_ATTACHED;
	pid_t pid = tc_fork(attached ? reader : dying_writer, NULL);
	if (!tc_wait_until(attached ? reader_ready : writer_joined, NULL, READER_TIMEOUT_MS) ||
	    sh->setup_failed) {
		int st = tc_wait_exit(pid, 1000);
		ck_abort_msg("%s: %s did not get ready (exit %d)", f->name,
			     attached ? "reader" : "dying writer", st);
	}
	return pid;
}

/* The slot an opener will claim: the first free one. */
static uint32_t first_free_slot(const struct arena_view *a)
{
	for (uint32_t i = 0; i < a->hdr.max_endpoints; i++) {
		uint64_t off = a->hdr.off_endpoints + (uint64_t)i * sizeof(struct endpoint_slot);
		if (((const struct endpoint_slot *)(a->base + off))->state == EP_FREE)
			return i;
	}
	ck_abort_msg("no free endpoint slot");
	return 0;
}

/* The raw view of the filled arena.  The reader's endpoint and mailbox are
 * those of the process under test: attached, the reader's; otherwise the
 * slot it is about to claim.  Records to corrupt wait in the attached
 * reader's mailbox, or else in the monitor's. */
static void view_arena(struct arena_view *a, shmg_t *h[3], enum mode m)
{
	size_t size;

	a->base = tc_map_arena(tc_arena, &size);
	a->size = size;
	memcpy(&a->hdr, a->base, sizeof(a->hdr));
	a->owner_slot = shmg_self(h[0]).slot;
	a->monitor_slot = shmg_self(h[1]).slot;
	a->reader_slot = m == M_ATTACHED ? sh->slot : first_free_slot(a);
	a->records_slot = m == M_ATTACHED ? sh->slot : a->monitor_slot;
}

static const char exit_legend[] =
	"(exit 1: a sanitizer report; 103: receive kept returning events; 104: a result "
	"pointed outside the arena and the handle's buffers; 105: the repairer could not open)";

/* What the process under test got to: 0, or a line for the failure report. */
static int run_case(const struct field *f, enum value v, enum mode m, bool flip, char *msg,
		    size_t cap)
{
	shmg_t *h[3];
	int st;

	tc_setup(); /* a fresh arena name for every value */
	populate(h);
	sh = tc_shared_alloc(sizeof(*sh));
	sh->loops = flip && m == M_ATTACHED ? FLIP_LOOPS : 1;
	pid_t pid = start_before_fill(f, m);
	fill(h[2]);
	if (m == M_REPAIR) {
		sh->die = 1;
		TC_EQ(tc_wait_exit(pid, 5000), TC_KILLED(SIGKILL));
	}

	struct arena_view a = { 0 };
	view_arena(&a, h, m);
	struct offsets o = { 0 };
	instances(&a, f->where, &o);

	struct corruption c = { f, v, &a, &o, flip };
	pid_t cpid = 0;
	if (flip) {
		cpid = tc_fork(flipper, &c);
		ck_assert(tc_wait_until(flipping, NULL, 5000));
	} else {
		corrupt_once(&c);
	}
	if (m == M_ATTACHED)
		sh->go = 1;
	else
		pid = tc_fork(m == M_FRESH ? fresh_reader : repairer, NULL);
	st = tc_wait_exit(pid, READER_TIMEOUT_MS);
	if (st == -ETIMEDOUT) {
		kill(pid, SIGKILL);
		tc_wait_exit(pid, 5000);
	}
	if (flip) {
		sh->stop = 1;
		TC_EQ(tc_wait_exit(cpid, 5000), 0);
	}
	if (st != 0)
		snprintf(msg, cap, "  %s = %s%s (%zu instances): %s %s %d in %s\n", f->name,
			 flip ? "flipping with " : "", value_names[v], o.n, mode_names[m],
			 st >= 256 ? "killed by signal" : st == -ETIMEDOUT ? "hung, exit" : "exit",
			 st >= 256 ? st - 256 : st, stage_names[sh->stage]);
	free(o.off);
	munmap(a.base, a.size);
	munmap((void *)sh, sizeof(*sh));
	/* The arena is beyond use: drop it without letting close walk it. */
	TC_EQ(shmg_destroy(tc_arena), 0);
	return st;
}

/* Runs the values [first, last] that apply to f; fails listing all that broke
 * the process under test. */
static void run_values(const struct field *f, enum value first, enum value last, enum mode m,
		       bool flip)
{
	char report[4096] = "", line[512];
	int failed = 0;

	for (int v = first; v <= (int)last; v++) {
		if (!value_applies(f, (enum value)v))
			continue;
		if (run_case(f, (enum value)v, m, flip, line, sizeof(line))) {
			failed++;
			strncat(report, line, sizeof(report) - strlen(report) - 1);
		}
	}
	ck_assert_msg(failed == 0, "%d value(s) of %s broke a %s:\n%s%s", failed, f->name,
		      mode_names[m], report, exit_legend);
}

START_TEST(test_field)
{
	run_values(&fields[_i], 0, NVALUES - 1, M_ATTACHED, false);
}
END_TEST

START_TEST(test_fresh)
{
	run_values(&fields[_i], 0, NVALUES - 1, M_FRESH, false);
}
END_TEST

/* Fields a reader checks before it uses them, flipped between their true
 * value and a hostile one while the reader loops: a reader that checks one
 * load and uses another gets the hostile value past its check. */
static const char *const flip_fields[] = {
	"table_header.nbuckets_log2", "shard_header.table_off", "bucket.probe", "bucket.ent[]",
	"entry.key_len", "entry.meta_len", "entry.kind", "entry.ep_slot", "entry_links.next",
	"entry_links.aux", "entry_links.sib", "cluster_slot.name_len", "mailbox_header.tail",
	"mailbox_header.head",
};
#define NFLIPS (sizeof(flip_fields) / sizeof(flip_fields[0]))

static const struct field *field_named(const char *name)
{
	for (size_t i = 0; i < NFIELDS; i++)
		if (strcmp(fields[i].name, name) == 0)
			return &fields[i];
	ck_abort_msg("no field %s", name);
	return NULL;
}

START_TEST(test_flip)
{
	run_values(field_named(flip_fields[_i]), V_ONES, V_LAST, M_ATTACHED, true);
}
END_TEST

/* What repair reads: lengths, kinds and links of entries, the table, the
 * limbo ring, the in-flight record and the page descriptors. */
static const char *const repair_fields[] = {
	"shard_header.table_off", "shard_header.nentries", "shard_header.limbo_head",
	"shard_header.limbo_tail", "shard_header.partial[]", "shard_header.inflight_op",
	"shard_header.inflight_ref", "limbo_item.ref", "limbo_item.kind",
	"table_header.nbuckets_log2", "table_header.magic", "bucket.ent[]", "bucket.probe",
	"entry.key_len", "entry.meta_len", "entry.kind", "entry.ep_slot", "entry_links.next",
	"entry_links.aux", "entry_links.sib", "entry_links.tree.parent", "page_desc.word",
	"page_desc.free_head", "page_desc.bump", "page_desc.used",
};
#define NREPAIRS (sizeof(repair_fields) / sizeof(repair_fields[0]))

START_TEST(test_repair)
{
	run_values(field_named(repair_fields[_i]), V_ONES, V_LAST, M_REPAIR, true);
}
END_TEST

/* One tcase per kind of case, one test per field. */
static void add_cases(Suite *s, const char *name, const TTest *test, size_t n)
{
	TCase *tc = tcase_create(name);

	tcase_set_timeout(tc, 200);
	tcase_add_loop_test(tc, test, 0, (int)n);
	suite_add_tcase(s, tc);
}

static Suite *fields_suite(void)
{
	Suite *s = suite_create("corrupt_fields");

	add_cases(s, "fields", test_field, NFIELDS);
	add_cases(s, "flips", test_flip, NFLIPS);
	add_cases(s, "fresh", test_fresh, NFIELDS);
	add_cases(s, "repair", test_repair, NREPAIRS);
	return s;
}

int main(void)
{
	return tc_run(fields_suite());
}
