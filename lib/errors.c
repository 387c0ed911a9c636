/* SPDX-License-Identifier: MIT */
/* Words for errors and enum values, and the process-wide log sink (silent
 * unless the application sets one). */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static shmg_log_fn log_fn;
static void *log_arg;

void shmg_set_log_fn(shmg_log_fn fn, void *arg)
{
	__atomic_store_n(&log_arg, arg, __ATOMIC_RELAXED);
	__atomic_store_n(&log_fn, fn, __ATOMIC_RELEASE);
}

void sg_log(const shmg_t *h, int level, const char *fmt, ...)
{
	shmg_log_fn fn = __atomic_load_n(&log_fn, __ATOMIC_ACQUIRE);
	if (!fn)
		return;
	if (h && h->hdr && (int)load_relaxed(&h->hdr->log_level) < level)
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fn((enum shmg_log_level)level, msg, __atomic_load_n(&log_arg, __ATOMIC_RELAXED));
}

const char *shmg_strerror(int err)
{
	if (err == INT_MIN)
		return "unknown error"; /* -INT_MIN does not exist */
	int e = err < 0 ? -err : err;
	switch (e) {
	case 0: return "success";
	case EINVAL: return "invalid argument (key, metadata, cluster name, option or config)";
	case EEXIST: return "already exists (key held by another endpoint, or arena with another configuration)";
	case ENOENT: return "not found (key not registered, not a member, or no such arena)";
	case EPERM: return "not permitted (entry owned by another endpoint, or no read section open)";
	case ENOTCONN: return "cluster not connected on this host";
	case ENOSPC: return "arena full (or table full); nothing was changed";
	case ENOBUFS: return "buffer too small";
	case EBADF: return "not an open shmgroup handle";
	case ECHILD: return "handle was opened before fork(); open a new one in the child";
	case EPROTO: return "not a shmgroup arena, or one of another layout version or build";
	case EUSERS: return "all endpoint slots of the arena are in use";
	case EACCES: return "permission denied (another user's arena, or its mode was widened)";
	case EIO: return "arena damaged beyond repair (a shard or a lock)";
	case EBUSY: return "a lock of the arena stayed held past its wait limit (a stopped process?)";
	case ENOMEM: return "out of memory";
	case E2BIG: return "message too large";
	case ECONNABORTED: return "endpoint terminated: it lost a registry conflict; close the handle";
	default: {
		/* strerrordesc_np returns a static string, unlike strerror(). */
		const char *d = strerrordesc_np(e);
		return d ? d : "unknown error";
	}
	}
}

static const char *word_of(const char *const *words, size_t n, int v)
{
	return v >= 0 && (size_t)v < n && words[v] ? words[v] : "unknown";
}

const char *shmg_event_type_name(int type)
{
	static const char *const words[] = {
		[SHMG_EV_REGISTERED] = "registered", [SHMG_EV_UNREGISTERED] = "unregistered",
		[SHMG_EV_JOINED] = "joined",         [SHMG_EV_LEFT] = "left",
		[SHMG_EV_MESSAGE] = "message",       [SHMG_EV_OVERFLOW] = "overflow",
		[SHMG_EV_CONFLICT] = "conflict",
	};
	return word_of(words, sizeof(words) / sizeof(words[0]), type);
}

const char *shmg_reason_name(int reason)
{
	static const char *const words[] = {
		[SHMG_REASON_NONE] = "none",
		[SHMG_REASON_NORMAL] = "normal",
		[SHMG_REASON_EXIT] = "exit",
		[SHMG_REASON_NODEDOWN] = "nodedown",
		[SHMG_REASON_CONFLICT] = "conflict",
		[SHMG_REASON_CLUSTER_DISCONNECT] = "cluster_disconnect",
		[SHMG_REASON_RESYNC] = "resync",
	};
	return word_of(words, sizeof(words) / sizeof(words[0]), reason);
}

static const char *const level_words[] = {
	[SHMG_LOG_OFF] = "off", [SHMG_LOG_INFO] = "info", [SHMG_LOG_VERBOSE] = "verbose"};

const char *shmg_log_level_name(int level)
{
	return word_of(level_words, sizeof(level_words) / sizeof(level_words[0]), level);
}

int shmg_log_level_parse(const char *word)
{
	for (int i = 0; word && i < (int)(sizeof(level_words) / sizeof(level_words[0])); i++)
		if (strcmp(word, level_words[i]) == 0)
			return i;
	return -EINVAL;
}
