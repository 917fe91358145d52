/* SPDX-License-Identifier: MIT */
/* Backend dispatch for the storage layer (db.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "db.h"

#define OPS(db) (((const struct coord_db_head *)(db))->ops)
#define SOPS(s) OPS(((const struct coord_stmt_head *)(s))->db)

int coord_db_open(const char *url, struct coord_db **out, char *err, size_t errlen)
{
	*out = NULL;
	if (!strncmp(url, "sqlite:", 7))
		return coord_db_sqlite_open(url + 7, out, err, errlen);
	if (!strncmp(url, "postgresql://", 13) || !strncmp(url, "postgres://", 11))
		return coord_db_pg_open(url, out, err, errlen);
	snprintf(err, errlen, "database \"%s\": want sqlite:PATH or postgresql://...", url);
	return -EINVAL;
}

#ifndef COORD_HAVE_PG
int coord_db_pg_open(const char *conninfo, struct coord_db **out, char *err, size_t errlen)
{
	(void)conninfo;
	*out = NULL;
	snprintf(err, errlen, "PostgreSQL support is not built in (libpq missing)");
	return -ENOTSUP;
}
#endif

void coord_db_close(struct coord_db *db)
{
	if (db)
		OPS(db)->close(db);
}

enum coord_db_dialect coord_db_dialect(const struct coord_db *db)
{
	return OPS(db)->dialect;
}
const char *coord_db_id_type(const struct coord_db *db)
{
	return OPS(db)->id_type;
}
const char *coord_db_errmsg(const struct coord_db *db)
{
	return OPS(db)->errmsg(db);
}
int coord_db_exec(struct coord_db *db, const char *sql)
{
	return OPS(db)->exec(db, sql);
}
int coord_db_begin(struct coord_db *db)
{
	return OPS(db)->begin(db);
}
int coord_db_commit(struct coord_db *db)
{
	return OPS(db)->commit(db);
}
int coord_db_rollback(struct coord_db *db)
{
	return OPS(db)->rollback(db);
}

int coord_db_prepare(struct coord_db *db, const char *sql, struct coord_stmt **out)
{
	return OPS(db)->prepare(db, sql, out);
}

void coord_stmt_finalize(struct coord_stmt *s)
{
	if (s)
		SOPS(s)->finalize(s);
}

int coord_stmt_reset(struct coord_stmt *s)
{
	return SOPS(s)->reset(s);
}
int coord_stmt_bind_int64(struct coord_stmt *s, int i, int64_t v)
{
	return SOPS(s)->bind_int64(s, i, v);
}
int coord_stmt_bind_text(struct coord_stmt *s, int i, const char *v)
{
	return SOPS(s)->bind_text(s, i, v);
}
int coord_stmt_bind_null(struct coord_stmt *s, int i)
{
	return SOPS(s)->bind_null(s, i);
}
int coord_stmt_step(struct coord_stmt *s)
{
	return SOPS(s)->step(s);
}
int64_t coord_stmt_changes(struct coord_stmt *s)
{
	return SOPS(s)->changes(s);
}
int coord_stmt_ncols(struct coord_stmt *s)
{
	return SOPS(s)->ncols(s);
}
bool coord_stmt_is_null(struct coord_stmt *s, int c)
{
	return SOPS(s)->is_null(s, c);
}
int64_t coord_stmt_int64(struct coord_stmt *s, int c)
{
	return SOPS(s)->col_int64(s, c);
}
const char *coord_stmt_text(struct coord_stmt *s, int c)
{
	return SOPS(s)->col_text(s, c);
}
int coord_db_listen(struct coord_db *db)
{
	return OPS(db)->listen(db);
}
int coord_db_notified(struct coord_db *db)
{
	return OPS(db)->notified(db);
}
int coord_db_notify(struct coord_db *db)
{
	return OPS(db)->notify(db);
}
