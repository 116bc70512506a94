"""Protothread analysers: straight-line Python that blocks on reads.

Role in the data flow: flows -> streams -> **analysers** -> sinks.

Each analysed connection runs its analyser's `main()` in a greenlet.  A read
(`read`, `read_line`, `read_and_skip`, `read_some`, `read_any`) first asks the
compiled stream layer (analyser/streams.pyx) for the bytes; when they are not
there yet, the greenlet switches back to the engine, which goes on with the
next packet and switches in again only when the request can be met.  Skipped
bytes (`skip`, `read_and_skip`, `bulk`) never reach Python at all.

Failure is contained: an exception in `main()` ends that analyser for that
connection only.  It is reported as an `analyser_error` event carrying the
last frame of the traceback, counted, and the connection goes on being
counted in compiled code.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, NamedTuple

import greenlet

ORIG = 0
RESP = 1
ANY = 2

# Request kinds and result codes shared with analyser/streams.pyx.
WANT_BYTES, WANT_LINE, WANT_SOME, WANT_PEEK = 1, 2, 3, 4
R_DATA, R_GAP, R_END = 0, 1, 2

SIDE_NAMES = ("orig", "resp")
# An analyser that keeps reading a finished stream is stopped after this many
# reads (each answered at once, without returning to the engine).
MAX_READS_AFTER_END = 1000


class Gap(Exception):
    """Bytes of a stream are missing (never captured).

    `size` bytes are lost at this point; `data` holds what the read got before
    the hole.  After a Gap the stream continues after the hole, so an analyser
    may catch it and resynchronise."""

    def __init__(self, side: int, size: int, data: bytes = b""):
        super().__init__("%d bytes missing on the %s side" % (size, SIDE_NAMES[side]))
        self.side, self.size, self.data = side, size, data


class StreamEnd(EOFError):
    """The side was closed (FIN, RST, or the connection ended) before the read
    could be met; `data` holds the bytes that were there."""

    def __init__(self, side: int, data: bytes = b""):
        super().__init__("end of the %s stream" % SIDE_NAMES[side])
        self.side, self.data = side, data


class ConnId(NamedTuple):
    orig_h: str
    orig_p: int
    resp_h: str
    resp_p: int
    proto: str


@dataclass
class Connection:
    """What an analyser knows about its connection."""
    uid: str
    id: ConnId
    start_time: float
    # Set when the connection was announced by another one (expect()).
    parent_uid: str | None = None
    expectation: dict | None = None
    services: list[str] = field(default_factory=list)


class Analyser:
    """Base class of protocol analysers.

    Subclasses set `name`, say how they are chosen (`ports`, and/or a
    `probe` class method), and implement `main()`.  Options the analyser
    accepts are declared in `options` as {name: (default, help)}; the CLI
    sets them with `--analyser NAME:key=value`.
    """
    name: ClassVar[str] = ""
    ports: ClassVar[frozenset[int] | set[int]] = frozenset()
    protocol: ClassVar[str] = "tcp"
    options: ClassVar[dict[str, tuple[Any, str]]] = {}
    # How many bytes of each side a probe may look at before it must decide.
    probe_bytes: ClassVar[int] = 0
    # (side, prefix) pairs, 1-8 bytes each: only flows whose first payload
    # starts with one of them are probed (checked in C).  Empty: every flow
    # without a port analyser is probed in Python, which costs per flow.
    probe_prefixes: ClassVar[tuple[tuple[int, bytes], ...]] = ()

    @classmethod
    def probe(cls, side: int, data: bytes) -> bool | None:
        """Content detection: True = mine, False = not mine, None = need more."""
        return False

    def __init__(self, runtime: "Runtime", slot: int, conn: Connection, config: dict):
        self._rt = runtime
        self._slot = slot
        self.conn = conn
        self.config = config

    # -- what subclasses write ---------------------------------------------------

    def main(self) -> None:
        raise NotImplementedError

    def expected_started(self, conn: Connection, meta: dict) -> None:
        """A connection this analyser expect()ed has appeared.  Runs outside
        main(): it must not read."""

    def expected_ended(self, conn_row: dict, meta: dict) -> None:
        """A connection this analyser expect()ed has ended; `conn_row` is its
        conn.log row (sizes, state, uid).  Runs outside main(): no reads."""

    # -- blocking reads ------------------------------------------------------------

    def read(self, side: int, n: int) -> bytes:
        """Exactly n bytes of one side; blocks until they are there."""
        if n <= 0:
            return b""
        return self._request(side, WANT_BYTES, n)

    def read_line(self, side: int, limit: int = 8192) -> bytes:
        """Bytes up to and including b"\\n"; at most `limit` bytes (a longer
        line comes back cut, without its newline)."""
        return self._request(side, WANT_LINE, limit)

    def read_some(self, side: int, limit: int = 65536) -> bytes:
        """Whatever is there (at least one byte, at most `limit`)."""
        return self._request(side, WANT_SOME, limit)

    def read_any(self, limit: int = 65536) -> tuple[int, bytes]:
        """For protocols whose sides are not in lock-step: (side, bytes) from
        whichever side has data first."""
        data = self._request(ANY, WANT_SOME, limit)
        return self._last_side, data

    def peek_any(self, limit: int = 4096) -> tuple[int, bytes]:
        """(side, the first bytes of that side) as soon as either side has more
        than the last peek saw.  Consumes nothing: for content probes."""
        data = self._request(ANY, WANT_PEEK, limit)
        return self._last_side, data

    def read_and_skip(self, side: int, length: int, keep: int) -> bytes:
        """Of the next `length` bytes, return the first `keep` and skip the
        rest in compiled code (the rest never reaches Python)."""
        keep = min(keep, length)
        head = self.read(side, keep) if keep else b""
        if length > keep:
            self._rt.streams.skip(self._slot, side, length - keep)
        return head

    def skip(self, side: int, n: int) -> None:
        """Discard the next n bytes of a side without reading them."""
        if n > 0:
            self._rt.streams.skip(self._slot, side, n)

    # -- telling the engine things ------------------------------------------------------

    def emit(self, kind: str, **fields) -> None:
        """An application event: written with the connection's uid, 5-tuple and
        the trace time."""
        self._rt.emit(self, kind, fields)

    def log(self, path: str, row: dict) -> None:
        """Write a row to a Zeek-format log (`path` names a schema in
        analyser/schemas.py, e.g. "ftp"); keys are its field names."""
        self._rt.log(path, row)

    def weird(self, name: str, **fields) -> None:
        """A protocol anomaly: an event and a counter, never a crash."""
        self._rt.weird(self, name, fields)

    def bulk(self, side: int | None = None) -> None:
        """Hand a side (or both) to compiled byte counting: from now on no
        Python runs for its packets.  Reads on it raise StreamEnd."""
        for s in (ORIG, RESP) if side is None else (side,):
            self._rt.streams.bulk(self._slot, s)

    def release(self, side: int | None = None) -> None:
        """Stop reassembly and free the buffers of a side (or both) before the
        connection ends; its counting goes on."""
        for s in (ORIG, RESP) if side is None else (side,):
            self._rt.streams.release(self._slot, s)

    def expect(self, resp_h: str, resp_p: int | None, *, orig_h: str | None = None,
               proto: str = "tcp", timeout: float = 300.0,
               analyser: str | type | None = None, **meta) -> "Expectation":
        """Announce a connection to resp_h:resp_p (from orig_h, or from anyone;
        resp_p None = any port, which needs orig_h).  When it appears within
        `timeout` seconds of trace time it is bound to `analyser` (a class;
        None = count it in bulk) and linked to this connection; `meta` travels
        with it.  Returns the expectation; `.cancel()` withdraws it."""
        if resp_p is None and orig_h is None:
            raise ValueError("an expectation for any port needs orig_h")
        return self._rt.expect(self, resp_h, resp_p, orig_h, proto, timeout, analyser, meta)

    def add_service(self, name: str) -> None:
        """Name the application protocol in conn.log's service field."""
        if name not in self.conn.services:
            self.conn.services.append(name)

    @property
    def uid(self) -> str:
        return self.conn.uid

    @property
    def id(self) -> ConnId:
        return self.conn.id

    @property
    def ts(self) -> float:
        """The trace time of the packet being processed."""
        return self._rt.now()

    # -- plumbing -------------------------------------------------------------------------

    def _request(self, side: int, want: int, n: int):
        rt = self._rt
        result = rt.streams.request(self._slot, side, want, n)
        if result is None:
            if greenlet.getcurrent() is not self._greenlet:
                raise RuntimeError("analyser reads must happen inside main()")
            self._ends_in_a_row = 0
            result = rt.main_greenlet.switch()
        code, got_side, payload, extra = result
        if code == R_END:
            # Reading on after the end would spin the engine forever.
            self._ends_in_a_row = getattr(self, "_ends_in_a_row", 0) + 1
            if self._ends_in_a_row > MAX_READS_AFTER_END:
                raise RuntimeError("%d reads after the end of the stream: main() must "
                                   "return when reads raise StreamEnd" % MAX_READS_AFTER_END)
        self._last_side = got_side
        if code == R_DATA:
            return payload
        if code == R_GAP:
            raise Gap(got_side, extra, payload)
        raise StreamEnd(got_side, payload)


@dataclass
class Expectation:
    resp_h: str
    resp_p: int | None
    orig_h: str | None
    proto: str
    deadline: float
    analyser: type | None
    parent_uid: str
    meta: dict
    runtime: "Runtime | None" = None

    def cancel(self) -> bool:
        """Withdraw it (if it has not been met yet); True if it was pending."""
        return self.runtime.cancel_expectation(self) if self.runtime else False


class Runtime:
    """Runs analysers in greenlets for one engine."""

    def __init__(self, *, emit: Callable[[dict], None] | None = None, clock=lambda: 0.0,
                 log: Callable[[str, dict], None] | None = None):
        self.streams = None                # set by the engine (analyser.streams.Streams)
        self.main_greenlet = greenlet.getcurrent()
        self.instances: dict[int, Analyser] = {}
        self._free_slots: list[int] = []
        self._next_slot = 0
        self._emit = emit
        self._log = log
        self.now = clock
        self.expectations: dict[tuple, list[Expectation]] = {}
        self.counters = {"analysers_started": 0, "analysers_finished": 0,
                         "analyser_errors": 0, "events_emitted": 0, "weirds": 0,
                         "expectations_added": 0, "expectations_matched": 0,
                         "expectations_expired": 0}
        self.error_log: list[dict] = []
        self.by_uid: dict[str, Analyser] = {}
        self._replacements: dict[int, tuple[type, dict]] = {}
        self.prober_class = Prober

    # -- slots and greenlets ---------------------------------------------------------

    def new_slot(self) -> int:
        if self._free_slots:
            return self._free_slots.pop()
        self._next_slot += 1
        return self._next_slot - 1

    def start(self, cls: type[Analyser], slot: int, conn: Connection, config: dict) -> Analyser:
        """Create the analyser and run main() up to its first blocking read."""
        a = cls(self, slot, conn, config)
        a._last_side = ORIG
        self.instances[slot] = a
        self.by_uid[conn.uid] = a
        a._greenlet = greenlet.greenlet(lambda: self._run(a), parent=self.main_greenlet)
        self.counters["analysers_started"] += 1
        a._greenlet.switch()
        self._apply_replacement(slot)
        return self.instances.get(slot, a)

    def replace(self, a: Analyser, cls: type[Analyser], config: dict) -> None:
        """Hand a connection to another analyser once `a` returns (probes)."""
        self._replacements[a._slot] = (cls, config)

    def _apply_replacement(self, slot: int) -> None:
        repl = self._replacements.pop(slot, None)
        if repl is None:
            return
        old = self.instances.get(slot)
        if old is None:
            return
        self.start(repl[0], slot, old.conn, repl[1])

    def _run(self, a: Analyser) -> None:
        try:
            a.main()
        except (StreamEnd, greenlet.GreenletExit):
            pass
        except Exception as exc:
            self._error(a, exc)
        finally:
            self.counters["analysers_finished"] += 1
            # Nothing will read this connection any more: stop buffering it
            # (unless another analyser takes it over).
            if (self.streams is not None and self.instances.get(a._slot) is a
                    and a._slot not in self._replacements):
                try:
                    self.streams.release(a._slot, ORIG)
                    self.streams.release(a._slot, RESP)
                except KeyError:
                    pass

    def _error(self, a: Analyser, exc: Exception) -> None:
        self.counters["analyser_errors"] += 1
        tb = traceback.extract_tb(exc.__traceback__)
        last = tb[-1] if tb else None
        where = "%s:%d in %s" % (last.filename, last.lineno, last.name) if last else "?"
        record = {"analyser": a.name, "error": "%s: %s" % (type(exc).__name__, exc),
                  "where": where, "line": last.line if last else None}
        self.error_log.append(record)
        self.emit(a, "analyser_error", record)

    def ready(self, slot: int, code: int, side: int, payload: bytes, extra: int) -> None:
        """Called by the stream layer when a pending request can be met."""
        a = self.instances.get(slot)
        if a is None or a._greenlet.dead:
            return
        a._greenlet.switch((code, side, payload, extra))
        if self._replacements:
            self._apply_replacement(slot)

    def finish(self, slot: int) -> None:
        """The connection ended (the stream layer has delivered its end)."""
        a = self.instances.pop(slot, None)
        if a is None:
            return
        if not getattr(a, "_children", 0):
            self.by_uid.pop(a.conn.uid, None)
        # else: kept until its expected connections end, so they can report.
        g = a._greenlet
        if not g.dead:
            # main() is still waiting on a stream that will never deliver.
            try:
                g.throw(greenlet.GreenletExit)
            except Exception as exc:        # an analyser that fails on its way out
                self._error(a, exc)
        self._free_slots.append(slot)

    def services(self, slot: int) -> list[str]:
        a = self.instances.get(slot)
        return a.conn.services if a is not None else []

    # -- events ----------------------------------------------------------------------------

    def emit(self, a: Analyser, kind: str, fields: dict) -> None:
        self.counters["events_emitted"] += 1
        if self._emit is None:
            return
        cid = a.conn.id
        record = {"ts": self.now(), "event": kind, "analyser": a.name, "uid": a.conn.uid,
                  "id.orig_h": cid.orig_h, "id.orig_p": cid.orig_p,
                  "id.resp_h": cid.resp_h, "id.resp_p": cid.resp_p, "proto": cid.proto}
        record.update(fields)
        self._emit(record)

    def log(self, path: str, row: dict) -> None:
        self.counters["log_rows"] = self.counters.get("log_rows", 0) + 1
        if self._log is not None:
            self._log(path, row)

    def weird(self, a: Analyser, name: str, fields: dict) -> None:
        self.counters["weirds"] += 1
        self.emit(a, "weird", dict(name=name, **fields))

    # -- expected connections -----------------------------------------------------------

    def expect(self, a, resp_h, resp_p, orig_h, proto, timeout, analyser, meta) -> Expectation:
        self.counters["expectations_added"] += 1
        port = None if resp_p is None else int(resp_p)
        e = Expectation(resp_h, port, orig_h, proto, self.now() + timeout,
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
        self._emit_plain({"ts": self.now(), "event": "expected_connection",
                          "uid": conn.uid, "parent_uid": e.parent_uid,
                          "id.orig_h": conn.id.orig_h, "id.orig_p": conn.id.orig_p,
                          "id.resp_h": conn.id.resp_h, "id.resp_p": conn.id.resp_p,
                          "proto": conn.id.proto,
                          "analyser": e.analyser.name if e.analyser else "bulk", **e.meta})
        if parent is not None:
            parent._children = getattr(parent, "_children", 0) + 1
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
        self.counters["events_emitted"] += 1
        if self._emit is not None:
            self._emit(record)

    @property
    def pending_expectations(self) -> int:
        return sum(len(v) for v in self.expectations.values())


class Prober(Analyser):
    """Chooses an analyser by content: peeks at the first bytes of each side
    (consuming nothing) until a candidate's probe() says yes, then hands the
    connection over; the chosen analyser reads the streams from their start."""
    name = "probe"

    def main(self) -> None:
        undecided = list(self.config["candidates"])
        limit = max(cls.probe_bytes for cls, _ in undecided)
        first = {ORIG: b"", RESP: b""}
        while undecided:
            try:
                side, data = self.peek_any(limit)
            except (Gap, StreamEnd):
                return
            first[side] = data
            for cls, config in list(undecided):
                verdict = cls.probe(side, data[:cls.probe_bytes])
                if verdict:
                    self._rt.replace(self, cls, config)
                    return
                if verdict is False or len(data) >= cls.probe_bytes:
                    undecided.remove((cls, config))
