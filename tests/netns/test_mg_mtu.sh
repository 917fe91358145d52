#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Tunnel MTU (1420) toward a wireguard-go peer, topology in mg_topo.sh:
#  1. a LAN host's IPv4 packet with DF over the MTU gets ICMP
#     "fragmentation needed" (mtu 1420) from the gateway, and its kernel
#     caches the path MTU;
#  2. the same size without DF is fragmented by the gateway and the peer's
#     reply arrives; fragmented UDP from the peer crosses SNAT;
#  3. IPv6 over the MTU gets ICMPv6 "packet too big" (mtu 1420);
#  4. with mss_clamp on, a LAN host's TCP SYN reaches the peer with its MSS
#     lowered to 1380, and a transfer works;
#  5. the too_big drops are counted.
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mg_topo.sh"

SOCK="python3 $(cd "$(dirname "$0")" && pwd)/sock.py"

mg_test_init
mg_require tcpdump
MG_DP_EXTRA='mss_clamp = true;'
mg_topo_up

mg_check "LAN host -> peer, small packets" mg_ping lan 10.99.0.2 3

out=$(mg_exec lan timeout 10 ping -n -c 2 -W 2 -M do -s 1450 10.99.0.2 2>&1)
echo "$out" | sed 's/^/    /'
mg_check "DF packet over the MTU: ICMP frag needed, mtu 1420" \
	grep -Eq "Frag needed and DF set \(mtu = 1420\)|message too long, mtu=1420" <<<"$out"
mg_check "LAN host cached the path MTU" \
	bash -c "ip -n $(mg_ns lan) route get 10.99.0.2 | grep -q 'mtu 1420'"
too_big_counted() { [ "$(mg_drops too_big)" -ge 1 ]; }
mg_check "too_big drops counted" too_big_counted

mg_ip lan route flush cache
mg_check "no-DF packet over the MTU: fragmented by the gateway, reply arrives" \
	mg_exec lan timeout 10 ping -q -n -c 3 -W 2 -i 0.3 -M dont -s 1460 10.99.0.2

# From the tunnel side, with SNAT on (the default): the peer's kernel
# fragments 3000-byte UDP datagrams; the gateway translates every fragment
# as it did the first, so the LAN host reassembles them. (The other way
# cannot be shown here: net_af_packet's socket joins a fanout group that
# reassembles fragments in the kernel before DPDK sees them.)
mg_bg udp-frag lan timeout 10 $SOCK count 7100 3
ufpid=$MG_LAST_PID
sleep 0.5
mg_exec peer $SOCK send 10.88.0.1 7100 5 0 3000
wait "$ufpid"
got=$(cat "$MG_LOG_DIR/udp-frag.log")
mg_check "fragmented UDP from the peer crosses SNAT (got ${got:-?} of 5 datagrams)" test "${got:-0}" -eq 5

out=$(mg_exec lan timeout 10 ping -6 -n -c 2 -W 2 -s 1450 fd99::2 2>&1)
echo "$out" | sed 's/^/    /'
mg_check "IPv6 over the MTU: ICMPv6 packet too big, mtu 1420" \
	grep -Eq "Packet too big: mtu=1420|message too long, mtu=1420" <<<"$out"

# MSS: capture the SYN as the peer receives it, then connect from the LAN.
cap="$MG_TMP/syn.txt"
mg_bg tcpdump peer timeout 20 tcpdump -l -n -v -c 1 -i "$WGP" \
	"tcp[tcpflags] & tcp-syn != 0 and dst port 5201"
tdpid=$MG_LAST_PID
sleep 1
gbps=$(mg_iperf peer 10.99.0.2 lan 2) || mg_fail "iperf3 lan -> peer"
echo "iperf3 lan -> peer: $gbps Gbit/s"
wait "$tdpid" 2>/dev/null
cp "$MG_LOG_DIR/tcpdump.log" "$cap" 2>/dev/null
sed 's/^/    /' "$cap"
mg_check "SYN from a 1500-byte LAN arrives with mss 1380" grep -q "mss 1380" "$cap"

"$MG_CLI_BIN" stats "$MGN" | grep -E "too_big|^peer" || true
mg_pass "tunnel MTU enforced with ICMP errors, fragmentation and MSS clamping"
