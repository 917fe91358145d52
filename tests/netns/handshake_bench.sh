#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Handshakes against a running gateway (topology: mg_topo.sh, the real
# meshgate-dataplane and meshgate-control), while an established wireguard-go
# peer keeps pinging the LAN host through it. Not a test (scripts/test does
# not run it); scripts/bench runs it. Two tables:
#
# 1. Responder capacity. meshgate-hsload plays HS_PEERS initiators the
#    gateway knows (added with `wg addconf`) and sends real initiations (fresh
#    ephemeral, new timestamp, valid MAC1) at paced rates, HS_SECONDS per
#    rate. Per rate: the responses that came back per second (each one a
#    handshake the control process completed and installed into the
#    dataplane; a sample of them is completed on the initiator's side with
#    matching keys), the cookie replies (sent instead of a response once
#    the backlog says the control process is behind), the control process's
#    CPU seconds in the window and so handshakes per CPU-second (the rate
#    one core gives), punts lost at a full ring, and the established peer's
#    ping loss in the window.
#
# 2. Floods from an attacker namespace (meshgate-hsflood: initiations from
#    unknown keys with a valid MAC1, FLOOD_RATE per second, several times
#    what the control process can answer with Diffie-Hellman work, so that
#    it must fall back to cookies; a flood as fast as the load generator can
#    send would starve the established peer's wireguard-go of the shared
#    core before it reached the gateway), phases of FLOOD_SECONDS: no flood (the
#    reference), a MAC1 flood that ignores cookies, and one that answers
#    cookies (MAC2 valid, one source: the rate limiter holds it). Per phase:
#    the offered rate, what the control process saw and did, punt-ring
#    losses, and the established peer's iperf3 throughput and ping loss.
#    Then a new legitimate peer's first handshake in the middle of a MAC1
#    flood (it proves its address with the cookie and gets through).
#
# All of it shares the machine's two cores: the dataplane's worker polls one
# of them; the control process, the load generator and the kernel share the
# other. So a wall-clock rate says what a gateway on this machine does; the
# per-CPU-second figure says what one core of the control process gives.
#
# Usage: tests/netns/handshake_bench.sh [--quick] [--json FILE]
# Env: HS_RATES (default 2500,5000,10000,20000,40000), HS_SECONDS (3),
#      HS_PEERS (8192), FLOOD_SECONDS (8), FLOOD_RATE (50000).
# Exit: 0 measured, 1 a step failed, 77 not root / tools missing.
set -u
MG_WAIT=${MG_WAIT:-30}
# shellcheck source=tests/netns/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/netns/mg_topo.sh
. "$(dirname "$0")/mg_topo.sh"

json=
quick=0
while [ $# -gt 0 ]; do
	case $1 in
	--quick) quick=1 ;;
	--json) json=${2:?}; shift ;;
	-h | --help) sed -n '4,42p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "handshake_bench: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
if [ "$quick" -eq 1 ]; then
	HS_RATES=${HS_RATES:-5000,20000}; HS_SECONDS=${HS_SECONDS:-2}; FLOOD_SECONDS=${FLOOD_SECONDS:-4}
fi
HS_RATES=${HS_RATES:-2500,5000,10000,20000,40000}
HS_SECONDS=${HS_SECONDS:-3}
HS_PEERS=${HS_PEERS:-8192}
FLOOD_SECONDS=${FLOOD_SECONDS:-8}
FLOOD_RATE=${FLOOD_RATE:-50000}
for v in HS_SECONDS HS_PEERS FLOOD_SECONDS FLOOD_RATE; do
	case ${!v} in '' | *[!0-9]* | 0) echo "handshake_bench: $v must be a positive integer" >&2; exit 2 ;; esac
done
case $HS_RATES in '' | *[!0-9,]*) echo "handshake_bench: HS_RATES: rates separated by commas" >&2; exit 2 ;; esac
export MG_WG_LOG_LEVEL=${MG_WG_LOG_LEVEL:-error}

LOAD_BIN="$MG_BUILD/wg/meshgate-hsload"
FLOOD_BIN="$MG_BUILD/wg/meshgate-hsflood"
for b in "$LOAD_BIN" "$FLOOD_BIN"; do
	[ -x "$b" ] || { echo "handshake_bench: $b not built" >&2; exit 1; }
done
mg_test_init
MPORT=$(( 20000 + $$ % 20000 ))
# The gateway logs each handshake at debug only; warnings are enough here.
# The dataplane's tables grow with max_peers (its allowed-IPs LPM most).
eal_mb=2048
[ "$HS_PEERS" -gt 16384 ] && eal_mb=4096
MG_LOG_LEVEL=warn MG_MAX_PEERS=$(( HS_PEERS + 64 )) MG_EAL_MB=$eal_mb \
	mg_topo_up "control: { metrics_listen = \"127.0.0.1:$MPORT\"; };"
URL="http://127.0.0.1:$MPORT/metrics"

mg_check "tunnel up" mg_wait_for mg_ping peer 10.88.0.1 1
mg_ns_setup atk
mg_veth atk veth0 sw patk
mg_ip sw link set patk master br0
_mg_offloads_off atk veth0
_mg_offloads_off sw patk
mg_addr atk veth0 198.18.0.66/24

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

# ---------------------------------------------------------------- capacity

SEED=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
"$LOAD_BIN" config --peers "$HS_PEERS" --seed "$SEED" >"$MG_TMP/load.conf" ||
	mg_fail "hsload config"
t0=$SECONDS
wg addconf "$MGN" "$MG_TMP/load.conf" || mg_fail "wg addconf of $HS_PEERS peers"
echo "gateway: $HS_PEERS initiators added with wg addconf in $(( SECONDS - t0 )) s"
n=$(wg show "$MGN" peers | wc -l)
[ "$n" -ge "$HS_PEERS" ] || mg_fail "the gateway lists $n peers, not $HS_PEERS"

# The established peer pings through all of it; -D -O: timestamps, and a
# line for every probe that got no answer in time.
mg_bg "ping-capacity" peer ping -D -O -n -i 0.05 -W 1 10.88.0.1
ping_pid=$MG_LAST_PID
sleep 1
: >"$MG_TMP/cap.rows"
IFS=, read -r -a rates <<<"$HS_RATES"
for r in "${rates[@]}"; do
	counters "$MG_TMP/c0" || mg_fail "metrics"
	mg_exec atk "$LOAD_BIN" run --peers "$HS_PEERS" --seed "$SEED" --rate "$r" \
		--seconds "$HS_SECONDS" --cpu-pid "$MG_CP_PID" 198.18.0.1 51820 "$GW_PUB" \
		>"$MG_TMP/load.out" 2>"$MG_LOG_DIR/hsload-$r.log" || mg_fail "hsload at $r/s"
	counters "$MG_TMP/c1" || mg_fail "metrics"
	python3 - "$MG_TMP/load.out" "$MG_TMP/c0" "$MG_TMP/c1" >>"$MG_TMP/cap.rows" <<'EOF' ||
import json, sys
row = json.loads(open(sys.argv[1]).read().splitlines()[-1])
def load(f):
    return {k: float(v or 0) for k, v in (l.split() for l in open(f))}
a, b = load(sys.argv[2]), load(sys.argv[3])
row["control"] = {k: b[k] - a.get(k, 0) for k in b}
print(json.dumps(row))
EOF
		mg_fail "row"
	echo "rate $r/s: $(tail -n 1 "$MG_TMP/cap.rows")"
	sleep 1.5 # the load flag clears one second after the backlog does
done
kill "$ping_pid" 2>/dev/null
wait "$ping_pid" 2>/dev/null

# ---------------------------------------------------------------- floods

mg_keygen "$MG_TMP" new
NEW_PUB=$(cat "$MG_TMP/new.pub")
NEWP=$(mg_topo_add_peer newp n 3 "$MG_TMP/new.key") || mg_fail "new peer"
: "$NEWP"
wg set "$MGN" peer "$NEW_PUB" endpoint 198.18.0.3:51820 allowed-ips 10.99.0.3/32 ||
	mg_fail "gateway: add the new peer"

# phase NAME none|--mac1|--cookies : FLOOD_SECONDS of iperf3 peer -> LAN host
# and ping, with the flood running across all of it.
phase() {
	local name=$1 flood_pid=
	counters "$MG_TMP/c0" || mg_fail "metrics"
	local t0=$SECONDS
	if [ "$2" != none ]; then
		local opt=(--rate "$FLOOD_RATE")
		[ "$2" = --cookies ] && opt+=(--cookies)
		mg_bg "flood-$name" atk "$FLOOD_BIN" "${opt[@]}" 198.18.0.1 51820 "$GW_PUB" 100000000 \
			$(( FLOOD_SECONDS + 3 ))
		flood_pid=$MG_LAST_PID
		sleep 1
	fi
	mg_bg "ping-$name" peer ping -q -n -i 0.2 -W 1 -c $(( FLOOD_SECONDS * 5 )) 10.88.0.1
	local ping_pid=$MG_LAST_PID gbps loss
	gbps=$(mg_iperf lan 10.88.0.1 peer "$FLOOD_SECONDS" -O 1) || gbps=failed
	wait "$ping_pid"
	loss=$(grep -o '[0-9.]*% packet loss' "$MG_LOG_DIR/ping-$name.log" | cut -d% -f1)
	[ -n "$flood_pid" ] && wait "$flood_pid"
	local dt=$(( SECONDS - t0 ))
	counters "$MG_TMP/c1" || mg_fail "metrics"
	local sent=0 fsecs=$dt
	if [ -n "$flood_pid" ]; then
		read -r _ sent _ _ _ fsecs <"$MG_LOG_DIR/flood-$name.log" || mg_fail "flood output"
	fi
	python3 - "$MG_TMP/c0" "$MG_TMP/c1" "$name" "$sent" "$fsecs" "$dt" "$gbps" \
		"${loss:-100}" >>"$MG_TMP/flood.rows" <<'EOF' || mg_fail "row"
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
	echo "phase '$name' done: $(tail -n 1 "$MG_TMP/flood.rows")"
}

: >"$MG_TMP/flood.rows"
phase "no flood" none
phase "flood, MAC1 only" --mac1
phase "flood, cookies answered" --cookies

# A new peer's first handshake in the middle of a MAC1 flood.
mg_bg "flood-new" atk "$FLOOD_BIN" --rate "$FLOOD_RATE" 198.18.0.1 51820 "$GW_PUB" 100000000 \
	$(( 25 + 3 ))
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

# ---------------------------------------------------------------- report

python3 - "$MG_TMP/cap.rows" "$MG_LOG_DIR/ping-capacity.log" "$MG_TMP/flood.rows" \
	"$HS_PEERS" "$HS_SECONDS" "$FLOOD_SECONDS" "$new_ok" "$new_s" "${json:-/dev/null}" \
	"$FLOOD_RATE" <<'EOF' ||
import json, re, sys
cap_f, ping_f, flood_f = sys.argv[1:4]
peers, hs_secs, fl_secs = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
new_ok, new_s, out = sys.argv[7] == "1", float(sys.argv[8]), sys.argv[9]
fl_rate = float(sys.argv[10])
cap = [json.loads(l) for l in open(cap_f)]
flood = [json.loads(l) for l in open(flood_f)]

# ping -D -O: "[ts] 64 bytes from ...: icmp_seq=N ... time=X ms" and
# "[ts] no answer yet for icmp_seq=N".
sent_at, answered, rtt = {}, set(), {}
for l in open(ping_f):
    m = re.match(r"\[([\d.]+)\] .*icmp_seq=(\d+)", l)
    if not m:
        continue
    ts, seq = float(m.group(1)), int(m.group(2))
    sent_at.setdefault(seq, ts)
    if "no answer yet" not in l:
        answered.add(seq)
        t = re.search(r"time=([\d.]+) ms", l)
        if t:
            rtt[seq] = float(t.group(1))
for r in cap:
    seqs = [s for s, ts in sent_at.items() if r["t0"] <= ts <= r["t1"]]
    lost = [s for s in seqs if s not in answered]
    rt = sorted(rtt[s] for s in seqs if s in rtt)
    r["ping"] = {"probes": len(seqs), "lost": len(lost),
                 "rtt_max_ms": rt[-1] if rt else None,
                 "rtt_p50_ms": rt[len(rt) // 2] if rt else None}
    c = r["cpu_seconds"]
    r["handshakes_per_cpu_second"] = r["responses"] / c if c and c > 0 else None

def f(v, fmt="{:,.0f}"):
    return "-" if v is None else fmt.format(v)
print("\n### Responder capacity: real handshakes from %d known initiators, %d s per rate\n"
      % (peers, hs_secs))
print("| offered /s | sent /s | responses /s | cookie replies /s | sampled responses "
      "completing | control CPU s | handshakes per control CPU-s | lost at full punt ring "
      "| established peer: ping lost / probes, p50 / max RTT ms |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for r in cap:
    p = r["ping"]
    print("| %s | %s | %s | %s | %d / %d | %s | %s | %s | %d / %d, %s / %s |" % (
        f(r["rate"]), f(r["sent_per_s"]), f(r["responses_per_s"]), f(r["cookies_per_s"]),
        r["sampled_completed"], r["sampled"], f(r["cpu_seconds"], "{:.2f}"),
        f(r["handshakes_per_cpu_second"]), f(r["control"]["punt_full"]),
        p["lost"], p["probes"], f(p["rtt_p50_ms"], "{:.2f}"), f(p["rtt_max_ms"], "{:.1f}")))
best = max((r for r in cap if r["handshakes_per_cpu_second"]),
           key=lambda r: r["responses_per_s"], default=None)
if best:
    print("\nMost handshakes completed: %s/s (offered %s/s), %s per CPU-second of the "
          "control process." % (f(best["responses_per_s"]), f(best["rate"]),
                                f(best["handshakes_per_cpu_second"])))

print("\n### Handshake floods against the gateway (%d s per phase, %s initiations/s from "
      "unknown keys)\n" % (fl_secs, f(fl_rate)))
print("| phase | flood offered /s | initiations at control /s | cookie replies /s | "
      "refused by Noise /s | lost at full punt ring /s | established peer Gbit/s | ping loss |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for r in flood:
    print("| %s | %s | %s | %s | %s | %s | %s | %s%% |" % (
        r["phase"], f(r["flood_per_s"]) if r["flood_sent"] else "-",
        f(r["control_initiations_per_s"]), f(r["cookie_replies_per_s"]),
        f(r["rejected_per_s"]), f(r["punt_ring_full_per_s"]),
        f(r["established_gbps"], "{:.2f}"), f(r["established_ping_loss_pct"], "{:.0f}")))
print("\nPing loss here is measured beside the iperf3 transfer that fills the tunnel: the "
      "no-flood row is what the transfer alone costs.")
print("\nA new peer's first handshake during a MAC1 flood: %s" %
      ("completed after %.1f s (cookie, then MAC2)" % new_s if new_ok else
       "did NOT complete within %.0f s" % new_s))
json.dump({"capacity": {"peers": peers, "seconds": hs_secs, "rates": cap},
           "floods": {"seconds": fl_secs, "rate": fl_rate, "phases": flood},
           "new_peer_under_flood": {"completed": new_ok, "seconds": new_s}},
          open(out, "w"), indent=1)
EOF
	mg_fail "report"
mg_pass "handshake bench"
