"""The pcapng reader on generated files (hypothesis): any sequence of
sections, interfaces, enhanced and simple packet blocks and blocks it must
skip (name resolution, custom, unknown types) in either byte order gives
back exactly the packets written; the same file cut anywhere gives a prefix
of them and a truncation note, never an exception; with one byte changed
anywhere, the reader gives a prefix of the packets or a CaptureFileError
(or, when the byte was inside a packet, that packet's new bytes), nothing
else."""
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ringbuf.errors import CaptureFileError  # noqa: E402
from ringbuf.pcapfile import PcapFileSource  # noqa: E402
from test_pcapfile import (block, custom_block, enhanced_packet,  # noqa: E402
                           interface_description, name_resolution, section_header,
                           simple_packet)

LINKTYPES = [1, 101, 113, 276, 0]
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


@st.composite
def pcapng_files(draw):
    """(bytes, [(linktype, interface, data)] expected, block boundaries,
    the end offset of each expected record's block)."""
    out, expected, boundaries, ends = [], [], [], []
    for _ in range(draw(st.integers(1, 3))):                  # sections
        endian = draw(st.sampled_from("<>"))
        out.append(section_header(endian))
        boundaries.append(sum(map(len, out)))
        interfaces = []
        for _ in range(draw(st.integers(0, 12))):
            kind = draw(st.integers(0, 9))
            if kind == 0 or (kind < 5 and not interfaces):
                linktype = draw(st.sampled_from(LINKTYPES))
                interfaces.append(linktype)
                out.append(interface_description(endian, linktype,
                                                 tsresol=draw(st.sampled_from([None, 6, 9]))))
            elif kind < 5:
                index = draw(st.integers(0, len(interfaces) - 1))
                data = draw(st.binary(max_size=300))
                out.append(enhanced_packet(endian, index, draw(st.integers(0, 2**63)), data))
                expected.append((interfaces[index], index, data))
            elif kind == 5 and interfaces:
                data = draw(st.binary(max_size=300))
                out.append(simple_packet(endian, data))
                expected.append((interfaces[0], 0, data))
            elif kind == 6:
                out.append(name_resolution(endian))
            elif kind == 7:
                out.append(custom_block(endian))
            else:
                block_type = draw(st.integers(0x100, 0x7FFFFFFF).filter(
                    lambda t: t not in (0x0A0D0D0A,)))
                out.append(block(endian, block_type, draw(st.binary(max_size=2000))))
            boundaries.append(sum(map(len, out)))
            ends += [boundaries[-1]] * (len(expected) - len(ends))
    return b"".join(out), expected, boundaries, ends


def read(tmp_path, content):
    path = tmp_path / "t.pcapng"
    path.write_bytes(content)
    source = PcapFileSource(path)
    got = [(r[3], r[4], r[5]) for r in source.read_all()]
    return source, got


@SETTINGS
@given(pcapng_files())
def test_any_well_formed_file_gives_back_its_packets(tmp_path, made):
    content, expected, _, _ = made
    source, got = read(tmp_path, content)
    assert got == expected
    assert source.eof and not source.truncated


@SETTINGS
@given(pcapng_files(), st.data())
def test_a_file_cut_anywhere_gives_a_prefix_and_a_note(tmp_path, made, data):
    content, expected, boundaries, _ = made
    cut = data.draw(st.integers(28, max(28, len(content) - 1)))
    source, got = read(tmp_path, content[:cut])
    assert got == expected[:len(got)]
    assert source.truncated == (cut not in boundaries and cut < len(content))
    if source.truncated:
        assert source.truncation_message.endswith("%d records read before it" % len(got))


@SETTINGS
@given(pcapng_files(), st.data())
def test_one_byte_changed_gives_a_prefix_or_a_clear_error(tmp_path, made, data):
    content, expected, _, ends = made
    where = data.draw(st.integers(0, len(content) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != content[where]))
    damaged = content[:where] + bytes([value]) + content[where + 1:]
    path = tmp_path / "t.pcapng"
    path.write_bytes(damaged)
    got = []
    try:
        for r in PcapFileSource(path).read_all():
            got.append((r[3], r[4], r[5]))
    except CaptureFileError as exc:
        assert "\n" not in str(exc)
    # Every record whose block ends before the changed byte comes out intact.
    before = sum(1 for end in ends if end <= where)
    assert got[:before] == expected[:before]
