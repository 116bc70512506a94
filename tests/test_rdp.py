"""RDP's negotiation (protocols/rdp.py): rdp.log from the connection request
and confirm, TLS handed to `ssl` at the exact byte; Zeek's RDP case."""
import struct

import pytest

from analyser import ORIG, RESP
from analyser.testing import run
from conftest import SHARED, read_zeek_log, replay_to
from protocols.rdp import Rdp
from protocols.tls import Tls

CASE = SHARED / "conformance" / "zeek-protocols" / "protocols-rdp-rdp-no-cookie-msthash"


def tpkt(body: bytes) -> bytes:
    return struct.pack("!BBH", 3, 0, 4 + len(body)) + body


def request(cookie=b"") -> bytes:
    x224 = b"\xe0\x00\x00\x00\x00\x00"
    line = b"Cookie: mstshash=" + cookie + b"\r\n" if cookie else b""
    neg = struct.pack("<BBHI", 1, 0, 8, 3)                   # offers SSL | HYBRID
    return tpkt(bytes([len(x224) + len(line) + len(neg)]) + x224 + line + neg)


def confirm(selected: int) -> bytes:
    x224 = b"\xd0\x00\x00\x12\x34\x00"
    neg = struct.pack("<BBHI", 2, 0, 8, selected)
    return tpkt(bytes([len(x224) + len(neg)]) + x224 + neg)


def test_tls_security_hands_over_with_the_cookie_logged():
    hello = b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x03"    # what the next analyser reads
    result = run(Rdp, [(ORIG, request(b"alice")), (RESP, confirm(2)), (ORIG, hello)],
                 candidates=[Tls])
    assert [(r["cookie"], r["result"], r["security_protocol"]) for r in result.logs["rdp"]] == [
        ("alice", "encrypted", "HYBRID")]
    assert isinstance(result.analyser, Tls)
    assert result.delivered[ORIG] == len(request(b"alice")) + len(hello)
    assert "rdp" in result.services


def test_standard_rdp_security_stays_and_logs_no_result():
    result = run(Rdp, [(ORIG, request()), (RESP, confirm(0))], candidates=[Tls])
    assert [(r["cookie"], r.get("result"), r["security_protocol"])
            for r in result.logs["rdp"]] == [("", None, "RDP")]
    assert isinstance(result.analyser, Rdp)


def test_not_rdp_is_a_violation():
    result = run(Rdp, [(ORIG, b"GET / HTTP/1.1\r\n\r\n")])
    assert [v["failure_reason"] for v in result.violations] == ["not a TPKT header"]


@pytest.mark.skipif(not CASE.exists(), reason="../shared/conformance is not present")
def test_zeeks_rdp_case(tmp_path):
    out = replay_to(CASE / "rdp-no-cookie-mstshash.pcap", tmp_path)
    ours, zeeks = read_zeek_log(out / "rdp.log"), read_zeek_log(CASE / "rdp.log")
    fields = ("cookie", "result", "security_protocol", "cert_count")
    assert [tuple(r[f] for f in fields) for r in ours] == \
        [tuple(r[f] for f in fields) for r in zeeks]
    ssl = read_zeek_log(out / "ssl.log")
    assert [(r["version"], r["cipher"], r["established"]) for r in ssl] == [
        ("TLSv12", "TLS_RSA_WITH_AES_256_GCM_SHA384", "T")]
