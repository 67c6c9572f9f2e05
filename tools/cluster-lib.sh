# Shared by tools/cluster-ingest.sh and tools/hh-catch-up.sh (sourced, not run).

# A free loopback TCP port (free when printed; a tiny race we accept in benchmarks).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits (30 s at most) for a node's log file to name its HTTP address, and prints it.
wait_ready() {
  local addr
  for _ in $(seq 1 300); do
    addr=$(grep -o 'HTTP API listening on [0-9.:]*' "$1" | tail -1 | awk '{print $5}') || true
    [ -n "$addr" ] && { echo "$addr"; return 0; }
    sleep 0.1
  done
  echo "node did not start: $(cat "$1")" >&2; return 1
}

# CPU time (utime+stime) of a process in clock ticks (getconf CLK_TCK a second).
cpu_ticks() {
  local s
  s=$(cat "/proc/$1/stat") || return 1
  s=${s##*) }
  # shellcheck disable=SC2086
  set -- $s
  echo $((${12} + ${13}))
}

# The binaries to measure: $SHARDCORE_BIN_DIR as given (not rebuilt), else this
# checkout built into $CARGO_TARGET_DIR (default target/).
select_binaries() {
  if [ -n "${SHARDCORE_BIN_DIR:-}" ]; then
    bin_dir=$SHARDCORE_BIN_DIR
  else
    cargo build --release --bins -q
    bin_dir=${CARGO_TARGET_DIR:-target}/release
  fi
  bin=$bin_dir/shardcore
  bench=$bin_dir/shardcore-bench
}

# Starts `shardcore serve` with the given config file and data dir; sets started_pid.
# Usage: start_shardcore CORES DIR [CONFIG]
start_shardcore() {
  local cores=$1 dir=$2 config=${3:-}
  mkdir -p "$dir"
  : > "$dir/log"
  if [ -n "$config" ]; then
    "$bin" serve --cores "$cores" --data-dir "$dir/data" --http-bind 127.0.0.1:0 --config "$config" 2> "$dir/log" &
  else
    "$bin" serve --cores "$cores" --data-dir "$dir/data" --http-bind 127.0.0.1:0 2> "$dir/log" &
  fi
  started_pid=$!
}

# Writes a 3-node cluster's config files DIR/n{0,1,2}/node.toml (ids 1..3) with extra
# [cluster] keys from $EXTRA_CLUSTER_TOML.
cluster_configs() {
  local dir=$1 i j peers
  local ports=("$(free_port)" "$(free_port)" "$(free_port)")
  for i in 0 1 2; do
    peers=""
    for j in 0 1 2; do [ "$i" = "$j" ] || peers="$peers\"$((j+1))@127.0.0.1:${ports[$j]}\","; done
    mkdir -p "$dir/n$i"
    printf "[cluster]\nnode-id = %d\nbind = \"127.0.0.1:%s\"\npeers = [%s]\nshared-secret = \"bench\"\n${EXTRA_CLUSTER_TOML:-}" \
      $((i+1)) "${ports[$i]}" "${peers%,}" > "$dir/n$i/node.toml"
  done
}

# Median of numbers given as arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# Starts three one-core nodes from cluster_configs in DIR, waits until they answer and
# creates database `benchmark` with replication RF. Sets `http` (their addresses) and
# `cluster_pids`, and adds the pids to `pids` (the caller's cleanup list).
start_cluster() {
  local dir=$1 rf=$2 i
  cluster_configs "$dir"
  http=() cluster_pids=()
  for i in 0 1 2; do
    start_shardcore 1 "$dir/n$i" "$dir/n$i/node.toml"; pids+=("$started_pid"); cluster_pids+=("$started_pid")
  done
  for i in 0 1 2; do http+=("$(wait_ready "$dir/n$i/log")"); done
  curl -s -XPOST "http://${http[0]}/query" --data-urlencode "q=CREATE DATABASE benchmark WITH REPLICATION $rf" > /dev/null
  sleep 1
}
