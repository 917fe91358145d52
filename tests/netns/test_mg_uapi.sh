#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The stock `wg` tool against the control process, at run time, while a TCP
# transfer to the first peer runs (topology: mg_topo.sh):
#  - `wg set` adds a second real wireguard-go peer, which then reaches the
#    LAN; `wg set ... remove` takes it away again, and its traffic stops;
#  - `wg syncconf` adds a third peer from a config file;
#  - `wg showconf` round-trips; bad requests fail cleanly;
#  - the first peer's transfer never notices.
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mg_topo.sh"

mg_test_init
mg_topo_up

mg_check "tunnel up" mg_ping lan 10.99.0.2 3
mg_keygen "$MG_TMP" p2
mg_keygen "$MG_TMP" p3
P2=$(mg_topo_add_peer peer2 q 3 "$MG_TMP/p2.key") || mg_fail "second peer"
P2_PUB=$(cat "$MG_TMP/p2.pub")
P3_PUB=$(cat "$MG_TMP/p3.pub")

( mg_iperf peer 10.99.0.2 lan 10 >"$MG_TMP/iperf.out" 2>&1; echo $? >"$MG_TMP/iperf.rc" ) &
iperf_job=$!
sleep 1

mg_check "wg set: add a peer" wg set "$MGN" peer "$P2_PUB" endpoint 198.18.0.3:51820 \
	allowed-ips 10.99.0.3/32,fd99::3/128 persistent-keepalive 25
mg_check "the new peer reaches the LAN" mg_wait_for mg_ping peer2 10.88.0.1 2
mg_check "the LAN reaches the new peer over IPv6" mg_ping lan fd99::3 3
wg show "$MGN"
mg_check "wg show: keepalive of the new peer" \
	bash -c "wg show $MGN persistent-keepalive | grep -q '$P2_PUB.25'"

conf="$MG_TMP/sync.conf"
wg showconf "$MGN" >"$conf" || mg_fail "wg showconf"
mg_check "showconf has the private key" grep -q '^PrivateKey = ' "$conf"
printf '\n[Peer]\nPublicKey = %s\nAllowedIPs = 10.99.0.5/32\nEndpoint = 198.18.0.5:51820\n' \
	"$P3_PUB" >>"$conf"
mg_check "wg syncconf: add a third peer" wg syncconf "$MGN" "$conf"
mg_check "third peer listed" bash -c "wg show $MGN peers | grep -q '$P3_PUB'"
mg_check "second peer kept by syncconf" bash -c "wg show $MGN peers | grep -q '$P2_PUB'"

mg_check "wg set: remove the second peer" wg set "$MGN" peer "$P2_PUB" remove
if mg_ping peer2 10.88.0.1 3 >/dev/null 2>&1; then
	mg_fail "removed peer still gets through"
fi
echo "ok - removed peer is cut off"
mg_check "a prefix moves between peers (WireGuard semantics)" \
	wg set "$MGN" peer "$P3_PUB" allowed-ips 10.99.0.5/32,10.99.0.6/32
mg_check "bad key is refused" bash -c "! wg set $MGN peer notakey remove 2>/dev/null"
mg_check "bad allowed-ip is refused" \
	bash -c "! wg set $MGN peer '$P3_PUB' allowed-ips 10.99.0.300/32 2>/dev/null"

wait "$iperf_job"
cat "$MG_TMP/iperf.out"
mg_check "the first peer's transfer was undisturbed" test "$(cat "$MG_TMP/iperf.rc")" = 0
mg_check "first peer still works" mg_ping peer 10.88.0.1 3
# (unknown_index drops are expected: the removed peer keeps trying.)
for r in tx_full no_mbuf staged_overflow staged_expired decrypt_failed keypair_expired; do
	mg_check "no $r drops while peers changed" test "$(mg_drops $r)" = 0
done
mg_pass "wg show / set / syncconf at run time"
