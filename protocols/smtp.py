"""SMTP: commands, replies, message headers, STARTTLS hand-over to TLS.

Role in the data flow: flows -> streams -> **analysers (protocols.smtp)** ->
sinks (`smtp.log`); after a successful STARTTLS the connection goes on to
the TLS analyser (`ssl`), which reads the handshake from the next byte.

Theory of operation:

1. SMTP is lock-step (RFC 5321 §4.1, pipelining included: replies come in
   the order of the commands), so `main()` reads the server's greeting, then
   one client command and the server's reply to it, in turn.  A reply is one
   line or several (`250-...` continues, `250 ...` ends it).
2. Detection: a greeting that is a reply line (`220`, or `554` from a server
   that refuses the session) and a known command answered by a valid reply
   confirm the session (conn.log `smtp`).  A greeting or reply that is not
   an SMTP reply line is a violation before that, a weird after.
3. `STARTTLS` answered by `220` ends the cleartext part: the session's row
   gets `tls = T` and `self.hand_over("ssl")` gives the connection to the
   TLS analyser, which reads the ClientHello the client sends next (Zeek's
   SMTP_Analyzer::StartTLS does the same: conn.log says `smtp,ssl`).
4. A message (DATA after `354`): its top-level header lines are read (the
   fields of smtp.log come from them, as Zeek's `mime_one_header` handler
   takes them), then the body is skipped up to the `<CRLF>.<CRLF>` line: it
   is read in large chunks and searched in C (`re.search`), never cut into
   Python lines or kept.  Bytes the client pipelined after the end of data
   are kept for the next command.  `BDAT n` chunks are skipped in compiled
   code (their headers are not parsed).
5. `ZeekSmtpLog` is the bookkeeping of Zeek's `base/protocols/smtp/main.zeek`:
   one row per message transaction (MAIL FROM starts one, the reply to the
   end of data or to `BDAT ... LAST` ends it), written only when the client
   did something (MAIL, RCPT or STARTTLS), plus the one open when the
   connection ends.

Not done: MIME entities and files (`fuids` is empty when no message was
seen, unset otherwise: Zeek's file ids cannot be reproduced), IPv6 addresses
in Received headers (`path`) and X-Originating-IP, RFC 2047 decoding of
header values, the state recovery Zeek attempts after a gap (a gap ends the
analysis; the open row is written).
"""
from __future__ import annotations

import ipaddress
import re

from analyser import ORIG, RESP, Analyser, Field, Gap, Signature, StreamEnd, conn_id_fields

# -- limits ---------------------------------------------------------------------

MAX_LINE = 8192               # bytes of a line kept (RFC 5321 §4.5.3.1.4 allows 512 / 1000)
MAX_REPLY_LINES = 256         # lines of one multi-line reply read before giving up on it
MAX_HEADER_LINES = 1000       # header lines of one message parsed (the rest is body)
MAX_HEADER_VALUE = 4096       # bytes of one (unfolded) header value kept
BODY_CHUNK = 65536            # bytes of a message body read per wake-up
MAX_RCPTTO = 1000             # Zeek's SMTP::max_rcptto_addresses
MAX_TO = 1000                 # Zeek's SMTP::max_to_addresses
MAX_CC = 1000                 # Zeek's SMTP::max_cc_addresses
MAX_PATH = 1000               # Zeek's SMTP::max_path_length
MAX_AUTH_ROUNDS = 16          # 334 challenges answered in one AUTH exchange

# Commands of Zeek's SMTP analyser (src/analyzer/protocol/smtp/SMTP_cmd.def).
COMMANDS = frozenset({b"EHLO", b"HELO", b"MAIL", b"RCPT", b"DATA", b"QUIT", b"RSET", b"VRFY",
                      b"EXPN", b"HELP", b"NOOP", b"STARTTLS", b"X-ANONYMOUSTLS", b"SEND",
                      b"SOML", b"SAML", b"TURN", b"BDAT", b"ETRN", b"AUTH"})
GREETING_CODES = frozenset({220, 554, 421})   # RFC 5321 §4.2.5 / §3.1
TLS_ANALYSER = "ssl"

# The end of a message: a line holding a single dot (a bare LF is tolerated,
# as Zeek's line splitter tolerates it).
END_OF_DATA = re.compile(rb"\n\.\r?\n")
# Zeek's extract_email_addrs_* (base/utils/email.zeek); [:blank:] is space and tab.
EMAIL = re.compile(r"(?:^|[<,:\t ])([^<,:\t @]+@[^>,;\t ]+)(?:[>,;\t ]|$)")
ORCPT = re.compile(r"ORCPT=rfc822;?")
# Zeek's split_mime_email_addresses.
MIME_ADDRESS = re.compile(r'(?:"[^"]*")?[^,]+@[^,]+')
IPV4 = re.compile(r"(?<![0-9])[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(?![0-9])")
WRAPPERS = {"[": "]", "(": ")", "{": "}", " ": " "}


def text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def email_addresses(arg: str) -> list[str]:
    """Zeek's extract_email_addrs_vec: addresses in order."""
    return [re.sub(r"[<>,:;\t ]", "", m.group(1)) for m in EMAIL.finditer(arg)]


def ipv4_addresses(value: str, check_wrapping: bool = False) -> list[str]:
    """Zeek's extract_ip_addresses (IPv4 only): valid addresses in order; with
    check_wrapping only those in [], (), {}, between spaces, or alone."""
    found = []
    for m in IPV4.finditer(value):
        try:
            ipaddress.IPv4Address(m.group())
        except ValueError:
            continue
        if check_wrapping:
            before, after = value[:m.start()], value[m.end():]
            if before or after:
                if not (before and after and WRAPPERS.get(before[-1]) == after[0]):
                    continue
        found.append(m.group())
    return found


# -- smtp.log ---------------------------------------------------------------------

SMTP_LOG = (
    Field("ts", "time", "when the transaction's record was started (greeting, or the reply "
                        "that ended the previous message)"),
    Field("uid", "string", "connection uid"),
    *conn_id_fields("client", "server"),
    Field("trans_depth", "count", "the message's number in the connection"),
    Field("helo", "string", "argument of HELO/EHLO"),
    Field("mailfrom", "string", "first address in MAIL FROM"),
    Field("rcptto", "set[string]", "addresses in RCPT TO"),
    Field("date", "string", "Date header"),
    Field("from", "string", "From header"),
    Field("to", "set[string]", "To header, split into addresses"),
    Field("cc", "set[string]", "Cc header, split into addresses"),
    Field("reply_to", "string", "Reply-To header"),
    Field("msg_id", "string", "Message-ID header"),
    Field("in_reply_to", "string", "In-Reply-To header"),
    Field("subject", "string", "Subject header"),
    Field("x_originating_ip", "addr", "first IPv4 address of X-Originating-IP"),
    Field("first_received", "string", "last Received header of the message"),
    Field("second_received", "string", "the Received header before it"),
    Field("last_reply", "string", "last reply line of the server: code and text"),
    Field("path", "vector[addr]", "server, client, then the addresses of the Received "
                                  "headers (IPv4)"),
    Field("user_agent", "string", "X-Mailer, User-Agent or X-User-Agent header"),
    Field("tls", "bool", "the session switched to TLS (STARTTLS)"),
    Field("fuids", "vector[string]", "file ids (no file analysis: empty without a message, "
                                     "unset with one)"),
)


class ZeekSmtpLog:
    """Zeek's smtp.log bookkeeping (scripts/base/protocols/smtp/main.zeek),
    kept apart from the parsing: events in, rows out through `write`."""

    def __init__(self, analyser: Analyser, write):
        self.a = analyser
        self.write = write
        self.helo: str | None = None
        self.messages = 0
        self.info: dict | None = None

    def session(self) -> dict:
        """Zeek's set_smtp_session: the open record, made on first use."""
        if self.info is None:
            a = self.a
            cid = a.id
            self.info = {"ts": a.ts, "uid": a.uid, "id.orig_h": cid.orig_h,
                         "id.orig_p": cid.orig_p, "id.resp_h": cid.resp_h,
                         "id.resp_p": cid.resp_p, "trans_depth": self.messages + 1,
                         "helo": self.helo, "path": [cid.resp_h, cid.orig_h],
                         "tls": False, "fuids": [], "_active": False, "_headers": True}
        return self.info

    def flush(self) -> None:
        """Zeek's smtp_message: write the record if the client did something."""
        info = self.info
        if info is not None and info["_active"]:
            self.write({k: v for k, v in info.items() if not k.startswith("_")})
            self.info = None

    def request(self, command: str, arg: str) -> None:
        info = self.session()
        if command in ("HELO", "EHLO"):
            self.helo = info["helo"] = arg
        elif command == "RCPT" and arg[:3].upper() == "TO:":
            rcpt = info.setdefault("rcptto", [])
            for address in email_addresses(arg):
                if len(rcpt) >= MAX_RCPTTO:
                    self.a.weird("smtp_too_many_rcptto_addresses")
                    break
                address = ORCPT.sub("", address)
                if address not in rcpt:
                    rcpt.append(address)
            info["_active"] = True
        elif command == "MAIL" and arg[:5].upper() == "FROM:":
            self.flush()                    # a message whose end we did not see
            info = self.session()
            addresses = email_addresses(arg)
            if addresses:
                info["mailfrom"] = addresses[0]
            info["_active"] = True

    def reply(self, code: int, msg: str) -> None:
        self.session()["last_reply"] = "%d %s" % (code, msg)

    def message_done(self) -> None:
        """The reply to the end of data (or to BDAT ... LAST)."""
        self.messages += 1
        self.flush()
        self.info = None
        self.session()

    def starttls(self) -> None:
        info = self.session()
        info["tls"] = True
        info["_active"] = True

    def body_seen(self) -> None:
        self.session()["fuids"] = None      # Zeek has a file id we cannot reproduce

    def header(self, name: str, value: str) -> None:
        """Zeek's mime_one_header handlers (top-level headers only)."""
        info = self.session()
        if name == "MESSAGE-ID":
            info["msg_id"] = value
        elif name == "RECEIVED":
            if "first_received" in info:
                info["second_received"] = info["first_received"]
            info["first_received"] = value
            ips = ipv4_addresses(value, check_wrapping=True)
            if ips:
                ip = ips[1] if len(ips) > 1 else ips[0]
                path = info["path"]
                if path[-1] != ip:
                    if len(path) >= MAX_PATH:
                        self.a.weird("smtp_max_path_length_exceeded")
                    else:
                        path.append(ip)
        elif name == "IN-REPLY-TO":
            info["in_reply_to"] = value
        elif name == "SUBJECT":
            info["subject"] = value
        elif name == "FROM":
            info["from"] = value
        elif name == "REPLY-TO":
            info["reply_to"] = value
        elif name == "DATE":
            info["date"] = value
        elif name in ("TO", "CC"):
            field, limit = ("to", MAX_TO) if name == "TO" else ("cc", MAX_CC)
            kept = info.setdefault(field, [])
            for m in MIME_ADDRESS.finditer(value):
                address = m.group().strip()
                if len(kept) >= limit:
                    self.a.weird("smtp_too_many_%s_addresses" % field)
                    break
                if address not in kept:
                    kept.append(address)
        elif name == "X-ORIGINATING-IP":
            ips = ipv4_addresses(value)
            if ips:
                info["x_originating_ip"] = ips[0]
        elif name in ("X-MAILER", "USER-AGENT", "X-USER-AGENT"):
            info["user_agent"] = value


class Smtp(Analyser):
    """One SMTP session: greeting, commands and replies, message headers,
    smtp.log; after STARTTLS the TLS analyser takes over."""
    name = "smtp"
    ports = {25, 587}                   # Zeek's SMTP::ports (465 is TLS from the start)
    # Zeek's dpd_smtp_server / dpd_smtp_client (scripts/base/protocols/smtp/dpd.sig).
    signatures = (Signature(RESP, b"220 ", skip_space=True),
                  Signature(RESP, b"220-", skip_space=True),
                  Signature(ORIG, b"EHLO", nocase=True, skip_space=True),
                  Signature(ORIG, b"HELO", nocase=True, skip_space=True))
    logs = {"smtp": SMTP_LOG}
    payload_fields = frozenset({"helo", "mailfrom", "rcptto", "date", "from", "to", "cc",
                                "reply_to", "msg_id", "in_reply_to", "subject",
                                "first_received", "second_received", "last_reply",
                                "user_agent"})

    def main(self):
        self.zeek = ZeekSmtpLog(self, lambda row: self.log("smtp", row))
        self.pending = b""              # client bytes read past the end of a message
        try:
            self.session()
        except Gap as gap:
            self.weird("smtp_content_gap", side="orig" if gap.side == ORIG else "resp",
                       size=gap.size)
        except StreamEnd:
            pass
        finally:
            self.zeek.flush()           # the record open when the connection ends

    # -- lines ----------------------------------------------------------------------

    def client_line(self) -> bytes:
        """The next client line: pipelined bytes kept from a message first."""
        pending = self.pending
        if pending:
            nl = pending.find(b"\n")
            if nl >= 0:
                self.pending = pending[nl + 1:]
                return pending[:nl + 1]
            self.pending = b""
            return pending + self.read_line(ORIG, max(1, MAX_LINE - len(pending)))
        return self.read_line(ORIG, MAX_LINE)

    def reply(self) -> int | None:
        """One reply, all its lines; its code, or None when a line is not an
        SMTP reply (a violation before confirmation)."""
        code = None
        for _ in range(MAX_REPLY_LINES):
            line = self.read_line(RESP, MAX_LINE)
            head = line[:3]
            if not (head.isdigit() and 100 <= int(head) <= 599):
                if not self.confirmed:
                    self.violation("reply code out of range", line)
                self.weird("smtp_bad_reply", line=text(line[:100]))
                return None
            this = int(head)
            if code is not None and this != code:
                self.weird("smtp_reply_code_mismatch", line=text(line[:100]))
            code = this
            more = line[3:4] == b"-"
            self.zeek.reply(this, text(line[4:].strip(b"\r\n").lstrip(b" \t")))
            if not more:
                return code
        self.weird("smtp_reply_too_long", lines=MAX_REPLY_LINES)
        return code

    # -- the session -------------------------------------------------------------------

    def session(self) -> None:
        greeting = self.reply()
        if greeting is None or greeting not in GREETING_CODES:
            self.violation("no SMTP greeting", str(greeting))
        while True:
            line = self.client_line()
            command, _, arg = line.rstrip(b"\r\n").lstrip(b" \t").partition(b" ")
            upper = command.upper()
            if upper not in COMMANDS:
                if not self.confirmed:
                    self.violation("unknown SMTP command", line)
                self.weird("smtp_unknown_command", command=text(command[:40]))
                code = self.reply()
                continue
            arg_text = text(arg.lstrip(b" \t"))
            self.zeek.request(upper.decode(), arg_text)
            if upper == b"BDAT":
                last = self.bdat(arg)
            code = self.reply()
            if code is None:
                continue
            self.confirm()
            if upper == b"STARTTLS" or upper == b"X-ANONYMOUSTLS":
                if code == 220:
                    self.zeek.starttls()
                    self.zeek.flush()
                    self.emit("smtp_starttls")
                    self.hand_over(TLS_ANALYSER)
            elif upper == b"DATA" and code == 354:
                self.message()
                code = self.reply()
                if code is not None:
                    self.zeek.message_done()
            elif upper == b"BDAT" and last and code // 100 == 2:
                self.zeek.message_done()
            elif upper == b"AUTH":
                rounds = 0
                while code == 334 and rounds < MAX_AUTH_ROUNDS:
                    self.client_line()      # the answer to a challenge, not a command
                    code = self.reply()
                    rounds += 1

    def bdat(self, arg: bytes) -> bool:
        """RFC 3030: `BDAT size [LAST]`: the chunk follows the command line;
        skipped in compiled code.  Returns whether it is the last one."""
        words = arg.split()
        if not words or not words[0].isdigit():
            self.weird("smtp_bad_bdat_command", arg=text(arg[:100]))
            return False
        size = int(words[0])
        if self.pending:
            taken = min(size, len(self.pending))
            self.pending = self.pending[taken:]
            size -= taken
        if size:
            self.zeek.body_seen()
            self.skip(ORIG, size)
        return len(words) > 1 and words[1].upper() == b"LAST"

    def message(self) -> None:
        """The message after 354: top-level headers, then the body up to the
        end-of-data line, skipped."""
        self.zeek.body_seen()
        name = value = None
        for _ in range(MAX_HEADER_LINES):
            line = self.client_line()
            if line in (b".\r\n", b".\n"):
                self.header(name, value)
                return                       # a message without a body
            if line in (b"\r\n", b"\n"):
                self.header(name, value)
                break
            if line[:1] in (b" ", b"\t") and name is not None:
                if len(value) < MAX_HEADER_VALUE:
                    value += line.rstrip(b"\r\n")
                continue
            self.header(name, value)
            name, sep, value = line.rstrip(b"\r\n").partition(b":")
            if not sep:
                self.weird("smtp_bad_header_line", line=text(line[:100]))
                name = None
                continue
            value = value.lstrip(b" \t")
        else:
            self.header(name, value)
        self.skip_body(b"\n")

    def header(self, name: bytes | None, value: bytes | None) -> None:
        if name:
            self.zeek.header(text(name.strip()).upper(), text(value[:MAX_HEADER_VALUE]))

    def skip_body(self, tail: bytes) -> None:
        """Read on to the `.` line; `tail` is what came just before (the end
        of the last line read).  What follows it is kept for the next command."""
        pending, self.pending = self.pending, b""
        buf = tail + pending
        while True:
            found = END_OF_DATA.search(buf)
            if found is not None:
                self.pending = buf[found.end():]
                return
            buf = buf[-3:] + self.read_some(ORIG, BODY_CHUNK)
