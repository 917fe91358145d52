/* SPDX-License-Identifier: MIT */
/*
 * SQLite backend of db.h. `?` parameters are SQLite's own, so SQL passes
 * through untouched. WAL mode and a busy timeout let several processes (a
 * replica on the same host, the tests) share one file.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "db.h"

struct coord_db {
	const struct coord_db_ops *ops;
	sqlite3 *h;
	char err[256];
};

struct coord_stmt {
	struct coord_db *db;
	sqlite3_stmt *st;
	int64_t changes;
};

static int fail(struct coord_db *db, int rc)
{
	snprintf(db->err, sizeof(db->err), "sqlite: %s", sqlite3_errmsg(db->h));
	switch (rc & 0xff) {
	case SQLITE_CONSTRAINT:
		return -EEXIST;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EAGAIN;
	case SQLITE_NOMEM:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

static void sq_close(struct coord_db *db)
{
	sqlite3_close_v2(db->h);
	free(db);
}

static const char *sq_errmsg(const struct coord_db *db)
{
	return db->err;
}

static int sq_exec(struct coord_db *db, const char *sql)
{
	int rc = sqlite3_exec(db->h, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : fail(db, rc);
}

static int sq_begin(struct coord_db *db)
{
	return sq_exec(db, "BEGIN IMMEDIATE");
}
static int sq_commit(struct coord_db *db)
{
	return sq_exec(db, "COMMIT");
}
static int sq_rollback(struct coord_db *db)
{
	return sq_exec(db, "ROLLBACK");
}

static int sq_prepare(struct coord_db *db, const char *sql, struct coord_stmt **out)
{
	struct coord_stmt *s = calloc(1, sizeof(*s));
	int rc;

	*out = NULL;
	if (!s)
		return -ENOMEM;
	rc = sqlite3_prepare_v2(db->h, sql, -1, &s->st, NULL);
	if (rc != SQLITE_OK) {
		free(s);
		return fail(db, rc);
	}
	s->db = db;
	*out = s;
	return 0;
}

static void sq_finalize(struct coord_stmt *s)
{
	sqlite3_finalize(s->st);
	free(s);
}

static int sq_reset(struct coord_stmt *s)
{
	sqlite3_reset(s->st);
	sqlite3_clear_bindings(s->st);
	s->changes = 0;
	return 0;
}

static int sq_bind_int64(struct coord_stmt *s, int idx, int64_t v)
{
	int rc = sqlite3_bind_int64(s->st, idx, v);
	return rc == SQLITE_OK ? 0 : fail(s->db, rc);
}

static int sq_bind_text(struct coord_stmt *s, int idx, const char *v)
{
	int rc = v ? sqlite3_bind_text(s->st, idx, v, -1, SQLITE_TRANSIENT)
		   : sqlite3_bind_null(s->st, idx);
	return rc == SQLITE_OK ? 0 : fail(s->db, rc);
}

static int sq_bind_null(struct coord_stmt *s, int idx)
{
	int rc = sqlite3_bind_null(s->st, idx);
	return rc == SQLITE_OK ? 0 : fail(s->db, rc);
}

static int sq_step(struct coord_stmt *s)
{
	int rc = sqlite3_step(s->st);

	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE) {
		s->changes = sqlite3_changes64(s->db->h);
		return 0;
	}
	rc = fail(s->db, rc);
	sqlite3_reset(s->st);
	return rc;
}

static int64_t sq_changes(struct coord_stmt *s)
{
	return s->changes;
}
static int sq_ncols(struct coord_stmt *s)
{
	return sqlite3_column_count(s->st);
}

static bool sq_is_null(struct coord_stmt *s, int col)
{
	return sqlite3_column_type(s->st, col) == SQLITE_NULL;
}

static int64_t sq_int64(struct coord_stmt *s, int col)
{
	return sqlite3_column_int64(s->st, col);
}

static const char *sq_text(struct coord_stmt *s, int col)
{
	return (const char *)sqlite3_column_text(s->st, col);
}

static int sq_listen(struct coord_db *db)
{
	(void)db;
	return -ENOTSUP;
}

static int sq_notified(struct coord_db *db)
{
	(void)db;
	return 0;
}

static int sq_notify(struct coord_db *db)
{
	(void)db;
	return 0;
}

static const struct coord_db_ops sqlite_ops = {
    .dialect = COORD_DB_SQLITE,
    .id_type = "INTEGER PRIMARY KEY",
    .close = sq_close,
    .errmsg = sq_errmsg,
    .exec = sq_exec,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .prepare = sq_prepare,
    .finalize = sq_finalize,
    .reset = sq_reset,
    .bind_int64 = sq_bind_int64,
    .bind_text = sq_bind_text,
    .bind_null = sq_bind_null,
    .step = sq_step,
    .changes = sq_changes,
    .ncols = sq_ncols,
    .is_null = sq_is_null,
    .col_int64 = sq_int64,
    .col_text = sq_text,
    .listen = sq_listen,
    .notified = sq_notified,
    .notify = sq_notify,
};

int coord_db_sqlite_open(const char *path, struct coord_db **out, char *err, size_t errlen)
{
	struct coord_db *db = calloc(1, sizeof(*db));
	int rc;

	*out = NULL;
	if (!db)
		return -ENOMEM;
	db->ops = &sqlite_ops;
	rc = sqlite3_open_v2(path, &db->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "sqlite %s: %s", path,
			 db->h ? sqlite3_errmsg(db->h) : "out of memory");
		sqlite3_close_v2(db->h);
		free(db);
		return -EIO;
	}
	sqlite3_busy_timeout(db->h, 5000);
	if (sq_exec(db,
		    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON") <
	    0) {
		snprintf(err, errlen, "%s: %s", path, db->err);
		sq_close(db);
		return -EIO;
	}
	*out = db;
	return 0;
}
