#!/usr/bin/env bash
# What telemetry costs on the data path: redis-benchmark -c 50 -P 16 SET and GET against one
# Shardcast process with telemetry on (the default) and off (CONFIG SET telemetry no),
# alternating run by run (the order rotates each round), with Debian's redis-server in the
# same rotation as the baseline. Per run: requests/s, p99, and server CPU per request
# (user+system from /proc). Besides the medians, the summary gives the median of each round's
# on/off CPU ratio (paired within a round, which cancels the machine's drift).
#
#   benches/telemetry.sh [rounds=5] [requests=2000000]
#
# Shardcast uses all cores, --fsync everysec and the default 1 s tick; Redis runs with
# appendonly yes, appendfsync everysec. Keys: -r 1000000 over one prefix (`key:`), all
# loaded first, so every op updates the sketches of that partition's shared shard.
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

wait_ping() { for _ in $(seq 1 2000); do redis-cli -p "$1" ping >/dev/null 2>&1 && return; sleep 0.01; done; }

# One Shardcast and one Redis for the whole run: telemetry is switched with CONFIG SET
# between runs of the same process, so both settings see the same memory and data.
mkdir -p "$work/sc" "$work/redis"
SHARDCAST_LOG=warn "$root/target/release/shardcast-server" --port $port \
  --data-dir "$work/sc" --fsync everysec >>"$work/shardcast.log" 2>&1 &
sc_pid=$!
redis-server --port $((port + 1)) --appendonly yes --appendfsync everysec --save "" \
  --dir "$work/redis" --logfile "$work/redis.log" >/dev/null 2>&1 &
redis_pid=$!
wait_ping $port
wait_ping $((port + 1))
# Load phase (not measured): every key of the range exists, as in the measured runs.
for p in $port $((port + 1)); do
  redis-benchmark -p $p -c 50 -P 16 -n 1000000 -r 1000000 -t set -q >/dev/null
done

{
  echo "nproc=$(nproc) kernel=$(uname -r) redis=$(redis-server --version | awk '{print $3}') requests=$N rounds=$ROUNDS"
  git -C "$root" log -1 --format='commit=%h %s'
} > "$out/machine.txt"
echo "round,server,test,rps,p50_ms,p99_ms,server_cpu_s" > "$out/bench.csv"
runs=(on off redis)
for round in $(seq 1 "$ROUNDS"); do
  for k in 0 1 2; do
    server=${runs[$(( (k + round) % 3 ))]}
    case $server in
      redis) p=$((port + 1)) pid=$redis_pid ;;
      on)  p=$port pid=$sc_pid; redis-cli -p $p config set telemetry yes >/dev/null ;;
      off) p=$port pid=$sc_pid; redis-cli -p $p config set telemetry no >/dev/null ;;
    esac
    for test in SET GET; do
      cpu0=$(cpu_ticks "$pid")
      line=$(redis-benchmark -p $p -c 50 -P 16 -n "$N" -r 1000000 --csv -t "$test" | tail -1 | tr -d '"')
      cpu1=$(cpu_ticks "$pid")
      echo "$line" | awk -F, -v r="$round" -v s="$server" -v t="$test" -v c0="$cpu0" -v c1="$cpu1" -v clk="$clk" \
        '{ printf "%s,%s,%s,%s,%s,%s,%.2f\n", r, s, t, $2, $5, $7, (c1 - c0) / clk }' | tee -a "$out/bench.csv"
    done
  done
done
redis-cli -p $port shutdown >/dev/null 2>&1 || true
redis-cli -p $((port + 1)) shutdown nosave >/dev/null 2>&1 || true
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
for test in ("SET", "GET"):
    ratios = []
    for r in sorted({row["round"] for row in rows}):
        on = [float(x["server_cpu_s"]) for x in rows if x["round"] == r and x["server"] == "on" and x["test"] == test]
        off = [float(x["server_cpu_s"]) for x in rows if x["round"] == r and x["server"] == "off" and x["test"] == test]
        if on and off:
            ratios.append(on[0] / off[0])
    print(f"\n{test}: CPU per request, telemetry on / off, per round: "
          + ", ".join(f"{x:.3f}" for x in ratios)
          + f"; median {statistics.median(ratios):.3f}")
print("\nraw rows: bench.csv")
PY
