#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Handshake flood against a meshgate gateway (topology: mg_topo.sh), while
# an established wireguard-go peer moves TCP through it. An attacker
# namespace on the WAN bridge runs meshgate-hsflood: initiations with a
# valid MAC1 from unknown keys, as fast as its socket takes them. Phases,
# SECONDS each:
#
#   no flood          the established peer's iperf3 alone (the reference)
#   flood, MAC1 only  the attacker ignores cookie replies: the control
#                     process sees the backlog and answers with cookies
#                     instead of doing Diffie-Hellman work
#   flood, cookies    the attacker answers cookies (MAC2 valid, one source
#                     address): the per-source rate limiter holds it
#
# and, during a MAC1 flood, a new wireguard-go peer (one the gateway knows
# but never spoke to) must complete a handshake: it proves its address with
# the cookie and gets through. Per phase: the flood's offered rate, what the
# control process saw and did (its Prometheus counters), what the dataplane
# dropped at the full punt ring, and the established peer's throughput and
# ping loss.
#
# All of it shares the machine's two cores (the dataplane's worker polls one
# of them): the figures say what a gateway does with the capacity left to
# it, not what a dedicated control core would do. The responder's capacity
# on one core is meshgate-bench-handshake's.
#
# Not a test (scripts/test does not run it); scripts/bench runs it.
# Usage: tests/netns/flood_bench.sh [--seconds N] [--json FILE]
# Exit: 0 measured, 1 a step failed, 77 not root / tools missing.
set -u
MG_WAIT=${MG_WAIT:-30}
# shellcheck source=tests/netns/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/netns/mg_topo.sh
. "$(dirname "$0")/mg_topo.sh"

secs=8
json=
while [ $# -gt 0 ]; do
	case $1 in
	--seconds) secs=${2:?}; shift ;;
	--json) json=${2:?}; shift ;;
	-h | --help) sed -n '4,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "flood_bench: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
case $secs in '' | *[!0-9]* | 0) echo "flood_bench: --seconds needs a positive integer" >&2; exit 2 ;; esac
export MG_WG_LOG_LEVEL=${MG_WG_LOG_LEVEL:-error}

FLOOD_BIN="$MG_BUILD/wg/meshgate-hsflood"
[ -x "$FLOOD_BIN" ] || { echo "flood_bench: $FLOOD_BIN not built" >&2; exit 1; }
mg_test_init
MPORT=$(( 20000 + $$ % 20000 ))
mg_topo_up "control: { metrics_listen = \"127.0.0.1:$MPORT\"; };"
URL="http://127.0.0.1:$MPORT/metrics"

mg_check "tunnel up" mg_wait_for mg_ping peer 10.88.0.1 1
mg_ns_setup atk
mg_veth atk veth0 sw patk
mg_ip sw link set patk master br0
_mg_offloads_off atk veth0
mg_addr atk veth0 198.18.0.66/24

# The second legitimate peer: known to the gateway, silent until asked.
mg_keygen "$MG_TMP" new
NEW_PUB=$(cat "$MG_TMP/new.pub")
NEWP=$(mg_topo_add_peer newp n 3 "$MG_TMP/new.key") || mg_fail "new peer"
wg set "$MGN" peer "$NEW_PUB" endpoint 198.18.0.3:51820 allowed-ips 10.99.0.3/32 ||
	mg_fail "gateway: add the new peer"

# counters FILE : control's handshake counters and the dataplane's punt drops.
counters() {
	local page="$MG_TMP/metrics.page"
	mg_exec gw curl -sS -f --max-time 5 -o "$page" "$URL" || return 1
	awk '/^meshgate_handshake_initiations_received_total / { print "init", $2 }
	     /^meshgate_handshakes_rejected_total / { print "rejected", $2 }
	     /^meshgate_handshakes_completed_total / { print "completed", $2 }
	     /^meshgate_cookie_replies_sent_total / { print "cookies", $2 }' "$page" >"$1"
	echo "punt_full $(mg_drops punt_ring_full)" >>"$1"
}

# phase NAME FLOOD_ARGS... : SECONDS of iperf3 peer -> LAN host and ping,
# with the flood (unless FLOOD_ARGS is "none") running across all of it.
phase() {
	local name=$1; shift
	local flood_pid=
	counters "$MG_TMP/c0" || mg_fail "metrics"
	local t0=$SECONDS
	if [ "${1:-}" != none ]; then
		local opt=()
		[ "$1" = --cookies ] && opt=(--cookies)
		mg_bg "flood-$name" atk "$FLOOD_BIN" "${opt[@]}" 198.18.0.1 51820 "$GW_PUB" 100000000 \
			$(( secs + 3 ))
		flood_pid=$MG_LAST_PID
		sleep 1
	fi
	mg_bg "ping-$name" peer ping -q -n -i 0.2 -W 1 -c $(( secs * 5 )) 10.88.0.1
	local ping_pid=$MG_LAST_PID
	local gbps
	gbps=$(mg_iperf lan 10.88.0.1 peer "$secs" -O 1) || gbps=failed
	wait "$ping_pid"
	local loss
	loss=$(grep -o '[0-9.]*% packet loss' "$MG_LOG_DIR/ping-$name.log" | cut -d% -f1)
	if [ -n "$flood_pid" ]; then
		wait "$flood_pid"
	fi
	local dt=$(( SECONDS - t0 ))
	counters "$MG_TMP/c1" || mg_fail "metrics"
	local sent=0 fsecs=$dt
	if [ -n "$flood_pid" ]; then
		read -r _ sent _ _ _ fsecs <"$MG_LOG_DIR/flood-$name.log" || mg_fail "flood output"
	fi
	python3 - "$MG_TMP/c0" "$MG_TMP/c1" "$name" "$sent" "$fsecs" "$dt" "${gbps}" \
		"${loss:-100}" >>"$MG_TMP/rows" <<'EOF' || mg_fail "row"
import json, sys
def load(f):
    return {k: float(v or 0) for k, v in (l.split() for l in open(f))}
a, b = load(sys.argv[1]), load(sys.argv[2])
name, sent, fsecs, dt = sys.argv[3], float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
d = {k: b[k] - a.get(k, 0) for k in b}
gbps = None if sys.argv[7] == "failed" else float(sys.argv[7])
print(json.dumps({"phase": name, "window_s": dt,
    "flood_sent": sent, "flood_per_s": sent / fsecs if sent else 0,
    "control_initiations_per_s": d["init"] / dt, "cookie_replies_per_s": d["cookies"] / dt,
    "rejected_per_s": d["rejected"] / dt, "completed": d["completed"],
    "punt_ring_full_per_s": d["punt_full"] / dt,
    "established_gbps": gbps, "established_ping_loss_pct": float(sys.argv[8])}))
EOF
	echo "phase '$name' done: $(tail -n 1 "$MG_TMP/rows")"
}

: >"$MG_TMP/rows"
phase "no flood" none
phase "flood, MAC1 only" --mac1
phase "flood, cookies answered" --cookies

# A new peer's first handshake in the middle of a MAC1 flood.
mg_bg "flood-new" atk "$FLOOD_BIN" 198.18.0.1 51820 "$GW_PUB" 100000000 $(( 25 + 3 ))
flood_pid=$MG_LAST_PID
sleep 2
t0=$(date +%s.%N)
new_ok=0
if MG_WAIT=25 mg_wait_for mg_ping newp 10.88.0.1 1; then
	new_ok=1
fi
t1=$(date +%s.%N)
kill "$flood_pid" 2>/dev/null
wait "$flood_pid" 2>/dev/null
new_s=$(python3 -c "print(round($t1 - $t0, 2))")
echo "new peer under flood: ok=$new_ok after $new_s s"

python3 - "$MG_TMP/rows" "$secs" "$new_ok" "$new_s" "${json:-/dev/null}" <<'EOF' || mg_fail "report"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
secs, new_ok, new_s = int(sys.argv[2]), sys.argv[3] == "1", float(sys.argv[4])
def f(v, fmt="{:,.0f}"):
    return "-" if v is None else fmt.format(v)
print("\n### Handshake flood against the gateway (%d s per phase; everything shares 2 cores)\n" % secs)
print("| phase | flood offered /s | initiations at control /s | cookie replies /s | "
      "refused by Noise /s | lost at full punt ring /s | established peer Gbit/s | ping loss |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    print("| %s | %s | %s | %s | %s | %s | %s | %s%% |" % (
        r["phase"], f(r["flood_per_s"]) if r["flood_sent"] else "-",
        f(r["control_initiations_per_s"]), f(r["cookie_replies_per_s"]),
        f(r["rejected_per_s"]), f(r["punt_ring_full_per_s"]),
        f(r["established_gbps"], "{:.2f}"), f(r["established_ping_loss_pct"], "{:.0f}")))
print("\nA new peer's first handshake during a MAC1 flood: %s" %
      ("completed after %.1f s (cookie, then MAC2)" % new_s if new_ok else
       "did NOT complete within %.0f s" % new_s))
json.dump({"seconds": secs, "phases": rows,
           "new_peer_under_flood": {"completed": new_ok, "seconds": new_s}},
          open(sys.argv[5], "w"), indent=1)
EOF
mg_pass "flood bench"
