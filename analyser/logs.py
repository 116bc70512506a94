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
"""
from __future__ import annotations

import json
import os
import time
from typing import Iterable

from analyser.logformat import TsvRows
from analyser.schemas import CORE_LOGS, Field


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
        """`fields`: the log's schema (default: a core log's, by `path`)."""
        if log_format not in ("tsv", "json"):
            raise ValueError("log format must be tsv or json, not %r" % log_format)
        self.fields = tuple(fields if fields is not None else CORE_LOGS[path])
        self.path = path
        self.log_format = log_format
        self.filename = os.path.join(directory, path + ".log")
        self.rows = 0
        if log_format == "tsv":
            self._out = open(self.filename, "wb")
            self._header()
            self._tsv = TsvRows(self.fields, self._out)
        else:
            self._out = open(self.filename, "w", encoding="utf-8", newline="\n")

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
            self._out.write(json.dumps(obj, separators=(",", ":")))
            self._out.write("\n")
        self.rows += 1

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
                 schemas: dict[str, tuple[Field, ...]] | None = None):
        self.directory = directory
        self.log_format = log_format
        self.schemas = dict(CORE_LOGS if schemas is None else schemas)
        self.writers: dict[str, ZeekLogWriter] = {}

    def open(self, path: str) -> ZeekLogWriter:
        w = self.writers.get(path)
        if w is None:
            fields = self.schemas.get(path)
            if fields is None:
                raise ValueError("no schema for log %r: an analyser declares the logs it "
                                 "writes in its `logs` attribute" % path)
            w = self.writers[path] = ZeekLogWriter(self.directory, path, self.log_format,
                                                   fields)
        return w

    def write(self, path: str, row: dict) -> None:
        self.open(path).write(row)

    def close(self) -> None:
        for w in self.writers.values():
            w.close()
