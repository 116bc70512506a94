# Declarations of the pcap writer of selected connections (see pcapout.pyx).
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from ringbuf.bpf cimport BpfFilter

cdef enum:
    PCAP_UNDECIDED = 0
    PCAP_SELECTED = 1
    PCAP_REJECTED = 2

cdef struct Pending:
    uint8_t* data          # pcap records (header + bytes) waiting for a decision
    uint32_t len
    uint32_t cap
    uint32_t linktype

cdef class PcapOut:
    cdef readonly str directory
    cdef readonly str kind                 # service, analyser, event or bpf
    cdef readonly str value
    cdef BpfFilter bpf
    cdef readonly bint headers_only
    cdef dict files                        # linktype -> open file
    cdef dict buffers                      # linktype -> bytearray of records
    cdef readonly uint64_t packets_written
    cdef readonly uint64_t pending_bytes
    cdef readonly uint64_t pending_dropped  # packets not kept while undecided (limits)
    cdef uint64_t max_pending_bytes
    cdef uint32_t max_flow_pending
    cdef uint8_t first_decision(self, uint32_t linktype, const uint8_t* frame,
                                uint32_t caplen, uint32_t wirelen) except 255
    cdef void write(self, uint32_t linktype, int64_t ts_ns, const uint8_t* frame,
                    uint32_t caplen, uint32_t wirelen, uint32_t keep) except *
    cdef void hold(self, Pending* p, uint32_t linktype, int64_t ts_ns, const uint8_t* frame,
                   uint32_t caplen, uint32_t wirelen, uint32_t keep) noexcept
    cdef void release(self, Pending* p, bint write) except *
