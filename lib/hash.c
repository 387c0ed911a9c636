/* SPDX-License-Identifier: MIT */
/*
 * The one hash function of the arena.  Every host must compute the same value
 * for the same (cluster, key) because the shard of an entry is part of the
 * replication contract; so bytes are read little-endian whatever the CPU, and
 * the function is identified by HASH_ID in the arena header (and nodes that
 * replicate to each other must run the same one: a key's shard travels in
 * the change streams).  It is a multiply-fold construction in the manner of
 * wyhash: each step a 64x64->128 bit multiply whose halves are folded
 * together.  Keys longer than 16 bytes take one step per 16 bytes but the
 * last 16, which, like the whole of a shorter key, are read as two words
 * (overlapping when the key is shorter than 16 bytes); then one step mixes
 * those two words with the state, and one mixes in the length.  A 17..32-byte
 * key, the common case, costs three multiplies and no loop back.
 */
#include "internal.h"

/* The body is sg_hash_inline in internal.h, inlined into the lookups. */
uint64_t sg_hash(const void *data, size_t len, uint64_t seed)
{
	return sg_hash_inline(data, len, seed);
}
