/* SPDX-License-Identifier: MIT */
/*
 * MAC1/MAC2 and cookie replies (whitepaper 5.4.4 and 5.4.7), the handshake's
 * defence against CPU exhaustion. Pure: the clock is an argument, and the
 * caller owns the state and its locking.
 *
 * The checker sits on the receiving side (one per local identity), the maker
 * on the sending side (one per peer):
 *
 *   maker.add_macs -> msg -> checker.validate
 *                              under load, MAC1 valid but not MAC2:
 *   maker.consume_reply <- cookie reply <- checker.create_reply
 *   maker.add_macs (now with MAC2) -> msg -> checker.validate: MAC1_AND_MAC2
 */
#ifndef MG_WG_COOKIE_H
#define MG_WG_COOKIE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wg_messages.h"

struct wg_cookie_checker {
	uint8_t secret[32];
	uint64_t secret_birth_ns;
	bool secret_valid;
	uint8_t mac1_key[32];
	uint8_t cookie_encryption_key[32];
};

enum wg_cookie_mac_state {
	WG_COOKIE_MAC_INVALID,
	WG_COOKIE_MAC1_VALID,
	WG_COOKIE_MAC1_AND_MAC2_VALID,
};

void wg_cookie_checker_init(struct wg_cookie_checker *c, const uint8_t local_public[32]);

/*
 * msg is a whole initiation or response (it ends with struct
 * wg_message_macs); src is the sender's address bytes (IP then 2-byte port,
 * network order). MAC2 is checked against the cookie of src for the current
 * secret, which is rotated first if older than WG_COOKIE_SECRET_MAX_AGE.
 */
enum wg_cookie_mac_state wg_cookie_validate(struct wg_cookie_checker *c, const void *msg,
					    size_t len, const uint8_t *src, size_t src_len,
					    uint64_t mono_ns);

/*
 * Builds the cookie reply to msg (validated, MAC1 at least) from src.
 * receiver_index is msg's sender index, host order. Rotates the secret every
 * WG_COOKIE_SECRET_MAX_AGE s. -EINVAL if len is too short to hold the MACs.
 */
int wg_cookie_create_reply(struct wg_cookie_checker *c, const void *msg, size_t len,
			   uint32_t receiver_index, const uint8_t *src, size_t src_len,
			   uint64_t mono_ns, struct wg_message_cookie *out);

struct wg_cookie_maker {
	uint8_t mac1_key[32];
	uint8_t cookie_decryption_key[32];
	uint8_t cookie[16];
	uint64_t cookie_birth_ns;
	bool cookie_valid;
	bool have_sent_mac1;
	uint8_t last_mac1_sent[16];
};

void wg_cookie_maker_init(struct wg_cookie_maker *m, const uint8_t remote_public[32]);

/*
 * Fills the MACs at the end of msg (len bytes, an initiation or a response):
 * MAC1 always, MAC2 if a cookie younger than WG_COOKIE_SECRET_MAX_AGE -
 * WG_COOKIE_SECRET_LATENCY s is held, zeros otherwise. Remembers MAC1 for
 * wg_cookie_consume_reply. Does nothing if len is too short for the MACs.
 */
void wg_cookie_add_macs(struct wg_cookie_maker *m, void *msg, size_t len, uint64_t mono_ns);

/*
 * Takes the cookie out of a reply to the last message we sent. -ENOENT if no
 * MAC1 was sent since the last cookie, -EBADMSG if the reply does not decrypt
 * with last_mac1_sent as additional data (or its header is wrong).
 */
int wg_cookie_consume_reply(struct wg_cookie_maker *m, const struct wg_message_cookie *msg,
			    uint64_t mono_ns);

#endif /* MG_WG_COOKIE_H */
