#!/usr/bin/env python3
"""Live-capture benchmark: how fast can traffic arrive before anything is lost?

On a veth pair between two network namespaces made for the run (never any
other interface), traffic goes from the server's namespace to the client's;
in the client's namespace, on its end of the pair, one of

- ``analyser live --source pcap``      (libpcap, capture thread)
- ``analyser live --source afpacket``  (TPACKET_V3 mmap ring, capture thread)
- ``tcpdump``                          (the reference: capture only, no analysis)

counts what it saw.  Two experiments:

1. Rates: a UDP sender of our own (C, sendmmsg, paced) offers packets at
   increasing rates for --seconds.  A rate passes when the capture saw (and
   the analyser analysed) every packet sent with no kernel or ring drop.
   For each capturer the table gives the highest passing rate and, for the
   analyser, the delay from each packet's capture timestamp to the moment
   the engine took it from the ring (median, p99, p99.9, max) at that rate.
2. Burst (issue 14): --burst-packets packets of a session-heavy trace (half
   FTP sessions, half HTTP mice: ../shared/bench/gen_trace.py, or --trace)
   sent with ``tcpreplay --topspeed``, with the analyser's default
   analysers: captured, analysed and dropped per stage, the largest backlog
   the ring absorbed, and the same latency percentiles (under a burst the
   latency is the time analysis needs to catch up).

Usage (root; Linux): ``python3 bench/bench_live.py [--seconds 3] [--size 200]
[--rates 25000,50000,...] [--burst-packets 300000] [--trace T.pcap]``.  It
needs gcc (for the sender), tcpdump, tcpreplay (for the burst) and iproute2.
Results depend on the machine: the sender, the capture and the engine share
its CPUs.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

BLASTER_C = r"""
/* UDP sender: RATE packets/s of SIZE payload bytes for SECONDS, in batches
   of sendmmsg, paced against CLOCK_MONOTONIC.  Prints how many were sent. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static double now(void) {
    struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc != 6) { fprintf(stderr, "usage: blaster IP PORT RATE SIZE SECONDS\n"); return 2; }
    const char *ip = argv[1];
    int port = atoi(argv[2]); double rate = atof(argv[3]);
    int size = atoi(argv[4]); double seconds = atof(argv[5]);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int sndbuf = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    struct sockaddr_in to = {0};
    to.sin_family = AF_INET; to.sin_port = htons(port); inet_pton(AF_INET, ip, &to.sin_addr);
    if (connect(fd, (struct sockaddr *)&to, sizeof to) < 0) { perror("connect"); return 1; }
    enum { BATCH = 32 };
    static char payload[BATCH][65536];
    struct mmsghdr msgs[BATCH]; struct iovec iov[BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = payload[i]; iov[i].iov_len = size;
        msgs[i].msg_hdr.msg_iov = &iov[i]; msgs[i].msg_hdr.msg_iovlen = 1;
    }
    unsigned long long sent = 0, seq = 0;
    double start = now(), end = start + seconds;
    for (;;) {
        double t = now();
        if (t >= end) break;
        unsigned long long due = (unsigned long long)((t - start) * rate);
        if (sent >= due) {
            double wait = (sent + 1) / rate - (t - start);
            if (wait > 0.0002) {
                struct timespec ts = {0, (long)(wait * 1e9)};
                nanosleep(&ts, NULL);
            }
            continue;
        }
        int n = due - sent > BATCH ? BATCH : (int)(due - sent);
        for (int i = 0; i < n; i++) { seq++; memcpy(payload[i], &seq, sizeof seq); }
        int r = sendmmsg(fd, msgs, n, 0);
        if (r > 0) sent += r;
    }
    printf("%llu\n", sent);
    return 0;
}
"""

GENERATOR = REPO.parent / "shared" / "bench" / "gen_trace.py"

SINK = ("import socket, sys, time\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.bind((sys.argv[1], int(sys.argv[2])))\n"
        "print('ready', flush=True)\n"
        "time.sleep(3600)\n")


def build_blaster() -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    binary = OUT / "udp_blaster"
    source = OUT / "udp_blaster.c"
    current = source.read_text() if source.exists() else ""
    if not binary.exists() or current != BLASTER_C:
        source.write_text(BLASTER_C)
        subprocess.run(["gcc", "-O2", "-o", str(binary), str(source)], check=True)
    return binary


def capture_worker(args) -> None:
    """Runs inside the client namespace: analyse live (default analysers) for
    --seconds, or until SIGINT, and print the capture statistics, what was
    analysed and the latency as JSON."""
    import tempfile
    from analyser.live import live_capture
    from analyser.cli import build_parser, setup_analysers
    cli = build_parser().parse_args(["live", "-i", args.interface])
    analysers, monitor, _ = setup_analysers(cli)
    logs = tempfile.mkdtemp(prefix="bench-live-")      # logs are written, as by default
    result = live_capture(args.interface, source=args.source,
                          duration=args.seconds if args.seconds > 0 else None,
                          bpf=args.bpf or None, handle_signals=True, analysers=analysers,
                          monitor=monitor, logs_dir=logs, drain_timeout=60.0,
                          on_ready=lambda engine, source: print("ready", flush=True))
    c = result.capture
    print(json.dumps({"packets": c.get("packets", 0), "kernel_drops": c.get("kernel_drops", 0),
                      "ring_drops": c.get("ring_drops", 0),
                      "interface_drops": c.get("interface_drops", 0),
                      "analysed": result.stats["packets"], "ring": result.ring,
                      "latency": result.latency}), flush=True)
    shutil.rmtree(logs, ignore_errors=True)


def run_point(net, blaster, capturer: str, rate: int, seconds: float, size: int) -> dict:
    iface = net.iface["client"]
    settle = 1.0
    if capturer == "tcpdump":
        proc = net.popen("client", ["tcpdump", "-i", iface, "-n", "-B", "32768", "-w",
                                    "/dev/null", "udp"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = proc.stderr.readline()
        if "listening" not in line:
            raise RuntimeError("tcpdump did not start: " + line)
    else:
        proc = net.popen("client", [sys.executable, __file__, "--worker", "--interface", iface,
                                    "--source", capturer, "--bpf", "udp", "--seconds",
                                    str(seconds + 2 * settle)],
                         cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"{capturer} did not start: {line}{proc.stderr.read()}")
    time.sleep(settle / 2)
    sent = int(net.run("server", [blaster, net.client_ip, 9000, rate, size, seconds],
                       timeout=seconds + 30).stdout.strip())
    if capturer == "tcpdump":
        time.sleep(settle)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        got = int(re.search(r"(\d+) packets received by filter", err).group(1))
        kernel = int(re.search(r"(\d+) packets dropped by kernel", err).group(1))
        out = {"packets": got, "kernel_drops": kernel, "ring_drops": 0, "latency": None}
    else:
        stdout, err = proc.communicate(timeout=seconds + 60)
        out = json.loads(stdout.strip().splitlines()[-1])
    out["sent"] = sent
    out["ok"] = (out["packets"] >= sent and out.get("analysed", sent) >= sent
                 and not out["kernel_drops"] and not out["ring_drops"])
    return out


def burst_trace(args) -> Path | None:
    """The session-heavy trace for the burst: --trace, or generated once."""
    if args.trace:
        return Path(args.trace)
    if not GENERATOR.exists():
        return None
    trace = OUT / "live-burst-mice.pcap"
    if not trace.exists():
        # The mice-200m recipe of ../shared/bench/run_peers.sh, smaller.
        subprocess.run([sys.executable, str(GENERATOR), "-o", str(trace), "--size-mb",
                        str(max(10, args.burst_packets * 220 // 1_000_000)),
                        "--flows", str(max(1000, args.burst_packets * 57 // 1000)),
                        "--seed", "2", "--elephants", "0", "--ftp-frac", "0.5",
                        "--ftp-file-max-kb", "12", "--mouse-max-kb", "8",
                        "--http-reqs-max", "2"], check=True, capture_output=True)
    return trace


def run_burst(net, capturer: str, trace: Path, packets: int) -> dict:
    """tcpreplay --topspeed `packets` packets of `trace`; SIGINT once through."""
    iface = net.iface["client"]
    if capturer == "tcpdump":
        proc = net.popen("client", ["tcpdump", "-i", iface, "-n", "-B", "262144", "-w",
                                    "/dev/null"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if "listening" not in proc.stderr.readline():
            raise RuntimeError("tcpdump did not start")
    else:
        proc = net.popen("client", [sys.executable, __file__, "--worker", "--interface", iface,
                                    "--source", capturer, "--seconds", "0"],
                         cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{capturer} did not start: {proc.stderr.read()}")
    time.sleep(0.5)
    sent = net.run("server", ["tcpreplay", "--topspeed", f"--limit={packets}", "-i",
                              net.iface["server"], trace], timeout=300).stdout
    time.sleep(1.5)                     # tcpdump retires its last block after 1 s
    proc.send_signal(signal.SIGINT)
    stdout, err = proc.communicate(timeout=300)
    if capturer == "tcpdump":
        got = int(re.search(r"(\d+) packets captured", err).group(1))
        kernel = int(re.search(r"(\d+) packets dropped by kernel", err).group(1))
        out = {"packets": got, "analysed": None, "kernel_drops": kernel, "ring_drops": 0,
               "latency": None, "ring": None}
    else:
        out = json.loads(stdout.strip().splitlines()[-1])
    out["sent"] = int(re.search(r"Successful packets:\s+(\d+)", sent).group(1))
    rate = re.search(r"([\d.]+) pps", sent)
    out["rate"] = float(rate.group(1)) if rate else None
    return out


def fmt_us(v) -> str:
    if v is None:
        return "-"
    return f"{v / 1e6:.2f} s" if v >= 1e6 else f"{v / 1e3:.1f} ms" if v >= 1e3 else f"{v:.0f} us"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="offered load per rate")
    ap.add_argument("--size", type=int, default=200, help="UDP payload bytes")
    ap.add_argument("--rates", default="25000,50000,100000,200000,400000,800000",
                    help="packets/s to try, ascending")
    ap.add_argument("--capturers", default="pcap,afpacket,tcpdump")
    ap.add_argument("--burst-packets", type=int, default=300_000,
                    help="packets of the burst experiment (0: skip it)")
    ap.add_argument("--trace", help="session-heavy trace for the burst (default: generated "
                                    "with ../shared/bench/gen_trace.py)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--interface", help=argparse.SUPPRESS)
    ap.add_argument("--source", help=argparse.SUPPRESS)
    ap.add_argument("--bpf", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        capture_worker(args)
        return 0

    import netns
    problem = netns.unavailable()
    if problem:
        print(f"bench_live: skipped: {problem}")
        return 0
    for tool in ("gcc", "tcpdump"):
        if shutil.which(tool) is None:
            print(f"bench_live: skipped: needs {tool}")
            return 0
    blaster = build_blaster()
    rates = [int(r) for r in args.rates.split(",")]
    results = {}
    with netns.VethPair(tag="L") as net:
        sink = net.popen("client", [sys.executable, "-c", SINK, net.client_ip, "9000"],
                         stdout=subprocess.PIPE, text=True)
        sink.stdout.readline()
        for capturer in args.capturers.split(","):
            best = None
            for rate in rates:
                point = run_point(net, str(blaster), capturer, rate, args.seconds, args.size)
                achieved = point["sent"] / args.seconds
                print(f"{capturer:9s} offered {rate:>8,} pkt/s (sent {achieved:>10,.0f}/s): "
                      f"captured {point['packets']:>9,} of {point['sent']:>9,}, "
                      f"kernel drops {point['kernel_drops']:,}, ring drops {point['ring_drops']:,}"
                      + ("" if point["ok"] else "  <- loss"), flush=True)
                if not point["ok"]:
                    break
                if best is None or achieved > best[1]:
                    # The sender may reach less at a higher offered rate (shared CPUs).
                    best = (rate, achieved, point)
            results[capturer] = best
        bursts = {}
        trace = burst_trace(args) if args.burst_packets else None
        if trace is not None and shutil.which("tcpreplay"):
            for capturer in args.capturers.split(","):
                bursts[capturer] = b = run_burst(net, capturer, trace, args.burst_packets)
                print(f"{capturer:9s} burst of {b['sent']:,} at {b['rate'] or 0:,.0f} pkt/s: "
                      f"captured {b['packets']:,}, kernel drops {b['kernel_drops']:,}, "
                      f"ring drops {b['ring_drops']:,}", flush=True)
        elif args.burst_packets:
            print("bench_live: burst skipped: needs tcpreplay and a trace (--trace or "
                  f"{GENERATOR})")
    print()
    print(f"{'capturer':10s} {'zero-drop rate':>16s} {'latency median':>15s} "
          f"{'p99':>10s} {'p99.9':>10s} {'max':>10s}")
    for capturer, best in results.items():
        if best is None:
            print(f"{capturer:10s} {'< ' + format(rates[0], ','):>16s}")
            continue
        rate, achieved, point = best
        lat = point.get("latency") or {}
        print(f"{capturer:10s} {achieved:>12,.0f}/s {fmt_us(lat.get('median_us')):>15s} "
              f"{fmt_us(lat.get('p99_us')):>10s} {fmt_us(lat.get('p999_us')):>10s} "
              f"{fmt_us(lat.get('max_us')):>10s}"
              + ("  (sender's limit: nothing was lost at the most it could send)"
                 if achieved < 0.9 * rate else
                 "  (highest rate tried)" if rate == rates[-1] else ""))
    print(f"({args.size}-byte UDP payloads, {args.seconds:g} s per rate, default analysers, "
          f"veth pair, {os.cpu_count()} CPUs shared by sender, capture and engine)")
    if bursts:
        print()
        print(f"{'burst':10s} {'sent':>9s} {'pkt/s':>9s} {'captured':>9s} {'analysed':>9s} "
              f"{'kernel':>7s} {'ring':>7s} {'backlog':>8s} {'median':>9s} {'p99':>9s} "
              f"{'p99.9':>9s} {'max':>9s}")
        for capturer, b in bursts.items():
            lat = b.get("latency") or {}
            backlog = (b.get("ring") or {}).get("max_backlog")
            print(f"{capturer:10s} {b['sent']:>9,} {b['rate'] or 0:>9,.0f} {b['packets']:>9,} "
                  f"{'-' if b['analysed'] is None else format(b['analysed'], ','):>9s} "
                  f"{b['kernel_drops']:>7,} {b['ring_drops']:>7,} "
                  f"{'-' if backlog is None else format(backlog, ','):>8s} "
                  f"{fmt_us(lat.get('median_us')):>9s} {fmt_us(lat.get('p99_us')):>9s} "
                  f"{fmt_us(lat.get('p999_us')):>9s} {fmt_us(lat.get('max_us')):>9s}")
        print(f"(tcpreplay --topspeed of {trace.name}: half FTP sessions, half HTTP mice; "
              "the analyser with its default analysers and ring; latency: capture "
              "timestamp to the engine taking the packet)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
