#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Throw bounded amounts of malformed traffic at the gateway's WAN port.

usage: garbage.py udp DST_IP PORT COUNT SEED
       garbage.py raw IFACE DST_MAC SRC_IP DST_IP PORT COUNT SEED

udp: random and truncated WireGuard messages over a normal UDP socket.
raw: hand-made Ethernet frames (bad IP headers, fragments, runts, ARP/ND
     junk) through an AF_PACKET socket. Every loop is bounded by COUNT.
"""
import random
import socket
import struct
import sys
import time


def wg_like(rng):
    kind = rng.randrange(8)
    if kind == 0:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 300)))
    if kind == 1:  # initiation of the wrong size
        n = rng.choice([0, 1, 4, 147, 149, 200])
        return bytes([1, 0, 0, 0]) + bytes(rng.getrandbits(8) for _ in range(max(0, n - 4)))
    if kind == 2:  # response / cookie of the wrong size
        t = rng.choice([2, 3])
        n = rng.choice([5, 63, 65, 91, 93])
        return bytes([t, 0, 0, 0]) + bytes(rng.getrandbits(8) for _ in range(n - 4))
    if kind == 3:  # data shorter than a keepalive
        return bytes([4, 0, 0, 0]) + bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 28)))
    if kind == 4:  # data with a random receiver index
        return bytes([4, 0, 0, 0]) + bytes(rng.getrandbits(8) for _ in range(rng.randrange(28, 200)))
    if kind == 5:  # reserved bytes set
        return bytes([rng.randrange(1, 5), 1, 2, 3]) + bytes(64)
    if kind == 6:  # unknown types
        return bytes([rng.choice([0, 5, 6, 255]), 0, 0, 0]) + bytes(40)
    # well-sized initiation full of junk (fails mac1)
    return bytes([1, 0, 0, 0]) + bytes(rng.getrandbits(8) for _ in range(144))


def cmd_udp(dst, port, count, seed):
    rng = random.Random(seed)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    deadline = time.time() + 20
    for i in range(count):
        if time.time() > deadline:
            break
        s.sendto(wg_like(rng), (dst, port))
        if i % 200 == 0:
            time.sleep(0.01)


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def ipv4(src, dst, payload, rng, mode):
    ihl, tot, frag, proto = 5, 20 + len(payload), 0, 17
    if mode == "badihl":
        ihl = rng.choice([0, 1, 4, 15])
    elif mode == "badlen":
        tot = rng.choice([0, 10, 19, tot + 100, 65535])
    elif mode == "frag":
        frag = rng.choice([0x2000, 0x0001, 0x2010])
    elif mode == "proto":
        proto = rng.choice([1, 6, 47, 255])
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, tot & 0xFFFF, 0, frag, 64, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload


def cmd_raw(iface, dst_mac, src_ip, dst_ip, port, count, seed):
    rng = random.Random(seed)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    dmac = bytes.fromhex(dst_mac.replace(":", ""))
    smac = bytes([0x02, 0x42, 0, 0, 0, 7])
    deadline = time.time() + 20
    for i in range(count):
        if time.time() > deadline:
            break
        kind = rng.randrange(7)
        if kind == 0:  # runts and junk
            frame = dmac + smac + bytes(rng.getrandbits(8) for _ in range(rng.randrange(2, 40)))
        elif kind == 1:  # ARP junk
            frame = dmac + smac + b"\x08\x06" + bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 60)))
        elif kind == 2:  # IPv6 / ND junk
            frame = dmac + smac + b"\x86\xdd" + bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 90)))
        elif kind == 3:  # unknown ethertype
            frame = dmac + smac + b"\x88\xb5" + bytes(50)
        else:
            udp = struct.pack("!HHHH", 51820, port, 8 + 40, 0) + bytes([4, 0, 0, 0]) + bytes(36)
            mode = rng.choice(["badihl", "badlen", "frag", "proto", "ok"])
            frame = dmac + smac + b"\x08\x00" + ipv4(src_ip, dst_ip, udp, rng, mode)
            if rng.random() < 0.3:
                frame = frame[: rng.randrange(14, len(frame))]
        s.send(frame)
        if i % 200 == 0:
            time.sleep(0.01)


def main():
    if len(sys.argv) == 6 and sys.argv[1] == "udp":
        cmd_udp(sys.argv[2], int(sys.argv[3]), min(int(sys.argv[4]), 100000), int(sys.argv[5]))
    elif len(sys.argv) == 9 and sys.argv[1] == "raw":
        cmd_raw(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]),
                min(int(sys.argv[7]), 100000), int(sys.argv[8]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
