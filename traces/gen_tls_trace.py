#!/usr/bin/env python3
"""Write a deterministic TLS-heavy pcap for benchmarking the TLS analyser.

    python3 traces/gen_tls_trace.py OUT.pcap [--connections N] [--records N] [--seed S]

Many short TLS connections to port 443 (and every fifth to 8443, found by
content), alternating TLS 1.2 and TLS 1.3: TCP handshake, a ClientHello with
a realistic set of extensions (SNI, ALPN h2/http/1.1, supported groups,
point formats, signature algorithms, supported_versions, key_share, GREASE),
the server's flight (ServerHello; for 1.2 Certificate, ServerKeyExchange,
ServerHelloDone, then ClientKeyExchange, ChangeCipherSpec and Finished both
ways; for 1.3 ChangeCipherSpec and encrypted handshake records), `--records`
application-data records each way (request/response pairs, sizes drawn from
the seed), and a FIN close.  Classic pcap, Ethernet, IPv4, valid IP and TCP
checksums, segments of at most 1448 bytes.  The crypto is fake (random
bytes), the framing is real: what an analyser sees of an encrypted session.
Standard library only; the same arguments give the same bytes.
"""
from __future__ import annotations

import argparse
import random
import struct

SNAPLEN = 65535
MSS = 1448
CLIENT_NET, SERVER_NET = "10.10.%d.%d", "10.20.0.%d"


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ip_bytes(addr: str) -> bytes:
    return bytes(int(x) for x in addr.split("."))


class Writer:
    def __init__(self, path: str):
        self.f = open(path, "wb")
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, 1))

    def packet(self, ts: float, src, sport, dst, dport, seq, ack, flags, payload=b""):
        tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                          5 << 4, flags, 64240, 0, 0)
        pseudo = ip_bytes(src) + ip_bytes(dst) + struct.pack("!BBH", 0, 6,
                                                             len(tcp) + len(payload))
        tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp + payload)) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 0, 0x4000,
                         64, 6, 0, ip_bytes(src), ip_bytes(dst))
        ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
        frame = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + ip + tcp + payload
        sec = int(ts)
        self.f.write(struct.pack("<IIII", sec, int(round((ts - sec) * 1e6)), len(frame),
                                 len(frame)))
        self.f.write(frame)

    def close(self):
        self.f.close()


def record(content: int, body: bytes) -> bytes:
    return struct.pack("!BHH", content, 0x0303, len(body)) + body


def handshake(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + len(body).to_bytes(3, "big") + body


def ext(kind: int, body: bytes) -> bytes:
    return struct.pack("!HH", kind, len(body)) + body


def u16s(values) -> bytes:
    data = b"".join(struct.pack("!H", v) for v in values)
    return struct.pack("!H", len(data)) + data


def client_hello(rng: random.Random, host: str, tls13: bool) -> bytes:
    grease = rng.choice([0x0A0A, 0x1A1A, 0x2A2A, 0x3A3A])
    ciphers = [grease, 0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9,
               0xCCA8, 0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035]
    name = host.encode()
    alpn = b"\x02h2\x08http/1.1"
    exts = [ext(grease, b""),
            ext(0, struct.pack("!HBH", len(name) + 3, 0, len(name)) + name),
            ext(23, b""), ext(65281, b"\x00"),
            ext(10, u16s([grease, 29, 23, 24])), ext(11, b"\x01\x00"), ext(35, b""),
            ext(16, struct.pack("!H", len(alpn)) + alpn), ext(5, b"\x01\x00\x00\x00\x00"),
            ext(13, u16s([0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601])),
            ext(18, b""),
            ext(51, struct.pack("!HHH", 36, 29, 32) + rng.randbytes(32)),
            ext(45, b"\x01\x01"),
            ext(43, b"\x06" + struct.pack("!HHH", grease, 0x0304, 0x0303) if tls13
                else b"\x02\x03\x03"),
            ext(27, b"\x02\x00\x02")]
    body = (b"\x03\x03" + rng.randbytes(32) + b"\x20" + rng.randbytes(32) + u16s(ciphers)
            + b"\x01\x00" + struct.pack("!H", sum(map(len, exts))) + b"".join(exts))
    return record(22, handshake(1, body))


def server_flight(rng: random.Random, session_id: bytes, tls13: bool) -> list[bytes]:
    if tls13:
        exts = ext(43, b"\x03\x04") + ext(51, struct.pack("!HH", 29, 32) + rng.randbytes(32))
        hello = (b"\x03\x03" + rng.randbytes(32) + b"\x20" + session_id + b"\x13\x01\x00"
                 + struct.pack("!H", len(exts)) + exts)
        return [record(22, handshake(2, hello)) + record(20, b"\x01")
                + record(23, rng.randbytes(rng.randint(2000, 4000)))]
    alpn = b"\x02h2"
    exts = ext(65281, b"\x00") + ext(16, struct.pack("!H", len(alpn)) + alpn) + ext(23, b"")
    hello = (b"\x03\x03" + rng.randbytes(32) + b"\x20" + rng.randbytes(32) + b"\xc0\x2f\x00"
             + struct.pack("!H", len(exts)) + exts)
    cert = rng.randbytes(rng.randint(900, 1400))
    certificate = (len(cert) + 3).to_bytes(3, "big") + len(cert).to_bytes(3, "big") + cert
    ske = b"\x03\x00\x17\x41" + rng.randbytes(65) + b"\x04\x01\x01\x00" + rng.randbytes(256)
    return [record(22, handshake(2, hello) + handshake(11, certificate)
                   + handshake(12, ske) + handshake(14, b""))]


def connection(w: Writer, rng: random.Random, n: int, ts: float, records: int) -> float:
    client = CLIENT_NET % (n // 250 % 250, n % 250 + 1)
    server = SERVER_NET % (n % 7 + 1)
    sport, dport = 20000 + n % 40000, (8443 if n % 5 == 4 else 443)
    tls13 = n % 2 == 0
    seq = {0: rng.getrandbits(32), 1: rng.getrandbits(32)}
    ends = {0: (client, sport), 1: (server, dport)}

    def send(side, data=b"", flags=0x18):
        nonlocal ts
        (src, sp), (dst, dp) = ends[side], ends[1 - side]
        if not data:
            ts += 0.0001
            w.packet(ts, src, sp, dst, dp, seq[side], seq[1 - side], flags)
            return
        for i in range(0, len(data), MSS):
            chunk = data[i:i + MSS]
            ts += 0.00005
            w.packet(ts, src, sp, dst, dp, seq[side], seq[1 - side], flags, chunk)
            seq[side] += len(chunk)

    ts += 0.0001
    w.packet(ts, client, sport, server, dport, seq[0], 0, 0x02)
    seq[0] += 1
    ts += 0.0002
    w.packet(ts, server, dport, client, sport, seq[1], seq[0], 0x12)
    seq[1] += 1
    send(0, flags=0x10)
    hello = client_hello(rng, "host%d.example.com" % (n % 97), tls13)
    send(0, hello)
    ts += 0.001
    session_id = hello[5 + 4 + 2 + 32 + 1:5 + 4 + 2 + 32 + 1 + 32]
    for flight in server_flight(rng, session_id, tls13):
        send(1, flight)
    ts += 0.001
    if tls13:
        send(0, record(20, b"\x01") + record(23, rng.randbytes(53)))
    else:
        send(0, record(22, handshake(16, b"\x41" + rng.randbytes(65))) + record(20, b"\x01")
             + record(22, rng.randbytes(40)))
        ticket = struct.pack("!IH", 7200, 174) + rng.randbytes(174)
        send(1, record(22, handshake(4, ticket)) + record(20, b"\x01")
             + record(22, rng.randbytes(40)))
    for _ in range(records):
        ts += 0.0005
        send(0, record(23, rng.randbytes(rng.randint(60, 600))))
        ts += 0.002
        send(1, record(23, rng.randbytes(rng.choice([200, 1400, 5000, 16408]))))
    send(0, record(21, rng.randbytes(26)), flags=0x19)
    seq[0] += 1
    send(1, flags=0x11)
    seq[1] += 1
    send(0, flags=0x10)
    return ts + 0.0003


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--connections", type=int, default=2000)
    p.add_argument("--records", type=int, default=4, help="request/response pairs each")
    p.add_argument("--seed", type=int, default=11)
    args = p.parse_args()
    rng = random.Random(args.seed)
    w = Writer(args.out)
    ts = 1_700_000_000.0
    for n in range(args.connections):
        ts = connection(w, rng, n, ts, args.records)
    w.close()


if __name__ == "__main__":
    main()
