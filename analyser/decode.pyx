# cython: language_level=3
"""Packet decoding: link layer -> IP -> transport header, in compiled code.

Role in the data flow: source -> ring -> **decode** -> flows -> analysers -> sinks.

`Decoder.decode()` takes one ring record (bytes, captured length, wire length,
link type) and fills a `Decoded` struct: addresses, ports, TCP flags and
sequence numbers, where the payload starts and how much of it was captured.
It allocates nothing per packet and never raises: a packet it cannot use is
counted under a named reason (`MALFORMED_NAMES`) and skipped.

Link layers: Ethernet (with any stack of 802.1Q / 802.1ad / QinQ tags, MPLS
label stacks and PPPoE sessions; 802.3 frames with LLC/SNAP), Linux cooked
capture v1 and v2, raw IP (LINKTYPE_RAW, IPV4, IPV6), BSD loopback (NULL,
LOOP), PPP (plain and HDLC-framed) and Linux NFLOG (the packet TLV).  IPv4 and IPv6 (with
extension headers) are reassembled from fragments in a bounded table
(`FragmentTable`): overlapping fragments keep the first copy of each byte
(the policy), and overlaps whose bytes differ are counted separately, as they
are how IDS evasion works.

Lengths follow the IP header, not the capture: a packet cut short by the
snap length still counts its full size, which is what connection byte counts
need; only checksums require the whole segment.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.string cimport memcpy, memset, memcmp
from libc.stdlib cimport malloc, free

# Keep in the order of MalformedReason in decode.pxd.
MALFORMED_NAMES = (
    "truncated_link_header",
    "unknown_link_type",
    "truncated_vlan_header",
    "truncated_mpls_header",
    "truncated_ip_header",
    "bad_ip_version",
    "bad_ip_header_length",
    "bad_ip_total_length",
    "bad_ip_checksum",
    "truncated_ipv6_extension_header",
    "truncated_tcp_header",
    "bad_tcp_header_length",
    "truncated_udp_header",
    "truncated_icmp_header",
    "fragment_too_big",
    "fragment_bad_offset",
    "encapsulation_too_deep",
    "truncated_tunnel_header",
    "bad_tunnel_header",
    "bad_inner_packet",
)

# Zeek's Tunnel::Type names (tunnel.log) and the conn.log service of a UDP
# tunnel's own connection, in the order of TUN_* (decode.pxd).
TUNNEL_NAMES = ("", "Tunnel::IP", "Tunnel::GRE", "Tunnel::VXLAN", "Tunnel::GENEVE",
                "Tunnel::GTPv1", "Tunnel::TEREDO", "Tunnel::AYIYA")
TUNNEL_SERVICES = ("", "", "", "vxlan", "geneve", "gtpv1", "teredo", "ayiya")

# Encapsulations opened per packet unless --tunnel-depth says otherwise:
# Zeek's Tunnel::max_depth (base/frameworks/tunnels), so that the same
# traffic gives the same connections and tunnel.log rows.
DEFAULT_TUNNEL_DEPTH = 4
MAX_TUNNEL_DEPTH = MAX_TUNNEL_LAYERS

# UDP ports that announce a tunnel (Zeek's vxlan_ports, geneve_ports,
# gtpv1_ports (user plane only), teredo_ports, ayiya_ports): the port says
# which header to check; the check decides.  Teredo and AYIYA are also found
# by their content on any port, as Zeek's protocol detection finds them.
cdef enum:
    PORT_VXLAN = 4789
    PORT_GENEVE = 6081
    PORT_GTPU = 2152
    PORT_TEREDO = 3544
    PORT_AYIYA = 5072

cdef uint8_t udp_tunnel_port[65536]
memset(udp_tunnel_port, 0, sizeof(udp_tunnel_port))
udp_tunnel_port[PORT_VXLAN] = TUN_VXLAN
udp_tunnel_port[PORT_GENEVE] = TUN_GENEVE
udp_tunnel_port[PORT_GTPU] = TUN_GTPV1
udp_tunnel_port[PORT_TEREDO] = TUN_TEREDO
udp_tunnel_port[PORT_AYIYA] = TUN_AYIYA

# Link types (LINKTYPE_* values as stored in pcap and pcapng files).
cdef enum:
    LT_NULL = 0
    LT_EN10MB = 1
    LT_PPP = 9
    LT_PPP_SERIAL = 50
    LT_RAW_OLD1 = 12
    LT_RAW_OLD2 = 14
    LT_RAW = 101
    LT_LOOP = 108
    LT_LINUX_SLL = 113
    LT_IPV4 = 228
    LT_IPV6 = 229
    LT_NFLOG = 239
    LT_LINUX_SLL2 = 276
    LT_IEEE802_11 = 105
    LT_IEEE802_11_RADIOTAP = 127

cdef enum:
    ETH_IPV4 = 0x0800
    ETH_IPV6 = 0x86DD
    ETH_VLAN = 0x8100
    ETH_QINQ = 0x88A8
    ETH_QINQ_OLD = 0x9100
    ETH_MPLS = 0x8847
    ETH_MPLS_MC = 0x8848
    ETH_PPPOE = 0x8864
    ETH_PBB = 0x88E7          # 802.1ah: I-TAG, customer addresses, ethertype
    ETH_VNTAG = 0x8926        # VN-Tag: 4-byte tag, ethertype
    ETH_FABRICPATH = 0x8903   # Cisco FabricPath: 16-byte header, inner Ethernet frame
    ETH_TEB = 0x6558          # transparent Ethernet bridging (GRE, Geneve)
    ETH_MAX_LENGTH = 1500     # at most: an 802.3 length, LLC follows

cdef enum:
    PPP_IPV4 = 0x0021
    PPP_IPV6 = 0x0057
    NFLOG_HEADER = 4          # family, version, resource id
    NFULA_PAYLOAD = 9         # the TLV that holds the packet

# GRE (RFC 2784/2890, PPTP's enhanced GRE of RFC 2637) and what it carries.
cdef enum:
    GRE_CHECKSUM = 0x8000
    GRE_ROUTING = 0x4000
    GRE_KEY = 0x2000
    GRE_SEQ = 0x1000
    GRE_ACK = 0x0080          # enhanced GRE (version 1)
    GRE_RESERVED = 0x0078
    GRE_PPTP = 0x880B         # version 1: PPP follows
    GRE_ERSPAN_II = 0x88BE    # type I without a sequence number
    GRE_ERSPAN_III = 0x22EB
    ERSPAN_II_LEN = 8
    ERSPAN_III_LEN = 12       # and 8 more with the optional subheader
    ERSPAN_III_OPT_LEN = 8
    FABRICPATH_LEN = 16
    VXLAN_LEN = 8
    GENEVE_LEN = 8            # and the options, in 4-byte units
    GTP_LEN = 8               # and 4 with sequence/N-PDU/next type, then extensions
    GTP_G_PDU = 255
    AYIYA_LEN = 8             # and the identity and signature
    TEREDO_ORIGIN_LEN = 8
    IP6_NO_NEXT = 59

cdef enum:
    MAX_ENCAP_LAYERS = 16     # VLAN tags + MPLS labels before we call it hostile
    FRAG_SLOTS = 64           # datagrams under reassembly at once (slots[] in .pxd)
    FRAG_MAX = 65535          # largest reassembled IP payload
    FRAG_UNITS = 8192         # 8-byte units in FRAG_MAX
    FRAG_TIMEOUT_NS = 30000000000

cdef inline uint16_t rd16(const uint8_t* p) noexcept nogil:
    return (<uint16_t>p[0] << 8) | p[1]

cdef inline uint32_t rd32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]

cdef inline int ppp_protocol(const uint8_t* p, uint32_t caplen, uint32_t* off) noexcept nogil:
    """PPP's protocol field at p[*off], after the optional HDLC-like framing
    (address 0xff, control 0x03); one byte when compressed (odd).  Returns
    the protocol and moves *off past it, or -1 when the packet ends first."""
    cdef uint32_t at = off[0]
    if caplen >= at + 2 and p[at] == 0xff and p[at + 1] == 0x03:
        at += 2
    if caplen < at + 1:
        return -1
    if p[at] & 1:
        off[0] = at + 1
        return p[at]
    if caplen < at + 2:
        return -1
    off[0] = at + 2
    return rd16(p + at)


cdef inline void v4mapped(uint8_t* dst16, const uint8_t* v4) noexcept nogil:
    memset(dst16, 0, 10)
    dst16[10] = 0xff
    dst16[11] = 0xff
    memcpy(dst16 + 12, v4, 4)

cdef inline uint64_t sum16(const uint8_t* p, uint32_t n) noexcept nogil:
    # Ones' complement sum, big-endian 16-bit words, folded later.
    cdef uint64_t s = 0
    cdef uint32_t i = 0
    while i + 1 < n:
        s += (<uint32_t>p[i] << 8) | p[i + 1]
        i += 2
    if i < n:
        s += <uint32_t>p[i] << 8
    return s

cdef inline uint16_t fold(uint64_t s) noexcept nogil:
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return <uint16_t>s

cdef bint transport_checksum_ok(const Decoded* d) noexcept nogil:
    cdef uint64_t s
    if d.ip_version == 4:
        s = sum16(d.src + 12, 4) + sum16(d.dst + 12, 4)
    else:
        s = sum16(d.src, 16) + sum16(d.dst, 16)
    s += d.proto + d.l4_len
    s += sum16(d.l4, d.l4_len)
    return fold(s) == 0xffff


cdef inline void set_payload(Decoded* out) noexcept nogil:
    """Where the payload starts, its length per the headers and as captured."""
    out.payload = out.l4 + out.l4_hdr_len
    out.payload_len = out.l4_len - out.l4_hdr_len
    out.payload_caplen = out.l4_caplen - out.l4_hdr_len if out.l4_caplen > out.l4_hdr_len else 0
    if out.payload_caplen > out.payload_len:
        out.payload_caplen = out.payload_len


cdef bint plain_tcp_hosts(const uint8_t* data, uint32_t caplen, uint32_t wirelen,
                         uint32_t linktype, bint verify_ip_checksum,
                         uint8_t* src16, uint8_t* dst16) noexcept nogil:
    """Whether Decoder.decode() takes this frame straight to a decoded TCP
    segment without counting anything on the way: Ethernet II carrying IPv4
    (not a fragment, its checksum right when checked) or IPv6 (no extension
    header), then a TCP header that fits.  Then src16 and dst16 are its
    addresses as decode() writes them.  False for anything else (VLANs,
    tunnels, fragments, UDP, offloaded lengths, malformed headers): only
    decode() can tell what those are.  Replay on several workers uses it to
    leave another worker's packets uncopied (engine.pyx)."""
    cdef const uint8_t* ip = data + 14
    cdef uint32_t ip_caplen, avail_wire, hlen, total, l4_caplen, thl
    if linktype != LT_EN10MB or caplen < 14:
        return False
    ip_caplen = caplen - 14
    avail_wire = wirelen - 14 if wirelen > 14 else 0
    if rd16(data + 12) == ETH_IPV4:
        if ip_caplen < 20 or (ip[0] >> 4) != 4:
            return False
        hlen = (ip[0] & 0x0f) * 4
        total = rd16(ip + 2)
        # (A total of 0, segmentation offload, is below hlen: decode() reads
        # the wire length then.)
        if hlen < 20 or ip_caplen < hlen or total < hlen or total > avail_wire:
            return False
        if ip[9] != PROTO_TCP or (rd16(ip + 6) & 0x3fff):      # MF or an offset
            return False
        if verify_ip_checksum and fold(sum16(ip, hlen)) != 0xffff:
            return False
        v4mapped(src16, ip + 12)
        v4mapped(dst16, ip + 16)
    elif rd16(data + 12) == ETH_IPV6:
        if ip_caplen < 40 or (ip[0] >> 4) != 6 or ip[6] != PROTO_TCP:
            return False
        hlen = 40
        total = 40 + rd16(ip + 4)
        if total == 40 or total > avail_wire:                   # (40: a jumbogram)
            return False
        memcpy(src16, ip + 8, 16)
        memcpy(dst16, ip + 24, 16)
    else:
        return False
    l4_caplen = (ip_caplen if ip_caplen < total else total) - hlen
    if l4_caplen < 20:
        return False
    thl = (ip[hlen + 12] >> 4) * 4
    return thl >= 20 and thl <= total - hlen and thl <= l4_caplen


cdef bint teredo_like(const uint8_t* p, uint32_t n) noexcept nogil:
    """Zeek's Teredo detection: an IPv6 header with a Teredo (2001:0::/32)
    address, or an authentication / origin indication before an IPv6 header."""
    cdef uint32_t skip
    if (p[0] >> 4) == 6:
        return ((p[8] == 0x20 and p[9] == 0x01 and p[10] == 0 and p[11] == 0)
                or (p[24] == 0x20 and p[25] == 0x01 and p[26] == 0 and p[27] == 0))
    if p[0] != 0:
        return False
    if p[1] == 1:
        skip = 13 + p[2] + p[3]
        if n < skip + 40:
            return False
        p += skip
        n -= skip
        if p[0] != 0 or p[1] != 0:
            return False
    elif p[1] != 0:
        return False
    return n >= 48 and (p[8] >> 4) == 6


cdef bint inner_length_matches(const uint8_t* ip, uint32_t n, bint bubble_ok) noexcept nogil:
    """Zeek's check of a GTP or Teredo inner packet: its IP total length is
    what the datagram holds (a Teredo bubble may carry more)."""
    cdef uint32_t total
    if (ip[0] >> 4) == 4:
        if n < 20:
            return False
        total = rd16(ip + 2)
    else:
        if n < 40:
            return False
        total = 40 + rd16(ip + 4)
        if bubble_ok and total < n and ip[6] == IP6_NO_NEXT and total == 40:
            return True
    return total == n


cdef class FragmentTable:
    """Bounded IP fragment reassembly: FRAG_SLOTS datagrams of up to 64 KiB."""

    def __cinit__(self):
        memset(self.slots, 0, sizeof(self.slots))
        self.out = <uint8_t*>malloc(FRAG_MAX + 60)

    def __dealloc__(self):
        cdef int i
        for i in range(FRAG_SLOTS):
            free(self.slots[i].data)
            free(self.slots[i].covered)
        free(self.out)

    cdef FragSlot* find(self, uint8_t version, uint8_t proto, const uint8_t* src,
                        const uint8_t* dst, uint32_t ident, int64_t ts_ns) noexcept:
        cdef int i
        cdef int free_i = -1
        cdef int oldest_i = 0
        cdef FragSlot* s
        for i in range(FRAG_SLOTS):
            s = &self.slots[i]
            if s.used and ts_ns - s.first_ts_ns > FRAG_TIMEOUT_NS:
                s.used = False
                self.timed_out += 1
            if not s.used:
                if free_i < 0:
                    free_i = i
                continue
            if (s.ident == ident and s.version == version and s.proto == proto
                    and memcmp(s.src, src, 16) == 0 and memcmp(s.dst, dst, 16) == 0):
                return s
            if s.first_ts_ns < self.slots[oldest_i].first_ts_ns or not self.slots[oldest_i].used:
                oldest_i = i
        if free_i < 0:
            # Table full: give up the oldest datagram rather than grow.
            free_i = oldest_i
            self.evicted += 1
        s = &self.slots[free_i]
        if s.data == NULL:
            s.data = <uint8_t*>malloc(FRAG_MAX)
            s.covered = <uint8_t*>malloc(FRAG_UNITS // 8)
            if s.data == NULL or s.covered == NULL:
                return NULL
        s.used = True
        s.version = version
        s.proto = proto
        memcpy(s.src, src, 16)
        memcpy(s.dst, dst, 16)
        s.ident = ident
        s.first_ts_ns = ts_ns
        s.hdr_len = 0
        s.total = 0
        s.units_needed = 0
        s.units_covered = 0
        memset(s.covered, 0, FRAG_UNITS // 8)
        return s

    cdef int add(self, FragSlot* s, uint32_t offset, const uint8_t* frag,
                 uint32_t length, bint more) noexcept:
        """Insert one fragment.  Returns 1 when the datagram is complete,
        0 when more is needed, -1 when the fragment is impossible."""
        cdef uint32_t unit, first_unit, last_unit, start, end, n
        if offset + length > FRAG_MAX:
            return -1
        if more and (length % 8) != 0:
            return -1
        if not more:
            if s.total and s.total != offset + length:
                return -1          # two different ends
            s.total = offset + length
            s.units_needed = (s.total + 7) // 8
        if length == 0:
            return 1 if (s.total and s.units_covered >= s.units_needed) else 0
        first_unit = offset // 8
        last_unit = (offset + length - 1) // 8
        for unit in range(first_unit, last_unit + 1):
            start = unit * 8
            end = start + 8
            if end > offset + length:
                end = offset + length
            n = end - start
            if s.covered[unit >> 3] & (1 << (unit & 7)):
                # First copy wins; differing bytes are an evasion signal.
                self.overlaps += 1
                if memcmp(s.data + start, frag + (start - offset), n) != 0:
                    self.overlaps_differing += 1
                continue
            memcpy(s.data + start, frag + (start - offset), n)
            s.covered[unit >> 3] |= (1 << (unit & 7))
            s.units_covered += 1
        if s.total and s.units_covered >= s.units_needed:
            return 1
        return 0


cdef class Decoder:
    """Decodes ring records into `Decoded` structs; counts what it rejects."""

    def __cinit__(self, bint verify_ip_checksum=True, int tunnel_depth=DEFAULT_TUNNEL_DEPTH):
        self.verify_ip_checksum = verify_ip_checksum
        self.max_tunnel_depth = min(max(tunnel_depth, 0), MAX_TUNNEL_LAYERS)
        memset(self.malformed, 0, sizeof(self.malformed))
        self.frags = FragmentTable()

    cdef int fail(self, int reason) noexcept:
        self.malformed[reason] += 1
        return MALFORMED

    cdef int decode(self, const uint8_t* data, uint32_t caplen, uint32_t wirelen,
                    uint32_t linktype, int64_t ts_ns, Decoded* out) noexcept:
        cdef uint32_t off = 0
        cdef uint32_t ethertype = 0
        cdef uint32_t af
        cdef int ppp
        out.vlan = 0
        out.reassembled = 0
        out.n_tunnels = 0
        out.tunnel_kind = 0
        out.too_deep = 0
        self.cur_ts = ts_ns
        if linktype == LT_EN10MB:
            if caplen < 14:
                return self.fail(M_TRUNCATED_LINK)
            ethertype = rd16(data + 12)
            off = 14
        elif linktype == LT_LINUX_SLL:
            if caplen < 16:
                return self.fail(M_TRUNCATED_LINK)
            ethertype = rd16(data + 14)
            off = 16
        elif linktype == LT_LINUX_SLL2:
            if caplen < 20:
                return self.fail(M_TRUNCATED_LINK)
            ethertype = rd16(data)
            off = 20
        elif linktype == LT_RAW or linktype == LT_RAW_OLD1 or linktype == LT_RAW_OLD2 \
                or linktype == LT_IPV4 or linktype == LT_IPV6:
            return self.decode_ip(data, caplen, wirelen, ts_ns, out, 0)
        elif linktype == LT_NULL or linktype == LT_LOOP:
            if caplen < 4:
                return self.fail(M_TRUNCATED_LINK)
            # The address family is in the writer's byte order for NULL and
            # network order for LOOP; small values tell which.
            af = rd32(data)
            if af > 0xffff:
                af = (data[3] << 24) | (data[2] << 16) | (data[1] << 8) | data[0]
            if af == 2:
                ethertype = ETH_IPV4
            elif af == 24 or af == 28 or af == 30:
                ethertype = ETH_IPV6
            else:
                self.not_ip += 1
                return NOT_IP
            off = 4
        elif linktype == LT_PPP or linktype == LT_PPP_SERIAL:
            ppp = ppp_protocol(data, caplen, &off)
            if ppp < 0:
                return self.fail(M_TRUNCATED_LINK)
            af = ppp
            if af == PPP_IPV4:
                ethertype = ETH_IPV4
            elif af == PPP_IPV6:
                ethertype = ETH_IPV6
            else:
                self.not_ip += 1
                return NOT_IP
        elif linktype == LT_NFLOG:
            return self.decode_nflog(data, caplen, ts_ns, out)
        elif linktype == LT_IEEE802_11_RADIOTAP:
            # Radiotap: version, pad, little-endian length of the whole header.
            if caplen < 4:
                return self.fail(M_TRUNCATED_LINK)
            off = data[2] | (data[3] << 8)
            if caplen < off:
                return self.fail(M_TRUNCATED_LINK)
            return self.decode_80211(data + off, caplen - off,
                                     wirelen - off if wirelen > off else 0, ts_ns, out)
        elif linktype == LT_IEEE802_11:
            return self.decode_80211(data, caplen, wirelen, ts_ns, out)
        else:
            return self.fail(M_UNKNOWN_LINKTYPE)
        if ethertype == ETH_IPV4 or ethertype == ETH_IPV6:
            # The common case, without a call more.
            return self.decode_ip(data + off, caplen - off, wirelen - off
                                  if wirelen > off else 0, ts_ns, out, 0)
        return self.decode_ethertype(ethertype, data, off, caplen, wirelen, ts_ns, out, 0)

    cdef int decode_ether(self, const uint8_t* data, uint32_t caplen, uint32_t wirelen,
                          int64_t ts_ns, Decoded* out, int depth) noexcept:
        """An Ethernet frame (the link layer, or what a tunnel carries)."""
        if caplen < 14:
            return self.fail(M_TRUNCATED_LINK)
        return self.decode_ethertype(rd16(data + 12), data, 14, caplen, wirelen, ts_ns, out,
                                     depth)

    cdef int decode_80211(self, const uint8_t* data, uint32_t caplen, uint32_t wirelen,
                          int64_t ts_ns, Decoded* out) noexcept:
        """An 802.11 frame: data frames (not protected) carry LLC/SNAP and an
        ethertype; management and control frames are not IP."""
        cdef uint32_t fc0, fc1, off
        if caplen < 2:
            return self.fail(M_TRUNCATED_LINK)
        fc0 = data[0]
        fc1 = data[1]
        if ((fc0 >> 2) & 3) != 2 or (fc1 & 0x40) or (fc0 & 0x40):
            # Not data, protected, or a null-data subtype (no payload).
            self.not_ip += 1
            return NOT_IP
        off = 24
        if (fc1 & 3) == 3:
            off += 6                  # four addresses (WDS)
        if fc0 & 0x80:
            off += 2                  # QoS control
            if fc1 & 0x80:
                off += 4              # HT control
        if caplen < off + 8:
            return self.fail(M_TRUNCATED_LINK)
        if data[off] != 0xAA or data[off + 1] != 0xAA or data[off + 2] != 0x03:
            self.not_ip += 1
            return NOT_IP
        return self.decode_ethertype(rd16(data + off + 6), data, off + 8, caplen, wirelen,
                                     ts_ns, out, 0 if out.n_tunnels == 0 else 2)

    cdef int decode_ethertype(self, uint32_t ethertype, const uint8_t* data, uint32_t off,
                              uint32_t caplen, uint32_t wirelen, int64_t ts_ns,
                              Decoded* out, int depth) noexcept:
        """What follows an ethertype at data[off:]: VLAN tags, MPLS labels,
        PPPoE, LLC/SNAP, PBB, VN-Tag, FabricPath, until IP."""
        cdef uint32_t af
        cdef int layers = 0
        while True:
            if ethertype == ETH_IPV4 or ethertype == ETH_IPV6:
                return self.decode_ip(data + off, caplen - off, wirelen - off
                                      if wirelen > off else 0, ts_ns, out, depth)
            layers += 1
            if layers > MAX_ENCAP_LAYERS:
                return self.fail(M_ENCAP_TOO_DEEP)
            if ethertype == ETH_VLAN or ethertype == ETH_QINQ or ethertype == ETH_QINQ_OLD:
                if caplen < off + 4:
                    return self.fail(M_TRUNCATED_VLAN)
                if out.vlan == 0:
                    out.vlan = rd16(data + off) & 0x0fff
                ethertype = rd16(data + off + 2)
                off += 4
            elif ethertype == ETH_MPLS or ethertype == ETH_MPLS_MC:
                # Labels until bottom-of-stack, then IP told by its version.
                while True:
                    if caplen < off + 4:
                        return self.fail(M_TRUNCATED_MPLS)
                    off += 4
                    if data[off - 2] & 0x01:
                        break
                    layers += 1
                    if layers > MAX_ENCAP_LAYERS:
                        return self.fail(M_ENCAP_TOO_DEEP)
                if caplen < off + 1:
                    return self.fail(M_TRUNCATED_MPLS)
                if (data[off] >> 4) == 4:
                    ethertype = ETH_IPV4
                elif (data[off] >> 4) == 6:
                    ethertype = ETH_IPV6
                else:
                    self.not_ip += 1
                    return NOT_IP
            elif ethertype <= ETH_MAX_LENGTH:
                # 802.3: an LLC header; SNAP (AA AA 03, OUI) carries an ethertype.
                if caplen < off + 8:
                    return self.fail(M_TRUNCATED_LINK)
                if data[off] != 0xAA or data[off + 1] != 0xAA or data[off + 2] != 0x03:
                    self.not_ip += 1
                    return NOT_IP
                ethertype = rd16(data + off + 6)
                off += 8
            elif ethertype == ETH_PBB:
                if caplen < off + 18:
                    return self.fail(M_TRUNCATED_LINK)
                ethertype = rd16(data + off + 16)
                off += 18
            elif ethertype == ETH_VNTAG:
                if caplen < off + 6:
                    return self.fail(M_TRUNCATED_LINK)
                ethertype = rd16(data + off + 4)
                off += 6
            elif ethertype == ETH_FABRICPATH:
                # Outer addresses and 0x8903 are behind us; the tag (2), then
                # the inner frame's addresses (12) and its ethertype.
                if caplen < off + FABRICPATH_LEN:
                    return self.fail(M_TRUNCATED_LINK)
                ethertype = rd16(data + off + 14)
                off += FABRICPATH_LEN
            elif ethertype == ETH_PPPOE:
                if caplen < off + 8:
                    return self.fail(M_TRUNCATED_LINK)
                af = rd16(data + off + 6)
                off += 8
                if af == 0x0021:
                    ethertype = ETH_IPV4
                elif af == 0x0057:
                    ethertype = ETH_IPV6
                else:
                    self.not_ip += 1
                    return NOT_IP
            else:
                self.not_ip += 1
                return NOT_IP

    cdef int decode_nflog(self, const uint8_t* data, uint32_t caplen, int64_t ts_ns,
                          Decoded* out) noexcept:
        """LINKTYPE_NFLOG: a 4-byte header, then TLVs (16-bit little-endian
        length including the TLV header, type, value padded to 4 bytes); the
        packet is the value of NFULA_PAYLOAD, an IP datagram."""
        cdef uint32_t off = NFLOG_HEADER
        cdef uint32_t tlen, ttype
        if caplen < NFLOG_HEADER:
            return self.fail(M_TRUNCATED_LINK)
        while True:
            if caplen == off:
                self.not_ip += 1               # no packet in it (a log entry only)
                return NOT_IP
            if caplen < off + 4:
                return self.fail(M_TRUNCATED_LINK)
            tlen = data[off] | (data[off + 1] << 8)
            ttype = data[off + 2] | (data[off + 3] << 8)
            if tlen < 4:
                return self.fail(M_TRUNCATED_LINK)
            if ttype == NFULA_PAYLOAD:
                if tlen > caplen - off:
                    tlen = caplen - off
                return self.decode_ip(data + off + 4, tlen - 4, tlen - 4, ts_ns, out, 0)
            off += (tlen + 3) & ~(<uint32_t>3)

    cdef int decode_ip(self, const uint8_t* ip, uint32_t caplen, uint32_t avail_wire,
                       int64_t ts_ns, Decoded* out, int depth) noexcept:
        cdef uint32_t hlen, total, frag_field, offset, nh, ext_len, ident
        cdef bint more
        cdef FragSlot* slot
        cdef int r
        if caplen < 1:
            return self.fail(M_TRUNCATED_IP)
        if (ip[0] >> 4) == 4:
            if caplen < 20:
                return self.fail(M_TRUNCATED_IP)
            hlen = (ip[0] & 0x0f) * 4
            if hlen < 20:
                return self.fail(M_BAD_IP_HEADER_LEN)
            if caplen < hlen:
                return self.fail(M_TRUNCATED_IP)
            total = rd16(ip + 2)
            if total == 0:
                # Segmentation offload: the header says 0, the wire tells.
                total = avail_wire
            if total < hlen or total > avail_wire:
                return self.fail(M_BAD_IP_TOTAL_LEN)
            if self.verify_ip_checksum and depth != 1 and fold(sum16(ip, hlen)) != 0xffff:
                return self.fail(M_BAD_IP_CHECKSUM)
            out.ip_version = 4
            out.proto = ip[9]
            v4mapped(out.src, ip + 12)
            v4mapped(out.dst, ip + 16)
            out.ip_hdr = ip
            out.ip_len = total
            frag_field = rd16(ip + 6)
            more = (frag_field & 0x2000) != 0
            offset = (frag_field & 0x1fff) * 8
            if more or offset:
                if depth == 1:
                    return self.fail(M_FRAGMENT_BAD_OFFSET)
                self.fragments_seen += 1
                if caplen < total:
                    # A fragment cut by the snap length cannot be rebuilt.
                    return self.fail(M_TRUNCATED_IP)
                slot = self.frags.find(4, out.proto, out.src, out.dst, rd16(ip + 4), ts_ns)
                if slot == NULL:
                    return self.fail(M_FRAGMENT_TOO_BIG)
                if offset == 0:
                    memcpy(slot.hdr, ip, hlen)
                    slot.hdr_len = hlen
                r = self.frags.add(slot, offset, ip + hlen, total - hlen, more)
                if r < 0:
                    slot.used = False
                    return self.fail(M_FRAGMENT_TOO_BIG if offset + total - hlen > FRAG_MAX
                                     else M_FRAGMENT_BAD_OFFSET)
                if r == 0 or slot.hdr_len == 0:
                    return FRAGMENT_HELD
                return self.rebuild(slot, ts_ns, out)
            out.l4 = ip + hlen
            out.l4_len = total - hlen
            out.l4_caplen = min(caplen, total) - hlen
            if out.proto == 4 or out.proto == 41 or out.proto == 47:
                return self.decap_ip(out, out.l4, out.l4_caplen, out.l4_len)
            return self.decode_transport(out)

        if (ip[0] >> 4) != 6:
            return self.fail(M_BAD_IP_VERSION)
        if caplen < 40:
            return self.fail(M_TRUNCATED_IP)
        total = 40 + rd16(ip + 4)
        if rd16(ip + 4) == 0:
            total = avail_wire        # jumbogram or offload
        if total > avail_wire or total < 40:
            return self.fail(M_BAD_IP_TOTAL_LEN)
        out.ip_version = 6
        memcpy(out.src, ip + 8, 16)
        memcpy(out.dst, ip + 24, 16)
        out.ip_hdr = ip
        out.ip_len = total
        nh = ip[6]
        hlen = 40
        while True:
            if nh == 0 or nh == 43 or nh == 60 or nh == 135 or nh == 139 or nh == 140:
                if caplen < hlen + 8:
                    return self.fail(M_TRUNCATED_IPV6_EXT)
                ext_len = (ip[hlen + 1] + 1) * 8
                nh = ip[hlen]
                hlen += ext_len
            elif nh == 51:   # AH counts its length in 4-byte units
                if caplen < hlen + 8:
                    return self.fail(M_TRUNCATED_IPV6_EXT)
                ext_len = (ip[hlen + 1] + 2) * 4
                nh = ip[hlen]
                hlen += ext_len
            elif nh == 44:
                if caplen < hlen + 8:
                    return self.fail(M_TRUNCATED_IPV6_EXT)
                if depth == 1:
                    return self.fail(M_FRAGMENT_BAD_OFFSET)
                frag_field = rd16(ip + hlen + 2)
                offset = frag_field & 0xfff8
                more = (frag_field & 1) != 0
                ident = rd32(ip + hlen + 4)
                nh = ip[hlen]
                hlen += 8
                if hlen > total:
                    return self.fail(M_TRUNCATED_IPV6_EXT)
                if not more and offset == 0:
                    continue     # atomic fragment: nothing to reassemble
                self.fragments_seen += 1
                if caplen < total:
                    return self.fail(M_TRUNCATED_IP)
                slot = self.frags.find(6, <uint8_t>nh, out.src, out.dst, ident, ts_ns)
                if slot == NULL:
                    return self.fail(M_FRAGMENT_TOO_BIG)
                if offset == 0:
                    memcpy(slot.hdr, ip, 40)
                    slot.hdr[6] = <uint8_t>nh
                    slot.hdr_len = 40
                r = self.frags.add(slot, offset, ip + hlen, total - hlen, more)
                if r < 0:
                    slot.used = False
                    return self.fail(M_FRAGMENT_TOO_BIG if offset + total - hlen > FRAG_MAX
                                     else M_FRAGMENT_BAD_OFFSET)
                if r == 0 or slot.hdr_len == 0:
                    return FRAGMENT_HELD
                return self.rebuild(slot, ts_ns, out)
            else:
                break
            if hlen > total:
                return self.fail(M_TRUNCATED_IPV6_EXT)
        out.proto = <uint8_t>nh
        out.l4 = ip + hlen
        out.l4_len = total - hlen
        out.l4_caplen = (min(caplen, total) - hlen) if min(caplen, total) > hlen else 0
        if nh == 4 or nh == 41 or nh == 47:
            return self.decap_ip(out, out.l4, out.l4_caplen, out.l4_len)
        return self.decode_transport(out)

    cdef int rebuild(self, FragSlot* slot, int64_t ts_ns, Decoded* out) noexcept:
        """Lay the completed datagram out as one IP packet and decode it."""
        cdef uint8_t* p = self.frags.out
        cdef uint32_t total = slot.hdr_len + slot.total
        cdef int r
        memcpy(p, slot.hdr, slot.hdr_len)
        memcpy(p + slot.hdr_len, slot.data, slot.total)
        if slot.version == 4:
            if total > 65535:
                slot.used = False
                return self.fail(M_FRAGMENT_TOO_BIG)
            p[2] = <uint8_t>(total >> 8)
            p[3] = <uint8_t>(total & 0xff)
            p[6] = 0
            p[7] = 0
        else:
            p[4] = <uint8_t>(slot.total >> 8)
            p[5] = <uint8_t>(slot.total & 0xff)
        slot.used = False
        self.datagrams_reassembled += 1
        r = self.decode_ip(p, total, total, ts_ns, out, 1)
        out.reassembled = 1
        return r

    cdef int decode_transport(self, Decoded* out) noexcept:
        cdef const uint8_t* l4 = out.l4
        cdef uint32_t thl, i, optlen
        out.tcp_flags = 0
        out.wscale = -1
        if out.proto == PROTO_TCP:
            if out.l4_caplen < 20:
                return self.fail(M_TRUNCATED_TCP)
            thl = (l4[12] >> 4) * 4
            if thl < 20:
                return self.fail(M_BAD_TCP_HEADER_LEN)
            if thl > out.l4_len or thl > out.l4_caplen:
                return self.fail(M_TRUNCATED_TCP)
            out.sport = rd16(l4)
            out.dport = rd16(l4 + 2)
            out.seq = rd32(l4 + 4)
            out.ack = rd32(l4 + 8)
            out.tcp_flags = l4[13]
            out.window = rd16(l4 + 14)
            out.l4_hdr_len = <uint16_t>thl
            if (out.tcp_flags & TH_SYN) and thl > 20:
                # Only the window scale option matters to us (zero windows).
                i = 20
                while i < thl:
                    if l4[i] == 0:
                        break
                    if l4[i] == 1:
                        i += 1
                        continue
                    if i + 1 >= thl:
                        break
                    optlen = l4[i + 1]
                    if optlen < 2 or i + optlen > thl:
                        break
                    if l4[i] == 3 and optlen == 3:
                        out.wscale = l4[i + 2]
                    i += optlen
        elif out.proto == PROTO_UDP:
            if out.l4_caplen < 8 or out.l4_len < 8:
                return self.fail(M_TRUNCATED_UDP)
            out.sport = rd16(l4)
            out.dport = rd16(l4 + 2)
            out.udp_len = rd16(l4 + 4)
            out.l4_hdr_len = 8
            if udp_tunnel_port[out.dport] | udp_tunnel_port[out.sport] or (
                    out.l4_caplen >= 11 and (
                        (l4[9] == 0x52 and l4[10] == 0x11)          # AYIYA forward
                        or (out.l4_caplen >= 48 and ((l4[8] >> 4) == 6 or (
                            l4[8] == 0 and l4[9] <= 1))))):         # Teredo
                set_payload(out)
                return self.decap_udp(out)
        elif out.proto == PROTO_ICMP or out.proto == PROTO_ICMP6:
            if out.l4_caplen < 8 or out.l4_len < 8:
                return self.fail(M_TRUNCATED_ICMP)
            out.icmp_type = l4[0]
            out.icmp_code = l4[1]
            out.sport = l4[0]
            out.dport = l4[1]
            out.l4_hdr_len = 8
        else:
            self.other_transport += 1
            return OTHER_TRANSPORT
        set_payload(out)
        return DECODED

    # -- tunnels ---------------------------------------------------------------

    cdef void push_layer(self, Decoded* out, int kind, int ok, uint32_t n) noexcept:
        """The packet decoded so far becomes tunnel layer n (its kind and
        whether its header checked); the inner packet is decoded into `out`
        next."""
        out.tunnel_kind = kind
        out.tunnel_ok = ok
        self.layers[n] = out[0]
        out.n_tunnels = n + 1
        out.tunnels = self.layers
        out.tunnel_kind = 0
        out.tunnel_ok = 0
        if n == 0:
            self.tunnelled += 1

    cdef int decap_ip(self, Decoded* out, const uint8_t* inner, uint32_t caplen,
                      uint32_t wirelen) noexcept:
        """IP in IP (protocol 4 or 41) or GRE (47): the outer header becomes a
        layer and the inner packet is decoded in its place."""
        cdef uint32_t n = out.n_tunnels
        cdef uint8_t kind = TUN_GRE if out.proto == 47 else TUN_IP
        if <int>n >= self.max_tunnel_depth:
            # Too deep (or tunnels off): the outer packet is all there is.
            if self.max_tunnel_depth > 0:
                self.tunnels_too_deep += 1
            self.other_transport += 1
            return OTHER_TRANSPORT
        self.push_layer(out, kind, 1, n)
        if kind == TUN_IP:
            return self.decode_ip(inner, caplen, wirelen, self.cur_ts, out, 2)
        return self.decode_gre(inner, caplen, wirelen, out)

    cdef int decode_gre(self, const uint8_t* p, uint32_t caplen, uint32_t wirelen,
                        Decoded* out) noexcept:
        """A GRE header and what it carries (Zeek's GRE analyser's rules)."""
        cdef uint32_t flags, proto, glen, off
        cdef int ppp
        if caplen < 4:
            return self.fail(M_TRUNCATED_TUNNEL)
        flags = rd16(p)
        proto = rd16(p + 2)
        glen = 4
        if flags & GRE_CHECKSUM:
            glen += 4
        if flags & GRE_KEY:
            glen += 4
        if flags & GRE_SEQ:
            glen += 4
        if flags & GRE_ACK:
            glen += 4
        if (flags & 7) > 1 or (flags & GRE_ROUTING) or (flags & GRE_RESERVED):
            return self.fail(M_BAD_TUNNEL_HEADER)
        if caplen < glen:
            return self.fail(M_TRUNCATED_TUNNEL)
        wirelen = wirelen - glen if wirelen > glen else 0
        if (flags & 7) == 1:
            # PPTP: PPP (HDLC-like framing optional, protocol field maybe compressed).
            if proto != GRE_PPTP:
                return self.fail(M_BAD_TUNNEL_HEADER)
            if caplen == glen and not (flags & GRE_SEQ):
                self.not_ip += 1          # an acknowledgement alone
                return NOT_IP
            off = glen
            ppp = ppp_protocol(p, caplen, &off)
            if ppp < 0:
                return self.fail(M_TRUNCATED_TUNNEL)
            if ppp != PPP_IPV4 and ppp != PPP_IPV6:
                self.not_ip += 1          # LCP, CCP, compressed data ...
                return NOT_IP
            return self.decode_ip(p + off, caplen - off, wirelen + glen - off
                                  if wirelen + glen > off else 0, self.cur_ts, out, 2)
        p += glen
        caplen -= glen
        if proto == ETH_TEB:
            return self.decode_ether(p, caplen, wirelen, self.cur_ts, out, 2)
        if proto == GRE_ERSPAN_II:
            # Type I has no header of its own; type II has one when sequenced.
            off = ERSPAN_II_LEN if flags & GRE_SEQ else 0
            if caplen < off:
                return self.fail(M_TRUNCATED_TUNNEL)
            return self.decode_ether(p + off, caplen - off, wirelen - off
                                     if wirelen > off else 0, self.cur_ts, out, 2)
        if proto == GRE_ERSPAN_III:
            if caplen < ERSPAN_III_LEN:
                return self.fail(M_TRUNCATED_TUNNEL)
            off = ERSPAN_III_LEN
            if p[ERSPAN_III_LEN - 1] & 0x01:
                off += ERSPAN_III_OPT_LEN
            if caplen < off:
                return self.fail(M_TRUNCATED_TUNNEL)
            return self.decode_ether(p + off, caplen - off, wirelen - off
                                     if wirelen > off else 0, self.cur_ts, out, 2)
        if ((proto & 0xFF0F) == 0x8200 or ((proto & 0xFF0F) == 0x8300 and proto <= 0x8370)
                or proto == 0x9000):
            # Aruba: 802.11 frames.
            return self.decode_80211(p, caplen, wirelen, self.cur_ts, out)
        return self.decode_ethertype(proto, p, 0, caplen, wirelen, self.cur_ts, out, 2)

    cdef int decap_udp(self, Decoded* out) noexcept:
        """A UDP datagram on a tunnel's port, or that looks like Teredo or
        AYIYA: when its header checks, the datagram becomes a layer (its own
        connection) and the inner packet is decoded in its place.  When the
        header does not check, it stays a UDP datagram; when the inner packet
        fails, the datagram is what is analysed (the failure is counted)."""
        cdef const uint8_t* pl = out.payload
        cdef uint32_t cl = out.payload_caplen
        cdef uint32_t wl = out.payload_len
        cdef uint32_t n = out.n_tunnels
        cdef uint32_t hl = 0, total, ext, tag
        cdef uint8_t kind = udp_tunnel_port[out.dport]
        cdef uint8_t ok = 0
        cdef uint32_t inner_type = 0     # ethertype of what follows; 1: Ethernet frame
        cdef int r
        if kind == 0:
            kind = udp_tunnel_port[out.sport]
        if kind == 0:
            # Zeek's protocol detection (no port of a tunnel on either side).
            if cl >= 3 and pl[1] == 0x52 and pl[2] == 0x11:
                kind = TUN_AYIYA
            elif cl >= 40 and teredo_like(pl, cl):
                kind = TUN_TEREDO
            else:
                return DECODED
        if <int>n >= self.max_tunnel_depth:
            if self.max_tunnel_depth > 0:
                self.tunnels_too_deep += 1
                out.too_deep = 1
            return DECODED
        if kind == TUN_VXLAN:
            if cl < VXLAN_LEN:
                return self.udp_fail(out, M_TRUNCATED_TUNNEL)
            if not (pl[0] & 0x08):
                return self.udp_fail(out, M_BAD_TUNNEL_HEADER)   # the I flag
            hl = VXLAN_LEN
            ok = 1
            inner_type = 1
        elif kind == TUN_GENEVE:
            if cl < GENEVE_LEN:
                return self.udp_fail(out, M_TRUNCATED_TUNNEL)
            if (pl[0] >> 6) != 0:
                return self.udp_fail(out, M_BAD_TUNNEL_HEADER)
            hl = GENEVE_LEN + (pl[0] & 0x3F) * 4
            if cl < hl:
                return self.udp_fail(out, M_TRUNCATED_TUNNEL)
            inner_type = rd16(pl + 2)
            if inner_type == ETH_TEB:
                inner_type = 1
            ok = 1
        elif kind == TUN_GTPV1:
            # Only GTPv1-U G-PDUs carry packets; anything else (GTP-C, a
            # datagram that merely uses the port) stays UDP.
            if cl < GTP_LEN or (pl[0] >> 5) != 1 or not (pl[0] & 0x10) or pl[1] != GTP_G_PDU:
                return DECODED
            if n > 0 and self.layers[n - 1].tunnel_kind == TUN_GTPV1:
                return DECODED            # GTP is never carried in GTP
            hl = GTP_LEN
            if pl[0] & 0x07:
                hl += 4
                if cl < hl:
                    return self.udp_fail(out, M_TRUNCATED_TUNNEL)
                if pl[0] & 0x04:
                    # Extension headers, each length * 4 bytes, the last byte
                    # the next one's type, until type 0.
                    while True:
                        if cl < hl + 1:
                            return self.udp_fail(out, M_TRUNCATED_TUNNEL)
                        ext = pl[hl] * 4
                        if ext == 0:
                            return self.udp_fail(out, M_BAD_TUNNEL_HEADER)
                        if cl < hl + ext:
                            return self.udp_fail(out, M_TRUNCATED_TUNNEL)
                        hl += ext
                        if pl[hl - 1] == 0:
                            break
            if cl < hl + 1 or ((pl[hl] >> 4) != 4 and (pl[hl] >> 4) != 6):
                out.tunnel_kind = kind
                return self.udp_fail(out, M_BAD_INNER_PACKET)
            if not inner_length_matches(pl + hl, wl - hl if wl > hl else 0, 0):
                out.tunnel_kind = kind
                return self.udp_fail(out, M_BAD_INNER_PACKET)
            if cl < wl:
                out.tunnel_kind = kind    # cut by the snap length (Zeek: Truncated GTPv1)
                return self.udp_fail(out, M_TRUNCATED_TUNNEL)
            ok = 1
        elif kind == TUN_TEREDO:
            # Optional authentication, optional origin indication, IPv6.
            hl = 0
            if cl >= 2 and pl[0] == 0 and pl[1] == 1:
                if cl < 4:
                    return self.udp_fail(out, M_TRUNCATED_TUNNEL)
                hl = 4 + pl[2] + pl[3] + 9
                if cl < hl:
                    return self.udp_fail(out, M_TRUNCATED_TUNNEL)
            if cl >= hl + 2 and pl[hl] == 0 and pl[hl + 1] == 0:
                hl += TEREDO_ORIGIN_LEN
                if cl < hl:
                    return self.udp_fail(out, M_TRUNCATED_TUNNEL)
            if cl < hl + 40:
                if wl >= hl + 40:
                    return self.udp_fail(out, M_TRUNCATED_TUNNEL)
                return DECODED            # not Teredo after all
            if (pl[hl] >> 4) != 6:
                return DECODED
            if not inner_length_matches(pl + hl, wl - hl, 1):
                return self.udp_fail(out, M_BAD_INNER_PACKET)
            if cl < wl:
                return self.udp_fail(out, M_TRUNCATED_TUNNEL)
            ok = 1
            inner_type = ETH_IPV6
        elif kind == TUN_AYIYA:
            if cl < AYIYA_LEN:
                return self.udp_fail(out, M_TRUNCATED_TUNNEL)
            hl = AYIYA_LEN + (1 << (pl[0] >> 4)) + (pl[1] >> 4) * 4
            if cl < hl:
                return self.udp_fail(out, M_TRUNCATED_TUNNEL)
            if (pl[2] & 0x0F) != 1:
                return DECODED            # not a forwarded packet
            out.tunnel_kind = kind
            out.tunnel_ok = 1             # Zeek confirms on the header
            if pl[3] == 4:
                inner_type = ETH_IPV4
            elif pl[3] == 41:
                inner_type = ETH_IPV6
            else:
                return self.udp_fail(out, M_BAD_INNER_PACKET)
            if wl <= hl:
                self.not_ip += 1          # a header alone (Zeek: ayiya_empty_packet)
                return DECODED
            ok = 1
        if inner_type == 0:
            inner_type = ETH_IPV4         # GTP: the version tells (decode_ip)
        # The datagram becomes a layer; the inner packet takes its place.
        self.push_layer(out, kind, ok, n)
        wl = wl - hl if wl > hl else 0
        if inner_type == 1:
            r = self.decode_ether(pl + hl, cl - hl, wl, self.cur_ts, out, 2)
        elif inner_type == ETH_IPV4 or inner_type == ETH_IPV6:
            r = self.decode_ip(pl + hl, cl - hl, wl, self.cur_ts, out, 2)
        else:
            r = self.decode_ethertype(inner_type, pl + hl, 0, cl - hl, wl, self.cur_ts, out, 2)
        if r != DECODED:
            # The inner packet is counted where it failed; the datagram is
            # still its own connection's.
            out[0] = self.layers[n]
            return DECODED
        return DECODED

    cdef int udp_fail(self, Decoded* out, int reason) noexcept:
        """A tunnel header that did not check: counted, and the datagram is
        analysed as UDP."""
        self.malformed[reason] += 1
        return DECODED

    def malformed_counts(self):
        """{reason: count} for every reason seen at least once."""
        return {MALFORMED_NAMES[i]: self.malformed[i]
                for i in range(<int>M_REASON_COUNT) if self.malformed[i]}

    def fragment_stats(self):
        """Fragment reassembly's counters, and the tunnels'."""
        return {"fragments_seen": self.fragments_seen,
                "tunnelled_packets": self.tunnelled,
                "tunnels_too_deep": self.tunnels_too_deep,
                "datagrams_reassembled": self.datagrams_reassembled,
                "fragment_overlaps": self.frags.overlaps,
                "fragment_overlaps_differing": self.frags.overlaps_differing,
                "fragment_datagrams_evicted": self.frags.evicted,
                "fragment_datagrams_timed_out": self.frags.timed_out}

    def decode_bytes(self, bytes data, uint32_t linktype, wirelen=None, int64_t ts_ns=0):
        """Decode one packet from Python (tests, tools).  Returns a dict, or
        the result name ('not_ip', 'fragment_held', 'malformed', ...)."""
        cdef Decoded d
        cdef uint32_t wl = len(data) if wirelen is None else wirelen
        cdef int r = self.decode(<const uint8_t*><const char*>data, len(data), wl, linktype, ts_ns, &d)
        if r != DECODED:
            return ("decoded", "not_ip", "fragment_held", "malformed", "other_transport")[r]
        return {
            "ip_version": d.ip_version, "proto": d.proto,
            "src": bytes(d.src[:16]), "dst": bytes(d.dst[:16]),
            "sport": d.sport, "dport": d.dport, "ip_len": d.ip_len,
            "tcp_flags": d.tcp_flags, "seq": d.seq, "ack": d.ack,
            "payload_len": d.payload_len, "payload_caplen": d.payload_caplen,
            "payload": bytes(d.payload[:d.payload_caplen]) if d.payload_caplen else b"",
            "vlan": d.vlan, "reassembled": bool(d.reassembled),
            "tunnels": tuple(d.tunnels[i].tunnel_kind for i in range(d.n_tunnels)),
            "tunnel_outer": tuple((bytes(d.tunnels[i].src[:16]), bytes(d.tunnels[i].dst[:16]),
                                   d.tunnels[i].proto) for i in range(d.n_tunnels)),
            "tunnel_kind": d.tunnel_kind, "tunnel_ok": bool(d.tunnel_ok),
            "too_deep": bool(d.too_deep),
            "checksum_ok": (transport_checksum_ok(&d)
                            if d.l4_caplen >= d.l4_len and d.proto in (6, 17) else None),
        }
