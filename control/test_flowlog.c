// SPDX-License-Identifier: MIT
/*
 * cp_flowlog_format: a record becomes one JSON object on one line, every
 * field as documented (README "Flow logs"), names escaped, IPv4 and IPv6,
 * a peer control no longer knows as null, a buffer too small as 0.
 */
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include <jansson.h>
#include <sodium.h>

#include "flowlog.h"
#include "keys.h"
#include "test_util.h"

/* 2026-12-07T20:31:00.123Z */
#define T0 1796675460123000000ull

static json_t *parse(const char *buf, size_t n)
{
	json_error_t e;

	if (!n || buf[n - 1] != '\n' || memchr(buf, '\n', n - 1))
		return NULL;
	return json_loadb(buf, n - 1, 0, &e);
}

static const char *str(json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));
	return v ? v : "(none)";
}

static long long num(json_t *o, const char *k)
{
	return json_is_integer(json_object_get(o, k)) ? json_integer_value(json_object_get(o, k))
						      : -1;
}

int main(void)
{
	uint8_t node[32], peer[32];
	char nb[45], pb[45], buf[1024];

	if (sodium_init() < 0)
		return 2;
	memset(node, 0x11, 32);
	memset(peer, 0x22, 32);
	mg_key_to_base64(node, nb);
	mg_key_to_base64(peer, pb);

	struct mg_flow_record r = {.peer = 3,
				   .dir = MG_FLOW_TX,
				   .family = AF_INET,
				   .proto = IPPROTO_TCP,
				   .sport = 40000,
				   .dport = 443,
				   .packets = 12,
				   .bytes = 3456};
	memcpy(r.src, "\x0a\x58\x00\x01", 4);
	memcpy(r.dst, "\x0a\x63\x00\x02", 4);
	size_t n = cp_flowlog_format(buf, sizeof(buf), &r, node, peer, "laptop \"a\"", T0,
				     T0 + 2500000000ull);
	json_t *o = parse(buf, n);
	CHECK(o, "one JSON object on one line: %.*s", (int)n, buf);
	if (o) {
		CHECK(!strcmp(str(o, "start"), "2026-12-07T20:31:00.123Z") &&
			  !strcmp(str(o, "end"), "2026-12-07T20:31:02.623Z"),
		      "times: %s .. %s", str(o, "start"), str(o, "end"));
		CHECK(!strcmp(str(o, "node"), nb) && !strcmp(str(o, "peer"), pb), "keys");
		CHECK(!strcmp(str(o, "peer_name"), "laptop \"a\""), "the name, escaped and back");
		CHECK(!strcmp(str(o, "dir"), "tx") && !strcmp(str(o, "proto"), "tcp"), "tx, tcp");
		CHECK(!strcmp(str(o, "src"), "10.88.0.1") && num(o, "sport") == 40000 &&
			  !strcmp(str(o, "dst"), "10.99.0.2") && num(o, "dport") == 443,
		      "10.88.0.1:40000 -> 10.99.0.2:443");
		CHECK(num(o, "packets") == 12 && num(o, "bytes") == 3456, "counts");
		CHECK(json_object_size(o) == 13, "13 fields (%zu)", json_object_size(o));
		json_decref(o);
	}

	r.dir = MG_FLOW_RX;
	r.family = AF_INET6;
	r.proto = 47; /* GRE: by number */
	memset(r.src, 0, 16);
	memset(r.dst, 0, 16);
	r.src[0] = 0xfd, r.src[15] = 1;
	r.dst[0] = 0xfd, r.dst[15] = 2;
	n = cp_flowlog_format(buf, sizeof(buf), &r, node, NULL, "", T0, T0);
	o = parse(buf, n);
	CHECK(o, "IPv6: %.*s", (int)n, buf);
	if (o) {
		CHECK(!strcmp(str(o, "src"), "fd00::1") && !strcmp(str(o, "dst"), "fd00::2"),
		      "IPv6 addresses");
		CHECK(!strcmp(str(o, "dir"), "rx") && !strcmp(str(o, "proto"), "47"),
		      "rx, proto 47");
		CHECK(json_is_null(json_object_get(o, "peer")) && !json_object_get(o, "peer_name"),
		      "a peer control does not know: null, no name");
		json_decref(o);
	}
	CHECK(cp_flowlog_format(buf, 40, &r, node, peer, "x", T0, T0) == 0,
	      "a buffer too small: 0");
	return test_finish("test_cp_flowlog");
}
