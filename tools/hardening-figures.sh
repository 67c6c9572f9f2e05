#!/usr/bin/env bash
# Issue 12's figures, ShardCore beside InfluxDB 1.6.7 (when installed) in one run:
#
#  1. Write latency of a normal client without, then with 4,000 idle connections, 200
#     slow-body writes and 50 slowloris connections beside it (`shardcore-bench
#     attack`), on a fresh server each.
#  2. Time from disk space freed to the first 204: a server whose data dir is on a small
#     tmpfs; the disk is filled with a file, writes go on until they fail (and fail for
#     a second more), the file is removed, and a client retrying every 10 ms times the
#     first write answered 204. Needs root (mount); skipped with the reason otherwise.
#
# Usage: bash tools/hardening-figures.sh [--seconds N] [--runs N] [--quick] [--no-build]
#                                        [--systems shardcore,influxdb] [--out FILE]
#   --seconds  length of each attack phase (default 20)
#   --runs     disk-full runs per system (default 5)
#   --quick    a few-second smoke run (CI): --seconds 2 --runs 1, 500 idle connections
#   --out      also write the Markdown report there
# Every server it starts is stopped on exit.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CARGO_TARGET_DIR:-$REPO/target}/release
SECONDS_PER_PHASE=20 RUNS=5 IDLE=4000 SLOW_BODIES=200 SLOWLORIS=50 BUILD=1 OUT=""
SYSTEMS="shardcore,influxdb"
usage() { sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --seconds) SECONDS_PER_PHASE=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --quick) SECONDS_PER_PHASE=2 RUNS=1 IDLE=500 SLOW_BODIES=50 SLOWLORIS=10; shift ;;
    --no-build) BUILD=0; shift ;;
    --systems) SYSTEMS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "hardening-figures: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

. "$REPO/tools/influx-lib.sh" # influx_config
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
log() { echo "hardening-figures: $*" >&2; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/shardcore-hardening.XXXXXX")
PIDS=() MOUNTS=()
cleanup() {
  local status=$? pid m
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  for m in "${MOUNTS[@]}"; do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$TMP"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ((BUILD)); then
  (cd "$REPO" && cargo build --release --bins --quiet) || { log "cargo build failed"; exit 1; }
fi
want() { [[ ",$SYSTEMS," == *",$1,"* ]]; }
if want influxdb && ! command -v influxd >/dev/null; then
  log "influxd is not installed (Debian: apt-get install influxdb): InfluxDB skipped"
  SYSTEMS=${SYSTEMS//influxdb/}
fi

# start SYSTEM DIR: starts a server with its data under DIR; sets URL and SERVER_PID.
start() {
  local sys=$1 dir=$2 port
  port=$(free_port)
  URL=http://127.0.0.1:$port
  mkdir -p "$dir"
  case $sys in
    shardcore)
      "$BIN/shardcore" serve --data-dir "$dir/data" --http-bind "127.0.0.1:$port" >"$dir/server.log" 2>&1 & ;;
    influxdb)
      influx_config "$dir" "$port" "$(free_port)"
      influxd -config "$dir/influxdb.conf" >"$dir/server.log" 2>&1 & ;;
  esac
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  for _ in $(seq 1 300); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$URL/ping" || true) == 204 ]] && return 0
    sleep 0.1
  done
  log "$sys did not start: $(tail -3 "$dir/server.log")"
  return 1
}
stop() { kill -KILL "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }
name() { case $1 in shardcore) echo "ShardCore (1 node, 2 cores)" ;; influxdb) echo "InfluxDB $(influxd version 2>/dev/null | awk '{print $2}')" ;; esac; }

REPORT="$TMP/report.md"
{
  echo "## Hostile clients beside a normal writer"
  echo
  echo "\`shardcore-bench attack --seconds $SECONDS_PER_PHASE --idle $IDLE --slow-bodies $SLOW_BODIES --slowloris $SLOWLORIS\`"
  echo "(one keep-alive writer, 100 lines per POST, closed loop; first alone, then with the"
  echo "hostile clients, each reopened as soon as the server closes it), $(date -u +%Y-%m-%dT%H:%MZ),"
  echo "commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown), $(nproc) CPUs."
  echo
} >"$REPORT"
for sys in ${SYSTEMS//,/ }; do
  dir="$TMP/attack-$sys"
  start "$sys" "$dir" || continue
  log "attack: $(name "$sys")"
  echo "**$(name "$sys")**" >>"$REPORT"
  echo >>"$REPORT"
  "$BIN/shardcore-bench" attack --url "$URL" --seconds "$SECONDS_PER_PHASE" --idle "$IDLE" \
    --slow-bodies "$SLOW_BODIES" --slowloris "$SLOWLORIS" >>"$REPORT" ||
    { log "attack on $sys failed"; exit 1; }
  echo >>"$REPORT"
  kill -0 "$SERVER_PID" 2>/dev/null || { log "$sys died under attack"; exit 1; }
  stop
done

# One disk-full run: sets RESULT to the milliseconds from freeing space to the first
# 204 ("never (20 s)" if none came within 20 s). Returns 2 if no tmpfs can be mounted.
disk_full_run() {
  local sys=$1 dir=$2 i code
  mkdir -p "$dir"
  mount -t tmpfs -o size=48m tmpfs "$dir" 2>/dev/null || return 2
  MOUNTS+=("$dir")
  start "$sys" "$dir/server" || return 1
  curl -s -o /dev/null -XPOST "$URL/query" --data-urlencode "q=CREATE DATABASE full"
  python3 -c '
import sys
for i in range(1000): print(f"m,k=a v={i}i {1000000000 + i}")' >"$dir/batch.lp"
  # One write first: the shard and its WAL exist before the disk fills.
  code=$(curl -s -o /dev/null -w '%{http_code}' -XPOST "$URL/write?db=full" --data-binary @"$dir/batch.lp" || true)
  [[ $code == 204 ]] || { log "$sys: the first write failed ($code)"; return 1; }
  dd if=/dev/zero of="$dir/filler" bs=1M status=none 2>/dev/null || true
  for i in $(seq 1 2000); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -XPOST "$URL/write?db=full" --data-binary @"$dir/batch.lp" || true)
    [[ $code == 204 ]] || break
  done
  [[ $code != 204 ]] || { log "$sys: the disk never filled"; return 1; }
  # A second of writes on the full disk (so the server is in its failed state when the
  # space comes back, not resting between probes).
  for i in $(seq 1 50); do
    curl -s -o /dev/null -XPOST "$URL/write?db=full" --data-binary @"$dir/batch.lp" || true
    sleep 0.02
  done
  rm -f "$dir/filler"
  RESULT=$(python3 - "$URL" "$dir/batch.lp" <<'EOF'
import sys, time, urllib.request
url, batch = sys.argv[1], open(sys.argv[2], "rb").read()
freed = time.monotonic()
while time.monotonic() - freed < 20:
    try:
        r = urllib.request.urlopen(urllib.request.Request(url + "/write?db=full", data=batch), timeout=5)
        if r.status == 204:
            print("%.0f" % ((time.monotonic() - freed) * 1000)); sys.exit(0)
    except Exception:
        pass
    time.sleep(0.01)
print("never (20 s)")
EOF
  )
  stop
  umount -l "$dir" || true
}

{
  echo "## Time from disk space freed to the first 204"
  echo
  echo "Data dir on a 48 MiB tmpfs filled by a file until writes (1,000 lines each) fail, then"
  echo "50 more writes 20 ms apart on the full disk, then the file removed; a client retrying"
  echo "every 10 ms times the first 204. $RUNS run(s) per system, fresh server each."
  echo
  echo "| system | runs (ms) | median ms |"
  echo "|---|---|---:|"
} >>"$REPORT"
for sys in ${SYSTEMS//,/ }; do
  times=()
  for r in $(seq 1 "$RUNS"); do
    status=0
    disk_full_run "$sys" "$TMP/disk-$sys-$r" || status=$?
    if ((status == 2)); then
      log "cannot mount a tmpfs (needs root): disk-full figure skipped"
      echo "| (skipped: no tmpfs could be mounted here) | | |" >>"$REPORT"
      break 2
    elif ((status != 0)); then
      stop
      log "$sys disk-full run $r failed"
      continue
    fi
    times+=("$RESULT")
    log "disk full: $(name "$sys") run $r: ${RESULT} ms"
  done
  [[ ${#times[@]} -gt 0 ]] || continue
  median=$(printf '%s\n' "${times[@]}" | { grep -v never || true; } | sort -n | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : "never")}')
  echo "| $(name "$sys") | ${times[*]} | $median |" >>"$REPORT"
done

cat "$REPORT"
[[ -z $OUT ]] || cp "$REPORT" "$OUT"
