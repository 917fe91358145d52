# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# Two sites, each behind its own NAT, on one "internet" (sourced after lib.sh
# and coord_topo.sh; used by test_mg_nat.sh and test_mg_derp.sh):
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
# other's private address.
#
# nat_topo_up FORWARD_FN  the namespaces, links, NATs, LAN hosts and the STUN
#                         server; FORWARD_FN OTHER_OUT prints the body of NAT's
#                         "table ip filter" beyond its input chain (a forward
#                         chain, counters), given the other NAT's outside address
# nat_gw_conf NAME WAN LAN ROUTE HOST MPORT [CONTROL_LINES]
#                         gw_conf's config, with the NAT as next hop, /metrics
#                         on MPORT, STUN every 5 s and CONTROL_LINES in the
#                         control group

STUND_BIN="$MG_BUILD/stund/meshgate-stund"
STUN_SRV=203.0.113.1
OUT_A=203.0.113.7
OUT_B=203.0.113.8

# _nat_setup X OUT INSIDE_NET OTHER_OUT FORWARD_FN
_nat_setup() {
	local x=$1 out=$2 net=$3 other=$4 fwd=$5
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
$("$fwd" "$other")
}
NFT
}

nat_topo_up() {
	local fwd=$1 x
	[ -x "$STUND_BIN" ] || mg_fail "not built: $STUND_BIN"
	mg_ns_setup inet natA natB gwA gwB lanA lanB
	mg_ip inet link add br0 type bridge || mg_fail "bridge"
	mg_ip inet link set br0 up
	mg_addr inet br0 "$STUN_SRV/24"
	_nat_setup A "$OUT_A" 198.18.1 "$OUT_B" "$fwd"
	_nat_setup B "$OUT_B" 198.18.2 "$OUT_A" "$fwd"
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
}

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
  ${7:-}
};
CONF
}
