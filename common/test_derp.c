/* SPDX-License-Identifier: MIT */
/*
 * Tests for derp.c: round trips of every builder through its parser, every
 * truncation of every frame, every bit flip of the info boxes, the boxes
 * checked against crypto_box_easy directly, JSON and frame header edge
 * cases, and tables of HTTP heads. Every input a parser sees lives in a
 * heap block of exactly its size, so ASan catches any read past it.
 *
 * "test_derp --write-corpus DIR" writes the fuzz seeds instead (a frame of
 * each type, HTTP heads); the keys are the same as fuzz_derp.c's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "derp.h"
#include "test_util.h"


#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Fixed keys, as in fuzz_derp.c: a private key of 32 equal bytes. */
static uint8_t server_priv[32], server_pub[32], client_priv[32], client_pub[32];
static uint8_t other_priv[32], other_pub[32], peer_key[32];
static const uint8_t nonce1[MG_DERP_NONCE_LEN] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12,
						  13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24};
static const uint8_t ping_data[8] = {0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3};
static const char client_json[] = "{\"version\":2,\"canAckPings\":true}";
static const char server_json[] = "{\"version\":2}";

/* Big enough for any frame. */
static uint8_t big[MG_DERP_HDR_LEN + MG_DERP_MAX_BODY + 64];

static void keys_init(void)
{
	test_keypair(server_priv, server_pub, 0x53);
	test_keypair(client_priv, client_pub, 0x43);
	test_keypair(other_priv, other_pub, 0x4f);
	for (int i = 0; i < 32; i++)
		peer_key[i] = (uint8_t)(0xa0 + i);
}

static long frame_exact(const uint8_t *p, size_t n, uint32_t max, uint8_t *type, uint32_t *len)
{
	uint8_t *q = test_exact_copy(p, n);
	long r = mg_derp_frame(q, n, max, type, len);

	free(q);
	return r;
}

static enum mg_derp_err client_info_exact(const uint8_t *p, size_t n, const uint8_t priv[32],
					  uint8_t pub[32], int *version, char *json, size_t cap)
{
	uint8_t *q = test_exact_copy(p, n);
	enum mg_derp_err e = mg_derp_parse_client_info(q, n, priv, pub, version, json, cap);

	free(q);
	return e;
}

static enum mg_derp_err server_info_exact(const uint8_t *p, size_t n, const uint8_t priv[32],
					  const uint8_t pub[32], char *json, size_t cap)
{
	uint8_t *q = test_exact_copy(p, n);
	enum mg_derp_err e = mg_derp_parse_server_info(q, n, priv, pub, json, cap);

	free(q);
	return e;
}

static long req_exact(const char *p, size_t n, struct mg_derp_http_req *r)
{
	char *q = test_exact_copy(p, n);
	long ret = mg_derp_http_parse_request(q, n, r);

	free(q);
	return ret;
}

static long resp_exact(const char *p, size_t n, int *status, bool *has_key, uint8_t key[32])
{
	char *q = test_exact_copy(p, n);
	long ret = mg_derp_http_parse_response(q, n, status, has_key, key);

	free(q);
	return ret;
}

/* s with bytes outside printable ASCII as \xNN, for test names. */
static const char *esc(const char *s)
{
	static char buf[512];
	size_t o = 0;

	for (; *s && o + 5 < sizeof(buf); s++) {
		unsigned char c = (unsigned char)*s;

		if (c >= 0x20 && c < 0x7f)
			buf[o++] = (char)c;
		else
			o += (size_t)snprintf(buf + o, sizeof(buf) - o, "\\x%02x", c);
	}
	buf[o] = '\0';
	return buf;
}

/* Frames built by the codec, for the round-trip, truncation and corpus tests. */
enum {
	F_SERVER_KEY,
	F_CLIENT_INFO,
	F_SERVER_INFO,
	F_SEND_PACKET,
	F_RECV_PACKET,
	F_RECV_EMPTY,
	F_KEEPALIVE,
	F_PING,
	F_PONG,
	F_PREFERRED,
	F_NOT_PREFERRED,
	F_PEER_GONE,
	F_PEER_NOT_HERE,
	F_PEER_PRESENT,
	F_COUNT
};

static const char *const frame_names[F_COUNT] = {
    [F_SERVER_KEY] = "server_key",
    [F_CLIENT_INFO] = "client_info",
    [F_SERVER_INFO] = "server_info",
    [F_SEND_PACKET] = "send_packet",
    [F_RECV_PACKET] = "recv_packet",
    [F_RECV_EMPTY] = "recv_packet_empty",
    [F_KEEPALIVE] = "keepalive",
    [F_PING] = "ping",
    [F_PONG] = "pong",
    [F_PREFERRED] = "note_preferred",
    [F_NOT_PREFERRED] = "note_not_preferred",
    [F_PEER_GONE] = "peer_gone",
    [F_PEER_NOT_HERE] = "peer_not_here",
    [F_PEER_PRESENT] = "peer_present",
};

static const uint8_t test_pkt[100] = {0x45, 0, 0, 100, 1, 2, 3, 4};

static size_t build_frame(int which, uint8_t *out, size_t cap)
{
	switch (which) {
	case F_SERVER_KEY:
		return mg_derp_build_server_key(out, cap, server_pub);
	case F_CLIENT_INFO:
		return mg_derp_build_client_info(out, cap, client_pub, client_priv, server_pub,
						 nonce1, client_json);
	case F_SERVER_INFO:
		return mg_derp_build_server_info(out, cap, server_priv, client_pub, nonce1,
						 server_json);
	case F_SEND_PACKET:
		return mg_derp_build_packet(out, cap, MG_DERP_SEND_PACKET, peer_key, test_pkt,
					    sizeof(test_pkt));
	case F_RECV_PACKET:
		return mg_derp_build_packet(out, cap, MG_DERP_RECV_PACKET, peer_key, test_pkt,
					    sizeof(test_pkt));
	case F_RECV_EMPTY:
		return mg_derp_build_packet(out, cap, MG_DERP_RECV_PACKET, peer_key, NULL, 0);
	case F_KEEPALIVE:
		return mg_derp_build_keepalive(out, cap);
	case F_PING:
		return mg_derp_build_ping(out, cap, MG_DERP_PING, ping_data);
	case F_PONG:
		return mg_derp_build_ping(out, cap, MG_DERP_PONG, ping_data);
	case F_PREFERRED:
		return mg_derp_build_note_preferred(out, cap, true);
	case F_NOT_PREFERRED:
		return mg_derp_build_note_preferred(out, cap, false);
	case F_PEER_GONE:
		return mg_derp_build_peer_gone(out, cap, peer_key, MG_DERP_GONE_DISCONNECTED);
	case F_PEER_NOT_HERE:
		return mg_derp_build_peer_gone(out, cap, peer_key, MG_DERP_GONE_NOT_HERE);
	case F_PEER_PRESENT:
		return mg_derp_build_peer_present(out, cap, peer_key);
	}
	abort();
}

/* Expected type and body length of each built frame. */
static const struct {
	uint8_t type;
	uint32_t body;
} frame_shapes[F_COUNT] = {
    [F_SERVER_KEY] = {MG_DERP_SERVER_KEY, 40},
    [F_CLIENT_INFO] = {MG_DERP_CLIENT_INFO, 72 + sizeof(client_json) - 1},
    [F_SERVER_INFO] = {MG_DERP_SERVER_INFO, 40 + sizeof(server_json) - 1},
    [F_SEND_PACKET] = {MG_DERP_SEND_PACKET, 32 + sizeof(test_pkt)},
    [F_RECV_PACKET] = {MG_DERP_RECV_PACKET, 32 + sizeof(test_pkt)},
    [F_RECV_EMPTY] = {MG_DERP_RECV_PACKET, 32},
    [F_KEEPALIVE] = {MG_DERP_KEEP_ALIVE, 0},
    [F_PING] = {MG_DERP_PING, 8},
    [F_PONG] = {MG_DERP_PONG, 8},
    [F_PREFERRED] = {MG_DERP_NOTE_PREFERRED, 1},
    [F_NOT_PREFERRED] = {MG_DERP_NOTE_PREFERRED, 1},
    [F_PEER_GONE] = {MG_DERP_PEER_GONE, 33},
    [F_PEER_NOT_HERE] = {MG_DERP_PEER_GONE, 33},
    [F_PEER_PRESENT] = {MG_DERP_PEER_PRESENT, 32},
};

/*
 * Parse body[0..n) (an exact copy) with the parser for frame which, as the
 * whole body (full) or a truncation of it; true if the outcome is the one
 * expected: the fields of the built frame when full, otherwise SHORT below
 * the type's minimum and, above it, BOX for the boxes and a shorter packet
 * for packets.
 */
static bool body_parses(int which, const uint8_t *body, size_t n, bool full)
{
	uint8_t *q = test_exact_copy(body, n), key[32], data[8], reason;
	char json[MG_DERP_MAX_JSON + 1];
	const uint8_t *pkt;
	size_t len;
	int version;
	bool ok = true;
	enum mg_derp_err e;

	switch (which) {
	case F_SERVER_KEY:
		e = mg_derp_parse_server_key(q, n, key);
		ok =
		    full ? e == MG_DERP_OK && !memcmp(key, server_pub, 32) : e == MG_DERP_ERR_SHORT;
		break;
	case F_CLIENT_INFO:
		e = mg_derp_parse_client_info(q, n, server_priv, key, &version, json, sizeof(json));
		ok = full ? e == MG_DERP_OK && !memcmp(key, client_pub, 32) && version == 2 &&
				!strcmp(json, client_json)
			  : e == (n < 72 ? MG_DERP_ERR_SHORT : MG_DERP_ERR_BOX) && !json[0];
		break;
	case F_SERVER_INFO:
		e = mg_derp_parse_server_info(q, n, client_priv, server_pub, json, sizeof(json));
		ok = full ? e == MG_DERP_OK && !strcmp(json, server_json)
			  : e == (n < 40 ? MG_DERP_ERR_SHORT : MG_DERP_ERR_BOX) && !json[0];
		break;
	case F_SEND_PACKET:
	case F_RECV_PACKET:
	case F_RECV_EMPTY:
		e = mg_derp_parse_packet(q, n, key, &pkt, &len);
		if (n < 32)
			ok = e == MG_DERP_ERR_SHORT;
		else
			ok = e == MG_DERP_OK && !memcmp(key, peer_key, 32) && pkt == q + 32 &&
			     len == n - 32 && (len == 0 || !memcmp(pkt, test_pkt, len));
		break;
	case F_PING:
	case F_PONG:
		e = mg_derp_parse_ping(q, n, data);
		ok = full ? e == MG_DERP_OK && !memcmp(data, ping_data, 8) : e == MG_DERP_ERR_SHORT;
		break;
	case F_PEER_GONE:
	case F_PEER_NOT_HERE:
		e = mg_derp_parse_peer_gone(q, n, key, &reason);
		if (n < 32)
			ok = e == MG_DERP_ERR_SHORT;
		else
			ok = e == MG_DERP_OK && !memcmp(key, peer_key, 32) &&
			     reason == (n == 32 || which == F_PEER_GONE ? MG_DERP_GONE_DISCONNECTED
									: MG_DERP_GONE_NOT_HERE);
		break;
	case F_PREFERRED:
	case F_NOT_PREFERRED:
		ok = !full || q[0] == (which == F_PREFERRED);
		break;
	case F_PEER_PRESENT:
		ok = !full || !memcmp(q, peer_key, 32);
		break;
	}
	free(q);
	return ok;
}

static void test_round_trip(void)
{
	uint8_t out[256], type;
	uint32_t blen;

	for (int i = 0; i < F_COUNT; i++) {
		size_t n = build_frame(i, out, sizeof(out));
		long r = frame_exact(out, n, MG_DERP_MAX_BODY, &type, &blen);

		CHECK(n == MG_DERP_HDR_LEN + frame_shapes[i].body && r == (long)n &&
			  type == frame_shapes[i].type && blen == frame_shapes[i].body &&
			  body_parses(i, out + MG_DERP_HDR_LEN, blen, true),
		      "%s: %zu bytes, type 0x%02x, round trip", frame_names[i], n, type);
	}
}

/* Exact bytes of the small frames. */
static void test_wire_bytes(void)
{
	uint8_t out[64], want[64];
	size_t n;

	n = mg_derp_build_keepalive(out, sizeof(out));
	CHECK(n == 5 && !memcmp(out, "\x06\0\0\0\0", 5), "keepalive: 06 00000000");
	n = mg_derp_build_note_preferred(out, sizeof(out), true);
	CHECK(n == 6 && !memcmp(out, "\x07\0\0\0\x01\x01", 6), "note preferred: 07 00000001 01");
	n = mg_derp_build_note_preferred(out, sizeof(out), false);
	CHECK(n == 6 && !memcmp(out, "\x07\0\0\0\x01\x00", 6), "not preferred: 07 00000001 00");
	n = mg_derp_build_ping(out, sizeof(out), MG_DERP_PONG, ping_data);
	CHECK(n == 13 && !memcmp(out, "\x13\0\0\0\x08", 5) && !memcmp(out + 5, ping_data, 8),
	      "pong: 13 00000008 data");

	memcpy(want,
	       "\x01\0\0\0\x28"
	       "DERP\xf0\x9f\x94\x91",
	       13);
	memcpy(want + 13, server_pub, 32);
	n = mg_derp_build_server_key(out, sizeof(out), server_pub);
	CHECK(n == 45 && !memcmp(out, want, 45), "server key: 01 00000028 \"DERP🔑\" key");

	memcpy(want, "\x08\0\0\0\x21", 5);
	memcpy(want + 5, peer_key, 32);
	want[37] = 1;
	n = mg_derp_build_peer_gone(out, sizeof(out), peer_key, MG_DERP_GONE_NOT_HERE);
	CHECK(n == 38 && !memcmp(out, want, 38), "peer gone: 08 00000021 key 01");

	memcpy(want, "\x09\0\0\0\x20", 5);
	n = mg_derp_build_peer_present(out, sizeof(out), peer_key);
	CHECK(n == 37 && !memcmp(out, want, 5) && !memcmp(out + 5, peer_key, 32),
	      "peer present: 09 00000020 key");

	mg_derp_put_hdr(out, 0xab, 0x01020304);
	CHECK(!memcmp(out, "\xab\x01\x02\x03\x04", 5), "put_hdr is big-endian");
}

/* Packets of every interesting size, both directions. */
static void test_packets(void)
{
	static const size_t lens[] = {0, 1, 31, 32, 1280, 1500, 65535, MG_DERP_MAX_PACKET};
	static uint8_t pkt[MG_DERP_MAX_PACKET];
	const uint8_t types[] = {MG_DERP_SEND_PACKET, MG_DERP_RECV_PACKET};

	for (size_t i = 0; i < sizeof(pkt); i++)
		pkt[i] = (uint8_t)(i * 7 + 3);
	for (size_t t = 0; t < ARRAY_SIZE(types); t++) {
		for (size_t i = 0; i < ARRAY_SIZE(lens); i++) {
			uint8_t key[32], type;
			uint32_t blen;
			const uint8_t *got;
			size_t len = 0, n;
			enum mg_derp_err e;
			long r;

			n = mg_derp_build_packet(big, sizeof(big), types[t], peer_key, pkt,
						 lens[i]);
			r = mg_derp_frame(big, n, MG_DERP_MAX_BODY, &type, &blen);
			e = mg_derp_parse_packet(big + 5, blen, key, &got, &len);
			CHECK(n == 5 + 32 + lens[i] && r == (long)n && type == types[t] &&
				  e == MG_DERP_OK && !memcmp(key, peer_key, 32) &&
				  got == big + 37 && len == lens[i] && !memcmp(got, pkt, len),
			      "%s of %zu bytes round trip",
			      types[t] == MG_DERP_SEND_PACKET ? "send" : "recv", lens[i]);
		}
	}
	/* A body one over: key + MAX_PACKET + 1. */
	{
		uint8_t key[32];
		const uint8_t *got;
		size_t len;

		CHECK(mg_derp_parse_packet(big + 5, MG_DERP_MAX_BODY + 1, key, &got, &len) ==
			  MG_DERP_ERR_TOO_BIG,
		      "packet of %u bytes: too big", MG_DERP_MAX_PACKET + 1);
	}
}

/* Bodies the builders never make, with extra bytes. */
static void test_extra_bytes(void)
{
	uint8_t body[64], key[32], data[8], reason;
	enum mg_derp_err e;

	memcpy(body, MG_DERP_MAGIC, 8);
	memcpy(body + 8, server_pub, 32);
	memset(body + 40, 0xee, 7);
	e = mg_derp_parse_server_key(body, 47, key);
	CHECK(e == MG_DERP_OK && !memcmp(key, server_pub, 32), "server key with 7 extra bytes");
	body[3] ^= 0x20; /* "DERp" */
	e = mg_derp_parse_server_key(body, 47, key);
	CHECK(e == MG_DERP_ERR_MAGIC, "server key with a bad magic: %s", mg_derp_strerror(e));

	memcpy(body, peer_key, 32);
	body[32] = MG_DERP_GONE_NOT_HERE;
	memset(body + 33, 0x77, 10);
	e = mg_derp_parse_peer_gone(body, 43, key, &reason);
	CHECK(e == MG_DERP_OK && reason == MG_DERP_GONE_NOT_HERE,
	      "peer gone with bytes after the reason");
	e = mg_derp_parse_peer_gone(body, 32, key, &reason);
	CHECK(e == MG_DERP_OK && reason == MG_DERP_GONE_DISCONNECTED && !memcmp(key, peer_key, 32),
	      "peer gone without a reason: disconnected");

	memcpy(body, ping_data, 8);
	memset(body + 8, 0x99, 4);
	e = mg_derp_parse_ping(body, 12, data);
	CHECK(e == MG_DERP_OK && !memcmp(data, ping_data, 8), "ping with 4 extra bytes");
}

/* Every builder refuses a cap one short, fills a cap exactly its size. */
static void test_build_caps(void)
{
	uint8_t out[256];

	for (int i = 0; i < F_COUNT; i++) {
		size_t len = build_frame(i, out, sizeof(out)), bad = 0;

		for (size_t cap = 0; cap < len; cap++)
			bad += build_frame(i, out, cap) != 0;
		CHECK(len > 0 && bad == 0 && build_frame(i, out, len) == len,
		      "%s: caps 0..%zu refused, cap %zu fits", frame_names[i], len - 1, len);
	}
}

static void test_build_limits(void)
{
	static char json[MG_DERP_MAX_JSON + 2];
	static uint8_t pkt[MG_DERP_MAX_PACKET + 1];
	const uint8_t zero[32] = {0};
	char got[MG_DERP_MAX_JSON + 1];
	uint8_t key[32];
	int version;
	size_t n;

	n = mg_derp_build_packet(big, sizeof(big), MG_DERP_SEND_PACKET, peer_key, pkt,
				 MG_DERP_MAX_PACKET + 1);
	CHECK(n == 0, "packet of MAX_PACKET + 1: 0");
	n = mg_derp_build_packet(big, sizeof(big), MG_DERP_SEND_PACKET, peer_key, NULL, 1);
	CHECK(n == 0, "packet NULL with length 1: 0");
	n = mg_derp_build_packet(big, sizeof(big), MG_DERP_KEEP_ALIVE, peer_key, pkt, 1);
	CHECK(n == 0, "packet with type keepalive: 0");
	n = mg_derp_build_packet(big, sizeof(big), MG_DERP_FORWARD_PACKET, peer_key, pkt, 1);
	CHECK(n == 0, "packet with type forward packet: 0");
	n = mg_derp_build_ping(big, sizeof(big), MG_DERP_PEER_GONE, ping_data);
	CHECK(n == 0, "ping with type peer gone: 0");

	n = mg_derp_build_client_info(big, sizeof(big), client_pub, client_priv, server_pub, nonce1,
				      NULL);
	CHECK(n == 0, "client info, json NULL: 0");
	n = mg_derp_build_server_info(big, sizeof(big), server_priv, client_pub, nonce1, NULL);
	CHECK(n == 0, "server info, json NULL: 0");

	/* {"pad":"xxx...x"} of exactly MAX_JSON bytes, then one more. */
	memset(json, 'x', MG_DERP_MAX_JSON);
	memcpy(json, "{\"pad\":\"", 8);
	memcpy(json + MG_DERP_MAX_JSON - 2, "\"}", 2);
	json[MG_DERP_MAX_JSON] = '\0';
	n = mg_derp_build_client_info(big, sizeof(big), client_pub, client_priv, server_pub, nonce1,
				      json);
	CHECK(n == MG_DERP_HDR_LEN + MG_DERP_MAX_INFO &&
		  client_info_exact(big + 5, n - 5, server_priv, key, &version, got, sizeof(got)) ==
		      MG_DERP_OK &&
		  version == 0 && !strcmp(got, json),
	      "client info with %u bytes of json: %zu bytes, parses", MG_DERP_MAX_JSON, n);
	big[n] = 0;
	CHECK(client_info_exact(big + 5, n - 4, server_priv, key, &version, got, sizeof(got)) ==
		  MG_DERP_ERR_TOO_BIG,
	      "client info body of MAX_INFO + 1: too big");
	n = mg_derp_build_server_info(big, sizeof(big), server_priv, client_pub, nonce1, json);
	CHECK(n == MG_DERP_HDR_LEN + MG_DERP_MAX_INFO - 32 &&
		  server_info_exact(big + 5, n - 5, client_priv, server_pub, got, sizeof(got)) ==
		      MG_DERP_OK &&
		  !strcmp(got, json),
	      "server info with %u bytes of json: %zu bytes, parses", MG_DERP_MAX_JSON, n);
	big[n] = 0;
	CHECK(server_info_exact(big + 5, n - 4, client_priv, server_pub, got, sizeof(got)) ==
		  MG_DERP_ERR_TOO_BIG,
	      "server info body of MAX_JSON + 41: too big");

	memcpy(json + MG_DERP_MAX_JSON - 2, "x\"}", 4);
	n = mg_derp_build_client_info(big, sizeof(big), client_pub, client_priv, server_pub, nonce1,
				      json);
	CHECK(n == 0, "client info with %u bytes of json: 0", MG_DERP_MAX_JSON + 1);
	n = mg_derp_build_server_info(big, sizeof(big), server_priv, client_pub, nonce1, json);
	CHECK(n == 0, "server info with %u bytes of json: 0", MG_DERP_MAX_JSON + 1);

	/* libsodium refuses a shared secret of zeros (a low-order point). */
	n = mg_derp_build_client_info(big, sizeof(big), client_pub, client_priv, zero, nonce1,
				      "{}");
	CHECK(n == 0, "client info to the all-zero server key: 0");
}

/* Every proper prefix of every frame is incomplete; every body prefix is
 * refused the right way (reads stay inside exact copies). */
static void test_truncations(void)
{
	uint8_t out[256], type;
	uint32_t blen;

	for (int i = 0; i < F_COUNT; i++) {
		size_t len = build_frame(i, out, sizeof(out)), bad = 0, badbody = 0;

		for (size_t n = 0; n < len; n++) {
			type = 0xee;
			blen = 0xeeeeeeee;
			if (frame_exact(out, n, MG_DERP_MAX_BODY, &type, &blen) != 0)
				bad++;
			else if (n >= 5 && (type != frame_shapes[i].type || blen != len - 5))
				bad++;
		}
		for (size_t n = 0; n + 5 < len; n++)
			badbody += !body_parses(i, out + 5, n, false);
		CHECK(bad == 0 && badbody == 0,
		      "%s: %zu frame truncations incomplete, %zu body truncations refused",
		      frame_names[i], len, len - 5);
	}
}

static void test_frame_header(void)
{
	static const struct {
		uint8_t hdr[5];
		size_t n;
		uint32_t max;
		long want;
		uint32_t want_len;
	} cases[] = {
	    /* 1 */ {{6, 0, 0, 0, 0}, 5, 0, 5, 0},
	    /* 2 */ {{4, 0, 0, 0, 10}, 5, 100, 0, 10},
	    /* 3 */ {{4, 0, 0, 0, 10}, 14, 100, 0, 10},
	    /* 4 */ {{4, 0, 0, 0, 10}, 15, 100, 15, 10},
	    /* 5 */ {{4, 0, 0, 0, 10}, 40, 100, 15, 10},
	    /* 6 */ {{4, 0, 0, 0, 100}, 105, 100, 105, 100},
	    /* 7 */ {{4, 0, 0, 0, 101}, 5, 100, -1, 101},
	    /* 8 */ {{4, 0, 0, 0, 101}, 106, 100, -1, 101},
	    /* 9 */ {{4, 0, 1, 0, 32}, 5, MG_DERP_MAX_BODY, 0, MG_DERP_MAX_BODY},
	    /* 10 */ {{4, 0, 1, 0, 33}, 5, MG_DERP_MAX_BODY, -1, MG_DERP_MAX_BODY + 1},
	    /* 11 */ {{4, 0xff, 0xff, 0xff, 0xff}, 5, MG_DERP_MAX_BODY, -1, 0xffffffff},
	    /* 12 */ {{4, 0xff, 0xff, 0xff, 0xff}, 5, 0xffffffff, 0, 0xffffffff},
	    /* 13 */ {{4, 0x80, 0, 0, 0}, 5, 0x7fffffff, -1, 0x80000000},
	    /* 14 */ {{6, 0, 0, 0, 1}, 5, 0, -1, 1},
	};
	uint8_t buf[256] = {0}, type;
	uint32_t len;

	for (size_t n = 0; n < 5; n++) {
		type = 0xee;
		len = 0xeeeeeeee;
		CHECK(frame_exact((const uint8_t *)"\x04\0\0\0\x01", n, MG_DERP_MAX_BODY, &type,
				  &len) == 0 &&
			  type == 0xee && len == 0xeeeeeeee,
		      "header of %zu bytes: need more, outputs untouched", n);
	}
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		long r;

		memcpy(buf, cases[i].hdr, 5);
		r = frame_exact(buf, cases[i].n, cases[i].max, &type, &len);
		CHECK(r == cases[i].want && type == cases[i].hdr[0] && len == cases[i].want_len,
		      "case %zu: type %u length %u, n %zu, max %u: %ld", i + 1, cases[i].hdr[0],
		      cases[i].want_len, cases[i].n, cases[i].max, r);
	}
}

/* Flip every bit of the boxed bodies: the box must not open. */
static void test_box_mutations(void)
{
	uint8_t out[256], key[32];
	char json[64];
	int version;
	size_t n, bad = 0, flips = 0;

	n = build_frame(F_CLIENT_INFO, out, sizeof(out)) - 5;
	for (size_t i = 0; i < n; i++) {
		for (int bit = 0; bit < 8; bit++) {
			enum mg_derp_err e;

			out[5 + i] ^= (uint8_t)(1 << bit);
			e = client_info_exact(out + 5, n, server_priv, key, &version, json,
					      sizeof(json));
			out[5 + i] ^= (uint8_t)(1 << bit);
			/* X25519 ignores bit 255 of a public key (RFC 7748), as Go does:
			 * the claimed key differs, the shared secret does not. */
			if (i == 31 && bit == 7)
				bad += e != MG_DERP_OK || key[31] != (client_pub[31] ^ 0x80);
			else
				bad += e != MG_DERP_ERR_BOX || json[0] != '\0';
			flips++;
		}
	}
	CHECK(bad == 0, "client info: %zu bit flips refused as box (but key bit 255)", flips);

	bad = flips = 0;
	n = build_frame(F_SERVER_INFO, out, sizeof(out)) - 5;
	for (size_t i = 0; i < n; i++) {
		for (int bit = 0; bit < 8; bit++) {
			out[5 + i] ^= (uint8_t)(1 << bit);
			bad += server_info_exact(out + 5, n, client_priv, server_pub, json,
						 sizeof(json)) != MG_DERP_ERR_BOX;
			out[5 + i] ^= (uint8_t)(1 << bit);
			flips++;
		}
	}
	CHECK(bad == 0, "server info: %zu bit flips refused as box", flips);
}

static void test_wrong_keys(void)
{
	uint8_t out[256], key[32];
	char json[64];
	int version;
	size_t n;
	enum mg_derp_err e;

	n = build_frame(F_CLIENT_INFO, out, sizeof(out)) - 5;
	e = client_info_exact(out + 5, n, other_priv, key, &version, json, sizeof(json));
	CHECK(e == MG_DERP_ERR_BOX, "client info opened by another server: %s",
	      mg_derp_strerror(e));
	memcpy(out + 5, other_pub, 32);
	e = client_info_exact(out + 5, n, server_priv, key, &version, json, sizeof(json));
	CHECK(e == MG_DERP_ERR_BOX, "client info claiming another client's key: %s",
	      mg_derp_strerror(e));

	n = build_frame(F_SERVER_INFO, out, sizeof(out)) - 5;
	e = server_info_exact(out + 5, n, client_priv, other_pub, json, sizeof(json));
	CHECK(e == MG_DERP_ERR_BOX, "server info from another server: %s", mg_derp_strerror(e));
	e = server_info_exact(out + 5, n, other_priv, server_pub, json, sizeof(json));
	CHECK(e == MG_DERP_ERR_BOX, "server info to another client: %s", mg_derp_strerror(e));
}

/* The codec's boxes are crypto_box_easy's, both ways. */
static void test_box_cross(void)
{
	uint8_t out[256], body[256], plain[64], key[32];
	char json[64];
	size_t n, m, jlen = sizeof(client_json) - 1;
	int version;

	n = build_frame(F_CLIENT_INFO, out, sizeof(out));
	CHECK(!memcmp(out + 5, client_pub, 32) && !memcmp(out + 37, nonce1, 24) &&
		  crypto_box_open_easy(plain, out + 61, n - 61, nonce1, client_pub, server_priv) ==
		      0 &&
		  n - 61 == 16 + jlen && !memcmp(plain, client_json, jlen),
	      "client info: key, nonce, crypto_box_easy(json) that crypto_box_open_easy opens");
	memcpy(body, client_pub, 32);
	memcpy(body + 32, nonce1, 24);
	if (crypto_box_easy(body + 56, (const uint8_t *)client_json, jlen, nonce1, server_pub,
			    client_priv))
		abort();
	m = 56 + 16 + jlen;
	CHECK(client_info_exact(body, m, server_priv, key, &version, json, sizeof(json)) ==
		      MG_DERP_OK &&
		  !memcmp(key, client_pub, 32) && version == 2 && !strcmp(json, client_json) &&
		  m == n - 5 && !memcmp(body, out + 5, m),
	      "client info sealed by crypto_box_easy parses, same bytes as the builder's");

	jlen = sizeof(server_json) - 1;
	n = build_frame(F_SERVER_INFO, out, sizeof(out));
	CHECK(!memcmp(out + 5, nonce1, 24) &&
		  crypto_box_open_easy(plain, out + 29, n - 29, nonce1, server_pub, client_priv) ==
		      0 &&
		  n - 29 == 16 + jlen && !memcmp(plain, server_json, jlen),
	      "server info: nonce, crypto_box_easy(json) that crypto_box_open_easy opens");
	memcpy(body, nonce1, 24);
	if (crypto_box_easy(body + 24, (const uint8_t *)server_json, jlen, nonce1, client_pub,
			    server_priv))
		abort();
	m = 24 + 16 + jlen;
	CHECK(server_info_exact(body, m, client_priv, server_pub, json, sizeof(json)) ==
		      MG_DERP_OK &&
		  !strcmp(json, server_json) && m == n - 5 && !memcmp(body, out + 5, m),
	      "server info sealed by crypto_box_easy parses, same bytes as the builder's");

	/* A plaintext with a NUL, which the builder cannot make. */
	memcpy(body, client_pub, 32);
	memcpy(body + 32, nonce1, 24);
	if (crypto_box_easy(body + 56, (const uint8_t *)"{}\0", 3, nonce1, server_pub, client_priv))
		abort();
	CHECK(client_info_exact(body, 56 + 16 + 3, server_priv, key, &version, json,
				sizeof(json)) == MG_DERP_ERR_JSON,
	      "client info json with a NUL byte: json");
	if (crypto_box_easy(body + 56, (const uint8_t *)"{\"a\":\"\0\"}", 9, nonce1, server_pub,
			    client_priv))
		abort();
	CHECK(client_info_exact(body, 56 + 16 + 9, server_priv, key, &version, json,
				sizeof(json)) == MG_DERP_ERR_JSON,
	      "client info json with a NUL in a string: json");
}

static const struct {
	const char *json;
	enum mg_derp_err want;
	int version;
} client_json_cases[] = {
    /* 1 */ {"{\"version\":2,\"canAckPings\":true}", MG_DERP_OK, 2},
    /* 2 */ {"{}", MG_DERP_OK, 0},
    /* 3 */ {" {\"canAckPings\":true} \n", MG_DERP_OK, 0},
    /* 4 */ {"{\"version\":7}", MG_DERP_OK, 7},
    /* 5 */ {"{\"version\":0}", MG_DERP_OK, 0},
    /* 6 */ {"{\"version\":1000}", MG_DERP_OK, 1000},
    /* 7 */ {"{\"meshKey\":\"x\",\"version\":2,\"isProber\":false}", MG_DERP_OK, 2},
    /* 8 */ {"{\"version\":-1}", MG_DERP_ERR_VERSION, 0},
    /* 9 */ {"{\"version\":1001}", MG_DERP_ERR_VERSION, 0},
    /* 10 */ {"{\"version\":\"2\"}", MG_DERP_ERR_VERSION, 0},
    /* 11 */ {"{\"version\":2.0}", MG_DERP_ERR_VERSION, 0},
    /* 12 */ {"{\"version\":null}", MG_DERP_ERR_VERSION, 0},
    /* 13 */ {"{\"version\":true}", MG_DERP_ERR_VERSION, 0},
    /* 14 */ {"{\"version\":[2]}", MG_DERP_ERR_VERSION, 0},
    /* 15 */ {"{\"version\":99999999999999999999}", MG_DERP_ERR_JSON, 0},
    /* 16 */ {"[]", MG_DERP_ERR_JSON, 0},
    /* 17 */ {"[{\"version\":2}]", MG_DERP_ERR_JSON, 0},
    /* 18 */ {"2", MG_DERP_ERR_JSON, 0},
    /* 19 */ {"\"version\"", MG_DERP_ERR_JSON, 0},
    /* 20 */ {"null", MG_DERP_ERR_JSON, 0},
    /* 21 */ {"", MG_DERP_ERR_JSON, 0},
    /* 22 */ {"{", MG_DERP_ERR_JSON, 0},
    /* 23 */ {"{\"version\":2", MG_DERP_ERR_JSON, 0},
    /* 24 */ {"{\"version\":2}x", MG_DERP_ERR_JSON, 0},
    /* 25 */ {"{}{}", MG_DERP_ERR_JSON, 0},
    /* 26 */ {"{\"version\":2,\"version\":3}", MG_DERP_ERR_JSON, 0},
    /* 27 */ {"{'version':2}", MG_DERP_ERR_JSON, 0},
    /* 28 */ {"{\"a\":\"\x01\"}", MG_DERP_ERR_JSON, 0},
    /* 29 */ {"{\"a\":\"\xff\"}", MG_DERP_ERR_JSON, 0},
};

static void test_client_json(void)
{
	uint8_t out[256], key[32];
	char json[128];

	for (size_t i = 0; i < ARRAY_SIZE(client_json_cases); i++) {
		const char *in = client_json_cases[i].json;
		size_t n = mg_derp_build_client_info(out, sizeof(out), client_pub, client_priv,
						     server_pub, nonce1, in);
		int version = -1;
		enum mg_derp_err e = n < 5 ? MG_DERP_ERR_COUNT
					   : client_info_exact(out + 5, n - 5, server_priv, key,
							       &version, json, sizeof(json));
		bool ok = client_json_cases[i].want == MG_DERP_OK;

		CHECK(n == 5 + 72 + strlen(in) && e == client_json_cases[i].want &&
			  version == client_json_cases[i].version &&
			  (ok ? !strcmp(json, in) && !memcmp(key, client_pub, 32) : !json[0]),
		      "case %zu: client json '%s': %s, version %d", i + 1, esc(in),
		      mg_derp_strerror(e), version);
	}
}

static const struct {
	const char *json;
	enum mg_derp_err want;
} server_json_cases[] = {
    /* 1 */ {"{\"version\":2}", MG_DERP_OK},
    /* 2 */ {"{}", MG_DERP_OK},
    /* 3 */ {"{\"version\":\"two\"}", MG_DERP_OK}, /* the client does not check it */
    /* 4 */ {"{\"version\":5000}", MG_DERP_OK},
    /* 5 */ {"{\"tokenBucketBytesPerSecond\":0,\"tokenBucketBytesBurst\":0}", MG_DERP_OK},
    /* 6 */ {"[]", MG_DERP_ERR_JSON},
    /* 7 */ {"", MG_DERP_ERR_JSON},
    /* 8 */ {"nope", MG_DERP_ERR_JSON},
    /* 9 */ {"{\"a\":1,\"a\":2}", MG_DERP_ERR_JSON},
};

static void test_server_json(void)
{
	uint8_t out[256];
	char json[128];

	for (size_t i = 0; i < ARRAY_SIZE(server_json_cases); i++) {
		const char *in = server_json_cases[i].json;
		size_t n = mg_derp_build_server_info(out, sizeof(out), server_priv, client_pub,
						     nonce1, in);
		enum mg_derp_err e = n < 5 ? MG_DERP_ERR_COUNT
					   : server_info_exact(out + 5, n - 5, client_priv,
							       server_pub, json, sizeof(json));
		bool ok = server_json_cases[i].want == MG_DERP_OK;

		CHECK(n == 5 + 40 + strlen(in) && e == server_json_cases[i].want &&
			  (ok ? !strcmp(json, in) : !json[0]),
		      "case %zu: server json '%s': %s", i + 1, esc(in), mg_derp_strerror(e));
	}
}

/* json is truncated to json_cap - 1 and NUL-terminated; NULL with cap 0. */
static void test_json_cap(void)
{
	uint8_t out[256], key[32];
	char json[8];
	size_t n = build_frame(F_CLIENT_INFO, out, sizeof(out)) - 5;
	int version;
	enum mg_derp_err e;

	memset(json, 'z', sizeof(json));
	e = client_info_exact(out + 5, n, server_priv, key, &version, json, 5);
	CHECK(e == MG_DERP_OK && !strcmp(json, "{\"ve") && json[5] == 'z',
	      "client info, json_cap 5: '%s', nothing written past it", json);
	e = client_info_exact(out + 5, n, server_priv, key, &version, json, 1);
	CHECK(e == MG_DERP_OK && json[0] == '\0', "client info, json_cap 1: empty string");
	e = client_info_exact(out + 5, n, server_priv, key, &version, NULL, 0);
	CHECK(e == MG_DERP_OK && version == 2, "client info, json NULL and cap 0");

	n = build_frame(F_SERVER_INFO, out, sizeof(out)) - 5;
	e = server_info_exact(out + 5, n, client_priv, server_pub, json, 4);
	CHECK(e == MG_DERP_OK && !strcmp(json, "{\"v"), "server info, json_cap 4: '%s'", json);
	e = server_info_exact(out + 5, n, client_priv, server_pub, NULL, 0);
	CHECK(e == MG_DERP_OK, "server info, json NULL and cap 0");
}

static void test_strerror(void)
{
	bool distinct = true;

	for (int i = 0; i < MG_DERP_ERR_COUNT; i++)
		for (int j = 0; j < i; j++)
			distinct &= strcmp(mg_derp_strerror(i), mg_derp_strerror(j)) != 0;
	CHECK(distinct, "strerror: %d distinct phrases", MG_DERP_ERR_COUNT);
	CHECK(!strcmp(mg_derp_strerror(MG_DERP_OK), "ok") &&
		  !strcmp(mg_derp_strerror(MG_DERP_ERR_BOX), "box does not open"),
	      "strerror: ok, box");
	CHECK(!strcmp(mg_derp_strerror(MG_DERP_ERR_COUNT), "unknown") &&
		  !strcmp(mg_derp_strerror((enum mg_derp_err) - 1), "unknown"),
	      "strerror: out of range is 'unknown'");
}

/* HTTP. */

#define REQ_PLAIN                                                                                  \
	"GET /derp HTTP/1.1\r\nHost: derp.example.com:443\r\nConnection: Upgrade\r\n"              \
	"Upgrade: DERP\r\n\r\n"
#define REQ_FAST                                                                                   \
	"GET /derp HTTP/1.1\r\nHost: 10.0.0.1:3340\r\nConnection: Upgrade\r\nUpgrade: "            \
	"DERP\r\nDerp-Fast-Start: 1\r\n\r\n"

#define REQ_PROBE "GET /derp/probe HTTP/1.1\r\nHost: x\r\n\r\n"

static void test_http_request_build(void)
{
	char out[512];
	size_t n;

	n = mg_derp_http_request(out, sizeof(out), "derp.example.com:443", false);
	CHECK(n == strlen(REQ_PLAIN) && !strcmp(out, REQ_PLAIN), "request, no fast start");
	n = mg_derp_http_request(out, sizeof(out), "10.0.0.1:3340", true);
	CHECK(n == strlen(REQ_FAST) && !strcmp(out, REQ_FAST), "request, fast start");
	CHECK(mg_derp_http_request(out, n + 1, "10.0.0.1:3340", true) == n,
	      "request, cap of length + 1 (the NUL): fits");
	CHECK(mg_derp_http_request(out, n, "10.0.0.1:3340", true) == 0 &&
		  mg_derp_http_request(out, 0, "10.0.0.1:3340", true) == 0,
	      "request, cap of its length or 0: 0");
}

static const struct {
	const char *host;
	bool ok;
} host_cases[] = {
    /* 1 */ {"derp.example.com", true},
    /* 2 */ {"10.0.0.1:3340", true},
    /* 3 */ {"[2001:db8::1]:443", true},
    /* 4 */ {"my_host-1.Example.COM", true},
    /* 5 */ {"", false},
    /* 6 */ {"a b", false},
    /* 7 */ {"a\r\nX-Evil: 1", false},
    /* 8 */ {"a/b", false},
    /* 9 */ {"user@host", false},
    /* 10 */ {"h\xc3\xa9", false},
    /* 11 */ {"host\t", false},
    /* 12 */ {"a%20b", false},
};

static void test_http_hosts(void)
{
	char out[1024], host[300];
	size_t n;

	for (size_t i = 0; i < ARRAY_SIZE(host_cases); i++) {
		n = mg_derp_http_request(out, sizeof(out), host_cases[i].host, false);
		CHECK((n != 0) == host_cases[i].ok, "case %zu: host '%s': %zu", i + 1,
		      esc(host_cases[i].host), n);
	}
	memset(host, 'h', sizeof(host));
	host[255] = '\0';
	CHECK(mg_derp_http_request(out, sizeof(out), host, false) != 0, "host of 255 chars");
	host[255] = 'h';
	host[256] = '\0';
	CHECK(mg_derp_http_request(out, sizeof(out), host, false) == 0, "host of 256 chars: 0");
	CHECK(mg_derp_http_request(out, sizeof(out), NULL, false) == 0, "host NULL: 0");
}

enum { FULL = -2 }; /* the whole head */

static const struct {
	const char *head;
	const char *tail; /* bytes after the head, in the same buffer */
	long want;
	bool upgrade, fast, probe, metrics;
} req_cases[] = {
    /* 1 */ {REQ_PLAIN, "", FULL, true, false, false, false},
    /* 2 */ {REQ_FAST, "", FULL, true, true, false, false},
    /* 3 */
    {"GET /derp HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: derp\r\n\r\n", "", FULL,
     true, false, false, false},
    /* 4 */
    {"GET /derp HTTP/1.1\r\nUPGRADE: DeRp\r\nderp-fast-start: 1\r\n\r\n", "", FULL, true, true,
     false, false},
    /* 5 */
    {"GET /derp HTTP/1.1\r\nUpgrade:DERP\r\nDerp-Fast-Start:\t1 \r\n\r\n", "", FULL, true, true,
     false, false},
    /* 6 */
    {"GET /derp HTTP/1.1\r\nUpgrade: DERP\r\nDerp-Fast-Start: 0\r\n\r\n", "", FULL, true, false,
     false, false},
    /* 7 */
    {"GET /derp?x=1&y HTTP/1.1\r\nUpgrade: DERP\r\n\r\n", "", FULL, true, false, false, false},
    /* 8 */ {"GET /derp HTTP/1.0\r\nUpgrade: DERP\r\n\r\n", "", FULL, true, false, false, false},
    /* 9 */ {"GET /derp HTTP/1.1\r\nHost: x\r\n\r\n", "", FULL, false, false, false, false},
    /* 10 */
    {"GET /derp HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", "", FULL, false, false, false, false},
    /* 11 */
    {"GET /derp HTTP/1.1\r\nUpgrade: DERP, websocket\r\n\r\n", "", FULL, false, false, false,
     false},
    /* 12 */ {"GET /derp/probe HTTP/1.1\r\nHost: x\r\n\r\n", "", FULL, false, false, true, false},
    /* 13 */
    {"GET /derp/probe HTTP/1.1\r\nUpgrade: DERP\r\n\r\n", "", FULL, false, false, true, false},
    /* 14 */ {"GET /generate_204 HTTP/1.1\r\n\r\n", "", FULL, false, false, true, false},
    /* 15 */ {"GET /generate_204?t=5 HTTP/1.0\r\n\r\n", "", FULL, false, false, true, false},
    /* 16 */ {"GET /metrics HTTP/1.1\r\nAccept: */*\r\n\r\n", "", FULL, false, false, false, true},
    /* 17 */
    {"GET /nothing HTTP/1.1\r\nUpgrade: DERP\r\n\r\n", "", FULL, false, false, false, false},
    /* 18 */ {"GET /derpx HTTP/1.1\r\nUpgrade: DERP\r\n\r\n", "", FULL, false, false, false, false},
    /* 19 */ {"GET / HTTP/1.1\r\n\r\n", "", FULL, false, false, false, false},
    /* 20 */
    {"GET /derp HTTP/1.1\nHost: x\nUpgrade: DERP\n\n", "", FULL, true, false, false, false},
    /* 21 */ {"GET /derp HTTP/1.1\nUpgrade: DERP\r\n\n", "", FULL, true, false, false, false},
    /* 22 */ {REQ_FAST, "\x02\0\0\0\x48", FULL, true, true, false, false},
    /* 23 */
    {"GET /derp HTTP/1.1\r\nX-Name: caf\xc3\xa9\tbar\r\n\r\n", "", FULL, false, false, false,
     false},
    /* 24 */ {"GET /derp HTTP/1.1\r\nUpgrade: DERP\r\n\r", "", 0, false, false, false, false},
    /* 25 */ {"GET /derp HTTP/1.1\r\nUpgrade: DERP\r\n", "", 0, false, false, false, false},
    /* 26 */ {"GET /derp HTTP/1.1", "", 0, false, false, false, false},
    /* 27 */ {"", "", 0, false, false, false, false},
    /* 28 */ {"POST /derp HTTP/1.1\r\nUpgrade: DERP\r\n\r\n", "", -1, false, false, false, false},
    /* 29 */ {"HEAD /derp HTTP/1.1\r\n\r\n", "", -1, false, false, false, false},
    /* 30 */ {"get /derp HTTP/1.1\r\n\r\n", "", -1, false, false, false, false},
    /* 31 */ {"GET /derp HTTP/2.0\r\n\r\n", "", -1, false, false, false, false},
    /* 32 */ {"GET /derp HTTP/1.1 x\r\n\r\n", "", -1, false, false, false, false},
    /* 33 */ {"GET /derp\r\n\r\n", "", -1, false, false, false, false},
    /* 34 */ {"GET  /derp HTTP/1.1\r\n\r\n", "", -1, false, false, false, false},
    /* 35 */ {"GET derp HTTP/1.1\r\n\r\n", "", -1, false, false, false, false},
    /* 36 */ {"GET /derp HTTP/1.1\r\nHost x\r\n\r\n", "", -1, false, false, false, false},
    /* 37 */ {"GET /derp HTTP/1.1\r\n: x\r\n\r\n", "", -1, false, false, false, false},
    /* 38 */ {"GET /derp HTTP/1.1\r\nUpgrade : DERP\r\n\r\n", "", -1, false, false, false, false},
    /* 39 */
    {"GET /derp HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", "", -1, false, false, false, false},
    /* 40 */ {"GET /derp HTTP/1.1\r\nHost: a\x01z\r\n\r\n", "", -1, false, false, false, false},
    /* 41 */ {"GET /derp HTTP/1.1\r\nHost: a\rz\r\n\r\n", "", -1, false, false, false, false},
    /* 42 */ {"GET /derp HTTP/1.1\r\nHost: a\x7fz\r\n\r\n", "", -1, false, false, false, false},
    /* 43 */ {"GET /derp HTTP/1.1\r\nHost: \x1b[0m\r\n\r\n", "", -1, false, false, false, false},
    /* 44 */ {"\r\nGET /derp HTTP/1.1\r\n\r\n", "", -1, false, false, false, false},
    /* 45 */ {"\r\n\r\n", "", -1, false, false, false, false},
    /* 46 */ {"GET /de\trp HTTP/1.1\r\n\r\n", "", -1, false, false, false, false},
    /* 47 */ {"GET /derp HTTP/1.1\r\nUp(grade): DERP\r\n\r\n", "", -1, false, false, false, false},
};

static void test_http_request_parse(void)
{
	char buf[512];

	for (size_t i = 0; i < ARRAY_SIZE(req_cases); i++) {
		size_t hlen = strlen(req_cases[i].head), tlen = strlen(req_cases[i].tail);
		long want = req_cases[i].want == FULL ? (long)hlen : req_cases[i].want;
		struct mg_derp_http_req r;
		long got;

		memcpy(buf, req_cases[i].head, hlen);
		memcpy(buf + hlen, req_cases[i].tail, tlen);
		memset(&r, 0xff, sizeof(r));
		got = req_exact(buf, hlen + tlen, &r);
		CHECK(got == want && r.upgrade_derp == req_cases[i].upgrade &&
			  r.fast_start == req_cases[i].fast && r.probe == req_cases[i].probe &&
			  r.metrics == req_cases[i].metrics,
		      "case %zu: request: %ld (upgrade %d, fast %d, probe %d, metrics %d)", i + 1,
		      got, r.upgrade_derp, r.fast_start, r.probe, r.metrics);
	}
}

/* Heads around MG_DERP_MAX_HTTP, and a NUL. */
static void test_http_request_limits(void)
{
	static char buf[MG_DERP_MAX_HTTP * 3];
	const char *line = "GET /derp HTTP/1.1\r\nUpgrade: DERP\r\nX-Pad: ";
	size_t l = strlen(line);
	struct mg_derp_http_req r;
	long got;

	/* A head of exactly `size` bytes: line, padding, "\r\n\r\n". */
	for (size_t size = MG_DERP_MAX_HTTP - 1; size <= MG_DERP_MAX_HTTP + 1; size++) {
		long want = size <= MG_DERP_MAX_HTTP ? (long)size : -1;

		memcpy(buf, line, l);
		memset(buf + l, 'p', size - l - 4);
		memcpy(buf + size - 4, "\r\n\r\n", 4);
		got = req_exact(buf, size, &r);
		CHECK(got == want && (got < 0 || r.upgrade_derp), "head of %zu bytes: %ld", size,
		      got);
		/* The same followed by frames. */
		memset(buf + size, 0, MG_DERP_MAX_HTTP);
		got = req_exact(buf, size + MG_DERP_MAX_HTTP, &r);
		CHECK(got == want, "head of %zu bytes and %u more: %ld", size, MG_DERP_MAX_HTTP,
		      got);
		/* Without its final "\n": no end in sight. */
		got = req_exact(buf, size - 1, &r);
		CHECK(got == (size - 1 <= MG_DERP_MAX_HTTP ? 0 : -1), "%zu bytes of a head: %ld",
		      size - 1, got);
	}
	memset(buf, 'a', sizeof(buf));
	CHECK(req_exact(buf, MG_DERP_MAX_HTTP, &r) == 0 &&
		  req_exact(buf, MG_DERP_MAX_HTTP + 1, &r) == -1 &&
		  req_exact(buf, sizeof(buf), &r) == -1,
	      "%u bytes without a line end: need more; %u or more: -1", MG_DERP_MAX_HTTP,
	      MG_DERP_MAX_HTTP + 1);

	memcpy(buf, "GET /derp HTTP/1.1\r\nHost: a\0b\r\n\r\n", 33);
	CHECK(req_exact(buf, 33, &r) == -1, "a NUL in a header: -1");
	memcpy(buf, "GET /de\0rp HTTP/1.1\r\n\r\n", 23);
	CHECK(req_exact(buf, 23, &r) == -1, "a NUL in the request line: -1");
}

/* Every proper prefix of a request or response is incomplete. */
static void test_http_truncations(void)
{
	char resp[256];
	size_t rn = mg_derp_http_response(resp, sizeof(resp), server_pub);
	const char *reqs[] = {REQ_PLAIN, REQ_FAST, "GET /derp HTTP/1.1\nUpgrade: DERP\n\n"};
	struct mg_derp_http_req r;
	size_t bad = 0, total = 0;
	uint8_t key[32];
	bool has_key;
	int status;

	for (size_t i = 0; i < ARRAY_SIZE(reqs); i++) {
		for (size_t n = 0; n < strlen(reqs[i]); n++, total++)
			bad += req_exact(reqs[i], n, &r) != 0;
	}
	CHECK(bad == 0, "requests: %zu truncations need more", total);
	bad = 0;
	for (size_t n = 0; n < rn; n++)
		bad += resp_exact(resp, n, &status, &has_key, key) != 0 || has_key || status;
	CHECK(bad == 0, "response: %zu truncations need more", rn);
}

#define KEY_HEX	      "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define KEY_HEX_UPPER "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"

static const struct {
	const char *head;
	const char *tail;
	long want;
	int status;
	bool has_key;
} resp_cases[] = {
    /* 1 */ {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n"
	     "Derp-Version: 2\r\nDerp-Public-Key: " KEY_HEX "\r\n\r\n",
	     "", FULL, 101, true},
    /* 2 */
    {"HTTP/1.1 101 Switching Protocols\r\nDerp-Public-Key: " KEY_HEX_UPPER "\r\n\r\n", "", FULL,
     101, true},
    /* 3 */
    {"HTTP/1.1 101 Switching Protocols\r\nderp-public-key:   " KEY_HEX " \r\n\r\n", "", FULL, 101,
     true},
    /* 4 */
    {"HTTP/1.1 101 Switching Protocols\nDerp-Public-Key: " KEY_HEX "\n\n", "", FULL, 101, true},
    /* 5 */
    {"HTTP/1.1 101 Switching Protocols\r\nDerp-Public-Key: " KEY_HEX "\r\n\r\n",
     "\x01\0\0\0\x28"
     "DERP",
     FULL, 101, true},
    /* 6 */
    {"HTTP/1.1 101 Switching Protocols\r\nDerp-Public-Key: "
     "g00102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\r\n\r\n",
     "", FULL, 101, false},
    /* 7 */
    {"HTTP/1.1 101 Switching Protocols\r\nDerp-Public-Key: "
     "00102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\r\n\r\n",
     "", FULL, 101, false},
    /* 8 */
    {"HTTP/1.1 101 Switching Protocols\r\nDerp-Public-Key: " KEY_HEX "0\r\n\r\n", "", FULL, 101,
     false},
    /* 9 */
    {"HTTP/1.1 101 Switching Protocols\r\nDerp-Public-Key: 00:01\r\n\r\n", "", FULL, 101, false},
    /* 10 */ {"HTTP/1.1 101 Switching Protocols\r\nDerp-Public-Key:\r\n\r\n", "", FULL, 101, false},
    /* 11 */ {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\n\r\n", "", FULL, 101, false},
    /* 12 */ {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "", FULL, 200, false},
    /* 13 */ {"HTTP/1.0 404\r\n\r\n", "", FULL, 404, false},
    /* 14 */ {"HTTP/1.1 426 Upgrade Required\r\n\r\n", "body", FULL, 426, false},
    /* 15 */ {"HTTP/1.1 101 Switching Protocols\r\n", "", 0, 0, false},
    /* 16 */ {"HTTP/1.1 101", "", 0, 0, false},
    /* 17 */ {"hello\r\n\r\n", "", -1, 0, false},
    /* 18 */ {"\r\n", "", -1, 0, false},
    /* 19 */ {"HTTP/1.1 20 OK\r\n\r\n", "", -1, 0, false},
    /* 20 */ {"HTTP/1.1 2000 OK\r\n\r\n", "", -1, 0, false},
    /* 21 */ {"HTTP/2 200 OK\r\n\r\n", "", -1, 0, false},
    /* 22 */ {"HTTP/1.1 1x1 OK\r\n\r\n", "", -1, 0, false},
    /* 23 */ {"http/1.1 101 OK\r\n\r\n", "", -1, 0, false},
    /* 24 */ {"HTTP/1.1 101 OK\r\nNo colon here\r\n\r\n", "", -1, 0, false},
    /* 25 */ {"HTTP/1.1 101 OK\r\nX: a\x02\r\n\r\n", "", -1, 0, false},
    /* 26 */ {"HTTP/1.1 101 OK\r\n Derp-Public-Key: " KEY_HEX "\r\n\r\n", "", -1, 0, false},
};

static void test_http_response(void)
{
	static char buf[MG_DERP_MAX_HTTP * 2];
	const char *pre = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: "
			  "Upgrade\r\nDerp-Version: 2\r\nDerp-Public-Key: ";
	size_t pl;
	uint8_t want_key[32], key[32];
	char out[256];
	bool has_key;
	int status;
	size_t n;
	long got;

	for (int i = 0; i < 32; i++)
		want_key[i] = (uint8_t)i;
	for (size_t i = 0; i < ARRAY_SIZE(resp_cases); i++) {
		size_t hlen = strlen(resp_cases[i].head), tlen = strlen(resp_cases[i].tail);
		long want = resp_cases[i].want == FULL ? (long)hlen : resp_cases[i].want;

		memcpy(buf, resp_cases[i].head, hlen);
		memcpy(buf + hlen, resp_cases[i].tail, tlen);
		memset(key, 0xee, sizeof(key));
		status = -7;
		got = resp_exact(buf, hlen + tlen, &status, &has_key, key);
		CHECK(got == want && status == resp_cases[i].status &&
			  has_key == resp_cases[i].has_key &&
			  (has_key ? !memcmp(key, want_key, 32) : key[0] == 0xee),
		      "case %zu: response: %ld, status %d, key %d", i + 1, got, status, has_key);
	}

	n = mg_derp_http_response(out, sizeof(out), server_pub);
	pl = strlen(pre);
	got = resp_exact(out, n, &status, &has_key, key);
	CHECK(n > 0 && got == (long)n && status == 101 && has_key && !memcmp(key, server_pub, 32),
	      "built response parses: 101 with the server key");
	CHECK(!strncmp(out, pre, pl) && n == pl + 64 + 4 && !strcmp(out + pl + 64, "\r\n\r\n"),
	      "built response: fixed head, 64 hex digits");
	for (size_t i = 0; i < 64; i++)
		if (!strchr("0123456789abcdef", out[pl + i]))
			n = 0;
	CHECK(n != 0, "built response: key in lowercase hex");
	n = pl + 64 + 4;
	CHECK(mg_derp_http_response(out, n + 1, server_pub) == n &&
		  mg_derp_http_response(out, n, server_pub) == 0 &&
		  mg_derp_http_response(out, 0, server_pub) == 0,
	      "response, cap %zu fits, %zu or 0: 0", n + 1, n);

	memcpy(buf, "HTTP/1.1 200 OK\r\nX: ", 20);
	memset(buf + 20, 'p', sizeof(buf) - 20);
	memcpy(buf + MG_DERP_MAX_HTTP - 4, "\r\n\r\n", 4);
	CHECK(resp_exact(buf, sizeof(buf), &status, &has_key, key) == MG_DERP_MAX_HTTP &&
		  status == 200,
	      "response head of %u bytes", MG_DERP_MAX_HTTP);
	memcpy(buf + MG_DERP_MAX_HTTP - 4, "p\r\n\r\n", 5);
	CHECK(resp_exact(buf, sizeof(buf), &status, &has_key, key) == -1 && status == 0,
	      "response head of %u bytes: -1", MG_DERP_MAX_HTTP + 1);
	CHECK(resp_exact(buf, MG_DERP_MAX_HTTP, &status, &has_key, key) == 0,
	      "response, %u bytes and no end yet: need more", MG_DERP_MAX_HTTP);
}

static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

/* Random edits of valid heads: whatever the parsers return stays inside
 * the input and ends a line. */
static void test_http_mutations(void)
{
	enum { ROUNDS = 50000 };
	static const char alphabet[] = "\r\n\r\n: \tGETHP/1.01derpDERP?\x01\x7f\x80";
	char resp[256], b[512];
	const char *seeds[3] = {REQ_PLAIN, REQ_FAST, resp};
	int outcomes[2][3] = {{0}}, bad = 0;

	mg_derp_http_response(resp, sizeof(resp), server_pub);
	for (int round = 0; round < ROUNDS; round++) {
		const char *s = seeds[rnd() % 3];
		size_t n = strlen(s), edits = 1 + rnd() % 4;
		struct mg_derp_http_req r;
		uint8_t key[32];
		bool has_key;
		int status;
		long got[2];

		memcpy(b, s, n);
		for (size_t e = 0; e < edits && n > 0; e++) {
			size_t at = rnd() % n;

			switch (rnd() % 3) {
			case 0: /* replace */
				b[at] = alphabet[rnd() % (sizeof(alphabet) - 1)];
				break;
			case 1: /* delete */
				memmove(b + at, b + at + 1, n - at - 1);
				n--;
				break;
			default: /* cut */
				n = at + 1;
				break;
			}
		}
		got[0] = req_exact(b, n, &r);
		got[1] = resp_exact(b, n, &status, &has_key, key);
		for (int k = 0; k < 2; k++) {
			outcomes[k][got[k] < 0 ? 0 : got[k] == 0 ? 1 : 2]++;
			bad += got[k] < -1 || got[k] > (long)n ||
			       (got[k] > 0 && b[got[k] - 1] != '\n');
		}
	}
	CHECK(bad == 0 && outcomes[0][0] && outcomes[0][1] && outcomes[0][2] && outcomes[1][0] &&
		  outcomes[1][1] && outcomes[1][2],
	      "http mutations: request -1/0/len %d/%d/%d, response %d/%d/%d", outcomes[0][0],
	      outcomes[0][1], outcomes[0][2], outcomes[1][0], outcomes[1][1], outcomes[1][2]);
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

/* The fuzz seeds: every built frame, and the HTTP heads. */
static int write_corpus(const char *dir)
{
	uint8_t out[256];
	char name[64], resp[256];
	size_t rn = mg_derp_http_response(resp, sizeof(resp), server_pub);
	int rc = 0;

	for (int i = 0; i < F_COUNT; i++) {
		size_t n = build_frame(i, out, sizeof(out));

		snprintf(name, sizeof(name), "frame-%s", frame_names[i]);
		rc |= write_file(dir, name, out, n);
	}
	rc |= write_file(dir, "http-request", REQ_PLAIN, strlen(REQ_PLAIN));
	rc |= write_file(dir, "http-request-fast-start", REQ_FAST, strlen(REQ_FAST));
	rc |= write_file(dir, "http-request-probe", REQ_PROBE, strlen(REQ_PROBE));
	rc |= write_file(dir, "http-response", resp, rn);
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
	test_wire_bytes();
	test_packets();
	test_extra_bytes();
	test_build_caps();
	test_build_limits();
	test_truncations();
	test_frame_header();
	test_box_mutations();
	test_wrong_keys();
	test_box_cross();
	test_client_json();
	test_server_json();
	test_json_cap();
	test_strerror();
	test_http_request_build();
	test_http_hosts();
	test_http_request_parse();
	test_http_request_limits();
	test_http_truncations();
	test_http_response();
	test_http_mutations();
	return test_finish("test_derp");
}
