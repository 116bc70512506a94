"""The TLS analyser (protocols/tls.py).

Ground truth: real handshakes made at test time by OpenSSL (Python's ssl
module over memory buffers, and `openssl s_server`/`s_client` between two
network namespaces), what the client itself reports (version, cipher, ALPN),
tshark's independent dissection of the same capture (JA3, and the fields JA4
is computed from), and the JA4 specification's own worked example.
"""
from __future__ import annotations

import hashlib
import re
import shutil
import ssl
import struct
import subprocess
import sys
import time

import pytest

from analyser import ORIG, RESP
from analyser.testing import End, run
from conftest import REPO, read_zeek_log
from protocols.tls import (MAX_RECORD, Tls, is_grease, ja3, ja3_string, ja4,
                           parse_client_hello, parse_server_hello)
from protocols.tls_names import CIPHER_SUITES
import netns

NEEDS_OPENSSL = pytest.mark.skipif(shutil.which("openssl") is None,
                                   reason="needs the openssl command (certificates)")


# -- real handshakes, recorded in memory ----------------------------------------------

@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate made by `openssl req`: (cert path, key path, DER)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    d = tmp_path_factory.mktemp("cert")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    key, "-out", cert, "-days", "2", "-subj", "/CN=test.example", "-batch"],
                   check=True, capture_output=True)
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    return cert, key, der


def record_handshake(certificate, version, alpn=("h2", "http/1.1"), server_alpn=("h2",),
                     sni="www.test.example", exchanges=((b"GET /", b"200 OK"),)):
    """A real OpenSSL handshake and exchange between two SSLObjects; returns
    (script of (side, bytes) in wire order, client SSLObject)."""
    cert, key, _ = certificate
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    server_ctx.set_alpn_protocols(list(server_alpn))
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    client_ctx.minimum_version = client_ctx.maximum_version = version
    if alpn:
        client_ctx.set_alpn_protocols(list(alpn))
    bios = {side: (ssl.MemoryBIO(), ssl.MemoryBIO()) for side in (ORIG, RESP)}   # in, out
    client = client_ctx.wrap_bio(*bios[ORIG], server_hostname=sni)
    server = server_ctx.wrap_bio(*bios[RESP], server_side=True)
    script = []

    def pump():
        moved = False
        for side, peer in ((ORIG, RESP), (RESP, ORIG)):
            data = bios[side][1].read()
            if data:
                script.append((side, data))
                bios[peer][0].write(data)
                moved = True
        return moved

    done = {ORIG: False, RESP: False}
    for _ in range(20):
        for side, obj in ((ORIG, client), (RESP, server)):
            if not done[side]:
                try:
                    obj.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
        if not pump() and all(done.values()):
            break
    for request, reply in exchanges:
        client.write(request)
        pump()
        assert server.read(len(request)) == request
        server.write(reply)
        pump()
        assert client.read(len(reply)) == reply
    return script, client


def ssl_row(result):
    rows = result.logs["ssl"]
    assert len(rows) == 1, rows
    return rows[0]


def cipher_id(name: str) -> int:
    """The IANA code of an OpenSSL cipher name, as OpenSSL itself lists it."""
    ctx = ssl.create_default_context()
    for c in ctx.get_ciphers():
        if c["name"] == name:
            return c["id"] & 0xFFFF
    raise KeyError(name)


@pytest.mark.parametrize("version, expected", [(ssl.TLSVersion.TLSv1_3, "TLSv13"),
                                               (ssl.TLSVersion.TLSv1_2, "TLSv12")])
def test_a_real_handshake_logs_what_the_client_negotiated(certificate, version, expected):
    script, client = record_handshake(certificate, version)
    result = run(Tls, script)
    row = ssl_row(result)
    assert client.version().replace("v1.", "v1") == expected == row["version"]
    assert row["cipher"] == CIPHER_SUITES[cipher_id(client.cipher()[0])]
    assert row["server_name"] == "www.test.example"
    assert client.selected_alpn_protocol() == "h2"
    assert row["established"] is True and row["resumed"] is False
    assert result.services == ["ssl"] and not result.errors and not result.violations
    if expected == "TLSv12":
        # The certificate travels in the clear: its SHA-256, as Zeek's x509 fingerprint.
        assert row["cert_chain_fps"] == [hashlib.sha256(certificate[2]).hexdigest()]
        assert row["client_cert_chain_fps"] == []
        assert row["ssl_history"].startswith("Csxkn")          # ECDHE: a ServerKeyExchange
        assert row["curve"] is not None
        assert row["next_protocol"] == "h2"                      # in the ServerHello
    else:
        assert "next_protocol" not in row       # in TLS 1.3 the server's ALPN is encrypted
        assert "cert_chain_fps" not in row                      # encrypted in TLS 1.3
        assert row["ssl_history"].startswith("Cs")


def test_one_byte_segments_give_the_same_row(certificate):
    """Records split across reads, and several records in one read, are the same."""
    script, _ = record_handshake(certificate, ssl.TLSVersion.TLSv1_2)
    whole = ssl_row(run(Tls, script))
    tiny = [(side, data[i:i + 1]) for side, data in script for i in range(len(data))]
    row = ssl_row(run(Tls, tiny))
    for key in ("version", "cipher", "curve", "server_name", "next_protocol", "established",
                "ssl_history", "cert_chain_fps", "ja3", "ja4", "ja3s"):
        assert row[key] == whole[key], key


def test_after_the_handshake_records_are_counted_only_on_request(certificate):
    exchanges = ((b"a" * 10, b"b" * 3000), (b"c" * 20, b"d" * 5))
    script, _ = record_handshake(certificate, ssl.TLSVersion.TLSv1_2, exchanges=exchanges)
    quiet = run(Tls, script)
    assert not quiet.of("tls_message") and not quiet.of("tls_exchange")
    loud = run(Tls, script, config={"messages": True, "exchanges": True})
    messages = loud.of("tls_message")
    # AES-GCM in TLS 1.2: 8-byte explicit nonce + 16-byte tag around each plaintext.
    assert [(m["side"], m["length"], m["exchange"]) for m in messages] == [
        ("orig", 10 + 24, 1), ("resp", 3000 + 24, 1), ("orig", 20 + 24, 2), ("resp", 5 + 24, 2)]
    assert [(e["exchange"], e["orig_records"], e["orig_bytes"], e["resp_records"],
             e["resp_bytes"]) for e in loud.of("tls_exchange")] == [
        (1, 1, 34, 1, 3024), (2, 1, 44, 1, 29)]
    # The record bodies never reached Python: only their 5-byte headers.
    handshake_bytes = quiet.delivered
    assert loud.delivered[ORIG] - handshake_bytes[ORIG] == 2 * 5
    assert loud.delivered[RESP] - handshake_bytes[RESP] == 2 * 5


def test_records_read_with_the_end_of_the_handshake_are_counted(certificate):
    """A read takes all a side has: records that come in the same read as the
    one establishing the connection are counted all the same."""
    exchanges = ((b"a" * 10, b"b" * 3000),)
    script, _ = record_handshake(certificate, ssl.TLSVersion.TLSv1_2, exchanges=exchanges)
    *handshake, finished, request, reply = script
    assert (finished[0], request[0], reply[0]) == (RESP, ORIG, RESP)
    # The client's request comes before the server's Finished: the server's
    # last flight and its reply then arrive as one segment.
    result = run(Tls, [*handshake, request, (RESP, finished[1] + reply[1])],
                 config={"messages": True})
    assert ssl_row(result)["established"] is True
    assert [(m["side"], m["length"]) for m in result.of("tls_message")] == [("resp", 3000 + 24)]


def test_ja4_follows_the_specifications_worked_example():
    """technical_details/JA4.md: 15 ciphers, 16 extensions (SNI, ALPN h2),
    TLS 1.3 -> t13d1516h2_8daaf6152771_e5627efa2ab1."""
    ciphers = [0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8,
               0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035]
    sigalgs = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]
    extension_data = {
        0x0000: b"\x00\x0e\x00\x00\x0bexample.com",
        0x0010: b"\x00\x0c\x02h2\x08http/1.1",
        0x000d: struct.pack("!H", 2 * len(sigalgs)) + b"".join(struct.pack("!H", s)
                                                               for s in sigalgs),
        0x002b: b"\x04\x0a\x0a\x03\x04",                      # GREASE, TLS 1.3
    }
    order = [0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005,
             0x0023, 0x0012, 0x002b, 0xff01, 0x000b, 0x000a, 0x0015]
    extensions = b"".join(struct.pack("!HH", t, len(extension_data.get(t, b"")))
                          + extension_data.get(t, b"") for t in [0x1a1a] + order)
    body = (b"\x03\x03" + bytes(32) + b"\x00" + struct.pack("!H", 2 * 16)
            + b"\x0a\x0a" + b"".join(struct.pack("!H", c) for c in ciphers)
            + b"\x01\x00" + struct.pack("!H", len(extensions)) + extensions)
    hello = parse_client_hello(body)
    assert hello.server_names == ["example.com"] and hello.alpn == [b"h2", b"http/1.1"]
    assert ja4(hello) == "t13d1516h2_8daaf6152771_e5627efa2ab1"
    # Empty bodies of key_share etc. do not parse: noted, the hello still counts.
    assert hello.malformed_extensions == [0x0033, 0x000b, 0x000a]
    assert ja4(hello, transport="q").startswith("q13d1516h2_")
    assert is_grease(0x1a1a) and not is_grease(0x1a1b)
    # The same hello with its extensions in another order (as Chrome shuffles
    # them): JA4 sorts them, JA3 keeps their order.
    shuffled = parse_client_hello(body)
    shuffled.extensions.reverse()
    assert ja4(shuffled) == ja4(hello)
    for h in (hello, shuffled):
        assert ja3(h) == hashlib.md5(ja3_string(h).encode()).hexdigest()
    assert ja3_string(shuffled) != ja3_string(hello) and ja3(shuffled) != ja3(hello)


def test_server_hello_parses_the_tls13_fields():
    extensions = (struct.pack("!HHH", 43, 2, 0x0304)
                  + struct.pack("!HHHH", 51, 4 + 32, 29, 32) + bytes(32))
    body = (b"\x03\x03" + bytes(32) + b"\x20" + bytes(32) + b"\x13\x01\x00"
            + struct.pack("!H", len(extensions)) + extensions)
    hello = parse_server_hello(body)
    assert (hello.selected_version, hello.key_share_group, hello.cipher) == (0x0304, 29, 0x1301)


# -- bad input ---------------------------------------------------------------------------

def test_bytes_that_are_not_tls_are_a_violation():
    result = run(Tls, [(ORIG, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
                       (RESP, b"HTTP/1.1 200 OK\r\n\r\n")])
    assert not result.confirmed and result.services == [] and "ssl" not in result.logs
    assert [v["failure_reason"] for v in result.violations] == [
        "Invalid version in TLS connection. Version: 17748"]        # "ET" of "GET "


def test_malformed_records_and_messages_are_weirds(certificate):
    script, _ = record_handshake(certificate, ssl.TLSVersion.TLSv1_2)
    client_hello = script[0]
    assert client_hello[0] == ORIG
    broken_server_hello = b"\x16\x03\x03\x00\x08" + b"\x02\x00\x00\x04\x03\x03\x00\x00"
    huge = struct.pack("!BHH", 22, 0x0303, MAX_RECORD + 1)
    result = run(Tls, [client_hello, (RESP, broken_server_hello),
                       (ORIG, huge + bytes(MAX_RECORD + 1)), End(ORIG), End(RESP)])
    assert [w["name"] for w in result.of("weird")] == [
        "SSL_malformed_handshake_message", "SSL_record_too_large"]
    row = ssl_row(result)                       # written when the connection ended
    assert row["established"] is False and row["ssl_history"] == "Cs"
    assert result.services == ["ssl"] and not result.errors


def test_an_alert_in_the_clear_is_the_last_alert(certificate):
    script, _ = record_handshake(certificate, ssl.TLSVersion.TLSv1_2)
    alert = b"\x15\x03\x03\x00\x02\x02\x28"                  # fatal handshake_failure
    row = ssl_row(run(Tls, [script[0], (RESP, alert)]))
    assert (row["last_alert"], row["ssl_history"], row["established"]) == (
        "handshake_failure", "Cl", False)


# -- real programs on a veth pair, checked against tshark --------------------------------

NETNS_PROBLEM = netns.unavailable()
MISSING = [tool for tool in ("openssl", "tcpdump", "tshark") if shutil.which(tool) is None]


def tshark_client_hellos(pcap):
    fields = ["tls.handshake.ja3", "tls.handshake.ciphersuite", "tls.handshake.extension.type",
              "tls.handshake.sig_hash_alg", "tls.handshake.extensions.supported_version",
              "tls.handshake.extensions_alpn_str", "tls.handshake.extensions_server_name",
              "tls.handshake.version"]
    out = subprocess.run(["tshark", "-r", pcap, "-Y", "tls.handshake.type == 1", "-T", "fields",
                          "-E", "occurrence=a", "-E", "separator=|",
                          *sum((["-e", f] for f in fields), [])],
                         capture_output=True, text=True, check=True).stdout
    return [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line]


def ja4_from_tshark(hello: dict) -> str:
    """JA4 computed from tshark's dissection (independent of our parser)."""
    def numbers(key):
        return [int(v, 0) for v in hello[key].split(",") if v]
    ciphers = [c for c in numbers("tls.handshake.ciphersuite") if not is_grease(c)]
    extensions = [e for e in numbers("tls.handshake.extension.type") if not is_grease(e)]
    sigalgs = [s for s in numbers("tls.handshake.sig_hash_alg") if not is_grease(s)]
    versions = [v for v in numbers("tls.handshake.extensions.supported_version")
                if not is_grease(v)]
    highest = max(versions) if versions else int(hello["tls.handshake.version"], 0)
    version = {0x0304: "13", 0x0303: "12"}[highest]
    alpn = hello["tls.handshake.extensions_alpn_str"].split(",")[0]
    a = "t%s%s%02d%02d%s" % (version, "d" if 0 in extensions else "i", len(ciphers),
                             len(extensions), alpn[0] + alpn[-1])
    b = hashlib.sha256(",".join("%04x" % c for c in sorted(ciphers)).encode()).hexdigest()
    kept = ",".join("%04x" % e for e in sorted(extensions) if e not in (0, 16))
    c = hashlib.sha256((kept + "_" + ",".join("%04x" % s for s in sigalgs)).encode())
    return "%s_%s_%s" % (a, b[:12], c.hexdigest()[:12])


@pytest.mark.skipif(NETNS_PROBLEM is not None or bool(MISSING),
                    reason=str(NETNS_PROBLEM or "needs %s" % ", ".join(MISSING)))
@pytest.mark.parametrize("port, tls_option", [(443, "-tls1_3"), (8443, "-tls1_2")])
def test_openssl_between_namespaces_matches_the_client_and_tshark(tmp_path, certificate,
                                                                 port, tls_option):
    cert, key, der = certificate
    pcap = tmp_path / "tls.pcap"
    with netns.VethPair(tag="t") as net:
        net.offloads(False)
        server = net.popen("server", ["openssl", "s_server", "-accept", port, "-cert", cert,
                                      "-key", key, "-alpn", "h2", "-www", "-quiet"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        with net.capture("client", pcap) as dump:
            client = net.run("client", ["openssl", "s_client", "-connect",
                                        "%s:%d" % (net.server_ip, port), "-servername",
                                        "www.test.example", "-alpn", "h2,http/1.1", tls_option,
                                        "-ign_eof"],
                             input="GET / HTTP/1.0\r\n\r\n", timeout=30, check=False)
            time.sleep(1.0)                     # the last packets through the capture
        server.kill()
    assert re.search(r"\b0 packets dropped by kernel", dump.summary), dump.summary
    said = client.stdout
    version = re.search(r"Protocol\s*: (\S+)", said).group(1)
    cipher = re.search(r"Cipher\s*: (\S+)", said).group(1)
    assert re.search(r"ALPN protocol: h2", said), said
    logs = tmp_path / "logs"
    done = subprocess.run([sys.executable, "-m", "analyser", "replay", pcap, "--logs", logs, "-q"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = read_zeek_log(logs / "ssl.log")
    assert len(rows) == 1
    row = rows[0]
    assert row["id.resp_p"] == str(port)
    assert row["version"] == version.replace("v1.", "v1")
    assert row["cipher"] == CIPHER_SUITES[cipher_id(cipher)]
    assert (row["server_name"], row["established"]) == ("www.test.example", "T")
    if tls_option == "-tls1_2":                 # in the clear only up to TLS 1.2
        assert row["cert_chain_fps"] == hashlib.sha256(der).hexdigest()
        assert row["next_protocol"] == "h2"
    hellos = tshark_client_hellos(str(pcap))
    assert len(hellos) == 1
    assert row["ja3"] == hellos[0]["tls.handshake.ja3"]
    assert row["ja4"] == ja4_from_tshark(hellos[0])
    conn = read_zeek_log(logs / "conn.log")
    assert [r["service"] for r in conn] == ["ssl"]


def test_the_hellos_read_none_until_seen():
    """client_hello and server_hello (parsed when first read) are None on a
    connection whose hellos never came: a subclass may read them anywhere."""
    result = run(Tls, [(ORIG, b"\x16\x03\x01\x00\x05\x0b\x00\x00\x01")])
    a = result.analyser
    assert a.client_hello is None and a.server_hello is None
