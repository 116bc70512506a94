"""BPF filter (ringbuf.bpf): libpcap's compiler, run per packet and per link type."""
import dpkt
import pytest

from ringbuf.bpf import BpfFilter

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113


def ip_address(text):
    return bytes(int(part) for part in text.split("."))


def ip_packet(src="10.0.0.1", dst="10.0.0.2", transport="tcp", sport=40000, dport=21):
    if transport == "tcp":
        segment, protocol = dpkt.tcp.TCP(sport=sport, dport=dport, flags=dpkt.tcp.TH_SYN), 6
    else:
        segment, protocol = dpkt.udp.UDP(sport=sport, dport=dport, data=b"hello"), 17
    packet = dpkt.ip.IP(src=ip_address(src), dst=ip_address(dst), p=protocol, data=segment)
    packet.len = len(packet)
    return packet


def ethernet(packet, vlan=None):
    frame = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, data=packet,
                                   type=dpkt.ethernet.ETH_TYPE_IP)
    if vlan is not None:
        frame.vlan_tags = [dpkt.ethernet.VLANtag8021Q(id=vlan)]
        frame.type = dpkt.ethernet.ETH_TYPE_8021Q
    return bytes(frame)


def test_vlan_frame_is_really_tagged():
    # Guard for the vlan tests: the crafted frame carries an 802.1Q header.
    frame = ethernet(ip_packet(), vlan=7)
    assert frame[12:14] == b"\x81\x00"
    assert frame[16:18] == b"\x08\x00"


@pytest.mark.parametrize("expression, packet, expected", [
    ("tcp port 21", ip_packet(dport=21), True),
    ("tcp port 21", ip_packet(sport=21, dport=50000), True),
    ("tcp port 21", ip_packet(dport=80), False),
    ("tcp port 21", ip_packet(transport="udp", dport=21), False),
    ("udp", ip_packet(transport="udp", dport=53), True),
    ("udp", ip_packet(), False),
    ("host 10.0.0.1", ip_packet(src="10.0.0.1", dst="192.168.1.1"), True),
    ("host 10.0.0.1", ip_packet(src="192.168.1.1", dst="10.0.0.1"), True),
    ("host 10.0.0.1", ip_packet(src="10.0.0.3", dst="10.0.0.4"), False),
])
def test_expressions_on_ethernet_frames(expression, packet, expected):
    assert BpfFilter(expression).match(LINKTYPE_ETHERNET, ethernet(packet)) is expected


def test_vlan_and_tcp():
    bpf = BpfFilter("vlan and tcp")
    assert bpf.match(LINKTYPE_ETHERNET, ethernet(ip_packet(), vlan=10))
    assert not bpf.match(LINKTYPE_ETHERNET, ethernet(ip_packet()))                 # untagged
    assert not bpf.match(LINKTYPE_ETHERNET,
                         ethernet(ip_packet(transport="udp"), vlan=10))              # not tcp


def test_raw_ip_link_type_uses_its_own_program():
    bpf = BpfFilter("tcp port 21")
    packet = bytes(ip_packet(dport=21))
    assert bpf.match(LINKTYPE_RAW, packet)
    assert not bpf.match(LINKTYPE_RAW, bytes(ip_packet(dport=22)))
    # The Ethernet program would read the IP header as a MAC header: the link
    # type must select the program.
    assert not bpf.match(LINKTYPE_ETHERNET, packet)
    assert bpf.linktypes == {LINKTYPE_ETHERNET: True, LINKTYPE_RAW: True}


def test_link_types_alternate_without_recompiling_wrongly():
    bpf = BpfFilter("host 10.0.0.1")
    raw, frame = bytes(ip_packet()), ethernet(ip_packet())
    for _ in range(3):
        assert bpf.match(LINKTYPE_RAW, raw)
        assert bpf.match(LINKTYPE_ETHERNET, frame)
    assert sorted(bpf.linktypes) == [LINKTYPE_ETHERNET, LINKTYPE_RAW]


def test_expression_that_cannot_apply_to_a_link_type_matches_nothing_there():
    bpf = BpfFilter("vlan and tcp")
    for _ in range(4):
        assert not bpf.match(LINKTYPE_RAW, bytes(ip_packet()))
    assert bpf.uncompilable_linktype_packets == 4
    assert bpf.linktypes[LINKTYPE_RAW] is False
    assert "VLAN" in bpf.compile_errors[LINKTYPE_RAW]
    assert bpf.match(LINKTYPE_ETHERNET, ethernet(ip_packet(), vlan=3))   # Ethernet still fine


def test_snapped_packet_does_not_match_fields_beyond_the_capture():
    # The port lies past the 30 captured bytes: BPF must not read beyond them.
    frame = ethernet(ip_packet(dport=21))
    assert not BpfFilter("tcp port 21").match(LINKTYPE_ETHERNET, frame[:30], wirelen=len(frame))
    assert BpfFilter("tcp").match(LINKTYPE_ETHERNET, frame[:30], wirelen=len(frame))


def test_empty_expression_matches_everything():
    assert BpfFilter("").match(LINKTYPE_LINUX_SLL, b"\x00" * 20)


def test_bad_expression_carries_libpcaps_message():
    with pytest.raises(ValueError) as caught:
        BpfFilter("tcp prot 21")
    assert str(caught.value).startswith("bad filter expression 'tcp prot 21': ")
    assert "syntax error" in str(caught.value)


def test_expression_is_kept():
    assert BpfFilter("udp port 53").expression == "udp port 53"
