#!/usr/bin/env python3
"""Generate a deterministic synthetic benchmark trace, with its ground truth.

Writes a classic pcap (Ethernet / IPv4 / TCP and UDP) of about the requested size
into bench/out/, plus a sidecar JSON with the truth per flow (5-tuple, packets and
payload bytes per direction, how the flow ended), so that the benchmark can check
that the engine it times is also right.

What the traffic looks like (all of it seeded, so the same parameters give the
same bytes):

* --flows TCP connections (default 5,000), of heavy-tailed sizes (Pareto: many
  mice, a few elephants), about 256 of them open at a time and interleaved
  packet-flight by packet-flight: three-way handshake with Linux-style SYN options
  (MSS, SACK-permitted, timestamps, window scale), timestamps on every segment,
  a request and bulk data in 1448-byte segments with the odd short segment
  (application write boundaries), a pure ACK every second segment, PSH on the
  last segment of a message; mostly downloads, some uploads, some interactive
  request/response exchanges; FIN/FIN/ACK close, or (3 %) an RST.
* --udp-flows request/response UDP exchanges (default 300).
* Correct IPv4 header, TCP and UDP checksums: the engine verifies checksums by
  default and would drop packets with bad ones.  They are computed without
  touching payload bytes per packet: payloads are even-offset slices of one
  random buffer whose 16-bit-word prefix sums are precomputed, so a payload's
  ones'-complement sum is one subtraction.

The file name carries every parameter (and a format version), so an existing
file is reused instead of regenerated; --force regenerates.

    python3 bench/gen_trace.py --size-mb 600
    python3 bench/gen_trace.py --size-mb 50 --flows 5000
"""
import argparse
import itertools
import json
import os
import random
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "out")
FORMAT_VERSION = 1          # bump when the generated traffic changes

MSS = 1448                  # 1500 MTU - 20 IP - 20 TCP - 12 timestamp option
CONCURRENT = 256            # flows open at the same time
TCP_PORTS = (5201, 7000, 9000, 9443, 15000)   # ports without a protocol analyser
UDP_PORT = 9999
SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10
ETH_HDR = 14
START_TS_US = 1_700_000_000 * 1_000_000

PAYLOAD_BUF_SIZE = 1 << 20
PCAP_GLOBAL_HDR = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # EN10MB
IP_TCP_TS = struct.Struct("!BBHHHBBH4s4sHHIIHHHHBBBBII")    # IPv4 + TCP + NOP NOP TS
IP_TCP_SYN = struct.Struct("!BBHHHBBH4s4sHHIIHHHHHHHHII" + "HH")   # + SYN options
IP_UDP = struct.Struct("!BBHHHBBH4s4sHHHH")
REC_HDR = struct.Struct("<IIII")


def trace_paths(size_mb, flows, udp_flows, seed, out_dir=OUT_DIR):
    stem = f"synth-v{FORMAT_VERSION}-s{seed}-{size_mb}MB-{flows}tcp-{udp_flows}udp"
    return os.path.join(out_dir, stem + ".pcap"), os.path.join(out_dir, stem + ".json")


def fold(s):
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def words32(x):
    return (x >> 16) + (x & 0xFFFF)


class Payloads:
    """Payload bytes and their ones'-complement sums without per-packet work."""

    def __init__(self, rng):
        self.buf = rng.randbytes(PAYLOAD_BUF_SIZE)
        self.view = memoryview(self.buf)
        words = struct.unpack(f"!{PAYLOAD_BUF_SIZE // 2}H", self.buf)
        self.prefix = [0, *itertools.accumulate(words)]

    def pick(self, rng, n):
        """(memoryview of n bytes, its 16-bit word sum); n <= 65000."""
        off = rng.randrange(0, (PAYLOAD_BUF_SIZE - n) // 2) * 2
        s = self.prefix[(off + n) >> 1] - self.prefix[off >> 1]
        if n & 1:
            s += self.buf[off + n - 1] << 8
        return self.view[off:off + n], s


class Side:
    """One direction of a flow: the fixed header parts and the moving counters."""
    __slots__ = ("eth", "src", "dst", "sport", "dport", "ip_base", "pseudo_base",
                 "seq", "ip_id", "ts_base", "last_ts", "pkts", "payload")

    def __init__(self, src, dst, sport, dport, proto, mac_src, mac_dst, rng):
        self.eth = mac_dst + mac_src + b"\x08\x00"
        self.src, self.dst, self.sport, self.dport = src, dst, sport, dport
        s_words = sum(struct.unpack("!HH", src)) + sum(struct.unpack("!HH", dst))
        # IPv4 header words that never change: version/IHL/TOS, DF, TTL/proto, addrs.
        self.ip_base = 0x4500 + 0x4000 + ((64 << 8) | proto) + s_words
        # Pseudo header minus the length, plus the ports.
        self.pseudo_base = s_words + proto + sport + dport
        self.seq = rng.getrandbits(32)
        self.ip_id = rng.getrandbits(16)
        self.ts_base = rng.getrandbits(32)
        self.last_ts = 0
        self.pkts = 0
        self.payload = 0


class Writer:
    """Buffers pcap records and writes them in large chunks."""

    def __init__(self, f):
        self.f = f
        self.buf = bytearray()
        self.packets = 0
        self.wire_bytes = 0

    def add(self, ts_us, header, payload):
        n = len(header) + len(payload)
        self.buf += REC_HDR.pack(ts_us // 1_000_000, ts_us % 1_000_000, n, n)
        self.buf += header
        self.buf += payload
        self.packets += 1
        self.wire_bytes += n
        if len(self.buf) > (8 << 20):
            self.flush()

    def flush(self):
        self.f.write(self.buf)
        self.buf.clear()


class Flow:
    def __init__(self, fid, proto, client, server, cport, sport, rng):
        mac_c = bytes((0x02, 0, 0, 0, fid >> 8 & 0xFF, fid & 0xFF))
        mac_s = bytes((0x02, 0, 0, 1, 0, 1))
        num = 17 if proto == "udp" else 6
        self.proto = proto
        self.sides = (Side(client, server, cport, sport, num, mac_c, mac_s, rng),
                      Side(server, client, sport, cport, num, mac_s, mac_c, rng))
        self.end = "open"


def emit_tcp(w, flow, d, flags, n, ts_us, payloads, rng):
    me, peer = flow.sides[d], flow.sides[1 - d]
    if n:
        data, psum = payloads.pick(rng, n)
    else:
        data, psum = b"", 0
    ack = peer.seq if flags & ACK else 0
    tsval = (me.ts_base + ts_us // 1000) & 0xFFFFFFFF
    tsecr = peer.last_ts
    win = 65535 if flags & SYN else 502
    ip_id = me.ip_id
    me.ip_id = (ip_id + 1) & 0xFFFF
    if flags & SYN:
        thl = 40
        tot = 20 + thl + n
        # TCP words: header, then MSS 1460, SACK-permitted, TS, NOP + WS 7.
        tsum = (me.pseudo_base + thl + n + words32(me.seq) + words32(ack)
                + ((thl // 4) << 12 | flags) + win
                + 0x0204 + 1460 + 0x0402 + 0x080A + words32(tsval) + words32(tsecr)
                + 0x0103 + 0x0307 + psum)
        csum = ~fold(tsum) & 0xFFFF
        ipc = ~fold(me.ip_base + tot + ip_id) & 0xFFFF
        hdr = IP_TCP_SYN.pack(0x45, 0, tot, ip_id, 0x4000, 64, 6, ipc, me.src, me.dst,
                              me.sport, me.dport, me.seq, ack, (thl // 4) << 12 | flags,
                              win, csum, 0, 0x0204, 1460, 0x0402, 0x080A, tsval, tsecr,
                              0x0103, 0x0307)
    else:
        thl = 32
        tot = 20 + thl + n
        tsum = (me.pseudo_base + thl + n + words32(me.seq) + words32(ack)
                + ((thl // 4) << 12 | flags) + win
                + 0x0101 + 0x080A + words32(tsval) + words32(tsecr) + psum)
        csum = ~fold(tsum) & 0xFFFF
        ipc = ~fold(me.ip_base + tot + ip_id) & 0xFFFF
        hdr = IP_TCP_TS.pack(0x45, 0, tot, ip_id, 0x4000, 64, 6, ipc, me.src, me.dst,
                             me.sport, me.dport, me.seq, ack, (thl // 4) << 12 | flags,
                             win, csum, 0, 1, 1, 8, 10, tsval, tsecr)
    w.add(ts_us, me.eth + hdr, data)
    me.last_ts = tsval
    me.seq = (me.seq + n + (1 if flags & (SYN | FIN) else 0)) & 0xFFFFFFFF
    me.pkts += 1
    me.payload += n


def emit_udp(w, flow, d, n, ts_us, payloads, rng):
    me = flow.sides[d]
    data, psum = payloads.pick(rng, n)
    ulen = 8 + n
    tot = 20 + ulen
    ip_id = me.ip_id
    me.ip_id = (ip_id + 1) & 0xFFFF
    csum = ~fold(me.pseudo_base + ulen + ulen + psum) & 0xFFFF
    if csum == 0:
        csum = 0xFFFF       # 0 means "no checksum" in UDP
    ipc = ~fold(me.ip_base + tot + ip_id) & 0xFFFF
    hdr = IP_UDP.pack(0x45, 0, tot, ip_id, 0x4000, 64, 17, ipc, me.src, me.dst,
                      me.sport, me.dport, ulen, csum)
    w.add(ts_us, me.eth + hdr, data)
    me.pkts += 1
    me.payload += n


def segments(rng, total):
    """Split a message of *total* bytes into segment sizes: MSS, the odd short one."""
    out = []
    while total > 0:
        n = MSS if rng.random() > 0.02 else rng.randint(100, MSS - 1)
        n = min(n, total)
        out.append(n)
        total -= n
    return out


def tcp_script(rng, kind, nbytes, end):
    """Yield flights: lists of (side, flags, payload length); side 0 = client."""
    C, S = 0, 1
    yield [(C, SYN, 0)]
    yield [(S, SYN | ACK, 0)]
    yield [(C, ACK, 0)]

    def message(src, n):
        """Bulk transfer from src in windows of 2-16 segments, ACKed every 2nd."""
        segs = segments(rng, n)
        i = 0
        while i < len(segs):
            window = segs[i:i + rng.randint(2, 16)]
            flight = []
            for j, s in enumerate(window):
                last = i + j == len(segs) - 1
                flight.append((src, ACK | (PSH if last else 0), s))
                if j % 2 == 1 or last:
                    flight.append((1 - src, ACK, 0))
            i += len(window)
            yield flight

    if kind == "download":
        if nbytes:
            yield [(C, PSH | ACK, rng.randint(60, 400))]
            yield from message(S, nbytes)
    elif kind == "upload":
        yield [(C, PSH | ACK, rng.randint(60, 400))]
        yield [(S, PSH | ACK, rng.randint(20, 80))]
        yield from message(C, nbytes)
        yield [(S, PSH | ACK, rng.randint(20, 200))]
    else:   # interactive: several request/response rounds
        rounds = rng.randint(2, 8)
        for _ in range(rounds):
            yield [(C, PSH | ACK, rng.randint(40, 600))]
            yield from message(S, max(1, nbytes // rounds))
    if end == "rst":
        yield [(rng.choice((C, S)), RST | ACK, 0)]
    else:
        closer = rng.choice((C, S))
        yield [(closer, FIN | ACK, 0)]
        yield [(1 - closer, FIN | ACK, 0)]
        yield [(closer, ACK, 0)]


def udp_script(rng):
    for _ in range(rng.randint(1, 6)):
        yield [(0, 0, rng.randint(30, 120))]
        if rng.random() < 0.9:      # now and then a request goes unanswered
            yield [(1, 0, rng.randint(50, 500))]


def plan_sizes(rng, n, budget):
    """Heavy-tailed payload sizes summing to about *budget* bytes."""
    raw = [rng.paretovariate(1.16) for _ in range(n)]
    cap = budget * 0.03     # no single flow dominates the trace
    # Find the scale k with sum(min(cap, k*r)) == budget (bisection: monotone in k).
    lo, hi = 0.0, budget / min(raw)
    for _ in range(100):
        k = (lo + hi) / 2
        if sum(min(cap, k * r) for r in raw) < budget:
            lo = k
        else:
            hi = k
    return [int(min(cap, lo * r)) for r in raw]


def generate(size_mb, flows, udp_flows, seed, pcap_path, json_path):
    rng = random.Random(seed)
    payloads = Payloads(rng)
    target = size_mb * 1_000_000
    # Overhead: ~14+20+32 header bytes per segment, an ACK per two segments, and
    # ~10 control packets per connection; UDP flows are small.
    per_flow_overhead = 10 * 90
    budget = max(flows, (target - flows * per_flow_overhead - udp_flows * 2000)) / 1.07
    sizes = plan_sizes(rng, flows, budget)

    used = set()

    def endpoint(proto):
        while True:
            client = bytes((10, 1, rng.randrange(256), rng.randrange(1, 255)))
            server = bytes((10, 2, rng.randrange(4), rng.randrange(1, 255)))
            cport = rng.randrange(1024, 65536)
            sport = UDP_PORT if proto == "udp" else rng.choice(TCP_PORTS)
            key = (proto, client, cport, server, sport)
            if key not in used:
                used.add(key)
                return client, server, cport, sport

    pending = []
    for i, nbytes in enumerate(sizes):
        r = rng.random()
        kind = "download" if r < 0.7 else "upload" if r < 0.9 else "interactive"
        if rng.random() < 0.01:
            nbytes = 0      # handshake and close only
        end = "rst" if rng.random() < 0.03 else "fin"
        if kind != "download" and nbytes == 0:
            nbytes = 1
        pending.append(("tcp", kind, nbytes, end))
    pending += [("udp", None, 0, None)] * udp_flows
    rng.shuffle(pending)

    all_flows = []
    tmp = pcap_path + ".tmp"
    t0 = time.monotonic()
    with open(tmp, "wb") as f:
        f.write(PCAP_GLOBAL_HDR)
        w = Writer(f)
        active = []     # [flow, script generator]
        it = iter(pending)
        ts = START_TS_US
        while True:
            while len(active) < CONCURRENT:
                nxt = next(it, None)
                if nxt is None:
                    break
                proto, kind, nbytes, end = nxt
                client, server, cport, sport = endpoint(proto)
                flow = Flow(len(all_flows), proto, client, server, cport, sport, rng)
                flow.end = end or "udp"
                all_flows.append(flow)
                script = (udp_script(rng) if proto == "udp"
                          else tcp_script(rng, kind, nbytes, end))
                active.append([flow, script])
            if not active:
                break
            i = rng.randrange(len(active))
            flow, script = active[i]
            flight = next(script, None)
            if flight is None:
                active[i] = active[-1]
                active.pop()
                continue
            for d, flags, n in flight:
                ts += 1 + int(rng.random() * 18)    # ~10 us apart: about 1 Gbit/s
                if flow.proto == "tcp":
                    emit_tcp(w, flow, d, flags, n, ts, payloads, rng)
                else:
                    emit_udp(w, flow, d, n, ts, payloads, rng)
        w.flush()

    truth = {
        "params": {"size_mb": size_mb, "flows": flows, "udp_flows": udp_flows,
                   "seed": seed, "format_version": FORMAT_VERSION},
        "link_type": "EN10MB",
        "packets": w.packets,
        "wire_bytes": w.wire_bytes,
        "file_bytes": os.path.getsize(tmp),
        "flow_fields": ["proto", "orig_h", "orig_p", "resp_h", "resp_p",
                        "orig_pkts", "resp_pkts", "orig_payload", "resp_payload", "end"],
        "flows": [],
    }
    for fl in all_flows:
        c, s = fl.sides
        truth["flows"].append([fl.proto, ".".join(map(str, c.src)), c.sport,
                               ".".join(map(str, s.src)), s.sport,
                               c.pkts, s.pkts, c.payload, s.payload, fl.end])
    os.replace(tmp, pcap_path)
    with open(json_path + ".tmp", "w") as f:
        json.dump(truth, f, separators=(",", ":"))
    os.replace(json_path + ".tmp", json_path)
    return truth, time.monotonic() - t0


def ensure_trace(size_mb=600, flows=5000, udp_flows=300, seed=1, force=False,
                 out_dir=OUT_DIR, quiet=False):
    """Path of the trace and of its ground truth, generating them if needed."""
    os.makedirs(out_dir, exist_ok=True)
    pcap_path, json_path = trace_paths(size_mb, flows, udp_flows, seed, out_dir)
    if not force and os.path.exists(pcap_path) and os.path.exists(json_path):
        if not quiet:
            print(f"reusing {os.path.relpath(pcap_path)}")
        return pcap_path, json_path
    if not quiet:
        print(f"generating {os.path.relpath(pcap_path)} ...", flush=True)
    truth, secs = generate(size_mb, flows, udp_flows, seed, pcap_path, json_path)
    if not quiet:
        print(f"  {truth['packets']:,} packets, {truth['file_bytes'] / 1e6:.1f} MB, "
              f"{len(truth['flows']):,} flows in {secs:.1f} s")
    return pcap_path, json_path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=600, help="approximate size (MB, 10^6)")
    ap.add_argument("--flows", type=int, default=5000, help="TCP connections")
    ap.add_argument("--udp-flows", type=int, default=300, help="UDP flows")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out-dir", default=OUT_DIR)
    ap.add_argument("--force", action="store_true", help="regenerate even if present")
    a = ap.parse_args(argv)
    if a.size_mb <= 0 or a.flows < 0 or a.udp_flows < 0:
        ap.error("sizes and counts must be positive")
    pcap_path, json_path = ensure_trace(a.size_mb, a.flows, a.udp_flows, a.seed,
                                        a.force, a.out_dir)
    print(pcap_path)
    print(json_path)


if __name__ == "__main__":
    sys.exit(main())
