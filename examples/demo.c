/* SPDX-License-Identifier: MIT */
/*
 * shmgroup-demo: a handful of worker processes find each other through a
 * shared-memory group.
 *
 *   shmgroup-demo [-n WORKERS] [-g GROUP] [--pause]
 *
 * The parent creates a fresh group ("demo-<pid>" unless -g is given) and forks
 * WORKERS processes (default 4).  Each worker opens the group itself (a handle
 * is never used across fork), then
 *
 *   registers   "worker/<i>"   meta "pid=<pid> role=<red|blue>"   (unique key)
 *   joins       "room/lobby"   meta "worker/<i>"                  (a group)
 *   joins       "room/<role>"  meta "worker/<i>"                  (another group)
 *
 * When every worker has done so (a pipe barrier: each writes a byte, the parent
 * reads them all), the parent shows the counts and lets the workers speak one
 * at a time, so the output does not interleave: each looks every other worker
 * up by key and lists the members of the prefix "room/".  Then all of them
 * close their handle, which removes their entries, and exit.  The parent
 * prints the counts again (0 and 0), closes and destroys the group.
 *
 * With --pause the parent waits for Enter while every worker is still in, so
 * you can look at the group from another terminal:
 *
 *   shmgroupctl -g demo-<pid> dump
 *
 * Exit status: 0 when everything went as described, 1 otherwise.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmgroup.h"

#define MAX_WORKERS 64
#define SMALL 128

static const char *const roles[] = { "red", "blue" };

/* Pipes shared by all processes.  Workers write one byte to ready[1] at each
 * step; the parent releases a worker by closing the write end of a pipe the
 * worker is blocked reading (EOF is the signal, so no byte can be lost). */
struct barrier {
	int ready[2];
	int speak[MAX_WORKERS][2]; /* one per worker: your turn to look and print */
	int leave[2];              /* everyone: close and exit */
};

static int fail(const char *who, const char *what, int err)
{
	fprintf(stderr, "shmgroup-demo: %s: %s: %s\n", who, what, shmg_strerror(err));
	return 1;
}

static void put_byte(int fd, char c)
{
	while (write(fd, &c, 1) < 0 && errno == EINTR)
		;
}

/* Blocks until the write end of fd's pipe is closed by the parent. */
static void wait_eof(int fd)
{
	char c;
	ssize_t n;

	do
		n = read(fd, &c, 1);
	while (n > 0 || (n < 0 && errno == EINTR));
}

/* ------------------------------------------------------------------------ */
/* Worker                                                                   */
/* ------------------------------------------------------------------------ */

struct seen {
	char key[SMALL];
	char who[SMALL];
};

struct seen_list {
	struct seen v[3 * MAX_WORKERS];
	size_t n;
};

/* Called inside the library's read section: copy, do not print or block. */
static int collect_member(const struct shmg_entry *e, void *arg)
{
	struct seen_list *l = arg;
	struct seen *s;

	if (l->n == sizeof(l->v) / sizeof(l->v[0]))
		return 1; /* stop: more than this demo makes */
	s = &l->v[l->n++];
	snprintf(s->key, sizeof(s->key), "%.*s", (int)e->key_len, e->key);
	snprintf(s->who, sizeof(s->who), "%.*s", (int)e->meta_len, (const char *)e->meta);
	return 0;
}

static int cmp_seen(const void *a, const void *b)
{
	const struct seen *x = a, *y = b;
	int r = strcmp(x->key, y->key);

	return r ? r : strcmp(x->who, y->who);
}

/* Looks up every other worker and lists room/; prints three lines. */
static int worker_report(shmg_t *h, int me, int nworkers, const char *name)
{
	struct seen_list *l;
	char key[SMALL], meta[SMALL], id[SHMG_ID_STRLEN];
	struct shmg_entry who;
	size_t i;
	long n;
	const char *sep = "";
	int j, rc;

	shmg_id_format(shmg_self(h), id, sizeof(id));
	printf("%s (%s, pid %ld, role %s)\n", name, id, (long)getpid(), roles[me % 2]);
	printf("  lookup:");
	for (j = 0; j < nworkers; j++) {
		if (j == me)
			continue;
		snprintf(key, sizeof(key), "worker/%d", j);
		/* The owner's id and its OS pid, and the metadata copied out. */
		rc = shmg_lookup_entry(h, SHMG_KEY(key), &who, meta, sizeof(meta), NULL);
		if (rc < 0) {
			printf("\n");
			return fail(name, key, rc);
		}
		shmg_id_format(who.id, id, sizeof(id));
		printf("%s %d -> %s pid=%ld", sep, j, id, (long)who.pid);
		sep = ",";
	}
	printf("%s\n", nworkers == 1 ? " (no other worker)" : "");

	l = calloc(1, sizeof(*l));
	if (!l)
		return fail(name, "calloc", -ENOMEM);
	n = shmg_members(h, SHMG_KEY("room/"), collect_member, l, NULL);
	if (n < 0) {
		free(l);
		return fail(name, "members room/", (int)n);
	}
	qsort(l->v, l->n, sizeof(l->v[0]), cmp_seen);
	printf("  room/*:");
	for (i = 0; i < l->n; i++) {
		if (i == 0 || strcmp(l->v[i].key, l->v[i - 1].key) != 0)
			printf("%s %s [", i ? "]" : "", l->v[i].key + 5);
		else
			printf(" ");
		printf("%s", l->v[i].who + 7);
	}
	printf("%s  (%ld members)\n", l->n ? "]" : "", n);
	free(l);
	return 0;
}

static int worker(int me, int nworkers, const char *group, struct barrier *b)
{
	struct shmg_config cfg;
	shmg_t *h;
	char name[SMALL], meta[SMALL], room[SMALL];
	int rc;

	snprintf(name, sizeof(name), "worker/%d", me);
	memset(&cfg, 0, sizeof(cfg));
	cfg.flags = SHMG_OPEN_NOCREATE; /* the parent made it; never create another */
	rc = shmg_open(group, &cfg, &h);
	if (rc < 0)
		return fail(name, "open", rc);

	snprintf(meta, sizeof(meta), "pid=%ld role=%s", (long)getpid(), roles[me % 2]);
	snprintf(room, sizeof(room), "room/%s", roles[me % 2]);
	rc = shmg_register(h, SHMG_KEY(name), meta, strlen(meta), NULL);
	if (rc == 0)
		rc = shmg_join(h, SHMG_KEY("room/lobby"), name, strlen(name), NULL);
	if (rc == 0)
		rc = shmg_join(h, SHMG_KEY(room), name, strlen(name), NULL);
	if (rc < 0) {
		fail(name, "register/join", rc);
		shmg_close(h);
		return 1;
	}

	put_byte(b->ready[1], 'r'); /* registered and joined */
	wait_eof(b->speak[me][0]);  /* every worker is in; my turn to speak */
	rc = worker_report(h, me, nworkers, name);
	fflush(stdout);
	put_byte(b->ready[1], rc ? 'x' : 's');
	wait_eof(b->leave[0]);

	rc = shmg_close(h); /* removes worker/<i> and both memberships */
	if (rc < 0)
		return fail(name, "close", rc);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Parent                                                                   */
/* ------------------------------------------------------------------------ */

static pid_t pids[MAX_WORKERS];
static int npids;

/* Has any worker exited (it should not have yet)? */
static bool worker_died(void)
{
	int i, status;

	for (i = 0; i < npids; i++) {
		if (pids[i] > 0 && waitpid(pids[i], &status, WNOHANG) == pids[i]) {
			fprintf(stderr, "shmgroup-demo: worker/%d ended early\n", i);
			pids[i] = 0;
			return true;
		}
	}
	return false;
}

/* Waits for `count` bytes on the ready pipe; false if a worker failed. */
static bool collect_ready(int fd, int count)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;
	ssize_t n;

	while (count > 0) {
		if (poll(&p, 1, 200) < 0 && errno != EINTR)
			return false;
		if (!(p.revents & (POLLIN | POLLHUP))) {
			if (worker_died())
				return false;
			continue;
		}
		n = read(fd, &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || c == 'x')
			return false;
		count--;
	}
	return true;
}

static void show_counts(shmg_t *h, const char *when)
{
	long reg = shmg_registry_count(h, NULL);
	long mem = shmg_member_count(h, SHMG_KEY("room/"), NULL);

	printf("%s: %ld registered, %ld members of room/\n", when, reg, mem);
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: shmgroup-demo [-n WORKERS] [-g GROUP] [--pause]\n"
		"  -n, --workers N  number of worker processes, 1..%d (default 4)\n"
		"  -g, --group NAME group to use (default: a fresh demo-<pid>)\n"
		"  -p, --pause      wait for Enter while every worker is in\n",
		MAX_WORKERS);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "workers", required_argument, NULL, 'n' },
		{ "group", required_argument, NULL, 'g' },
		{ "pause", no_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct barrier b;
	struct shmg_config cfg;
	char group[SHMG_NAME_MAX + 1];
	shmg_t *h;
	int nworkers = 4, opt, i, rc, status, failed = 0;
	bool pause = false, own_name = false;

	group[0] = '\0';
	while ((opt = getopt_long(argc, argv, "n:g:ph", longopts, NULL)) != -1) {
		switch (opt) {
		case 'n':
			nworkers = atoi(optarg);
			if (nworkers < 1 || nworkers > MAX_WORKERS) {
				usage(stderr);
				return 1;
			}
			break;
		case 'g':
			snprintf(group, sizeof(group), "%s", optarg);
			break;
		case 'p':
			pause = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (!group[0]) {
		snprintf(group, sizeof(group), "demo-%ld", (long)getpid());
		own_name = true;
	}

	/* The parent creates the group and keeps a handle to watch the counts. */
	memset(&cfg, 0, sizeof(cfg));
	cfg.flags = own_name ? SHMG_OPEN_EXCL : 0;
	rc = shmg_open(group, &cfg, &h);
	if (rc < 0)
		return fail("parent", "open", rc);
	printf("group %s: starting %d worker%s\n", group, nworkers, nworkers == 1 ? "" : "s");

	if (pipe(b.ready) < 0 || pipe(b.leave) < 0) {
		perror("shmgroup-demo: pipe");
		failed = 1;
		goto out;
	}
	for (i = 0; i < nworkers; i++) {
		if (pipe(b.speak[i]) < 0) {
			perror("shmgroup-demo: pipe");
			failed = 1;
			goto out;
		}
	}
	fflush(stdout); /* so that no child prints the parent's buffer again */
	for (i = 0; i < nworkers; i++) {
		pid_t pid = fork();

		if (pid < 0) {
			perror("shmgroup-demo: fork");
			failed = 1;
			break;
		}
		if (pid == 0) {
			int j;

			/* Keep only the read ends this worker waits on, so EOF
			 * arrives when the parent closes the write ends. */
			close(b.ready[0]);
			close(b.leave[1]);
			for (j = 0; j < nworkers; j++)
				close(b.speak[j][1]);
			/* The parent's handle is unusable here (-ECHILD); it is
			 * simply left alone. */
			rc = worker(i, nworkers, group, &b);
			fflush(stdout);
			_exit(rc);
		}
		pids[i] = pid;
		npids = i + 1;
	}
	close(b.ready[1]);
	close(b.leave[0]);
	for (i = 0; i < nworkers; i++)
		close(b.speak[i][0]);

	if (!failed && !collect_ready(b.ready[0], npids)) {
		fprintf(stderr, "shmgroup-demo: a worker failed to register\n");
		failed = 1;
	}
	if (!failed) {
		show_counts(h, "all workers in");
		printf("\n");
		fflush(stdout);
		for (i = 0; i < npids && !failed; i++) {
			close(b.speak[i][1]);
			b.speak[i][1] = -1;
			if (!collect_ready(b.ready[0], 1))
				failed = 1;
		}
		printf("\n");
	}
	if (!failed && pause) {
		char line[16];

		printf("paused; in another terminal try:  shmgroupctl -g %s dump\n"
		       "press Enter to let the workers close... ",
		       group);
		fflush(stdout);
		if (!fgets(line, sizeof(line), stdin))
			printf("\n");
	}
	/* Release everyone (also the ones still waiting after a failure). */
	for (i = 0; i < nworkers; i++)
		if (b.speak[i][1] >= 0)
			close(b.speak[i][1]);
	close(b.leave[1]);
	for (i = 0; i < npids; i++) {
		if (pids[i] <= 0) {
			failed = 1;
			continue;
		}
		if (waitpid(pids[i], &status, 0) != pids[i]) {
			failed = 1;
		} else if (WIFSIGNALED(status)) {
			fprintf(stderr, "shmgroup-demo: worker/%d was killed by signal %d\n", i,
				WTERMSIG(status));
			failed = 1;
		} else if (WEXITSTATUS(status) != 0) {
			failed = 1;
		}
	}
	show_counts(h, "all workers closed");
	if (shmg_registry_count(h, NULL) != 0 || shmg_member_count(h, SHMG_KEY("room/"), NULL) != 0)
		failed = 1;

out:
	shmg_close(h);
	rc = shmg_destroy(group);
	if (rc < 0)
		fail("parent", "destroy", rc);
	else
		printf("group %s destroyed\n", group);
	if (failed)
		fprintf(stderr, "shmgroup-demo: something went wrong (see above)\n");
	return failed ? 1 : 0;
}
