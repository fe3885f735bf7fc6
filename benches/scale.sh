#!/usr/bin/env bash
# The scaling run: does one hot partition, split into N shards on N cores, serve N times the
# operations of one shard? Server on CPUs 0..N-1 (`cpu-list`, one pinned executor each, the
# partition "key" split into N shards, `--policy static` so nothing moves by itself),
# redis-benchmark pinned to the remaining CPUs, for N = 1, 2, 4, 8, ... while at least one
# CPU is left for the client; Redis (one thread, pinned to CPU 0, AOF everysec) beside it with
# the same client, alternated run by run. Reproduces the 16-core figures of issue 16 on a
# bigger machine; on 2 CPUs it runs N = 1 only.
#
#   benches/scale.sh [rounds=3] [requests=1000000] [max_n]
#
# redis-benchmark -c 50 -r 100000 (threads: one per client CPU, at most 8), SET and GET at
# -P 1 and -P 16. Per run: requests/s and server CPU seconds (user+system from /proc) per
# million requests. Raw rows in benches/results/<stamp>-scale/runs.csv; medians printed.
set -euo pipefail
ROUNDS=${1:-3}
REQUESTS=${2:-1000000}
root=$(cd "$(dirname "$0")/.." && pwd)
cpus=$(nproc)
MAX_N=${3:-$((cpus - 1))}
command -v redis-server >/dev/null && command -v taskset >/dev/null \
  || { echo "needs redis-server, redis-benchmark and taskset" >&2; exit 2; }
[ "$MAX_N" -ge 1 ] || { echo "needs at least 2 CPUs (one for the server, one for the client)" >&2; exit 2; }
cargo build --release -q -p shardcast-server --manifest-path "$root/Cargo.toml"
out="$root/benches/results/$(date -u +%Y%m%d-%H%M%S)-scale"
mkdir -p "$out"
work=$(mktemp -d)
sport=16461
rport=16462
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
{
  echo "nproc=$cpus max_n=$MAX_N requests=$REQUESTS rounds=$ROUNDS"
  git -C "$root" log -1 --format='commit=%h %s'
  redis-server --version
} > "$out/machine.txt"
clk=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
wait_port() { for _ in $(seq 1 200); do redis-cli -p "$1" ping >/dev/null 2>&1 && return; sleep 0.05; done; }
echo "round,n,server,pipeline,test,rps,cpu_s_per_m" > "$out/runs.csv"
bench() { # n server port pid
  local n=$1 client_cpus threads before after rps
  client_cpus="$n-$((cpus - 1))"
  threads=$((cpus - n)); [ $threads -gt 8 ] && threads=8
  for pipeline in 1 16; do
    for test in set get; do
      before=$(cpu_ticks "$4")
      rps=$(taskset -c "$client_cpus" redis-benchmark -p "$3" -t $test -n "$REQUESTS" -c 50 \
        -r 100000 -P $pipeline --threads $threads -q \
        | tr '\r' '\n' | awk '/requests per second/ {for (i = 2; i <= NF; i++) if ($i == "requests") v = $(i-1)} END {print v}')
      after=$(cpu_ticks "$4")
      python3 -c "import sys; b,a,c,r,q=map(float,sys.argv[1:6]); print('%s,%s,%s,%s,%s,%.0f,%.3f' % tuple(sys.argv[6:11]+[r, (a-b)/c/q*1e6]))" \
        "$before" "$after" "$clk" "$rps" "$REQUESTS" "$round" "$n" "$2" "$pipeline" "$test" \
        | tee -a "$out/runs.csv"
    done
  done
}
taskset -c 0 redis-server --port $rport --save "" --appendonly yes --appendfsync everysec \
  --dir "$work" >"$work/redis.log" 2>&1 &
rpid=$!
wait_port $rport
n=1
while [ "$n" -le "$MAX_N" ]; do
  cpu_list=$(seq -s, 0 $((n - 1)))
  printf 'cpu-list = [%s]\n' "$cpu_list" > "$work/scale.toml"
  rm -rf "$work/data"
  SHARDCAST_LOG=warn "$root/target/release/shardcast-server" --port $sport --data-dir "$work/data" \
    --cores "$n" --fsync everysec --policy static --config "$work/scale.toml" >"$work/server.log" 2>&1 &
  spid=$!
  wait_port $sport
  redis-cli -p $sport set key:warm 1 >/dev/null   # creates the partition
  shards() { redis-cli -p $sport shardcast shards | grep -c '^key$' || true; }
  while [ "$(shards)" -lt "$n" ]; do redis-cli -p $sport shardcast split key >/dev/null; done
  for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then order="redis shardcast"; else order="shardcast redis"; fi
    for what in $order; do
      case $what in
        redis) bench "$n" redis $rport $rpid ;;
        shardcast) bench "$n" shardcast $sport $spid ;;
      esac
    done
  done
  redis-cli -p $sport shutdown nosave >/dev/null 2>&1 || true
  wait $spid 2>/dev/null || true
  n=$((n * 2))
done
python3 - "$out/runs.csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
keys = sorted({(int(r["n"]), r["pipeline"], r["test"]) for r in rows})
one = {}
print("%3s %3s %4s %12s %12s %8s %10s %10s %9s" % ("N", "-P", "test", "shardcast/s", "redis/s",
      "ratio", "vs N=1", "CPU s/M", "CPU ratio"))
for n, p, t in keys:
    med = {}
    for server in ("shardcast", "redis"):
        r = [x for x in rows if (int(x["n"]), x["pipeline"], x["test"], x["server"]) == (n, p, t, server)]
        med[server] = (statistics.median(float(x["rps"]) for x in r),
                       statistics.median(float(x["cpu_s_per_m"]) for x in r))
    if n == 1:
        one[(p, t)] = med["shardcast"][0]
    print("%3d %3s %4s %12.0f %12.0f %7.2fx %9.2fx %10.3f %8.2fx" % (n, p, t, med["shardcast"][0],
          med["redis"][0], med["shardcast"][0] / med["redis"][0], med["shardcast"][0] / one[(p, t)],
          med["shardcast"][1], med["shardcast"][1] / med["redis"][1]))
PY
echo "raw data: $out"
