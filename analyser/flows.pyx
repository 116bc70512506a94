# cython: language_level=3
"""Flow table and per-side TCP state, in compiled code.

Role in the data flow: source -> ring -> decode -> **flows** -> analysers -> sinks.

Rules of this module (in the manner of h11's state module):

1. Everything that decides a connection's identity, its originator, its TCP
   state per side, its history letters, its byte counts and when it ends lives
   here, and so does the conn.log row built from them (`record()`;
   conn_state is a pure function of the two end states).
2. Semantics follow Zeek's, because conn.log readers expect them: sizes come
   from sequence numbers (SYN and FIN octets excluded), missed bytes are bytes
   the peer acknowledged that never went past us, history letters are upper
   case for the originator and repeat logarithmically where Zeek's do.
3. No Python object is touched per packet.  Python runs once per connection,
   when its record is handed to `on_finish`.
4. It knows no analysers and no subscribers: it tells the Binder
   (binding.pyx) about a new flow, the first payload of each side and a
   flow's end, gives analysed flows' segments to the stream layer, and hands
   the events it finds to the Dispatcher (binding.pyx).

Theory of operation.  Flows live in one preallocated pool (the memory budget
sets its size) and are found through a chained hash over the canonical
5-tuple.  Each flow is in exactly one timeout list (pf's opening, established,
closing, closed, udp, icmp); every list is ordered by deadline, so expiry only
looks at list heads and costs O(1) per packet.  When the pool is full the flow
nearest to its deadline is evicted and counted; nothing is dropped silently.

Sequence numbers are relative to each side's initial sequence number and
64-bit, with wrap-around tracked as Zeek does (`seq_wraps`), so transfers
above 4 GiB keep exact sizes.

Gap accounting keeps, per side, how far the stream is contiguous
(`reassem_seq`) and a few ranges seen above a hole.  When the peer
acknowledges bytes that never went past us, they are missed bytes (and a `g`
in the history) -- the same rule Zeek applies, without holding any payload.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from libc.string cimport memcpy, memset
from libc.stdlib cimport malloc, calloc, free, qsort

from analyser.decode cimport (Decoded, transport_checksum_ok, PROTO_TCP, PROTO_UDP,
                              PROTO_ICMP, PROTO_ICMP6, TH_FIN, TH_SYN, TH_RST, TH_ACK,
                              TUN_TEREDO, TUN_KIND_COUNT)
from analyser.decode import TUNNEL_SERVICES
from analyser.flowstate cimport (TunnelState, MAX_TUNNEL_PARENTS, MAX_TUNNEL_CHANGES,
                                 TS_CONFIRMED, TS_VALID_ORIG, TS_VALID_RESP)
from analyser.streams cimport Streams, StreamPair
from analyser.flowstate cimport uid_text, addr_text, uid_chars, addr_chars
from analyser.binding cimport Binder, Dispatcher, conn_info
from analyser.binding import report_error
from analyser.logformat cimport TsvRows, format_count, format_time
from analyser.pcapout cimport PcapOut, Pending, PCAP_UNDECIDED, PCAP_SELECTED, PCAP_REJECTED

# Why a connection ended (the conn_end event says it).
cdef enum:
    END_EOF = 0        # end of input
    END_TIMEOUT = 1
    END_EVICTED = 2
    END_REUSED = 3     # a new connection on the same 5-tuple replaced it
    END_CLOSED = 4     # closed (FIN/RST both ways) and its linger passed

END_REASONS = ("end_of_input", "timeout", "evicted", "reused", "closed")

# Events about one side of a connection (stop_monitoring(side) silences them).
cdef uint32_t SIDE_EVENTS = (EV_PACKET | EV_NEW_DATA | EV_RETRANSMISSION | EV_OUT_OF_ORDER
                             | EV_STATE_CHANGE | EV_GAP | EV_OVERLAP_DIFFERS)

cdef enum:
    TOO_LARGE_SEQ_DELTA = 1048576
    MAX_INITIAL_WINDOW = 16384                 # bytes sent before any ACK, then trim
    MAX_ABOVE_HOLE_WITHOUT_ACKS = 16384
    EXCESSIVE_DATA_WITHOUT_ACKS = 10485760

# History masks (per side; the responder's are shifted 16 bits up).
cdef enum:
    HIST_SYN = 0x1
    HIST_FIN = 0x2
    HIST_RST = 0x4
    HIST_FIN_RST = 0x8
    HIST_DATA = 0x10
    HIST_ACK = 0x20
    HIST_MULTI_FLAG = 0x40
    HIST_LIMIT = 0x400         # Zeek's HIST_ANALYZER_LIMIT_REACHED ('X', once)

# first_packet_seen bits
cdef enum:
    SEEN_ORIG = 1
    SEEN_RESP = 2

TIMEOUT_NAMES = ("opening", "established", "closing", "closed", "udp", "icmp")
# Defaults follow Zeek: attempt delay 5 s, inactivity 5 min, close delay 5 s,
# linger 5 s + session timer, UDP and ICMP inactivity 1 min.
DEFAULT_TIMEOUTS = {"opening": 5.0, "established": 300.0, "closing": 6.0,
                    "closed": 5.0, "udp": 60.0, "icmp": 60.0}

STATE_NAMES = ("INACTIVE", "SYN_SENT", "SYN_ACK_SENT", "PARTIAL", "ESTABLISHED",
               "CLOSED", "RESET")

# Ports Zeek's base analysers register as likely servers.  A connection first
# seen without a SYN is turned around when its source port is one of these
# (and its destination is not); that is when history gets its '^'.
LIKELY_TCP_SERVER_PORTS = frozenset((
    21, 22, 23, 25, 53, 79, 80, 81, 88, 135, 139, 143, 389, 443, 445, 465, 502,
    513, 514, 563, 585, 587, 614, 631, 636, 989, 990, 992, 993, 995, 1080,
    1434, 1883, 2811, 3128, 3268, 3306, 3389, 5222, 5223, 5269, 5432, 6379,
    6666, 6667, 6668, 6669, 8000, 8080, 8888, 20000))
LIKELY_UDP_SERVER_PORTS = frozenset((
    53, 67, 68, 88, 123, 137, 161, 162, 389, 443, 514, 784, 853, 1812, 2123,
    2152, 3389, 3544, 4011, 4754, 4789, 5060, 5072, 5353, 5355, 6081, 20000))

cdef uint8_t likely_tcp[65536]
cdef uint8_t likely_udp[65536]
memset(likely_tcp, 0, sizeof(likely_tcp))
memset(likely_udp, 0, sizeof(likely_udp))
for _p in LIKELY_TCP_SERVER_PORTS:
    likely_tcp[_p] = 1
for _p in LIKELY_UDP_SERVER_PORTS:
    likely_udp[_p] = 1

# ICMP request/reply pairs share a connection: the key's "ports" are the
# message type and the type that answers it (for one-way messages, the code).
cdef int icmp4_counterpart(int t, int code, bint* one_way) noexcept:
    one_way[0] = False
    if t == 8: return 0
    if t == 0: return 8
    if t == 13: return 14
    if t == 14: return 13
    if t == 15: return 16
    if t == 16: return 15
    if t == 17: return 18
    if t == 18: return 17
    if t == 10: return 9
    if t == 9: return 10
    one_way[0] = True
    return code

cdef int icmp6_counterpart(int t, int code, bint* one_way) noexcept:
    one_way[0] = False
    if t == 128: return 129
    if t == 129: return 128
    if t == 133: return 134
    if t == 134: return 133
    if t == 135: return 136
    if t == 136: return 135
    if t == 130: return 131
    if t == 131: return 130
    if t == 139: return 140
    if t == 140: return 139
    one_way[0] = True
    return code

cdef inline bint window_is_zero(const Decoded* d) noexcept nogil:
    return d.proto == PROTO_TCP and d.window == 0

cdef bint is_private_address(const uint8_t* a) noexcept nogil:
    """Zeek's default Site::private_address_space (local_orig/local_resp):
    10/8, 192.168/16, 172.16/12, 100.64/10, 127/8, fe80::/10, fc00::/7, ::1."""
    cdef int i
    cdef bint v4 = True
    for i in range(10):
        if a[i] != 0:
            v4 = False
    if v4 and a[10] == 0xff and a[11] == 0xff:
        return (a[12] == 10 or (a[12] == 192 and a[13] == 168)
                or (a[12] == 172 and (a[13] & 0xf0) == 16)
                or (a[12] == 100 and (a[13] & 0xc0) == 64) or a[12] == 127)
    if a[0] == 0xfe and (a[1] & 0xc0) == 0x80:
        return True
    if (a[0] & 0xfe) == 0xfc:
        return True
    for i in range(15):
        if a[i] != 0:
            return False
    return a[15] == 1

# conn_state, as Zeek's conn/main.zeek derives it from the two end states
# (rules in Zeek's order).  "Inactive" ends are INACTIVE or PARTIAL.
cdef inline bint inactive_end(uint8_t s) noexcept nogil:
    return s == TCP_INACTIVE or s == TCP_PARTIAL

cdef const char* tcp_conn_state(uint8_t os, uint8_t rs, uint64_t orig_size,
                                uint64_t resp_size, const char* history,
                                int hist_len) noexcept nogil:
    if rs == TCP_RESET:
        if (os == TCP_SYN_SENT or os == TCP_SYN_ACK_SENT
                or (os == TCP_RESET and orig_size == 0 and resp_size == 0)):
            return b"REJ"
        return b"RSTRH" if inactive_end(os) else b"RSTR"
    if os == TCP_RESET:
        if inactive_end(rs):
            return b"RSTOS0" if syn_then_reset(history, hist_len) else b"OTH"
        return b"RSTO"
    if os == TCP_CLOSED and rs == TCP_CLOSED:
        return b"SF"
    if os == TCP_CLOSED:
        return b"SH" if inactive_end(rs) else b"S2"
    if rs == TCP_CLOSED:
        return b"SHR" if inactive_end(os) else b"S3"
    if os == TCP_SYN_SENT and rs == TCP_INACTIVE:
        return b"S0"
    if os == TCP_ESTABLISHED and rs == TCP_ESTABLISHED:
        return b"S1"
    return b"OTH"

cdef bint syn_then_reset(const char* h, int n) noexcept nogil:
    """Zeek's RSTOS0 pattern /^?S[^HAFGIQ]*R.*/ on the history."""
    cdef int i = 1 if (n > 0 and h[0] == b'^') else 0
    if i >= n or h[i] != b'S':
        return False
    i += 1
    while i < n:
        if h[i] == b'R':
            return True
        if (h[i] == b'H' or h[i] == b'A' or h[i] == b'F' or h[i] == b'G'
                or h[i] == b'I' or h[i] == b'Q'):
            return False
        i += 1
    return False

cdef const char* udp_conn_state(bint orig_active, bint resp_active) noexcept nogil:
    if orig_active:
        return b"SF" if resp_active else b"S0"
    return b"SHR" if resp_active else b"OTH"

cdef inline int32_t seq_delta(uint32_t a, uint32_t b) noexcept nogil:
    return <int32_t>(a - b)

cdef inline uint64_t mix64(uint64_t z) noexcept nogil:
    # splitmix64 finaliser: cheap and well spread.
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL
    return z ^ (z >> 31)

cdef inline uint64_t load64(const uint8_t* p) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return v

cdef extern from *:
    """
    static inline uint64_t flows_bswap64(uint64_t v) { return __builtin_bswap64(v); }
    """
    uint64_t flows_bswap64(uint64_t v) noexcept nogil

# Addresses are compared on every packet: two 64-bit words each, inline,
# rather than a call to the C library's memcmp.
cdef inline bint same16(const uint8_t* x, const uint8_t* y) noexcept nogil:
    return load64(x) == load64(y) and load64(x + 8) == load64(y + 8)

cdef inline bint above16(const uint8_t* x, const uint8_t* y) noexcept nogil:
    """memcmp(x, y, 16) > 0, inline: as two big-endian 64-bit numbers."""
    cdef uint64_t u = flows_bswap64(load64(x))
    cdef uint64_t v = flows_bswap64(load64(y))
    if u != v:
        return u > v
    return flows_bswap64(load64(x + 8)) > flows_bswap64(load64(y + 8))

cdef inline uint64_t flow_key_hash(const uint8_t* a, const uint8_t* b, uint16_t pa,
                                   uint16_t pb, uint8_t proto, uint16_t vlan) noexcept nogil:
    """The hash of a canonical key (lo side first: see FlowTable.lookup_or_create)."""
    return mix64(load64(a) ^ mix64(load64(a + 8) ^ mix64(load64(b) ^ mix64(load64(b + 8)
                 ^ ((<uint64_t>pa << 32) | (<uint64_t>pb << 16) | proto
                    | (<uint64_t>vlan << 48))))))

cdef struct OpenFlow:          # FlowTable.flush: a flow still open at the end
    uint64_t child_last        # 0: bound to an expectation (reported first), 1: not
    uint64_t number
    int32_t index

cdef int open_flow_order(const void* x, const void* y) noexcept nogil:
    cdef const OpenFlow* a = <const OpenFlow*>x
    cdef const OpenFlow* b = <const OpenFlow*>y
    if a.child_last != b.child_last:
        return -1 if a.child_last < b.child_last else 1
    if a.number != b.number:
        return -1 if a.number < b.number else 1
    return 0

cdef inline bint is_handshake(uint8_t s) noexcept nogil:
    return s == TCP_INACTIVE or s == TCP_SYN_SENT or s == TCP_SYN_ACK_SENT

cdef inline void set_state(Endpoint* e, uint8_t new_state) noexcept nogil:
    if new_state != e.state:
        e.prev_state = e.state
        e.state = new_state

cdef inline uint64_t full_seq(uint32_t seq, uint32_t wraps) noexcept nogil:
    return (<uint64_t>wraps << 32) + seq

cdef inline uint64_t endpoint_size(const Endpoint* e, const Endpoint* peer) noexcept nogil:
    """Bytes sent by this side per sequence numbers (SYN and FIN excluded)."""
    cdef uint64_t size, last64, ack64
    if (e.prev_state == TCP_SYN_SENT and e.state == TCP_RESET
            and peer.state == TCP_INACTIVE and not no_data_acked(e)):
        return 0      # a half-open connection found and aborted
    last64 = full_seq(e.last_seq, e.seq_wraps)
    ack64 = full_seq(e.ack_seq, e.ack_wraps)
    if last64 > ack64:
        size = last64 - <uint64_t>e.start_seq
    else:
        size = ack64 - <uint64_t>e.start_seq
    if size != 0:
        size -= 1
    if e.fin_cnt > 0 and size != 0:
        size -= 1
    return size

cdef inline bint no_data_acked(const Endpoint* e) noexcept nogil:
    cdef uint64_t ack = full_seq(e.ack_seq, e.ack_wraps)
    cdef uint64_t start = <uint64_t>e.start_seq
    return ack == start or ack == start + 1

cdef inline bint is_clean(const Endpoint* e) noexcept nogil:
    return e.state == TCP_ESTABLISHED or (e.state == TCP_CLOSED and e.prev_state == TCP_ESTABLISHED)


cdef struct ConnFigures:
    uint64_t orig_size
    uint64_t resp_size
    uint64_t missed
    double duration
    bint productive
    const char* state
    const char* proto


cdef void conn_figures(Flow* f, ConnFigures* c) noexcept:
    """What conn.log says of a flow beyond its key and counters: sizes (from
    sequence numbers for TCP), missed bytes, conn_state, duration."""
    cdef Endpoint* o = &f.ep[0]
    cdef Endpoint* r = &f.ep[1]
    c.duration = f.last_time - f.start_time
    c.productive = c.duration > 0
    if f.proto == PROTO_TCP:
        c.orig_size = endpoint_size(o, r)
        c.resp_size = endpoint_size(r, o)
        c.state = tcp_conn_state(o.state, r.state, c.orig_size, c.resp_size,
                                 f.history, f.hist_len)
        c.missed = o.missed_bytes + r.missed_bytes
        c.proto = b"tcp"
    else:
        c.orig_size = o.udp_bytes if o.udp_bytes > 0 else 0
        c.resp_size = r.udp_bytes if r.udp_bytes > 0 else 0
        c.missed = 0
        if f.proto == PROTO_UDP:
            c.state = udp_conn_state(o.udp_bytes >= 0, r.udp_bytes >= 0)
            c.proto = b"udp"
        else:
            c.state = b"OTH"
            c.proto = b"icmp"


cdef inline int tab(char* out, int n) noexcept nogil:
    """A tab at out[n]; the length after it."""
    out[n] = 9
    return n + 1


cdef inline int count_tab(char* out, int n, uint64_t v) noexcept nogil:
    """A count's digits at out[n], then a tab; the length after them."""
    return tab(out, n + format_count(out + n, v))


cdef inline int copy_cstr(char* out, const char* text) noexcept nogil:
    """Copy a NUL-terminated string (short, known: proto, conn_state); its length."""
    cdef int n = 0
    while text[n] != 0:
        out[n] = text[n]
        n += 1
    return n


cdef class FlowTable:
    """All flows of one engine: lookup, TCP/UDP/ICMP state, timeouts, records."""

    def __cinit__(self, uint32_t capacity=DEFAULT_FLOW_CAPACITY, timeouts=None, bint ignore_checksums=False,
                  bint key_on_vlan=False, on_finish=None, uint64_t uid_seed=0x5eed):
        # Buckets start small and double with the live flows (see grow_buckets):
        # a table sized for the whole budget would be touched at random and
        # miss the cache on every lookup.
        cdef uint32_t nb = 4096
        cdef int i
        if capacity < 16:
            capacity = 16
        self.capacity = capacity
        self.pool = <Flow*>malloc(sizeof(Flow) * capacity)
        self.buckets = <int32_t*>malloc(sizeof(int32_t) * nb)
        if self.pool == NULL or self.buckets == NULL:
            raise MemoryError("cannot allocate a flow table of %d flows" % capacity)
        for i in range(nb):
            self.buckets[i] = -1
        self.bucket_mask = nb - 1
        self.free_head = -1
        self.next_unused = 0
        for i in range(T_CLASS_COUNT):
            self.list_head[i] = -1
            self.list_tail[i] = -1
        t = dict(DEFAULT_TIMEOUTS)
        if timeouts:
            for k, v in timeouts.items():
                if k not in t:
                    raise ValueError("unknown timeout %r (known: %s)" % (k, ", ".join(TIMEOUT_NAMES)))
                if v <= 0:
                    raise ValueError("timeout %s must be positive, got %r" % (k, v))
                t[k] = float(v)
        for i in range(T_CLASS_COUNT):
            self.timeout[i] = t[TIMEOUT_NAMES[i]]
        self.ignore_checksums = ignore_checksums
        self.key_on_vlan = key_on_vlan
        self.on_finish = on_finish
        self.uid_seed = uid_seed
        self.now = 0.0
        self.binder = None
        self.streams = None
        self.events = Dispatcher()
        self.events.pool = self.pool
        self.ev_before = 0
        self.ev_after = 0

    def set_analysers(self, runtime, Streams streams, analysers, detect="content"):
        """Enable analysers: `analysers` is a list of (class, config), bound to
        flows by a binding.Binder (see there for detect="content" or "ports")."""
        self.binder = Binder(runtime, streams, analysers, detect)
        self.binder.pool = self.pool
        self.streams = streams
        self.events.report = runtime.engine_error

    def __dealloc__(self):
        cdef uint32_t i
        if self.tunnel_of != NULL:
            for i in range(self.capacity):
                free(self.tunnel_of[i])
            free(self.tunnel_of)
        free(self.pool)
        free(self.buckets)

    @staticmethod
    def bytes_per_flow():
        return sizeof(Flow) + 2 * sizeof(int32_t)

    # -- timeout lists --------------------------------------------------------

    cdef void list_remove(self, Flow* f) noexcept:
        cdef int c = f.tclass
        if f.list_prev >= 0:
            self.pool[f.list_prev].list_next = f.list_next
        else:
            self.list_head[c] = f.list_next
        if f.list_next >= 0:
            self.pool[f.list_next].list_prev = f.list_prev
        else:
            self.list_tail[c] = f.list_prev
        f.list_prev = f.list_next = -1

    cdef void list_append(self, Flow* f, int tclass, double deadline) noexcept:
        cdef int32_t idx = <int32_t>(f - self.pool)
        f.tclass = tclass
        f.deadline = deadline
        f.list_next = -1
        f.list_prev = self.list_tail[tclass]
        if self.list_tail[tclass] >= 0:
            self.pool[self.list_tail[tclass]].list_next = idx
        else:
            self.list_head[tclass] = idx
        self.list_tail[tclass] = idx

    cdef void reclassify(self, Flow* f) noexcept:
        """Put the flow in the timeout list its state calls for."""
        cdef Endpoint* o = &f.ep[0]
        cdef Endpoint* r = &f.ep[1]
        cdef int c
        cdef double deadline
        if f.proto == PROTO_UDP:
            c = T_UDP
        elif f.proto != PROTO_TCP:
            c = T_ICMP
        elif f.tclass == T_CLOSED:
            return          # the close delay runs from the close, not from later packets
        elif (o.did_close or r.did_close) and (
                (o.did_close and r.did_close) or o.state == TCP_RESET or r.state == TCP_RESET
                or o.state == TCP_INACTIVE or r.state == TCP_INACTIVE):
            c = T_CLOSING
        elif ((o.state == TCP_SYN_SENT or o.state == TCP_SYN_ACK_SENT) and r.state == TCP_INACTIVE):
            c = T_OPENING
            if f.tclass == T_OPENING:
                return      # the attempt timer runs from the first SYN
        else:
            c = T_ESTABLISHED
        deadline = f.last_time + self.timeout[c]
        self.list_remove(f)
        self.list_append(f, c, deadline)

    cdef void mark_closed(self, Flow* f) noexcept:
        self.list_remove(f)
        self.list_append(f, T_CLOSED, f.last_time + self.timeout[T_CLOSED])

    cdef void expire(self, double t) noexcept:
        cdef int c
        cdef int32_t idx
        for c in range(T_CLASS_COUNT):
            while self.list_head[c] >= 0:
                idx = self.list_head[c]
                if self.pool[idx].deadline >= t:
                    break
                if c == T_CLOSED:
                    self.pool[idx].end_reason = END_CLOSED
                else:
                    self.timeouts += 1
                    self.pool[idx].end_reason = END_TIMEOUT
                    if (self.ev_after & EV_TIMEOUT) and self.pool[idx].quiet != 3:
                        self.fire(EV_TIMEOUT, &self.pool[idx], 0, NULL, 0, 0)
                self.finish(&self.pool[idx])

    # -- lookup ---------------------------------------------------------------

    cdef Flow* lookup_or_create(self, const Decoded* d, double t, bint* is_orig,
                                bint* created) noexcept:
        cdef const uint8_t* a = d.src
        cdef const uint8_t* b = d.dst
        cdef uint16_t pa = d.sport
        cdef uint16_t pb = d.dport
        cdef bint one_way = False
        cdef uint64_t h
        cdef int32_t idx
        cdef Flow* f
        cdef int i
        cdef uint16_t vlan = d.vlan if self.key_on_vlan else 0
        created[0] = False
        if d.proto == PROTO_ICMP or d.proto == PROTO_ICMP6:
            if d.proto == PROTO_ICMP:
                pb = <uint16_t>icmp4_counterpart(d.icmp_type, d.icmp_code, &one_way)
            else:
                pb = <uint16_t>icmp6_counterpart(d.icmp_type, d.icmp_code, &one_way)
            pa = d.icmp_type
        if above16(a, b) or (pa > pb and same16(a, b)):
            a, b = b, a
            pa, pb = pb, pa
        h = flow_key_hash(a, b, pa, pb, d.proto, vlan)
        idx = self.buckets[h & self.bucket_mask]
        while idx >= 0:
            f = &self.pool[idx]
            if (f.key_hash == h and f.port_lo == pa and f.port_hi == pb and f.proto == d.proto
                    and f.vlan == vlan and same16(f.key_lo, a) and same16(f.key_hi, b)):
                if d.proto == PROTO_ICMP or d.proto == PROTO_ICMP6:
                    is_orig[0] = same16(d.src, f.orig_addr) and d.icmp_type == f.orig_port
                else:
                    is_orig[0] = same16(d.src, f.orig_addr) and d.sport == f.orig_port
                return f
            idx = f.hash_next
        # A new flow: take a free slot, or make one by evicting.
        if self.active_flows + 1 > self.bucket_mask:
            self.grow_buckets()
        if self.free_head >= 0:
            idx = self.free_head
            self.free_head = self.pool[idx].hash_next
        elif self.next_unused < self.capacity:
            idx = self.next_unused
            self.next_unused += 1
        else:
            idx = self.evict_one()
            if idx < 0:
                return NULL
        f = &self.pool[idx]
        memset(f, 0, sizeof(Flow))
        f.in_use = 1
        f.proto = d.proto
        f.ip_version = d.ip_version
        memcpy(f.key_lo, a, 16)
        memcpy(f.key_hi, b, 16)
        f.port_lo = pa
        f.port_hi = pb
        f.vlan = vlan
        f.key_hash = h
        f.hash_next = self.buckets[h & self.bucket_mask]
        self.buckets[h & self.bucket_mask] = idx
        memcpy(f.orig_addr, d.src, 16)
        memcpy(f.resp_addr, d.dst, 16)
        if d.proto == PROTO_ICMP or d.proto == PROTO_ICMP6:
            f.orig_port = d.icmp_type
            f.resp_port = pb if d.icmp_type == pa else pa
        else:
            f.orig_port = d.sport
            f.resp_port = d.dport
        f.start_time = t
        f.last_time = t
        f.number = self.flows_created
        # From the connection's key and first microsecond, not from the order
        # of creation: the same connection gets the same uid whichever worker
        # process (--workers) sees it.
        f.uid = mix64(self.uid_seed ^ h ^ mix64(<uint64_t><int64_t>(t * 1000000.0)))
        for i in range(2):
            f.ep[i].state = TCP_INACTIVE
            f.ep[i].prev_state = TCP_INACTIVE
            f.ep[i].chk_thresh = 1
            f.ep[i].rxmt_thresh = 1
            f.ep[i].win0_thresh = 1
            f.ep[i].gap_thresh = 1
            f.ep[i].udp_bytes = -1
            f.ep[i].reassem_seq = 1
        f.list_prev = f.list_next = -1
        f.slot = -1
        f.streams = NULL
        f.tclass = T_ESTABLISHED
        self.list_append(f, T_ESTABLISHED, t + self.timeout[T_ESTABLISHED])
        self.flows_created += 1
        self.active_flows += 1
        if self.active_flows > self.max_active_flows:
            self.max_active_flows = self.active_flows
        if d.proto == PROTO_TCP:
            self.flows_by_proto_tcp += 1
        elif d.proto == PROTO_UDP:
            self.flows_by_proto_udp += 1
        else:
            self.flows_by_proto_icmp += 1
        is_orig[0] = True
        created[0] = True
        self.want_connection(f, d)
        if f.orig_port != (d.icmp_type if (d.proto == PROTO_ICMP or d.proto == PROTO_ICMP6)
                           else d.sport) or not same16(f.orig_addr, d.src):
            is_orig[0] = False
        if self.binder is not None:
            self.binder.new_flow(f)
        if self.pcap is not None:
            try:
                f.pcap_state = self.pcap.first_decision(d.linktype, d.frame, d.frame_caplen,
                                                        d.frame_wirelen)
                if (f.pcap_state == PCAP_UNDECIDED and self.pcap.kind == "service"
                        and self.binder is not None
                        and self.binder.expected_service(f, self.pcap.value)):
                    f.pcap_state = PCAP_SELECTED      # a data channel: known at once
            except BaseException as exc:
                self.caught("choosing connections for --pcap-out", exc)
        return f

    cdef void grow_buckets(self) noexcept:
        """Double the bucket array and re-chain every live flow (amortised O(1))."""
        cdef uint32_t nb = (self.bucket_mask + 1) * 2
        cdef int32_t* grown = <int32_t*>malloc(sizeof(int32_t) * nb)
        cdef uint32_t i
        cdef Flow* f
        if grown == NULL:
            return          # keep the longer chains rather than fail
        for i in range(nb):
            grown[i] = -1
        for i in range(self.next_unused):
            f = &self.pool[i]
            if f.in_use:
                f.hash_next = grown[f.key_hash & (nb - 1)]
                grown[f.key_hash & (nb - 1)] = <int32_t>i
        free(self.buckets)
        self.buckets = grown
        self.bucket_mask = nb - 1

    cdef void want_connection(self, Flow* f, const Decoded* d) noexcept:
        """Decide on the first packet who is the originator (Zeek's rules)."""
        cdef bint flip = False
        if d.proto == PROTO_TCP:
            if not (d.tcp_flags & TH_SYN) or (d.tcp_flags & TH_ACK):
                # No SYN, or a SYN-ACK: guess the server by its port.
                if likely_tcp[d.sport]:
                    if likely_tcp[d.dport]:
                        flip = not (d.tcp_flags & TH_SYN) and d.sport < d.dport
                    else:
                        flip = True
        elif d.proto == PROTO_UDP:
            flip = likely_udp[d.sport] and not likely_udp[d.dport]
        if flip and not self.is_broadcast(d.src):
            self.flip_roles(f)

    cdef bint is_broadcast(self, const uint8_t* addr) noexcept:
        # After a flip the packet's source becomes the responder.
        cdef int i
        for i in range(10):
            if addr[i] != 0:
                return False
        return addr[10] == 0xff and addr[11] == 0xff and addr[12] == 0xff and \
            addr[13] == 0xff and addr[14] == 0xff and addr[15] == 0xff

    cdef int32_t evict_one(self) noexcept:
        """Free the flow nearest its deadline (memory budget reached)."""
        cdef int c, best = -1
        cdef int32_t idx
        for c in range(T_CLASS_COUNT):
            if self.list_head[c] >= 0:
                if best < 0 or self.pool[self.list_head[c]].deadline < \
                        self.pool[self.list_head[best]].deadline:
                    best = c
        if best < 0:
            return -1
        idx = self.list_head[best]
        self.evictions += 1
        self.pool[idx].end_reason = END_EVICTED
        self.finish(&self.pool[idx])
        # finish() put the slot on the free list; take it back.
        self.free_head = self.pool[idx].hash_next
        return idx

    # -- history --------------------------------------------------------------

    cdef void add_history(self, Flow* f, char code) noexcept:
        if f.hist_len < HISTORY_MAX:
            f.history[f.hist_len] = code
            f.hist_len += 1

    cdef bint conn_check_history(self, Flow* f, uint32_t mask, char code) noexcept:
        """Add `code` the first time `mask` is seen.  True if seen before."""
        if (f.hist_seen & mask) == 0:
            f.hist_seen |= mask
            self.add_history(f, code)
            return False
        return True

    cdef bint scaled_history(self, Flow* f, char code, uint32_t* counter,
                                    uint32_t* threshold) noexcept:
        """Letters like t, g, c repeat at 1, 10, 100 ... occurrences."""
        cdef uint32_t nxt
        counter[0] += 1
        if counter[0] == threshold[0]:
            self.add_history(f, code)
            nxt = threshold[0] * 10
            if nxt <= threshold[0]:
                counter[0] = 0
            else:
                threshold[0] = nxt
            return True
        return False

    cdef void flip_roles(self, Flow* f) noexcept:
        cdef uint8_t tmp[16]
        cdef uint16_t tp
        cdef Endpoint te
        memcpy(tmp, f.orig_addr, 16)
        memcpy(f.orig_addr, f.resp_addr, 16)
        memcpy(f.resp_addr, tmp, 16)
        tp = f.orig_port
        f.orig_port = f.resp_port
        f.resp_port = tp
        te = f.ep[0]
        f.ep[0] = f.ep[1]
        f.ep[1] = te
        f.first_packet_seen = ((SEEN_RESP if f.first_packet_seen & SEEN_ORIG else 0)
                               | (SEEN_ORIG if f.first_packet_seen & SEEN_RESP else 0))
        f.is_partial = 0
        self.add_history(f, b'^')
        if f.streams != NULL:
            self.streams.swap_sides(f.streams)

    # -- per packet -----------------------------------------------------------

    cdef void packet(self, const Decoded* d, double t) noexcept:
        cdef bint is_orig = True
        cdef bint created = False
        cdef Flow* f
        if d.n_tunnels and not self.in_layers:
            self.layers(d, t)
        self.now = t
        self.expire(t)
        f = self.lookup_or_create(d, t, &is_orig, &created)
        if f == NULL:
            return
        if d.proto == PROTO_TCP:
            if not created and self.is_reuse(f, d):
                # A new connection on an old 5-tuple: report the old one.
                f.end_reason = END_REUSED
                self.finish(f)
                f = self.lookup_or_create(d, t, &is_orig, &created)
                if f == NULL:
                    return
        self.last_flow = f
        if self.tunnel_of != NULL:
            self.encapsulation(f, d, created)
        if self.pcap is not None and f.pcap_state != PCAP_REJECTED:
            self.pcap_packet(f, d, t)
        if created and ((self.ev_before | self.ev_after) & EV_CONN_START):
            self.phase = 2
            self.fire(EV_CONN_START, f, 0, d, 0, 0)
        self.pkt_events = 0
        self.phase = 0
        if self.ev_before and f.quiet != 3:
            self.fire_packet_events(f, is_orig, d, self.ev_before & ~EV_CONN_START,
                                    self.classify(f, is_orig, d))
        self.phase = 1
        if d.proto == PROTO_TCP:
            self.tcp_packet(f, is_orig, d, t)
        else:
            self.udp_packet(f, is_orig, d, t)
            if d.payload_len:
                self.pkt_events |= EV_NEW_DATA
            if d.tunnel_kind or d.too_deep:
                self.carrier(f, d, is_orig)
        if self.ev_after and f.quiet != 3:
            # The packet's sender may have changed role during the update.
            if d.proto == PROTO_ICMP or d.proto == PROTO_ICMP6:
                is_orig = same16(d.src, f.orig_addr) and d.icmp_type == f.orig_port
            else:
                is_orig = same16(d.src, f.orig_addr) and d.sport == f.orig_port
            self.fire_packet_events(f, is_orig, d, self.ev_after, self.pkt_events | EV_PACKET)
        self.reclassify(f)

    # -- tunnels ---------------------------------------------------------------

    cdef void layers(self, const Decoded* d, double t) noexcept:
        """The encapsulations a packet came through, outermost first: a UDP
        tunnel's datagram is a packet of its own connection (whose
        encapsulation is the layers before it); an IP or GRE tunnel is named
        by its address pair.  Leaves the stack's identity and uids for the
        inner packet (encapsulation())."""
        cdef int i
        cdef Decoded* layer
        cdef uint64_t uid
        cdef const uint8_t* a
        cdef const uint8_t* b
        if self.tunnel_of == NULL:
            self.tunnel_of = <TunnelState**>calloc(self.capacity, sizeof(TunnelState*))
            if self.tunnel_of == NULL:
                return
        self.in_layers = True
        self.encap_hash = 0
        self.stack_layers = d.tunnels
        for i in range(d.n_tunnels):
            layer = &d.tunnels[i]
            layer.record_index = d.record_index
            layer.in_ring = not layer.reassembled
            layer.frame = d.frame
            layer.frame_caplen = d.frame_caplen
            layer.frame_wirelen = d.frame_wirelen
            layer.linktype = d.linktype
            self.stack_flow[i] = -1
            uid = 0
            if layer.proto == PROTO_UDP:
                self.last_flow = NULL
                self.packet(layer, t)
                if self.last_flow != NULL:
                    uid = self.last_flow.uid
                    self.stack_flow[i] = <int32_t>(self.last_flow - self.pool)
            else:
                # As Zeek: one uid per address pair, whichever direction.
                a, b = layer.src, layer.dst
                if above16(a, b):
                    a, b = b, a
                uid = mix64(self.uid_seed ^ 0x49505455ULL ^ mix64(load64(a) ^ mix64(
                    load64(a + 8) ^ mix64(load64(b) ^ mix64(load64(b + 8) ^ layer.tunnel_kind)))))
            self.stack_uid[i] = uid
            self.encap_hash = mix64(self.encap_hash ^ uid ^ layer.tunnel_kind) | 1
        self.in_layers = False

    cdef void encapsulation(self, Flow* f, const Decoded* d, bint created) noexcept:
        """Zeek's rules for a connection's encapsulation: the innermost
        tunnel's uid goes into tunnel_parents when the connection starts and
        whenever its encapsulation changes (at most MAX_TUNNEL_CHANGES times,
        then 'X'); every tunnel of the stack is discovered then (tunnel.log)."""
        cdef int32_t idx = <int32_t>(f - self.pool)
        cdef TunnelState* ts = self.tunnel_of[idx]
        cdef uint64_t h = self.encap_hash if d.n_tunnels else 0
        cdef uint64_t parent
        cdef int i
        if ts == NULL:
            if h == 0:
                return
            ts = <TunnelState*>calloc(1, sizeof(TunnelState))
            if ts == NULL:
                return
            self.tunnel_of[idx] = ts
            if not created:
                ts.changes = 1             # untunnelled until now: a change
        elif ts.encap == h:
            return
        elif ts.changes >= MAX_TUNNEL_CHANGES:
            ts.encap = h
            self.tunnel_changes_dropped += 1
            self.conn_check_history(f, HIST_LIMIT, b'X')
            return
        else:
            ts.changes += 1
        ts.encap = h
        if h == 0:
            return
        parent = self.stack_uid[d.n_tunnels - 1]
        for i in range(ts.n_parents):
            if ts.parents[i] == parent:
                break
        else:
            if ts.n_parents < MAX_TUNNEL_PARENTS:
                ts.parents[ts.n_parents] = parent
                ts.n_parents += 1
        if self.tunnel_log is not None:
            self.discover(d.n_tunnels)

    cdef void discover(self, int n) noexcept:
        """Hand the first n tunnels of the stack to tunnel.log (it writes
        those it does not know yet)."""
        cdef int i
        cdef Flow* c
        cdef const Decoded* layer
        cdef list rows = []
        try:
            for i in range(n):
                layer = &self.stack_layers[i]
                c = &self.pool[self.stack_flow[i]] if self.stack_flow[i] >= 0 else NULL
                if c != NULL and c.in_use and c.uid == self.stack_uid[i]:
                    rows.append((layer.tunnel_kind, uid_text(c.uid),
                                 addr_text(c.orig_addr, c.ip_version), c.orig_port,
                                 addr_text(c.resp_addr, c.ip_version), c.resp_port))
                else:
                    rows.append((layer.tunnel_kind, uid_text(self.stack_uid[i]),
                                  addr_text(layer.src, layer.ip_version), 0,
                                  addr_text(layer.dst, layer.ip_version), 0))
            self.tunnel_log.discover(self.now, rows)
        except BaseException as exc:
            self.caught("writing tunnel.log", exc)

    cdef void carrier(self, Flow* f, const Decoded* d, bint is_orig) noexcept:
        """A UDP datagram that carried a tunnel (or one too deep to open)."""
        if d.too_deep:
            self.conn_check_history(f, HIST_LIMIT, b'X')
        if d.tunnel_kind:
            f.tunnel_kind = d.tunnel_kind
            if d.tunnel_ok:
                if d.tunnel_kind == TUN_TEREDO:
                    # Zeek's Tunnel::delay_teredo_confirmation: both sides first.
                    f.tunnel_state |= TS_VALID_ORIG if is_orig else TS_VALID_RESP
                    if (f.tunnel_state & (TS_VALID_ORIG | TS_VALID_RESP)) == \
                            (TS_VALID_ORIG | TS_VALID_RESP):
                        f.tunnel_state |= TS_CONFIRMED
                else:
                    f.tunnel_state |= TS_CONFIRMED

    def set_tunnel_log(self, tunnel_log):
        """Where tunnels go when found and when their connection ends (an
        analyser.tunnels.TunnelLog), or None."""
        self.tunnel_log = tunnel_log

    cdef bint is_reuse(self, Flow* f, const Decoded* d) noexcept:
        cdef Endpoint* o = &f.ep[0]
        cdef Endpoint* r = &f.ep[1]
        cdef Endpoint* conn_orig = o
        if not (d.tcp_flags & TH_SYN):
            return False
        if d.tcp_flags & TH_ACK:
            if o.state != TCP_INACTIVE:
                return False     # not a half connection
            conn_orig = r
        if o.did_close or r.did_close:
            return True
        if d.seq == <uint32_t>conn_orig.start_seq:
            return False
        if (not (d.tcp_flags & TH_ACK) and conn_orig.state == TCP_SYN_ACK_SENT
                and r.state == TCP_INACTIVE and d.seq == <uint32_t>r.start_seq):
            return False         # SYN and SYN-ACK seen in swapped order
        return True

    cdef void udp_packet(self, Flow* f, bint is_orig, const Decoded* d, double t) noexcept:
        cdef Endpoint* e = &f.ep[0 if is_orig else 1]
        cdef int64_t n
        # Zeek counts the datagram before it checks the checksum.
        e.pkts += 1
        e.ip_bytes += d.ip_len
        if d.proto == PROTO_UDP:
            if (not self.ignore_checksums and d.l4_caplen >= d.l4_len
                    and (d.ip_version == 6 or (d.l4[6] | d.l4[7]) != 0)
                    and not transport_checksum_ok(d)):
                self.bad_checksums += 1
                self.scaled_history(f, b'C' if is_orig else b'c', &e.chk_cnt, &e.chk_thresh)
                return
            n = <int64_t>d.udp_len - 8
            if n < 0:
                n = 0
            self.conn_check_history(f, 0x1 if is_orig else 0x10000, b'D' if is_orig else b'd')
        else:
            n = d.l4_len - 8
        f.last_time = t
        if e.udp_bytes < 0:
            e.udp_bytes = n
        else:
            e.udp_bytes += n
        e.last_time = t
        if ((f.slot >= 0 or f.detect_pending) and d.proto == PROTO_UDP
                and d.payload_caplen > 0 and n > 0):
            # A datagram analyser reads this flow (or may, by its first payload):
            # the datagram as the UDP header bounds it (a snaplen may cut it).
            self.binder.datagram(f, 0 if is_orig else 1, d.payload,
                                 <uint32_t>n if n < d.payload_caplen else d.payload_caplen)

    # -- TCP ------------------------------------------------------------------

    cdef bint ep_is_orig(self, Flow* f, Endpoint* e) noexcept:
        return e == &f.ep[0]

    cdef bint ep_check_history(self, Flow* f, Endpoint** e, Endpoint** p,
                               uint32_t mask, char code) noexcept:
        """Zeek's endpoint-level history check, including the late flip of a
        connection that began with a SYN-ACK once it turns productive."""
        if (code == b'A' or code == b'D') and f.hist_len == 1 and f.history[0] == b'H':
            self.flip_roles(f)
            f.hist_len = 0
            self.add_history(f, b'^')
            self.add_history(f, b'h')
            f.first_packet_seen |= SEEN_ORIG
            # The endpoint structs moved with the flip: follow them.
            e[0], p[0] = p[0], e[0]
        if not self.ep_is_orig(f, e[0]):
            mask <<= 16
            code = code + 32 if b'A' <= code <= b'Z' else code
        return self.conn_check_history(f, mask, code)

    cdef void ep_add_history(self, Flow* f, Endpoint* e, char code) noexcept:
        if not self.ep_is_orig(f, e) and b'A' <= code <= b'Z':
            code = code + 32
        self.add_history(f, code)

    cdef void tcp_packet(self, Flow* f, bint is_orig, const Decoded* d, double t) noexcept:
        cdef Endpoint* e = &f.ep[0 if is_orig else 1]
        cdef Endpoint* p = &f.ep[1 if is_orig else 0]
        cdef uint8_t flags = d.tcp_flags
        cdef bint syn = (flags & TH_SYN) != 0
        cdef bint fin = (flags & TH_FIN) != 0
        cdef bint rst = (flags & TH_RST) != 0
        cdef bint ack = (flags & TH_ACK) != 0
        cdef int64_t length = d.payload_len
        cdef int64_t seg_len
        cdef uint32_t base_seq = d.seq
        cdef uint32_t ack_seq = d.ack
        cdef uint32_t past_seg
        cdef bint underflow = False
        cdef bint ack_underflow = False
        cdef uint64_t rel_seq, rel_ack = 0, rel_data_seq
        cdef int32_t delta_last
        cdef bint do_close = False, gen_event = False
        cdef uint8_t old_o, old_r
        cdef int side

        if (not self.ignore_checksums and d.l4_caplen >= d.l4_len
                and not transport_checksum_ok(d)):
            self.bad_checksums += 1
            self.scaled_history(f, b'C' if is_orig else b'c', &e.chk_cnt, &e.chk_thresh)
            return
        e.pkts += 1
        e.ip_bytes += d.ip_len

        # Partial status is decided by the first packet from each side: once
        # a side has been seen, its later packets (the handshake's last ACK)
        # leave it as it is.
        if is_orig:
            if not (f.first_packet_seen & SEEN_ORIG):
                f.is_partial = (not syn) or ack
        elif not (f.first_packet_seen & SEEN_RESP) and not f.is_partial:
            f.is_partial = not syn
        f.first_packet_seen |= SEEN_ORIG if is_orig else SEEN_RESP

        seg_len = length + (1 if syn else 0) + (1 if fin else 0)
        if rst:
            seg_len -= length      # data on a RST is not part of the stream
        past_seg = <uint32_t>(base_seq + <uint32_t>seg_len)

        self.init_endpoint(e, syn, base_seq, past_seg)
        rel_seq = self.relative_seq(e, base_seq, e.last_seq, e.seq_wraps, &underflow)

        self.update_history(f, &e, &p, flags, rel_seq, length)

        if window_is_zero(d) and not rst and p.state != TCP_CLOSED and e.state != TCP_RESET:
            self.scaled_history(f, b'W' if self.ep_is_orig(f, e) else b'w',
                                &e.win0_cnt, &e.win0_thresh)

        if not f.ep[0].did_close or not f.ep[1].did_close:
            f.last_time = t

        if syn:
            e.window_scale = d.wscale

        if fin:
            e.fin_cnt += 1
            e.fin_seq = rel_seq + <uint64_t>seg_len
        if rst:
            e.rst_cnt += 1

        if ack:
            if (self.ep_is_orig(f, e) and not f.seen_first_ack
                    and (e.state == TCP_ESTABLISHED or e.state == TCP_SYN_SENT)):
                f.seen_first_ack = 1
            if p.state == TCP_INACTIVE:
                rel_ack = 1
                p.start_seq = <int64_t><uint32_t>(ack_seq - 1)
                p.ack_seq = <uint32_t>(ack_seq - 1)
                p.last_seq = <uint32_t>(ack_seq - 1)
            else:
                rel_ack = self.relative_seq(p, ack_seq, p.ack_seq, p.ack_wraps, &ack_underflow)
                if ack_underflow:
                    rel_ack = 0
                elif not rst:
                    if not (ack_seq == 0 and seq_delta(ack_seq, p.ack_seq) > TOO_LARGE_SEQ_DELTA) \
                            and seq_delta(ack_seq, p.ack_seq) > 0:
                        if ack_seq < p.ack_seq:
                            p.ack_wraps += 1
                        p.ack_seq = ack_seq

        if syn and e.state != TCP_INACTIVE and e.state != TCP_RESET \
                and base_seq == <uint32_t>e.start_seq and e.last_seq == past_seg:
            self.pkt_events |= EV_RETRANSMISSION          # the same SYN (or SYN-ACK) again
        delta_last = self.update_last_seq(f, e, past_seg, syn, fin, rst, length)
        e.last_time = t

        old_o = f.ep[0].state
        old_r = f.ep[1].state
        self.update_state_machine(f, &e, &p, is_orig, base_seq, ack_seq, length, delta_last,
                                  syn, fin, rst, ack, &do_close, &gen_event)
        if (self.ev_after & (EV_STATE_CHANGE | EV_ESTABLISHED)) and f.quiet != 3:
            self.state_events(f, old_o, old_r)

        if ack:
            self.ack_received(f, p, rel_ack)

        rel_data_seq = rel_seq + 1 if syn else rel_seq
        if length > 0:
            self.pkt_events |= EV_NEW_DATA
            if not rst and rel_data_seq > e.reassem_seq and not underflow:
                self.pkt_events |= EV_OUT_OF_ORDER
        if f.detect_pending and length > 0 and d.payload_caplen > 0 and not rst:
            # The first payload of a side: which analysers does it look like?
            side = 0 if self.ep_is_orig(f, e) else 1
            if f.detect_pending & (1 << side):
                self.binder.first_payload(f, side, d.payload, d.payload_caplen)
        if length > 0 and d.payload_caplen >= length and not rst and not underflow:
            self.data_sent(f, e, rel_data_seq, <uint64_t>length)
            if f.streams != NULL:
                self.streams.segment(f.streams, 0 if self.ep_is_orig(f, e) else 1,
                                     rel_data_seq, d.payload, <uint32_t>length, d.in_ring,
                                     d.record_index)
        if f.streams != NULL and (rst or (fin and not underflow)):
            # A RST ends the stream where it is; a FIN after its data.
            self.streams.end(f.streams, 0 if self.ep_is_orig(f, e) else 1,
                             e.fin_seq - 1 if fin and not rst else 0)

        self.check_eof(f, e)
        if do_close:
            self.connection_closed(f, e, p, gen_event)

    cdef void init_endpoint(self, Endpoint* e, bint syn, uint32_t first_seg_seq,
                            uint32_t last_seq) noexcept:
        if e.state == TCP_INACTIVE:
            if syn:
                e.ack_seq = first_seg_seq
                e.start_seq = first_seg_seq
            else:
                # Pretend a SYN came just before, so relative numbering holds.
                e.ack_seq = <uint32_t>(first_seg_seq - 1)
                e.start_seq = <uint32_t>(first_seg_seq - 1)
                last_seq = first_seg_seq
            e.last_seq = last_seq
        elif e.state == TCP_SYN_SENT or e.state == TCP_SYN_ACK_SENT:
            if syn and first_seg_seq != <uint32_t>e.start_seq:
                e.start_seq = first_seg_seq
                e.ack_seq = first_seg_seq
                e.last_seq = last_seq
        elif e.state == TCP_ESTABLISHED or e.state == TCP_PARTIAL:
            if syn:
                e.start_seq = first_seg_seq
                e.ack_seq = first_seg_seq
                e.last_seq = last_seq
        elif e.state == TCP_RESET:
            if syn and e.prev_state == TCP_INACTIVE:
                e.start_seq = first_seg_seq
                e.ack_seq = first_seg_seq
                e.last_seq = last_seq

    cdef uint64_t relative_seq(self, Endpoint* e, uint32_t cur, uint32_t last,
                               uint32_t wraps, bint* underflow) noexcept:
        cdef int32_t delta = seq_delta(cur, last)
        if delta < 0:
            if wraps and cur > last:
                wraps -= 1
        elif delta > 0:
            if cur < last:
                wraps += 1
        if wraps == 0:
            delta = seq_delta(cur, <uint32_t>e.start_seq)
            if delta < 0:
                underflow[0] = True
            return <uint64_t><int64_t>delta
        return full_seq(cur, wraps) - <uint64_t>e.start_seq

    cdef void update_history(self, Flow* f, Endpoint** e, Endpoint** p, uint8_t flags,
                             uint64_t rel_seq, int64_t length) noexcept:
        cdef int bits = ((flags & TH_SYN) != 0) + ((flags & TH_FIN) != 0) + ((flags & TH_RST) != 0)
        cdef char code
        if bits > 1:
            if (flags & TH_FIN) and (flags & TH_RST):
                self.ep_check_history(f, e, p, HIST_FIN_RST, b'I')
            else:
                self.ep_check_history(f, e, p, HIST_MULTI_FLAG, b'Q')
        elif bits == 1:
            if flags & TH_SYN:
                code = b'H' if (flags & TH_ACK) else b'S'
                if self.ep_check_history(f, e, p, HIST_SYN, code) and rel_seq != e[0].hist_last_syn:
                    self.ep_add_history(f, e[0], code)
                e[0].hist_last_syn = rel_seq
            if flags & TH_FIN:
                # A FIN's number comes after its data.
                if self.ep_check_history(f, e, p, HIST_FIN, b'F') and \
                        rel_seq + <uint64_t>length != e[0].hist_last_fin:
                    self.ep_add_history(f, e[0], b'F')
                e[0].hist_last_fin = rel_seq + <uint64_t>length
            if flags & TH_RST:
                if self.ep_check_history(f, e, p, HIST_RST, b'R') and rel_seq != e[0].hist_last_rst:
                    self.ep_add_history(f, e[0], b'R')
                e[0].hist_last_rst = rel_seq
        else:
            if length:
                self.ep_check_history(f, e, p, HIST_DATA, b'D')
            elif flags & TH_ACK:
                self.ep_check_history(f, e, p, HIST_ACK, b'A')

    cdef int32_t update_last_seq(self, Flow* f, Endpoint* e, uint32_t last_seq, bint syn,
                                 bint fin, bint rst, int64_t length) noexcept:
        cdef int32_t delta_last = seq_delta(last_seq, e.last_seq)
        if (syn or rst) and (delta_last > TOO_LARGE_SEQ_DELTA or delta_last < -TOO_LARGE_SEQ_DELTA):
            pass        # don't trust outlandish SYN/RST numbers
        elif fin and e.last_seq == <uint32_t>(e.start_seq + 1):
            # Only SYN and FIN seen: take the FIN even if it looks backwards
            # (transfers over 2 GiB).
            self.set_last_seq(e, last_seq)
        elif e.state == TCP_RESET:
            pass
        elif delta_last > 0:
            self.set_last_seq(e, last_seq)
        elif length > 0:
            self.pkt_events |= EV_RETRANSMISSION
            self.scaled_history(f, b'T' if self.ep_is_orig(f, e) else b't',
                                &e.rxmt_cnt, &e.rxmt_thresh)
        return delta_last

    cdef void set_last_seq(self, Endpoint* e, uint32_t seq) noexcept:
        if seq < e.last_seq:
            e.seq_wraps += 1
        e.last_seq = seq

    cdef void update_state_machine(self, Flow* f, Endpoint** pe, Endpoint** pp, bint is_orig,
                                   uint32_t base_seq, uint32_t ack_seq, int64_t length,
                                   int32_t delta_last, bint syn, bint fin, bint rst, bint ack,
                                   bint* do_close, bint* gen_event) noexcept:
        cdef Endpoint* e = pe[0]
        cdef Endpoint* p = pp[0]
        cdef bint is_reject
        cdef uint8_t s = e.state
        if s == TCP_INACTIVE:
            if syn:
                if is_orig:
                    set_state(e, TCP_SYN_ACK_SENT if ack else TCP_SYN_SENT)
                    # The attempt timer starts here.
                    self.list_remove(f)
                    self.list_append(f, T_OPENING, f.last_time + self.timeout[T_OPENING])
                else:
                    if not ack and p.state == TCP_SYN_ACK_SENT and base_seq == <uint32_t>e.start_seq:
                        # SYN-ACK seen before its SYN: turn around and establish.
                        f.is_partial = 0
                        self.flip_roles(f)
                        e, p = p, e
                        pe[0], pp[0] = e, p
                        # e (the packet's sender) is the originator now.
                        set_state(p, TCP_ESTABLISHED)
                        f.first_packet_seen |= SEEN_ORIG
                    if p.state == TCP_SYN_SENT:
                        set_state(p, TCP_ESTABLISHED)
                    set_state(e, TCP_ESTABLISHED)
            if fin:
                set_state(e, TCP_CLOSED)
                do_close[0] = gen_event[0] = True
            if rst:
                set_state(e, TCP_RESET)
                if is_orig:
                    is_reject = p.state == TCP_ESTABLISHED
                else:
                    is_reject = p.state == TCP_SYN_SENT or p.state == TCP_SYN_ACK_SENT
                do_close[0] = True
                gen_event[0] = not is_reject
            if e.state == TCP_INACTIVE:
                # is_orig is the packet's direction before any flip above,
                # as in Zeek.
                if not is_orig and length == 0 and f.ep[0].state == TCP_SYN_SENT:
                    pass    # an ACK of the SYN before the SYN-ACK: not partial
                elif ack and p.state == TCP_ESTABLISHED:
                    # Saw the SYN-ACK but not the SYN: establish anyway.
                    set_state(e, TCP_ESTABLISHED)
                    f.is_partial = 0
                    f.first_packet_seen |= SEEN_ORIG if is_orig else SEEN_RESP
                else:
                    set_state(e, TCP_PARTIAL)
        elif s == TCP_SYN_SENT or s == TCP_SYN_ACK_SENT:
            if fin:
                set_state(e, TCP_CLOSED)
                do_close[0] = gen_event[0] = True
            if rst:
                set_state(e, TCP_RESET)
                do_close[0] = True
        elif s == TCP_ESTABLISHED or s == TCP_PARTIAL:
            if syn and s == TCP_PARTIAL and p.state == TCP_INACTIVE and not ack:
                set_state(e, TCP_SYN_SENT)
            if fin and not rst:
                set_state(e, TCP_CLOSED)
                if p.state == TCP_RESET and p.prev_state == TCP_CLOSED:
                    # FIN then RST from the peer was a normal close after all.
                    set_state(p, TCP_CLOSED)
                do_close[0] = gen_event[0] = True
            if rst:
                set_state(e, TCP_RESET)
                do_close[0] = True
        elif s == TCP_CLOSED:
            if rst and p.state != TCP_CLOSED:
                set_state(e, TCP_RESET)
                if not e.did_close:
                    do_close[0] = True

    # -- gap accounting (reassembly bookkeeping without payload) ---------------

    cdef void data_sent(self, Flow* f, Endpoint* e, uint64_t seq, uint64_t length) noexcept:
        cdef uint64_t acked = full_seq(e.ack_seq, e.ack_wraps) - <uint64_t>e.start_seq
        cdef uint64_t upper = seq + length
        cdef Endpoint* peer = &f.ep[1] if e == &f.ep[0] else &f.ep[0]
        if e.skip_deliveries:
            return
        if seq < acked:
            if upper <= acked:
                return       # delivered and acknowledged already
            seq = acked
        if upper <= e.trim_seq:
            return
        if seq < e.trim_seq:
            seq = e.trim_seq
        self.insert_range(e, seq, upper)
        if no_data_acked(e) and self.bytes_above_hole(e) > MAX_ABOVE_HOLE_WITHOUT_ACKS:
            e.n_ooo = 0
            e.skip_deliveries = 1
        elif self.buffered_bytes(e) > EXCESSIVE_DATA_WITHOUT_ACKS:
            e.n_ooo = 0
            e.skip_deliveries = 1
        elif no_data_acked(e) and endpoint_size(e, peer) > MAX_INITIAL_WINDOW:
            # Much data, no ACKs at all: we are probably not seeing them.
            self.trim_to(f, e, e.reassem_seq)

    cdef uint64_t bytes_above_hole(self, Endpoint* e) noexcept:
        if e.n_ooo == 0:
            return 0
        return e.ooo[e.n_ooo - 1].hi - e.reassem_seq

    cdef uint64_t buffered_bytes(self, Endpoint* e) noexcept:
        cdef uint64_t n = e.reassem_seq - e.trim_seq if e.reassem_seq > e.trim_seq else 0
        cdef int i
        for i in range(e.n_ooo):
            n += e.ooo[i].hi - e.ooo[i].lo
        return n

    cdef void insert_range(self, Endpoint* e, uint64_t lo, uint64_t hi) noexcept:
        """Record [lo, hi) as seen; advance the contiguous edge through it."""
        cdef int i, j
        if lo <= e.reassem_seq:
            if hi > e.reassem_seq:
                e.reassem_seq = hi
                self.absorb_ranges(e)
            return
        # Insert keeping ranges sorted and merged; when full, forget the
        # highest range (it only makes later gap figures larger, never lost).
        i = 0
        while i < e.n_ooo and e.ooo[i].hi < lo:
            i += 1
        if i < e.n_ooo and e.ooo[i].lo <= hi:
            if lo < e.ooo[i].lo:
                e.ooo[i].lo = lo
            if hi > e.ooo[i].hi:
                e.ooo[i].hi = hi
            # merge following ranges now overlapping
            j = i + 1
            while j < e.n_ooo and e.ooo[j].lo <= e.ooo[i].hi:
                if e.ooo[j].hi > e.ooo[i].hi:
                    e.ooo[i].hi = e.ooo[j].hi
                j += 1
            if j > i + 1:
                self.remove_ranges(e, i + 1, j - (i + 1))
            return
        if e.n_ooo == OOO_RANGES:
            if i == OOO_RANGES:
                return
            e.n_ooo -= 1
        j = e.n_ooo
        while j > i:
            e.ooo[j] = e.ooo[j - 1]
            j -= 1
        e.ooo[i].lo = lo
        e.ooo[i].hi = hi
        e.n_ooo += 1

    cdef void remove_ranges(self, Endpoint* e, int start, int count) noexcept:
        cdef int k
        for k in range(start, e.n_ooo - count):
            e.ooo[k] = e.ooo[k + count]
        e.n_ooo -= count

    cdef void absorb_ranges(self, Endpoint* e) noexcept:
        cdef int n = 0
        while n < e.n_ooo and e.ooo[n].lo <= e.reassem_seq:
            if e.ooo[n].hi > e.reassem_seq:
                e.reassem_seq = e.ooo[n].hi
            n += 1
        if n:
            self.remove_ranges(e, 0, n)

    cdef void gap(self, Flow* f, Endpoint* e, uint64_t length) noexcept:
        cdef Endpoint* peer = &f.ep[1] if e == &f.ep[0] else &f.ep[0]
        if is_clean(e) and is_clean(peer):
            self.scaled_history(f, b'G' if self.ep_is_orig(f, e) else b'g',
                                &e.gap_cnt, &e.gap_thresh)
            e.missed_bytes += length
            if (self.ev_after & EV_GAP) and f.quiet != 3:
                self.fire(EV_GAP, f, 0 if self.ep_is_orig(f, e) else 1, NULL, length, 0)

    cdef void trim_to(self, Flow* f, Endpoint* e, uint64_t seq) noexcept:
        """The peer acknowledged everything below `seq`: what we never saw
        of it is missed."""
        cdef int n
        if seq > e.reassem_seq:
            if seq <= 2 and f.is_partial:
                pass     # the faked SYN octet of a partial connection
            elif not e.skip_deliveries:
                n = 0
                while n < e.n_ooo and e.ooo[n].lo < seq:
                    self.gap(f, e, e.ooo[n].lo - e.reassem_seq)
                    e.reassem_seq = e.ooo[n].hi
                    n += 1
                if n:
                    self.remove_ranges(e, 0, n)
                if seq > e.reassem_seq:
                    self.gap(f, e, seq - e.reassem_seq)
                    e.reassem_seq = seq
                self.absorb_ranges(e)
            else:
                e.reassem_seq = seq
        if seq > e.trim_seq:
            e.trim_seq = seq

    cdef void ack_received(self, Flow* f, Endpoint* e, uint64_t seq) noexcept:
        if e.fin_cnt > 0 and seq >= e.fin_seq:
            seq = e.fin_seq - 1
        if f.streams != NULL and not (seq <= 2 and f.is_partial):
            # Bytes acknowledged but never seen will never come: a gap.
            self.streams.gap_to(f.streams, 0 if self.ep_is_orig(f, e) else 1, seq)
        if seq <= e.trim_seq:
            return
        self.trim_to(f, e, seq)
        self.check_eof(f, e)

    # -- closing --------------------------------------------------------------

    cdef bint data_pending(self, Flow* f, Endpoint* e) noexcept:
        cdef Endpoint* peer = &f.ep[1] if e == &f.ep[0] else &f.ep[0]
        cdef uint64_t delivered, last
        if e.skip_deliveries:
            return False
        delivered = <uint64_t>e.start_seq + e.reassem_seq
        last = full_seq(e.last_seq, e.seq_wraps)
        if last < delivered:
            return False
        if delivered != last - 1 and delivered != last:
            return True
        if e.state != TCP_RESET and peer.n_ooo > 0:
            return True
        return False

    cdef void check_eof(self, Flow* f, Endpoint* e) noexcept:
        cdef Endpoint* peer
        if (not e.did_eof
                and (e.fin_cnt > 0 or e.state == TCP_CLOSED or e.state == TCP_RESET)
                and not self.data_pending(f, e)):
            e.did_eof = 1
            if f.close_deferred:
                peer = &f.ep[1] if e == &f.ep[0] else &f.ep[0]
                self.connection_closed(f, e, peer, f.deferred_gen_event)
                f.close_deferred = 0

    cdef void connection_closed(self, Flow* f, Endpoint* e, Endpoint* p, bint gen_event) noexcept:
        cdef bint close_complete
        if self.data_pending(f, e):
            # Data still missing on this side: close once it is all in.
            f.close_deferred = 1
            if not f.deferred_gen_event:
                f.deferred_gen_event = gen_event
            return
        f.close_deferred = 0
        if e.did_close:
            return
        e.did_close = 1
        close_complete = e.state == TCP_RESET or p.did_close or p.state == TCP_INACTIVE
        if close_complete:
            self.mark_closed(f)

    # -- what Python asks of a flow ---------------------------------------------------

    cdef void caught(self, str where, object exc) noexcept:
        """An exception caught in the flow table (a sink): counted and
        reported (summary, `engine_error` event), never only printed."""
        self.engine_errors += 1
        try:
            report_error(self.events.report, self.engine_errors, where, exc)
        except BaseException:
            pass

    def flow_info(self, int32_t index):
        """The connection a flow-table index names (for event callbacks)."""
        cdef Flow* f
        if index < 0 or index >= <int32_t>self.next_unused or not self.pool[index].in_use:
            return None
        f = &self.pool[index]
        info = conn_info(f)
        return info, (STATE_NAMES[f.ep[0].state], STATE_NAMES[f.ep[1].state]), f.history[:f.hist_len].decode("ascii")

    def trace_time(self):
        """The timestamp of the packet being processed (seconds)."""
        return self.now

    def index_of_slot(self, int32_t slot):
        """The flow-table index of the flow an analyser slot belongs to, or -1."""
        return self.binder.index_of_slot(slot) if self.binder is not None else -1

    def set_quiet(self, int32_t index, side=None, bint quiet=True):
        """Stop (or resume) delivering events for one flow, or one side of it
        (0 = originator, 1 = responder)."""
        cdef uint8_t bits = 3 if side is None else (1 << side)
        if 0 <= index < <int32_t>self.next_unused and self.pool[index].in_use:
            if quiet:
                self.pool[index].quiet |= bits
            else:
                self.pool[index].quiet &= ~bits

    def release_side(self, int32_t index, side=None):
        """Stop reassembling one side (or both) of an analysed flow."""
        cdef Flow* f
        if not (0 <= index < <int32_t>self.next_unused and self.pool[index].in_use):
            return
        if self.binder is not None:
            self.binder.release_sides(index, side)

    # -- events ------------------------------------------------------------------

    cdef uint32_t classify(self, Flow* f, bint is_orig, const Decoded* d) noexcept:
        """The packet-level events of a packet, judged before the TCP update."""
        cdef uint32_t ev = EV_PACKET
        cdef Endpoint* e = &f.ep[0 if is_orig else 1]
        cdef int64_t length = d.payload_len
        cdef uint32_t past
        if length > 0:
            ev |= EV_NEW_DATA
        if d.proto != PROTO_TCP or e.state == TCP_INACTIVE:
            return ev
        past = <uint32_t>(d.seq + <uint32_t>length + (1 if d.tcp_flags & TH_SYN else 0)
                          + (1 if d.tcp_flags & TH_FIN else 0))
        if length > 0 and e.state != TCP_RESET and not (d.tcp_flags & TH_RST) \
                and seq_delta(past, e.last_seq) <= 0:
            ev |= EV_RETRANSMISSION
        elif (d.tcp_flags & TH_SYN) and e.state != TCP_RESET and \
                d.seq == <uint32_t>e.start_seq and e.last_seq == past:
            ev |= EV_RETRANSMISSION
        elif length > 0 and seq_delta(d.seq, <uint32_t>(e.start_seq + e.reassem_seq)) > 0:
            ev |= EV_OUT_OF_ORDER
        return ev

    cdef void fire_packet_events(self, Flow* f, bint is_orig, const Decoded* d,
                                 uint32_t mask, uint32_t events) noexcept:
        cdef uint32_t bit
        for bit in (EV_PACKET, EV_NEW_DATA, EV_RETRANSMISSION, EV_OUT_OF_ORDER):
            if (events & bit) and (mask & bit):
                self.fire(bit, f, 0 if is_orig else 1, d, 0, 0)

    cdef void state_events(self, Flow* f, uint8_t old_o, uint8_t old_r) noexcept:
        if self.ev_after & EV_STATE_CHANGE:
            if f.ep[0].state != old_o:
                self.fire(EV_STATE_CHANGE, f, 0, NULL, old_o, f.ep[0].state)
            if f.ep[1].state != old_r:
                self.fire(EV_STATE_CHANGE, f, 1, NULL, old_r, f.ep[1].state)
        if (self.ev_after & EV_ESTABLISHED) and f.ep[0].state == TCP_ESTABLISHED \
                and f.ep[1].state == TCP_ESTABLISHED \
                and not (old_o == TCP_ESTABLISHED and old_r == TCP_ESTABLISHED):
            self.fire(EV_ESTABLISHED, f, 0, NULL, 0, 0)

    cdef void fire(self, uint32_t kind, Flow* f, int side, const Decoded* d,
                   uint64_t a, uint64_t b) noexcept:
        """One built-in event, unless the flow's side is quiet (binding.pyx
        turns it into Python objects for the subscriber)."""
        if self.events.sink is None:
            return
        if (kind & SIDE_EVENTS) and (f.quiet & (1 << side)):
            return
        self.events.deliver(kind, f, side, d, a, b, self.now, self.phase, kind == EV_NEW_DATA)

    # -- end of a connection ---------------------------------------------------

    cdef void finish(self, Flow* f) noexcept:
        """Report the connection and free its slot."""
        cdef int32_t idx = <int32_t>(f - self.pool)
        cdef int32_t* link
        cdef object services = ()
        cdef object expectation = None
        cdef dict rec = None
        cdef ConnFigures figures
        if f.end_reason < 5:
            self.ended_by[f.end_reason][0 if f.proto == PROTO_TCP else
                                        (1 if f.proto == PROTO_UDP else 2)] += 1
        if f.bound and f.slot < 0:
            # Announced by an analyser and counted in compiled code only.
            conn_figures(f, &figures)
            self.bulk_bytes += figures.orig_size + figures.resp_size
        try:
            if self.binder is not None:
                # Its analyser gets what is left and the end; its services.
                services, expectation = self.binder.ending(f)
            if f.tunnel_kind:
                if f.tunnel_state & TS_CONFIRMED:
                    services = tuple(services) + (TUNNEL_SERVICES[f.tunnel_kind],)
                if self.tunnel_log is not None:
                    self.tunnel_log.closed(self.now, uid_text(f.uid))
            # A TSV conn.log is all the sink wants: the row goes straight into
            # it.  As a dict only for the analyser that expected the
            # connection (its expected_ended() reads it), or for the sink.
            direct = (self.conn_tsv is not None
                      and (self.tunnel_of == NULL or self.tunnel_of[idx] == NULL))
            if not direct or expectation is not None:
                rec = self.record(f)
                if services:
                    rec["service"] = ",".join(services)
            if (self.ev_after & EV_CONN_END) and f.quiet != 3:
                self.fire(EV_CONN_END, f, 0, NULL, f.end_reason, 0)
            if self.binder is not None:
                self.binder.ended(f, rec, expectation)
            if self.pcap is not None:
                self.pcap_decide(f, self.pcap.kind == "service" and
                                 self.pcap.value in services)
            if direct:
                self.write_conn_row(f, ",".join(services) if services else None)
                self.direct_rows += 1
            elif self.on_finish is not None:
                self.on_finish(rec)
        except BaseException as exc:     # a sink's failure must not stop the engine
            self.caught("while ending a connection", exc)
        if f.pcap_pending != NULL:
            self.pcap_decide(f, False)
        if self.tunnel_of != NULL and self.tunnel_of[idx] != NULL:
            free(self.tunnel_of[idx])
            self.tunnel_of[idx] = NULL
        if self.binder is not None:
            self.binder.release(f)
        self.list_remove(f)
        link = &self.buckets[f.key_hash & self.bucket_mask]
        while link[0] >= 0 and link[0] != idx:
            link = &self.pool[link[0]].hash_next
        if link[0] == idx:
            link[0] = f.hash_next
        f.in_use = 0
        f.hash_next = self.free_head
        self.free_head = idx
        self.active_flows -= 1

    cdef dict record(self, Flow* f):
        """The connection's conn.log row: Zeek's field names, None = unset.
        (The service is added by finish(), from the analysers.)"""
        cdef Endpoint* o = &f.ep[0]
        cdef Endpoint* r = &f.ep[1]
        cdef ConnFigures c
        cdef TunnelState* ts = (self.tunnel_of[f - self.pool] if self.tunnel_of != NULL
                                else NULL)
        conn_figures(f, &c)
        return {
            "ts": f.start_time,
            "uid": uid_text(f.uid),
            "id.orig_h": addr_text(f.orig_addr, f.ip_version),
            "id.orig_p": f.orig_port,
            "id.resp_h": addr_text(f.resp_addr, f.ip_version),
            "id.resp_p": f.resp_port,
            "proto": c.proto.decode("ascii"),
            "service": None,
            # Zeek leaves duration and sizes unset for zero-length connections.
            "duration": c.duration if c.productive else None,
            "orig_bytes": c.orig_size if c.productive else None,
            "resp_bytes": c.resp_size if c.productive else None,
            "conn_state": c.state.decode("ascii"),
            "local_orig": is_private_address(f.orig_addr),
            "local_resp": is_private_address(f.resp_addr),
            "missed_bytes": c.missed,
            "history": f.history[:f.hist_len].decode("ascii") or None,
            "orig_pkts": o.pkts,
            "orig_ip_bytes": o.ip_bytes,
            "resp_pkts": r.pkts,
            "resp_ip_bytes": r.ip_bytes,
            "tunnel_parents": ([uid_text(ts.parents[i]) for i in range(ts.n_parents)]
                               if ts != NULL and ts.n_parents else None),
            "ip_proto": f.proto,
        }

    cdef void write_conn_row(self, Flow* f, str service) except *:
        """The same row as record() (with `service`, the analysers' joined,
        None: unset), written by the TSV writer's rules straight into
        conn.log's buffer: no dict, no Python object per field.  Only for
        rows no one needs as a dict (finish() decides)."""
        cdef TsvRows out = self.conn_tsv
        cdef Endpoint* o = &f.ep[0]
        cdef Endpoint* r = &f.ep[1]
        cdef ConnFigures c
        # The longest piece put at once: time, uid, two IPv6 addresses (45
        # characters at most, and addr_chars wants 64 bytes of room at each),
        # ports, proto: under 160 bytes.
        cdef char tmp[256]
        cdef int n
        conn_figures(f, &c)
        # Fields into tmp, each followed by a tab; numbers by logformat's
        # formatters (printf's text, without printf).
        n = format_time(tmp, f.start_time)
        n = tab(tmp, n)
        n = tab(tmp, n + uid_chars(f.uid, tmp + n))
        n = tab(tmp, n + addr_chars(f.orig_addr, f.ip_version, tmp + n))
        n = count_tab(tmp, n, f.orig_port)
        n = tab(tmp, n + addr_chars(f.resp_addr, f.ip_version, tmp + n))
        n = count_tab(tmp, n, f.resp_port)
        n = tab(tmp, n + copy_cstr(tmp + n, c.proto))
        out.put(tmp, n)
        if service is None:
            out.put(b"-\t", 2)
        else:
            out.put_escaped(service)             # as write() puts a string field
            out.put(b"\t", 1)
        if c.productive:
            n = tab(tmp, format_time(tmp, c.duration))
            n = count_tab(tmp, n, c.orig_size)
            n = count_tab(tmp, n, c.resp_size)
            out.put(tmp, n)
        else:
            out.put(b"-\t-\t-\t", 6)
        n = tab(tmp, copy_cstr(tmp, c.state))
        tmp[n] = 84 if is_private_address(f.orig_addr) else 70      # T or F
        n = tab(tmp, n + 1)
        tmp[n] = 84 if is_private_address(f.resp_addr) else 70
        n = tab(tmp, n + 1)
        n = count_tab(tmp, n, c.missed)
        out.put(tmp, n)
        if f.hist_len:
            out.put(f.history, f.hist_len)      # letters and ^: nothing to escape
        else:
            out.put(b"-", 1)
        n = tab(tmp, 0)
        n = count_tab(tmp, n, o.pkts)
        n = count_tab(tmp, n, o.ip_bytes)
        n = count_tab(tmp, n, r.pkts)
        n = count_tab(tmp, n, r.ip_bytes)
        memcpy(tmp + n, b"-\t", 2)             # tunnel_parents: rows without one
        n += 2
        n += format_count(tmp + n, f.proto)
        out.put(tmp, n)
        out.end_row()

    cdef void pcap_packet(self, Flow* f, const Decoded* d, double t) noexcept:
        """Write the packet of a chosen connection; hold it while undecided."""
        cdef uint32_t keep = d.frame_caplen
        cdef int64_t ts_ns = <int64_t>(t * 1e9 + 0.5)
        if d.frame == NULL:
            return
        if self.pcap.headers_only and d.payload != NULL and d.payload >= d.frame:
            keep = <uint32_t>(d.payload - d.frame)
        try:
            if f.pcap_state == PCAP_SELECTED:
                self.pcap.write(d.linktype, ts_ns, d.frame, d.frame_caplen, d.frame_wirelen,
                                keep)
            else:
                if f.pcap_pending == NULL:
                    f.pcap_pending = calloc(1, sizeof(Pending))
                    if f.pcap_pending == NULL:
                        return
                self.pcap.hold(<Pending*>f.pcap_pending, d.linktype, ts_ns, d.frame,
                               d.frame_caplen, d.frame_wirelen, keep)
        except BaseException as exc:
            self.caught("writing --pcap-out", exc)

    cdef void pcap_decide(self, Flow* f, bint chosen) noexcept:
        """A decision: the held packets out (chosen) or away."""
        if f.pcap_state == PCAP_UNDECIDED:
            f.pcap_state = PCAP_SELECTED if chosen else PCAP_REJECTED
        if f.pcap_pending != NULL:
            try:
                self.pcap.release(<Pending*>f.pcap_pending, chosen)
            except BaseException as exc:
                self.caught("writing --pcap-out", exc)
            free(f.pcap_pending)
            f.pcap_pending = NULL

    def set_pcap_out(self, PcapOut pcap):
        """Write the packets of the connections `pcap` chooses."""
        self.pcap = pcap

    def pcap_select_slot(self, int32_t slot):
        """An analyser's connection was chosen (service, analyser, event)."""
        cdef int32_t index
        if self.pcap is None or self.binder is None:
            return
        index = self.binder.index_of_slot(slot)
        if index >= 0 and self.pool[index].in_use and \
                self.pool[index].pcap_state == PCAP_UNDECIDED:
            self.pcap_decide(&self.pool[index], True)

    def set_conn_writer(self, TsvRows rows):
        """Write conn.log rows that meet no expectation straight from the flow structs
        into this TSV writer (None: every row goes to on_finish as a dict)."""
        self.conn_tsv = rows

    def flush(self):
        """End of input: report every connection still open, oldest first.
        (Sorted in C: tens of thousands of them may be open at the end, and
        a list of tuples sorted in Python took 2% of a connection-records run.)"""
        cdef int32_t i
        cdef size_t n = 0
        cdef OpenFlow* open_flows
        for i in range(<int32_t>self.next_unused):
            n += self.pool[i].in_use != 0
        open_flows = <OpenFlow*>malloc((n + 1) * sizeof(OpenFlow))
        if open_flows == NULL:
            raise MemoryError()
        n = 0
        try:
            for i in range(<int32_t>self.next_unused):
                if self.pool[i].in_use:
                    # Expected (child) connections first, so that the connection
                    # that announced them is still there to hear how they ended.
                    open_flows[n].child_last = 0 if self.pool[i].bound else 1
                    open_flows[n].number = self.pool[i].number
                    open_flows[n].index = i
                    n += 1
            qsort(open_flows, n, sizeof(OpenFlow), open_flow_order)
            for i in range(<int32_t>n):
                self.finish(&self.pool[open_flows[i].index])
        finally:
            free(open_flows)

    def stats(self):
        return {
            "flows_created": self.flows_created,
            "flows_tcp": self.flows_by_proto_tcp,
            "flows_udp": self.flows_by_proto_udp,
            "flows_icmp": self.flows_by_proto_icmp,
            "active_flows": self.active_flows,
            "max_active_flows": self.max_active_flows,
            "flow_capacity": self.capacity,
            "evictions": self.evictions,
            "timeouts": self.timeouts,
            "bad_checksums": self.bad_checksums,
            "engine_errors": self.engine_errors,
            "bulk_bytes": self.bulk_bytes,
            "ended_by": {"%s/%s" % (END_REASONS[i], ("tcp", "udp", "icmp")[p]): self.ended_by[i][p]
                         for i in range(5) for p in range(3)},
        }




def private_address(str address) -> bool:
    """Is `address` (IPv4 or IPv6 text) in Zeek's default
    Site::private_address_space, the rule of conn.log's local_orig and
    local_resp?  For analysers whose logs say the same (ssh.log's
    `direction`): one rule, the compiled one."""
    import ipaddress
    cdef bytes packed = ipaddress.ip_address(address).packed
    if len(packed) == 4:
        packed = b"\x00" * 10 + b"\xff\xff" + packed
    return bool(is_private_address(<const uint8_t*><const char*>packed))
