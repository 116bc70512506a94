# cython: language_level=3
"""The packet source interface: what the engine loop calls to fill the ring.

Role in the data flow: **source** -> ring -> decode -> flows -> ...

A source writes packet records (timestamp, captured and wire length, link
type, bytes) into the ring with `Ring.reserve()`/`commit()`.  Trace files
(ringbuf.pcapfile) and live captures implement it; the engine holds a `Source`
and never needs to know which.

Two ways to drive a source:

- ``fill(ring, n)``, called by the engine between batches (replay; also the
  live sources, for tests): the source only runs when the engine asks.
- ``start_capture(ring)`` (live sources): a thread of its own runs
  ``capture_loop`` without the GIL, draining the kernel into the ring as fast
  as packets arrive whatever the engine is doing, until ``stop_capture()``.
  The ring is then single-producer (this thread) / single-consumer (the
  engine); see ring.pyx.  A burst costs ring memory, not kernel drops; when
  the ring is full the newest packet is dropped and counted there.
"""

from ringbuf.ring cimport Ring
from ringbuf.includes.atomics cimport rb_flag_get, rb_flag_set


cdef class Source:
    cdef int fill(self, Ring ring, int max_records) except -1:
        raise NotImplementedError("a source must implement fill()")

    cdef int capture_loop(self, Ring ring) noexcept nogil:
        return -1                         # not a live source

    def describe_error(self, int code):
        """The one-line message of capture_loop's non-zero result."""
        return f"capture failed (error {code})"

    def stats(self):
        return {}

    # ------------------------------------------------------ the capture thread

    def _capture_thread(self, Ring ring):
        cdef int result
        try:
            with nogil:
                result = self.capture_loop(ring)
            if result != 0:
                self.error = self.describe_error(result)
        finally:
            rb_flag_set(&self.thread_done, 1)

    def start_capture(self, Ring ring):
        """Run capture_loop(ring) in a thread of its own (the GIL released
        for its whole loop).  The ring's policy must be "drop": a capture
        thread cannot wait for the engine."""
        if self.thread is not None:
            raise RuntimeError("the capture thread is already running")
        if ring.policy_name != "drop":
            raise ValueError("a capture thread needs a ring whose policy is 'drop'")
        rb_flag_set(&self.stop_flag, 0)
        rb_flag_set(&self.thread_done, 0)
        self.error = None
        import threading      # live capture only: replay's start-up goes without it
        self.thread = threading.Thread(target=self._capture_thread, args=(ring,),
                                       name="capture", daemon=True)
        self.thread.start()

    def stop_capture(self, timeout=5.0):
        """Ask the capture thread to end and wait for it (it sees the request
        within its poll timeout).  Safe to call when none runs."""
        rb_flag_set(&self.stop_flag, 1)
        if self.thread is not None:
            self.thread.join(timeout)
            if not self.thread.is_alive():
                self.thread = None

    @property
    def capturing(self):
        """A capture thread was started and has not ended yet."""
        return self.thread is not None and not rb_flag_get(&self.thread_done)

    @property
    def capture_ended(self):
        """The capture thread ended by itself (count reached, or an error)."""
        return self.thread is not None and rb_flag_get(&self.thread_done) != 0
