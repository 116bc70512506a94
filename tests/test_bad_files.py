"""Bad capture files through the `analyser` command, beyond those of
test_cli.py and test_pcapfile.py: pcapng with unknown and oversized blocks,
absurd lengths in headers, garbage written over the middle of a real trace,
wrong magics, a file that grows while it is read, and the same with
--workers.  Every time: one clear line, exit status 0 (a warning) or 1, no
traceback, and what could be read is in the logs."""
import random
import struct
import subprocess
import sys
import threading
import time

import pytest

from conftest import REPO, read_zeek_log
from packets import ACK, TcpPeer, close, handshake, timed, write_pcap
from test_pcapfile import (block, enhanced_packet, interface_description, pcap_bytes,
                           section_header)

FTP_TRACE = REPO / "traces" / "ftp-loopback.pcap"
OVERSIZED = 20 << 20            # above the reader's 16 MiB block buffer


def no_traceback(proc):
    assert "Traceback" not in proc.stderr, proc.stderr


def one_error_line(proc):
    lines = [line for line in proc.stderr.splitlines() if line.startswith("analyser: ")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def conversation(port=8080):
    c, s = TcpPeer("10.1.1.1", 40000, 1), TcpPeer("10.1.1.2", port, 9)
    c.connect(s)
    return handshake(c, s) + [c.send(ACK, b"a" * 10), s.send(ACK, b"b" * 20)] + close(c, s)


def pcapng_of(frames, between=None):
    """SHB, IDB (Ethernet), one EPB per frame; between(i) -> blocks put
    before frame i."""
    out = [section_header("<"), interface_description("<", 1)]
    for i, frame in enumerate(frames):
        if between is not None:
            out.extend(between(i))
        out.append(enhanced_packet("<", 0, (1_000_000 + i) * 10**6, frame))
    return b"".join(out)


def test_unknown_blocks_small_and_oversized_are_skipped(run_cli, tmp_path):
    frames = conversation()
    huge = block("<", 0x00001234, b"\xee" * OVERSIZED)
    path = tmp_path / "unknown.pcapng"
    path.write_bytes(pcapng_of(frames, lambda i: {2: [block("<", 0x0000ABCD, b"?" * 40)],
                                                  4: [huge]}.get(i, [])))
    p = run_cli("replay", path, "--logs", tmp_path / "out")
    assert p.returncode == 0, p.stderr
    no_traceback(p)
    rows = read_zeek_log(tmp_path / "out" / "conn.log")
    assert [(r["conn_state"], r["orig_bytes"], r["resp_bytes"]) for r in rows] == \
        [("SF", "10", "20")]
    assert "packets   %d" % len(frames) in p.stderr


def test_oversized_unknown_block_cut_short_is_a_truncation_warning(run_cli, tmp_path):
    frames = conversation()
    content = pcapng_of(frames[:4]) + block("<", 0x00001234, b"\xee" * OVERSIZED)[:5 << 20]
    path = tmp_path / "cut.pcapng"
    path.write_bytes(content)
    p = run_cli("replay", path, "--logs", tmp_path / "out")
    assert p.returncode == 0, p.stderr
    no_traceback(p)
    assert "is truncated" in p.stderr and "4 records read before it" in p.stderr
    assert len(read_zeek_log(tmp_path / "out" / "conn.log")) == 1


def test_packet_block_claiming_20_mib_is_corruption_after_what_came_before(run_cli, tmp_path):
    frames = conversation()
    head = pcapng_of(frames[:5])
    liar = struct.pack("<II", 6, OVERSIZED) + b"\x00" * 64
    path = tmp_path / "liar.pcapng"
    path.write_bytes(head + liar + pcapng_of(frames[5:])[28 + 20:])
    p = run_cli("replay", path, "--logs", tmp_path / "out")
    assert p.returncode == 1
    no_traceback(p)
    line = one_error_line(p)
    assert "corrupt at byte offset %d" % len(head) in line
    assert "claims %d bytes" % OVERSIZED in line
    rows = read_zeek_log(tmp_path / "out" / "conn.log")
    assert len(rows) == 1 and int(rows[0]["orig_pkts"]) + int(rows[0]["resp_pkts"]) == 5


def test_absurd_snaplen_in_the_file_header_is_tolerated(run_cli, tmp_path):
    frames = conversation()
    content = bytearray(write_pcap(tmp_path / "t.pcap", timed(frames)).read_bytes())
    struct.pack_into("<I", content, 16, 0xFFFFFFFF)           # snaplen
    path = tmp_path / "snaplen.pcap"
    path.write_bytes(bytes(content))
    p = run_cli("replay", path, "--logs", tmp_path / "out")
    assert p.returncode == 0, p.stderr
    no_traceback(p)
    assert [r["conn_state"] for r in read_zeek_log(tmp_path / "out" / "conn.log")] == ["SF"]


def test_absurd_length_in_the_first_record_is_one_line(run_cli, tmp_path):
    path = tmp_path / "first.pcap"
    path.write_bytes(pcap_bytes([]) + struct.pack("<IIII", 1, 0, 0xFFFFFFF0, 60) + b"x" * 100)
    p = run_cli("replay", path, "--logs", tmp_path / "out")
    assert p.returncode == 1
    no_traceback(p)
    assert "record 1 claims 4294967280 captured bytes" in one_error_line(p)


@pytest.mark.parametrize("magic, message", [
    (b"\xd5\xc3\xb2\xa1", "is not a pcap or pcapng file (starts with 0xd5c3b2a1)"),
    (b"\x0a\x0d\x0d\x0a" + struct.pack("<I", 28) + b"\x4d\x3c\x2c\x1b",
     "bad byte-order magic"),
])
def test_wrong_magic_is_one_line(run_cli, tmp_path, magic, message):
    path = tmp_path / "magic.pcap"
    path.write_bytes(magic + bytes(200))
    p = run_cli("replay", path, "--logs", tmp_path / "out")
    assert p.returncode == 1
    no_traceback(p)
    assert message in one_error_line(p)


def test_garbage_over_a_record_header_in_the_middle_of_a_real_trace(run_cli, tmp_path):
    data = bytearray(FTP_TRACE.read_bytes())
    offset, n = 24, 0
    while n < 60:                                   # the 61st record header
        offset += 16 + struct.unpack_from("<I", data, offset + 8)[0]
        n += 1
    data[offset:offset + 64] = b"\xff" * 64
    path = tmp_path / "garbage.pcap"
    path.write_bytes(bytes(data))
    p = run_cli("replay", path, "--logs", tmp_path / "out")
    assert p.returncode == 1
    no_traceback(p)
    assert "corrupt at byte offset %d (after 60 records): record 61 claims" % offset \
        in one_error_line(p)
    rows = read_zeek_log(tmp_path / "out" / "conn.log")
    assert rows and sum(int(r["orig_pkts"]) + int(r["resp_pkts"]) for r in rows) == 60
    # The FTP session's control connection was analysed up to there.
    assert any(r["service"] == "ftp" for r in rows)


@pytest.mark.parametrize("seed", range(6))
def test_random_garbage_in_the_middle_never_gives_a_traceback(run_cli, tmp_path, seed):
    rng = random.Random(seed)
    data = bytearray(FTP_TRACE.read_bytes())
    start = rng.randrange(24, len(data) - 2000)
    data[start:start + rng.randrange(1, 2000)] = rng.randbytes(2000)[:rng.randrange(1, 2000)]
    path = tmp_path / "noise.pcap"
    path.write_bytes(bytes(data))
    p = run_cli("replay", path, "--logs", tmp_path / "out")
    no_traceback(p)
    assert p.returncode in (0, 1), p.stderr
    if p.returncode == 1:
        assert "corrupt at byte offset" in one_error_line(p)
    assert (tmp_path / "out" / "conn.log").exists()


def test_corruption_with_workers_is_one_line_and_keeps_what_came_before(run_cli, tmp_path):
    data = bytearray(FTP_TRACE.read_bytes())
    offset, n = 24, 0
    while n < 60:
        offset += 16 + struct.unpack_from("<I", data, offset + 8)[0]
        n += 1
    struct.pack_into("<I", data, offset + 8, 0x7FFFFFFF)
    path = tmp_path / "corrupt.pcap"
    path.write_bytes(bytes(data))
    p = run_cli("replay", path, "--workers", "2", "--logs", tmp_path / "out")
    assert p.returncode == 1
    no_traceback(p)
    assert "record 61 claims 2147483647 captured bytes" in one_error_line(p)
    rows = read_zeek_log(tmp_path / "out" / "conn.log")
    assert sum(int(r["orig_pkts"]) + int(r["resp_pkts"]) for r in rows) == 60


def test_a_file_that_ends_inside_a_record_then_grows(run_cli, tmp_path):
    """Read while its writer is in the middle of a record: a truncation
    warning, exit 0, everything before it analysed; read again once
    complete: all of it."""
    whole = FTP_TRACE.read_bytes()
    offset, n = 24, 0
    while n < 100:
        offset += 16 + struct.unpack_from("<I", whole, offset + 8)[0]
        n += 1
    path = tmp_path / "growing.pcap"
    path.write_bytes(whole[:offset + 30])           # record 101: header and 14 bytes
    p = run_cli("replay", path, "--logs", tmp_path / "first")
    assert p.returncode == 0, p.stderr
    no_traceback(p)
    assert "at byte offset %d" % offset in p.stderr and "100 records read before it" in p.stderr
    first = read_zeek_log(tmp_path / "first" / "conn.log")
    assert sum(int(r["orig_pkts"]) + int(r["resp_pkts"]) for r in first) == 100
    with open(path, "ab") as handle:
        handle.write(whole[offset + 30:])
    p = run_cli("replay", path, "--logs", tmp_path / "second")
    assert p.returncode == 0 and "truncated" not in p.stderr
    second = read_zeek_log(tmp_path / "second" / "conn.log")
    assert sum(int(r["orig_pkts"]) + int(r["resp_pkts"]) for r in second) == 147


def test_a_file_that_grows_while_being_read(tmp_path):
    """A writer appends records in uneven pieces (a record's header in one
    write, its bytes in the next) while the command reads: whatever it read
    it analysed, exit 0, at most a truncation warning, no traceback."""
    whole = FTP_TRACE.read_bytes()
    path = tmp_path / "live.pcap"
    path.write_bytes(whole[:24 + 16])               # the header and a record header
    done = threading.Event()

    def writer():
        rng = random.Random(1)
        position = 40
        with open(path, "ab", buffering=0) as handle:
            while position < len(whole):
                step = rng.choice([7, 16, 100, 1500, 9000])
                handle.write(whole[position:position + step])
                position += step
                time.sleep(0.002)
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    proc = subprocess.run([sys.executable, "-m", "analyser", "replay", str(path), "--logs",
                           str(tmp_path / "out"), "--no-progress"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    thread.join()
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    rows = read_zeek_log(tmp_path / "out" / "conn.log")
    packets = sum(int(r["orig_pkts"]) + int(r["resp_pkts"]) for r in rows)
    assert ("packets   %d " % packets) in proc.stderr
    if packets < 147:
        assert "is truncated" in proc.stderr or "cut short" in proc.stderr
