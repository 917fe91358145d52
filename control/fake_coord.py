#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A tiny stand-in for meshgate-coord (docs/coord-protocol.md), for
test_coord_e2e.sh: plain HTTP on 127.0.0.1, python3 stdlib only (signatures
are verified too when python3-cryptography is installed).

Node API: register, map (long poll, full/delta), update, logout, with the
signed-request checks (headers, body hash, timestamp window, nonce replay).
Test hooks: POST /test/peer {"node_id", "node_key", "allowed_ips",
"endpoints"} adds or changes a peer (a delta), /test/remove {"node_id"},
/test/fail {"on": bool} makes every node call fail with 503,
/test/key_life {"seconds": N} sets the key lifetime given at registration,
/test/filter {"rules": [RULE...]} replaces the packet filter (a delta),
GET /test/stats the counters. Prints the port it listens on, then serves.
"""
import base64
import hashlib
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
except ImportError:  # signatures then only checked for shape
    Ed25519PublicKey = None

LOCK = threading.Condition()
S = {
    "version": 1,
    "nodes": {},  # mkey -> node
    "peers": {},  # node_id -> PEER (fake other nodes)
    "changes": [],  # (version, node_id or -node_id for removal)
    "fail": False,
    "key_life": 0,
    "nonces": set(),
    "stats": {"register": 0, "register_with_auth": 0, "map": 0, "map_delta": 0,
              "update": 0, "logout": 0, "bad_sig": 0, "last_endpoints": [],
              "last_routes": [], "node_keys": []},
}
S["filter"] = [{"family": 4, "proto": 0, "src": "100.64.0.0/10", "dst": "100.64.0.0/10",
           "ports": [0, 65535]}]


def verify(h, method, path, body):
    mk, ts, nonce, sig = (h.get("X-Meshgate-" + k) for k in
                          ("Machine", "Timestamp", "Nonce", "Signature"))
    if not (mk and ts and nonce and sig) or not mk.startswith("mkey:"):
        return None, "missing X-Meshgate headers"
    if abs(int(ts) - time.time()) > 120:
        return None, "stale timestamp"
    if len(nonce) != 32 or (mk, nonce) in S["nonces"]:
        return None, "replayed nonce"
    msg = "meshgate-v1\n%s\n%s\n%s\n%s\n%s" % (method, path, ts, nonce,
                                             hashlib.sha256(body).hexdigest())
    pub, raw = base64.b64decode(mk[5:]), base64.b64decode(sig)
    if len(pub) != 32 or len(raw) != 64:
        return None, "bad key or signature size"
    if Ed25519PublicKey:
        try:
            Ed25519PublicKey.from_public_bytes(pub).verify(raw, msg.encode())
        except Exception:
            return None, "bad signature"
    S["nonces"].add((mk, nonce))
    return mk, None


def self_of(n):
    return {"node_id": n["id"], "name": n["name"], "node_key": n["key"],
            "addresses": n["addresses"], "key_expiry": n["expiry"], "tags": [],
            "primary_routes": n["routes"]}


def full_map(n):
    return {"version": S["version"], "full": True, "self": self_of(n),
            "peers": list(S["peers"].values()), "packet_filter": S["filter"], "derp_map": {}}


def delta(n, since):
    changed, removed = [], []
    for v, nid in S["changes"]:
        if v <= since:
            continue
        if nid > 0 and nid in S["peers"]:
            changed.append(S["peers"][nid])
        elif nid < 0:
            removed.append(-nid)
    out = {"version": S["version"], "full": False, "peers_changed": changed,
           "peers_removed": removed}
    if S.get("filter_version", 0) > since:
        out["packet_filter"] = S["filter"]
    if n.get("self_version", 0) > since:
        out["self"] = self_of(n)
    return out


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        with LOCK:
            self.send(200, S["stats"] if self.path == "/test/stats" else {"error": "no"})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            return self.send(400, {"error": "bad JSON"})
        if self.path.startswith("/test/"):
            return self.test_hook(req)
        with LOCK:
            if S["fail"]:
                return self.send(503, {"error": "down for a test"})
            mk, why = verify(self.headers, "POST", self.path, body)
            if not mk:
                S["stats"]["bad_sig"] += 1
                return self.send(401, {"error": why})
            n = S["nodes"].get(mk)
            if self.path == "/api/v1/machine/register":
                return self.register(mk, n, req)
            if not n:
                return self.send(401, {"error": "unknown machine key"})
            if self.path == "/api/v1/machine/map":
                return self.map(n, req)
            if self.path == "/api/v1/machine/update":
                S["stats"]["update"] += 1
                n["key"] = req["node_key"]
                S["stats"]["node_keys"].append(n["key"])
                n["expiry"] = int(time.time()) + 3600
                S["version"] += 1
                n["self_version"] = S["version"]
                LOCK.notify_all()
                return self.send(200, {"key_expiry": n["expiry"]})
            if self.path == "/api/v1/machine/logout":
                S["stats"]["logout"] += 1
                return self.send(200, {})
        self.send(404, {"error": "no such path"})

    def register(self, mk, n, req):
        S["stats"]["register"] += 1
        if "auth_key" in req:
            S["stats"]["register_with_auth"] += 1
        if not n and req.get("auth_key") != "mgk-good":
            return self.send(403, {"error": "invalid pre-auth key"})
        if not n:
            nid = 12 + len(S["nodes"])
            n = {"id": nid, "addresses": ["100.64.0.%d/32" % nid, "fd7a:115c:a1e0::%x/128" % nid]}
            S["nodes"][mk] = n
        n["name"] = req.get("hostname", "node")
        n["key"] = req["node_key"]
        n["routes"] = req.get("routes", [])
        n["expiry"] = int(time.time()) + S["key_life"] if S["key_life"] else 0
        S["stats"]["node_keys"].append(n["key"])
        self.send(200, {"node_id": n["id"], "name": n["name"], "addresses": n["addresses"],
                        "key_expiry": n["expiry"], "tailnet": "test"})

    def map(self, n, req):
        S["stats"]["map"] += 1
        S["stats"]["last_endpoints"] = req.get("endpoints", [])
        S["stats"]["last_routes"] = req.get("routes", [])
        since = req.get("version", 0)
        if since == 0 or since > S["version"]:
            return self.send(200, full_map(n))
        LOCK.wait_for(lambda: S["version"] > since or S["fail"], timeout=3)
        if S["fail"]:
            return self.send(503, {"error": "down for a test"})
        if S["version"] == since:
            return self.send(200, {"version": since, "keepalive": True})
        S["stats"]["map_delta"] += 1
        self.send(200, delta(n, since))

    def test_hook(self, req):
        with LOCK:
            if self.path == "/test/peer":
                p = {"name": "peer%d" % req["node_id"], "addresses": req["allowed_ips"][:1],
                     "online": True, "key_expiry": 0, "plain_wireguard": False,
                     "endpoints": [], **req}
                S["peers"][req["node_id"]] = p
                S["version"] += 1
                S["changes"].append((S["version"], req["node_id"]))
            elif self.path == "/test/remove":
                S["peers"].pop(req["node_id"], None)
                S["version"] += 1
                S["changes"].append((S["version"], -req["node_id"]))
            elif self.path == "/test/fail":
                S["fail"] = req["on"]
            elif self.path == "/test/filter":
                S["filter"] = req["rules"]
                S["version"] += 1
                S["filter_version"] = S["version"]
            elif self.path == "/test/key_life":
                S["key_life"] = req["seconds"]
            LOCK.notify_all()
            self.send(200, {"version": S["version"]})


def main():
    srv = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0), H)
    srv.daemon_threads = True
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
