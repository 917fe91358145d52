#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Endpoint roaming and the wrong key (topology: mg_topo.sh):
#  1. the peer moves to a new source port; after its next authenticated
#     packet the gateway sends to the new endpoint, and `wg show` says so;
#  2. a second wireguard-go whose key the gateway does not know (but which
#     knows the gateway's) gets no handshake and no packet through.
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mg_topo.sh"

mg_test_init
mg_topo_up

mg_check "tunnel up" mg_ping peer 10.88.0.1 3
mg_check "endpoint is the peer's port 51820" \
	bash -c "wg show $MGN endpoints | grep -q '198.18.0.2:51820'"

# 1. Roam: wireguard-go rebinds to a new port; its packets now come from it.
mg_check "peer moves to port 51999" mg_exec peer wg set "$WGP" listen-port 51999
mg_check "peer -> LAN from the new port" mg_ping peer 10.88.0.1 3
mg_check "gateway follows to 198.18.0.2:51999" \
	mg_wait_for bash -c "wg show $MGN endpoints | grep -q '198.18.0.2:51999'"
mg_check "LAN -> peer goes to the new endpoint" mg_ping lan 10.99.0.2 3
mg_check "dataplane exports the new endpoint" \
	bash -c "'$MG_CLI_BIN' stats $MGN | grep -q 'endpoint 198.18.0.2:51999'"

# 2. Wrong key: an impostor with its own key, claiming the peer's tunnel
#    address, with the gateway as its peer.
mg_keygen "$MG_TMP" evil
EVIL=$(mg_topo_add_peer evil e 4 "$MG_TMP/evil.key") || mg_fail "evil peer"
refused_before=$(mg_drops unknown_index)
rx_before=$(mg_exec lan cat /sys/class/net/veth0/statistics/rx_packets)
if mg_ping evil 10.88.0.1 5 >/dev/null 2>&1; then
	mg_fail "a peer with an unknown key got replies through the gateway"
fi
echo "ok - unknown key: no replies"
mg_check "unknown key: no handshake completed" \
	bash -c "wg show $EVIL latest-handshakes | awk '{ exit \$2 != 0 }'"
mg_check "gateway does not list the impostor" \
	bash -c "! wg show $MGN peers | grep -q '$(cat "$MG_TMP/evil.pub")'"
rx_after=$(mg_exec lan cat /sys/class/net/veth0/statistics/rx_packets)
# The LAN host may see a few ARP/ND refreshes, never the impostor's pings.
mg_check "nothing of the impostor reached the LAN (rx $rx_before -> $rx_after)" \
	test $(( rx_after - rx_before )) -le 2
mg_check "the real peer still works" mg_ping peer 10.88.0.1 3
echo "unknown_index drops: $refused_before -> $(mg_drops unknown_index)"
mg_pass "roaming and key checks"
