/* SPDX-License-Identifier: MIT */
/* Reachability bitmaps over a shard's blocks, shared by repair.c and check.c. */
#ifndef SHMG_SCAN_H
#define SHMG_SCAN_H

#include "internal.h"

/* Bits per page: the most blocks a page of the smallest class holds, rounded
 * up to whole bitmap words. */
#define SCAN_BLOCKS_PER_PAGE ((PAGE_SIZE / CLASS_MIN_BYTES + 63u) / 64u * 64u)

struct scan {
	uint32_t shard;
	uint64_t nbits;
	uint64_t *live;      /* reachable from the table or a group list */
	uint64_t *listed;    /* on a group list */
	uint64_t *indexed;   /* referenced by an index slot */
	uint64_t *retired;   /* queued in limbo */
	uint64_t *tree;      /* on a prefix node's list of children */
	uint8_t *extent_keep; /* per page: part of the current table or a queued one */
};

int scan_init(shmg_t *h, uint32_t shard, struct scan *sc);
void scan_free(struct scan *sc);
bool scan_test(const uint64_t *bm, uint64_t i);
/* Block index of ref within the bitmaps, or -1 if ref is not one of the
 * shard's blocks. */
int64_t scan_block(shmg_t *h, const struct scan *sc, ref_t ref);
/* The entry at ref, or NULL if ref is not one of the shard's blocks or does
 * not hold a sane entry.  *hd gets its header, copied once (entry_read) and
 * checked: a known kind, lengths within the arena's limits, a size within
 * the block's class.  Callers take every length, kind and link from *hd
 * (links_of), which keeps their reads and writes inside the block however
 * the block changes meanwhile.  *b (if not NULL) gets the block index. */
struct entry *scan_entry(shmg_t *h, const struct scan *sc, ref_t ref, struct entry *hd,
			 int64_t *b);
uint32_t scan_table_page(const shmg_t *h, uint32_t shard);

#endif
