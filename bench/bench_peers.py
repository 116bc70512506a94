#!/usr/bin/env python3
"""The analyser next to its peers, in one run on the same files: bench/RESULTS.md.

Steps:
1. `../shared/bench/run_peers.sh` (with ONLY= a cheap peer) installs what the
   peers need (libnids, tshark, nfstream in its own venv), builds the C
   references and generates the two benchmark traces (mix-1g, mice-200m) into
   bench/out/peers/ (gitignored).
   An HTTP-heavy trace (gen_trace.py, web-like bodies) and a TLS-heavy one
   (traces/gen_tls_trace.py) are generated beside them.
2. `runbench.py` from the same place times, RUNS times each (default 3), the
   floor (`pcap_noop -f`: libpcap plus a C 5-tuple table), libnids, nfstream
   (flows, one metering process), tshark (`-z conv,tcp`) and the analyser:
   connection records only, defaults (FTP/GridFTP on), and defaults with
   `--workers 2`.
3. Memory: a trace of one million SYNs from distinct sources within 4 s (so
   a million connections are open at once) is replayed with a 1 GiB flow
   budget; the peak RSS per million concurrent connections is reported.
4. RESULTS.md gets the table (median wall time of the whole process, packets/s,
   Gbit/s, peak RSS, ratio to the floor) and the targets, each marked met or
   missed with the figure that decides it.

    python3 bench/bench_peers.py            # RUNS=3, both traces
    RUNS=1 python3 bench/bench_peers.py     # quicker
"""
from __future__ import annotations

import json
import os
import re
import statistics
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED_BENCH = os.path.join(os.path.dirname(ROOT), "shared", "bench")
WORK = os.path.join(HERE, "out", "peers")
ANALYSER = os.path.join(ROOT, ".venv", "bin", "analyser")
LOGS = os.path.join(WORK, "logs")

PEERS = "floor C,libnids,nfstream n_dissections=0 n_meters=1,tshark"
FLOOR = "floor C: pcap_noop -f"
ROWS = {
    "analyser conn records": "--no-analyser all",
    "analyser defaults": "",
    "analyser defaults --workers 2": "--workers 2",
}


def main() -> int:
    if not os.path.isdir(SHARED_BENCH):
        print("bench_peers: %s is not there; nothing to compare with" % SHARED_BENCH,
              file=sys.stderr)
        return 0
    runs = os.environ.get("RUNS", "3")
    os.makedirs(WORK, exist_ok=True)
    env = dict(os.environ, BENCH_DIR=WORK, RUNS="1", ONLY="floor A")
    subprocess.run(["bash", os.path.join(SHARED_BENCH, "run_peers.sh")], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    traces = [os.path.join(WORK, "traces", t) for t in ("mice-200m.pcap", "mix-1g.pcap")]
    traces += application_traces()
    cmd = ["python3", os.path.join(WORK, "runbench.py"), "--runs", runs,
           "--json", os.path.join(WORK, "results.json"), "--only",
           PEERS + "," + ",".join(ROWS)]
    for name, options in ROWS.items():
        cmd += ["--extra", "%s=%s replay {trace} --logs %s -q %s" % (name, ANALYSER, LOGS,
                                                                     options)]
    started = time.time()
    subprocess.run(cmd + traces, cwd=WORK, check=True)
    with open(os.path.join(WORK, "results.json")) as f:
        results = json.load(f)
    memory = concurrent_memory()
    text = render(results, time.time() - started, memory)
    with open(os.path.join(HERE, "RESULTS.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


# Application-heavy traces (issue: HTTP/TLS analysers within 2x of connection
# records): web-like HTTP keep-alive (bodies log-uniform 200 B .. 256 KiB),
# and TLS 1.2/1.3 sessions with 8 request/response record pairs each.
HTTP_TRACE = ("http-web.pcap", ["--size-mb", "400", "--flows", "8000", "--seed", "4",
                                "--elephants", "0", "--ftp-frac", "0", "--mouse-max-kb", "256",
                                "--http-reqs-max", "3", "--retrans", "0.001", "--reorder",
                                "0.001", "--ipv6-frac", "0.02", "--vlan-frac", "0.05",
                                "--rst-frac", "0.01", "--no-truth"])
TLS_TRACE = ("tls-web.pcap", ["--connections", "20000", "--records", "8", "--seed", "1"])


def application_traces() -> list[str]:
    """Generate (once) the HTTP-heavy and TLS-heavy traces; their paths."""
    http = os.path.join(WORK, "traces", HTTP_TRACE[0])
    if not os.path.exists(http):
        subprocess.run(["python3", os.path.join(SHARED_BENCH, "gen_trace.py"), "-o", http,
                        *HTTP_TRACE[1]], check=True, stdout=subprocess.DEVNULL)
    tls = os.path.join(WORK, "traces", TLS_TRACE[0])
    if not os.path.exists(tls):
        subprocess.run(["python3", os.path.join(ROOT, "traces", "gen_tls_trace.py"), tls,
                        *TLS_TRACE[1]], check=True, stdout=subprocess.DEVNULL)
    return [http, tls]


SYN_FLOWS = 1_000_000


def syn_trace(path: str) -> None:
    """One SYN from each of SYN_FLOWS sources to one server, within 4 s."""
    ip_hdr = struct.Struct("!BBHHHBBH4s4s")
    out = [struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1)]
    for i in range(SYN_FLOWS):
        src = struct.pack("!I", 0x0a000000 + i + 1)
        ip = ip_hdr.pack(0x45, 0, 40, i & 0xffff, 0, 64, 6, 0, src, b"\xc6\x12\x00\x01")
        tcp = struct.pack("!HHIIBBHHH", 1024 + i % 60000, 80, i, 0, 0x50, 0x02, 65535, 0, 0)
        frame = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + tcp
        ts_us = 1_700_000_000_000_000 + i * 4
        out.append(struct.pack("<IIII", ts_us // 1_000_000, ts_us % 1_000_000,
                               len(frame), len(frame)) + frame)
    with open(path, "wb") as f:
        f.write(b"".join(out))


def concurrent_memory() -> tuple[int, float] | None:
    """(connections open at once, peak RSS MiB) replaying the SYN trace."""
    path = os.path.join(WORK, "traces", "syn-1m.pcap")
    if not os.path.exists(path):
        syn_trace(path)
    # This child's own peak (wait4), not the largest of all children so far:
    # a peer run earlier (tshark) may have taken more.
    p = subprocess.Popen([ANALYSER, "replay", path, "--logs", LOGS, "--no-analyser", "all",
                          "--flow-memory", "1024"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    stderr = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    peak = usage.ru_maxrss
    found = re.search(r"at most ([\d,]+) at once", stderr)
    if p.returncode != 0 or not found:
        print("bench_peers: memory run failed: %s" % stderr[-500:], file=sys.stderr)
        return None
    return int(found.group(1).replace(",", "")), peak / 1024


def medians(results: dict) -> dict:
    """{trace: {peer: (wall, rss MiB, packets, bytes)}} over the runs that succeeded."""
    out = {}
    for trace, r in results.items():
        out[trace] = {}
        for name, runs in r["peers"].items():
            ok = [x for x in runs if x.get("rc") == 0 and "wall" in x]
            if ok:
                out[trace][name] = (statistics.median(x["wall"] for x in ok),
                                    max(x.get("rss_kb", 0) for x in ok) / 1024,
                                    r["packets"], r["captured_bytes"])
    return out


def render(results: dict, seconds: float, memory) -> str:
    m = medians(results)
    lines = ["# Benchmark results", "",
             "Written by `bench/bench_peers.py` (`make bench`) on %s, %d cores; "
             "every figure is the median of the runs of one invocation (%.0f s), "
             "whole process, files in the page cache." % (
                 subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name: *//p'"],
                                capture_output=True, text=True).stdout.strip() or "?",
                 os.cpu_count() or 0, seconds), ""]
    for trace, peers in m.items():
        r = results[trace]
        lines += ["## %s: %s packets, %.0f B/packet" % (
            trace, format(r["packets"], ","), r["captured_bytes"] / r["packets"]), "",
            "| program | wall s | M packets/s | Gbit/s | peak RSS MiB | time / floor C |",
            "|---|---:|---:|---:|---:|---:|"]
        floor = peers.get(FLOOR)
        for name, (wall, rss, packets, size) in peers.items():
            ratio = "%.1fx" % (wall / floor[0]) if floor else "-"
            lines.append("| %s | %.2f | %.3f | %.2f | %.0f | %s |" % (
                name, wall, packets / wall / 1e6, size * 8 / wall / 1e9, rss, ratio))
        lines.append("")
    if memory:
        lines += ["## Memory", "",
                  "One SYN from each of %s sources within 4 s (`--flow-memory 1024`, "
                  "connection records): %s connections open at once, peak RSS %.0f MiB "
                  "(the flow table takes %d bytes a connection)." % (
                      format(SYN_FLOWS, ","), format(memory[0], ","), memory[1],
                      bytes_per_flow()), ""]
    lines += ["## Targets", ""] + targets(m, memory) + [""]
    return "\n".join(lines)


def bytes_per_flow() -> int:
    p = subprocess.run([os.path.join(ROOT, ".venv", "bin", "python"), "-c",
                        "from analyser.flows import FlowTable; print(FlowTable.bytes_per_flow())"],
                       capture_output=True, text=True, cwd=ROOT)
    return int(p.stdout.strip() or 0)


def targets(m: dict, memory=None) -> list[str]:
    out = []

    def row(ok: bool | None, text: str) -> None:
        out.append("- %s %s" % ({True: "**met**", False: "**missed**", None: "n/a"}[ok], text))

    mice = m.get("mice-200m.pcap", {})
    mix = m.get("mix-1g.pcap", {})
    conn = mice.get("analyser conn records")
    floor = mice.get(FLOOR)
    if conn and floor:
        pps = conn[2] / conn[0]
        row(pps >= 2e6 and conn[0] <= 2 * floor[0],
            "connection records on mice-200m: %.2f M packets/s (target 2), %.1fx the floor "
            "(target 2x)" % (pps / 1e6, conn[0] / floor[0]))
    d = mice.get("analyser defaults")
    if d:
        row(d[2] / d[0] >= 0.5e6, "defaults on mice-200m: %.3f M packets/s (target 0.5)"
            % (d[2] / d[0] / 1e6))
    d, c = mix.get("analyser defaults"), mix.get("analyser conn records")
    if d and c:
        gbps = d[3] * 8 / d[0] / 1e9
        row(gbps >= 12 and d[0] <= 1.3 * c[0],
            "defaults on mix-1g: %.1f Gbit/s (target 12), %.2fx connection records "
            "(target 1.3x)" % (gbps, d[0] / c[0]))
    for trace in (HTTP_TRACE[0], TLS_TRACE[0]):
        d, c = m.get(trace, {}).get("analyser defaults"), m.get(trace, {}).get(
            "analyser conn records")
        if d and c:
            row(d[0] <= 2 * c[0], "defaults on %s: %.2fx connection records (target 2x), "
                "%.3f M packets/s, %.1f Gbit/s" % (trace[:-5], d[0] / c[0], d[2] / d[0] / 1e6,
                                                   d[3] * 8 / d[0] / 1e9))
    for trace, peers in (("mice-200m", mice), ("mix-1g", mix)):
        one, two = peers.get("analyser defaults"), peers.get("analyser defaults --workers 2")
        if one and two:
            row(one[0] / two[0] >= 1.7, "--workers 2 on %s: %.2fx one worker (target 1.7x)"
                % (trace, one[0] / two[0]))
    if memory:
        per_million = memory[1] / 1024 * 1e6 / memory[0]
        row(per_million <= 1.0, "peak memory: %.2f GiB per million concurrent connections "
            "(target 1)" % per_million)
    return out


if __name__ == "__main__":
    sys.exit(main())
