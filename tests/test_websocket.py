"""WebSocket frames (protocols/websocket.py) through the author's harness: an
upgrade hands the connection over, frames are unmasked, reassembled across
fragments and TCP pieces, inflated (permessage-deflate), and the carried
stream is analysed by the analyser its content names, under the same uid."""
import os
import struct
import zlib

from analyser import ORIG, RESP, Analyser, Signature, StreamEnd
from analyser.testing import End, run
from protocols.websocket import WebSocket, unmask


class Upgrader(Analyser):
    """Stands in for the HTTP analyser: one request and a 101, then hand over."""
    name = "upgrader"

    def main(self):
        headers = {}
        for side in (ORIG, RESP):
            while (line := self.read_line(side)) not in (b"\r\n", b"\n"):
                name, _, value = line.decode().partition(":")
                headers.setdefault(side, {})[name.strip().lower()] = value.strip()
        self.session["http_upgrade"] = {
            "ts": self.ts, "host": headers[ORIG].get("host"), "uri": "/tunnel",
            "user_agent": None, "request_headers": headers[ORIG],
            "response_headers": headers[RESP]}
        self.hand_over("websocket")


class Banner(Analyser):
    """The carried protocol: each side sends one 'BANNER ...' line."""
    name = "banner"
    signatures = (Signature(ORIG, b"BANNER "),)
    logs = {"banner": [("uid", "string"), ("client", "string"), ("server", "string")]}

    def main(self):
        client = self.read_line(ORIG).strip()
        server = self.read_line(RESP).strip()
        self.confirm()
        self.log("banner", {"uid": self.uid, "client": client.decode(),
                            "server": server.decode()})
        try:
            while True:
                self.read_some(ORIG)
        except StreamEnd:
            pass


def frame(payload: bytes, opcode=2, fin=True, masked=False, rsv1=False) -> bytes:
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    n = len(payload)
    size = (bytes([n]) if n < 126 else b"\x7e" + struct.pack("!H", n) if n < 65536
            else b"\x7f" + struct.pack("!Q", n))
    if not masked:
        return head + size[:1] + size[1:] + payload
    key = os.urandom(4)
    return head + bytes([size[0] | 0x80]) + size[1:] + key + unmask(payload, key, 0)


HANDSHAKE = [(ORIG, b"GET /tunnel HTTP/1.1\r\nHost: example.test\r\nUpgrade: websocket\r\n"
                    b"Sec-WebSocket-Protocol: v1, v2\r\n\r\n"),
             (RESP, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Sec-WebSocket-Protocol: v1\r\n\r\n")]


def test_carried_protocol_through_masked_fragmented_frames():
    client = frame(b"BANNER cl", fin=False, masked=True)
    client += frame(b"ping", opcode=9, masked=True)              # a control frame between
    client += frame(b"ient\r\n", opcode=0, masked=True) + frame(b"x" * 70000, masked=True)
    server = frame(b"BANNER server\r\n")
    script = HANDSHAKE + [(ORIG, client[:3]), (ORIG, client[3:11]), (ORIG, client[11:]),
                          (RESP, server), End(ORIG), End(RESP)]
    result = run(Upgrader, script, candidates=[WebSocket, Banner], uid="CWs")
    assert result.logs["banner"] == [{"uid": "CWs", "client": "BANNER client",
                                      "server": "BANNER server"}]
    ws = result.logs["websocket"]
    assert [(r["host"], r["uri"], r["subprotocol"], r["client_protocols"]) for r in ws] == [
        ("example.test", "/tunnel", "v1", ["v1", "v2"])]
    assert result.services == ["websocket", "banner"]
    assert not result.errors and not result.of("weird")


def test_permessage_deflate_is_inflated():
    def deflated(data):
        c = zlib.compressobj(wbits=-15)
        return (c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    hs = [HANDSHAKE[0], (RESP, HANDSHAKE[1][1].replace(
        b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"))]
    script = hs + [(ORIG, frame(deflated(b"BANNER zipped client\r\n"), rsv1=True, masked=True)),
                   (RESP, frame(deflated(b"BANNER zipped server\r\n"), rsv1=True))]
    result = run(Upgrader, script, candidates=[WebSocket, Banner])
    assert [(r["client"], r["server"]) for r in result.logs["banner"]] == [
        ("BANNER zipped client", "BANNER zipped server")]
    assert result.logs["websocket"][0]["server_extensions"] == ["permessage-deflate"]


def test_bad_opcode_is_a_weird_not_an_error():
    script = HANDSHAKE + [(ORIG, b"\x83\x00")]
    result = run(Upgrader, script, candidates=[WebSocket, Banner])
    assert [w["name"] for w in result.of("weird")] == ["websocket_bad_frame"]
    assert not result.errors


def test_http_upgrade_hands_over_with_the_bytes_past_the_headers():
    """The real HTTP analyser: a 101 whose packet also carries the first
    server frame; the frame reaches the carried protocol."""
    from protocols.http import Http
    request = (b"GET /ws HTTP/1.1\r\nHost: h.test\r\nUser-Agent: t/1\r\nConnection: Upgrade\r\n"
               b"Upgrade: websocket\r\nSec-WebSocket-Protocol: chat\r\n\r\n")
    response = (b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                b"Upgrade: websocket\r\nSec-WebSocket-Protocol: chat\r\n\r\n")
    script = [(ORIG, request), (RESP, response + frame(b"BANNER server\r\n")),
              (ORIG, frame(b"BANNER client\r\n", masked=True))]
    result = run(Http, script, candidates=[WebSocket, Banner], uid="CUp")
    assert [(r["client"], r["server"]) for r in result.logs["banner"]] == [
        ("BANNER client", "BANNER server")]
    assert [(r["host"], r["uri"], r["user_agent"], r["subprotocol"])
            for r in result.logs["websocket"]] == [("h.test", "/ws", "t/1", "chat")]
    assert [(r["status_code"], r["uri"]) for r in result.logs["http"]] == [(101, "/ws")]
    assert result.services == ["http", "websocket", "banner"]
