/* SPDX-License-Identifier: MIT */
/* The configured conflict resolver (resolver.h). */
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "resolver.h"

int resolver_spec_split(const char *spec, char path[PATH_MAX], char symbol[RESOLVER_SYMBOL_MAX + 1])
{
	const char *colon = strrchr(spec, ':');
	if (!colon || spec[0] != '/' || colon == spec + 1)
		return -EINVAL;
	size_t plen = (size_t)(colon - spec), slen = strlen(colon + 1);
	if (plen >= PATH_MAX || slen == 0 || slen > RESOLVER_SYMBOL_MAX)
		return -EINVAL;
	for (size_t i = 0; i < slen; i++) {
		unsigned char ch = (unsigned char)colon[1 + i];
		if (!(isalnum(ch) || ch == '_') || (i == 0 && isdigit(ch)))
			return -EINVAL;
	}
	memcpy(path, spec, plen);
	path[plen] = 0;
	memcpy(symbol, colon + 1, slen + 1);
	return 0;
}

int resolver_load(const char *spec, struct resolver *out, char *err, size_t errlen)
{
	char path[PATH_MAX], symbol[RESOLVER_SYMBOL_MAX + 1];
	if (resolver_spec_split(spec, path, symbol) < 0) {
		snprintf(err, errlen, "conflict_resolver '%s': not /PATH/LIB.so:SYMBOL", spec);
		return -1;
	}
	dlerror();
	void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!dl) {
		const char *why = dlerror();
		snprintf(err, errlen, "conflict_resolver: cannot load %s: %s", path,
			 why ? why : "unknown error");
		return -1;
	}
	dlerror();
	void *sym = dlsym(dl, symbol);
	const char *why = dlerror();
	if (why || !sym) {
		snprintf(err, errlen, "conflict_resolver: no function %s in %s: %s", symbol, path,
			 why ? why : "it is NULL");
		dlclose(dl);
		return -1;
	}
	out->dl = dl;
	/* POSIX: a function pointer round-trips through dlsym's void *. */
	memcpy(&out->fn, &sym, sizeof(out->fn));
	return 0;
}

void resolver_unload(struct resolver *r)
{
	if (r->dl)
		dlclose(r->dl);
	r->dl = NULL;
	r->fn = NULL;
}
