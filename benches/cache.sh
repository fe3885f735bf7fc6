#!/usr/bin/env bash
# Shardcast as a cache against Debian's redis-server, alternating run by run.
#
#   benches/cache.sh [rounds=2] [measure_s=30] [parts=eviction,expiry]
#
# 1. Eviction: for allkeys-lru and allkeys-lfu, each server with --maxmemory 32mb (Redis:
#    appendonly everysec, like Shardcast's default fsync everysec). The load generator first
#    SETs every key of a 2,000,000-key space once (--preload: about ten times what fits), warms
#    up for 20 s, then measures a YCSB-B-like load (95% GET / 5% SET, zipfian 0.99, 100-byte
#    values, 50 connections, closed loop) for measure_s seconds: GET hit ratio, ops/s, p99,
#    server CPU per operation (user+system from /proc/<pid>/stat), keys held, evictions, RSS.
# 2. Expiry: 500,000 session keys written with SET ... EX 2 (redis-cli --pipe); how long until
#    the server has reclaimed all of them (INFO stats expired_keys), polled every 100 ms.
# Raw rows go to benches/results/<stamp>-cache/{eviction,expiry}.csv, medians to summary.md.
# Environment: MAXMEMORY (default 32mb) and SERVERS (default "redis shardcast"); e.g.
# SERVERS=redis MAXMEMORY=18mb benches/cache.sh 3 30 eviction gives Redis the limit at which
# it holds as many keys as Shardcast does at 32mb (hit ratio at equal keys held).
set -euo pipefail
ROUNDS=${1:-2}
MEASURE_S=${2:-30}
PARTS=${3:-eviction,expiry}
KEYSPACE=2000000
MAXMEMORY=${MAXMEMORY:-32mb}
SERVERS=${SERVERS:-redis shardcast}
root=$(cd "$(dirname "$0")/.." && pwd)
command -v redis-server >/dev/null && command -v redis-cli >/dev/null \
  || { echo "needs redis-server and redis-cli: apt-get install -y redis-server redis-tools" >&2; exit 2; }
cargo build --release -q -p shardcast-server -p shardcast-loadgen --manifest-path "$root/Cargo.toml"
out="$root/benches/results/$(date -u +%Y%m%d-%H%M%S)-cache"
mkdir -p "$out"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
clk=$(getconf CLK_TCK)
loadgen="$root/target/release/shardcast-loadgen"

cat > "$work/cache.toml" <<TOML
name = "cache-ycsb-b"
[[application]]
name = "cache"
key_prefix = "user:"
keyspace = $KEYSPACE
key_distribution = { type = "zipfian", theta = 0.99 }
value_size = 100
ops = { get = 0.95, set = 0.05 }
TOML

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
port_of() { if [ "$1" = redis ]; then echo 16399; else echo 16400; fi; }
info() { redis-cli -p "$1" info "$2" | tr -d '\r' | awk -F: -v k="$3" '$1 == k {print $2}'; }

start() { # $1 = redis|shardcast, $2 = policy ("" = none); prints the pid
  local port; port=$(port_of "$1")
  rm -rf "$work/$1" && mkdir -p "$work/$1"
  local mem=()
  [ -n "$2" ] && mem=(--maxmemory "$MAXMEMORY" --maxmemory-policy "$2")
  if [ "$1" = redis ]; then
    redis-server --port "$port" --appendonly yes --appendfsync everysec --save "" "${mem[@]}" \
      --dir "$work/redis" --logfile "$work/redis.log" >/dev/null 2>&1 &
  else
    SHARDCAST_LOG=warn "$root/target/release/shardcast-server" --port "$port" \
      --data-dir "$work/shardcast" --fsync everysec "${mem[@]}" >"$work/shardcast.log" 2>&1 &
  fi
  local pid=$!
  for _ in $(seq 1 200); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
  redis-cli -p "$port" ping >/dev/null || { echo "$1 did not start" >&2; exit 1; }
  echo $pid
}

stop() { kill -TERM "$1"; while kill -0 "$1" 2>/dev/null; do sleep 0.05; done; }

json_get() { # $1 = summary.json: the GET row's hit ratio, ops/s and p99 (us)
  python3 - "$1" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
get = next(o for o in s["per_op"] if o["op"] == "get")
print(f'{get["hit_ratio"]:.4f},{s["ops_per_s"]:.0f},{s["latency_us"]["p99"]:.0f}')
PY
}

{
  echo "nproc=$(nproc) kernel=$(uname -r) redis=$(redis-server --version | awk '{print $3}') rounds=$ROUNDS measure_s=$MEASURE_S keyspace=$KEYSPACE maxmemory=$MAXMEMORY"
  git -C "$root" log -1 --format='commit=%h %s'
} > "$out/machine.txt"

echo "round,server,policy,hit_ratio,ops_s,p99_us,cpu_us_per_op,keys,evicted_keys,used_memory,rss_kb" > "$out/eviction.csv"
case ",$PARTS," in *,eviction,*) eviction_rounds=$ROUNDS ;; *) eviction_rounds=0 ;; esac
case ",$PARTS," in *,expiry,*) expiry_rounds=$ROUNDS ;; *) expiry_rounds=0 ;; esac
for round in $(seq 1 "$eviction_rounds"); do
  for policy in allkeys-lru allkeys-lfu; do
    order=$SERVERS
    [ $((round % 2)) = 0 ] && order=$(echo "$SERVERS" | tr ' ' '\n' | tac | tr '\n' ' ')
    for server in $order; do
      pid=$(start "$server" "$policy")
      port=$(port_of "$server")
      "$loadgen" --port "$port" --workload "$work/cache.toml" --preload --duration 20 \
        --connections 50 --closed-loop --quiet --no-shards >/dev/null
      before=$(cpu_ticks "$pid")
      "$loadgen" --port "$port" --workload "$work/cache.toml" --duration "$MEASURE_S" --seed $((round + 1)) \
        --connections 50 --closed-loop --quiet --no-shards --out "$work/run" >/dev/null
      after=$(cpu_ticks "$pid")
      IFS=, read -r hit ops p99 < <(json_get "$work/run/summary.json")
      cpu_us=$(awk -v a="$after" -v b="$before" -v c="$clk" -v o="$ops" -v s="$MEASURE_S" \
        'BEGIN {printf "%.2f", (a - b) / c / (o * s) * 1e6}')
      keys=$(redis-cli -p "$port" dbsize)
      row="$round,$server,$policy,$hit,$ops,$p99,$cpu_us,$keys,$(info "$port" stats evicted_keys),$(info "$port" memory used_memory),$(rss_kb "$pid")"
      echo "$row" | tee -a "$out/eviction.csv"
      stop "$pid"
    done
  done
done

echo "round,server,expired_keys,write_s,reclaim_s" > "$out/expiry.csv"
python3 -c '
import sys
for i in range(500000):
    k = f"session:{i}"
    sys.stdout.write(f"*5\r\n$3\r\nSET\r\n${len(k)}\r\n{k}\r\n$5\r\nstate\r\n$2\r\nEX\r\n$1\r\n2\r\n")
' > "$work/sessions.resp"
for round in $(seq 1 "$expiry_rounds"); do
  order=$SERVERS
  [ $((round % 2)) = 0 ] && order=$(echo "$SERVERS" | tr ' ' '\n' | tac | tr '\n' ' ')
  for server in $order; do
    pid=$(start "$server" "")
    port=$(port_of "$server")
    t0=$(date +%s.%N)
    redis-cli -p "$port" --pipe < "$work/sessions.resp" >/dev/null
    t1=$(date +%s.%N)
    deadline=$(awk -v t="$t1" 'BEGIN {printf "%.3f", t + 120}')
    while [ "$(info "$port" stats expired_keys)" -lt 500000 ]; do
      [ "$(awk -v d="$deadline" -v n="$(date +%s.%N)" 'BEGIN {print (n > d)}')" = 1 ] && break
      sleep 0.1
    done
    t2=$(date +%s.%N)
    echo "$round,$server,$(info "$port" stats expired_keys),$(awk -v a="$t1" -v b="$t0" 'BEGIN {printf "%.2f", a - b}'),$(awk -v a="$t2" -v b="$t1" 'BEGIN {printf "%.2f", a - b}')" \
      | tee -a "$out/expiry.csv"
    stop "$pid"
  done
done

python3 - "$out" <<'PY' | tee "$out/summary.md"
import csv, statistics, sys
out = sys.argv[1]
rows = list(csv.DictReader(open(f"{out}/eviction.csv")))
med = lambda xs: statistics.median(float(x) for x in xs)
print("| policy | server | GET hit ratio | ops/s | p99 us | CPU us/op | keys held | RSS MiB |")
print("|---|---|---|---|---|---|---|---|")
for policy in ("allkeys-lru", "allkeys-lfu"):
    for server in ("redis", "shardcast"):
        r = [x for x in rows if x["policy"] == policy and x["server"] == server]
        if not r:
            continue
        print(f'| {policy} | {server} | {med(x["hit_ratio"] for x in r):.3f} | {med(x["ops_s"] for x in r):.0f} | '
              f'{med(x["p99_us"] for x in r):.0f} | {med(x["cpu_us_per_op"] for x in r):.2f} | '
              f'{med(x["keys"] for x in r):.0f} | {med(x["rss_kb"] for x in r) / 1024:.0f} |')
exp = list(csv.DictReader(open(f"{out}/expiry.csv")))
print()
print("| server | writing 500k keys with EX 2 (s) | all reclaimed, after the last write (s) |")
print("|---|---|---|")
for server in ("redis", "shardcast"):
    r = [x for x in exp if x["server"] == server]
    if not r:
        continue
    print(f'| {server} | {med(x["write_s"] for x in r):.2f} | {med(x["reclaim_s"] for x in r):.2f} |')
PY
