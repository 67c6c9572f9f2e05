#!/usr/bin/env bash
# Remote-forward overhead per point: the coordinating node's CPU time per million lines
# when every point it receives is forwarded to another node, beside the same lines
# written locally.
# - data: the cpu data set, keeping only the lines whose shard node 1 does NOT own in a
#   3-node cluster at REPLICATION 1 (examples/lines_by_owner.rs, the cluster's own
#   placement): about two thirds of the lines.
# - forwarded: 3 nodes (--cores 1 each, loopback), all writes through node 1; every
#   point goes to exactly one remote owner.
# - local: one node (--cores 1, no peers) takes the same file.
# CPU time is utime+stime from /proc/PID/stat around the load run. Cluster nodes run
# unpinned (`[runtime] pin-cores = false`) unless --pinned, as in cluster-ingest.sh.
# Usage: tools/forward-overhead.sh [--rows 10000] [--hosts 100] [--workers 4] [--runs 1]
#          [--pinned]
# Binaries as in tools/cluster-ingest.sh (SHARDCORE_BIN_DIR, CARGO_TARGET_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
rows=10000 hosts=100 workers=4 runs=1 pinned=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) rows=$2; shift 2 ;;
    --hosts) hosts=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --pinned) pinned=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
. tools/cluster-lib.sh  # (the script cd-ed to the repo root above)
select_binaries
[ "$pinned" = 1 ] || EXTRA_CLUSTER_TOML="${EXTRA_CLUSTER_TOML:-}\n[runtime]\npin-cores = false\n"
if [ -x "$bin_dir/lines_by_owner" ]; then
  filter=$bin_dir/lines_by_owner
else
  cargo build --release -q --example lines_by_owner
  filter=${CARGO_TARGET_DIR:-target}/release/examples/lines_by_owner
fi
tmp=$(mktemp -d /tmp/shardcore-forward-overhead.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
stop_all() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }
tck=$(getconf CLK_TCK)
week_ns=604800000000000  # autogen's shard group duration (infinite retention)

"$bench" generate --hosts "$hosts" --rows "$rows" --out "$tmp/all.lp"
"$filter" --db benchmark --nodes 1,2,3 --rf 1 --shard-duration-ns "$week_ns" \
  --not-owned-by 1 < "$tmp/all.lp" > "$tmp/forwarded.lp"
rm "$tmp/all.lp"
lines=$(wc -l < "$tmp/forwarded.lp")
echo "binaries: $bin_dir; $(nproc) CPUs; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "data: $lines lines not owned by node 1 (of $((hosts * rows))), $workers workers, 5000 lines per request"

# cpu_per_m PID BEFORE -> CPU seconds per million lines since BEFORE
cpu_per_m() { python3 -c "print(round(($(cpu_ticks "$1") - $2) / $tck / ($lines / 1e6), 3))"; }
load() {
  "$bench" load --url "http://$1" --db benchmark --file "$tmp/forwarded.lp" \
    --workers "$workers" --batch-lines 5000 --consistency one --json |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(round(d["lines_per_s"]), d["errors"])'
}
forwarded=() local_=()
for run in $(seq 1 "$runs"); do
  dir=$tmp/run$run
  start_cluster "$dir" 1
  before=() ; for p in "${cluster_pids[@]}"; do before+=("$(cpu_ticks "$p")"); done
  out=$(load "${http[0]}")
  f=$(cpu_per_m "${cluster_pids[0]}" "${before[0]}")
  owners="$(cpu_per_m "${cluster_pids[1]}" "${before[1]}") + $(cpu_per_m "${cluster_pids[2]}" "${before[2]}")"
  forwarded+=("$f")
  echo "run $run: forwarded: node 1 $f CPU-s per M lines (owners, nodes 2 + 3: $owners); lines/s, errors: $out"
  stop_all
  start_shardcore 1 "$dir/single"; pids+=("$started_pid"); single=$started_pid
  addr=$(wait_ready "$dir/single/log")
  curl -s -XPOST "http://$addr/query" --data-urlencode "q=CREATE DATABASE benchmark" > /dev/null
  before=$(cpu_ticks "$single")
  out=$(load "$addr")
  l=$(cpu_per_m "$single" "$before")
  local_+=("$l")
  echo "run $run: local: $l CPU-s per M lines; lines/s, errors: $out"
  stop_all
  rm -rf "$dir"
done
f=$(median "${forwarded[@]}") l=$(median "${local_[@]}")
echo "median CPU-s per M lines on the coordinating node: forwarded $f, written locally $l (forwarded/local $(python3 -c "print(f'{$f / $l:.2f}')"))"
