/* SPDX-License-Identifier: MIT */
/*
 * Runs every file of the fuzz corpus (tests/fuzz/corpus, given as argv[1])
 * through the datagram decoder under the normal build: files named valid-*
 * must decode, every other file must be refused, and none may crash (the
 * sanitizer build checks the reads).
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc_check.h"
#include "wire.h"

static const char *corpus_dir;

START_TEST(test_corpus_decodes_as_named)
{
	DIR *d = opendir(corpus_dir);
	struct dirent *e;
	int files = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d))) {
		char path[4096];
		static uint8_t buf[WIRE_MAX_DATAGRAM + 1];
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", corpus_dir, e->d_name);
		FILE *f = fopen(path, "rb");
		ck_assert_ptr_nonnull(f);
		size_t len = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		/* An exact-size copy, so that an over-read is an out-of-bounds
		 * access the sanitizer sees. */
		uint8_t *exact = malloc(len ? len : 1);
		memcpy(exact, buf, len);
		int rc = wire_decode_all(exact, len);
		free(exact);
		if (!strncmp(e->d_name, "valid-", 6))
			ck_assert_msg(rc >= 0, "%s: refused", e->d_name);
		else
			ck_assert_msg(rc == -EBADMSG, "%s: accepted", e->d_name);
		files++;
	}
	closedir(d);
	ck_assert_int_ge(files, 4);
}
END_TEST

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
		return 2;
	}
	corpus_dir = argv[1];
	Suite *s = suite_create("wire-corpus");
	TCase *tc = tcase_create("corpus");
	tcase_add_test(tc, test_corpus_decodes_as_named);
	suite_add_tcase(s, tc);
	return tc_run_suite(s);
}
