#!/usr/bin/env python3
"""Record the project's sample traces from real programs talking over loopback.

How the traces were made
------------------------
Every trace in this directory (except those a README says otherwise about) was
written by this script, run as root on Linux:

    python3 traces/make_sample_traces.py            # writes traces/*.pcap + *.json

For each trace it starts ``tcpdump -i lo -w FILE -s 0 -U FILTER`` where FILTER
names only the ports this script uses (so other programs using loopback at the
same time do not leak into the trace), waits until tcpdump prints "listening on",
runs real servers and clients from the Python standard library / pyftpdlib on
127.0.0.1 (and ::1), sleeps a moment so the last FIN/ACKs are captured, and stops
tcpdump with SIGINT.

* ``ftp-loopback.pcap``: a pyftpdlib server on 127.0.0.1:2121 (or a free port
  >= 2100) and an ftplib client: login, LIST, RETR of 0 B, 1 B, 3 KB and ~1 MB
  files in passive mode, a ~100 KB STOR in passive mode, a RETR in active mode
  (PORT), QUIT.  ``ftp-loopback.json`` lists every data transfer (command, file,
  size, mode and the data connection's addresses and ports).
* ``http-loopback.pcap``: ``http.server`` serving 0 B, 10 KB and 500 KB files,
  fetched with urllib (one connection each, IPv4) plus one IPv6 fetch over ::1,
  one keep-alive connection carrying two requests (http.client), one connection
  attempt to a closed port (SYN answered by RST: Zeek's REJ), and UDP datagrams
  to a small UDP echo socket from two client sockets.
  ``http-loopback.json`` lists the requests and flows likewise.

File contents come from a seeded PRNG, so sizes and bytes are the same on every
run; timestamps, ephemeral client ports and TCP initial sequence numbers are not.
Linux loopback captures have link type EN10MB (a 14-byte all-zero Ethernet
header) and carry partial (offloaded) TCP/UDP checksums: replay them with
``-C/--ignore-checksums``.

The fixed server ports are below Linux's ephemeral range (32768-60999), so other
programs' client sockets do not pick them by chance; the script checks that each
is free before it starts.
"""
import ftplib
import http.client
import http.server
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
HOST4 = "127.0.0.1"
HOST6 = "::1"

# FTP: control port, a small passive range and one port the client listens on
# for the active-mode (PORT) transfer.  All below the ephemeral range.
FTP_CTRL_PORT = 2121
FTP_PASV_PORTS = range(2122, 2131)
FTP_ACTIVE_PORT = 2131
# HTTP trace: the web server, a port nobody listens on, and the UDP echo socket.
HTTP_PORT = 2180
CLOSED_PORT = 2181
UDP_ECHO_PORT = 2153

SEED = 20240501
FTP_USER, FTP_PASSWORD = "alice", "wonderland"

# The names and sizes of the files served.  Sizes are exact byte counts.
FTP_FILES = {
    "empty.bin": 0,
    "one.bin": 1,
    "small-3k.bin": 3 * 1024,
    "large-1m.bin": 1000 * 1000 + 7,   # odd size on purpose: not a block multiple
    "active-20k.bin": 20 * 1024,
}
FTP_UPLOAD = ("upload-100k.bin", 100 * 1024)
HTTP_FILES = {
    "empty.txt": 0,
    "ten-k.bin": 10 * 1024,
    "half-m.bin": 500 * 1024,
}


def content(name, size):
    """Deterministic bytes for file *name*: a PRNG seeded by the name."""
    return random.Random(f"{SEED}:{name}").randbytes(size)


# ---------------------------------------------------------------- helpers

def port_is_free(port, family=socket.AF_INET, kind=socket.SOCK_STREAM, host=HOST4):
    with socket.socket(family, kind) as s:
        # The servers all set SO_REUSEADDR, so TIME_WAIT leftovers from a
        # previous run do not count as "in use".
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def pick_free_port(preferred, low=2100, high=2999, avoid=()):
    """*preferred* if it is free, else the first free port >= *low*."""
    candidates = [preferred] + [p for p in range(low, high) if p != preferred]
    for p in candidates:
        if p not in avoid and port_is_free(p):
            return p
    raise SystemExit(f"no free TCP port in {low}-{high}")


class Capture:
    """tcpdump on lo for the duration of a `with` block."""

    def __init__(self, path, bpf):
        self.path, self.bpf = path, bpf

    def __enter__(self):
        if os.path.exists(self.path):
            os.unlink(self.path)
        cmd = ["tcpdump", "-i", "lo", "-w", self.path, "-s", "0", "-U", "-n", self.bpf]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        # tcpdump prints "listening on lo, link-type EN10MB ..." once the socket
        # is open; traffic before that would be lost.
        self.stderr_lines = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.stderr_lines.append(line)
            if "listening on" in line:
                break
        if "listening on" not in "".join(self.stderr_lines):
            self.proc.kill()
            raise SystemExit("tcpdump did not start: " + "".join(self.stderr_lines))
        # Drain the rest of stderr in the background so tcpdump never blocks on it.
        self._drain = threading.Thread(target=self._read_rest, daemon=True)
        self._drain.start()
        return self

    def _read_rest(self):
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    def __exit__(self, *exc):
        # Let the final FIN/ACK exchanges (and a lingering TIME_WAIT ACK) through.
        time.sleep(1.0)
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._drain.join(timeout=2)
        # tcpdump drops privileges to its own user; give the file to the owner
        # of the directory it lives in, like every other file in the checkout.
        if os.geteuid() == 0 and os.path.exists(self.path):
            st = os.stat(os.path.dirname(os.path.abspath(self.path)))
            os.chown(self.path, st.st_uid, st.st_gid)
        summary = "".join(self.stderr_lines)
        if "0 packets dropped by kernel" not in summary:
            print(f"warning: tcpdump reported drops or no summary:\n{summary}", file=sys.stderr)
        return False


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


# ---------------------------------------------------------------- FTP trace

class FixedPortFTP(ftplib.FTP):
    """ftplib client whose active-mode listening socket uses a fixed port.

    ftplib binds the PORT socket to an ephemeral port; we need a known one so
    the capture filter can name it.
    """

    active_port = FTP_ACTIVE_PORT

    def makeport(self):
        sock = socket.create_server((self.sock.getsockname()[0], self.active_port),
                                    family=self.af, backlog=1)
        host = self.sock.getsockname()[0]
        self.sendport(host, self.active_port)
        if self.timeout is not ftplib._GLOBAL_DEFAULT_TIMEOUT:
            sock.settimeout(self.timeout)
        return sock


def make_ftp_trace(outdir):
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer

    # pyftpdlib installs its own INFO-level handler unless one is present.
    ftplog = logging.getLogger("pyftpdlib")
    if not ftplog.handlers:
        ftplog.addHandler(logging.NullHandler())
    ftplog.setLevel(logging.ERROR)
    ftplog.propagate = False
    reserved = set(FTP_PASV_PORTS) | {FTP_ACTIVE_PORT}
    ctrl_port = pick_free_port(FTP_CTRL_PORT, avoid=reserved)
    for p in reserved:
        if not port_is_free(p):
            raise SystemExit(f"port {p} (FTP data) is in use; free it and rerun")

    root = tempfile.mkdtemp(prefix="ftp-trace-")
    try:
        for name, size in FTP_FILES.items():
            with open(os.path.join(root, name), "wb") as f:
                f.write(content(name, size))

        authorizer = DummyAuthorizer()
        authorizer.add_user(FTP_USER, FTP_PASSWORD, root, perm="elradfmw")
        handler = type("Handler", (FTPHandler,), {})
        handler.authorizer = authorizer
        handler.passive_ports = list(FTP_PASV_PORTS)
        handler.permit_foreign_addresses = False
        handler.banner = "sample-trace FTP server ready."
        server = FTPServer((HOST4, ctrl_port), handler)
        t = threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.05},
                             daemon=True)
        t.start()

        pcap = os.path.join(outdir, "ftp-loopback.pcap")
        bpf = (f"host {HOST4} and tcp and (port {ctrl_port} or portrange "
               f"{FTP_PASV_PORTS.start}-{FTP_PASV_PORTS.stop - 1} or port {FTP_ACTIVE_PORT})")
        transfers = []
        with Capture(pcap, bpf):
            ftp = FixedPortFTP()
            ftp.connect(HOST4, ctrl_port, timeout=10)
            control_client = ftp.sock.getsockname()[:2]
            ftp.login(FTP_USER, FTP_PASSWORD)
            ftp.voidcmd("TYPE I")

            def transfer(cmd, name, mode, upload=None):
                ftp.set_pasv(mode == "passive")
                conn = ftp.transfercmd(cmd)
                local, peer = conn.getsockname()[:2], conn.getpeername()[:2]
                if upload is not None:
                    conn.sendall(upload)
                    nbytes = len(upload)
                else:
                    data = bytearray()
                    while chunk := conn.recv(65536):
                        data += chunk
                    nbytes = len(data)
                # Client closes first after an upload (that is how the server
                # learns the end of the file); for downloads the server closes.
                conn.close()
                ftp.voidresp()
                if mode == "passive":   # client connects to the server's port
                    orig, resp = local, peer
                else:                   # server connects to the client's PORT
                    orig, resp = peer, local
                rec = {"command": cmd.split()[0], "file": name, "size": nbytes,
                       "mode": mode,
                       "data_orig_h": orig[0], "data_orig_p": orig[1],
                       "data_resp_h": resp[0], "data_resp_p": resp[1]}
                transfers.append(rec)
                return data if upload is None else None

            # LIST's size is whatever the server's listing is; record it as seen.
            transfer("LIST", None, "passive")
            for name in ("empty.bin", "one.bin", "small-3k.bin", "large-1m.bin"):
                got = transfer(f"RETR {name}", name, "passive")
                assert bytes(got) == content(name, FTP_FILES[name]), name
            up_name, up_size = FTP_UPLOAD
            transfer(f"STOR {up_name}", up_name, "passive", upload=content(up_name, up_size))
            got = transfer("RETR active-20k.bin", "active-20k.bin", "active")
            assert bytes(got) == content("active-20k.bin", FTP_FILES["active-20k.bin"])
            ftp.quit()
            # Upload arrived intact on the server side?
            with open(os.path.join(root, up_name), "rb") as f:
                assert f.read() == content(up_name, up_size)
        server.close_all()
        t.join(timeout=5)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    meta = {
        "trace": "ftp-loopback.pcap",
        "made_by": "traces/make_sample_traces.py",
        "server": {"host": HOST4, "port": ctrl_port, "software": "pyftpdlib"},
        "client": {"host": control_client[0], "port": control_client[1]},
        "user": FTP_USER,
        "transfer_type": "I",
        "transfers": transfers,
    }
    write_json(os.path.join(outdir, "ftp-loopback.json"), meta)
    return pcap, meta


# ---------------------------------------------------------------- HTTP trace

class QuietHandler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # allows keep-alive

    def log_message(self, *args):
        pass


class V6Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


def udp_echo(sock, stop):
    sock.settimeout(0.1)
    while not stop.is_set():
        try:
            data, addr = sock.recvfrom(65535)
        except socket.timeout:
            continue
        except OSError:
            return
        sock.sendto(data, addr)


def make_http_trace(outdir):
    for p, kind in ((HTTP_PORT, socket.SOCK_STREAM), (CLOSED_PORT, socket.SOCK_STREAM),
                    (UDP_ECHO_PORT, socket.SOCK_DGRAM)):
        if not port_is_free(p, kind=kind):
            raise SystemExit(f"port {p} is in use; free it and rerun")
    have_v6 = socket.has_ipv6 and port_is_free(HTTP_PORT, socket.AF_INET6, host=HOST6)

    root = tempfile.mkdtemp(prefix="http-trace-")
    servers, threads = [], []
    stop = threading.Event()
    try:
        for name, size in HTTP_FILES.items():
            with open(os.path.join(root, name), "wb") as f:
                f.write(content(name, size))

        def handler(*a, **kw):
            return QuietHandler(*a, directory=root, **kw)

        servers.append(http.server.ThreadingHTTPServer((HOST4, HTTP_PORT), handler))
        if have_v6:
            servers.append(V6Server((HOST6, HTTP_PORT), handler))
        for s in servers:
            threads.append(threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05},
                                            daemon=True))
        echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        echo.bind((HOST4, UDP_ECHO_PORT))
        threads.append(threading.Thread(target=udp_echo, args=(echo, stop), daemon=True))
        for t in threads:
            t.start()

        pcap = os.path.join(outdir, "http-loopback.pcap")
        hosts = f"(host {HOST4}" + (f" or host {HOST6})" if have_v6 else ")")
        bpf = (f"{hosts} and ((tcp and (port {HTTP_PORT} or port {CLOSED_PORT})) "
               f"or (udp and port {UDP_ECHO_PORT}))")
        requests, flows = [], []
        with Capture(pcap, bpf):
            # One connection per file with urllib (it sends Connection: close).
            for name, size in HTTP_FILES.items():
                url = f"http://{HOST4}:{HTTP_PORT}/{name}"
                with urllib.request.urlopen(url, timeout=10) as r:
                    body = r.read()
                    status = r.status
                assert body == content(name, size), name
                requests.append({"method": "GET", "url": url, "status": status,
                                 "body_bytes": len(body), "connection": "own", "ip": 4})
            if have_v6:
                name = "ten-k.bin"
                url = f"http://[{HOST6}]:{HTTP_PORT}/{name}"
                with urllib.request.urlopen(url, timeout=10) as r:
                    body = r.read()
                    status = r.status
                assert body == content(name, HTTP_FILES[name])
                requests.append({"method": "GET", "url": url, "status": status,
                                 "body_bytes": len(body), "connection": "own", "ip": 6})
            # Keep-alive: two requests on one connection, then a clean close.
            conn = http.client.HTTPConnection(HOST4, HTTP_PORT, timeout=10)
            for name in ("ten-k.bin", "empty.txt"):
                conn.request("GET", "/" + name)
                r = conn.getresponse()
                body = r.read()
                assert body == content(name, HTTP_FILES[name])
                requests.append({"method": "GET", "url": f"http://{HOST4}:{HTTP_PORT}/{name}",
                                 "status": r.status, "body_bytes": len(body),
                                 "connection": "keep-alive", "ip": 4})
            conn.close()
            time.sleep(0.2)

            # A connection attempt nobody answers except with RST (Zeek: REJ).
            s = socket.socket()
            try:
                s.settimeout(5)
                s.connect((HOST4, CLOSED_PORT))
                raise SystemExit(f"port {CLOSED_PORT} unexpectedly accepted a connection")
            except ConnectionRefusedError:
                pass
            finally:
                s.close()
            flows.append({"proto": "tcp", "resp_h": HOST4, "resp_p": CLOSED_PORT,
                          "what": "connection refused (SYN, RST)"})

            # UDP: two client sockets, each sends datagrams and gets them echoed.
            for i, sizes in enumerate(((32, 512), (100, 1200, 8))):
                u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                u.bind((HOST4, 0))
                u.settimeout(5)
                for j, n in enumerate(sizes):
                    payload = content(f"udp-{i}-{j}", n)
                    u.sendto(payload, (HOST4, UDP_ECHO_PORT))
                    back, _ = u.recvfrom(65535)
                    assert back == payload
                flows.append({"proto": "udp", "orig_h": HOST4, "orig_p": u.getsockname()[1],
                              "resp_h": HOST4, "resp_p": UDP_ECHO_PORT,
                              "datagrams_each_way": len(sizes),
                              "payload_bytes_each_way": sum(sizes)})
                u.close()
    finally:
        stop.set()
        for s in servers:
            s.shutdown()
            s.server_close()
        for t in threads:
            t.join(timeout=5)
        try:
            echo.close()
        except NameError:
            pass
        shutil.rmtree(root, ignore_errors=True)

    meta = {
        "trace": "http-loopback.pcap",
        "made_by": "traces/make_sample_traces.py",
        "server": {"hosts": [HOST4] + ([HOST6] if have_v6 else []), "port": HTTP_PORT,
                   "software": "python http.server (HTTP/1.1)"},
        "requests": requests,
        "other_flows": flows,
    }
    write_json(os.path.join(outdir, "http-loopback.json"), meta)
    return pcap, meta


def describe(pcap):
    """One line per trace: size and packet count (via tcpdump, always present)."""
    out = subprocess.run(["tcpdump", "-r", pcap, "-n", "-q"], capture_output=True, text=True)
    npkts = len(out.stdout.splitlines())
    return f"{os.path.relpath(pcap)}: {os.path.getsize(pcap):,} bytes, {npkts} packets"


def main():
    if os.geteuid() != 0:
        print("note: tcpdump on lo normally needs root", file=sys.stderr)
    if not shutil.which("tcpdump"):
        raise SystemExit("tcpdump is required")
    outdir = HERE
    made = []
    pcap, meta = make_ftp_trace(outdir)
    made.append(describe(pcap))
    made.append(f"{os.path.relpath(os.path.join(outdir, 'ftp-loopback.json'))}: "
                f"{len(meta['transfers'])} transfers")
    pcap, meta = make_http_trace(outdir)
    made.append(describe(pcap))
    made.append(f"{os.path.relpath(os.path.join(outdir, 'http-loopback.json'))}: "
                f"{len(meta['requests'])} requests, {len(meta['other_flows'])} other flows")
    print("made:")
    for line in made:
        print("  " + line)


if __name__ == "__main__":
    main()
