"""The DNS analyser through the author's harness: messages built here from
RFC 1035's layout, dns.log rows and weirds checked field by field against
what the wire says (and Zeek's rendering rules, scripts/base/protocols/dns)."""
import struct

from analyser import ORIG, RESP
from analyser.runtime import ConnId
from analyser.testing import Wait, run
from protocols.dns import Dns

UDP = ConnId("10.0.0.1", 40000, "10.0.0.2", 53, "udp")
TCP = ConnId("10.0.0.1", 40001, "10.0.0.2", 53, "tcp")


def name(text: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in text.split(".") if p) + b"\0"


def header(tid, flags, qd=1, an=0, ns=0, ar=0) -> bytes:
    return struct.pack("!6H", tid, flags, qd, an, ns, ar)


def question(qname, qtype=1, qclass=1) -> bytes:
    return name(qname) + struct.pack("!HH", qtype, qclass)


def rr(owner: bytes, rtype, rdata: bytes, ttl=300, rclass=1) -> bytes:
    return owner + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


QUERY = 0x0100                      # RD
RESPONSE = 0x8180                   # QR RD RA
PTR_Q = b"\xc0\x0c"                 # a pointer to the question's name (offset 12)


def query(tid, qname, qtype=1, flags=QUERY):
    return header(tid, flags) + question(qname, qtype)


def response(tid, qname, records, qtype=1, flags=RESPONSE, ns=0):
    return header(tid, flags, an=len(records), ns=ns) + question(qname, qtype) + b"".join(records)


def exchange(qname, records, qtype=1, tid=7, **kw):
    return run(Dns, [(ORIG, query(tid, qname, qtype)),
                     (RESP, response(tid, qname, records, qtype))], conn_id=UDP, **kw)


def answers(result):
    return [r["answers"] for r in result.logs["dns"]]


def weirds(result):
    return [w["name"] for w in result.of("weird")]


def test_a_query_and_its_response_make_one_row_with_zeeks_fields():
    result = run(Dns, [(ORIG, query(0x1234, "WWW.Example.COM")), Wait(0.25),
                       (RESP, response(0x1234, "WWW.Example.COM",
                                       [rr(PTR_Q, 1, bytes([10, 1, 2, 3]), ttl=3600)],
                                       flags=RESPONSE | 0x0400))],
                 conn_id=UDP, step=0.0)
    [row] = result.logs["dns"]
    assert row["query"] == "www.example.com"          # Zeek lowercases the query
    assert (row["trans_id"], row["qtype"], row["qtype_name"], row["qclass"],
            row["qclass_name"]) == (0x1234, 1, "A", 1, "C_INTERNET")
    assert (row["rcode"], row["rcode_name"], row["AA"], row["TC"], row["RD"], row["RA"],
            row["Z"], row["rejected"]) == (0, "NOERROR", True, False, True, True, 0, False)
    assert row["answers"] == ["10.1.2.3"] and row["TTLs"] == [3600.0]
    assert abs(row["rtt"] - 0.25) < 1e-9
    assert (row["opcode"], row["opcode_name"], row["proto"], row["id.resp_p"]) == (
        0, "query", "udp", 53)
    assert result.services == ["dns"] and not result.errors and not weirds(result)


def test_compression_pointers_are_followed_and_lowercased():
    # "mail" + a pointer into the question's name at "example.com" (offset 12 + 4).
    cname = b"\x04MAIL\xc0\x10"
    result = exchange("www.example.com", [rr(PTR_Q, 5, cname),
                                          rr(b"\x04mail\xc0\x10", 1, bytes([192, 0, 2, 1]))])
    assert answers(result) == [["mail.example.com", "192.0.2.1"]]
    assert not weirds(result)


def test_a_pointer_to_itself_is_a_forward_pointer_weird_not_a_loop():
    msg = header(9, RESPONSE, an=1) + question("a.example") + \
        b"\xc0\x1b" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes(4)    # offset 27 = itself
    assert len(header(0, 0) + question("a.example")) == 27
    result = run(Dns, [(ORIG, query(9, "a.example")), (RESP, msg)], conn_id=UDP)
    assert weirds(result) == ["DNS_label_forward_compress_offset"]
    [row] = result.logs["dns"]
    assert row["answers"] is None and row["rcode"] == 0 and not result.errors


def test_a_chain_of_pointers_is_cut_after_twenty():
    # 22 pointers, each to the one before it (the first to the question), kept
    # in the data of a record of unknown type; the next record's name points
    # to the last of them.
    chain_at = len(header(0, 0) + question("a.example")) + 12
    chain = b"\xc0\x0c" + b"".join(struct.pack("!H", 0xC000 | (chain_at + 2 * i))
                                   for i in range(21))
    records = rr(PTR_Q, 1234, chain) + rr(struct.pack("!H", 0xC000 | (chain_at + 42)), 1,
                                          bytes([1, 2, 3, 4]))
    msg = header(3, RESPONSE, an=2) + question("a.example") + records
    result = run(Dns, [(ORIG, query(3, "a.example")), (RESP, msg)], conn_id=UDP)
    assert weirds(result) == ["DNS_RR_unknown_type", "DNS_max_compression_chain_depth_exceeded"]
    assert answers(result) == [["<unknown type=1234>", "1.2.3.4"]]


def test_overlong_labels_and_names_are_zeeks_weirds():
    long_label = "x" * 64 + ".example"
    result = run(Dns, [(ORIG, query(1, "ok.example")), (ORIG, query(2, long_label))],
                 conn_id=UDP)
    assert weirds(result) == ["DNS_label_too_long"]
    long_name = ".".join(["abcdefghijklmnopqrstuvwxyz0123456789"] * 8)   # 295 bytes
    result = run(Dns, [(ORIG, query(1, long_name))], conn_id=UDP)
    assert weirds(result) == ["DNS_NAME_too_long"]
    assert result.logs["dns"][0]["query"] == long_name


def test_each_record_type_is_rendered_as_zeek_logs_it():
    sshfp = bytes.fromhex("a6b95f9eba1104a7272a362e8bfbcbebd5726dcf")
    records = [
        rr(PTR_Q, 28, bytes.fromhex("20010db8000000000000000000000001")),
        rr(PTR_Q, 2, name("ns1.example.com")),
        rr(PTR_Q, 12, name("host.example.com")),
        rr(PTR_Q, 15, struct.pack("!H", 10) + name("mx.example.com")),
        rr(PTR_Q, 16, b"\x05hello\x05world"),
        rr(PTR_Q, 6, name("ns.example.com") + name("admin.example.com") + bytes(20)),
        rr(PTR_Q, 33, struct.pack("!HHH", 0, 5, 5060) + name("sip.example.com")),
        rr(PTR_Q, 48, struct.pack("!HBB", 257, 3, 8) + b"k" * 32),
        rr(PTR_Q, 43, struct.pack("!HBB", 1234, 8, 2) + b"d" * 32),
        rr(PTR_Q, 46, struct.pack("!HBBIIIH", 1, 8, 2, 300, 0, 0, 99) + name("example.com")
           + b"s" * 64),
        rr(PTR_Q, 47, name("next.example.com") + b"\x00\x01\x40"),
        rr(PTR_Q, 50, struct.pack("!BBH", 1, 0, 10) + b"\x00\x02hh" + b"\x00\x01\x40"),
        rr(PTR_Q, 29, bytes([0, 18, 21, 19]) + bytes(12)),
        rr(PTR_Q, 44, bytes([1, 1]) + sshfp),
        rr(PTR_Q, 65534, bytes([8, 1, 2, 0, 1])),
        rr(PTR_Q, 1234, b"opaque"),
    ]
    result = exchange("example.com", records, qtype=255)
    [row] = result.logs["dns"]
    assert row["answers"] == [
        "2001:db8::1", "ns1.example.com", "host.example.com", "mx.example.com",
        "TXT 5 hello TXT 5 world", "ns.example.com", "sip.example.com", "DNSKEY 8",
        "DS 8 2", "RRSIG 1 example.com", "NSEC example.com next.example.com", "NSEC3",
        "LOC:  18 21 19", "SSHFP: " + sshfp.hex(), "BIND9 signing signal",
        "<unknown type=1234>"]
    assert row["TTLs"] == [300.0] * 16
    assert row["qtype_name"] == "*"
    assert weirds(result) == ["DNS_RR_unknown_type"]
    assert [w.get("addl") for w in result.of("weird")] == ["1234"]


def test_responses_pair_with_their_queries_by_transaction_id():
    script = [(ORIG, query(1, "one.example")), (ORIG, query(2, "two.example")),
              (ORIG, query(3, "three.example")),
              (RESP, response(2, "two.example", [rr(PTR_Q, 1, bytes([2, 2, 2, 2]))])),
              (RESP, response(1, "one.example", [rr(PTR_Q, 1, bytes([1, 1, 1, 1]))])),
              (RESP, response(1, "one.example", [rr(PTR_Q, 1, bytes([1, 1, 1, 1]))]))]
    rows = run(Dns, script, conn_id=UDP).logs["dns"]
    by = [(r["trans_id"], r["query"], r["answers"], r["qtype"], r["rcode"]) for r in rows]
    assert by == [
        (2, "two.example", ["2.2.2.2"], 1, 0),
        (1, "one.example", ["1.1.1.1"], 1, 0),
        # At the end: the query never answered, then the duplicate response
        # (no query of its own: query from its answer, no qtype).
        (3, "three.example", None, 1, None),
        (1, "one.example", ["1.1.1.1"], None, 0)]
    assert rows[3]["rtt"] is None


def test_rejected_and_nxdomain():
    refused = header(5, 0x8105) + question("x.example")            # REFUSED, no records
    nxdomain = header(6, 0x8183, ns=1) + question("y.example") + rr(
        b"\x07example\0", 6, name("ns.example") + name("h.example") + bytes(20))
    rows = run(Dns, [(ORIG, query(5, "x.example")), (RESP, refused),
                     (ORIG, query(6, "y.example")), (RESP, nxdomain)], conn_id=UDP).logs["dns"]
    assert [(r["rcode"], r["rcode_name"], r["rejected"], r["answers"]) for r in rows] == [
        (5, "REFUSED", True, None), (3, "NXDOMAIN", False, None)]


def tcp_message(msg: bytes) -> bytes:
    return struct.pack("!H", len(msg)) + msg


def test_tcp_messages_are_framed_across_segments_and_together():
    q1, q2 = tcp_message(query(10, "a.example")), tcp_message(query(11, "b.example"))
    r1 = tcp_message(response(10, "a.example", [rr(PTR_Q, 1, bytes([10, 0, 0, 1]))]))
    r2 = tcp_message(response(11, "b.example", [rr(PTR_Q, 16, b"\x02hi")], qtype=16))
    script = [(ORIG, q1[:1]), (ORIG, q1[1:5]), (ORIG, q1[5:] + q2),     # split, then two
              (RESP, r1[:20]), (RESP, r1[20:] + r2[:3]), (RESP, r2[3:])]
    result = run(Dns, script, conn_id=TCP)
    rows = result.logs["dns"]
    assert [(r["trans_id"], r["query"], r["answers"], r["proto"]) for r in rows] == [
        (10, "a.example", ["10.0.0.1"], "tcp"), (11, "b.example", ["TXT 2 hi"], "tcp")]
    assert result.services == ["dns"] and not weirds(result)


def test_a_first_datagram_that_is_not_dns_is_a_violation():
    result = run(Dns, [(ORIG, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")], conn_id=UDP)
    assert [v["failure_reason"] for v in result.violations] == ["DNS_unknown_opcode"]
    assert not result.services
    many = header(1, QUERY, qd=1000) + question("a.example")
    result = run(Dns, [(ORIG, many)], conn_id=UDP)
    assert [v["failure_reason"] for v in result.violations] == ["DNS_Conn_count_too_large"]
    result = run(Dns, [(ORIG, b"hello")], conn_id=UDP)
    assert [v["failure_reason"] for v in result.violations] == [
        "DNS_truncated_len_lt_hdr_len"]


def test_malformed_messages_after_confirmation_are_weirds_never_exceptions():
    good = query(1, "ok.example")
    truncated_answer = response(1, "ok.example", [rr(PTR_Q, 1, bytes(4))])[:-3]
    absurd = header(2, RESPONSE, an=65535) + question("z.example") + rr(PTR_Q, 1, bytes(4))
    bad_label = header(3, QUERY) + b"\x3fabc"                      # label past the end
    script = [(ORIG, good), (RESP, truncated_answer), (ORIG, query(2, "z.example")),
              (RESP, absurd), (ORIG, bad_label), (ORIG, b"\x00\x01")]
    result = run(Dns, script, conn_id=UDP)
    assert weirds(result) == ["DNS_truncated_RR_rdlength_lt_len", "dns_invalid_name",
                              "DNS_label_len_gt_pkt", "DNS_truncated_len_lt_hdr_len"]
    assert not result.errors and not result.violations and result.services == ["dns"]
    rows = {r["trans_id"]: r for r in result.logs["dns"]}
    assert rows[2]["answers"] == ["0.0.0.0"]          # the one answer that was there
    assert rows[1]["answers"] is None and rows[1]["rcode"] == 0


def test_a_response_sent_first_by_the_originator_flips_the_ids_in_dns_log():
    conn = ConnId("10.9.9.9", 53, "10.0.0.2", 53, "udp")
    msg = response(4, "flip.example", [rr(PTR_Q, 1, bytes([9, 9, 9, 9]))])
    [row] = run(Dns, [(ORIG, msg)], conn_id=conn).logs["dns"]
    assert (row["id.orig_h"], row["id.resp_h"]) == ("10.0.0.2", "10.9.9.9")
    assert (row["query"], row["answers"], row["rtt"]) == ("flip.example", ["9.9.9.9"], None)


def test_the_readme_datagram_analyser_example_runs_as_written():
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### Datagram (UDP) analysers", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    result = run(namespace["Echo"], [(ORIG, b"ping"), (RESP, b"ping"), (ORIG, b"again")])
    assert result.logs["echo"] == [{"uid": "CHarness1", "requests": 2, "replies": 1}]
    assert result.services == ["echo"]
