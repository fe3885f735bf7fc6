#!/usr/bin/env python3
"""Summarizes benches/policy_eval.sh's runs: one row per workload and policy (medians over
rounds): ops/s, p99, seconds over the SLO, verify failures, layout changes, shard-seconds,
server CPU per million ops, forecast error.

    benches/policy_summary.py <results dir> <slo-us>
"""
import csv
import json
import re
import statistics
import sys

out, slo = sys.argv[1], float(sys.argv[2])
runs = list(csv.DictReader(open(f"{out}/runs.csv")))


def info_field(text, name):
    m = re.search(rf"^{name}:(.*)$", text, re.M)
    return m.group(1).strip() if m else ""


def one(run):
    d = run["dir"]
    s = json.load(open(f"{d}/summary.json"))
    rows = [r for r in csv.DictReader(open(f"{d}/intervals.csv")) if r["app"] == "all"]
    over = sum(float(r["end_s"]) - float(r["start_s"]) for r in rows if float(r["p99_us"]) > slo)
    shard_s = sum((float(r["end_s"]) - float(r["start_s"])) * int(r["shards"] or 0) for r in rows)
    info = open(f"{d}/info.txt").read()
    predict = open(f"{d}/predict.txt").read().split("\n")
    maes = []
    for i, line in enumerate(predict):
        if line.strip() == "recent_mae_ops_per_sec" and i + 1 < len(predict):
            try:
                maes.append(float(predict[i + 1]))
            except ValueError:
                pass
    v = s.get("verify", {})
    return {
        "ops_s": s["ops_per_s"],
        "p99_us": s["latency_us"]["p99"],
        "over_slo_s": over,
        "verify_bad": v.get("wrong", 0) + v.get("missing", 0) + v.get("stale", 0),
        "errors": s["errors"],
        "changes": int(info_field(info, "allocator_changes_done") or 0),
        "migrations": int(info_field(info, "migrations_completed") or 0),
        "shard_s": shard_s,
        "cpu_per_mop": float(run["server_cpu_s"]) / max(s["ops"], 1) * 1e6,
        "mae": statistics.mean(maes) if maes else float("nan"),
    }


by = {}
for r in runs:
    by.setdefault((r["workload"], r["policy"]), []).append(one(r))
cols = [
    ("ops/s", "ops_s", "{:.0f}"),
    ("p99 µs", "p99_us", "{:.0f}"),
    (f"s with p99 > {slo:.0f} µs", "over_slo_s", "{:.1f}"),
    ("verify failures", "verify_bad", "{:.0f}"),
    ("errors", "errors", "{:.0f}"),
    ("layout changes", "migrations", "{:.0f}"),
    ("shard-seconds", "shard_s", "{:.0f}"),
    ("server CPU-s / M ops", "cpu_per_mop", "{:.1f}"),
    ("forecast MAE ops/s", "mae", "{:.0f}"),
]
print(f"Medians over {max(len(v) for v in by.values())} round(s); results in {out}\n")
print("| workload | policy | " + " | ".join(c[0] for c in cols) + " |")
print("|---|---|" + "---|" * len(cols))
for (w, p), vs in sorted(by.items()):
    cells = [f.format(statistics.median(x[k] for x in vs)) for _, k, f in cols]
    print(f"| {w} | {p} | " + " | ".join(cells) + " |")
