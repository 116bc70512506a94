"""GridFTP: FTP's control channel plus extended block mode, parallel and
striped data connections, and Zeek's data-channel detection.

Role in the data flow: flows -> streams -> **analysers (protocols.gridftp)**
-> sinks (`transfers.log` rows with protocol `gridftp`, events, conn.log
`service` gridftp / gridftp-data).

Three analysers live here:

* `GridFtp` is `protocols.ftp.Ftp` with GridFTP's commands (GFD.20,
  globus_ftp_extensions(3)): `MODE E`, `OPTS RETR Parallelism=n,min,max`,
  `SPAS` (multi-line 229 with one host-port per line) and `SPOR` (several
  host-ports), `DCAU`, `PROT`, `AUTH GSSAPI`/`ADAT`, `ERET`/`ESTO`.  The
  session is labelled GridFTP on port 2811 or when one of those is seen.  In
  MODE E the sender opens any number of connections to each announced
  endpoint, and keeps them open across transfers (EOD ends a transfer on a
  connection, not the connection): every endpoint is expected again as soon
  as a connection to it appears, up to MAX_STREAMS per channel.
* `ModeEData` reads one MODE E data connection: the side that speaks first
  carries the data (the other is left to compiled counting), each 17-byte
  block header is read and the block body skipped in compiled code, so file
  bytes never reach Python.  Blocks are reported to the control connection's
  analyser, which adds them up per transfer (`BlockTally`: bytes per stream,
  total, byte ranges covered, holes, overlaps, EODs against the EOF header's
  EOD count).  When the data channel is authenticated or protected (DCAU not
  N, PROT not C) the blocks are inside TLS: the connections are only counted
  (bytes then include headers and TLS framing).
* `GridFtpData` (which extends `protocols.tls.Tls`, so it also writes
  ssl.log) reproduces Zeek's `base/protocols/ftp/gridftp.zeek`
  data-channel heuristic passively: a TLS connection with client and server
  certificates and a NULL bulk cipher that moves more than `size_threshold`
  bytes in a direction within `max_time` is `gridftp-data`.
* `GsiDataChannel`: a GSI control channel is wrapped (ENC/MIC/CONF after AUTH
  GSSAPI), so its PASV/PORT replies are unreadable.  While such a session
  lives, `GridFtp` expects a connection between its two hosts on any port,
  either way (`expect(host, None, orig_h=peer)`, one pending per direction,
  renewed when met, withdrawn when the control connection ends).  The
  connection is linked to the session and `GsiDataChannel` checks it: a TLS
  handshake from the originator is a data channel (`ssl,gridftp-data` at
  once, then counted in C); a connection to the control's own server port is
  a second control session, handed to `GridFtp`; anything else is only
  counted (event `gridftp_not_data_channel`).

Expectations that can no longer be met are withdrawn (`Expectation.cancel`):
in MODE E the "one more" connection per endpoint once every EOD the EOF
header announced has come or the transfer is reported (a later transfer on
the same channel expects one more again).
"""
from __future__ import annotations

import base64
import binascii
import bisect
import re
import struct

from analyser import ORIG, RESP, Analyser, Gap, StreamEnd
from protocols.ftp import (MAX_STREAMS, Ftp, StreamCount, Transfer, parse_port_numbers)
from protocols.tls import SSL_LOG, Tls

# -- wire formats ------------------------------------------------------------------

# Extended block header (GFD.20 §3.6): descriptor, byte count, offset.  In an
# EOF header the count is unused and the offset is the number of EODs to expect.
MODE_E_HEADER = struct.Struct("!BQQ")
EOR, EOF, SUSPECT_ERRORS, RESTART_MARKER, EOD, CLOSE = 0x80, 0x40, 0x20, 0x10, 0x08, 0x04
UNDEFINED_DESCRIPTOR_BITS = 0x03

TLS_HANDSHAKE, TLS_CLIENT_HELLO = 22, 1             # record type, message type
# Cipher suites whose IANA name has "WITH_NULL" (no bulk encryption).
NULL_CIPHER_SUITES = frozenset({
    0x0000, 0x0001, 0x0002, 0x002C, 0x002D, 0x002E, 0x003B, 0x00B0, 0x00B1, 0x00B4,
    0x00B5, 0x00B8, 0x00B9, 0xC001, 0xC006, 0xC00B, 0xC010, 0xC015, 0xC039, 0xC03A, 0xC03B})

# -- limits -------------------------------------------------------------------------

MAX_RANGES = 4096               # disjoint byte ranges kept per transfer
MAX_HOLES_REPORTED = 16
GRIDFTP_PORT = 2811
GRIDFTP_SIGNS = frozenset({"SPAS", "SPOR", "ERET", "ESTO", "DCAU", "SBUF"})
PARALLELISM = re.compile(r"Parallelism\s*=\s*(\d+)", re.I)
HOST_PORT = re.compile(r"\d+\s*,\s*\d+\s*,\s*\d+\s*,\s*\d+\s*,\s*\d+\s*,\s*\d+")



def client_hello_verdict(side: int, data: bytes) -> bool | None:
    """Does a side's first data look like a TLS ClientHello from the client?
    True, False, or None (too short to tell)."""
    if side == RESP:
        return False                   # a TLS server does not speak first
    if len(data) < 6:
        return None
    return data[0] == TLS_HANDSHAKE and data[1] == 3 and data[5] == TLS_CLIENT_HELLO


def control_session(a: Analyser) -> "GridFtp | None":
    """The GridFTP control session that announced this connection, if alive."""
    parent = a.parent
    return parent if isinstance(parent, GridFtp) else None


class BlockTally:
    """MODE E blocks of one transfer, from all its streams."""

    def __init__(self):
        self.bytes = 0
        self.blocks = 0
        self.per_stream: dict[str, int] = {}
        self.starts: list[int] = []    # disjoint, sorted byte ranges [start, end)
        self.ends: list[int] = []
        self.overlap_bytes = 0
        self.eods = 0
        self.eod_count_expected: int | None = None
        self.ranges_overflow = False
        self.problems: list[str] = []

    def add_block(self, uid: str, offset: int, count: int) -> None:
        self.blocks += 1
        self.bytes += count
        self.per_stream[uid] = self.per_stream.get(uid, 0) + count
        if count:
            self.add_range(offset, offset + count)

    def add_range(self, start: int, end: int) -> None:
        """Merge [start, end) into the covered ranges, counting re-sent bytes."""
        if self.ranges_overflow:
            return
        lo = bisect.bisect_left(self.ends, start)      # first range ending at/after start
        hi = bisect.bisect_right(self.starts, end)     # ranges starting at/before end
        for s, e in zip(self.starts[lo:hi], self.ends[lo:hi]):
            self.overlap_bytes += max(0, min(end, e) - max(start, s))
        if lo < hi:
            start, end = min(start, self.starts[lo]), max(end, self.ends[hi - 1])
        self.starts[lo:hi] = [start]
        self.ends[lo:hi] = [end]
        if len(self.starts) > MAX_RANGES:
            self.ranges_overflow = True
            self.starts, self.ends = [], []

    def merge(self, other: "BlockTally") -> None:
        """Adopt blocks seen before their transfer was known."""
        for uid, n in other.per_stream.items():
            self.per_stream[uid] = self.per_stream.get(uid, 0) + n
        self.bytes += other.bytes
        self.blocks += other.blocks
        self.overlap_bytes += other.overlap_bytes
        self.eods += other.eods
        if other.eod_count_expected is not None:
            self.eod_count_expected = other.eod_count_expected
        self.problems += other.problems
        if other.ranges_overflow:
            self.ranges_overflow = True
            self.starts, self.ends = [], []
        for s, e in zip(other.starts, other.ends):
            self.add_range(s, e)

    def coverage(self, expected_size: int | None = None) -> dict:
        """Do the blocks cover [0, size) exactly once?"""
        if self.ranges_overflow:
            return {"complete": None, "reason": "too many disjoint ranges",
                    "overlap_bytes": self.overlap_bytes}
        holes = []
        previous_end = 0
        for s, e in zip(self.starts, self.ends):
            if s > previous_end:
                holes.append([previous_end, s])
            previous_end = e
        if expected_size is not None and expected_size > previous_end:
            holes.append([previous_end, expected_size])
        eods_ok = self.eod_count_expected is None or self.eods == self.eod_count_expected
        return {"complete": not holes and self.overlap_bytes == 0 and eods_ok,
                "covered_to": previous_end, "ranges": len(self.starts),
                "holes": holes[:MAX_HOLES_REPORTED], "hole_count": len(holes),
                "hole_bytes": sum(e - s for s, e in holes), "overlap_bytes": self.overlap_bytes}


class ModeEData(Analyser):
    """One MODE E data connection: block headers read, bodies skipped in C."""
    name = "gridftp-mode-e"

    def main(self):
        meta = self.conn.expectation or {}
        channel = meta.get("channel")
        session = control_session(self)
        # The side that speaks first carries the data; the other only counts.
        try:
            side, _ = self.peek_any(MODE_E_HEADER.size)
        except (Gap, StreamEnd):
            return
        self.bulk(RESP if side == ORIG else ORIG)
        blocks = file_bytes = eods = 0
        eod_count_expected = None
        problem = None
        while True:
            try:
                header = self.read(side, MODE_E_HEADER.size)
            except StreamEnd as end:
                if end.data:
                    problem = "truncated_header"
                break
            except Gap as gap:
                problem = "gap_in_header"
                self.weird("gridftp_mode_e_gap", size=gap.size)
                break
            descriptor, count, offset = MODE_E_HEADER.unpack(header)
            if descriptor & UNDEFINED_DESCRIPTOR_BITS:
                problem = "bad_descriptor"
                self.weird("gridftp_mode_e_bad_descriptor", descriptor=descriptor,
                           count=count, offset=offset)
                break
            if descriptor & EOF:
                # The EOF header: count unused, offset = EOD count; no body follows.
                eod_count_expected = offset
                if session is not None:
                    session.mode_e_eof(channel, self.uid, offset)
            else:
                if offset + count >= 1 << 64:
                    problem = "offset_overflow"
                    self.weird("gridftp_mode_e_offset_overflow", count=count, offset=offset)
                    break
                blocks += 1
                file_bytes += count
                if session is not None:
                    session.mode_e_block(channel, self.uid, offset, count)
                self.skip(side, count)
            if descriptor & EOD:
                eods += 1
                if session is not None:
                    session.mode_e_eod(channel, self.uid)
        if problem is not None:
            if session is not None:
                session.mode_e_problem(channel, self.uid, problem)
            self.bulk()                   # cannot resynchronise: count the rest
        self.emit("mode_e_stream", channel=channel, control_uid=self.conn.parent_uid,
                  sender="orig" if side == ORIG else "resp", blocks=blocks,
                  bytes=file_bytes, eods=eods, eod_count_expected=eod_count_expected,
                  problem=problem)


class GridFtp(Ftp):
    """GridFTP control channel (FTP + MODE E, parallel/striped data connections)."""
    name = "gridftp"
    ports = {GRIDFTP_PORT}
    protocol_label = "gridftp"
    transfer_commands = Ftp.transfer_commands | {"ERET", "ESTO"}
    # The GSI data channels it announces (GsiDataChannel) are TLS: ssl.log.
    logs = {"ssl": SSL_LOG}

    def setup_session(self) -> None:
        super().setup_session()
        self.detected = self.id.resp_p == GRIDFTP_PORT
        self.detected_by = None
        self.parallelism = 1
        self.dcau: str | None = None        # None: the default (A after GSSAPI, else N)
        self.prot = "C"
        self.gss_requested = self.gss_authenticated = self.adat_tls = False
        self.adat_seen = False
        self.control_protected = False
        self.upload_size: int | None = None
        self.hidden_pending: list = []      # any-port expectations of a protected session

    def end_session(self) -> None:
        super().end_session()
        self.cancel_all(self.hidden_pending)

    def mark_gridftp(self, sign: str, service: bool = True) -> None:
        """A GridFTP extension was used.  conn.log's service gets `gridftp` now,
        except for AUTH GSSAPI, where Zeek adds it once the GSI (TLS) exchange
        has succeeded (after `ssl`)."""
        if service:
            self.add_service("gridftp")
        if not self.detected or not self.detected_by:
            self.detected = True
            self.detected_by = sign
            self.emit("gridftp_detected", sign=sign)

    # -- commands and replies -----------------------------------------------------

    def extension_command(self, cmd, arg, waiting) -> None:
        if cmd in GRIDFTP_SIGNS:
            self.mark_gridftp(cmd)
        if cmd == "AUTH" and arg.strip().upper() == "GSSAPI":
            self.gss_requested = True
            self.mark_gridftp("AUTH GSSAPI", service=False)
        elif cmd == "ADAT" and not self.adat_seen:
            self.adat_seen = True
            # GSI starts its GSSAPI exchange with a bare TLS handshake record
            # (Zeek's FTP_ADAT_Analyzer checks the same).
            try:
                token = base64.b64decode(arg.strip(), validate=False)
            except (binascii.Error, ValueError):
                token = b""
                self.weird("ftp_adat_bad_first_token_encoding")
            if len(token) >= 5 and token[0] == 0x16 and \
                    len(token) - 5 == struct.unpack("!H", token[3:5])[0]:
                self.adat_tls = True
                self.add_service("ssl")
        elif cmd in ("ENC", "MIC", "CONF") and not self.control_protected:
            self.control_protected = True
            self.emit("ftp_control_protected", command=cmd)
            if self.gss_requested:
                self.expect_hidden_channels()
        elif cmd == "OPTS" and arg.upper().startswith("RETR"):
            m = PARALLELISM.search(arg)
            if m:
                self.parallelism = max(1, min(int(m.group(1)), MAX_STREAMS))
                self.mark_gridftp("OPTS RETR Parallelism")
        elif cmd == "SPOR":
            endpoints = [parse_port_numbers(hp) for hp in HOST_PORT.findall(arg)]
            endpoints = [e for e in endpoints if e is not None][:MAX_STREAMS]
            if endpoints:
                self.open_channel(False, self.id.resp_h, endpoints)
            else:
                self.weird("gridftp_bad_spor", arg=arg[:80])

    def extension_reply(self, head, reply) -> None:
        cmd, code = head.cmd, reply.code
        if cmd == "SPAS" and code == 229:
            endpoints = []
            for line in reply.lines[1:]:
                for hp in HOST_PORT.findall(line):
                    found = parse_port_numbers(hp)
                    if found is not None and len(endpoints) < MAX_STREAMS:
                        endpoints.append(found)
            if endpoints:
                self.open_channel(True, self.id.orig_h, endpoints)
            else:
                self.weird("gridftp_bad_spas_reply", text=reply.text[:80])
        elif cmd == "MODE" and code == 200 and head.arg.strip().upper().startswith("E"):
            self.mark_gridftp("MODE E")
        elif cmd == "DCAU" and code == 200 and head.arg.strip():
            self.dcau = head.arg.strip()[0].upper()
        elif cmd == "PROT" and code == 200 and head.arg.strip():
            self.prot = head.arg.strip()[0].upper()
        elif cmd == "AUTH" and self.gss_requested and code == 235:
            self.gss_authenticated = True
        elif cmd == "ADAT" and code == 235:
            self.gss_authenticated = True
            if self.adat_tls:
                # Zeek: AUTH GSSAPI and a completed TLS handshake -> gridftp.
                self.add_service("gridftp")
        elif cmd == "ALLO" and code in (200, 202):
            m = re.search(r"\d+", head.arg)
            self.upload_size = int(m.group(0)) if m else None

    # -- data channels --------------------------------------------------------------

    def data_channel_in_clear(self) -> bool:
        dcau = self.dcau or ("A" if self.gss_authenticated else "N")
        return dcau == "N" and self.prot == "C"

    def data_analyser(self, ch):
        if ch.mode == "E" and self.data_channel_in_clear():
            return ModeEData
        return None

    def data_service(self, ch) -> str:
        return "gridftp-data" if (self.detected or ch.mode == "E") else "ftp-data"

    def initial_expectations(self, ch) -> int:
        return max(1, self.parallelism) if ch.mode == "E" else 1

    def extension_stream_started(self, ch, conn, meta) -> None:
        if ch.mode != "E":
            return
        # The sender may open more connections than announced: expect one more
        # (withdrawn once the transfer is complete).
        if ch.expected.get((conn.id.resp_h, conn.id.resp_p), 0) <= 0 \
                and len(ch.started) < MAX_STREAMS:
            self.expect_endpoint(ch, conn.id.resp_h, conn.id.resp_p, self.data_analyser(ch))

    def expect_more(self, ch) -> None:
        """A MODE E channel carries another transfer: besides its open
        connections, one more per endpoint may come."""
        analyser = self.data_analyser(ch)
        for resp_h, resp_p in ch.endpoints:
            if ch.expected.get((resp_h, resp_p), 0) <= 0 and len(ch.started) < MAX_STREAMS:
                self.expect_endpoint(ch, resp_h, resp_p, analyser)

    # -- data channels of a GSI-protected session (PASV/PORT replies hidden) -----------

    def expect_hidden_channels(self) -> None:
        """The control channel is wrapped (ENC/MIC/CONF): its data channels
        cannot be read, so a connection between the two hosts, either way, on
        any port, is expected while the session lives; GsiDataChannel checks
        that it is one."""
        self.expect_hidden(self.id.resp_h, self.id.orig_h)
        self.expect_hidden(self.id.orig_h, self.id.resp_h)

    def expect_hidden(self, resp_h: str, orig_h: str) -> None:
        if self.ended:
            return
        e = self.add_expectation(resp_h, None, orig_h=orig_h, analyser=GsiDataChannel,
                                 hidden=True, control_uid=self.uid)
        if e is not None:
            self.hidden_pending.append(e)

    def extension_unknown_stream(self, conn, meta) -> None:
        if meta.get("hidden"):
            self.expectation_met(meta, self.hidden_pending)
            self.expect_hidden(conn.id.resp_h, conn.id.orig_h)     # the next one

    # -- MODE E blocks, reported by ModeEData -------------------------------------------

    def tally_for(self, channel_number, uid):
        """The tally a block of `uid` belongs to: its channel's transfer, or the
        channel's early tally when that transfer is not known yet (or this
        stream already ended its part of the current one)."""
        ch = self.channels.get(channel_number)
        if ch is None:
            return None, None
        t = ch.transfer
        if t is None or t.done or (uid in t.streams and t.streams[uid].end_of_data):
            if ch.early is None:
                ch.early = BlockTally()
            return ch.early, None
        if t.blocks is None:
            t.blocks = BlockTally()
        if uid not in t.streams and len(t.streams) < MAX_STREAMS:
            t.streams[uid] = StreamCount(uid)
        return t.blocks, t

    def mode_e_block(self, channel_number, uid, offset, count) -> None:
        tally, _ = self.tally_for(channel_number, uid)
        if tally is not None:
            tally.add_block(uid, offset, count)

    def mode_e_eof(self, channel_number, uid, eod_count) -> None:
        tally, t = self.tally_for(channel_number, uid)
        if tally is not None:
            tally.eod_count_expected = eod_count
            self.check_eod_count(t, tally)

    def mode_e_eod(self, channel_number, uid) -> None:
        tally, t = self.tally_for(channel_number, uid)
        if tally is None:
            return
        tally.eods += 1
        self.check_eod_count(t, tally)
        if t is not None and uid in t.streams:
            t.streams[uid].end_of_data = True
            self.check_transfer(t)

    def check_eod_count(self, t, tally) -> None:
        """Every EOD the EOF header announced has come: the sender will open
        no more connections for this transfer."""
        if t is not None and tally.eod_count_expected is not None \
                and tally.eods >= tally.eod_count_expected and t.channel is not None:
            self.withdraw(t.channel)

    def mode_e_problem(self, channel_number, uid, problem) -> None:
        ch = self.channels.get(channel_number)
        t = ch.transfer if ch is not None else None
        if t is not None and t.blocks is not None and len(t.blocks.problems) < MAX_STREAMS:
            t.blocks.problems.append(problem)

    # -- transfers ----------------------------------------------------------------------

    def transfer_protocol(self) -> str:
        return "gridftp" if self.detected else "ftp"

    def bind_transfer(self, t: Transfer) -> None:
        ch = t.channel
        if t.upload and t.size_announced is None and self.upload_size is not None:
            t.size_announced = self.upload_size
        self.upload_size = None
        if ch is not None and ch.mode == "E":
            self.expect_more(ch)
        if ch is None or not ch.parsed:
            return
        t.blocks = BlockTally()
        if ch.early is not None:
            t.blocks.merge(ch.early)
            for uid in ch.early.per_stream:
                if uid not in t.streams and len(t.streams) < MAX_STREAMS:
                    t.streams[uid] = StreamCount(uid)
            ch.early = None

    def stream_finished(self, t: Transfer, s: StreamCount) -> bool:
        if t.channel is not None and t.channel.parsed:
            return s.ended or s.end_of_data
        return s.ended

    def finish_blocks(self, t: Transfer) -> None:
        if t.blocks is None:
            return
        for uid, s in t.streams.items():
            s.bytes = t.blocks.per_stream.get(uid, 0)

    def extra_transfer_fields(self, t: Transfer) -> dict:
        # MODE E counted in bulk (DCAU/PROT): bytes include headers and TLS.
        fields = {"bytes_exact": not (t.channel is not None and t.channel.mode == "E"
                                      and not t.channel.parsed)}
        if t.blocks is not None:
            b = t.blocks
            fields.update(blocks=b.blocks, eods=b.eods, eod_count_expected=b.eod_count_expected,
                          coverage=b.coverage(t.size_announced),
                          problems=b.problems or None)
        return fields


class GridFtpData(Tls):
    """Zeek's GridFTP data-channel heuristic on TLS connections (see module
    doc).  It extends the TLS analyser, so it is tried first on a TLS
    connection that no port hint gives to `ssl` (a subclass comes before
    the class it extends) and does everything `ssl` does (ssl.log, its
    options); the heuristic runs once the handshake is done."""
    name = "gridftp-data"
    service = "ssl"                    # then gridftp-data when the heuristic says so
    ports = frozenset()                # ssl's port hints stay ssl's
    options = {
        **Tls.options,
        "size_threshold": (1073741824, "bytes in one direction before a NULL-cipher, "
                                       "mutually authenticated TLS connection is "
                                       "gridftp-data (Zeek's GridFTP::size_threshold)"),
        "max_time": (120.0, "seconds after the start within which the threshold must be "
                            "crossed (Zeek's GridFTP::max_time)"),
    }

    def after_handshake(self):
        if not (self.cipher in NULL_CIPHER_SUITES and self.certificates[ORIG]
                and self.certificates[RESP]):
            super().after_handshake()
            return
        # Zeek's ConnThreshold on both directions: wake once, when either
        # direction passes the threshold (everything before is skipped in C).
        threshold = int(self.config.get("size_threshold", 1073741824))
        consumed = self.stream_bytes
        for side in (ORIG, RESP):
            self.skip(side, max(0, threshold - consumed[side]))
        if consumed[ORIG] < threshold and consumed[RESP] < threshold:
            try:
                self.read_any(1)
            except (Gap, StreamEnd):
                return
        if self.ts - self.conn.start_time <= float(self.config.get("max_time", 120.0)):
            self.label("size threshold", threshold=threshold, cipher=self.cipher)
        self.bulk()

    def label(self, reason: str, **fields) -> None:
        self.add_service("gridftp-data")
        self.emit("gridftp_data_channel", reason=reason, **fields)


class GsiDataChannel(GridFtpData):
    """A connection between the two hosts of a GSI-protected GridFTP session
    (expected on any port: its PASV/PORT replies are wrapped): a data channel
    when its originator starts a TLS handshake (DCAU), labelled at once."""
    name = "gridftp-gsi-data"
    signatures = ()                # chosen only by GridFtp's expectations
    options = {}

    def main(self):
        control = control_session(self)
        if control is not None and (self.id.resp_h, self.id.resp_p) == (
                control.id.resp_h, control.id.resp_p):
            # Another control connection to the same server: its own session.
            self.not_a_data_channel("control port", control)
            self.hand_over(type(control), dict(control.config))
        while True:                         # peek (consume nothing) at the first bytes
            try:
                side, data = self.peek_any(6)
            except (Gap, StreamEnd):
                return                      # no payload: counted only
            verdict = client_hello_verdict(side, data)
            if verdict:
                break
            if verdict is False:
                self.not_a_data_channel("not TLS from the originator", control)
                self.bulk()
                return
        self.run_tls()

    def after_handshake(self):
        meta = self.conn.expectation or {}
        self.label("control session", control_uid=meta.get("control_uid"), cipher=self.cipher)
        self.bulk()

    def not_a_data_channel(self, reason: str, control) -> None:
        """Expected (so linked by the expected_connection event) but not a data
        channel: say so, and unlink it for the analysers that follow."""
        self.emit("gridftp_not_data_channel", reason=reason,
                  control_uid=control.uid if control is not None else None)
        self.conn.parent_uid = None
        self.conn.expectation = None
