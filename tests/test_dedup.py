"""--dedup: exact copies of a packet within the window (as a SPAN port sends
them, possibly one router hop apart: another TTL and IPv4 checksum, another
VLAN tag) are dropped and counted; a retransmission (a new IP ID) and a copy
seen after the window are not."""
from __future__ import annotations

import struct

import dpkt

from packets import ACK, TcpPeer, close, handshake, udp_packet


def variant(frame: bytes, *, ttl: int | None = None, vlan: int | None = None,
            ip_id: int | None = None) -> bytes:
    eth = dpkt.ethernet.Ethernet(frame)
    ip = eth.data
    if ttl is not None:
        ip.ttl = ttl
    if ip_id is not None:
        ip.id = ip_id
    ip.sum = 0                               # recomputed when packed
    raw = bytes(ip)
    if vlan is None:
        return frame[:12] + b"\x08\x00" + raw
    return frame[:12] + b"\x81\x00" + struct.pack("!H", vlan) + b"\x08\x00" + raw


def session():
    c, s = TcpPeer("10.5.0.1", 41000, 10), TcpPeer("10.5.0.2", 80, 20)
    c.connect(s)
    frames = handshake(c, s) + [c.send(ACK, b"GET / HTTP/1.0\r\n\r\n"),
                                s.send(ACK, b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * 500)]
    frames += close(c, s)
    frames.append(udp_packet("10.5.0.1", "10.5.0.9", 5000, 53, b"query"))
    return frames


def timeline(frames, step=0.001):
    return [(1000.0 + i * step, f) for i, f in enumerate(frames)]


def test_dedup_drops_exactly_the_copies_within_the_window(replay):
    base = session()
    clean = timeline(base)
    dirty = list(clean)
    t3, f3 = clean[3]
    t4, f4 = clean[4]
    injected = [
        (t3 + 0.0001, f3),                                   # an exact copy
        (t4 + 0.0002, variant(f4, ttl=63, vlan=12)),         # one hop later, tagged
        (clean[-1][0] + 0.0001, clean[-1][1]),               # the UDP datagram again
    ]
    kept = [
        (t3 + 0.0003, variant(f3, ip_id=777)),               # a retransmission: new IP ID
        (t4 + 2.0, f4),                                      # a copy after the window
    ]
    dirty = sorted(dirty + injected + kept, key=lambda x: x[0])
    expected_rows = replay(sorted(clean + kept, key=lambda x: x[0]))
    rows = replay(dirty, dedup=0.1)
    assert replay.result.stats["duplicates"] == len(injected)
    key = lambda r: (r["id.orig_h"], r["id.orig_p"], r["id.resp_p"])
    strip = lambda rows: sorted((key(r), r["orig_pkts"], r["resp_pkts"], r["orig_ip_bytes"],
                                 r["history"]) for r in rows)
    assert strip(rows) == strip(expected_rows)
    # Without --dedup every copy counts.
    rows = replay(dirty)
    assert replay.result.stats["duplicates"] == 0
    assert sum(r["orig_pkts"] + r["resp_pkts"] for r in rows) == len(dirty)


def test_dedup_is_a_cli_option_with_a_summary_line(run_cli, tmp_path):
    from packets import write_pcap
    frames = timeline(session())
    frames = sorted(frames + [(frames[2][0] + 0.0001, frames[2][1])], key=lambda x: x[0])
    trace = write_pcap(tmp_path / "d.pcap", frames)
    p = run_cli("replay", trace, "--logs", tmp_path, "--dedup", "0.05")
    assert p.returncode == 0, p.stderr
    assert "1 duplicate packets (--dedup)" in p.stderr
    p = run_cli("replay", trace, "--logs", tmp_path, "--dedup", "-1")
    assert p.returncode == 2
