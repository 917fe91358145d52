#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Small socket tools for the netns tests (bounded in count and time).

  sock.py count PORT SECONDS            UDP: receive for SECONDS, print the datagram count
  sock.py echo PORT SECONDS             UDP: answer every datagram to its sender, for SECONDS
  sock.py send DST PORT COUNT [SPORT [SIZE]]  UDP: send COUNT datagrams (SIZE bytes), 10 ms apart
  sock.py ask DST PORT SPORT [SECONDS]  UDP: send from SPORT and wait for an answer
                                        from DST:PORT; exit 0 if one came
  sock.py tcp-serve PORT SECONDS        TCP: accept and echo lines, for SECONDS
  sock.py tcp-connect DST PORT [SECONDS] TCP: connect, exchange a line; exit 0 if it worked
"""
import socket
import sys
import time


def sock_for(addr, port=0):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", port))
    return s


def listener(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port))
    return s


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd = argv[1]
    if cmd in ("count", "echo"):
        port, secs = int(argv[2]), float(argv[3])
        s = listener(port)
        end = time.monotonic() + secs
        n = 0
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                data, peer = s.recvfrom(2048)
            except socket.timeout:
                break
            n += 1
            if cmd == "echo":
                s.sendto(data, peer)
        print(n, flush=True)
        return 0
    if cmd == "send":
        dst, port, count = argv[2], int(argv[3]), int(argv[4])
        sport = int(argv[5]) if len(argv) > 5 else 0
        size = int(argv[6]) if len(argv) > 6 else 0
        s = sock_for(dst, sport)
        for i in range(count):
            msg = b"meshgate %d " % i
            s.sendto(msg.ljust(size, b"."), (dst, port))
            time.sleep(0.01)
        return 0
    if cmd == "ask":
        dst, port, sport = argv[2], int(argv[3]), int(argv[4])
        secs = float(argv[5]) if len(argv) > 5 else 3.0
        s = sock_for(dst, sport)
        s.connect((dst, port))
        end = time.monotonic() + secs
        while time.monotonic() < end:
            s.send(b"question")
            s.settimeout(0.5)
            try:
                s.recv(2048)
                print("answer from %s:%d" % (dst, port))
                return 0
            except (socket.timeout, ConnectionRefusedError):
                continue
        print("no answer from %s:%d" % (dst, port))
        return 1
    if cmd == "tcp-serve":
        port, secs = int(argv[2]), float(argv[3])
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::", port))
        s.listen(16)
        end = time.monotonic() + secs
        while time.monotonic() < end:
            s.settimeout(max(0.1, end - time.monotonic()))
            try:
                c, _ = s.accept()
            except socket.timeout:
                break
            c.settimeout(2)
            try:
                data = c.recv(2048)
                c.sendall(data)
            except OSError:
                pass
            c.close()
        return 0
    if cmd == "tcp-connect":
        dst, port = argv[2], int(argv[3])
        secs = float(argv[4]) if len(argv) > 4 else 3.0
        fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(secs)
        try:
            s.connect((dst, port))
            s.sendall(b"hello\n")
            ok = s.recv(64) == b"hello\n"
        except OSError as e:
            print("tcp %s:%d: %s" % (dst, port, e))
            return 1
        print("tcp %s:%d: %s" % (dst, port, "ok" if ok else "no echo"))
        return 0 if ok else 1
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
