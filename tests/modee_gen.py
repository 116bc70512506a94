"""Synthetic GridFTP sessions (control channel + MODE E data connections).

For cases real tools rarely produce: out-of-order offsets, holes, overlapping
blocks, EOD on every stream and the EOD count (EODC) on one, headers split
across TCP segments at awkward places, data in either direction, passive
(PASV or SPAS) or active (PORT) data connections.  Built on ``packets.py``.

    from modee_gen import gridftp_session, EOD, EOF
    frames, truth = gridftp_session(
        [[(0, 0, 1000), (0, 2000, 500)],          # stream 0: offsets 0 and 2000
         [(0, 1000, 1000)]],                      # stream 1: offset 1000
        direction="download", passive=True, split="awkward")
    write_pcap(path, frames)                      # frames are (ts, ethernet frame)

MODE E (extended block mode) block header
-----------------------------------------
Sources checked: the GridFTP protocol text shipped with Globus
(``globus_ftp_extensions(3)``, Debian package libglobus-ftp-control-doc,
section "Extended Block Mode"; it follows GFD.20), the Globus implementation
(``globus_xio_mode_e_driver.c`` and ``globus_ftp_control_data.c`` of the Grid
Community Toolkit: ``GLOBUS_FTP_CONTROL_DATA_DESCRIPTOR_CLOSE 0x04, _EOD 0x08,
_RESTART 0x10, _ERRORS 0x20, _EOF 0x40, _EOR 0x80``; on an EOF header the
reader takes the offset field as the EOD count and reads no payload), and real
captures of globus-gridftp-server 13.24 / globus-url-copy 10.12
(``traces/gridftp-*.pcap``).

    +----------------+-------/-----------+------/------------+
    | Descriptor     |    Byte Count     |    Offset         |
    |         8 bits |        64 bits    |          64 bits  |
    +----------------+-------/-----------+------/------------+

17 bytes, integers big endian, followed by ``count`` bytes of file data that
belong at file offset ``offset``.  Descriptor bits:

    128 EOR   end of record (legacy)
     64 EOF   end of file: this is the EOF header; its count is unused (0) and
              its offset field is the *EOD count* (EODC): how many EODs the
              receiver must see over all data connections; no payload follows
     32 ERRORS suspected errors in the data block
     16 RESTART data block is a restart marker
      8 EOD   end of data on this connection (the last block, or a zero-length
              block after it)
      4 CLOSE sender will close the connection (after EOD)

(The numbering sometimes quoted from memory -- "64 = EOD, 8 = EOF, 4 =
errors, 2 = restart" -- is wrong; the values above are the spec's and the
implementation's.)  Real transfers end every data connection with a
zero-length EOD block (descriptor 8); on one connection that block carries EOF
too (descriptor 72, count 0, offset = number of data connections).

Arguments of ``gridftp_session``
--------------------------------
``blocks_per_stream``: one list per data connection, each a list of
``(descriptor, offset, payload_or_len)``; ``payload_or_len`` is bytes or an
int (the bytes are then taken from a deterministic virtual file, so
overlapping blocks carry identical bytes).  For an EOF header give
``(EOF [| EOD], eod_count, 0)``.  With ``auto_eod=True`` (default) a stream
whose blocks have no EOD bit gets a zero-length EOD block appended, and the
stream ``eodc_stream`` (default 0; None: no EOF header) gets the EOF bit on
that block with offset ``eodc`` (default: the number of streams) -- as Globus
does.  If that stream already ends with EOD, a separate EOF|EOD header is not
added; a plain EOF header (descriptor 64) is appended instead.

``split``: how each data connection's bytes become TCP segments: an int
(fixed segment size), a list of cut positions (stream offsets), ``"mss"``
(1448), or ``"awkward"`` (every header is cut: after 1, 8, 9, 16 bytes in
turn, and payloads are cut at odd sizes as well).  ``order``: ``"interleaved"``
(one segment per connection in turn, as parallel streams look on the wire) or
``"sequential"``.

Returns ``(frames, truth)``: frames are ``(timestamp, ethernet_frame)`` for
``packets.write_pcap``; truth is a dict (see the end of ``gridftp_session``)
with the control 5-tuple, command, file, per data connection its 5-tuple,
sender side, blocks ``[descriptor, count, offset]``, data bytes, header bytes,
segment sizes, EOD and EODC, and for the transfer the total of block counts,
the unique bytes covered, holes, overlaps and whether [0, size) is covered
exactly once.
"""
from __future__ import annotations

import random
import struct

from packets import ACK, FIN, PSH, SYN, TcpPeer, close, handshake, timed  # noqa: F401

EOR, EOF, ERRORS, RESTART, EOD, CLOSE = 0x80, 0x40, 0x20, 0x10, 0x08, 0x04
HEADER = struct.Struct("!BQQ")
MSS = 1448


def header(descriptor: int, count: int, offset: int) -> bytes:
    """One 17-byte MODE E header."""
    return HEADER.pack(descriptor, count, offset)


def file_bytes(offset: int, length: int, seed: int = 7) -> bytes:
    """Bytes of a deterministic virtual file (same offset -> same byte)."""
    # byte i = (i * 131 + seed + (i >> 8)) mod 251: cheap, not periodic at 256
    return bytes(((i * 131 + seed + (i >> 8)) % 251) for i in range(offset, offset + length))


def coverage(ranges, size: int | None = None) -> dict:
    """Holes, overlaps and covered bytes of [offset, offset+count) ranges."""
    ivs = sorted((o, o + c) for o, c in ranges if c > 0)
    holes, overlaps, merged = [], [], []
    end = 0
    for a, b in ivs:
        if a > end:
            holes.append([end, a])
        if a < end:
            overlaps.append([a, min(b, end)])
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
        end = max(end, b)
    if size is not None and end < size:
        holes.append([end, size])
    unique = sum(b - a for a, b in merged)
    return {"unique_bytes": unique, "covered_to": end, "holes": holes,
            "overlaps": overlaps,
            "complete": not holes and not overlaps and (size is None or end == size)}


def _stream_blocks(spec, auto_eod, add_eof, eodc, seed):
    """[(descriptor, count, offset, payload)] for one connection."""
    out = []
    for desc, offset, pl in spec:
        if desc & EOF:
            out.append((desc, 0, offset, b""))        # offset = EOD count
            continue
        data = pl if isinstance(pl, (bytes, bytearray)) else file_bytes(offset, pl, seed)
        out.append((desc, len(data), offset, bytes(data)))
    has_eod = any(b[0] & EOD for b in out)
    has_eof = any(b[0] & EOF for b in out)
    if auto_eod and not has_eod:
        out.append(((EOD | EOF) if add_eof and not has_eof else EOD,
                    0, eodc if add_eof and not has_eof else 0, b""))
    elif add_eof and not has_eof:
        out.append((EOF, 0, eodc, b""))
    return out


def _cuts(stream: bytes, header_pos: list[int], split, rng) -> list[int]:
    """Segment lengths covering `stream`."""
    n = len(stream)
    if n == 0:
        return []
    if split == "mss":
        split = MSS
    if isinstance(split, int):
        return [min(split, n - i) for i in range(0, n, split)]
    if isinstance(split, (list, tuple)):
        points = sorted({p for p in split if 0 < p < n})
    elif split == "awkward":
        inner = [1, 8, 9, 16]
        points = set()
        for k, h in enumerate(header_pos):
            points.add(h + inner[k % len(inner)])     # inside the header
        pos = 0
        while pos < n:                                # and odd payload cuts
            pos += rng.choice([3, 17, 18, 700, 1001, MSS])
            points.add(pos)
        points = sorted(p for p in points if 0 < p < n)
        # never more than MSS per segment
        full, prev = [], 0
        for p in points + [n]:
            while p - prev > MSS:
                prev += MSS
                full.append(prev)
            full.append(p)
            prev = p
        points = full[:-1]
    else:
        raise ValueError(f"split: {split!r}")
    lens, prev = [], 0
    for p in points + [n]:
        lens.append(p - prev)
        prev = p
    return lens


def gridftp_session(blocks_per_stream, direction: str = "download", passive: bool = True,
                    spas: bool = False, file: str = "/data/file.bin", size: int | None = None,
                    parallelism: int | None = None, split="mss", order: str = "interleaved",
                    auto_eod: bool = True, eodc_stream: int | None = 0, eodc: int | None = None,
                    client: str = "10.0.0.1", server: str = "10.0.0.2",
                    control_port: int = 2811, client_port: int = 40000,
                    data_port: int = 50000, acks: bool = True, reply_code: int = 226,
                    start: float = 1000.0, step: float = 0.0005, seed: int = 7):
    """A whole GridFTP session as frames; see the module docstring."""
    if direction not in ("download", "upload"):
        raise ValueError("direction: download or upload")
    rng = random.Random(seed)
    n = len(blocks_per_stream)
    eodc = n if eodc is None else eodc
    frames = []

    # -- control: login, TYPE, MODE E, OPTS, PASV/SPAS/PORT, RETR/STOR, 150
    c = TcpPeer(client, client_port, 1_000_000)
    s = c.connect(TcpPeer(server, control_port, 2_000_000))
    frames += handshake(c, s)

    def say(peer, other, text):
        frames.append(peer.send(PSH | ACK, text.encode()))
        frames.append(other.send(ACK))

    say(s, c, "220 synthetic GridFTP Server ready.\r\n")
    cmd = "RETR" if direction == "download" else "STOR"
    for q, a in (("USER anonymous", "331 Password required for anonymous."),
                 ("PASS x", "230 User anonymous logged in."),
                 ("TYPE I", "200 Type set to I."),
                 ("MODE E", "200 Mode set to E.")):
        say(c, s, q + "\r\n")
        say(s, c, a + "\r\n")
    if direction == "download" and parallelism is not None:
        say(c, s, f"OPTS RETR Parallelism={parallelism},{parallelism},{parallelism};\r\n")
        say(s, c, "200 OPTS Command Successful.\r\n")
    hp = lambda h, p: ",".join(h.split(".")) + f",{p >> 8},{p & 255}"
    if passive:
        listen_h, listen_p = server, data_port
        if spas:
            setup = "SPAS"
            say(c, s, "SPAS\r\n")
            say(s, c, f"229-Entering Striped Passive Mode.\r\n {hp(server, data_port)}\r\n"
                      "229 End\r\n")
        else:
            setup = "PASV"
            say(c, s, "PASV\r\n")
            say(s, c, f"227 Entering Passive Mode ({hp(server, data_port)})\r\n")
    else:
        setup = "PORT"
        listen_h, listen_p = client, data_port
        say(c, s, f"PORT {hp(client, data_port)}\r\n")
        say(s, c, "200 PORT Command successful.\r\n")
    say(c, s, f"{cmd} {file}\r\n")
    say(s, c, "150 Beginning transfer.\r\n")

    # -- data connections
    conns = []
    for i, spec in enumerate(blocks_per_stream):
        blocks = _stream_blocks(spec, auto_eod, eodc_stream == i, eodc, seed)
        stream, hpos = bytearray(), []
        for desc, count, offset, payload in blocks:
            hpos.append(len(stream))
            stream += header(desc, count, offset) + payload
        lens = _cuts(bytes(stream), hpos, split, rng)
        if passive:      # client connects to the server's listener
            o = TcpPeer(client, client_port + 1 + i, 3_000_000 + i * 100_000)
        else:            # server connects to the client's PORT address
            o = TcpPeer(server, 45000 + i, 3_000_000 + i * 100_000)
        r = o.connect(TcpPeer(listen_h, listen_p, 5_000_000 + i * 100_000))
        orig_is_client = o.addr == client
        sender_is_orig = (direction == "upload") == orig_is_client
        snd, rcv = (o, r) if sender_is_orig else (r, o)
        conns.append({"orig": o, "resp": r, "snd": snd, "rcv": rcv, "stream": bytes(stream),
                      "lens": lens, "blocks": blocks,
                      "sender": "orig" if sender_is_orig else "resp"})
    for d in conns:
        frames += handshake(d["orig"], d["resp"])

    def segments(d):
        pos = 0
        for ln in d["lens"]:
            yield d["stream"][pos:pos + ln]
            pos += ln

    gens = [segments(d) for d in conns]
    live = list(range(n))
    while live:
        for i in list(live) if order == "interleaved" else live[:1]:
            seg = next(gens[i], None)
            if seg is None:
                live.remove(i)
                continue
            d = conns[i]
            frames.append(d["snd"].send(PSH | ACK, seg))
            if acks:
                frames.append(d["rcv"].send(ACK))
    for d in conns:
        frames += close(d["snd"], d["rcv"])

    # -- end of transfer, QUIT
    say(s, c, f"{reply_code} Transfer Complete.\r\n" if reply_code == 226
        else f"{reply_code} Transfer failed.\r\n")
    say(c, s, "QUIT\r\n")
    say(s, c, "221 Goodbye.\r\n")
    frames += close(c, s)

    # -- truth
    ranges = [(b[2], b[1]) for d in conns for b in d["blocks"] if not b[0] & EOF]
    if size is None:
        size = max((o + ln for o, ln in ranges), default=0)
    dcs = []
    for d in conns:
        o, r = d["orig"], d["resp"]
        blocks = d["blocks"]
        eof = [b for b in blocks if b[0] & EOF]
        dcs.append({
            "orig_h": o.addr, "orig_p": o.port, "resp_h": r.addr, "resp_p": r.port,
            "proto": "tcp", "sender": d["sender"],
            "blocks": [[b[0], b[1], b[2]] for b in blocks],
            "data_bytes": sum(b[1] for b in blocks if not b[0] & EOF),
            "header_bytes": HEADER.size * len(blocks),
            "stream_bytes": len(d["stream"]),
            "segments": d["lens"],
            "eod": any(b[0] & EOD for b in blocks),
            "eof_eod_count": eof[0][2] if eof else None,
        })
    truth = {
        "control": {"orig_h": client, "orig_p": client_port, "resp_h": server,
                    "resp_p": control_port, "proto": "tcp"},
        "direction": direction, "command": cmd, "file": file, "data_setup": setup,
        "endpoints": [[listen_h, listen_p]], "parallelism": parallelism,
        "mode": "E", "reply_code": reply_code, "size": size,
        "streams": n, "data_connections": dcs,
        "bytes": sum(dc["data_bytes"] for dc in dcs),
        "eods_seen": sum(1 for dc in dcs for b in dc["blocks"] if b[0] & EOD),
        "eod_count_expected": next((dc["eof_eod_count"] for dc in dcs
                                    if dc["eof_eod_count"] is not None), None),
        "coverage": coverage(ranges, size),
    }
    return timed(frames, start, step), truth


def split_file(size: int, block: int, streams: int, shuffle: bool = False, seed: int = 7):
    """blocks_per_stream for a whole file cut into `block`-byte blocks dealt
    round-robin over `streams` connections (shuffled offsets if asked)."""
    offs = list(range(0, size, block))
    if shuffle:
        random.Random(seed).shuffle(offs)
    out = [[] for _ in range(streams)]
    for k, o in enumerate(offs):
        out[k % streams].append((0, o, min(block, size - o)))
    return out
