# Declarations of the flow table and per-side TCP state (see flows.pyx).
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from analyser.decode cimport Decoded, MAX_TUNNEL_LAYERS
from analyser.streams cimport Streams, StreamPair
from analyser.flowstate cimport (Flow, TunnelState, Endpoint, SeqRange, TCP_INACTIVE, TCP_SYN_SENT,
                                 TCP_SYN_ACK_SENT, TCP_PARTIAL, TCP_ESTABLISHED, TCP_CLOSED,
                                 TCP_RESET, T_OPENING, T_ESTABLISHED, T_CLOSING, T_CLOSED,
                                 T_UDP, T_ICMP, T_CLASS_COUNT, OOO_RANGES, HISTORY_MAX)
from analyser.binding cimport Binder, Dispatcher
from analyser.logformat cimport TsvRows
from analyser.pcapout cimport PcapOut

# Built-in events (bit values; analyser/events.py names them and imports
# these values from analyser.flows).
cpdef enum:
    EV_PACKET = 1
    EV_CONN_START = 2
    EV_ESTABLISHED = 4
    EV_STATE_CHANGE = 8
    EV_NEW_DATA = 16
    EV_RETRANSMISSION = 32
    EV_OUT_OF_ORDER = 64
    EV_OVERLAP_DIFFERS = 128
    EV_GAP = 256
    EV_CONN_END = 512
    EV_TIMEOUT = 1024

# Flows a table holds unless told otherwise (the engine's default budget).
cpdef enum:
    DEFAULT_FLOW_CAPACITY = 262144

cdef class FlowTable:
    cdef Flow* pool
    cdef int32_t* buckets
    cdef uint32_t bucket_mask
    cdef readonly uint32_t capacity
    cdef int32_t free_head
    cdef uint32_t next_unused
    cdef int32_t list_head[<int>T_CLASS_COUNT]
    cdef int32_t list_tail[<int>T_CLASS_COUNT]
    cdef double timeout[<int>T_CLASS_COUNT]
    cdef readonly bint ignore_checksums
    cdef readonly bint key_on_vlan
    cdef uint64_t uid_seed
    cdef readonly uint64_t flows_created
    cdef readonly uint64_t active_flows
    cdef readonly uint64_t max_active_flows
    cdef readonly uint64_t evictions
    cdef readonly uint64_t timeouts
    cdef readonly uint64_t bad_checksums
    cdef readonly uint64_t flows_by_proto_tcp
    cdef readonly uint64_t flows_by_proto_udp
    cdef readonly uint64_t flows_by_proto_icmp
    cdef readonly double now    # the trace time of the packet being processed
    cdef object on_finish       # Python callable(raw record dict); per connection, not per packet
    # Analysers (None when the engine runs without them): binding in
    # binding.pyx; the streams get each analysed flow's segments.
    cdef readonly Binder binder
    cdef Streams streams
    cdef readonly uint64_t engine_errors    # exceptions caught in the flow table
    # conn.log's TSV writer, when rows without a service may go straight from
    # the structs (set_conn_writer); None: every row goes to on_finish.
    cdef TsvRows conn_tsv
    cdef readonly uint64_t direct_rows
    cdef readonly PcapOut pcap              # --pcap-out, or None
    cdef readonly uint64_t bulk_bytes       # payload of bound connections no analyser read
    cdef uint64_t ended_by[5][3]            # connections ended, by END_* reason and tcp/udp/icmp
    # Events: bit masks of what someone subscribed to, before/after the TCP update
    cdef public uint32_t ev_before
    cdef public uint32_t ev_after
    cdef readonly Dispatcher events         # hands events to Python (binding.pyx)
    cdef uint32_t pkt_events    # events of the packet being processed
    cdef int phase              # 0 before the TCP update, 1 after, 2 both
    # Tunnels: the encapsulation of the packet in hand (see layers()).
    cdef object tunnel_log                  # analyser.tunnels.TunnelLog, or None
    cdef bint in_layers
    cdef uint64_t encap_hash
    cdef const Decoded* stack_layers
    cdef uint64_t stack_uid[<int>MAX_TUNNEL_LAYERS]
    cdef int32_t stack_flow[<int>MAX_TUNNEL_LAYERS]
    cdef Flow* last_flow
    # Per flow index, what a connection that came through tunnels remembers
    # of them (NULL entries; the array itself NULL until the first tunnel, so
    # that untunnelled traffic pays nothing).
    cdef TunnelState** tunnel_of
    cdef readonly uint64_t tunnel_changes_dropped
    # Every method below is compiled (declared here so that other modules
    # call them at C speed).
    cdef void list_remove(self, Flow* f) noexcept
    cdef void list_append(self, Flow* f, int tclass, double deadline) noexcept
    cdef void reclassify(self, Flow* f) noexcept
    cdef void mark_closed(self, Flow* f) noexcept
    cdef void expire(self, double t) noexcept
    cdef Flow* lookup_or_create(self, const Decoded* d, double t, bint* is_orig,
                                bint* created) noexcept
    cdef void want_connection(self, Flow* f, const Decoded* d) noexcept
    cdef bint is_broadcast(self, const uint8_t* addr) noexcept
    cdef int32_t evict_one(self) noexcept
    cdef void add_history(self, Flow* f, char code) noexcept
    cdef bint conn_check_history(self, Flow* f, uint32_t mask, char code) noexcept
    cdef bint scaled_history(self, Flow* f, char code, uint32_t* counter,
                                    uint32_t* threshold) noexcept
    cdef void flip_roles(self, Flow* f) noexcept
    cdef void packet(self, const Decoded* d, double t) noexcept
    cdef void layers(self, const Decoded* d, double t) noexcept
    cdef void encapsulation(self, Flow* f, const Decoded* d, bint created) noexcept
    cdef void carrier(self, Flow* f, const Decoded* d, bint is_orig) noexcept
    cdef void discover(self, int n) noexcept
    cdef bint is_reuse(self, Flow* f, const Decoded* d) noexcept
    cdef void udp_packet(self, Flow* f, bint is_orig, const Decoded* d, double t) noexcept
    cdef bint ep_is_orig(self, Flow* f, Endpoint* e) noexcept
    cdef bint ep_check_history(self, Flow* f, Endpoint** e, Endpoint** p,
                               uint32_t mask, char code) noexcept
    cdef void ep_add_history(self, Flow* f, Endpoint* e, char code) noexcept
    cdef void tcp_packet(self, Flow* f, bint is_orig, const Decoded* d, double t) noexcept
    cdef void init_endpoint(self, Endpoint* e, bint syn, uint32_t first_seg_seq,
                            uint32_t last_seq) noexcept
    cdef uint64_t relative_seq(self, Endpoint* e, uint32_t cur, uint32_t last,
                               uint32_t wraps, bint* underflow) noexcept
    cdef void update_history(self, Flow* f, Endpoint** e, Endpoint** p, uint8_t flags,
                             uint64_t rel_seq, int64_t length) noexcept
    cdef int32_t update_last_seq(self, Flow* f, Endpoint* e, uint32_t last_seq, bint syn,
                                 bint fin, bint rst, int64_t length) noexcept
    cdef void set_last_seq(self, Endpoint* e, uint32_t seq) noexcept
    cdef void update_state_machine(self, Flow* f, Endpoint** pe, Endpoint** pp, bint is_orig,
                                   uint32_t base_seq, uint32_t ack_seq, int64_t length,
                                   int32_t delta_last, bint syn, bint fin, bint rst, bint ack,
                                   bint* do_close, bint* gen_event) noexcept
    cdef void data_sent(self, Flow* f, Endpoint* e, uint64_t seq, uint64_t length) noexcept
    cdef uint64_t bytes_above_hole(self, Endpoint* e) noexcept
    cdef uint64_t buffered_bytes(self, Endpoint* e) noexcept
    cdef void insert_range(self, Endpoint* e, uint64_t lo, uint64_t hi) noexcept
    cdef void remove_ranges(self, Endpoint* e, int start, int count) noexcept
    cdef void absorb_ranges(self, Endpoint* e) noexcept
    cdef void gap(self, Flow* f, Endpoint* e, uint64_t length) noexcept
    cdef void trim_to(self, Flow* f, Endpoint* e, uint64_t seq) noexcept
    cdef void ack_received(self, Flow* f, Endpoint* e, uint64_t seq) noexcept
    cdef bint data_pending(self, Flow* f, Endpoint* e) noexcept
    cdef void check_eof(self, Flow* f, Endpoint* e) noexcept
    cdef void connection_closed(self, Flow* f, Endpoint* e, Endpoint* p, bint gen_event) noexcept
    cdef void finish(self, Flow* f) noexcept
    cdef dict record(self, Flow* f)
    cdef void write_conn_row(self, Flow* f, str service) except *
    cdef void pcap_packet(self, Flow* f, const Decoded* d, double t) noexcept
    cdef void pcap_decide(self, Flow* f, bint chosen) noexcept
    cdef uint32_t classify(self, Flow* f, bint is_orig, const Decoded* d) noexcept
    cdef void fire_packet_events(self, Flow* f, bint is_orig, const Decoded* d,
                                 uint32_t mask, uint32_t events) noexcept
    cdef void state_events(self, Flow* f, uint8_t old_o, uint8_t old_r) noexcept
    cdef void fire(self, uint32_t kind, Flow* f, int side, const Decoded* d,
                   uint64_t a, uint64_t b) noexcept
    cdef void grow_buckets(self) noexcept
    cdef void caught(self, str where, object exc) noexcept
