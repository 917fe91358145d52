/* SPDX-License-Identifier: MIT */
/*
 * BLAKE2s-based primitives of the WireGuard handshake (whitepaper 5.4):
 * HASH, keyed MAC, HMAC and the HKDF-style KDF1/2/3.
 * Internal to wg/: callers outside use noise.h and cookie.h.
 */
#ifndef MG_WG_KDF_H
#define MG_WG_KDF_H

#include <stddef.h>
#include <stdint.h>

enum {
	WG_BLAKE2S_LEN = 32,
	WG_BLAKE2S_BLOCK_LEN = 64,
};

/* out = BLAKE2s-256(a || b); out may alias a or b. */
void wg_hash(uint8_t out[WG_BLAKE2S_LEN], const void *a, size_t a_len, const void *b, size_t b_len);

/* out = keyed BLAKE2s with an out_len-byte digest (MAC in the whitepaper). */
void wg_mac(uint8_t *out, size_t out_len, const uint8_t *key, size_t key_len, const void *in,
	    size_t in_len);

/* out = HMAC-BLAKE2s(key, in); out may alias key or in. */
void wg_hmac(uint8_t out[WG_BLAKE2S_LEN], const uint8_t *key, size_t key_len, const void *in,
	     size_t in_len);

/*
 * (t1, t2, t3) = KDFn(chaining_key, in). t2 and t3 may be NULL to get KDF1
 * or KDF2. Any output may alias chaining_key.
 */
void wg_kdf(uint8_t *t1, uint8_t *t2, uint8_t *t3, const uint8_t chaining_key[WG_BLAKE2S_LEN],
	    const void *in, size_t in_len);

#endif /* MG_WG_KDF_H */
