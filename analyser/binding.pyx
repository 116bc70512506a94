# cython: language_level=3
"""Where the compiled flow table meets Python: binding flows to analysers
(expectations, port hints, content signatures) and dispatching built-in
events to subscribers.

Role in the data flow: flows -> **binding** -> streams / analysers / event
callbacks.  The flow table (flows.pyx) tracks flows and their TCP state and
knows nothing of analysers; it tells the Binder about a new flow, about the
first payload of each side, and about a flow's end, and hands events to
the Dispatcher.  Python runs here once per analysed connection (to bind it)
and once per subscribed event, never per packet otherwise.

Rules:

1. A new flow meets, in order: an expectation (it belongs to the connection
   that announced it: bound to the analyser the expectation names, or counted
   in bulk), the analyser whose port hint is its responder's port, and
   content detection, armed for the first payload of each side.  A TCP
   flow's port analyser starts with the first payload of either side, not
   with the SYN: a connection that never carries a byte costs no Python (a
   SYN flood or a million half-open connections to port 80 would otherwise
   start a greenlet each, far beyond the flow table's memory budget).
2. Signatures are compared in C (`match_signatures`); only a match calls
   Python.  For a flow that an analyser reads already, the matches are only
   remembered in the flow (`detect_owners`) and handed to the runtime if
   that analyser gives up (`candidates_of_slot`).
3. Every exception is caught, counted and reported (`caught`): a failing
   analyser start or event callback never stops the engine.
4. UDP flows meet the same rules with the run's datagram analysers
   (`protocol = "udp"`): their own port hints and signatures, checked on the
   first datagram of each side.  A bound UDP flow has no stream pair: each
   datagram is handed whole to the runtime (`datagram`), until its analyser
   ends (`datagrams_off`), after which the flow is only counted again.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from libc.string cimport memcpy, memset

from analyser.decode cimport Decoded, PROTO_TCP, PROTO_UDP
from analyser.flowstate cimport Flow, uid_text, addr_text
from analyser.streams cimport Streams

cdef enum:  # sig_transports bits
    TRANSPORT_TCP = 1
    TRANSPORT_UDP = 2


cdef uint8_t transport_bit(Flow* f) noexcept:
    return TRANSPORT_TCP if f.proto == PROTO_TCP else (TRANSPORT_UDP if f.proto == PROTO_UDP else 0)


# analyser.runtime's Connection and ConnId, imported at the first connection
# (runtime imports the compiled modules, so not at load time), then kept: an
# import statement in conn_info cost a module lookup per connection.
cdef object _Connection = None
cdef object _ConnId = None


cdef object conn_info(Flow* f):
    """What an analyser knows of its connection (analyser.runtime.Connection)."""
    global _Connection, _ConnId
    if _Connection is None:
        from analyser.runtime import Connection, ConnId
        _Connection, _ConnId = Connection, ConnId
    proto = "tcp" if f.proto == PROTO_TCP else ("udp" if f.proto == PROTO_UDP else "icmp")
    # The named tuple made as tuple.__new__ makes it, without its Python __new__.
    return _Connection(uid_text(f.uid),
                       tuple.__new__(_ConnId, (addr_text(f.orig_addr, f.ip_version),
                                               f.orig_port,
                                               addr_text(f.resp_addr, f.ip_version),
                                               f.resp_port, proto)),
                       f.start_time)


def report_error(report, uint64_t count, str where, exc):
    """Hand a caught exception to `report`, or print the first few."""
    if report is not None:
        report(where, exc)
    elif count <= 10:
        import sys
        print("analyser: error %s: %s: %s" % (where, type(exc).__name__, exc), file=sys.stderr)


cdef class Binder:
    """Binds the flows of one flow table to analysers."""

    def __cinit__(self, runtime, Streams streams, analysers, detect="content"):
        """`analysers`: [(class, config)].  detect="content": signatures on the
        first payload of each side, the responder's port as a hint;
        detect="ports": the responder's port alone."""
        cdef int port, i
        cdef bytes value, mask
        if detect not in ("content", "ports"):
            raise ValueError("detect must be 'content' or 'ports', not %r" % (detect,))
        self.runtime = runtime
        self.streams = streams
        self.pool = NULL
        self.analyser_classes = [None]
        self.detectable = []
        self.expected = {}
        self.slot_flows = {}
        self.ended_services = {}
        self.n_signatures = 0
        cdef uint8_t transports
        memset(self.tcp_port_analyser, 0, sizeof(self.tcp_port_analyser))
        memset(self.udp_port_analyser, 0, sizeof(self.udp_port_analyser))
        self.udp_signatures = False
        self.udp_analysers = False
        runtime.set_classes(analysers)
        runtime.candidates_of_slot = self.candidates_of_slot
        runtime.datagrams_done = self.datagrams_done
        runtime.detecting = detect == "content" and any(cls.signatures for cls, _ in analysers)
        for cls, config in analysers:
            found = cls.transports()
            transports = ((TRANSPORT_TCP if "tcp" in found else 0)
                          | (TRANSPORT_UDP if "udp" in found else 0))
            if not transports:
                continue
            self.analyser_classes.append((cls, config))
            if len(self.analyser_classes) > 255:
                raise ValueError("at most 254 analysers")
            if transports & TRANSPORT_UDP:
                self.udp_analysers = True
            for port in config.get("ports", cls.ports):
                if not 0 < port < 65536:
                    raise ValueError("%s: bad port %r" % (cls.name, port))
                if transports & TRANSPORT_TCP:
                    self.tcp_port_analyser[port] = len(self.analyser_classes) - 1
                if transports & TRANSPORT_UDP:
                    self.udp_port_analyser[port] = len(self.analyser_classes) - 1
            if detect != "content" or not cls.signatures:
                continue
            if transports & TRANSPORT_UDP:
                self.udp_signatures = True
            if len(self.detectable) == MAX_DETECTABLE:
                raise ValueError("at most %d analysers with signatures" % MAX_DETECTABLE)
            self.detectable.append((cls, config))
            for sig in cls.signatures:
                side, value, mask, skip_space = sig.compiled()
                if self.n_signatures == MAX_SIGNATURES:
                    raise ValueError("at most %d signatures over all analysers"
                                     % MAX_SIGNATURES)
                if len(value) > MAX_PATTERN:
                    raise ValueError("%s: a signature longer than %d bytes"
                                     % (cls.name, MAX_PATTERN))
                i = self.n_signatures
                memcpy(self.sig_value[i], <const char*>value, len(value))
                memcpy(self.sig_mask[i], <const char*>mask, len(mask))
                self.sig_len[i] = len(value)
                self.sig_side[i] = side
                self.sig_skip_space[i] = skip_space
                self.sig_owner[i] = len(self.detectable) - 1
                self.sig_transports[i] = transports
                self.n_signatures += 1

    # -- called by the flow table ---------------------------------------------------

    cdef void new_flow(self, Flow* f) noexcept:
        """A new flow: bind it to an expectation or a port analyser, and arm
        content detection (decided in C on the first payload of each side)."""
        cdef uint8_t idx = 0
        cdef object expectation = None
        proto = "tcp" if f.proto == PROTO_TCP else ("udp" if f.proto == PROTO_UDP else "icmp")
        try:
            if self.runtime.expectations:
                expectation = self.runtime.match_expectation(
                    addr_text(f.orig_addr, f.ip_version), addr_text(f.resp_addr, f.ip_version),
                    f.resp_port, proto, f.start_time)
            if expectation is not None:
                f.bound = 1
                self.expected[f.number] = expectation
                if (expectation.analyser is None or transport_bit(f) == 0
                        or proto not in expectation.analyser.transports()):
                    self.runtime.expected_started(expectation, conn_info(f))
                    return            # counted in bulk: no stream, no Python per packet
                self.start_analyser(f, expectation.analyser, {}, [], False)
                return
            if f.proto == PROTO_TCP:
                if self.n_signatures or self.tcp_port_analyser[f.resp_port]:
                    f.detect_pending = 3      # the port analyser starts in first_payload
                return
            elif f.proto == PROTO_UDP and self.udp_analysers:
                if self.udp_signatures:
                    f.detect_pending = 3
                idx = self.udp_port_analyser[f.resp_port]
            if idx:
                cls, config = self.analyser_classes[idx]
                self.start_analyser(f, cls, config, [], True)
        except BaseException as exc:
            self.caught("starting an analyser", exc)

    cdef void first_payload(self, Flow* f, int side, const uint8_t* data,
                            uint32_t n) noexcept:
        """The first payload of a side: which analysers does it look like?"""
        cdef uint64_t owners
        cdef uint8_t idx
        f.detect_pending &= ~(1 << side)
        if f.slot < 0 and f.proto == PROTO_TCP and not f.bound:
            idx = self.tcp_port_analyser[f.resp_port]
            if idx:
                try:
                    cls, config = self.analyser_classes[idx]
                except BaseException as exc:
                    self.caught("starting an analyser", exc)
                else:
                    self.start_analyser(f, cls, config, [], True)
        owners = self.match_signatures(side, data, n, transport_bit(f)) & ~f.detect_owners
        if owners:
            f.detect_owners |= owners
            if f.slot < 0:
                self.detected(f, owners)
            # else an analyser reads the flow already: these are its successors
            # should it give up, fetched then (no Python now).

    cdef void datagram(self, Flow* f, int side, const uint8_t* data, uint32_t n) noexcept:
        """A UDP datagram of a flow with an analyser or a pending first
        payload: detection first, then the analyser gets the datagram whole."""
        if f.detect_pending & (1 << side):
            self.first_payload(f, side, data, n)
        if f.slot < 0 or f.datagrams_off:
            return
        self.datagrams += 1
        try:
            self.runtime.datagram(f.slot, side, data[:n])
        except BaseException as exc:
            self.caught("delivering a datagram", exc)

    def datagrams_done(self, int32_t slot):
        """The datagram analyser of `slot` has ended: count its flow only."""
        cdef int32_t index = self.slot_flows.get(slot, -1)
        if index >= 0 and self.pool != NULL:
            self.pool[index].datagrams_off = 1

    cdef object ending(self, Flow* f):
        """The flow ends: deliver what its streams hold, then say which
        services it had and which expectation it met: (services, expectation)."""
        cdef object services = ()
        cdef object expectation = None
        if f.streams != NULL:
            self.streams.finish(f.streams)
        if f.slot >= 0:
            services = self.runtime.services(f.slot)
        if f.bound:
            expectation = self.expected.pop(f.number, None)
            if (f.slot < 0 and expectation is not None
                    and expectation.meta.get("service")):
                # Counted in bulk: the expectation names the service.
                services = (expectation.meta["service"],)
        for service in services:
            self.ended_services[service] = self.ended_services.get(service, 0) + 1
        return services, expectation

    cdef void ended(self, Flow* f, dict row, object expectation) noexcept:
        """The flow's conn.log row is known: end its analyser, tell the
        connection that expected it."""
        try:
            if f.slot >= 0:
                self.runtime.finish(f.slot)
            if expectation is not None:
                self.runtime.expected_finished(expectation, row)
        except BaseException as exc:
            self.caught("while ending a connection", exc)

    cdef void release(self, Flow* f) noexcept:
        if f.streams != NULL:
            self.streams.destroy(f.streams)
            f.streams = NULL
        if f.slot >= 0:
            self.slot_flows.pop(f.slot, None)
        f.slot = -1

    # -- binding ----------------------------------------------------------------------------

    cdef void start_analyser(self, Flow* f, object cls, object config, list candidates,
                             bint detect) noexcept:
        """Give the flow a stream pair and run `cls` on it (`candidates` next)."""
        try:
            f.slot = self.runtime.new_slot()
            self.slot_flows[f.slot] = <int32_t>(f - self.pool)
            if f.proto == PROTO_TCP:
                f.streams = self.streams.create(f.slot)
            f.datagrams_off = 0
            self.analysed_flows += 1
            conn = conn_info(f)
            if f.bound:
                expectation = self.expected.get(f.number)
                if expectation is not None:
                    self.runtime.expected_started(expectation, conn)
            self.runtime.start(cls, f.slot, conn, config, candidates, None, detect)
        except BaseException as exc:
            self.caught("starting analyser %s" % getattr(cls, "name", cls), exc)

    cdef uint64_t match_signatures(self, int side, const uint8_t* data, uint32_t n,
                                   uint8_t transport) noexcept:
        """Bit i set: analyser `detectable[i]`, running on `transport`, has a
        signature the payload fits."""
        cdef uint64_t owners = 0
        cdef int i, k
        cdef uint32_t start, ws = 0, avail
        cdef bint ok
        while ws < n and (data[ws] == 32 or data[ws] == 9 or data[ws] == 13 or data[ws] == 10):
            ws += 1
        for i in range(self.n_signatures):
            if (self.sig_side[i] != side or (owners >> self.sig_owner[i]) & 1
                    or not (self.sig_transports[i] & transport)):
                continue
            start = ws if self.sig_skip_space[i] else 0
            if start >= n:
                continue
            avail = n - start
            if avail > self.sig_len[i]:
                avail = self.sig_len[i]
            ok = True
            for k in range(avail):
                if (data[start + k] & self.sig_mask[i][k]) != self.sig_value[i][k]:
                    ok = False
                    break
            if ok:
                owners |= (<uint64_t>1) << self.sig_owner[i]
        return owners

    cdef void detected(self, Flow* f, uint64_t owners) noexcept:
        """Signatures matched a flow nobody analyses yet: start the first
        candidate, the others follow it if it gives up."""
        self.detections += 1
        try:
            f.detect_offered |= owners
            found = self.ranked(f, owners)
            self.start_analyser(f, found[0][0], found[0][1], found[1:], True)
        except BaseException as exc:
            self.caught("content detection", exc)

    cdef list ranked(self, Flow* f, uint64_t owners):
        """The analysers of `owners` as candidates, in this order: those whose
        port hint is the responder's port, then a subclass before the class it
        extends (it knows more: GridFTP before FTP), then the run's order."""
        cdef int i
        ranked = []
        for i in range(len(self.detectable)):
            if (owners >> i) & 1:
                cls, config = self.detectable[i]
                hinted = f.resp_port in config.get("ports", cls.ports)
                ranked.append((0 if hinted else 1, -len(cls.__mro__), i))
        ranked.sort()
        return [self.detectable[r[2]] for r in ranked]

    def candidates_of_slot(self, int32_t slot):
        """Candidates found by signatures for an analysed flow and not handed
        over yet (the runtime asks when its analyser gives up unconfirmed)."""
        cdef Flow* f
        cdef int32_t index = self.slot_flows.get(slot, -1)
        cdef uint64_t owners
        if index < 0 or self.pool == NULL:
            return []
        f = &self.pool[index]
        owners = f.detect_owners & ~f.detect_offered
        f.detect_offered |= owners
        return self.ranked(f, owners) if owners else []

    def index_of_slot(self, int32_t slot):
        """The flow-table index of the flow an analyser slot belongs to, or -1."""
        return self.slot_flows.get(slot, -1)

    def release_sides(self, int32_t index, side=None):
        """Stop reassembling one side (or both) of an analysed flow."""
        cdef Flow* f = &self.pool[index]
        if f.streams != NULL:
            for s in ((0, 1) if side is None else (side,)):
                self.streams.release(f.slot, s)

    cdef bint expected_service(self, Flow* f, str name):
        """Does the expectation this flow met name `name` as its service?"""
        expectation = self.expected.get(f.number) if f.bound else None
        return expectation is not None and expectation.meta.get("service") == name

    cdef void caught(self, str where, object exc) noexcept:
        """An exception caught while binding: counted and reported (summary,
        `engine_error` event), never only printed."""
        self.errors += 1
        try:
            report_error(self.runtime.engine_error, self.errors, where, exc)
        except BaseException:
            pass

    def stats(self):
        return {"detections": self.detections, "analysed_flows": self.analysed_flows,
                "datagrams_analysed": self.datagrams,
                "binding_errors": self.errors,
                "connections_by_service": dict(self.ended_services)}


cdef class Dispatcher:
    """Hands built-in events to Python.  The flow table decides which events
    happen and whether anyone listens (its masks, a flow's quiet sides); this
    builds the Python objects and calls the subscriber."""

    def __cinit__(self):
        self.pool = NULL
        self.sink = None
        self.frames = False
        self.report = None

    cdef void deliver(self, uint32_t kind, Flow* f, int side, const Decoded* d,
                      uint64_t a, uint64_t b, double now, int phase, bint payload) noexcept:
        """One event; `payload`: the packet's payload bytes go with it."""
        cdef object packet = None
        cdef object frame = None
        if self.sink is None:
            return
        try:
            if d != NULL:
                packet = (d.tcp_flags, d.seq, d.ack, d.payload_len, d.ip_len,
                          d.payload[:d.payload_caplen] if (payload and d.payload_caplen) else b"")
                if self.frames and d.frame != NULL:
                    frame = (d.linktype, d.frame[:d.frame_caplen], d.frame_wirelen)
            self.sink(kind, <int32_t>(f - self.pool), side, a, b, packet, frame, now, phase)
        except BaseException as exc:
            self.errors += 1
            try:
                report_error(self.report, self.errors, "in an event callback", exc)
            except BaseException:
                pass
