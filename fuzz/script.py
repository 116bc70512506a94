"""A byte encoding of the author's harness scripts (analyser.testing.run),
so that a coverage-guided fuzzer mutates conversations, not just payloads.

Role in the data flow: fuzz input -> **script** -> analyser.testing.run ->
one analyser.  Every byte string decodes to some script (nothing is
rejected), and `encode(script)` gives back bytes that decode to it, so seeds
are written as scripts taken from real conversations.

Format, one item after another:

    tag = byte >> 5, low = byte & 31
    0, 1   data of ORIG (0) or RESP (1); length = low, or (low == 31) the
           next 2 bytes big-endian; then that many bytes (fewer at the end)
    2, 3   Hole(ORIG / RESP): size = low, or (low == 31) the next 4 bytes
           big-endian: holes of up to 4 GiB
    4, 5   End(ORIG / RESP)
    6      Wait(low * 10 seconds) (trace time passes: timers, timeouts)
    7      data of side low & 1 whose length is the next 2 bytes (long chunks)
"""
from __future__ import annotations

import struct

from analyser.testing import End, Hole, Wait

LONG = 31


def decode(data: bytes, datagrams: bool = False) -> list:
    """The script the bytes say.  For a datagram analyser holes and ends
    are left out (the harness does not take them)."""
    script, i, n = [], 0, len(data)
    while i < n:
        tag, low = data[i] >> 5, data[i] & 31
        i += 1
        if tag in (0, 1, 7):
            side = tag if tag != 7 else low & 1
            if tag == 7 or low == LONG:
                length = int.from_bytes(data[i:i + 2], "big")
                i += 2
            else:
                length = low
            script.append((side, data[i:i + length]))
            i += length
        elif tag in (2, 3):
            size = low
            if low == LONG:
                size = int.from_bytes(data[i:i + 4], "big")
                i += 4
            if not datagrams and size:
                script.append(Hole(tag - 2, size))
        elif tag in (4, 5):
            if not datagrams:
                script.append(End(tag - 4))
        else:
            script.append(Wait(low * 10.0))
    return script


def encode(script) -> bytes:
    """Bytes that decode() turns into `script` (data chunks of any length)."""
    out = bytearray()
    for item in script:
        if isinstance(item, Hole):
            if item.size < LONG:
                out.append((2 + item.side) << 5 | item.size)
            else:
                out += bytes([(2 + item.side) << 5 | LONG]) + struct.pack(">I", item.size)
        elif isinstance(item, End):
            out.append((4 + item.side) << 5)
        elif isinstance(item, Wait):
            out.append(6 << 5 | min(31, int(item.seconds // 10)))
        else:
            side, payload = item
            for start in range(0, max(len(payload), 1), 0xFFFF):
                chunk = payload[start:start + 0xFFFF]
                if len(chunk) < LONG:
                    out += bytes([side << 5 | len(chunk)]) + chunk
                else:
                    out += bytes([side << 5 | LONG]) + struct.pack(">H", len(chunk)) + chunk
    return bytes(out)
