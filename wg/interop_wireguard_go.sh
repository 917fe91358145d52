#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Byte-exact interop of libwg with stock wireguard-go, on loopback inside a
# private network namespace:
#
#   +-------------------- netns (unshare -n) --------------------+
#   |  interop_probe (libwg)  <-- UDP 127.0.0.1 -->  wireguard-go |
#   |  10.99.0.2 (virtual)                   mgwg<pid> 10.99.0.1 |
#   +-------------------------------------------------------------+
#
#   1. probe initiates with a psk; wireguard-go answers; keys are proven by
#      an ICMP echo through the tunnel and its encrypted reply.
#   2. wireguard-go initiates (ping); probe sends a cookie reply, requires
#      the retry to carry a valid mac2, then responds; keys proven by data.
#   3. probe initiates without the psk: its consume_response must fail.
#
# usage: interop_wireguard_go.sh PATH_TO_interop_probe
# Exits 77 (skipped) without root, unshare, wireguard-go or wg.
set -eu

PROBE=$(realpath "$1")
if [ "${MG_WG_IN_NETNS:-}" != 1 ]; then
	for tool in unshare wireguard-go wg ip ping; do
		command -v "$tool" >/dev/null 2>&1 || { echo "skip: no $tool"; exit 77; }
	done
	[ "$(id -u)" = 0 ] || { echo "skip: needs root"; exit 77; }
	unshare -n true 2>/dev/null || { echo "skip: cannot unshare -n"; exit 77; }
	MG_WG_IN_NETNS=1 exec unshare -n "$0" "$@"
fi

umask 077
DIR=$(mktemp -d)
GO_PID=
PING_PID=
cleanup() {
	[ -n "$PING_PID" ] && kill "$PING_PID" 2>/dev/null
	[ -n "$GO_PID" ] && kill "$GO_PID" 2>/dev/null
	rm -rf "$DIR"
}
trap cleanup EXIT

ip link set lo up
wg genpsk >"$DIR/psk"
wg genkey >"$DIR/go.key"
GO_PUB=$(wg pubkey <"$DIR/go.key")
ME_PRIV=$(wg genkey)
ME_PUB=$(echo "$ME_PRIV" | wg pubkey)
PSK=$(cat "$DIR/psk")

# A name of this run's own: the UAPI socket directory is shared by every
# network namespace of the machine.
IF=mgwg$$
WG_PROCESS_FOREGROUND=1 wireguard-go "$IF" >"$DIR/wireguard-go.log" 2>&1 &
GO_PID=$!
i=0
until ip link show "$IF" >/dev/null 2>&1 && [ -S "/var/run/wireguard/$IF.sock" ]; do
	i=$((i + 1))
	if [ "$i" -gt 100 ]; then # 20 s: a loaded machine is slow to start it
		echo "wireguard-go did not create $IF:"; cat "$DIR/wireguard-go.log"; exit 1
	fi
	sleep 0.2
done
wg set "$IF" private-key "$DIR/go.key" listen-port 51820 \
	peer "$ME_PUB" preshared-key "$DIR/psk" allowed-ips 10.99.0.2/32
ip addr add 10.99.0.1/24 dev "$IF"
ip link set "$IF" up

fail=0
echo "== 1. probe initiates (psk)"
"$PROBE" initiate "$ME_PRIV" "$GO_PUB" "$PSK" 40000 51820 || fail=1

echo "== 2. wireguard-go initiates, probe answers with a cookie, then responds"
wg set "$IF" peer "$ME_PUB" remove
wg set "$IF" peer "$ME_PUB" preshared-key "$DIR/psk" allowed-ips 10.99.0.2/32 \
	endpoint 127.0.0.1:40001
ping -c 30 -i 0.5 -W 1 10.99.0.2 >/dev/null 2>&1 &
PING_PID=$!
"$PROBE" respond "$ME_PRIV" "$GO_PUB" "$PSK" 40001 || fail=1

echo "== 3. probe initiates without the psk: must be refused"
if "$PROBE" initiate "$ME_PRIV" "$GO_PUB" - 40002 51820; then
	fail=1
fi

wg show "$IF"
if [ "$fail" != 0 ]; then
	echo "wireguard-go log:"
	cat "$DIR/wireguard-go.log"
	echo "interop: FAILED"
	exit 1
fi
echo "interop: 3 passed, 0 failed"
