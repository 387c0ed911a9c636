/* SPDX-License-Identifier: MIT */
/*
 * The agent's log: one line per message on stderr, from any thread.
 *
 * Under systemd (stderr is the stream named by JOURNAL_STREAM) lines start
 * with a syslog priority "<N>", otherwise with "shmgroupd: LEVEL: ".  Info and
 * verbose lines follow the arena's log level (shared with every process,
 * changeable at runtime with `shmgroupctl log-level`), as the main thread
 * last read it (a handle is for one thread at a time, so the other threads
 * never read it themselves); errors and warnings are always printed.
 * stdio locks the stream per call, so lines of two threads never interleave.
 */
#ifndef SHMGROUPD_LOG_H
#define SHMGROUPD_LOG_H

#include "shmgroup.h"

enum {
	L_ERR = -2, /* always printed */
	L_WARN = -1,
	L_INFO = SHMG_LOG_INFO,
	L_VERBOSE = SHMG_LOG_VERBOSE,
};

/* Picks the line format (journal or plain); call once, first. */
void log_init(void);
/* The level used before an arena is open. */
void log_set_boot_level(int level);
/* The arena's level as last read (-1: back to the boot level). */
void log_set_arena_level(int level);
void log_write(int level, const char *msg);
void logf_(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* shmg_log_fn for the library's messages. */
void log_library(enum shmg_log_level level, const char *msg, void *arg);

#endif
