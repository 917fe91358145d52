#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Key rotation under load: with test-only short timers the gateway (the
# initiator) rekeys every few seconds while an iperf3 TCP transfer runs
# through it; the transfer must complete, several handshakes must have
# happened, and no packet may be lost to a missing or rotated-out keypair.
# Topology: mg_topo.sh.
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mg_topo.sh"

mg_test_init
mg_topo_up 'testing: { rekey_after_time = 3; reject_after_time = 8; keepalive_timeout = 2; rekey_timeout = 1; };'

mg_check "gateway initiates" mg_ping lan 10.99.0.2 3
first=$(mg_gw_handshake)

# Sample the gateway's latest handshake while the transfer runs.
(
	for _ in $(seq 1 60); do
		mg_gw_handshake
		sleep 0.25
	done
) >"$MG_TMP/handshakes" 2>/dev/null &
sampler=$!
gbps=$(mg_iperf peer 10.99.0.2 lan 14) || mg_fail "iperf3 across rekeys"
echo "iperf3 LAN -> peer across rekeys: $gbps Gbit/s"
wait "$sampler"
distinct=$(sort -u "$MG_TMP/handshakes" | grep -c .)
echo "distinct handshake times seen: $distinct (first $first)"
mg_check "at least 3 handshakes during the transfer" test "$distinct" -ge 3

"$MG_CLI_BIN" stats "$MGN" | grep '^drop' | grep -v ' 0$' || true
for r in unknown_index keypair_expired decrypt_failed replay staged_overflow staged_expired; do
	mg_check "no $r drops across rekeys" test "$(mg_drops $r)" = 0
done
mg_check "still passing traffic after the transfer" mg_ping peer 10.88.0.1 3
mg_pass "rekey under load loses nothing"
