"""Replay on several cores: `analyser replay --workers N`.

Role in the data flow: it runs N engines (source -> ring -> decode -> flows
-> analysers -> sinks), one process each, and merges their sinks.

Theory of operation:

1. Each worker reads every trace file and decodes every packet, then keeps
   only the packets between the host pairs whose hash falls to it
   (analyser/engine.pyx, `host_pair_hash`).  Hashing the pair of addresses,
   not the 5-tuple, keeps every connection between two hosts on one worker,
   so an FTP or GridFTP session meets its data connections there, whatever
   ports they use.  Reading is repeated, analysis (the dear part) is split.
   A file is read into windows that stay in cache, and a packet
   that is plainly TCP (engine.pyx `another_workers`) between another
   worker's hosts is not even copied into the ring: its header is read
   and it is counted as decoded.
2. A connection's uid comes from its key and start time (flows.pyx), so it
   is the same whichever worker sees it: N workers write the same rows as
   one.
3. Each worker writes its logs and events to a directory of its own; the
   parent merges every log (header once, rows in order of `ts`) and
   the events (in order of `ts`) into what the user asked for, and sums the
   workers' counters for the summary.  What every worker counts alike (the
   packets read, decode anomalies, the ring) is taken from worker 0.
4. A worker that fails makes the run fail with its message; nothing is
   merged then.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time

# Counters every worker counts alike, because each reads all the input.
INPUT_COUNTERS = frozenset({
    "packets", "wire_bytes", "captured_bytes", "filtered_out", "decoded", "not_ip",
    "other_transport", "first_ts", "last_ts", "timestamps_out_of_order", "malformed",
    "ring", "fragments_seen", "datagrams_reassembled", "fragment_overlaps",
    "fragment_overlaps_differing", "fragment_datagrams_evicted",
    "fragment_datagrams_timed_out", "other_workers", "tunnelled_packets", "tunnels_too_deep"})
MAX_WORKERS = 64


def merged_stats(all_stats: list[dict], live: bool = False) -> dict:
    """Counters of all workers in one: summed, except what every worker of a
    replay counts alike (the input read); live workers share the input, so
    everything is summed."""
    first = all_stats[0]
    out = {}
    inputs = frozenset() if live else INPUT_COUNTERS
    for key, value in first.items():
        if key == "ring" and live:
            out[key] = {k: (sum(s[key].get(k, 0) for s in all_stats)
                            if isinstance(v, int) and not isinstance(v, bool) else v)
                        for k, v in value.items()}
        elif key not in inputs and isinstance(value, dict):
            # Counters by kind, reason, service, analyser: summed per key.
            keys = {k for s in all_stats for k in s.get(key, {})}
            out[key] = {k: sum(s.get(key, {}).get(k, 0) for s in all_stats) for k in keys}
        elif key in inputs or not isinstance(value, (int, float)) \
                or isinstance(value, bool) or key in ("first_ts", "last_ts"):
            out[key] = value
        else:
            out[key] = sum(s.get(key, 0) for s in all_stats)
    if live:
        stamps = [s[k] for s in all_stats for k in ("first_ts",) if s.get(k) is not None]
        ends = [s[k] for s in all_stats for k in ("last_ts",) if s.get(k) is not None]
        out["first_ts"] = min(stamps) if stamps else None
        out["last_ts"] = max(ends) if ends else None
        out["worker_packets"] = [s["packets"] for s in all_stats]
    out["workers"] = len(all_stats)
    return out


def _ts_of_tsv(line: bytes) -> float:
    try:
        return float(line[:line.find(b"\t")])
    except ValueError:
        return float("inf")


def _ts_of_json(line: bytes) -> float:
    # Rows and events are written with "ts" first: read its number without
    # parsing the line; anything else is parsed whole.
    if line.startswith(b'{"ts":'):
        end = line.find(b",", 6)
        try:
            return float(line[6:end if end > 0 else -1])
        except ValueError:
            pass
    try:
        return float(json.loads(line).get("ts", float("inf")))
    except (ValueError, AttributeError, TypeError):
        return float("inf")


def _in_ts_order(rows: list[bytes], key) -> list[bytes]:
    """`rows` (each worker's in turn, in the order it wrote them) by ts; ties
    keep that order (a stable sort: by worker, then position)."""
    stamps = [key(row) for row in rows]
    return [rows[i] for i in sorted(range(len(rows)), key=stamps.__getitem__)]


def merge_log(parts: list[str], target: str) -> None:
    """Zeek logs of the same path from several workers -> one, rows by ts.
    Read and written as bytes, cut at newlines only: a row holds no newline
    (TSV escapes it, JSON too), but may hold other line separators."""
    headers, rows, close = [], [], None
    json_format = None
    for k, part in enumerate(parts):
        with open(part, "rb") as f:
            lines = f.read().split(b"\n")
        body = []
        for line in lines:
            if line.startswith(b"#"):
                if line.startswith(b"#close"):
                    close = line
                elif k == 0:
                    headers.append(line)
            elif line:
                body.append(line)
        if json_format is None and body:
            json_format = not any(line.startswith(b"#") for line in lines)
        rows.extend(body)
    key = _ts_of_json if json_format else _ts_of_tsv
    with open(target, "wb") as out:
        # Each worker writes rows as connections end; the merged log is in
        # order of ts (ties: worker, then position), like one sorted log.
        out.write(b"".join(line + b"\n" for line in headers))
        out.write(b"".join(line + b"\n" for line in _in_ts_order(rows, key)))
        if close is not None:
            out.write(close + b"\n")


def _merged(parts: list[str], target: str) -> tuple:
    """merge_log() as ("ok", None) or ("error", (exception type name, message))."""
    try:
        merge_log(parts, target)
        return "ok", None
    except BaseException as exc:            # reported by the caller, with its type
        return "error", (type(exc).__name__, "%s: %s" % (target, exc))


def _merge_in_child(parts: list[str], target: str, conn) -> None:
    try:
        conn.send(_merged(parts, target))
    finally:
        conn.close()


def merge_logs(jobs: list[tuple[list[str], str]], n: int) -> None:
    """merge_log(parts, target) for each job, up to `n` at once in processes
    of their own (the biggest first): merging reads, sorts and writes every
    row again, the longest serial step of a run with several workers.
    Raises WorkerError with the first failure, after all have ended."""
    if n < 2 or len(jobs) < 2:
        for parts, target in jobs:
            merge_log(parts, target)
        return
    from multiprocessing.connection import wait
    ctx = multiprocessing.get_context("fork")

    def size(job):
        try:
            return sum(os.path.getsize(part) for part in job[0])
        except OSError:
            return 0                         # its merge will say why
    pending = sorted(jobs, key=size)
    running = {}                             # receiver -> process
    failure = None
    while pending or running:
        while pending and len(running) < n:
            parts, target = pending.pop()
            receiver, sender = ctx.Pipe(False)
            p = ctx.Process(target=_merge_in_child, args=(parts, target, sender), daemon=True)
            try:
                p.start()
            except OSError:
                # No process to be had (fork refused for memory): merged here.
                receiver.close()
                sender.close()
                status, value = _merged(parts, target)
                if status == "error" and failure is None:
                    failure = value
                continue
            sender.close()
            running[receiver] = p
        for receiver in (wait(list(running)) if running else ()):
            p = running.pop(receiver)
            try:
                status, value = receiver.recv()
            except EOFError:
                status, value = "error", ("WorkerError", "a process merging logs died "
                                                         "(exit %s)" % p.exitcode)
            p.join()
            if status == "error" and failure is None:
                failure = value
    if failure is not None:
        raise WorkerError(*failure)


def merge_events(parts: list[str], target) -> None:
    """JSON-lines events of the workers, in order of trace time."""
    events = []
    for part in parts:
        if not os.path.exists(part):
            continue
        with open(part, "rb") as f:
            events.extend(line for line in f.read().split(b"\n") if line)
    target.write(b"".join(line + b"\n" for line in _in_ts_order(events, _ts_of_json))
                 .decode("utf-8", "replace"))


def _run_worker(k: int, n: int, run, conn) -> None:
    """In the child: run(worker=(k, n)) -> (stats, warnings, connections) or an error."""
    try:
        result = run((k, n))
        conn.send(("ok", (result.stats, result.warnings, result.connections,
                          result.wall_seconds, getattr(result, "capture", None),
                          getattr(result, "stopped_by", None), getattr(result, "error", None))))
    except BaseException as exc:            # reported by the parent, with its type
        conn.send(("error", (type(exc).__name__, str(exc))))
    finally:
        conn.close()


def run_workers(n: int, run, logs_dir: str | None, events_path: str | None,
                live: bool = False):
    """Run `run(worker, logs_dir, events_path)` in n processes and merge what
    they wrote.  Returns (stats, warnings, connections, wall seconds,
    [(capture statistics, why it stopped, error) per worker]); raises
    WorkerError with the first failure.  live: each worker sees only its
    share of the input (AF_PACKET fanout), so every counter is summed; SIGINT
    and SIGTERM are passed on to the workers, which stop cleanly."""
    if not 2 <= n <= MAX_WORKERS:
        raise ValueError("--workers must be 1 to %d, not %d" % (MAX_WORKERS, n))
    base = logs_dir if logs_dir is not None else "."
    os.makedirs(base, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=".workers-", dir=base)
    started = time.perf_counter()
    try:
        ctx = multiprocessing.get_context("fork")
        procs = []
        for k in range(n):
            wdir = os.path.join(scratch, str(k))
            os.makedirs(wdir)
            wevents = os.path.join(wdir, "events.json") if events_path else None
            receiver, sender = ctx.Pipe(False)

            def job(worker, wdir=wdir, wevents=wevents):
                return run(worker, wdir if logs_dir is not None else None, wevents)
            p = ctx.Process(target=_run_worker, args=(k, n, job, sender), daemon=True)
            p.start()
            sender.close()
            procs.append((p, receiver))
        previous = {}
        if live:
            def forward(signum, frame):
                for p, _ in procs:
                    if p.is_alive():
                        os.kill(p.pid, signal.SIGTERM)
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, forward)
        results = []
        for p, receiver in procs:
            try:
                results.append(receiver.recv())
            except EOFError:
                results.append(("error", ("WorkerError", "a worker process died (exit %s)"
                                          % p.exitcode)))
            p.join()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        # A worker that failed (a file corrupt halfway) still wrote the rows
        # of what it read: merged first, as one process keeps them.
        failure = next((value for status, value in results if status == "error"), None)
        if logs_dir is not None:
            names = sorted({name for k in range(n)
                            for name in os.listdir(os.path.join(scratch, str(k)))
                            if name.endswith(".log")})
            jobs = []
            for name in names:
                parts = [os.path.join(scratch, str(k), name) for k in range(n)
                         if os.path.exists(os.path.join(scratch, str(k), name))]
                jobs.append((parts, os.path.join(logs_dir, name)))
            merge_logs(jobs, n)
        if events_path:
            parts = [os.path.join(scratch, str(k), "events.json") for k in range(n)]
            if events_path == "-":
                merge_events(parts, sys.stdout)
                sys.stdout.flush()
            else:
                with open(events_path, "w", encoding="utf-8") as out:
                    merge_events(parts, out)
        if failure is not None:
            raise WorkerError(*failure)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    stats = merged_stats([value[0] for _, value in results], live)
    warnings = sorted({w for _, value in results for w in value[1]})
    connections = sum(value[2] for _, value in results)
    captures = [value[4:7] for _, value in results]
    return stats, warnings, connections, time.perf_counter() - started, captures


class WorkerError(Exception):
    """A worker failed: (exception type name, message)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
