/* SPDX-License-Identifier: MIT */
/*
 * Who may have made the arena an open uses.  The owner of the shared-memory
 * object can rewrite it (and its locks) under everyone attached, so an open
 * accepts only an object of the caller's own uid, or of the uid named with
 * SHMG_OPEN_OWNER, and only while its mode grants no more than its creator
 * configured.
 *
 * The two-user tests run as root and do the other user's part in a forked
 * child that drops to nobody (65534) with setresuid; without root they are
 * skipped with a message.  The mode test runs as anyone.
 */
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tc.h"

#define NOBODY 65534u

static char last_log[512];

static void capture_log(enum shmg_log_level level, const char *msg, void *arg)
{
	(void)level;
	(void)arg;
	snprintf(last_log, sizeof(last_log), "%s", msg);
}

/* In a child: becomes nobody for good (no way back to root). */
static int become_nobody(void)
{
	if (setgroups(0, NULL) != 0 || setresgid(NOBODY, NOBODY, NOBODY) != 0 ||
	    setresuid(NOBODY, NOBODY, NOBODY) != 0)
		return -1;
	return 0;
}

/* Runs fn as nobody in a child and returns its exit code. */
static int as_nobody(int (*fn)(void *), void *arg)
{
	return tc_wait_exit(tc_fork(fn, arg), 10000);
}

/* Child exit codes: 0 as expected; 100 + the negated errno otherwise. */
static int code_of(int rc, int want)
{
	return rc == want ? 0 : 100 + (rc < 0 ? -rc : 99);
}

static struct stat stat_arena(void)
{
	char path[300];
	struct stat st;

	tc_arena_path(tc_arena, path, sizeof(path));
	ck_assert_int_eq(stat(path, &st), 0);
	return st;
}

static void chmod_arena(mode_t mode)
{
	char path[300];

	tc_arena_path(tc_arena, path, sizeof(path));
	ck_assert_int_eq(chmod(path, mode), 0);
}

/* ---- any user ----------------------------------------------------------- */

START_TEST(test_widened_mode_refused)
{
	struct shmg_config c = { .mode = 0640 };
	shmg_t *h = tc_open(tc_arena, &c), *o = NULL;

	shmg_set_log_fn(capture_log, NULL);
	chmod_arena(0666);
	TC_EQ(shmg_open(tc_arena, NULL, &o), -EACCES);
	ck_assert_ptr_null(o);
	ck_assert_msg(strstr(last_log, "mode 0666") != NULL, "log: %s", last_log);
	c.flags = SHMG_OPEN_NOCREATE;
	TC_EQ(shmg_open(tc_arena, &c, &o), -EACCES);
	chmod_arena(0644);
	TC_EQ(shmg_open(tc_arena, NULL, &o), -EACCES);
	/* Narrower than configured is fine. */
	chmod_arena(0600);
	o = tc_open(tc_arena, NULL);
	shmg_close(o);
	chmod_arena(0640);
	o = tc_open(tc_arena, NULL);
	shmg_close(o);
	shmg_close(h);
	shmg_set_log_fn(NULL, NULL);
}
END_TEST

START_TEST(test_owner_uid_needs_flag)
{
	struct shmg_config c = { .owner_uid = 1 };
	shmg_t *o = NULL;

	TC_EQ(shmg_open(tc_arena, &c, &o), -EINVAL);
	ck_assert(!tc_arena_exists(tc_arena));
	/* Naming oneself is allowed (and changes nothing). */
	c.flags = SHMG_OPEN_OWNER;
	c.owner_uid = (uint32_t)geteuid();
	o = tc_open(tc_arena, &c);
	shmg_close(o);
}
END_TEST

/* ---- root and nobody ---------------------------------------------------- */

/* nobody prepares an empty object under the arena's name, open to all, for
 * root to initialise and then use while nobody can still write it. */
static int squat(void *arg)
{
	char path[300];
	(void)arg;

	if (become_nobody() != 0)
		return 1;
	tc_arena_path(tc_arena, path, sizeof(path));
	int fd = open(path, O_CREAT | O_EXCL | O_RDWR, 0666);
	if (fd < 0)
		return 2;
	fchmod(fd, 0666);
	close(fd);
	return 0;
}

START_TEST(test_squatted_object_refused)
{
	if (!tc_second_user_ok(__func__))
		return;
	shmg_t *h = NULL;
	struct shmg_config c = { .flags = SHMG_OPEN_NOCREATE };

	shmg_set_log_fn(capture_log, NULL);
	TC_EQ(as_nobody(squat, NULL), 0);
	TC_EQ(shmg_open(tc_arena, NULL, &h), -EACCES);
	ck_assert_ptr_null(h);
	ck_assert_msg(strstr(last_log, "owned by uid 65534") != NULL, "log: %s", last_log);
	TC_EQ(shmg_open(tc_arena, &c, &h), -EACCES);
	/* Left as it was: not initialised, not resized, still nobody's. */
	struct stat st = stat_arena();
	ck_assert_int_eq(st.st_size, 0);
	ck_assert_uint_eq(st.st_uid, NOBODY);
	shmg_set_log_fn(NULL, NULL);
}
END_TEST

/* nobody creates a real arena that anyone may open. */
static int create_open_arena(void *arg)
{
	struct shmg_config c = { .mode = 0666 };
	shmg_t *h = NULL;
	(void)arg;

	if (become_nobody() != 0)
		return 1;
	int rc = shmg_open(tc_arena, &c, &h);
	if (rc == 0)
		rc = shmg_close(h);
	return code_of(rc, 0);
}

START_TEST(test_foreign_arena_refused)
{
	if (!tc_second_user_ok(__func__))
		return;
	struct shmg_config c = { .flags = SHMG_OPEN_OWNER, .owner_uid = NOBODY };
	shmg_t *h = NULL;

	TC_EQ(as_nobody(create_open_arena, NULL), 0);
	TC_EQ(shmg_open(tc_arena, NULL, &h), -EACCES);
	ck_assert_ptr_null(h);
	/* Named as the owner it is accepted. */
	h = tc_open(tc_arena, &c);
	TC_EQ(shmg_register(h, SHMG_KEY("root/k"), NULL, 0, NULL), 0);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

static int attach_root_arena(void *arg)
{
	struct shmg_config c = { .flags = SHMG_OPEN_OWNER, .owner_uid = 0 };
	shmg_t *h = NULL;
	int rc;
	(void)arg;

	if (become_nobody() != 0)
		return 1;
	if ((rc = shmg_open(tc_arena, NULL, &h)) != -EACCES)
		return code_of(rc, -EACCES);
	if ((rc = shmg_open(tc_arena, &c, &h)) != 0)
		return code_of(rc, 0);
	rc = shmg_register(h, SHMG_KEY("nobody/k"), NULL, 0, NULL);
	if (rc == 0)
		rc = shmg_close(h);
	return code_of(rc, 0);
}

START_TEST(test_root_arena_needs_naming_root)
{
	if (!tc_second_user_ok(__func__))
		return;
	struct shmg_config c = { .mode = 0666 };
	shmg_t *h = tc_open(tc_arena, &c);

	TC_EQ(as_nobody(attach_root_arena, NULL), 0);
	TC_ASSERT_CLEAN(h);
	shmg_close(h);
}
END_TEST

static Suite *owner_suite(void)
{
	Suite *s = suite_create("owner");
	TCase *tc = tc_case(s, "owner", 20);

	tcase_add_test(tc, test_widened_mode_refused);
	tcase_add_test(tc, test_owner_uid_needs_flag);
	tcase_add_test(tc, test_squatted_object_refused);
	tcase_add_test(tc, test_foreign_arena_refused);
	tcase_add_test(tc, test_root_arena_needs_naming_root);
	return s;
}

int main(void)
{
	return tc_run(owner_suite());
}
