#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# End-to-end throughput through real ports: the same iperf3 TCP load in the
# same namespace topology (mg_topo.sh), with two different gateways:
#
#   meshgate     ns gw runs meshgate-dataplane (net_af_packet ports on wan0
#                and lan0, worker on lcore 1, main lcore 0) + meshgate-control
#   meshgate, idle_sleep_us = 50
#                the same, the worker sleeping 50 us between polls once idle
#                (dataplane.idle_sleep_us): on this machine's two cores the
#                gateway then leaves CPU to the rest between bursts
#   wireguard-go ns gw runs wireguard-go, the kernel forwarding between wan0,
#                lan0 and the wireguard-go tun device; same addresses (wan0
#                198.18.0.1/24, lan0 10.88.0.254/24), same bridge, same peer
#                namespace (wireguard-go, 10.99.0.2) and same LAN host
#                (10.88.0.1), same veth offload settings (all off)
#
# For each gateway: one iperf3 TCP run LAN host -> peer and one peer -> LAN
# host (inner IPv4, -O 1: the first second is not counted), SECONDS each.
# Prints a markdown table and writes JSON.
#
# Not a test (not named test_*.sh: scripts/test does not run it); scripts/bench
# runs it.
#
# Usage: tests/netns/e2e_bench.sh [--quick] [--seconds N] [--json FILE]
#                                 [--log-dir DIR]
#   --seconds N   seconds per iperf3 run (default 10; --quick: 3)
#   --json FILE   write the results there
#   --log-dir DIR keep each gateway's run log there (default: a temp dir,
#                 removed unless a run fails)
# Exit: 0 both gateways measured, 1 a run failed, 77 not root / tools missing.
#
# Internal: e2e_bench.sh --phase meshgate|meshgate-sleep|wireguard-go --seconds N
#   --result F
# runs one gateway's half with its own run id and cleanup (lib.sh).
set -u
# Setup steps wait up to MG_WAIT s (lib.sh); a loaded machine needs more
# than the tests' 10 s to start a DPDK process.
MG_WAIT=${MG_WAIT:-30}
SLEEP_US=50 # the meshgate-sleep gateway's dataplane.idle_sleep_us
# shellcheck source=tests/netns/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/netns/mg_topo.sh
. "$(dirname "$0")/mg_topo.sh"

secs=
quick=0
json=
phase=
result=
logdir=
while [ $# -gt 0 ]; do
	case $1 in
	--quick) quick=1 ;;
	--seconds) secs=${2:?}; shift ;;
	--json) json=${2:?}; shift ;;
	--log-dir) logdir=${2:?}; shift ;;
	--phase) phase=${2:?}; shift ;;
	--result) result=${2:?}; shift ;;
	-h | --help) sed -n '4,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "e2e_bench: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done
[ -n "$secs" ] || { [ "$quick" -eq 1 ] && secs=3 || secs=10; }
case $secs in '' | *[!0-9]* | 0) echo "e2e_bench: --seconds needs a positive integer" >&2; exit 2 ;; esac

# Per-packet logging would cost the same on both sides, but keep it quiet.
export MG_WG_LOG_LEVEL=${MG_WG_LOG_LEVEL:-error}

# ------------------------------------------------------------ one gateway

# The wireguard-go "gateway": mg_topo_up's shape with wireguard-go and the
# kernel's forwarding in ns gw instead of meshgate.
wggo_topo_up() {
	mg_require wireguard-go wg iperf3 ping ethtool python3
	MGN=$(mg_ifname g) || mg_fail "name"
	mg_topo_base
	mg_addr gw wan0 198.18.0.1/24
	mg_addr gw lan0 10.88.0.254/24
	mg_addr gw lan0 fd88::fe/64
	mg_exec gw sysctl -qw net.ipv4.ip_forward=1 || mg_fail "ip_forward"
	mg_exec gw sysctl -qw net.ipv6.conf.all.forwarding=1 || mg_fail "ipv6 forwarding"
	mg_wggo_start gw "$MGN" "$MG_TMP/gw.key" 51820
	mg_exec gw wg set "$MGN" peer "$PEER_PUB" endpoint 198.18.0.2:51820 \
		allowed-ips 10.99.0.2/32,fd99::2/128 || mg_fail "wg set peer on gw"
	mg_ip gw route add 10.99.0.2/32 dev "$MGN" || mg_fail "route on gw"
	mg_ip gw -6 route add fd99::2/128 dev "$MGN" || mg_fail "route6 on gw"
	WGP=$(mg_topo_add_peer peer p 2 "$MG_TMP/peer.key") || mg_fail "peer"
}

# iperf_run NAME NS_SERVER SERVER_IP NS_CLIENT : one run; appends a JSON
# member "NAME": {...} to $MG_TMP/rows.
iperf_run() {
	local name=$1 out="$MG_TMP/iperf.out"
	# Not in a subshell: mg_iperf numbers its JSON files.
	mg_iperf "$2" "$3" "$4" "$secs" -O 1 >"$out" || {
		tail -n 20 "$MG_LOG_DIR/iperf-$_MG_IPERF_N.json" 2>/dev/null
		mg_fail "iperf3 $4 -> $2 ($3)"
	}
	echo "iperf3 $name: $(cat "$out") Gbit/s"
	python3 - "$MG_LOG_DIR/iperf-$_MG_IPERF_N.json" "$name" >>"$MG_TMP/rows" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
end = d["end"]
rx, tx = end.get("sum_received", {}), end.get("sum_sent", {})
cpu = end.get("cpu_utilization_percent", {})
print(json.dumps({sys.argv[2]: {
    "gbps": round(rx["bits_per_second"] / 1e9, 3),
    "bytes": rx.get("bytes"),
    "seconds": round(rx.get("seconds", 0), 2),
    "retransmits": tx.get("retransmits"),
    "client_cpu_percent": round(cpu.get("host_total", 0), 1),
    "server_cpu_percent": round(cpu.get("remote_total", 0), 1),
}}))
EOF
}

run_phase() {
	mg_test_init
	: >"$MG_TMP/rows"
	case $phase in
	meshgate) mg_topo_up "" ;;
	meshgate-sleep) MG_DP_EXTRA="idle_sleep_us = $SLEEP_US;" mg_topo_up "" ;;
	wireguard-go) wggo_topo_up ;;
	*) echo "e2e_bench: unknown phase $phase" >&2; exit 2 ;;
	esac
	echo "gateway: $phase (ns $(mg_ns gw)); peer: wireguard-go $WGP"
	# The gateway initiates on the LAN host's first packet; on a loaded
	# machine the handshake can take a while: retry for up to MG_WAIT s.
	mg_check "LAN host -> peer (tunnel up)" mg_wait_for mg_ping lan 10.99.0.2 1
	mg_check "LAN host -> peer" mg_ping lan 10.99.0.2 3
	mg_check "peer -> LAN host" mg_ping peer 10.88.0.1 3
	iperf_run lan_to_peer peer 10.99.0.2 lan
	iperf_run peer_to_lan lan 10.88.0.1 peer
	if [ "$phase" != wireguard-go ]; then
		"$MG_CLI_BIN" stats "$MGN" | grep -v '^drop .* 0$'
	else
		mg_exec gw wg show "$MGN"
	fi
	python3 - "$MG_TMP/rows" "$phase" "$secs" >"$result" <<'EOF' || mg_fail "result"
import json, sys
rows = {}
for line in open(sys.argv[1]):
    rows.update(json.loads(line))
json.dump({"gateway": sys.argv[2], "seconds": int(sys.argv[3]), **rows}, sys.stdout)
EOF
	mg_pass "$phase: $(tr '\n' ' ' <"$MG_TMP/rows")"
}

if [ -n "$phase" ]; then
	[ -n "$result" ] || { echo "e2e_bench: --phase needs --result" >&2; exit 2; }
	run_phase
fi

# ------------------------------------------------------------ both, compared

if [ "$(id -u)" -ne 0 ]; then
	echo "e2e_bench: needs root (network namespaces)" >&2
	exit 77
fi
mg_require wireguard-go wg iperf3 ping ethtool python3 ss timeout
if [ ! -x "$MG_DP_BIN" ] || [ ! -x "$MG_CP_BIN" ]; then
	echo "e2e_bench: meshgate not built in $MG_BUILD" >&2
	exit 1
fi

keep_logs=1
if [ -z "$logdir" ]; then
	logdir=$(mktemp -d /tmp/mg-e2e.XXXXXX) || exit 1
	keep_logs=0
fi
mkdir -p "$logdir" || exit 1

child=
# shellcheck disable=SC2317 # a trap
on_signal() {
	[ -n "$child" ] && kill -TERM "$child" 2>/dev/null && wait "$child" 2>/dev/null
	echo "e2e_bench: interrupted" >&2
	exit "$1"
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

# Setup and the tunnel (a few bounded waits of MG_WAIT s), pings, two runs of
# secs + 1 s (+ the iperf3 timeouts' slack).
limit=$(( 2 * secs + 6 * MG_WAIT + 120 ))
failed=0
for p in meshgate meshgate-sleep wireguard-go; do
	res="$logdir/e2e-$p.json"
	rm -f "$res"
	echo "e2e: $p gateway, 2 x ${secs} s of iperf3 ..." >&2
	env -u MG_ID timeout -k 10 "$limit" bash "$0" --phase "$p" --seconds "$secs" \
		--result "$res" >"$logdir/e2e-$p.log" 2>&1 </dev/null &
	child=$!
	rc=0
	wait "$child" || rc=$?
	child=
	if [ "$rc" -ne 0 ] || [ ! -s "$res" ]; then
		[ "$rc" -eq 124 ] && why="timed out after $limit s" || why="exit $rc"
		echo "e2e: $p run FAILED ($why); log $logdir/e2e-$p.log:" >&2
		tail -n 40 "$logdir/e2e-$p.log" | sed 's/^/    | /' >&2
		rm -f "$res"
		failed=1
		keep_logs=1
	fi
done

python3 - "$logdir" "$secs" "$(nproc)" "${json:-}" "$SLEEP_US" <<'EOF'
import json, os, sys
logdir, secs, ncpu, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
sleep_us = int(sys.argv[5])
gws = [("meshgate", "meshgate -> wireguard-go"),
       ("meshgate-sleep", "meshgate (idle_sleep_us = %d) -> wireguard-go" % sleep_us),
       ("wireguard-go", "wireguard-go -> wireguard-go")]
res = {}
for g, _ in gws:
    try:
        res[g] = json.load(open(os.path.join(logdir, "e2e-%s.json" % g)))
    except Exception:
        res[g] = None
dirs = [("lan_to_peer", "LAN host -> peer (10.99.0.2)"),
        ("peer_to_lan", "peer -> LAN host (10.88.0.1)")]
note = ("All processes (iperf3 client and server, the wireguard-go peer, the gateway, "
        "the kernel's veth/bridge work) share this machine's %d cores; the meshgate "
        "dataplane's worker busy-polls lcore 1 the whole time (first column) or sleeps "
        "%d us between polls once it found nothing 64 times in a row (second column). "
        "The peer is wireguard-go in every column, so it bounds the rate: these numbers "
        "compare gateways under a shared, peer-limited load, not meshgate's line rate. "
        "Runs are seconds apart on a shared machine: differences of 10-20%% between "
        "runs are noise." % (ncpu, sleep_us))
print("### iperf3 TCP through the gateway: meshgate vs wireguard-go\n")
print("Same topology (tests/netns/mg_topo.sh: peer ns -- bridge -- gateway ns -- LAN ns, "
      "veth offloads off), inner IPv4, one TCP stream, %d s per run (+1 s omitted), "
      "receiver's Gbit/s; gateway = meshgate (DPDK net_af_packet ports) vs wireguard-go "
      "(kernel forwarding + wireguard-go tun).\n" % secs)
print("| direction | " + " | ".join(label for _, label in gws) + " |")
print("|---|" + "---:|" * len(gws))
def cell(g, d):
    r = res[g]
    if r is None or d not in r:
        return "failed"
    x = r[d]
    return "%.2f Gbit/s (%s retr)" % (x["gbps"], x.get("retransmits"))
for d, label in dirs:
    print("| %s | %s |" % (label, " | ".join(cell(g, d) for g, _ in gws)))
for g, name in (("meshgate", "meshgate"),
                ("meshgate-sleep", "meshgate (idle_sleep_us = %d)" % sleep_us)):
    ratios = []
    for d, label in dirs:
        a, b = res[g], res["wireguard-go"]
        if a and b and d in a and d in b and b[d]["gbps"] > 0:
            ratios.append("%s %.2fx" % (label.split(" (")[0], a[d]["gbps"] / b[d]["gbps"]))
    if ratios:
        print("\n%s / wireguard-go gateway: %s" % (name, ", ".join(ratios)))
print("\nNote: " + note)
if out:
    with open(out, "w") as f:
        json.dump({"seconds": secs, "cpus": ncpu, "protocol": "iperf3 TCP, 1 stream, inner IPv4",
                   "note": note, "gateways": res}, f, indent=1)
        f.write("\n")
EOF

if [ "$keep_logs" -eq 0 ]; then
	rm -rf "$logdir"
else
	echo "e2e: logs in $logdir" >&2
fi
exit "$failed"
