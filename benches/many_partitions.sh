#!/usr/bin/env bash
# Any number of partitions: keys under one prefix (`user:N`), under as many distinct prefixes
# as keys (`N:cart`), and over hash tags of ten keys (`{user:T}:fK`). Debian's redis-server
# takes the distinct-prefix load as the baseline. Runs alternate, rotating the order by round.
#
#   benches/many_partitions.sh [rounds=3] [keys=1000000]
#
# Part A, what a partition costs: exactly <keys> keys (16-byte values) as one
# `redis-cli --pipe` stream into a fresh server on ONE core (no cross-core hop, so only the
# partitions differ): keys/s, server CPU per million keys (user+system from /proc), RSS growth
# per key once the server has settled (5 s after the load: a snapshot may be running right
# after it) and again after the restart, bytes on disk after a clean stop (blocks, so the
# logs' preallocated space counts) against the bytes of keys and values, and the restart time
# (SIGTERM, start, until DBSIZE answers the full count).
# Part B, on all cores: redis-benchmark -c 50 -P 16 -n <keys> -r <keys> SET with each key
# scheme, plus one prefix split over both cores (SHARDCAST SPLIT twice: its keys then cross
# cores as the distinct prefixes' do); throughput and server CPU per request.
# Shardcast runs with --fsync everysec, Redis with appendonly yes, appendfsync everysec.
# Raw rows: benches/results/<stamp>-partitions/{pipe,bench}.csv; medians: summary.md.
set -euo pipefail
ROUNDS=${1:-3}
KEYS=${2:-1000000}
root=$(cd "$(dirname "$0")/.." && pwd)
command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null \
  || { echo "needs redis-server and redis-tools: apt-get install -y redis-server redis-tools" >&2; exit 2; }
cargo build --release -q -p shardcast-server --manifest-path "$root/Cargo.toml"
out="$root/benches/results/$(date -u +%Y%m%d-%H%M%S)-partitions"
mkdir -p "$out"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
clk=$(getconf CLK_TCK)
port=16410

python3 - "$work" "$KEYS" <<'PY'
import sys
work, n = sys.argv[1], int(sys.argv[2])
value = b"v" * 16
schemes = {
    "one-prefix": lambda i: b"user:%d" % i,
    "prefixes": lambda i: b"%d:cart" % i,
    "tags": lambda i: b"{user:%d}:f%d" % (i // 10, i % 10),
}
for name, key in schemes.items():
    data = 0
    with open(f"{work}/{name}.resp", "wb") as f:
        for i in range(n):
            k = key(i)
            data += len(k) + len(value)
            f.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(value), value))
    open(f"{work}/{name}.bytes", "w").write(str(data))
PY

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_bytes() { awk '/VmRSS/ {print $2 * 1024}' "/proc/$1/status"; }
now() { date +%s.%N; }

start() { # $1 = redis|shardcast, $2 = data dir, $3 = cores; prints the pid once PING answers
  if [ "$1" = redis ]; then
    redis-server --port $port --appendonly yes --appendfsync everysec --save "" \
      --dir "$2" --logfile "$work/redis.log" >/dev/null 2>&1 &
  else
    SHARDCAST_LOG=warn "$root/target/release/shardcast-server" --port $port --cores "$3" \
      --data-dir "$2" --fsync everysec >>"$work/shardcast.log" 2>&1 &
  fi
  local pid=$!
  for _ in $(seq 1 2000); do redis-cli -p $port ping >/dev/null 2>&1 && break; sleep 0.01; done
  echo $pid
}

stop() { kill -TERM "$1"; while kill -0 "$1" 2>/dev/null; do sleep 0.02; done; }

{
  echo "nproc=$(nproc) kernel=$(uname -r) redis=$(redis-server --version | awk '{print $3}') keys=$KEYS rounds=$ROUNDS"
  git -C "$root" log -1 --format='commit=%h %s'
} > "$out/machine.txt"
echo "round,server,scheme,keys,write_s,keys_per_s,server_cpu_s,rss_bytes_per_key,data_bytes,disk_bytes,restart_s,rss_bytes_per_key_restarted" > "$out/pipe.csv"
echo "round,server,scheme,rps,p50_ms,p99_ms,server_cpu_s" > "$out/bench.csv"
pipe_runs=("shardcast one-prefix" "shardcast prefixes" "shardcast tags" "redis prefixes")
bench_runs=("shardcast one-prefix" "shardcast one-prefix-split" "shardcast prefixes" "shardcast tags" "redis prefixes")
for round in $(seq 1 "$ROUNDS"); do
  for k in 0 1 2 3; do
    set -- ${pipe_runs[$(( (k + round) % 4 ))]}
    server=$1 scheme=$2
    dir="$work/data" && rm -rf "$dir" && mkdir -p "$dir"
    pid=$(start "$server" "$dir" 1)
    rss0=$(rss_bytes "$pid") cpu0=$(cpu_ticks "$pid") t0=$(now)
    redis-cli -p $port --pipe < "$work/$scheme.resp" > "$work/pipe.out"
    t1=$(now) cpu1=$(cpu_ticks "$pid")
    sleep 5
    rss1=$(rss_bytes "$pid")
    grep -q "errors: 0, replies: $KEYS" "$work/pipe.out" || { cat "$work/pipe.out"; exit 1; }
    [ "$(redis-cli -p $port dbsize)" = "$KEYS" ] || { echo "DBSIZE differs" >&2; exit 1; }
    stop "$pid"
    disk=$(du -s -B1 "$dir" | cut -f1)
    t2=$(now)
    pid=$(start "$server" "$dir" 1)
    until [ "$(redis-cli -p $port dbsize 2>/dev/null)" = "$KEYS" ]; do sleep 0.01; done
    t3=$(now)
    rss2=$(rss_bytes "$pid")
    stop "$pid"
    awk -v r="$round" -v s="$server" -v sc="$scheme" -v n="$KEYS" -v t0="$t0" -v t1="$t1" \
        -v c0="$cpu0" -v c1="$cpu1" -v clk="$clk" -v r0="$rss0" -v r1="$rss1" \
        -v data="$(cat "$work/$scheme.bytes")" -v disk="$disk" -v t2="$t2" -v t3="$t3" -v r2="$rss2" \
      'BEGIN { printf "%s,%s,%s,%d,%.3f,%.0f,%.2f,%.1f,%d,%d,%.3f,%.1f\n", r, s, sc, n, t1 - t0,
               n / (t1 - t0), (c1 - c0) / clk, (r1 - r0) / n, data, disk, t3 - t2, (r2 - r0) / n }' \
      | tee -a "$out/pipe.csv"
  done
  for k in 0 1 2 3 4; do
    set -- ${bench_runs[$(( (k + round) % 5 ))]}
    server=$1 scheme=$2
    case $scheme in
      one-prefix*) key="user:__rand_int__" ;;
      prefixes) key="__rand_int__:cart" ;;
      tags) key="{user:__rand_int__}:f__rand_int__" ;;
    esac
    dir="$work/data" && rm -rf "$dir" && mkdir -p "$dir"
    pid=$(start "$server" "$dir" "$(nproc)")
    if [ "$scheme" = one-prefix-split ]; then
      redis-cli -p $port shardcast split user >/dev/null
      redis-cli -p $port shardcast split user >/dev/null
    fi
    cpu0=$(cpu_ticks "$pid")
    line=$(redis-benchmark -p $port -c 50 -P 16 -n "$KEYS" -r "$KEYS" --csv SET "$key" vvvvvvvvvvvvvvvv | tail -1 | tr -d '"')
    cpu1=$(cpu_ticks "$pid")
    stop "$pid"
    # CSV: test,rps,avg,min,p50,p95,p99,max
    echo "$line" | awk -F, -v r="$round" -v s="$server" -v sc="$scheme" -v c0="$cpu0" -v c1="$cpu1" -v clk="$clk" \
      '{ printf "%s,%s,%s,%s,%s,%s,%.2f\n", r, s, sc, $2, $5, $7, (c1 - c0) / clk }' | tee -a "$out/bench.csv"
  done
done
python3 - "$out" "$KEYS" <<'PY' | tee "$out/summary.md"
import csv, statistics, sys
out, n = sys.argv[1], int(sys.argv[2])
def med(rows, server, scheme, field):
    v = [float(r[field]) for r in rows if r["server"] == server and r["scheme"] == scheme]
    return statistics.median(v) if v else float("nan")
pipe = list(csv.DictReader(open(f"{out}/pipe.csv")))
print(f"Part A: {n:,} keys in one `redis-cli --pipe` stream, one core (medians)\n")
print("| run | keys/s | vs one prefix | CPU-s per 1M keys | RSS bytes/key (settled; restarted) | disk MB (data MB) | restart s |")
print("|---|---|---|---|---|---|---|")
base = med(pipe, "shardcast", "one-prefix", "keys_per_s")
for server, scheme in [("shardcast", "one-prefix"), ("shardcast", "prefixes"), ("shardcast", "tags"), ("redis", "prefixes")]:
    kps = med(pipe, server, scheme, "keys_per_s")
    print(f"| {server} {scheme} | {kps:,.0f} | {kps / base:.2f}x | "
          f"{med(pipe, server, scheme, 'server_cpu_s') / n * 1e6:.2f} | {med(pipe, server, scheme, 'rss_bytes_per_key'):.0f}; "
          f"{med(pipe, server, scheme, 'rss_bytes_per_key_restarted'):.0f} | "
          f"{med(pipe, server, scheme, 'disk_bytes') / 1e6:.1f} ({med(pipe, server, scheme, 'data_bytes') / 1e6:.1f}) | {med(pipe, server, scheme, 'restart_s'):.2f} |")
bench = list(csv.DictReader(open(f"{out}/bench.csv")))
print(f"\nPart B: redis-benchmark -c 50 -P 16 -n {n:,} -r {n:,} SET, all cores (medians)\n")
print("| run | requests/s | vs one prefix | p99 ms | CPU-s per 1M requests |")
print("|---|---|---|---|---|")
base = med(bench, "shardcast", "one-prefix", "rps")
for server, scheme in [("shardcast", "one-prefix"), ("shardcast", "one-prefix-split"), ("shardcast", "prefixes"), ("shardcast", "tags"), ("redis", "prefixes")]:
    rps = med(bench, server, scheme, "rps")
    print(f"| {server} {scheme} | {rps:,.0f} | {rps / base:.2f}x | {med(bench, server, scheme, 'p99_ms'):.2f} | "
          f"{med(bench, server, scheme, 'server_cpu_s') / n * 1e6:.2f} |")
print(f"\nraw rows: pipe.csv, bench.csv")
PY
