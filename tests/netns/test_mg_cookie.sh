#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Handshake flood (topology: mg_topo.sh): an attacker on the WAN sends
# initiations with a valid MAC1 from an unknown key as fast as it can
# (hsflood.py). The control process must notice the load and answer with
# cookie replies instead of doing Diffie-Hellman work, the established
# peer's traffic must keep flowing through the dataplane meanwhile, and a
# fresh handshake must succeed once the flood is over.
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mg_topo.sh"

mg_test_init
mg_topo_up

mg_check "tunnel up" mg_ping peer 10.88.0.1 3
mg_keygen "$MG_TMP" atk
mg_ns_setup atk
mg_veth atk veth0 sw patk
mg_ip sw link set patk master br0
mg_addr atk veth0 198.18.0.66/24

( mg_exec atk timeout 40 python3 "$MG_SRC/tests/netns/hsflood.py" 198.18.0.1 51820 "$GW_PUB" \
	400000 8 >"$MG_TMP/flood.out" 2>&1 ) &
flood=$!
sleep 2
mg_check "established peer passes traffic during the flood" mg_ping peer 10.88.0.1 10
wait "$flood"
cat "$MG_TMP/flood.out"
cookies=$(awk '{ print $4 }' "$MG_TMP/flood.out")
mg_check "cookie replies engaged under load (${cookies:-0})" test "${cookies:-0}" -gt 0
mg_check "control process survived" kill -0 "$MG_CP_PID"
mg_check "dataplane survived" kill -0 "$MG_DP_PID"

# After the flood: a brand new session.
wg set "$MGN" peer "$PEER_PUB" remove
wg set "$MGN" peer "$PEER_PUB" endpoint 198.18.0.2:51820 allowed-ips 10.99.0.2/32,fd99::2/128
sleep 1.5 # the load flag clears one second after the backlog does
mg_check "fresh handshake after the flood" mg_wait_for mg_ping lan 10.99.0.2 2
mg_pass "cookies under load, traffic unaffected"
