/* SPDX-License-Identifier: MIT */
/*
 * The user's conflict resolver named by the agent's configuration,
 * `conflict_resolver = /path/lib.so:symbol`: parsed here, loaded with dlopen
 * and dlsym once at start.  A change on SIGHUP takes a restart: the
 * protocol thread calls the function while the main thread reloads, and
 * every host must resolve with the same function anyway.
 */
#ifndef SHMGROUPD_RESOLVER_H
#define SHMGROUPD_RESOLVER_H

#include <limits.h>
#include <stddef.h>

#include "store.h"

#define RESOLVER_SYMBOL_MAX 127u

/* Splits "PATH:SYMBOL" at its last ':' (PATH absolute, SYMBOL a C
 * identifier).  0, or -EINVAL. */
int resolver_spec_split(const char *spec, char path[PATH_MAX], char symbol[RESOLVER_SYMBOL_MAX + 1]);

struct resolver {
	void *dl;
	shmg_resolve_fn fn;
};

/* Loads spec's library (RTLD_NOW | RTLD_LOCAL) and finds its symbol.  0, or
 * -1 with why in err (the file, the loader's words, the symbol). */
int resolver_load(const char *spec, struct resolver *out, char *err, size_t errlen);
void resolver_unload(struct resolver *r);

#endif
