"""MySQL / MariaDB client protocol: handshake, login, commands, SSL switch.

Role in the data flow: flows -> streams -> **analysers (protocols.mysql)** ->
sinks (`mysql.log`); after the client's SSLRequest the connection goes on
to the TLS analyser (`ssl`), which reads the handshake from the next byte.

Theory of operation:

1. Everything is a packet: a 3-byte little-endian length, a sequence
   number, the payload (MySQL client/server protocol, "MySQL Packets").
   Packets are taken from whichever side sends one (`read_any` for the
   4-byte header, then the payload from that side), so reads stop exactly
   at a packet's end.  Payloads are read only as far as they are looked at
   (`read_and_skip`): result-set rows and long queries are skipped in C.
2. The server speaks first: its handshake packet (sequence 0, protocol
   version 10, or 9 for very old servers) gives the server version.
   Anything else first is a violation.
3. The client's answer carries its capability flags.  With CLIENT_SSL it is
   an SSLRequest: the TLS handshake follows at once, so
   `self.hand_over("ssl")` gives the connection to the TLS analyser (Zeek's
   MySQL analyser calls StartTLS at the same packet).  Otherwise it is the
   login (its user name), and the session is confirmed either way.
4. `mysql.log` follows Zeek's `base/protocols/mysql/main.zeek`: a `login`
   row when the login is answered, then one row per command (COM_QUERY's
   `arg` is the query), completed by the server's OK (`rows` = affected
   rows), ERR (`success` F, `response` = the message) or the end of a result
   set (`success` T, `rows` 0, as Zeek writes it); `quit` at once.

Not done: compressed protocol (CLIENT_COMPRESS: after login only counted),
prepared-statement result sets (binary rows are skipped like text rows),
the change-user command's user name, auth plugins.
"""
from __future__ import annotations

from analyser import ORIG, RESP, Analyser, Field, Gap, Signature, StreamEnd, conn_id_fields

# -- wire format ------------------------------------------------------------------

HEADER = 4                      # 3-byte length, 1-byte sequence number
PROTOCOL_V10, PROTOCOL_V9 = 10, 9
CLIENT_PROTOCOL_41 = 0x00000200
CLIENT_SSL = 0x00000800
CLIENT_COMPRESS = 0x00000020
CLIENT_DEPRECATE_EOF = 0x01000000
OK, EOF, ERR = 0x00, 0xFE, 0xFF
AUTH_MORE_DATA = 0x01
MAX_PACKET = 0xFFFFFF           # a payload of this length continues in the next packet
EOF_MAX_LENGTH = 9              # an EOF packet is shorter (a row starting 0xfe is not)
COM_QUIT = 1

# -- limits ------------------------------------------------------------------------

MAX_ARG = 4096                  # bytes of a command's argument (a query) kept
MAX_HEAD = 512                  # bytes of a server packet looked at (OK/ERR/handshake)
MAX_HANDSHAKE = 4096            # bytes of a handshake packet (server greeting, login)
MAX_COLUMNS = 4096              # column definitions of one result set (MySQL allows 4096)
TLS_ANALYSER = "ssl"

# Zeek's MySQL::commands (scripts/base/protocols/mysql/consts.zeek).
COMMANDS = ("sleep quit init_db query field_list create_db drop_db refresh shutdown "
            "statistics process_info connect process_kill debug ping time delayed_insert "
            "change_user binlog_dump table_dump connect_out register_slave stmt_prepare "
            "stmt_execute stmt_send_long_data stmt_close stmt_reset set_option stmt_fetch "
            "daemon binlog_dump_gtid reset_connection").split()


def command_name(code: int) -> str:
    return COMMANDS[code] if code < len(COMMANDS) else "unknown-%d" % code


def lenenc(data: bytes, at: int) -> tuple[int, int]:
    """A length-encoded integer at `at`: (value, offset after it)."""
    first = data[at] if at < len(data) else 0
    if first < 0xFB:
        return first, at + 1
    size = {0xFC: 2, 0xFD: 3, 0xFE: 8}.get(first, 0)
    return int.from_bytes(data[at + 1:at + 1 + size], "little"), at + 1 + size


def text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


MYSQL_LOG = (
    Field("ts", "time", "time of the command (of the login: the client's handshake)"),
    Field("uid", "string", "connection uid"),
    *conn_id_fields("client", "server"),
    Field("cmd", "string", "the command (Zeek's names: query, init_db, ...; login)"),
    Field("arg", "string", "its argument: the query, the database, the user name"),
    Field("success", "bool", "the server answered OK (or with a result set)"),
    Field("rows", "count", "affected rows of the OK reply (0 for a result set)"),
    Field("response", "string", "the error message of an ERR reply"),
)


class MySql(Analyser):
    """One MySQL session: handshake, login, commands; with SSL the TLS
    analyser takes over after the SSLRequest."""
    name = "mysql"
    ports = {1434, 3306}            # Zeek's MySQL::ports
    # The server's handshake: payload length < 64 KiB, sequence 0, protocol 10.
    signatures = (Signature(RESP, b"??\x00\x00\x0a", wildcard=True),)
    logs = {"mysql": MYSQL_LOG}
    payload_fields = frozenset({"arg", "response"})

    def main(self):
        self.row: dict | None = None
        self.capabilities = 0
        try:
            self.session()
        except Gap as gap:
            self.weird("mysql_content_gap", side="orig" if gap.side == ORIG else "resp",
                       size=gap.size)
        except StreamEnd:
            pass
        finally:
            self.write_row()

    # -- packets ----------------------------------------------------------------------

    def packet(self, keep: int, handshake: bool = False) -> tuple[int, int, int, bytes]:
        """The next packet of either side: (side, sequence, length, the first
        `keep` bytes of its payload; the rest is skipped).  A `handshake`
        packet longer than MAX_HANDSHAKE is not MySQL (checked before its
        payload is waited for)."""
        side, head = self.read_any(HEADER)
        if len(head) < HEADER:
            head += self.read(side, HEADER - len(head))
        length = int.from_bytes(head[:3], "little")
        if handshake and length > MAX_HANDSHAKE and not self.confirmed:
            self.violation("MySQL handshake packet of %d bytes" % length, head)
        payload = self.read_and_skip(side, length, keep)
        return side, head[3], length, payload

    def server_packet(self, keep: int) -> tuple[int, bytes]:
        side, _, length, payload = self.packet(keep)
        if side != RESP:
            self.weird("mysql_unexpected_client_packet")
        return length, payload

    # -- the session ------------------------------------------------------------------

    def session(self) -> None:
        side, seq, length, greeting = self.packet(MAX_HEAD, handshake=True)
        if side != RESP or seq != 0 or not greeting or \
                greeting[0] not in (PROTOCOL_V10, PROTOCOL_V9):
            self.violation("no MySQL server handshake", greeting[:40])
        version = greeting[1:].partition(b"\x00")[0]
        self.emit("mysql_server_version", version=text(version[:100]))
        side, seq, length, answer = self.packet(MAX_HEAD, handshake=True)
        if side != ORIG or seq != 1 or len(answer) < 2:
            self.violation("no MySQL handshake response", answer[:40])
        caps = int.from_bytes(answer[:2], "little")
        if caps & CLIENT_PROTOCOL_41 and len(answer) >= 4:
            caps = int.from_bytes(answer[:4], "little")
        self.capabilities = caps
        self.confirm()
        if caps & CLIENT_SSL and greeting[0] == PROTOCOL_V10:
            self.emit("mysql_ssl_request")
            self.hand_over(TLS_ANALYSER)
        user_at = 32 if caps & CLIENT_PROTOCOL_41 else 5
        user = answer[user_at:].partition(b"\x00")[0]
        self.row = self.new_row("login", text(user))
        self.login()
        if caps & CLIENT_COMPRESS:
            self.bulk()                  # compressed packets: not parsed
            return
        while True:
            self.command()

    def login(self) -> None:
        """Packets until the server's OK or ERR to the login (auth switch
        and auth-more-data rounds in between)."""
        while True:
            side, _, length, payload = self.packet(MAX_HEAD)
            if side == ORIG or not payload:
                continue                 # auth data of a switch / more-data round
            if payload[0] in (OK, ERR):
                self.reply(payload)
                return
            if payload[0] not in (EOF, AUTH_MORE_DATA):
                self.weird("mysql_unexpected_login_reply", code=payload[0])

    def command(self) -> None:
        side, seq, length, payload = self.packet(1 + MAX_ARG)
        if side != ORIG:
            self.weird("mysql_unexpected_server_packet")
            return
        if not payload:
            return
        self.write_row()                 # a command before the previous one's reply
        arg = text(payload[1:]).removesuffix("\x00")
        self.row = self.new_row(command_name(payload[0]), arg)
        if payload[0] == COM_QUIT:
            self.write_row()
            return
        length, first = self.server_packet(MAX_HEAD)
        if not first:
            return
        if first[0] in (OK, ERR) or (first[0] == EOF and length < EOF_MAX_LENGTH):
            self.reply(first)
            return
        self.result_set(first)

    def result_set(self, first: bytes) -> None:
        """Column count, column definitions, (EOF), rows, EOF or OK: rows skipped."""
        columns, _ = lenenc(first, 0)
        if columns > MAX_COLUMNS:
            self.weird("mysql_too_many_columns", columns=columns)
        deprecate_eof = bool(self.capabilities & CLIENT_DEPRECATE_EOF)
        for _ in range(min(columns, MAX_COLUMNS)):
            self.server_packet(0)
        if not deprecate_eof:
            self.server_packet(0)        # the EOF after the column definitions
        while True:
            length, head = self.server_packet(MAX_HEAD)
            if not head:
                continue
            if head[0] == ERR:
                self.reply(head)
                return
            if head[0] == EOF and (length < EOF_MAX_LENGTH or
                                   (deprecate_eof and length < MAX_PACKET)):
                self.row.update(success=True, rows=0)
                self.write_row()
                return

    # -- mysql.log ----------------------------------------------------------------------

    def new_row(self, cmd: str, arg: str) -> dict:
        cid = self.id
        return {"ts": self.ts, "uid": self.uid, "id.orig_h": cid.orig_h,
                "id.orig_p": cid.orig_p, "id.resp_h": cid.resp_h, "id.resp_p": cid.resp_p,
                "cmd": cmd, "arg": arg}

    def reply(self, payload: bytes) -> None:
        """OK, ERR or EOF completes the open row."""
        row = self.row
        if row is not None:
            if payload[0] == ERR:
                # ERR: code (2), with PROTOCOL_41 '#' and a 5-byte SQL state, message.
                message = payload[3:]
                if message[:1] == b"#":
                    message = message[6:]
                row.update(success=False, response=text(message))
            elif payload[0] == OK:
                row.update(success=True, rows=lenenc(payload, 1)[0])
            else:
                row.update(success=True, rows=0)
        self.write_row()

    def write_row(self) -> None:
        if self.row is not None:
            self.log("mysql", self.row)
            self.row = None
