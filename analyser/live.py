"""Live capture: an interface, instead of trace files, in front of the engine.

Role in the data flow::

    interface ──► live source (ringbuf.livepcap: libpcap, or ringbuf.afpacket:
    TPACKET_V3 mmap ring), in a capture thread of its own ──► Engine ring
    (policy "drop") ──► decode ──► flows ──► analysers ──► sinks (conn.log, events)

Capture and analysis are decoupled, as on a DAG card: the capture thread
(compiled, without the GIL) drains the kernel into the ring as fast as
packets arrive whatever the engine is doing; the engine analyses from the
ring's processed pointer.  A burst the analysers cannot keep up with waits in
the ring (it costs memory, not packets); only when the ring has no room left
is a packet dropped, the newest one, and counted as a ring drop.  At the end
(SIGINT/SIGTERM, --duration, --count) the capture stops and what is already
in the ring is analysed before the final logs, for at most `drain_timeout`
seconds.  The delay from each packet's capture timestamp to the moment the
engine takes it is measured (a histogram in C) and summarised.

Sizing (defaults): the ring holds DEFAULT_RING_MB MB of packet bytes plus
one 34-byte record header per RING_BYTES_PER_RECORD bytes (13% more): 2 s
of a saturated 1 Gbit/s link, or about a million packets (5 s at 200,000
packets/s).  The kernel side (libpcap's buffer, the AF_PACKET block ring)
is DEFAULT_BUFFER_MB MB: it only has to cover the capture thread's
scheduling delays.

`live_capture()` opens the source (this needs root or CAP_NET_RAW), then,
if asked, drops privileges to another user (as tcpdump -Z: setgroups,
setgid, setuid) *before* any log file is created, so the logs belong to that
user.  Every deferred import (analyser.deferred) is done just before the
drop: a Python only root can read would refuse them afterwards.  It runs
the engine until the capture ends (`count` packets), its `duration`
passes, or SIGINT/SIGTERM arrives; every one of those is a clean end: open
connections are flushed to the logs and the result carries the kernel's
and the ring's drop counters.

Differences from replay: the ring drops (and counts) what it cannot take
instead of making the source wait; when the interface is idle, flow timers
run on the wall clock (the engine's `live` mode), so a silent connection
still times out; the ring is larger, because retained bytes must absorb a
burst without dropping.
"""
from __future__ import annotations

import os
import pwd
import signal
import sys
import time
from collections.abc import Callable

from analyser.deferred import load_deferred
from analyser.engine import Engine
from analyser.replay import DEFAULT_FLOW_MEMORY_MB, ReplayResult, Sinks, flow_capacity_for
from ringbuf.livepcap import LiveCaptureError, PcapLiveSource
from ringbuf.ring import MAXIMUM_SNAPLEN

SOURCES = ("pcap", "afpacket")
DEFAULT_SNAPLEN = int(MAXIMUM_SNAPLEN)
DEFAULT_BUFFER_MB = 64
DEFAULT_RING_MB = 256
# One record slot per this many bytes of ring: small packets (the worst case
# for the record array) average 150-250 bytes on real links.
RING_BYTES_PER_RECORD = 256
MIN_RING_RECORDS = 1024
DEFAULT_DRAIN_TIMEOUT = 10.0


class LiveResult(ReplayResult):
    """A ReplayResult plus the capture side: source statistics (kernel and
    ring drops), why the capture stopped, and an error that ended it early."""


def open_source(kind: str, interface: str, *, bpf: str | None = None,
                snaplen: int = DEFAULT_SNAPLEN, promisc: bool = True,
                buffer_mb: float = DEFAULT_BUFFER_MB, count: int = 0,
                block_timeout_ms: int = 10, block_kb: int = 1024,
                fanout_group: int | None = None, fanout_by: str = "flow"):
    """Open a live source of `kind` ("pcap" or "afpacket").  Raises
    LiveCaptureError (no interface, no permission ...) or ValueError (a
    filter that does not compile, a bad size)."""
    buffer_bytes = int(buffer_mb * (1 << 20))
    if kind == "pcap":
        if fanout_group is not None:
            raise ValueError("--fanout needs --source afpacket")
        return PcapLiveSource(interface, snaplen=snaplen, promisc=promisc,
                              buffer_bytes=buffer_bytes, timeout_ms=block_timeout_ms,
                              bpf=bpf, max_packets=count)
    if kind == "afpacket":
        if not sys.platform.startswith("linux"):
            raise LiveCaptureError("the afpacket source needs Linux (use --source pcap)")
        from ringbuf.afpacket import AfPacketSource
        block_size = block_kb * 1024
        return AfPacketSource(interface, snaplen=snaplen, promisc=promisc,
                              buffer_bytes=buffer_bytes, block_size=block_size,
                              retire_timeout_ms=block_timeout_ms, bpf=bpf,
                              fanout_group=fanout_group, max_packets=count,
                              fanout_by=fanout_by)
    raise ValueError(f"unknown source {kind!r} (known: {', '.join(SOURCES)})")


def lookup_user(name: str):
    """(uid, gid) of a user to drop privileges to; ValueError when unknown."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        if name.isdigit():
            return int(name), int(name)
        raise ValueError(f"no such user '{name}' (for --drop-privileges)") from None
    return entry.pw_uid, entry.pw_gid


def drop_privileges(name: str, uid: int, gid: int) -> None:
    """Become `uid`/`gid` for good (as tcpdump -Z).  The open capture socket
    stays usable; nothing new can be opened with root's rights."""
    try:
        if hasattr(os, "initgroups") and not name.isdigit():
            os.initgroups(name, gid)
        else:
            os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    except OSError as exc:
        raise LiveCaptureError(f"cannot drop privileges to '{name}': {exc.strerror}") from None
    if uid != 0 and os.geteuid() == 0:
        raise LiveCaptureError(f"cannot drop privileges to '{name}'")


def capture_stats(source) -> dict:
    try:
        return source.stats()
    except Exception as exc:            # the interface may be gone: report what we have
        return {"error": str(exc)}


def live_capture(interface: str, *, source: str = "pcap", bpf: str | None = None,
                 snaplen: int = DEFAULT_SNAPLEN, promisc: bool = True,
                 buffer_mb: float = DEFAULT_BUFFER_MB, duration: float | None = None,
                 count: int = 0, block_timeout_ms: int = 10, block_kb: int = 1024,
                 fanout_group: int | None = None, fanout_by: str = "flow",
                 drop_user: str | None = None,
                 logs_dir: str | None = None, log_format: str = "tsv",
                 ignore_checksums: bool = True, timeouts: dict | None = None,
                 flow_memory_mb: float = DEFAULT_FLOW_MEMORY_MB,
                 on_connection: Callable[[dict], None] | None = None,
                 status: Callable | None = None, analysers: list | None = None,
                 monitor=None, on_event: Callable[[dict], None] | None = None,
                 handle_signals: bool = True, measure_latency: bool = False,
                 on_ready: Callable | None = None, ring_mb: float = DEFAULT_RING_MB,
                 drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
                 **engine_options) -> LiveResult:
    """Capture on `interface` and analyse until `count` packets, `duration`
    seconds, or SIGINT/SIGTERM.  Returns a LiveResult; `result.capture` holds
    the source's statistics (kernel_received, kernel_drops, interface_drops,
    ring_drops ...).  `status(engine, source)` is called about once a second;
    `on_ready(engine, source)` once the capture is open (tests, benchmarks).
    Raises LiveCaptureError or ValueError before anything is captured; an
    error that ends the capture later is in `result.error`, after everything
    captured so far was flushed.  At the end, what the ring holds is
    analysed for at most `drain_timeout` seconds.  `result.latency`: the
    capture-to-analysis delay percentiles (measure_latency is always on)."""
    if duration is not None and duration <= 0:
        raise ValueError(f"duration must be positive, not {duration}")
    if count < 0:
        raise ValueError(f"count must be positive, not {count}")
    if drain_timeout < 0:
        raise ValueError(f"drain timeout must not be negative, not {drain_timeout}")
    if ring_mb <= 0:
        raise ValueError(f"ring size must be positive, not {ring_mb}")
    user = lookup_user(drop_user) if drop_user else None      # fail before opening
    src = open_source(source, interface, bpf=bpf, snaplen=snaplen, promisc=promisc,
                      buffer_mb=buffer_mb, count=count, block_timeout_ms=block_timeout_ms,
                      block_kb=block_kb, fanout_group=fanout_group, fanout_by=fanout_by)
    try:
        if user is not None:
            load_deferred()
            drop_privileges(drop_user, *user)
        return _run(src, interface, logs_dir=logs_dir, log_format=log_format,
                    ignore_checksums=ignore_checksums, timeouts=timeouts,
                    flow_memory_mb=flow_memory_mb, on_connection=on_connection,
                    status=status, analysers=analysers, monitor=monitor,
                    on_event=on_event, handle_signals=handle_signals,
                    measure_latency=measure_latency, on_ready=on_ready, ring_mb=ring_mb,
                    duration=duration, drain_timeout=drain_timeout, **engine_options)
    finally:
        src.close()


def _run(src, interface, *, logs_dir, log_format, ignore_checksums, timeouts,
         flow_memory_mb, on_connection, status, analysers, monitor, on_event,
         handle_signals, measure_latency, on_ready, ring_mb, duration, drain_timeout,
         metrics=None, redis=None, rotate=None, anonymizer=None, **engine_options):
    sinks = Sinks(on_connection, redis, anonymizer, metrics)
    ring_bytes, ring_records = ring_geometry(ring_mb)
    engine = Engine(on_connection=sinks.connection, ignore_checksums=ignore_checksums,
                    timeouts=timeouts, flow_capacity=flow_capacity_for(flow_memory_mb),
                    analysers=analysers, monitor=monitor, on_event=sinks.events(on_event),
                    on_log=sinks.log, log_writers=sinks.plain_writers, ring_policy="drop",
                    ring_bytes=ring_bytes,
                    ring_records=ring_records, **engine_options)
    engine.measure_latency()          # one clock read per packet: always on
    try:
        sinks.start(engine, logs_dir, log_format, analysers, rotate,
                    capture=lambda: capture_stats(src))
    except OSError as exc:
        raise LiveCaptureError(f"cannot write logs in '{logs_dir}': "
                               f"{exc.strerror or exc}") from None

    stopped_by = ["end of capture"]
    previous = {}

    def request_stop(signum, frame):
        stopped_by[0] = ("duration" if signum == signal.SIGALRM
                         else signal.Signals(signum).name)
        engine.stop()

    if handle_signals:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM):
            previous[sig] = signal.signal(sig, request_stop)
    error = None
    started = time.perf_counter()
    try:
        if duration is not None:
            if handle_signals:
                signal.setitimer(signal.ITIMER_REAL, duration)
            else:
                _stop_after(engine, duration, stopped_by)
        if on_ready is not None:
            on_ready(engine, src)
        try:
            engine.run_capture(src, status, 1.0, drain_timeout=drain_timeout)
        except LiveCaptureError as exc:
            error = str(exc)
            stopped_by[0] = "error"
        if src.error is not None:
            error = src.error
            stopped_by[0] = "error"
        elif stopped_by[0] == "end of capture" and getattr(src, "max_packets", 0):
            stopped_by[0] = "count"
        if handle_signals:
            signal.setitimer(signal.ITIMER_REAL, 0)
        engine.finish()
    finally:
        if handle_signals:
            signal.setitimer(signal.ITIMER_REAL, 0)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        sinks.close()
    result = LiveResult(stats=engine.stats(), wall_seconds=time.perf_counter() - started,
                        files=[interface], connections=sinks.connections)
    result.engine = engine
    result.capture = capture_stats(src)
    result.stopped_by = stopped_by[0]
    result.error = error
    result.latency = engine.latency_stats()
    result.ring = {"max_backlog": engine.max_backlog, "drained": engine.drained,
                   "undrained": engine.undrained, "drain_seconds": engine.drain_seconds,
                   "drain_aborted": engine.drain_aborted,
                   "record_capacity": engine.ring.record_capacity,
                   "arena_bytes": engine.ring.arena_bytes}
    return result


def ring_geometry(ring_mb: float) -> tuple[int, int]:
    """(arena bytes, record slots) of a ring of `ring_mb` MB of packet bytes.
    The Ring rounds both up to powers of two."""
    ring_bytes = max(1 << 16, int(ring_mb * (1 << 20)))
    return ring_bytes, max(MIN_RING_RECORDS, ring_bytes // RING_BYTES_PER_RECORD)


def _stop_after(engine, duration, stopped_by):
    """duration without signal handlers (a capture in a thread): a timer thread."""
    import threading

    def stop():
        stopped_by[0] = "duration"
        engine.stop()
    timer = threading.Timer(duration, stop)
    timer.daemon = True
    timer.start()


def format_capture(result) -> str:
    """The capture lines of the summary: what the kernel and the ring dropped
    (by stage), how far analysis fell behind, the capture-to-analysis delay."""
    c = result.capture
    lines = []
    if "error" in c and len(c) == 1:
        return "capture   statistics unavailable: %s" % c["error"]
    lines.append("capture   %s on %s: %s packets captured, kernel received %s, "
                 "kernel drops %s, interface drops %s, ring drops %s" % (
                     c.get("source"), c.get("interface"),
                     format(c.get("packets", 0), ","), format(c.get("kernel_received", 0), ","),
                     format(c.get("kernel_drops", 0), ","),
                     format(c.get("interface_drops", 0), ","),
                     format(c.get("ring_drops", 0), ",")))
    lines.append("drops     by stage: kernel %s, interface %s, ring %s (the ring drops the "
                 "newest packet when it has no room left)" % (
                     format(c.get("kernel_drops", 0), ","),
                     format(c.get("interface_drops", 0), ","),
                     format(c.get("ring_drops", 0), ",")))
    ring = getattr(result, "ring", None)
    if ring:
        lines.append("backlog   at most %s records waiting for analysis (%.0f%% of the ring's "
                     "%s); %s analysed after the stop in %.2f s, %s left unanalysed%s" % (
                         format(ring["max_backlog"], ","),
                         100.0 * ring["max_backlog"] / max(1, ring["record_capacity"]),
                         format(ring["record_capacity"], ","), format(ring["drained"], ","),
                         ring["drain_seconds"], format(ring["undrained"], ","),
                         " (drain interrupted)" if ring.get("drain_aborted") else
                         " (drain timeout)" if ring["undrained"] else ""))
    lat = getattr(result, "latency", None)
    if lat:
        lines.append("latency   capture to analysis: median %s, p99 %s, p99.9 %s, max %s "
                     "(%s packets)" % (
                         format_us(lat["median_us"]), format_us(lat["p99_us"]),
                         format_us(lat["p999_us"]), format_us(lat["max_us"]),
                         format(lat["count"], ",")))
    lines.append("stopped   by %s after %.1f s" % (result.stopped_by, result.wall_seconds))
    return "\n".join(lines)


def format_us(us: float) -> str:
    if us >= 1e6:
        return "%.2f s" % (us / 1e6)
    if us >= 1e3:
        return "%.1f ms" % (us / 1e3)
    return "%.0f us" % us


def status_printer(stream=None):
    """A status(engine, source) callable that rewrites one line on `stream`
    (stderr): packets, rate, drops by stage (kernel, ring), ring occupancy,
    lag (the age of the oldest packet waiting for analysis), retained bytes."""
    stream = stream or sys.stderr
    last = [time.monotonic(), 0]

    def show(engine, source):
        now = time.monotonic()
        rate = (engine.packets - last[1]) / max(1e-6, now - last[0])
        last[0], last[1] = now, engine.packets
        try:
            _, kernel_drops, _ = source.kernel_stats()
        except Exception:
            kernel_drops = "?"
        ring = engine.ring
        stream.write("\r%s packets  %8.0f pkt/s  kernel drops %s  ring drops %s  "
                     "ring %s/%s records  lag %s  retained %s bytes   " % (
                         format(engine.packets, ","), rate, kernel_drops,
                         format(ring.overflow_drops, ","), format(ring.occupancy, ","),
                         format(ring.record_capacity, ","),
                         format_us(engine.lag_seconds() * 1e6),
                         format(ring.retained_bytes, ",")))
        stream.flush()
    return show
