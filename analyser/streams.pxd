# Declarations of per-side stream reassembly for analysed flows (see streams.pyx).
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from ringbuf.ring cimport Ring

cdef enum:
    SEG_RING = 1      # bytes live in a retained (pinned) ring record
    SEG_OWNED = 2     # bytes copied out to the heap
    SEG_GAP = 4       # no bytes: a hole of `length` bytes

cdef enum:
    MODE_STREAM = 0   # reassemble and deliver to the analyser
    MODE_BULK = 1     # count only: bytes are skipped in compiled code
    MODE_OFF = 2      # reassembly off (released): nothing kept, nothing counted here

# Read requests and their results: also the Python runtime's constants
# (analyser/runtime.py imports them from analyser.streams).
cpdef enum:
    WANT_NONE = 0
    WANT_BYTES = 1    # exactly n bytes
    WANT_LINE = 2     # up to and including b"\n", at most n bytes
    WANT_SOME = 3     # at least one byte, at most n
    WANT_PEEK = 4     # like SOME, but consume nothing; met when more has arrived

cpdef enum:
    SIDE_ORIG = 0
    SIDE_RESP = 1
    SIDE_ANY = 2      # want_side: whichever side has something first

# What a satisfied request delivers (the `code` of a result tuple).
cpdef enum:
    R_DATA = 0
    R_GAP = 1
    R_END = 2

cdef struct Segment:
    uint64_t seq          # stream offset of the first byte (first data byte = 1)
    uint64_t length       # 64-bit: a gap may be larger than 4 GiB
    uint32_t kind         # SEG_*
    uint64_t record       # ring record index (SEG_RING)
    const uint8_t* data   # first byte (SEG_RING: in the arena; SEG_OWNED: heap)
    uint8_t* owned        # SEG_OWNED: the heap block to free

cdef struct SideStream:
    uint8_t mode
    uint8_t ended         # FIN or RST seen: nothing after eof_seq
    uint64_t eof_seq
    uint64_t read_seq     # the next byte the analyser gets
    uint64_t next_seq     # the end of the contiguous data queued
    uint64_t skip         # bytes still to discard at read_seq without waking
    Segment* q            # contiguous queue (circular): read_seq .. next_seq
    uint32_t q_head
    uint32_t q_len
    uint32_t q_cap
    Segment* ooo          # above a hole, sorted by seq, not overlapping
    uint32_t ooo_len
    uint32_t ooo_cap
    uint64_t queued_bytes # data bytes in q and ooo (gaps excluded)
    uint64_t owned_bytes  # of which copied out to the heap
    uint32_t line_scanned # bytes at the front of q already searched for b"\n"
    uint64_t peeked       # contiguous bytes the last peek saw
    # counters
    uint64_t delivered_bytes
    uint64_t skipped_bytes
    uint64_t gap_bytes
    uint64_t overlap_bytes
    uint64_t overlap_conflicts
    uint64_t ooo_segments
    uint64_t copied_out_bytes
    uint64_t overflow_bytes

cdef struct StreamPair:
    SideStream side[2]    # [0] originator, [1] responder
    int32_t slot          # the analyser's slot in the Python runtime
    uint8_t want
    uint8_t want_side     # 0, 1 or SIDE_ANY
    uint32_t want_n
    uint64_t wakeups
    StreamPair* prev      # all live pairs, for copy-out under ring pressure
    StreamPair* next

cdef class StreamReader:
    cpdef ready(self, int32_t slot, int code, int side, object payload, uint64_t extra)


cdef class Streams:
    cdef Ring ring
    cdef StreamPair* live
    cdef StreamPair** by_slot
    cdef int32_t slot_capacity
    cdef readonly uint64_t max_side_bytes     # buffered per side before data becomes a gap
    cdef readonly uint64_t max_owned_bytes    # copied-out bytes per side before giving up
    cdef readonly uint64_t max_owned_total    # heap bytes of all streams before giving up
    cdef readonly uint64_t owned_now          # heap bytes held now (all streams)
    cdef readonly uint64_t owned_peak
    cdef readonly uint32_t max_ooo_segments
    cdef object ready                         # Python callable(slot, code, side, payload, extra),
    cdef StreamReader reader                  # or a StreamReader (its ready(): a C call)
    cdef object on_event                      # Python callable(kind, slot, side, a, b) or None
    cdef object on_error                      # Python callable(where, exception) or None
    cdef readonly uint64_t errors             # exceptions caught delivering data
    # totals (live pairs add theirs at release)
    cdef readonly uint64_t pairs_created
    cdef readonly uint64_t pairs_live
    cdef readonly uint64_t total_wakeups
    cdef readonly uint64_t copy_out_events
    cdef readonly uint64_t copied_out_bytes
    cdef readonly uint64_t given_up_bytes
    cdef readonly uint64_t overflow_bytes
    cdef readonly uint64_t overlap_conflicts
    cdef readonly uint64_t gap_bytes
    cdef readonly uint64_t skipped_bytes
    cdef readonly uint64_t delivered_bytes

    cdef StreamPair* create(self, int32_t slot) except NULL
    cdef void destroy(self, StreamPair* p) noexcept
    cdef void segment(self, StreamPair* p, int side, uint64_t seq, const uint8_t* data,
                      uint32_t length, bint in_ring, uint64_t record) noexcept
    cdef void gap_to(self, StreamPair* p, int side, uint64_t seq) noexcept
    cdef void end(self, StreamPair* p, int side, uint64_t eof_seq) noexcept
    cdef void finish(self, StreamPair* p) noexcept
    cdef void swap_sides(self, StreamPair* p) noexcept
    cdef int relieve(self, uint64_t below_record) noexcept
    # internals
    cdef bint push(self, SideStream* s, Segment* g) noexcept
    cdef void clear_side(self, SideStream* s) noexcept
    cdef void fill_hole(self, StreamPair* p, int side, uint64_t seq) noexcept
    cdef void merge_gaps(self, SideStream* s) noexcept
    cdef void segment_in_order(self, StreamPair* p, int side, uint64_t seq,
                               const uint8_t* data, uint32_t length, bint in_ring,
                               uint64_t record) noexcept
    cdef StreamPair* pair(self, int32_t slot) except NULL
    cpdef object request(self, int32_t slot, int side, int want, uint32_t n)
    cdef void append(self, SideStream* s, uint64_t seq, const uint8_t* data, uint64_t length,
                     uint32_t kind, uint64_t record) noexcept
    cdef void insert_ooo(self, StreamPair* p, int side, uint64_t seq, const uint8_t* data,
                         uint32_t length, bint in_ring, uint64_t record) noexcept
    cdef void pull_ooo(self, SideStream* s) noexcept
    cdef void compare_overlap(self, StreamPair* p, int side, uint64_t seq,
                              const uint8_t* data, uint32_t length) noexcept
    cdef void trim_front(self, SideStream* s, Segment* g, uint64_t n) noexcept
    cdef void drop_front(self, SideStream* s, uint64_t n) noexcept
    cdef void apply_skip(self, SideStream* s) noexcept
    cdef void free_segment(self, SideStream* s, Segment* g) noexcept
    cdef void check(self, StreamPair* p) noexcept
    cdef object try_side(self, StreamPair* p, int side)
    cdef object try_any(self, StreamPair* p)
    cdef uint64_t contiguous_data(self, SideStream* s) noexcept
    cdef bytes copy_out_bytes(self, SideStream* s, uint64_t n, bint consume=*)
