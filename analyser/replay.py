"""Trace replay: the Python entry point around the compiled engine.

Role in the data flow: it opens the sources (ringbuf.pcapfile), runs them
through one `Engine` in the order given, turns each finished connection into
its conn.log row (built by analyser/flows.pyx) to the sinks
(analyser.logs, or any callable).
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable

from analyser.engine import Engine
from analyser.flows import FlowTable
from analyser.logs import LogSet
from analyser.schemas import schemas_of
from ringbuf.pcapfile import PcapFileSource

DEFAULT_FLOW_MEMORY_MB = 512
DEFAULT_STREAM_MEMORY_MB = 128          # analyser/streams.pyx's DEFAULT_MAX_OWNED_TOTAL


class ReplayResult:
    """What a replay did: the engine's counters and what went wrong.  (Not
    a dataclass: that import costs every start-up some 8 ms.)"""

    def __init__(self, stats: dict, wall_seconds: float, files: list[str],
                 warnings: list[str] | None = None, connections: int = 0):
        self.stats = stats
        self.wall_seconds = wall_seconds
        self.files = files
        self.warnings = [] if warnings is None else warnings
        self.connections = connections

    def __eq__(self, other) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return vars(self) == vars(other)

    __hash__ = None

    def __repr__(self) -> str:
        return "%s(%s)" % (type(self).__name__,
                           ", ".join("%s=%r" % item for item in vars(self).items()))


class Sinks:
    """Where a run's records go: conn.log and the analysers' logs in a
    directory (if any), and a per-connection callback (if any)."""

    def __init__(self, on_connection: Callable[[dict], None] | None = None, redis=None,
                 anonymizer=None, metrics=None):
        self.on_connection = on_connection
        self.redis = redis                  # analyser.redisout.RedisSink, or None
        self.anonymizer = anonymizer        # analyser.anonymize.Anonymizer, or None
        self.metrics = metrics              # analyser.metrics.Metrics, or None
        self.logs: LogSet | None = None
        # path -> what writes its rows (ZeekLogWriter.row_writer()), once a
        # row of it was written, when rows go to their log file only (no
        # anonymising, Redis or rotation): log() then hands them to it at once.
        self.plain_writers: dict = {}
        self.count = 0
        self.engine = None

    def open(self, logs_dir: str | None, log_format: str, schemas: dict | None = None,
             rotate=None, clock=lambda: 0.0) -> None:
        if logs_dir is not None:
            os.makedirs(logs_dir, exist_ok=True)
            self.logs = LogSet(logs_dir, log_format, schemas, rotate, clock)
            self.logs.open("conn")          # always there, even when empty

    def start(self, engine, logs_dir: str | None, log_format: str, analysers, rotate=None,
              capture=None) -> None:
        """Once the engine exists: open the logs (with the analysers' schemas),
        let the flow table write conn rows itself where it can, and give the
        metrics the engine (and the live source's statistics) to read."""
        self.open(logs_dir, log_format, schemas_of(cls for cls, _ in analysers or ()),
                  rotate, engine.flows.trace_time)
        self.attach(engine)
        if self.metrics is not None:
            self.metrics.attach(engine, capture)

    def attach(self, engine) -> None:
        """When conn.log (TSV) is the only consumer of connection rows, the
        flow table writes the rows that meet no expectation straight into it."""
        self.engine = engine
        if self.logs is not None or self.redis is not None or self.on_connection is not None:
            from analyser.tunnels import TunnelLog
            engine.flows.set_tunnel_log(TunnelLog(self.log))
        if self.rows_only_to_files() and self.logs.log_format == "tsv" \
                and self.on_connection is None:
            engine.flows.set_conn_writer(self.logs.open("conn")._tsv)

    def rows_only_to_files(self) -> bool:
        """Log rows go to their log files as they are, and nowhere else (no
        anonymising, Redis or rotation)."""
        return (self.logs is not None and self.anonymizer is None and self.redis is None
                and not (self.logs.rotate_interval or self.logs.rotate_bytes))

    @property
    def connections(self) -> int:
        """Rows reported: through connection(), and straight from the flow table."""
        return self.count + (self.engine.flows.direct_rows if self.engine is not None else 0)

    def connection(self, row: dict) -> None:
        """A finished connection's conn.log row, from the engine."""
        self.count += 1
        if self.anonymizer is not None:
            row = self.anonymizer.record(row)
        if self.logs is not None:
            self.logs.write("conn", row)
        if self.redis is not None:
            self.redis.log("conn", row)
        if self.on_connection is not None:
            self.on_connection(row)

    def log(self, path: str, row: dict) -> None:
        write = self.plain_writers.get(path)
        if write is not None:
            write(row)                      # the row goes to its file and nowhere else
            return
        if self.anonymizer is not None:
            row = self.anonymizer.record(row)
        if self.logs is not None:
            self.logs.write(path, row)
            if self.rows_only_to_files():
                self.plain_writers[path] = self.logs.open(path).row_writer()
        if self.redis is not None:
            self.redis.log(path, row)

    def events(self, on_event: Callable[[dict], None] | None):
        """The event sink: anonymised (if asked), to Redis (if any), then
        `on_event`; the metrics see the transfers first."""
        if self.redis is None and self.anonymizer is None:
            sink = on_event
        else:
            redis, anonymizer = self.redis, self.anonymizer

            def sink(record: dict) -> None:
                if anonymizer is not None:
                    record = anonymizer.record(record)
                if redis is not None:
                    redis.event(record)
                if on_event is not None:
                    on_event(record)
        return self.metrics.events(sink) if self.metrics is not None else sink

    def close(self) -> None:
        self.plain_writers.clear()
        if self.logs is not None:
            self.logs.close()


def flow_capacity_for(memory_mb: float) -> int:
    return max(1024, int(memory_mb * (1 << 20)) // FlowTable.bytes_per_flow())


def replay_files(paths: Iterable[str], *, logs_dir: str | None = None,
                 log_format: str = "tsv", bpf: str | None = None,
                 ignore_checksums: bool = True, timeouts: dict | None = None,
                 flow_memory_mb: float = DEFAULT_FLOW_MEMORY_MB,
                 on_connection: Callable[[dict], None] | None = None,
                 progress: Callable | None = None,
                 analysers: list | None = None, monitor=None,
                 on_event: Callable[[dict], None] | None = None,
                 speed: float = 0.0, metrics=None, redis=None, rotate=None,
                 anonymizer=None, **engine_options) -> ReplayResult:
    """Replay trace files through the engine.

    Each finished connection is passed to `on_connection` as a conn.log row
    (a dict keyed by Zeek field names, None for unset), and written to
    `logs_dir`/conn.log when `logs_dir` is given.  `analysers` is a list of
    (Analyser subclass, config) to run; their events go to `on_event`.
    `monitor` (analyser.events.Monitor) receives built-in events.  Other
    keywords go to analyser.engine.Engine (ring_bytes, ring_records,
    max_stream_bytes, max_owned_bytes ...).  Raises
    ringbuf.errors.CaptureFileError (before any log is written) when a file
    cannot be read as a capture, and ValueError for a bad filter or option.
    `speed` > 0 paces the replay to the trace's clock (1.0 = real time).
    `metrics` (analyser.metrics.Metrics) is given the engine to read when
    scraped, and the transfer events.  `redis` (analyser.redisout.RedisSink)
    gets every log row and event too.  `rotate`: ("interval", seconds) or
    ("size", bytes) (analyser.logs.parse_rotation).  `anonymizer`
    (analyser.anonymize.Anonymizer) maps the addresses of every output.
    """
    paths = list(paths)
    sources = [PcapFileSource(p) for p in paths]    # every file checked up front
    sinks = Sinks(on_connection, redis, anonymizer, metrics)
    engine = Engine(on_connection=sinks.connection, bpf=bpf,
                    ignore_checksums=ignore_checksums, timeouts=timeouts,
                    flow_capacity=flow_capacity_for(flow_memory_mb), analysers=analysers,
                    monitor=monitor, on_event=sinks.events(on_event), on_log=sinks.log,
                    log_writers=sinks.plain_writers,
                    **engine_options)
    # Logs only once the options proved good (a bad filter writes nothing).
    sinks.start(engine, logs_dir, log_format, analysers, rotate)
    warnings = []
    started = time.perf_counter()
    try:
        for source in sources:
            engine.run_source(source, progress, speed=speed)
            if source.truncated:
                warnings.append(source.truncation_message)
    finally:
        # Even when a file turns out corrupt halfway, the connections seen
        # before the corruption are reported.
        try:
            engine.finish()
        finally:
            sinks.close()
    result = ReplayResult(stats=engine.stats(), wall_seconds=time.perf_counter() - started,
                          files=paths, warnings=warnings, connections=sinks.connections)
    result.engine = engine
    return result
