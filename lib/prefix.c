/* SPDX-License-Identifier: MIT */
/*
 * The prefix tree: what lets a prefix query (a key ending in '/') cost in
 * proportion to what it returns instead of to the arena.
 *
 * A key's prefixes are its '/'-terminated proper prefixes: "room/x/a" has
 * "room/x/" (its parent prefix) and "room/".  prefix_parent_len is the one
 * definition of them; monitor routing walks the same chain.
 *
 * Per shard, every prefix with group heads of that shard below it has a
 * prefix node (K_PREFIX, key = the prefix), indexed in the shard's own table
 * under (cluster, prefix) — so one prefix has a node in each shard that holds
 * groups under it.  A node lists its direct children, the heads whose parent
 * prefix it is and the nodes one level down, from links.next through the
 * children's links.sib (links.prev backwards, for writers).  A head or node
 * whose key has a parent prefix is on exactly one list, its parent's, for as
 * long as it is indexed; links.tree.parent names that node.  Registrations
 * never touch the tree, and everything a group write touches is in the
 * head's own shard: no second lock.
 *
 * Query for P: per shard, one index probe for P's node and a walk of its
 * subtree, O(shards + nodes + heads) plus the members given.  The walk keeps
 * a stack of sibling continuations (a child's key is longer than its
 * parent's, so the depth is at most the key length) and checks every child
 * on a private header copy: a head or node of the query's cluster whose key
 * extends its parent's and starts with P.  The whole walk is bounded by the
 * arena's block count.  A scribbled tree ends a query early, never crashes
 * or hangs it, and never yields a group outside P.
 *
 * Writers (shard lock).  Link: a new head, once indexed and before its first
 * member is linked; missing nodes are made top-down, each indexed and then
 * linked under its parent (a query for the node's own prefix may find it
 * before its parent lists it: it holds nothing yet).  A child's sib, prev
 * and parent are written while it is not
 * on any list; one release store of the list's first link publishes it.
 * Unlink: one release store of the predecessor's link (the child's own sib
 * stays, for readers standing on it).  A head is unlinked before it leaves
 * the index; a node left without children is unlinked, dropped from the
 * index and retired, and so on up, as far as the limbo ring has room (an
 * empty node left behind costs a probe, nothing else, and goes with the
 * next prune or repair).
 *
 * Crashes: blocks are freed only through limbo, and every publication is one
 * store, so a writer killed anywhere leaves lists a reader can walk.  Repair
 * (repair.c) calls prefix_repair_lists before it marks reachable blocks: each
 * node's list keeps only sound, indexed children, each once, with prev,
 * parent and count rewritten (so the tree reaches nothing the index does not
 * hold); and prefix_repair_links at its end, once blocks can be allocated
 * again: every indexed head and node not on its parent's list is linked
 * (making missing nodes), then empty nodes are pruned.
 *
 * Parked nodes.  A top-level node ("jobs/", with no parent prefix) whose
 * last child leaves is not pruned at once but parked, empty and indexed, in
 * its shard's ring of PARKED_NODES refs (shard_header.parked).  It is pruned
 * when a later one pushes it out, unless it has children again by then, or
 * by a cluster sweep or a repair.  So a group alone under its prefix that
 * keeps being joined and left ("jobs/export") does not make and prune a node
 * each time: an allocation, an index insert and probes on the path to the
 * event.  Only top-level nodes are parked, so a parked node holds no
 * ancestor alive: a shard keeps at most PARKED_NODES empty nodes, each
 * costing a block, an index slot and a probe.  The ring holds refs only,
 * each checked before it is pruned (a prefix node, indexed under its own
 * key, childless), so a stale or scribbled one is passed over.
 *
 * Cost: a node is a block and an index slot, shared by every group below
 * its prefix in the shard; a group whose parent prefix is its own alone
 * ("user/<id>/session") pays for one node by itself.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "scan.h"

size_t prefix_parent_len(const char *key, size_t len)
{
	for (; len > 1; len--)
		if (key[len - 2] == '/')
			return len - 1;
	return 0;
}

/* The keyref of the node of prefix k->key[0..len) in shard (not the shard
 * of its hash: nodes live with their heads). */
static struct keyref node_key(const struct keyref *k, size_t len, uint32_t shard)
{
	return (struct keyref){k->key, len, k->cluster, sg_hash(k->key, len, k->seed), shard,
			       k->seed};
}

static struct entry *node_find(shmg_t *h, const struct keyref *k, size_t len, uint32_t shard,
			       uint32_t *pos)
{
	struct keyref nk = node_key(k, len, shard);
	return index_find(h, &nk, K_PREFIX, pos);
}

static bool limbo_has_room(const shmg_t *h, uint32_t shard)
{
	const struct shard_header *sh = shard_at(h, shard);
	return sh->limbo_head - sh->limbo_tail < LIMBO_CAP;
}

/* Puts child c first on node n's list. */
static void child_link(shmg_t *h, struct entry *n, struct entry *c)
{
	struct entry_links *nl = links_at(h, n), *cl = links_at(h, c);
	ref_t cref = ref_of(h, c), first = nl->next;
	cl->sib = first;
	cl->prev = 0;
	cl->tree.parent = ref_of(h, n);
	struct entry *f = first ? entry_at(h, first) : NULL;
	if (f)
		links_at(h, f)->prev = cref;
	store_release(&nl->next, cref); /* readers of n's subtree see c */
	store_relaxed(&nl->aux, nl->aux + 1);
}

static void child_unlink(shmg_t *h, struct entry *n, struct entry *c)
{
	struct entry_links *nl = links_at(h, n), *cl = links_at(h, c);
	ref_t p = cl->prev, x = cl->sib;
	struct entry *pe = p ? entry_at(h, p) : NULL, *xe = x ? entry_at(h, x) : NULL;
	store_release(pe ? &links_at(h, pe)->sib : &nl->next, x);
	if (xe)
		links_at(h, xe)->prev = p;
	store_relaxed(&nl->aux, nl->aux - 1);
	cl->tree.parent = 0;
}

/* The length of the shortest prefix of key longer than `from`, at most upto
 * (upto itself ends in '/'). */
static size_t next_prefix_len(const char *key, size_t from, size_t upto)
{
	while (from < upto && key[from] != '/')
		from++;
	return from + 1 < upto ? from + 1 : upto;
}

/* Makes the node of prefix k->key[0..len): indexed, then linked under
 * parent (if any).  NULL if there was no space. */
static struct entry *node_make(shmg_t *h, const struct keyref *k, size_t len, uint32_t shard,
			       struct entry *parent)
{
	struct keyref nk = node_key(k, len, shard);
	const struct author *saved = h->author; /* a node belongs to no endpoint */
	h->author = NULL;
	ref_t ref;
	struct entry *n = entry_new(h, shard, K_PREFIX, &nk, NULL, 0, &ref);
	h->author = saved;
	if (!n)
		return NULL;
	if (index_insert(h, shard, nk.hash, ref) < 0) {
		alloc_free_block(h, shard, ref);
		return NULL;
	}
	TEST_POINT("prefix:indexed");
	if (parent)
		child_link(h, parent, n);
	return n;
}

/* ---- parked nodes ---------------------------------------------------- */

static void unpark(shmg_t *h, uint32_t shard, ref_t ref)
{
	struct shard_header *sh = shard_at(h, shard);
	for (unsigned i = 0; i < PARKED_NODES; i++)
		if (sh->parked[i] == ref)
			sh->parked[i] = 0;
}

/* Parks childless node ref; returns the ref it pushed out of the ring (0:
 * none), for the caller to prune. */
static ref_t park(shmg_t *h, uint32_t shard, ref_t ref)
{
	struct shard_header *sh = shard_at(h, shard);
	unpark(h, shard, ref); /* never twice */
	unsigned at = sh->parked_next % PARKED_NODES;
	ref_t out = sh->parked[at];
	sh->parked[at] = ref;
	sh->parked_next = at + 1;
	TEST_POINT("prefix:parked");
	return out;
}

/* The node of prefix k->key[0..len), made with its missing ancestors if
 * need be, top-down; NULL if there was no space (nodes made meanwhile stay,
 * empty).  A parked node found is taken out of the ring: it is about to have
 * a child. */
static struct entry *node_get(shmg_t *h, const struct keyref *k, size_t len, uint32_t shard)
{
	struct entry *n = node_find(h, k, len, shard, NULL);
	size_t have = len;
	while (!n && (have = prefix_parent_len(k->key, have)))
		n = node_find(h, k, have, shard, NULL);
	if (n && !links_at(h, n)->next)
		unpark(h, shard, ref_of(h, n));
	for (size_t l = have; l < len;) {
		l = next_prefix_len(k->key, l, len);
		if (!(n = node_make(h, k, l, shard, n)))
			return NULL;
	}
	return n;
}

static void prune_if_empty(shmg_t *h, uint32_t shard, ref_t ref);

/* Removes the node of prefix k->key[0..len) if it has no children, then its
 * parent if that is left without, and so on up.  With `keep`, a top-level
 * node (one with no parent prefix) is parked instead, and the node it pushes
 * out of the ring is pruned. */
static void node_prune(shmg_t *h, const struct keyref *k, size_t len, uint32_t shard, bool keep)
{
	while (len && limbo_has_room(h, shard)) {
		uint32_t pos;
		struct entry *n = node_find(h, k, len, shard, &pos);
		if (!n || links_at(h, n)->next)
			return;
		size_t plen = prefix_parent_len(k->key, len);
		struct entry *parent = plen ? node_find(h, k, plen, shard, NULL) : NULL;
		if (keep && !plen) {
			prune_if_empty(h, shard, park(h, shard, ref_of(h, n)));
			return;
		}
		unpark(h, shard, ref_of(h, n));
		if (parent && links_at(h, n)->tree.parent == ref_of(h, parent))
			child_unlink(h, parent, n);
		TEST_POINT("prefix:pruned");
		index_clear_slot(h, shard, pos);
		epoch_retire(h, shard, ref_of(h, n), LIMBO_BLOCK);
		len = plen;
	}
}

/* The deepest existing node on the way up from prefix length len is pruned
 * (after a failed link: the nodes made for it may be empty). */
static void prune_path(shmg_t *h, const struct keyref *k, size_t len, uint32_t shard)
{
	for (; len; len = prefix_parent_len(k->key, len)) {
		if (node_find(h, k, len, shard, NULL)) {
			node_prune(h, k, len, shard, false);
			return;
		}
	}
}

static int link_under_parent(shmg_t *h, const struct keyref *k, struct entry *c)
{
	size_t plen = prefix_parent_len(k->key, k->len);
	if (!plen)
		return 0;
	struct entry *n = node_get(h, k, plen, k->shard);
	if (!n) {
		prune_path(h, k, plen, k->shard);
		return -ENOSPC;
	}
	child_link(h, n, c);
	return 0;
}

int prefix_link_head(shmg_t *h, const struct keyref *k, struct entry *head)
{
	int rc = link_under_parent(h, k, head);
	TEST_POINT("prefix:linked");
	return rc;
}

int prefix_make_parent(shmg_t *h, const struct keyref *k)
{
	size_t plen = prefix_parent_len(k->key, k->len);
	if (plen && !node_get(h, k, plen, k->shard)) {
		prune_path(h, k, plen, k->shard);
		return -ENOSPC;
	}
	return 0;
}

void prefix_drop_parent(shmg_t *h, const struct keyref *k)
{
	size_t plen = prefix_parent_len(k->key, k->len);
	if (plen)
		node_prune(h, k, plen, k->shard, false);
}

void prefix_replace_child(shmg_t *h, struct entry *old, struct entry *new)
{
	struct entry_links *ol = links_at(h, old), *nl = links_at(h, new);
	struct entry *n = ol->tree.parent ? entry_at(h, ol->tree.parent) : NULL;
	if (!n || n->kind != K_PREFIX)
		return; /* on no list */
	nl->sib = ol->sib;
	nl->prev = ol->prev;
	nl->tree.parent = ol->tree.parent;
	struct entry *pe = ol->prev ? entry_at(h, ol->prev) : NULL;
	struct entry *xe = ol->sib ? entry_at(h, ol->sib) : NULL;
	store_release(pe ? &links_at(h, pe)->sib : &links_at(h, n)->next, ref_of(h, new));
	if (xe)
		links_at(h, xe)->prev = ref_of(h, new);
	TEST_POINT("prefix:replaced");
}

/* The keyref of a head or node block, from one read of its header. */
static bool block_key(shmg_t *h, const struct entry *e, uint32_t shard, struct keyref *k,
		      struct entry *hd)
{
	if (!entry_read(h, ref_of(h, e), hd) || (hd->kind != K_GROUP && hd->kind != K_PREFIX))
		return false;
	*k = (struct keyref){entry_key(e), hd->key_len, hd->cluster, 0, shard,
			     cluster_ref_seed(h, hd->cluster)};
	return true;
}

/* Prunes the block at ref if it is a childless prefix node of shard (then
 * its ancestors left childless, as node_prune does). */
static void prune_if_empty(shmg_t *h, uint32_t shard, ref_t ref)
{
	struct entry *n = ref ? entry_at(h, ref) : NULL;
	struct keyref k;
	struct entry hd;
	if (n && block_key(h, n, shard, &k, &hd) && hd.kind == K_PREFIX)
		node_prune(h, &k, k.len, shard, false);
}

void prefix_prune_parked(shmg_t *h, uint32_t shard)
{
	struct shard_header *sh = shard_at(h, shard);
	for (unsigned i = 0; i < PARKED_NODES; i++) {
		ref_t ref = sh->parked[i];
		sh->parked[i] = 0;
		prune_if_empty(h, shard, ref);
	}
	sh->parked_next = 0;
}

void prefix_unlink_head(shmg_t *h, uint32_t shard, struct entry *head)
{
	struct keyref k;
	struct entry hd;
	if (!block_key(h, head, shard, &k, &hd))
		return;
	size_t plen = prefix_parent_len(k.key, k.len);
	struct entry *n = plen ? node_find(h, &k, plen, shard, NULL) : NULL;
	/* Not linked: a join that failed before linking it. */
	if (!n || links_at(h, head)->tree.parent != ref_of(h, n))
		return;
	child_unlink(h, n, head);
	TEST_POINT("prefix:unlinked");
	node_prune(h, &k, plen, shard, true);
}

/* ---- readers --------------------------------------------------------- */

int prefix_walk(shmg_t *h, const struct keyref *p, uint32_t shard, member_fn fn, void *arg)
{
	struct keyref nk = *p;
	nk.shard = shard;
	struct entry hd;
	const struct entry *root = index_get(h, &nk, K_PREFIX, &hd);
	if (!root)
		return 0;
	/* The continuation of each list above the one walked, and the key
	 * length of the node that list belongs to. */
	struct frame {
		ref_t next;
		uint32_t len;
	} stack[SHMG_KEY_MAX_LIMIT];
	uint32_t depth = 0, len = hd.key_len;
	uint64_t left = h->size / CACHE_LINE;
	/* Acquire loads pair with the release stores that link (child_link). */
	ref_t r = load_acquire(&links_of(root, &hd)->next);
	for (;;) {
		while (!r && depth) {
			depth--;
			r = stack[depth].next;
			len = stack[depth].len;
		}
		if (!r || !left--)
			return 0;
		const struct entry *e = entry_read(h, r, &hd);
		if (!e || (hd.kind != K_GROUP && hd.kind != K_PREFIX) || hd.cluster != p->cluster ||
		    hd.key_len <= len || !bytes_equal(entry_key(e), p->key, p->len)) {
			r = 0; /* a damaged list: the rest of it is lost to this walk */
			continue;
		}
		ref_t sib = load_acquire(&links_of(e, &hd)->sib);
		if (hd.kind == K_GROUP) {
			int rc = fn(h, e, &hd, arg);
			if (rc)
				return rc;
			r = sib;
		} else if (depth < sizeof(stack) / sizeof(stack[0])) {
			stack[depth++] = (struct frame){sib, len};
			len = hd.key_len;
			r = load_acquire(&links_of(e, &hd)->next);
		} else {
			r = sib; /* deeper than any sound key: damage */
		}
	}
}

/* ---- repair and check ------------------------------------------------ */

bool prefix_child_fits(const struct entry *n, const struct entry *nhd, const struct entry *c,
		       const struct entry *chd)
{
	return (chd->kind == K_GROUP || chd->kind == K_PREFIX) && chd->cluster == nhd->cluster &&
	       chd->key_len > nhd->key_len && bytes_equal(entry_key(c), entry_key(n), nhd->key_len) &&
	       prefix_parent_len(entry_key(c), chd->key_len) == nhd->key_len;
}

struct tree_fix {
	struct scan sc; /* only .shard: for scan_entry */
	uint64_t *on_list; /* per block of the arena: on some node's list */
	uint64_t max_list;
	ref_t *found;
	size_t nfound, cap;
};

static bool bit_test(const uint64_t *bm, int64_t i)
{
	return bm[i / 64] >> (i % 64) & 1;
}

static void bit_set(uint64_t *bm, int64_t i)
{
	bm[i / 64] |= 1ull << (i % 64);
}

static bool indexed_as_itself(shmg_t *h, uint32_t shard, const struct entry *c,
			      const struct entry *chd)
{
	struct keyref k = {entry_key(c), chd->key_len, chd->cluster, entry_hash(h, c), shard, 0};
	return index_find(h, &k, chd->kind, NULL) == c;
}

/* Rewrites node blk's list: sound, indexed children not already on a list
 * are kept (a sane block that does not fit is stepped over, anything else
 * cuts the list there), with prev, parent and the count rewritten. */
static int fix_children(shmg_t *h, struct entry *blk, uint32_t pos, void *arg)
{
	(void)pos;
	struct tree_fix *f = arg;
	struct entry nhd;
	struct entry *n = scan_entry(h, &f->sc, ref_of(h, blk), &nhd, NULL);
	if (!n || nhd.kind != K_PREFIX)
		return 0;
	struct entry_links *nl = links_of(n, &nhd);
	uint32_t *link = &nl->next, count = 0;
	ref_t prev = 0;
	uint64_t steps = 0;
	for (ref_t r = load_relaxed(link); r; r = load_relaxed(link)) {
		struct entry chd;
		int64_t b;
		struct entry *c = ++steps <= f->max_list ? scan_entry(h, &f->sc, r, &chd, &b) : NULL;
		if (c && bit_test(f->on_list, b))
			c = NULL; /* a cycle, or a child on two lists */
		if (!c) {
			store_release(link, 0);
			break;
		}
		struct entry_links *cl = links_of(c, &chd);
		if (!prefix_child_fits(n, &nhd, c, &chd) || !indexed_as_itself(h, f->sc.shard, c, &chd)) {
			store_release(link, load_relaxed(&cl->sib));
			continue;
		}
		bit_set(f->on_list, b);
		cl->prev = prev;
		cl->tree.parent = ref_of(h, n);
		prev = r;
		link = &cl->sib;
		count++;
	}
	store_relaxed(&nl->aux, count);
	return 0;
}

static int tree_fix_init(shmg_t *h, uint32_t shard, uint64_t max_list, struct tree_fix *f)
{
	*f = (struct tree_fix){.sc = {.shard = shard}, .max_list = max_list};
	f->on_list = calloc(((size_t)h->geo.npages * SCAN_BLOCKS_PER_PAGE + 63) / 64, 8);
	return f->on_list ? 0 : -ENOMEM;
}

int prefix_repair_lists(shmg_t *h, uint32_t shard, uint64_t max_list)
{
	struct tree_fix f;
	if (tree_fix_init(h, shard, max_list, &f) < 0)
		return -ENOMEM;
	index_foreach(h, shard, fix_children, &f);
	free(f.on_list);
	return 0;
}

static int mark_children(shmg_t *h, struct entry *blk, uint32_t pos, void *arg)
{
	(void)pos;
	struct tree_fix *f = arg;
	struct entry nhd, chd;
	struct entry *n = scan_entry(h, &f->sc, ref_of(h, blk), &nhd, NULL);
	if (!n || nhd.kind != K_PREFIX)
		return 0;
	uint64_t steps = 0;
	for (ref_t r = load_relaxed(&links_of(n, &nhd)->next); r && ++steps <= f->max_list;) {
		int64_t b;
		struct entry *c = scan_entry(h, &f->sc, r, &chd, &b);
		if (!c || bit_test(f->on_list, b))
			break;
		bit_set(f->on_list, b);
		r = load_relaxed(&links_of(c, &chd)->sib);
	}
	return 0;
}

/* Adds ref to f's findings; 1 (stop the walk) if out of memory. */
static int found_push(struct tree_fix *f, ref_t ref)
{
	if (f->nfound == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 64;
		ref_t *o = realloc(f->found, cap * sizeof(*o));
		if (!o)
			return 1;
		f->found = o;
		f->cap = cap;
	}
	f->found[f->nfound++] = ref;
	return 0;
}

/* Finds the indexed heads and nodes that have a parent prefix but are on
 * no list. */
static int collect_orphan(shmg_t *h, struct entry *blk, uint32_t pos, void *arg)
{
	(void)pos;
	struct tree_fix *f = arg;
	struct entry hd;
	int64_t b;
	struct entry *e = scan_entry(h, &f->sc, ref_of(h, blk), &hd, &b);
	if (!e || (hd.kind != K_GROUP && hd.kind != K_PREFIX) || bit_test(f->on_list, b) ||
	    !prefix_parent_len(entry_key(e), hd.key_len))
		return 0;
	return found_push(f, ref_of(h, e));
}

/* Finds the nodes without children. */
static int collect_empty(shmg_t *h, struct entry *blk, uint32_t pos, void *arg)
{
	(void)pos;
	struct tree_fix *f = arg;
	struct entry hd;
	struct entry *e = scan_entry(h, &f->sc, ref_of(h, blk), &hd, NULL);
	if (!e || hd.kind != K_PREFIX || load_relaxed(&links_of(e, &hd)->next))
		return 0;
	return found_push(f, ref_of(h, e));
}

int prefix_repair_links(shmg_t *h, uint32_t shard, uint64_t max_list)
{
	struct tree_fix f;
	if (tree_fix_init(h, shard, max_list, &f) < 0)
		return -ENOMEM;
	index_foreach(h, shard, mark_children, &f);
	int rc = index_foreach(h, shard, collect_orphan, &f) ? -ENOMEM : 0;
	/* Linked only now that the walk is over: making a node may resize the
	 * table the walk was on. */
	for (size_t i = 0; i < f.nfound; i++) {
		struct entry *c = entry_at(h, f.found[i]);
		struct keyref k;
		struct entry hd;
		if (c && block_key(h, c, shard, &k, &hd) && link_under_parent(h, &k, c) < 0)
			sg_log(h, SHMG_LOG_INFO, "shard %u: no space to link a group into its prefix",
			       shard);
	}
	f.nfound = 0;
	if (!rc && index_foreach(h, shard, collect_empty, &f))
		rc = -ENOMEM;
	for (size_t i = 0; i < f.nfound; i++) {
		struct entry *n = entry_at(h, f.found[i]);
		struct keyref k;
		struct entry hd;
		if (n && block_key(h, n, shard, &k, &hd))
			node_prune(h, &k, k.len, shard, false);
	}
	/* Every childless node went above (as far as the limbo ring let). */
	struct shard_header *sh = shard_at(h, shard);
	memset(sh->parked, 0, sizeof(sh->parked));
	sh->parked_next = 0;
	free(f.found);
	free(f.on_list);
	return rc;
}
