"""The GridFTP analyser (protocols/gridftp.py): crafted MODE E sessions with
1, 3 and 4 parallel data connections, out-of-order offsets, holes, overlaps,
EOD counts (EODC), an upload, striping (SPOR), connections reused across
transfers, the DCAU fallback to byte counting; the real globus captures in
traces/ against their ground truth; and Zeek's gridftp-data labelling of the
conformance case gridftp-globus-url-copy."""
from __future__ import annotations

import json
import struct

import pytest

from conftest import CONFORMANCE, REPO, read_zeek_log
from packets import ACK
from protocols.gridftp import BlockTally, GridFtp
from test_ftp import Session, pasv_numbers, run  # noqa: F401,F811  (a fixture: tests take it by name)

BLOCK = struct.Struct("!BQQ")
EOF, EOD = 0x40, 0x08
CLIENT, SERVER = "10.1.0.1", "10.1.0.2"


def block(offset, payload, descriptor=0):
    return BLOCK.pack(descriptor, len(payload), offset) + payload


def eod(eof_count=None):
    if eof_count is None:
        return BLOCK.pack(EOD, 0, 0)
    return BLOCK.pack(EOF | EOD, 0, eof_count)


def file_bytes(size):
    return (bytes(range(251)) * (size // 251 + 1))[:size]


def round_robin(size, streams, block_size=65536):
    """Per stream: the (offset, length) blocks a sender would give it."""
    plan = [[] for _ in range(streams)]
    for i, offset in enumerate(range(0, size, block_size)):
        plan[i % streams].append((offset, min(block_size, size - offset)))
    return plan


def stream_bytes(plan_for_stream, data, trailer):
    return b"".join(block(o, data[o:o + n]) for o, n in plan_for_stream) + trailer


def gridftp_login(ses):
    ses.reply("220 GridFTP Server ready.\r\n")
    ses.cmd("USER anonymous\r\n")
    ses.reply("331 Password required\r\n")
    ses.cmd("PASS x\r\n")
    ses.reply("230 logged in\r\n")
    ses.cmd("TYPE I\r\n")
    ses.reply("200 Type set to I.\r\n")
    ses.cmd("MODE E\r\n")
    ses.reply("200 Mode set to E.\r\n")


def send_stream(ses, sender, payload, segment=1000):
    """Split anywhere, so headers straddle segments."""
    for i in range(0, len(payload), segment):
        ses.add(sender.send(ACK, payload[i:i + segment]), sender.peer.send(ACK))


def download(ses, streams, payloads, port=40539, first_src=51000, reply=True):
    """Server opens `streams` connections to the client's PORT and sends payloads[i]."""
    ses.cmd("OPTS RETR Parallelism=%d,%d,%d;\r\n" % (streams, streams, streams))
    ses.reply("200 OPTS Command Successful.\r\n")
    ses.cmd("PORT %s\r\n" % pasv_numbers(CLIENT, port))
    ses.reply("200 PORT Command successful.\r\n")
    ses.cmd("RETR /data/file.bin\r\n")
    ses.reply("150 Beginning transfer.\r\n")
    conns = [ses.data_open(SERVER, first_src + i, CLIENT, port) for i in range(streams)]
    for (a, b), payload in zip(conns, payloads):
        send_stream(ses, a, payload)
    for a, b in conns:
        ses.data_close(a, b)
    if reply:
        ses.reply("226 Transfer Complete.\r\n")
    return conns


def finish(ses):
    ses.cmd("QUIT\r\n")
    ses.reply("221 Goodbye.\r\n")
    ses.close()


def only_end(events):
    ends = [e for e in events if e["event"] == "transfer_end"]
    assert len(ends) == 1, ends
    return ends[0]


def data_uids(rows, port):
    return sorted(r["uid"] for r in rows if r["id.resp_p"] == port)


@pytest.mark.parametrize("streams", [1, 3, 4])
def test_parallel_download_counts_every_stream_exactly(run, streams):
    size = 1_000_003
    data = file_bytes(size)
    plan = round_robin(size, streams)
    payloads = [stream_bytes(p, data, eod(streams if i == streams - 1 else None))
                for i, p in enumerate(plan)]
    ses = Session(port=2811)
    gridftp_login(ses)
    download(ses, streams, payloads)
    finish(ses)
    rows, events, _, transfers = run(ses, analyser=GridFtp)
    assert run.stats["analyser_errors"] == 0
    uids = data_uids(rows, 40539)
    assert len(uids) == streams
    (t,) = transfers
    assert (t["protocol"], t["command"], t["bytes"], t["streams"]) == (
        "gridftp", "RETR", str(size), str(streams))
    assert sorted(t["data_uids"].split(",")) == uids
    end = only_end(events)
    by_port = {r["uid"]: r["id.orig_p"] for r in rows}
    per_stream = {by_port[u]: n for u, n in end["bytes_per_stream"].items()}
    assert per_stream == {51000 + i: sum(n for _, n in plan[i]) for i in range(streams)}
    assert end["coverage"]["complete"] is True and end["coverage"]["holes"] == []
    assert (end["eods"], end["eod_count_expected"]) == (streams, streams)
    assert {r["service"] for r in rows if r["id.resp_p"] == 40539} == {"gridftp-data"}
    assert next(r for r in rows if r["id.resp_p"] == 2811)["service"] == "ftp,gridftp"
    # Block bodies were skipped in compiled code: Python saw headers and lines only.
    assert run.stats["stream_delivered_bytes"] < 20_000
    assert run.stats["stream_skipped_bytes"] >= size


def test_out_of_order_offsets_still_cover_the_file(run):
    size = 300_000
    data = file_bytes(size)
    plan = round_robin(size, 2, block_size=10_000)
    plan = [list(reversed(p)) for p in plan]
    payloads = [stream_bytes(plan[0], data, eod()), stream_bytes(plan[1], data, eod(2))]
    ses = Session(port=2811)
    gridftp_login(ses)
    download(ses, 2, payloads)
    finish(ses)
    _, events, _, transfers = run(ses, analyser=GridFtp)
    end = only_end(events)
    assert end["bytes"] == size and end["coverage"]["complete"] is True
    assert end["coverage"]["ranges"] == 1


def test_holes_and_overlaps_are_reported(run):
    size = 100_000
    data = file_bytes(size)
    blocks_a = [(0, 20_000), (40_000, 20_000)]              # 20000-40000 never sent
    blocks_b = [(60_000, 40_000), (50_000, 20_000)]         # 50000-70000 sent twice
    payloads = [stream_bytes(blocks_a, data, eod()), stream_bytes(blocks_b, data, eod(2))]
    ses = Session(port=2811)
    gridftp_login(ses)
    download(ses, 2, payloads)
    finish(ses)
    _, events, _, _ = run(ses, analyser=GridFtp)
    end = only_end(events)
    cov = end["coverage"]
    assert end["bytes"] == 100_000                          # sum of block counts, resent too
    assert cov["complete"] is False
    assert cov["holes"] == [[20_000, 40_000]] and cov["hole_bytes"] == 20_000
    assert cov["overlap_bytes"] == 20_000 and cov["covered_to"] == 100_000


def test_missing_eod_against_the_eof_count(run):
    size = 50_000
    data = file_bytes(size)
    # The EOF header says 3 EODs, only 2 streams send one.
    payloads = [stream_bytes([(0, 25_000)], data, eod()),
                stream_bytes([(25_000, 25_000)], data, eod(3))]
    ses = Session(port=2811)
    gridftp_login(ses)
    download(ses, 2, payloads)
    finish(ses)
    _, events, _, _ = run(ses, analyser=GridFtp)
    end = only_end(events)
    assert (end["eods"], end["eod_count_expected"]) == (2, 3)
    assert end["coverage"]["complete"] is False and end["coverage"]["hole_bytes"] == 0


def test_upload_over_pasv_with_connections_not_announced(run):
    """Uploads send no OPTS: the client opens as many connections as it likes."""
    size = 700_001
    data = file_bytes(size)
    plan = round_robin(size, 3)
    payloads = [stream_bytes(p, data, eod(3 if i == 0 else None)) for i, p in enumerate(plan)]
    ses = Session(port=2811)
    gridftp_login(ses)
    ses.cmd("PASV\r\n")
    ses.reply("227 Entering Passive Mode (%s)\r\n" % pasv_numbers(SERVER, 57561))
    ses.cmd("ALLO %d\r\n" % size)
    ses.reply("200 ALLO command successful.\r\n")
    ses.cmd("STOR /up/file.bin\r\n")
    conns = [ses.data_open(CLIENT, 38400 + i, SERVER, 57561) for i in range(3)]
    ses.reply("150 Beginning transfer.\r\n")
    for (a, b), payload in zip(conns, payloads):
        send_stream(ses, a, payload)
    ses.reply("111 Range Marker 0-%d\r\n" % size)
    for a, b in conns:
        ses.data_close(a, b)
    ses.reply("226 Transfer Complete.\r\n")
    finish(ses)
    rows, events, _, transfers = run(ses, analyser=GridFtp)
    (t,) = transfers
    assert (t["command"], t["bytes"], t["streams"], t["size_announced"]) == (
        "STOR", str(size), "3", str(size))
    assert sorted(t["data_uids"].split(",")) == data_uids(rows, 57561)
    end = only_end(events)
    assert end["coverage"]["complete"] is True and end["size_matches"] is True


def test_striped_spor_download(run):
    size = 400_000
    data = file_bytes(size)
    plan = round_robin(size, 2, block_size=50_000)
    ses = Session(port=2811)
    gridftp_login(ses)
    ses.cmd("SPOR %s %s\r\n" % (pasv_numbers(CLIENT, 41001), pasv_numbers("10.1.0.9", 41002)))
    ses.reply("200 SPOR Command successful.\r\n")
    ses.cmd("RETR /striped.bin\r\n")
    ses.reply("150 Beginning transfer.\r\n")
    a1, b1 = ses.data_open(SERVER, 52001, CLIENT, 41001)
    a2, b2 = ses.data_open(SERVER, 52002, "10.1.0.9", 41002)
    send_stream(ses, a1, stream_bytes(plan[0], data, eod()))
    send_stream(ses, a2, stream_bytes(plan[1], data, eod(2)))
    ses.data_close(a1, b1)
    ses.data_close(a2, b2)
    ses.reply("226 Transfer Complete.\r\n")
    finish(ses)
    rows, events, _, transfers = run(ses, analyser=GridFtp)
    (t,) = transfers
    assert (t["bytes"], t["streams"]) == (str(size), "2")
    assert sorted(t["data_uids"].split(",")) == sorted(
        r["uid"] for r in rows if r["id.resp_p"] in (41001, 41002))
    assert only_end(events)["coverage"]["complete"] is True


def test_cached_data_connections_carry_two_transfers(run):
    """After EOD a MODE E connection may carry the next transfer."""
    ses = Session(port=2811)
    gridftp_login(ses)
    ses.cmd("OPTS RETR Parallelism=2,2,2;\r\n")
    ses.reply("200 OPTS Command Successful.\r\n")
    ses.cmd("PORT %s\r\n" % pasv_numbers(CLIENT, 40600))
    ses.reply("200 PORT Command successful.\r\n")
    conns = None
    for name, size in (("first.bin", 30_000), ("second.bin", 50_000)):
        data = file_bytes(size)
        ses.cmd("RETR /%s\r\n" % name)
        ses.reply("150 Beginning transfer.\r\n")
        if conns is None:
            conns = [ses.data_open(SERVER, 53001 + i, CLIENT, 40600) for i in range(2)]
        half = size // 2
        send_stream(ses, conns[0][0], stream_bytes([(0, half)], data, eod()))
        send_stream(ses, conns[1][0], stream_bytes([(half, size - half)], data, eod(2)))
        ses.reply("226 Transfer Complete.\r\n")
    for a, b in conns:
        ses.data_close(a, b)
    finish(ses)
    rows, events, _, transfers = run(ses, analyser=GridFtp)
    assert [(t["file"], t["bytes"], t["streams"]) for t in transfers] == [
        ("/first.bin", "30000", "2"), ("/second.bin", "50000", "2")]
    ends = [e for e in events if e["event"] == "transfer_end"]
    assert all(e["coverage"]["complete"] for e in ends)


def test_protected_data_channel_falls_back_to_counting(run):
    ses = Session(port=2811)
    gridftp_login(ses)
    ses.cmd("DCAU A\r\n")
    ses.reply("200 DCAU A.\r\n")
    tls_like = [b"\x16\x03\x01" + bytes(range(200)) * 20, b"\x17\x03\x01" + b"\x55" * 3000]
    download(ses, 2, tls_like, port=40700)
    finish(ses)
    rows, events, _, transfers = run(ses, analyser=GridFtp)
    assert run.stats["analyser_errors"] == 0
    (t,) = transfers
    assert t["streams"] == "2" and int(t["bytes"]) == sum(len(p) for p in tls_like)
    end = only_end(events)
    assert end["bytes_exact"] is False and "coverage" not in end
    assert {r["service"] for r in rows if r["id.resp_p"] == 40700} == {"gridftp-data"}
    assert not [e for e in events if e["event"] == "mode_e_stream"]


def test_garbage_on_a_mode_e_connection_is_a_weird(run):
    ses = Session(port=2811)
    gridftp_login(ses)
    download(ses, 1, [BLOCK.pack(0x03, 5, 0) + b"hello" + b"junk" * 100], port=40800)
    finish(ses)
    _, events, _, transfers = run(ses, analyser=GridFtp)
    assert run.stats["analyser_errors"] == 0
    assert any(e["event"] == "weird" and e["name"] == "gridftp_mode_e_bad_descriptor"
               for e in events)
    assert only_end(events)["problems"] == ["bad_descriptor"]


def test_eod_count_reached_withdraws_the_extra_expectation(run):
    """MODE E expects one connection more than have come; once every EOD the
    EOF header announced is in, that one is withdrawn: a later connection to
    the port is not taken as a data connection.  The next transfer on the same
    channel expects one more again, and its new connection is linked."""
    size = 40_000
    data = file_bytes(size)
    ses = Session(port=2811)
    gridftp_login(ses)
    download(ses, 2, [stream_bytes([(0, 20_000)], data, eod()),
                      stream_bytes([(20_000, 20_000)], data, eod(2))],
             port=40900, reply=False)
    a, b = ses.data_open(SERVER, 59999, CLIENT, 40900)       # after the last EOD
    ses.data_send(a, 100)
    ses.data_close(a, b)
    ses.reply("226 Transfer Complete.\r\n")
    ses.wait(10)                          # the closed connections are over (linger)
    ses.cmd("RETR /data/second.bin\r\n")                   # same channel, new connection
    ses.reply("150 Beginning transfer.\r\n")
    a2, b2 = ses.data_open(SERVER, 51010, CLIENT, 40900)
    send_stream(ses, a2, stream_bytes([(0, size)], data, eod(1)))
    ses.data_close(a2, b2)
    ses.reply("226 Transfer Complete.\r\n")
    finish(ses)
    rows, events, _, transfers = run(ses, analyser=GridFtp)
    assert run.stats["analyser_errors"] == 0
    stray = next(r for r in rows if r["id.orig_p"] == 59999)
    assert stray["service"] is None
    assert stray["uid"] not in {e["uid"] for e in events if e["event"] == "expected_connection"}
    second = next(r for r in rows if r["id.orig_p"] == 51010)
    assert [(t["file"], t["bytes"], t["streams"]) for t in transfers] == [
        ("/data/file.bin", str(size), "2"), ("/data/second.bin", str(size), "1")]
    assert transfers[1]["data_uids"] == second["uid"] and second["service"] == "gridftp-data"
    assert run.stats["expectations_cancelled"] >= 2
    assert run.runtime.pending_expectations == 0


def test_too_many_expected_connections_are_refused(run):
    """The safety bound: SPOR with 3 endpoints at Parallelism=64 would expect
    192 connections; 128 are pending at most."""
    ses = Session(port=2811)
    gridftp_login(ses)
    ses.cmd("OPTS RETR Parallelism=64,64,64;\r\n")
    ses.reply("200 OPTS Command Successful.\r\n")
    hosts = [pasv_numbers("10.1.0.%d" % (10 + i), 41000 + i) for i in range(3)]
    ses.cmd("SPOR %s\r\n" % " ".join(hosts))
    ses.reply("200 SPOR Command successful.\r\n")
    finish(ses)
    _, events, _, _ = run(ses, analyser=GridFtp)
    too_many = [e for e in events if e["event"] == "weird"
                and e["name"] == "FTP_too_many_expected_data_channels"]
    assert len(too_many) == 192 - 128
    assert run.stats["expectations_added"] == 128
    assert run.stats["expectations_cancelled"] == 128        # withdrawn when it closed


# -- a GSI-protected control channel: data channels expected on any port ----------------

def tls_record(content, body):
    return struct.pack("!BHH", content, 0x0301, len(body)) + body


def tls_handshake(kind, body):
    return tls_record(22, bytes([kind]) + len(body).to_bytes(3, "big") + body)


def tls_client_flight():
    hello = tls_handshake(1, b"\x03\x01" + bytes(32) + b"\x00" + b"\x00\x02\x00\x02\x01\x00")
    return hello, tls_handshake(11, b"\x00\x00\x03" + b"abc") + tls_record(20, b"\x01")


def tls_server_flight(cipher=0x0002):
    server_hello = b"\x03\x01" + bytes(32) + b"\x00" + struct.pack("!H", cipher) + b"\x00"
    return (tls_handshake(2, server_hello) + tls_handshake(11, b"\x00\x00\x03" + b"abc")
            + tls_record(20, b"\x01"))


def gsi_session(ses):
    """AUTH GSSAPI, a TLS-looking ADAT, then every command wrapped in ENC."""
    import base64
    ses.reply("220 GridFTP Server ready.\r\n")
    ses.cmd("AUTH GSSAPI\r\n")
    ses.reply("334 Using authentication type GSSAPI; ADAT must follow\r\n")
    token = base64.b64encode(b"\x16\x03\x01\x00\x04abcd").decode()
    ses.cmd("ADAT %s\r\n" % token)
    ses.reply("235 ADAT=%s\r\n" % token)
    ses.cmd("ENC %s\r\n" % base64.b64encode(b"\x17" + bytes(40)).decode())
    ses.reply("633 %s\r\n" % base64.b64encode(b"\x17" + bytes(30)).decode())


def tls_data_connection(ses, orig_h, orig_p, resp_h, resp_p, size=5000):
    a, b = ses.data_open(orig_h, orig_p, resp_h, resp_p)
    hello, rest = tls_client_flight()
    ses.add(a.send(ACK, hello), b.send(ACK, tls_server_flight()), a.send(ACK, rest))
    left = size                        # application data, in TLS records
    while left > 0:
        n = min(1395, left)
        ses.add(b.send(ACK, tls_record(23, bytes(n))), a.send(ACK))
        left -= n
    ses.data_close(b, a)


def test_gsi_protected_session_links_its_hidden_data_channels(run):
    """The PASV/PORT replies are inside ENC: TLS connections between the two
    hosts, either way and on any port, are its data channels (linked, labelled
    ssl,gridftp-data); a second control connection to 2811 is its own gridftp
    session; a non-TLS connection is not a data channel; once the control
    connection has closed nothing more is expected."""
    ses = Session(port=2811)
    gsi_session(ses)
    tls_data_connection(ses, CLIENT, 35391, SERVER, 55968)          # passive
    tls_data_connection(ses, SERVER, 20, CLIENT, 44000)              # active
    c2, s2 = ses.data_open(CLIENT, 40001, SERVER, 2811)             # a second session
    ses.add(s2.send(ACK, b"220 GridFTP Server ready.\r\n"))
    ses.add(c2.send(ACK, b"MODE E\r\n"))
    ses.add(s2.send(ACK, b"200 Mode set to E.\r\n"))
    ses.data_close(c2, s2)
    a, b = ses.data_open(SERVER, 2222, CLIENT, 45000)                  # not TLS
    ses.add(a.send(ACK, b"SSH-2.0-OpenSSH_9.2\r\n"))
    ses.data_close(a, b)
    finish(ses)
    ses.wait(5)
    tls_data_connection(ses, CLIENT, 35400, SERVER, 56000)           # after the close
    rows, events, _, _ = run(ses, analyser=GridFtp)
    assert run.stats["analyser_errors"] == 0
    by_port = {(r["id.orig_p"], r["id.resp_p"]): r for r in rows}
    control = by_port[(40000, 2811)]
    links = {e["uid"]: e["parent_uid"] for e in events if e["event"] == "expected_connection"}
    for key in ((35391, 55968), (20, 44000)):
        assert by_port[key]["service"] == "ssl,gridftp-data"
        assert links[by_port[key]["uid"]] == control["uid"]
    labels = [e for e in events if e["event"] == "gridftp_data_channel"]
    assert {e["control_uid"] for e in labels} == {control["uid"]} and len(labels) == 2
    assert by_port[(40001, 2811)]["service"] == "ftp,gridftp"         # its own session
    assert by_port[(2222, 45000)]["service"] is None
    not_data = {e["uid"]: e["reason"] for e in events
                if e["event"] == "gridftp_not_data_channel"}
    assert not_data == {by_port[(40001, 2811)]["uid"]: "control port",
                        by_port[(2222, 45000)]["uid"]: "not TLS from the originator"}
    late = by_port[(35400, 56000)]
    assert late["uid"] not in links and late["service"] is None
    assert run.runtime.pending_expectations == 0


def test_block_tally_merges_ranges():
    tally = BlockTally()
    for offset in (30, 10, 0, 20):
        tally.add_block("a", offset, 10)
    tally.add_block("b", 35, 10)
    assert (tally.starts, tally.ends, tally.overlap_bytes, tally.bytes) == ([0], [45], 5, 50)
    assert tally.coverage(50)["holes"] == [[45, 50]]


# -- real software ----------------------------------------------------------------------

REAL_TRACES = sorted((REPO / "traces").glob("gridftp-*.json"))


def move_server_port(src, dst, old: int, new: int) -> None:
    """Copy an Ethernet capture with TCP port `old` renumbered `new` (the
    checksums go stale; the analyser ignores them by default, as tcpdump does)."""
    import dpkt
    with open(src, "rb") as f, open(dst, "wb") as g:
        reader = dpkt.pcap.Reader(f)
        writer = dpkt.pcap.Writer(g, linktype=reader.datalink())
        for ts, buf in reader:
            eth = dpkt.ethernet.Ethernet(buf)
            tcp = getattr(eth.data, "data", None)
            if isinstance(tcp, dpkt.tcp.TCP):
                if tcp.sport == old:
                    tcp.sport = new
                if tcp.dport == old:
                    tcp.dport = new
                buf = bytes(eth)
            writer.writepkt(buf, ts)


def moved(truth: dict, old: int, new: int) -> dict:
    """The ground truth with the control port renumbered as move_server_port does."""
    text = json.dumps(truth).replace('"resp_p": %d' % old, '"resp_p": %d' % new)
    return json.loads(text)


@pytest.mark.skipif(not REAL_TRACES, reason="no real GridFTP traces in traces/")
@pytest.mark.parametrize("control_port", [2811, 5811], ids=["port-2811", "port-5811"])
@pytest.mark.parametrize("truth_file", REAL_TRACES, ids=lambda p: p.stem)
def test_real_globus_capture_matches_its_ground_truth(run_cli, tmp_path, truth_file,
                                                      control_port):
    """On 2811 and, with no option, on a port nobody names (found by content)."""
    truth = json.loads(truth_file.read_text())
    pcap = truth_file.with_suffix(".pcap")
    if control_port != 2811:
        moved_pcap = tmp_path / "moved.pcap"
        move_server_port(pcap, moved_pcap, 2811, control_port)
        pcap, truth = moved_pcap, moved(truth, 2811, control_port)
    (tmp_path / "out").mkdir()
    proc = run_cli("replay", pcap, "--logs", tmp_path / "out", "--events",
                   tmp_path / "out" / "events.json", "-q")
    assert proc.returncode == 0, proc.stderr
    conn = read_zeek_log(tmp_path / "out" / "conn.log")
    events = [json.loads(l) for l in (tmp_path / "out" / "events.json").read_text().splitlines()]
    assert not [e for e in events if e["event"] == "analyser_error"]
    ends = [e for e in events if e["event"] == "transfer_end"]
    assert len(ends) == len(truth["transfers"])
    key = {(r["id.orig_h"], int(r["id.orig_p"]), r["id.resp_h"], int(r["id.resp_p"])): r["uid"]
           for r in conn}
    for end, t in zip(ends, truth["transfers"]):
        assert (end["command"], end["file"], end["bytes"], end["streams"]) == (
            t["command"], t["file"], t["bytes"], t["streams_seen"])
        expected = {key[(d["orig_h"], d["orig_p"], d["resp_h"], d["resp_p"])]: d["data_bytes"]
                    for d in t["data_connections"]}
        assert end["bytes_per_stream"] == expected
        assert end["coverage"]["complete"] is t["coverage"]["complete"]
        assert end["coverage"]["covered_to"] == t["coverage"]["covered_to"]
        assert (end["eods"], end["eod_count_expected"]) == (t["eods_seen"],
                                                            t["eod_count_expected"])
        control = t["control"]
        assert control["resp_p"] == control_port
        assert end["uid"] == key[(control["orig_h"], control["orig_p"], control["resp_h"],
                                  control["resp_p"])]
        assert end["protocol"] == "gridftp"


# -- Zeek's data-channel labelling ------------------------------------------------------------

GRIDFTP_CASE = CONFORMANCE / "gridftp-globus-url-copy"


@pytest.mark.skipif(not GRIDFTP_CASE.exists(), reason="../shared/conformance is not present")
@pytest.mark.parametrize("options", [[], ["--no-analyser", "gridftp",
                                          "--analyser", "gridftp-data:size_threshold=2"]],
                         ids=["control-session", "zeek-size-heuristic"])
def test_conformance_case_labels_the_data_channel_as_zeek_does(run_cli, tmp_path, options):
    """Zeek's baseline: control `ftp,ssl,gridftp`, data `ssl,gridftp-data`.  The
    control channel is GSI-encrypted, so the data channel is found either by
    its live GSSAPI control session between the same hosts, or (the case's own
    Zeek option size_threshold=2) by Zeek's NULL-cipher + size heuristic."""
    proc = run_cli("replay", GRIDFTP_CASE / "globus-url-copy.pcap", "--logs", tmp_path, "-q",
                   "--events", tmp_path / "events.json", *options)
    assert proc.returncode == 0, proc.stderr
    ours = {(r["id.orig_p"], r["id.resp_p"]): r["service"]
            for r in read_zeek_log(tmp_path / "conn.log")}
    theirs = {(r["id.orig_p"], r["id.resp_p"]): r["service"]
              for r in read_zeek_log(GRIDFTP_CASE / "conn.log")}
    data_key = ("35391", "55968")
    assert theirs[data_key] == "ssl,gridftp-data"
    assert ours[data_key] == theirs[data_key]
    if not options:
        assert ours == theirs
        # The PASV reply is hidden (ENC), yet the data connection is linked to
        # its control session: GridFtp expects any port between the two hosts.
        events = [json.loads(l) for l in (tmp_path / "events.json").read_text().splitlines()]
        uids = {(r["id.orig_p"], r["id.resp_p"]): r["uid"]
                for r in read_zeek_log(tmp_path / "conn.log")}
        links = {e["uid"]: e["parent_uid"] for e in events
                 if e["event"] == "expected_connection"}
        assert links == {uids[data_key]: uids[("60108", "2811")]}


def test_no_label_without_control_session_or_threshold(run_cli, tmp_path):
    if not GRIDFTP_CASE.exists():
        pytest.skip("../shared/conformance is not present")
    proc = run_cli("replay", GRIDFTP_CASE / "globus-url-copy.pcap", "--logs", tmp_path, "-q",
                   "--no-analyser", "gridftp")
    assert proc.returncode == 0, proc.stderr
    services = {r["id.resp_p"]: r["service"] for r in read_zeek_log(tmp_path / "conn.log")}
    assert services["55968"] == "ssl"        # TLS seen, 1 GiB default threshold not crossed
