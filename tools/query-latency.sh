#!/usr/bin/env bash
# Times a fixed set of InfluxQL queries (TSBS cpu-only data in database `benchmark`)
# against any InfluxDB-compatible /query endpoint: each query 3 times, the median
# wall time of the HTTP round trip. Load the data first, e.g.:
#   target/release/shardcore-bench generate --hosts 100 --rows 10000 --out /tmp/d.lp
#   target/release/shardcore-bench load --url http://127.0.0.1:8086 --db benchmark --file /tmp/d.lp --create-db
# Usage: tools/query-latency.sh PORT
set -euo pipefail
port=${1:?usage: tools/query-latency.sh PORT}
qs=(
"SELECT count(usage_user) FROM cpu"
"SELECT max(usage_user) FROM cpu WHERE time >= '2016-01-01T00:00:00Z' AND time < '2016-01-01T12:00:00Z' GROUP BY time(1h)"
"SELECT mean(usage_user) FROM cpu GROUP BY time(1h), hostname"
"SELECT usage_user FROM cpu WHERE hostname='host_7' LIMIT 5"
"SELECT max(usage_user) FROM cpu WHERE hostname='host_7' AND time >= '2016-01-01T00:00:00Z' AND time < '2016-01-01T12:00:00Z' GROUP BY time(1h)"
"SELECT mean(usage_user), max(usage_system) FROM cpu WHERE time >= '2016-01-01T00:00:00Z' AND time < '2016-01-02T00:00:00Z' GROUP BY time(10m)"
)
for q in "${qs[@]}"; do
  ts=()
  for i in 1 2 3; do
    s=$(date +%s%N); curl -s -o /dev/null "http://127.0.0.1:$port/query?db=benchmark" --data-urlencode "q=$q"; e=$(date +%s%N)
    ts+=($(( (e - s) / 1000000 )))
  done
  sorted=($(printf "%s\n" "${ts[@]}" | sort -n))
  printf "%6d ms  %s\n" "${sorted[1]}" "$q"
done
