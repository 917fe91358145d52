/* SPDX-License-Identifier: MIT */
/*
 * A tiny check harness for the wg/ unit tests: every CHECK prints what it
 * checked, failures are counted, and test_finish() prints the closing
 * "N passed, N failed" line and returns the exit status.
 */
#ifndef MG_WG_TEST_UTIL_H
#define MG_WG_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>

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

#endif /* MG_WG_TEST_UTIL_H */
