#!/usr/bin/env bash
# The run behind docs/img/loadgen-diurnal-3apps.svg: shardcast-server (release) on a free
# port, shardcast-loadgen running diurnal-3apps for 60 s (a compressed day) with
# verification, and SHARDCAST SPLIT/MERGE issued by hand ahead of each application's peak
# (a stand-in for the split policy of later issues).
# Usage: loadgen/scripts/diurnal_demo.sh OUT_DIR
#   (after cargo build --release -p shardcast-server -p shardcast-loadgen)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:?usage: diurnal_demo.sh OUT_DIR}
DATA=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
target/release/shardcast-server --port "$PORT" --data-dir "$DATA" > "$DATA/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$DATA"' EXIT
until redis-cli -p "$PORT" ping >/dev/null 2>&1; do sleep 0.05; done
ADMIN=()
at() { (sleep "$1"; echo "t=$1s SHARDCAST $2 $3: $(redis-cli -p "$PORT" shardcast "$2" "$3")") & ADMIN+=($!); }
# batch peaks at 03:00 (7.5 s), web at 14:00 (35 s), social at 21:00 (52.5 s).
at 3 split batch
at 18 merge batch
at 25 split web
at 30 split web
at 42 split social
at 48 merge web
at 54 merge web
target/release/shardcast-loadgen --port "$PORT" --workload diurnal-3apps --duration 60 \
  --verify --out "$OUT" --quiet
wait "${ADMIN[@]}"
grep -h "migration committed" "$DATA/server.log" | sed 's/\x1b\[[0-9;]*m//g' || true
