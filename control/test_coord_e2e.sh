#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# meshgate-control + `meshgate up/status/down` against fake_coord.py (no
# dataplane, no root: everything in a temp dir, HTTP on 127.0.0.1):
#   refused auth key -> the server's error; `up` -> registered, netmap peers
#   on the device; a delta adds a peer; restart -> re-registers without the
#   auth key; server outage -> backoff (logged once), peers stay, reconnects;
#   short key life -> node key rotated via /update; `down` -> logged out,
#   netmap peers gone, config peer stays.
# Usage: test_coord_e2e.sh MESHGATE_CONTROL MESHGATE_CLI FAKE_COORD_PY
set -u
control=$1 cli=$2 fake=$3
command -v python3 >/dev/null || { echo "SKIP: no python3"; exit 77; }

t=$(mktemp -d /tmp/mgcoorde2e.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$t"
}
trap cleanup EXIT
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
check() { # DESCRIPTION COMMAND...
	local what=$1; shift
	if "$@"; then ok "$what"; else bad "$what"; fi
}
# wait_for SECONDS COMMAND...: poll every 0.2 s.
wait_for() {
	local n=$(($1 * 5)); shift
	while [ "$n" -gt 0 ]; do "$@" && return 0; sleep 0.2; n=$((n - 1)); done
	return 1
}

python3 "$fake" >"$t/port" 2>"$t/fake.log" &
pids+=($!)
wait_for 10 test -s "$t/port" || { echo "FAIL: fake server did not start"; exit 1; }
port=$(cat "$t/port")
url=http://127.0.0.1:$port
# The fake server's test hooks (python3 rather than curl: one dependency less).
hook() {
	python3 -c 'import sys, urllib.request as u; u.urlopen(u.Request(sys.argv[1], data=sys.argv[2].encode()))' \
		"$url/test/$1" "$2" || bad "hook $1"
}
stat_of() {
	python3 -c 'import json, sys, urllib.request as u; print(json.load(u.urlopen(sys.argv[1]))[sys.argv[2]])' \
		"$url/test/stats" "$1"
}

KEY_HUB=xFnK1cCJUHuV3ufT8mAVjC8RZELsdg+ehwfT4+irG2A=
KEY_P1=OQPAHzNvle7L7cZg2pbygZ9GjvYfgRMZ8qdcYjhcpQY=
KEY_P2=YBGnQN5g8c6o3kNtVEy3sEbwMnuBQeYaf6r+ssyjk1s=
cat >"$t/mg.conf" <<EOF
meshgate: { name = "mgce2e"; run_dir = "$t/run"; log_level = "info"; };
dataplane: { ports = ( { name = "wan0"; device = "net_null0"; role = "wan";
  addresses = ["198.18.0.1/24"]; } ); };
peers = ( { name = "hub"; public_key = "$KEY_HUB"; allowed_ips = ["10.9.0.0/16"]; } );
coordination: { state_dir = "$t/state"; advertise_routes = ["10.88.0.0/24"]; };
testing: { coord_insecure_http = true; };
EOF
mkdir -p "$t/state"
mg() { "$cli" "$1" mgce2e --run-dir "$t/run" "${@:2}"; }
status_json() { mg status --json; }
# jq-less JSON checks: py EXPR over the status as `s`.
st() { status_json | python3 -c "import json,sys; s=json.load(sys.stdin); sys.exit(0 if ($1) else 1)"; }
start_control() {
	"$control" -c "$t/mg.conf" >>"$t/control.log" 2>&1 &
	cpid=$!
	pids+=($cpid)
	wait_for 10 test -S "$t/run/mgce2e.ctl" || bad "control socket"
}

start_control
check "status before up: off" st 's["state"] == "off" and len(s["peers"]) == 1'
out=$(mg up --login-server "$url" --auth-key mgk-wrong 2>&1)
check "refused auth key: the server's error" grep -q "invalid pre-auth key" <<<"$out"
hook peer "{\"node_id\": 100, \"node_key\": \"$KEY_P1\", \"allowed_ips\": [\"100.64.0.100/32\", \"10.100.0.0/16\"], \"endpoints\": [\"[2001:db8::1]:51820\", \"203.0.113.100:51820\"]}"
echo mgk-good >"$t/authkey"
out=$(mg up --login-server "$url" --auth-key "file:$t/authkey" --hostname gw-e2e 2>&1)
echo "$out"
check "up: registered" grep -q "node_id=12" <<<"$out"
check "up: addresses" grep -q "addresses=100.64.0.12/32,fd7a:115c:a1e0::c/128" <<<"$out"
check "netmap peer on the device" wait_for 5 st '[p for p in s["peers"] if p["name"] == "peer100" and p["endpoint"] == "203.0.113.100:51820" and "10.100.0.0/16" in p["allowed_ips"] and p["online"]]'
check "connected" st 's["state"] == "connected" and s["self"]["node_id"] == 12'
check "endpoints reported" test "$(stat_of last_endpoints)" = "['198.18.0.1:51820']"
check "routes reported" test "$(stat_of last_routes)" = "['10.88.0.0/24']"
check "state file 0600" test "$(stat -c %a "$t/state/mgce2e.state")" = 600
check "no auth key in the state file" bash -c "! grep -q mgk- '$t/state/mgce2e.state'"
hook peer "{\"node_id\": 101, \"node_key\": \"$KEY_P2\", \"allowed_ips\": [\"100.64.0.101/32\"]}"
check "delta: second peer" wait_for 5 st 'len([p for p in s["peers"] if p["source"] == "coordination"]) == 2'
check "delta path used" test "$(stat_of map_delta)" -ge 1
mg status
check "text status" bash -c "'$cli' status mgce2e --run-dir '$t/run' | grep -q 'peer100.*203.0.113.100:51820.*online.*direct'"

# Restart: the registration is reused, no auth key sent.
kill "$cpid"; wait "$cpid" 2>/dev/null
before=$(stat_of register_with_auth)
start_control
check "restart: reconnected" wait_for 10 st 's["state"] == "connected" and len(s["peers"]) == 3'
check "restart: no auth key sent" test "$(stat_of register_with_auth)" = "$before"
check "restart: hostname from up kept" grep -q "as node 12 (gw-e2e)" <(tail -n 20 "$t/control.log")

# Restart while the server is down: peers come back from the netmap cache.
kill "$cpid"; wait "$cpid" 2>/dev/null
hook fail '{"on": true}'
start_control
check "restart during an outage: peers from the cache" wait_for 5 st 's["state"] == "backoff" and len([p for p in s["peers"] if p["source"] == "coordination"]) == 2'
check "netmap cache 0600" test "$(stat -c %a "$t/state/mgce2e.netmap")" = 600
hook fail '{"on": false}'
check "reconnected after the outage" wait_for 15 st 's["state"] == "connected" and len(s["peers"]) == 3'
kill "$cpid"; wait "$cpid" 2>/dev/null
: >"$t/control.log"
start_control
check "connected again" wait_for 10 st 's["state"] == "connected"'

# Outage: backoff, peers stay, one log line; then back.
hook fail '{"on": true}'
check "outage: backoff" wait_for 10 st 's["state"] == "backoff" and len(s["peers"]) == 3'
sleep 4
hook fail '{"on": false}'
check "outage over: connected" wait_for 15 st 's["state"] == "connected"'
n=$(grep -c "retrying with backoff" "$t/control.log")
check "backoff logged once per outage ($n)" test "$n" -eq 1

# Node key rotation: a 6 s key life from the next registration.
hook key_life '{"seconds": 6}'
kill "$cpid"; wait "$cpid" 2>/dev/null
start_control
key0=$(status_json | python3 -c "import json,sys; print(json.load(sys.stdin)['self']['public_key'])")
updated() { [ "$(stat_of update)" -ge 1 ]; }
check "rotation: update sent" wait_for 15 updated
check "rotation: new key in use" wait_for 5 st "s['self']['public_key'] != '$key0' and s['self']['key_expiry'] > 0"
check "rotation: peers kept" st 'len(s["peers"]) == 3'
check "rotation logged" grep -q "node key rotated" "$t/control.log"
n=$(grep -c "retrying with backoff" "$t/control.log")
check "rotation: no backoff ($n)" test "$n" -eq 1

# Peer removed by the server.
hook remove '{"node_id": 101}'
check "delta: peer removed" wait_for 5 st 'len(s["peers"]) == 2'

# down: logout; netmap peers go, the config peer stays.
check "down" mg down
check "after down" st 's["state"] == "logged-out" and [p["name"] for p in s["peers"]] == ["hub"]'
check "down: netmap cache removed" test ! -e "$t/state/mgce2e.netmap"
check "logout reached the server" test "$(stat_of logout)" -ge 1
check "no bad signatures" test "$(stat_of bad_sig)" = 0
out=$("$cli" status nosuch --run-dir "$t/run" 2>&1)
check "no control process: clear error" grep -q "no meshgate-control running" <<<"$out"

kill "$cpid"; wait "$cpid" 2>/dev/null
check "control stopped cleanly (no sanitizer reports)" bash -c "! grep -q Sanitizer '$t/control.log'"

if [ "$fails" -ne 0 ]; then
	echo "--- control.log"; cat "$t/control.log"
	echo "--- fake.log"; cat "$t/fake.log"
fi
echo "$fails failure(s)"
[ "$fails" -eq 0 ]
