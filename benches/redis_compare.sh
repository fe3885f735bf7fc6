#!/usr/bin/env bash
# Shardcast against Debian's redis-server on this machine, alternating run by run.
#
#   benches/redis_compare.sh [rounds=3] [requests=1000000]
#
# Redis runs with appendonly yes / appendfsync everysec; Shardcast with --fsync everysec on
# all cores. For each round, server (order alternates between rounds), pipeline depth (1, 16)
# and test (set, get, incr, mset): redis-benchmark -c 50 -n <requests> -r 100000, its CSV line
# (rps, p50, p99), and the server's CPU time (user+system from /proc/<pid>/stat) during that
# run. Raw rows go to benches/results/<stamp>/runs.csv; summarize.py prints medians and ratios.
set -euo pipefail
ROUNDS=${1:-3}
REQUESTS=${2:-1000000}
root=$(cd "$(dirname "$0")/.." && pwd)
command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null \
  || { echo "needs redis-server and redis-benchmark: apt-get install -y redis-server redis-tools" >&2; exit 2; }
cargo build --release -q -p shardcast-server --manifest-path "$root/Cargo.toml"
out="$root/benches/results/$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$out"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
clk=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

port_of() { if [ "$1" = redis ]; then echo 16399; else echo 16400; fi; }

start() { # $1 = redis|shardcast; prints the pid
  local port; port=$(port_of "$1")
  rm -rf "$work/$1" && mkdir -p "$work/$1"
  if [ "$1" = redis ]; then
    redis-server --port $port --appendonly yes --appendfsync everysec --save "" \
      --dir "$work/redis" --logfile "$work/redis.log" >/dev/null 2>&1 &
  else
    SHARDCAST_LOG=warn "$root/target/release/shardcast-server" --port $port \
      --data-dir "$work/shardcast" --fsync everysec >"$work/shardcast.log" 2>&1 &
  fi
  local pid=$!
  for _ in $(seq 1 200); do redis-cli -p $port ping >/dev/null 2>&1 && break; sleep 0.05; done
  echo $pid
}

{
  echo "nproc=$(nproc) kernel=$(uname -r) redis=$(redis-server --version | awk '{print $3}') requests=$REQUESTS rounds=$ROUNDS"
  git -C "$root" log -1 --format='commit=%h %s'
} > "$out/machine.txt"
echo "round,server,pipeline,test,rps,avg_ms,min_ms,p50_ms,p95_ms,p99_ms,max_ms,server_cpu_s" > "$out/runs.csv"
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="redis shardcast"; else order="shardcast redis"; fi
  for server in $order; do
    pid=$(start "$server")
    port=$(port_of "$server")
    for pipeline in 1 16; do
      for test in set get incr mset; do
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
python3 "$root/benches/summarize.py" "$out/runs.csv" "$REQUESTS" | tee "$out/summary.md"
