#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# shellcheck disable=SC2317 # functions run through mg_check
#
# A direct tunnel between two gateways, each behind its own NAT (hole
# punching by both sides sending, control/stun.c's behind-a-NAT keepalives):
#
#  ns lanA 10.88.0.1 -- ns gwA: meshgate, wan 198.18.1.1 -- ns natA: in0 198.18.1.254
#                                                                out0 203.0.113.7 --+
#  ns lanB 10.77.0.1 -- ns gwB: meshgate, wan 198.18.2.1 -- ns natB: in0 198.18.2.254 |
#                                                                out0 203.0.113.8 --+
#  ns inet: br0 203.0.113.1/24 (the "internet"), meshgate-stund on :3478 -----------+
#
# Each NAT masquerades its inside network (Linux keeps the source port when
# it is free: an endpoint-independent, port-preserving mapping) and drops
# what comes to itself unasked, as home routers do (else conntrack would
# keep a local entry for the other side's first packet, and masquerade would
# move our port to another to avoid it). Neither gateway can reach the
# other's private address. Both join meshgate-coord (root namespace,
# 127.0.0.1) and ask the STUN server every 5 s:
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

STUND_BIN="$MG_BUILD/stund/meshgate-stund"
STUN_SRV=203.0.113.1
OUT_A=203.0.113.7
OUT_B=203.0.113.8
MPORT_A=9591
MPORT_B=9592

mg_test_init
mg_require nft curl
[ -x "$STUND_BIN" ] || mg_fail "not built: $STUND_BIN"
T0=$SECONDS
coord_up

# ---- the namespaces
mg_ns_setup inet natA natB gwA gwB lanA lanB
mg_ip inet link add br0 type bridge || mg_fail "bridge"
mg_ip inet link set br0 up
mg_addr inet br0 "$STUN_SRV/24"
# nat_setup X OUT INSIDE_NET OTHER_OUT : NAT X between gwX's wan0 and the
# internet, counting what goes to and comes from the other NAT's port 51820
nat_setup() {
	local x=$1 out=$2 net=$3 other=$4
	mg_veth inet "n$x" "nat$x" out0
	mg_ip inet link set "n$x" master br0
	mg_veth "nat$x" in0 "gw$x" wan0
	mg_addr "nat$x" out0 "$out/24"
	mg_addr "nat$x" in0 "$net.254/24"
	_coord_offl inet "n$x"
	_coord_offl "nat$x" out0
	_coord_offl "nat$x" in0
	_coord_offl "gw$x" wan0
	mg_exec "gw$x" sysctl -qw net.ipv6.conf.wan0.disable_ipv6=1
	mg_exec "nat$x" sysctl -qw net.ipv4.ip_forward=1
	mg_exec "nat$x" nft -f - <<NFT || mg_fail "nft nat$x"
table ip nat {
	chain postrouting {
		type nat hook postrouting priority srcnat;
		oifname "out0" ip saddr $net.0/24 masquerade
	}
}
table ip filter {
	chain input {
		type filter hook input priority filter;
		iifname "out0" meta l4proto udp drop
	}
	chain forward {
		type filter hook forward priority filter;
		oifname "out0" ip daddr $other udp sport 51820 udp dport 51820 counter name "out"
		iifname "out0" ip saddr $other udp sport 51820 udp dport 51820 counter name "in"
	}
	counter out { }
	counter in { }
}
NFT
}
nat_setup A "$OUT_A" 198.18.1 "$OUT_B"
nat_setup B "$OUT_B" 198.18.2 "$OUT_A"
mg_check "NAT A has no route to gwB's private address" bash -c "! ip netns exec $(mg_ns natA) ip route get 198.18.2.1"
mg_check "NAT B has no route to gwA's private address" bash -c "! ip netns exec $(mg_ns natB) ip route get 198.18.1.1"
for x in A B; do
	mg_veth "lan$x" veth0 "gw$x" lan0
	_coord_offl "lan$x" veth0
	_coord_offl "gw$x" lan0
	mg_exec "gw$x" sysctl -qw net.ipv6.conf.lan0.disable_ipv6=1
done
mg_addr lanA veth0 10.88.0.1/24
mg_ip lanA route add default via 10.88.0.254
mg_addr lanB veth0 10.77.0.1/24
mg_ip lanB route add default via 10.77.0.254

mg_bg stund inet "$STUND_BIN" --listen "$STUN_SRV:3478"
mg_wait_for bash -c "ip netns exec $(mg_ns inet) ss -Hlun 'sport = :3478' | grep -q ." ||
	mg_fail "meshgate-stund did not start"

# ---- the gateways: gw_conf's, with the NAT as next hop, STUN and /metrics
NAME_A=$(mg_ifname a) && NAME_B=$(mg_ifname b) || mg_fail "names"
MG_SOCKS+=("/var/run/wireguard/$NAME_A.sock" "/var/run/wireguard/$NAME_B.sock")
# nat_gw_conf NAME WAN LAN ROUTE HOST MPORT
nat_gw_conf() {
	local name=$1 wan=$2
	gw_conf "$name" "$wan" "$3" "$4" "$5" "$KEY"
	sed -i "s|addresses = \\[\"$wan/24\"\\]; }|addresses = [\"$wan/24\"]; gateway = \"${wan%.*}.254\"; }|" \
		"$MG_TMP/$name.conf"
	grep -q "gateway = \"${wan%.*}.254\"" "$MG_TMP/$name.conf" || mg_fail "gateway in $name.conf"
	cat >>"$MG_TMP/$name.conf" <<CONF
control: {
  metrics_listen = "127.0.0.1:$6";
  stun_servers = ["$STUN_SRV:3478"];
  stun_interval = 5;
};
CONF
}
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
