/* SPDX-License-Identifier: MIT */
/*
 * The public header must compile cleanly as C++ (-pedantic -Werror) and its
 * functions must link from C++ (extern "C").
 */
#include <shmgroup.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

static int entry_cb(const struct shmg_entry *e, void *arg)
{
	(void)e;
	(void)arg;
	return 0;
}

int main()
{
	shmg_id_t id = { 1, 42, 7 };
	shmg_id_t back = { 0, 0, 0 };
	char buf[SHMG_ID_STRLEN];
	struct shmg_config config = {};
	struct shmg_opts opts = {};
	shmg_entry_fn fn = entry_cb;
	shmg_kind kind = SHMG_MEMBER;

	config.flags = SHMG_OPEN_NOCREATE;
	opts.cluster = "example";
	(void)fn;
	(void)kind;
	(void)config;
	(void)opts;
	int n = shmg_id_format(id, buf, sizeof(buf));
	if (n != 7 || std::strcmp(buf, "n1.42.7") != 0) {
		std::fprintf(stderr, "shmg_id_format gave %d \"%s\"\n", n, buf);
		return 1;
	}
	if (shmg_id_parse(buf, &back) != 0 || !shmg_id_equal(id, back)) {
		std::fprintf(stderr, "shmg_id_parse did not round-trip\n");
		return 1;
	}
	{
		struct shmg_endpoint_stats es; // the tag, as for shmg_info
		shmg_event ev = shmg_event();

		if (shmg_endpoint_stats(nullptr, 0, &es, sizeof(es)) != -EBADF || ev.group != nullptr) {
			std::fprintf(stderr, "shmg_endpoint_stats accepted a NULL handle\n");
			return 1;
		}
	}
	if (shmg_strerror(-ENOENT) == NULL) {
		std::fprintf(stderr, "shmg_strerror returned NULL\n");
		return 1;
	}
	return 0;
}
