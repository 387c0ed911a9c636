/* SPDX-License-Identifier: MIT */
/*
 * shmgroup-top: what its parts share.
 *
 *   collect.c  attaching to the group (and again after it was destroyed),
 *              one sample of every figure, rates between two samples
 *   table.c    the views as tables of text cells: columns, sorting, filter
 *   batch.c    plain-text and JSON snapshots (-b, --json)
 *   tui.c      the ncurses screen and its keys
 *   main.c     options and the refresh loop
 *
 * Nothing here writes to the arena: the tool reads the counters through
 * shmg_*_stats and shmg_entries, and its own endpoint holds no entries.
 */
#ifndef SHMGROUP_TOP_H
#define SHMGROUP_TOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "shmgroup.h"

#define TOP_COMM_MAX 16 /* /proc/PID/comm, with its NUL */

/* Where the tool stands with its group. */
struct top_source {
	const char *group;
	bool owner_given;
	uint32_t owner_uid;
	shmg_t *h;         /* NULL while detached */
	char problem[160]; /* why it is detached ("" when attached) */
	bool keys_wanted;  /* walk the entries for the Keys view */
};

struct top_shard {
	struct shmg_shard_stats st;
	double writes_per_s; /* < 0: no earlier sample */
};

struct top_endpoint {
	struct shmg_endpoint_stats st;
	char comm[TOP_COMM_MAX];
	bool self; /* this tool's own endpoint */
	double events_per_s;
	uint64_t age_s;
};

struct top_cluster {
	struct shmg_cluster_stats st;
	uint32_t nodes[16];
	size_t n_nodes; /* how many there are; at most 16 kept */
};

struct top_prefix {
	char *cluster; /* NULL: the default cluster */
	char *prefix; /* bytes, NUL-terminated for printing; may hold NUL-free bytes of any value */
	size_t prefix_len;
	uint64_t members;
	uint64_t keys; /* group keys under it */
};

/* One sample of everything the views show. */
struct top_snapshot {
	bool attached;
	char problem[160];
	uint64_t time_ns;  /* CLOCK_REALTIME */
	uint64_t mono_ns;  /* CLOCK_MONOTONIC, for rates */
	double interval_s; /* since the previous sample; < 0 for the first */
	struct shmg_info info;
	uint64_t arena_used; /* bytes: all but free pages */
	char reaper_comm[TOP_COMM_MAX];
	int64_t reaper_uptime_s; /* < 0 unknown */
	uint64_t registered, members, monitors, writes, events_delivered, repairs;
	double ops_per_s, events_per_s; /* < 0: no earlier sample */
	struct top_shard *shards;
	size_t n_shards;
	struct top_endpoint *endpoints;
	size_t n_endpoints;
	struct top_cluster *clusters;
	size_t n_clusters;
	struct top_prefix *prefixes;
	size_t n_prefixes;
	bool prefixes_walked;
};

/* collect.c */
/* Attaches when detached; detaches when the arena was destroyed (and tries
 * the name again at once).  Returns true when attached. */
bool top_attach(struct top_source *src);
void top_detach(struct top_source *src);
/* Fills *now (freeing what it held), with rates against *prev (may be an
 * empty snapshot). */
void top_sample(struct top_source *src, const struct top_snapshot *prev, struct top_snapshot *now);
void top_snapshot_free(struct top_snapshot *s);
/* /proc/PID/comm into buf, "?" when unknown. */
void top_comm(pid_t pid, char buf[TOP_COMM_MAX]);

/* table.c */
enum top_view {
	VIEW_SHARDS,
	VIEW_ENDPOINTS,
	VIEW_CLUSTERS,
	VIEW_PEERS,
	VIEW_KEYS,
	VIEW_COUNT
};
extern const char *const top_view_names[VIEW_COUNT];
int top_view_parse(const char *name); /* a view, or -1 */

#define TOP_CELL_MAX 64
struct top_column {
	const char *title;
	int width;
	bool left; /* left-aligned text; else right-aligned number */
};
struct top_cell {
	char text[TOP_CELL_MAX];
	double num; /* sort key of a number column */
};
struct top_table {
	const struct top_column *cols;
	size_t n_cols;
	struct top_cell *cells; /* n_rows x n_cols */
	size_t n_rows;
	const char *empty; /* what to say when there are no rows */
};
/* exact: full numbers (batch); otherwise large ones shortened (123k). */
void top_table_build(struct top_table *t, enum top_view v, const struct top_snapshot *s,
		     bool exact);
/* Keeps the rows any of whose cells contains filter (NULL or "": all). */
void top_table_filter(struct top_table *t, const char *filter);
/* Sorts by column col: numbers largest first, text A to Z. */
void top_table_sort(struct top_table *t, size_t col);
/* Number of columns of a view. */
size_t top_view_ncols(enum top_view v);
/* Default sort column of a view. */
size_t top_view_default_sort(enum top_view v);
void top_table_free(struct top_table *t);
/* The row as one line of the columns' widths (no newline). */
void top_table_row(const struct top_table *t, size_t row, char *buf, size_t cap);
void top_table_header(const struct top_table *t, char *buf, size_t cap);
/* Header lines (group, reaper, arena; figures), shared by batch and TUI. */
void top_header_lines(const struct top_snapshot *s, const char *group, char *l1, char *l2, char *l3,
		      size_t cap);

/* batch.c */
int top_batch_text(FILE *f, const struct top_snapshot *s, const char *group);
int top_batch_json(FILE *f, const struct top_snapshot *s, const char *group);

/* tui.c */
struct top_options {
	int delay_ms;
	enum top_view view;
};
int top_tui(struct top_source *src, const struct top_options *o);

/* Monotonic and real time in nanoseconds. */
uint64_t top_mono_ns(void);
uint64_t top_real_ns(void);

#endif
