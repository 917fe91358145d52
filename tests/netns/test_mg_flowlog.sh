#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Flow logs from both ends (flow_log; topology: coord_topo.sh's mesh of two
# meshgate gateways, gw1 with lan1 10.88.0.1, gw2 with lan2 10.77.0.1):
#  1. pings and a TCP transfer lan1 -> lan2: each gateway's log has the flows,
#     gw1 as tx to gw2 and rx from it, gw2 the other way round, with its own
#     and the peer's public keys, valid JSON on every line;
#  2. scripts/flowlog-audit finds both logs agree: every flow on both sides,
#     the pings packet for packet (TCP may lose packets on the way);
#  3. a line removed from one copy (tampering on one node) shows as a
#     mismatch;
#  4. SIGHUP reopens the file after it was moved away (log rotation).
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/coord_topo.sh"

AUDIT="$(cd "$(dirname "$0")/../.." && pwd)/scripts/flowlog-audit"

mg_test_init
mg_require iperf3 python3
coord_up
GW_FLOW_LOG=1 coord_mesh_up
coord_mesh_routes
mg_check "lan1 -> lan2 through the mesh" mg_wait_for mg_ping lan1 10.77.0.1 2

# ---- 1. traffic, then both logs
mg_check "10 pings lan1 -> lan2" mg_exec lan1 ping -q -n -c 10 -i 0.1 -W 1 10.77.0.1
gbps=$(mg_iperf lan2 10.77.0.1 lan1 2) || mg_fail "iperf3 lan1 -> lan2"
echo "    iperf3 lan1 -> lan2: $gbps Gbit/s"
for n in "$NAME1" "$NAME2"; do # where the transfer lost packets, if it did
	"$CLI_BIN" stats "$n" | grep -E '^port|^drop .* [1-9][0-9]*$' | sed "s/^/    $n: /"
done
F1="$MG_TMP/$NAME1.flows" F2="$MG_TMP/$NAME2.flows"
PUB1=$(wg show "$NAME1" public-key) PUB2=$(wg show "$NAME2" public-key)

# has FILE DIR PEER PROTO SRC DST [DPORT] : a record like that in FILE
has() {
	python3 - "$@" <<'EOF'
import json, sys
path, d, peer, proto, src, dst = sys.argv[1:7]
dport = int(sys.argv[7]) if len(sys.argv) > 7 else None
for line in open(path):
    r = json.loads(line)
    if (r["dir"], r["peer"], r["proto"], r["src"], r["dst"]) == (d, peer, proto, src, dst) \
            and (dport is None or r["dport"] == dport) and r["packets"] > 0:
        sys.exit(0)
sys.exit(1)
EOF
}
# The flows are recorded once a second (interval 1); the last ones a second
# after the traffic stopped.
MG_WAIT=15 mg_check "gw1: echo requests sent to gw2 (tx, icmp type 8)" \
	mg_wait_for has "$F1" tx "$PUB2" icmp 10.88.0.1 10.77.0.1
MG_WAIT=15 mg_check "gw2: the same received from gw1 (rx)" \
	mg_wait_for has "$F2" rx "$PUB1" icmp 10.88.0.1 10.77.0.1
mg_check "gw2: replies sent to gw1 (tx)" mg_wait_for has "$F2" tx "$PUB1" icmp 10.77.0.1 10.88.0.1
mg_check "gw1: replies received (rx)" mg_wait_for has "$F1" rx "$PUB2" icmp 10.77.0.1 10.88.0.1
mg_check "gw1: the TCP flow to port 5201 (tx)" \
	mg_wait_for has "$F1" tx "$PUB2" tcp 10.88.0.1 10.77.0.1 5201
mg_check "gw2: the TCP flow to port 5201 (rx)" \
	mg_wait_for has "$F2" rx "$PUB1" tcp 10.88.0.1 10.77.0.1 5201
sed -n '1,3s/^/    /p' "$F1"
valid() { # every line a JSON object naming its node
	python3 - "$1" "$2" <<'EOF'
import json, sys
n = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    assert r["node"] == sys.argv[2], r
    n += 1
print(n, "records")
sys.exit(0 if n else 1)
EOF
}
mg_check "gw1's log: valid JSON lines, its own key" valid "$F1" "$PUB1"
mg_check "gw2's log: valid JSON lines, its own key" valid "$F2" "$PUB2"
mg_check "the log is mode 0600" test "$(stat -c %a "$F1")" = 600

# ---- 2. both ends agree (once the last records of the transfer are out)
agree() { "$AUDIT" --quiet "$F1" "$F2"; }
MG_WAIT=15 mg_check "flowlog-audit: both logs agree" mg_wait_for agree
"$AUDIT" "$F1" "$F2" | sed 's/^/    /'
mg_check "the pings: the same count on both sides, both ways" bash -c \
	"'$AUDIT' '$F1' '$F2' | grep -c '^ok icmp 10\.' | grep -qx 2"

# ---- 3. one node's log tampered with
grep -v '"proto":"tcp"' "$F1" >"$MG_TMP/tampered"
rc=0
"$AUDIT" "$MG_TMP/tampered" "$F2" >"$MG_TMP/audit.out" || rc=$?
sed 's/^/    /' "$MG_TMP/audit.out"
mg_check "without gw1's TCP records: a mismatch, exit 1 ($rc)" test "$rc" = 1
mg_check "which names the TCP flow as missing" \
	grep -q "^MISMATCH MISSING tcp 10.88.0.1:[0-9]* -> 10.77.0.1:5201" "$MG_TMP/audit.out"
echo '{"broken' >>"$MG_TMP/tampered"
"$AUDIT" "$MG_TMP/tampered" "$F2" >/dev/null 2>&1
mg_check "a line that is not JSON: exit 2" test $? = 2

# ---- 4. log rotation: move the file away, SIGHUP, a new file
mv "$F1" "$F1.1"
CP1=$(pgrep -f -- "meshgate-control -c $MG_TMP/$NAME1.conf" | head -n 1)
[ -n "$CP1" ] || mg_fail "gw1's control process not found"
kill -HUP "$CP1"
mg_check "lan1 -> lan2 again" mg_ping lan1 10.77.0.1 3
MG_WAIT=15 mg_check "SIGHUP: gw1 writes a new file" mg_wait_for test -s "$F1"
mg_check "and the old one is whole" valid "$F1.1" "$PUB1"
mg_pass "both gateways log every flow, and their logs check against each other"
