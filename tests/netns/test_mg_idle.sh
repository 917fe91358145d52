#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# dataplane.idle_sleep_us (topology: mg_topo.sh): the worker busy-polls by
# default, a whole core even without traffic; with idle_sleep_us it sleeps
# between polls once idle and gives the core back, and traffic still flows
# (the first packet after a pause waits at most one sleep).
#  1. default: the idle worker thread uses most of a core;
#  2. the dataplane restarted with idle_sleep_us = 200: the idle worker uses
#     a small part of one, pings after idle pauses come back quickly, and a
#     TCP transfer and a ping flood pass.
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mg_topo.sh"

# worker_ticks : CPU ticks (user + system) of the dataplane's worker thread
# (DPDK 22.11 names it rte-worker-N).
worker_ticks() {
	local t
	for t in /proc/"$MG_DP_PID"/task/*; do
		case $(cat "$t/comm" 2>/dev/null) in
		rte-worker-* | lcore-worker-*)
			# Fields 14 and 15 of stat; comm (field 2) has no spaces here.
			awk '{ print $14 + $15 }' "$t/stat"
			return 0 ;;
		esac
	done
	return 1
}

# worker_load SECONDS : the worker thread's CPU use over SECONDS, in percent
# of one core.
worker_load() {
	local a b hz
	hz=$(getconf CLK_TCK)
	a=$(worker_ticks) || return 1
	sleep "$1"
	b=$(worker_ticks) || return 1
	echo $(( (b - a) * 100 / (hz * $1) ))
}

# wstat FIELD : worker 0's FIELD from `meshgate stats` (its load counters).
wstat() {
	"$MG_CLI_BIN" stats "$MGN" | awk -v f="$1" '$1 == "worker" && $2 == 0 {
		for (i = 3; i < NF; i += 2) if ($i == f) { print $(i + 1); found = 1 } }
		END { exit !found }'
}

# kernel_rx / port_rx : packets received on wan0 and lan0 as the kernel's
# interfaces count them, and as the DPDK ports do. DPDK 22.11's af_packet
# counts nothing its socket ring lost (no imissed): the difference is that.
kernel_rx() {
	local i sum=0 n
	for i in wan0 lan0; do
		n=$(mg_exec gw cat "/sys/class/net/$i/statistics/rx_packets") || return 1
		sum=$((sum + n))
	done
	echo "$sum"
}
port_rx() {
	"$MG_CLI_BIN" stats "$MGN" | awk '$1 == "port" { for (i = 4; i < NF; i += 2)
		if ($i == "rx_packets") s += $(i + 1) } END { print s + 0 }'
}

mg_test_init
mg_topo_up
mg_check "tunnel up" mg_ping lan 10.99.0.2 3

load=$(worker_load 3) || mg_fail "no worker thread in the dataplane ($MG_DP_PID)"
echo "busy-poll worker, no traffic: $load% of a core"
mg_check "busy-poll (default): the idle worker spins (>= 50% of a core)" test "$load" -ge 50
"$MG_CLI_BIN" stats "$MGN" | grep '^worker'
mg_check "meshgate stats: worker 0 on lcore 1, never slept" \
	bash -c "'$MG_CLI_BIN' stats $MGN | grep -q '^worker 0 lcore 1 .* idle_sleeps 0\$'"

# 2. The same gateway with idle_sleep_us: restart the dataplane on the new
# config; the control process programs it again.
sed -i 's/^  mbufs = 8192;$/  mbufs = 8192; idle_sleep_us = 200;/' "$MG_CONF"
mg_check "config now sets idle_sleep_us" grep -q "idle_sleep_us = 200;" "$MG_CONF"
kill "$MG_DP_PID"
wait "$MG_DP_PID" 2>/dev/null
mg_wait_for bash -c "! test -e /dev/shm/meshgate.$MGN"
mg_topo_start_dataplane
mg_check "control programs the new dataplane" \
	mg_wait_for bash -c "'$MG_CLI_BIN' stats $MGN | grep -q '^peer $PEER_PUB'"
mg_check "traffic resumes" mg_wait_for mg_ping lan 10.99.0.2 2

sleep 1
load=$(worker_load 3) || mg_fail "no worker thread in the dataplane ($MG_DP_PID)"
echo "idle_sleep_us = 200 worker, no traffic: $load% of a core"
mg_check "idle_sleep_us: the idle worker sleeps (<= 25% of a core)" test "$load" -le 25
sleeps=$(wstat idle_sleeps) || mg_fail "no worker line in meshgate stats"
mg_check "meshgate stats counts the sleeps ($sleeps)" test "$sleeps" -gt 1000
mg_check "meshgate stats --json: the same worker" bash -c \
	"'$MG_CLI_BIN' stats $MGN --json | python3 -c 'import json, sys
w = json.load(sys.stdin)[\"workers\"]
sys.exit(not (len(w) == 1 and w[0][\"worker\"] == 0 and w[0][\"lcore\"] == 1 and
              w[0][\"idle_sleeps\"] > 0 and w[0][\"polls\"] > 0))'"
busy0=$(wstat busy_seconds) rx0=$(wstat rx_packets)
k0=$(kernel_rx) p0=$(port_rx) || mg_fail "receive counters"

# Pings 1 s apart find the worker asleep every time: each waits for at
# most one sleep (0.2 ms) on each of its four passes through the gateway.
mg_exec lan ping -n -c 5 -i 1 -W 1 10.99.0.2 >"$MG_TMP/ping.out" 2>&1
cat "$MG_TMP/ping.out"
mg_check "pings after idle pauses: all answered" grep -q " 0% packet loss" "$MG_TMP/ping.out"
avg=$(sed -n 's|^rtt [^=]*= [0-9.]*/\([0-9.]*\)/.*|\1|p' "$MG_TMP/ping.out")
mg_check "and quickly (average RTT $avg ms < 20 ms)" \
	python3 -c "import sys; sys.exit(not float('${avg:-99}') < 20)"

gbps=$(mg_iperf peer 10.99.0.2 lan 3) || mg_fail "iperf3 through a sleeping worker"
echo "iperf3 LAN host -> peer: $gbps Gbit/s"
mg_check "TCP transfer through the gateway" \
	python3 -c "import sys; sys.exit(not float('$gbps') > 0.01)"
mg_check "ping flood (1000, no loss)" \
	mg_exec lan timeout 30 ping -q -n -f -c 1000 -W 1 10.99.0.2
"$MG_CLI_BIN" stats "$MGN" | grep '^worker'
busy1=$(wstat busy_seconds) rx1=$(wstat rx_packets)
mg_check "the worker's busy time grew with the traffic ($busy0 -> $busy1 s)" \
	python3 -c "import sys; sys.exit(not float('$busy1') > float('$busy0'))"
mg_check "and its packets ($rx0 -> $rx1, over 2,000 more)" test $((rx1 - rx0)) -gt 2000
"$MG_CLI_BIN" stats "$MGN" | grep -E '^port|^drop .* [1-9][0-9]*$'
# What the ports' socket rings did not hold is counted nowhere else (DPDK
# 22.11's af_packet has no imissed): shown, not asserted. Runs here lose
# 0-4% of a transfer at a sleeping worker sharing its core with iperf3.
k1=$(kernel_rx) p1=$(port_rx) || mg_fail "receive counters"
echo "    received by the kernel's wan0 and lan0: $((k1 - k0)), by the ports: $((p1 - p0))"
mg_pass "idle_sleep_us: an idle worker gives its core back, traffic still flows"
