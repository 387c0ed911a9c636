/* SPDX-License-Identifier: MIT */
/*
 * Test-only crash points.  Writers call TEST_POINT("name") at each step of a
 * critical section; a test linked against the static library sets
 * sg_test_hook to a function that raises SIGKILL or parks at a chosen point.
 * The pointer is hidden from the shared library's exports, and costs one load
 * and a predicted branch when unset.
 *
 * Writer points (all inside the shard lock unless noted):
 *   "register:locked"      lock taken, nothing changed yet
 *   "register:allocated"   new entry block allocated and filled, not published
 *   "register:published"   entry visible to readers, counters/oplog not updated
 *   "register:replaced"    (re-register) new meta published, old not yet retired
 *   "unregister:unlinked"  entry removed from the index, not yet retired
 *   "join:allocated"       member block filled, not linked
 *   "join:linked"          member linked into the group list, not yet indexed
 *   "join:head"            a new group head published, no member linked yet;
 *                          or, for a group's first member (a single-member
 *                          group, one block), its parent prefix node made,
 *                          nothing published
 *   "join:converting"      a second member joins a single-member group: the
 *                          list head and the copy of the first member built
 *                          and the copy indexed, neither published
 *   "prefix:indexed"       a new prefix node indexed, not yet under its parent
 *   "prefix:linked"        a new group head linked under its parent prefix
 *   "prefix:replaced"      a head put in another's place on its prefix list
 *                          (the old one still indexed)
 *   "prefix:unlinked"      a group head unlinked from its prefix node, still
 *                          indexed; its empty nodes not yet pruned
 *   "prefix:pruned"        an empty prefix node unlinked from its parent, still
 *                          indexed
 *   "leave:unlinked"       member unlinked from the list, still in the index
 *   "resize:built"         bigger table built, not published
 *   "resize:published"     bigger table published, old one not yet retired
 *   "reclaim:popping"      freeing retired blocks back to their pages
 *   "alloc:page"           a fresh page claimed for the shard, not yet linked
 *   "grow:sized"           (pool lock too) the arena object grown, the new page
 *                          count not yet published
 *   "grow:published"       (pool lock too) the new page count published, no page
 *                          of it claimed yet
 *   "oplog:append"         change-log record written, head not advanced
 *   "oplog:published"      head advanced, the sleeping agent not yet woken
 *   "close:removing"       endpoint marked dead, entries being removed
 *   "event:delivered"      a single write's event appended to one monitor's
 *                          mailbox, more monitors to go (in-flight record set)
 *   "batch:delivered"      a batch appended to one target's mailbox, more
 *                          targets to go (a death batch: all shard locks held)
 *   "reap:events-sent"     a death or close batch delivered, entries not yet
 *                          removed (all shard locks held)
 *   "disconnect:tombstoned" (cluster_lock only) the clusters tombstoned and
 *                          the sweep requested, no shard swept yet
 *   "disconnect:removing"  a shard's sweep about to remove one more entry of
 *                          a disconnected cluster (the previous ones are gone
 *                          with their events)
 *   "disconnect:swept"     (cluster_lock only) one more shard swept
 *   "disconnect:swept-all" (cluster_lock only) every shard swept (or left to
 *                          its next locker), the markers not yet written
 *   "connect:published"    (cluster_lock only) a new connect's slot published
 *                          with its markers pending, none written yet
 *   "cluster:marked"       (cluster_lock only) a connect or disconnect marker
 *                          appended to one more shard's change log
 *   "lease:checked"        (cluster_lock only) a due lease's cluster looked at
 *                          for this host's interest, not yet extended or
 *                          disconnected
 *   "evict:terminated"     (no lock) an endpoint's conflict record sent and its
 *                          `terminated` set (remote_conflict_evict), nothing
 *                          of it hidden or removed yet
 *   "terminate:hidden"     the terminated endpoint hidden (CLOSING), its
 *                          entries not yet removed
 *
 * The open path (not under a shard lock):
 *   "open:init"            creator: arena initialised under the creation lock,
 *                          magic not yet published
 *   "open:mapped"          creator or attacher: arena mapped, creation lock
 *                          held, liveness-lock descriptor not yet opened
 *   "open:claimed"         endpoint lock held, a FREE slot's liveness lock
 *                          taken and the high-water mark raised over it
 *   "open:opening"         the slot OPENING (new gen, pid), mailbox not reset
 *   "open:live"            the slot LIVE and counted, endpoint lock still held
 *
 * Mailbox producer points (inside the mailbox lock, every delivery):
 *   "mailbox:published"    batch appended (or counted dropped), consumer not
 *                          yet told
 *   "mailbox:signalled"    `signalled` flipped 0 -> 1, wakeup not yet sent
 *   "mailbox:woken"        wakeup sent, lock not yet released
 *
 * Replication store points (remote.c, the shard lock held):
 *   "remote:resync-upsert" a resync: its cursor marked dirty, about
 *                          to apply one more of the owner's entries
 *   "remote:resync-sweep"  every entry applied, the node's others not yet removed
 *   "remote:resync-swept"  the others removed, the cursor not yet stored
 *   "remote:purged-shard"  a node's entries of one shard removed (all of them,
 *                          or those of one cluster), its cursor there not yet
 *                          cleared, lock still held
 *   "replace:allocated"    (remote_replace) the winner's block filled, not
 *                          published
 *   "replace:published"    the winner indexed in the loser's place, the
 *                          in-flight record (INFLIGHT_SWAP) set, no monitor
 *                          told
 *   "replace:told"         every monitor has the pair of events, the
 *                          in-flight record not yet cleared
 *   "remote:cluster-resolved" (no lock) remote_node_cluster or
 *                          remote_purge_cluster has resolved the cluster's
 *                          name, nothing done yet
 *
 * Failure points (TEST_FAIL):
 *   "repair:fail"          repair_shard gives up before changing anything
 */
#ifndef SHMG_TESTHOOK_H
#define SHMG_TESTHOOK_H

#include <stdbool.h>

extern void (*sg_test_hook)(const char *point);
/* Failure injection: TEST_FAIL("name") is true when sg_test_fail says so. */
extern bool (*sg_test_fail)(const char *point);

#define TEST_POINT(p)                                                                  \
	do {                                                                           \
		if (__builtin_expect(sg_test_hook != 0, 0))                            \
			sg_test_hook(p);                                               \
	} while (0)

#define TEST_FAIL(p) (__builtin_expect(sg_test_fail != 0, 0) && sg_test_fail(p))

#endif
