"""Zeek-format log writers (TSV and JSON lines), driven by declared schemas
(analyser/schemas.py for core logs, `Analyser.logs` for protocol logs).

Role in the data flow: sinks.  A writer takes rows as dicts keyed by Zeek
field names (None = unset) and writes them the way Zeek does, so zeek-cut,
zeek_compare and anything else that reads Zeek logs reads ours:

- TSV: the `#separator`, `#set_separator`, `#empty_field`, `#unset_field`,
  `#path`, `#open`, `#fields`, `#types` header, one tab-separated row per
  record (formatted in compiled code: analyser/logformat.pyx), `#close` at
  the end; times and intervals with 6 decimals, booleans T/F, unset `-`,
  empty sets `(empty)`, and non-printable bytes, tabs and backslashes
  escaped as \\xNN.
- JSON: one object per line with the same field names, unset fields left
  out, times as epoch floats, as Zeek's `LogAscii::use_json` writes them.

Rotation (`--rotate 1h` or `--rotate 100MB`): when the interval (in trace
time, on boundaries that are multiples of it, as Zeek rotates) has passed,
or a file has grown past the size, the file is completed (`#close`) and
renamed in one step to `<path>.<opened>_<closed>.log` (UTC trace times), and
a new `<path>.log` starts with its header: a reader sees only whole files.
"""
from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable

from analyser.logformat import TsvRows
from analyser.schemas import CORE_LOGS, Field


def _json_value(field: Field, value):
    t = field.zeek_type
    if t.startswith("set[") or t.startswith("vector["):
        return list(value)
    if t in ("time", "interval"):
        return round(float(value), 6)
    return value


def parse_rotation(spec: str) -> tuple[str, float]:
    """'1h', '30m', '90s' -> ("interval", seconds); '100MB', '1GB', '500KB'
    -> ("size", bytes)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*", spec or "")
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    sizes = {"kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30}
    if m:
        value, unit = float(m.group(1)), m.group(2).lower()
        if unit in units and value > 0:
            return "interval", value * units[unit]
        if unit in sizes and value > 0:
            return "size", value * sizes[unit]
    raise ValueError("bad rotation %r: an interval (90s, 30m, 1h, 1d) or a size "
                     "(500KB, 100MB, 1GB)" % spec)


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime(t))


class ZeekLogWriter:
    """Writes one Zeek log (conn, ftp, ...) to DIR/<path>.log."""

    def __init__(self, directory: str, path: str, log_format: str = "tsv",
                 fields: Iterable[Field] | None = None, opened_at: float = 0.0):
        """`fields`: the log's schema (default: a core log's, by `path`);
        `opened_at`: the trace time it starts at (rotated files are named
        by it)."""
        if log_format not in ("tsv", "json"):
            raise ValueError("log format must be tsv or json, not %r" % log_format)
        self.fields = tuple(fields if fields is not None else CORE_LOGS[path])
        self.path = path
        self.directory = directory
        self.log_format = log_format
        if log_format == "json":
            import json           # only for JSON logs: 1 ms of start-up otherwise
            self._json = json.JSONEncoder(separators=(",", ":")).encode
        self.filename = os.path.join(directory, path + ".log")
        self.rotated: list[str] = []
        self._open(opened_at)

    def _open(self, opened_at: float) -> None:
        self.opened_at = opened_at
        if self.log_format == "tsv":
            self._out = open(self.filename, "wb")
            self._header()
            if getattr(self, "_tsv", None) is None:
                self._tsv = TsvRows(self.fields, self._out)
            else:
                self._tsv.retarget(self._out)       # the same buffer, the new file
            self._rows_before = self._tsv.rows      # (TsvRows counts every row it wrote)
        else:
            self._out = open(self.filename, "w", encoding="utf-8", newline="\n")
            self._json_rows = 0

    @property
    def rows(self) -> int:
        """Rows written to the current file."""
        if self.log_format == "tsv":
            return self._tsv.rows - self._rows_before
        return self._json_rows

    def row_writer(self):
        """What writes one row, as write() does: for TSV the compiled writer
        itself (no call through this class)."""
        return self._tsv.write if self.log_format == "tsv" else self.write

    def _header(self):
        def w(text: str) -> None:
            self._out.write(text.encode("utf-8"))
        w("#separator \\x09\n")
        w("#set_separator\t,\n")
        w("#empty_field\t(empty)\n")
        w("#unset_field\t-\n")
        w("#path\t%s\n" % self.path)
        w("#open\t%s\n" % time.strftime("%Y-%m-%d-%H-%M-%S"))
        w("#fields\t%s\n" % "\t".join(f.name for f in self.fields))
        w("#types\t%s\n" % "\t".join(f.zeek_type for f in self.fields))

    def write(self, row: dict) -> None:
        if self.log_format == "tsv":
            self._tsv.write(row)
        else:
            obj = {f.name: _json_value(f, row[f.name]) for f in self.fields
                   if row.get(f.name) is not None}
            self._out.write(self._json(obj))
            self._out.write("\n")
            self._json_rows += 1

    def size(self) -> int:
        """Bytes of the file so far, buffered rows included."""
        return self._out.tell() + (self._tsv.pending if self.log_format == "tsv" else 0)

    def rotate(self, now: float) -> str:
        """Complete this file, rename it in one step, start a new one."""
        self.close()
        base = os.path.join(self.directory, "%s.%s_%s" % (self.path, _stamp(self.opened_at),
                                                        _stamp(now)))
        target, n = base + ".log", 1
        while os.path.exists(target):
            n += 1
            target = "%s-%d.log" % (base, n)
        os.rename(self.filename, target)
        self.rotated.append(target)
        self._open(now)
        return target

    def close(self) -> None:
        if self._out.closed:
            return
        if self.log_format == "tsv":
            self._tsv.flush()
            self._out.write(("#close\t%s\n" % time.strftime("%Y-%m-%d-%H-%M-%S")).encode())
        self._out.close()


class LogSet:
    """The logs of one run: conn.log at once, the others (ftp, transfers ...)
    when their first row comes, as Zeek does.  `schemas` maps each log a run
    may write to its fields (analyser.schemas.schemas_of)."""

    def __init__(self, directory: str, log_format: str = "tsv",
                 schemas: dict[str, tuple[Field, ...]] | None = None,
                 rotate: tuple[str, float] | None = None,
                 clock: Callable[[], float] = lambda: 0.0):
        """`rotate`: parse_rotation()'s answer, or None; `clock`: trace time."""
        self.directory = directory
        self.log_format = log_format
        self.schemas = dict(CORE_LOGS if schemas is None else schemas)
        self.writers: dict[str, ZeekLogWriter] = {}
        self.clock = clock
        kind, amount = rotate if rotate else (None, 0)
        self.rotate_interval = amount if kind == "interval" else 0.0
        self.rotate_bytes = int(amount) if kind == "size" else 0
        self.next_rotation: float | None = None

    def open(self, path: str) -> ZeekLogWriter:
        w = self.writers.get(path)
        if w is None:
            fields = self.schemas.get(path)
            if fields is None:
                raise ValueError("no schema for log %r: an analyser declares the logs it "
                                 "writes in its `logs` attribute" % path)
            w = self.writers[path] = ZeekLogWriter(self.directory, path, self.log_format,
                                                   fields, self.clock())
        return w

    def write(self, path: str, row: dict) -> None:
        if self.rotate_interval:
            self.rotate_due(self.clock())
        w = self.open(path)
        if not w.opened_at:
            w.opened_at = self.clock()      # opened before the first packet
        w.write(row)
        if self.rotate_bytes and w.size() >= self.rotate_bytes:
            w.rotate(self.clock())

    def rotate_due(self, now: float) -> None:
        """Rotate every log when trace time passes the next interval boundary."""
        if self.next_rotation is None:
            self.next_rotation = (now // self.rotate_interval + 1) * self.rotate_interval
        if now >= self.next_rotation:
            for w in self.writers.values():
                if w.rows or w.path == "conn":
                    w.rotate(now)
            self.next_rotation = (now // self.rotate_interval + 1) * self.rotate_interval

    def rotated(self) -> list[str]:
        return [f for w in self.writers.values() for f in w.rotated]

    def close(self) -> None:
        for w in self.writers.values():
            w.close()
