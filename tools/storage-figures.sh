#!/usr/bin/env bash
# Storage figures (issue 15): what ShardCore, InfluxDB 1.6.7 and VictoriaMetrics keep on
# disk and in memory for the same data set once they have settled, and how fast they come
# back after a restart. Loopback only, temp dirs, every wait bounded, every server it
# starts stopped on exit. Builds nothing: it runs the binaries in --bin.
#
# Usage: tools/storage-figures.sh [--bin DIR] [--hosts 1000] [--rows 3000] [--workers 4]
#          [--batch-lines 5000] [--out results/storage-DATE.md]
#          [--systems shardcore,shardcore-default,influxdb,victoria-metrics]
#          [--cores N] [--settle-timeout-s 120] [--ready-timeout-s 180]
#          [--tmp-dir DIR] [--no-install] [--keep-tmp] [--quick]
#   --bin      dir with `shardcore` and `shardcore-bench`
#              (default ${CARGO_TARGET_DIR:-REPO/target}/release)
#   --cores    the ShardCore node's `--cores` (default: not passed, all online CPUs)
#   --quick    a smoke run: 20 hosts x 300 rows, short settle bounds, nothing installed
#
# Per system, on a fresh data dir, with the same `shardcore-bench load ... --create-db`:
#  1. load time and lines/s (informational);
#  2. settle: shardcore starts with `[storage] cache-snapshot-write-cold-ms = 5000` and we
#     wait until /debug/vars storage.headBytes == 0; influxdb runs with `[data]
#     cache-snapshot-write-cold-duration = "5s"` and we wait until its benchmark db's
#     data+wal size has not changed for 10 s; victoria-metrics gets /internal/force_flush
#     and we wait until its data dir has not changed for 10 s. shardcore-default is
#     ShardCore with its defaults (cold 10 min), measured right after the load, heads
#     still in memory;
#  3. bytes on disk (`du -sb` of the whole data dir) and bytes per value; ShardCore's
#     split into data files (*.scd), WAL and the rest;
#  4. VmRSS after settle and VmHWM (peak) from /proc/PID/status;
#  5. restart: SIGTERM (SIGKILL after 60 s), start again on the same data dir, time from
#     spawn to the first ready answer (/ping 204; VictoriaMetrics /health 200, as
#     tools/compare-ingest.sh), VmRSS 5 s later;
#  (diagnostic, ShardCore, when gdb is installed: after those measurements, before the
#     stop, `gdb -p PID -batch -ex 'call (int)malloc_trim(0)'` and VmRSS again: how much of
#     the RSS is memory glibc's malloc holds free rather than memory in use);
#  6. after the restart: `SELECT count(usage_user) FROM cpu` (ShardCore, InfluxDB) or the
#     number of cpu_usage_user samples from /api/v1/export (VictoriaMetrics) against the
#     lines loaded.
# Exit status 1 if a ShardCore run fails or its count check does not match.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
ARGS="$*"
BIN=${CARGO_TARGET_DIR:-$REPO/target}/release

HOSTS=1000 ROWS=3000 WORKERS=4 BATCH_LINES=5000 OUT="" SC_CORES=""
SYSTEMS="shardcore,shardcore-default,influxdb,victoria-metrics"
SETTLE_TIMEOUT_S=120 STABLE_S=10 READY_TIMEOUT_S=180 LOAD_TIMEOUT_S=900 STOP_TIMEOUT_S=60
AFTER_RESTART_S=5 COLD_MS=5000 CHECK_TIMEOUT_S=120
TMP_ROOT=${TMPDIR:-/tmp} INSTALL=1 KEEP_TMP=0
DB=benchmark

usage() { sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; }
need_value() { [[ $# -ge 2 && -n $2 ]] || { echo "storage-figures: $1 needs a value" >&2; exit 2; }; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --bin) need_value "$@"; BIN=$2; shift 2 ;;
    --hosts) need_value "$@"; HOSTS=$2; shift 2 ;;
    --rows) need_value "$@"; ROWS=$2; shift 2 ;;
    --workers) need_value "$@"; WORKERS=$2; shift 2 ;;
    --batch-lines) need_value "$@"; BATCH_LINES=$2; shift 2 ;;
    --out) need_value "$@"; OUT=$2; shift 2 ;;
    --systems) need_value "$@"; SYSTEMS=$2; shift 2 ;;
    --cores) need_value "$@"; SC_CORES=$2; shift 2 ;;
    --settle-timeout-s) need_value "$@"; SETTLE_TIMEOUT_S=$2; shift 2 ;;
    --ready-timeout-s) need_value "$@"; READY_TIMEOUT_S=$2; shift 2 ;;
    --tmp-dir) need_value "$@"; TMP_ROOT=$2; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --keep-tmp) KEEP_TMP=1; shift ;;
    --quick) HOSTS=20 ROWS=300 BATCH_LINES=1000 SETTLE_TIMEOUT_S=30 STABLE_S=3 INSTALL=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "storage-figures: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
for v in HOSTS ROWS WORKERS BATCH_LINES SETTLE_TIMEOUT_S READY_TIMEOUT_S; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "storage-figures: $v must be a positive integer" >&2; exit 2; }
done
for s in ${SYSTEMS//,/ }; do
  case $s in shardcore | shardcore-default | influxdb | victoria-metrics) ;;
    *) echo "storage-figures: unknown system $s" >&2; exit 2 ;;
  esac
done
[[ -n $OUT ]] || OUT=$REPO/results/storage-$(date +%Y-%m-%d).md
for tool in python3 curl timeout du; do
  command -v "$tool" >/dev/null || { echo "storage-figures: $tool is required" >&2; exit 2; }
done
BIN=$(cd "$BIN" 2>/dev/null && pwd) || { echo "storage-figures: --bin dir not found" >&2; exit 2; }
for b in shardcore shardcore-bench; do
  [[ -x $BIN/$b ]] || { echo "storage-figures: $BIN/$b is missing" >&2; exit 2; }
done

mkdir -p "$TMP_ROOT"
WORK=$(mktemp -d "$TMP_ROOT/storage-figures.XXXXXX")
WORK=$(cd "$WORK" && pwd)
: >"$WORK/runs.txt"
: >"$WORK/notes.md"
: >"$WORK/commands.md"
LIVE_PIDS=()
T_START=$SECONDS

log() { echo "storage-figures: $*" >&2; }
note() { echo "- $*" >>"$WORK/notes.md"; log "$*"; }
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 3))" "$1" "$2"; }

# stop_pid PID: SIGTERM, then SIGKILL after STOP_TIMEOUT_S. Sets STOPPED ("clean" or
# "killed") and STOP_S. (Runs in the main shell, never in $(...), so `wait` reaps it.)
stop_pid() {
  local pid=$1 i t0
  t0=$(now)
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT_S * 20; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    STOPPED=killed
  else
    STOPPED=clean
  fi
  wait "$pid" 2>/dev/null || true
  STOP_S=$(elapsed "$t0" "$(now)")
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
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null; } # PID VmRSS|VmHWM
du_b() { du -sbc "$@" 2>/dev/null | awk 'END {print $1}'; }               # apparent bytes
du_alloc() { du -sc -B1 "$@" 2>/dev/null | awk 'END {print $1}'; }        # allocated bytes

# ---------------------------------------------------------------------------------------
# Packages (as tools/compare-ingest.sh: Debian packages, installed with apt if missing).

declare -A SKIP=() VERSION=()
VERSION[shardcore]="ShardCore $("$BIN/shardcore" --version | awk '{print $2}') (binary $BIN/shardcore, $(date -u -r "$BIN/shardcore" +%Y-%m-%dT%H:%MZ); checkout HEAD at run time $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?'))"
VERSION[shardcore-default]=${VERSION[shardcore]}

. "$REPO/tools/systems-lib.sh" # apt_install, ensure_system

want() { [[ ",$SYSTEMS," == *",$1,"* ]]; }
want influxdb && ensure_system influxdb influxd influxdb 1.6.7
want victoria-metrics && ensure_system victoria-metrics victoria-metrics victoria-metrics 1.79
[[ -n ${VERSION[influxdb]:-} ]] && VERSION[influxdb]="InfluxDB ${VERSION[influxdb]}"
[[ -n ${VERSION[victoria-metrics]:-} ]] && VERSION[victoria-metrics]="VictoriaMetrics ${VERSION[victoria-metrics]}"

# ---------------------------------------------------------------------------------------
# Machine.

cpu_model=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
{
  echo "- CPUs (nproc): $(nproc); model: ${cpu_model:-unknown}"
  echo "- memory: $(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "- kernel: $(uname -srm)"
  echo "- temp dir: $TMP_ROOT on $(df -PT "$WORK" | awk 'NR == 2 {printf "%s (%s), %s KiB blocks, %s KiB free, mounted on %s", $1, $2, $3, $5, $7}')"
  echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$WORK/machine.md"
awk -v n="$(nproc)" '{ exit !($1 > n / 2) }' /proc/loadavg &&
  note "the machine is not quiet: load average $(cut -d' ' -f1 /proc/loadavg) at start on $(nproc) CPUs (times are affected; bytes much less so)"
fstype=$(df -PT "$WORK" | awk 'NR == 2 {print $2}')
[[ $fstype == tmpfs || $fstype == ramfs ]] && note "the temp dir is on $fstype"

# ---------------------------------------------------------------------------------------
# Servers. configure SYSTEM DIR writes the config and sets SERVER_CMD, STORE (the paths
# whose `du -sb` is "on disk"), READY_PATH/READY_CODE. start_server DIR PORT spawns
# SERVER_CMD and waits until it answers; sets SERVER_PID and READY_S (spawn to first
# ready answer); on failure returns 1 with REASON set.

. "$REPO/tools/influx-lib.sh" # influx_config

configure() {
  local sys=$1 dir=$2 port=$3 rpc_port env_unset=() v
  SERVER_URL=http://127.0.0.1:$port READY_PATH=/ping READY_CODE=204 CONFIG_FILE=""
  case $sys in
    shardcore | shardcore-default)
      CONFIG_FILE=$dir/node.toml
      if [[ $sys == shardcore ]]; then
        printf '[storage]\ncache-snapshot-write-cold-ms = %d\n' "$COLD_MS" >"$CONFIG_FILE"
      else
        printf '# defaults ([storage] cache-snapshot-bytes = 67108864 per core, cache-snapshot-write-cold-ms = 600000)\n' >"$CONFIG_FILE"
      fi
      STORE=("$dir/data")
      SERVER_CMD=("$BIN/shardcore" serve --config "$CONFIG_FILE" --data-dir "$dir/data"
        --http-bind "127.0.0.1:$port" ${SC_CORES:+--cores "$SC_CORES"}) ;;
    influxdb)
      rpc_port=$(free_port)
      influx_config "$dir" "$port" "$rpc_port" || { REASON="could not write the influxd config"; return 1; }
      # The settle: cold-cache snapshot after 5 s instead of 10 min.
      python3 - "$dir/influxdb.conf" <<'EOF' || { REASON="could not set cache-snapshot-write-cold-duration"; return 1; }
import re, sys
p = sys.argv[1]
text, n = re.subn(r'(?m)^(\s*)cache-snapshot-write-cold-duration\s*=.*$', r'\1cache-snapshot-write-cold-duration = "5s"', open(p).read())
if n == 0:
    text, n = re.subn(r'(?m)^\[data\]\s*$', '[data]\n  cache-snapshot-write-cold-duration = "5s"', text)
if n != 1:
    sys.exit("no [data] section")
open(p, "w").write(text)
EOF
      CONFIG_FILE=$dir/influxdb.conf
      STORE=("$dir/meta" "$dir/data" "$dir/wal")
      # INFLUXDB_* environment variables override the config file: drop them.
      for v in $(compgen -e | grep '^INFLUXDB_' || true); do env_unset+=(-u "$v"); done
      SERVER_CMD=(env "${env_unset[@]}" influxd -config "$dir/influxdb.conf") ;;
    victoria-metrics)
      # -retentionPeriod: the default (1 month) silently drops the data set's 2016 rows.
      STORE=("$dir/vm")
      SERVER_CMD=(victoria-metrics "-storageDataPath=$dir/vm" "-httpListenAddr=127.0.0.1:$port"
        -retentionPeriod=100y)
      READY_PATH=/health READY_CODE=200 ;;
  esac
}

start_server() { # DIR LOGNAME
  local dir=$1 logf=$1/$2 t0 code v deadline
  t0=$(now)
  "${SERVER_CMD[@]}" >"$logf" 2>&1 &
  SERVER_PID=$!
  LIVE_PIDS+=("$SERVER_PID")
  deadline=$((SECONDS + READY_TIMEOUT_S))
  while :; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$SERVER_URL$READY_PATH" || true)
    if [[ $code == "$READY_CODE" ]]; then
      READY_S=$(elapsed "$t0" "$(now)")
      return 0
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      wait "$SERVER_PID" 2>/dev/null && v=0 || v=$?
      forget_pid "$SERVER_PID"
      REASON="server exited (status $v) before answering $READY_PATH: $(tail -n 3 "$logf" | tr '\n' ' ')"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      REASON="no $READY_CODE from $READY_PATH within ${READY_TIMEOUT_S}s (last: ${code:-none})"
      stop_pid "$SERVER_PID"
      forget_pid "$SERVER_PID"
      return 1
    fi
    sleep 0.01
  done
}

sc_storage() { # -> the /debug/vars "storage" values as JSON ({} if unavailable)
  curl -s --max-time 10 "$SERVER_URL/debug/vars" | python3 -c '
import json, sys
try:
    print(json.dumps(json.load(sys.stdin)["storage"]["values"]))
except Exception:
    print("{}")' 2>/dev/null || echo '{}'
}
sc_cache_heap() { # -> sum of /debug/shards cache_heap_bytes, and the partition count
  curl -s --max-time 10 "$SERVER_URL/debug/shards" | python3 -c '
import json, sys
try:
    s = json.load(sys.stdin)["shards"]
    print(sum(p.get("cache_heap_bytes", 0) for p in s), len(s))
except Exception:
    print("? ?")' 2>/dev/null || echo '? ?'
}

# wait_stable MIN_S PATH...: until `du -sb` of PATHs has not changed for STABLE_S seconds,
# counted from MIN_S seconds on at the earliest (bounded by SETTLE_TIMEOUT_S). Sets
# SETTLED ("yes"/"no") and SETTLE_S.
wait_stable() {
  local min=$1 t0 last cur since start=$SECONDS deadline=$((SECONDS + SETTLE_TIMEOUT_S))
  shift
  t0=$(now)
  last=$(du_b "$@") since=$SECONDS SETTLED=no
  while ((SECONDS < deadline)); do
    sleep 1
    cur=$(du_b "$@")
    if [[ $cur != "$last" ]]; then
      last=$cur since=$SECONDS
    elif ((SECONDS - since >= STABLE_S && SECONDS - start >= min + STABLE_S)); then
      SETTLED=yes
      break
    fi
  done
  SETTLE_S=$(elapsed "$t0" "$(now)")
}

# count_check SYSTEM LOAD_JSON -> one line, "ok: ..." / "MISMATCH: ..." / "not checked: ..."
count_check() {
  local sys=$1 json=$2 body
  case $sys in
    shardcore | shardcore-default | influxdb)
      body=$(curl -s -G --max-time "$CHECK_TIMEOUT_S" "$SERVER_URL/query" --data-urlencode "db=$DB" \
        --data-urlencode 'q=SELECT count(usage_user) FROM cpu') || { echo "not checked: query failed"; return; }
      python3 - "$json" "$body" <<'EOF'
import json, sys
want = json.load(open(sys.argv[1]))["lines"]
try:
    got = json.loads(sys.argv[2])["results"][0]["series"][0]["values"][0][1]
except Exception:
    print("not checked: unexpected answer " + sys.argv[2][:200]); sys.exit()
print(("ok" if got == want else "MISMATCH") + f": count(usage_user) = {got:,}, lines loaded {want:,}")
EOF
      ;;
    victoria-metrics)
      # Every sample of cpu_usage_user (one per line loaded), all time.
      curl -s --max-time "$CHECK_TIMEOUT_S" "$SERVER_URL/api/v1/export" --data-urlencode 'match[]=cpu_usage_user' \
        --data-urlencode 'start=2000-01-01T00:00:00Z' --data-urlencode 'end=2100-01-01T00:00:00Z' |
        python3 -c '
import json, sys
want = json.load(open(sys.argv[1]))["lines"]
got = series = 0
try:
    for line in sys.stdin:
        if line.strip():
            got += len(json.loads(line)["values"]); series += 1
except Exception as e:
    print(f"not checked: unexpected /api/v1/export answer ({e})"); sys.exit()
print(("ok" if got == want else "MISMATCH") + f": /api/v1/export cpu_usage_user samples {got:,} in {series:,} series, lines loaded {want:,}")' "$json" ||
        echo "not checked: /api/v1/export failed"
      ;;
  esac
}

write_meta() { # FILE key value ...
  python3 -c 'import json, sys; a = sys.argv[2:]; json.dump(dict(zip(a[::2], a[1::2])), open(sys.argv[1], "w"))' "$@"
}

# run_one SYSTEM: fresh server, load, settle, measure, restart, measure, check.
run_one() {
  local sys=$1 dir port alloc status=0 load_cmd t0 load_wall rss hwm rss2 hwm2 disk split="" st_load="{}" st="{}"
  local st2="{}" heap="" ff="" check="" settle_desc stop1 stop1_s ready1 recovered
  dir="$WORK/$sys"
  mkdir -p "$dir"
  echo "$dir" >>"$WORK/runs.txt"
  port=$(free_port)
  if ! configure "$sys" "$dir" "$port"; then
    write_meta "$dir/meta.json" system "$sys" failed "config: $REASON"
    note "$sys: $REASON"
    return 1
  fi
  log "$sys: starting"
  if ! start_server "$dir" server.log; then
    write_meta "$dir/meta.json" system "$sys" failed "start: $REASON"
    note "$sys: $REASON"
    return 1
  fi
  ready1=$READY_S
  load_cmd=("$BIN/shardcore-bench" load --url "$SERVER_URL" --db "$DB" --hosts "$HOSTS" --rows "$ROWS"
    --workers "$WORKERS" --batch-lines "$BATCH_LINES" --create-db --json)
  log "$sys: loading $HOSTS hosts x $ROWS rows"
  t0=$(now)
  timeout --foreground -k 10 "$LOAD_TIMEOUT_S" "${load_cmd[@]}" >"$dir/load.json" 2>"$dir/load.log" || status=$?
  # VictoriaMetrics needs no CREATE DATABASE: if the loader's fails there, go without it.
  if ((status != 0)) && [[ $sys == victoria-metrics ]] && grep -q 'CREATE DATABASE' "$dir/load.log"; then
    note "victoria-metrics: --create-db failed ($(grep -m1 'CREATE DATABASE' "$dir/load.log")); loading without it"
    unset 'load_cmd[-2]'
    load_cmd=("${load_cmd[@]}")
    status=0
    t0=$(now)
    timeout --foreground -k 10 "$LOAD_TIMEOUT_S" "${load_cmd[@]}" >"$dir/load.json" 2>"$dir/load.log" || status=$?
  fi
  load_wall=$(elapsed "$t0" "$(now)")
  if ((status != 0)); then
    REASON="load exited with status $status: $(tail -n 2 "$dir/load.log" | tr '\n' ' ')"
    note "$sys: $REASON"
    write_meta "$dir/meta.json" system "$sys" failed "$REASON"
    stop_pid "$SERVER_PID"
    forget_pid "$SERVER_PID"
    return 1
  fi
  python3 -c 'import json, sys; r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); sys.exit(0 if r["failed_lines"] == 0 else 1)' "$dir/load.json" ||
    note "$sys: the load reports failed lines: $(tail -c 400 "$dir/load.json")"
  {
    echo "${VERSION[$sys]}:"
    echo '```'
    [[ -n $CONFIG_FILE && $sys == shardcore* ]] && { echo "# $CONFIG_FILE:"; sed 's/^/#   /' "$CONFIG_FILE"; }
    echo "${SERVER_CMD[*]}"
    echo "${load_cmd[*]}"
    echo '```'
  } >>"$WORK/commands.md"
  [[ $sys == influxdb ]] && cp "$dir/influxdb.conf" "$WORK/influxdb.conf"

  # Settle.
  case $sys in
    shardcore)
      st_load=$(sc_storage)
      local deadline=$((SECONDS + SETTLE_TIMEOUT_S)) hb
      t0=$(now)
      SETTLED=no
      while ((SECONDS < deadline)); do
        st=$(sc_storage)
        hb=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1]).get("headBytes", "?"))' "$st")
        [[ $hb == 0 ]] && { SETTLED=yes; break; }
        sleep 0.5
      done
      SETTLE_S=$(elapsed "$t0" "$(now)")
      settle_desc="headBytes 0 after ${SETTLE_S} s"
      [[ $SETTLED == yes ]] || { settle_desc="headBytes still $hb after ${SETTLE_S} s (bounded wait)"; note "shardcore: $settle_desc"; }
      # The allocator may hand freed head memory back a little later: a second look.
      sleep 2 ;;
    shardcore-default)
      st_load=$(sc_storage)
      SETTLE_S=0 settle_desc="none (measured right after the load)" ;;
    influxdb)
      # Not before the 5 s cold snapshot has had its chance (then STABLE_S unchanged).
      wait_stable 6 "$dir/data/$DB" "$dir/wal/$DB"
      settle_desc="benchmark db data+wal unchanged for ${STABLE_S} s after ${SETTLE_S} s"
      [[ $SETTLED == yes ]] || { settle_desc="benchmark db still changing after ${SETTLE_S} s (bounded wait)"; note "influxdb: $settle_desc"; } ;;
    victoria-metrics)
      ff=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 "$SERVER_URL/internal/force_flush" || true)
      wait_stable 0 "$dir/vm"
      settle_desc="/internal/force_flush answered ${ff:-nothing}; data dir unchanged for ${STABLE_S} s after ${SETTLE_S} s"
      [[ $SETTLED == yes ]] || { settle_desc="data dir still changing after ${SETTLE_S} s (bounded wait); force_flush ${ff:-none}"; note "victoria-metrics: $settle_desc"; } ;;
  esac

  # Measure the settled (or, shardcore-default, just-loaded) server.
  rss=$(status_kb "$SERVER_PID" VmRSS) hwm=$(status_kb "$SERVER_PID" VmHWM)
  disk=$(du_b "${STORE[@]}") alloc=$(du_alloc "${STORE[@]}")
  if [[ $sys == shardcore* ]]; then
    st=$(sc_storage)
    heap=$(sc_cache_heap)
    split=$(python3 - "$dir/data" <<'EOF'
import os, sys
root = sys.argv[1]
scd = wal = other = 0
nscd = nwal = 0
for d, dirs, files in os.walk(root):
    other += os.lstat(d).st_size  # du -sb counts directories too
    for f in files:
        n = os.lstat(os.path.join(d, f)).st_size
        if f.endswith(".scd"):
            scd += n; nscd += 1
        elif "wal" in os.path.relpath(d, root).split(os.sep):
            wal += n; nwal += 1
        else:
            other += n
print(scd, nscd, wal, nwal, other)
EOF
)
  fi
  kill -0 "$SERVER_PID" 2>/dev/null || note "$sys: the server died during the run"
  local rss_trim=""
  if [[ $sys == shardcore* ]] && command -v gdb >/dev/null; then
    if timeout 60 gdb -p "$SERVER_PID" -batch -ex 'call (int)malloc_trim(0)' -ex detach >"$dir/gdb.log" 2>&1; then
      rss_trim=$(status_kb "$SERVER_PID" VmRSS)
    else
      note "$sys: gdb malloc_trim probe failed: $(tail -n 2 "$dir/gdb.log" | tr '\n' ' ')"
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || note "$sys: the server died after the gdb probe"
  fi

  # Restart.
  stop_pid "$SERVER_PID"
  stop1=$STOPPED stop1_s=$STOP_S
  forget_pid "$SERVER_PID"
  [[ $stop1 == killed ]] && note "$sys: did not stop within ${STOP_TIMEOUT_S}s of SIGTERM; killed"
  local disk_stopped
  disk_stopped=$(du_b "${STORE[@]}")
  log "$sys: restarting on the same data dir"
  if ! start_server "$dir" server-restart.log; then
    note "$sys: restart failed: $REASON"
    write_meta "$dir/meta.json" system "$sys" failed "restart: $REASON"
    return 1
  fi
  local ready2=$READY_S
  sleep "$AFTER_RESTART_S"
  rss2=$(status_kb "$SERVER_PID" VmRSS) hwm2=$(status_kb "$SERVER_PID" VmHWM)
  [[ $sys == shardcore* ]] && st2=$(sc_storage)
  check=$(count_check "$sys" "$dir/load.json")
  log "$sys: count check after restart: $check"
  [[ $check == MISMATCH* ]] && note "$sys: count check after restart: $check"
  stop_pid "$SERVER_PID"
  forget_pid "$SERVER_PID"
  recovered=""
  if [[ $sys == shardcore* ]]; then
    recovered=$(grep -h 'recovered shards\|ERROR\|WARN\|panic' "$dir/server-restart.log" | head -n 20 || true)
    grep -q 'ERROR\|WARN\|panic' "$dir/server.log" &&
      note "$sys: warnings/errors in the first run's log: $(grep -h 'ERROR\|WARN\|panic' "$dir/server.log" | head -n 5 | sed "s|$WORK|\$TMP|g" | tr '\n' ' ')"
  fi
  write_meta "$dir/meta.json" system "$sys" ready1_s "$ready1" load_wall_s "$load_wall" settle "$settle_desc" \
    settle_s "$SETTLE_S" rss_kb "${rss:-}" hwm_kb "${hwm:-}" rss_trim_kb "$rss_trim" disk_b "$disk" alloc_b "$alloc" disk_stopped_b "$disk_stopped" \
    split "$split" storage_load "$st_load" storage "$st" heap "$heap" stop "$stop1" stop_s "$stop1_s" \
    restart_s "$ready2" rss2_kb "${rss2:-}" hwm2_kb "${hwm2:-}" storage_restart "$st2" check "$check" \
    recovered "$recovered" failed ""
  du -ab "${STORE[@]}" 2>/dev/null | sort -k2 >"$dir/du.txt" || true
  # Keep the logs, drop the data.
  rm -rf "${STORE[@]}"
  timeout 60 sync || true
  return 0
}

for sys in ${SYSTEMS//,/ }; do
  if [[ -n ${SKIP[$sys]:-} ]]; then
    note "$sys skipped: ${SKIP[$sys]}"
    continue
  fi
  run_one "$sys" || true
done

# ---------------------------------------------------------------------------------------
# Report.

mkdir -p "$(dirname "$OUT")"
for f in "$WORK"/*/server.log "$WORK"/*/server-restart.log; do
  [[ -f $f ]] || continue
  # ShardCore's logs go in the report in full-ish (they are short); keep a copy for it.
  case $f in */shardcore*/*) cp "$f" "$WORK/$(basename "$(dirname "$f")")-$(basename "$f")" ;; esac
done
R_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
export R_DATE R_WORK=$WORK R_OUT=$OUT R_HOSTS=$HOSTS R_ROWS=$ROWS R_WORKERS=$WORKERS R_BATCH=$BATCH_LINES \
  R_COLD_MS=$COLD_MS R_STABLE_S=$STABLE_S R_AFTER_S=$AFTER_RESTART_S R_TOTAL_S=$((SECONDS - T_START)) \
  R_V_SHARDCORE=${VERSION[shardcore]} R_V_INFLUXDB=${VERSION[influxdb]:-} R_V_VM=${VERSION[victoria-metrics]:-} \
  R_ARGS="$ARGS" R_BIN=$BIN R_CORES=${SC_CORES:-default}
python3 - <<'EOF'
import json, os, re
E = os.environ
work, out = E["R_WORK"], E["R_OUT"]
hosts, rows, workers, batch = (int(E[k]) for k in ("R_HOSTS", "R_ROWS", "R_WORKERS", "R_BATCH"))
names = {"shardcore": "ShardCore (settled: cold flush 5 s)",
         "shardcore-default": "ShardCore (defaults, right after load)",
         "influxdb": "InfluxDB 1.6.7", "victoria-metrics": "VictoriaMetrics"}
versions = {"shardcore": E["R_V_SHARDCORE"], "shardcore-default": E["R_V_SHARDCORE"],
            "influxdb": E["R_V_INFLUXDB"], "victoria-metrics": E["R_V_VM"]}

def read(name):
    p = os.path.join(work, name)
    return open(p).read().replace(work, "$TMP").strip() if os.path.exists(p) else ""

def mb(b):
    return "n/a" if b in (None, "") else f"{int(b) / 1e6:,.1f} MB"

def kbmb(kb):
    return "n/a" if kb in (None, "") else f"{int(kb) / 1024:,.0f} MB"

runs = []
for d in read("runs.txt").split():
    d = d.replace("$TMP", work)
    p = os.path.join(d, "meta.json")
    if not os.path.exists(p):
        continue
    m = json.load(open(p))
    try:
        m["load"] = json.loads(open(os.path.join(d, "load.json")).read().strip().splitlines()[-1])
    except Exception:
        m["load"] = None
    runs.append(m)

L = []
w = L.append
w(f"# Storage figures: {hosts:,} hosts x {rows:,} rows ({hosts * rows:,} lines, {hosts * rows * 10:,} float values)")
w("")
w(f"Generated by `tools/storage-figures.sh {E['R_ARGS']}` on {E['R_DATE']} "
  f"(whole run {int(E['R_TOTAL_S']) // 60} min {int(E['R_TOTAL_S']) % 60} s).")
w("")
w("## Setup")
w("")
w(f"- Data set: TSBS cpu-only from `shardcore-bench load` (seed 123, start 2016-01-01T00:00:00Z), "
  f"loaded with the same command into every system: {workers} workers, {batch:,} lines per POST /write, "
  "`--create-db`, over loopback.")
w("- The systems ran one after the other in the same run of the script, on this one machine, each "
  "on a fresh, empty data dir under the temp dir; nothing else of the script ran beside them.")
w(f"- Settle, after the load: ShardCore with `[storage] cache-snapshot-write-cold-ms = {E['R_COLD_MS']}` "
  "(heads flush 5 s after the last write), waited for until `/debug/vars` storage.headBytes == 0 "
  "(then 2 s more); InfluxDB with `[data] cache-snapshot-write-cold-duration = \"5s\"`, waited for "
  f"until its benchmark database's data + WAL dirs had not changed size for {E['R_STABLE_S']} s; "
  "VictoriaMetrics: `/internal/force_flush`, then until its data dir had not changed size for "
  f"{E['R_STABLE_S']} s. Every wait is bounded. The \"defaults\" ShardCore row is ShardCore with no "
  "storage keys set (cold flush after 10 min, 64 MiB of heads per core), measured right after "
  "the load: heads still in memory, their WAL still on disk.")
w("- On disk: `du -sb` (apparent bytes) of the whole data dir (ShardCore: `--data-dir`; InfluxDB: "
  "its meta, data and wal dirs, `_internal` monitor database included; VictoriaMetrics: "
  "`-storageDataPath`), taken after the settle while the server still runs. Bytes/value: that "
  "over the values loaded. The details table also gives the allocated bytes (`du -s -B1`): "
  "InfluxDB's series file (`_series`, 8 partitions of 4 MiB segments) is largely sparse, "
  "so its apparent size is far above what it occupies.")
w("- RSS: VmRSS from /proc/PID/status after the settle; peak RSS: VmHWM of that process (its "
  "whole life: load included).")
w(f"- Restart: SIGTERM (SIGKILL after 60 s), the same command again on the same data dir, time "
  "from spawn to the first ready answer (polled every 10 ms: `/ping` 204; VictoriaMetrics "
  f"`/health` 200); RSS after restart: VmRSS {E['R_AFTER_S']} s after it answered. Count check: "
  "after the restart, `SELECT count(usage_user) FROM cpu` (ShardCore, InfluxDB) or the number of "
  "`cpu_usage_user` samples in `/api/v1/export` (VictoriaMetrics), against the lines loaded.")
w(f"- ShardCore: `--cores` {E['R_CORES']} (default: all online CPUs, one head set and flush "
  "threshold per core). Binaries: `" + E["R_BIN"] + "` (no build by this script).")
w("")
w("## Results")
w("")
w("| system | on disk | bytes/value on disk | RSS after load (settled) | peak RSS | restart to first /ping | RSS after restart | count check |")
w("|---|---:|---:|---:|---:|---:|---:|---|")
detail = []
for m in runs:
    s = m["system"]
    if m.get("failed"):
        w(f"| {names[s]} | " + " | ".join("-" for _ in range(6)) + " | failed: " + m["failed"].replace("|", "/")[:200] + " |")
        continue
    values = m["load"]["values"] if m["load"] else hosts * rows * 10
    disk = int(m["disk_b"])
    chk = m["check"]
    chk_cell = ("ok, " if chk.startswith("ok") else "**" + chk.split(":")[0] + "**, ") + chk.split(": ", 1)[-1]
    w(f"| {names[s]} | {mb(disk)} | {disk / values:.2f} | {kbmb(m['rss_kb'])} | {kbmb(m['hwm_kb'])} "
      f"| {float(m['restart_s']):.2f} s | {kbmb(m['rss2_kb'])} | {chk_cell} |")
    ld = m["load"] or {}
    detail.append(f"| {names[s]} | {float(m['load_wall_s']):.1f} s | {ld.get('lines_per_s', 0):,.0f} "
                  f"| {ld.get('failed_lines', '?')} | {m['settle']} | {float(m['ready1_s']):.2f} s "
                  f"| {mb(m['alloc_b'])} | {m['stop']}, {float(m['stop_s']):.2f} s | {mb(m['disk_stopped_b'])} | {kbmb(m['hwm2_kb'])} |")
w("")
w("Previous figures (an earlier session, before the new storage engine; same data set): ShardCore "
  "1.1 GB (WAL only), 36.6 B/value, RSS 703 MB, restart 6.4 s; InfluxDB 213 MB, 7.1 B/value, "
  "624 MB peak / 82 MB after restart, restart 0.23 s; VictoriaMetrics 50 MB, 1.67 B/value, "
  "243 MB peak / 57 MB after restart, restart 0.12 s.")
w("")
w("Details (informational): load time is the load command's wall time (data generation included); "
  "lines/s is the load tool's own figure (sending only).")
w("")
w("| system | load wall time | lines/s | failed lines | settle | first start to /ping | on disk, allocated (`du -s -B1`) | stop (SIGTERM) | on disk after stop (`du -sb`) | peak RSS of the restarted process |")
w("|---|---:|---:|---:|---|---:|---:|---|---:|---:|")
for d in detail:
    w(d)
w("")
sc = [m for m in runs if m["system"].startswith("shardcore") and not m.get("failed")]
if sc:
    w("## ShardCore on disk and in memory")
    w("")
    w("| run | data files (*.scd) | WAL | other (meta, manifests, dirs) | total | heads (`/debug/shards` cache_heap_bytes, partitions) | RSS / after malloc_trim(0) | `/debug/vars` storage |")
    w("|---|---:|---:|---:|---:|---|---|---|")
    for m in sc:
        scd, nscd, wal, nwal, other = (int(x) for x in m["split"].split())
        heap = m["heap"].split()
        st = json.loads(m["storage"] or "{}")
        keys = ["headBytes", "headValues", "files", "fileBytes", "fileValues", "fileBytesPerValue", "flushes", "flushBytes", "flushFailures", "badFiles", "cacheFullRejections"]
        stv = ", ".join(f"{k} {st[k]:.3f}" if isinstance(st.get(k), float) else f"{k} {st.get(k)}" for k in keys if k in st)
        w(f"| {names[m['system']]} | {mb(scd)} ({nscd} files) | {mb(wal)} ({nwal} segments) | {mb(other)} "
          f"| {mb(scd + wal + other)} | {mb(heap[0]) if heap[0].isdigit() else heap[0]} in {heap[1]} partitions "
          f"| {kbmb(m['rss_kb'])} / {kbmb(m.get('rss_trim_kb')) if m.get('rss_trim_kb') else 'not probed'} | {stv} |")
    w("")
    for m in sc:
        if m.get("rss_trim_kb") and m.get("rss_kb"):
            r, t = int(m["rss_kb"]), int(m["rss_trim_kb"])
            w(f"- {names[m['system']]}: malloc_trim(0) took RSS from {r / 1024:,.0f} MB to {t / 1024:,.0f} MB: "
              f"{(r - t) / 1024:,.0f} MB ({100 * (r - t) / r:.0f}%) of it was memory freed by ShardCore but kept by glibc's malloc.")
    for m in sc:
        st_load = json.loads(m.get("storage_load") or "{}")
        st2 = json.loads(m.get("storage_restart") or "{}")
        if st_load:
            w(f"- {names[m['system']]}, `/debug/vars` storage right after the load: "
              + ", ".join(f"{k} {v}" for k, v in st_load.items()))
        if st2:
            w(f"- {names[m['system']]}, `/debug/vars` storage after the restart: "
              + ", ".join(f"{k} {v}" for k, v in st2.items()))
    w("")
    w("RSS / after malloc_trim(0): VmRSS when measured, then again after `gdb -p PID -batch -ex "
      "'call (int)malloc_trim(0)'` (a diagnostic run after every other measurement of that "
      "process, before its stop): the difference is memory glibc's malloc had kept free in its "
      "arenas rather than memory in use.")
    w("")
    w("The restarted node's log (recovery lines):")
    w("")
    for m in sc:
        w(f"{names[m['system']]}:")
        w("```")
        w(m.get("recovered", "").replace(work, "$TMP") or "(none)")
        w("```")
    w("")
notes = read("notes.md")
if notes:
    w("## Problems and notes")
    w("")
    w(notes)
    w("")
w("## Versions and commands")
w("")
for m in runs:
    w(f"- {names[m['system']]}: {versions[m['system']]}")
w("")
w("Server and load commands (`$TMP` is the run's temp dir; ports are picked free for every server):")
w("")
w(read("commands.md"))
w("")
conf = read("influxdb.conf")
if conf:
    w("InfluxDB's config file: `influxd config -config /dev/null` (the built-in defaults) with these "
      "keys rewritten (tools/influx-lib.sh, plus the cold-snapshot duration):")
    w("")
    w("```toml")
    section = ""
    for line in conf.splitlines():
        m = re.match(r"\s*\[\[?([^\]]+)\]\]?\s*$", line)
        if m:
            section = m.group(1)
        elif section in ("", "meta", "data", "http") and re.search(r"\$TMP|127\.0\.0\.1|reporting-|cache-snapshot-write-cold", line):
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
bad=0
while read -r d; do
  [[ -f $d/meta.json ]] || continue
  python3 - "$d/meta.json" <<'PY' || bad=1
import json, sys
m = json.load(open(sys.argv[1]))
sys.exit(1 if m["system"].startswith("shardcore") and (m.get("failed") or m.get("check", "").startswith("MISMATCH")) else 0)
PY
done <"$WORK/runs.txt"
((bad == 0)) || log "a ShardCore run failed or its count did not match (see the report)"
exit "$bad"
