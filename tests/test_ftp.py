"""The FTP analyser (protocols/ftp.py) through the engine: crafted control
sessions with data connections (multi-line replies, pipelining, malformed
and overlong lines, EPSV/EPRT over
IPv6, empty and multi-megabyte transfers, size mismatches, failures, data
connections ending before or after the final reply), the committed real
capture traces/ftp-loopback.pcap against its ground truth, and a fresh
capture of pyftpdlib and ftplib recorded by the test itself."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO, read_zeek_log
from packets import ACK, FIN, SYN, TcpPeer
from protocols.ftp import Ftp, build_path_compressed, parse_extended_port, parse_pasv_reply

CLIENT, SERVER = "10.1.0.1", "10.1.0.2"
CLIENT6, SERVER6 = "2001:db8::1", "2001:db8::21"


class Session:
    """A timeline of frames: one FTP control connection and its data
    connections, written the way the exchange reads."""

    def __init__(self, v6=False, client=CLIENT, server=SERVER, port=21):
        self.v6 = v6
        self.client_h, self.server_h = (CLIENT6, SERVER6) if v6 else (client, server)
        self.frames: list[tuple[float, bytes]] = []
        self.t = 1000.0
        self.c = TcpPeer(self.client_h, 40000, 1000, v6=v6)
        self.s = TcpPeer(self.server_h, port, 5000, v6=v6)
        self.c.connect(self.s)
        self.add(self.c.send(SYN), self.s.send(SYN | ACK), self.c.send(ACK))

    def add(self, *frames, step=0.001):
        for f in frames:
            self.t += step
            self.frames.append((self.t, f))

    def wait(self, seconds):
        self.t += seconds

    def cmd(self, text: str | bytes):
        self.add(self.c.send(ACK, text if isinstance(text, bytes) else text.encode()))

    def reply(self, text: str | bytes):
        self.add(self.s.send(ACK, text if isinstance(text, bytes) else text.encode()))

    def data_open(self, orig_h, orig_p, resp_h, resp_p):
        a = TcpPeer(orig_h, orig_p, 70000 + orig_p, v6=self.v6)
        b = TcpPeer(resp_h, resp_p, 90000 + resp_p, v6=self.v6)
        a.connect(b)
        self.add(a.send(SYN), b.send(SYN | ACK), a.send(ACK))
        return a, b

    def data_send(self, sender, size, chunk=1400):
        body = bytes(range(256)) * (chunk // 256 + 1)
        left = size
        while left > 0:
            n = min(chunk, left)
            self.add(sender.send(ACK, body[:n]), sender.peer.send(ACK))
            left -= n

    def data_close(self, a, b):
        self.add(a.send(FIN | ACK), b.send(FIN | ACK), a.send(ACK))

    def close(self):
        self.add(self.c.send(FIN | ACK), self.s.send(FIN | ACK), self.c.send(ACK))


def pasv_numbers(addr, port):
    return "%s,%d,%d" % (addr.replace(".", ","), port >> 8, port & 255)


def login(ses, user="anonymous", password="me@example.org"):
    ses.reply("220 test server ready\r\n")
    ses.cmd("USER %s\r\n" % user)
    ses.reply("331 send password\r\n")
    ses.cmd("PASS %s\r\n" % password)
    ses.reply("230 logged in\r\n")


def passive_retr(ses, port, name, size, announce=None, chunk=1400, close_before_reply=True):
    ses.cmd("PASV\r\n")
    ses.reply("227 Entering Passive Mode (%s)\r\n" % pasv_numbers(ses.server_h, port))
    a, b = ses.data_open(ses.client_h, 50000 + port % 1000, ses.server_h, port)
    ses.cmd("RETR %s\r\n" % name)
    ses.reply("150 Opening BINARY mode data connection for %s%s\r\n"
              % (name, " (%d bytes)" % announce if announce is not None else ""))
    ses.data_send(b, size, chunk)
    if close_before_reply:
        ses.data_close(b, a)
        ses.reply("226 Transfer complete\r\n")
    else:
        ses.reply("226 Transfer complete\r\n")
        ses.data_close(b, a)
    return a, b


@pytest.fixture
def run(tmp_path, replay):
    """run(session, **config) -> (conn rows, events, ftp.log rows, transfers.log rows)."""
    def go(ses, analyser=Ftp, **config):
        events = []
        cfg = {k: d for k, (d, _) in analyser.options.items()}
        cfg.update(config)
        logs = tmp_path / "logs"
        rows = replay(ses.frames, analysers=[(analyser, cfg)], on_event=events.append,
                      logs_dir=str(logs))
        ftp = read_zeek_log(logs / "ftp.log") if (logs / "ftp.log").exists() else []
        transfers = read_zeek_log(logs / "transfers.log") \
            if (logs / "transfers.log").exists() else []
        go.stats = replay.result.stats
        go.runtime = replay.result.engine.runtime
        return rows, events, ftp, transfers
    return go


def by_kind(events, kind):
    return [e for e in events if e["event"] == kind]


# -- Zeek's helpers ------------------------------------------------------------------

def test_zeek_path_building_follows_compress_path():
    assert build_path_compressed(".", "robots.txt") == "./robots.txt"
    assert build_path_compressed(".", "") == "."
    assert build_path_compressed("./pub/data/2015", "../") == "./pub/data"
    assert build_path_compressed("/a/b", "/etc/x") == "/etc/x"
    assert build_path_compressed("/a/b", "../../..") == "/.."


def test_extended_port_and_pasv_parsing():
    assert parse_extended_port("|||57086|") == ("::", 57086, True)
    assert parse_extended_port("|2|2001:db8::1|49189|") == ("2001:db8::1", 49189, True)
    assert parse_extended_port("|1|10.0.0.1|70000|")[2] is False
    assert parse_pasv_reply("Entering Passive Mode (10,0,0,1,4,31)") == ("10.0.0.1", 1055)
    assert parse_pasv_reply("=10,0,0,1,4,31") == ("10.0.0.1", 1055)
    assert parse_pasv_reply("Entering Passive Mode (10,0,0,300,4,31)") is None


# -- crafted sessions -------------------------------------------------------------------

def test_multiline_replies_and_pipelined_commands(run):
    ses = Session()
    ses.reply("220-Welcome\r\n220-second line\r\n")
    ses.reply(" free text line\r\n220 ready\r\n")
    ses.cmd("USER anonymous\r\nPASS guest@\r\n")           # pipelined in one segment
    ses.reply("331 send password\r\n230-Anonymous login\r\n230 ok\r\n")
    ses.cmd("TYPE I\r\nPASV\r\n")
    ses.reply("200 Type set\r\n")
    ses.reply("227 Entering Passive Mode (%s).\r\n" % pasv_numbers(SERVER, 6001))
    a, b = ses.data_open(CLIENT, 50001, SERVER, 6001)
    ses.cmd("RETR pub/file.bin\r\n")
    ses.reply("150-Opening BINARY mode data connection (4000 bytes)\r\n150 go\r\n")
    ses.data_send(b, 4000)
    ses.data_close(b, a)
    ses.reply("226 Transfer complete\r\n")
    ses.cmd("QUIT\r\n")
    ses.reply("221 bye\r\n")
    ses.close()
    rows, events, ftp, transfers = run(ses)
    assert run.stats["analyser_errors"] == 0
    assert [r["command"] for r in ftp] == ["PASV", "RETR"]
    pasv, retr = ftp
    assert pasv["reply_code"] == "227" and pasv["data_channel.resp_p"] == "6001"
    assert pasv["data_channel.passive"] == "T" and pasv["data_channel.orig_h"] == CLIENT
    assert retr["arg"] == "ftp://%s/./pub/file.bin" % SERVER
    # Zeek takes file_size from the last line of the 150 reply ("go": no number -> 0);
    # transfers.log reads the "(N bytes)" wherever it is.
    assert retr["file_size"] == "0" and retr["reply_code"] == "226"
    assert retr["user"] == "anonymous" and retr["password"] == "guest@"
    data = next(r for r in rows if r["id.resp_p"] == 6001)
    control = next(r for r in rows if r["id.resp_p"] == 21)
    assert data["service"] == "ftp-data" and control["service"] == "ftp"
    (t,) = transfers
    assert (t["command"], t["file"], t["bytes"], t["size_announced"], t["streams"],
            t["data_uids"], t["uid"], t["reply_code"]) == (
        "RETR", "pub/file.bin", "4000", "4000", "1", data["uid"], control["uid"], "226")
    (end,) = by_kind(events, "transfer_end")
    assert end["bytes_per_stream"] == {data["uid"]: 4000} and end["size_matches"] is True


def test_password_is_hidden_unless_the_login_is_anonymous(run):
    ses = Session()
    login(ses, user="alice", password="s3cret")
    passive_retr(ses, 6002, "a.txt", 10)
    ses.close()
    _, _, ftp, _ = run(ses)
    assert {r["password"] for r in ftp} == {"<hidden>"}
    assert {r["user"] for r in ftp} == {"alice"}


def test_malformed_and_overlong_lines_are_weirds_not_errors(run):
    ses = Session()
    login(ses)
    ses.cmd(b"\x01\x02 binary junk\r\n")                   # not a command
    ses.cmd(b"X" * 20000 + b" arg\r\n")                    # longer than any line we keep
    ses.reply(b"500 " + b"y" * 9000 + b"\r\n")
    ses.cmd("NOOP\r\n")
    ses.reply("200 ok\r\n")
    passive_retr(ses, 6003, "after.bin", 777)
    ses.close()
    rows, events, ftp, transfers = run(ses)
    assert run.stats["analyser_errors"] == 0
    weirds = {e["name"] for e in by_kind(events, "weird")}
    assert {"FTP_invalid_command", "FTP_line_too_long"} <= weirds
    # Parsing went on: the transfer after the garbage is complete.
    (t,) = transfers
    assert t["file"] == "after.bin" and t["bytes"] == "777" and t["reply_code"] == "226"


# Parsing without data connections (invalid replies, AUTH TLS, holes) is tested
# on the author's harness: tests/test_harness.py.


def test_epsv_and_eprt_over_ipv6(run):
    ses = Session(v6=True)
    login(ses)
    ses.cmd("EPSV\r\n")
    ses.reply("229 Entering Extended Passive Mode (|||57086|)\r\n")
    a, b = ses.data_open(CLIENT6, 49186, SERVER6, 57086)
    ses.cmd("RETR robots.txt\r\n")
    ses.reply("150 Opening (77 bytes)\r\n")
    ses.data_send(b, 77)
    ses.data_close(b, a)
    ses.reply("226 Transfer complete.\r\n")
    ses.cmd("EPRT |2|%s|49189|\r\n" % CLIENT6)
    ses.reply("200 EPRT command successful.\r\n")
    ses.cmd("STOR up.bin\r\n")
    a2, b2 = ses.data_open(SERVER6, 20, CLIENT6, 49189)    # the server connects
    ses.reply("150 ok\r\n")
    ses.data_send(b2, 5000)                                 # the client sends the file
    ses.data_close(a2, b2)
    ses.reply("226 Transfer complete.\r\n")
    ses.close()
    rows, events, ftp, transfers = run(ses)
    assert run.stats["analyser_errors"] == 0
    epsv, retr, eprt, stor = ftp
    assert (epsv["data_channel.resp_h"], epsv["data_channel.resp_p"]) == (SERVER6, "57086")
    assert retr["arg"] == "ftp://[%s]/./robots.txt" % SERVER6 and retr["file_size"] == "77"
    assert (eprt["data_channel.passive"], eprt["data_channel.orig_h"],
            eprt["data_channel.resp_h"]) == ("F", SERVER6, CLIENT6)
    uid = {r["id.resp_p"]: r["uid"] for r in rows}
    assert [(t["command"], t["bytes"], t["data_uids"]) for t in transfers] == [
        ("RETR", "77", uid[57086]), ("STOR", "5000", uid[49189])]


def test_zero_byte_and_multi_megabyte_transfers_both_ways(run):
    ses = Session()
    login(ses)
    passive_retr(ses, 6010, "empty.bin", 0, announce=0)
    passive_retr(ses, 6011, "big.bin", 5_000_003, announce=5_000_003, chunk=60000)
    ses.cmd("PORT %s\r\n" % pasv_numbers(CLIENT, 6012))
    ses.reply("200 PORT ok\r\n")
    ses.cmd("STOR big-up.bin\r\n")
    a, b = ses.data_open(SERVER, 20, CLIENT, 6012)
    ses.reply("150 ok\r\n")
    ses.data_send(b, 3_000_001, chunk=60000)               # the client (responder) sends
    ses.data_close(a, b)
    ses.reply("226 done\r\n")
    ses.close()
    rows, events, ftp, transfers = run(ses)
    assert run.stats["analyser_errors"] == 0
    # Data connections counted in compiled code: Python woke for none of their packets.
    assert run.stats["stream_delivered_bytes"] < 2000
    assert [(t["file"], t["bytes"], t["size_announced"]) for t in transfers] == [
        ("empty.bin", "0", "0"), ("big.bin", "5000003", "5000003"),
        ("big-up.bin", "3000001", "-")]
    port_row = next(r for r in ftp if r["command"] == "PORT")
    assert (port_row["data_channel.orig_h"], port_row["data_channel.resp_p"]) == (SERVER, "6012")


def test_without_an_event_sink_events_are_counted_and_the_logs_are_the_same(replay, tmp_path):
    """With nothing listening for events (no --events, Redis or metrics) the
    analysers skip making the fields of their costly events
    (`events_wanted`), but still count every event, and the logs do not
    change."""
    ses = Session()
    login(ses)
    passive_retr(ses, 6010, "a.bin", 1000, announce=1000)
    passive_retr(ses, 6011, "b.bin", 70000, announce=5, chunk=30000)
    ses.close()
    cfg = {k: d for k, (d, _) in Ftp.options.items()}
    seen = {}
    for name, sink in (("listened", []), ("unheard", None)):
        logs = tmp_path / name
        replay(ses.frames, analysers=[(Ftp, cfg)], logs_dir=str(logs),
               on_event=sink.append if sink is not None else None)
        seen[name] = (replay.result.stats["events_by_kind"],
                      replay.result.stats["events_emitted"],
                      {f: [r for r in read_zeek_log(logs / f)]
                       for f in ("conn.log", "ftp.log", "transfers.log")})
        if sink is not None:
            ends = by_kind(sink, "transfer_end")
            assert [(e["file"], e["bytes"], e["size_matches"]) for e in ends] == [
                ("a.bin", 1000, True), ("b.bin", 70000, False)]
            assert len(by_kind(sink, "expected_connection")) == 2
    assert seen["listened"] == seen["unheard"]
    assert seen["unheard"][0]["transfer_end"] == 2 == seen["unheard"][0]["transfer_start"]
    assert seen["unheard"][0]["expected_connection"] == 2


def test_size_announced_differs_from_bytes_seen(run):
    ses = Session()
    login(ses)
    passive_retr(ses, 6020, "short.bin", 900, announce=1000)
    ses.close()
    _, events, _, transfers = run(ses)
    (t,) = transfers
    assert (t["size_announced"], t["bytes"]) == ("1000", "900")
    (end,) = by_kind(events, "transfer_end")
    assert end["size_matches"] is False
    mismatch = [e for e in by_kind(events, "weird") if e["name"] == "FTP_transfer_size_mismatch"]
    assert mismatch and mismatch[0]["size_announced"] == 1000 and mismatch[0]["bytes"] == 900


def test_failed_transfer_is_reported_with_its_error(run):
    ses = Session()
    login(ses)
    ses.cmd("PASV\r\n")
    ses.reply("227 Entering Passive Mode (%s)\r\n" % pasv_numbers(SERVER, 6030))
    ses.cmd("RETR missing.bin\r\n")
    ses.reply("550 No such file\r\n")
    ses.cmd("QUIT\r\n")
    ses.close()
    _, events, ftp, transfers = run(ses)
    (t,) = transfers
    assert (t["reply_code"], t["streams"], t["bytes"], t["data_uids"]) == ("550", "0", "-",
                                                                        "(empty)")
    assert ftp[-1]["command"] == "RETR" and ftp[-1]["reply_code"] == "550"


@pytest.mark.parametrize("order", ["data_end_first", "reply_first"])
def test_data_connection_ending_before_or_after_the_final_reply(run, order):
    ses = Session()
    login(ses)
    ses.cmd("PASV\r\n")
    ses.reply("227 Entering Passive Mode (%s)\r\n" % pasv_numbers(SERVER, 6040))
    a, b = ses.data_open(CLIENT, 50040, SERVER, 6040)
    ses.cmd("RETR x.bin\r\n")
    ses.reply("150 Opening (2048 bytes)\r\n")
    ses.data_send(b, 2048)
    if order == "data_end_first":
        ses.data_close(b, a)
        ses.wait(30)            # past the linger: the data connection ends before the 226
        ses.reply("226 Transfer complete\r\n")
    else:
        ses.reply("226 Transfer complete\r\n")
        ses.wait(30)
        ses.data_close(b, a)
    ses.wait(30)
    ses.cmd("NOOP\r\n")
    ses.reply("200 ok\r\n")
    ses.close()
    rows, events, _, transfers = run(ses)
    (t,) = transfers
    data_uid = next(r["uid"] for r in rows if r["id.resp_p"] == 6040)
    assert (t["bytes"], t["data_uids"], t["reply_code"]) == ("2048", data_uid, "226")
    (end,) = by_kind(events, "transfer_end")
    # The report comes when the later of the two is known.
    if order == "data_end_first":
        assert end["ts"] < ses.t - 29            # at the 226, long before the control's end
    else:
        assert end["ts"] > ses.t - 31            # when the data connection ended, 30 s later
        assert end["duration"] < 1               # command to final reply


def test_control_connection_ending_first_flushes_when_the_data_ends(run):
    ses = Session()
    login(ses)
    ses.cmd("PASV\r\n")
    ses.reply("227 Entering Passive Mode (%s)\r\n" % pasv_numbers(SERVER, 6050))
    a, b = ses.data_open(CLIENT, 50050, SERVER, 6050)
    ses.cmd("RETR late.bin\r\n")
    ses.reply("150 ok\r\n")
    ses.data_send(b, 3000)
    ses.close()                                             # no 226: the control is gone
    ses.wait(20)
    ses.data_send(b, 1000)
    ses.data_close(b, a)
    _, _, _, transfers = run(ses)
    (t,) = transfers
    assert (t["bytes"], t["reply_code"]) == ("4000", "-")


def test_superseded_pasv_expectations_are_withdrawn(run):
    """150 PASVs nobody connected to: each is withdrawn when the next one
    replaces it, so none is refused and the last one still links its transfer."""
    ses = Session()
    login(ses)
    for i in range(150):
        ses.cmd("PASV\r\n")
        ses.reply("227 Entering Passive Mode (%s)\r\n" % pasv_numbers(SERVER, 7000 + i))
    passive_retr(ses, 6060, "f.bin", 10)
    ses.close()
    rows, events, _, transfers = run(ses)
    assert run.stats["analyser_errors"] == 0
    assert not [e for e in by_kind(events, "weird")
                if e["name"] == "FTP_too_many_expected_data_channels"]
    assert run.stats["expectations_added"] == 151
    assert run.stats["expectations_cancelled"] == 150
    assert run.stats["expectations_matched"] == 1
    assert run.runtime.pending_expectations == 0
    data = next(r for r in rows if r["id.resp_p"] == 6060)
    (t,) = transfers
    assert (t["file"], t["streams"], t["data_uids"], t["bytes"]) == ("f.bin", "1", data["uid"],
                                                                   "10")


def stray_connection(ses, orig_h, orig_p, resp_h, resp_p, size=300):
    """An unrelated connection (not announced by the control connection)."""
    a, b = ses.data_open(orig_h, orig_p, resp_h, resp_p)
    ses.data_send(a, size)
    ses.data_close(a, b)


@pytest.mark.parametrize("case", ["superseded", "failed_retr", "after_transfer"])
def test_stale_pasv_does_not_capture_a_later_connection(run, case):
    """A PASV that can no longer be used is withdrawn: a later connection to
    its port (from the same client) is not taken as an FTP data connection."""
    ses = Session()
    login(ses)
    ses.cmd("PASV\r\n")
    ses.reply("227 Entering Passive Mode (%s)\r\n" % pasv_numbers(SERVER, 6100))
    if case == "superseded":                 # replaced before any connection came
        passive_retr(ses, 6101, "real.bin", 500)
    elif case == "failed_retr":              # its transfer failed without a connection
        ses.cmd("RETR missing.bin\r\n")
        ses.reply("550 No such file\r\n")
    else:                                    # used, and its transfer is over
        a, b = ses.data_open(CLIENT, 50100, SERVER, 6100)
        ses.cmd("RETR real.bin\r\n")
        ses.reply("150 ok (500 bytes)\r\n")
        ses.data_send(b, 500)
        ses.data_close(b, a)
        ses.reply("226 Transfer complete\r\n")
    ses.cmd("NOOP\r\n")
    ses.reply("200 ok\r\n")
    stray_connection(ses, CLIENT, 50999, SERVER, 6100)     # well within the 300 s
    ses.cmd("QUIT\r\n")
    ses.reply("221 bye\r\n")
    ses.close()
    rows, events, _, transfers = run(ses)
    assert run.stats["analyser_errors"] == 0
    stray = next(r for r in rows if r["id.orig_p"] == 50999)
    assert stray["service"] is None                        # not ftp-data
    linked = {e["uid"] for e in by_kind(events, "expected_connection")}
    assert stray["uid"] not in linked
    # (used: its one expectation was met, nothing left to withdraw)
    assert run.stats.get("expectations_cancelled", 0) == (case != "after_transfer")
    assert run.runtime.pending_expectations == 0
    if case != "failed_retr":
        (t,) = transfers
        assert (t["file"], t["bytes"], t["streams"]) == ("real.bin", "500", "1")


def test_expectations_of_a_closed_control_connection_are_withdrawn(run):
    ses = Session()
    login(ses)
    ses.cmd("PORT %s\r\n" % pasv_numbers(CLIENT, 6200))
    ses.reply("200 PORT ok\r\n")
    ses.cmd("QUIT\r\n")
    ses.reply("221 bye\r\n")
    ses.close()
    ses.wait(20)
    stray_connection(ses, SERVER, 20, CLIENT, 6200)
    rows, events, _, _ = run(ses)
    stray = next(r for r in rows if r["id.resp_p"] == 6200)
    assert stray["service"] is None and not by_kind(events, "expected_connection")
    assert run.stats["expectations_cancelled"] == 1


def test_partial_last_command_and_one_sided_close(run):
    """read_any goes on with the side still open: replies after the client's
    FIN are parsed, and a command cut by the FIN is a weird."""
    ses = Session()
    login(ses)
    ses.cmd("PASV\r\n")
    ses.cmd("RETR late.bin\r\nNOO")                      # cut by the FIN below
    ses.add(ses.c.send(FIN | ACK))
    ses.reply("227 Entering Passive Mode (%s)\r\n" % pasv_numbers(SERVER, 6300))
    ses.reply("425 No data connection\r\n")
    ses.add(ses.s.send(FIN | ACK), ses.c.send(ACK))
    _, events, ftp, transfers = run(ses)
    assert run.stats["analyser_errors"] == 0
    assert [(r["command"], r["reply_code"]) for r in ftp] == [("PASV", "227"), ("RETR", "425")]
    (t,) = transfers
    assert (t["file"], t["reply_code"]) == ("late.bin", "425")
    assert [e["name"] for e in by_kind(events, "weird")] == ["partial_ftp_request"]


# -- real captures ----------------------------------------------------------------------

def replay_cli(run_cli, trace, out, *options):
    Path(out).mkdir(parents=True, exist_ok=True)
    proc = run_cli("replay", trace, "--logs", out, "--events", Path(out) / "events.json",
                   "-q", *options)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(l) for l in (Path(out) / "events.json").read_text().splitlines()]
    return (read_zeek_log(Path(out) / "conn.log"), read_zeek_log(Path(out) / "transfers.log"),
            events)


def check_against_truth(conn, transfers, events, truth_transfers, server_port):
    """Every transfer's size is what was sent and its data uid is the data
    connection between the truth's addresses and ports, linked to the control."""
    control = [r for r in conn if r["id.resp_p"] == str(server_port)]
    assert len(control) == 1 and control[0]["service"] == "ftp"
    control_uid = control[0]["uid"]
    assert not [e for e in events if e["event"] == "analyser_error"]
    assert len(transfers) == len(truth_transfers)
    links = {e["uid"]: e["parent_uid"] for e in events if e["event"] == "expected_connection"}
    for row, truth in zip(transfers, truth_transfers):
        assert row["command"] == truth["command"]
        assert row["file"] == (truth["file"] or "-")
        assert int(row["bytes"]) == truth["size"], (row, truth)
        data = [r for r in conn if (r["id.orig_h"], int(r["id.orig_p"]), r["id.resp_h"],
                                    int(r["id.resp_p"])) == (truth["data_orig_h"],
                                                             truth["data_orig_p"],
                                                             truth["data_resp_h"],
                                                             truth["data_resp_p"])]
        assert len(data) == 1 and data[0]["service"] == "ftp-data"
        assert row["data_uids"] == data[0]["uid"] and row["streams"] == "1"
        assert row["uid"] == control_uid and links[data[0]["uid"]] == control_uid
        assert row["reply_code"] == "226"


def test_committed_loopback_capture_matches_its_ground_truth(run_cli, tmp_path):
    truth = json.loads((REPO / "traces" / "ftp-loopback.json").read_text())
    # Port 2121: no option needed, the session is found by its content.
    assert truth["server"]["port"] != 21
    conn, transfers, events = replay_cli(run_cli, REPO / "traces" / "ftp-loopback.pcap",
                                         tmp_path)
    check_against_truth(conn, transfers, events, truth["transfers"], truth["server"]["port"])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _can_capture():
    if shutil.which("tcpdump") is None:
        return "tcpdump is not installed"
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "capturing on lo needs root"
    try:
        import pyftpdlib  # noqa: F401
    except ImportError:
        return "pyftpdlib is not installed"
    return None


@pytest.mark.skipif(_can_capture() is not None, reason=str(_can_capture()))
def test_fresh_capture_of_pyftpdlib_and_ftplib(run_cli, tmp_path):
    import ftplib
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer

    root = tmp_path / "srv"
    root.mkdir()
    sizes = {"zero.bin": 0, "one.bin": 1, "few-kb.bin": 5000, "big.bin": 20_000_000}
    for name, size in sizes.items():
        (root / name).write_bytes(os.urandom(size))
    port = _free_port()
    authorizer = DummyAuthorizer()
    authorizer.add_user("alice", "pw", str(root), perm="elradfmw")
    handler = type("Handler", (FTPHandler,), {"authorizer": authorizer,
                                              "passive_ports": range(port + 1, port + 40)})
    server = FTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.1},
                              daemon=True)
    thread.start()
    pcap = tmp_path / "live.pcap"
    dump = subprocess.Popen(["tcpdump", "-i", "lo", "-U", "-s", "0", "-B", "65536", "-w",
                             str(pcap), "tcp and host 127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        line = dump.stderr.readline()                       # "listening on lo ..."
        assert b"listening" in line, line
        expected = []                                       # (command, file, size)
        ftp = ftplib.FTP()
        ftp.connect("127.0.0.1", port)
        ftp.login("alice", "pw")
        for passive in (True, False):
            ftp.set_pasv(passive)
            for name, size in sizes.items():
                got = bytearray()
                ftp.retrbinary("RETR " + name, got.extend)
                assert len(got) == size
                expected.append(("RETR", name, size))
                upload = "up-%s-%s" % ("pasv" if passive else "port", name)
                with open(root / name, "rb") as f:
                    ftp.storbinary("STOR " + upload, f)
                expected.append(("STOR", upload, size))
            listing = bytearray()
            ftp.retrbinary("LIST", listing.extend)
            expected.append(("LIST", None, len(listing)))
        ftp.quit()
        time.sleep(1.0)                 # let the last FIN/ACKs reach the capture
    finally:
        dump.send_signal(signal.SIGINT)
        _, dump_err = dump.communicate(timeout=60)
        server.close_all()
    dropped = [l for l in dump_err.decode(errors="replace").splitlines() if "dropped" in l]
    assert dropped and all(l.split()[0] == "0" for l in dropped), dump_err
    conn, transfers, events = replay_cli(run_cli, pcap, tmp_path / "out")
    control = [r for r in conn if r["id.resp_p"] == str(port)]
    assert len(control) == 1
    assert [(t["command"], None if t["file"] == "-" else t["file"], int(t["bytes"]))
            for t in transfers] == expected
    by_uid = {r["uid"]: r for r in conn}
    links = {e["uid"]: e["parent_uid"] for e in events if e["event"] == "expected_connection"}
    for t in transfers:
        assert t["uid"] == control[0]["uid"] and t["reply_code"] == "226"
        data = by_uid[t["data_uids"]]
        assert data["service"] == "ftp-data" and links[data["uid"]] == control[0]["uid"]
        sent = int(data["resp_bytes"]) + int(data["orig_bytes"])
        assert sent == int(t["bytes"])                      # only the sender sends
    assert not [e for e in events if e["event"] == "analyser_error"]


# -- the README's "FTP and GridFTP" section ------------------------------------------------

def readme_section():
    text = (REPO / "README.md").read_text()
    start = text.index("## FTP and GridFTP")
    return text[start:text.index("\n## ", start + 1)]


def test_readme_transfers_table_matches_the_schema():
    from analyser import TRANSFERS
    section = readme_section()
    table = section[section.index("**transfers.log**"):]
    table = table[table.index("| field | meaning |"):]
    names = []
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        names += [n.strip() for n in line.split("|")[1].split(",")]
    assert names == [f.name for f in TRANSFERS]


def test_readme_examples_run_on_the_committed_traces(run_cli, tmp_path):
    block = readme_section().split("```sh\n", 1)[1].split("```", 1)[0]
    commands = block.replace("\\\n", " ").splitlines()
    assert len(commands) >= 3
    for i, line in enumerate(commands):
        args = line.split()
        assert args[0] == "analyser"
        out = tmp_path / str(i)
        args = [str(out) if a == "out/" else str(out / a[4:]) if a.startswith("out/") else a
                for a in args[1:]]
        out.mkdir()
        proc = run_cli(*args, "-q")
        assert proc.returncode == 0, (line, proc.stderr)
        transfers = read_zeek_log(out / "transfers.log")
        assert transfers and all(t["reply_code"] == "226" for t in transfers), line


# -- detection: FTP found by content, not-FTP on port 21 --------------------------------

def default_analysers():
    from analyser import registry
    return registry.select()[0]


def replay_defaults(replay, tmp_path, ses, *, detect="content"):
    logs = tmp_path / "logs"
    events = []
    rows = replay(ses.frames, analysers=default_analysers(), logs_dir=str(logs),
                  on_event=events.append, detect=detect)
    read = {name: read_zeek_log(logs / ("%s.log" % name)) if (logs / ("%s.log" % name)).exists()
            else [] for name in ("ftp", "transfers", "analyzer")}
    return rows, events, read


def test_ftp_on_a_port_nobody_names_is_found_by_its_content(replay, tmp_path):
    ses = Session(port=4567)
    login(ses)
    passive_retr(ses, 50010, "data.bin", 123456)
    ses.close()
    rows, events, logs = replay_defaults(replay, tmp_path, ses)
    control = next(r for r in rows if r["id.resp_p"] == 4567)
    assert control["service"] == "ftp"
    assert [(t["command"], t["file"], t["bytes"]) for t in logs["transfers"]] == [
        ("RETR", "data.bin", "123456")]
    assert [r["command"] for r in logs["ftp"]] == ["PASV", "RETR"]
    assert logs["analyzer"] == []
    # Ports only: the same session is not analysed at all.
    rows, _, logs = replay_defaults(replay, tmp_path / "ports", ses, detect="ports")
    assert logs["transfers"] == [] and logs["ftp"] == []
    assert next(r for r in rows if r["id.resp_p"] == 4567)["service"] is None


def test_http_on_port_21_is_a_violation_not_an_ftp_session(replay, tmp_path):
    ses = Session(port=21)
    ses.cmd("GET /index.html HTTP/1.1\r\nHost: example.org\r\n\r\n")
    ses.reply("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
    ses.close()
    rows, events, logs = replay_defaults(replay, tmp_path, ses)
    assert logs["ftp"] == [] and logs["transfers"] == []
    violation, = logs["analyzer"]
    assert (violation["analyzer_kind"], violation["analyzer_name"], violation["id.resp_p"],
            violation["failure_reason"], violation["failure_data"]) == (
        "protocol", "FTP", "21", "non-numeric reply code", "HTTP/1.1 200 OK")
    assert violation["uid"] == rows[0]["uid"]
    # FTP gave up; the next candidate, found by the client's "GET ", is HTTP's.
    assert rows[0]["service"] == "http"
    assert [e["analyzer_name"] for e in events if e["event"] == "analyzer_violation"] == ["FTP"]


def test_random_bytes_on_port_21_are_a_violation(replay, tmp_path):
    import random
    rng = random.Random(21)
    noise = bytes(rng.randrange(256) for _ in range(3000))
    ses = Session(port=21)
    ses.reply(noise[:1400])
    ses.cmd(noise[1400:2000])
    ses.reply(noise[2000:])
    ses.close()
    rows, events, logs = replay_defaults(replay, tmp_path, ses)
    assert logs["ftp"] == [] and logs["transfers"] == []
    violation, = logs["analyzer"]
    assert violation["analyzer_name"] == "FTP" and violation["uid"] == rows[0]["uid"]
    assert violation["failure_reason"] in ("non-numeric reply code", "invalid reply code",
                                           "invalid reply line")
    assert rows[0]["service"] is None
    assert not [e for e in events if e["event"] == "analyser_error"]


def test_smtp_like_greeting_elsewhere_is_not_confirmed_as_ftp(replay, tmp_path):
    """A 220 greeting makes FTP a candidate; the client's EHLO makes it give
    up, and the SMTP analyser (a candidate by the same greeting) takes it."""
    ses = Session(port=2525)
    ses.reply("220 mail.example.org ESMTP ready\r\n")
    ses.cmd("EHLO client.example.org\r\n")
    ses.reply("250-mail.example.org\r\n250 SIZE 1000000\r\n")
    ses.close()
    rows, events, logs = replay_defaults(replay, tmp_path, ses)
    assert rows[0]["service"] == "smtp"
    assert [e["analyzer_name"] for e in events
            if e["event"] == "analyzer_confirmation"] == ["SMTP"]
    assert {(v["analyzer_name"], v["failure_reason"]) for v in logs["analyzer"]} == \
        {("FTP", "SMTP command EHLO in place of an FTP command"),
         ("GRIDFTP", "SMTP command EHLO in place of an FTP command")}


def test_port_numbers_are_read_as_the_regex_reads_them():
    """parse_port_numbers reads ASCII arguments in one pass: on every text,
    what the regex and its range checks give (any other text goes there)."""
    from hypothesis import given, settings, strategies as st
    from protocols.ftp import _parse_port_numbers, parse_port_numbers

    number = st.one_of(st.integers(-3, 300).map(str), st.sampled_from(["+7", "-0", "007", "",
                                                                       "99999999999999999999"]))
    blank = st.sampled_from(["", " ", "\t", "\x1c", "  ", "\n"])
    sep = st.sampled_from([",", ",", ",", ", ", ";", ",,"])

    @settings(max_examples=2000, deadline=None)
    @given(st.lists(st.tuples(blank, number, sep), min_size=5, max_size=7),
           st.sampled_from(["", ")", ".", " rest", "\u0663"]))
    def check(parts, tail):
        text = "".join(b + n + s for b, n, s in parts)[:-1] + tail
        assert parse_port_numbers(text) == _parse_port_numbers(text) \
            if len(text) >= 11 else parse_port_numbers(text) is None

    check()
    assert parse_port_numbers("10,0,0,1,4,1") == ("10.0.0.1", 1025)
    assert parse_port_numbers(" 10, 0,0,1,+4,-0)") == ("10.0.0.1", 1024)
    assert parse_port_numbers("10,0,0,256,4,1") is None
    assert parse_port_numbers("\u0661\u0660,0,0,1,4,1") == ("10.0.0.1", 1025)   # the regex's


def test_lines_are_cut_and_split_as_strip_and_decode_would():
    """The compiled line cutter (protocols/_ftplines.pyx) and the command
    splitter give, on any bytes, what find(), a slice, a CR dropped,
    decode("utf-8", "backslashreplace"), lstrip(WHITESPACE), isascii(),
    isprintable() and upper() gave."""
    from hypothesis import given, settings, strategies as st
    from protocols._ftplines import next_line
    from protocols.ftp import MAX_LINE, WHITESPACE, split_command, text_from

    def reference_line(chunk, start, max_line):
        nl = chunk.find(b"\n", start)
        if nl < 0:
            return None
        line = chunk[start:nl]
        if len(line) > max_line:
            return None, nl
        if line.endswith(b"\r"):
            line = line[:-1]
        return line.decode("utf-8", "backslashreplace"), nl

    def reference_split(line):
        stripped = line.lstrip(WHITESPACE)
        end = 0
        while end < len(stripped) and stripped[end] not in WHITESPACE:
            end += 1
        word = stripped[:end]
        return (word, stripped[end:].lstrip(WHITESPACE), word.isascii() and word.isprintable(),
                word.upper() != word)

    piece = st.one_of(st.binary(max_size=12),
                      st.sampled_from([b"\r\n", b"\n", b"\r", b"\r\r\n", b" ", b"\t\x0b\x0c",
                                       b"RETR", b"retr", "\u00e9\u0663".encode(), b"\xff\xfe",
                                       b"\xe2\x82", b"\x00", b"\x1c"]))

    @settings(max_examples=1500, deadline=None)
    @given(st.lists(piece, max_size=12), st.integers(0, 40), st.integers(0, 30))
    def check(pieces, start, max_line):
        chunk = b"".join(pieces)
        assert next_line(chunk, start, max_line) == \
            (reference_line(chunk, start, max_line) if start < len(chunk) else None)
        text = chunk.decode("utf-8", "backslashreplace")
        word, arg, printable, lower = split_command(text)
        ref_word, ref_arg, ref_printable, ref_upper_differs = reference_split(text)
        assert (word, arg, printable) == (ref_word, ref_arg, ref_printable)
        if printable:                        # (the only words upper-cased)
            assert lower == ref_upper_differs
        assert text_from(text, start) == text[start:].lstrip(WHITESPACE)

    check()
    assert next_line(b"USER a\r\nPASS b\n", 0, MAX_LINE) == ("USER a", 7)
    assert next_line(b"USER a\r\nPASS b\n", 8, MAX_LINE) == ("PASS b", 14)
    assert next_line(b"USER a\r\nPASS b", 8, MAX_LINE) is None
    assert split_command("  stor\t a b ") == ("stor", "a b ", True, True)


def test_absolute_paths_are_those_of_zeeks_pattern():
    """is_absolute_path() is Zeek's absolute_path_pat, (/|[A-Za-z]:[\\/]).*,
    matched whole, on any text."""
    import re
    from hypothesis import given, settings, strategies as st
    from protocols.ftp import is_absolute_path
    pattern = re.compile(r"(/|[A-Za-z]:[\\/]).*", re.S)

    @settings(max_examples=1000, deadline=None)
    @given(st.lists(st.sampled_from(["/", "\\", ":", "C", "z", "\u00e9", "1", "\n", " ", "a"]),
                    max_size=5).map("".join))
    def check(name):
        assert is_absolute_path(name) == bool(pattern.fullmatch(name))

    check()
    assert is_absolute_path("c:\\x") and is_absolute_path("/") and not is_absolute_path("a/b")
