/* SPDX-License-Identifier: MIT */
/* Reachability bitmaps over a shard's blocks, shared by repair.c and check.c. */
#ifndef SHMG_SCAN_H
#define SHMG_SCAN_H

#include "internal.h"

#define SCAN_BLOCKS_PER_PAGE (PAGE_SIZE / 64u) /* smallest class is 64 bytes */

struct scan {
	uint32_t shard;
	uint64_t nbits;
	uint64_t *live;      /* reachable from the table or a group list */
	uint64_t *listed;    /* on a group list */
	uint64_t *indexed;   /* referenced by an index slot */
	uint64_t *retired;   /* queued in limbo */
	uint8_t *extent_keep; /* per page: part of the current table or a queued one */
};

int scan_init(shmg_t *h, uint32_t shard, struct scan *sc);
void scan_free(struct scan *sc);
bool scan_test(const uint64_t *bm, uint64_t i);
int64_t scan_block(shmg_t *h, const struct scan *sc, ref_t ref, bool check_entry);
uint32_t scan_table_page(const shmg_t *h, uint32_t shard);
void repair_recount(shmg_t *h, uint32_t shard);

#endif
