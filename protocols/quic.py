"""QUIC (RFC 9000, RFC 9369): Initial packets decrypted, the TLS hellos they
carry, quic.log and ssl.log.

Role in the data flow: flows -> datagrams -> **analysers (protocols.quic)** ->
sinks (`quic.log`, `ssl.log`).

QUIC encrypts everything, but its Initial packets are protected with keys
anyone can derive from the client's first Destination Connection ID (RFC
9001 §5.2): that is how Zeek's QUIC analyser sees the TLS ClientHello and
ServerHello, and how this one does.  Theory of operation:

1. Each datagram is cut into its packets (RFC 9000 §12.2: long-header packets
   carry their Length, so several may be coalesced; a short-header packet
   runs to the end of the datagram).  A packet whose fixed bit is clear ends
   the datagram (Zeek counts it as discarded) -- unless the client offered
   grease_quic_bit (RFC 9287): then the server may clear that bit in any
   packet, its first Initial included, and a packet that parses is read.
2. The client's first Initial names the Destination Connection ID from which
   both sides' Initial secrets come (HKDF-Extract with the version's salt,
   HKDF-Expand-Label "client in" / "server in", then "quic key", "quic iv",
   "quic hp"; QUIC v2 has its own salt and "quicv2 ..." labels and renumbers
   the long packet types).  A Retry from the server makes the client's next
   Initial name a new one: the keys and the CRYPTO streams start over.
3. An Initial is unprotected (AES-ECB mask over a sample of the ciphertext
   hides the low bits of the first byte and the packet number) and decrypted
   (AES-128-GCM, the header as associated data).  Its frames are parsed by
   their length rules; CRYPTO frames are put back in offset order until the
   side's first TLS handshake message is whole: the ClientHello (client) or
   ServerHello (server), parsed by protocols.tls's plain functions.
4. Like Zeek, only each side's first handshake message is read: the rest of
   the handshake is under Handshake keys nobody outside has.  Once both
   hellos are in (or MAX_HANDSHAKE_DATAGRAMS datagrams went by without
   them), the rows are written and main() returns: the flow's remaining
   datagrams are only counted, in compiled code (option `history_datagrams`
   reads the headers of some more, for quic.log's history).

quic.log follows Zeek's scripts/base/protocols/quic/main.zeek: one row per
QUIC connection (a Retry, a CONNECTION_CLOSE in an Initial or an unknown
version ends a row and a later packet starts the next one), the history
letters of the packets seen (upper case: client).  Because analysis stops at
the end of the first server flight, `history` holds the letters up to there
(Zeek's goes on with the Handshake and short-header packets after it, as
this one does with `history_datagrams`).
ssl.log is the TLS analyser's log (the schema is imported from
protocols.tls): one row per connection, as Zeek's SSL analyser writes for
the hellos its QUIC analyser hands it; conn.log's service is "quic,ssl".

Bad input is a weird (truncated or malformed packets, frames or hellos,
decryption failures once confirmed); before the first Initial is decrypted,
bytes that are not QUIC are a violation.
"""
from __future__ import annotations

import struct
from collections import namedtuple


from analyser import (ORIG, RESP, Analyser, Field, Signature, StreamEnd, conn_id_fields,
                      deferred_import, deferred_module)
from protocols.tls import (CLIENT_HELLO, EXT_PRE_SHARED_KEY, SERVER_HELLO, SSL_LOG, TlsError,
                           ja3, ja3s, ja4, parse_client_hello, parse_server_hello,
                           version_name)
from protocols.tls_names import CIPHER_SUITES, NAMED_GROUPS, name_of

# -- versions (RFC 9000, RFC 9369, the drafts Zeek decrypts) -------------------------------

VERSION_NEGOTIATION = 0x00000000
VERSION_1 = 0x00000001
VERSION_2 = 0x6B3343CF

SALT_V1 = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")        # RFC 9001 §5.2
SALT_V2 = bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9")        # RFC 9369 §3.3.1
SALT_DRAFT_22 = bytes.fromhex("7fbcdb0e7c66bbe9193a96cd21519ebd7a02644a")
SALT_DRAFT_23 = bytes.fromhex("c3eef712c72ebb5a11a7d2432bb46365bef9f502")  # drafts 23-28
SALT_DRAFT_29 = bytes.fromhex("afbfec289993d24c9e9786f19c6111e04390a899")  # drafts 29-32

# Long packet types by the two type bits of the first byte.
TYPES_V1 = ("initial", "0rtt", "handshake", "retry")                  # RFC 9000 §17.2
TYPES_V2 = ("retry", "initial", "0rtt", "handshake")                  # RFC 9369 §3.2

# Retry integrity (RFC 9001 §5.8, RFC 9369 §3.3.3): AES-128-GCM key and nonce.
RETRY_V1 = (bytes.fromhex("be0c690b9f66575a1d766b54e368c84e"),
            bytes.fromhex("461599d35d632bf2239825bb"))
RETRY_V2 = (bytes.fromhex("8fb4b01b56ac48e260fbcbcead7ccc92"),
            bytes.fromhex("d86969bc2d7c6d9990efb04a"))


# (collections.namedtuple, not typing.NamedTuple: start-up does not import typing.)
class Version(namedtuple("Version", ("salt", "label", "types", "retry"))):
    """What a QUIC version changes in Initial protection: the salt, the label
    prefix of "key", "iv", "hp", the four packet type names, and Retry's
    integrity (key, nonce), None when not checked."""
    __slots__ = ()


V1 = Version(SALT_V1, b"quic ", TYPES_V1, RETRY_V1)
VERSIONS: dict[int, Version] = {VERSION_1: V1,
                                VERSION_2: Version(SALT_V2, b"quicv2 ", TYPES_V2, RETRY_V2)}
for _draft in range(22, 35):           # draft-ietf-quic-tls-22 .. -34, as Zeek takes them
    VERSIONS[0xFF000000 + _draft] = V1._replace(
        salt=SALT_DRAFT_22 if _draft == 22 else SALT_DRAFT_23 if _draft <= 28
        else SALT_DRAFT_29 if _draft <= 32 else SALT_V1, retry=None)
for _mvfst in (0xFACEB001, 0xFACEB002, 0xFACEB00E, 0xFACEB011, 0xFACEB012, 0xFACEB013):
    VERSIONS[_mvfst] = V1._replace(                # Facebook's mvfst (Zeek's table)
        salt=SALT_DRAFT_22 if _mvfst == 0xFACEB001 else SALT_DRAFT_23, retry=None)

# quic.log's `version` (Zeek's QUIC::version_strings; its 0xff00001f is "draft-30").
VERSION_NAMES = {VERSION_1: "1", VERSION_2: "quicv2"}
VERSION_NAMES.update({0xFF000000 + d: "draft-%d" % d for d in range(22, 35)})
VERSION_NAMES[0xFF00001F] = "draft-30"
VERSION_NAMES.update({v: "mvfst (%x)" % v for v in VERSIONS if v >> 16 == 0xFACE})


def version_string(version: int) -> str:
    return VERSION_NAMES.get(version, "unknown-%x" % version)


# -- limits ---------------------------------------------------------------------------

MAX_CID = 20                       # RFC 9000 §17.2: connection IDs of version 1
# Zeek requires an Initial's Length to cover a 4-byte packet number and the
# 16-byte header protection sample (RFC 9001 §5.4.2).
MIN_INITIAL_LENGTH = 20
SAMPLE = 16                        # header protection sample (RFC 9001 §5.4.2)
TAG = 16                           # AEAD tag (AES-128-GCM)
# A TLS handshake message carried in CRYPTO frames: at most 2^14 + 256 bytes
# (RFC 8446 §5.2, Zeek's check).  Zeek also stops at 2000 bytes while the
# message's length is unknown; here fragments are kept up to MAX_HELLO
# then, since clients send a large ClientHello (post-quantum key shares) in
# fragments out of order on purpose (Chrome's "chaos protection").
MAX_HELLO = (1 << 14) + 256
MAX_CRYPTO_FRAGMENTS = 64          # out-of-order CRYPTO frames kept per side
MAX_HISTORY = 100                  # Zeek's QUIC::max_history_length
MAX_DISCARDED_EVENTS = 100         # Zeek's QUIC::max_discarded_packet_events
SHORT_THRESHOLD_BASE = 2           # 'O' at 1, 2, 4, 8... short packets (Zeek)
# Datagrams read before giving up on seeing both hellos (Zeek's analyzer reads
# on; this one stops so that a handshake it cannot follow costs no more Python).
MAX_HANDSHAKE_DATAGRAMS = 100
ZEEK_QUIC_PORTS = frozenset({443, 853, 784})   # HTTP/3, DNS over QUIC (RFC 9250), early DoQ

# -- wire helpers -----------------------------------------------------------------------------

U32 = struct.Struct("!I")


class Malformed(ValueError):
    """A packet or frame that does not parse."""


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """A variable-length integer (RFC 9000 §16) at `pos`: (value, next pos)."""
    if pos >= len(data):
        raise Malformed("truncated variable-length integer")
    first = data[pos]
    size = 1 << (first >> 6)
    end = pos + size
    if end > len(data):
        raise Malformed("truncated variable-length integer")
    value = first & 0x3F
    for i in range(pos + 1, end):
        value = (value << 8) | data[i]
    return value, end


# -- Initial keys (RFC 9001 §5) ---------------------------------------------------------------

# hmac and hashlib load OpenSSL (3 ms of every start-up): imported with the
# first Initial's keys.
_hmac = deferred_module("hmac")
_hashlib = deferred_module("hashlib")


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return _hmac().new(salt, ikm, _hashlib().sha256).digest()


def hkdf_expand_label(secret: bytes, label: bytes, length: int) -> bytes:
    """TLS 1.3's HKDF-Expand-Label (RFC 8446 §7.1) with an empty context."""
    full = b"tls13 " + label
    info = struct.pack("!HB", length, len(full)) + full + b"\x00"
    out, block, counter = b"", b"", 1
    new, sha256 = _hmac().new, _hashlib().sha256
    while len(out) < length:
        block = new(secret, block + info + bytes([counter]), sha256).digest()
        out += block
        counter += 1
    return out[:length]


class Crypto:
    """cryptography's AES-GCM and AES-ECB, imported when the first Initial
    packet is decrypted rather than at start-up: the import costs every run
    about 6 ms, and most runs see no QUIC."""
    loaded = False

    @classmethod
    def load(cls) -> type:
        if not cls.loaded:
            from cryptography.exceptions import InvalidTag
            from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
            cls.InvalidTag, cls.AESGCM = InvalidTag, AESGCM
            cls.Cipher, cls.algorithms, cls.modes = Cipher, algorithms, modes
            cls.loaded = True
        return cls


@deferred_import
def _load_crypto() -> None:
    """Before a live capture gives up root's rights (-Z): afterwards the
    library may no longer be readable."""
    Crypto.load()


class PacketKeys:
    """One side's Initial packet protection: AEAD key, IV and header key."""

    def __init__(self, secret: bytes, label: bytes = b"quic "):
        self.secret = secret
        self.key = hkdf_expand_label(secret, label + b"key", 16)
        self.iv = hkdf_expand_label(secret, label + b"iv", 12)
        self.hp = hkdf_expand_label(secret, label + b"hp", 16)
        crypto = Crypto.load()
        self.aead = crypto.AESGCM(self.key)
        self.mask_cipher = crypto.Cipher(crypto.algorithms.AES(self.hp),
                                         crypto.modes.ECB()).encryptor()

    def mask(self, sample: bytes) -> bytes:
        """The header protection mask (RFC 9001 §5.4.3)."""
        return self.mask_cipher.update(sample)

    def nonce(self, packet_number: int) -> bytes:
        return (int.from_bytes(self.iv, "big") ^ packet_number).to_bytes(12, "big")


def initial_keys(version: int, dcid: bytes) -> tuple[PacketKeys, PacketKeys]:
    """(client keys, server keys) for the Initial packets of a connection
    whose client chose `dcid` as its first Destination Connection ID."""
    params = VERSIONS[version]
    initial_secret = hkdf_extract(params.salt, dcid)
    return (PacketKeys(hkdf_expand_label(initial_secret, b"client in", 32), params.label),
            PacketKeys(hkdf_expand_label(initial_secret, b"server in", 32), params.label))


def decode_packet_number(truncated: int, bits: int, largest: int) -> int:
    """The full packet number from its truncated encoding (RFC 9000 §A.3)."""
    expected = largest + 1
    window = 1 << bits
    half, mask = window >> 1, window - 1
    candidate = (expected & ~mask) | truncated
    if candidate <= expected - half and candidate < (1 << 62) - window:
        return candidate + window
    if candidate > expected + half and candidate >= window:
        return candidate - window
    return candidate


# -- packets ----------------------------------------------------------------------------------

class LongHeader(namedtuple("LongHeader", ("kind", "version", "dcid", "scid", "start",
                                           "pn_offset", "end", "token"))):
    """A long-header packet (RFC 9000 §17.2) located in its datagram: `kind`
    initial, 0rtt, handshake, retry ("" for an unknown version); `start` the
    offset of its first byte in the datagram, `pn_offset` that of the packet
    number (Initial, 0-RTT, Handshake), `end` the offset after it; `token`
    of Initial and Retry."""
    __slots__ = ()


def parse_long_header(data: bytes, pos: int) -> LongHeader:
    """The long header starting at `pos`.  A Version Negotiation packet, a
    Retry or a packet of a version not in VERSIONS runs to the end of the
    datagram (kind "" for the last two)."""
    if len(data) - pos < 7:
        raise Malformed("truncated long header")
    first = data[pos]
    version = U32.unpack_from(data, pos + 1)[0]
    p = pos + 5
    dcid_len = data[p]
    dcid = data[p + 1:p + 1 + dcid_len]
    p += 1 + dcid_len
    if p >= len(data) or len(dcid) != dcid_len:
        raise Malformed("truncated destination connection ID")
    scid_len = data[p]
    scid = data[p + 1:p + 1 + scid_len]
    p += 1 + scid_len
    if len(scid) != scid_len:
        raise Malformed("truncated source connection ID")
    params = VERSIONS.get(version)
    if params is None:
        kind = "negotiation" if version == VERSION_NEGOTIATION else ""
        return LongHeader(kind, version, dcid, scid, pos, p, len(data), b"")
    if dcid_len > MAX_CID or scid_len > MAX_CID:
        raise Malformed("connection ID longer than %d bytes" % MAX_CID)
    kind = params.types[(first >> 4) & 0x03]
    if kind == "retry":
        if len(data) - p < TAG:
            raise Malformed("Retry shorter than its integrity tag")
        return LongHeader(kind, version, dcid, scid, pos, p, len(data), data[p:len(data) - TAG])
    token = b""
    if kind == "initial":
        token_len, p = read_varint(data, p)
        token = data[p:p + token_len]
        p += token_len
        if len(token) != token_len:
            raise Malformed("truncated token")
    length, p = read_varint(data, p)
    if kind == "initial" and length < MIN_INITIAL_LENGTH:
        raise Malformed("Initial length %d below %d" % (length, MIN_INITIAL_LENGTH))
    if p + length > len(data):
        raise Malformed("packet length %d beyond the datagram's %d bytes"
                        % (length, len(data) - p))
    return LongHeader(kind, version, dcid, scid, pos, p, p + length, token)


def unprotect(data: bytes, header: LongHeader, keys: PacketKeys,
              largest_pn: int) -> tuple[int, bytes]:
    """Remove header protection and decrypt one Initial packet (RFC 9001
    §5.3-5.4): (packet number, plaintext payload).  Raises InvalidTag."""
    pn_offset = header.pn_offset
    mask = keys.mask(data[pn_offset + 4:pn_offset + 4 + SAMPLE])
    first = data[header.start] ^ (mask[0] & 0x0F)
    pn_len = (first & 0x03) + 1
    truncated = 0
    pn_bytes = bytearray(pn_len)
    for i in range(pn_len):
        pn_bytes[i] = data[pn_offset + i] ^ mask[1 + i]
        truncated = (truncated << 8) | pn_bytes[i]
    aad = bytes([first]) + data[header.start + 1:pn_offset] + bytes(pn_bytes)
    number = decode_packet_number(truncated, 8 * pn_len, largest_pn)
    payload = keys.aead.decrypt(keys.nonce(number), data[pn_offset + pn_len:header.end], aad)
    return number, payload


def retry_integrity_ok(data: bytes, header: LongHeader, original_dcid: bytes) -> bool | None:
    """Check a Retry's integrity tag against the client's original DCID
    (RFC 9001 §5.8); None when the version's key is not known."""
    params = VERSIONS[header.version].retry
    if params is None:
        return None
    key, nonce = params
    pseudo = bytes([len(original_dcid)]) + original_dcid + data[header.start:header.end - TAG]
    crypto = Crypto.load()
    try:
        crypto.AESGCM(key).decrypt(nonce, data[header.end - TAG:header.end], pseudo)
    except crypto.InvalidTag:
        return False
    return True


# -- frames (RFC 9000 §19) --------------------------------------------------------------------

PADDING, PING, ACK, ACK_ECN, CRYPTO = 0x00, 0x01, 0x02, 0x03, 0x06
CONNECTION_CLOSE, CONNECTION_CLOSE_APP = 0x1C, 0x1D
# Frames an Initial packet may carry (RFC 9000 §12.4, Table 3).
INITIAL_FRAMES = frozenset({PADDING, PING, ACK, ACK_ECN, CRYPTO, CONNECTION_CLOSE})
# Frames that are only variable-length integers: type -> how many.
VARINT_FRAMES = {0x04: 3, 0x05: 2, 0x10: 1, 0x11: 2, 0x12: 1, 0x13: 1, 0x14: 1, 0x15: 2,
                 0x16: 1, 0x17: 1, 0x19: 1}
FIXED_FRAMES = {0x1A: 8, 0x1B: 8, 0x1E: 0}     # PATH_CHALLENGE/RESPONSE, HANDSHAKE_DONE
STREAM_FIRST, STREAM_LAST = 0x08, 0x0F
NEW_TOKEN, NEW_CONNECTION_ID = 0x07, 0x18
DATAGRAM, DATAGRAM_LEN = 0x30, 0x31            # RFC 9221


def parse_frames(payload: bytes) -> tuple[list[tuple], list[int]]:
    """The frames of a decrypted packet: ([("crypto", offset, data) or
    ("close", error_code, reason)], the types seen that an Initial may not
    carry).  Other frames are skipped by their length rules; raises
    Malformed when one does not fit (what came before it is returned in
    the exception's `frames`)."""
    out: list[tuple] = []
    odd: list[int] = []
    pos, n = 0, len(payload)
    try:
        while pos < n:
            kind, pos = read_varint(payload, pos)
            if kind == PADDING:
                while pos < n and payload[pos] == 0:
                    pos += 1
                continue
            if kind not in INITIAL_FRAMES:
                odd.append(kind)
            if kind == PING:
                continue
            if kind in (ACK, ACK_ECN):
                _, pos = read_varint(payload, pos)              # largest acknowledged
                _, pos = read_varint(payload, pos)              # delay
                ranges, pos = read_varint(payload, pos)
                _, pos = read_varint(payload, pos)              # first range
                for _ in range(2 * ranges + (3 if kind == ACK_ECN else 0)):
                    _, pos = read_varint(payload, pos)
            elif kind == CRYPTO:
                offset, pos = read_varint(payload, pos)
                length, pos = read_varint(payload, pos)
                if pos + length > n:
                    raise Malformed("CRYPTO frame of %d bytes beyond the packet" % length)
                out.append(("crypto", offset, payload[pos:pos + length]))
                pos += length
            elif kind in (CONNECTION_CLOSE, CONNECTION_CLOSE_APP):
                error, pos = read_varint(payload, pos)
                if kind == CONNECTION_CLOSE:
                    _, pos = read_varint(payload, pos)          # offending frame type
                length, pos = read_varint(payload, pos)
                if pos + length > n:
                    raise Malformed("CONNECTION_CLOSE reason beyond the packet")
                out.append(("close", error, payload[pos:pos + length]))
                pos += length
            elif kind in VARINT_FRAMES:
                for _ in range(VARINT_FRAMES[kind]):
                    _, pos = read_varint(payload, pos)
            elif kind in FIXED_FRAMES:
                pos += FIXED_FRAMES[kind]
            elif kind == NEW_TOKEN or kind == DATAGRAM_LEN:
                length, pos = read_varint(payload, pos)
                pos += length
            elif STREAM_FIRST <= kind <= STREAM_LAST:
                _, pos = read_varint(payload, pos)              # stream id
                if kind & 0x04:
                    _, pos = read_varint(payload, pos)          # offset
                if kind & 0x02:
                    length, pos = read_varint(payload, pos)
                    pos += length
                else:
                    pos = n
            elif kind == NEW_CONNECTION_ID:
                _, pos = read_varint(payload, pos)              # sequence number
                _, pos = read_varint(payload, pos)              # retire prior to
                if pos >= n:
                    raise Malformed("truncated NEW_CONNECTION_ID")
                pos += 1 + payload[pos] + 16                    # cid, reset token
            elif kind == DATAGRAM:
                pos = n
            else:
                raise Malformed("unknown frame type 0x%x" % kind)
            if pos > n:
                raise Malformed("frame 0x%x beyond the packet" % kind)
    except Malformed as exc:
        exc.frames, exc.odd = out, odd
        raise
    return out, odd


# The ClientHello's quic_transport_parameters extension (RFC 9001 §8.2; the
# drafts used 0xffa5) and the parameter that lets the server clear the
# fixed bit (RFC 9287 §3).
TRANSPORT_PARAMETERS_EXTENSIONS = (0x39, 0xFFA5)
GREASE_QUIC_BIT = 0x2AB2


def transport_parameters(data: bytes) -> dict[int, bytes]:
    """QUIC transport parameters (RFC 9000 §18): id -> value."""
    params = {}
    pos = 0
    while pos < len(data):
        ident, pos = read_varint(data, pos)
        length, pos = read_varint(data, pos)
        if pos + length > len(data):
            raise Malformed("transport parameter 0x%x beyond the extension" % ident)
        params[ident] = data[pos:pos + length]
        pos += length
    return params


class CryptoStream:
    """One side's CRYPTO bytes in offset order, up to the end of its first
    TLS handshake message (the hello): `add()` returns the message once it
    is whole, then the stream is `done`."""

    def __init__(self):
        self.data = bytearray()
        self.pending: dict[int, bytes] = {}     # offset -> bytes, not yet contiguous
        self.needed: int | None = None          # length of the first message, header included
        self.done = False

    def add(self, offset: int, chunk: bytes) -> bytes | None:
        """Raises Malformed when the message is too large to be a hello."""
        if self.done:
            return None
        limit = self.needed if self.needed is not None else MAX_HELLO
        if offset + len(chunk) > limit and offset < limit:
            chunk = chunk[:limit - offset]              # what follows the hello: not kept
        if offset >= limit or not chunk:
            if self.needed is None:
                raise Malformed("CRYPTO data at offset %d beyond any hello" % offset)
            return None
        if offset > len(self.data):
            if len(self.pending) >= MAX_CRYPTO_FRAGMENTS:
                raise Malformed("more than %d CRYPTO fragments out of order"
                                % MAX_CRYPTO_FRAGMENTS)
            self.pending[offset] = chunk
            return None
        self.data += chunk[len(self.data) - offset:]
        while self.pending:                              # fragments now contiguous
            ready = [o for o in self.pending if o <= len(self.data)]
            if not ready:
                break
            for o in ready:
                piece = self.pending.pop(o)
                if o + len(piece) > len(self.data):
                    self.data += piece[len(self.data) - o:]
        if self.needed is None and len(self.data) >= 4:
            self.needed = 4 + int.from_bytes(self.data[1:4], "big")
            if self.needed > MAX_HELLO:
                self.done = True
                raise Malformed("handshake message of %d bytes (at most %d)"
                                % (self.needed, MAX_HELLO))
        if self.needed is not None and len(self.data) >= self.needed:
            self.done = True
            self.pending.clear()
            return bytes(self.data[:self.needed])
        return None


# -- quic.log (Zeek's scripts/base/protocols/quic/main.zeek) ----------------------------------

QUIC_LOG = (
    Field("ts", "time", "time of the first packet of this QUIC connection"),
    Field("uid", "string", "the UDP connection"),
    *conn_id_fields("client", "server"),
    Field("version", "string", "QUIC version of the first packet: 1, quicv2, draft-29, "
                               "unknown-<hex>"),
    Field("client_initial_dcid", "string", "the client's first Destination Connection ID "
                                           "(hex): the Initial keys' seed"),
    Field("client_scid", "string", "the client's Source Connection ID (hex)"),
    Field("server_scid", "string", "the server's Source Connection ID (hex)"),
    Field("server_name", "string", "SNI of the ClientHello"),
    Field("client_protocol", "string", "first ALPN protocol of the ClientHello"),
    Field("history", "string", "packets seen, upper case = client: I Initial, H Handshake, "
                               "Z 0-RTT, R Retry, C CONNECTION_CLOSE, S TLS hello, "
                               "U unknown version, X discarded, O short header (at 1, 2, "
                               "4, ... packets)"),
)

HISTORY_LETTERS = {"initial": "I", "handshake": "H", "0rtt": "Z", "retry": "R"}


class ZeekQuicLog:
    """The quic.log record of the QUIC connection in progress and its
    history, as Zeek's script keeps them; `write(row)` logs one."""

    def __init__(self, analyser: "Quic"):
        self.analyser = analyser
        self.row: dict | None = None
        self.history: list[str] = []
        self.short_total = [0, 0]
        self.short_next = [1, 1]

    def session(self, side: int, header: LongHeader) -> None:
        """Zeek's set_session: a row at the first long-header packet."""
        if self.row is None:
            a = self.analyser
            cid = a.id
            self.row = {"ts": a.ts, "uid": a.uid, "id.orig_h": cid.orig_h,
                        "id.orig_p": cid.orig_p, "id.resp_h": cid.resp_h,
                        "id.resp_p": cid.resp_p, "version": version_string(header.version)}
            self.history = []
        if side == ORIG:
            if header.dcid and "client_initial_dcid" not in self.row:
                self.row["client_initial_dcid"] = header.dcid.hex()
            self.row["client_scid"] = header.scid.hex()
        else:
            self.row["server_scid"] = header.scid.hex()

    def add(self, side: int, letter: str) -> None:
        if self.row is None or len(self.history) >= MAX_HISTORY:
            return
        self.history.append(letter if side == ORIG else letter.lower())
        if len(self.history) == MAX_HISTORY:
            self.analyser.weird("QUIC_max_history_length_reached")

    def short_packet(self, side: int) -> None:
        """Zeek's short_packet_threshold_crossed: 'O' at the 1st, 2nd, 4th...
        short-header packet of a side."""
        self.short_total[side] += 1
        if self.short_total[side] == self.short_next[side]:
            self.short_next[side] *= SHORT_THRESHOLD_BASE
            if self.row is None:
                self.analyser.weird("QUIC_spurious_short_packet_threshold_crossed",
                                    threshold=self.short_total[side])
            else:
                self.add(side, "O")

    def flush(self) -> None:
        """Write the row (if any) and start afresh."""
        if self.row is not None:
            self.row["history"] = "".join(self.history)
            self.analyser.log("quic", self.row)
            self.row = None
            self.history = []


# -- the analyser -----------------------------------------------------------------------------

class Quic(Analyser):
    """One UDP flow carrying QUIC: its Initial packets, quic.log, ssl.log."""
    name = "quic"
    protocol = "udp"
    ports = ZEEK_QUIC_PORTS
    # Zeek's dpd.sig matches a long-header Initial's first byte (0xC0-0xCF for
    # v1, 0xD0-0xDF for v2) and the version; a pattern byte here is all or
    # nothing, so the first byte is any (`?`) and main() checks its bits.
    signatures = (Signature(ORIG, b"?\x00\x00\x00\x01", wildcard=True),
                  Signature(ORIG, b"?\x6b\x33\x43\xcf", wildcard=True))
    logs = {"quic": QUIC_LOG, "ssl": SSL_LOG}
    payload_fields = frozenset({"server_name"})
    options = {
        "history_datagrams": (0, "datagrams read after the TLS hellos, their packet headers "
                                 "only, so that quic.log's history goes on as Zeek's does "
                                 "(0: stop at the hellos)"),
    }

    def main(self):
        self.setup()
        try:
            for _ in range(MAX_HANDSHAKE_DATAGRAMS):
                side, data = self.read_datagram()
                self.datagram(side, data)
                if all(s.done for s in self.crypto):
                    break                       # both hellos in: nothing more to decrypt
            else:
                self.weird("QUIC_hellos_not_seen", datagrams=MAX_HANDSHAKE_DATAGRAMS)
            for _ in range(max(0, int(self.config.get("history_datagrams", 0)))):
                side, data = self.read_datagram()
                self.datagram(side, data)
        except StreamEnd:
            pass
        self.finish()

    def setup(self) -> None:
        self.quic_log = ZeekQuicLog(self)
        self.ssl_row: dict | None = None
        self.client_psk = False
        self.grease_quic_bit = False     # the client allows the fixed bit cleared
        self.datagrams = 0
        self.decrypted = 0
        self.discarded = 0
        self.reset_crypto()

    def reset_crypto(self) -> None:
        """Keys and CRYPTO streams start over (at first, and after a Retry)."""
        self.initial_dcid: bytes | None = None
        self.keys: dict[int, tuple[PacketKeys, PacketKeys]] = {}
        self.crypto = (CryptoStream(), CryptoStream())
        self.largest_pn = [-1, -1]

    def finish(self) -> None:
        self.quic_log.flush()
        if self.ssl_row is not None:
            self.log("ssl", self.ssl_row)
            self.ssl_row = None

    def give_up(self, reason: str, data: bytes) -> None:
        """Not QUIC after all: what Zeek would log so far, then a violation."""
        self.finish()
        self.violation(reason, data[:64])

    # -- packets ------------------------------------------------------------------------------

    def datagram(self, side: int, data: bytes) -> None:
        first_datagram = self.datagrams == 0
        self.datagrams += 1
        pos, n = 0, len(data)
        while pos < n:
            first = data[pos]
            if not first & 0x40 and not self.greased(data, pos):
                # Fixed bit clear (RFC 9000 §17.2): not a packet, as Zeek
                # counts it ("discarded"): padding, junk, or greasing we
                # cannot tell from them.
                if first_datagram and pos == 0:
                    self.give_up("not a QUIC packet: fixed bit clear", data)
                self.discarded += 1
                if self.decrypted and self.discarded <= MAX_DISCARDED_EVENTS:
                    self.quic_log.add(side, "X")
                return
            if not first & 0x80:              # short header: to the end of the datagram
                if first_datagram and not self.confirmed:
                    self.give_up("not a QUIC long header at the start", data)
                self.quic_log.short_packet(side)
                return
            pos = self.long_packet(side, data, pos)

    def greased(self, data: bytes, pos: int) -> bool:
        """A packet with the fixed bit clear is still QUIC once the client
        offered grease_quic_bit (RFC 9287) -- its peer then clears the bit at
        random, in its first Initial already -- when it is a short header
        starting a datagram (padding never does), or a long header of a
        known version whose lengths fit (Zeek discards them all)."""
        if not self.grease_quic_bit:
            return False
        if not data[pos] & 0x80:
            return pos == 0
        try:
            header = parse_long_header(data, pos)
        except Malformed:
            return False
        return header.version in VERSIONS

    def long_packet(self, side: int, data: bytes, pos: int) -> int:
        """One long-header packet; returns where the next one starts."""
        try:
            header = parse_long_header(data, pos)
        except Malformed as exc:
            if not self.confirmed:
                self.give_up("malformed QUIC long header: %s" % exc, data)
            self.weird("QUIC_malformed_packet", reason=str(exc))
            return len(data)
        qlog = self.quic_log
        if header.kind in ("", "negotiation"):
            # Zeek's unhandled_version: a row of its own, then a violation.
            qlog.session(side, header)
            qlog.add(side, "U")
            qlog.flush()
            if not self.confirmed:
                self.give_up("unhandled QUIC version 0x%x" % header.version, data)
            self.weird("QUIC_unhandled_version", version="%x" % header.version)
            return header.end
        if header.kind == "retry":
            self.retry(side, data, header)
            return header.end
        qlog.session(side, header)
        qlog.add(side, HISTORY_LETTERS[header.kind])
        if header.kind == "initial":
            self.initial(side, data, header)
        return header.end

    def retry(self, side: int, data: bytes, header: LongHeader) -> None:
        """A Retry ends the QUIC connection's row; the client's next Initial
        names new keys (RFC 9000 §17.2.5)."""
        qlog = self.quic_log
        if qlog.row is None:
            qlog.session(side, header)
        qlog.add(side, "R")
        qlog.flush()
        if side == ORIG:
            self.weird("QUIC_retry_from_client")
        elif self.initial_dcid is not None and \
                retry_integrity_ok(data, header, self.initial_dcid) is False:
            self.weird("QUIC_retry_integrity_tag_mismatch")
        self.reset_crypto()

    def initial(self, side: int, data: bytes, header: LongHeader) -> None:
        """Decrypt an Initial while its side's hello is incomplete (Zeek's
        can_decrypt), and read its frames."""
        stream = self.crypto[side]
        if stream.done:
            return
        if self.initial_dcid is None:
            if side != ORIG:
                return                        # the client's first Initial was not seen
            self.initial_dcid = header.dcid
        keys = self.keys.get(header.version)
        if keys is None:
            keys = self.keys[header.version] = initial_keys(header.version, self.initial_dcid)
        try:
            number, payload = unprotect(data, header, keys[side], self.largest_pn[side])
        except Crypto.load().InvalidTag:
            if not self.confirmed:
                self.give_up("QUIC Initial decryption failed", data[header.start:header.end])
            self.weird("QUIC_decryption_failed", side="orig" if side == ORIG else "resp")
            return
        self.largest_pn[side] = max(self.largest_pn[side], number)
        self.decrypted += 1
        self.confirm()
        try:
            frames, odd = parse_frames(payload)
        except Malformed as exc:
            frames, odd = exc.frames, exc.odd
            self.weird("QUIC_malformed_frame", reason=str(exc))
        if odd:
            self.weird("QUIC_frame_not_allowed_in_initial", frame_type="0x%x" % odd[0])
        for frame in frames:
            if frame[0] == "crypto":
                self.crypto_data(side, frame[1], frame[2])
            elif self.quic_log.row is not None:         # CONNECTION_CLOSE
                self.quic_log.add(side, "C")
                self.quic_log.flush()

    def crypto_data(self, side: int, offset: int, chunk: bytes) -> None:
        stream = self.crypto[side]
        try:
            message = stream.add(offset, chunk)
        except Malformed as exc:
            stream.done = True
            self.weird("QUIC_malformed_crypto", reason=str(exc))
            return
        if message is not None:
            self.hello(side, message)

    # -- the TLS hellos -----------------------------------------------------------------------

    def hello(self, side: int, message: bytes) -> None:
        """The side's first handshake message: ssl.log and quic.log fields."""
        kind = message[0]
        expected = CLIENT_HELLO if side == ORIG else SERVER_HELLO
        if kind != expected:
            self.weird("QUIC_unexpected_handshake_message", message_type=kind)
            return
        try:
            if side == ORIG:
                client = parse_client_hello(message[4:])
            else:
                server = parse_server_hello(message[4:])
        except (TlsError, IndexError, ValueError) as exc:
            self.weird("QUIC_malformed_hello", side="orig" if side == ORIG else "resp",
                       reason=str(exc))
            return
        self.add_service("ssl")
        row = self.ssl_row
        if row is None:
            cid = self.id
            row = self.ssl_row = {"ts": self.ts, "uid": self.uid, "id.orig_h": cid.orig_h,
                                  "id.orig_p": cid.orig_p, "id.resp_h": cid.resp_h,
                                  "id.resp_p": cid.resp_p, "resumed": False,
                                  "established": False, "ssl_history": ""}
        qlog = self.quic_log
        if side == ORIG:
            row["ssl_history"] += "C"
            if client.malformed_extensions:
                self.weird("SSL_malformed_extension",
                           extensions=",".join(map(str, client.malformed_extensions)))
            if client.server_names:
                row["server_name"] = client.server_names[0]
                if qlog.row is not None:
                    qlog.row["server_name"] = client.server_names[0]
            if client.alpn and qlog.row is not None:
                qlog.row["client_protocol"] = client.alpn[0].decode("utf-8", "backslashreplace")
                if len(client.alpn) > 1:
                    self.weird("QUIC_many_protocols",
                               protocols=",".join(p.decode("utf-8", "backslashreplace")
                                                  for p in client.alpn))
            self.client_psk = self.client_psk or EXT_PRE_SHARED_KEY in client.extension_types
            for kind, data in client.extensions:
                if kind in TRANSPORT_PARAMETERS_EXTENSIONS:
                    try:
                        params = transport_parameters(data)
                    except Malformed as exc:
                        self.weird("QUIC_malformed_transport_parameters", reason=str(exc))
                        continue
                    self.grease_quic_bit = GREASE_QUIC_BIT in params
            row["ja3"] = ja3(client)
            row["ja4"] = ja4(client, transport="q")
            qlog.add(ORIG, "S")
        else:
            row["ssl_history"] += "s"
            row["version"] = version_name(server.selected_version or server.version)
            row["cipher"] = name_of(CIPHER_SUITES, server.cipher)
            if server.key_share_group is not None:
                row["curve"] = name_of(NAMED_GROUPS, server.key_share_group)
            if server.alpn is not None:
                row["next_protocol"] = server.alpn.decode("utf-8", "backslashreplace")
            if EXT_PRE_SHARED_KEY in server.extension_types and self.client_psk:
                row["resumed"] = True
            row["ja3s"] = ja3s(server)
            qlog.add(RESP, "S")
