#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""
meshgate-stund end to end: start it on 127.0.0.1 and [::1] (a port found
free on both), send it Binding requests and junk from UDP sockets, and
check the answers, the silence, and the counters it prints on SIGUSR1 and
SIGTERM. Usage: test_stund.py MESHGATE_STUND
"""
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib

MAGIC = 0x2112A442
TIMEOUT = 5.0  # for anything expected to happen
QUIET = 0.3  # how long "no answer" is awaited

passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
        print("ok   " + what)
    else:
        failed += 1
        print("FAIL " + what)
    return cond


def with_fingerprint(msg):
    """msg (header + attributes) with a FINGERPRINT appended and its length set."""
    msg = msg[:2] + struct.pack(">H", len(msg) - 20 + 8) + msg[4:]
    crc = (zlib.crc32(msg) ^ 0x5354554E) & 0xFFFFFFFF
    return msg + struct.pack(">HHI", 0x8028, 4, crc)


def message(mtype, txid, attrs=b"", fingerprint=True):
    msg = struct.pack(">HHI", mtype, len(attrs), MAGIC) + txid + attrs
    return with_fingerprint(msg) if fingerprint else msg


def attrs_of(msg):
    """{type: value} of the first attribute of each type; raises on bad framing."""
    out, off = {}, 20
    if len(msg) < 20 or struct.unpack(">H", msg[2:4])[0] != len(msg) - 20:
        raise ValueError("bad length")
    while off < len(msg):
        t, n = struct.unpack(">HH", msg[off:off + 4])
        if off + 4 + n > len(msg):
            raise ValueError("truncated attribute")
        out.setdefault(t, msg[off + 4:off + 4 + n])
        off += 4 + ((n + 3) & ~3)
    return out


def decode_addr(v, key):
    """(ip text, port) of an (XOR-)MAPPED-ADDRESS value; key b"" for the plain one."""
    fam, port = v[1], struct.unpack(">H", v[2:4])[0]
    raw = v[4:]
    if key:
        port ^= MAGIC >> 16
        raw = bytes(a ^ b for a, b in zip(raw, key))
    af = {1: socket.AF_INET, 2: socket.AF_INET6}[fam]
    return socket.inet_ntop(af, raw), port


def check_answer(resp, txid, sock, name):
    """resp is a valid Binding success answer to txid, mapping sock's address."""
    ip, port = sock.getsockname()[:2]
    try:
        a = attrs_of(resp)
        fp = resp[-4:]
        want_fp = struct.pack(">I", (zlib.crc32(resp[:-8]) ^ 0x5354554E) & 0xFFFFFFFF)
        key = struct.pack(">I", MAGIC) + txid
        got = decode_addr(a[0x0020], key)
    except (ValueError, KeyError, IndexError, struct.error) as e:
        check(False, "%s: answer well formed (%s)" % (name, e))
        return
    check(resp[:2] == b"\x01\x01" and resp[8:20] == txid, "%s: success answer to our txid" % name)
    check(fp == want_fp and 0x8028 in a, "%s: answer fingerprint verifies" % name)
    check(got == (ip, port), "%s: XOR-MAPPED-ADDRESS %s port %d is ours (%s port %d)"
          % (name, got[0], got[1], ip, port))
    if sock.family == socket.AF_INET:
        check(0x0001 in a and decode_addr(a[0x0001], b"") == (ip, port),
              "%s: MAPPED-ADDRESS too" % name)


def recv(sock, timeout):
    r, _, _ = select.select([sock], [], [], timeout)
    return sock.recv(2048) if r else None


class Stderr:
    """The server's stderr, read as it comes, without ever blocking long."""

    def __init__(self, proc):
        self.fd = proc.stderr.fileno()
        os.set_blocking(self.fd, False)
        self.text = ""

    def wait_for(self, pattern, count=1, timeout=TIMEOUT):
        end = time.monotonic() + timeout
        while len(re.findall(pattern, self.text, re.M)) < count:
            left = end - time.monotonic()
            if left <= 0:
                return False
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    return len(re.findall(pattern, self.text, re.M)) >= count
                self.text += chunk.decode(errors="replace")
        return True

    def drain(self, timeout=TIMEOUT):
        """Read to end of file (the process has exited) or timeout."""
        self.wait_for(r"(?!)", timeout=timeout)


def counters_line(pattern_counts):
    """A regex for the counters line with the given {name: n} (others any)."""
    names = ["short", "not_stun", "type", "fingerprint", "unknown_attr", "no_address",
             "bad_address"]
    parts = ["%s %s" % (n, pattern_counts.get(n, r"\d+")) for n in names]
    return (r"^stund: answered %s, dropped: " % pattern_counts.get("answered", r"\d+")
            + ", ".join(parts) + r", unsent 0$")


def have_ipv6():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def free_port(v6):
    """A UDP port free on 127.0.0.1 (and ::1 if v6), or None."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s4:
            s4.bind(("127.0.0.1", 0))
            port = s4.getsockname()[1]
            if not v6:
                return port
            try:
                with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s6:
                    s6.bind(("::1", port))
                    return port
            except OSError:
                continue
    return None


def run_quick(exe, args):
    try:
        p = subprocess.run([exe] + args, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, ""
    return p.returncode, p.stderr


def test_bad_options(exe):
    rc, err = run_quick(exe, ["--listen", "nonsense"])
    check(rc == 1 and "nonsense" in err, "bad --listen: exit 1 naming it (%r)" % err.strip())
    rc, err = run_quick(exe, ["--listen", "127.0.0.1:0"])
    check(rc == 1, "--listen port 0: exit 1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        addr = "127.0.0.1:%d" % held.getsockname()[1]
        rc, err = run_quick(exe, ["--listen", addr])
        check(rc == 1 and addr in err, "port in use: exit 1 naming it (%r)" % err.strip())


def exchange(sock, dest, name, with_ice):
    """Junk then a valid request from sock; returns how many requests were answered."""
    txid = os.urandom(12)
    good = message(0x0001, txid)
    junk = [
        ("garbage", b"\xff" * 40),  # not_stun
        ("truncated request", good[:-4]),  # short
        ("10 bytes", good[:10]),  # short
        ("bad fingerprint", good[:-1] + bytes([good[-1] ^ 1])),  # fingerprint
        ("a response", message(0x0101, os.urandom(12))),  # type
        ("CHANGE-REQUEST", message(0x0001, os.urandom(12),
                                   struct.pack(">HHI", 0x0003, 4, 6))),  # unknown_attr
    ]
    for _, pkt in junk:
        sock.sendto(pkt, dest)
    answered = 0
    if with_ice:
        # ICE-style: USERNAME, PRIORITY, MESSAGE-INTEGRITY are known and ignored.
        ice_txid = os.urandom(12)
        attrs = (struct.pack(">HH", 0x0006, 9) + b"evtj:h6vY\0\0\0"
                 + struct.pack(">HHI", 0x0024, 4, 0x6E0001FF)
                 + struct.pack(">HH", 0x0008, 20) + os.urandom(20))
        sock.sendto(message(0x0001, ice_txid, attrs), dest)
        resp = recv(sock, TIMEOUT)
        if check(resp is not None, "%s: ICE-style request answered" % name):
            answered += 1
            check_answer(resp, ice_txid, sock, name + " (ICE-style)")
    sock.sendto(good, dest)
    # Answers come in order: junk answered by mistake would arrive first.
    resp = recv(sock, TIMEOUT)
    if check(resp is not None, "%s: request answered" % name):
        answered += 1
        check_answer(resp, txid, sock, name)
    check(recv(sock, QUIET) is None, "%s: no answer to %s" % (name, ", ".join(j[0] for j in junk)))
    return answered


def session(exe, listen, targets, full):
    """
    Run the server on the listen addresses; from each of targets (family,
    bind address, server address, name) do an exchange (full: with junk and
    an ICE-style request) or one plain request; check the counters at exit.
    """
    args = [exe]
    for a in listen:
        args += ["--listen", a]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE)
    err = Stderr(proc)
    try:
        if not check(err.wait_for(r"listening on", len(listen)),
                     "server up on %s" % " ".join(listen)):
            return
        answered = 0
        for i, (af, src, dest, name) in enumerate(targets):
            with socket.socket(af, socket.SOCK_DGRAM) as s:
                s.bind((src, 0))
                s.connect(dest)
                if full:
                    answered += exchange(s, dest, name, with_ice=(i == 0))
                else:
                    answered += plain_exchange(s, dest, name)
        n = len(targets) if full else 0
        want = {"answered": str(answered), "short": str(2 * n), "not_stun": str(n),
                "type": str(n), "fingerprint": str(n), "unknown_attr": str(n),
                "no_address": "0", "bad_address": "0"}
        if full:
            proc.send_signal(signal.SIGUSR1)
            check(err.wait_for(counters_line(want)), "SIGUSR1 prints the counters")
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            rc = None
        err.drain()
        check(rc == 0, "SIGTERM: exit 0 (got %s)" % rc)
        check(len(re.findall(counters_line(want), err.text, re.M)) == (2 if full else 1),
              "SIGTERM prints the counters: " + ", ".join("%s %s" % kv for kv in want.items()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=TIMEOUT)
        if failed:
            print("--- server stderr ---\n" + err.text)


def plain_exchange(sock, dest, name):
    txid = os.urandom(12)
    sock.sendto(message(0x0001, txid), dest)
    resp = recv(sock, TIMEOUT)
    if not check(resp is not None, "%s: request answered" % name):
        return 0
    check_answer(resp, txid, sock, name)
    return 1


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: test_stund.py MESHGATE_STUND")
    exe = sys.argv[1]
    test_bad_options(exe)

    v6 = have_ipv6()
    if not v6:
        print("note: no IPv6 loopback, v6 parts skipped")
    port = free_port(v6)
    if not check(port is not None, "a free port"):
        sys.exit(1)
    # Bound to the loopback addresses: junk, counters, signals.
    listen = ["127.0.0.1:%d" % port] + (["[::1]:%d" % port] if v6 else [])
    targets = [(socket.AF_INET, "127.0.0.1", ("127.0.0.1", port), "v4")]
    if v6:
        targets.append((socket.AF_INET6, "::1", ("::1", port), "v6"))
    session(exe, listen, targets, True)

    # Wildcard listeners on one port for both families (so [::] is
    # IPV6_V6ONLY). A client connected to 127.0.0.2 accepts only answers
    # from 127.0.0.2, so the answer must leave from the address asked, not
    # the one the route to 127.0.0.1 would choose.
    port = free_port(v6)
    listen = ["0.0.0.0:%d" % port] + (["[::]:%d" % port] if v6 else [])
    targets = [(socket.AF_INET, "127.0.0.1", ("127.0.0.2", port), "wildcard v4 via 127.0.0.2")]
    if v6:
        targets.append((socket.AF_INET6, "::1", ("::1", port), "wildcard v6"))
    session(exe, listen, targets, False)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
