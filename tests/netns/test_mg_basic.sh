#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# meshgate gateway <-> stock wireguard-go (topology in mg_topo.sh):
#  1. the gateway initiates (the LAN host sends first, nobody has a session);
#  2. ping both ways, inner IPv4 and IPv6;
#  3. `wg show` of the gateway lists the peer, endpoint, handshake, transfer;
#  4. iperf3 TCP both ways over inner IPv4 and IPv6;
#  5. both sides forget the session (`wg set ... remove` and re-add, on the
#     gateway through its UAPI socket), and this time the peer initiates.
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mg_topo.sh"

mg_test_init
mg_topo_up

mg_check "LAN host -> peer, IPv4 (gateway initiates)" mg_ping lan 10.99.0.2 5
mg_check "gateway reports a handshake" mg_gw_has_handshake
mg_check "peer -> LAN host, IPv4" mg_ping peer 10.88.0.1 5
mg_check "peer -> LAN host, IPv6" mg_ping peer fd88::1 5
mg_check "LAN host -> peer, IPv6" mg_ping lan fd99::2 5

show=$(wg show "$MGN")
echo "$show"
mg_check "wg show lists the peer" grep -q "peer: $PEER_PUB" <<<"$show"
mg_check "wg show has the endpoint" grep -q "endpoint: 198.18.0.2:51820" <<<"$show"
mg_check "wg show has transfer" grep -Eq "transfer: .* received, .* sent" <<<"$show"
mg_check "wg show has allowed ips" grep -q "allowed ips: 10.99.0.2/32, fd99::2/128" <<<"$show"

for dir in "lan 10.88.0.1 peer" "peer 10.99.0.2 lan" "lan fd88::1 peer" "peer fd99::2 lan"; do
	# shellcheck disable=SC2086
	set -- $dir
	gbps=$(mg_iperf "$1" "$2" "$3" 3) || mg_fail "iperf3 $3 -> $1 ($2)"
	echo "iperf3 $3 -> $1 [$2]: $gbps Gbit/s"
done

# Both sides forget the session; now the peer initiates.
mg_check "gateway: wg set remove" wg set "$MGN" peer "$PEER_PUB" remove
mg_check "gateway: peer gone" bash -c "! wg show $MGN peers | grep -q ."
mg_check "gateway: wg set re-add" wg set "$MGN" peer "$PEER_PUB" endpoint 198.18.0.2:51820 \
	allowed-ips 10.99.0.2/32,fd99::2/128
mg_exec peer wg set "$WGP" peer "$GW_PUB" remove
mg_exec peer wg set "$WGP" peer "$GW_PUB" endpoint 198.18.0.1:51820 \
	allowed-ips 10.88.0.0/24,fd88::/64
mg_ip peer route replace 10.88.0.0/24 dev "$WGP"
mg_ip peer -6 route replace fd88::/64 dev "$WGP"
mg_check "peer -> LAN host after both forgot the session (peer initiates)" \
	mg_ping peer 10.88.0.1 5
mg_check "gateway reports the new handshake" mg_gw_has_handshake
mg_check "LAN host -> peer, IPv6, new session" mg_ping lan fd99::2 3

"$MG_CLI_BIN" stats "$MGN"
mg_pass "meshgate interoperates with wireguard-go"
