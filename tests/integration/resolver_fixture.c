/* SPDX-License-Identifier: MIT */
/* A conflict resolver for the agent's tests to load (conflict_resolver):
 * the claim with the smaller metadata wins, then the first. */
#include <stddef.h>

#include "shmgroup.h"
#include "store.h"

int fixture_resolve(const struct shmg_claim *a, const struct shmg_claim *b);

int fixture_resolve(const struct shmg_claim *a, const struct shmg_claim *b)
{
	return b->meta_len < a->meta_len ? 1 : 0;
}
