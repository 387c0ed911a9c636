/* SPDX-License-Identifier: MIT */
/*
 * Reading the agent's stats file (`stats_file` in shmgroupd(8)): one
 * "name value" line per counter, rewritten whole every stats_interval.
 * Header-only, for the programs that watch an agent from outside (the
 * replication test and bench).
 */
#ifndef SHMGROUPD_STATS_FILE_H
#define SHMGROUPD_STATS_FILE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The counter `name` of the stats file at path, or -1 if the file or the
 * counter is not there (yet). */
static inline long long stats_file_get(const char *path, const char *name)
{
	char line[128];
	long long v = -1;
	FILE *f = fopen(path, "re");
	size_t n = strlen(name);
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, name, n) == 0 && line[n] == ' ')
			v = atoll(line + n + 1);
	if (f)
		fclose(f);
	return v;
}

#endif
