/* SPDX-License-Identifier: MIT */
/*
 * shmgroupd: the host agent of a shmgroup group.
 *
 * What it owns: nothing in the arena.  It opens the group (creating it if
 * needed) like any process, joins the reaper election with
 * shmg_reaper_enable(), and then drives shmg_reaper_dispatch() from an
 * epoll loop over the reaper's descriptor and a signalfd.  With a listen
 * address it also replicates the group with the other hosts' agents
 * (replication.c, on threads and a handle of its own).  The elected reaper
 * holds a pidfd per endpoint process and removes a dead endpoint's entries at
 * once (reason "exit"); a candidate that is not elected retries the election
 * on every dispatch, so when the reaper dies another candidate takes over.
 *
 * It serves the group's name rather than one object: when the arena is
 * destroyed it moves to the new one (follow_arena).
 *
 * Restartable at any time.  Every piece of state the agent has is either in
 * this process (pidfds, epoll set) or is the election lock, a robust mutex
 * the kernel hands on when the holder dies.  So `kill -9` and a new start
 * disturb no reader or writer: the arena is never destroyed or reset here,
 * and a clean stop (SIGTERM, SIGINT) only closes the agent's own endpoint.
 *
 * Signals: SIGTERM, SIGINT stop (exit 0, after a BYE to the peers); SIGHUP
 * rereads the config file (only the log level and the peers can change
 * without a restart); SIGUSR1, SIGUSR2 start and end the fault layer's
 * partition.  They are blocked (before any thread starts, so in every
 * thread) and read from a signalfd, so no handler runs and no call is
 * interrupted.
 *
 * Logging: log.c.
 *
 * Readiness: sd_notify("READY=1") when NOTIFY_SOCKET is set (written here,
 * no libsystemd), and one byte on --ready-fd, once the group is open, the
 * agent is a reaper candidate and replication (if configured) listens.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "replconf.h"
#include "replication.h"
#include "resolver.h"
#include "shmgroup.h"

#ifndef SHMGROUP_VERSION_STRING
#define SHMGROUP_VERSION_STRING "unknown"
#endif

#define EXIT_FAIL 1

/* ------------------------------------------------------------------------ */
/* systemd notification (sd_notify without libsystemd)                      */
/* ------------------------------------------------------------------------ */

/* Sends state (e.g. "READY=1") to $NOTIFY_SOCKET, an absolute path or an
 * abstract name starting with '@'.  Returns 1 sent, 0 not under systemd,
 * -errno on failure. */
static int notify(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un a;
	size_t len;
	socklen_t alen;
	ssize_t n;
	int fd, rc = 1;

	if (!path || !*path)
		return 0;
	len = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof(a.sun_path))
		return -EAFNOSUPPORT;
	memset(&a, 0, sizeof(a));
	a.sun_family = AF_UNIX;
	memcpy(a.sun_path, path, len);
	if (path[0] == '@')
		a.sun_path[0] = '\0';
	alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&a, alen);
	if (n < 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* Watchdog interval in ms from $WATCHDOG_USEC (for this pid), 0 = none. */
static int watchdog_ms(void)
{
	const char *us = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
	unsigned long long v;

	if (!us || (pid && strtol(pid, NULL, 10) != (long)getpid()))
		return 0;
	v = strtoull(us, NULL, 10) / 1000;
	return v > INT_MAX ? INT_MAX : (int)v;
}

/* ------------------------------------------------------------------------ */
/* Settings: command line and config file                                   */
/* ------------------------------------------------------------------------ */

/* One creation option: its config key, command-line name, and where it goes. */
enum field_kind { F_U32, F_U64, F_MODE };
struct field {
	const char *key; /* config key; the option is "--" + key with '_' -> '-' */
	enum field_kind kind;
	size_t off;      /* in struct shmg_config */
};

#define FIELD(k, kind) { #k, kind, offsetof(struct shmg_config, k) }
static const struct field fields[] = {
	FIELD(arena_size, F_U64),   FIELD(shards, F_U32),      FIELD(max_endpoints, F_U32),
	FIELD(key_max, F_U32),      FIELD(meta_max, F_U32),    FIELD(max_clusters, F_U32),
	FIELD(node_id, F_U32),      FIELD(oplog_bytes, F_U32), FIELD(mailbox_bytes, F_U32),
	FIELD(mode, F_MODE),        FIELD(owner_uid, F_U32),   FIELD(arena_max, F_U64),
};
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

struct settings {
	char group[SHMG_NAME_MAX + 1];
	int log_level;        /* -1 = not given */
	struct shmg_config cfg;
	struct replconf repl;
	unsigned int set;     /* bit i: fields[i] given; */
#define SET_GROUP (1u << 30)
};

/* Parses an unsigned number with an optional binary suffix k, m, g (KiB, MiB,
 * GiB), or octal for modes.  Returns 0 or -EINVAL / -ERANGE. */
static int parse_number(const char *s, enum field_kind kind, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (!*s || *s == '-' || isspace((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, kind == F_MODE ? 8 : 0);
	if (errno)
		return -ERANGE;
	if (kind != F_MODE && *end) {
		unsigned int shift = 0;

		switch (tolower((unsigned char)*end)) {
		case 'k':
			shift = 10;
			break;
		case 'm':
			shift = 20;
			break;
		case 'g':
			shift = 30;
			break;
		default:
			return -EINVAL;
		}
		if (end[1] && strcasecmp(end + 1, "ib") != 0 && strcasecmp(end + 1, "b") != 0)
			return -EINVAL;
		if (v > (UINT64_MAX >> shift))
			return -ERANGE;
		v <<= shift;
		end += strlen(end);
	}
	if (*end)
		return -EINVAL;
	if ((kind == F_U32 && v > UINT32_MAX) || (kind == F_MODE && v > 07777))
		return -ERANGE;
	*out = v;
	return 0;
}

/* Sets key = value in st.  Returns 0, or -ENOENT unknown key, -EINVAL bad
 * value, -ERANGE out of range. */
static int settings_set(struct settings *st, const char *key, const char *value)
{
	uint64_t v;
	size_t i;
	int rc;

	if (strcmp(key, "group") == 0) {
		if (!*value || strlen(value) > SHMG_NAME_MAX)
			return -EINVAL;
		snprintf(st->group, sizeof(st->group), "%s", value);
		st->set |= SET_GROUP;
		return 0;
	}
	if (strcmp(key, "log_level") == 0) {
		if ((rc = shmg_log_level_parse(value)) < 0)
			return -EINVAL;
		st->log_level = rc;
		return 0;
	}
	for (i = 0; i < NFIELDS; i++) {
		if (strcmp(key, fields[i].key) != 0)
			continue;
		if ((rc = parse_number(value, fields[i].kind, &v)) < 0)
			return rc;
		if (fields[i].kind == F_U64)
			memcpy((char *)&st->cfg + fields[i].off, &v, sizeof(uint64_t));
		else
			*(uint32_t *)(void *)((char *)&st->cfg + fields[i].off) = (uint32_t)v;
		st->set |= 1u << i;
		/* owner_uid means something only with its flag. */
		if (fields[i].off == offsetof(struct shmg_config, owner_uid))
			st->cfg.flags |= SHMG_OPEN_OWNER;
		return 0;
	}
	return replconf_set(&st->repl, key, value);
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* Reads `key = value` lines.  Blank lines and lines starting with '#' or ';'
 * are ignored, and so is a section header such as "[shmgroupd]".  A value may
 * be in double quotes.  Every error names the file and line; on error *st is
 * unchanged.  Returns 0 or -1 (message already printed). */
static int config_read(const char *path, struct settings *st)
{
	struct settings tmp = *st;
	char line[1024];
	unsigned int lineno = 0;
	FILE *f = fopen(path, "re");
	int rc = 0;

	if (!f) {
		logf_(L_ERR, "config %s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		char *s, *eq, *key, *val;
		size_t n;

		lineno++;
		if (!strchr(line, '\n') && !feof(f)) {
			logf_(L_ERR, "config %s:%u: line too long", path, lineno);
			rc = -1;
			break;
		}
		s = trim(line);
		if (!*s || *s == '#' || *s == ';' || *s == '[')
			continue;
		eq = strchr(s, '=');
		if (!eq) {
			logf_(L_ERR, "config %s:%u: expected 'key = value'", path, lineno);
			rc = -1;
			break;
		}
		*eq = '\0';
		key = trim(s);
		val = trim(eq + 1);
		n = strlen(val);
		if (n >= 2 && val[0] == '"' && val[n - 1] == '"') {
			val[n - 1] = '\0';
			val++;
		}
		switch (settings_set(&tmp, key, val)) {
		case 0:
			continue;
		case -ENOENT:
			logf_(L_ERR, "config %s:%u: unknown key '%s'", path, lineno, key);
			break;
		case -ERANGE:
			logf_(L_ERR, "config %s:%u: %s: value '%s' out of range", path, lineno, key,
			      val);
			break;
		case -ENOSPC:
			logf_(L_ERR, "config %s:%u: more than %u peers", path, lineno,
			      REPLCONF_MAX_PEERS);
			break;
		default:
			logf_(L_ERR, "config %s:%u: %s: bad value '%s'", path, lineno, key, val);
		}
		rc = -1;
		break;
	}
	if (rc == 0 && ferror(f)) {
		logf_(L_ERR, "config %s: read error", path);
		rc = -1;
	}
	fclose(f);
	if (rc == 0)
		*st = tmp;
	return rc;
}

/* The effective settings: file values, each overridden by the command line. */
static void settings_merge(struct settings *out, const struct settings *file,
			   const struct settings *cli)
{
	size_t i;

	*out = *file;
	if (cli->set & SET_GROUP)
		memcpy(out->group, cli->group, sizeof(out->group));
	if (cli->log_level >= 0)
		out->log_level = cli->log_level;
	for (i = 0; i < NFIELDS; i++) {
		if (!(cli->set & (1u << i)))
			continue;
		memcpy((char *)&out->cfg + fields[i].off, (const char *)&cli->cfg + fields[i].off,
		       fields[i].kind == F_U64 ? sizeof(uint64_t) : sizeof(uint32_t));
	}
	out->cfg.flags |= cli->cfg.flags & SHMG_OPEN_OWNER;
	out->set = file->set | cli->set;
	replconf_merge(&out->repl, &file->repl, &cli->repl);
}

static void settings_init(struct settings *st)
{
	memset(st, 0, sizeof(*st));
	st->log_level = -1;
	replconf_init(&st->repl);
}

/* The node number replication will use: the arena's when open, else the
 * node_id given (default 1). */
static uint32_t settings_node(const struct settings *st, shmg_t *h)
{
	struct shmg_info in;

	if (h && shmg_info(h, &in) == 0)
		return in.node_id;
	return st->cfg.node_id ? st->cfg.node_id : 1;
}

/* ------------------------------------------------------------------------ */
/* Command line                                                             */
/* ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: shmgroupd --group NAME [OPTIONS]\n"
		"\n"
		"The host agent of a shmgroup group: opens (creating if needed) the arena\n"
		"/dev/shm/shmgroup.NAME and reaps the entries of dead processes at once.\n"
		"Runs in the foreground and logs to standard error.\n"
		"\n"
		"Options:\n"
		"  -g, --group NAME         group to serve (or 'group' in the config file)\n"
		"  -l, --log-level LEVEL    off, info or verbose; sets the arena's level\n"
		"  -c, --config FILE        read 'key = value' settings from FILE (reread on SIGHUP)\n"
		"      --check-config       print the effective settings and exit\n"
		"      --ready-fd N         write one byte to fd N when ready, then close it\n"
		"  -h, --help               show this help and exit\n"
		"  -V, --version            show the version and exit\n"
		"\n"
		"Creation options (used only when the arena does not exist yet; a value\n"
		"that differs from an existing arena's is an error):\n"
		"      --arena-size BYTES   (suffixes k, m, g)   --shards N\n"
		"      --max-endpoints N    --key-max BYTES      --meta-max BYTES\n"
		"      --max-clusters N     --node-id N          --oplog-bytes BYTES\n"
		"      --mailbox-bytes BYTES                     --mode OCTAL\n"
		"      --arena-max BYTES    (grows up to; default 8 x arena size)\n"
		"\n"
		"Attach option:\n"
		"      --owner-uid UID      also serve an arena whose object UID owns (by\n"
		"                           default only the agent's own user's arenas)\n"
		"\n"
		"Replication options (see shmgroupd(8); off without --listen):\n"
		"      --node-name NAME     this node's name, unique in the cluster\n"
		"      --listen ADDR:PORT   UDP address of this node\n"
		"      --peer 'NODE NAME ADDR:PORT'   a peer (repeat the option)\n"
		"      --key-file FILE      the 32-byte cluster key\n"
		"      --replication-group NAME      the group's name on the wire\n"
		"      --stats-file FILE    --stats-interval MS  --change-poll-us US\n"
		"      --replicated-sender-buffer-size N  --replicated-sender-flush-interval MS\n"
		"      --replicated-registry-receiver-buffer-size N\n"
		"      --replicated-registry-receiver-flush-interval MS\n"
		"      --replicated-pg-receiver-buffer-size N\n"
		"      --replicated-pg-receiver-flush-interval MS\n"
		"      --busy-retry-attempts N  --busy-retry-interval MS  --slow-retry-interval MS\n"
		"      --max-datagram BYTES  --heartbeat-interval MS  --down-after MS\n"
		"      --rto-initial MS  --rto-min MS  --rto-max MS  --max-snapshot-chunks N\n"
		"      --fault-loss PCT  --fault-duplicate PCT  --fault-reorder PCT\n"
		"      --fault-delay MS  --fault-seed N  --fault-partition NAMES\n"
		"      --fault-partition-direction both|send|receive\n"
		"\n"
		"Signals: TERM, INT stop (exit 0); HUP rereads the config file and adds new\n"
		"peers; USR1, USR2 start and end the fault layer's partition.\n"
		"See shmgroupd(8).\n");
}

static const char *progname = "shmgroupd";
#include "die_usage.h"

struct args {
	struct settings cli;
	const char *config;
	int ready_fd;
	bool check_config;
};

enum { O_READY_FD = 256, O_CHECK_CONFIG, O_FIELD0, O_REPL0 = O_FIELD0 + 64 };
#define NREPL_MAX 64

static void parse_args(int argc, char **argv, struct args *a)
{
	static struct option longopts[4 + 2 + NFIELDS + NREPL_MAX + 1 + 2];
	static char names[NFIELDS + NREPL_MAX][48];
	size_t i, n = 0, k;
	int opt, rc;

	longopts[n++] = (struct option){ "group", required_argument, NULL, 'g' };
	longopts[n++] = (struct option){ "log-level", required_argument, NULL, 'l' };
	longopts[n++] = (struct option){ "config", required_argument, NULL, 'c' };
	longopts[n++] = (struct option){ "check-config", no_argument, NULL, O_CHECK_CONFIG };
	longopts[n++] = (struct option){ "ready-fd", required_argument, NULL, O_READY_FD };
	longopts[n++] = (struct option){ "help", no_argument, NULL, 'h' };
	longopts[n++] = (struct option){ "version", no_argument, NULL, 'V' };
	for (i = 0; i < NFIELDS; i++) {
		snprintf(names[i], sizeof(names[i]), "%s", fields[i].key);
		for (k = 0; names[i][k]; k++)
			if (names[i][k] == '_')
				names[i][k] = '-';
		longopts[n++] = (struct option){ names[i], required_argument, NULL,
						 O_FIELD0 + (int)i };
	}
	for (i = 0; replconf_key((unsigned)i) && i < NREPL_MAX; i++) {
		char *nm = names[NFIELDS + i];

		snprintf(nm, sizeof(names[0]), "%s", replconf_key((unsigned)i));
		for (k = 0; nm[k]; k++)
			if (nm[k] == '_')
				nm[k] = '-';
		longopts[n++] = (struct option){ nm, required_argument, NULL, O_REPL0 + (int)i };
	}
	longopts[n] = (struct option){ NULL, 0, NULL, 0 };

	settings_init(&a->cli);
	a->config = NULL;
	a->ready_fd = -1;
	a->check_config = false;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":g:l:c:hV", longopts, NULL)) != -1) {
		switch (opt) {
		case 'g':
			if (settings_set(&a->cli, "group", optarg) < 0)
				die_usage("bad group name '%s'", optarg);
			break;
		case 'l':
			if (settings_set(&a->cli, "log_level", optarg) < 0)
				die_usage("--log-level wants off, info or verbose, not '%s'", optarg);
			break;
		case 'c':
			a->config = optarg;
			break;
		case O_CHECK_CONFIG:
			a->check_config = true;
			break;
		case O_READY_FD: {
			char *end;
			long fd;

			errno = 0;
			fd = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || fd < 0 || fd > INT_MAX ||
			    fcntl((int)fd, F_GETFD) < 0)
				die_usage("--ready-fd wants an open file descriptor, not '%s'",
					  optarg);
			a->ready_fd = (int)fd;
			break;
		}
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			printf("shmgroupd (shmgroup) %s, API %d.%d\n", SHMGROUP_VERSION_STRING,
			       SHMG_VERSION_MAJOR, SHMG_VERSION_MINOR);
			exit(0);
		case ':':
			die_usage("option '%s' needs an argument", argv[optind - 1]);
		case '?':
			die_usage("unknown option '%s'", argv[optind - 1]);
		default:
			i = (size_t)(opt - O_FIELD0);
			if (opt >= O_REPL0) {
				const char *key = replconf_key((unsigned)(opt - O_REPL0));

				rc = replconf_set(&a->cli.repl, key, optarg);
				if (rc < 0)
					die_usage("--%s: %s value '%s'", names[NFIELDS + opt - O_REPL0],
						  rc == -ERANGE ? "out-of-range" : "bad", optarg);
				break;
			}
			rc = settings_set(&a->cli, fields[i].key, optarg);
			if (rc < 0)
				die_usage("--%s: %s value '%s'", names[i],
					  rc == -ERANGE ? "out-of-range" : "bad", optarg);
		}
	}
	if (optind < argc)
		die_usage("unexpected argument '%s'", argv[optind]);
}

static void print_settings(const struct settings *st)
{
	size_t i;

	printf("group = %s\n", st->group);
	if (st->log_level >= 0)
		printf("log_level = %s\n", shmg_log_level_name(st->log_level));
	for (i = 0; i < NFIELDS; i++) {
		const char *p = (const char *)&st->cfg + fields[i].off;
		uint64_t v;
		uint32_t v32;

		if (!(st->set & (1u << i)))
			continue;
		if (fields[i].kind == F_U64) {
			memcpy(&v, p, sizeof(v));
		} else {
			memcpy(&v32, p, sizeof(v32));
			v = v32;
		}
		if (fields[i].kind == F_MODE)
			printf("%s = 0%" PRIo64 "\n", fields[i].key, v);
		else
			printf("%s = %" PRIu64 "\n", fields[i].key, v);
	}
	replconf_print(&st->repl, stdout);
}

/* ------------------------------------------------------------------------ */
/* The agent                                                                */
/* ------------------------------------------------------------------------ */

struct agent {
	struct args args;
	struct settings file, eff;
	shmg_t *h;
	int sfd, epfd;
	bool elected;
	int last_level;
	int watchdog_ms;
	struct timespec last_watchdog;
	int follow_rc; /* last failure to follow a destroyed arena, 0 = none */
	struct replication *repl;
	uint8_t key[REPL_KEY_LEN];
	bool has_key;
	struct resolver resolver; /* conflict_resolver, loaded once at start */
};

/* How often the agent asks whether its arena was destroyed (one fstat). */
#define FOLLOW_MS 500

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Applies the log level of the settings to the arena, if one was given
 * (observe() reports the change). */
static void apply_level(struct agent *ag)
{
	if (ag->eff.log_level >= 0)
		(void)shmg_log_level(ag->h, ag->eff.log_level);
	log_set_arena_level(shmg_log_level(ag->h, -1));
}

/* Starts replication of the group served when a listen address is configured.
 * Returns 0, or -1 (logged). */
static int start_replication(struct agent *ag)
{
	const struct replconf *rc = &ag->eff.repl;
	char err[PATH_MAX + 128];

	if (!replconf_enabled(rc))
		return 0;
	if (replconf_check(rc, settings_node(&ag->eff, ag->h), err, sizeof(err)) < 0) {
		logf_(L_ERR, "replication: %s", err);
		return -1;
	}
	if (rc->key_file[0] && !ag->has_key) {
		if (replconf_load_key(rc->key_file, ag->key, err, sizeof(err)) < 0) {
			logf_(L_ERR, "replication: %s", err);
			return -1;
		}
		ag->has_key = true;
	}
	/* Refused loudly: a host resolving with another rule than its peers
	 * would keep a different winner. */
	if (rc->conflict_resolver[0] && !ag->resolver.fn) {
		if (resolver_load(rc->conflict_resolver, &ag->resolver, err, sizeof(err)) < 0) {
			logf_(L_ERR, "%s", err);
			return -1;
		}
		logf_(L_INFO, "conflicts resolved by %s", rc->conflict_resolver);
	}
	struct replication_params p = {
		.arena = ag->eff.group,
		.cfg = &ag->eff.cfg,
		.group = rc->replication_group[0] ? rc->replication_group : ag->eff.group,
		.conf = rc,
		.key = ag->has_key ? ag->key : NULL,
		.conflicts = {
			.resolver = ag->resolver.fn,
			.conflict_signal = (int)rc->conflict_signal,
		},
	};
	return replication_start(&p, &ag->repl);
}

/* SIGHUP's part for replication: new peers, new addresses. */
static void reload_replication(struct agent *ag, const struct replconf *next)
{
	char err[PATH_MAX + 128];

	if (!replconf_enabled(next) && !replconf_enabled(&ag->eff.repl))
		return;
	if (replconf_enabled(next) != replconf_enabled(&ag->eff.repl)) {
		logf_(L_WARN, "config: turning replication on or off takes a restart");
		return;
	}
	if (replconf_check(next, settings_node(&ag->eff, ag->h), err, sizeof(err)) < 0) {
		logf_(L_WARN, "config: %s; replication settings not reloaded", err);
		return;
	}
	/* The resolver runs on the protocol thread, and every host must use
	 * the same one: swapped only by a restart. */
	if (strcmp(next->conflict_resolver, ag->eff.repl.conflict_resolver) != 0 ||
	    next->conflict_signal != ag->eff.repl.conflict_signal)
		logf_(L_WARN, "config: conflict_resolver and conflict_signal apply after a "
			      "restart (still '%s', signal %u)",
		      ag->eff.repl.conflict_resolver[0] ? ag->eff.repl.conflict_resolver : "default",
		      ag->eff.repl.conflict_signal);
	replication_update(ag->repl, next);
	/* The running conflict settings stay what they are until a restart. */
	struct replconf kept = ag->eff.repl;
	ag->eff.repl = *next;
	memcpy(ag->eff.repl.conflict_resolver, kept.conflict_resolver,
	       sizeof(kept.conflict_resolver));
	ag->eff.repl.conflict_signal = kept.conflict_signal;
}

/* SIGHUP: rereads the file; a bad file keeps the running settings. */
static void reload(struct agent *ag)
{
	struct settings file, eff;

	if (!ag->args.config) {
		logf_(L_INFO, "SIGHUP: no config file given; nothing to reload");
		return;
	}
	notify("RELOADING=1");
	settings_init(&file);
	if (config_read(ag->args.config, &file) < 0) {
		logf_(L_WARN, "config %s not reloaded; keeping the running settings",
		      ag->args.config);
		notify("READY=1");
		return;
	}
	settings_merge(&eff, &file, &ag->args.cli);
	if (strcmp(eff.group, ag->eff.group) != 0)
		logf_(L_WARN, "config: group changed to '%s'; restart to serve it (still '%s')",
		      eff.group, ag->eff.group);
	if (memcmp(&eff.cfg, &ag->eff.cfg, sizeof(eff.cfg)) != 0)
		logf_(L_WARN, "config: creation options changed; they apply only to a new arena");
	ag->file = file;
	ag->eff.log_level = eff.log_level;
	reload_replication(ag, &eff.repl);
	apply_level(ag);
	logf_(L_INFO, "reloaded %s", ag->args.config);
	notify("READY=1");
}

/* Logs when this agent becomes (or stops being) the reaper, and when the
 * arena's log level changes. */
static void observe(struct agent *ag)
{
	struct shmg_info in;
	int lv = shmg_log_level(ag->h, -1);

	log_set_arena_level(lv);
	if (lv >= 0 && lv != ag->last_level) {
		int shown = lv > ag->last_level ? lv : ag->last_level;

		if (shown >= SHMG_LOG_INFO) {
			char msg[64];

			snprintf(msg, sizeof(msg), "arena log level is now %s (was %s)",
				 shmg_log_level_name(lv), shmg_log_level_name(ag->last_level));
			log_write(L_INFO, msg);
		}
		ag->last_level = lv;
	}
	if (shmg_info(ag->h, &in) < 0)
		return;
	bool elected = in.reaper_pid == (uint32_t)getpid();
	if (elected && !ag->elected) {
		logf_(L_INFO, "reaping for group %s", ag->eff.group);
		notify("STATUS=reaper");
	} else if (!elected && ag->elected) {
		logf_(L_WARN, "no longer the reaper (now pid %" PRIu32 "); staying a candidate",
		      in.reaper_pid);
	}
	ag->elected = elected;
}

static int open_group(struct agent *ag, shmg_t **out)
{
	int rc = shmg_open(ag->eff.group, &ag->eff.cfg, out);

	switch (rc) {
	case 0:
		return 0;
	case -EEXIST:
		logf_(L_ERR,
		      "group %s exists with a different configuration (drop the creation "
		      "options, or destroy it first)",
		      ag->eff.group);
		break;
	case -EINVAL:
		logf_(L_ERR, "group %s: invalid name or creation option: %s", ag->eff.group,
		      shmg_strerror(rc));
		break;
	default:
		logf_(L_ERR, "cannot open group %s: %s", ag->eff.group, shmg_strerror(rc));
	}
	return -1;
}

/* Makes h a reaper candidate whose descriptor the epoll loop watches.
 * Returns 0, or -1 (logged at level). */
static int join_election(struct agent *ag, shmg_t *h, int level)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = 0 };
	int rc = shmg_reaper_enable(h), rfd;

	if (rc < 0) {
		logf_(level, "cannot join the reaper election: %s", shmg_strerror(rc));
		return -1;
	}
	rfd = shmg_reaper_fd(h);
	if (rfd < 0) {
		logf_(level, "reaper descriptor: %s", shmg_strerror(rfd));
		return -1;
	}
	if (epoll_ctl(ag->epfd, EPOLL_CTL_ADD, rfd, &ev) < 0) {
		logf_(level, "epoll_ctl: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static int setup(struct agent *ag)
{
	struct epoll_event ev;
	struct shmg_info in;
	sigset_t mask;

	if (open_group(ag, &ag->h) < 0)
		return -1;
	ag->last_level = shmg_log_level(ag->h, -1);
	log_set_arena_level(ag->last_level);
	apply_level(ag);

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGUSR2);
	ag->sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	ag->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (ag->sfd < 0 || ag->epfd < 0) {
		logf_(L_ERR, "signalfd/epoll: %s", strerror(errno));
		return -1;
	}
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u32 = 1 };
	if (epoll_ctl(ag->epfd, EPOLL_CTL_ADD, ag->sfd, &ev) < 0)
		goto epoll_fail;
	if (join_election(ag, ag->h, L_ERR) < 0)
		return -1;
	if (start_replication(ag) < 0)
		return -1;

	if (shmg_info(ag->h, &in) == 0) {
		ag->elected = in.reaper_pid == (uint32_t)getpid();
		if (ag->elected)
			logf_(L_INFO, "serving group %s as its reaper (pid %d)", ag->eff.group,
			      (int)getpid());
		else
			logf_(L_INFO,
			      "serving group %s: pid %" PRIu32 " is the reaper; staying a "
			      "candidate to take over if it dies",
			      ag->eff.group, in.reaper_pid);
	}
	return 0;
epoll_fail:
	logf_(L_ERR, "epoll_ctl: %s", strerror(errno));
	return -1;
}

static void ready(struct agent *ag)
{
	char status[64 + SHMG_NAME_MAX];

	snprintf(status, sizeof(status), "READY=1\nSTATUS=serving group %s (%s)\nMAINPID=%d",
		 ag->eff.group, ag->elected ? "reaper" : "candidate", (int)getpid());
	if (notify(status) < 0)
		logf_(L_WARN, "sd_notify to $NOTIFY_SOCKET failed");
	if (ag->args.ready_fd >= 0) {
		ssize_t n;

		do
			n = write(ag->args.ready_fd, "R", 1);
		while (n < 0 && errno == EINTR);
		close(ag->args.ready_fd);
		ag->args.ready_fd = -1;
	}
}

/* The agent serves a group's name, not one object: when its arena is
 * destroyed (shmg_destroy, or removed from /dev/shm by hand), the processes
 * that open the name next meet a new arena that would have no reaper.  So
 * the agent opens the name again (creating the arena, with its creation
 * options, if nobody did yet) and becomes a candidate there.  The old handle
 * goes only once the new one works: a failure leaves the agent where it
 * was, to try again FOLLOW_MS later (logged once per distinct error). */
static void follow_arena(struct agent *ag)
{
	shmg_t *nh = NULL, *old = ag->h;
	int rc = shmg_destroyed(old);

	if (rc <= 0)
		return;
	rc = shmg_open(ag->eff.group, &ag->eff.cfg, &nh);
	if (rc == 0 && join_election(ag, nh, L_WARN) < 0)
		rc = -EAGAIN;
	if (rc < 0) {
		if (rc != ag->follow_rc)
			logf_(L_WARN, "group %s was destroyed; cannot open its new arena yet: %s",
			      ag->eff.group, shmg_strerror(rc));
		ag->follow_rc = rc;
		if (nh)
			shmg_close(nh);
		return;
	}
	ag->follow_rc = 0;
	/* Replication moves too: BYE under the old arena's incarnation, then
	 * handshakes under the new one (peers purge the old entries). */
	replication_stop(ag->repl);
	ag->repl = NULL;
	epoll_ctl(ag->epfd, EPOLL_CTL_DEL, shmg_reaper_fd(old), NULL);
	ag->h = nh;

	shmg_close(old);
	ag->elected = false;
	ag->last_level = shmg_log_level(nh, -1);
	log_set_arena_level(ag->last_level);
	apply_level(ag);
	logf_(L_INFO, "group %s was destroyed; serving its new arena", ag->eff.group);
	if (start_replication(ag) < 0)
		logf_(L_ERR, "replication stays off until the agent is restarted");
}

/* Reads pending signals; returns 1 to stop. */
static int on_signals(struct agent *ag)
{
	struct signalfd_siginfo si;

	while (read(ag->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
			logf_(L_INFO, "%s received; stopping", si.ssi_signo == SIGTERM ? "SIGTERM"
										 : "SIGINT");
			return 1;
		case SIGHUP:
			reload(ag);
			break;
		case SIGUSR1:
		case SIGUSR2:
			replication_partition(ag->repl, si.ssi_signo == SIGUSR1);
			break;
		}
	}
	return 0;
}

static int run(struct agent *ag)
{
	struct epoll_event evs[4];
	uint64_t next_watchdog = 0, next_follow = now_ms() + FOLLOW_MS;
	int timeout = 0, n, i, rc;

	for (;;) {
		uint64_t now = now_ms();

		if (now >= next_follow) {
			follow_arena(ag);
			next_follow = now + FOLLOW_MS;
		}
		if (timeout < 0 || (uint64_t)timeout > next_follow - now)
			timeout = (int)(next_follow - now);
		if (ag->watchdog_ms > 0) {
			if (now >= next_watchdog) {
				notify("WATCHDOG=1");
				next_watchdog = now + (uint64_t)ag->watchdog_ms / 2;
			}
			if (timeout < 0 || (uint64_t)timeout > next_watchdog - now)
				timeout = (int)(next_watchdog - now);
		}
		n = epoll_wait(ag->epfd, evs, 4, timeout);
		if (n < 0 && errno != EINTR) {
			logf_(L_ERR, "epoll_wait: %s", strerror(errno));
			return -1;
		}
		for (i = 0; i < n; i++)
			if (evs[i].data.u32 == 1 && on_signals(ag))
				return 0;
		rc = shmg_reaper_dispatch(ag->h);
		if (rc < 0) {
			if (rc == -EBADF || rc == -ECHILD) {
				logf_(L_ERR, "reaper: %s", shmg_strerror(rc));
				return -1;
			}
			logf_(L_WARN, "reaper: %s; retrying", shmg_strerror(rc));
			rc = 1000;
		}
		timeout = rc;
		observe(ag);
	}
}

int main(int argc, char **argv)
{
	struct agent ag;
	sigset_t mask;
	int rc;

	memset(&ag, 0, sizeof(ag));
	ag.sfd = ag.epfd = -1;
	log_init();
	parse_args(argc, argv, &ag.args);

	/* Block the signals before anything else so none is lost or default-
	 * handled between now and the signalfd. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGUSR2);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);

	settings_init(&ag.file);
	if (ag.args.config && config_read(ag.args.config, &ag.file) < 0)
		return EXIT_FAIL;
	settings_merge(&ag.eff, &ag.file, &ag.args.cli);
	if (!ag.eff.group[0])
		die_usage("no group given (--group NAME, or 'group = NAME' in the config file)");
	if (ag.args.check_config) {
		char err[PATH_MAX + 128];

		print_settings(&ag.eff);
		if (replconf_check(&ag.eff.repl, settings_node(&ag.eff, NULL), err, sizeof(err)) < 0) {
			logf_(L_ERR, "replication: %s", err);
			return EXIT_FAIL;
		}
		return 0;
	}
	if (ag.eff.log_level >= 0)
		log_set_boot_level(ag.eff.log_level);
	{
		/* Refused before the arena is opened (the node number is checked
		 * again against the arena's once it is). */
		char err[PATH_MAX + 128];

		if (replconf_check(&ag.eff.repl, ag.eff.cfg.node_id, err, sizeof(err)) < 0) {
			logf_(L_ERR, "replication: %s", err);
			return EXIT_FAIL;
		}
	}
	ag.watchdog_ms = watchdog_ms();
	shmg_set_log_fn(log_library, NULL);

	if (setup(&ag) < 0) {
		notify("STATUS=failed to start");
		replication_stop(ag.repl);
		if (ag.h)
			shmg_close(ag.h);
		return EXIT_FAIL;
	}
	ready(&ag);
	rc = run(&ag);
	notify("STOPPING=1");
	replication_stop(ag.repl);
	resolver_unload(&ag.resolver);
	/* Only our own endpoint goes: the arena and everyone's entries stay. */
	log_set_arena_level(-1);
	shmg_set_log_fn(NULL, NULL);
	if (shmg_close(ag.h) < 0)
		rc = -1;
	if (rc == 0)
		logf_(L_INFO, "stopped");
	return rc < 0 ? EXIT_FAIL : 0;
}
