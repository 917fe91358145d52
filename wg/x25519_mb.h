/* SPDX-License-Identifier: MIT */
/*
 * Batched X25519 (RFC 7748): up to 8 independent scalar multiplications at
 * once, one per 64-bit lane of AVX-512 registers, with the 52-bit multiply-
 * accumulate instructions of AVX-512 IFMA (vpmadd52luq, vpmadd52huq). A
 * responder's handshake needs several X25519s, and a burst of handshakes
 * needs many: computing 8 together costs far less per operation than one
 * at a time (meshgate-bench-x25519 measures both).
 *
 * On a CPU without AVX-512 IFMA, or with MG_X25519_SCALAR=1 in the
 * environment (read once, at the first call), every operation is a loop
 * over libsodium's crypto_scalarmult instead. Both give the same bytes
 * (test_x25519_mb.c checks that against libsodium).
 *
 * Each function clamps its scalars as RFC 7748 says and ignores the top bit
 * of each point; points need not be canonical (u >= p is reduced). Runs in
 * time independent of the scalars and points, except that a lane whose
 * result is all zero (a point of small order) is reported. Wipes its copies
 * of secrets. Safe to call from several threads at once.
 */
#ifndef MG_WG_X25519_MB_H
#define MG_WG_X25519_MB_H

#include <stddef.h>
#include <stdint.h>

enum {
	WG_X25519_MB_LANES = 8, /* operations computed together */
};

/*
 * out[i] = X25519(scalar[i], point[i]) for i < n, any n (batches of 8).
 * rc[i] = 0, or -EINVAL with out[i] zeroed when that is all zero (point[i]
 * is of low order). Returns how many lanes failed. out may be the same
 * array as scalar or as point (out[i] overwrites the inputs of lane i only
 * after reading them); other overlaps are not allowed.
 */
int wg_x25519_mb(uint8_t (*out)[32], const uint8_t (*scalar)[32], const uint8_t (*point)[32],
		 int *rc, size_t n);

/* out[i] = X25519(scalar[i], 9), the public keys of scalar[i], as above. */
int wg_x25519_mb_base(uint8_t (*out)[32], const uint8_t (*scalar)[32], int *rc, size_t n);

/* "ifma" or "scalar": the implementation that runs on this CPU. */
const char *wg_x25519_mb_impl(void);

#endif /* MG_WG_X25519_MB_H */
