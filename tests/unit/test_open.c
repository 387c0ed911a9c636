/* SPDX-License-Identifier: MIT */
/*
 * shmg_open / shmg_close / shmg_destroy / ids: creating and attaching,
 * configuration defaults and conflicts, validation of what is found in
 * /dev/shm, position independence (the same arena mapped at several
 * addresses), endpoint slots.
 */
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tc.h"

#if __has_include("layout.h")
#include "layout.h"
#define HAVE_LAYOUT_H 1
#endif

static struct shmg_config cfg_zero(void)
{
	struct shmg_config c;

	memset(&c, 0, sizeof(c));
	return c;
}

/* ---- create / attach ---------------------------------------------------- */

START_TEST(test_create_then_attach)
{
	shmg_t *a, *b;
	shmg_id_t ia, ib;

	ck_assert(!tc_arena_exists(tc_arena));
	a = tc_open(tc_arena, NULL);
	ck_assert(tc_arena_exists(tc_arena));
	b = tc_open(tc_arena, NULL);

	ia = shmg_self(a);
	ib = shmg_self(b);
	ck_assert_uint_ne(ia.gen, 0);
	ck_assert_uint_ne(ib.gen, 0);
	ck_assert_uint_eq(ia.node, 1);
	ck_assert_uint_eq(ib.node, 1);
	ck_assert_int_eq(shmg_id_equal(ia, ib), 0);

	struct shmg_info fa, fb;
	TC_EQ(shmg_info(a, &fa), 0);
	TC_EQ(shmg_info(b, &fb), 0);
	ck_assert_uint_eq(fa.incarnation, fb.incarnation);
	ck_assert_uint_eq(fa.created_ns, fb.created_ns);
	ck_assert_uint_eq(fb.endpoints_live, 2);

	TC_EQ(shmg_close(b), 0);
	TC_EQ(shmg_info(a, &fa), 0);
	ck_assert_uint_eq(fa.endpoints_live, 1);
	TC_EQ(shmg_close(a), 0);
	/* Closing the last handle does not remove the arena. */
	ck_assert(tc_arena_exists(tc_arena));
}
END_TEST

START_TEST(test_config_defaults)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	struct shmg_info in;

	TC_EQ(shmg_info(h, &in), 0);
	ck_assert_uint_eq(in.shards, 8);
	ck_assert_uint_eq(in.max_endpoints, 1024);
	ck_assert_uint_eq(in.key_max, 255);
	ck_assert_uint_eq(in.meta_max, 1024);
	ck_assert_uint_eq(in.max_clusters, 256);
	ck_assert_uint_eq(in.node_id, 1);
	ck_assert_uint_eq(in.oplog_bytes, 256u * 1024u);
	ck_assert_uint_eq(in.arena_size, 128ull << 20);
	ck_assert_uint_eq(in.mailbox_bytes, 16u * 1024u);
	ck_assert_uint_ne(in.layout_version, 0);
	ck_assert_uint_ne(in.incarnation, 0);
	ck_assert_uint_ne(in.created_ns, 0);
	ck_assert_uint_gt(in.pages_total, 0);
	ck_assert_uint_le(in.pages_used, in.pages_total);
	ck_assert_uint_eq(in.endpoints_live, 1);
	ck_assert_uint_eq(in.clusters_connected, 0);
	ck_assert_uint_eq(in.shard_repairs, 0);

	/* Default mode 0600. */
	char path[300];
	struct stat st;
	tc_arena_path(tc_arena, path, sizeof(path));
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	ck_assert_uint_ge((uint64_t)st.st_size, in.arena_size);
	shmg_close(h);
}
END_TEST

START_TEST(test_config_values_stored)
{
	struct shmg_config c = cfg_zero();
	shmg_t *h;
	struct shmg_info in;

	c.shards = 4;
	c.max_endpoints = 16;
	c.key_max = 100;
	c.meta_max = 200;
	c.max_clusters = 8;
	c.node_id = 7;
	c.oplog_bytes = 64 * 1024;
	c.mode = 0640;
	c.arena_size = 8ull << 20;
	c.mailbox_bytes = 8192;
	h = tc_open(tc_arena, &c);
	TC_EQ(shmg_info(h, &in), 0);
	ck_assert_uint_eq(in.mailbox_bytes, 8192);
	ck_assert_uint_eq(in.shards, 4);
	ck_assert_uint_eq(in.max_endpoints, 16);
	ck_assert_uint_eq(in.key_max, 100);
	ck_assert_uint_eq(in.meta_max, 200);
	ck_assert_uint_eq(in.max_clusters, 8);
	ck_assert_uint_eq(in.node_id, 7);
	ck_assert_uint_eq(in.oplog_bytes, 64 * 1024);
	ck_assert_uint_eq(in.arena_size, 8ull << 20);
	ck_assert_uint_eq(shmg_self(h).node, 7);

	char path[300];
	struct stat st;
	tc_arena_path(tc_arena, path, sizeof(path));
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0640);
	shmg_close(h);
}
END_TEST

/* Each stored field: the same value or 0 attaches, another value is -EEXIST. */
struct field_case {
	const char *name;
	size_t off;
	int is64;
	uint64_t create, other;
};

static const struct field_case field_cases[] = {
	{ "shards", offsetof(struct shmg_config, shards), 0, 4, 8 },
	{ "max_endpoints", offsetof(struct shmg_config, max_endpoints), 0, 16, 32 },
	{ "key_max", offsetof(struct shmg_config, key_max), 0, 100, 255 },
	{ "meta_max", offsetof(struct shmg_config, meta_max), 0, 200, 1024 },
	{ "max_clusters", offsetof(struct shmg_config, max_clusters), 0, 8, 16 },
	{ "node_id", offsetof(struct shmg_config, node_id), 0, 3, 1 },
	{ "oplog_bytes", offsetof(struct shmg_config, oplog_bytes), 0, 65536, 131072 },
	{ "arena_size", offsetof(struct shmg_config, arena_size), 1, 32ull << 20, 64ull << 20 },
	{ "mode", offsetof(struct shmg_config, mode), 0, 0640, 0600 },
	{ "mailbox_bytes", offsetof(struct shmg_config, mailbox_bytes), 0, 8192, 16384 },
};

static void set_field(struct shmg_config *c, const struct field_case *f, uint64_t v)
{
	char *p = (char *)c + f->off;

	if (f->is64)
		memcpy(p, &v, sizeof(uint64_t));
	else {
		uint32_t v32 = (uint32_t)v;
		memcpy(p, &v32, sizeof(v32));
	}
}

START_TEST(test_config_conflict)
{
	const struct field_case *f = &field_cases[_i];
	struct shmg_config c = cfg_zero();
	shmg_t *h, *h2 = NULL;
	int rc;

	set_field(&c, f, f->create);
	h = tc_open(tc_arena, &c);

	c = cfg_zero();
	set_field(&c, f, f->other);
	rc = shmg_open(tc_arena, &c, &h2);
	ck_assert_msg(rc == -EEXIST, "%s: create %llu, attach %llu: rc %d", f->name,
		      (unsigned long long)f->create, (unsigned long long)f->other, rc);
	ck_assert_ptr_null(h2);

	/* 0 = don't care. */
	c = cfg_zero();
	h2 = tc_open(tc_arena, &c);
	shmg_close(h2);
	h2 = tc_open(tc_arena, NULL);
	shmg_close(h2);
	/* The same value attaches. */
	set_field(&c, f, f->create);
	h2 = tc_open(tc_arena, &c);
	shmg_close(h2);
	shmg_close(h);
}
END_TEST

START_TEST(test_nocreate)
{
	struct shmg_config c = cfg_zero();
	shmg_t *h = NULL;

	c.flags = SHMG_OPEN_NOCREATE;
	TC_EQ(shmg_open(tc_arena, &c, &h), -ENOENT);
	ck_assert_ptr_null(h);
	ck_assert(!tc_arena_exists(tc_arena));

	shmg_t *creator = tc_open(tc_arena, NULL);
	h = tc_open(tc_arena, &c);
	ck_assert_int_eq(shmg_id_equal(shmg_self(h), shmg_self(creator)), 0);
	shmg_close(h);
	shmg_close(creator);
}
END_TEST

START_TEST(test_excl)
{
	struct shmg_config c = cfg_zero();
	shmg_t *h = NULL, *h2 = NULL;

	c.flags = SHMG_OPEN_EXCL;
	h = tc_open(tc_arena, &c);
	TC_EQ(shmg_open(tc_arena, &c, &h2), -EEXIST);
	ck_assert_ptr_null(h2);
	/* The failed exclusive open did not disturb the arena. */
	TC_EQ(shmg_register(h, SHMG_KEY("k"), "m", 1, NULL), 0);
	TC_EQ(shmg_lookup(h, SHMG_KEY("k"), NULL, NULL, 0, NULL, NULL), 0);
	shmg_close(h);
}
END_TEST

START_TEST(test_bad_names)
{
	char long_name[SHMG_NAME_MAX + 2];
	const char *bad[] = { "", "a/b", "a b", "a\tb", "nä", "a:b", "a*", "/x", long_name };
	shmg_t *h = NULL;

	memset(long_name, 'a', SHMG_NAME_MAX + 1);
	long_name[SHMG_NAME_MAX + 1] = '\0';

	TC_EQ(shmg_open(NULL, NULL, &h), -EINVAL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = shmg_open(bad[i], NULL, &h);

		ck_assert_msg(rc == -EINVAL, "name \"%.20s\" (len %zu): %d", bad[i],
			      strlen(bad[i]), rc);
		ck_assert_ptr_null(h);
		TC_EQ(shmg_destroy(bad[i]), -EINVAL);
	}
	TC_EQ(shmg_destroy(NULL), -EINVAL);
}
END_TEST

START_TEST(test_name_max_ok)
{
	/* SHMG_NAME_MAX bytes of the allowed alphabet is fine. */
	char name[SHMG_NAME_MAX + 1];
	int n = snprintf(name, sizeof(name), "%s.", tc_arena);
	shmg_t *h = NULL;

	memset(name + n, 'Z', SHMG_NAME_MAX - (size_t)n);
	name[SHMG_NAME_MAX] = '\0';
	TC_EQ(shmg_open(name, NULL, &h), 0);
	shmg_close(h);
	TC_EQ(shmg_destroy(name), 0);

	h = NULL;
	snprintf(name, sizeof(name), "%s_A-z.9", tc_arena);
	TC_EQ(shmg_open(name, NULL, &h), 0);
	shmg_close(h);
	TC_EQ(shmg_destroy(name), 0);
}
END_TEST

struct bad_cfg {
	const char *what;
	void (*apply)(struct shmg_config *c);
};
#define BAD(label, stmt)                                                               \
	static void bad_##label(struct shmg_config *c)                                 \
	{                                                                              \
		stmt;                                                                  \
	}
BAD(shards3, c->shards = 3)
BAD(shards512, c->shards = 512)
BAD(ep_big, c->max_endpoints = 65536)
BAD(key_big, c->key_max = SHMG_KEY_MAX_LIMIT + 1)
BAD(meta_big, c->meta_max = SHMG_META_MAX_LIMIT + 1)
BAD(clusters1, c->max_clusters = 1)
BAD(clusters_big, c->max_clusters = 4097)
BAD(oplog_npot, c->oplog_bytes = 100000)
BAD(oplog_small, c->oplog_bytes = 32768)
BAD(oplog_big, c->oplog_bytes = 128u << 20)
BAD(arena_small, c->arena_size = 1u << 20)
BAD(arena_big, c->arena_size = 128ull << 30)
BAD(reserved0, c->reserved[0] = 1)
BAD(reserved_last, c->reserved[sizeof(c->reserved) / sizeof(c->reserved[0]) - 1] = 0x80000000u)
BAD(mailbox_npot, c->mailbox_bytes = 10000)
BAD(mailbox_small, c->mailbox_bytes = 2048)
BAD(mailbox_big, c->mailbox_bytes = 32u << 20)
BAD(flags_unknown, c->flags = 0x100)
BAD(mode_bits, c->mode = 010000)

static const struct bad_cfg bad_cfgs[] = {
	{ "shards=3", bad_shards3 },
	{ "shards=512", bad_shards512 },
	{ "max_endpoints=65536", bad_ep_big },
	{ "key_max>limit", bad_key_big },
	{ "meta_max>limit", bad_meta_big },
	{ "max_clusters=1", bad_clusters1 },
	{ "max_clusters=4097", bad_clusters_big },
	{ "oplog_bytes not power of two", bad_oplog_npot },
	{ "oplog_bytes=32K", bad_oplog_small },
	{ "oplog_bytes=128M", bad_oplog_big },
	{ "arena_size=1M", bad_arena_small },
	{ "arena_size=128G", bad_arena_big },
	{ "reserved[0]", bad_reserved0 },
	{ "last reserved", bad_reserved_last },
	{ "mailbox_bytes not power of two", bad_mailbox_npot },
	{ "mailbox_bytes=2K", bad_mailbox_small },
	{ "mailbox_bytes=32M", bad_mailbox_big },
	{ "unknown flag", bad_flags_unknown },
	{ "mode with non-permission bits", bad_mode_bits },
};

START_TEST(test_bad_config)
{
	const struct bad_cfg *b = &bad_cfgs[_i];
	struct shmg_config c = cfg_zero();
	shmg_t *h = NULL;
	int rc;

	b->apply(&c);
	rc = shmg_open(tc_arena, &c, &h);
	ck_assert_msg(rc == -EINVAL, "%s: rc %d (%s)", b->what, rc, shmg_strerror(rc));
	ck_assert_ptr_null(h);
	ck_assert_msg(!tc_arena_exists(tc_arena), "%s: arena created anyway", b->what);

	/* Also refused when attaching to an existing arena. */
	shmg_t *ok = tc_open(tc_arena, NULL);
	rc = shmg_open(tc_arena, &c, &h);
	ck_assert_msg(rc == -EINVAL, "%s on attach: rc %d (%s)", b->what, rc, shmg_strerror(rc));
	shmg_close(ok);
}
END_TEST

/* A configuration inside every range that does not fit its arena is found
 * out before anything is created, and an attach-only open never makes an
 * arena of what it finds. */
START_TEST(test_config_too_big_creates_nothing)
{
	struct shmg_config c = cfg_zero();
	shmg_t *h = NULL;

	c.max_endpoints = 65535;
	c.mailbox_bytes = 16u << 20;
	TC_EQ(shmg_open(tc_arena, &c, &h), -EINVAL);
	ck_assert_ptr_null(h);
	ck_assert(!tc_arena_exists(tc_arena));
	c = cfg_zero();
	c.flags = SHMG_OPEN_NOCREATE;
	TC_EQ(shmg_open(tc_arena, &c, &h), -ENOENT);
	ck_assert(!tc_arena_exists(tc_arena));
}
END_TEST

/* The fields left 0 are "don't care" when attaching: a configuration that
 * could not be created with the defaults filled in still attaches to an
 * arena that has room for it. */
START_TEST(test_config_too_big_attaches)
{
	struct shmg_config c = cfg_zero();
	shmg_t *h, *h2 = NULL;

	c.arena_size = 512ull << 20;
	c.mailbox_bytes = 256u << 10;
	h = tc_open(tc_arena, &c);
	c.arena_size = 0; /* 128 MiB by default: 1024 x 256 KiB do not fit */
	TC_EQ(shmg_open(tc_arena, &c, &h2), 0);
	shmg_close(h2);
	c.flags = SHMG_OPEN_EXCL;
	TC_EQ(shmg_open(tc_arena, &c, &h2), -EINVAL);
	shmg_close(h);
	TC_EQ(shmg_destroy(tc_arena), 0);
	c.flags = 0;
	TC_EQ(shmg_open(tc_arena, &c, &h2), -EINVAL);
	ck_assert(!tc_arena_exists(tc_arena));
}
END_TEST

/* What a creator that died before publishing left (zero magic, full size)
 * is no arena to an attach-only open, which leaves it alone. */
START_TEST(test_nocreate_never_initialises)
{
	char path[300];
	struct shmg_config c = cfg_zero();
	shmg_t *h = NULL;
	uint64_t magic = 1;
	int fd;

	tc_arena_path(tc_arena, path, sizeof(path));
	fd = open(path, O_CREAT | O_EXCL | O_RDWR, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 128ll << 20), 0);
	c.flags = SHMG_OPEN_NOCREATE;
	TC_EQ(shmg_open(tc_arena, &c, &h), -ENOENT);
	ck_assert_int_eq(pread(fd, &magic, sizeof(magic), 0), (ssize_t)sizeof(magic));
	ck_assert_uint_eq(magic, 0);
	close(fd);
	/* A creating open makes it an arena. */
	h = tc_open(tc_arena, NULL);
	shmg_close(h);
}
END_TEST

START_TEST(test_bad_config_null_out)
{
	TC_EQ(shmg_open(tc_arena, NULL, NULL), -EINVAL);
	ck_assert(!tc_arena_exists(tc_arena));
}
END_TEST

/* ---- what is found in /dev/shm ------------------------------------------ */

static void write_file(const char *name, size_t size, int byte)
{
	char path[300];
	char buf[4096];
	int fd;

	tc_arena_path(name, path, sizeof(path));
	fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0600);
	ck_assert_int_ge(fd, 0);
	memset(buf, byte, sizeof(buf));
	for (size_t off = 0; off < size; off += sizeof(buf))
		ck_assert_int_eq(tc_write_full(fd, buf, sizeof(buf)), 0);
	close(fd);
}

START_TEST(test_garbage_file)
{
	shmg_t *h = NULL;

	write_file(tc_arena, 1u << 20, 0xa5);
	TC_EQ(shmg_open(tc_arena, NULL, &h), -EPROTO);
	ck_assert_ptr_null(h);
	/* NOCREATE says the same. */
	struct shmg_config c = cfg_zero();
	c.flags = SHMG_OPEN_NOCREATE;
	TC_EQ(shmg_open(tc_arena, &c, &h), -EPROTO);
	/* Not removed or rewritten by the failed open. */
	ck_assert(tc_arena_exists(tc_arena));
	TC_EQ(shmg_open(tc_arena, NULL, &h), -EPROTO);
}
END_TEST

START_TEST(test_small_garbage_file)
{
	shmg_t *h = NULL;

	write_file(tc_arena, 4096, 0xff);
	TC_EQ(shmg_open(tc_arena, NULL, &h), -EPROTO);
	ck_assert_ptr_null(h);
}
END_TEST

START_TEST(test_truncated_arena)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	char path[300];

	shmg_close(h);
	h = NULL;
	tc_arena_path(tc_arena, path, sizeof(path));
	ck_assert_int_eq(truncate(path, 64 * 1024), 0);
	TC_EQ(shmg_open(tc_arena, NULL, &h), -EPROTO);
	ck_assert_ptr_null(h);
}
END_TEST

START_TEST(test_wrong_layout_version)
{
#ifdef HAVE_LAYOUT_H
	shmg_t *h = tc_open(tc_arena, NULL);
	struct shmg_info in;
	char path[300];
	uint32_t v;
	int fd;
	off_t off = (off_t)offsetof(struct arena_header, layout_version);

	TC_EQ(shmg_info(h, &in), 0);
	shmg_close(h);
	h = NULL;
	tc_arena_path(tc_arena, path, sizeof(path));
	fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, &v, sizeof(v), off), (ssize_t)sizeof(v));
	ck_assert_uint_eq(v, in.layout_version);
	v++;
	ck_assert_int_eq(pwrite(fd, &v, sizeof(v), off), (ssize_t)sizeof(v));
	TC_EQ(shmg_open(tc_arena, NULL, &h), -EPROTO);
	ck_assert_ptr_null(h);
	/* Restoring it makes the arena usable again: nothing else was touched. */
	v--;
	ck_assert_int_eq(pwrite(fd, &v, sizeof(v), off), (ssize_t)sizeof(v));
	close(fd);
	h = tc_open(tc_arena, NULL);
	shmg_close(h);
#else
	ck_abort_msg("lib/layout.h not found: cannot locate arena_header.layout_version");
#endif
}
END_TEST

#ifdef HAVE_LAYOUT_H
/* Header fields an attacher must not trust: each patched alone makes the
 * arena refused with -EPROTO, and restoring it makes it usable again. */
struct hdr_patch {
	const char *what;
	size_t off, size;
	uint64_t value;
};
#define HP(field, v)                                                                   \
	{ #field, offsetof(struct arena_header, field),                                \
	  sizeof(((struct arena_header *)0)->field), (uint64_t)(v) }
static const struct hdr_patch hdr_patches[] = {
	HP(magic, 0x0123456789abcdefull),
	/* (magic 0 is "a creator died before publishing": re-initialised by
	 * design, see test_empty_file_left_by_dead_creator.) */
	HP(layout_signature, 0xdeadbeefu),
	HP(arena_size, (8ull << 20) + 65536),
	HP(arena_max, (8ull << 20) - 65536), /* below the object's size */
	HP(arena_max, 1ull << 40),             /* above the largest arena */
	HP(arena_max, 0),
	HP(shards, 3),
	HP(shards, 1024),
	HP(shards, 0),
	HP(max_endpoints, 70000),
	HP(max_endpoints, 1u << 20),
	HP(key_max, SHMG_KEY_MAX_LIMIT + 1),
	HP(meta_max, 0xffffffffu),
	HP(max_clusters, 1),
	HP(max_clusters, 100000),
	HP(oplog_bytes, 12345),
	HP(off_endpoints, 1ull << 40),
	HP(off_shards, 3),
	HP(off_pages, (8ull << 20) - 1),
	HP(off_pagedesc, 0),
	HP(npages, 0xffffffffu),
	HP(shard_stride, 16),
};
#define N_HDR_PATCHES ((int)(sizeof(hdr_patches) / sizeof(hdr_patches[0])))

START_TEST(test_untrusted_header_field)
{
	const struct hdr_patch *p = &hdr_patches[_i];
	struct shmg_config c = cfg_zero();
	shmg_t *h;
	char path[300];
	unsigned char orig[8], patched[8];
	int fd, rc;

	c.arena_size = 8ull << 20;
	c.shards = 4;
	c.max_endpoints = 64; /* room for the mailboxes in 8 MiB */
	h = tc_open(tc_arena, &c);
	TC_EQ(shmg_register(h, SHMG_KEY("k"), "v", 1, NULL), 0);
	shmg_close(h);
	h = NULL;
	tc_arena_path(tc_arena, path, sizeof(path));
	fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, orig, p->size, (off_t)p->off), (ssize_t)p->size);
	memcpy(patched, &p->value, p->size); /* little-endian */
	ck_assert_int_eq(pwrite(fd, patched, p->size, (off_t)p->off), (ssize_t)p->size);
	rc = shmg_open(tc_arena, NULL, &h);
	ck_assert_msg(rc == -EPROTO, "header.%s = %#llx: open %d (%s)", p->what,
		      (unsigned long long)p->value, rc, shmg_strerror(rc));
	ck_assert_ptr_null(h);
	ck_assert_int_eq(pwrite(fd, orig, p->size, (off_t)p->off), (ssize_t)p->size);
	close(fd);
	h = tc_open(tc_arena, NULL);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST
#endif

/* A creator that died before or while initialising leaves a file that a
 * later open must handle without crashing or hanging: recreate it, or
 * refuse it as not an arena. */
START_TEST(test_empty_file_left_by_dead_creator)
{
	char path[300];
	shmg_t *h = NULL;
	int fd, rc;

	tc_arena_path(tc_arena, path, sizeof(path));
	fd = open(path, O_CREAT | O_EXCL | O_RDWR, 0600);
	ck_assert_int_ge(fd, 0);
	if (_i == 1)
		ck_assert_int_eq(ftruncate(fd, 64ll << 20), 0);
	close(fd);
	rc = shmg_open(tc_arena, NULL, &h);
	ck_assert_msg(rc == 0 || rc == -EPROTO, "open over a %s file: %d (%s)",
		      _i ? "zero-filled" : "zero-length", rc, shmg_strerror(rc));
	if (rc == 0) {
		TC_EQ(shmg_register(h, SHMG_KEY("k"), "v", 1, NULL), 0);
		TC_ASSERT_CLEAN(h);
		shmg_close(h);
	}
}
END_TEST

START_TEST(test_eacces_other_user)
{
	if (!tc_second_user_ok(__func__))
		return;
	shmg_t *h = tc_open(tc_arena, NULL);
	pid_t pid;
	int st;

	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		shmg_t *o = NULL;
		int rc;

		if (setgid(65534) != 0 || setuid(65534) != 0)
			_exit(100);
		rc = shmg_open(tc_arena, NULL, &o);
		_exit(rc == -EACCES ? 0 : (rc < 0 ? -rc : 99));
	}
	st = tc_wait_exit(pid, 10000);
	ck_assert_msg(st == 0, "open as another user: exit %d (errno if < 99)", st);
	shmg_close(h);
}
END_TEST

START_TEST(test_eusers)
{
	struct shmg_config c = cfg_zero();
	shmg_t *a, *b, *x = NULL;

	c.max_endpoints = 2;
	a = tc_open(tc_arena, &c);
	b = tc_open(tc_arena, NULL);
	TC_EQ(shmg_open(tc_arena, NULL, &x), -EUSERS);
	ck_assert_ptr_null(x);
	shmg_id_t old = shmg_self(b);
	TC_EQ(shmg_close(b), 0);
	x = tc_open(tc_arena, NULL);
	shmg_id_t nu = shmg_self(x);
	/* The slot is reused with a new generation: a stale id names nobody. */
	ck_assert_uint_eq(nu.slot, old.slot);
	ck_assert_uint_ne(nu.gen, old.gen);
	ck_assert_uint_ne(nu.gen, 0);
	shmg_close(x);
	shmg_close(a);
}
END_TEST

START_TEST(test_many_handles)
{
	struct shmg_config c = cfg_zero();
	shmg_t *hs[100], *x = NULL;
	struct shmg_info in;

	c.max_endpoints = 100;
	for (int i = 0; i < 100; i++) {
		hs[i] = tc_open(tc_arena, i ? NULL : &c);
		for (int j = 0; j < i; j++)
			ck_assert(!shmg_id_equal(shmg_self(hs[i]), shmg_self(hs[j])));
	}
	TC_EQ(shmg_open(tc_arena, NULL, &x), -EUSERS);
	TC_EQ(shmg_info(hs[0], &in), 0);
	ck_assert_uint_eq(in.endpoints_live, 100);
	for (int i = 99; i >= 1; i--)
		TC_EQ(shmg_close(hs[i]), 0);
	TC_EQ(shmg_info(hs[0], &in), 0);
	ck_assert_uint_eq(in.endpoints_live, 1);
	TC_ASSERT_CLEAN(hs[0]);
	shmg_close(hs[0]);
}
END_TEST

START_TEST(test_close)
{
	shmg_t *a = tc_open(tc_arena, NULL);
	shmg_t *b = tc_open(tc_arena, NULL);

	TC_EQ(shmg_close(NULL), 0);
	TC_EQ(shmg_register(b, SHMG_KEY("b-reg"), "x", 1, NULL), 0);
	TC_EQ(shmg_join(b, SHMG_KEY("b-grp"), "y", 1, NULL), 0);
	TC_EQ(shmg_registry_count(a, NULL), 1);
	TC_EQ(shmg_member_count(a, SHMG_KEY("b-grp"), NULL), 1);
	TC_EQ(shmg_close(b), 0);
	/* Its entries went with it. */
	TC_EQ(shmg_lookup(a, SHMG_KEY("b-reg"), NULL, NULL, 0, NULL, NULL), -ENOENT);
	TC_EQ(shmg_registry_count(a, NULL), 0);
	TC_EQ(shmg_member_count(a, SHMG_KEY("b-grp"), NULL), 0);
	TC_ASSERT_CLEAN(a);
	shmg_close(a);
}
END_TEST

/* ---- destroy ------------------------------------------------------------ */

START_TEST(test_destroy)
{
	shmg_t *h = tc_open(tc_arena, NULL), *h2 = NULL;
	struct shmg_info before, after;
	struct shmg_config c = cfg_zero();

	TC_EQ(shmg_info(h, &before), 0);
	TC_EQ(shmg_register(h, SHMG_KEY("k"), "v", 1, NULL), 0);
	TC_EQ(shmg_destroy(tc_arena), 0);
	ck_assert(!tc_arena_exists(tc_arena));
	TC_EQ(shmg_destroy(tc_arena), -ENOENT);
	c.flags = SHMG_OPEN_NOCREATE;
	TC_EQ(shmg_open(tc_arena, &c, &h2), -ENOENT);

	/* The open handle keeps working on its mapping. */
	char m[4];
	size_t ml = 0;
	TC_EQ(shmg_lookup(h, SHMG_KEY("k"), NULL, m, sizeof(m), &ml, NULL), 0);
	ck_assert_uint_eq(ml, 1);
	TC_EQ(shmg_register(h, SHMG_KEY("k2"), "w", 1, NULL), 0);

	/* A new open makes a fresh, empty arena. */
	h2 = tc_open(tc_arena, NULL);
	TC_EQ(shmg_info(h2, &after), 0);
	ck_assert_uint_ne(after.incarnation, before.incarnation);
	TC_EQ(shmg_lookup(h2, SHMG_KEY("k"), NULL, NULL, 0, NULL, NULL), -ENOENT);
	TC_EQ(shmg_registry_count(h2, NULL), 0);
	shmg_close(h2);
	shmg_close(h);
}
END_TEST

/* ---- the same arena at other addresses ---------------------------------- */

#define N_ADDR_KEYS 64

static void addr_key(char *buf, size_t cap, int i)
{
	snprintf(buf, cap, "addr/%d", i);
}

struct addr_child_arg {
	shmg_id_t owner;
	shmg_id_t joiner;
	shmg_id_t child; /* written by the child */
};

static int collect_cb(const struct shmg_entry *e, void *arg)
{
	shmg_id_t *want = arg;

	if (e->kind != SHMG_MEMBER || !shmg_id_equal(e->id, *want))
		return 1000;
	if (e->meta_len != 4 || memcmp(e->meta, "memb", 4) != 0)
		return 1001;
	return 0;
}

/* In the child: map a large dummy region first so that this mapping lands
 * elsewhere, then check everything the parent wrote. */
static int addr_child(void *varg)
{
	struct addr_child_arg *a = varg;
	void *dummy = mmap(NULL, 512ull << 20, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			   -1, 0);
	shmg_t *h = NULL;
	char key[32], meta[32];
	shmg_id_t id;
	size_t ml;

	if (dummy == MAP_FAILED)
		return 2;
	if (shmg_open(tc_arena, NULL, &h) != 0)
		return 3;
	for (int i = 0; i < N_ADDR_KEYS; i++) {
		addr_key(key, sizeof(key), i);
		if (shmg_lookup(h, SHMG_KEY(key), &id, meta, sizeof(meta), &ml, NULL) != 0)
			return 4;
		if (!shmg_id_equal(id, a->owner) || ml != strlen(key) || memcmp(meta, key, ml) != 0)
			return 5;
	}
	if (shmg_member_count(h, SHMG_KEY("addr/"), NULL) != N_ADDR_KEYS)
		return 6;
	if (shmg_members(h, SHMG_KEY("addr/"), collect_cb, &a->joiner, NULL) != N_ADDR_KEYS)
		return 7;
	/* And write from here: the parent checks it. */
	if (shmg_register(h, SHMG_KEY("from-child"), "c", 1, NULL) != 0)
		return 8;
	/* Stay registered: close would remove it.  Report our id. */
	a->child = shmg_self(h);
	munmap(dummy, 512ull << 20);
	return 0;
}

START_TEST(test_other_mapping_address)
{
	shmg_t *h1 = tc_open(tc_arena, NULL);
	shmg_t *h2 = tc_open(tc_arena, NULL);
	char key[32], meta[32];
	shmg_id_t id;
	size_t ml;

	for (int i = 0; i < N_ADDR_KEYS; i++) {
		addr_key(key, sizeof(key), i);
		TC_EQ(shmg_register(h1, SHMG_KEY(key), key, strlen(key), NULL), 0);
		TC_EQ(shmg_join(h2, SHMG_KEY(key), "memb", 4, NULL), 0);
	}
	/* Two mappings in this process agree. */
	for (int i = 0; i < N_ADDR_KEYS; i++) {
		addr_key(key, sizeof(key), i);
		TC_EQ(shmg_lookup(h2, SHMG_KEY(key), &id, meta, sizeof(meta), &ml, NULL), 0);
		ck_assert(shmg_id_equal(id, shmg_self(h1)));
		ck_assert_uint_eq(ml, strlen(key));
		ck_assert_mem_eq(meta, key, ml);
	}
	shmg_id_t self2 = shmg_self(h2);
	TC_EQ(shmg_members(h1, SHMG_KEY("addr/"), collect_cb, &self2, NULL), N_ADDR_KEYS);

	/* A child at yet another address. */
	struct addr_child_arg *a = tc_shared_alloc(sizeof(*a));
	a->owner = shmg_self(h1);
	a->joiner = shmg_self(h2);
	pid_t pid = tc_fork(addr_child, a);
	int st = tc_wait_exit(pid, 10000);
	ck_assert_msg(st == 0, "child at another address failed with %d", st);
	/* The child exited without closing: its registration may still be seen
	 * until its death is noticed, and must then be exactly what it wrote. */
	int rc = shmg_lookup(h1, SHMG_KEY("from-child"), &id, meta, sizeof(meta), &ml, NULL);
	if (rc == 0) {
		ck_assert(shmg_id_equal(id, a->child));
		ck_assert_uint_eq(ml, 1);
		ck_assert_int_eq(meta[0], 'c');
	} else {
		TC_EQ(rc, -ENOENT);
	}
	TC_ASSERT_CLEAN(h1);
	shmg_close(h2);
	shmg_close(h1);
}
END_TEST

/* ---- ids ---------------------------------------------------------------- */

START_TEST(test_id_format)
{
	char buf[SHMG_ID_STRLEN];
	shmg_id_t id = { 1, 42, 7 };

	TC_EQ(shmg_id_format(id, buf, sizeof(buf)), 7);
	ck_assert_str_eq(buf, "n1.42.7");
	TC_EQ(shmg_id_format(id, buf, 8), 7);
	ck_assert_str_eq(buf, "n1.42.7");
	TC_EQ(shmg_id_format(id, buf, 7), -ENOBUFS);
	TC_EQ(shmg_id_format(id, buf, 0), -ENOBUFS);

	shmg_id_t big = { UINT32_MAX, UINT32_MAX, UINT32_MAX };
	int n = shmg_id_format(big, buf, sizeof(buf));
	TC_EQ(n, 1 + 10 + 1 + 10 + 1 + 10);
	ck_assert_str_eq(buf, "n4294967295.4294967295.4294967295");
}
END_TEST

START_TEST(test_id_parse)
{
	shmg_id_t id = { 0, 0, 0 };
	shmg_id_t sentinel = { 9, 9, 9 };

	TC_EQ(shmg_id_parse("n1.42.7", &id), 0);
	ck_assert_uint_eq(id.node, 1);
	ck_assert_uint_eq(id.slot, 42);
	ck_assert_uint_eq(id.gen, 7);
	TC_EQ(shmg_id_parse("3.0.5", &id), 0);
	ck_assert_uint_eq(id.node, 3);
	ck_assert_uint_eq(id.slot, 0);
	ck_assert_uint_eq(id.gen, 5);
	TC_EQ(shmg_id_parse("n4294967295.4294967295.4294967295", &id), 0);
	ck_assert_uint_eq(id.node, UINT32_MAX);
	ck_assert_uint_eq(id.gen, UINT32_MAX);

	const char *bad[] = { "",        "n",          "n1",          "n1.42",     "n1.42.7.8",
			      "x1.42.7", "n1.42.7x",   "n-1.42.7",    "n1..7",     " n1.2.3",
			      "n1.2.3 ", "nn1.2.3",    "n1.2.+3",     "N1.2.3x",   "n4294967296.1.1",
			      "n1.4294967296.1", "n1.1.99999999999999999999", "n1,2,3" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		id = sentinel;
		int rc = shmg_id_parse(bad[i], &id);
		ck_assert_msg(rc == -EINVAL, "parse \"%s\" = %d", bad[i], rc);
		ck_assert_msg(shmg_id_equal(id, sentinel), "parse \"%s\" wrote out", bad[i]);
	}
	TC_EQ(shmg_id_parse(NULL, &id), -EINVAL);
}
END_TEST

START_TEST(test_id_roundtrip_equal)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	shmg_id_t self = shmg_self(h), back;
	char buf[SHMG_ID_STRLEN];

	ck_assert_int_gt(shmg_id_format(self, buf, sizeof(buf)), 0);
	TC_EQ(shmg_id_parse(buf, &back), 0);
	ck_assert_int_eq(shmg_id_equal(self, back), 1);
	back.gen++;
	ck_assert_int_eq(shmg_id_equal(self, back), 0);
	back = self;
	back.node++;
	ck_assert_int_eq(shmg_id_equal(self, back), 0);
	back = self;
	back.slot++;
	ck_assert_int_eq(shmg_id_equal(self, back), 0);
	shmg_close(h);

	shmg_id_t z = shmg_self(NULL);
	ck_assert_uint_eq(z.node, 0);
	ck_assert_uint_eq(z.slot, 0);
	ck_assert_uint_eq(z.gen, 0);
}
END_TEST

START_TEST(test_strerror)
{
	const int errs[] = { 0, EINVAL, ENOENT, EEXIST, EPERM, ENOTCONN, ENOSPC, EBADF,
			     ECHILD, EIO, EPROTO, ENOBUFS, EUSERS, EACCES, 12345 };

	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		char a[256];
		const char *b;

		/* Copied: for unknown values the text may live in a buffer that
		 * the next call reuses (see the report). */
		b = shmg_strerror(-errs[i]);
		ck_assert_ptr_nonnull(b);
		snprintf(a, sizeof(a), "%s", b);
		b = shmg_strerror(errs[i]);
		ck_assert_ptr_nonnull(b);
		ck_assert_str_eq(a, b);
		ck_assert_uint_gt(strlen(a), 0);
	}
	ck_assert_str_ne(shmg_strerror(-EEXIST), shmg_strerror(-ENOENT));
	/* Any int: INT_MIN has no negation. */
	const int odd[] = { INT_MIN, INT_MIN + 1, INT_MAX, -EBUSY, -EIO };
	for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++)
		ck_assert_uint_gt(strlen(shmg_strerror(odd[i])), 0);
	ck_assert_str_eq(shmg_strerror(INT_MIN), "unknown error");
	ck_assert_str_ne(shmg_strerror(-EBUSY), shmg_strerror(-EIO));
}
END_TEST

START_TEST(test_log_level)
{
	shmg_t *a = tc_open(tc_arena, NULL);
	shmg_t *b = tc_open(tc_arena, NULL);

	int initial = shmg_log_level(a, -1);

	/* The default is not specified; it is one of the levels. */
	ck_assert_int_ge(initial, SHMG_LOG_OFF);
	ck_assert_int_le(initial, SHMG_LOG_VERBOSE);
	TC_EQ(shmg_log_level(a, SHMG_LOG_OFF), initial);
	TC_EQ(shmg_log_level(a, SHMG_LOG_VERBOSE), SHMG_LOG_OFF);
	/* Shared by every process of the arena. */
	TC_EQ(shmg_log_level(b, -1), SHMG_LOG_VERBOSE);
	TC_EQ(shmg_log_level(b, SHMG_LOG_INFO), SHMG_LOG_VERBOSE);
	TC_EQ(shmg_log_level(a, 3), -EINVAL);
	TC_EQ(shmg_log_level(a, -1), SHMG_LOG_INFO);
	TC_EQ(shmg_log_level(NULL, -1), -EBADF);
	shmg_close(b);
	shmg_close(a);
}
END_TEST

static Suite *open_suite(void)
{
	Suite *s = suite_create("open");
	TCase *tc;

	tc = tc_case(s, "create", 20);
	tcase_add_test(tc, test_create_then_attach);
	tcase_add_test(tc, test_config_defaults);
	tcase_add_test(tc, test_config_values_stored);
	tcase_add_loop_test(tc, test_config_conflict, 0,
			    (int)(sizeof(field_cases) / sizeof(field_cases[0])));
	tcase_add_test(tc, test_nocreate);
	tcase_add_test(tc, test_excl);
	tcase_add_test(tc, test_eusers);
	tcase_add_test(tc, test_close);
	tcase_add_test(tc, test_many_handles);
	tcase_add_test(tc, test_log_level);

	tc = tc_case(s, "validation", 20);
	tcase_add_test(tc, test_bad_names);
	tcase_add_test(tc, test_name_max_ok);
	tcase_add_loop_test(tc, test_bad_config, 0, (int)(sizeof(bad_cfgs) / sizeof(bad_cfgs[0])));
	tcase_add_test(tc, test_bad_config_null_out);
	tcase_add_test(tc, test_config_too_big_creates_nothing);
	tcase_add_test(tc, test_config_too_big_attaches);
	tcase_add_test(tc, test_nocreate_never_initialises);
	tcase_add_test(tc, test_garbage_file);
	tcase_add_test(tc, test_small_garbage_file);
	tcase_add_test(tc, test_truncated_arena);
	tcase_add_test(tc, test_eacces_other_user);
	tcase_add_test(tc, test_wrong_layout_version);
#ifdef HAVE_LAYOUT_H
	tcase_add_loop_test(tc, test_untrusted_header_field, 0, N_HDR_PATCHES);
#endif
	tcase_add_loop_test(tc, test_empty_file_left_by_dead_creator, 0, 2);

	tc = tc_case(s, "mapping", 20);
	tcase_add_test(tc, test_other_mapping_address);
	tcase_add_test(tc, test_destroy);

	tc = tc_case(s, "ids", 10);
	tcase_add_test(tc, test_id_format);
	tcase_add_test(tc, test_id_parse);
	tcase_add_test(tc, test_id_roundtrip_equal);
	tcase_add_test(tc, test_strerror);
	return s;
}

int main(void)
{
	return tc_run(open_suite());
}
