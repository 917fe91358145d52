#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Either process can restart (topology: mg_topo.sh):
#  1. the control process is killed (SIGKILL) in the middle of a TCP
#     transfer and started again: the dataplane keeps forwarding on the
#     installed keys meanwhile, the transfer completes, the new control
#     process adopts the running state and handshakes go on;
#  2. the dataplane is restarted: the control process notices, programs the
#     new one, and traffic resumes after a fresh handshake.
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mg_topo.sh"

mg_test_init
mg_topo_up

mg_check "tunnel up" mg_ping lan 10.99.0.2 3

# 1. Control restart under load.
( mg_iperf peer 10.99.0.2 lan 10 >"$MG_TMP/iperf.out" 2>&1; echo $? >"$MG_TMP/iperf.rc" ) &
iperf_job=$!
sleep 3
kill -9 "$MG_CP_PID"
wait "$MG_CP_PID" 2>/dev/null
echo "control process killed"
mg_check "dataplane forwards while control is away" mg_ping peer 10.88.0.1 5
mg_topo_start_control control2
echo "control process restarted"
wait "$iperf_job"
cat "$MG_TMP/iperf.out"
mg_check "TCP transfer survived the control restart" test "$(cat "$MG_TMP/iperf.rc")" = 0
mg_check "restarted control still lists the peer" \
	bash -c "wg show $MGN peers | grep -q '$PEER_PUB'"
mg_check "restarted control adopted the endpoint" \
	bash -c "wg show $MGN endpoints | grep -q '198.18.0.2:51820'"
mg_check "traffic both ways after the restart" mg_ping lan fd99::2 3
mg_check "restarted control can still handshake (peer re-added on the gateway)" \
	wg set "$MGN" peer "$PEER_PUB" remove
wg set "$MGN" peer "$PEER_PUB" endpoint 198.18.0.2:51820 allowed-ips 10.99.0.2/32,fd99::2/128
mg_check "LAN -> peer triggers a new handshake" mg_wait_for mg_ping lan 10.99.0.2 2
mg_check "handshake recorded" mg_gw_has_handshake

# 2. Dataplane restart.
kill "$MG_DP_PID"
wait "$MG_DP_PID" 2>/dev/null
mg_check "dataplane gone" bash -c "! test -e /dev/shm/meshgate.$MGN"
mg_topo_start_dataplane
mg_check "control re-programs the new dataplane" \
	mg_wait_for bash -c "'$MG_CLI_BIN' stats $MGN | grep -q '^peer $PEER_PUB'"
mg_check "traffic resumes (gateway handshakes again)" mg_wait_for mg_ping lan 10.99.0.2 2
mg_check "and the other way" mg_ping peer fd88::1 3
grep -E "attached|programmed|re-attach" "$MG_LOG_DIR"/control2.log
mg_pass "restarts do not lose the tunnel"
