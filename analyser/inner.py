"""Streams carried inside another protocol, analysed like connections.

Role in the data flow: flows -> streams -> analyser (the carrier: a
WebSocket, an HTTP CONNECT tunnel decoded by hand) -> **inner streams** ->
analysers -> sinks.  A carrier that decodes a byte stream out of its own
framing feeds the decoded bytes here; content detection (the run's
signatures, checked in Python: this runs once per carried stream) picks the
analyser, which reads them with the usual blocking calls, writes its logs
and events under the carrier's connection (same uid and 5-tuple), and names
its service in the same conn.log row.  Violations, candidates and
hand-overs behave as on a connection.

    inner = InnerStreams(self)            # inside the carrier's main()
    inner.feed(ORIG, payload)             # as frames are decoded
    inner.end()                           # when the carrier ends

Detection waits for both sides (one with at least MIN_DETECT_BYTES), so a
signature is not judged on a one-byte frame and a protocol whose other side
contradicts it is not chosen; a side alone decides once it has sent
MAX_ONE_SIDED bytes or the other has ended.
"""
from __future__ import annotations

TYPE_CHECKING = False    # typing is not imported at start-up

from analyser.bytestreams import End, Hole, ScriptedStreams
from analyser.runtime import Runtime, load_greenlet

if TYPE_CHECKING:
    from analyser.runtime import Analyser

INNER_SLOT = 0
# Bytes of a side looked at before content detection decides (the longest
# signature pattern is 16 bytes: see analyser/signatures.py).
MIN_DETECT_BYTES = 16
# Bytes one side may send before detection decides without the other side.
MAX_ONE_SIDED = 4096


class InnerStreams:
    """One carried stream pair, analysed by the run's analysers."""

    def __init__(self, carrier: "Analyser"):
        if load_greenlet().getcurrent() is not carrier._greenlet:
            raise RuntimeError("InnerStreams must be created inside the carrier's main()")
        outer = carrier._rt
        self.carrier = carrier
        self.outer = outer
        # Same sinks and clock as the carrier; its own slots and greenlets,
        # whose parent is the carrier's greenlet (a blocked inner read returns
        # to the carrier's feed()).
        self.runtime = Runtime(emit=outer._emit, clock=outer.now_ts, log=outer.log,
                               no_payload=outer.no_payload)
        self.runtime.trace_clock = outer.trace_clock
        self.runtime._stopwatches = outer._stopwatches     # its analysers' time is the run's
        self.runtime.set_classes(list(outer.classes.values()))
        self.runtime.detecting = True
        self.streams = ScriptedStreams(self.runtime, INNER_SLOT)
        self.runtime.streams = self.streams
        self.pending = [bytearray(), bytearray()]   # bytes before detection decided
        self.started = False
        self.undetected = False                    # nothing matched: bytes dropped
        self.ended = [False, False]

    # -- the carrier's calls --------------------------------------------------------------

    def feed(self, side: int, data: bytes) -> None:
        """Decoded bytes of one side of the carried stream."""
        if not data or self.ended[side] or self.undetected:
            return
        if not self.started:
            pending = self.pending
            pending[side] += data
            if (len(pending[side]) >= MAX_ONE_SIDED
                    or (pending[0] and pending[1]
                        and max(len(pending[0]), len(pending[1])) >= MIN_DETECT_BYTES)
                    or self.ended[1 - side]):
                self._detect()
            return
        self.streams.feed((side, bytes(data)))

    def gap(self, side: int, size: int) -> None:
        """`size` carried bytes of a side were never seen."""
        if self.started and not self.ended[side]:
            self.streams.feed(Hole(side, size))
        elif not self.started:
            self.undetected = True                  # detection cannot judge a hole

    def end(self, side: int | None = None) -> None:
        """A side (or both) of the carried stream is over; after both, the
        inner analyser's connection ends."""
        for s in (0, 1) if side is None else (side,):
            if self.ended[s]:
                continue
            self.ended[s] = True
            if not self.started and not self.undetected:
                self._detect()
            if self.started:
                self.streams.feed(End(s))
        if all(self.ended) and self.started:
            self.runtime.finish(INNER_SLOT)
            self.started = False
            self.undetected = True
            for key, value in self.runtime.counters.items():
                self.outer.counters[key] = self.outer.counters.get(key, 0) + value
            self.outer.error_log.extend(self.runtime.error_log[:100])

    # -- detection -------------------------------------------------------------------------

    def candidates(self) -> list[tuple[type, dict]]:
        """The run's analysers whose signatures match what is pending (the
        carrier's own class left out: a stream does not carry its carrier)."""
        return self.outer.rank_by_content(
            {side: bytes(data) for side, data in enumerate(self.pending) if data},
            exclude=type(self.carrier))

    def _detect(self) -> None:
        ranked = self.candidates()
        if not ranked:
            self.undetected = True
            self.pending = [bytearray(), bytearray()]
            self.outer.counters["inner_streams_undetected"] = \
                self.outer.counters.get("inner_streams_undetected", 0) + 1
            return
        self.started = True
        self.outer.counters["inner_streams"] = self.outer.counters.get("inner_streams", 0) + 1
        cls, config = ranked[0]
        self.runtime.start(cls, INNER_SLOT, self.carrier.conn, config, ranked[1:])
        pending, self.pending = self.pending, [bytearray(), bytearray()]
        for side in (0, 1):
            if pending[side]:
                self.streams.feed((side, bytes(pending[side])))
