/* SPDX-License-Identifier: MIT */
/* Event helpers: see tc_events.h. */
#include "tc_events.h"

#include <stdio.h>
#include <string.h>

static size_t min_sz(size_t a, size_t b)
{
	return a < b ? a : b;
}

void tc_ev_copy(struct tc_ev *dst, const struct shmg_event *src)
{
	memset(dst, 0, sizeof(*dst));
	dst->type = src->type;
	dst->reason = src->reason;
	dst->id = src->id;
	dst->pid = src->pid;
	if (src->cluster) {
		dst->has_cluster = 1;
		snprintf(dst->cluster, sizeof(dst->cluster), "%s", src->cluster);
	}
	dst->key_len = src->key_len;
	if (src->key)
		memcpy(dst->key, src->key, min_sz(src->key_len, TC_EV_DATA));
	dst->meta_len = src->meta_len;
	dst->meta_null = src->meta == NULL;
	if (src->meta)
		memcpy(dst->meta, src->meta, min_sz(src->meta_len, TC_EV_DATA));
	dst->has_previous = src->has_previous;
	dst->prev_len = src->previous_meta_len;
	dst->prev_null = src->previous_meta == NULL;
	if (src->previous_meta)
		memcpy(dst->prev, src->previous_meta, min_sz(src->previous_meta_len, TC_EV_DATA));
	dst->dropped = src->dropped;
	dst->batch = src->batch;
	dst->batch_end = src->batch_end;
}

int tc_ev_drain(shmg_t *h, struct tc_ev *out, int cap)
{
	struct shmg_event ev[16];
	int got = 0;

	for (;;) {
		int n = shmg_receive(h, ev, 16, 0);

		ck_assert_msg(n >= 0, "shmg_receive = %d (%s)", n, shmg_strerror(n));
		if (n == 0)
			return got;
		ck_assert_msg(got + n <= cap, "more than %d events waiting", cap);
		for (int i = 0; i < n; i++)
			tc_ev_copy(&out[got++], &ev[i]);
	}
}

int tc_ev_recv_n(shmg_t *h, struct tc_ev *out, int n, int timeout_ms)
{
	uint64_t deadline = tc_now_ms() + (uint64_t)timeout_ms;
	struct shmg_event ev[16];
	int got = 0;

	while (got < n) {
		uint64_t now = tc_now_ms();

		if (now >= deadline)
			break;
		size_t want = (size_t)(n - got) < 16 ? (size_t)(n - got) : 16;
		int r = shmg_receive(h, ev, want, (int)(deadline - now));

		ck_assert_msg(r >= 0, "shmg_receive = %d (%s)", r, shmg_strerror(r));
		for (int i = 0; i < r; i++)
			tc_ev_copy(&out[got++], &ev[i]);
	}
	return got;
}

void tc_ev_expect_empty(shmg_t *h, const char *what)
{
	struct shmg_event ev[4];
	int n = shmg_receive(h, ev, 4, 0);

	ck_assert_msg(n == 0, "%s: expected no event, shmg_receive = %d (first: %s on '%.*s')",
		      what, n, n > 0 ? shmg_event_type_name(ev[0].type) : "-",
		      n > 0 ? (int)ev[0].key_len : 0, n > 0 ? ev[0].key : "");
}

void tc_ev_expect(const struct tc_ev *e, enum shmg_event_type type, enum shmg_reason reason,
		  shmg_id_t id, const char *cluster, const char *key, const void *meta,
		  size_t meta_len)
{
	ck_assert_msg(e->type == type, "event type %s, expected %s (key '%s')",
		      shmg_event_type_name(e->type), shmg_event_type_name(type), e->key);
	ck_assert_msg(e->reason == reason, "%s '%s': reason %d, expected %d",
		      shmg_event_type_name(e->type), e->key, (int)e->reason, (int)reason);
	ck_assert_msg(shmg_id_equal(e->id, id), "%s '%s': id n%u.%u.%u, expected n%u.%u.%u",
		      shmg_event_type_name(e->type), e->key, e->id.node, e->id.slot, e->id.gen,
		      id.node, id.slot, id.gen);
	if (cluster) {
		ck_assert_msg(e->has_cluster, "%s '%s': cluster NULL, expected %s",
			      shmg_event_type_name(e->type), e->key, cluster);
		ck_assert_str_eq(e->cluster, cluster);
	} else {
		ck_assert_msg(!e->has_cluster, "%s '%s': cluster %s, expected NULL",
			      shmg_event_type_name(e->type), e->key, e->cluster);
	}
	ck_assert_uint_eq(e->key_len, strlen(key));
	ck_assert_str_eq(e->key, key);
	ck_assert_msg(e->meta_len == meta_len, "%s '%s': meta_len %zu, expected %zu",
		      shmg_event_type_name(e->type), e->key, e->meta_len, meta_len);
	if (meta_len)
		ck_assert_mem_eq(e->meta, meta, min_sz(meta_len, TC_EV_DATA));
}

void tc_ev_expect_prev(const struct tc_ev *e, const void *prev, size_t prev_len)
{
	if (!prev) {
		ck_assert_msg(!e->has_previous, "%s '%s': has_previous set on a new entry",
			      shmg_event_type_name(e->type), e->key);
		ck_assert_msg(e->prev_null, "%s '%s': previous_meta not NULL on a new entry",
			      shmg_event_type_name(e->type), e->key);
		return;
	}
	ck_assert_msg(e->has_previous, "%s '%s': no previous_meta on an update",
		      shmg_event_type_name(e->type), e->key);
	ck_assert_msg(!e->prev_null || prev_len == 0, "previous_meta NULL");
	ck_assert_uint_eq(e->prev_len, prev_len);
	if (prev_len)
		ck_assert_mem_eq(e->prev, prev, min_sz(prev_len, TC_EV_DATA));
}

void tc_ev_expect_single(const struct tc_ev *e)
{
	ck_assert_msg(e->batch_end == 1, "%s '%s': a single operation must be a batch of one",
		      shmg_event_type_name(e->type), e->key);
}

void tc_ev_expect_one_batch(const struct tc_ev *ev, int n)
{
	ck_assert_int_gt(n, 0);
	for (int i = 0; i < n; i++) {
		ck_assert_msg(ev[i].batch == ev[0].batch,
			      "event %d (%s '%s') is in batch %u, event 0 in batch %u", i,
			      shmg_event_type_name(ev[i].type), ev[i].key, ev[i].batch, ev[0].batch);
		ck_assert_msg(ev[i].batch_end == (i == n - 1),
			      "event %d of %d (%s '%s'): batch_end = %d", i, n,
			      shmg_event_type_name(ev[i].type), ev[i].key, ev[i].batch_end);
	}
}
