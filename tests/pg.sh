#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# shellcheck shell=bash disable=SC2317
#
# A throwaway PostgreSQL 15 cluster for tests: a temp dir, a unix socket in it
# and 127.0.0.1 on a free port, one database and one password user (who may
# create more databases: mg_pg_createdb), fsync off.
# Stopped and deleted on exit.  Works as root in a container without systemd
# (the server then runs as the `postgres` system user) and as any other user.
#
# Sourced by a test:
#
#   . "$MG_SRC/tests/pg.sh"
#   mg_pg_start || exit 77      # skip when PostgreSQL is not installed
#   ... "$MG_PG_URL" ...        # postgresql://meshgate:<pw>@127.0.0.1:<port>/meshgate
#   mg_pg_psql -c 'SELECT 1'    # psql as the test user on the test database
#   url=$(mg_pg_createdb NAME)  # one more database; its URL
#   mg_pg_restart               # stop and start again (same port and data)
#   mg_pg_stop                  # optional: the EXIT trap does it too
#
# Run as a command, it wraps one:
#
#   tests/pg.sh CMD ARGS...      # CMD runs with MG_PG_URL (and the others)
#                                # exported; its status is the script's;
#                                # 77 when PostgreSQL is missing
#   tests/pg.sh                  # prints the URL, waits until interrupted
#
# Variables after mg_pg_start: MG_PG_URL (TCP, with password), MG_PG_URL_UNIX
# (unix socket, trust), MG_PG_DIR (temp dir), MG_PG_PORT, MG_PG_BIN.
# MG_PG_BIN may be set beforehand (default: the newest /usr/lib/postgresql/*/bin,
# 15 on Debian 12).  MG_PG_KEEP=1 keeps the dir after stopping.
#
# Call mg_pg_start and mg_pg_restart in the test's own shell, not in $(...),
# a pipeline or another subshell: the postmaster is that shell's child.
#
# mg_pg_start chains its cleanup after whatever EXIT trap is already set
# (e.g. tests/netns/lib.sh's mg_cleanup, which stops the test's processes),
# so source and start it after mg_test_init.  Works under `set -u`; sets no
# shell options itself.

MG_PG_BIN=${MG_PG_BIN:-}
MG_PG_DIR=
MG_PG_PORT=
MG_PG_URL=
MG_PG_URL_UNIX=
MG_PG_DB=meshgate
MG_PG_USER=meshgate
_MG_PG_OWNER=      # who runs the server: "" (ourselves) or "postgres"
_MG_PG_PW=
_MG_PG_PID=        # the postmaster, our child

_mg_pg_log() { printf 'pg.sh: %s\n' "$*" >&2; }

# _mg_pg_as CMD... : run CMD as the cluster's owner.
_mg_pg_as() {
	if [ -n "$_MG_PG_OWNER" ]; then
		setpriv --reuid="$_MG_PG_OWNER" --regid="$_MG_PG_OWNER" --init-groups \
			--reset-env -- "$@"
	else
		"$@"
	fi
}

_mg_pg_find_bin() {
	[ -n "$MG_PG_BIN" ] && [ -x "$MG_PG_BIN/initdb" ] && return 0
	local d
	for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k5 -n -r); do
		if [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && [ -x "$d/psql" ]; then
			MG_PG_BIN=$d
			return 0
		fi
	done
	return 1
}

# _mg_pg_free_port : a TCP port on 127.0.0.1 nobody listens on.
_mg_pg_free_port() {
	python3 -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# mg_pg_start : initdb + start + create user and database; sets the MG_PG_*
# variables and prints MG_PG_URL.  Returns 77 if PostgreSQL or a needed tool
# is missing, 1 on any other failure (with the server log on stderr).
mg_pg_start() {
	if [ -n "$MG_PG_DIR" ]; then
		echo "$MG_PG_URL"
		return 0
	fi
	if ! _mg_pg_find_bin; then
		_mg_pg_log "PostgreSQL server not installed (run scripts/install-deps)"
		return 77
	fi
	local t
	for t in python3 setpriv; do
		command -v "$t" >/dev/null 2>&1 ||
			{ _mg_pg_log "'$t' not installed"; return 77; }
	done
	if [ "$(id -u)" -eq 0 ]; then
		# postgres refuses to run as root.
		if ! id postgres >/dev/null 2>&1; then
			_mg_pg_log "running as root and there is no 'postgres' user"
			return 77
		fi
		_MG_PG_OWNER=postgres
	fi
	MG_PG_DIR=$(mktemp -d /tmp/mgpg.XXXXXX) || return 1
	_mg_pg_trap
	chmod 700 "$MG_PG_DIR"
	[ -n "$_MG_PG_OWNER" ] && chown "$_MG_PG_OWNER:" "$MG_PG_DIR"
	_MG_PG_PW=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
	local log="$MG_PG_DIR/server.log"

	# The superuser gets the OS user's name; local socket is trust (only the
	# owner can reach the 0700 dir, and root), TCP needs the password.
	if ! _mg_pg_as "$MG_PG_BIN/initdb" -D "$MG_PG_DIR/data" -E UTF8 --locale=C \
		--auth-local=trust --auth-host=scram-sha-256 >"$MG_PG_DIR/initdb.log" 2>&1; then
		_mg_pg_log "initdb failed:"
		cat "$MG_PG_DIR/initdb.log" >&2
		mg_pg_stop
		return 1
	fi
	# The port is free when chosen; if someone grabs it first, try another.
	local try
	for try in 1 2 3; do
		MG_PG_PORT=$(_mg_pg_free_port) || { mg_pg_stop; return 1; }
		_mg_pg_run && break
		if [ "$try" -eq 3 ] || ! grep -q 'could not bind' "$log" 2>/dev/null; then
			_mg_pg_log "server did not start:"
			cat "$log" >&2
			mg_pg_stop
			return 1
		fi
		_mg_pg_kill
	done

	local su=${_MG_PG_OWNER:-$(id -un)}
	if ! _mg_pg_as "$MG_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$MG_PG_DIR" \
		-p "$MG_PG_PORT" -U "$su" -d postgres >"$MG_PG_DIR/setup.log" 2>&1 <<EOF; then
CREATE ROLE $MG_PG_USER LOGIN CREATEDB PASSWORD '$_MG_PG_PW';
CREATE DATABASE $MG_PG_DB OWNER $MG_PG_USER;
EOF
		_mg_pg_log "creating user/database failed:"
		cat "$MG_PG_DIR/setup.log" >&2
		mg_pg_stop
		return 1
	fi
	MG_PG_URL="postgresql://$MG_PG_USER:$_MG_PG_PW@127.0.0.1:$MG_PG_PORT/$MG_PG_DB"
	MG_PG_URL_UNIX="postgresql://$MG_PG_USER@/$MG_PG_DB?host=$MG_PG_DIR&port=$MG_PG_PORT"
	echo "$MG_PG_URL"
}

# mg_pg_psql ARGS... : psql on the test database as the test user (TCP).
mg_pg_psql() {
	"$MG_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 "$MG_PG_URL" "$@"
}

# _mg_pg_kill : fast shutdown (SIGINT), SIGQUIT after 10 s, SIGKILL after
# 15 s; reaps the postmaster.
_mg_pg_kill() {
	[ -n "$_MG_PG_PID" ] || return 0
	local i
	kill -INT "$_MG_PG_PID" 2>/dev/null
	for (( i = 0; i < 75; i++ )); do
		kill -0 "$_MG_PG_PID" 2>/dev/null || break
		[ "$i" -eq 50 ] && kill -QUIT "$_MG_PG_PID" 2>/dev/null
		sleep 0.2
	done
	if kill -0 "$_MG_PG_PID" 2>/dev/null; then
		# Its children first (they share nothing with anyone else), then it.
		pkill -KILL -P "$_MG_PG_PID" 2>/dev/null
		kill -KILL "$_MG_PG_PID" 2>/dev/null
	fi
	wait "$_MG_PG_PID" 2>/dev/null
	_MG_PG_PID=
	return 0
}

# _mg_pg_run : start the postmaster on MG_PG_PORT and wait until it accepts
# connections; 0, or 1 (log in $MG_PG_DIR/server.log).  It runs as our child
# (no pg_ctl daemon): we know its pid, reap it, and nothing outlives the test.
_mg_pg_run() {
	local i su asowner=()
	su=$(id -un)
	if [ -n "$_MG_PG_OWNER" ]; then
		su=$_MG_PG_OWNER
		asowner=(setpriv --reuid="$su" --regid="$su" --init-groups --reset-env --)
	fi
	local ready=("$MG_PG_BIN/pg_isready" -q -h "$MG_PG_DIR" -p "$MG_PG_PORT" -U "$su" -d postgres)
	# Not through _mg_pg_as: a function would fork a subshell, and $! must
	# be the postmaster itself.
	"${asowner[@]}" "$MG_PG_BIN/postgres" -D "$MG_PG_DIR/data" -p "$MG_PG_PORT" \
		-c listen_addresses=127.0.0.1 -c unix_socket_directories="$MG_PG_DIR" \
		-c fsync=off -c synchronous_commit=off -c full_page_writes=off \
		-c max_connections=60 -c shared_buffers=16MB >>"$MG_PG_DIR/server.log" 2>&1 </dev/null &
	_MG_PG_PID=$!
	for (( i = 0; i < 150; i++ )); do
		kill -0 "$_MG_PG_PID" 2>/dev/null || return 1
		"${ready[@]}" && return 0
		sleep 0.2
	done
	return 1
}

# mg_pg_restart : stop the server (fast shutdown: clients are disconnected)
# and start it again on the same port with the same data.
mg_pg_restart() {
	[ -n "$MG_PG_DIR" ] || return 1
	_mg_pg_kill
	_mg_pg_run || { _mg_pg_log "restart failed:"; tail -n 20 "$MG_PG_DIR/server.log" >&2; return 1; }
}

# mg_pg_createdb NAME : create database NAME (owned by the test user); prints
# its URL.
mg_pg_createdb() {
	mg_pg_psql -c "CREATE DATABASE \"$1\"" >/dev/null || return 1
	echo "${MG_PG_URL%/*}/$1"
}

# mg_pg_stop : stop the server and delete its dir.  Idempotent.
mg_pg_stop() {
	[ -n "$MG_PG_DIR" ] || return 0
	_mg_pg_kill
	if [ "${MG_PG_KEEP:-0}" = 1 ]; then
		_mg_pg_log "MG_PG_KEEP=1: kept $MG_PG_DIR"
	else
		rm -rf "$MG_PG_DIR"
	fi
	MG_PG_DIR='' MG_PG_URL='' MG_PG_URL_UNIX='' MG_PG_PORT=
	return 0
}

# Add mg_pg_stop after the EXIT trap already set, if any (so that a test's
# own cleanup stops its database clients first).
_mg_pg_trap() {
	local prev
	prev=$(trap -p EXIT | sed "s/^trap -- '\(.*\)' EXIT\$/\1/")
	case $prev in *mg_pg_stop*) return 0 ;; esac
	# shellcheck disable=SC2064
	trap "${prev:+$prev; }mg_pg_stop" EXIT
	trap -p INT | grep -q . || trap 'exit 130' INT
	trap -p TERM | grep -q . || trap 'exit 143' TERM
}

# Run as a command: wrap CMD, or print the URL and wait.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	mg_pg_start >/dev/null
	rc=$?
	[ "$rc" -eq 0 ] || exit "$rc"
	export MG_PG_URL MG_PG_URL_UNIX MG_PG_DIR MG_PG_PORT MG_PG_BIN
	if [ $# -gt 0 ]; then
		"$@"
		exit $?
	fi
	echo "$MG_PG_URL"
	echo "$MG_PG_URL_UNIX"
	echo "pg.sh: running; Ctrl-C stops and deletes it" >&2
	while :; do sleep 3600; done
fi
