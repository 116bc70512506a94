"""Zeek conformance of ssh.log (and conn.log's service) on the SSH cases of
../shared/conformance/zeek-protocols and ../shared/conformance/zeek (ssh-basic:
22 sessions, SSH 1 and 2, successes and failures), scored by
../shared/tools/zeek_compare.py with --strict, then field by field on every
column of Zeek's rows.

protocols-websocket-wstunnel-ssh is left out: its SSH sessions travel inside
WebSocket frames over HTTP, so they need a WebSocket analyser to hand the
unwrapped bytes to this one.  Skips when ../shared is absent.
"""
import json

import pytest

from conftest import CONFORMANCE, SHARED, load_zeek_compare, read_zeek_log, replay_to

PROTOCOLS = SHARED / "conformance" / "zeek-protocols"
CASES = [(PROTOCOLS, "protocols-ssh-dh_group18_kex"), (PROTOCOLS, "protocols-ssh-ssh_version_199"),
         (CONFORMANCE, "ssh-basic")]

pytestmark = pytest.mark.skipif(
    not (PROTOCOLS / "MANIFEST.json").exists() or not (CONFORMANCE / "MANIFEST.json").exists(),
    reason="../shared/conformance/zeek-protocols or ../shared/conformance/zeek is not present")


def read_baseline(path):
    """Zeek's rows: a full log (#fields) or a btest-diff-cut excerpt, whose
    first line names the fields."""
    if "#fields" in path.read_text():
        return read_zeek_log(path)
    lines = [line for line in path.read_text().splitlines() if line and line[0] != "#"]
    fields = lines[0].split("\t")
    return [dict(zip(fields, line.split("\t"))) for line in lines[1:]]


def manifest_entry(suite, case):
    manifest = json.loads((suite / "MANIFEST.json").read_text())
    return next(c for c in manifest["cases"] if c["case"] == case)


@pytest.mark.parametrize("suite, case", CASES)
def test_ssh_cases_score_every_field_with_strict_service(tmp_path, suite, case):
    entry = manifest_entry(suite, case)
    out = replay_to(suite / case / entry["trace"], tmp_path)
    compare = load_zeek_compare()
    for log in entry["logs"]:
        matched, total, found, expected, extra = compare(
            str(suite / case / log), str(out / log), strict=True)
        assert (matched, found, extra) == (total, expected, 0), (case, log)
        assert total > 0


@pytest.mark.parametrize("suite, case", CASES)
def test_every_column_of_zeeks_ssh_rows(tmp_path, suite, case):
    """Beyond the scorer's fields (version, client, server): the negotiated
    algorithms, auth_success/auth_attempts (Zeek's segment-size heuristic) and
    the host key.  Zeek 8 cuts host_key_fingerprint to 32 base64 characters
    (its string is sized for the 32 digest bytes); ours is complete, as
    `ssh-keygen -l` prints it, so Zeek's is a prefix of ours."""
    entry = manifest_entry(suite, case)
    out = replay_to(suite / case / entry["trace"], tmp_path)
    expected = read_baseline(suite / case / "ssh.log")
    ours = {(r["id.orig_h"], r["id.orig_p"]): r for r in read_zeek_log(out / "ssh.log")}
    assert len(ours) == len(expected)
    for theirs in expected:
        row = ours[theirs["id.orig_h"], theirs["id.orig_p"]]
        assert len(theirs) >= 15
        for field, value in theirs.items():
            if field in ("ts", "uid"):
                continue
            if field == "host_key_fingerprint" and value != "-":
                assert row[field].startswith(value) and len(row[field]) == len("SHA256:") + 43
                continue
            assert row[field] == value, (field, theirs["id.orig_p"])

