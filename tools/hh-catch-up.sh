#!/usr/bin/env bash
# Hinted-handoff catch-up: a local 3-node cluster (loopback, --cores 1 each, rf=2,
# `[runtime] pin-cores = false` so the three nodes share the machine's CPUs); node 3 is
# down while the cpu data set is written through node 1 at consistency one; then node 3
# restarts and we time until node 1's queues are empty.
#
# With --live-rate N, an open-loop load of N lines/s (latency from each batch's intended
# send time) goes to node 1 while the replay runs, and the same load again once the
# queues are empty (the baseline): live-write p50/p99/max beside the replay.
#
# Usage: tools/hh-catch-up.sh [--rows 2000] [--hosts 100] [--rate-limit BYTES_PER_S]
#          [--inflight RECORDS] [--live-rate LINES_PER_S] [--live-seconds 10]
# Binaries: $SHARDCORE_BIN_DIR as given, else built into $CARGO_TARGET_DIR (default target/).
set -euo pipefail
cd "$(dirname "$0")/.."
rows=2000 hosts=100 rate=50000000 inflight=4 live_rate=0 live_seconds=10
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) rows=$2; shift 2 ;;
    --hosts) hosts=$2; shift 2 ;;
    --rate-limit) rate=$2; shift 2 ;;
    --inflight) inflight=$2; shift 2 ;;
    --live-rate) live_rate=$2; shift 2 ;;
    --live-seconds) live_seconds=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
. tools/cluster-lib.sh  # (the script cd-ed to the repo root above)
select_binaries
tmp=$(mktemp -d /tmp/shardcore-hh-catch-up.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
queued() { curl -s "http://$1/debug/vars" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(q["queueBytes"] for q in (d.get("hintedHandoff") or [])))'; }

EXTRA_CLUSTER_TOML="[runtime]\npin-cores = false\n[hinted-handoff]\nretry-rate-limit-bytes-per-second = $rate\nreplay-max-inflight-records = $inflight\n"
export EXTRA_CLUSTER_TOML
start_cluster "$tmp" 2
n1=${http[0]}
kill -9 "${cluster_pids[2]}"; wait "${cluster_pids[2]}" 2>/dev/null || true
"$bench" load --url "http://$n1" --db benchmark --hosts "$hosts" --rows "$rows" --workers 4 \
  --batch-lines 5000 --consistency one | grep -E 'throughput|errors'
sleep 2
backlog=$(queued "$n1")
echo "node 1 queued for node 3: $backlog bytes; restarting node 3 (rate limit: $rate bytes/s, $inflight records in flight)"

# Live load: hosts x rows lines at live_rate lines/s, timestamps after the backlog's.
live_load() {
  local live_hosts=100 live_rows=$(( live_rate * live_seconds / 100 ))
  "$bench" load --url "http://$n1" --db benchmark --hosts "$live_hosts" --rows "$live_rows" \
    --workers 4 --batch-lines 1000 --consistency one --rate "$live_rate" \
    --start "$1" --seed "$2" > "$3" 2>&1
}

start_shardcore 1 "$tmp/n2" "$tmp/n2/node.toml"; pids+=("$started_pid")
wait_ready "$tmp/n2/log" > /dev/null
t0=$(date +%s.%N)
if [ "$live_rate" != 0 ]; then
  live_load 2016-03-01T00:00:00Z 7 "$tmp/live-during" & live_pid=$!
fi
while [ "$(queued "$n1")" != "0" ]; do sleep 0.05; done
t1=$(date +%s.%N)
python3 -c "print(f'caught up in {$t1 - $t0:.2f} s ({$backlog / ($t1 - $t0) / 1e6:.1f} MB/s of queued records)')"
if [ "$live_rate" != 0 ]; then
  wait "$live_pid"
  echo "live writes to node 1 at $live_rate lines/s for ${live_seconds} s, starting with the replay:"
  grep -E 'latency|throughput|errors' "$tmp/live-during" | sed 's/^/  /'
  live_load 2016-04-01T00:00:00Z 8 "$tmp/live-after"
  echo "the same load with nothing to replay (baseline):"
  grep -E 'latency|throughput|errors' "$tmp/live-after" | sed 's/^/  /'
fi
