#!/usr/bin/env python3
"""Bounded memory under hostile traffic: each scenario of bench/gen_hostile.py
replayed through the engine with every shipped analyser (plus one that never
reads), in a process of its own, measuring its peak RSS, the engine's rate
and what it gave up.

    python3 bench/bench_hostile.py                 # full sizes (millions), ~10 min
    python3 bench/bench_hostile.py --scale 0.05    # the same, 20 times smaller
    python3 bench/bench_hostile.py --only syn_flood,never_read

For each scenario: packets, seconds, packets/s, peak RSS, the RSS of the
same process on an empty trace (Python, the analysers, the ring), what the
budgets allow above that (--flow-memory's flow table, the stream budget,
the fragment table), and the counters that show the bounds at work:
evictions, bytes copied out of the ring and given up, fragment datagrams
evicted.  Exit status 1 when a scenario's peak exceeds its baseline plus
budgets plus SLACK_MB.

tests/test_bounded_memory.py runs the scaled-down scenarios with the same
`measure()`.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import gen_hostile  # noqa: E402

FLOW_MEMORY_MB = 64          # --flow-memory of every run: 79,137 flows
STREAM_MEMORY_MB = 32        # --stream-memory of every run
FRAGMENT_TABLE_MB = 4.1      # decode.pyx: 64 slots of 64 KiB
SLACK_MB = 40                # allocator slack, Python objects of live analysers, logs
# scenario -> full sizes (see gen_hostile.py)
FULL = {"syn_flood": (2_000_000,), "half_open": (1_000_000,), "ooo": (5_000, 400),
        "fragments": (2_000_000,), "never_read": (2_000, 1_500_000)}

CHILD = r"""
import json, resource, sys, time
sys.path[:0] = [REPO, HERE]
from analyser import registry
from analyser.replay import replay_files
from hostile_analysers import NeverReads
analysers, _ = registry.select()
analysers.append((NeverReads, {}))
started = time.perf_counter()
result = replay_files([TRACE], analysers=analysers, flow_memory_mb=FLOW_MB,
                      max_owned_total=int(STREAM_MB * 2**20), on_connection=lambda row: None)
seconds = time.perf_counter() - started
s = result.stats
keys = ["packets", "evictions", "timeouts", "flow_capacity", "max_active_flows",
        "analysers_started", "analyser_errors", "engine_errors", "ring_copied_out_bytes",
        "ring_given_up_bytes", "stream_owned_bytes_peak", "stream_gap_bytes",
        "stream_overflow_bytes", "fragment_datagrams_evicted", "fragments_seen"]
out = {k: s.get(k) for k in keys}
out["seconds"] = seconds
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def run_child(trace: str, flow_mb: float, stream_mb: float, python: str = sys.executable) -> dict:
    code = (CHILD.replace("REPO", repr(REPO)).replace("HERE", repr(HERE))
            .replace("TRACE", repr(trace)).replace("FLOW_MB", repr(flow_mb))
            .replace("STREAM_MB", repr(stream_mb)))
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=REPO,
                          timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError("replay failed: %s" % proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(scenario: str, sizes: tuple, workdir: str, flow_mb: float = FLOW_MEMORY_MB,
            stream_mb: float = STREAM_MEMORY_MB, baseline: dict | None = None) -> dict:
    """Generate the scenario's trace, replay it in a child process; the
    figures plus `budget_mb` (what the budgets allow above the baseline)."""
    trace = os.path.join(workdir, "%s-%s.pcap" % (scenario, "-".join(map(str, sizes))))
    started = time.perf_counter()
    packets = gen_hostile.generate(scenario, trace, *sizes)
    generated = time.perf_counter() - started
    if baseline is None:
        baseline = measure_baseline(workdir, flow_mb, stream_mb)
    figures = run_child(trace, flow_mb, stream_mb)
    os.unlink(trace)
    figures.update(scenario=scenario, sizes=list(sizes), trace_packets=packets,
                   generate_seconds=round(generated, 1),
                   baseline_rss_mb=baseline["peak_rss_mb"],
                   budget_mb=flow_mb + stream_mb + FRAGMENT_TABLE_MB)
    figures["over_baseline_mb"] = figures["peak_rss_mb"] - baseline["peak_rss_mb"]
    figures["packets_per_second"] = figures["packets"] / max(figures["seconds"], 1e-9)
    figures["within_budget"] = figures["over_baseline_mb"] <= figures["budget_mb"] + SLACK_MB
    return figures


def measure_baseline(workdir: str, flow_mb: float, stream_mb: float) -> dict:
    """The same process on a trace of one packet: Python, the analysers, the
    ring, an empty flow table whose pages are not touched yet."""
    trace = os.path.join(workdir, "baseline.pcap")
    gen_hostile.generate("syn_flood", trace, 1)
    return run_child(trace, flow_mb, stream_mb)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=1.0, help="multiply the sizes (default 1)")
    p.add_argument("--only", default="", help="comma-separated scenarios")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(FULL)
    results = []
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) \
            as workdir:
        baseline = measure_baseline(workdir, FLOW_MEMORY_MB, STREAM_MEMORY_MB)
        print("baseline: peak RSS %.0f MiB (one packet, every analyser loaded); budgets: "
              "--flow-memory %d, --stream-memory %d, fragments %.1f MiB"
              % (baseline["peak_rss_mb"], FLOW_MEMORY_MB, STREAM_MEMORY_MB, FRAGMENT_TABLE_MB))
        print("%-11s %-18s %10s %8s %11s %9s %9s %9s %12s %12s %9s"
              % ("scenario", "sizes", "packets", "seconds", "packets/s", "peak MiB",
                 "over base", "evicted", "copied out", "given up", "frag evict"))
        for name in names:
            sizes = tuple(max(1, int(x * args.scale)) if i == 0 or name != "never_read"
                          else x for i, x in enumerate(FULL[name]))
            r = measure(name, sizes, workdir, baseline=baseline)
            results.append(r)
            print("%-11s %-18s %10d %8.1f %11.0f %9.0f %9.0f %9d %12d %12d %9s %s"
                  % (name, "x".join(map(str, sizes)), r["packets"], r["seconds"],
                     r["packets_per_second"], r["peak_rss_mb"], r["over_baseline_mb"],
                     r["evictions"] or 0, r["ring_copied_out_bytes"] or 0,
                     r["ring_given_up_bytes"] or 0, r["fragment_datagrams_evicted"],
                     "" if r["within_budget"] else "OVER BUDGET"), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"baseline": baseline, "results": results}, handle, indent=1)
    return 0 if all(r["within_budget"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
