/* SPDX-License-Identifier: MIT */
/*
 * The arena is a file format shared by every process of a host, possibly
 * built from different versions of the library.  Any change to lib/layout.h
 * changes LAYOUT_SIGNATURE; this test pins the signature of each layout
 * version, so changing the layout without bumping LAYOUT_VERSION (and adding
 * its row here) fails the build's tests instead of corrupting arenas.
 */
#include <check.h>
#include <stddef.h>

#include "layout.h"

static const struct {
	uint32_t version, signature;
} known_layouts[] = {
	{1, 220444},
	{2, 222180}, /* 32-byte entry header, line-aligned size classes */
	{3, 222180}, /* shard repair_pending and swept, header disconnects (in padding) */
	{4, 222180}, /* wakeup sockets named by nonces in the arena (in padding) */
	{5, 258060}, /* counters for tools: shard writes and lock waits, per-endpoint kind
		      * counts, a mailbox statistics line */
	{6, 346124}, /* replication state: a node table in the header, per-shard node cursors */
	{7, 620024}, /* growing arena: arena_max in the header, pages_avail and grows in the pool line;
		      * the agent's connected mark per node (node_state.up, in padding);
		      * prefix tree: K_PREFIX nodes, sibling and parent links of group heads,
		      * local member counts in heads, hidden endpoints in the header,
		      * single-member groups in one block (EF_SOLO);
		      * size classes in 16-byte steps below 256 bytes (40 classes);
		      * the agent's outbound mailbox (agent_mailbox, in padding);
		      * the agent's wakeup line (agent_sleeping, agent_wake);
		      * named clusters: per-cluster node marks, pending change-log markers
		      * and why a lease was kept (cluster_slot, in padding), the change
		      * log's OP_CLUSTER_CONNECT/DISCONNECT markers, and an endpoint's
		      * terminated reason (endpoint_slot, in padding);
		      * parked prefix nodes per shard (shard_header, in padding);
		      * the consumer's wakeup FIFO record in its mailbox (fifo_nonce,
		      * fifo_ino, fifo_uid, fifo_gen, in padding);
		      * the in-flight record's INFLIGHT_SWAP (a replacement's two events) */
};

START_TEST(test_signature_pinned)
{
	int seen = 0;
	for (size_t i = 0; i < sizeof(known_layouts) / sizeof(known_layouts[0]); i++) {
		if (known_layouts[i].version != LAYOUT_VERSION)
			continue;
		seen = 1;
		ck_assert_msg(known_layouts[i].signature == LAYOUT_SIGNATURE,
			      "layout.h changed (signature %u, pinned %u for version %u): bump "
			      "LAYOUT_VERSION and add a row to known_layouts",
			      (unsigned)LAYOUT_SIGNATURE, (unsigned)known_layouts[i].signature,
			      (unsigned)LAYOUT_VERSION);
	}
	ck_assert_msg(seen, "LAYOUT_VERSION %u has no pinned signature", (unsigned)LAYOUT_VERSION);
}
END_TEST

START_TEST(test_shared_structs_are_cache_line_disciplined)
{
	/* Lines written by different processes must not share a cache line. */
	ck_assert_uint_eq(offsetof(struct arena_header, epoch) % CACHE_LINE, 0);
	ck_assert_uint_eq(offsetof(struct arena_header, pool_lock) % CACHE_LINE, 0);
	ck_assert_uint_eq(offsetof(struct arena_header, endpoint_lock) % CACHE_LINE, 0);
	ck_assert_uint_eq(offsetof(struct arena_header, cluster_lock) % CACHE_LINE, 0);
	ck_assert_uint_eq(offsetof(struct arena_header, reaper_lock) % CACHE_LINE, 0);
	ck_assert_uint_eq(offsetof(struct endpoint_slot, read_epoch) % CACHE_LINE, 0);
	ck_assert_uint_eq(sizeof(struct endpoint_slot) % CACHE_LINE, 0);
	ck_assert_uint_eq(offsetof(struct mailbox_header, head) % CACHE_LINE, 0);
	ck_assert_uint_eq(offsetof(struct mailbox_header, delivered) % CACHE_LINE, 0);
	ck_assert_uint_eq(sizeof(struct bucket), CACHE_LINE);
	ck_assert_uint_eq(sizeof(struct shard_header) % CACHE_LINE, 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("layout");
	TCase *tc = tcase_create("layout");
	tcase_add_test(tc, test_signature_pinned);
	tcase_add_test(tc, test_shared_structs_are_cache_line_disciplined);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
