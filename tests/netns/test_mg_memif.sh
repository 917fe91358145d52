#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The pktgen-dpdk benchmark path (README "Benchmarking with pktgen-dpdk")
# with DPDK's own dpdk-testpmd in pktgen's place. Both gateway ports are
# net_memif servers, as in config/pktgen-memif.conf; every traffic source
# and sink is a testpmd memif client (testpmd "NAME" below), one or two at
# a time, all on CPU 0 (the gateway's worker has CPU 1).
#
#  ns peer                                   ns gw
# +------------------------------+          +----------------------------------+
# | meshgate-pcap                |          | meshgate-dataplane + control     |
# |  tap0 198.18.0.2/24 (kernel) |          |  wan0 memif server 198.18.0.1/24 |
# |  testpmd "wire": net_tap <io>+--memif---+  $MG_TMP/memif-wan.sock         |
# +------------------------------+   wan    |                                  |
#   later on memif-wan: "wan-rx" (icmpecho), "replay" (net_pcap -> io)        |
#                                           |  lan0 memif server 10.88.0.254/24|
#   on memif-lan: "lan-tx" (txonly, then icmpecho)  ---memif--------+
#                                           +----------------------------------+
#
#  1. handshake: "wire" bridges a kernel tap to the wan memif; meshgate-pcap
#     handshakes through it as the benchmark peer (benchmark_no_replay),
#     writes the pcap and confirms the session with a keepalive;
#  2. encrypt direction: "lan-tx" sends UDP 10.88.0.1 -> 10.99.0.2 (the
#     peer's allowed IP) into lan; "wan-rx" counts the encrypted stream;
#  3. decrypt direction, once: "replay" plays the pcap into wan (a few
#     warm-up frames first, so the LAN next hop is resolved, then the rest);
#     every frame is decrypted and exactly that many reach "lan-tx";
#  4. decrypt direction, looped (net_pcap infinite_rx, as pktgen -s loops):
#     the counters repeat and benchmark_no_replay keeps every one of them.
# Each phase is bounded by packet counts and timeouts; counts are printed.
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mg_topo.sh"

mg_require dpdk-testpmd
mg_test_init
mg_require python3 wg tcpdump
MG_PCAP_BIN="$MG_BUILD/dataplane/meshgate-pcap"
[ -x "$MG_DP_BIN" ] && [ -x "$MG_CP_BIN" ] && [ -x "$MG_PCAP_BIN" ] ||
	mg_fail "meshgate not built in $MG_BUILD"

GW_WAN_MAC=02:6d:67:00:00:01 # meshgate-pcap's default --dst-mac
GW_LAN_MAC=02:6d:67:00:01:01
PEER_PORT=40000
N_FRAMES=1000 # in the pcap; the memif rings (1024) hold them all
N_WARM=8      # replayed first: the LAN neighbour is resolved meanwhile
RUN_SECS=3    # of each unbounded (rate) phase

# ---------------------------------------------------------------- testpmd

declare -A TP_FD TP_PID TP_GW_PORT

_tp_prefix() { echo "mgt${MG_ID}-$1"; }

# tp_start NAME NS GW-PORT EAL-ARGS... -- APP-ARGS... : an interactive
# dpdk-testpmd in NS, a memif client of the gateway's ethdev GW-PORT, whose
# commands come from a FIFO (tp_cmd). testpmd needs a forwarding lcore
# besides its main one: two lcores, both on CPU 0 (the main one sleeps in
# the command line). Waits for its telemetry socket.
tp_start() {
	local name=$1 ns=$2 fd pfx
	TP_GW_PORT[$name]=$3
	shift 3
	pfx=$(_tp_prefix "$name")
	mkfifo "$MG_TMP/tp-$name.in" || mg_fail "mkfifo"
	exec {fd}<>"$MG_TMP/tp-$name.in"
	local cmd=(dpdk-testpmd --lcores=0@0,1@0 --no-huge -m 256 --no-pci --file-prefix="$pfx"
		--log-level='*:notice' "$@" -i --total-num-mbufs=4096)
	cmd=(ip netns exec "$(mg_ns "$ns")" "${cmd[@]}")
	"${cmd[@]}" <"$MG_TMP/tp-$name.in" >>"$MG_LOG_DIR/testpmd-$name.log" 2>&1 &
	TP_PID[$name]=$!
	TP_FD[$name]=$fd
	MG_PIDS+=("$!")
	mg_wait_for test -S "/var/run/dpdk/$pfx/dpdk_telemetry.v2" ||
		mg_fail "testpmd $name did not start"
}

tp_cmd() { # NAME COMMAND
	echo "$2" >&"${TP_FD[$1]}"
}

# tp_tele NAME QUERY KEY : one value of a telemetry reply, e.g.
# tp_tele wire /ethdev/stats,0 ipackets
tp_tele() {
	_tele "/var/run/dpdk/$(_tp_prefix "$1")/dpdk_telemetry.v2" "$2" "$3"
}

# The gateway's side, by its telemetry too: gw_link_up ETHDEV.
gw_link_up() {
	[ "$(_tele "/var/run/dpdk/meshgate-$MGN/dpdk_telemetry.v2" "/ethdev/link_status,$1" \
		status)" = UP ]
}

gw_link_down() { ! gw_link_up "$1"; }

_tele() { # SOCKET QUERY KEY
	python3 - "$@" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.settimeout(5)
s.connect(sys.argv[1])
s.recv(16384)
s.send(sys.argv[2].encode())
reply = json.loads(s.recv(1 << 20).decode())
print(list(reply.values())[0][sys.argv[3]])
EOF
}

tp_rx() { tp_tele "$1" "/ethdev/stats,$2" ipackets; }
tp_tx() { tp_tele "$1" "/ethdev/stats,$2" opackets; }
tp_link_up() { [ "$(tp_tele "$1" "/ethdev/link_status,$2" status)" = UP ]; }

# tp_up NAME PORT : wait for the PORT's link. A memif client that finds the
# gateway's socket busy (its previous client still leaving) fails to start:
# start it again.
tp_up() {
	local try
	for (( try = 0; try < 10; try++ )); do
		MG_WAIT=2 mg_wait_for tp_link_up "$1" "$2" && return 0
		sleep $(( try / 3 ))
		tp_cmd "$1" "port start $2"
	done
	tp_link_up "$1" "$2"
}

# tp_go NAME PORT... : start forwarding once the PORTs are up and the memif
# connected on both ends.
tp_go() {
	local name=$1 p
	shift
	for p in "$@"; do
		if ! tp_up "$name" "$p"; then
			# DPDK 22.11's memif client sometimes cannot reconnect to a
			# server whose previous client just left ("Failed to connect
			# socket"); that is the traffic tool, not the gateway.
			grep -q "memif_connect_client(): Failed to connect" "$MG_LOG_DIR"/*.log 2>/dev/null &&
				{ echo "SKIP: testpmd $name: memif client could not reconnect (DPDK memif)"; exit 77; }
			mg_fail "testpmd $name: port $p link down"
		fi
	done
	mg_wait_for gw_link_up "${TP_GW_PORT[$name]}" ||
		mg_fail "gateway: ethdev ${TP_GW_PORT[$name]} link down"
	tp_cmd "$name" start
}

# tp_stop NAME... : quit (the memif disconnects) and forget them. Every
# other testpmd must have stopped forwarding first (tp_cmd NAME stop): while
# one busy-polls CPU 0, reaping an exited one (this shell's wait(), in the
# kernel's release_task) was seen to take up to a minute.
tp_stop() {
	local name pid fd i
	for name in "$@"; do
		tp_cmd "$name" stop
		tp_cmd "$name" quit
	done
	for name in "$@"; do
		pid=${TP_PID[$name]}
		for (( i = 0; i < 50; i++ )); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.2
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "testpmd $name did not quit; killing it" >&2
			_mg_kill_pids "$pid"
		fi
		wait "$pid" 2>/dev/null
		fd=${TP_FD[$name]}
		exec {fd}>&-
		rm -f "$MG_TMP/tp-$name.in"
		rm -rf "/var/run/dpdk/$(_tp_prefix "$name")"
		# The gateway has seen the client go: its port is free again.
		mg_wait_for gw_link_down "${TP_GW_PORT[$name]}" ||
			mg_fail "gateway: ethdev ${TP_GW_PORT[$name]} still connected"
	done
}

# wait_at_least SECS CMD MIN : until CMD prints a number >= MIN.
_ge() { local v; v=$("${@:1:$#-1}") && [ "$v" -ge "${!#}" ]; }
wait_at_least() {
	local secs=$1
	shift
	MG_WAIT=$secs mg_wait_for _ge "$@"
}

# ---------------------------------------------------------------- gateway

# peer_stat FIELD : the benchmark peer's counter from `meshgate stats`.
peer_stat() {
	"$MG_CLI_BIN" stats "$MGN" | awk -v f="$1" '$1 == "peer" {
		for (i = 2; i < NF; i++) if ($i == f) print $(i + 1) }'
}

# The gateway's non-zero counters, indented.
show_stats() {
	"$MG_CLI_BIN" stats "$MGN" | awk '$1 == "port" || $1 == "peer" || ($1 == "drop" && $3 != 0) {
		print "    " $0 }'
}

memif_dev() { # ETHDEV-NAME SOCKET ROLE [MAC]
	echo "$1,role=$3,id=0,socket=$MG_TMP/$2,socket-abstract=no${4:+,mac=$4}"
}

write_conf() {
	cat >"$MG_CONF" <<CONF
meshgate: {
  name = "$MGN";
  private_key_file = "$MG_TMP/gw.key";
  listen_port = 51820;
  max_peers = 16;
};
dataplane: {
  eal_args = ["--no-huge", "-m", "512", "--no-pci", "--log-level=*:notice"];
  main_lcore = 0;
  workers = [1];
  mbufs = 8192;
  ports = (
    { name = "wan0"; role = "wan"; addresses = ["198.18.0.1/24"];
      device = "$(memif_dev net_memif0 memif-wan.sock server $GW_WAN_MAC)"; },
    { name = "lan0"; role = "lan"; addresses = ["10.88.0.254/24"];
      device = "$(memif_dev net_memif1 memif-lan.sock server $GW_LAN_MAC)"; }
  );
};
peers = (
  { name = "bench"; public_key = "$BENCH_PUB"; allowed_ips = ["10.99.0.2/32"];
    benchmark_no_replay = true; }
);
testing: { allow_benchmark_no_replay = true; };
CONF
}

# split_pcap IN WARM REST N : the first N records to WARM, the others to
# REST; also checks every record is a WireGuard data frame to the gateway,
# counters in order. Prints the record count.
split_pcap() {
	python3 - "$@" <<'EOF'
import struct, sys
src, warm, rest, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
data = open(src, "rb").read()
magic, _, _, _, _, _, link = struct.unpack("<IHHiIII", data[:24])
assert magic == 0xa1b2c3d4 and link == 1, "not an Ethernet pcap"
recs, off = [], 24
while off < len(data):
    incl = struct.unpack("<I", data[off + 8:off + 12])[0]
    frame = data[off + 16:off + 16 + incl]
    udp = frame[34:42]
    assert frame[12:14] == b"\x08\x00" and frame[23] == 17, "not IPv4/UDP"
    assert struct.unpack(">H", udp[2:4])[0] == 51820, "not to the listen port"
    assert frame[42] == 4, "not a WireGuard data message"
    assert struct.unpack("<Q", frame[50:58])[0] == len(recs), "counter out of order"
    recs.append(data[off:off + 16 + incl])
    off += 16 + incl
for path, part in ((warm, recs[:n]), (rest, recs[n:])):
    with open(path, "wb") as f:
        f.write(data[:24] + b"".join(part))
print(len(recs))
EOF
}

# ---------------------------------------------------------------- setup

MGN=$(mg_ifname g) || mg_fail "name"
MG_SOCKS+=("/var/run/wireguard/$MGN.sock")
MG_CONF="$MG_TMP/gw.conf"
mg_ns_setup gw peer
mg_keygen "$MG_TMP" gw
mg_keygen "$MG_TMP" bench
GW_PUB=$(cat "$MG_TMP/gw.pub")
BENCH_PUB=$(cat "$MG_TMP/bench.pub")
write_conf
cleanup_dpdk_dirs() {
	rm -rf "/var/run/dpdk/meshgate-$MGN" "/var/run/dpdk/mgt${MG_ID}-"*
}
trap 'mg_cleanup; cleanup_dpdk_dirs' EXIT

mg_topo_start_dataplane
mg_wait_for grep -q "dataplane running" "$MG_LOG_DIR/dataplane.log" ||
	mg_fail "dataplane did not come up"
mg_topo_start_control
mg_check "control warns: replay protection off, at start" \
	grep "BENCHMARK MODE.*replay protection OFF.*configured" "$MG_LOG_DIR/control.log"
mg_check "control warns: replay protection off, when programming the peer" \
	mg_wait_for grep -q "BENCHMARK MODE.*programmed into the dataplane" \
	"$MG_LOG_DIR/control.log"

# ---------------------------------------------------------------- 1. handshake

tp_start wire peer 0 --vdev="$(memif_dev net_memif0 memif-wan.sock client)" \
	--vdev=net_tap0,iface=tap0 -- --forward-mode=io
mg_wait_for mg_ip peer link show tap0 || mg_fail "no tap0"
mg_exec peer sysctl -qw net.ipv6.conf.tap0.disable_ipv6=1
mg_ip peer link set tap0 up
mg_addr peer tap0 198.18.0.2/24
tp_go wire 0 1
TAP_MAC=$(mg_ip peer -br link show tap0 | awk '{ print $3 }')

mg_check "meshgate-pcap: handshake, $N_FRAMES frames, keepalive" \
	mg_exec peer timeout 30 "$MG_PCAP_BIN" --peer-key "$MG_TMP/bench.key" \
	--gateway-key "$GW_PUB" --gateway 198.18.0.1:51820 --bind "198.18.0.2:$PEER_PORT" \
	--src-mac "$TAP_MAC" --dst-mac "$GW_WAN_MAC" --inner-src 10.99.0.2 \
	--inner-dst 10.88.0.1 --size 64 --count "$N_FRAMES" --out "$MG_TMP/bench.pcap" \
	--keepalive-out
mg_check "gateway has the session, confirmed by the keepalive" \
	mg_wait_for _ge peer_stat rx_packets 1
n=$(split_pcap "$MG_TMP/bench.pcap" "$MG_TMP/warm.pcap" "$MG_TMP/main.pcap" "$N_WARM") ||
	mg_fail "bad pcap"
mg_check "pcap: $n WireGuard data frames, counters 0..$((n - 1))" test "$n" = "$N_FRAMES"
mg_check "tcpdump reads it" bash -c "tcpdump -nn -r '$MG_TMP/bench.pcap' 2>/dev/null |
	grep -c '198.18.0.2.$PEER_PORT > 198.18.0.1.51820: UDP' | grep -qx $N_FRAMES"
tp_stop wire

# ---------------------------------------------------------------- 2. encrypt

tp_start wan-rx gw 0 --vdev="$(memif_dev net_memif0 memif-wan.sock client)" -- \
	--forward-mode=icmpecho
tp_start lan-tx gw 1 --vdev="$(memif_dev net_memif0 memif-lan.sock client)" -- \
	--forward-mode=txonly --tx-ip=10.88.0.1,10.99.0.2 --eth-peer="0,$GW_LAN_MAC" --txpkts=64
tp_go wan-rx 0
w0=$(tp_rx wan-rx 0)
g0=$(peer_stat tx_packets)
tp_go lan-tx 0
sleep "$RUN_SECS"
tp_cmd lan-tx stop
sleep 1 # the rings drain
tp_cmd wan-rx stop
sent=$(tp_tx lan-tx 0)
enc=$(( $(peer_stat tx_packets) - g0 ))
wan=$(( $(tp_rx wan-rx 0) - w0 ))
echo "encrypt: testpmd sent $sent into lan; gateway encrypted $enc for the peer;" \
	"testpmd counted $wan on wan ($((wan / RUN_SECS)) pps)"
show_stats
mg_check "encrypt: the gateway encrypted for the benchmark peer" test "$enc" -gt 1000
mg_check "encrypt: the encrypted stream arrived on wan" test "$wan" -gt 1000
mg_check "encrypt: no more on wan than the gateway sent" test "$wan" -le $((enc + 10))
# The LAN client stays connected and becomes the decrypt direction's sink:
# a memif client reconnecting right after another one left sometimes fails.
tp_stop wan-rx
tp_cmd lan-tx "set fwd icmpecho"
tp_cmd lan-tx "clear port stats all"

# ---------------------------------------------------------------- 3. decrypt, once

# replay_start PCAP [net_pcap options] : testpmd "replay" plays PCAP into wan.
# It is the third memif client of the gateway's wan socket in a row: when
# DPDK's memif client does not come up even after its port restarts, a
# new testpmd is started (twice at most) before tp_go gives up.
replay_start() {
	local attempt
	for (( attempt = 1; ; attempt++ )); do
		tp_start replay gw 0 --vdev="net_pcap0,rx_pcap=$1${2:+,$2}" \
			--vdev="$(memif_dev net_memif1 memif-wan.sock client)" -- \
			--forward-mode=io --no-flush-rx
		[ "$attempt" -ge 3 ] || tp_up replay 1 && break
		echo "    testpmd replay: memif link down; starting it again"
		tp_stop replay
		sleep 1
	done
	tp_go replay 1
}

# (lan-tx stops forwarding whenever a replay testpmd quits: see tp_stop.)
tp_go lan-tx 0
replay_start "$MG_TMP/warm.pcap"
mg_check "decrypt: warm-up frames decrypted" \
	wait_at_least 10 peer_stat rx_packets $((1 + N_WARM)) # (1: the keepalive)
mg_check "decrypt: warm-up frames on the LAN (next hop resolved)" \
	wait_at_least 10 tp_rx lan-tx 0 "$N_WARM"
# (Progress lines: CI once saw this phase time out with no clue where.)
echo "    stopping the warm-up replay"
tp_cmd lan-tx stop
tp_stop replay

main=$((N_FRAMES - N_WARM))
r1=$(peer_stat rx_packets)
l1=$(tp_rx lan-tx 0)
tp_cmd lan-tx start
echo "    replaying $main frames once"
replay_start "$MG_TMP/main.pcap"
echo "    replay running"
wait_at_least 15 tp_rx lan-tx 0 $((l1 + main))
sleep 0.5
dec=$(( $(peer_stat rx_packets) - r1 ))
lan=$(( $(tp_rx lan-tx 0) - l1 ))
played=$(tp_rx replay 0)
fwd=$(tp_tx replay 1)
echo "decrypt once: testpmd played $played frames and sent $fwd into wan; gateway decrypted" \
	"$dec; testpmd counted $lan on lan"
show_stats
mg_check "decrypt: the pcap was played once, all into wan" \
	test "$played" = "$main" -a "$fwd" = "$main"
mg_check "decrypt: the gateway authenticated every frame" test "$dec" = "$main"
# (+2: a neighbour refresh may add ARP requests)
mg_check "decrypt: every frame reached the LAN" \
	test "$lan" -ge "$main" -a "$lan" -le $((main + 2))
tp_cmd lan-tx stop
tp_stop replay

# ---------------------------------------------------------------- 4. decrypt, looped

replay0=$(mg_drops replay)
r2=$(peer_stat rx_packets)
l2=$(tp_rx lan-tx 0)
tp_cmd lan-tx start
replay_start "$MG_TMP/main.pcap" infinite_rx=1
sleep "$RUN_SECS"
tp_cmd replay stop
sleep 1
tp_cmd lan-tx stop
dec=$(( $(peer_stat rx_packets) - r2 ))
lan=$(( $(tp_rx lan-tx 0) - l2 ))
replays=$(( $(mg_drops replay) - replay0 ))
echo "decrypt looped: gateway decrypted $dec ($((dec / RUN_SECS)) pps, the pcap $((dec / main))" \
	"times over); testpmd counted $lan on lan; replay drops $replays"
show_stats
[ "$replays" = 0 ] ||
	echo "replay drops for a benchmark_no_replay peer: the decap stage did not skip the" \
		"replay window (dp_peer.no_replay)"
mg_check "looped: benchmark_no_replay kept every repeat (no replay drops)" test "$replays" = 0
mg_check "looped: counters repeated past the window" test "$dec" -gt $((2 * main))
mg_check "looped: decrypted traffic reached the LAN" test "$lan" -gt $((2 * main))
tp_stop replay lan-tx

mg_pass "pktgen path: handshake, encrypt and decrypt directions over net_memif"
