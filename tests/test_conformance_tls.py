"""Zeek conformance of ssl.log: our rows against Zeek's own baselines on the
TLS-over-TCP cases of ../shared/conformance/zeek-protocols, scored by
../shared/tools/zeek_compare.py (--strict: conn.log's service too).

The bar reached (issue 11): on the six plain TLS cases (ssl-ecdhe, -ecdsa,
-tls1_1, -tls13-version, -tls13-experiment, -tls13-encrypted-client-hello)
every row is found, none extra, and every compared field equals Zeek's; so
do the fields zeek_compare leaves out (ssl_history, last_alert,
cert_chain_fps, client_cert_chain_fps).  The cases where TLS starts inside
another protocol (STARTTLS for SMTP/IRC/XMPP, RDP, MySQL) need that
protocol's analyser to hand the connection over: not there yet, so they are
not asserted here.  Skips when ../shared is absent.
"""
import json

import pytest

from conftest import SHARED, load_zeek_compare, read_zeek_log, replay_to

SUITE = SHARED / "conformance" / "zeek-protocols"
PLAIN_TLS = ["protocols-ssl-ecdhe", "protocols-ssl-ecdsa", "protocols-ssl-tls1_1",
             "protocols-ssl-tls13-version", "protocols-ssl-tls13-experiment",
             "protocols-ssl-tls13-encrypted-client-hello"]
# Fields of ssl.log that zeek_compare does not score but that we reproduce.
ALSO_EQUAL = ["version", "cipher", "curve", "server_name", "resumed", "last_alert",
              "next_protocol", "established", "ssl_history", "cert_chain_fps",
              "client_cert_chain_fps", "sni_matches_cert"]

pytestmark = pytest.mark.skipif(not (SUITE / "MANIFEST.json").exists(),
                                reason="../shared/conformance/zeek-protocols is not present")


def cases():
    if not (SUITE / "MANIFEST.json").exists():
        return []                   # skipped (pytestmark), not an error at collection
    manifest = json.loads((SUITE / "MANIFEST.json").read_text())
    by_name = {c["case"]: c for c in manifest["cases"]}
    return [by_name[name] for name in PLAIN_TLS]


@pytest.mark.parametrize("case", cases(), ids=lambda c: c["case"])
def test_ssl_log_matches_zeek(tmp_path, case):
    compare = load_zeek_compare()
    out = replay_to(SUITE / case["case"] / case["trace"], tmp_path)
    matched, total, found, expected, extra = compare(
        str(SUITE / case["case"] / "ssl.log"), str(out / "ssl.log"), strict=True)
    assert (found, extra) == (expected, 0)
    assert matched == total
    theirs = read_zeek_log(SUITE / case["case"] / "ssl.log")
    ours = read_zeek_log(out / "ssl.log")
    for zeek_row, our_row in zip(theirs, ours):
        for key in ALSO_EQUAL:
            assert our_row[key] == zeek_row[key], key
