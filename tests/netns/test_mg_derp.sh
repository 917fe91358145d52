#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# shellcheck disable=SC2317 # functions run through mg_check
#
# DERP when UDP fails: two gateways behind two NATs whose firewalls drop
# every UDP datagram between the two sites (as networks that allow only
# TCP out do, or where both NATs map per destination), so no direct path
# exists; their tunnel runs through meshgate-derpd:
#
#  the two-NAT topology of nat_topo.sh, the NATs' forward chains dropping
#  (and counting) UDP to the other site.
#
# The control processes, meshgate-coord and meshgate-derpd (region 1, over
# TLS with a throwaway certificate the gateways trust, its DERP key pinned
# too) run in the root namespace: control reaches relays through the host's
# own stack (its management network), not the DPDK ports. gwA has the
# region in its own config (control.derp_regions, ca_file); gwB has none
# and takes it from the coordination server's DERP map (the server's
# derp_regions), trusting the certificate through control.derp_ca_file.
# The map names the relay derp.test: gwB's control process runs with its
# own /etc/hosts (a private mount namespace) where derp.test is ::1 first
# (nothing listens there) and then 127.0.0.1, so it resolves the name,
# falls back to the second address, and checks the certificate for the
# name. The map lists a region 2 first whose relay is down: gwB (no
# derp_home) starts there, and its latency probes move its home to region 1.
#  1. both gateways connect to their home relay (control log, /metrics
#     meshgate_derp_home_connected 1) and advertise 127.3.3.40:1; gwB
#     logs the regions as the server's and the move from region 2;
#  2. each one's netmap has the other at its NAT's outside address, with
#     home region 1;
#  3. LAN traffic starts a handshake: the direct initiation is dropped by
#     the firewall, the retry goes both ways and the relayed copy completes
#     it; the LAN hosts ping each other both ways;
#  4. relayed: each gateway's endpoint for the other is 127.3.3.40:1 (wg
#     show), both count relayed packets, the firewalls dropped the direct
#     attempts, and the relay's /metrics counts what it forwarded;
#  5. 200 pings each way through the relay lose nothing;
#  6. the relay restarts: both gateways reconnect and the tunnel carries
#     traffic again;
#  7. the firewalls let UDP through again: disco pings (and the peer's
#     call-me-maybe through the relay) find the direct path, both gateways
#     switch to the other NAT's outside address, and traffic stops going
#     through the relay.
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/coord_topo.sh"
. "$(dirname "$0")/nat_topo.sh"

DERPD_BIN="$MG_BUILD/derpd/meshgate-derpd"
MPORT_A=9593
MPORT_B=9594

mg_test_init
mg_require nft curl openssl
[ -x "$DERPD_BIN" ] || mg_fail "not built: $DERPD_BIN"
T0=$SECONDS

# ---- the relay, in the root namespace, over TLS (a throwaway certificate for
# 127.0.0.1 that the gateways trust through ca_file)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=derp \
	-addext subjectAltName=IP:127.0.0.1,DNS:derp.test -keyout "$MG_TMP/derp-tls.key" \
	-out "$MG_TMP/derp-tls.crt" >/dev/null 2>&1 || mg_fail "openssl: cannot make a certificate"
chmod 600 "$MG_TMP/derp-tls.key"
DERP_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
derp_start() {
	mg_bg derpd root "$DERPD_BIN" -l "127.0.0.1:$DERP_PORT" -k "$MG_TMP/derp.key" \
		--tls-cert "$MG_TMP/derp-tls.crt" --tls-key "$MG_TMP/derp-tls.key"
	DERP_PID=$MG_LAST_PID
	mg_wait_for bash -c "ss -Hltn 'sport = :$DERP_PORT' | grep -q ." ||
		mg_fail "meshgate-derpd did not start"
}
derp_start
mg_wait_for test -s "$MG_TMP/derp.key" || mg_fail "meshgate-derpd wrote no key"
DERP_PUB=$(wg pubkey <"$MG_TMP/derp.key") || mg_fail "relay public key"
# The server's DERP map, for gateways without their own: first a region 2
# whose relay is down (nothing listens on its port), then region 1. gwB has
# no derp_home, so it starts at the map's first region and its latency
# probes move it to region 1, the one that answers.
# Port 1 (tcpmux, a port only root may take): refused, with no free port
# picked and released for someone else to take meanwhile.
ss -Hltn 'sport = :1' | grep -q . && mg_fail "something listens on port 1"
# shellcheck disable=SC2034 # read by coord_up (coord_topo.sh)
COORD_EXTRA="derp_regions = ( { id = 2; server = \"127.0.0.1:1\"; },
  { id = 1; server = \"derp.test:$DERP_PORT\"; public_key = \"$DERP_PUB\"; tls = true; } );"
coord_up
derp_metrics() { curl -sS -f --max-time 5 --cacert "$MG_TMP/derp-tls.crt" "https://127.0.0.1:$DERP_PORT/metrics"; }
derp_metric() { # NAME{labels} : its value on the relay's /metrics
	derp_metrics |
		awk -v n="$1" '$1 == n { print $2 }'
}

# ---- the namespaces: each NAT's firewall drops UDP to the other site
block_other() { # OTHER_OUT
	cat <<NFT
	chain forward {
		type filter hook forward priority filter;
		oifname "out0" ip daddr $1 meta l4proto udp counter name "blocked" drop
	}
	counter blocked { }
NFT
}
nat_topo_up block_other

# ---- the gateways: nat_gw_conf's, with the relay as region 1 (its key pinned)
NAME_A=$(mg_ifname a) && NAME_B=$(mg_ifname b) || mg_fail "names"
MG_SOCKS+=("/var/run/wireguard/$NAME_A.sock" "/var/run/wireguard/$NAME_B.sock")
DERP_CONF="derp_regions = ( { id = 1; server = \"127.0.0.1:$DERP_PORT\"; public_key = \"$DERP_PUB\";
    tls = true; ca_file = \"$MG_TMP/derp-tls.crt\"; } );"
nat_gw_conf "$NAME_A" 198.18.1.1 10.88.0.254 '"10.88.0.0/24"' gwa "$MPORT_A" "$DERP_CONF"
nat_gw_conf "$NAME_B" 198.18.2.1 10.77.0.254 '"10.77.0.0/24"' gwb "$MPORT_B" \
	"derp_ca_file = \"$MG_TMP/derp-tls.crt\";"
mg_bg dpA gwA "$DP_BIN" -c "$MG_TMP/$NAME_A.conf"
mg_bg dpB gwB "$DP_BIN" -c "$MG_TMP/$NAME_B.conf"
mg_bg cpA root "$CP_BIN" -c "$MG_TMP/$NAME_A.conf"
printf '::1 derp.test\n127.0.0.1 derp.test\n127.0.0.1 localhost\n' >"$MG_TMP/hosts.b"
mg_bg cpB root unshare -m bash -c 'mount --bind "$1" /etc/hosts && exec "$2" -c "$3"' \
	_ "$MG_TMP/hosts.b" "$CP_BIN" "$MG_TMP/$NAME_B.conf"
for f in dpA dpB; do
	mg_wait_for grep -q "dataplane running" "$MG_LOG_DIR/$f.log" || mg_fail "$f did not come up"
done

# ---- 1. both on their home relay
connected() { grep -q "DERP region 1 (home): connected (relay key $DERP_PUB)" "$MG_LOG_DIR/$1.log"; }
MG_WAIT=20 mg_check "gwA connects to its home relay (key pinned)" mg_wait_for connected cpA
MG_WAIT=20 mg_check "gwB connects to its home relay (key pinned)" mg_wait_for connected cpB
from_map() { grep -q "DERP: 2 region(s) from the coordination server, home region 2" "$MG_LOG_DIR/$1.log"; }
mg_check "gwB has the regions from the coordination server's DERP map (home: the first)" from_map cpB
moved() { grep -q "DERP: home region 2 -> 1 (latency [0-9.]* ms, was no answer)" "$MG_LOG_DIR/$1.log"; }
mg_check "gwB's probes: region 2 does not answer, region 1 is home" mg_wait_for moved cpB
gwb_metrics() { curl -sS -f --max-time 5 "http://127.0.0.1:$MPORT_B/metrics"; }
home_metric() { gwb_metrics | grep -qx "meshgate_derp_home_region 1" &&
	gwb_metrics | grep -q '^meshgate_derp_region_latency_seconds{region="1"} 0\.'; }
mg_check "/metrics: gwB's home region 1, its latency measured" mg_wait_for home_metric
own_rules() { grep -q "control.derp_regions is set: it stays, and the server's DERP map is not used" "$MG_LOG_DIR/$1.log"; }
mg_check "gwA keeps its own regions (control.derp_regions rules over the map)" mg_wait_for own_rules cpA
tls_ok() { grep -q "DERP region 1: TLS (TLSv1\.[23], .*), certificate verified for $2" "$MG_LOG_DIR/$1.log"; }
mg_check "gwA's relay connection is TLS, the certificate verified for 127.0.0.1" \
	mg_wait_for tls_ok cpA '127\.0\.0\.1'
mg_check "gwB's is TLS, the certificate verified for the name derp.test" \
	mg_wait_for tls_ok cpB 'derp\.test'
if ip -6 addr show dev lo 2>/dev/null | grep -q '::1/128'; then
	fallback() { grep -q "DERP region 1: \[::1\]:$DERP_PORT: Connection refused; trying the next address" "$MG_LOG_DIR/cpB.log"; }
	mg_check "gwB tried derp.test's first address (::1, nothing there), then the next" fallback
fi
grep -h "DERP region 1: TLS" "$MG_LOG_DIR/cpA.log" | head -1 | sed 's/^/    /'
home_up() { curl -sS -f --max-time 5 "http://127.0.0.1:$1/metrics" |
	grep -qx "meshgate_derp_home_connected 1"; }
mg_check "/metrics: gwA meshgate_derp_home_connected 1" mg_wait_for home_up "$MPORT_A"
mg_check "/metrics: gwB meshgate_derp_home_connected 1" mg_wait_for home_up "$MPORT_B"
two_clients() { [ "$(derp_metric meshgate_derp_clients)" = 2 ]; }
mg_check "the relay has 2 clients" mg_wait_for two_clients

# ---- 2. the netmaps: direct endpoints and the home region
peer_field() { # NAME HOST FIELD : FIELD of NAME's peer HOST*
	status "$1" | python3 -c 'import json,sys; print(" ".join(str(p.get(sys.argv[2])) for p in json.load(sys.stdin)["peers"] if p.get("name","").startswith(sys.argv[1])))' "$2" "$3"
}
has_at() { [ "$(peer_field "$1" "$2" endpoint)" = "$3" ]; }
MG_WAIT=20 mg_check "gwA's netmap: gwB at $OUT_B:51820" mg_wait_for has_at "$NAME_A" gwb "$OUT_B:51820"
MG_WAIT=20 mg_check "gwB's netmap: gwA at $OUT_A:51820" mg_wait_for has_at "$NAME_B" gwa "$OUT_A:51820"
mg_check "gwA: gwB's home DERP region is 1" test "$(peer_field "$NAME_A" gwb derp_region)" = 1
mg_check "gwB: gwA's home DERP region is 1" test "$(peer_field "$NAME_B" gwa derp_region)" = 1

# ---- 3. LAN traffic through the relay
ID_A=$(node_id gwa) ID_B=$(node_id gwb)
[ -n "$ID_A" ] && [ -n "$ID_B" ] || mg_fail "node ids"
mg_check "gwA's route approved" admin route approve "$ID_A" 10.88.0.0/24
mg_check "gwB's route approved" admin route approve "$ID_B" 10.77.0.0/24
mg_check "gwA routes 10.77.0.0/24 to gwB" mg_wait_for aips_have "$NAME_A" 10.77.0.0/24
mg_check "gwB routes 10.88.0.0/24 to gwA" mg_wait_for aips_have "$NAME_B" 10.88.0.0/24
t_hs=$SECONDS
MG_WAIT=30 mg_check "lanA -> lanB: the tunnel comes up through the relay (30 s at most)" \
	mg_wait_for mg_ping lanA 10.77.0.1 1
echo "    first ping answered $((SECONDS - t_hs)) s after the routes were in place"
mg_check "lanA -> lanB through the tunnel" mg_ping lanA 10.77.0.1 5
mg_check "lanB -> lanA through the tunnel" mg_ping lanB 10.88.0.1 5

# ---- 4. relayed: endpoints, counters
wg_ep() { wg show "$1" endpoints | awk '{ print $2 }'; }
mg_check "gwA's endpoint for gwB: 127.3.3.40:1 ($(wg_ep "$NAME_A"))" test "$(wg_ep "$NAME_A")" = "127.3.3.40:1"
mg_check "gwB's endpoint for gwA: 127.3.3.40:1 ($(wg_ep "$NAME_B"))" test "$(wg_ep "$NAME_B")" = "127.3.3.40:1"
wg show "$NAME_A" | sed 's/^/    /'
blocked() { mg_exec "nat$1" nft list counter ip filter blocked | awk '/packets/ { print $2 }'; }
echo "    firewall drops, UDP between the sites: A $(blocked A), B $(blocked B)"
mg_check "NAT A's firewall dropped direct attempts" test "$(blocked A)" -gt 0
relayed() { # MPORT DIRECTION
	curl -sS -f --max-time 5 "http://127.0.0.1:$1/metrics" |
		awk -v d="$2" '$1 == "meshgate_derp_packets_total{direction=\"" d "\"}" { print $2 }'
}
for g in "A:$MPORT_A" "B:$MPORT_B"; do
	x=${g%%:*} port=${g#*:}
	echo "    gw$x: relayed tx $(relayed "$port" tx), rx $(relayed "$port" rx)"
	mg_check "gw$x sent through the relay" test "$(relayed "$port" tx)" -gt 10
	mg_check "gw$x received through the relay" test "$(relayed "$port" rx)" -gt 10
done
fwd=$(derp_metric meshgate_derp_packets_forwarded_total)
mg_check "the relay forwarded them ($fwd packets)" test "${fwd:-0}" -gt 20

# ---- 5. nothing lost through the relay
mg_check "200 pings lanA -> lanB, none lost" mg_exec lanA ping -q -n -c 200 -i 0.01 -W 2 10.77.0.1
mg_check "200 pings lanB -> lanA, none lost" mg_exec lanB ping -q -n -c 200 -i 0.01 -W 2 10.88.0.1

# ---- 6. the relay restarts
kill "$DERP_PID"
wait "$DERP_PID" 2>/dev/null
derp_start
reconnected() { [ "$(grep -c "DERP region 1 (home): connected" "$MG_LOG_DIR/$1.log")" -ge 2 ]; }
MG_WAIT=40 mg_check "gwA reconnects after the relay restarts" mg_wait_for reconnected cpA
MG_WAIT=40 mg_check "gwB reconnects after the relay restarts" mg_wait_for reconnected cpB
MG_WAIT=20 mg_check "lanA -> lanB through the relay again" mg_wait_for mg_ping lanA 10.77.0.1 1
mg_check "lanB -> lanA through the relay again" mg_ping lanB 10.88.0.1 3
# ---- 7. UDP opens between the sites: disco finds the direct path
relayed_tx_a=$(relayed "$MPORT_A" tx)
for x in A B; do
	mg_exec "nat$x" nft flush chain ip filter forward || mg_fail "nft flush nat$x"
done
t_open=$SECONDS
direct_now() { # NAME ENDPOINT : a ping through the tunnel, then the endpoint
	mg_exec lanA ping -q -n -c 1 -W 1 10.77.0.1 >/dev/null 2>&1
	[ "$(wg_ep "$1")" = "$2" ]
}
MG_WAIT=40 mg_check "gwA goes direct to gwB at $OUT_B:51820 (disco)" \
	mg_wait_for direct_now "$NAME_A" "$OUT_B:51820"
MG_WAIT=20 mg_check "gwB goes direct to gwA at $OUT_A:51820" \
	mg_wait_for direct_now "$NAME_B" "$OUT_A:51820"
echo "    both direct $((SECONDS - t_open)) s after UDP opened"
grep -h "leaving the relay" "$MG_LOG_DIR/cpA.log" "$MG_LOG_DIR/cpB.log" | sed 's/^/    /'
disco() { # MPORT EVENT
	curl -sS -f --max-time 5 "http://127.0.0.1:$1/metrics" |
		awk -v e="$2" '$1 == "meshgate_disco_messages_total{event=\"" e "\"}" { print $2 }'
}
found() { [ "$(( $(disco "$MPORT_A" direct_path_found) + $(disco "$MPORT_B" direct_path_found) ))" -ge 1 ]; }
mg_check "a gateway found the direct path by a disco pong (/metrics)" mg_wait_for found
for g in "A:$MPORT_A" "B:$MPORT_B"; do
	echo "    gw${g%%:*} disco: $(curl -sS -f --max-time 5 "http://127.0.0.1:${g#*:}/metrics" |
		awk '/^meshgate_disco_messages_total/ { sub(/.*event="/, "", $1); sub(/"}/, "", $1); printf "%s %s, ", $1, $2 }')"
done
before=$(relayed "$MPORT_A" tx)
mg_check "200 pings lanA -> lanB direct, none lost" mg_exec lanA ping -q -n -c 200 -i 0.01 -W 2 10.77.0.1
after=$(relayed "$MPORT_A" tx)
echo "    gwA relayed tx: $relayed_tx_a before UDP opened, $before at the switch, $after after 200 pings"
mg_check "the pings did not go through the relay" test "$((after - before))" -lt 20
if command -v promtool >/dev/null; then
	lint() { curl -sS -f --max-time 5 "http://127.0.0.1:$1/metrics" | promtool check metrics; }
	mg_check "gwA's /metrics with DERP and disco series pass promtool" lint "$MPORT_A"
	mg_check "gwB's (DERP regions by latency) too" lint "$MPORT_B"
	lint_relay() { derp_metrics | promtool check metrics; }
	mg_check "the relay's /metrics (over TLS) pass promtool" lint_relay
fi
echo "    $((SECONDS - T0)) s in all"

mg_pass "two gateways with no UDP path between them talk through a DERP relay, and go direct when UDP opens"
