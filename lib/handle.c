/* SPDX-License-Identifier: MIT */
/*
 * Handles: opening and closing an endpoint, fork detection, identity
 * formatting and the small per-handle settings.
 *
 * Fork.  A pthread_atfork child handler bumps handle_fork_gen, which every
 * call compares with the value its handle recorded (a plain load, no
 * syscall), so a handle copied into a child answers -ECHILD.  The handler also
 * closes the child's copies of the arena descriptors: endpoint liveness is an
 * OFD lock on the parent's open file description, which must die with the
 * parent, not live on in its children.
 *
 * Closed handles are kept in a small quarantine before their memory is freed,
 * so a call with a just-closed handle reliably answers -EBADF.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

_Atomic uint32_t handle_fork_gen;
void (*sg_test_hook)(const char *point);

#define QUARANTINE 64

static pthread_mutex_t handles_lock = PTHREAD_MUTEX_INITIALIZER;
static shmg_t *open_handles[1024];
static size_t n_open;
static shmg_t *quarantine[QUARANTINE];
static size_t quarantine_next;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* The child's copies of a handle's descriptors must go: the endpoint lock
 * has to die with the parent, and the wakeup socket and FIFO must not be
 * read by a process that is not the endpoint (the FIFO's name stays: it is
 * the parent's).  Only close() here: async-signal-safe. */
static void handle_drop_fds(shmg_t *h)
{
	int *fds[] = {&h->fd, &h->lock_fd, &h->mb_fd, &h->mb_sock, &h->fifo.fd, &h->wake_out};
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
	wake_fifo_close_cache(h);
	reaper_drop_after_fork(h);
}

static void atfork_prepare(void)
{
	pthread_mutex_lock(&handles_lock);
}

static void atfork_parent(void)
{
	pthread_mutex_unlock(&handles_lock);
}

static void atfork_child(void)
{
	atomic_fetch_add(&handle_fork_gen, 1);
	for (size_t i = 0; i < n_open; i++)
		handle_drop_fds(open_handles[i]);
	n_open = 0;
	pthread_mutex_unlock(&handles_lock);
}

static void install_atfork(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static int track(shmg_t *h)
{
	int rc = -EMFILE;
	pthread_mutex_lock(&handles_lock);
	if (n_open < sizeof(open_handles) / sizeof(open_handles[0])) {
		open_handles[n_open++] = h;
		rc = 0;
	}
	pthread_mutex_unlock(&handles_lock);
	return rc;
}

static void untrack_and_retire(shmg_t *h)
{
	pthread_mutex_lock(&handles_lock);
	for (size_t i = 0; i < n_open; i++)
		if (open_handles[i] == h) {
			open_handles[i] = open_handles[--n_open];
			break;
		}
	shmg_t *old = quarantine[quarantine_next];
	quarantine[quarantine_next] = h;
	quarantine_next = (quarantine_next + 1) % QUARANTINE;
	pthread_mutex_unlock(&handles_lock);
	free(old);
}

static void handle_free_resources(shmg_t *h)
{
	/* The per-target buffers are counted by the arena's max_endpoints:
	 * free them while the header is still mapped. */
	if (h->pending && h->hdr)
		for (uint32_t i = 0; i < h->geo.max_endpoints; i++)
			free(h->pending[i].buf);
	arena_unmap(h);
	handle_drop_fds(h);
	free(h->scratch);
	free(h->targets);
	free(h->target_gen);
	free(h->pending);
	free(h->pending_gen);
	free(h->single.buf);
	h->single = (struct mb_batch){0};
	free(h->rx);
	free(h->rx_meta);
	h->scratch = h->rx = h->rx_meta = NULL;
	h->targets = NULL;
	h->target_gen = h->pending_gen = NULL;
	h->pending = NULL;
}

int shmg_open(const char *name, const struct shmg_config *config, shmg_t **out)
{
	if (!out || !arena_name_valid(name))
		return -EINVAL;
	pthread_once(&atfork_once, install_atfork);
	shmg_t *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->fd = h->lock_fd = h->mb_fd = h->mb_sock = h->fifo.fd = h->wake_out = -1;
	wake_fifo_reset_cache(h);
	h->fork_gen = atomic_load(&handle_fork_gen);
	/* Opening reaps what it finds dead, but waits at most one interval in
	 * all for a busy shard: what it cannot finish is the reaper's. */
	h->busy_attempts = 1;
	h->busy_interval_ms = SHMG_BUSY_RETRY_INTERVAL_MS;
	snprintf(h->name, sizeof(h->name), "%s", name);
	int rc = arena_open(h, name, config);
	if (rc < 0)
		goto fail;
	h->node = h->geo.node_id;
	h->live_gen = (uint32_t *)(h->base + h->geo.off_live_gen);
	index_views_init(h);
	uint32_t n = h->geo.max_endpoints;
	h->scratch = malloc(h->geo.meta_max ? h->geo.meta_max : 1);
	h->targets = calloc((n + 63) / 64, sizeof(uint64_t));
	h->target_gen = calloc(n, sizeof(uint32_t));
	h->pending = calloc(n, sizeof(struct mb_batch));
	h->pending_gen = calloc(n, sizeof(uint32_t));
	if (!h->scratch || !h->targets || !h->target_gen || !h->pending || !h->pending_gen) {
		rc = -ENOMEM;
		goto fail;
	}
	epoch_process_init(h);
	/* The wakeup socket's name goes into the mailbox when the slot is
	 * claimed, so it exists before any producer can look for it; the
	 * FIFO, named by the slot, is made as it is claimed. */
	if ((rc = wake_open(h)) < 0 || (rc = endpoint_claim(h)) < 0)
		goto fail;
	if ((rc = track(h)) < 0) {
		endpoint_release(h, h->slot, h->gen, REASON_NORMAL);
		goto fail;
	}
	h->magic = HANDLE_MAGIC;
	/* Cheap when nobody died: one F_OFD_GETLK per endpoint in use. */
	endpoint_reap_all(h);
	h->busy_attempts = SHMG_BUSY_RETRY_ATTEMPTS;
	*out = h;
	return 0;
fail:
	handle_free_resources(h);
	free(h);
	return rc;
}

int shmg_close(shmg_t *h)
{
	if (!h)
		return 0;
	if (h->magic != HANDLE_MAGIC)
		return -EBADF;
	int rc = 0;
	/* In a forked child only the copy goes; the endpoint is the parent's. */
	if (h->fork_gen == atomic_load(&handle_fork_gen)) {
		reaper_close(h);
		h->read_depth = 0;
		store_release(&h->ep->read_epoch, 0);
		rc = endpoint_release(h, h->slot, h->gen, REASON_NORMAL);
	}
	h->magic = HANDLE_CLOSED;
	handle_free_resources(h);
	untrack_and_retire(h);
	return rc;
}

shmg_id_t shmg_self(const shmg_t *h)
{
	shmg_id_t id = {0, 0, 0};
	if (handle_check(h) == 0) {
		id.node = h->node;
		id.slot = h->slot;
		id.gen = h->gen;
	}
	return id;
}

int shmg_id_format(shmg_id_t id, char *buf, size_t cap)
{
	char tmp[SHMG_ID_STRLEN];
	int n = snprintf(tmp, sizeof(tmp), "n%u.%u.%u", id.node, id.slot, id.gen);
	if (!buf || (size_t)n >= cap)
		return -ENOBUFS;
	memcpy(buf, tmp, (size_t)n + 1);
	return n;
}

static int parse_u32(const char **s, uint32_t *out)
{
	const char *p = *s;
	uint64_t v = 0;
	if (*p < '0' || *p > '9')
		return -EINVAL;
	while (*p >= '0' && *p <= '9') {
		v = v * 10 + (uint64_t)(*p++ - '0');
		if (v > UINT32_MAX)
			return -EINVAL;
	}
	*out = (uint32_t)v;
	*s = p;
	return 0;
}

int shmg_id_parse(const char *s, shmg_id_t *out)
{
	shmg_id_t id;
	if (!s || !out)
		return -EINVAL;
	if (*s == 'n')
		s++;
	if (parse_u32(&s, &id.node) || *s++ != '.' || parse_u32(&s, &id.slot) || *s++ != '.' ||
	    parse_u32(&s, &id.gen) || *s)
		return -EINVAL;
	*out = id;
	return 0;
}

int shmg_id_equal(shmg_id_t a, shmg_id_t b)
{
	return a.node == b.node && a.slot == b.slot && a.gen == b.gen;
}

int shmg_info(shmg_t *h, struct shmg_info *out)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	if (!out)
		return -EINVAL;
	const struct arena_header *a = h->hdr;
	const struct arena_geometry *g = &h->geo;
	/* The object's size, not the shared pages_avail: a count a process
	 * scribbled cannot make tools report pages that are not there. */
	uint64_t size = arena_refresh(h);
	*out = (struct shmg_info){
		.layout_version = g->layout_version,
		.shards = g->shards,
		.max_endpoints = g->max_endpoints,
		.key_max = g->key_max,
		.meta_max = g->meta_max,
		.max_clusters = g->max_clusters,
		.node_id = g->node_id,
		.oplog_bytes = g->oplog_bytes,
		.arena_size = size,
		.incarnation = g->incarnation,
		.created_ns = g->created_ns,
		.pages_total = arena_pages_in(g, size),
		.pages_used = load_relaxed(&a->pages_used),
		.endpoints_live = load_relaxed(&a->endpoints_live),
		.clusters_connected = load_relaxed(&a->clusters_connected),
		.global_epoch = load_relaxed(&a->epoch),
		.shard_repairs = load_relaxed(&a->shard_repairs),
		.mailbox_bytes = g->mailbox_bytes,
		.reaper_pid = reaper_alive_pid(h),
		.arena_max = g->arena_max,
		.pages_max = g->npages,
		.arena_initial = g->arena_size,
		.grows = load_relaxed(&a->grows),
	};
	return 0;
}

/* Longest budget accepted: a day, so that attempts x interval cannot overflow. */
#define BUSY_BUDGET_MAX_MS (24u * 3600u * 1000u)

int shmg_set_busy_retry(shmg_t *h, uint32_t attempts, uint32_t interval_ms)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	if (interval_ms == 0 || interval_ms > 60000 ||
	    (uint64_t)attempts * interval_ms > BUSY_BUDGET_MAX_MS)
		return -EINVAL;
	h->busy_attempts = attempts;
	h->busy_interval_ms = interval_ms;
	return 0;
}

uint64_t busy_deadline(const shmg_t *h)
{
	return now_monotonic_ns() + (uint64_t)h->busy_attempts * h->busy_interval_ms * 1000000u;
}

int shmg_set_extract_meta(shmg_t *h, shmg_extract_fn fn, void *arg)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	h->extract = fn;
	h->extract_arg = arg;
	return 0;
}

int shmg_log_level(shmg_t *h, int level)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	if (level > SHMG_LOG_VERBOSE)
		return -EINVAL;
	if (level < 0)
		return (int)load_relaxed(&h->hdr->log_level);
	return (int)__atomic_exchange_n(&h->hdr->log_level, (uint32_t)level, __ATOMIC_RELAXED);
}

int shmg_read_begin(shmg_t *h)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	read_enter(h);
	return 0;
}

int shmg_read_end(shmg_t *h)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	if (h->read_depth <= 0)
		return -EPERM;
	read_exit(h);
	return 0;
}
