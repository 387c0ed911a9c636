/* SPDX-License-Identifier: MIT */
/* The agent's replication settings (replconf.h). */
#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <signal.h>

#include "replconf.h"
#include "resolver.h"

enum key_kind {
	K_NAME,    /* node_name */
	K_ADDR,    /* listen */
	K_PATH,    /* char[PATH_MAX] */
	K_GROUP,   /* replication_group */
	K_PEER,    /* repeatable */
	K_KNOB,    /* u32 in struct repl_knobs */
	K_U32,     /* u32 in struct replconf */
	K_U64,     /* u64 in struct replconf */
	K_PEERSET, /* fault_partition */
	K_DIRECTION, /* fault_partition_direction */
	K_RESOLVER, /* conflict_resolver */
	K_SIGNAL,  /* conflict_signal: u32 in struct replconf */
};

struct key {
	const char *name;
	enum key_kind kind;
	size_t off;
};

#define KNOB(k)                                                                                    \
	{                                                                                          \
#k, K_KNOB, offsetof(struct repl_knobs, k)                                         \
	}
#define AT(k, kind, f)                                                                             \
	{                                                                                          \
		k, kind, offsetof(struct replconf, f)                                              \
	}
static const struct key keys[] = {
	AT("node_name", K_NAME, node_name),
	AT("listen", K_ADDR, listen_text),
	AT("peer", K_PEER, peers),
	AT("key_file", K_PATH, key_file),
	AT("replication_group", K_GROUP, replication_group),
	AT("stats_file", K_PATH, stats_file),
	AT("stats_interval", K_U32, stats_interval),
	AT("change_poll_us", K_U32, change_poll_us),
	KNOB(replicated_sender_buffer_size),
	KNOB(replicated_sender_flush_interval),
	KNOB(replicated_registry_receiver_buffer_size),
	KNOB(replicated_registry_receiver_flush_interval),
	KNOB(replicated_pg_receiver_buffer_size),
	KNOB(replicated_pg_receiver_flush_interval),
	KNOB(busy_retry_attempts),
	KNOB(busy_retry_interval),
	KNOB(slow_retry_interval),
	KNOB(max_datagram),
	KNOB(heartbeat_interval),
	KNOB(down_after),
	KNOB(rto_initial),
	KNOB(rto_min),
	KNOB(rto_max),
	KNOB(max_snapshot_chunks),
	AT("fault_loss", K_U32, fault.loss),
	AT("fault_duplicate", K_U32, fault.duplicate),
	AT("fault_reorder", K_U32, fault.reorder),
	AT("fault_delay", K_U32, fault.delay),
	AT("fault_seed", K_U64, fault.seed),
	AT("fault_partition", K_PEERSET, fault.partition),
	AT("fault_partition_direction", K_DIRECTION, fault.partition_direction),
	AT("conflict_resolver", K_RESOLVER, conflict_resolver),
	AT("conflict_signal", K_SIGNAL, conflict_signal),
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))
static_assert(NKEYS < 64, "one bit per key in replconf.set");

const char *replconf_key(unsigned i)
{
	return i < NKEYS ? keys[i].name : NULL;
}

void replconf_init(struct replconf *c)
{
	memset(c, 0, sizeof(*c));
	repl_knobs_default(&c->knobs);
	c->stats_interval = 1000;
	c->change_poll_us = 1000;
}

bool addr_is_loopback(const struct sockaddr_storage *a)
{
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *v4 = (const struct sockaddr_in *)a;
		return (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
	}
	if (a->ss_family == AF_INET6) {
		const struct in6_addr *v6 = &((const struct sockaddr_in6 *)a)->sin6_addr;
		return IN6_IS_ADDR_LOOPBACK(v6) ||
		       (IN6_IS_ADDR_V4MAPPED(v6) && v6->s6_addr[12] == 127);
	}
	return false;
}

int addr_parse(const char *text, struct sockaddr_storage *out, socklen_t *len)
{
	char host[ADDR_TEXT_MAX];
	const char *port;
	size_t n = strlen(text);

	if (n == 0 || n >= sizeof(host))
		return -EINVAL;
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (!close || close[1] != ':')
			return -EINVAL;
		n = (size_t)(close - text - 1);
		memcpy(host, text + 1, n);
		port = close + 2;
	} else {
		const char *colon = strrchr(text, ':');
		if (!colon || strchr(text, ':') != colon)
			return -EINVAL;
		n = (size_t)(colon - text);
		memcpy(host, text, n);
		port = colon + 1;
	}
	host[n] = '\0';
	char *end;
	unsigned long p = strtoul(port, &end, 10);
	if (!*port || *end || p == 0 || p > 65535 || !n)
		return -EINVAL;
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
				  .ai_socktype = SOCK_DGRAM,
				  .ai_flags = AI_NUMERICSERV },
			*res;
	if (getaddrinfo(host, port, &hints, &res) != 0)
		return -EINVAL;
	memcpy(out, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static bool name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > NODE_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isgraph((unsigned char)s[i]) || s[i] == ',')
			return false;
	return true;
}

/* "NODE NAME ADDRESS", separated by spaces or commas. */
static int peer_parse(const char *value, struct peer_conf *p)
{
	char buf[ADDR_TEXT_MAX * 2], *save = NULL, *f[4];
	int n = 0;

	if (strlen(value) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, value);
	for (char *t = strtok_r(buf, " \t,", &save); t; t = strtok_r(NULL, " \t,", &save)) {
		if (n == 3)
			return -EINVAL;
		f[n++] = t;
	}
	if (n != 3)
		return -EINVAL;
	char *end;
	errno = 0;
	unsigned long node = strtoul(f[0], &end, 10);
	if (errno || *end || node == 0 || node > UINT32_MAX || !name_ok(f[1]) ||
	    strlen(f[2]) >= sizeof(p->addr_text))
		return -EINVAL;
	memset(p, 0, sizeof(*p));
	p->node = (uint32_t)node;
	strcpy(p->name, f[1]);
	strcpy(p->addr_text, f[2]);
	return addr_parse(f[2], &p->addr, &p->addr_len);
}

static int number(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	if (!*s || *s == '-' || isspace((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno)
		return -ERANGE;
	if (*end)
		return -EINVAL;
	if (v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int replconf_signal_parse(const char *text)
{
	uint64_t v;
	if (strcmp(text, "none") == 0)
		return 0;
	if (isdigit((unsigned char)text[0]))
		return number(text, (uint64_t)SIGRTMAX, &v) == 0 ? (int)v : -EINVAL;
	if (strncmp(text, "SIG", 3) == 0)
		text += 3;
	for (int sig = 1; sig < SIGRTMIN; sig++) {
		const char *abbrev = sigabbrev_np(sig);
		if (abbrev && strcmp(abbrev, text) == 0)
			return sig;
	}
	if (strncmp(text, "RTMIN", 5) == 0 || strncmp(text, "RTMAX", 5) == 0) {
		bool max = text[3] == 'A';
		const char *rest = text + 5;
		if (!*rest)
			return max ? SIGRTMAX : SIGRTMIN;
		if ((*rest != '+' || max) && (*rest != '-' || !max))
			return -EINVAL;
		if (number(rest + 1, (uint64_t)(SIGRTMAX - SIGRTMIN), &v) < 0)
			return -EINVAL;
		return max ? SIGRTMAX - (int)v : SIGRTMIN + (int)v;
	}
	return -EINVAL;
}

int replconf_set(struct replconf *c, const char *key, const char *value)
{
	unsigned i;
	for (i = 0; i < NKEYS && strcmp(keys[i].name, key) != 0; i++)
		;
	if (i == NKEYS)
		return -ENOENT;
	const struct key *k = &keys[i];
	char *at = (char *)c + k->off;
	uint64_t v;
	int rc = 0;

	switch (k->kind) {
	case K_NAME:
		if (!name_ok(value))
			return -EINVAL;
		strcpy(c->node_name, value);
		break;
	case K_ADDR:
		if (strlen(value) >= sizeof(c->listen_text) ||
		    addr_parse(value, &c->listen, &c->listen_len) < 0)
			return -EINVAL;
		strcpy(c->listen_text, value);
		break;
	case K_PATH:
		if (!*value || strlen(value) >= PATH_MAX)
			return -EINVAL;
		strcpy(at, value);
		break;
	case K_GROUP:
		if (!*value || strlen(value) > SHMG_NAME_MAX)
			return -EINVAL;
		strcpy(c->replication_group, value);
		break;
	case K_PEERSET:
		if (strlen(value) >= sizeof(c->fault.partition))
			return -EINVAL;
		strcpy(c->fault.partition, value);
		break;
	case K_DIRECTION:
		if (strcmp(value, "both") != 0 && strcmp(value, "send") != 0 &&
		    strcmp(value, "receive") != 0)
			return -EINVAL;
		strcpy(c->fault.partition_direction, value);
		break;
	case K_PEER:
		if (c->n_peers == REPLCONF_MAX_PEERS)
			return -ENOSPC;
		if ((rc = peer_parse(value, &c->peers[c->n_peers])) < 0)
			return rc;
		c->n_peers++;
		break;
	case K_KNOB:
		if ((rc = number(value, UINT32_MAX, &v)) < 0)
			return rc;
		*(uint32_t *)(void *)((char *)&c->knobs + k->off) = (uint32_t)v;
		break;
	case K_U32:
		if ((rc = number(value, UINT32_MAX, &v)) < 0)
			return rc;
		if (strncmp(key, "fault_", 6) == 0 &&
		    k->off != offsetof(struct replconf, fault.delay) && v > 100)
			return -ERANGE; /* a percentage */
		/* Each sets how often the protocol thread wakes. */
		if ((k->off == offsetof(struct replconf, change_poll_us) &&
		     (v < 100 || v > 1000000)) ||
		    (k->off == offsetof(struct replconf, stats_interval) &&
		     (v < 10 || v > 3600000)))
			return -ERANGE;
		*(uint32_t *)(void *)at = (uint32_t)v;
		break;
	case K_U64:
		if ((rc = number(value, UINT64_MAX, &v)) < 0)
			return rc;
		memcpy(at, &v, sizeof(v));
		break;
	case K_RESOLVER: {
		/* The form only: the file is loaded (and refused) at start. */
		char path[PATH_MAX], symbol[RESOLVER_SYMBOL_MAX + 1];
		if (strlen(value) >= sizeof(c->conflict_resolver) ||
		    resolver_spec_split(value, path, symbol) < 0)
			return -EINVAL;
		strcpy(c->conflict_resolver, value);
		break;
	}
	case K_SIGNAL:
		if ((rc = replconf_signal_parse(value)) < 0)
			return rc;
		c->conflict_signal = (uint32_t)rc;
		break;
	}
	c->set |= 1ull << i;
	return 0;
}

static size_t key_size(const struct key *k)
{
	switch (k->kind) {
	case K_KNOB:
	case K_U32:
	case K_SIGNAL:
		return sizeof(uint32_t);
	case K_U64:
		return sizeof(uint64_t);
	default:
		return 0; /* copied by hand */
	}
}

void replconf_merge(struct replconf *out, const struct replconf *file, const struct replconf *cli)
{
	*out = *file;
	for (unsigned i = 0; i < NKEYS; i++) {
		const struct key *k = &keys[i];
		if (!(cli->set & (1ull << i)) || k->kind == K_PEER)
			continue;
		if (k->kind == K_ADDR) {
			strcpy(out->listen_text, cli->listen_text);
			out->listen = cli->listen;
			out->listen_len = cli->listen_len;
		} else if (k->kind == K_KNOB) {
			memcpy((char *)&out->knobs + k->off, (const char *)&cli->knobs + k->off,
			       sizeof(uint32_t));
		} else if (key_size(k)) {
			memcpy((char *)out + k->off, (const char *)cli + k->off, key_size(k));
		} else {
			strcpy((char *)out + k->off, (const char *)cli + k->off);
		}
	}
	for (unsigned i = 0; i < cli->n_peers && out->n_peers < REPLCONF_MAX_PEERS; i++)
		out->peers[out->n_peers++] = cli->peers[i];
	out->set |= cli->set;
}

void replconf_print(const struct replconf *c, FILE *f)
{
	for (unsigned i = 0; i < NKEYS; i++) {
		const struct key *k = &keys[i];
		const char *at = (const char *)c + k->off;
		if (!(c->set & (1ull << i)))
			continue;
		switch (k->kind) {
		case K_PEER:
			for (unsigned p = 0; p < c->n_peers; p++)
				fprintf(f, "peer = %" PRIu32 " %s %s\n", c->peers[p].node,
					c->peers[p].name, c->peers[p].addr_text);
			break;
		case K_KNOB:
			fprintf(f, "%s = %" PRIu32 "\n", k->name,
				*(const uint32_t *)(const void *)((const char *)&c->knobs +
								  k->off));
			break;
		case K_U32:
			fprintf(f, "%s = %" PRIu32 "\n", k->name,
				*(const uint32_t *)(const void *)at);
			break;
		case K_U64: {
			uint64_t v;
			memcpy(&v, at, sizeof(v));
			fprintf(f, "%s = %" PRIu64 "\n", k->name, v);
			break;
		}
		case K_SIGNAL: {
			int sig = (int)c->conflict_signal;
			const char *name = sig > 0 && sig < SIGRTMIN ? sigabbrev_np(sig) : NULL;
			if (!sig)
				fprintf(f, "%s = none\n", k->name);
			else if (name)
				fprintf(f, "%s = SIG%s\n", k->name, name);
			else
				fprintf(f, "%s = %d\n", k->name, sig);
			break;
		}
		default:
			fprintf(f, "%s = %s\n", k->name, at);
		}
	}
}

int replconf_check(const struct replconf *c, uint32_t self_node, char *err, size_t errlen)
{
	bool all_loopback = addr_is_loopback(&c->listen);

	if (!replconf_enabled(c)) {
		if (c->n_peers) {
			snprintf(err, errlen, "peers are configured but no listen address");
			return -1;
		}
		return 0;
	}
	if (!c->node_name[0]) {
		snprintf(err, errlen, "replication needs node_name (unique in the cluster)");
		return -1;
	}
	for (unsigned i = 0; i < c->n_peers; i++) {
		const struct peer_conf *p = &c->peers[i];
		if ((self_node && p->node == self_node) || strcmp(p->name, c->node_name) == 0) {
			snprintf(err, errlen,
				 "peer %" PRIu32 " %s: this node is %" PRIu32 " %s; a node number "
				 "and a name belong to one node only",
				 p->node, p->name, self_node, c->node_name);
			return -1;
		}
		for (unsigned j = 0; j < i; j++)
			if (c->peers[j].node == p->node || strcmp(c->peers[j].name, p->name) == 0) {
				snprintf(err, errlen,
					 "peers %" PRIu32 " %s and %" PRIu32 " %s: duplicate node "
					 "number or name",
					 c->peers[j].node, c->peers[j].name, p->node, p->name);
				return -1;
			}
		if (p->addr.ss_family != c->listen.ss_family) {
			snprintf(err, errlen, "peer %s: address %s is not of listen's family (%s)",
				 p->name, p->addr_text, c->listen_text);
			return -1;
		}
		all_loopback = all_loopback && addr_is_loopback(&p->addr);
	}
	if (!c->key_file[0] && !all_loopback) {
		snprintf(err, errlen,
			 "no key_file: running without a cluster key is allowed on loopback "
			 "addresses only");
		return -1;
	}
	return 0;
}

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = tolower(ch);
	return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

int replconf_load_key(const char *path, uint8_t key[REPL_KEY_LEN], char *err, size_t errlen)
{
	uint8_t buf[2 * REPL_KEY_LEN + 2];
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		snprintf(err, errlen, "key file %s: %s", path, strerror(errno));
		return -1;
	}
	ssize_t n = fstat(fd, &st) == 0 ? read(fd, buf, sizeof(buf)) : -1;
	close(fd);
	if (n < 0) {
		snprintf(err, errlen, "key file %s: %s", path, strerror(errno));
		return -1;
	}
	if (st.st_mode & 077) {
		snprintf(err, errlen, "key file %s is readable by others (mode %04o); chmod 600 it",
			 path, (unsigned)(st.st_mode & 07777));
		return -1;
	}
	if (n == REPL_KEY_LEN) {
		memcpy(key, buf, REPL_KEY_LEN);
		return 0;
	}
	if (n == 2 * REPL_KEY_LEN || (n == 2 * REPL_KEY_LEN + 1 && buf[n - 1] == '\n')) {
		for (unsigned i = 0; i < REPL_KEY_LEN; i++) {
			int hi = hexval(buf[2 * i]), lo = hexval(buf[2 * i + 1]);
			if (hi < 0 || lo < 0)
				goto bad;
			key[i] = (uint8_t)(hi << 4 | lo);
		}
		memset(buf, 0, sizeof(buf));
		return 0;
	}
bad:
	memset(buf, 0, sizeof(buf));
	snprintf(err, errlen,
		 "key file %s: want 32 bytes, or 64 hex digits and an optional newline", path);
	return -1;
}
