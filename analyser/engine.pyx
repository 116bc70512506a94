# cython: language_level=3
"""The engine loop: source -> ring -> decode -> flows, in compiled code.

Role in the data flow: it owns the ring and drives every packet through
`Decoder.decode()` and `FlowTable.packet()`; connection records leave through
the `on_connection` callable (once per connection, never per packet).

One engine is single-threaded and data-driven, as the seed design asks: it
fills the ring from a source in batches, processes every record in the batch,
then acknowledges what it processed so the source may reuse the space.
Nothing in the per-packet path allocates or touches a Python object.
"""
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t

from ringbuf.ring cimport Ring, PacketRecord
from ringbuf.source cimport Source
from ringbuf.bpf cimport BpfFilter
from analyser.decode cimport Decoder, Decoded, DECODED, NOT_IP, FRAGMENT_HELD, \
    MALFORMED, OTHER_TRANSPORT
from analyser.flows cimport FlowTable
from analyser.streams cimport Streams

import time

cdef enum:
    # Records per fill: small enough that a batch is still in cache when it is
    # processed.  The replay ring is small for the same reason (measured: 4 MiB
    # runs 40% faster than 64 MiB on 1 KB packets); nothing is retained yet.
    BATCH = 256


cdef class Engine:
    """Replays sources through the compiled path; see `analyser.replay`."""
    cdef readonly Ring ring
    cdef readonly Decoder decoder
    cdef readonly FlowTable flows
    cdef readonly Streams streams
    cdef readonly object runtime
    cdef readonly object monitor
    cdef readonly uint64_t pressure_events
    cdef BpfFilter bpf
    cdef readonly uint64_t packets
    cdef readonly uint64_t wire_bytes
    cdef readonly uint64_t captured_bytes
    cdef readonly uint64_t filtered_out
    cdef readonly uint64_t decoded
    cdef readonly int64_t first_ts_ns
    cdef readonly int64_t last_ts_ns
    cdef readonly uint64_t ts_went_backwards

    def __init__(self, *, on_connection=None, bpf=None, bint ignore_checksums=True,
                 timeouts=None, uint32_t flow_capacity=262144,
                 uint64_t ring_records=65536, uint64_t ring_bytes=4 << 20,
                 bint key_on_vlan=False, analysers=None, monitor=None, on_event=None,
                 on_log=None, uint64_t max_stream_bytes=4 << 20,
                 uint64_t max_owned_bytes=1 << 20):
        """analysers: [(Analyser subclass, config dict)]; monitor: an
        analyser.events.Monitor; on_event: callable(dict) for application events."""
        self.ring = Ring(ring_records, ring_bytes, "wait")
        self.decoder = Decoder(not ignore_checksums)
        self.flows = FlowTable(flow_capacity, timeouts, ignore_checksums, key_on_vlan,
                               on_connection)
        self.bpf = BpfFilter(bpf) if bpf else None
        self.runtime = None
        self.streams = None
        self.monitor = monitor
        if analysers:
            from analyser.runtime import Runtime
            from analyser.connrecord import conn_fields
            self.runtime = Runtime(emit=on_event, clock=self.flows.trace_time, log=on_log)
            self.runtime.connection_fields = conn_fields
            self.streams = Streams(self.ring, self.runtime.ready,
                                   max_side_bytes=max_stream_bytes,
                                   max_owned_bytes=max_owned_bytes,
                                   on_event=self.stream_event)
            self.runtime.streams = self.streams
            self.flows.set_analysers(self.runtime, self.streams, analysers)
        if monitor is not None:
            monitor.attach(self.flows)

    def stream_event(self, name, slot, side, a, b):
        """An event the stream layer found (overlapping bytes that differ)."""
        from analyser import events
        if self.monitor is None or not (self.flows.ev_after & events.OVERLAP_DIFFERS):
            return
        index = self.flows.index_of_slot(slot)
        if index >= 0:
            self.monitor.dispatch(events.OVERLAP_DIFFERS, index, side, a, b, None, None,
                                  self.flows.trace_time(), 1)
        self.first_ts_ns = -1
        self.last_ts_ns = -1

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
        if self.bpf is not None and not self.bpf.matches(rec.linktype, data, rec.caplen,
                                                         rec.wirelen):
            self.filtered_out += 1
            return
        if self.decoder.decode(data, rec.caplen, rec.wirelen, rec.linktype, rec.ts_ns,
                               &d) == DECODED:
            self.decoded += 1
            d.record_index = self.ring.processed_index
            d.in_ring = not d.reassembled
            d.frame = data
            d.frame_caplen = rec.caplen
            d.frame_wirelen = rec.wirelen
            d.linktype = rec.linktype
            self.flows.packet(&d, rec.ts_ns * 1e-9)

    def run_source(self, Source source, progress=None, double progress_every=0.5):
        """Process every record of `source`.  `progress(engine, source)` is
        called about every `progress_every` seconds of wall time."""
        cdef PacketRecord* rec
        cdef int n
        cdef uint64_t batches = 0
        cdef uint64_t target
        cdef double next_report = time.monotonic() + progress_every
        while True:
            n = source.fill(self.ring, BATCH)
            while True:
                rec = self.ring.next_unprocessed()
                if rec == NULL:
                    break
                self.process(rec)
                self.ring.mark_processed()
            # Records that no stream holds may be reused.
            self.ring.acknowledge_unpinned()
            if n == 0 and source.eof:
                break
            if n == 0 and self.ring.write_index == self.ring.processed_index:
                # The ring is full of records streams still hold: copy the
                # oldest half out (or give them up as gaps), then go on.
                self.pressure_events += 1
                target = self.ring.acknowledged_index + \
                    (self.ring.processed_index - self.ring.acknowledged_index + 1) // 2
                if self.streams is not None:
                    self.streams.relieve(target)
                self.ring.acknowledge_unpinned()
                if self.ring.acknowledged_index < target and self.streams is not None:
                    self.streams.relieve(self.ring.processed_index)
                    self.ring.acknowledge_unpinned()
            batches += 1
            if progress is not None and (batches & 15) == 0:
                if time.monotonic() >= next_report:
                    progress(self, source)
                    next_report = time.monotonic() + progress_every

    def finish(self):
        """End of input: report every connection still open."""
        self.flows.flush()

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
            "malformed": self.decoder.malformed_counts(),
        }
        s.update(self.decoder.fragment_stats())
        s.update(self.flows.stats())
        s["ring"] = self.ring.stats()
        s["ring"]["pressure_events"] = self.pressure_events
        if self.streams is not None:
            s.update(self.streams.stats())
            s.update(self.runtime.counters)
        return s
