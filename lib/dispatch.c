/* SPDX-License-Identifier: MIT */
/*
 * Dispatch: a message to the endpoint registered at a key and to its
 * members, on this host (monitor.c's routing into mailboxes) and, through
 * the host agent, on the other hosts holding entries of the key.
 *
 * The hand-off to the agent is the agent's own mailbox: the agent publishes
 * its endpoint in the arena header (agent_mailbox) and shmg_dispatch appends
 * the message there as an ordinary SHMG_EV_MESSAGE record from the sender,
 * so the queue is bounded, crash-safe and wakes the agent exactly as any
 * mailbox does, and a full one is reported instead of growing.  The agent's
 * endpoint registers, joins and monitors nothing, so nothing else lands in
 * that mailbox.  The library knows nothing of the agent's protocol: which
 * peers get the message, and how, is the agent's business (shmgroupd,
 * docs/PROTOCOL.md section 10); it delivers what arrives from other hosts
 * with remote_message_deliver.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"
#include "remote.h"

static int message_args(shmg_t *h, const void *msg, size_t len)
{
	if (len > h->geo.meta_max)
		return -E2BIG;
	return !msg && len ? -EINVAL : 0;
}

/* Appends the message, from this handle's endpoint, to the agent's mailbox:
 * 0, -ENOTCONN (no agent endpoint live), -EAGAIN (its mailbox is full or
 * held past the producer's wait), -ENOMEM. */
static int hand_to_agent(shmg_t *h, const struct keyref *k, const void *msg, size_t len)
{
	uint64_t am = load_acquire(&h->hdr->agent_mailbox);
	uint32_t slot = (uint32_t)am - 1, gen = (uint32_t)(am >> 32);
	if (!(uint32_t)am || !gen || !endpoint_visible(h, slot, gen))
		return -ENOTCONN;
	char clbuf[64];
	const char *cl = cluster_name_of(h, k->cluster, clbuf);
	struct mailbox_record r;
	record_fill(h, &r, SHMG_EV_MESSAGE, REASON_NONE, NULL, cl, k->len, len, 0, false);
	struct mb_batch *one = &h->single;
	one->len = one->count = 0;
	if (mb_batch_add(one, &r, cl, k->key, msg, NULL) < 0)
		return -ENOMEM;
	int rc = mailbox_deliver(h, slot, gen, one);
	return rc == -ESRCH ? -ENOTCONN : rc;
}

static long dispatch(shmg_t *h, const char *key, size_t key_len, const void *msg, size_t len,
		     const struct shmg_opts *opts, bool remote)
{
	struct keyref k;
	struct node_set others;
	int rc = handle_check(h);
	if (rc || (rc = message_args(h, msg, len)))
		return rc;
	if (load_acquire(&h->ep->terminated))
		return -ECONNABORTED;
	if ((rc = key_prepare(h, key, key_len, opts, KEY_WRITE, &k)))
		return rc == -ENOTCONN ? 0 : rc;
	mailbox_warm(h);
	long n = message_targets(h, &k, remote ? &others : NULL);
	message_send(h, &k, msg, len, NULL);
	if (!remote || !others.n)
		return n;
	rc = hand_to_agent(h, &k, msg, len);
	return rc < 0 ? rc : n + (long)others.n;
}

long shmg_dispatch(shmg_t *h, const char *key, size_t key_len, const void *msg, size_t msg_len,
		   const struct shmg_opts *opts)
{
	return dispatch(h, key, key_len, msg, msg_len, opts, true);
}

long shmg_dispatch_local(shmg_t *h, const char *key, size_t key_len, const void *msg,
			 size_t msg_len, const struct shmg_opts *opts)
{
	return dispatch(h, key, key_len, msg, msg_len, opts, false);
}

/* ---- the agent's side ------------------------------------------------- */

int remote_outbound_claim(shmg_t *h)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	store_release(&h->hdr->agent_mailbox, (uint64_t)h->gen << 32 | (h->slot + 1));
	return 0;
}

void remote_outbound_release(shmg_t *h)
{
	if (handle_check(h))
		return;
	uint64_t mine = (uint64_t)h->gen << 32 | (h->slot + 1);
	__atomic_compare_exchange_n(&h->hdr->agent_mailbox, &mine, 0, false, __ATOMIC_ACQ_REL,
				    __ATOMIC_RELAXED);
}

static int remote_key(shmg_t *h, const char *cluster, const char *key, size_t key_len,
		      struct keyref *k)
{
	struct shmg_opts o = { .cluster = cluster && *cluster ? cluster : NULL };
	int rc = handle_check(h);
	return rc ? rc : key_prepare(h, key, key_len, &o, KEY_WRITE, k);
}

long remote_key_nodes(shmg_t *h, const char *cluster, const char *key, size_t key_len,
		      uint32_t *nodes, size_t max)
{
	struct keyref k;
	struct node_set others;
	int rc = remote_key(h, cluster, key, key_len, &k);
	if (rc)
		return rc == -ENOTCONN ? 0 : rc;
	message_targets(h, &k, &others);
	size_t n = others.n < max ? others.n : max;
	memcpy(nodes, others.node, n * sizeof(*nodes));
	return (long)n;
}

long remote_message_deliver(shmg_t *h, shmg_id_t from, const char *cluster, const char *key,
			    size_t key_len, const void *msg, size_t len)
{
	struct keyref k;
	int rc = remote_key(h, cluster, key, key_len, &k);
	if (rc)
		return rc == -ENOTCONN ? 0 : rc;
	if (!from.node || from.node == h->node || !from.gen || from.slot > UINT16_MAX)
		return -EINVAL;
	if ((rc = message_args(h, msg, len)))
		return rc;
	/* The sender as the event names it: its pid is not carried. */
	struct entry sender = { .node = from.node,
				.ep_slot = (uint16_t)from.slot,
				.ep_gen = from.gen };
	long n = message_targets(h, &k, NULL);
	message_send(h, &k, msg, len, &sender);
	return n;
}
