#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The packet filter, enforced by the gateway on what it receives from the
# tunnel (topology in mg_topo.sh; the LAN host also answers on 10.88.0.5,
# for which no rule exists). The policy (Tailscale's format, with a peer
# name as an identity):
#  1. allowed and denied TCP ports from the peer to the LAN host;
#  2. ICMP allowed where some port is open, denied elsewhere;
#  3. TCP SYN-only semantics: a LAN host's connection to the peer works
#     though no rule lets the peer reach the LAN host's port;
#  4. a UDP reply is allowed only after the LAN host sent to the peer;
#  5. a policy update under traffic: an established TCP transfer (allowed)
#     keeps going, a UDP stream the new policy denies is cut;
#  6. a policy whose tests fail is refused (the previous one stays), and so
#     is a policy with a syntax error;
#  7. drops are counted under acl_denied.
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mg_topo.sh"

SOCK="python3 $(cd "$(dirname "$0")" && pwd)/sock.py"

mg_test_init
POLICY="$MG_TMP/policy.hujson"
write_policy() { # the UDP 7000 rule present (1) or not (0)
	local udp_rule=""
	[ "$1" = 1 ] && udp_rule='{"action": "accept", "src": ["peer"], "proto": "udp", "dst": ["lanhost:7000"]},'
	cat >"$POLICY.new" <<EOF
// meshgate test policy
{
  "hosts": {"lanhost": "10.88.0.1", "lanhost6": "fd88::1"},
  "groups": {"group:ops": ["peer"]},
  "acls": [
    {"action": "accept", "src": ["group:ops"], "dst": ["lanhost:5201,5300", "lanhost6:5201"]},
    $udp_rule
  ],
  "tests": [
    {"src": "10.99.0.2", "accept": ["lanhost:5201", "lanhost:5300"], "deny": ["lanhost:22", "10.88.0.5:5201"]},
  ],
}
EOF
	mv "$POLICY.new" "$POLICY"
}
write_policy 1
mg_topo_up "control: { policy_file = \"$POLICY\"; };"
mg_ip lan addr add 10.88.0.5/24 dev veth0

mg_wait_for grep -q "policy installed" "$MG_LOG_DIR/control.log" ||
	mg_fail "policy not installed"
grep "policy" "$MG_LOG_DIR/control.log" | sed 's/^/    /'

# Servers in the LAN host and in the peer, for the whole test.
mg_bg tcp-lan lan timeout 120 $SOCK tcp-serve 5300 120
mg_bg tcp-peer peer timeout 120 $SOCK tcp-serve 8080 120
mg_bg udp-peer peer timeout 120 $SOCK echo 9000 120
sleep 1

# 1-2. TCP ports, ICMP
mg_check "LAN host -> peer ping (sets up the session)" mg_ping lan 10.99.0.2 3
mg_check "peer -> lanhost TCP 5300 allowed" mg_exec peer $SOCK tcp-connect 10.88.0.1 5300
mg_check "peer -> lanhost TCP 22 denied" bash -c "! ip netns exec $(mg_ns peer) $SOCK tcp-connect 10.88.0.1 22 2"
mg_check "peer -> 10.88.0.5 TCP 5300 denied (no rule for that host)" \
	bash -c "! ip netns exec $(mg_ns peer) $SOCK tcp-connect 10.88.0.5 5300 2"
mg_check "peer -> lanhost ping allowed (ports open there)" mg_ping peer 10.88.0.1 3
mg_check "peer -> 10.88.0.5 ping denied" bash -c "! ip netns exec $(mg_ns peer) ping -c 2 -W 1 -i 0.3 10.88.0.5"
mg_check "peer -> lanhost6 ping allowed (IPv6)" mg_ping peer fd88::1 3

# 3. SYN-only: the LAN host connects to the peer; its SYN-ACK comes back.
mg_check "LAN host -> peer TCP 8080 (replies pass: not SYNs)" mg_exec lan $SOCK tcp-connect 10.99.0.2 8080

# 4. UDP replies only after an outbound packet
mg_bg udp-lan lan timeout 10 $SOCK count 9999 4
sleep 0.5
mg_exec peer $SOCK send 10.88.0.1 9999 20 9000
sleep 4
got=$(cat "$MG_LOG_DIR/udp-lan.log")
mg_check "peer -> lanhost UDP 9999 unsolicited: denied (got ${got:-?})" test "${got:-x}" = 0
mg_check "LAN host asks the peer on UDP 9000: the reply is let in" \
	mg_exec lan $SOCK ask 10.99.0.2 9000 9999 5

# 5. update under traffic
mg_bg udp-7000 lan timeout 10 $SOCK count 7000 3
udp7000=$MG_LAST_PID
sleep 0.5
mg_exec peer $SOCK send 10.88.0.1 7000 100
wait "$udp7000"
got=$(cat "$MG_LOG_DIR/udp-7000.log")
mg_check "UDP 7000 allowed before the update (got ${got:-?} of 100)" test "${got:-0}" -ge 95
mg_bg iperf-long-server lan timeout 40 iperf3 -s -1 -p 5201
mg_wait_for _mg_listening lan 5201 || mg_fail "iperf3 server"
mg_bg iperf-long peer timeout 40 iperf3 -c 10.88.0.1 -p 5201 -t 8 --json
iperfpid=$MG_LAST_PID
sleep 3
write_policy 0
before=$(mg_drops acl_denied)
kill -HUP "$MG_CP_PID"
mg_wait_for bash -c "[ \$(grep -c 'policy installed' $MG_LOG_DIR/control.log) -ge 2 ]" ||
	mg_fail "updated policy not installed"
mg_exec peer $SOCK send 10.88.0.1 7000 100
after=$(mg_drops acl_denied)
mg_check "UDP 7000 cut by the update (acl_denied $before -> $after)" test $((after - before)) -ge 90
wait "$iperfpid"
mg_check "TCP transfer across the update completed" \
	python3 -c "import json,sys; d=json.load(open('$MG_LOG_DIR/iperf-long.log')); sys.exit(1 if d.get('error') else 0)"
mg_check "TCP 5300 still allowed after the update" mg_exec peer $SOCK tcp-connect 10.88.0.1 5300

# 6. refused policies
cat >"$POLICY" <<'EOF'
{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}],
 "tests": [{"src": "10.99.0.2", "deny": ["lanhost:22"]}]}
EOF
kill -HUP "$MG_CP_PID"
mg_wait_for grep -q "policy refused" "$MG_LOG_DIR/control.log" || mg_fail "bad policy not refused"
grep "policy refused" "$MG_LOG_DIR/control.log" | tail -1 | sed 's/^/    /'
cat >"$POLICY" <<'EOF'
{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}],
 "tests": [{"src": "10.99.0.2", "deny": ["10.88.0.1:22"]}]}
EOF
kill -HUP "$MG_CP_PID"
mg_wait_for grep -q "policy refused by the dataplane" "$MG_LOG_DIR/control.log" ||
	mg_fail "policy with failing tests not refused"
grep "refused by the dataplane" "$MG_LOG_DIR/control.log" | tail -1 | sed 's/^/    /'
mg_check "previous policy still enforced: TCP 22 denied" \
	bash -c "! ip netns exec $(mg_ns peer) $SOCK tcp-connect 10.88.0.1 22 2"
mg_check "previous policy still enforced: TCP 5300 allowed" mg_exec peer $SOCK tcp-connect 10.88.0.1 5300

"$MG_CLI_BIN" stats "$MGN" | grep -E "acl_denied|^peer" || true
mg_pass "the policy is enforced on received packets, updated live, refused when its tests fail"
