"""Zeek conformance of the STARTTLS cases: conn.log's service and ssl.log
against Zeek's baselines in ../shared/conformance/zeek-protocols, scored by
../shared/tools/zeek_compare.py (strict: the service is compared too).

SMTP, IRC, XMPP and MySQL sessions switch to TLS in the middle of the
connection; the service must name both protocols (`smtp,ssl`, ...) and the
ssl.log row must be the one Zeek wrote for the handshake that follows the
switch.  The CONNECT case (`http,smtp`) also needs the HTTP analyser to hand
the tunnel to content detection; it is checked only when an `http`
analyser is present.  Skips when ../shared is absent.
"""
import pytest

from conftest import REPO, SHARED, load_zeek_compare, read_zeek_log, replay_to

CASES = SHARED / "conformance" / "zeek-protocols"
STARTTLS = {
    "protocols-smtp-starttls": ("smtp-starttls.pcap", "smtp,ssl"),
    "protocols-irc-starttls": ("irc-starttls.pcap", "irc,ssl"),
    "protocols-xmpp-starttls": ("xmpp-starttls.pcap", "xmpp,ssl"),
    "protocols-mysql-encrypted": ("encrypted.pcap", "mysql,ssl"),
}

pytestmark = pytest.mark.skipif(not CASES.exists(), reason="%s is not present" % CASES)


def services(conn_log) -> list[set]:
    return [set(r["service"].split(",")) for r in read_zeek_log(conn_log)]


@pytest.mark.parametrize("case", sorted(STARTTLS))
def test_starttls_service_and_ssl_log_match_zeek(case, tmp_path):
    trace, service = STARTTLS[case]
    out = replay_to(CASES / case / trace, tmp_path)
    assert services(out / "conn.log") == [set(service.split(","))]
    compare = load_zeek_compare()
    matched, total, found, expected, extra = compare(str(CASES / case / "ssl.log"),
                                                     str(out / "ssl.log"))
    assert (found, expected, extra) == (1, 1, 0)
    assert matched == total == 7
    if (CASES / case / "conn.log").exists():       # the SMTP case has none
        matched, total, found, expected, extra = compare(
            str(CASES / case / "conn.log"), str(out / "conn.log"), strict=True)
        assert (matched, found, extra) == (total, 1, 0)


def test_smtp_log_of_the_starttls_case_matches_zeek(tmp_path):
    out = replay_to(CASES / "protocols-smtp-starttls" / "smtp-starttls.pcap", tmp_path)
    [ours] = read_zeek_log(out / "smtp.log")
    [zeek] = read_zeek_log(CASES / "protocols-smtp-starttls" / "smtp.log")
    skip = {"uid", "ts"}                 # Zeek's test blanks ts (btest canonifier)
    assert {k: v for k, v in ours.items() if k not in skip} == \
        {k: v for k, v in zeek.items() if k not in skip}


@pytest.mark.skipif(not (REPO / "protocols" / "http.py").exists(),
                    reason="needs the http analyser (branch http)")
def test_http_connect_tunnel_carries_smtp(tmp_path):
    case = CASES / "protocols-http-http-connect"
    out = replay_to(case / "connect-with-smtp.pcap", tmp_path)
    assert services(out / "conn.log") == [{"http", "smtp"}]
