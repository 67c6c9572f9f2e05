#!/usr/bin/env bash
# Smoke test of a real node and the load tool (CI runs it after the test suite).
#
# Usage: bash tools/smoke.sh
#
# Starts `shardcore serve` on a temp data dir and a free loopback port, waits for it to
# be ready, writes a small TSBS cpu-only data set with `shardcore-bench load --json` and
# checks that every line was acknowledged with no error; then runs `shardcore-bench
# sink` with a tiny load against it. Every process it starts is stopped on exit, on
# success or failure alike. Prints one summary line; exits non-zero on any failure.
# Takes a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

READY_TIMEOUT_S=30 # node / sink readiness
LOAD_TIMEOUT_S=60  # one load run
STOP_TIMEOUT_S=10  # SIGTERM, then SIGKILL

BIN=${CARGO_TARGET_DIR:-target}/release
TMP=$(mktemp -d "${TMPDIR:-/tmp}/shardcore-smoke.XXXXXX")
PIDS=()
STARTED=$(date +%s.%N)

# Stops the processes this script started (SIGTERM, then SIGKILL), removes the temp dir.
cleanup() {
  local status=$? pid i
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for ((i = 0; i < STOP_TIMEOUT_S * 10; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "smoke: pid $pid did not stop on SIGTERM in ${STOP_TIMEOUT_S}s; SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
  echo "smoke: FAIL: $*" >&2
  local log
  for log in "$TMP"/*.log; do
    [[ -s $log ]] || continue
    echo "--- last lines of $(basename "$log") ---" >&2
    tail -n 20 "$log" >&2
  done
  exit 1
}

# wait_for_log PID LOG REGEX: prints the first match of REGEX (grep -o) in LOG once it
# appears; fails if PID exits or READY_TIMEOUT_S passes first.
wait_for_log() {
  local pid=$1 log=$2 regex=$3 deadline match
  deadline=$(($(date +%s) + READY_TIMEOUT_S))
  while :; do
    match=$(grep -m1 -oE "$regex" "$log" 2>/dev/null || true)
    if [[ -n $match ]]; then
      echo "$match"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || fail "pid $pid ($log) exited before it was ready"
    (($(date +%s) < deadline)) || fail "not ready within ${READY_TIMEOUT_S}s ($log)"
    sleep 0.1
  done
}

# check_load JSON_FILE EXPECTED_LINES WHAT: every line acknowledged, no error.
# Prints "lines values elapsed_s".
check_load() {
  python3 - "$1" "$2" "$3" <<'EOF'
import json, sys
path, expected, what = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    with open(path) as f:
        r = json.loads(f.read().strip().splitlines()[-1])
except Exception as e:
    sys.exit(f"{what}: no JSON result from the load tool ({e})")
problems = []
if r.get("lines") != expected:
    problems.append(f"lines ok {r.get('lines')} != {expected}")
for key in ("failed_lines", "batches_failed"):
    if r.get(key) != 0:
        problems.append(f"{key} = {r.get(key)}")
if r.get("errors"):
    problems.append(f"errors {r['errors']} samples {r.get('error_samples')}")
if problems:
    sys.exit(f"{what}: " + "; ".join(problems))
print(r["lines"], r["values"], "%.3f" % r["elapsed_s"])
EOF
}

cargo build --release --bins --quiet || fail "cargo build --release --bins failed"
for b in shardcore shardcore-bench; do
  [[ -x $BIN/$b ]] || fail "$BIN/$b is missing"
done
command -v python3 >/dev/null || fail "python3 is needed to read the load tool's JSON"

# 1. A node on a temp data dir and a free port.
"$BIN/shardcore" serve --data-dir "$TMP/data" --http-bind 127.0.0.1:0 >"$TMP/node.log" 2>&1 &
NODE_PID=$!
PIDS+=("$NODE_PID")
ADDR=$(wait_for_log "$NODE_PID" "$TMP/node.log" 'HTTP API listening on 127\.0\.0\.1:[0-9]+')
ADDR=${ADDR##* }

HOSTS=10 ROWS=200
timeout --foreground -k 5 "$LOAD_TIMEOUT_S" "$BIN/shardcore-bench" load --url "http://$ADDR" \
  --create-db --hosts "$HOSTS" --rows "$ROWS" --workers 2 --batch-lines 500 --json \
  >"$TMP/load.json" 2>"$TMP/load.log" || fail "load against the node exited with $?"
read -r NODE_LINES NODE_VALUES NODE_SECS < <(check_load "$TMP/load.json" $((HOSTS * ROWS)) "node") ||
  fail "load against the node"
[[ -n ${NODE_LINES:-} ]] || fail "load against the node"
kill -0 "$NODE_PID" 2>/dev/null || fail "the node exited during or after the load"

# 2. The sink (the client's ceiling) with a tiny load.
"$BIN/shardcore-bench" sink --listen 127.0.0.1:0 >"$TMP/sink.log" 2>&1 &
SINK_PID=$!
PIDS+=("$SINK_PID")
SINK_ADDR=$(wait_for_log "$SINK_PID" "$TMP/sink.log" 'sink listening on 127\.0\.0\.1:[0-9]+')
SINK_ADDR=${SINK_ADDR##* }

S_HOSTS=2 S_ROWS=50
timeout --foreground -k 5 "$LOAD_TIMEOUT_S" "$BIN/shardcore-bench" load --url "http://$SINK_ADDR" \
  --create-db --hosts "$S_HOSTS" --rows "$S_ROWS" --workers 2 --batch-lines 25 --json \
  >"$TMP/sink-load.json" 2>"$TMP/sink-load.log" || fail "load against the sink exited with $?"
read -r SINK_LINES _ _ < <(check_load "$TMP/sink-load.json" $((S_HOSTS * S_ROWS)) "sink") ||
  fail "load against the sink"
[[ -n ${SINK_LINES:-} ]] || fail "load against the sink"

TOTAL=$(python3 -c "import sys; print('%.1f' % (float(sys.argv[1]) - float(sys.argv[2])))" \
  "$(date +%s.%N)" "$STARTED")
echo "smoke: OK: node $ADDR acknowledged $NODE_LINES lines ($NODE_VALUES values) in ${NODE_SECS}s" \
  "with no error; sink $SINK_ADDR took $SINK_LINES lines; ${TOTAL}s in all"
