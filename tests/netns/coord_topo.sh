# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# A mesh through meshgate-coord, sourced after lib.sh (used by
# test_coord_mesh.sh and scripts/demo):
#
#   ns cl:  stock wireguard-go, 198.18.0.9, enrolled as a plain WireGuard device
#   ns gw1: meshgate (wan 198.18.0.1, lan 10.88.0.254; LAN host lan1 10.88.0.1)
#   ns gw2: meshgate (wan 198.18.0.3, lan 10.77.0.254; LAN host lan2 10.77.0.1)
#   all on one WAN bridge in ns sw; the server (SQLite) and the control
#   processes run in the root namespace and talk over 127.0.0.1.
#
# coord_up        the server, tailnet "corp", user ops@example.com, pre-auth
#                 keys KEY (reusable, tag:gw) and EKEY (ephemeral, tag:gw);
#                 admin() runs meshgate-admin against it. COORD_DB (default
#                 SQLite in $MG_TMP) selects the database; with
#                 COORD_REPLICAS=2 a second replica on the same database
#                 serves URL2, and gw2 joins through it. COORD_KEY_SECONDS:
#                 untagged node keys expire that soon (testing.*); GW2_KEY:
#                 the pre-auth key gw2 joins with (default KEY); COORD_EXTRA:
#                 more lines for the server's config (e.g. derp_regions)
# coord_mesh_up   namespaces and both gateways joined (NAME1, NAME2)
# coord_client_up the client enrolled by its public key and configured from
#                 the wg-quick config the server printed ($MG_TMP/$CLIF.printed)
# gw_conf NAME WAN LAN ROUTES HOSTNAME KEY [URL] : a gateway config joining the server

COORD_BIN="$MG_BUILD/coord/meshgate-coord"
ADMIN_BIN="$MG_BUILD/coord/meshgate-admin"
DP_BIN="$MG_BUILD/dataplane/meshgate-dataplane"
CP_BIN="$MG_BUILD/control/meshgate-control"
CLI_BIN="$MG_BUILD/control/meshgate"

# The server speaks HTTPS with a throwaway certificate for 127.0.0.1 (the
# clients trust it through ca_file / --cacert); COORD_TLS=0: plain HTTP.
admin() { "$ADMIN_BIN" --server "$URL" --token-file "$MG_TMP/admin.token" ${COORD_CA:+--cacert "$COORD_CA"} "$@"; }

_coord_cert() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj /CN=meshgate-coord -addext subjectAltName=IP:127.0.0.1 \
		-keyout "$MG_TMP/coord.key" -out "$MG_TMP/coord.crt" >/dev/null 2>&1 ||
		mg_fail "openssl: cannot make a certificate"
	chmod 600 "$MG_TMP/coord.key"
	COORD_CA="$MG_TMP/coord.crt"
}

coord_up() {
	mg_require wireguard-go wg wg-quick ping python3 ethtool
	local b port
	for b in "$COORD_BIN" "$ADMIN_BIN" "$DP_BIN" "$CP_BIN" "$CLI_BIN"; do
		[ -x "$b" ] || mg_fail "not built: $b"
	done
	head -c 32 /dev/urandom | base64 >"$MG_TMP/admin.token"
	chmod 600 "$MG_TMP/admin.token"
	local r scheme=https tls='tls = { cert_file = "'"$MG_TMP/coord.crt"'"; key_file = "'"$MG_TMP/coord.key"'"; };'
	COORD_CA=
	local testing=""
	if [ "${COORD_TLS:-1}" = 1 ]; then
		mg_require openssl
		_coord_cert
	else
		scheme=http tls="" testing="insecure_http = true;"
	fi
	[ -n "${COORD_KEY_SECONDS:-}" ] && testing+=" key_expiry_seconds = $COORD_KEY_SECONDS;"
	[ -n "$testing" ] && tls+="
testing = { $testing };"
	URL2=
	for ((r = 1; r <= ${COORD_REPLICAS:-1}; r++)); do
		port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
		cat >"$MG_TMP/coord$r.conf" <<CONF
listen = "127.0.0.1:$port";
database = "${COORD_DB:-sqlite:$MG_TMP/coord.db}";
admin_token_file = "$MG_TMP/admin.token";
limits = { offline_seconds = 4; ephemeral_seconds = 4; };
$tls
${COORD_EXTRA:-}
CONF
		mg_bg "coord$r" root "$COORD_BIN" -c "$MG_TMP/coord$r.conf"
		if [ "$r" = 1 ]; then URL="$scheme://127.0.0.1:$port"; else URL2="$scheme://127.0.0.1:$port"; fi
		mg_wait_for "$ADMIN_BIN" --server "$scheme://127.0.0.1:$port" ${COORD_CA:+--cacert "$COORD_CA"} \
			--token-file "$MG_TMP/admin.token" tailnets >/dev/null ||
			mg_fail "coordination server $r did not start"
	done
	admin tailnet create corp >/dev/null || mg_fail "tailnet create"
	admin user create corp ops@example.com >/dev/null || mg_fail "user create"
	KEY=$(admin key create corp ops@example.com --reusable --tag tag:gw) || mg_fail "key"
	EKEY=$(admin key create corp ops@example.com --ephemeral --tag tag:gw) || mg_fail "key"
}

_coord_offl() {
	mg_exec "$1" ethtool -K "$2" tx off rx off tso off gso off gro off lro off >/dev/null 2>&1 || true
}

# Both gateways' workers poll lcore 1 of this 2-core machine, so each one
# polls half the time: the af_packet socket rings get 4096 frames (DPDK's
# default is 512), or a TCP transfer overflows them. DPDK 22.11's af_packet
# driver does not count what overflows (no imissed): the kernel's interface
# shows the packets delivered, the port never sees them.
gw_conf() {
	local name=$1 wan=$2 lan=$3 route=$4 host=$5 key=$6 server=${7:-$URL}
	local ca="" testing="testing: { coord_insecure_http = true; };"
	if [ -n "${COORD_CA:-}" ]; then
		ca="ca_file = \"$COORD_CA\";"
		testing=""
	fi
	# GW_FLOW_LOG=SECONDS: flow logs to $MG_TMP/<name>.flows at that interval.
	local flow=""
	[ -n "${GW_FLOW_LOG:-}" ] &&
		flow="flow_log: { file = \"$MG_TMP/$name.flows\"; interval = $GW_FLOW_LOG; };"
	printf '%s\n' "$key" >"$MG_TMP/$name.authkey"
	chmod 600 "$MG_TMP/$name.authkey"
	mkdir -p "$MG_TMP/state-$name"
	cat >"$MG_TMP/$name.conf" <<CONF
meshgate: { name = "$name"; listen_port = 51820; max_peers = 64; log_level = "info"; };
dataplane: {
  eal_args = ["--no-huge", "-m", "512", "--no-pci", "--log-level=*:notice"];
  main_lcore = 0; workers = [1]; mbufs = 8192;
  ports = (
    { name = "wan0"; device = "net_af_packet0,iface=wan0,framecnt=4096"; role = "wan"; addresses = ["$wan/24"]; },
    { name = "lan0"; device = "net_af_packet1,iface=lan0,framecnt=4096"; role = "lan"; addresses = ["$lan/24"]; }
  );
};
coordination: {
  server = "$server"; auth_key_file = "$MG_TMP/$name.authkey";
  state_dir = "$MG_TMP/state-$name"; hostname = "$host"; advertise_routes = [$route];
  $ca
};
$testing
$flow
CONF
}

coord_mesh_up() {
	local g f
	mg_ns_setup sw gw1 gw2 lan1 lan2 cl
	mg_ip sw link add br0 type bridge || mg_fail "bridge"
	mg_ip sw link set br0 up
	for g in 1 2; do
		mg_veth sw "g$g" "gw$g" wan0
		mg_ip sw link set "g$g" master br0
		mg_veth "lan$g" veth0 "gw$g" lan0
		_coord_offl sw "g$g"
		_coord_offl "gw$g" wan0
		_coord_offl "gw$g" lan0
		_coord_offl "lan$g" veth0
		mg_exec "gw$g" sysctl -qw net.ipv6.conf.wan0.disable_ipv6=1
		mg_exec "gw$g" sysctl -qw net.ipv6.conf.lan0.disable_ipv6=1
	done
	mg_addr lan1 veth0 10.88.0.1/24
	mg_ip lan1 route add default via 10.88.0.254
	mg_addr lan2 veth0 10.77.0.1/24
	mg_ip lan2 route add default via 10.77.0.254
	mg_veth sw c cl veth0
	mg_ip sw link set c master br0
	_coord_offl sw c
	_coord_offl cl veth0
	mg_addr cl veth0 198.18.0.9/24

	NAME1=$(mg_ifname a) && NAME2=$(mg_ifname b) || mg_fail "names"
	MG_SOCKS+=("/var/run/wireguard/$NAME1.sock" "/var/run/wireguard/$NAME2.sock")
	gw_conf "$NAME1" 198.18.0.1 10.88.0.254 '"10.88.0.0/24"' gw1 "$KEY"
	gw_conf "$NAME2" 198.18.0.3 10.77.0.254 '"10.77.0.0/24"' gw2 "${GW2_KEY:-$KEY}" "${URL2:-$URL}"
	mg_bg dp1 gw1 "$DP_BIN" -c "$MG_TMP/$NAME1.conf"
	mg_bg dp2 gw2 "$DP_BIN" -c "$MG_TMP/$NAME2.conf"
	mg_bg cp1 root "$CP_BIN" -c "$MG_TMP/$NAME1.conf"
	mg_bg cp2 root "$CP_BIN" -c "$MG_TMP/$NAME2.conf"
	for f in dp1 dp2; do
		mg_wait_for grep -q "dataplane running" "$MG_LOG_DIR/$f.log" || mg_fail "$f did not come up"
	done
}

# status NAME : `meshgate status` as JSON
status() { "$CLI_BIN" status "$1" --json 2>/dev/null; }

# coord_mesh_routes : after coord_mesh_up, both gateways know each other,
# their routes (10.88.0.0/24, 10.77.0.0/24) are approved and each routes
# the other's LAN to it; sets ID1 and ID2, the nodes' ids.
coord_mesh_routes() {
	mg_check "gw1 learned gw2 from the server" mg_wait_for has_peer "$NAME1" gw2
	mg_check "gw2 learned gw1 from the server" mg_wait_for has_peer "$NAME2" gw1
	"$CLI_BIN" status "$NAME1" | sed 's/^/    /'
	ID1=$(node_id gw1) ID2=$(node_id gw2)
	[ -n "$ID1" ] && [ -n "$ID2" ] || mg_fail "node ids"
	mg_check "gw1's route approved" admin route approve "$ID1" 10.88.0.0/24
	mg_check "gw2's route approved" admin route approve "$ID2" 10.77.0.0/24
	mg_check "gw1 routes 10.77.0.0/24 to gw2" mg_wait_for aips_have "$NAME1" 10.77.0.0/24
	mg_check "gw2 routes 10.88.0.0/24 to gw1" mg_wait_for aips_have "$NAME2" 10.88.0.0/24
}
# has_peer NAME HOSTNAME : NAME's netmap has a peer called HOSTNAME*
has_peer() {
	status "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if any(p.get("name","").startswith(sys.argv[1]) for p in d.get("peers",[])) else 1)' "$2"
}
node_id() { admin nodes corp | awk -v n="$1" '$2 == n { print $1; exit }'; }
aips_have() { wg show "$1" allowed-ips | grep -q "$2"; }

coord_client_up() {
	local a
	CLIF=$(mg_ifname c) || mg_fail "name"
	(umask 077 && wg genkey >"$MG_TMP/cl.key")
	chmod 600 "$MG_TMP/cl.key"
	admin wg enroll corp ops@example.com phone "$(wg pubkey <"$MG_TMP/cl.key")" \
		>"$MG_TMP/$CLIF.printed" || mg_fail "wg enroll"
	MG_WG_LOG_LEVEL=error mg_wggo_start cl "$CLIF" "$MG_TMP/cl.key" 51820
	# The private key goes in here, on the client: the server never had it.
	sed "s|^PrivateKey *=.*|PrivateKey = $(cat "$MG_TMP/cl.key")|" "$MG_TMP/$CLIF.printed" \
		>"$MG_TMP/$CLIF.conf"
	chmod 600 "$MG_TMP/$CLIF.conf"
	wg-quick strip "$MG_TMP/$CLIF.conf" >"$MG_TMP/cl.wg" || mg_fail "wg-quick strip"
	mg_exec cl wg setconf "$CLIF" "$MG_TMP/cl.wg" || mg_fail "wg setconf"
	for a in $(sed -n 's/^Address *= *//p' "$MG_TMP/$CLIF.conf" | tr ',' ' '); do
		mg_ip cl addr add "$a" dev "$CLIF"
	done
	for a in $(sed -n 's/^AllowedIPs *= *//p' "$MG_TMP/$CLIF.conf" | tr ',' ' '); do
		mg_ip cl route replace "$a" dev "$CLIF" 2>/dev/null
	done
}
