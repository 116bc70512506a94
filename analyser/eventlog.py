"""The events sink: application and built-in events as JSON lines.

Role in the data flow: sinks.  Every record is one JSON object per line with
at least `ts` (trace time, epoch seconds), `event` (its kind) and, for
events about a connection, `uid` and the 5-tuple (`id.orig_h`, `id.orig_p`,
`id.resp_h`, `id.resp_p`, `proto`).  Bytes values are written as text when
they decode as UTF-8, else as hex.
"""
from __future__ import annotations

import json
import os
import sys


def _default(value):
    if isinstance(value, (bytes, bytearray)):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.hex()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


class EventWriter:
    """Writes events to a file, or to stdout for '-'."""

    def __init__(self, target: str):
        self.target = target
        if target != "-" and os.path.dirname(target):
            os.makedirs(os.path.dirname(target), exist_ok=True)
        self._out = sys.stdout if target == "-" else open(target, "w", encoding="utf-8")
        self.count = 0

    def write(self, record: dict) -> None:
        self._out.write(json.dumps(record, default=_default, separators=(",", ":")))
        self._out.write("\n")
        self.count += 1

    def close(self) -> None:
        if self._out is not sys.stdout:
            self._out.close()
        else:
            self._out.flush()
