"""A time limit per analyser wake-up: a runaway analyser is stopped, the
engine goes on.

Role in the data flow: around the analysers (runtime.py).  An analyser's
main() runs in a greenlet on the engine's thread; a loop that never reads
again would hold the engine forever.  The runtime notes when each wake-up
starts (it times them anyway, for the per-analyser seconds); this thread
looks every CHECK_SECONDS and, when a wake-up has run longer than the limit,
raises `AnalyserTimeout` in the engine's thread (the interpreter's
asynchronous exception), so it surfaces in the analyser's own code.  The
runtime reports it like any other analyser error and ends that analyser
for its connection only.

Only Python code is interrupted (a long call into C finishes first; the
built-in analysers run compiled unless ANALYSER_FROM_SOURCE=1,
analyser/compiled.py).  If the wake-up ends in the instant between the
check and the raise, the runtime clears the pending exception when the
wake-up returns.
"""
from __future__ import annotations

import time

CHECK_SECONDS = 0.05
DEFAULT_LIMIT = 5.0          # seconds one wake-up may run (a normal one takes microseconds)


class AnalyserTimeout(BaseException):
    """An analyser ran longer than the time limit in one wake-up.  A
    BaseException, so that an analyser's `except Exception` cannot swallow it."""

    def __init__(self, *args):
        super().__init__(*(args or ("ran longer than its time limit in one wake-up",)))


_SET_ASYNC_EXC = None


def _load_api() -> None:
    """PyThreadState_SetAsyncExc through ctypes, set up once, by the first
    Watchdog on the engine's thread (not by its own thread in the middle of
    a timeout).  Imported then, not with this module (analyser/deferred.py
    imports it before a privilege drop): ctypes costs every
    start-up some 3 ms, and a run without a watchdog never needs it."""
    global _SET_ASYNC_EXC
    if _SET_ASYNC_EXC is None:
        import ctypes
        call = ctypes.pythonapi.PyThreadState_SetAsyncExc
        call.argtypes = (ctypes.c_ulong, ctypes.py_object)
        _SET_ASYNC_EXC = (call, ctypes.py_object())          # (the NULL object: it clears)


def _set_async_exc(thread_id: int, exc_type) -> None:
    """exc_type None: forget the pending one."""
    _load_api()
    call, null = _SET_ASYNC_EXC
    call(thread_id, null if exc_type is None else exc_type)


def raise_in(thread_id: int, exc_type) -> None:
    _set_async_exc(thread_id, exc_type)


def clear_in(thread_id: int) -> None:
    """Forget an exception raised for the thread but not yet delivered."""
    _set_async_exc(thread_id, None)


class Watchdog:
    """Watches one runtime's wake-ups from a daemon thread."""

    def __init__(self, runtime, limit: float = DEFAULT_LIMIT):
        if limit <= 0:
            raise ValueError("the analyser time limit must be positive, not %r" % limit)
        _load_api()
        # Imported here: a run without analysers starts no watchdog, and
        # threading costs start-up 2 ms (deferred.py loads it before -Z).
        import threading
        self.runtime = runtime
        self.limit = limit
        self.thread_id = threading.get_ident()       # the engine's thread
        self.fired = 0                               # wake-ups stopped
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="analyser-watchdog",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        rt = self.runtime
        while not self._stop.wait(CHECK_SECONDS):
            since, seq = rt.wakeup_started, rt.wakeup_seq
            if since and time.perf_counter() - since > self.limit and rt.wakeup_seq == seq \
                    and rt.timed_out_seq != seq:
                rt.timed_out_seq = seq
                self.fired += 1
                raise_in(self.thread_id, AnalyserTimeout)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
