// SPDX-License-Identifier: MIT
/*
 * x25519_mb.h against RFC 7748's test vectors and against libsodium's
 * crypto_scalarmult, on random and on awkward inputs, for every batch size
 * from 0 to 17 and with aliased arguments.
 *
 * Runs everything on the implementation this CPU gets (the 8-lane IFMA one,
 * normally), then runs itself again with MG_X25519_SCALAR=1 for the
 * libsodium fallback: both must pass.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include "test_util.h"
#include "x25519_mb.h"

#define RANDOM_PAIRS 24000
#define BATCH	     64 /* random pairs per call */


/* One operation through the batch API: out = X25519(s, p), rc returned. */
static int one(b32 out, const b32 s, const b32 p)
{
	int rc = 1;
	int failed = wg_x25519_mb((b32 *)out, (const b32 *)s, (const b32 *)p, &rc, 1);

	return failed == (rc != 0) ? rc : 1000; /* 1000: the count is wrong */
}

/* libsodium's answer, zeroed on failure: libsodium may leave it unwritten. */
static int sodium_ref(b32 out, const b32 s, const b32 p)
{
	if (crypto_scalarmult(out, s, p) != 0) {
		memset(out, 0, 32);
		return -EINVAL;
	}
	return 0;
}

/* RFC 7748 section 5.2: two vectors, then the iterated one. */
static void rfc7748_scalarmult(void)
{
	const char *const(*vectors)[3] = x25519_rfc7748_vectors;
	const char *const *iterated = x25519_rfc7748_iterated;
	b32 k[2], u[2], want[2], out[2], prev;
	int rc[2] = {1, 1};
	bool ok = true;

	printf("-- RFC 7748 5.2\n");
	for (int i = 0; i < 2; i++) {
		from_hex(k[i], vectors[i][0]);
		from_hex(u[i], vectors[i][1]);
		from_hex(want[i], vectors[i][2]);
		CHECK(!one(out[0], k[i], u[i]) && !memcmp(out[0], want[i], 32),
		      "vector %d alone", i + 1);
	}
	CHECK(wg_x25519_mb(out, (const b32 *)k, (const b32 *)u, rc, 2) == 0 && !rc[0] && !rc[1] &&
		  !memcmp(out[0], want[0], 32) && !memcmp(out[1], want[1], 32),
	      "both vectors in one batch");

	/* k = u = 9; then k, u = X25519(k, u), k */
	memset(k[0], 0, 32);
	k[0][0] = 9;
	memcpy(u[0], k[0], 32);
	for (int n = 1; n <= 1000 && ok; n++) {
		ok = !one(out[0], k[0], u[0]);
		memcpy(prev, k[0], 32);
		memcpy(k[0], out[0], 32);
		memcpy(u[0], prev, 32);
		if (n == 1 || n == 1000) {
			from_hex(want[0], iterated[n == 1000]);
			CHECK(ok && !memcmp(k[0], want[0], 32), "iterated, %d iteration%s", n,
			      n > 1 ? "s" : "");
		}
	}
}

/* RFC 7748 section 6.1: both public keys and the shared secret, both ways. */
static void rfc7748_dh(void)
{
	b32 priv[2], pub[2], peer[2], out[2], shared;
	int rc[2] = {1, 1};

	printf("-- RFC 7748 6.1\n");
	from_hex(priv[0], "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
	from_hex(pub[0], "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
	from_hex(priv[1], "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
	from_hex(pub[1], "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
	from_hex(shared, "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");

	CHECK(wg_x25519_mb_base(out, (const b32 *)priv, rc, 2) == 0 && !rc[0] && !rc[1] &&
		  !memcmp(out[0], pub[0], 32) && !memcmp(out[1], pub[1], 32),
	      "wg_x25519_mb_base: Alice's and Bob's public keys");
	memcpy(peer[0], pub[1], 32);
	memcpy(peer[1], pub[0], 32);
	CHECK(wg_x25519_mb(out, (const b32 *)priv, (const b32 *)peer, rc, 2) == 0 && !rc[0] &&
		  !rc[1] && !memcmp(out[0], shared, 32) && !memcmp(out[1], shared, 32),
	      "wg_x25519_mb: X25519(a, B) and X25519(b, A) are the shared secret");
}

/* A random point, of one of 4 kinds by i. */
static void awkward_point(b32 p, unsigned i)
{
	randombytes_buf(p, 32);
	switch (i % 4) {
	case 0: /* any 32 bytes: curve or twist, about half each */
		break;
	case 1: /* top bit set */
		p[31] |= 0x80;
		break;
	case 2: /* u >= p: p + small, top bit either way */
		memset(p, 0xff, 32);
		p[0] = (uint8_t)(0xed + randombytes_uniform(0x13));
		p[31] = (uint8_t)(0x7f | (randombytes_uniform(2) << 7));
		break;
	case 3: /* small u, or all bits set below 255 */
		if (randombytes_uniform(2)) {
			memset(p + 1, 0, 31);
		} else {
			memset(p + 8, 0xff, 24);
			p[31] &= 0x7f;
		}
		break;
	}
}

static void against_libsodium(void)
{
	static b32 s[BATCH], p[BATCH], out[BATCH], want[BATCH];
	static int rc[BATCH];
	unsigned bad = 0, zero = 0, base_bad = 0, clamp_bad = 0;

	printf("-- %d random pairs against libsodium, %d per call\n", RANDOM_PAIRS, BATCH);
	for (int r = 0; r < RANDOM_PAIRS / BATCH; r++) {
		int want_failed = 0, failed;

		for (int i = 0; i < BATCH; i++) {
			randombytes_buf(s[i], 32); /* unclamped: every function clamps */
			awkward_point(p[i], (unsigned)(r * BATCH + i));
			if (sodium_ref(want[i], s[i], p[i]))
				want_failed++, zero++;
		}
		failed = wg_x25519_mb(out, (const b32 *)s, (const b32 *)p, rc, BATCH);
		for (int i = 0; i < BATCH; i++) {
			if (memcmp(out[i], want[i], 32) || (rc[i] != 0) != !!sodium_is_zero(want[i], 32)) {
				if (bad++ < 5) {
					print_hex("scalar", s[i]);
					print_hex("point", p[i]);
				}
			}
		}
		if (failed != want_failed)
			bad++;

		/* the base function, and clamping */
		failed = wg_x25519_mb_base(out, (const b32 *)s, rc, BATCH);
		for (int i = 0; i < BATCH; i++) {
			if (crypto_scalarmult_base(want[i], s[i]) != 0 || rc[i] ||
			    memcmp(out[i], want[i], 32))
				base_bad++;
			s[i][0] &= 248;
			s[i][31] = (s[i][31] & 127) | 64;
		}
		if (failed)
			base_bad++;
		wg_x25519_mb_base(want, (const b32 *)s, rc, BATCH);
		for (int i = 0; i < BATCH; i++)
			clamp_bad += !!memcmp(out[i], want[i], 32);
	}
	CHECK(!bad, "wg_x25519_mb == crypto_scalarmult, rc and return value too (%u differ, %u "
		    "all-zero)",
	      bad, zero);
	CHECK(!base_bad, "wg_x25519_mb_base == crypto_scalarmult_base (%u differ)", base_bad);
	CHECK(!clamp_bad, "scalars are clamped: X25519(s, 9) == X25519(clamp(s), 9) (%u differ)",
	      clamp_bad);
}

/*
 * Points on the twist: u such that u^3 + 486662 u^2 + u is not a square mod
 * p. The test picks them by Euler's criterion, with a tiny (slow) bignum.
 */
typedef struct {
	uint32_t w[8];
} n256;

static void n_from(n256 *r, const b32 b)
{
	for (int i = 0; i < 8; i++)
		r->w[i] = (uint32_t)b[4 * i] | (uint32_t)b[4 * i + 1] << 8 |
			  (uint32_t)b[4 * i + 2] << 16 | (uint32_t)b[4 * i + 3] << 24;
	r->w[7] &= 0x7fffffff;
}

/* r = a * b mod p (schoolbook, reduce with 2^256 = 38) */
static void n_mul(n256 *r, const n256 *a, const n256 *b)
{
	uint64_t t[16] = {0};
	uint64_t c;

	for (int i = 0; i < 8; i++) {
		c = 0;
		for (int j = 0; j < 8; j++) {
			c += t[i + j] + (uint64_t)a->w[i] * b->w[j];
			t[i + j] = (uint32_t)c;
			c >>= 32;
		}
		t[i + 8] = c;
	}
	for (int pass = 0; pass < 2; pass++) {
		c = 0;
		for (int i = 0; i < 8; i++) {
			c += t[i] + 38 * t[i + 8];
			t[i] = (uint32_t)c;
			c >>= 32;
		}
		memset(t + 8, 0, 8 * sizeof(t[0]));
		t[8] = c;
	}
	c = t[8] * 38;
	for (int i = 0; i < 8; i++) {
		c += t[i];
		t[i] = (uint32_t)c;
		c >>= 32;
	}
	for (int i = 0; i < 8; i++)
		r->w[i] = (uint32_t)t[i];
	/* now < 2^256; fully reduce by subtracting p while >= p (at most a few times) */
	for (int k = 0; k < 3; k++) {
		static const uint32_t p[8] = {0xffffffed, 0xffffffff, 0xffffffff, 0xffffffff,
					      0xffffffff, 0xffffffff, 0xffffffff, 0x7fffffff};
		uint32_t d[8];
		int64_t br = 0;

		for (int i = 0; i < 8; i++) {
			br += (int64_t)r->w[i] - p[i];
			d[i] = (uint32_t)br;
			br >>= 32;
		}
		if (br == 0)
			memcpy(r->w, d, sizeof(d));
	}
}

/* r = a + b mod p; a, b < p, so the sum has no carry out of 2^256 */
static void n_add(n256 *r, const n256 *a, const n256 *b)
{
	uint64_t c = 0;

	for (int i = 0; i < 8; i++) {
		c += (uint64_t)a->w[i] + b->w[i];
		r->w[i] = (uint32_t)c;
		c >>= 32;
	}
	n_mul(r, r, &(n256){{1}}); /* reduce */
}

/* 1 if u^3 + A u^2 + u is a nonzero square mod p (u on the curve), -1 twist, 0 */
static int legendre(const b32 u)
{
	n256 x, x2, y, a, e, r;
	b32 ab = {0};

	n_from(&x, u);
	n_mul(&x, &x, &(n256){{1}}); /* u mod p */
	ab[0] = 0x06;
	ab[1] = 0x6d;
	ab[2] = 0x07; /* 486662 = 0x076d06 */
	n_from(&a, ab);
	n_mul(&x2, &x, &x);
	n_add(&y, &x, &a);  /* u + A */
	n_mul(&y, &y, &x2); /* u^3 + A u^2 */
	n_add(&y, &y, &x);  /* + u */
	/* y^((p-1)/2): (p-1)/2 = 2^254 - 10 */
	memset(&r, 0, sizeof(r));
	r.w[0] = 1;
	e = y;
	for (int bit = 0; bit < 254; bit++) {
		/* exponent bits: 2^254 - 10 = ...11110110 in binary (bits 0..253) */
		uint64_t ex_low = (uint64_t)0 - 10; /* low 64 bits of 2^254 - 10 */
		bool set = bit < 64 ? (ex_low >> bit) & 1 : true;

		if (set)
			n_mul(&r, &r, &e);
		n_mul(&e, &e, &e);
	}
	if (r.w[0] == 0 && !r.w[1] && !r.w[2] && !r.w[3] && !r.w[4] && !r.w[5] && !r.w[6] &&
	    !r.w[7])
		return 0;
	return r.w[0] == 1 && !r.w[1] ? 1 : -1;
}

static void twist_points(void)
{
	enum { N = 64 };
	b32 s[N], p[N], out[N], want[N];
	int rc[N], curve = 0, twist = 0;
	unsigned bad = 0;

	printf("-- points on the curve and on its twist\n");
	for (int i = 0; i < N; i++) {
		int l;

		randombytes_buf(s[i], 32);
		do {
			randombytes_buf(p[i], 32);
			l = legendre(p[i]);
		} while (l == 0 || (l > 0) != (i % 2 == 0));
		curve += l > 0;
		twist += l < 0;
		sodium_ref(want[i], s[i], p[i]);
	}
	wg_x25519_mb(out, (const b32 *)s, (const b32 *)p, rc, N);
	for (int i = 0; i < N; i++)
		bad += rc[i] || memcmp(out[i], want[i], 32);
	CHECK(curve == N / 2 && twist == N / 2 && !bad,
	      "%d on the curve, %d on the twist: all == crypto_scalarmult (%u differ)", curve,
	      twist, bad);

	/* the Legendre symbol itself: 9 is on the curve, 2 on the twist (RFC 7748) */
	memset(p[0], 0, 32);
	p[0][0] = 9;
	memset(p[1], 0, 32);
	p[1][0] = 2;
	CHECK(legendre(p[0]) == 1 && legendre(p[1]) == -1, "the test's curve/twist check works");
}

/* u and u + p are the same point, as is u with the top bit set. */
static void non_canonical(void)
{
	static const char *const nine[] = {
	    "0900000000000000000000000000000000000000000000000000000000000000", /* 9 */
	    "f6ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", /* p + 9 */
	    "0900000000000000000000000000000000000000000000000000000000000080", /* 9 + 2^255 */
	    "f6ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", /* both */
	};
	b32 s[4], p[4], out[4], want;
	int rc[4];
	bool ok = true;

	printf("-- non-canonical points\n");
	for (int i = 0; i < 4; i++) {
		randombytes_buf(s[i], 32);
		memcpy(s[i], s[0], 32);
		from_hex(p[i], nine[i]);
	}
	CHECK(!crypto_scalarmult_base(want, s[0]), "X25519(s, 9) from libsodium");
	CHECK(!wg_x25519_mb(out, (const b32 *)s, (const b32 *)p, rc, 4), "4 lanes, no failure");
	for (int i = 0; i < 4; i++)
		ok = ok && !rc[i] && !memcmp(out[i], want, 32);
	CHECK(ok, "9, p + 9, 9 + 2^255 and p + 9 + 2^255 are all 9");
}

/* Every batch size from 0 to 17 against one answer per lane. */
static void batch_sizes(void)
{
	enum { N = 17 };
	b32 s[N + 1], p[N + 1], out[N + 1], want[N + 1], base_want[N + 1], canary;
	int rc[N + 1];

	printf("-- batch sizes 0..%d\n", N);
	for (int i = 0; i <= N; i++) {
		randombytes_buf(s[i], 32);
		randombytes_buf(p[i], 32);
		sodium_ref(want[i], s[i], p[i]);
		crypto_scalarmult_base(base_want[i], s[i]);
	}
	randombytes_buf(canary, 32);
	for (int n = 0; n <= N; n++) {
		bool ok = true, base_ok = true;
		int failed;

		for (int i = 0; i <= N; i++) {
			memcpy(out[i], canary, 32);
			rc[i] = 12345;
		}
		failed = wg_x25519_mb(out, (const b32 *)s, (const b32 *)p, rc, (size_t)n);
		for (int i = 0; i < n; i++)
			ok = ok && !rc[i] && !memcmp(out[i], want[i], 32);
		for (int i = n; i <= N; i++) /* beyond n: untouched */
			ok = ok && rc[i] == 12345 && !memcmp(out[i], canary, 32);
		ok = ok && !failed;

		for (int i = 0; i <= N; i++) {
			memcpy(out[i], canary, 32);
			rc[i] = 12345;
		}
		failed = wg_x25519_mb_base(out, (const b32 *)s, rc, (size_t)n);
		for (int i = 0; i < n; i++)
			base_ok = base_ok && !rc[i] && !memcmp(out[i], base_want[i], 32);
		for (int i = n; i <= N; i++)
			base_ok = base_ok && rc[i] == 12345 && !memcmp(out[i], canary, 32);
		base_ok = base_ok && !failed;
		CHECK(ok && base_ok, "n = %2d: wg_x25519_mb and wg_x25519_mb_base, nothing written "
				     "beyond n",
		      n);
	}
	CHECK(wg_x25519_mb(NULL, NULL, NULL, NULL, 0) == 0 &&
		  wg_x25519_mb_base(NULL, NULL, NULL, 0) == 0,
	      "n = 0 with NULL arrays");
}

/* out may be the same array as scalar or point. */
static void aliasing(void)
{
	enum { N = 11 };
	b32 s[N], p[N], io[N], want[N], base_want[N];
	int rc[N];
	bool ok = true;

	printf("-- aliasing\n");
	for (int i = 0; i < N; i++) {
		randombytes_buf(s[i], 32);
		randombytes_buf(p[i], 32);
		sodium_ref(want[i], s[i], p[i]);
		crypto_scalarmult_base(base_want[i], s[i]);
	}
	memcpy(io, p, sizeof(io));
	wg_x25519_mb(io, (const b32 *)s, (const b32 *)io, rc, N);
	for (int i = 0; i < N; i++)
		ok = ok && !rc[i] && !memcmp(io[i], want[i], 32);
	CHECK(ok, "out == point, %d lanes", N);

	ok = true;
	memcpy(io, s, sizeof(io));
	wg_x25519_mb(io, (const b32 *)io, (const b32 *)p, rc, N);
	for (int i = 0; i < N; i++)
		ok = ok && !rc[i] && !memcmp(io[i], want[i], 32);
	CHECK(ok, "out == scalar, %d lanes", N);

	ok = true;
	memcpy(io, s, sizeof(io));
	wg_x25519_mb_base(io, (const b32 *)io, rc, N);
	for (int i = 0; i < N; i++)
		ok = ok && !rc[i] && !memcmp(io[i], base_want[i], 32);
	CHECK(ok, "base: out == scalar, %d lanes", N);
}

static void low_order(void)
{
	const char *const *points = x25519_low_order_points;
	enum { NP = X25519_LOW_ORDER_POINTS, N = 2 * NP + 5 };
	b32 s[N], p[N], out[N], want[N];
	int rc[N], failed;
	bool bad_ok = true, good_ok = true;

	printf("-- low-order points\n");
	/* lanes: the 7 points, with and without the top bit, mixed with good ones */
	for (int i = 0; i < N; i++) {
		randombytes_buf(s[i], 32);
		randombytes_buf(p[i], 32);
	}
	for (int i = 0; i < NP; i++) {
		for (int top = 0; top < 2; top++) {
			int lane = 2 * i + top; /* 0..13; lanes 14.. stay random */

			from_hex(p[lane], points[i]);
			p[lane][31] |= top ? 0x80 : 0;
		}
	}
	/* move some good lanes in between: swap lane 3 with lane 15, lane 8 with 17 */
	{
		b32 t;

		memcpy(t, p[3], 32);
		memcpy(p[3], p[15], 32);
		memcpy(p[15], t, 32);
		memcpy(t, p[8], 32);
		memcpy(p[8], p[17], 32);
		memcpy(p[17], t, 32);
	}
	for (int i = 0; i < N; i++) {
		sodium_ref(want[i], s[i], p[i]);
		memset(out[i], 0xaa, 32);
	}
	failed = wg_x25519_mb(out, (const b32 *)s, (const b32 *)p, rc, N);
	for (int i = 0; i < N; i++) {
		bool low = sodium_is_zero(want[i], 32);

		if (low)
			bad_ok = bad_ok && rc[i] == -EINVAL && sodium_is_zero(out[i], 32);
		else
			good_ok = good_ok && rc[i] == 0 && !memcmp(out[i], want[i], 32);
	}
	CHECK(failed == 2 * NP && bad_ok,
	      "%d low-order lanes (7 points, top bit clear and set): -EINVAL, output zeroed "
	      "(%d failed)",
	      2 * NP, failed);
	CHECK(good_ok, "the other %d lanes of the same batches are correct", N - 2 * NP);
	for (int i = 0; i < NP; i++) {
		b32 q;

		from_hex(p[0], points[i]);
		memset(q, 0xaa, 32);
		CHECK(one(q, s[0], p[0]) == -EINVAL && sodium_is_zero(q, 32),
		      "point %d alone: -EINVAL, output zeroed", i);
	}
}

static int rerun_scalar(char **argv)
{
	pid_t pid;
	int status;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		setenv("MG_X25519_SCALAR", "1", 1);
		execv("/proc/self/exe", argv);
		perror("execv");
		_exit(127);
	}
	if (waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int main(int argc, char **argv)
{
	const char *forced = getenv("MG_X25519_SCALAR");
	const char *impl;

	(void)argc;
	if (sodium_init() < 0) {
		printf("sodium_init failed\n");
		return EXIT_FAILURE;
	}
	impl = wg_x25519_mb_impl();
	printf("== implementation: %s%s\n", impl, forced ? " (MG_X25519_SCALAR set)" : "");
	if (forced && *forced && strcmp(forced, "0"))
		CHECK(!strcmp(impl, "scalar"), "MG_X25519_SCALAR=%s forces the fallback", forced);
	else
		CHECK(!strcmp(impl, "ifma") || !strcmp(impl, "scalar"), "implementation is %s",
		      impl);

	rfc7748_scalarmult();
	rfc7748_dh();
	non_canonical();
	batch_sizes();
	aliasing();
	low_order();
	twist_points();
	against_libsodium();

	if (!forced) {
		int st;

		printf("== again with MG_X25519_SCALAR=1\n");
		st = rerun_scalar(argv);
		CHECK(st == 0, "the scalar fallback passes too (exit status %d)", st);
	}
	return test_finish(forced ? "test_x25519_mb (scalar)" : "test_x25519_mb");
}
