# cython: language_level=3
"""The packet source interface: what the engine loop calls to fill the ring.

Role in the data flow: **source** -> ring -> decode -> flows -> ...

A source writes packet records (timestamp, captured and wire length, link
type, bytes) into the ring with `Ring.reserve()`/`commit()`.  Trace files
(ringbuf.pcapfile) and live captures implement it; the engine holds a `Source`
and never needs to know which.
"""
from ringbuf.ring cimport Ring


cdef class Source:
    cdef int fill(self, Ring ring, int max_records) except -1:
        raise NotImplementedError("a source must implement fill()")

    def stats(self):
        return {}
