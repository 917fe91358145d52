#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Malformed traffic on the WireGuard port and the WAN link (garbage.py;
# raw frames enter straight at the gateway's link, past the test bridge):
# random and truncated WireGuard messages, bad IPv4 headers, fragments,
# runts, ARP and ND junk. The dataplane must count each under a named drop
# reason, keep running, and keep passing the real peer's traffic.
# Topology: mg_topo.sh.
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mg_topo.sh"

mg_test_init
mg_topo_up

mg_check "tunnel up" mg_ping peer 10.88.0.1 3
gw_mac=$(mg_exec peer ip neigh show 198.18.0.1 | awk '{ print $5; exit }')
mg_check "learned the gateway's MAC ($gw_mac)" test -n "$gw_mac"

declare -A before
for r in wg_bad_type wg_bad_size unknown_index bad_ip ip_fragment rx_runt not_ip not_for_us; do
	before[$r]=$(mg_drops $r)
done

G="$MG_SRC/tests/netns/garbage.py"
mg_check "2000 malformed WireGuard datagrams" \
	mg_exec peer timeout 30 python3 "$G" udp 198.18.0.1 51820 2000 1
mg_check "2000 malformed frames" \
	mg_exec sw timeout 30 python3 "$G" raw gwport "$gw_mac" 198.18.0.2 198.18.0.1 51820 2000 2
sleep 1

mg_check "dataplane still running" kill -0 "$MG_DP_PID"
mg_check "control still running" kill -0 "$MG_CP_PID"
"$MG_CLI_BIN" stats "$MGN" | grep '^drop' | grep -v ' 0$'
# Not ip_fragment: DPDK's af_packet PMD joins a PACKET_FANOUT group with the
# defrag flag, so the kernel holds fragments back (reassembling them)
# before they reach the port; fuzz_classify covers that drop instead.
for r in wg_bad_type wg_bad_size unknown_index bad_ip not_ip rx_runt; do
	now=$(mg_drops $r)
	mg_check "drops counted as $r (${before[$r]} -> $now)" test "$now" -gt "${before[$r]}"
done
mg_check "the real peer still works" mg_ping peer 10.88.0.1 3
mg_check "and the LAN host reaches it" mg_ping lan fd99::2 3
mg_pass "malformed input is counted and dropped"
