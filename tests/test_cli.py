"""The `analyser` command as a user meets it: help, version, logs in both
formats, filters, and every kind of bad input (one clear line, an exit status,
no traceback, and whatever could be read is reported)."""
import json
import struct

import pytest

from conftest import REPO, read_zeek_log
from packets import ACK, TcpPeer, close, handshake, timed, udp_packet, write_pcap

SAMPLE = REPO / "traces" / "http-loopback.pcap"


def no_traceback(proc):
    assert "Traceback" not in proc.stderr, proc.stderr


@pytest.fixture
def small_trace(tmp_path):
    c, s = TcpPeer("10.1.1.1", 40000, 1), TcpPeer("10.1.1.2", 21, 9)
    c.connect(s)
    frames = handshake(c, s) + [c.send(ACK, b"USER anonymous\r\n"), s.send(ACK)] + close(c, s)
    frames.append(udp_packet("10.1.1.1", "10.1.1.3", 5353, 53, b"q" * 30))
    return write_pcap(tmp_path / "small.pcap", timed(frames))


def test_version_and_help(run_cli):
    p = run_cli("--version")
    assert p.returncode == 0 and p.stdout.startswith("analyser ")
    p = run_cli("replay", "--help")
    assert p.returncode == 0
    for option in ("--logs", "--log-format", "--bpf", "--checksums", "--timeout", "--flow-memory"):
        assert option in p.stdout
    p = run_cli()
    assert p.returncode == 2 and "replay" in p.stderr


def test_tsv_log_has_zeek_headers_and_rows(run_cli, small_trace, tmp_path):
    out = tmp_path / "logs"
    p = run_cli("replay", small_trace, "--logs", out)
    assert p.returncode == 0, p.stderr
    text = (out / "conn.log").read_text()
    lines = text.splitlines()
    assert lines[0] == "#separator \\x09"
    assert lines[4] == "#path\tconn"
    assert lines[6].split("\t")[1:4] == ["ts", "uid", "id.orig_h"]
    assert lines[7].startswith("#types\ttime\tstring\taddr\tport")
    assert lines[-1].startswith("#close\t")
    rows = {r["proto"]: r for r in read_zeek_log(out / "conn.log")}
    assert rows["tcp"]["conn_state"] == "SF" and rows["tcp"]["orig_bytes"] == "16"
    assert rows["udp"]["conn_state"] == "S0" and rows["udp"]["duration"] == "-"
    # The summary says what was read.
    assert "packets   9" in p.stderr and "tcp 1, udp 1" in p.stderr


def test_json_log_uses_zeek_field_names(run_cli, small_trace, tmp_path):
    out = tmp_path / "logs"
    p = run_cli("replay", small_trace, "--logs", out, "--log-format", "json", "-q")
    assert p.returncode == 0 and p.stderr == ""
    rows = [json.loads(line) for line in (out / "conn.log").read_text().splitlines()]
    tcp = next(r for r in rows if r["proto"] == "tcp")
    assert tcp["id.resp_p"] == 21 and tcp["conn_state"] == "SF"
    assert isinstance(tcp["ts"], float) and tcp["local_orig"] is True
    udp = next(r for r in rows if r["proto"] == "udp")
    assert "duration" not in udp        # unset fields are left out, as Zeek does


def test_bpf_filter(run_cli, small_trace, tmp_path):
    out = tmp_path / "logs"
    p = run_cli("replay", small_trace, "--logs", out, "--bpf", "udp")
    assert p.returncode == 0
    assert [r["proto"] for r in read_zeek_log(out / "conn.log")] == ["udp"]
    assert "8 filtered out by --bpf" in p.stderr


def test_bad_filter_is_a_usage_error(run_cli, small_trace, tmp_path):
    p = run_cli("replay", small_trace, "--logs", tmp_path, "--bpf", "tcp port")
    assert p.returncode == 2
    assert p.stderr.startswith("analyser: ") and "filter" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    no_traceback(p)


def test_bad_timeout_option(run_cli, small_trace, tmp_path):
    p = run_cli("replay", small_trace, "--logs", tmp_path, "--timeout", "forever=3")
    assert p.returncode == 2 and "unknown timeout 'forever'" in p.stderr
    no_traceback(p)


@pytest.mark.parametrize("name,content,message", [
    ("empty.pcap", b"", "is empty"),
    ("random.pcap", bytes(range(256)) * 20, "is not a pcap or pcapng file"),
    ("short.pcap", struct.pack("<IHH", 0xa1b2c3d4, 2, 4), "cut short"),
])
def test_unreadable_files(run_cli, tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    p = run_cli("replay", path, "--logs", tmp_path / "out")
    assert p.returncode == 1
    assert p.stderr.startswith("analyser: ") and message in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    no_traceback(p)
    assert not (tmp_path / "out" / "conn.log").exists()


def test_missing_file_and_directory(run_cli, tmp_path):
    p = run_cli("replay", tmp_path / "nope.pcap", "--logs", tmp_path)
    assert p.returncode == 1 and "No such file or directory" in p.stderr
    p = run_cli("replay", tmp_path, "--logs", tmp_path)
    assert p.returncode == 1 and "Is a directory" in p.stderr
    no_traceback(p)


def test_truncated_trace_warns_and_keeps_what_was_read(run_cli, small_trace, tmp_path):
    data = small_trace.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:-20])           # the last record loses its tail
    p = run_cli("replay", cut, "--logs", tmp_path / "out")
    assert p.returncode == 0, p.stderr
    assert "truncated" in p.stderr and "8 records read before it" in p.stderr
    assert "packets   8" in p.stderr
    rows = read_zeek_log(tmp_path / "out" / "conn.log")
    assert [r["proto"] for r in rows] == ["tcp"]
    no_traceback(p)


def test_snaplen_cut_packets_still_count_their_full_size(run_cli, tmp_path):
    c, s = TcpPeer("10.1.1.1", 40000, 1), TcpPeer("10.1.1.2", 8080, 9)
    c.connect(s)
    frames = handshake(c, s) + [s.send(ACK, b"p" * 1400), c.send(ACK)] + close(c, s)
    cut = [(t, f[:68], len(f)) for t, f in timed(frames)]      # snaplen 68
    path = write_pcap(tmp_path / "snap.pcap", cut, snaplen=68)
    p = run_cli("replay", path, "--logs", tmp_path / "out")
    assert p.returncode == 0, p.stderr
    r = read_zeek_log(tmp_path / "out" / "conn.log")[0]
    assert r["resp_bytes"] == "1400" and r["resp_ip_bytes"] == str(3 * 40 + 1400)
    # The peer acknowledged bytes the capture did not keep: Zeek calls them missed.
    assert r["missed_bytes"] == "1400"


def test_malformed_headers_are_counted_in_the_summary(run_cli, tmp_path):
    good = udp_packet("10.0.0.1", "10.0.0.2", 1000, 2000, b"hello")
    bad_version = good[:14] + b"\x75" + good[15:]
    short_ip = good[:14 + 10]
    frames = [(1.0, good), (1.1, bad_version), (1.2, short_ip), (1.3, b"\x00" * 5)]
    path = write_pcap(tmp_path / "bad.pcap", frames)
    p = run_cli("replay", path, "--logs", tmp_path / "out")
    assert p.returncode == 0
    assert "malformed 3:" in p.stderr
    for reason in ("bad_ip_version 1", "truncated_ip_header 1", "truncated_link_header 1"):
        assert reason in p.stderr
    assert len(read_zeek_log(tmp_path / "out" / "conn.log")) == 1


def test_several_traces_are_one_stream(run_cli, tmp_path):
    c, s = TcpPeer("10.1.1.1", 40000, 1), TcpPeer("10.1.1.2", 8080, 9)
    c.connect(s)
    frames = timed(handshake(c, s) + [c.send(ACK, b"a" * 10)] + close(c, s))
    first = write_pcap(tmp_path / "a.pcap", frames[:4])
    second = write_pcap(tmp_path / "b.pcap", frames[4:])
    p = run_cli("replay", first, second, "--logs", tmp_path / "out")
    assert p.returncode == 0
    rows = read_zeek_log(tmp_path / "out" / "conn.log")
    assert len(rows) == 1 and rows[0]["conn_state"] == "SF" and rows[0]["orig_bytes"] == "10"


def test_a_trace_from_the_standard_input(tmp_path):
    """`-` reads the standard input (a pipe here), as tcpdump -r - does: the
    same rows as the file.  Once only; not with --workers, whose processes
    would each need the whole input."""
    import subprocess
    import sys
    trace = REPO / "traces" / "ftp-loopback.pcap"

    def run(*args):
        return subprocess.run([sys.executable, "-m", "analyser", "replay", *map(str, args)],
                              cwd=REPO, input=trace.read_bytes(), capture_output=True,
                              timeout=120)
    p = run("-", "--logs", tmp_path / "piped", "-q")
    assert p.returncode == 0, p.stderr
    assert run(trace, "--logs", tmp_path / "file", "-q").returncode == 0
    for name in ("conn.log", "ftp.log", "transfers.log"):
        assert read_zeek_log(tmp_path / "piped" / name) == read_zeek_log(tmp_path / "file" / name)
    assert read_zeek_log(tmp_path / "piped" / "conn.log")
    p = run("-", "-", "--logs", tmp_path / "twice")
    assert p.returncode == 2 and b"once" in p.stderr
    p = run("-", "--workers", "2", "--logs", tmp_path / "workers")
    assert p.returncode == 2 and b"--workers" in p.stderr and b"Traceback" not in p.stderr


def test_logs_directory_that_cannot_be_created(run_cli, small_trace, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    p = run_cli("replay", small_trace, "--logs", blocker / "sub")
    assert p.returncode == 1 and p.stderr.startswith("analyser: ")
    no_traceback(p)


def test_corruption_in_the_middle_reports_what_came_before(run_cli, small_trace, tmp_path):
    data = bytearray(small_trace.read_bytes())
    # Find the 7th record header and give it an impossible captured length.
    offset, n = 24, 0
    while n < 6:
        caplen = struct.unpack_from("<I", data, offset + 8)[0]
        offset += 16 + caplen
        n += 1
    struct.pack_into("<I", data, offset + 8, 0x7fffffff)
    bad = tmp_path / "corrupt.pcap"
    bad.write_bytes(bytes(data))
    p = run_cli("replay", bad, "--logs", tmp_path / "out")
    assert p.returncode == 1 and p.stderr.startswith("analyser: ")
    no_traceback(p)
    rows = read_zeek_log(tmp_path / "out" / "conn.log")
    assert len(rows) == 1 and rows[0]["proto"] == "tcp"       # the 6 packets before it
    assert int(rows[0]["orig_pkts"]) + int(rows[0]["resp_pkts"]) == 6


def test_a_failing_callback_is_counted_and_reported_not_only_printed(run_cli, small_trace,
                                                                      tmp_path):
    hook = tmp_path / "failing_hook.py"
    hook.write_text("def monitor(m):\n"
                    "    def boom(ev):\n"
                    "        raise KeyError('no such thing')\n"
                    "    m.on('conn_start', boom)\n")
    events = tmp_path / "events.json"
    p = run_cli("replay", small_trace, "--logs", tmp_path / "logs", "--load", hook,
                "--events", events)
    assert p.returncode == 0, p.stderr
    no_traceback(p)
    # Two connections started, each callback failed: counted in the summary...
    assert "errors    2 exceptions caught in the engine" in p.stderr
    # ... and each one is an event with where it happened and what it was.
    errors = [json.loads(l) for l in events.read_text().splitlines()
              if json.loads(l)["event"] == "engine_error"]
    assert [(e["where"], e["error"]) for e in errors] == [
        ("in conn_start callback boom", "KeyError: 'no such thing'")] * 2


def test_no_analyser_all_imports_no_protocol_and_still_checks_names(tmp_path):
    """`--no-analyser all` alone is connection records: no built-in protocol
    module is imported (they were most of a start-up); a name given besides
    it, or an --analyser, still goes through the modules and is checked."""
    import subprocess
    import sys
    probe = (
        "import sys; from analyser import registry\n"
        "chosen, hooks = registry.select(disable=['all'])\n"
        "assert chosen == [] and hooks == [], chosen\n"
        "print(sorted(m for m in sys.modules if m.startswith('protocols.')))\n"
        "chosen, _ = registry.select(enable=['ftp'], disable=['all'])\n"
        "print([cls.name for cls, _ in chosen])\n"
        "try:\n"
        "    registry.select(disable=['all', 'nosuch'])\n"
        "except registry.AnalyserConfigError as exc:\n"
        "    print(exc)\n")
    p = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    imported, enabled, error = p.stdout.splitlines()
    assert imported == "[]"
    assert enabled == "['ftp']"
    assert error.startswith("unknown analyser 'nosuch'")
    # And the run gives connection records, no service found.
    out = tmp_path / "logs"
    p = subprocess.run([sys.executable, "-m", "analyser", "replay", str(SAMPLE), "--no-analyser",
                        "all", "--logs", str(out), "-q"], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    rows = read_zeek_log(out / "conn.log")
    assert rows and all(row["service"] == "-" for row in rows)


# Modules a connection-records run has no use for, each of which cost every
# start-up a millisecond or more when something imported it (greenlet: the
# analysers' runtime, made only when analysers run).
STARTUP_LEFT_OUT = ("typing", "json", "threading", "pkgutil", "dataclasses", "inspect",
                    "shutil", "greenlet")


# ... and those the built-in analysers import only when a connection needs
# them (hashlib and hmac load OpenSSL: TLS fingerprints, SSH host keys, QUIC keys).
ANALYSERS_LEFT_OUT = ("typing", "dataclasses", "inspect", "hashlib", "hmac", "json")


@pytest.mark.parametrize("options, left_out", [
    (["--no-analyser", "all"], STARTUP_LEFT_OUT),
    ([], ANALYSERS_LEFT_OUT),
], ids=["records", "defaults"])
def test_a_run_imports_none_of_the_modules_start_up_leaves_out(tmp_path, options, left_out):
    """Start-up is most of a short run: a replay of an HTTP trace imports none
    of the modules left out, and still writes its logs.  (JSON logs and
    --events import json when asked; the other tests cover them.)"""
    import subprocess
    import sys
    out = tmp_path / "logs"
    probe = (
        "import sys\n"
        "from analyser.cli import main\n"
        "status = main(['replay', %r, '--logs', %r, '-q'] + %r)\n"
        "print(status)\n"
        "print(sorted(m for m in %r if m in sys.modules))\n" % (str(SAMPLE), str(out),
                                                              options, left_out))
    p = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    status, imported = p.stdout.splitlines()
    assert status == "0"
    assert imported == "[]"
    assert read_zeek_log(out / "conn.log")
    if not options:
        assert read_zeek_log(out / "http.log")
