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
