/* SPDX-License-Identifier: MIT */
/*
 * A handle used in a forked child: every call returns -ECHILD, closing it
 * releases only the child's copy, and the parent's endpoint and entries are
 * untouched.  A new handle opened in the child works.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tc.h"

#define MAX_CALLS 40

struct results {
	int n;
	long rc[MAX_CALLS];
	char what[MAX_CALLS][32];
	long close_rc;
	long new_open_rc, new_lookup_rc, new_register_rc, new_taken_rc;
	shmg_id_t new_id;
	int done;
};

static shmg_t *inherited;
static struct results *res;

static int noop_cb(const struct shmg_entry *e, void *arg)
{
	(void)e, (void)arg;
	return 0;
}

static int cluster_cb(const char *name, void *arg)
{
	(void)name, (void)arg;
	return 0;
}

static void rec(const char *what, long rc)
{
	if (res->n < MAX_CALLS) {
		snprintf(res->what[res->n], sizeof(res->what[0]), "%s", what);
		res->rc[res->n++] = rc;
	}
}

static int child(void *arg)
{
	shmg_t *h = inherited;
	struct shmg_entry e;
	struct shmg_info in;
	shmg_id_t ids[2];
	uint32_t nodes[2];
	const char *cl[] = { "c" };
	struct shmg_opts c = { .cluster = "c" };

	(void)arg;
	rec("register", shmg_register(h, SHMG_KEY("child-key"), "m", 1, NULL));
	rec("register-held", shmg_register(h, SHMG_KEY("parent-key"), "m", 1, NULL));
	rec("unregister", shmg_unregister(h, SHMG_KEY("parent-key"), NULL));
	rec("lookup", shmg_lookup(h, SHMG_KEY("parent-key"), NULL, NULL, 0, NULL, NULL));
	rec("lookup_ref", shmg_lookup_ref(h, SHMG_KEY("parent-key"), &e, NULL));
	rec("read_begin", shmg_read_begin(h));
	rec("read_end", shmg_read_end(h));
	rec("registry_count", shmg_registry_count(h, NULL));
	rec("local_registry_count", shmg_local_registry_count(h, NULL));
	rec("join", shmg_join(h, SHMG_KEY("parent-group"), "m", 1, NULL));
	rec("leave", shmg_leave(h, SHMG_KEY("parent-group"), NULL));
	rec("members", shmg_members(h, SHMG_KEY("parent-group"), noop_cb, NULL, NULL));
	rec("local_members", shmg_local_members(h, SHMG_KEY("parent-group"), noop_cb, NULL, NULL));
	rec("member_ids", shmg_member_ids(h, SHMG_KEY("parent-group"), ids, 2, NULL));
	rec("member_count", shmg_member_count(h, SHMG_KEY("parent-group"), NULL));
	rec("local_member_count", shmg_local_member_count(h, SHMG_KEY("parent-group"), NULL));
	rec("local_entries", shmg_local_entries(h, noop_cb, NULL));
	rec("entries", shmg_entries(h, 1, noop_cb, NULL));
	rec("set_extract_meta", shmg_set_extract_meta(h, NULL, NULL));
	rec("connect", shmg_connect(h, "c2", NULL));
	rec("connected", shmg_connected(h, "c"));
	rec("register-cluster", shmg_register(h, SHMG_KEY("k"), NULL, 0, &c));
	rec("disconnect", shmg_disconnect(h, "c"));
	rec("disconnect_many", shmg_disconnect_many(h, cl, 1));
	rec("nodes", shmg_nodes(h, "c", nodes, 2));
	rec("clusters", shmg_clusters(h, cluster_cb, NULL));
	rec("reap", shmg_reap(h));
	rec("check", shmg_check(h, NULL, NULL));
	rec("info", shmg_info(h, &in));
	rec("log_level", shmg_log_level(h, -1));

	/* Releasing the child's copy does not close the parent's endpoint. */
	res->close_rc = shmg_close(h);

	/* A handle of its own works. */
	shmg_t *mine = NULL;
	res->new_open_rc = shmg_open(tc_arena, NULL, &mine);
	if (res->new_open_rc == 0) {
		res->new_id = shmg_self(mine);
		res->new_lookup_rc = shmg_lookup(mine, SHMG_KEY("parent-key"), NULL, NULL, 0, NULL, NULL);
		res->new_register_rc = shmg_register(mine, SHMG_KEY("child-own"), "c", 1, NULL);
		res->new_taken_rc = shmg_register(mine, SHMG_KEY("parent-key"), "c", 1, NULL);
		shmg_close(mine);
	}
	res->done = 1;
	return 0;
}

static void parent_state_intact(shmg_t *h)
{
	shmg_id_t id;
	char m[8];
	size_t ml;

	TC_EQ(shmg_lookup(h, SHMG_KEY("parent-key"), &id, m, sizeof(m), &ml, NULL), 0);
	ck_assert(shmg_id_equal(id, shmg_self(h)));
	ck_assert_uint_eq(ml, 2);
	ck_assert_mem_eq(m, "pm", 2);
	TC_EQ(shmg_member_count(h, SHMG_KEY("parent-group"), NULL), 1);
	TC_EQ(shmg_lookup(h, SHMG_KEY("child-key"), NULL, NULL, 0, NULL, NULL), -ENOENT);
	TC_EQ(shmg_connected(h, "c"), 1);
	TC_EQ(shmg_connected(h, "c2"), 0);
	struct shmg_opts c = { .cluster = "c" };
	TC_EQ(shmg_registry_count(h, &c), 1);
}

START_TEST(test_fork_echild)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	struct shmg_opts c = { .cluster = "c" };

	TC_EQ(shmg_register(h, SHMG_KEY("parent-key"), "pm", 2, NULL), 0);
	TC_EQ(shmg_join(h, SHMG_KEY("parent-group"), "g", 1, NULL), 0);
	TC_EQ(shmg_connect(h, "c", NULL), 0);
	TC_EQ(shmg_register(h, SHMG_KEY("in-c"), NULL, 0, &c), 0);
	inherited = h;
	res = tc_shared_alloc(sizeof(*res));

	pid_t pid = tc_fork(child, NULL);
	TC_EQ(tc_wait_exit(pid, 10000), 0);
	ck_assert_int_eq(res->done, 1);
	for (int i = 0; i < res->n; i++)
		ck_assert_msg(res->rc[i] == -ECHILD, "%s in child = %ld (%s), expected -ECHILD",
			      res->what[i], res->rc[i], shmg_strerror((int)res->rc[i]));
	TC_EQ(res->close_rc, 0);
	TC_EQ(res->new_open_rc, 0);
	ck_assert_int_eq(shmg_id_equal(res->new_id, shmg_self(h)), 0);
	TC_EQ(res->new_lookup_rc, 0);
	TC_EQ(res->new_register_rc, 0);
	TC_EQ(res->new_taken_rc, -EEXIST);

	/* The parent is unaffected, and still writes. */
	parent_state_intact(h);
	TC_EQ(shmg_lookup(h, SHMG_KEY("child-own"), NULL, NULL, 0, NULL, NULL), -ENOENT);
	TC_EQ(shmg_register(h, SHMG_KEY("after"), NULL, 0, NULL), 0);
	TC_EQ(shmg_unregister(h, SHMG_KEY("after"), NULL), 0);
	struct shmg_info in;
	TC_EQ(shmg_info(h, &in), 0);
	ck_assert_uint_eq(in.endpoints_live, 1);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

static int child_exits(void *arg)
{
	(void)arg;
	/* Dies holding the copy: no close, no exit handlers. */
	return shmg_registry_count(inherited, NULL) == -ECHILD ? 0 : 1;
}

START_TEST(test_child_exit_does_not_kill_parent_endpoint)
{
	shmg_t *h = tc_open(tc_arena, NULL);
	struct shmg_opts c = { .cluster = "c" };

	TC_EQ(shmg_register(h, SHMG_KEY("parent-key"), "pm", 2, NULL), 0);
	TC_EQ(shmg_join(h, SHMG_KEY("parent-group"), "g", 1, NULL), 0);
	TC_EQ(shmg_connect(h, "c", NULL), 0);
	TC_EQ(shmg_register(h, SHMG_KEY("in-c"), NULL, 0, &c), 0);
	inherited = h;
	pid_t pid = tc_fork(child_exits, NULL);
	TC_EQ(tc_wait_exit(pid, 10000), 0);
	/* The reaper must not take the parent's endpoint for the child's. */
	TC_EQ(shmg_reap(h), 0);
	parent_state_intact(h);
	shmg_close(h);
}
END_TEST

START_TEST(test_fork_inside_read_section)
{
	shmg_t *h = tc_open(tc_arena, NULL);

	TC_EQ(shmg_register(h, SHMG_KEY("parent-key"), "pm", 2, NULL), 0);
	TC_EQ(shmg_read_begin(h), 0);
	inherited = h;
	pid_t pid = tc_fork(child_exits, NULL);
	TC_EQ(tc_wait_exit(pid, 10000), 0);
	TC_EQ(shmg_read_end(h), 0);
	/* Writes and reclamation go on. */
	for (int i = 0; i < 100; i++)
		TC_EQ(shmg_register(h, SHMG_KEY("parent-key"), i % 2 ? "a" : "b", 1, NULL), 0);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

static Suite *fork_suite(void)
{
	Suite *s = suite_create("fork");
	TCase *tc = tc_case(s, "fork", 20);

	tcase_add_test(tc, test_fork_echild);
	tcase_add_test(tc, test_child_exit_does_not_kill_parent_endpoint);
	tcase_add_test(tc, test_fork_inside_read_section);
	return s;
}

int main(void)
{
	return tc_run(fork_suite());
}
