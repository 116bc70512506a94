"""Python modules that the build also compiles, and a guard against stale ones.

Role in the data flow: none at run time beyond imports.  The built-in
protocol modules (protocols/*.py) and the analyser runtime's Python modules
named in COMPILED_FROM_PYTHON stay plain Python source, and `make build`
compiles each of them with Cython into an extension module beside its
source: same code, same behaviour, without the interpreter's per-bytecode
cost: the whole run 1.15x (FTP sessions) to 1.45x (TLS sessions) faster,
measured against the same modules run as source.

Python loads an extension module in preference to the source of the same
name, so a source edited since the build would silently not run.  The
finder installed here notices that (the source is newer than its compiled
module), runs the source instead, and says so once on stderr.  A compiled
module whose typed layout (its .pxd) cimports a module that now runs as
source runs as source too: it was built against the compiled layout, which
no longer holds (an edited analyser/runtime.py, whose AnalyserCore ftp.pxd,
http.pxd and tls.pxd extend; Cython would stop the run with "size
changed").  With ANALYSER_FROM_SOURCE=1 in the environment every one of
them runs as source: for a debugger, and for the analyser time limit,
which interrupts Python code only (analyser/watchdog.py).
"""
from __future__ import annotations

import importlib.machinery
import os
import sys

# analyser's own modules compiled from Python (the protocols are all compiled).
COMPILED_FROM_PYTHON = ("runtime", "logs", "replay", "events", "inner", "bytestreams")
PACKAGES = ("analyser", "protocols")
# Set to 1: every compiled-from-Python module runs as source.
FROM_SOURCE_VARIABLE = "ANALYSER_FROM_SOURCE"


def compiled_sources(root: str) -> list[str]:
    """Dotted names of the Python modules the build compiles, under the
    project root `root` (used by setup.py)."""
    import glob
    names = ["analyser." + name for name in COMPILED_FROM_PYTHON]
    for path in sorted(glob.glob(os.path.join(root, "protocols", "*.py"))):
        base = os.path.splitext(os.path.basename(path))[0]
        if not base.startswith("_"):
            names.append("protocols." + base)
    return names


def _source_spec(fullname: str, source: str):
    # importlib.util is imported here: it costs start-up 3 ms, and a build
    # that is up to date never needs it.
    import importlib.util
    return importlib.util.spec_from_file_location(fullname, source)


class FreshSourceFinder:
    """Finds analyser.* and protocols.* modules as the normal path finder
    does, but picks the source over a compiled module older than it.  (A
    meta path finder by its find_spec(); importlib.abc itself costs 6 ms of
    start-up.)"""

    def __init__(self, packages: tuple[str, ...] = PACKAGES) -> None:
        self.packages = packages
        self.warned: set[str] = set()
        self.from_source: set[str] = set()     # modules found as source, though compiled

    def _extends_source(self, source: str) -> str | None:
        """The module running as source that the .pxd beside `source`
        cimports, if any."""
        if not self.from_source:
            return None
        try:
            with open(source[:-3] + ".pxd", encoding="utf-8") as f:
                layout = f.read()
        except OSError:
            return None
        for name in sorted(self.from_source):
            if "from %s cimport" % name in layout or "cimport %s" % name in layout:
                return name
        return None

    def find_spec(self, fullname, path, target=None):
        if fullname.partition(".")[0] not in self.packages or "." not in fullname:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not spec.origin or not spec.origin.endswith(
                tuple(importlib.machinery.EXTENSION_SUFFIXES)):
            return spec
        source = os.path.join(os.path.dirname(spec.origin),
                              fullname.rpartition(".")[2] + ".py")
        try:
            stale = os.stat(source).st_mtime > os.stat(spec.origin).st_mtime
        except OSError:
            return spec                 # a compiled module without a source
        if os.environ.get(FROM_SOURCE_VARIABLE) == "1":
            self.from_source.add(fullname)
            return _source_spec(fullname, source)
        extended = None if stale else self._extends_source(source)
        if not stale and extended is None:
            return spec
        if fullname not in self.warned:
            self.warned.add(fullname)
            if stale:
                print("analyser: %s changed since it was compiled: running the source "
                      "(slower); `make build` compiles it again" % os.path.relpath(source),
                      file=sys.stderr)
            else:
                print("analyser: %s runs as source too: its types extend %s, which runs "
                      "as source; `make build` compiles both again"
                      % (os.path.relpath(source), extended), file=sys.stderr)
        self.from_source.add(fullname)
        return _source_spec(fullname, source)


def install() -> None:
    """Put the finder on sys.meta_path (once), just before the path finder
    that would otherwise find these modules: finders placed before it (an
    instrumenting import hook, as the fuzz targets use) still see, and may
    wrap, what it finds."""
    if any(isinstance(f, FreshSourceFinder) for f in sys.meta_path):
        return
    where = next((i for i, f in enumerate(sys.meta_path)
                  if f is importlib.machinery.PathFinder), len(sys.meta_path))
    sys.meta_path.insert(where, FreshSourceFinder())
