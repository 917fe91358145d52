/* SPDX-License-Identifier: MIT */
/* The example config loads; bad settings are refused with a clear line. */
/* The checks below call the code under test: keep assert() in every build type. */
#undef NDEBUG
#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "conf.h"

static void bad(const char *text, const char *want)
{
	struct coord_conf c;
	char err[256];

	assert(coord_conf_parse(text, "t.conf", &c, err, sizeof(err)) < 0);
	if (!strstr(err, want)) {
		fprintf(stderr, "error \"%s\" lacks \"%s\"\n", err, want);
		assert(0);
	}
}

#define OK_HTTP "testing = { insecure_http = true; };\n"
#define KEY	"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" /* bytes 0..31 */
#define KEY31	"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==" /* bytes 0..30 */
#define TLS1	"derp_regions = ( { id = 1; server = \"10.0.0.1:1\"; tls = true; "

/* derp_regions: text after OK_HTTP, and the derp_json it gives. */
static const struct {
	const char *text, *json;
} derp_good[] = {
    {"", "{\"regions\":[]}"},
    {"derp_regions = ();", "{\"regions\":[]}"},
    {"derp_regions = [];", "{\"regions\":[]}"},
    {"derp_regions = ( { id = 1; server = \"198.51.100.10:3340\"; public_key = \"" KEY "\"; },\n"
     "  { id = 2; server = \"[2001:DB8:0::20]:443\"; tls = true;\n"
     "    server_name = \"derp2.example.com\"; } );",
     "{\"regions\":[{\"id\":1,\"server\":\"198.51.100.10:3340\",\"public_key\":\"" KEY "\","
     "\"tls\":false},{\"id\":2,\"server\":\"[2001:db8::20]:443\",\"tls\":true,"
     "\"server_name\":\"derp2.example.com\"}]}"},
    /* order kept; tls without server_name; tls = false given; the ends of the ranges */
    {"derp_regions = ( { id = 65535; server = \"[::1]:65535\"; tls = true; },\n"
     "  { id = 7; server = \"10.0.0.1:1\"; tls = false; } );",
     "{\"regions\":[{\"id\":65535,\"server\":\"[::1]:65535\",\"tls\":true},"
     "{\"id\":7,\"server\":\"10.0.0.1:1\",\"tls\":false}]}"},
    {"derp_regions = ( { id = 1; server = \"10.0.0.1:443\"; tls = true;\n"
     "  server_name = \"a-1.B2.x\"; } );",
     "{\"regions\":[{\"id\":1,\"server\":\"10.0.0.1:443\",\"tls\":true,"
     "\"server_name\":\"a-1.B2.x\"}]}"},
    /* by name: resolved by the nodes */
    {"derp_regions = ( { id = 3; server = \"derp3.example.com:443\"; tls = true; } );",
     "{\"regions\":[{\"id\":3,\"server\":\"derp3.example.com:443\",\"tls\":true}]}"},
};

/* derp_regions refused: text after OK_HTTP, what the error must say. */
static const struct {
	const char *text, *want;
} derp_bad[] = {
    {"derp_regions = ( { id = 0; server = \"10.0.0.1:1\"; } );",
     "t.conf:2: derp_regions[0].id 0: out of range 1..65535"},
    {"derp_regions = ( { id = 65536; server = \"10.0.0.1:1\"; } );",
     "derp_regions[0].id 65536: out of range"},
    {"derp_regions = ( { id = -1; server = \"10.0.0.1:1\"; } );", "derp_regions[0].id -1: out"},
    {"derp_regions = ( { id = \"1\"; server = \"10.0.0.1:1\"; } );",
     "derp_regions[0].id: wrong type"},
    {"derp_regions = ( { id = 3; server = \"10.0.0.1:1\"; },\n"
     "  { id = 3; server = \"10.0.0.2:1\"; } );",
     "t.conf:3: derp_regions[1].id 3: duplicate (also derp_regions[0])"},
    {"derp_regions = ( { server = \"10.0.0.1:1\"; } );", "derp_regions[0].id: required"},
    {"derp_regions = ( { id = 1; server = \"10.0.0.1:1\"; }, { id = 2; tls = true; } );",
     "derp_regions[1].server: required"},
    {"derp_regions = ( { id = 1; server = \"derp.example.com\"; } );",
     "derp_regions[0].server \"derp.example.com\": want ADDRESS:PORT or NAME:PORT"},
    {"derp_regions = ( { id = 1; server = \"derp_1.example.com:443\"; } );",
     "derp_regions[0].server \"derp_1.example.com:443\": want ADDRESS:PORT or NAME:PORT"},
    {"derp_regions = ( { id = 1; server = \"10.0.0.1\"; } );", "derp_regions[0].server"},
    {"derp_regions = ( { id = 1; server = \"2001:db8::1:443\"; } );", "derp_regions[0].server"},
    {"derp_regions = ( { id = 1; server = \"10.0.0.1:0\"; } );", "derp_regions[0].server"},
    {"derp_regions = ( { id = 1; server = \"10.0.0.1:65536\"; } );", "derp_regions[0].server"},
    {"derp_regions = ( { id = 1; server = 443; } );", "derp_regions[0].server: wrong type"},
    {"derp_regions = ( { id = 1; server = \"10.0.0.1:1\"; public_key = \"nope\"; } );",
     "derp_regions[0].public_key: not a base64 key"},
    {"derp_regions = ( { id = 1; server = \"10.0.0.1:1\"; public_key = \"" KEY31 "\"; } );",
     "derp_regions[0].public_key: not a base64 key"},
    {"derp_regions = ( { id = 1; server = \"10.0.0.1:1\"; public_key = \"" KEY "=\"; } );",
     "derp_regions[0].public_key: not a base64 key"},
    {"derp_regions = ( { id = 1; server = \"10.0.0.1:1\"; public_key = "
     "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"; } );",
     "derp_regions[0].public_key: the all-zero key"},
    {"derp_regions = ( { id = 1; server = \"10.0.0.1:1\"; tls = true; server_name = \"10.0.0.1\"; "
     "} );",
     "derp_regions[0].server_name \"10.0.0.1\": not a DNS name"},
    {"derp_regions = ( { id = 1; server = \"10.0.0.1:1\"; server_name = \"x.example\"; } );",
     "derp_regions[0].server_name: only with tls = true"},
    {"derp_regions = ( { id = 1; server = \"10.0.0.1:1\"; tls = false;\n"
     "  server_name = \"x.example\"; } );",
     "t.conf:3: derp_regions[0].server_name: only with tls = true"},
    {"derp_regions = ( { id = 1; server = \"10.0.0.1:1\"; tls = 1; } );",
     "derp_regions[0].tls: wrong type (want true/false)"},
    {TLS1 "server_name = \"a_b.c\"; } );", "derp_regions[0].server_name \"a_b.c\": not a DNS name"},
    {TLS1 "server_name = \"\"; } );", "derp_regions[0].server_name: empty"},
    {TLS1 "server_name = \"a..b\"; } );", "derp_regions[0].server_name \"a..b\": not a DNS name"},
    {TLS1 "server_name = \".a\"; } );", "derp_regions[0].server_name \".a\": not a DNS name"},
    {TLS1 "server_name = \"a.\"; } );", "derp_regions[0].server_name \"a.\": not a DNS name"},
    {TLS1 "server_name = \"-a.b\"; } );", "derp_regions[0].server_name \"-a.b\": not a DNS name"},
    {TLS1 "server_name = \"a-.b\"; } );", "derp_regions[0].server_name \"a-.b\": not a DNS name"},
    {"derp_regions = ( { id = 1; server = \"10.0.0.1:1\"; tls = true;\n"
     "  server_name = \"10.0.0.1:443\"; } );",
     "t.conf:3: derp_regions[0].server_name \"10.0.0.1:443\": not a DNS name"},
    {"derp_regions = ( { id = 1; server = \"10.0.0.1:1\"; bogus = 1; } );",
     "unknown setting \"derp_regions[0].bogus\""},
    {"derp_regions = ( { id = 1; server = \"10.0.0.1:1\"; ca_file = \"/x\"; } );",
     "unknown setting \"derp_regions[0].ca_file\""},
    {"derp_regions = ( { id = 1; server = \"10.0.0.1:1\"; }, 5 );",
     "derp_regions[1]: want a group"},
    {"derp_regions = [ 1, 2 ];", "derp_regions[0]: want a group"},
    {"derp_regions = { id = 1; server = \"10.0.0.1:1\"; };", "derp_regions: want a list"},
    {"derp_regions = \"10.0.0.1:1\";", "derp_regions: want a list"},
    {"limits = { derp_regions = (); };", "unknown setting \"limits.derp_regions\""},
};

/* server_name " + name + " in one region. */
static const char *with_name(const char *name)
{
	static char text[1024];

	snprintf(text, sizeof(text), OK_HTTP TLS1 "server_name = \"%s\"; } );", name);
	return text;
}

/* Labels of 63 and 64 characters, names of 253 and 254. */
static void derp_dns_lengths(void)
{
	char name[300], want[600];
	struct coord_conf c;
	char err[256];

	memset(name, 'a', 64);
	name[63] = '\0';
	assert(coord_conf_parse(with_name(name), "t.conf", &c, err, sizeof(err)) == 0);
	assert(!strcmp(c.derp_regions[0].server_name, name));
	name[63] = 'a';
	name[64] = '\0';
	bad(with_name(name), "derp_regions[0].server_name \"aaaa");
	for (int i = 0; i < 253; i++) /* labels of 63, the last of 61 */
		name[i] = i % 64 == 63 ? '.' : 'b';
	name[253] = '\0';
	assert(coord_conf_parse(with_name(name), "t.conf", &c, err, sizeof(err)) == 0);
	snprintf(want, sizeof(want), "\"server_name\":\"%s\"}]}", name);
	assert(strstr(c.derp_json, want));
	name[253] = 'c';
	name[254] = '\0';
	bad(with_name(name), "derp_regions[0].server_name: too long");
}

/* 16 regions with the longest values (derp_json's worst case), then 17. */
static void derp_counts(void)
{
	char text[16384], name[254];
	size_t n = 0;
	struct coord_conf c;
	char err[256];

	for (int i = 0; i < 253; i++)
		name[i] = i % 64 == 63 ? '.' : 'x';
	name[253] = '\0';
	n += (size_t)snprintf(text + n, sizeof(text) - n, OK_HTTP "derp_regions = (");
	for (int i = 0; i < COORD_MAX_DERP_REGIONS; i++)
		n += (size_t)snprintf(
		    text + n, sizeof(text) - n,
		    "%s{ id = %d; server = \"[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535\"; "
		    "public_key = \"" KEY "\"; tls = true; server_name = \"%s\"; }",
		    i ? "," : "", 65535 - i, name);
	snprintf(text + n, sizeof(text) - n, ");");
	assert(coord_conf_parse(text, "t.conf", &c, err, sizeof(err)) == 0);
	assert(c.n_derp_regions == COORD_MAX_DERP_REGIONS && c.derp_regions[15].id == 65520);
	assert(c.derp_regions[15].pinned && c.derp_regions[15].public_key[31] == 31);
	assert(strlen(c.derp_json) > 16 * 300 &&
	       !strcmp(c.derp_json + strlen(c.derp_json) - 3, "}]}"));
	snprintf(text + n, sizeof(text) - n, ",{ id = 1; server = \"10.0.0.1:1\"; });");
	bad(text, "t.conf:2: derp_regions: 17 entries, at most 16");
}

int main(int argc, char **argv)
{
	struct coord_conf c;
	char err[256];

	if (argc > 1) {
		if (coord_conf_load(argv[1], &c, err, sizeof(err)) < 0) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		assert(c.listen.port == 8443 && c.long_poll_seconds == 25 && !c.insecure_http);
	}
	assert(coord_conf_parse("testing = { insecure_http = true; }; listen = \"127.0.0.1:1\";",
				"t", &c, err, sizeof(err)) == 0);
	assert(c.insecure_http && c.listen.port == 1);
	bad("listen = \"127.0.0.1:1\";", "tls.cert_file");
	bad("testing = { insecure_http = true; }; bogus = 1;", "unknown setting \"bogus\"");
	bad("testing = { insecure_http = true; }; limits = { max_body = 99999999; };",
	    "out of range");
	bad("testing = { insecure_http = true; }; listen = \"nope\";", "ADDRESS:PORT");
	bad("testing = { insecure_http = 1; };", "wrong type");

	for (size_t i = 0; i < sizeof(derp_good) / sizeof(derp_good[0]); i++) {
		char text[1024];

		snprintf(text, sizeof(text), "%s%s", OK_HTTP, derp_good[i].text);
		if (coord_conf_parse(text, "t.conf", &c, err, sizeof(err)) < 0) {
			fprintf(stderr, "derp_good[%zu]: %s\n", i, err);
			assert(0);
		}
		if (strcmp(c.derp_json, derp_good[i].json)) {
			fprintf(stderr, "derp_good[%zu]: %s\n  want %s\n", i, c.derp_json,
				derp_good[i].json);
			assert(0);
		}
	}
	/* the values behind the JSON */
	assert(coord_conf_parse(OK_HTTP
				"derp_regions = ( { id = 9; server = \"[2001:db8::20]:443\"; "
				"tls = true; server_name = \"d.example\"; } );",
				"t", &c, err, sizeof(err)) == 0);
	assert(c.n_derp_regions == 1 && c.derp_regions[0].id == 9 && c.derp_regions[0].tls &&
	       !c.derp_regions[0].pinned && c.derp_regions[0].server.family == AF_INET6 &&
	       c.derp_regions[0].server.port == 443 &&
	       !strcmp(c.derp_regions[0].server_name, "d.example"));
	for (size_t i = 0; i < sizeof(derp_bad) / sizeof(derp_bad[0]); i++) {
		char text[1024];

		snprintf(text, sizeof(text), "%s%s", OK_HTTP, derp_bad[i].text);
		bad(text, derp_bad[i].want);
	}
	derp_dns_lengths();
	derp_counts();
	printf("coord conf ok\n");
	return 0;
}
