#!/usr/bin/env bash
# Issue 14's figures in one interleaved run, for PERFORMANCE.md:
#  1. per-core share of stored values and of WAL bytes after loading the TSBS cpu data
#     set of --hosts hosts into a 2-core node (/debug/shards, and the WAL files per
#     partition directory), before (BASE) and after (this checkout);
#  2. single-node ingest lines/s and server CPU-s per million lines, `--cores 1` and
#     `--cores 2`, before and after (tools/compare-ingest.sh --systems shardcore);
#  3. cluster ingest (tools/compare-ingest.sh --systems shardcore-cluster: three
#     one-core nodes, rf=2), before and after.
# Rounds alternate the order of the two servers; the same shardcore-bench for both.
#
# Usage: tools/partition-figures.sh BASE [--rounds 3] [--hosts 1000] [--rows 300]
#          [--out FILE] [--no-build]
#   BASE: a commit; its `shardcore` is built once as tools/before-after.sh builds it
#   (worktree and target dir under /tmp/shardcore-before-after, kept between runs).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
BASE=${1:?usage: tools/partition-figures.sh BASE [--rounds N] [--hosts N] [--rows N] [--out FILE]}
shift
ROUNDS=3 HOSTS=1000 ROWS=300 OUT="" BUILD=1
WORK_DIR=${TMPDIR:-/tmp}/shardcore-before-after
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --hosts) HOSTS=$2; shift 2 ;;
    --rows) ROWS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    *) echo "partition-figures: unknown argument $1" >&2; exit 2 ;;
  esac
done
log() { echo "partition-figures: $*" >&2; }
BASE_SHA=$(git rev-parse --short "$BASE")
HEAD_SHA=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo "+dirty")
mkdir -p "$WORK_DIR"
. tools/base-lib.sh
prepare_sides "$BASE_SHA" "$BASE" "$WORK_DIR" "$BUILD" partition-figures
RESULTS=$(mktemp -d "${TMPDIR:-/tmp}/partition-figures.XXXXXX")
trap 'rm -rf "$RESULTS"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# share SIDE: loads the data set into a fresh 2-core node; writes the node's
# /debug/shards and its WAL bytes per partition directory to $RESULTS/share-SIDE.json.
share() {
  local side=$1 dir port pid
  dir=$(mktemp -d "$RESULTS/share-$side.XXXX")
  port=$(free_port)
  "$WORK_DIR/$side/release/shardcore" serve --cores 2 --data-dir "$dir/data" \
    --http-bind "127.0.0.1:$port" >"$dir/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/ping")" = 204 ] && break
    sleep 0.1
  done
  curl -s -XPOST "http://127.0.0.1:$port/query" --data-urlencode "q=CREATE DATABASE benchmark" >/dev/null
  "$AFTER_DIR/shardcore-bench" load --url "http://127.0.0.1:$port" --db benchmark \
    --hosts "$HOSTS" --rows "$ROWS" --workers 4 --batch-lines 5000 --json >"$dir/load.json" 2>"$dir/load.err"
  curl -s "http://127.0.0.1:$port/debug/shards" >"$dir/shards.json"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  python3 - "$dir" "$side" >"$RESULTS/share-$side.json" <<'EOF'
import json, os, sys
d, side = sys.argv[1], sys.argv[2]
shards = json.load(open(os.path.join(d, "shards.json")))["shards"]
values = {}
for s in shards:
    values[s["core"]] = values.get(s["core"], 0) + s["values"]
# WAL bytes per core: format 2 keeps shards/<id>/<partition>/wal (partition p on core
# p % 2); format 1 kept shards/<id>/wal (shard on core id % 2).
wal = {}
root = os.path.join(d, "data", "shards")
for sid in os.listdir(root):
    sdir = os.path.join(root, sid)
    parts = [(int(p), os.path.join(sdir, p, "wal")) for p in os.listdir(sdir) if p.isdigit()]
    if not parts:
        parts = [(int(sid, 16), os.path.join(sdir, "wal"))]
    for p, wdir in parts:
        size = sum(os.path.getsize(os.path.join(wdir, f)) for f in os.listdir(wdir))
        wal[p % 2] = wal.get(p % 2, 0) + size
print(json.dumps({"side": side, "values": values, "wal": wal, "entries": len(shards)}))
EOF
}

ingest() { # SIDE ROUND WHAT(1|2|cluster)
  local side=$1 round=$2 what=$3 args
  if [ "$what" = cluster ]; then args=(--systems shardcore-cluster); else args=(--systems shardcore --cores "$what"); fi
  CARGO_TARGET_DIR=$WORK_DIR/$side bash tools/compare-ingest.sh --hosts "$HOSTS" --rows "$ROWS" \
    --runs 1 --settle-s 1 --no-build --no-install "${args[@]}" \
    --out "$RESULTS/ingest-$side-$what-$round.md" >/dev/null 2>"$RESULTS/ingest-$side-$what-$round.err" ||
    log "ingest $side $what round $round failed: $(tail -2 "$RESULTS/ingest-$side-$what-$round.err")"
}

for side in before after; do log "share: $side"; share "$side"; done
for ((r = 1; r <= ROUNDS; r++)); do
  if ((r % 2)); then order=(before after); else order=(after before); fi
  for what in 1 2 cluster; do
    for side in "${order[@]}"; do
      log "round $r: $side, $what"
      ingest "$side" "$r" "$what"
    done
  done
done

python3 - "$RESULTS" "$ROUNDS" "$BASE_SHA" "$HEAD_SHA" "$HOSTS" "$ROWS" >"$RESULTS/report.md" <<'EOF'
import json, os, statistics, sys
res, rounds, base, head, hosts, rows = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
def ingest(side, what, r):
    path = f"{res}/ingest-{side}-{what}-{r}.md"
    if not os.path.exists(path):
        return None
    for line in open(path):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 10 and cells[0].startswith("ShardCore") and cells[1].isdigit():
            try:
                return float(cells[2].replace(",", "")), float(cells[10]), float(cells[5])
            except ValueError:
                return None
    return None
print(f"Before `{base}`, after `{head}`; TSBS cpu-only, {hosts} hosts x {rows} rows "
      f"({int(hosts) * int(rows):,} lines, 10 values each), 4 load workers, 5000-line batches; "
      f"{rounds} interleaved rounds (the order of the two servers alternating).")
print()
print("Per-core share of stored values and WAL bytes, 2-core node:")
print()
print("| | core 0 values | core 1 values | core 0 WAL bytes | core 1 WAL bytes | /debug/shards entries |")
print("|---|---:|---:|---:|---:|---:|")
for side in ("before", "after"):
    p = f"{res}/share-{side}.json"
    if not os.path.exists(p):
        continue
    s = json.load(open(p))
    v = {int(k): x for k, x in s["values"].items()}
    w = {int(k): x for k, x in s["wal"].items()}
    tv, tw = sum(v.values()) or 1, sum(w.values()) or 1
    cell = lambda m, t, c: f"{m.get(c, 0):,} ({100 * m.get(c, 0) / t:.1f}%)"
    print(f"| {side} | {cell(v, tv, 0)} | {cell(v, tv, 1)} | {cell(w, tw, 0)} | {cell(w, tw, 1)} | {s['entries']} |")
print()
print("| | lines/s before | lines/s after | change | CPU s / M lines before | after | p50 ms before | after |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
labels = {"1": "single node, --cores 1", "2": "single node, --cores 2", "cluster": "3 nodes x 1 core, rf=2, consistency one"}
for what in ("1", "2", "cluster"):
    b = [x for x in (ingest("before", what, r) for r in range(1, rounds + 1)) if x]
    a = [x for x in (ingest("after", what, r) for r in range(1, rounds + 1)) if x]
    if not b or not a:
        print(f"| {labels[what]} | {'failed' if not b else ''} | {'failed' if not a else ''} | | | | | |")
        continue
    med = lambda xs, i: statistics.median(x[i] for x in xs)
    rng = lambda xs: f" ({min(x[0] for x in xs):,.0f}-{max(x[0] for x in xs):,.0f})" if len(xs) > 1 else ""
    print(f"| {labels[what]} | {med(b, 0):,.0f}{rng(b)} | {med(a, 0):,.0f}{rng(a)} | "
          f"{(med(a, 0) / med(b, 0) - 1) * 100:+.1f}% | {med(b, 1):.2f} | {med(a, 1):.2f} | "
          f"{med(b, 2):.2f} | {med(a, 2):.2f} |")
print()
print("Medians of the rounds (range of lines/s in brackets). Commands: "
      f"`tools/compare-ingest.sh --hosts {hosts} --rows {rows} --runs 1 --settle-s 1 --systems shardcore --cores N` "
      "and `--systems shardcore-cluster`, each side's server with this checkout's shardcore-bench.")
EOF
cat "$RESULTS/report.md"
if [ -n "$OUT" ]; then
  mkdir -p "$(dirname "$OUT")"
  cp "$RESULTS/report.md" "$OUT"
fi
