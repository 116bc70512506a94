"""An analyser package from outside this repository, installed the way a user
installs one (pip, entry point group `analyser.analysers`) in a temporary
virtual environment: its analyser is found by its own signature on a port it
does not name, and writes its own log, declared in its own module, in TSV and
in JSON, with no change to this repository.

The package's protocol is the seed material's RPC example: a function id and
an argument count, then each argument's length and bytes (the first 200
kept, the rest skipped in compiled code), then a 4-byte result."""
from __future__ import annotations

import json
import os
import site
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO, read_zeek_log
from packets import ACK, TcpPeer, close, handshake, timed, write_pcap

PACKAGE_MODULE = textwrap.dedent('''
    """A toy RPC analyser, shipped in a package of its own."""
    import struct

    from analyser import ORIG, RESP, Analyser, Signature, StreamEnd

    MAGIC = b"RPC1"

    class Rpc(Analyser):
        """RPC calls: function, argument bytes, result."""
        name = "rpc"
        signatures = (Signature(ORIG, MAGIC),)
        logs = {"rpc": [("ts", "time"), ("uid", "string"), ("id.orig_h", "addr"),
                        ("func", "count"), ("args", "count"), ("arg_bytes", "count"),
                        ("first_arg", "string"), ("result", "int")]}

        def main(self):
            if self.read(ORIG, 4) != MAGIC:
                self.violation("no RPC1 magic")
            self.confirm()
            while True:
                try:
                    func, nargs = struct.unpack("!IH", self.read(ORIG, 6))
                except StreamEnd:
                    return
                total, first = 0, None
                for _ in range(nargs):
                    (length,) = struct.unpack("!I", self.read(ORIG, 4))
                    head = self.read_and_skip(ORIG, length, 200)
                    first = head if first is None else first
                    total += length
                (result,) = struct.unpack("!i", self.read(RESP, 4))
                self.log("rpc", {"ts": self.ts, "uid": self.uid, "id.orig_h": self.id.orig_h,
                                 "func": func, "args": nargs, "arg_bytes": total,
                                 "first_arg": None if first is None else first[:8].decode(),
                                 "result": result})
''')

PYPROJECT = textwrap.dedent('''
    [build-system]
    requires = ["setuptools>=61"]
    build-backend = "setuptools.build_meta"

    [project]
    name = "rpc-analyser-example"
    version = "1.0"

    [project.entry-points."analyser.analysers"]
    rpc = "rpc_analyser"

    [tool.setuptools]
    py-modules = ["rpc_analyser"]
''')

CALLS = [(7, [b"hello world", b"x" * 5000]), (9, []), (12, [b"abcdefghijk" * 100])]
RESULTS = [0, -1, 42]


def rpc_trace(path: Path) -> None:
    c, s = TcpPeer("10.9.0.1", 41000, 100), TcpPeer("10.9.0.2", 6543, 900)
    c.connect(s)
    frames = handshake(c, s) + [c.send(ACK, b"RPC1")]
    for (func, args), result in zip(CALLS, RESULTS):
        body = struct.pack("!IH", func, len(args))
        for a in args:
            body += struct.pack("!I", len(a)) + a
        for i in range(0, len(body), 1400):
            frames.append(c.send(ACK, body[i:i + 1400]))
        frames.append(s.send(ACK, struct.pack("!i", result)))
    write_pcap(path, timed(frames + close(c, s)))


def expected_rows():
    rows = []
    for (func, args), result in zip(CALLS, RESULTS):
        rows.append({"func": func, "args": len(args), "arg_bytes": sum(map(len, args)),
                     "first_arg": args[0][:8].decode() if args else None, "result": result})
    return rows


@pytest.fixture(scope="module")
def plugin_venv(tmp_path_factory):
    """A fresh virtual environment that sees this project (as its own .venv
    does) and has the RPC package pip-installed from a directory outside the
    repository, offline."""
    root = tmp_path_factory.mktemp("plugin")
    pkg = root / "rpc-analyser-example"
    pkg.mkdir()
    (pkg / "rpc_analyser.py").write_text(PACKAGE_MODULE)
    (pkg / "pyproject.toml").write_text(PYPROJECT)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], capture_output=True, text=True, check=True)
    # The project and its dependencies come from the environment running the
    # tests (the project's .venv); the plugin goes into the new one only.
    here = [p for p in site.getsitepackages() if os.path.isdir(p)]
    lines = ["import site; site.addsitedir(%r)" % p for p in here] + [str(REPO)]
    Path(purelib.stdout.strip(), "project.pth").write_text("\n".join(lines) + "\n")
    install = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                              "--no-build-isolation", pkg], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    return python


def test_the_package_is_outside_this_repository(plugin_venv):
    found = subprocess.run([plugin_venv, "-c", "import rpc_analyser; print(rpc_analyser.__file__)"],
                           capture_output=True, text=True, cwd="/")
    assert found.returncode == 0, found.stderr
    location = Path(found.stdout.strip()).resolve()
    assert not location.is_relative_to(REPO.resolve())
    assert location.is_relative_to(Path(plugin_venv).parent.parent.resolve())   # its venv
    listed = subprocess.run([plugin_venv, "-m", "analyser", "list-analysers"],
                            capture_output=True, text=True, cwd="/")
    assert "rpc" in listed.stdout and "log rpc.log: ts uid id.orig_h func" in listed.stdout


@pytest.mark.parametrize("log_format", ["tsv", "json"])
def test_an_installed_package_writes_its_own_log(plugin_venv, tmp_path, log_format):
    trace = tmp_path / "rpc.pcap"
    rpc_trace(trace)
    out = tmp_path / "logs"
    proc = subprocess.run([plugin_venv, "-m", "analyser", "replay", trace, "--logs", out,
                           "--log-format", log_format, "-q"],
                          capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0, proc.stderr
    conn = read_zeek_log(out / "conn.log") if log_format == "tsv" else \
        [json.loads(l) for l in (out / "conn.log").read_text().splitlines()]
    assert len(conn) == 1 and conn[0]["service"] == "rpc"
    if log_format == "tsv":
        text = (out / "rpc.log").read_text()
        assert "#fields\tts\tuid\tid.orig_h\tfunc\targs\targ_bytes\tfirst_arg\tresult" in text
        assert "#types\ttime\tstring\taddr\tcount\tcount\tcount\tstring\tint" in text
        rows = read_zeek_log(out / "rpc.log")
        got = [{"func": int(r["func"]), "args": int(r["args"]),
                "arg_bytes": int(r["arg_bytes"]),
                "first_arg": None if r["first_arg"] == "-" else r["first_arg"],
                "result": int(r["result"])} for r in rows]
    else:
        rows = [json.loads(l) for l in (out / "rpc.log").read_text().splitlines()]
        got = [{k: r.get(k) for k in ("func", "args", "arg_bytes", "first_arg", "result")}
               for r in rows]
    assert got == expected_rows()
    assert {r["uid"] for r in rows} == {conn[0]["uid"]}
    assert {r["id.orig_h"] for r in rows} == {"10.9.0.1"}


def test_the_quick_look_for_entry_points_sees_what_importlib_metadata_would(tmp_path):
    """The start-up skips importlib.metadata only when no entry_points.txt on
    the path names the group; a zip on the path is always a maybe."""
    from analyser.registry import ENTRY_POINT_GROUP, may_declare_entry_points
    plain = tmp_path / "plain"
    (plain / "other-1.0.dist-info").mkdir(parents=True)
    (plain / "other-1.0.dist-info" / "entry_points.txt").write_text(
        "[console_scripts]\nother = other:main\n")
    (plain / "bare-1.0.dist-info").mkdir()          # no entry_points.txt at all
    assert not may_declare_entry_points([str(plain), str(tmp_path / "missing")])
    plugin = tmp_path / "plugin"
    (plugin / "rpc_analyser-0.1.egg-info").mkdir(parents=True)
    (plugin / "rpc_analyser-0.1.egg-info" / "entry_points.txt").write_text(
        "[%s]\nrpc = rpc_analyser\n" % ENTRY_POINT_GROUP)
    assert may_declare_entry_points([str(plain), str(plugin)])
    archive = tmp_path / "deps.zip"
    archive.write_bytes(b"PK\x05\x06" + bytes(18))
    assert may_declare_entry_points([str(plain), str(archive)])
