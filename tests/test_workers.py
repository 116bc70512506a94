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


def test_bad_input_and_options_with_workers(run_cli, tmp_path):
    p = run_cli("replay", tmp_path / "missing.pcap", "--workers", "2", "--logs", tmp_path)
    assert p.returncode == 1 and "missing.pcap" in p.stderr and "Traceback" not in p.stderr
    p = run_cli("replay", REPO / "traces" / "ftp-loopback.pcap", "--workers", "0")
    assert p.returncode == 2
    p = run_cli("replay", REPO / "traces" / "ftp-loopback.pcap", "--workers", "2",
                "--analyser", "nosuch", "--logs", tmp_path)
    assert p.returncode == 2 and p.stderr.count("unknown analyser") == 1
