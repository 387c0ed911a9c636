/* SPDX-License-Identifier: MIT */
/*
 * Attaching to the group and sampling it.
 *
 * The tool attaches like shmgroupctl: SHMG_OPEN_NOCREATE (looking never
 * creates an arena), and SHMG_OPEN_OWNER with --owner.  A missing arena is a
 * state, not an error: each refresh tries again.  Once attached, each refresh
 * first asks shmg_destroyed(); a destroyed arena is let go and the name
 * opened again at once, so the tool follows a group that is recreated.
 *
 * A sample reads every counter through the shmg_*_stats calls (plain loads,
 * nothing written), the endpoints' command names from /proc, and, only when
 * the Keys view needs it, every membership through shmg_entries.  The entry
 * walk's callback runs inside a read section: it only counts into memory of
 * this process, and the prefixes are built after it.  Rates are the counters'
 * differences from the previous sample over the monotonic time between them;
 * an endpoint counts only against its own earlier sample (same slot and
 * generation).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "top.h"

#define PAGE_BYTES 65536u

uint64_t top_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t top_real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

bool top_attach(struct top_source *src)
{
	struct shmg_config cfg = { .flags = SHMG_OPEN_NOCREATE };
	int rc;

	if (src->h) {
		if (shmg_destroyed(src->h) != 1)
			return true;
		top_detach(src);
	}
	if (src->owner_given) {
		cfg.flags |= SHMG_OPEN_OWNER;
		cfg.owner_uid = src->owner_uid;
	}
	rc = shmg_open(src->group, &cfg, &src->h);
	if (rc == 0) {
		src->problem[0] = '\0';
		return true;
	}
	src->h = NULL;
	switch (rc) {
	case -ENOENT:
		snprintf(src->problem, sizeof(src->problem),
			 "no arena: /dev/shm/shmgroup.%s does not exist; waiting for it",
			 src->group);
		break;
	case -EACCES:
		snprintf(src->problem, sizeof(src->problem),
			 "group '%s': %s (name its owner with --owner)", src->group,
			 shmg_strerror(rc));
		break;
	default:
		snprintf(src->problem, sizeof(src->problem), "group '%s': cannot attach: %s",
			 src->group, shmg_strerror(rc));
	}
	return false;
}

void top_detach(struct top_source *src)
{
	if (src->h)
		shmg_close(src->h);
	src->h = NULL;
}

void top_comm(pid_t pid, char buf[TOP_COMM_MAX])
{
	char path[64];
	FILE *f;
	size_t n = 0;

	snprintf(path, sizeof(path), "/proc/%ld/comm", (long)pid);
	f = pid > 0 ? fopen(path, "r") : NULL;
	if (f) {
		n = fread(buf, 1, TOP_COMM_MAX - 1, f);
		fclose(f);
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\0'))
		n--;
	if (n == 0)
		buf[n++] = '?';
	buf[n] = '\0';
}

/* Seconds since the process started (/proc/PID/stat field 22 against
 * /proc/uptime), or -1. */
static int64_t proc_uptime_s(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long start = 0;
	double up;
	FILE *f;
	int field;
	long hz = sysconf(_SC_CLK_TCK);

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if (!(f = fopen(path, "r")))
		return -1;
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	if (!p || !(p = strrchr(buf, ')')))
		return -1;
	for (field = 2; field < 22 && p; field++)
		p = strchr(p + 1, ' ');
	if (!p || sscanf(p, " %llu", &start) != 1 || hz <= 0)
		return -1;
	if (!(f = fopen("/proc/uptime", "r")))
		return -1;
	if (fscanf(f, "%lf", &up) != 1)
		up = -1;
	fclose(f);
	if (up < 0 || up < (double)start / (double)hz)
		return -1;
	return (int64_t)(up - (double)start / (double)hz);
}

/* ---- the Keys view: group keys and their prefixes -------------------- */

/* A small open-addressing map from (cluster, bytes) to counts. */
struct count_map {
	struct top_prefix *v;
	size_t n, cap;
};

static uint64_t hash_bytes(const char *cluster, const char *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;

	for (const char *c = cluster ? cluster : ""; *c; c++)
		h = (h ^ (unsigned char)*c) * 1099511628211ull;
	h = (h ^ 0xff) * 1099511628211ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
	return h;
}

static bool same_cluster(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static int map_grow(struct count_map *m)
{
	struct count_map bigger = { NULL, 0, m->cap ? m->cap * 2 : 256 };

	bigger.v = calloc(bigger.cap, sizeof(*bigger.v));
	if (!bigger.v)
		return -ENOMEM;
	for (size_t i = 0; i < m->cap; i++) {
		struct top_prefix *e = &m->v[i];

		if (!e->prefix)
			continue;
		size_t j = hash_bytes(e->cluster, e->prefix, e->prefix_len) & (bigger.cap - 1);
		while (bigger.v[j].prefix)
			j = (j + 1) & (bigger.cap - 1);
		bigger.v[j] = *e;
		bigger.n++;
	}
	free(m->v);
	*m = bigger;
	return 0;
}

/* The slot of (cluster, bytes), made if new; NULL when out of memory. */
static struct top_prefix *map_get(struct count_map *m, const char *cluster, const char *p, size_t n)
{
	if ((m->n + 1) * 2 > m->cap && map_grow(m) < 0)
		return NULL;
	size_t j = hash_bytes(cluster, p, n) & (m->cap - 1);
	for (;; j = (j + 1) & (m->cap - 1)) {
		struct top_prefix *e = &m->v[j];

		if (!e->prefix) {
			e->prefix = malloc(n + 1);
			e->cluster = cluster ? strdup(cluster) : NULL;
			if (!e->prefix || (cluster && !e->cluster)) {
				free(e->prefix);
				free(e->cluster);
				*e = (struct top_prefix){ 0 };
				return NULL;
			}
			memcpy(e->prefix, p, n);
			e->prefix[n] = '\0';
			e->prefix_len = n;
			m->n++;
			return e;
		}
		if (e->prefix_len == n && memcmp(e->prefix, p, n) == 0 &&
		    same_cluster(e->cluster, cluster))
			return e;
	}
}

static void map_free(struct count_map *m)
{
	for (size_t i = 0; i < m->cap; i++) {
		free(m->v[i].prefix);
		free(m->v[i].cluster);
	}
	free(m->v);
	*m = (struct count_map){ 0 };
}

struct walk {
	struct count_map keys;
	bool failed;
};

/* Inside the read section: counts the membership by its key, nothing more. */
static int count_member(const struct shmg_entry *e, void *arg)
{
	struct walk *w = arg;
	struct top_prefix *k;

	if (e->kind != SHMG_MEMBER)
		return 0;
	if (!(k = map_get(&w->keys, e->cluster, e->key, e->key_len))) {
		w->failed = true;
		return 1;
	}
	k->members++;
	return 0;
}

static int cmp_prefix(const void *a, const void *b)
{
	const struct top_prefix *x = a, *y = b;

	if (x->members != y->members)
		return x->members < y->members ? 1 : -1;
	return strcmp(x->prefix, y->prefix);
}

/* Every prefix ending in '/' of every group key, with the members and keys
 * under it: what shmg_member_count(prefix) and a listing would say. */
static void sample_prefixes(shmg_t *h, struct top_snapshot *s)
{
	struct walk w = { 0 };
	struct count_map pm = { 0 };

	if (shmg_entries(h, 1, count_member, &w) < 0 || w.failed)
		goto out;
	for (size_t i = 0; i < w.keys.cap; i++) {
		const struct top_prefix *k = &w.keys.v[i];

		if (!k->prefix)
			continue;
		for (size_t n = 1; n <= k->prefix_len; n++) {
			struct top_prefix *p;

			if (k->prefix[n - 1] != '/')
				continue;
			if (!(p = map_get(&pm, k->cluster, k->prefix, n)))
				goto out;
			p->members += k->members;
			p->keys++;
		}
	}
	s->prefixes = calloc(pm.n ? pm.n : 1, sizeof(*s->prefixes));
	if (!s->prefixes)
		goto out;
	for (size_t i = 0; i < pm.cap; i++)
		if (pm.v[i].prefix) {
			s->prefixes[s->n_prefixes++] = pm.v[i];
			pm.v[i] = (struct top_prefix){ 0 };
		}
	qsort(s->prefixes, s->n_prefixes, sizeof(*s->prefixes), cmp_prefix);
	s->prefixes_walked = true;
out:
	map_free(&pm);
	map_free(&w.keys);
}

/* ---- the rest of a sample --------------------------------------------- */

static double rate(uint64_t now, uint64_t before, double interval_s)
{
	if (interval_s <= 0)
		return -1;
	return now >= before ? (double)(now - before) / interval_s : 0;
}

static void sample_shards(shmg_t *h, const struct top_snapshot *prev, struct top_snapshot *s)
{
	uint64_t prev_writes = 0;

	s->shards = calloc(s->info.shards ? s->info.shards : 1, sizeof(*s->shards));
	if (!s->shards)
		return;
	for (uint32_t i = 0; i < s->info.shards; i++) {
		struct top_shard *t = &s->shards[s->n_shards];

		if (shmg_shard_stats(h, i, &t->st, sizeof(t->st)) < 0)
			continue;
		t->writes_per_s = -1;
		if (s->interval_s > 0 && i < prev->n_shards && prev->shards[i].st.shard == i) {
			t->writes_per_s =
				rate(t->st.writes, prev->shards[i].st.writes, s->interval_s);
			prev_writes += prev->shards[i].st.writes;
		}
		s->registered += t->st.registered;
		s->members += t->st.members;
		s->monitors += t->st.monitors;
		s->writes += t->st.writes;
		s->n_shards++;
	}
	s->ops_per_s = s->interval_s > 0 && prev->n_shards == s->n_shards
			       ? rate(s->writes, prev_writes, s->interval_s)
			       : -1;
}

static const struct top_endpoint *find_endpoint(const struct top_snapshot *prev, shmg_id_t id)
{
	for (size_t i = 0; i < prev->n_endpoints; i++)
		if (shmg_id_equal(prev->endpoints[i].st.id, id))
			return &prev->endpoints[i];
	return NULL;
}

static void sample_endpoints(shmg_t *h, const struct top_snapshot *prev, struct top_snapshot *s)
{
	shmg_id_t self = shmg_self(h);
	double delivered_delta = 0;

	s->endpoints =
		calloc(s->info.max_endpoints ? s->info.max_endpoints : 1, sizeof(*s->endpoints));
	if (!s->endpoints)
		return;
	for (uint32_t slot = 0; slot < s->info.max_endpoints; slot++) {
		struct top_endpoint *e = &s->endpoints[s->n_endpoints];
		const struct top_endpoint *before;

		if (shmg_endpoint_stats(h, slot, &e->st, sizeof(e->st)) < 0)
			continue;
		top_comm(e->st.pid, e->comm);
		e->self = shmg_id_equal(e->st.id, self);
		e->age_s = s->time_ns > e->st.opened_ns
				   ? (s->time_ns - e->st.opened_ns) / 1000000000u
				   : 0;
		e->events_per_s = -1;
		before = s->interval_s > 0 ? find_endpoint(prev, e->st.id) : NULL;
		if (before) {
			e->events_per_s = rate(e->st.events_delivered, before->st.events_delivered,
					       s->interval_s);
			delivered_delta += e->events_per_s * s->interval_s;
		} else if (s->interval_s > 0) {
			/* New since the last sample: all its events are new. */
			delivered_delta += (double)e->st.events_delivered;
		}
		s->events_delivered += e->st.events_delivered;
		s->n_endpoints++;
	}
	s->events_per_s = s->interval_s > 0 ? delivered_delta / s->interval_s : -1;
}

static void sample_clusters(shmg_t *h, struct top_snapshot *s)
{
	size_t cap = 8;
	int rc;

	s->clusters = calloc(cap, sizeof(*s->clusters));
	for (uint32_t slot = 0; s->clusters; slot++) {
		struct top_cluster *c;
		long n;

		if (s->n_clusters == cap) {
			void *p = realloc(s->clusters, 2 * cap * sizeof(*s->clusters));

			if (!p)
				break;
			s->clusters = p;
			cap *= 2;
		}
		c = &s->clusters[s->n_clusters];
		*c = (struct top_cluster){ 0 };
		rc = shmg_cluster_stats(h, slot, &c->st, sizeof(c->st));
		if (rc == -ERANGE)
			break;
		if (rc < 0)
			continue;
		/* The default cluster's "nodes" are this host's peers, and this
		 * host; a named one's include this host when connected. */
		n = shmg_nodes(h, slot ? c->st.name : NULL, c->nodes, 16);
		if (n < 0)
			n = 0;
		c->n_nodes = (size_t)n;
		if (slot == 0 && c->n_nodes < 16) {
			memmove(c->nodes + 1, c->nodes, c->n_nodes * sizeof(c->nodes[0]));
			c->nodes[0] = s->info.node_id;
			c->n_nodes++;
		}
		s->n_clusters++;
	}
}

void top_snapshot_free(struct top_snapshot *s)
{
	for (size_t i = 0; i < s->n_prefixes; i++) {
		free(s->prefixes[i].prefix);
		free(s->prefixes[i].cluster);
	}
	free(s->prefixes);
	free(s->shards);
	free(s->endpoints);
	free(s->clusters);
	*s = (struct top_snapshot){ 0 };
}

void top_sample(struct top_source *src, const struct top_snapshot *prev, struct top_snapshot *now)
{
	top_snapshot_free(now);
	now->time_ns = top_real_ns();
	now->mono_ns = top_mono_ns();
	now->interval_s = -1;
	now->ops_per_s = now->events_per_s = -1;
	now->reaper_uptime_s = -1;
	if (!top_attach(src) || shmg_info(src->h, &now->info) < 0) {
		snprintf(now->problem, sizeof(now->problem), "%s",
			 src->problem[0] ? src->problem : "cannot read the arena");
		return;
	}
	now->attached = true;
	/* Rates only against a sample of the same arena. */
	if (prev->attached && prev->info.incarnation == now->info.incarnation &&
	    now->mono_ns > prev->mono_ns)
		now->interval_s = (double)(now->mono_ns - prev->mono_ns) / 1e9;
	now->arena_used =
		now->info.arena_size - (now->info.pages_total - now->info.pages_used) * PAGE_BYTES;
	if (now->info.reaper_pid) {
		top_comm((pid_t)now->info.reaper_pid, now->reaper_comm);
		now->reaper_uptime_s = proc_uptime_s((pid_t)now->info.reaper_pid);
	}
	now->repairs = now->info.shard_repairs;
	sample_shards(src->h, prev, now);
	sample_endpoints(src->h, prev, now);
	sample_clusters(src->h, now);
	if (src->keys_wanted)
		sample_prefixes(src->h, now);
}
