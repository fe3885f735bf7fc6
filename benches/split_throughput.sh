#!/usr/bin/env bash
# Does splitting a hot partition over the cores raise throughput? redis-benchmark's keys are
# one partition ("key"), so unsplit they live on one core. Alternates, run by run, the
# partition as one shard and split into one shard per core (SHARDCAST SPLIT, then MERGE back).
#
#   benches/split_throughput.sh [rounds=3] [requests=1000000]
#
# redis-benchmark -c 50 -r 100000 at -P 1 and -P 16, SET and GET; raw rows in
# benches/results/<stamp>-split/runs.csv, medians and ratios printed.
set -euo pipefail
ROUNDS=${1:-3}
REQUESTS=${2:-1000000}
root=$(cd "$(dirname "$0")/.." && pwd)
command -v redis-benchmark >/dev/null || { echo "needs redis-tools" >&2; exit 2; }
cargo build --release -q -p shardcast-server --manifest-path "$root/Cargo.toml"
out="$root/benches/results/$(date -u +%Y%m%d-%H%M%S)-split"
mkdir -p "$out"
work=$(mktemp -d)
port=16412
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
SHARDCAST_LOG=warn "$root/target/release/shardcast-server" --port $port --data-dir "$work/data" \
  --fsync everysec >"$work/server.log" 2>&1 &
for _ in $(seq 1 200); do redis-cli -p $port ping >/dev/null 2>&1 && break; sleep 0.05; done
cores=$(redis-cli -p $port info server | tr -d '\r' | awk -F: '$1 == "cores" {print $2}')
{
  echo "nproc=$(nproc) cores=$cores requests=$REQUESTS rounds=$ROUNDS"
  git -C "$root" log -1 --format='commit=%h %s'
} > "$out/machine.txt"
redis-benchmark -p $port -t set -n 200000 -r 100000 -P 16 -q >/dev/null   # create the partition
shards() { redis-cli -p $port shardcast shards | grep -c '^key$'; }
echo "round,layout,pipeline,test,rps,avg_ms,min_ms,p50_ms,p95_ms,p99_ms,max_ms" > "$out/runs.csv"
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="one split"; else order="split one"; fi
  for layout in $order; do
    if [ $layout = split ]; then
      while [ "$(shards)" -lt "$cores" ]; do redis-cli -p $port shardcast split key >/dev/null; done
    else
      while [ "$(shards)" -gt 1 ]; do redis-cli -p $port shardcast merge key >/dev/null; done
    fi
    for pipeline in 1 16; do
      for test in set get; do
        line=$(redis-benchmark -p $port -t $test -n "$REQUESTS" -c 50 -P $pipeline -r 100000 --csv | tail -1 | tr -d '"')
        echo "$round,$layout,$pipeline,$test,${line#*,}" | tee -a "$out/runs.csv"
      done
    done
  done
done
python3 - "$out" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1] + "/runs.csv")))
for p in ("1", "16"):
    for t in ("set", "get"):
        med = {}
        for layout in ("one", "split"):
            r = [x for x in rows if x["pipeline"] == p and x["test"] == t and x["layout"] == layout]
            med[layout] = (statistics.median(float(x["rps"]) for x in r),
                           statistics.median(float(x["p99_ms"]) for x in r))
        print("-P %-2s %s: one shard %.0f req/s (p99 %.3f ms), split %.0f req/s (p99 %.3f ms): %.2fx" % (
            p, t.upper(), med["one"][0], med["one"][1], med["split"][0], med["split"][1],
            med["split"][0] / med["one"][0]))
EOF
echo "raw data: $out"
