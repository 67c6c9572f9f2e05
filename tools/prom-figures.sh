#!/usr/bin/env bash
# Prometheus remote write (issue 17): samples/s into ShardCore beside into InfluxDB
# 1.6.7, in one run on this machine. The load tool sends TSBS cpu-only data as
# Prometheus does (`shardcore-bench load --prometheus`: snappy protobuf, one series per
# host and field, 500 samples per request as Prometheus 2.42's max_samples_per_send),
# to /api/v1/prom/write of a 2-core ShardCore node and of influxd, rounds alternating.
#
# Usage: tools/prom-figures.sh [--quick] [--no-build]
# Environment: HOSTS (100), ROWS (1000), ROUNDS (5), WORKERS (4)
set -euo pipefail
cd "$(dirname "$0")/.."
HOSTS=${HOSTS:-100}; ROWS=${ROWS:-1000}; ROUNDS=${ROUNDS:-5}; WORKERS=${WORKERS:-4}
BUILD=1
for a in "$@"; do
    case $a in
        --quick) HOSTS=10; ROWS=50; ROUNDS=1 ;;
        --no-build) BUILD=0 ;;
        *) echo "unknown argument $a" >&2; exit 2 ;;
    esac
done
source tools/figure-lib.sh
source tools/influx-lib.sh
figure_binaries

figure_setup prom-figures
wait_up() { for _ in $(seq 1200); do curl -sf "$1/ping" >/dev/null && return 0; sleep 0.05; done; echo "prom-figures: $1 did not start" >&2; exit 1; }

port=$(free_port)
printf 'cores = 2\n[runtime]\npin-cores = false\n[http]\nbind-address = "127.0.0.1:%s"\n' "$port" >"$work/shardcore.toml"
"$BIN" serve --config "$work/shardcore.toml" --data-dir "$work/shardcore" >"$work/shardcore.log" 2>&1 &
pids+=($!)
systems=("ShardCore (1 node, 2 cores)=http://127.0.0.1:$port")
wait_up "http://127.0.0.1:$port"
if command -v influxd >/dev/null; then
    iport=$(free_port); rport=$(free_port)
    mkdir -p "$work/influxdb"
    influx_config "$work/influxdb" "$iport" "$rport"
    influxd -config "$work/influxdb/influxdb.conf" >"$work/influxdb.log" 2>&1 &
    pids+=($!)
    wait_up "http://127.0.0.1:$iport"
    systems+=("InfluxDB $(influxd version 2>/dev/null | awk '{print $2}')=http://127.0.0.1:$iport")
else
    echo "prom-figures: influxd is not installed; ShardCore alone" >&2
fi
for s in "${systems[@]}"; do
    curl -sf -XPOST "${s#*=}/query" --data-urlencode "q=CREATE DATABASE prom" >/dev/null
done
results="$work/results.jsonl"
for r in $(seq "$ROUNDS"); do
    for s in "${systems[@]}"; do
        out=$("$BENCH" load --prometheus --url "${s#*=}" --db prom --hosts "$HOSTS" --rows "$ROWS" \
            --seed "$r" --workers "$WORKERS" --batch-lines 50 --json 2>/dev/null)
        echo "{\"round\":$r,\"system\":\"${s%%=*}\",\"load\":$out}" >>"$results"
    done
done
python3 - "$results" "$HOSTS" "$ROWS" "$ROUNDS" "$WORKERS" <<'PY'
import json, statistics, sys
path, hosts, rows, rounds, workers = sys.argv[1:]
runs = [json.loads(l) for l in open(path)]
print(f"# Prometheus remote write: {int(hosts)*int(rows)*10:,} samples per run "
      f"({hosts} hosts x {rows} rows x 10 fields), 500 samples per request, {workers} connections, "
      f"{rounds} rounds alternating")
print()
print("| system | samples/s (median) | p50 ms | p99 ms | failed requests | each round |")
print("|---|---|---|---|---|---|")
for system in dict.fromkeys(r["system"] for r in runs):
    rs = [r["load"] for r in runs if r["system"] == system]
    sps = [r["lines_per_s"] for r in rs]
    print(f"| {system} | {statistics.median(sps):,.0f} | "
          f"{statistics.median(r['latency_ms'].get('p50', 0) for r in rs):.1f} | "
          f"{statistics.median(r['latency_ms'].get('p99', 0) for r in rs):.1f} | "
          f"{sum(r['batches_failed'] for r in rs)} | {', '.join(f'{x:,.0f}' for x in sps)} |")
PY
