"""The analyser author's test harness: one analyser, two scripted byte
streams, no compiled engine and no pcap.

Role in the data flow: it stands in for everything left of the analyser
(flows -> streams) and for the sinks, so a protocol module can be tested the
way h11's and mitmproxy's tests drive their state machines: bytes in, events
and log rows out.

    from analyser import ORIG, RESP
    from analyser.testing import Hole, End, run

    result = run(MyAnalyser, [(RESP, b"220 hello\\r\\n"), (ORIG, b"USER x\\r\\n"),
                              Hole(ORIG, 100), End(ORIG)])
    result.logs["my"]          # rows written with self.log("my", ...)
    result.of("weird")         # events of one kind
    result.services, result.confirmed, result.violations, result.errors

The script is fed item by item, as packets would bring it: `(side, bytes)`
appends to a side, `Hole(side, size)` is bytes that were never captured
(reads meet `Gap`), `End(side)` closes a side (reads meet `StreamEnd`),
`Wait(seconds)` moves the clock.  After each item the analyser runs if what
it waits for is there, with the same read semantics as the compiled stream
layer (analyser/streams.pyx): skips, gaps, ends, read_any, peeks.  At the
end both sides are closed and the connection ends, as the engine does.

A datagram analyser (`protocol = "udp"`) is run on a UDP connection
(`UDP_ID` unless `conn_id` says otherwise): each `(side, bytes)` item is one
datagram, `read_datagram()` returns them in order, and the end of the
script ends the flow (StreamEnd); Hole and End do not apply.  An analyser
for both transports runs as TCP unless `conn_id.proto` is "udp".

Rows are checked against the log's declared fields: a misspelt field is an
error here, not a silently unset column in production.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, NamedTuple, Sequence

from analyser.bytestreams import End, Hole, ScriptedStreams
from analyser.runtime import Analyser, ConnId, Connection, Expectation, Runtime


class Wait(NamedTuple):
    """Trace time passes."""
    seconds: float


DEFAULT_ID = ConnId("10.0.0.1", 40000, "10.0.0.2", 8000, "tcp")
UDP_ID = ConnId("10.0.0.1", 40000, "10.0.0.2", 8000, "udp")
SLOT = 0


@dataclass
class HarnessResult:
    """What one run produced."""
    events: list[dict]
    logs: dict[str, list[dict]]
    services: list[str]
    confirmed: bool
    violations: list[dict]          # analyzer.log rows
    errors: list[dict]              # analyser_error records
    expectations: list[Expectation]
    counters: dict
    analyser: Analyser | None = None   # the last analyser that ran
    delivered: dict = field(default_factory=dict)   # bytes read per side

    def of(self, kind: str) -> list[dict]:
        """The events of one kind (weird, analyzer_violation, or the analyser's)."""
        return [e for e in self.events if e["event"] == kind]


def run(analyser: type[Analyser], script: Iterable, *, config: dict | None = None,
        conn_id: ConnId | None = None, start_time: float = 1000.0, step: float = 0.001,
        candidates: Sequence[type[Analyser]] = (), uid: str = "CHarness1") -> HarnessResult:
    """Run `analyser` on the scripted streams (see the module doc); the
    `candidates` take the connection in turn if it reports a violation
    before confirming, as under content detection."""
    events: list[dict] = []
    logs: dict[str, list[dict]] = {}
    now = [start_time]

    def write(path: str, row: dict) -> None:
        schema = dict(schemas.get(path, ()))
        unknown = sorted(set(row) - set(schema))
        if unknown:
            raise ValueError("log %s has no field %s (fields: %s)"
                             % (path, ", ".join(unknown), ", ".join(schema)))
        logs.setdefault(path, []).append(dict(row))

    from analyser.schemas import schemas_of
    classes = [analyser, *candidates]
    schemas = {path: [(f.name, f.zeek_type) for f in fields]
               for path, fields in schemas_of(classes).items()}
    runtime = Runtime(emit=events.append, clock=lambda: now[0], log=write)
    streams = ScriptedStreams(runtime)
    runtime.streams = streams

    def configured(cls):
        cfg = {key: default for key, (default, _) in cls.options.items()}
        if cls is analyser:
            cfg.update(config or {})
        return cfg

    runtime.set_classes([(cls, configured(cls)) for cls in classes])
    if conn_id is None:
        conn_id = UDP_ID if "tcp" not in analyser.transports() else DEFAULT_ID
    datagrams = conn_id.proto == "udp"
    if datagrams and "udp" not in analyser.transports():
        raise ValueError("%s is not a datagram analyser (protocol %r)"
                         % (analyser.__name__, analyser.protocol))
    conn = Connection(uid, conn_id, start_time)
    runtime.start(analyser, SLOT, conn, configured(analyser),
                  [(cls, configured(cls)) for cls in candidates])
    for item in script:
        if isinstance(item, Wait):
            now[0] += item.seconds
            continue
        now[0] += step
        if datagrams:
            if isinstance(item, (Hole, End)):
                raise ValueError("a UDP script has datagrams and Waits only, not %r" % (item,))
            runtime.datagram(SLOT, item[0], bytes(item[1]))
            streams.sides[item[0]].delivered += len(item[1])
        else:
            streams.feed(item)
    for side in (0, 1):                          # the connection ends
        if not datagrams and not streams.sides[side].ended:
            streams.feed(End(side))
    last = runtime.instances.get(SLOT)
    runtime.finish(SLOT)
    expectations = [e for pending in runtime.expectations.values() for e in pending]
    return HarnessResult(
        events=events, logs=logs, services=list(conn.services),
        confirmed=bool(last is not None and last.confirmed),
        violations=logs.get("analyzer", []), errors=list(runtime.error_log),
        expectations=expectations, counters=dict(runtime.counters), analyser=last,
        delivered={0: streams.sides[0].delivered, 1: streams.sides[1].delivered})
