"""Prefix-preserving anonymisation of IP addresses in every output.

Role in the data flow: sinks.  With `--anonymize KEYFILE`, every log row,
event and Redis record passes through `Anonymizer` before it is written:
addresses are replaced by others under a keyed, prefix-preserving mapping,
so two addresses that share a /24 (or any prefix) still share one, the same
address maps to the same address in every output and every run with the
same key, and nothing maps back without the key.

The mapping is Crypto-PAn's construction (Xu, Fan, Ammar and Moon, "Prefix-
preserving IP address anonymization", ICNP 2002): bit i of the output is
bit i of the input XOR a pseudo-random bit computed from the key and the
i bits before it.  Crypto-PAn takes that bit from AES; here it is the first
bit of HMAC-SHA256 (Python's standard library), a pseudo-random function as
the construction requires.

`--pcap-out` files are rewritten at the end of the run (`anonymize_pcap`).
Text is scrubbed too: any IPv4 or IPv6 address inside a string (an FTP URL
`ftp://10.1.0.2/file`, a reply text) and the comma form FTP uses for
PORT/PASV (`10,1,0,2,23,113`) are mapped the same way, so no original
address is left in any field.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re

MIN_KEY_BYTES = 32
CACHE_ADDRESSES = 1 << 20       # addresses remembered (then the cache starts afresh)

QUAD = r"(?:\d{1,3}\.){3}\d{1,3}"
IPV4 = r"(?<![\d.])" + QUAD + r"(?![\d.])"
IPV6 = r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:" + QUAD + r"|[0-9A-Fa-f]{0,4})(?![\w:.])"
COMMA_FORM = r"(?<![\d,])(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3})(?=,\d{1,3},\d{1,3}(?![\d,]))"
TEXT = re.compile("(%s)|(%s)|%s" % (IPV6, IPV4, COMMA_FORM))


class Anonymizer:
    """Maps addresses (and the addresses inside text) under one key."""

    def __init__(self, key: bytes):
        if len(key) < MIN_KEY_BYTES:
            raise ValueError("an anonymisation key needs at least %d bytes, this one has %d"
                             % (MIN_KEY_BYTES, len(key)))
        self.key = key
        self.cache: dict[str, str] = {}

    @classmethod
    def from_file(cls, path: str) -> "Anonymizer":
        try:
            with open(path, "rb") as f:
                key = f.read()
        except OSError as exc:
            raise ValueError("cannot read the anonymisation key %s: %s"
                             % (path, exc.strerror or exc)) from None
        return cls(key.strip())

    def _bits(self, value: int, width: int) -> int:
        """Crypto-PAn's loop with HMAC-SHA256 as the pseudo-random function."""
        out = 0
        for i in range(width):
            prefix = value >> (width - i) if i else 0
            digest = hmac.new(self.key, b"%d/%d/%d" % (width, i, prefix),
                              hashlib.sha256).digest()
            flip = digest[0] >> 7
            bit = (value >> (width - 1 - i)) & 1
            out = (out << 1) | (bit ^ flip)
        return out

    def address(self, text: str) -> str:
        """One address, as text; anything that is not an address comes back."""
        found = self.cache.get(text)
        if found is not None:
            return found
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            return text
        width = 32 if addr.version == 4 else 128
        mapped = str(ipaddress.ip_address(self._bits(int(addr), width)))
        if len(self.cache) >= CACHE_ADDRESSES:
            self.cache.clear()
        self.cache[text] = mapped
        return mapped

    def text(self, value: str) -> str:
        """Every address inside a string replaced."""
        if not any(c in value for c in ".:,"):
            return value

        def replace(m: re.Match) -> str:
            if m.group(1) or m.group(2):
                return self.address(m.group(0))
            quad = ".".join(m.group(i) for i in range(3, 7))
            mapped = self.address(quad)
            return mapped.replace(".", ",") if mapped != quad else m.group(0)
        return TEXT.sub(replace, value)

    def value(self, value):
        """A log or event value: strings scrubbed, containers walked."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, (list, tuple)):
            return type(value)(self.value(v) for v in value)
        if isinstance(value, (set, frozenset)):
            return {self.value(v) for v in value}
        if isinstance(value, dict):
            return {self.text(k) if isinstance(k, str) else k: self.value(v)
                    for k, v in value.items()}
        return value

    def record(self, record: dict) -> dict:
        return {k: self.value(v) for k, v in record.items()}


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _adjusted(checksum: int, old: bytes, new: bytes) -> int:
    """A ones' complement checksum after `old` bytes became `new` (RFC 1624)."""
    total = ~checksum & 0xFFFF
    for i in range(0, len(old), 2):
        total += (~int.from_bytes(old[i:i + 2], "big")) & 0xFFFF
        total += int.from_bytes(new[i:i + 2], "big")
    return ~_fold(total) & 0xFFFF


def anonymize_pcap(path: str, anonymizer: Anonymizer) -> tuple[int, int]:
    """Rewrite a pcap file's IP addresses in place (Ethernet, any VLAN tags),
    fixing the IPv4 header checksum and the TCP/UDP checksums by their
    difference (right also when payloads were cut).  A packet that cannot be
    rewritten is left out, never written with its original addresses.
    Returns (packets kept, packets left out)."""
    import os
    import struct

    import dpkt

    kept = dropped = 0
    tmp = path + ".anon"
    with open(path, "rb") as f, open(tmp, "wb") as out:
        reader = dpkt.pcap.Reader(f)
        writer = dpkt.pcap.Writer(out, snaplen=262144, linktype=reader.datalink())
        for ts, buf in reader:
            frame = _rewrite(buf, anonymizer, reader.datalink(), struct)
            if frame is None:
                dropped += 1
                continue
            writer.writepkt(frame, ts)
            kept += 1
    os.replace(tmp, path)
    return kept, dropped


def _rewrite(buf: bytes, anonymizer: Anonymizer, linktype: int, struct) -> bytes | None:
    if linktype != 1 or len(buf) < 14:
        return None
    frame = bytearray(buf)
    off = 12
    ethertype = struct.unpack_from("!H", frame, off)[0]
    while ethertype in (0x8100, 0x88A8) and len(frame) >= off + 6:
        off += 4
        ethertype = struct.unpack_from("!H", frame, off)[0]
    ip = off + 2
    if ethertype == 0x0800 and len(frame) >= ip + 20:
        hl = (frame[ip] & 0x0F) * 4
        proto, width, src = frame[ip + 9], 4, ip + 12
        l4 = ip + hl
        frame[ip + 10:ip + 12] = b"\0\0"
    elif ethertype == 0x86DD and len(frame) >= ip + 40:
        proto, width, src, l4 = frame[ip + 6], 16, ip + 8, ip + 40
    else:
        return None
    import ipaddress
    old = bytes(frame[src:src + 2 * width])
    new = b"".join(ipaddress.ip_address(anonymizer.address(str(ipaddress.ip_address(
        old[i:i + width])))).packed for i in (0, width))
    frame[src:src + 2 * width] = new
    if width == 4:
        header = bytes(frame[ip:l4])
        total = sum(struct.unpack("!%dH" % (len(header) // 2), header))
        frame[ip + 10:ip + 12] = struct.pack("!H", ~_fold(total) & 0xFFFF)
    where = {6: 16, 17: 6}.get(proto)               # the TCP / UDP checksum
    if where is not None and len(frame) >= l4 + where + 2:
        old_sum = struct.unpack_from("!H", frame, l4 + where)[0]
        if not (proto == 17 and old_sum == 0):      # UDP without a checksum stays so
            struct.pack_into("!H", frame, l4 + where, _adjusted(old_sum, old, new))
    return bytes(frame)
