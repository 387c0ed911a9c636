/* SPDX-License-Identifier: MIT */
/*
 * The one hash function of the arena.  Every host must compute the same value
 * for the same (cluster, key) because the shard of an entry is part of the
 * replication contract; so bytes are read little-endian whatever the CPU, and
 * the function is identified by HASH_ID in the arena header.  It is a
 * multiply-fold construction: 16 bytes per step, each step a 64x64->128 bit
 * multiply whose halves are folded together; the last 1..7 bytes are read as
 * one little-endian word, zero-extended.
 */
#include "internal.h"

/* The body is sg_hash_inline in internal.h, inlined into the lookups. */
uint64_t sg_hash(const void *data, size_t len, uint64_t seed)
{
	return sg_hash_inline(data, len, seed);
}
