#!/usr/bin/env bash
# Ingest into a local 3-node ShardCore cluster (loopback, --cores 1 each, rf=2, all
# writes through node 1) at a given consistency, and into a single node (--cores 2) in
# the same run, with the same load tool and data; each run on fresh nodes and empty data
# directories. Prints every run and the medians, with node 1's CPU time per million
# lines and the remote-write counters from its /debug/vars.
# The three cluster nodes run with `[runtime] pin-cores = false`: pinned, each would run
# its only core on CPU 0 and the three would share one CPU (--pinned does that anyway,
# and is what binaries without that key need). The single node is pinned as usual.
# Usage: tools/cluster-ingest.sh [--rows 10000] [--hosts 100] [--workers 4]
#          [--consistency one] [--runs 1] [--single-cores 2] [--no-single] [--pinned]
# Binaries: SHARDCORE_BIN_DIR=dir measures those (not rebuilt); else this checkout is
# built into ${CARGO_TARGET_DIR:-target}. Extra [cluster] keys: EXTRA_CLUSTER_TOML.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=10000 hosts=100 workers=4 consistency=one runs=1 single_cores=2 single=1 pinned=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) rows=$2; shift 2 ;;
    --hosts) hosts=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --consistency) consistency=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --single-cores) single_cores=$2; shift 2 ;;
    --no-single) single=0; shift ;;
    --pinned) pinned=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
. tools/cluster-lib.sh  # (the script cd-ed to the repo root above)
select_binaries
[ "$pinned" = 1 ] || EXTRA_CLUSTER_TOML="${EXTRA_CLUSTER_TOML:-}\n[runtime]\npin-cores = false\n"
tmp=$(mktemp -d /tmp/shardcore-cluster-ingest.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
tck=$(getconf CLK_TCK)

# load URL -> one JSON line of the load tool's result
load() {
  "$bench" load --url "http://$1" --db benchmark --hosts "$hosts" --rows "$rows" \
    --workers "$workers" --batch-lines 5000 --consistency "$consistency" --json
}
field() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print($2)" "$1"; }
stop_all() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }

echo "binaries: $bin_dir; $(nproc) CPUs; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "data: $hosts hosts x $rows rows, $workers workers, 5000 lines per request, consistency=$consistency, cluster nodes $([ "$pinned" = 1 ] && echo pinned || echo unpinned)"
cluster_rates=() single_rates=() cpu_per_m=()
for run in $(seq 1 "$runs"); do
  dir=$tmp/run$run
  start_cluster "$dir" 2
  nodes=("${cluster_pids[@]}")
  before=(); for p in "${nodes[@]}"; do before+=("$(cpu_ticks "$p")"); done
  result=$(load "${http[0]}")
  per_m=()
  for i in 0 1 2; do
    per_m+=("$(python3 -c "print(round(($(cpu_ticks "${nodes[$i]}") - ${before[$i]}) / $tck / ($(field "$result" 'd["lines"]') / 1e6), 2))")")
  done
  rate=$(field "$result" 'round(d["lines_per_s"])')
  cluster_rates+=("$rate"); cpu_per_m+=("${per_m[0]}")
  writer=$(curl -s "http://${http[0]}/debug/vars" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["cluster"]["shardWriter"]))')
  echo "run $run: 3 nodes: $rate lines/s, p50 $(field "$result" 'd["latency_ms"]["p50"]') ms, p99 $(field "$result" 'd["latency_ms"]["p99"]') ms, errors $(field "$result" 'd["errors"]'), CPU s per M lines: node 1 ${per_m[0]}, node 2 ${per_m[1]}, node 3 ${per_m[2]}"
  echo "  node 1 shardWriter: $writer"
  stop_all
  if [ "$single" = 1 ]; then
    start_shardcore "$single_cores" "$dir/single"; pids+=("$started_pid")
    addr=$(wait_ready "$dir/single/log")
    curl -s -XPOST "http://$addr/query" --data-urlencode "q=CREATE DATABASE benchmark" > /dev/null
    result=$(load "$addr")
    rate=$(field "$result" 'round(d["lines_per_s"])')
    single_rates+=("$rate")
    echo "run $run: single node (--cores $single_cores): $rate lines/s, p50 $(field "$result" 'd["latency_ms"]["p50"]') ms, p99 $(field "$result" 'd["latency_ms"]["p99"]') ms"
    stop_all
  fi
  rm -rf "$dir"
done
c=$(median "${cluster_rates[@]}")
echo "median: 3 nodes $c lines/s (runs: ${cluster_rates[*]}), node 1 CPU $(median "${cpu_per_m[@]}") s per M lines"
if [ "$single" = 1 ]; then
  s=$(median "${single_rates[@]}")
  echo "median: single node $s lines/s (runs: ${single_rates[*]}); cluster/single = $(python3 -c "print(f'{$c / $s:.0%}')")"
fi
