"""Prometheus metrics of a running analysis, served over HTTP.

Role in the data flow: sinks.  Nothing here runs per packet: the counters
are read from the engine (`Engine.stats()`, the live source's kernel
statistics) when Prometheus scrapes, by a custom collector; only the
transfer histograms are fed, once per transfer, from the `transfer_end`
application events.

    analyser live -i eth0 --metrics-port 9177            # 127.0.0.1:9177/metrics
    analyser replay big.pcap --metrics-port 9177 --metrics-addr 0.0.0.0

Names and units follow Prometheus conventions (`_total` counters, `_bytes`,
`_seconds`); labels have few values (a stage, a reason, a protocol, a
service, an analyser's name, an event kind), never a uid or an address.
`FAMILIES` declares every family once; the README's table and the Grafana
dashboard's test read it.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from prometheus_client import (CollectorRegistry, Histogram, disable_created_metrics,
                               start_http_server)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

PREFIX = "analyser_"
DEFAULT_ADDR = "127.0.0.1"

# name (without the prefix), type, labels, meaning
FAMILIES = (
    ("packets_total", "counter", (), "packets read from the source"),
    ("wire_bytes_total", "counter", (), "bytes of those packets on the wire"),
    ("dropped_packets_total", "counter", ("stage",),
     "packets lost, by stage: kernel and interface (live capture), ring (no room "
     "left in the engine's ring)"),
    ("malformed_packets_total", "counter", ("reason",), "packets skipped as malformed"),
    ("filtered_packets_total", "counter", (), "packets the --bpf filter left out"),
    ("duplicate_packets_total", "counter", (), "packets dropped as copies (--dedup)"),
    ("connections_total", "counter", ("proto",), "connections seen, by transport"),
    ("connections_active", "gauge", (), "connections in the flow table now"),
    ("connections_ended_total", "counter", ("cause", "proto"),
     "connections ended, by cause (closed, timeout, evicted by the flow memory "
     "budget, reused by a new connection on its 5-tuple, end_of_input) and transport"),
    ("connections_by_service_total", "counter", ("service",),
     "connections ended that an analyser named a service for"),
    ("ring_occupancy_records", "gauge", (), "records in the ring not yet acknowledged"),
    ("ring_retained_bytes", "gauge", (), "bytes the ring keeps for analysers (retained)"),
    ("ring_backlog_records", "gauge", (),
     "records captured and not yet analysed (live: the capture thread is ahead of the "
     "engine by this much; a burst shows here, not as kernel drops)"),
    ("wakeups_total", "counter", (), "times an analyser was woken with data"),
    ("failed_analysers_total", "counter", (), "analysers ended by an exception"),
    ("analysis_seconds_total", "counter", ("analyser",),
     "time spent running each analyser's code"),
    ("protocol_violations_total", "counter", (), "violations reported (analyzer.log)"),
    ("events_total", "counter", ("kind",), "application events, by kind"),
    ("engine_errors_total", "counter", (), "exceptions the engine caught (sinks, callbacks)"),
    ("skipped_bytes_total", "counter", (),
     "stream bytes skipped in compiled code (bulk, skip, read_and_skip): no Python"),
    ("bulk_bytes_total", "counter", (),
     "payload bytes of announced connections (FTP data channels) counted in compiled "
     "code only, added when each ends"),
    ("transfer_size_bytes", "histogram", ("protocol",), "bytes of each FTP/GridFTP transfer"),
    ("transfer_duration_seconds", "histogram", ("protocol",),
     "duration of each FTP/GridFTP transfer"),
)
SIZE_BUCKETS = (0, 1024, 16384, 131072, 1 << 20, 16 << 20, 128 << 20, 1 << 30, 8 << 30,
                float("inf"))
DURATION_BUCKETS = (0.001, 0.01, 0.1, 1, 10, 60, 600, 3600, float("inf"))


def family_names() -> list[str]:
    """Every sample name the exporter can produce (histograms: their series)."""
    names = []
    for name, kind, _, _ in FAMILIES:
        if kind == "histogram":
            names += [PREFIX + name + suffix for suffix in ("_bucket", "_sum", "_count")]
        else:
            names.append(PREFIX + name)
    return names


class EngineCollector:
    """Reads the engine's counters when scraped."""

    def __init__(self):
        self.engine = None
        self.capture: Callable[[], dict] | None = None
        self._docs = {name: (kind, labels, doc) for name, kind, labels, doc in FAMILIES}

    def _family(self, name: str, value=None, samples: Iterable = ()):
        kind, labels, doc = self._docs[name]
        cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        full = PREFIX + (name[:-len("_total")] if kind == "counter" else name)
        if labels:
            f = cls(full, doc, labels=list(labels))
            for label_values, v in samples:
                f.add_metric(list(label_values), v)
            return f
        return cls(full, doc, value=value)

    def collect(self):
        engine = self.engine
        if engine is None:
            return
        s = engine.stats()
        ring = s.get("ring", {})
        yield self._family("packets_total", s["packets"])
        yield self._family("wire_bytes_total", s["wire_bytes"])
        drops = [(("ring",), ring.get("overflow_drops", 0) + ring.get("oversize_drops", 0))]
        if self.capture is not None:
            c = self.capture()
            drops += [(("kernel",), c.get("kernel_drops", 0)),
                      (("interface",), c.get("interface_drops", 0))]
        yield self._family("dropped_packets_total", samples=drops)
        yield self._family("malformed_packets_total",
                           samples=[((k,), v) for k, v in sorted(s["malformed"].items())])
        yield self._family("filtered_packets_total", s["filtered_out"])
        yield self._family("duplicate_packets_total", s.get("duplicates", 0))
        yield self._family("connections_total", samples=[
            (("tcp",), s["flows_tcp"]), (("udp",), s["flows_udp"]), (("icmp",), s["flows_icmp"])])
        yield self._family("connections_active", s["active_flows"])
        yield self._family("connections_ended_total", samples=[
            (tuple(k.split("/")), v) for k, v in sorted(s["ended_by"].items())])
        yield self._family("connections_by_service_total", samples=[
            ((k,), v) for k, v in sorted(s.get("connections_by_service", {}).items())])
        yield self._family("ring_occupancy_records", ring.get("occupancy", 0))
        yield self._family("ring_retained_bytes", ring.get("retained_bytes", 0))
        yield self._family("ring_backlog_records", ring.get("backlog", 0))
        yield self._family("wakeups_total", s.get("analyser_wakeups", 0))
        yield self._family("failed_analysers_total", s.get("analyser_errors", 0))
        yield self._family("analysis_seconds_total", samples=[
            ((k,), v) for k, v in sorted(s.get("analyser_seconds", {}).items())])
        yield self._family("protocol_violations_total", s.get("violations", 0))
        yield self._family("events_total", samples=[
            ((k,), v) for k, v in sorted(s.get("events_by_kind", {}).items())])
        yield self._family("engine_errors_total", s.get("engine_errors", 0))
        yield self._family("skipped_bytes_total", s.get("stream_skipped_bytes", 0))
        yield self._family("bulk_bytes_total", s.get("bulk_bytes", 0))


class Metrics:
    """The exporter of one run: `serve()` before, `attach(engine)` once the
    engine exists, `events(on_event)` to see transfers, `close()` after."""

    def __init__(self, port: int, addr: str = DEFAULT_ADDR):
        # No `_created` series: the families of FAMILIES are all there is.
        disable_created_metrics()
        self.port, self.addr = port, addr
        self.registry = CollectorRegistry()
        self.collector = EngineCollector()
        self.registry.register(self.collector)
        self.sizes = Histogram(PREFIX + "transfer_size_bytes", self._doc("transfer_size_bytes"),
                               ["protocol"], buckets=SIZE_BUCKETS, registry=self.registry)
        self.durations = Histogram(PREFIX + "transfer_duration_seconds",
                                   self._doc("transfer_duration_seconds"), ["protocol"],
                                   buckets=DURATION_BUCKETS, registry=self.registry)
        self.server = None
        self.thread: threading.Thread | None = None

    @staticmethod
    def _doc(name: str) -> str:
        return next(doc for n, _, _, doc in FAMILIES if n == name)

    def serve(self) -> None:
        """Listen now (an address in use is an OSError before anything runs)."""
        self.server, self.thread = start_http_server(self.port, self.addr, self.registry)

    def attach(self, engine, capture: Callable[[], dict] | None = None) -> None:
        self.collector.engine = engine
        self.collector.capture = capture

    def events(self, on_event: Callable[[dict], None] | None) -> Callable[[dict], None]:
        """An event sink that feeds the transfer histograms, then `on_event`."""
        def sink(record: dict) -> None:
            if record.get("event") == "transfer_end":
                protocol = record.get("protocol") or "ftp"
                if record.get("bytes") is not None:
                    self.sizes.labels(protocol).observe(record["bytes"])
                if record.get("duration") is not None:
                    self.durations.labels(protocol).observe(record["duration"])
            if on_event is not None:
                on_event(record)
        return sink

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
