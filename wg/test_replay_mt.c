/* SPDX-License-Identifier: MIT */
/*
 * The concurrent replay window: the same numbered table as the
 * single-threaded one where their rules agree, a differential run against a
 * naive "seen set", and two threads racing over the same counters, where
 * every counter must be accepted exactly once in total.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "replay_mt.h"
#include "test_util.h"

static struct wg_replay_mt r;

#define T(n, v) CHECK(wg_replay_mt_check(&r, (n)) == (v), "counter %llu -> %s", (unsigned long long)(n), (v) ? "accept" : "reject")

static void table(void)
{
	const uint64_t W = WG_REPLAY_MT_SLOTS * 64;
	wg_replay_mt_init(&r);
	/*  1 */ T(0, true);
	/*  2 */ T(1, true);
	/*  3 */ T(1, false);
	/*  4 */ T(9, true);
	/*  5 */ T(8, true);
	/*  6 */ T(7, true);
	/*  7 */ T(7, false);
	/*  8 */ T(W, true);
	/*  9 */ T(W - 1, true);
	/* 10 */ T(W, false);
	/* 11 */ T(3 * W, true);  /* big jump */
	/* 12 */ T(2 * W + 64, true); /* inside the window */
	/* 13 */ T(2, false);     /* never seen, but its slot holds a newer block: too old */
	/* 14 */ T(3 * W, false);
	/* 15 */ T(WG_REJECT_AFTER_MESSAGES, false);
	/* 16 */ T(WG_REJECT_AFTER_MESSAGES - 1, true);
	/* 17 */ T(WG_REJECT_AFTER_MESSAGES - 1, false);
	/* 18 */ T(UINT64_MAX, false);
}

/* Naive reference: a counter is accepted iff never accepted before and not
 * older than the newest accepted minus the guaranteed window. */
static void differential(void)
{
	enum { N = 200000, SPAN = 3 * WG_REPLAY_MT_SLOTS * 64 };
	const uint64_t guaranteed = (WG_REPLAY_MT_SLOTS - 1) * 64;
	uint8_t *seen = calloc(N + SPAN, 1);
	uint64_t newest = 0, bad = 0;
	unsigned seed = 7;

	wg_replay_mt_init(&r);
	for (int i = 0; i < N; i++) {
		uint64_t c = i + (uint64_t)(rand_r(&seed) % SPAN);
		c = c >= SPAN / 2 ? c - SPAN / 2 : c;
		bool got = wg_replay_mt_check(&r, c);
		if (got && seen[c])
			bad++; /* a replay accepted: never allowed */
		if (!got && !seen[c] && c + guaranteed > newest)
			bad++; /* inside the guaranteed window, never seen: must pass */
		if (got) {
			seen[c] = 1;
			newest = c > newest ? c : newest;
		}
	}
	CHECK(bad == 0, "differential against a naive seen-set: %llu mismatches",
	      (unsigned long long)bad);
	free(seen);
}

/* The burst form against the naive reference: never a counter twice, and
 * every new counter inside the guaranteed window accepted. (It may accept a
 * few more old-but-new counters than packet-by-packet order would, since a
 * burst settles a block at once: safe, as each counter still passes once.) */
static void burst_differential(void)
{
	enum { ROUNDS = 20000, SPAN = 1 << 22 };
	const uint64_t guaranteed = (WG_REPLAY_MT_SLOTS - 1) * 64;
	uint8_t *seen = calloc(SPAN, 1);
	unsigned seed = 11, bad = 0;
	uint64_t base = 0, newest = 0;

	wg_replay_mt_init(&r);
	for (int round = 0; round < ROUNDS; round++) {
		uint64_t c[32];
		bool ok[32];
		unsigned n = 1 + rand_r(&seed) % 32;
		for (unsigned i = 0; i < n; i++) {
			int x = (int)(rand_r(&seed) % 100);
			c[i] = x < 5 ? base + (uint64_t)(rand_r(&seed) % 8192) /* old, replays */
			     : x < 8 && i ? c[i - 1]                       /* duplicate */
				     : base + 8192 + (uint64_t)(rand_r(&seed) % 64);
		}
		base += 40;
		wg_replay_mt_check_burst(&r, c, ok, n);
		uint64_t burst_newest = newest;
		for (unsigned i = 0; i < n; i++)
			if (ok[i] && c[i] > burst_newest)
				burst_newest = c[i];
		for (unsigned i = 0; i < n; i++) {
			if (ok[i] && seen[c[i]])
				bad++; /* a replay accepted */
			if (!ok[i] && !seen[c[i]] && c[i] + guaranteed > burst_newest) {
				bool dup = false; /* the same counter earlier in the burst */
				for (unsigned k = 0; k < i; k++)
					dup |= c[k] == c[i];
				bad += !dup;
			}
			if (ok[i])
				seen[c[i]] = 1;
		}
		newest = burst_newest;
	}
	CHECK(bad == 0, "burst form against a naive seen-set: %u mismatches", bad);
	free(seen);
}

enum { RACE_N = 1 << 20 };
static uint64_t *order;
static unsigned long accepted[2];
static pthread_barrier_t start;
static bool race_bursts;

static void *racer(void *arg)
{
	long id = (long)arg;
	pthread_barrier_wait(&start);
	if (!race_bursts) {
		for (int i = 0; i < RACE_N; i++)
			accepted[id] += wg_replay_mt_check(&r, order[i]);
	} else {
		bool ok[32];
		for (int i = 0; i < RACE_N; i += 32)
			accepted[id] += wg_replay_mt_check_burst(&r, order + i, ok, 32);
	}
	return NULL;
}

static void race(bool bursts)
{
	pthread_t t[2];
	race_bursts = bursts;
	accepted[0] = accepted[1] = 0;
	order = malloc(sizeof(*order) * RACE_N);
	/* Mostly in order with local shuffles, as packets spread over workers. */
	for (int i = 0; i < RACE_N; i++)
		order[i] = i;
	unsigned seed = 3;
	for (int i = 0; i + 8 < RACE_N; i += 8)
		for (int k = 0; k < 8; k++) {
			int j = i + (int)(rand_r(&seed) % 8);
			uint64_t x = order[i + k];
			order[i + k] = order[j];
			order[j] = x;
		}
	wg_replay_mt_init(&r);
	pthread_barrier_init(&start, NULL, 2);
	for (long i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, racer, (void *)i);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	CHECK(accepted[0] + accepted[1] == RACE_N,
	      "two threads (%s), same %d counters: accepted %lu + %lu (each exactly once)",
	      bursts ? "bursts" : "per packet", RACE_N, accepted[0], accepted[1]);
	/* Who wins depends on scheduling; the split is information, not a check. */
	printf("info: split %lu/%lu\n", accepted[0], accepted[1]);
	pthread_barrier_destroy(&start);
	free(order);
}

int main(void)
{
	table();
	differential();
	burst_differential();
	race(false);
	race(true);
	return test_finish("wg-replay-mt");
}
