/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the replication datagram decoder: every layer
 * (header, handshake bodies, frames, records) of arbitrary bytes.  The
 * decoder must refuse or accept, never read out of bounds.  Built by
 * scripts/fuzz-wire.sh with clang; tests/fuzz/test_corpus.c runs the corpus
 * through the same function in the normal build.
 */
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	(void)wire_decode_all(data, size);
	return 0;
}
