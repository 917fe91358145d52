# SPDX-License-Identifier: MIT
# shellcheck shell=bash disable=SC2317
#
# The standard meshgate test topology, sourced after lib.sh:
#
#  ns peer                 ns sw        ns gw                                  ns lan
# +--------------------+  +--------+   +-----------------------------------+  +-------------------+
# | wireguard-go $WGP  |  | bridge |   |  meshgate-dataplane (DPDK)        |  | LAN host          |
# | 10.99.0.2/24       |  |  br0   |   |   wan: net_af_packet on wan0      |  | 10.88.0.1/24      |
# | fd99::2/64         |  |        |   |        198.18.0.1/24, UDP 51820   |  | fd88::1/64        |
# | veth0 198.18.0.2 --+--+        +---+ wan0                              |  | routes to 10.99/24|
# +--------------------+  |        |   |   lan: net_af_packet on lan0      |  | fd99::/64 via gw  |
#  (more peers, made by   |        |   |        10.88.0.254/24 fd88::fe/64 +--+ veth0             |
#   mg_topo_add_peer,  ---+        |   |  meshgate-control ($MGN.sock)     |  +-------------------+
#   join br0 the same way)+--------+   +-----------------------------------+
#
# The gateway routes between the tunnel (peer 10.99.0.2, fd99::2) and the
# LAN (10.88.0.0/24, fd88::/64). The veths have checksum offloads off: the
# DPDK ports see frames as the wire would carry them.
#
# Variables after mg_topo_up: MGN (gateway name), WGP (peer interface),
# MG_CONF (gateway config), GW_PUB, PEER_PUB, MG_DP_PID, MG_CP_PID.
#
# Optional, read by mg_topo_write_conf (default empty):
#   MG_EAL_EXTRA  extra EAL arguments, whitespace-separated, appended to
#                 dataplane.eal_args (e.g. "--vdev=crypto_aesni_mb")
#   MG_DP_EXTRA   extra settings for the dataplane section, verbatim
#                 (e.g. 'crypto = "cryptodev"; cryptodev = "crypto_aesni_mb";'
#                 or 'snat = { enabled = false; };')
#   MG_LAN_EXTRA  extra settings for the lan port, verbatim
#                 (e.g. 'routes = ( { prefix = "10.77.0.0/24"; via = "10.88.0.1"; } );')
#   MG_PEER_ALLOWED_IPS  the peer's allowed_ips on the gateway, a libconfig
#                 array body (default '"10.99.0.2/32", "fd99::2/128"')
#   MG_WAN_EXTRA  extra settings for the wan port, verbatim
#                 (e.g. 'gateway6 = "fe80::1";')
#   MG_MAX_PEERS  meshgate.max_peers (default 64)
#   MG_EAL_MB     the dataplane's EAL memory, MiB (default 512)
#   MG_EXTRA_PEERS_FILE  a file of more entries for the peers list
#                 (libconfig groups separated by commas), @included
#
# Optional, read by mg_topo_write_conf and mg_topo_add_peer:
#   MG_UNDERLAY   4 (default) or 6. With 6 the gateway's WAN port also has
#                 fd18::1/64 (next to 198.18.0.1/24), peers made by
#                 mg_topo_add_peer have only the underlay fd18::N/64 and
#                 reach the gateway at [fd18::1]:51820, and the gateway's
#                 configured endpoint for the peer is [fd18::2]:51820.

MG_DP_BIN="$MG_BUILD/dataplane/meshgate-dataplane"
MG_CP_BIN="$MG_BUILD/control/meshgate-control"
MG_CLI_BIN="$MG_BUILD/control/meshgate"

_mg_offloads_off() { # NS IF
	mg_exec "$1" ethtool -K "$2" tx off rx off tso off gso off gro off lro off >/dev/null 2>&1 || true
}

# mg_topo_write_conf FILE [extra testing block] : the gateway's config.
mg_topo_write_conf() {
	local file=$1 testing=${2:-} peer_endpoint wan_addrs='"198.18.0.1/24"'
	local ep_line="" eal_extra=() a eal=""
	local allowed=${MG_PEER_ALLOWED_IPS:-'"10.99.0.2/32", "fd99::2/128"'}
	if [ "${MG_UNDERLAY:-4}" = 6 ]; then
		peer_endpoint=${MG_PEER_ENDPOINT-[fd18::2]:51820}
		wan_addrs+=', "fd18::1/64"'
	else
		peer_endpoint=${MG_PEER_ENDPOINT-198.18.0.2:51820}
	fi
	[ -n "$peer_endpoint" ] && ep_line="endpoint = \"$peer_endpoint\";"
	local extra_peers=""
	[ -n "${MG_EXTRA_PEERS_FILE:-}" ] &&
		extra_peers=$(printf ',\n@include "%s"' "$MG_EXTRA_PEERS_FILE")
	read -r -a eal_extra <<<"${MG_EAL_EXTRA:-}"
	for a in "${eal_extra[@]}"; do eal+=", \"$a\""; done
	cat >"$file" <<CONF
meshgate: {
  name = "$MGN";
  private_key_file = "$MG_TMP/gw.key";
  listen_port = 51820;
  max_peers = ${MG_MAX_PEERS:-64};
  log_level = "${MG_LOG_LEVEL:-info}";
};
dataplane: {
  eal_args = ["--no-huge", "-m", "${MG_EAL_MB:-512}", "--no-pci", "--log-level=*:notice"$eal];
  main_lcore = 0;
  workers = [1];
  mbufs = 8192;
  ports = (
    { name = "wan0"; device = "net_af_packet0,iface=wan0"; role = "wan";
      addresses = [$wan_addrs]; ${MG_WAN_EXTRA:-}},
    { name = "lan0"; device = "net_af_packet1,iface=lan0"; role = "lan";
      addresses = ["10.88.0.254/24", "fd88::fe/64"]; ${MG_LAN_EXTRA:-} }
  );
${MG_DP_EXTRA:-}
};
peers = (
  { name = "peer"; public_key = "$PEER_PUB"; $ep_line
    allowed_ips = [$allowed]; }$extra_peers
);
$testing
CONF
}

mg_topo_start_dataplane() {
	mg_bg "dataplane" gw "$MG_DP_BIN" -c "$MG_CONF"
	MG_DP_PID=$MG_LAST_PID
	mg_wait_for test -e "/dev/shm/meshgate.$MGN" || mg_fail "dataplane did not start"
	# The region appears before the ports are up (seconds later on a loaded
	# machine); "dataplane running" (logged at info) comes after them.
	case ${MG_LOG_LEVEL:-info} in
	info | debug)
		mg_wait_for grep -q "dataplane running" "$MG_LOG_DIR/dataplane.log" ||
			mg_fail "dataplane did not come up (no 'dataplane running' in its log)" ;;
	esac
}

mg_topo_start_control() {
	local log=${1:-control}
	mg_bg "$log" gw "$MG_CP_BIN" -c "$MG_CONF"
	MG_CP_PID=$MG_LAST_PID
	mg_wait_for test -S "/var/run/wireguard/$MGN.sock" || mg_fail "control did not start"
}

# mg_topo_up [testing-block] : build the topology, start both meshgate
# processes and the wireguard-go peer (which knows the gateway).
mg_topo_up() {
	mg_require wireguard-go wg iperf3 ping ethtool python3
	[ -x "$MG_DP_BIN" ] && [ -x "$MG_CP_BIN" ] || mg_fail "meshgate not built in $MG_BUILD"
	MGN=$(mg_ifname g) || mg_fail "name"
	WGP=$(mg_ifname p) || mg_fail "name"
	MG_SOCKS+=("/var/run/wireguard/$MGN.sock")
	mg_topo_base
	local i
	for i in wan0 lan0; do
		mg_exec gw sysctl -qw "net.ipv6.conf.$i.disable_ipv6=1"
	done
	MG_CONF="$MG_TMP/gw.conf"
	mg_topo_write_conf "$MG_CONF" "${1:-}"
	mg_topo_start_dataplane
	mg_topo_start_control

	WGP=$(mg_topo_add_peer peer p 2 "$MG_TMP/peer.key") || mg_fail "peer"
}

# mg_topo_base : the namespaces, the WAN bridge, the gateway's two links
# (no addresses: whoever plays the gateway sets them up), the LAN host, and
# the gateway's and peer's keys (GW_PUB, PEER_PUB). Shared with the
# wireguard-go gateway of e2e_bench.sh.
mg_topo_base() {
	mg_ns_setup sw gw lan
	mg_ip sw link add br0 type bridge || mg_fail "bridge"
	mg_ip sw link set br0 up
	mg_veth sw gwport gw wan0
	mg_ip sw link set gwport master br0
	mg_veth lan veth0 gw lan0
	local n
	for n in "sw gwport" "gw wan0" "gw lan0" "lan veth0"; do
		# shellcheck disable=SC2086
		_mg_offloads_off $n
	done
	mg_addr lan veth0 10.88.0.1/24
	mg_addr lan veth0 fd88::1/64
	mg_ip lan route add 10.99.0.0/24 via 10.88.0.254
	mg_ip lan -6 route add fd99::/64 via fd88::fe
	mg_keygen "$MG_TMP" gw
	mg_keygen "$MG_TMP" peer
	GW_PUB=$(cat "$MG_TMP/gw.pub")
	PEER_PUB=$(cat "$MG_TMP/peer.pub")
}

# mg_topo_add_peer NS SUFFIX N KEYFILE : a namespace NS on the WAN bridge
# with underlay 198.18.0.N (MG_UNDERLAY=6: fd18::N only) and a wireguard-go
# (interface mg<ID>SUFFIX, tunnel 10.99.0.N, fd99::N) whose peer is the
# gateway. Prints the interface name. The gateway is not told about it.
mg_topo_add_peer() {
	local ns=$1 suffix=$2 n=$3 key=$4 ifn gw_ep=198.18.0.1:51820
	ifn=$(mg_ifname "$suffix") || return 1
	mg_ns_setup "$ns"
	mg_veth "$ns" veth0 sw "p$suffix" >&2
	mg_ip sw link set "p$suffix" master br0
	_mg_offloads_off "$ns" veth0
	_mg_offloads_off sw "p$suffix"
	if [ "${MG_UNDERLAY:-4}" = 6 ]; then
		mg_addr "$ns" veth0 "fd18::$n/64" >&2
		gw_ep="[fd18::1]:51820"
	else
		mg_addr "$ns" veth0 "198.18.0.$n/24" >&2
	fi
	mg_wggo_start "$ns" "$ifn" "$key" 51820 >&2
	mg_exec "$ns" wg set "$ifn" peer "$GW_PUB" endpoint "$gw_ep" \
		allowed-ips 10.88.0.0/24,fd88::/64 || mg_fail "wg set peer"
	mg_addr "$ns" "$ifn" "10.99.0.$n/24" >&2
	mg_addr "$ns" "$ifn" "fd99::$n/64" >&2
	mg_ip "$ns" route add 10.88.0.0/24 dev "$ifn"
	mg_ip "$ns" -6 route add fd88::/64 dev "$ifn"
	echo "$ifn"
}

# Latest handshake (unix seconds) the gateway reports for the peer.
mg_gw_handshake() {
	wg show "$MGN" latest-handshakes | awk -v k="$PEER_PUB" '$1 == k { print $2 }'
}

mg_gw_has_handshake() {
	local t
	t=$(mg_gw_handshake)
	[ -n "$t" ] && [ "$t" -gt 0 ]
}

# mg_drops REASON : the dataplane's drop counter for REASON.
mg_drops() {
	"$MG_CLI_BIN" stats "$MGN" | awk -v r="$1" '$1 == "drop" && $2 == r { print $3 }'
}
