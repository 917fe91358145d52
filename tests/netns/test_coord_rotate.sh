#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Node key rotation through the coordination server (topology in
# coord_topo.sh), under traffic: gw2 joins with an untagged key whose node
# key expires 30 s after it is issued (testing.key_expiry_seconds), so its
# control process rotates it (new WireGuard key, /machine/update) when a
# third of that is left. While lan1 pings lan2 through the tunnel:
#  1. gw2's public key changes (twice), gw1's map follows it, and the
#     addresses stay;
#  2. traffic is interrupted for at most about one handshake per rotation.
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/coord_topo.sh"

mg_test_init
COORD_KEY_SECONDS=30 coord_up
GW2_KEY=$(admin key create corp ops@example.com --reusable) || mg_fail "untagged key"
coord_mesh_up
mg_wait_for has_peer "$NAME1" gw2 && mg_wait_for has_peer "$NAME2" gw1 || mg_fail "no mesh"
ID1=$(node_id gw1) ID2=$(node_id gw2)
admin route approve "$ID1" 10.88.0.0/24 >/dev/null && admin route approve "$ID2" 10.77.0.0/24 >/dev/null ||
	mg_fail "route approve"
mg_wait_for aips_have "$NAME1" 10.77.0.0/24 && mg_wait_for aips_have "$NAME2" 10.88.0.0/24 ||
	mg_fail "routes"
mg_check "lan1 -> lan2 through the mesh" mg_ping lan1 10.77.0.1 3

key0=$(wg show "$NAME2" public-key)
addr0=$(status "$NAME2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["self"]["addresses"])')
# 40 s of pings, 5 per second: at least two rotations (at ~20 s and ~40 s
# of a key's life).
mg_exec lan1 timeout 60 ping -n -i 0.2 -c 200 -W 1 10.77.0.1 >"$MG_TMP/ping.txt" 2>&1
key1=$(wg show "$NAME2" public-key)
addr1=$(status "$NAME2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["self"]["addresses"])')
rotations=$(grep -c "node key rotated" "$MG_LOG_DIR/cp2.log")
grep "node key rotated" "$MG_LOG_DIR/cp2.log" | sed 's/^/    /'
mg_check "gw2 rotated its key ($rotations times)" test "$rotations" -ge 1
mg_check "gw2's public key changed" test "$key0" != "$key1"
mg_check "gw2 kept its addresses" test "$addr0" = "$addr1"
gw1_has_key() { wg show "$NAME1" peers | grep -qx "$(wg show "$NAME2" public-key)"; }
mg_check "gw1 knows gw2's current key" mg_wait_for gw1_has_key
tail -2 "$MG_TMP/ping.txt" | sed 's/^/    /'
sent=$(awk '/packets transmitted/ { print $1 }' "$MG_TMP/ping.txt")
got=$(awk '/packets transmitted/ { print $4 }' "$MG_TMP/ping.txt")
lost=$(( ${sent:-0} - ${got:-0} ))
# Each rotation costs gw1 the old peer's session: the next packet waits
# for one handshake (a few ms here); allow one ping per rotation, plus one.
mg_check "traffic kept flowing across the rotations ($lost of $sent pings lost)" \
	test "${sent:-0}" -ge 150 -a "$lost" -le $(( rotations + 1 ))
mg_pass "node keys rotate under traffic; peers follow within a handshake"
