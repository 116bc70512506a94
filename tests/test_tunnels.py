"""Tunnels in the compiled decoder and the flow table (issue 12), on crafted
packets: every encapsulation, nested ones, the depth limit, truncation at
every header boundary, a GTP port carrying something else; and what the logs
say of them (the tunnel's own connection and service, tunnel_parents,
tunnel.log)."""
import struct

import dpkt
import pytest

from analyser.decode import (Decoder, TUN_AYIYA, TUN_GENEVE, TUN_GRE, TUN_GTPV1, TUN_IP,
                             TUN_TEREDO, TUN_VXLAN)
from conftest import read_zeek_log
from packets import ethernet, ip4, ip6, udp_packet, write_pcap

LT_EN10MB, LT_RAW = 1, 101

# The inner packet every test carries: a DNS-sized UDP datagram.
INNER_PAYLOAD = b"inner-payload-" * 3


def inner4(sport=5353, dport=53, src="10.9.0.1", dst="10.9.0.2"):
    """An IPv4 packet (no link layer) with one UDP datagram."""
    return udp_packet(src, dst, sport, dport, INNER_PAYLOAD)[14:]


def inner6(sport=5353, dport=53, src="2001::1", dst="2001::2"):
    return udp_packet(src, dst, sport, dport, INNER_PAYLOAD, v6=True)[14:]


def ip_over(outer_src, outer_dst, proto, payload, v6=False):
    """An Ethernet frame: an outer IP header with protocol `proto` around
    `payload` (built by hand: dpkt would re-parse a GRE payload)."""
    if v6:
        hdr = struct.pack("!IHBB", 6 << 28, len(payload), proto, 64) + ip6(outer_src) + \
            ip6(outer_dst)
        return ethernet(hdr + payload, 0x86DD)
    hdr = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0) + \
        ip4(outer_src) + ip4(outer_dst)
    total = sum(struct.unpack("!10H", hdr))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    hdr = hdr[:10] + struct.pack("!H", ~total & 0xffff) + hdr[12:]
    return ethernet(hdr + payload, 0x0800)


def gre(payload, proto=0x0800, flags=0, extra=b""):
    return struct.pack("!HH", flags, proto) + extra + payload


def vxlan(payload_frame, vni=42):
    return struct.pack("!BBHI", 0x08, 0, 0, vni << 8) + payload_frame


def geneve(payload, proto=0x6558, options=b""):
    assert len(options) % 4 == 0
    return struct.pack("!BBHI", len(options) // 4, 0, proto, 7 << 8) + options + payload


def gtpu(payload, flags=0x30, extra=b""):
    return struct.pack("!BBHI", flags, 255, len(extra) + len(payload), 0x1234) + extra + payload


def ayiya(payload, next_header=41, identity=b"\x20\x01" + b"\x00" * 14, opcode=1):
    id_code = {1: 0, 2: 1, 4: 2, 8: 3, 16: 4, 32: 5}[len(identity)]
    return bytes([(id_code << 4) | 1, (5 << 4) | 2, (1 << 4) | opcode, next_header]) + \
        struct.pack("!I", 1234) + identity + b"S" * 20 + payload


def eth(ip_packet):
    return ethernet(ip_packet, 0x86DD if ip_packet[0] >> 4 == 6 else 0x0800)


def udp_tunnel(dport, payload, sport=40000, src="192.0.2.1", dst="192.0.2.2", v6=False):
    return udp_packet(src, dst, sport, dport, payload, v6=v6)


def decode(frame, depth=2, linktype=LT_EN10MB, wirelen=None):
    dec = Decoder(True, depth)
    return dec.decode_bytes(frame, linktype, wirelen), dec


def check_inner(d, kinds, v6=False):
    assert isinstance(d, dict), d
    assert d["tunnels"] == kinds
    assert d["proto"] == 17 and (d["sport"], d["dport"]) == (5353, 53)
    assert d["payload"] == INNER_PAYLOAD
    assert d["ip_version"] == (6 if v6 else 4)
    assert d["checksum_ok"] is True


# -- each encapsulation ---------------------------------------------------------------

ENCAPSULATIONS = {
    "4in4": (lambda: ip_over("192.0.2.1", "192.0.2.2", 4, inner4()), (TUN_IP,), False),
    "6in4": (lambda: ip_over("192.0.2.1", "192.0.2.2", 41, inner6()), (TUN_IP,), True),
    "4in6": (lambda: ip_over("2001:db8::1", "2001:db8::2", 4, inner4(), v6=True), (TUN_IP,),
             False),
    "6in6": (lambda: ip_over("2001:db8::1", "2001:db8::2", 41, inner6(), v6=True), (TUN_IP,),
             True),
    "gre": (lambda: ip_over("192.0.2.1", "192.0.2.2", 47, gre(inner4())), (TUN_GRE,), False),
    "gre-key-seq-csum": (lambda: ip_over("192.0.2.1", "192.0.2.2", 47, gre(
        inner4(), flags=0x8000 | 0x2000 | 0x1000, extra=b"\0" * 12)), (TUN_GRE,), False),
    "gre-ipv6": (lambda: ip_over("192.0.2.1", "192.0.2.2", 47, gre(inner6(), 0x86DD)),
                 (TUN_GRE,), True),
    "pptp": (lambda: ip_over("192.0.2.1", "192.0.2.2", 47, gre(
        b"\xff\x03\x00\x21" + inner4(), 0x880B, flags=0x2000 | 0x1000 | 1,
        extra=struct.pack("!HHI", len(inner4()) + 4, 7, 1))), (TUN_GRE,), False),
    "pptp-compressed-ppp": (lambda: ip_over("192.0.2.1", "192.0.2.2", 47, gre(
        b"\x21" + inner4(), 0x880B, flags=0x2000 | 0x1000 | 0x0080 | 1,
        extra=struct.pack("!HHII", len(inner4()) + 1, 7, 1, 0))), (TUN_GRE,), False),
    "gre-bridging": (lambda: ip_over("192.0.2.1", "192.0.2.2", 47, gre(eth(inner4()), 0x6558)),
                     (TUN_GRE,), False),
    "erspan-i": (lambda: ip_over("192.0.2.1", "192.0.2.2", 47, gre(eth(inner4()), 0x88BE)),
                 (TUN_GRE,), False),
    "erspan-ii": (lambda: ip_over("192.0.2.1", "192.0.2.2", 47, gre(
        b"\x10\x01\x00\x05\x00\x00\x00\x00" + eth(inner4()), 0x88BE, flags=0x1000,
        extra=b"\0\0\0\1")), (TUN_GRE,), False),
    "erspan-iii": (lambda: ip_over("192.0.2.1", "192.0.2.2", 47, gre(
        b"\x20\x01\x00\x05" + b"\0" * 8 + eth(inner4()), 0x22EB, flags=0x1000,
        extra=b"\0\0\0\1")), (TUN_GRE,), False),
    "erspan-iii-optional": (lambda: ip_over("192.0.2.1", "192.0.2.2", 47, gre(
        b"\x20\x01\x00\x05" + b"\0" * 7 + b"\x01" + b"\0" * 8 + eth(inner4()), 0x22EB)),
        (TUN_GRE,), False),
    "aruba": (lambda: ip_over("192.0.2.1", "192.0.2.2", 47, gre(
        b"\x08\x01" + b"\0" * 22 + b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + inner4(), 0x8210)),
        (TUN_GRE,), False),
    "vxlan": (lambda: udp_tunnel(4789, vxlan(eth(inner4()))), (TUN_VXLAN,), False),
    "vxlan-vlan-inside": (lambda: udp_tunnel(4789, vxlan(ethernet(
        b"\x00\x07\x08\x00" + inner4(), 0x8100))), (TUN_VXLAN,), False),
    "geneve": (lambda: udp_tunnel(6081, geneve(eth(inner4()))), (TUN_GENEVE,), False),
    "geneve-options": (lambda: udp_tunnel(6081, geneve(
        inner6(), 0x86DD, options=b"\x01\x02\x03\x02" + b"\xab" * 8)), (TUN_GENEVE,), True),
    "gtpu": (lambda: udp_tunnel(2152, gtpu(inner4()), sport=2152), (TUN_GTPV1,), False),
    "gtpu-sequence": (lambda: udp_tunnel(2152, gtpu(inner6(), 0x32, b"\x00\x07\x00\x00"),
                                         sport=2152), (TUN_GTPV1,), True),
    # Sequence number, then two extension headers (PDU session container,
    # 4 bytes; one of 8 bytes), the last ending the chain with type 0.
    "gtpu-extensions": (lambda: udp_tunnel(2152, gtpu(
        inner4(), 0x34, b"\x00\x00\x00\x85" + b"\x01\x10\x09\x85"
        + b"\x02\x00\x00\x00\x00\x00\x00\x00"), sport=2152), (TUN_GTPV1,), False),
    "teredo": (lambda: udp_tunnel(3544, inner6()), (TUN_TEREDO,), True),
    "teredo-origin": (lambda: udp_tunnel(3544, b"\x00\x00\xf0\x0f\x3f\xff\xff\xfe" + inner6()),
                      (TUN_TEREDO,), True),
    "teredo-auth-origin": (lambda: udp_tunnel(3544, b"\x00\x01\x02\x03ab" + b"xyz" + b"\0" * 8
                                              + b"\x00" + b"\x00\x00\xf0\x0f\x3f\xff\xff\xfe"
                                              + inner6()), (TUN_TEREDO,), True),
    "teredo-other-port": (lambda: udp_tunnel(32900, inner6(src="2001:0:4137:9e50::1"),
                                             sport=3797), (TUN_TEREDO,), True),
    "ayiya": (lambda: udp_tunnel(5072, ayiya(inner6())), (TUN_AYIYA,), True),
    "ayiya-ipv4-other-port": (lambda: udp_tunnel(6000, ayiya(inner4(), next_header=4)),
                              (TUN_AYIYA,), False),
    "pbb": (lambda: ethernet(b"\x00\x00\x00\x01" + b"\x02" * 12 + b"\x08\x00" + inner4(),
                             0x88E7), (), False),
    "vntag": (lambda: ethernet(b"\x80\x01\x00\x02\x08\x00" + inner4(), 0x8926), (), False),
    "fabricpath": (lambda: ethernet(b"\x00\x01" + b"\x02" * 12 + b"\x08\x00" + inner4(),
                                    0x8903), (), False),
}


@pytest.mark.parametrize("name", sorted(ENCAPSULATIONS))
def test_each_encapsulation_reaches_the_inner_packet(name):
    build, kinds, v6 = ENCAPSULATIONS[name]
    d, dec = decode(build())
    check_inner(d, kinds, v6)
    assert dec.malformed_counts() == {}
    if kinds:
        assert dec.fragment_stats()["tunnelled_packets"] == 1


def test_outer_layers_are_kept_outermost_first():
    frame = ip_over("192.0.2.1", "192.0.2.2", 47, gre(
        udp_packet("198.51.100.1", "198.51.100.2", 40000, 4789, vxlan(eth(inner4())))[14:]))
    d, _ = decode(frame)
    check_inner(d, (TUN_GRE, TUN_VXLAN))
    (src0, dst0, proto0), (src1, dst1, proto1) = d["tunnel_outer"]
    assert (src0[12:], dst0[12:], proto0) == (ip4("192.0.2.1"), ip4("192.0.2.2"), 47)
    assert (src1[12:], dst1[12:], proto1) == (ip4("198.51.100.1"), ip4("198.51.100.2"), 17)


def test_802_11_radiotap_data_frame():
    radiotap = b"\x00\x00\x08\x00\x00\x00\x00\x00"
    qos_data = b"\x88\x01" + b"\0" * 22 + b"\x00\x00"       # QoS data, to the DS
    frame = radiotap + qos_data + b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + inner4()
    d, _ = decode(frame, linktype=127)
    check_inner(d, ())
    beacon = radiotap + b"\x80\x00" + b"\0" * 30
    assert decode(beacon, linktype=127)[0] == "not_ip"


def test_nested_tunnels_and_the_depth_limit():
    # IPv6 (6in4) inside GTP-U inside VXLAN: three encapsulations.
    gtp = udp_packet("172.16.0.1", "172.16.0.2", 2152, 2152, gtpu(
        ip_over("203.0.113.1", "203.0.113.2", 41, inner6())[14:]))[14:]
    frame = udp_tunnel(4789, vxlan(ethernet(gtp, 0x0800)))
    d, dec = decode(frame, depth=3)
    check_inner(d, (TUN_VXLAN, TUN_GTPV1, TUN_IP), v6=True)
    # Depth 2: the third (IP in IP) is not opened; the packet is counted and
    # the GTP datagram is analysed (an IPv4 packet of protocol 41 is no
    # connection).
    d, dec = decode(frame, depth=2)
    assert d["tunnels"] == (TUN_VXLAN,) and d["tunnel_kind"] == TUN_GTPV1 and d["sport"] == 2152
    assert dec.fragment_stats()["tunnels_too_deep"] == 1
    assert dec.malformed_counts() == {}
    # Depth 1: the GTP datagram is what is analysed, marked too deep.
    d, dec = decode(frame, depth=1)
    assert d["tunnels"] == (TUN_VXLAN,) and d["proto"] == 17 and d["dport"] == 2152
    assert d["too_deep"] and d["tunnel_kind"] == 0
    # Depth 0: no tunnels at all.
    d, dec = decode(frame, depth=0)
    assert d["tunnels"] == () and d["dport"] == 4789 and not d["too_deep"]
    assert dec.fragment_stats()["tunnels_too_deep"] == 0


def test_gtp_port_carrying_other_data_stays_udp():
    dns = dpkt.dns.DNS(id=27595, qd=[dpkt.dns.DNS.Q(name="abcd.efg.hijklm.nm")])
    frame = udp_packet("10.131.24.6", "195.178.38.3", 2152, 53, bytes(dns))
    d, dec = decode(frame)
    assert d["tunnels"] == () and d["tunnel_kind"] == 0 and d["dport"] == 53
    assert d["payload"] == bytes(dns)
    assert dec.malformed_counts() == {}
    # GTP-C echo request on the user-plane port: not a G-PDU, left alone.
    echo = struct.pack("!BBHIHBB", 0x32, 1, 4, 0, 1, 0, 0)
    d, dec = decode(udp_tunnel(2152, echo, sport=2152))
    assert d["tunnels"] == () and d["tunnel_kind"] == 0 and dec.malformed_counts() == {}


def test_vxlan_port_without_the_i_flag_is_counted_and_stays_udp():
    frame = udp_tunnel(4789, b"\x00" * 8 + eth(inner4()))
    d, dec = decode(frame)
    assert d["tunnels"] == () and d["dport"] == 4789
    assert dec.malformed_counts() == {"bad_tunnel_header": 1}


def test_gtp_inner_length_mismatch_is_counted_on_the_tunnel_connection():
    frame = udp_tunnel(2152, gtpu(inner4() + b"junk"), sport=2152)
    d, dec = decode(frame)
    assert d["tunnels"] == () and d["tunnel_kind"] == TUN_GTPV1 and not d["tunnel_ok"]
    assert dec.malformed_counts() == {"bad_inner_packet": 1}


# -- truncation at every header boundary ------------------------------------------------

def boundaries(name):
    """(frame, [(cut, header the cut falls in)]) for a tunnel: cuts at every
    byte of the tunnel header and at the boundaries around it."""
    build, kinds, _ = ENCAPSULATIONS[name]
    return build(), kinds


@pytest.mark.parametrize("name", ["4in4", "6in6", "gre-key-seq-csum", "pptp", "erspan-iii",
                                  "gre-bridging", "vxlan", "geneve-options", "gtpu-extensions",
                                  "teredo-auth-origin", "ayiya", "pbb", "fabricpath", "vntag"])
def test_truncated_at_every_byte_of_the_headers(name):
    """A capture cut anywhere (the wire length stays whole): never an
    exception, never a wrong inner packet; a cut in a UDP tunnel still
    leaves the outer datagram to its own connection, and every rejection
    is counted under a reason."""
    frame, kinds = boundaries(name)
    v6 = ENCAPSULATIONS[name][2]
    inner_at = len(frame) - len(inner6() if v6 else inner4())
    headers = 48 if v6 else 28
    # GTP and Teredo check the inner packet's length against the datagram's.
    whole_inner = kinds in ((TUN_GTPV1,), (TUN_TEREDO,))
    for cut in range(14, len(frame)):
        d, dec = decode(frame[:cut], wirelen=len(frame))
        if isinstance(d, dict):
            udp_carrier = d["tunnels"] != kinds
            if udp_carrier:
                # The outer datagram: a UDP tunnel whose header or inner packet was cut.
                assert d["proto"] == 17 and d["sport"] != 5353, (name, cut, d)
                assert whole_inner or cut < inner_at + headers, (name, cut)
                assert dec.malformed_counts() or d["tunnel_kind"] == 0 and cut < inner_at, \
                    (name, cut, d)
            else:
                assert cut >= inner_at + headers - 8, (name, cut)   # inner IP header whole
                assert (d["sport"], d["dport"]) == (5353, 53)
                assert d["payload_len"] == len(INNER_PAYLOAD)
        else:
            assert d in ("malformed", "not_ip", "other_transport"), (name, cut, d)
            if d == "malformed":
                assert sum(dec.malformed_counts().values()) == 1, (name, cut)


def test_truncated_tunnel_headers_are_named():
    vx = udp_tunnel(4789, vxlan(eth(inner4())))
    d, dec = decode(vx[:14 + 20 + 8 + 5], wirelen=len(vx))
    assert d["dport"] == 4789 and dec.malformed_counts() == {"truncated_tunnel_header": 1}
    d, dec = decode(vx[:14 + 20 + 8 + 8 + 10], wirelen=len(vx))
    assert d["tunnel_kind"] == TUN_VXLAN and dec.malformed_counts() == {"truncated_link_header": 1}
    g = ip_over("192.0.2.1", "192.0.2.2", 47, gre(inner4(), flags=0x2000, extra=b"\0\0\0\1"))
    d, dec = decode(g[:14 + 20 + 6], wirelen=len(g))
    assert d == "malformed" and dec.malformed_counts() == {"truncated_tunnel_header": 1}
    d, dec = decode(ip_over("192.0.2.1", "192.0.2.2", 47, gre(inner4(), flags=0x4000)))
    assert d == "malformed" and dec.malformed_counts() == {"bad_tunnel_header": 1}


# -- connections and logs ---------------------------------------------------------------

def run(tmp_path, frames, *, step=0.5, **options):
    from analyser.replay import replay_files
    path = write_pcap(tmp_path / "t.pcap", [(1000.0 + i * step, f) for i, f in enumerate(frames)])
    out = tmp_path / "logs"
    replay_files([str(path)], logs_dir=str(out), **options)
    conn = {(r["id.orig_h"], r["id.orig_p"], r["id.resp_h"], r["id.resp_p"]): r
            for r in read_zeek_log(out / "conn.log")}
    tunnel = read_zeek_log(out / "tunnel.log") if (out / "tunnel.log").exists() else []
    return conn, tunnel


def test_vxlan_connection_service_parents_and_tunnel_log(tmp_path):
    # The same inner ICMP-free UDP exchange through two tunnel connections
    # (one per direction, as VTEPs do): one inner connection, two parents.
    there = udp_packet("192.0.2.1", "192.0.2.2", 40000, 4789, vxlan(eth(inner4())))
    back = udp_packet("192.0.2.2", "192.0.2.1", 40001, 4789, vxlan(eth(
        inner4(sport=53, dport=5353, src="10.9.0.2", dst="10.9.0.1"))))
    conn, tunnel = run(tmp_path, [there, back, there])
    t1 = conn[("192.0.2.1", "40000", "192.0.2.2", "4789")]
    t2 = conn[("192.0.2.2", "40001", "192.0.2.1", "4789")]
    inner = conn[("10.9.0.1", "5353", "10.9.0.2", "53")]
    assert t1["service"] == t2["service"] == "vxlan"
    assert (t1["orig_pkts"], t2["orig_pkts"]) == ("2", "1")
    assert t1["tunnel_parents"] == t2["tunnel_parents"] == "-"
    assert set(inner["tunnel_parents"].split(",")) == {t1["uid"], t2["uid"]}
    assert (inner["orig_pkts"], inner["resp_pkts"], inner["history"]) == ("2", "1", "Dd")
    assert len(conn) == 3
    assert [(r["uid"], r["tunnel_type"], r["action"]) for r in tunnel] == [
        (t1["uid"], "Tunnel::VXLAN", "Tunnel::DISCOVER"),
        (t2["uid"], "Tunnel::VXLAN", "Tunnel::DISCOVER"),
        (t1["uid"], "Tunnel::VXLAN", "Tunnel::CLOSE"),
        (t2["uid"], "Tunnel::VXLAN", "Tunnel::CLOSE")] or sorted(
        (r["uid"], r["action"]) for r in tunnel) == sorted([
            (t1["uid"], "Tunnel::DISCOVER"), (t2["uid"], "Tunnel::DISCOVER"),
            (t1["uid"], "Tunnel::CLOSE"), (t2["uid"], "Tunnel::CLOSE")])


def test_ip_tunnel_is_discovered_never_closed_and_expires(tmp_path):
    one = ip_over("192.0.2.1", "192.0.2.2", 4, inner4())
    other = ip_over("192.0.2.2", "192.0.2.1", 4, inner4(sport=6000))
    # A second inner connection two hours later: the tunnel expired meanwhile
    # (Zeek's Tunnel::expiration_interval) and is discovered again.
    conn, tunnel = run(tmp_path, [one, other], step=7200.0,
                       timeouts={"udp": 10.0})
    rows = [(r["id.orig_h"], r["id.resp_h"], r["id.orig_p"], r["tunnel_type"], r["action"],
             r["ts"]) for r in tunnel]
    assert rows == [
        ("192.0.2.1", "192.0.2.2", "0", "Tunnel::IP", "Tunnel::DISCOVER", "1000.000000"),
        ("192.0.2.1", "192.0.2.2", "0", "Tunnel::IP", "Tunnel::EXPIRE", "4600.000000"),
        ("192.0.2.2", "192.0.2.1", "0", "Tunnel::IP", "Tunnel::DISCOVER", "8200.000000")]
    # One uid for the address pair, whichever direction.
    assert tunnel[0]["uid"] == tunnel[2]["uid"]
    a = conn[("10.9.0.1", "5353", "10.9.0.2", "53")]
    b = conn[("10.9.0.1", "6000", "10.9.0.2", "53")]
    assert a["tunnel_parents"] == b["tunnel_parents"] == tunnel[0]["uid"]
    assert len(conn) == 2          # no connection for the tunnel itself


def test_nested_parents_and_too_deep_history(tmp_path):
    gtp = udp_packet("172.16.0.1", "172.16.0.2", 2152, 2152, gtpu(inner4()))[14:]
    frame = udp_tunnel(4789, vxlan(ethernet(gtp, 0x0800)))
    conn, tunnel = run(tmp_path, [frame])
    vx = conn[("192.0.2.1", "40000", "192.0.2.2", "4789")]
    gt = conn[("172.16.0.1", "2152", "172.16.0.2", "2152")]
    inner = conn[("10.9.0.1", "5353", "10.9.0.2", "53")]
    assert (vx["service"], gt["service"]) == ("vxlan", "gtpv1")
    assert gt["tunnel_parents"] == vx["uid"] and inner["tunnel_parents"] == gt["uid"]
    assert sorted((r["uid"], r["action"]) for r in tunnel) == sorted([
        (vx["uid"], "Tunnel::DISCOVER"), (gt["uid"], "Tunnel::DISCOVER"),
        (vx["uid"], "Tunnel::CLOSE"), (gt["uid"], "Tunnel::CLOSE")])
    # Depth 1: the GTP datagram is a plain UDP connection with 'X' (Zeek's
    # exceeded_tunnel_max_depth), no inner connection, only VXLAN in tunnel.log.
    conn, tunnel = run(tmp_path, [frame], tunnel_depth=1)
    gt = conn[("172.16.0.1", "2152", "172.16.0.2", "2152")]
    assert (gt["service"], gt["history"]) == ("-", "DX")
    assert len(conn) == 2
    assert {r["tunnel_type"] for r in tunnel} == {"Tunnel::VXLAN"}


def test_teredo_service_needs_both_sides(tmp_path):
    out = udp_tunnel(3544, inner6(), sport=3797)
    back = udp_packet("192.0.2.2", "192.0.2.1", 3544, 3797,
                      inner6(sport=53, dport=5353, src="2001::2", dst="2001::1"))
    conn, _ = run(tmp_path, [out])
    assert conn[("192.0.2.1", "3797", "192.0.2.2", "3544")]["service"] == "-"
    conn, _ = run(tmp_path, [out, back])
    assert conn[("192.0.2.1", "3797", "192.0.2.2", "3544")]["service"] == "teredo"


def test_tunnel_changes_are_limited_with_x(tmp_path):
    # The inner connection alternates between two tunnels: after five
    # changes of encapsulation, 'X' (Zeek's max_changes_per_connection).
    a = udp_packet("192.0.2.1", "192.0.2.2", 40000, 4789, vxlan(eth(inner4())))
    b = udp_packet("192.0.2.1", "192.0.2.2", 40002, 4789, vxlan(eth(inner4())))
    conn, _ = run(tmp_path, [a, b] * 4)
    inner = conn[("10.9.0.1", "5353", "10.9.0.2", "53")]
    assert inner["history"] == "DX"
    conn, _ = run(tmp_path, [a, b] * 3)
    assert conn[("10.9.0.1", "5353", "10.9.0.2", "53")]["history"] == "D"


def test_bpf_applies_to_the_outer_packet(tmp_path):
    frame = udp_tunnel(4789, vxlan(eth(inner4())))
    conn, _ = run(tmp_path, [frame], bpf="udp port 4789")
    assert len(conn) == 2
    conn, _ = run(tmp_path, [frame], bpf="udp port 53")
    assert len(conn) == 0


def test_tunnel_depth_option(run_cli, tmp_path):
    path = write_pcap(tmp_path / "t.pcap", [(1000.0, udp_tunnel(4789, vxlan(eth(inner4()))))])
    proc = run_cli("replay", path, "--logs", tmp_path / "a", "--tunnel-depth", "0")
    assert proc.returncode == 0, proc.stderr
    assert len(read_zeek_log(tmp_path / "a" / "conn.log")) == 1
    proc = run_cli("replay", path, "--logs", tmp_path / "b", "--tunnel-depth", "9")
    assert proc.returncode != 0 and "--tunnel-depth" in proc.stderr
    proc = run_cli("replay", path, "--logs", tmp_path / "c")
    assert "tunnels   1 packets decapsulated" in proc.stdout + proc.stderr
