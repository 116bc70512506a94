# Declarations of the packet ring (see ring.pyx for the theory of operation).
# Other compiled modules cimport this so that every call below is a C call.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t

cdef struct PacketRecord:
    int64_t ts_ns          # capture timestamp, nanoseconds since the epoch
    uint32_t caplen        # bytes stored in the ring
    uint32_t wirelen       # length of the packet on the wire
    uint32_t linktype      # LINKTYPE_* value of the interface it came from
    uint32_t iface         # interface index within the source (pcapng), else 0
    uint64_t offset        # monotonic byte position of the data in the arena
    uint32_t elided        # a record written without its bytes (caplen 0): the
                           # captured length it had; 0 for every stored record
    const uint8_t* external  # its bytes outside the arena, in memory a source
                             # lent the ring (a trace file's window); NULL: in the arena

# Memory a source lent the ring (a window a trace file was read into, from
# malloc, that records point into): once every record written before it was
# handed over is acknowledged, it is kept as a spare window or freed.
cdef struct Loan:
    void* addr
    size_t length
    uint64_t until         # write_index when it was handed over

cdef enum:
    # Windows kept for the source's next reads (spare_window), so that a
    # replay reuses a few buffers instead of asking for fresh pages (each a
    # page fault) for every window: the window being read, one lent while
    # its records are analysed, and slack for retention let go at once.
    MAX_SPARE_WINDOWS = 4
    # A larger window (one record of a huge snap length) is freed, not kept.
    MAX_SPARE_WINDOW_BYTES = 4 * 1024 * 1024

# The largest packet any source keeps (libpcap's MAXIMUM_SNAPLEN): the
# default snap length of live captures, the snap length filters are compiled
# for, and above which a record in a file is corruption.  Read from Python as
# ringbuf.ring.MAXIMUM_SNAPLEN.
cpdef enum:
    MAXIMUM_SNAPLEN = 262144

# What the writer does when the ring has no room for one more record.
cdef enum OverflowPolicy:
    OVERFLOW_WAIT = 0      # replay: refuse the record; the source retries after
                           # the engine has processed and acknowledged
    OVERFLOW_DROP = 1      # live: drop the packet and count it

cdef class Ring:
    cdef PacketRecord* records
    cdef uint16_t* pins                  # per record slot: how many stream segments hold it
    cdef uint8_t* arena
    cdef readonly uint64_t record_capacity   # power of two
    cdef readonly uint64_t arena_bytes       # power of two
    cdef uint64_t record_mask
    cdef uint64_t arena_mask
    cdef readonly int policy
    # The three DAG pointers, as monotonic record indices:
    #   acknowledged <= processed <= write
    # write_index (and arena_write, the write counters) belong to the
    # producer, processed/acknowledged to the consumer; they cross threads
    # only through ringbuf/includes/atomics.pxd (see ring.pyx).
    cdef readonly uint64_t write_index
    cdef readonly uint64_t processed_index
    cdef readonly uint64_t acknowledged_index
    cdef uint64_t arena_write            # monotonic byte position of the next write
    # counters
    cdef readonly uint64_t records_written
    cdef readonly uint64_t bytes_written
    cdef readonly uint64_t overflow_drops       # OVERFLOW_DROP: packets dropped
    cdef readonly uint64_t overflow_waits       # OVERFLOW_WAIT: times the writer was refused
    cdef readonly uint64_t oversize_drops       # packets larger than the arena allows
    cdef readonly uint64_t max_occupancy        # high-water mark, records
    cdef readonly uint64_t pinned_records       # records held by streams right now
    # Lent memory (reserve_external, take_loan): consumer thread only, so for
    # a source that fills the ring from the engine's thread (a trace file).
    cdef Loan* loans
    cdef size_t loans_head                      # the oldest outstanding
    cdef size_t loans_count                     # outstanding from loans_head on
    cdef size_t loans_capacity
    cdef readonly uint64_t external_bytes       # caplen of external records not acknowledged
    cdef readonly uint64_t lent_bytes           # of the outstanding loans
    cdef readonly uint64_t max_lent_bytes       # high-water mark
    cdef readonly uint64_t loan_waits           # external records refused: external_bytes full
    cdef readonly uint64_t loans_leaked         # no memory to track a loan: never freed
    cdef Loan spares[MAX_SPARE_WINDOWS]         # windows no record points into (until unused)
    cdef size_t spare_count

    # Writer side: reserve room for one record of `caplen` bytes.  Returns the
    # record (its data at data_of()) or NULL when there is no room (the policy
    # decides whether that counted as a drop).  The record becomes visible to
    # the reader only after commit().
    cdef PacketRecord* reserve(self, uint32_t caplen) noexcept nogil
    # The same for a record whose `caplen` bytes stay where they are, at
    # `data`, in memory its writer will hand over with take_loan() (no copy;
    # no arena room).  NULL also when arena_bytes would not hold the external
    # records not yet acknowledged (as if they were in the arena).
    cdef PacketRecord* reserve_external(self, uint32_t caplen,
                                        const uint8_t* data) noexcept nogil
    cdef void commit(self) noexcept nogil
    # The writer is done with a window (malloc'd memory) that records written
    # so far may point into: the ring keeps it until they are all
    # acknowledged (at once if they are), then as a spare or frees it.
    cdef void take_loan(self, void* addr, size_t length) noexcept nogil
    cdef void release_loans(self) noexcept nogil
    # A window given back (no record points into it): kept as a spare or freed.
    cdef void keep_spare(self, void* addr, size_t length) noexcept nogil
    # A spare window of at least `wanted` bytes (its size in length[0]), or
    # NULL when none is that large: the caller mallocs one.
    cdef uint8_t* spare_window(self, size_t wanted, size_t* length) noexcept nogil
    cdef void move_acknowledged(self, uint64_t index) noexcept nogil
    # Reader side.
    cdef PacketRecord* next_unprocessed(self) noexcept nogil   # NULL when none
    cdef void mark_processed(self) noexcept nogil               # processed_index += 1
    cdef uint8_t* data_of(self, const PacketRecord* rec) noexcept nogil
    cdef PacketRecord* record_at(self, uint64_t index) noexcept nogil
    # Acknowledge every record below `index` (index <= processed_index): their
    # slots and bytes may be overwritten.  Records in [acknowledged, processed)
    # are retained.
    cdef void acknowledge(self, uint64_t index) noexcept nogil
    cdef uint64_t retained_bytes_c(self) noexcept nogil
    # Internal helpers (added by ring.pyx).
    cdef uint64_t arena_acknowledged(self) noexcept nogil  # first byte still in use
    cdef PacketRecord* refuse(self) noexcept nogil         # count a refusal per policy
    # Consumer-side reads of the producer's pointers (threads: see ring.pyx).
    cdef uint64_t published_writes(self) noexcept nogil    # write_index, acquire
    cdef uint64_t arena_used(self) noexcept nogil          # unacknowledged arena bytes
    # Retention by streams: a pinned record is not acknowledged until unpinned.
    cdef void pin(self, uint64_t index) noexcept nogil
    cdef void unpin(self, uint64_t index) noexcept nogil
    # Acknowledge every processed record up to the first pinned one (and let
    # go the loans none of the others points into); advance_unpinned() moves
    # the pointer only.
    cdef void acknowledge_unpinned(self) noexcept nogil
    cdef void advance_unpinned(self) noexcept nogil
