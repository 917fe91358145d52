/* SPDX-License-Identifier: MIT */
/*
 * Parsers of every JSON request body (node and admin API). Pure: text in,
 * a checked struct out, or -EINVAL with one line quoting what is wrong.
 * Lists (endpoints, routes, tags) come out canonical and comma-separated,
 * as the store keeps them. Node bodies ignore unknown keys (newer clients);
 * admin bodies refuse them (typos).
 */
#ifndef MG_COORD_REQ_H
#define MG_COORD_REQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REQ_LIST_MAX 2048
#define REQ_NAME_MAX 64

struct coord_lists {
	bool has_endpoints, has_routes;
	char endpoints[REQ_LIST_MAX];
	char routes[REQ_LIST_MAX];
};

struct coord_register_req {
	char node_key[64];
	char hostname[REQ_NAME_MAX];
	char auth_key[128]; /* "" if absent */
	struct coord_lists l;
};

struct coord_map_req {
	int64_t version;
	struct coord_lists l;
};

struct coord_update_req {
	char node_key[64]; /* "" if absent */
	struct coord_lists l;
};

struct coord_tailnet_req {
	char name[REQ_NAME_MAX];
	int key_expiry_days;
	char gw_tag[REQ_NAME_MAX];
};

struct coord_user_req {
	char tailnet[REQ_NAME_MAX];
	char name[128];
};

struct coord_key_req {
	char tailnet[REQ_NAME_MAX];
	char user[128];
	bool reusable, ephemeral;
	char tags[REQ_LIST_MAX];
	int64_t expires_in; /* seconds */
};

struct coord_approve_req {
	char routes[REQ_LIST_MAX];
};

struct coord_policy_req {
	char tailnet[REQ_NAME_MAX];
	char *policy; /* malloc'd; free it */
};

struct coord_wg_req {
	char tailnet[REQ_NAME_MAX];
	char user[128];
	char name[REQ_NAME_MAX];
	char public_key[64];
};

int coord_parse_register(const char *body, size_t len, struct coord_register_req *r, char *err,
			 size_t errlen);
int coord_parse_map(const char *body, size_t len, struct coord_map_req *r, char *err,
		    size_t errlen);
int coord_parse_update(const char *body, size_t len, struct coord_update_req *r, char *err,
		       size_t errlen);
int coord_parse_tailnet(const char *body, size_t len, struct coord_tailnet_req *r, char *err,
			size_t errlen);
int coord_parse_user(const char *body, size_t len, struct coord_user_req *r, char *err,
		     size_t errlen);
int coord_parse_key(const char *body, size_t len, struct coord_key_req *r, char *err,
		    size_t errlen);
int coord_parse_approve(const char *body, size_t len, struct coord_approve_req *r, char *err,
			size_t errlen);
int coord_parse_policy(const char *body, size_t len, struct coord_policy_req *r, char *err,
		       size_t errlen);
int coord_parse_wg(const char *body, size_t len, struct coord_wg_req *r, char *err, size_t errlen);

/* A WireGuard public key: base64 of 32 bytes. */
bool coord_valid_wg_key(const char *s);

#endif /* MG_COORD_REQ_H */
