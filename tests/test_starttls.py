"""The cleartext protocols that switch to TLS (SMTP, IRC, XMPP, MySQL), run
by the author's harness: where the switch happens (the analyser that takes
over reads exactly the bytes after it), what is logged before it, malformed
input (weirds) and input that is not the protocol (violations).

The TLS analyser is stood in for by `TlsRecorder`, named `ssl` like the real
one, so `hand_over("ssl")` reaches it and the test sees every byte it reads.
"""
import struct

import pytest

from analyser import ORIG, RESP, Analyser, StreamEnd
from analyser.runtime import ConnId
from analyser.testing import Hole, run
from conftest import SHARED, read_zeek_log
from protocols.irc import Irc
from protocols.mysql import MySql
from protocols.smtp import Smtp
from protocols.xmpp import Xmpp

CLIENT_HELLO = b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x03"
SERVER_HELLO = b"\x16\x03\x03\x00\x05\x02\x00\x00\x01\x03"


class TlsRecorder(Analyser):
    """Reads both sides to their end and keeps what it read."""
    name = "ssl"

    def main(self):
        self.got = {ORIG: b"", RESP: b""}
        try:
            while True:
                side, data = self.read_any()
                self.got[side] += data
        except StreamEnd:
            pass


def tls_bytes(result) -> dict:
    assert isinstance(result.analyser, TlsRecorder), "no hand-over to ssl"
    return result.analyser.got


# -- SMTP ---------------------------------------------------------------------------

SMTP_OPENING = [(RESP, b"220 mx.example ESMTP ready\r\n"), (ORIG, b"EHLO client.example\r\n"),
                (RESP, b"250-mx.example\r\n250-SIZE 1000\r\n250 STARTTLS\r\n")]


def test_smtp_starttls_hands_the_next_byte_to_tls():
    result = run(Smtp, [*SMTP_OPENING, (ORIG, b"STARTTLS\r\n"),
                        (RESP, b"220 2.0.0 Ready to start TLS\r\n"),
                        (ORIG, CLIENT_HELLO), (RESP, SERVER_HELLO)],
                 candidates=[TlsRecorder])
    assert tls_bytes(result) == {ORIG: CLIENT_HELLO, RESP: SERVER_HELLO}
    assert result.services == ["smtp"] and not result.errors and not result.violations
    [row] = result.logs["smtp"]
    assert (row["helo"], row["tls"], row["last_reply"], row["trans_depth"]) == \
        ("client.example", True, "220 2.0.0 Ready to start TLS", 1)
    assert row["path"] == ["10.0.0.2", "10.0.0.1"] and row["fuids"] == []
    assert len(result.of("smtp_starttls")) == 1


def test_smtp_starttls_refused_stays_in_the_clear():
    result = run(Smtp, [*SMTP_OPENING, (ORIG, b"STARTTLS\r\n"),
                        (RESP, b"454 TLS not available\r\n"), (ORIG, b"QUIT\r\n"),
                        (RESP, b"221 bye\r\n")], candidates=[TlsRecorder])
    assert isinstance(result.analyser, Smtp)
    assert result.services == ["smtp"] and not result.of("smtp_starttls")
    assert "smtp" not in result.logs          # no client activity: Zeek writes no row


MESSAGE_HEADERS = (b"Received: from a.example (a.example [192.0.2.7]) by b.example\r\n"
                   b"Received: from c.example (c.example [198.51.100.9]) by a.example\r\n"
                   b"From: Alice <alice@example.org>\r\n"
                   b"To: bob@example.net, \"Carol, C\" <carol@example.net>\r\n"
                   b"Subject: a folded\r\n\tsubject\r\n"
                   b"Message-ID: <1@example.org>\r\n"
                   b"X-Mailer: TestMailer 1.0\r\n"
                   b"\r\n")


def test_smtp_message_headers_logged_body_skipped():
    body = b"SECRET line one\r\n" + b"x" * 70000 + b"\r\n..dot-stuffed\r\n"
    result = run(Smtp, [*SMTP_OPENING,
                        (ORIG, b"MAIL FROM:<alice@example.org> SIZE=100\r\n"),
                        (RESP, b"250 ok\r\n"),
                        (ORIG, b"RCPT TO:<bob@example.net>\r\nRCPT TO:<carol@example.net>\r\n"),
                        (RESP, b"250 ok\r\n"), (RESP, b"250 ok\r\n"),
                        (ORIG, b"DATA\r\n"), (RESP, b"354 go ahead\r\n"),
                        (ORIG, MESSAGE_HEADERS + body[:40000]), (ORIG, body[40000:] + b"\r\n"),
                        (ORIG, b".\r\nQUIT\r\n"),         # end of data split, QUIT pipelined
                        (RESP, b"250 2.0.0 queued as 1234\r\n"), (RESP, b"221 bye\r\n")])
    assert not result.errors and not result.of("weird")
    [row] = result.logs["smtp"]
    assert row["mailfrom"] == "alice@example.org"
    assert row["rcptto"] == ["bob@example.net", "carol@example.net"]
    assert row["from"] == "Alice <alice@example.org>"
    assert row["to"] == ["bob@example.net", "\"Carol, C\" <carol@example.net>"]
    assert row["subject"] == "a folded\tsubject"
    assert row["msg_id"] == "<1@example.org>" and row["user_agent"] == "TestMailer 1.0"
    assert row["first_received"].startswith("from c.example")
    assert row["second_received"].startswith("from a.example")
    assert row["path"] == ["10.0.0.2", "10.0.0.1", "192.0.2.7", "198.51.100.9"]
    assert row["last_reply"] == "250 2.0.0 queued as 1234"
    assert row["fuids"] is None and row["tls"] is False
    assert not any("SECRET" in str(v) for v in row.values())


def test_smtp_two_messages_two_rows_in_order():
    one = [(ORIG, b"MAIL FROM:<a@x.org>\r\n"), (RESP, b"250 ok\r\n"),
           (ORIG, b"RCPT TO:<b@y.org>\r\n"), (RESP, b"250 ok\r\n"),
           (ORIG, b"DATA\r\n"), (RESP, b"354 go\r\n"),
           (ORIG, b"Subject: s\r\n\r\nbody\r\n.\r\n"), (RESP, b"250 done\r\n")]
    result = run(Smtp, [*SMTP_OPENING, *one, *one, (ORIG, b"QUIT\r\n"), (RESP, b"221 bye\r\n")])
    rows = result.logs["smtp"]
    assert [r["trans_depth"] for r in rows] == [1, 2]
    assert [r["helo"] for r in rows] == ["client.example"] * 2


def test_smtp_bdat_chunks_are_skipped():
    result = run(Smtp, [*SMTP_OPENING, (ORIG, b"MAIL FROM:<a@x.org>\r\n"),
                        (RESP, b"250 ok\r\n"), (ORIG, b"RCPT TO:<b@y.org>\r\n"),
                        (RESP, b"250 ok\r\n"), (ORIG, b"BDAT 10 LAST\r\nMAIL FROM:"),
                        (RESP, b"250 message ok\r\n"), (ORIG, b"QUIT\r\n"),
                        (RESP, b"221 bye\r\n")])
    [row] = result.logs["smtp"]
    assert row["last_reply"] == "250 message ok" and row["trans_depth"] == 1
    assert not result.of("weird")


def test_smtp_auth_answers_are_not_commands():
    result = run(Smtp, [*SMTP_OPENING, (ORIG, b"AUTH LOGIN\r\n"), (RESP, b"334 VXNlcm5hbWU6\r\n"),
                        (ORIG, b"Ym9i\r\n"), (RESP, b"334 UGFzc3dvcmQ6\r\n"),
                        (ORIG, b"c2VjcmV0\r\n"), (RESP, b"235 ok\r\n"), (ORIG, b"QUIT\r\n"),
                        (RESP, b"221 bye\r\n")])
    assert not result.of("weird") and result.confirmed


def test_smtp_bad_reply_after_confirmation_is_a_weird():
    result = run(Smtp, [*SMTP_OPENING, (ORIG, b"NOOP\r\n"), (RESP, b"OK fine\r\n"),
                        (ORIG, b"QUIT\r\n"), (RESP, b"221 bye\r\n")])
    assert [w["name"] for w in result.of("weird")] == ["smtp_bad_reply"]
    assert result.services == ["smtp"] and not result.violations


def test_smtp_gap_is_a_weird_and_the_row_is_written():
    result = run(Smtp, [*SMTP_OPENING, (ORIG, b"MAIL FROM:<a@x.org>\r\n"),
                        (RESP, b"250 ok\r\n"), Hole(ORIG, 500), (ORIG, b"RCPT TO:<b@y.org>\r\n")])
    assert [w["name"] for w in result.of("weird")] == ["smtp_content_gap"]
    assert [r["mailfrom"] for r in result.logs["smtp"]] == ["a@x.org"]


def test_http_is_not_smtp():
    result = run(Smtp, [(ORIG, b"GET / HTTP/1.1\r\n\r\n"), (RESP, b"HTTP/1.1 200 OK\r\n\r\n")])
    assert [v["failure_reason"] for v in result.violations] == ["reply code out of range"]
    assert result.services == [] and "smtp" not in result.logs


def test_ftp_greeting_then_ftp_commands_is_not_smtp():
    result = run(Smtp, [(RESP, b"220 FTP server ready\r\n"), (ORIG, b"USER anonymous\r\n"),
                        (RESP, b"331 password please\r\n")])
    assert [v["failure_reason"] for v in result.violations] == ["unknown SMTP command"]
    assert not result.confirmed


def zeek_case(name):
    folder = SHARED / "conformance" / "zeek-protocols" / name
    if not folder.exists():
        pytest.skip("%s is not present" % folder)
    return folder


def tcp_payloads(pcap) -> list:
    """The ConnId and (side, payload) of a single-connection trace without reordering, in
    capture order, retransmitted bytes dropped (the originator is the
    sender of the first SYN)."""
    import socket

    import dpkt
    script, client, next_seq = [], None, {}
    with open(pcap, "rb") as f:
        for _, frame in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(frame).data
            tcp = ip.data
            if client is None and tcp.flags & dpkt.tcp.TH_SYN:
                client = (ip.src, tcp.sport)
                conn_id = ConnId(socket.inet_ntoa(ip.src), tcp.sport, socket.inet_ntoa(ip.dst),
                                 tcp.dport, "tcp")
            side = ORIG if (ip.src, tcp.sport) == client else RESP
            if tcp.flags & dpkt.tcp.TH_SYN:
                next_seq[side] = tcp.seq + 1
                continue
            seen = (next_seq[side] - tcp.seq) % 2**32
            data = tcp.data[seen:] if seen < 2**31 else tcp.data
            if data:
                script.append((side, data))
                next_seq[side] = (tcp.seq + len(tcp.data)) % 2**32
    return conn_id, script


def test_smtp_log_of_the_http_connect_tunnel_matches_zeek():
    """The SMTP session inside Zeek's CONNECT trace (the bytes after the
    proxy's 200 answer), against the smtp.log Zeek wrote for it."""
    folder = zeek_case("protocols-http-http-connect")
    conn_id, script = tcp_payloads(folder / "connect-with-smtp.pcap")
    assert script[0][1].startswith(b"CONNECT ") and script[1][1].startswith(b"HTTP/1.0 200")
    result = run(Smtp, script[2:], conn_id=conn_id)
    [ours] = result.logs["smtp"]
    [zeek] = read_zeek_log(folder / "smtp.log")
    for field in ("trans_depth", "helo", "mailfrom", "rcptto", "date", "from", "to", "cc",
                  "reply_to", "msg_id", "in_reply_to", "subject", "x_originating_ip",
                  "first_received", "second_received", "last_reply", "path", "user_agent",
                  "tls"):
        value = ours.get(field)
        if isinstance(value, list):
            value = ",".join(value)
        elif isinstance(value, bool):
            value = "T" if value else "F"
        assert ("-" if value is None else str(value)) == zeek[field], field


# -- IRC -----------------------------------------------------------------------------

def test_irc_starttls_670_hands_over():
    result = run(Irc, [(ORIG, b"STARTTLS\r\n"),
                       (RESP, b":irc.example 670  :STARTTLS successful, go ahead\r\n"),
                       (ORIG, CLIENT_HELLO), (RESP, SERVER_HELLO)], candidates=[TlsRecorder])
    assert tls_bytes(result) == {ORIG: CLIENT_HELLO, RESP: SERVER_HELLO}
    assert result.services == ["irc"] and len(result.of("irc_starttls")) == 1


def test_irc_session_with_notices_then_starttls():
    result = run(Irc, [(RESP, b":irc.example NOTICE * :*** Looking up your hostname\r\n"),
                       (ORIG, b"CAP LS 302\r\nNICK bob\r\n"),
                       (RESP, b":irc.example CAP * LS :tls\r\n:irc.example NOT"),
                       (ORIG, b"STARTTLS\r\n"),
                       (RESP, b"ICE * :hi\r\n:irc.example 670 bob :go ahead\r\n"),
                       (ORIG, CLIENT_HELLO)], candidates=[TlsRecorder])
    assert tls_bytes(result) == {ORIG: CLIENT_HELLO, RESP: b""}
    assert not result.of("weird")


def test_irc_starttls_691_stays_in_the_clear():
    result = run(Irc, [(ORIG, b"NICK bob\r\nSTARTTLS\r\n"),
                       (RESP, b":irc.example 691 bob :STARTTLS failed\r\n"),
                       (ORIG, b"USER bob 0 * :Bob\r\n"), (RESP, b":irc.example 001 bob :hi\r\n")],
                 candidates=[TlsRecorder])
    assert isinstance(result.analyser, Irc) and result.confirmed and not result.of("weird")


def test_irc_unknown_command_after_confirmation_is_a_weird():
    result = run(Irc, [(ORIG, b"NICK bob\r\n"), (RESP, b":srv 001 bob :welcome\r\n"),
                       (ORIG, b"FROBNICATE now\r\n")])
    assert [w["name"] for w in result.of("weird")] == ["irc_invalid_command"]


def test_http_is_not_irc():
    result = run(Irc, [(ORIG, b"GET / HTTP/1.1\r\n\r\n")])
    assert [v["failure_reason"] for v in result.violations] == ["not an IRC command"]
    assert not result.confirmed


# -- XMPP ----------------------------------------------------------------------------

XMPP_OPENING = [
    (ORIG, b"<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/"
           b"streams' xmlns='jabber:client' to='example.org' version='1.0'>"),
    (RESP, b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' id='1' "
           b"from='example.org' version='1.0'>"),
    (RESP, b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/>"
           b"</starttls></stream:features>")]
TLS_NS = b"urn:ietf:params:xml:ns:xmpp-tls"
STARTTLS_ELEMENT = b"<starttls xmlns='" + TLS_NS + b"'/>"


def test_xmpp_proceed_hands_over_at_its_last_byte():
    result = run(Xmpp, [*XMPP_OPENING, (ORIG, STARTTLS_ELEMENT),
                        (RESP, b"<proc"), (RESP, b"eed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
                        (ORIG, CLIENT_HELLO), (RESP, SERVER_HELLO)], candidates=[TlsRecorder])
    assert tls_bytes(result) == {ORIG: CLIENT_HELLO, RESP: SERVER_HELLO}
    assert result.services == ["xmpp"] and len(result.of("xmpp_starttls")) == 1


def test_xmpp_failure_stays_in_the_clear():
    result = run(Xmpp, [*XMPP_OPENING, (ORIG, STARTTLS_ELEMENT),
                        (RESP, b"<failure xmlns='" + TLS_NS + b"'/></stream:stream>")],
                 candidates=[TlsRecorder])
    assert isinstance(result.analyser, Xmpp) and result.confirmed


def test_xmpp_proceed_without_starttls_is_a_weird():
    result = run(Xmpp, [*XMPP_OPENING, (RESP, b"<proceed xmlns='" + TLS_NS + b"'/>")])
    assert [w["name"] for w in result.of("weird")] == ["XMPP: proceed without starttls"]


def test_other_xml_is_not_xmpp():
    result = run(Xmpp, [(ORIG, b"<?xml version='1.0'?><methodCall><methodName>x</methodName>")])
    assert [v["failure_reason"] for v in result.violations] == ["not an XMPP stream header"]


# -- MySQL ---------------------------------------------------------------------------

def packet(seq: int, payload: bytes) -> bytes:
    return struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload


GREETING = packet(0, b"\x0a8.0.36\x00" + b"\x01\x00\x00\x00" + b"abcdefgh\x00" +
                  struct.pack("<H", 0xFFFF) + b"\x21\x02\x00" + struct.pack("<H", 0xDFFF) +
                  b"\x15" + b"\x00" * 10 + b"ijklmnopqrst\x00mysql_native_password\x00")
CAPS = 0x00000200 | 0x00008000 | 0x00080000          # PROTOCOL_41, SECURE_CONNECTION, PLUGIN_AUTH


def test_mysql_ssl_request_hands_over():
    ssl_request = packet(1, struct.pack("<IIB", CAPS | 0x800, 1 << 24, 33) + b"\x00" * 23)
    result = run(MySql, [(RESP, GREETING), (ORIG, ssl_request), (ORIG, CLIENT_HELLO),
                         (RESP, SERVER_HELLO)], candidates=[TlsRecorder])
    assert tls_bytes(result) == {ORIG: CLIENT_HELLO, RESP: SERVER_HELLO}
    assert result.services == ["mysql"] and "mysql" not in result.logs
    assert [e["version"] for e in result.of("mysql_server_version")] == ["8.0.36"]


def test_mysql_login_and_commands_logged():
    login = packet(1, struct.pack("<IIB", CAPS, 1 << 24, 33) + b"\x00" * 23 + b"bob\x00" +
                   b"\x14" + b"p" * 20 + b"mysql_native_password\x00")
    ok = b"\x00\x00\x00\x02\x00\x00\x00"
    result_set = (packet(1, b"\x01") + packet(2, b"\x03def" + b"\x00" * 20) +
                  packet(3, b"\xfe\x00\x00\x02\x00") + packet(4, b"\x011") + packet(5, b"\x012") +
                  packet(6, b"\xfe\x00\x00\x02\x00"))
    error = packet(1, b"\xff\x7a\x04#42S02Table 'x.nope' doesn't exist")
    result = run(MySql, [(RESP, GREETING), (ORIG, login), (RESP, packet(2, ok)),
                         (ORIG, packet(0, b"\x03SELECT 1 UNION SELECT 2")), (RESP, result_set),
                         (ORIG, packet(0, b"\x03SELECT * FROM nope")), (RESP, error),
                         (ORIG, packet(0, b"\x03DELETE FROM t")),
                         (RESP, packet(1, b"\x00\x05\x00\x02\x00\x00\x00")),
                         (ORIG, packet(0, b"\x01"))])
    rows = [(r["cmd"], r["arg"], r.get("success"), r.get("rows"), r.get("response"))
            for r in result.logs["mysql"]]
    assert rows == [("login", "bob", True, 0, None),
                    ("query", "SELECT 1 UNION SELECT 2", True, 0, None),
                    ("query", "SELECT * FROM nope", False, None, "Table 'x.nope' doesn't exist"),
                    ("query", "DELETE FROM t", True, 5, None),
                    ("quit", "", None, None, None)]
    assert not result.of("weird") and not result.errors


def test_text_is_not_mysql():
    result = run(MySql, [(RESP, b"220 mail.example ESMTP\r\n")])
    assert [v["failure_reason"] for v in result.violations] == \
        ["MySQL handshake packet of %d bytes" % 0x303232]   # b"220" read as a length
    result = run(MySql, [(RESP, packet(0, b"\x0bnot ten")), (ORIG, packet(1, b"x" * 40))])
    assert [v["failure_reason"] for v in result.violations] == ["no MySQL server handshake"]


class ReadsTooFar(Analyser):
    """A candidate that reads everything up to the TLS bytes before it gives
    up (as FTP does on an SMTP session: it takes the ClientHello for a
    command)."""
    name = "reads-too-far"

    def main(self):
        seen = b""
        while b"\x16\x03" not in seen:
            seen += self.read_any()[1]
        self.violation("not mine", seen[-10:])


def test_hand_over_after_a_replay_gives_the_unread_bytes_to_tls():
    """SMTP gets the connection from a candidate that had read past the
    STARTTLS switch: the bytes SMTP did not read of that recording go to
    the TLS analyser (core: Runtime.hand_over passes them on)."""
    script = [*SMTP_OPENING, (ORIG, b"STARTTLS\r\n"), (RESP, b"220 go ahead\r\n"),
              (ORIG, CLIENT_HELLO), (RESP, SERVER_HELLO)]
    result = run(ReadsTooFar, script, candidates=[Smtp, TlsRecorder])
    assert [v["analyzer_name"] for v in result.violations] == ["READS-TOO-FAR"]
    assert tls_bytes(result) == {ORIG: CLIENT_HELLO, RESP: SERVER_HELLO}
    assert result.services == ["smtp"]
