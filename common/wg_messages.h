/* SPDX-License-Identifier: MIT */
/*
 * WireGuard wire formats and protocol constants, shared by the pure
 * protocol code (wg/), the control process and the dataplane.
 * All multi-byte integers on the wire are little-endian.
 */
#ifndef MG_WG_MESSAGES_H
#define MG_WG_MESSAGES_H

#include <stdint.h>

enum {
	WG_KEY_LEN = 32,
	WG_HASH_LEN = 32,
	WG_COOKIE_LEN = 16,
	WG_COOKIE_NONCE_LEN = 24,
	WG_AUTHTAG_LEN = 16,
	WG_TIMESTAMP_LEN = 12,
	WG_MAC_LEN = 16,
	WG_PADDING_MULTIPLE = 16,
};

enum wg_message_type {
	WG_MSG_INVALID = 0,
	WG_MSG_HANDSHAKE_INITIATION = 1,
	WG_MSG_HANDSHAKE_RESPONSE = 2,
	WG_MSG_HANDSHAKE_COOKIE = 3,
	WG_MSG_DATA = 4,
};

/* Protocol timers and limits (whitepaper section 6). Times in seconds. */
#define WG_REKEY_AFTER_MESSAGES (1ULL << 60)
#define WG_REJECT_AFTER_MESSAGES (UINT64_MAX - (1ULL << 13))
#define WG_REKEY_AFTER_TIME 120
#define WG_REJECT_AFTER_TIME 180
#define WG_REKEY_ATTEMPT_TIME 90
#define WG_REKEY_TIMEOUT 5
#define WG_REKEY_TIMEOUT_JITTER_MAX_MS 333
#define WG_KEEPALIVE_TIMEOUT 10
#define WG_COOKIE_SECRET_MAX_AGE 120
#define WG_COOKIE_SECRET_LATENCY 5
#define WG_MAX_TIMER_HANDSHAKES (WG_REKEY_ATTEMPT_TIME / WG_REKEY_TIMEOUT)
#define WG_MAX_QUEUED_PACKETS 1024

struct wg_message_header {
	uint8_t type;
	uint8_t reserved[3];
} __attribute__((packed));

struct wg_message_macs {
	uint8_t mac1[WG_MAC_LEN];
	uint8_t mac2[WG_MAC_LEN];
} __attribute__((packed));

struct wg_message_initiation {
	struct wg_message_header header;
	uint32_t sender_index;
	uint8_t unencrypted_ephemeral[WG_KEY_LEN];
	uint8_t encrypted_static[WG_KEY_LEN + WG_AUTHTAG_LEN];
	uint8_t encrypted_timestamp[WG_TIMESTAMP_LEN + WG_AUTHTAG_LEN];
	struct wg_message_macs macs;
} __attribute__((packed));

struct wg_message_response {
	struct wg_message_header header;
	uint32_t sender_index;
	uint32_t receiver_index;
	uint8_t unencrypted_ephemeral[WG_KEY_LEN];
	uint8_t encrypted_nothing[WG_AUTHTAG_LEN];
	struct wg_message_macs macs;
} __attribute__((packed));

struct wg_message_cookie {
	struct wg_message_header header;
	uint32_t receiver_index;
	uint8_t nonce[WG_COOKIE_NONCE_LEN];
	uint8_t encrypted_cookie[WG_COOKIE_LEN + WG_AUTHTAG_LEN];
} __attribute__((packed));

struct wg_message_data {
	struct wg_message_header header;
	uint32_t key_idx;
	uint64_t counter;
	uint8_t encrypted_data[];
} __attribute__((packed));

_Static_assert(sizeof(struct wg_message_initiation) == 148, "initiation size");
_Static_assert(sizeof(struct wg_message_response) == 92, "response size");
_Static_assert(sizeof(struct wg_message_cookie) == 64, "cookie size");
_Static_assert(sizeof(struct wg_message_data) == 16, "data header size");

#define WG_DATA_OVERHEAD (sizeof(struct wg_message_data) + WG_AUTHTAG_LEN)
#define WG_MIN_DATA_LEN WG_DATA_OVERHEAD /* a keepalive */

#endif /* MG_WG_MESSAGES_H */
