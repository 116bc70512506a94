"""FTP control channel: commands, replies, data channels and transfers.

Role in the data flow: flows -> streams -> **analysers (protocols.ftp)** ->
sinks (`ftp.log`, `transfers.log`, `transfer_start`/`transfer_end` events).

One `Ftp` analyser runs per control connection.  Its `main()` reads both
sides in arrival order (`read_any`), cuts them into lines itself (so a
pipelined command is seen before the reply that follows it on the wire, as
Zeek sees it) and drives two independent consumers:

* `ZeekFtpLog` reproduces Zeek's `base/protocols/ftp` scripts — which
  commands are logged, when a row is written (at the next command, or when
  several are pending), the scoring that pairs a reply with a pending
  command, the `ftp://host/path` URLs built from the tracked working
  directory, the password rule — so that `ftp.log` reads like Zeek's.  It
  also finds the data channels Zeek would announce (PORT/EPRT requests,
  227/229 replies).
* The transfer tracker pairs replies with commands strictly in order (RFC 959:
  one final reply per command, 1xx replies are preliminary), registers every
  announced data channel with `expect()` — the data connection is then
  counted in compiled code, no Python per packet — and keeps one `Transfer`
  per RETR/STOR/STOU/APPE/LIST/NLST/MLSD.  A transfer is reported (event
  `transfer_end`, a `transfers.log` row) once both its final reply and the
  end of each of its data connections are known, in either order; what is
  still open when the control connection ends is reported when its data
  connections end, or at once if it has none.  An expectation that can no
  longer be met is withdrawn (`Expectation.cancel`): a channel replaced by a
  new PORT/PASV before anything connected to it (and no transfer waits for
  it), a stream-mode channel whose transfer is over, every channel once the
  control connection has closed; at most MAX_PENDING_EXPECTATIONS are
  pending per control connection (a weird beyond).

Bad input is a `weird`, never an exception: overlong lines are cut (and the
rest of the line dropped), invalid replies stop the analysis of the control
channel as Zeek's analyzer violation does, a hole in the stream drops the
line it broke.  Everything kept per connection is bounded: pending commands,
lines, reply lines, data channels, transfers, streams per transfer.

`protocols/gridftp.py` builds GridFTP (MODE E, SPAS/SPOR, parallel streams)
on the hooks marked "extension point" below.
"""
from __future__ import annotations

import functools
import ipaddress
import re
from collections import deque

from analyser import (ORIG, RESP, TRANSFERS, Analyser, Expectation, Field, Gap, Signature,
                      StreamEnd, conn_id_fields)
# The public AnalyserCore, named by the module that defines it: ftp.pxd cimports
# it from there to derive FtpCore's struct, and Cython wants the same name here.
from analyser.runtime import AnalyserCore
from protocols._ftplines import next_line

# -- limits ---------------------------------------------------------------------

MAX_LINE = 8192                 # bytes of one command or reply line kept
READ_CHUNK = 16384              # bytes asked of the stream layer per read
MAX_PENDING_COMMANDS = 20       # Zeek's FTP::max_pending_commands
MAX_COMMAND_LENGTH = 100        # Zeek's FTP::max_command_length
MAX_USER_LENGTH = 128           # Zeek's FTP::max_user_length
MAX_PASSWORD_LENGTH = 128       # Zeek's FTP::max_password_length
MAX_ARG_LENGTH = 4096           # Zeek's FTP::max_arg_length
MAX_REPLY_MSG_LENGTH = 4096     # Zeek's FTP::max_reply_msg_length
MAX_REPLY_LINES = 1024          # lines of one multi-line reply kept
MAX_AWAITING = 64               # commands waiting for their reply (transfer tracker)
MAX_CHANNELS = 64               # data channels remembered per control connection
MAX_PENDING_EXPECTATIONS = 128  # expect() calls not yet met, per control connection
MAX_OPEN_TRANSFERS = 64         # transfers waiting for a reply or a data connection
MAX_STREAMS = 64                # data connections counted per transfer / channel
EXPECT_TIMEOUT = 300.0          # Zeek schedules FTP-DATA for 5 minutes

# -- Zeek's tables (scripts/base/protocols/ftp/{main,utils-commands}.zeek) ----------

ZEEK_LOGGED_COMMANDS = frozenset({"APPE", "DELE", "RETR", "STOR", "STOU", "ACCT",
                                  "PORT", "PASV", "EPRT", "EPSV"})
GUEST_IDS = frozenset({"anonymous", "ftp", "ftpuser", "guest"})
FILE_COMMANDS = frozenset({"APPE", "CWD", "DELE", "MKD", "RETR", "RMD", "RNFR", "RNTO",
                           "STOR", "STOU", "REST", "SIZE", "MDTM"})
DIRECTORY_COMMANDS = frozenset({("CWD", 250), ("CDUP", 200), ("CDUP", 250),
                                ("PWD", 257), ("XPWD", 257)})
_TRANSFER_CODES = [110, 125, 150, 226, 250, 421, 425, 426, 451]
_STORE_CODES = _TRANSFER_CODES + [551, 552, 532, 450, 452, 553, 500, 501, 530, 550]
COMMAND_REPLY_CODES = frozenset(
    (cmd, code) for cmd, codes in {
        "<init>": [120, 220, 421, 0], "USER": [230, 331, 332, 421, 530, 500, 501],
        "PASS": [230, 202, 332, 421, 530, 500, 501, 503],
        "ACCT": [230, 202, 421, 530, 500, 501, 503],
        "CWD": [250, 421, 500, 501, 502, 530, 550],
        "CDUP": [200, 250, 421, 500, 501, 502, 530, 550],
        "SMNT": [202, 250, 421, 500, 501, 502, 530, 550], "REIN": [120, 220, 421, 500, 502],
        "QUIT": [221, 500, 0], "PORT": [200, 421, 500, 501, 530],
        "PASV": [227, 421, 500, 501, 502, 530], "MODE": [200, 421, 500, 501, 502, 504, 530],
        "TYPE": [200, 421, 500, 501, 504, 530], "STRU": [200, 421, 500, 501, 504, 530],
        "ALLO": [200, 202, 421, 500, 501, 504, 530],
        "REST": [200, 350, 421, 500, 501, 502, 530],
        "STOR": _STORE_CODES, "STOU": _STORE_CODES,
        "RETR": _TRANSFER_CODES + [450, 500, 501, 530, 550],
        "LIST": [125, 150, 226, 250, 421, 425, 426, 451, 450, 500, 501, 502, 530, 550],
        "NLST": [125, 150, 226, 250, 421, 425, 426, 451, 450, 500, 501, 502, 530, 550],
        "APPE": [125, 150, 226, 250, 421, 425, 426, 451, 551, 552, 532, 450, 550, 452, 553,
                 500, 501, 502, 530],
        "RNFR": [350, 421, 450, 550, 500, 501, 502, 530],
        "RNTO": [250, 421, 532, 553, 500, 501, 502, 503, 530],
        "DELE": [250, 421, 450, 550, 500, 501, 502, 530],
        "RMD": [250, 421, 500, 501, 502, 530, 550], "MKD": [257, 421, 500, 501, 502, 530, 550],
        "PWD": [257, 421, 500, 501, 502, 550], "ABOR": [225, 226, 421, 500, 501, 502],
        "SYST": [215, 421, 500, 501, 502, 530],
        "STAT": [211, 212, 213, 421, 450, 500, 501, 502, 530],
        "HELP": [200, 211, 214, 421, 500, 501, 502], "SITE": [200, 202, 214, 500, 501, 502, 530],
        "NOOP": [200, 421, 500], "LPRT": [500, 501, 521], "FEAT": [211, 500, 502],
        "OPTS": [200, 451, 501], "EPSV": [229, 500, 501], "EPRT": [200, 500, 501, 522],
        "SIZE": [213, 500, 501, 550], "MDTM": [213, 500, 501, 550],
        "MLST": [150, 226, 250, 500, 501, 550], "MLSD": [150, 226, 250, 500, 501, 550],
        "CLNT": [200, 500], "MACB": [200, 500, 550], "<missing>": [0],
    }.items() for code in codes)

# -- logs (declared by the analyser, written by every log writer) ---------------------

FTP_LOG = (
    Field("ts", "time", "time of the command"),
    Field("uid", "string", "uid of the control connection"),
    *conn_id_fields("client", "server"),
    Field("user", "string", "user name of the session"),
    Field("password", "string", "password; `<hidden>` unless the user is a guest id "
                                "(anonymous, ftp, ftpuser, guest), as Zeek does"),
    Field("command", "string", "the command (Zeek's FTP::logged_commands; more with "
                               "--analyser ftp:log_commands=A+B)"),
    Field("arg", "string", "its argument; for file commands (RETR, STOR, CWD, ...) "
                           "ftp://server/path from the tracked working directory, as Zeek "
                           "writes it"),
    Field("mime_type", "string", "file type (not determined: always unset)"),
    Field("file_size", "count", "size announced by the server: the last number of the 150 "
                                "reply to RETR or of the 213 reply to SIZE (Zeek's rule)"),
    Field("reply_code", "count", "the final reply's code"),
    Field("reply_msg", "string", "the final reply's text"),
    Field("data_channel.passive", "bool", "the data channel is passive (PASV/EPSV); set on "
                                          "the PASV/EPSV/PORT/EPRT row only"),
    Field("data_channel.orig_h", "addr", "data channel originator"),
    Field("data_channel.resp_h", "addr", "data channel responder"),
    Field("data_channel.resp_p", "port", "data channel responder port"),
    Field("fuid", "string", "file id (unset)"),
)


# Commands whose reply confirms that a connection speaks FTP: the RFC 959
# and extension commands of Zeek's reply table, and security extensions.
# The commands an SMTP client opens with (RFC 5321 §4.1.1.1); no FTP command.
SMTP_OPENERS = frozenset({"EHLO", "HELO"})
FTP_COMMANDS = frozenset(cmd for cmd, _ in COMMAND_REPLY_CODES if not cmd.startswith("<")) | \
    frozenset({"AUTH", "ADAT", "PBSZ", "PROT", "CCC", "ENC", "MIC", "CONF", "LANG", "LPSV",
               "EPSV", "EPRT", "LPRT", "XPWD", "XCWD", "XMKD", "XRMD"})

# -- wire grammar -----------------------------------------------------------------

# Zeek's "looks like a real reply inside a broken multi-line reply" test.
REPLY_LIKE_LINE = re.compile(r"^[1-9][0-9]{2} [\x20-\x7e]{10}")
# Six comma-separated numbers (PORT argument, PASV reply), as sscanf("%d,%d,...") reads them.
HOST_PORT_NUMBERS = re.compile(r"\s*([+-]?\d+),\s*([+-]?\d+),\s*([+-]?\d+),\s*([+-]?\d+),"
                               r"\s*([+-]?\d+),\s*([+-]?\d+)")
# "(1234 bytes)" in a 150/125 reply: the announced size (transfers.log).
ANNOUNCED_SIZE = re.compile(rb"\((\d{1,20}) bytes?\)", re.I)
NUMBER = re.compile(r"[0-9]+")
PATH_IN_TEXT = re.compile(r'(/|[A-Za-z]:[\\/])([^" ]|(\\ ))*')
LONG_ADDRESS = re.compile(r"\s*(\d+(?:\s*,\s*\d+)*)")

# Transfer commands and which side sends the file.
DOWNLOAD_COMMANDS = frozenset({"RETR", "LIST", "NLST", "MLSD"})
UPLOAD_COMMANDS = frozenset({"STOR", "STOU", "APPE"})
COUNT_MAX = (1 << 64) - 1
PROTECTED_REPLY_CODES = frozenset({631, 632, 633})
WHITESPACE = " \t\n\v\f\r"          # C isspace()


# -- Zeek's path and number helpers ---------------------------------------------------

def compress_path(path: str) -> str:
    """Zeek's compress_path (util::detail::normalize_path, POSIX branch)."""
    if "/." not in path and "//" not in path:
        return path[:-1] if len(path) > 1 and path.endswith("/") else path
    out = "/" if path.startswith("/") else ""
    parts: list[str] = []
    components = path.split("/")
    for i, comp in enumerate(components):
        if not comp or (comp == "." and i != 0):
            continue
        parts.append(comp)
        if comp == ".." and len(parts) > 1:
            last = parts[-2]
            if last in ("~", ".."):
                continue
            if last == ".":
                parts[-2] = ".."
                parts.pop()
            else:
                parts.pop()
                parts.pop()
    out += "".join(p + "/" for p in parts)
    return out[:-1] if len(out) > 1 and out.endswith("/") else out


def is_absolute_path(name: str) -> bool:
    """Zeek's absolute_path_pat (utils/paths.zeek): a slash first, or an
    ASCII drive letter, a colon and a slash or backslash."""
    if name.startswith("/"):
        return True
    return len(name) >= 3 and name[1] == ":" and (name[2] == "/" or name[2] == "\\") and \
        ("A" <= name[0] <= "Z" or "a" <= name[0] <= "z")


def build_path_compressed(directory: str, name: str) -> str:
    if is_absolute_path(name) or directory == "":
        path = name
    else:
        path = directory + ("" if directory.endswith("/") else "/") + name
    return compress_path(path)


def split_command(line: str) -> tuple[str, str, bool, bool]:
    """A command line's word and argument: the word runs from the first
    non-blank (WHITESPACE, C isspace()) to the next blank, the argument from
    the non-blank after that.  Also whether the word is printable ASCII (it
    has no space: a blank ends it) and whether it has a lower-case letter.
    Loops over the characters: no strip() copies, no upper() when not needed."""
    n = len(line)
    start = i = blanks_end(line, 0)
    lower = False
    printable = True
    while i < n:
        c = line[i]
        if c in " \t\n\v\f\r":
            break
        if not "!" <= c <= "~":
            printable = False
        elif "a" <= c <= "z":
            lower = True
        i += 1
    return line[start:i], text_from(line, i), printable, lower


def blanks_end(line: str, i: int) -> int:
    """Where the blanks (WHITESPACE) that start at line[i] end."""
    n = len(line)
    while i < n and line[i] in " \t\n\v\f\r":
        i += 1
    return i


def text_from(line: str, i: int) -> str:
    """line[i:] without its leading blanks (line[i:].lstrip(WHITESPACE), with
    one copy)."""
    return line[blanks_end(line, i):]


def extract_path(text: str) -> str:
    m = PATH_IN_TEXT.search(text)
    return m.group(0) if m else ""


def extract_last_count(text: str) -> int:
    """Zeek's extract_count(s, F): the last number (ASCII digits) in the
    text, 0 if none.  Scanned from the end: it runs for every 150 reply."""
    end = len(text)
    while end > 0 and not "0" <= text[end - 1] <= "9":
        end -= 1
    if end == 0:
        return 0
    start = end - 1
    while start > 0 and "0" <= text[start - 1] <= "9":
        start -= 1
    return min(int(text[start:end]), COUNT_MAX)


def addr_to_uri(addr: str) -> str:
    return "[%s]" % addr if ":" in addr else addr


def canonical_address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


# -- data channel announcements --------------------------------------------------------

# The decimal text of each byte value (a dotted address is four of them).
OCTETS = tuple(str(b) for b in range(256))


def parse_port_numbers(text: str) -> tuple[str, int] | None:
    """h1,h2,h3,h4,p1,p2 (PORT argument) -> (address, port), None if invalid."""
    n = len(text)
    if n < 11:
        return None
    if not text.isascii():
        return _parse_port_numbers(text)    # Unicode digits and spaces: the regex's
    # HOST_PORT_NUMBERS.match() and the range checks below, read in one pass
    # (what the regex takes, this takes; what it refuses, or a number past
    # 255, is None here too).
    values = [0, 0, 0, 0, 0, 0]
    i = 0
    for k in range(6):
        while i < n and text[i].isspace():
            i += 1
        negative = False
        if i < n and (text[i] == "+" or text[i] == "-"):
            negative = text[i] == "-"
            i += 1
        start = i
        v = 0
        while i < n and "0" <= text[i] <= "9":
            if v <= 255:
                v = v * 10 + (ord(text[i]) - 48)
            i += 1
        if i == start or v > 255 or (negative and v != 0):
            return None
        if k < 5:
            if i >= n or text[i] != ",":
                return None
            i += 1
        values[k] = v
    return (".".join((OCTETS[values[0]], OCTETS[values[1]], OCTETS[values[2]],
                      OCTETS[values[3]])), values[4] * 256 + values[5])


def _parse_port_numbers(text: str) -> tuple[str, int] | None:
    m = HOST_PORT_NUMBERS.match(text)
    if not m:
        return None
    n = [int(x) for x in m.groups()]
    for b in n:                     # (a loop, not any(): no generator per reply)
        if not 0 <= b <= 255:
            return None
    return "%d.%d.%d.%d" % tuple(n[:4]), n[4] * 256 + n[5]


def parse_pasv_reply(msg: str) -> tuple[str, int] | None:
    """Where a 227 reply's numbers start, as Zeek's parse_ftp_pasv looks for them."""
    i = msg.find("(")
    if i >= 0:
        start = i + 1
    elif "PORT" in msg:
        start = msg.find("PORT") + 5
    elif "," in msg:
        start = msg.find(",")
        while start > 0 and msg[start - 1].isdigit():
            start -= 1
    else:
        return None
    return parse_port_numbers(msg[start:])


def _strtol(s: str, i: int) -> tuple[int, int]:
    """(value, index after it) as C's strtol reads base 10; no digits -> (0, i)."""
    j = i
    while j < len(s) and s[j].isspace():
        j += 1
    k = j
    if k < len(s) and s[k] in "+-":
        k += 1
    d = k
    while d < len(s) and s[d].isdigit():
        d += 1
    if d == k:
        return 0, i
    return int(s[j:d]), d


def parse_extended_port(text: str | None) -> tuple[str, int, bool]:
    """RFC 2428 <d>proto<d>addr<d>port<d>, as Zeek's parse_eftp reads it:
    (address, port, valid); an empty address is '::' (unspecified)."""
    addr, port, good = "::", 0, False
    if text is None:
        return addr, port, good
    s = text.lstrip()
    if not s:
        return addr, port, good
    delim, i, good = s[0], 1, True
    _, nxt = _strtol(s, i)
    if nxt >= len(s) or s[nxt] != delim:
        good = False
    i = nxt + 1 if nxt < len(s) else nxt
    if i < len(s) and s[i] != delim:
        end = s.find(delim, i)
        end = len(s) if end < 0 else end
        parsed = canonical_address(s[i:end])
        good = parsed is not None
        if parsed is not None:
            addr = parsed
    j = s.find(delim, i) if i <= len(s) else -1
    if j >= 0:
        port, nxt = _strtol(s, j + 1)
        if nxt >= len(s) or s[nxt] != delim:
            good = False
        if not 0 <= port <= 65535:
            port, good = 0, False
    return addr, port, good


def parse_long_address(text: str) -> tuple[str, int] | None:
    """RFC 1639 LPRT argument / LPSV reply: af,hal,h1..,pal,p1.. -> (address, port)."""
    m = LONG_ADDRESS.search(text)
    if not m:
        return None
    n = [int(x) for x in m.group(1).replace(" ", "").split(",")]
    try:
        af, hal = n[0], n[1]
        host, pal = n[2:2 + hal], n[2 + hal]
        port_bytes = n[3 + hal:3 + hal + pal]
    except IndexError:
        return None
    if (af, hal) not in ((4, 4), (6, 16)) or pal != 2 or len(port_bytes) != 2 \
            or any(not 0 <= b <= 255 for b in host + port_bytes):
        return None
    address = str(ipaddress.ip_address(bytes(host)))
    return address, port_bytes[0] * 256 + port_bytes[1]


# -- Zeek's ftp.log ------------------------------------------------------------------------

class CmdArg:
    """A command Zeek keeps pending until its reply (Zeek's CmdArg).  One per
    command: a plain class with slots, so making one is a compiled call."""
    __slots__ = ("ts", "cmd", "arg", "seq", "cwd_consumed")

    def __init__(self, ts: float, cmd: str = "<unknown>", arg: str = "", seq: int = 0):
        self.ts, self.cmd, self.arg, self.seq = ts, cmd, arg, seq
        self.cwd_consumed = False


# The per-session records below are plain classes with slots, not
# dataclasses: the build makes them extension types (ftp.pxd), and the
# dataclasses module (with inspect and ast) cost every start-up 8 ms.  They
# compare by identity.

class DataChannelAnnouncement:
    """Zeek's ExpectedDataChannel."""
    __slots__ = ("passive", "orig_h", "resp_h", "resp_p")

    def __init__(self, passive: bool, orig_h: str, resp_h: str, resp_p: int):
        self.passive, self.orig_h, self.resp_h, self.resp_p = passive, orig_h, resp_h, resp_p


class ZeekFtpLog:
    """Zeek's FTP::Info bookkeeping for one control connection.

    `request` and `reply` follow Zeek's ftp_request/ftp_reply handlers line for
    line in their effect (the state they keep and when they write a row);
    both return the data channel Zeek would expect, if any.  `finalize` is
    Zeek's connection-removal hook.  Rows go to `write(row)`, anomalies to
    `weird(name, detail)`."""

    def __init__(self, conn_id, uid: str, write, weird, logged_commands=ZEEK_LOGGED_COMMANDS,
                 capture_password=False):
        self.id, self.uid = conn_id, uid
        self.write, self.weird = write, weird
        self.logged_commands = logged_commands
        self.capture_password = capture_password
        self.started = False
        self.user, self.user_seen = "<unknown>", False
        self.hide_password = self._hide_password()
        self.password = None
        self.command = self.arg = None
        self.file_size = None
        self.reply_code = self.reply_msg = None
        self.data_channel: DataChannelAnnouncement | None = None
        self.cwd = "."
        self.cmdarg: CmdArg | None = None
        self.pending: dict[int, CmdArg] = {}
        self.command_seq = 0
        self.logged_command_seen = False
        self.ts = 0.0
        # What every row of the connection starts with (copied per row).
        self.new_row = {"ts": 0.0, "uid": uid, "id.orig_h": conn_id.orig_h,
                        "id.orig_p": conn_id.orig_p, "id.resp_h": conn_id.resp_h,
                        "id.resp_p": conn_id.resp_p}

    # Zeek's set_ftp_session: the first event adds the "<init>" shim command,
    # to which the server's greeting is the reply.
    def _session(self, ts):
        if not self.started:
            self.started = True
            self.ts = ts
            self.command_seq += 1
            self.pending[self.command_seq] = CmdArg(ts, "<init>", "", self.command_seq)

    def _hide_password(self) -> bool:
        return not self.capture_password and self.user.lower() not in GUEST_IDS

    def _best_pending(self, code: int, msg: str, ts: float) -> CmdArg:
        pending = self.pending
        if len(pending) == 1:
            for ca in pending.values():
                return ca                   # the best of one, whatever its score
        best, best_key = None, None
        for seq, ca in pending.items():
            score = 100 if code == 500 or (ca.cmd, code) in COMMAND_REPLY_CODES else 0
            if ca.cmd in msg:
                score += 20
            if ca.arg in msg:
                score += 10
            key = (-score, seq)
            if best_key is None or key < best_key:
                best, best_key = ca, key
        return best if best is not None else CmdArg(ts)

    def _message(self, ca: CmdArg) -> None:
        """Zeek's ftp_message: update the Info from the command, write it if the
        command is logged, then forget the per-transfer fields."""
        # Locals for the fields, stored once at the end: this runs per command.
        self.cmdarg = ca
        command = self.command = ca.cmd
        arg = ca.arg
        if command in FILE_COMMANDS:
            path = build_path_compressed(self.cwd, arg)
            if not path.startswith("/"):
                path = "/" + path
            arg = "ftp://%s%s" % (addr_to_uri(self.id.resp_h), path)
        if len(arg) > MAX_ARG_LENGTH:
            self.weird("FTP_arg_too_long", str(len(arg)))
            arg = arg[:MAX_ARG_LENGTH]
        reply_msg = self.reply_msg
        if reply_msg is not None and len(reply_msg) > MAX_REPLY_MSG_LENGTH:
            self.weird("FTP_reply_msg_too_long", str(len(reply_msg)))
            self.reply_msg = reply_msg[:MAX_REPLY_MSG_LENGTH]
        hide = self.hide_password
        if hide and command == "PASS":
            arg = "<hidden>"
        self.arg = arg if arg != "" else None
        if hide and self.password is not None:
            self.password = "<hidden>"
        if command in self.logged_commands:
            self.write(self.row(ca.ts))
            self.logged_command_seen = True
        self.file_size = None
        self.data_channel = None

    def row(self, ts: float) -> dict:
        ch = self.data_channel
        row = self.new_row.copy()         # (the connection's fields, then the row's)
        row["ts"] = ts
        row["user"] = self.user
        row["password"] = self.password
        row["command"] = self.command
        row["arg"] = self.arg
        row["file_size"] = self.file_size
        row["reply_code"] = self.reply_code
        row["reply_msg"] = self.reply_msg
        if ch is not None:
            row["data_channel.passive"] = ch.passive
            row["data_channel.orig_h"] = ch.orig_h
            row["data_channel.resp_h"] = ch.resp_h
            row["data_channel.resp_p"] = ch.resp_p
        return row

    def request(self, ts: float, cmd: str, arg: str) -> DataChannelAnnouncement | None:
        # The previous command is written when the next one is seen.
        pending = self.pending
        cmdarg = self.cmdarg
        if cmdarg is not None and self.reply_code is not None:
            if pending.pop(cmdarg.seq, None) is not None:
                self._message(cmdarg)
        if not self.started:
            self._session(ts)
        if len(pending) < MAX_PENDING_COMMANDS:
            seq = self.command_seq = self.command_seq + 1
            pending[seq] = CmdArg(ts, cmd, arg, seq)
        else:
            self.weird("FTP_too_many_pending_commands", str(len(pending)))
        if cmd == "USER":
            if len(arg) > MAX_USER_LENGTH:
                self.weird("FTP_user_too_long", str(len(arg)))
                arg = arg[:MAX_USER_LENGTH]
            self.user, self.user_seen = arg, True
            self.hide_password = self._hide_password()
        elif cmd == "PASS":
            if len(arg) > MAX_PASSWORD_LENGTH:
                self.weird("FTP_password_too_long", str(len(arg)))
                arg = arg[:MAX_PASSWORD_LENGTH]
            self.password = arg
        elif cmd in ("PORT", "EPRT"):
            if cmd == "PORT":
                found = parse_port_numbers(arg)
            else:
                h, p, ok = parse_extended_port(arg)
                found = (h, p) if ok else None
            if found is not None:
                return self._announce(False, self.id.resp_h, found[0], found[1])
        return None

    def _announce(self, passive, orig_h, resp_h, resp_p) -> DataChannelAnnouncement:
        self.data_channel = DataChannelAnnouncement(passive, orig_h, resp_h, resp_p)
        return self.data_channel

    def reply(self, ts: float, code: int, msg: str, continued: bool
              ) -> DataChannelAnnouncement | None:
        if not self.started:
            self._session(ts)
        if continued and code == 0 and self.reply_code is not None:
            if not REPLY_LIKE_LINE.match(msg):
                return None
        cmdarg = self.cmdarg = self._best_pending(code, msg, ts)
        self.reply_code, self.reply_msg = code, msg
        if continued:
            return None
        announced = None
        cmd = cmdarg.cmd
        if (code == 150 and cmd == "RETR") or (code == 213 and cmd == "SIZE"):
            self.file_size = extract_last_count(msg)
        elif code in (227, 229) and cmd in ("PASV", "EPSV"):
            if code == 227:
                found = parse_pasv_reply(msg)
            else:
                i = msg.find("(")
                h, p, ok = parse_extended_port(msg[i + 1:] if i >= 0 else None)
                found = (self.id.resp_h if h == "::" else h, p) if ok else None
            if found is not None:
                announced = self._announce(True, self.id.orig_h, found[0], found[1])
        if (cmd, code) in DIRECTORY_COMMANDS and not cmdarg.cwd_consumed:
            cmdarg.cwd_consumed = True
            if cmd == "CWD":
                self.cwd = build_path_compressed(self.cwd, cmdarg.arg)
            elif cmd == "CDUP":
                self.cwd = build_path_compressed(self.cwd, "/..")
            else:
                self.cwd = extract_path(msg)
        # Several commands queued: write this one now rather than at the next command.
        if len(self.pending) > 1:
            self.pending.pop(cmdarg.seq, None)
            self._message(cmdarg)
        return announced

    def finalize(self) -> None:
        """The connection is gone: write what is pending, and one summary row
        for a session that had a user but no logged command."""
        for seq in sorted(self.pending):
            self._message(self.pending[seq])
        self.pending.clear()
        if self.user_seen and not self.logged_command_seen:
            self.write(self.row(self.cmdarg.ts if self.cmdarg else self.ts))
            self.logged_command_seen = True


# -- transfers ----------------------------------------------------------------------------

class StreamCount:
    """One data connection's share of a transfer."""
    __slots__ = ("uid", "bytes", "missed_bytes", "ended", "end_of_data", "duration")

    def __init__(self, uid: str):
        self.uid = uid
        self.bytes: int | None = None     # file bytes it carried (None: not known yet)
        self.missed_bytes = 0
        self.ended = False
        self.end_of_data = False          # MODE E: an EOD block was seen
        self.duration: float | None = None


class Channel:
    """A data channel announced on the control connection: where the data
    connection(s) will go and how they are read."""
    __slots__ = ("number", "passive", "orig_h", "endpoints", "mode", "parsed", "started",
                 "transfer", "used", "early", "expected", "pending")

    def __init__(self, number: int, passive: bool, orig_h: str | None,
                 endpoints: list[tuple[str, int]], mode: str = "S"):
        self.number = number
        self.passive = passive       # the server listens (PASV, EPSV, LPSV, SPAS)
        self.orig_h = orig_h
        self.endpoints = endpoints
        self.mode = mode             # transfer mode when announced (S stream, E extended block)
        self.parsed = False          # bound to a data analyser (MODE E) rather than counted
        self.started: dict[str, bool] = {}      # uid -> ended
        self.transfer: Transfer | None = None
        self.used = False            # a stream-mode channel carries one transfer
        self.early = None            # MODE E blocks seen before their transfer (gridftp)
        self.expected: dict = {}     # (host, port) -> expectations not yet met
        self.pending: list = []      # those Expectation objects (to withdraw)


class Transfer:
    """One file transfer: its command, its channel and the data connections
    that carried it."""
    __slots__ = ("ts", "command", "file", "protocol", "channel", "number", "size_announced",
                 "reply_code", "reply_ts", "streams", "blocks", "control_ended", "done")

    def __init__(self, ts: float, command: str, file: str | None, protocol: str,
                 channel: Channel | None, number: int):
        self.ts = ts
        self.command = command
        self.file = file
        self.protocol = protocol
        self.channel = channel
        self.number = number
        self.size_announced: int | None = None
        self.reply_code: int | None = None
        self.reply_ts: float | None = None
        self.streams: dict[str, StreamCount] = {}
        self.blocks = None           # MODE E block tally (gridftp.BlockTally)
        self.control_ended = False
        self.done = False

    @property
    def upload(self) -> bool:
        return self.command in UPLOAD_COMMANDS or self.command == "ESTO"


class Awaiting:
    """A command waiting for its final reply (the transfer tracker's own queue)."""
    __slots__ = ("cmd", "arg", "ts", "transfer")

    def __init__(self, cmd: str, arg: str, ts: float, transfer: "Transfer | None" = None):
        self.cmd, self.arg, self.ts, self.transfer = cmd, arg, ts, transfer


class Reply:
    """A whole reply: its code, the first line's text (after the code), every
    line's text first to last, and the time of its first line."""
    __slots__ = ("code", "text", "lines", "ts")

    def __init__(self, code: int, text: str, lines: list[str], ts: float):
        self.code, self.text, self.lines, self.ts = code, text, lines, ts

    @property
    def last(self) -> str:
        return self.lines[-1] if self.lines else self.text


@functools.lru_cache(maxsize=16)
def logged_commands(option: str) -> frozenset[str]:
    """The commands ftp.log writes: Zeek's default set and those of the
    `log_commands` option (worked out once per distinct option, not per
    session)."""
    extra = {c.strip() for c in re.split(r"[+\s;]", option) if c.strip()}
    return ZEEK_LOGGED_COMMANDS | {c if c.startswith("<") else c.upper() for c in extra}


class FtpCore(AnalyserCore):
    """The FTP analyser's compiled half: both sides cut into lines, each
    command and reply parsed, replies paired with their commands (Zeek's
    scoring in ZeekFtpLog, strict order for the transfer tracker), and what
    is done per data channel, data connection and transfer (expectations,
    byte counts, transfers.log).  It runs once per control line, so the build
    makes it an extension type (ftp.pxd): its state is struct fields and its
    calls C calls; GridFTP's overrides of the extension points still win.
    `Ftp` below adds the declarations, the session's start and its end."""

    def feed(self, side: int, data: bytes) -> bool:
        """Cut a side's bytes into lines and handle each, in order.  True
        once parsing has stopped (read_any_into ends then)."""
        if not data or self.stopped:
            return self.stopped
        buf = self.buffers[side]
        if not buf and not self.discarding[side]:
            # The usual case, a chunk that starts a line: its lines are cut
            # straight out of it (one copy each); only an unfinished rest is
            # kept in the buffer.
            chunk = data if type(data) is bytes else bytes(data)
            start = 0
            while True:
                found = next_line(chunk, start, MAX_LINE)   # (protocols/_ftplines.pyx)
                if found is None:
                    break
                text, nl = found
                if text is None:
                    self.weird("FTP_line_too_long", side="orig" if side == ORIG else "resp",
                               limit=MAX_LINE)
                    self.handle_line(side, chunk[start:start + MAX_LINE])
                elif text:                   # (Zeek ignores empty lines on both sides)
                    self.handle_text(side, text)
                start = nl + 1
                if self.stopped:
                    break
            if start == len(chunk):
                return self.stopped
            data = chunk[start:]
        buf += data
        while not self.stopped:
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) > MAX_LINE:
                    line = bytes(buf[:MAX_LINE])
                    del buf[:]
                    if not self.discarding[side]:
                        self.weird("FTP_line_too_long", side="orig" if side == ORIG else "resp",
                                   limit=MAX_LINE)
                        self.handle_line(side, line)
                    self.discarding[side] = True
                break
            line = bytes(buf[:nl])
            del buf[:nl + 1]
            if self.discarding[side]:
                self.discarding[side] = False     # the end of the cut line
                continue
            if len(line) > MAX_LINE:
                self.weird("FTP_line_too_long", side="orig" if side == ORIG else "resp",
                           limit=MAX_LINE)
                line = line[:MAX_LINE]
            self.handle_line(side, line)
        return self.stopped

    def handle_line(self, side: int, raw: bytes) -> None:
        n = len(raw)
        if n and raw[n - 1] == 13:       # CR LF
            raw = raw[:n - 1]
            n -= 1
        if not n:
            return                       # Zeek ignores empty lines on both sides
        self.handle_text(side, raw.decode("utf-8", "backslashreplace"))

    def handle_text(self, side: int, text: str) -> None:
        """A line without its CR LF, decoded, not empty."""
        if side == ORIG:
            self.handle_command_line(text)
        else:
            self.handle_reply_line(text)

    # -- commands ------------------------------------------------------------------------

    def handle_command_line(self, line: str) -> None:
        if not line:
            return
        word, arg, printable, lower = split_command(line)
        if len(word) < 3 or not printable:
            self.weird("FTP_invalid_command", line=line[:80])
            return
        if len(word) > MAX_COMMAND_LENGTH:
            self.weird("FTP_max_command_length_exceeded", length=len(word))
            return
        cmd = word.upper() if lower else word
        if cmd in SMTP_OPENERS and not self._confirmed:
            # Both greet with 220; Zeek's FTP signature also needs the client's
            # USER, ours does not, so an SMTP client's EHLO is where FTP gives up.
            self.invalid_reply("SMTP command %s in place of an FTP command" % cmd, line)
        ts = self._rt.now_ts()           # self.ts, without the property
        announced = self.zeek.request(ts, cmd, arg)
        if cmd == "AUTH":
            self.auth_requested = arg.strip().upper()
        if len(self.awaiting) >= MAX_AWAITING:
            self.weird("FTP_too_many_awaiting_commands", count=len(self.awaiting))
            self.awaiting.popleft()
        waiting = Awaiting(cmd, arg, ts)
        self.awaiting.append(waiting)
        if announced is not None:                    # PORT, EPRT
            self.open_channel(False, announced.orig_h, [(announced.resp_h, announced.resp_p)])
        elif cmd == "LPRT":
            found = parse_long_address(arg)
            if found:
                self.open_channel(False, self.id.resp_h, [found])
        if self.extends_commands:
            self.extension_command(cmd, arg, waiting)
        if cmd in self.transfer_command_set:
            waiting.transfer = self.start_transfer(ts, cmd, arg)

    def extension_command(self, cmd: str, arg: str, waiting: Awaiting) -> None:
        """Extension point: a command the base FTP analyser does not act on."""

    # -- replies -----------------------------------------------------------------------

    def handle_reply_line(self, line: str) -> None:
        """One reply line, as Zeek's FTP analyzer splits them: a multi-line
        reply is `123-text`, free lines, `123 text`."""
        n = len(line)
        code = 0
        if n >= 3:                       # three ASCII digits
            c0, c1, c2 = line[0], line[1], line[2]
            if "0" <= c0 <= "9" and "0" <= c1 <= "9" and "0" <= c2 <= "9":
                code = (ord(c0) - 48) * 100 + (ord(c1) - 48) * 10 + ord(c2) - 48
        ts = self._rt.now_ts()           # self.ts, without the property
        if self.reply_code_pending:
            if code == self.reply_code_pending and n > 3 and line[3] == " ":
                text = text_from(line, 4)
                self.reply_code_pending = 0
                self.zeek_reply(ts, code, text, False)
                self.collect_reply_line(text)
                first_code, first_text, first_ts = self.reply_first
                self.complete_reply(Reply(code, first_text, self.reply_lines, first_ts))
            else:
                self.zeek_reply(ts, 0, line, True)
                self.collect_reply_line(line)
            return
        if code == 0:
            self.invalid_reply("non-numeric reply code", line)
        if code < 100:
            self.invalid_reply("invalid reply code", line)
        if n > 3 and line[3] == "-":
            text = text_from(line, 4)
            self.reply_code_pending = code
            self.reply_first = (code, text, ts)
            self.reply_lines = [text]
            self.zeek_reply(ts, code, text, True)
            return
        if n > 3 and line[3] != " ":
            self.invalid_reply("invalid reply line", line)
        text = text_from(line, 3)
        self.zeek_reply(ts, code, text, False)
        self.complete_reply(Reply(code, text, [text], ts))

    def collect_reply_line(self, text: str) -> None:
        if len(self.reply_lines) < MAX_REPLY_LINES:
            self.reply_lines.append(text)
        elif len(self.reply_lines) == MAX_REPLY_LINES:
            self.weird("FTP_reply_too_many_lines", limit=MAX_REPLY_LINES)
            self.reply_lines.append("")

    def zeek_reply(self, ts, code, text, continued) -> None:
        announced = self.zeek.reply(ts, code, text, continued)
        if announced is not None:                   # 227 / 229 to PASV / EPSV
            self.open_channel(True, announced.orig_h, [(announced.resp_h, announced.resp_p)])

    def invalid_reply(self, reason: str, line: str) -> None:
        """Zeek's analyzer violation: the FTP analyzer is removed from the
        connection, so nothing after this line is parsed (what is pending is
        still reported, by main()'s `finally`).  Before confirmation it also
        means "not FTP": the next candidate analyser gets the connection."""
        self.stopped = True
        self.violation(reason, line)

    def complete_reply(self, reply: Reply) -> None:
        """A whole reply (the last line of a multi-line one): pair it with the
        oldest command waiting (1xx replies are preliminary)."""
        head = self.awaiting[0] if self.awaiting else None
        if reply.code < 200:
            if head is not None:
                self.preliminary_reply(head, reply)
            return
        if head is None:
            # RFC 2228 protected replies (631-633) wrap preliminary replies too,
            # so a protected session has more of them than commands.
            if reply.code not in PROTECTED_REPLY_CODES:
                self.weird("FTP_unexpected_reply", code=reply.code)
            return
        self.awaiting.popleft()
        self.final_reply(head, reply)

    def preliminary_reply(self, head: Awaiting, reply: Reply) -> None:
        t = head.transfer
        if t is not None and reply.code in (125, 150):
            m = ANNOUNCED_SIZE.search(reply.text.encode("utf-8", "replace"))
            if m:
                t.size_announced = min(int(m.group(1)), COUNT_MAX)
        if self.extends_replies:
            self.extension_reply(head, reply)

    def final_reply(self, head: Awaiting, reply: Reply) -> None:
        cmd, code = head.cmd, reply.code
        if not self._confirmed and cmd in FTP_COMMANDS:
            self.confirm()            # a valid reply to an FTP command: it is FTP
        if cmd == "SIZE" and code == 213:
            m = NUMBER.search(reply.text)
            if m and len(self.sizes) < MAX_CHANNELS:
                self.sizes[head.arg] = min(int(m.group(0)), COUNT_MAX)
        elif cmd == "MODE" and code == 200 and head.arg.strip():
            self.mode = head.arg.strip()[0].upper()
        elif cmd == "LPSV" and code == 228:
            found = parse_long_address(reply.text[reply.text.find("(") + 1:]
                                       if "(" in reply.text else reply.text)
            if found:
                self.open_channel(True, self.id.orig_h, [found])
        elif cmd == "AUTH" and code == 234 and self.auth_requested in (
                "TLS", "SSL", "TLS-C", "TLS-P"):
            self.start_tls()
        if self.extends_replies:
            self.extension_reply(head, reply)
        t = head.transfer
        if t is not None:
            t.reply_code, t.reply_ts = code, reply.ts
            self.check_transfer(t)

    def extension_reply(self, head: Awaiting, reply: Reply) -> None:
        """Extension point: a reply to a command the base analyser does not act on."""



    # -- data channels -------------------------------------------------------------------

    def open_channel(self, passive: bool, orig_h: str | None, endpoints, mode=None) -> Channel:
        """A data channel was announced: expect its connection(s)."""
        self.channel_count += 1
        ch = Channel(self.channel_count, passive, orig_h, list(endpoints), mode or self.mode)
        previous = self.current_channel
        if previous is not None and self.superseded(previous):
            self.withdraw(previous)              # nobody will connect to it any more
        self.forget_old_channels()
        self.channels[ch.number] = ch
        self.current_channel = ch
        analyser = self.data_analyser(ch)
        ch.parsed = analyser is not None
        per_endpoint = self.initial_expectations(ch)
        for endpoint in ch.endpoints:
            resp_h, resp_p = endpoint
            for _ in range(per_endpoint):
                self.expect_endpoint(ch, resp_h, resp_p, analyser)
        # A transfer command pipelined before this channel's reply waits for it.
        for i in range(len(self.transfers) - 1, -1, -1):
            t = self.transfers[i]
            if t.channel is None and t.reply_code is None:
                self.attach_transfer(t, ch)
                break
        if self._rt._emit is not None:           # events_wanted, without the property
            self.emit("data_channel", channel=ch.number, passive=passive, orig_h=orig_h,
                      endpoints=[list(e) for e in ch.endpoints], mode=ch.mode)
        else:
            self._rt.emit(self, "data_channel", {})   # counted: no one reads its fields
        return ch

    def expect_endpoint(self, ch: Channel, resp_h: str, resp_p: int, analyser) -> None:
        if not 0 < resp_p < 65536:
            self.weird("FTP_bad_data_port", port=resp_p)
            return
        e = self.expect_bounded(resp_h, resp_p, ch.orig_h, analyser,
                                {"service": self.data_service(ch), "channel": ch.number,
                                 "control_uid": self.conn.uid})
        if e is not None:
            ch.pending.append(e)
            endpoint = (resp_h, resp_p)
            ch.expected[endpoint] = ch.expected.get(endpoint, 0) + 1

    # -- expectations: added, met, withdrawn -------------------------------------------

    def add_expectation(self, resp_h: str, resp_p: int | None, *, orig_h: str | None,
                        analyser, **meta) -> Expectation | None:
        """expect() within this connection's bound of pending expectations."""
        return self.expect_bounded(resp_h, resp_p, orig_h, analyser, meta)

    def expect_bounded(self, resp_h: str, resp_p: int | None, orig_h: str | None, analyser,
                       meta: dict) -> Expectation | None:
        """add_expectation() with its meta as a dict (the per-channel call)."""
        now = self._rt.now_ts()
        live = self.live_expectations
        if live and live[0].deadline < now:
            live[:] = [e for e in live if e.deadline >= now]   # expired in the runtime too
        if len(live) >= MAX_PENDING_EXPECTATIONS:
            self.weird("FTP_too_many_expected_data_channels", count=len(live))
            return None
        # AnalyserCore.expect() without its keyword arguments.
        e = self._rt.expect(self, resp_h, resp_p, orig_h, "tcp", EXPECT_TIMEOUT, analyser, meta)
        live.append(e)
        return e

    def expectation_met(self, meta: dict, pending: list | None = None) -> None:
        """The expectation carrying `meta` was met: it is no longer ours to withdraw."""
        for lst in (self.live_expectations, pending):
            if lst:
                for i, e in enumerate(lst):
                    if e.meta is meta:
                        del lst[i]
                        break

    def cancel_all(self, expectations: list) -> int:
        """Withdraw expectations that can no longer be met; how many were pending."""
        withdrawn = 0
        for e in expectations:
            if e.cancel():
                withdrawn += 1
            try:
                self.live_expectations.remove(e)
            except ValueError:
                pass
        expectations.clear()
        return withdrawn

    def withdraw(self, ch: Channel) -> None:
        """Nobody will connect to this channel any more (superseded, its transfer
        over, forgotten, or the session ended)."""
        if ch.pending:
            self.cancel_all(ch.pending)
            ch.expected.clear()

    def superseded(self, ch: Channel) -> bool:
        """A new PORT/PASV replaces `ch`: can a connection still come to it?
        Not when none has come and no transfer waits for one (a MODE E channel
        whose connections are open keeps serving transfers)."""
        if ch.mode == "E":
            for ended in ch.started.values():
                if not ended:
                    return False             # an open connection serves the next transfer
        return ch.transfer is None or ch.transfer.done

    def forget_old_channels(self) -> None:
        if len(self.channels) < MAX_CHANNELS:
            return
        for number, ch in list(self.channels.items()):
            busy = (ch.transfer is not None and not ch.transfer.done) or \
                   not all(ch.started.values())
            if not busy and ch is not self.current_channel:
                self.withdraw(ch)
                del self.channels[number]
            if len(self.channels) < MAX_CHANNELS:
                return
        self.weird("FTP_too_many_expected_data_channels", count=len(self.channels))
        oldest = next(iter(self.channels))
        self.withdraw(self.channels.pop(oldest))

    def data_analyser(self, ch: Channel):
        """Extension point: the analyser class that reads this channel's data
        connections; None counts them in compiled code."""
        return None

    def data_service(self, ch: Channel) -> str:
        return "ftp-data"

    def initial_expectations(self, ch: Channel) -> int:
        """Extension point: connections expected per endpoint (parallel streams)."""
        return 1

    def expected_started(self, conn, meta) -> None:
        self.stream_started(conn, meta)

    def stream_started(self, conn, meta: dict) -> None:
        """expected_started(), typed: a data connection began."""
        ch = self.channels.get(meta.get("channel"))
        self.expectation_met(meta, ch.pending if ch is not None else None)
        if ch is None:
            self.extension_unknown_stream(conn, meta)
            return
        if len(ch.started) >= MAX_STREAMS:
            self.weird("FTP_too_many_data_connections", channel=ch.number)
            return
        ch.started[conn.uid] = False
        endpoint = (conn.id.resp_h, conn.id.resp_p)
        ch.expected[endpoint] = max(0, ch.expected.get(endpoint, 0) - 1)
        t = ch.transfer
        if t is not None and not t.done and len(t.streams) < MAX_STREAMS:
            t.streams.setdefault(conn.uid, StreamCount(conn.uid))
        self.extension_stream_started(ch, conn, meta)

    def extension_stream_started(self, ch: Channel, conn, meta) -> None:
        """Extension point: a data connection of `ch` began."""

    def extension_unknown_stream(self, conn, meta) -> None:
        """Extension point: an expected connection not of a known channel began."""

    def expected_ended(self, row, meta) -> None:
        self.stream_ended(row, meta)

    def stream_ended(self, row: dict, meta: dict) -> None:
        """expected_ended(), typed: a data connection ended (its conn.log row)."""
        ch = self.channels.get(meta.get("channel"))
        uid = row.get("uid")
        if ch is None or uid not in ch.started:
            return
        ch.started[uid] = True
        t = ch.transfer
        if t is None or t.done:
            return
        stream = t.streams.get(uid)
        if stream is None:
            return
        stream.ended = True
        stream.missed_bytes = row.get("missed_bytes") or 0
        stream.duration = row.get("duration")
        if not ch.parsed:
            # Counted in compiled code: the sender's payload bytes are the file.
            # The data connection's originator is the client when the server
            # listens (passive), the server otherwise.
            sender_is_orig = ch.passive == t.upload
            stream.bytes = row.get("orig_bytes" if sender_is_orig else "resp_bytes") or 0
        elif stream.bytes is None:
            stream.bytes = 0             # parsed, but it carried no block of this transfer
        self.check_transfer(t)

    # -- transfers -----------------------------------------------------------------------

    def start_transfer(self, ts: float, cmd: str, arg: str) -> Transfer | None:
        if len(self.transfers) >= MAX_OPEN_TRANSFERS:
            self.weird("FTP_too_many_open_transfers", count=len(self.transfers))
            self.report_transfer(self.transfers[0])
        ch = self.current_channel
        if ch is not None and ch.used and ch.mode != "E":
            # Stream mode: one data connection per transfer.  No new PORT/PASV
            # yet: a pipelined one may still be answered (open_channel binds it).
            ch = None
        self.transfer_count += 1
        t = Transfer(ts, cmd, arg or None, self.transfer_protocol(), ch, self.transfer_count)
        t.size_announced = self.sizes.get(arg)
        self.transfers.append(t)
        if ch is not None:
            self.attach_transfer(t, ch)
        if self._rt._emit is not None:
            self.emit("transfer_start", transfer=t.number, command=cmd, file=t.file,
                      protocol=t.protocol, data_uids=list(t.streams),
                      channel=ch.number if ch else None,
                      passive=ch.passive if ch else None, mode=ch.mode if ch else self.mode,
                      size_announced=t.size_announced)
        else:
            self._rt.emit(self, "transfer_start", {})   # counted: no one reads its fields
        return t

    def attach_transfer(self, t: Transfer, ch: Channel) -> None:
        """Bind a transfer to the channel whose connections carry it."""
        t.channel = ch
        previous = ch.transfer
        if previous is not None and not previous.done:
            previous.control_ended = True        # superseded: report when its streams end
            self.check_transfer(previous)
        ch.used = True
        ch.transfer = t
        for uid, ended in ch.started.items():
            if not ended:                        # open connections carry it (MODE E caches them)
                t.streams[uid] = StreamCount(uid)
        self.bind_transfer(t)

    def bind_transfer(self, t: Transfer) -> None:
        """Extension point: a transfer was bound to its channel."""

    def transfer_protocol(self) -> str:
        return self.protocol_label

    def check_transfer(self, t: Transfer) -> None:
        """Report the transfer if everything it waits for is known."""
        if t.done:
            return
        if t.reply_code is None and not t.control_ended:
            return
        for s in t.streams.values():    # (a loop, not all(): no generator per call)
            if not self.stream_finished(t, s):
                return
        self.report_transfer(t)

    def stream_finished(self, t: Transfer, s: StreamCount) -> bool:
        return s.ended

    def report_transfer(self, t: Transfer) -> None:
        if t.done:
            return
        t.done = True
        if t in self.transfers:
            self.transfers.remove(t)
        if t.channel is not None and t.channel.transfer is t:
            t.channel.transfer = None
            # Stream mode: one transfer per channel.  MODE E: the next transfer
            # on this channel expects its connections again (bind_transfer).
            self.withdraw(t.channel)
        self.finish_blocks(t)
        total = None
        missed = 0
        for s in t.streams.values():
            if s.bytes is not None:
                total = s.bytes if total is None else total + s.bytes
            missed += s.missed_bytes
        end_ts = t.reply_ts if t.reply_ts is not None else self._rt.now_ts()
        duration = max(0.0, end_ts - t.ts)
        size_matches = None
        if t.size_announced is not None and total is not None:
            size_matches = t.size_announced == total
            if not size_matches and t.reply_code is not None and 200 <= t.reply_code < 300:
                self.weird("FTP_transfer_size_mismatch", command=t.command, file=t.file,
                           size_announced=t.size_announced, bytes=total)
        if self._rt._emit is not None:
            data_time = 0.0
            for s in t.streams.values():
                data_time = max(data_time, s.duration or 0.0)
            throughput_time = data_time or duration
            throughput = (total / throughput_time) if (total is not None and throughput_time) \
                else None
            fields = dict(transfer=t.number, command=t.command, file=t.file,
                          protocol=t.protocol, data_uids=list(t.streams),
                          size_announced=t.size_announced, bytes=total,
                          bytes_per_stream={s.uid: s.bytes for s in t.streams.values()},
                          streams=len(t.streams), duration=round(duration, 6),
                          throughput=round(throughput, 3) if throughput is not None else None,
                          reply_code=t.reply_code, missed_bytes=missed,
                          size_matches=size_matches,
                          mode=t.channel.mode if t.channel else self.mode,
                          passive=t.channel.passive if t.channel else None)
            fields.update(self.extra_transfer_fields(t))
            self.emit("transfer_end", **fields)
        else:
            self._rt.emit(self, "transfer_end", {})     # counted: no one reads its fields
        cid = self.conn.id
        self.log("transfers", {
            "ts": t.ts, "uid": self.conn.uid, "id.orig_h": cid.orig_h,
            "id.orig_p": cid.orig_p, "id.resp_h": cid.resp_h,
            "id.resp_p": cid.resp_p, "protocol": t.protocol, "command": t.command,
            "file": t.file, "size_announced": t.size_announced, "bytes": total,
            "streams": len(t.streams), "data_uids": sorted(t.streams), "duration": duration,
            "reply_code": t.reply_code, "missed_bytes": missed})

    def finish_blocks(self, t: Transfer) -> None:
        """Extension point: settle MODE E block counts before the report."""

    def extra_transfer_fields(self, t: Transfer) -> dict:
        return {}


    # -- the session's start and end ------------------------------------------------

    def setup_session(self) -> None:
        self.zeek = ZeekFtpLog(self.conn.id, self.conn.uid, self._write_ftp_row,
                               self._zeek_weird,
                               logged_commands(str(self.config.get("log_commands", ""))),
                               bool(self.config.get("capture_password")))
        self.transfer_command_set = self.transfer_commands   # (the class's, read per command)
        # The per-line extension points are called only where a subclass has
        # them (a Python call per line otherwise, to do nothing).
        cls = type(self)
        self.extends_commands = cls.extension_command is not FtpCore.extension_command
        self.extends_replies = cls.extension_reply is not FtpCore.extension_reply
        self.buffers = [bytearray(), bytearray()]      # by side: ORIG, RESP
        self.discarding = [False, False]   # by side: dropping the rest of a cut line
        self.stopped = False          # no more parsing (TLS, violation)
        self.encrypted = False
        self.tls_record_unread = False   # AUTH TLS accepted: the client's next byte to look at
        self.awaiting = deque()
        self.awaiting.append(Awaiting("<init>", "", self._rt.now_ts()))
        self.reply_lines = []
        self.reply_code_pending = 0   # code of a multi-line reply in progress
        self.reply_first = None
        self.auth_requested = ""
        self.mode = "S"
        self.channels = {}
        self.channel_count = 0
        self.current_channel = None
        self.transfers = []     # open ones
        self.transfer_count = 0
        self.sizes = {}         # file -> size from a 213 reply to SIZE
        # Our expectations not met yet (each also on its channel's list): they
        # are withdrawn when they can no longer be met; their number is capped.
        self.live_expectations = []
        self.closed = False           # both sides of the control connection ended
        self.ended = False

    def end_session(self) -> None:
        """The control connection is over (or no longer parsed): write Zeek's
        pending rows and report what can be reported."""
        if self.ended:
            return
        self.ended = True
        self.zeek.finalize()
        # ZeekFtpLog holds bound methods of this analyser: drop it so the
        # session is freed by reference counting, not left to the cyclic GC.
        self.zeek = None
        for t in list(self.transfers):
            t.control_ended = True
            self.check_transfer(t)
        if self.closed:
            # Closed (not merely no longer parsed): no data connection will
            # come for it any more.
            for ch in self.channels.values():
                self.withdraw(ch)


    # -- sinks -------------------------------------------------------------------------------

    def _write_ftp_row(self, row: dict) -> None:
        self.log("ftp", row)

    def _zeek_weird(self, name: str, detail: str) -> None:
        self.weird(name, detail=detail)


class Ftp(FtpCore, Analyser):
    """FTP control channel: ftp.log as Zeek writes it, data channels linked to it,
    one transfers.log row per transfer."""
    name = "ftp"
    ports = {21}
    service = "ftp"
    # Zeek's DPD signatures for FTP, as prefixes: the server's greeting, or the
    # client's first command when the greeting was not captured.
    signatures = (Signature(RESP, b"220", skip_space=True),
                  Signature(RESP, b"120", skip_space=True),
                  Signature(ORIG, b"USER ", nocase=True, skip_space=True),
                  Signature(ORIG, b"AUTH ", nocase=True, skip_space=True))
    logs = {"ftp": FTP_LOG, "transfers": TRANSFERS}
    # What users sent: left unset under --no-payload-in-logs (logs and events).
    payload_fields = frozenset({"user", "password", "arg", "reply_msg", "file", "line",
                                "text"})
    options = {
        "log_commands": ("", "commands to log in ftp.log besides Zeek's default set, "
                             "separated by '+' (e.g. USER+PASS+<init>+AUTH)"),
        "capture_password": (False, "log every password, not only anonymous ones "
                                    "(Zeek's FTP::default_capture_password)"),
    }
    protocol_label = "ftp"
    transfer_commands = DOWNLOAD_COMMANDS | UPLOAD_COMMANDS

    # -- main ----------------------------------------------------------------------

    def main(self):
        self.setup_session()
        try:
            self.read_both_sides()
        finally:
            self.end_session()

    def read_both_sides(self) -> None:
        while not self.stopped:
            try:
                # Each chunk of either side to feed() as it comes (the engine
                # calls it: no greenlet switch per chunk); goes on with the
                # other side when one has ended; StreamEnd means both have.
                self.read_any_into(self.feed, READ_CHUNK)
            except Gap as gap:
                self.feed(gap.side, gap.data)
                self.weird("FTP_content_gap", side="orig" if gap.side == ORIG else "resp",
                           size=gap.size)
                # The line the hole broke is lost; what follows the hole is read
                # as the start of a new line (a hole at a line boundary is the
                # usual case: one lost segment carried whole commands).
                self.buffers[gap.side].clear()
                self.discarding[gap.side] = False
                continue
            except StreamEnd as end:
                self.feed(end.side, end.data)
                self.closed = True
                break
        if self.tls_record_unread:
            self.tls_record_unread = False
            try:
                first = self.read(ORIG, 1)
            except (Gap, StreamEnd):
                first = b""
            if first == b"\x16":                   # a TLS handshake record
                self.add_service("ssl")
            self.release()
        if self.closed and not self.stopped:
            if self.buffers[ORIG]:
                self.weird("partial_ftp_request")     # a command without its newline
            self.buffers[ORIG].clear()
            self.buffers[RESP].clear()

    def start_tls(self) -> None:
        """AUTH TLS accepted: the rest of the control channel is TLS.  Say so,
        stop parsing, and stop reassembling it (its counting goes on)."""
        self.encrypted = True
        self.stopped = True
        self.emit("ftp_encrypted", method=self.auth_requested)
        if self.buffers[ORIG][:1] == b"\x16":
            self.add_service("ssl")
            self.release()
        else:
            # The client's next byte says whether a TLS record follows: read by
            # read_both_sides once feeding stops (feed() runs outside main(),
            # where nothing can be read).
            self.tls_record_unread = True
