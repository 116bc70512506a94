"""The packet decoder: link layers, encapsulations, IP options and fragments,
and malformed input counted by reason."""
import struct

import dpkt
import pytest

from analyser.decode import Decoder, MALFORMED_NAMES
from packets import ethernet, ip4, tcp_packet, udp_packet

LT_EN10MB, LT_RAW, LT_NULL, LT_LOOP, LT_SLL, LT_SLL2 = 1, 101, 0, 108, 113, 276
LT_PPP, LT_PPP_SERIAL, LT_NFLOG = 9, 50, 239


def nflog(packet: bytes) -> bytes:
    """An NFLOG record: header, a prefix TLV (padded), the payload TLV."""
    prefix = b"rule\x00"
    tlv = struct.pack("<HH", 4 + len(prefix), 10) + prefix + b"\x00" * (-len(prefix) % 4)
    return b"\x02\x00\x00\x2a" + tlv + struct.pack("<HH", 4 + len(packet), 9) + packet

FRAME = tcp_packet("192.0.2.1", "198.51.100.2", 1234, 80, dpkt.tcp.TH_ACK, seq=7,
                   payload=b"GET / HTTP/1.0\r\n\r\n")
IP_PACKET = FRAME[14:]


def check_tcp(d):
    assert isinstance(d, dict), d
    assert d["ip_version"] == 4 and d["proto"] == 6
    assert d["src"][12:] == ip4("192.0.2.1") and d["dst"][12:] == ip4("198.51.100.2")
    assert (d["sport"], d["dport"], d["seq"]) == (1234, 80, 7)
    assert d["payload"] == b"GET / HTTP/1.0\r\n\r\n"
    assert d["checksum_ok"] is True


@pytest.mark.parametrize("linktype,frame", [
    (LT_EN10MB, FRAME),
    (LT_RAW, IP_PACKET),
    (LT_NULL, struct.pack("<I", 2) + IP_PACKET),          # BSD loopback, host order
    (LT_LOOP, struct.pack("!I", 2) + IP_PACKET),          # OpenBSD loop, network order
    (LT_SLL, b"\x00\x00\x00\x01\x00\x06" + b"\x02" * 8 + b"\x08\x00" + IP_PACKET),
    (LT_SLL2, b"\x08\x00\x00\x00" + b"\x00\x00\x00\x02" + b"\x00\x01\x00\x06"
     + b"\x02" * 8 + IP_PACKET),
    (LT_EN10MB, ethernet(b"\x00\x05\x08\x00" + IP_PACKET, 0x8100)),                # 802.1Q
    (LT_EN10MB, ethernet(b"\x00\x05\x81\x00" + b"\x00\x06\x08\x00" + IP_PACKET, 0x88a8)),  # QinQ
    (LT_EN10MB, ethernet(b"\x00\x01\x00\x40" + b"\x00\x02\x01\x40" + IP_PACKET, 0x8847)),  # MPLS x2
    # MPLS in VLAN
    (LT_EN10MB, ethernet(b"\x00\x07\x88\x47" + b"\x00\x02\x01\x40" + IP_PACKET, 0x8100)),
    (LT_EN10MB, ethernet(b"\x11\x00\x00\x01" + struct.pack("!H", len(IP_PACKET) + 2)
                         + b"\x00\x21" + IP_PACKET, 0x8864)),                      # PPPoE
    (LT_PPP, b"\x00\x21" + IP_PACKET),                       # PPP, no framing
    (LT_PPP, b"\xff\x03\x00\x21" + IP_PACKET),               # PPP, HDLC-like framing
    (LT_PPP, b"\x21" + IP_PACKET),                           # compressed protocol field
    (LT_PPP_SERIAL, b"\xff\x03\x00\x21" + IP_PACKET),
    (LT_NFLOG, nflog(IP_PACKET)),
    # 802.3 with LLC/SNAP, and the same inside an 802.1Q tag
    (LT_EN10MB, ethernet(b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + IP_PACKET, len(IP_PACKET) + 8)),
    (LT_EN10MB, ethernet(b"\x00\x05" + struct.pack("!H", len(IP_PACKET) + 8)
                         + b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + IP_PACKET, 0x8100)),
])
def test_link_layers_and_encapsulations(linktype, frame):
    check_tcp(Decoder().decode_bytes(frame, linktype))


def test_vlan_id_is_reported():
    d = Decoder().decode_bytes(ethernet(b"\x00\x05\x08\x00" + IP_PACKET, 0x8100), LT_EN10MB)
    assert d["vlan"] == 5


def test_ipv6_with_extension_headers():
    udp = bytes(dpkt.udp.UDP(sport=5000, dport=53, data=b"abcd", ulen=12))
    hop = bytes([60, 0]) + b"\x00" * 6          # hop-by-hop -> destination options
    dst = bytes([17, 0]) + b"\x00" * 6          # destination options -> UDP
    body = hop + dst + udp
    hdr = struct.pack("!IHBB", 6 << 28, len(body), 0, 64) + b"\x20\x01" + b"\x00" * 13 + b"\x01" \
        + b"\x20\x01" + b"\x00" * 13 + b"\x02"
    d = Decoder().decode_bytes(hdr + body, LT_RAW)
    assert d["ip_version"] == 6 and d["proto"] == 17
    assert (d["sport"], d["dport"], d["payload"]) == (5000, 53, b"abcd")


def ipv4_fragment(part: bytes, offset: int, more: bool, ident=42, proto=17) -> bytes:
    ip = dpkt.ip.IP(src=ip4("10.0.0.1"), dst=ip4("10.0.0.2"), p=proto, id=ident,
                    mf=1 if more else 0, offset=offset // 8, data=part)
    ip.len = 20 + len(part)
    return bytes(ip)


def fragments(payload_l4: bytes, sizes, ident=42, proto=17):
    """Split an IPv4 datagram's payload into fragments of the given sizes."""
    out, off = [], 0
    for i, n in enumerate(sizes):
        more = i < len(sizes) - 1
        part = payload_l4[off:off + n]
        out.append(ipv4_fragment(part, off, more, ident, proto))
        off += n
    return out


def test_ipv4_fragments_are_reassembled_in_any_order():
    l4 = bytes(dpkt.udp.UDP(sport=1, dport=2, data=b"0123456789" * 300, ulen=3008))
    frags = fragments(l4, [1480, 1480, 48])
    dec = Decoder()
    assert dec.decode_bytes(frags[2], LT_RAW) == "fragment_held"
    assert dec.decode_bytes(frags[0], LT_RAW) == "fragment_held"
    d = dec.decode_bytes(frags[1], LT_RAW)
    assert d["reassembled"] and d["payload"] == b"0123456789" * 300
    assert d["ip_len"] == 20 + 3008
    stats = dec.fragment_stats()
    assert (stats["fragments_seen"], stats["datagrams_reassembled"]) == (3, 1)


def test_overlapping_fragments_keep_the_first_bytes_and_count_differences():
    l4 = bytes(dpkt.udp.UDP(sport=1, dport=2, data=b"A" * 32, ulen=40))
    first, last = fragments(l4, [16, 24])
    evil = ipv4_fragment(b"EVILEVIL", 8, True)
    dec = Decoder()
    dec.decode_bytes(first, LT_RAW)
    dec.decode_bytes(evil, LT_RAW)                   # overlaps bytes 8..16 of the first
    d = dec.decode_bytes(last, LT_RAW)
    assert d["payload"] == b"A" * 32                 # first copy wins
    stats = dec.fragment_stats()
    assert stats["fragment_overlaps"] >= 1 and stats["fragment_overlaps_differing"] >= 1


@pytest.mark.parametrize("frame,linktype,reason,wirelen", [
    (FRAME[:10], LT_EN10MB, "truncated_link_header", None),
    (FRAME[:14 + 12], LT_EN10MB, "truncated_ip_header", len(FRAME)),
    (FRAME[:14] + b"\x75" + FRAME[15:], LT_EN10MB, "bad_ip_version", None),
    (FRAME[:14] + b"\x43" + FRAME[15:], LT_EN10MB, "bad_ip_header_length", None),
    (FRAME[:14 + 34], LT_EN10MB, "truncated_tcp_header", len(FRAME)),
    (FRAME[:14 + 20 + 12] + b"\x20" + FRAME[14 + 20 + 13:], LT_EN10MB,
     "bad_tcp_header_length", None),
    (FRAME, 9999, "unknown_link_type", None),
    (b"\xff\x03\x00", LT_PPP, "truncated_link_header", None),
    (nflog(IP_PACKET)[:10], LT_NFLOG, "truncated_link_header", None),
    (ethernet(b"\xaa\xaa\x03", 40), LT_EN10MB, "truncated_link_header", None),
    (ethernet(b"\x00\x05", 0x8100), LT_EN10MB, "truncated_vlan_header", None),
    (ethernet(b"\x00\x01\x00", 0x8847), LT_EN10MB, "truncated_mpls_header", None),
    (udp_packet("10.0.0.1", "10.0.0.2", 1, 2, b"")[:14 + 24], LT_EN10MB,
     "truncated_udp_header", 14 + 28),
])
def test_malformed_packets_are_counted_by_reason(frame, linktype, reason, wirelen):
    dec = Decoder()
    assert dec.decode_bytes(frame, linktype, wirelen) == "malformed"
    assert dec.malformed_counts() == {reason: 1}
    assert reason in MALFORMED_NAMES


def test_ip_total_length_beyond_the_wire_is_malformed():
    bad = FRAME[:16] + struct.pack("!H", 4000) + FRAME[18:]
    dec = Decoder()
    assert dec.decode_bytes(bad, LT_EN10MB) == "malformed"
    assert dec.malformed_counts() == {"bad_ip_total_length": 1}


def test_snaplen_cut_packet_keeps_its_lengths_from_the_ip_header():
    cut = FRAME[:14 + 20 + 20 + 4]                  # 4 payload bytes captured
    d = Decoder().decode_bytes(cut, LT_EN10MB, wirelen=len(FRAME))
    assert d["payload_len"] == 18 and d["payload_caplen"] == 4
    assert d["ip_len"] == len(FRAME) - 14
    assert d["checksum_ok"] is None                 # cannot be checked


def test_non_ip_link_payloads_are_not_malformed():
    dec = Decoder()
    assert dec.decode_bytes(b"\xc0\x21" + b"\x01" * 8, LT_PPP) == "not_ip"       # PPP LCP
    assert dec.decode_bytes(b"\x02\x00\x00\x2a", LT_NFLOG) == "not_ip"         # no packet
    assert dec.decode_bytes(ethernet(b"\x42\x42\x03" + b"\x00" * 40, 46),
                            LT_EN10MB) == "not_ip"                              # STP (LLC)
    assert dec.malformed_counts() == {}


def test_non_ip_is_not_malformed():
    dec = Decoder()
    arp = ethernet(b"\x00\x01\x08\x00\x06\x04\x00\x01" + b"\x00" * 20, 0x0806)
    assert dec.decode_bytes(arp, LT_EN10MB) == "not_ip"
    assert dec.malformed_counts() == {}
