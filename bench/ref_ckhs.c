/* SPDX-License-Identifier: MIT */
/*
 * Reference: Concurrency Kit's ck_hs in SPMC object mode, in-process.  Each
 * reader process builds its own set of the same keys with the same hash
 * before the timed phase (ck_hs holds raw pointers and function pointers, so
 * it cannot be shared between processes).  Objects are pointers to a node
 * holding the key, its length and the value.
 */
#include "impl.h"

#include <ck_hs.h>
#include <errno.h>
#include <stdlib.h>

struct hs_node {
	const char *key;
	size_t len;
	uint64_t val;
};

struct hs_state {
	ck_hs_t hs;
	struct hs_node *nodes;
};

static unsigned long hs_hash(const void *obj, unsigned long seed)
{
	const struct hs_node *n = obj;
	(void)seed;
	return (unsigned long)bench_hash(n->key, n->len);
}

static bool hs_compare(const void *a, const void *b)
{
	const struct hs_node *x = a, *y = b;
	return x->len == y->len && memcmp(x->key, y->key, x->len) == 0;
}

static void *hs_malloc(size_t r)
{
	return malloc(r);
}

static void hs_free(void *p, size_t b, bool r)
{
	(void)b;
	(void)r;
	free(p);
}

static struct ck_malloc hs_allocator = {.malloc = hs_malloc, .free = hs_free};

static int hs_attach(struct impl_env *env, void **out)
{
	const struct keyset *ks = env->ks;
	struct hs_state *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->nodes = calloc(ks->count, sizeof(*s->nodes));
	if (!s->nodes ||
	    !ck_hs_init(&s->hs, CK_HS_MODE_OBJECT | CK_HS_MODE_SPMC, hs_hash, hs_compare,
			&hs_allocator, ks->count * 2, 0x5eed))
		return -ENOMEM;
	for (size_t i = 0; i < ks->count; i++) {
		struct hs_node *n = &s->nodes[i];
		n->key = keyset_hit(ks, i);
		n->len = keyset_hit_len(ks, i);
		n->val = i;
		if (!ck_hs_put(&s->hs, (unsigned long)bench_hash(n->key, n->len), n))
			return -ENOMEM;
	}
	*out = s;
	return 0;
}

static int hs_lookup(void *state, const char *const *keys, const size_t *lens, uint64_t *vals,
		     int n)
{
	struct hs_state *s = state;
	int found = 0;
	for (int i = 0; i < n; i++) {
		struct hs_node probe = {keys[i], lens[i], 0};
		const struct hs_node *r =
			ck_hs_get(&s->hs, (unsigned long)bench_hash(keys[i], lens[i]), &probe);
		if (r) {
			vals[i] = r->val;
			found++;
		} else {
			vals[i] = IMPL_MISS;
		}
	}
	return found;
}

static void hs_detach(void *state)
{
	struct hs_state *s = state;
	ck_hs_destroy(&s->hs);
	free(s->nodes);
	free(s);
}

const struct impl impl_ckhs = {
	.name = "ckhs",
	.kind = "in-process",
	.reader_attach = hs_attach,
	.lookup = hs_lookup,
	.reader_detach = hs_detach,
};
