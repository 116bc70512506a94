# The interface every packet source implements (trace files, libpcap, AF_PACKET).
from ringbuf.ring cimport Ring

cdef class Source:
    cdef readonly bint eof              # no record will ever come any more
    # Write up to max_records records into the ring; return how many.  0 with
    # eof set: the end.  0 without eof: nothing now (live: timeout; any: the
    # ring is full) -- the engine processes, acknowledges and calls again.
    cdef int fill(self, Ring ring, int max_records) except -1
