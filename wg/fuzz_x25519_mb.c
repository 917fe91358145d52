// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness, differential: the 8-lane X25519 (x25519_mb.h) against
 * libsodium's crypto_scalarmult on points and scalars the fuzzer picks
 * (non-canonical u >= p, the top bit set, points of small order, the
 * twist). The input is cut into (scalar, point) pairs of 64 bytes, up to
 * 16 of them (two batches); every lane's result and status must be
 * libsodium's, and out may alias point (the contract allows it).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "x25519_mb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t scalar[16][32], point[16][32], out[16][32], want[16][32];
	int rc[16];
	size_t n = size / 64;

	if (n == 0)
		return 0;
	if (n > 16)
		n = 16;
	if (sodium_init() < 0)
		abort();
	for (size_t i = 0; i < n; i++) {
		memcpy(scalar[i], data + 64 * i, 32);
		memcpy(point[i], data + 64 * i + 32, 32);
		/* libsodium leaves the output unwritten when it refuses. */
		if (crypto_scalarmult(want[i], scalar[i], point[i]) != 0)
			memset(want[i], 0, 32);
	}
	int failed =
	    wg_x25519_mb(out, (const uint8_t(*)[32])scalar, (const uint8_t(*)[32])point, rc, n);
	int bad = 0;
	for (size_t i = 0; i < n; i++) {
		bool zero = sodium_is_zero(want[i], 32);
		if (memcmp(out[i], want[i], 32) || rc[i] != (zero ? -EINVAL : 0))
			abort();
		bad += zero;
	}
	if (failed != bad)
		abort();
	/* In place: out is point. */
	wg_x25519_mb(point, (const uint8_t(*)[32])scalar, (const uint8_t(*)[32])point, rc, n);
	for (size_t i = 0; i < n; i++)
		if (memcmp(point[i], want[i], 32))
			abort();
	return 0;
}
