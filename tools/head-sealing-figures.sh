#!/usr/bin/env bash
# Head sealing (issue 15): the same TSBS cpu-only load into a 2-core node of each
# binary given, default [storage] settings except no cold flush during the run;
# reports lines/s, what the heads hold after the load (bytes, values, bytes per
# value), the flushes and files it took, then TSBS query latency (p50) over that data.
#
# Usage: tools/head-sealing-figures.sh NAME=BINARY [NAME=BINARY ...]
# Environment: HOSTS (100), ROWS (20000), RUNS (10), BENCH (target/release/shardcore-bench)
set -euo pipefail
HOSTS=${HOSTS:-100}
ROWS=${ROWS:-20000}
RUNS=${RUNS:-10}
BENCH=${BENCH:-target/release/shardcore-bench}
TYPES=single-groupby-1-1-1,single-groupby-5-1-12,cpu-max-all-1,double-groupby-1,lastpoint,high-cpu-1

for arg in "$@"; do
    name=${arg%%=*}
    bin=${arg#*=}
    work=$(mktemp -d /tmp/head-sealing.XXXXXX)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat > "$work/shardcore.toml" <<CONF
cores = 2
[http]
bind-address = "127.0.0.1:$port"
[storage]
cache-snapshot-write-cold-ms = 3600000
CONF
    "$bin" serve --config "$work/shardcore.toml" --data-dir "$work/data" >"$work/log" 2>&1 &
    pid=$!
    for _ in $(seq 200); do curl -sf "http://127.0.0.1:$port/ping" >/dev/null && break; sleep 0.05; done
    load=$("$BENCH" load --url "http://127.0.0.1:$port" --db benchmark --create-db \
        --hosts "$HOSTS" --rows "$ROWS" --workers 4 --batch-lines 5000 --json)
    sleep 1
    vars=$(curl -s "http://127.0.0.1:$port/debug/vars")
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    python3 - "$name" "$load" "$vars" "$rss" <<'PY'
import json, sys
name, load, vars_, rss = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])
s = vars_["storage"]["values"]
lps = load.get("lines_per_sec") or load.get("lines_per_second") or load
hv = max(s["headValues"], 1)
print(f"{name}: lines/s {lps}; head {s['headBytes']/1e6:.1f} MB for {s['headValues']} values "
      f"({s['headBytes']/hv:.2f} B/value); flushes {s['flushes']}, files {s['files']}, "
      f"file values {s['fileValues']}; RSS {rss/1024:.0f} MB")
PY
    "$BENCH" query --url "http://127.0.0.1:$port" --db benchmark --hosts "$HOSTS" --rows "$ROWS" \
        --types "$TYPES" --runs "$RUNS" --warmup 2 2>&1 | sed "s/^/$name: /"
    kill -9 $pid; wait $pid 2>/dev/null || true
    rm -rf "$work"
done
