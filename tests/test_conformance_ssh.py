"""Zeek conformance of ssh.log (and conn.log's service) on the SSH cases of
../shared/conformance/zeek-protocols, scored by ../shared/tools/zeek_compare.py
with --strict, then field by field on every column of Zeek's row.

protocols-websocket-wstunnel-ssh is left out: its SSH sessions travel inside
WebSocket frames over HTTP, so they need a WebSocket analyser to hand the
unwrapped bytes to this one.  Skips when ../shared is absent.
"""
import json

import pytest

from conftest import SHARED, load_zeek_compare, read_zeek_log, replay_to

PROTOCOLS = SHARED / "conformance" / "zeek-protocols"
CASES = ("protocols-ssh-dh_group18_kex", "protocols-ssh-ssh_version_199")

pytestmark = pytest.mark.skipif(not (PROTOCOLS / "MANIFEST.json").exists(),
                                reason="../shared/conformance/zeek-protocols is not present")


def read_baseline(path):
    """Zeek's rows: a full log (#fields) or a btest-diff-cut excerpt, whose
    first line names the fields."""
    if "#fields" in path.read_text():
        return read_zeek_log(path)
    lines = [line for line in path.read_text().splitlines() if line and line[0] != "#"]
    fields = lines[0].split("\t")
    return [dict(zip(fields, line.split("\t"))) for line in lines[1:]]


def manifest_entry(case):
    manifest = json.loads((PROTOCOLS / "MANIFEST.json").read_text())
    return next(c for c in manifest["cases"] if c["case"] == case)


@pytest.mark.parametrize("case", CASES)
def test_ssh_cases_score_every_field_with_strict_service(tmp_path, case):
    entry = manifest_entry(case)
    out = replay_to(PROTOCOLS / case / entry["trace"], tmp_path)
    compare = load_zeek_compare()
    for log in entry["logs"]:
        matched, total, found, expected, extra = compare(
            str(PROTOCOLS / case / log), str(out / log), strict=True)
        assert (matched, found, extra) == (total, expected, 0), (case, log)
        assert total > 0


@pytest.mark.parametrize("case", CASES)
def test_every_column_of_zeeks_ssh_row(tmp_path, case):
    """Beyond the scorer's fields (version, client, server): the negotiated
    algorithms, auth_success/auth_attempts (Zeek's segment-size heuristic) and
    the host key.  Zeek 8 cuts host_key_fingerprint to 32 base64 characters
    (its string is sized for the 32 digest bytes); ours is complete, as
    `ssh-keygen -l` prints it, so Zeek's is a prefix of ours."""
    entry = manifest_entry(case)
    out = replay_to(PROTOCOLS / case / entry["trace"], tmp_path)
    theirs, = read_baseline(PROTOCOLS / case / "ssh.log")
    ours, = read_zeek_log(out / "ssh.log")
    assert len(theirs) >= 15
    for field, value in theirs.items():
        if field in ("ts", "uid"):
            continue
        if field == "host_key_fingerprint":
            assert ours[field].startswith(value) and len(ours[field]) == len("SHA256:") + 43
            continue
        assert ours[field] == value, field
