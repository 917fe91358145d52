#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# shellcheck disable=SC2317 # functions run through mg_check
#
# A direct tunnel between two gateways, each behind its own NAT (hole
# punching by both sides sending, control/stun.c's behind-a-NAT keepalives):
#
#  the two-NAT topology of nat_topo.sh; the NATs count what goes to and
#  comes from the other NAT's port 51820. Both gateways join meshgate-coord
#  (root namespace, 127.0.0.1) and ask the STUN server every 5 s:
#  1. each learns its NAT's outside address, says it is behind a NAT
#     (control log, /metrics meshgate_behind_nat 1);
#  2. each one's netmap has the other at the other NAT's outside address;
#  3. with no user traffic, the 25 s keepalives to coordination peers start
#     handshakes from both sides: one completes within 40 s;
#  4. the LAN hosts ping each other through the tunnel, both ways;
#  5. direct, no relay: each gateway's peer endpoint is the other NAT's
#     outside address, and each NAT's counters saw packets between the two
#     outside addresses on port 51820.
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/coord_topo.sh"
. "$(dirname "$0")/nat_topo.sh"

MPORT_A=9591
MPORT_B=9592

mg_test_init
mg_require nft curl
T0=$SECONDS
coord_up

# ---- the namespaces: each NAT counts the other NAT's port-51820 traffic
count_other() { # OTHER_OUT
	cat <<NFT
	chain forward {
		type filter hook forward priority filter;
		oifname "out0" ip daddr $1 udp sport 51820 udp dport 51820 counter name "out"
		iifname "out0" ip saddr $1 udp sport 51820 udp dport 51820 counter name "in"
	}
	counter out { }
	counter in { }
NFT
}
nat_topo_up count_other
mg_check "NAT A has no route to gwB's private address" bash -c "! ip netns exec $(mg_ns natA) ip route get 198.18.2.1"
mg_check "NAT B has no route to gwA's private address" bash -c "! ip netns exec $(mg_ns natB) ip route get 198.18.1.1"

# ---- the gateways: nat_gw_conf's
NAME_A=$(mg_ifname a) && NAME_B=$(mg_ifname b) || mg_fail "names"
MG_SOCKS+=("/var/run/wireguard/$NAME_A.sock" "/var/run/wireguard/$NAME_B.sock")
nat_gw_conf "$NAME_A" 198.18.1.1 10.88.0.254 '"10.88.0.0/24"' gwa "$MPORT_A"
nat_gw_conf "$NAME_B" 198.18.2.1 10.77.0.254 '"10.77.0.0/24"' gwb "$MPORT_B"
mg_bg dpA gwA "$DP_BIN" -c "$MG_TMP/$NAME_A.conf"
mg_bg dpB gwB "$DP_BIN" -c "$MG_TMP/$NAME_B.conf"
mg_bg cpA root "$CP_BIN" -c "$MG_TMP/$NAME_A.conf"
mg_bg cpB root "$CP_BIN" -c "$MG_TMP/$NAME_B.conf"
for f in dpA dpB; do
	mg_wait_for grep -q "dataplane running" "$MG_LOG_DIR/$f.log" || mg_fail "$f did not come up"
done

# ---- 1. each learns its NAT's outside address
learned() { grep -q "stun: public endpoint $2:51820 (via $STUN_SRV:3478)" "$MG_LOG_DIR/$1.log"; }
nat_said() { grep -q "stun: behind a NAT (public $2:51820): keepalives" "$MG_LOG_DIR/$1.log"; }
MG_WAIT=20 mg_check "gwA learns $OUT_A:51820 (NAT A, port kept)" mg_wait_for learned cpA "$OUT_A"
MG_WAIT=20 mg_check "gwB learns $OUT_B:51820 (NAT B, port kept)" mg_wait_for learned cpB "$OUT_B"
mg_check "gwA says it is behind a NAT" mg_wait_for nat_said cpA "$OUT_A"
mg_check "gwB says it is behind a NAT" mg_wait_for nat_said cpB "$OUT_B"
grep -h "stun:" "$MG_LOG_DIR/cpA.log" "$MG_LOG_DIR/cpB.log" | sed 's/^/    /'
behind() { curl -sS -f --max-time 5 "http://127.0.0.1:$2/metrics" |
	grep -qx "meshgate_behind_nat 1"; }
mg_check "/metrics: gwA meshgate_behind_nat 1" mg_wait_for behind gwA "$MPORT_A"
mg_check "/metrics: gwB meshgate_behind_nat 1" mg_wait_for behind gwB "$MPORT_B"

# ---- 2. the netmaps
peer_field() { # NAME HOST FIELD : FIELD of NAME's peer HOST*
	status "$1" | python3 -c 'import json,sys; print(" ".join(str(p.get(sys.argv[2])) for p in json.load(sys.stdin)["peers"] if p.get("name","").startswith(sys.argv[1])))' "$2" "$3"
}
has_at() { [ "$(peer_field "$1" "$2" endpoint)" = "$3" ]; }
MG_WAIT=20 mg_check "gwA's netmap: gwB at $OUT_B:51820" mg_wait_for has_at "$NAME_A" gwb "$OUT_B:51820"
MG_WAIT=20 mg_check "gwB's netmap: gwA at $OUT_A:51820" mg_wait_for has_at "$NAME_B" gwa "$OUT_A:51820"
mg_check "gwA: keepalive 25 s to gwB" test "$(peer_field "$NAME_A" gwb persistent_keepalive)" = 25
mg_check "gwB: keepalive 25 s to gwA" test "$(peer_field "$NAME_B" gwa persistent_keepalive)" = 25
"$CLI_BIN" status "$NAME_A" | sed 's/^/    /'

# ---- 3. a handshake, with no user traffic
t_hs=$SECONDS
handshaken() { wg show "$1" latest-handshakes | awk '$2 > 0 { ok = 1 } END { exit !ok }'; }
MG_WAIT=40 mg_check "gwA and gwB complete a handshake by themselves (keepalives, 40 s at most)" \
	mg_wait_for handshaken "$NAME_A"
echo "    handshake $((SECONDS - t_hs)) s after both knew each other's public endpoint"
mg_check "gwB has it too" mg_wait_for handshaken "$NAME_B"

# ---- 4. the LAN hosts through the tunnel
ID_A=$(node_id gwa) ID_B=$(node_id gwb)
[ -n "$ID_A" ] && [ -n "$ID_B" ] || mg_fail "node ids"
mg_check "gwA's route approved" admin route approve "$ID_A" 10.88.0.0/24
mg_check "gwB's route approved" admin route approve "$ID_B" 10.77.0.0/24
mg_check "gwA routes 10.77.0.0/24 to gwB" mg_wait_for aips_have "$NAME_A" 10.77.0.0/24
mg_check "gwB routes 10.88.0.0/24 to gwA" mg_wait_for aips_have "$NAME_B" 10.88.0.0/24
mg_check "lanA -> lanB through the tunnel" mg_ping lanA 10.77.0.1 5
mg_check "lanB -> lanA through the tunnel" mg_ping lanB 10.88.0.1 5

# ---- 5. direct: the endpoints and the NATs' counters
wg_ep() { wg show "$1" endpoints | awk '{ print $2 }'; }
mg_check "gwA's endpoint for gwB: $OUT_B:51820 ($(wg_ep "$NAME_A"))" test "$(wg_ep "$NAME_A")" = "$OUT_B:51820"
mg_check "gwB's endpoint for gwA: $OUT_A:51820 ($(wg_ep "$NAME_B"))" test "$(wg_ep "$NAME_B")" = "$OUT_A:51820"
wg show "$NAME_A" | sed 's/^/    /'
packets() { # NAT COUNTER
	mg_exec "nat$1" nft list counter ip filter "$2" | awk '/packets/ { print $2 }'
}
for x in A B; do
	echo "    NAT $x: $(packets $x out) packets out, $(packets $x in) in, port 51820 both sides"
	mg_exec "nat$x" conntrack -L -p udp --dport 51820 2>/dev/null | sed 's/^/      /'
done
mg_check "NAT A forwarded gwA's packets out to port 51820" test "$(packets A out)" -gt 0
mg_check "NAT A let NAT B's in" test "$(packets A in)" -gt 0
mg_check "NAT B forwarded gwB's packets out to port 51820" test "$(packets B out)" -gt 0
mg_check "NAT B let NAT A's in" test "$(packets B in)" -gt 0
echo "    $((SECONDS - T0)) s in all"

mg_pass "two gateways behind two NATs reach each other directly"
