/* SPDX-License-Identifier: MIT */
/*
 * Batch output: a plain-text snapshot (-b), every view one after the other
 * with exact figures, or one JSON object per refresh (--json), whose schema
 * shmgroup-top(1) documents.  JSON strings escape '"', '\\' and every byte
 * outside printable ASCII as \u00XX, one per byte, so that any key is valid
 * JSON; numbers are integers except the rates, which are null until a second
 * sample of the same arena exists.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "top.h"

int top_batch_text(FILE *f, const struct top_snapshot *s, const char *group)
{
	char l1[256], l2[256], l3[256], line[512];

	top_header_lines(s, group, l1, l2, l3, sizeof(l1));
	fprintf(f, "%s\n%s\n", l1, l2);
	if (l3[0])
		fprintf(f, "%s\n", l3);
	for (int v = 0; s->attached && v < VIEW_COUNT; v++) {
		struct top_table t;

		if (v == VIEW_KEYS && !s->prefixes_walked)
			continue;
		top_table_build(&t, (enum top_view)v, s, true);
		top_table_sort(&t, top_view_default_sort((enum top_view)v));
		top_table_header(&t, line, sizeof(line));
		fprintf(f, "\n[%s]\n%s\n", top_view_names[v], line);
		for (size_t r = 0; r < t.n_rows; r++) {
			top_table_row(&t, r, line, sizeof(line));
			fprintf(f, "%s\n", line);
		}
		if (t.n_rows == 0 && t.empty)
			fprintf(f, "%s\n", t.empty);
		top_table_free(&t);
	}
	fputc('\n', f);
	return fflush(f);
}

static void json_str(FILE *f, const char *p, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++) {
		unsigned char b = (unsigned char)p[i];

		if (b == '"' || b == '\\')
			fprintf(f, "\\%c", b);
		else if (b < 0x20 || b >= 0x7f)
			fprintf(f, "\\u%04x", b);
		else
			fputc(b, f);
	}
	fputc('"', f);
}

static void json_rate(FILE *f, const char *name, double v)
{
	if (v < 0)
		fprintf(f, "\"%s\":null", name);
	else
		fprintf(f, "\"%s\":%.3f", name, v);
}

static void json_shards(FILE *f, const struct top_snapshot *s)
{
	fputs("\"shards\":[", f);
	for (size_t i = 0; i < s->n_shards; i++) {
		const struct shmg_shard_stats *st = &s->shards[i].st;

		fprintf(f,
			"%s{\"shard\":%" PRIu32 ",\"registered\":%" PRIu64 ",\"members\":%" PRIu64
			",\"monitors\":%" PRIu64 ",\"writes\":%" PRIu64 ",",
			i ? "," : "", st->shard, st->registered, st->members, st->monitors,
			st->writes);
		json_rate(f, "writes_per_s", s->shards[i].writes_per_s);
		fprintf(f,
			",\"lock_waits\":%" PRIu64 ",\"repairs\":%" PRIu64
			",\"log_records\":%" PRIu64 ",\"log_bytes\":%" PRIu64
			",\"log_capacity\":%" PRIu64 ",\"log_resets\":%" PRIu64
			",\"retired\":%" PRIu64 ",\"index_used\":%" PRIu64
			",\"index_slots\":%" PRIu64 "}",
			st->lock_waits, st->repairs, st->log_records, st->log_bytes,
			st->log_capacity, st->log_resets, st->retired, st->index_used,
			st->index_slots);
	}
	fputc(']', f);
}

static const char *state_word(uint32_t state)
{
	switch (state) {
	case SHMG_ENDPOINT_OPENING:
		return "opening";
	case SHMG_ENDPOINT_LIVE:
		return "live";
	case SHMG_ENDPOINT_CLOSING:
		return "closing";
	}
	return "unknown";
}

static void json_endpoints(FILE *f, const struct top_snapshot *s)
{
	fputs("\"endpoints\":[", f);
	for (size_t i = 0; i < s->n_endpoints; i++) {
		const struct top_endpoint *e = &s->endpoints[i];
		char id[SHMG_ID_STRLEN];

		shmg_id_format(e->st.id, id, sizeof(id));
		fprintf(f, "%s{\"slot\":%" PRIu32 ",\"id\":\"%s\",\"pid\":%ld,\"command\":",
			i ? "," : "", e->st.id.slot, id, (long)e->st.pid);
		json_str(f, e->comm, strlen(e->comm));
		fprintf(f,
			",\"self\":%s,\"state\":\"%s\",\"registrations\":%" PRIu64
			",\"memberships\":%" PRIu64 ",\"monitors\":%" PRIu64
			",\"mailbox_used\":%" PRIu64 ",\"mailbox_capacity\":%" PRIu64
			",\"events_delivered\":%" PRIu64 ",\"events_dropped\":%" PRIu64 ",",
			e->self ? "true" : "false", state_word(e->st.state), e->st.registrations,
			e->st.memberships, e->st.monitors, e->st.mailbox_used,
			e->st.mailbox_capacity, e->st.events_delivered, e->st.events_dropped);
		json_rate(f, "events_per_s", e->events_per_s);
		fprintf(f, ",\"opened_ns\":%" PRIu64 ",\"age_s\":%" PRIu64 "}", e->st.opened_ns,
			e->age_s);
	}
	fputc(']', f);
}

static void json_clusters(FILE *f, const struct top_snapshot *s)
{
	fputs("\"clusters\":[", f);
	for (size_t i = 0; i < s->n_clusters; i++) {
		const struct top_cluster *c = &s->clusters[i];

		fprintf(f, "%s{\"name\":", i ? "," : "");
		if (c->st.slot)
			json_str(f, c->st.name, strlen(c->st.name));
		else
			fputs("null", f);
		fputs(",\"nodes\":[", f);
		for (size_t k = 0; k < c->n_nodes && k < 16; k++)
			fprintf(f, "%s%" PRIu32, k ? "," : "", c->nodes[k]);
		fprintf(f,
			"],\"registered\":%" PRIu64 ",\"members\":%" PRIu64 ",\"ttl_ms\":%" PRIu64,
			c->st.registered, c->st.members, c->st.ttl_ms);
		if (c->st.ttl_ms)
			fprintf(f, ",\"lease_left_ms\":%" PRId64, c->st.lease_left_ms);
		else
			fputs(",\"lease_left_ms\":null", f);
		fprintf(f, ",\"connected_ns\":%" PRIu64 "}", c->st.connected_ns);
	}
	fputc(']', f);
}

static void json_prefixes(FILE *f, const struct top_snapshot *s)
{
	if (!s->prefixes_walked) {
		fputs("\"prefixes\":null", f);
		return;
	}
	fputs("\"prefixes\":[", f);
	for (size_t i = 0; i < s->n_prefixes; i++) {
		const struct top_prefix *p = &s->prefixes[i];

		fprintf(f, "%s{\"prefix\":", i ? "," : "");
		json_str(f, p->prefix, p->prefix_len);
		fputs(",\"cluster\":", f);
		if (p->cluster)
			json_str(f, p->cluster, strlen(p->cluster));
		else
			fputs("null", f);
		fprintf(f, ",\"members\":%" PRIu64 ",\"keys\":%" PRIu64 "}", p->members, p->keys);
	}
	fputc(']', f);
}

int top_batch_json(FILE *f, const struct top_snapshot *s, const char *group)
{
	fputs("{\"group\":", f);
	json_str(f, group, strlen(group));
	fprintf(f, ",\"time_ns\":%" PRIu64 ",\"attached\":%s", s->time_ns,
		s->attached ? "true" : "false");
	if (!s->attached) {
		fputs(",\"error\":", f);
		json_str(f, s->problem, strlen(s->problem));
		fputs("}\n", f);
		return fflush(f);
	}
	fputs(",\"error\":null,", f);
	json_rate(f, "interval_s", s->interval_s);
	fprintf(f, ",\"node\":%" PRIu32 ",\"reaper\":", s->info.node_id);
	if (s->info.reaper_pid) {
		fprintf(f, "{\"pid\":%" PRIu32 ",\"command\":", s->info.reaper_pid);
		json_str(f, s->reaper_comm, strlen(s->reaper_comm));
		if (s->reaper_uptime_s >= 0)
			fprintf(f, ",\"uptime_s\":%" PRId64 "}", s->reaper_uptime_s);
		else
			fputs(",\"uptime_s\":null}", f);
	} else {
		fputs("null", f);
	}
	fprintf(f,
		",\"arena\":{\"size\":%" PRIu64 ",\"used\":%" PRIu64 ",\"pages_total\":%" PRIu64
		",\"pages_used\":%" PRIu64 ",\"layout_version\":%" PRIu32
		",\"incarnation\":\"%016" PRIx64 "\",\"shards\":%" PRIu32
		",\"max_endpoints\":%" PRIu32 "}",
		s->info.arena_size, s->arena_used, s->info.pages_total, s->info.pages_used,
		s->info.layout_version, s->info.incarnation, s->info.shards, s->info.max_endpoints);
	fprintf(f,
		",\"totals\":{\"endpoints\":%" PRIu32 ",\"registered\":%" PRIu64
		",\"members\":%" PRIu64 ",\"monitors\":%" PRIu64 ",\"repairs\":%" PRIu64
		",\"writes\":%" PRIu64 ",\"events_delivered\":%" PRIu64 ",",
		s->info.endpoints_live, s->registered, s->members, s->monitors, s->repairs,
		s->writes, s->events_delivered);
	json_rate(f, "ops_per_s", s->ops_per_s);
	fputc(',', f);
	json_rate(f, "events_per_s", s->events_per_s);
	fputs("},", f);
	json_shards(f, s);
	fputc(',', f);
	json_endpoints(f, s);
	fputc(',', f);
	json_clusters(f, s);
	fputs(",\"peers\":[],", f);
	json_prefixes(f, s);
	fputs("}\n", f);
	return fflush(f);
}
