"""Content signatures: what the first payload of one side of a connection
looks like when it speaks a given protocol.

Role in the data flow: configuration for **detection** (flows -> analysers).
An analyser declares `signatures = (Signature(...), ...)`; the flow table
(analyser/flows.pyx) checks them in compiled code on the first payload bytes
of each side of every TCP connection, so only connections with a candidate
analyser wake Python.  Ports are hints: they order the candidates.

A signature is a short byte pattern (at most MAX_PATTERN bytes) at the start
of the payload, compared under a mask: `(byte & mask) == (pattern & mask)`.
That one rule gives exact prefixes, ASCII case-insensitive words (`nocase`),
and wildcard bytes (`?` in a pattern given with `wildcard=True`).
`skip_space` ignores leading CR, LF, tab and space, as Zeek's DPD signatures
for line protocols do (`/^[\\r\\n ]*USER/`).  A payload shorter than the
pattern matches when every byte it has matches: the analyser then decides
(confirmation or violation), so a short first segment never hides a protocol.
"""
from __future__ import annotations

from collections import namedtuple

MAX_PATTERN = 16      # bytes compared per signature (a prefix, not a regex)
MAX_SIGNATURES = 128  # per engine, over all analysers
WHITESPACE = b" \t\r\n"


# Fields: side (ORIG or RESP), pattern (bytes); nocase: ASCII letters match
# either case; skip_space: leading CR, LF, tab, space are skipped; wildcard:
# b"?" in the pattern matches any byte.  (collections.namedtuple rather than
# typing.NamedTuple: start-up does not import typing.)
class Signature(namedtuple("Signature", ("side", "pattern", "nocase", "skip_space", "wildcard"),
                           defaults=(False, False, False))):
    """The first payload of `side` (ORIG or RESP) starts with `pattern`."""
    __slots__ = ()

    def compiled(self) -> tuple[int, bytes, bytes, bool]:
        """(side, value, mask, skip_space) as the compiled matcher takes them."""
        if self.side not in (0, 1):
            raise ValueError("signature side must be ORIG or RESP, not %r" % (self.side,))
        pattern = bytes(self.pattern)
        if not 0 < len(pattern) <= MAX_PATTERN:
            raise ValueError("signature pattern must be 1 to %d bytes, got %r"
                             % (MAX_PATTERN, pattern))
        value = bytearray()
        mask = bytearray()
        for b in pattern:
            if self.wildcard and b == ord("?"):
                value.append(0)
                mask.append(0)
            elif self.nocase and (ord("a") <= b <= ord("z") or ord("A") <= b <= ord("Z")):
                value.append(b & 0xDF)
                mask.append(0xDF)
            else:
                value.append(b)
                mask.append(0xFF)
        return self.side, bytes(value), bytes(mask), bool(self.skip_space)

    def matches(self, data: bytes) -> bool:
        """The same rule as the compiled matcher, for tests and tools."""
        _, value, mask, skip = self.compiled()
        i = 0
        if skip:
            while i < len(data) and data[i] in WHITESPACE:
                i += 1
        n = min(len(value), len(data) - i)
        if n <= 0:
            return False
        return all((data[i + k] & mask[k]) == value[k] for k in range(n))
