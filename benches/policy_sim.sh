#!/usr/bin/env bash
# The policy simulator's benchmark (issue: 1,000 partitions on 64 cores for 7 simulated days
# at one-minute ticks, all policies, under 60 s): the release binary, one run per seed, the
# wall time of each, the tables and the --out files under
# benches/results/<stamp>-policy-sim/seed-<n>/.
#
#   benches/policy_sim.sh [seeds="1 2 3"]
set -euo pipefail
SEEDS=${1:-"1 2 3"}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release -q -p shardcast-sim --manifest-path "$root/Cargo.toml"
out="$root/benches/results/$(date -u +%Y%m%d-%H%M%S)-policy-sim"
mkdir -p "$out"
{
  echo "nproc=$(nproc) kernel=$(uname -r) seeds=$SEEDS"
  git -C "$root" log -1 --format='commit=%h %s'
} > "$out/machine.txt"
for seed in $SEEDS; do
  start=$(date +%s.%N)
  "$root/target/release/shardcast-sim" policy --cores 64 --partitions 1000 --days 7 --seed "$seed" \
    --out "$out/seed-$seed" | tee "$out/seed-$seed.txt"
  end=$(date +%s.%N)
  echo "seed $seed: $(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.1f", b-a}') s wall" | tee -a "$out/times.txt"
  # 9 MB and 2 MB a seed; a seed reproduces them exactly (the simulation is deterministic).
  rm -f "$out/seed-$seed/partitions.csv" "$out/seed-$seed/timeline.csv"
done
