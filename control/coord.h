/* SPDX-License-Identifier: MIT */
/*
 * The node side of the coordination protocol (docs/coord-protocol.md).
 *
 * Pure parts, tested and fuzzed alone (no sockets, no device):
 *   coord_json.c   server answers (register, map, update, errors) -> C structs,
 *                  request bodies <- C structs
 *   coord_sign.c   the signed-request headers (X-Meshgate-*)
 *   coord_state.c  the node's keys and registration in <state_dir>/<name>.state
 * and the runtime (coord.c): a background thread does the HTTP (libcurl,
 * blocking) and hands parsed answers to the main loop through a mailbox and
 * an eventfd; the main loop applies them to the device. coord_ctl.c serves
 * the `meshgate up/status/down` socket <run_dir>/<name>.ctl.
 */
#ifndef CP_COORD_H
#define CP_COORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "acl_types.h"
#include "config.h"
#include "types.h"

#define CP_COORD_MAX_ADDRS     8
#define CP_COORD_MAX_ENDPOINTS 16
#define CP_COORD_MAX_AIPS      4096
#define CP_COORD_MAX_PEERS     (1u << 20)
#define CP_COORD_MAX_RULES     200000u
#define CP_COORD_MAX_BODY      (64u << 20) /* bytes of one answer we read at most */
#define CP_COORD_NAME_LEN      64
#define CP_COORD_MAX_ROUTES    256 /* advertised by this node */
#define CP_COORD_MAX_DERP      64  /* regions of a derp_map (a node uses MG_MAX_DERP_REGIONS) */

/* ---- the wire model (coord_json.c) ---------------------------------------- */

struct cp_coord_peer {
	uint64_t node_id;
	char name[CP_COORD_NAME_LEN];
	uint8_t node_key[32];
	struct mg_prefix addrs[CP_COORD_MAX_ADDRS]; /* host bits kept ("100.64.0.7/32") */
	uint32_t n_addrs;
	struct mg_prefix *aips; /* allowed_ips, host bits masked off */
	uint32_t n_aips;
	struct mg_sockaddr eps[CP_COORD_MAX_ENDPOINTS];
	uint32_t n_eps;
	bool online;
	int64_t key_expiry; /* unix seconds, 0 = never */
	bool plain_wireguard;
};

struct cp_coord_self {
	uint64_t node_id;
	char name[CP_COORD_NAME_LEN];
	uint8_t node_key[32];
	struct mg_prefix addrs[CP_COORD_MAX_ADDRS];
	uint32_t n_addrs;
	int64_t key_expiry;
};

/* One answer to POST /machine/map. */
struct cp_coord_map {
	uint64_t version;
	bool keepalive; /* nothing else is set */
	bool full;
	bool has_self;
	struct cp_coord_self self;
	struct cp_coord_peer *peers; /* full: every peer; delta: peers_changed */
	size_t n_peers;
	uint64_t *removed; /* delta: peers_removed */
	size_t n_removed;
	bool has_filter; /* packet_filter present (always in a full map) */
	struct mg_acl_rule *rules;
	size_t n_rules;
	bool has_derp; /* derp_map present (a full map from a server that has one) */
	struct mg_derp_region_conf *derp; /* the server's derp_map (ca_file unset) */
	size_t n_derp;
	bool derp_invalid;    /* a derp_map that does not parse: the rest stands */
	char derp_error[192]; /* why, as the parser's other messages */
};

/* The answer to POST /machine/register. */
struct cp_coord_reg {
	uint64_t node_id;
	char name[CP_COORD_NAME_LEN];
	struct mg_prefix addrs[CP_COORD_MAX_ADDRS];
	uint32_t n_addrs;
	int64_t key_expiry;
	char tailnet[CP_COORD_NAME_LEN];
};

/*
 * Parsers of untrusted bytes (len need not be NUL-terminated). They return 0,
 * or -EINVAL with one line in err that says where and what ("peers[3].
 * allowed_ips[1]: \"10.0.0.1/33\": not a prefix") and *out zeroed: a bad
 * answer changes nothing. Unknown members are ignored (the protocol may grow);
 * known ones must have the right type and range.
 */
int cp_coord_map_parse(const char *text, size_t len, struct cp_coord_map *out, char *err,
		       size_t errlen);
void cp_coord_map_free(struct cp_coord_map *m);
void cp_coord_peer_free(struct cp_coord_peer *p);
int cp_coord_reg_parse(const char *text, size_t len, struct cp_coord_reg *out, char *err,
		       size_t errlen);
/* {"key_expiry": N} */
int cp_coord_update_parse(const char *text, size_t len, int64_t *key_expiry, char *err,
			  size_t errlen);
/* The "error" of an error answer, made printable; "" if there is none. */
void cp_coord_error_parse(const char *text, size_t len, char *out, size_t outlen);

/* Request bodies; malloc'd JSON text or NULL. Strings are prefixes/endpoints as text. */
struct cp_coord_req {
	const uint8_t *node_key; /* public; NULL: omitted */
	const char *hostname;	 /* NULL: omitted */
	const char *auth_key;	 /* NULL: omitted */
	const char *const *endpoints;
	size_t n_endpoints;
	const char *const *routes;
	size_t n_routes;
	bool with_version; /* map requests */
	uint64_t version;
};
char *cp_coord_req_body(const struct cp_coord_req *r);

/*
 * A full map's text (the netmap cache, <state_dir>/<name>.netmap, read back
 * with cp_coord_map_parse): public data only. malloc'd, or NULL.
 */
char *cp_coord_map_dump(const struct cp_coord_self *self, const struct cp_coord_peer *peers,
			size_t n_peers, const struct mg_acl_rule *rules, size_t n_rules,
			const struct mg_derp_region_conf *derp, size_t n_derp, uint64_t version);

/* ---- signed requests (coord_sign.c) --------------------------------------- */

#define CP_COORD_NONCE_LEN 32 /* hex characters */

struct cp_coord_auth {
	char machine[64];   /* "mkey:<base64>" */
	char timestamp[24]; /* unix seconds */
	char nonce[CP_COORD_NONCE_LEN + 1];
	char signature[96]; /* base64 of 64 bytes */
};

/*
 * The signed string: "meshgate-v1\n" METHOD "\n" PATH "\n" TIMESTAMP "\n"
 * NONCE "\n" hex(SHA-256(body)). Returns its length, or -ENOSPC if out is too
 * small.
 */
int cp_coord_sign_string(const char *method, const char *path, const char *timestamp,
			 const char *nonce, const void *body, size_t len, char *out, size_t outlen);
/* Fill the four headers' values; nonce NULL: a random one. 0 or -errno. */
int cp_coord_sign(const uint8_t machine_sk[64], const char *method, const char *path,
		  int64_t timestamp, const char *nonce, const void *body, size_t len,
		  struct cp_coord_auth *out);

/* ---- the node's state file (coord_state.c) -------------------------------- */

/* In sodium_malloc'd memory (guarded, zeroed when freed): holds private keys. */
struct cp_coord_state {
	uint8_t machine_seed[32]; /* Ed25519 seed; the key pair derives from it */
	uint8_t machine_sk[64], machine_pk[32];
	uint8_t node_sk[32], node_pk[32]; /* X25519, the device's WireGuard key */
	char server[512];		  /* "" = not registered anywhere */
	uint64_t node_id;		  /* 0 = not registered */
	char name[CP_COORD_NAME_LEN];
	struct mg_prefix addrs[CP_COORD_MAX_ADDRS];
	uint32_t n_addrs;
	int64_t key_expiry; /* 0 = never */
	int64_t key_issued; /* when the server last set key_expiry (rotation point) */
	bool logged_out;    /* `meshgate down`: do not follow the map after a restart */
	/* Set by `meshgate up --hostname/--advertise-routes`; they win over the
	 * config file's until the next `up` changes them. */
	char hostname[64]; /* "" = the config's */
	bool has_routes;
	struct mg_prefix routes[CP_COORD_MAX_ROUTES];
	uint32_t n_routes;
};

/* New keys, nothing registered; NULL on allocation failure. */
struct cp_coord_state *cp_coord_state_new(void);
void cp_coord_state_free(struct cp_coord_state *s);
/* Make a new node key (the previous one is overwritten). */
void cp_coord_node_key_new(uint8_t sk[32], uint8_t pk[32]);
/*
 * Load path (regular file, mode 0600 or 0400). 0 with *out set (free with
 * cp_coord_state_free), -ENOENT if there is none, or -errno with one line in
 * err (never key material).
 */
int cp_coord_state_load(const char *path, struct cp_coord_state **out, char *err, size_t errlen);
/* Write atomically (temp file 0600 in the same directory, fsync, rename). */
int cp_coord_state_save(const char *path, const struct cp_coord_state *s, char *err, size_t errlen);
/* Any text the same way (mode 0600). */
int cp_coord_file_write(const char *path, const char *text, size_t len, char *err, size_t errlen);
/* A whole file (at most max bytes, mode 0600/0400) into a malloc'd buffer. */
int cp_coord_file_read(const char *path, size_t max, char **out, size_t *len);

/* ---- the runtime (coord.c), main thread only unless said otherwise ---------- */

struct cp_device;
struct cp_coord;

/* Loads or makes the state, sets the device key, serves the ctl socket, and
 * starts following the server if one is known. NULL (logged) on failure. */
struct cp_coord *cp_coord_start(struct cp_device *d);
void cp_coord_stop(struct cp_coord *c); /* NULL is a no-op */
/* For the main loop's poll(): readable when cp_coord_service() has work
 * (a mailbox delivery, a ctl client). */
int cp_coord_fd(const struct cp_coord *c);
void cp_coord_service(struct cp_coord *c);
void cp_coord_tick(struct cp_coord *c); /* about once a second: key rotation, timeouts */
/*
 * The public endpoints STUN found (control/stun.c), reported to the server
 * before the wan port's own; a change cuts the long poll short so the next
 * map request carries it. Takes the coordination mutex. NULL c: nothing.
 */
void cp_coord_set_stun_endpoints(struct cp_coord *c, const struct mg_sockaddr *eps, unsigned n);

/* Delta/full map application: exposed for tests over a fake device. */
struct cp_coord_netmap; /* the peers we got from the server, by node_id */
struct cp_coord_netmap *cp_coord_netmap_new(void);
void cp_coord_netmap_free(struct cp_coord_netmap *nm);
/* Moves m's peers into nm. 0, or -errno if the device refused something (the
 * caller then asks for a full map). */
int cp_coord_netmap_apply(struct cp_coord_netmap *nm, struct cp_device *d, struct cp_coord_map *m);
size_t cp_coord_netmap_count(const struct cp_coord_netmap *nm);
const struct cp_coord_peer *cp_coord_netmap_peers(const struct cp_coord_netmap *nm, size_t *n);
const struct cp_coord_peer *cp_coord_netmap_find_key(const struct cp_coord_netmap *nm,
						     const uint8_t key[32]);

#endif /* CP_COORD_H */
