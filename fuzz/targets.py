"""The fuzz targets: one function per entry point a hostile capture reaches.

Role in the data flow: fuzz input -> **target** -> one stage of the
pipeline (file reader, decoder, reassembly, one analyser, or all of it) ->
an invariant check.  A target raises only when something is wrong: an
exception the stage must not let out, or a broken invariant
(`InvariantBroken`).  `fuzz/run.py` runs them under atheris; tests replay
the inputs that once broke them (tests/test_fuzz_cases.py).

Each target is `TARGETS[name] = Target(setup, seeds)`: `setup()` imports
what it needs and returns the function that takes one input; `seeds()`
yields starting inputs (from the traces in traces/ and, when present, the
shared conformance set; nothing of them is committed).
"""
from __future__ import annotations

import os
import struct
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "conformance"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fuzz import script as scriptcodec  # noqa: E402

# A scratch file for inputs that must be files (the readers open paths).
SCRATCH_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


class InvariantBroken(AssertionError):
    """A stage returned, but what it returned is impossible."""


def check(condition: bool, message: str, *args) -> None:
    if not condition:
        raise InvariantBroken(message % args if args else message)


@dataclass
class Target:
    setup: Callable[[], Callable[[bytes], None]]
    seeds: Callable[[], Iterable[bytes]]
    doc: str = ""


TARGETS: dict[str, Target] = {}


def scratch_path(name: str) -> str:
    return os.path.join(SCRATCH_DIR, "analyser-fuzz-%d-%s" % (os.getpid(), name))


# ------------------------------------------------------------------ traces

def trace_files(*words: str) -> list[Path]:
    """Trace files of the repository and the shared conformance set whose
    path contains one of `words` (all of them without words)."""
    found = sorted((REPO / "traces").glob("*.pcap*"))
    if SHARED.is_dir():
        found += sorted(SHARED.glob("*/*/*.pcap*")) + sorted(SHARED.glob("*/*/*/*.pcap*"))
    if words:
        found = [p for p in found if any(w in str(p) for w in words)]
    return found


def trace_frames(path: Path, limit: int = 400) -> tuple[int, list[bytes]]:
    """(linktype, first frames) of a trace, read with dpkt (the oracle
    reader), or (1, []) when dpkt cannot."""
    import dpkt
    try:
        with open(path, "rb") as handle:
            reader = (dpkt.pcapng.Reader(handle) if path.suffix == ".pcapng"
                      else dpkt.pcap.Reader(handle))
            linktype = reader.datalink()
            frames = []
            for _, frame in reader:
                frames.append(bytes(frame))
                if len(frames) >= limit:
                    break
            return linktype, frames
    except Exception:                                  # a seed is only a seed
        return 1, []


def conversations(words: tuple[str, ...], ports: set[int] = frozenset(),
                  udp: bool = False, limit: int = 30) -> list[list]:
    """Per-connection scripts (side, payload) in packet order from the traces
    named by `words`: the connections on `ports` (any when empty)."""
    import dpkt
    out = []
    for path in trace_files(*words):
        linktype, frames = trace_frames(path, 3000)
        flows: dict[tuple, list] = {}
        for frame in frames:
            try:
                if linktype == 1:
                    ip = dpkt.ethernet.Ethernet(frame).data
                elif linktype in (101, 228, 229, 12, 14):
                    ip = dpkt.ip.IP(frame) if frame[:1] and frame[0] >> 4 == 4 \
                        else dpkt.ip6.IP6(frame)
                elif linktype == 113:
                    ip = dpkt.sll.SLL(frame).data
                elif linktype == 0:
                    ip = dpkt.loopback.Loopback(frame).data
                else:
                    continue
                l4 = ip.data
            except Exception:
                continue
            if udp != isinstance(l4, dpkt.udp.UDP) or not isinstance(
                    l4, (dpkt.tcp.TCP, dpkt.udp.UDP)) or not l4.data:
                continue
            if ports and l4.sport not in ports and l4.dport not in ports:
                continue
            a, b = (bytes(ip.src), l4.sport), (bytes(ip.dst), l4.dport)
            key = (min(a, b), max(a, b))
            flow = flows.setdefault(key, [a])
            flow.append((0 if a == flow[0] else 1, bytes(l4.data)))
        for flow in flows.values():
            out.append(flow[1:])
            if len(out) >= limit:
                return out
    return out


# ------------------------------------------------------------- analysers

# Target name -> (module, classes the first input byte chooses from, words
# naming its traces, port hints for the seeds, classes it may hand over to).
ANALYSERS = {
    "ftp": ("protocols.ftp", ["Ftp"], ("ftp",), {21}, []),
    "gridftp": ("protocols.gridftp", ["GridFtp", "ModeEData", "GridFtpData", "GsiDataChannel"],
                ("gridftp",), {2811, 2812}, []),
    "http": ("protocols.http", ["Http"], ("http", "websocket"), {80, 8080, 2180, 8000},
             [("protocols.websocket", "WebSocket"), ("protocols.tls", "Tls"),
              ("protocols.ssh", "Ssh")]),
    "websocket": ("protocols.websocket", ["WebSocket"], ("websocket",), {80, 8080, 8000},
                  [("protocols.ssh", "Ssh"), ("protocols.http", "Http")]),
    "tls": ("protocols.tls", ["Tls"], ("ssl", "tls", "starttls"), {443, 993, 465}, []),
    "quic": ("protocols.quic", ["Quic"], ("quic",), {443, 853, 4433}, []),
    "ssh": ("protocols.ssh", ["Ssh"], ("ssh",), {22}, []),
    "dns": ("protocols.dns", ["Dns"], ("dns",), {53}, []),
    "smtp": ("protocols.smtp", ["Smtp"], ("smtp",), {25, 587}, [("protocols.tls", "Tls")]),
    "irc": ("protocols.irc", ["Irc"], ("irc",), {6667, 6666, 6697}, [("protocols.tls", "Tls")]),
    "xmpp": ("protocols.xmpp", ["Xmpp"], ("xmpp",), {5222, 5269}, [("protocols.tls", "Tls")]),
    "mysql": ("protocols.mysql", ["MySql"], ("mysql",), {3306}, [("protocols.tls", "Tls")]),
    "rdp": ("protocols.rdp", ["Rdp"], ("rdp",), {3389}, [("protocols.tls", "Tls")]),
}


def analyser_classes(name: str):
    import importlib
    module_name, class_names, _, _, handovers = ANALYSERS[name]
    module = importlib.import_module(module_name)
    classes = [getattr(module, c) for c in class_names]
    others = [getattr(importlib.import_module(m), c) for m, c in handovers]
    return classes, others


def run_analyser_input(name: str, data: bytes):
    """One input through one analyser in the author's harness.  Byte 0
    chooses the class (and for an analyser of both transports, bit 7: UDP);
    the rest is a script (fuzz/script.py).  Returns the harness result."""
    from analyser.testing import DEFAULT_ID, UDP_ID, run
    classes, others = analyser_classes(name)
    if not data:
        return None
    head, body = data[0], data[1:]
    cls = classes[head % len(classes)]
    transports = cls.transports()
    udp = "tcp" not in transports or ("udp" in transports and head & 0x80)
    items = scriptcodec.decode(body, datagrams=udp)
    return run(cls, items, conn_id=UDP_ID if udp else DEFAULT_ID,
               candidates=[c for c in others if c is not cls])


def analyser_target(name: str) -> Target:
    def setup():
        analyser_classes(name)                # import now, not per input

        def one(data: bytes) -> None:
            result = run_analyser_input(name, data)
            if result is not None:
                check(not result.errors, "analyser error: %r", result.errors[:1])
        return one

    def seeds():
        classes, _ = analyser_classes(name)
        _, _, words, ports, _ = ANALYSERS[name]
        udp_only = "tcp" not in classes[0].transports()
        found = conversations(words, ports, udp=udp_only)
        if name == "dns":
            found += [("udp", c) for c in conversations(words, ports, udp=True)]
        for i, conv in enumerate(found):
            head = i % len(classes)
            if isinstance(conv, tuple):
                head |= 0x80
                conv = conv[1]
            yield bytes([head]) + scriptcodec.encode(conv)
        yield bytes([0]) + scriptcodec.encode([(1, b"220 ready\r\n"), (0, b"HELLO\r\n")])
    return Target(setup, seeds, "the %s analyser in the author's harness" % name)


for _name in ANALYSERS:
    TARGETS[_name] = analyser_target(_name)


# ---------------------------------------------------------------- decoder

# Every link type the decoder knows, and one it does not.
LINKTYPES = [1, 0, 9, 50, 12, 14, 101, 108, 113, 228, 229, 239, 276, 105, 127, 147]


def split_packets(data: bytes) -> list[bytes]:
    """2-byte big-endian length, then that many bytes, repeated."""
    packets, i = [], 0
    while i < len(data):
        length = int.from_bytes(data[i:i + 2], "big")
        packets.append(data[i + 2:i + 2 + length])
        i += 2 + length
    return packets


def join_packets(packets: Iterable[bytes]) -> bytes:
    return b"".join(struct.pack(">H", len(p[:0xFFFF])) + p[:0xFFFF] for p in packets)


# How dpkt parses each link type (for coverage guidance and the cross-check).
def dpkt_parse(linktype: int, packet: bytes):
    import dpkt
    parsers = {1: dpkt.ethernet.Ethernet, 113: dpkt.sll.SLL, 276: dpkt.sll2.SLL2,
               0: dpkt.loopback.Loopback, 108: dpkt.loopback.Loopback,
               9: dpkt.ppp.PPP, 50: dpkt.ppp.PPP, 127: dpkt.radiotap.Radiotap,
               105: dpkt.ieee80211.IEEE80211}
    try:
        if linktype in parsers:
            return parsers[linktype](packet)
        if linktype in (12, 14, 101, 228, 229) and packet:
            return dpkt.ip.IP(packet) if packet[0] >> 4 == 4 else dpkt.ip6.IP6(packet)
    except Exception:                   # dpkt gives up: nothing to compare
        return None
    return None


# UDP ports the decoder opens tunnels on (README "Tunnels"): not plain UDP.
TUNNEL_PORTS = {4789, 6081, 2152, 3544, 5072}


def plain_ipv4_transport(eth):
    """(src, dst, sport, dport, proto) when dpkt's Ethernet frame is plainly
    IPv4 (no tags, no options, not a fragment) carrying a TCP or UDP header
    and no tunnel; else None."""
    import dpkt
    if not isinstance(eth, dpkt.ethernet.Ethernet) or eth.type != 0x0800 \
            or getattr(eth, "vlan_tags", None) or getattr(eth, "mpls_labels", None):
        return None
    ip = eth.data
    if not isinstance(ip, dpkt.ip.IP) or ip.hl != 5 or ip.mf or ip.offset or ip.len < 20:
        return None
    l4 = ip.data
    if isinstance(l4, dpkt.tcp.TCP) and l4.off >= 5:
        return ip.src, ip.dst, l4.sport, l4.dport, 6
    if isinstance(l4, dpkt.udp.UDP) and not {l4.sport, l4.dport} & TUNNEL_PORTS:
        return ip.src, ip.dst, l4.sport, l4.dport, 17
    return None


def decode_setup():
    import dpkt  # noqa: F401  (imported here: instrumented for guidance)
    from analyser.decode import Decoder

    def one(data: bytes) -> None:
        if len(data) < 2:
            return
        linktype = LINKTYPES[data[0] % len(LINKTYPES)]
        decoder = Decoder(verify_ip_checksum=bool(data[1] & 0x80),
                          tunnel_depth=data[1] % 9)
        for i, packet in enumerate(split_packets(data[2:])):
            wirelen = len(packet) + (data[1] >> 4 & 7) * 100
            got = decoder.decode_bytes(packet, linktype, wirelen, ts_ns=i * 10**9)
            if isinstance(got, str):
                check(got in ("not_ip", "fragment_held", "malformed", "other_transport"),
                      "unknown result %r", got)
                continue
            check(got["payload_caplen"] <= got["payload_len"] or got["reassembled"],
                  "payload_caplen %d > payload_len %d", got["payload_caplen"],
                  got["payload_len"])
            check(len(got["payload"]) == got["payload_caplen"], "payload length")
            if got["payload"] and not got["reassembled"]:
                # Not reassembled: the payload is a slice of the packet, or
                # the decoder read outside it.
                check(got["payload"] in packet, "payload bytes are not the packet's")
            check(got["ip_version"] in (4, 6), "ip_version %r", got["ip_version"])
        for packet in split_packets(data[2:]):
            parsed = dpkt_parse(linktype, packet)
            plain = plain_ipv4_transport(parsed) if linktype == 1 else None
            if plain is None or len(packet) < 14 + parsed.data.len:
                continue
            got = Decoder(verify_ip_checksum=False, tunnel_depth=0).decode_bytes(packet, 1)
            if isinstance(got, dict):
                check((got["src"][12:], got["dst"][12:], got["sport"], got["dport"],
                       got["proto"]) == plain, "decoded %r, dpkt says %r", got, plain)
        decoder.malformed_counts()
        decoder.fragment_stats()
    return one


def decode_seeds():
    for path in trace_files():
        linktype, frames = trace_frames(path, 60)
        if frames and linktype in LINKTYPES:
            yield bytes([LINKTYPES.index(linktype), 4]) + join_packets(frames[:60])


TARGETS["decode"] = Target(decode_setup, decode_seeds,
                           "Decoder.decode_bytes over every link type, tunnels, fragments")


# ----------------------------------------------------------- file readers

def dpkt_records(path: str):
    """dpkt's reading of a capture file (the records' bytes), or None."""
    import dpkt
    records = []
    try:
        with open(path, "rb") as handle:
            try:
                reader = dpkt.pcap.Reader(handle)
            except (ValueError, dpkt.dpkt.Error):
                handle.seek(0)
                reader = dpkt.pcapng.Reader(handle)
            for _, data in reader:
                records.append(bytes(data))
    except Exception:
        return None
    return records


def pcap_reader_setup():
    import dpkt  # noqa: F401  (imported here: instrumented for guidance)
    from ringbuf.errors import CaptureFileError
    from ringbuf.pcapfile import PcapFileSource
    from ringbuf.ring import Ring
    path = scratch_path("reader.pcap")

    def one(data: bytes) -> None:
        with open(path, "wb") as handle:
            handle.write(data)
        try:
            source = PcapFileSource(path)
        except CaptureFileError:
            return
        records = []
        try:
            for record in source.read_all():
                ts_ns, caplen, wirelen, linktype, interface, payload = record
                check(caplen == len(payload), "caplen %d, %d bytes", caplen, len(payload))
                records.append(record)
        except CaptureFileError:
            pass
        try:
            counted = PcapFileSource(path).count_records()
            check(counted >= len(records), "count_records %d < %d read", counted,
                  len(records))
        except CaptureFileError:
            pass
        # The ring path, with a ring far too small: partial fills.
        source = PcapFileSource(path)
        ring = Ring(record_capacity=4, arena_bytes=1 << 17, policy="wait")
        got = []
        try:
            for _ in range(len(records) + 8):
                source.fill_ring(ring, 1000)
                while (record := ring.read()) is not None:
                    got.append(record[6])
                ring.ack(ring.processed_index - 1 if ring.processed_index else 0)
                if source.eof:
                    break
        except CaptureFileError:
            return
        check(got == [r[5] for r in records][:len(got)], "ring gives other bytes")
        theirs = dpkt_records(path)
        if theirs is not None and data[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4"):
            # Classic pcap that dpkt reads to the end: the same records.
            mine = [r[5] for r in records]
            check(mine == theirs[:len(mine)], "records differ from dpkt's")
    return one


def pcap_reader_seeds():
    for path in trace_files():
        with open(path, "rb") as handle:
            yield handle.read(6000)
    sys.path.insert(0, str(REPO / "tests"))
    import test_pcapfile as t
    packets = [b"\x45" + bytes(39), b"x" * 100, b""]
    content, _ = t.two_interface_section("<", packets)
    yield content
    yield t.two_interface_section(">", packets)[0] + t.custom_block(">")
    yield t.pcap_bytes([(1, 2, p, len(p)) for p in packets], nanoseconds=True, endian=">")


TARGETS["pcap_reader"] = Target(pcap_reader_setup, pcap_reader_seeds,
                                "ringbuf.pcapfile on any file: read_all, count_records, fill_ring")


# ---------------------------------------------------------- whole engine

def write_pcap_bytes(path: str, linktype: int, packets: list[bytes], start: float = 1000.0,
                     step: float = 0.01) -> None:
    with open(path, "wb") as handle:
        handle.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
        for i, packet in enumerate(packets):
            ts = start + i * step
            handle.write(struct.pack("<IIII", int(ts), int(ts % 1 * 1e6), len(packet),
                                     len(packet)) + packet)


def replay_setup():
    from analyser import registry
    from analyser.replay import replay_files
    analysers, _ = registry.select()
    path = scratch_path("replay.pcap")

    def one(data: bytes) -> None:
        if len(data) < 2:
            return
        linktype = LINKTYPES[data[0] % len(LINKTYPES)]
        write_pcap_bytes(path, linktype, split_packets(data[2:]), step=(data[1] & 15) * 0.5)
        result = replay_files([path], analysers=analysers, on_connection=lambda row: None,
                              on_event=lambda record: None, detect="content",
                              ring_records=64, ring_bytes=1 << 16, max_stream_bytes=1 << 16,
                              max_owned_bytes=1 << 14)
        stats = result.stats
        check(stats["analyser_errors"] == 0 and stats["engine_errors"] == 0,
              "errors: %r", result.engine.runtime.error_log[:1])
        check(stats["ring"]["pinned_records"] == 0, "records still pinned at the end")
    return one


def replay_seeds():
    for path in trace_files():
        linktype, frames = trace_frames(path, 80)
        if frames and linktype in LINKTYPES:
            yield bytes([LINKTYPES.index(linktype), 0]) + join_packets(frames)


TARGETS["replay"] = Target(replay_setup, replay_seeds,
                           "frames of any link type through the whole engine and every "
                           "shipped analyser (small ring and stream limits)")


# ---------------------------------------------------------- reassembly

from fuzz import reassembly  # noqa: E402

TARGETS["tcp_reassembly"] = Target(reassembly.fuzz_setup, reassembly.fuzz_seeds,
                                   "one TCP connection's segments in any order, overlapping, "
                                   "lost, around sequence wraparound: the bytes read are the "
                                   "stream's")
