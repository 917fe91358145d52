// SPDX-License-Identifier: MIT
/*
 * 8-lane X25519 with AVX-512 IFMA: see x25519_mb.h.
 *
 * A field element mod p = 2^255 - 19 is 5 limbs in radix 2^51, and each limb
 * is one __m512i holding that limb of 8 independent elements, one per lane.
 * vpmadd52luq/vpmadd52huq multiply the low 52 bits of two limbs and add the
 * low or the high 52 bits of the 104-bit product to an accumulator. So:
 *
 *   - every input of a multiplication must have limbs < 2^52, or the
 *     instruction silently drops their high bits;
 *   - the high half of a_i * b_j (bits 52..103) weighs 2^52 = 2 * 2^51 at
 *     limb i + j + 1, so it counts twice there: columns sum their high
 *     halves, double them, then add the low halves;
 *   - columns 5..9 weigh 2^255 = 19 (mod p) times columns 0..4.
 *
 * Forms that the code keeps track of (bounds per lane):
 *
 *   loose     limbs < 2^51 + 2^24 (outputs of fe8_mul, fe8_sq, fe8_mul_small,
 *             fe8_carry and inputs): good for fe8_mul, as the subtrahend of
 *             fe8_sub, and as summands of fe8_add.
 *   tight     limbs 1..4 < 2^51, limb 0 < 2^52 (outputs of fe8_mul, fe8_sq,
 *             fe8_carry): also good for fe8_sq, which doubles limbs 1..4.
 *
 * fe8_add and fe8_sub (a + 2p - b) of loose elements give limbs < 2^53:
 * fe8_carry brings them back to tight before they are multiplied.
 *
 * Constant time: no branch or memory index depends on a scalar or a point.
 * The ladder's conditional swap is a blend under a mask made from the
 * scalar bits of each lane; the instructions used (IFMA, vpmullq, shifts,
 * adds, blends) take the same time whatever their operands.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <immintrin.h>
#include <sodium.h>

#include "x25519_mb.h"

#define MB_TARGET __attribute__((target("avx512f,avx512ifma,avx512dq,avx512vl")))
#define MB_INLINE static inline __attribute__((always_inline)) MB_TARGET

enum { LANES = WG_X25519_MB_LANES, KEY = 32 };

/* ---- field arithmetic, 8 lanes --------------------------------------------- */

typedef struct {
	__m512i v[5];
} fe8;

#define MASK51 ((1ULL << 51) - 1)

#define LO(acc, a, b) _mm512_madd52lo_epu64((acc), (a), (b))
#define HI(acc, a, b) _mm512_madd52hi_epu64((acc), (a), (b))
#define ADD(a, b)     _mm512_add_epi64((a), (b))
#define DBL(a)	      _mm512_add_epi64((a), (a))

/* The loops over limbs, unrolled: the limbs must stay in registers. */
#define EACH4(X) X(0) X(1) X(2) X(3)
#define EACH5(X) EACH4(X) X(4)

MB_INLINE __m512i bcast(uint64_t x)
{
	return _mm512_set1_epi64((long long)x);
}

MB_INLINE __m512i mul19(__m512i x)
{
	__m512i k = bcast(19);

	__asm__("" : "+v"(k)); /* keep vpmullq: GCC would make shifts and adds of it */
	return _mm512_mullo_epi64(x, k);
}

MB_INLINE __m512i mul38(__m512i x)
{
	__m512i k = bcast(38);

	__asm__("" : "+v"(k));
	return _mm512_mullo_epi64(x, k);
}

/*
 * Carries tight: each limb keeps its low 51 bits and passes the rest to the
 * next, the top one times 19 to limb 0. In: limbs < 2^62. Out: limbs 1..4
 * < 2^51, limb 0 < 2^51 + 19 * 2^11.
 */
MB_INLINE void fe8_carry(fe8 *r)
{
	const __m512i m = bcast(MASK51);
	__m512i c;

#define CARRY(i)                                                                                   \
	c = _mm512_srli_epi64(r->v[i], 51);                                                        \
	r->v[i] = _mm512_and_si512(r->v[i], m);                                                    \
	r->v[i + 1] = ADD(r->v[i + 1], c);
	EACH4(CARRY)
#undef CARRY
	c = _mm512_srli_epi64(r->v[4], 51);
	r->v[4] = _mm512_and_si512(r->v[4], m);
	r->v[0] = ADD(r->v[0], mul19(c));
}

/* As fe8_carry, all limbs at once: limbs < 2^51 + 19 * 2^11, loose. */
MB_INLINE void fe8_carry_loose(fe8 *r)
{
	const __m512i m = bcast(MASK51);
	__m512i c[5];

#define SPLIT(i)                                                                                   \
	c[i] = _mm512_srli_epi64(r->v[i], 51);                                                     \
	r->v[i] = _mm512_and_si512(r->v[i], m);
	EACH5(SPLIT)
#undef SPLIT
	r->v[0] = ADD(r->v[0], mul19(c[4]));
	r->v[1] = ADD(r->v[1], c[0]);
	r->v[2] = ADD(r->v[2], c[1]);
	r->v[3] = ADD(r->v[3], c[2]);
	r->v[4] = ADD(r->v[4], c[3]);
}

/* r = a + b; a, b loose: limbs < 2^53. */
MB_INLINE void fe8_add(fe8 *r, const fe8 *a, const fe8 *b)
{
#define SUM(i) r->v[i] = ADD(a->v[i], b->v[i]);
	EACH5(SUM)
#undef SUM
}

/* r = a + 2p - b; a, b loose: limbs < 2^53, no borrow (b's limbs < 2p's). */
MB_INLINE void fe8_sub(fe8 *r, const fe8 *a, const fe8 *b)
{
	const __m512i p0 = bcast(2 * ((1ULL << 51) - 19)), pi = bcast(2 * MASK51);

	r->v[0] = _mm512_sub_epi64(ADD(a->v[0], p0), b->v[0]);
	r->v[1] = _mm512_sub_epi64(ADD(a->v[1], pi), b->v[1]);
	r->v[2] = _mm512_sub_epi64(ADD(a->v[2], pi), b->v[2]);
	r->v[3] = _mm512_sub_epi64(ADD(a->v[3], pi), b->v[3]);
	r->v[4] = _mm512_sub_epi64(ADD(a->v[4], pi), b->v[4]);
}

/*
 * r = x * y; x, y with limbs < 2^52 (loose or tight). Out: tight.
 *
 * Column k = sum of lo(x_i y_j) over i + j = k, plus twice the sum of
 * hi(x_i y_j) over i + j = k - 1: with limbs < 2^52, under 14 * 2^52. Columns
 * 5..9 are multiplied by 19 (< 2^60.2) and added to columns 0..4 before
 * their low halves, then one carry pass.
 */
MB_INLINE void fe8_mul(fe8 *r, const fe8 *x, const fe8 *y, bool tight)
{
	const __m512i a0 = x->v[0], a1 = x->v[1], a2 = x->v[2], a3 = x->v[3], a4 = x->v[4];
	const __m512i b0 = y->v[0], b1 = y->v[1], b2 = y->v[2], b3 = y->v[3], b4 = y->v[4];
	const __m512i z = _mm512_setzero_si512();
	__m512i c5, c6, c7, c8, c9, c0, c1, c2, c3, c4;

	/* columns 5..9: high halves (from i + j = k - 1), doubled, then low */
	c9 = HI(z, a4, b4);
	c8 = HI(HI(z, a3, b4), a4, b3);
	c7 = HI(HI(HI(z, a2, b4), a3, b3), a4, b2);
	c6 = HI(HI(HI(HI(z, a1, b4), a2, b3), a3, b2), a4, b1);
	c5 = HI(HI(HI(HI(HI(z, a0, b4), a1, b3), a2, b2), a3, b1), a4, b0);
	c8 = LO(DBL(c8), a4, b4);
	c7 = LO(LO(DBL(c7), a3, b4), a4, b3);
	c6 = LO(LO(LO(DBL(c6), a2, b4), a3, b3), a4, b2);
	c5 = LO(LO(LO(LO(DBL(c5), a1, b4), a2, b3), a3, b2), a4, b1);

	/* columns 0..4: high halves, doubled, plus 19 x column k + 5, plus low */
	c4 = HI(HI(HI(HI(z, a0, b3), a1, b2), a2, b1), a3, b0);
	c3 = HI(HI(HI(z, a0, b2), a1, b1), a2, b0);
	c2 = HI(HI(z, a0, b1), a1, b0);
	c1 = HI(z, a0, b0);
	c4 = LO(LO(LO(LO(LO(DBL(c4), a0, b4), a1, b3), a2, b2), a3, b1), a4, b0);
	c3 = LO(LO(LO(LO(DBL(c3), a0, b3), a1, b2), a2, b1), a3, b0);
	c2 = LO(LO(LO(DBL(c2), a0, b2), a1, b1), a2, b0);
	c1 = LO(LO(DBL(c1), a0, b1), a1, b0);
	c0 = LO(z, a0, b0);
	c4 = ADD(c4, mul38(c9)); /* column 9 is 2 x c9 */
	c3 = ADD(c3, mul19(c8));
	c2 = ADD(c2, mul19(c7));
	c1 = ADD(c1, mul19(c6));
	c0 = ADD(c0, mul19(c5));

	r->v[0] = c0;
	r->v[1] = c1;
	r->v[2] = c2;
	r->v[3] = c3;
	r->v[4] = c4;
	if (tight)
		fe8_carry(r);
	else
		fe8_carry_loose(r);
}

/*
 * r = x^2; x tight (limbs 1..4 < 2^51, so that 2 x_i < 2^52). Out: tight.
 * The products x_i x_j, i < j, count twice: as x_i * (2 x_j).
 */
MB_INLINE void fe8_sq(fe8 *r, const fe8 *x, bool tight)
{
	const __m512i a0 = x->v[0], a1 = x->v[1], a2 = x->v[2], a3 = x->v[3], a4 = x->v[4];
	const __m512i d1 = DBL(a1), d2 = DBL(a2), d3 = DBL(a3), d4 = DBL(a4);
	const __m512i z = _mm512_setzero_si512();
	__m512i c5, c6, c7, c8, c9, c0, c1, c2, c3, c4;

	/*
	 * Products by column: 0: a0a0; 1: a0d1; 2: a1a1 a0d2; 3: a0d3 a1d2;
	 * 4: a2a2 a0d4 a1d3; 5: a1d4 a2d3; 6: a3a3 a2d4; 7: a3d4; 8: a4a4.
	 */
	c9 = HI(z, a4, a4);
	c8 = HI(z, a3, d4);
	c7 = HI(HI(z, a3, a3), a2, d4);
	c6 = HI(HI(z, a1, d4), a2, d3);
	c5 = HI(HI(HI(z, a2, a2), a0, d4), a1, d3);
	c8 = LO(DBL(c8), a4, a4);
	c7 = LO(DBL(c7), a3, d4);
	c6 = LO(LO(DBL(c6), a3, a3), a2, d4);
	c5 = LO(LO(DBL(c5), a1, d4), a2, d3);

	c4 = HI(HI(z, a0, d3), a1, d2);
	c3 = HI(HI(z, a1, a1), a0, d2);
	c2 = HI(z, a0, d1);
	c1 = HI(z, a0, a0);
	c4 = LO(LO(LO(DBL(c4), a2, a2), a0, d4), a1, d3);
	c3 = LO(LO(DBL(c3), a0, d3), a1, d2);
	c2 = LO(LO(DBL(c2), a1, a1), a0, d2);
	c1 = LO(DBL(c1), a0, d1);
	c0 = LO(z, a0, a0);
	c4 = ADD(c4, mul38(c9));
	c3 = ADD(c3, mul19(c8));
	c2 = ADD(c2, mul19(c7));
	c1 = ADD(c1, mul19(c6));
	c0 = ADD(c0, mul19(c5));

	r->v[0] = c0;
	r->v[1] = c1;
	r->v[2] = c2;
	r->v[3] = c3;
	r->v[4] = c4;
	if (tight)
		fe8_carry(r);
	else
		fe8_carry_loose(r);
}

/*
 * r = k * x (+ b, if b): x with limbs < 2^52, k2 = 2k broadcast, k < 2^20,
 * b loose or NULL. 2k x_i = lo + 2^52 hi, so k x_i = lo / 2 + 2^51 hi: lo is
 * even, and halving 2 b_i + lo is exact. Out: limbs < b_i + 2^51 + 2^22
 * (loose when b is NULL).
 */
MB_INLINE void fe8_mul_small(fe8 *r, const fe8 *x, __m512i k2, const fe8 *b)
{
	const __m512i z = _mm512_setzero_si512();
	__m512i lo[5], hi[5];

#define LIMB(i)                                                                                    \
	lo[i] = _mm512_srli_epi64(LO(b ? DBL(b->v[i]) : z, x->v[i], k2), 1);                       \
	hi[i] = HI(z, x->v[i], k2);
	EACH5(LIMB)
#undef LIMB
	r->v[0] = ADD(lo[0], mul19(hi[4]));
	r->v[1] = ADD(lo[1], hi[0]);
	r->v[2] = ADD(lo[2], hi[1]);
	r->v[3] = ADD(lo[3], hi[2]);
	r->v[4] = ADD(lo[4], hi[3]);
}

/* r = x^(2^n); x tight, n >= 1. */
static MB_TARGET __attribute__((noinline)) void fe8_sqn(fe8 *r, const fe8 *x, int n)
{
	fe8 t = *x;

	for (int i = 0; i < n; i++)
		fe8_sq(&t, &t, true);
	*r = t;
}

static MB_TARGET __attribute__((noinline)) void fe8_mul_out(fe8 *r, const fe8 *x, const fe8 *y)
{
	fe8_mul(r, x, y, true);
}

/* r = z^(p - 2) = 1 / z (0 for z = 0); z tight. Out: tight. */
static MB_TARGET void fe8_invert(fe8 *r, const fe8 *z)
{
	fe8 z2, z9, z11, z5_0, z10_0, z20_0, z50_0, z100_0, t;

	fe8_sqn(&z2, z, 1);
	fe8_sqn(&t, &z2, 2);
	fe8_mul_out(&z9, &t, z);
	fe8_mul_out(&z11, &z9, &z2);
	fe8_sqn(&t, &z11, 1);
	fe8_mul_out(&z5_0, &t, &z9); /* z^(2^5 - 1) */
	fe8_sqn(&t, &z5_0, 5);
	fe8_mul_out(&z10_0, &t, &z5_0);
	fe8_sqn(&t, &z10_0, 10);
	fe8_mul_out(&z20_0, &t, &z10_0);
	fe8_sqn(&t, &z20_0, 20);
	fe8_mul_out(&t, &t, &z20_0); /* z^(2^40 - 1) */
	fe8_sqn(&t, &t, 10);
	fe8_mul_out(&z50_0, &t, &z10_0);
	fe8_sqn(&t, &z50_0, 50);
	fe8_mul_out(&z100_0, &t, &z50_0);
	fe8_sqn(&t, &z100_0, 100);
	fe8_mul_out(&t, &t, &z100_0); /* z^(2^200 - 1) */
	fe8_sqn(&t, &t, 50);
	fe8_mul_out(&t, &t, &z50_0); /* z^(2^250 - 1) */
	fe8_sqn(&t, &t, 5);
	fe8_mul_out(r, &t, &z11); /* z^(2^255 - 32 + 11) */
}

/* Canonical limbs (value < p, limbs < 2^51) from tight. */
MB_INLINE void fe8_freeze(fe8 *r)
{
	const __m512i m = bcast(MASK51);
	__m512i q;

	/* Limbs < 2^51, value < 2^255: a carry out of limb 4 leaves limb 0 small. */
	fe8_carry(r);
	/* q = 1 if the value is >= p, that is if value + 19 >= 2^255 */
	q = _mm512_srli_epi64(ADD(r->v[0], bcast(19)), 51);
	q = _mm512_srli_epi64(ADD(r->v[1], q), 51);
	q = _mm512_srli_epi64(ADD(r->v[2], q), 51);
	q = _mm512_srli_epi64(ADD(r->v[3], q), 51);
	q = _mm512_srli_epi64(ADD(r->v[4], q), 51);
	/* value - p = value + 19 - 2^255 */
	r->v[0] = ADD(r->v[0], mul19(q));
#define CARRY(i)                                                                                   \
	r->v[i + 1] = ADD(r->v[i + 1], _mm512_srli_epi64(r->v[i], 51));                            \
	r->v[i] = _mm512_and_si512(r->v[i], m);
	EACH4(CARRY)
#undef CARRY
	r->v[4] = _mm512_and_si512(r->v[4], m);
}

/* ---- the ladder ------------------------------------------------------------- */

MB_INLINE void fe8_cswap(__mmask8 swap, fe8 *a, fe8 *b)
{
	__m512i t;

#define SWAP(i)                                                                                    \
	t = _mm512_mask_blend_epi64(swap, a->v[i], b->v[i]);                                       \
	b->v[i] = _mm512_mask_blend_epi64(swap, b->v[i], a->v[i]);                                 \
	a->v[i] = t;
	EACH5(SWAP)
#undef SWAP
}

/*
 * RFC 7748 section 5, on x1 (the point; 9 when base: then z3 = 9 (DA - CB)^2
 * is a multiplication by a small constant). kw[w] holds the 64-bit word w
 * of each lane's clamped scalar. Out: x2 / z2, both tight.
 */
MB_INLINE void ladder(fe8 *x2_out, fe8 *z2_out, const __m512i kw[4], const fe8 *x1, bool base)
{
	const __m512i a24x2 = bcast(2 * 121665), ninex2 = bcast(2 * 9);
	fe8 x2 = {{bcast(1), _mm512_setzero_si512(), _mm512_setzero_si512(),
		   _mm512_setzero_si512(), _mm512_setzero_si512()}};
	fe8 z2 = {{_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
		   _mm512_setzero_si512(), _mm512_setzero_si512()}};
	fe8 x3 = *x1, z3 = {{bcast(1), _mm512_setzero_si512(), _mm512_setzero_si512(),
			     _mm512_setzero_si512(), _mm512_setzero_si512()}};
	__mmask8 swap = 0;

	for (int t = 254; t >= 0; t--) {
		fe8 a, b, c, d, aa, bb, da, cb, e, s;
		__mmask8 bit = _mm512_test_epi64_mask(kw[t >> 6], bcast(1ULL << (t & 63)));

		swap = _kxor_mask8(swap, bit);
		fe8_cswap(swap, &x2, &x3);
		fe8_cswap(swap, &z2, &z3);
		swap = bit;

		fe8_add(&a, &x2, &z2);
		fe8_carry(&a);
		fe8_sub(&b, &x2, &z2);
		fe8_carry(&b);
		fe8_add(&c, &x3, &z3);
		fe8_carry_loose(&c);
		fe8_sub(&d, &x3, &z3);
		fe8_carry_loose(&d);
		fe8_sq(&aa, &a, false);
		fe8_sq(&bb, &b, false);
		fe8_mul(&da, &d, &a, false);
		fe8_mul(&cb, &c, &b, false);
		fe8_add(&s, &da, &cb);
		fe8_carry(&s);
		fe8_sq(&x3, &s, false);
		fe8_sub(&s, &da, &cb);
		fe8_carry(&s);
		fe8_sq(&s, &s, false);
		if (base)
			fe8_mul_small(&z3, &s, ninex2, NULL);
		else
			fe8_mul(&z3, x1, &s, false);
		fe8_mul(&x2, &aa, &bb, false);
		fe8_sub(&e, &aa, &bb);
		fe8_carry_loose(&e);
		fe8_mul_small(&s, &e, a24x2, &aa); /* AA + a24 E */
		fe8_carry_loose(&s);
		fe8_mul(&z2, &e, &s, false);
	}
	fe8_cswap(swap, &x2, &x3);
	fe8_cswap(swap, &z2, &z3);
	fe8_carry(&z2); /* tight, for fe8_invert */
	*x2_out = x2;
	*z2_out = z2;
}

static MB_TARGET __attribute__((noinline)) void ladder_var(fe8 *x2, fe8 *z2, const __m512i kw[4],
							    const fe8 *x1)
{
	ladder(x2, z2, kw, x1, false);
}

static MB_TARGET __attribute__((noinline)) void ladder_base(fe8 *x2, fe8 *z2,
							     const __m512i kw[4], const fe8 *x1)
{
	ladder(x2, z2, kw, x1, true);
}

/* ---- bytes in and out --------------------------------------------------------- */

static uint64_t load64_le(const uint8_t *p)
{
	uint64_t x = 0;

	for (int i = 7; i >= 0; i--)
		x = x << 8 | p[i];
	return x;
}

static void store64_le(uint8_t *p, uint64_t x)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(x >> (8 * i));
}

/*
 * One batch: out[i] = X25519(scalar[i], point[i]) for all 8 lanes (base:
 * point ignored). The arrays are the caller's private copies.
 */
static MB_TARGET void x25519_ifma8(uint8_t out[LANES][KEY], const uint8_t scalar[LANES][KEY],
				   const uint8_t point[LANES][KEY], bool base)
{
	uint64_t w[4][LANES] __attribute__((aligned(64)));
	const __m512i m = bcast(MASK51);
	__m512i kw[4], u[4];
	fe8 x1, x2, z2;

	for (int i = 0; i < LANES; i++) {
		for (int j = 0; j < 4; j++)
			w[j][i] = load64_le(scalar[i] + 8 * j);
		w[0][i] &= ~(uint64_t)7; /* clamp */
		w[3][i] &= ~(1ULL << 63);
		w[3][i] |= 1ULL << 62;
	}
	for (int j = 0; j < 4; j++)
		kw[j] = _mm512_load_si512(w[j]);

	if (base) {
		x1.v[0] = bcast(9);
		for (int i = 1; i < 5; i++)
			x1.v[i] = _mm512_setzero_si512();
	} else {
		for (int i = 0; i < LANES; i++)
			for (int j = 0; j < 4; j++)
				w[j][i] = load64_le(point[i] + 8 * j);
		for (int j = 0; j < 4; j++)
			u[j] = _mm512_load_si512(w[j]);
		/* 51-bit limbs; the top bit (255) falls off limb 4's mask */
		x1.v[0] = _mm512_and_si512(u[0], m);
		x1.v[1] = _mm512_and_si512(
		    _mm512_or_si512(_mm512_srli_epi64(u[0], 51), _mm512_slli_epi64(u[1], 13)), m);
		x1.v[2] = _mm512_and_si512(
		    _mm512_or_si512(_mm512_srli_epi64(u[1], 38), _mm512_slli_epi64(u[2], 26)), m);
		x1.v[3] = _mm512_and_si512(
		    _mm512_or_si512(_mm512_srli_epi64(u[2], 25), _mm512_slli_epi64(u[3], 39)), m);
		x1.v[4] = _mm512_and_si512(_mm512_srli_epi64(u[3], 12), m);
	}

	if (base)
		ladder_base(&x2, &z2, kw, &x1);
	else
		ladder_var(&x2, &z2, kw, &x1);
	fe8_invert(&z2, &z2);
	fe8_mul_out(&x2, &x2, &z2);
	fe8_freeze(&x2);

	/* 51-bit limbs back to 64-bit words */
	u[0] = _mm512_or_si512(x2.v[0], _mm512_slli_epi64(x2.v[1], 51));
	u[1] = _mm512_or_si512(_mm512_srli_epi64(x2.v[1], 13), _mm512_slli_epi64(x2.v[2], 38));
	u[2] = _mm512_or_si512(_mm512_srli_epi64(x2.v[2], 26), _mm512_slli_epi64(x2.v[3], 25));
	u[3] = _mm512_or_si512(_mm512_srli_epi64(x2.v[3], 39), _mm512_slli_epi64(x2.v[4], 12));
	for (int j = 0; j < 4; j++)
		_mm512_store_si512(w[j], u[j]);
	for (int i = 0; i < LANES; i++)
		for (int j = 0; j < 4; j++)
			store64_le(out[i] + 8 * j, w[j][i]);

	sodium_memzero(w, sizeof(w));
	sodium_memzero(kw, sizeof(kw));
	sodium_memzero(u, sizeof(u));
	sodium_memzero(&x2, sizeof(x2));
	sodium_memzero(&z2, sizeof(z2));
}

/*
 * The ladder's secrets also sit in vector and mask registers and in the
 * stack frames of the functions above (spills), below the caller's stack
 * pointer: zero the registers, and the stack those frames used (under 2 KiB
 * here; STACK_SCRUB leaves room).
 */
enum { STACK_SCRUB = 8192 };

static MB_TARGET __attribute__((noinline)) void scrub(void)
{
	uint8_t stack[STACK_SCRUB];

	sodium_memzero(stack, sizeof(stack));
	__asm__ volatile("vzeroall\n\t" /* zmm0..15 whole */
			 "vpxord %%zmm16, %%zmm16, %%zmm16\n\t"
			 "vpxord %%zmm17, %%zmm17, %%zmm17\n\t"
			 "vpxord %%zmm18, %%zmm18, %%zmm18\n\t"
			 "vpxord %%zmm19, %%zmm19, %%zmm19\n\t"
			 "vpxord %%zmm20, %%zmm20, %%zmm20\n\t"
			 "vpxord %%zmm21, %%zmm21, %%zmm21\n\t"
			 "vpxord %%zmm22, %%zmm22, %%zmm22\n\t"
			 "vpxord %%zmm23, %%zmm23, %%zmm23\n\t"
			 "vpxord %%zmm24, %%zmm24, %%zmm24\n\t"
			 "vpxord %%zmm25, %%zmm25, %%zmm25\n\t"
			 "vpxord %%zmm26, %%zmm26, %%zmm26\n\t"
			 "vpxord %%zmm27, %%zmm27, %%zmm27\n\t"
			 "vpxord %%zmm28, %%zmm28, %%zmm28\n\t"
			 "vpxord %%zmm29, %%zmm29, %%zmm29\n\t"
			 "vpxord %%zmm30, %%zmm30, %%zmm30\n\t"
			 "vpxord %%zmm31, %%zmm31, %%zmm31\n\t"
			 "kxorw %%k0, %%k0, %%k0\n\t"
			 "kxorw %%k1, %%k1, %%k1\n\t"
			 "kxorw %%k2, %%k2, %%k2\n\t"
			 "kxorw %%k3, %%k3, %%k3\n\t"
			 "kxorw %%k4, %%k4, %%k4\n\t"
			 "kxorw %%k5, %%k5, %%k5\n\t"
			 "kxorw %%k6, %%k6, %%k6\n\t"
			 "kxorw %%k7, %%k7, %%k7"
			 :
			 :
			 : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
			   "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16",
			   "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24",
			   "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31", "k0", "k1",
			   "k2", "k3", "k4", "k5", "k6", "k7", "memory");
}

/* ---- dispatch ------------------------------------------------------------------ */

enum { IMPL_UNKNOWN, IMPL_IFMA, IMPL_SCALAR };

static int impl_chosen; /* IMPL_*, set once (a race sets it to the same value) */

static int impl(void)
{
	int c = __atomic_load_n(&impl_chosen, __ATOMIC_RELAXED);
	const char *force;

	if (c != IMPL_UNKNOWN)
		return c;
	force = getenv("MG_X25519_SCALAR");
	__builtin_cpu_init();
	if (force && *force && strcmp(force, "0") != 0)
		c = IMPL_SCALAR;
	else if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512ifma") &&
		 __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
		c = IMPL_IFMA;
	else
		c = IMPL_SCALAR;
	__atomic_store_n(&impl_chosen, c, __ATOMIC_RELAXED);
	return c;
}

const char *wg_x25519_mb_impl(void)
{
	return impl() == IMPL_IFMA ? "ifma" : "scalar";
}

/* Writes lane i's result q to out, or zeroes if q is all zero; wipes q. */
static int finish_lane(uint8_t out[KEY], uint8_t q[KEY], int *rc)
{
	int ret = 0;

	if (sodium_is_zero(q, KEY))
		ret = -EINVAL; /* zero already */
	memcpy(out, q, KEY);
	sodium_memzero(q, KEY);
	*rc = ret;
	return ret != 0;
}

/* point NULL: fixed base 9. */
static int x25519_scalar(uint8_t (*out)[KEY], const uint8_t (*scalar)[KEY],
			 const uint8_t (*point)[KEY], int *rc, size_t n)
{
	uint8_t s[KEY], p[KEY], q[KEY];
	int failed = 0;

	for (size_t i = 0; i < n; i++) {
		memcpy(s, scalar[i], KEY);
		if (point)
			memcpy(p, point[i], KEY);
		/* libsodium leaves q unwritten when it refuses a point */
		memset(q, 0, KEY);
		if ((point ? crypto_scalarmult(q, s, p) : crypto_scalarmult_base(q, s)) != 0)
			memset(q, 0, KEY);
		failed += finish_lane(out[i], q, &rc[i]);
	}
	sodium_memzero(s, sizeof(s));
	return failed;
}

static int x25519_ifma(uint8_t (*out)[KEY], const uint8_t (*scalar)[KEY],
		       const uint8_t (*point)[KEY], int *rc, size_t n)
{
	uint8_t s[LANES][KEY], p[LANES][KEY], q[LANES][KEY];
	int failed = 0;

	for (size_t i = 0; i < n; i += LANES) {
		size_t lanes = n - i < LANES ? n - i : LANES;

		/* unused lanes: scalar 0 (clamped to 2^254), point 9 */
		memset(s, 0, sizeof(s));
		memset(p, 0, sizeof(p));
		for (size_t j = 0; j < LANES; j++)
			p[j][0] = 9;
		memcpy(s, scalar + i, lanes * KEY);
		if (point)
			memcpy(p, point + i, lanes * KEY);
		x25519_ifma8(q, (const uint8_t(*)[KEY])s, (const uint8_t(*)[KEY])p, !point);
		scrub();
		for (size_t j = 0; j < lanes; j++)
			failed += finish_lane(out[i + j], q[j], &rc[i + j]);
	}
	sodium_memzero(s, sizeof(s));
	sodium_memzero(q, sizeof(q));
	return failed;
}

int wg_x25519_mb(uint8_t (*out)[32], const uint8_t (*scalar)[32], const uint8_t (*point)[32],
		 int *rc, size_t n)
{
	if (impl() == IMPL_IFMA)
		return x25519_ifma(out, scalar, point, rc, n);
	return x25519_scalar(out, scalar, point, rc, n);
}

int wg_x25519_mb_base(uint8_t (*out)[32], const uint8_t (*scalar)[32], int *rc, size_t n)
{
	if (impl() == IMPL_IFMA)
		return x25519_ifma(out, scalar, NULL, rc, n);
	return x25519_scalar(out, scalar, NULL, rc, n);
}
