#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# shellcheck disable=SC2317,SC2119 # functions run through mg_check; mg_topo_up without args
#
# DPDK's own observability tools against a running meshgate-dataplane
# (topology in mg_topo.sh, a stock wireguard-go peer):
#  1. the telemetry socket /var/run/dpdk/meshgate-<name>/dpdk_telemetry.v2
#     answers dpdk-telemetry.py: /ethdev/list, /ethdev/info,0 and
#     /ethdev/stats,0, whose counters grow with the traffic sent;
#  2. dpdk-dumpcap (a DPDK secondary process, served by rte_pdump in the
#     dataplane) captures the encrypted WAN side and the plaintext LAN side
#     into pcapng files that tcpdump reads back; the tunnel keeps working.
#
# dpdk-dumpcap maps the primary's memory, so the dataplane must run on
# hugepages here (the other tests use --no-huge; a secondary cannot attach
# to that: "Cannot get hugepage information"). The test reserves 2 MiB pages
# for itself, mounts a private hugetlbfs, and gives both back at exit. If no
# hugepages can be had, part 2 is skipped (exit 77) with the reason.
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mg_topo.sh"

PINGS=20
# 2 MiB pages to reserve (0: none, run as the other tests do). The dataplane
# and dumpcap together peak near 330 MiB.
HP_PAGES=${MG_HUGEPAGES:-256}
HP_BEFORE='' HP_SET=0 HUGE_DIR='' HUGE_WHY=''

mg_test_init
mg_require dpdk-telemetry.py dpdk-dumpcap tcpdump python3

hp_release() {
	if [ -n "$HUGE_DIR" ]; then
		umount "$HUGE_DIR" 2>/dev/null
		rmdir "$HUGE_DIR" 2>/dev/null
	fi
	[ "$HP_SET" = 1 ] && echo "$HP_BEFORE" >/proc/sys/vm/nr_hugepages 2>/dev/null
	[ -n "${MGN:-}" ] && rm -rf "/var/run/dpdk/meshgate-$MGN"
	return 0
}
# Processes first (mg_cleanup), then their hugepages.
trap 'mg_cleanup; hp_release' EXIT

# hp_reserve : HP_PAGES more 2 MiB pages and a hugetlbfs in HUGE_DIR, or
# HUGE_WHY says why not.
hp_reserve() {
	local f=/proc/sys/vm/nr_hugepages free
	[ "$HP_PAGES" -gt 0 ] || { HUGE_WHY="MG_HUGEPAGES=0"; return 1; }
	HP_BEFORE=$(cat "$f" 2>/dev/null) || { HUGE_WHY="cannot read $f"; return 1; }
	if ! echo $((HP_BEFORE + HP_PAGES)) >"$f" 2>/dev/null; then
		HUGE_WHY="cannot write $f (read-only /proc/sys?)"
		return 1
	fi
	HP_SET=1
	free=$(awk '/^HugePages_Free:/ { print $2 }' /proc/meminfo)
	if [ "${free:-0}" -lt "$HP_PAGES" ]; then
		HUGE_WHY="asked for $HP_PAGES hugepages, $free free (memory fragmented?)"
		return 1
	fi
	HUGE_DIR=$(mktemp -d /tmp/mgthuge.XXXXXX) || { HUGE_WHY="mktemp"; return 1; }
	if ! mount -t hugetlbfs -o pagesize=2M nodev "$HUGE_DIR" 2>/dev/null; then
		rmdir "$HUGE_DIR"
		HUGE_DIR=
		HUGE_WHY="cannot mount hugetlbfs"
		return 1
	fi
}

HUGE=0
if hp_reserve; then
	HUGE=1
	# The standard config, on our hugepages instead of --no-huge.
	eval "$(declare -f mg_topo_write_conf | sed '1s/mg_topo_write_conf/_mg_topo_write_conf_nohuge/')"
	mg_topo_write_conf() {
		_mg_topo_write_conf_nohuge "$@"
		sed -i "s|\"--no-huge\", \"-m\", \"512\"|\"--huge-dir\", \"$HUGE_DIR\"|" "$1"
		grep -q -- "--huge-dir" "$1" || mg_fail "could not switch $1 to hugepages"
	}
	echo "dataplane on hugepages: $HP_PAGES x 2 MiB reserved, hugetlbfs on $HUGE_DIR"
else
	hp_release
	HP_SET=0
	echo "no hugepages ($HUGE_WHY): dataplane with --no-huge, dpdk-dumpcap part skipped"
fi

mg_topo_up
PREFIX="meshgate-$MGN"
SOCK="/var/run/dpdk/$PREFIX/dpdk_telemetry.v2"

# tele CMD... : one JSON line per command from dpdk-telemetry.py
tele() {
	printf '%s\n' "$@" | timeout 10 dpdk-telemetry.py -f "$PREFIX"
}

# tele_check PYTHON-EXPR CMD... : EXPR over r (command -> reply) must hold
tele_check() {
	local expr=$1; shift
	tele "$@" | python3 -c '
import json, sys
r = {}
for line in sys.stdin:
    line = line.strip()
    if line.startswith("{"):
        r.update(json.loads(line))
print(json.dumps(r)[:300])
sys.exit(0 if eval(sys.argv[1]) else 1)' "$expr"
}

mg_check "telemetry socket $SOCK" test -S "$SOCK"
mg_check "/ethdev/list has both ports" tele_check 'r["/ethdev/list"] == [0, 1]' /ethdev/list
mg_check "/ethdev/info,0 is the WAN af_packet port" \
	tele_check '"af_packet" in r["/ethdev/info"]["name"]' /ethdev/info,0
mg_check "/eal/params carry the file prefix" \
	tele_check '"'"$PREFIX"'" in r["/eal/params"]' /eal/params

ipackets() { # PORT
	tele "/ethdev/stats,$1" | python3 -c 'import json, sys; print(json.loads(sys.stdin.readline())["/ethdev/stats"]["ipackets"])'
}
before=$(ipackets 0) || mg_fail "/ethdev/stats,0"
out=$(mg_ping peer 10.88.0.1 "$PINGS") || mg_fail "peer -> LAN host: $out"
# Every echo that came back crossed the WAN port twice (request, reply).
got=$(sed -n 's/.* \([0-9]\+\) received.*/\1/p' <<<"$out")
after=$(ipackets 0) || mg_fail "/ethdev/stats,0"
echo "peer -> LAN host: $PINGS pings, ${got:-?} answered"
mg_check "/ethdev/stats,0 ipackets grew by >= ${got:-?} ($before -> $after)" \
	test "${got:-0}" -ge 1 -a $((after - before)) -ge "${got:-0}"

if [ "$HUGE" = 0 ]; then
	echo "SKIP: dpdk-dumpcap not tried: $HUGE_WHY (a DPDK secondary cannot attach" \
		"to a --no-huge primary); telemetry checks passed"
	exit 77
fi

# capture PORT FILE COUNT : dpdk-dumpcap while the peer pings the LAN host
capture() {
	local port=$1 file=$2 count=$3
	mg_bg "ping-$port" peer ping -q -n -i 0.1 -c 100 10.88.0.1
	local ppid=$MG_LAST_PID rc=0
	timeout -k 5 30 dpdk-dumpcap --file-prefix="$PREFIX" -i "$port" -c "$count" -q \
		-w "$file" || rc=$?
	kill "$ppid" 2>/dev/null
	wait "$ppid" 2>/dev/null
	return "$rc"
}

# npkts FILE [FILTER] : packets in the capture (tcpdump reads pcapng)
npkts() {
	local file=$1; shift
	tcpdump -n -r "$file" "$@" 2>/dev/null | wc -l
}

mg_check "dpdk-dumpcap -D lists the ports" bash -c \
	"timeout 30 dpdk-dumpcap --file-prefix='$PREFIX' -D 2>&1 | grep -q af_packet"
W="$MG_TMP/wan.pcapng" L="$MG_TMP/lan.pcapng"
mg_check "dpdk-dumpcap captures 10 packets on the WAN port" capture 0 "$W" 10
mg_check "pcapng file written" test -s "$W"
echo "---- $W"
tcpdump -n -r "$W" 2>/dev/null | head -n 4 | sed 's/^/    /'
n=$(npkts "$W")
# dumpcap stops after the burst that reaches -c: at least that many.
mg_check "WAN capture holds >= 10 packets ($n)" test "$n" -ge 10
n=$(npkts "$W" udp port 51820)
mg_check "WAN capture is WireGuard on UDP 51820 ($n)" test "$n" -ge 1
mg_check "dpdk-dumpcap captures 10 packets on the LAN port" capture 1 "$L" 10
n=$(npkts "$L")
mg_check "LAN capture holds >= 10 packets ($n)" test "$n" -ge 10
n=$(npkts "$L" icmp)
mg_check "LAN capture holds the plaintext ICMP ($n)" test "$n" -ge 1
mg_check "tunnel still forwards after the captures" mg_ping peer 10.88.0.1 5
mg_check "dataplane still running" kill -0 "$MG_DP_PID"

mg_pass "telemetry answers; dpdk-dumpcap captures from the running dataplane"
