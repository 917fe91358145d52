// SPDX-License-Identifier: MIT
/*
 * HASH, MAC, HMAC and KDF of the WireGuard handshake, on top of libb2.
 * Every intermediate value here derives from secrets, so all of it is wiped.
 */
#include <string.h>

#include <blake2.h>
#include <sodium.h>

#include "kdf.h"

void wg_hash(uint8_t out[WG_BLAKE2S_LEN], const void *a, size_t a_len, const void *b, size_t b_len)
{
	blake2s_state s;

	blake2s_init(&s, WG_BLAKE2S_LEN);
	blake2s_update(&s, a, a_len);
	blake2s_update(&s, b, b_len);
	blake2s_final(&s, out, WG_BLAKE2S_LEN);
	sodium_memzero(&s, sizeof(s));
}

void wg_mac(uint8_t *out, size_t out_len, const uint8_t *key, size_t key_len, const void *in,
	    size_t in_len)
{
	blake2s(out, in, key, out_len, in_len, key_len);
}

void wg_hmac(uint8_t out[WG_BLAKE2S_LEN], const uint8_t *key, size_t key_len, const void *in,
	     size_t in_len)
{
	uint8_t pad[WG_BLAKE2S_BLOCK_LEN] = {0};
	uint8_t inner[WG_BLAKE2S_LEN];
	blake2s_state s;
	size_t i;

	if (key_len > WG_BLAKE2S_BLOCK_LEN)
		wg_hash(pad, key, key_len, NULL, 0);
	else
		memcpy(pad, key, key_len);

	for (i = 0; i < sizeof(pad); i++)
		pad[i] ^= 0x36;
	blake2s_init(&s, WG_BLAKE2S_LEN);
	blake2s_update(&s, pad, sizeof(pad));
	blake2s_update(&s, in, in_len);
	blake2s_final(&s, inner, sizeof(inner));

	for (i = 0; i < sizeof(pad); i++)
		pad[i] ^= 0x36 ^ 0x5c;
	blake2s_init(&s, WG_BLAKE2S_LEN);
	blake2s_update(&s, pad, sizeof(pad));
	blake2s_update(&s, inner, sizeof(inner));
	blake2s_final(&s, out, WG_BLAKE2S_LEN);

	sodium_memzero(&s, sizeof(s));
	sodium_memzero(pad, sizeof(pad));
	sodium_memzero(inner, sizeof(inner));
}

void wg_kdf(uint8_t *t1, uint8_t *t2, uint8_t *t3, const uint8_t chaining_key[WG_BLAKE2S_LEN],
	    const void *in, size_t in_len)
{
	uint8_t prk[WG_BLAKE2S_LEN];
	/* tau_i = HMAC(prk, tau_{i-1} || i): tau in [0, 32), the counter at 32. */
	uint8_t tau[WG_BLAKE2S_LEN + 1];

	/* Read the chaining key before any output, which may alias it, is written. */
	wg_hmac(prk, chaining_key, WG_BLAKE2S_LEN, in, in_len);

	tau[0] = 1;
	wg_hmac(tau, prk, sizeof(prk), tau, 1);
	memcpy(t1, tau, WG_BLAKE2S_LEN);
	if (!t2)
		goto out;

	tau[WG_BLAKE2S_LEN] = 2;
	wg_hmac(tau, prk, sizeof(prk), tau, sizeof(tau));
	memcpy(t2, tau, WG_BLAKE2S_LEN);
	if (!t3)
		goto out;

	tau[WG_BLAKE2S_LEN] = 3;
	wg_hmac(tau, prk, sizeof(prk), tau, sizeof(tau));
	memcpy(t3, tau, WG_BLAKE2S_LEN);
out:
	sodium_memzero(prk, sizeof(prk));
	sodium_memzero(tau, sizeof(tau));
}
