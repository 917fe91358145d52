// SPDX-License-Identifier: MIT
/*
 * Coordination protocol, node side:
 *  - netmap parser: a full map and a delta field by field; a numbered table
 *    of malformed answers, each with the exact error and nothing returned;
 *  - register/update/error answers, request bodies;
 *  - the request signer against a signature made by OpenSSL from the same
 *    seed (pinned), verified with crypto_sign_verify_detached;
 *  - the state file: round trip, mode 0600, atomic replace, refusals;
 *  - netmap application on a device without a dataplane: full map, deltas
 *    that touch only what they name, config peers left alone.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "addr.h"
#include "coord.h"
#include "cp.h"
#include "keys.h"
#include "log.h"

static int failures, checks;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		checks++;                                                                          \
		if (!(cond)) {                                                                     \
			failures++;                                                                \
			fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                            \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
		}                                                                                  \
	} while (0)

#define KEY_A "OQPAHzNvle7L7cZg2pbygZ9GjvYfgRMZ8qdcYjhcpQY="
#define KEY_B "xFnK1cCJUHuV3ufT8mAVjC8RZELsdg+ehwfT4+irG2A="
#define KEY_C "YBGnQN5g8c6o3kNtVEy3sEbwMnuBQeYaf6r+ssyjk1s="

static const char *pfx(const struct mg_prefix *p)
{
	static char buf[4][MG_PREFIX_STRLEN];
	static int i;

	i = (i + 1) % 4;
	return mg_prefix_fmt(p, buf[i], sizeof(buf[i]));
}

static bool zeroed(const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

/* ---- parser ---------------------------------------------------------------- */

#define PEER_A                                                                                     \
	"{\"node_id\": 7, \"name\": \"gw2\", \"node_key\": \"" KEY_A "\","                         \
	" \"addresses\": [\"100.64.0.7/32\", \"fd7a:115c:a1e0::7/128\"],"                          \
	" \"allowed_ips\": [\"100.64.0.7/32\", \"fd7a:115c:a1e0::7/128\", \"10.77.0.1/16\"],"      \
	" \"endpoints\": [\"[2001:db8::9]:51820\", \"198.51.100.9:51820\"], \"online\": true,"     \
	" \"key_expiry\": 0, \"plain_wireguard\": false}"
#define PEER_B                                                                                     \
	"{\"node_id\": 3, \"name\": \"phone\", \"node_key\": \"" KEY_B "\","                       \
	" \"allowed_ips\": [\"100.64.0.3/32\"], \"plain_wireguard\": true, \"future\": [1]}"
#define SELF                                                                                       \
	"\"self\": {\"node_id\": 12, \"name\": \"gw1\", \"node_key\": \"" KEY_C "\","              \
	" \"addresses\": [\"100.64.0.12/32\"], \"key_expiry\": 1767225600,"                        \
	" \"tags\": [\"tag:gw\"], \"primary_routes\": [\"10.88.0.0/24\"]}"
#define RULE                                                                                       \
	"{\"family\": 4, \"proto\": 6, \"src\": \"100.64.0.7/32\", \"dst\": \"10.88.0.0/24\","     \
	" \"ports\": [22, 22]}"

static const char full_map[] =
    "{\"version\": 57, \"full\": true, " SELF ", \"peers\": [" PEER_A ", " PEER_B
    "], \"packet_filter\": [" RULE ", {\"family\": 6, \"proto\": 0, \"src\": \"::/0\","
    " \"dst\": \"fd7a:115c:a1e0::c/128\"}], \"derp_map\": {}}";

static void test_full_map(void)
{
	struct cp_coord_map m;
	char err[256];
	int ret = cp_coord_map_parse(full_map, strlen(full_map), &m, err, sizeof(err));
	uint8_t key[32];

	CHECK(ret == 0, "full map: %s", err);
	if (ret)
		return;
	CHECK(m.version == 57 && m.full && !m.keepalive && m.has_self && m.has_filter, "flags");
	CHECK(m.self.node_id == 12 && !strcmp(m.self.name, "gw1") && m.self.n_addrs == 1 &&
		  !strcmp(pfx(&m.self.addrs[0]), "100.64.0.12/32") &&
		  m.self.key_expiry == 1767225600,
	      "self");
	CHECK(m.n_peers == 2 && m.peers[0].node_id == 3 && m.peers[1].node_id == 7,
	      "peers sorted by node_id");
	const struct cp_coord_peer *a = &m.peers[1], *b = &m.peers[0];
	mg_key_from_base64(KEY_A, key);
	CHECK(!memcmp(a->node_key, key, 32) && !strcmp(a->name, "gw2") && a->online &&
		  a->n_addrs == 2 && a->n_aips == 3 && !strcmp(pfx(&a->aips[2]), "10.77.0.0/16") &&
		  a->n_eps == 2 && a->eps[1].family == AF_INET && a->eps[1].port == 51820,
	      "peer gw2");
	CHECK(b->plain_wireguard && !b->online && b->n_eps == 0 && b->n_aips == 1, "peer phone");
	CHECK(m.n_rules == 2 && m.rules[0].family == AF_INET && m.rules[0].proto == 6 &&
		  m.rules[0].src_len == 32 && m.rules[0].dst_len == 24 &&
		  m.rules[0].dport_lo == 22 && m.rules[0].dport_hi == 22 &&
		  m.rules[1].family == AF_INET6 && m.rules[1].dport_lo == 0 &&
		  m.rules[1].dport_hi == 65535 && m.rules[1].acl_index == 1,
	      "rules");
	cp_coord_map_free(&m);
}

static void test_delta_map(void)
{
	static const char delta[] = "{\"version\": 58, \"full\": false, \"peers_changed\": [" PEER_B
				    "], \"peers_removed\": [9, 7]}";
	static const char ka[] = "{\"version\": 58, \"keepalive\": true}";
	struct cp_coord_map m;
	char err[256];
	int ret = cp_coord_map_parse(delta, strlen(delta), &m, err, sizeof(err));

	CHECK(ret == 0, "delta: %s", err);
	CHECK(!m.full && !m.has_self && !m.has_filter && m.n_peers == 1 && m.n_removed == 2 &&
		  m.removed[0] == 7 && m.removed[1] == 9,
	      "delta fields");
	cp_coord_map_free(&m);
	ret = cp_coord_map_parse(ka, strlen(ka), &m, err, sizeof(err));
	CHECK(ret == 0 && m.keepalive && m.version == 58 && !m.n_peers, "keepalive: %s", err);
	cp_coord_map_free(&m);
}

struct bad_map {
	const char *text;
	const char *want; /* the whole error message */
};

#define FULL(peers, rules)                                                                         \
	"{\"version\": 5, \"full\": true, " SELF ", \"peers\": [" peers                            \
	"], \"packet_filter\": [" rules "]}"
#define P(fields) "{\"node_id\": 7, \"name\": \"gw2\", \"node_key\": \"" KEY_A "\", " fields "}"
#define DERP(dm)                                                                                   \
	"{\"version\": 5, \"full\": true, " SELF ", \"peers\": [], \"packet_filter\": [], "        \
	"\"derp_map\": " dm "}"
#define REGIONS(r) "{\"regions\": [" r "]}"

static const struct bad_map bad_maps[] = {
    /* 1 */ {"", "bad JSON at byte 0: '[' or '{' expected near end of file"},
    /* 2 */ {"[]", "expected an object, got an array"},
    /* 3 */ {"{\"full\": true}", "version: missing"},
    /* 4 */
    {"{\"version\": -1, \"full\": true}", "version: -1 out of range 0..9223372036854775807"},
    /* 5 */ {"{\"version\": 1}", "full: missing"},
    /* 6 */ {"{\"version\": 1, \"full\": \"yes\"}", "full: expected true or false, got a string"},
    /* 7 */
    {"{\"version\": 1, \"full\": true, \"peers\": [], \"packet_filter\": []}", "self: missing"},
    /* 8 */ {"{\"version\": 1, \"full\": true, " SELF ", \"packet_filter\": []}", "peers: missing"},
    /* 9 */ {"{\"version\": 1, \"full\": true, " SELF ", \"peers\": []}", "packet_filter: missing"},
    /* 10 */ {FULL("5", ""), "peers[0]: expected an object, got an integer"},
    /* 11 */ {FULL("{\"node_id\": 7}", ""), "peers[0].name: missing"},
    /* 12 */
    {FULL(P("\"allowed_ips\": [\"10.0.0.0/33\"]"), ""),
     "peers[0].allowed_ips[0]: \"10.0.0.0/33\": not a prefix"},
    /* 13 */
    {FULL("{\"node_id\": 7, \"name\": \"gw2\", \"node_key\": \"abc\", \"allowed_ips\": []}", ""),
     "peers[0].node_key: not a base64 key (44 characters)"},
    /* 14 */
    {FULL(P("\"allowed_ips\": [], \"endpoints\": [\"gw.example:51820\"]"), ""),
     "peers[0].endpoints[0]: \"gw.example:51820\": not ip:port"},
    /* 15 */
    {FULL(P("\"allowed_ips\": []") ", " P("\"allowed_ips\": []"), ""),
     "peers: nodes 7 and 7 have the same node_key"},
    /* 16 */
    {FULL(P("\"allowed_ips\": [], \"online\": 1"), ""),
     "peers[0].online: expected true or false, got an integer"},
    /* 17 */
    {FULL(P("\"allowed_ips\": 5"), ""), "peers[0].allowed_ips: expected an array, got an integer"},
    /* 18 */
    {FULL("", "{\"family\": 5, \"proto\": 6, \"src\": \"1.2.3.4\", \"dst\": \"1.2.3.4\"}"),
     "packet_filter[0]: family 5: expected 4 or 6"},
    /* 19 */
    {FULL("", "{\"family\": 4, \"proto\": 6, \"src\": \"::/0\", \"dst\": \"1.2.3.4\"}"),
     "packet_filter[0].src: \"::/0\": not of family 4"},
    /* 20 */
    {FULL("", "{\"family\": 4, \"proto\": 256, \"src\": \"1.2.3.4\", \"dst\": \"1.2.3.4\"}"),
     "packet_filter[0].proto: 256 out of range 0..255"},
    /* 21 */
    {FULL("", RULE ", {\"family\": 4, \"proto\": 6, \"src\": \"1.2.3.4\", \"dst\": "
		   "\"1.2.3.4\", \"ports\": [30, 20]}"),
     "packet_filter[1].ports: [30, 20]: not a port range"},
    /* 22 */
    {FULL("", "{\"family\": 4, \"proto\": 6, \"src\": \"1.2.3.4\", \"dst\": 7}"),
     "packet_filter[0].dst: expected a prefix string"},
    /* 23 */
    {"{\"version\": 2, \"full\": false, \"peers_removed\": [0]}",
     "peers_removed[0]: expected a node_id (a positive integer)"},
    /* 24 */
    {"{\"version\": 2, \"full\": false, \"peers_changed\": {}}",
     "peers_changed: expected an array, got an object"},
    /* 25 */
    {"{\"version\": 2, \"version\": 3, \"full\": false}",
     "bad JSON at byte 24: duplicate object key near '\"version\"'"},
    /* 26 */
    {"{\"version\": 2, \"full\": false, \"self\": {\"node_id\": 1}}", "self.name: missing"},
    /* 27 */
    {FULL(P("\"allowed_ips\": []") ", {\"node_id\": 7, \"name\": \"x\", \"node_key\": \"" KEY_B
				   "\", \"allowed_ips\": []}",
	  ""),
     "peers: node_id 7 appears twice"},
    /* 28 */
    {FULL("{\"node_id\": 0, \"name\": \"x\", \"node_key\": \"" KEY_B "\", \"allowed_ips\": []}",
	  ""),
     "peers[0]: node_id 0"},
    /* 29 */
    {FULL("{\"node_id\": 4, \"name\": \"a\\nb\", \"node_key\": \"" KEY_B "\", \"allowed_ips\": []}",
	  ""),
     "peers[0].name: \"a?b\": control characters"},
    /* 30 */
    {FULL(P("\"allowed_ips\": [], \"addresses\": [\"100.64.0.7\"]"), ""),
     "peers[0].addresses[0]: \"100.64.0.7\": not an address/prefix-length"},
    /* 31 */
    {"{\"version\": 1, \"full\": true, \"self\": {\"node_id\": 1, \"name\": \"n\", "
     "\"node_key\": \"" KEY_C "\"}, \"peers\": [], \"packet_filter\": []}",
     "self.addresses: missing"},
    /* 32 */ {"{\"version\": 1.5, \"full\": true}", "version: expected an integer, got a number"},
    /* 33 */
    {FULL("", "{\"family\": 4, \"proto\": 6, \"src\": [], \"dst\": \"1.2.3.4\"}"),
     "packet_filter[0].src: an empty list"},
    /* 34 */
    {FULL("", "{\"family\": 4, \"proto\": 6, \"src\": [\"1.2.3.4\", \"::1\"], "
	      "\"dst\": \"1.2.3.4\"}"),
     "packet_filter[0].src[1]: \"::1\": not of family 4"},
    /* 35 */
    {FULL("", "{\"family\": 4, \"proto\": [6, 300], \"src\": \"1.2.3.4\", "
	      "\"dst\": \"1.2.3.4\"}"),
     "packet_filter[0].proto[1]: 300 out of range 0..255"},
    /* 36 */
    {FULL("", "{\"family\": 4, \"proto\": [], \"src\": \"1.2.3.4\", \"dst\": \"1.2.3.4\"}"),
     "packet_filter[0].proto: an empty list"},
    /* 37 */
    {FULL("", "{\"family\": 4, \"proto\": 6, \"src\": \"1.2.3.4\", "
	      "\"dst\": [\"1.2.3.4\"]}"),
     "packet_filter[0].dst: expected a prefix string"},
    /* 38 */
    {FULL("", "{\"family\": 4, \"proto\": \"tcp\", \"src\": \"1.2.3.4\", \"dst\": \"1.2.3.4\"}"),
     "packet_filter[0].proto: expected an integer, got a string"},
};

static void test_bad_maps(void)
{
	for (size_t i = 0; i < sizeof(bad_maps) / sizeof(bad_maps[0]); i++) {
		struct cp_coord_map m;
		char err[256] = "";
		int ret = cp_coord_map_parse(bad_maps[i].text, strlen(bad_maps[i].text), &m, err,
					     sizeof(err));

		CHECK(ret == -EINVAL, "bad map %zu: returned %d", i + 1, ret);
		CHECK(!strcmp(err, bad_maps[i].want), "bad map %zu:\n  got  %s\n  want %s", i + 1,
		      err, bad_maps[i].want);
		CHECK(zeroed(&m, sizeof(m)), "bad map %zu: output not zeroed", i + 1);
	}
}

/* A derp_map that does not parse: the map stands, without regions. */
static const struct bad_map bad_derp_maps[] = {
    /* 1 */ {DERP("5"), "derp_map: expected an object, got an integer"},
    /* 2 */ {DERP("{\"regions\": {}}"), "derp_map.regions: expected an array, got an object"},
    /* 3 */ {DERP(REGIONS("{}")), "derp_map.regions[0].id: missing"},
    /* 4 */
    {DERP(REGIONS("{\"id\": 0, \"server\": \"192.0.2.1:443\"}")),
     "derp_map.regions[0]: id 0: region ids are 1..65535"},
    /* 5 */
    {DERP(REGIONS("{\"id\": 65536, \"server\": \"192.0.2.1:443\"}")),
     "derp_map.regions[0].id: 65536 out of range 0..65535"},
    /* 6 */ {DERP(REGIONS("{\"id\": 1}")), "derp_map.regions[0].server: missing"},
    /* 7 */
    {DERP(REGIONS("{\"id\": 1, \"server\": \"derp_1.example:443\"}")),
     "derp_map.regions[0].server: derp_1.example:443: not ip:port or name:port"},
    /* 8 */
    {DERP(REGIONS("{\"id\": 1, \"server\": \"192.0.2.1\"}")),
     "derp_map.regions[0].server: 192.0.2.1: not ip:port or name:port"},
    /* 9 */
    {DERP(REGIONS("{\"id\": 1, \"server\": \"192.0.2.1:443\", \"public_key\": \"abc\"}")),
     "derp_map.regions[0].public_key: not a base64 key (44 characters)"},
    /* 10 */
    {DERP(REGIONS("{\"id\": 1, \"server\": \"192.0.2.1:443\", \"tls\": 1}")),
     "derp_map.regions[0].tls: expected true or false, got an integer"},
    /* 11 */
    {DERP(REGIONS("{\"id\": 1, \"server\": \"192.0.2.1:443\", \"server_name\": \"d.example\"}")),
     "derp_map.regions[0].server_name: only with \"tls\": true"},
    /* 12 */
    {DERP(REGIONS("{\"id\": 1, \"server\": \"192.0.2.1:443\", \"tls\": true, "
		  "\"server_name\": \"d_1.example\"}")),
     "derp_map.regions[0].server_name: not a DNS name"},
    /* 13 */
    {DERP(REGIONS("{\"id\": 1, \"server\": \"192.0.2.1:443\"}, "
		  "{\"id\": 1, \"server\": \"192.0.2.2:443\"}")),
     "derp_map.regions[1]: id 1: a duplicate"},
    /* 14 */
    {DERP(REGIONS("{\"id\": 1, \"server\": \"192.0.2.1:0\"}")),
     "derp_map.regions[0].server: 192.0.2.1:0: not ip:port or name:port"},
    /* 15 */ {DERP(REGIONS("[]")), "derp_map.regions[0]: expected an object, got an array"},
    /* 16 */
    {DERP(REGIONS("{\"id\": 1, \"server\": \"192.0.2.1:443\", \"public_key\": "
		  "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"}")),
     "derp_map.regions[0].public_key: the all-zero key"},
};

static void test_bad_derp_maps(void)
{
	for (size_t i = 0; i < sizeof(bad_derp_maps) / sizeof(bad_derp_maps[0]); i++) {
		struct cp_coord_map m;
		char err[256] = "";
		const char *t = bad_derp_maps[i].text;
		int ret = cp_coord_map_parse(t, strlen(t), &m, err, sizeof(err));

		CHECK(ret == 0 && m.full && m.has_self && m.has_filter,
		      "bad derp_map %zu: the rest of the map parses (%s)", i + 1, err);
		CHECK(m.derp_invalid && !m.has_derp && !m.n_derp && !m.derp &&
			  !strcmp(m.derp_error, bad_derp_maps[i].want),
		      "bad derp_map %zu: no regions\n  got  %s\n  want %s", i + 1, m.derp_error,
		      bad_derp_maps[i].want);
		cp_coord_map_free(&m);
	}
}

/* The server's DERP map: regions in order, optional members, and a delta
 * without one. */
#define DERP_GOOD                                                                                  \
	REGIONS("{\"id\": 2, \"server\": \"198.51.100.10:3340\", \"public_key\": \"" KEY_A "\", "  \
		"\"tls\": false}, {\"id\": 1, \"server\": \"[2001:db8::20]:443\", \"tls\": true, " \
		"\"server_name\": \"derp1.example.com\", \"future\": 1}, "                         \
		"{\"id\": 3, \"server\": \"derp3.example.com:8443\"}")

static void test_derp_map(void)
{
	static const char good[] = DERP(DERP_GOOD);
	static const char empty[] = DERP("{}");
	static const char none[] = FULL("", "");
	static const char delta[] = "{\"version\": 6, \"full\": false}";
	struct cp_coord_map m;
	char err[256], s[MG_SOCKADDR_STRLEN];
	uint8_t key[32];

	CHECK(cp_coord_map_parse(good, strlen(good), &m, err, sizeof(err)) == 0, "derp map: %s",
	      err);
	mg_key_from_base64(KEY_A, key);
	CHECK(m.has_derp && m.n_derp == 3 && m.derp[0].id == 2 && m.derp[1].id == 1 &&
		  m.derp[2].id == 3,
	      "three regions, in the map's order");
	CHECK(!m.derp[0].host[0] && !strcmp(m.derp[2].host, "derp3.example.com") &&
		  m.derp[2].server.family == 0 && m.derp[2].server.port == 8443,
	      "region 3 by name: host and port");
	CHECK(!strcmp(mg_sockaddr_fmt(&m.derp[0].server, s, sizeof(s)), "198.51.100.10:3340") &&
		  m.derp[0].pinned && !memcmp(m.derp[0].public_key, key, 32) && !m.derp[0].tls &&
		  !m.derp[0].server_name[0],
	      "region 2: plain, key pinned");
	CHECK(!strcmp(mg_sockaddr_fmt(&m.derp[1].server, s, sizeof(s)), "[2001:db8::20]:443") &&
		  !m.derp[1].pinned && m.derp[1].tls &&
		  !strcmp(m.derp[1].server_name, "derp1.example.com"),
	      "region 1: TLS with a server name, no key, an unknown member ignored");
	cp_coord_map_free(&m);
	CHECK(cp_coord_map_parse(empty, strlen(empty), &m, err, sizeof(err)) == 0 && m.has_derp &&
		  m.n_derp == 0 && !m.derp,
	      "an empty derp_map: no regions");
	cp_coord_map_free(&m);
	CHECK(cp_coord_map_parse(none, strlen(none), &m, err, sizeof(err)) == 0 && !m.has_derp &&
		  m.n_derp == 0,
	      "a full map without derp_map");
	cp_coord_map_free(&m);
	CHECK(cp_coord_map_parse(delta, strlen(delta), &m, err, sizeof(err)) == 0 && !m.has_derp,
	      "a delta without derp_map");
	cp_coord_map_free(&m);

	/* At most CP_COORD_MAX_DERP regions. */
	char *big = malloc(64 * 1024), *w = big;
	w += sprintf(w, "{\"version\": 5, \"full\": true, " SELF
			", \"peers\": [], \"packet_filter\": [], \"derp_map\": {\"regions\": [");
	for (int i = 1; i <= CP_COORD_MAX_DERP + 1; i++)
		w += sprintf(w, "%s{\"id\": %d, \"server\": \"192.0.2.1:%d\"}", i > 1 ? ", " : "",
			     i, i);
	sprintf(w, "]}}");
	CHECK(cp_coord_map_parse(big, strlen(big), &m, err, sizeof(err)) == 0 && m.derp_invalid &&
		  !m.n_derp && !strcmp(m.derp_error, "derp_map.regions: 65 entries, at most 64"),
	      "%d regions: the derp_map refused (%s), the map kept", CP_COORD_MAX_DERP + 1,
	      m.derp_error);
	cp_coord_map_free(&m);
	free(big);
}

/* "src" and "proto" lists stand for a rule per (proto, src) pair, bounded in all. */
static void test_grouped_rules(void)
{
	static const char text[] = FULL(
	    "", RULE ", {\"family\": 4, \"proto\": [6, 17], \"src\": [\"100.64.0.1/32\", "
		     "\"100.64.0.2/32\", \"10.0.0.0/8\"], \"dst\": \"100.64.0.12/32\", \"ports\": "
		     "[80, 81]}");
	struct cp_coord_map m;
	char err[256] = "";
	int ret = cp_coord_map_parse(text, strlen(text), &m, err, sizeof(err));

	CHECK(ret == 0, "grouped rules: %s", err);
	CHECK(m.n_rules == 7, "grouped rules: 1 + 2 x 3 rules, got %zu", m.n_rules);
	for (size_t i = 1; ret == 0 && i < m.n_rules; i++) {
		const struct mg_acl_rule *r = &m.rules[i];
		CHECK(r->family == AF_INET && r->proto == (i <= 3 ? 6 : 17) && r->acl_index == 1 &&
			  r->dst_len == 32 && r->dport_lo == 80 && r->dport_hi == 81 &&
			  r->src_len == ((i - 1) % 3 == 2 ? 8 : 32) &&
			  r->src[3] == ((i - 1) % 3 == 2 ? 0 : (i - 1) % 3 + 1),
		      "grouped rule %zu", i);
	}
	cp_coord_map_free(&m);

	/* 1,000 sources x 201 protocols: more than CP_COORD_MAX_RULES */
	size_t cap = 64 << 10, len = 0;
	char *big = malloc(cap);

	CHECK(big != NULL, "malloc");
	if (!big)
		return;
	len +=
	    (size_t)snprintf(big + len, cap - len,
			     "{\"version\": 5, \"full\": true, " SELF
			     ", \"peers\": [], \"packet_filter\": [{\"family\": 4, \"proto\": [");
	for (int p = 0; p < 201; p++)
		len += (size_t)snprintf(big + len, cap - len, "%s%d", p ? "," : "", p);
	len += (size_t)snprintf(big + len, cap - len, "], \"src\": [");
	for (int a = 0; a < 1000; a++)
		len += (size_t)snprintf(big + len, cap - len, "%s\"10.0.%d.%d/32\"", a ? "," : "",
					a / 256, a % 256);
	len += (size_t)snprintf(big + len, cap - len, "], \"dst\": \"100.64.0.12/32\"}]}");
	ret = cp_coord_map_parse(big, len, &m, err, sizeof(err));
	CHECK(ret == -EINVAL && !strcmp(err, "packet_filter[0]: more than 200000 rules in all"),
	      "rule bound: %d %s", ret, err);
	free(big);
}

static void test_other_answers(void)
{
	static const char reg[] = "{\"node_id\": 12, \"name\": \"gw1\", \"addresses\": "
				  "[\"100.64.0.12/32\", \"fd7a:115c:a1e0:ab12::c/128\"], "
				  "\"key_expiry\": 0, \"tailnet\": \"corp\"}";
	struct cp_coord_reg r;
	char err[256], msg[64];
	int64_t exp = 0;

	CHECK(cp_coord_reg_parse(reg, strlen(reg), &r, err, sizeof(err)) == 0 && r.node_id == 12 &&
		  r.n_addrs == 2 && !strcmp(pfx(&r.addrs[1]), "fd7a:115c:a1e0:ab12::c/128") &&
		  !strcmp(r.tailnet, "corp") && r.key_expiry == 0,
	      "register answer: %s", err);
	CHECK(cp_coord_reg_parse("{\"node_id\": 12}", 15, &r, err, sizeof(err)) == -EINVAL &&
		  !strcmp(err, "name: missing") && zeroed(&r, sizeof(r)),
	      "register answer without name: %s", err);
	CHECK(cp_coord_update_parse("{\"key_expiry\": 99}", 18, &exp, err, sizeof(err)) == 0 &&
		  exp == 99,
	      "update answer");
	CHECK(cp_coord_update_parse("{}", 2, &exp, err, sizeof(err)) == -EINVAL && exp == 99 &&
		  !strcmp(err, "key_expiry: missing"),
	      "update answer without expiry: %s", err);
	cp_coord_error_parse("{\"error\": \"pre-auth key expired\\n\"}", 35, msg, sizeof(msg));
	CHECK(!strcmp(msg, "pre-auth key expired?"), "error answer: %s", msg);
	cp_coord_error_parse("<html>", 6, msg, sizeof(msg));
	CHECK(!strcmp(msg, ""), "non-JSON error answer");
}

static void test_bodies(void)
{
	const char *eps[] = {"198.51.100.7:51820"}, *routes[] = {"10.88.0.0/24"};
	uint8_t key[32];
	struct cp_coord_req r = {.node_key = key,
				 .hostname = "gw1",
				 .auth_key = "mgk-1",
				 .endpoints = eps,
				 .n_endpoints = 1,
				 .routes = routes,
				 .n_routes = 1};
	char *b;

	mg_key_from_base64(KEY_A, key);
	b = cp_coord_req_body(&r);
	CHECK(b && !strcmp(b, "{\"node_key\":\"" KEY_A "\",\"hostname\":\"gw1\",\"auth_key\":"
			      "\"mgk-1\",\"endpoints\":[\"198.51.100.7:51820\"],\"routes\":"
			      "[\"10.88.0.0/24\"]}"),
	      "register body: %s", b);
	free(b);
	b = cp_coord_req_body(&(struct cp_coord_req){.with_version = true, .version = 57});
	CHECK(b && !strcmp(b, "{\"version\":57}"), "map body: %s", b);
	free(b);
}

/* The netmap cache: a dump parses back to the same map. */
static void test_dump(void)
{
	struct cp_coord_map m, m2;
	char err[256], *text;

	if (cp_coord_map_parse(full_map, strlen(full_map), &m, err, sizeof(err)))
		return;
	static const char with_derp[] = DERP(DERP_GOOD);
	struct cp_coord_map md;
	if (cp_coord_map_parse(with_derp, strlen(with_derp), &md, err, sizeof(err))) {
		CHECK(0, "the DERP map parses: %s", err);
		cp_coord_map_free(&m);
		return;
	}
	text = cp_coord_map_dump(&m.self, m.peers, m.n_peers, m.rules, m.n_rules, md.derp,
				 md.n_derp, m.version);
	CHECK(text && cp_coord_map_parse(text, strlen(text), &m2, err, sizeof(err)) == 0,
	      "dump parses: %s", err);
	if (text && m2.full) {
		CHECK(m2.version == 57 && m2.n_peers == 2 && m2.n_rules == 2 &&
			  !memcmp(m2.rules, m.rules, 2 * sizeof(*m.rules)) &&
			  !memcmp(&m2.self, &m.self, sizeof(m.self)),
		      "dump: map fields");
		for (size_t i = 0; i < 2; i++) {
			struct cp_coord_peer *a = &m.peers[i], *b = &m2.peers[i];
			CHECK(a->node_id == b->node_id && !strcmp(a->name, b->name) &&
				  !memcmp(a->node_key, b->node_key, 32) && a->n_aips == b->n_aips &&
				  !memcmp(a->aips, b->aips, a->n_aips * sizeof(*a->aips)) &&
				  a->n_eps == b->n_eps && !memcmp(a->eps, b->eps, sizeof(a->eps)) &&
				  a->n_addrs == b->n_addrs &&
				  !memcmp(a->addrs, b->addrs, sizeof(a->addrs)) &&
				  a->online == b->online &&
				  a->plain_wireguard == b->plain_wireguard,
			      "dump: peer %zu", i);
		}
		CHECK(m2.has_derp && m2.n_derp == 3 &&
			  !memcmp(m2.derp, md.derp, 3 * sizeof(*md.derp)),
		      "dump: the DERP map");
		cp_coord_map_free(&m2);
	}
	free(text);
	cp_coord_map_free(&m);
	cp_coord_map_free(&md);
}

/* ---- signer ------------------------------------------------------------------ */

static void test_signer(void)
{
	/* Made by `openssl pkeyutl -sign -rawin` from the same seed and string. */
	static const char want_sig[] =
	    "ZsS0+3eKnIDPpNo3yMfyrM60riOHHNR4QvelIm5YuYlq7eXfl5PVea6PM0kRpj"
	    "WJqQfdcmydt/Ad/epBLXSUAQ==";
	static const char want_str[] =
	    "meshgate-v1\nPOST\n/api/v1/machine/map\n1700000000\n00112233445566778899aabbccddeeff\n"
	    "8a4d9669945dc4f8b42e982d9fd1f7e6bbf70c632969f7986aaad09d9b334a57";
	static const char body[] = "{\"version\":0}";
	uint8_t seed[32], pk[32], sk[64], sig[64];
	struct cp_coord_auth a, a2;
	char str[512];
	size_t siglen = 0;

	for (int i = 0; i < 32; i++)
		seed[i] = (uint8_t)i;
	crypto_sign_seed_keypair(pk, sk, seed);
	CHECK(cp_coord_sign_string("POST", "/api/v1/machine/map", "1700000000",
				   "00112233445566778899aabbccddeeff", body, strlen(body), str,
				   sizeof(str)) == (int)strlen(want_str) &&
		  !strcmp(str, want_str),
	      "signed string:\n%s", str);
	CHECK(cp_coord_sign(sk, "POST", "/api/v1/machine/map", 1700000000,
			    "00112233445566778899aabbccddeeff", body, strlen(body), &a) == 0,
	      "sign");
	CHECK(!strcmp(a.machine, "mkey:A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="),
	      "machine: %s", a.machine);
	CHECK(!strcmp(a.timestamp, "1700000000") &&
		  !strcmp(a.nonce, "00112233445566778899aabbccddeeff"),
	      "timestamp, nonce");
	CHECK(!strcmp(a.signature, want_sig), "signature: %s", a.signature);
	CHECK(sodium_base642bin(sig, sizeof(sig), a.signature, strlen(a.signature), NULL, &siglen,
				NULL, sodium_base64_VARIANT_ORIGINAL) == 0 &&
		  siglen == 64 &&
		  crypto_sign_verify_detached(sig, (const uint8_t *)want_str, strlen(want_str),
					      pk) == 0,
	      "verifies");
	str[strlen(str) - 1] ^= 1; /* another body */
	CHECK(crypto_sign_verify_detached(sig, (const uint8_t *)str, strlen(str), pk) != 0,
	      "another body does not verify");
	CHECK(cp_coord_sign(sk, "POST", "/x", 1, NULL, "", 0, &a) == 0 &&
		  cp_coord_sign(sk, "POST", "/x", 1, NULL, "", 0, &a2) == 0 &&
		  strlen(a.nonce) == 32 && strspn(a.nonce, "0123456789abcdef") == 32 &&
		  strcmp(a.nonce, a2.nonce),
	      "random nonces: %s %s", a.nonce, a2.nonce);
	CHECK(cp_coord_sign(sk, "POST", "/x", 1, "short", "", 0, &a) == -EINVAL, "bad nonce");
}

/* ---- state file ---------------------------------------------------------------- */

static void write_text(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	CHECK(fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text), "write %s", path);
	close(fd);
}

static void test_state(const char *dir)
{
	char path[512], tmp[600], err[512];
	struct cp_coord_state *s = cp_coord_state_new(), *t = NULL;
	struct stat st, st2;
	int ret;

	snprintf(path, sizeof(path), "%s/mg0.state", dir);
	CHECK(cp_coord_state_load(path, &t, err, sizeof(err)) == -ENOENT && !t, "no state yet");
	strcpy(s->server, "https://coord.example");
	s->node_id = 12;
	strcpy(s->name, "gw1");
	mg_ifaddr_parse("100.64.0.12/32", &s->addrs[0]);
	mg_ifaddr_parse("fd7a:115c:a1e0:ab12::c/128", &s->addrs[1]);
	s->n_addrs = 2;
	s->key_expiry = 1767225600;
	s->key_issued = 1751587200;
	strcpy(s->hostname, "gw-1");
	s->has_routes = true;
	mg_prefix_parse("10.88.0.0/24", &s->routes[0]);
	s->n_routes = 1;
	CHECK(cp_coord_state_save(path, s, err, sizeof(err)) == 0, "save: %s", err);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600, "mode 0600: %o",
	      st.st_mode & 07777);
	ret = cp_coord_state_load(path, &t, err, sizeof(err));
	CHECK(ret == 0 && t, "load: %s", err);
	if (t) {
		CHECK(!memcmp(t->machine_seed, s->machine_seed, 32) &&
			  !memcmp(t->machine_pk, s->machine_pk, 32) &&
			  !memcmp(t->machine_sk, s->machine_sk, 64) &&
			  !memcmp(t->node_sk, s->node_sk, 32) &&
			  !memcmp(t->node_pk, s->node_pk, 32) && !strcmp(t->server, s->server) &&
			  t->node_id == 12 && !strcmp(t->name, "gw1") && t->n_addrs == 2 &&
			  !memcmp(t->addrs, s->addrs, sizeof(s->addrs)) &&
			  t->key_expiry == s->key_expiry && t->key_issued == s->key_issued &&
			  !t->logged_out && !strcmp(t->hostname, "gw-1") && t->has_routes &&
			  t->n_routes == 1 && !memcmp(t->routes, s->routes, sizeof(s->routes[0])),
		      "round trip");
		cp_coord_state_free(t);
	}
	/* Atomic: a new file takes the name; no temp file is left behind. */
	s->node_id = 13;
	CHECK(cp_coord_state_save(path, s, err, sizeof(err)) == 0 && stat(path, &st2) == 0 &&
		  st2.st_ino != st.st_ino && (st2.st_mode & 07777) == 0600,
	      "replaced by rename");
	snprintf(tmp, sizeof(tmp), "ls %s | grep -q tmp", dir);
	CHECK(system(tmp) != 0, "temp file left in %s", dir);
	/* Refusals: loose mode, bad lines (the key is never quoted), missing keys. */
	chmod(path, 0644);
	CHECK(cp_coord_state_load(path, &t, err, sizeof(err)) == -EPERM && strstr(err, "0644"),
	      "mode 0644: %s", err);
	snprintf(tmp, sizeof(tmp), "%s/bad.state", dir);
	write_text(tmp, "version=1\nmachine_key=" KEY_A "\nnode_key=" KEY_B "x\n");
	CHECK(cp_coord_state_load(tmp, &t, err, sizeof(err)) == -EINVAL &&
		  strstr(err, ":3: bad line (key \"node_key\")") && !strstr(err, "xFnK"),
	      "bad key line: %s", err);
	write_text(tmp, "version=1\nmachine_key=" KEY_A "\n");
	CHECK(cp_coord_state_load(tmp, &t, err, sizeof(err)) == -EINVAL &&
		  strstr(err, "machine_key or node_key missing"),
	      "missing node key: %s", err);
	unlink(tmp);
	unlink(path);
	cp_coord_state_free(s);
}

/* ---- netmap on a device without a dataplane ----------------------------------------- */

static const char dev_conf[] =
    "meshgate: { name = \"mgt\"; };\n"
    "dataplane: { ports = ( { name = \"wan0\"; device = \"net_null0\"; role = \"wan\";"
    " addresses = [\"198.18.0.1/24\"]; } ); };\n"
    "peers = ( { name = \"hub\"; public_key = \"" KEY_B
    "\"; allowed_ips = [\"10.9.0.0/16\"]; } );\n";

static struct cp_coord_map map_of(const char *text)
{
	struct cp_coord_map m;
	char err[256];

	if (cp_coord_map_parse(text, strlen(text), &m, err, sizeof(err))) {
		fprintf(stderr, "test map: %s\n", err);
		exit(2);
	}
	return m;
}

static struct cp_peer *dev_peer(struct cp_device *d, const char *b64)
{
	uint8_t k[32];

	mg_key_from_base64(b64, k);
	return cp_peer_find(d, k);
}

static void test_netmap(void)
{
	char k1[45], k2[45], k3[45], text[4096], err[512];
	uint8_t sk[32], pk[32];
	struct mg_config cfg;
	struct cp_device d;
	struct cp_coord_netmap *nm = cp_coord_netmap_new();
	struct cp_coord_map m;

	if (mg_config_load_string(dev_conf, "t", 0, &cfg, err, sizeof(err)) ||
	    cp_device_init(&d, &cfg)) {
		fprintf(stderr, "device: %s\n", err);
		exit(2);
	}
	cp_coord_node_key_new(sk, pk);
	cp_device_set_private_key(&d, sk);
	cp_coord_node_key_new(sk, pk), mg_key_to_base64(pk, k1);
	cp_coord_node_key_new(sk, pk), mg_key_to_base64(pk, k2);
	cp_coord_node_key_new(sk, pk), mg_key_to_base64(pk, k3);
	struct cp_peer *hub = dev_peer(&d, KEY_B);

	/* Full map: two peers, one of them with a prefix the config peer owns,
	 * one with the config peer's key (skipped). */
	snprintf(text, sizeof(text),
		 "{\"version\": 1, \"full\": true, " SELF ", \"peers\": ["
		 "{\"node_id\": 7, \"name\": \"gw2\", \"node_key\": \"%s\", \"allowed_ips\":"
		 " [\"100.64.0.7/32\", \"10.9.0.0/16\"], \"endpoints\": [\"[2001:db8::1]:1\","
		 " \"198.51.100.9:51820\"]},"
		 "{\"node_id\": 8, \"name\": \"gw3\", \"node_key\": \"%s\", \"allowed_ips\":"
		 " [\"100.64.0.8/32\"]},"
		 "{\"node_id\": 9, \"name\": \"dup\", \"node_key\": \"" KEY_B "\", \"allowed_ips\":"
		 " [\"100.64.0.9/32\"]}], \"packet_filter\": []}",
		 k1, k2);
	m = map_of(text);
	CHECK(cp_coord_netmap_apply(nm, &d, &m) == 0, "full map applied");
	cp_coord_map_free(&m);
	struct cp_peer *p1 = dev_peer(&d, k1), *p2 = dev_peer(&d, k2);
	CHECK(d.n_peers == 3 && p1 && p2 && p1->from_coord && p2->from_coord && !hub->from_coord,
	      "three peers: %u", d.n_peers);
	CHECK(p1 && p1->n_aips == 1 && !strcmp(pfx(&p1->aips[0]), "100.64.0.7/32") &&
		  p1->endpoint.family == AF_INET && p1->endpoint.port == 51820 &&
		  !strcmp(p1->name, "gw2"),
	      "gw2: config peer's prefix not taken, first IPv4 endpoint");
	CHECK(hub->n_aips == 1 && !strcmp(pfx(&hub->aips[0]), "10.9.0.0/16") &&
		  !strcmp(hub->name, "hub"),
	      "config peer untouched");
	CHECK(cp_coord_netmap_count(nm) == 3, "tracked");

	/* Delta: gw3 changes its endpoint, a new peer comes, gw2 goes. Peers it
	 * does not name keep their slot and state. */
	uint32_t hub_slot = hub->slot, p2_slot = p2->slot;
	p2->last_handshake_real_ns = 42;
	snprintf(text, sizeof(text),
		 "{\"version\": 2, \"full\": false, \"peers_changed\": ["
		 "{\"node_id\": 8, \"name\": \"gw3\", \"node_key\": \"%s\", \"allowed_ips\":"
		 " [\"100.64.0.8/32\", \"10.8.0.0/24\"], \"endpoints\": [\"203.0.113.8:41641\"]},"
		 "{\"node_id\": 10, \"name\": \"gw4\", \"node_key\": \"%s\", \"allowed_ips\":"
		 " [\"100.64.0.10/32\"]}], \"peers_removed\": [7]}",
		 k2, k3);
	m = map_of(text);
	CHECK(cp_coord_netmap_apply(nm, &d, &m) == 0, "delta applied");
	cp_coord_map_free(&m);
	p2 = dev_peer(&d, k2);
	CHECK(!dev_peer(&d, k1) && p2 && dev_peer(&d, k3) && d.n_peers == 3, "gw2 gone, gw4 in");
	CHECK(p2 && p2->slot == p2_slot && p2->last_handshake_real_ns == 42 && p2->n_aips == 2 &&
		  p2->endpoint.port == 41641,
	      "gw3 updated in place");
	CHECK(dev_peer(&d, KEY_B) == hub && hub->slot == hub_slot, "hub untouched");

	/* A key rotation of gw3 (same node id): the old key's peer goes. */
	uint8_t old2[32];
	memcpy(old2, p2->noise.public_key, 32);
	cp_coord_node_key_new(sk, pk), mg_key_to_base64(pk, k1);
	snprintf(text, sizeof(text),
		 "{\"version\": 3, \"full\": false, \"peers_changed\": ["
		 "{\"node_id\": 8, \"name\": \"gw3\", \"node_key\": \"%s\", \"allowed_ips\":"
		 " [\"100.64.0.8/32\"], \"endpoints\": [\"203.0.113.8:41641\"]}]}",
		 k1);
	m = map_of(text);
	CHECK(cp_coord_netmap_apply(nm, &d, &m) == 0, "rotation applied");
	cp_coord_map_free(&m);
	CHECK(!cp_peer_find(&d, old2) && dev_peer(&d, k1) && dev_peer(&d, k1)->n_aips == 1 &&
		  d.n_peers == 3,
	      "rotated key");

	/* Paths: a direct IPv4 endpoint before the DERP one; only a DERP one
	 * (the relay is the way); only IPv6; none. */
	cp_coord_node_key_new(sk, pk), mg_key_to_base64(pk, k1);
	cp_coord_node_key_new(sk, pk), mg_key_to_base64(pk, k2);
	cp_coord_node_key_new(sk, pk), mg_key_to_base64(pk, k3);
	char k4[45];
	cp_coord_node_key_new(sk, pk), mg_key_to_base64(pk, k4);
	snprintf(text, sizeof(text),
		 "{\"version\": 4, \"full\": true, " SELF ", \"peers\": ["
		 "{\"node_id\": 21, \"name\": \"both\", \"node_key\": \"%s\", \"allowed_ips\":"
		 " [\"100.64.0.21/32\"], \"endpoints\": [\"[2001:db8::21]:51820\","
		 " \"198.51.100.21:51820\", \"127.3.3.40:1\"]},"
		 "{\"node_id\": 22, \"name\": \"relay\", \"node_key\": \"%s\", \"allowed_ips\":"
		 " [\"100.64.0.22/32\"], \"endpoints\": [\"127.3.3.40:2\"]},"
		 "{\"node_id\": 23, \"name\": \"v6\", \"node_key\": \"%s\", \"allowed_ips\":"
		 " [\"100.64.0.23/32\"], \"endpoints\": [\"[2001:db8::23]:51820\"]},"
		 "{\"node_id\": 24, \"name\": \"none\", \"node_key\": \"%s\", \"allowed_ips\":"
		 " [\"100.64.0.24/32\"]}], \"packet_filter\": []}",
		 k1, k2, k3, k4);
	m = map_of(text);
	CHECK(cp_coord_netmap_apply(nm, &d, &m) == 0, "paths map applied");
	cp_coord_map_free(&m);
	struct cp_peer *pb = dev_peer(&d, k1), *pr = dev_peer(&d, k2), *p6 = dev_peer(&d, k3),
		       *pn = dev_peer(&d, k4);
	char e1[MG_SOCKADDR_STRLEN], e2[MG_SOCKADDR_STRLEN];
	CHECK(pb &&
		  !strcmp(mg_sockaddr_fmt(&pb->endpoint, e1, sizeof(e1)), "198.51.100.21:51820") &&
		  !memcmp(&pb->direct, &pb->endpoint, sizeof(pb->endpoint)) &&
		  pb->derp_region == 1 && pb->disco,
	      "direct IPv4 first, home region 1, disco state: %s", e1);
	CHECK(pr && !strcmp(mg_sockaddr_fmt(&pr->endpoint, e1, sizeof(e1)), "127.3.3.40:2") &&
		  !pr->direct.family && pr->derp_region == 2 && pr->disco,
	      "only a DERP endpoint: relayed through region 2 (%s)", e1);
	CHECK(p6 &&
		  !strcmp(mg_sockaddr_fmt(&p6->endpoint, e2, sizeof(e2)), "[2001:db8::23]:51820") &&
		  !p6->derp_region && !p6->disco,
	      "only IPv6: that one, no relay, no disco (%s)", e2);
	CHECK(pn && !pn->endpoint.family && !pn->derp_region, "no endpoints: none");

	/* A full map without anything: netmap peers go, the config peer stays. */
	m = map_of("{\"version\": 9, \"full\": true, " SELF
		   ", \"peers\": [], \"packet_filter\": []}");
	CHECK(cp_coord_netmap_apply(nm, &d, &m) == 0, "empty map applied");
	cp_coord_map_free(&m);
	CHECK(d.n_peers == 1 && dev_peer(&d, KEY_B) == hub && cp_coord_netmap_count(nm) == 0,
	      "only the config peer left");

	/* A bad delta changes nothing (the parser refuses it whole). */
	CHECK(cp_coord_map_parse("{\"version\": 10, \"full\": false, \"peers_removed\": [\"x\"]}",
				 55, &m, err, sizeof(err)) == -EINVAL &&
		  d.n_peers == 1,
	      "bad delta");
	cp_coord_netmap_free(nm);
	cp_device_fini(&d);
	mg_config_free(&cfg);
}

int main(void)
{
	char dir[] = "/tmp/mgcoordtestXXXXXX";

	if (sodium_init() < 0 || !mkdtemp(dir))
		return 2;
	mg_log_init("test_coord", LOG_ERR);
	test_full_map();
	test_delta_map();
	test_bad_maps();
	test_bad_derp_maps();
	test_grouped_rules();
	test_derp_map();
	test_other_answers();
	test_bodies();
	test_dump();
	test_signer();
	test_state(dir);
	test_netmap();
	rmdir(dir);
	printf("%d passed, %d failed\n", checks - failures, failures);
	return failures ? 1 : 0;
}
