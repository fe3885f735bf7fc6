#!/usr/bin/env bash
# The cost of per-command accounting (INFO commandstats, latency histograms, slow log and
# latency monitor checks) on the data path: the server built at BASE_REV (before the
# accounting) against the working tree's, with Debian's redis-server as the reference, all
# three alternating run by run.
#
#   BASE_REV=<rev> benches/accounting.sh [rounds=5] [requests=2000000]
#
# For each round, server (the order rotates), pipeline depth (16, 1) and test (get, set):
# redis-benchmark -c 50 -n <requests> -r 100000, its CSV line, and the server's CPU time
# (user+system from /proc/<pid>/stat) during the run. Raw rows go to
# benches/results/<stamp>-accounting/runs.csv, medians and ratios to summary.md.
set -euo pipefail
ROUNDS=${1:-5}
REQUESTS=${2:-2000000}
root=$(cd "$(dirname "$0")/.." && pwd)
BASE_REV=${BASE_REV:?set BASE_REV to the commit to compare against}
command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null \
  || { echo "needs redis-server and redis-benchmark: apt-get install -y redis-server redis-tools" >&2; exit 2; }
out="$root/benches/results/$(date -u +%Y%m%d-%H%M%S)-accounting"
mkdir -p "$out"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; git -C "$root" worktree remove --force "$work/base-src" 2>/dev/null || true; rm -rf "$work"' EXIT
clk=$(getconf CLK_TCK)

# Both binaries from the same target directory (dependencies built once), one after the other.
git -C "$root" worktree add -q --detach "$work/base-src" "$BASE_REV"
CARGO_TARGET_DIR="$root/target" cargo build --release -q -p shardcast-server \
  --manifest-path "$work/base-src/Cargo.toml"
cp "$root/target/release/shardcast-server" "$work/shardcast-base"
cargo build --release -q -p shardcast-server --manifest-path "$root/Cargo.toml"
cp "$root/target/release/shardcast-server" "$work/shardcast-new"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

port_of() { case "$1" in redis) echo 16399 ;; base) echo 16400 ;; new) echo 16401 ;; esac; }

start() { # $1 = redis|base|new; prints the pid
  local port; port=$(port_of "$1")
  rm -rf "$work/$1" && mkdir -p "$work/$1"
  if [ "$1" = redis ]; then
    redis-server --port $port --appendonly yes --appendfsync everysec --save "" \
      --dir "$work/redis" --logfile "$work/redis.log" >/dev/null 2>&1 &
  else
    SHARDCAST_LOG=warn "$work/shardcast-$1" --port $port \
      --data-dir "$work/$1" --fsync everysec >"$work/$1.log" 2>&1 &
  fi
  local pid=$!
  for _ in $(seq 1 200); do redis-cli -p $port ping >/dev/null 2>&1 && break; sleep 0.05; done
  echo $pid
}

{
  echo "nproc=$(nproc) kernel=$(uname -r) redis=$(redis-server --version | awk '{print $3}') requests=$REQUESTS rounds=$ROUNDS"
  echo "base=$(git -C "$root" rev-parse --short "$BASE_REV") new=$(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet || echo '+changes')"
} > "$out/machine.txt"
echo "round,server,pipeline,test,rps,avg_ms,min_ms,p50_ms,p95_ms,p99_ms,max_ms,server_cpu_s" > "$out/runs.csv"
orders=("redis base new" "new redis base" "base new redis")
for round in $(seq 1 "$ROUNDS"); do
  for server in ${orders[$(( (round - 1) % 3 ))]}; do
    pid=$(start "$server")
    port=$(port_of "$server")
    for pipeline in 16 1; do
      for test in get set; do
        before=$(cpu_ticks "$pid")
        line=$(redis-benchmark -p $port -t $test -n "$REQUESTS" -c 50 -P $pipeline -r 100000 --csv | tail -1 | tr -d '"')
        after=$(cpu_ticks "$pid")
        cpu=$(awk -v a="$after" -v b="$before" -v c="$clk" 'BEGIN {printf "%.2f", (a - b) / c}')
        echo "$round,$server,$pipeline,$test,${line#*,},$cpu" | tee -a "$out/runs.csv"
      done
    done
    # Not our child (started inside $(...)): wait until it is gone.
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  done
done
python3 - "$out/runs.csv" "$REQUESTS" <<'EOF' | tee "$out/summary.md"
import csv, statistics, sys
from collections import defaultdict
rows = list(csv.DictReader(open(sys.argv[1])))
requests = float(sys.argv[2])
runs = defaultdict(list)
for r in rows:
    runs[(r["server"], int(r["pipeline"]), r["test"])].append(r)
def med(server, p, t, f):
    return statistics.median(f(r) for r in runs[(server, p, t)])
cpu_us = lambda r: float(r["server_cpu_s"]) / requests * 1e6
rps = lambda r: float(r["rps"])
print("| -P | test | base ops/s | new ops/s | new/base | base CPU µs/op | new CPU µs/op | CPU new/base | Redis CPU µs/op | new/Redis CPU | runs |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for p in (16, 1):
    for t in ("get", "set"):
        if not runs[("base", p, t)] or not runs[("new", p, t)]:
            continue
        b, n, r = (med(s, p, t, rps) for s in ("base", "new", "redis"))
        bc, nc, rc = (med(s, p, t, cpu_us) for s in ("base", "new", "redis"))
        print(f"| {p} | {t.upper()} | {b:,.0f} | {n:,.0f} | {n/b:.3f} | {bc:.3f} | {nc:.3f} | {nc/bc:.3f} | {rc:.3f} | {nc/rc:.2f} | {len(runs[('new', p, t)])} |")
EOF
