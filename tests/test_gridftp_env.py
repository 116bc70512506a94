"""Tests of the GridFTP test tooling itself: the real-software environment
(tests/gridftp_env.py), the recorded sample traces and their ground truth
(traces/gridftp-*), and the synthetic MODE E generator (tests/modee_gen.py).

The real-software tests need root, `ip netns` and the Globus programs; they
skip with the reason otherwise.  Everything else runs anywhere with dpkt.
"""
from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
from pathlib import Path

import dpkt
import gridftp_env as genv
import pytest
from modee_gen import EOD, EOF, HEADER, gridftp_session, split_file
from packets import write_pcap

REPO = Path(__file__).resolve().parents[1]
TRACES = REPO / "traces"


# ---------------------------------------------------------------------------
# an independent little decoder: dpkt, per-connection reassembly by sequence
# number, MODE E walk.  Deliberately not gridftp_env's code.

def decode(path):
    """{(src, sport, dst, dport): {"syn_from": (h, p), "segs": {side: [(seq, bytes)]}}}"""
    conns = {}
    with open(path, "rb") as f:
        for _, buf in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(buf).data
            tcp = ip.data
            a = (socket.inet_ntoa(ip.src), tcp.sport)
            b = (socket.inet_ntoa(ip.dst), tcp.dport)
            key = tuple(sorted([a, b]))
            c = conns.setdefault(key, {"syn_from": None, "isn": {}, "segs": {}})
            if tcp.flags & dpkt.tcp.TH_SYN and not tcp.flags & dpkt.tcp.TH_ACK:
                c["syn_from"] = a
            if tcp.flags & dpkt.tcp.TH_SYN:
                c["isn"][a] = tcp.seq
            elif tcp.data:
                c["segs"].setdefault(a, []).append((tcp.seq - c["isn"][a] - 1, bytes(tcp.data)))
    return conns


def stream_of(segs):
    out = b""
    for seq, data in sorted(segs):
        assert seq == len(out), "generator left a gap or overlap in the TCP stream"
        out += data
    return out


def walk(data):
    blocks, i = [], 0
    while i < len(data):
        d, n, off = struct.unpack("!BQQ", data[i:i + 17])
        blocks.append([d, n, off])
        i += 17 + (0 if d & 0x40 else n)
    assert i == len(data)
    return blocks


# ---------------------------------------------------------------------------
# modee_gen


CASES = {
    "in-order-2": {"blocks_per_stream": split_file(10_000, 1000, 2)},
    "shuffled-4-awkward": {
        "blocks_per_stream": split_file(20_000, 777, 4, shuffle=True),
        "split": "awkward", "parallelism": 4},
    "holes-overlaps": {
        "blocks_per_stream": [[(0, 0, 1000), (0, 2500, 500)],
                              [(0, 1000, 1000), (0, 1800, 300)], []],
        "split": "awkward", "size": 3000},
    "eod-on-data-eodc-stream-2": {
        "blocks_per_stream": [[(0, 0, 100)], [(0, 100, 50)], [(EOD, 150, 10)]],
        "eodc_stream": 2},
    "upload-active-1-byte-segments": {
        "blocks_per_stream": [[(0, 5, 40)], [(0, 0, 5)]],
        "direction": "upload", "passive": False, "split": 1},
    "upload-spas-sequential": {
        "blocks_per_stream": split_file(5000, 512, 3), "spas": True,
        "direction": "upload", "order": "sequential"},
    "explicit-payload-and-eof": {
        "blocks_per_stream": [[(0, 0, b"hello "), (EOF | EOD, 2, 0)], [(0, 6, b"world")]],
        "auto_eod": False},
}


@pytest.mark.parametrize("name", CASES)
def test_modee_gen_decodes_to_what_it_claims(name, tmp_path):
    frames, truth = gridftp_session(**CASES[name])
    path = write_pcap(tmp_path / f"{name}.pcap", frames)
    conns = decode(path)
    ctrl = truth["control"]
    data_conns = {k: v for k, v in conns.items()
                  if (ctrl["resp_h"], ctrl["resp_p"]) not in k}
    assert len(data_conns) == truth["streams"] == len(truth["data_connections"])
    for dc in truth["data_connections"]:
        o, r = (dc["orig_h"], dc["orig_p"]), (dc["resp_h"], dc["resp_p"])
        c = data_conns[tuple(sorted([o, r]))]
        assert c["syn_from"] == o
        sender = o if dc["sender"] == "orig" else r
        receiver = r if sender == o else o
        assert receiver not in c["segs"]                   # data flows one way only
        segs = c["segs"].get(sender, [])
        assert [len(d) for _, d in sorted(segs)] == dc["segments"]
        data = stream_of(segs)
        assert len(data) == dc["stream_bytes"]
        assert walk(data) == dc["blocks"]
        assert sum(b[1] for b in dc["blocks"] if not b[0] & EOF) == dc["data_bytes"]
    # the direction of the data matches the command
    for dc in truth["data_connections"]:
        sender_h = dc["orig_h"] if dc["sender"] == "orig" else dc["resp_h"]
        want = ctrl["resp_h"] if truth["direction"] == "download" else ctrl["orig_h"]
        assert sender_h == want
    # the environment's capture analysis (another reader) agrees on everything
    (sess,) = genv.analyse_capture(path)["control_sessions"]
    (t,) = sess["transfers"]
    assert t["command"] == truth["command"] and t["file"] == truth["file"]
    assert t["data_setup"] == truth["data_setup"]
    assert t["parallelism"] == ([truth["parallelism"]] * 3 if truth["parallelism"] else None)
    assert t["reply_code"] == 226 and t["streams_seen"] == truth["streams"]
    assert [d["blocks"] for d in t["data_connections"]] == \
        [d["blocks"] for d in truth["data_connections"]]
    assert t["bytes"] == truth["bytes"]
    assert t["eod_count_expected"] == truth["eod_count_expected"]
    assert t["eods_seen"] == truth["eods_seen"]


def test_modee_gen_coverage_and_eodc_truth():
    _, t = gridftp_session(**CASES["holes-overlaps"])
    assert t["coverage"]["holes"] == [[2100, 2500]]
    assert t["coverage"]["overlaps"] == [[1800, 2000]]
    assert t["coverage"]["unique_bytes"] == 2600 and t["bytes"] == 2800
    assert not t["coverage"]["complete"]
    assert t["eods_seen"] == 3 and t["eod_count_expected"] == 3
    _, t = gridftp_session(**CASES["shuffled-4-awkward"])
    assert t["coverage"]["complete"] and t["bytes"] == 20_000
    offsets = [b[2] for b in t["data_connections"][0]["blocks"] if not b[0] & (EOF | EOD)]
    assert offsets != sorted(offsets)                        # really out of order
    _, t = gridftp_session(**CASES["eod-on-data-eodc-stream-2"])
    last = t["data_connections"][2]["blocks"]
    assert last == [[EOD, 10, 150], [EOF, 0, 3]]             # EOD on data, separate EOF
    assert t["data_connections"][0]["blocks"][-1] == [EOD, 0, 0]


def test_modee_gen_awkward_split_cuts_every_header():
    _, t = gridftp_session(**CASES["shuffled-4-awkward"])
    for dc in t["data_connections"]:
        cuts, pos = set(), 0
        for n in dc["segments"]:
            pos += n
            cuts.add(pos)
        hpos, pos = [], 0
        for d, n, _ in dc["blocks"]:
            hpos.append(pos)
            pos += HEADER.size + (0 if d & EOF else n)
        for h in hpos:
            if h + HEADER.size <= dc["stream_bytes"]:
                assert any(h < c < h + HEADER.size for c in cuts), f"header at {h} not cut"


def test_parse_modee_eof_header_and_truncation():
    data = struct.pack("!BQQ", 0, 3, 10) + b"abc" + struct.pack("!BQQ", EOF | EOD, 0, 4)
    assert genv.parse_modee(data) == ([(0, 3, 10), (EOF | EOD, 0, 4)], 0)
    assert genv.parse_modee(data[:19]) == ([(0, 3, 10)], -1)
    cov = genv.coverage([(0, 10), (20, 5), (5, 10)], 30)
    assert cov["holes"] == [[15, 20], [25, 30]] and cov["overlaps"] == [[5, 10]]


# ---------------------------------------------------------------------------
# the sample traces and their ground truth


SAMPLES = sorted(p.stem for p in TRACES.glob("gridftp-*.json"))


def test_sample_traces_exist():
    assert {"gridftp-p1", "gridftp-p4", "gridftp-upload-p3"} <= set(SAMPLES)


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_trace_matches_its_ground_truth(name):
    truth = json.loads((TRACES / f"{name}.json").read_text())
    pcap = TRACES / truth["trace"]
    assert pcap.stat().st_size < 2 * 1024 * 1024
    (t,) = truth["transfers"]
    req = t["request"]
    assert t["mode"] == "E" and t["dcau"] is None and t["reply_code"] == 226
    assert t["streams_seen"] == req["streams"] == len(t["data_connections"])
    assert t["bytes"] == req["size"] and t["coverage"]["complete"]
    assert t["eod_count_expected"] == t["eods_seen"] == req["streams"]
    assert t["server_log"]["NBYTES"] == str(req["size"])
    assert t["server_log"]["STREAMS"] == str(req["streams"])
    if req["direction"] == "download":
        assert t["command"] == "RETR" and t["data_setup"] == "PORT"
        assert t["parallelism"] == [req["streams"]] * 3
    else:
        assert t["command"] == "STOR" and t["data_setup"] in ("PASV", "SPAS")
    # re-derive from the pcap with the independent decoder above
    conns = decode(pcap)
    for dc in t["data_connections"]:
        o, r = (dc["orig_h"], dc["orig_p"]), (dc["resp_h"], dc["resp_p"])
        c = conns[tuple(sorted([o, r]))]
        assert c["syn_from"] == o
        sender = o if dc["sender"] == "orig" else r
        segs = {}
        for seq, d in c["segs"][sender]:          # retransmissions: keep one copy
            segs[seq] = d
        assert walk(stream_of(segs.items())) == dc["blocks"]


# ---------------------------------------------------------------------------
# real software (root only)


OK, WHY = genv.available()
real = pytest.mark.skipif(not OK, reason=f"real GridFTP environment unavailable: {WHY}")


def netns_list():
    return subprocess.run(["ip", "netns", "list"], check=False, capture_output=True,
                          text=True).stdout


def test_available_gives_a_reason():
    ok, why = genv.available()
    assert isinstance(ok, bool) and (ok or why)


@pytest.fixture(scope="module")
def env():
    with genv.GridFTPEnv() as e:        # server defaults: 256 KiB blocks
        yield e


@real
@pytest.mark.parametrize("direction,streams,size", [
    ("download", 1, 300_001), ("download", 4, 1_100_007), ("upload", 3, 900_011),
    ("upload", 1, 5),
])
def test_real_transfer_streams_and_blocks(env, tmp_path, direction, streams, size):
    data = os.urandom(size)
    name = f"{direction}-{streams}-{size}.bin"
    pcap = tmp_path / "t.pcap"
    extra = ["-bs", "262144"] if direction == "upload" else []
    with env.capture(pcap) as cap:
        if direction == "download":
            env.add_file(name, data)
            env.download(name, streams=streams)
        else:
            env.upload(name, data, streams=streams, extra_args=extra)
    assert cap.problems() == []
    (t,) = cap.truth["transfers"]
    assert t["mode"] == "E" and t["dcau"] is None
    assert t["streams_seen"] == streams == len(t["data_connections"])
    assert sum(b[1] for dc in t["data_connections"] for b in dc["blocks"]
               if not b[0] & genv.EOF) == size
    assert t["bytes"] == size and t["coverage"]["complete"]
    assert t["eod_count_expected"] == streams and t["eods_seen"] == streams
    assert t["server_log"]["NBYTES"] == str(size)
    assert t["server_log"]["STREAMS"] == str(streams)
    ctl = t["control"]
    for dc in t["data_connections"]:
        assert (dc["resp_h"], dc["resp_p"]) == tuple(t["endpoints"][0])
        sender_h = dc["orig_h"] if dc["sender"] == "orig" else dc["resp_h"]
        assert sender_h == (ctl["resp_h"] if direction == "download" else ctl["orig_h"])
    if direction == "download":
        assert t["data_setup"] == "PORT" and t["parallelism"] == [streams] * 3
    else:
        assert t["data_setup"] == "PASV" and t["parallelism"] is None


@real
def test_real_env_cleans_up():
    with genv.GridFTPEnv() as e:
        names = (e.client_ns, e.server_ns)
        server = e.server
        workdir = e.workdir
        listed = netns_list()
        assert all(n in listed for n in names)
        hosts = Path(f"/etc/netns/{e.server_ns}/hosts").read_text()
        assert socket.gethostname() in hosts and genv.SERVER_ADDR in hosts
    listed = netns_list()
    assert not any(n in listed for n in names)
    assert not any(os.path.exists(f"/etc/netns/{n}") for n in names)
    assert server.poll() is not None and not os.path.exists(workdir)


@real
def test_real_env_cleans_up_after_an_error():
    names = ()
    with pytest.raises(genv.GridFTPError), genv.GridFTPEnv() as e:
        names = (e.client_ns, e.server_ns)
        e.download("no-such-file.bin", streams=2)
    assert names
    listed = netns_list()
    assert not any(n in listed for n in names)
