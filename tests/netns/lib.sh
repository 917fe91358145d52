# SPDX-License-Identifier: MIT
# shellcheck shell=bash disable=SC2317
#
# Helpers for meshgate's network-namespace tests.  Source it from a test:
#
#   . "$(dirname "$0")/lib.sh"
#   mg_test_init                # root or exit 77; temp dirs; cleanup trap
#   mg_ns_setup a b             # namespaces "mgt<ID>-a", "mgt<ID>-b", lo up
#   mg_veth a veth0 b veth0     # veth pair between them ("root" = root ns)
#   ...
#   mg_pass "done"              # exit 0; mg_fail "why" prints logs, exit 1
#
# Naming.  Everything a test creates carries its run id MG_ID (default: the
# test shell's PID; scripts/test passes its own):
#   namespaces           mgt<ID>-<short name>  (functions take the short name)
#   global interface /   mg<ID><suffix>        (mg_ifname SUFFIX; <= 15 chars)
#   wireguard-go names                         UAPI sockets live in the shared
#                                              /var/run/wireguard, so wg names
#                                              must be unique machine-wide
# Interfaces inside a test namespace need no unique names (veth0 is fine).
#
# Variables: MG_SRC (source root), MG_BUILD (build dir, from MESHGATE_BUILD,
# default $MG_SRC/build), MG_TMP, MG_LOG_DIR (after mg_test_init), MG_WAIT
# (mg_wait_for timeout, s), MG_KEEP=1 (keep $MG_TMP), MG_WG_LOG_LEVEL.
#
# Exit codes: 0 pass, 1 fail, 77 skip (not root / missing tool).
# Works under `set -u`; does not set any shell options itself.

# Source tree and the build under test (scripts/test exports MESHGATE_BUILD).
MG_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MG_BUILD=${MESHGATE_BUILD:-build}
case $MG_BUILD in /*) ;; *) MG_BUILD="$MG_SRC/$MG_BUILD" ;; esac

MG_ID=${MG_ID:-$$}
MG_PREFIX="mgt${MG_ID}-"
MG_WAIT=${MG_WAIT:-10}
MG_WG_RUN=${MG_WG_RUN:-/var/run/wireguard}
MG_PIDS=()          # background processes started through this library
MG_ROOT_LINKS=()    # links created in the root namespace
MG_SOCKS=()         # UAPI sockets of wireguard-go instances we started
MG_TMP=${MG_TMP:-}
MG_LOG_DIR=${MG_LOG_DIR:-}
_MG_CLEANED=0
_MG_IPERF_N=0

# ---------------------------------------------------------------- basics

_mg_log() { printf '%s\n' "$*" >&2; }

# Full namespace name for a short one; "root" stays "root".
mg_ns() {
	if [ "$1" = root ]; then echo root; else echo "${MG_PREFIX}$1"; fi
}

# mg_exec NS CMD... : run CMD inside the test namespace NS (or root).
mg_exec() {
	local ns=$1; shift
	if [ "$ns" = root ]; then "$@"; else ip netns exec "$(mg_ns "$ns")" "$@"; fi
}

# mg_ip NS ARGS... : `ip` inside NS.
mg_ip() {
	local ns=$1; shift
	if [ "$ns" = root ]; then ip "$@"; else ip -n "$(mg_ns "$ns")" "$@"; fi
}

# mg_ifname SUFFIX : a machine-wide unique interface name for this run
# (use for wireguard-go interfaces and for links in the root namespace).
mg_ifname() {
	case $1 in
	[a-zA-Z]*) ;;
	*) _mg_log "mg_ifname: suffix must start with a letter: $1"; return 1 ;;
	esac
	local n="mg${MG_ID}$1"
	if [ ${#n} -gt 15 ]; then
		_mg_log "mg_ifname: '$n' longer than 15 characters"
		return 1
	fi
	echo "$n"
}

# mg_require CMD... : skip the test (exit 77) unless every CMD is available.
mg_require() {
	local c
	for c in "$@"; do
		if ! command -v "$c" >/dev/null 2>&1; then
			echo "SKIP: '$c' not installed (run scripts/install-deps)"
			exit 77
		fi
	done
}

# mg_bg LOGNAME NS CMD... : start CMD in NS in the background, output to
# $MG_LOG_DIR/LOGNAME.log; tracked for cleanup; sets MG_LAST_PID.
mg_bg() {
	local name=$1 ns=$2; shift 2
	local cmd=("$@")
	# A plain command (not a function) so that $! is the process itself:
	# `ip netns exec` execs CMD, so killing $! kills CMD.
	[ "$ns" = root ] || cmd=(ip netns exec "$(mg_ns "$ns")" "$@")
	"${cmd[@]}" >"$MG_LOG_DIR/$name.log" 2>&1 </dev/null &
	MG_LAST_PID=$!
	MG_PIDS+=("$MG_LAST_PID")
}

# ---------------------------------------------------------------- waiting

# mg_wait_for CMD... : retry CMD every 0.2 s until it succeeds; gives up
# after MG_WAIT seconds (default 10).  Returns CMD's last status.
mg_wait_for() {
	local tries=$(( MG_WAIT * 5 + 1 )) i rc=1
	local deadline=$(( SECONDS + MG_WAIT + 1 ))
	for (( i = 0; i < tries; i++ )); do
		"$@" >/dev/null 2>&1 && return 0
		rc=$?
		[ "$SECONDS" -ge "$deadline" ] && break
		sleep 0.2
	done
	return "$rc"
}

# ---------------------------------------------------------------- setup

# mg_test_init : needs root (else exit 77); creates $MG_TMP and $MG_LOG_DIR;
# installs the cleanup trap.
mg_test_init() {
	if [ "$(id -u)" -ne 0 ]; then
		echo "SKIP: netns tests need root"
		exit 77
	fi
	mg_require ip
	mg_sweep_stale
	MG_TMP=$(mktemp -d "/tmp/mgt${MG_ID}.XXXXXX") || exit 1
	[ -n "$MG_LOG_DIR" ] || MG_LOG_DIR=$MG_TMP/logs
	mkdir -p "$MG_LOG_DIR" || exit 1
	trap mg_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# mg_ns_setup NAME... : create namespaces mgt<ID>-NAME with lo up.
mg_ns_setup() {
	local n full
	for n in "$@"; do
		full=$(mg_ns "$n")
		ip netns add "$full" || mg_fail "ip netns add $full"
		ip -n "$full" link set lo up || mg_fail "lo up in $full"
	done
}

# mg_veth NS1 IF1 NS2 IF2 : veth pair IF1 (in NS1) <-> IF2 (in NS2), both up.
# NS "root" is the root namespace; use mg_ifname names there.
mg_veth() {
	local ns1=$1 if1=$2 ns2=$3 if2=$4 peer_ns
	if [ "$ns2" = root ]; then peer_ns=$BASHPID; else peer_ns=$(mg_ns "$ns2"); fi
	mg_ip "$ns1" link add "$if1" type veth peer name "$if2" netns "$peer_ns" ||
		{ mg_fail "veth $ns1/$if1 <-> $ns2/$if2"; return 1; }
	[ "$ns1" = root ] && MG_ROOT_LINKS+=("$if1")
	[ "$ns2" = root ] && MG_ROOT_LINKS+=("$if2")
	mg_ip "$ns1" link set "$if1" up && mg_ip "$ns2" link set "$if2" up
}

# mg_addr NS IF CIDR : add an address (IPv6 without duplicate detection).
mg_addr() {
	local extra=()
	case $3 in *:*) extra=(nodad) ;; esac
	mg_ip "$1" addr add "$3" dev "$2" "${extra[@]}" ||
		{ mg_fail "address $3 on $1/$2"; return 1; }
}

# mg_keygen DIR NAME : DIR/NAME.key (0600) and DIR/NAME.pub.
mg_keygen() {
	local dir=$1 name=$2
	( umask 077 && wg genkey >"$dir/$name.key" ) || { mg_fail "wg genkey"; return 1; }
	wg pubkey <"$dir/$name.key" >"$dir/$name.pub" || { mg_fail "wg pubkey"; return 1; }
}

# mg_wggo_start NS IFNAME PRIVKEY_FILE LISTEN_PORT : run `wireguard-go -f`
# in NS (log: $MG_LOG_DIR/wggo-IFNAME.log), wait for its UAPI socket, set
# key and port, bring the link up.  IFNAME should come from mg_ifname.
mg_wggo_start() {
	local ns=$1 ifn=$2 key=$3 port=$4
	local sock="$MG_WG_RUN/$ifn.sock"
	mg_require wireguard-go wg
	MG_SOCKS+=("$sock")
	mg_bg "wggo-$ifn" "$ns" env LOG_LEVEL="${MG_WG_LOG_LEVEL:-verbose}" \
		wireguard-go -f "$ifn"
	local pid=$MG_LAST_PID
	if ! mg_wait_for test -S "$sock"; then
		mg_fail "wireguard-go $ifn in $ns: no UAPI socket $sock"
		return 1
	fi
	kill -0 "$pid" 2>/dev/null || { mg_fail "wireguard-go $ifn exited"; return 1; }
	mg_exec "$ns" wg set "$ifn" private-key "$key" listen-port "$port" ||
		{ mg_fail "wg set $ifn"; return 1; }
	mg_ip "$ns" link set "$ifn" up || { mg_fail "link up $ifn"; return 1; }
}

# ---------------------------------------------------------------- traffic

# mg_ping NS DST COUNT : ping from NS; returns ping's status.
mg_ping() {
	mg_exec "$1" timeout -k 2 $(( $3 + 10 )) ping -q -n -c "$3" -W 1 -i 0.2 "$2"
}

_mg_listening() { # NS PORT
	mg_exec "$1" ss -Hltn "sport = :$2" 2>/dev/null | grep -q .
}

# mg_iperf NS_SERVER SERVER_IP NS_CLIENT SECONDS [iperf3 client args...]
# One iperf3 run (server -1 in NS_SERVER, client --json in NS_CLIENT),
# bounded by timeouts.  Prints the receiver's throughput in Gbit/s (a bare
# number, e.g. "0.63"); JSON kept in $MG_LOG_DIR/iperf-N.json.
mg_iperf() {
	local nss=$1 ip=$2 nsc=$3 secs=$4; shift 4
	local port=${MG_IPERF_PORT:-5201}
	mg_require iperf3 python3
	_MG_IPERF_N=$(( _MG_IPERF_N + 1 ))
	local tag="iperf-$_MG_IPERF_N"
	mg_bg "$tag-server" "$nss" timeout -k 5 $(( secs + 60 )) iperf3 -s -1 -p "$port"
	local spid=$MG_LAST_PID
	if ! mg_wait_for _mg_listening "$nss" "$port"; then
		_mg_log "mg_iperf: server in $nss not listening on $port"
		kill "$spid" 2>/dev/null
		return 1
	fi
	local json="$MG_LOG_DIR/$tag.json" rc=0
	mg_exec "$nsc" timeout -k 5 $(( secs + 30 )) \
		iperf3 -c "$ip" -p "$port" -t "$secs" --json "$@" >"$json" 2>&1 || rc=$?
	# The one-off server exits after its client; do not wait forever.
	local i
	for (( i = 0; i < 25; i++ )); do
		kill -0 "$spid" 2>/dev/null || break
		sleep 0.2
	done
	kill "$spid" 2>/dev/null
	wait "$spid" 2>/dev/null
	if [ "$rc" -ne 0 ]; then
		_mg_log "mg_iperf: client exited $rc ($json)"
		return 1
	fi
	python3 - "$json" <<'EOF'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    sys.exit("mg_iperf: bad JSON: %s" % e)
if d.get("error"):
    sys.exit("mg_iperf: " + d["error"])
end = d.get("end", {})
s = end.get("sum_received") or end.get("sum") or {}
bps = s.get("bits_per_second")
if not bps:
    sys.exit("mg_iperf: no throughput in result")
print("%.2f" % (bps / 1e9))
EOF
}

# ---------------------------------------------------------------- results

# mg_check DESC CMD... : run CMD, print "ok - DESC" or "not ok - DESC"
# (with CMD's output indented: its last two lines on success, all of it on
# failure); a failure fails the test via mg_fail.
mg_check() {
	local desc=$1; shift
	local out rc=0
	out=$("$@" 2>&1) || rc=$?
	if [ "$rc" -eq 0 ]; then
		echo "ok - $desc"
		# On success only the gist: the last two non-empty lines.
		[ -n "$out" ] && printf '%s\n' "$out" | grep -v '^[[:space:]]*$' |
			tail -n 2 | sed 's/^/    /'
		return 0
	fi
	echo "not ok - $desc (exit $rc)"
	[ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/    /'
	mg_fail "$desc"
}

# mg_pass MSG : report success and end the test (exit 0).
mg_pass() {
	echo "PASS: ${1:-ok}"
	exit 0
}

# mg_fail MSG : print MSG and the logs of every started process; exit 1.
mg_fail() {
	echo "FAIL: ${1:-failed}"
	local f
	if [ -n "$MG_LOG_DIR" ] && [ -d "$MG_LOG_DIR" ]; then
		for f in "$MG_LOG_DIR"/*; do
			[ -f "$f" ] || continue
			echo "---- $(basename "$f") (last 60 lines)"
			tail -n 60 "$f"
		done
	fi
	local ns
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${MG_PREFIX}"); do
		echo "---- ip -br addr in $ns"
		ip -n "$ns" -br addr 2>&1
	done
	exit 1
}

# ---------------------------------------------------------------- cleanup

_mg_kill_pids() { # PID... : TERM, wait up to 2 s, then KILL
	local p i alive
	[ $# -gt 0 ] || return 0
	kill "$@" 2>/dev/null
	for (( i = 0; i < 10; i++ )); do
		alive=0
		for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
		[ "$alive" -eq 0 ] && break
		sleep 0.2
	done
	kill -9 "$@" 2>/dev/null
	return 0
}

# _mg_cleanup_id ID : remove everything carrying run id ID.
_mg_cleanup_id() {
	local id=$1 ns pids l s
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^mgt${id}-"); do
		# shellcheck disable=SC2046
		pids=$(ip netns pids "$ns" 2>/dev/null)
		# shellcheck disable=SC2086
		[ -n "$pids" ] && _mg_kill_pids $pids
		ip netns del "$ns" 2>/dev/null
	done
	for l in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' |
		grep -E "^mg${id}[a-zA-Z]"); do
		ip link del "$l" 2>/dev/null
	done
	for s in "$MG_WG_RUN/mg${id}"[a-zA-Z]*.sock; do
		[ -e "$s" ] && rm -f "$s"
	done
	# The dataplanes' DPDK runtime dirs (telemetry socket, multi-process
	# config) and any shared memory a killed process left behind.
	rm -rf "/var/run/dpdk/meshgate-mg${id}"[a-zA-Z]* /dev/shm/meshgate.mg"${id}"[a-zA-Z]* 2>/dev/null
	return 0
}

# mg_cleanup : kill our processes, delete our namespaces, links, sockets and
# temp dir (kept when MG_KEEP=1).  Idempotent; safe to call from anywhere,
# also from another shell with MG_ID set to sweep up after a killed test.
mg_cleanup() {
	[ "$_MG_CLEANED" -eq 1 ] && return 0
	_MG_CLEANED=1
	local p l s
	[ ${#MG_PIDS[@]} -gt 0 ] && _mg_kill_pids "${MG_PIDS[@]}"
	for p in "${MG_PIDS[@]}"; do wait "$p" 2>/dev/null; done
	for l in "${MG_ROOT_LINKS[@]}"; do ip link del "$l" 2>/dev/null; done
	for s in "${MG_SOCKS[@]}"; do rm -f "$s"; done
	_mg_cleanup_id "$MG_ID"
	if [ "${MG_KEEP:-0}" = 1 ]; then
		[ -n "$MG_TMP" ] && echo "MG_KEEP=1: kept $MG_TMP" >&2
	elif [ -n "$MG_TMP" ]; then
		rm -rf "$MG_TMP"
	else # sweeping for a test that was killed: its temp dirs
		rm -rf "/tmp/mgt${MG_ID}."??????
	fi
	return 0
}

# mg_sweep_stale : clean up after runs whose owning process is gone.
mg_sweep_stale() {
	local ids id
	ids=$( { ip netns list 2>/dev/null | awk '{print $1}' | sed -n 's/^mgt\([0-9]\+\)-.*/\1/p'
		ls "$MG_WG_RUN" 2>/dev/null | sed -n 's/^mg\([0-9]\+\)[a-zA-Z].*\.sock$/\1/p'
		ls /tmp 2>/dev/null | sed -n 's/^mgt\([0-9]\+\)\.......$/\1/p'; } |
		sort -u)
	for id in $ids; do
		[ "$id" = "$MG_ID" ] && continue
		kill -0 "$id" 2>/dev/null && continue
		_mg_cleanup_id "$id"
		[ "${MG_KEEP:-0}" = 1 ] || rm -rf "/tmp/mgt${id}."??????
	done
	return 0
}
