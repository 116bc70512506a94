"""The analyser author's test harness (analyser/testing.py): its read
semantics against the compiled stream layer's, detection with candidates,
log rows checked against declared fields; and the FTP analyser's parsing
tests that need no data connection, run on it without engine or pcap."""
from __future__ import annotations

import pytest

from analyser import ORIG, RESP, Analyser, Gap, Signature, StreamEnd
from analyser.runtime import ConnId
from analyser.testing import End, Hole, Wait, run
from protocols.ftp import Ftp


class Lines(Analyser):
    """Logs each line of the originator with the responder's answer."""
    name = "lines"
    logs = {"lines": [("ts", "time"), ("uid", "string"), ("request", "string"),
                      ("answer", "string"), ("skipped", "count")]}

    def main(self):
        while True:
            try:
                request = self.read_line(ORIG)
            except Gap as gap:
                self.weird("lines_gap", size=gap.size, before=gap.data.decode())
                continue
            except StreamEnd:
                return
            size = int(request.split()[1]) if request.startswith(b"SKIP") else 0
            self.skip(ORIG, size)
            answer = self.read_line(RESP)
            self.confirm()
            self.log("lines", {"ts": self.ts, "uid": self.uid,
                               "request": request.strip().decode(),
                               "answer": answer.strip().decode(), "skipped": size})


def test_lines_across_chunks_holes_skips_and_the_clock():
    result = run(Lines, [(ORIG, b"HEL"), (ORIG, b"LO 1\r\nSKIP 5\r\nab"), (RESP, b"OK 1\r\n"),
                         (ORIG, b"cde"), Wait(10), (RESP, b"OK 2\r\n"),
                         (ORIG, b"par"), Hole(ORIG, 40), (ORIG, b"NEXT\r\n"),
                         (RESP, b"OK 3\r\n")], start_time=500.0)
    rows = result.logs["lines"]
    assert [(r["request"], r["answer"], r["skipped"]) for r in rows] == [
        ("HELLO 1", "OK 1", 0), ("SKIP 5", "OK 2", 5), ("NEXT", "OK 3", 0)]
    assert 510 < rows[1]["ts"] < 511                   # the Wait moved trace time
    weird, = result.of("weird")
    assert (weird["name"], weird["size"], weird["before"]) == ("lines_gap", 40, "par")
    assert result.services == ["lines"] and result.confirmed
    assert result.delivered == {ORIG: len(b"HELLO 1\r\nSKIP 5\r\nparNEXT\r\n"),
                                RESP: 18}


def test_a_misspelt_log_field_is_an_error_for_the_author():
    class Typo(Lines):
        name = "typo"

        def main(self):
            self.log("lines", {"ts": self.ts, "reqest": "x"})

    result = run(Typo, [(ORIG, b"x\n")])
    error, = result.errors
    assert error["error"] == ("ValueError: log lines has no field reqest (fields: ts, uid, "
                              "request, answer, skipped)")


def test_an_undeclared_log_is_an_error():
    class Undeclared(Analyser):
        name = "undeclared"

        def main(self):
            self.log("nothing", {"ts": self.ts})

    error, = run(Undeclared, []).errors
    assert "writes log 'nothing' but declares only none" in error["error"]


def test_a_violation_gives_the_next_candidate_both_streams_from_the_start():
    class Picky(Analyser):
        name = "picky"

        def main(self):
            greeting = self.read_line(RESP)
            self.violation("no greeting", greeting)

    result = run(Picky, [(RESP, b"HI there\r\n"), (ORIG, b"HELLO 1\r\n"),
                         (RESP, b"OK 1\r\n")], candidates=[Lines])
    assert [(r["request"], r["answer"]) for r in result.logs["lines"]] == [
        ("HELLO 1", "HI there")]
    violation, = result.violations
    assert (violation["analyzer_name"], violation["failure_reason"],
            violation["failure_data"]) == ("PICKY", "no greeting", "HI there\r\n")


def test_bad_declarations_fail_when_the_class_is_defined():
    with pytest.raises(TypeError, match="unknown Zeek type 'number'"):
        class BadType(Analyser):
            name = "badtype"
            logs = {"x": [("n", "number")]}
    with pytest.raises(TypeError, match="signature pattern must be 1 to 16 bytes"):
        class LongSignature(Analyser):
            name = "long"
            signatures = (Signature(ORIG, b"x" * 17),)


def test_signature_rules():
    assert Signature(ORIG, b"USER ", nocase=True, skip_space=True).matches(b"\r\n user x")
    assert not Signature(ORIG, b"USER ", nocase=True).matches(b"\r\n user x")
    assert Signature(ORIG, b"\x16\x03?", wildcard=True).matches(b"\x16\x03\x01\x02")
    assert Signature(RESP, b"220").matches(b"2")          # short: all it has fits
    assert not Signature(RESP, b"220").matches(b"")


# -- FTP parsing on the harness (no data connections needed) -------------------------------

FTP_ID = ConnId("10.1.0.1", 40000, "10.1.0.2", 21, "tcp")


def ftp(script, **config):
    return run(Ftp, script, config=config, conn_id=FTP_ID)


def test_ftp_invalid_reply_stops_parsing_like_zeek():
    result = ftp([(RESP, b"220 hi\r\n"), (ORIG, b"USER anonymous\r\n"),
                  (RESP, b"331 pw\r\n"), (ORIG, b"PASS x@\r\n"), (RESP, b"230 in\r\n"),
                  (ORIG, b"PASV\r\n"), (RESP, b"99 PASV invalid\r\n"), (ORIG, b"QUIT\r\n"),
                  (RESP, b"221 Bye\r\n")], log_commands="USER+PASS+QUIT")
    assert not result.errors
    assert [r["command"] for r in result.logs["ftp"]] == ["USER", "PASS", "PASV"]
    assert result.logs["ftp"][2]["reply_code"] == 230     # Zeek's stale reply on the last row
    violation, = result.violations
    assert (violation["analyzer_name"], violation["failure_reason"],
            violation["failure_data"]) == ("FTP", "non-numeric reply code", "99 PASV invalid")
    assert result.services == []                          # confirmed, then taken back


def test_ftp_auth_tls_marks_the_channel_encrypted_and_stops_parsing():
    result = ftp([(RESP, b"220 vsFTPd\r\n"), (ORIG, b"AUTH TLS\r\n"),
                  (RESP, b"234 Proceed with negotiation.\r\n"),
                  (ORIG, b"\x16\x03\x01\x00\x05hello"),
                  (RESP, b"\x16\x03\x03\x00\x02hi" + b"\x00" * 300),
                  (ORIG, b"\x17\x03\x03\x00\x10" + b"\xff" * 16)], log_commands="<init>+AUTH")
    assert not result.errors
    assert [(r["command"], r["reply_code"]) for r in result.logs["ftp"]] == [
        ("<init>", 220), ("AUTH", 234)]
    assert result.of("ftp_encrypted")[0]["method"] == "TLS"
    assert not result.of("weird")                         # TLS bytes were never parsed
    assert result.services == ["ftp", "ssl"]


def test_ftp_malformed_and_overlong_lines_are_weirds_and_parsing_goes_on():
    result = ftp([(RESP, b"220 hi\r\n"), (ORIG, b"USER anonymous\r\n"), (RESP, b"331 pw\r\n"),
                  (ORIG, b"\x01\x02 binary junk\r\n"), (ORIG, b"X" * 20000 + b" arg\r\n"),
                  (RESP, b"500 " + b"y" * 9000 + b"\r\n"), (ORIG, b"DELE old.txt\r\n"),
                  (RESP, b"250 deleted\r\n")])
    assert not result.errors
    assert {"FTP_invalid_command", "FTP_line_too_long"} <= {w["name"] for w in result.of("weird")}
    dele, = result.logs["ftp"]
    assert (dele["command"], dele["arg"], dele["reply_code"]) == (
        "DELE", "ftp://10.1.0.2/./old.txt", 250)


def test_ftp_multiline_replies_and_pipelined_commands():
    result = ftp([(RESP, b"220-Welcome\r\n220-second line\r\n"),
                  (RESP, b" free text line\r\n220 ready\r\n"),
                  (ORIG, b"USER anonymous\r\nPASS guest@\r\n"),
                  (RESP, b"331 send password\r\n230-Anonymous login\r\n230 ok\r\n"),
                  (ORIG, b"PASV\r\n"),
                  (RESP, b"227 Entering Passive Mode (10,1,0,2,23,113).\r\n")])
    pasv, = result.logs["ftp"]
    assert (pasv["reply_code"], pasv["data_channel.resp_p"], pasv["user"],
            pasv["password"]) == (227, 6001, "anonymous", "guest@")
    channel, = result.of("data_channel")
    assert channel["endpoints"] == [["10.1.0.2", 6001]] and channel["passive"] is True
    assert result.counters["expectations_added"] == 1
    assert result.expectations == []          # withdrawn when the control connection ended
    assert result.confirmed and result.services == ["ftp"]


def test_ftp_a_hole_drops_the_line_it_broke():
    result = ftp([(RESP, b"220 hi\r\n"), (ORIG, b"USER a\r\nDELE x"), Hole(ORIG, 30),
                  (ORIG, b"\r\nRMD y\r\n"), (RESP, b"331 pw\r\n"), (RESP, b"250 ok\r\n"),
                  End(ORIG)], log_commands="RMD+DELE")
    assert [w["name"] for w in result.of("weird")] == ["FTP_content_gap"]
    assert [(r["command"], r["reply_code"]) for r in result.logs["ftp"]] == [("RMD", 250)]


def test_unskipped_says_how_far_short_of_a_skip_a_side_ended():
    from analyser import Analyser, ORIG, StreamEnd
    from analyser.testing import End, run

    class Skipper(Analyser):
        name = "skipper"
        logs = {}

        def main(self):
            self.skip(ORIG, 1000)
            self.record = [self.unskipped(ORIG)]
            try:
                self.read(ORIG, 1)
            except StreamEnd:
                self.record.append(self.unskipped(ORIG))
            self.emit("seen", short=self.record)

    result = run(Skipper, [(ORIG, b"a" * 300), (ORIG, b"b" * 200), End(ORIG)])
    event, = result.of("seen")
    assert event["short"] == [1000, 500]
