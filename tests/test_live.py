"""Live capture (analyser live, ringbuf.livepcap, ringbuf.afpacket) and paced
replay (replay --speed).

Pinned here:
- On a veth pair between two network namespaces, a real FTP server
  (pyftpdlib) and client (ftplib) doing several passive transfers (up to
  10 MB): the conn.log (and the FTP analyser's ftp.log and transfers.log)
  of a live run with each source equals the logs of replaying what tcpdump
  recorded on the same interface at the same time, with zero drops.
- Each error a user meets (no such interface, no permission, a filter that
  does not compile): one line on stderr, non-zero exit, no traceback.
- The AF_PACKET source hands kernel blocks back, the Ring's acknowledged
  pointer advances while capturing, and a flow whose analyser waits on the
  other side keeps its bytes retained and intact.
- SIGTERM ends a capture cleanly (summary, flushed logs, exit 0);
  replay --speed paces to the trace clock.

Where the capture runs: a veth end lives in one namespace, so the analyser
and tcpdump both run inside the client's namespace (`ip netns exec`) on its
end of the pair, and see the same packets.  Tests that need root skip with
the reason elsewhere.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import REPO, read_zeek_log
from packets import ACK, close, handshake, TcpPeer, timed, write_pcap
import netns

NETNS_PROBLEM = netns.unavailable()
needs_netns = pytest.mark.skipif(NETNS_PROBLEM is not None, reason=str(NETNS_PROBLEM))
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (packet capture)")
SOURCES = ("pcap", "afpacket")
FTP_FILES = {"small.txt": 1000, "medium.bin": 300_000, "big.bin": 10_000_000}
UPLOAD_SIZE = 2_000_000


def no_traceback(proc):
    assert "Traceback" not in proc.stderr, proc.stderr


def analyser_cmd(*args):
    return [sys.executable, "-m", "analyser", *map(str, args)]


# --------------------------------------------------------------------- errors

@pytest.mark.parametrize("source", SOURCES)
def test_missing_interface_is_one_line(run_cli, source):
    p = run_cli("live", "-i", "nosuchif0", "--source", source, "--duration", "1")
    no_traceback(p)
    assert p.returncode == 1
    assert p.stderr.strip() == "analyser: no such network interface 'nosuchif0'"


@pytest.mark.parametrize("source", SOURCES)
def test_no_permission_is_one_line(source, tmp_path):
    """Capturing without CAP_NET_RAW: as root with the capability removed
    from the bounding set (setpriv), or simply as an unprivileged user."""
    argv = analyser_cmd("live", "-i", "lo", "--source", source, "--duration", "1",
                        "--logs", tmp_path)
    if os.geteuid() == 0:
        argv = ["setpriv", "--bounding-set=-net_raw,-net_admin", *argv]
    p = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)
    no_traceback(p)
    assert p.returncode == 1
    assert p.stderr.strip() == (
        f"analyser: permission denied: capturing on 'lo' "
        f"({'libpcap' if source == 'pcap' else 'AF_PACKET'}) needs root or the "
        "CAP_NET_RAW capability")


@needs_root
@pytest.mark.parametrize("source", SOURCES)
def test_bad_filter_is_one_line(run_cli, source):
    p = run_cli("live", "-i", "lo", "--source", source, "--bpf", "tcp port", "--duration", "1")
    no_traceback(p)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("analyser: bad filter expression 'tcp port'")


def test_bad_options_are_usage_errors(run_cli):
    for args in (["live"], ["live", "-i", "lo", "--count", "0"],
                 ["live", "-i", "lo", "--duration", "-1"],
                 ["replay", "x.pcap", "--speed", "0"]):
        p = run_cli(*args)
        no_traceback(p)
        assert p.returncode == 2, args


@needs_root
def test_unknown_user_to_drop_privileges_to(run_cli):
    p = run_cli("live", "-i", "lo", "-Z", "no-such-user-x", "--duration", "1")
    no_traceback(p)
    assert p.returncode == 2 and "no such user 'no-such-user-x'" in p.stderr


@needs_root
@pytest.mark.parametrize("source", SOURCES)
def test_drop_privileges_after_opening(run_cli, source):
    import pwd
    import shutil
    import tempfile
    # pytest's tmp_path is private to root: nobody could not write there.
    top = Path(tempfile.mkdtemp(prefix="analyser-live-"))
    try:
        os.chmod(top, 0o777)
        logs = top / "logs"
        p = run_cli("live", "-i", "lo", "--source", source, "-Z", "nobody",
                    "--duration", "0.5", "--logs", logs)
        assert p.returncode == 0, p.stderr
        # The logs were created after the switch: they belong to nobody.
        assert (logs / "conn.log").stat().st_uid == pwd.getpwnam("nobody").pw_uid
    finally:
        shutil.rmtree(top, ignore_errors=True)


# ------------------------------------------------------------- paced replay

def test_replay_speed_paces_to_the_trace_clock(tmp_path, run_cli):
    c, s = TcpPeer("10.1.1.1", 40000, 1), TcpPeer("10.1.1.2", 80, 9)
    c.connect(s)
    frames = handshake(c, s) + [c.send(ACK, b"x" * 100)] + close(c, s)
    trace = write_pcap(tmp_path / "t.pcap", timed(frames, step=0.1))   # spans 0.6 s
    from analyser.replay import replay_files
    started = time.monotonic()
    replay_files([str(trace)], speed=2.0)
    # Pacing waits until each packet is due: it can be late, never early.
    # (A lower bound only: a slow machine cannot make this fail.)
    assert time.monotonic() - started >= 0.6 / 2 * 0.95
    p = run_cli("replay", trace, "--speed", "2", "--logs", tmp_path / "a")
    assert p.returncode == 0, p.stderr
    p = run_cli("replay", trace, "--logs", tmp_path / "b")
    assert p.returncode == 0, p.stderr
    strip = lambda rows: [{k: v for k, v in r.items() if k != "uid"} for r in rows]
    assert strip(read_zeek_log(tmp_path / "a" / "conn.log")) == \
        strip(read_zeek_log(tmp_path / "b" / "conn.log"))


def test_paced_replay_expires_flows_on_the_trace_clock(tmp_path):
    """During a long pause in the trace the paced clock runs timers: a UDP
    flow silent for longer than its timeout ends before the next packet."""
    from analyser.events import Monitor
    from analyser.replay import replay_files
    from packets import udp_packet
    frames = [(1000.0, udp_packet("10.0.0.1", "10.0.0.2", 5000, 53, b"q")),
              (1001.2, udp_packet("10.0.0.3", "10.0.0.4", 5000, 53, b"q"))]
    trace = write_pcap(tmp_path / "u.pcap", frames)
    order = []
    m = Monitor()
    m.on("conn_start", lambda ev: order.append(("start", ev.id.orig_h)))
    m.on("conn_end", lambda ev: order.append(("end", ev.id.orig_h)))
    result = replay_files([str(trace)], timeouts={"udp": 0.5}, speed=4.0, monitor=m)
    # The first flow timed out while the replay waited for the second packet,
    # not when that packet came (order, not timing: the machine may be slow).
    assert order == [("start", "10.0.0.1"), ("end", "10.0.0.1"),
                     ("start", "10.0.0.3"), ("end", "10.0.0.3")]
    assert result.stats["timeouts"] >= 1 and result.engine.idle_expiries > 0


# -------------------------------------------------------- SIGTERM, status

@needs_root
@pytest.mark.parametrize("source", SOURCES)
def test_sigterm_flushes_and_prints_the_summary(tmp_path, source):
    logs = tmp_path / "logs"
    proc = subprocess.Popen(analyser_cmd("live", "-i", "lo", "--source", source,
                                         "--bpf", "udp port 47999", "--logs", logs),
                            cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (logs / "conn.log").exists(), 20, "the capture to open")
        import socket
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(20):
            sender.sendto(b"hello", ("127.0.0.1", 47999))
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert re.search(r"kernel drops 0, interface drops \d+, ring drops 0", err), err
    assert "stopped   by SIGTERM" in err
    rows = read_zeek_log(logs / "conn.log")
    # Open at the signal, flushed at the end: one UDP flow of 20 datagrams.
    assert [(r["proto"], r["id.resp_p"], r["orig_pkts"]) for r in rows] == [("udp", "47999", "20")]


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# ------------------------------------------- FTP over a veth pair, live vs replay

# Not 21: the FTP analyser must find the session by its content, with no option.
FTP_PORT = 2121

FTP_SERVER = textwrap.dedent("""
    import logging, sys
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer
    logging.disable(logging.CRITICAL)
    root, address, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    auth = DummyAuthorizer()
    auth.add_user("user", "secret", root, perm="elradfmw")
    auth.add_anonymous(root)
    FTPHandler.authorizer = auth
    FTPHandler.passive_ports = range(50000, 50100)
    server = FTPServer((address, port), FTPHandler)
    print("ready", flush=True)
    server.serve_forever()
""")

FTP_CLIENT = textwrap.dedent("""
    import ftplib, io, sys
    host, port, upload = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    names = sys.argv[4:]
    ftp = ftplib.FTP()
    ftp.connect(host, port, timeout=30)
    ftp.login("user", "secret")
    ftp.set_pasv(True)
    ftp.nlst()
    for name in names:
        sink = io.BytesIO()
        ftp.retrbinary("RETR " + name, sink.write)
    ftp.storbinary("STOR upload.bin", io.BytesIO(bytes(upload)))
    try:
        ftp.retrbinary("RETR missing.bin", lambda b: None)
    except ftplib.error_perm:
        pass
    ftp.quit()
    anon = ftplib.FTP()
    anon.connect(host, port, timeout=30)
    anon.login()
    anon.retrbinary("RETR " + names[0], lambda b: None)
    anon.quit()
    print("done", flush=True)
""")


def comparable(rows, drop=("uid", "ts", "duration", "parent_uid")):
    """Rows without what legitimately differs between two captures of the same
    packets (uids are random; afpacket timestamps are nanoseconds, tcpdump's
    microseconds), in a stable order."""
    out = [{k: v for k, v in r.items() if k not in drop and not k.endswith("uid")
            and not k.endswith("uids")} for r in rows]
    return sorted(out, key=lambda r: json.dumps(r, sort_keys=True))


def assert_same_rows(live, replayed, log):
    """Equal rows, or a message naming the fields that differ."""
    if live == replayed:
        return
    problems = [f"{log}: {len(live)} rows live, {len(replayed)} replayed"]
    for a, b in zip(live, replayed):
        diff = {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}
        if diff:
            problems.append(f"{a.get('id.orig_p')}->{a.get('id.resp_p')}: {diff}")
    raise AssertionError("\n".join(problems))


@needs_netns
@pytest.mark.parametrize("source", SOURCES)
def test_live_ftp_on_a_veth_pair_equals_replay_of_tcpdump(tmp_path, source):
    root = tmp_path / "ftproot"
    root.mkdir()
    for name, size in FTP_FILES.items():
        (root / name).write_bytes(os.urandom(size))
    os.chmod(tmp_path, 0o755)
    with netns.VethPair(tag="f") as net:
        iface = net.iface["client"]
        server = net.popen("server", [sys.executable, "-c", FTP_SERVER, root, net.server_ip,
                                       str(FTP_PORT)],
                           stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline().strip() == "ready"
        recorded = tmp_path / "tcpdump.pcap"
        # capture()'s large buffer: with its default 2 MB tcpdump loses packets
        # of the 10 MB transfer, which the veth pair delivers in one burst.
        with net.capture("client", recorded) as tcpdump:
            live_logs = tmp_path / "live"
            analyser = net.popen("client", analyser_cmd(
                "live", "-i", iface, "--source", source, "--logs", live_logs, "--no-progress"),
                cwd=REPO, stderr=subprocess.PIPE, text=True)
            wait_for(lambda: (live_logs / "conn.log").exists() or analyser.poll() is not None,
                     30, "the live capture to open")
            assert analyser.poll() is None, analyser.stderr.read()
            client = net.run("client", [sys.executable, "-c", FTP_CLIENT, net.server_ip,
                                        str(FTP_PORT), UPLOAD_SIZE, *FTP_FILES], timeout=120)
            assert client.stdout.strip() == "done", client.stderr
            time.sleep(1.0)                       # the last FIN/ACKs through both captures
            analyser.send_signal(signal.SIGTERM)
            _, live_err = analyser.communicate(timeout=60)
        server.kill()
    # The reference must be complete too, or the comparison means nothing.
    assert re.search(r"\b0 packets dropped by kernel", tcpdump.summary), tcpdump.summary
    assert analyser.returncode == 0, live_err
    assert "Traceback" not in live_err
    drops = re.search(r"kernel drops (\d+), interface drops (\d+), ring drops (\d+)", live_err)
    assert drops and drops.groups() == ("0", "0", "0"), live_err

    replay_logs = tmp_path / "replay"
    p = subprocess.run(analyser_cmd("replay", recorded, "--logs", replay_logs), cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr

    live_conn = read_zeek_log(live_logs / "conn.log")
    replay_conn = read_zeek_log(replay_logs / "conn.log")
    tcp = [r for r in live_conn if r["proto"] == "tcp"]
    # Control connections and one data connection per transfer and listing.
    assert len(tcp) >= 2 + len(FTP_FILES) + 3
    big = str(FTP_FILES["big.bin"])
    assert any(r["resp_bytes"] == big or r["orig_bytes"] == big for r in tcp)
    assert_same_rows(comparable(live_conn), comparable(replay_conn), "conn.log")
    for ts_live, ts_replay in zip(sorted(float(r["ts"]) for r in live_conn),
                                  sorted(float(r["ts"]) for r in replay_conn)):
        # Each packet socket stamps outgoing packets itself: microseconds apart.
        assert abs(ts_live - ts_replay) < 1e-3

    for log in ("ftp.log", "transfers.log"):
        assert_same_rows(comparable(read_zeek_log(live_logs / log)),
                         comparable(read_zeek_log(replay_logs / log)), log)
    # Found on port 2121 by content: every transfer with its exact size.
    transfers = read_zeek_log(live_logs / "transfers.log")
    sizes = sorted((t["command"], t["file"], t["bytes"]) for t in transfers
                   if t["command"] in ("RETR", "STOR") and t["reply_code"] == "226")
    expected = sorted([("RETR", name, str(size)) for name, size in FTP_FILES.items()]
                      + [("STOR", "upload.bin", str(UPLOAD_SIZE)),
                         ("RETR", next(iter(FTP_FILES)), str(next(iter(FTP_FILES.values()))))])
    assert sizes == expected
    assert {t["id.resp_p"] for t in transfers} == {str(FTP_PORT)}


# ------------------------------- AF_PACKET blocks, ack pointer, retained bytes

PROBE = textwrap.dedent("""
    import json, socket, sys, threading, time
    sys.path.insert(0, ".")
    from analyser import ORIG, RESP, Analyser, Gap
    from analyser.engine import Engine
    from ringbuf.afpacket import AfPacketSource

    iface, server, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    body = bytes((i * 31) & 0xff for i in range(size))
    got = {}

    class Waiter(Analyser):
        # Reads the responder first while the originator's bytes pile up.
        name = "waiter"
        ports = {7000}
        def main(self):
            got["resp"] = self.read(RESP, 2)
            # The originator's bytes came first: they wait, pinned in the ring.
            got["retained"] = engine.ring.retained_bytes
            got["ack_while_waiting"] = engine.ring.acknowledged_index
            try:
                got["orig"] = self.read(ORIG, size)
            except Gap as g:
                got["gap"] = g.size

    source = AfPacketSource(iface, block_size=1 << 17, block_count=16, retire_timeout_ms=5,
                            bpf="tcp port 7000")
    engine = Engine(analysers=[(Waiter, {})], ring_policy="drop", ring_bytes=8 << 20,
                    ring_records=8192)
    samples = []

    def sample(engine, source):
        r = engine.ring
        samples.append((r.acknowledged_index, r.processed_index, r.retained_bytes,
                        source.blocks_released))

    def client():
        time.sleep(0.3)
        s = socket.create_connection((server, 7000))
        s.sendall(body)
        s.shutdown(socket.SHUT_WR)
        assert s.recv(2) == b"OK"
        s.close()
        time.sleep(0.5)
        engine.stop()

    t = threading.Thread(target=client)
    t.start()
    engine.run_source(source, sample, 0.01, live=True)
    t.join()
    engine.finish()
    st = source.stats()
    print(json.dumps({
        "intact": got.get("orig") == body, "resp": got.get("resp", b"").decode(),
        "gap": got.get("gap"), "samples": samples, "blocks_released": st["blocks_released"],
        "kernel_drops": st["kernel_drops"], "ring_drops": st["ring_drops"],
        "packets": st["packets"], "ack": engine.ring.acknowledged_index,
        "processed": engine.ring.processed_index,
        "pinned": engine.ring.pinned_records,
        "copied_out": engine.stats().get("ring_copied_out_bytes"),
        "retained": got.get("retained"), "ack_while_waiting": got.get("ack_while_waiting"),
    }))
""")

TCP_SINK = textwrap.dedent("""
    import socket, sys
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((sys.argv[1], 7000))
    listener.listen(1)
    print("ready", flush=True)
    conn, _ = listener.accept()
    while conn.recv(65536):
        pass
    conn.sendall(b"OK")
    conn.close()
""")


@needs_netns
def test_afpacket_releases_blocks_and_retained_bytes_stay_intact(tmp_path):
    size = 400_000
    with netns.VethPair(tag="b") as net:
        sink = net.popen("server", [sys.executable, "-c", TCP_SINK, net.server_ip],
                         stdout=subprocess.PIPE, text=True)
        assert sink.stdout.readline().strip() == "ready"
        probe = net.run("client", [sys.executable, "-c", PROBE, net.iface["client"],
                                   net.server_ip, size], cwd=REPO, timeout=60)
    result = json.loads(probe.stdout)
    # The waiting analyser got every byte, in order, after the responder's.
    assert result["resp"] == "OK" and result["intact"], result
    assert result["gap"] is None
    # Kernel blocks went back: the flow's packets do not fit a few 128 KB blocks.
    assert result["blocks_released"] >= size // (1 << 17)
    assert result["kernel_drops"] == 0 and result["ring_drops"] == 0
    samples = result["samples"]
    # While the analyser waited, the flow's bytes stayed retained in the ring ...
    assert result["retained"] >= size
    # ... and the acknowledged pointer moved on during the capture (past the
    # handshake before, past everything once the analyser had read them).
    acks = [s[0] for s in samples] + [result["ack"]]
    assert acks == sorted(acks)
    assert 0 < result["ack_while_waiting"] < result["ack"]
    assert result["ack"] == result["processed"] and result["pinned"] == 0


# ------------------------------------------- live --workers: a fanout group by host pair

FTP_ONE_CLIENT = textwrap.dedent("""
    import ftplib, io, sys
    host, port, source, name = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    ftp = ftplib.FTP(source_address=(source, 0))
    ftp.connect(host, port, timeout=30)
    ftp.login("user", "secret")
    ftp.set_pasv(True)
    ftp.retrbinary("RETR " + name, io.BytesIO().write)
    ftp.storbinary("STOR up-" + source + ".bin", io.BytesIO(bytes(50000)))
    ftp.quit()
    print("done", flush=True)
""")


@needs_netns
def test_live_workers_split_host_pairs_and_log_what_one_process_logs(tmp_path):
    root = tmp_path / "ftproot"
    root.mkdir()
    (root / "a.bin").write_bytes(os.urandom(200_000))
    os.chmod(tmp_path, 0o755)
    with netns.VethPair(tag="w") as net:
        iface = net.iface["client"]
        second = net.client_ip.rsplit(".", 1)[0] + ".3"          # another client host
        net.run("client", ["ip", "addr", "add", second + "/24", "dev", iface])
        server = net.popen("server", [sys.executable, "-c", FTP_SERVER, root, net.server_ip,
                                      str(FTP_PORT)], stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline().strip() == "ready"
        recorded = tmp_path / "tcpdump.pcap"
        with net.capture("client", recorded) as tcpdump:
            live_logs = tmp_path / "live"
            analyser = net.popen("client", analyser_cmd(
                "live", "-i", iface, "--source", "afpacket", "--workers", "2",
                "--logs", live_logs, "--no-progress"), cwd=REPO, stderr=subprocess.PIPE,
                text=True)
            # Both workers capture once each has opened its logs (after its socket).
            wait_for(lambda: len(list(live_logs.glob(".workers-*/*/conn.log"))) == 2
                     or analyser.poll() is not None, 60, "both workers to open")
            assert analyser.poll() is None, analyser.stderr.read()
            for source in (net.client_ip, second):
                client = net.run("client", [sys.executable, "-c", FTP_ONE_CLIENT,
                                            net.server_ip, str(FTP_PORT), source, "a.bin"],
                                 timeout=120)
                assert client.stdout.strip() == "done", client.stderr
            time.sleep(1.0)
            analyser.send_signal(signal.SIGTERM)
            _, live_err = analyser.communicate(timeout=60)
        server.kill()
    assert re.search(r"\b0 packets dropped by kernel", tcpdump.summary), tcpdump.summary
    assert analyser.returncode == 0, live_err
    assert "Traceback" not in live_err and "(2 workers)" in live_err
    per_worker = re.search(r"packets per worker: ([\d,]+) / ([\d,]+)", live_err)
    assert per_worker and all(int(x.replace(",", "")) > 0 for x in per_worker.groups()), \
        live_err                                               # each host pair elsewhere
    replay_logs = tmp_path / "replay"
    p = subprocess.run(analyser_cmd("replay", recorded, "--logs", replay_logs), cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    for log in ("conn.log", "ftp.log", "transfers.log"):
        assert_same_rows(comparable(read_zeek_log(live_logs / log)),
                         comparable(read_zeek_log(replay_logs / log)), log)
    transfers = read_zeek_log(live_logs / "transfers.log")
    assert sorted((t["id.orig_h"], t["command"], t["bytes"]) for t in transfers) == sorted(
        [(net.client_ip, "RETR", "200000"), (net.client_ip, "STOR", "50000"),
         (second, "RETR", "200000"), (second, "STOR", "50000")])
