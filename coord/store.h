/* SPDX-License-Identifier: MIT */
/*
 * Everything the server keeps in the database (db.h), and loading it into
 * the model. Every write runs in one transaction that also bumps
 * state.version and stamps the rows it touched with it (column seq), so a
 * replica loads only rows with seq above what it has (store_load).
 *
 * Errors: -EINVAL (400), -EACCES (401/403), -ENOENT (404), -EEXIST (409),
 * -EIO / -ENOMEM (500), with one line in err.
 */
#ifndef MG_COORD_STORE_H
#define MG_COORD_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "db.h"
#include "model.h"
#include "req.h"

struct coord_store;

/* Open the database and run pending migrations. */
int store_open(const char *url, struct coord_store **out, char *err, size_t errlen);
/* Testing only (testing.key_expiry_seconds): untagged nodes' keys expire
 * this many seconds after registration or rotation instead of the
 * tailnet's days. */
void store_set_key_seconds(struct coord_store *st, int64_t seconds);
void store_close(struct coord_store *st);
struct coord_db *store_db(struct coord_store *st);
/* Reset every cached statement (ends SQLite read transactions); call when idle. */
void store_idle(struct coord_store *st);
/* Run the pending numbered migrations (one transaction); returns how many ran. */
int store_migrate(struct coord_db *db, char *err, size_t errlen);

int64_t store_state_version(struct coord_store *st);
/*
 * Bring m up to date with the database (rows with seq above what was
 * loaded; full: everything). removed(arg, waiter) is called for deleted
 * nodes that had a waiter. Returns 1 if anything was loaded, 0 if not.
 */
int store_load(struct coord_store *st, struct coord_model *m, bool full,
	       void (*removed)(void *arg, void *waiter), void *arg);
/* Refresh last_seen of nodes seen since `since` (polls on other replicas). */
int store_load_last_seen(struct coord_store *st, struct coord_model *m, int64_t since);

/* 0, or -EEXIST if this machine key used the nonce already (replay). */
int store_nonce_use(struct coord_store *st, const char *mkey, const char *nonce, int64_t ts);
void store_nonce_prune(struct coord_store *st, int64_t now);
/* Write last_seen for nodes (no version bump: it is not map state). */
int store_touch(struct coord_store *st, const int64_t *ids, const int64_t *seen, size_t n);

/* Set last_seen back (a node that hung up is offline now, on every replica within offline_seconds).
 */
int store_mark_offline(struct coord_store *st, int64_t id, int64_t last_seen);

struct coord_reg_result {
	int64_t node_id, key_expiry;
	char name[64], tailnet[64], addr4[24], addr6[48];
};

int store_register(struct coord_store *st, const struct coord_register_req *r, const char *mkey,
		   int64_t now, struct coord_reg_result *out, char *err, size_t errlen);
/* The node of a machine key: 0 with *id, or -ENOENT. */
int store_node_by_mkey(struct coord_store *st, const char *mkey, int64_t *id);
/* endpoints/routes/node_key changes from map or update; *key_expiry gets the current value. */
int store_node_update(struct coord_store *st, int64_t id, const char *node_key,
		      const struct coord_lists *l, int64_t now, int64_t *key_expiry, char *err,
		      size_t errlen);
int store_node_logout(struct coord_store *st, int64_t id, char *err, size_t errlen);
int store_node_delete(struct coord_store *st, int64_t id, char *err, size_t errlen);
int store_node_expire(struct coord_store *st, int64_t id, int64_t now, char *err, size_t errlen);
/* Delete ephemeral nodes not seen since `before`; returns how many. */
int store_reap_ephemeral(struct coord_store *st, int64_t before);

/* Admin. Results are new JSON objects / arrays. */
int store_tailnet_create(struct coord_store *st, const struct coord_tailnet_req *r, int64_t now,
			 json_t **out, char *err, size_t errlen);
int store_user_create(struct coord_store *st, const struct coord_user_req *r, int64_t now,
		      json_t **out, char *err, size_t errlen);
int store_key_create(struct coord_store *st, const struct coord_key_req *r, int64_t now,
		     json_t **out, char *err, size_t errlen);
int store_route_approve(struct coord_store *st, int64_t node_id, const char *routes, json_t **out,
			char *err, size_t errlen);
/* policy: the caller has compiled and tested it. */
int store_policy_set(struct coord_store *st, int64_t tailnet_id, const char *text, int64_t now,
		     int64_t *version, char *err, size_t errlen);
/* The text of version (0: current); -ENOENT if none. *text malloc'd. */
int store_policy_get(struct coord_store *st, int64_t tailnet_id, int64_t version, char **text,
		     int64_t *ver);
int store_policy_history(struct coord_store *st, int64_t tailnet_id, json_t **out);
int store_wg_enroll(struct coord_store *st, const struct coord_wg_req *r, int64_t now,
		    struct coord_reg_result *out, char *err, size_t errlen);

int store_list_tailnets(struct coord_store *st, json_t **out);
int store_list_users(struct coord_store *st, int64_t tailnet_id, json_t **out);
int store_list_keys(struct coord_store *st, int64_t tailnet_id, int64_t now, json_t **out);

/* Address of the idx'th node: 100.64.0.0 + idx, and the tailnet's /64 + idx. */
void store_addr_v4(int64_t idx, char *out, size_t len);
void store_addr_v6(const char *ula64, int64_t idx, char *out, size_t len);
/* The stable per-tailnet /64 for a name and an attempt number. */
void store_tailnet_ula(const char *name, unsigned attempt, char *out, size_t len);

#endif /* MG_COORD_STORE_H */
