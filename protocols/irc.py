"""IRC: client commands and server messages, STARTTLS hand-over to TLS.

Role in the data flow: flows -> streams -> **analysers (protocols.irc)** ->
events; after a successful STARTTLS the connection goes on to the TLS
analyser (`ssl`), which reads the handshake from the next byte.

Theory of operation:

1. IRC is not lock-step (the server sends notices, pings and channel
   traffic whenever it likes), so lines are taken from whichever side has
   data (`read_any`) and cut here, each side keeping its unfinished line.
2. Detection: a known client command (RFC 2812 §3, plus CAP and STARTTLS)
   and a valid server line (`:prefix`, a command word or a 3-digit numeric)
   confirm the session (conn.log `irc`).  A client line that is no IRC
   command, or a server line that is no IRC message, before that is a
   violation; after it, a weird.
3. `STARTTLS` (IRCv3 tls extension): the client sends nothing more until the
   server answers, so from then on the server is read line by line
   (`read_line`, byte-exact).  Numeric 670 switches: `self.hand_over("ssl")`
   gives the connection to the TLS analyser at the first byte after the
   670 line (as Zeek's IRC_Analyzer::StartTLS); 691 (failure) goes on in
   the clear.

Not done: irc.log (Zeek logs NICK, USER, JOIN and DCC SEND; not written
here), DCC file transfers.
"""
from __future__ import annotations

from analyser import ORIG, RESP, Analyser, Gap, Signature, StreamEnd

# -- limits ---------------------------------------------------------------------

MAX_LINE = 8192                 # bytes of a line kept (RFC 2812 §2.3 allows 512; IRCv3 tags 8191)
READ_CHUNK = 16384              # bytes asked of the stream layer per read
MAX_STARTTLS_WAIT = 64          # server lines read after STARTTLS while waiting for 670/691

# Client commands Zeek's IRC analyser knows (src/analyzer/protocol/irc/IRC.cc), and CAP.
COMMANDS = frozenset(
    b"ADMIN AWAY CONNECT DIE ERROR INFO INVITE ISON JOIN KICK KILL LINKS LIST LUSERS MODE "
    b"MOTD NAMES NICK NJOIN NOTICE OPER PART PASS PING PONG PRIVMSG QUIT REHASH RESTART "
    b"SERVER SERVICE SERVLIST SQUERY SQUIRT SQUIT STATS SUMMON TIME TOPIC TRACE USER "
    b"USERHOST USERS VERSION WALLOPS WHO WHOIS WHOWAS STARTTLS CAP".split())
RPL_STARTTLS, ERR_STARTTLS = 670, 691       # IRCv3 tls extension
TLS_ANALYSER = "ssl"


def text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def split_message(line: bytes) -> tuple[bytes, bytes, bytes]:
    """(prefix, command, params) of one message line without its CRLF;
    IRCv3 message tags (`@...`) are dropped."""
    if line.startswith(b"@"):
        line = line.partition(b" ")[2]
    prefix = b""
    if line.startswith(b":"):
        prefix, _, line = line[1:].partition(b" ")
    command, _, params = line.lstrip(b" ").partition(b" ")
    return prefix, command, params


def valid_server_command(command: bytes) -> bool:
    """A 3-digit numeric or a command word (letters)."""
    return (len(command) == 3 and command.isdigit()) or (command.isalpha() and
                                                         len(command) <= 32)


class Irc(Analyser):
    """One IRC session: lines of both sides; after STARTTLS the TLS analyser
    takes over."""
    name = "irc"
    ports = {6666, 6667, 6668, 6669}     # Zeek's IRC::ports (6697 is TLS from the start)
    signatures = tuple(Signature(ORIG, word, nocase=True, skip_space=True)
                       for word in (b"NICK ", b"USER ", b"CAP ", b"PASS "))

    def main(self):
        self.buffers = [b"", b""]
        self.client_ok = self.server_ok = False
        try:
            while True:
                side, chunk = self.read_any(READ_CHUNK)
                lines = (self.buffers[side] + chunk).split(b"\n")
                self.buffers[side] = lines.pop()
                if len(self.buffers[side]) > MAX_LINE:
                    self.weird("irc_line_too_long", side=side)
                    self.buffers[side] = b""
                for line in lines:
                    line = line.rstrip(b"\r")
                    if not line:
                        continue
                    if side == ORIG:
                        if self.client_line(line):
                            self.starttls()
                    else:
                        self.server_line(line)
        except Gap as gap:
            self.weird("irc_content_gap", side="orig" if gap.side == ORIG else "resp",
                       size=gap.size)
        except StreamEnd:
            pass

    def client_line(self, line: bytes) -> bool:
        """A client message; True for STARTTLS."""
        _, command, _ = split_message(line)
        command = command.upper()
        if command not in COMMANDS:
            if not self.confirmed:
                self.violation("not an IRC command", line)
            self.weird("irc_invalid_command", command=text(command[:40]))
            return False
        self.client_ok = True
        self.check_confirm()
        return command == b"STARTTLS"

    def server_line(self, line: bytes) -> int | None:
        """A server message; its numeric, if it is one."""
        prefix, command, _ = split_message(line)
        if not valid_server_command(command):
            if not self.confirmed:
                self.violation("not an IRC server message", line)
            self.weird("irc_invalid_reply", line=text(line[:100]))
            return None
        self.server_ok = True
        self.check_confirm()
        return int(command) if command.isdigit() else None

    def check_confirm(self) -> None:
        if self.client_ok and self.server_ok and not self.confirmed:
            self.confirm()

    def starttls(self) -> None:
        """After the client's STARTTLS: server lines, exactly, until 670
        (hand over to TLS) or 691 (stay in the clear)."""
        pending = self.buffers[RESP]
        self.buffers[RESP] = b""
        for _ in range(MAX_STARTTLS_WAIT):
            line = self.read_line(RESP, MAX_LINE)
            if pending:
                line, pending = pending + line, b""
            code = self.server_line(line.rstrip(b"\r\n"))
            if code == RPL_STARTTLS:
                self.emit("irc_starttls")
                self.hand_over(TLS_ANALYSER)
            if code == ERR_STARTTLS:
                return
        self.weird("irc_starttls_no_reply")
