#!/usr/bin/env bash
# What the dashboard costs the server: GET /api/state with 1,000 partitions.
#
#   benches/dashboard_state.sh [requests=1000] [warmup_s=150] [rate=4000]
#
# A release server on every core, its load history and forecasts sized for 1,000 partitions
# (history-partitions-max = 1000; the forecaster's default one-minute step), driven by a paced
# loader that spreads <rate> ops/s (half GET, half SET) uniformly over 1,000 partitions (`p0:k`..`p999:k`)
# for <warmup_s> seconds, until the history and the forecasts hold them all. Then, with the
# load still running, <requests> requests of each kind, one at a time:
#   default   GET /api/state (every partition, every core's shards, 4 charts at tick resolution,
#             50 decisions)
#   heavy     GET /api/state?partition=p0..p15&resolution=minute&decisions=1000 (16 charts)
# Per kind: client-side latency (connect to last byte) p50/p99/max, response bytes, and the
# server's CPU per request: its user+system ticks over the requests minus what the load alone
# took over a window as long, from /proc/<pid>/stat. There is no Redis baseline: Redis has no
# such endpoint.
# Raw rows: benches/results/<stamp>-dashboard/requests.csv; summary.md.
set -euo pipefail
REQUESTS=${1:-1000}
WARMUP=${2:-150}
RATE=${3:-4000}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release -q -p shardcast-server --manifest-path "$root/Cargo.toml"
out="$root/benches/results/$(date -u +%Y%m%d-%H%M%S)-dashboard"
mkdir -p "$out"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port=16420
cat > "$work/shardcast.toml" <<'EOF'
history-partitions-max = 1000
policy = "static"
EOF
SHARDCAST_LOG=warn "$root/target/release/shardcast-server" --port $port --data-dir "$work/data" \
  --config "$work/shardcast.toml" >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 2000); do redis-cli -p $port ping >/dev/null 2>&1 && break; sleep 0.01; done
{
  echo "nproc=$(nproc) kernel=$(uname -r) requests=$REQUESTS warmup_s=$WARMUP rate=$RATE"
  git -C "$root" log -1 --format='commit=%h %s'
} > "$out/machine.txt"

python3 - "$port" "$RATE" > "$work/loader.log" 2>&1 <<'PY' &
# Paced load: every 10 ms a pipeline of rate/100 commands over 1,000 partitions.
import socket, sys, time, random
port, rate = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
per = max(1, rate // 100)
rng = random.Random(1)
nxt = time.monotonic()
while True:
    buf = []
    for _ in range(per):
        k = b"p%d:k%d" % (rng.randrange(1000), rng.randrange(100))
        if rng.random() < 0.5:
            buf.append(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(k), k))
        else:
            buf.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$2\r\nvv\r\n" % (len(k), k))
    s.sendall(b"".join(buf))
    # Read exactly `per` replies (simple strings, integers, errors, bulk strings).
    want, pending = per, b""
    while want > 0:
        chunk = s.recv(1 << 16)
        if not chunk:
            sys.exit("server closed")
        pending += chunk
        while want > 0:
            end = pending.find(b"\r\n")
            if end < 0:
                break
            if pending[:1] == b"$" and int(pending[1:end]) >= 0:
                total = end + 2 + int(pending[1:end]) + 2
                if len(pending) < total:
                    break
                pending = pending[total:]
            else:
                pending = pending[end + 2:]
            want -= 1
    nxt += 0.01
    time.sleep(max(0.0, nxt - time.monotonic()))
PY
loader=$!
echo "warming up for ${WARMUP}s (history and forecasts fill with 1,000 partitions)"
sleep "$WARMUP"

python3 - "$port" "$pid" "$REQUESTS" "$out" <<'PY'
import http.client, json, os, sys, time
port, pid, n, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
clk = os.sysconf("SC_CLK_TCK")
def cpu():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / clk
def get(path):
    t = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    ms = (time.perf_counter() - t) * 1000
    c.close()
    assert r.status == 200, (r.status, body[:200])
    return ms, body
charts = "&".join(f"partition=p{i}" for i in range(16))
kinds = {
    "default": "/api/state",
    "heavy": f"/api/state?{charts}&resolution=minute&decisions=1000",
}
rows = ["kind,i,ms,bytes"]
summary = []
_, body = get("/api/state")
doc = json.loads(body)
summary.append(f"partitions_total={doc['partitions_total']} listed={len(doc['partitions'])} "
               f"forecast={sum(1 for p in doc['partitions'] if p['forecast_peak'] is not None)} "
               f"shards={sum(c['shards_total'] for c in doc['cores'])} status={doc['status']} "
               f"messages={doc['messages']}")
for kind, path in kinds.items():
    # The load alone, over a window as long as the requests will take (estimated by 10).
    t0 = time.perf_counter()
    for i in range(10):
        get(path)
    est = (time.perf_counter() - t0) / 10 * n
    c0 = cpu(); time.sleep(est); base = (cpu() - c0) / est
    c0, t0 = cpu(), time.perf_counter()
    ms = []
    size = 0
    for i in range(n):
        m, body = get(path)
        ms.append(m); size = len(body)
        rows.append(f"{kind},{i},{m:.3f},{len(body)}")
    wall = time.perf_counter() - t0
    extra = (cpu() - c0) - base * wall
    ms.sort()
    q = lambda p: ms[min(len(ms) - 1, int(p * len(ms)))]
    summary.append(f"{kind}: p50 {q(0.5):.2f} ms, p99 {q(0.99):.2f} ms, max {ms[-1]:.2f} ms, "
                   f"{size} bytes, server CPU {extra / n * 1000:.2f} ms/request "
                   f"(load alone {base * 100:.0f}% of a core)")
open(f"{out}/requests.csv", "w").write("\n".join(rows) + "\n")
open(f"{out}/summary.md", "w").write("\n".join(summary) + "\n")
print("\n".join(summary))
PY
kill "$loader" 2>/dev/null || true
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
echo "results: $out"
