"""Two network namespaces joined by a veth pair, for tests and benchmarks
that need real traffic on a real interface without touching the host's.

    with VethPair() as net:                    # root only; see `unavailable()`
        server = net.popen("server", [sys.executable, "-m", "http.server"])
        net.run("client", ["curl", f"http://{net.server_ip}:8000/"])

Layout: namespace ``<prefix>s`` holds interface ``<prefix>s`` with
``server_ip``; namespace ``<prefix>c`` holds ``<prefix>c`` with
``client_ip`` (a /24 of 10.x.y.0, MTU 1500 unless told otherwise).  IPv6 is
off in both (no router solicitations or MLD reports in the captures) and
both loopbacks are up.  Names carry the process id, so parallel runs do not
collide; everything is deleted on exit (deleting a namespace deletes its
veth end, and with it the pair).

Capturing: a veth end lives in one namespace, so a capture process runs
inside it (``net.popen("client", [...])`` runs ``ip netns exec``) and sees
exactly what that end sends and receives.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time


def unavailable() -> str | None:
    """Why namespaces cannot be used here (None when they can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and packet capture)"
    if shutil.which("ip") is None:
        return "needs iproute2 (the `ip` command)"
    probe = f"an{os.getpid() % 100000}probe"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return "cannot create a network namespace: " + made.stderr.strip()
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


class VethPair:
    """Namespaces "server" and "client" joined by a veth pair (see module doc)."""

    def __init__(self, tag: str = "", mtu: int = 1500, subnet: int | None = None):
        n = os.getpid() % 100000
        self.prefix = f"an{tag}{n}"[:12]                 # interface names: 15 chars max
        self.ns = {"server": self.prefix + "s", "client": self.prefix + "c"}
        self.iface = dict(self.ns)                        # each end named as its namespace
        subnet = subnet if subnet is not None else n % 250
        self.server_ip = f"10.{200 + subnet % 50}.{subnet}.1"
        self.client_ip = f"10.{200 + subnet % 50}.{subnet}.2"
        self.mtu = mtu
        self._procs: list[subprocess.Popen] = []

    # -- lifetime ---------------------------------------------------------------

    def __enter__(self) -> "VethPair":
        try:
            self.create()
        except Exception:
            self.delete()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.delete()

    def create(self) -> None:
        self.delete()                                     # leftovers of a killed run
        for ns in self.ns.values():
            _ip("netns", "add", ns)
        s, c = self.iface["server"], self.iface["client"]
        _ip("link", "add", s, "mtu", str(self.mtu), "netns", self.ns["server"],
            "type", "veth", "peer", "name", c, "mtu", str(self.mtu), "netns", self.ns["client"])
        for role, addr in (("server", self.server_ip), ("client", self.client_ip)):
            ns, dev = self.ns[role], self.iface[role]
            for key in ("all", "default", "lo"):
                self.run(role, ["sysctl", "-q", "-w", f"net.ipv6.conf.{key}.disable_ipv6=1"],
                         check=False)
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", dev, "up")
        self.wait_until_up()

    def wait_until_up(self, timeout: float = 5.0) -> None:
        # A TCP connection attempt to a closed port: "refused" means the
        # server's end answered (no ping needed).
        probe = ("import socket, sys\n"
                 "try:\n"
                 "    socket.create_connection((sys.argv[1], 9), timeout=0.5)\n"
                 "except ConnectionRefusedError:\n"
                 "    sys.exit(0)\n"
                 "except OSError:\n"
                 "    sys.exit(1)\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = self.run("client", [sys.executable, "-c", probe, self.server_ip],
                            check=False)
            if done.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("the veth pair did not come up")

    def delete(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        self._procs.clear()
        for ns in self.ns.values():
            _ip("netns", "del", ns, check=False)

    # -- running things inside ---------------------------------------------------

    def command(self, role: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns[role], *map(str, argv)]

    def run(self, role: str, argv: list[str], check: bool = True, **kwargs):
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("timeout", 120)
        return subprocess.run(self.command(role, argv), check=check, **kwargs)

    def popen(self, role: str, argv: list[str], **kwargs) -> subprocess.Popen:
        """Start a process in a namespace; it is killed on exit if still running."""
        proc = subprocess.Popen(self.command(role, argv), **kwargs)
        self._procs.append(proc)
        return proc

    @contextlib.contextmanager
    def capture(self, role: str, path, bpf: str = ""):
        """tcpdump on `role`'s veth end into `path` while the block runs: it
        is listening when the block starts, and has written every packet
        (SIGINT, then waited for) when it ends.  A 128 MiB buffer, so a burst
        the pair delivers at once is not lost."""
        argv = ["tcpdump", "-i", self.iface[role], "-n", "-U", "--immediate-mode", "-s", "0",
                "-B", "131072", "-w", path, *([bpf] if bpf else [])]
        dump = self.popen(role, argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
        line = dump.stderr.readline()
        if "listening on" not in line:
            raise RuntimeError("tcpdump did not start: %s" % line.strip())
        try:
            yield dump
        finally:
            time.sleep(0.2)                       # the last packets through the pair
            dump.send_signal(signal.SIGINT)
            _, rest = dump.communicate(timeout=30)
            # tcpdump's closing lines: "N packets captured ... N packets
            # dropped by kernel".
            dump.summary = line + rest

    def offloads(self, on: bool) -> bool:
        """Switch TSO/GSO/GRO on the pair on or off (needs ethtool); False when
        ethtool is missing.  Off, every captured packet fits the MTU."""
        if shutil.which("ethtool") is None:
            return False
        state = "on" if on else "off"
        for role in ("server", "client"):
            self.run(role, ["ethtool", "-K", self.iface[role], "tso", state, "gso", state,
                            "gro", state], check=False)
        return True
