/* SPDX-License-Identifier: MIT */
/*
 * Lifecycle stress: many iterations of forked workers doing random
 * register/unregister/join/leave/dispatch/monitor/demonitor/receive on a
 * small key space in two clusters; some close normally, the others are
 * SIGKILLed at random moments.  A monitor process watches every key of both
 * clusters, a reaper process hosts the in-process reaper.
 *
 * At the end: shmg_check clean, no entries left, pages_used back to the
 * baseline, and from the monitor's log: every death reported exactly once
 * (a killed worker that held entries appears in exactly one batch of exit
 * events, holding all its entries, unregistered before left), no exit event
 * for a worker that closed, no interleaved batch, no event inconsistent with
 * the ones before it, no overflow.  The one repeat allowed is the documented
 * one (docs/ARCHITECTURE.md section 8): a writer killed between appending an
 * event to a monitor's mailbox and recording that progress has the repair
 * deliver it to that monitor again, so a worker that was killed may show
 * one repeated event: a registered or joined event without `previous` for
 * what it holds, or an unregistered or left event for what it no longer holds.
 *
 * A second test SIGKILLs dispatchers at random while consumers sleep on
 * shmg_fd and in shmg_receive, and checks that no wakeup is lost (see there).
 *
 * Size: SHMG_STRESS_ITERS iterations (default 500) of SHMG_STRESS_WORKERS
 * workers (default 4), and SHMG_STRESS_DISPATCH_KILLS killed dispatchers
 * (default 2000); the defaults run in well under 30 s on 2 cores.
 * Random sleeps (microseconds) only place the kills; nothing here sleeps
 * to wait for something.
 */
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tc.h"

#define NREG 6
#define NGRP 4
#define NCL 2 /* default cluster and "sc" */
#define MAX_SLOTS 48

static const char *const cluster_names[NCL] = { NULL, "sc" };

enum viol {
	V_OVERFLOW,
	V_UNKNOWN_ID,
	V_INTERLEAVED,
	V_MIXED_DEATH_BATCH,
	V_DEATH_ORDER,
	V_EXIT_OF_CLOSED,
	V_EXIT_BATCHES,
	V_EVENT_AFTER_DEATH,
	V_INCONSISTENT,
	V_ENTRIES_LEFT,
	V_RECEIVE_ERROR,
	V_OPEN_FAILED,
	V_WORKER_ERROR,
	V_WORKER_HUNG,
	NVIOL
};
static const char *const viol_names[NVIOL] = {
	"overflow",	       "event of an unknown endpoint", "interleaved batches",
	"death batch with other events", "left before unregistered in a death batch",
	"exit event for a worker that closed", "death reported in more than one batch",
	"event after the death batch", "event inconsistent with earlier ones",
	"entries never removed",   "receive error", "a worker's shmg_open failed",
	"a worker's call failed", "a worker hung (killed after 10 s)",
};

struct worker_rec {
	shmg_id_t id;
	int32_t pid;
	uint8_t opened;
	uint8_t to_kill;
	int32_t open_rc;
};

struct shared {
	uint32_t nworkers;
	shmg_id_t parent_id;
	int stop_reaper;
	int end_posted;
	int mon_done;
	long reaper_rc;
	long mon_rc;
	long events, exit_events, death_batches, killed_with_entries, redelivered;
	long viol[NVIOL];
	char first[NVIOL][200];
	struct worker_rec w[];
};

static struct shared *sh;
static int ready_pipe[2];
static unsigned iters = 500, nworkers = 4, kills = 2000;

static unsigned env_uint(const char *name, unsigned def)
{
	const char *v = getenv(name);
	char *end;
	unsigned long n;

	if (!v || !*v)
		return def;
	n = strtoul(v, &end, 10);
	return *end || n == 0 || n > 100000 ? def : (unsigned)n;
}

static void usleep_us(long us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };

	nanosleep(&ts, NULL);
}

static uint32_t xrand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return (uint32_t)(*s >> 11);
}

static void key_reg(char *k, int i)
{
	snprintf(k, 8, "s/a%d", i);
}

static void key_grp(char *k, int i)
{
	snprintf(k, 8, "s/g%d", i);
}

/* ---- workers ----------------------------------------------------------- */

static int worker_main(void *arg)
{
	uint32_t wi = (uint32_t)(uintptr_t)arg;
	struct worker_rec *me = &sh->w[wi];
	uint64_t rnd = 0x9e3779b97f4a7c15ull ^ ((uint64_t)wi * 0x100000001b3ull) ^ (uint64_t)getpid();
	shmg_t *h = NULL;
	struct shmg_event ev[32];
	char k[8];
	long rc;

	if ((me->open_rc = shmg_open(tc_arena, NULL, &h)) != 0)
		return 10;
	me->id = shmg_self(h);
	__atomic_store_n(&me->opened, 1, __ATOMIC_RELEASE);
	uint32_t ops = me->to_kill ? UINT32_MAX : 20 + xrand(&rnd) % 200;
	for (uint32_t i = 0; i < ops; i++) {
		uint32_t r = xrand(&rnd);
		struct shmg_opts o = { .cluster = cluster_names[(r >> 28) % 4 == 0] };
		uint32_t meta = xrand(&rnd);
		int kr = (int)((r >> 8) % NREG), kg = (int)((r >> 8) % NGRP);

		switch (r % 10) {
		case 0:
		case 1:
			key_reg(k, kr);
			rc = shmg_register(h, SHMG_KEY(k), &meta, sizeof(meta), &o);
			if (rc != 0 && rc != -EEXIST)
				return 20;
			break;
		case 2:
			key_reg(k, kr);
			rc = shmg_unregister(h, SHMG_KEY(k), &o);
			if (rc != 0 && rc != -ENOENT && rc != -EPERM)
				return 21;
			break;
		case 3:
		case 4:
			key_grp(k, kg);
			if (shmg_join(h, SHMG_KEY(k), &meta, sizeof(meta), &o) != 0)
				return 22;
			break;
		case 5:
			key_grp(k, kg);
			rc = shmg_leave(h, SHMG_KEY(k), &o);
			if (rc != 0 && rc != -ENOENT)
				return 23;
			break;
		case 6:
			key_grp(k, kg);
			if (shmg_dispatch(h, SHMG_KEY(k), &meta, sizeof(meta), &o) < 0)
				return 24;
			break;
		case 7:
			key_reg(k, kr);
			if ((r >> 20) % 3 == 0)
				rc = shmg_monitor(h, NULL, 0, &o);
			else if ((r >> 20) % 3 == 1)
				rc = shmg_monitor(h, SHMG_KEY("s/"), &o);
			else
				rc = shmg_monitor(h, SHMG_KEY(k), &o);
			if (rc != 0)
				return 25;
			break;
		case 8:
			key_reg(k, kr);
			if ((r >> 20) % 2 == 0)
				rc = shmg_demonitor(h, NULL, 0, &o);
			else
				rc = shmg_demonitor(h, SHMG_KEY(k), &o);
			if (rc != 0)
				return 26;
			break;
		default:
			while ((rc = shmg_receive(h, ev, 32, 0)) > 0)
				;
			if (rc < 0)
				return 27;
			break;
		}
	}
	return shmg_close(h) == 0 ? 0 : 30;
}

/* ---- the reaper process ------------------------------------------------ */

static int reaper_main(void *arg)
{
	shmg_t *h = NULL;
	long rc;

	(void)arg;
	if ((rc = shmg_open(tc_arena, NULL, &h)) != 0 || (rc = shmg_reaper_enable(h)) != 1) {
		sh->reaper_rc = rc == 0 ? -EALREADY : rc;
		(void)!write(ready_pipe[1], "e", 1);
		return 1;
	}
	(void)!write(ready_pipe[1], "r", 1);
	while (!__atomic_load_n(&sh->stop_reaper, __ATOMIC_ACQUIRE)) {
		int t = shmg_reaper_dispatch(h);

		if (t < 0) {
			sh->reaper_rc = t;
			return 2;
		}
		struct pollfd p = { .fd = shmg_reaper_fd(h), .events = POLLIN };
		(void)poll(&p, 1, t < 50 ? t : 50);
	}
	return shmg_close(h) == 0 ? 0 : 3;
}

/* ---- the monitor process ----------------------------------------------- */

struct wstate {
	uint32_t regs;   /* bit cl * NREG + k: holds the registration */
	uint32_t groups; /* bit cl * NGRP + k: is a member */
	uint32_t exit_batches;
	uint32_t exit_batch;
	uint8_t dead; /* its death batch ended */
	uint8_t redelivered; /* its one allowed repeat (see the top) was seen */
};

struct mon {
	shmg_t *h;
	struct wstate *ws;
	int32_t slot_w[MAX_SLOTS]; /* endpoint slot -> worker index + 1 */
	uint32_t slot_gen[MAX_SLOTS];
	uint32_t searched;
	/* the batch being read */
	int in_batch;
	uint32_t batch;
	int batch_worker, batch_exit, batch_seen_left, batch_other;
	int end_seen;
};

static void viol(enum viol v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void viol(enum viol v, const char *fmt, ...)
{
	va_list ap;

	if (sh->viol[v]++ == 0) {
		va_start(ap, fmt);
		vsnprintf(sh->first[v], sizeof(sh->first[v]), fmt, ap);
		va_end(ap);
	}
}

static int worker_of(struct mon *m, shmg_id_t id)
{
	if (id.slot < MAX_SLOTS && m->slot_w[id.slot] && m->slot_gen[id.slot] == id.gen)
		return m->slot_w[id.slot] - 1;
	uint32_t n = __atomic_load_n(&sh->nworkers, __ATOMIC_ACQUIRE);
	for (uint32_t i = n; i-- > 0;) {
		if (!__atomic_load_n(&sh->w[i].opened, __ATOMIC_ACQUIRE))
			continue;
		if (shmg_id_equal(sh->w[i].id, id)) {
			if (id.slot < MAX_SLOTS) {
				m->slot_w[id.slot] = (int32_t)i + 1;
				m->slot_gen[id.slot] = id.gen;
			}
			return (int)i;
		}
	}
	return -1;
}

static int key_index(const struct shmg_event *e, char kind)
{
	if (e->key_len != 4 || e->key[0] != 's' || e->key[1] != '/' || e->key[2] != kind)
		return -1;
	int k = e->key[3] - '0';
	return k >= 0 && k < (kind == 'a' ? NREG : NGRP) ? k : -1;
}

static void end_batch(struct mon *m)
{
	if (m->in_batch && m->batch_exit) {
		sh->death_batches++;
		if (m->batch_other)
			viol(V_MIXED_DEATH_BATCH, "batch %u", m->batch);
		if (m->batch_worker >= 0) {
			struct wstate *s = &m->ws[m->batch_worker];
			s->dead = 1;
			if (s->regs || s->groups)
				viol(V_ENTRIES_LEFT,
				     "worker %d: death batch %u left regs %#x groups %#x",
				     m->batch_worker, m->batch, s->regs, s->groups);
		}
	}
	m->in_batch = 0;
}

/* The one repeat a killed worker's event may have (see the top): an added
 * event without `previous` for what the worker already holds, or a removal
 * event for what it no longer holds. */
static bool redelivery(struct wstate *s, int w, const struct shmg_event *e, bool held)
{
	bool added = e->type == SHMG_EV_REGISTERED || e->type == SHMG_EV_JOINED;
	if (held != added || (added && e->has_previous) || !sh->w[w].to_kill || s->redelivered)
		return false;
	s->redelivered = 1;
	sh->redelivered++;
	return true;
}

static void mon_event(struct mon *m, const struct shmg_event *e)
{
	sh->events++;
	if (e->type == SHMG_EV_OVERFLOW) {
		viol(V_OVERFLOW, "%llu dropped", (unsigned long long)e->dropped);
		return;
	}
	if (e->type == SHMG_EV_REGISTERED && shmg_id_equal(e->id, sh->parent_id) &&
	    e->key_len == 3 && memcmp(e->key, "end", 3) == 0) {
		m->end_seen = 1;
		return;
	}
	/* Batches never interleave. */
	if (m->in_batch && e->batch != m->batch) {
		viol(V_INTERLEAVED, "batch %u interrupted by batch %u", m->batch, e->batch);
		end_batch(m);
	}
	int w = worker_of(m, e->id);
	if (!m->in_batch) {
		m->in_batch = 1;
		m->batch = e->batch;
		m->batch_worker = w;
		m->batch_exit = e->reason == SHMG_REASON_EXIT;
		m->batch_seen_left = 0;
		m->batch_other = 0;
		if (m->batch_exit && w >= 0) {
			struct wstate *s = &m->ws[w];
			if (++s->exit_batches == 2)
				viol(V_EXIT_BATCHES, "worker %d (pid %d): exit batches %u and %u", w,
				     sh->w[w].pid, s->exit_batch, e->batch);
			s->exit_batch = e->batch;
			if (!sh->w[w].to_kill)
				viol(V_EXIT_OF_CLOSED, "worker %d", w);
		}
	} else if (m->batch_exit &&
		   (w != m->batch_worker || e->reason != SHMG_REASON_EXIT)) {
		m->batch_other = 1;
	}
	if (e->reason == SHMG_REASON_EXIT) {
		sh->exit_events++;
		if (e->type == SHMG_EV_LEFT)
			m->batch_seen_left = 1;
		else if (m->batch_seen_left)
			viol(V_DEATH_ORDER, "batch %u", e->batch);
	}
	if (w < 0) {
		viol(V_UNKNOWN_ID, "n%u.%u.%u %.*s", e->id.node, e->id.slot, e->id.gen,
		     (int)e->key_len, e->key);
	} else {
		struct wstate *s = &m->ws[w];
		int cl = e->cluster != NULL;
		int kr = key_index(e, 'a'), kg = key_index(e, 'g');

		if (s->dead)
			viol(V_EVENT_AFTER_DEATH, "worker %d", w);
		switch (e->type) {
		case SHMG_EV_REGISTERED:
			if (kr >= 0 && redelivery(s, w, e, s->regs & (1u << (cl * NREG + kr))))
				break;
			if (kr < 0 || (!!(s->regs & (1u << (cl * NREG + kr))) != e->has_previous))
				viol(V_INCONSISTENT, "worker %d: registered %.*s (previous %d)", w,
				     (int)e->key_len, e->key, e->has_previous);
			else
				s->regs |= 1u << (cl * NREG + kr);
			break;
		case SHMG_EV_UNREGISTERED:
			if (kr >= 0 && redelivery(s, w, e, s->regs & (1u << (cl * NREG + kr))))
				break;
			if (kr < 0 || !(s->regs & (1u << (cl * NREG + kr))))
				viol(V_INCONSISTENT, "worker %d: unregistered %.*s not held", w,
				     (int)e->key_len, e->key);
			else
				s->regs &= ~(1u << (cl * NREG + kr));
			break;
		case SHMG_EV_JOINED:
			if (kg >= 0 && redelivery(s, w, e, s->groups & (1u << (cl * NGRP + kg))))
				break;
			if (kg < 0 || (!!(s->groups & (1u << (cl * NGRP + kg))) != e->has_previous))
				viol(V_INCONSISTENT, "worker %d: joined %.*s (previous %d)", w,
				     (int)e->key_len, e->key, e->has_previous);
			else
				s->groups |= 1u << (cl * NGRP + kg);
			break;
		case SHMG_EV_LEFT:
			if (kg >= 0 && redelivery(s, w, e, s->groups & (1u << (cl * NGRP + kg))))
				break;
			if (kg < 0 || !(s->groups & (1u << (cl * NGRP + kg))))
				viol(V_INCONSISTENT, "worker %d: left %.*s not a member", w,
				     (int)e->key_len, e->key);
			else
				s->groups &= ~(1u << (cl * NGRP + kg));
			break;
		default:
			viol(V_INCONSISTENT, "worker %d: event type %d", w, (int)e->type);
		}
	}
	if (e->batch_end)
		end_batch(m);
}

static int monitor_main(void *arg)
{
	struct mon m;
	struct shmg_event ev[256];
	struct shmg_opts sc = { .cluster = "sc" };
	long rc;

	(void)arg;
	memset(&m, 0, sizeof(m));
	m.ws = calloc((size_t)iters * nworkers, sizeof(*m.ws));
	if (!m.ws || (rc = shmg_open(tc_arena, NULL, &m.h)) != 0 ||
	    (rc = shmg_monitor(m.h, NULL, 0, NULL)) != 0 ||
	    (rc = shmg_monitor(m.h, NULL, 0, &sc)) != 0) {
		sh->mon_rc = m.ws ? rc : -ENOMEM;
		(void)!write(ready_pipe[1], "e", 1);
		return 1;
	}
	(void)!write(ready_pipe[1], "r", 1);
	while (!m.end_seen) {
		int n = shmg_receive(m.h, ev, 256, 200);

		/* Empty after the parent posted its marker: everything before it
		 * was received (the marker itself can only be missing if it was
		 * dropped, which is reported as an overflow). */
		if (n == 0 && __atomic_load_n(&sh->end_posted, __ATOMIC_ACQUIRE))
			break;
		if (n < 0 && n != -EINTR) {
			viol(V_RECEIVE_ERROR, "%d", n);
			break;
		}
		for (int i = 0; i < n; i++)
			mon_event(&m, &ev[i]);
	}
	if (m.in_batch)
		viol(V_INTERLEAVED, "batch %u never ended", m.batch);
	/* Deaths: a killed worker that held entries was reported in one
	 * batch (counted above); nobody holds anything any more. */
	for (uint32_t w = 0; w < sh->nworkers; w++) {
		struct wstate *s = &m.ws[w];

		if (sh->w[w].to_kill && s->exit_batches)
			sh->killed_with_entries++;
		if (s->regs || s->groups)
			viol(V_ENTRIES_LEFT, "worker %u (%s): regs %#x groups %#x", w,
			     sh->w[w].to_kill ? "killed" : "closed", s->regs, s->groups);
	}
	sh->mon_rc = shmg_close(m.h);
	__atomic_store_n(&sh->mon_done, 1, __ATOMIC_RELEASE);
	return 0;
}

/* ---- the test ---------------------------------------------------------- */

/* Touches every key, group and monitor pattern of both clusters and undoes
 * it: afterwards each shard the stress can use holds the slab page it keeps
 * for the one size class all these entries fall in (56-byte header + key +
 * 4-byte meta <= 64 bytes), so pages_used is comparable before and after. */
static void warm_up(shmg_t *h)
{
	char k[8];
	uint32_t meta = 0;

	for (int c = 0; c < NCL; c++) {
		struct shmg_opts o = { .cluster = cluster_names[c] };

		for (int i = 0; i < NREG; i++) {
			key_reg(k, i);
			TC_EQ(shmg_register(h, SHMG_KEY(k), &meta, sizeof(meta), &o), 0);
			TC_EQ(shmg_monitor(h, SHMG_KEY(k), &o), 0);
		}
		for (int i = 0; i < NGRP; i++) {
			key_grp(k, i);
			TC_EQ(shmg_join(h, SHMG_KEY(k), &meta, sizeof(meta), &o), 0);
		}
		TC_EQ(shmg_register(h, SHMG_KEY("end"), NULL, 0, &o), 0);
		TC_EQ(shmg_monitor(h, NULL, 0, &o), 0);
		TC_EQ(shmg_monitor(h, SHMG_KEY("s/"), &o), 0);
	}
	for (int c = 0; c < NCL; c++) {
		struct shmg_opts o = { .cluster = cluster_names[c] };

		for (int i = 0; i < NREG; i++) {
			key_reg(k, i);
			TC_EQ(shmg_unregister(h, SHMG_KEY(k), &o), 0);
			TC_EQ(shmg_demonitor(h, SHMG_KEY(k), &o), 0);
		}
		for (int i = 0; i < NGRP; i++) {
			key_grp(k, i);
			TC_EQ(shmg_leave(h, SHMG_KEY(k), &o), 0);
		}
		TC_EQ(shmg_unregister(h, SHMG_KEY("end"), &o), 0);
		TC_EQ(shmg_demonitor(h, NULL, 0, &o), 0);
		TC_EQ(shmg_demonitor(h, SHMG_KEY("s/"), &o), 0);
	}
}

static shmg_t *ph;
static uint32_t live_target;

static bool all_reaped(void *arg)
{
	struct shmg_info in;

	(void)arg;
	return shmg_info(ph, &in) == 0 && in.endpoints_live == live_target;
}

static bool all_reaped_but_consumers(void *arg)
{
	live_target = 4; /* this process, the reaper, two consumers */
	return all_reaped(arg);
}

static void assert_empty(shmg_t *h)
{
	for (int c = 0; c < NCL; c++) {
		struct shmg_opts o = { .cluster = cluster_names[c] };

		TC_EQ(shmg_registry_count(h, &o), 0);
		TC_EQ(shmg_local_registry_count(h, &o), 0);
		TC_EQ(shmg_member_count(h, SHMG_KEY("s/"), &o), 0);
		TC_EQ(shmg_local_member_count(h, SHMG_KEY("s/"), &o), 0);
	}
	long n = 0;
	TC_EQ(shmg_entries(h, 1, tc_count_cb, &n), 0);
}

START_TEST(test_stress_kill_random)
{
	struct shmg_config c = { 0 };
	struct shmg_info base, in;
	uint64_t rnd = 0x2545f4914f6cdd1dull ^ (uint64_t)getpid();
	char b;

	c.max_endpoints = MAX_SLOTS;
	c.mailbox_bytes = 16u << 20; /* the largest: the monitor must not fall behind */
	c.arena_size = 1ull << 30; /* sparse: untouched pages cost nothing */
	ph = tc_open(tc_arena, &c);
	TC_EQ(shmg_connect(ph, "sc", NULL), 0);
	warm_up(ph);
	TC_EQ(shmg_info(ph, &base), 0);
	TC_ASSERT_CLEAN(ph);

	sh = tc_shared_alloc(sizeof(*sh) + (size_t)iters * nworkers * sizeof(struct worker_rec));
	sh->parent_id = shmg_self(ph);
	ck_assert_int_eq(pipe(ready_pipe), 0);
	pid_t mon = tc_fork(monitor_main, NULL);
	TC_EQ(tc_read_full(ready_pipe[0], &b, 1, 20000), 0);
	ck_assert_msg(b == 'r', "monitor: %ld (%s)", sh->mon_rc, shmg_strerror((int)sh->mon_rc));
	pid_t reaper = tc_fork(reaper_main, NULL);
	TC_EQ(tc_read_full(ready_pipe[0], &b, 1, 20000), 0);
	ck_assert_msg(b == 'r', "reaper: %ld (%s)", sh->reaper_rc,
		      shmg_strerror((int)sh->reaper_rc));
	live_target = 3;

	long killed = 0, closed = 0;
	pid_t *pids = calloc(nworkers, sizeof(pid_t));
	ck_assert_ptr_nonnull(pids);
	for (unsigned it = 0; it < iters; it++) {
		uint32_t first = sh->nworkers;

		for (unsigned j = 0; j < nworkers; j++) {
			struct worker_rec *r = &sh->w[first + j];

			r->to_kill = (uint8_t)(xrand(&rnd) % 2);
			__atomic_store_n(&sh->nworkers, first + j + 1, __ATOMIC_RELEASE);
			pids[j] = tc_fork(worker_main, (void *)(uintptr_t)(first + j));
			r->pid = pids[j];
		}
		/* Kill the chosen ones at random moments (only placing faults). */
		for (unsigned j = 0; j < nworkers; j++) {
			if (!sh->w[first + j].to_kill)
				continue;
			usleep_us((long)(xrand(&rnd) % 3000));
			ck_assert_int_eq(kill(pids[j], SIGKILL), 0);
		}
		for (unsigned j = 0; j < nworkers; j++) {
			struct worker_rec *w = &sh->w[first + j];
			int r = tc_wait_exit(pids[j], 10000);

			if (r == -ETIMEDOUT) {
				viol(V_WORKER_HUNG, "worker %u (pid %d, %s)", first + j, (int)pids[j],
				     w->to_kill ? "to be killed" : "to close");
				kill(pids[j], SIGKILL);
				r = tc_wait_exit(pids[j], 10000);
				w->to_kill = 1; /* it dies now: a death like the others */
			}
			if (r == 10)
				viol(V_OPEN_FAILED, "worker %u: %d (%s)", first + j, w->open_rc,
				     shmg_strerror(w->open_rc));
			else if (w->to_kill && r == TC_KILLED(SIGKILL))
				killed++;
			else if (!w->to_kill && r == 0)
				closed++;
			else
				viol(V_WORKER_ERROR, "worker %u (%s): exit %d", first + j,
				     w->to_kill ? "to be killed" : "to close", r);
		}
		ck_assert_msg(tc_wait_until(all_reaped, NULL, 10000),
			      "iteration %u: dead workers not reaped within 10 s", it);
	}
	free(pids);

	/* Stop the monitor with a marker it recognises, then the reaper. */
	TC_EQ(shmg_register(ph, SHMG_KEY("end"), NULL, 0, NULL), 0);
	__atomic_store_n(&sh->end_posted, 1, __ATOMIC_RELEASE);
	int mon_exit = tc_wait_exit(mon, 30000);
	__atomic_store_n(&sh->stop_reaper, 1, __ATOMIC_RELEASE);
	TC_EQ(tc_wait_exit(reaper, 20000), 0);
	TC_EQ(shmg_unregister(ph, SHMG_KEY("end"), NULL), 0);

	if (mon_exit == -ETIMEDOUT)
		kill(mon, SIGKILL);
	char report[NVIOL * 260] = "";
	size_t len = 0;
	for (int v = 0; v < NVIOL; v++)
		if (sh->viol[v])
			len += (size_t)snprintf(report + len, sizeof(report) - len,
						"\n  %s: %ld (first: %s)", viol_names[v], sh->viol[v],
						sh->first[v]);
	ck_assert_msg(len == 0,
		      "%u iterations, %ld killed, %ld closed, %ld events (%ld exit, %ld death "
		      "batches):%s",
		      iters, killed, closed, sh->events, sh->exit_events, sh->death_batches, report);
	TC_EQ(mon_exit, 0);
	ck_assert_int_eq(sh->mon_done, 1);
	TC_EQ(sh->mon_rc, 0);
	ck_assert_int_gt(sh->events, 0);
	ck_assert_int_gt(sh->death_batches, 0); /* the kills did hit workers holding entries */
	TC_EQ(sh->death_batches, sh->killed_with_entries);
	if (sh->redelivered)
		fprintf(stderr, "%ld event(s) delivered again to the monitor by a repair\n",
			sh->redelivered);

	TC_EQ(shmg_info(ph, &in), 0);
	ck_assert_uint_eq(in.endpoints_live, 1);
	TC_EQ(shmg_reap(ph), 0);
	assert_empty(ph);
	TC_ASSERT_CLEAN(ph);
	warm_up(ph);
	TC_ASSERT_CLEAN(ph);
	TC_EQ(shmg_info(ph, &in), 0);
	ck_assert_msg(in.pages_used == base.pages_used,
		      "pages_used %llu after the stress, %llu before: blocks leaked",
		      (unsigned long long)in.pages_used, (unsigned long long)base.pages_used);
	shmg_close(ph);
}
END_TEST

/* ---- dispatchers killed while consumers sleep ------------------------- */

/* Dispatchers send numbered, time-stamped messages to one key in a loop and
 * are SIGKILLed at random moments, a few alive at a time, while two members of
 * the key wait: one in poll() on shmg_fd, one in shmg_receive(-1), both with
 * no timeout, so a lost wakeup is a message that waits.  Every message must
 * arrive within LATE_MS of being sent, in order per dispatcher and without a
 * gap, everything a dispatcher saw sent must arrive, and the end marker must
 * reach both within LATE_MS of the last dispatcher's death. */

#define WAKE_KEY "w/k"
#define LATE_MS 2000
#define LIVE_DISPATCHERS 3
#define END_MARK UINT32_MAX

struct wmsg {
	uint32_t disp, seq;
	uint64_t sent_ns;
};

enum {
	WC_FD,
	WC_RECEIVE,
	NWC
};

struct wshared {
	uint32_t ndisp;
	int32_t open_failed;
	int32_t ready[NWC], done[NWC];
	long received[NWC], late[NWC], disorder[NWC], errors[NWC];
	uint64_t worst_ns[NWC];
	char first[NWC][160];
	struct wdisp {
		uint32_t sent;      /* messages whose dispatch returned */
		uint32_t running;   /* in its loop: it may be killed now */
		uint32_t last[NWC]; /* highest seq each consumer received */
	} d[];
};

static struct wshared *ws;

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void wnote(int c, long *counter, const char *fmt, uint32_t a, uint32_t b)
{
	if ((*counter)++ == 0 && !ws->first[c][0])
		snprintf(ws->first[c], sizeof(ws->first[c]), fmt, a, b);
}

/* Checks one received message; returns 1 for the end marker. */
static int wcheck(int c, const struct shmg_event *e)
{
	struct wmsg m;

	if (e->type != SHMG_EV_MESSAGE || e->meta_len != sizeof(m)) {
		wnote(c, &ws->errors[c], "event type %u, %u bytes", (uint32_t)e->type,
		      (uint32_t)e->meta_len);
		return 0;
	}
	memcpy(&m, e->meta, sizeof(m));
	if (m.disp == END_MARK)
		return 1;
	uint64_t age = mono_ns() - m.sent_ns;
	if (age > ws->worst_ns[c])
		ws->worst_ns[c] = age;
	if (age > LATE_MS * 1000000ull)
		wnote(c, &ws->late[c], "dispatcher %u message %u waited", m.disp, m.seq);
	if (m.disp >= __atomic_load_n(&ws->ndisp, __ATOMIC_ACQUIRE) ||
	    m.seq != ws->d[m.disp].last[c] + 1)
		wnote(c, &ws->disorder[c], "dispatcher %u message %u out of order", m.disp, m.seq);
	else
		__atomic_store_n(&ws->d[m.disp].last[c], m.seq, __ATOMIC_RELEASE);
	ws->received[c]++;
	return 0;
}

static int wconsumer_main(void *arg)
{
	int c = (int)(intptr_t)arg;
	struct shmg_event ev[64];
	shmg_t *h;
	int n, end = 0;

	if (shmg_open(tc_arena, NULL, &h) != 0 || shmg_join(h, SHMG_KEY(WAKE_KEY), NULL, 0, NULL))
		return 10;
	__atomic_store_n(&ws->ready[c], 1, __ATOMIC_RELEASE);
	while (!end) {
		if (c == WC_FD) {
			struct pollfd p = { .fd = shmg_fd(h), .events = POLLIN };

			if (poll(&p, 1, -1) < 0)
				return 11;
			while (!end && (n = shmg_receive(h, ev, 64, 0)) > 0)
				for (int i = 0; i < n; i++)
					end |= wcheck(c, &ev[i]);
		} else {
			n = shmg_receive(h, ev, 64, -1);
			for (int i = 0; i < n; i++)
				end |= wcheck(c, &ev[i]);
		}
		if (n < 0 && n != -EINTR)
			return 12;
	}
	__atomic_store_n(&ws->done[c], 1, __ATOMIC_RELEASE);
	return shmg_close(h) == 0 ? 0 : 13;
}

static int wdispatcher_main(void *arg)
{
	uint32_t di = (uint32_t)(uintptr_t)arg;
	shmg_t *h;

	if (shmg_open(tc_arena, NULL, &h) != 0) {
		__atomic_add_fetch(&ws->open_failed, 1, __ATOMIC_RELAXED);
		return 10;
	}
	__atomic_store_n(&ws->d[di].running, 1, __ATOMIC_RELEASE);
	for (uint32_t seq = 1;; seq++) {
		struct wmsg m = { di, seq, mono_ns() };

		if (shmg_dispatch(h, SHMG_KEY(WAKE_KEY), &m, sizeof(m), NULL) != NWC)
			return 11;
		__atomic_store_n(&ws->d[di].sent, seq, __ATOMIC_RELEASE);
		/* Wait (a little) for both consumers to take it, so that they are
		 * back asleep and the next dispatch goes through the wakeup. */
		uint64_t until = mono_ns() + 20000000ull;
		while ((__atomic_load_n(&ws->d[di].last[WC_FD], __ATOMIC_ACQUIRE) < seq ||
			__atomic_load_n(&ws->d[di].last[WC_RECEIVE], __ATOMIC_ACQUIRE) < seq) &&
		       mono_ns() < until)
			sched_yield();
	}
}

static bool wconsumers_ready(void *arg)
{
	(void)arg;
	return __atomic_load_n(&ws->ready[WC_FD], __ATOMIC_ACQUIRE) &&
	       __atomic_load_n(&ws->ready[WC_RECEIVE], __ATOMIC_ACQUIRE);
}

static bool wdisp_running(void *arg)
{
	return __atomic_load_n(&ws->d[(uintptr_t)arg].running, __ATOMIC_ACQUIRE);
}

START_TEST(test_stress_kill_dispatchers)
{
	struct shmg_config c = { 0 };
	uint64_t rnd = 0x2545f4914f6cdd1dull ^ (uint64_t)getpid();
	unsigned ndisp = kills + LIVE_DISPATCHERS;
	pid_t cons[NWC], live[LIVE_DISPATCHERS];
	uint32_t live_idx[LIVE_DISPATCHERS];
	long killed = 0;

	c.max_endpoints = MAX_SLOTS;
	c.mailbox_bytes = 16u << 20;
	c.arena_size = 1ull << 30;
	ph = tc_open(tc_arena, &c);
	ws = tc_shared_alloc(sizeof(*ws) + ndisp * sizeof(ws->d[0]));
	sh = tc_shared_alloc(sizeof(*sh));
	ck_assert_int_eq(pipe(ready_pipe), 0);
	pid_t reaper = tc_fork(reaper_main, NULL);
	char b;
	TC_EQ(tc_read_full(ready_pipe[0], &b, 1, 20000), 0);
	ck_assert_msg(b == 'r', "reaper: %ld", sh->reaper_rc);
	for (int i = 0; i < NWC; i++)
		cons[i] = tc_fork(wconsumer_main, (void *)(intptr_t)i);
	ck_assert(tc_wait_until(wconsumers_ready, NULL, 20000));

	for (unsigned i = 0; i < ndisp; i++) {
		unsigned j = i % LIVE_DISPATCHERS;

		if (i >= LIVE_DISPATCHERS) {
			/* Kill the oldest at a random moment of its loop. */
			ck_assert(tc_wait_until(wdisp_running, (void *)(uintptr_t)live_idx[j],
						10000));
			usleep_us((long)(xrand(&rnd) % 1000));
			ck_assert_int_eq(kill(live[j], SIGKILL), 0);
			int r = tc_wait_exit(live[j], 10000);
			ck_assert_msg(r == TC_KILLED(SIGKILL),
				      "dispatcher %u: exit %d (open failures %d)", live_idx[j], r,
				      ws->open_failed);
			killed++;
		}
		if (i < kills) {
			__atomic_store_n(&ws->ndisp, i + 1, __ATOMIC_RELEASE);
			live_idx[j] = i;
			live[j] = tc_fork(wdispatcher_main, (void *)(uintptr_t)i);
		}
	}
	/* Every dispatcher is dead: the end marker must wake both consumers. */
	ck_assert(tc_wait_until(all_reaped_but_consumers, NULL, 10000));
	struct wmsg end = { END_MARK, 0, 0 };
	TC_EQ(shmg_dispatch(ph, SHMG_KEY(WAKE_KEY), &end, sizeof(end), NULL), NWC);
	for (int i = 0; i < NWC; i++) {
		int r = tc_wait_exit(cons[i], LATE_MS);
		if (r == -ETIMEDOUT)
			kill(cons[i], SIGKILL);
		ck_assert_msg(r == 0,
			      "consumer %s: exit %d (a lost wakeup if it timed out); %ld received",
			      i == WC_FD ? "on shmg_fd" : "in shmg_receive", r, ws->received[i]);
	}
	__atomic_store_n(&sh->stop_reaper, 1, __ATOMIC_RELEASE);
	TC_EQ(tc_wait_exit(reaper, 20000), 0);

	for (int i = 0; i < NWC; i++) {
		const char *who = i == WC_FD ? "on shmg_fd" : "in shmg_receive";

		ck_assert_msg(
			ws->late[i] + ws->disorder[i] + ws->errors[i] == 0,
			"consumer %s: %ld late (> %d ms), %ld out of order, %ld bad; first: %s",
			who, ws->late[i], LATE_MS, ws->disorder[i], ws->errors[i], ws->first[i]);
		for (unsigned d = 0; d < kills; d++)
			ck_assert_msg(ws->d[d].last[i] >= ws->d[d].sent &&
					      ws->d[d].last[i] <= ws->d[d].sent + 1,
				      "consumer %s: dispatcher %u sent %u, received up to %u", who,
				      d, ws->d[d].sent, ws->d[d].last[i]);
	}
	fprintf(stderr,
		"%ld dispatchers killed; received %ld on shmg_fd (worst %.1f ms), %ld in "
		"shmg_receive (worst %.1f ms)\n",
		killed, ws->received[WC_FD], ws->worst_ns[WC_FD] / 1e6, ws->received[WC_RECEIVE],
		ws->worst_ns[WC_RECEIVE] / 1e6);
	TC_EQ(shmg_reap(ph), 0);
	TC_ASSERT_CLEAN(ph);
	shmg_close(ph);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("stress");
	TCase *tc;

	iters = env_uint("SHMG_STRESS_ITERS", iters);
	nworkers = env_uint("SHMG_STRESS_WORKERS", nworkers);
	if (nworkers > MAX_SLOTS - 4)
		nworkers = MAX_SLOTS - 4;
	tc = tc_case(s, "kill", 30.0 + iters * nworkers * 0.25);
	tcase_add_test(tc, test_stress_kill_random);
	kills = env_uint("SHMG_STRESS_DISPATCH_KILLS", kills);
	tc = tc_case(s, "wakeup", 30.0 + kills * 0.05);
	tcase_add_test(tc, test_stress_kill_dispatchers);
	return tc_run(s);
}
