/* SPDX-License-Identifier: MIT */
/*
 * Signed node requests (docs/coord-protocol.md, "Signed node requests"):
 * an Ed25519 signature by the machine key over the method, path, time, a
 * random nonce and the body's SHA-256, so that the server can refuse a
 * forged, stale or replayed request without any bearer secret on the wire.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "coord.h"

int cp_coord_sign_string(const char *method, const char *path, const char *timestamp,
			 const char *nonce, const void *body, size_t len, char *out, size_t outlen)
{
	uint8_t hash[crypto_hash_sha256_BYTES];
	char hex[2 * sizeof(hash) + 1];
	int n;

	crypto_hash_sha256(hash, body ? body : (const void *)"", len);
	sodium_bin2hex(hex, sizeof(hex), hash, sizeof(hash));
	n = snprintf(out, outlen, "meshgate-v1\n%s\n%s\n%s\n%s\n%s", method, path, timestamp, nonce,
		     hex);
	return n < 0 || (size_t)n >= outlen ? -ENOSPC : n;
}

int cp_coord_sign(const uint8_t machine_sk[64], const char *method, const char *path,
		  int64_t timestamp, const char *nonce, const void *body, size_t len,
		  struct cp_coord_auth *out)
{
	uint8_t sig[crypto_sign_BYTES];
	char msg[1024];
	int n;

	memset(out, 0, sizeof(*out));
	if (nonce) {
		if (strlen(nonce) != CP_COORD_NONCE_LEN)
			return -EINVAL;
		memcpy(out->nonce, nonce, CP_COORD_NONCE_LEN + 1);
	} else {
		uint8_t raw[CP_COORD_NONCE_LEN / 2];

		randombytes_buf(raw, sizeof(raw));
		sodium_bin2hex(out->nonce, sizeof(out->nonce), raw, sizeof(raw));
	}
	snprintf(out->timestamp, sizeof(out->timestamp), "%" PRId64, timestamp);
	n = cp_coord_sign_string(method, path, out->timestamp, out->nonce, body, len, msg,
				 sizeof(msg));
	if (n < 0)
		return n;
	crypto_sign_detached(sig, NULL, (const uint8_t *)msg, (size_t)n, machine_sk);
	/* The public key is the second half of libsodium's secret key. */
	memcpy(out->machine, "mkey:", 5);
	sodium_bin2base64(out->machine + 5, sizeof(out->machine) - 5, machine_sk + 32, 32,
			  sodium_base64_VARIANT_ORIGINAL);
	sodium_bin2base64(out->signature, sizeof(out->signature), sig, sizeof(sig),
			  sodium_base64_VARIANT_ORIGINAL);
	return 0;
}
