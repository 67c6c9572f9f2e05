#!/usr/bin/env bash
# Side-by-side ingest benchmark: ShardCore vs InfluxDB 1.6.7 vs VictoriaMetrics, with
# the load tool's own ceiling (`shardcore-bench sink`) as the reference, for
# PERFORMANCE.md. Loopback only, temp dirs, every wait bounded.
#
# Exit status 1 if a ShardCore run fails or loses data.
# Usage: tools/compare-ingest.sh [--hosts 100] [--rows 10000] [--workers 4]
#          [--batch-lines 5000] [--runs 3] [--out results/ingest-DATE.md]
#          [--systems sink,shardcore,shardcore-cluster,shardcore-cluster-all,influxdb,victoria-metrics]
#          [--settle-s 2] [--ready-timeout-s 30] [--load-timeout-s 600] [--tmp-dir DIR]
#          [--no-build] [--no-install] [--keep-tmp] [--quick] [--cores N]
# (also `shardcore-bench compare ARGS`). --quick: a few-second smoke run (10 hosts x 200
# rows, 1 run, 1000-line batches, no settle, nothing installed), as CI runs it.
# shardcore-cluster: three local one-core nodes (rf=2, unpinned), all writes through
# node 1 at consistency one; shardcore-cluster-all: the same at consistency all.
# --cores N: the single ShardCore node's `--cores` (default: all online CPUs). Beside
# the report, two SVG charts from each system's first run: acknowledged lines/s over
# time and the latency percentile spectrum (`shardcore-bench chart`).
#
# Every run starts the server fresh on a new data dir, waits until it answers, sends the
# same `shardcore-bench load ... --json` (TSBS cpu-only, closed loop), samples the
# server's CPU time (utime+stime, /proc/PID/stat) and peak RSS (VmHWM) and stops it
# (SIGTERM, SIGKILL after 20 s). The markdown report (table, medians, commands, machine)
# goes to --out and to stdout. A system that cannot be installed, started or loaded is
# reported and skipped; the others still run.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CARGO_TARGET_DIR:-$REPO/target}/release

HOSTS=100 ROWS=10000 WORKERS=4 BATCH_LINES=5000 RUNS=3
OUT="" SYSTEMS="sink,shardcore,shardcore-cluster,shardcore-cluster-all,influxdb,victoria-metrics"
SETTLE_S=2 READY_TIMEOUT_S=30 LOAD_TIMEOUT_S=600 STOP_TIMEOUT_S=20 CHECK_TIMEOUT_S=60
TMP_ROOT=${TMPDIR:-/tmp} BUILD=1 INSTALL=1 KEEP_TMP=0 SC_CORES=
DB=benchmark

usage() { sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; }
need_value() { [[ $# -ge 2 && -n $2 ]] || { echo "compare-ingest: $1 needs a value" >&2; exit 2; }; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --hosts) need_value "$@"; HOSTS=$2; shift 2 ;;
    --rows) need_value "$@"; ROWS=$2; shift 2 ;;
    --workers) need_value "$@"; WORKERS=$2; shift 2 ;;
    --batch-lines) need_value "$@"; BATCH_LINES=$2; shift 2 ;;
    --runs) need_value "$@"; RUNS=$2; shift 2 ;;
    --out) need_value "$@"; OUT=$2; shift 2 ;;
    --systems) need_value "$@"; SYSTEMS=$2; shift 2 ;;
    --settle-s) need_value "$@"; SETTLE_S=$2; shift 2 ;;
    --ready-timeout-s) need_value "$@"; READY_TIMEOUT_S=$2; shift 2 ;;
    --load-timeout-s) need_value "$@"; LOAD_TIMEOUT_S=$2; shift 2 ;;
    --tmp-dir) need_value "$@"; TMP_ROOT=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --cores) need_value "$@"; SC_CORES=$2; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --keep-tmp) KEEP_TMP=1; shift ;;
    --quick) HOSTS=10 ROWS=200 RUNS=1 BATCH_LINES=1000 SETTLE_S=0 INSTALL=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "compare-ingest: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
for v in HOSTS ROWS WORKERS BATCH_LINES RUNS READY_TIMEOUT_S LOAD_TIMEOUT_S; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "compare-ingest: $v must be a positive integer" >&2; exit 2; }
done
[[ $SETTLE_S =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "compare-ingest: --settle-s must be a number" >&2; exit 2; }
for s in ${SYSTEMS//,/ }; do
  case $s in sink | shardcore | shardcore-cluster | shardcore-cluster-all | influxdb | victoria-metrics) ;;
    *) echo "compare-ingest: unknown system $s" >&2; exit 2 ;;
  esac
done
[[ -n $OUT ]] || OUT=$REPO/results/ingest-$(date +%Y-%m-%d-%H%M%S).md
for tool in python3 curl timeout; do
  command -v "$tool" >/dev/null || { echo "compare-ingest: $tool is required" >&2; exit 2; }
done

mkdir -p "$TMP_ROOT"
WORK=$(mktemp -d "$TMP_ROOT/compare-ingest.XXXXXX")
WORK=$(cd "$WORK" && pwd)
: >"$WORK/runs.txt"
: >"$WORK/notes.md"
: >"$WORK/commands.md"
LIVE_PIDS=()
CLK_TCK=$(getconf CLK_TCK)

log() { echo "compare-ingest: $*" >&2; }
note() { echo "- $*" >>"$WORK/notes.md"; log "$*"; }

# stop_pid PID: SIGTERM, then SIGKILL after STOP_TIMEOUT_S. Sets STOPPED to "clean" or
# "killed". (Runs in the main shell, never in $(...), so that `wait` reaps the child.)
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT_S * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    STOPPED=killed
  else
    STOPPED=clean
  fi
  wait "$pid" 2>/dev/null || true
}

forget_pid() {
  local keep=() p
  for p in "${LIVE_PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  LIVE_PIDS=("${keep[@]}")
}

cleanup() {
  local status=$? pid
  trap - EXIT INT TERM
  for pid in "${LIVE_PIDS[@]}"; do
    stop_pid "$pid"
    log "stopped pid $pid on exit ($STOPPED)"
  done
  if ((KEEP_TMP)); then log "kept $WORK"; else rm -rf "$WORK"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

cpu_ticks() { # PID -> utime+stime in clock ticks
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  s=${s##*) }
  # shellcheck disable=SC2086
  set -- $s
  echo $((${12} + ${13}))
}

hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null; }

# ---------------------------------------------------------------------------------------
# Binaries and packages.

if ((BUILD)); then
  log "cargo build --release --bins"
  (cd "$REPO" && cargo build --release --bins) || { log "cargo build failed"; exit 1; }
fi
for b in shardcore shardcore-bench; do
  [[ -x $BIN/$b ]] || { log "$BIN/$b is missing (build first)"; exit 1; }
done

declare -A SKIP=() VERSION=()
VERSION[sink]="shardcore-bench sink"
VERSION[shardcore]="ShardCore $("$BIN/shardcore" --version | awk '{print $2}') ($(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO" diff --quiet HEAD -- src 2>/dev/null || echo ', src modified'))"
VERSION[shardcore-cluster]=${VERSION[shardcore]} VERSION[shardcore-cluster-all]=${VERSION[shardcore]}

. "$REPO/tools/systems-lib.sh" # apt_install, ensure_system

want() { [[ ",$SYSTEMS," == *",$1,"* ]]; }
want influxdb && ensure_system influxdb influxd influxdb 1.6.7
want victoria-metrics && ensure_system victoria-metrics victoria-metrics victoria-metrics 1.79
[[ -n ${VERSION[influxdb]:-} ]] && VERSION[influxdb]="InfluxDB ${VERSION[influxdb]}"
[[ -n ${VERSION[victoria-metrics]:-} ]] && VERSION[victoria-metrics]="VictoriaMetrics ${VERSION[victoria-metrics]}"

# ---------------------------------------------------------------------------------------
# Machine info.

cpu_model=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
[[ -n $cpu_model ]] || cpu_model=$(awk -F': *' '/^(Hardware|cpu model|Processor)/ {print $2; exit}' /proc/cpuinfo)
{
  echo "- CPUs (nproc): $(nproc); model: ${cpu_model:-unknown}"
  echo "- memory: $(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "- kernel: $(uname -srm)"
  echo "- temp dir: $TMP_ROOT on $(df -PT "$WORK" | awk 'NR == 2 {printf "%s (%s), %s KiB blocks, %s KiB free, mounted on %s", $1, $2, $3, $5, $7}')"
  echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$WORK/machine.md"
awk -v n="$(nproc)" '{ exit !($1 > n / 2) }' /proc/loadavg &&
  note "the machine is not quiet: load average $(cut -d' ' -f1 /proc/loadavg) at start on $(nproc) CPUs"
fstype=$(df -PT "$WORK" | awk 'NR == 2 {print $2}')
[[ $fstype == tmpfs || $fstype == ramfs ]] &&
  note "the temp dir is on $fstype: fsync costs nothing there; use --tmp-dir on a real disk for PERFORMANCE.md"

# ---------------------------------------------------------------------------------------
# Servers. start_server SYSTEM DIR sets SERVER_PID, SERVER_URL, SERVER_CMD, READY_PATH,
# READY_CODE; on failure returns 1 with REASON set.

. "$REPO/tools/influx-lib.sh" # influx_config

# A local 3-node cluster (one core each, unpinned, rf=2): starts nodes 2 and 3 (their
# pids in EXTRA_PIDS) and sets SERVER_CMD for node 1, which start_server runs.
start_cluster_nodes() {
  local dir=$1 port=$2 i j peers cports=() hports=("$port" "$(free_port)" "$(free_port)") code
  for i in 0 1 2; do cports+=("$(free_port)"); done
  for i in 0 1 2; do
    peers=""
    for j in 0 1 2; do [[ $i == "$j" ]] || peers+="\"$((j + 1))@127.0.0.1:${cports[$j]}\","; done
    mkdir -p "$dir/n$i"
    printf '[cluster]\nnode-id = %d\nbind = "127.0.0.1:%s"\npeers = [%s]\nshared-secret = "compare"\n[runtime]\npin-cores = false\n' \
      $((i + 1)) "${cports[$i]}" "${peers%,}" >"$dir/n$i/node.toml"
  done
  EXTRA_PIDS=()
  for i in 1 2; do
    "$BIN/shardcore" serve --cores 1 --data-dir "$dir/n$i/data" --http-bind "127.0.0.1:${hports[$i]}" \
      --config "$dir/n$i/node.toml" >"$dir/n$i/server.log" 2>&1 &
    EXTRA_PIDS+=("$!")
    LIVE_PIDS+=("$!")
  done
  SERVER_CMD=("$BIN/shardcore" serve --cores 1 --data-dir "$dir/n0/data" --http-bind "127.0.0.1:$port"
    --config "$dir/n0/node.toml")
  CLUSTER_HTTP=("${hports[@]}")
}

# After node 1 answers: waits for nodes 2 and 3, creates the database with rf=2.
finish_cluster() {
  local p code deadline=$((SECONDS + READY_TIMEOUT_S))
  for p in "${CLUSTER_HTTP[@]:1}"; do
    until [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$p/ping") == 204 ]]; do
      ((SECONDS < deadline)) || { REASON="cluster node on port $p did not answer /ping"; return 1; }
      sleep 0.2
    done
  done
  code=$(curl -s -o /dev/null -w '%{http_code}' -XPOST "$SERVER_URL/query" --data-urlencode "q=CREATE DATABASE $DB WITH REPLICATION 2")
  [[ $code == 200 ]] || { REASON="CREATE DATABASE ... WITH REPLICATION 2 answered $code"; return 1; }
  sleep 1 # the database reaches the other nodes (meta sync)
}

start_server() {
  local sys=$1 dir=$2 port rpc_port env_unset=() v
  port=$(free_port)
  SERVER_URL=http://127.0.0.1:$port READY_PATH=/ping READY_CODE=204
  EXTRA_PIDS=()
  case $sys in
    shardcore-cluster | shardcore-cluster-all)
      start_cluster_nodes "$dir" "$port" ;;
    sink)
      SERVER_CMD=("$BIN/shardcore-bench" sink --listen "127.0.0.1:$port") ;;
    shardcore)
      SERVER_CMD=("$BIN/shardcore" serve --data-dir "$dir/data" --http-bind "127.0.0.1:$port"
        ${SC_CORES:+--cores "$SC_CORES"}) ;;
    influxdb)
      rpc_port=$(free_port)
      influx_config "$dir" "$port" "$rpc_port" || { REASON="could not write the influxd config"; return 1; }
      # INFLUXDB_* environment variables override the config file: drop them.
      for v in $(compgen -e | grep '^INFLUXDB_' || true); do env_unset+=(-u "$v"); done
      SERVER_CMD=(env "${env_unset[@]}" influxd -config "$dir/influxdb.conf") ;;
    victoria-metrics)
      # -retentionPeriod: the default (1 month) silently drops the data set's 2016 rows.
      SERVER_CMD=(victoria-metrics "-storageDataPath=$dir/vm" "-httpListenAddr=127.0.0.1:$port"
        -retentionPeriod=100y)
      READY_PATH=/health READY_CODE=200 ;;
  esac
  "${SERVER_CMD[@]}" >"$dir/server.log" 2>&1 &
  SERVER_PID=$!
  LIVE_PIDS+=("$SERVER_PID")
  local deadline=$((SECONDS + READY_TIMEOUT_S)) code
  while :; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$SERVER_URL$READY_PATH" || true)
    if [[ $code == "$READY_CODE" ]]; then
      [[ $sys == shardcore-cluster* ]] && { finish_cluster || return 1; }
      return 0
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      wait "$SERVER_PID" 2>/dev/null && v=0 || v=$?
      forget_pid "$SERVER_PID"
      REASON="server exited (status $v) before answering $READY_PATH: $(tail -n 3 "$dir/server.log" | tr '\n' ' ')"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      REASON="no $READY_CODE from $READY_PATH within ${READY_TIMEOUT_S}s (last: ${code:-none})"
      stop_pid "$SERVER_PID"
      forget_pid "$SERVER_PID"
      return 1
    fi
    sleep 0.2
  done
}

# What the server holds after a run, compared with what the loader had acknowledged.
# Prints one line, "ok: ..." or "MISMATCH: ..." or "not checked: ...".
check_before_stop() { # SYSTEM LOAD_JSON
  local sys=$1 json=$2 body
  case $sys in
    influxdb)
      body=$(curl -s -G --max-time "$CHECK_TIMEOUT_S" "$SERVER_URL/query" --data-urlencode "db=$DB" \
        --data-urlencode 'q=SELECT count(usage_user) FROM cpu') || { echo "not checked: query failed"; return; }
      python3 - "$json" "$body" <<'EOF'
import json, sys
want = json.load(open(sys.argv[1]))["lines"]
try:
    got = json.loads(sys.argv[2])["results"][0]["series"][0]["values"][0][1]
except Exception:
    print("not checked: unexpected answer " + sys.argv[2][:200]); sys.exit()
print(("ok" if got == want else "MISMATCH") + f": count(usage_user) = {got}, lines acknowledged {want}")
EOF
      ;;
    victoria-metrics)
      body=$(curl -s --max-time "$CHECK_TIMEOUT_S" "$SERVER_URL/metrics") || { echo "not checked: /metrics failed"; return; }
      python3 - "$json" "$body" <<'EOF'
import json, re, sys
want = json.load(open(sys.argv[1]))["values"]
m = dict(re.findall(r'(?m)^(vm_rows_inserted_total\{type="influx"\}|vm_rows_ignored_total\{reason="[a-z_]+"\}) (\d+)', sys.argv[2]))
inserted = int(m.get('vm_rows_inserted_total{type="influx"}', -1))
ignored = sum(int(v) for k, v in m.items() if k.startswith("vm_rows_ignored_total"))
ok = inserted == want and ignored == 0
print(("ok" if ok else "MISMATCH") + f": rows parsed {inserted}, rows ignored {ignored}, values acknowledged {want}")
EOF
      ;;
    *) echo "" ;;
  esac
}

check_after_stop() { # SYSTEM DIR LOAD_JSON
  local sys=$1 dir=$2 json=$3 out="" d copies=1 dirs=("$dir/data")
  [[ $sys == shardcore* ]] || { echo ""; return; }
  [[ $sys == shardcore-cluster* ]] && { dirs=("$dir/n0/data" "$dir/n1/data" "$dir/n2/data"); copies=2; }
  for d in "${dirs[@]}"; do
    out+=$(timeout "$CHECK_TIMEOUT_S" "$BIN/shardcore" inspect "$d" 2>&1)$'\n' || { echo "not checked: shardcore inspect failed"; return; }
  done
  python3 - "$json" "$DB" "$out" "$copies" <<'EOF'
import json, sys
want = json.load(open(sys.argv[1]))["values"] * int(sys.argv[4])
lines = [l for l in sys.argv[3].splitlines() if l.strip()]
try:
    head = lines[0].split("\t")
    db_i, values_i = head.index("database"), head.index("values")
    got = sum(int(l.split("\t")[values_i]) for l in lines if l != lines[0] and l.split("\t")[db_i] == sys.argv[2])
except Exception:
    print("not checked: unexpected `shardcore inspect` output"); sys.exit()
copies = f" ({sys.argv[4]} copies)" if sys.argv[4] != "1" else ""
print(("ok" if got == want else "MISMATCH") + f": `shardcore inspect` values {got}, values acknowledged{copies} {want}")
EOF
}

write_meta() { # FILE key value ...
  python3 -c 'import json, sys; a = sys.argv[2:]; json.dump(dict(zip(a[::2], a[1::2])), open(sys.argv[1], "w"))' "$@"
}

declare -A CREATE_DB=([sink]=1 [shardcore]=1 [shardcore-cluster]=0 [shardcore-cluster-all]=0 [influxdb]=1 [victoria-metrics]=1)
declare -A CONSISTENCY=([shardcore-cluster-all]=all)

# CPU ticks and peak RSS (kB) of all of a system's processes (a cluster has three).
all_cpu_ticks() {
  local p sum=0 t
  for p in "$SERVER_PID" "${EXTRA_PIDS[@]}"; do t=$(cpu_ticks "$p") || return 1; sum=$((sum + t)); done
  echo "$sum"
}
all_hwm_kb() {
  local p sum=0 k
  for p in "$SERVER_PID" "${EXTRA_PIDS[@]}"; do k=$(hwm_kb "$p") || true; sum=$((sum + ${k:-0})); done
  echo "$sum"
}

# run_one SYSTEM RUN: one fresh server, one load. Returns 1 if the server did not start.
run_one() {
  local sys=$1 run=$2 dir before after hwm status stop check1 check2 load_cmd
  dir="$WORK/$sys-run$run"
  mkdir -p "$dir"
  echo "$dir" >>"$WORK/runs.txt"
  log "$sys run $run: starting"
  if ! start_server "$sys" "$dir"; then
    write_meta "$dir/meta.json" system "$sys" run "$run" failed "start: $REASON"
    note "$sys run $run: $REASON"
    return 1
  fi
  while :; do
    load_cmd=("$BIN/shardcore-bench" load --url "$SERVER_URL" --db "$DB" --hosts "$HOSTS" --rows "$ROWS"
      --workers "$WORKERS" --batch-lines "$BATCH_LINES" --consistency "${CONSISTENCY[$sys]:-one}"
      --requests-out "$dir/requests.csv" --json)
    [[ ${CREATE_DB[$sys]} == 1 ]] && load_cmd+=(--create-db)
    before=$(all_cpu_ticks || echo 0)
    status=0
    timeout --foreground -k 10 "$LOAD_TIMEOUT_S" "${load_cmd[@]}" >"$dir/load.json" 2>"$dir/load.log" || status=$?
    # VictoriaMetrics needs no CREATE DATABASE: if the loader's fails there, go without it.
    if ((status != 0)) && [[ $sys == victoria-metrics && ${CREATE_DB[$sys]} == 1 ]] &&
      grep -q 'CREATE DATABASE' "$dir/load.log"; then
      CREATE_DB[$sys]=0
      note "victoria-metrics: --create-db failed ($(grep -m1 'CREATE DATABASE' "$dir/load.log")); loading without it"
      continue
    fi
    break
  done
  sleep "$SETTLE_S"
  after=$(all_cpu_ticks || echo "$before")
  hwm=$(all_hwm_kb || true)
  if ((run == 1)); then
    {
      echo "${VERSION[$sys]}:"
      echo '```'
      echo "${SERVER_CMD[*]}"
      echo "${load_cmd[*]}"
      echo '```'
    } >>"$WORK/commands.md"
    [[ $sys == influxdb ]] && cp "$dir/influxdb.conf" "$WORK/influxdb.conf"
  fi
  check1=""
  ((status == 0)) && check1=$(check_before_stop "$sys" "$dir/load.json")
  kill -0 "$SERVER_PID" 2>/dev/null || note "$sys run $run: the server died during the run"
  local extra
  for extra in "${EXTRA_PIDS[@]}"; do
    stop_pid "$extra"
    forget_pid "$extra"
  done
  stop_pid "$SERVER_PID"
  stop=$STOPPED
  forget_pid "$SERVER_PID"
  [[ $stop == killed ]] && note "$sys run $run: did not stop within ${STOP_TIMEOUT_S}s of SIGTERM; killed"
  check2=""
  ((status == 0)) && check2=$(check_after_stop "$sys" "$dir" "$dir/load.json")
  local failed=""
  if ((status != 0)); then
    failed="load exited with status $status$( ((status == 124)) && echo " (timed out after ${LOAD_TIMEOUT_S}s)"): $(tail -n 2 "$dir/load.log" | tr '\n' ' ')"
    note "$sys run $run: $failed"
  fi
  write_meta "$dir/meta.json" system "$sys" run "$run" cpu_s "$(python3 -c "print(($after - $before) / $CLK_TCK)")" \
    rss_mb "$(python3 -c "print(${hwm:-0} / 1024)")" stop "$stop" check "${check1}${check2}" failed "$failed"
  [[ -n $check1$check2 ]] && log "$sys run $run: stored-data check: $check1$check2"
  [[ $check1$check2 == MISMATCH* ]] && note "$sys run $run: stored-data check: $check1$check2"
  # Keep the logs, drop the data.
  rm -rf "$dir/data" "$dir/vm" "$dir/meta" "$dir/wal" "$dir"/n?/data
  timeout 60 sync || true
  return 0
}

for sys in ${SYSTEMS//,/ }; do
  if [[ -n ${SKIP[$sys]:-} ]]; then
    note "$sys skipped: ${SKIP[$sys]}"
    continue
  fi
  for ((run = 1; run <= RUNS; run++)); do
    if ! run_one "$sys" "$run"; then
      note "$sys: skipping its remaining runs"
      break
    fi
  done
done

# ---------------------------------------------------------------------------------------
# Report.

mkdir -p "$(dirname "$OUT")"
# Charts from each system's first run.
declare -A CHART_NAME=([sink]="client ceiling" [shardcore]="ShardCore 1 node" [shardcore-cluster]="ShardCore 3 nodes (one)"
  [shardcore-cluster-all]="ShardCore 3 nodes (all)" [influxdb]="InfluxDB 1.6.7" [victoria-metrics]="VictoriaMetrics")
chart_runs=()
for sys in ${SYSTEMS//,/ }; do
  f="$WORK/$sys-run1/requests.csv"
  [[ -s $f && $sys != sink ]] && chart_runs+=("${CHART_NAME[$sys]}=$f")
done
R_CHARTS=""
if ((${#chart_runs[@]})); then
  prefix="$(basename "$OUT" .md)-"
  if "$BIN/shardcore-bench" chart --batch-lines "$BATCH_LINES" --out-dir "$(dirname "$OUT")" --prefix "$prefix" \
    --title "$HOSTS hosts x $ROWS rows" "${chart_runs[@]}" >"$WORK/charts.txt" 2>&1; then
    R_CHARTS=$(xargs -n1 basename <"$WORK/charts.txt" | tr '\n' ' ')
  else
    note "charts failed: $(tail -n 2 "$WORK/charts.txt" | tr '\n' ' ')"
  fi
fi
export R_CHARTS
R_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
export R_DATE R_WORK=$WORK R_OUT=$OUT R_HOSTS=$HOSTS R_ROWS=$ROWS R_WORKERS=$WORKERS R_BATCH=$BATCH_LINES \
  R_RUNS=$RUNS R_SETTLE=$SETTLE_S \
  R_V_SINK=${VERSION[sink]} R_V_SHARDCORE=${VERSION[shardcore]} \
  R_V_INFLUXDB=${VERSION[influxdb]:-} R_V_VM=${VERSION[victoria-metrics]:-}
python3 - <<'EOF'
import json, os, re, statistics
E = os.environ
work, out = E["R_WORK"], E["R_OUT"]
hosts, rows, workers, batch, runs = (int(E[k]) for k in ("R_HOSTS", "R_ROWS", "R_WORKERS", "R_BATCH", "R_RUNS"))
names = {"sink": "client ceiling (sink)", "shardcore": "ShardCore",
         "shardcore-cluster": "ShardCore 3 nodes rf=2, consistency one",
         "shardcore-cluster-all": "ShardCore 3 nodes rf=2, consistency all",
         "influxdb": "InfluxDB", "victoria-metrics": "VictoriaMetrics"}
versions = {"sink": E["R_V_SINK"], "shardcore": E["R_V_SHARDCORE"],
            "shardcore-cluster": E["R_V_SHARDCORE"], "shardcore-cluster-all": E["R_V_SHARDCORE"],
            "influxdb": E["R_V_INFLUXDB"], "victoria-metrics": E["R_V_VM"]}
cols = ["lines/s", "values/s", "MB/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms",
        "server CPU s", "CPU s / M lines", "peak RSS MB"]
fmt = ["{:,.0f}", "{:,.0f}", "{:.1f}", "{:.2f}", "{:.2f}", "{:.2f}", "{:.2f}", "{:.2f}", "{:.2f}", "{:.0f}"]

def read(name):
    path = os.path.join(work, name)
    return open(path).read().replace(work, "$TMP").strip() if os.path.exists(path) else ""

by_sys, order, checks, mb_total = {}, [], [], None
for d in read("runs.txt").split():
    d = d.replace("$TMP", work)
    meta = json.load(open(os.path.join(d, "meta.json")))
    s = meta["system"]
    if s not in order:
        order.append(s)
    row = {"run": meta["run"], "failed": meta.get("failed", ""), "values": None, "errors": ""}
    if meta.get("check"):
        checks.append(f"- {names[s]} run {meta['run']}: {meta['check']}")
    try:
        r = json.loads(open(os.path.join(d, "load.json")).read().strip().splitlines()[-1])
    except Exception:
        r = None
        if not row["failed"]:
            row["failed"] = "no JSON result from the load tool"
    if r is not None and not row["failed"]:
        lat = r.get("latency_ms") or {}
        cpu = float(meta["cpu_s"])
        row["values"] = [r["lines_per_s"], r["values_per_s"], r["mb_per_s"], lat.get("p50"),
                         lat.get("p99"), lat.get("p99.9"), lat.get("max"), cpu,
                         cpu / (r["lines"] / 1e6) if r["lines"] else None, float(meta["rss_mb"])]
        errs = [f"{k}: {v}" for k, v in sorted((r.get("errors") or {}).items())]
        if r.get("failed_lines"):
            errs.insert(0, f"{r['failed_lines']} lines failed")
        if meta.get("check", "").startswith("MISMATCH"):
            errs.append("stored-data mismatch")
        row["errors"] = "; ".join(errs) or "0"
        mb_total = r["bytes"] / 1e6
    by_sys.setdefault(s, []).append(row)

def cell(i, v):
    return "n/a" if v is None else fmt[i].format(v)

head = "| system | run | " + " | ".join(cols) + " | errors |"
rule = "|---|---|" + "---:|" * len(cols) + "---|"
L = []
w = L.append
w(f"# Ingest comparison: {hosts} hosts x {rows} rows, {workers} workers, {batch} lines/batch")
w("")
w(f"Generated by `tools/compare-ingest.sh` on {E['R_DATE']}.")
w("")
w("## Setup")
w("")
w(f"- Data set: TSBS cpu-only from `shardcore-bench` (seed 123, start 2016-01-01T00:00:00Z): "
  f"{hosts * rows:,} lines of 10 float fields each ({hosts * rows * 10:,} values)"
  + (f", {mb_total:.1f} MB of line protocol." if mb_total else "."))
w(f"- Load: the same `shardcore-bench load` for every system, closed loop, {workers} connections, "
  f"{batch} lines per POST /write, over loopback; {runs} run(s) per system, each on a freshly "
  "started server with a new, empty data dir.")
w("- Server CPU s: utime+stime of the server process (/proc/PID/stat) from just before the load "
  f"starts to {E['R_SETTLE']} s after it ends (so work deferred by a second or two is counted). "
  "CPU s / M lines: that per million lines. Peak RSS: VmHWM of the server process over its life.")
w("- Latency: per POST, from the load tool's histogram (ms). MB/s: line-protocol bytes sent.")
w("- Durability differs: ShardCore fsyncs the WAL before it acknowledges a write. InfluxDB 1.6.7 "
  "also fsyncs its WAL before it acknowledges (default `wal-fsync-delay = 0s`). "
  "VictoriaMetrics does not fsync per request: it acknowledges rows buffered in memory and "
  "flushes them to disk about once a second, so up to ~1 s of acknowledged writes can be lost "
  "on a crash.")
w("- Each system runs with its defaults but for data paths, loopback addresses and "
  "(InfluxDB) reporting off. InfluxDB's defaults include its `_internal` monitor store and an "
  "HTTP access-log line per request. VictoriaMetrics runs with `-retentionPeriod=100y`: its "
  "default one-month retention silently drops the data set's 2016 rows. ShardCore "
  "uses all online CPUs (`--cores` default); the 3-node cluster runs three one-core, unpinned nodes on "
  "this one machine (rf=2, every write through node 1), so its CPU and RSS are the three processes summed.")
w(f"- The load tool and the server share this machine's {os.cpu_count()} CPUs; "
  "the client-ceiling row is the same load against a server that does nothing.")
w("")
w("## Results")
w("")
w(head)
w(rule)
medians = []
for s in order:
    ok = [r for r in by_sys[s] if r["values"] is not None]
    for r in by_sys[s]:
        if r["values"] is None:
            w(f"| {names[s]} | {r['run']} | " + " | ".join("-" for _ in cols)
              + " | run failed: " + r["failed"].replace("|", "/").replace("\n", " ")[:200] + " |")
        else:
            w(f"| {names[s]} | {r['run']} | "
              + " | ".join(cell(i, v) for i, v in enumerate(r["values"])) + f" | {r['errors']} |")
    if ok:
        med = []
        for i in range(len(cols)):
            vals = [r["values"][i] for r in ok if r["values"][i] is not None]
            med.append(statistics.median(vals) if vals else None)
        errs = "0" if all(r["errors"] == "0" for r in ok) else "see runs"
        medians.append(f"| **{names[s]}** | **median of {len(ok)}** | "
                       + " | ".join(f"**{cell(i, v)}**" for i, v in enumerate(med)) + f" | {errs} |")
w("")
if medians:
    w("Median per system (each column's median over that system's successful runs):")
    w("")
    w(head)
    w(rule)
    for m in medians:
        w(m)
    w("")
charts = E.get("R_CHARTS", "").split()
if charts:
    w("## Charts")
    w("")
    w("From each system's first run (`shardcore-bench chart` over the load tool's `--requests-out` logs):")
    w("")
    for c in charts:
        w(f"![{c}]({c})")
        w("")
notes = read("notes.md")
if notes:
    w("## Problems and notes")
    w("")
    w(notes)
    w("")
if checks:
    w("## Stored-data checks")
    w("")
    w("What each server holds after the run against what the loader had acknowledged "
      "(ShardCore: `shardcore inspect` on the stopped data dir; InfluxDB: "
      "`SELECT count(usage_user) FROM cpu`; VictoriaMetrics: its /metrics row counters).")
    w("")
    w("\n".join(checks))
    w("")
w("## Versions and commands")
w("")
for s in order:
    w(f"- {names[s]}: {versions[s]}")
w("")
w("Server and load commands of each system's first run (`$TMP` is the run's temp dir; ports "
  "are picked free for every run):")
w("")
w(read("commands.md"))
w("")
conf = read("influxdb.conf")
if conf:
    w("InfluxDB's config file: `influxd config -config /dev/null` (the built-in defaults) with "
      "these keys rewritten (`reporting-disabled` is upstream's key, `reporting-enabled` Debian's):")
    w("")
    w("```toml")
    section = ""
    for line in conf.splitlines():
        m = re.match(r"\s*\[\[?([^\]]+)\]\]?\s*$", line)
        if m:
            section = m.group(1)
        elif section in ("", "meta", "data", "http") and re.search(r"\$TMP|127\.0\.0\.1|reporting-", line):
            w(f"{('[' + section + '] ') if section else ''}{line.strip()}")
    w("```")
    w("")
w("## Machine")
w("")
w(read("machine.md"))
w("")
open(out, "w").write("\n".join(L))
EOF
log "report written to $OUT"
echo
cat "$OUT"
# Exit status: 1 if a ShardCore run failed or its stored data did not match what was
# acknowledged (other systems' problems are reported, not fatal).
bad=0
while read -r d; do
  python3 - "$d/meta.json" <<'PY' || bad=1
import json, sys
m = json.load(open(sys.argv[1]))
sys.exit(1 if m["system"].startswith("shardcore") and (m.get("failed") or m.get("check", "").startswith("MISMATCH")) else 0)
PY
done <"$WORK/runs.txt"
((bad == 0)) || log "a ShardCore run failed or its data did not match (see the report)"
exit "$bad"
