"""The stream layer's read semantics over Python byte queues.

Role in the data flow: a stand-in for the compiled stream layer
(analyser/streams.pyx) where bytes do not come from packets: the author's
test harness (analyser/testing.py) feeds it a script, and streams carried
inside another protocol (analyser/inner.py: a WebSocket's payload) feed it
what their carrier decoded.  Same answers as the compiled layer: skips,
gaps, ends, lines, read_any, peeks; the runtime is woken through `ready`.
"""
from __future__ import annotations

from collections import deque, namedtuple

from analyser.streams import R_DATA, R_END, R_GAP, SIDE_ANY, WANT_BYTES, WANT_LINE, WANT_PEEK, \
    WANT_SOME

ANY = int(SIDE_ANY)


class Hole(namedtuple("Hole", ("side", "size"))):
    """`size` bytes of `side` that never went past the monitor."""
    __slots__ = ()


class End(namedtuple("End", ("side",))):
    """`side` closed (FIN): nothing more comes."""
    __slots__ = ()



class _Side:
    """One direction: queued pieces (bytes, or an int for a hole), in order."""

    def __init__(self):
        self.pieces: deque = deque()
        self.ended = False
        self.skip = 0
        self.peeked = 0
        self.mode = "stream"            # stream, bulk, off
        self.delivered = 0

    def contiguous(self) -> int:
        n = 0
        for p in self.pieces:
            if isinstance(p, int):
                break
            n += len(p)
        return n

    def gap_follows(self) -> bool:
        return any(isinstance(p, int) for p in self.pieces)

    def apply_skip(self) -> None:
        while self.skip and self.pieces:
            p = self.pieces[0]
            size = p if isinstance(p, int) else len(p)
            if size <= self.skip:
                self.pieces.popleft()
                self.skip -= size
            else:
                self.pieces[0] = p - self.skip if isinstance(p, int) else p[self.skip:]
                self.skip = 0

    def take(self, n: int, consume: bool = True) -> bytes:
        out = bytearray()
        for i, p in enumerate(list(self.pieces)):
            if isinstance(p, int) or len(out) >= n:
                break
            out += p[:n - len(out)]
        data = bytes(out)
        if consume:
            left = len(data)
            while left:
                p = self.pieces[0]
                if len(p) <= left:
                    self.pieces.popleft()
                    left -= len(p)
                else:
                    self.pieces[0] = p[left:]
                    left = 0
            self.delivered += len(data)
        return data


class ScriptedStreams:
    """The stream layer's interface to the runtime (request, skip, bulk,
    release), over Python byte queues; semantics as analyser/streams.pyx."""

    def __init__(self, runtime, slot: int = 0):
        self.runtime = runtime
        self.slot = slot
        self.sides = (_Side(), _Side())
        self.want = None                # (side, want, n) of the pending request

    # -- the runtime's calls -------------------------------------------------------

    def request(self, slot, side, want, n):
        if want not in (WANT_BYTES, WANT_LINE, WANT_SOME, WANT_PEEK) or side not in (0, 1, ANY):
            raise ValueError("bad request")
        self.want = (side, want, n)
        result = self._try()
        if result is not None:
            self.want = None
        return result

    def skip(self, slot, side, n):
        s = self.sides[side]
        s.skip += n
        s.apply_skip()

    def pending_skip(self, slot, side):
        s = self.sides[side]
        return s.skip if s.mode == "stream" else 0

    def bulk(self, slot, side):
        s = self.sides[side]
        s.mode = "bulk"
        s.pieces.clear()

    def release(self, slot, side):
        s = self.sides[side]
        s.mode = "off"
        s.pieces.clear()

    def cancel(self, slot):
        self.want = None

    # -- the script's calls --------------------------------------------------------------

    def feed(self, item) -> None:
        if isinstance(item, Hole):
            self._push(item.side, int(item.size))
        elif isinstance(item, End):
            self.sides[item.side].ended = True
        else:
            side, data = item
            if data:
                self._push(side, bytes(data))
        self.check()

    def _push(self, side, piece) -> None:
        s = self.sides[side]
        if s.mode != "stream" or s.ended:
            return
        s.pieces.append(piece)
        s.apply_skip()

    def check(self) -> None:
        """Wake the analyser if what it waits for is there."""
        if self.want is None:
            return
        result = self._try()
        if result is not None:
            self.want = None
            self.runtime.ready(self.slot, *result)

    # -- read semantics ---------------------------------------------------------------------

    def _try(self):
        side, want, n = self.want
        if side == ANY:
            r0 = self._try_side(0, want, n)
            if r0 is not None and r0[0] != R_END:
                return r0
            r1 = self._try_side(1, want, n)
            if r1 is not None and r1[0] != R_END:
                return r1
            return r0 if (r0 is not None and r1 is not None) else None
        return self._try_side(side, want, n)

    def _try_side(self, side, want, n):
        s = self.sides[side]
        if s.mode != "stream":
            return (R_END, side, b"", 0)
        s.apply_skip()
        at_end = s.ended and not s.pieces
        if s.skip:
            return (R_END, side, b"", 0) if at_end else None
        if want == WANT_PEEK:
            avail = s.contiguous()
            if avail > s.peeked:
                s.peeked = avail
                return (R_DATA, side, s.take(min(avail, n), consume=False), 0)
            if s.pieces and isinstance(s.pieces[0], int):
                return (R_GAP, side, b"", s.pieces[0])
            return (R_END, side, b"", 0) if at_end else None
        if s.pieces and isinstance(s.pieces[0], int):
            return (R_GAP, side, b"", s.pieces.popleft())
        avail = s.contiguous()
        if want == WANT_BYTES and avail >= n:
            return (R_DATA, side, s.take(n), 0)
        if want == WANT_LINE:
            head = s.take(min(avail, n), consume=False)
            nl = head.find(b"\n")
            if nl >= 0:
                return (R_DATA, side, s.take(nl + 1), 0)
            if avail >= n:
                return (R_DATA, side, s.take(n), 0)
        if want == WANT_SOME and avail:
            return (R_DATA, side, s.take(min(avail, n)), 0)
        if s.gap_follows() and avail:
            data = s.take(avail)
            return (R_GAP, side, data, s.pieces.popleft())
        if s.ended and not s.gap_follows():
            return (R_END, side, s.take(avail) if avail else b"", 0)
        return None
