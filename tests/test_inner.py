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
