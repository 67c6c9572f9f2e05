# Shared by the figure scripts (sourced after they read their arguments).

# figure_binaries: builds the release binaries unless BUILD=0, and names them
# (BIN, BENCH; under CARGO_TARGET_DIR when set).
figure_binaries() {
    [ "${BUILD:-1}" = 1 ] && cargo build --release --bins >/dev/null
    BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/shardcore}
    BENCH=${BENCH:-${CARGO_TARGET_DIR:-target}/release/shardcore-bench}
}

# figure_setup NAME: a work directory `work` under /tmp and a list `pids` of
# processes, killed with the directory removed when the script exits.
figure_setup() {
    work=$(mktemp -d "/tmp/$1.XXXXXX")
    pids=()
    trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
}

# free_port: a TCP port free on loopback right now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
