"""Imports put off until they are needed, and the moment they must all be done.

Start-up is paid by every run, so modules a run may never need (ctypes for
the watchdog, traceback for an analyser's error, a protocol's crypto
library) are imported where they are first used.  A live capture that
drops root's rights (`-Z USER`) cannot wait that long: once it is `nobody`,
a Python installed where only root can read (a per-user pyenv under /root,
for one) cannot import anything more, and the first lazy import in the
middle of the capture would stop it.  So each deferred import is declared
here with `deferred_import`, and live capture calls `load_deferred()` just
before it gives up its rights.

Protocol modules use it through the public package::

    from analyser import deferred_import

    @deferred_import
    def _load_crypto() -> None:
        ...

or, for a module imported whole, `deferred_module`::

    _hashlib = deferred_module("hashlib")     # _hashlib().md5(...)
"""
from __future__ import annotations

import importlib
from collections.abc import Callable

_LOADERS: list[Callable[[], object]] = []


def deferred_import(loader: Callable[[], object]) -> Callable[[], object]:
    """Declare `loader` (no arguments) as one that does a deferred import.
    Returns it unchanged, so it serves as a decorator."""
    _LOADERS.append(loader)
    return loader


def deferred_module(name: str) -> Callable[[], object]:
    """A function that returns module `name`, imported at its first call
    (or by load_deferred()), declared with deferred_import."""
    module = None

    def load():
        nonlocal module
        if module is None:
            module = importlib.import_module(name)
        return module
    load.__name__ = load.__qualname__ = "load_" + name.replace(".", "_")
    return deferred_import(load)


def load_deferred() -> None:
    """Do every deferred import now.  A loader's ImportError (an optional
    library that is not installed) is left for the code that needs it to
    report, as it would have without this call."""
    for loader in _LOADERS:
        try:
            loader()
        except ImportError:
            pass


@deferred_import
def _load_standard_library() -> None:
    """Standard modules the core imports lazily: ctypes (the watchdog),
    traceback (an analyser's error), ipaddress (private_address), threading
    (a live duration timer)."""
    import ctypes  # noqa: F401
    import ipaddress  # noqa: F401
    import threading  # noqa: F401
    import traceback  # noqa: F401
