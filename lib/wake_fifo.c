/* SPDX-License-Identifier: MIT */
/*
 * The epoll consumer's wakeup FIFO, one per endpoint, in /dev/shm.
 *
 * Why a FIFO: on the VMs we measure on, a Unix-socket wakeup through epoll
 * alternates slow and fast (about 12 µs then 5 µs) while a pipe's does not
 * (bench/analysis.md, "Event delivery").  A FIFO is a pipe with a name that
 * producers in other processes can open.  The datagram socket stays: shmg_fd
 * is an epoll set holding both, and a producer that cannot use a consumer's
 * FIFO sends the datagram instead, so no wakeup depends on the FIFO.  A byte
 * is only a hint (the ring is the truth): a full FIFO (a stopped consumer)
 * is a wakeup pending already, a foreign byte costs an empty receive.
 *
 * Naming.  "/dev/shm/shmgroup.<name>@wake.<slot>.<gen>.<nonce>": the arena's
 * name, the endpoint's slot and generation (hex) and a random nonce.  Arena
 * names have no '@', so the prefix "shmgroup.<name>@" belongs to this arena
 * alone: no other arena's object or FIFO can match it.  The slot and
 * generation come from the caller (the target a producer delivered to, the
 * endpoint being released), never from the mailbox; only the nonce does, and
 * a scribbled one names at worst another name of this arena's FIFOs.  The
 * nonce makes the name unforeseeable, so a local user without access to the
 * arena cannot squat it (mkfifo refuses a taken name: another nonce).
 *
 * Trust.  The consumer records in its mailbox header (before it publishes
 * its generation) the nonce, the FIFO's inode and its own uid.  A producer
 * opens the name O_RDWR | O_NONBLOCK, which never blocks, and fstat-checks
 * that it is a FIFO of that inode owned by that uid; anything else is not
 * written to, and it falls back to the datagram.  O_RDWR, not O_WRONLY: a
 * producer holding a read side too never gets SIGPIPE from a write once its
 * consumer has died (a library installs no signal handlers), and the
 * consumer's own O_RDWR descriptor never reports EOF/HUP.  The FIFO gets the
 * arena object's mode and, when the consumer may give it, its group, so the
 * users who may write the arena may open it; a consumer of another uid on
 * an SHMG_OPEN_OWNER arena is thus woken by everyone (the uid recorded is
 * its own, not the arena owner's).
 *
 * Producers keep the descriptor they opened per consumer (slot, gen, nonce),
 * WAKE_FIFO_CACHE of them by slot, as the datagram path keeps its socket
 * connected; a consumer whose FIFO was not usable is remembered as such.
 *
 * Removal.  Whoever retires the endpoint's mailbox (its close, the reap of
 * a dead owner) removes the FIFO, checking first that the name is a FIFO of
 * the recorded inode and uid: a scribbled record never makes anyone unlink
 * another file.  /dev/shm is sticky, so a reaper of another uid cannot
 * remove it: the record then stays and the slot's next owner removes it
 * when it can; shmg_destroy removes every FIFO of the arena's name.
 */
#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define FIFO_DIR "/dev/shm/"
#define FIFO_CREATE_TRIES 16
/* FIFO_DIR, "shmgroup.", the name, "@wake.", 8 + 1 + 8 + 1 + 16 and a NUL. */
#define FIFO_PATH_MAX (sizeof(FIFO_DIR) + 9 + SHMG_NAME_MAX + 6 + 34 + 1)

static char *put_hex(char *p, uint64_t v, int digits)
{
	for (int i = digits - 1; i >= 0; i--, v >>= 4)
		p[i] = "0123456789abcdef"[v & 15];
	return p + digits;
}

/* "shmgroup.<name>@wake.": what every FIFO of arena `name` starts with. */
static char *fifo_prefix(char *p, const char *name)
{
	size_t n = strnlen(name, SHMG_NAME_MAX);
	memcpy(p, "shmgroup.", 9);
	memcpy(p + 9, name, n);
	memcpy(p + 9 + n, "@wake.", 6);
	return p + 9 + n + 6;
}

/* Formatted by hand: a producer names its consumer inside its locks. */
static void fifo_path(const shmg_t *h, uint32_t slot, uint32_t gen, uint64_t nonce,
		      char path[FIFO_PATH_MAX])
{
	memcpy(path, FIFO_DIR, sizeof(FIFO_DIR) - 1);
	char *p = fifo_prefix(path + sizeof(FIFO_DIR) - 1, h->name);
	p = put_hex(p, slot, 8);
	*p++ = '.';
	p = put_hex(p, gen, 8);
	*p++ = '.';
	p = put_hex(p, nonce, 16);
	*p = 0;
}

static bool is_recorded_fifo(const struct stat *st, uint64_t ino, uint32_t uid)
{
	return S_ISFIFO(st->st_mode) && (uint64_t)st->st_ino == ino && (uint32_t)st->st_uid == uid;
}

/* Opens FIFO path read-write without blocking and makes it the arena's:
 * its mode, and its group if we may give it.  -errno. */
static int fifo_open_own(const shmg_t *h, const char *path, struct stat *st)
{
	struct stat arena;
	int fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	if (fd < 0)
		return -errno;
	if (fstat(fd, st) < 0 || fstat(h->fd, &arena) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	if (!S_ISFIFO(st->st_mode)) {
		close(fd); /* replaced under us (only its owner could): not ours */
		return -EEXIST;
	}
	/* Not a member of the arena's group: producers outside ours use the
	 * datagram instead. */
	if (st->st_gid != arena.st_gid)
		(void)!fchown(fd, (uid_t)-1, arena.st_gid);
	/* mkfifo's mode went through the umask. */
	if (fchmod(fd, arena.st_mode & 0666) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

int wake_fifo_create(shmg_t *h, uint32_t slot, uint32_t gen)
{
	h->fifo = (struct wake_fifo_own){.fd = -1};
	for (int tries = 0; tries < FIFO_CREATE_TRIES; tries++) {
		uint64_t nonce = wake_nonce_new();
		char path[FIFO_PATH_MAX];
		fifo_path(h, slot, gen, nonce, path);
		if (mkfifo(path, 0600) < 0) {
			if (errno == EEXIST)
				continue; /* someone else's name: another nonce */
			return -errno;
		}
		struct stat st;
		int fd = fifo_open_own(h, path, &st);
		if (fd == -ENOENT || fd == -EEXIST)
			continue; /* a shmg_destroy removed it, or its owner replaced it */
		struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
		if (fd >= 0 && epoll_ctl(h->mb_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			fd = -errno;
		}
		if (fd < 0) {
			unlink(path);
			return fd;
		}
		h->fifo = (struct wake_fifo_own){.fd = fd, .slot = slot, .gen = gen, .nonce = nonce,
						 .ino = (uint64_t)st.st_ino, .uid = (uint32_t)st.st_uid};
		return 0;
	}
	return -EADDRNOTAVAIL;
}

int wake_fifo_remove(const shmg_t *h, uint32_t slot, uint32_t gen, uint64_t nonce, uint64_t ino,
		     uint32_t uid)
{
	if (!nonce)
		return 0;
	char path[FIFO_PATH_MAX];
	fifo_path(h, slot, gen, nonce, path);
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	/* Whatever else is there, it is not what the consumer recorded: left
	 * alone (only its owner, who can replace the FIFO anyway, could have
	 * swapped it between this check and the unlink: /dev/shm is sticky). */
	if (!is_recorded_fifo(&st, ino, uid))
		return 0;
	return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}

/* The descriptor of consumer (slot, gen)'s FIFO as its mailbox records it,
 * or -1: not there (gone with its consumer, or never made), not openable
 * by us, or not what the consumer recorded. */
static int fifo_open_peer(const shmg_t *h, uint32_t slot, uint32_t gen, uint64_t nonce,
			  uint64_t ino, uint32_t uid)
{
	char path[FIFO_PATH_MAX];
	fifo_path(h, slot, gen, nonce, path);
	int fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	if (fd < 0)
		return -1;
	struct stat st;
	if (fstat(fd, &st) < 0 || !is_recorded_fifo(&st, ino, uid)) {
		close(fd);
		return -1;
	}
	return fd;
}

bool wake_fifo_send(shmg_t *h, uint32_t slot, uint32_t gen, const struct mailbox_header *mb)
{
	/* Copies: the mailbox may change under us.  The whole record is the
	 * key, so a consumer that repairs a scribbled one is followed. */
	uint64_t nonce = load_relaxed(&mb->fifo_nonce), ino = load_relaxed(&mb->fifo_ino);
	uint32_t uid = load_relaxed(&mb->fifo_uid);
	if (!nonce)
		return false;
	struct wake_fifo_out *c = &h->fifo_out[slot % WAKE_FIFO_CACHE];
	if (c->slot != slot || c->gen != gen || c->nonce != nonce || c->ino != ino || c->uid != uid) {
		if (c->fd >= 0)
			close(c->fd);
		*c = (struct wake_fifo_out){.fd = fifo_open_peer(h, slot, gen, nonce, ino, uid),
					    .slot = slot, .gen = gen, .nonce = nonce, .ino = ino,
					    .uid = uid};
	}
	if (c->fd < 0)
		return false;
	char b = 1;
	/* EAGAIN: the FIFO is full, a wakeup is pending already. */
	if (write(c->fd, &b, 1) == 1 || errno == EAGAIN)
		return true;
	close(c->fd);
	c->fd = -1;
	return false;
}

void wake_fifo_drain(shmg_t *h)
{
	/* A short read has emptied it.  Bounded: a user who may write the
	 * arena may also fill the FIFO as fast as we read. */
	char buf[256];
	for (int i = 0; h->fifo.fd >= 0 && i < 16; i++)
		if (read(h->fifo.fd, buf, sizeof(buf)) < (ssize_t)sizeof(buf))
			break;
}

void wake_fifo_reset_cache(shmg_t *h)
{
	for (size_t i = 0; i < WAKE_FIFO_CACHE; i++)
		h->fifo_out[i] = (struct wake_fifo_out){.fd = -1};
}

void wake_fifo_close_cache(shmg_t *h)
{
	for (size_t i = 0; i < WAKE_FIFO_CACHE; i++)
		if (h->fifo_out[i].fd >= 0)
			close(h->fifo_out[i].fd);
	wake_fifo_reset_cache(h);
}

void wake_fifo_remove_all(const char *name)
{
	char prefix[FIFO_PATH_MAX];
	size_t n = (size_t)(fifo_prefix(prefix, name) - prefix);
	DIR *d = opendir(FIFO_DIR);
	if (!d)
		return;
	struct dirent *e;
	struct stat st;
	/* Only FIFOs: whatever else carries the prefix is not ours to remove.
	 * Another user's are left where sticky /dev/shm says so. */
	while ((e = readdir(d)) != NULL)
		if (strncmp(e->d_name, prefix, n) == 0 &&
		    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISFIFO(st.st_mode))
			unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
}
