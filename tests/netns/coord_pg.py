#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Clients for tests/netns/test_coord_pg.sh: meshgate-coord replicas that
share one PostgreSQL database. Signing and HTTP come from coord/test_http.py.

usage: coord_pg.py replicas PORT_A PORT_B TOKEN_FILE
         a change through A is visible through B and the other way round, a
         signed request's nonce is shared (a replay through the other replica
         is refused), and a node long-polling one replica gets the delta of a
         policy change made through the other within 1 s
       coord_pg.py restarted PORT_A PORT_B TOKEN_FILE
         after the database server restarted under both replicas: they
         reconnect by themselves (within 5 s) and the above still holds
"""
import json, os, sys, threading, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "coord"))
import test_http as th  # noqa: E402
from test_http import Machine, check, request  # noqa: E402

WAKE_LIMIT = 1.0  # seconds, docs/coord-protocol.md "Storage"
WAKES = []  # (what, seconds)
RECOVERY = []  # (replica, seconds until a write worked after the restart)


def token(path):
    with open(path) as f:
        return f.read().strip()


class Replica:
    def __init__(self, name, port, tok):
        self.name, self.port = name, port
        self.auth = {"Authorization": "Bearer " + tok, "Content-Type": "application/json"}

    def admin(self, method, path, obj=None):
        body = json.dumps(obj).encode() if obj is not None else b""
        return request(self.port, method, "/api/v1/admin/" + path, body, self.auth)

    def node(self, m, op, obj):
        body = json.dumps(obj).encode()
        path = "/api/v1/machine/" + op
        return request(self.port, "POST", path, body, m.headers("POST", path, body))


def wait_until(pred, secs):
    t0 = time.time()
    while time.time() - t0 < secs:
        if pred():
            return time.time() - t0
        time.sleep(0.02)
    return None


def poll_across(waiter_rep, m, version, change, what):
    """m long-polls waiter_rep from version; change() runs on the other
    replica; returns the delta, checks it came within WAKE_LIMIT."""
    res = {}

    def poll():
        res["r"] = waiter_rep.node(m, "map", {"version": version})
        res["t"] = time.time()

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(0.4)  # parked
    check("r" not in res, "%s: the long poll waits" % what)
    t0 = time.time()
    change()
    t.join(30)
    st, d = res.get("r", (0, {}))
    dt = res.get("t", t0 + 99) - t0
    WAKES.append((what, dt))
    check(st == 200 and not d.get("keepalive") and d.get("version", 0) > version,
          "%s: the long poll got a new map (%s)" % (what, st))
    check(dt < WAKE_LIMIT, "%s: within %.1f s (%.3f s)" % (what, WAKE_LIMIT, dt))
    return d


def replicas(pa, pb, tok):
    A, B = Replica("A", pa, tok), Replica("B", pb, tok)

    # admin objects made through A are there through B
    check(A.admin("POST", "tailnets", {"name": "corp", "key_expiry_days": 0})[0] == 200, "A: tailnet created")
    check(A.admin("POST", "users", {"tailnet": "corp", "name": "alice@example.com"})[0] == 200, "A: user created")
    st, r = A.admin("POST", "preauthkeys", {"tailnet": "corp", "user": "alice@example.com", "reusable": True})
    check(st == 200 and r.get("key", "").startswith("mgk-"), "A: pre-auth key issued")
    key = r.get("key", "")
    st, r = B.admin("POST", "tailnets", {"name": "corp"})
    check(st == 409, "B: the tailnet made through A exists (409): %s" % r)
    st, r = B.admin("POST", "users", {"tailnet": "corp", "name": "bob@example.com"})
    check(st == 200, "B: a user in A's tailnet: %s" % r)
    st, r = A.admin("GET", "users")
    check(st == 200 and {u.get("name") for u in r} >= {"alice@example.com", "bob@example.com"},
          "A: lists B's user: %s" % r)

    # nodes: m1 registers through A (with A's key), m2 through B
    m1, m2, m3 = Machine(), Machine(), Machine()
    reg = lambda m, host: {"node_key": m.node_key, "hostname": host, "auth_key": key,
                           "endpoints": ["198.51.100.%d:51820" % (len(host) + 1)]}
    st, n1 = A.node(m1, "register", reg(m1, "n1"))
    check(st == 200, "A: node 1 registered: %s" % n1)
    st, n2 = B.node(m2, "register", reg(m2, "n22"))
    check(st == 200, "B: node 2 registered with A's pre-auth key: %s" % n2)
    st, r = B.admin("GET", "nodes")
    check(st == 200 and {n.get("id", n.get("node_id")) for n in r} >= {n1.get("node_id"), n2.get("node_id")},
          "B: lists both nodes")
    # a known machine key re-registers through the other replica: same node
    st, again = B.node(m1, "register", {"node_key": m1.node_key, "hostname": "n1"})
    check(st == 200 and again.get("node_id") == n1.get("node_id") and again.get("addresses") == n1.get("addresses"),
          "B: node 1 re-registers, same id and addresses")

    # nonces are shared: a request replayed to the other replica is refused
    body = json.dumps({"endpoints": ["198.51.100.2:51820"]}).encode()
    path = "/api/v1/machine/update"
    h = m1.headers("POST", path, body)
    check(request(pa, "POST", path, body, h)[0] == 200, "A: signed update")
    st, r = request(pb, "POST", path, body, h)
    check(st == 401 and "replayed" in r.get("error", ""), "B: the same request replayed is refused: %s" % r)

    # maps agree: node 1's full map through B has node 2 (no policy: all)
    st, full = B.node(m1, "map", {"version": 0})
    check(st == 200 and [p["node_id"] for p in full.get("peers", [])] == [n2.get("node_id")],
          "B: node 1's map has node 2")

    # a policy change through A reaches node 1 long-polling B
    pol = '{"acls": [{"action": "accept", "src": ["tag:gw"], "dst": ["autogroup:member:22"]}]}'

    def put_policy():
        st, r = A.admin("PUT", "policy", {"tailnet": "corp", "policy": pol})
        check(st == 200, "A: policy installed: %s" % r)

    d = poll_across(B, m1, full["version"], put_policy, "policy via A, poll on B")
    check(n2.get("node_id") in d.get("peers_removed", []), "B: the delta removes node 2 from node 1's peers: %s" % d)
    check("packet_filter" in d, "B: the delta carries the new packet filter")

    # and the other way: a node registered through B reaches node 2 polling A
    st, f2 = A.node(m2, "map", {"version": 0})
    check(st == 200, "A: node 2's full map")
    gwkey = A.admin("POST", "preauthkeys", {"tailnet": "corp", "user": "alice@example.com", "tags": ["tag:gw"]})[1]["key"]

    def register_gw():
        st, r = B.node(m3, "register", {"node_key": m3.node_key, "hostname": "gw", "auth_key": gwkey,
                                        "endpoints": ["203.0.113.1:51820"]})
        check(st == 200, "B: gateway registered: %s" % r)

    d = poll_across(A, m2, f2["version"], register_gw, "register via B, poll on A")
    check(any(p.get("name") == "gw" for p in d.get("peers_changed", [])), "A: the delta adds the gateway: %s" % d)

    # deletion through B is seen by A
    st, r = B.admin("DELETE", "nodes/%d" % n2["node_id"])
    check(st == 200, "B: node 2 deleted")
    dt = wait_until(lambda: A.node(m2, "map", {"version": 0})[0] == 403, 2)
    check(dt is not None, "A: refuses the deleted node's map")


def restarted(pa, pb, tok):
    A, B = Replica("A", pa, tok), Replica("B", pb, tok)

    # The first writes may fail while a replica has not noticed the server
    # is back (a refused write stores nothing, so retrying is fine).
    for r, obj in ((A, {"name": "lab", "key_expiry_days": 0}), (B, {"name": "lab2"})):
        dt = wait_until(lambda: r.admin("POST", "tailnets", obj)[0] == 200, 5)
        check(dt is not None, "%s: writes again after the database restart" % r.name)
        RECOVERY.append((r.name, dt or 99))
    check(B.admin("POST", "users", {"tailnet": "lab", "name": "carol@example.com"})[0] == 200, "B: user made")
    st, r = A.admin("POST", "preauthkeys", {"tailnet": "lab", "user": "carol@example.com", "reusable": True})
    check(st == 200, "A: pre-auth key")
    m1, m2 = Machine(), Machine()
    for rep, m, host in ((A, m1, "l1"), (B, m2, "l2")):
        st, x = rep.node(m, "register", {"node_key": m.node_key, "hostname": host, "auth_key": r.get("key")})
        check(st == 200, "%s: node %s registered: %s" % (rep.name, host, x))
    st, full = B.node(m1, "map", {"version": 0})
    check(st == 200 and len(full.get("peers", [])) == 1, "B: l1 sees l2")
    pol = '{"acls": [{"action": "accept", "src": ["tag:gw"], "dst": ["autogroup:member:22"]}]}'
    d = poll_across(B, m1, full.get("version", 0),
                    lambda: check(A.admin("PUT", "policy", {"tailnet": "lab", "policy": pol})[0] == 200,
                                  "A: policy installed"), "after restart: policy via A, poll on B")
    check(len(d.get("peers_removed", [])) == 1, "B: the delta removes l2")


def held(pa, pb, tok):
    """Replicas with a 10 s long poll and offline_seconds = 3: a node that
    long-polls B (as a gateway does, a new poll as soon as one returns) must
    stay online in A's view; A only knows it from last_seen in the database,
    so B must refresh that while the poll waits."""
    A, B = Replica("A", pa, tok), Replica("B", pb, tok)
    check(A.admin("POST", "tailnets", {"name": "edge", "key_expiry_days": 0})[0] == 200,
          "A: tailnet created")
    check(A.admin("POST", "users", {"tailnet": "edge", "name": "ops@example.com"})[0] == 200,
          "A: user created")
    key = A.admin("POST", "preauthkeys", {"tailnet": "edge", "user": "ops@example.com",
                                          "reusable": True})[1].get("key", "")
    m = Machine()
    st, n = B.node(m, "register", {"node_key": m.node_key, "hostname": "gw", "auth_key": key,
                                   "endpoints": ["198.51.100.7:51820"]})
    check(st == 200, "B: node registered: %s" % n)
    stop = threading.Event()

    def poll_loop():
        v = 0
        while not stop.is_set():
            st, d = B.node(m, "map", {"version": v})
            if st != 200:
                time.sleep(0.2)
                continue
            v = d.get("version", v)

    t = threading.Thread(target=poll_loop)
    t.start()
    seen = []
    for _ in range(16):  # 8 s: polls of 10 s, more than twice offline_seconds
        time.sleep(0.5)
        st, r = A.admin("GET", "nodes")
        seen.append(st == 200 and any(x.get("id", x.get("node_id")) == n.get("node_id") and
                                      x.get("online") for x in r))
    stop.set()
    check(all(seen), "A: the node long-polling B stayed online for 8 s: %s" %
          "".join("+" if x else "-" for x in seen))
    t.join(15)


def main():
    if len(sys.argv) == 5 and sys.argv[1] in ("replicas", "restarted", "held"):
        f = {"replicas": replicas, "restarted": restarted, "held": held}[sys.argv[1]]
        f(int(sys.argv[2]), int(sys.argv[3]), token(sys.argv[4]))
    else:
        sys.exit(__doc__)
    if RECOVERY:
        print("writes work again after the database restart: " +
              ", ".join("%s after %.0f ms" % (n, dt * 1000) for n, dt in RECOVERY))
    if WAKES:
        print("long polls woken across replicas: " +
              ", ".join("%s %.0f ms" % (w, dt * 1000) for w, dt in WAKES))
    print("%d failure(s)" % len(th.FAILS))
    for f in th.FAILS:
        print("FAILED: " + f)
    return 1 if th.FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
