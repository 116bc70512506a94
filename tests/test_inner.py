"""Streams carried inside another protocol (analyser.InnerStreams): the
carrier feeds decoded bytes, content detection picks the inner analyser,
whose logs, service and violations belong to the carrier's connection."""
from analyser import ORIG, RESP, Analyser, InnerStreams, Signature, StreamEnd
from analyser.testing import End, run


class Carrier(Analyser):
    """Lines 'o <text>' / 'r <text>' from the client carry <text> for either side."""
    name = "carrier"

    def main(self):
        inner = InnerStreams(self)
        try:
            while True:
                line = self.read_line(ORIG)
                side = ORIG if line[:1] == b"o" else RESP
                inner.feed(side, line[2:].rstrip(b"\n").replace(b"|", b"\r\n"))
        except StreamEnd:
            inner.end()


class Greeter(Analyser):
    """The carried protocol: 'HELLO name' lines, answered with 'OK'."""
    name = "greeter"
    signatures = (Signature(ORIG, b"HELLO "),)
    logs = {"greeter": [("uid", "string"), ("who", "string"), ("answer", "string")]}

    def main(self):
        try:
            while True:
                who = self.read_line(ORIG).strip()[6:]
                answer = self.read_line(RESP).strip()
                if answer != b"OK":
                    self.violation("no OK", answer)
                self.confirm()
                self.log("greeter", {"uid": self.uid, "who": who.decode(),
                                     "answer": answer.decode()})
        except StreamEnd:
            pass


def test_carried_stream_is_found_by_content_and_analysed():
    result = run(Carrier, [(ORIG, b"o HELLO al"), (ORIG, b"ice|\n"), (ORIG, b"r OK|\n"),
                           (ORIG, b"o HELLO bob|\nr OK|\n"), End(ORIG)],
                 candidates=[Greeter], uid="CCarrier")
    assert result.logs["greeter"] == [
        {"uid": "CCarrier", "who": "alice", "answer": "OK"},
        {"uid": "CCarrier", "who": "bob", "answer": "OK"}]
    assert result.services == ["greeter"]
    assert not result.errors


def test_inner_violation_is_the_carriers_connections():
    result = run(Carrier, [(ORIG, b"o HELLO carol|\nr NO|\n"), End(ORIG)],
                 candidates=[Greeter], uid="CCarrier")
    assert "greeter" not in result.logs
    assert [(v["analyzer_name"], v["uid"], v["failure_reason"]) for v in result.violations] == [
        ("GREETER", "CCarrier", "no OK")]
    assert result.services == []


def test_nothing_matches_nothing_runs():
    result = run(Carrier, [(ORIG, b"o SOMETHING ELSE ENTIRELY|\n"), End(ORIG)],
                 candidates=[Greeter])
    assert "greeter" not in result.logs
    assert result.counters.get("inner_streams_undetected") == 1


class Banner(Analyser):
    """Server speaks first: '220 ...', then the client's 'HELO' line."""
    name = "banner220"
    signatures = (Signature(RESP, b"220 "),)
    logs = {"banner220": [("uid", "string"), ("greeting", "string"), ("hello", "string")]}

    def main(self):
        greeting = self.read_line(RESP).strip()
        hello = self.read_line(ORIG).strip()
        self.confirm()
        self.log("banner220", {"uid": self.uid, "greeting": greeting.decode(),
                               "hello": hello.decode()})


def test_connect_tunnel_goes_to_content_detection():
    from protocols.http import Http
    script = [(ORIG, b"CONNECT mail.test:25 HTTP/1.1\r\nHost: mail.test:25\r\n\r\n"),
              (RESP, b"HTTP/1.1 200 Connection established\r\n\r\n220 mail.test ESMTP\r\n"),
              (ORIG, b"HELO me\r\n")]
    result = run(Http, script, candidates=[Banner], uid="CConn")
    assert [(r["greeting"], r["hello"]) for r in result.logs["banner220"]] == [
        ("220 mail.test ESMTP", "HELO me")]
    assert [(r["method"], r["status_code"]) for r in result.logs["http"]] == [("CONNECT", 200)]
    assert result.services == ["http", "banner220"]


def test_connect_to_something_unknown_releases_the_streams():
    from protocols.http import Http
    script = [(ORIG, b"CONNECT x.test:9 HTTP/1.1\r\n\r\n"),
              (RESP, b"HTTP/1.1 200 OK\r\n\r\n"), (ORIG, b"\x00\x01binary")]
    result = run(Http, script, candidates=[Banner])
    assert result.services == ["http"]
    assert result.counters["undetected_rest"] == 1
    assert not result.errors
