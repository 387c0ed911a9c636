/* SPDX-License-Identifier: MIT */
/*
 * The views as tables of text cells, shared by the screen and the
 * plain-text batch output: each view's columns, one row per shard, endpoint,
 * cluster or prefix, and the header lines above them.  A number cell keeps
 * its value for sorting; the filter matches a row when any of its cells
 * contains the filter text.
 *
 * Column widths are chosen so that every view fits 80 columns; on the screen
 * a wider terminal shows the same columns with more room for the last one.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "top.h"

const char *const top_view_names[VIEW_COUNT] = { "shards", "endpoints", "clusters", "peers",
						 "keys" };

int top_view_parse(const char *name)
{
	for (int v = 0; v < VIEW_COUNT; v++)
		if (strcmp(name, top_view_names[v]) == 0)
			return v;
	return -1;
}

static const struct top_column shard_cols[] = {
	{ "SHARD", 5, false },    { "ENTRIES", 8, false }, { "MONS", 4, false },
	{ "WRITES/S", 8, false }, { "WRITES", 9, false },  { "WAITS", 6, false },
	{ "LOGRECS", 8, false },  { "LOGKIB", 6, false },  { "RESETS", 6, false },
	{ "REPAIRS", 7, false },
};
static const struct top_column endpoint_cols[] = {
	{ "SLOT", 5, false }, { "PID", 7, false },     { "COMMAND", 15, true },
	{ "REGS", 6, false }, { "MEMBS", 6, false },   { "MONS", 4, false },
	{ "MBOX", 6, false }, { "DROPPED", 7, false }, { "EV/S", 6, false },
	{ "AGE", 7, false },
};
static const struct top_column cluster_cols[] = {
	{ "CLUSTER", 20, true }, { "NODES", 12, true }, { "REGS", 8, false },
	{ "MEMBERS", 8, false }, { "LEASE", 8, false }, { "LEFT", 8, false },
	{ "UP", 8, false },
};
static const struct top_column peer_cols[] = {
	{ "NODE", 6, false },  { "ADDRESS", 21, true }, { "STATE", 8, true }, { "RTT", 7, false },
	{ "HEARD", 7, false }, { "IN/OUT", 12, false }, { "LAG", 7, false },
};
static const struct top_column key_cols[] = {
	{ "PREFIX", 50, true },
	{ "MEMBERS", 10, false },
	{ "KEYS", 8, false },
};

#define NCOLS(a) (sizeof(a) / sizeof((a)[0]))

size_t top_view_ncols(enum top_view v)
{
	static const size_t n[VIEW_COUNT] = { NCOLS(shard_cols), NCOLS(endpoint_cols),
					      NCOLS(cluster_cols), NCOLS(peer_cols),
					      NCOLS(key_cols) };

	return v < VIEW_COUNT ? n[v] : 1;
}

size_t top_view_default_sort(enum top_view v)
{
	switch (v) {
	case VIEW_SHARDS:
	case VIEW_ENDPOINTS:
	case VIEW_CLUSTERS:
	case VIEW_PEERS:
		return 0;
	case VIEW_KEYS:
	case VIEW_COUNT:
		break;
	}
	return 1;
}

/* ---- cells ------------------------------------------------------------- */

static struct top_cell *cell(struct top_table *t, size_t row, size_t col)
{
	return &t->cells[row * t->n_cols + col];
}

/* A count: exact, or over 99999 shortened to k, M, G. */
static void put_count(struct top_cell *c, uint64_t v, bool exact)
{
	static const char units[] = "kMGTPE";
	double d = (double)v;
	int u = -1;

	c->num = d;
	if (exact || v < 100000) {
		snprintf(c->text, sizeof(c->text), "%" PRIu64, v);
		return;
	}
	while (d >= 1000 && u < 5) {
		d /= 1000;
		u++;
	}
	snprintf(c->text, sizeof(c->text), d < 10 ? "%.1f%c" : "%.0f%c", d, units[u]);
}

/* A rate: "-" before there are two samples. */
static void put_rate(struct top_cell *c, double v)
{
	c->num = v;
	if (v < 0)
		snprintf(c->text, sizeof(c->text), "-");
	else if (v < 10)
		snprintf(c->text, sizeof(c->text), "%.1f", v);
	else if (v < 100000)
		snprintf(c->text, sizeof(c->text), "%.0f", v);
	else
		snprintf(c->text, sizeof(c->text), "%.0fk", v / 1000);
}

/* A duration: exact seconds in batch output, else 59s, 59m59s, 23h59m, 9d23h. */
static void put_duration(struct top_cell *c, int64_t s, bool exact)
{
	c->num = (double)s;
	if (s < 0)
		snprintf(c->text, sizeof(c->text), "-%" PRId64 "s", -s);
	else if (exact || s < 60)
		snprintf(c->text, sizeof(c->text), "%" PRId64 "s", s);
	else if (s < 3600)
		snprintf(c->text, sizeof(c->text), "%" PRId64 "m%02" PRId64 "s", s / 60, s % 60);
	else if (s < 86400)
		snprintf(c->text, sizeof(c->text), "%" PRId64 "h%02" PRId64 "m", s / 3600,
			 s / 60 % 60);
	else
		snprintf(c->text, sizeof(c->text), "%" PRId64 "d%02" PRId64 "h", s / 86400,
			 s / 3600 % 24);
}

static void put_text(struct top_cell *c, const char *s)
{
	snprintf(c->text, sizeof(c->text), "%s", s);
	c->num = 0;
}

/* Key bytes for a terminal: printable ASCII as is, the rest as \xNN. */
static void put_bytes(struct top_cell *c, const char *p, size_t n)
{
	size_t o = 0;

	for (size_t i = 0; i < n && o + 5 < sizeof(c->text); i++) {
		unsigned char b = (unsigned char)p[i];

		if (b >= 0x20 && b < 0x7f && b != '\\')
			c->text[o++] = (char)b;
		else
			o += (size_t)snprintf(c->text + o, sizeof(c->text) - o, "\\x%02x", b);
	}
	c->text[o] = '\0';
	c->num = 0;
}

/* ---- rows of each view ------------------------------------------------- */

static void shard_rows(struct top_table *t, const struct top_snapshot *s, bool exact)
{
	for (size_t i = 0; i < s->n_shards; i++) {
		const struct top_shard *sh = &s->shards[i];

		put_count(cell(t, i, 0), sh->st.shard, true);
		put_count(cell(t, i, 1), sh->st.registered + sh->st.members, exact);
		put_count(cell(t, i, 2), sh->st.monitors, exact);
		put_rate(cell(t, i, 3), sh->writes_per_s);
		put_count(cell(t, i, 4), sh->st.writes, exact);
		put_count(cell(t, i, 5), sh->st.lock_waits, exact);
		put_count(cell(t, i, 6), sh->st.log_records, exact);
		put_count(cell(t, i, 7), sh->st.log_bytes / 1024, exact);
		put_count(cell(t, i, 8), sh->st.log_resets, exact);
		put_count(cell(t, i, 9), sh->st.repairs, exact);
	}
	t->n_rows = s->n_shards;
}

static void endpoint_rows(struct top_table *t, const struct top_snapshot *s, bool exact)
{
	for (size_t i = 0; i < s->n_endpoints; i++) {
		const struct top_endpoint *e = &s->endpoints[i];
		char comm[TOP_COMM_MAX + 2];

		snprintf(comm, sizeof(comm), "%s%s", e->comm, e->self ? "*" : "");
		put_count(cell(t, i, 0), e->st.id.slot, true);
		put_count(cell(t, i, 1), (uint64_t)e->st.pid, true);
		put_text(cell(t, i, 2), comm);
		put_count(cell(t, i, 3), e->st.registrations, exact);
		put_count(cell(t, i, 4), e->st.memberships, exact);
		put_count(cell(t, i, 5), e->st.monitors, exact);
		put_count(cell(t, i, 6), e->st.mailbox_used, exact);
		put_count(cell(t, i, 7), e->st.events_dropped, exact);
		put_rate(cell(t, i, 8), e->events_per_s);
		put_duration(cell(t, i, 9), (int64_t)e->age_s, exact);
	}
	t->n_rows = s->n_endpoints;
}

static void cluster_rows(struct top_table *t, const struct top_snapshot *s, bool exact)
{
	for (size_t i = 0; i < s->n_clusters; i++) {
		const struct top_cluster *c = &s->clusters[i];
		char nodes[TOP_CELL_MAX] = "";
		size_t o = 0;

		for (size_t k = 0; k < c->n_nodes && k < 16 && o < sizeof(nodes) - 12; k++)
			o += (size_t)snprintf(nodes + o, sizeof(nodes) - o, "%s%" PRIu32,
					      k ? "," : "", c->nodes[k]);
		put_text(cell(t, i, 0), c->st.slot ? c->st.name : "(default)");
		put_text(cell(t, i, 1), nodes);
		cell(t, i, 1)->num = (double)c->n_nodes;
		put_count(cell(t, i, 2), c->st.registered, exact);
		put_count(cell(t, i, 3), c->st.members, exact);
		if (c->st.ttl_ms) {
			put_duration(cell(t, i, 4), (int64_t)(c->st.ttl_ms / 1000), exact);
			put_duration(cell(t, i, 5), c->st.lease_left_ms / 1000, exact);
		} else {
			put_text(cell(t, i, 4), "-");
			put_text(cell(t, i, 5), "-");
		}
		if (c->st.connected_ns && s->time_ns > c->st.connected_ns)
			put_duration(cell(t, i, 6),
				     (int64_t)((s->time_ns - c->st.connected_ns) / 1000000000u),
				     exact);
		else
			put_text(cell(t, i, 6), "-");
	}
	t->n_rows = s->n_clusters;
}

static void key_rows(struct top_table *t, const struct top_snapshot *s, bool exact)
{
	for (size_t i = 0; i < s->n_prefixes; i++) {
		const struct top_prefix *p = &s->prefixes[i];
		struct top_cell *c = cell(t, i, 0);

		put_bytes(c, p->prefix, p->prefix_len);
		if (p->cluster) {
			size_t n = strlen(c->text);

			snprintf(c->text + n, sizeof(c->text) - n, " [%s]", p->cluster);
		}
		put_count(cell(t, i, 1), p->members, exact);
		put_count(cell(t, i, 2), p->keys, exact);
	}
	t->n_rows = s->n_prefixes;
}

void top_table_build(struct top_table *t, enum top_view v, const struct top_snapshot *s, bool exact)
{
	static const struct {
		const struct top_column *cols;
		size_t n;
	} views[VIEW_COUNT] = {
		[VIEW_SHARDS] = { shard_cols, NCOLS(shard_cols) },
		[VIEW_ENDPOINTS] = { endpoint_cols, NCOLS(endpoint_cols) },
		[VIEW_CLUSTERS] = { cluster_cols, NCOLS(cluster_cols) },
		[VIEW_PEERS] = { peer_cols, NCOLS(peer_cols) },
		[VIEW_KEYS] = { key_cols, NCOLS(key_cols) },
	};
	size_t rows = v == VIEW_SHARDS      ? s->n_shards
		      : v == VIEW_ENDPOINTS ? s->n_endpoints
		      : v == VIEW_CLUSTERS  ? s->n_clusters
		      : v == VIEW_KEYS      ? s->n_prefixes
					    : 0;

	*t = (struct top_table){ views[v].cols, views[v].n, NULL, 0, NULL };
	t->cells = calloc((rows ? rows : 1) * t->n_cols, sizeof(*t->cells));
	if (!t->cells) {
		t->empty = "out of memory";
		return;
	}
	switch (v) {
	case VIEW_SHARDS:
		shard_rows(t, s, exact);
		break;
	case VIEW_ENDPOINTS:
		endpoint_rows(t, s, exact);
		break;
	case VIEW_CLUSTERS:
		cluster_rows(t, s, exact);
		break;
	case VIEW_PEERS:
		/* Replication is not built: there are no peers to show. */
		t->empty = "no peers (replication is not running on this host)";
		break;
	case VIEW_KEYS:
		key_rows(t, s, exact);
		t->empty = "no group members";
		break;
	case VIEW_COUNT:
		break;
	}
}

void top_table_filter(struct top_table *t, const char *filter)
{
	size_t kept = 0;

	if (!filter || !*filter)
		return;
	for (size_t r = 0; r < t->n_rows; r++) {
		bool match = false;

		for (size_t c = 0; c < t->n_cols && !match; c++)
			match = strstr(cell(t, r, c)->text, filter) != NULL;
		if (match) {
			if (kept != r)
				memcpy(cell(t, kept, 0), cell(t, r, 0),
				       t->n_cols * sizeof(*t->cells));
			kept++;
		}
	}
	t->n_rows = kept;
}

/* qsort has no argument: the column to compare travels in a static. */
static const struct top_table *sort_table;
static size_t sort_col;

static int cmp_rows(const void *a, const void *b)
{
	const struct top_cell *x = (const struct top_cell *)a + sort_col;
	const struct top_cell *y = (const struct top_cell *)b + sort_col;
	int r;

	if (sort_table->cols[sort_col].left)
		r = strcmp(x->text, y->text);
	else
		r = x->num < y->num ? 1 : x->num > y->num ? -1 : 0;
	if (r == 0 && sort_col != 0) /* ties in the view's first column's order */
		r = sort_table->cols[0].left ? strcmp(((const struct top_cell *)a)->text,
						      ((const struct top_cell *)b)->text)
					     : (((const struct top_cell *)a)->num >
						((const struct top_cell *)b)->num) -
						       (((const struct top_cell *)a)->num <
							((const struct top_cell *)b)->num);
	return r;
}

void top_table_sort(struct top_table *t, size_t col)
{
	if (col >= t->n_cols || t->n_rows < 2)
		return;
	sort_table = t;
	sort_col = col;
	/* The first column of the views is an identity: ascending reads best. */
	if (col == 0 && !t->cols[0].left) {
		for (size_t r = 0; r < t->n_rows; r++)
			cell(t, r, 0)->num = -cell(t, r, 0)->num;
		qsort(t->cells, t->n_rows, t->n_cols * sizeof(*t->cells), cmp_rows);
		for (size_t r = 0; r < t->n_rows; r++)
			cell(t, r, 0)->num = -cell(t, r, 0)->num;
		return;
	}
	qsort(t->cells, t->n_rows, t->n_cols * sizeof(*t->cells), cmp_rows);
}

void top_table_free(struct top_table *t)
{
	free(t->cells);
	t->cells = NULL;
	t->n_rows = 0;
}

static void put_line(const struct top_table *t, const char *const *texts, char *buf, size_t cap)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t c = 0; c < t->n_cols && o < cap; c++) {
		int w = t->cols[c].width;
		bool last = c + 1 == t->n_cols;

		o += (size_t)snprintf(buf + o, cap - o, t->cols[c].left ? "%s%-*.*s" : "%s%*.*s",
				      c ? " " : "", last && t->cols[c].left ? 0 : w,
				      last && t->cols[c].left ? TOP_CELL_MAX : w, texts[c]);
	}
}

void top_table_row(const struct top_table *t, size_t row, char *buf, size_t cap)
{
	const char *texts[16];

	for (size_t c = 0; c < t->n_cols && c < 16; c++)
		texts[c] = t->cells[row * t->n_cols + c].text;
	put_line(t, texts, buf, cap);
}

void top_table_header(const struct top_table *t, char *buf, size_t cap)
{
	const char *texts[16];

	for (size_t c = 0; c < t->n_cols && c < 16; c++)
		texts[c] = t->cols[c].title;
	put_line(t, texts, buf, cap);
}

/* Bytes as KiB, MiB or GiB with one decimal. */
static void put_size(char *buf, size_t cap, uint64_t v)
{
	if (v >= (1ull << 30))
		snprintf(buf, cap, "%.1f GiB", (double)v / (1ull << 30));
	else if (v >= (1ull << 20))
		snprintf(buf, cap, "%.1f MiB", (double)v / (1ull << 20));
	else
		snprintf(buf, cap, "%.1f KiB", (double)v / 1024);
}

static void put_rate_word(char *buf, size_t cap, double v)
{
	if (v < 0)
		snprintf(buf, cap, "-");
	else
		snprintf(buf, cap, "%.1f", v);
}

void top_header_lines(const struct top_snapshot *s, const char *group, char *l1, char *l2, char *l3,
		      size_t cap)
{
	char when[16] = "", used[24], total[24], ops[24], evs[24], up[TOP_CELL_MAX];
	time_t t = (time_t)(s->time_ns / 1000000000u);
	struct tm tm;
	struct top_cell c;

	if (localtime_r(&t, &tm))
		strftime(when, sizeof(when), "%H:%M:%S", &tm);
	if (!s->attached) {
		snprintf(l1, cap, "group %s  %s", group, when);
		snprintf(l2, cap, "%s", s->problem);
		l3[0] = '\0';
		return;
	}
	if (s->info.reaper_pid) {
		put_duration(&c, s->reaper_uptime_s, false);
		snprintf(up, sizeof(up), "%s", s->reaper_uptime_s >= 0 ? c.text : "?");
		snprintf(l1, cap, "group %s  node %" PRIu32 "  reaper %s pid %" PRIu32 " up %s  %s",
			 group, s->info.node_id, s->reaper_comm, s->info.reaper_pid, up, when);
	} else {
		snprintf(l1, cap,
			 "group %s  node %" PRIu32
			 "  reaper none (dead endpoints reaped lazily)  %s",
			 group, s->info.node_id, when);
	}
	put_size(used, sizeof(used), s->arena_used);
	put_size(total, sizeof(total), s->info.arena_size);
	snprintf(l2, cap,
		 "arena %s of %s  shards %" PRIu32 "  endpoints %" PRIu32 "/%" PRIu32
		 "  registered %" PRIu64 "  members %" PRIu64,
		 used, total, s->info.shards, s->info.endpoints_live, s->info.max_endpoints,
		 s->registered, s->members);
	put_rate_word(ops, sizeof(ops), s->ops_per_s);
	put_rate_word(evs, sizeof(evs), s->events_per_s);
	snprintf(l3, cap, "events/s %s  ops/s %s  repairs %" PRIu64 "  monitors %" PRIu64, evs, ops,
		 s->repairs, s->monitors);
}
