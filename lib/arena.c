/* SPDX-License-Identifier: MIT */
/*
 * The arena: one POSIX shared-memory object per group, /dev/shm/shmgroup.NAME.
 *
 * Creation and attach are serialised by flock(LOCK_EX) on the object itself:
 * the creator sizes and initialises it while holding the lock and publishes
 * ARENA_MAGIC last; an attacher takes the same lock and validates magic,
 * layout version, layout signature, hash id, size and geometry before using
 * anything.  If the creator dies mid-way the magic is 0 or ARENA_MAGIC_INIT
 * and, the lock being released by the kernel, the next creating opener
 * initialises it again (nobody can have attached to it; an attach-only open
 * sees no arena there).
 *
 * Who made it.  Only an object of the caller's effective uid (or a configured
 * owner) is used, and only while its mode grants no more than its creator
 * configured: its owner can rewrite it, and its locks, under everyone.
 *
 * Destroy unlinks under the same lock, and only the object it locked, so an
 * opener holding the lock sees a link count of 0 exactly when its object was
 * destroyed before it got there, and opens the name again.  The endpoint
 * liveness lock lives on a second description of the very object mapped
 * (reopen_same), never on whatever the name names by then.
 *
 * Everything in the arena is addressed by offsets from the base; each process
 * maps it wherever mmap chooses.
 *
 * Growth.  The object is created at arena_size and grown (arena_grow_to, by
 * the page pool in alloc.c) up to arena_max; every process maps arena_max
 * bytes at open, so growth moves no mapping.  A handle touches the object
 * only below the size it has seen it have (h->size) and re-reads that with
 * fstat when an offset beyond it turns up (arena_span_grown): the end of a
 * reservation past the object's end is never touched, whatever a scribbled
 * offset says.  docs/ARCHITECTURE.md ("Growth") has the whole argument.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define DEF_SHARDS 8u
#define DEF_ENDPOINTS 1024u
#define DEF_KEY_MAX 255u
#define DEF_META_MAX 1024u
#define DEF_CLUSTERS 256u
#define DEF_OPLOG (256u * 1024u)
#define DEF_ARENA (128ull << 20)
#define DEF_MAILBOX (16u * 1024u)
#define MIN_ARENA (4ull << 20)
#define MAX_ARENA (64ull << 30)
#define DEF_GROWTH 8u /* arena_max 0: this many times arena_size (see header_build) */
#define INITIAL_TABLE_LOG2 9u
/* Opens of a name whose object keeps being destroyed under them. */
#define OPEN_ATTEMPTS 16u
#define OPEN_RETRY 1

uint32_t lock_wait_limit_ms = 10000;

uint64_t now_realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t now_monotonic_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int arena_name_valid(const char *name)
{
	if (!name)
		return 0;
	size_t n = strnlen(name, SHMG_NAME_MAX + 1);
	if (n == 0 || n > SHMG_NAME_MAX || name[0] == '.')
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

static void shm_path(const char *name, char *buf, size_t cap)
{
	snprintf(buf, cap, "/shmgroup.%s", name);
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

static int is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

uint32_t mailbox_record_max(uint32_t key_max, uint32_t meta_max)
{
	return (uint32_t)((sizeof(struct mailbox_record) + SHMG_CLUSTER_NAME_MAX + key_max +
			   2ull * meta_max + 7) & ~7ull);
}

/* Fills defaults and checks ranges.  Returns 0 or -EINVAL. */
static int config_normalise(const struct shmg_config *in, struct shmg_config *out)
{
	struct shmg_config c = {0};
	if (in)
		c = *in;
	for (unsigned i = 0; i < sizeof(c.reserved) / sizeof(c.reserved[0]); i++)
		if (c.reserved[i])
			return -EINVAL;
	if (c.reserved0)
		return -EINVAL;
	if (c.flags & ~(SHMG_OPEN_NOCREATE | SHMG_OPEN_EXCL | SHMG_OPEN_OWNER) ||
	    (c.flags & SHMG_OPEN_NOCREATE && c.flags & SHMG_OPEN_EXCL) ||
	    (c.owner_uid && !(c.flags & SHMG_OPEN_OWNER)))
		return -EINVAL;
	if (!c.shards)
		c.shards = DEF_SHARDS;
	if (!c.max_endpoints)
		c.max_endpoints = DEF_ENDPOINTS;
	if (!c.key_max)
		c.key_max = DEF_KEY_MAX;
	if (!c.meta_max)
		c.meta_max = DEF_META_MAX;
	if (!c.max_clusters)
		c.max_clusters = DEF_CLUSTERS;
	if (!c.node_id)
		c.node_id = 1;
	if (!c.oplog_bytes)
		c.oplog_bytes = DEF_OPLOG;
	if (!c.mode)
		c.mode = 0600;
	if (!c.arena_size)
		c.arena_size = DEF_ARENA;
	if (!c.mailbox_bytes)
		c.mailbox_bytes = DEF_MAILBOX;
	if (!is_pow2(c.shards) || c.shards > MAX_SHARDS || c.max_endpoints > 65535 ||
	    c.key_max > SHMG_KEY_MAX_LIMIT || c.meta_max > SHMG_META_MAX_LIMIT ||
	    c.max_clusters < 2 || c.max_clusters > 4096 || !is_pow2(c.oplog_bytes) ||
	    c.oplog_bytes < 65536 || c.oplog_bytes > (64u << 20) || c.mode > 0777 ||
	    c.arena_size < MIN_ARENA || c.arena_size > MAX_ARENA ||
	    (c.arena_max && (c.arena_max < c.arena_size || c.arena_max > MAX_ARENA)) ||
	    !is_pow2(c.mailbox_bytes) ||
	    c.mailbox_bytes < 4096 || c.mailbox_bytes > (16u << 20) ||
	    c.mailbox_bytes < 2 * mailbox_record_max(c.key_max, c.meta_max) + sizeof(struct mailbox_header))
		return -EINVAL;
	*out = c;
	return 0;
}

/* Computes region offsets into hdr from its config fields, the pages for an
 * arena of arena_max.  -EINVAL unless everything but the pages, the page
 * descriptors for arena_max included, and a first few pages per shard fit
 * in arena_size: only pages are ever added by growth. */
static int geometry(struct arena_header *g)
{
	uint64_t off = 4096;
	g->off_endpoints = off;
	off = align_up(off + (uint64_t)g->max_endpoints * sizeof(struct endpoint_slot), CACHE_LINE);
	g->off_live_gen = off;
	off = align_up(off + (uint64_t)g->max_endpoints * 4, CACHE_LINE);
	g->off_clusters = off;
	off = align_up(off + (uint64_t)g->max_clusters * sizeof(struct cluster_slot), 4096);
	g->off_shards = off;
	g->shard_stride = (uint32_t)align_up(sizeof(struct shard_header) +
						     (uint64_t)g->max_clusters * sizeof(struct cluster_counts) +
						     (uint64_t)g->max_endpoints * 4 +
						     LIMBO_CAP * sizeof(struct limbo_item) +
						     (uint64_t)g->max_endpoints * sizeof(struct ep_kind_counts) +
						     MAX_NODES * sizeof(uint64_t),
					     4096);
	off += (uint64_t)g->shards * g->shard_stride;
	g->off_oplogs = off;
	off += (uint64_t)g->shards * g->oplog_bytes;
	g->off_mailboxes = off;
	off += (uint64_t)g->max_endpoints * g->mailbox_bytes;
	g->off_pagedesc = off;
	if (off >= g->arena_size || g->arena_max < g->arena_size)
		return -EINVAL;
	uint64_t n = (g->arena_max - off) / (PAGE_SIZE + sizeof(struct page_desc));
	while (n && align_up(off + n * sizeof(struct page_desc), PAGE_SIZE) + n * PAGE_SIZE >
			    g->arena_max)
		n--;
	g->off_pages = align_up(off + n * sizeof(struct page_desc), PAGE_SIZE);
	g->npages = (uint32_t)n;
	if (n > UINT32_MAX / 2 || g->off_pages >= g->arena_size)
		return -EINVAL;
	/* Room for every shard's first table plus a few slab pages each. */
	uint64_t initial = (g->arena_size - g->off_pages) / PAGE_SIZE;
	if ((initial < n ? initial : n) < (uint64_t)g->shards * 4)
		return -EINVAL;
	return 0;
}

/* Every robust lock in the arena is taken through here.  When a holder dies
 * the kernel marks the mutex owner-dead and wakes one waiter; if that waiter
 * is killed too before it takes the lock, the wakeup is lost and the other
 * waiters would sleep forever.  Timed waits of interval_ns that retry notice
 * the owner-dead mark on their next attempt.  A holder that is stopped
 * (SIGSTOP, a debugger) never lets go, so callers that must not wait for it
 * give a deadline (CLOCK_MONOTONIC; one already past tries once): ETIMEDOUT
 * then. */
int robust_lock_until(pthread_mutex_t *m, uint64_t deadline_ns, uint64_t interval_ns)
{
	for (;;) {
		uint64_t now = now_monotonic_ns();
		uint64_t until = deadline_ns <= now || deadline_ns - now <= interval_ns
					 ? deadline_ns
					 : now + interval_ns;
		/* Each slice is a timedlock on the realtime clock, which every
		 * tool (ThreadSanitizer among them) knows; the deadline itself is
		 * monotonic, so a clock step can stretch or cut one slice only. */
		uint64_t at = now_realtime_ns() + (until > now ? until - now : 0);
		struct timespec ts = {(time_t)(at / 1000000000u), (long)(at % 1000000000u)};
		int rc = pthread_mutex_timedlock(m, &ts);
		if (rc != ETIMEDOUT || until == deadline_ns)
			return rc;
	}
}

/* robust_lock_until for the endpoint, cluster and pool locks, which every open,
 * connect and allocation takes.  It gives up after lock_wait_limit_ms: a
 * stopped holder, or a lock word naming a thread that does not exist (the
 * kernel marks only a dying robust-list owner owner-dead), must not hang
 * every caller.  Returns 0, EOWNERDEAD (the caller repairs), EBUSY, or EIO
 * when the mutex is no usable robust mutex any more (a scribbled word). */
int robust_lock_limited(const shmg_t *h, pthread_mutex_t *m, const char *what)
{
	uint64_t deadline = now_monotonic_ns() + (uint64_t)lock_wait_limit_ms * 1000000u;
	int rc = robust_lock_until(m, deadline, 50 * 1000000ull);
	if (rc == 0 || rc == EOWNERDEAD)
		return rc;
	sg_log(h, SHMG_LOG_INFO, "%s lock %s", what,
	       rc == ETIMEDOUT ? "held too long: its holder is stopped or gone"
			       : "damaged: not a usable robust mutex");
	return rc == ETIMEDOUT ? EBUSY : EIO;
}

int mutex_init_robust(pthread_mutex_t *m)
{
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	int rc = pthread_mutex_init(m, &a);
	pthread_mutexattr_destroy(&a);
	return -rc;
}

static void geometry_copy(struct arena_geometry *geo, const struct arena_header *g)
{
	*geo = (struct arena_geometry){
		.arena_size = g->arena_size,
		.arena_max = g->arena_max,
		.incarnation = g->incarnation,
		.created_ns = g->created_ns,
		.layout_version = g->layout_version,
		.shards = g->shards,
		.shard_bits = g->shard_bits,
		.max_endpoints = g->max_endpoints,
		.key_max = g->key_max,
		.meta_max = g->meta_max,
		.max_clusters = g->max_clusters,
		.node_id = g->node_id,
		.oplog_bytes = g->oplog_bytes,
		.mode = g->mode,
		.mailbox_bytes = g->mailbox_bytes,
		.shard_stride = g->shard_stride,
		.npages = g->npages,
		.off_endpoints = g->off_endpoints,
		.off_live_gen = g->off_live_gen,
		.off_clusters = g->off_clusters,
		.off_shards = g->off_shards,
		.off_oplogs = g->off_oplogs,
		.off_mailboxes = g->off_mailboxes,
		.off_pagedesc = g->off_pagedesc,
		.off_pages = g->off_pages,
	};
}

/* The read-only part of a new arena's header, built privately: the process
 * addresses the arena with this copy whatever later lands in the shared one. */
static int header_build(struct arena_header *g, const struct shmg_config *c)
{
	*g = (struct arena_header){0};
	g->layout_version = LAYOUT_VERSION;
	g->layout_signature = LAYOUT_SIGNATURE;
	g->arena_size = c->arena_size;
	g->shards = c->shards;
	g->shard_bits = (uint32_t)__builtin_ctz(c->shards);
	g->max_endpoints = c->max_endpoints;
	g->key_max = c->key_max;
	g->meta_max = c->meta_max;
	g->max_clusters = c->max_clusters;
	g->node_id = c->node_id;
	g->oplog_bytes = c->oplog_bytes;
	g->mailbox_bytes = c->mailbox_bytes;
	g->mode = c->mode;
	g->hash_id = HASH_ID;
	g->created_ns = now_realtime_ns();
	if (getrandom(&g->incarnation, sizeof(g->incarnation), 0) != sizeof(g->incarnation))
		g->incarnation = g->created_ns ^ (uint64_t)getpid() << 32;
	if (c->arena_max) {
		g->arena_max = c->arena_max;
		return geometry(g);
	}
	/* The default maximum: DEF_GROWTH x arena_size, capped at MAX_ARENA,
	 * halved while arena_size cannot hold its page descriptors (down to
	 * arena_size itself: an arena that does not grow). */
	uint64_t max = c->arena_size > MAX_ARENA / DEF_GROWTH ? MAX_ARENA : c->arena_size * DEF_GROWTH;
	for (;; max = max / 2 > c->arena_size ? max / 2 : c->arena_size) {
		g->arena_max = max;
		int rc = geometry(g);
		if (rc == 0 || max == c->arena_size)
			return rc;
	}
}

static int arena_init(shmg_t *h, const struct arena_header *g)
{
	struct arena_header *hdr = h->hdr;
	memset(h->base, 0, 4096);
	store_relaxed(&hdr->magic, ARENA_MAGIC_INIT);
	/* Everything up to the first shared line is the read-only part. */
	memcpy((uint8_t *)hdr + sizeof(hdr->magic), (const uint8_t *)g + sizeof(g->magic),
	       offsetof(struct arena_header, epoch) - sizeof(g->magic));
	geometry_copy(&h->geo, g);
	hdr->epoch = 1;
	hdr->log_level = SHMG_LOG_INFO;
	hdr->pages_avail = arena_pages_in(&h->geo, h->size);
	int rc;
	/* The object was just sized by ftruncate: everything past the header
	 * page is already zero, which is the initial state of every table. */
	if ((rc = mutex_init_robust(&hdr->pool_lock)) || (rc = mutex_init_robust(&hdr->endpoint_lock)) ||
	    (rc = mutex_init_robust(&hdr->cluster_lock)) || (rc = mutex_init_robust(&hdr->reaper_lock)))
		return rc;
	struct cluster_slot *def = cluster_at(h, 0);
	def->state = CL_CONNECTED;
	def->gen = 1;
	def->name_hash = DEFAULT_CLUSTER_SEED;
	for (uint32_t s = 0; s < g->shards; s++) {
		if ((rc = mutex_init_robust(&shard_at(h, s)->lock)))
			return rc;
		struct oplog_header *ol = oplog_at(h, s);
		ol->ring_bytes = g->oplog_bytes - (uint32_t)sizeof(*ol);
		if ((rc = index_create(h, s, INITIAL_TABLE_LOG2)))
			return rc;
	}
	TEST_POINT("open:init");
	store_release(&hdr->magic, ARENA_MAGIC); /* publish last */
	return 0;
}

/* -EPROTO unless the header is a valid arena of this build whose object,
 * file_size bytes, lies between its initial and its maximum size. */
static int arena_validate(const struct arena_header *hdr, uint64_t file_size)
{
	if (load_acquire(&hdr->magic) != ARENA_MAGIC || hdr->layout_version != LAYOUT_VERSION ||
	    hdr->layout_signature != LAYOUT_SIGNATURE || hdr->hash_id != HASH_ID ||
	    hdr->arena_size > file_size || file_size > hdr->arena_max || hdr->arena_max > MAX_ARENA)
		return -EPROTO;
	struct arena_header g = {0};
	g.arena_size = hdr->arena_size;
	g.arena_max = hdr->arena_max;
	g.shards = hdr->shards;
	g.max_endpoints = hdr->max_endpoints;
	g.max_clusters = hdr->max_clusters;
	g.oplog_bytes = hdr->oplog_bytes;
	g.mailbox_bytes = hdr->mailbox_bytes;
	if (!is_pow2(g.mailbox_bytes) || g.mailbox_bytes < 4096 ||
	    g.mailbox_bytes < 2 * mailbox_record_max(hdr->key_max, hdr->meta_max) + sizeof(struct mailbox_header) ||
	!is_pow2(g.shards) || g.shards > MAX_SHARDS || hdr->shard_bits != (uint32_t)__builtin_ctz(g.shards) ||
	    hdr->key_max > SHMG_KEY_MAX_LIMIT || hdr->meta_max > SHMG_META_MAX_LIMIT ||
	    !is_pow2(g.oplog_bytes) || g.max_clusters < 2 || g.max_clusters > 4096 ||
	    g.max_endpoints > 65535 || geometry(&g) != 0)
		return -EPROTO;
	if (g.off_endpoints != hdr->off_endpoints || g.off_live_gen != hdr->off_live_gen ||
	    g.off_clusters != hdr->off_clusters || g.off_shards != hdr->off_shards ||
	    g.off_oplogs != hdr->off_oplogs || g.off_pagedesc != hdr->off_pagedesc ||
	    g.off_mailboxes != hdr->off_mailboxes ||
	    g.off_pages != hdr->off_pages || g.shard_stride != hdr->shard_stride ||
	    g.npages != hdr->npages)
		return -EPROTO;
	return 0;
}

static int config_conflicts(const struct arena_header *hdr, const struct shmg_config *in)
{
	if (!in)
		return 0;
	return (in->shards && in->shards != hdr->shards) ||
	       (in->max_endpoints && in->max_endpoints != hdr->max_endpoints) ||
	       (in->key_max && in->key_max != hdr->key_max) ||
	       (in->meta_max && in->meta_max != hdr->meta_max) ||
	       (in->max_clusters && in->max_clusters != hdr->max_clusters) ||
	       (in->node_id && in->node_id != hdr->node_id) ||
	       (in->oplog_bytes && in->oplog_bytes != hdr->oplog_bytes) ||
	       (in->mode && in->mode != hdr->mode) ||
	       (in->arena_size && in->arena_size != hdr->arena_size) ||
	       (in->arena_max && in->arena_max != hdr->arena_max) ||
	       (in->mailbox_bytes && in->mailbox_bytes != hdr->mailbox_bytes);
}

/* Maps the object, file_size bytes now, over the address space of its
 * maximum size: growth then never moves the mapping, and no process remaps.
 * Pages past the object's end are mapped but never touched (they would
 * fault): h->size says how far this process has seen the object go. */
static int map_reserved(shmg_t *h, uint64_t max_size, uint64_t file_size)
{
	void *p = mmap(NULL, max_size, PROT_READ | PROT_WRITE, MAP_SHARED, h->fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	/* Large arenas are TLB-bound: ask for huge pages where shmem allows it
	 * (transparent_hugepage/shmem_enabled = advise); harmless elsewhere. */
	madvise(p, max_size, MADV_HUGEPAGE);
	h->base = p;
	h->map_size = max_size;
	h->size = file_size;
	h->hdr = p;
	return 0;
}

uint64_t arena_refresh(const shmg_t *h)
{
	struct stat st;
	if (fstat(h->fd, &st) == 0 && st.st_size > 0) {
		uint64_t now = (uint64_t)st.st_size < h->map_size ? (uint64_t)st.st_size : h->map_size;
		/* Only ever raised: a shrunk object (someone truncated it by
		 * hand) faults whatever we do, and the mapping stays ours. */
		if (now > h->size)
			((shmg_t *)h)->size = now;
	}
	return h->size;
}

bool arena_span_grown(const shmg_t *h, uint64_t off, uint64_t len)
{
	if (off > h->map_size || len > h->map_size - off)
		return false; /* not even in the reservation: no system call */
	return off + len <= arena_refresh(h);
}

int arena_grow_to(shmg_t *h, uint64_t size)
{
	if (size > h->map_size)
		return -ENOSPC;
	if (arena_refresh(h) >= size)
		return 0; /* grown by a process that died before publishing it */
	/* Sparse: the new pages take memory as they are first written. */
	if (ftruncate(h->fd, (off_t)size) < 0)
		return -errno;
	arena_refresh(h);
	return 0;
}

/* Refuses an object that someone else could have prepared: it must belong to
 * the caller's effective uid (or the configured owner), else its owner can
 * rewrite it, and its locks, under every process that attaches.  -EACCES. */
static int owner_check(shmg_t *h, const char *path, const struct stat *st,
		       const struct shmg_config *c)
{
	uid_t uid = geteuid();
	if (st->st_uid == uid || (c->flags & SHMG_OPEN_OWNER && st->st_uid == c->owner_uid))
		return 0;
	sg_log(h, SHMG_LOG_INFO, "refusing /dev/shm%s: owned by uid %u, not %u", path,
	       (unsigned)st->st_uid, (unsigned)(c->flags & SHMG_OPEN_OWNER ? c->owner_uid : uid));
	return -EACCES;
}

/* An attached arena's object may grant no more than its creator configured
 * (someone may have chmod'ed it since).  -EACCES. */
static int mode_check(shmg_t *h, const char *path, const struct stat *st, uint32_t mode)
{
	if (!(st->st_mode & 07777 & ~(mode_t)mode))
		return 0;
	sg_log(h, SHMG_LOG_INFO, "refusing /dev/shm%s: mode %04o grants more than its %04o", path,
	       (unsigned)(st->st_mode & 07777), (unsigned)mode);
	return -EACCES;
}

/* flock(LOCK_EX) that gives up after lock_wait_limit_ms: a creator that is
 * stopped while it holds the lock must not hang every opener.  Polls with a
 * growing sleep (flock has no timed form).  0, -EBUSY or -errno. */
static int flock_limited(int fd)
{
	uint64_t end = now_monotonic_ns() + (uint64_t)lock_wait_limit_ms * 1000000u;
	long nap_ns = 20000;
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK && errno != EINTR)
			return -errno;
		if (now_monotonic_ns() >= end)
			return -EBUSY;
		nanosleep(&(struct timespec){0, nap_ns}, NULL);
		if (nap_ns < 10000000)
			nap_ns *= 2;
	}
	return 0;
}

/* A second open file description of the object h->fd refers to, for the
 * liveness lock, in *out.  Reopened through /proc/self/fd, not by name: the
 * name may already belong to another object (a destroy and a new create
 * since our shm_open), and a lock on that one would make our endpoint look
 * dead to everyone who maps ours.  Without /proc, by name, and checked to be
 * the same inode.  Returns 0, OPEN_RETRY if the name moved on, or -errno. */
static int reopen_same(const shmg_t *h, const char *path, int *out)
{
	char self[64];
	snprintf(self, sizeof(self), "/proc/self/fd/%d", h->fd);
	int fd = open(self, O_RDWR | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		fd = shm_open(path, O_RDWR | O_CLOEXEC, 0);
	if (fd < 0)
		return errno == ENOENT ? OPEN_RETRY : -errno;
	struct stat a, b;
	if (fstat(h->fd, &a) < 0 || fstat(fd, &b) < 0 || a.st_dev != b.st_dev ||
	    a.st_ino != b.st_ino) {
		close(fd);
		return OPEN_RETRY;
	}
	*out = fd;
	return 0;
}

/* A creating open that failed before publishing leaves no object behind:
 * emptied and unlinked under the creation lock, so that a later attach does
 * not find a half-made arena (openers queued on the lock find it unlinked
 * and open the name again). */
static void abandon(shmg_t *h, const char *path)
{
	struct stat st;
	if (ftruncate(h->fd, 0) == 0 && fstat(h->fd, &st) == 0 && st.st_nlink > 0)
		shm_unlink(path);
}

/* The new arena in g (already checked to fit), in the object h->fd, which
 * is locked and holds no published arena. */
static int arena_create(shmg_t *h, const char *path, const struct shmg_config *c,
			const struct arena_header *g)
{
	int rc = 0;
	if (fchmod(h->fd, (mode_t)c->mode) < 0 || ftruncate(h->fd, 0) < 0 ||
	    ftruncate(h->fd, (off_t)c->arena_size) < 0)
		rc = -errno;
	if (rc == 0)
		rc = map_reserved(h, g->arena_max, c->arena_size);
	if (rc == 0)
		rc = arena_init(h, g);
	if (rc < 0)
		abandon(h, path);
	return rc;
}

/* Attaches to the published arena in the object h->fd (locked). */
static int arena_attach(shmg_t *h, const char *path, const struct stat *st,
			const struct shmg_config *in)
{
	if (st->st_size < (off_t)4096)
		return -EPROTO;
	struct arena_header hdr;
	if (pread(h->fd, &hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr))
		return -EIO;
	int rc = arena_validate(&hdr, (uint64_t)st->st_size);
	if (rc)
		return rc;
	if (config_conflicts(&hdr, in))
		return -EEXIST;
	if ((rc = mode_check(h, path, st, hdr.mode)) ||
	    (rc = map_reserved(h, hdr.arena_max, (uint64_t)st->st_size)))
		return rc;
	geometry_copy(&h->geo, &hdr); /* the validated private copy */
	return 0;
}

/* One attempt at arena_open.  g is the new arena's header when the caller
 * may create one, else NULL.  OPEN_RETRY when the object was unlinked under
 * us (a concurrent destroy) and `last` is false: the caller opens the name
 * again.  On the last attempt an unlinked object is used as it is: the open
 * then happened just before the destroy. */
static int arena_open_once(shmg_t *h, const char *path, const struct shmg_config *c,
			   const struct shmg_config *in, const struct arena_header *g, bool last)
{
	int oflags = O_RDWR | O_CLOEXEC;
	if (g && !(c->flags & SHMG_OPEN_NOCREATE))
		oflags |= O_CREAT | (c->flags & SHMG_OPEN_EXCL ? O_EXCL : 0);
	h->fd = shm_open(path, oflags, (mode_t)c->mode);
	if (h->fd < 0)
		/* Not there, and not creatable with this configuration. */
		return errno == ENOENT && !(oflags & O_CREAT) && !(c->flags & SHMG_OPEN_NOCREATE)
			       ? -EINVAL
			       : -errno;
	struct stat st;
	int rc;
	if (fstat(h->fd, &st) < 0) {
		rc = -errno;
		goto fail;
	}
	/* Before taking its lock, which a foreign owner could hold forever. */
	if ((rc = owner_check(h, path, &st, c)) || (rc = flock_limited(h->fd)))
		goto fail;
	if (fstat(h->fd, &st) < 0) {
		rc = -errno;
		goto fail;
	}
	/* shmg_destroy unlinks only under the lock we now hold: an object
	 * unlinked now was destroyed between our shm_open and the lock. */
	if (st.st_nlink == 0 && !last) {
		rc = OPEN_RETRY;
		goto fail;
	}
	uint64_t magic = 0;
	if (st.st_size >= (off_t)sizeof(struct arena_header) &&
	    pread(h->fd, &magic, sizeof(magic), 0) != (ssize_t)sizeof(magic)) {
		rc = -EIO;
		goto fail;
	}
	if (st.st_size == 0 || magic == 0 || magic == ARENA_MAGIC_INIT) {
		/* New, or its creator died before publishing.  Only an open that
		 * may create initialises it: NOCREATE finds no arena here. */
		if (!(oflags & O_CREAT)) {
			rc = c->flags & SHMG_OPEN_NOCREATE ? -ENOENT : -EINVAL;
			goto fail;
		}
		rc = arena_create(h, path, c, g);
	} else {
		rc = arena_attach(h, path, &st, in);
	}
	if (rc < 0)
		goto fail;
	TEST_POINT("open:mapped");
	if ((rc = reopen_same(h, path, &h->lock_fd))) {
		/* Only without /proc: the name names another object by now. */
		if (rc == OPEN_RETRY && last)
			rc = -EAGAIN;
		goto fail;
	}
	if (fstat(h->fd, &st) == 0 && st.st_nlink == 0) {
		/* Unlinked by hand while we held the lock (or, on the last
		 * attempt, destroyed before we took it): marked so that every
		 * process that maps it can tell. */
		store_release(&h->hdr->destroyed, 1);
		if (!last) {
			rc = OPEN_RETRY;
			goto fail;
		}
	}
	flock(h->fd, LOCK_UN);
	return 0;
fail:
	arena_unmap(h);
	return rc;
}

int arena_open(shmg_t *h, const char *name, const struct shmg_config *in)
{
	struct shmg_config c;
	int rc = config_normalise(in, &c);
	if (rc)
		return rc;
	/* A configuration that cannot be created is found out before any
	 * object exists; it may still attach to an existing arena, whose
	 * values stand in for the fields the caller left 0. */
	struct arena_header g;
	bool fits = header_build(&g, &c) == 0;
	if (!fits && c.flags & SHMG_OPEN_EXCL)
		return -EINVAL;
	char path[SHMG_NAME_MAX + 16];
	shm_path(name, path, sizeof(path));
	for (unsigned attempt = 1;; attempt++) {
		rc = arena_open_once(h, path, &c, in, fits ? &g : NULL, attempt == OPEN_ATTEMPTS);
		if (rc != OPEN_RETRY)
			return rc;
	}
}

void arena_unmap(shmg_t *h)
{
	if (h->base)
		munmap(h->base, h->map_size);
	h->base = NULL;
	h->hdr = NULL;
	if (h->fd >= 0)
		close(h->fd);
	if (h->lock_fd >= 0)
		close(h->lock_fd);
	h->fd = h->lock_fd = -1;
}

/* Sets the header's destroyed flag of a published arena, for tools. */
static void mark_destroyed(int fd, const struct stat *st)
{
	if (st->st_size < (off_t)sizeof(struct arena_header))
		return;
	struct arena_header *hdr =
		mmap(NULL, sizeof(*hdr), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (hdr == MAP_FAILED)
		return;
	if (load_acquire(&hdr->magic) == ARENA_MAGIC)
		store_release(&hdr->destroyed, 1);
	munmap(hdr, sizeof(*hdr));
}

int shmg_destroy(const char *name)
{
	if (!arena_name_valid(name))
		return -EINVAL;
	char path[SHMG_NAME_MAX + 16];
	shm_path(name, path, sizeof(path));
	int fd = shm_open(path, O_RDWR | O_CLOEXEC, 0);
	if (fd < 0) {
		if (errno != EACCES)
			return -errno;
		/* Another user's: whether we may remove it is unlink's call. */
		return shm_unlink(path) < 0 ? -errno : 0;
	}
	/* Under the lock openers create and attach under, so that an open never
	 * ends up on an object unlinked unseen: arena_open checks the link
	 * count once it holds the lock. */
	struct stat st;
	int rc = flock_limited(fd);
	if (rc == 0 && fstat(fd, &st) < 0)
		rc = -errno;
	if (rc == 0 && st.st_nlink == 0)
		rc = -ENOENT; /* another destroy got there first */
	if (rc == 0) {
		mark_destroyed(fd, &st);
		if (shm_unlink(path) < 0)
			rc = -errno;
		/* By the name, not the header, which may be scribbled. */
		wake_fifo_remove_all(name);
	}
	close(fd);
	return rc;
}

int shmg_destroyed(shmg_t *h)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	if (load_acquire(&h->hdr->destroyed))
		return 1;
	/* Unlinked without shmg_destroy (by hand), or destroyed before the
	 * flag could be set. */
	struct stat st;
	if (fstat(h->fd, &st) < 0)
		return -errno;
	return st.st_nlink == 0;
}
