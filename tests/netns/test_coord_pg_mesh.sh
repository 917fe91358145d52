#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The mesh of test_coord_mesh.sh on PostgreSQL with two meshgate-coord
# replicas (topology in coord_topo.sh): gw1 joins through replica 1, gw2
# through replica 2, the admin talks to replica 1.
#  1. the gateways find each other across replicas; routes approved through
#     replica 1 reach gw2 (on replica 2) and LAN hosts reach each other;
#  2. a policy change made through replica 1 reaches gw2, whose filter then
#     drops lan1's packets; restoring it restores traffic.
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/coord_topo.sh"

mg_test_init
. "$(dirname "$0")/../pg.sh"
mg_pg_start || { echo "SKIP: PostgreSQL is not installed"; exit 77; }
COORD_DB=$MG_PG_URL COORD_REPLICAS=2 coord_up
coord_mesh_up
echo "    replica 1 $URL (gw1, admin), replica 2 $URL2 (gw2), database on 127.0.0.1:$MG_PG_PORT"

mg_check "gw1 (replica 1) learned gw2 (replica 2)" mg_wait_for has_peer "$NAME1" gw2
mg_check "gw2 (replica 2) learned gw1 (replica 1)" mg_wait_for has_peer "$NAME2" gw1
ID1=$(node_id gw1) ID2=$(node_id gw2)
[ -n "$ID1" ] && [ -n "$ID2" ] || mg_fail "node ids"
mg_check "gw1's route approved through replica 1" admin route approve "$ID1" 10.88.0.0/24
mg_check "gw2's route approved through replica 1" admin route approve "$ID2" 10.77.0.0/24
mg_check "gw2 (replica 2) routes 10.88.0.0/24 to gw1" mg_wait_for aips_have "$NAME2" 10.88.0.0/24
mg_check "gw1 (replica 1) routes 10.77.0.0/24 to gw2" mg_wait_for aips_have "$NAME1" 10.77.0.0/24
mg_check "lan1 -> lan2 through the mesh" mg_ping lan1 10.77.0.1 5

cat >"$MG_TMP/cut.hujson" <<'EOF'
{"acls": [{"action": "accept", "src": ["10.77.0.0/24"], "dst": ["10.88.0.0/24:*"]}]}
EOF
cat >"$MG_TMP/all.hujson" <<'EOF'
{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}
EOF
t0=$(date +%s%N)
mg_check "policy change through replica 1" admin policy set corp "$MG_TMP/cut.hujson"
cut_off() { ! mg_exec lan1 ping -c 1 -W 1 10.77.0.1 >/dev/null 2>&1; }
mg_check "gw2 (replica 2) enforces it: lan1 -> lan2 dropped" mg_wait_for cut_off
echo "    in effect at gw2 after $(( ($(date +%s%N) - t0) / 1000000 )) ms (including the pings that checked)"
grep -q "packet filter" "$MG_LOG_DIR/cp2.log" || mg_fail "gw2 got no filter"
mg_check "policy restored through replica 1" admin policy set corp "$MG_TMP/all.hujson"
mg_check "lan1 -> lan2 again" mg_wait_for mg_ping lan1 10.77.0.1 2
mg_pass "two replicas on PostgreSQL serve one mesh"
