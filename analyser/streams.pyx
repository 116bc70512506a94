# cython: language_level=3
"""Per-side stream reassembly for analysed flows, in compiled code.

Role in the data flow: source -> ring -> decode -> flows -> **streams** ->
analysers -> sinks.  Only flows that an analyser reads get a `StreamPair`;
every other flow costs nothing here.

Rules:

1. In-order bytes are not copied: a queued segment points into its ring
   record, which stays *pinned* (retained) until the analyser has consumed
   it.  Bytes are copied exactly once, into the `bytes` object an analyser's
   read returns.
2. Overlaps keep the bytes that arrived first (policy FIRST, as mOS's default
   and Suricata's "first" policy).  Where both copies are still buffered they
   are compared, and differing bytes are counted and reported as an
   `overlap_differs` event: that is what evasion looks like.  Bytes already
   consumed cannot be compared (nothing of them is kept).
3. A hole is waited for until the peer acknowledges past it (or the
   out-of-order queue fills, or the flow ends); then it becomes a gap of known
   size in the stream, and the analyser's read raises `Gap`.  Holes inside a
   region the analyser skips are never reported: nobody wanted those bytes.
4. Skipping (`skip`, `read_and_skip`, bulk mode) discards bytes here, in C,
   without waking Python and without pinning anything.
5. Everything is bounded: bytes buffered per side (`max_side_bytes`, beyond
   which new data becomes a gap and is counted as overflow), out-of-order
   segments per side, bytes copied out of the ring per side
   (`max_owned_bytes`) and over all streams together (`max_owned_total`:
   without it, N sides whose analysers never read would hold N MiB).

Ring pressure: when the ring cannot take more records because pinned ones
hold it, `relieve()` copies the oldest pinned segments out to the heap (up to
`max_owned_bytes` per side and `max_owned_total` in all) or gives them up as
gaps; both are counted.

The Python runtime (analyser/runtime.py) registers what an analyser waits for
with `request()`; when data satisfies it, `ready(slot, code, side, payload,
extra)` is called with the result.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from libc.stdlib cimport malloc, free, realloc
from libc.string cimport memcpy, memcmp, memset, memchr
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING

from ringbuf.ring cimport Ring

cdef uint64_t SKIP_ALL = 0xffffffffffffffffULL

EVENT_OVERLAP_DIFFERS = "overlap_differs"
DEFAULT_MAX_OWNED_TOTAL = 128 << 20   # heap bytes all streams together may hold


cdef class StreamReader:
    """What the stream layer hands a met request to: the analyser runtime
    (analyser/runtime.py's Runtime extends it).  Given one instead of a
    plain callable, Streams calls its ready() in C, not through Python's
    call protocol: once per delivery, the most frequent call of a run."""

    cpdef ready(self, int32_t slot, int code, int side, object payload, uint64_t extra):
        raise NotImplementedError


cdef class Streams:
    """All stream pairs of one engine."""

    def __cinit__(self, Ring ring, ready, uint64_t max_side_bytes=4 << 20,
                  uint64_t max_owned_bytes=1 << 20, uint32_t max_ooo_segments=64,
                  on_event=None, on_error=None,
                  uint64_t max_owned_total=DEFAULT_MAX_OWNED_TOTAL):
        self.ring = ring
        if isinstance(ready, StreamReader):
            self.reader = ready
        else:
            self.ready = ready
        self.on_event = on_event
        self.on_error = on_error
        self.max_side_bytes = max_side_bytes
        self.max_owned_bytes = max_owned_bytes
        self.max_owned_total = max_owned_total
        self.max_ooo_segments = max_ooo_segments
        self.live = NULL
        self.slot_capacity = 0
        self.by_slot = NULL

    def __dealloc__(self):
        while self.live != NULL:
            self.destroy(self.live)
        free(self.by_slot)

    # -- life cycle ------------------------------------------------------------

    cdef StreamPair* create(self, int32_t slot) except NULL:
        cdef StreamPair* p = <StreamPair*>malloc(sizeof(StreamPair))
        cdef int i
        cdef int32_t cap
        cdef StreamPair** grown
        if p == NULL:
            raise MemoryError()
        memset(p, 0, sizeof(StreamPair))
        for i in range(2):
            p.side[i].read_seq = 1
            p.side[i].next_seq = 1
        p.slot = slot
        if slot >= self.slot_capacity:
            cap = max(64, self.slot_capacity * 2)
            while cap <= slot:
                cap *= 2
            grown = <StreamPair**>realloc(self.by_slot, cap * sizeof(StreamPair*))
            if grown == NULL:
                free(p)
                raise MemoryError()
            for i in range(self.slot_capacity, cap):
                grown[i] = NULL
            self.by_slot = grown
            self.slot_capacity = cap
        self.by_slot[slot] = p
        p.next = self.live
        if self.live != NULL:
            self.live.prev = p
        self.live = p
        self.pairs_created += 1
        self.pairs_live += 1
        return p

    cdef void destroy(self, StreamPair* p) noexcept:
        cdef int i
        for i in range(2):
            self.clear_side(&p.side[i])
            free(p.side[i].q)
            free(p.side[i].ooo)
        if p.prev != NULL:
            p.prev.next = p.next
        else:
            self.live = p.next
        if p.next != NULL:
            p.next.prev = p.prev
        if 0 <= p.slot < self.slot_capacity and self.by_slot[p.slot] == p:
            self.by_slot[p.slot] = NULL
        self.pairs_live -= 1
        free(p)

    cdef void clear_side(self, SideStream* s) noexcept:
        cdef uint32_t i
        for i in range(s.q_len):
            self.free_segment(s, &s.q[(s.q_head + i) % s.q_cap])
        for i in range(s.ooo_len):
            self.free_segment(s, &s.ooo[i])
        s.q_len = 0
        s.q_head = 0
        s.ooo_len = 0
        s.queued_bytes = 0
        self.owned_now -= s.owned_bytes         # (0 unless the books were off)
        s.owned_bytes = 0

    cdef void free_segment(self, SideStream* s, Segment* g) noexcept:
        if g.kind == SEG_RING:
            self.ring.unpin(g.record)
        elif g.kind == SEG_OWNED:
            free(g.owned)
            s.owned_bytes -= g.length
            self.owned_now -= g.length
        if g.kind != SEG_GAP:
            s.queued_bytes -= g.length
        g.kind = SEG_GAP

    cdef void swap_sides(self, StreamPair* p) noexcept:
        cdef SideStream t = p.side[0]
        p.side[0] = p.side[1]
        p.side[1] = t
        if p.want_side == 0:
            p.want_side = 1
        elif p.want_side == 1:
            p.want_side = 0

    # -- queue primitives ------------------------------------------------------

    cdef bint push(self, SideStream* s, Segment* g) noexcept:
        """Move an accounted descriptor (pinned or owned already) to the end of
        the contiguous queue; g.seq must be next_seq.  False if out of memory
        (the descriptor is then freed and its bytes become overflow)."""
        cdef Segment* grown
        cdef uint32_t i, cap
        if s.q_len == s.q_cap:
            cap = 16 if s.q_cap == 0 else s.q_cap * 2
            grown = <Segment*>malloc(cap * sizeof(Segment))
            if grown == NULL:
                s.overflow_bytes += g.length
                self.free_segment(s, g)
                return False
            for i in range(s.q_len):
                grown[i] = s.q[(s.q_head + i) % s.q_cap]
            free(s.q)
            s.q = grown
            s.q_head = 0
            s.q_cap = cap
        s.q[(s.q_head + s.q_len) % s.q_cap] = g[0]
        s.q_len += 1
        s.next_seq = g.seq + g.length
        return True

    cdef void append(self, SideStream* s, uint64_t seq, const uint8_t* data, uint64_t length,
                     uint32_t kind, uint64_t record) noexcept:
        """Queue new bytes (or a gap) at next_seq; pins ring bytes, counts them.
        A gap right after a gap extends it: a side nobody reads would
        otherwise keep a descriptor per lost segment for ever."""
        cdef Segment g
        cdef Segment* last
        if length == 0:
            return
        if kind == SEG_GAP and s.q_len:
            last = &s.q[(s.q_head + s.q_len - 1) % s.q_cap]
            if last.kind == SEG_GAP and last.seq + last.length == seq:
                last.length += length
                s.next_seq = seq + length
                return
        g.seq = seq
        g.length = length
        g.kind = kind
        g.record = record
        g.data = data
        g.owned = <uint8_t*>data if kind == SEG_OWNED else NULL
        if kind == SEG_RING:
            self.ring.pin(record)
        if kind != SEG_GAP:
            s.queued_bytes += length
        if kind == SEG_OWNED:
            s.owned_bytes += length
            self.owned_now += length
            if self.owned_now > self.owned_peak:
                self.owned_peak = self.owned_now
        if not self.push(s, &g):
            s.next_seq = seq + length       # the bytes are accounted as overflow

    cdef inline void trim_front(self, SideStream* s, Segment* g, uint64_t n) noexcept:
        """Forget the first n bytes of a segment (n < its length)."""
        if n == 0:
            return
        if g.kind != SEG_GAP:
            g.data += n
            s.queued_bytes -= n
            if g.kind == SEG_OWNED:
                s.owned_bytes -= n
                self.owned_now -= n
        g.seq += n
        g.length -= n

    cdef void drop_front(self, SideStream* s, uint64_t n) noexcept:
        """Discard n bytes at the read position (data or gap alike)."""
        cdef Segment* g
        cdef uint64_t take
        while n > 0 and s.q_len > 0:
            g = &s.q[s.q_head]
            take = n if n < g.length else g.length
            if take == g.length:        # (also drops an empty segment, should one exist)
                self.free_segment(s, g)
                s.q_head = (s.q_head + 1) % s.q_cap
                s.q_len -= 1
            else:
                self.trim_front(s, g, take)
            s.read_seq += take
            n -= take
        s.line_scanned = 0

    cdef void apply_skip(self, SideStream* s) noexcept:
        cdef uint64_t queued, n
        if s.skip == 0 or s.q_len == 0:
            return
        queued = s.next_seq - s.read_seq
        n = s.skip if s.skip < queued else queued
        self.drop_front(s, n)
        s.skipped_bytes += n
        self.skipped_bytes += n
        if s.skip != SKIP_ALL:
            s.skip -= n

    # -- data arriving -----------------------------------------------------------

    cdef void segment(self, StreamPair* p, int side, uint64_t seq, const uint8_t* data,
                      uint32_t length, bint in_ring, uint64_t record) noexcept:
        cdef SideStream* s = &p.side[side]
        cdef uint64_t end = seq + length
        cdef uint64_t cut
        if s.mode == MODE_OFF or length == 0:
            return
        if s.ended and seq >= s.eof_seq:
            return
        if end <= s.next_seq:
            self.compare_overlap(p, side, seq, data, length)     # a retransmission
            return
        if seq < s.next_seq:
            cut = s.next_seq - seq
            self.compare_overlap(p, side, seq, data, <uint32_t>cut)
            seq += cut
            data += cut
            length -= <uint32_t>cut
        if seq > s.next_seq:
            self.insert_ooo(p, side, seq, data, length, in_ring, record)
        else:
            self.segment_in_order(p, side, seq, data, length, in_ring, record)
        self.check(p)

    cdef void segment_in_order(self, StreamPair* p, int side, uint64_t seq,
                               const uint8_t* data, uint32_t length, bint in_ring,
                               uint64_t record) noexcept:
        """Queue bytes starting at next_seq.  Bytes that arrived earlier out of
        order win over these (FIRST)."""
        cdef SideStream* s = &p.side[side]
        cdef uint64_t cut, n, limit
        cdef Segment* o
        cdef uint8_t* copy
        if seq < s.next_seq:
            # The queue grew past seq meanwhile (a hole was just filled):
            # what overlaps is old.
            cut = s.next_seq - seq
            if cut >= length:
                self.compare_overlap(p, side, seq, data, length)
                return
            self.compare_overlap(p, side, seq, data, <uint32_t>cut)
            seq += cut
            data += cut
            length -= <uint32_t>cut
        while length > 0:
            if seq < s.next_seq:
                # pull_ooo() below moved several out-of-order segments into
                # the queue: they came first and cover these bytes.
                n = s.next_seq - seq
                if n > length:
                    n = length
                self.compare_overlap(p, side, seq, data, <uint32_t>n)
                seq += n
                data += n
                length -= <uint32_t>n
                continue
            limit = s.ooo[0].seq if s.ooo_len else SKIP_ALL
            n = length if seq + length <= limit else limit - seq
            if n > 0:
                if s.skip and s.q_len == 0:
                    # Being skipped: count and forget, pin nothing.
                    cut = n if n < s.skip else s.skip
                    s.read_seq += cut
                    s.next_seq += cut
                    s.skipped_bytes += cut
                    self.skipped_bytes += cut
                    if s.skip != SKIP_ALL:
                        s.skip -= cut
                    seq += cut
                    data += cut
                    length -= <uint32_t>cut
                    n -= cut
                if n > 0:
                    if s.queued_bytes + n > self.max_side_bytes:
                        # Nobody reads this side fast enough: a gap, counted.
                        s.overflow_bytes += n
                        self.overflow_bytes += n
                        self.append(s, seq, NULL, <uint32_t>n, SEG_GAP, 0)
                    elif in_ring:
                        self.append(s, seq, data, <uint32_t>n, SEG_RING, record)
                    else:
                        copy = NULL
                        if self.owned_now + n <= self.max_owned_total:
                            copy = <uint8_t*>malloc(n)
                        if copy == NULL:
                            self.given_up_bytes += n
                            self.append(s, seq, NULL, <uint32_t>n, SEG_GAP, 0)
                        else:
                            memcpy(copy, data, n)
                            self.append(s, seq, copy, <uint32_t>n, SEG_OWNED, 0)
                    seq += n
                    data += n
                    length -= <uint32_t>n
            if length > 0 and s.ooo_len and seq >= s.ooo[0].seq:
                # The new bytes run into a segment that came first: compare,
                # keep the old ones, go on after it.
                o = &s.ooo[0]
                n = o.seq + o.length - seq
                if n > length:
                    n = length
                self.compare_overlap(p, side, seq, data, <uint32_t>n)
                seq += n
                data += n
                length -= <uint32_t>n
            self.pull_ooo(s)
        self.pull_ooo(s)
        self.apply_skip(s)

    cdef void pull_ooo(self, SideStream* s) noexcept:
        """Move out-of-order segments that became contiguous into the queue."""
        cdef Segment g
        cdef uint64_t cut
        while s.ooo_len and s.ooo[0].seq <= s.next_seq:
            g = s.ooo[0]
            memcpy(&s.ooo[0], &s.ooo[1], (s.ooo_len - 1) * sizeof(Segment))
            s.ooo_len -= 1
            if g.seq + g.length <= s.next_seq:
                self.free_segment(s, &g)
                continue
            self.trim_front(s, &g, s.next_seq - g.seq)
            self.push(s, &g)

    cdef void insert_ooo(self, StreamPair* p, int side, uint64_t seq, const uint8_t* data,
                         uint32_t length, bint in_ring, uint64_t record) noexcept:
        """Keep a segment above a hole; overlapping parts of older ones win."""
        cdef SideStream* s = &p.side[side]
        cdef uint32_t i = 0, j
        cdef uint64_t end, piece_end, skip_end
        cdef Segment* g
        cdef Segment* grown
        cdef uint32_t kind
        cdef uint8_t* copy
        if s.ooo_len >= self.max_ooo_segments or s.queued_bytes + length > self.max_side_bytes:
            # Cannot hold it: the hole below it becomes a gap now.
            self.fill_hole(p, side, seq)
            self.segment_in_order(p, side, seq, data, length, in_ring, record)
            return
        s.ooo_segments += 1
        # Bytes that fall inside a pending skip need no content.
        skip_end = s.read_seq + s.skip if (s.q_len == 0 and s.skip) else 0
        if s.skip == SKIP_ALL:
            skip_end = SKIP_ALL
        while length > 0:
            while i < s.ooo_len and s.ooo[i].seq + s.ooo[i].length <= seq:
                i += 1
            if i < s.ooo_len and s.ooo[i].seq <= seq:
                # Starts inside an older segment: compare, step past it.
                g = &s.ooo[i]
                end = g.seq + g.length
                piece_end = end if end < seq + length else seq + length
                self.compare_overlap(p, side, seq, data, <uint32_t>(piece_end - seq))
                data += piece_end - seq
                length -= <uint32_t>(piece_end - seq)
                seq = piece_end
                continue
            piece_end = seq + length
            if i < s.ooo_len and s.ooo[i].seq < piece_end:
                piece_end = s.ooo[i].seq
            if s.ooo_len == s.ooo_cap:
                grown = <Segment*>realloc(s.ooo, (s.ooo_cap * 2 if s.ooo_cap else 8) * sizeof(Segment))
                if grown == NULL:
                    return
                s.ooo = grown
                s.ooo_cap = s.ooo_cap * 2 if s.ooo_cap else 8
            j = s.ooo_len
            while j > i:
                s.ooo[j] = s.ooo[j - 1]
                j -= 1
            g = &s.ooo[i]
            g.seq = seq
            g.length = <uint32_t>(piece_end - seq)
            g.record = record
            g.owned = NULL
            if piece_end <= skip_end:
                g.kind = SEG_GAP
                g.data = NULL
            elif in_ring:
                g.kind = SEG_RING
                g.data = data
                self.ring.pin(record)
                s.queued_bytes += g.length
            else:
                copy = NULL
                if self.owned_now + g.length <= self.max_owned_total:
                    copy = <uint8_t*>malloc(g.length)
                if copy == NULL:
                    g.kind = SEG_GAP
                    g.data = NULL
                    self.given_up_bytes += g.length
                else:
                    memcpy(copy, data, g.length)
                    g.kind = SEG_OWNED
                    g.data = copy
                    g.owned = copy
                    s.owned_bytes += g.length
                    s.queued_bytes += g.length
                    self.owned_now += g.length
                    if self.owned_now > self.owned_peak:
                        self.owned_peak = self.owned_now
            s.ooo_len += 1
            i += 1
            data += piece_end - seq
            length -= <uint32_t>(piece_end - seq)
            seq = piece_end

    cdef void compare_overlap(self, StreamPair* p, int side, uint64_t seq,
                              const uint8_t* data, uint32_t length) noexcept:
        """Compare re-sent bytes with the copy still buffered, if any."""
        cdef SideStream* s = &p.side[side]
        cdef uint32_t i
        cdef Segment* g
        cdef uint64_t lo, hi
        cdef bint differs = False
        cdef uint64_t overlapped = 0
        for i in range(s.q_len + s.ooo_len):
            g = &s.q[(s.q_head + i) % s.q_cap] if i < s.q_len else &s.ooo[i - s.q_len]
            if g.kind == SEG_GAP:
                continue
            lo = seq if seq > g.seq else g.seq
            hi = seq + length
            if g.seq + g.length < hi:
                hi = g.seq + g.length
            if lo >= hi:
                continue
            overlapped += hi - lo
            if memcmp(data + (lo - seq), g.data + (lo - g.seq), hi - lo) != 0:
                differs = True
        s.overlap_bytes += overlapped
        if differs:
            s.overlap_conflicts += 1
            self.overlap_conflicts += 1
            if self.on_event is not None:
                self.on_event(EVENT_OVERLAP_DIFFERS, p.slot, side, seq, length)

    # -- holes, ends, pressure ----------------------------------------------------

    cdef void gap_to(self, StreamPair* p, int side, uint64_t seq) noexcept:
        """Everything below seq that has not arrived never will: make it a gap."""
        if seq <= p.side[side].next_seq or p.side[side].mode == MODE_OFF:
            return
        self.fill_hole(p, side, seq)
        self.check(p)

    cdef void fill_hole(self, StreamPair* p, int side, uint64_t seq) noexcept:
        cdef SideStream* s = &p.side[side]
        if s.mode == MODE_OFF or seq <= s.next_seq:
            return
        cdef uint64_t upto, n
        while s.next_seq < seq:
            upto = seq
            if s.ooo_len and s.ooo[0].seq < seq:
                upto = s.ooo[0].seq
            if upto > s.next_seq:
                n = upto - s.next_seq
                s.gap_bytes += n
                self.gap_bytes += n
                self.append(s, s.next_seq, NULL, n, SEG_GAP, 0)
            self.pull_ooo(s)
        self.pull_ooo(s)
        self.apply_skip(s)

    cdef void end(self, StreamPair* p, int side, uint64_t eof_seq) noexcept:
        cdef SideStream* s = &p.side[side]
        if s.ended:
            return
        s.ended = 1
        s.eof_seq = eof_seq
        self.check(p)

    cdef void finish(self, StreamPair* p) noexcept:
        """The connection is over: holes become gaps, both sides end."""
        cdef int i
        cdef SideStream* s
        for i in range(2):
            s = &p.side[i]
            if s.ooo_len:
                self.fill_hole(p, i, s.ooo[s.ooo_len - 1].seq + s.ooo[s.ooo_len - 1].length)
            if s.ended and s.eof_seq > s.next_seq:
                self.fill_hole(p, i, s.eof_seq)
            s.ended = 1
            s.eof_seq = s.next_seq
        self.check(p)

    cdef void merge_gaps(self, SideStream* s) noexcept:
        """Join neighbouring gaps of the queue into one descriptor."""
        cdef uint32_t i, kept = 0
        cdef Segment* g
        cdef Segment* prev
        for i in range(s.q_len):
            g = &s.q[(s.q_head + i) % s.q_cap]
            if kept:
                prev = &s.q[(s.q_head + kept - 1) % s.q_cap]
                if prev.kind == SEG_GAP and g.kind == SEG_GAP and prev.seq + prev.length == g.seq:
                    prev.length += g.length
                    continue
            if kept != i:
                s.q[(s.q_head + kept) % s.q_cap] = g[0]
            kept += 1
        s.q_len = kept

    cdef int relieve(self, uint64_t below_record) noexcept:
        """Ring pressure: unpin every segment in records below `below_record`,
        copying its bytes out (within max_owned_bytes per side) or giving
        them up as a gap.  Returns how many segments were unpinned."""
        cdef StreamPair* p = self.live
        cdef SideStream* s
        cdef Segment* g
        cdef uint32_t i
        cdef int side, count = 0, gave_up
        cdef uint8_t* copy
        while p != NULL:
            for side in range(2):
                s = &p.side[side]
                gave_up = 0
                for i in range(s.q_len + s.ooo_len):
                    g = &s.q[(s.q_head + i) % s.q_cap] if i < s.q_len else &s.ooo[i - s.q_len]
                    if g.kind != SEG_RING or g.record >= below_record:
                        continue
                    copy = NULL
                    if (s.owned_bytes + g.length <= self.max_owned_bytes
                            and self.owned_now + g.length <= self.max_owned_total):
                        copy = <uint8_t*>malloc(g.length)
                    self.ring.unpin(g.record)
                    count += 1
                    if copy != NULL:
                        memcpy(copy, g.data, g.length)
                        g.kind = SEG_OWNED
                        g.data = copy
                        g.owned = copy
                        s.owned_bytes += g.length
                        s.copied_out_bytes += g.length
                        self.copied_out_bytes += g.length
                        self.owned_now += g.length
                        if self.owned_now > self.owned_peak:
                            self.owned_peak = self.owned_now
                    else:
                        g.kind = SEG_GAP
                        g.data = NULL
                        s.queued_bytes -= g.length
                        self.given_up_bytes += g.length
                        s.gap_bytes += g.length
                        self.gap_bytes += g.length
                        gave_up += 1
                if gave_up:
                    self.merge_gaps(s)
            p = p.next
        if count:
            self.copy_out_events += 1
        return count

    # -- delivering to the analyser ---------------------------------------------

    cdef uint64_t contiguous_data(self, SideStream* s) noexcept:
        """Data bytes at the read position before the first gap."""
        cdef uint64_t n = 0
        cdef uint32_t i
        cdef Segment* g
        for i in range(s.q_len):
            g = &s.q[(s.q_head + i) % s.q_cap]
            if g.kind == SEG_GAP:
                break
            n += g.length
        return n

    cdef bytes copy_out_bytes(self, SideStream* s, uint64_t n, bint consume=True):
        cdef bytes out = PyBytes_FromStringAndSize(NULL, n)
        cdef uint8_t* dst = <uint8_t*>PyBytes_AS_STRING(out)
        cdef uint64_t done = 0, take
        cdef uint32_t i = 0
        cdef Segment* g
        while done < n:
            g = &s.q[(s.q_head + i) % s.q_cap]
            take = n - done
            if take > g.length:
                take = g.length
            memcpy(dst + done, g.data, take)
            done += take
            i += 1
        if not consume:
            return out
        self.drop_front(s, n)
        s.delivered_bytes += n
        self.delivered_bytes += n
        return out

    cdef object try_side(self, StreamPair* p, int side):
        """The result the pending request gets from this side, or None."""
        cdef SideStream* s = &p.side[side]
        cdef uint64_t avail, n, gap
        cdef uint32_t i
        cdef Segment* g
        cdef const uint8_t* hit
        cdef uint64_t scanned, chunk
        cdef bint at_end, gap_follows
        if s.mode != MODE_STREAM:
            return (R_END, side, b"", 0)
        self.apply_skip(s)
        at_end = s.ended and s.ooo_len == 0 and s.q_len == 0
        if s.skip:
            return (R_END, side, b"", 0) if at_end else None
        if p.want == WANT_PEEK:
            avail = self.contiguous_data(s)
            if avail > s.peeked:
                s.peeked = avail
                return (R_DATA, side, self.copy_out_bytes(s, min(avail, p.want_n), False), 0)
            if s.q_len and s.q[s.q_head].kind == SEG_GAP:
                return (R_GAP, side, b"", s.q[s.q_head].length)
            if s.ended and s.ooo_len == 0 and s.next_seq >= s.eof_seq:
                return (R_END, side, b"", 0)
            return None
        if s.q_len and s.q[s.q_head].kind == SEG_GAP:
            gap = s.q[s.q_head].length
            self.drop_front(s, gap)
            return (R_GAP, side, b"", gap)
        avail = self.contiguous_data(s)
        gap_follows = avail < s.next_seq - s.read_seq
        n = 0
        if p.want == WANT_BYTES:
            if avail >= p.want_n:
                return (R_DATA, side, self.copy_out_bytes(s, p.want_n), 0)
        elif p.want == WANT_LINE:
            # Search only what was not searched before (h11's trick).
            scanned = s.line_scanned
            i = 0
            chunk = 0
            while i < s.q_len and scanned < avail and scanned < p.want_n:
                g = &s.q[(s.q_head + i) % s.q_cap]
                if chunk + g.length <= scanned:
                    chunk += g.length
                    i += 1
                    continue
                hit = <const uint8_t*>memchr(g.data + (scanned - chunk), 10,
                                             min(g.length - (scanned - chunk),
                                                 p.want_n - scanned))
                if hit != NULL:
                    return (R_DATA, side,
                            self.copy_out_bytes(s, chunk + (hit - g.data) + 1), 0)
                scanned = min(chunk + g.length, <uint64_t>p.want_n)
                chunk += g.length
                i += 1
            s.line_scanned = <uint32_t>scanned
            if avail >= p.want_n:
                return (R_DATA, side, self.copy_out_bytes(s, p.want_n), 0)
        elif p.want == WANT_SOME:
            if avail:
                return (R_DATA, side, self.copy_out_bytes(s, min(avail, p.want_n)), 0)
        if gap_follows and avail:
            # The request cannot be met before a gap: deliver what there is
            # with the gap.
            data = self.copy_out_bytes(s, avail)
            gap = s.q[s.q_head].length
            self.drop_front(s, gap)
            return (R_GAP, side, data, gap)
        if s.ended and s.ooo_len == 0 and not gap_follows and s.next_seq >= s.eof_seq:
            return (R_END, side, self.copy_out_bytes(s, avail) if avail else b"", 0)
        return None

    cdef object try_any(self, StreamPair* p):
        """Either side: data (or a gap) from whichever has it; the end only
        when both sides have ended."""
        cdef object r0 = self.try_side(p, 0)
        cdef object r1
        if r0 is not None and r0[0] != R_END:
            return r0
        r1 = self.try_side(p, 1)
        if r1 is not None and r1[0] != R_END:
            return r1
        if r0 is not None and r1 is not None:
            return r0
        return None

    cdef void check(self, StreamPair* p) noexcept:
        """Wake the analyser if what it waits for is there."""
        cdef object result = None
        if p.want == WANT_NONE:
            return
        try:
            if p.want_side == SIDE_ANY:
                result = self.try_any(p)
            else:
                result = self.try_side(p, p.want_side)
            if result is None:
                return
            p.want = WANT_NONE
            p.wakeups += 1
            self.total_wakeups += 1
            if self.reader is not None:
                self.reader.ready(p.slot, result[0], result[1], result[2], result[3])
            else:
                self.ready(p.slot, *result)
        except BaseException as exc:      # the runtime isolates analyser errors itself
            self.errors += 1
            if self.on_error is not None:
                self.on_error("delivering stream data", exc)

    # -- Python API for the runtime -------------------------------------------------

    cdef StreamPair* pair(self, int32_t slot) except NULL:
        if slot < 0 or slot >= self.slot_capacity or self.by_slot[slot] == NULL:
            raise KeyError("no stream for analyser slot %d" % slot)
        return self.by_slot[slot]

    cpdef object request(self, int32_t slot, int side, int want, uint32_t n):
        """Ask for data: returns (code, side, payload, extra) at once when it is
        there, else registers the request and returns None (the result comes
        later through `ready`)."""
        cdef StreamPair* p = self.pair(slot)
        cdef object result
        if want not in (WANT_BYTES, WANT_LINE, WANT_SOME, WANT_PEEK) or side not in (0, 1, SIDE_ANY):
            raise ValueError("bad request")
        p.want = want
        p.want_side = side
        p.want_n = n
        if side == SIDE_ANY:
            result = self.try_any(p)
        else:
            result = self.try_side(p, side)
        if result is not None:
            p.want = WANT_NONE
        return result

    def cancel(self, int32_t slot):
        self.pair(slot).want = WANT_NONE

    def skip(self, int32_t slot, int side, uint64_t n):
        """Discard the next n bytes of a side in compiled code."""
        cdef StreamPair* p = self.pair(slot)
        cdef SideStream* s = &p.side[side]
        if s.skip != SKIP_ALL:
            s.skip += n
        self.apply_skip(s)

    def pending_skip(self, int32_t slot, int side):
        """Bytes a side still has to discard (skip, read_and_skip): after the
        side's end, how far short of a skipped span the stream ended.  0 in
        bulk mode."""
        cdef SideStream* s = &self.pair(slot).side[side]
        return 0 if s.skip == SKIP_ALL else s.skip

    def bulk(self, int32_t slot, int side):
        """From now on only count this side: every byte is skipped in C."""
        cdef StreamPair* p = self.pair(slot)
        cdef SideStream* s = &p.side[side]
        s.mode = MODE_BULK
        s.skip = SKIP_ALL
        self.apply_skip(s)
        # Out-of-order bytes are not needed either.
        for i in range(s.ooo_len):
            self.free_segment(s, &s.ooo[i])

    def release(self, int32_t slot, int side):
        """Reassembly off for this side: buffers freed, nothing kept from now on."""
        cdef StreamPair* p = self.pair(slot)
        cdef SideStream* s = &p.side[side]
        s.mode = MODE_OFF
        self.clear_side(s)

    def side_stats(self, int32_t slot, int side):
        cdef StreamPair* p = self.pair(slot)
        cdef SideStream* s = &p.side[side]
        return {"read_seq": s.read_seq, "next_seq": s.next_seq, "queued_bytes": s.queued_bytes,
                "owned_bytes": s.owned_bytes, "ooo_segments_held": s.ooo_len,
                "delivered_bytes": s.delivered_bytes, "skipped_bytes": s.skipped_bytes,
                "gap_bytes": s.gap_bytes, "overlap_bytes": s.overlap_bytes,
                "overlap_conflicts": s.overlap_conflicts, "ooo_segments": s.ooo_segments,
                "copied_out_bytes": s.copied_out_bytes, "overflow_bytes": s.overflow_bytes,
                "ended": bool(s.ended), "mode": ("stream", "bulk", "off")[s.mode]}

    def segments_held(self):
        """Descriptors held by all live pairs (queued and out of order)."""
        cdef StreamPair* p = self.live
        cdef uint64_t n = 0
        while p != NULL:
            n += p.side[0].q_len + p.side[0].ooo_len + p.side[1].q_len + p.side[1].ooo_len
            p = p.next
        return n

    def wakeups(self, int32_t slot):
        return self.pair(slot).wakeups

    def stats(self):
        return {"stream_pairs": self.pairs_created, "stream_pairs_live": self.pairs_live,
                "analyser_wakeups": self.total_wakeups,
                "stream_delivered_bytes": self.delivered_bytes,
                "stream_skipped_bytes": self.skipped_bytes,
                "stream_gap_bytes": self.gap_bytes,
                "stream_overflow_bytes": self.overflow_bytes,
                "stream_overlap_conflicts": self.overlap_conflicts,
                "ring_copy_out_events": self.copy_out_events,
                "ring_copied_out_bytes": self.copied_out_bytes,
                "ring_given_up_bytes": self.given_up_bytes,
                "stream_owned_bytes": self.owned_now,
                "stream_owned_bytes_peak": self.owned_peak,
                "stream_owned_bytes_limit": self.max_owned_total,
                "stream_errors": self.errors}
