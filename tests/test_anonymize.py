"""--anonymize KEYFILE: addresses in every output (logs, events, also inside
URLs and FTP's comma form) mapped by a keyed prefix-preserving scheme; the
same with the same key across outputs and runs; no original address left."""
from __future__ import annotations

import ipaddress
import json
import os
import re

from conftest import read_zeek_log
from test_workers import ftp_sessions_trace

from analyser.anonymize import Anonymizer


def common_prefix(a: str, b: str) -> int:
    x, y = int(ipaddress.ip_address(a)), int(ipaddress.ip_address(b))
    width = 32 if ipaddress.ip_address(a).version == 4 else 128
    return width - (x ^ y).bit_length()


def test_the_mapping_preserves_prefixes_and_depends_on_the_key():
    a, b = Anonymizer(b"k" * 32), Anonymizer(b"j" * 32)
    pairs = [("10.1.2.3", "10.1.2.200"), ("10.1.2.3", "10.1.99.1"), ("192.0.2.1", "8.8.8.8"),
             ("2001:db8::1", "2001:db8::ff"), ("2001:db8:1::1", "fe80::1")]
    for x, y in pairs:
        assert common_prefix(a.address(x), a.address(y)) == common_prefix(x, y), (x, y)
        assert a.address(x) != x
    assert a.address("10.1.2.3") == Anonymizer(b"k" * 32).address("10.1.2.3")
    assert a.address("10.1.2.3") != b.address("10.1.2.3")
    quad = a.address("10.1.2.3")
    assert a.text("ftp://10.1.2.3/x and (10,1,2,3,23,113) [2001:db8::1]") == \
        "ftp://%s/x and (%s,23,113) [%s]" % (quad, quad.replace(".", ","),
                                            a.address("2001:db8::1"))
    assert a.text("at 12:30:45, 1,2,3 apples, version 1.2.3") == \
        "at 12:30:45, 1,2,3 apples, version 1.2.3"


def test_no_original_address_in_any_output(run_cli, tmp_path):
    trace = ftp_sessions_trace(tmp_path / "s.pcap", sessions=6)
    key = tmp_path / "key"
    key.write_bytes(os.urandom(40))
    outs = {}
    for label, extra in (("plain", []), ("anon", ["--anonymize", key]),
                         ("again", ["--anonymize", key])):
        out = tmp_path / label
        out.mkdir()
        p = run_cli("replay", trace, "--logs", out, "--events", out / "events.json", "-q",
                    *extra)
        assert p.returncode == 0, p.stderr
        outs[label] = out
    text = lambda out: "\n".join(f.read_text() for f in sorted(out.iterdir()))
    originals = {r[f] for r in read_zeek_log(outs["plain"] / "conn.log")
                 for f in ("id.orig_h", "id.resp_h")}
    assert len(originals) >= 8
    anon = text(outs["anon"])
    for addr in originals:
        assert not re.search(r"(?<![\d.])%s(?![\d.])" % re.escape(addr), anon), addr
        assert addr.replace(".", ",") + "," not in anon, addr
    # The same key, the same outputs (the logs' #open/#close times aside).
    strip = lambda out: re.sub(r"#(open|close)\t.*", "", text(out))
    assert strip(outs["anon"]) == strip(outs["again"])
    # Every connection keeps its shape: the same rows, addresses mapped one to one.
    plain = read_zeek_log(outs["plain"] / "conn.log")
    mapped = read_zeek_log(outs["anon"] / "conn.log")
    a = {r["uid"]: r for r in plain}
    pairs = {(a[r["uid"]]["id.orig_h"], r["id.orig_h"]) for r in mapped}
    assert len({p for p, _ in pairs}) == len(pairs) == len({m for _, m in pairs})
    # The events file carries the same mapped addresses.
    events = [json.loads(l) for l in (outs["anon"] / "events.json").read_text().splitlines()]
    assert {e["id.orig_h"] for e in events} <= {r["id.orig_h"] for r in mapped}


def test_a_short_or_missing_key_is_a_usage_error(run_cli, tmp_path):
    trace = ftp_sessions_trace(tmp_path / "s.pcap", sessions=1)
    (tmp_path / "short").write_bytes(b"x" * 10)
    p = run_cli("replay", trace, "--logs", tmp_path, "--anonymize", tmp_path / "short")
    assert p.returncode == 2 and "at least 32 bytes" in p.stderr
    p = run_cli("replay", trace, "--logs", tmp_path, "--anonymize", tmp_path / "missing")
    assert p.returncode == 2 and "cannot read the anonymisation key" in p.stderr


def test_pcap_out_is_anonymized_with_checksums_that_still_verify(run_cli, tmp_path):
    import dpkt
    trace = ftp_sessions_trace(tmp_path / "s.pcap", sessions=3)
    key = tmp_path / "key"
    key.write_bytes(os.urandom(40))
    for label, extra in (("full", []), ("headers", ["--pcap-headers-only"])):
        out = tmp_path / label
        p = run_cli("replay", trace, "--logs", out, "--pcap-out", out, "--anonymize", key,
                    "-q", *extra)
        assert p.returncode == 0, p.stderr
        conns = read_zeek_log(out / "conn.log")
        mapped = {r[f] for r in conns for f in ("id.orig_h", "id.resp_h")}
        with open(out / "selected.pcap", "rb") as f:
            packets = list(dpkt.pcap.Reader(f))
        with open(trace, "rb") as f:
            originals = list(dpkt.pcap.Reader(f))
        assert len(packets) == len(originals)
        for (_, buf), (_, orig) in zip(packets, originals):
            ip = dpkt.ethernet.Ethernet(buf).data
            seen = {ipaddress.ip_address(ip.src).compressed,
                    ipaddress.ip_address(ip.dst).compressed}
            assert seen <= mapped                             # the logs' mapped addresses
            oip = dpkt.ethernet.Ethernet(orig).data
            assert ip.src != oip.src and ip.dst != oip.dst
            # The IPv4 header checksum verifies ...
            header = bytes(ip)[:ip.hl * 4]
            assert dpkt.in_cksum(header) == 0
            # ... and so does TCP's over the new pseudo header (headers only: the
            # original segment, its payload included, with the new checksum).
            tcp = bytearray(bytes(oip.data))
            tcp[16:18] = ip.data.sum.to_bytes(2, "big")
            pseudo = ip.src + ip.dst + bytes([0, ip.p]) + len(tcp).to_bytes(2, "big")
            assert dpkt.in_cksum(pseudo + bytes(tcp)) == 0
            if label == "full":
                assert bytes(ip.data) == bytes(tcp)
