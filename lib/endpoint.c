/* SPDX-License-Identifier: MIT */
/*
 * Endpoints: the table of slots that name who owns entries, and liveness.
 *
 * A slot is claimed under endpoint_lock: its generation is bumped (so old ids
 * never name the new owner), pid and start time recorded, and the opener takes
 * an open-file-description lock (F_OFD_SETLK) on byte `slot` of the arena
 * object, through a descriptor of its own that is never mapped (lock_fd).  The
 * kernel drops that lock when the description's last reference goes — when
 * the process dies, whatever the cause; forked children close their copy —
 * so "is the lock held?" (F_OFD_GETLK, one syscall) is an exact liveness test
 * that PID reuse cannot fool.  The lock is taken before the slot is published
 * and released by its owner only after the slot is free again; the
 * high-water mark that bounds every reap is raised over the slot before it
 * leaves FREE, so an opener killed at any later step is found.  live_gen[slot] holds the generation while the
 * endpoint is live; readers compare it with an entry's generation, so one
 * store hides every entry of an endpoint the moment its death is noticed.
 *
 * Removal of a dead or closing endpoint's entries: state CLOSING, live_gen 0
 * (under endpoint_lock, after liveness is checked again there), then the
 * locks of the shards where it has entries, the batch of events, the
 * entries, then state FREE.  Killed at any point, the slot is left CLOSING
 * (or LIVE/OPENING with no lock holder) and the next reap redoes the
 * removal, which is idempotent and does not repeat the batch once
 * EPF_EVENTS_SENT is set.  A remover that meets a shard held by a stopped
 * writer, or a limbo ring kept full by a stopped reader, stops at its busy
 * deadline the same way, with -EBUSY: the slot stays CLOSING (never FREE
 * while entries remain), its entries stay hidden, and the next reap
 * finishes.  A close marks the slot EPF_CLOSED first, so that a reaper
 * finishing it reports reason "normal", not "exit".
 *
 * Termination (endpoint_terminate, for remote_conflict_evict): the host agent
 * ends a live endpoint that lost a registry conflict.  `terminated` is set
 * first (under the lock of the shard of the key, so its owner's writes are
 * refused from then on, see shard_lock), then the endpoint is hidden and its
 * entries removed as for a death, with reason "conflict" — a removal
 * finished later by anyone (its owner's close, the reaper after its death)
 * keeps that reason.  The slot then stays CLOSING, its mailbox alive, until
 * its owner closes it.  An evictor killed after setting `terminated` leaves
 * a live endpoint that is refused but still holds its entries: every reap
 * (endpoint_reap_all: the reaper's passes, shmg_reap, a full open) finishes
 * such a termination as its evictor would have, once (the batch is guarded
 * by EPF_EVENTS_SENT and batch_done as for a death); the final conflict
 * record went to its mailbox before `terminated` was set (remote.c), so
 * nothing of it is lost.  Its owner may close meanwhile: both removers
 * serialise on the shard locks, and the one that comes second finds the
 * batch sent or the slot gone.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

int proc_start_time(pid_t pid, uint64_t *out)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = 0;
	/* Field 2 (comm) may contain spaces and parentheses: skip past the last ')'. */
	char *p = strrchr(buf, ')');
	if (!p)
		return -EIO;
	unsigned long long v = 0;
	/* After ") " come fields 3..: state is field 3; starttime is field 22. */
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
		   &v) != 1)
		return -EIO;
	*out = v;
	return 0;
}

static int endpoint_lock(shmg_t *h)
{
	int rc = robust_lock_limited(h, &h->hdr->endpoint_lock, "endpoint");
	if (rc == EOWNERDEAD) {
		uint32_t live = 0, closing = 0;
		for (uint32_t i = 0; i < h->geo.max_endpoints; i++) {
			live += endpoint_at(h, i)->state != EP_FREE;
			closing += endpoint_at(h, i)->state == EP_CLOSING;
		}
		h->hdr->endpoints_live = live;
		/* A new hide count: readers that began before this see a change. */
		uint64_t hides = (load_relaxed(&h->hdr->hidden) >> 32) + 1;
		store_release(&h->hdr->hidden, hides << 32 | closing);
		pthread_mutex_consistent(&h->hdr->endpoint_lock);
		rc = 0;
	}
	return -rc;
}

static void endpoint_unlock(shmg_t *h)
{
	pthread_mutex_unlock(&h->hdr->endpoint_lock);
}

/* Under endpoint_lock: one more (+1, and one more hide) or one fewer (-1)
 * endpoint hidden with its entries (arena_header.hidden). */
static void hidden_add(shmg_t *h, int delta)
{
	uint64_t w = load_relaxed(&h->hdr->hidden);
	uint32_t hides = (uint32_t)(w >> 32) + (delta > 0), n = (uint32_t)w + (uint32_t)delta;
	/* Seq-cst: ordered before the live_gen store that hides the entries. */
	__atomic_store_n(&h->hdr->hidden, (uint64_t)hides << 32 | n, __ATOMIC_SEQ_CST);
}

static int ofd_lock(int fd, uint32_t slot, short type, int cmd, struct flock *out)
{
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = slot, .l_len = 1};
	if (fcntl(fd, cmd, &fl) < 0)
		return -errno;
	if (out)
		*out = fl;
	return 0;
}

int endpoint_alive(shmg_t *h, uint32_t slot, uint32_t gen)
{
	if (slot >= h->geo.max_endpoints)
		return 0;
	struct endpoint_slot *ep = endpoint_at(h, slot);
	uint32_t st = load_acquire(&ep->state);
	if (load_relaxed(&ep->gen) != gen || st == EP_FREE)
		return 0;
	if (slot == h->slot && gen == h->gen)
		return 1;
	struct flock fl = {0};
	if (h->lock_fd < 0 || ofd_lock(h->lock_fd, slot, F_WRLCK, F_OFD_GETLK, &fl) < 0)
		return 1; /* cannot tell: never reap on doubt */
	return fl.l_type != F_UNLCK;
}

/* Under endpoint_lock: a FREE slot whose liveness lock we now hold.  The
 * lock is taken before the slot is published as OPENING, so a reaper never
 * sees a claimed slot without its lock. */
static int claim_free_slot(shmg_t *h, uint32_t from)
{
	uint32_t n = h->geo.max_endpoints;
	for (uint32_t i = from; i < n; i++) {
		if (endpoint_at(h, i)->state != EP_FREE)
			continue;
		int rc = ofd_lock(h->lock_fd, i, F_WRLCK, F_OFD_SETLK, NULL);
		if (rc == 0)
			return (int)i;
		if (rc != -EAGAIN && rc != -EACCES)
			return rc;
		/* Still locked: its last owner is between FREE and closing its
		 * descriptor.  Take another slot. */
	}
	return -EUSERS;
}

/* How many slots whose mailbox a stopped producer holds an open skips
 * before it gives up with -EBUSY (each costs the mailbox lock's wait). */
#define BUSY_MAILBOX_SKIPS 3

int endpoint_claim(shmg_t *h)
{
	int rc = endpoint_lock(h);
	if (rc < 0)
		return rc;
	uint32_t from = 0, gen;
	struct endpoint_slot *ep;
	int slot;
	for (unsigned skips = 0;; skips++) {
		slot = claim_free_slot(h, from);
		if (slot < 0 && from == 0) {
			/* Full: dead endpoints may be holding slots. */
			endpoint_unlock(h);
			endpoint_reap_all(h);
			if ((rc = endpoint_lock(h)) < 0)
				return rc;
			slot = claim_free_slot(h, 0);
		}
		if (slot < 0) {
			endpoint_unlock(h);
			return skips ? -EBUSY : slot;
		}
		ep = endpoint_at(h, (uint32_t)slot);
		/* The high-water mark before the slot leaves FREE: reaps visit
		 * only [0, hwm), and an opener killed from here on leaves a slot
		 * that the next reap must find. */
		if ((uint32_t)slot + 1 > h->hdr->endpoint_hwm)
			store_release(&h->hdr->endpoint_hwm, (uint32_t)slot + 1);
		TEST_POINT("open:claimed");
		/* A slot's mailbox lock is initialised on its first use ever; later
		 * owners reset the ring under that lock (a producer may still
		 * hold it). */
		if (ep->gen == 0 && (rc = mailbox_init(h, (uint32_t)slot)) < 0) {
			ofd_lock(h->lock_fd, (uint32_t)slot, F_UNLCK, F_OFD_SETLK, NULL);
			endpoint_unlock(h);
			return rc;
		}
		gen = ep->gen + 1 ? ep->gen + 1 : 1;
		store_relaxed(&ep->gen, gen);
		ep->pid = (int32_t)getpid();
		ep->flags = 0;
		ep->batch_done = 0;
		ep->terminated = 0; /* a conflict lost by the slot's last owner */
		if (proc_start_time(getpid(), &ep->start_time) < 0)
			ep->start_time = 0;
		ep->opened_ns = now_realtime_ns();
		store_release(&ep->state, EP_OPENING);
		store_relaxed(&ep->read_epoch, 0);
		TEST_POINT("open:opening");
		if ((rc = mailbox_reset(h, (uint32_t)slot, gen)) == 0)
			break;
		store_release(&ep->state, EP_FREE);
		ofd_lock(h->lock_fd, (uint32_t)slot, F_UNLCK, F_OFD_SETLK, NULL);
		/* A stopped producer holds this slot's mailbox: try the next. */
		if (rc != -EBUSY || skips + 1 >= BUSY_MAILBOX_SKIPS) {
			endpoint_unlock(h);
			return rc;
		}
		from = (uint32_t)slot + 1;
	}
	store_release(&ep->state, EP_LIVE);
	store_release(&h->live_gen[slot], gen); /* entries of this endpoint become visible */
	h->hdr->endpoints_live++;
	TEST_POINT("open:live");
	__atomic_add_fetch(&h->hdr->endpoint_epoch, 1, __ATOMIC_RELEASE);
	endpoint_unlock(h);
	h->slot = (uint32_t)slot;
	h->gen = gen;
	h->ep = ep;
	reaper_poke(h);
	return 0;
}

struct owner_ctx {
	uint32_t slot, gen;
	uint8_t kind;
};

static bool owned_by(const shmg_t *h, const struct entry *e, const void *arg)
{
	const struct owner_ctx *o = arg;
	return entry_role(e) == o->kind && e->node == h->node && e->ep_slot == o->slot &&
	       e->ep_gen == o->gen;
}

/* Shards where the endpoint may have entries: those its counters name, and,
 * for another endpoint, one whose lock it held last (it may have died there
 * between publishing an entry and counting it; taking the lock repairs the
 * count).  Counters of a closing endpoint only go down, so a shard left out
 * here gets none of its entries while the removal runs. */
static bool has_entries_on(const shmg_t *h, uint32_t s, uint32_t slot, uint32_t gen)
{
	const struct shard_header *sh = shard_at(h, s);
	if (load_relaxed(&shard_ep_entries(h, s)[slot]))
		return true;
	return (slot != h->slot || gen != h->gen) && load_relaxed(&sh->owner_slot) == slot &&
	       load_relaxed(&sh->owner_gen) == gen;
}

#define HELD(held, s) ((held)[(s) / 64] >> ((s) % 64) & 1)

/* Removes every entry of the endpoint with the locks of all the shards where
 * it has entries held (taken in ascending order, the one place more than one
 * is held), so its monitors get one batch — unregistered events, then left —
 * and no other write to any of its keys can come between them.
 * -EBUSY if a lock stayed held, or a limbo ring full, until deadline_ns: then
 * the batch has not gone out (lock) or the rest of the entries stay, hidden
 * and after their batch (ring); either way the next remover finishes. */
static int remove_all_entries(shmg_t *h, uint32_t slot, uint32_t gen, int reason,
			      uint64_t deadline_ns)
{
	uint32_t n = h->geo.shards;
	uint64_t held[MAX_SHARDS / 64] = {0};
	long removed = 0;
	int rc = 0;
	for (uint32_t s = 0; s < n && rc == 0; s++)
		if (has_entries_on(h, s, slot, gen) &&
		    (rc = shard_lock_until(h, s, deadline_ns, 0)) == 0)
			held[s / 64] |= 1ull << (s % 64);
	struct endpoint_slot *ep = endpoint_at(h, slot);
	/* A second remover of the same death may get the locks after the first
	 * one finished and the slot was claimed again: the flags and progress
	 * below are the new owner's then, and there is nothing left to do. */
	if (rc == 0 && load_acquire(&ep->gen) == gen) {
		/* The batch goes out first (unregistered, then left), then the
		 * entries go, silently: see shard.c on why that order is safe. */
		static const uint8_t order[] = {K_REG, K_MEMBER, K_MONITOR};
		if (ep->flags & EPF_CLOSED)
			reason = REASON_NORMAL; /* its owner closed it; we finish */
		if (load_relaxed(&ep->terminated) == REASON_CONFLICT)
			reason = REASON_CONFLICT; /* ended by the agent; whoever finishes */
		if (!(ep->flags & EPF_EVENTS_SENT)) {
			/* A remover killed while delivering recorded how far it got:
			 * the batch (recomputed from the same entries) goes on from
			 * there, not again to the monitors that have it. */
			h->deliver_from = ep->batch_done;
			events_batch_begin(h);
			for (unsigned i = 0; i < 2; i++) {
				struct owner_ctx o = {slot, gen, order[i]};
				for (uint32_t s = 0; s < n; s++)
					/* Trustworthy only now that the lock is held: a
					 * writer killed between publishing and counting
					 * leaves it short until the repair that taking
					 * the lock ran. */
					if (HELD(held, s) && shard_ep_entries(h, s)[slot])
						shard_emit_matching(h, s, owned_by, &o, order[i],
								    reason);
			}
			h->progress_word = &ep->batch_done;
			events_batch_flush(h);
			h->progress_word = NULL;
			h->deliver_from = 0;
			ep->flags |= EPF_EVENTS_SENT; /* under every lock it needs */
			TEST_POINT("reap:events-sent");
		}
		h->suppress_events = true;
		for (unsigned i = 0; i < sizeof(order) && rc == 0; i++) {
			struct owner_ctx o = {slot, gen, order[i]};
			for (uint32_t s = 0; s < n && rc == 0; s++) {
				if (!HELD(held, s) || !shard_ep_entries(h, s)[slot])
					continue;
				long r = shard_remove_matching(h, s, owned_by, &o, reason,
							       deadline_ns);
				if (r < 0)
					rc = (int)r;
				else
					removed += r;
			}
		}
		h->suppress_events = false;
	}
	for (uint32_t s = n; s-- > 0;)
		if (HELD(held, s))
			shard_unlock(h, s);
	if (rc == 0 && reason == REASON_EXIT)
		sg_log(h, SHMG_LOG_INFO, "reaped endpoint n%u.%u.%u (pid %d): %ld entries", h->node,
		       slot, gen, endpoint_at(h, slot)->pid, removed);
	if (rc == -EBUSY)
		sg_log(h, SHMG_LOG_INFO,
		       "endpoint n%u.%u.%u: a shard stayed busy, removal left to the next reap",
		       h->node, slot, gen);
	return rc;
}

static int release_until(shmg_t *h, uint32_t slot, uint32_t gen, int reason,
			 uint64_t deadline_ns)
{
	struct endpoint_slot *ep = endpoint_at(h, slot);
	int rc = endpoint_lock(h);
	if (rc < 0)
		return rc;
	/* Liveness was judged without the lock; judge again under it, since an
	 * endpoint that was still being opened then is live now (pairs with
	 * claim_free_slot taking the liveness lock first). */
	if (ep->gen != gen || ep->state == EP_FREE ||
	    (reason == REASON_EXIT && endpoint_alive(h, slot, gen))) {
		endpoint_unlock(h);
		return 0;
	}
	if (reason == REASON_NORMAL)
		ep->flags |= EPF_CLOSED;
	if (ep->state != EP_CLOSING) /* a removal redone is counted already */
		hidden_add(h, 1);
	store_release(&ep->state, EP_CLOSING);
	store_release(&h->live_gen[slot], 0); /* hides all its entries at once */
	endpoint_unlock(h);
	TEST_POINT("close:removing");

	/* On -EBUSY the slot stays CLOSING with its entries hidden: the slot
	 * must not be reused while they remain.  Whoever reaps next finishes. */
	if ((rc = remove_all_entries(h, slot, gen, reason, deadline_ns)) < 0)
		return rc;
	mailbox_retire(h, slot, gen);
	if (reason == REASON_EXIT)
		mailbox_rewake_orphans(h); /* it may have died mid-delivery */

	if ((rc = endpoint_lock(h)) < 0)
		return rc;
	if (ep->gen == gen && ep->state != EP_FREE) {
		store_release(&ep->read_epoch, 0);
		/* Our own endpoint: drop the liveness lock before the slot can be
		 * claimed again (a dead owner's lock is gone already). */
		if (slot == h->slot && gen == h->gen)
			ofd_lock(h->lock_fd, slot, F_UNLCK, F_OFD_SETLK, NULL);
		store_release(&ep->state, EP_FREE);
		hidden_add(h, -1);
		h->hdr->endpoints_live--;
		__atomic_add_fetch(&h->hdr->endpoint_epoch, 1, __ATOMIC_RELEASE);
	}
	endpoint_unlock(h);
	return 0;
}

int endpoint_release(shmg_t *h, uint32_t slot, uint32_t gen, int reason)
{
	return release_until(h, slot, gen, reason, busy_deadline(h));
}

static int terminate_until(shmg_t *h, uint32_t slot, uint32_t gen, uint64_t deadline_ns)
{
	struct endpoint_slot *ep = endpoint_at(h, slot);
	int rc = endpoint_lock(h);
	if (rc < 0)
		return rc;
	/* `terminated` again under the lock: a reaper read it without, and the
	 * slot may have been closed and opened again since. */
	if (ep->gen != gen || ep->state == EP_FREE || ep->terminated != REASON_CONFLICT) {
		endpoint_unlock(h);
		return -ENOENT;
	}
	/* Hidden at once, as a death is: one store makes every entry of it
	 * disappear for readers.  Its owner lives on (the slot stays
	 * CLOSING, counted hidden, until it closes or dies), reading its
	 * last records. */
	if (ep->state != EP_CLOSING)
		hidden_add(h, 1);
	store_release(&ep->state, EP_CLOSING);
	store_release(&h->live_gen[slot], 0);
	endpoint_unlock(h);
	TEST_POINT("terminate:hidden");
	return remove_all_entries(h, slot, gen, REASON_CONFLICT, deadline_ns);
}

int endpoint_terminate(shmg_t *h, uint32_t slot, uint32_t gen)
{
	return terminate_until(h, slot, gen, busy_deadline(h));
}

/* A live endpoint whose termination its evictor did not finish (killed
 * after setting `terminated`): not yet hidden, its batch not sent, or
 * entries left.  Read without locks; terminate_until checks again. */
static bool termination_unfinished(const shmg_t *h, uint32_t slot)
{
	const struct endpoint_slot *ep = endpoint_at(h, slot);
	if (load_relaxed(&ep->terminated) != REASON_CONFLICT)
		return false;
	if (load_acquire(&ep->state) != EP_CLOSING || !(load_relaxed(&ep->flags) & EPF_EVENTS_SENT))
		return true;
	for (uint32_t s = 0; s < h->geo.shards; s++)
		if (load_relaxed(&shard_ep_entries(h, s)[slot]))
			return true;
	return false;
}

int endpoint_reap_all(shmg_t *h)
{
	/* One budget for the sweep: a stopped writer costs it once, and the
	 * endpoints after the one it held up are tried without waiting. */
	uint64_t deadline = busy_deadline(h);
	int n = 0, busy = 0;
	uint32_t hwm = load_acquire(&h->hdr->endpoint_hwm);
	for (uint32_t i = 0; i < hwm && i < h->geo.max_endpoints; i++) {
		struct endpoint_slot *ep = endpoint_at(h, i);
		if (load_acquire(&ep->state) == EP_FREE)
			continue;
		uint32_t gen = load_relaxed(&ep->gen);
		bool alive = endpoint_alive(h, i, gen);
		if (alive && !termination_unfinished(h, i))
			continue;
		/* A live endpoint ended by the host agent is finished as its
		 * evictor would have, and not counted: it is not dead. */
		int rc = alive ? terminate_until(h, i, gen, deadline)
			       : release_until(h, i, gen, REASON_EXIT, deadline);
		if (rc == -EBUSY) {
			busy = rc;
			continue;
		}
		if (rc == -ENOENT)
			continue; /* closed or ended meanwhile */
		if (rc < 0)
			return rc;
		n += !alive;
	}
	return busy ? busy : n;
}

int shmg_reap(shmg_t *h)
{
	int rc = handle_check(h);
	return rc ? rc : endpoint_reap_all(h);
}
