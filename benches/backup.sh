#!/usr/bin/env bash
# A backup of a loaded server while clients read, against Debian's redis-server (BGSAVE of an
# RDB by fork), alternating run by run.
#
#   benches/backup.sh [rounds=2] [keys=1000000]
#
# Each server (Redis: appendonly everysec, its RDB into its dir; Shardcast: --fsync everysec,
# --cores 2) is loaded with `keys` keys `user:N` of 100 bytes (redis-cli --pipe), then:
# 1. steady: redis-benchmark GET (-P 1, 20 connections, random keys) for 300,000 requests;
# 2. during backups: the same while backups run back to back (Redis: BGSAVE, polled until
#    done; Shardcast: SAVE, which answers when the backup is complete); counts them and
#    their mean time (the last one may end after the benchmark).
# Reported per run: GET ops/s and p99 steady and during, the backup time, the hold (Shardcast's
# ops wait for its cut; Redis's fork pause, INFO latest_fork_usec), the backup's bytes on disk,
# and the server's RSS before and at its highest during (Redis: parent only; its child's
# copy-on-write is rdb_last_cow_size).
# Raw rows: benches/results/<stamp>-backup/runs.csv.
set -euo pipefail
ROUNDS=${1:-2}
KEYS=${2:-1000000}
root=$(cd "$(dirname "$0")/.." && pwd)
command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null \
  || { echo "needs redis-server and redis-tools: apt-get install -y redis-server redis-tools" >&2; exit 2; }
cargo build --release -q -p shardcast-server --manifest-path "$root/Cargo.toml"
out="$root/benches/results/$(date -u +%Y%m%d-%H%M%S)-backup"
mkdir -p "$out"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

port_of() { if [ "$1" = redis ]; then echo 16401; else echo 16402; fi; }
info() { redis-cli -p "$1" info "$2" | tr -d '\r' | awk -F: -v k="$3" '$1 == k {print $2}'; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

start() { # $1 = redis|shardcast; prints the pid
  local port; port=$(port_of "$1")
  rm -rf "$work/$1" "$work/$1-data-backup" && mkdir -p "$work/$1"
  if [ "$1" = redis ]; then
    redis-server --port "$port" --appendonly yes --appendfsync everysec --save "" \
      --dir "$work/redis" --logfile "$work/redis.log" >/dev/null 2>&1 &
  else
    SHARDCAST_LOG=warn "$root/target/release/shardcast-server" --port "$port" --cores 2 \
      --data-dir "$work/shardcast/data" --fsync everysec >"$work/shardcast.log" 2>&1 &
  fi
  local pid=$!
  for _ in $(seq 1 200); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
  redis-cli -p "$port" ping >/dev/null || { echo "$1 did not start" >&2; exit 1; }
  echo $pid
}

stop() { kill -TERM "$1"; while kill -0 "$1" 2>/dev/null; do sleep 0.05; done; }

# redis-benchmark --csv: "test","rps","avg_latency_ms","min","p50","p95","p99","max"
bench_get() { # $1 = port; prints ops/s,p99_ms
  redis-benchmark -p "$1" -t get -n 300000 -c 20 -P 1 -r "$KEYS" -d 100 --csv 2>/dev/null \
    | awk -F, 'NR == 2 {gsub(/"/, ""); print $2 "," $7}'
}

backups_done() { info "$1" persistence rdb_saves 2>/dev/null || true; }

python3 -c '
import sys
n = int(sys.argv[1])
v = "x" * 100
w = sys.stdout.write
for i in range(n):
    k = f"key:{i:012d}"
    w(f"*3\r\n$3\r\nSET\r\n${len(k)}\r\n{k}\r\n$100\r\n{v}\r\n")
' "$KEYS" > "$work/load.resp"

{
  echo "nproc=$(nproc) kernel=$(uname -r) redis=$(redis-server --version | awk '{print $3}') rounds=$ROUNDS keys=$KEYS"
  git -C "$root" log -1 --format='commit=%h %s'
} > "$out/machine.txt"
echo "round,server,get_ops_steady,get_p99_ms_steady,get_ops_during,get_p99_ms_during,backups,backup_s_mean,hold_us,backup_bytes,rss_kb_before,rss_kb_max" > "$out/runs.csv"
for round in $(seq 1 "$ROUNDS"); do
  order="redis shardcast"
  [ $((round % 2)) = 0 ] && order="shardcast redis"
  for server in $order; do
    pid=$(start "$server")
    port=$(port_of "$server")
    redis-cli -p "$port" --pipe < "$work/load.resp" >/dev/null
    sleep 2 # let the everysec flush and snapshots of the load settle before measuring
    IFS=, read -r ops_steady p99_steady < <(bench_get "$port")
    rss_before=$(rss_kb "$pid")
    # Back-to-back backups while the benchmark runs.
    bench_get "$port" > "$work/during.csv" &
    bench=$!
    rss_max=$rss_before; n=0; total=0
    while kill -0 "$bench" 2>/dev/null; do
      tb0=$(date +%s.%N)
      if [ "$server" = redis ]; then
        redis-cli -p "$port" bgsave >/dev/null
        while [ "$(info "$port" persistence rdb_bgsave_in_progress)" = 1 ]; do
          r=$(rss_kb "$pid"); [ "$r" -gt "$rss_max" ] && rss_max=$r
          sleep 0.02
        done
      else
        redis-cli -p "$port" save >/dev/null &
        saver=$!
        while kill -0 "$saver" 2>/dev/null; do
          r=$(rss_kb "$pid"); [ "$r" -gt "$rss_max" ] && rss_max=$r
          sleep 0.02
        done
        wait "$saver"
      fi
      tb1=$(date +%s.%N)
      n=$((n + 1)); total=$(awk -v t="$total" -v a="$tb1" -v b="$tb0" 'BEGIN {print t + a - b}')
    done
    wait "$bench"
    IFS=, read -r ops_during p99_during < "$work/during.csv"
    if [ "$server" = redis ]; then
      hold=$(info "$port" stats latest_fork_usec)
      bytes=$(stat -c %s "$work/redis/dump.rdb")
    else
      hold=$(info "$port" persistence backup_last_hold_us)
      last=$(info "$port" persistence backup_last)
      bytes=$(du -sb "$last" | awk '{print $1}')
    fi
    mean=$(awk -v t="$total" -v n="$n" 'BEGIN {printf "%.2f", (n > 0 ? t / n : 0)}')
    echo "$round,$server,$ops_steady,$p99_steady,$ops_during,$p99_during,$n,$mean,$hold,$bytes,$rss_before,$rss_max" \
      | tee -a "$out/runs.csv"
    stop "$pid"
  done
done
echo "results: $out"
