/* SPDX-License-Identifier: MIT */
/*
 * shmgroup-top: a group's arena at a glance, refreshed every second.
 *
 * It attaches read-only in the sense that matters: it opens an endpoint
 * (SHMG_OPEN_NOCREATE, so it never creates an arena), holds no entries and
 * reads counters that writers keep; if it is killed, its endpoint is reaped
 * like any other.  With -b it prints plain-text snapshots, with --json one
 * JSON object per refresh, for scripts; otherwise it runs the ncurses screen.
 *
 * Exit status: 0 normal end, 2 the terminal could not be used or output
 * failed, 64 usage error.  A missing arena is not an error: the tool says so
 * and waits for it.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "parse_owner.h"
#include "top.h"

#ifndef SHMGROUP_VERSION_STRING
#define SHMGROUP_VERSION_STRING "unknown"
#endif

#define EXIT_FAIL 2

static const char *progname = "shmgroup-top";

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: %s [-g GROUP] [-u USER] [-d SECONDS] [-v VIEW] [-b [-n N] [--json]]\n"
		"\n"
		"Show a shmgroup arena (/dev/shm/shmgroup.GROUP) of this host: its shards,\n"
		"endpoints, clusters, peers and busiest key prefixes, refreshed every second.\n"
		"\n"
		"Options:\n"
		"  -g, --group GROUP     group name (default: $SHMGROUP_GROUP, else \"default\")\n"
		"  -u, --owner USER      also attach to an arena owned by USER (a name or uid)\n"
		"  -d, --delay SECONDS   time between refreshes, 0.1 to 3600 (default 1)\n"
		"  -v, --view VIEW       first view: shards, endpoints, clusters, peers, keys\n"
		"  -b, --batch           print plain-text snapshots instead of the screen\n"
		"  -n, --iterations N    with -b or --json: stop after N snapshots\n"
		"  -j, --json            one JSON object per refresh (implies -b)\n"
		"  -h, --help            show this help and exit\n"
		"  -V, --version         show the version and exit\n"
		"\n"
		"Keys: Tab or 1-5 views, s sort, / filter, p pause, h or ? help, q quit.\n"
		"See shmgroup-top(1).\n",
		progname);
}

#include "die_usage.h"

/* Seconds from 0.1 to 3600 as milliseconds, or -1. */
static int parse_delay(const char *s)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v) || v < 0.1 || v > 3600)
		return -1;
	return (int)(v * 1000 + 0.5);
}

/* Snapshots until n are printed (0: until interrupted).  SIGINT, SIGTERM
 * and SIGPIPE end it quietly between two snapshots. */
static int run_batch(struct top_source *src, int delay_ms, unsigned long n, bool json)
{
	struct top_snapshot snap[2] = { 0 };
	sigset_t mask;
	int cur = 0, sfd, status = 0;
	uint64_t next = top_mono_ns();

	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGPIPE);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	src->keys_wanted = true;
	for (unsigned long i = 0; n == 0 || i < n; i++) {
		struct pollfd p = { .fd = sfd, .events = POLLIN };
		uint64_t now;

		top_sample(src, &snap[cur], &snap[!cur]);
		cur = !cur;
		if ((json ? top_batch_json(stdout, &snap[cur], src->group)
			  : top_batch_text(stdout, &snap[cur], src->group)) != 0) {
			status = errno == EPIPE ? 0 : EXIT_FAIL;
			break;
		}
		if (n && i + 1 == n)
			break;
		next += (uint64_t)delay_ms * 1000000u;
		now = top_mono_ns();
		if (next < now)
			next = now; /* fell behind: go on at once */
		if (poll(&p, 1, (int)((next - now) / 1000000u)) > 0)
			break;
	}
	if (sfd >= 0)
		close(sfd);
	top_snapshot_free(&snap[0]);
	top_snapshot_free(&snap[1]);
	return status;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "group", required_argument, NULL, 'g' },
		{ "owner", required_argument, NULL, 'u' },
		{ "delay", required_argument, NULL, 'd' },
		{ "view", required_argument, NULL, 'v' },
		{ "batch", no_argument, NULL, 'b' },
		{ "iterations", required_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct top_source src = { 0 };
	struct top_options o = { .delay_ms = 1000, .view = VIEW_SHARDS };
	bool batch = false, json = false, n_given = false;
	unsigned long n = 0;
	char *end;
	int c, v, rc;

	src.group = getenv("SHMGROUP_GROUP");
	if (!src.group || !*src.group)
		src.group = "default";
	while ((c = getopt_long(argc, argv, "g:u:d:v:bn:jhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'g':
			src.group = optarg;
			break;
		case 'u':
			if (parse_owner(optarg, &src.owner_uid) < 0)
				die_usage("--owner wants a user name or uid, not '%s'", optarg);
			src.owner_given = true;
			break;
		case 'd':
			if ((o.delay_ms = parse_delay(optarg)) < 0)
				die_usage("--delay wants seconds (0.1 to 3600), not '%s'", optarg);
			break;
		case 'v':
			if ((v = top_view_parse(optarg)) < 0)
				die_usage("no view '%s' (shards, endpoints, clusters, peers, keys)",
					  optarg);
			o.view = (enum top_view)v;
			break;
		case 'b':
			batch = true;
			break;
		case 'n':
			errno = 0;
			n = strtoul(optarg, &end, 10);
			if (errno || end == optarg || *end || optarg[0] == '-' || n == 0)
				die_usage("--iterations wants a positive number, not '%s'", optarg);
			n_given = true;
			break;
		case 'j':
			json = batch = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("%s %s\n", progname, SHMGROUP_VERSION_STRING);
			return 0;
		default:
			die_usage("unknown option");
		}
	}
	if (optind < argc)
		die_usage("unexpected argument '%s'", argv[optind]);
	if (n_given && !batch)
		die_usage("--iterations applies to batch output (-b or --json) only");
	if (!batch && (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)))
		die_usage("the screen needs a terminal; use -b or --json for output to a pipe");
	if (batch)
		rc = run_batch(&src, o.delay_ms, n, json);
	else
		rc = top_tui(&src, &o);
	top_detach(&src);
	return rc;
}
