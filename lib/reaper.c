/* SPDX-License-Identifier: MIT */
/*
 * The reaper: one process per host watches every endpoint's process through a
 * pidfd in an epoll set and removes a dead endpoint's entries at once.
 *
 * Election: the reaper holds hdr->reaper_lock (a robust mutex) for as long as
 * it is the reaper.  Candidates trylock it on every dispatch; when the reaper
 * dies the kernel marks the mutex owner-dead and the next candidate takes it
 * over (EOWNERDEAD needs no repair: the lock guards no data).  The host agent
 * is simply a candidate that does nothing else.
 *
 * What it watches comes from the endpoint table: whenever endpoint_epoch moved
 * (every open and close bumps it, and pokes the reaper's wakeup socket) it
 * opens pidfds for new endpoints' processes.  A pidfd is opened from a pid read
 * from the table, so it could name a process that reused the pid: the recorded
 * start time is compared after opening, and liveness itself is always decided
 * by endpoint_alive (the endpoint's lock, which PID reuse cannot fool); the
 * pidfd only makes the reaper wake up promptly.
 *
 * The reaper also enforces TTL leases of named clusters (lease.c): each
 * dispatch checks them, and the interval it returns is never past the next
 * lease due.
 *
 * Nothing here is in shared memory except the election lock and reaper_pid;
 * a reaper killed at any point leaves only the lock, which the next one takes.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

#define POKE_TAG UINT64_MAX
#define CANDIDATE_RETRY_MS 100
#define RESCAN_MS 1000

struct watch {
	int pidfd;
	int32_t pid;
	uint32_t gen;
};

struct reaper {
	int epfd;
	int poke_fd;
	bool elected;
	uint32_t seen_epoch;
	uint64_t last_sweep_ns;
	struct watch *watch; /* per endpoint slot */
};

static int pidfd_open(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

uint32_t reaper_alive_pid(shmg_t *h)
{
	/* reaper_pid is cleared only by a reaper that stops cleanly; one that
	 * was killed is told apart by its endpoint. */
	uint32_t pid = load_acquire(&h->hdr->reaper_pid), slot = load_relaxed(&h->hdr->reaper_slot);
	if (!pid || slot >= h->geo.max_endpoints)
		return 0;
	struct endpoint_slot *ep = endpoint_at(h, slot);
	return (uint32_t)ep->pid == pid && endpoint_alive(h, slot, load_relaxed(&ep->gen)) ? pid : 0;
}

void reaper_poke(shmg_t *h)
{
	if (load_relaxed(&h->hdr->reaper_pid))
		wake_send(h, "reaper", load_relaxed(&h->hdr->reaper_wake));
}

static void unwatch(struct reaper *r, uint32_t slot)
{
	struct watch *w = &r->watch[slot];
	if (w->pidfd >= 0) {
		epoll_ctl(r->epfd, EPOLL_CTL_DEL, w->pidfd, NULL);
		close(w->pidfd);
	}
	w->pidfd = -1;
	w->gen = 0;
	w->pid = 0;
}

static void try_elect(shmg_t *h)
{
	struct reaper *r = h->reaper;
	if (r->elected)
		return;
	int rc = pthread_mutex_trylock(&h->hdr->reaper_lock);
	if (rc == EOWNERDEAD) {
		pthread_mutex_consistent(&h->hdr->reaper_lock);
		sg_log(h, SHMG_LOG_INFO, "previous reaper (pid %u) died; taking over",
		       load_relaxed(&h->hdr->reaper_pid));
		rc = 0;
	}
	if (rc)
		return;
	/* Without a poke socket the reaper still sweeps every RESCAN_MS. */
	uint64_t nonce = 0;
	r->poke_fd = wake_bind(h, "reaper", &nonce);
	if (r->poke_fd >= 0) {
		struct epoll_event ev = {.events = EPOLLIN, .data.u64 = POKE_TAG};
		epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->poke_fd, &ev);
	}
	store_relaxed(&h->hdr->reaper_wake, r->poke_fd >= 0 ? nonce : 0);
	r->elected = true;
	r->seen_epoch = load_acquire(&h->hdr->endpoint_epoch) - 1; /* force a scan */
	store_relaxed(&h->hdr->reaper_slot, h->slot);
	store_release(&h->hdr->reaper_pid, (uint32_t)getpid());
	sg_log(h, SHMG_LOG_INFO, "pid %d is the reaper", (int)getpid());
}

/* Watches every endpoint process; returns true if one is already dead. */
static bool rescan(shmg_t *h)
{
	struct reaper *r = h->reaper;
	bool dead = false;
	uint32_t hwm = load_acquire(&h->hdr->endpoint_hwm);
	for (uint32_t i = 0; i < h->geo.max_endpoints; i++) {
		struct endpoint_slot *ep = endpoint_at(h, i);
		uint32_t st = load_acquire(&ep->state), gen = load_relaxed(&ep->gen);
		if (i >= hwm || st == EP_FREE) {
			if (r->watch[i].pidfd >= 0)
				unwatch(r, i);
			continue;
		}
		struct watch *w = &r->watch[i];
		if (w->pidfd >= 0 && w->gen == gen)
			continue;
		unwatch(r, i);
		pid_t pid = ep->pid;
		if (pid == getpid())
			continue; /* our own endpoints die with us */
		int fd = pidfd_open(pid);
		uint64_t start = 0;
		if (fd < 0 || proc_start_time(pid, &start) < 0 || start != ep->start_time) {
			if (fd >= 0)
				close(fd);
			dead = true; /* gone, or the pid now names another process */
			continue;
		}
		struct epoll_event ev = {.events = EPOLLIN, .data.u64 = i};
		if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			continue;
		}
		*w = (struct watch){fd, pid, gen};
	}
	return dead;
}

int shmg_reaper_enable(shmg_t *h)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	if (!h->reaper) {
		struct reaper *r = calloc(1, sizeof(*r));
		if (!r || !(r->watch = calloc(h->geo.max_endpoints, sizeof(*r->watch)))) {
			free(r);
			return -ENOMEM;
		}
		r->epfd = epoll_create1(EPOLL_CLOEXEC);
		if (r->epfd < 0) {
			rc = -errno;
			free(r->watch);
			free(r);
			return rc;
		}
		r->poke_fd = -1;
		for (uint32_t i = 0; i < h->geo.max_endpoints; i++)
			r->watch[i].pidfd = -1;
		h->reaper = r;
	}
	try_elect(h);
	return h->reaper->elected;
}

int shmg_reaper_fd(shmg_t *h)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	return h->reaper ? h->reaper->epfd : -EPERM;
}

int shmg_reaper_dispatch(shmg_t *h)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	struct reaper *r = h->reaper;
	if (!r)
		return -EPERM;
	try_elect(h);
	if (!r->elected)
		return CANDIDATE_RETRY_MS;
	struct epoll_event evs[64];
	bool dirty = false;
	int n;
	while ((n = epoll_wait(r->epfd, evs, 64, 0)) > 0) {
		for (int i = 0; i < n; i++) {
			if (evs[i].data.u64 == POKE_TAG) {
				wake_drain(r->poke_fd);
			} else {
				/* The process exited: stop watching; the reap below
				 * decides which of its endpoints are dead. */
				unwatch(r, (uint32_t)evs[i].data.u64);
				dirty = true;
			}
		}
		if (n < 64)
			break;
	}
	uint32_t epoch = load_acquire(&h->hdr->endpoint_epoch);
	if (epoch != r->seen_epoch) {
		r->seen_epoch = epoch;
		dirty |= rescan(h);
	}
	/* Besides pidfd wakeups, a periodic sweep: it catches an endpoint whose
	 * process died before its pidfd could be opened. */
	uint64_t now = now_monotonic_ns();
	if (now - r->last_sweep_ns >= RESCAN_MS * 1000000ull) {
		r->last_sweep_ns = now;
		dirty = true;
	}
	/* A shard held by a stopped writer costs each pass one interval, not
	 * a budget, so the caller's loop stays responsive; the endpoints it
	 * holds up stay dead and hidden (-EBUSY), a lease or marker it holds
	 * up stays due, and the next pass retries. */
	uint32_t attempts = h->busy_attempts;
	h->busy_attempts = 1;
	/* TTL leases of named clusters are the reaper's too (lease.c). */
	int lease_ms = lease_check(h);
	int next_ms = lease_ms < RESCAN_MS ? lease_ms : RESCAN_MS;
	rc = dirty ? endpoint_reap_all(h) : 0;
	h->busy_attempts = attempts;
	return rc < 0 && rc != -EBUSY ? rc : next_ms;
}

void reaper_close(shmg_t *h)
{
	struct reaper *r = h->reaper;
	if (!r)
		return;
	for (uint32_t i = 0; i < h->geo.max_endpoints; i++)
		if (r->watch[i].pidfd >= 0)
			close(r->watch[i].pidfd);
	if (r->poke_fd >= 0)
		close(r->poke_fd);
	if (r->epfd >= 0)
		close(r->epfd);
	if (r->elected) {
		store_relaxed(&h->hdr->reaper_wake, 0);
		store_release(&h->hdr->reaper_pid, 0);
		pthread_mutex_unlock(&h->hdr->reaper_lock);
	}
	free(r->watch);
	free(r);
	h->reaper = NULL;
}

void reaper_drop_after_fork(shmg_t *h)
{
	/* In a forked child: only close() (async-signal-safe); the election
	 * lock stays the parent's. */
	struct reaper *r = h->reaper;
	if (!r)
		return;
	if (r->poke_fd >= 0)
		close(r->poke_fd);
	close(r->epfd);
	r->poke_fd = r->epfd = -1;
	r->elected = false;
}

int shmg_reaper_disable(shmg_t *h)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	reaper_close(h);
	return 0;
}
