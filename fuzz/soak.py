"""Soak: a long live run on a veth pair with continuous real traffic.

    python fuzz/soak.py --minutes 30                # as root (network namespaces)
    python fuzz/soak.py --minutes 2 --json out.json

Two network namespaces joined by a veth pair (tests/netns.py).  The server
side runs real servers: pyftpdlib (FTP, on 2121: found by content), Python's
http.server (HTTP on 8080) and `openssl s_server -www` (TLS on 4433).  The
client side runs `analyser live --source afpacket` on its end of the pair,
and a driver that, once every PERIOD seconds, does one FTP session (login,
RETR of 1 MB, STOR of 300 kB), one HTTP GET of 2 MB with curl and one TLS
exchange with `openssl s_client`: a fixed rate (about 3.3 MB/s, 10
connections/s), real clients.

The analyser's RSS is sampled every SAMPLE_SECONDS.  At the end (SIGTERM,
as an operator stops it) the run passes when:
- the capture dropped nothing (kernel, interface, ring drops all 0);
- every transfer the driver made is in the logs: a transfers.log row per
  RETR and STOR with its exact size, an http.log row per GET with the
  body's size, an ssl.log row per TLS session, established;
- memory is flat after the warm-up (the first WARMUP_FRACTION of the run,
  at least WARMUP_SECONDS): the RSS at the end exceeds the RSS at the end
  of the warm-up by at most FLAT_TOLERANCE_MB, and no sample after the
  warm-up by more than twice that.

The warm-up is the capture's buffers filling: their pages count in the RSS
as the traffic first touches them, the ring's arena (RING_MB), its record
slots (one per packet, RING_MB * 2048 of them) and the AF_PACKET blocks
(32 MiB).  With the default 64 MiB ring the 131,072 record slots alone take
7.5 minutes of this traffic with the veth pair's offloads on (290 packets/s
of up to 64 kB): a slow climb that looks like a leak and stops there.  So
the pair's offloads are off (ethtool; packets of the MTU, about 2,300/s, as
a NIC delivers them without GRO) and the ring is RING_MB: both are filled
within 30 s.
It prints the memory curve and the figures (and writes them with --json);
exit status 1 when a condition failed.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import netns  # noqa: E402

PERIOD = 1.0                 # seconds between rounds of traffic
SAMPLE_SECONDS = 5.0
WARMUP_FRACTION = 0.25
WARMUP_SECONDS = 60.0
RING_MB = 32                 # --ring-size: 65,536 record slots, 32 MiB of arena
FLAT_TOLERANCE_MB = 8.0
FTP_PORT, HTTP_PORT, TLS_PORT = 2121, 8080, 4433
RETR_SIZE, STOR_SIZE, HTTP_SIZE = 1_000_000, 300_000, 2_000_000

FTP_SERVER = textwrap.dedent("""
    import logging, sys
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer
    logging.disable(logging.CRITICAL)
    root, address, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    auth = DummyAuthorizer()
    auth.add_user("user", "secret", root, perm="elradfmw")
    FTPHandler.authorizer = auth
    FTPHandler.passive_ports = range(50000, 50500)
    server = FTPServer((address, port), FTPHandler)
    print("ready", flush=True)
    server.serve_forever()
""")

HTTP_SERVER = textwrap.dedent("""
    import functools, http.server, sys
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass
    handler = functools.partial(Quiet, directory=sys.argv[1])
    server = http.server.ThreadingHTTPServer((sys.argv[2], int(sys.argv[3])), handler)
    print("ready", flush=True)
    server.serve_forever()
""")

DRIVER = textwrap.dedent("""
    import ftplib, io, json, subprocess, sys, time
    server, seconds, period = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    ftp_port, http_port, tls_port = map(int, sys.argv[4:7])
    retr_size, stor_size, http_size = map(int, sys.argv[7:10])
    done = {"rounds": 0, "retr": 0, "stor": 0, "http": 0, "tls": 0, "failures": []}
    deadline = time.monotonic() + seconds
    upload = bytes(range(256)) * (stor_size // 256) + bytes(stor_size % 256)
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            ftp = ftplib.FTP()
            ftp.connect(server, ftp_port, timeout=30)
            ftp.login("user", "secret")
            ftp.set_pasv(True)
            got = []
            ftp.retrbinary("RETR file.bin", got.append)
            if sum(map(len, got)) == retr_size:
                done["retr"] += 1
            ftp.storbinary("STOR upload.bin", io.BytesIO(upload))
            done["stor"] += 1
            ftp.quit()
        except Exception as exc:
            done["failures"].append("ftp: %r" % exc)
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{size_download}",
                              "http://%s:%d/body.bin" % (server, http_port)],
                             capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and out.stdout.strip() == str(http_size):
            done["http"] += 1
        else:
            done["failures"].append("curl: %s %s" % (out.returncode, out.stderr[-200:]))
        out = subprocess.run(["openssl", "s_client", "-connect", "%s:%d" % (server, tls_port),
                              "-servername", "soak.test", "-quiet"],
                             input=b"GET / HTTP/1.0\\r\\n\\r\\n", capture_output=True,
                             timeout=30)
        if b"HTTP/1.0 200" in out.stdout:
            done["tls"] += 1
        else:
            done["failures"].append("s_client: %s" % out.stderr[-200:])
        done["rounds"] += 1
        time.sleep(max(0.0, period - (time.monotonic() - started)))
    print(json.dumps(done), flush=True)
""")


def rss_mb(pid: int) -> float | None:
    try:
        with open("/proc/%d/status" % pid) as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def read_rows(path: Path) -> list[dict]:
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import read_zeek_log
    return read_zeek_log(path) if path.exists() else []


def wait_ready(proc, what: str) -> None:
    line = proc.stdout.readline().strip()
    if line != "ready":
        raise RuntimeError("%s did not start: %r" % (what, line))


def soak(minutes: float, workdir: Path, python: str = sys.executable,
         log=print, record: str | None = None) -> dict:
    seconds = minutes * 60
    root = workdir / "root"
    root.mkdir()
    (root / "file.bin").write_bytes(os.urandom(RETR_SIZE))
    (root / "body.bin").write_bytes(os.urandom(HTTP_SIZE))
    os.chmod(workdir, 0o755)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", workdir / "key.pem",
                    "-out", workdir / "cert.pem", "-days", "2", "-subj", "/CN=soak.test"],
                   check=True, capture_output=True)
    logs = workdir / "logs"
    samples: list[tuple[float, float]] = []
    with netns.VethPair(tag="k") as net:
        ip = net.server_ip
        offloads_off = net.offloads(False)
        ftp = net.popen("server", [python, "-c", FTP_SERVER, root, ip, FTP_PORT],
                        stdout=subprocess.PIPE, text=True)
        wait_ready(ftp, "the FTP server")
        http = net.popen("server", [python, "-c", HTTP_SERVER, root, ip, HTTP_PORT],
                         stdout=subprocess.PIPE, text=True)
        wait_ready(http, "the HTTP server")
        net.popen("server", ["openssl", "s_server", "-accept", "%s:%d" % (ip, TLS_PORT),
                             "-cert", workdir / "cert.pem", "-key", workdir / "key.pem",
                             "-www", "-quiet"],
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        analyser = net.popen("client", [python, "-m", "analyser", "live", "-i",
                                        net.iface["client"], "--source", "afpacket",
                                        "--logs", logs, "--no-progress",
                                        "--ring-size", RING_MB],
                             cwd=REPO, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not (logs / "conn.log").exists():
            if analyser.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the analyser did not start: %s" % analyser.stderr.read())
            time.sleep(0.05)
        time.sleep(1.0)                       # TLS server listening too
        dump = None
        if record:                            # the same packets, for replays
            dump = net.popen("client", ["tcpdump", "-i", net.iface["client"], "-n", "-U",
                                        "-s", "0", "-B", "131072", "-w", record],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        driver = net.popen("client", [python, "-c", DRIVER, ip, seconds, PERIOD, FTP_PORT,
                                      HTTP_PORT, TLS_PORT, RETR_SIZE, STOR_SIZE, HTTP_SIZE],
                           stdout=subprocess.PIPE, text=True)
        started = time.monotonic()
        next_sample = started
        while driver.poll() is None:
            now = time.monotonic()
            if now >= next_sample:
                rss = rss_mb(analyser.pid)
                if rss is not None:
                    samples.append((round(now - started, 1), round(rss, 1)))
                    log("  %6.0f s  RSS %7.1f MiB" % samples[-1])
                next_sample += SAMPLE_SECONDS
            time.sleep(0.2)
        done = json.loads(driver.stdout.read().strip().splitlines()[-1])
        time.sleep(2.0)                       # the last FIN/ACKs through the capture
        samples.append((round(time.monotonic() - started, 1), round(rss_mb(analyser.pid), 1)))
        analyser.send_signal(signal.SIGTERM)
        _, stderr = analyser.communicate(timeout=120)
        if dump is not None:
            dump.send_signal(signal.SIGINT)
            dump.wait(timeout=30)
    figures = evaluate(done, samples, stderr, analyser.returncode, logs, seconds)
    figures["offloads_off"] = offloads_off
    return figures


def evaluate(done: dict, samples: list, stderr: str, returncode: int, logs: Path,
             seconds: float) -> dict:
    import re
    drops = re.search(r"kernel drops (\d+), interface drops (\d+), ring drops (\d+)", stderr)
    transfers = read_rows(logs / "transfers.log")
    retr = sum(1 for t in transfers if t["command"] == "RETR" and t["reply_code"] == "226"
               and t["bytes"] == str(RETR_SIZE))
    stor = sum(1 for t in transfers if t["command"] == "STOR" and t["reply_code"] == "226"
               and t["bytes"] == str(STOR_SIZE))
    http = sum(1 for r in read_rows(logs / "http.log")
               if r["status_code"] == "200" and r["response_body_len"] == str(HTTP_SIZE))
    tls = sum(1 for r in read_rows(logs / "ssl.log") if r["established"] == "T")
    warmup = max(WARMUP_SECONDS, seconds * WARMUP_FRACTION)
    after = [rss for t, rss in samples if t >= warmup]
    at_warmup = after[0] if after else None
    growth = (after[-1] - at_warmup) if after else None
    spread = (max(after) - at_warmup) if after else None
    figures = {
        "minutes": seconds / 60, "rounds": done["rounds"], "driver_failures": done["failures"],
        "made": {k: done[k] for k in ("retr", "stor", "http", "tls")},
        "logged": {"retr": retr, "stor": stor, "http": http, "tls": tls},
        "drops": tuple(map(int, drops.groups())) if drops else None,
        "exit_status": returncode, "traceback": "Traceback" in stderr,
        "rss_samples": samples, "rss_at_warmup_mb": at_warmup,
        "rss_end_mb": samples[-1][1] if samples else None,
        "rss_growth_after_warmup_mb": growth, "rss_max_above_warmup_mb": spread,
        "summary": stderr.strip().splitlines()[-14:],
    }
    problems = []
    if returncode != 0 or figures["traceback"]:
        problems.append("the analyser exited with %s%s" % (
            returncode, " and a traceback" if figures["traceback"] else ""))
    if figures["drops"] != (0, 0, 0):
        problems.append("drops: %r" % (figures["drops"],))
    if figures["made"] != figures["logged"]:
        problems.append("made %r, logged %r" % (figures["made"], figures["logged"]))
    if done["failures"] or not done["rounds"]:
        problems.append("the driver failed: %r" % done["failures"][:3])
    if growth is None or growth > FLAT_TOLERANCE_MB or spread > 2 * FLAT_TOLERANCE_MB:
        problems.append("memory not flat after the warm-up: %s MiB then +%s (max +%s)"
                        % (at_warmup, growth, spread))
    figures["problems"] = problems
    return figures


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--record", metavar="PCAP", help="also record the traffic with tcpdump")
    args = p.parse_args(argv)
    why = netns.unavailable()
    if why:
        print("soak: %s" % why, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        figures = soak(args.minutes, Path(tmp), record=args.record)
    print("rounds %d; made %s; logged %s; drops %s; RSS %.1f MiB after the warm-up, "
          "%.1f MiB at the end (%+.1f)" % (
              figures["rounds"], figures["made"], figures["logged"], figures["drops"],
              figures["rss_at_warmup_mb"] or 0, figures["rss_end_mb"] or 0,
              figures["rss_growth_after_warmup_mb"] or 0))
    for problem in figures["problems"]:
        print("FAILED: " + problem)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 1 if figures["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
