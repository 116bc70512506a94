"""The packet ring: where captured packets wait between the source and the engine.

Role in the data flow::

    source ──► [ring] ──► decode ──► flow table ──► reassembly ──► analysers ──► sinks

A source (trace file, libpcap, AF_PACKET) *writes* packet records into the ring;
the engine *processes* them in order; a record stays *retained* after processing
for as long as a flow still refers to its bytes (a reassembly queue pointing into
the ring instead of copying), and is *acknowledged* when nothing needs it any more.

Theory of operation
-------------------
Three pointers, modelled on an Endace DAG card, are monotonic uint64 record
indices (they never wrap in practice: 2**64 records)::

    acknowledged_index <= processed_index <= write_index

- ``[acknowledged, processed)`` are *retained*: processed, but their slots and
  bytes must not change.
- ``[processed, write)`` are waiting for the engine.
- The writer may reuse a record slot or an arena byte only once it lies below
  ``acknowledged``.  When there is no such room the writer is refused
  (``reserve`` returns NULL): the overflow policy says whether that counted as
  a drop (live capture) or a wait (replay: the source retries after the engine
  has caught up).  Nothing is ever overwritten silently.

Record headers live in a power-of-two array indexed by ``index & record_mask``.
Packet bytes live in a power-of-two byte arena addressed by a monotonic byte
position (``offset & arena_mask``).  Each record's bytes are contiguous, so a
decoder can read a packet with plain pointer arithmetic: when a record does not
fit before the end of the arena its position jumps to the start of the next
lap, and the skipped tail stays "used" until the records before it are
acknowledged.  A record larger than the whole arena can never be stored; it is
refused and counted in ``oversize_drops``.  Because of that skip, an engine
that keeps R bytes retained can still be refused a P-byte packet whenever
R + 2P exceeds the arena: retention must stay well below the arena size (the
engine copies retained bytes out when the ring runs short).

Threads: one producer, one consumer
-----------------------------------
A live source writes from its own capture thread (without the GIL) while the
engine reads in the main thread.  The writer side (``reserve``/``commit``:
``write_index``, ``arena_write``, the write counters) belongs to the producer;
the reader side (``next_unprocessed``, ``mark_processed``, ``acknowledge``,
pins: ``processed_index``, ``acknowledged_index``) to the consumer.  Two
pointers cross between them (ringbuf/includes/atomics.pxd): ``write_index``
is published with a release store after the record is complete and loaded
with acquire by the reader; ``acknowledged_index`` is published with a release
store once the reader is done with the records below it and loaded with
acquire by the writer before it reuses their room.  A record slot below
``acknowledged`` is never read again by the consumer, and one at or above it
is never written by the producer, so nothing else needs a lock.  Replay uses
the same code from a single thread.

Lent memory
-----------
A trace file read a window at a time need not copy its packets into the
arena: ``reserve_external`` writes a record whose bytes stay in the source's
window (``PacketRecord.external``; ``data_of`` returns it).  When the source
moves on to the next window it hands the old one over (``take_loan``), and
the ring lets it go once every record written before that is acknowledged:
a record a stream still holds keeps its window.  A window let go is kept as
a spare (up to ``MAX_SPARE_WINDOWS``) that the source reads its next window
into (``spare_window``), so a replay cycles through a few buffers whose pages
stay in place and in cache; the rest are freed.  Lent records count
as if they were in the arena (``external_bytes``: those not acknowledged):
past ``arena_bytes`` the writer is refused, as when the arena is full, and
the engine copies retained bytes out.  So retention in place stays bounded
by the ring's size, lent or not, and so do the windows kept for it (they
cover the file span of the unacknowledged records).  Loans are the
consumer's business: only a source that fills the ring from the engine's
thread lends (a trace file; never a capture thread).

Every ``cdef`` method here is O(1), allocation-free and ``nogil`` (but
take_loan, which may grow its list); the Python methods at the bottom exist
for tests and status displays only.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport malloc, calloc, realloc, free
from libc.string cimport memcpy, memmove

from ringbuf.includes.atomics cimport (
    rb_load_acquire, rb_store_release, rb_load_relaxed, rb_store_relaxed, rb_count,
)


cdef uint64_t round_up_to_power_of_two(uint64_t value):
    cdef uint64_t power = 1
    while power < value:
        power <<= 1
    return power


cdef class Ring:
    def __cinit__(self, record_capacity=65536, arena_bytes=64 * 1024 * 1024,
                  policy="wait"):
        self.records = NULL
        self.arena = NULL
        self.loans = NULL
        if record_capacity < 1:
            raise ValueError(f"record_capacity must be at least 1, not {record_capacity}")
        if arena_bytes < 1:
            raise ValueError(f"arena_bytes must be at least 1, not {arena_bytes}")
        if policy in ("wait", OVERFLOW_WAIT):
            self.policy = OVERFLOW_WAIT
        elif policy in ("drop", OVERFLOW_DROP):
            self.policy = OVERFLOW_DROP
        else:
            raise ValueError(f"policy must be 'wait' or 'drop', not {policy!r}")
        self.record_capacity = round_up_to_power_of_two(record_capacity)
        self.arena_bytes = round_up_to_power_of_two(arena_bytes)
        self.record_mask = self.record_capacity - 1
        self.arena_mask = self.arena_bytes - 1
        self.records = <PacketRecord*>malloc(self.record_capacity * sizeof(PacketRecord))
        self.pins = <uint16_t*>calloc(self.record_capacity, sizeof(uint16_t))
        self.arena = <uint8_t*>malloc(self.arena_bytes)
        if self.records == NULL or self.arena == NULL or self.pins == NULL:
            raise MemoryError(
                f"cannot allocate a ring of {self.record_capacity} records "
                f"and {self.arena_bytes} bytes")

    def __dealloc__(self):
        cdef size_t i
        for i in range(self.loans_head, self.loans_head + self.loans_count):
            free(self.loans[i].addr)
        for i in range(self.spare_count):
            free(self.spares[i].addr)
        self.spare_count = 0
        free(self.loans)
        free(self.records)
        free(self.pins)
        free(self.arena)
        self.loans = NULL
        self.records = NULL
        self.arena = NULL

    # ------------------------------------------------------------------ writer

    cdef uint64_t arena_acknowledged(self) noexcept nogil:
        # Byte position below which the arena is free: the start of the oldest
        # unacknowledged record (wrap padding before it is thereby freed too).
        # Either thread may ask: the oldest record's header was written and
        # published by the producer, and the consumer never changes it.
        cdef uint64_t ack = rb_load_acquire(&self.acknowledged_index)
        if ack == rb_load_acquire(&self.write_index):
            return rb_load_relaxed(&self.arena_write)
        return self.records[ack & self.record_mask].offset

    cdef PacketRecord* reserve(self, uint32_t caplen) noexcept nogil:
        cdef uint64_t offset, position_in_lap
        cdef PacketRecord* rec
        # The producer owns write_index and arena_write: plain reads.  The
        # consumer's acknowledged pointer is loaded once, with acquire: every
        # read of the records below it happened before we reuse their room.
        cdef uint64_t ack = rb_load_acquire(&self.acknowledged_index)
        cdef uint64_t write = self.write_index
        if caplen > self.arena_bytes:
            rb_count(&self.oversize_drops, 1)
            return NULL
        if write - ack >= self.record_capacity:
            return self.refuse()
        offset = self.arena_write
        position_in_lap = offset & self.arena_mask
        if position_in_lap + caplen > self.arena_bytes:
            # Keep the packet contiguous: skip the tail, start the next lap.
            offset += self.arena_bytes - position_in_lap
        # With nothing unacknowledged the whole arena is free, skipped tail or not.
        if (ack != write
                and offset + caplen - self.records[ack & self.record_mask].offset
                > self.arena_bytes):
            return self.refuse()
        rec = &self.records[write & self.record_mask]
        rec.offset = offset
        rec.caplen = caplen
        rec.wirelen = caplen
        rec.ts_ns = 0
        rec.linktype = 0
        rec.iface = 0
        rec.elided = 0
        rec.external = NULL
        return rec

    cdef PacketRecord* reserve_external(self, uint32_t caplen,
                                        const uint8_t* data) noexcept nogil:
        cdef PacketRecord* rec
        if caplen > self.arena_bytes:
            rb_count(&self.oversize_drops, 1)
            return NULL
        if self.external_bytes + caplen > self.arena_bytes:
            # As if they were in the arena: it would be full.
            self.loan_waits += 1
            return self.refuse()
        rec = self.reserve(0)
        if rec != NULL:
            rec.caplen = caplen
            rec.wirelen = caplen
            rec.external = data
        return rec

    cdef void take_loan(self, void* addr, size_t length) noexcept nogil:
        cdef Loan* grown
        cdef size_t capacity
        if self.loans_count == 0:
            self.loans_head = 0
        if self.loans_head + self.loans_count == self.loans_capacity:
            if self.loans_head:
                # Released ones at the front: slide the outstanding down.
                memmove(self.loans, self.loans + self.loans_head,
                        self.loans_count * sizeof(Loan))
                self.loans_head = 0
            else:
                capacity = self.loans_capacity * 2 if self.loans_capacity else 16
                grown = <Loan*>realloc(self.loans, capacity * sizeof(Loan))
                if grown == NULL:
                    # Records may point into it: never freed, rather than
                    # freed under them.
                    self.loans_leaked += 1
                    return
                self.loans = grown
                self.loans_capacity = capacity
        self.loans[self.loans_head + self.loans_count] = Loan(addr, length, self.write_index)
        self.loans_count += 1
        self.lent_bytes += length
        if self.lent_bytes > self.max_lent_bytes:
            self.max_lent_bytes = self.lent_bytes
        self.release_loans()

    cdef void release_loans(self) noexcept nogil:
        """Let go the loans no unacknowledged record can point into."""
        cdef Loan* loan
        while self.loans_count:
            loan = &self.loans[self.loans_head]
            if loan.until > self.acknowledged_index:
                return
            self.keep_spare(loan.addr, loan.length)
            self.lent_bytes -= loan.length
            self.loans_head += 1
            self.loans_count -= 1

    cdef void keep_spare(self, void* addr, size_t length) noexcept nogil:
        if self.spare_count < MAX_SPARE_WINDOWS and length <= MAX_SPARE_WINDOW_BYTES:
            self.spares[self.spare_count] = Loan(addr, length, 0)
            self.spare_count += 1
        else:
            free(addr)

    cdef uint8_t* spare_window(self, size_t wanted, size_t* length) noexcept nogil:
        cdef size_t i
        cdef void* addr
        for i in range(self.spare_count):
            if self.spares[i].length >= wanted:
                addr = self.spares[i].addr
                length[0] = self.spares[i].length
                self.spare_count -= 1
                self.spares[i] = self.spares[self.spare_count]
                return <uint8_t*>addr
        return NULL

    cdef PacketRecord* refuse(self) noexcept nogil:
        # Live capture drops the newest packet (this one): what is already in
        # the ring stays, in order, and is analysed.
        if self.policy == OVERFLOW_DROP:
            rb_count(&self.overflow_drops, 1)
        else:
            rb_count(&self.overflow_waits, 1)
        return NULL

    cdef void commit(self) noexcept nogil:
        cdef uint64_t write = self.write_index
        cdef PacketRecord* rec = &self.records[write & self.record_mask]
        cdef uint64_t occupancy
        if rec.external == NULL:
            rb_store_relaxed(&self.arena_write, rec.offset + rec.caplen)
        else:
            self.external_bytes += rec.caplen
        rb_count(&self.records_written, 1)
        rb_count(&self.bytes_written, rec.caplen)
        # Publish: the record's header and bytes are complete before the
        # reader can see write_index move past it.
        rb_store_release(&self.write_index, write + 1)
        occupancy = write + 1 - rb_load_acquire(&self.acknowledged_index)
        if occupancy > self.max_occupancy:
            rb_store_relaxed(&self.max_occupancy, occupancy)

    # ------------------------------------------------------------------ reader

    cdef PacketRecord* next_unprocessed(self) noexcept nogil:
        if self.processed_index == rb_load_acquire(&self.write_index):
            return NULL
        return &self.records[self.processed_index & self.record_mask]

    cdef void mark_processed(self) noexcept nogil:
        if self.processed_index < rb_load_acquire(&self.write_index):
            rb_store_relaxed(&self.processed_index, self.processed_index + 1)

    cdef uint64_t published_writes(self) noexcept nogil:
        """The write pointer as the consumer may use it (acquire)."""
        return rb_load_acquire(&self.write_index)

    cdef uint64_t arena_used(self) noexcept nogil:
        """Arena bytes from the oldest unacknowledged record to the write
        position (wrap padding included); either thread, for decisions that
        tolerate a slightly old value."""
        # The start first: the write position read after it is never older.
        cdef uint64_t start = self.arena_acknowledged()
        cdef uint64_t end = rb_load_relaxed(&self.arena_write)
        return end - start if end > start else 0

    cdef uint8_t* data_of(self, const PacketRecord* rec) noexcept nogil:
        if rec.external != NULL:
            return <uint8_t*>rec.external
        return self.arena + (rec.offset & self.arena_mask)

    cdef PacketRecord* record_at(self, uint64_t index) noexcept nogil:
        # Only records still in the ring are addressable.
        if index < self.acknowledged_index or index >= rb_load_acquire(&self.write_index):
            return NULL
        return &self.records[index & self.record_mask]

    cdef void acknowledge(self, uint64_t index) noexcept nogil:
        if index > self.processed_index:
            index = self.processed_index
        if index > self.acknowledged_index:
            self.move_acknowledged(index)
            if self.loans_count:
                self.release_loans()

    cdef void move_acknowledged(self, uint64_t index) noexcept nogil:
        """acknowledged_index := index (above it): the lent records below it
        leave external_bytes."""
        cdef uint64_t i
        cdef PacketRecord* rec
        if self.external_bytes:
            for i in range(self.acknowledged_index, index):
                rec = &self.records[i & self.record_mask]
                if rec.external != NULL:
                    self.external_bytes -= rec.caplen
        # Release: our reads of these records come before their reuse.
        rb_store_release(&self.acknowledged_index, index)

    # ------------------------------------------------------------- retention

    cdef void pin(self, uint64_t index) noexcept nogil:
        # A stream keeps bytes of this record in place instead of copying them.
        cdef uint16_t* p = &self.pins[index & self.record_mask]
        if p[0] == 0:
            self.pinned_records += 1
        p[0] += 1

    cdef void unpin(self, uint64_t index) noexcept nogil:
        cdef uint16_t* p = &self.pins[index & self.record_mask]
        if p[0] == 0:
            return
        p[0] -= 1
        if p[0] == 0:
            self.pinned_records -= 1
            if index == self.acknowledged_index:
                # Not acknowledge_unpinned(): a stream may still read the bytes
                # it just let go (a copy-out unpins first), so no loan is let
                # go here; the engine's next acknowledge_unpinned() does that.
                self.advance_unpinned()

    cdef void advance_unpinned(self) noexcept nogil:
        # The acknowledged pointer stops at the oldest record a stream holds:
        # everything after it stays retained (DAG semantics), even if unpinned.
        cdef uint64_t ack = self.acknowledged_index
        while ack < self.processed_index and self.pins[ack & self.record_mask] == 0:
            ack += 1
        if ack != self.acknowledged_index:
            self.move_acknowledged(ack)

    cdef void acknowledge_unpinned(self) noexcept nogil:
        self.advance_unpinned()
        if self.loans_count:
            self.release_loans()

    cdef uint64_t retained_bytes_c(self) noexcept nogil:
        # Arena bytes pinned by retained records: from the oldest one's first
        # byte to the newest one's last (wrap padding between them included).
        cdef PacketRecord* newest
        if self.processed_index == self.acknowledged_index:
            return 0
        newest = &self.records[(self.processed_index - 1) & self.record_mask]
        return (newest.offset + (newest.caplen if newest.external == NULL else 0)
                - self.records[self.acknowledged_index & self.record_mask].offset)

    # ------------------------------------------- Python view (tests, status)

    @property
    def occupancy(self):
        """Records not yet acknowledged (waiting or retained)."""
        return self.write_index - self.acknowledged_index

    @property
    def retained_records(self):
        return self.processed_index - self.acknowledged_index

    @property
    def retained_bytes(self):
        return self.retained_bytes_c()

    @property
    def free_bytes(self):
        """Arena bytes not pinned by unacknowledged records (wrap padding counts as used)."""
        return self.arena_bytes - self.arena_used()

    @property
    def backlog(self):
        """Records written and not yet processed (waiting for the engine)."""
        return rb_load_acquire(&self.write_index) - self.processed_index

    def oldest_unprocessed_ns(self):
        """Capture timestamp of the oldest record waiting for the engine
        (consumer thread only), or None when the engine has caught up."""
        cdef PacketRecord* rec = self.next_unprocessed()
        return None if rec == NULL else rec.ts_ns

    @property
    def policy_name(self):
        return "drop" if self.policy == OVERFLOW_DROP else "wait"

    def write(self, int64_t ts_ns, uint32_t wirelen, uint32_t linktype,
              const uint8_t[::1] data, uint32_t iface=0):
        """Reserve, copy and commit one packet; False when the ring refused it."""
        cdef uint32_t caplen = <uint32_t>data.shape[0]
        cdef PacketRecord* rec = self.reserve(caplen)
        if rec == NULL:
            return False
        rec.ts_ns = ts_ns
        rec.wirelen = wirelen
        rec.linktype = linktype
        rec.iface = iface
        if caplen:
            memcpy(self.data_of(rec), &data[0], caplen)
        self.commit()
        return True

    def read(self):
        """The next unprocessed record as (index, ts_ns, caplen, wirelen, linktype,
        iface, bytes), marked processed (and so retained until acknowledged);
        None when the engine has caught up with the writer."""
        cdef PacketRecord* rec = self.next_unprocessed()
        if rec == NULL:
            return None
        index = self.processed_index
        data = (<char*>self.data_of(rec))[:rec.caplen]
        self.mark_processed()
        return (index, rec.ts_ns, rec.caplen, rec.wirelen, rec.linktype, rec.iface, data)

    def peek(self, uint64_t index):
        """The bytes of a record still in the ring (retained or waiting), else None."""
        cdef PacketRecord* rec = self.record_at(index)
        if rec == NULL:
            return None
        return (<char*>self.data_of(rec))[:rec.caplen]

    def ack(self, uint64_t index):
        """Acknowledge every record below `index` (clamped to the processed pointer)."""
        self.acknowledge(index)

    def stats(self):
        return {
            "record_capacity": self.record_capacity,
            "arena_bytes": self.arena_bytes,
            "policy": self.policy_name,
            "write_index": self.write_index,
            "processed_index": self.processed_index,
            "acknowledged_index": self.acknowledged_index,
            "occupancy": self.write_index - self.acknowledged_index,
            "backlog": self.write_index - self.processed_index,
            "retained_records": self.processed_index - self.acknowledged_index,
            "retained_bytes": self.retained_bytes_c(),
            "free_bytes": self.free_bytes,
            "records_written": self.records_written,
            "bytes_written": self.bytes_written,
            "overflow_drops": self.overflow_drops,
            "overflow_waits": self.overflow_waits,
            "oversize_drops": self.oversize_drops,
            "max_occupancy": self.max_occupancy,
            "pinned_records": self.pinned_records,
            "external_bytes": self.external_bytes,
            "lent_bytes": self.lent_bytes,
            "max_lent_bytes": self.max_lent_bytes,
            "loan_waits": self.loan_waits,
            "loans_leaked": self.loans_leaked,
            "spare_windows": self.spare_count,
            "largest_spare_window": max([self.spares[i].length
                                         for i in range(self.spare_count)] or [0]),
        }

    def __repr__(self):
        return (f"<Ring {self.record_capacity} records, {self.arena_bytes} bytes, "
                f"{self.policy_name}: ack={self.acknowledged_index} "
                f"processed={self.processed_index} write={self.write_index}>")
