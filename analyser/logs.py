"""Zeek-format log writers (TSV and JSON lines), driven by analyser/schemas.py.

Role in the data flow: sinks.  A writer takes rows as dicts keyed by Zeek
field names (None = unset) and writes them the way Zeek does, so zeek-cut,
zeek_compare and anything else that reads Zeek logs reads ours:

- TSV: the `#separator`, `#set_separator`, `#empty_field`, `#unset_field`,
  `#path`, `#open`, `#fields`, `#types` header, one tab-separated row per
  record, `#close` at the end; times and intervals with 6 decimals, booleans
  T/F, unset `-`, empty sets `(empty)`, and non-printable bytes, tabs and
  backslashes escaped as \\xNN.
- JSON: one object per line with the same field names, unset fields left
  out, times as epoch floats, as Zeek's `LogAscii::use_json` writes them.
"""
from __future__ import annotations

import json
import os
import time
from typing import Iterable, TextIO

from analyser.schemas import LOGS, Field


def _escape(s: str) -> str:
    out = []
    for ch in s:
        o = ord(ch)
        if ch == "\\" or ch == "\t" or o < 0x20 or o == 0x7f:
            out.append("\\x%02x" % o)
        else:
            out.append(ch)
    return "".join(out)


def _tsv_value(field: Field, value) -> str:
    if value is None:
        return "-"
    t = field.zeek_type
    if t in ("time", "interval"):
        return "%.6f" % value
    if t == "bool":
        return "T" if value else "F"
    if t.startswith("set[") or t.startswith("vector["):
        if not value:
            return "(empty)"
        return ",".join(_escape(str(v)) for v in value)
    if t in ("count", "port", "int"):
        return str(int(value))
    s = _escape(str(value))
    if s == "" :
        return "(empty)"
    if s == "-":
        return "\\x2d"
    return s


def _json_value(field: Field, value):
    t = field.zeek_type
    if t.startswith("set[") or t.startswith("vector["):
        return list(value)
    if t in ("time", "interval"):
        return round(float(value), 6)
    return value


class ZeekLogWriter:
    """Writes one Zeek log (conn, ftp, ...) to DIR/<path>.log."""

    def __init__(self, directory: str, path: str, log_format: str = "tsv",
                 fields: Iterable[Field] | None = None):
        if log_format not in ("tsv", "json"):
            raise ValueError("log format must be tsv or json, not %r" % log_format)
        self.fields = tuple(fields if fields is not None else LOGS[path])
        self.path = path
        self.log_format = log_format
        self.filename = os.path.join(directory, path + ".log")
        self.rows = 0
        self._out: TextIO = open(self.filename, "w", encoding="utf-8", newline="\n")
        if log_format == "tsv":
            self._header()

    def _header(self):
        w = self._out.write
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
            self._out.write("\t".join(_tsv_value(f, row.get(f.name)) for f in self.fields))
            self._out.write("\n")
        else:
            obj = {f.name: _json_value(f, row[f.name]) for f in self.fields
                   if row.get(f.name) is not None}
            self._out.write(json.dumps(obj, separators=(",", ":")))
            self._out.write("\n")
        self.rows += 1

    def close(self) -> None:
        if self._out.closed:
            return
        if self.log_format == "tsv":
            self._out.write("#close\t%s\n" % time.strftime("%Y-%m-%d-%H-%M-%S"))
        self._out.close()
