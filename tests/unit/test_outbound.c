/* SPDX-License-Identifier: MIT */
/*
 * Dispatch to other hosts, the library's half (lib/dispatch.c): a message
 * for a key with entries of other nodes is handed to the agent's mailbox as
 * well as delivered locally; shmg_dispatch_local never hands over; with no
 * agent, or its mailbox full, the caller gets -ENOTCONN or -EAGAIN after the
 * local deliveries; what the agent receives from a peer reaches the local
 * endpoints as sent by the remote endpoint.  The agent's side over the
 * network is tests/integration/test_replication.c's.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "remote.h"
#include "tc.h"
#include "tc_events.h"

#define CAP 64

static struct tc_ev ev[CAP];

/* A member of `key` on node 7 (this arena's node is 1 or what tc sets). */
static void far_member(shmg_t *h, const char *key, uint32_t node)
{
	struct remote_change c = { .op = REMOTE_JOIN,
				   .key = key,
				   .key_len = strlen(key),
				   .id = { .node = node, .slot = 1, .gen = 1 },
				   .pid = 1 };
	TC_EQ(remote_put(h, 40 + node, &c), 0);
}

START_TEST(test_remote_members_go_to_the_agent)
{
	shmg_t *s = tc_open(tc_arena, NULL);
	shmg_t *m = tc_open(tc_arena, NULL);
	shmg_t *agent = tc_open(tc_arena, NULL);
	uint32_t nodes[4];

	TC_EQ(remote_outbound_claim(agent), 0);
	TC_EQ(shmg_join(m, SHMG_KEY("o/k"), NULL, 0, NULL), 0);
	far_member(agent, "o/k", 7);
	far_member(agent, "o/k", 9);
	far_member(agent, "o/only-far", 7);
	TC_EQ(tc_ev_drain(m, ev, CAP), 0);
	TC_EQ(remote_key_nodes(agent, NULL, SHMG_KEY("o/k"), nodes, 4), 2);
	ck_assert(nodes[0] + nodes[1] == 16 && nodes[0] * nodes[1] == 63);
	TC_EQ(remote_key_nodes(agent, NULL, SHMG_KEY("o/none"), nodes, 4), 0);

	/* One local member and two other nodes: 3, and one hand-over. */
	TC_EQ(shmg_dispatch(s, SHMG_KEY("o/k"), "hi", 2, NULL), 3);
	TC_EQ(tc_ev_drain(m, ev, CAP), 1);
	tc_ev_expect(&ev[0], SHMG_EV_MESSAGE, SHMG_REASON_NONE, shmg_self(s), NULL, "o/k", "hi", 2);
	TC_EQ(tc_ev_drain(agent, ev, CAP), 1);
	tc_ev_expect(&ev[0], SHMG_EV_MESSAGE, SHMG_REASON_NONE, shmg_self(s), NULL, "o/k", "hi", 2);
	ck_assert_int_eq(ev[0].pid, getpid());
	/* Only far members: handed over, nothing local. */
	TC_EQ(shmg_dispatch(s, SHMG_KEY("o/only-far"), "x", 1, NULL), 1);
	TC_EQ(tc_ev_drain(agent, ev, CAP), 1);
	/* dispatch_local never hands over; a key with no far entry neither. */
	TC_EQ(shmg_dispatch_local(s, SHMG_KEY("o/k"), "lo", 2, NULL), 1);
	TC_EQ(tc_ev_drain(m, ev, CAP), 1);
	TC_EQ(shmg_dispatch(s, SHMG_KEY("o/near"), "n", 1, NULL), 0);
	tc_ev_expect_empty(agent, "the agent, for local-only dispatches");
	shmg_close(agent);
	shmg_close(m);
	shmg_close(s);
}
END_TEST

START_TEST(test_no_agent_is_enotconn_after_local_delivery)
{
	shmg_t *s = tc_open(tc_arena, NULL);
	shmg_t *m = tc_open(tc_arena, NULL);
	shmg_t *agent = tc_open(tc_arena, NULL);

	TC_EQ(shmg_join(m, SHMG_KEY("o/k"), NULL, 0, NULL), 0);
	far_member(s, "o/k", 7);
	TC_EQ(shmg_dispatch(s, SHMG_KEY("o/k"), "a", 1, NULL), -ENOTCONN);
	TC_EQ(tc_ev_drain(m, ev, CAP), 1); /* delivered here all the same */
	/* An agent that stopped cleanly, and one whose endpoint is gone. */
	TC_EQ(remote_outbound_claim(agent), 0);
	TC_EQ(shmg_dispatch(s, SHMG_KEY("o/k"), "b", 1, NULL), 2);
	remote_outbound_release(agent);
	TC_EQ(shmg_dispatch(s, SHMG_KEY("o/k"), "c", 1, NULL), -ENOTCONN);
	TC_EQ(remote_outbound_claim(agent), 0);
	shmg_close(agent);
	TC_EQ(shmg_dispatch(s, SHMG_KEY("o/k"), "d", 1, NULL), -ENOTCONN);
	TC_EQ(tc_ev_drain(m, ev, CAP), 3);
	shmg_close(m);
	shmg_close(s);
}
END_TEST

START_TEST(test_full_agent_mailbox_is_eagain)
{
	shmg_t *s = tc_open(tc_arena, NULL);
	shmg_t *agent = tc_open(tc_arena, NULL);
	static char big[1000];
	long rc = 0;
	int sent = 0;

	TC_EQ(remote_outbound_claim(agent), 0);
	far_member(s, "o/k", 7);
	while ((rc = shmg_dispatch(s, SHMG_KEY("o/k"), big, sizeof(big), NULL)) == 1)
		ck_assert_int_lt(++sent, 100000);
	TC_EQ(rc, -EAGAIN);
	ck_assert_int_gt(sent, 0);
	/* Once the agent has taken its queue, hand-overs work again. */
	int got = tc_ev_drain(agent, ev, CAP);
	while (got > 0)
		got = tc_ev_drain(agent, ev, CAP);
	TC_EQ(shmg_dispatch(s, SHMG_KEY("o/k"), "again", 5, NULL), 1);
	shmg_close(agent);
	shmg_close(s);
}
END_TEST

START_TEST(test_messages_from_peers_delivered_as_local_dispatch)
{
	shmg_t *agent = tc_open(tc_arena, NULL);
	shmg_t *reg = tc_open(tc_arena, NULL);
	shmg_t *m = tc_open(tc_arena, NULL);
	shmg_id_t from = { .node = 7, .slot = 3, .gen = 2 };

	TC_EQ(shmg_register(reg, SHMG_KEY("o/k"), NULL, 0, NULL), 0);
	TC_EQ(shmg_join(reg, SHMG_KEY("o/k"), NULL, 0, NULL), 0);
	TC_EQ(shmg_join(m, SHMG_KEY("o/k"), NULL, 0, NULL), 0);
	far_member(agent, "o/k", 9); /* another node's member is not reached from here */
	TC_EQ(tc_ev_drain(reg, ev, CAP), 0);
	TC_EQ(remote_message_deliver(agent, from, NULL, SHMG_KEY("o/k"), "far", 3), 2);
	TC_EQ(tc_ev_drain(reg, ev, CAP), 1);
	tc_ev_expect(&ev[0], SHMG_EV_MESSAGE, SHMG_REASON_NONE, from, NULL, "o/k", "far", 3);
	ck_assert_int_eq(ev[0].pid, 0);
	TC_EQ(tc_ev_drain(m, ev, CAP), 1);
	tc_ev_expect(&ev[0], SHMG_EV_MESSAGE, SHMG_REASON_NONE, from, NULL, "o/k", "far", 3);
	/* A named cluster not connected here reaches nobody; bad senders. */
	TC_EQ(remote_message_deliver(agent, from, "nc", SHMG_KEY("o/k"), "x", 1), 0);
	from.node = shmg_self(agent).node;
	TC_EQ(remote_message_deliver(agent, from, NULL, SHMG_KEY("o/k"), "x", 1), -EINVAL);
	from = (shmg_id_t){ .node = 7, .slot = 3, .gen = 0 };
	TC_EQ(remote_message_deliver(agent, from, NULL, SHMG_KEY("o/k"), "x", 1), -EINVAL);
	from.gen = 1;
	TC_EQ(remote_message_deliver(agent, from, NULL, SHMG_KEY("o/"), "x", 1), -EINVAL);
	from.slot = 65536;
	TC_EQ(remote_message_deliver(agent, from, NULL, SHMG_KEY("o/k"), "x", 1), -EINVAL);
	tc_ev_expect_empty(m, "refused deliveries");
	shmg_close(m);
	shmg_close(reg);
	shmg_close(agent);
}
END_TEST

static Suite *outbound_suite(void)
{
	Suite *s = suite_create("outbound");
	TCase *tc = tc_case(s, "outbound", 20);

	tcase_add_test(tc, test_remote_members_go_to_the_agent);
	tcase_add_test(tc, test_no_agent_is_enotconn_after_local_delivery);
	tcase_add_test(tc, test_full_agent_mailbox_is_eagain);
	tcase_add_test(tc, test_messages_from_peers_delivered_as_local_dispatch);
	return s;
}

int main(void)
{
	return tc_run(outbound_suite());
}
