/* SPDX-License-Identifier: MIT */
/*
 * --owner USER for the tools that attach to an arena (shmgroupctl,
 * shmgroup-top): a user name, or a numeric uid.
 */
#ifndef SHMGROUP_TOOLS_PARSE_OWNER_H
#define SHMGROUP_TOOLS_PARSE_OWNER_H

#include <errno.h>
#include <pwd.h>
#include <stdint.h>
#include <stdlib.h>

/* 0 and *out set, or -EINVAL. */
static inline int parse_owner(const char *s, uint32_t *out)
{
	const struct passwd *pw = getpwnam(s);
	unsigned long long v;
	char *end;

	if (pw) {
		*out = (uint32_t)pw->pw_uid;
		return 0;
	}
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v >= UINT32_MAX)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

#endif
