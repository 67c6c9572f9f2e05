#!/usr/bin/env bash
# TSBS query latency, side by side in one run: ShardCore single node (--cores 2),
# ShardCore 3-node cluster (1 core each, rf=2, unpinned, queries through node 1),
# InfluxDB 1.6.7 (Debian's influxd) and VictoriaMetrics (Debian's victoria-metrics, the
# same questions in MetricsQL). Every system gets the same TSBS cpu-only data set from
# `shardcore-bench generate` and the same `shardcore-bench query` run (same seed, so
# the same hosts and windows). Prints a markdown table (p50 / p99 ms per query type);
# a system that is not installed is skipped with a note.
# Each system gets --settle seconds (default 5) between the end of its load and its
# first query, as TSBS runs its query phase apart from the load: background work that
# follows a load (ShardCore sorting out-of-order columns, InfluxDB's cache, VictoriaMetrics
# making rows searchable) is done by then, for every system alike.
# Usage: tools/query-compare.sh [--hosts 100] [--rows 8640] [--runs 20] [--settle 5]
#          [--systems shardcore,cluster,influxdb,victoria-metrics]
# Binaries: SHARDCORE_BIN_DIR=dir measures those (not rebuilt); else this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
hosts=100 rows=8640 runs=20 settle=5 systems=shardcore,cluster,influxdb,victoria-metrics
while [ $# -gt 0 ]; do
  case "$1" in
    --hosts) hosts=$2; shift 2 ;;
    --rows) rows=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --settle) settle=$2; shift 2 ;;
    --systems) systems=$2; shift 2 ;;
    *) echo "query-compare: unknown option $1" >&2; exit 2 ;;
  esac
done
. tools/cluster-lib.sh
select_binaries
tmp=$(mktemp -d /tmp/shardcore-query-compare.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
want() { [[ ",$systems," == *",$1,"* ]]; }

"$bench" generate --hosts "$hosts" --rows "$rows" --out "$tmp/data.lp" 2>&1 | sed 's/^/# /'
load() { # URL
  "$bench" load --url "$1" --file "$tmp/data.lp" --create-db --workers 2 --json 2>/dev/null |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print("%d lines at %.0f lines/s, errors %s" % (d["lines"], d["lines_per_s"], d["errors"]))' ||
    echo "load failed"
}
wait_http() { # URL PATH
  for _ in $(seq 1 300); do curl -sf -o /dev/null "$1$2" && return 0; sleep 0.1; done
  echo "no answer from $1$2" >&2; return 1
}
declare -A result=()
query() { # NAME URL DIALECT
  sleep "$settle"
  "$bench" query --url "$2" --hosts "$hosts" --rows "$rows" --runs "$runs" --dialect "$3" --json \
    > "$tmp/$1.json" 2> "$tmp/$1.err" || { echo "# $1: query run failed: $(tail -2 "$tmp/$1.err")"; return 0; }
  result[$1]=$tmp/$1.json
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

if want shardcore; then
  start_shardcore 2 "$tmp/single"; pid=$started_pid; pids+=("$pid")
  addr=$(wait_ready "$tmp/single/log")
  echo "# shardcore single: $(load "http://$addr")"
  query shardcore "http://$addr" influxql
  stop "$pid"
fi
if want cluster; then
  EXTRA_CLUSTER_TOML="\n[runtime]\npin-cores = false\n"
  start_cluster "$tmp/cluster" 2
  echo "# shardcore cluster: $(load "http://${http[0]}")"
  query cluster "http://${http[0]}" influxql
  for p in "${cluster_pids[@]}"; do stop "$p"; done
fi
if want influxdb; then
  if command -v influxd > /dev/null; then
    port=$(free_port) rpc=$(free_port)
    mkdir -p "$tmp/influx"
    cat > "$tmp/influx/influxdb.conf" <<EOF
reporting-disabled = true
bind-address = "127.0.0.1:$rpc"
[meta]
  dir = "$tmp/influx/meta"
[data]
  dir = "$tmp/influx/data"
  wal-dir = "$tmp/influx/wal"
[http]
  bind-address = "127.0.0.1:$port"
[monitor]
  store-enabled = false
EOF
    influxd -config "$tmp/influx/influxdb.conf" > "$tmp/influx/log" 2>&1 & pid=$!; pids+=("$pid")
    wait_http "http://127.0.0.1:$port" /ping
    echo "# influxdb $(dpkg-query -W -f='${Version}' influxdb 2>/dev/null): $(load "http://127.0.0.1:$port")"
    query influxdb "http://127.0.0.1:$port" influxql
    stop "$pid"
  else
    echo "# influxdb: influxd not installed (apt-get install influxdb); skipped"
  fi
fi
if want victoria-metrics; then
  if command -v victoria-metrics > /dev/null; then
    port=$(free_port)
    victoria-metrics -storageDataPath="$tmp/vm" -httpListenAddr="127.0.0.1:$port" -retentionPeriod=100y \
      -search.disableCache > "$tmp/vm.log" 2>&1 & pid=$!; pids+=("$pid")
    wait_http "http://127.0.0.1:$port" /health
    echo "# victoria-metrics $(dpkg-query -W -f='${Version}' victoria-metrics 2>/dev/null): $(load "http://127.0.0.1:$port")"
    # VictoriaMetrics makes ingested rows searchable after a short delay.
    curl -s "http://127.0.0.1:$port/internal/force_flush" > /dev/null || true
    query victoria-metrics "http://127.0.0.1:$port" metricsql
    stop "$pid"
  else
    echo "# victoria-metrics: not installed (apt-get install victoria-metrics); skipped"
  fi
fi

echo
echo "TSBS cpu-only, $hosts hosts x $rows rows ($((rows / 360)) h), $runs runs per type, p50 / p99 ms:"
echo
python3 - "$tmp" shardcore cluster influxdb victoria-metrics <<'EOF'
import json, os, sys
tmp, names = sys.argv[1], sys.argv[2:]
res = {n: {r["type"]: r for r in json.load(open(f"{tmp}/{n}.json"))} for n in names if os.path.exists(f"{tmp}/{n}.json")}
label = {"shardcore": "ShardCore 1 node", "cluster": "ShardCore 3 nodes rf=2", "influxdb": "InfluxDB 1.6.7", "victoria-metrics": "VictoriaMetrics"}
cols = [n for n in names if n in res]
print("| query type | " + " | ".join(label[c] for c in cols) + (" | 1 node vs InfluxDB |" if "shardcore" in res and "influxdb" in res else " |"))
print("|---" * (len(cols) + 1 + ("shardcore" in res and "influxdb" in res)) + "|")
types = next(iter(res.values())).keys() if res else []
for t in types:
    cells = []
    for c in cols:
        r = res[c].get(t)
        cells.append("error" if not r or r["errors"] else f'{r["p50_ms"]:.2f} / {r["p99_ms"]:.2f}')
    extra = ""
    if "shardcore" in res and "influxdb" in res:
        a, b = res["shardcore"][t], res["influxdb"][t]
        extra = f' {b["p50_ms"] / a["p50_ms"]:.1f}x |' if a["p50_ms"] > 0 and not a["errors"] and not b["errors"] else " - |"
    print(f"| {t} | " + " | ".join(cells) + " |" + extra)
for c in cols:
    for t, r in res[c].items():
        if r["errors"]:
            print(f"\n{c} {t}: {r['errors']} errors, first: {r['first_error']}")
EOF
