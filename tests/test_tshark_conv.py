"""End-to-end: conn.log from `analyser replay` agrees with tshark's conversations.

For every sample trace in traces/ we replay it through the CLI (with -C: loopback
captures carry offloaded, i.e. wrong, checksums) and compare conn.log with
Wireshark's independent view of the same file:

* `tshark -q -z conv,tcp` / `-z conv,udp` lists the conversations and their total
  frame counts.  Every conversation must match exactly one conn.log row with the
  same address/port pair (either orientation) and orig_pkts+resp_pkts equal to
  tshark's frame total; the number of rows per protocol must equal the number of
  conversations.
* Byte totals: tshark's conv table prints bytes with units ("12 kB"), so the exact
  totals come from tshark's per-frame fields instead (frame.len and the IP total
  length, ip.len or 40+ipv6.plen), summed per conversation.  The per-frame link
  header length is derived from the data (frame.len minus IP total length), and
  conn.log's orig_ip_bytes+resp_ip_bytes must equal the conversation's frame bytes
  minus those link-header bytes.  The per-frame sums are cross-checked against the
  conv table (frames exactly; bytes exactly when printed in bytes, else to the
  printed unit) so that the two tshark views cannot silently disagree.

Nothing here is a number produced by our own tool: tshark is the reference.
"""
import glob
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACES = sorted(glob.glob(os.path.join(ROOT, "traces", "*.pcap")) +
                glob.glob(os.path.join(ROOT, "traces", "*.pcapng")))
# The samples made by traces/make_sample_traces.py; they must be present.
REQUIRED = ("ftp-loopback.pcap", "http-loopback.pcap")

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None,
                                reason="tshark not installed (apt-get install tshark)")


def tshark(*args):
    out = subprocess.run(["tshark", "-n", *args], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, f"tshark {' '.join(args)} failed: {out.stderr}"
    return out.stdout


def split_endpoint(text):
    """'127.0.0.1:2121' or '::1:2180' -> ('127.0.0.1', 2121)."""
    addr, _, port = text.rpartition(":")
    return addr, int(port)


# Units tshark's conv table uses (format_size with SI prefixes).
UNITS = {"bytes": 1, "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
CONV_LINE = re.compile(
    r"^(?P<a>\S+)\s+<->\s+(?P<b>\S+)\s+"
    r"(?P<f1>\d+)\s+(?P<b1>[\d,]+)\s+(?P<u1>\w+)\s+"
    r"(?P<f2>\d+)\s+(?P<b2>[\d,]+)\s+(?P<u2>\w+)\s+"
    r"(?P<ft>\d+)\s+(?P<bt>[\d,]+)\s+(?P<ut>\w+)\s+")


def conv_table(trace, proto):
    """tshark's conversation list: {frozenset of 2 endpoints: (frames, bytes, unit)}."""
    convs = {}
    for line in tshark("-r", trace, "-q", "-z", f"conv,{proto}").splitlines():
        m = CONV_LINE.match(line.strip())
        if not m:
            continue
        key = frozenset((split_endpoint(m["a"]), split_endpoint(m["b"])))
        assert key not in convs, f"tshark listed {key} twice"
        convs[key] = (int(m["ft"]), int(m["bt"].replace(",", "")), m["ut"])
    return convs


def per_frame_totals(trace, proto):
    """Exact per-conversation totals from per-frame fields.

    Returns {endpoint pair: {"frames", "frame_bytes", "link_bytes"}} and the set
    of link-header lengths seen (for the message if something is off).
    """
    fields = ["ip.src", "ipv6.src", "ip.dst", "ipv6.dst",
              f"{proto}.srcport", f"{proto}.dstport",
              "frame.len", "ip.len", "ipv6.plen"]
    args = ["-r", trace, "-Y", proto, "-T", "fields", "-E", "separator=\t",
            "-E", "occurrence=f"]   # first header only (ICMP errors quote a second)
    for f in fields:
        args += ["-e", f]
    totals = defaultdict(lambda: {"frames": 0, "frame_bytes": 0, "link_bytes": 0})
    link_lengths = set()
    for line in tshark(*args).splitlines():
        src4, src6, dst4, dst6, sport, dport, flen, iplen, plen6 = line.split("\t")
        src, dst = src4 or src6, dst4 or dst6
        # IP total length as Zeek counts it in *_ip_bytes.
        ip_total = int(iplen) if iplen else 40 + int(plen6)
        link = int(flen) - ip_total
        assert link >= 0, f"frame shorter than its IP packet in {trace}: {line!r}"
        link_lengths.add(link)
        t = totals[frozenset(((src, int(sport)), (dst, int(dport))))]
        t["frames"] += 1
        t["frame_bytes"] += int(flen)
        t["link_bytes"] += link
    return totals, link_lengths


def replay(trace, logdir):
    cmd = [sys.executable, "-m", "analyser", "replay", trace, "--logs", str(logdir), "-C"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, (f"{' '.join(cmd)} exited {out.returncode}\n"
                                 f"stdout:\n{out.stdout}\nstderr:\n{out.stderr}")
    return os.path.join(logdir, "conn.log")


def read_zeek_tsv(path):
    """Rows of a Zeek TSV log as dicts (unset '-' and empty '(empty)' kept as text)."""
    sep, fields, rows = "\t", None, []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("#separator"):
                sep = line.split(" ", 1)[1].encode().decode("unicode_escape")
            elif line.startswith("#fields"):
                fields = line.split(sep)[1:]
            elif line.startswith("#") or not line:
                continue
            else:
                assert fields is not None, f"{path}: data before #fields"
                values = line.split(sep)
                assert len(values) == len(fields), f"{path}: bad row {line!r}"
                rows.append(dict(zip(fields, values)))
    assert fields is not None, f"{path}: no #fields header"
    return rows


def test_sample_traces_present():
    names = {os.path.basename(t) for t in TRACES}
    missing = [n for n in REQUIRED if n not in names]
    assert not missing, f"missing sample traces {missing}: run traces/make_sample_traces.py"


@pytest.fixture(scope="module")
def conn_logs(tmp_path_factory):
    """Replay each trace once per test module; {trace: rows or the exception}."""
    cache = {}

    def get(trace):
        if trace not in cache:
            logdir = tmp_path_factory.mktemp(os.path.basename(trace).replace(".", "_"))
            cache[trace] = read_zeek_tsv(replay(trace, logdir))
        return cache[trace]
    return get


@pytest.mark.parametrize("proto", ["tcp", "udp"])
@pytest.mark.parametrize("trace", TRACES, ids=os.path.basename)
def test_conn_log_matches_tshark(trace, proto, conn_logs):
    convs = conv_table(trace, proto)
    totals, link_lengths = per_frame_totals(trace, proto)

    # The two tshark views must agree with each other first.
    assert set(totals) == set(convs), (
        f"tshark conv table and per-frame fields disagree on the {proto} conversations")
    for key, (frames, shown, unit) in convs.items():
        t = totals[key]
        assert t["frames"] == frames, f"{key}: {t['frames']} frames by fields, {frames} in conv"
        scale = UNITS[unit]
        if scale == 1:
            assert t["frame_bytes"] == shown, key
        else:   # printed rounded to the unit: allow one unit either way
            assert abs(t["frame_bytes"] - shown * scale) < scale, (key, t, shown, unit)

    rows = [r for r in conn_logs(trace) if r["proto"] == proto]
    by_pair = defaultdict(list)
    for r in rows:
        pair = frozenset(((r["id.orig_h"], int(r["id.orig_p"])),
                          (r["id.resp_h"], int(r["id.resp_p"]))))
        by_pair[pair].append(r)

    problems = []
    for key in sorted(convs, key=sorted):
        t = totals[key]
        matches = by_pair.get(key, [])
        if len(matches) != 1:
            problems.append(f"{sorted(key)}: {len(matches)} conn.log rows (want 1)")
            continue
        r = matches[0]
        pkts = int(r["orig_pkts"]) + int(r["resp_pkts"])
        ip_bytes = int(r["orig_ip_bytes"]) + int(r["resp_ip_bytes"])
        want_ip_bytes = t["frame_bytes"] - t["link_bytes"]
        if pkts != t["frames"]:
            problems.append(f"{sorted(key)}: {pkts} packets, tshark {t['frames']}")
        if ip_bytes != want_ip_bytes:
            problems.append(f"{sorted(key)}: {ip_bytes} IP bytes, tshark {t['frame_bytes']} "
                            f"frame bytes - {t['link_bytes']} link-header bytes "
                            f"= {want_ip_bytes} (link header lengths {sorted(link_lengths)})")
    extra = [sorted(k) for k in by_pair if k not in convs]
    if extra:
        problems.append(f"conn.log {proto} rows tshark does not see: {extra}")
    if len(rows) != len(convs):
        problems.append(f"{len(rows)} {proto} rows in conn.log, tshark sees {len(convs)} "
                        f"conversations")
    assert not problems, f"{os.path.basename(trace)} ({proto}):\n  " + "\n  ".join(problems)


def test_tshark_sees_both_protocols():
    """Guard against an empty comparison: the samples must have TCP and UDP."""
    seen = {p: sum(len(conv_table(t, p)) for t in TRACES) for p in ("tcp", "udp")}
    assert seen["tcp"] > 0 and seen["udp"] > 0, seen
