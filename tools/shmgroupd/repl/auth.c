/* SPDX-License-Identifier: MIT */
/*
 * MAC and replay window.  Why keyed BLAKE2b rather than HMAC-SHA-512-256:
 * both are in libsodium and both are fine; BLAKE2b takes a key natively, is
 * faster on short messages, and its output length is a parameter, so the
 * 16-byte tag is the hash's own output rather than a truncation.
 */
#include <errno.h>
#include <sodium.h>
#include <string.h>

#include "auth.h"
#include "wire.h"

int auth_init(void)
{
	return sodium_init() < 0 ? -ENOSYS : 0;
}

void auth_key_set(struct auth_key *k, const uint8_t key[AUTH_KEY_LEN])
{
	static const char domain[] = "shmgroup key id";
	uint8_t id[4];

	if (!key) {
		memset(k->key, 0, sizeof(k->key));
		k->id = 0;
		return;
	}
	memcpy(k->key, key, AUTH_KEY_LEN);
	crypto_generichash(id, sizeof(id), (const uint8_t *)domain, sizeof(domain) - 1, key,
			   AUTH_KEY_LEN);
	k->id = (uint32_t)id[0] | (uint32_t)id[1] << 8 | (uint32_t)id[2] << 16 |
		(uint32_t)id[3] << 24;
	if (k->id == 0)
		k->id = 1; /* 0 is reserved for the no-key mode */
}

void auth_key_wipe(struct auth_key *k)
{
	sodium_memzero(k, sizeof(*k));
}

void auth_sign(const struct auth_key *k, uint8_t *buf, size_t len)
{
	crypto_generichash(buf + len, WIRE_MAC_LEN, buf, len, k->key, AUTH_KEY_LEN);
}

int auth_verify(const struct auth_key *k, const uint8_t *buf, size_t len)
{
	uint8_t mac[WIRE_MAC_LEN];

	crypto_generichash(mac, sizeof(mac), buf, len, k->key, AUTH_KEY_LEN);
	return sodium_memcmp(mac, buf + len, WIRE_MAC_LEN) == 0;
}

void auth_replay_reset(struct auth_replay *r)
{
	r->highest = 0;
	CK_BITMAP_INIT(&r->seen, AUTH_REPLAY_WINDOW, false);
}

int auth_replay_accept(struct auth_replay *r, uint64_t pkt_no)
{
	if (pkt_no == 0)
		return 0;
	if (pkt_no > r->highest) {
		/* Slide: forget the numbers that fall out of the window. */
		uint64_t gap = pkt_no - r->highest;
		if (gap >= AUTH_REPLAY_WINDOW || r->highest == 0) {
			CK_BITMAP_CLEAR(&r->seen);
		} else {
			for (uint64_t n = r->highest + 1; n <= pkt_no; n++)
				CK_BITMAP_RESET(&r->seen, (unsigned)(n % AUTH_REPLAY_WINDOW));
		}
		r->highest = pkt_no;
		CK_BITMAP_SET(&r->seen, (unsigned)(pkt_no % AUTH_REPLAY_WINDOW));
		return 1;
	}
	if (r->highest - pkt_no >= AUTH_REPLAY_WINDOW)
		return 0;
	return !CK_BITMAP_BTS(&r->seen, (unsigned)(pkt_no % AUTH_REPLAY_WINDOW));
}
