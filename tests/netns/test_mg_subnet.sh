#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# shellcheck disable=SC2317,SC2012,SC2119 # helpers run through mg_check
#
# Subnet routing with source NAT, and a default route through a peer
# (topology in mg_topo.sh, plus a host behind a static route and an
# "internet" address behind the peer):
#
#  ns peer (wireguard-go)          ns gw (meshgate)         ns lan              ns lan2
#  10.99.0.2 fd99::2     tunnel    lan0 10.88.0.254 -----  10.88.0.1 (router) -- 10.77.0.1
#  lo 203.0.113.1      ========>        fd88::fe           fd88::1    10.77.0.254
#         2001:db8:113::1          route 10.77.0.0/24 via 10.88.0.1
#  gateway: peer allowed_ips = 10.99.0.2/32, fd99::2/128, 0.0.0.0/0, ::/0
#
#  1. SNAT on (the default), the LAN hosts have NO route to the tunnel:
#     ping and TCP from the peer to 10.88.0.1 / fd88::1 (NAT66) and ping
#     to 10.77.0.1 (static route); the LAN server sees the gateway's lan
#     address as the client; its ICMP errors (port unreachable) reach the
#     peer translated back;
#  2. exit node: the LAN host pings 203.0.113.1 / 2001:db8:113::1, which
#     exist only behind the peer, and gets replies; flows the LAN host opens
#     toward the peer (ping, TCP, UDP) are not translated;
#  3. SNAT off (dataplane restarted), the LAN hosts route the tunnel
#     prefixes via the gateway: ping and TCP from the peer, the LAN server
#     sees the peer's tunnel address; the LAN host reaches the peer back
#     (ping, TCP).
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mg_topo.sh"

mg_test_init
MG_LAN_EXTRA='routes = ( { prefix = "10.77.0.0/24"; via = "10.88.0.1"; } );'
MG_PEER_ALLOWED_IPS='"10.99.0.2/32", "fd99::2/128", "0.0.0.0/0", "::/0"'
mg_topo_up

# A second LAN host behind 10.88.0.1 (the lan namespace routes for it).
mg_ns_setup lan2
mg_veth lan veth1 lan2 veth0 >/dev/null
_mg_offloads_off lan veth1
_mg_offloads_off lan2 veth0
mg_addr lan veth1 10.77.0.254/24
mg_addr lan2 veth0 10.77.0.1/24
mg_ip lan2 route add default via 10.77.0.254
mg_exec lan sysctl -qw net.ipv4.ip_forward=1

# The peer: the gateway for 10.77.0.0/24 too, and an address of its own
# that only it has (the "internet" behind an exit node).
mg_exec peer wg set "$WGP" peer "$GW_PUB" allowed-ips 10.88.0.0/24,fd88::/64,10.77.0.0/24
mg_ip peer route add 10.77.0.0/24 dev "$WGP"
mg_addr peer lo 203.0.113.1/32 # on lo: dummy links need a kernel module
mg_addr peer lo 2001:db8:113::1/128

# client_seen NS_SERVER SERVER_IP NS_CLIENT [iperf3 args] : a 2 s iperf3 run;
# prints the client address the server saw (on its data stream).
client_seen() {
	local nss=$1 ip=$2 nsc=$3 gbps log
	shift 3
	gbps=$(mg_iperf "$nss" "$ip" "$nsc" 2 "$@") || return 1
	log=$(ls -t "$MG_LOG_DIR"/iperf-*-server.log | head -n 1) # mg_iperf ran in a subshell
	echo "iperf3 $* $nsc -> $nss [$ip]: $gbps Gbit/s" >&2
	sed -n 's/.* connected to \([0-9a-f.:]*\) port .*/\1/p' "$log" | head -n 1
}

# expect_src NS_CLIENT SERVER_IP WANT : TCP to the LAN host works and the
# LAN server saw WANT as the client.
expect_src() {
	local seen
	seen=$(client_seen lan "$2" "$1") || return 1
	echo "LAN server saw $seen"
	[ "$seen" = "$3" ]
}

# expect_lan_opened ARGS... : the LAN host opens TCP (or UDP with -u) to
# the peer; the peer sees the LAN host's own address.
expect_lan_opened() {
	local seen
	seen=$(client_seen peer 10.99.0.2 lan "$@") || return 1
	echo "peer saw $seen"
	[ "$seen" = 10.88.0.1 ]
}

# udp_refused DST : from the peer, UDP to a closed port of DST is refused:
# the LAN host's ICMP port unreachable (about the translated datagram)
# comes back translated to the peer's own socket.
udp_refused() {
	mg_exec peer timeout 15 python3 - "$1" <<'EOF'
import socket, sys
dst = sys.argv[1]
s = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.connect((dst, 9))
for _ in range(4):
    try:
        s.send(b"x")
        s.recv(100)
    except ConnectionRefusedError:
        print("refused")
        sys.exit(0)
    except socket.timeout:
        pass
sys.exit("no ICMP error came back")
EOF
}

no_ping() {
	! mg_ping "$@"
}

# ---- 1. SNAT on: no route back on the LAN ----
mg_ip lan route del 10.99.0.0/24
mg_ip lan -6 route del fd99::/64
mg_check "SNAT: peer -> LAN host, IPv4 (no route back)" mg_wait_for mg_ping peer 10.88.0.1 3
mg_check "SNAT: peer -> LAN host, IPv6 (NAT66)" mg_ping peer fd88::1 3
mg_check "SNAT: peer -> host behind the static route" mg_ping peer 10.77.0.1 3
mg_check "SNAT: TCP IPv4, LAN server sees 10.88.0.254" expect_src peer 10.88.0.1 10.88.0.254
mg_check "SNAT: TCP IPv6, LAN server sees fd88::fe" expect_src peer fd88::1 fd88::fe
mg_check "SNAT: ICMP port unreachable from the LAN host, IPv4" udp_refused 10.88.0.1
mg_check "SNAT: ICMPv6 port unreachable from the LAN host" udp_refused fd88::1
seen=$(mg_exec lan2 timeout 8 tcpdump -c 1 -n -i veth0 -l icmp 2>/dev/null &
	sleep 2; mg_ping peer 10.77.0.1 2 >/dev/null; wait) || true
echo "lan2 capture: $seen"
mg_check "SNAT: static-route host sees the gateway's lan address" \
	grep -q "IP 10.88.0.254 > 10.77.0.1: ICMP echo request" <<<"$seen"

# ---- 2. exit node: an address only the peer has ----
mg_ip lan route add 203.0.113.0/24 via 10.88.0.254
mg_ip lan -6 route add 2001:db8:113::/64 via fd88::fe
mg_check "exit node: LAN host -> 203.0.113.1 behind the peer" mg_ping lan 203.0.113.1 3
mg_check "exit node: LAN host -> 2001:db8:113::1 behind the peer" mg_ping lan 2001:db8:113::1 3

# Flows the LAN host opens are not translated (it needs a route to the tunnel).
mg_ip lan route add 10.99.0.0/24 via 10.88.0.254
mg_check "SNAT on: LAN host -> peer, ping it opened" mg_ping lan 10.99.0.2 3
mg_check "SNAT on: LAN host -> peer, TCP it opened" expect_lan_opened
mg_check "SNAT on: LAN host -> peer, UDP it opened" expect_lan_opened -u -b 20M
mg_ip lan route del 10.99.0.0/24

"$MG_CLI_BIN" stats "$MGN" | grep -E "^drop .* [1-9]" || true
mg_check "SNAT on: no snat_* drops" bash -c \
	"! '$MG_CLI_BIN' stats $MGN | grep -E '^drop snat_[a-z_]+ [1-9]'"

# ---- 3. SNAT off: plain routing, the LAN routes back via the gateway ----
kill "$MG_DP_PID"
wait "$MG_DP_PID" 2>/dev/null
mg_check "dataplane stopped" mg_wait_for bash -c "! test -e /dev/shm/meshgate.$MGN"
MG_DP_EXTRA='snat = { enabled = false; };'
mg_topo_write_conf "$MG_CONF"
mg_topo_start_dataplane
mg_check "control re-programs the new dataplane" \
	mg_wait_for bash -c "'$MG_CLI_BIN' stats $MGN | grep -q '^peer $PEER_PUB'"
mg_check "SNAT off: tunnel up again (exit-node ping)" mg_wait_for mg_ping lan 203.0.113.1 2
mg_check "SNAT off: without a route back the LAN host cannot answer" no_ping peer 10.88.0.1 2
mg_ip lan route add 10.99.0.0/24 via 10.88.0.254
mg_ip lan -6 route add fd99::/64 via fd88::fe
mg_check "SNAT off: peer -> LAN host, IPv4" mg_wait_for mg_ping peer 10.88.0.1 3
mg_check "SNAT off: peer -> LAN host, IPv6" mg_ping peer fd88::1 3
mg_check "SNAT off: peer -> host behind the static route" mg_ping peer 10.77.0.1 3
mg_check "SNAT off: TCP IPv4, LAN server sees the peer's 10.99.0.2" \
	expect_src peer 10.88.0.1 10.99.0.2
mg_check "SNAT off: TCP IPv6, LAN server sees fd99::2" expect_src peer fd88::1 fd99::2
mg_check "SNAT off: LAN host -> peer, IPv4" mg_ping lan 10.99.0.2 3
mg_check "SNAT off: LAN host -> peer, IPv6" mg_ping lan fd99::2 3
gbps=$(mg_iperf peer 10.99.0.2 lan 2) || mg_fail "iperf3 lan -> peer"
echo "iperf3 lan -> peer [10.99.0.2]: $gbps Gbit/s"
mg_check "SNAT off: exit node still works" mg_ping lan 203.0.113.1 3

"$MG_CLI_BIN" stats "$MGN"
mg_pass "subnet routing with and without SNAT, and a default route through a peer"
