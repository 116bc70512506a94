"""Test helpers: build packets and write capture files for crafted scenarios.

dpkt builds the headers (and fills in the checksums); `TcpPeer` keeps the
sequence numbers of one side of a conversation so a test reads like the
exchange it describes.
"""
from __future__ import annotations

import socket
import struct

import dpkt

MAC_A = b"\x02\x00\x00\x00\x00\x01"
MAC_B = b"\x02\x00\x00\x00\x00\x02"


def ip4(a: str) -> bytes:
    return socket.inet_aton(a)


def ip6(a: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, a)


def tcp_packet(src, dst, sport, dport, flags, seq=0, ack=0, payload=b"",
               win=65535, v6=False) -> bytes:
    """An Ethernet frame with one TCP segment; src/dst as text addresses."""
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq & 0xffffffff, ack=ack & 0xffffffff,
                       flags=flags, win=win, data=payload)
    return ip_frame(src, dst, tcp, dpkt.ip.IP_PROTO_TCP, v6)


def udp_packet(src, dst, sport, dport, payload=b"", v6=False) -> bytes:
    udp = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
    udp.ulen = 8 + len(payload)
    return ip_frame(src, dst, udp, dpkt.ip.IP_PROTO_UDP, v6)


def ip_frame(src, dst, l4, proto, v6=False) -> bytes:
    if v6:
        ip = dpkt.ip6.IP6(src=ip6(src), dst=ip6(dst), nxt=proto, hlim=64, data=l4)
        ip.plen = len(bytes(l4))
        etype = dpkt.ethernet.ETH_TYPE_IP6
    else:
        ip = dpkt.ip.IP(src=ip4(src), dst=ip4(dst), p=proto, ttl=64, data=l4)
        ip.len = 20 + len(bytes(l4))
        etype = dpkt.ethernet.ETH_TYPE_IP
    # Serialise IP first so dpkt computes the transport checksum with the
    # pseudo header.
    return bytes(dpkt.ethernet.Ethernet(src=MAC_A, dst=MAC_B, type=etype, data=bytes(ip)))


def ethernet(payload: bytes, ethertype: int) -> bytes:
    return MAC_B + MAC_A + struct.pack("!H", ethertype) + payload


def write_pcap(path, packets, linktype=1, snaplen=65535):
    """packets: iterable of (timestamp_seconds, frame_bytes[, wire_length])."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, snaplen, linktype))
        for item in packets:
            ts, frame = item[0], item[1]
            wirelen = item[2] if len(item) > 2 else len(frame)
            sec = int(ts)
            usec = int(round((ts - sec) * 1e6))
            f.write(struct.pack("<IIII", sec, usec, len(frame), wirelen))
            f.write(frame)
    return path


class TcpPeer:
    """One side of a TCP conversation: tracks its sequence number."""

    def __init__(self, addr: str, port: int, isn: int, v6: bool = False):
        self.addr, self.port, self.seq, self.v6 = addr, port, isn, v6
        self.peer: TcpPeer | None = None
        self.acked = 0

    def connect(self, other: "TcpPeer"):
        self.peer, other.peer = other, self
        return other

    def send(self, flags: int, payload: bytes = b"", seq: int | None = None,
             advance: bool = True, ack: int | None = None) -> bytes:
        p = self.peer
        if ack is None:
            ack = p.seq if flags & dpkt.tcp.TH_ACK else 0
        pkt = tcp_packet(self.addr, p.addr, self.port, p.port, flags,
                         self.seq if seq is None else seq, ack, payload, v6=self.v6)
        if advance and seq is None:
            self.seq += len(payload) + (1 if flags & (dpkt.tcp.TH_SYN | dpkt.tcp.TH_FIN) else 0)
        return pkt


SYN, ACK, FIN, RST, PSH = (dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_FIN,
                           dpkt.tcp.TH_RST, dpkt.tcp.TH_PUSH)


def handshake(c: TcpPeer, s: TcpPeer):
    return [c.send(SYN), s.send(SYN | ACK), c.send(ACK)]


def close(c: TcpPeer, s: TcpPeer):
    return [c.send(FIN | ACK), s.send(FIN | ACK), c.send(ACK)]


def timed(frames, start=1000.0, step=0.01):
    return [(start + i * step, f) for i, f in enumerate(frames)]
