/* SPDX-License-Identifier: MIT */
/* The server's tables, migrations and queries; see store.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "addr.h"
#include "store.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define V4_POOL	      ((1ll << 22) - 2) /* 100.64.0.1 .. 100.127.255.254 */
#define STMT_CACHE    96

struct coord_store {
	struct coord_db *db;
	int64_t loaded; /* state version loaded into the model */
	int64_t key_seconds; /* testing: lifetime of untagged node keys; 0: the tailnet's */
	struct {
		const char *sql;
		struct coord_stmt *st;
	} cache[STMT_CACHE];
	size_t n_cache;
};

/* ---- migrations --------------------------------------------------------------- */

/* Numbered, append-only. {ID} is the dialect's auto id primary key. */
static const char *const migrations[] = {
    /* 1: the schema */
    "CREATE TABLE state (id BIGINT PRIMARY KEY, version BIGINT NOT NULL);"
    "INSERT INTO state (id, version) VALUES (1, 1);"
    "CREATE TABLE tailnets (id {ID}, name TEXT NOT NULL UNIQUE, key_expiry_days BIGINT NOT NULL,"
    " ula TEXT NOT NULL UNIQUE, gw_tag TEXT NOT NULL, policy_version BIGINT NOT NULL DEFAULT 0,"
    " created BIGINT NOT NULL, seq BIGINT NOT NULL);"
    "CREATE TABLE users (id {ID}, tailnet_id BIGINT NOT NULL REFERENCES tailnets (id) ON DELETE "
    "CASCADE,"
    " name TEXT NOT NULL, created BIGINT NOT NULL, seq BIGINT NOT NULL, UNIQUE (tailnet_id, name));"
    "CREATE TABLE preauth_keys (id {ID}, tailnet_id BIGINT NOT NULL REFERENCES tailnets (id) ON "
    "DELETE CASCADE,"
    " user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE, key_hash TEXT NOT NULL "
    "UNIQUE,"
    " key_prefix TEXT NOT NULL, reusable BIGINT NOT NULL, ephemeral BIGINT NOT NULL, tags TEXT NOT "
    "NULL,"
    " expires BIGINT NOT NULL, used BIGINT NOT NULL DEFAULT 0, created BIGINT NOT NULL);"
    "CREATE TABLE nodes (id {ID}, tailnet_id BIGINT NOT NULL REFERENCES tailnets (id) ON DELETE "
    "CASCADE,"
    " user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE, machine_key TEXT UNIQUE,"
    " node_key TEXT NOT NULL UNIQUE, name TEXT NOT NULL, addr_index BIGINT NOT NULL UNIQUE,"
    " ipv4 TEXT NOT NULL, ipv6 TEXT NOT NULL, tags TEXT NOT NULL, ephemeral BIGINT NOT NULL,"
    " plain_wg BIGINT NOT NULL, key_expiry BIGINT NOT NULL, endpoints TEXT NOT NULL, routes TEXT "
    "NOT NULL,"
    " approved TEXT NOT NULL, last_seen BIGINT NOT NULL, created BIGINT NOT NULL, seq BIGINT NOT "
    "NULL,"
    " UNIQUE (tailnet_id, name));"
    "CREATE INDEX nodes_seq ON nodes (seq);"
    "CREATE TABLE tombstones (node_id BIGINT NOT NULL, seq BIGINT NOT NULL);"
    "CREATE INDEX tombstones_seq ON tombstones (seq);"
    "CREATE TABLE nonces (machine_key TEXT NOT NULL, nonce TEXT NOT NULL, ts BIGINT NOT NULL,"
    " PRIMARY KEY (machine_key, nonce));"
    "CREATE INDEX nonces_ts ON nonces (ts);"
    "CREATE TABLE policies (id {ID}, tailnet_id BIGINT NOT NULL REFERENCES tailnets (id) ON DELETE "
    "CASCADE,"
    " version BIGINT NOT NULL, text TEXT NOT NULL, created BIGINT NOT NULL, UNIQUE (tailnet_id, "
    "version));",
    /* 2: listing nodes by tailnet, reaping by last_seen */
    "CREATE INDEX nodes_tailnet ON nodes (tailnet_id);"
    "CREATE INDEX nodes_last_seen ON nodes (last_seen);",
};

/* Replace {ID} with the dialect's type. */
static char *expand(struct coord_db *db, const char *sql)
{
	const char *id = coord_db_id_type(db);
	size_t n = 0, cap = strlen(sql) * 2 + 1;
	char *out = malloc(cap);

	if (!out)
		return NULL;
	while (*sql) {
		if (!strncmp(sql, "{ID}", 4)) {
			size_t l = strlen(id);
			if (n + l + 1 > cap)
				break;
			memcpy(out + n, id, l);
			n += l;
			sql += 4;
		} else {
			if (n + 2 > cap)
				break;
			out[n++] = *sql++;
		}
	}
	out[n] = '\0';
	return out;
}

int store_migrate(struct coord_db *db, char *err, size_t errlen)
{
	struct coord_stmt *s = NULL;
	int64_t have = 0;
	int ret, ran = 0;

	if ((ret = coord_db_begin(db)) < 0)
		goto fail;
	if ((ret = coord_db_exec(
		 db, "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY,"
		     " applied BIGINT NOT NULL)")) < 0)
		goto fail_tx;
	if ((ret = coord_db_prepare(db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
				    &s)) < 0)
		goto fail_tx;
	if ((ret = coord_stmt_step(s)) < 0)
		goto fail_tx;
	have = coord_stmt_int64(s, 0);
	coord_stmt_finalize(s);
	s = NULL;
	if (have > (int64_t)ARRAY_SIZE(migrations)) {
		snprintf(err, errlen,
			 "database schema version %" PRId64 " is newer than this server's (%zu)",
			 have, ARRAY_SIZE(migrations));
		coord_db_rollback(db);
		return -EINVAL;
	}
	for (size_t i = (size_t)have; i < ARRAY_SIZE(migrations); i++) {
		char *sql = expand(db, migrations[i]);
		if (!sql) {
			ret = -ENOMEM;
			goto fail_tx;
		}
		ret = coord_db_exec(db, sql);
		free(sql);
		if (ret < 0)
			goto fail_tx;
		if ((ret = coord_db_prepare(
			 db, "INSERT INTO schema_migrations (version, applied) VALUES (?, ?)",
			 &s)) < 0)
			goto fail_tx;
		coord_stmt_bind_int64(s, 1, (int64_t)i + 1);
		coord_stmt_bind_int64(s, 2, (int64_t)time(NULL));
		ret = coord_stmt_step(s);
		coord_stmt_finalize(s);
		s = NULL;
		if (ret < 0)
			goto fail_tx;
		ran++;
	}
	if ((ret = coord_db_commit(db)) < 0)
		goto fail;
	return ran;
fail_tx:
	coord_stmt_finalize(s);
	snprintf(err, errlen, "migration %" PRId64 ": %s", have + ran + 1, coord_db_errmsg(db));
	coord_db_rollback(db);
	return ret;
fail:
	snprintf(err, errlen, "migrations: %s", coord_db_errmsg(db));
	return ret;
}

int store_open(const char *url, struct coord_store **out, char *err, size_t errlen)
{
	struct coord_store *st = calloc(1, sizeof(*st));
	int ret;

	*out = NULL;
	if (!st)
		return -ENOMEM;
	if ((ret = coord_db_open(url, &st->db, err, errlen)) < 0 ||
	    (ret = store_migrate(st->db, err, errlen)) < 0) {
		store_close(st);
		return ret;
	}
	*out = st;
	return 0;
}

void store_close(struct coord_store *st)
{
	if (!st)
		return;
	for (size_t i = 0; i < st->n_cache; i++)
		coord_stmt_finalize(st->cache[i].st);
	coord_db_close(st->db);
	free(st);
}

struct coord_db *store_db(struct coord_store *st)
{
	return st->db;
}

void store_idle(struct coord_store *st);

/* ---- query helpers ------------------------------------------------------------- */

/*
 * A cached statement for sql (a string literal: cached by address), reset and
 * bound from fmt: 'i' int64, 's' text (NULL: NULL). NULL on error.
 */
static struct coord_stmt *q(struct coord_store *st, const char *sql, const char *fmt, ...)
{
	struct coord_stmt *s = NULL;
	va_list ap;
	size_t i;

	for (i = 0; i < st->n_cache; i++)
		if (st->cache[i].sql == sql) {
			s = st->cache[i].st;
			coord_stmt_reset(s);
			break;
		}
	if (!s) {
		if (coord_db_prepare(st->db, sql, &s) < 0)
			return NULL;
		if (st->n_cache < STMT_CACHE) {
			st->cache[st->n_cache].sql = sql;
			st->cache[st->n_cache++].st = s;
		}
	}
	va_start(ap, fmt);
	for (int k = 0; fmt[k]; k++) {
		int ret = fmt[k] == 'i' ? coord_stmt_bind_int64(s, k + 1, va_arg(ap, int64_t))
					: coord_stmt_bind_text(s, k + 1, va_arg(ap, const char *));
		if (ret < 0) {
			va_end(ap);
			return NULL;
		}
	}
	va_end(ap);
	return s;
}

/* Statements outside the cache (more than STMT_CACHE sites) are leaked
 * otherwise; all call sites are literals and fewer than STMT_CACHE. */

/* Step once: 1 row (first column in *v if v), 0 none, -errno. */
static int step1(struct coord_stmt *s, int64_t *v)
{
	int ret;

	if (!s)
		return -EIO;
	ret = coord_stmt_step(s);
	if (ret == 1 && v)
		*v = coord_stmt_int64(s, 0);
	return ret;
}

/* step1, then reset: a write outside a transaction commits now. */
static int exec1(struct coord_store *st, struct coord_stmt *s, int64_t *v)
{
	int ret = step1(s, v);

	(void)st;
	if (s)
		coord_stmt_reset(s);
	return ret;
}

static int dberr(struct coord_store *st, int ret, char *err, size_t errlen, const char *what)
{
	snprintf(err, errlen, "%s: %s", what, coord_db_errmsg(st->db));
	return ret < 0 ? ret : -EIO;
}

/* Begin a write: the transaction plus the bumped state version in *seq. */
static int wbegin(struct coord_store *st, int64_t *seq)
{
	int ret;

	store_idle(st); /* a statement left open would hold its own transaction */
	ret = coord_db_begin(st->db);

	if (ret < 0)
		return ret;
	ret = step1(
	    q(st, "UPDATE state SET version = version + 1 WHERE id = 1 RETURNING version", ""),
	    seq);
	if (ret != 1) {
		coord_db_rollback(st->db);
		return ret < 0 ? ret : -EIO;
	}
	return 0;
}

void store_idle(struct coord_store *st)
{
	for (size_t i = 0; i < st->n_cache; i++)
		coord_stmt_reset(st->cache[i].st);
}

/* Statements still open (a RETURNING row read, a SELECT not run to its end)
 * would block COMMIT on SQLite: every transaction end resets them. */
static int wcommit(struct coord_store *st)
{
	int ret;

	store_idle(st);
	ret = coord_db_commit(st->db);
	if (ret == 0)
		coord_db_notify(st->db);
	else
		coord_db_rollback(st->db);
	return ret;
}

static int fail_tx(struct coord_store *st, int ret)
{
	store_idle(st);
	coord_db_rollback(st->db);
	return ret;
}

int64_t store_state_version(struct coord_store *st)
{
	int64_t v = 0;

	step1(q(st, "SELECT version FROM state WHERE id = 1", ""), &v);
	return v;
}

/* ---- addresses ------------------------------------------------------------------ */

void store_addr_v4(int64_t idx, char *out, size_t len)
{
	uint32_t a = (100u << 24 | 64u << 16) + (uint32_t)idx;

	snprintf(out, len, "%u.%u.%u.%u/32", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
}

void store_addr_v6(const char *ula64, int64_t idx, char *out, size_t len)
{
	struct mg_prefix p;
	char buf[MG_PREFIX_STRLEN];

	if (mg_prefix_parse(ula64, &p) < 0) {
		snprintf(out, len, "::/128");
		return;
	}
	for (int i = 0; i < 8; i++)
		p.addr[15 - i] = (uint8_t)((uint64_t)idx >> (8 * i));
	p.cidr = 128;
	snprintf(out, len, "%s", mg_prefix_fmt(&p, buf, sizeof(buf)));
}

void store_tailnet_ula(const char *name, unsigned attempt, char *out, size_t len)
{
	uint8_t h[crypto_hash_sha256_BYTES];

	crypto_hash_sha256(h, (const uint8_t *)name, strlen(name));
	unsigned sub = ((unsigned)h[0] << 8 | h[1]) + attempt;
	snprintf(out, len, "fd7a:115c:a1e0:%x::/64", sub & 0xffff);
}

static int alloc_index(struct coord_store *st, int64_t *idx)
{
	int ret = step1(q(st, "SELECT COALESCE(MAX(addr_index), 0) + 1 FROM nodes", ""), idx);

	if (ret < 0)
		return ret;
	if (*idx <= V4_POOL)
		return 0;
	/* The top is used: the first gap. */
	ret = step1(
	    q(st,
	      "SELECT a.addr_index + 1 FROM nodes a WHERE a.addr_index < ? AND NOT EXISTS"
	      " (SELECT 1 FROM nodes b WHERE b.addr_index = a.addr_index + 1) ORDER BY 1 LIMIT 1",
	      "i", (int64_t)V4_POOL),
	    idx);
	if (ret < 0)
		return ret;
	if (ret == 0) {
		ret = step1(q(st, "SELECT 1 FROM nodes WHERE addr_index = 1", ""), NULL);
		if (ret == 0) {
			*idx = 1;
			return 0;
		}
		return -ENOSPC;
	}
	return 0;
}

/* A free name in the tailnet: host, host-2, host-3, ... */
static int unique_name(struct coord_store *st, int64_t tailnet, const char *host, char *out,
		       size_t len)
{
	for (int i = 1; i < 10000; i++) {
		if (i == 1)
			snprintf(out, len, "%s", host);
		else
			snprintf(out, len, "%.50s-%d", host, i);
		int ret = step1(q(st, "SELECT 1 FROM nodes WHERE tailnet_id = ? AND name = ?", "is",
				  tailnet, out),
				NULL);
		if (ret <= 0)
			return ret;
	}
	return -EEXIST;
}

static void key_hash(const char *key, char out[65])
{
	uint8_t h[crypto_hash_sha256_BYTES];

	crypto_hash_sha256(h, (const uint8_t *)key, strlen(key));
	sodium_bin2hex(out, 65, h, sizeof(h));
}

/* ---- node requests ------------------------------------------------------------- */

int store_nonce_use(struct coord_store *st, const char *mkey, const char *nonce, int64_t ts)
{
	int ret = exec1(st,
			q(st, "INSERT INTO nonces (machine_key, nonce, ts) VALUES (?, ?, ?)", "ssi",
			  mkey, nonce, ts),
			NULL);

	return ret < 0 ? ret : 0;
}

void store_nonce_prune(struct coord_store *st, int64_t now)
{
	/* ts within the clock skew window of the server is refused anyway past 300 s */
	exec1(st, q(st, "DELETE FROM nonces WHERE ts < ?", "i", now - 300), NULL);
}

int store_touch(struct coord_store *st, const int64_t *ids, const int64_t *seen, size_t n)
{
	int ret = coord_db_begin(st->db);

	if (ret < 0)
		return ret;
	for (size_t i = 0; i < n; i++) {
		ret = step1(q(st, "UPDATE nodes SET last_seen = ? WHERE id = ? AND last_seen < ?",
			      "iii", seen[i], ids[i], seen[i]),
			    NULL);
		if (ret < 0)
			return fail_tx(st, ret);
	}
	store_idle(st);
	return coord_db_commit(st->db);
}

int store_mark_offline(struct coord_store *st, int64_t id, int64_t last_seen)
{
	int ret = exec1(
	    st, q(st, "UPDATE nodes SET last_seen = ? WHERE id = ?", "ii", last_seen, id), NULL);

	return ret < 0 ? ret : 0;
}

int store_node_by_mkey(struct coord_store *st, const char *mkey, int64_t *id)
{
	int ret = step1(q(st, "SELECT id FROM nodes WHERE machine_key = ?", "s", mkey), id);

	return ret < 0 ? ret : ret == 0 ? -ENOENT : 0;
}

static void fill_result(struct coord_store *st, int64_t id, struct coord_reg_result *out)
{
	struct coord_stmt *s =
	    q(st,
	      "SELECT n.id, n.name, n.ipv4, n.ipv6, n.key_expiry, t.name FROM nodes n"
	      " JOIN tailnets t ON t.id = n.tailnet_id WHERE n.id = ?",
	      "i", id);

	memset(out, 0, sizeof(*out));
	if (step1(s, NULL) != 1)
		return;
	out->node_id = coord_stmt_int64(s, 0);
	snprintf(out->name, sizeof(out->name), "%s", coord_stmt_text(s, 1));
	snprintf(out->addr4, sizeof(out->addr4), "%s", coord_stmt_text(s, 2));
	snprintf(out->addr6, sizeof(out->addr6), "%s", coord_stmt_text(s, 3));
	out->key_expiry = coord_stmt_int64(s, 4);
	snprintf(out->tailnet, sizeof(out->tailnet), "%s", coord_stmt_text(s, 5));
}

/* Which pre-auth key problem to report, for a key the UPDATE did not take. */
static int key_problem(struct coord_store *st, const char *hash, int64_t now, char *err,
		       size_t errlen)
{
	struct coord_stmt *s =
	    q(st, "SELECT expires, used, reusable FROM preauth_keys WHERE key_hash = ?", "s", hash);
	int ret = step1(s, NULL);

	if (ret < 0)
		return dberr(st, ret, err, errlen, "pre-auth key");
	if (ret == 0)
		snprintf(err, errlen, "auth_key: unknown pre-auth key");
	else if (coord_stmt_int64(s, 0) <= now)
		snprintf(err, errlen, "auth_key: pre-auth key expired");
	else
		snprintf(err, errlen, "auth_key: one-off pre-auth key already used");
	return -EACCES;
}

void store_set_key_seconds(struct coord_store *st, int64_t seconds)
{
	st->key_seconds = seconds;
}

static int64_t expiry_for(struct coord_store *st, int64_t tailnet, const char *tags, int64_t now)
{
	int64_t days = 0;

	if (*tags)
		return 0;
	if (st->key_seconds)
		return now + st->key_seconds;
	step1(q(st, "SELECT key_expiry_days FROM tailnets WHERE id = ?", "i", tailnet), &days);
	return days > 0 ? now + days * 86400 : 0;
}

/* A known machine key registering again (restart or rotation). */
static int reregister(struct coord_store *st, int64_t id, const struct coord_register_req *r,
		      int64_t now, int64_t seq, char *err, size_t errlen)
{
	struct coord_stmt *s =
	    q(st, "SELECT node_key, key_expiry, tailnet_id, tags FROM nodes WHERE id = ?", "i", id);
	int ret = step1(s, NULL);
	int64_t expiry, tailnet;
	bool rotated;
	char tags[REQ_LIST_MAX];

	if (ret != 1)
		return dberr(st, ret, err, errlen, "register");
	rotated = strcmp(coord_stmt_text(s, 0), r->node_key) != 0;
	expiry = coord_stmt_int64(s, 1);
	tailnet = coord_stmt_int64(s, 2);
	snprintf(tags, sizeof(tags), "%s", coord_stmt_text(s, 3));
	if (expiry && expiry <= now && !*r->auth_key) {
		snprintf(err, errlen, "node key expired: register again with an auth_key");
		return -EACCES;
	}
	if (*r->auth_key) {
		char hash[65];
		int64_t kt = 0;
		key_hash(r->auth_key, hash);
		ret = step1(
		    q(st,
		      "UPDATE preauth_keys SET used = used + 1 WHERE key_hash = ? AND expires > ?"
		      " AND (reusable = 1 OR used = 0) RETURNING tailnet_id",
		      "si", hash, now),
		    &kt);
		if (ret < 0)
			return dberr(st, ret, err, errlen, "register");
		if (ret == 0)
			return key_problem(st, hash, now, err, errlen);
		if (kt != tailnet) {
			snprintf(err, errlen,
				 "auth_key: the key is for another tailnet than this node's");
			return -EACCES;
		}
		rotated = true;
	}
	if (rotated)
		expiry = expiry_for(st, tailnet, tags, now);
	ret = step1(q(st,
		      "UPDATE nodes SET node_key = ?, key_expiry = ?, endpoints = CASE WHEN ? = 1 "
		      "THEN ? ELSE endpoints END,"
		      " routes = CASE WHEN ? = 1 THEN ? ELSE routes END, last_seen = ?, seq = ? "
		      "WHERE id = ?",
		      "siisisiii", r->node_key, expiry, (int64_t)r->l.has_endpoints, r->l.endpoints,
		      (int64_t)r->l.has_routes, r->l.routes, now, seq, id),
		    NULL);
	if (ret == -EEXIST) {
		snprintf(err, errlen, "node_key: another node has this key");
		return -EEXIST;
	}
	return ret < 0 ? dberr(st, ret, err, errlen, "register") : 0;
}

static int register_new(struct coord_store *st, const struct coord_register_req *r,
			const char *mkey, int64_t now, int64_t seq, int64_t *id, char *err,
			size_t errlen)
{
	char hash[65], name[64], v4[24], v6[48], tags[REQ_LIST_MAX], ula[64];
	int64_t tailnet, user, eph, idx;
	struct coord_stmt *s;
	int ret;

	if (!*r->auth_key) {
		snprintf(err, errlen, "auth_key: a new machine key needs a pre-auth key");
		return -EACCES;
	}
	key_hash(r->auth_key, hash);
	s = q(st,
	      "UPDATE preauth_keys SET used = used + 1 WHERE key_hash = ? AND expires > ? AND "
	      "(reusable = 1 OR used = 0)"
	      " RETURNING tailnet_id, user_id, ephemeral, tags",
	      "si", hash, now);
	ret = step1(s, NULL);
	if (ret < 0)
		return dberr(st, ret, err, errlen, "register");
	if (ret == 0)
		return key_problem(st, hash, now, err, errlen);
	tailnet = coord_stmt_int64(s, 0);
	user = coord_stmt_int64(s, 1);
	eph = coord_stmt_int64(s, 2);
	snprintf(tags, sizeof(tags), "%s", coord_stmt_text(s, 3));
	coord_stmt_reset(s); /* finish the RETURNING statement before the next write */
	s = q(st, "SELECT ula FROM tailnets WHERE id = ?", "i", tailnet);
	if (step1(s, NULL) != 1)
		return dberr(st, -EIO, err, errlen, "register");
	snprintf(ula, sizeof(ula), "%s", coord_stmt_text(s, 0));
	if ((ret = alloc_index(st, &idx)) < 0) {
		snprintf(err, errlen, "no free addresses in 100.64.0.0/10");
		return ret == -ENOSPC ? -EIO : dberr(st, ret, err, errlen, "register");
	}
	if ((ret = unique_name(st, tailnet, r->hostname, name, sizeof(name))) < 0)
		return dberr(st, ret, err, errlen, "register");
	store_addr_v4(idx, v4, sizeof(v4));
	store_addr_v6(ula, idx, v6, sizeof(v6));
	ret = step1(
	    q(st,
	      "INSERT INTO nodes (tailnet_id, user_id, machine_key, node_key, name, addr_index, "
	      "ipv4, ipv6, tags,"
	      " ephemeral, plain_wg, key_expiry, endpoints, routes, approved, last_seen, created, "
	      "seq)"
	      " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, '', ?, ?, ?) RETURNING id",
	      "iisssisssiissiii", tailnet, user, mkey, r->node_key, name, idx, v4, v6, tags, eph,
	      expiry_for(st, tailnet, tags, now), r->l.endpoints, r->l.routes, now, now, seq),
	    id);
	if (ret == -EEXIST) {
		snprintf(err, errlen, "node_key: another node has this key");
		return -EEXIST;
	}
	return ret == 1 ? 0 : dberr(st, ret, err, errlen, "register");
}

int store_register(struct coord_store *st, const struct coord_register_req *r, const char *mkey,
		   int64_t now, struct coord_reg_result *out, char *err, size_t errlen)
{
	int64_t seq, id;
	int ret;

	if ((ret = wbegin(st, &seq)) < 0)
		return dberr(st, ret, err, errlen, "register");
	ret = store_node_by_mkey(st, mkey, &id);
	if (ret == 0)
		ret = reregister(st, id, r, now, seq, err, errlen);
	else if (ret == -ENOENT)
		ret = register_new(st, r, mkey, now, seq, &id, err, errlen);
	else
		ret = dberr(st, ret, err, errlen, "register");
	if (ret < 0)
		return fail_tx(st, ret);
	if ((ret = wcommit(st)) < 0)
		return dberr(st, ret, err, errlen, "register");
	fill_result(st, id, out);
	return 0;
}

int store_node_update(struct coord_store *st, int64_t id, const char *node_key,
		      const struct coord_lists *l, int64_t now, int64_t *key_expiry, char *err,
		      size_t errlen)
{
	struct coord_stmt *s;
	int64_t seq, expiry, tailnet;
	char tags[REQ_LIST_MAX], eps[REQ_LIST_MAX], routes[REQ_LIST_MAX], key[64];
	int ret;

	s = q(st,
	      "SELECT node_key, key_expiry, tailnet_id, tags, endpoints, routes FROM nodes WHERE "
	      "id = ?",
	      "i", id);
	if ((ret = step1(s, NULL)) != 1) {
		snprintf(err, errlen, "node %" PRId64 " is gone", id);
		return ret < 0 ? dberr(st, ret, err, errlen, "update") : -ENOENT;
	}
	snprintf(key, sizeof(key), "%s", coord_stmt_text(s, 0));
	expiry = coord_stmt_int64(s, 1);
	tailnet = coord_stmt_int64(s, 2);
	snprintf(tags, sizeof(tags), "%s", coord_stmt_text(s, 3));
	snprintf(eps, sizeof(eps), "%s", coord_stmt_text(s, 4));
	snprintf(routes, sizeof(routes), "%s", coord_stmt_text(s, 5));
	coord_stmt_reset(s);
	*key_expiry = expiry;
	bool rotate = node_key && *node_key && strcmp(node_key, key);
	if (rotate && expiry && expiry <= now) {
		/* Rotation is for keys still valid: an expired node proves itself
		 * again with a pre-auth key (register), like a new one. */
		snprintf(err, errlen, "node key expired: register again with an auth key");
		return -EPERM;
	}
	bool eps_changed = l->has_endpoints && strcmp(l->endpoints, eps);
	bool routes_changed = l->has_routes && strcmp(l->routes, routes);
	if (!rotate && !eps_changed && !routes_changed)
		return 0; /* nothing to write: no version bump */
	if ((ret = wbegin(st, &seq)) < 0)
		return dberr(st, ret, err, errlen, "update");
	if (rotate)
		expiry = expiry_for(st, tailnet, tags, now);
	ret = step1(q(st,
		      "UPDATE nodes SET node_key = ?, key_expiry = ?, endpoints = ?, routes = ?, "
		      "seq = ? WHERE id = ?",
		      "sissii", rotate ? node_key : key, expiry, eps_changed ? l->endpoints : eps,
		      routes_changed ? l->routes : routes, seq, id),
		    NULL);
	if (ret == -EEXIST) {
		snprintf(err, errlen, "node_key: another node has this key");
		return fail_tx(st, -EEXIST);
	}
	if (ret < 0)
		return fail_tx(st, dberr(st, ret, err, errlen, "update"));
	if ((ret = wcommit(st)) < 0)
		return dberr(st, ret, err, errlen, "update");
	*key_expiry = expiry;
	return 0;
}

static int delete_node(struct coord_store *st, int64_t id, int64_t seq)
{
	int ret = step1(q(st, "DELETE FROM nodes WHERE id = ?", "i", id), NULL);

	if (ret < 0)
		return ret;
	return step1(q(st, "INSERT INTO tombstones (node_id, seq) VALUES (?, ?)", "ii", id, seq),
		     NULL);
}

int store_node_delete(struct coord_store *st, int64_t id, char *err, size_t errlen)
{
	int64_t seq, x;
	int ret;

	if ((ret = step1(q(st, "SELECT id FROM nodes WHERE id = ?", "i", id), &x)) != 1) {
		snprintf(err, errlen, "no node %" PRId64, id);
		return ret < 0 ? dberr(st, ret, err, errlen, "delete") : -ENOENT;
	}
	if ((ret = wbegin(st, &seq)) < 0)
		return dberr(st, ret, err, errlen, "delete");
	if ((ret = delete_node(st, id, seq)) < 0)
		return fail_tx(st, dberr(st, ret, err, errlen, "delete"));
	if ((ret = wcommit(st)) < 0)
		return dberr(st, ret, err, errlen, "delete");
	return 0;
}

int store_node_logout(struct coord_store *st, int64_t id, char *err, size_t errlen)
{
	int64_t eph = 0, seq;
	int ret = step1(q(st, "SELECT ephemeral FROM nodes WHERE id = ?", "i", id), &eph);

	if (ret != 1) {
		snprintf(err, errlen, "node %" PRId64 " is gone", id);
		return ret < 0 ? dberr(st, ret, err, errlen, "logout") : -ENOENT;
	}
	if (eph)
		return store_node_delete(st, id, err, errlen);
	if ((ret = wbegin(st, &seq)) < 0)
		return dberr(st, ret, err, errlen, "logout");
	ret = step1(q(st, "UPDATE nodes SET last_seen = 0, seq = ? WHERE id = ?", "ii", seq, id),
		    NULL);
	if (ret < 0)
		return fail_tx(st, dberr(st, ret, err, errlen, "logout"));
	return wcommit(st) < 0 ? dberr(st, -EIO, err, errlen, "logout") : 0;
}

int store_node_expire(struct coord_store *st, int64_t id, int64_t now, char *err, size_t errlen)
{
	int64_t seq, x;
	int ret;

	if ((ret = step1(q(st, "SELECT id FROM nodes WHERE id = ?", "i", id), &x)) != 1) {
		snprintf(err, errlen, "no node %" PRId64, id);
		return ret < 0 ? dberr(st, ret, err, errlen, "expire") : -ENOENT;
	}
	if ((ret = wbegin(st, &seq)) < 0)
		return dberr(st, ret, err, errlen, "expire");
	ret = step1(
	    q(st, "UPDATE nodes SET key_expiry = ?, seq = ? WHERE id = ?", "iii", now, seq, id),
	    NULL);
	if (ret < 0)
		return fail_tx(st, dberr(st, ret, err, errlen, "expire"));
	return wcommit(st) < 0 ? dberr(st, -EIO, err, errlen, "expire") : 0;
}

int store_reap_ephemeral(struct coord_store *st, int64_t before)
{
	int64_t ids[256], seq;
	size_t n = 0;
	struct coord_stmt *s =
	    q(st, "SELECT id FROM nodes WHERE ephemeral = 1 AND last_seen < ? AND plain_wg = 0",
	      "i", before);
	int ret;

	while (n < ARRAY_SIZE(ids) && step1(s, NULL) == 1)
		ids[n++] = coord_stmt_int64(s, 0);
	if (s)
		coord_stmt_reset(s);
	if (!n)
		return 0;
	if ((ret = wbegin(st, &seq)) < 0)
		return ret;
	for (size_t i = 0; i < n; i++)
		if ((ret = delete_node(st, ids[i], seq)) < 0)
			return fail_tx(st, ret);
	return wcommit(st) < 0 ? -EIO : (int)n;
}

/* ---- loading the model --------------------------------------------------------- */

int store_load(struct coord_store *st, struct coord_model *m, bool full,
	       void (*removed)(void *, void *), void *arg)
{
	int64_t v = store_state_version(st), since = full ? -1 : st->loaded;
	struct coord_stmt *s;

	if (!full && v == st->loaded)
		return 0;
	s = q(st,
	      "SELECT id, name, key_expiry_days, ula, gw_tag, policy_version FROM tailnets WHERE "
	      "seq > ?",
	      "i", since);
	int64_t pol_ids[1024], pol_vers[1024];
	size_t n_pol = 0;
	while (step1(s, NULL) == 1) {
		struct cm_tailnet *t = cm_tailnet_set(
		    m, coord_stmt_int64(s, 0), coord_stmt_text(s, 1), (int)coord_stmt_int64(s, 2),
		    coord_stmt_text(s, 3), coord_stmt_text(s, 4));
		if (t && t->policy_version != coord_stmt_int64(s, 5) &&
		    n_pol < ARRAY_SIZE(pol_ids)) {
			pol_ids[n_pol] = t->id;
			pol_vers[n_pol++] = coord_stmt_int64(s, 5);
		}
	}
	for (size_t i = 0; i < n_pol; i++) {
		struct coord_stmt *p =
		    q(st, "SELECT text FROM policies WHERE tailnet_id = ? AND version = ?", "ii",
		      pol_ids[i], pol_vers[i]);
		struct cm_tailnet *t = cm_tailnet_find(m, pol_ids[i]);
		if (step1(p, NULL) == 1)
			cm_tailnet_set_policy(t, coord_stmt_text(p, 0), pol_vers[i]);
		else
			cm_tailnet_set_policy(t, NULL, pol_vers[i]);
		coord_stmt_reset(p);
	}
	s = q(st, "SELECT id, tailnet_id, name FROM users WHERE seq > ?", "i", since);
	while (step1(s, NULL) == 1)
		cm_user_set(m, coord_stmt_int64(s, 0), coord_stmt_int64(s, 1),
			    coord_stmt_text(s, 2));
	s = q(st,
	      "SELECT id, tailnet_id, user_id, name, node_key, machine_key, ipv4, ipv6, tags, "
	      "endpoints, routes, approved,"
	      " ephemeral, plain_wg, key_expiry, last_seen FROM nodes WHERE seq > ?",
	      "i", since);
	while (step1(s, NULL) == 1) {
		struct cm_node_info in = {
		    .id = coord_stmt_int64(s, 0),
		    .tailnet_id = coord_stmt_int64(s, 1),
		    .user_id = coord_stmt_int64(s, 2),
		    .name = coord_stmt_text(s, 3),
		    .node_key = coord_stmt_text(s, 4),
		    .machine_key = coord_stmt_is_null(s, 5) ? NULL : coord_stmt_text(s, 5),
		    .tags = coord_stmt_text(s, 8),
		    .endpoints = coord_stmt_text(s, 9),
		    .routes = coord_stmt_text(s, 10),
		    .approved = coord_stmt_text(s, 11),
		    .ephemeral = coord_stmt_int64(s, 12) != 0,
		    .plain_wg = coord_stmt_int64(s, 13) != 0,
		    .key_expiry = coord_stmt_int64(s, 14),
		    .last_seen = coord_stmt_int64(s, 15),
		};
		mg_ifaddr_parse(coord_stmt_text(s, 6), &in.addr4);
		mg_ifaddr_parse(coord_stmt_text(s, 7), &in.addr6);
		struct cm_node *n = cm_node_find(m, in.id);
		if (n && coord_stmt_int64(s, 15) == 0)
			n->info.last_seen = 0; /* logout */
		cm_node_upsert(m, &in);
	}
	if (!full) {
		s = q(st, "SELECT node_id FROM tombstones WHERE seq > ?", "i", since);
		while (step1(s, NULL) == 1) {
			void *w = cm_node_remove(m, coord_stmt_int64(s, 0));
			if (w && removed)
				removed(arg, w);
		}
	} else {
		/* everything: drop what the table no longer has */
		for (uint32_t i = 0; i < m->n_slots; i++) {
			struct cm_node *n = m->slots[i];
			if (!n)
				continue;
			int64_t x;
			if (step1(q(st, "SELECT id FROM nodes WHERE id = ?", "i", n->info.id),
				  &x) == 0) {
				void *w = cm_node_remove(m, n->info.id);
				if (w && removed)
					removed(arg, w);
			}
		}
	}
	st->loaded = v;
	return 1;
}

int store_load_last_seen(struct coord_store *st, struct coord_model *m, int64_t since)
{
	struct coord_stmt *s =
	    q(st, "SELECT id, last_seen FROM nodes WHERE last_seen > ?", "i", since);

	while (step1(s, NULL) == 1) {
		struct cm_node *n = cm_node_find(m, coord_stmt_int64(s, 0));
		if (n && coord_stmt_int64(s, 1) > n->info.last_seen)
			n->info.last_seen = coord_stmt_int64(s, 1);
	}
	return 0;
}

/* ---- admin ------------------------------------------------------------------------ */

static int tailnet_id(struct coord_store *st, const char *name, int64_t *id, char *err,
		      size_t errlen)
{
	int ret;

	*id = 0; /* callers never see it unset, whatever step1 does */
	ret = step1(q(st, "SELECT id FROM tailnets WHERE name = ?", "s", name), id);

	if (ret == 0) {
		snprintf(err, errlen, "no tailnet \"%s\"", name);
		return -ENOENT;
	}
	return ret < 0 ? dberr(st, ret, err, errlen, "tailnet") : 0;
}

static int user_id(struct coord_store *st, int64_t tailnet, const char *name, int64_t *id,
		   char *err, size_t errlen)
{
	int ret;

	*id = 0;
	ret = step1(
	    q(st, "SELECT id FROM users WHERE tailnet_id = ? AND name = ?", "is", tailnet, name),
	    id);

	if (ret == 0) {
		snprintf(err, errlen, "no user \"%s\" in that tailnet", name);
		return -ENOENT;
	}
	return ret < 0 ? dberr(st, ret, err, errlen, "user") : 0;
}

int store_tailnet_create(struct coord_store *st, const struct coord_tailnet_req *r, int64_t now,
			 json_t **out, char *err, size_t errlen)
{
	int64_t seq, id;
	char ula[64];
	int ret;

	if ((ret = wbegin(st, &seq)) < 0)
		return dberr(st, ret, err, errlen, "tailnet");
	if (step1(q(st, "SELECT id FROM tailnets WHERE name = ?", "s", r->name), &id) == 1) {
		snprintf(err, errlen, "tailnet \"%s\" exists", r->name);
		return fail_tx(st, -EEXIST);
	}
	for (unsigned attempt = 0;; attempt++) {
		store_tailnet_ula(r->name, attempt, ula, sizeof(ula));
		ret = step1(q(st, "SELECT 1 FROM tailnets WHERE ula = ?", "s", ula), NULL);
		if (ret <= 0 || attempt > 65535)
			break;
	}
	if (ret < 0)
		return fail_tx(st, dberr(st, ret, err, errlen, "tailnet"));
	ret = step1(q(st,
		      "INSERT INTO tailnets (name, key_expiry_days, ula, gw_tag, created, seq) "
		      "VALUES (?, ?, ?, ?, ?, ?)"
		      " RETURNING id",
		      "sissii", r->name, (int64_t)r->key_expiry_days, ula, r->gw_tag, now, seq),
		    &id);
	if (ret != 1)
		return fail_tx(st, dberr(st, ret, err, errlen, "tailnet"));
	if ((ret = wcommit(st)) < 0)
		return dberr(st, ret, err, errlen, "tailnet");
	*out = json_pack("{sIsssissssss}", "id", (json_int_t)id, "name", r->name, "key_expiry_days",
			 r->key_expiry_days, "ula", ula, "ipv4", "100.64.0.0/10",
			 "wireguard_gateways", r->gw_tag);
	return 0;
}

int store_user_create(struct coord_store *st, const struct coord_user_req *r, int64_t now,
		      json_t **out, char *err, size_t errlen)
{
	int64_t seq, tn, id;
	int ret;

	if ((ret = tailnet_id(st, r->tailnet, &tn, err, errlen)) < 0)
		return ret;
	if ((ret = wbegin(st, &seq)) < 0)
		return dberr(st, ret, err, errlen, "user");
	ret = step1(
	    q(st,
	      "INSERT INTO users (tailnet_id, name, created, seq) VALUES (?, ?, ?, ?) RETURNING id",
	      "isii", tn, r->name, now, seq),
	    &id);
	if (ret == -EEXIST) {
		snprintf(err, errlen, "user \"%s\" exists in tailnet \"%s\"", r->name, r->tailnet);
		return fail_tx(st, ret);
	}
	if (ret != 1)
		return fail_tx(st, dberr(st, ret, err, errlen, "user"));
	if ((ret = wcommit(st)) < 0)
		return dberr(st, ret, err, errlen, "user");
	*out = json_pack("{sIssss}", "id", (json_int_t)id, "tailnet", r->tailnet, "name", r->name);
	return 0;
}

int store_key_create(struct coord_store *st, const struct coord_key_req *r, int64_t now,
		     json_t **out, char *err, size_t errlen)
{
	uint8_t raw[24];
	char key[4 + 2 * sizeof(raw) + 1], hash[65];
	int64_t tn, user, id;
	int ret;

	if ((ret = tailnet_id(st, r->tailnet, &tn, err, errlen)) < 0 ||
	    (ret = user_id(st, tn, r->user, &user, err, errlen)) < 0)
		return ret;
	randombytes_buf(raw, sizeof(raw));
	memcpy(key, "mgk-", 4);
	sodium_bin2hex(key + 4, sizeof(key) - 4, raw, sizeof(raw));
	key_hash(key, hash);
	/* keys are not map state: no version bump */
	ret = exec1(st,
		    q(st,
		      "INSERT INTO preauth_keys (tailnet_id, user_id, key_hash, key_prefix, "
		      "reusable, ephemeral, tags,"
		      " expires, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
		      "iissiisii", tn, user, hash, (const char *)"mgk-", (int64_t)r->reusable,
		      (int64_t)r->ephemeral, r->tags, now + r->expires_in, now),
		    &id);
	if (ret != 1)
		return dberr(st, ret, err, errlen, "pre-auth key");
	*out = json_pack("{sIsssIsbsbss}", "id", (json_int_t)id, "key", key, "expires",
			 (json_int_t)(now + r->expires_in), "reusable", r->reusable, "ephemeral",
			 r->ephemeral, "tags", r->tags);
	sodium_memzero(key, sizeof(key));
	return 0;
}

int store_route_approve(struct coord_store *st, int64_t node_id, const char *routes, json_t **out,
			char *err, size_t errlen)
{
	struct coord_stmt *s = q(st, "SELECT approved FROM nodes WHERE id = ?", "i", node_id);
	char merged[2 * REQ_LIST_MAX + 2];
	int64_t seq;
	int ret = step1(s, NULL);

	if (ret != 1) {
		snprintf(err, errlen, "no node %" PRId64, node_id);
		return ret < 0 ? dberr(st, ret, err, errlen, "routes") : -ENOENT;
	}
	snprintf(merged, sizeof(merged), "%s", coord_stmt_text(s, 0));
	coord_stmt_reset(s);
	for (const char *p = routes; *p;) {
		size_t len = strcspn(p, ",");
		char item[64];
		snprintf(item, sizeof(item), "%.*s", (int)len, p);
		char *f = strstr(merged, item);
		bool have = f && (f == merged || f[-1] == ',') && (f[len] == ',' || !f[len]);
		if (!have && strlen(merged) + len + 2 < sizeof(merged)) {
			if (*merged)
				strcat(merged, ",");
			strcat(merged, item);
		}
		p += len;
		if (*p == ',')
			p++;
	}
	if (strlen(merged) >= REQ_LIST_MAX) {
		snprintf(err, errlen, "too many approved routes");
		return -EINVAL;
	}
	if ((ret = wbegin(st, &seq)) < 0)
		return dberr(st, ret, err, errlen, "routes");
	ret = step1(q(st, "UPDATE nodes SET approved = ?, seq = ? WHERE id = ?", "sii", merged, seq,
		      node_id),
		    NULL);
	if (ret < 0)
		return fail_tx(st, dberr(st, ret, err, errlen, "routes"));
	if ((ret = wcommit(st)) < 0)
		return dberr(st, ret, err, errlen, "routes");
	*out = json_pack("{sIss}", "node_id", (json_int_t)node_id, "approved", merged);
	return 0;
}

int store_policy_set(struct coord_store *st, int64_t tn, const char *text, int64_t now,
		     int64_t *version, char *err, size_t errlen)
{
	int64_t seq, v = 0;
	int ret;

	if ((ret = wbegin(st, &seq)) < 0)
		return dberr(st, ret, err, errlen, "policy");
	if ((ret = step1(
		 q(st, "SELECT COALESCE(MAX(version), 0) + 1 FROM policies WHERE tailnet_id = ?",
		   "i", tn),
		 &v)) != 1)
		return fail_tx(st, dberr(st, ret, err, errlen, "policy"));
	ret = step1(
	    q(st, "INSERT INTO policies (tailnet_id, version, text, created) VALUES (?, ?, ?, ?)",
	      "iisi", tn, v, text, now),
	    NULL);
	if (ret < 0)
		return fail_tx(st, dberr(st, ret, err, errlen, "policy"));
	ret = step1(q(st, "UPDATE tailnets SET policy_version = ?, seq = ? WHERE id = ?", "iii", v,
		      seq, tn),
		    NULL);
	if (ret < 0)
		return fail_tx(st, dberr(st, ret, err, errlen, "policy"));
	if ((ret = wcommit(st)) < 0)
		return dberr(st, ret, err, errlen, "policy");
	*version = v;
	return 0;
}

int store_policy_get(struct coord_store *st, int64_t tn, int64_t version, char **text, int64_t *ver)
{
	struct coord_stmt *s;
	int ret;

	*text = NULL;
	if (version == 0)
		s = q(st,
		      "SELECT version, text FROM policies WHERE tailnet_id = ? ORDER BY version "
		      "DESC LIMIT 1",
		      "i", tn);
	else
		s = q(st, "SELECT version, text FROM policies WHERE tailnet_id = ? AND version = ?",
		      "ii", tn, version);
	ret = step1(s, NULL);
	if (ret != 1)
		return ret < 0 ? ret : -ENOENT;
	*ver = coord_stmt_int64(s, 0);
	*text = strdup(coord_stmt_text(s, 1));
	coord_stmt_reset(s);
	return *text ? 0 : -ENOMEM;
}

int store_policy_history(struct coord_store *st, int64_t tn, json_t **out)
{
	struct coord_stmt *s = q(st,
				 "SELECT version, created, LENGTH(text) FROM policies WHERE "
				 "tailnet_id = ? ORDER BY version",
				 "i", tn);

	*out = json_array();
	while (step1(s, NULL) == 1)
		json_array_append_new(*out, json_pack("{sIsIsI}", "version",
						      (json_int_t)coord_stmt_int64(s, 0), "created",
						      (json_int_t)coord_stmt_int64(s, 1), "bytes",
						      (json_int_t)coord_stmt_int64(s, 2)));
	return 0;
}

int store_wg_enroll(struct coord_store *st, const struct coord_wg_req *r, int64_t now,
		    struct coord_reg_result *out, char *err, size_t errlen)
{
	int64_t tn, user, seq, idx, id;
	char name[64], v4[24], v6[48], ula[64];
	struct coord_stmt *s;
	int ret;

	if ((ret = tailnet_id(st, r->tailnet, &tn, err, errlen)) < 0 ||
	    (ret = user_id(st, tn, r->user, &user, err, errlen)) < 0)
		return ret;
	if ((ret = wbegin(st, &seq)) < 0)
		return dberr(st, ret, err, errlen, "wireguard");
	s = q(st, "SELECT ula FROM tailnets WHERE id = ?", "i", tn);
	if (step1(s, NULL) != 1)
		return fail_tx(st, dberr(st, -EIO, err, errlen, "wireguard"));
	snprintf(ula, sizeof(ula), "%s", coord_stmt_text(s, 0));
	coord_stmt_reset(s);
	if ((ret = alloc_index(st, &idx)) < 0 ||
	    (ret = unique_name(st, tn, r->name, name, sizeof(name))) < 0)
		return fail_tx(st, dberr(st, ret, err, errlen, "wireguard"));
	store_addr_v4(idx, v4, sizeof(v4));
	store_addr_v6(ula, idx, v6, sizeof(v6));
	ret = step1(
	    q(st,
	      "INSERT INTO nodes (tailnet_id, user_id, machine_key, node_key, name, addr_index, "
	      "ipv4, ipv6, tags,"
	      " ephemeral, plain_wg, key_expiry, endpoints, routes, approved, last_seen, created, "
	      "seq)"
	      " VALUES (?, ?, NULL, ?, ?, ?, ?, ?, '', 0, 1, 0, '', '', '', 0, ?, ?) RETURNING id",
	      "iississii", tn, user, r->public_key, name, idx, v4, v6, now, seq),
	    &id);
	if (ret == -EEXIST) {
		snprintf(err, errlen, "public_key: another node has this key");
		return fail_tx(st, ret);
	}
	if (ret != 1)
		return fail_tx(st, dberr(st, ret, err, errlen, "wireguard"));
	if ((ret = wcommit(st)) < 0)
		return dberr(st, ret, err, errlen, "wireguard");
	fill_result(st, id, out);
	return 0;
}

int store_list_tailnets(struct coord_store *st, json_t **out)
{
	struct coord_stmt *s = q(st,
				 "SELECT id, name, key_expiry_days, ula, gw_tag, policy_version "
				 "FROM tailnets ORDER BY id",
				 "");

	*out = json_array();
	while (step1(s, NULL) == 1)
		json_array_append_new(*out, json_pack("{sIsssIsssssI}", "id",
						      (json_int_t)coord_stmt_int64(s, 0), "name",
						      coord_stmt_text(s, 1), "key_expiry_days",
						      (json_int_t)coord_stmt_int64(s, 2), "ula",
						      coord_stmt_text(s, 3), "wireguard_gateways",
						      coord_stmt_text(s, 4), "policy_version",
						      (json_int_t)coord_stmt_int64(s, 5)));
	return 0;
}

int store_list_users(struct coord_store *st, int64_t tn, json_t **out)
{
	struct coord_stmt *s =
	    q(st,
	      "SELECT u.id, t.name, u.name FROM users u JOIN tailnets t ON t.id = u.tailnet_id"
	      " WHERE ? = 0 OR u.tailnet_id = ? ORDER BY u.id",
	      "ii", tn, tn);

	*out = json_array();
	while (step1(s, NULL) == 1)
		json_array_append_new(
		    *out, json_pack("{sIssss}", "id", (json_int_t)coord_stmt_int64(s, 0), "tailnet",
				    coord_stmt_text(s, 1), "name", coord_stmt_text(s, 2)));
	return 0;
}

int store_list_keys(struct coord_store *st, int64_t tn, int64_t now, json_t **out)
{
	struct coord_stmt *s =
	    q(st,
	      "SELECT k.id, t.name, u.name, k.reusable, k.ephemeral, k.tags, k.expires, k.used"
	      " FROM preauth_keys k JOIN tailnets t ON t.id = k.tailnet_id JOIN users u ON u.id = "
	      "k.user_id"
	      " WHERE ? = 0 OR k.tailnet_id = ? ORDER BY k.id",
	      "ii", tn, tn);

	*out = json_array();
	while (step1(s, NULL) == 1)
		json_array_append_new(
		    *out,
		    json_pack("{sIsssssbsbsssIsIsb}", "id", (json_int_t)coord_stmt_int64(s, 0),
			      "tailnet", coord_stmt_text(s, 1), "user", coord_stmt_text(s, 2),
			      "reusable", (int)coord_stmt_int64(s, 3), "ephemeral",
			      (int)coord_stmt_int64(s, 4), "tags", coord_stmt_text(s, 5), "expires",
			      (json_int_t)coord_stmt_int64(s, 6), "used",
			      (json_int_t)coord_stmt_int64(s, 7), "valid",
			      coord_stmt_int64(s, 6) > now &&
				  (coord_stmt_int64(s, 3) || !coord_stmt_int64(s, 7))));
	return 0;
}
