/* SPDX-License-Identifier: MIT */
/*
 * The agent's replication (replication.h): sockets, threads, the peer table,
 * and struct repl_ops over the arena (store.c) and the network.
 *
 * Threads.  The core is single-threaded (repl.h), so one thread owns it:
 *
 *   receive thread   reads the UDP socket while datagrams stream in: it
 *                    blocks in poll on the socket, reads bursts with
 *                    recvmmsg into buffers of a fixed pool and hands them to
 *                    the protocol thread on an SPSC ck_ring (`rx_ring`); the
 *                    protocol thread gives them back on another (`free_ring`).
 *                    One eventfd write per burst wakes the protocol thread.
 *                    With every buffer handed over, it stops reading and
 *                    lets the socket's buffer (4 MiB asked) hold the rest.
 *                    Otherwise it sleeps on an eventfd of its own.
 *   protocol thread  runs the core: repl_input for each datagram, repl_poll
 *                    when a change log moved or the core's deadline passed,
 *                    the core's callbacks (sending with sendto, applying with
 *                    one shard-lock hold per batch, delivering messages from
 *                    peers), the queue of messages for other hosts (its
 *                    handle's mailbox, outbound.c), the fault layer's held
 *                    datagrams and the stats file.  It sleeps in epoll_pwait2
 *                    until the earliest of those.
 *   main thread      (shmgroupd.c) signals, reaper, config reloads, on the
 *                    agent's first handle; replication has a handle of its
 *                    own, used by the protocol thread only.  The main thread hands
 *                    commands (add a peer, partition, stop) to the protocol
 *                    thread on a wait-free cds_wfcq queue, and owns the peer
 *                    address table, a cds_lfht keyed by node number that the
 *                    protocol thread reads under RCU: a changed address is
 *                    published by replacing the node and freeing the old one
 *                    with call_rcu, so a send never waits for a reload.
 *                    The protocol thread keeps its own list of the core's
 *                    peers (names for its log), so it never reads the main
 *                    thread's copy of the settings, which a reload changes.
 *
 * Who reads the socket.  Exactly one thread at a time.  While the agent is
 * idle the protocol thread holds it: the socket is in its epoll set and it
 * reads up to DIRECT_BURST datagrams itself, so a datagram wakes one
 * thread, not the receive thread and then, through the ring, the protocol
 * thread (each wakeup of an idle vCPU costs tens of microseconds).  A full
 * read means a stream: the protocol thread takes the socket out of its
 * epoll set and wakes the receive thread, whose ring lets reading overlap
 * applying.  When the socket has stayed empty for HANDBACK_IDLE_NS the
 * receive thread adds it back to the protocol thread's epoll set (level-
 * triggered, so what arrived meanwhile wakes it) and sleeps.  The protocol
 * thread reads the socket only with the ring empty, so datagrams are taken
 * in their order, and only the protocol thread calls into the core.
 *
 * Applying stays on the protocol thread: the core asks `held` for cursors
 * that must already include every batch it handed over, and a purge must
 * land before the next handshake's batches, so a separate apply thread
 * would need the core to wait for it anyway.  The core acks each datagram
 * before applying and applies at the repl_poll after a turn's burst, so
 * acks wait behind one burst's applying at most.  The acks of the few
 * datagrams the protocol thread read itself are held back until that
 * poll (hold_sends): on an idle link the change is applied, and its reader
 * woken, before the ack's sendto.
 *
 * Noticing local changes.  Before sleeping with a peer up, the protocol
 * thread marks itself sleeping in the arena (oplog_wake_sleeping), reads the
 * change logs' heads once more, and sleeps only if none moved; a writer that
 * appends after that sends one datagram to the agent's wakeup socket
 * (lib/oplog.c).  While the agent is awake writers make no syscall for it.
 * The heads are still read every 10 ms as a backstop for a lost wakeup (a
 * writer killed before its send, a scribbled mark), every 100 ms with no
 * peer up, and every change_poll_us if the socket could not be bound.
 *
 * Dying at any point (SIGKILL) leaves the arena consistent: every write goes
 * through lib/remote.c, whose batches are crash-safe and whose cursors never
 * run ahead of the entries (ARCHITECTURE.md "Remote entries").  What stays
 * behind is the node table's connected marks, which shmg_nodes then lists
 * until the next agent clears them at its start, and peers that see this
 * node fall silent and purge its entries after down_after; the next agent
 * is a new session of the same incarnation, so they resume from their
 * cursors.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define _LGPL_SOURCE 1
#include <ck_ring.h>
#include <urcu/rculfhash.h>
#include <urcu/urcu-memb.h>
#include <urcu/wfcqueue.h>

#include "fault.h"
#include "handoff.h"
#include "log.h"
#include "outbound.h"
#include "remote.h"
#include "replication.h"
#include "store.h"

#define DATAGRAM_MAX 65536u
#define POOL_SLOTS 256u /* power of two: ck_ring sizes */
#define RECV_BURST 32u
/* The protocol thread's own reads: a full one hands the socket over. */
#define DIRECT_BURST 8u
/* The receive thread gives the socket back after 1 ms without a datagram. */
#define HANDBACK_IDLE_NS 1000000
/* What the core sends while the protocol thread's own reads go in (their
 * acks) waits until the turn has applied what those brought: HELD_MAX
 * datagrams or HELD_BYTES, whichever fills first (then they leave at once,
 * in order). */
#define HELD_MAX 64u
#define HELD_BYTES (256u << 10)
#define IDLE_POLL_US 100000u
#define WAKE_BACKSTOP_US 10000u /* polling the heads when writers wake the agent */

struct peer_entry {
	struct cds_lfht_node ht;
	struct rcu_head rcu;
	uint32_t node;
	char name[NODE_NAME_MAX + 1];
	struct sockaddr_storage addr;
	socklen_t addr_len;
};

enum command_kind {
	CMD_ADD_PEER,
	CMD_PARTITION,
	CMD_STOP
};

struct command {
	struct cds_wfcq_node qn;
	enum command_kind kind;
	uint32_t node;
	char name[NODE_NAME_MAX + 1];
	bool on;
};

struct datagram {
	size_t len;
	uint8_t buf[DATAGRAM_MAX];
};

/* Sends held back during a turn's input (see hold_sends). */
struct held_sends {
	bool on;
	unsigned n;
	size_t used;
	struct {
		uint32_t to;
		uint32_t len;
		size_t off;
	} d[HELD_MAX];
	uint8_t *bytes; /* HELD_BYTES */
};

struct agent_counters {
	uint64_t rx_pool_waits, rx_errors, tx_errors, tx_unknown_node;
	uint64_t rx_handoffs;  /* protocol thread only: the socket given to the receive thread */
	uint64_t rx_handbacks; /* receive thread (atomic): the socket given back */
};

struct replication {
	shmg_t *h;
	uint32_t self;
	struct replconf conf;
	struct repl *core;
	struct store *store;
	struct fault *fault;
	int sock, wake_fd, stop_fd, rx_wake_fd, epfd;
	int log_wake_fd; /* writers' wakeups (oplog_wake_bind), or -1: poll the heads */

	struct cds_lfht *peers;
	struct cds_wfcq_head cmd_head;
	struct cds_wfcq_tail cmd_tail;

	struct datagram *pool;
	struct datagram *direct; /* DIRECT_BURST buffers of the protocol thread's own reads */
	ck_ring_t rx_ring, free_ring;
	ck_ring_buffer_t rx_slots[POOL_SLOTS], free_slots[POOL_SLOTS];

	pthread_t rx_thread, proto_thread;
	bool rx_started, proto_started;

	/* protocol thread only (conf above is the main thread's) */
	struct known_peer {
		uint32_t node;
		char name[NODE_NAME_MAX + 1];
	} known[REPLCONF_MAX_PEERS]; /* the core's peers, for names and counts */
	unsigned n_known;
	uint32_t dirty[REPLCONF_MAX_PEERS]; /* nodes whose up state may have changed */
	unsigned n_dirty, n_up;
	uint64_t now;
	uint64_t next_stats;
	struct agent_counters c;
	struct outbound_stats msgs;
	struct held_sends held;
	bool outbound_ready; /* the queue's descriptor fired since it was last read */
	bool socket_ready;   /* the UDP socket fired while the protocol thread held it */
	bool log_wake_ready; /* a writer's wakeup is queued: drained before sleeping */
};

/* epoll data of the protocol thread's descriptors, one each, so a wakeup
 * drains only the descriptor that fired: the command (and ring) eventfd, the
 * outbound queue, the UDP socket (while the protocol thread holds it) and
 * the writers' wakeup socket. */
enum { WAKE_TAG = 0, OUTBOUND_TAG = 1, SOCKET_TAG = 2, LOG_WAKE_TAG = 3 };

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void wake(int fd)
{
	uint64_t one = 1;
	ssize_t n = write(fd, &one, sizeof(one));
	(void)n; /* a full counter already wakes */
}

/* ---- the peer address table ------------------------------------------ */

static int peer_match(struct cds_lfht_node *node, const void *key)
{
	return caa_container_of(node, struct peer_entry, ht)->node == *(const uint32_t *)key;
}

static unsigned long node_hash(uint32_t node)
{
	return (unsigned long)(node * 0x9e3779b97f4a7c15ull >> 17);
}

static void peer_free_rcu(struct rcu_head *head)
{
	free(caa_container_of(head, struct peer_entry, rcu));
}

/* Adds or replaces the address of p; main thread, registered with RCU.
 * Returns 1 if the node is new. */
static int peer_publish(struct replication *r, const struct peer_conf *p)
{
	struct peer_entry *e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	cds_lfht_node_init(&e->ht);
	e->node = p->node;
	strcpy(e->name, p->name);
	e->addr = p->addr;
	e->addr_len = p->addr_len;
	HANDOFF_RELEASE(e);
	urcu_memb_read_lock();
	struct cds_lfht_node *old =
		cds_lfht_add_replace(r->peers, node_hash(p->node), peer_match, &p->node, &e->ht);
	urcu_memb_read_unlock();
	if (old)
		urcu_memb_call_rcu(&caa_container_of(old, struct peer_entry, ht)->rcu,
				   peer_free_rcu);
	return old ? 0 : 1;
}

/* ---- the core's callbacks --------------------------------------------- */

static void sendto_node(void *arg, uint32_t to, const void *buf, size_t len)
{
	struct replication *r = arg;
	struct cds_lfht_iter it;
	ssize_t n = -1;

	urcu_memb_read_lock();
	cds_lfht_lookup(r->peers, node_hash(to), peer_match, &to, &it);
	struct cds_lfht_node *hn = cds_lfht_iter_get_node(&it);
	if (hn) {
		struct peer_entry *e = caa_container_of(hn, struct peer_entry, ht);
		HANDOFF_ACQUIRE(e);
		n = sendto(r->sock, buf, len, MSG_DONTWAIT, (struct sockaddr *)&e->addr,
			   e->addr_len);
	}
	urcu_memb_read_unlock();
	if (!hn)
		r->c.tx_unknown_node++;
	else if (n < 0)
		r->c.tx_errors++; /* a full socket buffer is a loss the core repairs */
}

/* Sends what was held back, in the order the core sent it. */
static void release_sends(struct replication *r)
{
	struct held_sends *hs = &r->held;
	hs->on = false;
	for (unsigned i = 0; i < hs->n; i++)
		fault_send(r->fault, r->now, hs->d[i].to, hs->bytes + hs->d[i].off, hs->d[i].len,
			   sendto_node, r);
	hs->n = 0;
	hs->used = 0;
}

/* From here to release_sends, what the core sends waits: the acks of the
 * datagrams the protocol thread read itself (at most DIRECT_BURST, the
 * light traffic) leave after the changes they brought are applied.  On an
 * idle link that puts the apply, and the wakeup of a reader waiting for it,
 * before a sendto (on loopback the sendto also runs the receiving side of
 * the network stack: tens of microseconds with cold caches); the sender's
 * round-trip samples grow by the applying of those few datagrams.  A
 * stream's datagrams, through the receive thread's ring, are acked first,
 * as before (PROTOCOL.md section 7: acks wait behind one burst at most), and
 * datagrams that leave nothing to apply (acks, on a sender) release what
 * they made at once. */
static void hold_sends(struct replication *r)
{
	r->held.on = true;
}

static void cb_send(void *ctx, uint32_t to, const void *buf, size_t len)
{
	struct replication *r = ctx;
	struct held_sends *hs = &r->held;
	if (hs->on && (hs->n == HELD_MAX || hs->used + len > HELD_BYTES)) {
		release_sends(r); /* full: the order is kept, the rest goes at once */
		hold_sends(r);
	}
	if (!hs->on || len > HELD_BYTES) {
		fault_send(r->fault, r->now, to, buf, len, sendto_node, r);
		return;
	}
	hs->d[hs->n].to = to;
	hs->d[hs->n].len = (uint32_t)len;
	hs->d[hs->n].off = hs->used;
	memcpy(hs->bytes + hs->used, buf, len);
	hs->n++;
	hs->used += len;
}

static void cb_apply(void *ctx, const struct repl_batch *b)
{
	store_apply(((struct replication *)ctx)->store, b);
}

static int cb_log_read(void *ctx, uint16_t shard, uint64_t seq, struct repl_record *out)
{
	return store_log_read(((struct replication *)ctx)->store, shard, seq, out);
}

static uint64_t cb_log_head(void *ctx, uint16_t shard)
{
	return store_log_head(((struct replication *)ctx)->store, shard);
}

static int64_t cb_snapshot(void *ctx, uint16_t shard,
			   void (*emit)(void *arg, const struct repl_record *rec), void *arg)
{
	return store_snapshot(((struct replication *)ctx)->store, shard, emit, arg);
}

static void cb_held(void *ctx, uint32_t node, uint64_t *inc, uint64_t *cursors)
{
	store_held(((struct replication *)ctx)->store, node, inc, cursors);
}

static uint64_t cb_random(void *ctx)
{
	(void)ctx;
	uint64_t v = 0;
	while (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
		;
	return v;
}

static const char *peer_name(struct replication *r, uint32_t node)
{
	for (unsigned i = 0; i < r->n_known; i++)
		if (r->known[i].node == node)
			return r->known[i].name;
	return "?";
}

static void cb_peer_event(void *ctx, uint32_t node, enum repl_peer_event ev, const char *detail)
{
	struct replication *r = ctx;
	const char *name = peer_name(r, node);
	const char *d = detail ? detail : "";

	switch (ev) {
	case REPL_PEER_UP:
		logf_(L_INFO, "peer %s (node %" PRIu32 ") is up", name, node);
		break;
	case REPL_PEER_RECONNECTED:
		logf_(L_INFO, "peer %s (node %" PRIu32 ") reconnected", name, node);
		break;
	case REPL_PEER_DOWN:
		logf_(L_WARN, "peer %s (node %" PRIu32 ") is down%s%s; its entries are gone", name,
		      node, *d ? ": " : "", d);
		break;
	case REPL_PEER_LEFT:
		logf_(L_INFO, "peer %s (node %" PRIu32 ") left; its entries are gone", name, node);
		break;
	case REPL_PEER_REFUSED:
		logf_(L_ERR, "peer %s (node %" PRIu32 ") refused: %s", name, node, d);
		break;
	case REPL_PEER_RESTARTED:
		logf_(L_INFO, "peer %s (node %" PRIu32 ") restarted (%s); its old entries are gone",
		      name, node, d);
		break;
	}
	for (unsigned i = 0; i < r->n_dirty; i++)
		if (r->dirty[i] == node)
			return;
	if (r->n_dirty < REPLCONF_MAX_PEERS)
		r->dirty[r->n_dirty++] = node;
}

static void cb_deliver(void *ctx, const struct repl_message *m)
{
	struct replication *r = ctx;
	outbound_deliver(r->h, m, &r->msgs);
}

static void cb_clusters(void *ctx, void (*emit)(void *arg, const char *name, size_t len),
			void *arg)
{
	store_clusters(((struct replication *)ctx)->store, emit, arg);
}

static void cb_peer_cluster(void *ctx, uint32_t node, const char *cluster, size_t len,
			    int connected)
{
	store_peer_cluster(((struct replication *)ctx)->store, node, cluster, len, connected);
}

static const struct repl_ops agent_ops = {
	.send = cb_send,
	.apply = cb_apply,
	.log_read = cb_log_read,
	.log_head = cb_log_head,
	.snapshot = cb_snapshot,
	.held = cb_held,
	.random = cb_random,
	.peer_event = cb_peer_event,
	.deliver = cb_deliver,
	.clusters = cb_clusters,
	.peer_cluster = cb_peer_cluster,
};

/* The arena's connected marks (shmg_nodes) follow the core's view, after
 * the call that changed it returned (a purge in between clears a mark). */
static void publish_up(struct replication *r)
{
	for (unsigned i = 0; i < r->n_dirty; i++) {
		uint32_t node = r->dirty[i];
		int up = repl_peer_is_up(r->core, node);
		int rc = remote_node_up(r->h, node, up);
		if (rc < 0)
			logf_(L_WARN, "node %" PRIu32 ": cannot mark it %s in the arena: %s", node,
			      up ? "up" : "down", shmg_strerror(rc));
	}
	r->n_dirty = 0;
	unsigned up = 0;
	for (unsigned i = 0; i < r->n_known; i++)
		up += repl_peer_is_up(r->core, r->known[i].node) == 1;
	r->n_up = up;
}

/* ---- stats file ------------------------------------------------------- */

static void write_stats(struct replication *r)
{
	char tmp[PATH_MAX + 8];
	const struct repl_counters *c = repl_counters(r->core);
	const struct store_stats *s = store_stats(r->store);
	const struct fault_stats *f = fault_stats(r->fault);

	if (!r->conf.stats_file[0])
		return;
	snprintf(tmp, sizeof(tmp), "%s.tmp", r->conf.stats_file);
	FILE *out = fopen(tmp, "we");
	if (!out)
		return;
#define W(name, v) fprintf(out, "%s %" PRIu64 "\n", name, (uint64_t)(v))
#define C(field) W(#field, c->field)
	C(rx_datagrams);
	C(rx_bad_len);
	C(rx_bad_header);
	C(rx_wrong_group);
	C(rx_other_key);
	C(rx_bad_mac);
	C(rx_replay);
	C(rx_stale);
	C(rx_not_for_us);
	C(rx_unknown_peer);
	C(rx_not_peered);
	C(rx_bad_body);
	C(rx_dup_records);
	C(rx_beyond_window);
	C(rx_rejects);
	C(tx_datagrams);
	C(tx_bytes);
	C(tx_records);
	C(tx_retransmits);
	C(tx_heartbeats);
	C(resyncs_sent);
	C(resyncs_applied);
	C(resyncs_restarted);
	C(purges);
	C(handshakes);
	C(tx_messages);
	C(tx_message_retransmits);
	C(rx_messages);
	C(rx_dup_messages);
	C(rx_messages_beyond_window);
	C(messages_abandoned);
	C(cluster_changes);
	C(tx_cluster_sets);
	C(rx_cluster_sets);
	C(cluster_gains);
	C(cluster_markers_lost);
#undef C
	W("peers_up", r->n_up);
	/* The receive thread's counters, bumped atomically there. */
	W("rx_pool_waits", __atomic_load_n(&r->c.rx_pool_waits, __ATOMIC_RELAXED));
	W("rx_errors", __atomic_load_n(&r->c.rx_errors, __ATOMIC_RELAXED));
	W("rx_handoffs", r->c.rx_handoffs);
	W("rx_handbacks", __atomic_load_n(&r->c.rx_handbacks, __ATOMIC_RELAXED));
	W("tx_errors", r->c.tx_errors);
	W("tx_unknown_node", r->c.tx_unknown_node);
	W("store_batches", s->batches);
	W("store_changes", s->changes);
	W("store_conflicts", s->conflicts);
	W("store_conflicts_lost", s->conflicts_lost);
	W("store_conflicts_hidden", s->conflicts_hidden);
	W("store_promoted_in_place", s->promoted_in_place);
	W("store_missing", s->missing);
	W("store_rejected", s->rejected);
	W("store_not_connected", s->not_connected);
	W("store_retries", s->retries);
	W("store_failed", s->failed);
	W("log_reads", s->log_reads);
	W("log_lapped", s->log_lapped);
	W("log_resets", s->log_resets);
	W("fault_dropped", f->dropped);
	W("fault_duplicated", f->duplicated);
	W("fault_reordered", f->reordered);
	W("fault_delayed", f->delayed);
	W("fault_partitioned_tx", f->partitioned_tx);
	W("fault_partitioned_rx", f->partitioned_rx);
	W("messages_taken", r->msgs.taken);
	W("messages_handed", r->msgs.handed);
	W("messages_refused", r->msgs.refused);
	W("messages_no_peer", r->msgs.no_peer);
	W("messages_lost", r->msgs.lost);
	W("messages_delivered", r->msgs.delivered);
	W("messages_deliver_failed", r->msgs.deliver_failed);
#undef W
	if (fclose(out) == 0)
		(void)rename(tmp, r->conf.stats_file);
}

/* ---- receive thread --------------------------------------------------- */

/* Reads the socket for the protocol thread, which handed it over when it
 * saw a stream, until the socket has stayed empty for HANDBACK_IDLE_NS.
 * Returns false on stop. */
static bool receive_while_busy(struct replication *r, struct datagram **spare, unsigned *n_spare)
{
	const struct timespec idle = { 0, HANDBACK_IDLE_NS };
	for (;;) {
		struct pollfd p[2] = { { .fd = r->sock, .events = POLLIN },
				       { .fd = r->stop_fd, .events = POLLIN } };
		int ready = ppoll(p, 2, &idle, NULL);
		if (ready < 0 && errno == EINTR)
			continue;
		if (ready <= 0)
			return true; /* quiet (or poll failed): the protocol thread reads it */
		if (p[1].revents)
			return false;
		if (!(p[0].revents & POLLIN))
			continue;
		for (;;) {
			void *d;
			while (*n_spare < RECV_BURST &&
			       ck_ring_dequeue_spsc(&r->free_ring, r->free_slots, &d)) {
				HANDOFF_ACQUIRE(d);
				spare[(*n_spare)++] = d;
			}
			if (*n_spare == 0) {
				/* The protocol thread is behind (applying a large
				 * batch): leave the datagrams in the socket's
				 * buffer, which the kernel drops from only when it
				 * is full, and look again shortly. */
				__atomic_add_fetch(&r->c.rx_pool_waits, 1, __ATOMIC_RELAXED);
				struct pollfd stop = { .fd = r->stop_fd, .events = POLLIN };
				if (poll(&stop, 1, 1) > 0)
					return false;
				continue;
			}
			struct mmsghdr m[RECV_BURST];
			struct iovec iov[RECV_BURST];
			unsigned k = *n_spare;
			for (unsigned i = 0; i < k; i++) {
				struct datagram *dg = spare[*n_spare - 1 - i];
				iov[i] = (struct iovec){ dg->buf, sizeof(dg->buf) };
				m[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &iov[i],
								      .msg_iovlen = 1 } };
			}
			int n = recvmmsg(r->sock, m, k, MSG_DONTWAIT, NULL);
			if (n <= 0) {
				if (n < 0 && errno != EAGAIN && errno != EINTR)
					__atomic_add_fetch(&r->c.rx_errors, 1, __ATOMIC_RELAXED);
				break;
			}
			for (int i = 0; i < n; i++) {
				struct datagram *dg = spare[--*n_spare];
				dg->len = m[i].msg_len;
				/* Never full: the pool has fewer buffers than slots. */
				HANDOFF_RELEASE(dg);
				ck_ring_enqueue_spsc(&r->rx_ring, r->rx_slots, dg);
			}
			wake(r->wake_fd);
			if ((unsigned)n < k)
				break;
		}
	}
}

/* Sleeps until the protocol thread hands the socket over, reads it while
 * datagrams keep coming, then gives it back by adding it to the protocol
 * thread's epoll set (level-triggered: what arrived meanwhile wakes it). */
static void *receive_main(void *arg)
{
	struct replication *r = arg;
	struct datagram *spare[POOL_SLOTS];
	unsigned n_spare = 0;

	for (;;) {
		struct pollfd p[2] = { { .fd = r->rx_wake_fd, .events = POLLIN },
				       { .fd = r->stop_fd, .events = POLLIN } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		if (!(p[0].revents & POLLIN))
			continue;
		uint64_t v;
		ssize_t got = read(r->rx_wake_fd, &v, sizeof(v));
		(void)got;
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = SOCKET_TAG };
		do {
			if (!receive_while_busy(r, spare, &n_spare))
				return NULL;
		} while (epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->sock, &ev) < 0 && errno != EEXIST);
		__atomic_add_fetch(&r->c.rx_handbacks, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

/* ---- protocol thread -------------------------------------------------- */

/* Adds a peer to the core: on the protocol thread, or before it starts.
 * 0 or -errno (logged). */
static int add_peer(struct replication *r, uint32_t node, const char *name)
{
	int rc = r->n_known < REPLCONF_MAX_PEERS ? repl_peer_add(r->core, node, name) : -ENOSPC;
	if (rc < 0) {
		logf_(L_ERR, "peer %s (node %" PRIu32 ") not added: %s", name, node, strerror(-rc));
		return rc;
	}
	r->known[r->n_known].node = node;
	snprintf(r->known[r->n_known].name, sizeof(r->known[0].name), "%s", name);
	r->n_known++;
	return 0;
}

/* Commands from the main thread; returns true on stop. */
static bool run_commands(struct replication *r)
{
	bool stop = false;
	struct cds_wfcq_node *qn;

	while ((qn = __cds_wfcq_dequeue_blocking(&r->cmd_head, &r->cmd_tail))) {
		struct command *cmd = caa_container_of(qn, struct command, qn);
		HANDOFF_ACQUIRE(cmd);
		switch (cmd->kind) {
		case CMD_ADD_PEER:
			if (add_peer(r, cmd->node, cmd->name) == 0)
				logf_(L_INFO, "peer %s (node %" PRIu32 ") added", cmd->name,
				      cmd->node);
			break;
		case CMD_PARTITION:
			fault_partition(r->fault, cmd->on);
			logf_(L_WARN, "fault layer: partition %s", cmd->on ? "on" : "off");
			break;
		case CMD_STOP:
			stop = true;
			break;
		}
		free(cmd);
	}
	return stop;
}

static void input_datagram(struct replication *r, const uint8_t *buf, size_t len)
{
	/* The time of each datagram, not of the burst: RTT samples and ack
	 * delays are taken from it. */
	r->now = mono_us();
	if (!fault_drop_input(r->fault, buf, len))
		repl_input(r->core, r->now, buf, len);
}

/* At most a receive burst per turn: the core acks each datagram at once
 * and applies what they brought at the repl_poll after them, which a steady
 * stream must not put off; and the acks of the next turn wait for no more
 * than that burst's applying (the round-trip times the sender measures).
 * Returns true if datagrams were left for the next turn (which must then
 * not sleep: the receive thread's wakeup for them was consumed). */
static bool take_datagrams(struct replication *r)
{
	void *d;
	for (unsigned n = 0; ck_ring_dequeue_spsc(&r->rx_ring, r->rx_slots, &d); n++) {
		struct datagram *dg = d;
		HANDOFF_ACQUIRE(dg);
		input_datagram(r, dg->buf, dg->len);
		HANDOFF_RELEASE(dg);
		ck_ring_enqueue_spsc(&r->free_ring, r->free_slots, dg);
		if (n + 1 == RECV_BURST)
			return ck_ring_size(&r->rx_ring) > 0;
	}
	return false;
}

/* While the protocol thread holds the socket (the agent is idle or the
 * traffic light) it reads datagrams itself, so a datagram wakes one thread
 * instead of two in turn.  A full read means a stream: the socket goes to
 * the receive thread, whose ring lets reading overlap applying, until it
 * stays quiet for HANDBACK_IDLE_NS. */
static void read_direct(struct replication *r)
{
	struct mmsghdr m[DIRECT_BURST];
	struct iovec iov[DIRECT_BURST];
	for (unsigned i = 0; i < DIRECT_BURST; i++) {
		iov[i] = (struct iovec){ r->direct[i].buf, sizeof(r->direct[i].buf) };
		m[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &iov[i], .msg_iovlen = 1 } };
	}
	int n = recvmmsg(r->sock, m, DIRECT_BURST, MSG_DONTWAIT, NULL);
	if (n < 0 && errno != EAGAIN && errno != EINTR)
		__atomic_add_fetch(&r->c.rx_errors, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < n; i++)
		input_datagram(r, r->direct[i].buf, m[i].msg_len);
	if (n == (int)DIRECT_BURST && epoll_ctl(r->epfd, EPOLL_CTL_DEL, r->sock, NULL) == 0) {
		r->c.rx_handoffs++;
		wake(r->rx_wake_fd);
	}
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static void sleep_until(struct replication *r, uint64_t deadline)
{
	struct epoll_event ev[4];
	uint64_t now = mono_us();
	uint64_t wait = deadline > now ? deadline - now : 0;
	struct timespec ts = { (time_t)(wait / 1000000u), (long)(wait % 1000000u) * 1000 };
	int n = epoll_pwait2(r->epfd, ev, 4, deadline == UINT64_MAX ? NULL : &ts, NULL);
	if (n < 0 && errno == ENOSYS) {
		/* A kernel before 5.11: milliseconds, rounded up. */
		uint64_t ms = (wait + 999) / 1000;
		n = epoll_wait(r->epfd, ev, 4,
			       deadline == UINT64_MAX ? -1
			       : ms > INT_MAX         ? INT_MAX
						      : (int)ms);
	}
	for (int i = 0; i < n; i++) {
		switch (ev[i].data.u32) {
		case OUTBOUND_TAG:
			r->outbound_ready = true;
			break;
		case SOCKET_TAG:
			r->socket_ready = true;
			break;
		case LOG_WAKE_TAG:
			/* Drained before the next sleep: the change goes out first. */
			r->log_wake_ready = true;
			break;
		default: {
			uint64_t v;
			ssize_t k = read(r->wake_fd, &v, sizeof(v));
			(void)k;
		}
		}
	}
}

/* Sleeps until the deadline, a datagram, a command or (with a peer up) a
 * local write.  Returns false without sleeping if the change logs moved
 * after all: the writers saw no mark before, so they sent nothing. */
static bool sleep_or_see_changes(struct replication *r, uint64_t deadline)
{
	/* Before the mark: a wakeup sent after it is one for this sleep. */
	if (r->log_wake_ready) {
		r->log_wake_ready = false;
		oplog_wake_drain(r->log_wake_fd);
	}
	if (r->log_wake_fd < 0 || !r->n_up) {
		sleep_until(r, deadline);
		return false;
	}
	oplog_wake_sleeping(r->h, true);
	if (store_logs_moved(r->store)) {
		oplog_wake_sleeping(r->h, false);
		return true;
	}
	sleep_until(r, deadline);
	oplog_wake_sleeping(r->h, false);
	return false;
}

static void *protocol_main(void *arg)
{
	struct replication *r = arg;
	uint64_t next_logs = 0;
	bool moved = false;

	urcu_memb_register_thread();
	for (;;) {
		r->now = mono_us();
		bool stop = run_commands(r);
		bool more = take_datagrams(r);
		/* After what the receive thread handed over, in their order. */
		if (r->socket_ready && !more) {
			r->socket_ready = false;
			hold_sends(r);
			read_direct(r);
			/* Nothing to apply (the core wants no poll yet: the datagrams
			 * were acks, say): what it sent leaves now, as before. */
			if (repl_deadline(r->core) > r->now)
				release_sends(r);
		}
		if (stop) {
			release_sends(r);
			repl_leave(r->core, r->now);
			fault_flush(r->fault, UINT64_MAX, sendto_node, r);
			break;
		}
		/* Messages for other hosts leave at this poll (the core's
		 * deadline becomes now when one is queued).  The queue is read
		 * only when its descriptor fired: an empty read re-arms it, which
		 * costs a syscall. */
		if (r->outbound_ready) {
			r->outbound_ready = false;
			outbound_take(r->h, r->core, &r->msgs);
		}
		r->now = mono_us();
		/* With writers' wakeups the heads are read at every turn (a
		 * turn is a wakeup) and polled only as a backstop. */
		if (r->now >= next_logs || (r->log_wake_fd >= 0 && r->n_up)) {
			moved = store_logs_moved(r->store) || moved;
			next_logs = r->now + (!r->n_up              ? IDLE_POLL_US
					      : r->log_wake_fd >= 0 ? WAKE_BACKSTOP_US
								    : r->conf.change_poll_us);
		}
		if (moved || r->now >= repl_deadline(r->core))
			repl_poll(r->core, r->now);
		moved = false;
		for (int s; (s = store_take_reset(r->store)) >= 0;) {
			logf_(L_WARN,
			      "change log of shard %d was repaired; resyncing it with every peer",
			      s);
			repl_log_reset(r->core, (uint16_t)s);
			repl_poll(r->core, r->now);
		}
		release_sends(r);
		fault_flush(r->fault, r->now, sendto_node, r);
		publish_up(r);
		if (r->conf.stats_file[0] && r->now >= r->next_stats) {
			write_stats(r);
			r->next_stats = r->now + (uint64_t)r->conf.stats_interval * 1000u;
		}
		uint64_t deadline = min_u64(repl_deadline(r->core), next_logs);
		deadline = min_u64(deadline, fault_deadline(r->fault));
		if (r->conf.stats_file[0])
			deadline = min_u64(deadline, r->next_stats);
		if (more)
			continue; /* the datagrams left over, at once */
		moved = sleep_or_see_changes(r, deadline);
	}
	outbound_close(r->h);
	publish_up(r);
	write_stats(r);
	urcu_memb_unregister_thread();
	return NULL;
}

/* ---- start and stop --------------------------------------------------- */

static void push(struct replication *r, struct command *cmd)
{
	cds_wfcq_node_init(&cmd->qn);
	HANDOFF_RELEASE(cmd);
	cds_wfcq_enqueue(&r->cmd_head, &r->cmd_tail, &cmd->qn);
	wake(r->wake_fd);
}

static int open_socket(struct replication *r)
{
	const struct replconf *c = &r->conf;
	r->sock = socket(c->listen.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (r->sock < 0) {
		logf_(L_ERR, "socket: %s", strerror(errno));
		return -1;
	}
	/* Room for bursts while the protocol thread applies a large batch. */
	int buf = 4 << 20;
	(void)setsockopt(r->sock, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
	(void)setsockopt(r->sock, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	if (bind(r->sock, (const struct sockaddr *)&c->listen, c->listen_len) < 0) {
		logf_(L_ERR, "cannot listen on %s: %s", c->listen_text, strerror(errno));
		return -1;
	}
	return 0;
}

static void free_all(struct replication *r)
{
	if (r->core)
		repl_free(r->core);
	store_close(r->store);
	fault_free(r->fault);
	if (r->h)
		oplog_wake_unbind(r->h, r->log_wake_fd);
	if (r->peers) {
		struct cds_lfht_iter it;
		struct cds_lfht_node *n;
		urcu_memb_read_lock();
		cds_lfht_for_each (r->peers, &it, n) {
			if (cds_lfht_del(r->peers, n) == 0)
				urcu_memb_call_rcu(&caa_container_of(n, struct peer_entry, ht)->rcu,
						   peer_free_rcu);
		}
		urcu_memb_read_unlock();
		urcu_memb_barrier();
		cds_lfht_destroy(r->peers, NULL);
	}
	struct cds_wfcq_node *qn;
	while ((qn = __cds_wfcq_dequeue_blocking(&r->cmd_head, &r->cmd_tail)))
		free(caa_container_of(qn, struct command, qn));
	cds_wfcq_destroy(&r->cmd_head, &r->cmd_tail);
	for (int *fd = &r->sock; fd <= &r->epfd; fd++)
		if (*fd >= 0)
			close(*fd);
	free(r->pool);
	free(r->direct);
	free(r->held.bytes);
	if (r->h)
		shmg_close(r->h);
	free(r);
}

int replication_start(const struct replication_params *p, struct replication **out)
{
	struct shmg_info in;
	struct replication *r = calloc(1, sizeof(*r));
	int rc;

	if (!r) {
		logf_(L_ERR, "replication: out of memory");
		return -1;
	}
	if ((rc = shmg_open(p->arena, p->cfg, &r->h)) < 0 || (rc = shmg_info(r->h, &in)) < 0) {
		logf_(L_ERR, "replication: cannot open group %s: %s", p->arena, shmg_strerror(rc));
		if (r->h)
			shmg_close(r->h);
		free(r);
		return -1;
	}
	urcu_memb_register_thread();
	r->self = in.node_id;
	r->conf = *p->conf;
	r->sock = r->wake_fd = r->stop_fd = r->rx_wake_fd = r->epfd = r->log_wake_fd = -1;
	cds_wfcq_init(&r->cmd_head, &r->cmd_tail);
	r->pool = calloc(POOL_SLOTS - 1, sizeof(struct datagram));
	r->direct = calloc(DIRECT_BURST, sizeof(struct datagram));
	r->held.bytes = malloc(HELD_BYTES);
	/* A fixed size (peers are at most 64): an auto-resized table starts
	 * liburcu's resize worker, a thread that leaves SIGUSR1 unblocked (for
	 * the signal flavour of RCU), which would turn the partition command
	 * into the signal's default action, exit. */
	r->peers = cds_lfht_new_flavor(REPLCONF_MAX_PEERS, REPLCONF_MAX_PEERS, 0, 0,
				       &urcu_memb_flavor, NULL);
	r->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	r->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	r->rx_wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	r->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (!r->pool || !r->direct || !r->held.bytes || !r->peers || r->wake_fd < 0 ||
	    r->stop_fd < 0 || r->rx_wake_fd < 0 || r->epfd < 0) {
		logf_(L_ERR, "replication: cannot set up: %s", strerror(errno ? errno : ENOMEM));
		goto fail;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = WAKE_TAG };
	/* The protocol thread holds the socket first: the agent starts idle. */
	struct epoll_event sev = { .events = EPOLLIN, .data.u32 = SOCKET_TAG };
	if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->wake_fd, &ev) < 0 || open_socket(r) < 0 ||
	    epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->sock, &sev) < 0)
		goto fail;
	/* Without the socket the protocol thread polls the heads every
	 * change_poll_us while a peer is up, as it would anyway. */
	r->log_wake_fd = oplog_wake_bind(r->h);
	if (r->log_wake_fd < 0)
		logf_(L_WARN, "replication: no wakeup socket for local changes (%s); polling them",
		      shmg_strerror(r->log_wake_fd));
	else if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->log_wake_fd,
			   &(struct epoll_event){ .events = EPOLLIN, .data.u32 = LOG_WAKE_TAG }) < 0)
		goto fail;
	ck_ring_init(&r->rx_ring, POOL_SLOTS);
	ck_ring_init(&r->free_ring, POOL_SLOTS);
	for (unsigned i = 0; i < POOL_SLOTS - 1; i++)
		ck_ring_enqueue_spsc(&r->free_ring, r->free_slots, &r->pool[i]); /* no thread yet */

	if ((rc = store_open(r->h, &p->conflicts, &r->store)) < 0 ||
	    (rc = fault_new(&r->conf.fault, r->conf.peers, r->conf.n_peers, &r->fault)) < 0) {
		logf_(L_ERR, "replication: %s", shmg_strerror(rc));
		goto fail;
	}
	struct repl_config cfg = {
		.node = r->self,
		.node_name = r->conf.node_name,
		.group = p->group,
		.inc = in.incarnation,
		.session = remote_session_next(r->h),
		.shards = (uint16_t)in.shards,
		.key = p->key,
		.knobs = r->conf.knobs,
	};
	if ((rc = repl_new(&cfg, &agent_ops, r, &r->core)) < 0) {
		logf_(L_ERR,
		      "replication: %s (check the knobs: every buffer size and interval "
		      "must be in range, rto_min <= rto_initial <= rto_max)",
		      rc == -EINVAL ? "bad settings" : strerror(-rc));
		goto fail;
	}
	/* Marks left by an agent that was killed are not true any more. */
	remote_nodes_down(r->h);
	/* The handle's mailbox becomes the queue of messages for other hosts;
	 * its descriptor wakes the protocol thread. */
	struct epoll_event mev = { .events = EPOLLIN, .data.u32 = OUTBOUND_TAG };
	r->outbound_ready = true; /* what waited for a previous agent */
	int mfd = shmg_fd(r->h);
	if (mfd < 0 || epoll_ctl(r->epfd, EPOLL_CTL_ADD, mfd, &mev) < 0 ||
	    (rc = outbound_open(r->h)) < 0) {
		logf_(L_ERR, "replication: cannot take messages for other hosts: %s",
		      mfd < 0 ? shmg_strerror(mfd) : rc < 0 ? shmg_strerror(rc) : strerror(errno));
		goto fail;
	}
	for (unsigned i = 0; i < r->conf.n_peers; i++) {
		const struct peer_conf *pc = &r->conf.peers[i];
		if (peer_publish(r, pc) < 0 || add_peer(r, pc->node, pc->name) < 0)
			goto fail;
	}
	if (!p->key)
		logf_(L_WARN, "REPLICATION WITHOUT A CLUSTER KEY: datagrams are not authenticated; "
			      "allowed on loopback only (set key_file)");
	if (pthread_create(&r->proto_thread, NULL, protocol_main, r) != 0)
		goto fail;
	r->proto_started = true;
	if (pthread_create(&r->rx_thread, NULL, receive_main, r) != 0) {
		replication_stop(r);
		return -1;
	}
	r->rx_started = true;
	logf_(L_INFO, "replicating group %s as node %" PRIu32 " (%s) on %s with %u peer%s",
	      p->group, r->self, r->conf.node_name, r->conf.listen_text, r->conf.n_peers,
	      r->conf.n_peers == 1 ? "" : "s");
	*out = r;
	return 0;
fail:
	free_all(r);
	urcu_memb_unregister_thread();
	return -1;
}

void replication_update(struct replication *r, const struct replconf *conf)
{
	if (!r)
		return;
	if (strcmp(conf->node_name, r->conf.node_name) != 0 ||
	    strcmp(conf->listen_text, r->conf.listen_text) != 0 ||
	    strcmp(conf->key_file, r->conf.key_file) != 0 ||
	    memcmp(&conf->knobs, &r->conf.knobs, sizeof(conf->knobs)) != 0)
		logf_(L_WARN, "config: node_name, listen, key_file and the knobs apply after a "
			      "restart");
	for (unsigned i = 0; i < r->conf.n_peers; i++) {
		bool kept = false;
		for (unsigned j = 0; j < conf->n_peers; j++)
			kept = kept || conf->peers[j].node == r->conf.peers[i].node;
		if (!kept)
			logf_(L_WARN,
			      "config: peer %s is no longer listed; it is dropped only by a "
			      "restart",
			      r->conf.peers[i].name);
	}
	for (unsigned j = 0; j < conf->n_peers; j++) {
		const struct peer_conf *pc = &conf->peers[j];
		unsigned i;
		for (i = 0; i < r->conf.n_peers && r->conf.peers[i].node != pc->node; i++)
			;
		if (i < r->conf.n_peers) {
			if (strcmp(r->conf.peers[i].name, pc->name) != 0) {
				logf_(L_ERR,
				      "config: peer node %" PRIu32 " is named %s, not %s; "
				      "restart to rename it",
				      pc->node, r->conf.peers[i].name, pc->name);
				continue;
			}
			if (strcmp(r->conf.peers[i].addr_text, pc->addr_text) != 0) {
				peer_publish(r, pc);
				r->conf.peers[i] = *pc;
				logf_(L_INFO, "peer %s: now at %s", pc->name, pc->addr_text);
			}
			continue;
		}
		if (r->conf.n_peers == REPLCONF_MAX_PEERS)
			break;
		struct command *cmd = calloc(1, sizeof(*cmd));
		if (!cmd || peer_publish(r, pc) < 0) {
			free(cmd);
			logf_(L_ERR, "peer %s: out of memory", pc->name);
			continue;
		}
		r->conf.peers[r->conf.n_peers++] = *pc;
		cmd->kind = CMD_ADD_PEER;
		cmd->node = pc->node;
		strcpy(cmd->name, pc->name);
		push(r, cmd);
	}
}

void replication_partition(struct replication *r, bool on)
{
	struct command *cmd = r ? calloc(1, sizeof(*cmd)) : NULL;
	if (!cmd)
		return;
	cmd->kind = CMD_PARTITION;
	cmd->on = on;
	push(r, cmd);
}

void replication_stop(struct replication *r)
{
	if (!r)
		return;
	if (r->proto_started) {
		struct command *cmd = calloc(1, sizeof(*cmd));
		if (cmd) {
			cmd->kind = CMD_STOP;
			push(r, cmd);
		}
		pthread_join(r->proto_thread, NULL);
	}
	if (r->rx_started) {
		wake(r->stop_fd);
		pthread_join(r->rx_thread, NULL);
	}
	remote_nodes_down(r->h);
	free_all(r);
	urcu_memb_unregister_thread();
}
