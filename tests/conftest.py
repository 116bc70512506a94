"""Shared fixtures: the repository root, ../shared (when present), and a way to
run the `analyser` command exactly as a user does."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CONFORMANCE = SHARED / "conformance" / "zeek"

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(REPO))         # fuzz/ (the fuzz targets' scenarios) and this tree's code


def read_zeek_log(path: Path) -> list[dict]:
    """Rows of a Zeek TSV log as dicts of strings."""
    fields, rows = None, []
    for line in Path(path).read_text().splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
        elif line and not line.startswith("#") and fields:
            rows.append(dict(zip(fields, line.split("\t"))))
    return rows


def load_zeek_compare():
    """The compare() of ../shared/tools/zeek_compare.py (the scoring tool)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("zeek_compare",
                                                  SHARED / "tools" / "zeek_compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.compare


def replay_to(trace, out, *options) -> Path:
    """`analyser replay TRACE --logs OUT -q OPTIONS` as a user runs it; must succeed."""
    proc = subprocess.run([sys.executable, "-m", "analyser", "replay", str(trace),
                           "--logs", str(out), "-q", *options],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (trace, proc.stderr)
    return Path(out)


@pytest.fixture
def run_cli():
    """run_cli(*args) -> CompletedProcess of `python -m analyser ARGS` from the repo root."""
    def run(*args, timeout=300):
        return subprocess.run([sys.executable, "-m", "analyser", *map(str, args)],
                              cwd=REPO, capture_output=True, text=True, timeout=timeout)
    return run


@pytest.fixture
def replay(tmp_path):
    """replay(frames_or_path, **options) -> list of conn.log rows (dicts of Python values)."""
    from analyser.replay import replay_files
    from packets import write_pcap

    def run(frames, **options):
        if isinstance(frames, (str, Path)):
            path = frames
        else:
            path = write_pcap(tmp_path / "t.pcap", frames)
        rows = []
        result = replay_files([str(path)], on_connection=rows.append, **options)
        run.result = result
        return rows
    return run
