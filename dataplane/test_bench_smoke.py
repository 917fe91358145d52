#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The benchmark still runs and says what it should (not a measurement).

meshgate-bench --quick on 4 KiB pages: every table is printed, the JSON has
its rows (all sizes and directions, 1 and 2 workers with many peers and one,
the peers grid of configured x sending, the rekey and features rows), every
figure is a positive number, and nothing is lost across the forced rekey or
in the two-worker runs. The figures themselves are not judged here: a timed
test on a shared host would only measure the host."""
import json
import subprocess
import sys
import tempfile

bench = sys.argv[1]
failed = 0


def check(cond, what):
    global failed
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failed += 1


with tempfile.NamedTemporaryFile(suffix=".json") as f:
    p = subprocess.run([bench, "--quick", "--no-huge", "--json", f.name],
                       capture_output=True, text=True, timeout=300)
    check(p.returncode == 0, f"meshgate-bench --quick exits 0 ({p.returncode})")
    if p.returncode != 0:
        print(p.stdout[-2000:], p.stderr[-2000:])
        sys.exit(1)
    rows = json.load(open(f.name))["rows"]

for title in ("### Per direction and size", "### Workers", "### Peers", "### Forced rekey", "### Features"):
    check(any(line.startswith(title) for line in p.stdout.splitlines()),
          f"table {title[4:]!r} printed")

by = {}
for r in rows:
    by.setdefault(r["table"], []).append(r)

sizes = {(r["direction"], r["size"]) for r in by.get("sizes", [])}
check(sizes == {(d, s) for d in ("decap", "encap") for s in (64, 128, 512, 1420)},
      f"sizes: both directions at 64/128/512/1420 B ({sorted(sizes)})")
check(all(r["cycles"] > 0 and r["raw_same_cycles"] > 0 and r["raw_hot_cycles"] > 0
          and 0 < r["ratio_same"] < 5 and 0 < r["ratio_hot"] < 5
          and r["io_cycles"] > 0 and 0 < r["crypto_cycles"] < r["cycles"]
          and abs(r["crypto_cycles"] + r["own_cycles"] - r["cycles"]) < 1
          for r in by.get("sizes", [])),
      "sizes: cycles, both raw ceilings, the ratios and the I/O floor are positive; "
      "the worker's cycles split into crypto and own work")

workers = by.get("workers", [])
check({r["workers"] for r in workers} == {1, 2} and len({r["peers"] for r in workers}) == 2,
      "workers: 1 and 2 workers, many peers and one")
check(all(r["lost"] == 0 and r["cycles"] > 0 for r in workers),
      "workers: nothing lost, cycles positive")

grid = {(r["peers"], r["sending"]) for r in by.get("peers", [])}
want = {(1, 1), (1000, 1), (1000, 1000), (100000, 1), (100000, 1000), (100000, 100000)}
check(grid == want, f"peers: configured x sending grid ({sorted(grid)})")
check(all(r["decap_cycles"] > 0 and r["encap_cycles"] > 0 and r["bytes_per_peer"] > 0
          for r in by.get("peers", [])), "peers: cycles and memory per peer positive")

rekey = by.get("rekey", [])
check(len(rekey) == 2 and all(r["offered"] > 0 and r["delivered"] == r["offered"]
                              and r["dropped"] == 0 for r in rekey),
      "rekey: both directions, every packet delivered across the rekey")
check(len(by.get("acl", [])) >= 3, "features: filter and SNAT rows")
check(any(r.get("flow_log") and r["cycles_1420"] > 0 for r in by.get("acl", [])),
      "features: a flow-log row")

print(f"test_bench_smoke: {'FAIL' if failed else 'PASS'}")
sys.exit(1 if failed else 0)
