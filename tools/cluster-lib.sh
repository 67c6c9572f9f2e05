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
