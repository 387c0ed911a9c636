/* SPDX-License-Identifier: MIT */
/* Faults on the agent's datagrams (fault.h). */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "fault.h"

#define HELD_MAX 4096u
#define REORDER_MAX_US 20000u /* a reordered datagram waits up to this long */
#define SRC_NODE_OFFSET 20u   /* the header's src_node (docs/PROTOCOL.md 3.1) */

struct held {
	uint64_t due;
	uint32_t to;
	size_t len;
	uint8_t *buf;
};

struct fault {
	struct fault_conf c;
	uint64_t rng;
	bool partitioned;
	bool cut_tx, cut_rx; /* which directions the partition drops */
	uint32_t cut[REPLCONF_MAX_PEERS]; /* the partition's peers; none: all */
	unsigned n_cut;
	struct held held[HELD_MAX];
	unsigned n_held;
	struct fault_stats stats;
};

static uint64_t next_rand(struct fault *f)
{
	/* splitmix64: small, seedable, good enough to pick faults. */
	uint64_t z = (f->rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static bool chance(struct fault *f, uint32_t percent)
{
	return percent && next_rand(f) % 100u < percent;
}

int fault_new(const struct fault_conf *c, const struct peer_conf *peers, unsigned n_peers,
	      struct fault **out)
{
	struct fault *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->c = *c;
	f->rng = c->seed;
	f->cut_tx = strcmp(c->partition_direction, "receive") != 0;
	f->cut_rx = strcmp(c->partition_direction, "send") != 0;
	if (!f->rng && getrandom(&f->rng, sizeof(f->rng), 0) != (ssize_t)sizeof(f->rng))
		f->rng = 1;
	/* The partition's peers by name; unknown names cut nobody. */
	char list[sizeof(c->partition)], *save = NULL;
	strcpy(list, c->partition);
	for (char *t = strtok_r(list, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save))
		for (unsigned i = 0; i < n_peers; i++)
			if (strcmp(peers[i].name, t) == 0 && f->n_cut < REPLCONF_MAX_PEERS)
				f->cut[f->n_cut++] = peers[i].node;
	*out = f;
	return 0;
}

void fault_free(struct fault *f)
{
	if (!f)
		return;
	for (unsigned i = 0; i < f->n_held; i++)
		free(f->held[i].buf);
	free(f);
}

void fault_partition(struct fault *f, bool on)
{
	if (f)
		f->partitioned = on;
}

static bool cut_off(const struct fault *f, uint32_t node)
{
	if (!f->partitioned)
		return false;
	if (!f->n_cut)
		return true;
	for (unsigned i = 0; i < f->n_cut; i++)
		if (f->cut[i] == node)
			return true;
	return false;
}

bool fault_drop_input(struct fault *f, const void *buf, size_t len)
{
	uint32_t src;
	if (!f || !f->partitioned || !f->cut_rx || len < SRC_NODE_OFFSET + 4)
		return false;
	memcpy(&src, (const uint8_t *)buf + SRC_NODE_OFFSET, 4);
	src = le32toh(src);
	if (!cut_off(f, src))
		return false;
	f->stats.partitioned_rx++;
	return true;
}

static void hold(struct fault *f, uint64_t due, uint32_t to, const void *buf, size_t len,
		 fault_sink sink, void *arg)
{
	uint8_t *copy = f->n_held < HELD_MAX ? malloc(len) : NULL;
	if (!copy) {
		sink(arg, to, buf, len); /* no room to hold it: it goes now */
		return;
	}
	memcpy(copy, buf, len);
	f->held[f->n_held++] = (struct held){ due, to, len, copy };
}

void fault_send(struct fault *f, uint64_t now_us, uint32_t to, const void *buf, size_t len,
		fault_sink sink, void *arg)
{
	if (!f) {
		sink(arg, to, buf, len);
		return;
	}
	if (f->cut_tx && cut_off(f, to)) {
		f->stats.partitioned_tx++;
		return;
	}
	if (chance(f, f->c.loss)) {
		f->stats.dropped++;
		return;
	}
	int copies = chance(f, f->c.duplicate) ? 2 : 1;
	if (copies == 2)
		f->stats.duplicated++;
	for (int i = 0; i < copies; i++) {
		uint64_t wait = (uint64_t)f->c.delay * 1000u;
		if (chance(f, f->c.reorder)) {
			wait += 1 + next_rand(f) % REORDER_MAX_US;
			f->stats.reordered++;
		}
		if (!wait) {
			sink(arg, to, buf, len);
			continue;
		}
		f->stats.delayed++;
		hold(f, now_us + wait, to, buf, len, sink, arg);
	}
}

void fault_flush(struct fault *f, uint64_t now_us, fault_sink sink, void *arg)
{
	if (!f)
		return;
	for (unsigned i = 0; i < f->n_held;) {
		struct held h = f->held[i];
		if (h.due > now_us) {
			i++;
			continue;
		}
		f->held[i] = f->held[--f->n_held];
		if (!(f->cut_tx && cut_off(f, h.to)))
			sink(arg, h.to, h.buf, h.len);
		free(h.buf);
	}
}

uint64_t fault_deadline(const struct fault *f)
{
	uint64_t d = UINT64_MAX;
	for (unsigned i = 0; f && i < f->n_held; i++)
		if (f->held[i].due < d)
			d = f->held[i].due;
	return d;
}

const struct fault_stats *fault_stats(const struct fault *f)
{
	static const struct fault_stats none;
	return f ? &f->stats : &none;
}
