"""Built-in events, user-defined events and callbacks (in the manner of mOS).

Role in the data flow: flows -> **events** -> callbacks and sinks.

The compiled flow table raises a built-in event only when somebody
subscribed to its kind (a bit mask checked per packet), so an event nobody
listens to costs one AND in C.  A *user-defined event* is a built-in event
plus a filter function: its callbacks run when the base event fires and the
filter says yes.  Callbacks are registered on a *scope*: every flow (None), a
libpcap filter expression (matched against the packet that raised the event),
one connection (its uid), or any callable taking the Event.  They run before
or after the TCP state update (`when="before"` is allowed for packet-level
events only: packet, new_data, retransmission, out_of_order, conn_start).

A callback may call `event.stop_monitoring()` to hear nothing more about
that connection, or `event.release(side)` to stop its reassembly.
"""
from __future__ import annotations

from collections.abc import Callable

from analyser.decode import TH_ACK, TH_FIN, TH_PUSH, TH_RST, TH_SYN  # noqa: F401  (public)
from analyser.flows import (END_REASONS, EV_CONN_END, EV_CONN_START,  # noqa: F401
                            EV_ESTABLISHED, EV_GAP, EV_NEW_DATA, EV_OUT_OF_ORDER,
                            EV_OVERLAP_DIFFERS, EV_PACKET, EV_RETRANSMISSION,
                            EV_STATE_CHANGE, EV_TIMEOUT, STATE_NAMES)

# The event bits, declared once in analyser/flows.pxd.
PACKET, CONN_START, ESTABLISHED = int(EV_PACKET), int(EV_CONN_START), int(EV_ESTABLISHED)
STATE_CHANGE, NEW_DATA = int(EV_STATE_CHANGE), int(EV_NEW_DATA)
RETRANSMISSION, OUT_OF_ORDER = int(EV_RETRANSMISSION), int(EV_OUT_OF_ORDER)
OVERLAP_DIFFERS, GAP = int(EV_OVERLAP_DIFFERS), int(EV_GAP)
CONN_END, TIMEOUT = int(EV_CONN_END), int(EV_TIMEOUT)

NAMES = {PACKET: "packet", CONN_START: "conn_start", ESTABLISHED: "established",
         STATE_CHANGE: "state_change", NEW_DATA: "new_data",
         RETRANSMISSION: "retransmission", OUT_OF_ORDER: "out_of_order",
         OVERLAP_DIFFERS: "overlap_differs", GAP: "gap", CONN_END: "conn_end",
         TIMEOUT: "timeout"}
BY_NAME = {v: k for k, v in NAMES.items()}
BEFORE_ALLOWED = PACKET | NEW_DATA | RETRANSMISSION | OUT_OF_ORDER | CONN_START


class UserEvent:
    """A built-in event plus a filter: fires when `base` does and `filter(event)`."""
    __slots__ = ("name", "base", "filter")

    def __init__(self, name: str, base: int, filter: Callable[["Event"], bool]):
        self.name, self.base, self.filter = name, base, filter

    def __repr__(self) -> str:
        return "UserEvent(name=%r, base=%r, filter=%r)" % (self.name, self.base, self.filter)


class Event:
    """One event as callbacks see it."""
    __slots__ = ("kind", "ts", "side", "a", "b", "packet", "frame", "_monitor", "_index",
                 "_info")

    def __init__(self, monitor, kind, index, side, a, b, packet, frame, ts):
        # Resolved now: the flow may be gone by the time a kept event is read.
        self._monitor, self._index = monitor, index
        self._info = monitor.flows.flow_info(index) if monitor.flows is not None else None
        self.kind, self.side, self.a, self.b = kind, side, a, b
        self.packet, self.frame, self.ts = packet, frame, ts

    @property
    def name(self) -> str:
        return NAMES[self.kind]

    def _conn(self):
        return self._info

    @property
    def uid(self) -> str | None:
        info = self._conn()
        return info[0].uid if info else None

    @property
    def id(self):
        info = self._conn()
        return info[0].id if info else None

    @property
    def states(self) -> tuple[str, str] | None:
        """(originator, responder) TCP states, as after the update."""
        info = self._conn()
        return info[1] if info else None

    @property
    def history(self) -> str | None:
        info = self._conn()
        return info[2] if info else None

    # Packet fields (packet-level events).
    @property
    def tcp_flags(self) -> int:
        return self.packet[0] if self.packet else 0

    @property
    def syn(self) -> bool:
        return bool(self.tcp_flags & TH_SYN)

    @property
    def ack(self) -> bool:
        return bool(self.tcp_flags & TH_ACK)

    @property
    def fin(self) -> bool:
        return bool(self.tcp_flags & TH_FIN)

    @property
    def rst(self) -> bool:
        return bool(self.tcp_flags & TH_RST)

    @property
    def seq(self) -> int | None:
        return self.packet[1] if self.packet else None

    @property
    def payload_len(self) -> int:
        return self.packet[3] if self.packet else 0

    @property
    def payload(self) -> bytes:
        """The captured payload (new_data events only)."""
        return self.packet[5] if self.packet else b""

    def fields(self) -> dict:
        """A JSON-ready description (for the events sink)."""
        out = {"ts": self.ts, "event": self.name, "uid": self.uid}
        cid = self.id
        if cid is not None:
            out.update({"id.orig_h": cid.orig_h, "id.orig_p": cid.orig_p,
                        "id.resp_h": cid.resp_h, "id.resp_p": cid.resp_p,
                        "proto": cid.proto})
        out["side"] = "orig" if self.side == 0 else "resp"
        if self.kind == STATE_CHANGE:
            out["old_state"], out["new_state"] = STATE_NAMES[self.a], STATE_NAMES[self.b]
        elif self.kind == GAP:
            out["size"] = self.a
        elif self.kind == CONN_END:
            out["reason"] = END_REASONS[self.a]
            out["history"] = self.history
        elif self.kind == OVERLAP_DIFFERS:
            out["seq"], out["length"] = self.a, self.b
        if self.packet:
            out["tcp_flags"], out["payload_len"] = self.tcp_flags, self.payload_len
        return out

    def stop_monitoring(self, side: int | None = None) -> None:
        """No more events for this connection, or for one side of it."""
        self._monitor.flows.set_quiet(self._index, side, True)

    def release(self, side: int | None = None) -> None:
        """Stop reassembling this connection (or one side); counting goes on."""
        self._monitor.flows.release_side(self._index, side)

    def __repr__(self):
        return "<Event %s uid=%s side=%s>" % (self.name, self.uid, self.side)


class Subscription:
    __slots__ = ("event", "callback", "scope", "when", "bpf")

    def __init__(self, event, callback, scope, when, bpf):
        self.event, self.callback, self.scope, self.when, self.bpf = (
            event, callback, scope, when, bpf)

    def in_scope(self, ev: Event) -> bool:
        scope = self.scope
        if scope is None:
            return True
        if isinstance(scope, str):
            if self.bpf is not None:
                if ev.frame is None:
                    return False
                linktype, frame, wirelen = ev.frame
                return self.bpf.match(linktype, frame, wirelen)
            return ev.uid == scope
        return bool(scope(ev))


class Monitor:
    """Where callbacks are registered; the engine feeds it the events."""

    def __init__(self):
        self.subscriptions: list[Subscription] = []
        self.flows = None
        self.counts: dict[str, int] = {}
        self.callback_errors = 0
        # Where a failing callback is reported (the engine sets it: a counter in
        # the summary and an engine_error event); None: the first few go to stderr.
        self.on_error: Callable[[str, BaseException], None] | None = None

    def define(self, base: int | str, filter: Callable[[Event], bool],
               name: str | None = None) -> UserEvent:
        """A user-defined event: `base` (a built-in event) plus `filter`."""
        base = BY_NAME[base] if isinstance(base, str) else base
        if base not in NAMES:
            raise ValueError("unknown event %r" % (base,))
        return UserEvent(name or "%s:%s" % (NAMES[base], getattr(filter, "__name__", "filter")),
                         base, filter)

    def on(self, event: int | str | UserEvent, callback: Callable[[Event], object], *,
           scope=None, when: str = "after") -> Subscription:
        """Call `callback(event)` for `event` within `scope`.

        scope: None (all flows), a libpcap filter expression, a connection
        uid (a string starting with 'C' and no spaces), or a callable(event) -> bool."""
        if isinstance(event, str):
            if event not in BY_NAME:
                raise ValueError("unknown event %r (known: %s)" % (event, ", ".join(BY_NAME)))
            event = BY_NAME[event]
        base = event.base if isinstance(event, UserEvent) else event
        if base not in NAMES:
            raise ValueError("unknown event %r" % (event,))
        if when not in ("before", "after"):
            raise ValueError("when must be 'before' or 'after'")
        if when == "before" and not base & BEFORE_ALLOWED:
            raise ValueError("%s happens during the TCP update; only packet-level events "
                             "(packet, new_data, retransmission, out_of_order, conn_start) "
                             "can run before it" % NAMES[base])
        bpf = None
        if isinstance(scope, str) and not (scope.startswith("C") and " " not in scope):
            from ringbuf.bpf import BpfFilter
            bpf = BpfFilter(scope)
        sub = Subscription(event, callback, scope, when, bpf)
        self.subscriptions.append(sub)
        self._sync()
        return sub

    def masks(self) -> tuple[int, int]:
        before = after = 0
        for s in self.subscriptions:
            base = s.event.base if isinstance(s.event, UserEvent) else s.event
            if s.when == "before":
                before |= base
            else:
                after |= base
        return before, after

    def attach(self, flows) -> None:
        self.flows = flows
        self._sync()

    def _sync(self) -> None:
        if self.flows is None:
            return
        before, after = self.masks()
        self.flows.ev_before = before
        self.flows.ev_after = after
        self.flows.events.frames = any(s.bpf is not None for s in self.subscriptions)
        self.flows.events.sink = self.dispatch if (before or after) else None

    def dispatch(self, kind, index, side, a, b, packet, frame, ts, phase) -> None:
        """Called by the flow table; phase 0 = before the TCP update, 1 = after,
        2 = both (conn_start)."""
        ev = Event(self, kind, index, side, a, b, packet, frame, ts)
        when = ("before", "after", None)[phase]
        for s in self.subscriptions:
            base = s.event.base if isinstance(s.event, UserEvent) else s.event
            if base != kind or (when is not None and s.when != when):
                continue
            try:
                if not s.in_scope(ev):
                    continue
                if isinstance(s.event, UserEvent):
                    if not s.event.filter(ev):
                        continue
                    name = s.event.name
                else:
                    name = NAMES[kind]
                self.counts[name] = self.counts.get(name, 0) + 1
                s.callback(ev)
            except Exception as exc:
                self.callback_errors += 1
                where = "in %s callback %s" % (NAMES[kind],
                                               getattr(s.callback, "__name__", s.callback))
                if self.on_error is not None:
                    self.on_error(where, exc)
                elif self.callback_errors <= 10:
                    import sys
                    print("analyser: error %s: %r" % (where, exc), file=sys.stderr)
