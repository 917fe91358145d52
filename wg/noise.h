/* SPDX-License-Identifier: MIT */
/*
 * The WireGuard handshake, Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s
 * (whitepaper 5.4), as pure functions of bytes and a clock: no sockets, no
 * timers, no global state. Callers own all storage and all locking.
 *
 *   initiator                                   responder
 *   create_initiation  --- initiation --->      consume_initiation (e, es, s)
 *                                               (caller finds the peer by
 *                                                remote_static)
 *                                               accept_initiation (ss, {t})
 *   consume_response   <--- response  ---       create_response
 *   derive_keypair                              derive_keypair
 *
 * MAC1/MAC2 are not handled here: see cookie.h. Every function returns 0 or
 * a negative errno; indices are host order in the API, little-endian on the
 * wire.
 */
#ifndef MG_WG_NOISE_H
#define MG_WG_NOISE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wg_messages.h"

#define WG_INITIATIONS_PER_SECOND 50
#define WG_NSEC_PER_SEC		  1000000000ULL

struct wg_noise_local {
	uint8_t private_key[32];
	uint8_t public_key[32];
	bool has_identity;
};

enum wg_handshake_state {
	WG_HS_ZEROED,
	WG_HS_CREATED_INITIATION,
	WG_HS_CONSUMED_INITIATION,
	WG_HS_CREATED_RESPONSE,
	WG_HS_CONSUMED_RESPONSE,
};

struct wg_noise_handshake {
	enum wg_handshake_state state;
	uint32_t local_index, remote_index;
	uint8_t hash[32], chaining_key[32], ephemeral_private[32], remote_ephemeral[32];
};

struct wg_noise_remote {
	uint8_t public_key[32];
	uint8_t preshared_key[32];
	uint8_t precomputed_ss[32];
	uint8_t latest_timestamp[12];
	uint64_t last_initiation_ns; /* monotonic, flood guard; 0 = never */
	struct wg_noise_handshake hs;
};

struct wg_noise_keypair {
	uint8_t send_key[32], recv_key[32];
	uint32_t local_index, remote_index;
	bool initiator;
};

/*
 * An initiation consumed up to its static key, before the peer is known. The
 * timestamp is still encrypted, under a key that needs DH(s, S): that is the
 * peer's precomputed_ss, so accept_initiation decrypts it. Nothing here is
 * authentic until then.
 */
struct wg_noise_initiation {
	uint8_t remote_static[32];
	uint32_t remote_index;
	uint8_t hash[32], chaining_key[32], remote_ephemeral[32];
	uint8_t encrypted_timestamp[WG_TIMESTAMP_LEN + WG_AUTHTAG_LEN];
};

/*
 * Clamps private_key and derives the public key. A NULL or all-zero private
 * key leaves l zeroed with has_identity false, like `wg set private-key`.
 */
void wg_noise_local_init(struct wg_noise_local *l, const uint8_t private_key[32]);
void wg_noise_local_clear(struct wg_noise_local *l);

/*
 * Zeroes r, sets the peer's public key and preshared key (NULL = none) and
 * precomputes DH(s, S). -EINVAL if l has no identity or the DH is all zero
 * (a low-order public key).
 */
int wg_noise_remote_init(struct wg_noise_remote *r, const struct wg_noise_local *l,
			 const uint8_t public_key[32], const uint8_t psk[32]);
/*
 * Recomputes only DH(s, S), keeping the timestamp and flood state, for when
 * the local private key changes. -EINVAL as for wg_noise_remote_init, in
 * which case precomputed_ss is zeroed and handshakes with r fail.
 */
int wg_noise_remote_precompute(struct wg_noise_remote *r, const struct wg_noise_local *l);
void wg_noise_remote_clear(struct wg_noise_remote *r);
void wg_noise_handshake_clear(struct wg_noise_handshake *hs);

/*
 * Starts a handshake with r, abandoning any in progress: fills all of msg but
 * the MACs (wg_cookie_add_macs), state CREATED_INITIATION.
 * realtime_ns is CLOCK_REALTIME, for the TAI64N timestamp.
 */
int wg_noise_create_initiation(const struct wg_noise_local *l, struct wg_noise_remote *r,
			       uint32_t local_index, uint64_t realtime_ns,
			       struct wg_message_initiation *msg);

/*
 * First half of consuming an initiation addressed to l: e, es, s. Decrypts
 * the initiator's static key, so that the caller can find the peer; the
 * static key is not yet proven (anyone can encrypt any key under es), so look
 * the peer up and nothing more before accept_initiation. The MACs must have
 * been checked already (wg_cookie_validate). -EBADMSG on any failure (bad
 * header, bad DH, bad AEAD), -EINVAL if l has no identity; *out is zeroed on
 * failure. One X25519 operation (es).
 */
int wg_noise_consume_initiation(const struct wg_noise_local *l,
				const struct wg_message_initiation *msg,
				struct wg_noise_initiation *out);

/*
 * Second half of consuming an initiation, once the caller has found r with
 * r->public_key == in->remote_static: ss from r->precomputed_ss (no X25519),
 * then the timestamp is decrypted, which authenticates the initiation.
 * -EINVAL if r->public_key is not in->remote_static or r has no usable
 * precomputed_ss, -EBADMSG if the timestamp does not decrypt, then -ESTALE
 * unless the timestamp is strictly greater than the latest accepted one,
 * -EAGAIN if the previous initiation was accepted less than
 * 1/WG_INITIATIONS_PER_SECOND s ago (mono_ns is a monotonic clock). r is
 * untouched on failure. On success r->hs is replaced (an initiation of ours
 * in flight is abandoned: read r->hs.local_index first if the index must be
 * released) and is in state CONSUMED_INITIATION. *in is zeroed in every case.
 */
int wg_noise_accept_initiation(struct wg_noise_remote *r, struct wg_noise_initiation *in,
			       uint64_t mono_ns);

/*
 * Needs CONSUMED_INITIATION (-EINVAL otherwise). Fills all of msg but the
 * MACs; state CREATED_RESPONSE. Three X25519 operations: e (fixed base), ee
 * and se (variable base).
 */
int wg_noise_create_response(const struct wg_noise_local *l, struct wg_noise_remote *r,
			     uint32_t local_index, struct wg_message_response *msg);

/*
 * Batched forms of consume_initiation and create_response, for a responder
 * that has several messages at hand (a flood): the X25519 operations of all
 * n run together, 8 lanes at a time (x25519_mb.h), which costs less per
 * operation than one at a time once a batch is nearly full. rc[i] and
 * out[i] / msg[i] and r[i] are exactly what the single function would give
 * for element i (the r[i] must be distinct). Below WG_NOISE_MB_MIN_LANES
 * X25519 operations, or on a CPU without AVX-512 IFMA, they run the single
 * functions' code. Any n; WG_NOISE_BATCH at a time.
 */
enum {
	WG_NOISE_BATCH = 32,
	/*
	 * From this many X25519s on, one 8-lane batch is cheaper than single
	 * calls (meshgate-bench-handshake: a batch ~82,000 cycles, one
	 * libsodium or OpenSSL X25519 ~63,000, on AMD Zen 4).
	 */
	WG_NOISE_MB_MIN_LANES = 2,
};
void wg_noise_consume_initiations(const struct wg_noise_local *l,
				  const struct wg_message_initiation *const *msg,
				  struct wg_noise_initiation *out, int *rc, size_t n);
void wg_noise_create_responses(const struct wg_noise_local *l, struct wg_noise_remote *const *r,
			       const uint32_t *local_index, struct wg_message_response *msg,
			       int *rc, size_t n);

/*
 * -ENOENT unless r->hs is CREATED_INITIATION with local_index equal to
 * msg->receiver_index (the response does not belong to a handshake in
 * flight); -EBADMSG if it does not authenticate. r is untouched on failure.
 * On success state CONSUMED_RESPONSE. The MACs must have been checked already.
 */
int wg_noise_consume_response(const struct wg_noise_local *l, struct wg_noise_remote *r,
			      const struct wg_message_response *msg);

/*
 * Splits the transport keys off a finished handshake: after create_response
 * (responder, kp->initiator false) or consume_response (initiator, true);
 * -EINVAL in any other state. Zeroes r->hs.
 */
int wg_noise_derive_keypair(struct wg_noise_remote *r, struct wg_noise_keypair *kp);

/*
 * TAI64N label of a CLOCK_REALTIME instant. The nanoseconds are rounded down
 * to 2^24 ns (the largest power of two under 1 s / WG_INITIATIONS_PER_SECOND),
 * as Linux and wireguard-go do, so that the timestamp does not leak a precise
 * clock.
 */
void wg_noise_tai64n(uint64_t realtime_ns, uint8_t out[12]);

#endif /* MG_WG_NOISE_H */
