/* SPDX-License-Identifier: MIT */
/*
 * A tiny check harness for the wg/ unit tests: every CHECK prints what it
 * checked, failures are counted, and test_finish() prints the closing
 * "N passed, N failed" line and returns the exit status.
 */
#ifndef MG_WG_TEST_UTIL_H
#define MG_WG_TEST_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

static unsigned int test_passed, test_failed;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (cond) {                                                                        \
			test_passed++;                                                             \
			printf("ok   ");                                                           \
		} else {                                                                           \
			test_failed++;                                                             \
			printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                     \
		}                                                                                  \
		printf(__VA_ARGS__);                                                               \
		putchar('\n');                                                                     \
	} while (0)

static inline int test_finish(const char *name)
{
	printf("%s: %u passed, %u failed\n", name, test_passed, test_failed);
	return test_failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* A copy of p[0..n) in a heap block of exactly n bytes (1 when n is 0), so
 * that ASan catches a parser reading past the length it was given. */
static inline void *test_exact_copy(const void *p, size_t n)
{
	void *q = malloc(n ? n : 1);

	if (!q)
		abort();
	if (n)
		memcpy(q, p, n);
	else
		*(uint8_t *)q = 0; /* never read: the parsers get n = 0 */
	return q;
}

/* An X25519 key pair whose private key is 32 fill bytes. */
static inline void test_keypair(uint8_t priv[32], uint8_t pub[32], uint8_t fill)
{
	memset(priv, fill, 32);
	if (crypto_scalarmult_base(pub, priv))
		abort();
}

/* 32-byte values (keys, points, scalars) as hex in test tables. */
typedef uint8_t b32[32];

/* Bad hex gives all 0xff, which no table entry is. */
static inline void from_hex(b32 out, const char *hex)
{
	if (sodium_hex2bin(out, 32, hex, 64, NULL, NULL, NULL) != 0)
		memset(out, 0xff, 32);
}

static inline void print_hex(const char *name, const b32 v)
{
	char hex[65];

	printf("     %s = %s\n", name, sodium_bin2hex(hex, sizeof(hex), v, 32));
}

/* RFC 7748 section 5.2: {scalar, u, X25519(scalar, u)}; the second u has
 * its top bit set, which must be ignored. Then the iterated test, k = u = 9
 * at first: k after 1 and after 1,000 rounds. */
static const char *const x25519_rfc7748_vectors[2][3] = {
    {"a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
     "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
     "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"},
    {"4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
     "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
     "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"},
};
static const char *const x25519_rfc7748_iterated[2] = {
    "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079",
    "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51",
};

/* Every X25519 point of order 1, 2, 4 or 8, with their non-canonical
 * encodings (u = p - 1, p, p + 1). */
#define X25519_LOW_ORDER_POINTS 7
static const char *const x25519_low_order_points[X25519_LOW_ORDER_POINTS] = {
    "0000000000000000000000000000000000000000000000000000000000000000", /* 0 */
    "0100000000000000000000000000000000000000000000000000000000000000", /* 1 */
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800", /* order 8 */
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157", /* order 8 */
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", /* p - 1 */
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", /* p */
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", /* p + 1 */
};

#endif /* MG_WG_TEST_UTIL_H */
