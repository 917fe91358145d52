#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Flood a WireGuard responder with handshake initiations that carry a valid
MAC1 (so they pass the cheap check and cost the responder real work) but come
from an unknown key, and count the cookie replies (type 3) that come back.

usage: hsflood.py DST_IP PORT RESPONDER_PUBKEY_B64 COUNT SECONDS
Prints: "sent N cookies M". Bounded by COUNT and SECONDS.
"""
import base64
import hashlib
import os
import socket
import struct
import sys
import time


def main():
    dst, port, pub_b64, count, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
    pub = base64.b64decode(pub_b64)
    mac1_key = hashlib.blake2s(b"mac1----" + pub).digest()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sent = cookies = 0
    deadline = time.time() + secs
    while sent < min(count, 1000000) and time.time() < deadline:
        for _ in range(64):
            body = struct.pack("<BxxxI", 1, sent & 0xFFFFFFFF) + os.urandom(32 + 48 + 28)
            mac1 = hashlib.blake2s(body, key=mac1_key, digest_size=16).digest()
            try:
                s.sendto(body + mac1 + bytes(16), (dst, port))
                sent += 1
            except BlockingIOError:
                time.sleep(0.0005)  # socket buffer full: let it drain
                break
        try:
            while True:
                d = s.recv(2048)
                if len(d) == 64 and d[0] == 3:
                    cookies += 1
        except BlockingIOError:
            pass
    end = time.time() + 0.5
    while time.time() < end:
        try:
            d = s.recv(2048)
            if len(d) == 64 and d[0] == 3:
                cookies += 1
        except BlockingIOError:
            time.sleep(0.01)
    print("sent %d cookies %d" % (sent, cookies))


if __name__ == "__main__":
    main()
