#!/usr/bin/env python3
"""Benchmark of the analyser path: elephants skipped in compiled code, and
the cost of one blocking read that switches greenlets.

1. Elephant flows.  A generated trace (default 600 MB) of a few TCP
   connections, each a small request and one huge response.  Three runs over
   the same file, in this process (interpreter start-up excluded):
     - conn records only (no analyser),
     - an analyser that reads the 16-byte response header and hands the body
       to `read_and_skip` (the body never reaches Python),
     - an analyser that reads the header and calls `bulk()`.
   Printed: packets/s, Gbit/s of trace per core, and the Python wake-ups per
   elephant (a handful, not one per packet).
2. Blocking-read cost.  A trace of small segments (8 payload bytes each) read
   by `read(ORIG, 8)` one segment at a time, so every packet wakes the
   analyser: (time with the analyser - time without) / reads = the cost of one
   blocking read with its two greenlet switches.  A bare greenlet switch
   round trip is measured next to it.

The libpcap read loop of bench/run_bench.py over the same elephant file is the
reference for the ratio.
"""
from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out")
sys.path.insert(0, ROOT)

from analyser import ORIG, RESP, Analyser  # noqa: E402
from analyser.replay import replay_files  # noqa: E402

PCAP_HEADER = struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1)
MSS = 1448


def frame(src, dst, sport, dport, seq, ack, flags, payload):
    """Ethernet/IPv4/TCP; checksums left zero (the engine ignores them by default)."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xffffffff, ack & 0xffffffff,
                      5 << 4, flags, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 0, 0x4000, 64,
                     6, 0, src, dst)
    return b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x08\x00" + ip + tcp + payload


class PcapWriter:
    """A classic pcap file, one frame per call, 10 us apart."""

    def __init__(self, path):
        self.path, self.t = path, 1_700_000_000.0

    def __enter__(self):
        self.f = open(self.path, "wb")
        self.f.write(PCAP_HEADER)
        return self

    def __call__(self, data):
        self.t += 1e-5
        sec = int(self.t)
        self.f.write(struct.pack("<IIII", sec, int((self.t - sec) * 1e6), len(data), len(data)))
        self.f.write(data)

    def __exit__(self, *exc):
        self.f.close()


def write_elephants(path, size_mb, flows=4):
    """`flows` connections of size_mb/flows each: request, 16-byte header, body."""
    per_flow = size_mb * (1 << 20) // flows
    body_len = per_flow - 16
    chunk = bytes(range(256)) * (MSS // 256 + 1)
    with PcapWriter(path) as put:
        for n in range(flows):
            c, s = bytes([10, 0, 0, 1]), bytes([10, 0, 1, n + 1])
            cport, sport = 40000 + n, 9000
            cs, ss = 1000, 5000
            put(frame(c, s, cport, sport, cs, 0, 0x02, b""))
            put(frame(s, c, sport, cport, ss, cs + 1, 0x12, b""))
            put(frame(c, s, cport, sport, cs + 1, ss + 1, 0x10, b""))
            put(frame(c, s, cport, sport, cs + 1, ss + 1, 0x18, b"GET elephant\n"))
            cs += 1 + 13
            stream = struct.pack("!8sQ", b"ELEPHANT", body_len)
            seq = ss + 1
            sent = 0
            total = 16 + body_len
            segs = 0
            while sent < total:
                n_bytes = min(MSS, total - sent)
                if sent == 0:
                    payload = stream + chunk[:n_bytes - 16]
                else:
                    payload = chunk[:n_bytes]
                put(frame(s, c, sport, cport, seq, cs, 0x10, payload))
                seq += n_bytes
                sent += n_bytes
                segs += 1
                if segs % 2 == 0:
                    put(frame(c, s, cport, sport, cs, seq, 0x10, b""))
            put(frame(s, c, sport, cport, seq, cs, 0x11, b""))
            put(frame(c, s, cport, sport, cs, seq + 1, 0x11, b""))
            put(frame(s, c, sport, cport, seq + 1, cs + 1, 0x10, b""))
    return body_len


def write_small_segments(path, count):
    c, s = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    with PcapWriter(path) as put:
        put(frame(c, s, 40000, 9100, 1000, 0, 0x02, b""))
        put(frame(s, c, 9100, 40000, 5000, 1001, 0x12, b""))
        seq = 1001
        for i in range(count):
            put(frame(c, s, 40000, 9100, seq, 5001, 0x18, struct.pack("!Q", i)))
            seq += 8
        put(frame(c, s, 40000, 9100, seq, 5001, 0x11, b""))


class ElephantSkip(Analyser):
    """Reads the header, then skips the body with read_and_skip."""
    name = "elephant-skip"
    ports = {9000}

    def main(self):
        self.read_line(ORIG)
        magic, length = struct.unpack("!8sQ", self.read(RESP, 16))
        self.read_and_skip(RESP, length, 64)
        self.read(RESP, 1)                      # waits for the end


class ElephantBulk(ElephantSkip):
    """Reads the header, then hands the connection to bulk counting."""
    name = "elephant-bulk"

    def main(self):
        self.read_line(ORIG)
        self.read(RESP, 16)
        self.bulk()


class EightByteReader(Analyser):
    name = "eight"
    ports = {9100}

    def main(self):
        while True:
            self.read(ORIG, 8)


def timed_replay(path, analysers, runs):
    best = None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = replay_files([path], analysers=analysers)
        dt = time.perf_counter() - t0
        if best is None or dt < best[0]:
            best = (dt, result)
    return best


def libpcap_seconds(path, runs):
    loop = os.path.join(OUT, "pcap_loop")
    if not os.path.exists(loop):
        subprocess.run(["gcc", "-O2", os.path.join(HERE, "pcap_loop.c"), "-lpcap", "-o", loop],
                       check=True)
    best = None
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([loop, path], check=True, capture_output=True)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return best


def greenlet_round_trip():
    import greenlet
    main = greenlet.getcurrent()

    def child():
        while True:
            main.switch()
    g = greenlet.greenlet(child)
    g.switch()
    n = 200_000
    t0 = time.perf_counter()
    for _ in range(n):
        g.switch()
    return (time.perf_counter() - t0) / n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=600)
    ap.add_argument("--quick", action="store_true", help="a 100 MB elephant trace")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--reads", type=int, default=200_000)
    args = ap.parse_args(argv)
    size = 100 if args.quick else args.size_mb
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "elephants-%dMB.pcap" % size)
    if not os.path.exists(path):
        write_elephants(path, size)
    wire = os.path.getsize(path)
    print("elephant trace: %s, %.1f MB, 4 connections" % (os.path.basename(path), wire / 1e6))
    ref = libpcap_seconds(path, args.runs)
    print("%-44s %8s %11s %8s %10s %12s" % ("program", "seconds", "packets/s", "Gbit/s",
                                              "vs libpcap", "wake-ups/flow"))
    print("%-44s %8.3f %11s %8.2f %10s %12s" % ("libpcap read loop (C, -O2)", ref, "-",
                                                 wire * 8 / ref / 1e9, "1.0x", "-"))
    for label, analysers in (("analyser replay, conn records only", None),
                             ("read header + read_and_skip(body)", [(ElephantSkip, {})]),
                             ("read header + bulk()", [(ElephantBulk, {})])):
        dt, result = timed_replay(path, analysers, args.runs)
        s = result.stats
        wakeups = "-"
        if analysers:
            wakeups = "%.1f" % (s["analyser_wakeups"] / 4)
            assert s["analyser_errors"] == 0, result.engine.runtime.error_log
        print("%-44s %8.3f %11.0f %8.2f %9.2fx %12s" % (
            label, dt, s["packets"] / dt, s["wire_bytes"] * 8 / dt / 1e9, dt / ref, wakeups))

    small = os.path.join(OUT, "small-segments-%d.pcap" % args.reads)
    if not os.path.exists(small):
        write_small_segments(small, args.reads)
    plain, _ = timed_replay(small, None, args.runs)
    reading, result = timed_replay(small, [(EightByteReader, {})], args.runs)
    wakeups = result.stats["analyser_wakeups"]
    print()
    print("blocking reads: %d segments of 8 bytes, each read with read(ORIG, 8)" % args.reads)
    print("  without analyser %.3f s, with %.3f s, %d wake-ups" % (plain, reading, wakeups))
    print("  one blocking read that switches greenlets: %.2f us" % (
        (reading - plain) / max(1, wakeups) * 1e6))
    print("  (a bare greenlet switch round trip: %.2f us)" % (greenlet_round_trip() * 1e6))


if __name__ == "__main__":
    main()
