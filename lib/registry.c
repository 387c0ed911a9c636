/* SPDX-License-Identifier: MIT */
/*
 * The registry: unique (cluster, key) -> endpoint + metadata, plus the input
 * checks and read-side helpers shared with groups.c.
 *
 * Write paths follow the shard's publish-last rule (shard.c): a new or
 * replacement block is filled while unreachable, published by one release
 * store, and only then counted, logged and (for a replaced block) retired.
 * Read paths run inside a read section and only load.
 */
#include <string.h>

#include "probe.h"

/* key_prepare for a resolved cluster (ref, seed), inlined into the
 * lookups. */
static inline __attribute__((always_inline)) int
key_prep_in(shmg_t *h, const char *key, size_t len, uint32_t ref, uint64_t seed, int flags,
	    struct keyref *k)
{
	/* len - 1 wraps for len 0: one compare for both bounds. */
	if (unlikely(!key || len - 1 >= h->geo.key_max))
		return -EINVAL;
	if ((flags & KEY_WRITE) && key[len - 1] == '/')
		return -EINVAL;
	if (unlikely(bytes_have_nul(key, len)))
		return -EINVAL;
	k->hash = sg_hash_inline(key, len, seed);
	k->key = key;
	k->len = len;
	k->cluster = ref;
	k->seed = seed;
	k->shard = shard_of(h, k->hash);
	return 0;
}

/* A named cluster is resolved after the key's checks, so that a bad key is
 * -EINVAL whatever the cluster.  Out of line: the lookups' common case is
 * the default cluster. */
static __attribute__((noinline)) int key_prep_named(shmg_t *h, const char *key, size_t len,
						     const char *cluster, int flags,
						     struct keyref *k)
{
	if (!key || len == 0 || len > h->geo.key_max || bytes_have_nul(key, len))
		return -EINVAL;
	uint32_t ref;
	uint64_t seed;
	int rc = cluster_resolve(h, cluster, &ref, &seed);
	return rc ? rc : key_prep_in(h, key, len, ref, seed, flags, k);
}

/* The default cluster (no opts->cluster) needs no resolution. */
static inline __attribute__((always_inline)) int
key_prep(shmg_t *h, const char *key, size_t len, const char *cluster, int flags, struct keyref *k)
{
	if (likely(!cluster))
		return key_prep_in(h, key, len, cluster_default_ref(h), DEFAULT_CLUSTER_SEED, flags, k);
	/* Through a copy: k's address never leaves the inlined code, so the
	 * compiler can keep its fields in registers. */
	struct keyref named;
	int rc = key_prep_named(h, key, len, cluster, flags, &named);
	if (!rc)
		*k = named;
	return rc;
}

int key_prepare(shmg_t *h, const char *key, size_t len, const struct shmg_opts *o, int flags,
		struct keyref *k)
{
	return key_prep(h, key, len, o ? o->cluster : NULL, flags, k);
}

int meta_check(const shmg_t *h, const void *meta, size_t len)
{
	return (len > h->geo.meta_max || (!meta && len)) ? -EINVAL : 0;
}

bool meta_equal(const shmg_t *h, const struct entry *e, const void *meta, size_t len)
{
	struct entry hd;
	return entry_read(h, ref_of(h, e), &hd) && hd.meta_len == len &&
	       (!len || memcmp(entry_meta_of(e, &hd), meta, len) == 0);
}

ssize_t meta_extract(shmg_t *h, const struct shmg_opts *o, const struct entry *e,
		     const struct entry *ehd, const void **out)
{
	shmg_extract_fn fn = o && o->extract_meta ? o->extract_meta : h->extract;
	void *arg = o && o->extract_meta ? o->extract_arg : h->extract_arg;
	if (!fn) {
		*out = entry_meta_of(e, ehd);
		return ehd->meta_len;
	}
	/* scratch holds geo.meta_max bytes, whatever the arena says. */
	ssize_t n = fn(entry_meta_of(e, ehd), ehd->meta_len, h->scratch, h->geo.meta_max, arg);
	if (n < 0)
		return n;
	if ((size_t)n > h->geo.meta_max)
		return -EOVERFLOW;
	*out = h->scratch;
	return n;
}

void entry_fill_public(shmg_t *h, const struct entry *e, const struct entry *ehd,
		       const struct entry *keyholder, const struct entry *khd,
		       struct shmg_entry *pub, char clbuf[64])
{
	pub->kind = ehd->kind == K_REG ? SHMG_REGISTRY : SHMG_MEMBER;
	pub->id = (shmg_id_t){ehd->node, ehd->ep_slot, ehd->ep_gen};
	pub->pid = ehd->pid;
	pub->time_ns = ehd->time_ns;
	pub->cluster = cluster_name_of(h, ehd->cluster, clbuf);
	pub->key = entry_key(keyholder);
	pub->key_len = khd->key_len;
	pub->meta = entry_meta_of(e, ehd);
	pub->meta_len = ehd->meta_len;
}

/* Zero-copy view of a registration: every pointer is into the arena (the
 * cluster name into its slot of the cluster table), valid for the read
 * section.  A name without its NUL (a damaged slot) is not handed out. */
static void entry_fill_ref(shmg_t *h, const struct entry *e, const struct entry *hd,
			   struct shmg_entry *pub)
{
	uint32_t cs = cluster_slot_of(hd->cluster);
	const char *cluster = NULL;
	if (cs && cs < h->geo.max_clusters) {
		cluster = cluster_at(h, cs)->name;
		if (load_relaxed(&cluster[SHMG_CLUSTER_NAME_MAX]) != 0)
			cluster = NULL;
	}
	*pub = (struct shmg_entry){
		.kind = SHMG_REGISTRY,
		.id = {hd->node, hd->ep_slot, hd->ep_gen},
		.pid = hd->pid,
		.time_ns = hd->time_ns,
		.cluster = cluster,
		.key = entry_key(e),
		.key_len = hd->key_len,
		.meta = entry_meta_of(e, hd),
		.meta_len = hd->meta_len,
	};
}

static bool is_mine(const shmg_t *h, const struct entry *e)
{
	return e->node == h->node && e->ep_slot == h->slot && e->ep_gen == h->gen;
}

/* Is the local endpoint that owns e dead (its process gone)? */
static bool owner_dead(shmg_t *h, const struct entry *e)
{
	if (e->node != h->node)
		return false;
	return !entry_live(h, e) || !endpoint_alive(h, e->ep_slot, e->ep_gen);
}

int reg_replace(shmg_t *h, const struct keyref *k, struct entry *old, uint32_t pos,
		const void *meta, size_t meta_len, ref_t *ref_out)
{
	*ref_out = ref_of(h, old);
	if (meta_equal(h, old, meta, meta_len))
		return 0; /* identical: no event, no replication, time unchanged */
	ref_t ref;
	struct entry *e = entry_new(h, k->shard, K_REG, k, meta, meta_len, &ref);
	if (!e)
		return -ENOSPC;
	TEST_POINT("register:allocated");
	inflight_set(h, k->shard, INFLIGHT_REPLACE, ref, ref_of(h, old), 0);
	index_replace_slot(h, k->shard, pos, ref);
	TEST_POINT("register:replaced");
	shard_event(h, k->shard, SHMG_EV_REGISTERED, REASON_NONE, e, old);
	oplog_append(h, k->shard, OP_REGISTER, REASON_NONE, e, k->key, k->len);
	inflight_clear(h, k->shard);
	epoch_retire(h, k->shard, ref_of(h, old), LIMBO_BLOCK);
	*ref_out = ref;
	return 0;
}

int reg_add(shmg_t *h, const struct keyref *k, const void *meta, size_t meta_len, ref_t *ref_out)
{
	ref_t ref;
	struct entry *e = entry_new(h, k->shard, K_REG, k, meta, meta_len, &ref);
	if (!e)
		return -ENOSPC;
	TEST_POINT("register:allocated");
	inflight_set(h, k->shard, INFLIGHT_ADD, ref, 0, 0);
	if (index_insert(h, k->shard, k->hash, ref) < 0) {
		inflight_clear(h, k->shard);
		alloc_free_block(h, k->shard, ref); /* never published */
		return -ENOSPC;
	}
	TEST_POINT("register:published");
	shard_count(h, k->shard, e, +1);
	shard_event(h, k->shard, SHMG_EV_REGISTERED, REASON_NONE, e, NULL);
	oplog_append(h, k->shard, OP_REGISTER, REASON_NONE, e, k->key, k->len);
	inflight_clear(h, k->shard);
	*ref_out = ref;
	return 0;
}

/* register_locked's answer when the key is held by a dead endpoint that
 * still owns its slot: the caller reaps it whole (one batch of events, all
 * shard locks) and tries again. */
#define REG_OWNER_DEAD 1

static int register_locked(shmg_t *h, const struct keyref *k, const void *meta, size_t meta_len,
			   uint32_t *dead_slot, uint32_t *dead_gen)
{
	TEST_POINT("register:locked");
	if (!cluster_ref_valid(h, k->cluster))
		return -ENOTCONN;
	uint32_t pos;
	struct entry *old = index_find(h, k, K_REG, &pos);
	if (old) {
		if (is_mine(h, old)) {
			ref_t ref;
			return reg_replace(h, k, old, pos, meta, meta_len, &ref);
		}
		if (!owner_dead(h, old))
			return -EEXIST;
		struct endpoint_slot *ep = old->ep_slot < h->geo.max_endpoints ? endpoint_at(h, old->ep_slot) : NULL;
		if (ep && load_relaxed(&ep->gen) == old->ep_gen && load_acquire(&ep->state) != EP_FREE) {
			*dead_slot = old->ep_slot;
			*dead_gen = old->ep_gen;
			return REG_OWNER_DEAD;
		}
		/* An entry whose endpoint is long gone: remove just it. */
		shard_remove_reg(h, k->shard, old, pos, REASON_EXIT);
	}
	ref_t ref;
	return reg_add(h, k, meta, meta_len, &ref);
}

int shmg_register(shmg_t *h, const char *key, size_t key_len, const void *meta, size_t meta_len,
		  const struct shmg_opts *opts)
{
	struct keyref k;
	int rc = handle_check(h);
	if (rc || (rc = meta_check(h, meta, meta_len)) || (rc = key_prepare(h, key, key_len, opts, KEY_WRITE, &k)))
		return rc;
	mailbox_warm(h);
	for (int attempt = 0;; attempt++) {
		uint32_t dead_slot = 0, dead_gen = 0;
		if ((rc = shard_lock(h, k.shard)) < 0)
			return rc;
		rc = register_locked(h, &k, meta, meta_len, &dead_slot, &dead_gen);
		shard_unlock(h, k.shard);
		if (rc != REG_OWNER_DEAD)
			return rc;
		/* Lazy reaping: the owner's death becomes one batch, as if the
		 * reaper had seen it; endpoint_release checks again under its
		 * lock that it is really dead. */
		if (attempt == 3)
			return -EEXIST;
		if ((rc = endpoint_release(h, dead_slot, dead_gen, REASON_EXIT)) < 0)
			return rc;
	}
}

int shmg_unregister(shmg_t *h, const char *key, size_t key_len, const struct shmg_opts *opts)
{
	struct keyref k;
	int rc = handle_check(h);
	if (rc || (rc = key_prepare(h, key, key_len, opts, KEY_WRITE, &k)))
		return rc;
	mailbox_warm(h);
	if ((rc = shard_lock(h, k.shard)) < 0)
		return rc;
	uint32_t pos;
	struct entry *e = NULL;
	if (!cluster_ref_valid(h, k.cluster))
		rc = -ENOTCONN;
	else if (!(e = index_find(h, &k, K_REG, &pos)) || !entry_live(h, e))
		rc = -ENOENT;
	else if (!is_mine(h, e))
		rc = -EPERM;
	else
		shard_remove_reg(h, k.shard, e, pos, REASON_NORMAL);
	shard_unlock(h, k.shard);
	return rc;
}

/* entry_live on a header copy. */
static inline bool copy_live(const shmg_t *h, const struct entry *hd)
{
	if (hd->node != h->node)
		return true; /* remote entries live and die by replication */
	return endpoint_visible(h, hd->ep_slot, hd->ep_gen);
}

/* Inside a read section: the live registration of k, or NULL; *hd is its
 * header copy, the only source of its lengths and identity. */
static inline __attribute__((always_inline)) const struct entry *
find_live(shmg_t *h, const struct keyref *k, struct entry *hd)
{
	const struct entry *e = index_lookup(h, k, K_REG, hd);
	return e && copy_live(h, hd) ? e : NULL;
}

/* The copying lookup of shmg_lookup and shmg_lookup_entry: on success *hd
 * is the registration's header copy.  Inlined into both, so that
 * shmg_lookup's code is what it would be written out. */
static inline __attribute__((always_inline)) int
lookup_copy(shmg_t *h, const char *key, size_t key_len, shmg_id_t *id, void *meta,
	    size_t meta_cap, size_t *meta_len, const struct shmg_opts *opts, struct entry *hd)
{
	struct keyref k;
	int rc = handle_check(h);
	if (unlikely(rc))
		return rc;
	if (unlikely((rc = key_prep(h, key, key_len, opts ? opts->cluster : NULL, 0, &k))))
		return rc == -ENOTCONN ? -ENOENT : rc;
	read_enter(h);
	const struct entry *e = find_live(h, &k, hd);
	if (!e) {
		rc = -ENOENT;
		goto out;
	}
	const void *m = (const uint8_t *)entry_key(e) + k.len; /* hd->key_len == k.len */
	ssize_t n = hd->meta_len;
	/* The extract hook (user code) runs only when its output is wanted. */
	if (unlikely(h->extract || (opts && opts->extract_meta)) && (meta || meta_len)) {
		/* Copies, so that hd and m stay in registers on the common path. */
		struct entry copy = *hd;
		const void *out;
		if ((n = meta_extract(h, opts, e, &copy, &out)) < 0) {
			rc = (int)n;
			goto out;
		}
		m = out;
	}
	if (meta) {
		if (unlikely((size_t)n > meta_cap)) {
			rc = -ENOBUFS;
			goto out;
		}
		bytes_copy(meta, m, (size_t)n);
	}
	if (meta_len)
		*meta_len = (size_t)n;
	if (id)
		*id = (shmg_id_t){hd->node, hd->ep_slot, hd->ep_gen};
out:
	read_exit(h);
	return rc;
}

int shmg_lookup(shmg_t *h, const char *key, size_t key_len, shmg_id_t *id, void *meta,
		size_t meta_cap, size_t *meta_len, const struct shmg_opts *opts)
{
	struct entry hd;
	return lookup_copy(h, key, key_len, id, meta, meta_cap, meta_len, opts, &hd);
}

int shmg_lookup_entry(shmg_t *h, const char *key, size_t key_len, struct shmg_entry *entry,
		      void *meta, size_t meta_cap, const struct shmg_opts *opts)
{
	struct entry hd;
	shmg_id_t id;
	size_t meta_len = 0;
	if (!entry)
		return handle_check(h) ? handle_check(h) : -EINVAL;
	int rc = lookup_copy(h, key, key_len, &id, meta, meta_cap, &meta_len, opts, &hd);
	if (rc)
		return rc;
	*entry = (struct shmg_entry){
		.kind = SHMG_REGISTRY,
		.id = id,
		.pid = hd.pid,
		.time_ns = hd.time_ns,
		.cluster = opts ? opts->cluster : NULL,
		.key = key,
		.key_len = key_len,
		.meta = meta_len ? meta : NULL,
		.meta_len = meta_len,
	};
	return 0;
}

int shmg_lookup_ref(shmg_t *h, const char *key, size_t key_len, struct shmg_entry *entry,
		    const struct shmg_opts *opts)
{
	struct keyref k;
	int rc = handle_check(h);
	if (unlikely(rc))
		return rc;
	if (unlikely(h->read_depth <= 0))
		return -EPERM;
	if (unlikely((rc = key_prep(h, key, key_len, opts ? opts->cluster : NULL, 0, &k))))
		return rc == -ENOTCONN ? -ENOENT : rc;
	struct entry hd;
	const struct entry *e = find_live(h, &k, &hd);
	if (!e)
		return -ENOENT;
	if (entry)
		entry_fill_ref(h, e, &hd, entry);
	return 0;
}

/* Three passes over a window of keys, so that each key's two cache misses
 * (bucket, entry) overlap with the other keys' instead of following each
 * other: hash and prefetch buckets; find candidates and prefetch entries;
 * compare. */
#define LOOKUP_WINDOW 32

static long lookup_many(shmg_t *h, const struct shmg_key *keys, size_t n, shmg_id_t *ids,
			struct shmg_entry *entries, int *rcs, const struct shmg_opts *opts)
{
	if (n && (!keys || !rcs))
		return -EINVAL;
	const char *cluster = opts ? opts->cluster : NULL;
	if (cluster && !cluster_name_valid(cluster))
		return -EINVAL;
	struct keyref k[LOOKUP_WINDOW];
	struct table_view v[LOOKUP_WINDOW];
	long found = 0;
	read_enter(h);
	/* The cluster is resolved once for the batch (a bad key is -EINVAL
	 * before an unconnected cluster makes it -ENOENT, as for one lookup),
	 * and each key's table view is taken once, inside the section that
	 * keeps it valid. */
	uint32_t ref = cluster_default_ref(h);
	uint64_t seed = DEFAULT_CLUSTER_SEED;
	int crc = cluster ? cluster_resolve(h, cluster, &ref, &seed) : 0;
	for (size_t base = 0; base < n; base += LOOKUP_WINDOW) {
		size_t m = n - base < LOOKUP_WINDOW ? n - base : LOOKUP_WINDOW;
		for (size_t i = 0; i < m; i++) {
			int rc = key_prep_in(h, keys[base + i].key, keys[base + i].len, ref, seed, 0, &k[i]);
			if (!rc && (crc || !index_view_cached(h, k[i].shard, &v[i])))
				rc = -ENOENT;
			rcs[base + i] = rc;
			if (!rc)
				index_prefetch(&v[i], k[i].hash);
		}
		for (size_t i = 0; i < m; i++)
			if (!rcs[base + i])
				index_prefetch_candidate(h, &v[i], &k[i]);
		for (size_t i = 0; i < m; i++) {
			if (rcs[base + i])
				continue;
			struct entry hd;
			const struct entry *e = index_lookup_in(h, &v[i], &k[i], K_REG, &hd);
			if (!e || !copy_live(h, &hd)) {
				rcs[base + i] = -ENOENT;
				continue;
			}
			found++;
			if (ids)
				ids[base + i] = (shmg_id_t){hd.node, hd.ep_slot, hd.ep_gen};
			if (entries)
				entry_fill_ref(h, e, &hd, &entries[base + i]);
		}
	}
	read_exit(h);
	return found;
}

long shmg_lookup_many(shmg_t *h, const struct shmg_key *keys, size_t n, shmg_id_t *ids, int *rcs,
		      const struct shmg_opts *opts)
{
	int rc = handle_check(h);
	return rc ? rc : lookup_many(h, keys, n, ids, NULL, rcs, opts);
}

long shmg_lookup_many_ref(shmg_t *h, const struct shmg_key *keys, size_t n,
			  struct shmg_entry *entries, int *rcs, const struct shmg_opts *opts)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	if (h->read_depth <= 0)
		return -EPERM;
	return lookup_many(h, keys, n, NULL, entries, rcs, opts);
}

static long count_registry(shmg_t *h, const struct shmg_opts *opts, bool local)
{
	int rc = handle_check(h);
	if (rc)
		return rc;
	uint32_t ref;
	uint64_t seed;
	rc = cluster_resolve(h, opts ? opts->cluster : NULL, &ref, &seed);
	if (rc)
		return rc == -ENOTCONN ? 0 : rc;
	uint64_t n = 0;
	for (uint32_t s = 0; s < h->geo.shards; s++) {
		struct cluster_counts *c = &shard_counts(h, s)[cluster_slot_of(ref)];
		n += local ? load_relaxed(&c->registered_local) : load_relaxed(&c->registered);
	}
	return (long)n;
}

long shmg_registry_count(shmg_t *h, const struct shmg_opts *opts)
{
	return count_registry(h, opts, false);
}

long shmg_local_registry_count(shmg_t *h, const struct shmg_opts *opts)
{
	return count_registry(h, opts, true);
}
