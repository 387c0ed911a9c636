/* SPDX-License-Identifier: MIT */
/*
 * Datagram authentication and replay protection (docs/PROTOCOL.md section 5).
 *
 * The MAC is libsodium's keyed BLAKE2b (crypto_generichash) with a 32-byte
 * cluster key, truncated to WIRE_MAC_LEN bytes and compared in constant time.
 * The key id is a 32-bit fingerprint of the key, sent in clear so that a
 * peer with another key is told apart from line noise (and logged) without
 * revealing anything usable about the key.
 *
 * The replay window accepts each packet number once inside a sliding window
 * of AUTH_REPLAY_WINDOW numbers below the highest seen, and nothing older
 * (RFC 6479's bitmap, kept as a ck_bitmap ring indexed by pkt_no).
 */
#ifndef REPL_AUTH_H
#define REPL_AUTH_H

#include <ck_bitmap.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_KEY_LEN 32u
#define AUTH_REPLAY_WINDOW 1024u

struct auth_key {
	uint8_t key[AUTH_KEY_LEN];
	uint32_t id; /* 0 means "no key": an all-zero key, allowed on loopback only */
};

/* Initialises libsodium once; 0 or -ENOSYS. */
int auth_init(void);
/* key NULL: the no-key mode (id 0). */
void auth_key_set(struct auth_key *k, const uint8_t key[AUTH_KEY_LEN]);
void auth_key_wipe(struct auth_key *k);
/* Appends the MAC of buf[0, len) at buf + len (the caller reserved room). */
void auth_sign(const struct auth_key *k, uint8_t *buf, size_t len);
/* 1 if buf[len, len + WIRE_MAC_LEN) is the MAC of buf[0, len). */
int auth_verify(const struct auth_key *k, const uint8_t *buf, size_t len);

struct auth_replay {
	uint64_t highest; /* 0: nothing accepted yet */
	CK_BITMAP_INSTANCE(AUTH_REPLAY_WINDOW) seen;
};

void auth_replay_reset(struct auth_replay *r);
/* 1 and records pkt_no if it is new; 0 if replayed, too old or 0. */
int auth_replay_accept(struct auth_replay *r, uint64_t pkt_no);

#endif
