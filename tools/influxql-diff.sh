#!/usr/bin/env bash
# The InfluxQL differential test (tests/influxql_diff.rs) with its output visible: every
# request of tests/influxql/corpus.txt against influxd (Debian's influxdb package), a
# single ShardCore node and a 3-node rf=2 cluster.
#
# Usage: tools/influxql-diff.sh [TEXT]
#   TEXT   run only the corpus lines that contain TEXT, and print their three answers
#          (e.g. tools/influxql-diff.sh 'fill(linear)')
# Environment (see the head of tests/influxql_diff.rs):
#   SHARDCORE_DIFF_UPDATE=1         rewrite tests/influxql/known_diffs.txt from this run
#   SHARDCORE_DIFF_GOLDEN=1         compare with tests/influxql/expected.jsonl, no influxd
#   SHARDCORE_DIFF_TARGETS=single   only the single node (or `cluster`)
#   SHARDCORE_DIFF_VERBOSE=1        print every query's answers
#   SHARDCORE_DIFF_DATASET=DIR      also write the dataset there as line protocol
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -gt 1 ]]; then
  sed -n '6,16p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
if [[ $# -eq 1 ]]; then
  export SHARDCORE_DIFF_ONLY=$1
fi
if ! command -v influxd >/dev/null 2>&1 && [[ -z ${SHARDCORE_DIFF_INFLUXD:-} ]]; then
  echo "influxql-diff: influxd is not installed; the test compares with the golden file" \
    "(apt-get install influxdb to compare with a live InfluxDB 1.6.7)" >&2
fi
exec cargo test --release --test influxql_diff -- --nocapture
