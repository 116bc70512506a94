"""Zeek-format log writing (analyser/logs.py, analyser/logformat.pyx): each
Zeek type formatted as Zeek writes it, escaping, unset and empty values,
buffering, and JSON lines."""
import json

from analyser.logs import ZeekLogWriter
from analyser.schemas import Field

FIELDS = (Field("t", "time", ""), Field("d", "interval", ""), Field("n", "count", ""),
          Field("i", "int", ""), Field("p", "port", ""), Field("b", "bool", ""),
          Field("s", "string", ""), Field("a", "addr", ""), Field("e", "enum", ""),
          Field("set", "set[string]", ""), Field("vec", "vector[string]", ""))


def tsv_lines(tmp_path, rows, fields=FIELDS):
    w = ZeekLogWriter(str(tmp_path), "x", "tsv", fields)
    for row in rows:
        w.write(row)
    w.close()
    text = (tmp_path / "x.log").read_bytes().decode("utf-8")
    return [l for l in text.splitlines() if not l.startswith("#")], text


def test_each_zeek_type_as_zeek_writes_it(tmp_path):
    rows = [{"t": 1795406241.8632281, "d": 0.5, "n": 2**64 - 1, "i": -42, "p": 2121,
             "b": True, "s": "plain", "a": "2001:db8::1", "e": "tcp",
             "set": ["a", "b,c"], "vec": ("x",)},
            {"t": 12, "d": None, "n": 0, "i": 2**70, "p": 0, "b": False, "s": "",
             "a": None, "e": "-", "set": [], "vec": []}]
    lines, text = tsv_lines(tmp_path, rows)
    assert lines[0].split("\t") == [
        "1795406241.863228", "0.500000", "18446744073709551615", "-42", "2121", "T",
        "plain", "2001:db8::1", "tcp", "a,b,c", "x"]
    assert lines[1].split("\t") == [
        "12.000000", "-", "0", str(2**70), "0", "F", "(empty)", "-", "\\x2d", "(empty)",
        "(empty)"]
    assert text.startswith("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n"
                           "#unset_field\t-\n#path\tx\n#open\t")
    assert "#types\ttime\tinterval\tcount\tint\tport\tbool\tstring\taddr\tenum\t" \
           "set[string]\tvector[string]\n" in text
    assert text.splitlines()[-1].startswith("#close\t")


def test_strings_are_escaped_and_missing_fields_are_unset(tmp_path):
    rows = [{"s": "tab\there\\back\x00nul\x7fdel\r\n", "set": ["-", "", "a\tb"],
             "e": "caf\u00e9 \u2603"}, {}]
    lines, _ = tsv_lines(tmp_path, rows)
    fields = lines[0].split("\t")
    assert fields[6] == "tab\\x09here\\x5cback\\x00nul\\x7fdel\\x0d\\x0a"
    assert fields[8] == "caf\u00e9 \u2603"                  # UTF-8 passes unescaped
    assert fields[9] == "-,,a\\x09b"                        # set elements: escaped only
    assert lines[1] == "\t".join(["-"] * len(FIELDS))


def test_many_rows_go_out_in_order_across_buffer_flushes(tmp_path):
    fields = (Field("n", "count", ""), Field("s", "string", ""))
    rows = [{"n": i, "s": "row %d %s" % (i, "x" * (i % 50))} for i in range(20000)]
    lines, _ = tsv_lines(tmp_path, rows, fields)
    assert lines == ["%d\trow %d %s" % (i, i, "x" * (i % 50)) for i in range(20000)]


def test_a_rows_keys_are_its_fields_whatever_objects_name_them(tmp_path):
    """The writer remembers the key objects it met (rows are made with the
    same constants): keys made afresh, keys that are no field, and more
    distinct keys than it remembers still land in their columns."""
    fields = (Field("a", "string", ""), Field("b.c", "count", ""))
    rows = []
    for i in range(2000):
        row = {"".join(["b", ".", "c"]): i, "x%d" % i: "not a field"}
        row["".join("a")] = "v%d" % i
        rows.append(row)
    rows.append({"b.c": 7, "a": "constant keys"})
    lines, _ = tsv_lines(tmp_path, rows, fields)
    assert lines == ["v%d\t%d" % (i, i) for i in range(2000)] + ["constant keys\t7"]


def test_json_lines_leave_unset_fields_out(tmp_path):
    w = ZeekLogWriter(str(tmp_path), "x", "json", FIELDS)
    w.write({"t": 1.23456789, "n": 3, "s": "a\tb", "set": ("p", "q"), "b": False})
    w.close()
    obj = json.loads((tmp_path / "x.log").read_text())
    assert obj == {"t": 1.234568, "n": 3, "s": "a\tb", "set": ["p", "q"], "b": False}


def test_times_are_formatted_as_printf_formats_them():
    """The TSV writer's own 6-decimal formatter (logformat.format_time) against
    the C library's printf("%.6f"): exact ties (k/128 ends in 5 at the 7th
    decimal: to even), microsecond and nanosecond timestamps, random
    magnitudes, and what it hands to printf (negative, huge, NaN)."""
    import ctypes
    import random
    from analyser.logformat import format_time_text
    libc = ctypes.CDLL(None)
    buf = ctypes.create_string_buffer(64)

    def printf(v):
        libc.snprintf(buf, 32, b"%.6f", ctypes.c_double(v))
        return buf.value

    rng = random.Random(7)
    values = [0.0, 0.5, 0.0000005, 0.0000015, 0.9999995, 1.9999995, 2.0 ** 53 - 1,
              -1.25, -0.0000005, float("inf"), float("nan"), 1e300]
    values += [k / 128 for k in range(512)]
    values += [1.7e9 + rng.randrange(10 ** 9) / 1e9 for _ in range(20000)]
    values += [1.7e9 + rng.randrange(10 ** 6) / 1e6 for _ in range(20000)]
    values += [rng.random() * 10 ** rng.randint(-8, 15) for _ in range(20000)]
    wrong = [(v, format_time_text(v), printf(v)) for v in values
             if format_time_text(v) != printf(v)]
    assert not wrong, wrong[:5]


# Cases whose connections name services (HTTP, TLS, DNS over UDP, SSH inside a
# WebSocket, SMTP with STARTTLS, a Teredo tunnel, QUIC between long IPv6
# addresses): conn.log rows with one or several services.
SERVICE_CASES = ("protocols-http-http-pipelining", "protocols-ssl-ecdhe", "protocols-dns-flip",
                 "protocols-websocket-wstunnel-ssh", "protocols-smtp-starttls", "teredo",
                 "protocols-quic-39264-rand")


def test_conn_rows_written_from_the_flow_table_are_those_written_from_dicts(run_cli, tmp_path):
    """When conn.log (TSV) is the only consumer of connection rows, the rows of
    analysed connections, services included, go from the flow structs straight
    into it; with --rotate every row goes through a dict and the TSV writer.
    The two conn.logs hold the same lines, byte for byte."""
    import pytest
    from conftest import SHARED
    suite = SHARED / "conformance" / "zeek-protocols"
    if not suite.is_dir():
        pytest.skip("../shared/conformance/zeek-protocols is absent")
    traces = [next(p for p in sorted((suite / case).iterdir())
                   if p.suffix in (".pcap", ".pcapng", ".trace"))
              for case in SERVICE_CASES]
    lines = {}
    for name, extra in (("direct", []), ("dicts", ["--rotate", "1GB"])):
        out = tmp_path / name
        p = run_cli("replay", *traces, "--logs", out, "-q", *extra)
        assert p.returncode == 0, p.stderr
        lines[name] = [line for line in (out / "conn.log").read_text().splitlines()
                       if not line.startswith("#")]
    services = [line.split("\t")[7] for line in lines["direct"]]
    assert {"http", "ssl", "dns", "ssh", "smtp", "teredo", "quic"} <= {
        s for field in services for s in field.split(",")}, services
    assert lines["direct"] == lines["dicts"]
