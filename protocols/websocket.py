"""WebSocket (RFC 6455): the frames of an upgraded HTTP connection, and the
protocol they carry.

Role in the data flow: flows -> streams -> http (101 Switching Protocols
with `Upgrade: websocket`: it hands the connection over) -> **websocket** ->
inner streams (analyser.InnerStreams) -> the carried protocol's analyser
(SSH through a wstunnel, ...) -> sinks (`websocket.log`, and the carried
protocol's own logs under the same uid).

The HTTP analyser leaves the handshake in `self.session["http_upgrade"]`
(host, uri, user_agent and both sides' headers); this analyser writes the
websocket.log row from it, as Zeek does at the upgrade, then reads both
sides' frames in arrival order: data frames (text, binary, continuation)
are unmasked, inflated when permessage-deflate was negotiated, and fed to
the inner streams; control frames are skipped.  conn.log's service gets
`websocket`, then the carried protocol's.

Bad framing is a weird and ends the analysis of the connection (the
counting goes on); nothing is kept beyond one frame header per side and
what the carried protocol's analyser holds.
"""
from __future__ import annotations

import zlib

from analyser import ORIG, RESP, Analyser, Gap, InnerStreams, StreamEnd, conn_id_fields

# Frame payload read into Python at once; a longer frame is fed in pieces.
MAX_CHUNK = 65536
# A frame longer than this is not believed (RFC 6455 allows 2^63; real
# tunnels send at most a few MB per frame).
MAX_FRAME = 1 << 40
# permessage-deflate: inflated bytes kept per message piece (a decompression
# bomb is cut, with a weird).
MAX_INFLATED = 1 << 24
OPCODE_CONTINUATION, OPCODE_TEXT, OPCODE_BINARY = 0, 1, 2
OPCODE_CLOSE = 8

def header_list(value: str | None) -> list[str] | None:
    """`a, b;x=1` -> ['a', 'b;x=1'] (comma-separated header values)."""
    if not value:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


class WebSocket(Analyser):
    """WebSocket frames after an HTTP upgrade; the carried stream is analysed."""
    name = "websocket"
    logs = {"websocket": [
        ("ts", "time", "time of the upgrade"),
        ("uid", "string", "the connection"),
        *conn_id_fields("client", "server"),
        ("host", "string", "the request's Host"),
        ("uri", "string", "the request's URI"),
        ("user_agent", "string", "the request's User-Agent"),
        ("subprotocol", "string", "Sec-WebSocket-Protocol the server chose"),
        ("client_protocols", "vector[string]", "Sec-WebSocket-Protocol the client offered"),
        ("server_extensions", "vector[string]", "Sec-WebSocket-Extensions of the server"),
        ("client_extensions", "vector[string]", "Sec-WebSocket-Extensions of the client"),
    ]}
    payload_fields = frozenset({"uri", "user_agent", "client_protocols"})

    def main(self):
        upgrade = self.session.get("http_upgrade") or {}
        request = upgrade.get("request_headers", {})
        response = upgrade.get("response_headers", {})
        server_ext = header_list(response.get("sec-websocket-extensions"))
        self.log("websocket", {
            "ts": upgrade.get("ts", self.ts), "uid": self.uid,
            "id.orig_h": self.id.orig_h, "id.orig_p": self.id.orig_p,
            "id.resp_h": self.id.resp_h, "id.resp_p": self.id.resp_p,
            "host": upgrade.get("host"), "uri": upgrade.get("uri"),
            "user_agent": upgrade.get("user_agent"),
            "subprotocol": response.get("sec-websocket-protocol"),
            "client_protocols": header_list(request.get("sec-websocket-protocol")),
            "server_extensions": server_ext,
            "client_extensions": header_list(request.get("sec-websocket-extensions"))})
        self.confirm()
        deflate = any(e.split(";")[0].strip() == "permessage-deflate" for e in server_ext or ())
        inner = InnerStreams(self)
        sides = (FrameReader(self, ORIG, inner, deflate), FrameReader(self, RESP, inner, deflate))
        try:
            while True:
                side, data = self.read_any(MAX_CHUNK)
                sides[side].data(data)
        except Gap as gap:
            self.weird("websocket_gap", side=gap.side, size=gap.size)
        except StreamEnd:
            pass
        except FramingError as exc:
            self.weird("websocket_bad_frame", reason=str(exc))
        finally:
            inner.end()


class FramingError(ValueError):
    pass


class FrameReader:
    """One side's frames, sans-IO: bytes in, carried bytes out to `inner`."""

    def __init__(self, analyser: WebSocket, side: int, inner: InnerStreams, deflate: bool):
        self.analyser, self.side, self.inner = analyser, side, inner
        self.buffer = b""
        self.left = 0                 # payload bytes of the current frame still to come
        self.mask = b""
        self.mask_at = 0              # position in the mask of the next payload byte
        self.opcode = 0
        self.compressed = False
        self.fin = False
        self.carried = False          # the current frame carries data
        self.inflater = zlib.decompressobj(-15) if deflate else None

    def data(self, data: bytes) -> None:
        buf = self.buffer + data if self.buffer else data
        self.buffer = b""
        while buf:
            if self.left:
                piece, buf = buf[:self.left], buf[self.left:]
                self.left -= len(piece)
                self.payload(piece)
                continue
            header = self.header(buf)
            if header is None:
                self.buffer = buf
                return
            buf = buf[header:]
            if self.left == 0:
                self.payload(b"")

    def header(self, buf: bytes) -> int | None:
        """Parse a frame header at the start of `buf`: its length, or None
        when it is not all there yet."""
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        size, at = b1 & 0x7F, 2
        if size == 126:
            if len(buf) < 4:
                return None
            size, at = int.from_bytes(buf[2:4], "big"), 4
        elif size == 127:
            if len(buf) < 10:
                return None
            size, at = int.from_bytes(buf[2:10], "big"), 10
        if size > MAX_FRAME:
            raise FramingError("frame of %d bytes" % size)
        if b1 & 0x80:
            if len(buf) < at + 4:
                return None
            self.mask, at = buf[at:at + 4], at + 4
        else:
            self.mask = b""
        opcode = b0 & 0x0F
        if opcode not in (0, 1, 2, 8, 9, 10):
            raise FramingError("unknown opcode %d" % opcode)
        if opcode != OPCODE_CONTINUATION:
            self.opcode = opcode if opcode < 8 else self.opcode
            if opcode < 8:
                self.compressed = bool(b0 & 0x40) and self.inflater is not None
        self.carried = opcode in (OPCODE_CONTINUATION, OPCODE_TEXT, OPCODE_BINARY)
        self.fin = bool(b0 & 0x80)
        self.mask_at = 0
        self.left = size
        if opcode == OPCODE_CLOSE:
            self.inner.end(self.side)
        return at

    def payload(self, piece: bytes) -> None:
        if not self.carried:
            return
        if self.mask and piece:
            piece = unmask(piece, self.mask, self.mask_at)
            self.mask_at = (self.mask_at + len(piece)) % 4
        if self.compressed:
            tail = b"\x00\x00\xff\xff" if self.fin and self.left == 0 else b""
            try:
                piece = self.inflater.decompress(piece + tail, MAX_INFLATED)
            except zlib.error as exc:
                raise FramingError("permessage-deflate: %s" % exc) from None
        self.inner.feed(self.side, piece)


def unmask(data: bytes, mask: bytes, start: int) -> bytes:
    """XOR with the 4-byte mask, starting at mask byte `start` (whole-int XOR:
    no per-byte Python)."""
    n = len(data)
    key = (mask[start:] + mask[:start]) * (n // 4 + 1)
    return (int.from_bytes(data, "big") ^ int.from_bytes(key[:n], "big")).to_bytes(n, "big")
