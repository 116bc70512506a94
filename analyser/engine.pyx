# cython: language_level=3
"""The engine loop: source -> ring -> decode -> flows, in compiled code.

Role in the data flow: it owns the ring and drives every packet through
`Decoder.decode()` and `FlowTable.packet()`; connection records leave through
the `on_connection` callable (once per connection, never per packet).

One engine is data-driven, as the seed design asks.  Replay
(`run_source`): it fills the ring from a source in batches, processes every
record in the batch, then acknowledges what it processed so the source may
reuse the space.  Live (`run_capture`): the source's capture thread fills the
ring on its own (no GIL) while this thread takes what is there, from the
processed pointer, and acknowledges as before; at a stop request the thread
stops and what it already wrote is analysed (bounded by the drain timeout).
Nothing in the per-packet path allocates or touches a Python object.
"""
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy
from cpython.exc cimport PyErr_CheckSignals
from posix.time cimport clock_gettime, nanosleep, timespec, CLOCK_MONOTONIC, CLOCK_REALTIME

from ringbuf.ring cimport Ring, PacketRecord, OVERFLOW_DROP
from ringbuf.includes.atomics cimport rb_load_relaxed
from ringbuf.source cimport Source
from ringbuf.bpf cimport BpfFilter
from analyser.decode cimport Decoder, Decoded, DECODED, NOT_IP, FRAGMENT_HELD, \
    MALFORMED, OTHER_TRANSPORT, plain_tcp_hosts
from analyser.flows cimport FlowTable, DEFAULT_FLOW_CAPACITY
from analyser.decode import DEFAULT_TUNNEL_DEPTH
from analyser.streams cimport Streams

import time

cdef enum:
    # Records per fill: small enough that a batch is still in cache when it is
    # processed.  The replay ring is small for the same reason (measured: 4 MiB
    # runs 40% faster than 64 MiB on 1 KB packets); nothing is retained yet.
    BATCH = 256
    # Latency histogram (capture timestamp to the moment the engine takes the
    # record), in nanoseconds, log-linear: exact below 128 ns, then 64
    # buckets per power of two (1.6% resolution) up to 2**63 ns; 30 KB.
    LATENCY_SUB_BITS = 6
    LATENCY_BUCKETS = 64 * 60
    # Live: when the ring is empty the engine sleeps, doubling from the first
    # to the longest pause (the added delay stays far below the kernel's 10 ms
    # block timeout), and runs flow timers on the wall clock this often.
    IDLE_SLEEP_MIN_NS = 20000
    IDLE_SLEEP_MAX_NS = 1000000
    IDLE_CLOCK_EVERY_NS = 50000000
    # Pacing (--speed) sleeps in slices this long, so a stop request is seen.
    PACE_SLICE_NS = 50000000


cdef extern from *:
    """
    static inline int analyser_log2_u64(unsigned long long v) { return 63 - __builtin_clzll(v); }
    """
    int analyser_log2_u64(unsigned long long v) noexcept nogil


cdef inline uint32_t latency_bucket(uint64_t v) noexcept nogil:
    cdef int shift
    if v < (2 << LATENCY_SUB_BITS):
        return <uint32_t>v
    shift = analyser_log2_u64(v) - LATENCY_SUB_BITS
    return <uint32_t>((shift << LATENCY_SUB_BITS) + (v >> shift))


cdef inline uint64_t latency_bucket_top(uint32_t i) noexcept nogil:
    """The largest delay (ns) counted in bucket i."""
    cdef int shift
    if i < (2 << LATENCY_SUB_BITS):
        return i
    shift = (i >> LATENCY_SUB_BITS) - 1
    return (((<uint64_t>i - (<uint64_t>shift << LATENCY_SUB_BITS)) + 1) << shift) - 1


cdef inline int64_t clock_ns(int clock) noexcept nogil:
    cdef timespec ts
    clock_gettime(clock, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline void sleep_ns(int64_t duration) noexcept nogil:
    cdef timespec ts
    ts.tv_sec = duration // 1000000000
    ts.tv_nsec = duration % 1000000000
    nanosleep(&ts, NULL)      # a signal cuts it short: the caller checks its flag


cdef inline uint64_t mix(uint64_t z) noexcept nogil:
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL
    return z ^ (z >> 31)


cdef struct DedupSlot:
    uint64_t hash
    int64_t ts_ns

cdef enum:
    DEDUP_SLOTS = 65536       # a power of two; 1 MiB


cdef inline uint64_t hash_bytes(uint64_t h, const uint8_t* p, uint32_t n) noexcept nogil:
    cdef uint64_t w
    while n >= 8:
        memcpy(&w, p, 8)
        h = mix(h ^ w)
        p += 8
        n -= 8
    w = 0
    if n:
        memcpy(&w, p, n)
        h = mix(h ^ w ^ (<uint64_t>n << 56))
    return h


cdef uint64_t packet_hash(const Decoded* d) noexcept nogil:
    """The IP packet as captured, without what changes on the way between two
    copies of it: the TTL (hop limit) and the IPv4 header checksum."""
    cdef const uint8_t* ip = d.ip_hdr
    cdef uint32_t hdr = <uint32_t>(d.l4 - ip)
    cdef uint64_t h = 0x243f6a8885a308d3ULL
    if ip == NULL or d.l4 == NULL or d.l4 < ip:
        return hash_bytes(h, d.l4, d.l4_caplen)
    if d.ip_version == 4 and hdr >= 20:
        h = hash_bytes(h, ip, 8)                     # up to the TTL
        h = hash_bytes(h, ip + 9, 1)                 # protocol
        h = hash_bytes(h, ip + 12, hdr - 12)         # addresses, options
    elif d.ip_version == 6 and hdr >= 40:
        h = hash_bytes(h, ip, 7)                     # up to the hop limit
        h = hash_bytes(h, ip + 8, hdr - 8)
    else:
        h = hash_bytes(h, ip, hdr)
    return hash_bytes(h, d.l4, d.l4_caplen)


cdef inline uint64_t address_hash(const uint8_t* a) noexcept nogil:
    cdef uint64_t hi, lo
    memcpy(&hi, a, 8)
    memcpy(&lo, a + 8, 8)
    return mix(hi ^ mix(lo))


cdef inline uint64_t hosts_hash(const uint8_t* a, const uint8_t* b) noexcept nogil:
    """The same for both directions, and for every connection between two
    hosts: an FTP session's data connections stay with their control."""
    return mix(address_hash(a) ^ address_hash(b))


cdef inline uint64_t host_pair_hash(const Decoded* d) noexcept nogil:
    return hosts_hash(d.src, d.dst)


# --workers: which share of the host pairs this engine owns, for the source's
# elide test (it runs before a record is copied into the ring).
cdef struct WorkerShare:
    uint32_t index
    uint32_t count
    bint verify_ip_checksum


cdef bint another_workers(const void* ctx, const uint8_t* data, uint32_t caplen,
                          uint32_t wirelen, uint32_t linktype) noexcept nogil:
    """A packet that decode() would certainly decode, between hosts another
    worker owns: the source need not copy it (process() counts it as
    decoding would have, and moves trace time on).  Any other packet is
    copied and decoded as always, and its owner decided after decoding."""
    cdef const WorkerShare* share = <const WorkerShare*>ctx
    cdef uint8_t src[16]
    cdef uint8_t dst[16]
    if not plain_tcp_hosts(data, caplen, wirelen, linktype, share.verify_ip_checksum,
                           src, dst):
        return False
    return hosts_hash(src, dst) % share.count != share.index


# When a live source is idle, flows are expired at wall-clock time minus this
# lag: a kernel block retired late may still hold packets a little older than
# "now", and they should find their flows alive.
IDLE_CLOCK_LAG = 0.25


cdef class Engine:
    """Replays sources through the compiled path; see `analyser.replay`."""
    cdef readonly Ring ring
    cdef readonly Decoder decoder
    cdef readonly FlowTable flows
    cdef readonly Streams streams
    cdef readonly object runtime
    cdef readonly object monitor
    cdef readonly uint64_t pressure_events
    cdef readonly uint64_t errors         # exceptions caught in callbacks (report_error)
    cdef BpfFilter bpf
    cdef readonly uint64_t packets
    cdef readonly uint64_t wire_bytes
    cdef readonly uint64_t captured_bytes
    cdef readonly uint64_t filtered_out
    cdef readonly uint64_t decoded
    cdef readonly int64_t first_ts_ns
    cdef readonly int64_t last_ts_ns
    cdef readonly uint64_t ts_went_backwards
    # --workers: this engine owns the host pairs whose hash is worker_index
    # modulo worker_count; other packets are decoded and skipped.
    cdef readonly uint32_t worker_index
    cdef readonly uint32_t worker_count
    cdef readonly uint64_t other_workers
    cdef readonly uint64_t other_workers_elided   # of those, written to the ring without bytes
    cdef WorkerShare share
    # --dedup: the IP packets seen in the last dedup_window_ns, by hash
    # (direct-mapped: a slot holds the latest packet whose hash falls there).
    cdef DedupSlot* dedup
    cdef int64_t dedup_window_ns
    cdef readonly uint64_t duplicates
    # Live and paced runs (see run_source).
    cdef readonly bint stop_requested
    cdef readonly uint64_t idle_expiries
    cdef int64_t pace_origin_ts           # trace time of the first paced record
    cdef int64_t pace_origin_wall         # monotonic time it was processed at
    cdef uint64_t* latency_hist           # NULL unless measure_latency()
    cdef readonly uint64_t latency_count
    cdef readonly int64_t latency_max_ns
    # Live capture with a capture thread (run_capture).
    cdef readonly uint64_t max_backlog      # most records seen waiting for the engine
    cdef readonly uint64_t drained          # records analysed after the stop request
    cdef readonly uint64_t undrained        # left in the ring when the drain timed out
    cdef readonly double drain_seconds
    cdef readonly bint draining             # a stop() now ends the drain too
    cdef readonly bint drain_aborted
    cdef readonly uint64_t idle_sleeps

    def __init__(self, *, on_connection=None, bpf=None, bint ignore_checksums=True,
                 timeouts=None, uint32_t flow_capacity=DEFAULT_FLOW_CAPACITY,
                 uint64_t ring_records=65536, uint64_t ring_bytes=4 << 20,
                 bint key_on_vlan=False, analysers=None, monitor=None, on_event=None,
                 on_log=None, log_writers=None, uint64_t max_stream_bytes=4 << 20,
                 uint64_t max_owned_bytes=1 << 20, ring_policy="wait", detect="content",
                 uint64_t max_owned_total=128 << 20,
                 worker=None, double dedup=0.0, bint no_payload=False, pcap_out=None,
                 double analyser_time_limit=5.0, int tunnel_depth=DEFAULT_TUNNEL_DEPTH):
        """analysers: [(Analyser subclass, config dict)]; monitor: an
        analyser.events.Monitor; on_event: callable(dict) for application events.
        ring_policy: "wait" (replay: the source waits for room) or "drop"
        (live: a packet the ring cannot take is dropped and counted).
        detect: "content" (signatures on the first payload, ports as hints) or
        "ports" (the responder's port alone chooses an analyser).
        worker: (index, count) to analyse only the host pairs whose hash falls
        to this worker (analyser/workers.py); None: all of them.
        dedup: seconds; an IP packet equal to one seen less than this long
        before (TTL/hop limit and IPv4 header checksum aside) is dropped and
        counted as a duplicate (SPAN ports); 0: off.
        no_payload: what users sent (names, paths, commands, message text:
        the analysers' payload_fields) stays out of every log and event.
        pcap_out: an analyser.pcapout.PcapOut writing the chosen connections.
        max_owned_total: bytes all streams together may copy out of the ring
        (analyser/streams.pyx); beyond it, bytes are given up as gaps.
        analyser_time_limit: seconds one analyser wake-up may run before it is
        stopped (analyser/watchdog.py); 0: no limit.
        tunnel_depth: encapsulations opened per packet (analyser/decode.pyx);
        0: none."""
        self.ring = Ring(ring_records, ring_bytes, ring_policy)
        self.worker_index, self.worker_count = (0, 1) if worker is None else worker
        if dedup < 0:
            raise ValueError("dedup window must be positive, not %r" % dedup)
        self.dedup = NULL
        if dedup > 0:
            self.dedup = <DedupSlot*>calloc(DEDUP_SLOTS, sizeof(DedupSlot))
            if self.dedup == NULL:
                raise MemoryError()
            self.dedup_window_ns = <int64_t>(dedup * 1e9)
        if not (self.worker_count >= 1 and self.worker_index < self.worker_count):
            raise ValueError("bad worker %r: (index, count) with index < count" % (worker,))
        self.first_ts_ns = -1
        self.last_ts_ns = -1
        self.pace_origin_ts = -1
        self.decoder = Decoder(not ignore_checksums, tunnel_depth)
        self.share.index = self.worker_index
        self.share.count = self.worker_count
        self.share.verify_ip_checksum = not ignore_checksums
        self.flows = FlowTable(flow_capacity, timeouts, ignore_checksums, key_on_vlan,
                               on_connection)
        self.bpf = BpfFilter(bpf) if bpf else None
        self.runtime = None
        self.streams = None
        self.monitor = monitor
        if analysers:
            from analyser.runtime import Runtime
            # The flow table is the analysers' clock: now_ts() reads its time.
            self.runtime = Runtime(emit=on_event, log=on_log,
                                   log_writers=log_writers, no_payload=no_payload)
            self.runtime.trace_clock = self.flows
            if analyser_time_limit > 0:
                from analyser.watchdog import Watchdog
                self.runtime.watchdog = Watchdog(self.runtime, analyser_time_limit)
            self.streams = Streams(self.ring, self.runtime,
                                   max_side_bytes=max_stream_bytes,
                                   max_owned_bytes=max_owned_bytes,
                                   max_owned_total=max_owned_total,
                                   on_event=self.stream_event,
                                   on_error=self.runtime.engine_error)
            self.runtime.streams = self.streams
            self.flows.set_analysers(self.runtime, self.streams, analysers, detect)
        if pcap_out is not None:
            self.flows.set_pcap_out(pcap_out)
            if self.runtime is not None and pcap_out.kind in ("service", "analyser", "event"):
                self.runtime.pcap_rule = (pcap_out.kind, pcap_out.value)
                self.runtime.pcap_select = self.flows.pcap_select_slot
        if monitor is not None:
            monitor.attach(self.flows)
            monitor.on_error = self.report_error

    def report_error(self, where, exc):
        """An exception caught outside the flow table (an event callback):
        counted, and reported as the flow table's are."""
        self.errors += 1
        if self.runtime is not None:
            self.runtime.engine_error(where, exc)
        elif self.errors <= 10:
            import sys
            print("analyser: error %s: %s: %s" % (where, type(exc).__name__, exc),
                  file=sys.stderr)

    def stream_event(self, name, slot, side, a, b):
        """An event the stream layer found (overlapping bytes that differ)."""
        from analyser import events
        if self.monitor is None or not (self.flows.ev_after & events.OVERLAP_DIFFERS):
            return
        index = self.flows.index_of_slot(slot)
        if index >= 0:
            self.monitor.dispatch(events.OVERLAP_DIFFERS, index, side, a, b, None, None,
                                  self.flows.trace_time(), 1)

    def __dealloc__(self):
        free(self.latency_hist)
        self.latency_hist = NULL
        free(self.dedup)
        self.dedup = NULL

    cdef bint is_duplicate(self, const Decoded* d, int64_t ts_ns) noexcept:
        """Seen within the window?  Remembers this packet either way."""
        cdef uint64_t h = packet_hash(d)
        cdef DedupSlot* slot = &self.dedup[h & (DEDUP_SLOTS - 1)]
        if slot.hash == h and slot.ts_ns <= ts_ns and ts_ns - slot.ts_ns <= self.dedup_window_ns:
            return True
        slot.hash = h
        slot.ts_ns = ts_ns
        return False

    cdef inline void process(self, PacketRecord* rec) except *:
        cdef Decoded d
        cdef const uint8_t* data = self.ring.data_of(rec)
        self.packets += 1
        self.wire_bytes += rec.wirelen
        self.captured_bytes += rec.caplen
        if self.first_ts_ns < 0:
            self.first_ts_ns = rec.ts_ns
        if rec.ts_ns < self.last_ts_ns:
            self.ts_went_backwards += 1
        else:
            self.last_ts_ns = rec.ts_ns
        if rec.elided:
            # Another worker's packet, known without copying it (the source's
            # elide test, another_workers): counted as its decoding below
            # would have counted it.
            self.captured_bytes += rec.elided
            self.decoded += 1
            self.other_workers += 1
            self.other_workers_elided += 1
            self.flows.now = rec.ts_ns * 1e-9
            self.flows.expire(self.flows.now)
            return
        if self.bpf is not None and not self.bpf.matches(rec.linktype, data, rec.caplen,
                                                         rec.wirelen):
            self.filtered_out += 1
            return
        if self.decoder.decode(data, rec.caplen, rec.wirelen, rec.linktype, rec.ts_ns,
                               &d) == DECODED:
            self.decoded += 1
            if self.worker_count > 1 and \
                    host_pair_hash(&d) % self.worker_count != self.worker_index:
                # Another worker's packet still moves trace time on, so that
                # timeouts and event times are those of a single engine.
                self.other_workers += 1
                self.flows.now = rec.ts_ns * 1e-9
                self.flows.expire(self.flows.now)
                return
            if self.dedup != NULL and self.is_duplicate(&d, rec.ts_ns):
                self.duplicates += 1            # (a copy goes to the same worker)
                return
            d.record_index = self.ring.processed_index
            d.in_ring = not d.reassembled
            d.frame = data
            d.frame_caplen = rec.caplen
            d.frame_wirelen = rec.wirelen
            d.linktype = rec.linktype
            self.flows.packet(&d, rec.ts_ns * 1e-9)

    def run_source(self, Source source, progress=None, double progress_every=0.5, *,
                   double speed=0.0, bint live=False):
        """Process every record of `source` (until its eof or `stop()`).
        `progress(engine, source)` is called about every `progress_every`
        seconds of wall time.  speed > 0 paces processing to the trace's clock
        (1.0 = real time).  live: when the source has nothing (fill() returns
        0 without eof), flows are expired by wall-clock time."""
        if self.worker_count > 1 and self.bpf is None:
            # (A filter decides on a packet's bytes first: then all are copied.)
            source.elide_test = another_workers
            source.elide_ctx = &self.share
        try:
            self.replay_loop(source, progress, progress_every, speed, live)
        finally:
            source.elide_test = NULL
            source.elide_ctx = NULL

    cdef replay_loop(self, Source source, progress, double progress_every, double speed,
                     bint live):
        cdef PacketRecord* rec
        cdef int n
        cdef uint64_t batches = 0
        cdef double next_report = time.monotonic() + progress_every
        cdef double now
        while not self.stop_requested:
            n = source.fill(self.ring, BATCH)
            while True:
                rec = self.ring.next_unprocessed()
                if rec == NULL:
                    break
                if speed > 0.0 and not self.wait_until_due(rec.ts_ns, speed):
                    break                       # stop requested while waiting
                if self.latency_hist != NULL:
                    self.record_latency(rec.ts_ns)
                self.process(rec)
                self.ring.mark_processed()
            # Records that no stream holds may be reused.
            self.ring.acknowledge_unpinned()
            if n == 0 and source.eof and self.ring.processed_index == self.ring.write_index:
                break
            if n == 0 and self.ring.write_index == self.ring.processed_index:
                if self.ring.policy != OVERFLOW_DROP:
                    # The source waits for room: the ring is full of records
                    # streams still hold.
                    self.relieve_pressure()
                else:
                    # A live source had nothing: let timers run on the wall clock.
                    if live:
                        now = clock_ns(CLOCK_REALTIME) * 1e-9 - IDLE_CLOCK_LAG
                        self.advance_clock(now)
                    if self.ring_is_short():
                        self.relieve_pressure()
            elif self.ring.policy == OVERFLOW_DROP and self.ring_is_short():
                # A live ring cannot make the source wait: free room before
                # packets start being dropped.
                self.relieve_pressure()
            batches += 1
            next_report = self.between_batches(progress, source, batches, n, next_report,
                                               progress_every)

    cdef double between_batches(self, progress, source, uint64_t batches, int n,
                                double next_report, double every) except? -1.0:
        """After each batch of the replay and live loops: pending signal
        handlers run (stop requests; the loops may never execute a Python
        bytecode), and `progress(engine, source)` is called when `next_report`
        (wall time) has passed.  Returns the next report time."""
        PyErr_CheckSignals()
        if progress is not None and ((batches & 15) == 0 or n == 0):
            if time.monotonic() >= next_report:
                progress(self, source)
                return time.monotonic() + every
        return next_report

    cdef int take_batch(self, int budget) except -1:
        """Live: process up to `budget` records the capture thread has
        published, then acknowledge what no stream holds.  Returns how many."""
        cdef PacketRecord* rec
        cdef int taken = 0
        cdef uint64_t backlog = self.ring.published_writes() - self.ring.processed_index
        if backlog > self.max_backlog:
            self.max_backlog = backlog
        while taken < budget:
            rec = self.ring.next_unprocessed()
            if rec == NULL:
                break
            if self.latency_hist != NULL:
                self.record_latency(rec.ts_ns)
            self.process(rec)
            self.ring.mark_processed()
            taken += 1
        self.ring.acknowledge_unpinned()
        return taken

    def run_capture(self, Source source, progress=None, double progress_every=1.0, *,
                    double drain_timeout=10.0):
        """Live capture with the source's own capture thread: it drains the
        kernel into the ring as fast as packets arrive (a burst costs ring
        memory, not kernel drops; no room left: the newest packet is dropped
        and counted at the ring) while this thread analyses from the
        processed pointer.  Runs until `stop()` or the source's end (count
        reached, or an error: `source.error`).  Then the capture thread is
        stopped and what is already in the ring is analysed, for at most
        `drain_timeout` seconds (`drained`; what is left: `undrained`).
        `progress(engine, source)` is called about every `progress_every` s."""
        cdef int n
        cdef uint64_t batches = 0
        cdef int64_t pause = IDLE_SLEEP_MIN_NS
        cdef int64_t now_ns, next_idle_clock = 0
        cdef double next_report = time.monotonic() + progress_every
        source.start_capture(self.ring)
        try:
            while not self.stop_requested:
                n = self.take_batch(BATCH)
                if n == 0:
                    if source.capture_ended:
                        # Its last records were published before it said so.
                        if self.ring.processed_index == self.ring.published_writes():
                            break
                        continue
                    now_ns = clock_ns(CLOCK_REALTIME)
                    if now_ns >= next_idle_clock:
                        # Nothing to analyse: timers run on the wall clock.
                        self.advance_clock(now_ns * 1e-9 - IDLE_CLOCK_LAG)
                        next_idle_clock = now_ns + IDLE_CLOCK_EVERY_NS
                    if self.ring_is_short():
                        self.relieve_pressure()
                    self.idle_sleeps += 1
                    with nogil:
                        sleep_ns(pause)
                    if pause < IDLE_SLEEP_MAX_NS:
                        pause *= 2
                else:
                    pause = IDLE_SLEEP_MIN_NS
                    if self.ring_is_short():
                        # The capture thread cannot wait: free room before
                        # packets start being dropped.
                        self.relieve_pressure()
                batches += 1
                next_report = self.between_batches(progress, source, batches, n, next_report,
                                                   progress_every)
        finally:
            source.stop_capture()
        self.drain(drain_timeout)

    def drain(self, double timeout):
        """Analyse what is already in the ring, for at most `timeout` seconds
        (the capture has stopped), or until another stop() (a second Ctrl-C).
        What is left is counted in `undrained`."""
        cdef int n
        cdef double started = time.monotonic()
        cdef double deadline = started + timeout
        self.draining = True
        try:
            while not self.drain_aborted:
                n = self.take_batch(BATCH)
                if n == 0:
                    break
                self.drained += n
                if self.ring_is_short():
                    self.relieve_pressure()
                if time.monotonic() >= deadline:
                    break
                PyErr_CheckSignals()
        finally:
            self.draining = False
            self.undrained = self.ring.published_writes() - self.ring.processed_index
            self.drain_seconds = time.monotonic() - started

    def lag_seconds(self):
        """Age of the oldest record waiting for the engine (0 when none):
        how far analysis is behind capture.  Engine thread only."""
        cdef PacketRecord* rec = self.ring.next_unprocessed()
        if rec == NULL:
            return 0.0
        return max(0.0, (clock_ns(CLOCK_REALTIME) - rec.ts_ns) * 1e-9)

    cdef void relieve_pressure(self) except *:
        """Copy the oldest half of the retained records out of the ring (or
        give them up as gaps) so that the source can write again."""
        cdef uint64_t target
        self.pressure_events += 1
        target = self.ring.acknowledged_index + \
            (self.ring.processed_index - self.ring.acknowledged_index + 1) // 2
        if self.streams is not None:
            self.streams.relieve(target)
        self.ring.acknowledge_unpinned()
        if self.ring.acknowledged_index < target and self.streams is not None:
            self.streams.relieve(self.ring.processed_index)
            self.ring.acknowledge_unpinned()

    cdef bint ring_is_short(self) noexcept:
        """Retained records hold more than 3/4 of the ring's records or bytes."""
        cdef Ring ring = self.ring
        if ring.acknowledged_index == ring.processed_index:
            return False
        return (ring.published_writes() - ring.acknowledged_index
                > ring.record_capacity // 4 * 3
                or ring.arena_used() > ring.arena_bytes // 4 * 3)

    cdef bint wait_until_due(self, int64_t ts_ns, double speed) except *:
        """Pacing: sleep until the trace clock, run `speed` times faster than
        real time from the first paced record, reaches `ts_ns`.  Flows expire
        on the paced clock meanwhile.  False when a stop was requested."""
        cdef int64_t now = clock_ns(CLOCK_MONOTONIC)
        cdef int64_t due
        if self.pace_origin_ts < 0:
            self.pace_origin_ts = ts_ns
            self.pace_origin_wall = now
        due = self.pace_origin_wall + <int64_t>((ts_ns - self.pace_origin_ts) / speed)
        while now < due:
            if self.stop_requested:
                return False
            with nogil:
                sleep_ns(due - now if due - now < PACE_SLICE_NS else PACE_SLICE_NS)
            now = clock_ns(CLOCK_MONOTONIC)
            self.advance_clock((self.pace_origin_ts
                                + (now - self.pace_origin_wall) * speed) * 1e-9)
            PyErr_CheckSignals()
        return not self.stop_requested

    cdef void advance_clock(self, double t) except *:
        """No packet for a while: let timers run up to time `t` (seconds)."""
        if t <= self.flows.now:
            return
        self.flows.now = t
        self.flows.expire(t)
        self.idle_expiries += 1

    cdef void record_latency(self, int64_t ts_ns) noexcept:
        cdef int64_t delay = clock_ns(CLOCK_REALTIME) - ts_ns
        cdef uint32_t bucket
        if delay < 0:
            delay = 0
        bucket = latency_bucket(<uint64_t>delay)
        self.latency_hist[bucket if bucket < LATENCY_BUCKETS else LATENCY_BUCKETS - 1] += 1
        self.latency_count += 1
        if delay > self.latency_max_ns:
            self.latency_max_ns = delay

    def stop(self):
        """Ask run_source/run_capture to return after the batch in hand; during
        run_capture's drain, end the drain (safe in a signal handler)."""
        if self.draining:
            self.drain_aborted = True
        self.stop_requested = True

    def measure_latency(self):
        """Record, per packet, the delay from its capture timestamp (the
        kernel's, or the capture thread's clock) to the moment the engine
        takes it from the ring (live capture; one clock read per packet)."""
        if self.latency_hist == NULL:
            self.latency_hist = <uint64_t*>calloc(LATENCY_BUCKETS, sizeof(uint64_t))
            if self.latency_hist == NULL:
                raise MemoryError()

    def latency_stats(self):
        """{count, median_us, p99_us, p999_us, max_us} of the measured delays
        (percentiles: the top of their histogram bucket, within 1.6%), or None."""
        cdef uint64_t seen = 0
        cdef uint32_t i
        cdef int k = 0
        cdef list ranks, found
        if self.latency_hist == NULL or self.latency_count == 0:
            return None
        n = self.latency_count
        # Nearest rank: the smallest delay with at least q of the packets at or below it.
        ranks = [max(1, -(-n * q // 1000)) for q in (500, 990, 999)]
        found = []
        for i in range(LATENCY_BUCKETS):
            seen += self.latency_hist[i]
            while k < 3 and seen >= <uint64_t>ranks[k]:
                found.append(min(latency_bucket_top(i), <uint64_t>self.latency_max_ns) / 1000.0)
                k += 1
            if k == 3:
                break
        return {"count": n, "median_us": found[0], "p99_us": found[1], "p999_us": found[2],
                "max_us": self.latency_max_ns / 1000.0}

    def finish(self):
        """End of input: report every connection still open."""
        self.flows.flush()
        if self.runtime is not None and self.runtime.watchdog is not None:
            self.runtime.watchdog.close()
        if self.flows.pcap is not None:
            self.flows.pcap.close()

    def stats(self):
        s = {
            "packets": self.packets,
            "wire_bytes": self.wire_bytes,
            "captured_bytes": self.captured_bytes,
            "filtered_out": self.filtered_out,
            "decoded": self.decoded,
            "not_ip": self.decoder.not_ip,
            "other_transport": self.decoder.other_transport,
            "first_ts": self.first_ts_ns * 1e-9 if self.first_ts_ns >= 0 else None,
            "last_ts": self.last_ts_ns * 1e-9 if self.last_ts_ns >= 0 else None,
            "timestamps_out_of_order": self.ts_went_backwards,
            "other_workers": self.other_workers,
            "duplicates": self.duplicates,
            "malformed": self.decoder.malformed_counts(),
        }
        s.update(self.decoder.fragment_stats())
        s.update(self.flows.stats())
        s["ring"] = self.ring.stats()
        s["ring"]["pressure_events"] = self.pressure_events
        s["ring"]["other_workers_elided"] = self.other_workers_elided
        # Records published by the source and not yet processed: read through
        # the ring's atomics, so any thread (a metrics scrape) may ask.
        s["ring"]["backlog"] = self.ring.published_writes() - self.ring.processed_index
        s["ring"]["max_backlog"] = self.max_backlog
        if self.streams is not None:
            s.update(self.streams.stats())
            s.update(self.runtime.counters)
            s["analyser_seconds"] = dict(self.runtime.seconds)
            s["events_by_kind"] = dict(self.runtime.events_by_kind)
        if self.flows.binder is not None:
            s.update(self.flows.binder.stats())
        if self.flows.pcap is not None:
            s.update(self.flows.pcap.stats())
        # Every exception the engine caught, wherever: flow table, binding,
        # event dispatch, streams, callbacks.
        s["engine_errors"] = (self.flows.engine_errors + self.flows.events.errors + self.errors
                              + s.get("binding_errors", 0) + s.get("stream_errors", 0))
        return s
