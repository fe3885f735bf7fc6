#!/usr/bin/env bash
# The allocator's policies judged on the same load: shardcast-loadgen's diurnal-3apps (a day
# compressed to 60 s, 4 days) and flash-crowd (60 s, a 20x spike at 20 s for 15 s) against a
# fresh release server under each policy (static, reactive, predictive), the order rotating
# run by run, every read verified.
#
#   benches/policy_eval.sh [rounds=1] [core-capacity-ops=12000] [slo-us=1000]
#
# This machine has 2 cores shared by the server and the load generator: a split cannot add
# capacity here (docs/benchmarks.md: 0.69-0.78x). So the server runs with a pinned
# core-capacity-ops (a model machine on which the peaks need more shards) and the figures show
# what each policy decides and when, and what its migrations cost the foreground, not the
# capacity a split would buy on idle cores; the simulator judges that at scale.
#
# Per run: ops/s, p99, seconds whose p99 exceeded the SLO, verify failures, layout changes
# done, shard-seconds (shards the load generator saw, summed over 1 s intervals), server CPU
# (user+system from /proc), and the forecaster's mean recent error. Raw outputs (the load
# generator's summary.json, intervals.csv, shards.csv, plot.svg; SHARDCAST EXPLAIN; INFO)
# under benches/results/<stamp>-policy-eval/<workload>-<policy>-<round>/; summary.md and
# runs.csv beside them.
set -euo pipefail
ROUNDS=${1:-1}
CAPACITY=${2:-12000}
SLO_US=${3:-1000}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release -q -p shardcast-server -p shardcast-loadgen --manifest-path "$root/Cargo.toml"
out="$root/benches/results/$(date -u +%Y%m%d-%H%M%S)-policy-eval"
mkdir -p "$out"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
clk=$(getconf CLK_TCK)
port=16520
{
  echo "nproc=$(nproc) kernel=$(uname -r) rounds=$ROUNDS core-capacity-ops=$CAPACITY slo-us=$SLO_US"
  git -C "$root" log -1 --format='commit=%h %s'
} > "$out/machine.txt"
cat > "$out/server.toml" <<EOF
core-capacity-ops = $CAPACITY
predict-step-s = 1
day-s = 60
forecast-horizon-s = 5
predict-fit-interval-s = 15
merge-delay-s = 10
migrations-per-minute-max = 12
EOF

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
wait_ping() { for _ in $(seq 1 2000); do redis-cli -p "$1" ping >/dev/null 2>&1 && return; sleep 0.01; done; }

echo "workload,policy,round,dir,server_cpu_s" > "$out/runs.csv"
policies=(static reactive predictive)
for round in $(seq 1 "$ROUNDS"); do
  for workload in diurnal-3apps flash-crowd; do
    case $workload in
      diurnal-3apps) duration=240 ;;
      flash-crowd) duration=60 ;;
    esac
    for k in 0 1 2; do
      policy=${policies[$(( (k + round) % 3 ))]}
      run="$out/$workload-$policy-$round"
      mkdir -p "$run"
      rm -rf "$work/data"
      SHARDCAST_LOG=info "$root/target/release/shardcast-server" --port $port --data-dir "$work/data" \
        --tick-ms 500 --policy "$policy" --config "$out/server.toml" >"$run/server.log" 2>&1 &
      pid=$!
      wait_ping $port
      cpu0=$(cpu_ticks $pid)
      "$root/target/release/shardcast-loadgen" --port $port --workload $workload --duration $duration \
        --open-loop --verify --connections 50 --quiet --out "$run" > "$run/loadgen.txt" 2>&1 || true
      cpu1=$(cpu_ticks $pid)
      rm -f "$run/latency.hlog" # 1.5 MB a run; summary.json and intervals.csv keep the percentiles
      redis-cli -p $port SHARDCAST EXPLAIN COUNT 1000 > "$run/explain.txt" || true
      redis-cli -p $port SHARDCAST PREDICT > "$run/predict.txt" || true
      redis-cli -p $port INFO > "$run/info.txt" || true
      redis-cli -p $port shutdown >/dev/null 2>&1 || true
      wait $pid || true
      echo "$workload,$policy,$round,$run,$(awk -v a="$cpu0" -v b="$cpu1" -v c="$clk" 'BEGIN{printf "%.2f", (b-a)/c}')" >> "$out/runs.csv"
      echo "done: $workload $policy round $round"
    done
  done
done
python3 "$root/benches/policy_summary.py" "$out" "$SLO_US" | tee "$out/summary.md"
