# Declarations of the flow table and per-side TCP state (see flows.pyx).
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from analyser.decode cimport Decoded
from analyser.streams cimport Streams, StreamPair

# State of one side of a TCP connection, as Zeek names them (conn_state is
# derived from the pair; see tcp_conn_state in flows.pyx).
cdef enum:  # endpoint states
    TCP_INACTIVE = 0
    TCP_SYN_SENT = 1
    TCP_SYN_ACK_SENT = 2
    TCP_PARTIAL = 3
    TCP_ESTABLISHED = 4
    TCP_CLOSED = 5
    TCP_RESET = 6

# Timeout classes (as pf names them).  A flow sits in exactly one list, each
# list ordered by deadline, so expiry only ever looks at list heads.
cdef enum:  # timeout classes
    T_OPENING = 0      # SYN sent, nothing back yet
    T_ESTABLISHED = 1  # any other live TCP connection
    T_CLOSING = 2      # one side closed, the other silent or reset
    T_CLOSED = 3       # both sides closed or reset: linger, then report
    T_UDP = 4
    T_ICMP = 5
    T_CLASS_COUNT = 6

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

cdef enum:
    OOO_RANGES = 8     # out-of-order ranges remembered per side for gap accounting
    HISTORY_MAX = 40   # history letters kept (Zeek's are logarithmic, so short)

cdef struct SeqRange:
    uint64_t lo
    uint64_t hi

cdef struct Endpoint:
    uint8_t state
    uint8_t prev_state
    uint8_t did_close
    uint8_t skip_deliveries
    uint8_t did_eof            # everything up to the FIN/RST went past us
    uint8_t n_ooo
    int32_t window_scale
    int64_t start_seq
    uint32_t last_seq
    uint32_t ack_seq
    uint32_t seq_wraps
    uint32_t ack_wraps
    uint64_t fin_seq
    uint32_t fin_cnt
    uint32_t rst_cnt
    uint64_t hist_last_syn
    uint64_t hist_last_fin
    uint64_t hist_last_rst
    uint32_t chk_cnt
    uint32_t chk_thresh
    uint32_t rxmt_cnt
    uint32_t rxmt_thresh
    uint32_t win0_cnt
    uint32_t win0_thresh
    uint32_t gap_cnt
    uint32_t gap_thresh
    double last_time
    uint64_t pkts
    uint64_t ip_bytes
    int64_t udp_bytes          # payload bytes for UDP/ICMP, -1 while silent
    # Gap accounting (relative sequence numbers, first data byte = 1):
    uint64_t reassem_seq       # everything below was seen or given up
    uint64_t trim_seq          # everything below was acknowledged by the peer
    uint64_t missed_bytes
    SeqRange ooo[OOO_RANGES]   # seen ranges above a hole

cdef struct Flow:
    int32_t hash_next          # chain in the hash bucket
    int32_t list_prev          # timeout list links
    int32_t list_next
    uint8_t tclass
    uint8_t in_use
    uint8_t proto
    uint8_t ip_version
    # Canonical key: (addr_lo, port_lo) <= (addr_hi, port_hi)
    uint8_t key_lo[16]
    uint8_t key_hi[16]
    uint16_t port_lo
    uint16_t port_hi
    uint16_t vlan
    uint64_t key_hash
    # Roles
    uint8_t orig_addr[16]
    uint8_t resp_addr[16]
    uint16_t orig_port
    uint16_t resp_port
    double start_time
    double last_time
    double deadline
    uint64_t uid
    uint64_t number            # 0, 1, 2 ... in order of creation
    Endpoint ep[2]             # [0] originator, [1] responder
    uint32_t hist_seen
    uint8_t hist_len
    char history[HISTORY_MAX]
    uint8_t is_partial
    uint8_t first_packet_seen
    uint8_t seen_first_ack
    uint8_t close_deferred     # a close waits for missing data (Zeek's close_deferred)
    uint8_t deferred_gen_event
    int32_t slot               # the analyser's runtime slot, -1 = none
    StreamPair* streams        # per-side reassembly, NULL unless analysed
    uint8_t bound              # bound to an expectation (see FlowTable.expected)
    uint8_t detect_pending     # sides (bit 1 orig, 2 resp) whose first payload is not checked yet
    uint64_t detect_owners     # analysers (bits of FlowTable.detectable) whose signatures matched
    uint64_t detect_offered    # of which already handed to the runtime as candidates
    uint8_t quiet              # events switched off for this flow (bit per side)
    uint8_t end_reason         # why it ended (END_* in flows.pyx)

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
    cdef double now
    cdef object on_finish       # Python callable(raw record dict); per connection, not per packet
    # Analysers (None when the engine runs without them)
    cdef public object runtime
    cdef public Streams streams
    cdef uint8_t tcp_port_analyser[65536]   # index into analyser_classes, 0 = none
    cdef public list analyser_classes       # [(cls, config)], index 0 unused
    # Content signatures (analyser/signatures.py), checked in C on the first
    # payload of each side; sig_owner is a bit index into `detectable`.
    cdef uint8_t sig_value[128][16]
    cdef uint8_t sig_mask[128][16]
    cdef uint8_t sig_len[128]
    cdef uint8_t sig_side[128]
    cdef uint8_t sig_skip_space[128]
    cdef uint8_t sig_owner[128]
    cdef int n_signatures
    cdef public list detectable             # [(cls, config)] with signatures, <= 64
    cdef readonly uint64_t detections       # flows whose first payload matched
    cdef readonly uint64_t engine_errors    # exceptions caught in the engine
    cdef public dict expected               # flow number -> Expectation
    cdef dict slot_flows                    # analyser slot -> flow-table index
    cdef readonly uint64_t analysed_flows
    # Events: bit masks of what someone subscribed to, before/after the TCP update
    cdef public uint32_t ev_before
    cdef public uint32_t ev_after
    cdef public object event_sink
    cdef public bint event_frames
    cdef uint32_t pkt_events    # events of the packet being processed
    cdef int phase              # 0 before the TCP update, 1 after, 2 both
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
    cdef void attach(self, Flow* f) noexcept
    cdef str addr_text(self, Flow* f, bint orig)
    cdef object conn_info(self, Flow* f)
    cdef uint32_t classify(self, Flow* f, bint is_orig, const Decoded* d) noexcept
    cdef void fire_packet_events(self, Flow* f, bint is_orig, const Decoded* d,
                                 uint32_t mask, uint32_t events) noexcept
    cdef void state_events(self, Flow* f, uint8_t old_o, uint8_t old_r) noexcept
    cdef void fire(self, uint32_t kind, Flow* f, int side, const Decoded* d,
                   uint64_t a, uint64_t b) noexcept
    cdef void grow_buckets(self) noexcept
    cdef uint64_t match_signatures(self, int side, const uint8_t* data, uint32_t n) noexcept
    cdef void detected(self, Flow* f, uint64_t owners) noexcept
    cdef list ranked(self, Flow* f, uint64_t owners)
    cdef void start_analyser(self, Flow* f, object cls, object config, list candidates,
                             bint detect) noexcept
    cdef void caught(self, str where, object exc) noexcept
