#!/usr/bin/env bash
# Online migration: how fast a split or merge moves data, and what it does to foreground
# latency.
#
#   benches/migration.sh [rounds=3] [keys=500000] [value_bytes=100]
#
# 1. Loads <keys> keys of <value_bytes> into one partition ("key", redis-benchmark's keys).
# 2. Throughput: SHARDCAST SPLIT key then MERGE key, <rounds> times (since the shared-shard
#    layout: a carve-out of the whole partition out of its shared shard, then its fold-back);
#    each migration's keys, batch bytes and wall time come from INFO shards
#    (migration_last_*). MB/s = batch bytes / wall time from the intent to the end of the
#    install.
# 3. Foreground: redis-benchmark GET (-c 50 -P 1) alternating, <rounds> times, a steady run
#    and a run during which SPLIT/MERGE loop without pause; p50/p99 from its CSV line.
# Raw rows in benches/results/<stamp>-migration/; the summary is printed.
set -euo pipefail
ROUNDS=${1:-3}
KEYS=${2:-500000}
VALUE=${3:-100}
root=$(cd "$(dirname "$0")/.." && pwd)
command -v redis-benchmark >/dev/null \
  || { echo "needs redis-benchmark: apt-get install -y redis-tools" >&2; exit 2; }
cargo build --release -q -p shardcast-server --manifest-path "$root/Cargo.toml"
out="$root/benches/results/$(date -u +%Y%m%d-%H%M%S)-migration"
mkdir -p "$out"
work=$(mktemp -d)
port=16411
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

SHARDCAST_LOG=warn "$root/target/release/shardcast-server" --port $port --data-dir "$work/data" \
  --fsync everysec >"$work/server.log" 2>&1 &
for _ in $(seq 1 200); do redis-cli -p $port ping >/dev/null 2>&1 && break; sleep 0.05; done
{
  echo "nproc=$(nproc) kernel=$(uname -r) keys=$KEYS value_bytes=$VALUE rounds=$ROUNDS"
  git -C "$root" log -1 --format='commit=%h %s'
} > "$out/machine.txt"

# Every key 0..KEYS-1 once: redis-benchmark's __rand_int__ with -r draws with replacement, so
# load by pipe instead.
python3 - "$KEYS" "$VALUE" <<'EOF' | redis-cli -p $port --pipe >/dev/null
import sys
n, size = int(sys.argv[1]), int(sys.argv[2])
value = "x" * size
out = sys.stdout
for i in range(n):
    key = "key:%012d" % i
    out.write("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, size, value))
EOF
echo "loaded: $(redis-cli -p $port dbsize) keys" | tee -a "$out/machine.txt"

field() { redis-cli -p $port info shards | tr -d '\r' | awk -F: -v f="$1" '$1 == f {print $2}'; }

echo "round,verb,keys,bytes,ms,mb_per_s,pause_ms" > "$out/throughput.csv"
for round in $(seq 1 "$ROUNDS"); do
  for verb in SPLIT MERGE; do
    [ "$(redis-cli -p $port shardcast $verb key)" = OK ] || { echo "$verb failed" >&2; exit 1; }
    echo "$round,$verb,$(field migration_last_keys),$(field migration_last_bytes),$(field migration_last_ms),$(field migration_last_mb_per_sec),$(field migration_last_pause_ms)" \
      | tee -a "$out/throughput.csv"
  done
done

echo "round,phase,rps,avg_ms,min_ms,p50_ms,p95_ms,p99_ms,max_ms,migrations" > "$out/foreground.csv"
for round in $(seq 1 "$ROUNDS"); do
  for phase in steady migrating; do
    before=$(field migrations_completed)
    loop=""
    rm -f "$work/stop"
    if [ $phase = migrating ]; then
      ( while [ ! -e "$work/stop" ]; do
          redis-cli -p $port shardcast split key >/dev/null
          redis-cli -p $port shardcast merge key >/dev/null
        done ) &
      loop=$!
    fi
    line=$(redis-benchmark -p $port -t get -n 400000 -c 50 -P 1 -r "$KEYS" --csv | tail -1 | tr -d '"')
    # Stop the loop after its current migration, so none runs into the next steady run.
    if [ -n "$loop" ]; then touch "$work/stop"; wait $loop; fi
    # Back to the steady layout before the next run: the partition folded back into its
    # shared shard (no shard of its own).
    while [ "$(redis-cli -p $port shardcast shards | grep -c '^key$')" != 0 ]; do
      redis-cli -p $port shardcast merge key >/dev/null 2>&1 || sleep 0.1
    done
    after=$(field migrations_completed)
    echo "$round,$phase,${line#*,},$((after - before))" | tee -a "$out/foreground.csv"
  done
done

python3 - "$out" <<'EOF'
import csv, statistics, sys
out = sys.argv[1]
rows = list(csv.DictReader(open(out + "/throughput.csv")))
for verb in ("SPLIT", "MERGE"):  # carve-out and fold-back of the whole partition
    r = [x for x in rows if x["verb"] == verb]
    print("%s: median %.0f keys, %.1f MB in %.0f ms = %.1f MB/s, cutover pause %.2f ms" % (
        verb, statistics.median(float(x["keys"]) for x in r),
        statistics.median(float(x["bytes"]) for x in r) / 1e6,
        statistics.median(float(x["ms"]) for x in r),
        statistics.median(float(x["mb_per_s"]) for x in r),
        statistics.median(float(x["pause_ms"]) for x in r)))
fg = list(csv.DictReader(open(out + "/foreground.csv")))
med = {}
for phase in ("steady", "migrating"):
    r = [x for x in fg if x["phase"] == phase]
    med[phase] = {k: statistics.median(float(x[k]) for x in r) for k in ("rps", "p50_ms", "p99_ms", "max_ms")}
    print("GET %-9s: %.0f req/s, p50 %.3f ms, p99 %.3f ms, max %.3f ms (medians of %d)" % (
        phase, med[phase]["rps"], med[phase]["p50_ms"], med[phase]["p99_ms"], med[phase]["max_ms"], len(r)))
print("during migrations / steady: throughput %.2fx, p99 %.2fx" % (
    med["migrating"]["rps"] / med["steady"]["rps"], med["migrating"]["p99_ms"] / med["steady"]["p99_ms"]))
print("migrations during the migrating runs:", [x["migrations"] for x in fg if x["phase"] == "migrating"])
EOF
echo "raw data: $out"
