# Declarations of the BPF packet filter (see bpf.pyx), so that the engine calls
# matches() as a C function.
from libc.stdint cimport uint8_t, uint32_t
from ringbuf.includes.pcap cimport bpf_program

# The filter compiled for one link type (or the fact that it cannot be).
cdef struct LinktypeProgram:
    uint32_t linktype
    bint compiled            # False: libpcap cannot compile the expression for it
    bpf_program program

cdef class BpfFilter:
    cdef readonly str expression
    cdef LinktypeProgram* programs      # one per link type seen, few in practice
    cdef int program_count
    cdef int program_capacity
    cdef int last_program               # index of the last link type looked up
    cdef readonly dict compile_errors   # linktype -> libpcap's message
    cdef readonly unsigned long long uncompilable_linktype_packets

    # 1 when the packet passes the filter, 0 when it does not.  The first packet
    # of a new link type compiles the program for it (touching Python once).
    cdef int matches(self, uint32_t linktype, const uint8_t* data, uint32_t caplen,
                     uint32_t wirelen) except -1
    cdef int program_for(self, uint32_t linktype) except -1
