// SPDX-License-Identifier: MIT
/*
 * Tests of the storage layer (db.h) on the PostgreSQL backend, and the same
 * generic part on SQLite so that both are held to one behaviour.
 *
 *   test_db_pg [URL]   URL default: $MG_PG_URL; without either only SQLite
 *                      runs, and the exit status is 77 (skipped) on success
 *
 * Run under tests/pg.sh, which starts a throwaway cluster and sets
 * MG_PG_URL. Generic: parameters (also `?` in literals, `? IS NULL`), ids from
 * RETURNING, NULLs, -EEXIST, reuse after reset, transactions (rollback, a
 * failed statement, a statement that does not compile inside one), upserts,
 * booleans. PostgreSQL only: a bad server, NOTIFY reaching a LISTENing
 * connection at commit, begin serialising two connections, reconnecting
 * after the server kills the session (idle, inside a transaction, while
 * listening), and no server-side statement leak.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "db.h"

static int failures, checks;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		checks++;                                                                          \
		if (!(cond)) {                                                                     \
			failures++;                                                                \
			fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                            \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
		}                                                                                  \
	} while (0)

/* A CHECK that a call returned 0, quoting the driver's message if not. */
#define OK(db, call)                                                                               \
	do {                                                                                       \
		int rc_ = (call);                                                                  \
		CHECK(rc_ == 0, "%s = %d: %s", #call, rc_, coord_db_errmsg(db));                   \
	} while (0)

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The first column of the one row of sql with at most one text parameter;
 * INT64_MIN on error. */
static int64_t scalar(struct coord_db *db, const char *sql, const char *arg)
{
	struct coord_stmt *s;
	int64_t v = INT64_MIN;

	if (coord_db_prepare(db, sql, &s) < 0)
		return v;
	if (arg)
		coord_stmt_bind_text(s, 1, arg);
	if (coord_stmt_step(s) == 1)
		v = coord_stmt_int64(s, 0);
	coord_stmt_finalize(s);
	return v;
}

/* INSERT a row into t; the new id, or -errno. */
static int64_t insert(struct coord_db *db, const char *name, int64_t n)
{
	struct coord_stmt *s;
	int64_t id;
	int rc;

	if ((rc = coord_db_prepare(db, "INSERT INTO t (name, n) VALUES (?, ?) RETURNING id", &s)))
		return rc;
	coord_stmt_bind_text(s, 1, name);
	coord_stmt_bind_int64(s, 2, n);
	rc = coord_stmt_step(s);
	id = rc == 1 ? coord_stmt_int64(s, 0) : rc < 0 ? rc : -EIO;
	if (rc == 1)
		CHECK(coord_stmt_step(s) == 0, "INSERT RETURNING: one row");
	coord_stmt_finalize(s);
	return id;
}

static void create_table(struct coord_db *db)
{
	char sql[512];

	OK(db, coord_db_exec(db, "DROP TABLE IF EXISTS t"));
	snprintf(sql, sizeof(sql),
		 "CREATE TABLE t (id %s, name TEXT NOT NULL UNIQUE, n BIGINT, note TEXT); "
		 "CREATE TABLE IF NOT EXISTS t (id BIGINT)",
		 coord_db_id_type(db));
	OK(db, coord_db_exec(db, sql));
}

static void test_params(struct coord_db *db)
{
	struct coord_stmt *s;
	int64_t a, b;

	a = insert(db, "alpha", 1);
	b = insert(db, "beta", 2);
	CHECK(a > 0 && b > a, "ids %" PRId64 ", %" PRId64, a, b);
	CHECK(insert(db, "alpha", 3) == -EEXIST, "duplicate name: -EEXIST");
	CHECK(strstr(coord_db_errmsg(db), "alpha") || strstr(coord_db_errmsg(db), "UNIQUE"),
	      "duplicate message: %s", coord_db_errmsg(db));

	/* `?` inside a literal is text; '' inside a literal too. */
	OK(db, coord_db_prepare(db, "SELECT 'a?b''?', ?, ? || '?'", &s));
	coord_stmt_bind_text(s, 1, "x");
	coord_stmt_bind_text(s, 2, "y");
	CHECK(coord_stmt_step(s) == 1, "literal select: %s", coord_db_errmsg(db));
	CHECK(coord_stmt_ncols(s) == 3, "3 columns");
	CHECK(!strcmp(coord_stmt_text(s, 0), "a?b'?"), "literal: %s", coord_stmt_text(s, 0));
	CHECK(!strcmp(coord_stmt_text(s, 1), "x"), "param 1");
	CHECK(!strcmp(coord_stmt_text(s, 2), "y?"), "param 2");
	CHECK(coord_stmt_step(s) == 0, "one row");
	coord_stmt_finalize(s);

	/* NULLs in and out; `? IS NULL` (PostgreSQL must type it). */
	OK(db, coord_db_prepare(db, "UPDATE t SET n = ?, note = ? WHERE name = ?", &s));
	coord_stmt_bind_null(s, 1);
	coord_stmt_bind_text(s, 2, NULL);
	coord_stmt_bind_text(s, 3, "beta");
	CHECK(coord_stmt_step(s) == 0, "update: %s", coord_db_errmsg(db));
	CHECK(coord_stmt_changes(s) == 1, "update changed %" PRId64, coord_stmt_changes(s));
	coord_stmt_finalize(s);
	OK(db, coord_db_prepare(db,
				"SELECT name, n, note FROM t WHERE (? IS NULL OR name = ?) "
				"ORDER BY id",
				&s));
	for (int round = 0; round < 2; round++) {
		const char *want = round ? "beta" : NULL;
		int rows = 0;

		coord_stmt_reset(s);
		coord_stmt_bind_text(s, 1, want);
		coord_stmt_bind_text(s, 2, want);
		while (coord_stmt_step(s) == 1) {
			rows++;
			if (!strcmp(coord_stmt_text(s, 0), "beta")) {
				CHECK(coord_stmt_is_null(s, 1) && coord_stmt_int64(s, 1) == 0,
				      "NULL n");
				CHECK(coord_stmt_is_null(s, 2) && !coord_stmt_text(s, 2),
				      "NULL note");
			} else {
				CHECK(!coord_stmt_is_null(s, 1) && coord_stmt_int64(s, 1) == 1,
				      "n of alpha");
			}
		}
		CHECK(rows == (round ? 1 : 2), "round %d: %d rows: %s", round, rows,
		      coord_db_errmsg(db));
	}
	coord_stmt_finalize(s);

	/* int64 extremes, an int parameter in `? IS NULL`, a boolean. */
	OK(db, coord_db_prepare(db, "SELECT ?, ? IS NULL, ? + 1", &s));
	coord_stmt_bind_int64(s, 1, INT64_MIN);
	coord_stmt_bind_int64(s, 2, 5);
	coord_stmt_bind_int64(s, 3, INT64_MAX - 1);
	CHECK(coord_stmt_step(s) == 1, "int select: %s", coord_db_errmsg(db));
	CHECK(coord_stmt_int64(s, 0) == INT64_MIN, "INT64_MIN");
	CHECK(coord_stmt_int64(s, 1) == 0, "5 IS NULL is false");
	CHECK(coord_stmt_int64(s, 2) == INT64_MAX, "INT64_MAX");
	coord_stmt_finalize(s);
	CHECK(scalar(db, "SELECT EXISTS (SELECT 1 FROM t WHERE name = ?)", "alpha") == 1,
	      "EXISTS true");
	CHECK(scalar(db, "SELECT EXISTS (SELECT 1 FROM t WHERE name = ?)", "zeta") == 0,
	      "EXISTS false");
	CHECK(scalar(db, "SELECT count(*) FROM t WHERE name <> ?", "alpha") == 1, "count");

	/* Upsert. */
	OK(db, coord_db_prepare(db,
				"INSERT INTO t (name, n) VALUES (?, ?) ON CONFLICT (name) "
				"DO UPDATE SET n = excluded.n",
				&s));
	coord_stmt_bind_text(s, 1, "alpha");
	coord_stmt_bind_int64(s, 2, 42);
	CHECK(coord_stmt_step(s) == 0, "upsert: %s", coord_db_errmsg(db));
	coord_stmt_finalize(s);
	CHECK(scalar(db, "SELECT n FROM t WHERE name = ?", "alpha") == 42, "upserted");

	/* Bad binds and bad SQL say so. */
	OK(db, coord_db_prepare(db, "SELECT ?", &s));
	CHECK(coord_stmt_bind_int64(s, 2, 1) < 0, "bind index 2 of 1");
	coord_stmt_finalize(s);
	s = NULL;
	int rc = coord_db_prepare(db, "SELEKT nonsense FROM", &s);
	if (rc == 0) /* PostgreSQL compiles at the first step */
		rc = coord_stmt_step(s);
	CHECK(rc == -EIO, "syntax error: %d", rc);
	CHECK(strstr(coord_db_errmsg(db), "syntax"), "syntax message: %s", coord_db_errmsg(db));
	coord_stmt_finalize(s);
}

static void test_tx(struct coord_db *db)
{
	struct coord_stmt *s = NULL;
	int rc;

	OK(db, coord_db_begin(db));
	CHECK(coord_db_begin(db) < 0, "transactions do not nest");
	CHECK(insert(db, "gamma", 3) > 0, "insert in tx");
	OK(db, coord_db_rollback(db));
	CHECK(scalar(db, "SELECT count(*) FROM t WHERE name = ?", "gamma") == 0, "rolled back");

	OK(db, coord_db_begin(db));
	CHECK(insert(db, "gamma", 3) > 0, "insert in tx");
	OK(db, coord_db_commit(db));
	CHECK(scalar(db, "SELECT count(*) FROM t WHERE name = ?", "gamma") == 1, "committed");

	/* A statement that does not compile leaves the transaction usable. */
	OK(db, coord_db_begin(db));
	rc = coord_db_prepare(db, "SELECT no_such_column FROM t WHERE name = ?", &s);
	if (rc == 0) {
		coord_stmt_bind_text(s, 1, "x");
		rc = coord_stmt_step(s);
	}
	coord_stmt_finalize(s);
	CHECK(rc < 0, "bad column fails");
	CHECK(insert(db, "delta", 4) > 0, "tx usable after a statement that did not compile: %s",
	      coord_db_errmsg(db));
	OK(db, coord_db_commit(db));
	CHECK(scalar(db, "SELECT count(*) FROM t WHERE name = ?", "delta") == 1, "delta committed");

	/* A constraint failure inside: rollback, and the connection goes on. */
	OK(db, coord_db_begin(db));
	CHECK(insert(db, "epsilon", 5) > 0, "insert");
	CHECK(insert(db, "alpha", 5) == -EEXIST, "duplicate in tx");
	OK(db, coord_db_rollback(db));
	CHECK(scalar(db, "SELECT count(*) FROM t WHERE name = ?", "epsilon") == 0,
	      "epsilon rolled back");
	CHECK(insert(db, "epsilon", 5) > 0, "after rollback: %s", coord_db_errmsg(db));
}

/* ------------------------------------------------------------ PostgreSQL */

static struct coord_db *pg_open(const char *url)
{
	struct coord_db *db = NULL;
	char err[256];
	int rc = coord_db_open(url, &db, err, sizeof(err));

	CHECK(rc == 0, "open %s: %d %s", url, rc, err);
	return rc == 0 ? db : NULL;
}

static int64_t backend_pid(struct coord_db *db)
{
	return scalar(db, "SELECT pg_backend_pid()", NULL);
}

static int kill_backend(struct coord_db *killer, int64_t pid)
{
	struct coord_stmt *s;
	int rc;

	if ((rc = coord_db_prepare(killer, "SELECT pg_terminate_backend(?)", &s)))
		return rc;
	coord_stmt_bind_int64(s, 1, pid);
	rc = coord_stmt_step(s) == 1 && coord_stmt_int64(s, 0) == 1 ? 0 : -EIO;
	coord_stmt_finalize(s);
	/* The backend is gone before pg_terminate_backend returns only with a
	 * timeout; wait until it is. */
	for (int i = 0; i < 100 && rc == 0; i++) {
		char sql[96];

		snprintf(sql, sizeof(sql),
			 "SELECT count(*) FROM pg_stat_activity WHERE pid = %" PRId64, pid);
		if (scalar(killer, sql, NULL) == 0)
			break;
		usleep(20000);
	}
	return rc;
}

static void test_pg_open_errors(const char *url)
{
	struct coord_db *db = (void *)1;
	char err[256];
	int rc;

	rc = coord_db_open("postgresql://meshgate:sekrit@127.0.0.1:1/meshgate", &db, err,
			   sizeof(err));
	CHECK(rc == -EIO && !db, "refused: %d", rc);
	CHECK(strstr(err, "postgresql: ") == err && !strchr(err, '\n'), "one line: %s", err);
	CHECK(!strstr(err, "sekrit"), "no password in: %s", err);
	rc = coord_db_open("mysql://x", &db, err, sizeof(err));
	CHECK(rc == -EINVAL, "unknown scheme: %d", rc);
	(void)url;
}

static void test_pg_notify(const char *url)
{
	struct coord_db *a = pg_open(url), *b = pg_open(url);
	int64_t t0;
	int n = 0;

	if (!a || !b)
		goto out;
	OK(b, coord_db_listen(b));
	CHECK(coord_db_notified(b) == 0, "nothing yet");
	OK(a, coord_db_begin(a));
	OK(a, coord_db_notify(a));
	usleep(100000);
	CHECK(coord_db_notified(b) == 0, "not before commit");
	OK(a, coord_db_commit(a));
	for (t0 = now_ms(); now_ms() - t0 < 1000 && (n = coord_db_notified(b)) == 0;)
		usleep(1000);
	CHECK(n == 1, "notified within 1 s after commit: %d", n);
	CHECK(now_ms() - t0 < 200, "took %" PRId64 " ms", now_ms() - t0);
	CHECK(coord_db_notified(b) == 0, "only once");

	/* The listener's session dies: the next check says 1 (something may
	 * have been missed), and it listens again. */
	OK(a, kill_backend(a, backend_pid(b)));
	usleep(50000);
	n = coord_db_notified(b);
	CHECK(n == 1, "after reconnect: %d (%s)", n, coord_db_errmsg(b));
	CHECK(coord_db_notified(b) == 0, "then quiet");
	OK(a, coord_db_notify(a)); /* outside a transaction: at once */
	for (t0 = now_ms(); now_ms() - t0 < 1000 && (n = coord_db_notified(b)) == 0;)
		usleep(1000);
	CHECK(n == 1, "listening again after reconnect: %d", n);
out:
	coord_db_close(a);
	coord_db_close(b);
}

struct locker {
	struct coord_db *db;
	int64_t got_ms;
	int rc;
};

static void *lock_thread(void *arg)
{
	struct locker *l = arg;

	l->rc = coord_db_begin(l->db);
	l->got_ms = now_ms();
	if (l->rc == 0)
		l->rc = coord_db_commit(l->db);
	return NULL;
}

/* begin serialises transactions across connections (replicas). */
static void test_pg_serial(const char *url)
{
	struct coord_db *a = pg_open(url), *b = pg_open(url);
	struct locker l = {0};
	pthread_t th;
	int64_t released;

	if (!a || !b)
		goto out;
	OK(a, coord_db_begin(a));
	l.db = b;
	pthread_create(&th, NULL, lock_thread, &l);
	usleep(300000);
	released = now_ms();
	OK(a, coord_db_commit(a));
	pthread_join(th, NULL);
	CHECK(l.rc == 0, "second begin: %d %s", l.rc, coord_db_errmsg(b));
	CHECK(l.got_ms >= released,
	      "second begin waited for the first commit (%" PRId64 " ms early)",
	      released - l.got_ms);
out:
	coord_db_close(a);
	coord_db_close(b);
}

static void test_pg_reconnect(const char *url)
{
	struct coord_db *a = pg_open(url), *k = pg_open(url);
	struct coord_stmt *s = NULL;
	int64_t pid;
	int rc;

	if (!a || !k)
		goto out;
	/* A statement prepared before the session died still works after. */
	OK(a, coord_db_prepare(a, "SELECT n FROM t WHERE name = ?", &s));
	coord_stmt_bind_text(s, 1, "alpha");
	CHECK(coord_stmt_step(s) == 1 && coord_stmt_int64(s, 0) == 42, "before");

	/* Idle: a read and a write both just work. */
	pid = backend_pid(a);
	OK(k, kill_backend(k, pid));
	coord_stmt_reset(s);
	coord_stmt_bind_text(s, 1, "alpha");
	rc = coord_stmt_step(s);
	CHECK(rc == 1 && coord_stmt_int64(s, 0) == 42, "read after kill: %d %s", rc,
	      coord_db_errmsg(a));
	CHECK(backend_pid(a) != pid, "a new session");
	OK(k, kill_backend(k, backend_pid(a)));
	CHECK(insert(a, "zeta", 6) > 0, "write after kill: %s", coord_db_errmsg(a));

	/* Inside a transaction: -EAGAIN until rollback; then all is well and
	 * nothing of the lost transaction was kept. */
	OK(a, coord_db_begin(a));
	CHECK(insert(a, "eta", 7) > 0, "insert");
	OK(k, kill_backend(k, backend_pid(a)));
	rc = (int)insert(a, "theta", 8);
	CHECK(rc == -EAGAIN, "insert in lost tx: %d %s", rc, coord_db_errmsg(a));
	CHECK(coord_db_commit(a) == -EAGAIN, "commit of lost tx");
	OK(a, coord_db_rollback(a));
	CHECK(scalar(a, "SELECT count(*) FROM t WHERE name = ?", "eta") == 0, "eta lost");
	OK(a, coord_db_begin(a));
	CHECK(insert(a, "eta", 7) > 0, "insert again");
	OK(a, coord_db_commit(a));
	CHECK(scalar(k, "SELECT count(*) FROM t WHERE name = ?", "eta") == 1, "eta visible");
out:
	coord_stmt_finalize(s);
	coord_db_close(a);
	coord_db_close(k);
}

/* Finalized statements do not pile up on the server, even when finalized
 * inside a failed transaction. */
static void test_pg_no_leak(struct coord_db *db)
{
	const char *count = "SELECT count(*) FROM pg_prepared_statements";
	int64_t before = scalar(db, count, NULL), after;

	for (int i = 0; i < 50; i++)
		CHECK(scalar(db, "SELECT n FROM t WHERE name = ?", "alpha") == 42, "read %d", i);
	OK(db, coord_db_begin(db));
	CHECK(insert(db, "alpha", 1) == -EEXIST, "fail the tx");
	CHECK(scalar(db, "SELECT 1 WHERE ? = 'x'", "x") == INT64_MIN, "tx aborted");
	OK(db, coord_db_rollback(db));
	after = scalar(db, count, NULL);
	CHECK(after <= before + 1, "prepared statements: %" PRId64 " -> %" PRId64, before, after);
}

static void run_generic(const char *url)
{
	struct coord_db *db = NULL;
	char err[256];
	int rc = coord_db_open(url, &db, err, sizeof(err));

	CHECK(rc == 0, "open %s: %d %s", url, rc, err);
	if (rc)
		return;
	create_table(db);
	test_params(db);
	test_tx(db);
	if (coord_db_dialect(db) == COORD_DB_PG)
		test_pg_no_leak(db);
	coord_db_close(db);
}

int main(int argc, char **argv)
{
	const char *url = argc > 1 ? argv[1] : getenv("MG_PG_URL");

	run_generic("sqlite::memory:");
	if (url && *url) {
		run_generic(url);
		test_pg_open_errors(url);
		test_pg_notify(url);
		test_pg_serial(url);
		test_pg_reconnect(url);
	}
	printf("test_db_pg: %d checks, %d failures%s\n", checks, failures,
	       url && *url ? "" : " (PostgreSQL part skipped: no MG_PG_URL)");
	if (failures)
		return 1;
	return url && *url ? 0 : 77;
}
