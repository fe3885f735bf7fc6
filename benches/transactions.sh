#!/usr/bin/env bash
# What a transaction costs: the load generator's `multi` op (MULTI, 4 INCRs, EXEC) against
# Debian's redis-server and against Shardcast with the partition on one core and split over
# both (a cross-core transaction: the engine's two-phase locking), alternated run by run.
#
#   benches/transactions.sh [rounds=3] [seconds=10]
#
# 50 connections, closed loop, pipeline 1. Per run: transactions/s, p50/p99 of EXEC's reply,
# and the server's CPU seconds (user+system from /proc/<pid>/stat) per 1,000 transactions.
# Raw rows in benches/results/<stamp>-transactions/runs.csv; medians printed.
set -euo pipefail
ROUNDS=${1:-3}
SECONDS_PER_RUN=${2:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
command -v redis-server >/dev/null || { echo "needs redis-server" >&2; exit 2; }
cargo build --release -q -p shardcast-server -p shardcast-loadgen --manifest-path "$root/Cargo.toml"
out="$root/benches/results/$(date -u +%Y%m%d-%H%M%S)-transactions"
mkdir -p "$out"
work=$(mktemp -d)
sport=16431
rport=16432
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/multi.toml" <<'TOML'
name = "multi"
[[application]]
name = "bank"
key_prefix = "bank:"
keyspace = 100000
key_distribution = { type = "uniform" }
value_size = 16
ops = { multi = 1 }
multi_keys = { min = 4, max = 4 }
TOML
SHARDCAST_LOG=warn "$root/target/release/shardcast-server" --port $sport --data-dir "$work/data" \
  --fsync everysec >"$work/server.log" 2>&1 &
spid=$!
redis-server --port $rport --save "" --appendonly yes --appendfsync everysec \
  --dir "$work" >"$work/redis.log" 2>&1 &
rpid=$!
for p in $sport $rport; do
  for _ in $(seq 1 200); do redis-cli -p $p ping >/dev/null 2>&1 && break; sleep 0.05; done
done
cores=$(redis-cli -p $sport info server | tr -d '\r' | awk -F: '$1 == "cores" {print $2}')
{
  echo "nproc=$(nproc) cores=$cores seconds=$SECONDS_PER_RUN rounds=$ROUNDS"
  git -C "$root" log -1 --format='commit=%h %s'
  redis-server --version
} > "$out/machine.txt"
clk=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Create the partition (the first transaction does) and carve it out, so SPLIT and MERGE can
# move it between one shard and one per core.
redis-cli -p $sport incr bank:c0 >/dev/null
shards() { redis-cli -p $sport shardcast shards | grep -c '^bank$' || true; }
while [ "$(shards)" -lt 1 ]; do redis-cli -p $sport shardcast split bank >/dev/null; done
echo "round,server,layout,tx_per_s,p50_us,p99_us,errors,cpu_s_per_1k_tx" > "$out/runs.csv"
run() { # server layout port pid
  local before after
  before=$(cpu_ticks "$4")
  "$root/target/release/shardcast-loadgen" --port "$3" --workload "$work/multi.toml" \
    --duration "$SECONDS_PER_RUN" --connections 50 --quiet --no-shards --out "$work/run" >/dev/null
  after=$(cpu_ticks "$4")
  python3 - "$work/run/summary.json" "$1" "$2" "$before" "$after" "$clk" "$round" <<'PY' | tee -a "$out/runs.csv"
import json, sys
s = json.load(open(sys.argv[1]))
op = next(o for o in s["per_op"] if o["op"] == "multi")
cpu = (float(sys.argv[5]) - float(sys.argv[4])) / float(sys.argv[6])
print("%s,%s,%s,%.0f,%.0f,%.0f,%d,%.4f" % (sys.argv[7], sys.argv[2], sys.argv[3], op["ops_per_s"],
      op["latency_us"]["p50"], op["latency_us"]["p99"], op["errors"], cpu / op["count"] * 1000))
PY
}
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="redis one split"; else order="split one redis"; fi
  for what in $order; do
    case $what in
      redis) run redis - $rport $rpid ;;
      one)
        while [ "$(shards)" -gt 1 ]; do redis-cli -p $sport shardcast merge bank >/dev/null; done
        run shardcast one-core $sport $spid ;;
      split)
        while [ "$(shards)" -lt "$cores" ]; do redis-cli -p $sport shardcast split bank >/dev/null; done
        run shardcast cross-core $sport $spid ;;
    esac
  done
done
python3 - "$out/runs.csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
med = {}
for key in (("redis", "-"), ("shardcast", "one-core"), ("shardcast", "cross-core")):
    r = [x for x in rows if (x["server"], x["layout"]) == key]
    med[key] = {f: statistics.median(float(x[f]) for x in r)
                for f in ("tx_per_s", "p50_us", "p99_us", "cpu_s_per_1k_tx")}
base = med[("redis", "-")]
for key, m in med.items():
    print("%-10s %-10s %8.0f tx/s (%.2fx Redis)  p50 %6.0f us  p99 %6.0f us  CPU %.4f s/1k tx (%.2fx Redis)" % (
        key[0], key[1], m["tx_per_s"], m["tx_per_s"] / base["tx_per_s"], m["p50_us"], m["p99_us"],
        m["cpu_s_per_1k_tx"], m["cpu_s_per_1k_tx"] / base["cpu_s_per_1k_tx"]))
PY
echo "raw data: $out"
