# cython: language_level=3
"""The packets of selected connections, to pcap files (`--pcap-out DIR`).

Role in the data flow: sinks, fed by the flow table (flows.pyx) per packet
in compiled code.  A connection is chosen by one of (`--pcap-select`):

- `bpf:EXPR`: its first packet matches the libpcap filter (decided at once);
- `service:NAME`: conn.log names the service (decided when an analyser
  names it, or when the connection ends);
- `analyser:NAME`: that analyser ran on it;
- `event:KIND`: an application event of that kind (weird,
  analyzer_violation, ...) happened on it.

Every packet of a chosen connection is written, from its first: until a
connection is decided, its packets are held (at most MAX_FLOW_PENDING bytes
of one connection, MAX_PENDING_BYTES of all; beyond, packets are counted as
not kept) and written when it is chosen, so a held packet can come after
packets of other connections in the file (tcpdump and Wireshark read it;
`editcap`/`reordercap` sorts).  Files are classic pcap, one per link type:
`DIR/selected.pcap` (Ethernet and anything first seen), `selected-<LINKTYPE>.pcap`
for others.  `--pcap-headers-only` keeps each packet up to the end of its
transport header (the wire length stays).
"""
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy
from cpython.bytes cimport PyBytes_FromStringAndSize

import os
import struct

cdef enum:
    MAX_FLOW_PENDING = 1 << 20       # bytes held for one undecided connection
    FLUSH_BYTES = 1 << 20            # a file's buffer goes out past this

MAX_PENDING_BYTES = 256 << 20        # held for all undecided connections together
PCAP_HEADER = struct.Struct("<IHHiIII")
KINDS = ("bpf", "service", "analyser", "event", "all")


def parse_selection(spec: str) -> tuple[str, str]:
    """'service:ftp' -> ("service", "ftp"); a bare filter means bpf; "all"
    (the default) every connection."""
    if spec in ("", "all"):
        return "all", ""
    kind, sep, value = spec.partition(":")
    if sep and kind in KINDS and value:
        return kind, value
    if not sep or kind not in KINDS:
        return "bpf", spec
    raise ValueError("bad --pcap-select %r: service:NAME, analyser:NAME, event:KIND or "
                     "bpf:EXPR" % spec)


cdef inline void put_record(uint8_t* out, int64_t ts_ns, const uint8_t* frame,
                            uint32_t caplen, uint32_t wirelen) noexcept nogil:
    cdef uint32_t header[4]
    header[0] = <uint32_t>(ts_ns // 1000000000)
    header[1] = <uint32_t>((ts_ns % 1000000000) // 1000)
    header[2] = caplen
    header[3] = wirelen
    memcpy(out, header, 16)
    memcpy(out + 16, frame, caplen)


cdef class PcapOut:
    """Writes the selected connections' packets."""

    def __cinit__(self, str directory, str selection, bint headers_only=False):
        from ringbuf.bpf import BpfFilter
        self.directory = directory
        self.kind, self.value = parse_selection(selection)
        self.bpf = BpfFilter(self.value) if self.kind == "bpf" else None
        self.headers_only = headers_only
        self.files = {}
        self.buffers = {}
        self.max_pending_bytes = MAX_PENDING_BYTES
        self.max_flow_pending = MAX_FLOW_PENDING
        os.makedirs(directory, exist_ok=True)

    cdef uint8_t first_decision(self, uint32_t linktype, const uint8_t* frame,
                                uint32_t caplen, uint32_t wirelen) except 255:
        if self.kind == "all":
            return PCAP_SELECTED
        if self.bpf is None:
            return PCAP_UNDECIDED
        if self.bpf.matches(linktype, frame, caplen, wirelen):
            return PCAP_SELECTED
        return PCAP_REJECTED

    def chooses(self, str kind, value) -> bool:
        """Does this service, analyser or event kind select a connection?"""
        return kind == self.kind and value == self.value

    cdef void write(self, uint32_t linktype, int64_t ts_ns, const uint8_t* frame,
                    uint32_t caplen, uint32_t wirelen, uint32_t keep) except *:
        cdef bytearray buf = self.buffers.get(linktype)
        cdef Py_ssize_t at
        if keep < caplen:
            caplen = keep
        if buf is None:
            buf = self.buffers[linktype] = bytearray()
            self.files[linktype] = self.open_file(linktype)
        at = len(buf)
        buf.extend(b"\0" * (16 + caplen))
        put_record(<uint8_t*>(<char*>buf) + at, ts_ns, frame, caplen, wirelen)
        self.packets_written += 1
        if len(buf) >= FLUSH_BYTES:
            self.files[linktype].write(buf)
            del buf[:]

    def open_file(self, uint32_t linktype):
        name = "selected.pcap" if not self.files else "selected-%d.pcap" % linktype
        f = open(os.path.join(self.directory, name), "wb")
        f.write(PCAP_HEADER.pack(0xa1b2c3d4, 2, 4, 0, 0, 262144, linktype))
        return f

    cdef void hold(self, Pending* p, uint32_t linktype, int64_t ts_ns, const uint8_t* frame,
                   uint32_t caplen, uint32_t wirelen, uint32_t keep) noexcept:
        """Keep a packet of an undecided connection (within the limits)."""
        cdef uint32_t need
        cdef uint32_t cap
        cdef uint8_t* grown
        if keep < caplen:
            caplen = keep
        need = 16 + caplen
        if p.len == 0:
            p.linktype = linktype
        if (linktype != p.linktype or p.len + need > self.max_flow_pending
                or self.pending_bytes + need > self.max_pending_bytes):
            self.pending_dropped += 1
            return
        if p.len + need > p.cap:
            cap = max(p.cap * 2, 4096)
            while cap < p.len + need:
                cap *= 2
            grown = <uint8_t*>realloc(p.data, cap)
            if grown == NULL:
                self.pending_dropped += 1
                return
            self.pending_bytes += cap - p.cap
            p.data = grown
            p.cap = cap
        put_record(p.data + p.len, ts_ns, frame, caplen, wirelen)
        p.len += need

    cdef void release(self, Pending* p, bint write) except *:
        """The connection is decided: its held packets out (or away)."""
        cdef bytearray buf
        cdef uint32_t at = 0
        cdef uint32_t caplen
        if write and p.len:
            buf = self.buffers.get(p.linktype)
            if buf is None:
                buf = self.buffers[p.linktype] = bytearray()
                self.files[p.linktype] = self.open_file(p.linktype)
            buf.extend(PyBytes_FromStringAndSize(<char*>p.data, p.len))
            while at < p.len:
                memcpy(&caplen, p.data + at + 8, 4)
                at += 16 + caplen
                self.packets_written += 1
        self.pending_bytes -= p.cap
        free(p.data)
        p.data = NULL
        p.len = p.cap = 0

    def written_files(self):
        """The pcap files written (after close())."""
        names = []
        for linktype in self.buffers:
            first = not names
            names.append(os.path.join(self.directory, "selected.pcap" if first
                                      else "selected-%d.pcap" % linktype))
        return names

    def close(self):
        for linktype, f in self.files.items():
            f.write(self.buffers[linktype])
            f.close()
        self.files = {}

    def stats(self):
        return {"pcap_packets": self.packets_written, "pcap_not_kept": self.pending_dropped}
