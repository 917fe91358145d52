/* SPDX-License-Identifier: MIT */
/*
 * The store on SQLite: migrations on a fresh and on an existing database,
 * address allocation (stable, unique, gaps reused at the end of the pool,
 * the tailnet's ULA /64), pre-auth keys (one-off, reusable, expiry,
 * hashed), re-registration keeping addresses, and loading into the model.
 */
/* The checks below call the code under test: keep assert() in every build type. */
#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "store.h"

#define NOW 1800000000

static int fails;
#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "%s:%d: FAIL %s\n", __FILE__, __LINE__, #c);               \
			fails++;                                                                   \
		}                                                                                  \
	} while (0)

static int64_t count(struct coord_db *db, const char *sql)
{
	struct coord_stmt *s;
	int64_t v = -1;

	assert(coord_db_prepare(db, sql, &s) == 0);
	if (coord_stmt_step(s) == 1)
		v = coord_stmt_int64(s, 0);
	coord_stmt_finalize(s);
	return v;
}

static void test_migrations(const char *path)
{
	char url[300], err[256];
	struct coord_db *db;

	snprintf(url, sizeof(url), "sqlite:%s", path);
	unlink(path);
	assert(coord_db_open(url, &db, err, sizeof(err)) == 0);
	CHECK(store_migrate(db, err, sizeof(err)) == 2); /* fresh: all */
	CHECK(store_migrate(db, err, sizeof(err)) == 0); /* again: none */
	CHECK(count(db, "SELECT COUNT(*) FROM schema_migrations") == 2);
	/* an existing database at version 1 (as an older server left it) */
	CHECK(coord_db_exec(
		  db, "DELETE FROM schema_migrations WHERE version = 2; DROP INDEX nodes_tailnet;"
		      "DROP INDEX nodes_last_seen") == 0);
	coord_db_close(db);
	assert(coord_db_open(url, &db, err, sizeof(err)) == 0);
	CHECK(store_migrate(db, err, sizeof(err)) == 1);
	CHECK(count(db, "SELECT MAX(version) FROM schema_migrations") == 2);
	/* a newer schema than this server knows is refused */
	CHECK(coord_db_exec(
		  db, "INSERT INTO schema_migrations (version, applied) VALUES (99, 0)") == 0);
	CHECK(store_migrate(db, err, sizeof(err)) < 0 && strstr(err, "newer"));
	coord_db_close(db);
	unlink(path);
}

static void key_for(struct coord_store *st, const char *tags, bool reusable, int64_t expires_in,
		    char *out)
{
	struct coord_key_req kr = {.reusable = reusable, .expires_in = expires_in};
	char err[256];
	json_t *j;

	snprintf(kr.tailnet, sizeof(kr.tailnet), "corp");
	snprintf(kr.user, sizeof(kr.user), "alice@x");
	snprintf(kr.tags, sizeof(kr.tags), "%s", tags);
	assert(store_key_create(st, &kr, NOW, &j, err, sizeof(err)) == 0);
	strcpy(out, json_string_value(json_object_get(j, "key")));
	json_decref(j);
}

static int reg(struct coord_store *st, const char *mkey, const char *host, const char *key,
	       struct coord_reg_result *res, char *err)
{
	struct coord_register_req r = {0};
	uint8_t k[32];

	randombytes_buf(k, sizeof(k));
	sodium_bin2base64(r.node_key, sizeof(r.node_key), k, sizeof(k),
			  sodium_base64_VARIANT_ORIGINAL);
	snprintf(r.hostname, sizeof(r.hostname), "%s", host);
	snprintf(r.auth_key, sizeof(r.auth_key), "%s", key ? key : "");
	return store_register(st, &r, mkey, NOW, res, err, 256);
}

static void test_registration(void)
{
	struct coord_store *st;
	struct coord_reg_result a, b, c, d;
	char err[256], one[128], multi[128], tagged[128], expired[128];
	json_t *j;

	assert(store_open("sqlite::memory:", &st, err, sizeof(err)) == 0);
	struct coord_tailnet_req tr = {.key_expiry_days = 10};
	strcpy(tr.name, "corp");
	strcpy(tr.gw_tag, "tag:gw");
	CHECK(store_tailnet_create(st, &tr, NOW, &j, err, sizeof(err)) == 0);
	char ula[64];
	snprintf(ula, sizeof(ula), "%s", json_string_value(json_object_get(j, "ula")));
	json_decref(j);
	store_tailnet_ula("corp", 0, err, sizeof(err));
	CHECK(!strcmp(ula, err)); /* stable: derived from the name */
	CHECK(!strncmp(ula, "fd7a:115c:a1e0:", 15) && strstr(ula, "::/64"));
	struct coord_user_req ur;
	strcpy(ur.tailnet, "corp");
	strcpy(ur.name, "alice@x");
	CHECK(store_user_create(st, &ur, NOW, &j, err, sizeof(err)) == 0);
	json_decref(j);
	key_for(st, "", false, 3600, one);
	key_for(st, "", true, 3600, multi);
	key_for(st, "tag:gw", true, 3600, tagged);
	key_for(st, "", true, -10, expired);
	CHECK(
	    count(store_db(st), "SELECT COUNT(*) FROM preauth_keys WHERE key_hash LIKE 'mgk-%'") ==
	    0); /* hashed */

	int64_t v0 = store_state_version(st);
	CHECK(reg(st, "mkey:a", "host", "mgk-nope", &a, err) == -EACCES && strstr(err, "unknown"));
	CHECK(reg(st, "mkey:a", "host", expired, &a, err) == -EACCES && strstr(err, "expired"));
	CHECK(reg(st, "mkey:a", "host", NULL, &a, err) == -EACCES);
	CHECK(store_state_version(st) == v0); /* refusals write nothing */
	CHECK(reg(st, "mkey:a", "host", one, &a, err) == 0);
	CHECK(store_state_version(st) == v0 + 1);
	CHECK(!strcmp(a.addr4, "100.64.0.1/32") && !strcmp(a.name, "host"));
	CHECK(a.key_expiry == NOW + 10 * 86400);
	CHECK(reg(st, "mkey:b", "host", one, &b, err) == -EACCES && strstr(err, "already used"));
	CHECK(reg(st, "mkey:b", "host", multi, &b, err) == 0);
	CHECK(!strcmp(b.addr4, "100.64.0.2/32") &&
	      !strcmp(b.name, "host-2")); /* names are unique */
	char want6[64];
	store_addr_v6(ula, 2, want6, sizeof(want6));
	CHECK(!strcmp(b.addr6, want6) && strstr(b.addr6, "::2/128"));
	CHECK(reg(st, "mkey:c", "gw", tagged, &c, err) == 0 &&
	      c.key_expiry == 0); /* tagged: no expiry */
	/* re-registration (restart, new node key): same id and addresses */
	CHECK(reg(st, "mkey:a", "other", NULL, &d, err) == 0);
	CHECK(d.node_id == a.node_id && !strcmp(d.addr4, a.addr4) && !strcmp(d.addr6, a.addr6));
	/* delete and allocate: no reuse while the pool lasts */
	CHECK(store_node_delete(st, b.node_id, err, sizeof(err)) == 0);
	CHECK(reg(st, "mkey:e", "e", multi, &d, err) == 0 && !strcmp(d.addr4, "100.64.0.4/32"));
	/* at the end of the pool, the first gap */
	CHECK(coord_db_exec(store_db(st),
			    "UPDATE nodes SET addr_index = 4194302 WHERE name = 'e'") == 0);
	CHECK(reg(st, "mkey:f", "f", multi, &d, err) == 0 && !strcmp(d.addr4, "100.64.0.2/32"));
	store_addr_v4(4194302, err, sizeof(err));
	CHECK(!strcmp(err, "100.127.255.254/32"));

	/* ephemeral nodes offline too long are reaped; others stay */
	char eph[128];
	key_for(st, "", true, 3600, eph);
	CHECK(coord_db_exec(store_db(st), "UPDATE preauth_keys SET ephemeral = 1") == 0);
	CHECK(reg(st, "mkey:g", "g", eph, &d, err) == 0);
	CHECK(store_reap_ephemeral(st, NOW - 120) == 0); /* seen just now */
	CHECK(store_reap_ephemeral(st, NOW + 1) == 1);	 /* 121 s later: gone */
	CHECK(count(store_db(st), "SELECT COUNT(*) FROM nodes WHERE ephemeral = 1") == 0);

	/* the model loads what the store has, incrementally */
	struct coord_model *m = cm_new(1, 60);
	CHECK(store_load(st, m, true, NULL, NULL) == 1);
	CHECK(cm_node_find(m, a.node_id) && cm_node_find(m, c.node_id) &&
	      !cm_node_find(m, b.node_id));
	CHECK(store_load(st, m, false, NULL, NULL) == 0); /* nothing new */
	CHECK(store_node_delete(st, c.node_id, err, sizeof(err)) == 0);
	CHECK(store_load(st, m, false, NULL, NULL) == 1 && !cm_node_find(m, c.node_id));
	cm_free(m);
	store_close(st);
}

int main(void)
{
	char path[] = "/tmp/test_coord_store.XXXXXX";
	int fd = mkstemp(path);

	assert(sodium_init() >= 0 && fd >= 0);
	close(fd);
	test_migrations(path);
	test_registration();
	printf("store: %d failure(s)\n", fails);
	return fails != 0;
}
