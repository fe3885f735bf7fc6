#!/usr/bin/env python3
"""Medians and Shardcast/Redis ratios from a redis_compare.sh runs.csv.

Usage: summarize.py runs.csv [requests-per-run=1000000]
"""
import csv, statistics, sys
from collections import defaultdict

rows = list(csv.DictReader(open(sys.argv[1])))
runs = defaultdict(list)
for r in rows:
    runs[(r["server"], int(r["pipeline"]), r["test"])].append(r)

def med(rs, field):
    return statistics.median(float(r[field]) for r in rs)

print("| -P | test | Redis ops/s | Shardcast ops/s | ratio | Redis p50/p99 ms | Shardcast p50/p99 ms | p99 ratio | Redis CPU s/M ops | Shardcast CPU s/M ops | CPU ratio | runs |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
requests = float(sys.argv[2]) if len(sys.argv) > 2 else 1e6
for pipeline in (1, 16):
    for test in ("set", "get", "incr", "mset"):
        r, s = runs.get(("redis", pipeline, test)), runs.get(("shardcast", pipeline, test))
        if not r or not s:
            continue
        def cpu_m(rs):
            # server CPU seconds per million requests (MSET: one request sets 10 keys)
            return statistics.median(float(x["server_cpu_s"]) / requests * 1e6 for x in rs)
        rr, sr = med(r, "rps"), med(s, "rps")
        rc, sc = cpu_m(r), cpu_m(s)
        print(f"| {pipeline} | {test.upper()} | {rr:,.0f} | {sr:,.0f} | {sr/rr:.2f} | {med(r,'p50_ms'):.3f} / {med(r,'p99_ms'):.3f} | "
              f"{med(s,'p50_ms'):.3f} / {med(s,'p99_ms'):.3f} | {med(s,'p99_ms')/med(r,'p99_ms'):.2f} | {rc:.2f} | {sc:.2f} | {sc/rc:.2f} | {len(r)}+{len(s)} |")
