#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# meshgate over an IPv6 underlay (topology in mg_topo.sh with MG_UNDERLAY=6:
# the gateway's WAN port has 198.18.0.1/24 and fd18::1/64, the wireguard-go
# peer only fd18::2/64, so every outer packet is IPv6/UDP):
#  1. the gateway initiates to its configured endpoint [fd18::2]:51820;
#  2. ping both ways, inner IPv4 and IPv6; `wg show` has the v6 endpoint;
#  3. iperf3 TCP both ways over inner IPv4 and IPv6;
#  4. both sides forget the session; the gateway is re-added through its
#     UAPI with `endpoint [fd18::2]:51820` and initiates again;
#  5. both forget it again, the gateway is re-added without an endpoint:
#     the peer initiates and the gateway learns [fd18::2]:51820 from it;
#  6. roaming: the peer moves to port 51999, then to IPv4 (198.18.0.2),
#     then back to IPv6; the gateway follows each time;
#  7. STUN over IPv6: meshgate-stund in ns peer on [fd18::2]:3478; the
#     gateway learns [fd18::1]:51820 (no NAT here) through the dataplane;
#  8. an off-link peer: a second wireguard-go in ns far (fd19::2/64) behind
#     router ns rt (fe80::fe and fd18::fe on the WAN bridge, fd19::1 on
#     far's link); the gateway reaches it through gateway6 = fe80::fe (a
#     link-local next hop) and initiates to its endpoint [fd19::2]:51820.
#
#   peer fd18::2 --+                          +-- gw wan0 fd18::1 (DPDK)
#                  +-- br0 (ns sw) -----------+
#   rt fd18::fe ---+   fe80::fe
#   rt fd19::1 ---- far fd19::2 (wireguard-go, tunnel 10.99.0.9)
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mg_topo.sh"

MG_UNDERLAY=6
MG_WAN_EXTRA='gateway6 = "fe80::fe";'
mg_test_init
mg_topo_up 'control: { stun_servers = ["[fd18::2]:3478"]; stun_interval = 5; };'

gw_endpoint_is() { # ENDPOINT
	wg show "$MGN" endpoints | awk -v k="$PEER_PUB" -v e="$1" '$1 == k && $2 == e { f = 1 } END { exit !f }'
}

# The peer completed a handshake (as initiator: it got the gateway's response).
peer_has_handshake() {
	mg_exec peer wg show "$WGP" latest-handshakes | awk '$2 > 0 { f = 1 } END { exit !f }'
}

# Both sides forget the session and the peer's routes come back.
forget_session() { # GATEWAY-EXTRA-ARGS...
	wg set "$MGN" peer "$PEER_PUB" remove || return 1
	wg set "$MGN" peer "$PEER_PUB" "$@" allowed-ips 10.99.0.2/32,fd99::2/128 || return 1
	mg_exec peer wg set "$WGP" peer "$GW_PUB" remove || return 1
	mg_exec peer wg set "$WGP" peer "$GW_PUB" endpoint "[fd18::1]:51820" \
		allowed-ips 10.88.0.0/24,fd88::/64 || return 1
	mg_ip peer route replace 10.88.0.0/24 dev "$WGP"
	mg_ip peer -6 route replace fd88::/64 dev "$WGP"
}

mg_check "the peer has no IPv4 underlay" \
	bash -c "! ip -n $(mg_ns peer) -4 addr show dev veth0 | grep -q inet"

# 1-2. Gateway-initiated over IPv6.
# The peer sends nothing by itself: only the gateway can start this session.
# A loaded machine may lose the first pings to the handshake: wait for it.
mg_ping lan 10.99.0.2 3 >/dev/null 2>&1
mg_check "gateway initiates over IPv6 (handshake done)" mg_wait_for mg_gw_has_handshake
mg_check "LAN host -> peer, IPv4" mg_ping lan 10.99.0.2 5
mg_check "peer -> LAN host, IPv4" mg_ping peer 10.88.0.1 5
mg_check "peer -> LAN host, IPv6" mg_ping peer fd88::1 5
mg_check "LAN host -> peer, IPv6" mg_ping lan fd99::2 5

show=$(wg show "$MGN")
echo "$show"
mg_check "wg show has the IPv6 endpoint" grep -q "endpoint: \[fd18::2\]:51820" <<<"$show"
mg_check "wg show has transfer" grep -Eq "transfer: .* received, .* sent" <<<"$show"
mg_check "dataplane exports the IPv6 endpoint" \
	bash -c "'$MG_CLI_BIN' stats $MGN | grep -q 'endpoint \[fd18::2\]:51820'"

# 3. Bulk TCP.
for dir in "lan 10.88.0.1 peer" "peer 10.99.0.2 lan" "lan fd88::1 peer" "peer fd99::2 lan"; do
	# shellcheck disable=SC2086
	set -- $dir
	gbps=$(mg_iperf "$1" "$2" "$3" 3) || mg_fail "iperf3 $3 -> $1 ($2) over the IPv6 underlay"
	echo "ok - iperf3 $3 -> $1 [$2] over the IPv6 underlay: $gbps Gbit/s"
done

# 4. The endpoint given through the UAPI in brackets; the gateway initiates.
mg_check "forget the session; gateway: wg set ... endpoint [fd18::2]:51820" \
	forget_session endpoint "[fd18::2]:51820"
mg_check "wg show has the endpoint set through the UAPI" gw_endpoint_is "[fd18::2]:51820"
mg_ping lan fd99::2 3 >/dev/null 2>&1
mg_check "gateway initiates to the UAPI endpoint (handshake done)" \
	mg_wait_for mg_gw_has_handshake
mg_check "LAN host -> peer, IPv6, gateway-initiated session" mg_ping lan fd99::2 5

# 5. No endpoint on the gateway: only the peer can initiate.
mg_check "forget the session; gateway re-added without an endpoint" forget_session
mg_check "gateway has no endpoint for the peer" gw_endpoint_is "(none)"
mg_ping peer 10.88.0.1 3 >/dev/null 2>&1
mg_check "peer initiates over IPv6 (handshake done)" mg_wait_for peer_has_handshake
mg_check "gateway reports the peer's handshake" mg_gw_has_handshake
mg_check "peer -> LAN host, IPv4, peer-initiated session" mg_ping peer 10.88.0.1 5
mg_check "gateway learned the endpoint [fd18::2]:51820" gw_endpoint_is "[fd18::2]:51820"
mg_check "LAN host -> peer, IPv6, peer-initiated session" mg_ping lan fd99::2 3

# 6. Roaming: a new port, then IPv4, then back to IPv6.
mg_check "peer moves to port 51999" mg_exec peer wg set "$WGP" listen-port 51999
mg_check "peer -> LAN from the new port" mg_ping peer 10.88.0.1 3
mg_check "gateway follows to [fd18::2]:51999" mg_wait_for gw_endpoint_is "[fd18::2]:51999"
mg_check "LAN -> peer goes to the new endpoint" mg_ping lan 10.99.0.2 3

# Both ends roam to the latest authenticated source, so a packet of the
# gateway's still on its way over the old family (a reply, a keepalive) can
# move wireguard-go back right after the switch, and the gateway follows it
# back. That race is the protocol's; on a loaded machine it can take a few
# tries for the tunnel to be quiet at the moment of the switch.
# switch_to PEER_SETS_ENDPOINT PING_DST GATEWAY_SHOULD_SEE
switch_to() {
	local try
	for try in 1 2 3 4; do
		sleep 1
		mg_exec peer wg set "$WGP" peer "$GW_PUB" endpoint "$1" || return 1
		mg_ping peer "$2" 3 >/dev/null || continue
		MG_WAIT=4 mg_wait_for gw_endpoint_is "$3" && { echo "switched (try $try)"; return 0; }
	done
	return 1
}
# The gateway's IPv4 address resolved first (the ping gets no answer).
mg_addr peer veth0 198.18.0.2/24
mg_exec peer ping -q -c 1 -W 1 198.18.0.1 >/dev/null 2>&1
mg_check "peer switches to IPv4; the gateway follows to 198.18.0.2:51999" \
	switch_to 198.18.0.1:51820 10.88.0.1 198.18.0.2:51999
mg_check "LAN -> peer over IPv4" mg_ping lan fd99::2 3
mg_check "peer switches back to IPv6; the gateway follows to [fd18::2]:51999" \
	switch_to "[fd18::1]:51820" fd88::1 "[fd18::2]:51999"
mg_check "LAN -> peer over IPv6 again" mg_ping lan 10.99.0.2 3

# 7. STUN over the IPv6 underlay (the codec, the dataplane's v6 punt and
# send paths, control's matching of the answer to the server asked).
mg_bg stund peer "$MG_BUILD/stund/meshgate-stund" --listen "[fd18::2]:3478"
stun_v6() { grep -Fq 'stun: public endpoint [fd18::1]:51820 (via [fd18::2]:3478)' "$MG_LOG_DIR/control.log"; }
MG_WAIT=15 mg_check "STUN over IPv6: the gateway learns [fd18::1]:51820" mg_wait_for stun_v6

# 8. Off-link, through the link-local gateway6.
mg_ns_setup rt far
mg_veth rt up0 sw prt
mg_ip sw link set prt master br0
mg_veth rt far0 far veth0
for n in "rt up0" "sw prt" "rt far0" "far veth0"; do
	# shellcheck disable=SC2086
	_mg_offloads_off $n
done
mg_exec rt sysctl -qw net.ipv6.conf.all.forwarding=1
mg_addr rt up0 fe80::fe/64
mg_addr rt up0 fd18::fe/64
mg_addr rt far0 fd19::1/64
mg_addr far veth0 fd19::2/64
mg_ip far -6 route add default via fd19::1
mg_keygen "$MG_TMP" far
FAR_PUB=$(cat "$MG_TMP/far.pub")
FAR=$(mg_ifname f) || mg_fail "name"
mg_wggo_start far "$FAR" "$MG_TMP/far.key" 51820
mg_exec far wg set "$FAR" peer "$GW_PUB" endpoint "[fd18::1]:51820" \
	allowed-ips 10.88.0.0/24,fd88::/64 || mg_fail "wg set far"
mg_addr far "$FAR" 10.99.0.9/24
mg_ip far route add 10.88.0.0/24 dev "$FAR"
mg_check "gateway: wg set the off-link peer, endpoint [fd19::2]:51820" \
	wg set "$MGN" peer "$FAR_PUB" endpoint "[fd19::2]:51820" allowed-ips 10.99.0.9/32
far_handshake() {
	wg show "$MGN" latest-handshakes | awk -v k="$FAR_PUB" '$1 == k && $2 > 0 { f = 1 } END { exit !f }'
}
mg_ping lan 10.99.0.9 3 >/dev/null 2>&1
mg_check "gateway initiates to the off-link peer through gateway6 fe80::fe" \
	mg_wait_for far_handshake
mg_check "LAN host -> off-link peer" mg_ping lan 10.99.0.9 5
mg_check "off-link peer -> LAN host" mg_ping far 10.88.0.1 3
mg_check "the router forwarded the tunnel" \
	bash -c "[ \$(ip netns exec $(mg_ns rt) cat /sys/class/net/far0/statistics/tx_packets) -gt 4 ]"
mg_check "the first peer still works" mg_ping peer 10.88.0.1 3

"$MG_CLI_BIN" stats "$MGN"
mg_pass "meshgate interoperates with wireguard-go over an IPv6 underlay"
