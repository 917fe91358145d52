/* SPDX-License-Identifier: MIT */
/*
 * The coordination server's storage driver layer: one small interface, one
 * file per backend (db_sqlite.c, db_pg.c). Everything above this header
 * writes SQL once, portable between SQLite (>= 3.35) and PostgreSQL:
 *
 * - Parameters are written `?` (positional, 1-based in the bind calls); a
 *   backend that wants another form (PostgreSQL: $1, $2, ...) translates them
 *   in coord_db_prepare. A `?` inside a '...' string literal is not a
 *   parameter. Nothing else in the SQL may contain `?`.
 * - Types: BIGINT (stored and read as int64), TEXT, and booleans as BIGINT
 *   0/1. No blobs: keys travel as base64 / hex text.
 * - New ids come from `INSERT ... RETURNING id` (both backends). Id columns in
 *   migrations are written with the token {ID} (see coord_db_id_type), which
 *   migrate.c replaces per dialect: "INTEGER PRIMARY KEY" for SQLite,
 *   "BIGSERIAL PRIMARY KEY" for PostgreSQL.
 * - Upserts use `INSERT ... ON CONFLICT (...) DO ...` (both backends).
 *
 * Error convention: 0 (or a positive count / row flag) on success, -errno on
 * failure, with a one-line message from coord_db_errmsg. A unique or primary
 * key violation is -EEXIST, a serialization failure or a busy database is
 * -EAGAIN (the caller may retry the whole transaction), anything else -EIO.
 *
 * A connection (and its statements) is used by one thread at a time; the
 * caller serialises. Statements may be kept prepared for the connection's
 * life (coord_stmt_reset between uses).
 */
#ifndef MG_COORD_DB_H
#define MG_COORD_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum coord_db_dialect {
	COORD_DB_SQLITE,
	COORD_DB_PG,
};

struct coord_db;
struct coord_stmt;

/*
 * Open "sqlite:PATH" (created if missing; ":memory:" works) or
 * "postgresql://..." / "postgres://..." (libpq conninfo URI). Returns 0 with
 * *out set, or -EINVAL (unknown scheme), -ENOTSUP (backend not built in),
 * -EIO, with one line in err.
 */
int coord_db_open(const char *url, struct coord_db **out, char *err, size_t errlen);
void coord_db_close(struct coord_db *db);

enum coord_db_dialect coord_db_dialect(const struct coord_db *db);
/* The column type for an auto-allocated int64 primary key in this dialect. */
const char *coord_db_id_type(const struct coord_db *db);
/* The last error on this connection, one line (never NULL). */
const char *coord_db_errmsg(const struct coord_db *db);

/* Run one or more ';'-separated statements without parameters or results. */
int coord_db_exec(struct coord_db *db, const char *sql);

/* BEGIN / COMMIT / ROLLBACK. Transactions do not nest. coord_db_begin takes
 * the write lock at once (SQLite: BEGIN IMMEDIATE) so a transaction that
 * began never fails later with a lock upgrade error. */
int coord_db_begin(struct coord_db *db);
int coord_db_commit(struct coord_db *db);
int coord_db_rollback(struct coord_db *db);

int coord_db_prepare(struct coord_db *db, const char *sql, struct coord_stmt **out);
void coord_stmt_finalize(struct coord_stmt *s);
/* Back to before the first step; bindings are cleared (all NULL). */
int coord_stmt_reset(struct coord_stmt *s);

/* idx is 1-based. Text is copied; NULL text binds SQL NULL. */
int coord_stmt_bind_int64(struct coord_stmt *s, int idx, int64_t v);
int coord_stmt_bind_text(struct coord_stmt *s, int idx, const char *v);
int coord_stmt_bind_null(struct coord_stmt *s, int idx);

/* 1: a row is available; 0: done (no more rows); -errno: error (see above). */
int coord_stmt_step(struct coord_stmt *s);
/* Number of rows changed by the last INSERT/UPDATE/DELETE step. */
int64_t coord_stmt_changes(struct coord_stmt *s);

/* Columns of the current row, 0-based. NULL reads as 0 / NULL. Text stays
 * valid until the next step, reset or finalize. */
int coord_stmt_ncols(struct coord_stmt *s);
bool coord_stmt_is_null(struct coord_stmt *s, int col);
int64_t coord_stmt_int64(struct coord_stmt *s, int col);
const char *coord_stmt_text(struct coord_stmt *s, int col);

/*
 * Change notification between replicas. coord_db_listen subscribes this
 * connection (PostgreSQL: LISTEN meshgate_state; SQLite: no-op, returns
 * -ENOTSUP) and coord_db_notified returns 1 if a notification arrived since
 * the last call (0 if not, -errno on error); coord_db_notify sends one
 * (PostgreSQL: NOTIFY, delivered at commit; SQLite: no-op). Callers poll
 * state_version every 100 ms regardless, so these are only a speed-up.
 */
int coord_db_listen(struct coord_db *db);
int coord_db_notified(struct coord_db *db);
int coord_db_notify(struct coord_db *db);

/* Backend entry points, used by coord_db_open (db.c). */
int coord_db_sqlite_open(const char *path, struct coord_db **out, char *err, size_t errlen);
int coord_db_pg_open(const char *conninfo, struct coord_db **out, char *err, size_t errlen);

/*
 * Backend vtable: each backend's struct coord_db starts with
 * `const struct coord_db_ops *ops`, each struct coord_stmt with
 * `struct coord_db *db`; db.c dispatches through it.
 */
struct coord_db_ops {
	enum coord_db_dialect dialect;
	const char *id_type;
	void (*close)(struct coord_db *db);
	const char *(*errmsg)(const struct coord_db *db);
	int (*exec)(struct coord_db *db, const char *sql);
	int (*begin)(struct coord_db *db);
	int (*commit)(struct coord_db *db);
	int (*rollback)(struct coord_db *db);
	int (*prepare)(struct coord_db *db, const char *sql, struct coord_stmt **out);
	void (*finalize)(struct coord_stmt *s);
	int (*reset)(struct coord_stmt *s);
	int (*bind_int64)(struct coord_stmt *s, int idx, int64_t v);
	int (*bind_text)(struct coord_stmt *s, int idx, const char *v);
	int (*bind_null)(struct coord_stmt *s, int idx);
	int (*step)(struct coord_stmt *s);
	int64_t (*changes)(struct coord_stmt *s);
	int (*ncols)(struct coord_stmt *s);
	bool (*is_null)(struct coord_stmt *s, int col);
	int64_t (*col_int64)(struct coord_stmt *s, int col);
	const char *(*col_text)(struct coord_stmt *s, int col);
	int (*listen)(struct coord_db *db);
	int (*notified)(struct coord_db *db);
	int (*notify)(struct coord_db *db);
};

/* The common head of every backend's structs. */
struct coord_db_head {
	const struct coord_db_ops *ops;
};
struct coord_stmt_head {
	struct coord_db *db;
};

#endif /* MG_COORD_DB_H */
