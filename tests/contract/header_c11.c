/* SPDX-License-Identifier: MIT */
/*
 * The public header must compile cleanly as strict ISO C11 (no GNU extensions
 * requested, -pedantic -Werror) and link: a user who builds with plain
 * `cc -std=c11` gets no warning from us.  Also checks the few calls that need
 * no arena, so a broken C ABI (e.g. a missing extern "C" counterpart) shows.
 */
#include <shmgroup.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Every public type and constant is usable from C11. */
static struct shmg_config config_example = { .shards = 8, .flags = SHMG_OPEN_NOCREATE };
static const enum shmg_kind kinds[] = { SHMG_REGISTRY, SHMG_MEMBER };
static const enum shmg_log_level levels[] = { SHMG_LOG_OFF, SHMG_LOG_INFO, SHMG_LOG_VERBOSE };
static const enum shmg_endpoint_state states[] = { SHMG_ENDPOINT_OPENING, SHMG_ENDPOINT_LIVE,
						   SHMG_ENDPOINT_CLOSING };

static int entry_cb(const struct shmg_entry *e, void *arg)
{
	(void)e;
	(void)arg;
	return 0;
}

int main(void)
{
	shmg_id_t id = { 1, 42, 7 }, back;
	char buf[SHMG_ID_STRLEN];
	struct shmg_opts opts = { 0 };
	struct shmg_info info;
	shmg_entry_fn fn = entry_cb;
	int n;

	(void)opts;
	(void)info;
	(void)fn;
	(void)config_example;
	(void)kinds;
	(void)levels;
	(void)states;
	n = shmg_id_format(id, buf, sizeof(buf));
	if (n != (int)strlen("n1.42.7") || strcmp(buf, "n1.42.7") != 0) {
		fprintf(stderr, "shmg_id_format gave %d \"%s\"\n", n, buf);
		return 1;
	}
	if (shmg_id_parse(buf, &back) != 0 || !shmg_id_equal(id, back)) {
		fprintf(stderr, "shmg_id_parse did not round-trip\n");
		return 1;
	}
	{
		/* The counters' calls take the caller's struct size. */
		struct shmg_shard_stats ss;
		struct shmg_endpoint_stats es;
		struct shmg_cluster_stats cs;
		struct shmg_event ev = { 0 };

		if (shmg_shard_stats(NULL, 0, &ss, sizeof(ss)) != -EBADF ||
		    shmg_endpoint_stats(NULL, 0, &es, sizeof(es)) != -EBADF ||
		    shmg_cluster_stats(NULL, 0, &cs, sizeof(cs)) != -EBADF || ev.group != NULL) {
			fprintf(stderr, "stats calls accepted a NULL handle\n");
			return 1;
		}
	}
	if (shmg_strerror(-ENOENT) == NULL || shmg_strerror(ENOENT) == NULL) {
		fprintf(stderr, "shmg_strerror returned NULL\n");
		return 1;
	}
	return 0;
}
