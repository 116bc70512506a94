"""DNS against real programs: dnsmasq serving a local zone in one network
namespace, queried by dig in the other, captured with tcpdump there and
replayed; every dns.log value is checked against what dig printed.

The same queries go to port 53 and to port 5300.  Zeek finds DNS by port
only (DNS::ports, no content signature), and so does this analyser: the
replay adds the port with `--analyser dns:ports=53,5300`; without it the
5300 flows are counted but not analysed (checked too).  `+noedns` keeps
UDP answers to 512 bytes, so the TXT record set of big.test (3 strings of
200 bytes) comes back truncated (TC) and dig retries over TCP.

Zeek's rules visible here: `TC` is the query's flag (a truncated response
does not set it); a response with no records at all is `rejected`; `Z` holds
the query's AD bit that dig sets.  Needs root, dnsmasq (dnsmasq-base), dig
(bind9-dnsutils) and tcpdump; skips otherwise."""
import re
import shutil
import subprocess
import time

import pytest

from conftest import read_zeek_log, replay_to
from netns import VethPair, unavailable

PROGRAMS = {"dnsmasq": "dnsmasq-base", "dig": "bind9-dnsutils", "tcpdump": "tcpdump"}
missing = [f"{p} (Debian {pkg})" for p, pkg in PROGRAMS.items() if shutil.which(p) is None]
why = unavailable() or (("needs " + ", ".join(missing)) if missing else None)
pytestmark = pytest.mark.skipif(why is not None, reason=why or "")

BIG = [c * 200 for c in "abc"]
QUERIES = [("x.test", "A"), ("h.test", "AAAA"), ("m.test", "MX"), ("t.test", "TXT"),
           ("nope.test", "A"), ("big.test", "TXT")]
PORTS = (53, 5300)


def dnsmasq(net, port):
    return ["dnsmasq", "-k", "-C", "/dev/null", "--no-resolv", "--no-hosts",
            "--bind-interfaces", "--listen-address", net.server_ip, "--port", str(port),
            "--local=/test/", "--local-ttl=300", "--user=root", "--pid-file=",
            "--address=/x.test/10.1.2.3", "--host-record=h.test,10.1.2.4,fd00::4",
            "--mx-host=m.test,mail.m.test,10", "--txt-record=t.test,hello world",
            "--txt-record=big.test," + ",".join(BIG)]


def parse_dig(output: str) -> dict:
    """id, status, flags, truncated-and-retried, and the answer lines of dig's output."""
    head = re.search(r"opcode: (\w+), status: (\w+), id: (\d+)", output)
    flags = re.search(r";; flags: ([a-z ]*);", output).group(1).split()
    answers = []
    section = output.split(";; ANSWER SECTION:\n", 1)
    if len(section) == 2:
        for line in section[1].split("\n\n", 1)[0].splitlines():
            owner, ttl, _cls, rtype, data = line.split(None, 4)
            answers.append((rtype, int(ttl), data))
    return {"opcode": head.group(1), "status": head.group(2), "id": int(head.group(3)),
            "flags": flags, "answers": answers, "retried": "retrying in TCP mode" in output,
            "transport": re.search(r";; SERVER: .*\((UDP|TCP)\)", output).group(1)}


def zeek_rendering(rtype: str, data: str) -> str:
    """What Zeek logs in `answers` for a record dig printed."""
    if rtype == "MX":
        return data.split()[1].rstrip(".")
    if rtype == "TXT":
        strings = re.findall(r'"((?:[^"\\]|\\.)*)"', data)
        return " ".join("TXT %d %s" % (len(s), s) for s in strings)
    return data


@pytest.fixture(scope="module")
def captured(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dns")
    pcap = tmp / "dns.pcap"
    digs = {}
    with VethPair(tag="dns") as net:
        for port in PORTS:
            net.popen("server", dnsmasq(net, port), stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL)
        with net.capture("client", pcap, "ip"):
            time.sleep(0.5)                           # both dnsmasq listening
            for port in PORTS:
                for qname, qtype in QUERIES:
                    done = net.run("client", ["dig", "@" + net.server_ip, "-p", port,
                                              "+noedns", "+tries=2", "+time=2", qname, qtype])
                    digs[(port, qname)] = parse_dig(done.stdout)
    return pcap, digs


def test_dns_log_has_what_dig_printed_on_both_ports(captured, tmp_path):
    pcap, digs = captured
    out = replay_to(pcap, tmp_path, "--analyser", "dns:ports=53,5300")
    rows = read_zeek_log(out / "dns.log")
    assert len(rows) == len(PORTS) * (len(QUERIES) + 1)          # + the TCP retry
    for (port, qname), dig in digs.items():
        qtype = dict(QUERIES)[qname]
        mine = [r for r in rows if r["id.resp_p"] == str(port) and r["query"] == qname]
        assert dig["transport"] == ("TCP" if qname == "big.test" else "UDP")
        final = [r for r in mine if r["trans_id"] == str(dig["id"])]
        assert len(final) == 1, (port, qname)
        row = final[0]
        assert row["proto"] == dig["transport"].lower()
        assert (row["qtype_name"], row["qclass_name"], row["rcode_name"], row["opcode_name"]) \
            == (qtype, "C_INTERNET", dig["status"], dig["opcode"].lower())
        answers = [zeek_rendering(t, d) for t, _, d in dig["answers"]]
        ttls = ["%.6f" % ttl for _, ttl, _ in dig["answers"]]
        assert row["answers"] == (",".join(answers) or "-"), (port, qname)
        assert row["TTLs"] == (",".join(ttls) or "-")
        # AA and RA come from a response with answers (Zeek's do_reply).
        assert row["AA"] == ("T" if "aa" in dig["flags"] and answers else "F")
        assert row["RA"] == ("T" if "ra" in dig["flags"] and answers else "F")
        assert row["RD"] == ("T" if "rd" in dig["flags"] else "F")
        assert row["TC"] == ("T" if "tc" in dig["flags"] else "F") == "F"
        assert row["Z"] == "2"                             # dig's AD bit
        assert row["rejected"] == ("T" if not answers else "F")
        if qname == "big.test":
            # The truncated UDP exchange before the retry: the same question,
            # a response with no records.
            assert dig["retried"]
            [udp] = [r for r in mine if r["proto"] == "udp"]
            assert (udp["qtype_name"], udp["rcode_name"], udp["answers"], udp["rejected"],
                    udp["TC"]) == ("TXT", "NOERROR", "-", "T", "F")
            assert row["answers"] == " ".join("TXT 200 " + s for s in BIG)
    services = {(r["id.resp_p"], r["proto"], r["service"])
                for r in read_zeek_log(out / "conn.log")}
    assert services == {(str(p), proto, "dns") for p in PORTS for proto in ("udp", "tcp")}


def test_without_the_port_option_port_5300_is_not_analysed(captured, tmp_path):
    pcap, _ = captured
    out = replay_to(pcap, tmp_path)
    rows = read_zeek_log(out / "dns.log")
    assert {r["id.resp_p"] for r in rows} == {"53"}
    services = {(r["id.resp_p"], r["service"]) for r in read_zeek_log(out / "conn.log")}
    assert services == {("53", "dns"), ("5300", "-")}
