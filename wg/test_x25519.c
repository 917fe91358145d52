// SPDX-License-Identifier: MIT
/*
 * x25519.h against RFC 7748's test vectors and against libsodium: every
 * operation, on either library, must give the same bytes for any scalar
 * (clamped or not) and any point (top bit set or not, on the curve or its
 * twist), and refuse low-order points with -EINVAL and an all-zero output.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <sodium.h>

#include "test_util.h"
#include "x25519.h"

#define RANDOM_ROUNDS 2000


/* X25519 through the key object: import scalar, one DH. */
static int key_dh(b32 out, const b32 scalar, const b32 point)
{
	struct wg_x25519_key k;
	b32 pub;
	int ret;

	ret = wg_x25519_key_init(&k, scalar, pub);
	if (!ret)
		ret = wg_x25519_key_dh(&k, out, point);
	wg_x25519_key_clear(&k);
	return ret;
}

static void clamp(b32 s)
{
	s[0] &= 248;
	s[31] = (s[31] & 127) | 64;
}

/* RFC 7748 section 5.2: two vectors, then the iterated one. */
static void rfc7748_scalarmult(void)
{
	const char *const(*vectors)[3] = x25519_rfc7748_vectors;
	b32 k, u, want, out, prev;

	printf("-- RFC 7748 5.2\n");
	for (size_t i = 0; i < sizeof(x25519_rfc7748_vectors) / sizeof(vectors[0]); i++) {
		from_hex(k, vectors[i][0]);
		from_hex(u, vectors[i][1]);
		from_hex(want, vectors[i][2]);
		CHECK(!wg_x25519(out, k, u) && !memcmp(out, want, 32), "vector %zu: wg_x25519",
		      i + 1);
		CHECK(!key_dh(out, k, u) && !memcmp(out, want, 32), "vector %zu: wg_x25519_key_dh",
		      i + 1);
	}

	/* k = u = 9; then k, u = X25519(k, u), k */
	const char *const *iterated = x25519_rfc7748_iterated;
	for (int lib = 0; lib < 2; lib++) {
		bool ok = true;

		memset(k, 0, 32);
		k[0] = 9;
		memcpy(u, k, 32);
		for (int n = 1; n <= 1000 && ok; n++) {
			ok = !(lib ? key_dh(out, k, u) : wg_x25519(out, k, u));
			memcpy(prev, k, 32);
			memcpy(k, out, 32);
			memcpy(u, prev, 32);
			if (n == 1 || n == 1000) {
				from_hex(want, iterated[n == 1000]);
				CHECK(ok && !memcmp(k, want, 32), "%s, %d iteration%s",
				      lib ? "wg_x25519_key_dh" : "wg_x25519", n, n > 1 ? "s" : "");
			}
		}
	}
}

/* RFC 7748 section 6.1: both public keys and the shared secret, both ways. */
static void rfc7748_dh(void)
{
	b32 a, b, a_pub, b_pub, shared, want, out;
	struct wg_x25519_key ka, kb;

	printf("-- RFC 7748 6.1\n");
	from_hex(a, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
	from_hex(a_pub, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
	from_hex(b, "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
	from_hex(b_pub, "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
	from_hex(shared, "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");

	CHECK(!wg_x25519_base(out, a) && !memcmp(out, a_pub, 32), "wg_x25519_base(a)");
	CHECK(!wg_x25519_base(out, b) && !memcmp(out, b_pub, 32), "wg_x25519_base(b)");
	CHECK(!wg_x25519(out, a, b_pub) && !memcmp(out, shared, 32), "wg_x25519(a, B)");
	CHECK(!wg_x25519(out, b, a_pub) && !memcmp(out, shared, 32), "wg_x25519(b, A)");

	CHECK(!wg_x25519_key_init(&ka, a, out) && !memcmp(out, a_pub, 32),
	      "wg_x25519_key_init(a): public key A");
	CHECK(!wg_x25519_key_init(&kb, b, out) && !memcmp(out, b_pub, 32),
	      "wg_x25519_key_init(b): public key B");
	CHECK(!wg_x25519_key_dh(&ka, out, b_pub) && !memcmp(out, shared, 32),
	      "wg_x25519_key_dh(a, B)");
	CHECK(!wg_x25519_key_dh(&kb, out, a_pub) && !memcmp(out, shared, 32),
	      "wg_x25519_key_dh(b, A)");
	/* the same key object again, as the responder uses it twice */
	CHECK(!wg_x25519_key_dh(&ka, want, b_pub) && !memcmp(want, shared, 32),
	      "a key object does a second DH");
	wg_x25519_key_clear(&ka);
	wg_x25519_key_clear(&kb);
	CHECK(!ka.pkey && !ka.derive && !ka.import, "cleared key is zeroed");
	memset(out, 0xaa, 32);
	CHECK(wg_x25519_key_dh(&ka, out, b_pub) == -EINVAL && sodium_is_zero(out, 32),
	      "DH with a cleared key: -EINVAL, output zeroed");
	wg_x25519_key_clear(&ka); /* twice is fine */
}

/* Random inputs: our functions, on both libraries, against libsodium's own. */
static void against_libsodium(void)
{
	unsigned var_bad = 0, base_bad = 0, clamp_bad = 0, zero = 0;
	b32 s, p, clamped, want, out, pub;

	printf("-- random inputs against libsodium (%d rounds)\n", RANDOM_ROUNDS);
	for (int i = 0; i < RANDOM_ROUNDS; i++) {
		struct wg_x25519_key k = {0};
		bool bad = false;

		randombytes_buf(s, 32); /* unclamped: every function clamps */
		randombytes_buf(p, 32); /* any 32 bytes: curve or twist, top bit or not */
		memcpy(clamped, s, 32);
		clamp(clamped);

		if (crypto_scalarmult(want, s, p) != 0) {
			zero++; /* all zero: not from random bytes, in practice */
			continue;
		}
		if (wg_x25519(out, s, p) || memcmp(out, want, 32) || key_dh(out, s, p) ||
		    memcmp(out, want, 32))
			bad = true;
		p[31] ^= 0x80; /* the top bit of a point is ignored */
		if (wg_x25519(out, s, p) || memcmp(out, want, 32) || key_dh(out, s, p) ||
		    memcmp(out, want, 32))
			bad = true;
		if (bad) {
			var_bad++;
			print_hex("scalar", s);
			print_hex("point", p);
		}

		if (crypto_scalarmult_base(want, s) != 0 || wg_x25519_base(out, s) ||
		    memcmp(out, want, 32) || wg_x25519_key_init(&k, s, pub) ||
		    memcmp(pub, want, 32)) {
			base_bad++;
			print_hex("scalar", s);
		}
		wg_x25519_key_clear(&k);

		/* an unclamped scalar acts as its clamped self, on both */
		if (wg_x25519(out, clamped, p) || wg_x25519(pub, s, p) || memcmp(out, pub, 32) ||
		    key_dh(out, clamped, p) || key_dh(pub, s, p) || memcmp(out, pub, 32) ||
		    wg_x25519_base(out, clamped) || wg_x25519_base(pub, s) || memcmp(out, pub, 32))
			clamp_bad++;
	}
	CHECK(!var_bad,
	      "variable base: wg_x25519 and wg_x25519_key_dh == crypto_scalarmult "
	      "(%u differ, %u all-zero skipped)",
	      var_bad, zero);
	CHECK(!base_bad,
	      "fixed base: wg_x25519_base and wg_x25519_key_init's public key == "
	      "crypto_scalarmult_base (%u differ)",
	      base_bad);
	CHECK(!clamp_bad, "scalars are clamped: X25519(s) == X25519(clamp(s)) (%u differ)",
	      clamp_bad);
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
	b32 s, p, want, out;

	printf("-- non-canonical points\n");
	randombytes_buf(s, 32);
	CHECK(!wg_x25519_base(want, s), "X25519(s, 9)");
	for (size_t i = 1; i < sizeof(nine) / sizeof(nine[0]); i++) {
		from_hex(p, nine[i]);
		CHECK(!wg_x25519(out, s, p) && !memcmp(out, want, 32), "wg_x25519: %s is 9",
		      nine[i]);
		CHECK(!key_dh(out, s, p) && !memcmp(out, want, 32), "wg_x25519_key_dh: %s is 9",
		      nine[i]);
	}
}

static void keygen(void)
{
	unsigned bad = 0;
	b32 priv, pub, want;

	printf("-- keygen\n");
	for (int i = 0; i < 100; i++) {
		if (wg_x25519_keygen(priv, pub) || (priv[0] & 7) || (priv[31] & 0xc0) != 0x40 ||
		    crypto_scalarmult_base(want, priv) || memcmp(pub, want, 32))
			bad++;
	}
	CHECK(!bad, "100 key pairs: private key clamped, public key its X25519(k, 9)");
}

static void low_order(void)
{
	const char *const *points = x25519_low_order_points;
	b32 s, p, out;
	struct wg_x25519_key k;

	printf("-- low-order points\n");
	randombytes_buf(s, 32);
	CHECK(!wg_x25519_key_init(&k, s, out), "a key object");
	for (size_t i = 0; i < X25519_LOW_ORDER_POINTS; i++) {
		for (int top = 0; top < 2; top++) {
			from_hex(p, points[i]);
			p[31] |= top ? 0x80 : 0;
			memset(out, 0xaa, 32);
			CHECK(wg_x25519(out, s, p) == -EINVAL && sodium_is_zero(out, 32),
			      "wg_x25519: point %zu%s: -EINVAL, output zeroed", i,
			      top ? " with top bit" : "");
			memset(out, 0xaa, 32);
			CHECK(wg_x25519_key_dh(&k, out, p) == -EINVAL && sodium_is_zero(out, 32),
			      "wg_x25519_key_dh: point %zu%s: -EINVAL, output zeroed", i,
			      top ? " with top bit" : "");
		}
	}
	from_hex(p, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
	CHECK(!wg_x25519_key_dh(&k, out, p) && !sodium_is_zero(out, 32),
	      "the same key object still works after refusing them");
	wg_x25519_key_clear(&k);
}

/* A failure leaves OpenSSL's error queue as it was: no more, no less. */
static void error_queue(void)
{
	b32 s, p = {0}, out;
	unsigned long before;

	printf("-- OpenSSL error queue\n");
	randombytes_buf(s, 32);
	ERR_clear_error();
	CHECK(key_dh(out, s, p) == -EINVAL && ERR_peek_error() == 0,
	      "a refused low-order point leaves no error behind");
	/* an error of the caller's own: a 31-byte key */
	CHECK(!EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, s, 31) &&
		  (before = ERR_peek_last_error()) != 0,
	      "caller's own error queued");
	CHECK(key_dh(out, s, p) == -EINVAL && ERR_peek_last_error() == before,
	      "a refused point keeps the caller's error, adds none");
	ERR_clear_error();
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	rfc7748_scalarmult();
	rfc7748_dh();
	against_libsodium();
	non_canonical();
	keygen();
	low_order();
	error_queue();
	return test_finish("x25519");
}
