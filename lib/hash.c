/* SPDX-License-Identifier: MIT */
/*
 * The one hash function of the arena.  Every host must compute the same value
 * for the same (cluster, key) because the shard of an entry is part of the
 * replication contract; so bytes are read little-endian whatever the CPU, and
 * the function is identified by HASH_ID in the arena header.  It is a
 * multiply-fold construction: 16 bytes per step, each step a 64x64->128 bit
 * multiply whose halves are folded together.
 */
#include <string.h>

#include "internal.h"

static const uint64_t K[4] = {
	0xa0761d6478bd642full, 0xe7037ed1a0b428dbull,
	0x8ebc6af09c88c6e3ull, 0x589965cc75374cc3ull,
};

uint64_t sg_mix(uint64_t a, uint64_t b)
{
	__uint128_t r = (__uint128_t)a * b;
	return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t read64le(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

static inline uint64_t read_tail(const uint8_t *p, size_t n)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

uint64_t sg_hash(const void *data, size_t len, uint64_t seed)
{
	const uint8_t *p = data;
	uint64_t h = seed ^ sg_mix(len ^ K[0], K[1]);
	size_t n = len;

	while (n >= 16) {
		h = sg_mix(read64le(p) ^ K[1] ^ h, read64le(p + 8) ^ K[2]);
		p += 16;
		n -= 16;
	}
	if (n >= 8) {
		h = sg_mix(read64le(p) ^ K[2] ^ h, K[3]);
		p += 8;
		n -= 8;
	}
	if (n)
		h = sg_mix(read_tail(p, n) ^ K[3] ^ h, K[0] ^ n);
	return sg_mix(h ^ K[0], h ^ K[2]) ^ h;
}
