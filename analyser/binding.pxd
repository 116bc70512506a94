# Declarations of the binding of flows to analysers and of event dispatch
# (see binding.pyx).  The flow table (flows.pyx) holds one Binder and one
# Dispatcher and calls them at C speed.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from analyser.decode cimport Decoded
from analyser.streams cimport Streams
from analyser.flowstate cimport Flow

cdef enum:
    MAX_SIGNATURES = 128       # over all analysers (analyser/signatures.py says it too)
    MAX_PATTERN = 16
    MAX_DETECTABLE = 64        # analysers with signatures: one bit each in a uint64_t

cdef object conn_info(Flow* f)

cdef class Binder:
    cdef public object runtime
    cdef Streams streams
    cdef Flow* pool                         # the flow table's (never moves)
    cdef uint8_t tcp_port_analyser[65536]   # index into analyser_classes, 0 = none
    cdef uint8_t udp_port_analyser[65536]   # the same for UDP (datagram) analysers
    cdef public list analyser_classes       # [(cls, config)], index 0 unused
    # Content signatures, checked on the first payload of each side;
    # sig_owner is a bit index into `detectable`.
    cdef uint8_t sig_value[128][16]
    cdef uint8_t sig_mask[128][16]
    cdef uint8_t sig_len[128]
    cdef uint8_t sig_side[128]
    cdef uint8_t sig_skip_space[128]
    cdef uint8_t sig_owner[128]
    cdef uint8_t sig_transports[128]        # bit 1 TCP, bit 2 UDP: where the owner runs
    cdef int n_signatures
    cdef bint udp_signatures                # some signature is for UDP analysers
    cdef readonly bint udp_analysers        # the run has datagram analysers
    cdef public list detectable             # [(cls, config)] with signatures
    cdef public dict expected               # flow number -> Expectation
    cdef dict slot_flows                    # analyser slot -> flow-table index
    cdef readonly uint64_t analysed_flows
    cdef readonly uint64_t detections       # flows started by their first payload
    cdef readonly uint64_t errors           # exceptions caught while binding
    cdef readonly uint64_t datagrams        # UDP datagrams handed to analysers
    cdef dict ended_services                # service -> connections that ended with it
    cdef void new_flow(self, Flow* f) noexcept
    cdef void first_payload(self, Flow* f, int side, const uint8_t* data,
                            uint32_t n) noexcept
    cdef object ending(self, Flow* f)
    cdef void ended(self, Flow* f, dict row, object expectation) noexcept
    cdef void release(self, Flow* f) noexcept
    cdef void start_analyser(self, Flow* f, object cls, object config, list candidates,
                             bint detect) noexcept
    cdef uint64_t match_signatures(self, int side, const uint8_t* data, uint32_t n,
                                   uint8_t transport) noexcept
    cdef void datagram(self, Flow* f, int side, const uint8_t* data, uint32_t n) noexcept
    cdef void detected(self, Flow* f, uint64_t owners) noexcept
    cdef list ranked(self, Flow* f, uint64_t owners)
    cdef void caught(self, str where, object exc) noexcept
    cdef bint expected_service(self, Flow* f, str name)

cdef class Dispatcher:
    cdef Flow* pool
    cdef public object sink                 # callable(kind, index, side, a, b, packet, frame, ts, phase)
    cdef public bint frames                 # subscribers want the packet's frame bytes
    cdef public object report               # callable(where, exc) for a failing callback
    cdef readonly uint64_t errors
    cdef void deliver(self, uint32_t kind, Flow* f, int side, const Decoded* d,
                      uint64_t a, uint64_t b, double now, int phase, bint payload) noexcept
