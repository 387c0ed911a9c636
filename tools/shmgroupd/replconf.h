/* SPDX-License-Identifier: MIT */
/*
 * The agent's replication settings: this node's name and address, its peers,
 * the cluster key file, the protocol's knobs under the seed's names, and the
 * fault layer.  Each is a config-file key and a command-line option ("--" +
 * key with '_' -> '-'); `peer` may be given many times.  Parsing only:
 * nothing here opens a socket or reads the key.
 */
#ifndef SHMGROUPD_REPLCONF_H
#define SHMGROUPD_REPLCONF_H

#include <limits.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "repl.h"
#include "shmgroup.h"

#define NODE_NAME_MAX 64u
#define REPLCONF_MAX_PEERS 64u /* the arena's node table (remote.h) */
#define ADDR_TEXT_MAX 128u

struct peer_conf {
	uint32_t node;
	char name[NODE_NAME_MAX + 1];
	char addr_text[ADDR_TEXT_MAX];
	struct sockaddr_storage addr;
	socklen_t addr_len;
};

/* Faults injected on the agent's own datagrams, for tests and drills: each
 * percentage applies per datagram, independently, on sending; a partition
 * (SIGUSR1 on, SIGUSR2 off) drops everything to and from the listed peers,
 * or every peer when none is listed; with partition_direction "send" only
 * what goes to them (they stop hearing this node, it still hears them), with
 * "receive" only what comes from them. */
struct fault_conf {
	uint32_t loss, duplicate, reorder; /* percent */
	uint32_t delay;                    /* ms added to every datagram sent */
	uint64_t seed;                     /* 0: from getrandom */
	char partition[ADDR_TEXT_MAX * 4]; /* peer names, comma-separated */
	char partition_direction[8];       /* "both" (also ""), "send", "receive" */
};

struct replconf {
	char node_name[NODE_NAME_MAX + 1];
	char listen_text[ADDR_TEXT_MAX];
	struct sockaddr_storage listen;
	socklen_t listen_len;
	char key_file[PATH_MAX];
	char replication_group[SHMG_NAME_MAX + 1]; /* "": the group's name */
	char stats_file[PATH_MAX];
	uint32_t stats_interval; /* ms between rewrites of stats_file */
	uint32_t change_poll_us; /* how often the change logs' heads are read */
	struct peer_conf peers[REPLCONF_MAX_PEERS];
	unsigned n_peers;
	struct repl_knobs knobs;
	struct fault_conf fault;
	/* Conflicts (issue 10): "/path/lib.so:symbol" or "" for the default
	 * rule, and the signal a losing endpoint's process gets (0 = none). */
	char conflict_resolver[PATH_MAX + 128];
	uint32_t conflict_signal;
	uint64_t set; /* bit i: replconf key i given */
};

void replconf_init(struct replconf *c);
/* key = value.  0, -ENOENT (not a replication key), -EINVAL, -ERANGE,
 * -ENOSPC (too many peers). */
int replconf_set(struct replconf *c, const char *key, const char *value);
/* out = file, each key given on the command line overriding it; peers of
 * both (the command line's after the file's). */
void replconf_merge(struct replconf *out, const struct replconf *file, const struct replconf *cli);
void replconf_print(const struct replconf *c, FILE *f);
/* conflict_signal's value: "none" or "0" (0), a name with or without "SIG"
 * ("TERM", "SIGKILL", "RTMIN+2") or a number up to SIGRTMAX.  The signal, or
 * -EINVAL. */
int replconf_signal_parse(const char *text);
/* The keys, NULL-terminated, for the command line's options. */
const char *replconf_key(unsigned i);

static inline bool replconf_enabled(const struct replconf *c)
{
	return c->listen_len != 0;
}

/* Whole-configuration checks for a node numbered self_node: a name, unique
 * peer names and numbers (none this node's; self_node 0: not known yet),
 * one address family, and a key unless every address is loopback.  0, or
 * -1 with why in err. */
int replconf_check(const struct replconf *c, uint32_t self_node, char *err, size_t errlen);

/* Reads a 32-byte cluster key: the raw bytes, or 64 hex digits and an
 * optional newline.  0, or -1 with why in err. */
int replconf_load_key(const char *path, uint8_t key[REPL_KEY_LEN], char *err, size_t errlen);

/* True for 127.0.0.0/8 and ::1 (and v4-mapped loopback). */
bool addr_is_loopback(const struct sockaddr_storage *a);
/* "HOST:PORT", "[V6]:PORT"; a name is resolved.  0 or -EINVAL. */
int addr_parse(const char *text, struct sockaddr_storage *out, socklen_t *len);

#endif
