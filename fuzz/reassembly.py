"""TCP reassembly against a reference: one connection's byte streams, cut
into segments that arrive in any order, duplicated, overlapping (with equal
or conflicting bytes), lost, around the 32-bit sequence wrap; what an
analyser reads must be the reference.

Role in the data flow: scenario -> crafted pcap -> the whole engine
(decode -> flows -> streams) -> `Recorder` (an analyser that records every
read) -> compared with what the scenario says the streams are.  Used by
tests/test_reassembly_reference.py (hypothesis) and by the `tcp_reassembly`
fuzz target (fuzz/targets.py).

The reference: byte `p` of side `s` is `truth(s, p)`; a conflicting copy
carries `truth ^ 0xFF`.  The engine keeps the bytes that arrived first
(analyser/streams.pyx, rule 2), so the expected stream is, per byte, the
first copy that arrived; a byte no segment carried is in a gap.
"""
from __future__ import annotations

import os
import struct
import tempfile
from dataclasses import dataclass, field

from analyser import ORIG, RESP, Analyser, Gap, StreamEnd

PORT = 7411                  # a port no shipped analyser hints at
MAX_SEGMENT = 1460
SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10
ADDRS = (bytes([10, 1, 0, 1]), bytes([10, 1, 0, 2]))
PORTS = (40123, PORT)


def truth(side: int, start: int, length: int) -> bytes:
    """The reference bytes [start, start + length) of a side: position-
    dependent, so a byte read at the wrong place shows."""
    return bytes(((p * 167 + (p >> 8) * 13 + side * 101) & 0xFF)
                 for p in range(start, start + length))


def conflicting(data: bytes) -> bytes:
    return bytes(b ^ 0xFF for b in data)


@dataclass
class Segment:
    side: int
    offset: int              # stream offset (0 = the byte after the SYN)
    length: int
    conflict: bool = False   # carries truth ^ 0xFF

    def payload(self) -> bytes:
        data = truth(self.side, self.offset, self.length)
        return conflicting(data) if self.conflict else data


@dataclass
class Scenario:
    isn: tuple[int, int]                 # initial sequence numbers (32 bits)
    segments: list[Segment]              # in arrival order
    fin_at: tuple                        # stream offset of each side's FIN, or None
    ack_all: bool = False                # each side acknowledges all the other sent, at the end
    handshake: bool = True
    windows: tuple[int, int] = (65535, 65535)
    extra_frames: list = field(default_factory=list)   # (position, side, flags, offset)
    lengths: tuple | None = None         # each side's whole stream (lost bytes at the end too)


# ------------------------------------------------------------------ frames

def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def frame(side: int, flags: int, seq: int, ack: int, payload: bytes = b"",
          window: int = 65535) -> bytes:
    """Ethernet + IPv4 + TCP from `side`'s address to the other's."""
    src, dst = ADDRS[side], ADDRS[1 - side]
    tcp = struct.pack("!HHIIBBHHH", PORTS[side], PORTS[1 - side], seq & 0xFFFFFFFF,
                      ack & 0xFFFFFFFF, 5 << 4, flags, window & 0xFFFF, 0, 0) + payload
    tcp = tcp[:16] + struct.pack("!H", checksum(src + dst + struct.pack("!BBH", 0, 6, len(tcp))
                                                + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + ip + tcp


def frames_of(sc: Scenario) -> list[bytes]:
    def seq(side, offset):
        return sc.isn[side] + 1 + offset

    acked = [sc.isn[1] + 1, sc.isn[0] + 1]        # each side's ACK field: nothing beyond the SYN
    out = []
    if sc.handshake:
        out += [frame(ORIG, SYN, sc.isn[0], 0, window=sc.windows[0]),
                frame(RESP, SYN | ACK, sc.isn[1], acked[RESP], window=sc.windows[1]),
                frame(ORIG, ACK, seq(ORIG, 0), acked[ORIG], window=sc.windows[0])]
    extras = sorted(sc.extra_frames, key=lambda e: e[0])
    for i, g in enumerate(sc.segments):
        while extras and extras[0][0] <= i:
            _, side, flags, offset = extras.pop(0)
            out.append(frame(side, flags, seq(side, offset), acked[side],
                             window=sc.windows[side]))
        out.append(frame(g.side, ACK | PSH, seq(g.side, g.offset), acked[g.side],
                         g.payload(), window=sc.windows[g.side]))
    for _, side, flags, offset in extras:
        out.append(frame(side, flags, seq(side, offset), acked[side]))
    if sc.ack_all:
        ends = [stream_end(sc, side) for side in (ORIG, RESP)]
        for side in (ORIG, RESP):
            out.append(frame(1 - side, ACK, seq(1 - side, ends[1 - side]),
                             seq(side, ends[side]), window=sc.windows[1 - side]))
    for side in (ORIG, RESP):
        if sc.fin_at[side] is not None:
            out.append(frame(side, FIN | ACK, seq(side, sc.fin_at[side]), acked[side],
                             window=sc.windows[side]))
    return out


def stream_end(sc: Scenario, side: int) -> int:
    if sc.lengths is not None:
        return sc.lengths[side]
    ends = [g.offset + g.length for g in sc.segments if g.side == side]
    if sc.fin_at[side] is not None:
        ends.append(sc.fin_at[side])
    return max(ends, default=0)


def write_pcap(path: str, frames: list[bytes], start: float = 1000.0,
               step: float = 0.001) -> None:
    with open(path, "wb") as handle:
        handle.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for i, data in enumerate(frames):
            ts = start + i * step
            handle.write(struct.pack("<IIII", int(ts), int(round(ts % 1 * 1e6)) % 1000000,
                                     len(data), len(data)) + data)


# --------------------------------------------------------------- recorder

class Recorder(Analyser):
    """Reads both sides as `how` says and records every result:
    ("data", side, bytes), ("gap", side, size), ("end", side)."""
    name = "reassembly-recorder"
    ports = {PORT}
    how = ("any", 65536)         # ("any", limit) | ("chunks", n): ORIG then RESP
    reads: list = []

    def main(self):
        log = type(self).reads
        mode, n = type(self).how
        if mode == "any":
            ended = set()
            while len(ended) < 2:
                try:
                    if ended:
                        side = RESP if ORIG in ended else ORIG
                        data = self.read_some(side, n)
                    else:
                        side, data = self.read_any(n)
                    log.append(("data", side, data))
                except Gap as gap:
                    log.append(("data", gap.side, gap.data))
                    log.append(("gap", gap.side, gap.size))
                except StreamEnd as end:
                    log.append(("data", end.side, end.data))
                    log.append(("end", end.side))
                    ended.add(end.side)
            return
        for side in (ORIG, RESP):
            while True:
                try:
                    log.append(("data", side, self.read(side, n)))
                except Gap as gap:
                    log.append(("data", side, gap.data))
                    log.append(("gap", side, gap.size))
                except StreamEnd as end:
                    log.append(("data", side, end.data))
                    log.append(("end", side))
                    break


def replay_scenario(sc: Scenario, how=("any", 65536), path: str | None = None,
                    monitor=None, **engine_options):
    """Run the scenario through the engine; returns (reads, stats)."""
    from analyser.replay import replay_files
    Recorder.how = how
    Recorder.reads = []
    own = path is None
    if own:
        handle, path = tempfile.mkstemp(suffix=".pcap", dir="/dev/shm"
                                        if os.path.isdir("/dev/shm") else None)
        os.close(handle)
    try:
        write_pcap(path, frames_of(sc))
        result = replay_files([path], analysers=[(Recorder, {})], detect="ports",
                              on_connection=lambda row: None, monitor=monitor,
                              **engine_options)
    finally:
        if own:
            os.unlink(path)
    return Recorder.reads, result.stats


# ----------------------------------------------------------- the reference

def pieces(reads: list, side: int) -> list:
    """A side's reads as [("data", bytes) | ("gap", n)], neighbours merged,
    empty data dropped."""
    out: list = []
    for kind, s, *rest in reads:
        if s != side or kind == "end" or (kind == "data" and not rest[0]):
            continue
        value = rest[0]
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + value)
        else:
            out.append((kind, value))
    return out


def first_copies(sc: Scenario, side: int) -> dict[int, int]:
    """Byte offset -> value of the first copy that arrived."""
    got: dict[int, int] = {}
    for g in sc.segments:
        if g.side != side:
            continue
        for i, b in enumerate(g.payload()):
            got.setdefault(g.offset + i, b)
    return got


def expected_pieces(sc: Scenario, side: int) -> list:
    """What the side must read: first copies, and a gap for every run of
    bytes no segment carried, up to the FIN (or the last byte sent; the
    whole stream when the peer acknowledges it all).  Nothing when no
    segment of either side carried a byte: the analyser starts with the first
    payload (analyser/binding.pyx, rule 1), so a connection whose data was
    all lost runs none, even if its acknowledgements say bytes were sent
    (conn.log's missed_bytes counts them)."""
    if not any(g.length for g in sc.segments):
        return []
    got = first_copies(sc, side)
    end = stream_end(sc, side)
    out: list = []
    p = 0
    while p < end:
        if p in got:
            q = p
            while q < end and q in got:
                q += 1
            out.append(("data", bytes(got[i] for i in range(p, q))))
        else:
            q = p
            while q < end and q not in got:
                q += 1
            if q == end and sc.fin_at[side] is None and not sc.ack_all:
                break                   # a lost tail nothing after it reveals
            out.append(("gap", q - p))
        p = q
    return out


def conflict_seen_while_buffered(sc: Scenario, side: int) -> bool:
    """Under a reader that reads the side only once it is complete, does a
    conflicting copy arrive while the first copy is still buffered?"""
    seen: dict[int, int] = {}
    end = stream_end(sc, side)
    for g in sc.segments:
        if g.side != side:
            continue
        if len(seen) >= end:
            break                       # complete: read out, nothing buffered to compare
        for i, b in enumerate(g.payload()):
            p = g.offset + i
            if p in seen and seen[p] != b:
                return True
            seen.setdefault(p, b)
    return False


# ------------------------------------------------------------ fuzz target

def scenario_from_bytes(data: bytes) -> tuple[Scenario, tuple]:
    """Any bytes -> a scenario (and a read mode).  Header: 2 ISNs (4 bytes
    each), flags; then 6-byte segment records: side/conflict/kind, offset (3
    bytes, times a scale), length (2 bytes)."""
    data = data + bytes(max(0, 10 - len(data)))
    isn = struct.unpack(">II", data[:8])
    flags, scale = data[8], data[9]
    segments, extras = [], []
    body = data[10:]
    for i in range(0, len(body) - 5, 6):
        kind, off, length = body[i], int.from_bytes(body[i + 1:i + 4], "big"), \
            int.from_bytes(body[i + 4:i + 6], "big")
        side = kind & 1
        # Far offsets (window edges, huge holes) stay below 2**30: further
        # than that, a sequence number is ambiguous on the wire itself.
        offset = off * (1 + (scale & 7) * 63) % (1 << 30) if kind & 4 else off & 0xFFFF
        if kind & 0x40:                 # a control segment (RST / FIN / bare ACK)
            extras.append((len(segments), side, (RST, FIN | ACK, ACK, SYN)[kind >> 4 & 3],
                           offset))
            continue
        segments.append(Segment(side, offset, min(length, MAX_SEGMENT), bool(kind & 2)))
    fin_at = tuple((stream_end(Scenario(isn, segments, (None, None)), side)
                    if flags >> side & 1 else None) for side in (ORIG, RESP))
    sc = Scenario(isn, segments, fin_at, ack_all=bool(flags & 4),
                  handshake=not flags & 8, windows=(1 + (scale << 8), 65535),
                  extra_frames=extras)
    how = ("any", 1 + (flags >> 4) * 700) if flags & 0x80 == 0 else ("chunks", 1 + (flags >> 4)
                                                                      * 300)
    return sc, how


def bytes_from_scenario(sc: Scenario, flags: int = 3) -> bytes:
    out = struct.pack(">II", *sc.isn) + bytes([flags, 0])
    for g in sc.segments:
        out += bytes([g.side | (2 if g.conflict else 0)]) + g.offset.to_bytes(3, "big") \
            + g.length.to_bytes(2, "big")
    return out


def fuzz_setup():
    from fuzz.targets import check, scratch_path
    path = scratch_path("reassembly.pcap")

    def one(data: bytes) -> None:
        sc, how = scenario_from_bytes(data)
        reads, stats = replay_scenario(sc, how, path=path)
        check(stats["analyser_errors"] == 0 and stats["engine_errors"] == 0, "errors: %r",
              {k: stats[k] for k in ("analyser_errors", "engine_errors")})
        check(stats["ring"]["pinned_records"] == 0, "records still pinned")
        if not sc.handshake or any(e[2] & (SYN | RST) for e in sc.extra_frames):
            return                      # offsets are the engine's guess then
        for side in (ORIG, RESP):
            copies: dict[int, set] = {}
            for g in sc.segments:
                if g.side == side:
                    for i, b in enumerate(g.payload()):
                        copies.setdefault(g.offset + i, set()).add(b)
            position = 0
            for kind, value in pieces(reads, side):
                if kind == "gap":
                    position += value
                    continue
                for i, b in enumerate(value):
                    check(b in copies.get(position + i, ()),
                          "side %d byte %d read as %d; sent: %r", side, position + i, b,
                          copies.get(position + i))
                position += len(value)
    return one


def fuzz_seeds():
    import random
    rng = random.Random(5)
    for wrap in (0, 0xFFFFFFFF - 3000, 0x7FFFFFFF):
        segments = [Segment(i % 2, (i // 2) * 500, 500) for i in range(20)]
        rng.shuffle(segments)
        yield bytes_from_scenario(Scenario((wrap, wrap ^ 0x5555), segments, (None, None)))
    segments = [Segment(0, 0, 100), Segment(0, 200, 100), Segment(0, 50, 200, True),
                Segment(0, 100, 100)]
    yield bytes_from_scenario(Scenario((1, 2), segments, (None, None)))
