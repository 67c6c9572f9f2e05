#!/usr/bin/env bash
# Ingest into a local 3-node ShardCore cluster (loopback, --cores 1 each, rf=2) at a
# given consistency, beside a single node, with the same load tool and data.
# Usage: tools/cluster-ingest.sh [--rows 10000] [--hosts 100] [--workers 4] [--consistency one]
set -euo pipefail
cd "$(dirname "$0")/.."
rows=10000 hosts=100 workers=4 consistency=one
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) rows=$2; shift 2 ;;
    --hosts) hosts=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --consistency) consistency=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
cargo build --release --bins -q
bin=target/release/shardcore
bench=target/release/shardcore-bench
tmp=$(mktemp -d /tmp/shardcore-cluster-ingest.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

. tools/cluster-lib.sh  # (the script cd-ed to the repo root above)

ports=("$(free_port)" "$(free_port)" "$(free_port)")
http=()
for i in 0 1 2; do
  peers=""
  for j in 0 1 2; do [ "$i" = "$j" ] || peers="$peers\"$((j+1))@127.0.0.1:${ports[$j]}\","; done
  mkdir -p "$tmp/n$i"
  printf "[cluster]\nnode-id = %d\nbind = \"127.0.0.1:%s\"\npeers = [%s]\nshared-secret = \"bench\"\n${EXTRA_CLUSTER_TOML:-}" \
    $((i+1)) "${ports[$i]}" "${peers%,}" > "$tmp/n$i/node.toml"
  "$bin" serve --cores 1 --data-dir "$tmp/n$i/data" --http-bind 127.0.0.1:0 \
    --config "$tmp/n$i/node.toml" 2> "$tmp/n$i/log" & pids+=($!)
done
for i in 0 1 2; do http+=("$(wait_ready "$tmp/n$i/log")"); done
curl -s -XPOST "http://${http[0]}/query" --data-urlencode "q=CREATE DATABASE benchmark WITH REPLICATION 2" > /dev/null
sleep 1
echo "3-node cluster (rf=2, --cores 1 each), consistency=$consistency, all writes through node 1:"
"$bench" load --url "http://${http[0]}" --db benchmark --hosts "$hosts" --rows "$rows" \
  --workers "$workers" --batch-lines 5000 --consistency "$consistency" | grep -E 'throughput|latency|errors'
echo "remote write RTT on node 1 (µs):"
curl -s "http://${http[0]}/debug/vars" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["cluster"]["shardWriter"])'
