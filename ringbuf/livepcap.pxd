# Declarations of the libpcap live source (see livepcap.pyx).
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from ringbuf.ring cimport Ring
from ringbuf.source cimport Source
from ringbuf.includes.pcap cimport pcap_t, pcap_pkthdr

cdef class PcapLiveSource(Source):
    cdef pcap_t* handle
    cdef readonly str interface
    cdef readonly uint32_t linktype
    cdef readonly uint32_t snaplen
    cdef readonly bint ts_nanoseconds   # libpcap gives nanoseconds (else microseconds)
    cdef readonly int fd                # selectable descriptor (poll when nothing is ready)
    cdef readonly int poll_timeout_ms
    cdef readonly uint64_t max_packets  # 0: no limit; else eof after this many
    # pcap_stats, as last read (by the capture thread while it runs).
    cdef uint64_t stat_received
    cdef uint64_t stat_dropped
    cdef uint64_t stat_ifdropped
    cdef int saved_errno
    cdef char error_text[256]           # pcap_geterr of a failure in the thread
    # Counters (written by the capture thread, read by the engine's).
    cdef readonly uint64_t packets      # written into the ring
    cdef readonly uint64_t bytes
    cdef readonly uint64_t ring_drops   # refused by the ring (no room) or oversize
    cdef readonly uint64_t polls
    cdef readonly uint64_t poll_timeouts
    cdef int fill(self, Ring ring, int max_records) except -1
    cdef void copy_packet(self, Ring ring, const pcap_pkthdr* header,
                          const uint8_t* data) noexcept nogil
    cdef bint count_reached(self) noexcept nogil
    cdef int wait_readable(self) noexcept nogil
    cdef void refresh_stats(self) noexcept nogil
    cdef int capture_loop(self, Ring ring) noexcept nogil
