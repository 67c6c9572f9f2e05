#!/usr/bin/env bash
# Issue 16's figures, in one run on this machine:
# - /write throughput and latency with [http] auth-enabled off and on (HTTP Basic, a
#   user with WRITE), the same TSBS cpu-only batches, rounds alternating;
# - the same with https-enabled (TLS 1.3, ECDSA P-256) beside plain;
# - the cost of one TLS handshake: new connections per second from `openssl s_time`
#   (client and server on this machine), and the node's CPU time per handshake.
# Three 2-core nodes run side by side (idle but for the one measured).
#
# Usage: tools/security-figures.sh [--quick] [--no-build]
# Environment: HOSTS (100), ROWS (2000), ROUNDS (5), WORKERS (4), BENCH, BIN
set -euo pipefail
cd "$(dirname "$0")/.."
HOSTS=${HOSTS:-100}; ROWS=${ROWS:-2000}; ROUNDS=${ROUNDS:-5}; WORKERS=${WORKERS:-4}
HANDSHAKE_S=${HANDSHAKE_S:-5}
BUILD=1
for a in "$@"; do
    case $a in
        --quick) HOSTS=20; ROWS=200; ROUNDS=1; HANDSHAKE_S=1 ;;
        --no-build) BUILD=0 ;;
        *) echo "unknown argument $a" >&2; exit 2 ;;
    esac
done
source tools/figure-lib.sh
figure_binaries
command -v openssl >/dev/null || { echo "security-figures: SKIPPED: openssl is needed for the certificates" >&2; exit 0; }

figure_setup security-figures

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=figures CA" -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
    -addext "basicConstraints=critical,CA:FALSE" -CA "$work/ca.crt" -CAkey "$work/ca.key" \
    -keyout "$work/node.key" -out "$work/node.crt" 2>/dev/null

start() { # NAME EXTRA_HTTP_TOML -> sets PORT_<NAME>, PID_<NAME>
    local name=$1 extra=$2 port; port=$(free_port)
    printf 'cores = 2\n[runtime]\npin-cores = false\n[http]\nbind-address = "127.0.0.1:%s"\n%b\n' "$port" "$extra" >"$work/$name.toml"
    "$BIN" serve --config "$work/$name.toml" --data-dir "$work/$name" >"$work/$name.log" 2>&1 &
    pids+=($!)
    printf -v "PORT_$name" %s "$port"; printf -v "PID_$name" %s "$!"
}
start plain ""
start auth "auth-enabled = true"
start tls "https-enabled = true\nhttps-certificate = \"$work/node.crt\"\nhttps-private-key = \"$work/node.key\""
wait_up() { # URL [CURL OPTIONS]: until /ping answers (60 s at most)
    for _ in $(seq 1200); do curl -sf "$1/ping" "${@:2}" >/dev/null && return 0; sleep 0.05; done
    echo "security-figures: $1 did not start; the nodes' logs:" >&2
    tail -n 20 "$work"/*.log >&2
    exit 1
}
wait_up "http://127.0.0.1:$PORT_plain"
wait_up "http://127.0.0.1:$PORT_auth"
wait_up "https://127.0.0.1:$PORT_tls" --cacert "$work/ca.crt"
q() { curl -sf "$1/query" --data-urlencode "q=$2" "${@:3}" >/dev/null; }
q "http://127.0.0.1:$PORT_auth" "CREATE USER admin WITH PASSWORD 'adminpw' WITH ALL PRIVILEGES"
q "http://127.0.0.1:$PORT_auth" "CREATE USER writer WITH PASSWORD 'wpw'" -u admin:adminpw

load() { # NAME URL DB [ARGS...] -> JSON
    "$BENCH" load --url "$2" --db "$3" --hosts "$HOSTS" --rows "$ROWS" \
        --workers "$WORKERS" --batch-lines 5000 --json "${@:4}"
}
results="$work/results.jsonl"
# Round 0 warms every node up (each core checks the writer's password with bcrypt
# once, then remembers it); it is not reported.
for r in $(seq 0 "$ROUNDS"); do
    db="bench$r"
    q "http://127.0.0.1:$PORT_plain" "CREATE DATABASE $db"
    q "http://127.0.0.1:$PORT_auth" "CREATE DATABASE $db" -u admin:adminpw
    q "http://127.0.0.1:$PORT_auth" "GRANT WRITE ON $db TO writer" -u admin:adminpw
    q "https://127.0.0.1:$PORT_tls" "CREATE DATABASE $db" --cacert "$work/ca.crt"
    echo "{\"round\":$r,\"system\":\"auth off\",\"load\":$(load plain "http://127.0.0.1:$PORT_plain" "$db")}" >>"$results"
    echo "{\"round\":$r,\"system\":\"auth on\",\"load\":$(load auth "http://127.0.0.1:$PORT_auth" "$db" --username writer --password wpw)}" >>"$results"
    echo "{\"round\":$r,\"system\":\"https\",\"load\":$(load tls "https://127.0.0.1:$PORT_tls" "$db" --tls-ca "$work/ca.crt")}" >>"$results"
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Every handshake the node ran: s_time closes each connection as soon as its side is
# done, so the node's last write (its session tickets) fails and counts as a failure.
handshakes() {
    curl -s --cacert "$work/ca.crt" "https://127.0.0.1:$PORT_tls/metrics" \
        | awk '/^shardcore_http_tls_handshake(s|_failures)_total /{n += $2} END {print n}'
}
before=$(cpu_ticks "$PID_tls")
handshakes_before=$(handshakes)
t0=$(date +%s.%N)
stime=$(openssl s_time -connect "127.0.0.1:$PORT_tls" -new -time "$HANDSHAKE_S" -CAfile "$work/ca.crt" 2>/dev/null | grep "real seconds" | head -1)
t1=$(date +%s.%N)
after=$(cpu_ticks "$PID_tls")
handshakes_after=$(handshakes)
ticks=$(getconf CLK_TCK)
stime="$stime; wall $(python3 -c "print($t1 - $t0)")"

python3 - "$results" "$stime" "$before" "$after" "$handshakes_before" "$handshakes_after" "$ticks" "$HOSTS" "$ROWS" "$ROUNDS" "$WORKERS" <<'PY'
import json, statistics, sys
path, stime, before, after, hb, ha, ticks, hosts, rows, rounds, workers = sys.argv[1:]
runs = [r for r in map(json.loads, open(path)) if r["round"] > 0]
print(f"# Security figures: {hosts} hosts x {rows} rows TSBS cpu-only ({int(hosts)*int(rows):,} lines) per run, "
      f"{workers} connections, 5,000 lines per request, {rounds} rounds alternating")
print()
print("| system | lines/s (median of rounds) | vs auth off, same round (median) | p50 ms | p99 ms | each round's lines/s |")
print("|---|---|---|---|---|---|")
by_round = {}
for r in runs:
    by_round.setdefault(r["round"], {})[r["system"]] = r["load"]
for system in ["auth off", "auth on", "https"]:
    rs = [r["load"] for r in runs if r["system"] == system]
    lps = [r["lines_per_s"] for r in rs]
    p50 = statistics.median(r["latency_ms"].get("p50", 0) for r in rs)
    p99 = statistics.median(r["latency_ms"].get("p99", 0) for r in rs)
    paired = statistics.median(
        b[system]["lines_per_s"] / b["auth off"]["lines_per_s"] for b in by_round.values()
    )
    failed = sum(r["batches_failed"] for r in rs)
    note = "" if failed == 0 else f" ({failed} batches failed)"
    print(f"| {system} | {statistics.median(lps):,.0f}{note} | {100*paired:.1f}% | {p50:.1f} | {p99:.1f} | {', '.join(f'{x:,.0f}' for x in lps)} |")
print()
# "1234 connections in 6 real seconds, 0 bytes read per connection; wall 6.02"
words = stime.split()
try:
    n, real = int(words[0]), float(words[-1])
    handshakes = float(ha) - float(hb)
    cpu_s = (int(after) - int(before)) / int(ticks)
    print(f"TLS handshakes (openssl s_time -new, client and server on this machine): {n/real:,.0f} new "
          f"connections/s ({1000*real/n:.2f} ms each, wall); node CPU {1e6*cpu_s/max(handshakes,1):,.0f} µs "
          f"per handshake ({handshakes:.0f} handshakes, {cpu_s:.2f} s CPU)")
except (IndexError, ValueError):
    print(f"TLS handshakes: could not read openssl s_time's output: {stime!r}")
PY
