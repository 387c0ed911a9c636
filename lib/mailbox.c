/* SPDX-License-Identifier: MIT */
/*
 * Mailboxes: one bounded ring of event records per endpoint slot.
 *
 * Producers are any process (writers delivering events, dispatchers).  They
 * serialise on the mailbox's robust mutex, never wait for the consumer, and
 * append a whole batch or nothing: if it does not fit, or if records were
 * already dropped and the consumer has not yet been told, the batch is counted
 * in `dropped` instead.  The consumer (the owning endpoint, alone) copies
 * records out, advances head (release; producers acquire it to compute free
 * space) and, once the ring is empty, turns a non-zero `dropped` into one
 * SHMG_EV_OVERFLOW marker.  So nothing is lost silently, and everything
 * delivered before the first drop is received before the marker.
 *
 * Wakeups.  A producer that flips `signalled` from 0 to 1 wakes the consumer:
 * with FUTEX_WAKE on `signalled` when the consumer sleeps in shmg_receive
 * (`sleeping`), else with one datagram to the owner's socket, bound to an
 * abstract name derived from the arena incarnation, slot and generation, which
 * shmg_fd() returns for poll/epoll.  The consumer clears `signalled`, sets
 * `sleeping`, and looks at the ring once more before it waits; all of these
 * are seq_cst, so a producer either sees `sleeping` or its record is seen by
 * that last look.  So the descriptor is readable while records wait, and a
 * blocked receive wakes without a socket round trip.
 *
 * Crash windows.  A producer killed mid-append leaves tail unpublished: the
 * partial bytes are overwritten by the next producer, which gets EOWNERDEAD
 * and has nothing to repair.  A consumer killed mid-receive leaves head where
 * it was: the endpoint is dead, and the slot's next owner resets the mailbox.
 */
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

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

static socklen_t wake_addr(const shmg_t *h, uint32_t slot, uint32_t gen, const char *what,
			   struct sockaddr_un *a)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	int n = snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "shmgroup.%016llx.%s.%u.%u",
			 (unsigned long long)h->geo.incarnation, what, slot, gen);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

int wake_bind(const shmg_t *h, uint32_t slot, uint32_t gen, const char *what)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_un a;
	socklen_t len = wake_addr(h, slot, gen, what, &a);
	if (bind(fd, (struct sockaddr *)&a, len) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

void wake_send(shmg_t *h, uint32_t slot, uint32_t gen, const char *what)
{
	if (h->wake_out < 0)
		return;
	struct sockaddr_un a;
	socklen_t len = wake_addr(h, slot, gen, what, &a);
	char b = 1;
	/* A hint only: a full queue or a vanished receiver changes nothing. */
	(void)sendto(h->wake_out, &b, 1, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&a, len);
}

void wake_drain(int fd)
{
	char buf[64];
	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

static int mb_lock(struct mailbox_header *mb)
{
	int rc = robust_lock(&mb->lock);
	if (rc == EOWNERDEAD) {
		/* A producer died mid-append: tail was not published, so the ring
		 * is as it was.  Nothing to repair. */
		pthread_mutex_consistent(&mb->lock);
		rc = 0;
	}
	return -rc;
}

int mailbox_init(shmg_t *h, uint32_t slot)
{
	struct mailbox_header *mb = mailbox_at(h, slot);
	memset(mb, 0, sizeof(*mb));
	return mutex_init_robust(&mb->lock);
}

int mailbox_reset(shmg_t *h, uint32_t slot, uint32_t gen)
{
	struct mailbox_header *mb = mailbox_at(h, slot);
	int rc = mb_lock(mb);
	if (rc < 0)
		return rc;
	store_release(&mb->head, load_relaxed(&mb->tail));
	store_relaxed(&mb->dropped, 0);
	store_relaxed(&mb->signalled, 0);
	store_release(&mb->gen, gen);
	pthread_mutex_unlock(&mb->lock);
	return 0;
}

void mailbox_retire(shmg_t *h, uint32_t slot)
{
	struct mailbox_header *mb = mailbox_at(h, slot);
	if (mb_lock(mb) == 0) {
		store_release(&mb->gen, 0); /* producers drop what they had for it */
		pthread_mutex_unlock(&mb->lock);
	}
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
void mailbox_deliver(shmg_t *h, uint32_t slot, uint32_t gen, struct mb_batch *b)
{
	if (!b->count || slot >= h->geo.max_endpoints)
		return;
	struct mailbox_header *mb = mailbox_at(h, slot);
	if (mb_lock(mb) < 0)
		return;
	if (load_relaxed(&mb->gen) != gen) {
		pthread_mutex_unlock(&mb->lock);
		return; /* the endpoint is gone */
	}
	uint32_t cap = ring_bytes(h);
	uint64_t tail = mb->tail, head = load_acquire(&mb->head); /* pairs with receive's release */
	tail = (tail + 7) & ~7ull; /* records are 8-aligned; only damage makes this move */
	/* More than a ring's worth between them: damaged (the consumer resets
	 * it); writing on would run off the ring. */
	if (load_relaxed(&mb->dropped) || tail - head > cap ||
	    batch_span(b, cap, tail) > cap - (tail - head)) {
		__atomic_add_fetch(&mb->dropped, b->count, __ATOMIC_RELAXED);
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
	}
	/* Appended (or counted as dropped): record it before anything slower. */
	if (h->progress_word)
		store_relaxed(h->progress_word, slot + 1);
	bool wake = __atomic_exchange_n(&mb->signalled, 1, __ATOMIC_SEQ_CST) == 0;
	bool sleeping = wake && __atomic_load_n(&mb->sleeping, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&mb->lock);
	if (sleeping)
		syscall(SYS_futex, &mb->signalled, FUTEX_WAKE, 1, NULL, NULL, 0);
	else if (wake)
		wake_send(h, slot, gen, "mb");
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
	return r->type >= SHMG_EV_REGISTERED && r->type <= SHMG_EV_MESSAGE &&
	       r->reason <= SHMG_REASON_CLUSTER_DISCONNECT &&
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
	}
	if (n == 0 && max) {
		uint32_t dropped = __atomic_exchange_n(&mb->dropped, 0, __ATOMIC_ACQ_REL);
		if (dropped) {
			ev[0] = (struct shmg_event){.type = SHMG_EV_OVERFLOW,
						    .dropped = dropped,
						    .batch_end = 1,
						    .key = ""};
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
		/* A poll that keeps finding the ring moved but nothing in it is
		 * racing a process that scribbles on it: answer empty. */
		if (timeout_ms == 0 && empty >= 8)
			return 0;
		/* Empty: consume the wakeup and re-arm, so the fd is readable only
		 * while records wait, then look once more (pairs with the
		 * exchange in mailbox_deliver). */
		wake_drain(h->mb_fd);
		__atomic_store_n(&mb->signalled, 0, __ATOMIC_SEQ_CST);
		if (load_acquire(&mb->tail) != mb->head || load_relaxed(&mb->dropped))
			continue;
		if (timeout_ms == 0)
			return 0;
		struct timespec rel, *relp = NULL;
		if (timeout_ms > 0) {
			uint64_t now = now_monotonic_ns();
			if (now >= deadline)
				return 0;
			rel.tv_sec = (time_t)((deadline - now) / 1000000000ull);
			rel.tv_nsec = (long)((deadline - now) % 1000000000ull);
			relp = &rel;
		}
		__atomic_store_n(&mb->sleeping, 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&mb->tail, __ATOMIC_SEQ_CST) != mb->head ||
		    load_relaxed(&mb->dropped)) {
			__atomic_store_n(&mb->sleeping, 0, __ATOMIC_RELAXED);
			continue;
		}
		long r = syscall(SYS_futex, &mb->signalled, FUTEX_WAIT, 0, relp, NULL, 0);
		int err = r < 0 ? errno : 0;
		__atomic_store_n(&mb->sleeping, 0, __ATOMIC_RELAXED);
		if (err == EINTR)
			return -EINTR;
	}
}

int shmg_fd(shmg_t *h)
{
	int rc = handle_check(h);
	return rc ? rc : h->mb_fd;
}
