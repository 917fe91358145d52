/* SPDX-License-Identifier: MIT */
/* The coordination server's config file (config/coord.conf documents it). */
#ifndef MG_COORD_CONF_H
#define MG_COORD_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "types.h"

struct coord_conf {
	struct mg_sockaddr listen;
	char tls_cert_file[256], tls_key_file[256];
	char database[512];
	char admin_token_file[256];
	bool insecure_http; /* testing.insecure_http */
	unsigned key_expiry_seconds; /* testing.*: untagged node keys live this long (0: the tailnet's days) */
	int log_level;	    /* LOG_* */
	/* limits */
	unsigned max_connections;
	unsigned long long max_body;
	double ip_rate, ip_burst;   /* requests/s and bucket size per source address */
	double key_rate, key_burst; /* the same per machine key */
	unsigned long_poll_seconds;
	unsigned offline_seconds;
	unsigned ephemeral_seconds;
	unsigned clock_skew;
};

/* Load and check path; 0, or -errno with one line ("path:line: ...") in err. */
int coord_conf_load(const char *path, struct coord_conf *c, char *err, size_t errlen);
/* The same from text (fuzzing, tests); name prefixes messages. */
int coord_conf_parse(const char *text, const char *name, struct coord_conf *c, char *err,
		     size_t errlen);
/*
 * Read the admin token file: must be a regular file of mode 0600 or stricter
 * (no group/other bits) holding at least 32 characters; trailing whitespace
 * is dropped. 0 or -errno with one line in err.
 */
int coord_read_token(const char *path, char *tok, size_t toklen, char *err, size_t errlen);

#endif /* MG_COORD_CONF_H */
