#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""HTTP-level test of meshgate-coord: the node and admin APIs end to end, and
every refusal (wrong/expired/used pre-auth key, replayed request, bad
signature, skewed clock, oversized and malformed bodies, a node speaking for
another) answered with a clear JSON error and nothing stored.

usage: test_http.py PATH/TO/meshgate-coord      (stdlib only: Ed25519 below
is RFC 8032's reference code, slow but plenty for a few dozen signatures)
"""
import base64, hashlib, http.client, json, os, shutil, socket, subprocess, sys, tempfile, threading, time

# ---- RFC 8032 Ed25519 (reference implementation) ----
P = 2**255 - 19
Q = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
I = pow(2, (P - 1) // 4, P)

def _add(a, b):
    A = (a[1] - a[0]) * (b[1] - b[0]) % P
    B = (a[1] + a[0]) * (b[1] + b[0]) % P
    C = 2 * a[3] * b[3] * D % P
    Dd = 2 * a[2] * b[2] % P
    E, F, G, H = B - A, Dd - C, Dd + C, B + A
    return (E * F, G * H, F * G, E * H)

def _mul(s, p):
    r = (0, 1, 1, 0)
    while s:
        if s & 1:
            r = _add(r, p)
        p = _add(p, p)
        s >>= 1
    return r

def _recover_x(y, sign):
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P)
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * I % P
    if x & 1 != sign:
        x = P - x
    return x

_gy = 4 * pow(5, P - 2, P) % P
_gx = _recover_x(_gy, 0)
G = (_gx, _gy, 1, _gx * _gy % P)

def _compress(p):
    zi = pow(p[2], P - 2, P)
    x, y = p[0] * zi % P, p[1] * zi % P
    return int.to_bytes(y | ((x & 1) << 255), 32, "little")

def _expand(secret):
    h = hashlib.sha512(secret).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return a, h[32:]

def ed_public(secret):
    return _compress(_mul(_expand(secret)[0], G))

def ed_sign(secret, msg):
    a, prefix = _expand(secret)
    A = _compress(_mul(a, G))
    r = int.from_bytes(hashlib.sha512(prefix + msg).digest(), "little") % Q
    R = _compress(_mul(r, G))
    h = int.from_bytes(hashlib.sha512(R + A + msg).digest(), "little") % Q
    return R + int.to_bytes((r + h * a) % Q, 32, "little")

# ---- harness ----
FAILS = []

def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILS.append(what)

class Machine:
    def __init__(self):
        self.secret = os.urandom(32)
        self.mkey = "mkey:" + base64.b64encode(ed_public(self.secret)).decode()
        self.node_key = base64.b64encode(os.urandom(32)).decode()

    def headers(self, method, path, body, ts=None, nonce=None, mkey=None):
        ts = int(time.time()) if ts is None else ts
        nonce = nonce or os.urandom(16).hex()
        msg = "meshgate-v1\n%s\n%s\n%d\n%s\n%s" % (method, path, ts, nonce, hashlib.sha256(body).hexdigest())
        return {"X-Meshgate-Machine": mkey or self.mkey, "X-Meshgate-Timestamp": str(ts),
                "X-Meshgate-Nonce": nonce,
                "X-Meshgate-Signature": base64.b64encode(ed_sign(self.secret, msg.encode())).decode(),
                "Content-Type": "application/json"}

def request(port, method, path, body=b"", headers=None, timeout=40):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    try:
        return r.status, json.loads(data)
    except ValueError:
        return r.status, {"raw": data.decode(errors="replace")}

def main():
    binary = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="coord-http-")
    tok = base64.b64encode(os.urandom(33)).decode()
    with open(os.path.join(tmp, "token"), "w") as f:
        f.write(tok + "\n")
    os.chmod(os.path.join(tmp, "token"), 0o600)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    # MG_PG_URL (tests/pg.sh) runs the same test on PostgreSQL
    dburl = os.environ.get("MG_PG_URL") or "sqlite:%s/coord.db" % tmp
    with open(os.path.join(tmp, "coord.conf"), "w") as f:
        f.write('listen = "127.0.0.1:%d";\ndatabase = "%s";\nadmin_token_file = "%s/token";\n'
                'testing = { insecure_http = true; };\nlimits = { rate_per_machine = 1000.0; burst_per_machine = 1000.0;'
                ' rate_per_ip = 10000.0; burst_per_ip = 10000.0; long_poll_seconds = 3; };\n'
                'derp_regions = ( { id = 1; server = "198.51.100.10:3340"; public_key = "%s"; },\n'
                '  { id = 2; server = "[2001:DB8::20]:443"; tls = true; server_name = "derp2.example.com"; } );\n'
                % (port, dburl, tmp, DERP_KEY))
    log = open(os.path.join(tmp, "log"), "w")
    srv = subprocess.Popen([binary, "-c", os.path.join(tmp, "coord.conf")], stdout=log, stderr=log)
    try:
        for _ in range(100):
            try:
                if request(port, "GET", "/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.05)
        held_poll = run(port, tok)
        stop_with_held_poll(srv, held_poll, os.path.join(tmp, "log"))
    finally:
        srv.terminate()
        srv.wait()
        log.close()
        if FAILS:
            print(open(os.path.join(tmp, "log")).read()[-4000:])
    run_limits(binary, tmp, tok)
    if not FAILS:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d failure(s)" % len(FAILS))
    return 1 if FAILS else 0

# the main server's derp_regions, and the derp_map every full map must carry
DERP_KEY = base64.b64encode(bytes(range(32))).decode()
DERP_MAP = {"regions": [
    {"id": 1, "server": "198.51.100.10:3340", "public_key": DERP_KEY, "tls": False},
    {"id": 2, "server": "[2001:db8::20]:443", "tls": True, "server_name": "derp2.example.com"}]}

def peer_of(peers, node_id):
    for p in peers:
        if p["node_id"] == node_id:
            return p
    return None

def run(port, tok):
    A = {"Authorization": "Bearer " + tok, "Content-Type": "application/json"}

    def admin(method, path, obj=None):
        return request(port, method, "/api/v1/admin/" + path, json.dumps(obj).encode() if obj is not None else b"", A)

    def node(m, op, obj, **kw):
        body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        path = "/api/v1/machine/" + op
        return request(port, "POST", path, body, m.headers("POST", path, body, **kw))

    def n_nodes():
        return len(admin("GET", "nodes")[1])

    # admin basics and their refusals
    st, r = request(port, "GET", "/api/v1/admin/nodes", b"", {"Authorization": "Bearer wrong"})
    check(st == 401 and "token" in r.get("error", ""), "admin: wrong token refused (401)")
    check(admin("POST", "tailnets", {"name": "corp", "key_expiry_days": 180})[0] == 200, "admin: tailnet created")
    st, r = admin("POST", "tailnets", {"name": "corp"})
    check(st == 409 and "exists" in r["error"], "admin: duplicate tailnet refused (409)")
    st, r = admin("POST", "tailnets", {"name": "x", "bogus": 1})
    check(st == 400 and "unknown key" in r["error"], "admin: unknown key refused")
    check(admin("POST", "users", {"tailnet": "corp", "name": "alice@example.com"})[0] == 200, "admin: user created")
    st, r = admin("POST", "users", {"tailnet": "nope", "name": "bob@example.com"})
    check(st == 404 and "no tailnet" in r["error"], "admin: user in unknown tailnet refused (404)")
    one = admin("POST", "preauthkeys", {"tailnet": "corp", "user": "alice@example.com"})[1]["key"]
    reuse = admin("POST", "preauthkeys", {"tailnet": "corp", "user": "alice@example.com", "reusable": True})[1]["key"]
    gwkey = admin("POST", "preauthkeys", {"tailnet": "corp", "user": "alice@example.com", "reusable": True,
                                          "tags": ["tag:gw"]})[1]["key"]
    short = admin("POST", "preauthkeys", {"tailnet": "corp", "user": "alice@example.com", "expires_in": 1})[1]["key"]
    check(one.startswith("mgk-"), "admin: pre-auth key issued")
    keys = admin("GET", "preauthkeys")[1]
    check(all("key" not in k for k in keys), "admin: listing never shows keys")

    # registration refusals: nothing stored
    m1, m2, m3 = Machine(), Machine(), Machine()
    reg = lambda m, key, host: {"node_key": m.node_key, "hostname": host, "auth_key": key,
                                "endpoints": ["198.51.100.7:51820"]}
    st, r = node(m1, "register", reg(m1, "mgk-00000000", "n1"))
    check(st == 401 and "unknown pre-auth key" in r["error"], "register: wrong pre-auth key refused: " + r.get("error", ""))
    time.sleep(2.1)
    st, r = node(m1, "register", reg(m1, short, "n1"))
    check(st == 401 and "expired" in r["error"], "register: expired pre-auth key refused: " + r.get("error", ""))
    st, r = node(m1, "register", {"hostname": "n1", "auth_key": one})
    check(st == 400 and "node_key" in r["error"], "register: missing node_key refused: " + r.get("error", ""))
    st, r = node(m1, "register", b'{"node_key": "abc", ')
    check(st == 400 and "invalid JSON" in r["error"], "register: malformed JSON refused: " + r.get("error", ""))
    st, r = node(m1, "register", reg(m1, one, "bad host!"))
    check(st == 400 and "hostname" in r["error"], "register: bad hostname refused")
    check(n_nodes() == 0, "nothing stored by refused registrations")
    st, r = node(m1, "register", reg(m1, one, "n1"))
    check(st == 200 and r["addresses"][0].startswith("100.64.") and r["tailnet"] == "corp", "register: node 1 ok")
    n1 = r
    st, r = node(m2, "register", reg(m2, one, "n2"))
    check(st == 401 and "already used" in r["error"], "register: one-off key reuse refused: " + r.get("error", ""))
    check(n_nodes() == 1, "nothing stored by the reuse")

    # signatures
    body = json.dumps(reg(m2, reuse, "n2")).encode()
    path = "/api/v1/machine/register"
    h = m2.headers("POST", path, body)
    st, r = request(port, "POST", path, body.replace(b"n2", b"n9"), h)
    check(st == 401 and "bad signature" in r["error"], "signature: tampered body refused")
    st, r = request(port, "POST", path, body, m2.headers("POST", path, body, ts=int(time.time()) - 1000))
    check(st == 401 and "skew" in r["error"], "signature: old timestamp refused")
    h2 = m2.headers("POST", path, body, mkey=m1.mkey)
    st, r = request(port, "POST", path, body, h2)
    check(st == 401 and "bad signature" in r["error"], "signature: speaking for another machine key refused")
    st, r = request(port, "POST", path, body, {"Content-Type": "application/json"})
    check(st == 401 and "missing" in r["error"], "signature: unsigned request refused")
    check(n_nodes() == 1, "nothing stored by refused signatures")
    st, r = request(port, "POST", path, body, h)
    check(st == 200, "register: node 2 ok")
    n2 = r
    st, r = request(port, "POST", path, body, h)
    check(st == 401 and "replayed" in r["error"], "replayed request refused: " + r.get("error", ""))
    check(n_nodes() == 2, "nothing stored by the replay")

    # sizes
    big = b'{"node_key": "' + b"A" * (2 << 20) + b'"}'
    try:
        st, r = node(m3, "register", big)
        check(st == 413, "oversized body refused (413)")
    except OSError as e:
        check(False, "oversized body: connection error %s" % e)
    st, r = node(m3, "map", {"version": 0})
    check(st == 403 and "not registered" in r["error"], "map: unregistered machine refused")

    # maps
    st, full1 = node(m1, "map", {"version": 0})
    check(st == 200 and full1["full"] and full1["self"]["node_id"] == n1["node_id"], "map: full map for node 1")
    check([p["node_id"] for p in full1["peers"]] == [n2["node_id"]], "map: node 1 sees node 2 (no policy: allow all)")
    check(any(rule["family"] == 4 for rule in full1["packet_filter"]), "map: packet filter present")
    check(full1.get("derp_map") == DERP_MAP, "map: the configured DERP regions in the full map: %s"
          % json.dumps(full1.get("derp_map")))
    # long poll: node 3 (a gateway) registers while node 1 waits
    res = {}
    def poll():
        res["r"] = node(m1, "map", {"version": full1["version"]})
    t = threading.Thread(target=poll)
    t0 = time.time()
    t.start()
    time.sleep(0.3)
    st, n3 = node(m3, "register", {"node_key": m3.node_key, "hostname": "gw", "auth_key": gwkey,
                                   "endpoints": ["203.0.113.1:51820"], "routes": ["10.88.0.0/24"]})
    check(st == 200 and n3["key_expiry"] == 0, "register: tagged node 3, keys never expire")
    t.join()
    st, d = res["r"]
    check(st == 200 and not d["full"] and [p["node_id"] for p in d["peers_changed"]] == [n3["node_id"]]
          and time.time() - t0 < 2.5, "map: long poll woken with a delta adding node 3")
    check(st == 200 and "derp_map" not in d, "map: no derp_map in a delta")
    st, k = node(m1, "map", {"version": d["version"]})
    check(st == 200 and k.get("keepalive") and k["version"] == d["version"], "map: keepalive after the poll timeout")
    # routes: approve, primary
    st, r = admin("POST", "routes/%d" % n3["node_id"], {"approve": ["10.88.0.0/24"]})
    check(st == 200, "admin: route approved")
    node(m3, "map", {"version": 0})
    st, d2 = node(m1, "map", {"version": d["version"]})
    gw = [p for p in d2.get("peers_changed", []) if p["node_id"] == n3["node_id"]]
    check(st == 200 and gw and "10.88.0.0/24" in gw[0]["allowed_ips"], "map: primary route in the gateway's allowed_ips")
    routes = admin("GET", "routes")[1]
    check(any(x["primary"] and x["prefix"] == "10.88.0.0/24" for x in routes), "admin: routes show the primary")
    # update: key rotation
    newkey = base64.b64encode(os.urandom(32)).decode()
    st, r = node(m2, "update", {"node_key": newkey})
    check(st == 200 and r["key_expiry"] > time.time(), "update: node key rotated")
    st, d3 = node(m1, "map", {"version": d2["version"]})
    check(any(p["node_key"] == newkey for p in d3.get("peers_changed", [])), "map: peers get the rotated key")
    st, r = node(m2, "update", {"node_key": m1.node_key})
    check(st == 409, "update: another node's key refused (409)")
    st, r = node(m2, "update", {"routes": ["not-a-prefix"]})
    check(st == 400 and "routes[0]" in r["error"], "update: bad route refused: %d %s" % (st, r))
    # policy
    pol = '{"acls": [{"action": "accept", "src": ["tag:gw"], "dst": ["autogroup:member:22"]}],' \
          ' "tests": [{"src": "tag:gw", "accept": ["n1:22"], "deny": ["n1:80"]}]}'
    st, r = admin("PUT", "policy", {"tailnet": "corp", "policy": pol.replace('"deny": ["n1:80"]', '"deny": ["n1:22"]')})
    check(st == 400 and "tests" in r["error"], "policy: failing tests refused: " + r.get("error", ""))
    st, r = admin("PUT", "policy", {"tailnet": "corp", "policy": '{"acls": [{"action": "accept", "src": ["nobody@x"], "dst": ["*:*"]}]}'})
    check(st == 400, "policy: unknown name refused: " + r.get("error", ""))
    check(admin("GET", "policy/history?tailnet=corp")[1] == [], "policy: nothing stored by refused policies")
    st, r = admin("PUT", "policy", {"tailnet": "corp", "policy": pol})
    check(st == 200 and r["version"] == 1, "policy: installed")
    st, d4 = node(m1, "map", {"version": d3["version"]})
    check(st == 200 and n2["node_id"] in d4.get("peers_removed", []), "map: policy removes node 2 from node 1's peers")
    check(any(x["ports"] == [22, 22] for x in d4.get("packet_filter", [])), "map: node 1's filter allows port 22")
    st, r = admin("PUT", "policy", {"tailnet": "corp", "policy": pol.replace(":22", ":2222").replace('"accept": ["n1:2222"]', '"accept": ["n1:2222"]').replace('"n1:22"', '"n1:2222"')})
    st, r = admin("GET", "policy/diff?tailnet=corp&from=1&to=2")
    check(st == 200 and "-" in r["diff"] and "2222" in r["diff"], "policy: diff between versions")
    # failover: a second router for the same prefix; the primary's waiting poll hangs up
    m4 = Machine()
    st, n4 = node(m4, "register", {"node_key": m4.node_key, "hostname": "gw2", "auth_key": gwkey,
                                   "endpoints": ["203.0.113.2:51820"], "routes": ["10.88.0.0/24"]})
    admin("POST", "routes/%d" % n4["node_id"], {"approve": ["10.88.0.0/24"]})
    node(m4, "map", {"version": 0})
    st, f3 = node(m3, "map", {"version": 0})
    check("10.88.0.0/24" in f3["self"]["primary_routes"], "routes: node 3 stays primary (sticky)")
    body = json.dumps({"version": f3["version"]}).encode()
    path = "/api/v1/machine/map"
    hdrs = m3.headers("POST", path, body)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n"
                  % (path, len(body), "".join("%s: %s\r\n" % kv for kv in hdrs.items()))).encode() + body)
    time.sleep(0.3)
    sock.close()
    t0, ok = time.time(), False
    while time.time() - t0 < 5 and not ok:
        st, fm = node(m1, "map", {"version": 0})
        p4 = peer_of(fm["peers"], n4["node_id"])
        ok = bool(p4 and "10.88.0.0/24" in p4["allowed_ips"])
        if not ok:
            time.sleep(0.1)
    check(ok, "routes: failover to node 4 %.1f s after the primary's poll hung up" % (time.time() - t0))
    check(not peer_of(fm["peers"], n3["node_id"])["online"], "map: node 3 shown offline")

    # wireguard
    wgpub = base64.b64encode(os.urandom(32)).decode()
    st, r = admin("POST", "wireguard", {"tailnet": "corp", "user": "alice@example.com", "name": "phone",
                                        "public_key": wgpub})
    check(st == 200 and "[Peer]" in r["config"] and m3.node_key in r["config"] and "203.0.113.1:51820" in r["config"],
          "wireguard: wg-quick config lists the gateway")
    st, gm = node(m3, "map", {"version": 0})
    check(any(p["plain_wireguard"] and p["node_key"] == wgpub for p in gm["peers"]), "map: gateway gets the plain WireGuard peer")
    check(not any(p["plain_wireguard"] for p in node(m1, "map", {"version": 0})[1]["peers"]), "map: non-gateways do not")
    # delete
    st, r = admin("DELETE", "nodes/%d" % n2["node_id"])
    check(st == 200, "admin: node deleted")
    st, r = node(m2, "map", {"version": 0})
    check(st == 403, "map: deleted node refused")
    st, r = admin("DELETE", "nodes/99999")
    check(st == 404, "admin: deleting an unknown node is 404")

    # per machine key rate limit (the config allows 1000/s, burst 1000)
    codes = [node(m1, "update", {"endpoints": ["198.51.100.7:51820"]})[0] for _ in range(3)]
    check(codes == [200, 200, 200], "update: within the rate limit")
    # for stop_with_held_poll: a poll at node 1's current version waits
    st, cur = node(m1, "map", {"version": 0})
    return lambda: node(m1, "map", {"version": cur["version"]})

def stop_with_held_poll(srv, held_poll, logpath):
    """SIGTERM while a node's long poll is held: the poll is answered with a
    keepalive and the server exits 0 (libmicrohttpd aborts a daemon stopped
    with a suspended connection)."""
    res = {}
    def poll():
        try:
            res["r"] = held_poll()
        except OSError as e:
            res["r"] = (0, {"error": str(e)})
    t = threading.Thread(target=poll)
    t.start()
    time.sleep(0.5)
    t0 = time.time()
    srv.terminate()
    rc = srv.wait(timeout=10)
    t.join(10)
    st, k = res.get("r", (0, {}))
    with open(logpath) as f:
        log = f.read()
    check(rc == 0 and "Fatal" not in log, "stop: SIGTERM with a held poll exits 0 (rc %d) in %.2f s" % (rc, time.time() - t0))
    check(st == 200 and k.get("keepalive"), "stop: the held poll is answered with a keepalive (%s)" % (res.get("r"),))

def run_limits(binary, tmp, tok):
    """Tight limits: 429 with Retry-After per source address and per machine key."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    conf = os.path.join(tmp, "limits.conf")
    with open(conf, "w") as f:
        f.write('listen = "127.0.0.1:%d";\ndatabase = "sqlite:%s/limits.db";\nadmin_token_file = "%s/token";\n'
                'testing = { insecure_http = true; };\nlimits = { rate_per_ip = 0.5; burst_per_ip = 8.0;'
                ' rate_per_machine = 0.5; burst_per_machine = 2.0; };\n' % (port, tmp, tmp))
    log = open(os.path.join(tmp, "limits.log"), "w")
    srv = subprocess.Popen([binary, "-c", conf], stdout=log, stderr=log)
    try:
        for _ in range(100):
            try:
                request(port, "GET", "/health")
                break
            except OSError:
                time.sleep(0.05)
        m = Machine()
        codes = []
        for _ in range(3):
            body = b'{"version": 0}'
            st, r = request(port, "POST", "/api/v1/machine/map", body, m.headers("POST", "/api/v1/machine/map", body))
            codes.append(st)
        check(codes[:2] == [403, 403] and codes[2] == 429 and "machine key" in r["error"],
              "rate limit: per machine key 429: %s" % codes)
        codes = [request(port, "GET", "/health")[0] for _ in range(8)]
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/health")
        resp = c.getresponse()
        body = json.loads(resp.read())
        check(429 in codes + [resp.status] and resp.getheader("Retry-After") and "address" in body["error"],
              "rate limit: per source address 429 with Retry-After")
    finally:
        srv.terminate()
        srv.wait()
        log.close()

if __name__ == "__main__":
    sys.exit(main())
