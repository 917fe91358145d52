// SPDX-License-Identifier: MIT
/*
 * Handshake rate limiting per source with an injected clock: burst, refill,
 * independence of sources, IPv6 /64 keying, full table and collection.
 */
#include <errno.h>
#include <string.h>

#include "ratelimiter.h"
#include "test_util.h"

#define MS  1000000ULL
#define SEC 1000000000ULL
#define T0  (100 * SEC)

static const uint8_t v4_a[4] = {192, 0, 2, 1};
static const uint8_t v4_b[4] = {192, 0, 2, 2};
static const uint8_t v6_a[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, [15] = 1};
static const uint8_t v6_a2[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, [15] = 2};
static const uint8_t v6_b[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 2, [15] = 1};
static const uint8_t v6_like_v4_a[16] = {192, 0, 2, 1};

/* How many of n packets sent at once are allowed. */
static int burst(struct wg_ratelimiter *rl, const uint8_t *ip, size_t len, uint64_t now, int n)
{
	int allowed = 0;

	while (n--)
		allowed += wg_ratelimiter_allow(rl, ip, len, now);
	return allowed;
}

static void basics(void)
{
	struct wg_ratelimiter *rl;
	int allowed;

	printf("-- burst and refill\n");
	errno = 0;
	CHECK(!wg_ratelimiter_create(0) && errno == EINVAL, "create(0): NULL, EINVAL");
	rl = wg_ratelimiter_create(64);
	CHECK(rl, "create(64)");
	if (!rl)
		return;

	CHECK(burst(rl, v4_a, 4, T0, 5) == 5, "a burst of 5 allowed");
	CHECK(!wg_ratelimiter_allow(rl, v4_a, 4, T0), "the 6th refused");
	CHECK(!wg_ratelimiter_allow(rl, v4_a, 4, T0 + 50 * MS - 1), "refused 50 ms - 1 ns later");
	CHECK(wg_ratelimiter_allow(rl, v4_a, 4, T0 + 50 * MS), "one token back after 50 ms");
	CHECK(!wg_ratelimiter_allow(rl, v4_a, 4, T0 + 50 * MS), "and only one");
	CHECK(burst(rl, v4_a, 4, T0 + 10 * SEC, 10) == 5, "after a long pause the bucket holds 5");

	allowed = 0;
	for (int i = 0; i < 200; i++)
		allowed += wg_ratelimiter_allow(rl, v4_a, 4, T0 + 20 * SEC + i * 50 * MS);
	CHECK(allowed == 200, "steady 20/s for 10 s: all %d allowed", allowed);
	allowed = 0;
	for (int i = 0; i < 400; i++)
		allowed += wg_ratelimiter_allow(rl, v4_a, 4, T0 + 40 * SEC + i * 25 * MS);
	CHECK(allowed >= 200 && allowed <= 206, "40/s for 10 s: %d allowed (about 20/s + burst)",
	      allowed);

	printf("-- sources\n");
	CHECK(burst(rl, v4_a, 4, T0 + 60 * SEC, 6) == 5, "a exhausted");
	CHECK(burst(rl, v4_b, 4, T0 + 60 * SEC, 6) == 5, "b has its own bucket");
	CHECK(burst(rl, v6_a, 16, T0 + 60 * SEC, 6) == 5, "IPv6 a has its own bucket");
	CHECK(!wg_ratelimiter_allow(rl, v6_a2, 16, T0 + 60 * SEC), "same /64 shares a's bucket");
	CHECK(burst(rl, v6_b, 16, T0 + 60 * SEC, 6) == 5, "another /64 has its own bucket");
	CHECK(burst(rl, v6_like_v4_a, 16, T0 + 60 * SEC, 6) == 5,
	      "IPv6 with the bytes of IPv4 a is another source");
	CHECK(!wg_ratelimiter_allow(rl, v4_a, 5, T0 + 60 * SEC), "5-byte address refused");
	wg_ratelimiter_destroy(rl);
	wg_ratelimiter_destroy(NULL);
}

static void full_table(void)
{
	struct wg_ratelimiter *rl = wg_ratelimiter_create(4);
	uint8_t ip[4] = {10, 0, 0, 0};
	int allowed = 0;

	printf("-- full table\n");
	if (!rl) {
		CHECK(0, "create(4)");
		return;
	}
	for (ip[3] = 1; ip[3] <= 4; ip[3]++)
		allowed += wg_ratelimiter_allow(rl, ip, 4, T0);
	CHECK(allowed == 4, "4 sources fill a table of 4");
	CHECK(!wg_ratelimiter_allow(rl, ip, 4, T0), "a 5th source is refused while full");
	ip[3] = 1;
	CHECK(wg_ratelimiter_allow(rl, ip, 4, T0 + 100 * MS), "known sources are still served");

	ip[3] = 5;
	CHECK(!wg_ratelimiter_allow(rl, ip, 4, T0 + 900 * MS), "still full 0.9 s later");
	CHECK(wg_ratelimiter_allow(rl, ip, 4, T0 + 1100 * MS),
	      "after 1 s idle, entries are collected and the 5th gets in");
	ip[3] = 1;
	CHECK(wg_ratelimiter_allow(rl, ip, 4, T0 + 1100 * MS),
	      "source 1, active at 0.1 s, kept its entry or got a new one");
	wg_ratelimiter_destroy(rl);

	rl = wg_ratelimiter_create(1000);
	if (!rl) {
		CHECK(0, "create(1000)");
		return;
	}
	allowed = 0;
	for (int i = 0; i < 1001; i++) {
		uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, (uint8_t)(i >> 8), (uint8_t)i};

		allowed += wg_ratelimiter_allow(rl, v6, 16, T0);
	}
	CHECK(allowed == 1000, "1000 of 1001 /64s fit in a table of 1000");
	allowed = 0;
	for (int i = 0; i < 1000; i++) {
		uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, (uint8_t)(i >> 8), (uint8_t)i};

		allowed += burst(rl, v6, 16, T0, 5);
	}
	CHECK(allowed == 4000, "each of them found again with 4 tokens left");
	wg_ratelimiter_destroy(rl);
}

/* A busy source is never collected, so collection cannot reset its bucket. */
static void gc_keeps_active(void)
{
	struct wg_ratelimiter *rl = wg_ratelimiter_create(2);
	int allowed = 0;

	printf("-- collection\n");
	if (!rl) {
		CHECK(0, "create(2)");
		return;
	}
	for (int i = 0; i < 100; i++)
		allowed += burst(rl, v4_a, 4, T0 + i * 40 * MS, 2);
	/* 5 + 3.96 s * 20/s; a bucket reset by collection would allow more. */
	CHECK(allowed >= 82 && allowed <= 86,
	      "50/s for 4 s across collections: %d allowed (20/s + burst)", allowed);
	CHECK(wg_ratelimiter_allow(rl, v4_b, 4, T0 + 4 * SEC), "table has room for b");
	CHECK(!wg_ratelimiter_allow(rl, v6_a, 16, T0 + 4 * SEC), "table of 2 is full");
	wg_ratelimiter_destroy(rl);
}

int main(void)
{
	basics();
	full_table();
	gc_keeps_active();
	return test_finish("ratelimiter");
}
