/* SPDX-License-Identifier: MIT */
/*
 * Every struct that lives in shared memory.  The arena is a file format: only
 * fixed-width integers, links are offsets or 16-byte-unit references (0 =
 * none), and the one pthread type is the robust mutex whose size is asserted.
 * Anything here changes => bump LAYOUT_VERSION (tests/unit/test_layout.c
 * fails otherwise: it checks LAYOUT_SIGNATURE against the sizes and offsets).
 *
 * Arena map (all offsets from the arena base, page = 64 KiB):
 *
 *   0            arena_header (4 KiB)
 *   off_endpoints  endpoint_slot[max_endpoints]          128 B each
 *   off_live_gen   u32[max_endpoints]   gen of each live endpoint, 0 = not live
 *   off_clusters   cluster_slot[max_clusters]            128 B each
 *   off_shards     shard_stride bytes per shard:
 *                    shard_header | cluster_counts[max_clusters] |
 *                    u32 endpoint_entries[max_endpoints] | limbo_item[LIMBO_CAP] |
 *                    ep_kind_counts[max_endpoints] | u64 node_cursor[MAX_NODES]
 *   off_oplogs     oplog_bytes per shard (oplog_header + ring)
 *   off_pagedesc   page_desc[npages]
 *   off_pages      npages * 64 KiB: slab pages (entries) and extents (tables)
 *
 * npages is what fits in arena_max, the size the arena may grow to; the
 * object starts at arena_size and grows (pool_grow in alloc.c) as pages are
 * needed.  Every region but the pages lies within arena_size, so only the
 * pages [pages_avail, npages) can lie past the object's end: a process maps
 * arena_max bytes at open and never touches beyond the size it has seen the
 * object have (fstat), see arena_span_ok in internal.h.
 */
#ifndef SHMG_LAYOUT_H
#define SHMG_LAYOUT_H

#include <assert.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define ARENA_MAGIC 0x31707267676d6873ull /* "shmggrp1" little-endian */
#define ARENA_MAGIC_INIT 0x74696e6967676d73ull /* set while the creator initialises */
#define LAYOUT_VERSION 7u

#define CACHE_LINE 64u
#define PAGE_SHIFT 16u
#define PAGE_SIZE (1u << PAGE_SHIFT)
#define REF_SHIFT 4u /* an entry ref is its arena offset >> 4 */
#define LIMBO_CAP 4096u
#define LIMBO_RECLAIM_AT 512u
#define BUCKET_SLOTS 8u
#define MAX_PROBE 64u
#define MAX_SHARDS 256u
#define MAX_NODES 64u /* other nodes whose entries this arena holds (remote.c) */

typedef uint32_t ref_t; /* entry reference: arena offset >> REF_SHIFT, 0 = none */

/* ---- header ---------------------------------------------------------- */

struct arena_header {
	/* Written once by the creator, read-only afterwards. */
	uint64_t magic;
	uint32_t layout_version;
	uint32_t layout_signature;
	uint64_t arena_size;
	uint64_t incarnation;
	uint64_t created_ns;
	uint32_t shards, shard_bits, max_endpoints, key_max, meta_max, max_clusters;
	uint32_t node_id, oplog_bytes, mode, hash_id;
	uint64_t off_endpoints, off_live_gen, off_clusters, off_shards, off_oplogs;
	uint64_t off_pagedesc, off_pages;
	uint32_t shard_stride, npages;
	uint64_t off_mailboxes;
	uint32_t mailbox_bytes;
	uint32_t pad0a;
	uint64_t arena_max; /* the object grows up to this size; npages is laid out for it */
	uint8_t pad0[CACHE_LINE * 3 - 168];

	/* Global epoch: bumped only by grace periods (epoch.c). */
	_Alignas(CACHE_LINE) uint64_t epoch;
	uint8_t pad1[CACHE_LINE - 8];

	/* Page pool (alloc.c): claims and releases of whole pages, and growth.
	 * pages_avail: pages [0, pages_avail) lie in the object; raised with
	 * release after the object was grown, never above what it holds. */
	_Alignas(CACHE_LINE) pthread_mutex_t pool_lock;
	uint32_t pool_hint;
	uint32_t pages_used;
	uint32_t pages_avail;
	uint32_t grows; /* times the object was grown, for tools */
	uint8_t pad2[CACHE_LINE * 2 - 56];

	/* Endpoint table (endpoint.c): slot claims, releases and reaps. */
	_Alignas(CACHE_LINE) pthread_mutex_t endpoint_lock;
	uint32_t endpoint_hwm; /* slots [0, hwm) have ever been used */
	uint32_t endpoints_live;
	uint8_t pad3[CACHE_LINE * 2 - 48];

	/* Cluster table (cluster.c): connects and disconnects.  disconnects is
	 * bumped after each tombstone; a shard whose `swept` differs removes the
	 * entries of disconnected clusters at its next lock. */
	_Alignas(CACHE_LINE) pthread_mutex_t cluster_lock;
	uint32_t clusters_connected;
	uint32_t disconnects;
	uint8_t pad4[CACHE_LINE * 2 - 48];

	/* Rarely written shared settings and statistics. */
	_Alignas(CACHE_LINE) uint32_t log_level;
	uint32_t destroyed;
	uint64_t shard_repairs;
	uint32_t agent_session; /* the host agent's runs (remote_session_next) */
	uint32_t pad5a;
	/* Endpoints hidden from readers (state CLOSING, live_gen 0) whose
	 * entries may remain, in the low 32 bits, and hides ever, in the high
	 * 32: exact member counts trust the group heads' counters only while
	 * the low half reads 0 and the word stays put (groups.c).  Written
	 * under endpoint_lock (endpoint.c). */
	uint64_t hidden;
	/* The endpoint whose mailbox takes messages for other hosts (the
	 * agent's, remote_outbound_claim): gen << 32 | (slot + 1), 0 = none.
	 * One 64-bit store, so a reader never pairs one agent's slot with
	 * another's generation. */
	uint64_t agent_mailbox;
	uint8_t pad5[CACHE_LINE - 40];

	/* Reaper election (reaper.c): held for as long as a process is the
	 * reaper; endpoint_epoch is bumped by every claim and release so the
	 * reaper knows to rescan. */
	_Alignas(CACHE_LINE) pthread_mutex_t reaper_lock;
	uint32_t reaper_pid;
	uint32_t reaper_slot;
	uint32_t endpoint_epoch;
	uint32_t pad6a;
	uint64_t reaper_wake; /* nonce naming the reaper's wakeup socket (mailbox.c) */
	uint8_t pad6[CACHE_LINE * 2 - 64];

	/* Replication (remote.c): the other nodes whose entries this arena
	 * holds, written by the host agent only.  A slot is claimed by a CAS of
	 * node from 0; its per-shard cursors are node_cursor[slot] in each
	 * shard's stride, written under that shard's lock. */
	_Alignas(CACHE_LINE) struct node_state {
		uint32_t node; /* 0 = free */
		uint32_t up;   /* 1: the agent's connection to it is up (shmg_nodes) */
		uint64_t inc;  /* the owner's incarnation held; 0 = none (purge first) */
	} nodes[MAX_NODES];

	/* The host agent's wakeup (oplog.c): before it sleeps with a peer up,
	 * the agent sets agent_sleeping and looks at the change logs once more;
	 * a writer that appended a record and finds it set clears it and sends
	 * a datagram to the agent's socket, named by the agent_wake nonce (as
	 * reaper_wake names the reaper's).  Its own line: writers only load it
	 * while the agent is awake. */
	_Alignas(CACHE_LINE) uint32_t agent_sleeping;
	uint32_t pad7a;
	uint64_t agent_wake; /* 0: no agent listening */
	uint8_t pad7[CACHE_LINE - 16];
};

/* ---- endpoints ------------------------------------------------------- */

enum endpoint_state {
	EP_FREE = 0,
	EP_OPENING = 1,  /* claimed, not yet live (a crash here is reaped as dead) */
	EP_LIVE = 2,
	EP_CLOSING = 3,  /* owner or reaper is removing its entries */
};

/* endpoint_slot.flags */
enum {
	EPF_EVENTS_SENT = 1, /* its death/close batch was delivered */
	EPF_CLOSED = 2,      /* closed by its owner: the batch says "normal", not "exit" */
};

struct endpoint_slot {
	/* Line 0: written under endpoint_lock by the owner (open/close) or a reaper. */
	uint32_t state;
	uint32_t gen;
	int32_t pid;
	uint32_t flags;
	uint64_t start_time; /* /proc/PID/stat field 22, clock ticks since boot */
	uint64_t opened_ns;
	uint32_t batch_done;  /* its death/close batch reached targets below this slot */
	/* Why the host agent ended a live endpoint (REASON_CONFLICT: it lost a
	 * registry conflict, remote_conflict_evict), 0 = not ended.  Set under
	 * the lock of the shard of the key it lost, cleared when the slot is
	 * opened again; its owner's writes then fail (-ECONNABORTED). */
	uint32_t terminated;
	uint8_t pad0[CACHE_LINE - 40];
	/* Line 1: the reader slot.  Only the owner writes it (epoch.c), except a
	 * reaper clearing it after the owner died. */
	_Alignas(CACHE_LINE) uint64_t read_epoch;
	uint8_t pad1[CACHE_LINE - 8];
};

/* ---- clusters -------------------------------------------------------- */

/* CL_TOMB: was used, now disconnected; probing goes on past it and connect may reuse it. */
enum cluster_state { CL_FREE = 0, CL_CONNECTED = 1, CL_TOMB = 2 };

/* Slot 0 is the default cluster, always CONNECTED, name_len 0.  A cluster is
 * named in entries by a cluster ref = slot | gen << 16, so a slot freed and
 * reused for another name never matches the old entries. */
struct cluster_slot {
	uint32_t state;
	uint32_t gen;
	uint32_t name_len;
	uint32_t pad;
	uint64_t name_hash;
	uint64_t ttl_ms;
	uint64_t lease_expires_ns; /* CLOCK_MONOTONIC, 0 = no lease */
	uint64_t connected_ns;
	char name[64];
	/* Bit i: the node in arena_header.nodes[i] is connected to this cluster
	 * too (remote_node_cluster, shmg_nodes).  Written by the host agent with
	 * atomic or/and; cleared with the node's purge, by remote_nodes_down and
	 * when the slot is connected again. */
	uint64_t node_marks;
	/* The OP_CLUSTER_* marker of the last connect or disconnect of this slot
	 * is not yet in every shard's change log (cluster.c): whoever takes
	 * cluster_lock next appends it again to every shard.  Under cluster_lock. */
	uint32_t marks_pending;
	/* Why its lease was last extended instead of expiring (lease.c): LEASE_KEPT_*
	 * bits, 0 = never.  Written by the reaper under cluster_lock. */
	uint32_t lease_kept;
};
enum { LEASE_KEPT_MONITORS = 1, LEASE_KEPT_REGISTRATIONS = 2, LEASE_KEPT_MEMBERSHIPS = 4 };

/* ---- shards ---------------------------------------------------------- */

/* A retired block or table waiting for a grace period. */
struct limbo_item {
	uint64_t stamp;  /* global epoch read after the unlink */
	uint32_t ref;    /* entry ref, or page index of an extent */
	uint32_t kind;   /* LIMBO_BLOCK or LIMBO_EXTENT */
};
enum { LIMBO_BLOCK = 1, LIMBO_EXTENT = 2 };

struct cluster_counts {
	uint32_t registered, registered_local;
	uint32_t members, members_local;
};

/* Slab size classes (alloc.c): 16-byte steps from CLASS_MIN_BYTES to 192
 * bytes, where registrations with realistic keys and metadata fall, then 224,
 * 256 and four per power of two up to 32 KiB.  The smallest block also sizes
 * the per-page block bitmaps of repair and check (scan.h). */
#define NCLASSES 40u
#define CLASS_MIN_BYTES 48u

/* How many childless prefix nodes a shard keeps for reuse (prefix.c). */
#define PARKED_NODES 6

struct shard_header {
	/* Line 0: the writer lock and who holds it (writers only). */
	pthread_mutex_t lock; /* PROCESS_SHARED | ROBUST */
	uint32_t owner_slot;  /* endpoint holding the lock, for diagnostics */
	uint32_t owner_gen;
	uint8_t pad0[CACHE_LINE - 48];
	/* Line 1: read by every lookup, written only by resize and (monitors)
	 * by monitor/demonitor: kept off the lock's line so that readers do
	 * not share a line that every write dirties. */
	_Alignas(CACHE_LINE) uint64_t table_off; /* current index table extent, release-published */
	uint32_t monitors;    /* K_MONITOR entries here: routing skips when all are 0 */
	uint8_t pad1[CACHE_LINE - 12];
	/* Lines 2-4: writer-only bookkeeping. */
	_Alignas(CACHE_LINE) uint32_t nentries; /* slots used in the current table */
	uint32_t limbo_head;  /* next free limbo index (mod LIMBO_CAP) */
	uint32_t limbo_tail;  /* oldest unreclaimed */
	uint32_t repairs;
	uint32_t partial[NCLASSES]; /* page index + 1 of the first page with free blocks */
	/* The write whose event is not yet delivered (repair delivers it if the
	 * writer died): set before the change is published, cleared after its
	 * event went out.  See shard.c. */
	uint32_t inflight_op;  /* INFLIGHT_* */
	uint32_t inflight_ref; /* the entry added, replacing or removed */
	uint32_t inflight_old; /* REPLACE, SWAP: the entry replaced */
	uint32_t inflight_reason;
	uint32_t inflight_done; /* its event reached targets with slot < this */
	uint32_t repair_pending; /* REPAIR_*: set before a repair, cleared once it completed */
	uint32_t swept;       /* the hdr->disconnects value this shard was last swept for */
	uint32_t pad2;
	/* Statistics for tools (shmg_shard_stats), written under the lock only,
	 * so no reader of keys ever touches them: */
	uint64_t writes;      /* changes applied (each one the change log records) */
	uint64_t lock_waits;  /* lockings that found the lock held and had to wait */
	/* Prefix nodes left without children, kept for a while (prefix.c):
	 * refs, 0 = none; parked_next is where the next one goes (mod
	 * PARKED_NODES).  Writers only; each ref is checked before use. */
	uint32_t parked[PARKED_NODES];
	uint32_t parked_next;
};
/* INFLIGHT_SWAP: one endpoint's registration replaced by another's
 * (remote_replace); both events go as one batch per monitor, so the one
 * progress word covers them. */
enum {
	INFLIGHT_NONE = 0,
	INFLIGHT_ADD = 1,
	INFLIGHT_REPLACE = 2,
	INFLIGHT_REMOVE = 3,
	INFLIGHT_SWAP = 4,
};
/* Per shard and local endpoint slot, beside endpoint_entries (which counts
 * all three kinds): how many of those entries are registrations and
 * monitors; the rest are memberships.  Written under the shard lock by
 * shard_count and recounted from zero with it by a repair; readers clamp
 * them to endpoint_entries. */
struct ep_kind_counts {
	uint32_t registered;
	uint32_t monitors;
};

/* REPAIR_NEEDED: the shard may be inconsistent, every locker repairs it first.
 * REPAIR_LEAKED: consistent, but blocks that could not be queued for freeing
 * (the limbo ring was full) are held; repaired again once the ring has room. */
enum { REPAIR_NONE = 0, REPAIR_NEEDED = 1, REPAIR_LEAKED = 2 };

/* Bucket: 8 slots, one cache line.  tag = low 16 bits of the slot's hash;
 * ent = entry ref (0 = empty).  probe is meaningful in an entry's home bucket:
 * how many further buckets may hold entries homed here. */
struct bucket {
	uint16_t tag[BUCKET_SLOTS];
	uint32_t ent[BUCKET_SLOTS];
	uint32_t probe;
	uint8_t pad[12];
};

/* Table extent header, followed by nbuckets buckets. */
struct table_header {
	uint32_t nbuckets_log2;
	uint32_t npages;
	uint32_t shard;
	uint32_t magic;
	uint8_t pad[CACHE_LINE - 16];
};
#define TABLE_MAGIC 0x7461626cu

/* ---- entries --------------------------------------------------------- */

enum entry_kind {
	K_REG = 1,
	K_GROUP = 2,
	K_MEMBER = 3,
	K_MONHEAD = 4,
	K_MONITOR = 5,
	K_PREFIX = 6,
};

/* An entry block: a 32-byte header, the key (not for memberships), the
 * metadata, then, for the list kinds, struct entry_links at the next 8-byte
 * boundary.  Blocks are 16-byte aligned and packed at their class's size, so
 * one may straddle two cache lines; a lookup knows where from the ref alone
 * and asks for both lines at once (probe.h).  Immutable once published
 * except the links noted below; a metadata update publishes a new block and
 * retires the old one.  The entry's hash is
 * not stored: resize and repair recompute it (entry_hash).
 *   K_REG:    a registration.
 *   K_GROUP:  a group head for (cluster, key), no meta: links.next = first
 *             member, links.aux = number of members linked (links.tree.local:
 *             those of this node), counted after the link; if the key has a
 *             '/' before its end, also a child in the prefix tree (prefix.c):
 *             links.sib / links.prev = next / previous sibling (prev: writers
 *             only), links.tree.parent = its parent prefix node.
 *             With EF_SOLO in flags, a single-member group in one block: the
 *             header's endpoint, pid and time and the metadata are its one
 *             member's, links.next = 0, links.aux = 1 (groups.c).
 *   K_MEMBER: a membership, no key (it is the head's): links.next/prev = list
 *             links (prev: writers only), links.aux = ref of its head.
 *   K_PREFIX: a node of the shard's prefix tree (prefix.c), key = a prefix
 *             ending in '/', no meta: links.next = first child (group heads
 *             and prefix nodes one level down), links.aux = number of
 *             children linked, links.sib / prev / tree.parent as for a head. */
struct entry {
	uint32_t cluster; /* cluster ref (monitor kinds: a tag of the name) */
	uint32_t node;
	uint32_t ep_gen;
	uint16_t ep_slot;
	uint16_t key_len;
	uint8_t kind;
	uint8_t flags;
	uint16_t meta_len;
	int32_t pid;
	uint64_t time_ns;
	/* key bytes, then meta bytes, then (list kinds) struct entry_links */
};

enum { EF_SOLO = 1 }; /* entry.flags */

struct entry_links {
	uint32_t next;
	uint32_t prev;
	uint32_t aux;
	uint32_t sib; /* K_GROUP, K_PREFIX: next sibling under the parent prefix node */
	union {
		uint64_t seed; /* K_MONHEAD: hash seed of its cluster's name */
		struct {
			uint32_t parent; /* K_GROUP, K_PREFIX: ref of the parent prefix node */
			uint32_t local;  /* K_GROUP: members linked that are this node's */
		} tree;
	};
};

/* K_MONHEAD and K_MONITOR are a monitor pattern and its monitoring endpoints,
 * laid out exactly like K_GROUP and K_MEMBER (head key = the pattern: an exact
 * key, a prefix ending in '/', or empty for every key), but host-local: never
 * logged for replication, never listed as members, and their `cluster` field
 * is a tag of the cluster *name* (mon_cluster_tag), not a ref, because a
 * monitor may name a cluster this host is not connected to. */

/* ---- mailboxes ------------------------------------------------------- */

/* One per endpoint slot at off_mailboxes + slot * mailbox_bytes: this header,
 * then the ring.  Producers (any process) append under `lock`; the owner alone
 * consumes.  head is written by the consumer, tail by producers; each on its
 * own line. */
struct mailbox_header {
	pthread_mutex_t lock; /* PROCESS_SHARED | ROBUST: producers only */
	uint32_t gen;         /* endpoint generation the mailbox belongs to */
	uint32_t dropped;     /* records refused since the consumer last saw a marker */
	uint32_t batch_seq;   /* next batch number */
	uint32_t signalled;   /* 0 = consumer armed: the next producer must wake it */
	uint64_t tail;        /* bytes ever appended; release-published */
	_Alignas(CACHE_LINE) uint64_t head; /* bytes ever consumed */
	uint32_t sleeping;    /* the consumer waits on the futex `signalled` */
	uint32_t pad0;
	uint64_t wake_nonce;  /* names the consumer's wakeup socket (written by the owner) */
	/* The consumer's wakeup FIFO in /dev/shm (wake_fifo.c), written by the
	 * owner before it publishes gen; fifo_nonce 0 = none.  Its name is
	 * made of the arena's name, the slot, fifo_gen and fifo_nonce; whoever
	 * opens or removes it checks it is a FIFO of inode fifo_ino owned by
	 * fifo_uid. */
	uint64_t fifo_nonce;
	uint64_t fifo_ino;
	uint32_t fifo_uid;
	uint32_t fifo_gen;
	uint8_t pad[CACHE_LINE - 48];
	/* Statistics for tools (shmg_endpoint_stats), written by producers and
	 * zeroed by mailbox_reset for each new owner of the slot. */
	_Alignas(CACHE_LINE) uint64_t delivered; /* records appended (under the lock) */
	uint64_t dropped_total; /* records counted in `dropped` (atomic adds, with or
				 * without the lock) */
	uint8_t pad2[CACHE_LINE - 16];
};

/* A mailbox record, 8-aligned, never wrapping (MB_PAD fills the end). */
struct mailbox_record {
	uint32_t size;
	uint8_t type;   /* enum shmg_event_type, or MB_PAD */
	uint8_t reason;
	uint8_t cluster_len;
	uint8_t flags;  /* MB_HAS_PREV, MB_BATCH_END */
	uint32_t batch;
	uint16_t key_len;
	uint16_t pad;
	uint32_t meta_len, prev_len;
	uint32_t node, ep_slot, ep_gen;
	int32_t pid;
	uint64_t time_ns;
	/* cluster name, key, meta, previous meta */
};
enum { MB_PAD = 0xff, MB_HAS_PREV = 1, MB_BATCH_END = 2 };

/* ---- pages ----------------------------------------------------------- */

enum page_kind { PG_FREE = 0, PG_SLAB = 1, PG_EXTENT = 2, PG_EXTENT_TAIL = 3 };

/* One per page.  word packs owner shard + 1 (bits 0-15), kind (16-23) and size
 * class (24-31) so a claim or release is a single store.  The rest is written
 * only by the owning shard under its lock. */
struct page_desc {
	uint32_t word;
	uint32_t used;      /* slab: blocks handed out; extent head: npages */
	uint32_t free_head; /* slab: block index + 1 of the first free block */
	uint32_t bump;      /* slab: blocks never yet handed out start here */
	uint32_t next, prev; /* slab: partial list (page index + 1) */
	uint32_t pad[2];
};

/* ---- change log ------------------------------------------------------ */

/* Per-shard ring of variable-size records, appended under the shard lock.
 * A record never wraps: a PAD record fills the end.  head (bytes ever written)
 * is published with release after the record is complete, so a crash
 * mid-append leaves it invisible.  A consumer that reads a record whose seq
 * is not the one it expects has been lapped and must resync in full; `resets`
 * is bumped when a repair may have lost a record. */
struct oplog_header {
	uint64_t head;     /* bytes ever appended */
	uint64_t seq;      /* next record sequence number */
	uint64_t resets;
	uint32_t ring_bytes;
	uint32_t pad;
	uint8_t pad1[CACHE_LINE - 32];
};

/* OP_CLUSTER_CONNECT / OP_CLUSTER_DISCONNECT: markers, one in every shard's
 * log, of this node connecting to / disconnecting from the named cluster in
 * the record (empty key, no meta, ep_slot/ep_gen 0).  See cluster.c. */
enum oplog_op {
	OP_PAD = 0,
	OP_REGISTER = 1,
	OP_UNREGISTER = 2,
	OP_JOIN = 3,
	OP_LEAVE = 4,
	OP_CLUSTER_CONNECT = 5,
	OP_CLUSTER_DISCONNECT = 6,
};
enum oplog_reason {
	REASON_NONE = 0,
	REASON_NORMAL = 1,
	REASON_EXIT = 2,
	REASON_NODEDOWN = 3,
	REASON_CONFLICT = 4,
	REASON_CLUSTER_DISCONNECT = 5,
	REASON_RESYNC = 6, /* never logged: a receiving node's own removal */
};

struct oplog_record {
	uint64_t seq;
	uint32_t size;     /* whole record, 8-aligned */
	uint8_t op, reason, cluster_len, pad;
	uint64_t time_ns;
	uint32_t node, ep_slot, ep_gen;
	int32_t pid;
	uint16_t key_len;
	uint16_t pad2;
	uint32_t meta_len;
	/* cluster name, key, meta */
};

/* ---- layout assertions ---------------------------------------------- */

static_assert(sizeof(pthread_mutex_t) == 40, "robust mutex size is part of the layout");
static_assert(sizeof(struct arena_header) == 1920, "arena_header");
static_assert(offsetof(struct arena_header, agent_sleeping) == 1856, "agent wakeup line");
static_assert(offsetof(struct arena_header, nodes) == 832, "node table");
static_assert(sizeof(struct node_state) == 16, "node_state");
static_assert(offsetof(struct arena_header, reaper_lock) == 704, "reaper line");
static_assert(sizeof(struct mailbox_header) == 192, "mailbox_header");
static_assert(offsetof(struct mailbox_header, delivered) == 128, "mailbox statistics line");
static_assert(offsetof(struct mailbox_header, head) == 64, "mailbox consumer line");
static_assert(offsetof(struct mailbox_header, fifo_gen) + 4 <= 128, "FIFO record in the consumer line");
static_assert(sizeof(struct mailbox_record) == 48, "mailbox_record");
static_assert(offsetof(struct arena_header, epoch) == 192, "epoch line");
static_assert(offsetof(struct arena_header, pool_lock) == 256, "pool line");
static_assert(offsetof(struct arena_header, arena_max) == 160, "read-only part");
static_assert(offsetof(struct arena_header, pages_avail) == 304, "pool growth");
static_assert(sizeof(struct endpoint_slot) == 128, "endpoint_slot");
static_assert(offsetof(struct endpoint_slot, read_epoch) == 64, "reader line");
static_assert(sizeof(struct cluster_slot) == 128, "cluster_slot");
static_assert(offsetof(struct cluster_slot, node_marks) == 112, "cluster node marks");
static_assert(offsetof(struct endpoint_slot, terminated) == 36, "endpoint terminated");
static_assert(sizeof(struct limbo_item) == 16, "limbo_item");
static_assert(sizeof(struct cluster_counts) == 16, "cluster_counts");
static_assert(sizeof(struct shard_header) == 384, "shard_header");
static_assert(offsetof(struct shard_header, table_off) == 64, "lookup line");
static_assert(offsetof(struct shard_header, writes) == 336, "shard statistics");
static_assert(sizeof(struct ep_kind_counts) == 8, "ep_kind_counts");
static_assert(sizeof(struct bucket) == CACHE_LINE, "bucket");
static_assert(sizeof(struct table_header) == CACHE_LINE, "table_header");
static_assert(sizeof(struct entry) == 32, "entry");
static_assert(sizeof(struct entry_links) == 24, "entry_links");
static_assert(offsetof(struct entry_links, tree.parent) == 16, "entry_links tree");
static_assert(sizeof(struct page_desc) == 32, "page_desc");
static_assert(sizeof(struct oplog_header) == CACHE_LINE, "oplog_header");
static_assert(sizeof(struct oplog_record) == 48, "oplog_record");

/* Folded into the header so two builds whose layouts differ refuse to share
 * an arena even if someone forgot to bump LAYOUT_VERSION. */
#define LAYOUT_SIGNATURE                                                                   \
	((uint32_t)(sizeof(struct arena_header) * 3u + sizeof(struct endpoint_slot) * 5u +  \
		    sizeof(struct cluster_slot) * 7u + sizeof(struct shard_header) * 11u +  \
		    sizeof(struct bucket) * 13u + sizeof(struct entry) * 17u +              \
		    sizeof(struct entry_links) * 61u + offsetof(struct entry, time_ns) * 67u + \
		    sizeof(struct page_desc) * 19u + sizeof(struct oplog_record) * 23u +    \
		    offsetof(struct entry, pid) * 29u + offsetof(struct bucket, probe) * 31u + \
		    LIMBO_CAP * 37u + NCLASSES * 41u + PAGE_SIZE / CLASS_MIN_BYTES * 43u +  \
		    sizeof(struct mailbox_header) * 47u + sizeof(struct mailbox_record) * 53u + \
		    sizeof(struct cluster_counts) * 59u + sizeof(struct ep_kind_counts) * 71u + \
		    offsetof(struct shard_header, writes) * 73u +                            \
		    offsetof(struct mailbox_header, delivered) * 79u +                       \
		    sizeof(struct node_state) * MAX_NODES * 83u +                          \
		    offsetof(struct arena_header, arena_max) * 89u +                        \
		    offsetof(struct arena_header, pages_avail) * 97u +                      \
		    (offsetof(struct entry_links, sib) + K_PREFIX) * 101u +                 \
		    offsetof(struct arena_header, hidden) * 103u + EF_SOLO * 107u +       \
		    offsetof(struct arena_header, agent_mailbox) * 109u +                   \
		    offsetof(struct cluster_slot, node_marks) * 113u +                      \
		    offsetof(struct endpoint_slot, terminated) * 127u + OP_CLUSTER_DISCONNECT * 131u + \
		    INFLIGHT_SWAP * 137u + offsetof(struct shard_header, parked) * 139u +  \
		    PARKED_NODES * 149u))

#endif
