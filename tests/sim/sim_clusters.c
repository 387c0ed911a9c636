/* SPDX-License-Identifier: MIT */
/*
 * Named clusters in the simulation (docs/PROTOCOL.md section 15).  Each host
 * is connected to a subset of the named clusters "c0" and "c1" (the default
 * cluster always): a new arena starts with a random subset, and during the
 * chaos phase hosts connect and disconnect at random, partitioned or not,
 * before and after crashes and agent restarts.  As the library does, a
 * connect or disconnect appends a marker to every shard's change log, a
 * disconnect first removes the host's own entries of the cluster (each
 * logged, reason cluster_disconnect), a local write to a cluster not
 * connected is refused, and the store refuses a peer's change of one.
 * Unlike the library, the store does not sweep other nodes' entries on a
 * disconnect: that is left to the core's REPL_BATCH_PURGE_CLUSTER, so that
 * the checker sees whether the core does it.
 *
 * The final check (cluster isolation): every running node holds exactly the
 * entries of each running owner in the clusters it is connected to (the
 * default one included), and nothing of a cluster it is not connected to;
 * its marks of each running peer (shmg_nodes) are the peer's set, and it
 * marks nothing of a node that is down.
 *
 * Draws come from a PRNG of their own, so the workload of changes is the
 * one the seed always drew.
 */
#include <stdio.h>
#include <string.h>

#include "sim.h"

static const char *const names[SIM_CLUSTERS] = { "c0", "c1" };

const char *sim_cluster_name(int i)
{
	return names[i];
}

int sim_cluster_index(const char *name, size_t len)
{
	for (int i = 0; i < SIM_CLUSTERS; i++)
		if (strlen(names[i]) == len && !memcmp(names[i], name, len))
			return i;
	return -1;
}

int sim_cluster_open(const struct sim_node *n, const char *name, size_t len)
{
	if (len == 0)
		return 1;
	int i = sim_cluster_index(name, len);
	return i >= 0 && (n->connected >> i & 1);
}

static uint64_t draw(struct sim *s)
{
	if (!s->cl_rng)
		s->cl_rng = s->seed ^ 0x636c757374657273ull;
	return sim_rand(&s->cl_rng);
}

void sim_clusters_new_arena(struct sim *s, struct sim_node *n)
{
	n->connected = (uint8_t)(draw(s) % (1u << SIM_CLUSTERS));
	memset(n->marks, 0, sizeof(n->marks));
}

/* The marker of (dis)connecting cluster i, in every shard's log. */
static void markers(struct sim *s, struct sim_node *n, int i, uint8_t op)
{
	struct sim_rec m = { .op = op };
	m.cluster_len = (uint8_t)strlen(names[i]);
	memcpy(m.cluster, names[i], m.cluster_len);
	for (uint32_t sh = 0; sh < s->p.shards; sh++) {
		m.shard = (uint16_t)sh;
		sim_log_marker(s, n, &m);
	}
}

void sim_clusters_op(struct sim *s, uint32_t id)
{
	struct sim_node *n = &s->node[id];
	uint64_t roll = draw(s);
	int i = (int)(roll / 64 % SIM_CLUSTERS);

	if (!n->host_up || roll % 64 != 0)
		return;
	if (!(n->connected >> i & 1)) {
		n->connected |= (uint8_t)(1u << i);
		markers(s, n, i, REPL_OP_CLUSTER_CONNECT);
	} else {
		n->connected &= (uint8_t) ~(1u << i);
		sim_remove_own(s, n, names[i], strlen(names[i]));
		markers(s, n, i, REPL_OP_CLUSTER_DISCONNECT);
	}
	if (s->verbose)
		printf("%10.3f ms  n%u: %s cluster %s\n", s->now / 1000.0, id,
		       n->connected >> i & 1 ? "connected to" : "disconnected from", names[i]);
}

void sim_clusters_emit(const struct sim_node *n,
		       void (*emit)(void *arg, const char *name, size_t len), void *arg)
{
	for (int i = 0; i < SIM_CLUSTERS; i++)
		if (n->connected >> i & 1)
			emit(arg, names[i], strlen(names[i]));
}

void sim_clusters_mark(struct sim *s, uint32_t id, uint32_t peer, const char *name, size_t len,
		       int connected)
{
	struct sim_node *n = &s->node[id];
	int i = sim_cluster_index(name, len);
	if (i < 0 || peer == 0 || peer > s->p.nodes || peer == id) {
		sim_fail(s, "n%u: a mark of n%u for cluster %.*s", id, peer, (int)len, name);
		return;
	}
	if (s->verbose)
		printf("%10.3f ms  n%u: n%u %s cluster %s\n", s->now / 1000.0, id, peer,
		       connected ? "is in" : "is not in", names[i]);
	if (connected)
		n->marks[peer] |= (uint8_t)(1u << i);
	else
		n->marks[peer] &= (uint8_t) ~(1u << i);
}

void sim_clusters_check_final(struct sim *s, const struct sim_node *rn, const struct sim_node *on)
{
	const struct sim_slice *held = &rn->slices[on->id];
	for (uint32_t k = 0; k < held->n; k++)
		if (!sim_cluster_open(rn, held->e[k].cluster, held->e[k].cluster_len)) {
			sim_fail(
				s,
				"final: n%u holds n%u's entry %.*s of cluster %.*s, which it is not "
				"connected to",
				rn->id, on->id, held->e[k].key_len, held->e[k].key,
				held->e[k].cluster_len, held->e[k].cluster);
			return;
		}
	uint8_t want = on->agent_up ? on->connected : 0;
	if (rn->marks[on->id] != want)
		sim_fail(s, "final: n%u marks n%u in clusters %#x, it is in %#x", rn->id, on->id,
			 rn->marks[on->id], want);
}
