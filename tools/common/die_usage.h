/* SPDX-License-Identifier: MIT */
/*
 * A usage error, the same way in every tool: "PROG: message", a pointer to
 * --help, exit status 64 (EX_USAGE).  The including file defines
 * `progname` before it includes this.
 */
#ifndef SHMGROUP_TOOLS_DIE_USAGE_H
#define SHMGROUP_TOOLS_DIE_USAGE_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help' for more information.\n", progname);
	exit(64);
}

#endif
