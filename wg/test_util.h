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
