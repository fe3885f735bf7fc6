#!/usr/bin/env bash
# What telemetry costs on the data path: redis-benchmark -c 50 -P 16 SET and GET against
# Shardcast with telemetry on (the default) and off (--telemetry no), alternating run by run
# (the order rotates each round), with Debian's redis-server in the same rotation as the
# baseline. Per run: requests/s, p99, and server CPU per request (user+system from /proc).
#
#   benches/telemetry.sh [rounds=5] [requests=2000000]
#
# Both Shardcast runs use all cores, --fsync everysec and the default 1 s tick; Redis runs
# with appendonly yes, appendfsync everysec. Keys: -r 1000000 over one prefix (`key:`), so
# every op updates the sketches of one shared shard per core.
# Raw rows: benches/results/<stamp>-telemetry/bench.csv; medians and ratios: summary.md.
set -euo pipefail
ROUNDS=${1:-5}
N=${2:-2000000}
root=$(cd "$(dirname "$0")/.." && pwd)
command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null \
  || { echo "needs redis-server and redis-tools: apt-get install -y redis-server redis-tools" >&2; exit 2; }
cargo build --release -q -p shardcast-server --manifest-path "$root/Cargo.toml"
out="$root/benches/results/$(date -u +%Y%m%d-%H%M%S)-telemetry"
mkdir -p "$out"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
clk=$(getconf CLK_TCK)
port=16420

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

start() { # $1 = redis|on|off; prints the pid once PING answers
  local dir="$work/data"
  rm -rf "$dir" && mkdir -p "$dir"
  case $1 in
    redis) redis-server --port $port --appendonly yes --appendfsync everysec --save "" \
             --dir "$dir" --logfile "$work/redis.log" >/dev/null 2>&1 & ;;
    on)  SHARDCAST_LOG=warn "$root/target/release/shardcast-server" --port $port \
           --data-dir "$dir" --fsync everysec >>"$work/shardcast.log" 2>&1 & ;;
    off) SHARDCAST_LOG=warn "$root/target/release/shardcast-server" --port $port \
           --data-dir "$dir" --fsync everysec --telemetry no >>"$work/shardcast.log" 2>&1 & ;;
  esac
  local pid=$!
  for _ in $(seq 1 2000); do redis-cli -p $port ping >/dev/null 2>&1 && break; sleep 0.01; done
  echo $pid
}

stop() { kill -TERM "$1"; while kill -0 "$1" 2>/dev/null; do sleep 0.02; done; }

{
  echo "nproc=$(nproc) kernel=$(uname -r) redis=$(redis-server --version | awk '{print $3}') requests=$N rounds=$ROUNDS"
  git -C "$root" log -1 --format='commit=%h %s'
} > "$out/machine.txt"
echo "round,server,test,rps,p50_ms,p99_ms,server_cpu_s" > "$out/bench.csv"
runs=(on off redis)
for round in $(seq 1 "$ROUNDS"); do
  for k in 0 1 2; do
    server=${runs[$(( (k + round) % 3 ))]}
    pid=$(start "$server")
    for test in SET GET; do
      cpu0=$(cpu_ticks "$pid")
      line=$(redis-benchmark -p $port -c 50 -P 16 -n "$N" -r 1000000 --csv -t "$test" | tail -1 | tr -d '"')
      cpu1=$(cpu_ticks "$pid")
      echo "$line" | awk -F, -v r="$round" -v s="$server" -v t="$test" -v c0="$cpu0" -v c1="$cpu1" -v clk="$clk" \
        '{ printf "%s,%s,%s,%s,%s,%s,%.2f\n", r, s, t, $2, $5, $7, (c1 - c0) / clk }' | tee -a "$out/bench.csv"
    done
    stop "$pid"
  done
done
python3 - "$out" "$N" <<'PY' | tee "$out/summary.md"
import csv, statistics, sys
out, n = sys.argv[1], int(sys.argv[2])
rows = list(csv.DictReader(open(f"{out}/bench.csv")))
def med(server, test, field):
    v = [float(r[field]) for r in rows if r["server"] == server and r["test"] == test]
    return statistics.median(v) if v else float("nan")
print(f"redis-benchmark -c 50 -P 16 -n {n:,} -r 1,000,000 (medians of the rounds)\n")
print("| test | server | requests/s | p99 ms | CPU-s per 1M requests | CPU vs telemetry off |")
print("|---|---|---|---|---|---|")
for test in ("SET", "GET"):
    off = med("off", test, "server_cpu_s")
    for server, label in (("on", "shardcast, telemetry on"), ("off", "shardcast, telemetry off"), ("redis", "redis 7.0")):
        cpu = med(server, test, "server_cpu_s")
        print(f"| {test} | {label} | {med(server, test, 'rps'):,.0f} | {med(server, test, 'p99_ms'):.2f} | "
              f"{cpu / n * 1e6:.2f} | {cpu / off:.3f}x |")
print("\nraw rows: bench.csv")
PY
