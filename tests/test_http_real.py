"""The HTTP analyser on real programs: Python's http.server (a handler that
also sends chunked responses and takes uploads) and curl, in two network
namespaces joined by a veth pair, captured with tcpdump in the client's
namespace and replayed with `python -m analyser replay`.  Every value is
checked against what the programs did: the sizes of the files served, the
chunks the handler sent, curl's own -w report."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

import pytest

import netns
from conftest import REPO, read_zeek_log

BIG = 2_500_000                    # above transfer_min_bytes (1 MiB): a transfers.log row
FILES = {"small.txt": 1234, "big.bin": BIG}
CHUNKS = [100, 5000, 1, 70000]     # the chunked response's chunk sizes
UPLOAD = 300_000
ALT_PORT = 8123                    # not an HTTP port hint: found by content

SERVER = r"""
import os, sys
from http.server import ThreadingHTTPServer, SimpleHTTPRequestHandler

root, host, port, chunks = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

class Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"            # keep-alive

    def __init__(self, *a, **kw):
        super().__init__(*a, directory=root, **kw)

    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.path != "/chunked":
            return super().do_GET()
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        for size in map(int, chunks.split(",")):
            self.wfile.write(b"%x;ext=1\r\n" % size + b"c" * size + b"\r\n")
        self.wfile.write(b"0\r\nX-Trailer: yes\r\n\r\n")

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        got = 0
        while got < length:
            got += len(self.rfile.read(min(65536, length - got)))
        reply = b"received %d" % got
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

server = ThreadingHTTPServer((host, port), Handler)
print("ready", flush=True)
server.serve_forever()
"""


def _unavailable():
    why = netns.unavailable()
    if why:
        return why
    for tool in ("tcpdump", "curl"):
        if shutil.which(tool) is None:
            return tool + " is not installed"
    return None


pytestmark = pytest.mark.skipif(_unavailable() is not None, reason=str(_unavailable()))

WRITE_OUT = "%{http_code} %{size_download} %{size_upload}\\n"


def curl(net, *args) -> list[tuple[int, int, int]]:
    """Run curl in the client namespace: (status, bytes downloaded, bytes
    uploaded) per URL, as curl reports them."""
    done = net.run("client", ["curl", "-s", "-w", WRITE_OUT, *args], timeout=120)
    return [tuple(map(int, line.split())) for line in done.stdout.splitlines() if line.strip()]


def test_curl_and_http_server_sessions_are_logged_as_they_happened(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    for name, size in FILES.items():
        (root / name).write_bytes(os.urandom(size))
    upload = tmp_path / "upload.bin"
    upload.write_bytes(os.urandom(UPLOAD))
    os.chmod(tmp_path, 0o755)
    agent = "curl/" + subprocess.run(["curl", "--version"], capture_output=True,
                                     text=True).stdout.split()[1]
    chunks = ",".join(map(str, CHUNKS))
    reports = {}
    with netns.VethPair(tag="h") as net:
        for port in (80, ALT_PORT):
            server = net.popen("server", [sys.executable, "-c", SERVER, root, net.server_ip,
                                           str(port), chunks],
                               stdout=subprocess.PIPE, text=True)
            assert server.stdout.readline().strip() == "ready"
        pcap = tmp_path / "http.pcap"
        with net.capture("client", pcap) as tcpdump:
            for port in (80, ALT_PORT):
                base = "http://%s:%d" % (net.server_ip, port)
                # One curl invocation, three URLs: one keep-alive connection.
                reports[port, "get"] = curl(net, "-o", "/dev/null", "-o", "/dev/null",
                                            "-o", "/dev/null", base + "/small.txt",
                                            base + "/chunked", base + "/big.bin")
                reports[port, "head"] = curl(net, "-I", "-o", "/dev/null", base + "/small.txt")
                reports[port, "post"] = curl(net, "-o", "/dev/null", "--data-binary",
                                             "@%s" % upload, base + "/upload")
            time.sleep(1.0)                        # the last FIN/ACKs into the capture
    assert re.search(r"\b0 packets dropped by kernel", tcpdump.summary), tcpdump.summary
    # What curl saw, which the logs must say.
    for port in (80, ALT_PORT):
        assert reports[port, "get"] == [(200, FILES["small.txt"], 0), (200, sum(CHUNKS), 0),
                                        (200, BIG, 0)]
        assert reports[port, "head"] == [(200, 0, 0)]
        assert reports[port, "post"] == [(200, len(b"received %d" % UPLOAD), UPLOAD)]

    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "analyser", "replay", str(pcap), "--logs",
                           str(out), "-q"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    conn = read_zeek_log(out / "conn.log")
    http = read_zeek_log(out / "http.log")
    transfers = read_zeek_log(out / "transfers.log")
    for port in (80, ALT_PORT):
        tcp = [c for c in conn if c["id.resp_p"] == str(port)]
        assert len(tcp) == 3 and all(c["service"] == "http" for c in tcp), tcp
        host = net.server_ip if port == 80 else "%s:%d" % (net.server_ip, port)
        rows = sorted((r for r in http if r["id.resp_p"] == str(port)),
                      key=lambda r: (float(r["ts"]), int(r["trans_depth"])))
        got = [(r["uid"] == rows[0]["uid"], r["trans_depth"], r["method"], r["host"], r["uri"],
                r["version"], r["user_agent"], r["status_code"], r["status_msg"],
                r["request_body_len"], r["response_body_len"]) for r in rows]
        expected_body = [size for _, size, _ in reports[port, "get"]]
        assert got == [
            (True, "1", "GET", host, "/small.txt", "1.1", agent, "200", "OK", "0",
             str(expected_body[0])),
            (True, "2", "GET", host, "/chunked", "1.1", agent, "200", "OK", "0",
             str(expected_body[1])),
            (True, "3", "GET", host, "/big.bin", "1.1", agent, "200", "OK", "0",
             str(expected_body[2])),
            (False, "1", "HEAD", host, "/small.txt", "1.1", agent, "200", "OK", "0", "0"),
            (False, "1", "POST", host, "/upload", "1.1", agent, "200", "OK", str(UPLOAD),
             str(reports[port, "post"][0][1])),
        ]
        big, = [t for t in transfers if t["id.resp_p"] == str(port)]
        assert (big["uid"], big["protocol"], big["command"], big["file"],
                big["size_announced"], big["bytes"], big["reply_code"], big["streams"],
                big["data_uids"]) == (rows[2]["uid"], "http", "GET", "/big.bin", str(BIG),
                                      str(BIG), "200", "1", rows[2]["uid"])
