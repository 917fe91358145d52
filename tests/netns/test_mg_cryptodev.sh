#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# meshgate gateway <-> stock wireguard-go (topology in mg_topo.sh) with the
# dataplane's ChaCha20-Poly1305 on a DPDK crypto device instead of in-process
# intel-ipsec-mb:
#   dataplane: crypto = "cryptodev"; cryptodev = "crypto_aesni_mb";
#   eal_args += "--vdev=crypto_aesni_mb"
#  1. the dataplane log names the cryptodev backend ("crypto: cryptodev ...");
#  2. ping both ways, inner IPv4 and IPv6 (the gateway initiates);
#  3. a 3-second iperf3 TCP run each way over inner IPv4;
#  4. no packet failed decryption or hit a crypto error.
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mg_topo.sh"

mg_test_init
export MG_EAL_EXTRA="--vdev=crypto_aesni_mb"
export MG_DP_EXTRA='  crypto = "cryptodev"; cryptodev = "crypto_aesni_mb";'
mg_topo_up ""

# shellcheck disable=SC2317 # called through mg_check
dp_log_says_cryptodev() {
	grep -q "crypto: cryptodev" "$MG_LOG_DIR/dataplane.log"
}
mg_check "dataplane uses the cryptodev backend" mg_wait_for dp_log_says_cryptodev
grep -m1 'crypto: ' "$MG_LOG_DIR/dataplane.log" | sed 's/^/    /'
mg_check "dataplane does not use in-process ipsec-mb" \
	bash -c "! grep -q 'crypto: ipsec-mb' '$MG_LOG_DIR/dataplane.log'"

mg_check "LAN host -> peer, IPv4 (gateway initiates)" mg_ping lan 10.99.0.2 5
mg_check "gateway reports a handshake" mg_gw_has_handshake
mg_check "peer -> LAN host, IPv4" mg_ping peer 10.88.0.1 5
mg_check "peer -> LAN host, IPv6" mg_ping peer fd88::1 5
mg_check "LAN host -> peer, IPv6" mg_ping lan fd99::2 5

for dir in "lan 10.88.0.1 peer" "peer 10.99.0.2 lan"; do
	# shellcheck disable=SC2086
	set -- $dir
	gbps=$(mg_iperf "$1" "$2" "$3" 3) || mg_fail "iperf3 $3 -> $1 ($2)"
	echo "iperf3 $3 -> $1 [$2]: $gbps Gbit/s (cryptodev)"
done

stats=$("$MG_CLI_BIN" stats "$MGN") || mg_fail "meshgate stats"
echo "$stats"
for r in decrypt_failed crypto_error; do
	n=$(awk -v r="$r" '$1 == "drop" && $2 == r { print $3 }' <<<"$stats")
	mg_check "no '$r' drops (${n:-absent})" test "${n:-0}" -eq 0
done
mg_pass "meshgate with the crypto_aesni_mb cryptodev interoperates with wireguard-go"
