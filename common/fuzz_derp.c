/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness for the DERP codec. The input is what a peer might send
 * on a DERP connection: it goes through mg_derp_frame, the frame's body (the
 * whole input when it is not one complete frame) through every body parser,
 * and the whole input through both HTTP parsers. Checks their contracts:
 * lengths stay inside the input, and an info box that opens, rebuilt with
 * the same keys and nonce, gives back the same bytes.
 *
 * The box parsers use fixed keys, the same as test_derp.c's, which also
 * writes the seed corpus (test_derp --write-corpus common/corpus/derp).
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "derp.h"

static uint8_t server_priv[32], server_pub[32], client_priv[32], client_pub[32];

static void keys_init(void)
{
	static bool done;

	if (done)
		return;
	if (sodium_init() < 0)
		abort();
	memset(server_priv, 0x53, sizeof(server_priv));
	memset(client_priv, 0x43, sizeof(client_priv));
	if (crypto_scalarmult_base(server_pub, server_priv) ||
	    crypto_scalarmult_base(client_pub, client_priv))
		abort();
	done = true;
}

static void check_err(enum mg_derp_err e)
{
	if ((unsigned)e >= MG_DERP_ERR_COUNT)
		abort();
}

/* A NUL-terminated json of at most MG_DERP_MAX_JSON bytes. */
static size_t check_json(const char *json)
{
	size_t len = strnlen(json, MG_DERP_MAX_JSON + 1);

	if (len > MG_DERP_MAX_JSON)
		abort();
	return len;
}

static void fuzz_client_info(const uint8_t *body, size_t n)
{
	static uint8_t again[MG_DERP_HDR_LEN + MG_DERP_MAX_INFO];
	char json[MG_DERP_MAX_JSON + 1];
	uint8_t pub[32];
	int version = -1;
	enum mg_derp_err e =
	    mg_derp_parse_client_info(body, n, server_priv, pub, &version, json, sizeof(json));
	size_t len, m;

	check_err(e);
	if (e != MG_DERP_OK)
		return;
	len = check_json(json);
	if (version < 0 || version > 1000 || len + 72 != n)
		abort();
	/* Only our fixed client can have made it (or a forger of boxes). */
	if (memcmp(pub, client_pub, 32))
		return;
	m = mg_derp_build_client_info(again, sizeof(again), pub, client_priv, server_pub, body + 32,
				      json);
	if (m != MG_DERP_HDR_LEN + n || memcmp(again + MG_DERP_HDR_LEN, body, n))
		abort();
}

static void fuzz_server_info(const uint8_t *body, size_t n)
{
	static uint8_t again[MG_DERP_HDR_LEN + MG_DERP_MAX_INFO];
	char json[MG_DERP_MAX_JSON + 1];
	enum mg_derp_err e =
	    mg_derp_parse_server_info(body, n, client_priv, server_pub, json, sizeof(json));
	size_t m;

	check_err(e);
	if (e != MG_DERP_OK)
		return;
	if (check_json(json) + 40 != n)
		abort();
	m = mg_derp_build_server_info(again, sizeof(again), server_priv, client_pub, body, json);
	if (m != MG_DERP_HDR_LEN + n || memcmp(again + MG_DERP_HDR_LEN, body, n))
		abort();
}

static void fuzz_bodies(const uint8_t *body, size_t n)
{
	uint8_t key[32], data[8], reason;
	const uint8_t *pkt = NULL;
	size_t len = 0;
	enum mg_derp_err e;

	check_err(mg_derp_parse_server_key(body, n, key));
	e = mg_derp_parse_packet(body, n, key, &pkt, &len);
	check_err(e);
	if (e == MG_DERP_OK && (pkt != body + 32 || len != n - 32 || len > MG_DERP_MAX_PACKET))
		abort();
	check_err(mg_derp_parse_peer_gone(body, n, key, &reason));
	check_err(mg_derp_parse_ping(body, n, data));
	fuzz_client_info(body, n);
	fuzz_server_info(body, n);
}

/* A head parser's result: -1, 0 or a length within buf that ends a line. */
static bool head_len_ok(const char *buf, size_t size, long r)
{
	if (r <= 0)
		return r == 0 || r == -1;
	return (size_t)r <= size && r <= (long)MG_DERP_MAX_HTTP && buf[r - 1] == '\n';
}

static void fuzz_http(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct mg_derp_http_req req;
	uint8_t key[32];
	bool has_key;
	int status;
	long r;

	r = mg_derp_http_parse_request(buf, size, &req);
	if (!head_len_ok(buf, size, r))
		abort();
	if (r > 0 && (req.upgrade_derp + req.probe + req.metrics) > 1)
		abort();
	r = mg_derp_http_parse_response(buf, size, &status, &has_key, key);
	if (!head_len_ok(buf, size, r))
		abort();
	if (r > 0 && (status < 0 || status > 999))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t type = 0;
	uint32_t body_len = 0;
	long r;

	keys_init();
	r = mg_derp_frame(data, size, MG_DERP_MAX_BODY, &type, &body_len);
	if (r < -1 || (r > 0 && ((size_t)r > size || (size_t)r != MG_DERP_HDR_LEN + body_len)) ||
	    (r == -1 && body_len <= MG_DERP_MAX_BODY))
		abort();
	if (r > 0)
		fuzz_bodies(data + MG_DERP_HDR_LEN, body_len);
	else
		fuzz_bodies(data, size);
	fuzz_http(data, size);
	return 0;
}
