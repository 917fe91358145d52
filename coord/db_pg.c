/* SPDX-License-Identifier: MIT */
/*
 * PostgreSQL backend of db.h (libpq), so that several meshgate-coord
 * replicas share one state.
 *
 * Statements. coord_db_prepare only rewrites `?` to $1..$n; the statement is
 * prepared on the server (PQprepare, a per-connection name) at its first step
 * and reused until the connection is replaced or the statement finalized
 * (DEALLOCATE). Parameters travel as text; their declared types come from
 * the first binding (see enum types_mode). Inside a transaction the server
 * prepare runs under a savepoint, so SQL that does not compile leaves the
 * transaction usable, as with SQLite. All rows are fetched at once; steps
 * walk the result.
 *
 * Transactions. SQLite's BEGIN IMMEDIATE makes write transactions strictly
 * one at a time, and the SQL above this layer is written for that. To keep
 * it correct across replicas without retry loops, coord_db_begin takes one
 * transaction-scoped advisory lock (the same key on every replica), so
 * transactions through this layer run one at a time cluster-wide, each
 * statement seeing everything committed before (READ COMMITTED). A lock wait
 * longer than LOCK_TIMEOUT is -EAGAIN.
 *
 * Lost connections. An operation that finds the connection broken reconnects
 * first (backing off from 100 ms to 2 s while the server stays away). A
 * connection lost inside a transaction takes the transaction with it: the
 * statement and every later one until rollback fail with -EAGAIN (retrying
 * the whole transaction is safe: the server rolled it back); a lost COMMIT or
 * a lost write outside a transaction may or may not have happened: -EIO,
 * "outcome unknown". Reads outside a transaction are retried once.
 *
 * Notification. coord_db_listen = LISTEN meshgate_state; coord_db_notify =
 * NOTIFY (delivered at commit); coord_db_notified reads what is waiting on
 * the socket without blocking. After a reconnect of a listening connection
 * the next coord_db_notified says 1, since a notification may have been lost.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <libpq-fe.h>

#include "db.h"

#define CHANNEL	     "meshgate_state"
#define LOCK_KEY     "7236836779590788211" /* any constant, the same on every replica */
#define LOCK_TIMEOUT "15s"
/* Reconnect attempts while the server is away: after 100 ms, then doubling
 * to 2 s (an attempt to an unreachable host blocks the caller up to
 * connect_timeout, 5 s, unless the URI says otherwise). */
#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 2000

/* Type oids (server/catalog/pg_type_d.h, stable since forever). */
#define OID_BOOL 16
#define OID_INT8 20
#define OID_TEXT 25

struct coord_db {
	const struct coord_db_ops *ops;
	PGconn *c;
	/* Bumped by every new connection: server-side prepared statements of
	 * an older one are gone. */
	unsigned long gen;
	unsigned long next_stmt;
	bool listening;
	bool notify_seen;     /* since the last coord_db_notified; or a reconnect
			       * may have lost one */
	bool tx_lost;	      /* the connection broke inside a transaction */
	bool doomed;	      /* the server said FATAL while we were idle */
	int64_t last_fail_ms; /* 0: the last reconnect worked */
	int64_t backoff_ms;
	/* Names of prepared statements to DEALLOCATE when the connection is
	 * usable again (a finalize inside a failed transaction). */
	char **stale;
	size_t nstale, stale_cap;
	char err[320];
};

struct coord_stmt {
	struct coord_db *db;
	char *sql; /* with $n */
	bool readonly;
	int nparams;
	char **vals; /* nparams; NULL = SQL NULL */
	bool *isint; /* nparams: bound with bind_int64 */
	char name[32];
	unsigned long gen; /* db->gen when prepared; 0: not prepared */
	PGresult *res;	   /* of the last execution, NULL before */
	int row;	   /* rows handed out */
	bool done;	   /* step said 0: the next one executes again */
	int64_t changes;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* err = "postgresql: " prefix msg, on one line: libpq's line breaks (and
 * the indentation after them) become "; ", trailing ones go. */
static void set_err(struct coord_db *db, const char *prefix, const char *msg)
{
	char tmp[sizeof(db->err)];
	size_t o = 0;
	const char *p;

	snprintf(tmp, sizeof(tmp), "postgresql: %s%s", prefix, msg ? msg : "");
	for (p = tmp; *p && o + 3 < sizeof(db->err); p++) {
		if (*p != '\n') {
			db->err[o++] = *p;
			continue;
		}
		while (p[1] == '\n' || p[1] == '\t' || p[1] == ' ')
			p++;
		if (p[1]) {
			db->err[o++] = ';';
			db->err[o++] = ' ';
		}
	}
	db->err[o] = 0;
}

/* -errno for a failed result (SQLSTATE classes, see db.h); sets err. */
static int fail_res(struct coord_db *db, const PGresult *r)
{
	const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	const char *prim = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *detail = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL) : NULL;

	if (prim) {
		char m[sizeof(db->err)];

		snprintf(m, sizeof(m), "%s%s%s (SQLSTATE %s)", prim, detail ? ": " : "",
			 detail ? detail : "", state ? state : "?");
		set_err(db, "", m);
	} else {
		set_err(db, "", PQerrorMessage(db->c));
	}
	if (!state)
		return -EIO;
	/* Class 23, integrity constraint violation: -EEXIST for unique and
	 * primary keys, and (as db_sqlite.c does) for the others too. */
	if (!strncmp(state, "23", 2))
		return -EEXIST;
	if (!strcmp(state, "40001") || !strcmp(state, "40P01") || !strcmp(state, "55P03") ||
	    !strcmp(state, "53300"))
		return -EAGAIN;
	if (!strcmp(state, "53200"))
		return -ENOMEM;
	return -EIO;
}

static bool broken(const struct coord_db *db)
{
	return db->doomed || PQstatus(db->c) != CONNECTION_OK;
}

/*
 * libpq hands an error that arrives while no query runs to the notice
 * receiver: that is how a server that ends the session (shutdown,
 * pg_terminate_backend) says goodbye, a moment before it closes the socket.
 * Other notices (CREATE ... IF NOT EXISTS and friends) are no news.
 */
static void on_notice(void *arg, const PGresult *r)
{
	struct coord_db *db = arg;
	const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);

	if (sev && (!strcmp(sev, "FATAL") || !strcmp(sev, "PANIC")))
		db->doomed = true;
}

static void stale_flush(struct coord_db *db)
{
	char sql[64];
	PGresult *r;

	if (PQtransactionStatus(db->c) == PQTRANS_INERROR)
		return;
	while (db->nstale) {
		char *name = db->stale[--db->nstale];

		snprintf(sql, sizeof(sql), "DEALLOCATE %s", name);
		r = PQexec(db->c, sql);
		PQclear(r); /* a failure leaves one idle statement: harmless */
		free(name);
	}
}

static void stale_drop(struct coord_db *db)
{
	while (db->nstale)
		free(db->stale[--db->nstale]);
}

/* Replace a broken connection. 0, or -EIO (err says why) while the server
 * stays away; tries again only after backoff_ms. */
static int reconnect(struct coord_db *db)
{
	int64_t t = now_ms();
	PGresult *r;

	if (db->last_fail_ms && t - db->last_fail_ms < db->backoff_ms)
		return -EIO; /* err still holds the last failure */
	db->doomed = false;
	PQreset(db->c);
	if (broken(db)) {
		db->last_fail_ms = t ? t : 1;
		db->backoff_ms = db->backoff_ms ? db->backoff_ms * 2 : RECONNECT_MIN_MS;
		if (db->backoff_ms > RECONNECT_MAX_MS)
			db->backoff_ms = RECONNECT_MAX_MS;
		set_err(db, "connection lost, reconnecting failed: ", PQerrorMessage(db->c));
		return -EIO;
	}
	db->last_fail_ms = 0;
	db->backoff_ms = 0;
	db->gen++;
	stale_drop(db);
	if (db->listening) {
		r = PQexec(db->c, "LISTEN " CHANNEL);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			int rc = fail_res(db, r);

			PQclear(r);
			return rc;
		}
		PQclear(r);
		db->notify_seen = true;
	}
	return 0;
}

/* Parse what was read: notifications become one flag (so that they do not
 * pile up in libpq when nobody asks), a FATAL goes to on_notice. */
static void take_notifies(struct coord_db *db)
{
	PGnotify *n;

	while ((n = PQnotifies(db->c))) {
		db->notify_seen = true;
		PQfreemem(n);
	}
}

/*
 * Read whatever waits on the socket (notifications, a server's goodbye);
 * never blocks (libpq keeps its socket non-blocking). A server that ends the
 * session sends an error and closes: the first read takes the message, the
 * second meets the end of the stream and marks the connection broken.
 * 0, or -1 if a read failed.
 */
static int drain(struct coord_db *db)
{
	for (int i = 0; i < 2 && !broken(db); i++) {
		if (!PQconsumeInput(db->c))
			return -1;
		take_notifies(db);
	}
	return 0;
}

static bool in_tx(const struct coord_db *db)
{
	PGTransactionStatusType t = PQtransactionStatus(db->c);

	return t == PQTRANS_INTRANS || t == PQTRANS_INERROR || t == PQTRANS_ACTIVE;
}

/*
 * The connection broke inside a transaction: the server rolled it back.
 * Every statement until the caller's commit or rollback fails with -EAGAIN
 * (so none runs outside the transaction it belongs to); the connection is
 * replaced at once if the server is there. Returns -EAGAIN.
 */
static int lose_tx(struct coord_db *db, const char *why)
{
	char keep[sizeof(db->err)];

	if (!db->tx_lost) {
		db->tx_lost = true;
		set_err(db, "connection lost inside a transaction, which was rolled back: ", why);
		memcpy(keep, db->err, sizeof(keep));
		db->last_fail_ms = 0;
		reconnect(db);
		memcpy(db->err, keep, sizeof(keep));
	}
	return -EAGAIN;
}

/*
 * Before sending anything: a lost transaction stays lost until rollback;
 * otherwise a broken connection is replaced. Reading what waits on the
 * socket first notices a server that went away while we were idle (it says
 * so before it closes), so a write is not sent into a dead connection and
 * reported "outcome unknown". 0 or -errno.
 */
static int ready(struct coord_db *db)
{
	bool tx = in_tx(db);

	if (!db->tx_lost && !broken(db))
		drain(db);
	if (!db->tx_lost && !broken(db))
		return 0;
	if (tx || db->tx_lost)
		return lose_tx(db, db->tx_lost ? "" : PQerrorMessage(db->c));
	return reconnect(db);
}

/*
 * After a result: was the connection lost while it ran? Then note a lost
 * transaction (was_tx) and return the code for it, else 0.
 */
static int lost(struct coord_db *db, bool was_tx, bool readonly)
{
	if (!broken(db))
		return 0;
	if (was_tx)
		return lose_tx(db, PQerrorMessage(db->c));
	set_err(db, "connection lost: ", PQerrorMessage(db->c));
	if (readonly && reconnect(db) == 0)
		return 1; /* retry */
	size_t n = strlen(db->err);
	snprintf(db->err + n, sizeof(db->err) - n, " (statement outcome unknown)");
	return -EIO;
}

static void pg_close(struct coord_db *db)
{
	stale_drop(db);
	free(db->stale);
	PQfinish(db->c);
	free(db);
}

static const char *pg_errmsg(const struct coord_db *db)
{
	return db->err;
}

/* Run sql (no parameters) expecting no rows; 0 or -errno. */
static int run(struct coord_db *db, const char *sql)
{
	bool was_tx;
	PGresult *r;
	int rc;

	if ((rc = ready(db)) < 0)
		return rc;
	was_tx = in_tx(db);
	r = PQexec(db->c, sql);
	if ((rc = lost(db, was_tx, false))) {
		PQclear(r);
		return rc < 0 ? rc : -EIO;
	}
	switch (PQresultStatus(r)) {
	case PGRES_COMMAND_OK:
	case PGRES_TUPLES_OK:
	case PGRES_EMPTY_QUERY:
		rc = 0;
		break;
	default:
		rc = fail_res(db, r);
	}
	PQclear(r);
	return rc;
}

static int pg_exec(struct coord_db *db, const char *sql)
{
	return run(db, sql);
}

static int pg_begin(struct coord_db *db)
{
	int rc;

	db->tx_lost = false; /* a lost transaction not rolled back: over anyway */
	if (in_tx(db)) {
		set_err(db, "", "BEGIN inside a transaction (transactions do not nest)");
		return -EINVAL;
	}
	rc = run(db, "BEGIN; SET LOCAL lock_timeout = '" LOCK_TIMEOUT "'; "
		     "SELECT pg_advisory_xact_lock(" LOCK_KEY ")");
	if (rc < 0) {
		/* As with SQLite, a BEGIN that failed leaves no transaction. */
		char keep[sizeof(db->err)];

		memcpy(keep, db->err, sizeof(keep));
		if (in_tx(db))
			PQclear(PQexec(db->c, "ROLLBACK"));
		memcpy(db->err, keep, sizeof(keep));
		db->tx_lost = false;
		if (broken(db))
			rc = -EAGAIN; /* nothing happened; the next call reconnects */
	}
	return rc;
}

static int pg_commit(struct coord_db *db)
{
	PGresult *r;
	int rc;

	if (db->tx_lost) {
		ready(db); /* the message */
		db->tx_lost = false;
		return -EAGAIN;
	}
	if (broken(db)) { /* the server went before COMMIT was sent */
		lose_tx(db, PQerrorMessage(db->c));
		db->tx_lost = false;
		return -EAGAIN;
	}
	if (PQtransactionStatus(db->c) == PQTRANS_INERROR) {
		/* COMMIT would answer "ROLLBACK" without an error. */
		rc = run(db, "ROLLBACK");
		set_err(db, "", "COMMIT of a transaction that failed earlier: rolled back");
		stale_flush(db);
		return rc < 0 ? rc : -EIO;
	}
	r = PQexec(db->c, "COMMIT");
	if (broken(db)) {
		set_err(db,
			"connection lost during COMMIT (outcome unknown): ", PQerrorMessage(db->c));
		PQclear(r);
		return -EIO;
	}
	rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : fail_res(db, r);
	PQclear(r);
	stale_flush(db);
	return rc;
}

static int pg_rollback(struct coord_db *db)
{
	int rc;

	if (db->tx_lost) {
		db->tx_lost = false; /* the server rolled it back already */
		return 0;
	}
	if (broken(db) && in_tx(db)) { /* the server went: so did the transaction */
		lose_tx(db, PQerrorMessage(db->c));
		db->tx_lost = false;
		return 0;
	}
	if (broken(db) || !in_tx(db))
		return 0;
	rc = run(db, "ROLLBACK");
	stale_flush(db);
	return rc;
}

/*
 * `?` -> $1, $2, ... outside '...' literals, "..." identifiers and comments.
 * Returns the new text (malloc) and the count in *n, or NULL (ENOMEM).
 */
static char *translate(const char *sql, int *n)
{
	size_t len = strlen(sql), o = 0;
	char *out = malloc(len * 5 + 1); /* "?" -> "$NNNN" at worst */
	const char *p = sql;

	*n = 0;
	if (!out)
		return NULL;
	while (*p) {
		if (*p == '\'' || *p == '"') {
			char q = *p;

			out[o++] = *p++;
			while (*p && *p != q)
				out[o++] = *p++;
			if (*p)
				out[o++] = *p++; /* '' is two adjacent literals: fine */
		} else if (p[0] == '-' && p[1] == '-') {
			while (*p && *p != '\n')
				out[o++] = *p++;
		} else if (p[0] == '/' && p[1] == '*') {
			const char *e = strstr(p + 2, "*/");
			size_t k = e ? (size_t)(e + 2 - p) : strlen(p);

			memcpy(out + o, p, k);
			o += k;
			p += k;
		} else if (*p == '?') {
			++*n;
			if (*n > 9999) {
				free(out);
				errno = E2BIG;
				return NULL;
			}
			o += (size_t)sprintf(out + o, "$%d", *n);
			p++;
		} else {
			out[o++] = *p++;
		}
	}
	out[o] = 0;
	return out;
}

/* A statement that changes nothing, so a lost connection may retry it. */
static bool is_readonly(const char *sql)
{
	while (*sql == ' ' || *sql == '\t' || *sql == '\n' || *sql == '(')
		sql++;
	return !strncasecmp(sql, "SELECT", 6) && !strcasestr(sql, " FOR UPDATE") &&
	       !strcasestr(sql, "nextval");
}

static int pg_prepare(struct coord_db *db, const char *sql, struct coord_stmt **out)
{
	struct coord_stmt *s = calloc(1, sizeof(*s));

	*out = NULL;
	if (!s)
		return -ENOMEM;
	s->db = db;
	s->sql = translate(sql, &s->nparams);
	if (!s->sql) {
		int e = errno == E2BIG ? -E2BIG : -ENOMEM;

		set_err(db, "", e == -E2BIG ? "too many parameters" : "out of memory");
		free(s);
		return e;
	}
	s->readonly = is_readonly(s->sql);
	if (s->nparams) {
		s->vals = calloc((size_t)s->nparams, sizeof(*s->vals));
		s->isint = calloc((size_t)s->nparams, sizeof(*s->isint));
		if (!s->vals || !s->isint) {
			free(s->vals);
			free(s->isint);
			free(s->sql);
			free(s);
			return -ENOMEM;
		}
	}
	snprintf(s->name, sizeof(s->name), "mg_%lu", ++db->next_stmt);
	*out = s;
	return 0;
}

static void clear_binds(struct coord_stmt *s)
{
	for (int i = 0; i < s->nparams; i++) {
		free(s->vals[i]);
		s->vals[i] = NULL;
		s->isint[i] = false;
	}
}

/* Forget the server-side statement (now, or once the connection is usable). */
static void unprepare(struct coord_stmt *s)
{
	struct coord_db *db = s->db;
	char **n;

	if (!s->gen || s->gen != db->gen || broken(db)) {
		s->gen = 0;
		return;
	}
	s->gen = 0;
	if (db->nstale == db->stale_cap) {
		size_t cap = db->stale_cap ? db->stale_cap * 2 : 8;

		n = realloc(db->stale, cap * sizeof(*n));
		if (!n)
			return; /* leaks one server-side statement, no more */
		db->stale = n;
		db->stale_cap = cap;
	}
	db->stale[db->nstale] = strdup(s->name);
	if (db->stale[db->nstale])
		db->nstale++;
	stale_flush(db);
}

static void pg_finalize(struct coord_stmt *s)
{
	PQclear(s->res);
	unprepare(s);
	clear_binds(s);
	free(s->vals);
	free(s->isint);
	free(s->sql);
	free(s);
}

static int pg_reset(struct coord_stmt *s)
{
	PQclear(s->res);
	s->res = NULL;
	s->row = 0;
	s->done = false;
	s->changes = 0;
	clear_binds(s);
	return 0;
}

static int bind(struct coord_stmt *s, int idx, char *v, bool isint)
{
	if (idx < 1 || idx > s->nparams) {
		char m[96];

		snprintf(m, sizeof(m), "bind index %d out of range (statement has %d)", idx,
			 s->nparams);
		set_err(s->db, "", m);
		free(v);
		return -EINVAL;
	}
	free(s->vals[idx - 1]);
	s->vals[idx - 1] = v;
	s->isint[idx - 1] = isint;
	return 0;
}

static int pg_bind_int64(struct coord_stmt *s, int idx, int64_t v)
{
	char buf[24];
	char *d;

	snprintf(buf, sizeof(buf), "%" PRId64, v);
	if (!(d = strdup(buf)))
		return -ENOMEM;
	return bind(s, idx, d, true);
}

static int pg_bind_text(struct coord_stmt *s, int idx, const char *v)
{
	char *d = NULL;

	if (v && !(d = strdup(v)))
		return -ENOMEM;
	return bind(s, idx, d, false);
}

static int pg_bind_null(struct coord_stmt *s, int idx)
{
	return bind(s, idx, NULL, false);
}

/*
 * How parameter types are declared to the server (from the bindings of the
 * first execution; later values are text in any case):
 *   TYPES_HINT   int64 as int8, text and NULL inferred: `? + 1` stays int8;
 *   TYPES_TEXT   also text and NULL as text, for what the server cannot
 *                infer (`? IS NULL`, SQLSTATE 42P18);
 *   TYPES_INFER  nothing declared, for functions with int4 arguments that
 *                int8 does not fit (SQLSTATE 42883, 42725).
 */
enum types_mode { TYPES_HINT, TYPES_TEXT, TYPES_INFER };

/* PQprepare in that mode. Returns the result (caller clears). */
static PGresult *prepare_typed(struct coord_stmt *s, enum types_mode mode)
{
	Oid *types = calloc((size_t)s->nparams + 1, sizeof(*types));
	PGresult *r;

	if (!types)
		return NULL; /* PQresultStatus(NULL) is PGRES_FATAL_ERROR */
	for (int i = 0; i < s->nparams; i++)
		types[i] = mode == TYPES_INFER	? 0
			   : s->isint[i]	? OID_INT8
			   : mode == TYPES_TEXT ? OID_TEXT
						: 0;
	r = PQprepare(s->db->c, s->name, s->sql, s->nparams, types);
	free(types);
	return r;
}

/*
 * Prepare on the server for this connection. Inside a transaction a failed
 * Parse would abort it, so the attempt runs under a savepoint: a statement
 * that does not compile leaves the transaction usable, as with SQLite.
 */
static int server_prepare(struct coord_stmt *s)
{
	struct coord_db *db = s->db;
	bool tx = PQtransactionStatus(db->c) == PQTRANS_INTRANS;
	PGresult *r;
	int rc = 0;

	if (tx && (rc = run(db, "SAVEPOINT mg_prepare")) < 0)
		return rc;
	r = prepare_typed(s, TYPES_HINT);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		enum types_mode again = TYPES_HINT;

		if (st && !strcmp(st, "42P18"))
			again = TYPES_TEXT;
		else if (st && (!strcmp(st, "42883") || !strcmp(st, "42725")))
			again = TYPES_INFER;
		if (again != TYPES_HINT) {
			PQclear(r);
			if (tx)
				run(db, "ROLLBACK TO SAVEPOINT mg_prepare");
			r = prepare_typed(s, again);
		}
	}
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		rc = fail_res(db, r);
		if (tx && !broken(db)) {
			char keep[sizeof(db->err)];

			memcpy(keep, db->err, sizeof(keep));
			run(db, "ROLLBACK TO SAVEPOINT mg_prepare");
			memcpy(db->err, keep, sizeof(keep));
		}
	} else {
		s->gen = db->gen;
		if (tx)
			rc = run(db, "RELEASE SAVEPOINT mg_prepare");
	}
	PQclear(r);
	return rc;
}

/* One execution; 0 with s->res set, 1 to retry (reconnected), -errno. */
static int execute(struct coord_stmt *s)
{
	struct coord_db *db = s->db;
	bool was_tx;
	int rc;

	if ((rc = ready(db)) < 0)
		return rc;
	was_tx = in_tx(db);
	if (s->gen != db->gen && (rc = server_prepare(s)) < 0) {
		int l = lost(db, was_tx, s->readonly);

		return l ? l : rc;
	}
	s->res =
	    PQexecPrepared(db->c, s->name, s->nparams, (const char *const *)s->vals, NULL, NULL, 0);
	if ((rc = lost(db, was_tx, s->readonly))) {
		PQclear(s->res);
		s->res = NULL;
		return rc;
	}
	switch (PQresultStatus(s->res)) {
	case PGRES_TUPLES_OK:
	case PGRES_COMMAND_OK: {
		const char *n = PQcmdTuples(s->res);

		s->changes = *n ? strtoll(n, NULL, 10) : 0;
		s->row = 0;
		return 0;
	}
	default:
		rc = fail_res(db, s->res);
		PQclear(s->res);
		s->res = NULL;
		return rc;
	}
}

static int pg_step(struct coord_stmt *s)
{
	int rc;

	if (s->done) {
		/* Stepping after the end starts again, as sqlite3_step does. */
		PQclear(s->res);
		s->res = NULL;
		s->done = false;
	}
	if (!s->res) {
		rc = execute(s);
		if (rc == 1)
			rc = execute(s);
		if (rc)
			return rc < 0 ? rc : -EIO;
	}
	if (s->row < PQntuples(s->res)) {
		s->row++;
		return 1;
	}
	s->done = true;
	return 0;
}

static int64_t pg_changes(struct coord_stmt *s)
{
	return s->changes;
}

/* The current row, or -1 (no row, or col out of range). */
static int cur(struct coord_stmt *s, int col)
{
	if (!s->res || s->row < 1 || s->row > PQntuples(s->res) || col < 0 ||
	    col >= PQnfields(s->res))
		return -1;
	return s->row - 1;
}

static int pg_ncols(struct coord_stmt *s)
{
	return s->res ? PQnfields(s->res) : 0;
}

static bool pg_is_null(struct coord_stmt *s, int col)
{
	int r = cur(s, col);

	return r < 0 || PQgetisnull(s->res, r, col);
}

static int64_t pg_col_int64(struct coord_stmt *s, int col)
{
	int r = cur(s, col);
	const char *v;

	if (r < 0 || PQgetisnull(s->res, r, col))
		return 0;
	v = PQgetvalue(s->res, r, col);
	if (PQftype(s->res, col) == OID_BOOL) /* `a = b`, EXISTS (...) */
		return v[0] == 't';
	return strtoll(v, NULL, 10);
}

static const char *pg_col_text(struct coord_stmt *s, int col)
{
	int r = cur(s, col);

	if (r < 0 || PQgetisnull(s->res, r, col))
		return NULL;
	return PQgetvalue(s->res, r, col);
}

static int pg_listen(struct coord_db *db)
{
	int rc = run(db, "LISTEN " CHANNEL);

	if (rc == 0)
		db->listening = true;
	return rc;
}

static int pg_notified(struct coord_db *db)
{
	int rc;

	if (!db->listening)
		return 0;
	/* Reads without waiting; replaces a broken connection (which may
	 * have lost a notification: then notify_seen is set). Inside a
	 * transaction a broken connection is left to the transaction. */
	if (db->tx_lost || in_tx(db)) {
		drain(db);
		if (!db->tx_lost && broken(db))
			lose_tx(db, PQerrorMessage(db->c));
	} else if ((rc = ready(db)) < 0) {
		return rc;
	}
	if (!db->notify_seen)
		return 0;
	db->notify_seen = false;
	return 1;
}

static int pg_notify(struct coord_db *db)
{
	return run(db, "NOTIFY " CHANNEL);
}

static const struct coord_db_ops pg_ops = {
    .dialect = COORD_DB_PG,
    .id_type = "BIGSERIAL PRIMARY KEY",
    .close = pg_close,
    .errmsg = pg_errmsg,
    .exec = pg_exec,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .prepare = pg_prepare,
    .finalize = pg_finalize,
    .reset = pg_reset,
    .bind_int64 = pg_bind_int64,
    .bind_text = pg_bind_text,
    .bind_null = pg_bind_null,
    .step = pg_step,
    .changes = pg_changes,
    .ncols = pg_ncols,
    .is_null = pg_is_null,
    .col_int64 = pg_col_int64,
    .col_text = pg_col_text,
    .listen = pg_listen,
    .notified = pg_notified,
    .notify = pg_notify,
};

/* "host:port/db" of a connection, for messages (never the password). */
static void where(PGconn *c, char *buf, size_t len)
{
	const char *h = PQhost(c), *p = PQport(c), *d = PQdb(c);

	snprintf(buf, len, "%s%s%s/%s", h ? h : "?", p && *p ? ":" : "", p ? p : "", d ? d : "?");
}

int coord_db_pg_open(const char *conninfo, struct coord_db **out, char *err, size_t errlen)
{
	/* Defaults first: whatever the URI says overrides them. */
	static const char *const keys[] = {
	    "connect_timeout",
	    "keepalives_idle",
	    "keepalives_interval",
	    "keepalives_count",
	    "application_name",
	    "client_encoding",
	    "dbname",
	    NULL,
	};
	const char *vals[] = {"5", "30", "10", "3", "meshgate-coord", "UTF8", conninfo, NULL};
	struct coord_db *db = calloc(1, sizeof(*db));
	char at[160];

	*out = NULL;
	if (!db) {
		snprintf(err, errlen, "postgresql: out of memory");
		return -ENOMEM;
	}
	db->ops = &pg_ops;
	db->gen = 1;
	db->c = PQconnectdbParams(keys, vals, 1);
	if (!db->c) {
		free(db);
		snprintf(err, errlen, "postgresql: out of memory");
		return -ENOMEM;
	}
	if (broken(db)) {
		/* PQhost and friends may be NULL here: libpq's message names
		 * the server it tried. */
		set_err(db, "", PQerrorMessage(db->c));
		snprintf(err, errlen, "%s", db->err);
		pg_close(db);
		return -EIO;
	}
	PQsetNoticeReceiver(db->c, on_notice, db);
	if (PQserverVersion(db->c) < 90500) { /* ON CONFLICT */
		where(db->c, at, sizeof(at));
		snprintf(err, errlen, "postgresql %s: server version %d too old (9.5 needed)", at,
			 PQserverVersion(db->c));
		pg_close(db);
		return -EIO;
	}
	*out = db;
	return 0;
}
