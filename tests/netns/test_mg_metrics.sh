#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# shellcheck disable=SC2317 # functions run through mg_check
#
# Prometheus metrics of meshgate-control (control.metrics_listen), against a
# stock wireguard-go peer (topology in mg_topo.sh):
#  1. /metrics answers, the dataplane is up, the page passes
#     `promtool check metrics` (SKIP at the end if promtool is missing);
#  2. after a known number of pings each way, the peer's packet and byte
#     counters cover them and agree with `meshgate stats`, the handshake
#     counters show the gateway's initiation, every drop reason is there;
#  3. HTTP: 404 off /metrics, 405 for POST, HEAD works;
#  4. with the dataplane gone the page still parses and says so.
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mg_topo.sh"

PINGS=20
MPORT=9586

mg_test_init
mg_require curl awk
mg_topo_up "control: { metrics_listen = \"127.0.0.1:$MPORT\"; };"

URL="http://127.0.0.1:$MPORT/metrics"

fetch() { # FILE : the page into FILE
	mg_exec gw curl -sS -f --max-time 5 -o "$1" "$URL"
}

# value FILE SERIES : the value of the sample whose name{labels} is SERIES
value() {
	awk -v s="$2" 'substr($0, 1, length(s) + 1) == s " " { print $NF; found = 1 }
		END { exit !found }' "$1"
}

# MG_PROMTOOL="" pretends promtool is missing.
PROMTOOL=${MG_PROMTOOL-$(command -v promtool)}
promcheck() { # FILE
	[ -n "$PROMTOOL" ] || return 0
	"$PROMTOOL" check metrics <"$1"
}

M="$MG_TMP/metrics"
mg_check "GET /metrics answers" mg_wait_for fetch "$M.0"
mg_check "dataplane up" test "$(value "$M.0" meshgate_dataplane_up)" = 1
mg_check "one peer" test "$(value "$M.0" meshgate_peers)" = 1
if [ -n "$PROMTOOL" ]; then
	mg_check "promtool check metrics (idle)" promcheck "$M.0"
fi

# pings NS DST : PINGS echoes; prints how many were answered
pings() {
	local out
	out=$(mg_ping "$1" "$2" "$PINGS") || { echo "$out" >&2; return 1; }
	sed -n 's/.* \([0-9]\+\) received.*/\1/p' <<<"$out"
}
# The LAN host sends first: the gateway initiates the handshake. Each
# answered echo is one packet from the peer and one to it.
a1=$(pings lan 10.99.0.2) || mg_fail "LAN host -> peer: no answer"
a2=$(pings peer 10.88.0.1) || mg_fail "peer -> LAN host: no answer"
N=$((a1 + a2))
echo "LAN host -> peer: $a1 of $PINGS answered; peer -> LAN host: $a2 of $PINGS"
[ "$N" -lt $((2 * PINGS)) ] && echo "(echoes lost: a loaded machine; counts below use $N)"

S1="$MG_TMP/stats1.json" S2="$MG_TMP/stats2.json"
"$MG_CLI_BIN" stats "$MGN" --json >"$S1" || mg_fail "meshgate stats"
fetch "$M.1" || mg_fail "GET /metrics after traffic"
"$MG_CLI_BIN" stats "$MGN" --json >"$S2" || mg_fail "meshgate stats"
echo "---- /metrics after traffic (peer, handshake and port lines)"
grep -E '^meshgate_(in|out)bound|^meshgate_peer_|^meshgate_handshake|^meshgate_port_(rx|tx)_packets' \
	"$M.1" | sed 's/^/    /'

if [ -n "$PROMTOOL" ]; then
	mg_check "promtool check metrics (after traffic)" promcheck "$M.1"
fi

L="public_key=\"$PEER_PUB\",name=\"peer\""
inbound_packets=$(value "$M.1" "meshgate_inbound_packets_total{$L}") || mg_fail "no inbound packets"
inbound_bytes=$(value "$M.1" "meshgate_inbound_bytes_total{$L}") || mg_fail "no inbound bytes"
outbound_packets=$(value "$M.1" "meshgate_outbound_packets_total{$L}") || mg_fail "no outbound packets"
outbound_bytes=$(value "$M.1" "meshgate_outbound_bytes_total{$L}") || mg_fail "no outbound bytes"
# An echo of 84 bytes is padded to 96 and framed in 32 more (header, tag).
mg_check "inbound packets ($inbound_packets) >= $N" test "$inbound_packets" -ge "$N"
mg_check "outbound packets ($outbound_packets) >= $N" test "$outbound_packets" -ge "$N"
mg_check "inbound bytes ($inbound_bytes) >= $N x 128" test "$inbound_bytes" -ge $((N * 128))
mg_check "outbound bytes ($outbound_bytes) >= $N x 128" test "$outbound_bytes" -ge $((N * 128))

# Between two `meshgate stats` reads: the same counters, read the same way.
between() { # FIELD VALUE
	python3 - "$S1" "$S2" "$PEER_PUB" "$1" "$2" <<'EOF'
import json, sys
a, b, key, field, v = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
def get(path):
    for p in json.load(open(path))["peers"]:
        if p["public_key"] == key:
            return p[field]
    sys.exit("peer not in " + path)
lo, hi = get(a), get(b)
print("meshgate stats %s: %d .. %d, /metrics %d" % (field, lo, hi, v))
sys.exit(0 if lo <= v <= hi else 1)
EOF
}
mg_check "inbound packets agree with meshgate stats" between rx_packets "$inbound_packets"
mg_check "inbound bytes agree with meshgate stats" between rx_bytes "$inbound_bytes"
mg_check "outbound packets agree with meshgate stats" between tx_packets "$outbound_packets"
mg_check "outbound bytes agree with meshgate stats" between tx_bytes "$outbound_bytes"

hs=$(value "$M.1" "meshgate_peer_last_handshake_timestamp_seconds{$L}") ||
	mg_fail "no last handshake sample"
now=$(date +%s)
mg_check "last handshake ($hs) within the last 2 minutes" \
	test "${hs%.*}" -ge $((now - 120)) -a "${hs%.*}" -le $((now + 5))
mg_check "handshake initiations sent >= 1" \
	test "$(value "$M.1" meshgate_handshake_initiations_sent_total)" -ge 1
mg_check "handshake responses received >= 1" \
	test "$(value "$M.1" meshgate_handshake_responses_received_total)" -ge 1
mg_check "handshakes completed >= 1" \
	test "$(value "$M.1" meshgate_handshakes_completed_total)" -ge 1

nreasons=$(grep -c '^meshgate_dropped_packets_total{reason="' "$M.1")
nstats=$(grep -c '^drop ' <("$MG_CLI_BIN" stats "$MGN"))
mg_check "all $nstats drop reasons present ($nreasons)" test "$nreasons" -eq "$nstats" -a "$nstats" -gt 0
mg_check "punt_ring_full drop counter" value "$M.1" 'meshgate_dropped_packets_total{reason="punt_ring_full"}'
mg_check "control->dataplane ring counter" \
	value "$M.1" 'meshgate_ring_full_total{ring="control_to_dataplane"}'
wan_rx=$(value "$M.1" 'meshgate_port_rx_packets_total{port="wan0",role="wan"}') ||
	mg_fail "no wan0 port counter"
mg_check "wan0 rx packets ($wan_rx) >= $N" test "$wan_rx" -ge "$N"

code() { # CURL ARGS... : the HTTP status
	mg_exec gw curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@"
}
mg_check "GET / is 404" test "$(code "http://127.0.0.1:$MPORT/")" = 404
mg_check "GET /metricsx is 404" test "$(code "http://127.0.0.1:$MPORT/metricsx")" = 404
mg_check "POST /metrics is 405" test "$(code -X POST --data-binary @"$M.1" "$URL")" = 405
mg_check "HEAD /metrics is 200" test "$(code -I "$URL")" = 200
mg_check "text format content type" bash -c \
	"ip netns exec $(mg_ns gw) curl -sS -I --max-time 5 '$URL' | grep -qi '^content-type: text/plain; version=0.0.4'"
mg_check "still serving after odd requests" fetch "$M.2"

# Without a dataplane the page still parses and says so.
kill "$MG_DP_PID"
wait "$MG_DP_PID" 2>/dev/null
down() {
	fetch "$M.3" && [ "$(value "$M.3" meshgate_dataplane_up)" = 0 ]
}
mg_check "dataplane_up 0 once the dataplane is gone" mg_wait_for down
if [ -n "$PROMTOOL" ]; then
	mg_check "promtool check metrics (dataplane down)" promcheck "$M.3"
fi
mg_check "control still running" kill -0 "$MG_CP_PID"

if [ -z "$PROMTOOL" ]; then
	echo "SKIP: promtool not installed (Debian package prometheus, scripts/install-deps);" \
		"every other check passed, the text format was not validated"
	exit 77
fi
mg_pass "metrics match the traffic and pass promtool"
