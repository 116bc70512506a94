# The per-flow state shared by the flow table (flows.pyx) and the binding of
# analysers and events (binding.pyx): the Flow and Endpoint structs, the
# state and timeout-class numbers, and two helpers that turn a flow's
# numbers into text (uids, addresses).  Declarations only: no module of its own.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from analyser.streams cimport StreamPair


cdef extern from "<arpa/inet.h>" nogil:
    const char* inet_ntop(int af, const void* src, char* dst, unsigned int size)

cdef extern from "<sys/socket.h>" nogil:
    int AF_INET
    int AF_INET6

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

cdef enum:
    OOO_RANGES = 8     # out-of-order ranges remembered per side for gap accounting
    HISTORY_MAX = 40   # history letters kept (Zeek's are logarithmic, so short)

# Tunnels (flows.pyx: FlowTable.encapsulation, carrier).
cdef enum:
    MAX_TUNNEL_PARENTS = 8     # tunnel_parents uids kept per connection
    MAX_TUNNEL_CHANGES = 5     # encapsulation changes reported (Zeek's
                               # Tunnel::max_changes_per_connection), then 'X'
    TS_CONFIRMED = 1           # tunnel_state: the tunnel protocol is confirmed (service)
    TS_VALID_ORIG = 2          # Teredo: a good encapsulation seen from the originator
    TS_VALID_RESP = 4          # ... and from the responder

# What a connection that came through tunnels remembers of them (allocated
# on its first encapsulated packet; NULL for the rest).
cdef struct TunnelState:
    uint64_t encap             # identity of the encapsulation last seen (0: none)
    uint8_t changes
    uint8_t n_parents
    uint64_t parents[MAX_TUNNEL_PARENTS]   # uids of the innermost tunnels seen

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
    uint8_t tunnel_kind        # a tunnel's own connection: the TUN_* it carried
    uint8_t tunnel_state       # TS_* bits (its encapsulations: FlowTable.tunnel_of)
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
    uint8_t datagrams_off      # UDP: its analyser has ended, datagrams are only counted
    uint8_t end_reason         # why it ended (END_* in flows.pyx)
    uint8_t pcap_state         # --pcap-out: PCAP_* of analyser/pcapout.pxd
    void* pcap_pending         # its packets held until decided (pcapout.Pending*)


cdef inline int uid_chars(uint64_t num, char* out) noexcept nogil:
    """Zeek-style connection uid: 'C' and the base62 digits of a 64-bit id,
    written to `out` (at least 16 bytes); returns the length."""
    cdef char buf[16]
    cdef int i = 15
    cdef int k
    cdef const char* digits = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    while True:
        buf[i] = digits[num % 62]
        num //= 62
        i -= 1
        if num == 0:
            break
    buf[i] = b'C'
    for k in range(16 - i):
        out[k] = buf[i + k]
    return 16 - i


cdef inline str uid_text(uint64_t num):
    cdef char buf[16]
    cdef int n = uid_chars(num, buf)
    return buf[:n].decode("ascii")


cdef inline int addr_chars(const uint8_t* a, uint8_t ip_version, char* out) noexcept nogil:
    """An address (IPv4 mapped into the last 4 of 16 bytes) as inet_ntop
    writes it, to `out` (at least 64 bytes); returns the length.  IPv4's
    dotted quad is written here (glibc's inet_ntop formats it with sprintf,
    the dearer part of a conn.log row)."""
    cdef int n = 0
    cdef int i
    cdef uint8_t b
    if ip_version == 4:
        for i in range(4):
            b = a[12 + i]
            if b >= 100:
                out[n] = 48 + b // 100
                out[n + 1] = 48 + b // 10 % 10
                n += 2
            elif b >= 10:
                out[n] = 48 + b // 10
                n += 1
            out[n] = 48 + b % 10
            out[n + 1] = 46                  # "."
            n += 2
        n -= 1
        out[n] = 0
        return n
    inet_ntop(AF_INET6, a, out, 64)
    while out[n] != 0:
        n += 1
    return n


cdef inline str addr_text(const uint8_t* a, uint8_t ip_version):
    cdef char buf[64]
    cdef int n = addr_chars(a, ip_version, buf)
    return buf[:n].decode("ascii")
