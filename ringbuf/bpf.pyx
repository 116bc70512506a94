"""BPF packet filter: libpcap compiles the expression, we run it per packet.

Role in the data flow::

    source ──► ring ──► [filter] ──► decode ──► flow table ──► ...

The user's filter (tcpdump syntax, e.g. "tcp port 21 or udp") is compiled by
libpcap, never by us: ``pcap_open_dead`` gives a handle for a link type and
``pcap_compile`` turns the expression into a BPF program, which ``bpf_filter``
runs over each packet's bytes.

A BPF program depends on the link type (where the IP header starts), and a trace
can mix link types (pcapng interfaces).  So the expression is compiled once for
Ethernet at construction, which validates its syntax (``ValueError`` carrying
libpcap's message), and lazily for any other link type the first time a packet
of that type arrives.  The programs are cached in a small C array.  An
expression that makes no sense for some link type (e.g. "vlan" on raw IP) is
remembered as uncompilable there: those packets do not match and are counted in
``uncompilable_linktype_packets``.

Capture files store LINKTYPE_* values; libpcap compiles for DLT_* values.  They
are equal except for a handful of historical numbers, translated below.
"""
from libc.stdint cimport uint8_t, uint32_t
from libc.stdlib cimport realloc, free
from ringbuf.ring cimport MAXIMUM_SNAPLEN

from ringbuf.includes.pcap cimport (
    pcap_t, bpf_program, pcap_open_dead, pcap_close, pcap_compile, pcap_freecode,
    pcap_geterr, bpf_filter, PCAP_NETMASK_UNKNOWN,
    DLT_EN10MB, DLT_ATM_RFC1483, DLT_RAW, DLT_SLIP_BSDOS, DLT_PPP_BSDOS, DLT_ATM_CLIP,
    DLT_LOOP, DLT_ENC, DLT_HDLC, DLT_PFSYNC, DLT_PKTAP,
)

cdef enum:
    LINKTYPE_ETHERNET = 1
    COMPILE_SNAPLEN = MAXIMUM_SNAPLEN


cdef int dlt_for_linktype(uint32_t linktype) noexcept:
    # LINKTYPE_* values whose DLT_* differs between platforms (see pcap/dlt.h).
    if linktype == 100:
        return DLT_ATM_RFC1483
    if linktype == 101:
        return DLT_RAW
    if linktype == 102:
        return DLT_SLIP_BSDOS
    if linktype == 103:
        return DLT_PPP_BSDOS
    if linktype == 106:
        return DLT_ATM_CLIP
    if linktype == 108:
        return DLT_LOOP
    if linktype == 109:
        return DLT_ENC
    if linktype == 112:
        return DLT_HDLC
    if linktype == 246:
        return DLT_PFSYNC
    if linktype == 258:
        return DLT_PKTAP
    return <int>linktype


cdef str compile_program(str expression, uint32_t linktype, bpf_program* program):
    """Compile `expression` for `linktype` into `program`; None, or libpcap's error."""
    cdef bytes encoded = expression.encode()
    cdef pcap_t* handle = pcap_open_dead(dlt_for_linktype(linktype), COMPILE_SNAPLEN)
    cdef str error = None
    if handle == NULL:
        return "libpcap could not open a handle for this link type"
    if pcap_compile(handle, program, encoded, 1, PCAP_NETMASK_UNKNOWN) != 0:
        error = (<bytes>pcap_geterr(handle)).decode(errors="replace")
    pcap_close(handle)
    return error


cdef class BpfFilter:
    """A tcpdump-syntax filter, compiled per link type, run in C per packet."""

    def __cinit__(self, *args, **kwargs):
        self.programs = NULL
        self.program_count = 0
        self.program_capacity = 0
        self.last_program = -1

    def __init__(self, str expression):
        self.expression = expression
        self.compile_errors = {}
        self.program_for(LINKTYPE_ETHERNET)
        if not self.programs[0].compiled:
            raise ValueError(f"bad filter expression {expression!r}: "
                             f"{self.compile_errors[LINKTYPE_ETHERNET]}")

    def __dealloc__(self):
        cdef int i
        for i in range(self.program_count):
            if self.programs[i].compiled:
                pcap_freecode(&self.programs[i].program)
        free(self.programs)
        self.programs = NULL

    cdef int program_for(self, uint32_t linktype) except -1:
        """Index of the program for `linktype`, compiling it on first sight."""
        cdef int i
        cdef LinktypeProgram* grown
        cdef LinktypeProgram* entry
        for i in range(self.program_count):
            if self.programs[i].linktype == linktype:
                return i
        if self.program_count == self.program_capacity:
            grown = <LinktypeProgram*>realloc(
                self.programs, (self.program_capacity + 4) * sizeof(LinktypeProgram))
            if grown == NULL:
                raise MemoryError()
            self.programs = grown
            self.program_capacity += 4
        entry = &self.programs[self.program_count]
        entry.linktype = linktype
        entry.program.bf_len = 0
        entry.program.bf_insns = NULL
        error = compile_program(self.expression, linktype, &entry.program)
        entry.compiled = error is None
        if error is not None:
            self.compile_errors[linktype] = error
        self.program_count += 1
        return self.program_count - 1

    cdef int matches(self, uint32_t linktype, const uint8_t* data, uint32_t caplen,
                     uint32_t wirelen) except -1:
        cdef LinktypeProgram* entry
        if self.last_program < 0 or self.programs[self.last_program].linktype != linktype:
            self.last_program = self.program_for(linktype)
        entry = &self.programs[self.last_program]
        if not entry.compiled:
            self.uncompilable_linktype_packets += 1
            return 0
        return 1 if bpf_filter(entry.program.bf_insns, data, wirelen, caplen) else 0

    def match(self, uint32_t linktype, const uint8_t[::1] data, wirelen=None):
        """True when the packet `data` (of link type `linktype`) passes the filter.
        `wirelen` defaults to len(data).  For tests and tools."""
        cdef uint32_t caplen = <uint32_t>data.shape[0]
        cdef const uint8_t* packet = &data[0] if caplen else <const uint8_t*>b""
        return self.matches(linktype, packet, caplen,
                            caplen if wirelen is None else <uint32_t>wirelen) == 1

    @property
    def linktypes(self):
        """{linktype: True if compiled, False if the expression does not apply to it}."""
        return {self.programs[i].linktype: bool(self.programs[i].compiled)
                for i in range(self.program_count)}

    def __repr__(self):
        return f"BpfFilter({self.expression!r})"
