/* SPDX-License-Identifier: MIT */
/* The agent's log (log.h). */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

static bool log_journal;            /* "<N>" prefixes for journald */
static int arena_level = -1;        /* once open: the arena's level decides */
static int log_level_boot = L_INFO; /* before the arena is open */

/* True when stderr is the journal stream systemd connected (JOURNAL_STREAM
 * holds "DEV:INODE" of it); a redirected stderr gets plain lines. */
static bool stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_init(void)
{
	log_journal = stderr_is_journal();
	setvbuf(stderr, NULL, _IOLBF, 0);
}

void log_set_boot_level(int level)
{
	log_level_boot = level;
}

void log_set_arena_level(int level)
{
	__atomic_store_n(&arena_level, level, __ATOMIC_RELAXED);
}

static int current_level(void)
{
	int lv = __atomic_load_n(&arena_level, __ATOMIC_RELAXED);

	return lv < 0 ? log_level_boot : lv;
}

void log_write(int level, const char *msg)
{
	static const char *const words[] = { "error", "warning", "off", "info", "verbose" };
	static const int prio[] = { 3, 4, 6, 6, 7 };
	int i = level + 2;

	if (log_journal)
		fprintf(stderr, "<%d>%s\n", prio[i], msg);
	else
		fprintf(stderr, "shmgroupd: %s: %s\n", words[i], msg);
}

void logf_(int level, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (level > 0 && current_level() < level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_write(level, msg);
}

/* The library has already applied the arena's level. */
void log_library(enum shmg_log_level level, const char *msg, void *arg)
{
	(void)arg;
	log_write(level >= SHMG_LOG_VERBOSE ? L_VERBOSE : L_INFO, msg);
}
