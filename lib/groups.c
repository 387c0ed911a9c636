/* SPDX-License-Identifier: MIT */
/*
 * Process groups: many endpoints per (cluster, key).
 *
 * A group with one member is one block (see "single-member groups" below);
 * from its second member on, the list form described here.
 *
 * A group is a head entry (K_GROUP) in the shard's index with a list of
 * membership entries (K_MEMBER) hanging off the head's links.next.  Readers walk the
 * list (acquire loads of next, pairing with the release stores that link);
 * writers find a membership directly through the index, where it is keyed by
 * member_hash(head, endpoint), so join and leave cost O(1) whatever the size
 * of the group.
 *
 * Join order: blocks allocated (nothing visible) -> new head published ->
 * membership put in the index (still invisible to readers) -> linked at the
 * list head (visible: the linearisation point) -> counted and logged.
 * Leave order: unlinked from the list (invisible) -> dropped from the index
 * -> counted, logged, retired; the head goes with its last member.
 * repair_shard keeps the list authoritative: an indexed membership that is
 * not on its list is dropped (an unfinished join, or a leave that was done).
 *
 * A new group head is linked into its shard's prefix tree (prefix.c) right
 * after it is indexed, before its first member; it leaves the tree with its
 * last member, before it leaves the index.  Prefix queries walk the tree of
 * each shard: O(shards + prefix nodes + groups) plus the members given.
 */
#include <string.h>

#include "internal.h"

/* Publishes n in m's place on the list (re-join with new metadata). */
static void list_replace(shmg_t *h, struct entry *head, struct entry *m, struct entry *n, ref_t nref)
{
	struct entry_links *ml = links_at(h, m), *nl = links_at(h, n);
	nl->next = ml->next;
	nl->prev = ml->prev;
	struct entry *prev = nl->prev ? entry_at(h, nl->prev) : NULL;
	struct entry *next = nl->next ? entry_at(h, nl->next) : NULL;
	if (prev)
		store_release(&links_at(h, prev)->next, nref);
	else
		store_release(&links_at(h, head)->next, nref);
	if (next)
		links_at(h, next)->prev = nref;
}

static uint8_t member_kind_of(uint8_t head_kind)
{
	return head_kind == K_MONHEAD ? K_MONITOR : K_MEMBER;
}

/* ---- single-member groups -------------------------------------------- */
/* A group's first member, joined by this node's own endpoint, is a solo
 * head (EF_SOLO): one block and one index slot, its header the member's.
 * It is published like a registration (one store of its index slot) and
 * linked into the prefix tree right after; the parent prefix node is made
 * before, so that linking cannot fail once it is visible.  A second member
 * converts it to a list head with the first member copied onto its list,
 * published in the solo's place in the index and the tree, before the
 * second joins as usual.  Remote writes (h->author) always use the list. */

static bool solo_is(const struct entry *g, uint32_t node, uint32_t slot, uint32_t gen)
{
	return g->node == node && g->ep_slot == slot && g->ep_gen == gen;
}

/* A new solo block for k with this handle's identity. */
static struct entry *solo_new(shmg_t *h, const struct keyref *k, const void *meta,
			      size_t meta_len, ref_t *ref)
{
	struct entry *g = entry_new(h, k->shard, K_GROUP, k, meta, meta_len, ref);
	if (g) {
		g->flags = EF_SOLO;
		L(g)->aux = 1;
		L(g)->tree.local = 1;
	}
	return g;
}

static int solo_add(shmg_t *h, const struct keyref *k, const void *meta, size_t meta_len)
{
	ref_t ref;
	if (prefix_make_parent(h, k) < 0)
		return -ENOSPC;
	TEST_POINT("join:head");
	struct entry *g = solo_new(h, k, meta, meta_len, &ref);
	TEST_POINT("join:allocated");
	inflight_set(h, k->shard, INFLIGHT_ADD, ref, 0, 0);
	if (!g || index_insert(h, k->shard, k->hash, ref) < 0) {
		inflight_clear(h, k->shard);
		if (g)
			alloc_free_block(h, k->shard, ref);
		prefix_drop_parent(h, k);
		return -ENOSPC;
	}
	TEST_POINT("join:linked"); /* visible to exact queries */
	prefix_link_head(h, k, g);
	shard_count(h, k->shard, g, +1);
	shard_event(h, k->shard, SHMG_EV_JOINED, REASON_NONE, g, NULL);
	oplog_append(h, k->shard, OP_JOIN, REASON_NONE, g, k->key, k->len);
	inflight_clear(h, k->shard);
	return 0;
}

/* Re-join of the solo member with other metadata: a new solo block in the
 * old one's place (tree, then index). */
static int solo_replace(shmg_t *h, const struct keyref *k, struct entry *old, uint32_t pos,
			const void *meta, size_t meta_len)
{
	ref_t ref;
	struct entry *g = solo_new(h, k, meta, meta_len, &ref);
	if (!g)
		return -ENOSPC;
	inflight_set(h, k->shard, INFLIGHT_REPLACE, ref, ref_of(h, old), 0);
	prefix_replace_child(h, old, g);
	index_replace_slot(h, k->shard, pos, ref);
	shard_event(h, k->shard, SHMG_EV_JOINED, REASON_NONE, g, old);
	oplog_append(h, k->shard, OP_JOIN, REASON_NONE, g, k->key, k->len);
	inflight_clear(h, k->shard);
	epoch_retire(h, k->shard, ref_of(h, old), LIMBO_BLOCK);
	return 0;
}

/* Turns solo g into a list head whose one member is a copy of g's member
 * (same endpoint, pid, time and metadata: no event, no log, no count).
 * Returns the new head, or NULL (no space; g stays). */
static struct entry *solo_convert(shmg_t *h, const struct keyref *k, struct entry *g)
{
	const struct author was = {g->node, g->ep_slot, g->ep_gen, g->pid, g->time_ns};
	const struct author *saved = h->author;
	ref_t href, mref = 0;
	h->author = NULL; /* a list head belongs to no endpoint */
	struct entry *head = entry_new(h, k->shard, K_GROUP, k, NULL, 0, &href);
	h->author = &was;
	struct entry *m = head ? entry_new(h, k->shard, K_MEMBER, k, entry_meta(g), g->meta_len,
					   &mref)
			       : NULL;
	h->author = saved;
	if (m) {
		L(m)->aux = href;
		L(head)->next = mref;
		L(head)->aux = 1;
		L(head)->tree.local = was.node == h->node;
	}
	if (!m || index_insert(h, k->shard, member_hash(k->hash, was.slot, was.gen), mref) < 0) {
		if (mref)
			alloc_free_block(h, k->shard, mref);
		if (head)
			alloc_free_block(h, k->shard, href);
		return NULL;
	}
	/* g's slot now: the insert may have resized the table.  (None found,
	 * which the lock rules out, leaves an out-of-range position that
	 * index_replace_slot ignores.) */
	uint32_t pos = UINT32_MAX;
	index_find(h, k, K_GROUP, &pos);
	TEST_POINT("join:converting");
	prefix_replace_child(h, g, head);
	index_replace_slot(h, k->shard, pos, href);
	epoch_retire(h, k->shard, ref_of(h, g), LIMBO_BLOCK);
	return head;
}

int list_join(shmg_t *h, const struct keyref *k, uint8_t head_kind, const void *meta,
	      size_t meta_len)
{
	uint8_t mkind = member_kind_of(head_kind);
	bool group = head_kind == K_GROUP;
	uint32_t mpos;
	const struct author self = {h->node, h->slot, h->gen, 0, 0};
	const struct author *a = h->author ? h->author : &self;
	uint32_t hpos;
	struct entry *head = index_find(h, k, head_kind, &hpos);
	if (head && group && entry_solo(head)) {
		if (solo_is(head, a->node, a->slot, a->gen))
			return meta_equal(h, head, meta, meta_len)
				       ? 0
				       : solo_replace(h, k, head, hpos, meta, meta_len);
		if (!(head = solo_convert(h, k, head)))
			return -ENOSPC;
	}
	if (!head && group && !h->author)
		return solo_add(h, k, meta, meta_len);
	ref_t href = head ? ref_of(h, head) : 0;
	if (head) {
		uint64_t mh = member_hash(k->hash, a->slot, a->gen);
		struct entry *m = index_find_member(h, k->shard, href, mh, a->node, a->slot, a->gen, &mpos);
		if (m) {
			if (meta_equal(h, m, meta, meta_len))
				return 0;
			ref_t nref;
			struct entry *n = entry_new(h, k->shard, mkind, k, meta, meta_len, &nref);
			if (!n)
				return -ENOSPC;
			links_at(h, n)->aux = href;
			if (group)
				inflight_set(h, k->shard, INFLIGHT_REPLACE, nref, ref_of(h, m), 0);
			list_replace(h, head, m, n, nref);
			index_replace_slot(h, k->shard, mpos, nref);
			if (group) {
				shard_event(h, k->shard, SHMG_EV_JOINED, REASON_NONE, n, m);
				oplog_append(h, k->shard, OP_JOIN, REASON_NONE, n, k->key, k->len);
				inflight_clear(h, k->shard);
			}
			epoch_retire(h, k->shard, ref_of(h, m), LIMBO_BLOCK);
			return 0;
		}
	}
	ref_t mref;
	struct entry *m = entry_new(h, k->shard, mkind, k, meta, meta_len, &mref);
	if (!m)
		return -ENOSPC;
	if (!head) {
		/* A head belongs to no endpoint: this node's, whoever joins. */
		const struct author *saved = h->author;
		h->author = NULL;
		head = entry_new(h, k->shard, head_kind, k, NULL, 0, &href);
		h->author = saved;
		if (!head || index_insert(h, k->shard, k->hash, href) < 0) {
			if (head)
				alloc_free_block(h, k->shard, href);
			alloc_free_block(h, k->shard, mref);
			return -ENOSPC;
		}
		TEST_POINT("join:head");
		if (group && prefix_link_head(h, k, head) < 0) {
			alloc_free_block(h, k->shard, mref);
			shard_drop_head(h, k->shard, head);
			return -ENOSPC;
		}
	}
	links_at(h, m)->aux = href;
	TEST_POINT("join:allocated");
	if (index_insert(h, k->shard, member_hash(k->hash, a->slot, a->gen), mref) < 0) {
		alloc_free_block(h, k->shard, mref);
		if (links_at(h, head)->next == 0)
			shard_drop_head(h, k->shard, head);
		return -ENOSPC;
	}
	if (group)
		inflight_set(h, k->shard, INFLIGHT_ADD, mref, 0, 0);
	struct entry_links *ml = links_at(h, m), *hl = links_at(h, head);
	ml->next = hl->next;
	ml->prev = 0;
	if (ml->next) {
		struct entry *first = entry_at(h, ml->next);
		if (first)
			links_at(h, first)->prev = mref;
	}
	store_release(&hl->next, mref); /* linearisation point: readers see the member */
	TEST_POINT("join:linked");
	store_relaxed(&hl->aux, hl->aux + 1);
	if (group && a->node == h->node)
		store_relaxed(&hl->tree.local, hl->tree.local + 1);
	shard_count(h, k->shard, m, +1);
	if (group) {
		shard_event(h, k->shard, SHMG_EV_JOINED, REASON_NONE, m, NULL);
		oplog_append(h, k->shard, OP_JOIN, REASON_NONE, m, k->key, k->len);
		inflight_clear(h, k->shard);
	}
	return 0;
}

int list_leave(shmg_t *h, const struct keyref *k, uint8_t head_kind)
{
	uint32_t mpos;
	struct entry *head = index_find(h, k, head_kind, &mpos);
	if (head && entry_solo(head)) {
		if (!solo_is(head, h->node, h->slot, h->gen))
			return -ENOENT;
		shard_remove_reg(h, k->shard, head, mpos, REASON_NORMAL);
		return 0;
	}
	struct entry *m = head ? index_find_member(h, k->shard, ref_of(h, head),
						   member_hash(k->hash, h->slot, h->gen),
						   h->node, h->slot, h->gen, &mpos)
			       : NULL;
	if (!m)
		return -ENOENT;
	shard_remove_member(h, k->shard, m, mpos, REASON_NORMAL);
	return 0;
}

int shmg_join(shmg_t *h, const char *key, size_t key_len, const void *meta, size_t meta_len,
	      const struct shmg_opts *opts)
{
	struct keyref k;
	int rc = handle_check(h);
	if (rc || (rc = meta_check(h, meta, meta_len)) || (rc = key_prepare(h, key, key_len, opts, KEY_WRITE, &k)))
		return rc;
	mailbox_warm(h);
	if ((rc = shard_lock(h, k.shard)) < 0)
		return rc;
	rc = cluster_ref_valid(h, k.cluster) ? list_join(h, &k, K_GROUP, meta, meta_len) : -ENOTCONN;
	shard_unlock(h, k.shard);
	return rc;
}

int shmg_leave(shmg_t *h, const char *key, size_t key_len, const struct shmg_opts *opts)
{
	struct keyref k;
	int rc = handle_check(h);
	if (rc || (rc = key_prepare(h, key, key_len, opts, KEY_WRITE, &k)))
		return rc;
	mailbox_warm(h);
	if ((rc = shard_lock(h, k.shard)) < 0)
		return rc;
	rc = cluster_ref_valid(h, k.cluster) ? list_leave(h, &k, K_GROUP) : -ENOTCONN;
	shard_unlock(h, k.shard);
	return rc;
}

/* ---- reads ----------------------------------------------------------- */

struct walk {
	shmg_entry_fn fn;
	void *arg;
	const struct shmg_opts *opts;
	bool local_only;
	bool use_extract;
	size_t limit;
	long given;
	int stop;      /* fn's non-zero value, or a negative errno */
};

/* Gives one live member to the caller.  Returns non-zero to stop. */
static int give(shmg_t *h, struct walk *w, const struct entry *head, const struct entry *hhd,
		const struct entry *m, const struct entry *mhd)
{
	if (!entry_live(h, mhd) || (w->local_only && mhd->node != h->node))
		return 0;
	if (w->fn) {
		struct shmg_entry pub;
		char clbuf[64];
		entry_fill_public(h, m, mhd, head, hhd, &pub, clbuf);
		if (w->use_extract) {
			const void *meta;
			ssize_t n = meta_extract(h, w->opts, m, mhd, &meta);
			if (n < 0)
				return w->stop = (int)n;
			pub.meta = meta;
			pub.meta_len = (size_t)n;
		}
		int rc = w->fn(&pub, w->arg);
		if (rc)
			return w->stop = rc;
	}
	w->given++;
	if (w->limit && (size_t)w->given >= w->limit)
		return w->stop = 1 << 30; /* internal: limit reached */
	return 0;
}

int list_walk(shmg_t *h, const struct entry *head, const struct entry *hhd, member_fn fn,
	      void *arg)
{
	if (hhd->kind != K_GROUP && hhd->kind != K_MONHEAD)
		return 0;
	if (entry_solo(hhd))
		return fn(h, head, hhd, arg); /* its own one member */
	uint8_t mkind = member_kind_of(hhd->kind);
	ref_t href = ref_of(h, head);
	/* Brent's cycle check: `mark` is a ref seen earlier; a list that comes
	 * back to it loops.  `left` bounds the walk by the arena's block count
	 * whatever else is wrong. */
	ref_t mark = 0;
	uint64_t power = 1, lap = 0, left = h->map_size / CACHE_LINE;
	/* The acquire loads pair with the release stores that link (list_join). */
	for (ref_t r = load_acquire(&links_of(head, hhd)->next); r && left--;) {
		struct entry mhd;
		const struct entry *m = entry_read(h, r, &mhd);
		if (!m || mhd.kind != mkind || load_relaxed(&links_of(m, &mhd)->aux) != href)
			break;
		int rc = fn(h, m, &mhd, arg);
		if (rc)
			return rc;
		if (++lap == power) {
			mark = r;
			power <<= 1;
			lap = 0;
		}
		r = load_acquire(&links_of(m, &mhd)->next);
		if (r == mark)
			break;
	}
	return 0;
}

struct group_walk {
	struct walk *w;
	const struct entry *head, *hhd;
};

static int give_member(shmg_t *h, const struct entry *m, const struct entry *mhd, void *arg)
{
	struct group_walk *g = arg;
	return give(h, g->w, g->head, g->hhd, m, mhd);
}

static int walk_group(shmg_t *h, struct walk *w, const struct entry *head, const struct entry *hhd)
{
	struct group_walk g = {w, head, hhd};
	return hhd->kind == K_GROUP ? list_walk(h, head, hhd, give_member, &g) : 0;
}

static int walk_head(shmg_t *h, const struct entry *head, const struct entry *hhd, void *w)
{
	return walk_group(h, w, head, hhd);
}

static long members_walk(shmg_t *h, const char *key, size_t key_len, struct walk *w)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	struct keyref k;
	if ((rc = key_prepare(h, key, key_len, w->opts, 0, &k)))
		return rc == -ENOTCONN ? 0 : rc;
	w->limit = w->opts ? w->opts->limit : 0;
	read_enter(h);
	if (key[key_len - 1] == '/') {
		for (uint32_t s = 0; s < h->geo.shards && !w->stop; s++)
			prefix_walk(h, &k, s, walk_head, w);
	} else {
		struct entry hhd;
		const struct entry *head = index_get(h, &k, K_GROUP, &hhd);
		if (head)
			walk_group(h, w, head, &hhd);
	}
	read_exit(h);
	if (w->stop && w->stop != 1 << 30)
		return w->stop;
	return w->given;
}

long shmg_members(shmg_t *h, const char *key, size_t key_len, shmg_entry_fn fn, void *arg,
		  const struct shmg_opts *opts)
{
	struct walk w = {.fn = fn, .arg = arg, .opts = opts, .use_extract = true};
	return members_walk(h, key, key_len, &w);
}

long shmg_local_members(shmg_t *h, const char *key, size_t key_len, shmg_entry_fn fn, void *arg,
			const struct shmg_opts *opts)
{
	struct walk w = {.fn = fn, .arg = arg, .opts = opts, .local_only = true, .use_extract = true};
	return members_walk(h, key, key_len, &w);
}

struct ids_ctx {
	shmg_id_t *ids;
	size_t cap, n;
};

static int collect_id(const struct shmg_entry *e, void *arg)
{
	struct ids_ctx *c = arg;
	if (c->n < c->cap)
		c->ids[c->n] = e->id;
	c->n++;
	return 0;
}

long shmg_member_ids(shmg_t *h, const char *key, size_t key_len, shmg_id_t *ids, size_t cap,
		     const struct shmg_opts *opts)
{
	if (cap && !ids)
		return -EINVAL;
	struct ids_ctx c = {ids, cap, 0};
	struct walk w = {.fn = collect_id, .arg = &c, .opts = opts};
	return members_walk(h, key, key_len, &w);
}

/* The member count of an exact key from its head's counters, or -1 when
 * they may differ from what a walk gives.  They count every member linked,
 * and a walk skips only members of endpoints hidden from readers (dead or
 * closing, not yet removed): while none is hidden (arena_header.hidden, low
 * half 0) and none gets hidden during the read (the word unchanged), the
 * counter is the walk's answer.  Remote members are never hidden.  A join
 * or leave changes the list and the counters inside its in-flight record:
 * one that died in between left the record set until its shard's repair,
 * and the walk answers meanwhile. */
static long counted(shmg_t *h, const struct keyref *k, bool local_only)
{
	uint64_t before = load_acquire(&h->hdr->hidden);
	if ((uint32_t)before || load_relaxed(&shard_at(h, k->shard)->inflight_op))
		return -1;
	struct entry hhd;
	long n = 0;
	read_enter(h);
	const struct entry *head = index_get(h, k, K_GROUP, &hhd);
	if (head) {
		const struct entry_links *l = links_of(head, &hhd);
		n = local_only ? load_relaxed(&l->tree.local) : load_relaxed(&l->aux);
	}
	read_exit(h);
	__atomic_thread_fence(__ATOMIC_ACQUIRE); /* the counter's load before the re-check */
	return load_relaxed(&h->hdr->hidden) == before ? n : -1;
}

static long member_count(shmg_t *h, const char *key, size_t key_len,
			 const struct shmg_opts *opts, bool local_only)
{
	struct shmg_opts o = opts ? *opts : (struct shmg_opts){0};
	o.limit = 0;
	struct keyref k;
	int rc = handle_check(h);
	if (rc)
		return rc;
	if (key && key_len && key[key_len - 1] != '/') {
		if ((rc = key_prepare(h, key, key_len, &o, 0, &k)))
			return rc == -ENOTCONN ? 0 : rc;
		long n = counted(h, &k, local_only);
		if (n >= 0)
			return n;
	}
	struct walk w = {.opts = &o, .local_only = local_only};
	return members_walk(h, key, key_len, &w);
}

long shmg_member_count(shmg_t *h, const char *key, size_t key_len, const struct shmg_opts *opts)
{
	return member_count(h, key, key_len, opts, false);
}

long shmg_local_member_count(shmg_t *h, const char *key, size_t key_len,
			     const struct shmg_opts *opts)
{
	return member_count(h, key, key_len, opts, true);
}

/* ---- every entry ----------------------------------------------------- */

static int entries_visit(shmg_t *h, struct entry *blk, uint32_t pos, void *arg)
{
	(void)pos;
	struct walk *w = arg;
	struct entry hd, khd;
	const struct entry *e = entry_read(h, ref_of(h, blk), &hd);
	/* An entry of a cluster no longer connected is gone for readers, even
	 * before the shard's next locker sweeps it (a disconnect killed or
	 * held up half way). */
	if (!e || (entry_role(&hd) != K_REG && entry_role(&hd) != K_MEMBER) || !entry_live(h, &hd) ||
	    (w->local_only && hd.node != h->node) || !cluster_ref_valid(h, hd.cluster))
		return 0;
	const struct entry *keyholder = e;
	khd = hd;
	if (hd.kind == K_MEMBER &&
	    (!(keyholder = entry_read(h, load_relaxed(&links_of(e, &hd)->aux), &khd)) ||
	     khd.kind != K_GROUP))
		return 0;
	struct shmg_entry pub;
	char clbuf[64];
	entry_fill_public(h, e, &hd, keyholder, &khd, &pub, clbuf);
	const void *meta;
	ssize_t n = meta_extract(h, NULL, e, &hd, &meta);
	if (n < 0)
		return w->stop = (int)n;
	pub.meta = meta;
	pub.meta_len = (size_t)n;
	w->given++;
	int rc = w->fn ? w->fn(&pub, w->arg) : 0;
	return rc ? (w->stop = rc) : 0;
}

long shmg_entries(shmg_t *h, int all_nodes, shmg_entry_fn fn, void *arg)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	struct walk w = {.fn = fn, .arg = arg, .local_only = !all_nodes};
	read_enter(h);
	for (uint32_t s = 0; s < h->geo.shards && !w.stop; s++)
		index_foreach(h, s, entries_visit, &w);
	read_exit(h);
	return w.stop ? w.stop : w.given;
}

long shmg_local_entries(shmg_t *h, shmg_entry_fn fn, void *arg)
{
	return shmg_entries(h, 0, fn, arg);
}
