#!/usr/bin/env python3
"""Benchmark of the FTP analyser on an FTP-heavy trace.

A generated trace (bench/out/, reused when present) of many FTP control
sessions on port 21 (default 2,000, 64 interleaved at a time), each
USER/PASS/TYPE I/PASV/227/RETR/150 (N bytes)/226/QUIT, with one passive data
connection per transfer: mostly mice (0-100 KB) and a few elephants (50 MB
each), about 540 MB in all.  Timed in this process (interpreter start-up
excluded), best of --runs:
  - the libpcap read loop over the same file (bench/pcap_loop.c),
  - analyser replay, conn records only,
  - analyser replay with the ftp analyser.
Printed: packets/s, Gbit/s, the ratio to libpcap; the Python wake-ups per
control session and per data connection (data connections are counted in
compiled code: no stream, so no wake-up); and whether every transfer's bytes
equal the generated size ("correct: N/N transfers", exit status 1 if not).
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

from bench_analysers import MSS, PcapWriter, frame, libpcap_seconds  # noqa: E402
from analyser.replay import replay_files  # noqa: E402
from protocols.ftp import Ftp  # noqa: E402

SYN, FIN, PSH, ACK = 0x02, 0x01, 0x08, 0x10
FORMAT_VERSION = 1
CHUNK = bytes(range(256)) * (MSS // 256 + 1)


def transfer_sizes(sessions, elephants, elephant_mb, seed):
    """The size of each session's file: mice of 0-100 KB (some empty), and
    `elephants` of elephant_mb MB spread over the trace."""
    rng = random.Random(seed)
    sizes = [0 if rng.random() < 0.02 else rng.randint(1, 100_000) for _ in range(sessions)]
    step = max(1, sessions // max(1, elephants))
    for k in range(min(elephants, sessions)):
        sizes[k * step + step // 2] = elephant_mb * 1_000_000 + k * 1237
    return sizes


class Tcp:
    """One TCP connection's sequence numbers; each call returns one frame."""

    def __init__(self, c, s, cport, sport):
        self.c, self.s, self.cport, self.sport = c, s, cport, sport
        self.cseq, self.sseq = 1000, 5000

    def handshake(self):
        f = [frame(self.c, self.s, self.cport, self.sport, self.cseq, 0, SYN, b""),
             frame(self.s, self.c, self.sport, self.cport, self.sseq, self.cseq + 1, SYN | ACK,
                   b"")]
        self.cseq += 1
        self.sseq += 1
        f.append(frame(self.c, self.s, self.cport, self.sport, self.cseq, self.sseq, ACK, b""))
        return f

    def client(self, data, flags=PSH | ACK):
        f = frame(self.c, self.s, self.cport, self.sport, self.cseq, self.sseq, flags, data)
        self.cseq += len(data)
        return f

    def server(self, data, flags=PSH | ACK):
        f = frame(self.s, self.c, self.sport, self.cport, self.sseq, self.cseq, flags, data)
        self.sseq += len(data)
        return f

    def close(self, server_first=False):
        if server_first:
            f = [self.server(b"", FIN | ACK)]
            self.sseq += 1
            f.append(self.client(b"", FIN | ACK))
            self.cseq += 1
            f.append(self.server(b"", ACK))
        else:
            f = [self.client(b"", FIN | ACK)]
            self.cseq += 1
            f.append(self.server(b"", FIN | ACK))
            self.sseq += 1
            f.append(self.client(b"", ACK))
        return f


def session(i, size):
    """The frames of control session i and its data connection, in order."""
    c = bytes([10, 100, (i >> 8) & 0xff, i & 0xff])
    s = bytes([10, 200, (i >> 8) & 0xff, i & 0xff])
    pasv_port = 30000 + i % 30000
    ctl = Tcp(c, s, 40000 + i % 20000, 21)
    yield from ctl.handshake()
    name = b"file-%05d.bin" % i
    for cmd, reply in ((None, b"220 bench FTP server ready"),
                       (b"USER anonymous", b"331 Please specify the password."),
                       (b"PASS bench@example.org", b"230 Login successful."),
                       (b"TYPE I", b"200 Switching to Binary mode."),
                       (b"PASV", b"227 Entering Passive Mode (10,200,%d,%d,%d,%d)."
                        % ((i >> 8) & 0xff, i & 0xff, pasv_port >> 8, pasv_port & 0xff))):
        if cmd is not None:
            yield ctl.client(cmd + b"\r\n")
        yield ctl.server(reply + b"\r\n")
    data = Tcp(c, s, 50000 + i % 15000, pasv_port)
    yield from data.handshake()
    yield ctl.client(b"RETR " + name + b"\r\n")
    yield ctl.server(b"150 Opening BINARY mode data connection for %s (%d bytes).\r\n"
                     % (name, size))
    sent = segments = 0
    while sent < size:
        n = min(MSS, size - sent)
        yield data.server(CHUNK[:n], ACK)
        sent += n
        segments += 1
        if segments % 2 == 0:
            yield data.client(b"", ACK)
    yield from data.close(server_first=True)
    yield ctl.server(b"226 Transfer complete.\r\n")
    yield ctl.client(b"QUIT\r\n")
    yield ctl.server(b"221 Goodbye.\r\n")
    yield from ctl.close()


def write_trace(path, sizes, concurrent):
    """Sessions interleaved frame by frame, `concurrent` at a time."""
    pending = iter(range(len(sizes)))
    active = []
    frames = 0
    with PcapWriter(path) as put:
        while True:
            while len(active) < concurrent:
                i = next(pending, None)
                if i is None:
                    break
                active.append(session(i, sizes[i]))
            if not active:
                break
            for gen in list(active):
                for _ in range(4):                       # a few frames per turn
                    f = next(gen, None)
                    if f is None:
                        active.remove(gen)
                        break
                    put(f)
                    frames += 1
    return frames


def timed(path, analysers, runs, on_event=None):
    best = None
    for _ in range(runs):
        events = []
        t0 = time.perf_counter()
        result = replay_files([path], analysers=analysers,
                              on_event=(events.append if on_event else None))
        dt = time.perf_counter() - t0
        if best is None or dt < best[0]:
            best = (dt, result, events)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=2000)
    ap.add_argument("--elephants", type=int, default=8)
    ap.add_argument("--elephant-mb", type=int, default=50)
    ap.add_argument("--concurrent", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="200 sessions, 2 elephants of 20 MB")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    if args.quick:
        args.sessions, args.elephants, args.elephant_mb = 200, 2, 20
    sizes = transfer_sizes(args.sessions, args.elephants, args.elephant_mb, args.seed)
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "ftp-v%d-s%d-%dsessions-%dx%dMB-%dconc.pcap" % (
        FORMAT_VERSION, args.seed, args.sessions, args.elephants, args.elephant_mb,
        args.concurrent))
    if not os.path.exists(path):
        t0 = time.perf_counter()
        write_trace(path + ".tmp", sizes, args.concurrent)
        os.replace(path + ".tmp", path)
        print("generated in %.1f s" % (time.perf_counter() - t0))
    print("FTP trace: %s, %.1f MB, %s control sessions, %s data connections, "
          "%.1f MB of files" % (os.path.basename(path), os.path.getsize(path) / 1e6,
                                format(args.sessions, ","), format(args.sessions, ","),
                                sum(sizes) / 1e6))

    ref = libpcap_seconds(path, args.runs)
    plain, _, _ = timed(path, None, args.runs)
    config = {k: default for k, (default, _) in Ftp.options.items()}
    dt, result, events = timed(path, [(Ftp, config)], args.runs, on_event=True)
    s = result.stats
    wire = s["wire_bytes"]
    print("%-40s %8s %11s %8s %10s" % ("program", "seconds", "packets/s", "Gbit/s", "vs libpcap"))
    print("%-40s %8.3f %11.0f %8.2f %10s" % ("libpcap read loop (C, -O2)", ref, s["packets"] / ref,
                                             wire * 8 / ref / 1e9, "1.0x"))
    for label, t in (("analyser replay, conn records only", plain),
                     ("analyser replay, ftp analyser", dt)):
        print("%-40s %8.3f %11.0f %8.2f %9.2fx" % (label, t, s["packets"] / t,
                                                   wire * 8 / t / 1e9, t / ref))

    # Python wake-ups.  Only flows with a stream can wake an analyser; a data
    # connection bound by an expectation without an analyser gets none.
    data_conns = sum(1 for e in events if e["event"] == "expected_connection")
    streams = s["stream_pairs"]
    control_sessions = streams
    wakeups = s["analyser_wakeups"]
    data_wakeups = 0 if streams == args.sessions else None
    print("Python wake-ups: %s in all; %.1f per control session; per data connection: %s "
          "(%s data connections linked, streams created %s = control sessions only; "
          "%s bytes delivered to Python, %.1f MB of files never were)" % (
              format(wakeups, ","), wakeups / max(1, control_sessions),
              "0" if data_wakeups == 0 else "UNKNOWN (data connections had streams)",
              format(data_conns, ","), format(streams, ","),
              format(s["stream_delivered_bytes"], ","), sum(sizes) / 1e6))
    if s.get("analyser_errors"):
        print("analyser errors:", result.engine.runtime.error_log[:3])

    ends = {e["file"]: e for e in events if e["event"] == "transfer_end"}
    good = 0
    for i, size in enumerate(sizes):
        e = ends.get("file-%05d.bin" % i)
        if (e is not None and e["bytes"] == size and e["reply_code"] == 226
                and e["streams"] == 1 and e["size_announced"] == size):
            good += 1
    ok = good == len(sizes) and data_conns == len(sizes) and data_wakeups == 0
    print("%s: %d/%d transfers (bytes = generated size, announced size, one linked data "
          "connection, 226)" % ("correct" if good == len(sizes) else "WRONG", good, len(sizes)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
