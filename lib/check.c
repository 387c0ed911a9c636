/* SPDX-License-Identifier: MIT */
/*
 * shmg_check: a full consistency walk of the arena, for tests and for
 * `shmgroupctl check`.  It takes each shard's lock in turn (a shard whose
 * writer died is repaired by that, as any writer would), verifies the shard
 * from its index down to every page it owns, then the host-wide tables.
 * Read-only apart from that lock.  A shard whose lock stays held (a stopped
 * writer) past the handle's busy budget is reported busy and skipped.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "scan.h"

struct checker {
	shmg_t *h;
	void (*report)(const char *msg, void *arg);
	void *arg;
	long problems;
	struct scan sc;
	struct cluster_counts *counts;
	uint32_t *ep_entries;
	struct ep_kind_counts *ep_kinds;
	uint32_t nentries, monitors;
};

static void problem(struct checker *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(struct checker *c, const char *fmt, ...)
{
	c->problems++;
	if (!c->report)
		return;
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	c->report(msg, c->arg);
}

static void bm_set(uint64_t *bm, uint64_t i)
{
	bm[i / 64] |= 1ull << (i % 64);
}

/* e is a block, hd its header copy (entry_read): every length and index
 * below comes from hd, every table size from v. */
static void check_entry_identity(struct checker *c, const struct entry *e, const struct entry *hd,
				 uint32_t pos, const struct table_view *v)
{
	shmg_t *h = c->h;
	uint32_t s = c->sc.shard;
	bool monitor = hd->kind == K_MONHEAD || hd->kind == K_MONITOR;
	if (!monitor && !cluster_ref_valid(h, hd->cluster))
		problem(c, "shard %u slot %u: entry of a cluster that is not connected", s, pos);
	uint64_t hash = entry_hash(h, e);
	if (hd->kind == K_MEMBER || hd->kind == K_MONITOR) {
		struct entry headhd;
		ref_t aux = load_relaxed(&links_of(e, hd)->aux);
		const struct entry *head = entry_read(h, aux, &headhd);
		if (!head || headhd.kind != (hd->kind == K_MONITOR ? K_MONHEAD : K_GROUP))
			problem(c, "shard %u slot %u: membership without a group head", s, pos);
	} else if (hd->kind != K_PREFIX && shard_of(h, hash) != s) {
		/* (A prefix node lives in the shard of the heads below it.) */
		problem(c, "shard %u slot %u: entry belongs to shard %u", s, pos, shard_of(h, hash));
	}
	/* The slot's tag and place must agree with the entry's (recomputed) hash. */
	if (v->B[pos / BUCKET_SLOTS].tag[pos % BUCKET_SLOTS] != (uint16_t)hash)
		problem(c, "shard %u slot %u: tag does not match the entry's hash", s, pos);
	uint32_t home = (uint32_t)(hash >> 16) & v->mask;
	uint32_t dist = (pos / BUCKET_SLOTS - home) & v->mask;
	if (dist > v->B[home].probe)
		problem(c, "shard %u slot %u: beyond its home bucket's probe range", s, pos);
	uint8_t role = entry_role(hd);
	bool owned = role == K_REG || role == K_MEMBER || role == K_MONITOR;
	if (owned && hd->node == h->node) {
		const struct endpoint_slot *ep =
			hd->ep_slot < h->geo.max_endpoints ? endpoint_at(h, hd->ep_slot) : NULL;
		if (!ep || ep->state == EP_FREE || ep->gen != hd->ep_gen)
			problem(c, "shard %u slot %u: dangling entry of endpoint %u.%u, which is gone", s,
				pos, hd->ep_slot, hd->ep_gen);
	}
}

static void count_entry(struct checker *c, const struct entry *e)
{
	shmg_t *h = c->h;
	uint32_t cs = cluster_slot_of(e->cluster);
	bool local = e->node == h->node;
	uint8_t role = entry_role(e);
	if (role == K_MONITOR)
		c->monitors++;
	else if (cs < h->geo.max_clusters) {
		if (role == K_REG) {
			c->counts[cs].registered++;
			c->counts[cs].registered_local += local;
		} else if (role == K_MEMBER) {
			c->counts[cs].members++;
			c->counts[cs].members_local += local;
		}
	}
	if (local && (role == K_REG || role == K_MEMBER || role == K_MONITOR) &&
	    e->ep_slot < h->geo.max_endpoints) {
		c->ep_entries[e->ep_slot]++;
		c->ep_kinds[e->ep_slot].registered += role == K_REG;
		c->ep_kinds[e->ep_slot].monitors += role == K_MONITOR;
	}
}

static void check_table(struct checker *c, const struct table_view *v)
{
	shmg_t *h = c->h;
	uint64_t nslots = ((uint64_t)v->mask + 1) * BUCKET_SLOTS;
	for (uint64_t pos = 0; pos < nslots; pos++) {
		ref_t r = load_relaxed(&v->B[pos / BUCKET_SLOTS].ent[pos % BUCKET_SLOTS]);
		if (!r)
			continue;
		c->nentries++;
		struct entry hd;
		int64_t b;
		const struct entry *e = scan_entry(h, &c->sc, r, &hd, &b);
		if (!e) {
			problem(c, "shard %u slot %llu: invalid entry ref %u", c->sc.shard,
				(unsigned long long)pos, r);
			continue;
		}
		if (scan_test(c->sc.indexed, (uint64_t)b))
			problem(c, "shard %u slot %llu: entry indexed twice", c->sc.shard,
				(unsigned long long)pos);
		bm_set(c->sc.indexed, (uint64_t)b);
		bm_set(c->sc.live, (uint64_t)b);
		check_entry_identity(c, e, &hd, (uint32_t)pos, v);
		count_entry(c, &hd);
	}
}

static int check_list(shmg_t *h, struct entry *blk, uint32_t pos, void *arg)
{
	struct checker *c = arg;
	struct entry hhd, mhd;
	const struct entry *head = entry_read(h, ref_of(h, blk), &hhd);
	if (!head || (hhd.kind != K_GROUP && hhd.kind != K_MONHEAD))
		return 0;
	uint8_t mkind = hhd.kind == K_MONHEAD ? K_MONITOR : K_MEMBER;
	const struct entry_links *hl = links_of(head, &hhd);
	if (entry_solo(&hhd)) {
		if (load_relaxed(&hl->next) || load_relaxed(&hl->aux) != 1 ||
		    load_relaxed(&hl->tree.local) != (hhd.node == h->node))
			problem(c, "shard %u slot %u: single-member group with a list or wrong counts",
				c->sc.shard, pos);
		return 0;
	}
	ref_t first = load_relaxed(&hl->next), href = ref_of(h, head), prev = 0;
	if (!first)
		problem(c, "shard %u slot %u: group head without members", c->sc.shard, pos);
	uint32_t n = 0, local = 0, count = load_relaxed(&hl->aux);
	/* Ends: the `listed` bitmap stops a cycle at its first repeat. */
	for (ref_t r = first; r;) {
		int64_t b;
		const struct entry *m = scan_entry(h, &c->sc, r, &mhd, &b);
		const struct entry_links *ml = m ? links_of(m, &mhd) : NULL;
		if (!m || mhd.kind != mkind || load_relaxed(&ml->aux) != href) {
			problem(c, "shard %u slot %u: broken group list", c->sc.shard, pos);
			break;
		}
		if (scan_test(c->sc.listed, (uint64_t)b)) {
			problem(c, "shard %u slot %u: cycle in group list", c->sc.shard, pos);
			break;
		}
		bm_set(c->sc.listed, (uint64_t)b);
		if (!scan_test(c->sc.indexed, (uint64_t)b))
			problem(c, "shard %u slot %u: listed member not indexed", c->sc.shard, pos);
		if (load_relaxed(&ml->prev) != prev)
			problem(c, "shard %u slot %u: wrong prev link in group list", c->sc.shard, pos);
		prev = r;
		r = load_relaxed(&ml->next);
		n++;
		local += mhd.node == h->node;
	}
	if (n != count)
		problem(c, "shard %u slot %u: group counts %u members, list has %u", c->sc.shard, pos,
			count, n);
	if (hhd.kind == K_GROUP && local != load_relaxed(&hl->tree.local))
		problem(c, "shard %u slot %u: group counts %u local members, list has %u",
			c->sc.shard, pos, load_relaxed(&hl->tree.local), local);
	return 0;
}

static int check_unlisted(shmg_t *h, struct entry *blk, uint32_t pos, void *arg)
{
	struct checker *c = arg;
	struct entry hd;
	int64_t b;
	if (scan_entry(h, &c->sc, ref_of(h, blk), &hd, &b) &&
	    (hd.kind == K_MEMBER || hd.kind == K_MONITOR) && !scan_test(c->sc.listed, (uint64_t)b))
		problem(c, "shard %u slot %u: indexed member on no list", c->sc.shard, pos);
	return 0;
}

/* A prefix node's list: sound, indexed children, each on one list only,
 * with their parent, prev links and count right. */
static int check_children(shmg_t *h, struct entry *blk, uint32_t pos, void *arg)
{
	struct checker *c = arg;
	struct entry nhd, chd;
	const struct entry *n = scan_entry(h, &c->sc, ref_of(h, blk), &nhd, NULL);
	if (!n || nhd.kind != K_PREFIX)
		return 0;
	uint32_t s = c->sc.shard, count = 0;
	if (entry_key(n)[nhd.key_len - 1] != '/')
		problem(c, "shard %u slot %u: prefix node whose key does not end in '/'", s, pos);
	ref_t nref = ref_of(h, n), prev = 0;
	for (ref_t r = load_relaxed(&links_of(n, &nhd)->next); r;) {
		int64_t b;
		const struct entry *e = scan_entry(h, &c->sc, r, &chd, &b);
		if (!e || !prefix_child_fits(n, &nhd, e, &chd)) {
			problem(c, "shard %u slot %u: broken prefix node list", s, pos);
			break;
		}
		if (scan_test(c->sc.tree, (uint64_t)b)) {
			problem(c, "shard %u slot %u: prefix child listed twice (or a cycle)", s, pos);
			break;
		}
		bm_set(c->sc.tree, (uint64_t)b);
		const struct entry_links *l = links_of(e, &chd);
		if (!scan_test(c->sc.indexed, (uint64_t)b))
			problem(c, "shard %u slot %u: prefix child not indexed", s, pos);
		if (load_relaxed(&l->tree.parent) != nref)
			problem(c, "shard %u slot %u: prefix child names another parent", s, pos);
		if (load_relaxed(&l->prev) != prev)
			problem(c, "shard %u slot %u: wrong prev link in prefix node list", s, pos);
		prev = r;
		r = load_relaxed(&l->sib);
		count++;
	}
	if (count != load_relaxed(&links_of(n, &nhd)->aux))
		problem(c, "shard %u slot %u: prefix node counts %u children, list has %u", s, pos,
			load_relaxed(&links_of(n, &nhd)->aux), count);
	return 0;
}

/* Every head and node with a parent prefix is on its parent's list. */
static int check_in_tree(shmg_t *h, struct entry *blk, uint32_t pos, void *arg)
{
	struct checker *c = arg;
	struct entry hd;
	int64_t b;
	const struct entry *e = scan_entry(h, &c->sc, ref_of(h, blk), &hd, &b);
	if (e && (hd.kind == K_GROUP || hd.kind == K_PREFIX) &&
	    prefix_parent_len(entry_key(e), hd.key_len) && !scan_test(c->sc.tree, (uint64_t)b))
		problem(c, "shard %u slot %u: group or prefix node missing from the prefix tree",
			c->sc.shard, pos);
	return 0;
}

static void check_limbo(struct checker *c)
{
	shmg_t *h = c->h;
	struct shard_header *sh = shard_at(h, c->sc.shard);
	struct limbo_item *ring = shard_limbo(h, c->sc.shard);
	uint32_t head = load_relaxed(&sh->limbo_head), tail = load_relaxed(&sh->limbo_tail);
	if (head - tail > LIMBO_CAP) {
		problem(c, "shard %u: limbo ring overfull", c->sc.shard);
		return;
	}
	for (uint32_t i = tail; i != head; i++) {
		struct limbo_item it = ring[i % LIMBO_CAP];
		if (it.kind == LIMBO_EXTENT) {
			if (it.ref < h->geo.npages) {
				uint64_t end = (uint64_t)it.ref + page_desc_at(h, it.ref)->used;
				for (uint32_t p = it.ref; p < end && p < h->geo.npages; p++)
					c->sc.extent_keep[p] = 1;
			}
			continue;
		}
		if (it.kind != LIMBO_BLOCK)
			continue;
		int64_t b = scan_block(h, &c->sc, it.ref);
		if (b < 0)
			problem(c, "shard %u: invalid block in limbo", c->sc.shard);
		else if (scan_test(c->sc.live, (uint64_t)b) || scan_test(c->sc.retired, (uint64_t)b))
			problem(c, "shard %u: limbo block still reachable or queued twice", c->sc.shard);
		else
			bm_set(c->sc.retired, (uint64_t)b);
	}
}

static void check_slab(struct checker *c, uint32_t page)
{
	shmg_t *h = c->h;
	struct page_desc *d = page_desc_at(h, page);
	uint32_t cls = PG_CLASS(load_relaxed(&d->word));
	if (cls >= NCLASSES) {
		problem(c, "page %u: slab of no size class", page);
		return;
	}
	uint32_t size = alloc_class_size(cls), n = PAGE_SIZE / size;
	uint32_t inuse = 0, nfree = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t b = (uint64_t)page * SCAN_BLOCKS_PER_PAGE + i;
		inuse += scan_test(c->sc.live, b) || scan_test(c->sc.retired, b);
	}
	uint8_t *seen = calloc(n, 1);
	for (uint32_t f = d->free_head; f && seen; nfree++) {
		if (f > n || seen[f - 1]) {
			problem(c, "page %u: corrupt free list", page);
			break;
		}
		seen[f - 1] = 1;
		uint64_t b = (uint64_t)page * SCAN_BLOCKS_PER_PAGE + f - 1;
		if (scan_test(c->sc.live, b) || scan_test(c->sc.retired, b))
			problem(c, "page %u: block %u is both free and in use", page, f - 1);
		memcpy(&f, page_at(h, page) + (uint64_t)(f - 1) * size, sizeof(f));
	}
	free(seen);
	if (d->used != inuse)
		problem(c, "page %u: %u blocks in use, page says %u (leak or double use)", page, inuse,
			d->used);
	if (d->bump > n || d->used + nfree + (n - d->bump) != n)
		problem(c, "page %u: %u used + %u free + %u untouched != %u blocks", page, d->used,
			nfree, n - d->bump, n);
}

static void check_pages(struct checker *c)
{
	shmg_t *h = c->h;
	uint32_t s = c->sc.shard, tp = scan_table_page(h, s);
	if (tp < h->geo.npages) {
		uint64_t end = (uint64_t)tp + page_desc_at(h, tp)->used;
		for (uint32_t p = tp; p < end && p < h->geo.npages; p++)
			c->sc.extent_keep[p] = 1;
	}
	for (uint32_t p = 0; p < h->geo.npages; p++) {
		uint32_t w = load_relaxed(&page_desc_at(h, p)->word);
		if (PG_OWNER(w) != s + 1)
			continue;
		if (!page_backed(h, p))
			problem(c, "shard %u: page %u in use past the arena's end", s, p);
		else if (PG_KIND(w) == PG_SLAB)
			check_slab(c, p);
		else if (!c->sc.extent_keep[p])
			problem(c, "shard %u: page %u belongs to no table (leaked extent)", s, p);
	}
}

static void check_counts(struct checker *c)
{
	shmg_t *h = c->h;
	uint32_t s = c->sc.shard;
	if (c->nentries != shard_at(h, s)->nentries)
		problem(c, "shard %u: %u entries indexed, shard says %u", s, c->nentries,
			shard_at(h, s)->nentries);
	if (c->monitors != shard_at(h, s)->monitors)
		problem(c, "shard %u: %u monitors indexed, shard says %u", s, c->monitors,
			shard_at(h, s)->monitors);
	if (memcmp(c->counts, shard_counts(h, s), h->geo.max_clusters * sizeof(*c->counts)))
		problem(c, "shard %u: cluster counters disagree with the entries", s);
	if (memcmp(c->ep_entries, shard_ep_entries(h, s), h->geo.max_endpoints * sizeof(uint32_t)))
		problem(c, "shard %u: per-endpoint counters disagree with the entries", s);
	if (memcmp(c->ep_kinds, shard_ep_kinds(h, s), h->geo.max_endpoints * sizeof(*c->ep_kinds)))
		problem(c, "shard %u: per-endpoint kind counters disagree with the entries", s);
}

static void check_shard(struct checker *c, uint32_t s, uint64_t deadline_ns)
{
	shmg_t *h = c->h;
	int rc = shard_lock_until(h, s, deadline_ns, 0);
	if (rc == -EBUSY) {
		problem(c, "shard %u: busy (locked past the busy-retry budget), not checked", s);
		return;
	}
	if (rc < 0) {
		problem(c, "shard %u: cannot be locked or repaired", s);
		return;
	}
	if (scan_init(h, s, &c->sc) == 0) {
		memset(c->counts, 0, h->geo.max_clusters * sizeof(*c->counts));
		memset(c->ep_entries, 0, h->geo.max_endpoints * sizeof(uint32_t));
		memset(c->ep_kinds, 0, h->geo.max_endpoints * sizeof(*c->ep_kinds));
		c->nentries = c->monitors = 0;
		struct table_view v;
		if (!index_view(h, s, &v)) {
			problem(c, "shard %u: index table invalid", s);
		} else {
			check_table(c, &v);
			index_foreach(h, s, check_list, c);
			index_foreach(h, s, check_unlisted, c);
			index_foreach(h, s, check_children, c);
			index_foreach(h, s, check_in_tree, c);
			check_limbo(c);
			check_pages(c);
			check_counts(c);
		}
		scan_free(&c->sc);
	} else {
		problem(c, "shard %u: out of memory while checking", s);
	}
	shard_unlock(h, s);
}

static void check_host_tables(struct checker *c)
{
	shmg_t *h = c->h;
	uint32_t used = 0, live = 0, connected = 0;
	if (pool_lock(h) == 0) {
		/* Pages past pages_avail are never handed out; pages_avail past
		 * the object's end would hand out pages that are not there. */
		uint32_t avail = load_relaxed(&h->hdr->pages_avail);
		uint32_t held = arena_pages_in(&h->geo, arena_refresh(h));
		if (avail > held)
			problem(c, "page pool: %u pages published, the arena holds %u", avail, held);
		for (uint32_t p = 0; p < h->geo.npages; p++) {
			uint32_t w = load_relaxed(&page_desc_at(h, p)->word);
			used += w != 0;
			if (w && (PG_OWNER(w) == 0 || PG_OWNER(w) > h->geo.shards))
				problem(c, "page %u: owned by no valid shard", p);
			if (w && p >= avail)
				problem(c, "page %u: in use past the pool's %u pages", p, avail);
		}
		if (used != h->hdr->pages_used)
			problem(c, "page pool: %u pages in use, pool says %u", used, h->hdr->pages_used);
		pool_unlock(h);
	}
	for (uint32_t i = 0; i < h->geo.max_endpoints; i++) {
		struct endpoint_slot *ep = endpoint_at(h, i);
		if (ep->state != EP_FREE)
			live++;
		if (ep->state == EP_LIVE && h->live_gen[i] != ep->gen && endpoint_alive(h, i, ep->gen))
			problem(c, "endpoint %u: live but hidden from readers", i);
		if (i >= h->hdr->endpoint_hwm && ep->state != EP_FREE)
			problem(c, "endpoint %u: in use above the high-water mark", i);
	}
	if (live != load_relaxed(&h->hdr->endpoints_live))
		problem(c, "endpoint table: %u in use, header says %u", live, h->hdr->endpoints_live);
	for (uint32_t s = 1; s < h->geo.max_clusters; s++)
		connected += cluster_at(h, s)->state == CL_CONNECTED;
	if (connected != h->hdr->clusters_connected)
		problem(c, "cluster table: %u connected, header says %u", connected,
			h->hdr->clusters_connected);
}

long shmg_check(shmg_t *h, void (*report)(const char *msg, void *arg), void *arg)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	struct checker c = {.h = h, .report = report, .arg = arg};
	c.counts = calloc(h->geo.max_clusters, sizeof(*c.counts));
	c.ep_entries = calloc(h->geo.max_endpoints, sizeof(uint32_t));
	c.ep_kinds = calloc(h->geo.max_endpoints, sizeof(*c.ep_kinds));
	if (!c.counts || !c.ep_entries || !c.ep_kinds) {
		free(c.counts);
		free(c.ep_entries);
		free(c.ep_kinds);
		return -ENOMEM;
	}
	/* One budget for the walk: a stopped writer costs it once. */
	uint64_t deadline = busy_deadline(h);
	for (uint32_t s = 0; s < h->geo.shards; s++)
		check_shard(&c, s, deadline);
	check_host_tables(&c);
	free(c.counts);
	free(c.ep_entries);
	free(c.ep_kinds);
	return c.problems;
}
