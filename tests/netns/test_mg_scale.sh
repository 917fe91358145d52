#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# A hub with 100,000 peers (topology: mg_topo.sh, plus a load namespace):
#  1. 50,000 peers in the configuration file and 50,000 more added at run
#     time with `wg addconf` (keys from meshgate-hsload); `wg show` and the
#     dataplane list all of them;
#  2. real handshakes from initiators spread over all 100,000 complete (a
#     sample of the responses is completed on the initiator's side) while
#     the established wireguard-go peer keeps passing traffic;
#  3. the control process is killed and started again: the established
#     tunnel keeps forwarding meanwhile; the new process adopts the
#     dataplane's slots of the configured peers by key (peers added with
#     `wg set` are not in the file: gone, as with any WireGuard
#     implementation), and handshakes with the configured ones go on.
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mg_topo.sh"

PEERS=100000
HALF=$(( PEERS / 2 ))
LOAD_BIN="$MG_BUILD/wg/meshgate-hsload"
[ -x "$LOAD_BIN" ] || { echo "SKIP: $LOAD_BIN not built"; exit 77; }
mg_test_init
SEED=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
"$LOAD_BIN" config --peers "$HALF" --seed "$SEED" --format meshgate >"$MG_TMP/half.conf" ||
	mg_fail "hsload config"
"$LOAD_BIN" config --peers "$PEERS" --from "$HALF" --seed "$SEED" >"$MG_TMP/rest.conf" ||
	mg_fail "hsload config"
t0=$SECONDS
MG_EXTRA_PEERS_FILE="$MG_TMP/half.conf" MG_MAX_PEERS=$(( PEERS + 64 )) MG_EAL_MB=4096 \
	mg_topo_up
echo "gateway up with $(( HALF + 1 )) configured peers in $(( SECONDS - t0 )) s"
mg_check "tunnel up" mg_wait_for mg_ping peer 10.88.0.1 1
mg_ns_setup load
mg_veth load veth0 sw pload
mg_ip sw link set pload master br0
_mg_offloads_off load veth0
_mg_offloads_off sw pload
mg_addr load veth0 198.18.0.77/24

t0=$SECONDS
mg_check "wg addconf of $HALF more peers" wg addconf "$MGN" "$MG_TMP/rest.conf"
echo "added in $(( SECONDS - t0 )) s"
# The peers control lists, and those the dataplane holds, are exactly N.
lists() { [ "$(wg show "$MGN" peers | wc -l)" -eq "$1" ]; }
holds() { [ "$("$MG_CLI_BIN" stats "$MGN" | grep -c '^peer ')" -eq "$1" ]; }
mg_check "wg show lists all $(( PEERS + 1 ))" lists $(( PEERS + 1 ))
mg_check "the dataplane holds them all" mg_wait_for holds $(( PEERS + 1 ))

# handshakes N RATE SECONDS TAG : real handshakes from initiators 0..N-1;
# all answered, every sampled one completes.
handshakes() {
	local out="$MG_TMP/load-$4.out"
	mg_exec load "$LOAD_BIN" run --peers "$1" --seed "$SEED" --rate "$2" --seconds "$3" \
		198.18.0.1 51820 "$GW_PUB" >"$out" 2>"$MG_LOG_DIR/hsload-$4.log" || return 1
	cat "$out"
	python3 - "$out" <<'EOF'
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
ok = r["responses"] == r["sent"] and r["sampled"] > 0 and r["sampled_completed"] == r["sampled"]
sys.exit(0 if ok else 1)
EOF
}

mg_bg "ping-load" peer ping -q -n -i 0.1 -c 60 -W 1 10.88.0.1
ping_pid=$MG_LAST_PID
mg_check "handshakes over all $PEERS peers complete" handshakes "$PEERS" 2000 2 a
wait "$ping_pid"
mg_check "the established peer passed traffic meanwhile" \
	grep -q ' 0% packet loss' "$MG_LOG_DIR/ping-load.log"

kill -9 "$MG_CP_PID"
wait "$MG_CP_PID" 2>/dev/null
mg_check "dataplane forwards while control is away" mg_ping peer 10.88.0.1 3
mg_topo_start_control control2
mg_check "restarted control re-programs the dataplane" mg_wait_for \
	grep -q "dataplane programmed: $(( HALF + 1 )) peer" "$MG_LOG_DIR/control2.log"
mg_check "it lists the configured peers" lists $(( HALF + 1 ))
mg_check "the dataplane dropped the run-time ones" mg_wait_for holds $(( HALF + 1 ))
mg_check "traffic on the established tunnel" mg_ping lan 10.99.0.2 3
mg_check "handshakes with the configured peers go on" handshakes "$HALF" 2000 2 b
mg_pass "100,000 peers load and work on one gateway"
