"""The one-pass hello parsers against the checked, field-by-field ones:
same ClientHello/ServerHello (malformed extensions included), or the same
error, on well-formed hellos and on many damaged copies of them."""
from __future__ import annotations

import random
import struct

import pytest

from analyser import ORIG, RESP
from analyser.testing import run
from protocols.tls import (EXT_PRE_SHARED_KEY, Tls, TlsError, _checked_client_hello,
                           _checked_server_hello, _client_hello_facts, _fast_client_hello,
                           _fast_server_hello, _hello_fingerprints_memo, _scan_client_hello,
                           _server_hello_facts, client_fingerprints, ja3s, parse_client_hello,
                           parse_server_hello)


def ext(kind: int, body: bytes) -> bytes:
    return struct.pack("!HH", kind, len(body)) + body


def u16s(values, size=2) -> bytes:
    data = b"".join(struct.pack("!H", v) for v in values)
    return len(data).to_bytes(size, "big") + data


def client_hello(rng: random.Random) -> bytes:
    grease = rng.choice([0x0A0A, 0x1A1A, 0xFAFA])
    name = b"host.example.com"
    alpn = b"\x02h2\x08http/1.1"
    exts = [ext(grease, b""),
            ext(0, struct.pack("!HBH", 2 * len(name) + 6, 0, len(name)) + name
                + struct.pack("!BH", 0, len(name)) + name),
            ext(23, b""), ext(10, u16s([grease, 29, 23, 24])), ext(11, b"\x02\x00\x01"),
            ext(35, rng.randbytes(rng.choice([0, 16]))),
            ext(16, struct.pack("!H", len(alpn)) + alpn),
            ext(13, u16s([0x0403, 0x0804, 0x0401])),
            ext(51, struct.pack("!HHH", 36 + 5, 29, 32) + bytes(32) + b"\x00\x17\x00\x01\x00"),
            ext(40, struct.pack("!HHH", 4, 23, 0)),
            ext(43, u16s([grease, 0x0304, 0x0303], 1)), ext(41, b"\x00\x00"), ext(0, b"")]
    rng.shuffle(exts)
    return (b"\x03\x03" + rng.randbytes(32) + b"\x20" + rng.randbytes(32)
            + u16s([grease, 0x1301, 0xC02F, 0x002F]) + b"\x02\x00\x01"
            + struct.pack("!H", sum(map(len, exts))) + b"".join(exts))


def server_hello(rng: random.Random) -> bytes:
    exts = [ext(43, b"\x03\x04"), ext(51, struct.pack("!HH", 29, 32) + bytes(32)),
            ext(16, b"\x00\x03\x02h2"), ext(16, b"\x00\x00"), ext(40, b"\x00\x17"),
            ext(0xFF01, b"\x00")]
    rng.shuffle(exts)
    return (b"\x03\x03" + rng.randbytes(32) + b"\x20" + rng.randbytes(32) + b"\x13\x01\x00"
            + struct.pack("!H", sum(map(len, exts))) + b"".join(exts))


def outcome(parse, body):
    try:
        return parse(body)
    except TlsError as exc:
        return "error: %s" % exc


def damaged(rng: random.Random, body: bytes):
    yield body
    yield body + b"trailing"
    for _ in range(300):
        data = bytearray(body)
        choice = rng.random()
        if choice < 0.3:
            data = data[:rng.randrange(len(data))]
        else:
            for _ in range(rng.choice([1, 1, 2, 3])):
                value = rng.choice([0, 1, 2, 3, 4, 255, rng.randrange(256)])
                data[rng.randrange(len(data))] = value
        yield bytes(data)


@pytest.mark.parametrize("seed", range(6))
def test_the_fast_parsers_agree_with_the_checked_ones(seed):
    rng = random.Random(seed)
    fast_used = 0
    for make, fast, checked, parse in (
            (client_hello, _fast_client_hello, _checked_client_hello, parse_client_hello),
            (server_hello, _fast_server_hello, _checked_server_hello, parse_server_hello)):
        for body in damaged(rng, make(rng)):
            expected = outcome(checked, body)
            assert outcome(parse, body) == expected
            result = fast(body)
            if result is not None:               # the fast one answers only for good input
                fast_used += 1
                assert result == expected
            if fast is _fast_client_hello:
                facts = _client_hello_facts(body)
                assert (facts is None) == (result is None)
                if facts is not None:
                    hello, key = _scan_client_hello(body)
                    assert facts == (hello.version, hello.session_id, hello.server_names,
                                     hello.session_ticket,
                                     EXT_PRE_SHARED_KEY in hello.extension_types, key)
            else:
                facts = _server_hello_facts(body)
                assert (facts is None) == (result is None)
                if facts is not None:
                    assert facts == (result.version, result.random, result.session_id,
                                     result.cipher, result.selected_version,
                                     result.key_share_group, result.alpn,
                                     tuple(result.extension_types))
    assert fast_used > 50


def test_a_well_formed_hello_is_parsed_by_the_fast_path():
    rng = random.Random(7)
    body = client_hello(rng)
    hello = _fast_client_hello(body)
    assert hello is not None and hello.malformed_extensions == []
    assert hello.server_names == ["host.example.com"] * 2
    assert sorted(hello.key_share_groups) == [23, 23, 29]   # extensions shuffled
    assert hello.point_formats == [0, 1] and hello.alpn == [b"h2", b"http/1.1"]
    server = _fast_server_hello(server_hello(rng))
    assert server is not None and server.selected_version == 0x0304


def record(content: int, body: bytes) -> bytes:
    return struct.pack("!BHH", content, 0x0303, len(body)) + body


def handshake(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + len(body).to_bytes(3, "big") + body


def test_the_analyser_logs_the_fingerprints_of_the_hellos_it_took_in_one_pass():
    """The analyser takes only facts from well-formed hellos: its row has the
    fingerprints of the parsed hellos (computed, then looked up), and the
    hellos it keeps are the parsed ones."""
    rng = random.Random(11)
    client, server = client_hello(rng), server_hello(rng)
    _hello_fingerprints_memo.clear()
    for memo_size in (0, 1):                 # computed, then from the memo
        assert len(_hello_fingerprints_memo) == memo_size
        result = run(Tls, [(ORIG, record(22, handshake(1, client))),
                           (RESP, record(22, handshake(2, server)))])
        row = result.logs["ssl"][0]
        hello = parse_client_hello(client)
        assert (row["ja3"], row["ja4"]) == client_fingerprints(hello)
        assert row["ja3s"] == ja3s(parse_server_hello(server))
        assert row["server_name"] == "host.example.com" and row["ssl_history"] == "Cs"
        assert result.analyser.client_hello == hello
        assert result.analyser.server_hello == parse_server_hello(server)


def test_a_hello_with_a_malformed_extension_is_parsed_by_the_checked_parser():
    rng = random.Random(12)
    body = client_hello(rng)
    # An empty key_share body appended to the extensions block: malformed.
    extensions_at = 2 + 32 + 1 + 32 + 2 + 8 + 3 + 2     # ..., ciphers, compression
    size = int.from_bytes(body[extensions_at - 2:extensions_at], "big")
    assert extensions_at + size == len(body)
    bad = (body[:extensions_at - 2] + (size + 4).to_bytes(2, "big") + body[extensions_at:]
           + ext(51, b""))
    assert _client_hello_facts(bad) is None
    hello = parse_client_hello(bad)
    assert hello.malformed_extensions == [51]
    result = run(Tls, [(ORIG, record(22, handshake(1, bad)))])
    row = result.logs["ssl"][0]
    assert (row["ja3"], row["ja4"]) == client_fingerprints(hello)
    assert [w["name"] for w in result.of("weird")] == ["SSL_malformed_extension",
                                                      "SSL_many_server_names"]
    assert result.analyser.client_hello == hello
