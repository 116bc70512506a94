#!/usr/bin/env python3
"""Record the GridFTP sample traces from real Globus programs, with ground truth.

    python3 traces/make_gridftp_traces.py      # as root; writes traces/gridftp-*.pcap/.json

Needs the Debian packages globus-gridftp-server-progs, globus-gass-copy-progs,
iproute2, tcpdump and tshark, and the Python module dpkt.

How the traces are made
-----------------------
``tests/gridftp_env.py`` creates two network namespaces joined by a veth pair
(client 10.77.0.1, server 10.77.0.2, MTU 1500), runs ``globus-gridftp-server
-aa -anonymous-user nobody -p 2811 -control-interface 10.77.0.2
-data-interface 10.77.0.2 -c /dev/null -bs 65536`` in one and
``globus-url-copy -p N`` in the other, and captures the client's veth with
``tcpdump -U --immediate-mode -s 0 tcp``.  The server's block size is 64 KiB
(``-bs 65536``; its default is 256 KiB) and uploads use ``globus-url-copy -bs
65536``, so each file is split into many MODE E blocks that the sender spreads
over its data connections, in whatever order they become writable.

* ``gridftp-p1.pcap``: download (RETR) of 600,001 bytes with ``-p 1``: MODE E,
  ``OPTS RETR Parallelism=1,1,1;``, PORT, one data connection.
* ``gridftp-p4.pcap``: download of 1,000,003 bytes with ``-p 4``: PORT, the
  server opens 4 data connections to the client's port.
* ``gridftp-upload-p3.pcap``: upload (STOR) of 700,001 bytes with ``-p 3``:
  PASV, ALLO, the client opens 3 data connections to the server's port.
* ``gridftp-spas-upload-p2.pcap``: upload of 300,007 bytes with ``-p 2
  -stripe``: SPAS and its multi-line ``229-Entering Striped Passive Mode``
  reply instead of PASV, 2 data connections.

File contents come from a seeded PRNG (same bytes every run); ports, sequence
numbers, timestamps and the distribution of blocks over connections change from
run to run.  A capture is retried (up to 5 times) if tcpdump reports drops, a
data connection misses bytes or does not close, or the transfer does not end
with 226.

Ground truth (``gridftp-*.json``)
---------------------------------
``tests/gridftp_env.py`` reassembles every TCP connection with dpkt and parses
the FTP control channel and the MODE E block headers itself.  This script
re-extracts each data connection's sender bytes with tshark (``-z
follow,tcp,raw``: an independent reassembly) and walks the MODE E headers with
its own parser (``walk_modee`` below); the trace is written only if both give
the same blocks, the block counts add up to the file size, the offsets cover
the file without holes or overlaps, and the server's own transfer log
(NBYTES, STREAMS) agrees.  Each JSON has ``transfers`` (one per globus-url-copy
run: request, control 5-tuple, command, file as sent, data_setup, endpoints,
parallelism, dcau, replies, reply_code, bytes, streams_seen, coverage,
eod_count_expected, eods_seen, data_connections with 5-tuple, sender, payload
bytes per side and blocks ``[descriptor, count, offset]``), and
``control_sessions`` (every command and reply line with its time).
"""
from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SEED = 20261123

spec = importlib.util.spec_from_file_location(
    "gridftp_env", os.path.join(REPO, "tests", "gridftp_env.py"))
genv = importlib.util.module_from_spec(spec)
sys.modules["gridftp_env"] = genv
spec.loader.exec_module(genv)

# name -> (direction, size, streams, extra globus-url-copy args)
TRACES = {
    "gridftp-p1": ("download", 600_001, 1, []),
    "gridftp-p4": ("download", 1_000_003, 4, []),
    "gridftp-upload-p3": ("upload", 700_001, 3, ["-bs", "65536"]),
    "gridftp-spas-upload-p2": ("upload", 300_007, 2, ["-bs", "65536", "-stripe"]),
}
SERVER_ARGS = ["-bs", "65536"]
WORKDIR = "/tmp/gridftp-sample"      # so the paths in the traces are the same every run
MAX_TRACE_BYTES = 2 * 1024 * 1024


def content(name: str, size: int) -> bytes:
    rng = random.Random(f"{SEED}:{name}")
    return rng.randbytes(size)


# ---------------------------------------------------------------------------
# independent check: tshark reassembly + a separate MODE E walker

def walk_modee(data: bytes):
    """MODE E headers of one direction: [(descriptor, count, offset)], leftover.

    1-byte descriptor, 8-byte big-endian count, 8-byte big-endian offset; after
    a header with the EOF bit (0x40) no payload follows (its offset is the EOD
    count), otherwise `count` payload bytes follow.
    """
    out, pos = [], 0
    while len(data) - pos >= 17:
        d = data[pos]
        count = int.from_bytes(data[pos + 1:pos + 9], "big")
        offset = int.from_bytes(data[pos + 9:pos + 17], "big")
        out.append((d, count, offset))
        pos += 17 + (0 if d & 0x40 else count)
    return out, len(data) - pos


def tshark_streams(pcap):
    """{(orig_h, orig_p, resp_h, resp_p): tcp.stream index} for SYN-opened streams."""
    r = subprocess.run(["tshark", "-r", pcap, "-Y", "tcp.flags.syn==1 && tcp.flags.ack==0",
                        "-T", "fields", "-e", "tcp.stream", "-e", "ip.src", "-e",
                        "tcp.srcport", "-e", "ip.dst", "-e", "tcp.dstport"],
                       capture_output=True, text=True, check=True)
    out = {}
    for line in r.stdout.splitlines():
        idx, sh, sp, dh, dp = line.split("\t")
        out.setdefault((sh, int(sp), dh, int(dp)), int(idx))
    return out


def tshark_follow(pcap, index):
    """(bytes from node 0, bytes from node 1) of one TCP stream, via tshark."""
    r = subprocess.run(["tshark", "-r", pcap, "-q", "-z", f"follow,tcp,raw,{index}"],
                       capture_output=True, text=True, check=True)
    parts = [bytearray(), bytearray()]
    body = r.stdout.split("Node 1:", 1)[1].split("\n", 1)[1]
    for line in body.splitlines():
        if not line.strip() or line.startswith("="):
            continue
        side = 1 if line.startswith("\t") else 0
        parts[side] += bytes.fromhex(line.strip())
    return bytes(parts[0]), bytes(parts[1])


def check(pcap, truth, size, streams, direction) -> list[str]:
    errors = []
    (t,) = truth["transfers"]
    if t.get("mode") != "E":
        errors.append(f"mode {t.get('mode')}")
    if t.get("streams_seen") != streams:
        errors.append(f"{t.get('streams_seen')} data connections, wanted {streams}")
    if t.get("bytes") != size:
        errors.append(f"block counts sum to {t.get('bytes')}, file has {size}")
    if not (t.get("coverage") or {}).get("complete"):
        errors.append(f"coverage {t.get('coverage')}")
    if t.get("eod_count_expected") != streams or t.get("eods_seen") != streams:
        errors.append(f"EODC {t.get('eod_count_expected')}, EODs {t.get('eods_seen')}")
    want_cmd = "RETR" if direction == "download" else "STOR"
    if t.get("command") != want_cmd:
        errors.append(f"command {t.get('command')}")
    log = t.get("server_log") or {}
    if log.get("NBYTES") != str(size) or log.get("STREAMS") != str(streams):
        errors.append(f"server log says {log}")
    index = tshark_streams(pcap)
    for dc in t["data_connections"]:
        key = (dc["orig_h"], dc["orig_p"], dc["resp_h"], dc["resp_p"])
        if key not in index:
            errors.append(f"tshark does not see {key}")
            continue
        node0, node1 = tshark_follow(pcap, index[key])
        sent = node0 if dc["sender"] == "orig" else node1
        blocks, rest = walk_modee(sent)
        if [list(b) for b in blocks] != dc["blocks"] or rest:
            errors.append(f"{key}: tshark+walk_modee {blocks[:4]}... rest {rest} "
                          f"!= gridftp_env {dc['blocks'][:4]}...")
        if len(sent) != dc["payload_bytes"][dc["sender"]]:
            errors.append(f"{key}: tshark {len(sent)} bytes, dpkt "
                          f"{dc['payload_bytes'][dc['sender']]}")
    return errors


def record(name, direction, size, streams, extra):
    pcap = os.path.join(HERE, f"{name}.pcap")
    data = content(name, size)
    fname = f"{name}.bin"
    for attempt in range(1, 6):
        if os.path.exists(WORKDIR):
            shutil.rmtree(WORKDIR)
        with genv.GridFTPEnv(server_args=SERVER_ARGS, workdir=WORKDIR) as env:
            if direction == "download":
                env.add_file(fname, data)
            with env.capture(pcap) as cap:
                if direction == "download":
                    env.download(fname, streams=streams, extra_args=extra)
                else:
                    env.upload(fname, data, streams=streams, extra_args=extra)
        problems = cap.problems() + check(pcap, cap.truth, size, streams, direction)
        if not problems:
            break
        print(f"{name}: attempt {attempt}: {problems}", file=sys.stderr)
    else:
        sys.exit(f"{name}: no clean capture after 5 attempts")
    if os.path.getsize(pcap) > MAX_TRACE_BYTES:
        sys.exit(f"{name}: {os.path.getsize(pcap)} bytes, more than 2 MB")
    truth = {
        "trace": f"{name}.pcap",
        "made_by": "traces/make_gridftp_traces.py (see its docstring)",
        "tools": genv.tool_versions(),
        "server": {"addr": genv.SERVER_ADDR, "port": env.port, "args": SERVER_ARGS},
        "client": {"addr": genv.CLIENT_ADDR},
        "seed": SEED,
        "capture_seconds": cap.seconds,
        "modee_header": "descriptor u8, count u64be, offset u64be; EOD=8, EOF=64 "
                        "(offset = EOD count, no payload), CLOSE=4, RESTART=16, "
                        "ERRORS=32, EOR=128",
        **cap.truth,
    }
    with open(os.path.join(HERE, f"{name}.json"), "w") as f:
        json.dump(truth, f, indent=1)
        f.write("\n")
    t = truth["transfers"][0]
    per = [dc["data_bytes"] for dc in t["data_connections"]]
    print(f"{name}.pcap: {os.path.getsize(pcap):,} bytes, {t['command']} {size:,} B over "
          f"{t['streams_seen']} data connections ({per}), {t['data_setup']}, "
          f"capture {cap.seconds:.2f} s")


def main():
    ok, why = genv.available()
    if not ok:
        sys.exit(f"cannot record GridFTP traces: {why}")
    if shutil.which("tshark") is None:
        sys.exit("tshark missing (Debian package tshark)")
    only = set(sys.argv[1:])
    for name, (direction, size, streams, extra) in TRACES.items():
        if not only or name in only:
            record(name, direction, size, streams, extra)


if __name__ == "__main__":
    main()
