/* SPDX-License-Identifier: MIT */
/* The coordination server's config file (config/coord.conf documents it). */
#ifndef MG_COORD_CONF_H
#define MG_COORD_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "types.h"

#define COORD_MAX_DERP_REGIONS 16
/* Room for the derp_map JSON of COORD_MAX_DERP_REGIONS regions with the
 * longest members (conf.c checks it at compile time). */
#define COORD_DERP_JSON_MAX 16384

/* A DERP relay the server hands to every node (derp_regions in the file). */
struct coord_derp_region {
	unsigned id;		   /* 1..65535 */
	struct mg_sockaddr server; /* numeric, or only the port with host */
	char host[254];		   /* "name:port" given: the name ("" numeric) */
	uint8_t public_key[32];	   /* when pinned */
	bool pinned;		   /* public_key was given */
	bool tls;
	char server_name[254]; /* TLS only; "": the certificate carries the server's IP */
};

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
	/* DERP relays, in the file's order (the first is the nodes' default home) */
	struct coord_derp_region derp_regions[COORD_MAX_DERP_REGIONS];
	unsigned n_derp_regions;
	/* the full map's "derp_map" object for them, built at load:
	 * {"regions":[...]} (an empty array without regions) */
	char derp_json[COORD_DERP_JSON_MAX];
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
