#!/usr/bin/env python3
"""Benchmark: how fast does `analyser replay` build conn records, next to libpcap?

Steps:
1. Generate (or reuse) the synthetic trace of bench/gen_trace.py (default 600 MB,
   --quick: 50 MB) and its ground truth.
2. Build and run the reference, bench/pcap_loop.c: a bare libpcap read loop.
3. Run the engine: `python -m analyser replay TRACE --logs TMPDIR` (checksums
   verified, as by default: the generator writes correct ones).
4. Each program runs --runs times (default 3) and the best wall-clock time of the
   whole process counts (so the file is in the page cache and start-up costs are
   included for both).  If the engine prints a summary line, it is shown too.
5. Print a table: seconds, packets/s, Gbit/s (all frame bytes including link
   headers, i.e. the sum of wire lengths * 8 / seconds) and the ratio of the
   engine's time to libpcap's.
6. Check the engine's conn.log against the ground truth: one row per flow with the
   generator's packet counts per direction ("correct: N/N flows").  A benchmark of
   a wrong engine is worthless, so a mismatch makes the exit status non-zero.

Plain Python and gcc only.  `make bench` runs this with the project's venv.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import gen_trace  # noqa: E402  (sibling module, not a package)

LOOP_SRC = os.path.join(HERE, "pcap_loop.c")
LOOP_BIN = os.path.join(gen_trace.OUT_DIR, "pcap_loop")


def cpu_info():
    model, count = "unknown CPU", 0
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "processor":
                    count += 1
                elif key in ("model name", "Model", "cpu model") and model == "unknown CPU":
                    model = value.strip()
    except OSError:
        pass
    return model, count or os.cpu_count() or 0


def build_loop():
    if (os.path.exists(LOOP_BIN)
            and os.path.getmtime(LOOP_BIN) >= os.path.getmtime(LOOP_SRC)):
        return LOOP_BIN
    if not shutil.which("gcc"):
        raise SystemExit("gcc is needed to build the libpcap reference loop")
    os.makedirs(os.path.dirname(LOOP_BIN), exist_ok=True)
    cmd = ["gcc", "-O2", LOOP_SRC, "-lpcap", "-o", LOOP_BIN]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (is libpcap-dev installed?):\n{out.stderr}")
    return LOOP_BIN


def timed(cmd, timeout, cwd=ROOT):
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return time.perf_counter() - t0, out


def run_loop(trace, runs):
    best, line = None, ""
    for _ in range(runs):
        secs, out = timed([build_loop(), trace], timeout=600)
        if out.returncode != 0:
            raise SystemExit(f"pcap_loop failed: {out.stderr}")
        if best is None or secs < best:
            best, line = secs, out.stdout.strip()
    fields = dict(kv.split("=", 1) for kv in line.split())
    return best, fields


# The engine's own summary, if it prints one: the lines mentioning packets, and
# its elapsed time, preferably from an "in 1.23 s" phrase.
IN_SECONDS = re.compile(r"\bin\s+(\d+(?:\.\d+)?)\s*(?:s|sec|secs|seconds)\b")
ANY_SECONDS = re.compile(r"(\d+(?:\.\d+)?)\s*(?:s|sec|secs|seconds)\b")


def engine_summary(text):
    lines = [" ".join(ln.split()) for ln in text.splitlines() if "packet" in ln.lower()]
    if not lines:
        return None, None
    secs = None
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            for k in ("seconds", "elapsed", "duration", "wall_seconds", "elapsed_s"):
                if isinstance(obj.get(k), (int, float)):
                    secs = float(obj[k])
                    break
        else:
            m = IN_SECONDS.search(line)
            if m:
                secs = float(m.group(1))
    if secs is None:
        for line in lines:
            m = ANY_SECONDS.search(line)
            if m:
                secs = float(m.group(1))
                break
    return " | ".join(lines), (secs or None)   # "0.00 s" is no usable timer


def run_engine(trace, runs, extra_args):
    """Best wall time, the engine's own summary, and the conn.log of the best run."""
    best = None
    keep = tempfile.mkdtemp(prefix="bench-logs-")
    for i in range(runs):
        logdir = tempfile.mkdtemp(prefix="bench-run-")
        cmd = [sys.executable, "-m", "analyser", "replay", trace, "--logs", logdir,
               *extra_args]
        secs, out = timed(cmd, timeout=3600)
        if out.returncode != 0:
            shutil.rmtree(logdir, ignore_errors=True)
            shutil.rmtree(keep, ignore_errors=True)
            tail = "\n".join((out.stderr or out.stdout).splitlines()[-15:])
            return None, f"{' '.join(cmd)} exited {out.returncode}:\n{tail}", None
        if best is None or secs < best[0]:
            summary = engine_summary(out.stdout + "\n" + out.stderr)
            best = (secs, summary)
            shutil.rmtree(keep, ignore_errors=True)
            os.replace(logdir, keep)
        else:
            shutil.rmtree(logdir, ignore_errors=True)
    return best, None, keep


def read_conn_log(path):
    """conn.log rows as dicts; Zeek TSV or JSON lines."""
    rows, fields, sep = [], None, "\t"
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            if line.startswith("{"):
                rows.append(json.loads(line))
            elif line.startswith("#separator"):
                sep = line.split(" ", 1)[1].encode().decode("unicode_escape")
            elif line.startswith("#fields"):
                fields = line.split(sep)[1:]
            elif not line.startswith("#"):
                rows.append(dict(zip(fields, line.split(sep))))
    return rows


def as_int(v):
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def verify(conn_log, truth):
    """Compare conn.log with the ground truth; returns (report lines, all correct)."""
    names = truth["flow_fields"]
    flows = {}
    for rec in truth["flows"]:
        d = dict(zip(names, rec))
        flows[(d["proto"], d["orig_h"], d["orig_p"], d["resp_h"], d["resp_p"])] = d
    seen = {}
    extra, reversed_rows = 0, 0
    for r in read_conn_log(conn_log):
        proto = r.get("proto")
        if proto not in ("tcp", "udp"):
            continue
        key = (proto, r["id.orig_h"], as_int(r["id.orig_p"]), r["id.resp_h"],
               as_int(r["id.resp_p"]))
        pk = (as_int(r.get("orig_pkts")), as_int(r.get("resp_pkts")))
        by = (as_int(r.get("orig_bytes")), as_int(r.get("resp_bytes")))
        if key not in flows:
            rkey = (proto, key[3], key[4], key[1], key[2])
            if rkey not in flows:
                extra += 1
                continue
            # Right flow, wrong originator: count it but say so.
            key, pk, by = rkey, pk[::-1], by[::-1]
            reversed_rows += 1
        seen.setdefault(key, []).append((pk, by))

    correct = bytes_ok = bytes_unset = 0
    problems = []
    for key, d in flows.items():
        got = seen.get(key, [])
        want_pk = (d["orig_pkts"], d["resp_pkts"])
        if len(got) == 1 and got[0][0] == want_pk:
            correct += 1
        elif len(problems) < 5:
            problems.append(f"  {key}: rows {[g[0] for g in got]}, want packets {want_pk}")
        if len(got) == 1 and got[0][1] == (None, None):
            # Zeek leaves orig_bytes/resp_bytes unset for zero-duration
            # connections (one packet); not a mismatch.
            bytes_unset += 1
        elif len(got) == 1 and got[0][1] == (d["orig_payload"], d["resp_payload"]):
            bytes_ok += 1
    n = len(flows)
    lines = [f"correct: {correct}/{n} flows (one conn.log row each, packets per "
             f"direction as generated)",
             f"payload bytes match (orig_bytes/resp_bytes): {bytes_ok}/{n - bytes_unset} "
             f"flows that set them ({bytes_unset} leave them unset)"]
    if reversed_rows:
        lines.append(f"rows with originator and responder swapped: {reversed_rows}")
    if extra:
        lines.append(f"conn.log rows for flows that are not in the trace: {extra}")
    if problems:
        lines.append("first mismatches:")
        lines += problems
    return lines, correct == n and not extra


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=600)
    ap.add_argument("--quick", action="store_true", help="a 50 MB trace")
    ap.add_argument("--flows", type=int, default=5000)
    ap.add_argument("--udp-flows", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3, help="runs per program; best counts")
    ap.add_argument("--engine-arg", action="append", default=[],
                    help="extra argument for `analyser replay` (repeatable)")
    a = ap.parse_args(argv)
    size = 50 if a.quick else a.size_mb

    model, cores = cpu_info()
    print(f"CPU: {model}, {cores} logical cores")
    print(f"Python {sys.version.split()[0]} ({sys.executable})")
    trace, truth_path = gen_trace.ensure_trace(size, a.flows, a.udp_flows, a.seed)
    with open(truth_path) as f:
        truth = json.load(f)
    packets, wire = truth["packets"], truth["wire_bytes"]
    file_mb = os.path.getsize(trace) / 1e6
    name = os.path.basename(trace)

    loop_secs, loop = run_loop(trace, a.runs)
    if int(loop["packets"]) != packets or int(loop["wire_bytes"]) != wire:
        raise SystemExit(f"libpcap sees {loop['packets']} packets / {loop['wire_bytes']} "
                         f"bytes, the generator wrote {packets} / {wire}: corrupt trace?")
    best, error, logdir = run_engine(trace, a.runs, a.engine_arg)

    def row(label, secs, ratio):
        if secs is None:
            return f"{name:<44} {file_mb:>8.1f} {packets:>10,}  {label:<34} {'failed':>9}"
        return (f"{name:<44} {file_mb:>8.1f} {packets:>10,}  {label:<34} {secs:>9.3f} "
                f"{packets / secs:>12,.0f} {wire * 8 / secs / 1e9:>8.2f} {ratio:>11}")

    print()
    print(f"{'trace':<44} {'size MB':>8} {'packets':>10}  {'program':<34} {'seconds':>9} "
          f"{'packets/s':>12} {'Gbit/s':>8} {'vs libpcap':>11}")
    print(row("libpcap read loop (C, -O2)", loop_secs, "1.0x"))
    ok = False
    if best is None:
        print(row("analyser replay (conn records only)", None, ""))
        print()
        print(f"engine failed: {error}")
    else:
        secs, (summary, own_secs) = best
        print(row("analyser replay (conn records only)", secs, f"{secs / loop_secs:.1f}x"))
        print()
        print(f"times are the best of {a.runs} runs, whole process (start-up included); "
              f"libpcap loop's own timer: {float(loop['seconds']):.3f} s")
        if summary:
            extra = (f" -> {packets / own_secs:,.0f} packets/s, "
                     f"{wire * 8 / own_secs / 1e9:.2f} Gbit/s by its own timer"
                     if own_secs else "")
            print(f"engine summary: {summary}{extra}")
        conn_log = os.path.join(logdir, "conn.log")
        if os.path.exists(conn_log):
            lines, ok = verify(conn_log, truth)
            print("\n".join(lines))
        else:
            print(f"correct: 0/{len(truth['flows'])} flows (no conn.log written)")
        shutil.rmtree(logdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
