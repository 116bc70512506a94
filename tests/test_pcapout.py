"""--pcap-out: the packets of the chosen connections, from their first, in
pcap files that dpkt and tcpdump read back; selection by service, by a
libpcap filter on the first packet, by event; --pcap-headers-only."""
from __future__ import annotations

import collections
import shutil
import subprocess

import dpkt

from conftest import REPO, read_zeek_log
from packets import write_pcap
from test_ftp import Session, login


def read_pcap(path):
    with open(path, "rb") as f:
        return [(ts, buf, len(buf)) for ts, buf in dpkt.pcap.Reader(f)]


def key_of(buf):
    ip = dpkt.ethernet.Ethernet(buf).data
    l4 = ip.data
    ends = sorted([(bytes(ip.src), l4.sport), (bytes(ip.dst), l4.dport)])
    return tuple(ends)


def conn_key(row):
    import socket
    a = (socket.inet_aton(row["id.orig_h"]), int(row["id.orig_p"]))
    b = (socket.inet_aton(row["id.resp_h"]), int(row["id.resp_p"]))
    return tuple(sorted([a, b]))


def run(run_cli, trace, out, *options):
    p = run_cli("replay", trace, "--logs", out, "--pcap-out", out, *options)
    assert p.returncode == 0, p.stderr
    return p


def test_chosen_by_service_every_packet_of_every_data_connection(run_cli, tmp_path):
    run(run_cli, REPO / "traces" / "ftp-loopback.pcap", tmp_path,
        "--pcap-select", "service:ftp-data")
    conns = read_zeek_log(tmp_path / "conn.log")
    chosen = {conn_key(r): int(r["orig_pkts"]) + int(r["resp_pkts"]) for r in conns
              if r["service"] == "ftp-data"}
    assert len(chosen) == 7
    written = collections.Counter(key_of(buf) for _, buf, _ in
                                  read_pcap(tmp_path / "selected.pcap"))
    assert dict(written) == chosen
    if shutil.which("tcpdump"):
        out = subprocess.run(["tcpdump", "-nr", tmp_path / "selected.pcap"],
                             capture_output=True, text=True)
        assert out.returncode == 0 and len(out.stdout.splitlines()) == sum(chosen.values())


def test_chosen_by_filter_with_headers_only(run_cli, tmp_path):
    run(run_cli, REPO / "traces" / "ftp-loopback.pcap", tmp_path,
        "--pcap-select", "bpf:tcp port 2121", "--pcap-headers-only")
    control = next(r for r in read_zeek_log(tmp_path / "conn.log") if r["id.resp_p"] == "2121")
    with open(tmp_path / "selected.pcap", "rb") as f:
        reader = dpkt.pcap.Reader(f)
        records = list(reader)
    assert len(records) == int(control["orig_pkts"]) + int(control["resp_pkts"])
    payload_seen = 0
    for ts, buf in records:
        ip = dpkt.ethernet.Ethernet(buf).data
        tcp = ip.data
        assert len(buf) == 14 + ip.hl * 4 + tcp.off * 4      # headers, no payload
        payload_seen += ip.len - ip.hl * 4 - tcp.off * 4
    assert payload_seen == int(control["orig_bytes"]) + int(control["resp_bytes"])


def test_chosen_by_event_from_the_first_packet(run_cli, tmp_path):
    bad = Session(port=21)
    bad.cmd("GET / HTTP/1.1\r\n\r\n")
    bad.reply("HTTP/1.1 200 OK\r\n\r\n")
    bad.close()
    good = Session(client="10.1.0.7", port=21)
    login(good)
    good.close()
    frames = sorted(bad.frames + good.frames, key=lambda f: f[0])
    trace = write_pcap(tmp_path / "t.pcap", frames)
    run(run_cli, trace, tmp_path, "--pcap-select", "event:analyzer_violation")
    written = read_pcap(tmp_path / "selected.pcap")
    assert [buf for _, buf, _ in written] == [f for _, f in bad.frames]    # all, in order


def test_bad_selections_are_usage_errors(run_cli, tmp_path):
    for spec in ("bpf:tcp port", "service:"):
        p = run_cli("replay", REPO / "traces" / "ftp-loopback.pcap", "--logs", tmp_path,
                    "--pcap-out", tmp_path, "--pcap-select", spec)
        assert p.returncode == 2 and "Traceback" not in p.stderr, (spec, p.stderr)
