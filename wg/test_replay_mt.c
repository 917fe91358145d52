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

enum { RACE_N = 1 << 20 };
static uint64_t *order;
static unsigned long accepted[2];
static pthread_barrier_t start;

static void *racer(void *arg)
{
	long id = (long)arg;
	pthread_barrier_wait(&start);
	for (int i = 0; i < RACE_N; i++)
		accepted[id] += wg_replay_mt_check(&r, order[i]);
	return NULL;
}

static void race(void)
{
	pthread_t t[2];
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
	      "two threads, same %d counters: accepted %lu + %lu (each exactly once)", RACE_N,
	      accepted[0], accepted[1]);
	CHECK(accepted[0] && accepted[1], "both threads won some counters (they really raced)");
	pthread_barrier_destroy(&start);
	free(order);
}

int main(void)
{
	table();
	differential();
	race();
	return test_finish("wg-replay-mt");
}
