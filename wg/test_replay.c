// SPDX-License-Identifier: MIT
/*
 * Replay window: a numbered table of (counter, expected) in the spirit of
 * Linux's counter selftest, sequential and reverse sweeps, then a randomized
 * differential test against a deliberately naive reference (a set of every
 * accepted counter plus the window rule).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replay.h"
#include "test_util.h"

#define W     WG_REPLAY_USABLE
#define LIMIT WG_REJECT_AFTER_MESSAGES

static struct wg_replay r;
static unsigned int step;

#define T(counter, expected)                                                                       \
	do {                                                                                       \
		uint64_t c_ = (counter);                                                           \
		bool got_ = wg_replay_check(&r, c_);                                               \
		step++;                                                                            \
		CHECK(got_ == (expected), "%2u: counter %" PRIu64 " -> %s", step, c_,              \
		      (expected) ? "accept" : "reject");                                           \
	} while (0)

static void table(void)
{
	wg_replay_init(&r);
	step = 0;
	/*  1 */ T(0, true);
	/*  2 */ T(0, false);
	/*  3 */ T(1, true);
	/*  4 */ T(3, true);
	/*  5 */ T(2, true);
	/*  6 */ T(2, false);
	/*  7 */ T(3, false);
	/*  8 */ T(W, true);
	/*  9 */ T(0, false);
	/* 10 */ T(4, true);
	/* 11 */ T(W + 1, true);
	/* 12 */ T(5, true);
	/* 13 */ T(3 * W, true);
	/* 14 */ T(2 * W, true);
	/* 15 */ T(2 * W - 1, false);
	/* 16 */ T(2 * W, false);
	/* 17 */ T(3 * W - 1, true);
	/* 18 */ T(3 * W + 1, true);
	/* 19 */ T(2 * W + 1, true);
	/* 20 */ T(2 * W + 2, true);
	/* 21 */ T(2 * W, false);
	/* 22 */ T(1ULL << 40, true);
	/* 23 */ T((1ULL << 40) - W, true);
	/* 24 */ T((1ULL << 40) - W - 1, false);
	/* 25 */ T(3 * W + 1, false);
	/* 26 */ T((1ULL << 40) + 1, true);
	/* 27 */ T((1ULL << 40) + 1, false);
	/* 28 */ T(LIMIT, false);
	/* 29 */ T(LIMIT + 1, false);
	/* 30 */ T(UINT64_MAX, false);
	/* 31 */ T(LIMIT - 1, true);
	/* 32 */ T(LIMIT - 1, false);
	/* 33 */ T(LIMIT - 2, true);
	/* 34 */ T(LIMIT - 1 - W, true);
	/* 35 */ T(LIMIT - 2 - W, false);
	/* 36 */ T(LIMIT, false);
	/* 37 */ T((1ULL << 40) + 2, false);
}

static void sweeps(void)
{
	uint64_t i, top = 3 * WG_REPLAY_WINDOW + 17;
	unsigned int bad = 0;

	wg_replay_init(&r);
	for (i = 0; i <= top; i++)
		bad += !wg_replay_check(&r, i);
	CHECK(!bad, "in-order 0..%" PRIu64 " all accepted", top);
	for (i = top - W; i <= top; i++)
		bad += wg_replay_check(&r, i);
	CHECK(!bad, "in-order replay of the last %d all rejected", W + 1);

	wg_replay_init(&r);
	top = 5 * WG_REPLAY_WINDOW + 33;
	for (i = 0; i <= W; i++)
		bad += !wg_replay_check(&r, top - i);
	CHECK(!bad, "reverse %" PRIu64 "..%" PRIu64 " all accepted", top, top - W);
	CHECK(!wg_replay_check(&r, top - W - 1), "reverse: one below the window rejected");
	for (i = 0; i <= W; i++)
		bad += wg_replay_check(&r, top - i);
	CHECK(!bad, "reverse replay all rejected");

	/* Jumps of exactly the ring size must not resurrect stale bits. */
	wg_replay_init(&r);
	for (i = 0; i < 8; i++)
		bad += !wg_replay_check(&r, i * WG_REPLAY_WINDOW);
	CHECK(!bad, "jumps of exactly %d accepted", WG_REPLAY_WINDOW);
	CHECK(wg_replay_check(&r, 7 * WG_REPLAY_WINDOW - 1), "gap under the last jump accepted");
}

/* The reference: every accepted counter in an open-addressing set. */
struct naive {
	uint64_t *slots; /* counter + 1, 0 = empty */
	size_t mask;
	bool any;
	uint64_t max;
};

static bool naive_seen_or_add(struct naive *n, uint64_t c, bool add)
{
	size_t i = (size_t)((c + 1) * 0x9e3779b97f4a7c15ULL >> 20) & n->mask;

	for (; n->slots[i]; i = (i + 1) & n->mask)
		if (n->slots[i] == c + 1)
			return true;
	if (add)
		n->slots[i] = c + 1;
	return false;
}

static bool naive_check(struct naive *n, uint64_t c)
{
	if (c >= LIMIT)
		return false;
	if (n->any && c + W < n->max)
		return false;
	if (naive_seen_or_add(n, c, false))
		return false;
	naive_seen_or_add(n, c, true);
	if (!n->any || c > n->max)
		n->max = c;
	n->any = true;
	return true;
}

static uint64_t rng_state;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Mostly near the top of the window, sometimes jumps, sometimes near the limit. */
static uint64_t next_counter(const struct naive *n)
{
	uint64_t base = n->any ? n->max : 0, k = rnd() % 1000, d;

	if (k < 5)
		return LIMIT - 1 - rnd() % (3 * WG_REPLAY_WINDOW);
	if (k < 15)
		return base + rnd() % (4 * WG_REPLAY_WINDOW);
	if (k < 500) {
		d = rnd() % (W + 200);
		return d > base ? rnd() % 64 : base - d;
	}
	return base + rnd() % 64;
}

static void differential(void)
{
	enum { OPS = 60000, SEEDS = 6 };
	struct naive n = {.mask = (1 << 17) - 1};

	n.slots = calloc(n.mask + 1, sizeof(n.slots[0]));
	if (!n.slots) {
		CHECK(0, "allocating the reference");
		return;
	}
	for (uint64_t seed = 1; seed <= SEEDS; seed++) {
		unsigned int mismatches = 0, accepted = 0;
		uint64_t first_bad = 0;

		rng_state = 0x1234567890abcdefULL * seed;
		memset(n.slots, 0, (n.mask + 1) * sizeof(n.slots[0]));
		n.any = false;
		n.max = 0;
		wg_replay_init(&r);
		for (int i = 0; i < OPS; i++) {
			uint64_t c = next_counter(&n);
			bool want = naive_check(&n, c), got = wg_replay_check(&r, c);

			accepted += want;
			if (want != got && !mismatches++)
				first_bad = c;
		}
		CHECK(!mismatches,
		      "differential seed %" PRIu64
		      ": %d ops, %u accepted, %u mismatches (first %" PRIu64 ")",
		      seed, OPS, accepted, mismatches, first_bad);
	}
	free(n.slots);
}

int main(void)
{
	table();
	sweeps();
	differential();
	return test_finish("replay");
}
