"""`analyser replay --workers N` (analyser/workers.py): N processes, each
owning the connections between the host pairs that hash to it, write the
same rows and events as one; FTP data connections stay with their control
session even where a 5-tuple hash would have sent them elsewhere."""
from __future__ import annotations

import json

import pytest

from conftest import REPO, read_zeek_log
from packets import write_pcap
from test_ftp import Session, login, passive_retr


def ftp_sessions_trace(path, sessions=12):
    """FTP sessions between many host pairs, each with several transfers on
    data connections whose ports differ from their control connection's."""
    frames = []
    for i in range(sessions):
        ses = Session(client="10.2.%d.%d" % (i // 7, 10 + i), server="10.3.0.%d" % (1 + i % 3))
        ses.t += i * 0.013
        login(ses)
        for j in range(3):
            passive_retr(ses, 20000 + 97 * i + j, "f%d-%d.bin" % (i, j), 1000 * (i + 1) + j)
        ses.close()
        frames += ses.frames
    frames.sort(key=lambda f: f[0])
    write_pcap(path, frames)
    return path


def run_replay(run_cli, traces, out, *options):
    out.mkdir(parents=True, exist_ok=True)
    p = run_cli("replay", *traces, "--logs", out, "--events", out / "events.json", *options)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    return p


def rows(out, name):
    path = out / name
    return sorted(json.dumps(r, sort_keys=True) for r in read_zeek_log(path)) \
        if path.exists() else []


@pytest.fixture
def traces(tmp_path):
    return [REPO / "traces" / "ftp-loopback.pcap", REPO / "traces" / "gridftp-p4.pcap",
            ftp_sessions_trace(tmp_path / "sessions.pcap")]


def test_two_workers_write_the_same_rows_and_events_as_one(run_cli, tmp_path, traces):
    run_replay(run_cli, traces, tmp_path / "one")
    p = run_replay(run_cli, traces, tmp_path / "two", "--workers", "2")
    assert "(2 workers)" in p.stderr
    for name in ("conn.log", "ftp.log", "transfers.log"):
        one, two = rows(tmp_path / "one", name), rows(tmp_path / "two", name)
        assert one and one == two, name
    events = {}
    for run in ("one", "two"):
        events[run] = sorted((tmp_path / run / "events.json").read_text().splitlines())
    assert events["one"] == events["two"]
    # The merged logs are in order of ts, with one header.
    text = (tmp_path / "two" / "conn.log").read_text()
    assert text.count("#fields") == 1 and text.rstrip().splitlines()[-1].startswith("#close")
    stamps = [float(r["ts"]) for r in read_zeek_log(tmp_path / "two" / "conn.log")]
    assert stamps == sorted(stamps)
    assert not list((tmp_path / "two").glob(".workers-*"))      # scratch removed


def test_json_logs_and_events_of_two_workers_are_merged_in_ts_order(run_cli, tmp_path,
                                                                    traces):
    run_replay(run_cli, traces, tmp_path / "one", "--log-format", "json")
    run_replay(run_cli, traces, tmp_path / "two", "--log-format", "json", "--workers", "2")
    for name in ("conn.log", "ftp.log", "transfers.log"):
        one = (tmp_path / "one" / name).read_text().splitlines()
        two = (tmp_path / "two" / name).read_text().splitlines()
        assert one and sorted(one) == sorted(two), name
        stamps = [json.loads(line)["ts"] for line in two]
        assert stamps == sorted(stamps), name
    events = (tmp_path / "two" / "events.json").read_text().splitlines()
    stamps = [json.loads(line)["ts"] for line in events]
    assert len(events) > 100 and stamps == sorted(stamps)


def test_merging_keeps_rows_whole_and_ties_in_worker_order(tmp_path, monkeypatch):
    from analyser.workers import merge_log, merge_logs
    header = "#separator \\x09\n#fields\tts\tnote\n"
    # U+2028 and U+0085 are line breaks to str.splitlines(), not to a log.
    parts = {0: ["2.0\tzero-a\u2028still zero-a", "1.0\tzero-b", "3.0\ttie-0"],
             1: ["3.0\ttie-1", "0.5\tone-a\x85", "x\tno time: last"]}
    paths = []
    for k, lines in parts.items():
        paths.append(tmp_path / ("part%d.log" % k))
        paths[-1].write_text(header + "".join(line + "\n" for line in lines)
                             + "#close\t2026\n", encoding="utf-8")
    merge_log([str(p) for p in paths], str(tmp_path / "merged.log"))
    merged = (tmp_path / "merged.log").read_bytes().decode("utf-8").split("\n")
    assert merged[:2] == header.split("\n")[:2]
    assert [line.split("\t")[1] for line in merged[2:-2]] == [
        "one-a\x85", "zero-b", "zero-a\u2028still zero-a", "tie-0", "tie-1", "no time: last"]
    assert merged[-2:] == ["#close\t2026", ""]
    # Several logs at once in processes of their own: the same bytes.
    jobs = [([str(p) for p in paths], str(tmp_path / ("m%d.log" % i))) for i in range(3)]
    merge_logs(jobs, 2)
    for _, target in jobs:
        assert open(target, "rb").read() == (tmp_path / "merged.log").read_bytes()
    # No process to be had (fork refused): merged in this one, the same bytes.
    import multiprocessing.process

    def refused(self):
        raise OSError(12, "Cannot allocate memory")
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", refused)
    merge_logs([([str(p) for p in paths], str(tmp_path / "here.log"))] + jobs[:1], 2)
    assert (tmp_path / "here.log").read_bytes() == (tmp_path / "merged.log").read_bytes()
    monkeypatch.undo()
    # A merge that fails is reported, not lost.
    from analyser.workers import WorkerError
    with pytest.raises(WorkerError, match="missing"):
        merge_logs(jobs + [([str(tmp_path / "missing.log")], str(tmp_path / "m.log"))], 2)


def test_each_worker_owns_whole_host_pairs(tmp_path):
    from analyser import registry
    from analyser.replay import replay_files
    trace = ftp_sessions_trace(tmp_path / "sessions.pcap", sessions=16)
    analysers = registry.select()[0]
    single = []
    replay_files([str(trace)], on_connection=single.append, analysers=analysers)
    shares, events = [], []
    for k in range(2):
        share, ev = [], []
        replay_files([str(trace)], on_connection=share.append, analysers=analysers,
                     on_event=ev.append, worker=(k, 2))
        shares.append(share)
        events.append(ev)
    assert all(shares), "both workers have connections"
    uids = [{r["uid"] for r in share} for share in shares]
    assert not uids[0] & uids[1]
    assert sorted(json.dumps(r, sort_keys=True) for r in shares[0] + shares[1]) == \
        sorted(json.dumps(r, sort_keys=True) for r in single)
    pairs = [{frozenset((r["id.orig_h"], r["id.resp_h"])) for r in share} for share in shares]
    assert not pairs[0] & pairs[1]
    # Every transfer's data connection is on the worker of its control session,
    # though its 5-tuple (other ports) is not the control connection's.
    moved = 0
    for share, ev in zip(shares, events):
        by_uid = {r["uid"]: r for r in share}
        ends = [e for e in ev if e["event"] == "transfer_end"]
        assert ends
        for end in ends:
            for data_uid in end["data_uids"]:
                assert data_uid in by_uid
                moved += by_uid[data_uid]["id.resp_p"] != by_uid[end["uid"]]["id.resp_p"]
    assert moved == 16 * 3


def odd_packets_trace(path, pairs=24):
    """Between many host pairs, TCP packets a worker may leave uncopied
    (plain IPv4, IPv4 with options, IPv6, a wrong IP checksum when checksums
    are ignored) beside packets only decoding can place (fragments, UDP,
    VLAN tags, offloaded lengths, cut or malformed headers)."""
    import struct
    from packets import ethernet, tcp_packet, udp_packet

    def checksummed(header: bytearray) -> bytes:
        hlen = (header[0] & 0x0f) * 4
        struct.pack_into("!H", header, 10, 0)
        total = sum(struct.unpack("!%dH" % (hlen // 2), bytes(header[:hlen])))
        while total >> 16:
            total = (total & 0xffff) + (total >> 16)
        struct.pack_into("!H", header, 10, ~total & 0xffff)
        return ethernet(bytes(header), 0x0800)
    frames = []
    for i in range(pairs):
        a, b = "10.0.%d.1" % i, "10.0.%d.2" % i
        plain = tcp_packet(a, b, 40000 + i, 80, 0x02, seq=i)
        ip = bytearray(plain[14:])
        frames.append(plain)
        frames.append(tcp_packet("2001:db8::%x" % (i + 1), "2001:db8::ff", 40000, 80, 0x02,
                                 v6=True))
        bad_sum = bytearray(ip)
        bad_sum[10] ^= 0xff
        frames.append(ethernet(bytes(bad_sum), 0x0800))
        options = bytearray(ip[:20]) + b"\x01\x01\x01\x00" + ip[20:]
        options[0] = 0x46
        struct.pack_into("!H", options, 2, len(options))
        frames.append(checksummed(options))
        short_tcp = bytearray(ip)
        short_tcp[20 + 12] = 0x40                       # data offset 4: malformed
        frames.append(ethernet(bytes(short_tcp), 0x0800))
        frames.append((plain[:14 + 20 + 10], len(plain)))   # TCP header cut by the snap length
        fragment = bytearray(ip)
        fragment[6] |= 0x20                             # more fragments
        frames.append(checksummed(fragment))
        frames.append(udp_packet(a, b, 5000, 53, b"x" * 12))
        frames.append(ethernet(struct.pack("!HH", i + 1, 0x0800) + bytes(ip), 0x8100))
        offload = bytearray(ip)
        struct.pack_into("!H", offload, 2, 0)
        frames.append(checksummed(offload))
        too_long = bytearray(ip)
        struct.pack_into("!H", too_long, 2, len(ip) + 40)
        frames.append(checksummed(too_long))
    return write_pcap(path, [(1000.0 + 0.001 * n,) + (f if isinstance(f, tuple) else (f,))
                             for n, f in enumerate(frames)])


@pytest.mark.parametrize("trace_kind", ["ftp sessions", "odd packets"])
@pytest.mark.parametrize("ignore_checksums", [True, False])
def test_another_workers_packets_are_left_uncopied_and_counted_as_decoded(
        tmp_path, trace_kind, ignore_checksums):
    """A worker's source writes the packets of other workers' host pairs
    that decoding would certainly take to TCP into the ring without their
    bytes, and the worker counts them as decoding would have.  A filter
    (which must see every packet's bytes) turns that off: both runs count
    and write the same, for every worker."""
    from analyser import registry
    from analyser.replay import replay_files
    trace = (ftp_sessions_trace(tmp_path / "t.pcap", sessions=16) if trace_kind == "ftp sessions"
             else odd_packets_trace(tmp_path / "t.pcap"))
    analysers = registry.select()[0]
    for worker in ((0, 2), (1, 2)):
        runs = {}
        for name, bpf in (("elided", None), ("copied", "ip or ip6 or not ip")):
            records = []
            result = replay_files([str(trace)], on_connection=records.append,
                                  analysers=analysers, worker=worker, bpf=bpf,
                                  ignore_checksums=ignore_checksums)
            runs[name] = (result.stats, sorted(json.dumps(r, sort_keys=True) for r in records))
        elided, copied = runs["elided"][0], runs["copied"][0]
        assert 0 < elided["ring"]["other_workers_elided"] <= elided["other_workers"]
        assert copied["ring"]["other_workers_elided"] == 0
        assert elided["ring"]["bytes_written"] < copied["ring"]["bytes_written"]
        for key, value in copied.items():
            if key != "ring" and "seconds" not in key and "time" not in key:
                assert elided[key] == value, (worker, key)
        assert runs["elided"][1] == runs["copied"][1] and runs["elided"][1]
    if trace_kind == "odd packets":
        # What only decoding can tell was decoded: anomalies counted as ever.
        assert copied["fragments_seen"] == 24
        assert {"bad_tcp_header_length", "truncated_tcp_header", "bad_ip_total_length"} <= \
            set(copied["malformed"])
        assert ("bad_ip_checksum" in copied["malformed"]) is not ignore_checksums


def test_bad_input_and_options_with_workers(run_cli, tmp_path):
    p = run_cli("replay", tmp_path / "missing.pcap", "--workers", "2", "--logs", tmp_path)
    assert p.returncode == 1 and "missing.pcap" in p.stderr and "Traceback" not in p.stderr
    p = run_cli("replay", REPO / "traces" / "ftp-loopback.pcap", "--workers", "0")
    assert p.returncode == 2
    p = run_cli("replay", REPO / "traces" / "ftp-loopback.pcap", "--workers", "2",
                "--analyser", "nosuch", "--logs", tmp_path)
    assert p.returncode == 2 and p.stderr.count("unknown analyser") == 1


def test_workers_refuse_a_fifo_at_once(run_cli, tmp_path):
    """Each worker reads every file: a FIFO would be cut between them (the
    run hung, the up-front check having opened it).  Refused before anything
    opens it: no writer is needed for the answer."""
    import os
    fifo = tmp_path / "trace.fifo"
    os.mkfifo(fifo)
    p = run_cli("replay", fifo, "--workers", "2", "--logs", tmp_path / "out", timeout=60)
    assert p.returncode == 2
    assert str(fifo) in p.stderr and "--workers" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "out" / "conn.log").exists()
