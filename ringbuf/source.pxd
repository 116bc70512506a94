# The interface every packet source implements (trace files, libpcap, AF_PACKET).
from libc.stdint cimport int64_t, uint8_t, uint32_t
from ringbuf.ring cimport Ring

# A record the consumer will not look at (replay on several workers: another
# worker's packet): the source writes it without its bytes, `elided` set to
# its captured length, and saves the copy.  Called with the record's bytes,
# captured and wire lengths and link type, and the context it was set with.
ctypedef bint (*ElideTest)(const void* ctx, const uint8_t* data, uint32_t caplen,
                           uint32_t wirelen, uint32_t linktype) noexcept nogil

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
    # Set by the consumer (NULL: every record is stored); sources that can
    # test a record before copying it use it (PcapFileSource).
    cdef ElideTest elide_test
    cdef const void* elide_ctx
    cdef readonly unsigned long long records_elided
