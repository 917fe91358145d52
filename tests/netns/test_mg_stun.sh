#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# shellcheck disable=SC2317 # functions run through mg_check
#
# STUN endpoint discovery through a NAT (control/stun.c, meshgate-stund).
# The standard topology (mg_topo.sh) plus a NAT and a STUN server:
#
#  ns peer: wireguard-go 198.18.0.2 --+
#                                     +-- br0 (ns sw) -- ns gw: meshgate, wan 198.18.0.1,
#  ns nat: in0 198.18.0.254/24 -------+                  next hop 198.18.0.254
#          out0 203.0.113.7/24, nftables masquerade of 198.18.0.0/24 out of out0
#  ns inet: veth0 203.0.113.1/24, meshgate-stund on 203.0.113.1:3478
#
# The gateway asks two servers every 5 s: 203.0.113.1:3479 (nothing listens
# there) and 203.0.113.1:3478 (meshgate-stund).
#  1. it learns 203.0.113.7:<port>, the NAT's outside address, not its own:
#     in the control log, on /metrics (requests, accepted answers, one
#     endpoint), and the silent server changes nothing;
#  2. a flood of STUN answers nobody asked for: the dataplane punts at most
#     its rate limit (stun_ratelimit drops), control refuses the rest; the
#     tunnel to wireguard-go works while STUN runs;
#  3. coordination: control restarted following a meshgate-coord server
#     (coord_topo.sh) reports the endpoint; a second node's netmap has it as
#     the gateway's endpoint, and `meshgate status` lists it first. This
#     control process has the STUN server by name, stun.test:3478, which
#     its own /etc/hosts (a private mount namespace) maps to 203.0.113.1.
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mg_topo.sh"
. "$(dirname "$0")/coord_topo.sh"

STUND_BIN="$MG_BUILD/stund/meshgate-stund"
NAT_OUT=203.0.113.7
STUN_SRV=203.0.113.1
MPORT=9586

mg_test_init
mg_require nft curl
[ -x "$STUND_BIN" ] || mg_fail "not built: $STUND_BIN"

STUN_CONF="control: {
  metrics_listen = \"127.0.0.1:$MPORT\";
  stun_servers = [\"$STUN_SRV:3479\", \"$STUN_SRV:3478\"];
  stun_interval = 5;
};"
MG_WAN_EXTRA='gateway = "198.18.0.254";'
mg_topo_up "$STUN_CONF"

# ---- the NAT and the STUN server's network
mg_ns_setup nat inet
mg_veth sw pn nat in0
mg_ip sw link set pn master br0
mg_veth nat out0 inet veth0
for i in "sw pn" "nat in0" "nat out0" "inet veth0"; do
	# shellcheck disable=SC2086
	_mg_offloads_off $i
done
mg_addr nat in0 198.18.0.254/24
mg_addr nat out0 "$NAT_OUT/24"
mg_addr inet veth0 "$STUN_SRV/24"
mg_exec nat sysctl -qw net.ipv4.ip_forward=1
mg_exec nat nft -f - <<'NFT' || mg_fail "nft"
table ip nat {
	chain postrouting {
		type nat hook postrouting priority srcnat;
		oifname "out0" ip saddr 198.18.0.0/24 masquerade
	}
}
NFT
mg_bg stund inet "$STUND_BIN" --listen "$STUN_SRV:3478"
mg_wait_for bash -c "ip netns exec $(mg_ns inet) ss -Hlun 'sport = :3478' | grep -q ." ||
	mg_fail "meshgate-stund did not start"

# ---- 1. the public endpoint
CLOG="$MG_LOG_DIR/control.log"
learned() { grep -Eq "stun: public endpoint $NAT_OUT:[0-9]+ \\(via $STUN_SRV:3478\\)" "$CLOG"; }
MG_WAIT=20 mg_check "control logs the NAT's outside address as the public endpoint" \
	mg_wait_for learned
grep "stun:" "$CLOG" | sed 's/^/    /'
EP=$(sed -n "s/.*stun: public endpoint \\($NAT_OUT:[0-9]*\\) .*/\\1/p" "$CLOG" | head -n 1)
echo "    learned $EP"
mg_check "the gateway's own address is not reported" \
	bash -c "! grep -q 'stun: public endpoint 198\\.18\\.' '$CLOG'"

M="$MG_TMP/metrics"
fetch() { mg_exec gw curl -sS -f --max-time 5 -o "$1" "http://127.0.0.1:$MPORT/metrics"; }
value() { awk -v s="$2" 'substr($0, 1, length(s) + 1) == s " " { print $NF; found = 1 }
	END { exit !found }' "$1"; }
one_endpoint() { fetch "$M" && [ "$(value "$M" meshgate_stun_endpoints)" = 1 ]; }
mg_check "/metrics: one public endpoint" mg_wait_for one_endpoint
grep '^meshgate_stun' "$M" | sed 's/^/    /'
mg_check "/metrics: requests sent" test "$(value "$M" meshgate_stun_requests_total)" -ge 2
mg_check "/metrics: answers accepted" \
	test "$(value "$M" 'meshgate_stun_responses_total{result="accepted"}')" -ge 1

# The silent server: two more rounds, its requests retransmitted and given
# up, and the endpoint stays (one, the same).
sent0=$(value "$M" meshgate_stun_requests_total)
acc0=$(value "$M" 'meshgate_stun_responses_total{result="accepted"}')
# (Answers to the first round, held while the NAT came up, may have been
# refused as duplicates: only what follows counts.)
ref0=$(value "$M" 'meshgate_stun_responses_total{result="refused"}')
more_rounds() {
	fetch "$M" &&
		[ "$(value "$M" 'meshgate_stun_responses_total{result="accepted"}')" -ge $((acc0 + 2)) ]
}
MG_WAIT=20 mg_check "two more rounds answered" mg_wait_for more_rounds
sent1=$(value "$M" meshgate_stun_requests_total)
# Per round: the working server once, the silent one twice (retransmitted).
mg_check "the silent server's requests are retransmitted ($sent0 -> $sent1 sent)" \
	test $((sent1 - sent0)) -ge 5
mg_check "still one endpoint" test "$(value "$M" meshgate_stun_endpoints)" = 1
mg_check "nothing refused meanwhile" \
	test "$(value "$M" 'meshgate_stun_responses_total{result="refused"}')" = "$ref0"
mg_check "no STUN punt over the rate limit" test "$(mg_drops stun_ratelimit)" = 0

# ---- 2. a flood of STUN answers nobody asked for, then the tunnel
flood() { # COUNT : Binding success responses from the peer's namespace to the listen port
	mg_exec peer timeout 30 python3 - "$1" <<'EOF'
import os, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("198.18.0.2", 3478))
attr = struct.pack("!HHBBH4s", 0x0020, 8, 0, 1, 41641 ^ 0x2112, bytes([1, 2, 3, 4]))
for _ in range(int(sys.argv[1])):
    s.sendto(struct.pack("!HHI", 0x0101, len(attr), 0x2112A442) + os.urandom(12) + attr,
             ("198.18.0.1", 51820))
EOF
}
t0=$(date +%s%N)
mg_check "1000 unasked STUN answers sent" flood 1000
ms=$((($(date +%s%N) - t0) / 1000000))
refused() { fetch "$M" && value "$M" 'meshgate_stun_responses_total{result="refused"}'; }
some_refused() { [ "$(refused)" -gt "$ref0" ]; }
mg_check "some punted, refused by control" mg_wait_for some_refused
sleep 1 # the last punts reach control
limited=$(mg_drops stun_ratelimit)
punted=$(($(refused) - ref0))
# One worker's bucket: 32 at once, then 100/s; how many it let through
# depends on how long the sender took (slower on a loaded host), not on a
# share of the 1,000.
allowed=$((32 + 100 * (ms + 1000) / 1000))
mg_check "punted no more than the limit allows over the flood's $ms ms ($punted <= $allowed)" \
	test "$punted" -le "$allowed"
mg_check "the dataplane's punt limit dropped others ($limited)" \
	test "$limited" -gt 0 -o "$allowed" -ge 1000
mg_check "no more punted than sent ($punted + $limited <= 1000)" test $((punted + limited)) -le 1000
mg_check "the endpoint stays" test "$(value "$M" meshgate_stun_endpoints)" = 1
mg_check "LAN host -> peer, IPv4" mg_ping lan 10.99.0.2 5
mg_check "peer -> LAN host, IPv4" mg_ping peer 10.88.0.1 5
mg_check "gateway reports a handshake" mg_gw_has_handshake

# ---- 3. the coordination server hears of it
kill "$MG_CP_PID"
wait "$MG_CP_PID" 2>/dev/null
coord_up
printf '%s\n' "$KEY" >"$MG_TMP/gw.authkey"
chmod 600 "$MG_TMP/gw.authkey"
mkdir -p "$MG_TMP/state-gw"
CONF2="$MG_TMP/gw-coord.conf"
ca="" tls='testing: { coord_insecure_http = true; };'
[ -n "${COORD_CA:-}" ] && ca="ca_file = \"$COORD_CA\";" tls=""
mg_topo_write_conf "$CONF2" "control: {
  stun_servers = [\"$STUN_SRV:3479\", \"stun.test:3478\"];
  stun_interval = 5;
};
coordination: {
  server = \"$URL\"; auth_key_file = \"$MG_TMP/gw.authkey\";
  state_dir = \"$MG_TMP/state-gw\"; hostname = \"stungw\"; $ca
};
$tls"
sed -i '/private_key_file/d' "$CONF2" # the node key comes from the state file
# In the root namespace, where the server listens (127.0.0.1).
printf '127.0.0.1 localhost\n%s stun.test\n' "$STUN_SRV" >"$MG_TMP/hosts"
mg_bg control-coord root unshare -m bash -c 'mount --bind "$1" /etc/hosts && exec "$2" -c "$3"' \
	_ "$MG_TMP/hosts" "$MG_CP_BIN" "$CONF2"

NAME2=$(mg_ifname n) || mg_fail "name"
MG_SOCKS+=("/var/run/wireguard/$NAME2.sock")
gw_conf "$NAME2" 198.18.0.60 10.66.0.254 '' node2 "$KEY"
mg_bg cp-node2 root "$CP_BIN" -c "$MG_TMP/$NAME2.conf"

reported() { # the gateway's own status: the STUN endpoint first, then its wan address
	status "$MGN" | python3 -c 'import json,sys; e=json.load(sys.stdin)["self"]["endpoints"]; sys.exit(0 if e[:2] == sys.argv[1:3] else 1)' \
		"$EP" 198.18.0.1:51820
}
MG_WAIT=20 mg_check "gateway status: endpoints $EP, 198.18.0.1:51820" mg_wait_for reported
CLOG2="$MG_LOG_DIR/control-coord.log"
mg_check "the STUN server by name: resolved to $STUN_SRV" \
	grep -q "stun: server stun.test:3478 ($STUN_SRV:3478)" "$CLOG2"
mg_check "and the endpoint learned through it" \
	grep -Eq "stun: public endpoint $EP \\(via $STUN_SRV:3478\\)" "$CLOG2"
"$CLI_BIN" status "$MGN" | sed 's/^/    /'
peer_ep() { # the endpoint node2 has for the gateway
	status "$NAME2" | python3 -c 'import json,sys; print(" ".join(p.get("endpoint") or "-" for p in json.load(sys.stdin)["peers"] if p.get("name","").startswith("stungw")))'
}
node2_has() { [ "$(peer_ep)" = "$EP" ]; }
MG_WAIT=20 mg_check "node2's netmap: the gateway at $EP" mg_wait_for node2_has
echo "    node2 has the gateway at $(peer_ep)"

mg_pass "STUN finds the public endpoint through the NAT and the coordination server hears of it"
