#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# shellcheck disable=SC2317 # functions run through mg_check
#
# meshgate-coord on PostgreSQL (a throwaway cluster from tests/pg.sh, on
# 127.0.0.1; no namespaces needed):
#  1. the storage layer's tests (coord/test_db_pg.c) on PostgreSQL;
#  2. two replicas on one database (tests/netns/coord_pg.py replicas):
#
#       node 1 ----long poll----> replica B --\
#                                              >-- PostgreSQL (LISTEN/NOTIFY,
#       admin  ---policy PUT----> replica A --/     state_version polling)
#
#     a change through either replica is visible through the other, nonces
#     are shared, and a long-polling node gets the delta of a change made
#     through the other replica within 1 s; all this again after the
#     PostgreSQL server restarted under both (they reconnect by themselves).
# (coord/test_http.py's API test runs on PostgreSQL as the meson test
# coord_http_pg.)
# SKIP (77) without PostgreSQL or without a built meshgate-coord.
set -u
. "$(dirname "$0")/lib.sh"
. "$MG_SRC/tests/pg.sh"

COORD=$MG_BUILD/coord/meshgate-coord
DBTEST=$MG_BUILD/coord/test_coord_db_pg
PY="$MG_SRC/tests/netns/coord_pg.py"

mg_test_init
mg_require python3
for f in "$COORD" "$DBTEST"; do
	[ -x "$f" ] || { echo "SKIP: $f not built"; exit 77; }
done
rc=0
mg_pg_start >/dev/null || rc=$?
[ "$rc" -eq 77 ] && { echo "SKIP: no PostgreSQL server (run scripts/install-deps)"; exit 77; }
[ "$rc" -eq 0 ] || mg_fail "PostgreSQL did not start"
echo "PostgreSQL on 127.0.0.1:$MG_PG_PORT ($MG_PG_DIR)"

mg_check "storage layer tests on PostgreSQL" "$DBTEST" "$MG_PG_URL"

TOKEN=$MG_TMP/admin.token
( umask 077 && head -c 33 /dev/urandom | base64 >"$TOKEN" )

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# health PORT : GET /health answers 200
health() {
	python3 -c 'import sys, urllib.request as u
sys.exit(u.urlopen("http://127.0.0.1:%s/health" % sys.argv[1], timeout=2).status != 200)' "$1"
}

# coord_start NAME DB_URL [LIMITS] : start a replica, config in $MG_TMP/NAME.conf
# (LIMITS: more settings of its limits group, default a 5 s long poll);
# sets PORT_<NAME> and PID_<NAME>. coord_ready NAME waits for /health.
coord_start() {
	local name=$1 url=$2 port limits=${3:-"long_poll_seconds = 5;"}
	port=$(free_port)
	cat >"$MG_TMP/$name.conf" <<EOF
listen = "127.0.0.1:$port";
database = "$url";
admin_token_file = "$TOKEN";
log_level = "debug";
testing = { insecure_http = true; };
limits = {
	rate_per_machine = 1000.0; burst_per_machine = 1000.0;
	rate_per_ip = 10000.0; burst_per_ip = 10000.0;
	$limits
};
EOF
	mg_bg "coord-$name" root "$COORD" -c "$MG_TMP/$name.conf"
	eval "PORT_$name=$port"
	eval "PID_$name=$MG_LAST_PID"
}
coord_ready() {
	local port
	eval "port=\$PORT_$1"
	mg_wait_for health "$port" ||
		mg_fail "replica $1 did not answer on 127.0.0.1:$port"
}
# psql_at URL SQL : one value
psql_at() {
	"$MG_PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -c "$2" "$1"
}

# 2. two replicas, one database; both migrate at once (serialised by the
# transaction lock: neither may fail)
url=$(mg_pg_createdb replicas) || mg_fail "CREATE DATABASE replicas"
coord_start A "$url"
coord_start B "$url"
coord_ready A
coord_ready B
migrated() {
	local n max
	n=$(psql_at "$url" 'SELECT count(*) FROM schema_migrations') &&
		max=$(psql_at "$url" 'SELECT max(version) FROM schema_migrations') &&
		echo "$n migrations, latest $max" && [ "$n" = "$max" ]
}
mg_check "two replicas started at once, each migration ran once" migrated
mg_check "two replicas share one state" python3 "$PY" replicas "$PORT_A" "$PORT_B" "$TOKEN"
mg_check "both replicas still running" kill -0 "$PID_A" "$PID_B"

# ... and after the database server restarted under them (every session cut)
# (not through mg_check: its subshell would own the new postmaster)
mg_pg_restart || mg_fail "PostgreSQL did not restart"
echo "ok - PostgreSQL restarted"
mg_check "the replicas reconnect and still share one state" \
	python3 "$PY" restarted "$PORT_A" "$PORT_B" "$TOKEN"
mg_check "both replicas still running" kill -0 "$PID_A" "$PID_B"

# 3. presence across replicas: long polls held longer than offline_seconds
url=$(mg_pg_createdb presence) || mg_fail "CREATE DATABASE presence"
slow="long_poll_seconds = 10; offline_seconds = 3;"
coord_start C "$url" "$slow"
coord_start D "$url" "$slow"
coord_ready C
coord_ready D
mg_check "a node polling one replica stays online on the other" \
	python3 "$PY" held "$PORT_C" "$PORT_D" "$TOKEN"

mg_pass "PostgreSQL: storage tests; two replicas share one state, a change via one reaches a poll on the other < 1 s, also after a database restart"
