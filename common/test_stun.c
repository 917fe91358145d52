/* SPDX-License-Identifier: MIT */
/*
 * Tests for stun.c: the RFC 5769 test vectors, round trips, every
 * truncation, hand-built malformed messages, and a differential test over
 * random mutations of valid responses (every message a parser sees lives in
 * a heap block of exactly its size, so ASan catches any read past it).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <zlib.h>

#include "addr.h"
#include "stun.h"

static int failures, checks;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		checks++;                                                                          \
		if (cond) {                                                                        \
			printf("ok   ");                                                           \
		} else {                                                                           \
			failures++;                                                                \
			printf("FAIL %s:%d: ", __FILE__, __LINE__);                                \
		}                                                                                  \
		printf(__VA_ARGS__);                                                               \
		putchar('\n');                                                                     \
	} while (0)

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* RFC 5769 section 2.1: request with SOFTWARE, PRIORITY, ICE-CONTROLLED,
 * USERNAME, MESSAGE-INTEGRITY and FINGERPRINT. */
static const uint8_t rfc_request[] = {
    0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73,
    0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff,
    0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09,
    0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14,
    0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49,
    0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf,
};

/* Section 2.2: IPv4 response (SOFTWARE, XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY,
 * FINGERPRINT), mapped address 192.0.2.1:32853. */
static const uint8_t rfc_response_v4[] = {
    0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
    0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9,
    0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
};

/* Section 2.3: IPv6 response, 2001:db8:1234:5678:11:2233:4455:6677 port 32853. */
static const uint8_t rfc_response_v6[] = {
    0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa,
    0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9, 0x00, 0x08, 0x00, 0x14,
    0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1, 0x17, 0x84, 0xc9, 0x7c, 0x82, 0x92, 0xc2, 0x75,
    0xbf, 0xe3, 0xed, 0x41, 0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb, 0x0b, 0x4c,
};

static const uint8_t rfc_txid[MG_STUN_TXID_LEN] = {
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
};

static const uint8_t txid1[MG_STUN_TXID_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

/* A copy of p[0..n) in a heap block of exactly n bytes (at least 1). */
static uint8_t *exact_copy(const uint8_t *p, size_t n)
{
	uint8_t *q = malloc(n ? n : 1);

	if (!q)
		abort();
	if (n)
		memcpy(q, p, n);
	return q;
}

static enum mg_stun_err parse_req_exact(const uint8_t *p, size_t n, uint8_t txid[])
{
	uint8_t *q = exact_copy(p, n);
	enum mg_stun_err e = mg_stun_parse_request(q, n, txid);

	free(q);
	return e;
}

static enum mg_stun_err parse_resp_exact(const uint8_t *p, size_t n, uint8_t txid[],
					 struct mg_sockaddr *mapped)
{
	uint8_t *q = exact_copy(p, n);
	enum mg_stun_err e = mg_stun_parse_response(q, n, txid, mapped);

	free(q);
	return e;
}

/* A hand-built message, for inputs the builders never produce. */
struct msg {
	uint8_t b[512];
	size_t n;
};

static void msg_init(struct msg *m, uint16_t type, const uint8_t txid[MG_STUN_TXID_LEN])
{
	memset(m, 0, sizeof(*m));
	m->b[0] = (uint8_t)(type >> 8);
	m->b[1] = (uint8_t)type;
	m->b[4] = 0x21;
	m->b[5] = 0x12;
	m->b[6] = 0xa4;
	m->b[7] = 0x42;
	memcpy(m->b + 8, txid, MG_STUN_TXID_LEN);
	m->n = MG_STUN_HDR_LEN;
}

static void msg_set_len(struct msg *m)
{
	m->b[2] = (uint8_t)((m->n - MG_STUN_HDR_LEN) >> 8);
	m->b[3] = (uint8_t)(m->n - MG_STUN_HDR_LEN);
}

/* Append an attribute, zero-padded to 4, and update the header length. */
static void msg_attr(struct msg *m, uint16_t type, const void *v, size_t len)
{
	m->b[m->n] = (uint8_t)(type >> 8);
	m->b[m->n + 1] = (uint8_t)type;
	m->b[m->n + 2] = (uint8_t)(len >> 8);
	m->b[m->n + 3] = (uint8_t)len;
	memcpy(m->b + m->n + 4, v, len);
	m->n += 4 + ((len + 3) & ~(size_t)3);
	msg_set_len(m);
}

/* Append a FINGERPRINT computed independently of stun.c. */
static void msg_fingerprint(struct msg *m)
{
	size_t at = m->n;
	uint32_t crc;
	uint8_t v[4] = {0};

	msg_attr(m, 0x8028, v, 4);
	crc = (uint32_t)crc32(0, m->b, (uInt)at) ^ 0x5354554eu;
	m->b[at + 4] = (uint8_t)(crc >> 24);
	m->b[at + 5] = (uint8_t)(crc >> 16);
	m->b[at + 6] = (uint8_t)(crc >> 8);
	m->b[at + 7] = (uint8_t)crc;
}

static struct mg_sockaddr sa(const char *s)
{
	struct mg_sockaddr a;

	if (mg_sockaddr_parse(s, &a))
		abort();
	return a;
}

static void test_rfc5769(void)
{
	struct mg_sockaddr got, want;
	uint8_t txid[MG_STUN_TXID_LEN];
	char buf[MG_SOCKADDR_STRLEN];

	CHECK(mg_stun_is(rfc_request, sizeof(rfc_request)),
	      "rfc5769 2.1 request passes mg_stun_is");
	CHECK(parse_req_exact(rfc_request, sizeof(rfc_request), txid) == MG_STUN_OK &&
		  !memcmp(txid, rfc_txid, sizeof(txid)),
	      "rfc5769 2.1 request parses (USERNAME, PRIORITY, MESSAGE-INTEGRITY ignored)");

	want = sa("192.0.2.1:32853");
	CHECK(mg_stun_is(rfc_response_v4, sizeof(rfc_response_v4)),
	      "rfc5769 2.2 passes mg_stun_is");
	CHECK(parse_resp_exact(rfc_response_v4, sizeof(rfc_response_v4), txid, &got) ==
		      MG_STUN_OK &&
		  !memcmp(txid, rfc_txid, sizeof(txid)) && !memcmp(&got, &want, sizeof(got)),
	      "rfc5769 2.2 v4 response: %s", mg_sockaddr_fmt(&got, buf, sizeof(buf)));

	want = sa("[2001:db8:1234:5678:11:2233:4455:6677]:32853");
	CHECK(mg_stun_is(rfc_response_v6, sizeof(rfc_response_v6)),
	      "rfc5769 2.3 passes mg_stun_is");
	CHECK(parse_resp_exact(rfc_response_v6, sizeof(rfc_response_v6), txid, &got) ==
		      MG_STUN_OK &&
		  !memcmp(txid, rfc_txid, sizeof(txid)) && !memcmp(&got, &want, sizeof(got)),
	      "rfc5769 2.3 v6 response: %s", mg_sockaddr_fmt(&got, buf, sizeof(buf)));

	CHECK(parse_req_exact(rfc_response_v4, sizeof(rfc_response_v4), txid) == MG_STUN_ERR_TYPE,
	      "a response is not a request");
	CHECK(parse_resp_exact(rfc_request, sizeof(rfc_request), txid, &got) == MG_STUN_ERR_TYPE,
	      "a request is not a response");
}

static const char *const round_trip_addrs[] = {
    "192.0.2.1:32853",
    "0.0.0.0:1",
    "255.255.255.255:65535",
    "203.0.113.7:51820",
    "[2001:db8:1234:5678:11:2233:4455:6677]:32853",
    "[::]:1",
    "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
    "[::ffff:1.2.3.4]:3478",
    "[fe80::1]:51820",
};

static void test_round_trip(void)
{
	uint8_t out[MG_STUN_MAX_BUILT], txid[MG_STUN_TXID_LEN];
	struct mg_sockaddr a, got;
	size_t n;

	n = mg_stun_build_request(out, sizeof(out), txid1);
	CHECK(n == 28 && mg_stun_is(out, n), "request: 28 bytes, passes mg_stun_is");
	CHECK(parse_req_exact(out, n, txid) == MG_STUN_OK && !memcmp(txid, txid1, sizeof(txid)),
	      "request round trip");
	for (size_t i = 0; i < ARRAY_SIZE(round_trip_addrs); i++) {
		a = sa(round_trip_addrs[i]);
		memset(txid, 0, sizeof(txid));
		n = mg_stun_build_response(out, sizeof(out), txid1, &a);
		CHECK(n == 52 && mg_stun_is(out, n) &&
			  parse_resp_exact(out, n, txid, &got) == MG_STUN_OK &&
			  !memcmp(txid, txid1, sizeof(txid)) && !memcmp(&got, &a, sizeof(a)),
		      "response round trip %s", round_trip_addrs[i]);
	}
}

static void test_build_limits(void)
{
	uint8_t out[MG_STUN_MAX_BUILT];
	struct mg_sockaddr v4 = sa("192.0.2.1:1"), v6 = sa("[2001:db8::1]:1"), none = {0};

	CHECK(mg_stun_build_request(out, 27, txid1) == 0, "request, cap 27: 0");
	CHECK(mg_stun_build_request(out, 28, txid1) == 28, "request, cap 28: 28");
	CHECK(mg_stun_build_request(out, 0, txid1) == 0, "request, cap 0: 0");
	CHECK(mg_stun_build_response(out, 51, txid1, &v4) == 0, "v4 response, cap 51: 0");
	CHECK(mg_stun_build_response(out, 52, txid1, &v4) == 52, "v4 response, cap 52: 52");
	CHECK(mg_stun_build_response(out, 51, txid1, &v6) == 0, "v6 response, cap 51: 0");
	CHECK(mg_stun_build_response(out, 52, txid1, &v6) == 52, "v6 response, cap 52: 52");
	CHECK(mg_stun_build_response(out, sizeof(out), txid1, &none) == 0, "family 0: 0");
}

/* Every proper prefix of a valid message is refused, and reads stay inside it. */
static void test_truncations(void)
{
	static const struct {
		const char *name;
		const uint8_t *p;
		size_t n;
		bool request;
	} msgs[] = {
	    {"rfc5769 2.1", rfc_request, sizeof(rfc_request), true},
	    {"rfc5769 2.2", rfc_response_v4, sizeof(rfc_response_v4), false},
	    {"rfc5769 2.3", rfc_response_v6, sizeof(rfc_response_v6), false},
	};
	uint8_t txid[MG_STUN_TXID_LEN], built[MG_STUN_MAX_BUILT];
	struct mg_sockaddr got, v6 = sa("[2001:db8::1]:9");
	size_t bn = mg_stun_build_response(built, sizeof(built), txid1, &v6);

	for (size_t i = 0; i < ARRAY_SIZE(msgs) + 1; i++) {
		const char *name = i < ARRAY_SIZE(msgs) ? msgs[i].name : "built v6 response";
		const uint8_t *p = i < ARRAY_SIZE(msgs) ? msgs[i].p : built;
		size_t len = i < ARRAY_SIZE(msgs) ? msgs[i].n : bn;
		bool request = i < ARRAY_SIZE(msgs) && msgs[i].request;
		int accepted = 0;

		for (size_t n = 0; n < len; n++) {
			enum mg_stun_err e = request ? parse_req_exact(p, n, txid)
						     : parse_resp_exact(p, n, txid, &got);

			accepted += e != MG_STUN_ERR_SHORT || mg_stun_is(p, n);
		}
		CHECK(accepted == 0, "%s: all %zu truncations refused as short", name, len);
	}
}

static void test_header_errors(void)
{
	uint8_t txid[MG_STUN_TXID_LEN], b[64];
	size_t n = mg_stun_build_request(b, sizeof(b), txid1);
	struct mg_sockaddr got;

	b[4] ^= 1;
	CHECK(parse_req_exact(b, n, txid) == MG_STUN_ERR_NOT_STUN && !mg_stun_is(b, n),
	      "wrong magic: not stun");
	b[4] ^= 1;
	b[0] |= 0x40;
	CHECK(parse_req_exact(b, n, txid) == MG_STUN_ERR_NOT_STUN, "top bits set: not stun");
	b[0] &= 0x3f;
	b[3] = 7;
	CHECK(parse_req_exact(b, 27, txid) == MG_STUN_ERR_NOT_STUN, "length 7: not stun");
	b[3] = 8;
	b[n] = 0;
	CHECK(parse_req_exact(b, n + 1, txid) == MG_STUN_ERR_NOT_STUN && !mg_stun_is(b, n + 1),
	      "a byte past the length: not stun");
	b[3] = 4;
	CHECK(parse_req_exact(b, 24, txid) == MG_STUN_ERR_SHORT, "truncated attribute: short");
	b[3] = 8;
	b[1] = 0x11; /* Binding indication */
	CHECK(parse_req_exact(b, n, txid) == MG_STUN_ERR_TYPE &&
		  parse_resp_exact(b, n, txid, &got) == MG_STUN_ERR_TYPE,
	      "binding indication: wrong type for both");
	/* A WireGuard handshake initiation: type 1, three zero bytes, 148 bytes. */
	memset(b, 0, sizeof(b));
	b[0] = 1;
	CHECK(!mg_stun_is(b, 20) && !mg_stun_is(b, 32) && !mg_stun_is(b, 64),
	      "wireguard-like headers are not stun");
}

static void test_fingerprint(void)
{
	uint8_t txid[MG_STUN_TXID_LEN], b[sizeof(rfc_response_v4)];
	struct mg_sockaddr got;
	struct msg m;

	memcpy(b, rfc_response_v4, sizeof(b));
	b[sizeof(b) - 1] ^= 0x01;
	CHECK(parse_resp_exact(b, sizeof(b), txid, &got) == MG_STUN_ERR_FINGERPRINT,
	      "corrupted fingerprint value");
	memcpy(b, rfc_response_v4, sizeof(b));
	b[25] ^= 0x20; /* "test vector" -> "tEst vector": only the CRC notices */
	CHECK(parse_resp_exact(b, sizeof(b), txid, &got) == MG_STUN_ERR_FINGERPRINT,
	      "corrupted body under a fingerprint");

	/* FINGERPRINT, then another attribute. */
	msg_init(&m, MG_STUN_BINDING_REQUEST, txid1);
	msg_fingerprint(&m);
	msg_attr(&m, 0x8022, "late", 4);
	CHECK(parse_req_exact(m.b, m.n, txid) == MG_STUN_ERR_FINGERPRINT, "fingerprint not last");
	/* A FINGERPRINT of the wrong size. */
	msg_init(&m, MG_STUN_BINDING_REQUEST, txid1);
	msg_attr(&m, 0x8028, "\0\0\0\0\0\0\0", 8);
	CHECK(parse_req_exact(m.b, m.n, txid) == MG_STUN_ERR_FINGERPRINT, "8-byte fingerprint");
	/* No FINGERPRINT at all is fine. */
	msg_init(&m, MG_STUN_BINDING_REQUEST, txid1);
	CHECK(parse_req_exact(m.b, m.n, txid) == MG_STUN_OK, "bare 20-byte request");
}

/* Attribute types in a request: {type, expected result}. */
static const struct {
	uint16_t type;
	enum mg_stun_err want;
} request_attr_cases[] = {
    /* 1 */ {0x0006, MG_STUN_OK},		 /* USERNAME */
    /* 2 */ {0x0008, MG_STUN_OK},		 /* MESSAGE-INTEGRITY */
    /* 3 */ {0x001C, MG_STUN_OK},		 /* MESSAGE-INTEGRITY-SHA256 */
    /* 4 */ {0x0024, MG_STUN_OK},		 /* PRIORITY */
    /* 5 */ {0x0025, MG_STUN_OK},		 /* USE-CANDIDATE */
    /* 6 */ {0x8022, MG_STUN_OK},		 /* SOFTWARE */
    /* 7 */ {0x8029, MG_STUN_OK},		 /* ICE-CONTROLLED */
    /* 8 */ {0xffff, MG_STUN_OK},		 /* unknown, optional */
    /* 9 */ {0x0003, MG_STUN_ERR_UNKNOWN_ATTR},	 /* CHANGE-REQUEST (RFC 5780) */
    /* 10 */ {0x0001, MG_STUN_ERR_UNKNOWN_ATTR}, /* MAPPED-ADDRESS: not in a request */
    /* 11 */ {0x0000, MG_STUN_ERR_UNKNOWN_ATTR},
    /* 12 */ {0x7fff, MG_STUN_ERR_UNKNOWN_ATTR},
};

static void test_request_attrs(void)
{
	uint8_t txid[MG_STUN_TXID_LEN];
	struct msg m;

	for (size_t i = 0; i < ARRAY_SIZE(request_attr_cases); i++) {
		for (int fp = 0; fp < 2; fp++) {
			enum mg_stun_err e;

			msg_init(&m, MG_STUN_BINDING_REQUEST, txid1);
			msg_attr(&m, request_attr_cases[i].type, "abcde", 5);
			if (fp)
				msg_fingerprint(&m);
			e = parse_req_exact(m.b, m.n, txid);
			CHECK(e == request_attr_cases[i].want,
			      "case %zu: request with attribute 0x%04x%s: %s", i + 1,
			      request_attr_cases[i].type, fp ? " and fingerprint" : "",
			      mg_stun_strerror(e));
		}
	}
}

static const uint8_t xor_v4[] = {0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43};
static const uint8_t plain_v4[] = {0x00, 0x01, 0x00, 0x09, 10, 0, 0, 1}; /* 10.0.0.1:9 */

static void test_response_attrs(void)
{
	uint8_t txid[MG_STUN_TXID_LEN], v[20] = {0};
	struct mg_sockaddr got, rfc = sa("192.0.2.1:32853"), plain = sa("10.0.0.1:9");
	struct msg m;

	msg_init(&m, MG_STUN_BINDING_SUCCESS, rfc_txid);
	msg_attr(&m, 0x0003, "x", 1);	   /* unknown, required */
	msg_attr(&m, 0x802b, plain_v4, 8); /* RESPONSE-ORIGIN */
	msg_attr(&m, 0x802c, plain_v4, 8); /* OTHER-ADDRESS */
	msg_attr(&m, 0x8022, "srv", 3);	   /* SOFTWARE */
	msg_attr(&m, 0x0020, xor_v4, sizeof(xor_v4));
	msg_fingerprint(&m);
	CHECK(parse_resp_exact(m.b, m.n, txid, &got) == MG_STUN_OK &&
		  !memcmp(&got, &rfc, sizeof(got)),
	      "unknown attributes in a response are ignored");

	msg_init(&m, MG_STUN_BINDING_SUCCESS, rfc_txid);
	msg_attr(&m, 0x0001, plain_v4, sizeof(plain_v4));
	CHECK(parse_resp_exact(m.b, m.n, txid, &got) == MG_STUN_OK &&
		  !memcmp(&got, &plain, sizeof(got)),
	      "MAPPED-ADDRESS alone is used");
	msg_attr(&m, 0x0020, xor_v4, sizeof(xor_v4));
	msg_attr(&m, 0x0020, plain_v4, sizeof(plain_v4));
	CHECK(parse_resp_exact(m.b, m.n, txid, &got) == MG_STUN_OK &&
		  !memcmp(&got, &rfc, sizeof(got)),
	      "the first XOR-MAPPED-ADDRESS wins over MAPPED-ADDRESS");

	msg_init(&m, MG_STUN_BINDING_SUCCESS, rfc_txid);
	msg_attr(&m, 0x8022, "srv", 3);
	msg_fingerprint(&m);
	CHECK(parse_resp_exact(m.b, m.n, txid, &got) == MG_STUN_ERR_NO_ADDRESS && got.family == 0,
	      "no address: refused, *mapped zeroed");

	static const struct {
		uint16_t type;
		uint8_t family;
		size_t len;
	} bad[] = {
	    {0x0020, 0x01, 20}, {0x0020, 0x02, 8}, {0x0020, 0x03, 8}, {0x0020, 0x00, 8},
	    {0x0020, 0x01, 1},	{0x0020, 0x01, 0}, {0x0001, 0x02, 8}, {0x0001, 0x01, 12},
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		msg_init(&m, MG_STUN_BINDING_SUCCESS, rfc_txid);
		msg_attr(&m, 0x0020, xor_v4, sizeof(xor_v4)); /* a good one first */
		v[1] = bad[i].family;
		msg_attr(&m, bad[i].type, v, bad[i].len);
		CHECK(parse_resp_exact(m.b, m.n, txid, &got) == MG_STUN_ERR_BAD_ADDRESS,
		      "bad address %zu: type 0x%04x family %u length %zu", i + 1, bad[i].type,
		      bad[i].family, bad[i].len);
	}
}

static void test_strerror(void)
{
	bool ok = true;

	for (int i = 0; i < MG_STUN_ERR_COUNT; i++) {
		const char *s = mg_stun_strerror((enum mg_stun_err)i);

		ok &= s && s[0];
		for (const char *c = s; c && *c; c++)
			ok &= !(*c >= 'A' && *c <= 'Z');
		for (int j = 0; j < i; j++)
			ok &= strcmp(s, mg_stun_strerror((enum mg_stun_err)j)) != 0;
	}
	ok &= mg_stun_strerror((enum mg_stun_err)MG_STUN_ERR_COUNT) != NULL;
	CHECK(ok, "strerror: a distinct lowercase phrase per reason");
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 16);
}

/* Recompute a FINGERPRINT found at the end of b[0..n), so mutations get past it. */
static void refresh_fingerprint(uint8_t *b, size_t n)
{
	uint32_t crc;

	if (n < MG_STUN_HDR_LEN + 8 || b[n - 8] != 0x80 || b[n - 7] != 0x28)
		return;
	crc = (uint32_t)crc32(0, b, (uInt)(n - 8)) ^ 0x5354554eu;
	b[n - 4] = (uint8_t)(crc >> 24);
	b[n - 3] = (uint8_t)(crc >> 16);
	b[n - 2] = (uint8_t)(crc >> 8);
	b[n - 1] = (uint8_t)crc;
}

static size_t mutate(uint8_t *b, size_t n, size_t cap)
{
	int k = 1 + (int)(rnd() % 4);

	while (k--) {
		switch (rnd() % 6) {
		case 0: /* flip a bit */
			if (n)
				b[rnd() % n] ^= (uint8_t)(1u << (rnd() % 8));
			break;
		case 1: /* a random byte, often in the header or an attribute header */
			if (n)
				b[rnd() % (n < 48 ? n : 48)] = (uint8_t)rnd();
			break;
		case 2: /* cut */
			n = n ? rnd() % n : 0;
			break;
		case 3: /* append a random attribute-sized chunk */
			for (size_t add = 4 * (rnd() % 6); add-- && n < cap;)
				b[n++] = (uint8_t)rnd();
			break;
		case 4: /* make the header length agree with n */
			if (n >= 4) {
				b[2] = (uint8_t)((n - MG_STUN_HDR_LEN) >> 8);
				b[3] = (uint8_t)(n - MG_STUN_HDR_LEN);
			}
			break;
		default: /* an attribute length */
			if (n > MG_STUN_HDR_LEN + 4)
				b[MG_STUN_HDR_LEN + 3 + 4 * (rnd() % ((n - 24) / 4 + 1))] =
				    (uint8_t)rnd();
			break;
		}
	}
	if (rnd() % 4)
		refresh_fingerprint(b, n);
	return n;
}

/*
 * Differential: random mutations of valid responses. Whatever parses must
 * pass mg_stun_is and survive build_response + parse with the same txid
 * and address; nothing may read out of bounds (exact-size heap copies).
 */
static void test_mutations(void)
{
	enum { ROUNDS = 200000 };
	uint8_t seeds[4][MG_STUN_MAX_BUILT * 2];
	size_t seed_len[4];
	struct mg_sockaddr v4 = sa("198.51.100.7:40000"), v6 = sa("[2001:db8::77]:1");
	int accepted = 0, mismatched = 0, by_err[MG_STUN_ERR_COUNT] = {0};

	memcpy(seeds[0], rfc_response_v4, sizeof(rfc_response_v4));
	seed_len[0] = sizeof(rfc_response_v4);
	memcpy(seeds[1], rfc_response_v6, sizeof(rfc_response_v6));
	seed_len[1] = sizeof(rfc_response_v6);
	seed_len[2] = mg_stun_build_response(seeds[2], sizeof(seeds[2]), txid1, &v4);
	seed_len[3] = mg_stun_build_response(seeds[3], sizeof(seeds[3]), txid1, &v6);

	for (int r = 0; r < ROUNDS; r++) {
		uint8_t b[256], txid[MG_STUN_TXID_LEN], txid2[MG_STUN_TXID_LEN];
		uint8_t out[MG_STUN_MAX_BUILT];
		struct mg_sockaddr got, again;
		int s = (int)(rnd() % 4);
		size_t n = seed_len[s], m;
		enum mg_stun_err e;

		memcpy(b, seeds[s], n);
		n = mutate(b, n, sizeof(b));
		e = parse_resp_exact(b, n, txid, &got);
		if ((unsigned)e < MG_STUN_ERR_COUNT)
			by_err[e]++;
		if (e != MG_STUN_OK)
			continue;
		accepted++;
		m = mg_stun_build_response(out, sizeof(out), txid, &got);
		if (!mg_stun_is(b, n) || m == 0 ||
		    parse_resp_exact(out, m, txid2, &again) != MG_STUN_OK ||
		    memcmp(txid, txid2, sizeof(txid)) || memcmp(&got, &again, sizeof(got)))
			mismatched++;
	}
	CHECK(mismatched == 0, "mutations: %d of %d accepted, all round-trip", accepted, ROUNDS);
	/* The test means something only if it reaches both sides of most checks. */
	CHECK(accepted > ROUNDS / 100 && by_err[MG_STUN_ERR_SHORT] &&
		  by_err[MG_STUN_ERR_NOT_STUN] && by_err[MG_STUN_ERR_TYPE] &&
		  by_err[MG_STUN_ERR_FINGERPRINT] && by_err[MG_STUN_ERR_BAD_ADDRESS],
	      "mutations reach every outcome (short %d, not stun %d, type %d, fingerprint %d, "
	      "no address %d, bad address %d)",
	      by_err[MG_STUN_ERR_SHORT], by_err[MG_STUN_ERR_NOT_STUN], by_err[MG_STUN_ERR_TYPE],
	      by_err[MG_STUN_ERR_FINGERPRINT], by_err[MG_STUN_ERR_NO_ADDRESS],
	      by_err[MG_STUN_ERR_BAD_ADDRESS]);
}

int main(void)
{
	test_rfc5769();
	test_round_trip();
	test_build_limits();
	test_truncations();
	test_header_errors();
	test_fingerprint();
	test_request_attrs();
	test_response_attrs();
	test_strerror();
	test_mutations();
	printf("%d passed, %d failed\n", checks - failures, failures);
	return failures ? 1 : 0;
}
