#!/usr/bin/env bash
# What a Lua script costs: redis-benchmark's EVAL of `redis.call('incr', KEYS[1])` on random
# keys, against Debian's redis-server and Shardcast (default start, 2 cores), alternated run
# by run.
#
#   benches/scripts.sh [rounds=3] [requests=100000]
#
# 50 connections, pipeline 1. Per run: requests/s and the server's CPU seconds (user+system
# from /proc/<pid>/stat) per 1,000 requests. Raw rows in
# benches/results/<stamp>-scripts/runs.csv; medians printed.
set -euo pipefail
ROUNDS=${1:-3}
REQUESTS=${2:-100000}
root=$(cd "$(dirname "$0")/.." && pwd)
command -v redis-server >/dev/null || { echo "needs redis-server" >&2; exit 2; }
cargo build --release -q -p shardcast-server --manifest-path "$root/Cargo.toml"
out="$root/benches/results/$(date -u +%Y%m%d-%H%M%S)-scripts"
mkdir -p "$out"
work=$(mktemp -d)
sport=16441
rport=16442
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
SHARDCAST_LOG=warn "$root/target/release/shardcast-server" --port $sport --data-dir "$work/data" \
  --fsync everysec >"$work/server.log" 2>&1 &
spid=$!
redis-server --port $rport --save "" --appendonly yes --appendfsync everysec \
  --dir "$work" >"$work/redis.log" 2>&1 &
rpid=$!
for p in $sport $rport; do
  for _ in $(seq 1 200); do redis-cli -p $p ping >/dev/null 2>&1 && break; sleep 0.05; done
done
{
  echo "nproc=$(nproc) requests=$REQUESTS rounds=$ROUNDS"
  git -C "$root" log -1 --format='commit=%h %s'
  redis-server --version
} > "$out/machine.txt"
clk=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
echo "round,server,req_per_s,cpu_s_per_1k" > "$out/runs.csv"
run() { # server port pid
  local before after rps
  before=$(cpu_ticks "$3")
  rps=$(redis-benchmark -p "$2" -n "$REQUESTS" -c 50 -P 1 -r 100000 -q \
    eval "return redis.call('incr', KEYS[1])" 1 'bench:__rand_int__' \
    | tr '\r' '\n' | awk '/requests per second/ {for (i = 2; i <= NF; i++) if ($i == "requests") v = $(i-1)} END {print v}')
  after=$(cpu_ticks "$3")
  python3 -c "import sys; b,a,c,r,n=map(float,sys.argv[1:6]); print('%s,%s,%.0f,%.4f' % (sys.argv[6], sys.argv[7], r, (a-b)/c/n*1000))" \
    "$before" "$after" "$clk" "$rps" "$REQUESTS" "$round" "$1" | tee -a "$out/runs.csv"
}
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="redis shardcast"; else order="shardcast redis"; fi
  for what in $order; do
    case $what in
      redis) run redis $rport $rpid ;;
      shardcast) run shardcast $sport $spid ;;
    esac
  done
done
python3 - "$out/runs.csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
med = {s: {f: statistics.median(float(x[f]) for x in rows if x["server"] == s)
           for f in ("req_per_s", "cpu_s_per_1k")} for s in ("redis", "shardcast")}
base = med["redis"]
for s, m in med.items():
    print("%-10s %8.0f req/s (%.2fx Redis)  CPU %.4f s/1k (%.2fx Redis)" % (
        s, m["req_per_s"], m["req_per_s"] / base["req_per_s"], m["cpu_s_per_1k"],
        m["cpu_s_per_1k"] / base["cpu_s_per_1k"]))
PY
echo "raw data: $out"
