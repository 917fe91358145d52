// SPDX-License-Identifier: MIT
/*
 * Cost of one X25519 on one core: libsodium's crypto_scalarmult one at a
 * time, against the 8-lane code of x25519_mb.h with several batch sizes.
 * Prints a markdown table: TSC cycles per operation (the TSC calibrated
 * against CLOCK_MONOTONIC), and the operations per second and microseconds
 * per operation that makes.
 *
 *   meshgate-bench-x25519 [seconds per row, default 1]
 *   MG_X25519_SCALAR=1 meshgate-bench-x25519    the fallback, for comparison
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>
#include <x86intrin.h>

#include "x25519_mb.h"

#define MAX_N 64

static uint8_t scalar[MAX_N][32], point[MAX_N][32], out[MAX_N][32];
static int rc[MAX_N];

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* TSC ticks per ns, against CLOCK_MONOTONIC over 200 ms. */
static double tsc_calibrate(void)
{
	uint64_t t0 = now_ns(), c0 = __rdtsc();

	while (now_ns() - t0 < 200000000u)
		;
	return (double)(__rdtsc() - c0) / (double)(now_ns() - t0);
}

enum kind { SODIUM, SODIUM_BASE, MB, MB_BASE };

/* One call: returns the number of X25519 operations it did. */
static size_t run(enum kind kind, size_t n)
{
	switch (kind) {
	case SODIUM:
		if (crypto_scalarmult(out[0], scalar[0], point[0]) != 0)
			abort();
		memcpy(point[0], out[0], 32); /* chain them: no caching */
		return 1;
	case SODIUM_BASE:
		if (crypto_scalarmult_base(out[0], scalar[0]) != 0)
			abort();
		scalar[0][1] ^= out[0][1];
		return 1;
	case MB:
		if (wg_x25519_mb(out, (const uint8_t(*)[32])scalar, (const uint8_t(*)[32])point, rc,
				 n) != 0)
			abort();
		memcpy(point, out, n * 32);
		return n;
	case MB_BASE:
		if (wg_x25519_mb_base(out, (const uint8_t(*)[32])scalar, rc, n) != 0)
			abort();
		for (size_t i = 0; i < n; i++)
			scalar[i][1] ^= out[i][1];
		return n;
	}
	return 0;
}

/*
 * The row's time is cut in SLICES; the fastest slice counts, as the one
 * least disturbed by other processes on the core.
 */
#define SLICES 10

static void row(const char *name, enum kind kind, size_t n, double seconds, double tsc_per_ns)
{
	double best = 0;

	for (int i = 0; i < 20; i++) /* warm up */
		run(kind, n);
	for (int s = 0; s < SLICES; s++) {
		uint64_t ops = 0, t0 = now_ns(), c0 = __rdtsc();
		double cycles;

		do {
			for (int i = 0; i < 4; i++)
				ops += run(kind, n);
		} while (now_ns() - t0 < (uint64_t)(seconds * 1e9 / SLICES));
		cycles = (double)(__rdtsc() - c0) / (double)ops;
		if (!s || cycles < best)
			best = cycles;
	}
	printf("| %s | %.0f | %.0f | %.2f |\n", name, best, tsc_per_ns * 1e9 / best,
	       best / tsc_per_ns / 1000);
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 1.0, tsc_per_ns;

	if (sodium_init() < 0 || seconds <= 0) {
		fprintf(stderr, "usage: %s [seconds per row]\n", argv[0]);
		return EXIT_FAILURE;
	}
	randombytes_buf(scalar, sizeof(scalar));
	for (size_t i = 0; i < MAX_N; i++)
		crypto_scalarmult_base(point[i], scalar[MAX_N - 1 - i]);

	tsc_per_ns = tsc_calibrate();
	printf("TSC %.3f GHz, calibrated against CLOCK_MONOTONIC; cycles are TSC cycles.\n",
	       tsc_per_ns);
	printf("wg_x25519_mb implementation: %s; libsodium %s\n\n", wg_x25519_mb_impl(),
	       sodium_version_string());
	printf("Fastest of %d slices of %.2f s each per row.\n\n", SLICES, seconds / SLICES);
	printf("| operation | cycles/op | ops/s | us/op |\n");
	printf("|---|---:|---:|---:|\n");
	row("libsodium crypto_scalarmult", SODIUM, 1, seconds, tsc_per_ns);
	row("libsodium crypto_scalarmult_base", SODIUM_BASE, 1, seconds, tsc_per_ns);
	row("wg_x25519_mb, n = 1", MB, 1, seconds, tsc_per_ns);
	row("wg_x25519_mb, n = 8", MB, 8, seconds, tsc_per_ns);
	row("wg_x25519_mb, n = 64", MB, 64, seconds, tsc_per_ns);
	row("wg_x25519_mb_base, n = 8", MB_BASE, 8, seconds, tsc_per_ns);
	return EXIT_SUCCESS;
}
