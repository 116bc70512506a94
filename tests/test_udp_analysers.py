"""Datagram analysers (`protocol = "udp"`): chosen by port hint, by signature
on the first datagram of a side, or as the next candidate after a
violation; each datagram arrives whole, in order, with its side; the end of
the flow reaches read_datagram() as StreamEnd.  Through the engine (a
crafted pcap, `analyser replay --load`) and through the author's harness."""
import json
import textwrap

from analyser import ORIG, RESP, Analyser, StreamEnd
from analyser.testing import run
from packets import udp_packet, write_pcap

ANALYSERS = textwrap.dedent('''
    from analyser import ORIG, RESP, Analyser, Signature, StreamEnd

    class Echo(Analyser):
        """Logs every datagram it reads, and the end."""
        name = "echo"
        protocol = "udp"
        ports = {7}
        signatures = (Signature(ORIG, b"ECHO "),)
        logs = {"echo": [("ts", "time"), ("uid", "string"), ("side", "count"),
                         ("data", "string")]}

        def main(self):
            try:
                while True:
                    side, data = self.read_datagram()
                    if not data.startswith((b"ECHO", b"echo")):
                        self.violation("not echo", data)
                    self.confirm()
                    self.log("echo", {"ts": self.ts, "uid": self.uid, "side": side,
                                      "data": data.decode()})
            except StreamEnd:
                self.log("echo", {"ts": self.ts, "uid": self.uid, "data": "END"})

    class Other(Analyser):
        """Takes what Echo gives up: counts the datagrams it gets."""
        name = "other"
        protocol = ("udp", "tcp")
        signatures = (Signature(ORIG, b"ECHO "), Signature(ORIG, b"OTHER"))
        logs = {"other": [("uid", "string"), ("datagrams", "count"), ("first", "string")]}

        def main(self):
            seen = []
            try:
                while True:
                    seen.append(self.read_datagram()[1])
                    self.confirm()
            except StreamEnd:
                self.log("other", {"uid": self.uid, "datagrams": len(seen),
                                   "first": seen[0].decode() if seen else None})
''')


def rows(path):
    lines = [line.split("\t") for line in path.read_text().splitlines()]
    fields = next(line[1:] for line in lines if line[0] == "#fields")
    return [dict(zip(fields, line)) for line in lines if not line[0].startswith("#")]


def replay(tmp_path, run_cli, frames, *options):
    module = tmp_path / "udp_analysers.py"
    module.write_text(ANALYSERS)
    pcap = tmp_path / "udp.pcap"
    write_pcap(pcap, frames)
    out = tmp_path / ("logs-%d" % len(list(tmp_path.glob("logs-*"))))
    proc = run_cli("replay", pcap, "--load", module, "--logs", out, "-q", *options)
    assert proc.returncode == 0, proc.stderr
    return out


def conversation(port, first=b"ECHO hello"):
    c, s = ("10.0.0.1", 40000), ("10.0.0.2", port)
    return [(10.0, udp_packet(*c[:1], *s[:1], c[1], s[1], first)),
            (10.1, udp_packet(s[0], c[0], s[1], c[1], b"echo hello")),
            (10.2, udp_packet(c[0], s[0], c[1], s[1], b"ECHO " + b"x" * 1400)),
            (10.3, udp_packet(s[0], c[0], s[1], c[1], b"echo " + b"x" * 1400))]


def test_port_hint_gets_every_datagram_whole_and_the_end(tmp_path, run_cli):
    out = replay(tmp_path, run_cli, conversation(7))
    echo = rows(out / "echo.log")
    assert [(r["side"], r["data"][:10], len(r["data"])) for r in echo] == [
        ("0", "ECHO hello", 10), ("1", "echo hello", 10), ("0", "ECHO xxxxx", 1405),
        ("1", "echo xxxxx", 1405), ("-", "END", 3)]
    conn = rows(out / "conn.log")
    assert [(r["proto"], r["service"], r["id.resp_p"]) for r in conn] == [("udp", "echo", "7")]
    assert echo[0]["uid"] == conn[0]["uid"]


def test_signature_finds_it_on_any_port(tmp_path, run_cli):
    out = replay(tmp_path, run_cli, conversation(5555))
    assert len(rows(out / "echo.log")) == 5
    assert rows(out / "conn.log")[0]["service"] == "echo"
    # --detect ports: no port hint for 5555, so nothing analyses it.
    out = replay(tmp_path, run_cli, conversation(5555), "--detect", "ports")
    assert not (out / "echo.log").exists()
    assert rows(out / "conn.log")[0]["service"] == "-"


def test_violation_hands_recorded_datagrams_to_the_next_candidate(tmp_path, run_cli):
    # Port 7 starts Echo, "OTHER" makes Other a candidate; Echo's violation on
    # the first datagram hands all four, from the first, to Other.
    out = replay(tmp_path, run_cli, conversation(7, first=b"OTHER stuff"))
    other = rows(out / "other.log")
    assert [(r["datagrams"], r["first"]) for r in other] == [("4", "OTHER stuff")]
    analyzer = rows(out / "analyzer.log")
    assert [(r["analyzer_name"], r["failure_reason"], r["proto"]) for r in analyzer] == [
        ("ECHO", "not echo", "udp")]
    assert rows(out / "conn.log")[0]["service"] == "other"


def test_an_ended_analyser_costs_nothing_more(tmp_path, run_cli):
    # Other returns at once for TCP... here Echo gives up with no candidate:
    # the flow is counted, the other datagrams reach no analyser.
    module = tmp_path / "udp_analysers.py"
    module.write_text(ANALYSERS)
    pcap = tmp_path / "udp.pcap"
    write_pcap(pcap, conversation(7, first=b"nothing known"))
    proc = run_cli("replay", pcap, "--load", module, "--logs", tmp_path / "logs",
                   "--no-analyser", "other")
    assert proc.returncode == 0, proc.stderr
    conn = rows(tmp_path / "logs" / "conn.log")
    assert (conn[0]["orig_pkts"], conn[0]["resp_pkts"], conn[0]["service"]) == ("2", "2", "-")
    assert len(rows(tmp_path / "logs" / "analyzer.log")) == 1
    assert " 1 datagrams," in proc.stderr          # the first only; 3 more were counted in C


class Counter(Analyser):
    name = "counter"
    protocol = "udp"
    logs = {"counter": [("side", "count"), ("size", "count")]}

    def main(self):
        try:
            while True:
                side, data = self.read_datagram()
                self.log("counter", {"side": side, "size": len(data)})
        except StreamEnd:
            self.log("counter", {"size": 0})


def test_harness_runs_datagram_analysers():
    result = run(Counter, [(ORIG, b"abc"), (RESP, b""), (RESP, b"de")])
    assert [(r.get("side"), r["size"]) for r in result.logs["counter"]] == [
        (0, 3), (1, 0), (1, 2), (None, 0)]
    assert not result.errors


def test_protocol_must_be_a_known_transport():
    try:
        type("Bad", (Analyser,), {"name": "bad", "protocol": "sctp"})
    except TypeError as exc:
        assert "protocol" in str(exc)
    else:
        raise AssertionError("protocol sctp was accepted")


def test_events_name_the_udp_connection(tmp_path, run_cli):
    module = tmp_path / "udp_analysers.py"
    module.write_text(ANALYSERS)
    pcap = tmp_path / "udp.pcap"
    write_pcap(pcap, conversation(7))
    proc = run_cli("replay", pcap, "--load", module, "--events", "-", "-q",
                   "--logs", tmp_path / "logs")
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    confirmations = [e for e in events if e["event"] == "analyzer_confirmation"]
    assert [(e["analyser"], e["proto"], e["id.resp_p"]) for e in confirmations] == [
        ("echo", "udp", 7)]
