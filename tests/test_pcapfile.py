"""Trace-file source (ringbuf.pcapfile): every format variant, bad input, ring-full.

The captures are written here, by hand with `struct` (so every field is
known), with dpkt's writers, and with tcpdump; the reader must give back
exactly the records written.  Real traces from the shared conformance set are
cross-checked against dpkt and tshark when that set is present.
"""
import os
import random
import shutil
import struct
import subprocess
from pathlib import Path

import dpkt
import pytest

from ringbuf.errors import CaptureFileError
from ringbuf.pcapfile import PcapFileSource
from ringbuf.ring import Ring

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CONFORMANCE_TRACES = sorted((SHARED / "conformance" / "zeek").glob("*/*.pcap*"))

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113


def random_packets(seed, count, max_length=1500):
    rng = random.Random(seed)
    return [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, max_length)))
            for _ in range(count)]


# --------------------------------------------------------------- pcap writer

def pcap_bytes(records, *, nanoseconds=False, endian="<", linktype=LINKTYPE_ETHERNET,
               snaplen=65535, version=(2, 4)):
    """records: (ts_seconds, ts_fraction, data, wirelen)."""
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    out = [struct.pack(endian + "IHHiIII", magic, version[0], version[1], 0, 0,
                       snaplen, linktype)]
    for seconds, fraction, data, wirelen in records:
        out.append(struct.pack(endian + "IIII", seconds, fraction, len(data), wirelen))
        out.append(data)
    return b"".join(out)


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    return path


# ------------------------------------------------------------- pcapng writer

def pad4(data):
    return data + b"\x00" * (-len(data) % 4)


def block(endian, block_type, body):
    body = pad4(body)
    length = 12 + len(body)
    return struct.pack(endian + "II", block_type, length) + body + struct.pack(endian + "I", length)


def option(endian, code, value):
    return struct.pack(endian + "HH", code, len(value)) + pad4(value)


def section_header(endian):
    return block(endian, 0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def interface_description(endian, linktype, snaplen=0, tsresol=None, tsoffset=None):
    options = b""
    if tsresol is not None:
        options += option(endian, 9, bytes([tsresol]))
    if tsoffset is not None:
        options += option(endian, 14, struct.pack(endian + "q", tsoffset))
    if options:
        options += option(endian, 0, b"")
    return block(endian, 1, struct.pack(endian + "HHI", linktype, 0, snaplen) + options)


def enhanced_packet(endian, interface_id, ts_units, data, wirelen=None):
    wirelen = len(data) if wirelen is None else wirelen
    return block(endian, 6, struct.pack(endian + "IIIII", interface_id, ts_units >> 32,
                                        ts_units & 0xFFFFFFFF, len(data), wirelen) + data)


def simple_packet(endian, data, wirelen=None):
    return block(endian, 3, struct.pack(endian + "I", len(data) if wirelen is None else wirelen)
                 + data)


def obsolete_packet(endian, interface_id, ts_units, data):
    return block(endian, 2, struct.pack(endian + "HHIIII", interface_id, 0, ts_units >> 32,
                                        ts_units & 0xFFFFFFFF, len(data), len(data)) + data)


def name_resolution(endian):
    return block(endian, 4, struct.pack(endian + "HH", 1, 8) + bytes([10, 0, 0, 1]) + b"abc\x00"
                 + struct.pack(endian + "HH", 0, 0))


def custom_block(endian):
    return block(endian, 0x00000BAD, struct.pack(endian + "I", 32473) + b"private")


# ---------------------------------------------------------------- helpers

def read_records(path):
    return list(PcapFileSource(path).read_all())


def expect_error(path, *fragments):
    with pytest.raises(CaptureFileError) as caught:
        read_records(path)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


# ------------------------------------------------------------ pcap variants

@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("nanoseconds", [False, True])
def test_classic_pcap_variants_give_back_exactly_what_was_written(tmp_path, endian, nanoseconds):
    packets = random_packets(1, 50)
    records = [(1_700_000_000 + i, (999_999_999 if nanoseconds else 999_999) - i,
                data, len(data) + i) for i, data in enumerate(packets)]
    path = write(tmp_path, "t.pcap", pcap_bytes(records, nanoseconds=nanoseconds,
                                                endian=endian, linktype=LINKTYPE_RAW))
    source = PcapFileSource(path)
    assert source.format == "pcap"
    assert (source.linktype, source.snaplen) == (LINKTYPE_RAW, 65535)
    got = list(source.read_all())
    unit = 1 if nanoseconds else 1000
    assert got == [(seconds * 10**9 + fraction * unit, len(data), wirelen, LINKTYPE_RAW, 0, data)
                   for seconds, fraction, data, wirelen in records]
    assert source.eof and not source.truncated
    assert source.records_read == 50
    assert source.bytes_read == sum(map(len, packets))


def test_pcap_agrees_with_dpkt_reader(tmp_path):
    path = tmp_path / "dpkt.pcap"
    packets = random_packets(2, 200)
    with open(path, "wb") as handle:
        writer = dpkt.pcap.Writer(handle, linktype=LINKTYPE_LINUX_SLL, nano=True)
        for i, data in enumerate(packets):
            writer.writepkt(data, ts=1_600_000_000 + i / 7)
    with open(path, "rb") as handle:
        expected = [(ts, data) for ts, data in dpkt.pcap.Reader(handle)]
    got = read_records(path)
    assert [record[5] for record in got] == [data for _, data in expected]
    # dpkt gives nanosecond files' timestamps as exact Decimals.
    assert [record[0] for record in got] == [int(ts * 10**9) for ts, _ in expected]
    assert {record[3] for record in got} == {LINKTYPE_LINUX_SLL}


def test_caplen_above_wirelen_is_kept_and_counted(tmp_path):
    records = [(1, 0, b"abcdef", 4), (2, 0, b"xy", 60)]
    path = write(tmp_path, "short-wire.pcap", pcap_bytes(records))
    source = PcapFileSource(path)
    got = list(source.read_all())
    assert [(caplen, wirelen) for _, caplen, wirelen, *_ in got] == [(6, 6), (2, 60)]
    assert source.caplen_exceeds_wirelen == 1


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
@pytest.mark.parametrize("precision", ["micro", "nano"])
def test_pcap_rewritten_by_tcpdump(tmp_path, precision):
    packets = random_packets(3, 40, max_length=200)
    records = [(1_650_000_000 + i, 123_456 + i, data, len(data)) for i, data in enumerate(packets)]
    original = write(tmp_path, "in.pcap", pcap_bytes(records))
    rewritten = tmp_path / "out.pcap"
    subprocess.run(["tcpdump", "-r", str(original), "-w", str(rewritten),
                    f"--time-stamp-precision={precision}"],
                   check=True, capture_output=True)
    got = read_records(rewritten)
    assert [record[5] for record in got] == packets
    assert [record[0] for record in got] == [s * 10**9 + us * 1000 for s, us, _, _ in records]


# ---------------------------------------------------------- pcapng variants

def two_interface_section(endian, packets):
    """Ethernet in nanoseconds and raw IP in 2**-10 s offset by 100 s; EPB, SPB,
    an obsolete PB and blocks to skip.  Returns (bytes, expected records)."""
    content = [section_header(endian),
               interface_description(endian, LINKTYPE_ETHERNET, 0, tsresol=9),
               name_resolution(endian),
               interface_description(endian, LINKTYPE_RAW, 9000, tsresol=0x80 | 10,
                                     tsoffset=100)]
    expected = []
    last_ts = 0
    for i, data in enumerate(packets):
        kind = i % 4
        if kind in (0, 3):
            units = 1_700_000_000_123_456_789 + i
            content.append(enhanced_packet(endian, 0, units, data, len(data) + 10))
            last_ts = units
            expected.append((units, len(data), len(data) + 10, LINKTYPE_ETHERNET, 0, data))
        elif kind == 1:
            units = (1_700_000_000 << 10) + 3 * i
            content.append(enhanced_packet(endian, 1, units, data))
            last_ts = 100 * 10**9 + units * 10**9 // 2**10
            expected.append((last_ts, len(data), len(data), LINKTYPE_RAW, 1, data))
        else:
            content.append(simple_packet(endian, data))
            # No timestamp of its own: the previous packet's.
            expected.append((last_ts, len(data), len(data), LINKTYPE_ETHERNET, 0, data))
        if i % 7 == 0:
            content.append(custom_block(endian))
    return b"".join(content), expected


@pytest.mark.parametrize("endian", ["<", ">"])
def test_pcapng_two_interfaces_epb_and_spb(tmp_path, endian):
    content, expected = two_interface_section(endian, random_packets(4, 60))
    path = write(tmp_path, "two.pcapng", content)
    source = PcapFileSource(path)
    assert source.format == "pcapng"
    assert list(source.read_all()) == expected
    assert source.sections == 1
    assert source.blocks_skipped == 1 + len(range(0, 60, 7))
    assert source.interfaces_in_section == [(LINKTYPE_ETHERNET, 0), (LINKTYPE_RAW, 9000)]
    assert not source.truncated


def test_pcapng_sections_reset_interfaces_and_may_change_byte_order(tmp_path):
    first, first_expected = two_interface_section("<", random_packets(5, 20))
    second = b"".join([section_header(">"),
                       interface_description(">", LINKTYPE_LINUX_SLL),  # default: microseconds
                       enhanced_packet(">", 0, 1_234_567, b"second section"),
                       obsolete_packet(">", 0, 7, b"obsolete block")])
    path = write(tmp_path, "sections.pcapng", first + second)
    source = PcapFileSource(path)
    assert list(source.read_all()) == first_expected + [
        (1_234_567_000, 14, 14, LINKTYPE_LINUX_SLL, 0, b"second section"),
        (7_000, 14, 14, LINKTYPE_LINUX_SLL, 0, b"obsolete block")]
    assert source.sections == 2
    assert source.interfaces_in_section == [(LINKTYPE_LINUX_SLL, 0)]


def test_pcapng_interface_from_a_previous_section_is_gone(tmp_path):
    content = b"".join([section_header("<"), interface_description("<", 1),
                        interface_description("<", 101),
                        section_header("<"), interface_description("<", 1),
                        enhanced_packet("<", 1, 0, b"x")])
    expect_error(write(tmp_path, "gone.pcapng", content),
                 "refers to interface 1", "defines 1")


def test_simple_packet_is_cut_to_the_interface_snaplen(tmp_path):
    content = b"".join([section_header("<"), interface_description("<", 1, snaplen=8),
                        simple_packet("<", b"0123456789abcdef", wirelen=1000)])
    source = PcapFileSource(write(tmp_path, "spb.pcapng", content))
    assert list(source.read_all()) == [(0, 8, 1000, 1, 0, b"01234567")]


def test_pcapng_agrees_with_dpkt_writer(tmp_path):
    path = tmp_path / "dpkt.pcapng"
    packets = random_packets(6, 100)
    with open(path, "wb") as handle:
        writer = dpkt.pcapng.Writer(handle, linktype=LINKTYPE_ETHERNET)
        for i, data in enumerate(packets):
            writer.writepkt(data, ts=1_500_000_000 + i * 0.25)
    got = read_records(path)
    assert [record[5] for record in got] == packets
    assert [record[0] for record in got] == [1_500_000_000 * 10**9 + i * 250_000_000
                                             for i in range(100)]


# --------------------------------------------------------------- bad input

def test_missing_file(tmp_path):
    with pytest.raises(CaptureFileError,
                       match=r"^cannot open '.*nope.pcap': No such file or directory$"):
        PcapFileSource(tmp_path / "nope.pcap")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file(tmp_path):
    path = write(tmp_path, "secret.pcap", pcap_bytes([]))
    path.chmod(0)
    with pytest.raises(CaptureFileError, match="Permission denied"):
        PcapFileSource(path)


def test_directory(tmp_path):
    with pytest.raises(CaptureFileError, match=r"^cannot open '.*': Is a directory$"):
        PcapFileSource(tmp_path)


def test_empty_file(tmp_path):
    path = write(tmp_path, "empty.pcap", b"")
    with pytest.raises(CaptureFileError, match=r"^'.*empty.pcap' is empty: not a capture file$"):
        PcapFileSource(path)


def test_random_bytes(tmp_path):
    path = write(tmp_path, "noise.pcap", b"\xde\xad\xbe\xef" + random.Random(8).randbytes(500))
    with pytest.raises(CaptureFileError,
                       match=r"is not a pcap or pcapng file \(starts with 0xdeadbeef\)"):
        PcapFileSource(path)


def test_text_file(tmp_path):
    path = write(tmp_path, "notes.txt", b"hello\n")
    with pytest.raises(CaptureFileError, match=r"starts with 0x68656c6c"):
        PcapFileSource(path)


def test_pcap_header_cut_short(tmp_path):
    path = write(tmp_path, "short.pcap", pcap_bytes([])[:10])
    with pytest.raises(CaptureFileError,
                       match="cut short: its pcap file header has 10 of 24 bytes"):
        PcapFileSource(path)


def test_unsupported_pcap_version(tmp_path):
    path = write(tmp_path, "v3.pcap", pcap_bytes([], version=(3, 0)))
    with pytest.raises(CaptureFileError, match=r"unsupported pcap version 3\.0"):
        PcapFileSource(path)


def test_pcapng_header_cut_short(tmp_path):
    path = write(tmp_path, "short.pcapng", section_header("<")[:16])
    with pytest.raises(CaptureFileError, match="cut short"):
        PcapFileSource(path)


@pytest.mark.parametrize("cut", [5, 16 + 20])   # inside a record header / inside its data
def test_truncated_last_pcap_record_is_a_warning_not_an_error(tmp_path, cut):
    packets = [bytes([i]) * 100 for i in range(10)]
    content = pcap_bytes([(i, 0, data, 100) for i, data in enumerate(packets)])
    path = write(tmp_path, "cut.pcap", content + struct.pack("<IIII", 99, 0, 100, 100)
                 [:cut] + b"z" * max(0, cut - 16))
    source = PcapFileSource(path)
    got = list(source.read_all())
    assert [record[5] for record in got] == packets
    assert source.truncated and source.eof
    assert source.records_read == 10
    offset = 24 + 10 * 116
    assert source.truncation_message.startswith(f"'{path}' is truncated: last record")
    assert f"at byte offset {offset}" in source.truncation_message
    assert f"({cut} bytes of a {116 if cut > 16 else 16}-byte" in source.truncation_message
    assert source.truncation_message.endswith("10 records read before it")


def test_truncated_last_pcapng_block_is_a_warning_not_an_error(tmp_path):
    content, expected = two_interface_section("<", random_packets(9, 12))
    last = enhanced_packet("<", 0, 5, b"q" * 64)
    path = write(tmp_path, "cut.pcapng", content + last[:50])
    source = PcapFileSource(path)
    assert list(source.read_all()) == expected
    assert source.truncated
    assert f"at byte offset {len(content)} (50 bytes of a {len(last)}-byte block)" \
        in source.truncation_message
    assert source.truncation_message.endswith("12 records read before it")


def test_impossible_caplen_is_corruption_after_delivering_what_came_before(tmp_path):
    good = [(i, 0, b"g" * 40, 40) for i in range(5)]
    content = pcap_bytes(good) + struct.pack("<IIII", 9, 0, 5_000_000, 5_000_000) + b"x" * 64
    path = write(tmp_path, "corrupt.pcap", content)
    source = PcapFileSource(path)
    delivered = []
    with pytest.raises(CaptureFileError) as caught:
        for record in source.read_all():
            delivered.append(record)
    assert len(delivered) == 5
    assert f"corrupt at byte offset {24 + 5 * 56}" in str(caught.value)
    assert "record 6 claims 5000000 captured bytes" in str(caught.value)


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:4] + struct.pack("<I", 30) + b[8:], "invalid length 30"),
    (lambda b: b[:-4] + struct.pack("<I", len(b) + 4), "ends with length"),
])
def test_malformed_pcapng_block_in_the_middle_is_an_error(tmp_path, damage, message):
    head = section_header("<") + interface_description("<", 1) + enhanced_packet("<", 0, 1, b"ok")
    bad = damage(enhanced_packet("<", 0, 2, b"bad" * 20))
    path = write(tmp_path, "bad.pcapng", head + bad + enhanced_packet("<", 0, 3, b"after"))
    source = PcapFileSource(path)
    delivered = []
    with pytest.raises(CaptureFileError, match=message):
        for record in source.read_all():
            delivered.append(record)
    assert [record[5] for record in delivered] == [b"ok"]


# ------------------------------------------------------------- ring full

def test_tiny_ring_forces_partial_fills_and_loses_nothing(tmp_path):
    packets = random_packets(10, 300, max_length=900)
    records = [(i, 0, data, len(data)) for i, data in enumerate(packets)]
    content, expected_ng = two_interface_section("<", packets)
    for name, body, expected in [
            ("full.pcap", pcap_bytes(records), packets),
            ("full.pcapng", content, [record[5] for record in expected_ng])]:
        source = PcapFileSource(write(tmp_path, name, body))
        # Room for the retained record plus the largest packet, wherever the wrap falls.
        ring = Ring(record_capacity=4, arena_bytes=4096, policy="wait")
        got, calls = [], 0
        while not source.eof:
            calls += 1
            assert calls < 10_000, "the source stopped making progress"

            source.fill_ring(ring, 1000)
            # The engine holds the last record retained across calls.
            while (record := ring.read()) is not None:
                got.append(record[6])
            ring.ack(ring.processed_index - 1 if ring.processed_index else 0)
        assert got == expected, name
        assert calls >= len(expected) // 3      # at most 3 free slots per call
        assert ring.stats()["overflow_waits"] > 0
        assert source.records_read == len(expected)


def test_a_regular_file_and_a_pipe_give_the_same_records_across_windows(tmp_path):
    """A regular file is read a window at a time (pread), a pipe with fread:
    the same records, whole where they straddle a window's edge (the files
    hold many windows), in both formats."""
    packets = [bytes([i % 251]) * (1000 + i * 7 % 517) for i in range(14000)]
    records = [(i, 0, data, len(data)) for i, data in enumerate(packets)]
    for name, body, expected in [
            ("big.pcap", pcap_bytes(records), packets),
            ("big.pcapng", *two_interface_section("<", packets))]:
        if name.endswith("pcapng"):
            expected = [record[5] for record in expected]
        assert len(body) > 2 * 8 * 1024 * 1024 - 1024 * 1024
        path = write(tmp_path, name, body)
        windowed = read_records(path)
        fifo = tmp_path / (name + ".fifo")
        os.mkfifo(fifo)
        # (Another process writes: opening a FIFO blocks, holding the GIL.)
        writer = subprocess.Popen(["sh", "-c", 'exec cat "$0" > "$1"', str(path), str(fifo)])
        try:
            piped = read_records(fifo)
        finally:
            writer.kill()
            writer.wait()
        assert [record[5] for record in windowed] == expected, name
        assert windowed == piped, name


def test_windowed_records_keep_their_window_until_acknowledged(tmp_path):
    """A regular file's packets are not copied again: records point into the
    windows it is read into, a window left behind is lent to the ring, and it
    stays as long as a record in it is retained (its bytes read back intact
    after the reader has moved many windows on, not overwritten by a later
    read).  The records lent count as if they were in the arena: past its
    size the source is refused (it waits) until the retained records are
    acknowledged, which lets the windows go, to be read into again."""
    packets = [bytes([i % 251, i // 251 % 256]) * (700 + i % 300) for i in range(60000)]
    path = write(tmp_path, "lent.pcap", pcap_bytes([(i, 0, d, len(d))
                                                    for i, d in enumerate(packets)]))
    assert os.path.getsize(path) > 12 * 8 * 1024 * 1024      # many windows, many refusals
    source = PcapFileSource(path)
    ring = Ring(record_capacity=65536, arena_bytes=16 << 20, policy="wait")
    got = []
    refused = 0
    while True:
        n = source.fill_ring(ring, 4096)
        while (record := ring.read()) is not None:
            got.append(record[6])
        if n == 0 and source.eof:
            break
        if n == 0:
            # Refused with everything read: the lent windows are at their limit.
            refused += 1
            stats = ring.stats()
            assert stats["loan_waits"] > 0
            assert ring.arena_bytes - 2000 < stats["external_bytes"] <= ring.arena_bytes
            assert stats["lent_bytes"] >= 8 << 20        # the windows behind
            # The oldest retained record still reads from its window, left
            # behind by the reader.
            oldest = ring.acknowledged_index
            assert ring.peek(oldest) == packets[oldest]
            assert ring.peek(ring.processed_index - 1) == packets[len(got) - 1]
            ring.ack(ring.processed_index)
            assert ring.stats()["lent_bytes"] == 0
            assert ring.stats()["spare_windows"] > 0
    assert refused >= 4
    assert got == packets
    assert source.records_lent == len(packets)
    assert ring.stats()["bytes_written"] == sum(map(len, packets))
    ring.ack(ring.processed_index)
    source.close()                       # the last window, lent and let go at once
    assert ring.stats()["lent_bytes"] == 0


def read_acknowledging(source, ring, batch):
    """The payloads of every record, read `batch` at a time into `ring` and
    acknowledged as they are read (as the engine does)."""
    got = []
    while source.fill_ring(ring, batch) or not source.eof:
        while (record := ring.read()) is not None:
            got.append(record[6])
        ring.ack(ring.processed_index)
    return got


def test_a_replay_reads_its_windows_into_a_few_recycled_buffers(tmp_path):
    """Read in batches that are acknowledged as they go (as the engine does),
    a file of many windows cycles through a few buffers: a window let go
    comes back as a spare and the next read goes into it, so fresh memory
    (a page fault per page) is asked for only at the start."""
    packets = [bytes([i % 251, i // 251 % 256]) * (400 + i % 200) for i in range(40000)]
    path = write(tmp_path, "cycle.pcap", pcap_bytes([(i, 0, d, len(d))
                                                     for i, d in enumerate(packets)]))
    assert os.path.getsize(path) > 30 << 20                  # thirty windows and more
    source = PcapFileSource(path)
    ring = Ring(record_capacity=65536, arena_bytes=16 << 20, policy="wait")
    assert read_acknowledging(source, ring, 256) == packets
    assert source.records_lent == len(packets)
    assert source.windows_allocated <= 3
    source.close()
    assert ring.stats()["lent_bytes"] == 0


def test_records_larger_than_a_window_are_read_whole(tmp_path):
    """A record larger than the reader's window (1 MiB) gets a window of its
    own size, wherever it falls, between small ones and at the end, in both
    formats; the small ones after it are read as before."""
    sizes = [100, 3 << 20, 60, (1 << 20) + 7, 1500, 90, 5 << 20]
    packets = [bytes([i * 37 % 251]) * n for i, n in enumerate(sizes)]
    for name, body in [
            ("huge.pcap", pcap_bytes([(i, 0, d, len(d)) for i, d in enumerate(packets)],
                                     snaplen=8 << 20)),
            ("huge.pcapng", section_header("<")
             + interface_description("<", LINKTYPE_ETHERNET, snaplen=8 << 20)
             + b"".join(enhanced_packet("<", 0, i, d) for i, d in enumerate(packets)))]:
        path = write(tmp_path, name, body)
        assert [record[5] for record in read_records(path)] == packets, name
        # Read into a ring that acknowledges as it goes: the windows a huge
        # record needed are freed, not kept as spares (4 MiB at most).
        source = PcapFileSource(path)
        ring = Ring(record_capacity=1024, arena_bytes=64 << 20, policy="wait")
        assert read_acknowledging(source, ring, 2) == packets, name
        source.close()
        assert 0 < ring.stats()["largest_spare_window"] <= 4 << 20, name


def test_a_file_cut_shorter_while_it_is_read_ends_as_truncated(tmp_path):
    """Another program truncating the file mid-replay (a rotation): the
    records already read are delivered, the one cut is reported as the
    truncated last record, and the process is not killed (as it was, by
    SIGBUS, when files were memory-mapped)."""
    packets = [bytes([i % 251]) * 1000 for i in range(10000)]
    path = write(tmp_path, "rotated.pcap", pcap_bytes([(i, 0, d, len(d))
                                                       for i, d in enumerate(packets)]))
    source = PcapFileSource(path)
    ring = Ring(record_capacity=65536, arena_bytes=64 << 20, policy="wait")
    got = []
    assert source.fill_ring(ring, 100) == 100
    cut = 24 + 4000 * 1016 + 500                        # inside record 4001
    os.truncate(path, cut)
    while source.fill_ring(ring, 1000) or not source.eof:
        pass
    while (record := ring.read()) is not None:
        got.append(record[6])
    # What the first window held (1 MiB) was read before the cut; after it,
    # the file ends inside record 4001.
    assert len(got) == 4000 and got == packets[:4000]
    assert source.truncated
    assert f"at byte offset {24 + 4000 * 1016}" in source.truncation_message


def test_drop_policy_ring_drops_and_counts(tmp_path):
    packets = random_packets(11, 50, max_length=100)
    path = write(tmp_path, "drop.pcap", pcap_bytes([(0, 0, d, len(d)) for d in packets]))
    source = PcapFileSource(path)
    ring = Ring(record_capacity=8, arena_bytes=1 << 16, policy="drop")
    assert source.fill_ring(ring, 1000) == 8
    assert source.records_dropped == 42
    assert ring.stats()["overflow_drops"] == 42
    assert source.records_read == 50


def test_count_records_sees_every_record(tmp_path):
    packets = random_packets(12, 1000, max_length=300)
    path = write(tmp_path, "count.pcap", pcap_bytes([(0, 0, d, len(d)) for d in packets]))
    assert PcapFileSource(path).count_records() == 1000


# ------------------------------------------------------------ real traces

needs_shared = pytest.mark.skipif(
    not CONFORMANCE_TRACES, reason=f"no conformance traces under {SHARED} (shared set absent)")


@needs_shared
@pytest.mark.parametrize("trace", CONFORMANCE_TRACES, ids=lambda p: p.name)
def test_real_traces_agree_with_dpkt(trace):
    with open(trace, "rb") as handle:
        reader = (dpkt.pcapng.Reader(handle) if trace.suffix == ".pcapng"
                  else dpkt.pcap.Reader(handle))
        expected = [data for _, data in reader]
    got = read_records(trace)
    assert [record[5] for record in got] == expected


@needs_shared
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize("trace", [t for t in CONFORMANCE_TRACES
                                   if t.suffix == ".pcapng" or t.stat().st_size < 200_000],
                         ids=lambda p: p.name)
def test_real_traces_agree_with_tshark(trace):
    result = subprocess.run(
        ["tshark", "-r", str(trace), "-T", "fields", "-e", "frame.len", "-e", "frame.cap_len",
         "-e", "frame.time_epoch", "-e", "frame.interface_id"],
        check=True, capture_output=True, text=True)
    expected = []
    for line in result.stdout.splitlines():
        wirelen, caplen, epoch, interface = line.split("\t")
        seconds, _, fraction = epoch.partition(".")
        expected.append((int(wirelen), int(caplen),
                         int(seconds) * 10**9 + int(fraction.ljust(9, "0")[:9]),
                         int(interface or 0)))
    got = [(wirelen, caplen, ts_ns, iface)
           for ts_ns, caplen, wirelen, _, iface, _ in read_records(trace)]
    assert got == expected


def test_opening_many_files_keeps_none_of_them_resident(tmp_path):
    """A replay opens all its files up front (to check them): opening keeps
    no window, so forty files of many windows each do not become resident
    (they did, 8 MiB each, when files were mapped); each is read whole
    afterwards, from its start."""
    packets = [bytes([i % 251]) * 1000 for i in range(24000)]
    path = write(tmp_path, "many.pcap", pcap_bytes([(i, 0, d, len(d))
                                                    for i, d in enumerate(packets)]))

    def resident_mib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    before = resident_mib()
    sources = [PcapFileSource(path) for _ in range(40)]
    assert resident_mib() - before < 40        # 320 MiB when each kept a window
    assert [record[5] for record in read_records(path)] == packets
    ring = Ring(record_capacity=65536, arena_bytes=64 << 20, policy="wait")
    assert sources[-1].fill_ring(ring, 100000) == len(packets)
    assert ring.peek(0) == packets[0] and ring.peek(len(packets) - 1) == packets[-1]
