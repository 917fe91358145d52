#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Baseline: stock wireguard-go <-> wireguard-go through two namespaces.
# Checks that the netns library, wireguard-go and the tools work on this
# machine, and gives the userspace throughput that meshgate is measured
# against (REFERENCE.md: about 0.63 Gbit/s on the 2-core machine).
#
#   ns mgt<ID>-a                                     ns mgt<ID>-b
#  +-------------------------------+               +-------------------------------+
#  |  mg<ID>a  (wireguard-go)      |   WireGuard   |  mg<ID>b  (wireguard-go)      |
#  |  10.99.0.1/24  fd99::1/64     |<=============>|  10.99.0.2/24  fd99::2/64     |
#  |        | UDP 51820            |    tunnel     |        | UDP 51820            |
#  |  veth0 198.18.0.1/24 ---------+---- veth -----+-- veth0 198.18.0.2/24        |
#  +-------------------------------+               +-------------------------------+
#
#  ping a->b and b->a over IPv4 and IPv6 inside the tunnel, then a 3-second
#  iperf3 TCP run a -> b through it.
#
# Exit: 0 pass, 1 fail, 77 skip (not root, tools missing).
set -u
# shellcheck source=tests/netns/lib.sh
. "$(dirname "$0")/lib.sh"

mg_test_init
mg_require wireguard-go wg iperf3 ping python3 ss

IPERF_SECONDS=${IPERF_SECONDS:-3}
WGA=$(mg_ifname a) || mg_fail "interface name"
WGB=$(mg_ifname b) || mg_fail "interface name"

mg_ns_setup a b
mg_veth a veth0 b veth0
mg_addr a veth0 198.18.0.1/24
mg_addr b veth0 198.18.0.2/24
mg_check "underlay a -> b" mg_ping a 198.18.0.2 2

mg_keygen "$MG_TMP" a
mg_keygen "$MG_TMP" b
mg_wggo_start a "$WGA" "$MG_TMP/a.key" 51820
mg_wggo_start b "$WGB" "$MG_TMP/b.key" 51820

mg_check "peer b on $WGA" mg_exec a wg set "$WGA" peer "$(cat "$MG_TMP/b.pub")" \
	endpoint 198.18.0.2:51820 allowed-ips 10.99.0.2/32,fd99::2/128
mg_check "peer a on $WGB" mg_exec b wg set "$WGB" peer "$(cat "$MG_TMP/a.pub")" \
	endpoint 198.18.0.1:51820 allowed-ips 10.99.0.1/32,fd99::1/128

mg_addr a "$WGA" 10.99.0.1/24
mg_addr a "$WGA" fd99::1/64
mg_addr b "$WGB" 10.99.0.2/24
mg_addr b "$WGB" fd99::2/64

mg_check "tunnel IPv4 a -> b" mg_ping a 10.99.0.2 5
mg_check "tunnel IPv4 b -> a" mg_ping b 10.99.0.1 5
mg_check "tunnel IPv6 a -> b" mg_ping a fd99::2 5
mg_check "tunnel IPv6 b -> a" mg_ping b fd99::1 5

# shellcheck disable=SC2317 # called through mg_check
handshake_done() { # NS IF: latest handshake timestamp is non-zero
	local ts
	ts=$(mg_exec "$1" wg show "$2" latest-handshakes | awk '{print $2}')
	[ -n "$ts" ] && [ "$ts" -gt 0 ]
}
mg_check "handshake recorded on $WGA" handshake_done a "$WGA"
mg_check "handshake recorded on $WGB" handshake_done b "$WGB"

gbps=$(mg_iperf b 10.99.0.2 a "$IPERF_SECONDS") || mg_fail "iperf3 through the tunnel"
echo "ok - iperf3 a -> b through wireguard-go, ${IPERF_SECONDS} s: $gbps Gbit/s"
echo "throughput: $gbps Gbit/s"

mg_check "transfer counters on $WGB" mg_exec b wg show "$WGB" transfer
mg_pass "wireguard-go baseline, $gbps Gbit/s"
