# The interface every packet source implements (trace files, libpcap, AF_PACKET).
from libc.stdint cimport int64_t
from ringbuf.ring cimport Ring

cdef class Source:
    cdef readonly bint eof              # no record will ever come any more
    # Write up to max_records records into the ring; return how many.  0 with
    # eof set: the end.  0 without eof: nothing now (live: timeout; any: the
    # ring is full) -- the engine processes, acknowledges and calls again.
    cdef int fill(self, Ring ring, int max_records) except -1
    # Live sources also run on their own (see source.pyx): a capture thread
    # loops in capture_loop() without the GIL, writing into the ring, until
    # stop_flag is set, its count is reached (eof) or an error (returns non-zero).
    cdef int stop_flag                  # set by the engine's thread
    cdef int thread_done                # set by the capture thread as it ends
    cdef object thread
    cdef readonly object error          # a failure of the capture thread: one line
    cdef int capture_loop(self, Ring ring) noexcept nogil
