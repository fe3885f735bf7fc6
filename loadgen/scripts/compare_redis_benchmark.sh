#!/usr/bin/env bash
# Compares shardcast-loadgen with redis-benchmark as clients of the same redis-server:
# same connections, pipeline, keyspace and value size; runs alternate, ROUNDS times.
# Prints: client, test, pipeline, ops/s, client CPU seconds (user+sys) per million requests.
# Usage: loadgen/scripts/compare_redis_benchmark.sh [ROUNDS]   (after cargo build --release -p shardcast-loadgen)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
LG=target/release/shardcast-loadgen
DIR=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR" --daemonize yes --logfile "$DIR/redis.log"
trap 'redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
until redis-cli -p "$PORT" ping >/dev/null 2>&1; do sleep 0.05; done

cpu() { awk '{print $1 + $2}' "$1"; }
for round in $(seq "$ROUNDS"); do
  for test in get set; do
    for P in 16 1; do
      if [ "$P" = 16 ]; then N=2000000; D=3; else N=300000; D=4; fi
      /usr/bin/time -f "%U %S" -o "$DIR/t" redis-benchmark -p "$PORT" -c 50 -P "$P" -t "$test" -n "$N" -r 100000 -d 3 -q \
        | tr '\r' '\n' | grep -E "requests per second" | tail -1 > "$DIR/rb"
      rps=$(grep -oE '[0-9.]+ requests per second' "$DIR/rb" | awk '{print $1}')
      echo "redis-benchmark $test P=$P ops/s=$rps cpu_s_per_M=$(awk -v c="$(cpu "$DIR/t")" -v n="$N" 'BEGIN{printf "%.2f", c / n * 1e6}')"
      /usr/bin/time -f "%U %S" -o "$DIR/t" "$LG" --port "$PORT" --workload "loadgen/workloads/bench-$test.toml" \
        --connections 50 --pipeline "$P" --duration "$D" --quiet --no-shards > "$DIR/lg"
      line=$(grep -E "^all " "$DIR/lg")
      count=$(echo "$line" | awk '{print $2}')
      rps=$(echo "$line" | awk '{print $4}')
      echo "shardcast-loadgen $test P=$P ops/s=$rps cpu_s_per_M=$(awk -v c="$(cpu "$DIR/t")" -v n="$count" 'BEGIN{printf "%.2f", c / n * 1e6}')"
    done
  done
done
