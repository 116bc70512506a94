"""Run every fuzz target (or some) for N seconds each, one after another.

    python fuzz/run.py --seconds 300                 # all targets, 5 min each
    python fuzz/run.py --seconds 60 --targets ftp,decode
    python fuzz/run.py --list

Each target runs under atheris (fuzz/atheris_main.py) with its corpus in
WORKDIR/corpus/TARGET (seeded from the traces on its first run, kept between
runs so coverage builds up) and its crashing inputs in WORKDIR/crashes/TARGET.
After a crash the target is started again for the rest of its time (at most
MAX_RESTARTS times).  At the end a table: seconds, executions, libFuzzer's
`cov:` and `ft:` figures, corpus size and crashes per target; also written
to WORKDIR/summary.json.  Exit status 1 when anything crashed.

A crash becomes a regression test by copying its file to
tests/fuzz_cases/TARGET/ (tests/test_fuzz_cases.py runs every file there
through its target).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MAX_RESTARTS = 5
PER_INPUT_TIMEOUT = 10          # seconds: a hang is a crash
RSS_LIMIT_MB = 2048
MAX_LEN = {"pcap_reader": 200_000, "replay": 200_000, "decode": 100_000}
DEFAULT_MAX_LEN = 40_000

STATUS = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)")
WRITTEN = re.compile(r"Test unit written to (\S+)")
EXECUTED = re.compile(r"stat::number_of_executed_units: (\d+)")


def seed(target: str, corpus: Path) -> int:
    from fuzz.targets import TARGETS
    corpus.mkdir(parents=True, exist_ok=True)
    if any(corpus.iterdir()):
        return 0
    count = 0
    for i, data in enumerate(TARGETS[target].seeds()):
        (corpus / ("seed-%04d" % i)).write_bytes(data)
        count += 1
    return count


def run_target(target: str, seconds: float, workdir: Path, python: str) -> dict:
    corpus = workdir / "corpus" / target
    crashes = workdir / "crashes" / target
    crashes.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "logs" / (target + ".log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    seeds = seed(target, corpus)
    summary = {"target": target, "seconds": 0.0, "executions": 0, "cov": 0, "ft": 0,
               "corpus": 0, "crashes": [], "seeds": seeds}
    deadline = time.monotonic() + seconds
    with open(log_path, "a") as log:
        for attempt in range(MAX_RESTARTS + 1):
            left = int(deadline - time.monotonic())
            if left < 5:
                break
            before = set(os.listdir(crashes))
            started = time.monotonic()
            proc = subprocess.run(
                [python, "-m", "fuzz.atheris_main", target, "-max_total_time=%d" % left,
                 "-timeout=%d" % PER_INPUT_TIMEOUT, "-rss_limit_mb=%d" % RSS_LIMIT_MB,
                 "-max_len=%d" % MAX_LEN.get(target, DEFAULT_MAX_LEN),
                 "-artifact_prefix=%s/" % crashes, "-print_final_stats=1", str(corpus)],
                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                errors="replace")
            summary["seconds"] += time.monotonic() - started
            log.write(proc.stdout)
            for m in STATUS.finditer(proc.stdout):
                summary["cov"] = max(summary["cov"], int(m.group(2)))
                summary["ft"] = max(summary["ft"], int(m.group(3)))
                summary["corpus"] = int(m.group(4))
            executed = EXECUTED.findall(proc.stdout)
            if executed:
                summary["executions"] += int(executed[-1])
            new = sorted(set(os.listdir(crashes)) - before)
            if proc.returncode == 0 and not new:
                break
            written = WRITTEN.findall(proc.stdout)
            files = sorted(set([str(crashes / f) for f in new] + written))
            lines = proc.stdout.splitlines()
            start = max((i for i, line in enumerate(lines) if "Uncaught Python exception"
                         in line or "ERROR: libFuzzer" in line), default=len(lines))
            tail = [line for line in lines[start:start + 30] if line.strip()][:20]
            summary["crashes"].append({"files": files, "returncode": proc.returncode,
                                       "tail": tail})
            if len(summary["crashes"]) > 1 and summary["crashes"][-2]["tail"][:3] == tail[:3]:
                break                   # the same crash again: found, nothing new to learn
    summary["seconds"] = round(summary["seconds"], 1)
    return summary


def main(argv=None) -> int:
    from fuzz.targets import TARGETS
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60, help="seconds per target")
    p.add_argument("--targets", default="", help="comma-separated (default: all)")
    p.add_argument("--workdir", default=os.environ.get("FUZZ_WORKDIR", "/tmp/analyser-fuzz"))
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--list", action="store_true", help="list the targets and exit")
    args = p.parse_args(argv)
    if args.list:
        for name, target in TARGETS.items():
            print("%-16s %s" % (name, target.doc))
        return 0
    names = [t for t in args.targets.split(",") if t] or list(TARGETS)
    unknown = [t for t in names if t not in TARGETS]
    if unknown:
        p.error("unknown target(s) %s (known: %s)" % (", ".join(unknown), ", ".join(TARGETS)))
    workdir = Path(args.workdir)
    results = []
    for name in names:
        r = run_target(name, args.seconds, workdir, args.python)
        results.append(r)
        print("%-16s %7.0fs %10d execs  cov %6d  ft %6d  corpus %5d  crashes %d"
              % (name, r["seconds"], r["executions"], r["cov"], r["ft"], r["corpus"],
                 len(r["crashes"])), flush=True)
        for crash in r["crashes"]:
            print("    crash: %s" % (" ".join(crash["files"]) or "(no file)"), flush=True)
            for line in crash["tail"][:6]:
                print("      " + line, flush=True)
    path = workdir / "summary.json"
    previous = json.loads(path.read_text()) if path.exists() else []
    path.write_text(json.dumps(previous + [{"at": time.strftime("%Y-%m-%d %H:%M:%S"),
                                            "results": results}], indent=1))
    return 1 if any(r["crashes"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
