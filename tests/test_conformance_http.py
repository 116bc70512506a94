"""Zeek conformance of http.log and of conn.log's service: our rows against
Zeek's own baselines on the HTTP cases of ../shared/conformance/zeek-protocols,
scored by ../shared/tools/zeek_compare.py (its http.log fields: method, host,
uri, status_code, request_body_len, response_body_len, version, user_agent,
status_msg; rows paired by 5-tuple and trans_depth).

Cases left out, each for a reason outside this analyser:
- protocols-ssl-decryption: its HTTP travels inside TLS that Zeek decrypts with
  the session keys the case gives it; we do not decrypt TLS.
- protocols-websocket-wstunnel-http: its second row is HTTP inside a WebSocket
  stream, and Zeek's inner HTTP shares the outer one's state (it overwrites
  the handshake row's status_code with the inner 301); we do not parse
  WebSocket frames.
- the tunnel cases (Teredo, AYIYA, GTP, VXLAN): tunnel decapsulation is
  another issue.
nflog and protocols-snap-snap-tcp are kept: their link layers (NFLOG, 802.2
SNAP) are not decoded yet, so their rows are missing and count against us.
Skips when ../shared is absent.
"""
import json

import pytest

from conftest import SHARED, load_zeek_compare, replay_to

SUITE = SHARED / "conformance" / "zeek-protocols"
UNMATCHABLE = {"protocols-ssl-decryption", "protocols-websocket-wstunnel-http"}
# Link layers the decoder does not read yet (no connection at all).
UNDECODED = {"nflog", "protocols-snap-snap-tcp"}
# conn.log service names of analysers we do not have (smtp behind CONNECT).
OTHER_SERVICES = {"protocols-http-http-connect": "http,smtp"}

pytestmark = pytest.mark.skipif(not (SUITE / "MANIFEST.json").exists(),
                                reason="../shared/conformance/zeek-protocols is not present")


def http_cases():
    manifest = json.loads((SUITE / "MANIFEST.json").read_text())
    return [c for c in manifest["cases"] if "http.log" in c["logs"]
            and (c["case"].startswith("protocols-") or c["case"] == "nflog")
            and c["case"] not in UNMATCHABLE]


def replay(case, out):
    options = []
    if any("default_capture_password = T" in line
           for line in case.get("zeek_options_changed", [])):
        options = ["--analyser", "http:capture_password=yes"]
    return replay_to(SUITE / case["case"] / case["trace"], out, *options)


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    compare = load_zeek_compare()
    base = tmp_path_factory.mktemp("http-conformance")
    per_case = {}
    for case in http_cases():
        out = replay(case, base / case["case"])
        logs = {}
        for log in ("http", "conn"):
            if log + ".log" in case["logs"]:
                logs[log] = compare(str(SUITE / case["case"] / (log + ".log")),
                                    str(out / (log + ".log")), strict=True)
        per_case[case["case"]] = logs
    return per_case


def test_http_log_matches_zeek(scored):
    assert len(scored) >= 23
    http = {c: v["http"] for c, v in scored.items()}
    missing = {c: v for c, v in http.items() if v[2] != v[3] and c not in UNDECODED}
    extra = {c: v for c, v in http.items() if v[4]}
    assert not missing, "rows Zeek logged that we did not: %s" % missing
    assert not extra, "rows we logged that Zeek did not: %s" % extra
    matched = sum(v[0] for v in http.values())
    total = sum(v[1] for v in http.values())
    print("http.log fields matched: %d/%d (%.1f%%)" % (matched, total, 100.0 * matched / total))
    assert matched / total >= 0.95, http
    # Every field: gzip bodies count decompressed, as Zeek counts them
    # (http-pipelining), a body cut by the end of the trace what came of it
    # (content-length-overflow).
    decoded = [v for c, v in http.items() if c not in UNDECODED]
    assert sum(v[1] - v[0] for v in decoded) == 0
    assert http["protocols-http-http-pipelining"][0] == http["protocols-http-http-pipelining"][1]


def test_conn_service_matches_zeek(scored):
    """conn.log's service (and the other conn.log fields the tool compares) on
    the cases that have a conn.log baseline."""
    from conftest import read_zeek_log
    conn = {c: v["conn"] for c, v in scored.items() if "conn" in v}
    assert len(conn) >= 10
    for case, (matched, total, found, expected, extra) in conn.items():
        assert found == expected and not extra, case
    for case, theirs in OTHER_SERVICES.items():
        expected = read_zeek_log(SUITE / case / "conn.log")
        assert [r["service"] for r in expected] == [theirs]
    lost = {c: v[1] - v[0] for c, v in conn.items() if v[0] != v[1]}
    # http-connect: Zeek names the SMTP inside the tunnel; deeply-nested-mime:
    # the history letter X (Zeek's "inactivity" flag), not an HTTP matter.
    assert set(lost) <= {"protocols-http-http-connect", "protocols-http-deeply-nested-mime"}
    assert all(n == 1 for n in lost.values()), lost
