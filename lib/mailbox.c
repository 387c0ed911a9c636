/* SPDX-License-Identifier: MIT */
/*
 * Mailboxes: one bounded ring of event records per endpoint slot.
 *
 * Producers are any process (writers delivering events, dispatchers).  They
 * serialise on the mailbox's robust mutex, never wait for the consumer, and
 * append a whole batch or nothing: if it does not fit, or if records were
 * already dropped and the consumer has not yet been told, the batch is counted
 * in `dropped` instead.  Nor do they wait long for each other: one that cannot
 * get the lock within PATIENCE_NS (its holder is stopped, say), or at once
 * when a drop is pending anyway, counts its batch in `dropped` without it.
 * The consumer (the owning endpoint, alone) copies records out, advances head
 * (release; producers acquire it to compute free space) and, once the ring is
 * empty, turns a non-zero `dropped` into one SHMG_EV_OVERFLOW marker.  So
 * nothing is lost silently, and everything delivered before the first drop is
 * received before the marker.
 *
 * Wakeups.  `signalled` is 0 while the consumer is armed: it found the ring
 * empty and will sleep.  The producer that flips it to 1 wakes the consumer,
 * with FUTEX_WAKE on `signalled` when the consumer sleeps in shmg_receive
 * (`sleeping`; if that wakes nobody, the FIFO too, see mb_wake), else with
 * one byte to the consumer's FIFO (wake_fifo.c) or,
 * when the producer cannot use that, one datagram to the consumer's socket.
 * shmg_fd() returns an epoll set of both for poll/epoll.  The consumer
 * drains them, clears `sleeping` and `signalled`, sets `sleeping` again if
 * it is to wait in shmg_receive, and looks at the ring once more before it
 * waits (`sleeping` stays set after the wait: nothing reads it until the
 * next re-arm); all of these are seq_cst, so a producer either
 * sees the re-arm or its record is seen by that last look.  So the
 * descriptor is readable while records wait, and a blocked receive wakes
 * without a round trip through either.
 *
 * The socket is bound to an abstract name made of the arena incarnation and
 * a random 64-bit nonce that the owner publishes in its mailbox header
 * (`wake_nonce`), so the name cannot be foreseen: another local user, who can
 * list bound names in /proc/net/unix but cannot read or write the arena,
 * cannot squat it (a taken name, unlikely as it is, means another nonce, never
 * a failed open) nor point producers elsewhere.  Anyone may still send a
 * datagram to a name they can list; a datagram is only a hint (the ring is the
 * truth), so a foreign one costs the consumer an empty receive and nothing
 * else, and draining is bounded so a flood cannot hold a receive.  The
 * reaper's poke socket is named the same way (hdr->reaper_wake).  A wakeup is
 * on the writer's path, inside its shard and mailbox locks: the name is put
 * together without printf, and a producer's sending socket stays connected
 * to the consumer it woke last (wake_send).
 *
 * Crash windows.  The wakeup is done before the producer unlocks.  A producer
 * killed mid-append leaves tail unpublished: the partial bytes are overwritten
 * by the next producer.  One killed after publishing, before or during its
 * wakeup, leaves the lock owner-dead: whoever takes it next redoes the wakeup
 * both ways (mb_rewake), the next producer in mb_lock or, if none comes, the
 * reap of the dead producer's endpoint (mailbox_rewake_orphans).  So a set
 * `signalled` means a wakeup done, or owed by the holder of an owner-dead
 * lock.  A consumer killed mid-receive leaves head where it was: the endpoint
 * is dead, and the slot's next owner resets the mailbox.  A sleeping consumer
 * re-arms every RECHECK_NS anyway, so a wakeup lost to a scribbled header or
 * to a dead producer nobody reaps is a delay, not a hang.
 */
#include <linux/futex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define WAKE_BIND_TRIES 16
/* A sleeping consumer re-arms and looks at its ring at least this often, so
 * a wakeup lost to a process scribbling on the mailbox header (or to a dead
 * producer nobody has reaped yet) is a delay, not a hang. */
#define RECHECK_NS (5 * 1000000000ull)
/* The longest anyone waits for a mailbox lock: not the handle's busy budget,
 * which a reaper cuts to one interval, since giving up costs the consumer an
 * overflow it must resync from, and a holder merely descheduled on a loaded
 * machine must not cause one.  A writer waits here holding its shard lock, so
 * this stays below the default budget. */
#define PATIENCE_NS (1000 * 1000000ull)

struct mailbox_header *mailbox_at(const shmg_t *h, uint32_t slot)
{
	return (struct mailbox_header *)(h->base + h->geo.off_mailboxes +
					 (uint64_t)slot * h->geo.mailbox_bytes);
}

static uint32_t ring_bytes(const shmg_t *h)
{
	return h->geo.mailbox_bytes - (uint32_t)sizeof(struct mailbox_header);
}

static uint8_t *ring_at(struct mailbox_header *mb)
{
	return (uint8_t *)(mb + 1);
}

static char *put_str(char *p, const char *s)
{
	size_t n = strlen(s);
	memcpy(p, s, n);
	return p + n;
}

static char *put_hex64(char *p, uint64_t v)
{
	for (int i = 15; i >= 0; i--, v >>= 4)
		p[i] = "0123456789abcdef"[v & 15];
	return p + 16;
}

static uint32_t mb_slot(const shmg_t *h, const struct mailbox_header *mb)
{
	return (uint32_t)(((const uint8_t *)mb - h->base - h->geo.off_mailboxes) /
			  h->geo.mailbox_bytes);
}

/* An abstract name nobody can foresee: "shmgroup.<incarnation>.<what>.<nonce>",
 * the arena incarnation (for `ss -x`), the role and a random nonce the binder
 * publishes in the arena.  Another user sees a name in /proc/net/unix only
 * once it is bound, too late to squat it, and cannot write the arena to
 * redirect producers elsewhere.  At most 50 bytes of sun_path's 108.
 * Formatted by hand: a producer names its consumer on a wakeup, inside its
 * locks, where snprintf cost two fifths of a whole register. */
static socklen_t wake_addr(const shmg_t *h, const char *what, uint64_t nonce, struct sockaddr_un *a)
{
	a->sun_family = AF_UNIX;
	char *p = a->sun_path;
	*p++ = 0; /* abstract */
	p = put_str(p, "shmgroup.");
	p = put_hex64(p, h->geo.incarnation);
	*p++ = '.';
	p = put_str(p, what); /* "mb" or "reaper" */
	*p++ = '.';
	p = put_hex64(p, nonce);
	return (socklen_t)(p - (char *)a);
}

uint64_t wake_nonce_new(void)
{
	static _Atomic uint64_t counter;
	uint64_t v;
	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v))
		/* No entropy yet: unique in this process at least; a collision
		 * with a guessing squatter only costs a retry. */
		v = now_monotonic_ns() ^ ((uint64_t)getpid() << 40) ^
		    (atomic_fetch_add(&counter, 1) * 0x9e3779b97f4a7c15ull);
	return v ? v : 1; /* 0 = no socket */
}

int wake_bind(const shmg_t *h, const char *what, uint64_t *nonce)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A taken name is someone else's socket, never a reason to fail. */
	for (int tries = 0; tries < WAKE_BIND_TRIES; tries++) {
		struct sockaddr_un a;
		uint64_t n = wake_nonce_new();
		if (bind(fd, (struct sockaddr *)&a, wake_addr(h, what, n, &a)) == 0) {
			*nonce = n;
			return fd;
		}
		if (errno != EADDRINUSE)
			break;
	}
	int rc = errno == EADDRINUSE ? -EADDRNOTAVAIL : -errno;
	close(fd);
	return rc;
}

int wake_open(shmg_t *h)
{
	h->wake_out = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (h->wake_out < 0)
		return -errno; /* without it this handle's wakeups would be lost */
	h->mb_sock = wake_bind(h, "mb", &h->wake_nonce);
	if (h->mb_sock < 0)
		return h->mb_sock;
	/* The FIFO joins the set when the slot is claimed (mailbox_reset). */
	h->mb_fd = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = h->mb_sock};
	if (h->mb_fd < 0 || epoll_ctl(h->mb_fd, EPOLL_CTL_ADD, h->mb_sock, &ev) < 0)
		return -errno;
	return 0;
}

/* Connects wake_out to the socket `what`.`nonce`: a send then skips the
 * name lookup, and wakeups mostly go to the consumer woken last. */
static bool wake_connect(shmg_t *h, const char *what, uint64_t nonce)
{
	struct sockaddr_un a;
	/* A failed connect keeps the old peer: forget it, so nothing is sent. */
	h->wake_peer = 0;
	if (connect(h->wake_out, (struct sockaddr *)&a, wake_addr(h, what, nonce, &a)) < 0)
		return false; /* nobody bound to it: nobody to wake */
	h->wake_peer = nonce;
	h->wake_peer_role = what;
	return true;
}

void wake_send(shmg_t *h, const char *what, uint64_t nonce)
{
	if (h->wake_out < 0 || !nonce)
		return;
	if ((h->wake_peer != nonce || strcmp(h->wake_peer_role, what) != 0) &&
	    !wake_connect(h, what, nonce))
		return;
	char b = 1;
	/* A hint only: a full queue (EAGAIN) is a readable socket already, and
	 * a peer that closed its socket is a consumer gone (its slot's next
	 * owner binds under a new nonce); connect afresh next time. */
	if (send(h->wake_out, &b, 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && errno != EAGAIN)
		h->wake_peer = 0;
}

void wake_drain(int fd)
{
	/* Bounded: anyone may send to an abstract name, and a sender as fast as
	 * this loop must not keep it here.  The kernel queues only a few
	 * datagrams per receiver, so this empties an honest queue. */
	char buf[64];
	for (int i = 0; i < 64 && recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0; i++)
		;
}

/* Empties what of the socket and the FIFO is readable: one epoll_wait when
 * neither is, as a consumer sleeping in shmg_receive finds them. */
static void wake_drain_own(shmg_t *h)
{
	struct epoll_event ev[2];
	int n = epoll_wait(h->mb_fd, ev, 2, 0);
	for (int i = 0; i < n; i++) {
		if (ev[i].data.fd == h->mb_sock)
			wake_drain(h->mb_sock);
		else
			wake_fifo_drain(h);
	}
}

/* Wakes the consumer whichever way it waits.  Producers call it under the
 * mailbox lock: one killed before the wake completed leaves the lock
 * owner-dead, and whoever takes it next does this again.  A futex wake that
 * finds nobody waiting goes to the descriptor as well: `sleeping` may be
 * stale (its owner killed asleep) or scribbled on while the consumer waits
 * in epoll, or the consumer is between setting it and its wait, which then
 * returns at once; a spare byte costs it an empty look, a missing one a
 * lost wakeup. */
static void mb_wake(shmg_t *h, struct mailbox_header *mb, uint32_t slot, uint32_t gen, bool futex,
		    bool fd)
{
	if (futex && syscall(SYS_futex, &mb->signalled, FUTEX_WAKE, 1, NULL, NULL, 0) > 0 && !fd)
		return;
	if (!wake_fifo_send(h, slot, gen, mb))
		wake_send(h, "mb", load_relaxed(&mb->wake_nonce));
}

/* The lock's last holder died holding it: between publishing a batch and
 * completing its wakeup, perhaps.  Wake the consumer again, both ways; a
 * spare wakeup only costs it an empty receive. */
static void mb_rewake(shmg_t *h, struct mailbox_header *mb)
{
	pthread_mutex_consistent(&mb->lock);
	uint32_t gen = load_relaxed(&mb->gen);
	if (!gen)
		return; /* retired: nobody to wake */
	/* Makes a futex wait that has not started yet return at once (pairs
	 * with the consumer's seq_cst re-arm in shmg_receive). */
	__atomic_store_n(&mb->signalled, 1, __ATOMIC_SEQ_CST);
	mb_wake(h, mb, mb_slot(h, mb), gen, true, true);
}

/* Takes the mailbox lock, or gives up with -EBUSY after PATIENCE_NS; a
 * producer (producer = true) also gives up at once when a drop is pending,
 * its batch would be dropped anyway.  The holder may be stopped (SIGSTOP, a
 * debugger): a stopped process must cost others an error or an overflow
 * marker, not a hang.  A holder that died leaves the ring as it was (an
 * unpublished tail is as if the append never began), but perhaps its wakeup
 * owed.  Uncontended, this is one trylock. */
static int mb_lock(shmg_t *h, struct mailbox_header *mb, bool producer)
{
	int rc = pthread_mutex_trylock(&mb->lock);
	if (rc == EBUSY && !(producer && load_relaxed(&mb->dropped))) {
		rc = robust_lock_until(&mb->lock, now_monotonic_ns() + PATIENCE_NS,
				       (uint64_t)h->busy_interval_ms * 1000000u);
	}
	if (rc == EOWNERDEAD) {
		mb_rewake(h, mb);
		rc = 0;
	}
	return rc == ETIMEDOUT ? -EBUSY : -rc;
}

/* The batch could not go in: the consumer hears of it as an overflow.
 * Without the lock, so the wakeup goes both ways whatever the consumer's
 * state, when it is armed or this is the first drop it has not seen; setting
 * `signalled` makes a futex wait not yet begun return. */
static void mb_drop_unlocked(shmg_t *h, struct mailbox_header *mb, uint32_t slot, uint32_t gen,
			     uint32_t count)
{
	if (load_acquire(&mb->gen) != gen)
		return;
	uint32_t before = __atomic_fetch_add(&mb->dropped, count, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&mb->dropped_total, count, __ATOMIC_RELAXED);
	if (__atomic_exchange_n(&mb->signalled, 1, __ATOMIC_SEQ_CST) == 0 || before == 0)
		mb_wake(h, mb, slot, gen, true, true);
}

void mailbox_rewake_orphans(shmg_t *h)
{
	/* A producer that died holding a mailbox lock may have left its
	 * consumer asleep with records waiting, and no later producer may
	 * come: the reap of its endpoint redoes the wakeup.  trylock: a live
	 * holder does its own wakeup. */
	uint32_t hwm = load_acquire(&h->hdr->endpoint_hwm);
	for (uint32_t i = 0; i < hwm && i < h->geo.max_endpoints; i++) {
		if (!load_acquire(&endpoint_at(h, i)->gen))
			continue; /* never used: its mailbox lock is not initialised */
		struct mailbox_header *mb = mailbox_at(h, i);
		int rc = pthread_mutex_trylock(&mb->lock);
		if (rc == EOWNERDEAD) {
			mb_rewake(h, mb);
			rc = 0;
		}
		if (rc == 0)
			pthread_mutex_unlock(&mb->lock);
	}
}

int mailbox_init(shmg_t *h, uint32_t slot)
{
	struct mailbox_header *mb = mailbox_at(h, slot);
	memset(mb, 0, sizeof(*mb));
	return mutex_init_robust(&mb->lock);
}

/* Writes where producers find the owner's wakeup socket and FIFO: in
 * mailbox_reset before gen is published, and again by a receive that finds
 * them scribbled over.  The FIFO's checks go before its nonce, which makes
 * producers look for it. */
static void mb_advertise(const shmg_t *h, struct mailbox_header *mb)
{
	store_relaxed(&mb->wake_nonce, h->wake_nonce);
	store_relaxed(&mb->fifo_uid, h->fifo.uid);
	store_relaxed(&mb->fifo_ino, h->fifo.ino);
	store_relaxed(&mb->fifo_gen, h->fifo.gen);
	store_release(&mb->fifo_nonce, h->fifo.fd >= 0 ? h->fifo.nonce : 0);
}

static bool mb_advertised(const shmg_t *h, const struct mailbox_header *mb)
{
	uint64_t fifo_nonce = h->fifo.fd >= 0 ? h->fifo.nonce : 0;
	return load_relaxed(&mb->wake_nonce) == h->wake_nonce &&
	       load_relaxed(&mb->fifo_nonce) == fifo_nonce &&
	       (!fifo_nonce || (load_relaxed(&mb->fifo_uid) == h->fifo.uid &&
				load_relaxed(&mb->fifo_ino) == h->fifo.ino &&
				load_relaxed(&mb->fifo_gen) == h->fifo.gen));
}

/* Removes the slot's FIFO as `own` (the caller's, when it is the slot's
 * owner) or else the mailbox records it, with the generation recorded too:
 * an owner killed before it advertised its FIFO leaves its predecessor's
 * record, whose name has the predecessor's generation.  The record goes
 * once the FIFO is gone, and stays while it is another user's that we may
 * not remove, for the slot's next owner or shmg_destroy.  Under the
 * mailbox lock. */
static void mb_remove_fifo(shmg_t *h, struct mailbox_header *mb, uint32_t slot,
			   const struct wake_fifo_own *own)
{
	uint64_t nonce = load_relaxed(&mb->fifo_nonce), ino = load_relaxed(&mb->fifo_ino);
	uint32_t uid = load_relaxed(&mb->fifo_uid), gen = load_relaxed(&mb->fifo_gen);
	if (own) {
		nonce = own->nonce;
		ino = own->ino;
		uid = own->uid;
		gen = own->gen;
	}
	if (nonce && wake_fifo_remove(h, slot, gen, nonce, ino, uid) == 0)
		store_relaxed(&mb->fifo_nonce, 0);
}

int mailbox_reset(shmg_t *h, uint32_t slot, uint32_t gen)
{
	struct mailbox_header *mb = mailbox_at(h, slot);
	int rc = mb_lock(h, mb, false);
	if (rc < 0)
		return rc; /* a stopped producer holds it: an error, not a hang */
	/* What a previous owner left that its reaper could not remove. */
	if (load_relaxed(&mb->fifo_gen) != gen)
		mb_remove_fifo(h, mb, slot, NULL);
	/* Made under the lock and advertised at once: an owner killed after
	 * that leaves a record its reaper removes the FIFO by, and the window
	 * in which it leaves one unrecorded (for shmg_destroy) is a few
	 * syscalls, not the wait for the lock.  Without a FIFO (no room in
	 * /dev/shm, say) producers send datagrams. */
	bool fifo = wake_fifo_create(h, slot, gen) == 0;
	store_release(&mb->head, load_relaxed(&mb->tail));
	store_relaxed(&mb->dropped, 0);
	store_relaxed(&mb->delivered, 0);
	store_relaxed(&mb->dropped_total, 0);
	/* Armed, and not asleep: an owner killed in its futex wait left
	 * `sleeping` set, which would send this one's wakeups to a futex
	 * nobody waits on while it waits on its descriptor. */
	store_relaxed(&mb->sleeping, 0);
	store_relaxed(&mb->signalled, 0);
	mb_advertise(h, mb); /* the claimer is the new owner */
	store_release(&mb->gen, gen);
	pthread_mutex_unlock(&mb->lock);
	if (!fifo)
		sg_log(h, SHMG_LOG_INFO, "endpoint n%u.%u.%u: no wakeup FIFO, woken by datagram",
		       h->node, slot, gen);
	return 0;
}

void mailbox_retire(shmg_t *h, uint32_t slot, uint32_t gen)
{
	struct mailbox_header *mb = mailbox_at(h, slot);
	/* Producers drop what they had for it.  A holder stopped mid-append
	 * has checked gen already: its batch lands in a ring nobody reads,
	 * and the slot's next owner resets it. */
	bool locked = mb_lock(h, mb, false) == 0;
	store_release(&mb->gen, 0);
	/* Its FIFO goes once producers no longer look for it (gen is 0);
	 * those that have it open keep writing into the unlinked FIFO. */
	bool own = h->fifo.nonce && h->fifo.slot == slot && h->fifo.gen == gen;
	mb_remove_fifo(h, mb, slot, own ? &h->fifo : NULL);
	if (locked)
		pthread_mutex_unlock(&mb->lock);
}

/* ---- producing ------------------------------------------------------- */

int mb_batch_add(struct mb_batch *b, const struct mailbox_record *r, const char *cluster,
		 const void *key, const void *meta, const void *prev)
{
	size_t need = b->len + r->size;
	if (need > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 4096;
		while (cap < need)
			cap *= 2;
		uint8_t *p = realloc(b->buf, cap);
		if (!p)
			return -ENOMEM;
		b->buf = p;
		b->cap = cap;
	}
	uint8_t *p = b->buf + b->len;
	memcpy(p, r, sizeof(*r));
	p += sizeof(*r);
	if (r->cluster_len)
		memcpy(p, cluster, r->cluster_len);
	p += r->cluster_len;
	memcpy(p, key, r->key_len);
	p += r->key_len;
	if (r->meta_len)
		memcpy(p, meta, r->meta_len);
	p += r->meta_len;
	if (r->prev_len)
		memcpy(p, prev, r->prev_len);
	b->len = need;
	b->count++;
	return 0;
}

/* Space needed for the batch starting at ring offset `pos`, counting pads. */
static uint64_t batch_span(const struct mb_batch *b, uint32_t cap, uint64_t tail)
{
	uint64_t t = tail;
	for (size_t off = 0; off < b->len;) {
		const struct mailbox_record *r = (const void *)(b->buf + off);
		uint32_t pos = (uint32_t)(t % cap);
		if (cap - pos < r->size)
			t += cap - pos;
		t += r->size;
		off += r->size;
	}
	return t - tail;
}

/* Appends the whole batch to the endpoint's mailbox, or counts it dropped. */
int mailbox_deliver(shmg_t *h, uint32_t slot, uint32_t gen, struct mb_batch *b)
{
	int rc = 0;
	if (!b->count || slot >= h->geo.max_endpoints)
		return 0;
	struct mailbox_header *mb = mailbox_at(h, slot);
	if (mb_lock(h, mb, true) < 0) {
		mb_drop_unlocked(h, mb, slot, gen, b->count);
		return -EAGAIN;
	}
	if (load_relaxed(&mb->gen) != gen) {
		pthread_mutex_unlock(&mb->lock);
		return -ESRCH; /* the endpoint is gone */
	}
	uint32_t cap = ring_bytes(h);
	uint64_t tail = mb->tail, head = load_acquire(&mb->head); /* pairs with receive's release */
	tail = (tail + 7) & ~7ull; /* records are 8-aligned; only damage makes this move */
	/* More than a ring's worth between them: damaged (the consumer resets
	 * it); writing on would run off the ring. */
	if (load_relaxed(&mb->dropped) || tail - head > cap ||
	    batch_span(b, cap, tail) > cap - (tail - head)) {
		__atomic_add_fetch(&mb->dropped, b->count, __ATOMIC_RELAXED);
		__atomic_add_fetch(&mb->dropped_total, b->count, __ATOMIC_RELAXED);
		rc = -EAGAIN;
	} else {
		uint32_t batch = mb->batch_seq++;
		uint8_t *ring = ring_at(mb);
		for (size_t off = 0; off < b->len;) {
			struct mailbox_record *r = (void *)(b->buf + off);
			uint32_t pos = (uint32_t)(tail % cap);
			if (cap - pos < r->size) {
				if (cap - pos >= sizeof(uint64_t)) {
					struct mailbox_record pad = {.size = cap - pos, .type = MB_PAD};
					memcpy(ring + pos, &pad, cap - pos < sizeof(pad) ? 8 : sizeof(pad));
				}
				tail += cap - pos;
				pos = 0;
			}
			r->batch = batch;
			r->flags = (uint8_t)((r->flags & ~MB_BATCH_END) |
					     (off + r->size == b->len ? MB_BATCH_END : 0));
			memcpy(ring + pos, r, r->size);
			tail += r->size;
			off += r->size;
		}
		store_release(&mb->tail, tail); /* publishes the batch to the consumer */
		store_relaxed(&mb->delivered, mb->delivered + b->count);
		h->warm_slot = slot + 1;
		h->warm_pos = (uint32_t)(tail % cap);
	}
	/* Appended (or counted as dropped): record it before anything slower. */
	if (h->progress_word)
		store_relaxed(h->progress_word, slot + 1);
	TEST_POINT("mailbox:published");
	/* Wake the consumer if it re-armed since the last wakeup: this exchange
	 * and the consumer's re-arm are seq_cst, so either we see its 0 or it
	 * sees our tail.  The wakeup happens before the unlock: killed anywhere
	 * from the publication to here, we leave the lock owner-dead and the
	 * next taker (mb_lock, mailbox_rewake_orphans) wakes again, so a set
	 * `signalled` always means a wakeup done or owed. */
	if (__atomic_exchange_n(&mb->signalled, 1, __ATOMIC_SEQ_CST) == 0) {
		TEST_POINT("mailbox:signalled");
		bool sleeping = __atomic_load_n(&mb->sleeping, __ATOMIC_SEQ_CST);
		mb_wake(h, mb, slot, gen, sleeping, !sleeping);
		TEST_POINT("mailbox:woken");
	}
	pthread_mutex_unlock(&mb->lock);
	return rc;
}

/* A writer with monitors mostly delivers where it delivered last.  Those
 * lines (the lock's, the consumer's head, the ring where the next record
 * goes) were last written by the consumer or another producer, so each is a
 * miss between cores; fetched at the start of the write, they overlap the
 * write's own work instead of following it.  A guess: wrong, it costs a
 * prefetch, never a fault. */
void mailbox_warm(const shmg_t *h)
{
	if (!h->warm_slot)
		return;
	struct mailbox_header *mb = mailbox_at(h, h->warm_slot - 1);
	__builtin_prefetch(mb, 1);
	__builtin_prefetch(&mb->head, 0);
	__builtin_prefetch(ring_at(mb) + h->warm_pos, 1);
}

/* ---- consuming ------------------------------------------------------- */

static int ensure(uint8_t **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	size_t c = *cap ? *cap : 4096;
	while (c < need)
		c *= 2;
	uint8_t *p = realloc(*buf, c);
	if (!p)
		return -ENOMEM;
	*buf = p;
	*cap = c;
	return 0;
}

/* Does a record header (a private copy) describe an event this arena can
 * hold, within its own size? */
static bool record_ok(const shmg_t *h, const struct mailbox_record *r)
{
	uint64_t need = sizeof(*r) + (uint64_t)r->cluster_len + r->key_len + r->meta_len;
	need += r->prev_len;
	return ((r->type >= SHMG_EV_REGISTERED && r->type <= SHMG_EV_MESSAGE) ||
		r->type == SHMG_EV_CONFLICT) &&
	       r->reason <= SHMG_REASON_RESYNC &&
	       r->cluster_len <= SHMG_CLUSTER_NAME_MAX && r->key_len <= h->geo.key_max &&
	       r->meta_len <= h->geo.meta_max && r->prev_len <= h->geo.meta_max && need <= r->size;
}

/* Copies up to max records out of the ring into h->rx and fills events;
 * *head_out is where the consumer's head goes once they are accepted.
 * head and tail are read once and every record header is copied before it
 * is checked.  A record that does not lie between head and tail or does not
 * describe an event means the ring cannot be parsed: if it is the first one,
 * *damaged is set and *head_out is tail (the rest is dropped); otherwise the
 * records before it are returned and the next call meets it first. */
static int take_records(shmg_t *h, struct mailbox_header *mb, struct shmg_event *ev, size_t max,
			uint64_t *head_out, bool *damaged)
{
	uint32_t cap = ring_bytes(h);
	uint64_t head = load_relaxed(&mb->head);
	uint64_t tail = load_acquire(&mb->tail); /* pairs with deliver's release */
	*damaged = false;
	*head_out = head;
	if (tail - head > cap || (head != tail && head % 8)) {
		*damaged = true;
		*head_out = tail;
		return 0;
	}
	/* Each record gives its bytes less its header, plus a NUL. */
	int rc = ensure(&h->rx, &h->rx_cap, (size_t)(tail - head) + 8);
	if (rc < 0)
		return rc;
	size_t n = 0, used = 0;
	uint8_t *ring = ring_at(mb);
	while (head != tail && n < max) {
		uint32_t pos = (uint32_t)(head % cap), room = cap - pos;
		uint64_t avail = tail - head;
		struct mailbox_record r;
		memcpy(&r, ring + pos, room < sizeof(r) ? 8 : sizeof(r));
		bool pad = r.type == MB_PAD;
		if (pad ? room > avail
			: r.size < sizeof(r) || r.size > room || r.size > avail || r.size % 8 ||
				  !record_ok(h, &r)) {
			if (n == 0) {
				*damaged = true;
				head = tail;
			}
			break;
		}
		if (pad) {
			head += room; /* a pad fills the ring to its end */
			continue;
		}
		/* Copy: cluster name, NUL, key, meta, previous meta. */
		uint8_t *dst = h->rx + used;
		const uint8_t *src = ring + pos + sizeof(r);
		memcpy(dst, src, r.cluster_len);
		dst[r.cluster_len] = 0;
		memcpy(dst + r.cluster_len + 1, src + r.cluster_len, r.size - sizeof(r) - r.cluster_len);
		struct shmg_event *e = &ev[n++];
		const uint8_t *key = dst + r.cluster_len + 1;
		*e = (struct shmg_event){
			.type = (enum shmg_event_type)r.type,
			.reason = (enum shmg_reason)r.reason,
			.id = {r.node, r.ep_slot, r.ep_gen},
			.pid = r.pid,
			.cluster = r.cluster_len ? (const char *)dst : NULL,
			.key = (const char *)key,
			.key_len = r.key_len,
			.meta = key + r.key_len,
			.meta_len = r.meta_len,
			.previous_meta = r.flags & MB_HAS_PREV ? key + r.key_len + r.meta_len : NULL,
			.previous_meta_len = r.flags & MB_HAS_PREV ? r.prev_len : 0,
			.has_previous = !!(r.flags & MB_HAS_PREV),
			.time_ns = r.time_ns,
			.batch = r.batch,
			.batch_end = !!(r.flags & MB_BATCH_END),
			.group = h->name,
		};
		used += r.size - sizeof(r) + 1;
		head += r.size;
	}
	*head_out = head;
	return (int)n;
}

/* Applies this handle's extract_meta to meta and previous_meta. */
static int extract_events(shmg_t *h, struct shmg_event *ev, int n)
{
	if (!h->extract)
		return 0;
	int rc = ensure(&h->rx_meta, &h->rx_meta_cap, (size_t)n * 2 * h->geo.meta_max + 1);
	if (rc < 0)
		return rc;
	uint8_t *out = h->rx_meta;
	for (int i = 0; i < n; i++) {
		struct shmg_event *e = &ev[i];
		if (e->type > SHMG_EV_LEFT)
			continue;
		ssize_t m = h->extract(e->meta, e->meta_len, out, h->geo.meta_max, h->extract_arg);
		if (m < 0 || (size_t)m > h->geo.meta_max)
			return m < 0 ? (int)m : -EOVERFLOW;
		e->meta = out;
		e->meta_len = (size_t)m;
		out += h->geo.meta_max;
		if (e->has_previous) {
			m = h->extract(e->previous_meta, e->previous_meta_len, out, h->geo.meta_max,
				       h->extract_arg);
			if (m < 0 || (size_t)m > h->geo.meta_max)
				return m < 0 ? (int)m : -EOVERFLOW;
			e->previous_meta = out;
			e->previous_meta_len = (size_t)m;
		}
		out += h->geo.meta_max;
	}
	return 0;
}

static int receive_now(shmg_t *h, struct shmg_event *ev, size_t max)
{
	struct mailbox_header *mb = mailbox_at(h, h->slot);
	uint64_t head;
	bool damaged;
	int n = take_records(h, mb, ev, max, &head, &damaged);
	if (n < 0)
		return n;
	if (damaged) {
		/* Nothing left in the ring can be trusted: drop it and say so
		 * the way a full mailbox does, with an overflow marker. */
		store_release(&mb->head, head);
		__atomic_add_fetch(&mb->dropped, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&mb->dropped_total, 1, __ATOMIC_RELAXED);
	}
	if (n == 0 && max) {
		uint32_t dropped = __atomic_exchange_n(&mb->dropped, 0, __ATOMIC_ACQ_REL);
		if (dropped) {
			ev[0] = (struct shmg_event){.type = SHMG_EV_OVERFLOW,
						    .dropped = dropped,
						    .batch_end = 1,
						    .key = "",
						    .group = h->name};
			return 1;
		}
	}
	/* A failing extract_meta leaves the records in the ring: nothing is
	 * lost, the next receive sees them again. */
	int rc = extract_events(h, ev, n);
	if (rc < 0)
		return rc;
	store_release(&mb->head, head); /* frees the space for producers */
	return n;
}

int shmg_receive(shmg_t *h, struct shmg_event *events, size_t max, int timeout_ms)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	if (!events && max)
		return -EINVAL;
	if (!max)
		return 0;
	struct mailbox_header *mb = mailbox_at(h, h->slot);
	uint64_t deadline = timeout_ms > 0 ? now_monotonic_ns() + (uint64_t)timeout_ms * 1000000ull : 0;
	for (unsigned empty = 0;; empty++) {
		int n = receive_now(h, events, max);
		if (n != 0)
			return n;
		/* Ended by the agent (remote_conflict_evict): its last records,
		 * the conflict record among them, were read above. */
		if (load_acquire(&h->ep->terminated))
			return -ECONNABORTED;
		/* A poll that keeps finding the ring moved but nothing in it is
		 * racing a process that scribbles on it: answer empty. */
		if (timeout_ms == 0 && empty >= 8)
			return 0;
		/* Empty: consume the wakeup and re-arm, so the fd is readable only
		 * while records wait, then look once more (pairs with the
		 * exchange in mailbox_deliver). */
		wake_drain_own(h);
		if (!mb_advertised(h, mb))
			mb_advertise(h, mb); /* scribbled over */
		/* Not asleep (left set by the last wait, so that the way back
		 * from a wakeup stores nothing): an epoll waiter gets the FIFO. */
		if (load_relaxed(&mb->sleeping))
			__atomic_store_n(&mb->sleeping, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&mb->signalled, 0, __ATOMIC_SEQ_CST);
		if (load_acquire(&mb->tail) != mb->head || load_relaxed(&mb->dropped))
			continue;
		if (timeout_ms == 0)
			return 0;
		uint64_t wait = RECHECK_NS;
		if (timeout_ms > 0) {
			uint64_t now = now_monotonic_ns();
			if (now >= deadline)
				return 0;
			if (deadline - now < wait)
				wait = deadline - now;
		}
		struct timespec rel = {(time_t)(wait / 1000000000ull), (long)(wait % 1000000000ull)};
		__atomic_store_n(&mb->sleeping, 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&mb->tail, __ATOMIC_SEQ_CST) != mb->head ||
		    load_relaxed(&mb->dropped)) {
			__atomic_store_n(&mb->sleeping, 0, __ATOMIC_RELAXED);
			continue;
		}
		/* Returns at once if a producer set `signalled` since the re-arm. */
		long r = syscall(SYS_futex, &mb->signalled, FUTEX_WAIT, 0, &rel, NULL, 0);
		if (r < 0 && errno == EINTR)
			return -EINTR;
	}
}

int shmg_fd(shmg_t *h)
{
	int rc = handle_check(h);
	return rc ? rc : h->mb_fd;
}
