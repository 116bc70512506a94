#!/usr/bin/env python3
"""Live-capture benchmark: how fast can traffic arrive before anything is lost?

On a veth pair between two network namespaces made for the run (never any
other interface), a UDP sender of our own (C, sendmmsg, paced) offers
packets at increasing rates from the server's namespace to the client's;
in the client's namespace, on its end of the pair, one of

- ``analyser live --source pcap``      (libpcap through pcapy-ng)
- ``analyser live --source afpacket``  (TPACKET_V3 mmap ring)
- ``tcpdump -w /dev/null``             (the reference: capture only, no analysis)

counts what it saw.  A rate passes when the capture saw every packet sent
and reported no kernel or ring drop.  For each capturer the table gives the
highest passing rate; for the analyser it also gives the per-packet latency
from the kernel's capture timestamp to the end of the engine's processing
(median, p99, max) measured at that rate: the distance between median and
worst case is what a real-time analyser must budget for.

Usage (root; Linux): ``python3 bench/bench_live.py [--seconds 3] [--size 200]
[--rates 25000,50000,...]``.  It needs gcc (for the sender), tcpdump and
iproute2.  Results depend on the machine: the sender, the capture and the
engine share its CPUs.
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
    """Runs inside the client namespace: analyse live for --seconds and print
    the capture statistics and latency as JSON."""
    from analyser.live import live_capture
    result = live_capture(args.interface, source=args.source, duration=args.seconds,
                          bpf="udp", measure_latency=True, handle_signals=True,
                          on_ready=lambda engine, source: print("ready", flush=True))
    c = result.capture
    print(json.dumps({"packets": c.get("packets", 0), "kernel_drops": c.get("kernel_drops", 0),
                      "ring_drops": c.get("ring_drops", 0),
                      "interface_drops": c.get("interface_drops", 0),
                      "latency": result.latency}), flush=True)


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
                                    "--source", capturer, "--seconds",
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
    out["ok"] = (out["packets"] >= sent and not out["kernel_drops"] and not out["ring_drops"])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="offered load per rate")
    ap.add_argument("--size", type=int, default=200, help="UDP payload bytes")
    ap.add_argument("--rates", default="25000,50000,100000,200000,400000,800000",
                    help="packets/s to try, ascending")
    ap.add_argument("--capturers", default="pcap,afpacket,tcpdump")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--interface", help=argparse.SUPPRESS)
    ap.add_argument("--source", help=argparse.SUPPRESS)
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
                best = (rate, achieved, point)
            results[capturer] = best
    print()
    print(f"{'capturer':10s} {'zero-drop rate':>16s} {'latency median':>15s} "
          f"{'p99':>10s} {'max':>10s}")
    for capturer, best in results.items():
        if best is None:
            print(f"{capturer:10s} {'< ' + format(rates[0], ','):>16s}")
            continue
        rate, achieved, point = best
        lat = point.get("latency") or {}
        fmt = lambda v: "-" if v is None else f"{v:,.0f} us"
        print(f"{capturer:10s} {achieved:>12,.0f}/s {fmt(lat.get('median_us')):>15s} "
              f"{fmt(lat.get('p99_us')):>10s} {fmt(lat.get('max_us')):>10s}"
              + ("  (sender's limit: nothing was lost at the most it could send)"
                 if achieved < 0.9 * rate else
                 "  (highest rate tried)" if rate == rates[-1] else ""))
    print(f"({args.size}-byte UDP payloads, {args.seconds:g} s per rate, veth pair, "
          f"{os.cpu_count()} CPUs shared by sender, capture and engine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
