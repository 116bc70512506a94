"""Protothread analysers: straight-line Python that blocks on reads.

Role in the data flow: flows -> streams -> **analysers** -> sinks.

Each analysed connection runs its analyser's `main()` in a greenlet (one that
ran an earlier analyser to its end when one is waiting: creating greenlets
costs more than switching into them).  A read (`read`, `read_line`,
`read_and_skip`, `read_some`, `read_any`) first asks the compiled stream
layer (analyser/streams.pyx) for the bytes; when they are not there yet, the
greenlet switches back to the engine, which goes on with the next packet and
switches in again only when the request can be met.  Skipped
bytes (`skip`, `read_and_skip`, `bulk`) never reach Python at all.

Failure is contained: an exception in `main()` ends that analyser for that
connection only.  It is reported as an `analyser_error` event carrying the
last frame of the traceback, counted, and the connection goes on being
counted in compiled code.

Detection (Zeek's dynamic protocol detection, in our terms):

1. A connection gets an ordered list of *candidates*: the analyser whose
   port hint matches the responder's port, then those whose content
   signatures matched the first payload of a side (analyser/signatures.py,
   checked in compiled code).  The first candidate runs at once.
2. Until it calls `confirm()`, everything its reads return is recorded (at
   most DETECTION_BUFFER bytes per side).  When it calls `violation()` (or
   fails with an exception) before confirming, the violation is reported
   (analyzer.log, an `analyzer_violation` event), and the next candidate
   starts on the same connection: its reads are served from the recording
   first, so it too reads both streams from their start.
3. `confirm()` names the analyser's service in conn.log, drops the
   recording and the other candidates.  A violation after confirmation ends
   the analyser and takes its service back out, as Zeek does.
4. When the recording cannot be replayed (the analyser skipped bytes, met a
   gap, or read more than DETECTION_BUFFER), no further candidate can start.

Datagram analysers (`protocol = "udp"`, or ("udp", "tcp") for a protocol
that runs on both) read UDP flows with `read_datagram()`: each datagram of
either side whole, in arrival order.  They are chosen like the others (port
hints, signatures on the first datagram of a side, expectations); an
unconfirmed one's datagrams are recorded and replayed to the next
candidate the same way.  When the flow ends (UDP has no close: at its
inactivity timeout or the end of the input) `read_datagram()` raises
StreamEnd, so main() can report what is still open.
"""
from __future__ import annotations

from collections import deque, namedtuple
from collections.abc import Callable, Sequence
from time import perf_counter
TYPE_CHECKING = False    # typing is not imported at start-up (2 ms)
if TYPE_CHECKING:
    from typing import Any, ClassVar

from analyser.deferred import deferred_import
from analyser.records import SlotRecord
from analyser.schemas import Field, schema_of
from analyser.signatures import Signature
from analyser.watchdog import AnalyserTimeout, clear_in

# The greenlet module, imported with the first Runtime: a run of connection
# records (no analyser, no runtime) need not load it (1.5 ms of its start).
# Every use below runs inside a Runtime's analysers, so after that import.
greenlet = None


@deferred_import
def load_greenlet():
    global greenlet
    if greenlet is None:
        import greenlet as module
        greenlet = module
    return greenlet
from analyser.streams import (R_DATA, R_END, R_GAP, SIDE_ANY, SIDE_ORIG, SIDE_RESP,
                              WANT_BYTES, WANT_LINE, WANT_PEEK, WANT_SOME, StreamReader,
                              Streams)

def stream_request(streams, slot: int, side: int, want: int, n: int):
    """streams.request(): in the build a C call when `streams` is the compiled
    stream layer (not the test harness's), as every read and delivery asks."""
    compiled = streams if type(streams) is Streams else None
    if compiled is not None:
        return compiled.request(slot, side, want, n)
    return streams.request(slot, side, want, n)


# Sides, as the stream layer numbers them.
ORIG, RESP, ANY = int(SIDE_ORIG), int(SIDE_RESP), int(SIDE_ANY)

SIDE_NAMES = ("orig", "resp")
# An analyser that keeps reading a finished stream is stopped after this many
# reads (each answered at once, without returning to the engine).
MAX_READS_AFTER_END = 1000
# Bytes of each side kept for the next candidate while an analyser has not
# confirmed its protocol (Zeek's dpd_buffer_size is 1024; FTP greetings and
# HTTP headers often need more before a verdict).
DETECTION_BUFFER = 16384
# The stream layer counts a request in 32 bits: a larger span is skipped
# (skip, read_and_skip), never read.
MAX_READ = (1 << 32) - 1
# Lines one read_lines() call returns at most (the rest comes with the next).
MAX_LINES_PER_READ = 1024
# failure_data in analyzer.log is cut to this many bytes.
MAX_FAILURE_DATA = 100
# Transports an analyser can run on (its `protocol`).
TRANSPORTS = frozenset({"tcp", "udp"})
# Greenlets kept, once their analyser has returned, to run the next ones: a
# new greenlet costs a fresh Python frame stack (in CPython 3.11 an mmap and
# a munmap per connection) and a first switch; a kept one, a switch.
MAX_IDLE_WORKERS = 256


class Gap(Exception):
    """Bytes of a stream are missing (never captured).

    `size` bytes are lost at this point; `data` holds what the read got before
    the hole.  After a Gap the stream continues after the hole, so an analyser
    may catch it and resynchronise."""

    def __init__(self, side: int, size: int, data: bytes = b""):
        # (args are set by BaseException; the message is made only when read:
        # a Gap or StreamEnd is raised at the end of every connection read.)
        self.side, self.size, self.data = side, size, data

    def __str__(self) -> str:
        return "%d bytes missing on the %s side" % (self.size, SIDE_NAMES[self.side])


class ProtocolViolation(Exception):
    """Raised by `Analyser.violation()`: the bytes are not this protocol."""

    def __init__(self, reason: str, data: bytes | str = b""):
        super().__init__(reason)
        self.reason, self.data = reason, data


class HandOver(Exception):
    """Raised by `Analyser.hand_over()` to end main(); never seen by users."""


class StreamEnd(EOFError):
    """The side was closed (FIN, RST, or the connection ended) before the read
    could be met; `data` holds the bytes that were there."""

    def __init__(self, side: int, data: bytes = b""):
        self.side, self.data = side, data

    def __str__(self) -> str:
        return "end of the %s stream" % SIDE_NAMES[self.side]


class ConnId(namedtuple("ConnId", ("orig_h", "orig_p", "resp_h", "resp_p", "proto"))):
    """Zeek's conn_id: both ends and the transport ("tcp", "udp" or "icmp")."""
    __slots__ = ()


class Connection:
    """What an analyser knows about its connection.  (An extension type in
    the build, runtime.pxd: one is made for every analysed connection.)"""

    def __init__(self, uid: str, id: ConnId, start_time: float,
                 parent_uid: str | None = None, expectation: dict | None = None,
                 services: list[str] | None = None, session: dict | None = None):
        self.uid = uid
        self.id = id
        self.start_time = start_time
        # Set when the connection was announced by another one (expect()).
        self.parent_uid = parent_uid
        self.expectation = expectation
        self.services = [] if services is None else services
        # State shared by a session: this connection and those it announced
        # (expected connections get their parent's dict).
        self.session = {} if session is None else session

    def __repr__(self) -> str:
        return "Connection(uid=%r, id=%r, start_time=%r, services=%r)" % (
            self.uid, self.id, self.start_time, self.services)


class AnalyserCore:
    """What an analyser is per connection: its state and its reads.  Analyser
    (below) adds what a protocol declares; the build makes this half an
    extension type whose state the wake-up path reads as struct fields
    (runtime.pxd), which a class with __init_subclass__ cannot be."""

    def __init__(self, runtime: "Runtime", slot: int, conn: Connection, config: dict):
        self._rt = runtime
        self._slot = slot
        self.conn = conn
        self.config = config
        self._confirmed = False
        self._candidates: list[tuple[type, dict]] = []   # who goes next on a violation
        self._recording: Recording | None = None         # reads kept until confirmation
        self._replay: Recording | None = None            # a violated candidate's reads
        self._ends_in_a_row = 0
        self._last_side = ORIG
        self._deferred: Exception | None = None          # a gap or end read_lines met
        self._waiting_datagram = False                   # blocked in read_datagram()
        self._finished = False                           # main() has returned (or failed)
        self._into: tuple | None = None                  # (handler, limit) of read_any_into()
        self._named_service = False                      # confirm() named the service
        self._children = 0                               # expected connections still open
        # Where its class's time goes (Runtime.seconds), added to per wake-up.
        self._stopwatch = runtime.stopwatch(getattr(type(self), "name", type(self).__name__))

    # -- what subclasses write ---------------------------------------------------

    def main(self) -> None:
        raise NotImplementedError

    def expected_started(self, conn: Connection, meta: dict) -> None:
        """A connection this analyser expect()ed has appeared.  Runs outside
        main(): it must not read."""

    def expected_ended(self, conn_row: dict, meta: dict) -> None:
        """A connection this analyser expect()ed has ended; `conn_row` is its
        conn.log row (sizes, state, uid), to read: conn.log has its own copy.
        Runs outside main(): no reads."""

    # -- detection ------------------------------------------------------------------

    def confirm(self) -> None:
        """The bytes are this protocol: name the service in conn.log and stop
        keeping bytes for other candidates."""
        if not self._confirmed:
            self._confirmed = True
            self._recording = None
            self._candidates = []
            self._rt.confirmed(self)

    def violation(self, reason: str, data: bytes | str = b"") -> None:
        """The bytes are not this protocol (or break it beyond repair): ends
        this analyser for the connection, reported in analyzer.log with
        `data` (the offending input); before confirm(), the next candidate
        gets the streams from their start.  Does not return."""
        raise ProtocolViolation(reason, data)

    @property
    def confirmed(self) -> bool:
        return self._confirmed

    # -- blocking reads ------------------------------------------------------------

    def read(self, side: int, n: int) -> bytes:
        """Exactly n bytes of one side; blocks until they are there."""
        if n <= 0:
            return b""
        if n > MAX_READ:
            raise ValueError("read of %d bytes: at most %d at a time (skip() or "
                             "read_and_skip() a larger span)" % (n, MAX_READ))
        return self._request(side, WANT_BYTES, n)

    def read_line(self, side: int, limit: int = 8192) -> bytes:
        """Bytes up to and including b"\\n"; at most `limit` bytes (a longer
        line comes back cut, without its newline)."""
        return self._request(side, WANT_LINE, limit)

    def read_lines(self, side: int, limit: int = 8192,
                   max_lines: int = MAX_LINES_PER_READ) -> list[bytes]:
        """Every complete line of a side that is already there (at least one:
        blocks like read_line until there is one), in one wake-up.  A gap or
        the end met after the first line is raised by the next read."""
        lines = [self.read_line(side, limit)]
        if self._replay is not None:
            return lines
        streams = self._rt.streams
        while len(lines) < max_lines:
            result = stream_request(streams, self._slot, side, WANT_LINE, limit)
            if result is None:
                streams.cancel(self._slot)      # nothing more now: do not wait
                break
            code, got_side, payload, extra = result
            if code != R_DATA:
                try:
                    self._not_data(code, got_side, payload, extra)
                except (Gap, StreamEnd) as exc:
                    self._deferred = exc
                break
            if self._recording is not None and not self._recording.add(got_side, payload):
                self._recording = None
            lines.append(payload)
        return lines

    def read_some(self, side: int, limit: int = 65536) -> bytes:
        """Whatever is there (at least one byte, at most `limit`)."""
        return self._request(side, WANT_SOME, limit)

    def read_any(self, limit: int = 65536) -> tuple[int, bytes]:
        """For protocols whose sides are not in lock-step: (side, bytes) from
        whichever side has data first."""
        data = self._request(ANY, WANT_SOME, limit)
        return self._last_side, data

    def read_any_into(self, handler: Callable[[int, bytes], Any], limit: int = 65536) -> None:
        """The loop `while not handler(*self.read_any(limit)): pass`, for an
        analyser that cuts both sides itself (a sans-IO parser fed chunk by
        chunk): each chunk goes to handler(side, data) as it comes, called by
        the engine directly, without switching into this analyser's greenlet
        and back (two switches per chunk otherwise).  Returns when the
        handler returns a true value; raises Gap or StreamEnd as read_any()
        would.  The handler must not read (it runs outside main()); what it
        raises (violation(), an error) is raised here, in main()."""
        rt = self._rt
        while True:
            if self._replay is not None or self._deferred is not None:
                side, data = self.read_any(limit)      # the recorded bytes first
                if handler(side, data):
                    return
                continue
            result = stream_request(rt.streams, self._slot, ANY, WANT_SOME, limit)
            if result is None:
                # Nothing there: the engine hands the chunks to the handler as
                # they come, and wakes this greenlet at a gap, the end, or
                # when the handler says it is done.
                if greenlet.getcurrent() is not self._greenlet:
                    raise RuntimeError("analyser reads must happen inside main()")
                self._ends_in_a_row = 0
                self._into = (handler, limit)
                try:
                    result = rt.main_greenlet.switch()
                finally:
                    self._into = None
                if result is None:
                    return                             # the handler is done
            code, side, payload, extra = result
            self._last_side = side
            if code != R_DATA:
                self._not_data(code, side, payload, extra)
            recording = self._recording
            if recording is not None and not recording.add(side, payload):
                self._recording = None
            if handler(side, payload):
                return

    def peek_any(self, limit: int = 4096) -> tuple[int, bytes]:
        """(side, the first bytes of that side) as soon as either side has more
        than the last peek saw.  Consumes nothing."""
        data = self._request(ANY, WANT_PEEK, limit)
        return self._last_side, data

    def read_datagram(self) -> tuple[int, bytes]:
        """UDP: the next datagram of either side, whole, as (side, payload);
        blocks until one arrives.  Raises StreamEnd when the flow has ended."""
        replay = self._replay
        if replay is not None:
            side, data = replay.chunks.popleft()
            if not replay.chunks:
                self._replay = None
        else:
            if greenlet.getcurrent() is not self._greenlet:
                raise RuntimeError("analyser reads must happen inside main()")
            self._waiting_datagram = True
            try:
                code, side, data, _ = self._rt.main_greenlet.switch()
            finally:
                self._waiting_datagram = False
            if code != R_DATA:
                return self._not_data(code, ORIG, b"", 0)
        if self._recording is not None and not self._recording.add(side, data):
            self._recording = None
        self._last_side = side
        return side, data

    def read_and_skip(self, side: int, length: int, keep: int) -> bytes:
        """Of the next `length` bytes, return the first `keep` and skip the
        rest in compiled code (the rest never reaches Python)."""
        keep = min(keep, length)
        head = self.read(side, keep) if keep else b""
        if length > keep:
            self.skip(side, length - keep)
        return head

    def skip(self, side: int, n: int) -> None:
        """Discard the next n bytes of a side without reading them."""
        if n > 0:
            self._recording = None         # skipped bytes cannot be replayed
            if self._replay is not None:
                n = self._replay.discard(side, n)
            if n > 0:
                self._rt.streams.skip(self._slot, side, n)

    def unskipped(self, side: int) -> int:
        """Of the bytes skip() and read_and_skip() were asked to discard on a
        side, those that have not come: after StreamEnd, how far short of a
        skipped span the side ended (a body cut by the end of the capture)."""
        streams = self._rt.streams
        if streams is None:
            return 0
        try:
            return streams.pending_skip(self._slot, side)
        except KeyError:
            return 0                       # no stream state any more

    # -- telling the engine things ------------------------------------------------------

    def emit(self, kind: str, **fields) -> None:
        """An application event: written with the connection's uid, 5-tuple and
        the trace time."""
        self._rt.emit(self, kind, fields)

    @property
    def events_wanted(self) -> bool:
        """True when events go somewhere (--events, Redis, the metrics).  When
        False an analyser may leave out fields that cost to make and call
        emit(kind) alone: the event is still counted."""
        return self._rt._emit is not None

    def log(self, path: str, row: dict) -> None:
        """Write a row to one of the logs this analyser declares in `logs`
        (path "rpc" is rpc.log); keys are its field names, missing = unset."""
        if path not in self.declared_logs:
            raise ValueError("analyser %s writes log %r but declares only %s in `logs`"
                             % (self.name, path, sorted(self.declared_logs) or "none"))
        if self._rt.no_payload and self.payload_fields:
            row = {k: (None if k in self.payload_fields else v) for k, v in row.items()}
        self._rt.log(path, row)

    def weird(self, name: str, **fields) -> None:
        """A protocol anomaly: an event and a counter, never a crash."""
        self._rt.weird(self, name, fields)

    def bulk(self, side: int | None = None) -> None:
        """Hand a side (or both) to compiled byte counting: from now on no
        Python runs for its packets.  Reads on it raise StreamEnd."""
        self._recording = None
        for s in (ORIG, RESP) if side is None else (side,):
            self._rt.streams.bulk(self._slot, s)

    def release(self, side: int | None = None) -> None:
        """Stop reassembly and free the buffers of a side (or both) before the
        connection ends; its counting goes on."""
        self._recording = None
        for s in (ORIG, RESP) if side is None else (side,):
            self._rt.streams.release(self._slot, s)

    def hand_over(self, analyser: "str | type[Analyser]", config: dict | None = None,
                  unread: dict[int, bytes] | None = None) -> None:
        """End this analyser and give the connection to another one (a class or
        a name), which reads on from where this one stopped.  `unread`: bytes
        of a side this one read but did not use ({side: bytes}); the next one
        reads them first.  Does not return."""
        self._rt.hand_over(self, analyser, config, unread)
        raise HandOver()

    def detect_rest(self, unread: dict[int, bytes] | None = None) -> None:
        """The rest of the connection is some other protocol (after an HTTP
        CONNECT, a STARTTLS-like switch to an unknown protocol): content
        detection from here.  The next bytes (`unread` first, else the first
        bytes either side sends next) are matched against the run's
        signatures; the analyser they name takes the connection, as with
        hand_over().  Returns, with the streams released, when none matches
        (or when bytes are missing where the next protocol would start:
        nothing to match)."""
        pending = {side: data for side, data in (unread or {}).items() if data}
        if not pending:
            try:
                side, data = self.peek_any(64)
            except Gap:
                data = b""
            pending = {side: data} if data else {}
        ranked = self._rt.rank_by_content(pending, exclude=type(self)) if pending else []
        if ranked:
            cls, config = ranked[0]
            self._rt.hand_over(self, cls, config, unread, ranked[1:])
            raise HandOver()
        self._rt.counters["undetected_rest"] = self._rt.counters.get("undetected_rest", 0) + 1
        self.release()

    def expect(self, resp_h: str, resp_p: int | None, *, orig_h: str | None = None,
               proto: str = "tcp", timeout: float = 300.0,
               analyser: str | type | None = None, **meta) -> "Expectation":
        """Announce a connection to resp_h:resp_p (from orig_h, or from anyone;
        resp_p None = any port, which needs orig_h).  When it appears within
        `timeout` seconds of trace time it is bound to `analyser` (a class;
        None = count it in bulk) and linked to this connection: it shares
        this connection's `session` and sees this analyser as its `parent`;
        `meta` travels with it.  Returns the expectation; `.cancel()`
        withdraws it."""
        return self._rt.expect(self, resp_h, resp_p, orig_h, proto, timeout, analyser, meta)

    def add_service(self, name: str) -> None:
        """Name the application protocol in conn.log's service field."""
        if name not in self.conn.services:
            self.conn.services.append(name)
            if self._rt.pcap_rule is not None:
                self._rt.pcap_note(self._slot, "service", name)

    # -- sessions -------------------------------------------------------------------------

    @property
    def parent(self) -> "Analyser | None":
        """The analyser of the connection that announced this one (expect()),
        while it is known to the runtime; None otherwise."""
        return self._rt.by_uid.get(self.conn.parent_uid) if self.conn.parent_uid else None

    @property
    def session(self) -> dict:
        """State shared by a session: this connection and every connection
        it (or they) announced with expect()."""
        return self.conn.session

    @property
    def host_pair(self) -> dict:
        """State shared by all analysed connections between the same two
        addresses, while one of them lives."""
        return self._rt.host_pair_state(self.conn)

    @property
    def uid(self) -> str:
        return self.conn.uid

    @property
    def id(self) -> ConnId:
        return self.conn.id

    @property
    def ts(self) -> float:
        """The trace time of the packet being processed."""
        return self._rt.now_ts()

    # -- plumbing -------------------------------------------------------------------------

    def _request(self, side: int, want: int, n: int):
        """One read: the stream layer's answer, waiting (a greenlet switch) when
        it has none yet.  The common path is this function alone."""
        if self._replay is not None:
            return self._request_replaying(side, want, n)
        if self._deferred is not None and side in (self._deferred.side, ANY):
            exc, self._deferred = self._deferred, None
            raise exc
        rt = self._rt
        result = stream_request(rt.streams, self._slot, side, want, n)
        if result is None:
            if greenlet.getcurrent() is not self._greenlet:
                raise RuntimeError("analyser reads must happen inside main()")
            self._ends_in_a_row = 0
            result = rt.main_greenlet.switch()
        code, got_side, payload, extra = result
        self._last_side = got_side
        if code == R_DATA:
            recording = self._recording
            if recording is not None and want != WANT_PEEK and \
                    not recording.add(got_side, payload):
                self._recording = None     # too much to keep: no further candidate
            return payload
        return self._not_data(code, got_side, payload, extra)

    def _not_data(self, code: int, side: int, payload: bytes, extra: int):
        """Raise what a gap or an end means for the read."""
        if code == R_GAP:
            self._recording = None         # a hole cannot be replayed
            raise Gap(side, extra, payload)
        # Reading on after the end would spin the engine forever.
        self._ends_in_a_row += 1
        if self._ends_in_a_row > MAX_READS_AFTER_END:
            raise RuntimeError("%d reads after the end of the stream: main() must "
                               "return when reads raise StreamEnd" % MAX_READS_AFTER_END)
        raise StreamEnd(side, payload)

    def _request_replaying(self, side: int, want: int, n: int):
        """A read while an earlier candidate's recording is being replayed:
        recorded bytes first, the stream for the rest."""
        replay = self._replay
        prefix = b""
        if want == WANT_PEEK:
            got = replay.peek()
            if got is not None:
                self._last_side = got[0]
                return got[1]
        else:
            got_side, prefix, done = replay.take(side, want, n)
            if not replay:
                self._replay = None
            if done:
                self._last_side = got_side
                if self._recording is not None:
                    self._recording.add(got_side, prefix)
                return prefix
            if prefix:
                side = got_side
                if want != WANT_SOME:
                    n -= len(prefix)
                if self._recording is not None and not self._recording.add(side, prefix):
                    self._recording = None
        saved, self._replay = self._replay, None
        try:
            data = self._request(side, want, n)
        except (Gap, StreamEnd) as exc:
            exc.data = prefix + exc.data
            raise
        finally:
            if saved is not None and self._replay is None and saved:
                self._replay = saved
        if want == WANT_PEEK:
            return replay.pending(self._last_side) + data
        return prefix + data if prefix else data


class Analyser(AnalyserCore):
    """Base class of protocol analysers.

    Subclasses set `name`, say how they are chosen (`ports` as hints,
    `signatures` on the first payload of a side, or another analyser's
    `expect()`), declare their `options` ({name: (default, help)}, set with
    `--analyser NAME:key=value`) and their `logs` ({path: [(field, type),
    ...]}), and implement `main()`.
    """
    name: ClassVar[str] = ""
    ports: ClassVar[frozenset[int] | set[int]] = frozenset()
    # "tcp" (byte streams: read, read_line, ...), "udp" (datagrams:
    # read_datagram) or both, as a tuple: ("udp", "tcp").
    protocol: ClassVar[str | tuple[str, ...]] = "tcp"
    options: ClassVar[dict[str, tuple[Any, str]]] = {}
    # What the first payload of a side looks like (checked in compiled code).
    signatures: ClassVar[Sequence[Signature]] = ()
    # Logs this analyser writes with self.log(path, row): path -> fields, each
    # (name, Zeek type) or (name, Zeek type, doc) or analyser.schemas.Field.
    logs: ClassVar[dict[str, Sequence]] = {}
    # conn.log's service once confirm() is called (None: the analyser's name;
    # "": none).  analyzer.log names the analyser `name.upper()`.
    service: ClassVar[str | None] = None
    # Fields of its logs and events that carry what users sent (names, paths,
    # commands, message text): left unset under --no-payload-in-logs.
    payload_fields: ClassVar[frozenset[str]] = frozenset()
    # Filled in by __init_subclass__: the checked logs of the class and its bases.
    declared_logs: ClassVar[dict[str, tuple[Field, ...]]] = {}

    def __init_subclass__(cls, **kwargs):
        """Check what a subclass declares when it is defined, so a mistake is
        one clear message at load time rather than a failure mid-trace."""
        super().__init_subclass__(**kwargs)
        logs = {}
        for base in reversed(cls.__mro__[1:]):
            logs.update(getattr(base, "declared_logs", {}))
        for path, fields in cls.__dict__.get("logs", {}).items():
            try:
                logs[path] = schema_of(path, fields)
            except ValueError as exc:
                raise TypeError("analyser %s: %s" % (cls.name or cls.__name__, exc)) from None
        cls.declared_logs = logs
        if not cls.transports() or not cls.transports() <= TRANSPORTS:
            raise TypeError("analyser %s: protocol is 'tcp', 'udp' or both as a tuple, not %r"
                            % (cls.name or cls.__name__, cls.protocol))
        for sig in cls.__dict__.get("signatures", ()):
            if not isinstance(sig, Signature):
                raise TypeError("analyser %s: signatures are analyser.Signature, not %r"
                                % (cls.name or cls.__name__, sig))
            try:
                sig.compiled()
            except ValueError as exc:
                raise TypeError("analyser %s: %s" % (cls.name or cls.__name__, exc)) from None

    @classmethod
    def transports(cls) -> frozenset[str]:
        """The transports this analyser runs on ("tcp", "udp")."""
        proto = cls.protocol
        return frozenset((proto,) if isinstance(proto, str) else proto)


class Recording:
    """The bytes an unconfirmed analyser read, in the order it read them, for
    the next candidate to read again (see the module's theory of operation)."""

    def __init__(self, limit: int = DETECTION_BUFFER):
        self.chunks: deque[list] = deque()     # [side, bytes], in reading order
        self.size = [0, 0]
        self.limit = limit
        self.peeked = False

    def __bool__(self) -> bool:
        return bool(self.chunks)

    def add(self, side: int, data: bytes) -> bool:
        """Keep `data`; False when the side would exceed the limit."""
        if not data:
            return True
        self.size[side] += len(data)
        if self.size[side] > self.limit:
            return False
        if self.chunks and self.chunks[-1][0] == side:
            self.chunks[-1][1] += data
        else:
            self.chunks.append([side, data])
        return True

    def pending(self, side: int) -> bytes:
        return b"".join(c[1] for c in self.chunks if c[0] == side)

    def peek(self) -> tuple[int, bytes] | None:
        """(side, its recorded bytes) once; None afterwards (the stream goes on)."""
        if self.peeked or not self.chunks:
            return None
        self.peeked = True
        side = self.chunks[0][0]
        return side, self.pending(side)

    def discard(self, side: int, n: int) -> int:
        """Skip up to n recorded bytes of a side; returns how many are left to skip."""
        for c in list(self.chunks):
            if n <= 0:
                break
            if c[0] != side:
                continue
            take = min(n, len(c[1]))
            c[1] = c[1][take:]
            n -= take
            if not c[1]:
                self.chunks.remove(c)
        return n

    def take(self, side: int, want: int, n: int) -> tuple[int, bytes, bool]:
        """(side, bytes, done): what a read gets from the recording, and
        whether that satisfies it (else the stream supplies the rest)."""
        if side == ANY:
            if not self.chunks:
                return ORIG, b"", False
            side = self.chunks[0][0]
        out = b""
        for c in list(self.chunks):
            if c[0] != side:
                continue
            data = c[1]
            if want == WANT_LINE:
                nl = data.find(b"\n", 0, n - len(out))
                if nl >= 0:
                    cut = nl + 1
                else:
                    cut = min(len(data), n - len(out))
            elif want == WANT_BYTES:
                cut = min(len(data), n - len(out))
            else:                                   # WANT_SOME
                cut = min(len(data), n)
            out += data[:cut]
            c[1] = data[cut:]
            if not c[1]:
                self.chunks.remove(c)
            if want == WANT_SOME or (want == WANT_LINE and out.endswith(b"\n")) \
                    or len(out) >= n:
                return side, out, True
        return side, out, False


class DatagramRecording(Recording):
    """The datagrams an unconfirmed datagram analyser read, each kept whole
    (at most DETECTION_BUFFER bytes a side), for the next candidate."""

    def add(self, side: int, data: bytes) -> bool:
        self.size[side] += len(data)
        if self.size[side] > self.limit:
            return False
        self.chunks.append([side, data])
        return True


class Expectation(SlotRecord):
    """A connection an analyser announced (FTP's PASV/PORT reply, ...): the
    next one to resp_h:resp_p (from orig_h, if given) before `deadline`
    belongs to parent_uid's session.  Equal when every field is (what
    cancel_expectation's membership test relies on).  A plain class, not a
    dataclass: importing dataclasses (and with it inspect) costs every
    start-up some 8 ms."""
    __slots__ = ("resp_h", "resp_p", "orig_h", "proto", "deadline", "analyser", "parent_uid",
                 "meta", "runtime")

    def __init__(self, resp_h: str, resp_p: int | None, orig_h: str | None, proto: str,
                 deadline: float, analyser: type | None, parent_uid: str, meta: dict,
                 runtime: "Runtime | None" = None):
        self.resp_h, self.resp_p, self.orig_h, self.proto = resp_h, resp_p, orig_h, proto
        self.deadline, self.analyser, self.parent_uid = deadline, analyser, parent_uid
        self.meta, self.runtime = meta, runtime

    def cancel(self) -> bool:
        """Withdraw it (if it has not been met yet); True if it was pending."""
        return self.runtime.cancel_expectation(self) if self.runtime else False


class Stopwatch:
    """The time one analyser's code has taken, in seconds: added to at the
    end of every wake-up (a C field in the build)."""
    __slots__ = ("seconds",)

    def __init__(self):
        self.seconds = 0.0


class Runtime(StreamReader):
    """Runs analysers in greenlets for one engine.  The stream layer hands it
    met requests through ready() (a StreamReader's: a C call in the build)."""

    def __init__(self, *, emit: Callable[[dict], None] | None = None, clock=lambda: 0.0,
                 log: Callable[[str, dict], None] | None = None,
                 log_writers: dict | None = None, no_payload: bool = False):
        """no_payload: analysers' payload_fields (and analyzer.log's
        failure_data) are left unset in every log and event.  log_writers:
        {path: write(row)} for the logs whose rows go to their file and
        nowhere else (the sinks fill it as they learn it); the others go to
        `log(path, row)`."""
        self.no_payload = no_payload
        self.streams = None                # set by the engine (analyser.streams.Streams)
        self.main_greenlet = load_greenlet().getcurrent()
        self.instances: dict[int, Analyser] = {}
        self._free_slots: list[int] = []
        self._next_slot = 0
        self._emit = emit
        self._log = log
        self._log_writers = {} if log_writers is None else log_writers
        self.now = clock
        self.trace_clock = None            # set by the engine: its flow table
        self.expectations: dict[tuple, list[Expectation]] = {}
        self.counters = {"analysers_started": 0, "analysers_finished": 0,
                         "analyser_errors": 0, "events_emitted": 0, "weirds": 0,
                         "expectations_added": 0, "expectations_matched": 0,
                         "expectations_expired": 0, "confirmations": 0, "violations": 0,
                         "candidates_tried": 0, "candidates_not_replayable": 0,
                         "log_rows": 0}
        self.error_log: list[dict] = []
        self.by_uid: dict[str, Analyser] = {}
        self._stopwatches: dict[str, Stopwatch] = {}   # analyser name -> time in its code
        # The wake-up running now (analyser/watchdog.py stops one that runs too long).
        self.wakeup_started = 0.0
        self.wakeup_seq = 0
        self.timed_out_seq = -1
        self.watchdog = None
        self.events_by_kind: dict[str, int] = {}
        # slot -> (class, config, candidates after it, recording to replay)
        self._replacements: dict[int, tuple] = {}
        # Every analyser the run knows by name, for hand_over("name").
        self.classes: dict[str, tuple[type, dict]] = {}
        self._host_pairs: dict[tuple, list] = {}     # (addr, addr) -> [state, live conns]
        # slot -> more candidates found by signatures since the analyser started
        # (set by the flow table; asked only when an analyser gives up).
        self.candidates_of_slot: Callable[[int], list] = lambda slot: []
        # slot -> None: a datagram analyser ended, its flow is only counted
        # from now on (set by the flow table).
        self.datagrams_done: Callable[[int], None] = lambda slot: None
        # --pcap-out by service, analyser or event: (kind, value) and the flow
        # table's pcap_select_slot (set by the engine).
        self.pcap_rule: tuple[str, str] | None = None
        self.pcap_select: Callable[[int], None] | None = None
        self.detecting = False      # the run has analysers with signatures
        # Greenlets waiting for the next analyser to run (see _work).  Only a
        # runtime on the thread's root greenlet keeps them; an inner one's
        # (analyser/inner.py) end with their analyser, as their carrier may.
        self._idle_workers: list[greenlet.greenlet] = []
        self._keeps_workers = self.main_greenlet.parent is None

    def stopwatch(self, name: str) -> "Stopwatch":
        """The time of analyser `name`'s code (one per name, shared)."""
        watch = self._stopwatches.get(name)
        if watch is None:
            watch = self._stopwatches[name] = Stopwatch()
        return watch

    @property
    def seconds(self) -> dict[str, float]:
        """Analyser name -> seconds spent in its code."""
        return {name: watch.seconds for name, watch in self._stopwatches.items()}

    def set_classes(self, analysers) -> None:
        """The run's analysers, [(class, config)]: hand_over() finds them by name."""
        self.classes = {cls.name: (cls, config) for cls, config in analysers}

    # -- the clock -------------------------------------------------------------------

    def now_ts(self) -> float:
        """The trace time: the flow table's when the engine set it as the
        clock (`trace_clock`, read as a C field), else `clock()` (a runtime
        without an engine: analyser.testing's)."""
        clock = self.trace_clock
        if clock is not None:
            return clock.now
        return self.now()

    # -- slots and greenlets ---------------------------------------------------------

    def new_slot(self) -> int:
        if self._free_slots:
            return self._free_slots.pop()
        self._next_slot += 1
        return self._next_slot - 1

    def start(self, cls: type[Analyser], slot: int, conn: Connection, config: dict,
              candidates: Sequence[tuple[type, dict]] = (),
              replay: Recording | None = None, detect: bool = True) -> Analyser:
        """Create the analyser and run main() up to its first blocking read.
        `candidates` take the connection, in order, if it reports a violation
        before confirming; `replay` holds what an earlier candidate read.
        `detect` False (an expected connection): no candidate can follow, so
        nothing is recorded."""
        a = cls(self, slot, conn, config)
        if self.pcap_rule is not None:
            self.pcap_note(slot, "analyser", cls.name)
        a._candidates = list(candidates)
        # Recorded only where a successor can exist: another candidate now, or
        # signatures in the run that may name one later.
        if detect and (self.detecting or candidates):
            a._recording = DatagramRecording() if conn.id.proto == "udp" else Recording()
        else:
            a._recording = None
        a._replay = replay if replay else None
        self.instances[slot] = a
        self.by_uid[conn.uid] = a
        a._greenlet = self._worker()
        self.counters["analysers_started"] += 1
        self._wake(a, a)
        self._apply_replacement(slot)
        return self.instances.get(slot, a)

    def _wake(self, a: Analyser, value, throw: bool = False) -> None:
        """Run `a` until it waits again: timed (seconds per analyser) and
        watched (a wake-up past the time limit is stopped).  `value` is what
        its pending read gets (the analyser itself, to start it), or with
        `throw` the exception its read raises."""
        self.wakeup_seq += 1
        seq = self.wakeup_seq
        started = self.wakeup_started = perf_counter()
        try:
            if throw:
                # With its traceback: an error report names the handler's line.
                a._greenlet.throw(type(value), value, value.__traceback__)
            else:
                a._greenlet.switch(value)
        except AnalyserTimeout:
            pass            # raised in the instant after the analyser had returned
        finally:
            self.wakeup_started = 0.0
            if self.timed_out_seq == seq and self.watchdog is not None:
                clear_in(self.watchdog.thread_id)
        a._stopwatch.seconds += perf_counter() - started

    def rank_by_content(self, pending: dict[int, bytes], exclude: type | None = None
                        ) -> list[tuple[type, dict]]:
        """The run's TCP analysers whose signatures match the first bytes of
        the sides (`pending`: {side: bytes}), in detection order: a subclass
        before the class it extends, then by name.  A class with signatures
        for a side that has bytes must match them (as Zeek's signatures that
        require the reverse one): HTTP needs a status line back, not only a
        request.  Python, not the compiled matcher: for streams that start
        mid-connection or inside another protocol, once each."""
        found = []
        for cls, config in self.classes.values():
            if cls is exclude or "tcp" not in cls.transports() or not cls.signatures:
                continue
            verdicts = [any(sig.matches(data) for sig in cls.signatures if sig.side == side)
                        for side, data in pending.items() if data
                        and any(sig.side == side for sig in cls.signatures)]
            if verdicts and all(verdicts):
                found.append((-len(cls.__mro__), cls.name, cls, config))
        found.sort(key=lambda x: (x[0], x[1]))
        return [(cls, config) for _, _, cls, config in found]

    def hand_over(self, a: Analyser, analyser, config: dict | None,
                  unread: dict[int, bytes] | None = None,
                  candidates: Sequence[tuple[type, dict]] = ()) -> None:
        """Give a connection to another analyser once `a` returns."""
        if isinstance(analyser, str):
            if analyser not in self.classes:
                raise ValueError("hand_over: no analyser %r in this run (known: %s)"
                                 % (analyser, ", ".join(sorted(self.classes))))
            cls, default_config = self.classes[analyser]
        else:
            cls = analyser
            default_config = self.classes.get(cls.name, (cls, {}))[1]
        if config is None:
            config = dict(default_config)
            for key, (default, _) in cls.options.items():
                config.setdefault(key, default)
        # The bytes `a` read but left unused come first, then what `a` had not
        # yet read of an earlier candidate's recording (replayed to `a` after a
        # violation): both already left the stream layer.
        replay = None
        if (unread and any(unread.values())) or a._replay:
            replay = Recording(limit=MAX_READ)
            for side in sorted(unread or {}):
                replay.add(side, unread[side])
            for side, data in (a._replay.chunks if a._replay else ()):
                replay.add(side, data)
        self._replacements[a._slot] = (cls, config, tuple(candidates), replay or None)

    def _apply_replacement(self, slot: int) -> None:
        repl = self._replacements.pop(slot, None)
        if repl is None:
            return
        old = self.instances.get(slot)
        if old is None:
            return
        cls, config, candidates, replay = repl
        self.start(cls, slot, old.conn, config, candidates, replay)

    def _worker(self) -> greenlet.greenlet:
        """A greenlet to run an analyser in: an idle one, else a new one."""
        idle = self._idle_workers
        while idle:
            g = idle.pop()
            if not g.dead:          # a time limit may have stopped it between two analysers
                return g
        return greenlet.greenlet(self._work, parent=self.main_greenlet)

    def _work(self, a: Analyser) -> None:
        """A worker greenlet's life: run an analyser, then wait (idle) to be
        switched to with the next one."""
        while True:
            try:
                self._run(a)
            finally:
                a._finished = True
            if not self._keeps_workers or len(self._idle_workers) >= MAX_IDLE_WORKERS:
                return
            self._idle_workers.append(greenlet.getcurrent())
            a = self.main_greenlet.switch()

    def _run(self, a: Analyser) -> None:
        try:
            a.main()
        except (StreamEnd, HandOver, greenlet.GreenletExit):
            pass
        except ProtocolViolation as v:
            self._violation(a, v.reason, v.data)
        except (Exception, AnalyserTimeout) as exc:
            self._error(a, exc)
            if not a._confirmed:
                self._next_candidate(a)
        finally:
            self.counters["analysers_finished"] += 1
            # Nothing will read this connection any more: stop buffering it
            # (unless another analyser takes it over).
            if self.instances.get(a._slot) is a and a._slot not in self._replacements \
                    and a.conn.id.proto == "udp":
                self.datagrams_done(a._slot)
            elif (self.streams is not None and self.instances.get(a._slot) is a
                    and a._slot not in self._replacements):
                try:
                    self.streams.release(a._slot, ORIG)
                    self.streams.release(a._slot, RESP)
                except KeyError:
                    pass

    def _next_candidate(self, a: Analyser) -> None:
        """`a` gave up before confirming: the next candidate, if any, gets the
        connection with what `a` read replayed first."""
        for cand in self.candidates_of_slot(a._slot):
            if cand[0] is not type(a) and all(c[0] is not cand[0] for c in a._candidates):
                a._candidates.append(cand)
        if not a._candidates:
            return
        if a._recording is None:
            self.counters["candidates_not_replayable"] += 1
            return
        replay = a._recording
        if a._replay:
            # What `a` had not yet read of an earlier recording comes after.
            for side, data in a._replay.chunks:
                replay.add(side, data)
        self.counters["candidates_tried"] += 1
        cls, config = a._candidates[0]
        self._replacements[a._slot] = (cls, config, a._candidates[1:], replay)

    def pcap_note(self, slot: int, kind: str, value: str) -> None:
        """A service, analyser or event of a connection: chosen for --pcap-out?"""
        if self.pcap_rule == (kind, value) and self.pcap_select is not None:
            self.pcap_select(slot)

    def confirmed(self, a: Analyser) -> None:
        self.counters["confirmations"] += 1
        service = a.name if a.service is None else a.service
        if service and service not in a.conn.services:
            a.add_service(service)
            a._named_service = True       # so a violation takes back only its own
        self.emit(a, "analyzer_confirmation",
                  {"analyzer_name": a.name.upper()} if self._emit is not None else {})

    def _violation(self, a: Analyser, reason: str, data) -> None:
        """analyzer.log and an event; the service it named is taken back."""
        self.counters["violations"] += 1
        if self.no_payload:
            data = None                     # the input that did not fit is payload
        elif isinstance(data, (bytes, bytearray)):
            data = bytes(data[:MAX_FAILURE_DATA]).decode("utf-8", "backslashreplace")
        else:
            data = str(data)[:MAX_FAILURE_DATA]
        cid = a.conn.id
        name = a.name.upper()
        self.log("analyzer", {
            "ts": self.now_ts(), "cause": "violation", "analyzer_kind": "protocol",
            "analyzer_name": name,
            "uid": a.conn.uid, "fuid": None, "id.orig_h": cid.orig_h,
            "id.orig_p": cid.orig_p, "id.resp_h": cid.resp_h, "id.resp_p": cid.resp_p,
            "proto": cid.proto, "failure_reason": reason, "failure_data": data})
        self.emit(a, "analyzer_violation", {"analyzer_name": name, "reason": reason,
                                            "data": data, "confirmed": a._confirmed})
        service = a.name if a.service is None else a.service
        if a._confirmed and a._named_service and service in a.conn.services:
            # Only if this analyser named it: the same protocol carried inside
            # a connection that already is it (HTTP in a WebSocket over HTTP)
            # does not take the carrier's name away.
            a.conn.services.remove(service)
        if not a._confirmed:
            self._next_candidate(a)

    def _error(self, a: Analyser, exc: Exception) -> None:
        self.counters["analyser_errors"] += 1
        import traceback               # (only on an error: it costs start-up 4 ms)
        tb = traceback.extract_tb(exc.__traceback__)
        last = tb[-1] if tb else None
        where = "%s:%d in %s" % (last.filename, last.lineno, last.name) if last else "?"
        record = {"analyser": a.name, "error": "%s: %s" % (type(exc).__name__, exc),
                  "where": where, "line": last.line if last else None}
        self.error_log.append(record)
        self.emit(a, "analyser_error", record)

    def engine_error(self, where: str, exc: BaseException) -> None:
        """An exception the compiled engine caught (a sink, a callback, a
        failed start): counted and reported, never only printed."""
        record = {"ts": self.now_ts(), "event": "engine_error", "where": where,
                  "error": "%s: %s" % (type(exc).__name__, exc)}
        if len(self.error_log) < 1000:
            self.error_log.append({"analyser": "engine", "error": record["error"],
                                   "where": where, "line": None})
        self._emit_plain(record)

    def ready(self, slot: int, code: int, side: int, payload: bytes, extra: int) -> None:
        """Called by the stream layer when a pending request can be met."""
        a = self.instances.get(slot)
        if a is None or a._finished:
            return
        into = a._into
        if into is not None and code == R_DATA:
            self._feed_into(a, into, side, payload)
        else:
            self._wake(a, (code, side, payload, extra))
        if self._replacements:
            self._apply_replacement(slot)

    def _feed_into(self, a: Analyser, into: tuple, side: int, payload: bytes) -> None:
        """read_any_into(): chunks to the handler, here, until none is left
        (the request waits again), or the analyser has to run: a gap or the
        end (its read raises them), the handler done (it returns), or an
        exception from the handler (raised in main()).  Timed and watched as
        a wake-up is."""
        handler, limit = into
        streams = self.streams
        slot = a._slot
        self.wakeup_seq += 1
        seq = self.wakeup_seq
        started = self.wakeup_started = perf_counter()
        wake, value = False, None
        try:
            while True:
                a._last_side = side
                recording = a._recording
                if recording is not None and not recording.add(side, payload):
                    a._recording = None
                if handler(side, payload):
                    wake = True                 # value None: read_any_into returns
                    break
                result = stream_request(streams, slot, ANY, WANT_SOME, limit)
                if result is None:
                    break                       # waiting again, still in read_any_into
                if result[0] != R_DATA:
                    wake, value = True, result
                    break
                side, payload = result[1], result[2]
        except (Exception, AnalyserTimeout) as exc:
            wake, value = True, exc             # no request is pending: each was met
        finally:
            self.wakeup_started = 0.0
            if self.timed_out_seq == seq and self.watchdog is not None:
                clear_in(self.watchdog.thread_id)
        a._stopwatch.seconds += perf_counter() - started
        if wake:
            self._wake(a, value, throw=isinstance(value, BaseException))

    def datagram(self, slot: int, side: int, data: bytes) -> None:
        """A UDP datagram for the analyser of `slot` (from the flow table)."""
        a = self.instances.get(slot)
        if a is None or not a._waiting_datagram:
            self.datagrams_done(slot)     # ended, or reading in a way no datagram meets
            return
        self._wake(a, (R_DATA, side, data, 0))
        if self._replacements:
            self._apply_replacement(slot)

    def finish(self, slot: int) -> None:
        """The connection ended (the stream layer has delivered its end)."""
        a = self.instances.get(slot)
        if a is not None and a._waiting_datagram:
            # UDP has no close: the end reaches read_datagram() as StreamEnd,
            # so main() can report what is still open.
            self._wake(a, (R_END, ANY, b"", 0))
            self._replacements.pop(slot, None)
        a = self.instances.pop(slot, None)
        if a is None:
            return
        if not a._children:
            self.by_uid.pop(a.conn.uid, None)
        # else: kept until its expected connections end, so they can report.
        self._leave_host_pair(a.conn)
        g = a._greenlet
        if not a._finished and not g.dead:
            # main() is still waiting on a stream that will never deliver.
            try:
                g.throw(greenlet.GreenletExit)
            except Exception as exc:        # an analyser that fails on its way out
                self._error(a, exc)
        self._free_slots.append(slot)

    def services(self, slot: int) -> list[str]:
        a = self.instances.get(slot)
        return a.conn.services if a is not None else []

    # -- shared state ------------------------------------------------------------------------

    def host_pair_state(self, conn: Connection) -> dict:
        key = tuple(sorted((conn.id.orig_h, conn.id.resp_h)))
        entry = self._host_pairs.get(key)
        if entry is None:
            entry = self._host_pairs[key] = [{}, set()]
        entry[1].add(conn.uid)
        return entry[0]

    def _leave_host_pair(self, conn: Connection) -> None:
        if not self._host_pairs:
            return
        key = tuple(sorted((conn.id.orig_h, conn.id.resp_h)))
        entry = self._host_pairs.get(key)
        if entry is not None:
            entry[1].discard(conn.uid)
            if not entry[1]:
                del self._host_pairs[key]

    # -- events ----------------------------------------------------------------------------

    def emit(self, a: Analyser, kind: str, fields: dict) -> None:
        self._count_event(kind)
        if self.pcap_rule is not None:
            self.pcap_note(a._slot, "event", kind)
        if self._emit is None:
            return
        cid = a.conn.id
        if self.no_payload and a.payload_fields:
            fields = {k: (None if k in a.payload_fields else v) for k, v in fields.items()}
        record = {"ts": self.now_ts(), "event": kind, "analyser": a.name, "uid": a.conn.uid,
                  "id.orig_h": cid.orig_h, "id.orig_p": cid.orig_p,
                  "id.resp_h": cid.resp_h, "id.resp_p": cid.resp_p, "proto": cid.proto}
        record.update(fields)
        self._emit(record)

    def log(self, path: str, row: dict) -> None:
        self.counters["log_rows"] += 1
        write = self._log_writers.get(path)
        if write is not None:
            write(row)                  # straight to its file: one call fewer per row
        elif self._log is not None:
            self._log(path, row)

    def weird(self, a: Analyser, name: str, fields: dict) -> None:
        self.counters["weirds"] += 1
        self.emit(a, "weird", dict(name=name, **fields))

    # -- expected connections -----------------------------------------------------------

    def expect(self, a, resp_h, resp_p, orig_h, proto, timeout, analyser, meta) -> Expectation:
        if resp_p is None and orig_h is None:
            raise ValueError("an expectation for any port needs orig_h")
        self.counters["expectations_added"] += 1
        port = None if resp_p is None else int(resp_p)
        e = Expectation(resp_h, port, orig_h, proto, self.now_ts() + timeout,
                        analyser, a.conn.uid, dict(meta), self)
        self.expectations.setdefault((resp_h, port, proto), []).append(e)
        return e

    def cancel_expectation(self, e: Expectation) -> bool:
        pending = self.expectations.get((e.resp_h, e.resp_p, e.proto))
        if not pending or e not in pending:
            return False
        pending.remove(e)
        if not pending:
            del self.expectations[(e.resp_h, e.resp_p, e.proto)]
        self.counters["expectations_cancelled"] = self.counters.get(
            "expectations_cancelled", 0) + 1
        return True

    def match_expectation(self, orig_h: str, resp_h: str, resp_p: int, proto: str,
                          now: float) -> Expectation | None:
        """The expectation a new connection meets: its exact port first, then
        an any-port one for the same pair of hosts."""
        for key in ((resp_h, resp_p, proto), (resp_h, None, proto)):
            pending = self.expectations.get(key)
            if not pending:
                continue
            keep = [e for e in pending if e.deadline >= now]
            self.counters["expectations_expired"] += len(pending) - len(keep)
            found = None
            for e in keep:
                if e.orig_h is None or e.orig_h == orig_h:
                    found = e
                    break
            if found is not None:
                keep.remove(found)
                self.counters["expectations_matched"] += 1
            if keep:
                self.expectations[key] = keep
            else:
                del self.expectations[key]
            if found is not None:
                return found
        return None

    def expected_started(self, e: Expectation, conn: Connection) -> None:
        conn.parent_uid = e.parent_uid
        conn.expectation = e.meta
        if e.meta.get("service"):
            conn.services.append(e.meta["service"])
        parent = self.by_uid.get(e.parent_uid)
        if parent is not None:
            conn.session = parent.conn.session
        if self._emit is None:
            self._count_event("expected_connection")     # no one reads its fields
        else:
            self._emit_plain({"ts": self.now_ts(), "event": "expected_connection",
                              "uid": conn.uid, "parent_uid": e.parent_uid,
                              "id.orig_h": conn.id.orig_h, "id.orig_p": conn.id.orig_p,
                              "id.resp_h": conn.id.resp_h, "id.resp_p": conn.id.resp_p,
                              "proto": conn.id.proto,
                              "analyser": e.analyser.name if e.analyser else "bulk",
                              **e.meta})
        if parent is not None:
            parent._children += 1
            self._hook(parent, parent.expected_started, conn, e.meta)

    def expected_finished(self, e: Expectation, row: dict) -> None:
        parent = self.by_uid.get(e.parent_uid)
        if parent is not None:
            parent._children -= 1
            self._hook(parent, parent.expected_ended, row, e.meta)
            if parent._children <= 0 and parent._slot not in self.instances:
                self.by_uid.pop(e.parent_uid, None)

    def _hook(self, a: Analyser, method, *args) -> None:
        try:
            method(*args)
        except Exception as exc:
            self._error(a, exc)

    def _emit_plain(self, record: dict) -> None:
        self._count_event(record["event"])
        if self._emit is not None:
            self._emit(record)

    def _count_event(self, kind: str) -> None:
        self.counters["events_emitted"] += 1
        self.events_by_kind[kind] = self.events_by_kind.get(kind, 0) + 1

    @property
    def pending_expectations(self) -> int:
        return sum(len(v) for v in self.expectations.values())
