#!/usr/bin/env python3
"""What the runtime costs an analysed connection, apart from the parsing.

On the HTTP-heavy trace of bench_peers.py (http-web: 8,000 keep-alive
connections), whole process, median of RUNS (default 5) runs each, in turn:
    - connection records only (--no-analyser all),
    - an analyser that confirms and returns at once (start, greenlet, end),
    - an analyser that takes every chunk through read_any_into and parses
      none (the delivery path),
    - the HTTP analyser (defaults).
Printed: seconds, each row's ratio to connection records, and the extra
microseconds per connection.  The analysers are bench/null_analysers.py.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import bench_peers  # noqa: E402

NULLS = os.path.join(HERE, "null_analysers.py")
CONNECTIONS = 8000              # bench_peers.HTTP_TRACE's --flows
ROWS = (
    ("connection records", ["--no-analyser", "all"]),
    ("returns at once", ["--load", NULLS, "--no-analyser", "http",
                         "--no-analyser", "reads-everything"]),
    ("reads every chunk", ["--load", NULLS, "--no-analyser", "http",
                           "--no-analyser", "returns-at-once"]),
    ("HTTP (defaults)", []),
)


def timed(trace: str, options: list[str], logs: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "analyser", "replay", trace, "--logs", logs, "-q",
                    *options], cwd=ROOT, check=True)
    return time.perf_counter() - started


def main() -> int:
    if not os.path.isdir(bench_peers.SHARED_BENCH):
        print("bench_runtime_floor: %s is not there (its trace generator)"
              % bench_peers.SHARED_BENCH, file=sys.stderr)
        return 0
    runs = int(os.environ.get("RUNS", "5"))
    trace = bench_peers.application_traces()[0]
    logs = os.path.join(HERE, "out", "runtime-floor-logs")
    with open(trace, "rb") as f:            # into the page cache
        while f.read(1 << 20):
            pass
    times: dict[str, list[float]] = {name: [] for name, _ in ROWS}
    for _ in range(runs):                   # in turn, so a drift touches every row
        for name, options in ROWS:
            times[name].append(timed(trace, options, logs))
    base = statistics.median(times[ROWS[0][0]])
    print("%s, median of %d runs each" % (os.path.basename(trace), runs))
    print("%-20s %8s %10s %18s" % ("run", "wall s", "/ records", "us per connection"))
    for name, _ in ROWS:
        t = statistics.median(times[name])
        print("%-20s %8.3f %9.2fx %18.1f" % (name, t, t / base,
                                             (t - base) / CONNECTIONS * 1e6))
    return 0


if __name__ == "__main__":
    sys.exit(main())
