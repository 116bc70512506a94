"""Trace-file source: pcap and pcapng files read in compiled code into the ring.

Role in the data flow::

    [trace file] ──► ring (write ptr) ──► decode ──► flow table ──► ...

``PcapFileSource(path)`` opens a capture file, recognises its format from the
first bytes (classic pcap in either byte order with microsecond or nanosecond
timestamps; pcapng, each section in its own byte order) and, on every
``fill(ring, n)``, parses up to ``n`` packet records straight into the ring.

How it reads: a regular file is read with ``pread`` a window at a time
(``WINDOW_BYTES``) into memory the ring recycles; anything else (a pipe, a
FIFO) is read with C stdio ``fread`` in large chunks into a buffer this
object owns.  Records are parsed in place, in the window or the buffer.  In
a window, a packet's bytes are not copied again: its record points into the
window (``Ring.reserve_external``), and a window left behind is handed to
the ring (``Ring.take_loan``), which keeps it until no record needs it and
then gives it back as a spare for a later window (``Ring.spare_window``).
Read into the buffer, they are ``memcpy``'d once more, into the ring arena.
Why not map the file: mapping a GB costs more (populating and tearing down
page tables for every 4 KiB, then a cache miss on every record header) than
the kernel's copy into a window that stays in cache: walking the record
headers of bench's mix-1g trace took 0.21 s through 8 MiB populated maps and
0.13 s through a reused 1 MiB buffer, on the 2-core machine of
bench/RESULTS.md.  A file still being written is read as far as it goes at
each window.  No Python object is
created per packet.  A consumer may set an elide test (``Source.elide_test``: replay
on several workers): a record it accepts is written without its bytes, so
a worker pays for another worker's packets only the reading of their
headers.  A record is consumed from the buffer only after
the ring accepted it, so a full ring (the "wait" policy) simply stops the fill:
the next call starts with that same record.  Nothing is lost.

Bad input never produces a traceback: a file that cannot be read raises
``CaptureFileError`` with one line naming the file and the problem.  Corruption
in the middle of a file (an impossible captured length, a malformed block) is
reported the same way, but only after every record before it has been delivered
(``fill`` returns what it wrote, the next call raises).  A file that merely ends
inside its last record, as a capture killed mid-write does, is not an error:
``truncated`` and ``truncation_message`` say so and the source ends normally.

What counts as corruption: a captured length above 262144 bytes (libpcap's
MAXIMUM_SNAPLEN), or above the file's or interface's snaplen when that is
larger (up to 16 MiB).  A captured length above a smaller declared snaplen is
accepted, since writers disagree on what a snaplen means; a captured length
above the wire length is kept, counted in ``caplen_exceeds_wirelen``, and the
wire length raised to match.

Timestamps become nanoseconds since the epoch (int64).  Link types are the
file's LINKTYPE_* values (per interface for pcapng).
"""
import os
from errno import EISDIR

cimport cython

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.errno cimport errno, EINTR
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.stdio cimport FILE, fopen, fclose, fread, ferror, setvbuf, _IOFBF, SEEK_SET
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy, memmove
from posix.stat cimport struct_stat, fstat, S_ISDIR, S_ISREG
from posix.stdio cimport fileno
from posix.unistd cimport pread

from ringbuf.source cimport Source
from ringbuf.ring cimport Ring, PacketRecord, OVERFLOW_WAIT, MAXIMUM_SNAPLEN
from ringbuf.errors import CaptureFileError


cdef extern from *:
    """
    static inline uint32_t ringbuf_bswap32(uint32_t v) { return __builtin_bswap32(v); }
    static inline uint16_t ringbuf_bswap16(uint16_t v) { return __builtin_bswap16(v); }
    static inline void ringbuf_prefetch(const void* p) { __builtin_prefetch(p, 0, 3); }
    """
    uint32_t ringbuf_bswap32(uint32_t v) nogil
    uint16_t ringbuf_bswap16(uint16_t v) nogil
    void ringbuf_prefetch(const void* p) nogil


# Classic pcap magic numbers, as read in our own byte order.
cdef uint32_t PCAP_MAGIC_MICROSECONDS = 0xa1b2c3d4
cdef uint32_t PCAP_MAGIC_NANOSECONDS = 0xa1b23c4d
cdef uint32_t PCAP_MAGIC_KUZNETZOV = 0xa1b2cd34      # "modified pcap": not supported

# pcapng block types and magic.
cdef uint32_t PCAPNG_SECTION_HEADER = 0x0A0D0D0A
cdef uint32_t PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D

cdef enum:
    PCAP_FILE_HEADER_BYTES = 24
    PCAP_RECORD_HEADER_BYTES = 16
    PCAPNG_INTERFACE_DESCRIPTION = 0x00000001
    PCAPNG_OBSOLETE_PACKET = 0x00000002
    PCAPNG_SIMPLE_PACKET = 0x00000003
    PCAPNG_ENHANCED_PACKET = 0x00000006
    PCAPNG_MIN_BLOCK_BYTES = 12
    PCAPNG_MIN_SECTION_HEADER_BYTES = 28
    OPTION_END = 0
    OPTION_IF_TSRESOL = 9
    OPTION_IF_TSOFFSET = 14
    # A captured length above this is corruption rather than a packet (libpcap's
    # MAXIMUM_SNAPLEN), unless the file itself declares a larger snaplen.
    DEFAULT_MAX_CAPLEN = MAXIMUM_SNAPLEN
    # Blocks up to this size are buffered whole; nothing legitimate is larger
    # than a packet of the largest snaplen we accept, plus its options.
    MAX_BUFFERED_BLOCK = 16 * 1024 * 1024
    READ_CHUNK_BYTES = 4 * 1024 * 1024
    # A regular file's window: small enough that it is still in the CPU's
    # cache when its records are parsed and decoded just after the read,
    # large enough that reads are few.  The windows records not yet
    # acknowledged point into are lent to the ring (their span is bounded by
    # the ring's arena size: ringbuf/ring.pyx).
    WINDOW_BYTES = 1024 * 1024
    # How far ahead of the record being read a window is prefetched.
    PREFETCH_AHEAD_BYTES = 8192
    STDIO_BUFFER_BYTES = 1024 * 1024
    NANOSECONDS = 1000000000


cdef inline uint32_t load_u32(const uint8_t* p, bint swapped) noexcept nogil:
    cdef uint32_t value
    memcpy(&value, p, 4)
    return ringbuf_bswap32(value) if swapped else value


cdef inline uint16_t load_u16(const uint8_t* p, bint swapped) noexcept nogil:
    cdef uint16_t value
    memcpy(&value, p, 2)
    return ringbuf_bswap16(value) if swapped else value


cdef inline uint32_t padded_to_32_bits(uint32_t length) noexcept nogil:
    return (length + 3) & ~(<uint32_t>3)


cdef uint32_t max_caplen_for_snaplen(uint32_t snaplen) noexcept nogil:
    if snaplen > DEFAULT_MAX_CAPLEN:
        return snaplen if snaplen < MAX_BUFFERED_BLOCK - 64 else MAX_BUFFERED_BLOCK - 64
    return DEFAULT_MAX_CAPLEN


cdef int64_t interface_ts_to_ns(const PcapngInterface* interface, uint64_t units) noexcept nogil:
    cdef uint64_t whole_seconds, fraction
    cdef uint32_t shift
    if interface.ts_power_of_two:
        shift = interface.ts_exponent
        whole_seconds = units >> shift if shift < 64 else 0
        fraction = units & ((<uint64_t>1 << shift) - 1) if shift < 64 else units
        # Keep fraction * 1e9 within 64 bits by dropping sub-nanosecond bits first.
        if shift > 32:
            fraction >>= shift - 32
            shift = 32
        return (<int64_t>(whole_seconds * NANOSECONDS + ((fraction * NANOSECONDS) >> shift))
                + interface.ts_offset_ns)
    if interface.ts_exponent <= 9:
        return <int64_t>(units * <uint64_t>interface.ts_multiplier) + interface.ts_offset_ns
    return <int64_t>(units // <uint64_t>interface.ts_divisor) + interface.ts_offset_ns


@cython.no_gc_clear      # the borrower must be there to take the last window
cdef class PcapFileSource(Source):
    """A pcap or pcapng trace file, read record by record into a Ring."""

    def __cinit__(self, *args, **kwargs):
        self.fp = NULL
        self.buf = NULL
        self.interfaces = NULL

    def __init__(self, path):
        cdef struct_stat status
        cdef bytes encoded = os.fsencode(path)
        cdef uint32_t magic
        cdef Py_ssize_t available
        self.path = os.fsdecode(path)
        self.truncation_message = ""
        self.fp = fopen(encoded, "rb")
        if self.fp == NULL:
            raise CaptureFileError(f"cannot open '{self.path}': {os.strerror(errno)}")
        if fstat(fileno(self.fp), &status) != 0:
            status.st_mode = 0
        if S_ISDIR(status.st_mode):
            self.close()
            raise CaptureFileError(f"cannot open '{self.path}': {os.strerror(EISDIR)}")
        setvbuf(self.fp, NULL, _IOFBF, STDIO_BUFFER_BYTES)
        if S_ISREG(status.st_mode):
            self.windowed = True         # refill() reads the first window
        else:
            self.buf_capacity = READ_CHUNK_BYTES
            self.buf = <uint8_t*>malloc(self.buf_capacity)
            if self.buf == NULL:
                raise MemoryError()

        available = self.refill(PCAP_FILE_HEADER_BYTES)
        if available == 0:
            raise CaptureFileError(f"'{self.path}' is empty: not a capture file")
        if available < 4:
            self._raise_not_a_capture(available)
        magic = load_u32(self.buf, False)
        if magic == PCAPNG_SECTION_HEADER:
            self._open_pcapng()
        elif magic in (PCAP_MAGIC_MICROSECONDS, PCAP_MAGIC_NANOSECONDS):
            self._open_pcap(magic, False)
        elif ringbuf_bswap32(magic) in (PCAP_MAGIC_MICROSECONDS, PCAP_MAGIC_NANOSECONDS):
            self._open_pcap(ringbuf_bswap32(magic), True)
        elif PCAP_MAGIC_KUZNETZOV in (magic, ringbuf_bswap32(magic)):
            raise CaptureFileError(
                f"'{self.path}' is a 'modified' (Kuznetzov) pcap file, which is not supported")
        else:
            self._raise_not_a_capture(available)
        if self.windowed:
            # Only the header was needed now; the first fill reads the window
            # again.  (A replay opens all its files up front, to check them:
            # a window each would keep a MiB of every file in memory at once.)
            self.buf_file_offset += self.buf_pos
            self.buf_pos = self.buf_end = 0
            self.let_window_go()
            self.file_exhausted = False

    def _raise_not_a_capture(self, Py_ssize_t available):
        first_bytes = (<char*>self.buf)[:min(available, 4)].hex()
        raise CaptureFileError(
            f"'{self.path}' is not a pcap or pcapng file (starts with 0x{first_bytes})")

    def _open_pcap(self, uint32_t magic, bint swapped):
        cdef uint16_t major, minor
        if self.buf_end < PCAP_FILE_HEADER_BYTES:
            raise CaptureFileError(
                f"'{self.path}' is cut short: its pcap file header has {self.buf_end} "
                f"of {PCAP_FILE_HEADER_BYTES} bytes")
        self.format = "pcap"
        self.swapped = swapped
        major = load_u16(self.buf + 4, swapped)
        minor = load_u16(self.buf + 6, swapped)
        if major != 2:
            raise CaptureFileError(
                f"'{self.path}' has unsupported pcap version {major}.{minor} "
                f"(this reader understands version 2)")
        self.snaplen = load_u32(self.buf + 16, swapped)
        # The upper bits of the network field carry FCS information, not the link type.
        self.linktype = load_u32(self.buf + 20, swapped) & 0x03FFFFFF
        self.pcap_ns_per_fraction = 1 if magic == PCAP_MAGIC_NANOSECONDS else 1000
        self.pcap_max_caplen = max_caplen_for_snaplen(self.snaplen)
        self.buf_pos = PCAP_FILE_HEADER_BYTES

    def _open_pcapng(self):
        cdef uint32_t byte_order_magic
        self.format = "pcapng"
        self.is_pcapng = True
        if self.refill(PCAPNG_MIN_SECTION_HEADER_BYTES) < PCAPNG_MIN_SECTION_HEADER_BYTES:
            raise CaptureFileError(
                f"'{self.path}' is cut short: its pcapng section header has "
                f"{self.buf_end} of at least {PCAPNG_MIN_SECTION_HEADER_BYTES} bytes")
        byte_order_magic = load_u32(self.buf + 8, False)
        if (byte_order_magic != PCAPNG_BYTE_ORDER_MAGIC
                and ringbuf_bswap32(byte_order_magic) != PCAPNG_BYTE_ORDER_MAGIC):
            raise CaptureFileError(
                f"'{self.path}' is not a pcapng file (bad byte-order magic "
                f"0x{(<char*>self.buf)[8:12].hex()} in its section header)")
        # The section header itself is read by fill_pcapng, like any later one.

    def close(self):
        if self.fp != NULL:
            fclose(self.fp)
            self.fp = NULL
        if self.windowed:
            self.let_window_go()
            self.buf_pos = self.buf_end = 0

    def __dealloc__(self):
        if self.fp != NULL:
            fclose(self.fp)
            self.fp = NULL
        if self.windowed:
            self.let_window_go()
        else:
            free(self.buf)
        self.buf = NULL
        free(self.interfaces)
        self.interfaces = NULL

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # ------------------------------------------------------------ buffering

    cdef Py_ssize_t refill(self, size_t wanted) except -1:
        """Make at least `wanted` unconsumed bytes available in the buffer,
        unless the file ends first.  Returns how many are available."""
        cdef size_t unconsumed = self.buf_end - self.buf_pos
        cdef size_t new_capacity, got
        cdef uint8_t* grown
        if unconsumed >= wanted:
            return unconsumed
        if self.windowed:
            return self.next_window(wanted)
        # Slide the unconsumed tail to the front, then grow if still too small.
        if self.buf_pos:
            memmove(self.buf, self.buf + self.buf_pos, unconsumed)
            self.buf_file_offset += self.buf_pos
            self.buf_pos = 0
            self.buf_end = unconsumed
        if wanted > self.buf_capacity:
            new_capacity = self.buf_capacity
            while new_capacity < wanted:
                new_capacity *= 2
            grown = <uint8_t*>realloc(self.buf, new_capacity)
            if grown == NULL:
                raise MemoryError()
            self.buf = grown
            self.buf_capacity = new_capacity
        while self.buf_end < wanted and not self.file_exhausted and self.fp != NULL:
            got = fread(self.buf + self.buf_end, 1, self.buf_capacity - self.buf_end, self.fp)
            if got == 0:
                if ferror(self.fp):
                    raise CaptureFileError(
                        f"cannot read '{self.path}': {os.strerror(errno)}")
                self.file_exhausted = True
            self.buf_end += got
        return self.buf_end - self.buf_pos

    cdef Py_ssize_t next_window(self, size_t wanted) except -1:
        """refill() of a regular file: a window that starts with the next
        unconsumed byte, holds at least `wanted` bytes (unless the file ends
        first) and is read up to its size.  The current window is read into
        again when no record points into it; else it is lent to the ring and
        the bytes not yet consumed are copied to the next (a record at most)."""
        cdef size_t unconsumed = self.buf_end - self.buf_pos
        cdef uint64_t pos = self.buf_file_offset + self.buf_pos
        cdef size_t length = WINDOW_BYTES if wanted < WINDOW_BYTES else wanted
        cdef size_t capacity = 0
        cdef uint8_t* window = NULL
        cdef Py_ssize_t got
        if self.file_exhausted or self.fp == NULL:
            return unconsumed
        if self.buf != NULL and not self.window_lent and self.buf_capacity >= length:
            memmove(self.buf, self.buf + self.buf_pos, unconsumed)
        else:
            if self.borrower is not None:
                window = self.borrower.spare_window(length, &capacity)
            if window == NULL:
                window = <uint8_t*>malloc(length)
                capacity = length
                if window == NULL:
                    raise MemoryError()
                self.windows_allocated += 1
            if unconsumed:
                memcpy(window, self.buf + self.buf_pos, unconsumed)
            self.let_window_go()
            self.buf = window
            self.buf_capacity = capacity
        self.buf_file_offset = pos
        self.buf_pos = 0
        self.buf_end = unconsumed
        # A file still being written is read as far as it goes now.
        while self.buf_end < self.buf_capacity:
            got = pread(fileno(self.fp), self.buf + self.buf_end,
                        self.buf_capacity - self.buf_end, pos + self.buf_end)
            if got < 0:
                if errno == EINTR:
                    continue
                raise CaptureFileError(f"cannot read '{self.path}': {os.strerror(errno)}")
            if got == 0:
                self.file_exhausted = True
                break
            self.buf_end += got
        return self.buf_end - self.buf_pos

    cdef void let_window_go(self) noexcept:
        """Let the window go (none: nothing to do): to the ring whose records
        point into it, else freed, or kept by the ring as a spare."""
        if self.buf == NULL:
            return
        if self.window_lent:
            self.borrower.take_loan(self.buf, self.buf_capacity)
        elif self.borrower is not None:
            self.borrower.keep_spare(self.buf, self.buf_capacity)
        else:
            free(self.buf)
        self.buf = NULL
        self.buf_capacity = 0
        self.window_lent = False

    cdef PacketRecord* reserve_for(self, Ring ring, uint32_t caplen, const uint8_t* data,
                                   bint elide) noexcept:
        """A ring record for a packet whose `caplen` bytes are at `data`: none
        of them kept when elided; left where they are when `data` is in a
        window (one ring takes the windows); else copied into the arena.
        NULL when the ring refused it."""
        cdef PacketRecord* rec
        if elide:
            return ring.reserve(0)
        if self.windowed and (self.borrower is ring or self.borrower is None):
            rec = ring.reserve_external(caplen, data)
            if rec != NULL:
                if self.borrower is None:
                    self.borrower = ring
                self.window_lent = True
                self.records_lent += 1
            return rec
        rec = ring.reserve(caplen)
        if rec != NULL:
            memcpy(ring.data_of(rec), data, caplen)
        return rec

    cdef uint64_t position(self) noexcept:
        return self.buf_file_offset + self.buf_pos

    def _mark_truncated(self, what, Py_ssize_t have, uint64_t need, uint64_t offset):
        self.truncated = True
        self.eof = True
        self.truncation_message = (
            f"'{self.path}' is truncated: last {what} cut short at byte offset "
            f"{offset} ({have} bytes of a {need}-byte {what}); "
            f"{self.records_read} records read before it")

    def _corrupt(self, uint64_t offset, str problem):
        return CaptureFileError(
            f"'{self.path}' is corrupt at byte offset {offset} "
            f"(after {self.records_read} records): {problem}")

    # ------------------------------------------------------------ the fill

    cdef int fill(self, Ring ring, int max_records) except -1:
        if self.eof or self.fp == NULL:
            self.eof = True
            return 0
        if self.is_pcapng:
            return self.fill_pcapng(ring, max_records)
        return self.fill_pcap(ring, max_records)

    cdef int fill_pcap(self, Ring ring, int max_records) except -1:
        cdef int written = 0
        cdef const uint8_t* header
        cdef uint32_t ts_seconds, ts_fraction, caplen, wirelen
        cdef size_t record_bytes
        cdef Py_ssize_t available
        cdef PacketRecord* rec
        cdef bint swapped = self.swapped
        cdef bint elide
        while written < max_records:
            if self.buf_end - self.buf_pos < PCAP_RECORD_HEADER_BYTES:
                available = self.refill(PCAP_RECORD_HEADER_BYTES)
                if available == 0:
                    self.eof = True
                    break
                if available < PCAP_RECORD_HEADER_BYTES:
                    self._mark_truncated("record header", available, PCAP_RECORD_HEADER_BYTES,
                                         self.position())
                    break
            header = self.buf + self.buf_pos
            caplen = load_u32(header + 8, swapped)
            if caplen > self.pcap_max_caplen:
                if written:
                    break       # deliver what came before; the next call raises
                raise self._corrupt(self.position(),
                    f"record {self.records_read + 1} claims {caplen} captured bytes "
                    f"(more than the maximum {self.pcap_max_caplen})")
            record_bytes = PCAP_RECORD_HEADER_BYTES + caplen
            if self.buf_end - self.buf_pos < record_bytes:
                available = self.refill(record_bytes)
                if available < <Py_ssize_t>record_bytes:
                    self._mark_truncated("record", available, record_bytes, self.position())
                    break
                header = self.buf + self.buf_pos
            if self.buf_end - self.buf_pos >= record_bytes + PREFETCH_AHEAD_BYTES:
                # The next record's header and the packet headers after it: in
                # a file read for the first time they are a cache miss each,
                # asked for while this record is handled; and the bytes a few
                # pages on, so that the walk does not wait for each new page
                # (its translation and first line).
                ringbuf_prefetch(header + record_bytes)
                ringbuf_prefetch(header + record_bytes + 64)
                ringbuf_prefetch(header + record_bytes + PREFETCH_AHEAD_BYTES)
            wirelen = load_u32(header + 12, swapped)
            elide = self.elide_test != NULL and self.elide_test(
                self.elide_ctx, header + PCAP_RECORD_HEADER_BYTES, caplen,
                caplen if caplen > wirelen else wirelen, self.linktype)
            rec = self.reserve_for(ring, caplen, header + PCAP_RECORD_HEADER_BYTES, elide)
            if rec == NULL:
                if ring.policy == OVERFLOW_WAIT and caplen <= ring.arena_bytes:
                    break       # ring full: this record stays first in line
                self.records_dropped += 1     # the ring counted why
            else:
                ts_seconds = load_u32(header, swapped)
                ts_fraction = load_u32(header + 4, swapped)
                if caplen > wirelen:
                    self.caplen_exceeds_wirelen += 1
                    wirelen = caplen
                rec.ts_ns = (<int64_t>ts_seconds * NANOSECONDS
                             + <int64_t>ts_fraction * self.pcap_ns_per_fraction)
                rec.wirelen = wirelen
                rec.linktype = self.linktype
                rec.iface = 0
                if elide:
                    rec.elided = caplen
                    self.records_elided += 1
                ring.commit()
                written += 1
            self.buf_pos += record_bytes
            self.records_read += 1
            self.bytes_read += caplen
        return written

    cdef int fill_pcapng(self, Ring ring, int max_records) except -1:
        cdef int written = 0
        cdef const uint8_t* block
        cdef uint32_t block_type, total_length, trailing_length
        cdef uint32_t interface_id, caplen, wirelen, payload_room
        cdef uint64_t ts_units
        cdef uint64_t block_offset
        cdef Py_ssize_t available
        cdef size_t data_start
        cdef PcapngInterface* interface
        cdef PacketRecord* rec
        cdef int64_t ts_ns
        cdef bint elide
        while written < max_records:
            if self.buf_end - self.buf_pos < 12:
                available = self.refill(12)
                if available == 0:
                    self.eof = True
                    break
                if available < 8:
                    self._mark_truncated("block", available, 8, self.position())
                    break
            block = self.buf + self.buf_pos
            block_offset = self.position()
            block_type = load_u32(block, self.swapped)
            if block_type == PCAPNG_SECTION_HEADER:
                # The block type reads the same in both orders; the byte-order
                # magic that follows the length sets this section's order.
                if self.buf_end - self.buf_pos < 12:
                    self._mark_truncated("block", self.buf_end - self.buf_pos,
                                         PCAPNG_MIN_SECTION_HEADER_BYTES, block_offset)
                    break
                if load_u32(block + 8, False) == PCAPNG_BYTE_ORDER_MAGIC:
                    self.swapped = False
                elif load_u32(block + 8, True) == PCAPNG_BYTE_ORDER_MAGIC:
                    self.swapped = True
                else:
                    if written:
                        break
                    raise self._corrupt(block_offset,
                        "section header block with a bad byte-order magic "
                        f"0x{(<char*>block)[8:12].hex()}")
            total_length = load_u32(block + 4, self.swapped)
            if total_length % 4 or total_length < PCAPNG_MIN_BLOCK_BYTES:
                if written:
                    break
                raise self._corrupt(block_offset,
                    f"block of type 0x{block_type:08x} has an invalid length {total_length} "
                    "(must be a multiple of 4 and at least 12)")
            if total_length > MAX_BUFFERED_BLOCK:
                if block_type in (PCAPNG_SECTION_HEADER, PCAPNG_INTERFACE_DESCRIPTION,
                                  PCAPNG_ENHANCED_PACKET, PCAPNG_SIMPLE_PACKET,
                                  PCAPNG_OBSOLETE_PACKET):
                    if written:
                        break
                    raise self._corrupt(block_offset,
                        f"block of type 0x{block_type:08x} claims {total_length} bytes "
                        f"(more than the maximum {MAX_BUFFERED_BLOCK})")
                if written:
                    break   # streaming past it may raise: deliver what came first
                if self.skip_large_block(block_offset, total_length):
                    break   # truncated
                continue
            if self.buf_end - self.buf_pos < total_length:
                available = self.refill(total_length)
                if available < total_length:
                    self._mark_truncated("block", available, total_length, block_offset)
                    break
                block = self.buf + self.buf_pos
            trailing_length = load_u32(block + total_length - 4, self.swapped)
            if trailing_length != total_length:
                if written:
                    break
                raise self._corrupt(block_offset,
                    f"block of type 0x{block_type:08x} starts with length {total_length} "
                    f"but ends with length {trailing_length}")

            if (block_type == PCAPNG_ENHANCED_PACKET or block_type == PCAPNG_OBSOLETE_PACKET
                    or block_type == PCAPNG_SIMPLE_PACKET):
                if block_type == PCAPNG_SIMPLE_PACKET:
                    interface_id = 0
                    data_start = 12
                    if total_length < 16:
                        if written:
                            break
                        raise self._corrupt(block_offset,
                            f"simple packet block of {total_length} bytes is shorter than its header")
                else:
                    if total_length < 32:
                        if written:
                            break
                        raise self._corrupt(block_offset,
                            f"packet block of {total_length} bytes is shorter than its header")
                    if block_type == PCAPNG_ENHANCED_PACKET:
                        interface_id = load_u32(block + 8, self.swapped)
                    else:
                        interface_id = load_u16(block + 8, self.swapped)
                    data_start = 28
                if interface_id >= self.interface_count:
                    if written:
                        break
                    raise self._corrupt(block_offset,
                        f"record {self.records_read + 1} refers to interface {interface_id} "
                        f"but its section defines {self.interface_count}")
                interface = &self.interfaces[interface_id]
                payload_room = total_length - data_start - 4
                if block_type == PCAPNG_SIMPLE_PACKET:
                    wirelen = load_u32(block + 8, self.swapped)
                    caplen = wirelen if wirelen < payload_room else payload_room
                    if interface.snaplen and caplen > interface.snaplen:
                        caplen = interface.snaplen
                    ts_ns = self.last_ts_ns
                else:
                    caplen = load_u32(block + 20, self.swapped)
                    wirelen = load_u32(block + 24, self.swapped)
                    if caplen > interface.max_caplen or caplen > payload_room:
                        if written:
                            break
                        raise self._corrupt(block_offset,
                            f"record {self.records_read + 1} claims {caplen} captured bytes "
                            f"(its block has room for {payload_room}, "
                            f"the maximum is {interface.max_caplen})")
                    ts_units = ((<uint64_t>load_u32(block + 12, self.swapped) << 32)
                                | load_u32(block + 16, self.swapped))
                    ts_ns = interface_ts_to_ns(interface, ts_units)
                elide = self.elide_test != NULL and self.elide_test(
                    self.elide_ctx, block + data_start, caplen,
                    caplen if caplen > wirelen else wirelen, interface.linktype)
                rec = self.reserve_for(ring, caplen, block + data_start, elide)
                if rec == NULL:
                    if ring.policy == OVERFLOW_WAIT and caplen <= ring.arena_bytes:
                        break   # ring full: this block stays first in line
                    self.records_dropped += 1
                else:
                    if caplen > wirelen:
                        self.caplen_exceeds_wirelen += 1
                        wirelen = caplen
                    rec.ts_ns = ts_ns
                    rec.wirelen = wirelen
                    rec.linktype = interface.linktype
                    rec.iface = interface_id
                    if elide:
                        rec.elided = caplen
                        self.records_elided += 1
                    ring.commit()
                    written += 1
                self.last_ts_ns = ts_ns
                self.records_read += 1
                self.bytes_read += caplen
            elif block_type == PCAPNG_SECTION_HEADER:
                problem = self.read_section_header(block, total_length)
                if problem is not None:
                    if written:
                        break
                    raise self._corrupt(block_offset, problem)
            elif block_type == PCAPNG_INTERFACE_DESCRIPTION:
                problem = self.read_interface_description(block, total_length)
                if problem is not None:
                    if written:
                        break
                    raise self._corrupt(block_offset, problem)
            else:
                self.blocks_skipped += 1
            self.buf_pos += total_length
        return written

    cdef int skip_large_block(self, uint64_t block_offset, uint32_t total_length) except -1:
        """Stream past a block too large to buffer.  Returns 1 if the file ends inside it."""
        cdef uint64_t remaining = total_length - 4
        cdef Py_ssize_t available
        cdef size_t step
        while remaining:
            available = self.refill(1)
            if available == 0:
                self._mark_truncated("block", total_length - 4 - remaining, total_length,
                                     block_offset)
                return 1
            step = available if <uint64_t>available < remaining else remaining
            self.buf_pos += step
            remaining -= step
        available = self.refill(4)
        if available < 4:
            self._mark_truncated("block", total_length - 4 + available, total_length,
                                 block_offset)
            return 1
        if load_u32(self.buf + self.buf_pos, self.swapped) != total_length:
            raise self._corrupt(block_offset,
                f"block of {total_length} bytes does not end with its length")
        self.buf_pos += 4
        self.blocks_skipped += 1
        return 0

    cdef str read_section_header(self, const uint8_t* block, uint32_t total_length):
        """A new section: its own byte order (already set) and no interfaces yet.
        Returns None, or what is wrong with the block."""
        cdef uint16_t major
        if total_length < PCAPNG_MIN_SECTION_HEADER_BYTES:
            return f"section header block of only {total_length} bytes"
        major = load_u16(block + 12, self.swapped)
        if major != 1:
            return (
                f"unsupported pcapng version {major}.{load_u16(block + 14, self.swapped)} "
                "(this reader understands version 1)")
        self.interface_count = 0
        self.sections += 1
        return None

    cdef str read_interface_description(self, const uint8_t* block, uint32_t total_length):
        """Append an interface to the current section.  Returns None, or what is
        wrong with the block."""
        cdef PcapngInterface* interface
        cdef PcapngInterface* grown
        cdef uint32_t options_end = total_length - 4
        cdef uint32_t cursor = 16
        cdef uint16_t code, length
        cdef uint8_t resolution
        cdef int64_t offset_seconds
        cdef int power
        if total_length < 20:
            return f"interface description block of only {total_length} bytes"
        if self.interface_count == self.interface_capacity:
            grown = <PcapngInterface*>realloc(
                self.interfaces, (self.interface_capacity * 2 + 4) * sizeof(PcapngInterface))
            if grown == NULL:
                raise MemoryError()
            self.interfaces = grown
            self.interface_capacity = self.interface_capacity * 2 + 4
        interface = &self.interfaces[self.interface_count]
        interface.linktype = load_u16(block + 8, self.swapped)
        interface.snaplen = load_u32(block + 12, self.swapped)
        interface.max_caplen = max_caplen_for_snaplen(interface.snaplen)
        interface.ts_power_of_two = False
        interface.ts_exponent = 6           # default resolution: microseconds
        interface.ts_offset_ns = 0
        while cursor + 4 <= options_end:
            code = load_u16(block + cursor, self.swapped)
            length = load_u16(block + cursor + 2, self.swapped)
            if code == OPTION_END:
                break
            if cursor + 4 + length > options_end:
                return (
                    f"interface description option {code} of {length} bytes "
                    "runs past the end of its block")
            if code == OPTION_IF_TSRESOL and length >= 1:
                resolution = block[cursor + 4]
                interface.ts_power_of_two = (resolution & 0x80) != 0
                interface.ts_exponent = resolution & 0x7F
            elif code == OPTION_IF_TSOFFSET and length >= 8:
                if self.swapped:
                    offset_seconds = <int64_t>((<uint64_t>load_u32(block + cursor + 4, True) << 32)
                                               | load_u32(block + cursor + 8, True))
                else:
                    memcpy(&offset_seconds, block + cursor + 4, 8)
                interface.ts_offset_ns = offset_seconds * NANOSECONDS
            cursor += 4 + padded_to_32_bits(length)
        if not interface.ts_power_of_two:
            if interface.ts_exponent > 18:
                return (
                    f"interface {self.interface_count} has an unsupported timestamp "
                    f"resolution of 10^-{interface.ts_exponent} s")
            interface.ts_multiplier = 1
            interface.ts_divisor = 1
            if interface.ts_exponent <= 9:
                for power in range(9 - interface.ts_exponent):
                    interface.ts_multiplier *= 10
            else:
                for power in range(interface.ts_exponent - 9):
                    interface.ts_divisor *= 10
        self.interface_count += 1
        return None

    # ------------------------------------------------------ Python-side API

    def fill_ring(self, Ring ring, int max_records=4096):
        """fill() for Python callers: records written into `ring` (0 with eof at the end)."""
        return self.fill(ring, max_records)

    def read_all(self):
        """Yield (ts_ns, caplen, wirelen, linktype, iface, bytes) for every record.
        For tests and tools, not the hot path."""
        cdef Ring ring = Ring(4096, 2 * MAX_BUFFERED_BLOCK, "wait")
        while True:
            self.fill(ring, 4096)
            while True:
                record = ring.read()
                if record is None:
                    break
                yield record[1:]
            ring.ack(ring.processed_index)
            if self.eof:
                return

    def count_records(self):
        """Fill a ring and let a stand-in engine process and acknowledge every
        record, in compiled code: the cost of the source alone (for benchmarks)."""
        cdef Ring ring = Ring(65536, 64 * 1024 * 1024, "wait")
        cdef uint64_t count = 0
        cdef int written
        while not self.eof:
            written = self.fill(ring, 65536)
            while ring.next_unprocessed() != NULL:
                ring.mark_processed()
            ring.acknowledge(ring.processed_index)
            count += written
        return count

    @property
    def interfaces_in_section(self):
        """(linktype, snaplen) of each interface of the current pcapng section."""
        return [(self.interfaces[i].linktype, self.interfaces[i].snaplen)
                for i in range(self.interface_count)]

    def stats(self):
        return {
            "path": self.path,
            "format": self.format,
            "records_read": self.records_read,
            "bytes_read": self.bytes_read,
            "records_dropped": self.records_dropped,
            "caplen_exceeds_wirelen": self.caplen_exceeds_wirelen,
            "sections": self.sections,
            "blocks_skipped": self.blocks_skipped,
            "truncated": self.truncated,
            "eof": self.eof,
        }

    def __repr__(self):
        return f"<PcapFileSource {self.path!r} {self.format} records_read={self.records_read}>"
