#!/usr/bin/env python3
"""Aggregates over data files with and without block statistics (issue 15).

Loads the same data into a node of each binary given (100 hosts x 40,000 points
at 10 s, a float and an integer field: 8 M values, all in one shard group), waits
until everything is flushed (and compacted, for at most 300 s), then times
each query (median of 15 runs, 3 warm-ups) with the block cache off, so every
block a query decodes is read.

Usage: tools/block-stats-figures.py NAME=BINARY [NAME=BINARY ...]
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HOSTS, POINTS, STEP_S = 100, 40_000, 10
QUERIES = [
    "SELECT count(v), min(w), max(w), sum(w) FROM m",
    "SELECT count(v) FROM m GROUP BY host",
    "SELECT max(v) FROM m GROUP BY time(1d)",
    "SELECT mean(v) FROM m GROUP BY time(1d), host",
    "SELECT mean(w), max(w) FROM m WHERE host = 'h7' GROUP BY time(12h)",
]
CONFIG = """cores = 2
[http]
bind-address = "127.0.0.1:{port}"
[storage]
cache-snapshot-write-cold-ms = 1000
compact-full-write-cold-ms = 3000
block-cache-bytes = 0
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method)
    with urllib.request.urlopen(req, timeout=600) as r:
        return r.read()


def query(port, q):
    return request(port, "GET", "/query?" + urllib.parse.urlencode({"db": "db", "q": q}))


def storage(port):
    return json.loads(request(port, "GET", "/debug/vars"))["storage"]["values"]


def run(name, binary):
    work = tempfile.mkdtemp(prefix="block-stats-")
    port = free_port()
    conf = os.path.join(work, "shardcore.toml")
    with open(conf, "w") as f:
        f.write(CONFIG.format(port=port))
    node = subprocess.Popen(
        [binary, "serve", "--config", conf, "--data-dir", os.path.join(work, "data")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                request(port, "GET", "/ping")
                break
            except OSError:
                time.sleep(0.05)
        query(port, "CREATE DATABASE db")
        for start in range(0, POINTS, 2000):
            lines = []
            for h in range(HOSTS):
                for i in range(start, start + 2000):
                    v = ((i * 7919 + h * 31) % 10007) / 100
                    lines.append(f"m,host=h{h} v={v},w={(i * 13 + h) % 1000 - 500}i {i * STEP_S}000000000")
            request(port, "POST", "/write?db=db", "\n".join(lines).encode())
        # Flushed (no head left) and compacted into one file per partition.
        deadline = time.time() + 300
        while time.time() < deadline:
            s = storage(port)
            if s["headValues"] == 0 and s["files"] <= 2 and s["compactions"] > 0:
                break
            time.sleep(0.5)
        s = storage(port)
        print(f"{name}: files {s['files']}, file values {s['fileValues']}, head values {s['headValues']}")
        out = {}
        for q in QUERIES:
            for _ in range(3):
                query(port, q)
            times = []
            for _ in range(15):
                t = time.perf_counter()
                answer = query(port, q)
                times.append((time.perf_counter() - t) * 1000)
            out[q] = (statistics.median(times), len(answer))
        return out
    finally:
        node.kill()
        node.wait()
        shutil.rmtree(work, ignore_errors=True)


def main():
    results = {}
    for arg in sys.argv[1:]:
        name, binary = arg.split("=", 1)
        results[name] = run(name, binary)
    names = list(results)
    print("| query | " + " | ".join(f"{n} ms" for n in names) + " |")
    print("|---|" + "---:|" * len(names))
    for q in QUERIES:
        cells = [f"{results[n][q][0]:.1f}" for n in names]
        print(f"| `{q}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
