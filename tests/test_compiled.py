"""The protocol and runtime modules compiled from Python (analyser/compiled.py):
built and loaded compiled, and a source edited after the build runs as source."""
import importlib.machinery
import os
import sys

import protocols.ftp
import analyser.runtime
from analyser.compiled import FreshSourceFinder, compiled_sources

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def test_every_protocol_module_and_the_runtime_are_compiled():
    names = compiled_sources(ROOT)
    assert "protocols.ftp" in names and "analyser.runtime" in names
    assert "protocols.__init__" not in names
    for name in names:
        compiled = os.path.join(ROOT, *name.split(".")) + SUFFIX
        assert os.path.exists(compiled), "%s not compiled: run make build" % name
    # What the tests import is the compiled module (the build is fresh).
    assert protocols.ftp.__file__.endswith(SUFFIX)
    assert analyser.runtime.__file__.endswith(SUFFIX)


def make_package(tmp_path, source_newer: bool):
    package = tmp_path / "pkgx"
    package.mkdir()
    (package / "__init__.py").write_text("")
    source = package / "mod.py"
    source.write_text("VALUE = 1\n")
    compiled = package / ("mod" + SUFFIX)
    compiled.write_bytes(b"not loaded by find_spec")
    older, newer = 1_000_000, 2_000_000
    os.utime(source, (newer, newer) if source_newer else (older, older))
    os.utime(compiled, (older, older) if source_newer else (newer, newer))
    return package


def test_a_source_edited_after_the_build_runs_as_source(tmp_path, capsys):
    package = make_package(tmp_path, source_newer=True)
    finder = FreshSourceFinder(packages=("pkgx",))
    spec = finder.find_spec("pkgx.mod", [str(package)])
    assert spec.origin == str(package / "mod.py")
    err = capsys.readouterr().err
    assert "changed since it was compiled" in err and "make build" in err
    # Said once, not at every import.
    finder.find_spec("pkgx.mod", [str(package)])
    assert capsys.readouterr().err == ""


def test_a_fresh_compiled_module_is_preferred(tmp_path, capsys):
    package = make_package(tmp_path, source_newer=False)
    spec = FreshSourceFinder(packages=("pkgx",)).find_spec("pkgx.mod", [str(package)])
    assert spec.origin == str(package / ("mod" + SUFFIX))
    assert capsys.readouterr().err == ""
    # Other packages are left to the normal finders.
    assert FreshSourceFinder(packages=("pkgx",)).find_spec("json.decoder", None) is None
    assert any(isinstance(f, FreshSourceFinder) for f in sys.meta_path)


def test_every_module_runs_as_source_when_asked(tmp_path, monkeypatch, capsys):
    package = make_package(tmp_path, source_newer=False)
    monkeypatch.setenv("ANALYSER_FROM_SOURCE", "1")
    spec = FreshSourceFinder(packages=("pkgx",)).find_spec("pkgx.mod", [str(package)])
    assert spec.origin == str(package / "mod.py")
    assert capsys.readouterr().err == ""          # asked for: no notice


def test_from_source_runs_the_built_in_modules_as_python(tmp_path):
    """With ANALYSER_FROM_SOURCE=1 the built-in modules are Python again (what
    the time limit can interrupt, and a debugger step through)."""
    import subprocess
    code = ("import protocols.ftp, analyser.runtime; "
            "print(protocols.ftp.__file__.endswith('.py'), "
            "analyser.runtime.__file__.endswith('.py'))")
    env = dict(os.environ, ANALYSER_FROM_SOURCE="1")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["True", "True"], out.stderr


def test_typed_halves_are_extension_types_when_compiled():
    """The classes a .pxd beside their source types (runtime.pxd, ftp.pxd, http.pxd,
    tls.pxd) are extension types in the build: fields in a struct, not in a
    __dict__ (a pxd that no longer matches its source would fail the build,
    or leave these plain classes)."""
    from analyser.runtime import AnalyserCore, Connection, Runtime
    from protocols.ftp import Awaiting, CmdArg, Ftp, FtpCore, Reply, ZeekFtpLog
    from protocols.http import Http, HttpCore, Request, Side
    from protocols.tls import Tls, TlsCore
    for cls in (AnalyserCore, Runtime, Connection, FtpCore, ZeekFtpLog, CmdArg, Awaiting,
                Reply, HttpCore, Side, Request, TlsCore):
        assert not cls.__flags__ & (1 << 9), "%s is not an extension type" % cls.__name__
    # Ftp itself stays a Python class over the typed half (GridFTP derives from it).
    assert Ftp.__flags__ & (1 << 9) and Ftp.__mro__[1] is FtpCore
    assert Http.__flags__ & (1 << 9) and Http.__mro__[1] is HttpCore
    assert Tls.__flags__ & (1 << 9) and Tls.__mro__[1] is TlsCore
    # A typed field refuses what its declaration does not allow.
    ca = CmdArg(1.5, "RETR", "x", 3)
    try:
        ca.seq = "three"
    except TypeError:
        pass
    else:
        raise AssertionError("CmdArg.seq is not a typed field")


def test_a_module_whose_types_extend_one_run_as_source_runs_as_source_too(tmp_path, capsys):
    """A compiled module whose .pxd cimports a module now running as source
    (analyser/runtime.py edited after the build: ftp.pxd, http.pxd and tls.pxd
    extend its AnalyserCore) was built against a layout that no longer holds,
    and Cython would refuse it ("size changed"): it runs as source too, said
    once; a compiled module with no such .pxd stays compiled."""
    package = tmp_path / "pkgx"
    package.mkdir()
    (package / "__init__.py").write_text("")
    older, newer = 1_000_000, 2_000_000
    for name, source_time, compiled_time in (("base", newer, older), ("user", older, newer),
                                             ("other", older, newer)):
        (package / (name + ".py")).write_text("VALUE = 1\n")
        (package / (name + SUFFIX)).write_bytes(b"not loaded by find_spec")
        os.utime(package / (name + ".py"), (source_time, source_time))
        os.utime(package / (name + SUFFIX), (compiled_time, compiled_time))
    (package / "user.pxd").write_text("cimport cython\nfrom pkgx.base cimport Thing\n")
    finder = FreshSourceFinder(packages=("pkgx",))
    # Before base runs as source, user's compiled form is fine.
    assert finder.find_spec("pkgx.user", [str(package)]).origin.endswith(SUFFIX)
    assert finder.find_spec("pkgx.base", [str(package)]).origin == str(package / "base.py")
    capsys.readouterr()
    assert finder.find_spec("pkgx.user", [str(package)]).origin == str(package / "user.py")
    err = capsys.readouterr().err
    assert "user.py" in err and "base" in err and "make build" in err
    finder.find_spec("pkgx.user", [str(package)])
    assert capsys.readouterr().err == ""                    # said once
    assert finder.find_spec("pkgx.other", [str(package)]).origin.endswith(SUFFIX)


def test_an_edited_runtime_runs_with_the_compiled_protocols_beside_it(tmp_path):
    """End to end, on a copy of the built tree: analyser/runtime.py newer than
    its compiled module, an FTP trace is analysed as it is with a fresh build
    (the protocols that extend the runtime's types run as source with it)."""
    import shutil
    import subprocess
    tree = tmp_path / "tree"
    for part in ("analyser", "protocols", "ringbuf"):
        shutil.copytree(os.path.join(ROOT, part), tree / part,
                        ignore=shutil.ignore_patterns("*.c", "*.html", "__pycache__"))
    runtime = tree / "analyser" / "runtime.py"
    later = os.stat(tree / "analyser" / ("runtime" + SUFFIX)).st_mtime + 10
    os.utime(runtime, (later, later))
    trace = os.path.join(ROOT, "traces", "ftp-loopback.pcap")
    outs = {}
    for name, cwd in (("edited", tree), ("built", ROOT)):
        out = tmp_path / name
        p = subprocess.run([sys.executable, "-m", "analyser", "replay", trace, "--logs", str(out),
                            "-q"], cwd=cwd, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        outs[name] = (out, p.stderr)
    assert "runtime.py changed since it was compiled" in outs["edited"][1]
    for log in ("conn.log", "ftp.log", "transfers.log"):
        rows = [line for line in (outs["edited"][0] / log).read_text().splitlines()
                if not line.startswith("#")]
        assert rows and rows == [line for line in (outs["built"][0] / log).read_text().splitlines()
                                 if not line.startswith("#")]
