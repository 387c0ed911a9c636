/* SPDX-License-Identifier: MIT */
/*
 * memory: arena bytes per entry.  For each key count K, a fresh arena is
 * created, and two figures are read before and after K entries are added
 * from one endpoint:
 *   - the file's allocated blocks (st_blocks * 512 of /dev/shm/shmgroup.NAME):
 *     the memory the entries really cost, with every page-level effect in it
 *     (tables retired by resizes, partly used slab pages, the parts of the
 *     change log's ring the writes touched);
 *   - the pages in use (shmg_info().pages_used, 64 KiB each): what the
 *     allocator holds at the end.
 *     per entry = (after - before) / K
 *     overhead  = per entry - mean key bytes - metadata bytes.
 * What creation allocated (headers, endpoint and cluster tables, the first
 * index tables) is reported apart, not charged to entries.  Done for
 * registrations and for single-member groups (one join per key: a fresh
 * group each, held in one block since the first member lives in the head).  Keys are by default of
 * mixed lengths, 22 to 30 bytes, with 16 bytes of metadata.
 */
#include "common.h"

#include <errno.h>
#include <getopt.h>
#include <shmgroup.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE 65536.0

static struct {
	uint64_t keys[8];
	int nkeys;
	uint64_t key_min, key_max, meta_len;
	const char *json;
} opt = {.key_min = 22, .key_max = 30, .meta_len = 16};

struct row {
	const char *kind;
	uint64_t keys;
	uint64_t pages_before, pages_after, pages_total;
	uint64_t file_before, file_after; /* allocated bytes of the file */
	double key_bytes;                 /* mean key length */
	double per_entry, overhead;       /* from pages in use */
	double file_per_entry, file_overhead; /* from the file's blocks */
	int rc;
	char msg[128];
};

static char g_group[64];

/* Allocated bytes of the arena's file, or 0 if it cannot be read. */
static uint64_t file_allocated(void)
{
	char path[128];
	snprintf(path, sizeof(path), "/dev/shm/shmgroup.%s", g_group);
	struct stat st;
	return stat(path, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
}

static void cleanup(void)
{
	if (g_group[0])
		shmg_destroy(g_group);
}

static void measure(uint64_t k, int member, const struct keyset *ks, struct row *r)
{
	memset(r, 0, sizeof(*r));
	r->kind = member ? "group" : "registry";
	r->keys = k;
	struct shmg_config cfg = {0};
	cfg.arena_size = k * 512 < (64ull << 20) ? 64ull << 20 : k * 512;
	cfg.flags = SHMG_OPEN_EXCL;
	shmg_destroy(g_group);
	shmg_t *h;
	int rc = shmg_open(g_group, &cfg, &h);
	struct shmg_info info;
	if (rc == 0)
		rc = shmg_info(h, &info);
	if (rc < 0) {
		r->rc = rc;
		snprintf(r->msg, sizeof(r->msg), "open: %s", shmg_strerror(rc));
		return;
	}
	r->pages_before = info.pages_used;
	r->pages_total = info.pages_total;
	r->file_before = file_allocated();
	char meta[16384];
	memset(meta, 'm', opt.meta_len);
	double key_bytes = 0;
	for (uint64_t i = 0; i < k; i++) {
		size_t len = keyset_hit_len(ks, i);
		key_bytes += (double)len;
		rc = member ? shmg_join(h, keyset_hit(ks, i), len, meta, opt.meta_len, NULL)
			    : shmg_register(h, keyset_hit(ks, i), len, meta, opt.meta_len, NULL);
		if (rc < 0) {
			r->rc = rc;
			snprintf(r->msg, sizeof(r->msg), "entry %llu: %s", (unsigned long long)i,
				 shmg_strerror(rc));
			break;
		}
	}
	if (rc == 0 && (rc = shmg_info(h, &info)) == 0) {
		r->pages_after = info.pages_used;
		r->file_after = file_allocated();
		r->key_bytes = key_bytes / (double)k;
		double payload = r->key_bytes + (double)opt.meta_len;
		r->per_entry = (double)(r->pages_after - r->pages_before) * PAGE / (double)k;
		r->overhead = r->per_entry - payload;
		r->file_per_entry = (double)(r->file_after - r->file_before) / (double)k;
		r->file_overhead = r->file_per_entry - payload;
	}
	shmg_close(h);
	shmg_destroy(g_group);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{"keys", 1, 0, 'k'},  {"key-len", 1, 0, 'l'}, {"meta-len", 1, 0, 'm'},
		{"json", 1, 0, 'j'},  {"quick", 0, 0, 'q'},   {"help", 0, 0, 'h'},
		{0, 0, 0, 0},
	};
	opt.keys[0] = 10000;
	opt.keys[1] = 1000000;
	opt.nkeys = 2;
	int c;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'k':
			opt.nkeys = bench_opt_list("memory", "keys", optarg, opt.keys, 8, 1, 1ull << 32);
			break;
		case 'l':
			bench_opt_lens("memory", "key-len", optarg, 8, 1000, &opt.key_min, &opt.key_max);
			break;
		case 'm': opt.meta_len = bench_opt_count("memory", "meta-len", optarg, 0, 1024); break;
		case 'j': opt.json = optarg; break;
		case 'q':
			opt.keys[0] = 10000;
			opt.keys[1] = 100000;
			opt.nkeys = 2;
			break;
		case 'h':
			printf("usage: memory [--keys LIST (10k,1M)] [--key-len L|A-B (22-30)] "
			       "[--meta-len M (16)] [--json FILE] [--quick]\n");
			return 0;
		default: goto bad;
		}
	}
	uint64_t kmax = 0;
	for (int i = 0; i < opt.nkeys; i++)
		if (opt.keys[i] > kmax)
			kmax = opt.keys[i];
	struct keyset ks;
	if (kmax == 0 || keyset_make_mix(&ks, kmax, opt.key_min, opt.key_max, 0) < 0)
		goto bad;
	snprintf(g_group, sizeof(g_group), "bench-memory-%d", (int)getpid());
	atexit(cleanup);

	struct machine m;
	machine_get(&m);
	machine_print(stdout, &m);
	printf("method:  per entry = (after - before) / entries, of the file's allocated blocks "
	       "(st_blocks * 512) and of the pages in use (64 KiB); overhead = that - key "
	       "(%llu-%llu B, mean %.1f) - metadata (%llu B); group = one join per key, a fresh "
	       "single-member group each\n",
	       (unsigned long long)opt.key_min, (unsigned long long)opt.key_max,
	       keyset_mean_len(&ks), (unsigned long long)opt.meta_len);
	struct row rows[16];
	int n = 0, failed = 0;
	for (int i = 0; i < opt.nkeys; i++)
		for (int member = 0; member < 2; member++) {
			measure(opt.keys[i], member, &ks, &rows[n]);
			failed |= rows[n].rc != 0;
			n++;
		}
	printf("\n%-9s %9s %10s %12s %12s %12s %12s %12s\n", "kind", "entries", "fixed KiB",
	       "file KiB", "file B/ent", "file ovh B", "pages B/ent", "pages ovh B");
	for (int i = 0; i < n; i++) {
		struct row *r = &rows[i];
		if (r->rc) {
			printf("%-9s %9llu  failed: %s\n", r->kind, (unsigned long long)r->keys, r->msg);
			continue;
		}
		printf("%-9s %9llu %10.0f %12.0f %12.1f %12.1f %12.1f %12.1f\n", r->kind,
		       (unsigned long long)r->keys, r->file_before / 1024.0,
		       (r->file_after - r->file_before) / 1024.0, r->file_per_entry,
		       r->file_overhead, r->per_entry, r->overhead);
	}
	if (opt.json) {
		FILE *f = fopen(opt.json, "w");
		if (!f) {
			fprintf(stderr, "memory: %s: %s\n", opt.json, strerror(errno));
			return 1;
		}
		fprintf(f, "{\"program\": \"memory\", \"machine\": ");
		machine_json(f, &m);
		fprintf(f,
			",\n \"params\": {\"key_min\": %llu, \"key_max\": %llu, \"key_mean\": %.2f, "
			"\"meta_len\": %llu},\n \"results\": [",
			(unsigned long long)opt.key_min, (unsigned long long)opt.key_max,
			keyset_mean_len(&ks), (unsigned long long)opt.meta_len);
		for (int i = 0; i < n; i++) {
			struct row *r = &rows[i];
			fprintf(f, "%s\n  {\"kind\": \"%s\", \"entries\": %llu", i ? "," : "", r->kind,
				(unsigned long long)r->keys);
			if (r->rc) {
				fprintf(f, ", \"error\": ");
				json_str(f, r->msg);
			} else {
				fprintf(f,
					", \"key_mean\": %.2f, \"fixed_bytes\": %.0f, \"entry_bytes\": %.0f, "
					"\"bytes_per_entry\": %.2f, \"overhead_per_entry\": %.2f, "
					"\"file_fixed_bytes\": %llu, \"file_entry_bytes\": %llu, "
					"\"file_bytes_per_entry\": %.2f, \"file_overhead_per_entry\": %.2f",
					r->key_bytes, r->pages_before * PAGE,
					(r->pages_after - r->pages_before) * PAGE, r->per_entry,
					r->overhead, (unsigned long long)r->file_before,
					(unsigned long long)(r->file_after - r->file_before),
					r->file_per_entry, r->file_overhead);
			}
			fprintf(f, "}");
		}
		fprintf(f, "\n]}\n");
		fclose(f);
	}
	keyset_free(&ks);
	return failed;
bad:
	fprintf(stderr, "memory: bad argument (see --help)\n");
	return 2;
}
