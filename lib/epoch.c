/* SPDX-License-Identifier: MIT */
/*
 * Cross-process read sections and deferred reclamation (epoch-based, the
 * liburcu-memb algorithm moved into the arena).
 *
 * Shared state: hdr->epoch (global epoch G, bumped only here, by any writer);
 * each endpoint's read_epoch (written by its owner: G at read entry, 0 at
 * exit; cleared by a reclaimer only after proving the owner dead); each
 * shard's limbo ring (written under the shard lock).
 *
 * Ordering.  A writer unlinks an object with a release store, then a seq_cst
 * fence, then reads G as the object's stamp.  A grace period increments G,
 * issues membarrier(GLOBAL_EXPEDITED), then scans read_epoch.  A reader stores
 * G into its slot followed only by a compiler barrier (read_enter in
 * internal.h); the membarrier makes that pair ordered: either the scan sees the
 * reader's announcement, or the reader's later loads see the unlink.  An
 * object stamped r is freed once every slot is 0 or > r.  Processes that
 * could not register for membarrier use a full fence in read_enter instead.
 *
 * A reader that is stopped inside a section (SIGSTOP, a debugger) is alive
 * and holds back every block retired after it entered.  Once a shard's ring
 * is full, writers on it wait for room with a growing back-off, and only
 * until their busy deadline: then -EBUSY, before they changed anything.
 *
 * Crash windows.  A reader killed inside a section leaves a stale read_epoch:
 * a reclaimer that finds a slot holding back the oldest stamp checks whether
 * its owner is alive and clears it if not.  A writer killed between unlinking
 * and queuing (or between dequeuing and freeing) leaves a block that is
 * neither reachable nor queued, or queued but free: repair_shard rebuilds the
 * free lists from reachability and the ring, and queues (epoch_defer) what a
 * reader may still hold instead of waiting for a grace period.
 */
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static uint32_t membarrier_fork_gen = UINT32_MAX;
static bool membarrier_ok;

static int membarrier(int cmd)
{
	return (int)syscall(SYS_membarrier, cmd, 0, 0);
}

void epoch_process_init(shmg_t *h)
{
	/* Registration does not survive fork, so redo it per fork generation. */
	uint32_t gen = atomic_load(&handle_fork_gen);
	if (__atomic_load_n(&membarrier_fork_gen, __ATOMIC_ACQUIRE) != gen) {
		bool ok = membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0;
		__atomic_store_n(&membarrier_ok, ok, __ATOMIC_RELAXED);
		__atomic_store_n(&membarrier_fork_gen, gen, __ATOMIC_RELEASE);
	}
	h->use_fence = !__atomic_load_n(&membarrier_ok, __ATOMIC_RELAXED);
}

/* Starts a grace period: returns the new epoch after the barrier. */
static uint64_t grace_begin(shmg_t *h)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST); /* order prior unlinks before the bump */
	uint64_t g = __atomic_add_fetch(&h->hdr->epoch, 1, __ATOMIC_SEQ_CST);
	if (membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) != 0)
		__atomic_thread_fence(__ATOMIC_SEQ_CST); /* readers fence themselves then */
	return g;
}

/* A reader slot whose epoch is e, blocking progress: clear it if its owner is
 * dead.  Returns true if it was cleared. */
static bool clear_if_dead(shmg_t *h, uint32_t slot, uint64_t e)
{
	struct endpoint_slot *ep = endpoint_at(h, slot);
	if (ep == h->ep)
		return false;
	uint32_t gen = load_acquire(&ep->gen);
	if (endpoint_alive(h, slot, gen))
		return false;
	return __atomic_compare_exchange_n(&ep->read_epoch, &e, 0, false, __ATOMIC_ACQ_REL,
					   __ATOMIC_RELAXED);
}

/* Smallest announced epoch of any other live reader (UINT64_MAX if none);
 * slots at or below `blocking` are checked for a dead owner. */
static uint64_t min_reader_epoch(shmg_t *h, uint64_t blocking)
{
	uint64_t min = UINT64_MAX;
	uint32_t hwm = load_acquire(&h->hdr->endpoint_hwm);
	for (uint32_t i = 0; i < hwm && i < h->geo.max_endpoints; i++) {
		struct endpoint_slot *ep = endpoint_at(h, i);
		uint64_t e = load_acquire(&ep->read_epoch); /* pairs with read_exit's release */
		if (!e || ep == h->ep)
			continue;
		if (e <= blocking && clear_if_dead(h, i, e))
			continue;
		if (e < min)
			min = e;
	}
	return min;
}

static void limbo_free(shmg_t *h, uint32_t shard, const struct limbo_item *it)
{
	if (it->kind == LIMBO_EXTENT)
		alloc_free_extent(h, shard, it->ref);
	else if (it->kind == LIMBO_BLOCK)
		alloc_free_block(h, shard, it->ref);
	/* Anything else is an item repair dropped (kind 0): nothing to free. */
}

uint32_t epoch_reclaim(shmg_t *h, uint32_t shard)
{
	struct shard_header *sh = shard_at(h, shard);
	struct limbo_item *ring = shard_limbo(h, shard);
	uint32_t tail = sh->limbo_tail, head = sh->limbo_head;
	if (tail == head)
		return 0;
	if (head - tail > LIMBO_CAP) {
		/* Damaged cursors: what they span is not a queue.  Drop it; the
		 * blocks it held leak until a repair or shmg_check finds them,
		 * which is better than freeing garbage or looping 2^32 times. */
		sg_log(h, SHMG_LOG_INFO, "shard %u: damaged limbo ring dropped", shard);
		store_relaxed(&sh->limbo_tail, head);
		return 0;
	}
	grace_begin(h);
	uint64_t min = min_reader_epoch(h, ring[tail % LIMBO_CAP].stamp);
	uint32_t freed = 0;
	while (tail != head) {
		struct limbo_item it = ring[tail % LIMBO_CAP]; /* a copy: checked, then used */
		if (it.stamp >= min)
			break;
		store_relaxed(&sh->limbo_tail, ++tail);
		TEST_POINT("reclaim:popping");
		limbo_free(h, shard, &it);
		freed++;
	}
	return freed;
}

static void limbo_push(shmg_t *h, uint32_t shard, uint64_t stamp, uint32_t ref, uint32_t kind)
{
	struct shard_header *sh = shard_at(h, shard);
	struct limbo_item *it = &shard_limbo(h, shard)[sh->limbo_head % LIMBO_CAP];
	it->stamp = stamp;
	it->ref = ref;
	it->kind = kind;
	store_release(&sh->limbo_head, sh->limbo_head + 1);
}

/* A reader that stays inside its section (stopped, or in a debugger) keeps
 * the ring full: each try costs a grace period, a membarrier that interrupts
 * every CPU, so the waits between tries grow from 50 us to 5 ms. */
#define ROOM_WAIT_MIN_NS 50000u
#define ROOM_WAIT_MAX_NS 5000000u

int epoch_make_room(shmg_t *h, uint32_t shard, uint32_t n, uint64_t deadline_ns)
{
	struct shard_header *sh = shard_at(h, shard);
	uint64_t wait = ROOM_WAIT_MIN_NS;
	while ((uint64_t)(sh->limbo_head - sh->limbo_tail) + n > LIMBO_CAP) {
		if (epoch_reclaim(h, shard)) {
			wait = ROOM_WAIT_MIN_NS;
			continue;
		}
		uint64_t now = now_monotonic_ns();
		if (now >= deadline_ns)
			return -EBUSY;
		if (wait > deadline_ns - now)
			wait = deadline_ns - now;
		struct timespec ts = {0, (long)wait};
		nanosleep(&ts, NULL);
		wait = wait * 2 < ROOM_WAIT_MAX_NS ? wait * 2 : ROOM_WAIT_MAX_NS;
	}
	return 0;
}

int epoch_retire(shmg_t *h, uint32_t shard, uint32_t ref, uint32_t kind)
{
	struct shard_header *sh = shard_at(h, shard);
	/* The unlink (a release store by the caller) must be visible before we
	 * read the stamp; see the ordering argument above. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	uint64_t stamp = load_relaxed(&h->hdr->epoch);
	/* Writers made room before changing anything (shard_lock_until); only
	 * a repair can get here with the ring full.  If a reader keeps it full
	 * past the budget, the block is left unqueued rather than waiting
	 * without end: it is never freed under anyone, shmg_check reports it,
	 * and REPAIR_LEAKED has a later locker repair the shard (so free it)
	 * once the ring has drained. */
	if (sh->limbo_head - sh->limbo_tail >= LIMBO_CAP &&
	    epoch_make_room(h, shard, 1, busy_deadline(h)) < 0) {
		sg_log(h, SHMG_LOG_INFO, "shard %u: limbo ring full, a retired block is kept",
		       shard);
		if (sh->repair_pending == REPAIR_NONE)
			sh->repair_pending = REPAIR_LEAKED;
		return -EBUSY;
	}
	limbo_push(h, shard, stamp, ref, kind);
	if (sh->limbo_head - sh->limbo_tail >= LIMBO_RECLAIM_AT)
		epoch_reclaim(h, shard);
	return 0;
}

int epoch_defer(shmg_t *h, uint32_t shard, uint32_t ref, uint32_t kind)
{
	struct shard_header *sh = shard_at(h, shard);
	__atomic_thread_fence(__ATOMIC_SEQ_CST); /* as in epoch_retire */
	uint64_t stamp = load_relaxed(&h->hdr->epoch);
	if (sh->limbo_head - sh->limbo_tail >= LIMBO_CAP)
		return -ENOSPC;
	limbo_push(h, shard, stamp, ref, kind);
	return 0;
}
