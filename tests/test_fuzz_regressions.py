"""What the fuzz targets found in the shipped analysers (fuzz/targets.py's
`replay` target: frames through the whole engine and every analyser), each
pinned with a crafted input: an analyser must never let an exception out on
bad or missing bytes (it becomes an analyser_error), only weirds and
violations."""
from analyser import ORIG, RESP, registry
from analyser.testing import Hole, run
from packets import ACK, PSH, TcpPeer, close, handshake, timed
from protocols.http import Http
from protocols.rdp import Rdp

CONNECT = (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
           b"HTTP/1.1 200 Connection established\r\n\r\n")


def test_gap_where_the_protocol_after_connect_would_start_is_not_an_error():
    """detect_rest() peeked at the next bytes; a gap there escaped HTTP's
    analyser as an exception.  Nothing to match: the rest is released."""
    result = run(Http, [(ORIG, CONNECT[0]), (RESP, CONNECT[1]), Hole(RESP, 100),
                        (RESP, b"\x16\x03\x01")])
    assert result.errors == []
    assert result.counters["undetected_rest"] == 1
    assert [r["method"] for r in result.logs["http"]] == ["CONNECT"]


def test_gap_in_rdps_negotiation_is_a_weird_not_an_error():
    result = run(Rdp, [Hole(ORIG, 19), (ORIG, b"\x03\x00\x00\x13")])
    assert result.errors == []
    assert [(w["name"], w["size"]) for w in result.of("weird")] == [("rdp_content_gap", 19)]
    confirm_lost = run(Rdp, [(ORIG, b"\x03\x00\x00\x0b\x06\xe0\x00\x00\x00\x00\x00"),
                             Hole(RESP, 4096)])
    assert confirm_lost.errors == []
    assert [w["name"] for w in confirm_lost.of("weird")] == ["rdp_content_gap"]


def engine_run(replay, port, script):
    """script: (side, payload, lost) items; lost bytes are skipped in the
    sequence space (never captured), then the ACK acknowledges them."""
    c, s = TcpPeer("10.0.0.1", 40000, 100), TcpPeer("10.0.0.2", port, 900)
    c.connect(s)
    frames = handshake(c, s)
    for side, payload, lost in script:
        peer = c if side == ORIG else s
        peer.seq += lost
        frames.append(peer.send(ACK | PSH, payload))
        frames.append((s if side == ORIG else c).send(ACK))
    replay(timed(frames + close(c, s)), analysers=registry.select()[0])
    return replay.result.stats


def test_the_same_gaps_through_the_engine(replay):
    stats = engine_run(replay, 3389, [(ORIG, b"\x03\x00\x00\x13\x0e\xe0", 19)])
    assert stats["analyser_errors"] == 0
    stats = engine_run(replay, 8080, [(ORIG, CONNECT[0], 0), (RESP, CONNECT[1], 0),
                                      (RESP, b"\x16\x03\x01\x00\x05hello", 1000)])
    assert stats["analyser_errors"] == 0 and stats["engine_errors"] == 0
