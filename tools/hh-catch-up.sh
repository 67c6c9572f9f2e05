#!/usr/bin/env bash
# Hinted-handoff catch-up: a local 3-node cluster (loopback, --cores 1 each, rf=2);
# node 3 is down while the cpu data set is written through node 1 at consistency one;
# then node 3 restarts and we time until node 1's queues are empty.
# Usage: tools/hh-catch-up.sh [--rows 2000] [--hosts 100] [--rate-limit BYTES_PER_S]
set -euo pipefail
cd "$(dirname "$0")/.."
rows=2000 hosts=100 rate=50000000
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) rows=$2; shift 2 ;;
    --hosts) hosts=$2; shift 2 ;;
    --rate-limit) rate=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
cargo build --release --bins -q
bin=target/release/shardcore
bench=target/release/shardcore-bench
tmp=$(mktemp -d /tmp/shardcore-hh-catch-up.XXXXXX)
declare -A pid
cleanup() { for p in "${pid[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
. tools/cluster-lib.sh  # (the script cd-ed to the repo root above)
queued() { curl -s "http://$1/debug/vars" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(q["queueBytes"] for q in (d.get("hintedHandoff") or [])))'; }

ports=("$(free_port)" "$(free_port)" "$(free_port)")
start_node() {
  local i=$1 peers=""
  for j in 0 1 2; do [ "$i" = "$j" ] || peers="$peers\"$((j+1))@127.0.0.1:${ports[$j]}\","; done
  mkdir -p "$tmp/n$i"
  printf '[cluster]\nnode-id = %d\nbind = "127.0.0.1:%s"\npeers = [%s]\nshared-secret = "bench"\n[hinted-handoff]\nretry-rate-limit-bytes-per-second = %s\n' \
    $((i+1)) "${ports[$i]}" "${peers%,}" "$rate" > "$tmp/n$i/node.toml"
  : > "$tmp/n$i/log"
  "$bin" serve --cores 1 --data-dir "$tmp/n$i/data" --http-bind 127.0.0.1:0 \
    --config "$tmp/n$i/node.toml" 2> "$tmp/n$i/log" & pid[$i]=$!
}
for i in 0 1 2; do start_node $i; done
n1=$(wait_ready "$tmp/n0/log"); wait_ready "$tmp/n1/log" > /dev/null; wait_ready "$tmp/n2/log" > /dev/null
curl -s -XPOST "http://$n1/query" --data-urlencode "q=CREATE DATABASE benchmark WITH REPLICATION 2" > /dev/null
sleep 1
kill -9 "${pid[2]}"; wait "${pid[2]}" 2>/dev/null || true
"$bench" load --url "http://$n1" --db benchmark --hosts "$hosts" --rows "$rows" --workers 4 \
  --batch-lines 5000 --consistency one | grep -E 'throughput|errors'
sleep 2
backlog=$(queued "$n1")
echo "node 1 queued for node 3: $backlog bytes; restarting node 3 (rate limit: $rate bytes/s)"
start_node 2
wait_ready "$tmp/n2/log" > /dev/null
t0=$(date +%s.%N)
while [ "$(queued "$n1")" != "0" ]; do sleep 0.1; done
t1=$(date +%s.%N)
python3 -c "print(f'caught up in {$t1 - $t0:.2f} s ({$backlog / ($t1 - $t0) / 1e6:.1f} MB/s of queued records)')"
