# Declarations of the packet decoder (see decode.pyx).
cimport cython
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t

# What decode() made of a packet.
cdef enum DecodeResult:
    DECODED = 0          # an IP packet with a transport header: use it
    NOT_IP = 1           # ARP, LLDP, ...: not ours, not an error
    FRAGMENT_HELD = 2    # a fragment, kept until its datagram is complete
    MALFORMED = 3        # counted under one of the reasons below
    OTHER_TRANSPORT = 4  # IP, but neither TCP, UDP, ICMP nor ICMPv6

# Why a packet was malformed.  The names (MALFORMED_NAMES in decode.pyx) are
# what the summary and the metrics print; keep both lists in the same order.
cdef enum MalformedReason:
    M_TRUNCATED_LINK = 0
    M_UNKNOWN_LINKTYPE
    M_TRUNCATED_VLAN
    M_TRUNCATED_MPLS
    M_TRUNCATED_IP
    M_BAD_IP_VERSION
    M_BAD_IP_HEADER_LEN
    M_BAD_IP_TOTAL_LEN
    M_BAD_IP_CHECKSUM
    M_TRUNCATED_IPV6_EXT
    M_TRUNCATED_TCP
    M_BAD_TCP_HEADER_LEN
    M_TRUNCATED_UDP
    M_TRUNCATED_ICMP
    M_FRAGMENT_TOO_BIG
    M_FRAGMENT_BAD_OFFSET
    M_ENCAP_TOO_DEEP
    M_TRUNCATED_TUNNEL        # a tunnel header (GRE, VXLAN, Geneve, GTP, Teredo, AYIYA) cut short
    M_BAD_TUNNEL_HEADER       # a tunnel header with a bad version, flags or length
    M_BAD_INNER_PACKET        # a tunnel's inner packet is not IP, or not of the length it says
    M_REASON_COUNT

cdef enum:
    PROTO_ICMP = 1
    PROTO_TCP = 6
    PROTO_UDP = 17
    PROTO_ICMP6 = 58

# Encapsulations (Zeek's Tunnel::Type).  TUNNEL_NAMES and TUNNEL_SERVICES in
# decode.pyx name them; keep the order.
cpdef enum:
    TUN_NONE = 0
    TUN_IP = 1           # IP in IP: 4in4, 6in4, 4in6, 6in6
    TUN_GRE = 2          # GRE (plain, keyed, PPTP, bridging, ERSPAN, Aruba)
    TUN_VXLAN = 3
    TUN_GENEVE = 4
    TUN_GTPV1 = 5
    TUN_TEREDO = 6
    TUN_AYIYA = 7
    TUN_KIND_COUNT = 8

cdef enum:
    # Encapsulations one packet may come through at most, whatever
    # --tunnel-depth says (the decoder keeps one outer layer per encapsulation).
    MAX_TUNNEL_LAYERS = 8

cpdef enum:
    TH_FIN = 0x01
    TH_SYN = 0x02
    TH_RST = 0x04
    TH_PUSH = 0x08
    TH_ACK = 0x10
    TH_URG = 0x20

cdef struct Decoded:
    uint8_t ip_version        # 4 or 6
    uint8_t proto             # transport protocol number
    uint8_t src[16]           # IPv4 as ::ffff:a.b.c.d
    uint8_t dst[16]
    uint16_t sport            # TCP/UDP ports; ICMP: type, code
    uint16_t dport
    uint32_t ip_len           # IP total length (header + payload) per header
    const uint8_t* ip_hdr     # start of the IP header (for checksums)
    const uint8_t* l4         # start of the transport header
    uint32_t l4_len           # transport header + payload, per the IP header
    uint32_t l4_caplen        # of which captured
    # TCP
    uint8_t tcp_flags
    uint32_t seq
    uint32_t ack
    uint16_t window
    uint16_t l4_hdr_len       # TCP header (with options), UDP 8, ICMP 8
    int32_t wscale            # window scale option, -1 if absent
    # payload (after the transport header)
    const uint8_t* payload
    uint32_t payload_len      # per the IP header
    uint32_t payload_caplen   # of which captured
    uint16_t udp_len          # UDP length field
    uint8_t icmp_type
    uint8_t icmp_code
    uint8_t reassembled       # came out of IP fragment reassembly
    uint16_t vlan             # outermost VLAN id, 0 if none
    # Set by the engine: where the packet's bytes live, so that a stream can
    # keep them in place (pinned) instead of copying.
    uint64_t record_index
    uint8_t in_ring           # 0 for datagrams rebuilt from fragments
    const uint8_t* frame      # the whole captured frame (for event filters)
    uint32_t frame_caplen
    uint32_t frame_wirelen
    uint32_t linktype
    # Tunnels (see Decoder.decap_udp / decap_ip).  A packet that came through
    # encapsulations has n_tunnels > 0 and `tunnels` points at the outer
    # layers, outermost first (the decoder's; valid until the next decode):
    # for IP in IP and GRE the outer IP header (proto 4, 41 or 47), for UDP
    # tunnels the whole carrier datagram, itself a connection.
    uint8_t n_tunnels
    uint8_t tunnel_kind       # this UDP datagram carries a tunnel of this kind (TUN_*)
    uint8_t tunnel_ok         # ... whose header (and inner packet) confirm the protocol
    uint8_t too_deep          # a tunnel in it was not opened: --tunnel-depth reached
    Decoded* tunnels

cdef struct FragSlot:
    bint used
    uint8_t version
    uint8_t proto
    uint8_t src[16]
    uint8_t dst[16]
    uint32_t ident
    int64_t first_ts_ns
    uint8_t hdr[60]           # IP header of the fragment at offset 0
    uint32_t hdr_len
    uint32_t total            # payload length, known once the last fragment is in
    uint32_t units_needed
    uint32_t units_covered
    uint8_t* data             # FRAG_MAX bytes, allocated on first use
    uint8_t* covered          # one bit per 8-byte unit

cdef class FragmentTable:
    cdef FragSlot slots[64]
    cdef uint8_t* out             # the last completed datagram, rebuilt as IP
    cdef readonly uint64_t overlaps
    cdef readonly uint64_t overlaps_differing
    cdef readonly uint64_t evicted
    cdef readonly uint64_t timed_out
    cdef FragSlot* find(self, uint8_t version, uint8_t proto, const uint8_t* src,
                        const uint8_t* dst, uint32_t ident, int64_t ts_ns) noexcept
    cdef int add(self, FragSlot* s, uint32_t offset, const uint8_t* frag,
                 uint32_t length, bint more) noexcept

@cython.final
cdef class Decoder:
    cdef readonly bint verify_ip_checksum
    cdef uint64_t malformed[<int>M_REASON_COUNT]
    cdef readonly uint64_t not_ip
    cdef readonly uint64_t other_transport
    cdef readonly uint64_t fragments_seen
    cdef readonly uint64_t datagrams_reassembled
    cdef FragmentTable frags
    cdef public int max_tunnel_depth      # encapsulations opened per packet (0: none)
    cdef readonly uint64_t tunnelled      # packets that came through at least one
    cdef readonly uint64_t tunnels_too_deep
    cdef Decoded layers[<int>MAX_TUNNEL_LAYERS]
    cdef int64_t cur_ts
    cdef int decode(self, const uint8_t* data, uint32_t caplen, uint32_t wirelen,
                    uint32_t linktype, int64_t ts_ns, Decoded* out) noexcept
    cdef int decode_ip(self, const uint8_t* data, uint32_t caplen, uint32_t avail_wire,
                       int64_t ts_ns, Decoded* out, int depth) noexcept
    cdef int decode_nflog(self, const uint8_t* data, uint32_t caplen, int64_t ts_ns,
                          Decoded* out) noexcept
    cdef int decode_ethertype(self, uint32_t ethertype, const uint8_t* data, uint32_t off,
                              uint32_t caplen, uint32_t wirelen, int64_t ts_ns,
                              Decoded* out, int depth) noexcept
    cdef int decode_ether(self, const uint8_t* data, uint32_t caplen, uint32_t wirelen,
                          int64_t ts_ns, Decoded* out, int depth) noexcept
    cdef int decode_80211(self, const uint8_t* data, uint32_t caplen, uint32_t wirelen,
                          int64_t ts_ns, Decoded* out) noexcept
    cdef void push_layer(self, Decoded* out, int kind, int ok, uint32_t n) noexcept
    cdef int decap_ip(self, Decoded* out, const uint8_t* inner, uint32_t caplen,
                      uint32_t wirelen) noexcept
    cdef int decode_gre(self, const uint8_t* p, uint32_t caplen, uint32_t wirelen,
                        Decoded* out) noexcept
    cdef int decap_udp(self, Decoded* out) noexcept
    cdef int udp_fail(self, Decoded* out, int reason) noexcept
    cdef int decode_transport(self, Decoded* out) noexcept
    cdef int fail(self, int reason) noexcept
    cdef int rebuild(self, FragSlot* slot, int64_t ts_ns, Decoded* out) noexcept

# Internet checksum of a TCP/UDP segment with its pseudo header; True when it
# verifies.  Only call with the whole segment captured.
cdef bint transport_checksum_ok(const Decoded* d) noexcept nogil
# Whether decode() would take this frame straight to a TCP segment without
# counting anything; then its addresses, as decode() writes them.
cdef bint plain_tcp_hosts(const uint8_t* data, uint32_t caplen, uint32_t wirelen,
                         uint32_t linktype, bint verify_ip_checksum,
                         uint8_t* src16, uint8_t* dst16) noexcept nogil
