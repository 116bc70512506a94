"""SSH: version banners, key exchange, negotiated algorithms, the server's
host key, and Zeek's guess at the authentication outcome.

Role in the data flow: flows -> streams -> **analysers (protocols.ssh)** ->
sinks (`ssh.log`, `ssh_*` events).

Theory of operation.  `main()` reads both sides in arrival order
(`read_any`), so each delivered chunk is one TCP segment as it came, and
feeds each side's bytes to that side's state machine:

1. *banner*: lines up to the version line `SSH-<proto>-<software>`.  The
   client's first line must be it (RFC 4253 4.2); a server may send other
   lines first (at most MAX_PRE_BANNER_LINES).  Once both are known the
   session's version follows Zeek's rules (1.99 speaks both: 2 against a 2,
   1 against a 1).  SSH 1 is only framed, up to the server's PUBLIC_KEY and
   the client's SESSION_KEY, which confirms it (as in Zeek).
2. *kex*: binary packets in the clear (RFC 4253 6: uint32 packet_length,
   byte padding_length, payload, padding).  The first KEXINIT (msg 20) of
   each side gives the algorithm lists; with both, the negotiated algorithm
   of each kind is the first of the client's list the server also has
   (RFC 4253 7.1; Zeek's `find_alg`, which also names the MAC of AEAD
   ciphers such as chacha20-poly1305 or aes-gcm, where it is implicit).  The
   key exchange method says which message carries the server's host key
   (KEXDH_REPLY / KEX_ECDH_REPLY 31, KEX_DH_GEX_REPLY 33, KEXGSS_HOSTKEY 33):
   its first string is the key blob, fingerprinted as `ssh-keygen -l` does
   (SHA256, base64) and as Zeek's md5-host-key-logging does (MD5).  NEWKEYS
   (msg 21) switches the side to encrypted and confirms the protocol (Zeek
   confirms there too).
3. *encrypted*: only segment sizes are known.  Zeek's heuristic
   (src/analyzer/protocol/ssh/SSH.cc, `ProcessEncrypted`) reads the
   server's segments once the client has sent encrypted data: the first is
   the SERVICE_ACCEPT; one 16 bytes shorter is USERAUTH_SUCCESS; the next
   other size is USERAUTH_FAILURE (unless it is more than 256 bytes larger:
   a banner, skipped once), and each later segment of that size another
   failure.  As in Zeek's scripts, nothing is counted when compression is
   zlib.  Once the outcome is known (a success), or cannot be (compression,
   SSH 1, a gap, MAX_WATCHED_SEGMENTS), the row is written and the streams
   are released: the rest of the connection is counted in compiled code.
   With the `messages` option every encrypted segment becomes an
   `ssh_message` event instead (its size and time), to the end.

ssh.log has one row per connection that sent a banner, written on a
success or when nothing can change it any more, else at the end.  Bad input
is a weird (packet lengths, over-long strings and lists) or, before
confirmation, a violation; never an exception.
"""
from __future__ import annotations

import base64
import struct

from analyser import (ORIG, RESP, Analyser, Field, Gap, Signature, StreamEnd, conn_id_fields,
                      deferred_module, private_address)


# hashlib loads OpenSSL (3 ms of every start-up): imported at the first
# host key fingerprint.
_hashlib = deferred_module("hashlib")

# -- limits -----------------------------------------------------------------------

READ_CHUNK = 65536              # bytes asked of the stream layer per read
MAX_LINE = 8192                 # OpenSSH's SSH_MAX_BANNER_LEN (kex.c): one banner line
MAX_PRE_BANNER_LINES = 1024     # OpenSSH's SSH_MAX_PRE_BANNER_LINES: server lines before SSH-
MAX_PACKET_LENGTH = 256 * 1024  # OpenSSH's PACKET_MAX_SIZE (Zeek's SSH::max_packet_length
#                                 is 8 MiB; a key exchange packet is a few KiB)
MAX_STRING_LENGTH = 2 * 1024 * 1024   # Zeek's SSH::max_string_length
MAX_KEXINIT_ALGORITHMS = 100    # Zeek's SSH::max_kexinit_*_algorithms, per name-list
MAX_WATCHED_SEGMENTS = 4096     # encrypted segments read for the authentication guess
#                                 (Zeek reads to the end; past this the row is written as is)
BANNER_SKIP = 256               # Zeek: a USERAUTH_FAILURE this much larger is a banner
SUCCESS_DELTA = -16             # Zeek: USERAUTH_SUCCESS is 16 bytes shorter than SERVICE_ACCEPT

# -- wire format (RFC 4253) ----------------------------------------------------------

PACKET_HEADER = struct.Struct("!IB")     # packet_length, padding_length
UINT32 = struct.Struct("!I")
MIN_PACKET_LENGTH = 5                    # padding_length byte + 4 bytes of padding (6)
COOKIE_LENGTH = 16
MSG_KEXINIT = 20
MSG_NEWKEYS = 21
SSH1_MIN_PACKET_LENGTH = 5               # type + CRC
SSH1_SMSG_PUBLIC_KEY = 2
SSH1_CMSG_SESSION_KEY = 3
SSH1_LAST_CLEAR_MESSAGE = frozenset({(RESP, SSH1_SMSG_PUBLIC_KEY), (ORIG, SSH1_CMSG_SESSION_KEY)})

# Name-lists of KEXINIT, in wire order.
KEXINIT_LISTS = ("kex_algorithms", "server_host_key_algorithms",
                 "encryption_algorithms_client_to_server",
                 "encryption_algorithms_server_to_client",
                 "mac_algorithms_client_to_server", "mac_algorithms_server_to_client",
                 "compression_algorithms_client_to_server",
                 "compression_algorithms_server_to_client",
                 "languages_client_to_server", "languages_server_to_client")

# Which server message carries the host key, by key exchange method (Zeek's
# update_kex in ssh-protocol.pac): exact names, then prefixes.
HOST_KEY_MESSAGE_EXACT = {
    "diffie-hellman-group1-sha1": 31, "diffie-hellman-group14-sha1": 31,
    "diffie-hellman-group14-sha256": 31, "diffie-hellman-group16-sha512": 31,
    "diffie-hellman-group18-sha512": 31, "ecmqv-sha2": 31,
    "diffie-hellman-group-exchange-sha1": 33, "diffie-hellman-group-exchange-sha256": 33,
    "rsa1024-sha1": 0, "rsa2048-sha256": 0,      # RFC 4432: no host key message parsed
}
HOST_KEY_MESSAGE_PREFIX = (("gss-", 33), ("ecdh-sha2-", 31), ("curve25519-sha256", 31),
                           ("sntrup761x25519-sha512", 31), ("mlkem", 31))

# Zeek's SSH::compression_algorithms: no authentication guess under these.
COMPRESSION_ALGORITHMS = frozenset({"zlib", "zlib@openssh.com"})
NEGOTIATION_FAILED = "Algorithm negotiation failed"   # Zeek's find_alg result

# -- log ---------------------------------------------------------------------------

SSH_LOG = (
    Field("ts", "time", "time of the first banner"),
    Field("uid", "string", "connection uid"),
    *conn_id_fields("client", "server"),
    Field("version", "count", "SSH major version, 1 or 2 (Zeek's rule: 1.99 goes with "
                              "either); unset when the banners disagree or one is missing"),
    Field("auth_success", "bool", "authentication outcome guessed from encrypted segment "
                                  "sizes (Zeek's heuristic); unset when unknown"),
    Field("auth_attempts", "count", "authentication attempts seen by that heuristic"),
    Field("direction", "enum", "OUTBOUND when only the client is local (private address "
                               "space, as conn.log's local_orig), INBOUND when only the server "
                               "is; unset otherwise"),
    Field("client", "string", "the client's version string"),
    Field("server", "string", "the server's version string"),
    Field("cipher_alg", "string", "negotiated cipher"),
    Field("mac_alg", "string", "negotiated MAC (named even when an AEAD cipher makes it "
                               "implicit, as Zeek does)"),
    Field("compression_alg", "string", "negotiated compression"),
    Field("kex_alg", "string", "negotiated key exchange method"),
    Field("host_key_alg", "string", "negotiated host key algorithm"),
    Field("host_key_fingerprint", "string", "SHA256 fingerprint of the server's host key, "
                                            "as ssh-keygen -l prints it"),
    Field("host_key", "string", "MD5 fingerprint of the host key (Zeek's "
                                "policy/protocols/ssh/md5-host-key-logging)"),
)

BANNER, KEX, ENCRYPTED, STOPPED = range(4)
SIDE_NAMES = {ORIG: "orig", RESP: "resp"}


def find_alg(client: list[str], server: list[str]) -> str:
    """RFC 4253 7.1: the first algorithm of the client's list the server has."""
    offered = set(server)
    for name in client:
        if name in offered:
            return name
    return NEGOTIATION_FAILED


def find_bidirectional_alg(client: dict, server: dict, kind: str) -> str:
    """Zeek's find_bidirectional_alg: one name, or both directions when they differ."""
    to_server = find_alg(client[kind + "_client_to_server"], server[kind + "_client_to_server"])
    to_client = find_alg(client[kind + "_server_to_client"], server[kind + "_server_to_client"])
    if to_server == to_client:
        return to_server
    return "To server: %s, to client: %s" % (to_server, to_client)


def host_key_message(kex_alg: str) -> int:
    """The server message number that carries the host key (0: none parsed)."""
    if kex_alg in HOST_KEY_MESSAGE_EXACT:
        return HOST_KEY_MESSAGE_EXACT[kex_alg]
    for prefix, msg in HOST_KEY_MESSAGE_PREFIX:
        if kex_alg.startswith(prefix):
            return msg
    return 0


def fingerprints(blob: bytes) -> tuple[str, str]:
    """(SHA256 as `ssh-keygen -l` prints it, MD5 as colon-separated hex)."""
    sha = base64.b64encode(_hashlib().sha256(blob).digest()).decode().rstrip("=")
    md5 = _hashlib().md5(blob).hexdigest()
    return "SHA256:" + sha, ":".join(md5[i:i + 2] for i in range(0, 32, 2))


def direction(orig_h: str, resp_h: str) -> str | None:
    """Zeek's SSH::set_session: OUTBOUND/INBOUND when exactly one end is local
    (Zeek's default private address space, as conn.log's local_orig)."""
    orig, resp = private_address(orig_h), private_address(resp_h)
    if orig == resp:
        return None
    return "OUTBOUND" if orig else "INBOUND"


def major_version(banner: str) -> str:
    """'2', '1', '1.99' or '' of `SSH-2.0-...`."""
    if len(banner) <= 4:
        return ""
    if banner[4] == "1" and banner[6:8] == "99":
        return "1.99"
    return banner[4] if banner[4] in "12" else ""


def session_version(client: str, server: str) -> int | None:
    """Zeek's set_version (scripts/base/protocols/ssh/main.zeek): None when the
    banners give no common version."""
    c, s = major_version(client), major_version(server)
    if not c or not s:
        return None
    if c == "1.99" and s == "1.99":
        return 2
    if "2" in (c, s):
        return 2 if {c, s} <= {"2", "1.99"} else None
    return 1


class _Side:
    """What one direction has shown."""
    __slots__ = ("buf", "state", "lines", "banner", "kexinit", "segments")

    def __init__(self):
        self.buf = bytearray()
        self.state = BANNER
        self.lines = 0              # lines before the banner
        self.banner = ""
        self.kexinit: dict | None = None
        self.segments = 0           # encrypted segments seen


class Ssh(Analyser):
    """SSH banners, key exchange algorithms, host key and Zeek's auth guess."""
    name = "ssh"
    ports = {22}
    signatures = (Signature(ORIG, b"SSH-", nocase=True), Signature(RESP, b"SSH-", nocase=True))
    logs = {"ssh": SSH_LOG}
    options = {
        "messages": (False, "emit an ssh_message event (side, len) for every encrypted "
                            "segment, to the end of the connection (costs a wake-up per "
                            "segment; off: streams are released once ssh.log is known)"),
    }

    # -- main ------------------------------------------------------------------------

    def main(self):
        self.sides = {ORIG: _Side(), RESP: _Side()}
        self.row: dict | None = None           # set at the first banner
        self.logged = False
        self.host_key_msg = -1                 # unknown until both KEXINITs
        self.host_key_seen = False
        self.messages = bool(self.config.get("messages"))
        self.watching = True                   # the auth heuristic still runs
        # Zeek's ProcessEncrypted state.
        self.saw_encrypted_client_data = False
        self.service_accept_size = 0
        self.userauth_failure_size = 0
        self.skipped_banner = False
        try:
            self.read_both_sides()
        finally:
            self.write_row()

    def read_both_sides(self) -> None:
        def feed_chunk(side: int, data: bytes) -> bool:
            self.feed(side, data)
            return self.nothing_to_learn()
        while True:
            try:
                # Each chunk of either side to feed() as it comes (the engine
                # calls it: no greenlet switch per chunk) until there is
                # nothing more to learn.
                self.read_any_into(feed_chunk, READ_CHUNK)
            except Gap as gap:
                # As Zeek after a content gap: what came before it is parsed,
                # nothing after.
                if gap.data:
                    self.feed(gap.side, gap.data)
                self.weird("SSH_content_gap", side=SIDE_NAMES[gap.side], size=gap.size)
                self.stop()
                return
            except StreamEnd as end:
                if end.data:
                    self.feed(end.side, end.data)
                return
            self.stop()
            return

    def nothing_to_learn(self) -> bool:
        """The row is final and no events are asked for: both sides are past
        the key exchange and the authentication guess is over."""
        return (not self.watching and not self.messages
                and all(s.state >= ENCRYPTED for s in self.sides.values()))

    def stop(self) -> None:
        """Nothing more to learn: write the row, free the streams (counting goes on)."""
        self.write_row()
        self.release()

    # -- one side's bytes -----------------------------------------------------------------

    def feed(self, side: int, data: bytes) -> None:
        s = self.sides[side]
        if s.state == ENCRYPTED:
            self.encrypted_segment(side, s, len(data))
            return
        if s.state == STOPPED:
            return
        s.buf += data
        if s.state == BANNER:
            self.banner_lines(side, s)
        if s.state == KEX:
            self.kex_packets(side, s)
            if s.state == ENCRYPTED and s.buf:
                # The rest of the segment that carried NEWKEYS is encrypted.
                size = len(s.buf)
                s.buf.clear()
                self.encrypted_segment(side, s, size)

    def banner_lines(self, side: int, s: _Side) -> None:
        buf = s.buf
        while s.state == BANNER:
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) > MAX_LINE:
                    self.not_ssh(side, "banner line longer than %d bytes" % MAX_LINE, buf)
                return
            line = bytes(buf[:nl + 1])
            del buf[:nl + 1]
            if line.startswith(b"SSH-"):
                self.got_banner(side, s, line.rstrip(b"\r\n").decode("utf-8", "replace"))
            elif side == ORIG:
                self.not_ssh(side, "client did not start with an SSH- banner", line)
            else:
                s.lines += 1
                if s.lines > MAX_PRE_BANNER_LINES or b"\0" in line:
                    self.not_ssh(side, "no SSH- banner from the server", line)

    def not_ssh(self, side: int, reason: str, data) -> None:
        self.sides[side].state = STOPPED
        if not self.confirmed:
            self.violation(reason, bytes(data[:100]))
        self.weird("SSH_bad_banner", side=SIDE_NAMES[side], reason=reason)

    def got_banner(self, side: int, s: _Side, banner: str) -> None:
        s.banner = banner
        s.state = KEX
        if self.row is None:
            self.row = {"ts": self.ts, "uid": self.uid, "id.orig_h": self.id.orig_h,
                        "id.orig_p": self.id.orig_p, "id.resp_h": self.id.resp_h,
                        "id.resp_p": self.id.resp_p, "auth_attempts": 0,
                        "direction": direction(self.id.orig_h, self.id.resp_h)}
        self.row["client" if side == ORIG else "server"] = banner
        self.emit("ssh_client_version" if side == ORIG else "ssh_server_version",
                  version=banner, pre_banner_lines=s.lines)
        client, server = self.sides[ORIG].banner, self.sides[RESP].banner
        if client and server:
            version = session_version(client, server)
            self.row["version"] = version
            if version is None:
                self.weird("SSH_version_mismatch", detail="%s vs %s" % (server, client))
            if version != 2:
                # No authentication guess but for SSH 2 (Zeek's rule).
                self.watching = False
            if version is None:
                for other in self.sides.values():
                    other.state = STOPPED

    def kex_packets(self, side: int, s: _Side) -> None:
        """Every complete binary packet in the buffer, until NEWKEYS."""
        if not (self.sides[ORIG].banner and self.sides[RESP].banner):
            return                          # the version decides the framing: wait
        if self.row.get("version") == 1:
            self.ssh1_packets(side, s)
            return
        buf = s.buf
        while s.state == KEX and len(buf) >= PACKET_HEADER.size:
            length, padding = PACKET_HEADER.unpack_from(buf)
            if length > MAX_PACKET_LENGTH:
                self.bad_packet(side, "SSH_max_packet_length_exceeded", length)
                return
            if length < MIN_PACKET_LENGTH or padding + 1 >= length:
                self.bad_packet(side, "SSH_bad_packet_length", length, padding=padding)
                return
            if len(buf) < 4 + length:
                return
            payload = bytes(buf[PACKET_HEADER.size:4 + length - padding])
            del buf[:4 + length]
            self.kex_message(side, s, payload)

    def ssh1_packets(self, side: int, s: _Side) -> None:
        """SSH 1 (draft-ylonen-ssh-protocol-00 4): uint32 length, 8 - length % 8
        bytes of padding, type, data, CRC.  The server's PUBLIC_KEY and the
        client's SESSION_KEY end a side's clear text; SESSION_KEY confirms
        the protocol (as Zeek confirms it)."""
        buf = s.buf
        while s.state == KEX and len(buf) >= UINT32.size:
            length, = UINT32.unpack_from(buf)
            if length > MAX_PACKET_LENGTH:
                self.bad_packet(side, "SSH_max_packet_length_exceeded", length)
                return
            if length < SSH1_MIN_PACKET_LENGTH:
                self.bad_packet(side, "SSH_bad_packet_length", length)
                return
            total = 4 + (8 - length % 8) + length
            if len(buf) < total:
                return
            msg = buf[4 + 8 - length % 8]
            del buf[:total]
            if (side, msg) in SSH1_LAST_CLEAR_MESSAGE:
                s.state = ENCRYPTED
                if msg == SSH1_CMSG_SESSION_KEY:
                    self.confirm()

    def bad_packet(self, side: int, name: str, length: int, **extra) -> None:
        """A packet length no SSH implementation sends: the framing is lost."""
        self.sides[side].state = STOPPED
        self.sides[side].buf.clear()
        self.weird(name, side=SIDE_NAMES[side], length=length, **extra)
        self.watching = False
        if not self.confirmed:
            self.violation("%s (%d)" % (name, length))

    def kex_message(self, side: int, s: _Side, payload: bytes) -> None:
        msg = payload[0]
        if msg == MSG_KEXINIT:
            if s.kexinit is None:
                s.kexinit = self.parse_kexinit(side, payload)
                if s.kexinit is not None:
                    self.emit("ssh_capabilities", is_server=side == RESP,
                              **{k: ",".join(v) for k, v in s.kexinit.items()})
                    self.negotiate()
        elif msg == MSG_NEWKEYS:
            s.state = ENCRYPTED
            self.confirm()
        elif (side == RESP and msg == self.host_key_msg and not self.host_key_seen):
            self.host_key_seen = True
            blob = self.ssh_string(payload, 1)
            if blob is not None:
                sha256, md5 = fingerprints(blob[0])
                self.row["host_key_fingerprint"] = sha256
                self.row["host_key"] = md5
                self.emit("ssh_server_host_key", fingerprint=sha256, md5=md5)

    def ssh_string(self, payload: bytes, offset: int) -> tuple[bytes, int] | None:
        """(value, next offset) of an RFC 4251 string, or None (a weird) when cut."""
        if offset + 4 > len(payload):
            self.weird("SSH_truncated_string")
            return None
        length, = UINT32.unpack_from(payload, offset)
        if length > MAX_STRING_LENGTH:
            self.weird("SSH_max_string_length_exceeded", length=length)
            return None
        end = offset + 4 + length
        if end > len(payload):
            self.weird("SSH_truncated_string", length=length)
            return None
        return payload[offset + 4:end], end

    def parse_kexinit(self, side: int, payload: bytes) -> dict | None:
        lists = {}
        offset = 1 + COOKIE_LENGTH
        for name in KEXINIT_LISTS:
            got = self.ssh_string(payload, offset)
            if got is None:
                return None
            value, offset = got
            names = value.decode("ascii", "replace").split(",") if value else []
            if len(names) > MAX_KEXINIT_ALGORITHMS:
                kind = name.split("_")[0] if not name.startswith("server") else "hostkey"
                self.weird("SSH_max_kexinit_%s_algorithms_exceeded" % kind,
                           count=len(names))
                names = names[:MAX_KEXINIT_ALGORITHMS]
            lists[name] = names
        return lists

    def negotiate(self) -> None:
        client, server = self.sides[ORIG].kexinit, self.sides[RESP].kexinit
        if client is None or server is None:
            return
        row = self.row
        row["cipher_alg"] = find_bidirectional_alg(client, server, "encryption_algorithms")
        row["mac_alg"] = find_bidirectional_alg(client, server, "mac_algorithms")
        row["compression_alg"] = find_bidirectional_alg(client, server,
                                                        "compression_algorithms")
        row["kex_alg"] = find_alg(client["kex_algorithms"], server["kex_algorithms"])
        row["host_key_alg"] = find_alg(client["server_host_key_algorithms"],
                                       server["server_host_key_algorithms"])
        self.host_key_msg = host_key_message(row["kex_alg"])
        if not self.host_key_msg and row["kex_alg"] != NEGOTIATION_FAILED \
                and row["kex_alg"] not in HOST_KEY_MESSAGE_EXACT:
            self.weird("ssh_unknown_kex_algorithm", kex_alg=row["kex_alg"])
        if row["compression_alg"] in COMPRESSION_ALGORITHMS:
            self.watching = False           # Zeek cannot tell auth under compression

    # -- encrypted ---------------------------------------------------------------------------

    def encrypted_segment(self, side: int, s: _Side, size: int) -> None:
        s.segments += 1
        if self.messages:
            self.emit("ssh_message", side=SIDE_NAMES[side], len=size)
        if self.watching:
            if s.segments > MAX_WATCHED_SEGMENTS:
                self.watching = False
            else:
                self.auth_heuristic(side, size)

    def auth_heuristic(self, side: int, size: int) -> None:
        """Zeek's ProcessEncrypted (see the module doc), segment by segment."""
        if side == ORIG:
            self.saw_encrypted_client_data = True
            return
        if not self.saw_encrypted_client_data:
            return
        if not self.service_accept_size:
            self.service_accept_size = size         # SERVICE_ACCEPT
            return
        delta = size - self.service_accept_size
        if not self.userauth_failure_size:
            if delta == SUCCESS_DELTA:              # method "none" accepted at once
                self.auth_attempted(True)
            elif not self.skipped_banner and delta > BANNER_SKIP:
                self.skipped_banner = True          # a USERAUTH_BANNER, once
            else:
                self.userauth_failure_size = size   # the first USERAUTH_FAILURE
            return
        if size == self.userauth_failure_size:
            self.auth_attempted(False)
        elif delta == SUCCESS_DELTA:
            self.auth_attempted(True)

    def auth_attempted(self, success: bool) -> None:
        """Zeek's ssh_auth_attempted handlers in base/protocols/ssh/main.zeek."""
        row = self.row
        row["auth_success"] = success
        row["auth_attempts"] += 1
        self.emit("ssh_auth_attempted", authenticated=success,
                  attempts=row["auth_attempts"])
        if success:
            self.watching = False           # Zeek's disable_analyzer_after_detection
            self.write_row()

    # -- the row --------------------------------------------------------------------------------

    def write_row(self) -> None:
        if self.logged or self.row is None:
            return
        self.logged = True
        self.log("ssh", self.row)
        if "auth_success" in self.row:
            self.emit("ssh_auth_result", result=self.row["auth_success"],
                      auth_attempts=self.row["auth_attempts"])
