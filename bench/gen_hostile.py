#!/usr/bin/env python3
"""Hostile traces for the bounded-memory benchmark (bench/bench_hostile.py)
and its scaled-down test (tests/test_bounded_memory.py).

Each scenario writes a classic pcap (Ethernet / IPv4, checksums left zero:
the engine does not verify them by default) that attacks one of the
engine's bounded resources:

  syn_flood N      one SYN from each of N spoofed sources to one server
                   within 4 s: the flow table (--flow-memory) fills; the
                   oldest flows are evicted early
  half_open N      N handshakes that never complete (SYN, SYN-ACK), all
                   within the 5-s opening timeout: N concurrent half-open
                   connections, on a port with an analyser (HTTP's 80)
  ooo N K          N connections to port 80 that each send K data segments
                   every one of which is above a hole (every other segment
                   is missing): the out-of-order queues fill, holes become
                   gaps, nothing is ever contiguous for long
  fragments N      N first fragments (MF set, offset 0) of distinct IPv4
                   datagrams, never completed: the fragment table
  never_read N B   N connections whose client sends B bytes each, in
                   1448-byte segments interleaved across connections, to an
                   analyser that never reads them (it waits for the server,
                   which is silent; bench/hostile_analysers.py): the ring
                   pins what it can, then bytes are copied out or given up

    python3 bench/gen_hostile.py syn_flood 1000000 bench/out/syn-1m.pcap
"""
from __future__ import annotations

import argparse
import struct
import sys

SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
RECORD = struct.Struct("<IIII")
ETH_IP = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
IPV4 = struct.Struct("!BBHHHBBH4s4s")
TCP = struct.Struct("!HHIIBBHHH")
SERVER = bytes([10, 255, 0, 1])
START = 1_700_000_000.0
MSS = 1448
NEVER_READ_PORT = 7777           # bench/hostile_analysers.py's NeverReads


def source_address(i: int) -> bytes:
    """The i-th spoofed source: 1.0.0.0 upwards, skipping nothing."""
    i += 1 << 24
    return bytes([i >> 24 & 255, i >> 16 & 255, i >> 8 & 255, i & 255])


class Writer:
    def __init__(self, path: str):
        self.handle = open(path, "wb", buffering=1 << 20)
        self.handle.write(PCAP_HEADER)
        self.packets = 0

    def frame(self, ts: float, payload: bytes) -> None:
        sec = int(ts)
        self.handle.write(RECORD.pack(sec, int((ts - sec) * 1e6), len(payload), len(payload)))
        self.handle.write(payload)
        self.packets += 1

    def tcp(self, ts, src, dst, sport, dport, flags, seq, ack, data=b"", ip_id=1):
        ip = IPV4.pack(0x45, 0, 40 + len(data), ip_id & 0xFFFF, 0, 64, 6, 0, src, dst)
        tcp = TCP.pack(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags, 65535,
                       0, 0)
        self.frame(ts, ETH_IP + ip + tcp + data)

    def close(self) -> None:
        self.handle.close()


def syn_flood(w: Writer, n: int, dport: int = 80, seconds: float = 4.0) -> None:
    step = seconds / max(n, 1)
    for i in range(n):
        w.tcp(START + i * step, source_address(i), SERVER, 1024 + i % 64000, dport, SYN,
              i * 7919, 0, ip_id=i)


def half_open(w: Writer, n: int, dport: int = 80, seconds: float = 4.0) -> None:
    step = seconds / max(n, 1) / 2
    for i in range(n):
        src, sport, isn = source_address(i), 1024 + i % 64000, i * 7919
        ts = START + 2 * i * step
        w.tcp(ts, src, SERVER, sport, dport, SYN, isn, 0, ip_id=i)
        w.tcp(ts + step, SERVER, src, dport, sport, SYN | ACK, isn ^ 0x5555, isn + 1, ip_id=i)


def ooo(w: Writer, n: int, k: int, dport: int = 80) -> None:
    """Handshakes first, then round after round of segments that each sit
    above a missing one."""
    ts = START
    payload = b"X" * MSS
    for i in range(n):
        src, sport, isn = source_address(i), 1024 + i % 64000, i * 7919
        w.tcp(ts, src, SERVER, sport, dport, SYN, isn, 0)
        w.tcp(ts, SERVER, src, dport, sport, SYN | ACK, 0, isn + 1)
        w.tcp(ts, src, SERVER, sport, dport, ACK, isn + 1, 1)
        ts += 1e-5
    for j in range(k):
        for i in range(n):
            src, sport, isn = source_address(i), 1024 + i % 64000, i * 7919
            seq = isn + 1 + (2 * j + 1) * MSS          # segment 2j is never sent
            w.tcp(ts, src, SERVER, sport, dport, ACK | PSH, seq, 1, payload)
            ts += 1e-5


def fragments(w: Writer, n: int) -> None:
    body = b"F" * 1480
    for i in range(n):
        src = source_address(i % 50000)
        ip = IPV4.pack(0x45, 0, 20 + len(body), i & 0xFFFF, 0x2000, 64, 17, 0, src, SERVER)
        w.frame(START + i * 1e-5, ETH_IP + ip + body)


def never_read(w: Writer, n: int, nbytes: int) -> None:
    ts = START
    for i in range(n):
        src, sport, isn = source_address(i), 1024 + i % 64000, i * 7919
        w.tcp(ts, src, SERVER, sport, NEVER_READ_PORT, SYN, isn, 0)
        w.tcp(ts, SERVER, src, NEVER_READ_PORT, sport, SYN | ACK, 0, isn + 1)
        w.tcp(ts, src, SERVER, sport, NEVER_READ_PORT, ACK, isn + 1, 1)
        ts += 1e-5
    payload = b"N" * MSS
    sent = 0
    while sent < nbytes:
        for i in range(n):
            src, sport, isn = source_address(i), 1024 + i % 64000, i * 7919
            w.tcp(ts, src, SERVER, sport, NEVER_READ_PORT, ACK | PSH, isn + 1 + sent, 1,
                  payload)
            ts += 1e-5
        sent += MSS


SCENARIOS = {"syn_flood": (syn_flood, 1), "half_open": (half_open, 1), "ooo": (ooo, 2),
             "fragments": (fragments, 1), "never_read": (never_read, 2)}


def generate(scenario: str, path: str, *sizes: int) -> int:
    """Write the scenario's trace; returns its packet count."""
    function, _ = SCENARIOS[scenario]
    w = Writer(str(path))
    try:
        function(w, *sizes)
    finally:
        w.close()
    return w.packets


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("sizes", type=int, nargs="+")
    p.add_argument("output")
    args = p.parse_args(argv)
    if len(args.sizes) != SCENARIOS[args.scenario][1]:
        p.error("%s takes %d size(s)" % (args.scenario, SCENARIOS[args.scenario][1]))
    print("%d packets" % generate(args.scenario, args.output, *args.sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
