/* SPDX-License-Identifier: MIT */
/* The example config loads; bad settings are refused with a clear line. */
/* The checks below call the code under test: keep assert() in every build type. */
#undef NDEBUG
#include <assert.h>
#include <stdio.h>
#include <string.h>

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
	printf("coord conf ok\n");
	return 0;
}
