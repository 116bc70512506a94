"""Zeek conformance of the QUIC analyser: ssl.log and quic.log against Zeek's
own baselines of the protocols-quic-* cases of
../shared/conformance/zeek-protocols (ssl.log scored by
../shared/tools/zeek_compare.py: version, cipher, curve, server_name,
resumed, next_protocol, established).

The bar: every ssl.log row Zeek wrote, no extra row, every scored field
equal; quic.log: the same rows, every field equal (ts and uid aside), and
the history a prefix of Zeek's by default (analysis stops at the TLS hellos)
or equal to it with `history_datagrams`, which reads the packet headers of
the rest of the flow as Zeek does.  conn.log names the service "quic,ssl",
as Zeek's conn.log baselines of these cases do.

Two cases (the quic-go interop traces) are PPP captures (link type 9): the
traces are replayed as they are.  Skips when ../shared is absent.
"""
import json

import pytest

from conftest import SHARED, load_zeek_compare, read_zeek_log, replay_to

PROTOCOLS = SHARED / "conformance" / "zeek-protocols"
pytestmark = pytest.mark.skipif(not (PROTOCOLS / "MANIFEST.json").exists(),
                                reason="../shared/conformance/zeek-protocols is not present")

def quic_cases():
    manifest = json.loads((PROTOCOLS / "MANIFEST.json").read_text())
    return [c for c in manifest["cases"] if c["case"].startswith("protocols-quic-")]


def trace_of(case, tmp_path):
    return PROTOCOLS / case["case"] / case["trace"]


def test_ssl_log_matches_zeek_on_every_quic_case(tmp_path):
    compare = load_zeek_compare()
    cases = quic_cases()
    assert len(cases) == 9
    matched = total = found = expected = extra = 0
    for case in cases:
        out = replay_to(trace_of(case, tmp_path), tmp_path / case["case"])
        m, n, f, e, x = compare(str(PROTOCOLS / case["case"] / "ssl.log"), str(out / "ssl.log"))
        assert (m, f, x) == (n, e, 0), (case["case"], m, n, f, e, x)
        matched, total, found, expected, extra = \
            matched + m, total + n, found + f, expected + e, extra + x
    print("ssl.log fields matched: %d/%d  rows: found %d/%d, extra %d"
          % (matched, total, found, expected, extra))
    assert (matched, total, found, expected, extra) == (70, 70, 10, 10, 0)


def quic_rows(path):
    """quic.log rows by (client port, client_initial_dcid), ts and uid left out."""
    rows = read_zeek_log(path) if path.exists() else []
    return {(r["id.orig_p"], r["client_initial_dcid"]):
            {k: v for k, v in r.items() if k not in ("ts", "uid")} for r in rows}


@pytest.mark.parametrize("follow", [False, True], ids=["default", "history_datagrams"])
def test_quic_log_matches_zeek(tmp_path, follow):
    options = ["--analyser", "quic:history_datagrams=1000"] if follow else []
    rows = 0
    for case in quic_cases():
        baseline = PROTOCOLS / case["case"] / "quic.log"
        if not baseline.exists():                 # run-pcap: Zeek's test keeps ssl.log only
            continue
        out = replay_to(trace_of(case, tmp_path), tmp_path / case["case"], *options)
        theirs, ours = quic_rows(baseline), quic_rows(out / "quic.log")
        assert sorted(ours) == sorted(theirs), case["case"]
        for key, expected in theirs.items():
            got = dict(ours[key])
            history = got.pop("history")
            want = dict(expected)
            want_history = want.pop("history")
            assert got == want, (case["case"], key)
            if follow:
                assert history == want_history, (case["case"], key)
            else:
                # Zeek's letters up to the server's hello at least ('s'), or
                # all of them for a row the hellos do not end (a Retry's).
                upto = want_history.find("s") + 1 or len(want_history)
                assert want_history.startswith(history) and len(history) >= upto, \
                    (case["case"], key, history, want_history)
            rows += 1
    assert rows == 10


def test_conn_log_names_quic_and_ssl(tmp_path):
    for case in quic_cases():
        out = replay_to(trace_of(case, tmp_path), tmp_path / case["case"])
        udp = [r for r in read_zeek_log(out / "conn.log") if r["proto"] == "udp"]
        assert udp, case["case"]
        for row in udp:
            assert sorted(row["service"].split(",")) == ["quic", "ssl"], (case["case"], row)
