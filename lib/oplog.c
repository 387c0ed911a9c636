/* SPDX-License-Identifier: MIT */
/*
 * The per-shard change log the host agent tails for replication: a byte ring
 * of oplog_records appended, in apply order, under the shard lock.
 *
 * Writers never block on it: the ring simply overwrites its oldest bytes.  A
 * consumer keeps (byte cursor, expected seq); reading at its cursor a record
 * whose seq differs, or finding head - cursor > ring size, means it was lapped
 * and must resync in full.  head is published (release) only after the record
 * is complete, so a writer killed mid-append leaves nothing visible; a repair
 * bumps `resets` because the killed writer's change may be applied but not
 * logged.
 *
 * Records never wrap: if the tail of the ring is too short, a PAD record (or,
 * when fewer than a record header's bytes remain, nothing) fills it and the
 * record starts at offset 0.
 *
 * Besides the changes of this node's entries, the log carries markers
 * (OP_CLUSTER_CONNECT / OP_CLUSTER_DISCONNECT, cluster.c): one per shard per
 * connect or disconnect of a named cluster, ordered against that shard's
 * changes.
 */
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "remote.h"

/* The agent sleeps (agent_sleeping set) only after a last look at the heads;
 * this runs after a sequentially consistent update of a head or of resets
 * (a locked instruction on x86, cheaper than a store and a fence), which
 * orders it before the load of agent_sleeping (the agent orders the other
 * way round): either the agent's last look sees the record or this sees it
 * asleep.  Only the writer whose exchange cleared the mark sends.  A writer
 * killed in between, or a mark or nonce scribbled on, costs at most the
 * agent's backstop poll (replication.c), never a blocked writer: the send
 * does not wait. */
static void agent_wake(shmg_t *h)
{
	if (load_relaxed(&h->hdr->agent_sleeping) &&
	    __atomic_exchange_n(&h->hdr->agent_sleeping, 0, __ATOMIC_ACQ_REL))
		wake_send(h, "repl", load_relaxed(&h->hdr->agent_wake));
}

struct oplog_header *oplog_at(const shmg_t *h, uint32_t shard)
{
	return (struct oplog_header *)(h->base + h->geo.off_oplogs +
				       (uint64_t)shard * h->geo.oplog_bytes);
}

/* Appends one record: r's fixed fields (seq and size are set here), then
 * the cluster name, key and meta.  Under the shard lock. */
static void record_append(shmg_t *h, uint32_t shard, struct oplog_record r, const char *cl,
			  size_t clen, const char *key, size_t key_len, const void *meta,
			  size_t meta_len)
{
	struct oplog_header *ol = oplog_at(h, shard);
	uint8_t *ring = (uint8_t *)(ol + 1);
	/* The ring's size comes from the validated geometry, not from ring_bytes
	 * (which is for the consumer and could have been scribbled on). */
	uint32_t cap = h->geo.oplog_bytes - (uint32_t)sizeof(*ol);
	uint32_t size = (uint32_t)((sizeof(struct oplog_record) + clen + key_len + meta_len + 7) & ~7ull);
	if (size > cap / 2) {
		oplog_mark_reset(h, shard);
		return;
	}
	uint64_t head = ol->head;
	if (head % 8) {
		/* Damaged: records are 8-aligned.  Realign; the consumer resyncs. */
		head = (head + 7) & ~7ull;
		oplog_mark_reset(h, shard);
	}
	uint32_t pos = (uint32_t)(head % cap);
	if (cap - pos < size) {
		if (cap - pos >= sizeof(struct oplog_record)) {
			struct oplog_record pad = {.seq = ol->seq, .size = cap - pos, .op = OP_PAD};
			memcpy(ring + pos, &pad, sizeof(pad));
		}
		head += cap - pos;
		pos = 0;
	}
	r.seq = ol->seq;
	r.size = size;
	r.cluster_len = (uint8_t)clen;
	r.key_len = (uint16_t)key_len;
	r.meta_len = (uint32_t)meta_len;
	memcpy(ring + pos, &r, sizeof(r));
	uint8_t *p = ring + pos + sizeof(r);
	memcpy(p, cl, clen);
	memcpy(p + clen, key, key_len);
	if (meta_len)
		memcpy(p + clen + key_len, meta, meta_len);
	TEST_POINT("oplog:append");
	store_relaxed(&ol->seq, ol->seq + 1);
	/* Publishes the record (release, and ordered before agent_wake's load). */
	(void)__atomic_exchange_n(&ol->head, head + size, __ATOMIC_SEQ_CST);
	TEST_POINT("oplog:published");
	agent_wake(h);
}

void oplog_append(shmg_t *h, uint32_t shard, uint8_t op, uint8_t reason, const struct entry *e,
		  const char *key, size_t key_len)
{
	/* Every applied change passes here, logged or not (shmg_shard_stats). */
	struct shard_header *sh = shard_at(h, shard);
	store_relaxed(&sh->writes, sh->writes + 1);
	struct entry hd; /* the lengths sized below are the lengths copied */
	if (!entry_read(h, ref_of(h, e), &hd)) {
		oplog_mark_reset(h, shard);
		return;
	}
	/* Another node's entry (remote.c): its owner logs it; logging it here
	 * too would send it back out. */
	if (hd.node != h->node)
		return;
	char clbuf[64];
	const char *cl = cluster_name_of(h, hd.cluster, clbuf);
	struct oplog_record r = {
		.op = op,
		.reason = reason,
		.time_ns = hd.time_ns,
		.node = hd.node,
		.ep_slot = hd.ep_slot,
		.ep_gen = hd.ep_gen,
		.pid = hd.pid,
	};
	record_append(h, shard, r, cl ? cl : "", cl ? strlen(cl) : 0, key, key_len,
		      entry_meta_of(e, &hd), hd.meta_len);
}

void oplog_append_marker(shmg_t *h, uint32_t shard, uint8_t op, const char *cluster)
{
	struct oplog_record r = {
		.op = op,
		.time_ns = now_realtime_ns(),
		.node = h->node,
		.pid = (int32_t)getpid(),
	};
	record_append(h, shard, r, cluster, strlen(cluster), "", 0, NULL, 0);
}

void oplog_mark_reset(shmg_t *h, uint32_t shard)
{
	struct oplog_header *ol = oplog_at(h, shard);
	__atomic_add_fetch(&ol->resets, 1, __ATOMIC_SEQ_CST); /* as the head in oplog_append */
	agent_wake(h);
}

/* ---- the agent's wakeup (remote.h) ------------------------------------ */

int oplog_wake_bind(shmg_t *h)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	uint64_t nonce = 0;
	int fd = wake_bind(h, "repl", &nonce);
	if (fd >= 0)
		store_release(&h->hdr->agent_wake, nonce);
	return fd;
}

void oplog_wake_unbind(shmg_t *h, int fd)
{
	if (fd < 0 || handle_check(h))
		return;
	store_relaxed(&h->hdr->agent_sleeping, 0);
	store_release(&h->hdr->agent_wake, 0);
	close(fd);
}

void oplog_wake_sleeping(shmg_t *h, bool sleeping)
{
	if (handle_check(h))
		return;
	/* Sequentially consistent: the store comes before the caller's last
	 * look at the heads (see agent_wake). */
	__atomic_store_n(&h->hdr->agent_sleeping, sleeping ? 1u : 0u, __ATOMIC_SEQ_CST);
}

void oplog_wake_drain(int fd)
{
	wake_drain(fd);
}

/* ---- the agent's reader (remote.h) ------------------------------------ */

size_t oplog_record_max(const shmg_t *h)
{
	return (sizeof(struct oplog_record) + 64 + h->geo.key_max + h->geo.meta_max + 7) & ~(size_t)7;
}

int oplog_cursor_init(shmg_t *h, uint32_t shard, struct oplog_cursor *cur)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	if (shard >= h->geo.shards || !cur)
		return -EINVAL;
	struct oplog_header *ol = oplog_at(h, shard);
	/* resets first: a reset after it is seen by the next read. */
	cur->resets = load_acquire(&ol->resets);
	cur->shard = shard;
	/* head is published after seq moved, so a seq read after it can be one
	 * ahead of the record at head only if an append completed in between:
	 * read until both agree. */
	for (;;) {
		uint64_t head = load_acquire(&ol->head), seq = load_acquire(&ol->seq);
		if (load_acquire(&ol->head) == head) {
			cur->pos = head;
			cur->seq = seq;
			return 0;
		}
	}
}

int oplog_cursor_next(shmg_t *h, struct oplog_cursor *cur, void *buf, size_t cap,
		      struct oplog_entry *out)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	if (!cur || cur->shard >= h->geo.shards || !out || (cap && !buf))
		return -EINVAL;
	struct oplog_header *ol = oplog_at(h, cur->shard);
	const uint8_t *ring = (const uint8_t *)(ol + 1);
	uint64_t ringcap = h->geo.oplog_bytes - sizeof(*ol);
	/* A writer may be filling up to a pad and a record past head without
	 * having published them: bytes within that distance of head are
	 * counted as overwritten already. */
	uint64_t slack = 2 * oplog_record_max(h);
	for (;;) {
		uint64_t head = load_acquire(&ol->head);
		if (load_acquire(&ol->resets) != cur->resets)
			return -ESTALE;
		if (head == cur->pos)
			return -EAGAIN;
		if (head < cur->pos || head - cur->pos + slack > ringcap)
			return -ESTALE;
		uint64_t pos = cur->pos % ringcap;
		if (ringcap - pos < sizeof(struct oplog_record)) {
			cur->pos += ringcap - pos; /* too short for even a pad */
			continue;
		}
		struct oplog_record r;
		memcpy(&r, ring + pos, sizeof(r));
		if (r.op == OP_PAD && r.size == ringcap - pos) {
			cur->pos += r.size;
			continue;
		}
		size_t body = (size_t)r.cluster_len + r.key_len + r.meta_len;
		if (r.seq != cur->seq || r.size % 8 || r.size > ringcap - pos ||
		    r.size < sizeof(r) + body || r.cluster_len > 63)
			return -ESTALE;
		if (body + 1 > cap)
			return -ENOBUFS;
		/* Key and meta first, then the cluster name with a NUL. */
		uint8_t *b = buf;
		size_t km = (size_t)r.key_len + r.meta_len;
		memcpy(b, ring + pos + sizeof(r) + r.cluster_len, km);
		memcpy(b + km, ring + pos + sizeof(r), r.cluster_len);
		b[km + r.cluster_len] = 0;
		/* Still unwritten once copied (see slack), and no repair since? */
		if (load_acquire(&ol->head) - cur->pos + slack > ringcap ||
		    load_acquire(&ol->resets) != cur->resets)
			return -ESTALE;
		*out = (struct oplog_entry){
			.seq = r.seq,
			.op = r.op,
			.reason = r.reason,
			.id = {r.node, r.ep_slot, r.ep_gen},
			.pid = r.pid,
			.time_ns = r.time_ns,
			.cluster = (const char *)b + km,
			.key = (const char *)b,
			.key_len = r.key_len,
			.meta = b + r.key_len,
			.meta_len = r.meta_len,
		};
		cur->pos += r.size;
		cur->seq++;
		return 0;
	}
}
