#!/usr/bin/env python3
"""Benchmark of the per-packet cost: small packets, many flows.

The 600 MB trace of run_bench.py has ~1 KB packets, so copying bytes weighs
as much as the per-packet work.  This one isolates the per-packet work: a
generated trace of about 3 million small frames (60-130 bytes) in 100,000
TCP connections, 2,000 of them interleaved at any time.  It prints the
engine's packets/s with conn records only (timed inside the process, so
interpreter start-up is excluded) next to the libpcap read loop over the same
file, and checks that every connection was reported.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out")
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from bench_analysers import PcapWriter, frame, libpcap_seconds  # noqa: E402
from analyser.replay import replay_files  # noqa: E402


def write_trace(path, flows, concurrent, seed=7):
    """Each flow: handshake, 12 request/response pairs of 20-64 bytes, close."""
    rng = random.Random(seed)
    packets = 0
    with PcapWriter(path) as put:
        active = []
        next_flow = 0
        while next_flow < flows or active:
            while len(active) < concurrent and next_flow < flows:
                n = next_flow
                c = bytes([10, 1, (n >> 8) & 0xff, n & 0xff])
                s = bytes([10, 2, (n >> 16) & 0xff, (n * 7) & 0xff])
                active.append([c, s, 1024 + n % 60000, 80, 1000, 5000, 0])
                next_flow += 1
            i = rng.randrange(len(active))
            f = active[i]
            c, s, cp, sp, cs, ss, step = f
            if step == 0:
                put(frame(c, s, cp, sp, cs, 0, 0x02, b""))
                f[4] = cs + 1
            elif step == 1:
                put(frame(s, c, sp, cp, ss, cs, 0x12, b""))
                f[5] = ss + 1
            elif step < 26:
                if step % 2 == 0:
                    data = b"q" * rng.randrange(20, 64)
                    put(frame(c, s, cp, sp, cs, ss, 0x18, data))
                    f[4] = cs + len(data)
                else:
                    data = b"r" * rng.randrange(20, 64)
                    put(frame(s, c, sp, cp, ss, cs, 0x18, data))
                    f[5] = ss + len(data)
            elif step == 26:
                put(frame(c, s, cp, sp, cs, ss, 0x11, b""))
            elif step == 27:
                put(frame(s, c, sp, cp, ss, cs + 1, 0x11, b""))
            else:
                put(frame(c, s, cp, sp, cs + 1, ss + 1, 0x10, b""))
                active[i] = active[-1]
                active.pop()
            packets += 1
            f[6] = step + 1
    return packets


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flows", type=int, default=100_000)
    ap.add_argument("--concurrent", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "small-%dflows-%dconc.pcap" % (args.flows, args.concurrent))
    if not os.path.exists(path):
        write_trace(path, args.flows, args.concurrent)
    ref = libpcap_seconds(path, args.runs)
    best = None
    for _ in range(args.runs):
        rows = []
        t0 = time.perf_counter()
        result = replay_files([path], on_connection=rows.append)
        dt = time.perf_counter() - t0
        if best is None or dt < best[0]:
            best = (dt, result, len(rows))
    dt, result, conns = best
    s = result.stats
    print("small-packet trace: %s, %.1f MB, %s packets, %s connections" % (
        os.path.basename(path), os.path.getsize(path) / 1e6, format(s["packets"], ","),
        format(args.flows, ",")))
    print("%-40s %8s %12s %8s %10s" % ("program", "seconds", "packets/s", "Gbit/s", "vs libpcap"))
    print("%-40s %8.3f %12.0f %8.2f %10s" % ("libpcap read loop (C, -O2)", ref, s["packets"] / ref,
                                             s["wire_bytes"] * 8 / ref / 1e9, "1.0x"))
    print("%-40s %8.3f %12.0f %8.2f %9.2fx" % ("analyser engine, conn records only", dt,
                                               s["packets"] / dt, s["wire_bytes"] * 8 / dt / 1e9,
                                               dt / ref))
    status = "correct" if conns == args.flows else "WRONG"
    print("%s: %d/%d connections reported" % (status, conns, args.flows))
    return 0 if conns == args.flows else 1


if __name__ == "__main__":
    sys.exit(main())
