#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# A mesh through the coordination server (meshgate-coord, SQLite):
#
#   ns cl: stock wireguard-go, enrolled as a plain WireGuard device
#   ns gw1: meshgate (lan 10.88.0.0/24, host lan1 10.88.0.1)
#   ns gw2: meshgate (lan 10.77.0.0/24, host lan2 10.77.0.1)
#   all on one WAN bridge (198.18.0.0/24); the server and the control
#   processes in the root namespace on 127.0.0.1.
#
#  1. both gateways join with one pre-auth key, find each other's keys and
#     endpoints through the server; their advertised routes are approved
#     and LAN hosts reach each other through the tunnel;
#  2. a wg-quick config printed by the server for a stock client: the
#     client reaches lan1 through gw1;
#  3. a policy change cuts the client off (lan1 <-> lan2 keeps working),
#     restoring the policy restores it;
#  4. route failover: two nodes advertise the same prefix; when the primary
#     goes away, gw1's map moves the route to the other within seconds;
#  5. an ephemeral node disappears soon after it goes away;
#  6. an expired node key: gw1 drops gw2 and lan1 cannot reach lan2.
set -u
. "$(dirname "$0")/lib.sh"

. "$(dirname "$0")/coord_topo.sh"

mg_test_init
coord_up
coord_mesh_up
coord_mesh_routes
mg_check "lan1 -> lan2 through the mesh" mg_ping lan1 10.77.0.1 5
mg_check "lan2 -> lan1 through the mesh" mg_ping lan2 10.88.0.1 5

# ---- 2. a stock WireGuard client enrolled by its public key
coord_client_up
sed 's/^/    /' "$MG_TMP/$CLIF.printed"
mg_check "client -> lan1 through gw1" mg_ping cl 10.88.0.1 5

# ---- 3. policy: cut the client off, then restore
cat >"$MG_TMP/cut.hujson" <<'EOF'
{"acls": [{"action": "accept", "src": ["10.88.0.0/24", "10.77.0.0/24"], "dst": ["10.88.0.0/24:*", "10.77.0.0/24:*"]}]}
EOF
cat >"$MG_TMP/all.hujson" <<'EOF'
{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}],
 "tests": [{"src": "10.88.0.1", "accept": ["10.77.0.1:22"]}]}
EOF
mg_check "policy that cuts the client applied" admin policy set corp "$MG_TMP/cut.hujson"
cut_off() { ! mg_exec cl ping -c 2 -W 1 -i 0.3 10.88.0.1 >/dev/null 2>&1; }
mg_check "client cut off" mg_wait_for cut_off
mg_check "lan1 -> lan2 still allowed" mg_ping lan1 10.77.0.1 3
mg_check "policy restored" admin policy set corp "$MG_TMP/all.hujson"
mg_check "client back" mg_wait_for mg_ping cl 10.88.0.1 2

# ---- 4. route failover: two dataplane-less nodes advertise 10.66.0.0/24
for n in 3 4; do
	nm=$(mg_ifname "n$n") || mg_fail "name"
	gw_conf "$nm" "198.18.0.$((40 + n))" "10.66.$n.254" '"10.66.0.0/24"' "gw$n" "$KEY"
	mg_bg "cp$n" root "$CP_BIN" -c "$MG_TMP/$nm.conf"
	eval "CP${n}_PID=\$MG_LAST_PID NAME$n=\$nm"
	MG_SOCKS+=("/var/run/wireguard/$nm.sock")
done
mg_wait_for has_peer "$NAME1" gw3 && mg_wait_for has_peer "$NAME1" gw4 || mg_fail "gw3/gw4 not seen"
ID3=$(node_id gw3) ID4=$(node_id gw4)
admin route approve "$ID3" 10.66.0.0/24 >/dev/null && admin route approve "$ID4" 10.66.0.0/24 >/dev/null ||
	mg_fail "approve 10.66.0.0/24"
# holder : the peer key gw1 routes 10.66.0.0/24 to
holder() { wg show "$NAME1" allowed-ips | awk '/10\.66\.0\.0\/24/ { print $1 }'; }
mg_wait_for test -n "$(holder)" || true
mg_wait_for bash -c "wg show $NAME1 allowed-ips | grep -q 10.66.0.0/24" || mg_fail "10.66.0.0/24 not routed"
one_holder() { [ "$(holder | wc -l)" -eq 1 ]; }
mg_wait_for one_holder || mg_fail "10.66.0.0/24 held by $(holder | wc -l) peers"
first=$(holder)
pub3=$(status "$NAME3" | python3 -c 'import json,sys; print(json.load(sys.stdin)["self"]["public_key"])')
if [ "$first" = "$pub3" ]; then kill -9 "$CP3_PID"; gone=gw3; else kill -9 "$CP4_PID"; gone=gw4; fi
t0=$(date +%s.%N)
moved() { local h; h=$(holder); [ -n "$h" ] && [ "$h" != "$first" ]; }
MG_WAIT=20 mg_check "primary ($gone) gone: 10.66.0.0/24 moves to the other node" mg_wait_for moved
echo "    10.66.0.0/24 was on ${first:0:8}..., now on $(holder | cut -c1-8)..."
echo "    failover after $(python3 -c "import sys; print('%.1f s' % (float(sys.argv[2]) - float(sys.argv[1])))" "$t0" "$(date +%s.%N)")"

# ---- 5. an ephemeral node goes away
NAME5=$(mg_ifname e) || mg_fail "name"
gw_conf "$NAME5" 198.18.0.50 10.55.0.254 '' eph "$EKEY"
mg_bg cp5 root "$CP_BIN" -c "$MG_TMP/$NAME5.conf"
CP5_PID=$MG_LAST_PID
MG_SOCKS+=("/var/run/wireguard/$NAME5.sock")
listed() { admin nodes corp | awk '{ print $2 }' | grep -qx "$1"; }
mg_check "ephemeral node registered" mg_wait_for listed eph
kill -9 "$CP5_PID"
unlisted() { ! listed "$1"; }
MG_WAIT=30 mg_check "ephemeral node removed after it went away" mg_wait_for unlisted eph
no_eph_peer() { ! has_peer "$NAME1" eph; }
mg_check "and gone from gw1's map" mg_wait_for no_eph_peer

# ---- 6. an expired node key
# (its auth key file removed first, or it would simply register again)
rm -f "$MG_TMP/$NAME2.authkey"
mg_check "gw2's key expired by the admin" admin node expire "$ID2"
no_gw2() { ! has_peer "$NAME1" gw2; }
mg_check "gw1 dropped gw2" mg_wait_for no_gw2
mg_check "lan1 cannot reach lan2 any more" bash -c "! ip netns exec $(mg_ns lan1) ping -c 2 -W 1 -i 0.3 10.77.0.1"

mg_pass "gateways and a stock client mesh through the coordination server"
