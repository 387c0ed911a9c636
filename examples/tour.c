/* SPDX-License-Identifier: MIT */
/* The API tour of README.md, as a program that builds and runs: keep the two the same. */
#include <shmgroup.h>
#include <stdio.h>

static int print_member(const struct shmg_entry *e, void *arg)
{
	char id[SHMG_ID_STRLEN];

	(void)arg;
	shmg_id_format(e->id, id, sizeof(id));
	printf("  %.*s: %s (pid %d) meta \"%.*s\"\n", (int)e->key_len, e->key, id, (int)e->pid,
	       (int)e->meta_len, (const char *)e->meta);
	return 0; /* 0 = go on */
}

int main(void)
{
	shmg_t *h;
	shmg_id_t owner;
	char meta[64], id[SHMG_ID_STRLEN];
	size_t len;
	int rc;

	rc = shmg_open("tour", NULL, &h); /* creates /dev/shm/shmgroup.tour if needed */
	if (rc < 0) {
		fprintf(stderr, "open: %s\n", shmg_strerror(rc));
		return 1;
	}

	/* The registry: one endpoint per key.  -EEXIST if another holds it. */
	shmg_register(h, SHMG_KEY("db/primary"), "host=a port=5432", 16, NULL);
	if (shmg_lookup(h, SHMG_KEY("db/primary"), &owner, meta, sizeof(meta), &len, NULL) == 0) {
		shmg_id_format(owner, id, sizeof(id));
		printf("db/primary -> %s \"%.*s\"\n", id, (int)len, meta);
	}

	/* Process groups: many endpoints per key; a key ending in '/' is a prefix. */
	shmg_join(h, SHMG_KEY("room/lobby"), "nick=ann", 8, NULL);
	shmg_join(h, SHMG_KEY("room/games"), "nick=ann", 8, NULL);
	printf("members of room/ (%ld):\n", shmg_member_count(h, SHMG_KEY("room/"), NULL));
	shmg_members(h, SHMG_KEY("room/"), print_member, NULL, NULL);

	shmg_close(h);        /* removes this endpoint's registrations and memberships */
	shmg_destroy("tour"); /* removes the arena; open mappings stay valid */
	return 0;
}
