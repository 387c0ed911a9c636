/* SPDX-License-Identifier: MIT */
/*
 * Event helpers shared by the lifecycle tests.
 *
 * A struct shmg_event points into the handle's receive buffer and is valid
 * only until the next shmg_receive(); tests copy what they look at into a
 * struct tc_ev (metadata truncated to TC_EV_DATA bytes, true lengths kept).
 *
 * The receive helpers assert in the calling process: use them in the test
 * process only, never in a forked child.
 */
#ifndef SHMG_TC_EVENTS_H
#define SHMG_TC_EVENTS_H

#include "tc.h"

#define TC_EV_DATA 128

struct tc_ev {
	enum shmg_event_type type;
	enum shmg_reason reason;
	shmg_id_t id;
	pid_t pid;
	int has_cluster;
	char cluster[SHMG_CLUSTER_NAME_MAX + 1];
	char key[TC_EV_DATA + 1]; /* NUL-terminated copy (keys in tests have no NUL) */
	size_t key_len;
	unsigned char meta[TC_EV_DATA];
	size_t meta_len;
	int meta_null;
	unsigned char prev[TC_EV_DATA];
	size_t prev_len;
	int has_previous;
	int prev_null;
	uint64_t dropped;
	uint32_t batch;
	int batch_end;
};

/* Copies one received event. */
void tc_ev_copy(struct tc_ev *dst, const struct shmg_event *src);

/* Receives with timeout 0 until the mailbox is empty (at most cap events;
 * asserts it does not hold more).  Returns how many were copied to out. */
int tc_ev_drain(shmg_t *h, struct tc_ev *out, int cap);

/* Receives until n events were copied or timeout_ms passed in all.
 * Returns how many were copied (n unless it timed out). */
int tc_ev_recv_n(shmg_t *h, struct tc_ev *out, int n, int timeout_ms);

/* Asserts the mailbox holds nothing now. */
void tc_ev_expect_empty(shmg_t *h, const char *what);

/* Asserts the fields of an entry event.  cluster NULL = default cluster.
 * prev NULL with prev_len 0 means "no previous_meta" (has_previous 0). */
void tc_ev_expect(const struct tc_ev *e, enum shmg_event_type type, enum shmg_reason reason,
		  shmg_id_t id, const char *cluster, const char *key, const void *meta,
		  size_t meta_len);
void tc_ev_expect_prev(const struct tc_ev *e, const void *prev, size_t prev_len);

/* Asserts that e is a whole batch of one (batch_end set). */
void tc_ev_expect_single(const struct tc_ev *e);

/* Asserts that ev[0..n) form exactly one batch: one batch number, batch_end
 * only on the last. */
void tc_ev_expect_one_batch(const struct tc_ev *ev, int n);

/* Short names for messages. */

#endif
