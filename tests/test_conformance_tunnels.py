"""Zeek conformance of tunnels (issue 12): conn.log and tunnel.log on the
tunnel cases of ../shared/conformance/zeek-protocols (GRE and PPTP, ERSPAN,
VXLAN, Geneve, GTP-U, Teredo, AYIYA, nested and max-depth cases), scored by
../shared/tools/zeek_compare.py with --strict (conn.log's service too), and
the http.log and dns.log rows of the connections inside the tunnels.

The bar: at least 95% of the compared fields equal, every expected row
found but the ones KNOWN_MISSING names (with the reason), no extra rows.
The Zeek runs of two cases changed an option; the replay follows where the
analyser has the option (MAX_DEPTH), and KNOWN_SERVICE_DIFFERENCES says
where it has not.  Skips when ../shared is absent.
"""
import json

import pytest

from conftest import SHARED, load_zeek_compare, replay_to

CASES_DIR = SHARED / "conformance" / "zeek-protocols"
pytestmark = pytest.mark.skipif(not (CASES_DIR / "MANIFEST.json").exists(),
                                reason="../shared/conformance/zeek-protocols is not present")

TUNNEL_CASES = ("analyzer-confirmation", "ayiya", "ayiya-large-identity", "erspan", "erspanI",
                "geneve", "geneve-47101", "geneve-ipv6", "geneve-vxlan-truncated", "gre-pptp",
                "gtp-different_dl_and_ul", "gtp-false_gtp", "gtp-inner_teredo",
                "gtp-unknown_or_too_short", "max-depth", "max-depth-exceeded", "teredo",
                "teredo_bubble_with_payload", "vxlan")

# max-depth-exceeded ran Zeek with Tunnel::max_depth = 2 (its MANIFEST
# entry); the other cases with Zeek's default, 4, which is ours too.
OPTIONS = {"max-depth-exceeded": ["--tunnel-depth", "2"]}

# Rows Zeek logged that we do not, and why (none of them a tunnel's).
KNOWN_MISSING = {
    # Zeek's DNS analyser gives its connections a 10 s inactivity timeout
    # (dns_session_timeout): the second burst on 192.168.2.16:1920 -> :53,
    # 16 s later, is a second connection there, one connection here.
    ("teredo", "conn.log"): 1,
}
# gtp-inner_teredo ran with Tunnel::delay_teredo_confirmation=F: its nine
# one-sided Teredo connections are `teredo` there, unconfirmed (-) here.
KNOWN_SERVICE_DIFFERENCES = {"gtp-inner_teredo": 9}


def cases():
    manifest = json.loads((CASES_DIR / "MANIFEST.json").read_text())
    return [c for c in manifest["cases"] if c["case"] in TUNNEL_CASES]


@pytest.fixture(scope="module")
def scores(tmp_path_factory):
    compare = load_zeek_compare()
    out = {}
    for case in cases():
        d = CASES_DIR / case["case"]
        ours = replay_to(d / case["trace"], tmp_path_factory.mktemp(case["case"]),
                         *OPTIONS.get(case["case"], []))
        for log in case["logs"]:
            if log.split(".")[0] in ("conn", "tunnel", "http", "dns"):
                out[case["case"], log] = compare(str(d / log), str(ours / log), strict=True)
    return out


def test_all_tunnel_cases_present(scores):
    assert {c for c, _ in scores} == set(TUNNEL_CASES)


@pytest.mark.parametrize("log", ["conn.log", "tunnel.log"])
def test_tunnel_logs_match_zeek(scores, log):
    mine = {c: v for (c, lg), v in scores.items() if lg == log}
    missing = {c: v[3] - v[2] for c, v in mine.items()
               if v[3] - v[2] != KNOWN_MISSING.get((c, log), 0)}
    extra = {c: v[4] for c, v in mine.items() if v[4]}
    assert not missing, "rows Zeek logged that we did not: %s" % missing
    assert not extra, "rows we logged that Zeek did not: %s" % extra
    matched = sum(v[0] for v in mine.values())
    total = sum(v[1] for v in mine.values())
    assert total > (700 if log == "conn.log" else 70)
    assert matched / total >= 0.95, (matched, total)


def test_every_tunnel_log_row_is_exact(scores):
    """tunnel.log has no field we could get wrong for a reason outside tunnels."""
    for (case, log), (m, n, found, expected, extra) in scores.items():
        if log == "tunnel.log":
            assert (m, found, extra) == (n, expected, 0), case


def test_conn_log_differences_are_the_known_ones(scores):
    """Tunnel cases whose conn.log is not exact: only the known reasons."""
    for (case, log), (m, n, found, expected, extra) in scores.items():
        if log != "conn.log":
            continue
        if case == "teredo":
            # The DNS connection split (KNOWN_MISSING, 11 fields) and the
            # DHCP service (no DHCP analyser), besides the split's 7 fields.
            assert n - m <= 11 + 1 + 7, (case, m, n)
        else:
            assert n - m == KNOWN_SERVICE_DIFFERENCES.get(case, 0), (case, m, n)


def test_inner_application_logs_reach_their_analysers(scores):
    """http.log and dns.log of connections inside tunnels: every row found
    (HTTP bodies' lengths differ where Zeek counts the gunzipped body)."""
    for (case, log), (m, n, found, expected, extra) in scores.items():
        if log in ("http.log", "dns.log"):
            assert (found, extra) == (expected, 0), (case, log)
            assert m >= n - 3, (case, log, m, n)
