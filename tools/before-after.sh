#!/usr/bin/env bash
# Before and after a change, in one interleaved run: ingest (tools/compare-ingest.sh,
# ShardCore single node) and TSBS query latency (tools/query-compare.sh, ShardCore
# single node), the server built from BASE beside the server of this checkout, the same
# load and query tool (this checkout's shardcore-bench) for both. Rounds alternate the
# order (before, after; then after, before; ...) so drift in the machine falls on both.
# Prints a markdown report (per round, then medians) to stdout and --out.
#
# Usage: tools/before-after.sh BASE [--rounds 3] [--ingest "--quick"]
#          [--query "--hosts 100 --rows 8640 --runs 20"] [--only ingest|query]
#          [--out FILE] [--no-build]
#   BASE: a commit; its `shardcore` is built once in a worktree under --work-dir
#   (default /tmp/shardcore-before-after, kept between runs; its own target dir).
#   --ingest / --query: extra arguments for the two scripts (each run also gets
#   --no-build / the binaries). --no-build: use target/release as it is.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
BASE=${1:?usage: tools/before-after.sh BASE [--rounds N] [--ingest ARGS] [--query ARGS] [--out FILE]}
shift
ROUNDS=3 INGEST_ARGS="--quick" QUERY_ARGS="--hosts 100 --rows 8640 --runs 20" OUT="" BUILD=1 ONLY=""
WORK_DIR=${TMPDIR:-/tmp}/shardcore-before-after
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --ingest) INGEST_ARGS=$2; shift 2 ;;
    --query) QUERY_ARGS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --work-dir) WORK_DIR=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    *) echo "before-after: unknown argument $1" >&2; exit 2 ;;
  esac
done
BASE_SHA=$(git rev-parse --short "$BASE")
HEAD_SHA=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo "+dirty")
mkdir -p "$WORK_DIR"
log() { echo "before-after: $*" >&2; }

# Both servers (tools/base-lib.sh).
. tools/base-lib.sh
prepare_sides "$BASE_SHA" "$BASE" "$WORK_DIR" "$BUILD" before-after

RESULTS=$WORK_DIR/results-$$
mkdir -p "$RESULTS"
trap 'rm -rf "$RESULTS"' EXIT

run_side() { # SIDE ROUND
  local side=$1 round=$2
  if [ "$ONLY" != query ]; then
  log "round $round: $side (ingest)"
  # shellcheck disable=SC2086
  CARGO_TARGET_DIR=$WORK_DIR/$side bash tools/compare-ingest.sh $INGEST_ARGS --no-build \
    --systems shardcore --out "$RESULTS/ingest-$side-$round.md" >/dev/null 2>"$RESULTS/ingest-$side-$round.err" ||
    log "ingest run failed: $(tail -2 "$RESULTS/ingest-$side-$round.err")"
  fi
  [ "$ONLY" != ingest ] || return 0
  log "round $round: $side (query)"
  # shellcheck disable=SC2086
  SHARDCORE_BIN_DIR=$WORK_DIR/$side/release bash tools/query-compare.sh $QUERY_ARGS \
    --systems shardcore >"$RESULTS/query-$side-$round.md" 2>"$RESULTS/query-$side-$round.err" ||
    log "query run failed: $(tail -2 "$RESULTS/query-$side-$round.err")"
}

for ((r = 1; r <= ROUNDS; r++)); do
  if ((r % 2)); then run_side before "$r"; run_side after "$r"; else run_side after "$r"; run_side before "$r"; fi
done

python3 - "$RESULTS" "$ROUNDS" "$BASE_SHA" "$HEAD_SHA" "$INGEST_ARGS" "$QUERY_ARGS" >"$RESULTS/report.md" <<'EOF'
import re, statistics, sys, os
res, rounds, base, head, ingest_args, query_args = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
def ingest(side, r):
    path = f"{res}/ingest-{side}-{r}.md"
    if not os.path.exists(path):
        return None
    for line in open(path):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 4 and cells[0].startswith("ShardCore") and cells[1].isdigit():
            try:
                return float(cells[2].replace(",", "")), float(cells[5])
            except ValueError:
                return None
    return None
def query(side, r):
    path = f"{res}/query-{side}-{r}.md"
    out = {}
    if os.path.exists(path):
        for line in open(path):
            m = re.match(r"\| ([a-z0-9-]+) \| ([0-9.]+) / ([0-9.]+) \|", line)
            if m:
                out[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    return out
print(f"Before `{base}`, after `{head}`, {rounds} interleaved rounds (before/after order alternating).")
print(f"Ingest: `tools/compare-ingest.sh {ingest_args} --systems shardcore`; query: "
      f"`tools/query-compare.sh {query_args} --systems shardcore`; the same shardcore-bench for both.")
print()
has_ingest = any(os.path.exists(f"{res}/ingest-{s}-1.md") for s in ("before", "after"))
has_query = any(os.path.exists(f"{res}/query-{s}-1.md") for s in ("before", "after"))
if has_ingest:
  print("| round | ingest before (lines/s, p50 ms) | ingest after (lines/s, p50 ms) |")
  print("|---|---|---|")
  ib, ia = [], []
  for r in range(1, rounds + 1):
      b, a = ingest("before", r), ingest("after", r)
      fmt = lambda x: "failed" if x is None else f"{x[0]:,.0f}, {x[1]:.2f}"
      print(f"| {r} | {fmt(b)} | {fmt(a)} |")
      if b: ib.append(b)
      if a: ia.append(a)
  if ib and ia:
      mb, ma = statistics.median(x[0] for x in ib), statistics.median(x[0] for x in ia)
      print(f"| median | {mb:,.0f}, {statistics.median(x[1] for x in ib):.2f} | {ma:,.0f}, "
            f"{statistics.median(x[1] for x in ia):.2f} ({(ma / mb - 1) * 100:+.1f}% lines/s) |")
  print()
if has_query:
  qb = [query("before", r) for r in range(1, rounds + 1)]
  qa = [query("after", r) for r in range(1, rounds + 1)]
  types = list(dict.fromkeys(t for q in qb + qa for t in q))
  print("| query type | before p50 / p99 ms (median of rounds) | after p50 / p99 ms | p50 change |")
  print("|---|---|---|---|")
  for t in types:
      b = [q[t] for q in qb if t in q]
      a = [q[t] for q in qa if t in q]
      if not b or not a:
          print(f"| {t} | {'n/a' if not b else ''} | {'n/a' if not a else ''} | |")
          continue
      b50, b99 = statistics.median(x[0] for x in b), statistics.median(x[1] for x in b)
      a50, a99 = statistics.median(x[0] for x in a), statistics.median(x[1] for x in a)
      spread = lambda xs: f" (rounds {min(x[0] for x in xs):.2f}-{max(x[0] for x in xs):.2f})" if len(xs) > 1 else ""
      print(f"| {t} | {b50:.2f} / {b99:.2f}{spread(b)} | {a50:.2f} / {a99:.2f}{spread(a)} | {(a50 / b50 - 1) * 100:+.1f}% |")
EOF
cat "$RESULTS/report.md"
if [ -n "$OUT" ]; then
  mkdir -p "$(dirname "$OUT")"
  cp "$RESULTS/report.md" "$OUT"
fi
