/* SPDX-License-Identifier: MIT */
/*
 * shmgroup — registry and process groups for the processes of a host, in shared memory.
 *
 * The model, in one paragraph.  A *group* is a named shared-memory arena
 * (/dev/shm/shmgroup.NAME).  A process opens it with shmg_open() and gets a
 * handle that is also an *endpoint*: an identity (node.slot.gen, printed like
 * "n1.42.7") that can register unique keys (the registry: one endpoint per key)
 * and join keys (process groups: many endpoints per key), each entry carrying an
 * opaque metadata blob.  Entries live in a *cluster*: the default cluster (NULL)
 * or a named cluster the host connected to with shmg_connect().  Every local
 * process reads the arena directly: lookups, member lists and counts are
 * lock-free, never block, never make a system call and never allocate.  Writers
 * serialise per shard on a process-shared robust mutex; a writer killed at any
 * instruction leaves a shard that the next writer repairs.  When an endpoint's
 * process dies its entries stop being returned as soon as the death is noticed
 * (lazily by any writer meeting them, by shmg_reap(), or by the host agent) and
 * are then removed.
 *
 * Return values.  Every function returning int returns >= 0 on success and a
 * negative errno on failure; shmg_strerror() gives words.  Out-parameters are
 * written only on success.  The library never prints, never exits, installs no
 * signal handler and starts no thread; it logs only through shmg_set_log_fn().
 *
 * Caveats.
 *  - A handle is not usable after fork(): every call made with it in the child
 *    returns -ECHILD (the parent's handle is unaffected).  Open a new handle in
 *    the child.
 *  - A handle may be used by one thread at a time (like a FILE under a lock).
 *    Threads that want to work concurrently open one handle each: handles of one
 *    process are independent endpoints and never contend except on shard locks.
 *  - Inside shmg_read_begin()/shmg_read_end() (and in shmg_members callbacks)
 *    do not block, sleep, or call write functions on any handle: a long read
 *    section delays reclamation of freed entries for every process of the
 *    host (nothing is freed under you, but memory is not reused until you
 *    leave), and a write may wait for read sections to end.
 *  - A process stopped (SIGSTOP, a debugger) while it writes holds its shard
 *    lock until it is continued; one stopped inside a read section holds back
 *    reclamation until then.  Readers never wait for either.  Writers wait at
 *    most the handle's busy-retry budget (shmg_set_busy_retry, 2 s by
 *    default) and then fail with -EBUSY having changed nothing.
 *  - Keys are byte strings of 1..key_max bytes without NUL.  A key ending in '/'
 *    is a prefix: accepted by members, member counts and monitors as a pattern,
 *    refused (-EINVAL) by register, unregister, join and leave.
 *  - Metadata is opaque bytes of 0..meta_max bytes, compared byte-wise.
 *  - All views are of this host's arena; across hosts everything is eventually
 *    consistent (replication is done by the host agent, shmgroupd).
 *  - An endpoint that loses a registry conflict across hosts is terminated by
 *    the host agent (see "Termination" below): its entries and monitors are
 *    gone, its mailbox ends with a SHMG_EV_CONFLICT record, and its writes,
 *    dispatches and (once its mailbox is empty) receives fail with
 *    -ECONNABORTED.  Close the handle and open a new one to start again.
 *  - Any process that can write the arena object can make its contents wrong.
 *    Reads of a damaged arena give wrong or missing results (-ENOENT, fewer
 *    members, wrong counts or ids), never a crash, a hang or a write outside
 *    the arena; a mailbox that cannot be parsed is emptied and reported as
 *    SHMG_EV_OVERFLOW; shmg_check() reports the damage.
 */
#ifndef SHMGROUP_H
#define SHMGROUP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && !defined(SHMG_NO_VISIBILITY)
#define SHMG_EXPORT __attribute__((visibility("default")))
#else
#define SHMG_EXPORT
#endif

/* Version of this API (not of the arena layout, see shmg_info.layout_version). */
#define SHMG_VERSION_MAJOR 0
#define SHMG_VERSION_MINOR 1

/* Expands to the two key arguments for a NUL-terminated string literal or variable. */
#define SHMG_KEY(s) (s), strlen(s)

/* Hard limits; the arena's own limits (shmg_config) are at most these. */
#define SHMG_KEY_MAX_LIMIT 1024u
#define SHMG_META_MAX_LIMIT 16384u
#define SHMG_CLUSTER_NAME_MAX 63u /* bytes, not counting the NUL */
#define SHMG_NAME_MAX 200u        /* group (arena) name, bytes */
#define SHMG_ID_STRLEN 40u        /* buffer size that fits any formatted id */

/* ------------------------------------------------------------------------ */
/* Types                                                                    */
/* ------------------------------------------------------------------------ */

/* An opened group: arena mapping plus this process's endpoint in it. */
typedef struct shmg shmg_t;

/* Endpoint identity.  (node, slot, gen) is unique for the life of an arena:
 * gen changes every time a slot is reused, so a stale id never names a new
 * endpoint.  gen 0 is never valid. */
typedef struct shmg_id {
	uint32_t node;
	uint32_t slot;
	uint32_t gen;
} shmg_id_t;

/* Kind of an entry. */
enum shmg_kind {
	SHMG_REGISTRY = 1, /* unique registration */
	SHMG_MEMBER = 2,   /* process-group membership */
};

/* Creation-time configuration.  Zero in a field means "the default" when
 * creating and "don't care" when attaching; a non-zero field that differs from
 * an existing arena's value makes shmg_open() fail with -EEXIST. */
struct shmg_config {
	uint32_t shards;        /* power of two, 1..256; default 8; must match across hosts */
	uint32_t max_endpoints; /* 1..65535; default 1024 */
	uint32_t key_max;       /* bytes, 1..SHMG_KEY_MAX_LIMIT; default 255 */
	uint32_t meta_max;      /* bytes, 1..SHMG_META_MAX_LIMIT; default 1024 */
	uint32_t max_clusters;  /* named clusters + default, 2..4096; default 256 */
	uint32_t node_id;       /* this host's node number, >= 1; default 1 */
	uint32_t oplog_bytes;   /* per-shard change-log ring, power of two, 64 KiB..64 MiB; default 256 KiB */
	uint32_t mode;          /* permission bits of the shared-memory object; default 0600 */
	uint64_t arena_size;    /* initial bytes, 4 MiB..64 GiB; default 128 MiB (sparse:
				 * untouched pages of the shared-memory object use no memory) */
	uint32_t flags;         /* SHMG_OPEN_* below (not stored in the arena) */
	uint32_t mailbox_bytes; /* per-endpoint event ring, power of two, 4 KiB..16 MiB,
				 * at least 2 x the largest event; default 16 KiB */
	uint32_t owner_uid;     /* with SHMG_OPEN_OWNER: a uid whose arena is accepted
				 * besides the caller's own (not stored in the arena) */
	uint32_t reserved0;     /* must be zero */
	/* Bytes the arena may grow to, arena_size..64 GiB.  A full arena grows
	 * (sparse, twice its pages at a time) up to this, and only then do
	 * writes fail with -ENOSPC.  Default (0): 8 x arena_size, at most
	 * 64 GiB, halved while arena_size cannot hold the page table of that
	 * size (32 bytes per 64 KiB page); arena_max = arena_size: no growth.
	 * Every process reserves (maps, without memory) arena_max bytes of
	 * address space per open handle. */
	uint64_t arena_max;
	uint32_t reserved[2];   /* must be zero */
};

#define SHMG_OPEN_NOCREATE 0x1u /* attach only: -ENOENT if the arena does not exist */
#define SHMG_OPEN_EXCL 0x2u     /* create only: -EEXIST if it exists */
#define SHMG_OPEN_OWNER 0x4u    /* also accept an arena whose object owner_uid owns */

/* Per-call options.  Pass NULL for the defaults. */
typedef ssize_t (*shmg_extract_fn)(const void *meta, size_t meta_len, void *out, size_t out_cap,
				   void *arg);
struct shmg_opts {
	/* Cluster to act in: NULL (or a NULL pointer to opts) is the default
	 * cluster.  A named cluster is 1..63 bytes of printable ASCII without
	 * space (0x21..0x7e); '/' is allowed. */
	const char *cluster;
	/* Overrides the handle's extract_meta for this call (lookup and members
	 * only; see shmg_set_extract_meta). */
	shmg_extract_fn extract_meta;
	void *extract_arg;
	/* members/local_members: stop after this many results (0 = no limit). */
	size_t limit;
};

/* A read result.  Pointers are valid only as documented by the call that
 * produced it (inside its callback or read section). */
struct shmg_entry {
	enum shmg_kind kind;
	shmg_id_t id;          /* owning endpoint */
	pid_t pid;             /* its OS process id */
	uint64_t time_ns;      /* registration/join time, CLOCK_REALTIME */
	const char *cluster;   /* NULL for the default cluster; else NUL-terminated */
	const char *key;       /* not NUL-terminated */
	size_t key_len;
	const void *meta;      /* after extract_meta, if any */
	size_t meta_len;
};

/* Return 0 to continue, anything else to stop (the value is returned). */
typedef int (*shmg_entry_fn)(const struct shmg_entry *entry, void *arg);

/* ------------------------------------------------------------------------ */
/* Opening, closing, identity                                               */
/* ------------------------------------------------------------------------ */

/* Creates or attaches the arena for group `name` and opens an endpoint in it.
 * name: 1..SHMG_NAME_MAX bytes of [A-Za-z0-9._-].  config: NULL for defaults.
 * The creator initialises the arena; attachers validate magic, layout version,
 * layout signature and sizes before touching anything else.  Only an object
 * owned by the caller's effective uid (or config->owner_uid with
 * SHMG_OPEN_OWNER) is used, and only while its permission bits grant no more
 * than the mode its creator configured: whoever owns the object can rewrite
 * it, and its locks, under every process attached to it.
 * Errors: -EINVAL bad name, config value or non-zero reserved field;
 *   -ENOENT SHMG_OPEN_NOCREATE and no such arena (an object whose creator
 *   died before finishing it counts as none); -EEXIST SHMG_OPEN_EXCL and it
 *   exists, or it exists with a different non-zero config field;
 *   -EPROTO not a shmgroup arena, or one of another layout version or build;
 *   -EACCES permission denied: another user's arena, or its mode was widened
 *   beyond the configured one (logged through shmg_set_log_fn); -EUSERS all
 *   endpoint slots in use; -EMFILE this process already has 1024 handles open;
 *   -EBUSY a lock of the arena stayed held for 10 s (a stopped process), or
 *   the mailboxes of the free slots it tried are held by stopped producers;
 *   -EIO a lock of the arena is damaged; -EAGAIN (only without /proc) the
 *   arena was destroyed and recreated again and again during the open;
 *   -ENOMEM, -ENOSPC (no room in /dev/shm), or another errno of
 *   shm_open/ftruncate/mmap, or of socket/bind for the wakeup socket.  The
 *   arena must also have room for the tables the config implies
 *   (max_endpoints x mailbox_bytes, shards x oplog_bytes, the descriptors
 *   of the pages of arena_max, and at least 4 pages of 64 KiB per shard)
 *   in arena_size: -EINVAL otherwise, checked before anything is created.
 *   A full arena grows up to arena_max (see struct shmg_config) while every
 *   process goes on using it; -ENOSPC from writes only at that size.
 *   A failed open leaves no object behind that it created.  An
 *   open racing shmg_destroy of the same name ends up on the arena the name
 *   names when it returns, or on the destroyed one as if it had returned
 *   just before the destroy.
 * Blocks: briefly, on a file lock held while another process creates the arena,
 *   and at most one busy-retry interval in all on the shard locks it needs to
 *   reap endpoints it finds dead (what it cannot finish is left to the reaper).
 * Thread-safety: may be called from any thread. */
SHMG_EXPORT int shmg_open(const char *name, const struct shmg_config *config, shmg_t **out);

/* Closes the endpoint: removes its registrations and memberships (reason
 * "normal"), frees its slot and unmaps the arena.  A NULL handle is a no-op.
 * After it returns, calls with the handle return -EBADF (best effort, like a
 * closed fd).  In a forked child it only releases the child's copy.
 * It locks only the shards where the endpoint has entries, so a writer
 * stopped on another shard does not delay it.
 * Errors: -EBADF not a handle or already closed; -EBUSY a shard where it has
 *   entries stayed busy past the busy-retry budget: the handle is closed all
 *   the same and its entries are hidden from readers at once, but they (and
 *   the slot) are removed later, in one batch of events with reason "normal",
 *   by the reaper or the next shmg_reap()/shmg_open() of any process.
 * Blocks: on shard locks, at most the busy-retry budget.
 * Thread-safety: no other call may be in progress on the handle. */
SHMG_EXPORT int shmg_close(shmg_t *h);

/* Removes the arena named `name` from /dev/shm.  Processes that have it open
 * keep working on their mapping until they close (shmg_destroyed() tells them);
 * new opens create a fresh arena.  Errors: -EINVAL bad name; -ENOENT none (or
 * a concurrent destroy removed it first); -EACCES; -EBUSY an open stayed
 * stopped inside its creation lock for 10 s.
 * Blocks: briefly, while another process creates or attaches to the arena. */
SHMG_EXPORT int shmg_destroy(const char *name);

/* How long this handle's writes wait for a busy shard: `attempts` waits of
 * `interval_ms` each on the shard's lock (each wakes as soon as the lock is
 * free; the interval is also how soon a waiter notices that the holder died
 * and a wakeup was lost), and the same total for room in the shard's queue
 * of retired entries, which a reader stopped inside a read section can keep
 * full.  Past it the call fails with -EBUSY and changes nothing.  The
 * default is SHMG_BUSY_RETRY_ATTEMPTS x SHMG_BUSY_RETRY_INTERVAL_MS = 2 s: a
 * shard lock is held for microseconds (a repair after a crash, milliseconds),
 * so only a stopped or hung holder outlasts it, while a caller's event loop
 * stalls for no more than that.  attempts 0 makes writes try once without
 * waiting.  shmg_open and each shmg_reaper_dispatch wait at most one
 * interval in all for the shards they need to reap dead endpoints; what a
 * stopped writer holds up is retried by the reaper's next sweep.
 * Errors: -EINVAL interval_ms 0 or above 60000, or attempts x interval_ms
 *   above one day; -EBADF, -ECHILD.
 * Thread-safety: as every call on the handle (one thread at a time). */
#define SHMG_BUSY_RETRY_ATTEMPTS 40u
#define SHMG_BUSY_RETRY_INTERVAL_MS 50u
SHMG_EXPORT int shmg_set_busy_retry(shmg_t *h, uint32_t attempts, uint32_t interval_ms);

/* 1 if the arena this handle maps was destroyed (by shmg_destroy, or its
 * object was removed from /dev/shm by hand): its name now names another arena
 * or none, and processes that open the name do not meet this handle.  0 if it
 * is still the arena of its name.  Errors: -EBADF, -ECHILD.
 * One fstat: cheap enough to ask every second (the host agent does, and
 * moves to the new arena). */
SHMG_EXPORT int shmg_destroyed(shmg_t *h);

/* This handle's endpoint identity.  Returns the zero id for an invalid handle. */
SHMG_EXPORT shmg_id_t shmg_self(const shmg_t *h);

/* Formats an id as "n<node>.<slot>.<gen>" into buf (cap >= SHMG_ID_STRLEN
 * always suffices).  Returns the length, or -ENOBUFS if it does not fit. */
SHMG_EXPORT int shmg_id_format(shmg_id_t id, char *buf, size_t cap);
/* Parses "n1.42.7" (the 'n' is optional).  Errors: -EINVAL. */
SHMG_EXPORT int shmg_id_parse(const char *s, shmg_id_t *out);
/* 1 if the two ids are equal, else 0. */
SHMG_EXPORT int shmg_id_equal(shmg_id_t a, shmg_id_t b);

/* Facts about the arena, for tools.  Takes no lock. */
struct shmg_info {
	uint32_t layout_version;
	uint32_t shards, max_endpoints, key_max, meta_max, max_clusters, node_id, oplog_bytes;
	uint64_t arena_size;      /* bytes the arena holds now (grows up to arena_max) */
	uint64_t incarnation;     /* random, changes when the arena is recreated */
	uint64_t created_ns;      /* CLOCK_REALTIME */
	uint64_t pages_total;     /* 64 KiB pages for entries and tables, now */
	uint64_t pages_used;
	uint32_t endpoints_live;
	uint32_t clusters_connected; /* named clusters, not counting the default */
	uint64_t global_epoch;
	uint64_t shard_repairs;   /* shard repairs run (a writer died, or a repair is retried) */
	uint32_t mailbox_bytes;
	uint32_t reaper_pid;      /* process hosting the reaper (agent or in-process), 0 = none */
	uint64_t arena_max;       /* bytes the arena may grow to (shmg_config.arena_max) */
	uint64_t pages_max;       /* pages_total at arena_max */
	uint64_t arena_initial;   /* bytes it was created with (shmg_config.arena_size) */
	uint32_t grows;           /* times it has grown */
	uint32_t pad0;
};
/* Errors: -EBADF, -ECHILD. */
SHMG_EXPORT int shmg_info(shmg_t *h, struct shmg_info *out);

/* ------------------------------------------------------------------------ */
/* Registry                                                                 */
/* ------------------------------------------------------------------------ */

/* Registers `key` to this endpoint with `meta`.  Unique per (cluster, key) on
 * this host (and, with replication, cluster-wide).  Registering a key this
 * endpoint already holds replaces the metadata in place (a no-op if it is
 * byte-identical).  A key held by an endpoint whose process has died is
 * reaped first and then registered.
 * Errors: -EINVAL bad key (empty, too long, contains NUL, ends in '/'), meta
 *   too long, meta NULL with meta_len > 0, bad cluster name; -ENOTCONN named
 *   cluster not connected; -EEXIST held by another live endpoint; -ENOSPC
 *   arena full at arena_max (nothing changed); -EBUSY the shard stayed locked (a stopped
 *   writer), or its retired-entry queue full (a stopped reader), past the
 *   busy-retry budget (nothing changed; try again later); -EBADF, -ECHILD
 *   handle; -EIO shard damaged beyond repair; -ECONNABORTED this endpoint
 *   was terminated (it lost a registry conflict; nothing changed).
 * Blocks: on the shard lock, at most the busy-retry budget
 *   (shmg_set_busy_retry).  Publishes: the entry, with release ordering,
 *   before returning. */
SHMG_EXPORT int shmg_register(shmg_t *h, const char *key, size_t key_len, const void *meta,
			      size_t meta_len, const struct shmg_opts *opts);

/* Removes this endpoint's registration of `key`.
 * Errors: -EINVAL bad key or cluster; -ENOTCONN; -ENOENT not registered;
 *   -EPERM registered by another endpoint (only the owner may unregister; this
 *   deliberately differs from Group, where any local process could);
 *   -EBUSY, -ECONNABORTED (as shmg_register); -EBADF, -ECHILD, -EIO. */
SHMG_EXPORT int shmg_unregister(shmg_t *h, const char *key, size_t key_len,
				const struct shmg_opts *opts);

/* Looks `key` up and copies the owner and its metadata (after extract_meta).
 * id, meta, meta_len may each be NULL when not wanted; meta_cap bytes are
 * available at meta.
 * Returns 0 when found.  Errors: -ENOENT not registered (or a prefix key);
 *   -ENOBUFS metadata larger than meta_cap (nothing written); -EINVAL bad key
 *   or cluster; -EBADF, -ECHILD; or what extract_meta returned.
 * Lock-free, no syscall, no allocation. */
SHMG_EXPORT int shmg_lookup(shmg_t *h, const char *key, size_t key_len, shmg_id_t *id,
			    void *meta, size_t meta_cap, size_t *meta_len,
			    const struct shmg_opts *opts);

/* As shmg_lookup, filling a whole struct shmg_entry: the owner's id, its OS
 * pid and the registration time as well, and the metadata (after
 * extract_meta) copied to meta (meta_cap bytes; meta may be NULL to learn
 * only meta_len).  Usable anywhere, unlike shmg_lookup_ref: entry->key is
 * the caller's key, entry->cluster opts->cluster (or NULL), entry->meta the
 * caller's meta buffer (NULL if the metadata is empty).  shmg_lookup keeps
 * its signature, and its code, for the many callers that want only the id.
 * Returns 0 when found.  Errors: -EINVAL entry NULL, or as shmg_lookup;
 *   -ENOBUFS metadata larger than meta_cap (entry not written); -ENOENT.
 * Lock-free, no syscall, no allocation. */
SHMG_EXPORT int shmg_lookup_entry(shmg_t *h, const char *key, size_t key_len,
				  struct shmg_entry *entry, void *meta, size_t meta_cap,
				  const struct shmg_opts *opts);

/* Zero-copy lookup; only inside shmg_read_begin()/shmg_read_end().  entry's
 * key and meta stay valid until shmg_read_end(); entry->cluster points at the
 * cluster table and reads another name if that cluster is disconnected and its
 * slot reused meanwhile (NULL if the slot's name is damaged).  extract_meta is
 * not applied (raw metadata).  Returns 0 found; -ENOENT; -EINVAL; -EPERM
 * outside a read section; -EBADF, -ECHILD. */
SHMG_EXPORT int shmg_lookup_ref(shmg_t *h, const char *key, size_t key_len,
				struct shmg_entry *entry, const struct shmg_opts *opts);

/* A key for the batched calls. */
struct shmg_key {
	const char *key;
	size_t len;
};

/* Looks up n keys in one call, overlapping their memory accesses (software
 * prefetch), which is several times faster per key than n shmg_lookup calls
 * when the arena does not fit in cache.  For each i: rcs[i] = 0 and ids[i] set
 * when found, rcs[i] = -ENOENT when not, -EINVAL for a bad key (the others
 * are still looked up).  ids may be NULL.  No metadata: use
 * shmg_lookup_many_ref for that.
 * Returns the number found; -EINVAL (keys or rcs NULL with n > 0, bad cluster
 * name); -EBADF, -ECHILD.  Lock-free, no syscall, no allocation. */
SHMG_EXPORT long shmg_lookup_many(shmg_t *h, const struct shmg_key *keys, size_t n,
				  shmg_id_t *ids, int *rcs, const struct shmg_opts *opts);
/* As shmg_lookup_many, filling entries[i] zero-copy (as shmg_lookup_ref);
 * only inside a read section (-EPERM otherwise). */
SHMG_EXPORT long shmg_lookup_many_ref(shmg_t *h, const struct shmg_key *keys, size_t n,
				      struct shmg_entry *entries, int *rcs,
				      const struct shmg_opts *opts);

/* Opens / closes a read section on this handle (they nest).  Nothing read
 * inside it is freed before the matching end.  Returns 0; -EBADF, -ECHILD;
 * shmg_read_end returns -EPERM when no section is open. */
SHMG_EXPORT int shmg_read_begin(shmg_t *h);
SHMG_EXPORT int shmg_read_end(shmg_t *h);

/* Number of registrations in the cluster on this host's view (all owners, or
 * only those owned by this node).  Entries of a dead endpoint count until it
 * is reaped.  Returns the count; -EINVAL, -EBADF, -ECHILD. */
SHMG_EXPORT long shmg_registry_count(shmg_t *h, const struct shmg_opts *opts);
SHMG_EXPORT long shmg_local_registry_count(shmg_t *h, const struct shmg_opts *opts);

/* ------------------------------------------------------------------------ */
/* Process groups                                                           */
/* ------------------------------------------------------------------------ */

/* Joins `key` with `meta`.  Joining again replaces the metadata in place (a
 * no-op if identical).  Joining does not monitor.
 * Errors: as shmg_register except -EEXIST. */
SHMG_EXPORT int shmg_join(shmg_t *h, const char *key, size_t key_len, const void *meta,
			  size_t meta_len, const struct shmg_opts *opts);

/* Leaves `key`.  Errors: -ENOENT not a member; otherwise as shmg_unregister. */
SHMG_EXPORT int shmg_leave(shmg_t *h, const char *key, size_t key_len,
			   const struct shmg_opts *opts);

/* Calls fn for each live member of `key` (exact), or of every key starting with
 * it when it ends in '/' (prefix), in this cluster, until fn returns non-zero
 * or opts->limit results were given.  Runs inside a read section: entry
 * pointers are valid only during the call, fn must not block or call write
 * functions (on any handle: a write may wait for read sections to end).
 * Order is unspecified.  Cost: exact, the group's size; prefix, one probe per
 * shard plus the prefixes, groups and members below it (per-shard prefix
 * trees), whatever else the arena holds.
 * Returns the number of entries given to fn, or fn's non-zero value;
 * -EINVAL bad key or cluster; -EBADF, -ECHILD.  No allocation, no syscall. */
SHMG_EXPORT long shmg_members(shmg_t *h, const char *key, size_t key_len, shmg_entry_fn fn,
			      void *arg, const struct shmg_opts *opts);
/* As shmg_members, only entries owned by this node. */
SHMG_EXPORT long shmg_local_members(shmg_t *h, const char *key, size_t key_len,
				    shmg_entry_fn fn, void *arg, const struct shmg_opts *opts);

/* Copies up to `cap` member ids of `key` (exact or prefix) into ids and returns
 * how many there are in all (which may exceed cap, like snprintf).
 * Errors: -EINVAL, -EBADF, -ECHILD. */
SHMG_EXPORT long shmg_member_ids(shmg_t *h, const char *key, size_t key_len, shmg_id_t *ids,
				 size_t cap, const struct shmg_opts *opts);

/* Number of live members of `key` (exact or prefix), all owners or this node's
 * only.  Exact: O(1), from the group's counters (a walk of the group while a
 * dead or closing endpoint's removal is in progress); prefix: as
 * shmg_members.  Lock-free, no allocation, no syscall, any thread with its own
 * handle.  Errors: -EINVAL, -EBADF, -ECHILD. */
SHMG_EXPORT long shmg_member_count(shmg_t *h, const char *key, size_t key_len,
				   const struct shmg_opts *opts);
SHMG_EXPORT long shmg_local_member_count(shmg_t *h, const char *key, size_t key_len,
					 const struct shmg_opts *opts);

/* Calls fn for every entry (registrations and memberships, every cluster) owned
 * by this node, as Group's local_entries.  With all_nodes = 1 it gives every
 * entry in this host's view (for dumps).  Same contract as shmg_members.
 * Returns the number given to fn; -EBADF, -ECHILD. */
SHMG_EXPORT long shmg_local_entries(shmg_t *h, shmg_entry_fn fn, void *arg);
SHMG_EXPORT long shmg_entries(shmg_t *h, int all_nodes, shmg_entry_fn fn, void *arg);

/* ------------------------------------------------------------------------ */
/* Metadata extraction                                                      */
/* ------------------------------------------------------------------------ */

/* Sets the function applied to metadata on reads (lookup, members,
 * local_entries and, later, events) of this handle; NULL restores the identity.
 * fn writes at most out_cap (= the arena's meta_max) bytes and returns how many,
 * or a negative errno that the read call returns.  It never changes stored
 * entries.  Returns 0; -EBADF, -ECHILD. */
SHMG_EXPORT int shmg_set_extract_meta(shmg_t *h, shmg_extract_fn fn, void *arg);

/* ------------------------------------------------------------------------ */
/* Named clusters                                                           */
/* ------------------------------------------------------------------------ */

struct shmg_connect_opts {
	/* Lease in milliseconds: only a new connect creates it; repeated connects
	 * do not refresh it.  0 = no lease. */
	uint64_t ttl_ms;
	uint32_t reserved[4]; /* must be zero */
};

/* Connects this host to the named cluster (a no-op if already connected:
 * no lease is created or refreshed then).  A new connect puts a
 * cluster_connect marker in every shard's change log, which tells the host
 * agent to announce it to its peers and fetch the cluster's entries from
 * those connected to it; a connect killed half way (or a shard that stayed
 * busy) leaves the markers owed, and the next connect, disconnect or
 * reaper pass on the host writes them.
 * With o->ttl_ms, the connection is leased: when the lease is due, the
 * reaper (the host agent, or shmg_reaper_dispatch) disconnects the cluster
 * unless this host has a monitor, a registration or a membership in it;
 * then it extends the lease by ttl_ms from then (as Group does) and
 * shmg_cluster_stats says why (lease_kept).  Activity of other hosts never
 * keeps a lease.  Without a reaper running, leases do not expire.
 * Errors: -EINVAL bad name (NULL: the default cluster is always connected and
 *   needs no connect) or non-zero reserved; -ENOSPC cluster table full;
 *   -EBUSY the slot it would take still holds entries of a cluster
 *   disconnected before, or owes that disconnect's change-log markers, on a
 *   shard that stayed busy (nothing changed);
 *   -EBADF, -ECHILD. */
SHMG_EXPORT int shmg_connect(shmg_t *h, const char *cluster, const struct shmg_connect_opts *o);

/* Disconnects this host from the cluster(s): every entry of them here is
 * removed, this host's and the ones replicated from other hosts alike
 * (reason "cluster disconnect", one event per entry), and a
 * cluster_disconnect marker goes into every shard's change log after the
 * removals (the host agent tells its peers, which remove this host's
 * entries of it).  A lease of it ends.  If the caller dies half way, the
 * next writer of each shard finishes the removal, and the next connect,
 * disconnect or reaper pass writes the markers owed.
 * Disconnecting a cluster not connected is a no-op.  All names are validated
 * before anything changes.
 * Errors: -EINVAL a bad name (nothing changed); -EBUSY a shard stayed busy
 *   past the busy-retry budget: every cluster named is disconnected (writes
 *   get -ENOTCONN, reads of it find nothing), but that shard's entries of
 *   it stay until the shard's next writer removes them; -EBADF, -ECHILD,
 *   -EIO. */
SHMG_EXPORT int shmg_disconnect(shmg_t *h, const char *cluster);
SHMG_EXPORT int shmg_disconnect_many(shmg_t *h, const char *const *clusters, size_t n);

/* 1 if connected, 0 if not.  NULL (default cluster) is always 1.
 * Errors: -EINVAL, -EBADF, -ECHILD. */
SHMG_EXPORT int shmg_connected(shmg_t *h, const char *cluster);

/* Node ids in the cluster: for NULL, the peers of this host (excluding it)
 * that the host agent, shmgroupd, is connected to now: each is listed from
 * the handshake that brings it up until it is down, has left, or the agent
 * stops; 0 without a replicating agent (an agent killed with SIGKILL leaves
 * its list behind until it is started again).  For a named cluster: this
 * node when connected, first, then the peers the agent knows to be
 * connected to the cluster too; 0 when this host is not connected to it.
 * Copies up to cap and returns the total.  Lock-free, no syscall.
 * Errors: -EINVAL, -EBADF, -ECHILD. */
SHMG_EXPORT long shmg_nodes(shmg_t *h, const char *cluster, uint32_t *nodes, size_t cap);

/* Calls fn(name, arg) for each connected named cluster.  Returns the count. */
SHMG_EXPORT long shmg_clusters(shmg_t *h, int (*fn)(const char *name, void *arg), void *arg);

/* ------------------------------------------------------------------------ */
/* Conflict resolution                                                      */
/* ------------------------------------------------------------------------ */

/* Two hosts can register one (cluster, key) while they cannot hear each
 * other, or at the same moment.  When the replication agents meet both
 * claims, every host keeps the same one: by default the later registration
 * (larger time_ns) wins, and on equal times the larger endpoint identity
 * (node, then slot, then gen).  The losing endpoint's own host terminates it
 * (reason SHMG_REASON_CONFLICT), and that removal replicates like any other.
 *
 * The agent can be given a resolver instead (shmgroupd.conf:
 * `conflict_resolver = /path/lib.so:symbol`).  It is handed the two claims;
 * the pointers are valid during the call only. */
struct shmg_claim {
	shmg_id_t id;
	int32_t pid;      /* 0 when the owner's host did not send it */
	uint64_t time_ns; /* registration time at the owner (CLOCK_REALTIME) */
	const char *cluster; /* NULL: the default cluster */
	const char *key;
	size_t key_len;
	const void *meta;
	size_t meta_len;
};

/* Returns 0 when a wins, 1 when b wins.  It is always called with a being
 * the claim of the smaller endpoint identity (node, slot, gen), so a rule
 * that favours its first argument still picks the same winner on every host.
 * It must be deterministic (a function of the two claims only: no clock, no
 * state, no randomness) and consistent over three or more claims (if it
 * prefers a to b and b to c, it prefers a to c), or hosts can end with
 * different winners.  It must be fast and must not block: the agent applies
 * replicated changes on one thread and waits for it.  It runs in the agent,
 * never in the processes that hold the claims, and must not call into
 * shmgroup. */
typedef int (*shmg_resolve_fn)(const struct shmg_claim *a, const struct shmg_claim *b);

/* ------------------------------------------------------------------------ */
/* Monitors, events, dispatch                                               */
/* ------------------------------------------------------------------------ */

/* Monitors the exact key `pattern`, every key starting with it when it ends in
 * '/', or, with pattern NULL and pattern_len 0, every key, in opts->cluster
 * (NULL = default).
 * Matching events (registered, unregistered, joined, left) are delivered to
 * this endpoint's mailbox, including those this endpoint causes itself.
 * Monitoring twice is one monitor; overlapping patterns deliver each event
 * once.  Monitoring is independent of membership and needs no connect.
 * Monitors die with their endpoint.
 * Errors: -EINVAL bad pattern (empty, too long, NUL, NULL with a length) or
 *   cluster name; -ENOSPC arena full; -EBUSY, -ECONNABORTED (as
 *   shmg_register); -EBADF, -ECHILD, -EIO. */
SHMG_EXPORT int shmg_monitor(shmg_t *h, const char *pattern, size_t pattern_len,
			     const struct shmg_opts *opts);
/* Stops monitoring that pattern; a pattern not monitored is a no-op (0).
 * Errors: as shmg_monitor, except -ENOSPC. */
SHMG_EXPORT int shmg_demonitor(shmg_t *h, const char *pattern, size_t pattern_len,
			       const struct shmg_opts *opts);

enum shmg_event_type {
	SHMG_EV_REGISTERED = 1,
	SHMG_EV_UNREGISTERED = 2,
	SHMG_EV_JOINED = 3,
	SHMG_EV_LEFT = 4,
	SHMG_EV_MESSAGE = 5,  /* a shmg_dispatch payload: meta = the message, id = sender */
	SHMG_EV_OVERFLOW = 6, /* the mailbox was full, or a producer could not get into it
			       * within 1 s (another was stopped holding it), or it was
			       * found damaged and emptied: `dropped` records, at least,
			       * were lost; resync with lookup/members.  Nothing else is
			       * dropped silently. */
	SHMG_EV_CONFLICT = 7, /* the last record of an endpoint that lost a registry
			       * conflict (see "Termination"): cluster and key of the
			       * registration it lost; id, pid, time_ns and meta are the
			       * winner's (meta as registered, extract_meta not applied);
			       * reason SHMG_REASON_CONFLICT */
};

enum shmg_reason {
	SHMG_REASON_NONE = 0,       /* registered, joined, message */
	SHMG_REASON_NORMAL = 1,     /* unregister, leave or close */
	SHMG_REASON_EXIT = 2,       /* the endpoint's process died */
	SHMG_REASON_NODEDOWN = 3,   /* its host went down (replication) */
	SHMG_REASON_CONFLICT = 4,   /* lost a registry conflict (replication) */
	SHMG_REASON_CLUSTER_DISCONNECT = 5,
	SHMG_REASON_RESYNC = 6,     /* gone from its host's entries while this host
				     * lagged behind (replication) */
};

/* A received event.  Pointers stay valid until the next shmg_receive on the
 * handle (or shmg_close). */
struct shmg_event {
	enum shmg_event_type type;
	enum shmg_reason reason;
	shmg_id_t id;                /* whose entry (for messages: the sender) */
	pid_t pid;
	const char *cluster;         /* NULL = default cluster; else NUL-terminated */
	const char *key;             /* not NUL-terminated */
	size_t key_len;
	const void *meta;            /* after this handle's extract_meta */
	size_t meta_len;
	const void *previous_meta;   /* NULL when the entry is new (has_previous 0) */
	size_t previous_meta_len;
	int has_previous;
	uint64_t time_ns;            /* when the change was applied, CLOCK_REALTIME */
	uint64_t dropped;            /* SHMG_EV_OVERFLOW only */
	uint32_t batch;              /* events of one batch share this number... */
	int batch_end;               /* ...and the last one has batch_end = 1 */
	const char *group;           /* the group (arena) name the handle was opened
				      * with, NUL-terminated, for a process that
				      * watches several; valid until shmg_close */
};

/* Receives up to max events from this endpoint's mailbox, oldest first.
 * timeout_ms: 0 polls, -1 waits indefinitely, > 0 waits at most that long.
 * A single operation is one batch of one event; the death or close of an
 * endpoint is one batch holding all its unregistered then left events.  Per
 * key, events arrive in the order the changes were applied.
 * Returns the number of events (0 on timeout); -EINVAL (events NULL with
 * max > 0); -EBADF, -ECHILD; -EINTR when a signal interrupted the wait;
 * -ENOMEM; -ECONNABORTED the endpoint was terminated and every record,
 * the final SHMG_EV_CONFLICT among them, has been received.  Blocks as
 * timeout_ms says.  The library allocates the buffer the events point into
 * on the first call. */
SHMG_EXPORT int shmg_receive(shmg_t *h, struct shmg_event *events, size_t max, int timeout_ms);

/* A descriptor that poll/epoll report readable while the mailbox holds events
 * (level-triggered, approximately: after a wakeup, call shmg_receive with
 * timeout 0 until it returns 0).  It may also be readable with no event
 * waiting: a spare wakeup after a producer crashed, or a byte or datagram
 * from another local process (it is an epoll set of a FIFO in /dev/shm,
 * "shmgroup.<name>@wake.*", with the arena's mode, and a unix socket with an
 * abstract name, listed in /proc/net/unix); shmg_receive then returns 0 and
 * clears it.  Events are never lost to either.  The FIFO is removed when the
 * endpoint is closed or reaped, or the arena destroyed.  Owned by the
 * handle; do not close or read it.  Returns the fd; -EBADF, -ECHILD. */
SHMG_EXPORT int shmg_fd(shmg_t *h);

/* Sends msg to the endpoint registered at the exact key and to every member of
 * it: those on this host directly, into their mailboxes, and those on other
 * hosts (entries of other nodes in this host's view, see shmg_nodes) through
 * the host agent shmgroupd, which sends it once to each host holding at least
 * one of them, reliably and in this host's order, where its agent delivers it
 * as shmg_dispatch_local would, the event naming this endpoint as the sender
 * (its pid 0 there).  An endpoint both registered and joined gets it once.
 * Producers never block on a full mailbox, and wait at most 1 s for a
 * receiving mailbox another process holds (stopped, say): the receiver gets an
 * overflow marker instead.
 * Returns the number of local endpoints it was delivered to plus the number of
 * other hosts it was handed to the agent for (0 if none).  When other hosts
 * hold entries of the key and the hand-over fails, the local deliveries have
 * been made all the same (calling again delivers them again) and it returns
 * -ENOTCONN (no agent runs on this host), -EAGAIN (the agent's queue, its
 * mailbox, is full: the agent is behind) or -ENOMEM; nothing went to other
 * hosts.  Other errors change nothing: -E2BIG msg longer than the arena's
 * meta_max; -EINVAL bad key (prefix keys too) or cluster; -EBADF, -ECHILD;
 * -ECONNABORTED this endpoint was terminated (nothing sent).
 * A message the agent took but cannot send to a host (its connection is
 * down, or 256 messages to it are unacknowledged) is counted in the agent's
 * statistics (messages_refused), not reported here.  Lock-free apart from each receiving mailbox's short
 * producer lock. */
SHMG_EXPORT long shmg_dispatch(shmg_t *h, const char *key, size_t key_len, const void *msg,
			       size_t msg_len, const struct shmg_opts *opts);
/* As shmg_dispatch, only to endpoints on this host (no network traffic, no
 * hand-over): returns the number of local endpoints, or an error as
 * shmg_dispatch's that change nothing. */
SHMG_EXPORT long shmg_dispatch_local(shmg_t *h, const char *key, size_t key_len,
				     const void *msg, size_t msg_len, const struct shmg_opts *opts);

/* ------------------------------------------------------------------------ */
/* Termination                                                              */
/* ------------------------------------------------------------------------ */

/* A registry key held on two hosts (registered on both during a partition,
 * or at the same moment) is resolved by the agents with the conflict rule,
 * the same on every host (DESIGN.md section 2, docs/PROTOCOL.md section
 * 15).  The losing endpoint is terminated by its own host's agent, the C
 * analogue of Group killing the loser:
 *   - its writes are refused from then on (-ECONNABORTED from register,
 *     unregister, join, leave, monitor, demonitor, dispatch and
 *     dispatch_local; nothing changed);
 *   - all of its entries and monitors are removed in one batch, reason
 *     SHMG_REASON_CONFLICT, as for a death (it gets none of these events);
 *   - a final SHMG_EV_CONFLICT record goes to its mailbox (cluster and key
 *     it lost, the winner's id, pid, time and metadata), after which
 *     shmg_receive returns -ECONNABORTED;
 *   - the agent may also send its process a signal (shmgroupd's
 *     conflict_signal, through a pidfd: never a recycled pid).
 * Reads (lookup, members, counts, stats) keep working, and shmg_close
 * releases the endpoint as usual.  There is no way back: open a new handle. */

/* ------------------------------------------------------------------------ */
/* The reaper                                                               */
/* ------------------------------------------------------------------------ */

/* One process per host is the reaper: it watches every endpoint's process with
 * a pidfd and removes a dead endpoint's entries (reason exit) within
 * milliseconds.  The host agent shmgroupd is such a process; an application
 * may host it instead (or as a fallback) with these calls — the library starts
 * no thread, the application drives it from its own loop.
 *
 * shmg_reaper_enable joins the election (a robust mutex in the arena): returns
 * 1 if this handle is now the reaper, 0 if another live process is.  When the
 * reaper dies, the next shmg_reaper_dispatch of another candidate takes over.
 * Call shmg_reaper_dispatch when shmg_reaper_fd is readable and at least every
 * `interval_ms` it returns (it rescans the endpoint table and retries the
 * election).  All three, and shmg_close of the handle, must be called from
 * the same thread.
 * The reaper also enforces the TTL leases of named clusters (shmg_connect):
 * each dispatch expires or extends those due.
 * shmg_reaper_dispatch returns the milliseconds until it wants to run again
 * (never later than the next lease due);
 * -EBADF, -ECHILD, -EIO.  shmg_reaper_fd returns an epoll descriptor owned by
 * the handle; -EPERM if the reaper was not enabled on it. */
SHMG_EXPORT int shmg_reaper_enable(shmg_t *h);
SHMG_EXPORT int shmg_reaper_fd(shmg_t *h);
SHMG_EXPORT int shmg_reaper_dispatch(shmg_t *h);
/* Stops being a candidate (and the reaper, if it was).  Returns 0. */
SHMG_EXPORT int shmg_reaper_disable(shmg_t *h);

/* ------------------------------------------------------------------------ */
/* Liveness                                                                 */
/* ------------------------------------------------------------------------ */

/* Finds endpoints whose process has died and removes their entries (reason
 * "exit", or "normal" for an endpoint whose shmg_close returned -EBUSY).
 * Any process may call it; the host agent calls it on every death.
 * It also finishes the removal of a live endpoint that the host agent
 * terminated (it lost a registry conflict, reason "conflict") when the
 * agent died before finishing; such an endpoint is not counted.
 * Returns the number of endpoints reaped; -EBUSY some could not be finished
 *   because a shard stayed busy (the others were reaped; call again later);
 *   -EBADF, -ECHILD, -EIO.
 * Blocks: on shard locks, at most the busy-retry budget in all. */
SHMG_EXPORT int shmg_reap(shmg_t *h);

/* ------------------------------------------------------------------------ */
/* Inspection                                                               */
/* ------------------------------------------------------------------------ */

/* Walks the whole arena and checks it: headers, every shard's index, group
 * lists, allocator pages (every block is free, live or retired exactly once:
 * no leak, no double use), counters and endpoint slots.  Takes each shard's
 * lock in turn (so it first repairs a shard whose writer died, and finishes
 * removing the entries of a disconnected cluster there).  A shard whose lock
 * stays held past the busy-retry budget (a stopped writer) is not checked: it
 * is reported as "shard N: busy ..." and counted as a problem; the budget is
 * spent once per call, later busy shards are not waited for.
 * For each problem it calls report(msg, arg) if report is non-NULL.
 * Returns the number of problems (0 = clean); -EBADF, -ECHILD. */
SHMG_EXPORT long shmg_check(shmg_t *h, void (*report)(const char *msg, void *arg), void *arg);

/* Counters for tools (shmgroup-top), read from the arena with plain loads:
 * no lock, no system call, nothing written.  Writers keep them per shard and
 * per endpoint, under locks they hold anyway; lookups and member walks write
 * none, so reading keys costs nothing for them.  Rates (writes/s, events/s)
 * are the difference of two samples.  A figure may be a write behind another
 * of the same call.  Counters start at 0 when the arena is created (shards)
 * or the endpoint opened (endpoints) and wrap at 2^64.
 *
 * Each call takes the size of the caller's struct: pass sizeof(*out).  It
 * fills at most that many bytes and zeroes any it has no field for, so a
 * program built against an older or newer header keeps working; it returns
 * the number of bytes it filled with figures (fields wholly below that
 * number are valid).  Damaged counters give wrong figures, clamped to what
 * they can describe, never a crash.
 * Errors: -EINVAL out NULL with size > 0; -ERANGE shard, slot or cluster
 *   slot beyond the arena's (iterate from 0 until -ERANGE); -ENOENT that
 *   endpoint or cluster slot is not in use; -EBADF, -ECHILD; and for
 *   shmg_endpoint_stats -EAGAIN: the slot was reused four times while it
 *   was read. */
struct shmg_shard_stats {
	uint32_t shard;
	uint32_t reserved0;
	uint64_t registered;    /* registrations in the shard, every cluster and node */
	uint64_t members;       /* memberships */
	uint64_t monitors;      /* monitors (one per endpoint and pattern) */
	uint64_t index_used;    /* slots of its index in use: the above, group heads and
				 * prefix nodes (one per '/'-prefix with groups below it) */
	uint64_t index_slots;   /* slots of its current index table */
	uint64_t writes;        /* registrations and memberships added, changed or
				 * removed (each a change-log record) */
	uint64_t lock_waits;    /* writer lockings that found the lock held and waited */
	uint64_t repairs;       /* repairs run (a writer died holding the lock) */
	uint64_t log_records;   /* change-log records appended */
	uint64_t log_bytes;     /* bytes of records the change-log ring holds (nothing
				 * consumes it yet, so it fills up to log_capacity) */
	uint64_t log_capacity;  /* bytes of the change-log ring */
	uint64_t log_resets;    /* times a repair may have lost a change-log record */
	uint64_t retired;       /* removed entries waiting for readers to move on */
	uint64_t parked_nodes;  /* prefix nodes with no group below them, kept for the
				 * next group under their prefix (at most 6; counted
				 * in index_used) */
};
SHMG_EXPORT int shmg_shard_stats(shmg_t *h, uint32_t shard, struct shmg_shard_stats *out,
				 size_t size);

enum shmg_endpoint_state {
	SHMG_ENDPOINT_OPENING = 1, /* being opened */
	SHMG_ENDPOINT_LIVE = 2,
	SHMG_ENDPOINT_CLOSING = 3, /* closed or dead, its entries being removed */
};
struct shmg_endpoint_stats {
	shmg_id_t id;
	pid_t pid;                 /* the process that opened it */
	uint32_t state;            /* enum shmg_endpoint_state; 0 if unknown */
	uint64_t opened_ns;        /* CLOCK_REALTIME */
	uint64_t registrations;    /* its registrations, every cluster */
	uint64_t memberships;      /* its memberships */
	uint64_t monitors;         /* patterns it monitors */
	uint64_t mailbox_used;     /* bytes of events waiting in its mailbox */
	uint64_t mailbox_capacity; /* bytes its mailbox can hold */
	uint64_t events_delivered; /* events put into its mailbox since it opened */
	uint64_t events_dropped;   /* events lost to a full mailbox (or one held by a
				    * stopped producer, or damaged) since it opened */
};
/* slot: 0 .. max_endpoints - 1. */
SHMG_EXPORT int shmg_endpoint_stats(shmg_t *h, uint32_t slot, struct shmg_endpoint_stats *out,
				    size_t size);

struct shmg_cluster_stats {
	char name[SHMG_CLUSTER_NAME_MAX + 1]; /* "" for the default cluster */
	uint32_t slot;
	uint64_t connected_ns;     /* CLOCK_REALTIME; 0 for the default cluster */
	uint64_t ttl_ms;           /* its lease (shmg_connect), 0 = none */
	int64_t lease_left_ms;     /* with a lease: until it expires or is next
				    * checked (< 0: due, not yet acted on by the
				    * reaper: no reaper runs, or it is late) */
	uint64_t registered;       /* its registrations in this host's view */
	uint64_t members;          /* its memberships */
	uint32_t lease_kept;       /* SHMG_LEASE_KEPT_* bits: why the lease was last
				    * extended when it came due, instead of
				    * disconnecting (0: never) */
	uint32_t nodes;            /* nodes connected to it: this one and the peers
				    * the agent marked (shmg_nodes) */
};
/* A due lease is extended by its ttl, not expired, while this host has, in
 * the cluster: */
enum shmg_lease_kept {
	SHMG_LEASE_KEPT_MONITORS = 1,      /* a monitor */
	SHMG_LEASE_KEPT_REGISTRATIONS = 2, /* a registration of a local endpoint */
	SHMG_LEASE_KEPT_MEMBERSHIPS = 4,   /* a membership of a local endpoint */
};
/* slot: 0 (the default cluster, always in use) .. max_clusters - 1; the
 * slots of connected named clusters give figures, the others -ENOENT. */
SHMG_EXPORT int shmg_cluster_stats(shmg_t *h, uint32_t slot, struct shmg_cluster_stats *out,
				   size_t size);

/* ------------------------------------------------------------------------ */
/* Logging, errors                                                          */
/* ------------------------------------------------------------------------ */

enum shmg_log_level {
	SHMG_LOG_OFF = 0,
	SHMG_LOG_INFO = 1,    /* repairs, reaps, connects */
	SHMG_LOG_VERBOSE = 2, /* every write and every internal step worth seeing */
};

/* Process-wide log sink; NULL (the default) means silent. fn may be called from
 * any thread that calls into the library. */
typedef void (*shmg_log_fn)(enum shmg_log_level level, const char *msg, void *arg);
SHMG_EXPORT void shmg_set_log_fn(shmg_log_fn fn, void *arg);

/* Sets the arena's log level, shared by every process and the agent.  Returns
 * the previous level; -EINVAL bad level; -EBADF, -ECHILD.  level < 0 only
 * returns the current one. */
SHMG_EXPORT int shmg_log_level(shmg_t *h, int level);

/* Words for enum values, for logs and tools: "registered", "exit", "verbose"
 * ...; "unknown" for a value out of range.  Never NULL, static strings.
 * shmg_log_level_parse is the inverse for log levels ("off", "info",
 * "verbose"): the level, or -EINVAL. */
SHMG_EXPORT const char *shmg_event_type_name(int type);
SHMG_EXPORT const char *shmg_reason_name(int reason);
SHMG_EXPORT const char *shmg_log_level_name(int level);
SHMG_EXPORT int shmg_log_level_parse(const char *word);

/* Words for a (negative or positive) errno as this library uses it.  Never NULL. */
SHMG_EXPORT const char *shmg_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif /* SHMGROUP_H */
