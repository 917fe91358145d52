/* SPDX-License-Identifier: MIT */
/*
 * X25519 (RFC 7748) for the handshake. Every operation here clamps its
 * scalar and ignores the top bit of a point, as RFC 7748 says, and gives the
 * same bytes whichever library computes it (test_x25519.c checks that).
 *
 * Each operation runs on whichever library is faster on this kind of machine
 * (measured by meshgate-bench-handshake, which prints both):
 *
 *   wg_x25519           libsodium. OpenSSL's ladder is faster, but a
 *                       one-shot call must import the scalar as a key, and
 *                       OpenSSL then derives its public key: twice the work.
 *   wg_x25519_base      OpenSSL: EVP_PKEY_new_raw_private_key derives the
 *                       public key.
 *   wg_x25519_key_*     OpenSSL: one key object for a private key used in
 *                       several DHs (the responder's ephemeral: e, ee, se),
 *                       which pays the import once and gets the public key
 *                       from it.
 *
 * Randomness comes from libsodium's randombytes_buf, so that a process that
 * replaces its implementation (the fuzz fixture) controls every key.
 * Functions return 0 or a negative errno and are safe to call from several
 * threads; one wg_x25519_key must not be used by two at once.
 */
#ifndef MG_WG_X25519_H
#define MG_WG_X25519_H

#include <stdint.h>

enum {
	WG_X25519_LEN = 32,
};

/* As OpenSSL declares them (openssl/types.h), without its headers. */
struct evp_pkey_st;
struct evp_pkey_ctx_st;

/*
 * out = X25519(scalar, point); -EINVAL, out zeroed, if that is all zero
 * (point is of low order). out may alias scalar or point.
 */
int wg_x25519(uint8_t out[WG_X25519_LEN], const uint8_t scalar[WG_X25519_LEN],
	      const uint8_t point[WG_X25519_LEN]);

/* out = X25519(scalar, 9), the public key of scalar; -ENOMEM. */
int wg_x25519_base(uint8_t out[WG_X25519_LEN], const uint8_t scalar[WG_X25519_LEN]);

/* A fresh private key, clamped, and its public key; -ENOMEM. */
int wg_x25519_keygen(uint8_t priv[WG_X25519_LEN], uint8_t pub[WG_X25519_LEN]);

/* A private key ready for several DHs. Zeroed when not holding a key. */
struct wg_x25519_key {
	struct evp_pkey_st *pkey;
	struct evp_pkey_ctx_st *derive; /* derivation from pkey, peer set per DH */
	struct evp_pkey_ctx_st *import; /* imports peers' public keys */
};

/*
 * Makes k hold scalar (the caller may wipe its copy at once) and writes its
 * public key, X25519(scalar, 9), to pub. -ENOMEM, k zeroed, on failure.
 */
int wg_x25519_key_init(struct wg_x25519_key *k, const uint8_t scalar[WG_X25519_LEN],
		       uint8_t pub[WG_X25519_LEN]);

/* out = X25519(k's private key, point); -EINVAL, out zeroed, as wg_x25519. */
int wg_x25519_key_dh(struct wg_x25519_key *k, uint8_t out[WG_X25519_LEN],
		     const uint8_t point[WG_X25519_LEN]);

/* Frees k (OpenSSL wipes the private key) and zeroes it; k may be zeroed. */
void wg_x25519_key_clear(struct wg_x25519_key *k);

#endif /* MG_WG_X25519_H */
