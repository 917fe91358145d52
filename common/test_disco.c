/* SPDX-License-Identifier: MIT */
/*
 * Tests for disco.c: round trips of every message type, the sealed bytes
 * checked against a Go-style layout boxed with crypto_box_easy directly (both
 * ways), every truncation, every bit flip of key, nonce and box, wrong keys,
 * magic mutations, tables of payloads built by hand (old pings without the
 * node key, address encodings, CallMeMaybe lengths, types, versions), the
 * seal refusals and the classifier against WireGuard and STUN messages.
 * Every input mg_disco_open sees lives in a heap block of exactly its size,
 * so ASan catches any read past it.
 *
 * "test_disco --write-corpus DIR" writes the fuzz seeds instead (sealed
 * datagrams and bare payloads); the keys are the same as fuzz_disco.c's.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <sodium.h>

#include "disco.h"
#include "stun.h"
#include "test_util.h"


#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define MIN_LEN	  (MG_DISCO_HDR_LEN + MG_DISCO_BOX_MAC + 2) /* 80 */
#define MAX_PLAIN (MG_DISCO_MAX_LEN - MG_DISCO_HDR_LEN - MG_DISCO_BOX_MAC)

/* Fixed keys, as in fuzz_disco.c: a private key of 32 equal bytes. */
static uint8_t sender_priv[32], sender_pub[32], receiver_priv[32], receiver_pub[32];
static uint8_t other_priv[32], other_pub[32];
static const uint8_t nonce1[MG_DISCO_NONCE_LEN] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12,
						   13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24};
static const uint8_t txid1[MG_DISCO_TXID_LEN] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5,
						 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab};
static uint8_t node_key1[32];

static void keys_init(void)
{
	test_keypair(sender_priv, sender_pub, 0x41);
	test_keypair(receiver_priv, receiver_pub, 0x42);
	test_keypair(other_priv, other_pub, 0x4f);
	for (int i = 0; i < 32; i++)
		node_key1[i] = (uint8_t)(0xc0 + i);
}

static enum mg_disco_err open_exact(const uint8_t *p, size_t n, const uint8_t priv[32],
				    struct mg_disco_msg *m)
{
	uint8_t *q = test_exact_copy(p, n);
	enum mg_disco_err e = mg_disco_open(q, n, priv, m);

	free(q);
	return e;
}

static bool is_exact(const uint8_t *p, size_t n)
{
	uint8_t *q = test_exact_copy(p, n);
	bool r = mg_disco_is(q, n);

	free(q);
	return r;
}

/* Go's layout by hand: magic, sender key, nonce, crypto_box_easy(payload). */
static size_t go_datagram(uint8_t *out, const uint8_t *payload, size_t plen, const uint8_t spub[32],
			  const uint8_t spriv[32], const uint8_t rpub[32])
{
	memcpy(out, "TS\xf0\x9f\x92\xac", 6);
	memcpy(out + 6, spub, 32);
	memcpy(out + 38, nonce1, 24);
	if (crypto_box_easy(out + 62, payload, plen, nonce1, rpub, spriv))
		abort();
	return 62 + 16 + plen;
}

static size_t go_sealed(uint8_t *out, const uint8_t *payload, size_t plen)
{
	return go_datagram(out, payload, plen, sender_pub, sender_priv, receiver_pub);
}

static struct mg_sockaddr v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port)
{
	return (struct mg_sockaddr){.family = AF_INET, .port = port, .addr = {a, b, c, d}};
}

/* 2001:db8::x */
static struct mg_sockaddr v6(uint8_t x, uint16_t port)
{
	return (struct mg_sockaddr){
	    .family = AF_INET6, .port = port, .addr = {0x20, 0x01, 0x0d, 0xb8, [15] = x}};
}

static bool sa_eq(const struct mg_sockaddr *a, const struct mg_sockaddr *b)
{
	return a->family == b->family && a->port == b->port && a->pad == b->pad &&
	       !memcmp(a->addr, b->addr, 16);
}

/* The fields a parse gives back (pad is never parsed: 0). */
static bool msg_eq(const struct mg_disco_msg *a, const struct mg_disco_msg *b)
{
	if (a->type != b->type || a->version != b->version || a->pad != b->pad ||
	    a->has_node_key != b->has_node_key || a->n_eps != b->n_eps ||
	    memcmp(a->txid, b->txid, sizeof(a->txid)) ||
	    memcmp(a->node_key, b->node_key, sizeof(a->node_key)) || !sa_eq(&a->src, &b->src))
		return false;
	for (unsigned i = 0; i < a->n_eps && i < MG_DISCO_MAX_EPS; i++)
		if (!sa_eq(&a->eps[i], &b->eps[i]))
			return false;
	return true;
}

/* Messages sealed by the codec, for round trips, truncations and the corpus. */
enum { M_PING, M_PING_PAD, M_PING_MAX, M_PONG_V4, M_PONG_V6, M_CMM_0, M_CMM_1, M_CMM_16, M_COUNT };

static const char *const msg_names[M_COUNT] = {
    [M_PING] = "ping",
    [M_PING_PAD] = "ping-pad-1000",
    [M_PING_MAX] = "ping-pad-1276",
    [M_PONG_V4] = "pong-v4",
    [M_PONG_V6] = "pong-v6",
    [M_CMM_0] = "call-me-maybe-0",
    [M_CMM_1] = "call-me-maybe-1",
    [M_CMM_16] = "call-me-maybe-16",
};

static const size_t msg_lens[M_COUNT] = {
    [M_PING] = 124,    [M_PING_PAD] = 1124, [M_PING_MAX] = 1400, [M_PONG_V4] = 110,
    [M_PONG_V6] = 110, [M_CMM_0] = 80,	    [M_CMM_1] = 98,	 [M_CMM_16] = 368,
};

static struct mg_disco_msg make_msg(int which)
{
	struct mg_disco_msg m = {0};

	switch (which) {
	case M_PING:
	case M_PING_PAD:
	case M_PING_MAX:
		m.type = MG_DISCO_PING;
		memcpy(m.txid, txid1, sizeof(m.txid));
		m.has_node_key = true;
		memcpy(m.node_key, node_key1, 32);
		m.pad = which == M_PING ? 0 : which == M_PING_PAD ? 1000 : 1276;
		break;
	case M_PONG_V4:
	case M_PONG_V6:
		m.type = MG_DISCO_PONG;
		memcpy(m.txid, txid1, sizeof(m.txid));
		m.src = which == M_PONG_V4 ? v4(192, 0, 2, 1, 41641) : v6(1, 12345);
		break;
	case M_CMM_0:
		m.type = MG_DISCO_CALL_ME_MAYBE;
		break;
	case M_CMM_1:
		m.type = MG_DISCO_CALL_ME_MAYBE;
		m.eps[0] = v4(203, 0, 113, 7, 41641);
		m.n_eps = 1;
		break;
	case M_CMM_16:
		m.type = MG_DISCO_CALL_ME_MAYBE;
		for (unsigned i = 0; i < MG_DISCO_MAX_EPS; i++)
			m.eps[i] = i % 2 ? v6((uint8_t)i, (uint16_t)(2000 + i))
					 : v4(198, 51, 100, (uint8_t)i, (uint16_t)(1000 + i));
		m.n_eps = MG_DISCO_MAX_EPS;
		break;
	}
	return m;
}

static size_t seal(uint8_t *out, size_t cap, const struct mg_disco_msg *m)
{
	return mg_disco_seal(out, cap, sender_pub, sender_priv, receiver_pub, nonce1, m);
}

static size_t seal_msg(int which, uint8_t *out, size_t cap)
{
	struct mg_disco_msg m = make_msg(which);

	return seal(out, cap, &m);
}

static void test_round_trip(void)
{
	uint8_t out[MG_DISCO_MAX_LEN];

	for (int i = 0; i < M_COUNT; i++) {
		struct mg_disco_msg want = make_msg(i), got;
		size_t n = seal(out, sizeof(out), &want);
		enum mg_disco_err e;

		memset(&got, 0xee, sizeof(got));
		e = open_exact(out, n, receiver_priv, &got);
		want.pad = 0;
		CHECK(n == msg_lens[i] && is_exact(out, n) && e == MG_DISCO_OK &&
			  msg_eq(&got, &want),
		      "%s: %zu bytes, round trip: %s", msg_names[i], n, mg_disco_strerror(e));
	}
}

/* Payloads in Go's layout (disco.go AppendMarshal), written out by hand. */
static const uint8_t go_ping[] = {
    0x01, 0x00,								    /* type, version */
    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, /* txid */
    0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xcb, /* node key */
    0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7,
    0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf,
};
static const uint8_t go_pong_v4[] = {
    0x02, 0x00,								    /* type, version */
    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, /* txid */
    0,	  0,	0,    0,    0,	  0,	0,    0,    0,	  0,	0xff, 0xff, /* ::ffff: */
    192,  0,	2,    1,						    /* 192.0.2.1 */
    0xa2, 0xa9,								    /* 41641 */
};
static const uint8_t go_pong_v6[] = {
    0x02, 0x00,								    /* type, version */
    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, /* txid */
    0x20, 0x01, 0x0d, 0xb8, 0,	  0,	0,    0,    0,	  0,	0,    0,    /* 2001:db8:: */
    0,	  0,	0,    1,						    /* ::1 */
    0x30, 0x39,								    /* 12345 */
};
static const uint8_t go_cmm_1[] = {
    0x03, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, 7, 0xa2, 0xa9,
};
static const uint8_t go_cmm_0[] = {0x03, 0x00};

static const struct {
	int which;
	const uint8_t *payload;
	size_t len;
} go_cases[] = {
    {M_PING, go_ping, sizeof(go_ping)},		 {M_PONG_V4, go_pong_v4, sizeof(go_pong_v4)},
    {M_PONG_V6, go_pong_v6, sizeof(go_pong_v6)}, {M_CMM_0, go_cmm_0, sizeof(go_cmm_0)},
    {M_CMM_1, go_cmm_1, sizeof(go_cmm_1)},
};

/* Sealed bytes are crypto_box_easy's of the Go layout, both ways. */
static void test_go_layout(void)
{
	uint8_t out[MG_DISCO_MAX_LEN], hand[MG_DISCO_MAX_LEN], plain[MG_DISCO_MAX_LEN];

	for (size_t i = 0; i < ARRAY_SIZE(go_cases); i++) {
		int w = go_cases[i].which;
		struct mg_disco_msg want = make_msg(w), got;
		size_t n = seal_msg(w, out, sizeof(out));
		size_t h = go_sealed(hand, go_cases[i].payload, go_cases[i].len);
		bool opens = crypto_box_open_easy(plain, out + 62, n - 62, out + 38, out + 6,
						  receiver_priv) == 0;
		enum mg_disco_err e;

		CHECK(!memcmp(out, "TS\xf0\x9f\x92\xac", 6) && !memcmp(out + 6, sender_pub, 32) &&
			  !memcmp(out + 38, nonce1, 24) && opens && n - 78 == go_cases[i].len &&
			  !memcmp(plain, go_cases[i].payload, go_cases[i].len),
		      "%s: magic, key, nonce, crypto_box_easy of the Go layout", msg_names[w]);
		e = open_exact(hand, h, receiver_priv, &got);
		CHECK(e == MG_DISCO_OK && msg_eq(&got, &want) && h == n && !memcmp(hand, out, n),
		      "%s: Go layout boxed by hand opens, same bytes as the seal's", msg_names[w]);
	}
}

/* Pings of every body length, built by hand: older senders stop after the txid. */
static void test_ping_bodies(void)
{
	uint8_t payload[2 + 80], dg[MG_DISCO_MAX_LEN];
	size_t bad = 0;

	payload[0] = MG_DISCO_PING;
	payload[1] = 0;
	memcpy(payload + 2, txid1, 12);
	memcpy(payload + 14, node_key1, 32);
	memset(payload + 46, 0, sizeof(payload) - 46);
	for (size_t blen = 0; blen <= 80; blen++) {
		size_t n = go_sealed(dg, payload, 2 + blen);
		struct mg_disco_msg m;
		enum mg_disco_err e = open_exact(dg, n, receiver_priv, &m);

		if (blen < 12)
			bad += e != MG_DISCO_ERR_SHORT ||
			       !sodium_is_zero((const unsigned char *)&m, sizeof(m));
		else if (blen < 44)
			bad += e != MG_DISCO_OK || m.type != MG_DISCO_PING || m.has_node_key ||
			       !sodium_is_zero((const unsigned char *)m.node_key, 32) ||
			       memcmp(m.txid, txid1, 12) || m.pad;
		else
			bad += e != MG_DISCO_OK || !m.has_node_key ||
			       memcmp(m.node_key, node_key1, 32) || memcmp(m.txid, txid1, 12) ||
			       m.pad;
	}
	CHECK(bad == 0, "ping bodies 0..80: short below 12, no node key below 44, key from 44");

	/* The old-style ping, exactly: type, version, txid. */
	{
		size_t n = go_sealed(dg, go_ping, 14);
		struct mg_disco_msg m;
		enum mg_disco_err e = open_exact(dg, n, receiver_priv, &m);

		CHECK(n == 92 && e == MG_DISCO_OK && m.type == MG_DISCO_PING && !m.has_node_key &&
			  !memcmp(m.txid, txid1, 12),
		      "12-byte ping body (old sender): opens without a node key");
	}
	/* Padding need not be zero. */
	memset(payload + 46, 0x5a, sizeof(payload) - 46);
	{
		size_t n = go_sealed(dg, payload, sizeof(payload));
		struct mg_disco_msg m;
		enum mg_disco_err e = open_exact(dg, n, receiver_priv, &m);

		CHECK(e == MG_DISCO_OK && m.has_node_key && m.pad == 0,
		      "ping with 36 bytes of nonzero padding: opens, pad 0");
	}
}

/* Every proper prefix: SHORT below header + MAC + 2, BOX above; *m zeroed. */
static void test_truncations(void)
{
	uint8_t out[MG_DISCO_MAX_LEN];

	for (int i = 0; i < M_COUNT; i++) {
		size_t len = seal_msg(i, out, sizeof(out)), bad = 0;

		for (size_t n = 0; n < len; n++) {
			struct mg_disco_msg m;
			enum mg_disco_err e;

			memset(&m, 0xee, sizeof(m));
			e = open_exact(out, n, receiver_priv, &m);
			bad += e != (n < MIN_LEN ? MG_DISCO_ERR_SHORT : MG_DISCO_ERR_BOX) ||
			       !sodium_is_zero((const unsigned char *)&m, sizeof(m)) ||
			       is_exact(out, n) != (n >= 78);
		}
		CHECK(len > 0 && bad == 0,
		      "%s: %zu truncations refused (short below %d, box above)", msg_names[i], len,
		      MIN_LEN);
	}
}

/* Flip every bit of sender key, nonce and box: the box must not open. */
static void test_box_mutations(void)
{
	static const int which[] = {M_PING, M_PONG_V4, M_CMM_1};
	uint8_t out[MG_DISCO_MAX_LEN];

	for (size_t w = 0; w < ARRAY_SIZE(which); w++) {
		size_t n = seal_msg(which[w], out, sizeof(out)), bad = 0, flips = 0;
		struct mg_disco_msg want = make_msg(which[w]);

		for (size_t i = MG_DISCO_MAGIC_LEN; i < n; i++) {
			for (int bit = 0; bit < 8; bit++) {
				struct mg_disco_msg m;
				enum mg_disco_err e;

				out[i] ^= (uint8_t)(1 << bit);
				memset(&m, 0xee, sizeof(m));
				e = open_exact(out, n, receiver_priv, &m);
				out[i] ^= (uint8_t)(1 << bit);
				/* X25519 ignores bit 255 of a public key (RFC 7748), as
				 * Go does: the header's key differs, the secret not. */
				if (i == MG_DISCO_MAGIC_LEN + 31 && bit == 7)
					bad += e != MG_DISCO_OK || !msg_eq(&m, &want);
				else
					bad +=
					    e != MG_DISCO_ERR_BOX ||
					    !sodium_is_zero((const unsigned char *)&m, sizeof(m));
				flips++;
			}
		}
		CHECK(bad == 0, "%s: %zu bit flips of key, nonce, box refused (but key bit 255)",
		      msg_names[which[w]], flips);
	}
}

static void test_wrong_keys(void)
{
	static const uint8_t zero[32];
	uint8_t out[MG_DISCO_MAX_LEN];
	size_t n = seal_msg(M_PONG_V4, out, sizeof(out));
	struct mg_disco_msg m;
	enum mg_disco_err e;

	e = open_exact(out, n, other_priv, &m);
	CHECK(e == MG_DISCO_ERR_BOX && sodium_is_zero((const unsigned char *)&m, sizeof(m)),
	      "opened by another receiver: %s", mg_disco_strerror(e));
	e = open_exact(out, n, sender_priv, &m);
	CHECK(e == MG_DISCO_ERR_BOX, "opened by its sender: %s", mg_disco_strerror(e));
	memcpy(out + 6, other_pub, 32);
	e = open_exact(out, n, receiver_priv, &m);
	CHECK(e == MG_DISCO_ERR_BOX, "header claiming another sender: %s", mg_disco_strerror(e));
	memcpy(out + 6, zero, 32);
	e = open_exact(out, n, receiver_priv, &m);
	CHECK(e == MG_DISCO_ERR_BOX, "header claiming the all-zero key: %s", mg_disco_strerror(e));

	/* Sealed to another receiver by hand. */
	n = go_datagram(out, go_pong_v4, sizeof(go_pong_v4), sender_pub, sender_priv, other_pub);
	e = open_exact(out, n, receiver_priv, &m);
	CHECK(e == MG_DISCO_ERR_BOX, "sealed to another receiver: %s", mg_disco_strerror(e));
	e = open_exact(out, n, other_priv, &m);
	CHECK(e == MG_DISCO_OK && m.type == MG_DISCO_PONG, "which opens it: %s",
	      mg_disco_strerror(e));
}

static void test_magic(void)
{
	static const uint8_t xors[] = {0x01, 0x20, 0x80, 0xff};
	uint8_t out[MG_DISCO_MAX_LEN];
	size_t n = seal_msg(M_PING, out, sizeof(out)), bad = 0, cases = 0;

	for (size_t i = 0; i < MG_DISCO_MAGIC_LEN; i++) {
		for (size_t x = 0; x < ARRAY_SIZE(xors); x++) {
			struct mg_disco_msg m;
			enum mg_disco_err e;

			out[i] ^= xors[x];
			memset(&m, 0xee, sizeof(m));
			e = open_exact(out, n, receiver_priv, &m);
			bad += e != MG_DISCO_ERR_MAGIC ||
			       !sodium_is_zero((const unsigned char *)&m, sizeof(m)) ||
			       is_exact(out, n);
			/* A prefix of a wrong magic is not a disco message either. */
			bad += open_exact(out, i + 1, receiver_priv, &m) != MG_DISCO_ERR_MAGIC;
			out[i] ^= xors[x];
			cases++;
		}
	}
	CHECK(bad == 0, "%zu magic mutations: magic, not disco", cases);

	/* "TS💬" of Tailscale's older spelling, and the DERP magic. */
	memcpy(out, "TS\xf0\x9f\x92\xad", 6);
	CHECK(open_exact(out, n, receiver_priv, &(struct mg_disco_msg){0}) == MG_DISCO_ERR_MAGIC,
	      "magic with its last byte off: magic");
	memcpy(out, "DERP\xf0\x9f", 6);
	CHECK(open_exact(out, n, receiver_priv, &(struct mg_disco_msg){0}) == MG_DISCO_ERR_MAGIC,
	      "DERP magic: magic");
}

static void test_sizes(void)
{
	static uint8_t payload[MAX_PLAIN + 2], dg[MG_DISCO_MAX_LEN + 64];
	struct mg_disco_msg m;
	enum mg_disco_err e;
	size_t n;

	payload[0] = MG_DISCO_PING;
	memcpy(payload + 2, txid1, 12);
	memcpy(payload + 14, node_key1, 32);
	n = go_sealed(dg, payload, MAX_PLAIN);
	e = open_exact(dg, n, receiver_priv, &m);
	CHECK(n == MG_DISCO_MAX_LEN && e == MG_DISCO_OK && m.has_node_key,
	      "ping of %zu bytes (the limit): opens", n);
	n = go_sealed(dg, payload, MAX_PLAIN + 1);
	memset(&m, 0xee, sizeof(m));
	e = open_exact(dg, n, receiver_priv, &m);
	CHECK(n == MG_DISCO_MAX_LEN + 1 && e == MG_DISCO_ERR_TOO_BIG &&
		  sodium_is_zero((const unsigned char *)&m, sizeof(m)),
	      "ping of %zu bytes: %s", n, mg_disco_strerror(e));
	memset(dg, 0x01, n);
	e = open_exact(dg, n, receiver_priv, &m);
	CHECK(e == MG_DISCO_ERR_TOO_BIG, "%zu bytes of garbage: too big before magic", n);
	e = open_exact(dg, 79, receiver_priv, &m);
	CHECK(e == MG_DISCO_ERR_MAGIC, "79 bytes of garbage: magic before short");
	e = open_exact(dg, 0, receiver_priv, &m);
	CHECK(e == MG_DISCO_ERR_SHORT, "0 bytes: short");

	/* A box of an empty or 1-byte payload: short before the box is tried. */
	for (size_t plen = 0; plen < 2; plen++) {
		n = go_sealed(dg, go_ping, plen);
		e = open_exact(dg, n, receiver_priv, &m);
		CHECK(e == MG_DISCO_ERR_SHORT && is_exact(dg, n), "payload of %zu bytes: %s", plen,
		      mg_disco_strerror(e));
	}
}

/* Endpoints as 18 wire bytes, in a Pong and in a one-entry CallMeMaybe. */
static const struct {
	uint8_t ep[MG_DISCO_EP_LEN];
	enum mg_disco_err want;
	uint8_t family;
	uint8_t addr[16];
	uint16_t port;
} ep_cases[] = {
    /* 1: ::ffff:192.0.2.1 */
    {{[10] = 0xff, 0xff, 192, 0, 2, 1, 0xa2, 0xa9}, MG_DISCO_OK, AF_INET, {192, 0, 2, 1}, 41641},
    /* 2: ::ffff:0.0.0.0 */
    {{[10] = 0xff, 0xff, 0, 0, 0, 0, 0, 1}, MG_DISCO_OK, AF_INET, {0}, 1},
    /* 3: ::ffff:255.255.255.255 */
    {{[10] = 0xff, 0xff, 255, 255, 255, 255, 0xff, 0xff},
     MG_DISCO_OK,
     AF_INET,
     {255, 255, 255, 255},
     65535},
    /* 4: 2001:db8::1 */
    {{0x20, 0x01, 0x0d, 0xb8, [15] = 1, 0x30, 0x39},
     MG_DISCO_OK,
     AF_INET6,
     {0x20, 0x01, 0x0d, 0xb8, [15] = 1},
     12345},
    /* 5: ::1 */
    {{[15] = 1, 0x01, 0x00}, MG_DISCO_OK, AF_INET6, {[15] = 1}, 256},
    /* 6: :: */
    {{[17] = 7}, MG_DISCO_OK, AF_INET6, {0}, 7},
    /* 7: ::fffe:c000:201, not mapped */
    {{[10] = 0xff, 0xfe, 192, 0, 2, 1, 0, 80},
     MG_DISCO_OK,
     AF_INET6,
     {[10] = 0xff, 0xfe, 192, 0, 2, 1},
     80},
    /* 8: ::1:ffff:c000:201, not mapped */
    {{[9] = 1, 0xff, 0xff, 192, 0, 2, 1, 0, 80},
     MG_DISCO_OK,
     AF_INET6,
     {[9] = 1, 0xff, 0xff, 192, 0, 2, 1},
     80},
    /* 9: ::c000:201 (IPv4-compatible, not mapped) */
    {{[12] = 192, 0, 2, 1, 0, 80}, MG_DISCO_OK, AF_INET6, {[12] = 192, 0, 2, 1}, 80},
    /* 10: ff02::1 */
    {{0xff, 0x02, [15] = 1, 0x12, 0x34}, MG_DISCO_OK, AF_INET6, {0xff, 0x02, [15] = 1}, 0x1234},
    /* 11: ::ffff:192.0.2.1 port 0 */
    {{[10] = 0xff, 0xff, 192, 0, 2, 1, 0, 0}, MG_DISCO_ERR_ADDRESS, 0, {0}, 0},
    /* 12: 2001:db8::1 port 0 */
    {{0x20, 0x01, 0x0d, 0xb8, [15] = 1, 0, 0}, MG_DISCO_ERR_ADDRESS, 0, {0}, 0},
    /* 13: all zero */
    {{0}, MG_DISCO_ERR_ADDRESS, 0, {0}, 0},
};

static void test_endpoints(void)
{
	uint8_t payload[64], dg[256];

	for (size_t i = 0; i < ARRAY_SIZE(ep_cases); i++) {
		struct mg_sockaddr want = {.family = ep_cases[i].family, .port = ep_cases[i].port};
		struct mg_disco_msg m;
		enum mg_disco_err e1, e2;
		size_t n;
		bool ok1, ok2;

		memcpy(want.addr, ep_cases[i].addr, 16);
		payload[0] = MG_DISCO_PONG;
		payload[1] = 0;
		memcpy(payload + 2, txid1, 12);
		memcpy(payload + 14, ep_cases[i].ep, 18);
		n = go_sealed(dg, payload, 32);
		memset(&m, 0xee, sizeof(m));
		e1 = open_exact(dg, n, receiver_priv, &m);
		ok1 = e1 == ep_cases[i].want &&
		      (e1 == MG_DISCO_OK ? sa_eq(&m.src, &want) && !memcmp(m.txid, txid1, 12)
					 : sodium_is_zero((const unsigned char *)&m, sizeof(m)));

		payload[0] = MG_DISCO_CALL_ME_MAYBE;
		memcpy(payload + 2, ep_cases[i].ep, 18);
		n = go_sealed(dg, payload, 20);
		memset(&m, 0xee, sizeof(m));
		e2 = open_exact(dg, n, receiver_priv, &m);
		ok2 = e2 == ep_cases[i].want &&
		      (e2 == MG_DISCO_OK ? m.n_eps == 1 && sa_eq(&m.eps[0], &want)
					 : sodium_is_zero((const unsigned char *)&m, sizeof(m)));
		CHECK(ok1 && ok2, "case %zu: endpoint in pong: %s, in call-me-maybe: %s", i + 1,
		      mg_disco_strerror(e1), mg_disco_strerror(e2));
	}
}

/* Pong bodies of every length up to 40: short below 30, extra bytes allowed. */
static void test_pong_bodies(void)
{
	uint8_t payload[2 + 40], dg[256];
	size_t bad = 0;
	struct mg_disco_msg want = make_msg(M_PONG_V4);

	memcpy(payload, go_pong_v4, sizeof(go_pong_v4));
	memset(payload + sizeof(go_pong_v4), 0x77, sizeof(payload) - sizeof(go_pong_v4));
	for (size_t blen = 0; blen <= 40; blen++) {
		size_t n = go_sealed(dg, payload, 2 + blen);
		struct mg_disco_msg m;
		enum mg_disco_err e = open_exact(dg, n, receiver_priv, &m);

		if (blen < 30)
			bad += e != MG_DISCO_ERR_SHORT ||
			       !sodium_is_zero((const unsigned char *)&m, sizeof(m));
		else
			bad += e != MG_DISCO_OK || !msg_eq(&m, &want);
	}
	CHECK(bad == 0, "pong bodies 0..40: short below 30, opens from 30 (extra bytes ignored)");
}

/* A CallMeMaybe payload of n entries, 10.0.i.1 port 0x8000 + i + 1, but
 * entry bad_at (if < n) with port 0. Returns its length. */
static size_t cmm_payload(uint8_t *payload, size_t n, size_t bad_at)
{
	payload[0] = MG_DISCO_CALL_ME_MAYBE;
	payload[1] = 0;
	for (size_t i = 0; i < n; i++) {
		uint8_t *ep = payload + 2 + i * 18;

		memset(ep, 0, 10);
		ep[10] = ep[11] = 0xff;
		ep[12] = 10;
		ep[13] = (uint8_t)(i >> 8);
		ep[14] = (uint8_t)i;
		ep[15] = 1;
		ep[16] = i == bad_at ? 0 : 0x80;
		ep[17] = i == bad_at ? 0 : (uint8_t)(i + 1);
	}
	return 2 + n * 18;
}

static void test_call_me_maybe(void)
{
	static const struct {
		size_t blen; /* bytes of body, entries first, then zeros */
		enum mg_disco_err want;
		unsigned n_eps;
	} lens[] = {
	    {0, MG_DISCO_OK, 0},
	    {1, MG_DISCO_ERR_ADDRESS, 0},
	    {17, MG_DISCO_ERR_ADDRESS, 0},
	    {18, MG_DISCO_OK, 1},
	    {19, MG_DISCO_ERR_ADDRESS, 0},
	    {35, MG_DISCO_ERR_ADDRESS, 0},
	    {36, MG_DISCO_OK, 2},
	    {37, MG_DISCO_ERR_ADDRESS, 0},
	    {16 * 18, MG_DISCO_OK, 16},
	    {16 * 18 + 1, MG_DISCO_ERR_ADDRESS, 0},
	    {17 * 18, MG_DISCO_OK, 16},
	    {73 * 18, MG_DISCO_OK, 16},
	    {72 * 18 + 17, MG_DISCO_ERR_ADDRESS, 0},
	};
	static uint8_t payload[2 + 80 * 18], dg[2 * MG_DISCO_MAX_LEN];

	for (size_t i = 0; i < ARRAY_SIZE(lens); i++) {
		size_t blen = lens[i].blen, n;
		struct mg_disco_msg m;
		enum mg_disco_err e;
		bool ok;

		memset(payload, 0, sizeof(payload));
		cmm_payload(payload, blen / 18, SIZE_MAX);
		n = go_sealed(dg, payload, 2 + blen);
		memset(&m, 0xee, sizeof(m));
		e = open_exact(dg, n, receiver_priv, &m);
		ok = e == lens[i].want && m.n_eps == lens[i].n_eps;
		if (e != MG_DISCO_OK)
			ok = ok && sodium_is_zero((const unsigned char *)&m, sizeof(m));
		for (unsigned k = 0; ok && k < m.n_eps; k++)
			ok = m.eps[k].family == AF_INET && m.eps[k].port == 0x8000 + k + 1 &&
			     m.eps[k].addr[0] == 10 && m.eps[k].addr[2] == k &&
			     m.eps[k].addr[3] == 1;
		CHECK(ok, "call-me-maybe body of %zu bytes (%zu bytes in all): %s, %u endpoints",
		      blen, n, mg_disco_strerror(e), m.n_eps);
	}

	/* A port 0 among the kept entries is refused, past them it is ignored. */
	static const struct {
		size_t n, bad_at;
		enum mg_disco_err want;
	} zeros[] = {
	    {1, 0, MG_DISCO_ERR_ADDRESS},   {2, 1, MG_DISCO_ERR_ADDRESS},
	    {16, 15, MG_DISCO_ERR_ADDRESS}, {17, 15, MG_DISCO_ERR_ADDRESS},
	    {17, 16, MG_DISCO_OK},	    {73, 72, MG_DISCO_OK},
	};
	for (size_t i = 0; i < ARRAY_SIZE(zeros); i++) {
		size_t n =
		    go_sealed(dg, payload, cmm_payload(payload, zeros[i].n, zeros[i].bad_at));
		struct mg_disco_msg m;
		enum mg_disco_err e = open_exact(dg, n, receiver_priv, &m);

		CHECK(e == zeros[i].want, "call-me-maybe of %zu entries, port 0 at %zu: %s",
		      zeros[i].n, zeros[i].bad_at, mg_disco_strerror(e));
	}
}

static void test_types_versions(void)
{
	static const uint8_t bad_types[] = {0x00, 0x04, 0x07, 0x54, 0x80, 0xff};
	static const uint8_t versions[] = {1, 5, 0xff};
	uint8_t payload[64], dg[256], out[MG_DISCO_MAX_LEN];

	for (size_t i = 0; i < ARRAY_SIZE(bad_types); i++) {
		struct mg_disco_msg m;
		enum mg_disco_err e;
		size_t n;

		memcpy(payload, go_pong_v4, sizeof(go_pong_v4));
		payload[0] = bad_types[i];
		n = go_sealed(dg, payload, sizeof(go_pong_v4));
		memset(&m, 0xee, sizeof(m));
		e = open_exact(dg, n, receiver_priv, &m);
		CHECK(e == MG_DISCO_ERR_TYPE &&
			  sodium_is_zero((const unsigned char *)&m, sizeof(m)),
		      "type %u: %s", bad_types[i], mg_disco_strerror(e));
		n = go_sealed(dg, payload, 2);
		e = open_exact(dg, n, receiver_priv, &m);
		CHECK(e == MG_DISCO_ERR_TYPE, "type %u without a body: %s", bad_types[i],
		      mg_disco_strerror(e));
	}

	for (int w = 0; w < M_COUNT; w++) {
		for (size_t v = 0; v < ARRAY_SIZE(versions); v++) {
			struct mg_disco_msg want = make_msg(w), got;
			size_t n;
			enum mg_disco_err e;

			want.version = versions[v];
			n = seal(out, sizeof(out), &want);
			e = open_exact(out, n, receiver_priv, &got);
			want.pad = 0;
			CHECK(n == msg_lens[w] && e == MG_DISCO_OK && msg_eq(&got, &want) &&
				  got.version == versions[v],
			      "%s, version %u: opens, version reported", msg_names[w], versions[v]);
		}
	}

	/* The version byte on the wire, by hand. */
	memcpy(payload, go_cmm_1, sizeof(go_cmm_1));
	payload[1] = 5;
	{
		size_t n = go_sealed(dg, payload, sizeof(go_cmm_1));
		struct mg_disco_msg m;
		enum mg_disco_err e = open_exact(dg, n, receiver_priv, &m);

		CHECK(e == MG_DISCO_OK && m.version == 5 && m.n_eps == 1,
		      "call-me-maybe version 5 by hand: opens, version 5");
	}
}

/* Every seal refuses a cap one short and fills a cap exactly its size. */
static void test_seal_caps(void)
{
	uint8_t out[MG_DISCO_MAX_LEN + 16];

	for (int i = 0; i < M_COUNT; i++) {
		size_t len = seal_msg(i, out, sizeof(out)), bad = 0;

		for (size_t cap = 0; cap < len; cap++)
			bad += seal_msg(i, out, cap) != 0;
		CHECK(len == msg_lens[i] && bad == 0 && seal_msg(i, out, len) == len,
		      "%s: caps 0..%zu refused, cap %zu fits", msg_names[i], len - 1, len);
	}
}

static void test_seal_refusals(void)
{
	static const uint8_t zero[32];
	static const uint8_t bad_families[] = {0, AF_UNIX, AF_INET + AF_INET6, 0xff};
	static uint8_t out[2 * MG_DISCO_MAX_LEN];
	struct mg_disco_msg m;
	size_t n;

	m = make_msg(M_PING);
	m.pad = 1276;
	CHECK(seal(out, sizeof(out), &m) == MG_DISCO_MAX_LEN, "ping, pad 1276: %u bytes",
	      MG_DISCO_MAX_LEN);
	m.pad = 1277;
	CHECK(seal(out, sizeof(out), &m) == 0, "ping, pad 1277 (over the limit): 0");
	m.pad = UINT16_MAX;
	CHECK(seal(out, sizeof(out), &m) == 0, "ping, pad 65535: 0");

	for (size_t i = 0; i < ARRAY_SIZE(bad_families); i++) {
		m = make_msg(M_PONG_V4);
		m.src.family = bad_families[i];
		n = seal(out, sizeof(out), &m);
		CHECK(n == 0, "pong from family %u: 0", bad_families[i]);
		m = make_msg(M_CMM_16);
		m.eps[i * 5].family = bad_families[i];
		n = seal(out, sizeof(out), &m);
		CHECK(n == 0, "call-me-maybe with family %u at %zu: 0", bad_families[i], i * 5);
	}
	m = make_msg(M_PONG_V4);
	m.src.port = 0;
	CHECK(seal(out, sizeof(out), &m) == 0, "pong v4 port 0: 0");
	m = make_msg(M_PONG_V6);
	m.src.port = 0;
	CHECK(seal(out, sizeof(out), &m) == 0, "pong v6 port 0: 0");
	m = make_msg(M_CMM_16);
	m.eps[15].port = 0;
	CHECK(seal(out, sizeof(out), &m) == 0, "call-me-maybe port 0 at 15: 0");
	m = make_msg(M_CMM_16);
	m.n_eps = MG_DISCO_MAX_EPS + 1;
	m.eps[15].port = 1; /* eps[16] does not exist: n_eps alone refuses */
	CHECK(seal(out, sizeof(out), &m) == 0, "call-me-maybe of %d endpoints: 0",
	      MG_DISCO_MAX_EPS + 1);
	m.n_eps = UINT_MAX;
	CHECK(seal(out, sizeof(out), &m) == 0, "call-me-maybe of UINT_MAX endpoints: 0");
	m = make_msg(M_CMM_16);
	m.eps[3].family = 0;
	m.n_eps = 3;
	CHECK(seal(out, sizeof(out), &m) == 98 + 36,
	      "call-me-maybe: entries past n_eps not looked at");

	n = 0;
	for (unsigned t = 0; t < 256; t++) {
		if (t >= MG_DISCO_PING && t <= MG_DISCO_CALL_ME_MAYBE)
			continue;
		m = make_msg(M_PING);
		m.type = (uint8_t)t;
		n += seal(out, sizeof(out), &m) != 0;
	}
	CHECK(n == 0, "types 0 and 4..255: 0");

	m = make_msg(M_PING);
	memset(out, 0xee, 200);
	n = mg_disco_seal(out, sizeof(out), sender_pub, sender_priv, zero, nonce1, &m);
	CHECK(n == 0 && sodium_is_zero((const unsigned char *)out, 124),
	      "ping to the all-zero key: 0, output wiped");

	/* A v4-mapped address given as AF_INET6 goes out as is and comes back v4. */
	m = make_msg(M_PONG_V6);
	memset(m.src.addr, 0, 16);
	m.src.addr[10] = m.src.addr[11] = 0xff;
	m.src.addr[12] = 192;
	m.src.addr[15] = 9;
	{
		struct mg_disco_msg got;

		n = seal(out, sizeof(out), &m);
		CHECK(n == 110 && open_exact(out, n, receiver_priv, &got) == MG_DISCO_OK &&
			  got.src.family == AF_INET && got.src.addr[0] == 192 &&
			  got.src.addr[3] == 9 &&
			  sodium_is_zero((const unsigned char *)got.src.addr + 4, 12),
		      "AF_INET6 ::ffff:192.0.0.9 comes back AF_INET");
	}
	/* Bytes of an AF_INET address past the first 4 are not sent. */
	m = make_msg(M_PONG_V4);
	memset(m.src.addr + 4, 0x66, 12);
	m.src.pad = 0x66;
	{
		struct mg_disco_msg got, want = make_msg(M_PONG_V4);

		n = seal(out, sizeof(out), &m);
		CHECK(n == 110 && open_exact(out, n, receiver_priv, &got) == MG_DISCO_OK &&
			  msg_eq(&got, &want),
		      "AF_INET with junk after the address: sent as the 4 bytes");
	}
}

static void test_classifier(void)
{
	static const size_t wg_lens[] = {148, 92, 64, 32, 48, 1400};
	static const uint8_t stun_txid[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
	uint8_t buf[MG_DISCO_MAX_LEN];
	struct mg_sockaddr v4a = v4(192, 0, 2, 1, 41641), v6a = v6(1, 12345);
	size_t bad = 0, n;

	for (size_t i = 0; i < ARRAY_SIZE(wg_lens); i++) {
		memset(buf, 0x54, sizeof(buf)); /* 'T' everywhere else */
		buf[0] = (uint8_t)(i < 4 ? i + 1 : 4);
		buf[1] = buf[2] = buf[3] = 0;
		CHECK(!is_exact(buf, wg_lens[i]), "WireGuard type %u, %zu bytes: not disco", buf[0],
		      wg_lens[i]);
	}
	n = mg_stun_build_request(buf, sizeof(buf), stun_txid);
	CHECK(n && !is_exact(buf, n), "STUN binding request: not disco");
	n = mg_stun_build_response(buf, sizeof(buf), stun_txid, &v4a);
	CHECK(n && !is_exact(buf, n), "STUN binding response v4: not disco");
	n = mg_stun_build_response(buf, sizeof(buf), stun_txid, &v6a);
	CHECK(n && !is_exact(buf, n), "STUN binding response v6: not disco");

	for (int i = 0; i < M_COUNT; i++) {
		n = seal_msg(i, buf, sizeof(buf));
		bad += !is_exact(buf, n) || mg_stun_is(buf, n) || buf[0] <= 4;
	}
	CHECK(bad == 0, "every sealed message: disco, not STUN, not WireGuard");

	n = seal_msg(M_PING, buf, sizeof(buf));
	bad = 0;
	for (size_t k = 0; k < 78; k++)
		bad += is_exact(buf, k);
	CHECK(bad == 0 && is_exact(buf, 78), "prefixes of 0..77 bytes: not disco; 78: disco");
	CHECK(mg_disco_sender(buf) == buf + 6 && !memcmp(mg_disco_sender(buf), sender_pub, 32),
	      "sender key at offset 6");
}

static void test_strerror(void)
{
	bool ok = true;

	for (int i = 0; i < MG_DISCO_ERR_COUNT; i++) {
		const char *s = mg_disco_strerror((enum mg_disco_err)i);

		ok = ok && s && *s && strcmp(s, "unknown");
		for (int j = 0; ok && j < i; j++)
			ok = strcmp(s, mg_disco_strerror((enum mg_disco_err)j)) != 0;
	}
	CHECK(ok && !strcmp(mg_disco_strerror(MG_DISCO_ERR_COUNT), "unknown"),
	      "%d distinct error strings, out of range: unknown", MG_DISCO_ERR_COUNT);
}

static int write_file(const char *dir, const char *name, const void *p, size_t n)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n || fclose(f)) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * The fuzz seeds: every sealed message ("sealed-*", opened by the harness
 * as datagrams), an old-style ping, and the bare payloads in Go's layout
 * ("payload-*", which the harness seals itself so that mutations reach the
 * parser behind the box).
 */
static int write_corpus(const char *dir)
{
	uint8_t out[MG_DISCO_MAX_LEN], payload[2 + 5 * 18];
	char name[64];
	int rc = 0;

	for (int i = 0; i < M_COUNT; i++) {
		size_t n = seal_msg(i, out, sizeof(out));

		snprintf(name, sizeof(name), "sealed-%s", msg_names[i]);
		rc |= write_file(dir, name, out, n);
	}
	rc |= write_file(dir, "sealed-ping-old", out, go_sealed(out, go_ping, 14));
	rc |= write_file(dir, "payload-ping", go_ping, sizeof(go_ping));
	rc |= write_file(dir, "payload-ping-old", go_ping, 14);
	rc |= write_file(dir, "payload-pong-v4", go_pong_v4, sizeof(go_pong_v4));
	rc |= write_file(dir, "payload-pong-v6", go_pong_v6, sizeof(go_pong_v6));
	rc |= write_file(dir, "payload-call-me-maybe-0", go_cmm_0, sizeof(go_cmm_0));
	rc |= write_file(dir, "payload-call-me-maybe-1", go_cmm_1, sizeof(go_cmm_1));
	rc |=
	    write_file(dir, "payload-call-me-maybe-5", payload, cmm_payload(payload, 5, SIZE_MAX));
	return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (sodium_init() < 0)
		return 1;
	keys_init();
	if (argc == 3 && !strcmp(argv[1], "--write-corpus"))
		return write_corpus(argv[2]);
	test_round_trip();
	test_go_layout();
	test_ping_bodies();
	test_truncations();
	test_box_mutations();
	test_wrong_keys();
	test_magic();
	test_sizes();
	test_endpoints();
	test_pong_bodies();
	test_call_me_maybe();
	test_types_versions();
	test_seal_caps();
	test_seal_refusals();
	test_classifier();
	test_strerror();
	return test_finish("test_disco");
}
