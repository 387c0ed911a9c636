/* SPDX-License-Identifier: MIT */
/*
 * shmgroupctl: inspect a shmgroup arena from a shell.
 *
 * Every command but `destroy` attaches with SHMG_OPEN_NOCREATE, so looking at
 * a group never creates one.  Attaching opens an endpoint like any other
 * process; it holds no entries and is closed before exit (if this process is
 * killed, the slot is reaped like any dead endpoint's).
 *
 * Reads run inside the library's read sections, which must not block: the
 * callbacks only copy what they are given, and printing happens afterwards.
 * Listings are sorted (cluster, key, kind, endpoint) so that output is stable.
 *
 * Exit status: 0 success; 1 a negative answer (key not registered, check found
 * problems, destroy of a group that does not exist); 2 failure (cannot attach,
 * a call failed); 64 usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "parse_owner.h"
#include "shmgroup.h"

#ifndef SHMGROUP_VERSION_STRING
#define SHMGROUP_VERSION_STRING "unknown"
#endif

enum {
	EXIT_OK = 0,
	EXIT_NEGATIVE = 1,
	EXIT_FAIL = 2,
};

/* Options, as bits, so each command can say which it accepts. */
enum {
	OPT_CLUSTER = 1u << 0,
	OPT_LOCAL = 1u << 1,
	OPT_JSON = 1u << 2,
	OPT_ALL_NODES = 1u << 3,
	OPT_LIMIT = 1u << 4,
	OPT_COUNT = 1u << 5,
	OPT_TIMEOUT = 1u << 6,
	OPT_WATCH = 1u << 7,
	OPT_LAST = OPT_WATCH,
};

struct ctl {
	const char *group;
	const char *cluster;
	bool local;
	bool json;
	bool all_nodes;
	size_t limit;
	uint64_t count;  /* monitor: stop after this many events, stats: samples
			  * (0 = no limit) */
	int timeout_ms;  /* monitor: stop after this long (-1 = never) */
	bool watch;      /* stats: every interval, not once */
	const char *interval; /* stats --watch=SECONDS, or NULL */
	int interval_ms; /* stats --watch */
	unsigned int given; /* OPT_* bits seen on the command line */
	bool owner_given;
	uint32_t owner_uid; /* --owner: also attach to this uid's arena */
	shmg_t *h;
};

static const char *progname = "shmgroupctl";

/* ------------------------------------------------------------------------ */
/* Messages                                                                 */
/* ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: %s [-g GROUP] COMMAND [ARGS] [OPTIONS]\n"
		"\n"
		"Inspect a shmgroup arena (/dev/shm/shmgroup.GROUP) of this host.\n"
		"\n"
		"Commands:\n"
		"  lookup KEY [--cluster C] [--json]       the endpoint registered at KEY\n"
		"  members KEY [--cluster C] [--local] [--limit N] [--json]\n"
		"                                          members of KEY (KEY ending in '/' is a prefix)\n"
		"  counts [KEY] [--cluster C]              registration (and member) counts\n"
		"  dump [--all-nodes] [--json]             every entry of this node (or of all nodes)\n"
		"  info [--json]                           facts about the arena\n"
		"  stats [--watch [SECONDS]] [--count N] [--json]\n"
		"                                          the arena's changing numbers, once or\n"
		"                                          every SECONDS (default 1)\n"
		"  clusters [--json]                       connected named clusters: nodes, entries, lease\n"
		"  nodes [--cluster C]                     peer node ids, or the nodes of a cluster\n"
		"  monitor [PATTERN] [--cluster C] [--count N] [--timeout MS] [--json]\n"
		"                                          print events (PATTERN: a key, a prefix\n"
		"                                          ending in '/', or nothing for all keys)\n"
		"  dispatch KEY MESSAGE [--cluster C] [--local]\n"
		"                                          send MESSAGE to the members of KEY and\n"
		"                                          the endpoint registered at it\n"
		"  log-level [off|info|verbose]            show or set the arena's log level\n"
		"  check                                   verify the arena; exit 1 if problems\n"
		"  reap                                    remove entries of dead endpoints\n"
		"  destroy                                 remove the arena from /dev/shm\n"
		"\n"
		"Options:\n"
		"  -g, --group GROUP     group name (default: $SHMGROUP_GROUP, else \"default\")\n"
		"  -u, --owner USER      also attach to an arena owned by USER (a name or uid);\n"
		"                        without it only the caller's own arenas are used\n"
		"  -c, --cluster C       act in named cluster C (default: the default cluster)\n"
		"  -l, --local           members: only entries owned by this node;\n"
		"                        dispatch: only to endpoints of this host\n"
		"  -n, --limit N         members: at most N results\n"
		"  -a, --all-nodes       dump: entries of every node in this host's view\n"
		"  -j, --json            JSON output (lookup, members, dump, info, stats, monitor)\n"
		"  -w, --watch[=SECONDS] stats: print a line every SECONDS (default 1) until\n"
		"                        interrupted\n"
		"  -N, --count N         monitor: exit after N events; stats --watch: N lines\n"
		"  -t, --timeout MS      monitor: exit after MS milliseconds\n"
		"  -h, --help            show this help and exit\n"
		"  -V, --version         show the version and exit\n"
		"\n"
		"Exit status: 0 success, 1 not found / problems found / no such group /\n"
		"monitor timed out before --count events,\n"
		"2 failure (e.g. cannot attach), 64 usage error.  See shmgroupctl(1).\n",
		progname);
}

#include "die_usage.h"

/* Prints "shmgroupctl: <what>: <shmg_strerror(err)>" and returns EXIT_FAIL. */
static int fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int err, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, ": %s\n", shmg_strerror(err));
	return EXIT_FAIL;
}

/* Reports an error of a call that took a cluster, naming the cluster when that
 * is what went wrong. */
static int fail_cluster(const struct ctl *c, int err, const char *what)
{
	if (err == -ENOTCONN && c->cluster) {
		fprintf(stderr, "%s: %s: cluster '%s' is not connected on this host\n", progname,
			what, c->cluster);
		return EXIT_FAIL;
	}
	return fail(err, "%s", what);
}

/* ------------------------------------------------------------------------ */
/* Byte strings for humans and for JSON                                     */
/* ------------------------------------------------------------------------ */

/* Length of the UTF-8 sequence starting at s (at most n bytes), or 0 if it is
 * not a well-formed, shortest-form scalar value. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	uint32_t cp;
	size_t len, i;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* True if the bytes read as text: well-formed UTF-8 without control characters
 * other than tab, newline and carriage return. */
static bool is_text(const void *p, size_t n)
{
	const unsigned char *s = p;
	size_t i = 0, k;

	while (i < n) {
		if (s[i] < 0x80) {
			if ((s[i] < 0x20 && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') ||
			    s[i] == 0x7f)
				return false;
			i++;
			continue;
		}
		k = utf8_seq(s + i, n - i);
		if (k == 0)
			return false;
		i += k;
	}
	return true;
}

static void put_hex(FILE *f, const void *p, size_t n)
{
	const unsigned char *s = p;
	size_t i;

	for (i = 0; i < n; i++)
		fprintf(f, "%02x", s[i]);
}

/* A double-quoted C-style string: \" \\ \t \n \r escaped, other bytes that are
 * not text as \xNN, UTF-8 passed through. */
static void put_quoted(FILE *f, const void *p, size_t n)
{
	const unsigned char *s = p;
	size_t i = 0, k;

	fputc('"', f);
	while (i < n) {
		unsigned char b = s[i];

		if (b == '"' || b == '\\') {
			fputc('\\', f);
			fputc(b, f);
		} else if (b == '\n') {
			fputs("\\n", f);
		} else if (b == '\t') {
			fputs("\\t", f);
		} else if (b == '\r') {
			fputs("\\r", f);
		} else if (b < 0x20 || b == 0x7f) {
			fprintf(f, "\\x%02x", b);
		} else if (b >= 0x80) {
			k = utf8_seq(s + i, n - i);
			if (k == 0) {
				fprintf(f, "\\x%02x", b);
			} else {
				fwrite(s + i, 1, k, f);
				i += k;
				continue;
			}
		} else {
			fputc(b, f);
		}
		i++;
	}
	fputc('"', f);
}

/* A key in text output: bare when it is text without blanks or quotes (the
 * common case, e.g. worker/1), else quoted. */
static void put_key(FILE *f, const char *key, size_t n)
{
	size_t i;
	bool bare = n > 0 && is_text(key, n);

	for (i = 0; bare && i < n; i++)
		if (key[i] == ' ' || key[i] == '"' || key[i] == '\\' || key[i] == '\t' ||
		    key[i] == '\n' || key[i] == '\r')
			bare = false;
	if (bare)
		fwrite(key, 1, n, f);
	else
		put_quoted(f, key, n);
}

/* Width on a terminal of UTF-8 text, counting one column per code point. */
static size_t text_width(const char *s, size_t n)
{
	size_t i, w = 0;

	for (i = 0; i < n; i++)
		if (((unsigned char)s[i] & 0xc0) != 0x80)
			w++;
	return w;
}

/* Metadata in text output: quoted text when it is text, else 0x + hex. */
static void put_meta(FILE *f, const void *meta, size_t n)
{
	if (is_text(meta, n)) {
		put_quoted(f, meta, n);
	} else {
		fputs("0x", f);
		put_hex(f, meta, n);
	}
}

/* A JSON string; the caller has checked that the bytes are well-formed UTF-8
 * (is_text or a cluster name), so only escaping is needed. */
static void json_string(FILE *f, const void *p, size_t n)
{
	const unsigned char *s = p;
	size_t i;

	fputc('"', f);
	for (i = 0; i < n; i++) {
		unsigned char b = s[i];

		switch (b) {
		case '"':
			fputs("\\\"", f);
			break;
		case '\\':
			fputs("\\\\", f);
			break;
		case '\n':
			fputs("\\n", f);
			break;
		case '\r':
			fputs("\\r", f);
			break;
		case '\t':
			fputs("\\t", f);
			break;
		default:
			if (b < 0x20 || b == 0x7f)
				fprintf(f, "\\u%04x", b);
			else
				fputc(b, f);
		}
	}
	fputc('"', f);
}

/* "name":"text" when the bytes are text, else "name_hex":"0a1b..". */
static void json_bytes_field(FILE *f, const char *name, const void *p, size_t n)
{
	if (is_text(p, n)) {
		fprintf(f, "\"%s\":", name);
		json_string(f, p, n);
	} else {
		fprintf(f, "\"%s_hex\":\"", name);
		put_hex(f, p, n);
		fputc('"', f);
	}
}

static void format_time(uint64_t ns, char *buf, size_t cap)
{
	time_t t = (time_t)(ns / 1000000000u);
	struct tm tm;

	if (ns == 0 || !gmtime_r(&t, &tm) || strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, cap, "-");
}

/* ------------------------------------------------------------------------ */
/* Collected entries                                                        */
/* ------------------------------------------------------------------------ */

/* An entry copied out of a read section, with its strings in one block. */
struct item {
	enum shmg_kind kind;
	shmg_id_t id;
	pid_t pid;
	uint64_t time_ns;
	char *cluster; /* NULL for the default cluster */
	char *key;
	size_t key_len;
	unsigned char *meta;
	size_t meta_len;
};

struct items {
	struct item *v;
	size_t n, cap;
};

static void items_free(struct items *it)
{
	size_t i;

	for (i = 0; i < it->n; i++)
		free(it->v[i].key); /* one allocation holds key, meta and cluster */
	free(it->v);
	it->v = NULL;
	it->n = it->cap = 0;
}

/* shmg_entry_fn: copies one entry.  Runs inside a read section: no output,
 * no blocking; only memory allocation. */
static int collect(const struct shmg_entry *e, void *arg)
{
	struct items *it = arg;
	struct item *x;
	size_t clen = e->cluster ? strlen(e->cluster) + 1 : 0;
	char *block;

	if (it->n == it->cap) {
		size_t cap = it->cap ? it->cap * 2 : 64;
		struct item *v = realloc(it->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		it->v = v;
		it->cap = cap;
	}
	block = malloc(e->key_len + 1 + e->meta_len + clen);
	if (!block)
		return -ENOMEM;
	x = &it->v[it->n];
	x->kind = e->kind;
	x->id = e->id;
	x->pid = e->pid;
	x->time_ns = e->time_ns;
	x->key = block;
	memcpy(x->key, e->key, e->key_len);
	x->key[e->key_len] = '\0';
	x->key_len = e->key_len;
	x->meta = (unsigned char *)block + e->key_len + 1;
	if (e->meta_len)
		memcpy(x->meta, e->meta, e->meta_len);
	x->meta_len = e->meta_len;
	x->cluster = NULL;
	if (e->cluster) {
		x->cluster = block + e->key_len + 1 + e->meta_len;
		memcpy(x->cluster, e->cluster, clen);
	}
	it->n++;
	return 0;
}

static int cmp_bytes(const void *a, size_t an, const void *b, size_t bn)
{
	int r = memcmp(a, b, an < bn ? an : bn);

	if (r)
		return r;
	return an < bn ? -1 : an > bn;
}

static int cmp_u32(uint32_t a, uint32_t b)
{
	return a < b ? -1 : a > b;
}

static int cmp_item(const void *pa, const void *pb)
{
	const struct item *a = pa, *b = pb;
	int r;

	if (!a->cluster != !b->cluster)
		return a->cluster ? 1 : -1;
	if (a->cluster && (r = strcmp(a->cluster, b->cluster)))
		return r;
	if ((r = cmp_bytes(a->key, a->key_len, b->key, b->key_len)))
		return r;
	if (a->kind != b->kind)
		return a->kind == SHMG_REGISTRY ? -1 : 1;
	if ((r = cmp_u32(a->id.node, b->id.node)) || (r = cmp_u32(a->id.slot, b->id.slot)))
		return r;
	return cmp_u32(a->id.gen, b->id.gen);
}

static const char *kind_name(enum shmg_kind k)
{
	switch (k) {
	case SHMG_REGISTRY:
		return "registry";
	case SHMG_MEMBER:
		return "member";
	}
	return "unknown";
}

static void id_str(shmg_id_t id, char *buf)
{
	if (shmg_id_format(id, buf, SHMG_ID_STRLEN) < 0)
		snprintf(buf, SHMG_ID_STRLEN, "?");
}

/* One entry as a JSON object on one line (no trailing newline). */
static void json_item(FILE *f, const struct item *x)
{
	char id[SHMG_ID_STRLEN];

	id_str(x->id, id);
	fprintf(f, "{\"kind\":\"%s\",\"cluster\":", kind_name(x->kind));
	if (x->cluster)
		json_string(f, x->cluster, strlen(x->cluster));
	else
		fputs("null", f);
	fputc(',', f);
	json_bytes_field(f, "key", x->key, x->key_len);
	fprintf(f,
		",\"endpoint\":\"%s\",\"node\":%" PRIu32 ",\"pid\":%ld,\"time_ns\":%" PRIu64
		",\"meta_len\":%zu,",
		id, x->id.node, (long)x->pid, x->time_ns, x->meta_len);
	json_bytes_field(f, "meta", x->meta, x->meta_len);
	fputc('}', f);
}

/* KEY ENDPOINT PID META, the line format of lookup and members. */
static void text_item(FILE *f, const struct item *x)
{
	char id[SHMG_ID_STRLEN];

	id_str(x->id, id);
	put_key(f, x->key, x->key_len);
	fprintf(f, " %s %ld ", id, (long)x->pid);
	put_meta(f, x->meta, x->meta_len);
	fputc('\n', f);
}

/* {"group":..., <query fields>, "count":N, "entries":[...]}.  key is the
 * members query (NULL for dump). */
static void json_items(FILE *f, const struct ctl *c, const char *key, const struct items *it)
{
	size_t i;

	fputs("{\"group\":", f);
	json_string(f, c->group, strlen(c->group));
	if (key) {
		fputs(",\"cluster\":", f);
		if (c->cluster)
			json_string(f, c->cluster, strlen(c->cluster));
		else
			fputs("null", f);
		fputc(',', f);
		json_bytes_field(f, "query", key, strlen(key));
		fprintf(f, ",\"local\":%s", c->local ? "true" : "false");
	} else {
		fprintf(f, ",\"all_nodes\":%s", c->all_nodes ? "true" : "false");
	}
	fprintf(f, ",\"count\":%zu,\"entries\":[", it->n);
	for (i = 0; i < it->n; i++) {
		fputs(i ? ",\n  " : "\n  ", f);
		json_item(f, &it->v[i]);
	}
	fputs(it->n ? "\n]}\n" : "]}\n", f);
}

/* ------------------------------------------------------------------------ */
/* Commands                                                                 */
/* ------------------------------------------------------------------------ */

static struct shmg_opts cluster_opts(const struct ctl *c)
{
	struct shmg_opts o;

	memset(&o, 0, sizeof(o));
	o.cluster = c->cluster;
	o.limit = c->limit;
	return o;
}

static int cmd_lookup(struct ctl *c, int argc, char **argv)
{
	struct shmg_opts o = cluster_opts(c);
	struct shmg_entry e;
	struct items it = { 0 };
	int rc, rc2;

	(void)argc;
	rc = shmg_read_begin(c->h);
	if (rc < 0)
		return fail(rc, "read section");
	rc = shmg_lookup_ref(c->h, SHMG_KEY(argv[0]), &e, &o);
	if (rc == 0)
		rc = collect(&e, &it);
	rc2 = shmg_read_end(c->h);
	if (rc == -ENOENT) {
		if (c->json) {
			fputs("null\n", stdout);
		} else {
			fprintf(stderr, "%s: ", progname);
			put_key(stderr, argv[0], strlen(argv[0]));
			fprintf(stderr, ": not registered%s%s\n", c->cluster ? " in cluster " : "",
				c->cluster ? c->cluster : "");
		}
		return EXIT_NEGATIVE;
	}
	if (rc < 0) {
		items_free(&it);
		return fail_cluster(c, rc, "lookup");
	}
	if (rc2 < 0) {
		items_free(&it);
		return fail(rc2, "read section");
	}
	if (c->json) {
		json_item(stdout, &it.v[0]);
		fputc('\n', stdout);
	} else {
		text_item(stdout, &it.v[0]);
	}
	items_free(&it);
	return EXIT_OK;
}

static int cmd_members(struct ctl *c, int argc, char **argv)
{
	struct shmg_opts o = cluster_opts(c);
	struct items it = { 0 };
	long rc;
	size_t i;

	(void)argc;
	if (c->local)
		rc = shmg_local_members(c->h, SHMG_KEY(argv[0]), collect, &it, &o);
	else
		rc = shmg_members(c->h, SHMG_KEY(argv[0]), collect, &it, &o);
	if (rc < 0) {
		items_free(&it);
		return fail_cluster(c, (int)rc, "members");
	}
	qsort(it.v, it.n, sizeof(*it.v), cmp_item);
	if (c->json) {
		json_items(stdout, c, argv[0], &it);
	} else {
		for (i = 0; i < it.n; i++)
			text_item(stdout, &it.v[i]);
	}
	items_free(&it);
	return EXIT_OK;
}

static int cmd_counts(struct ctl *c, int argc, char **argv)
{
	struct shmg_opts o = cluster_opts(c);
	long reg, lreg, mem = 0, lmem = 0;

	reg = shmg_registry_count(c->h, &o);
	if (reg < 0)
		return fail_cluster(c, (int)reg, "registry_count");
	lreg = shmg_local_registry_count(c->h, &o);
	if (lreg < 0)
		return fail_cluster(c, (int)lreg, "local_registry_count");
	if (argc == 1) {
		mem = shmg_member_count(c->h, SHMG_KEY(argv[0]), &o);
		if (mem < 0)
			return fail_cluster(c, (int)mem, "member_count");
		lmem = shmg_local_member_count(c->h, SHMG_KEY(argv[0]), &o);
		if (lmem < 0)
			return fail_cluster(c, (int)lmem, "local_member_count");
	}
	printf("registry_count        %ld\n", reg);
	printf("local_registry_count  %ld\n", lreg);
	if (argc == 1) {
		printf("member_count          %ld\n", mem);
		printf("local_member_count    %ld\n", lmem);
	}
	return EXIT_OK;
}

static int cmd_dump(struct ctl *c, int argc, char **argv)
{
	struct items it = { 0 };
	long rc;
	size_t i;

	(void)argc;
	(void)argv;
	rc = shmg_entries(c->h, c->all_nodes, collect, &it);
	if (rc < 0) {
		items_free(&it);
		return fail((int)rc, "entries");
	}
	qsort(it.v, it.n, sizeof(*it.v), cmp_item);
	if (c->json) {
		json_items(stdout, c, NULL, &it);
		items_free(&it);
		return EXIT_OK;
	}
	printf("%-8s  %-12s  %-24s  %-12s  %-7s  %s\n", "KIND", "CLUSTER", "KEY", "ENDPOINT", "PID",
	       "META");
	for (i = 0; i < it.n; i++) {
		const struct item *x = &it.v[i];
		char id[SHMG_ID_STRLEN];
		char *key = NULL;
		size_t keylen = 0, w;
		FILE *kf = open_memstream(&key, &keylen);

		if (!kf) {
			items_free(&it);
			return fail(-ENOMEM, "dump");
		}
		put_key(kf, x->key, x->key_len);
		fclose(kf);
		id_str(x->id, id);
		w = text_width(key, keylen);
		printf("%-8s  %-12s  %s%*s  %-12s  %-7ld  ", kind_name(x->kind),
		       x->cluster ? x->cluster : "-", key, w < 24 ? (int)(24 - w) : 0, "", id,
		       (long)x->pid);
		put_meta(stdout, x->meta, x->meta_len);
		fputc('\n', stdout);
		free(key);
	}
	printf("%zu entr%s\n", it.n, it.n == 1 ? "y" : "ies");
	items_free(&it);
	return EXIT_OK;
}

static int cmd_info(struct ctl *c, int argc, char **argv)
{
	struct shmg_info in;
	char created[64], self[SHMG_ID_STRLEN];
	int rc;

	(void)argc;
	(void)argv;
	rc = shmg_info(c->h, &in);
	if (rc < 0)
		return fail(rc, "info");
	format_time(in.created_ns, created, sizeof(created));
	id_str(shmg_self(c->h), self);
	if (c->json) {
		fputs("{\"group\":", stdout);
		json_string(stdout, c->group, strlen(c->group));
		printf(",\"layout_version\":%" PRIu32 ",\"shards\":%" PRIu32
		       ",\"max_endpoints\":%" PRIu32 ",\"key_max\":%" PRIu32
		       ",\"meta_max\":%" PRIu32 ",\"max_clusters\":%" PRIu32 ",\"node_id\":%" PRIu32
		       ",\"oplog_bytes\":%" PRIu32 ",\"arena_size\":%" PRIu64
		       ",\"incarnation\":\"%016" PRIx64 "\",\"created_ns\":%" PRIu64
		       ",\"pages_total\":%" PRIu64 ",\"pages_used\":%" PRIu64
		       ",\"endpoints_live\":%" PRIu32 ",\"clusters_connected\":%" PRIu32
		       ",\"global_epoch\":%" PRIu64 ",\"shard_repairs\":%" PRIu64
		       ",\"mailbox_bytes\":%" PRIu32 ",\"reaper_pid\":%" PRIu32
		       ",\"arena_max\":%" PRIu64 ",\"arena_initial\":%" PRIu64
		       ",\"pages_max\":%" PRIu64 ",\"grows\":%" PRIu32
		       ",\"log_level\":\"%s\"}\n",
		       in.layout_version, in.shards, in.max_endpoints, in.key_max, in.meta_max,
		       in.max_clusters, in.node_id, in.oplog_bytes, in.arena_size, in.incarnation,
		       in.created_ns, in.pages_total, in.pages_used, in.endpoints_live,
		       in.clusters_connected, in.global_epoch, in.shard_repairs, in.mailbox_bytes,
		       in.reaper_pid, in.arena_max, in.arena_initial, in.pages_max, in.grows,
		       shmg_log_level_name(shmg_log_level(c->h, -1)));
		return EXIT_OK;
	}
	printf("group               %s (/dev/shm/shmgroup.%s)\n", c->group, c->group);
	printf("layout_version      %" PRIu32 "\n", in.layout_version);
	printf("node_id             %" PRIu32 "\n", in.node_id);
	printf("incarnation         %016" PRIx64 "\n", in.incarnation);
	printf("created             %s\n", created);
	printf("arena_size          %" PRIu64 " bytes (%" PRIu64 " MiB) of at most %" PRIu64
	       " MiB; created with %" PRIu64 " MiB, grown %" PRIu32 " times\n",
	       in.arena_size, in.arena_size >> 20, in.arena_max >> 20, in.arena_initial >> 20,
	       in.grows);
	printf("pages               %" PRIu64 " used of %" PRIu64 " now, %" PRIu64
	       " at most (64 KiB each)\n",
	       in.pages_used, in.pages_total, in.pages_max);
	printf("shards              %" PRIu32 "\n", in.shards);
	printf("endpoints           %" PRIu32 " live of %" PRIu32
	       " (this tool's own endpoint %s included)\n",
	       in.endpoints_live, in.max_endpoints, self);
	printf("clusters            %" PRIu32 " named connected, of %" PRIu32 " slots\n",
	       in.clusters_connected, in.max_clusters);
	printf("key_max             %" PRIu32 " bytes\n", in.key_max);
	printf("meta_max            %" PRIu32 " bytes\n", in.meta_max);
	printf("oplog_bytes         %" PRIu32 " per shard\n", in.oplog_bytes);
	printf("global_epoch        %" PRIu64 "\n", in.global_epoch);
	printf("shard_repairs       %" PRIu64 "\n", in.shard_repairs);
	printf("mailbox_bytes       %" PRIu32 " per endpoint\n", in.mailbox_bytes);
	if (in.reaper_pid)
		printf("reaper_pid          %" PRIu32 "\n", in.reaper_pid);
	else
		printf("reaper_pid          0 (none: dead endpoints are reaped lazily)\n");
	printf("log_level           %s\n", shmg_log_level_name(shmg_log_level(c->h, -1)));
	return EXIT_OK;
}

/* Why a lease was kept, as words joined by ','; "-" if never. */
static const char *kept_words(uint32_t kept, char *buf, size_t cap)
{
	static const struct {
		uint32_t bit;
		const char *word;
	} words[] = { { SHMG_LEASE_KEPT_MONITORS, "monitors" },
		      { SHMG_LEASE_KEPT_REGISTRATIONS, "registrations" },
		      { SHMG_LEASE_KEPT_MEMBERSHIPS, "memberships" } };
	size_t len = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (kept & words[i].bit)
			len += (size_t)snprintf(buf + len, cap - len, "%s%s", len ? "," : "",
						words[i].word);
	return len ? buf : "-";
}

/* One line per connected named cluster: its nodes, entries and lease (ttl,
 * time left or "due", and why it was last kept past its due time). */
static void print_cluster(const struct ctl *c, const struct shmg_cluster_stats *st)
{
	char buf[64];
	const char *kept = kept_words(st->lease_kept, buf, sizeof(buf));
	if (c->json) {
		fputs("{\"cluster\":", stdout);
		json_string(stdout, st->name, strlen(st->name));
		printf(",\"nodes\":%" PRIu32 ",\"registered\":%" PRIu64 ",\"members\":%" PRIu64
		       ",\"ttl_ms\":%" PRIu64,
		       st->nodes, st->registered, st->members, st->ttl_ms);
		if (st->ttl_ms)
			printf(",\"lease_left_ms\":%" PRId64 ",\"lease_kept\":\"%s\"",
			       st->lease_left_ms, kept);
		puts("}");
		return;
	}
	printf("%s\tnodes=%" PRIu32 "\tregistered=%" PRIu64 "\tmembers=%" PRIu64, st->name,
	       st->nodes, st->registered, st->members);
	if (!st->ttl_ms)
		puts("\tlease=none");
	else if (st->lease_left_ms < 0)
		printf("\tlease=%" PRIu64 "ms\tleft=due\tkept=%s\n", st->ttl_ms, kept);
	else
		printf("\tlease=%" PRIu64 "ms\tleft=%" PRId64 "ms\tkept=%s\n", st->ttl_ms,
		       st->lease_left_ms, kept);
}

static int cmd_clusters(struct ctl *c, int argc, char **argv)
{
	struct shmg_cluster_stats st;
	int rc;

	(void)argc;
	(void)argv;
	/* Slot 0 is the default cluster; named ones follow, -ERANGE ends. */
	for (uint32_t slot = 1;; slot++) {
		rc = shmg_cluster_stats(c->h, slot, &st, sizeof(st));
		if (rc == -ERANGE)
			break;
		if (rc == -ENOENT)
			continue;
		if (rc < 0)
			return fail(rc, "clusters");
		print_cluster(c, &st);
	}
	return EXIT_OK;
}

static int cmd_nodes(struct ctl *c, int argc, char **argv)
{
	uint32_t buf[256], *nodes = buf;
	long n, i;

	(void)argc;
	(void)argv;
	n = shmg_nodes(c->h, c->cluster, buf, sizeof(buf) / sizeof(buf[0]));
	if (n > (long)(sizeof(buf) / sizeof(buf[0]))) {
		nodes = calloc((size_t)n, sizeof(*nodes));
		if (!nodes)
			return fail(-ENOMEM, "nodes");
		n = shmg_nodes(c->h, c->cluster, nodes, (size_t)n);
	}
	if (n < 0) {
		if (nodes != buf)
			free(nodes);
		return fail_cluster(c, (int)n, "nodes");
	}
	for (i = 0; i < n; i++)
		printf("n%" PRIu32 "\n", nodes[i]);
	if (nodes != buf)
		free(nodes);
	return EXIT_OK;
}

static void print_problem(const char *msg, void *arg)
{
	long *seen = arg;

	(*seen)++;
	printf("problem: %s\n", msg);
}

static int cmd_check(struct ctl *c, int argc, char **argv)
{
	long seen = 0, n;

	(void)argc;
	(void)argv;
	n = shmg_check(c->h, print_problem, &seen);
	if (n < 0)
		return fail((int)n, "check");
	if (n == 0) {
		printf("%s: clean\n", c->group);
		return EXIT_OK;
	}
	printf("%s: %ld problem%s found\n", c->group, n, n == 1 ? "" : "s");
	return EXIT_NEGATIVE;
}

static int cmd_reap(struct ctl *c, int argc, char **argv)
{
	int n;

	(void)argc;
	(void)argv;
	n = shmg_reap(c->h);
	if (n < 0)
		return fail(n, "reap");
	printf("reaped %d endpoint%s\n", n, n == 1 ? "" : "s");
	return EXIT_OK;
}

static int cmd_destroy(struct ctl *c, int argc, char **argv)
{
	int rc;

	(void)argc;
	(void)argv;
	rc = shmg_destroy(c->group);
	if (rc == -ENOENT) {
		fprintf(stderr, "%s: group '%s': no such arena\n", progname, c->group);
		return EXIT_NEGATIVE;
	}
	if (rc < 0)
		return fail(rc, "destroy group '%s'", c->group);
	printf("destroyed group %s\n", c->group);
	return EXIT_OK;
}

/* ------------------------------------------------------------------------ */
/* Log level, dispatch, monitor                                             */
/* ------------------------------------------------------------------------ */

static int cmd_log_level(struct ctl *c, int argc, char **argv)
{
	int level = argc == 1 ? shmg_log_level_parse(argv[0]) : -1, old;

	old = shmg_log_level(c->h, level);
	if (old < 0)
		return fail(old, "log level");
	if (level < 0)
		printf("%s\n", shmg_log_level_name(old));
	else
		printf("%s (was %s)\n", shmg_log_level_name(level), shmg_log_level_name(old));
	return EXIT_OK;
}

static int cmd_dispatch(struct ctl *c, int argc, char **argv)
{
	struct shmg_opts o = cluster_opts(c);
	long n;

	(void)argc;
	if (c->local)
		n = shmg_dispatch_local(c->h, SHMG_KEY(argv[0]), argv[1], strlen(argv[1]), &o);
	else
		n = shmg_dispatch(c->h, SHMG_KEY(argv[0]), argv[1], strlen(argv[1]), &o);
	if (n == -E2BIG) {
		struct shmg_info in;

		if (shmg_info(c->h, &in) == 0)
			fprintf(stderr, "%s: dispatch: message of %zu bytes is longer than the "
				"arena's meta_max (%" PRIu32 " bytes)\n",
				progname, strlen(argv[1]), in.meta_max);
		return EXIT_FAIL;
	}
	if (n == -ENOTCONN || n == -EAGAIN) {
		fprintf(stderr,
			"%s: dispatch: delivered on this host, but not handed to the agent for "
			"the other hosts: %s\n",
			progname, n == -EAGAIN ? "its queue is full" : "no agent runs here");
		return EXIT_FAIL;
	}
	if (n < 0)
		return fail_cluster(c, (int)n, "dispatch");
	if (c->local)
		printf("delivered to %ld endpoint%s\n", n, n == 1 ? "" : "s");
	else
		printf("delivered to %ld endpoint%s and host%s\n", n, n == 1 ? "" : "s",
		       n == 1 ? "" : "s");
	return EXIT_OK;
}

/* One event as one text line:
 *   TYPE KEY ENDPOINT PID META [reason=R] [previous=META] [cluster=C]
 *   overflow dropped=N */
static void text_event(FILE *f, const struct shmg_event *e)
{
	char id[SHMG_ID_STRLEN];

	if (e->type == SHMG_EV_OVERFLOW) {
		fprintf(f, "overflow dropped=%" PRIu64 "\n", e->dropped);
		return;
	}
	id_str(e->id, id);
	fprintf(f, "%s ", shmg_event_type_name(e->type));
	put_key(f, e->key, e->key_len);
	fprintf(f, " %s %ld ", id, (long)e->pid);
	put_meta(f, e->meta, e->meta_len);
	if (e->reason != SHMG_REASON_NONE)
		fprintf(f, " reason=%s", shmg_reason_name(e->reason));
	if (e->has_previous) {
		fputs(" previous=", f);
		put_meta(f, e->previous_meta, e->previous_meta_len);
	}
	if (e->cluster)
		fprintf(f, " cluster=%s", e->cluster);
	fputc('\n', f);
}

static void json_event(FILE *f, const struct shmg_event *e)
{
	char id[SHMG_ID_STRLEN];

	fprintf(f, "{\"type\":\"%s\"", shmg_event_type_name(e->type));
	if (e->type == SHMG_EV_OVERFLOW) {
		fprintf(f, ",\"dropped\":%" PRIu64 "}\n", e->dropped);
		return;
	}
	id_str(e->id, id);
	fprintf(f, ",\"reason\":\"%s\",\"cluster\":", shmg_reason_name(e->reason));
	if (e->cluster)
		json_string(f, e->cluster, strlen(e->cluster));
	else
		fputs("null", f);
	fputc(',', f);
	json_bytes_field(f, "key", e->key, e->key_len);
	fprintf(f, ",\"endpoint\":\"%s\",\"node\":%" PRIu32 ",\"pid\":%ld,\"time_ns\":%" PRIu64
		",\"meta_len\":%zu,",
		id, e->id.node, (long)e->pid, e->time_ns, e->meta_len);
	json_bytes_field(f, "meta", e->meta, e->meta_len);
	if (e->has_previous) {
		fputc(',', f);
		json_bytes_field(f, "previous_meta", e->previous_meta, e->previous_meta_len);
	}
	fprintf(f, ",\"batch\":%" PRIu32 ",\"batch_end\":%s}\n", e->batch,
		e->batch_end ? "true" : "false");
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Blocks SIGINT, SIGTERM and SIGPIPE and returns a signalfd that reads them:
 * the long-running commands end quietly on the first two, and output to a
 * reader that went away fails with EPIPE instead of killing the process. */
static int stop_signal_fd(void)
{
	sigset_t mask;

	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGPIPE);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	return signalfd(-1, &mask, SFD_CLOEXEC);
}

/* Waits on the mailbox descriptor and the stop signals' descriptor,
 * receiving with timeout 0 after each wakeup. */
static int cmd_monitor(struct ctl *c, int argc, char **argv)
{
	struct shmg_opts o = cluster_opts(c);
	struct shmg_event ev[64];
	uint64_t seen = 0, end = 0;
	int rc, sfd, mfd, i, n;

	rc = argc ? shmg_monitor(c->h, SHMG_KEY(argv[0]), &o) : shmg_monitor(c->h, NULL, 0, &o);
	if (rc < 0)
		return fail_cluster(c, rc, "monitor");
	mfd = shmg_fd(c->h);
	if (mfd < 0)
		return fail(mfd, "mailbox descriptor");
	sfd = stop_signal_fd();
	if (sfd < 0)
		return fail(-errno, "signalfd");
	if (c->timeout_ms >= 0)
		end = mono_ms() + (uint64_t)c->timeout_ms;
	rc = EXIT_OK;
	while (!c->count || seen < c->count) {
		struct pollfd p[2] = { { .fd = mfd, .events = POLLIN },
				       { .fd = sfd, .events = POLLIN } };
		int wait = -1;

		n = shmg_receive(c->h, ev, sizeof(ev) / sizeof(ev[0]), 0);
		if (n < 0) {
			rc = fail(n, "receive");
			break;
		}
		for (i = 0; i < n && (!c->count || seen < c->count); i++, seen++) {
			if (c->json)
				json_event(stdout, &ev[i]);
			else
				text_event(stdout, &ev[i]);
		}
		if (fflush(stdout) != 0)
			break; /* reader went away */
		if (n > 0)
			continue;
		if (c->timeout_ms >= 0) {
			uint64_t now = mono_ms();

			if (now >= end) {
				if (c->count)
					rc = EXIT_NEGATIVE;
				break;
			}
			wait = (int)(end - now);
		}
		if (poll(p, 2, wait) < 0 && errno != EINTR) {
			rc = fail(-errno, "poll");
			break;
		}
		if (p[1].revents)
			break; /* interrupted: a normal end */
	}
	close(sfd);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Stats                                                                    */
/* ------------------------------------------------------------------------ */

/* Seconds between two stats lines: a number from 0.01 to 86400.  Returns
 * milliseconds, or -1. */
static int parse_interval(const char *s)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v) || v < 0.01 || v > 86400)
		return -1;
	return (int)(v * 1000 + 0.5);
}

static uint64_t real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One sample of the numbers of shmg_info that change while the arena lives:
 * a table row (local time of day; pages and endpoints as used/capacity), or
 * a JSON object on one line. */
static void stats_line(FILE *f, const struct ctl *c, const struct shmg_info *in, uint64_t ns)
{
	char when[16], pages[48], endpoints[24];
	time_t t = (time_t)(ns / 1000000000u);
	struct tm tm;

	if (c->json) {
		fputs("{\"group\":", f);
		json_string(f, c->group, strlen(c->group));
		fprintf(f,
			",\"time_ns\":%" PRIu64 ",\"pages_used\":%" PRIu64 ",\"pages_total\":%" PRIu64
			",\"endpoints_live\":%" PRIu32 ",\"max_endpoints\":%" PRIu32
			",\"clusters_connected\":%" PRIu32 ",\"global_epoch\":%" PRIu64
			",\"shard_repairs\":%" PRIu64 ",\"reaper_pid\":%" PRIu32 "}\n",
			ns, in->pages_used, in->pages_total, in->endpoints_live, in->max_endpoints,
			in->clusters_connected, in->global_epoch, in->shard_repairs, in->reaper_pid);
		return;
	}
	if (!localtime_r(&t, &tm) || strftime(when, sizeof(when), "%H:%M:%S", &tm) == 0)
		snprintf(when, sizeof(when), "-");
	snprintf(pages, sizeof(pages), "%" PRIu64 "/%" PRIu64, in->pages_used, in->pages_total);
	snprintf(endpoints, sizeof(endpoints), "%" PRIu32 "/%" PRIu32, in->endpoints_live,
		 in->max_endpoints);
	fprintf(f, "%-8s  %13s  %11s  %8" PRIu32 "  %12" PRIu64 "  %7" PRIu64 "  %7" PRIu32 "\n",
		when, pages, endpoints, in->clusters_connected, in->global_epoch,
		in->shard_repairs, in->reaper_pid);
}

/* The identity of the arena's shared-memory object, to notice when it is
 * removed or recreated while --watch keeps the old mapping. */
static int arena_stat(const struct ctl *c, struct stat *st)
{
	char path[sizeof("/dev/shm/shmgroup.") + SHMG_NAME_MAX];

	snprintf(path, sizeof(path), "/dev/shm/shmgroup.%s", c->group);
	return stat(path, st) < 0 ? -errno : 0;
}

/* Sleeps until the monotonic time `until` (ms).  Returns 1 when a stop
 * signal came first, 0 otherwise, or -errno. */
static int wait_until(int sfd, uint64_t until)
{
	for (;;) {
		struct pollfd p = { .fd = sfd, .events = POLLIN };
		uint64_t now = mono_ms();
		int n;

		if (now >= until)
			return 0;
		n = poll(&p, 1, (int)(until - now));
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0)
			return 1;
	}
}

static int cmd_stats(struct ctl *c, int argc, char **argv)
{
	struct shmg_info in;
	struct stat first, now;
	uint64_t seen = 0, next = mono_ms();
	int rc, sfd = -1, status = EXIT_OK;

	(void)argc;
	(void)argv;
	if (c->watch) {
		if ((rc = arena_stat(c, &first)) < 0)
			return fail(rc, "group '%s'", c->group);
		if ((sfd = stop_signal_fd()) < 0)
			return fail(-errno, "signalfd");
	}
	if (!c->json)
		printf("%-8s  %13s  %11s  %8s  %12s  %7s  %7s\n", "TIME", "PAGES", "ENDPOINTS",
		       "CLUSTERS", "EPOCH", "REPAIRS", "REAPER");
	for (;;) {
		if ((rc = shmg_info(c->h, &in)) < 0) {
			status = fail(rc, "info");
			break;
		}
		stats_line(stdout, c, &in, real_ns());
		seen++;
		if (fflush(stdout) != 0 || !c->watch || (c->count && seen >= c->count))
			break;
		next += (uint64_t)c->interval_ms;
		if (next < mono_ms())
			next = mono_ms() + (uint64_t)c->interval_ms; /* fell behind */
		if ((rc = wait_until(sfd, next)) != 0) {
			if (rc < 0)
				status = fail(rc, "poll");
			break; /* or interrupted: a normal end */
		}
		rc = arena_stat(c, &now);
		if (rc < 0 || now.st_dev != first.st_dev || now.st_ino != first.st_ino) {
			fprintf(stderr, "%s: group '%s': the arena was removed or recreated; stopping\n",
				progname, c->group);
			status = EXIT_FAIL;
			break;
		}
	}
	if (sfd >= 0)
		close(sfd);
	return status;
}

struct command {
	const char *name;
	int (*run)(struct ctl *c, int argc, char **argv);
	unsigned int opts; /* OPT_* accepted */
	int min_args, max_args;
	const char *args; /* for the usage message */
	bool attach;      /* needs an open handle */
};

static const struct command commands[] = {
	{ "lookup", cmd_lookup, OPT_CLUSTER | OPT_JSON, 1, 1, "exactly one KEY", true },
	{ "members", cmd_members, OPT_CLUSTER | OPT_LOCAL | OPT_LIMIT | OPT_JSON, 1, 1,
	  "exactly one KEY (a KEY ending in '/' is a prefix)", true },
	{ "counts", cmd_counts, OPT_CLUSTER, 0, 1, "at most one KEY", true },
	{ "dump", cmd_dump, OPT_JSON | OPT_ALL_NODES, 0, 0, "no arguments", true },
	{ "info", cmd_info, OPT_JSON, 0, 0, "no arguments", true },
	{ "stats", cmd_stats, OPT_JSON | OPT_WATCH | OPT_COUNT, 0, 1,
	  "no arguments, or SECONDS after --watch", true },
	{ "clusters", cmd_clusters, OPT_JSON, 0, 0, "no arguments", true },
	{ "nodes", cmd_nodes, OPT_CLUSTER, 0, 0, "no arguments", true },
	{ "monitor", cmd_monitor, OPT_CLUSTER | OPT_JSON | OPT_COUNT | OPT_TIMEOUT, 0, 1,
	  "at most one PATTERN", true },
	{ "dispatch", cmd_dispatch, OPT_CLUSTER | OPT_LOCAL, 2, 2, "a KEY and a MESSAGE", true },
	{ "log-level", cmd_log_level, 0, 0, 1, "at most one LEVEL (off, info or verbose)", true },
	{ "check", cmd_check, 0, 0, 0, "no arguments", true },
	{ "reap", cmd_reap, 0, 0, 0, "no arguments", true },
	{ "destroy", cmd_destroy, 0, 0, 0, "no arguments", false },
};

static const char *opt_name(unsigned int bit)
{
	switch (bit) {
	case OPT_CLUSTER:
		return "--cluster";
	case OPT_LOCAL:
		return "--local";
	case OPT_JSON:
		return "--json";
	case OPT_ALL_NODES:
		return "--all-nodes";
	case OPT_LIMIT:
		return "--limit";
	case OPT_COUNT:
		return "--count";
	case OPT_TIMEOUT:
		return "--timeout";
	case OPT_WATCH:
		return "--watch";
	}
	return "?";
}

/* stats: SECONDS is --watch's, given as --watch=S or as the argument after
 * it; --count counts lines, so it needs --watch. */
static void check_stats_args(struct ctl *c, int nargs, char **args)
{
	const char *s = c->interval;

	if (nargs == 1) {
		if (!c->watch)
			die_usage("stats takes SECONDS only after --watch");
		if (s)
			die_usage("stats: SECONDS given twice");
		s = args[0];
	}
	if ((c->given & OPT_COUNT) && !c->watch)
		die_usage("option --count applies to 'stats' only with --watch");
	c->interval_ms = 1000;
	if (s && (c->interval_ms = parse_interval(s)) < 0)
		die_usage("--watch wants seconds (0.01 to 86400), not '%s'", s);
}

static int attach(struct ctl *c)
{
	struct shmg_config cfg;
	int rc;

	memset(&cfg, 0, sizeof(cfg));
	cfg.flags = SHMG_OPEN_NOCREATE;
	if (c->owner_given) {
		cfg.flags |= SHMG_OPEN_OWNER;
		cfg.owner_uid = c->owner_uid;
	}
	rc = shmg_open(c->group, &cfg, &c->h);
	if (rc == 0)
		return EXIT_OK;
	switch (rc) {
	case -ENOENT:
		fprintf(stderr,
			"%s: group '%s': no such arena (/dev/shm/shmgroup.%s does not exist)\n",
			progname, c->group, c->group);
		break;
	case -EINVAL:
		fprintf(stderr,
			"%s: '%s' is not a valid group name (1..%u bytes of [A-Za-z0-9._-])\n",
			progname, c->group, SHMG_NAME_MAX);
		break;
	case -EPROTO:
		fprintf(stderr,
			"%s: group '%s': %s (not a shmgroup arena, or one made by another version)\n",
			progname, c->group, shmg_strerror(rc));
		break;
	case -EUSERS:
		fprintf(stderr,
			"%s: group '%s': %s (every endpoint slot is in use; try 'reap' "
			"from a process that has it open)\n",
			progname, c->group, shmg_strerror(rc));
		break;
	case -EACCES:
		fprintf(stderr,
			"%s: group '%s': %s (to use another user's arena, name its owner "
			"with --owner)\n",
			progname, c->group, shmg_strerror(rc));
		break;
	default:
		fail(rc, "cannot attach group '%s'", c->group);
	}
	return EXIT_FAIL;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "group", required_argument, NULL, 'g' },
		{ "owner", required_argument, NULL, 'u' },
		{ "cluster", required_argument, NULL, 'c' },
		{ "local", no_argument, NULL, 'l' },
		{ "limit", required_argument, NULL, 'n' },
		{ "all-nodes", no_argument, NULL, 'a' },
		{ "json", no_argument, NULL, 'j' },
		{ "count", required_argument, NULL, 'N' },
		{ "timeout", required_argument, NULL, 't' },
		{ "watch", optional_argument, NULL, 'w' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct ctl c;
	const struct command *cmd = NULL;
	const char *env;
	char *end;
	unsigned long long lim;
	unsigned int bit;
	size_t i;
	int opt, rc, crc, nargs;

	memset(&c, 0, sizeof(c));
	env = getenv("SHMGROUP_GROUP");
	c.group = env && *env ? env : "default";
	c.timeout_ms = -1;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":g:u:c:ln:ajN:t:w::hV", longopts, NULL)) != -1) {
		switch (opt) {
		case 'g':
			c.group = optarg;
			break;
		case 'u':
			if (parse_owner(optarg, &c.owner_uid) < 0)
				die_usage("--owner wants a user name or uid, not '%s'", optarg);
			c.owner_given = true;
			break;
		case 'c':
			c.cluster = optarg;
			c.given |= OPT_CLUSTER;
			break;
		case 'l':
			c.local = true;
			c.given |= OPT_LOCAL;
			break;
		case 'n':
			errno = 0;
			lim = strtoull(optarg, &end, 10);
			if (errno || end == optarg || *end || optarg[0] == '-' || lim == 0 ||
			    lim > SIZE_MAX)
				die_usage("--limit wants a positive number, not '%s'", optarg);
			c.limit = (size_t)lim;
			c.given |= OPT_LIMIT;
			break;
		case 'a':
			c.all_nodes = true;
			c.given |= OPT_ALL_NODES;
			break;
		case 'j':
			c.json = true;
			c.given |= OPT_JSON;
			break;
		case 'N':
			errno = 0;
			lim = strtoull(optarg, &end, 10);
			if (errno || end == optarg || *end || optarg[0] == '-' || lim == 0)
				die_usage("--count wants a positive number, not '%s'", optarg);
			c.count = lim;
			c.given |= OPT_COUNT;
			break;
		case 't':
			errno = 0;
			lim = strtoull(optarg, &end, 10);
			if (errno || end == optarg || *end || optarg[0] == '-' || lim > INT_MAX)
				die_usage("--timeout wants milliseconds (0..%d), not '%s'", INT_MAX,
					  optarg);
			c.timeout_ms = (int)lim;
			c.given |= OPT_TIMEOUT;
			break;
		case 'w':
			c.watch = true;
			c.interval = optarg;
			c.given |= OPT_WATCH;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		case 'V':
			printf("shmgroupctl (shmgroup) %s, API %d.%d\n", SHMGROUP_VERSION_STRING,
			       SHMG_VERSION_MAJOR, SHMG_VERSION_MINOR);
			return EXIT_OK;
		case ':':
			die_usage("option '%s' needs an argument", argv[optind - 1]);
			break;
		default:
			if (optopt)
				die_usage("unknown option '-%c'", optopt);
			die_usage("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		die_usage("no command given");
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[optind], commands[i].name) == 0)
			cmd = &commands[i];
	if (!cmd)
		die_usage("unknown command '%s'", argv[optind]);
	for (bit = 1; bit <= OPT_LAST; bit <<= 1)
		if ((c.given & bit) && !(cmd->opts & bit))
			die_usage("option %s does not apply to '%s'", opt_name(bit), cmd->name);
	nargs = argc - optind - 1;
	if (nargs < cmd->min_args || nargs > cmd->max_args)
		die_usage("%s takes %s", cmd->name, cmd->args);
	if (cmd->run == cmd_stats)
		check_stats_args(&c, nargs, argv + optind + 1);
	if (nargs >= 1 && argv[optind + 1][0] == '\0')
		die_usage(cmd->run == cmd_log_level ? "empty level" : "empty key");
	if (cmd->run == cmd_log_level && nargs == 1 && shmg_log_level_parse(argv[optind + 1]) < 0)
		die_usage("log-level wants off, info or verbose, not '%s'", argv[optind + 1]);
	if (c.cluster && c.cluster[0] == '\0')
		die_usage("empty cluster name (omit --cluster for the default cluster)");

	if (cmd->attach) {
		rc = attach(&c);
		if (rc != EXIT_OK)
			return rc;
	}
	rc = cmd->run(&c, nargs, argv + optind + 1);
	if (c.h) {
		crc = shmg_close(c.h);
		if (crc < 0 && rc == EXIT_OK)
			rc = fail(crc, "close");
	}
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "%s: write error on standard output\n", progname);
		return EXIT_FAIL;
	}
	return rc;
}
