# Sourced by tools/before-after.sh and tools/partition-figures.sh: the two servers of a
# before/after comparison, laid out as target dirs ($WORK_DIR/before/release and
# $WORK_DIR/after/release), each with its `shardcore` and this checkout's
# `shardcore-bench` (compare-ingest reads $CARGO_TARGET_DIR/release).
#
# prepare_sides BASE_SHA BASE WORK_DIR BUILD LOG_PREFIX: builds this checkout (BUILD=1),
# then BASE's server once, in its own worktree and target dir under WORK_DIR (kept
# between runs; one cargo build at a time: the second runs after the first), and sets
# AFTER_DIR.
prepare_sides() {
  local base_sha=$1 base=$2 work_dir=$3 build=$4 prefix=$5 tree base_target side
  if ((build)); then cargo build --release --bins -q; fi
  AFTER_DIR=${CARGO_TARGET_DIR:-$REPO/target}/release
  [ -x "$AFTER_DIR/shardcore" ] && [ -x "$AFTER_DIR/shardcore-bench" ] || {
    echo "$prefix: no release binaries in $AFTER_DIR" >&2; exit 2; }
  tree=$work_dir/tree-$base_sha
  base_target=$work_dir/target
  if [ ! -x "$base_target/release/shardcore-$base_sha" ]; then
    [ -d "$tree" ] || git worktree add -f --detach "$tree" "$base" >&2
    echo "$prefix: building shardcore at $base_sha (a few minutes)" >&2
    (cd "$tree" && CARGO_TARGET_DIR=$base_target cargo build --release --bin shardcore -q)
    cp "$base_target/release/shardcore" "$base_target/release/shardcore-$base_sha"
  fi
  for side in before after; do
    mkdir -p "$work_dir/$side/release"
    ln -sf "$AFTER_DIR/shardcore-bench" "$work_dir/$side/release/shardcore-bench"
  done
  ln -sf "$base_target/release/shardcore-$base_sha" "$work_dir/before/release/shardcore"
  ln -sf "$AFTER_DIR/shardcore" "$work_dir/after/release/shardcore"
}
