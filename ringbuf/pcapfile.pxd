# Declarations of the trace-file source (see pcapfile.pyx).
from libc.stdio cimport FILE
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from ringbuf.ring cimport Ring, PacketRecord
from ringbuf.source cimport Source

# One pcapng interface (Interface Description Block) of the current section.
cdef struct PcapngInterface:
    uint32_t linktype
    uint32_t snaplen
    uint32_t max_caplen        # larger captured lengths are treated as corruption
    bint ts_power_of_two       # if_tsresol high bit: units of 2**-ts_exponent s
    uint32_t ts_exponent
    int64_t ts_multiplier      # power of ten, ts_exponent <= 9: ns = units * multiplier
    int64_t ts_divisor         # power of ten, ts_exponent > 9:  ns = units / divisor
    int64_t ts_offset_ns       # if_tsoffset, in nanoseconds

cdef class PcapFileSource(Source):
    cdef FILE* fp
    cdef readonly str path
    cdef readonly str format            # "pcap" or "pcapng"
    cdef readonly uint64_t records_read
    cdef readonly uint64_t bytes_read
    cdef readonly bint truncated        # the last record was cut short
    cdef readonly str truncation_message
    # Read up to max_records records into the ring.  Returns how many were
    # written; 0 with self.eof set at the end of the file.  A ring with no room
    # makes it return early (the caller processes, acknowledges, calls again);
    # the refused record is kept and written on the next call.
    cdef int fill(self, Ring ring, int max_records) except -1

    # --- added by pcapfile.pyx -------------------------------------------
    # Read buffer: the file is fread in large chunks and records are parsed in
    # place; buf[buf_pos:buf_end] is read but not yet consumed.
    cdef uint8_t* buf
    cdef size_t buf_capacity
    cdef size_t buf_pos
    cdef size_t buf_end
    cdef uint64_t buf_file_offset       # file offset of buf[0]
    cdef bint file_exhausted            # a read hit the end of the file
    # A regular file is read with pread, a window at a time, instead: buf is
    # then the window (WINDOW_BYTES, or one record when larger) and records
    # point into it (no copy), or carry no bytes when elided.
    cdef bint windowed
    cdef bint window_lent               # a record of the ring points into buf
    # The ring whose records point into the window instead of holding a copy
    # of its bytes: a window left behind is handed to it (Ring.take_loan), not
    # freed, and the next one read into a spare it gives back.  None until
    # the first such record.
    cdef Ring borrower
    cdef readonly uint64_t records_lent             # written without a copy
    cdef readonly uint64_t windows_allocated        # malloc'd, not a spare reused
    cdef bint is_pcapng
    cdef bint swapped                   # file (pcap) / section (pcapng) byte order is not ours
    # classic pcap
    cdef readonly uint32_t linktype     # pcap: the header's network; pcapng: 0
    cdef readonly uint32_t snaplen      # pcap: the header's snaplen; pcapng: 0
    cdef int64_t pcap_ns_per_fraction   # 1000 (microsecond file) or 1 (nanosecond file)
    cdef uint32_t pcap_max_caplen
    # pcapng
    cdef PcapngInterface* interfaces
    cdef uint32_t interface_count
    cdef uint32_t interface_capacity
    cdef int64_t last_ts_ns             # Simple Packet Blocks carry no timestamp
    # counters
    cdef readonly uint64_t caplen_exceeds_wirelen   # records kept with wirelen := caplen
    cdef readonly uint64_t records_dropped          # refused by a "drop" ring or oversize for it
    cdef readonly uint64_t sections                 # pcapng Section Header Blocks seen
    cdef readonly uint64_t blocks_skipped           # pcapng blocks of other types

    cdef Py_ssize_t refill(self, size_t wanted) except -1
    cdef Py_ssize_t next_window(self, size_t wanted) except -1
    cdef void let_window_go(self) noexcept
    cdef PacketRecord* reserve_for(self, Ring ring, uint32_t caplen, const uint8_t* data,
                                   bint elide) noexcept
    cdef int fill_pcap(self, Ring ring, int max_records) except -1
    cdef int fill_pcapng(self, Ring ring, int max_records) except -1
    cdef int skip_large_block(self, uint64_t block_offset, uint32_t total_length) except -1
    cdef uint64_t position(self) noexcept          # file offset of the next unconsumed byte
    cdef str read_section_header(self, const uint8_t* block, uint32_t total_length)
    cdef str read_interface_description(self, const uint8_t* block, uint32_t total_length)
