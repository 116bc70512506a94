"""Real GridFTP transfers between two network namespaces, captured with tcpdump.

A test (or ``traces/make_gridftp_traces.py``) uses it like this, as root::

    from gridftp_env import GridFTPEnv, available
    ok, why = available()                      # skip the test with `why` if not ok
    with GridFTPEnv() as env:
        env.add_file("a.bin", data)            # served file (readable by nobody)
        with env.capture("/tmp/x.pcap") as cap:
            env.download("a.bin", streams=4)   # globus-url-copy -p 4 ftp://... file://...
            env.upload("b.bin", data, streams=3)
        truth = cap.truth                      # JSON-ready ground truth (see below)

What it sets up
---------------
* Two network namespaces with unique names (``gftc<id>`` client, ``gfts<id>``
  server), joined by a veth pair created directly inside them (MTU 1500;
  client 10.77.0.1/24, server 10.77.0.2/24: addresses are private to the
  namespaces, so parallel runs with other ids do not clash).  Nothing is
  configured outside the two namespaces except ``/etc/netns/NAME/hosts``
  (``ip netns exec`` bind-mounts it over /etc/hosts), which maps the machine's
  own host name to the namespace's address: the Globus tools resolve it.
* ``globus-gridftp-server -aa -anonymous-user nobody -p 2811
  -control-interface 10.77.0.2 -data-interface 10.77.0.2 -c /dev/null``
  (daemon mode: one forked process per control session; ``-c /dev/null`` so
  /etc/gridftp.conf does not change what the tests see) in the server
  namespace.  Served files live in a world-readable work directory; uploads go
  to a directory owned by ``nobody``.
* ``tcpdump -i <client veth> -w FILE -U -s 0 tcp``, started before the
  transfers (we wait for "listening on") and stopped with SIGINT after a short
  pause so the last FIN/ACKs land.
* ``globus-url-copy [-p N] ftp://anonymous:x@10.77.0.2:2811/PATH file:///DEST``
  (download) or ``file:///SRC ftp://...`` (upload) in the client namespace.

Teardown (the context manager's exit, also on exceptions) stops tcpdump and the
server (only processes this module started, by process group), deletes both
namespaces and their /etc/netns directories, and removes the work directory.

What real transfers look like (globus-url-copy 10.12, server 13.24)
--------------------------------------------------------------------
Anonymous ``ftp://`` sessions are clear text: 220 banner, USER anonymous /
PASS, SITE HELP, FEAT, SITE CLIENTINFO, TYPE I, MODE E, then

* download: ``OPTS RETR Parallelism=N,N,N;`` (sent for every N, also 1),
  ``PORT`` (the client listens: in MODE E the *sender* must be the active
  side), ``RETR /path``, ``150 Beginning transfer.``, ``226 Transfer
  Complete.``.  The server opens N data connections to the client's PORT
  address.
* upload: ``PASV`` -> ``227 Entering Passive Mode (...)``, ``ALLO size``,
  ``STOR /path``, 150, ``112 Perf Marker`` / ``111 Range Marker 0-SIZE``
  replies, 226.  The client opens N data connections to the PASV port.  No
  OPTS command (the sender chooses its own parallelism).
* With ``-stripe`` the client sends ``SPAS`` instead of PASV (upload) and gets
  the multi-line ``229-Entering Striped Passive Mode`` reply.
* No ``AUTH``/``DCAU``/``PROT``: the data channel is neither authenticated nor
  protected; MODE E headers are visible in clear on every data connection.
* No QUIT before 226 matters: the client closes after the transfer.
* Each data connection carries 17-byte MODE E headers (see ``parse_modee``):
  data blocks of the sender's block size (server -bs, default 256 KiB;
  client -bs for uploads), then a zero-length EOD block (descriptor 8).
  One connection (not always the first) carries the EOF header (descriptor
  64|8 = 72, count 0, offset = number of EODs to expect = number of data
  connections).  A connection can carry no data at all, only EOD.

Ground truth
------------
``Capture.truth`` (also ``analyse_capture(pcap)`` for any capture) is computed
from the pcap alone with dpkt and this module's own TCP reassembly and MODE E
parser; it never uses the project's analyser.  See ``analyse_capture`` for the
fields.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

CLIENT_ADDR = "10.77.0.1"
SERVER_ADDR = "10.77.0.2"
PREFIX_LEN = 24
CONTROL_PORT = 2811
MTU = 1500

SERVER_BIN = "globus-gridftp-server"
CLIENT_BIN = "globus-url-copy"

# MODE E descriptor bits (GFD.20 / globus_ftp_extensions(3)).
EOR, EOF, ERRORS, RESTART, EOD, CLOSE = 0x80, 0x40, 0x20, 0x10, 0x08, 0x04
HEADER = struct.Struct("!BQQ")

# Debian packages that provide everything this module runs.
DEB_PACKAGES = ("globus-gridftp-server-progs", "globus-gass-copy-progs",
                "iproute2", "tcpdump")


# --------------------------------------------------------------------------
# availability


_AVAILABLE: tuple[bool, str] | None = None


def available() -> tuple[bool, str]:
    """(True, "") if real GridFTP captures can run here, else (False, reason)."""
    global _AVAILABLE
    if _AVAILABLE is None:
        _AVAILABLE = _probe()
    return _AVAILABLE


def _probe() -> tuple[bool, str]:
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return False, "needs Linux"
    if os.geteuid() != 0:
        return False, "needs root (network namespaces, tcpdump)"
    for prog, pkg in ((SERVER_BIN, "globus-gridftp-server-progs"),
                      (CLIENT_BIN, "globus-gass-copy-progs"),
                      ("tcpdump", "tcpdump"), ("ip", "iproute2")):
        if shutil.which(prog) is None:
            return False, f"{prog} not found (Debian package {pkg})"
    try:
        import dpkt  # noqa: F401
    except ImportError:
        return False, "python module dpkt missing"
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        return False, "no user 'nobody'"
    name = f"gftprobe{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", name], check=False, capture_output=True,
                       text=True)
    if r.returncode != 0:
        return False, f"`ip netns add` fails: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
    return True, ""


# --------------------------------------------------------------------------
# the environment


@dataclass
class Transfer:
    """One globus-url-copy run, as requested (the capture says what happened)."""
    direction: str            # "download" or "upload"
    name: str                 # file name
    remote_path: str          # path on the server, as in the URL
    size: int
    sha256: str
    streams: int              # -p N
    args: list
    returncode: int
    seconds: float
    stderr: str = ""

    def as_dict(self):
        return {k: v for k, v in self.__dict__.items() if k != "stderr"}


class GridFTPError(RuntimeError):
    pass


def _run(cmd, check=True, **kw):
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise GridFTPError(f"{' '.join(map(str, cmd))} failed ({r.returncode}): "
                           f"{r.stderr.strip() or r.stdout.strip()}")
    return r


class GridFTPEnv:
    """Two namespaces, a GridFTP server in one, a client in the other.

    server_args: extra options for globus-gridftp-server (e.g. ["-bs", "65536"]
    for 64 KiB MODE E blocks on downloads).  keep=True leaves the work
    directory (server log, files) in place for debugging.  workdir: an exact
    path that must not exist yet (it is created, and removed unless keep=True);
    default a fresh directory under the system's temporary directory.
    """

    def __init__(self, server_args=(), port: int = CONTROL_PORT, keep: bool = False,
                 workdir: str | None = None):
        self.id = uuid.uuid4().hex[:8]
        self.client_ns = f"gftc{self.id}"
        self.server_ns = f"gfts{self.id}"
        self.client_if, self.server_if = "gfc0", "gfs0"
        self.port = port
        self.server_args = list(server_args)
        self.keep = keep
        self._workdir_arg = workdir
        self.workdir = None
        self.server = None
        self.transfers: list[Transfer] = []
        self._made_ns: list[str] = []

    # -- setup / teardown --------------------------------------------------

    def __enter__(self):
        ok, why = available()
        if not ok:
            raise GridFTPError(why)
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _setup(self):
        if self._workdir_arg:                  # exact path: file names in traces stay stable
            os.mkdir(self._workdir_arg)
            self.workdir = self._workdir_arg
        else:
            self.workdir = tempfile.mkdtemp(prefix=f"gridftp-env-{self.id}-")
        os.chmod(self.workdir, 0o755)
        nobody = pwd.getpwnam("nobody")
        self.srv_dir = os.path.join(self.workdir, "srv")
        self.up_dir = os.path.join(self.workdir, "upload")
        self.cli_dir = os.path.join(self.workdir, "client")
        for d in (self.srv_dir, self.up_dir, self.cli_dir):
            os.mkdir(d)
            os.chmod(d, 0o755)
        os.chown(self.up_dir, nobody.pw_uid, nobody.pw_gid)

        hostnames = {socket.gethostname()}
        fqdn = socket.getfqdn()
        if fqdn and fqdn != "localhost":
            hostnames.add(fqdn)
        for ns, addr in ((self.client_ns, CLIENT_ADDR), (self.server_ns, SERVER_ADDR)):
            _run(["ip", "netns", "add", ns])
            self._made_ns.append(ns)
            d = f"/etc/netns/{ns}"
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "hosts"), "w") as f:
                f.write(f"127.0.0.1\tlocalhost\n::1\tlocalhost\n"
                        f"{addr}\t{' '.join(sorted(hostnames))}\n")
        _run(["ip", "link", "add", self.client_if, "netns", self.client_ns, "mtu", str(MTU),
              "type", "veth", "peer", "name", self.server_if, "netns", self.server_ns,
              "mtu", str(MTU)])
        for ns, ifname, addr in ((self.client_ns, self.client_if, CLIENT_ADDR),
                                 (self.server_ns, self.server_if, SERVER_ADDR)):
            # No IPv6 on the veth: no router solicitations in the capture.
            _run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                  f"net.ipv6.conf.{ifname}.disable_ipv6=1"], check=False)
            _run(["ip", "-n", ns, "addr", "add", f"{addr}/{PREFIX_LEN}", "dev", ifname])
            _run(["ip", "-n", ns, "link", "set", ifname, "up"])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        self._start_server()

    def _start_server(self):
        self.server_log = os.path.join(self.workdir, "server.log")
        cmd = ["ip", "netns", "exec", self.server_ns, SERVER_BIN,
               "-aa", "-anonymous-user", "nobody", "-p", str(self.port),
               "-control-interface", SERVER_ADDR, "-data-interface", SERVER_ADDR,
               "-c", "/dev/null", "-d", "error,warn,info,transfer",
               "-l", self.server_log, *self.server_args]
        server_out = os.path.join(self.workdir, "server.out")
        with open(server_out, "w") as out:          # Popen keeps its own copy of the fd
            self.server = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True,
                                           cwd=self.workdir)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise GridFTPError(f"{SERVER_BIN} exited with {self.server.returncode}: "
                                   f"{Path(server_out).read_text()[-2000:]}")
            r = _run(["ip", "netns", "exec", self.server_ns, "ss", "-Hltn",
                      f"sport = :{self.port}"], check=False)
            if r.stdout.strip():
                return
            time.sleep(0.05)
        raise GridFTPError(f"{SERVER_BIN} did not listen on {SERVER_ADDR}:{self.port}")

    def close(self):
        """Stop what we started and delete what we created; safe to call twice."""
        if self.server is not None:
            _stop_group(self.server, signal.SIGTERM)
            self.server = None
        for ns in self._made_ns:
            # Processes we started in it are gone; deleting the namespace also
            # removes the veth pair.
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
            shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)
        self._made_ns = []
        if self.workdir and not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- files and transfers -----------------------------------------------

    def url(self, path: str) -> str:
        return f"ftp://anonymous:x@{SERVER_ADDR}:{self.port}{path}"

    def add_file(self, name: str, data: bytes) -> str:
        """Put a file the server can serve; returns its path on the server."""
        path = os.path.join(self.srv_dir, name)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o644)
        return path

    def client(self, args, timeout=120):
        return _run(["ip", "netns", "exec", self.client_ns, CLIENT_BIN, *args],
                    check=False, timeout=timeout, cwd=self.workdir)

    def download(self, name: str, streams: int = 1, extra_args=(), check=True) -> Transfer:
        src = os.path.join(self.srv_dir, name)
        dest = os.path.join(self.cli_dir, name)
        args = [*(["-p", str(streams)] if streams else []), *extra_args,
                self.url(src), f"file://{dest}"]
        return self._transfer("download", name, src, args, streams, dest, src, check)

    def upload(self, name: str, data: bytes, streams: int = 1, extra_args=(),
               check=True) -> Transfer:
        src = os.path.join(self.cli_dir, name)
        with open(src, "wb") as f:
            f.write(data)
        dest = os.path.join(self.up_dir, name)
        args = [*(["-p", str(streams)] if streams else []), *extra_args,
                f"file://{src}", self.url(dest)]
        return self._transfer("upload", name, dest, args, streams, src, dest, check)

    def _transfer(self, direction, name, remote, args, streams, src, dest, check):
        t0 = time.monotonic()
        r = self.client(args)
        seconds = time.monotonic() - t0
        try:
            with open(src, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = None
        t = Transfer(direction, name, remote, len(data) if data is not None else -1,
                     hashlib.sha256(data).hexdigest() if data is not None else "",
                     streams, [CLIENT_BIN, *args], r.returncode, round(seconds, 3),
                     r.stderr)
        self.transfers.append(t)
        if check:
            if r.returncode != 0 or data is None:
                raise GridFTPError(f"{CLIENT_BIN} {' '.join(args)} failed: "
                                   f"{r.stderr.strip() or r.stdout.strip()}")
            with open(dest, "rb") as f:
                if f.read() != data:
                    raise GridFTPError(f"{direction} of {name}: copy differs")
        return t

    def server_stats(self) -> list[dict]:
        """The server log's "Transfer stats" lines (NBYTES, STREAMS, TYPE, FILE...)."""
        return parse_server_log(self.server_log)

    @contextlib.contextmanager
    def capture(self, pcap_path, settle: float = 0.5, bpf: str = "tcp"):
        """tcpdump on the client's veth for the body of the with-statement.

        The yielded Capture gets .truth (analyse_capture + what was requested)
        after the block ends.
        """
        cap = Capture(self, str(pcap_path))
        first = len(self.transfers)
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.client_ns, "tcpdump", "-i", self.client_if,
             "-w", cap.path, "-U", "--immediate-mode", "-B", "32768", "-s", "0", "-n", bpf],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        try:
            _wait_listening(proc)
            t0 = time.monotonic()
            yield cap
            time.sleep(settle)
        finally:
            _stop_group(proc, signal.SIGINT, keep_stderr=True)
            cap.tcpdump_stderr = proc.stderr.read()
            proc.stderr.close()
        if os.path.exists(cap.path):           # tcpdump drops to its own user
            st = os.stat(os.path.dirname(os.path.abspath(cap.path)))
            os.chown(cap.path, st.st_uid, st.st_gid)
        m = re.search(r"(\d+) packets? dropped by kernel", cap.tcpdump_stderr)
        cap.dropped = int(m.group(1)) if m else None
        cap.seconds = round(time.monotonic() - t0, 3)
        cap.transfers = self.transfers[first:]
        cap.truth = ground_truth(cap.path, cap.transfers, self.server_stats())


def capture_problems(truth: dict, dropped: int | None = 0) -> list[str]:
    """Reasons a capture is not a faithful record (empty list: it is)."""
    out = []
    if dropped:
        out.append(f"tcpdump: {dropped} packets dropped by kernel")
    for t in truth["transfers"]:
        name = t["request"]["name"]
        if "command" not in t:
            out.append(f"{name}: no control command found in the capture")
            continue
        if t["request"]["returncode"] != 0:
            out.append(f"{name}: globus-url-copy exited {t['request']['returncode']}")
        if t.get("reply_code") != 226:
            out.append(f"{name}: final reply {t.get('reply_code')}, not 226")
        for dc in t["data_connections"]:
            if any(dc["missing_bytes"].values()):
                out.append(f"{name}: data connection {dc['orig_p']} misses bytes")
            if dc.get("trailing_bytes"):
                out.append(f"{name}: data connection {dc['orig_p']} ends inside a block")
            if not all(dc["fin"].values()):
                out.append(f"{name}: data connection {dc['orig_p']} not closed in capture")
    return out


@dataclass
class Capture:
    env: GridFTPEnv
    path: str
    seconds: float = 0.0
    tcpdump_stderr: str = ""
    dropped: int | None = None
    transfers: list = field(default_factory=list)
    truth: dict | None = None

    def problems(self) -> list[str]:
        return capture_problems(self.truth, self.dropped)


def _wait_listening(proc, timeout=15):
    """tcpdump prints "listening on ..." once the socket is open."""
    deadline = time.monotonic() + timeout
    os.set_blocking(proc.stderr.fileno(), True)
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(proc.stderr, selectors.EVENT_READ)
    seen = ""
    while time.monotonic() < deadline:
        if sel.select(timeout=0.2):
            line = proc.stderr.readline()
            seen += line
            if "listening on" in line:
                sel.close()
                return
            if not line and proc.poll() is not None:
                break
    sel.close()
    raise GridFTPError(f"tcpdump did not start: {seen.strip()}")


def _stop_group(proc, sig, timeout=10, keep_stderr=False):
    """Signal the process group of a process we started, then reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout)
    else:
        # The leader is gone; forked children may remain in its group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
    if proc.stderr and not keep_stderr:
        proc.stderr.close()


def parse_server_log(path) -> list[dict]:
    out = []
    if not path or not os.path.exists(path):
        return out
    with open(path, errors="replace") as f:
        for line in f:
            if "Transfer stats:" in line:
                kv = dict(re.findall(r"(\S+?)=(\S*)", line.split("Transfer stats:", 1)[1]))
                out.append(kv)
    return out


# --------------------------------------------------------------------------
# reading captures: TCP reassembly, FTP control, MODE E


@dataclass
class Half:
    """One direction of a TCP connection, reassembled."""
    isn: int | None = None
    segments: dict = field(default_factory=dict)   # relative seq -> (ts, bytes)
    fin: bool = False
    packets: int = 0

    def data(self) -> bytes:
        """The bytes in sequence order; bytes never seen are zeros (see missing())."""
        out = bytearray()
        for rel in sorted(self.segments):
            _ts, seg = self.segments[rel]
            if rel > len(out):           # a hole (not expected on a veth)
                out.extend(bytes(rel - len(out)))
            out[rel:rel + len(seg)] = seg   # retransmissions overwrite the same bytes
        return bytes(out)

    def missing(self) -> int:
        """Bytes inside the stream that no captured segment carried."""
        end = have = 0
        for rel in sorted(self.segments):
            seg = self.segments[rel][1]
            lo = max(rel, end)
            hi = rel + len(seg)
            if hi > lo:
                have += hi - lo
                end = hi
        return end - have

    def stamped(self) -> list[tuple[int, float]]:
        return sorted((rel, ts) for rel, (ts, _) in self.segments.items())


@dataclass
class TcpConn:
    orig: tuple            # (addr, port) of the SYN sender
    resp: tuple
    syn_ts: float
    last_ts: float
    halves: dict = field(default_factory=lambda: {"orig": Half(), "resp": Half()})

    def tuple5(self):
        return {"orig_h": self.orig[0], "orig_p": self.orig[1],
                "resp_h": self.resp[0], "resp_p": self.resp[1], "proto": "tcp"}


def read_tcp(pcap_path) -> list[TcpConn]:
    """All TCP connections that start with a SYN, in order of their SYN."""
    import dpkt
    conns: dict[tuple, TcpConn] = {}
    order = []
    with open(pcap_path, "rb") as f:
        for ts, buf in dpkt.pcap.Reader(f):
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            tcp = ip.data
            src = (socket.inet_ntoa(ip.src), tcp.sport)
            dst = (socket.inet_ntoa(ip.dst), tcp.dport)
            key = (src, dst) if (src, dst) in conns else (dst, src)
            syn = tcp.flags & dpkt.tcp.TH_SYN
            if key not in conns:
                if not syn or tcp.flags & dpkt.tcp.TH_ACK:
                    continue          # not started in the capture
                key = (src, dst)
                conns[key] = TcpConn(src, dst, ts, ts)
                order.append(key)
            c = conns[key]
            c.last_ts = ts
            side = "orig" if src == c.orig else "resp"
            h = c.halves[side]
            h.packets += 1
            if syn:
                h.isn = tcp.seq
                continue
            if h.isn is None:
                continue
            if tcp.data:
                rel = (tcp.seq - h.isn - 1) & 0xffffffff
                if rel not in h.segments or len(h.segments[rel][1]) < len(tcp.data):
                    h.segments[rel] = (ts, bytes(tcp.data))
            if tcp.flags & dpkt.tcp.TH_FIN:
                h.fin = True
    return [conns[k] for k in order]


def parse_modee(data: bytes) -> tuple[list[tuple[int, int, int]], int]:
    """Split one direction of a MODE E data connection into block headers.

    Returns ([(descriptor, count, offset), ...], trailing_bytes).  Header:
    descriptor (1 byte), byte count (8 bytes, big endian), offset (8 bytes,
    big endian); `count` payload bytes follow, except after an EOF header
    (descriptor bit 64), whose count is unused and whose offset is the number
    of EODs the receiver must see (Globus's reader does the same).  A block
    whose payload runs past the end is kept and its missing bytes are counted
    in trailing_bytes as a negative number.
    """
    blocks = []
    i, n = 0, len(data)
    while i + HEADER.size <= n:
        desc, count, offset = HEADER.unpack_from(data, i)
        blocks.append((desc, count, offset))
        i += HEADER.size
        if not desc & EOF:
            i += count
    return blocks, n - i


def coverage(ranges, size: int | None = None) -> dict:
    """Holes and overlaps of [offset, offset+count) ranges, against [0, size)."""
    ranges = sorted((o, o + c) for o, c in ranges if c > 0)
    holes, overlaps = [], []
    end = 0
    for a, b in ranges:
        if a > end:
            holes.append([end, a])
        elif a < end:
            overlaps.append([a, min(b, end)])
        end = max(end, b)
    if size is not None and end < size:
        holes.append([end, size])
    return {"covered_to": end, "holes": holes, "overlaps": overlaps,
            "complete": not holes and not overlaps and (size is None or end == size)}


_CMD = re.compile(rb"^([A-Za-z]{3,4})(?: (.*))?$")


def _lines(half: Half):
    """(ts, line) for each CRLF line of a control direction."""
    data = half.data()
    stamps = half.stamped()
    out, pos = [], 0
    j = 0
    while True:
        k = data.find(b"\n", pos)
        if k < 0:
            break
        while j + 1 < len(stamps) and stamps[j + 1][0] <= pos:
            j += 1
        ts = stamps[j][1] if stamps else 0.0
        out.append((ts, data[pos:k].rstrip(b"\r").decode("latin-1")))
        pos = k + 1
    return out


def _replies(lines):
    """Group reply lines into (ts, code, text_lines) by FTP multi-line rules."""
    out, cur = [], None
    for ts, line in lines:
        if cur is None:
            m = re.match(r"^(\d{3})([ -])(.*)$", line)
            if not m:
                continue
            if m.group(2) == " ":
                out.append((ts, int(m.group(1)), [line]))
            else:
                cur = (ts, m.group(1), [line])
        else:
            cur[2].append(line)
            if line.startswith(cur[1] + " "):
                out.append((cur[0], int(cur[1]), cur[2]))
                cur = None
    return out


def _hostport(text):
    m = re.search(r"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)", text)
    if not m:
        return None
    n = list(map(int, m.groups()))
    return (".".join(map(str, n[:4])), n[4] * 256 + n[5])


def _all_hostports(text):
    return [(".".join(g[:4]), int(g[4]) * 256 + int(g[5]))
            for g in re.findall(r"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)", text)]


def analyse_capture(pcap_path) -> dict:
    """Control sessions, their transfers and data connections, from the pcap.

    Returns {"control_sessions": [...], "unassigned_data_connections": [...]};
    each session: control 5-tuple, commands [[ts, line]], replies [[ts, code,
    text]], dcau (argument of DCAU if sent, else None: no DCAU means no data
    channel security in anonymous mode), and transfers, each with command,
    file (argument as sent), data_setup (PORT/PASV/SPAS/SPOR/EPSV/EPRT),
    endpoints, parallelism (OPTS RETR), reply_code, data_connections (see
    _data_conn_truth), bytes (sum of MODE E block counts), streams_seen,
    coverage.
    """
    conns = read_tcp(pcap_path)
    control = [c for c in conns if _looks_like_control(c)]
    others = [c for c in conns if c not in control]
    sessions = []
    for c in control:
        cmds = _lines(c.halves["orig"])
        reps = _replies(_lines(c.halves["resp"]))
        s = {"control": c.tuple5(), "start": c.syn_ts, "end": c.last_ts,
             "commands": [[round(ts, 6), line] for ts, line in cmds],
             "replies": [[round(ts, 6), code, "\n".join(t)] for ts, code, t in reps],
             "mode": None, "type": None, "dcau": None, "transfers": []}
        # Walk the commands with their replies (one reply per command here:
        # globus-url-copy does not pipeline; 1xx replies precede the final one).
        ri = 1 if reps and reps[0][1] == 220 else 0     # the banner answers no command
        pending_setup = None
        parallelism = None
        for ts, line in cmds:
            m = _CMD.match(line.encode("latin-1"))
            verb = m.group(1).decode().upper() if m else line[:4].upper()
            arg = (m.group(2) or b"").decode("latin-1") if m else ""
            mine = []
            while ri < len(reps):
                mine.append(reps[ri])
                ri += 1
                if reps[ri - 1][1] >= 200:
                    break
            final = mine[-1] if mine else (None, None, [])
            if verb == "MODE":
                s["mode"] = arg.strip().upper()
            elif verb == "TYPE":
                s["type"] = arg.strip().upper()
            elif verb == "DCAU":
                s["dcau"] = arg.strip()
            elif verb == "OPTS" and arg.upper().startswith("RETR"):
                pm = re.search(r"Parallelism=(\d+),(\d+),(\d+)", arg, re.IGNORECASE)
                if pm:
                    parallelism = [int(x) for x in pm.groups()]
            elif verb in ("PORT", "EPRT", "SPOR"):
                eps = _all_hostports(arg) if verb != "EPRT" else _eprt(arg)
                pending_setup = {"how": verb, "endpoints": eps, "ts": ts}
            elif verb in ("PASV", "EPSV", "SPAS"):
                text = "\n".join(final[2])
                if verb == "EPSV":
                    pm = re.search(r"\|\|\|(\d+)\|", text)
                    eps = [(c.resp[0], int(pm.group(1)))] if pm else []
                else:
                    eps = _all_hostports(text)
                pending_setup = {"how": verb, "endpoints": eps, "ts": final[0] or ts}
            elif verb in ("RETR", "STOR", "STOU", "APPE", "ERET", "ESTO", "LIST", "NLST",
                          "MLSD"):
                t = {"command": verb, "file": arg, "ts": round(ts, 6),
                     "mode": s["mode"], "dcau": s["dcau"],
                     "data_setup": pending_setup["how"] if pending_setup else None,
                     "endpoints": [list(e) for e in pending_setup["endpoints"]]
                     if pending_setup else [],
                     "parallelism": parallelism if verb in ("RETR", "ERET") else None,
                     "replies": [[code, "\n".join(t)] for _, code, t in mine],
                     "reply_code": final[1],
                     "end_ts": round(final[0], 6) if final[0] else None,
                     "_setup_ts": pending_setup["ts"] if pending_setup else ts}
                s["transfers"].append(t)
        sessions.append(s)

    # Assign data connections: responder = a PORT/PASV endpoint of a transfer,
    # SYN after the setup and before the transfer's final reply.
    assigned = set()
    for s in sessions:
        for t in s["transfers"]:
            eps = {tuple(e) for e in t["endpoints"]}
            lo = t.pop("_setup_ts")
            hi = t["end_ts"] or float("inf")
            dcs = [c for c in others if id(c) not in assigned
                   and c.resp in eps and lo - 1e-3 <= c.syn_ts <= hi]
            for c in dcs:
                assigned.add(id(c))
            sender = "server" if t["command"] in ("RETR", "ERET", "LIST", "NLST", "MLSD") \
                else "client"
            t["data_connections"] = [_data_conn_truth(c, sender, s["control"], t["mode"])
                                     for c in dcs]
            t["streams_seen"] = len(dcs)
            if t["mode"] == "E":
                blocks = [(b[2], b[1]) for dc in t["data_connections"]
                          for b in dc["blocks"] if not b[0] & EOF]
                t["bytes"] = sum(c for _, c in blocks)
                eofs = [b for dc in t["data_connections"] for b in dc["blocks"] if b[0] & EOF]
                t["eod_count_expected"] = eofs[0][2] if eofs else None
                t["eods_seen"] = sum(1 for dc in t["data_connections"] for b in dc["blocks"]
                                     if b[0] & EOD)
                t["coverage"] = coverage(blocks)
            else:
                t["bytes"] = sum(dc["payload_bytes"][dc["sender"]] for dc in
                                 t["data_connections"])
    rest = [c.tuple5() for c in others if id(c) not in assigned]
    return {"control_sessions": sessions, "unassigned_data_connections": rest}


def _eprt(arg):
    parts = arg.split(arg[:1]) if arg else []
    if len(parts) >= 4:
        return [(parts[2], int(parts[3]))]
    return []


def _looks_like_control(c: TcpConn) -> bool:
    first = c.halves["resp"].segments.get(0)
    return bool(first) and re.match(rb"^220[ -]", first[1]) is not None


def _data_conn_truth(c: TcpConn, sender_role: str, ctrl: dict, mode) -> dict:
    """5-tuple, who sent, payload bytes per side, and the MODE E blocks."""
    client_addr = ctrl["orig_h"]
    # which side of the data connection is the data sender
    orig_is_client = c.orig[0] == client_addr
    sender = "orig" if (sender_role == "client") == orig_is_client else "resp"
    d = c.tuple5()
    d["syn_ts"] = round(c.syn_ts, 6)
    d["sender"] = sender
    payload = {side: c.halves[side].data() for side in ("orig", "resp")}
    d["payload_bytes"] = {side: len(p) for side, p in payload.items()}
    d["fin"] = {side: c.halves[side].fin for side in ("orig", "resp")}
    d["missing_bytes"] = {side: c.halves[side].missing() for side in ("orig", "resp")}
    if mode == "E":
        blocks, trailing = parse_modee(payload[sender])
        d["blocks"] = [list(b) for b in blocks]
        d["trailing_bytes"] = trailing
        d["data_bytes"] = sum(b[1] for b in blocks if not b[0] & EOF)
        d["eod"] = any(b[0] & EOD for b in blocks)
        eof = [b for b in blocks if b[0] & EOF]
        d["eof_eod_count"] = eof[0][2] if eof else None
    return d


def ground_truth(pcap_path, transfers: list[Transfer], server_stats=()) -> dict:
    """What analyse_capture found, matched with what was requested.

    One entry per requested transfer (in order), with the request (name,
    size, sha256, streams requested, direction) and what the capture shows
    (control 5-tuple, command, file as sent, data_setup, parallelism, dcau,
    data_connections with 5-tuples and MODE E blocks, bytes, streams_seen,
    coverage against the file size, reply_code), plus the server log's
    transfer stats for that file when present.
    """
    found = analyse_capture(pcap_path)
    flat = [(s, t) for s in found["control_sessions"] for t in s["transfers"]]
    out = []
    used = set()
    stats = list(server_stats)
    for req in transfers:
        match = None
        for i, (s, t) in enumerate(flat):
            if i not in used and t["file"] == req.remote_path:
                match = (s, t)
                used.add(i)
                break
        entry = {"request": req.as_dict()}
        if match:
            s, t = match
            entry.update(t)
            entry["control"] = s["control"]
            entry["coverage"] = coverage([(b[2], b[1]) for dc in t["data_connections"]
                                          for b in dc.get("blocks", []) if not b[0] & EOF],
                                         req.size) if t["mode"] == "E" else None
            st = next((x for x in stats if x.get("FILE") == req.remote_path), None)
            if st:
                stats.remove(st)
                entry["server_log"] = {k: st.get(k) for k in
                                       ("TYPE", "NBYTES", "STREAMS", "STRIPES", "BLOCK",
                                        "BUFFER", "CODE")}
        out.append(entry)
    return {"transfers": out,
            "control_sessions": [{k: s[k] for k in ("control", "commands", "replies")}
                                 for s in found["control_sessions"]],
            "unassigned_data_connections": found["unassigned_data_connections"]}


def tool_versions() -> dict:
    out = {}
    for prog in (SERVER_BIN, CLIENT_BIN):
        r = subprocess.run([prog, "-version"], check=False, capture_output=True, text=True)
        out[prog] = (r.stdout + r.stderr).strip().splitlines()[0] if (r.stdout + r.stderr) \
            else None
    return out


if __name__ == "__main__":       # quick manual check: one 4-stream download
    import sys
    ok, why = available()
    if not ok:
        sys.exit(f"not available: {why}")
    with GridFTPEnv() as env:
        env.add_file("x.bin", os.urandom(300_000))
        with env.capture(os.path.join(env.workdir, "x.pcap")) as cap:
            env.download("x.bin", streams=4)
        print(cap.tcpdump_stderr, file=sys.stderr)
        print(json.dumps(cap.truth["transfers"], indent=1))
