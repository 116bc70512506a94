# Declarations of the libpcap (pcapy-ng) live source (see livepcap.pyx).
from libc.stdint cimport uint32_t, uint64_t
from ringbuf.ring cimport Ring
from ringbuf.source cimport Source

cdef class PcapLiveSource(Source):
    cdef object handle                  # pcapy Reader
    cdef readonly str interface
    cdef readonly uint32_t linktype
    cdef readonly uint32_t snaplen
    cdef readonly int fd                # selectable descriptor (poll before dispatch)
    cdef readonly int poll_timeout_ms
    cdef readonly uint64_t max_packets  # 0: no limit; else eof after this many
    cdef Ring target                    # the ring being filled (set during fill only)
    cdef object poller                  # select.poll on fd
    cdef tuple last_kernel_stats        # kept when the handle closes
    # Counters.
    cdef readonly uint64_t packets      # written into the ring
    cdef readonly uint64_t bytes
    cdef readonly uint64_t ring_drops   # refused by the ring (policy "drop") or oversize
    cdef readonly uint64_t seen         # delivered by libpcap (written or dropped)
    cdef readonly uint64_t polls
    cdef readonly uint64_t poll_timeouts
    cdef int fill(self, Ring ring, int max_records) except -1
