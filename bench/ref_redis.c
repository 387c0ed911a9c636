/* SPDX-License-Identifier: MIT */
/*
 * Reference: what users run instead, a Redis GET over a unix socket (hiredis,
 * one connection per reader process, one blocking GET per lookup).  prepare()
 * starts its own redis-server on a private socket in a fresh temporary
 * directory (--port 0, no persistence), loads the keys with pipelined SETs
 * (value = the key's index as 8 raw bytes), and teardown() stops it and
 * removes the directory.  Built only when hiredis is found; skipped with a
 * plain message when it or redis-server is missing.
 */
#include "impl.h"

#include <errno.h>
#include <stdlib.h>

#ifdef BENCH_HAVE_HIREDIS
#include <hiredis.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char g_dir[128];
static char g_sock[192];
static pid_t g_pid;

static int find_in_path(const char *prog)
{
	const char *path = getenv("PATH");
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	char buf[4096];
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *save = NULL, *d = strtok_r(buf, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		char f[4200];
		snprintf(f, sizeof(f), "%s/%s", d, prog);
		if (access(f, X_OK) == 0)
			return 1;
	}
	return 0;
}

static int redis_available(char *why, size_t cap)
{
	if (!find_in_path("redis-server")) {
		snprintf(why, cap, "redis-server not found in PATH (apt-get install redis-server)");
		return 0;
	}
	return 1;
}

static redisContext *connect_sock(void)
{
	struct timeval tv = {2, 0};
	redisContext *c = redisConnectUnixWithTimeout(g_sock, tv);
	if (c && c->err) {
		redisFree(c);
		return NULL;
	}
	return c;
}

static void redis_teardown(struct impl_env *env)
{
	(void)env;
	if (g_pid > 0) {
		kill(g_pid, SIGTERM);
		int st;
		waitpid(g_pid, &st, 0);
		g_pid = 0;
	}
	if (g_dir[0]) {
		char f[256];
		snprintf(f, sizeof(f), "%s/redis.log", g_dir);
		unlink(f);
		unlink(g_sock);
		rmdir(g_dir);
		g_dir[0] = 0;
	}
}

static int redis_prepare(struct impl_env *env)
{
	const struct keyset *ks = env->ks;
	const char *tmp = getenv("TMPDIR");
	snprintf(g_dir, sizeof(g_dir), "%s/shmgroup-bench-redis.XXXXXX", tmp ? tmp : "/tmp");
	if (!mkdtemp(g_dir)) {
		g_dir[0] = 0;
		return -errno;
	}
	snprintf(g_sock, sizeof(g_sock), "%s/redis.sock", g_dir);
	char logf[256];
	snprintf(logf, sizeof(logf), "%s/redis.log", g_dir);
	g_pid = fork();
	if (g_pid < 0)
		return -errno;
	if (g_pid == 0) {
		execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", g_sock,
		       "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", g_dir,
		       "--logfile", logf, "--daemonize", "no", (char *)NULL);
		_exit(127);
	}
	redisContext *c = NULL;
	for (int i = 0; i < 500 && !c; i++) {
		int st;
		if (waitpid(g_pid, &st, WNOHANG) == g_pid) {
			g_pid = 0;
			snprintf(env->note, sizeof(env->note), "redis-server exited at start (see its log)");
			return -ECHILD;
		}
		struct timespec d = {0, 10 * 1000 * 1000};
		nanosleep(&d, NULL);
		c = connect_sock();
	}
	if (!c)
		return -ETIMEDOUT;
	/* Pipelined SETs, 10k per round trip. */
	for (size_t i = 0; i < ks->count;) {
		size_t n = ks->count - i < 10000 ? ks->count - i : 10000;
		for (size_t j = 0; j < n; j++) {
			uint64_t v = i + j;
			redisAppendCommand(c, "SET %b %b", keyset_hit(ks, i + j), keyset_hit_len(ks, i + j), &v,
					   sizeof(v));
		}
		for (size_t j = 0; j < n; j++) {
			void *r = NULL;
			if (redisGetReply(c, &r) != REDIS_OK) {
				redisFree(c);
				return -EIO;
			}
			freeReplyObject(r);
		}
		i += n;
	}
	redisFree(c);
	return 0;
}

static int redis_attach(struct impl_env *env, void **out)
{
	(void)env;
	redisContext *c = connect_sock();
	if (!c)
		return -ECONNREFUSED;
	*out = c;
	return 0;
}

static int redis_lookup(void *state, const char *const *keys, const size_t *lens, uint64_t *vals,
			int n)
{
	redisContext *c = state;
	int found = 0;
	for (int i = 0; i < n; i++) {
		redisReply *r = redisCommand(c, "GET %b", keys[i], lens[i]);
		if (!r)
			return -EIO;
		if (r->type == REDIS_REPLY_STRING && r->len == sizeof(uint64_t)) {
			memcpy(&vals[i], r->str, sizeof(uint64_t));
			found++;
		} else {
			vals[i] = IMPL_MISS;
		}
		freeReplyObject(r);
	}
	return found;
}

static void redis_detach(void *state)
{
	redisFree(state);
}

static int redis_writer_attach(struct impl_env *env, int w, void **out)
{
	(void)w;
	return redis_attach(env, out);
}

static int redis_writer_insert(void *state, const char *key, size_t len, uint64_t val, int kind)
{
	(void)kind;
	redisReply *r = redisCommand(state, "SET %b %b", key, len, &val, sizeof(val));
	if (!r)
		return -EIO;
	freeReplyObject(r);
	return 0;
}

static int redis_writer_remove(void *state, const char *key, size_t len, int kind)
{
	(void)kind;
	redisReply *r = redisCommand(state, "DEL %b", key, len);
	if (!r)
		return -EIO;
	freeReplyObject(r);
	return 0;
}

const struct impl impl_redis = {
	.name = "redis",
	.kind = "server",
	.default_batch = 1,
	.supports_writers = 1,
	.available = redis_available,
	.prepare = redis_prepare,
	.teardown = redis_teardown,
	.reader_attach = redis_attach,
	.lookup = redis_lookup,
	.reader_detach = redis_detach,
	.writer_attach = redis_writer_attach,
	.writer_insert = redis_writer_insert,
	.writer_remove = redis_writer_remove,
	.writer_detach = redis_detach,
};

#else /* !BENCH_HAVE_HIREDIS */

static int redis_unavailable(char *why, size_t cap)
{
	snprintf(why, cap, "hiredis was not found when this was built (apt-get install libhiredis-dev)");
	return 0;
}

const struct impl impl_redis = {
	.name = "redis",
	.kind = "server",
	.available = redis_unavailable,
};

#endif
