"""TLS (SSL 3.0 to TLS 1.3): the handshake in the clear, ssl.log, JA3/JA4.

Role in the data flow: flows -> streams -> **analysers (protocols.tls)** ->
sinks (`ssl.log`, events `tls_message` / `tls_exchange` on request).

Theory of operation:

1. During the handshake the engine hands each chunk of either side, as it
   comes, to `TlsCore.feed_side` (`read_any_into`: no greenlet switch per
   chunk); the records are cut out of a side's pending bytes there, each
   handled once it is whole, so both directions are handled in arrival
   order, as Zeek's SSL analyser sees them.  Until the bytes are confirmed
   TLS a chunk is at most what a candidate's recording keeps
   (`DETECTION_BUFFER`).  The rest of an encrypted record not yet read is
   `skip`ped in compiled code.  `TlsCore` (the record loop and the records
   in the clear) is an extension type in the build (tls.pxd).
2. Handshake messages are cut out of the handshake records of each side (a
   message may span records, a record may hold several).  ClientHello,
   ServerHello, Certificate and ServerKeyExchange are parsed by the plain
   functions at module level (`parse_client_hello`, `parse_server_hello`,
   ...): bytes in, a dataclass out, no analyser state.  A QUIC analyser
   carries the same handshake messages in CRYPTO frames and can call them
   unchanged (`ja4(hello, transport="q")`).  JA3/JA4/JA3S are remembered
   per distinct input, so a client seen before costs a dictionary look-up.
   The hellos are parsed on every connection, so each parser first tries
   one pass over the offsets that answers only for a well-formed message,
   and defers to the checked field-by-field parser (which says what is
   wrong, and which extensions) for anything else.  The analyser itself
   takes from a well-formed hello only the facts ssl.log needs and the raw
   values the fingerprints come from (`_client_hello_facts`,
   `_server_hello_facts`), the fingerprints looked up by those; the
   dataclass is made only when `client_hello` / `server_hello` is read.
3. Zeek's state machine decides `established` (scripts/base/protocols/ssl
   and src/analyzer/protocol/ssl): a side turns encrypted at its
   ChangeCipherSpec (TLS <= 1.2; ignored once TLS 1.3 is chosen) or at its
   first application-data record once a TLS 1.3 (or draft/experimental)
   version is chosen; the connection is established at the first encrypted
   record seen while both sides are encrypted.  `resumed` follows Zeek too:
   the server echoes the client's session id (TLS <= 1.2), or accepts its
   pre-shared key, or the client sent a session ticket with an empty session
   id and its ChangeCipherSpec without a ClientKeyExchange.
4. The ssl.log row is written when the connection is established (Zeek then
   detaches its analyser), or when analysis ends without that.  After the
   handshake nothing more is parsed: by default the connection is handed to
   compiled byte counting (`bulk()`), so encrypted traffic costs no Python.
   With the `messages` or `exchanges` option the records go on being
   counted: each costs one 5-byte header read, its body is skipped in C.

Not done: SSLv2 beyond its ClientHello (logged, not fingerprinted), DTLS,
certificate parsing (`sni_matches_cert`, subject/issuer stay unset; the
chain fingerprints are SHA-256 of the DER bytes, as Zeek's).
"""
from __future__ import annotations

import struct
import sys
from array import array

from analyser import (DETECTION_BUFFER, ORIG, RESP, Analyser, Field, Gap, Signature,
                      SlotRecord, StreamEnd, conn_id_fields, deferred_module)
# The public AnalyserCore, named by the module that defines it: tls.pxd
# cimports it from there to derive TlsCore's struct (as ftp.py does).
from analyser.runtime import AnalyserCore
from protocols.tls_names import (ALERT_DESCRIPTIONS, CIPHER_SUITES, NAMED_GROUPS, name_of)


# hashlib loads OpenSSL (3 ms of every start-up): imported at the first
# fingerprint.
_hashlib = deferred_module("hashlib")

# -- wire formats --------------------------------------------------------------------

RECORD_HEADER = struct.Struct("!BHH")        # content type, version, length (RFC 8446 §5.1)
RECORD_HEADER_SIZE = RECORD_HEADER.size
U16 = struct.Struct("!H")
EXTENSION_HEADER = struct.Struct("!HH")      # extension type, length (RFC 8446 §4.2)
# A hello starts with its version (2 bytes) and random (32), then the session id.
HELLO_RANDOM_END = 34
# SSLv2-compatible ClientHello after its message type: version, cipher specs
# length, session id length, challenge length (RFC 6101 Appendix E.2).
V2_HELLO = struct.Struct("!HHHH")
# array("H") reads 16-bit values in the machine's order; the wire's is big-endian.
NATIVE_LITTLE_ENDIAN = sys.byteorder == "little"
CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA, HEARTBEAT = 20, 21, 22, 23, 24
# Record types Zeek accepts on the first record of a connection.
FIRST_RECORD_TYPES = range(20, 31)
# Record-layer versions (TLS 1.3 keeps 0x0303 on the wire).
RECORD_VERSIONS = frozenset({0x0300, 0x0301, 0x0302, 0x0303})
SSLV2, SSLV3, TLS10, TLS11, TLS12, TLS13 = 0x0002, 0x0300, 0x0301, 0x0302, 0x0303, 0x0304
LEGACY_VERSIONS = frozenset({SSLV2, SSLV3, TLS10, TLS11, TLS12})

# Handshake message types (RFC 8446 §4, RFC 5246 §7.4) and Zeek's ssl_history
# letter for each (lower case; the client's are written upper case).
HANDSHAKE_HEADER_SIZE = 4                    # message type, 24-bit length
HELLO_REQUEST, CLIENT_HELLO, SERVER_HELLO, HELLO_RETRY_REQUEST = 0, 1, 2, 6
CERTIFICATE, SERVER_KEY_EXCHANGE, CLIENT_KEY_EXCHANGE = 11, 12, 16
HISTORY_LETTERS = {0: "h", 1: "c", 2: "s", 3: "v", 4: "t", 5: "e", 6: "j", 8: "o", 11: "x",
                   12: "k", 13: "r", 14: "n", 15: "y", 16: "g", 20: "f", 21: "w", 22: "u",
                   23: "a", 24: "p", 254: "m"}
UNKNOWN_HANDSHAKE_LETTER = "z"
CLIENT_HISTORY_LETTERS = {kind: letter.upper() for kind, letter in HISTORY_LETTERS.items()}

# Extensions read (IANA "TLS ExtensionType Values").
EXT_SERVER_NAME, EXT_SUPPORTED_GROUPS, EXT_EC_POINT_FORMATS = 0, 10, 11
EXT_SIGNATURE_ALGORITHMS, EXT_ALPN, EXT_SESSION_TICKET = 13, 16, 35
EXT_PRE_SHARED_KEY, EXT_SUPPORTED_VERSIONS, EXT_KEY_SHARE = 41, 43, 51
# TLS 1.3 drafts before 23 numbered key_share 40 (draft-ietf-tls-tls13-22 §4.2).
EXT_KEY_SHARE_OLD = 40
KEY_SHARE_TYPES = (EXT_KEY_SHARE, EXT_KEY_SHARE_OLD)
# Extensions JA4's third part leaves out of its sorted list (JA4.md).
JA4_UNSORTED_EXTENSIONS = frozenset({EXT_SERVER_NAME, EXT_ALPN})
# GREASE values (RFC 8701 §2): 0x0A0A, 0x1A1A, ... 0xFAFA.
GREASE = frozenset(0x0A0A + 0x1010 * i for i in range(16))

# ServerHello.random of a HelloRetryRequest (RFC 8446 §4.1.3).
HELLO_RETRY_RANDOM = bytes.fromhex(
    "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
EMPTY_SESSION_ID = bytes(32)                 # a client's all-zero session id counts as none
NAMED_CURVE = 3                              # ECParameters.curve_type (RFC 8422 §5.4)
JA4_VERSIONS = {TLS13: "13", TLS12: "12", TLS11: "11", TLS10: "10", SSLV3: "s3",
                SSLV2: "s2", 0xFEFF: "d1", 0xFEFD: "d2", 0xFEFC: "d3"}
VERSION_NAMES = {SSLV2: "SSLv2", SSLV3: "SSLv3", TLS10: "TLSv10", TLS11: "TLSv11",
                 TLS12: "TLSv12", TLS13: "TLSv13", 0xFEFF: "DTLSv10", 0xFEFD: "DTLSv12",
                 0xFEFC: "DTLSv13"}

# -- limits ------------------------------------------------------------------------------

# A TLSCiphertext is at most 2^14 + 2048 bytes (RFC 5246 §6.2.3); TLS 1.3 allows
# 2^14 + 256.  A longer record is a weird and is skipped, never read.
MAX_RECORD = (1 << 14) + 2048
# Bytes of one handshake message kept (certificate chains are a few KiB;
# the field allows 16 MiB).  A longer message ends handshake parsing on its side.
MAX_HANDSHAKE_MESSAGE = 1 << 18
MAX_HISTORY = 100                  # Zeek's SSL::max_ssl_history_length
MAX_ALERTS_PER_RECORD = 10         # Zeek's SSL::max_alerts_per_record
# Records read in the clear before giving up on a handshake that never ends.
MAX_HANDSHAKE_RECORDS = 1000
# Bytes one read takes from a side during the handshake (once the bytes are
# confirmed TLS): a whole flight usually, cut into records in Python; the
# rest of a longer encrypted record is skipped, not read.
READ_CHUNK = 1 << 16
MAX_CERTIFICATES = 32              # certificates fingerprinted per chain
# Distinct JA3/JA4/JA3S values remembered (each a few hundred bytes); real
# traffic has a few hundred, so the memo rarely fills.
MAX_MEMO_FINGERPRINTS = 4096
ZEEK_SSL_PORTS = frozenset({443, 465, 563, 585, 614, 636, 989, 990, 992, 993, 995, 5223})


class TlsError(ValueError):
    """A handshake message that does not parse."""


def is_grease(value: int) -> bool:
    """GREASE values (RFC 8701): 0x0A0A, 0x1A1A, ... 0xFAFA."""
    return value in GREASE


def version_name(version: int) -> str:
    """ssl.log's spelling of a protocol version (Zeek's SSL::version_strings)."""
    name = VERSION_NAMES.get(version)
    if name is not None:
        return name
    if version // 0xFF == 0x7F:                       # TLS 1.3 drafts, as Zeek reckons them
        return "TLSv13-draft%d" % (version % 0x7F)
    return "unknown-%d" % version


def is_tls13(version: int | None) -> bool:
    """Zeek's determine_tls13(): 1.3 or one of its drafts."""
    return version is not None and (version == TLS13 or version // 0xFF == 0x7F)


# -- handshake messages: plain functions (reused by a QUIC analyser) -----------------------
#
# The hellos are parsed on every connection, so each is one function walking
# the message with an offset in a local variable (no reader object, no call
# per field).  Every length is checked before it is used: a message that ends
# early raises TlsError saying what was wanted where.

def _truncated(wanted: int, pos: int, end: int) -> TlsError:
    return TlsError("truncated: %d bytes wanted at offset %d of %d" % (wanted, pos, end))


def _length(data: bytes, pos: int, length_bytes: int) -> int:
    """The 1-, 2- or 3-byte big-endian length at `pos` (in bounds)."""
    if length_bytes == 2:
        return data[pos] << 8 | data[pos + 1]
    if length_bytes == 1:
        return data[pos]
    return int.from_bytes(data[pos:pos + length_bytes], "big")


def _vector_end(data: bytes, pos: int, length_bytes: int, end: int) -> int:
    """The offset just past the vector at `pos` (a 1-, 2- or 3-byte length,
    then that many bytes), checked against `end`."""
    start = pos + length_bytes
    if start > end:
        raise _truncated(length_bytes, pos, end)
    stop = start + _length(data, pos, length_bytes)
    if stop > end:
        raise _truncated(stop - start, start, end)
    return stop


def _vector(data: bytes, pos: int, length_bytes: int, end: int) -> tuple[bytes, int]:
    """The vector at `pos`: (its bytes, the offset just past it).  (The
    checks of _vector_end, repeated, and _length inlined: this is called for
    most fields.)"""
    start = pos + length_bytes
    if start > end:
        raise _truncated(length_bytes, pos, end)
    if length_bytes == 2:
        stop = start + (data[pos] << 8 | data[pos + 1])
    elif length_bytes == 1:
        stop = start + data[pos]
    else:
        stop = start + int.from_bytes(data[pos:start], "big")
    if stop > end:
        raise _truncated(stop - start, start, end)
    return data[start:stop], stop


def u16_list(data: bytes) -> list[int]:
    """A list of big-endian 16-bit values (cipher suites, groups, ...)."""
    if len(data) % 2:
        raise TlsError("odd length of a 16-bit list")
    values = array("H", data)
    if NATIVE_LITTLE_ENDIAN:
        values.byteswap()
    return values.tolist()


def parse_extensions(body: bytes, pos: int) -> list[tuple[int, bytes]]:
    """The extensions block of a hello, which starts at `pos` (or is absent
    when the message ends there): [(type, data)] in order."""
    end = len(body)
    if pos == end:
        return []
    stop = _vector_end(body, pos, 2, end)
    base = pos = pos + 2                  # offsets in errors count from the block's start
    out = []
    append = out.append
    unpack = EXTENSION_HEADER.unpack_from
    while pos < stop:
        if pos + EXTENSION_HEADER.size > stop:
            wanted_at = pos if pos + 2 > stop else pos + 2
            raise _truncated(2, wanted_at - base, stop - base)
        kind, size = unpack(body, pos)
        pos += EXTENSION_HEADER.size
        if pos + size > stop:
            raise _truncated(size, pos - base, stop - base)
        append((kind, body[pos:pos + size]))
        pos += size
    return out


class ClientHello(SlotRecord):
    """What a ClientHello says (RFC 8446 §4.1.2); values as numbers, in order;
    equal when every field is (a SlotRecord, not a dataclass: start-up does
    not import dataclasses).  `malformed_extensions`: extensions whose contents did not parse (the hello
    itself still counts)."""
    __slots__ = ("version", "random", "session_id", "ciphers", "compression", "extensions",
                 "server_names", "alpn", "supported_versions", "groups", "point_formats",
                 "signature_algorithms", "key_share_groups", "session_ticket",
                 "malformed_extensions")

    def __init__(self, version: int, random: bytes, session_id: bytes, ciphers: list[int],
                 compression: list[int], extensions: list[tuple[int, bytes]],
                 server_names: list[str] | None = None, alpn: list[bytes] | None = None,
                 supported_versions: list[int] | None = None, groups: list[int] | None = None,
                 point_formats: list[int] | None = None,
                 signature_algorithms: list[int] | None = None,
                 key_share_groups: list[int] | None = None, session_ticket: bytes | None = None,
                 malformed_extensions: list[int] | None = None):
        self.version = version
        self.random = random
        self.session_id = session_id
        self.ciphers = ciphers
        self.compression = compression
        self.extensions = extensions
        self.server_names = [] if server_names is None else server_names
        self.alpn = [] if alpn is None else alpn
        self.supported_versions = [] if supported_versions is None else supported_versions
        self.groups = [] if groups is None else groups
        self.point_formats = [] if point_formats is None else point_formats
        self.signature_algorithms = [] if signature_algorithms is None else signature_algorithms
        self.key_share_groups = [] if key_share_groups is None else key_share_groups
        self.session_ticket = session_ticket
        self.malformed_extensions = [] if malformed_extensions is None else malformed_extensions

    @property
    def extension_types(self) -> list[int]:
        return [kind for kind, _ in self.extensions]


class ServerHello(SlotRecord):
    """What a ServerHello (or HelloRetryRequest) says (RFC 8446 §4.1.3):
    `version` is the legacy version field, `selected_version` that of
    supported_versions."""
    __slots__ = ("version", "random", "session_id", "cipher", "compression", "extensions",
                 "selected_version", "key_share_group", "alpn")

    def __init__(self, version: int, random: bytes, session_id: bytes, cipher: int,
                 compression: int, extensions: list[tuple[int, bytes]],
                 selected_version: int | None = None, key_share_group: int | None = None,
                 alpn: bytes | None = None):
        self.version = version
        self.random = random
        self.session_id = session_id
        self.cipher = cipher
        self.compression = compression
        self.extensions = extensions
        self.selected_version = selected_version
        self.key_share_group = key_share_group
        self.alpn = alpn

    @property
    def hello_retry(self) -> bool:
        return self.random == HELLO_RETRY_RANDOM

    @property
    def extension_types(self) -> list[int]:
        return [kind for kind, _ in self.extensions]


def parse_alpn(data: bytes) -> list[bytes]:
    """The protocol names of an ALPN extension (RFC 7301 §3.1)."""
    names, _ = _vector(data, 0, 2, len(data))
    end = len(names)
    pos = 0
    out = []
    while pos < end:
        name, pos = _vector(names, pos, 1, end)
        out.append(name)
    return out


# The ClientHello extensions read, each by a function (hello, data) that sets
# what the extension says; one that raises TlsError is counted malformed.
# What an extension said before it broke off stays (as names or groups
# already appended).

def _server_names(hello: ClientHello, data: bytes) -> None:
    if not data:                                        # allowed in a ServerHello's echo
        return
    names, _ = _vector(data, 0, 2, len(data))
    end = len(names)
    pos = 0
    while pos < end:
        name_type = names[pos]
        name, pos = _vector(names, pos + 1, 2, end)
        if name_type == 0:                              # host_name
            hello.server_names.append(name.decode("utf-8", "backslashreplace"))


def _supported_groups(hello: ClientHello, data: bytes) -> None:
    hello.groups = u16_list(_vector(data, 0, 2, len(data))[0])


def _point_formats(hello: ClientHello, data: bytes) -> None:
    hello.point_formats = list(_vector(data, 0, 1, len(data))[0])


def _signature_algorithms(hello: ClientHello, data: bytes) -> None:
    hello.signature_algorithms = u16_list(_vector(data, 0, 2, len(data))[0])


def _alpn(hello: ClientHello, data: bytes) -> None:
    hello.alpn = parse_alpn(data)


def _supported_versions(hello: ClientHello, data: bytes) -> None:
    hello.supported_versions = u16_list(_vector(data, 0, 1, len(data))[0])


def _key_shares(hello: ClientHello, data: bytes) -> None:
    shares, _ = _vector(data, 0, 2, len(data))
    end = len(shares)
    pos = 0
    while pos < end:
        if pos + 2 > end:
            raise _truncated(2, pos, end)
        hello.key_share_groups.append(shares[pos] << 8 | shares[pos + 1])
        pos = _vector_end(shares, pos + 2, 2, end)     # the key itself is not kept


def _session_ticket(hello: ClientHello, data: bytes) -> None:
    hello.session_ticket = data


CLIENT_EXTENSION_PARSERS = {
    EXT_SERVER_NAME: _server_names, EXT_SUPPORTED_GROUPS: _supported_groups,
    EXT_EC_POINT_FORMATS: _point_formats, EXT_SIGNATURE_ALGORITHMS: _signature_algorithms,
    EXT_ALPN: _alpn, EXT_SUPPORTED_VERSIONS: _supported_versions,
    EXT_KEY_SHARE: _key_shares, EXT_KEY_SHARE_OLD: _key_shares,
    EXT_SESSION_TICKET: _session_ticket,
}


def _hello_start(body: bytes) -> tuple[int, bytes, int]:
    """What every hello starts with, after version and random: (its length,
    the session id, the offset past the session id)."""
    end = len(body)
    if end < HELLO_RANDOM_END:
        raise _truncated(2, 0, end) if end < 2 else _truncated(32, 2, end)
    session_id, pos = _vector(body, HELLO_RANDOM_END, 1, end)
    return end, session_id, pos


def parse_client_hello(body: bytes) -> ClientHello:
    """A ClientHello handshake message body (after the 4-byte message header)."""
    hello = _fast_client_hello(body)
    return hello if hello is not None else _checked_client_hello(body)


def parse_server_hello(body: bytes) -> ServerHello:
    """A ServerHello handshake message body (after the 4-byte message header)."""
    hello = _fast_server_hello(body)
    return hello if hello is not None else _checked_server_hello(body)


def _fast_client_hello(body: bytes) -> ClientHello | None:
    """parse_client_hello() for a well-formed hello, in one pass with the
    offsets in locals (no call per field or per extension); None when
    anything is off, for the checked parser to say what (and to note the
    malformed extensions)."""
    scanned = _scan_client_hello(body)
    return scanned[0] if scanned is not None else None


def _client_hello_walk(body: bytes, build: bool) -> tuple | None:
    """One pass over a well-formed ClientHello, every length checked as the
    checked parser checks it; None when anything is off (the checked parser
    then says what).  With `build`: (the ClientHello, the key of its
    fingerprints: the raw values JA3 and JA4 are computed from, for the
    analyser to look them up without computing them).  Without: what the
    analyser takes, no ClientHello built: (version, session id, server names,
    session ticket or None, whether it offers a pre-shared key, the key)."""
    # The extension types as locals: C integers in the build (tls.pxd), so
    # each extension's type is compared without making an int object.
    x_sni, x_groups, x_formats = EXT_SERVER_NAME, EXT_SUPPORTED_GROUPS, EXT_EC_POINT_FORMATS
    x_signatures, x_alpn, x_ticket = EXT_SIGNATURE_ALGORITHMS, EXT_ALPN, EXT_SESSION_TICKET
    x_psk, x_versions, x_key_share = EXT_PRE_SHARED_KEY, EXT_SUPPORTED_VERSIONS, EXT_KEY_SHARE
    x_key_share_old = EXT_KEY_SHARE_OLD
    end = len(body)
    if end < HELLO_RANDOM_END + 1:
        return None
    pos = HELLO_RANDOM_END + 1 + body[HELLO_RANDOM_END]
    if pos + 2 > end:
        return None
    stop = pos + 2 + (body[pos] << 8 | body[pos + 1])
    if stop > end or (stop - pos) & 1:
        return None
    session_id = body[HELLO_RANDOM_END + 1:pos]
    ciphers = body[pos + 2:stop]
    if stop >= end:
        return None
    pos = stop + 1 + body[stop]
    if pos > end:
        return None
    compression = list(body[stop + 1:pos]) if build else None
    extensions = []
    server_names = []
    alpn = []
    supported_versions = []
    groups = []
    point_formats = []
    signature_algorithms = []
    key_share_groups = []
    session_ticket = None
    psk = False
    kinds = []
    # The raw data of the extensions the fingerprints read (the last of each).
    groups_data = formats_data = signatures_data = alpn_data = versions_data = None
    if pos != end:
        if pos + 2 > end:
            return None
        block_end = pos + 2 + (body[pos] << 8 | body[pos + 1])
        if block_end > end:
            return None
        pos += 2
        add_kind = kinds.append
        while pos < block_end:
            start = pos + 4
            if start > block_end:
                return None
            kind = body[pos] << 8 | body[pos + 1]
            stop = start + (body[pos + 2] << 8 | body[pos + 3])
            if stop > block_end:
                return None
            add_kind(kind)
            if build:
                extensions.append((kind, body[start:stop]))
            pos = stop
            if kind > x_key_share:
                continue
            size = stop - start
            if kind == x_sni:
                if size:
                    if size < 2:
                        return None
                    names_end = start + 2 + (body[start] << 8 | body[start + 1])
                    if names_end > stop:
                        return None
                    i = start + 2
                    while i < names_end:
                        j = i + 3
                        if j > names_end:
                            return None
                        k = j + (body[i + 1] << 8 | body[i + 2])
                        if k > names_end:
                            return None
                        if body[i] == 0:
                            server_names.append(body[j:k].decode("utf-8", "backslashreplace"))
                        i = k
            elif kind == x_groups or kind == x_signatures:
                if size < 2:
                    return None
                k = 2 + (body[start] << 8 | body[start + 1])
                if k > size or k & 1:
                    return None
                if build:
                    values = array("H", body[start + 2:start + k])
                    if NATIVE_LITTLE_ENDIAN:
                        values.byteswap()
                if kind == x_groups:
                    groups_data = body[start:stop]
                    if build:
                        groups = values.tolist()
                else:
                    signatures_data = body[start:stop]
                    if build:
                        signature_algorithms = values.tolist()
            elif kind == x_formats:
                if size < 1 or 1 + body[start] > size:
                    return None
                formats_data = body[start:stop]
                if build:
                    point_formats = list(body[start + 1:start + 1 + body[start]])
            elif kind == x_alpn:
                if size < 2:
                    return None
                names_end = start + 2 + (body[start] << 8 | body[start + 1])
                if names_end > stop:
                    return None
                alpn = []
                i = start + 2
                while i < names_end:
                    k = i + 1 + body[i]
                    if k > names_end:
                        return None
                    if build:
                        alpn.append(body[i + 1:k])
                    i = k
                alpn_data = body[start:stop]
            elif kind == x_versions:
                if size < 1:
                    return None
                k = body[start]
                if 1 + k > size or k & 1:
                    return None
                versions_data = body[start:stop]
                if build:
                    values = array("H", body[start + 1:start + 1 + k])
                    if NATIVE_LITTLE_ENDIAN:
                        values.byteswap()
                    supported_versions = values.tolist()
            elif kind == x_key_share or kind == x_key_share_old:
                if size < 2:
                    return None
                shares_end = start + 2 + (body[start] << 8 | body[start + 1])
                if shares_end > stop:
                    return None
                i = start + 2
                while i < shares_end:
                    if i + 4 > shares_end:
                        return None
                    k = i + 4 + (body[i + 2] << 8 | body[i + 3])
                    if k > shares_end:
                        return None
                    if build:
                        key_share_groups.append(body[i] << 8 | body[i + 1])
                    i = k
            elif kind == x_ticket:
                session_ticket = body[start:stop]
            elif kind == x_psk:
                psk = True
    version = body[0] << 8 | body[1]
    key = (version, ciphers, tuple(kinds), groups_data, formats_data, signatures_data,
           alpn_data, versions_data)
    if not build:
        return version, session_id, server_names, session_ticket, psk, key
    cipher_values = array("H", ciphers)
    if NATIVE_LITTLE_ENDIAN:
        cipher_values.byteswap()
    return ClientHello(version, body[2:HELLO_RANDOM_END], session_id,
                       cipher_values.tolist(), compression, extensions, server_names, alpn,
                       supported_versions, groups, point_formats, signature_algorithms,
                       key_share_groups, session_ticket, []), key


def _scan_client_hello(body: bytes) -> tuple[ClientHello, tuple] | None:
    """_fast_client_hello(), with the key of its fingerprints (the raw values
    JA3 and JA4 are computed from)."""
    return _client_hello_walk(body if type(body) is bytes else bytes(body), True)


def _client_hello_facts(body: bytes) -> tuple | None:
    """What the analyser takes from a well-formed ClientHello, without
    building it: (version, session id, server names, session ticket or None,
    whether it offers a pre-shared key, the key of its fingerprints)."""
    return _client_hello_walk(body if type(body) is bytes else bytes(body), False)


def _server_hello_walk(body: bytes, keep_data: bool) -> tuple | None:
    """One pass over a well-formed ServerHello: (legacy version, random,
    session id, cipher, compression, extensions, selected version, key share
    group, first ALPN protocol), the extensions as (type, data) pairs when
    `keep_data`, else their types only; None when anything is off (the
    checked parser then says what)."""
    # The extension types as locals (C integers in the build), as in
    # _client_hello_walk.
    x_alpn, x_versions = EXT_ALPN, EXT_SUPPORTED_VERSIONS
    x_key_share, x_key_share_old = EXT_KEY_SHARE, EXT_KEY_SHARE_OLD
    end = len(body)
    if end < HELLO_RANDOM_END + 1:
        return None
    pos = HELLO_RANDOM_END + 1 + body[HELLO_RANDOM_END]
    if pos + 3 > end:
        return None
    session_id = body[HELLO_RANDOM_END + 1:pos]
    cipher = body[pos] << 8 | body[pos + 1]
    compression = body[pos + 2]
    pos += 3
    extensions = []
    selected_version = key_share_group = alpn = None
    if pos != end:
        if pos + 2 > end:
            return None
        block_end = pos + 2 + (body[pos] << 8 | body[pos + 1])
        if block_end > end:
            return None
        pos += 2
        while pos < block_end:
            start = pos + 4
            if start > block_end:
                return None
            kind = body[pos] << 8 | body[pos + 1]
            stop = start + (body[pos + 2] << 8 | body[pos + 3])
            if stop > block_end:
                return None
            extensions.append((kind, body[start:stop]) if keep_data else kind)
            pos = stop
            if kind == x_versions:
                if stop - start >= 2:
                    selected_version = body[start] << 8 | body[start + 1]
            elif kind == x_key_share or kind == x_key_share_old:
                if stop - start >= 2:
                    key_share_group = body[start] << 8 | body[start + 1]
            elif kind == x_alpn:
                # parse_alpn's checks: the list, then each name, must fit.
                if stop - start < 2:
                    return None
                names_end = start + 2 + (body[start] << 8 | body[start + 1])
                if names_end > stop:
                    return None
                i = start + 2
                alpn = None
                while i < names_end:
                    k = i + 1 + body[i]
                    if k > names_end:
                        return None
                    if alpn is None:
                        alpn = body[i + 1:k]
                    i = k
    return (body[0] << 8 | body[1], body[2:HELLO_RANDOM_END], session_id, cipher,
            compression, extensions, selected_version, key_share_group, alpn)


def _fast_server_hello(body: bytes) -> ServerHello | None:
    """parse_server_hello() for a well-formed hello in one pass; None when
    anything is off (the checked parser then says what)."""
    walked = _server_hello_walk(body if type(body) is bytes else bytes(body), True)
    return ServerHello(*walked) if walked is not None else None


def _server_hello_facts(body: bytes) -> tuple | None:
    """What the analyser takes from a well-formed ServerHello, without
    building the ServerHello: (legacy version, random, session id, cipher,
    selected version, key share group, first ALPN protocol, the extension
    types); None when anything is off."""
    walked = _server_hello_walk(body if type(body) is bytes else bytes(body), False)
    if walked is None:
        return None
    version, random, session_id, cipher, _, kinds, selected, group, alpn = walked
    return version, random, session_id, cipher, selected, group, alpn, tuple(kinds)


# The checked parsers: field by field, every length checked by a helper that
# says what was wanted where; the fast ones above defer to them on anything
# malformed, so the errors and the malformed extensions come from here.

def _checked_client_hello(body: bytes) -> ClientHello:
    end, session_id, pos = _hello_start(body)
    ciphers, pos = _vector(body, pos, 2, end)
    ciphers = u16_list(ciphers)
    compression, pos = _vector(body, pos, 1, end)
    hello = ClientHello(version=body[0] << 8 | body[1], random=body[2:HELLO_RANDOM_END],
                        session_id=session_id, ciphers=ciphers,
                        compression=list(compression), extensions=parse_extensions(body, pos))
    parsers = CLIENT_EXTENSION_PARSERS
    for kind, data in hello.extensions:
        parse = parsers.get(kind)
        if parse is not None:
            try:
                parse(hello, data)
            except TlsError:
                hello.malformed_extensions.append(kind)
    return hello


def _checked_server_hello(body: bytes) -> ServerHello:
    end, session_id, pos = _hello_start(body)
    if pos + 3 > end:                                   # cipher suite, compression method
        raise _truncated(2, pos, end) if pos + 2 > end else _truncated(1, pos + 2, end)
    hello = ServerHello(version=body[0] << 8 | body[1], random=body[2:HELLO_RANDOM_END],
                        session_id=session_id,
                        cipher=body[pos] << 8 | body[pos + 1], compression=body[pos + 2],
                        extensions=parse_extensions(body, pos + 3))
    for kind, data in hello.extensions:
        if kind == EXT_SUPPORTED_VERSIONS and len(data) >= 2:
            hello.selected_version = data[0] << 8 | data[1]
        elif kind in KEY_SHARE_TYPES and len(data) >= 2:
            # A ServerHello's KeyShareEntry, or a HelloRetryRequest's group alone.
            hello.key_share_group = data[0] << 8 | data[1]
        elif kind == EXT_ALPN:
            protocols = parse_alpn(data)
            hello.alpn = protocols[0] if protocols else None
    return hello


def parse_v2_client_hello(body: bytes) -> ClientHello:
    """An SSLv2-compatible ClientHello (RFC 6101 Appendix E.2), from its
    version field on: cipher specs are 24-bit codes."""
    end = len(body)
    if end < V2_HELLO.size:
        raise _truncated(2, end // 2 * 2, end)
    version, spec_len, sid_len, challenge_len = V2_HELLO.unpack_from(body)
    pos = V2_HELLO.size
    for size in (spec_len, sid_len, challenge_len):
        if pos + size > end:
            raise _truncated(size, pos, end)
        pos += size
    specs = body[V2_HELLO.size:V2_HELLO.size + spec_len]
    ciphers = [int.from_bytes(specs[i:i + 3], "big") for i in range(0, len(specs) - 2, 3)]
    session_id = body[V2_HELLO.size + spec_len:V2_HELLO.size + spec_len + sid_len]
    return ClientHello(version=version, random=b"", session_id=session_id, ciphers=ciphers,
                       compression=[], extensions=[])


def parse_certificates(body: bytes, tls13: bool = False) -> list[bytes]:
    """The DER certificates of a Certificate message, leaf first."""
    end = len(body)
    pos = _vector_end(body, 0, 1, end) if tls13 else 0   # certificate_request_context
    chain, _ = _vector(body, pos, 3, end)
    end = len(chain)
    pos = 0
    certs = []
    while pos < end:
        cert, pos = _vector(chain, pos, 3, end)
        certs.append(cert)
        if tls13:
            pos = _vector_end(chain, pos, 2, end)      # per-certificate extensions
    return certs


def ecdhe_curve(body: bytes) -> int | None:
    """The named curve of an (EC)DHE ServerKeyExchange, or None."""
    if len(body) >= 3 and body[0] == NAMED_CURVE:
        return U16.unpack_from(body, 1)[0]
    return None


# -- fingerprints --------------------------------------------------------------------------
#
# Clients of the same software send the same lists, so most connections
# repeat fingerprints already computed: they are kept in a memo keyed by the
# values they are computed from (GREASE left out), and only the texts and
# hashes of a new hello are made.

def _no_grease(values: list[int]) -> tuple[int, ...]:
    """The values without GREASE, as a tuple (part of a memo key)."""
    if GREASE.isdisjoint(values):
        return tuple(values)
    return tuple([v for v in values if v not in GREASE])


def _remember(memo: dict, key: tuple, value):
    if len(memo) >= MAX_MEMO_FINGERPRINTS:
        memo.clear()                   # bounded: a burst of new ones restarts it
    memo[key] = value
    return value


_ja3_memo: dict[tuple, str] = {}
_ja4_memo: dict[tuple, str] = {}
_ja3s_memo: dict[tuple, str] = {}
# (JA3, JA4) of a TCP ClientHello by its raw values (_scan_client_hello's
# key): a client seen before costs one look-up.
_hello_fingerprints_memo: dict[tuple, tuple[str, str]] = {}
# JA3S of a ServerHello by (version, cipher, extension types with GREASE).
_server_fingerprints_memo: dict[tuple, str] = {}


def client_fingerprints(hello: ClientHello, transport: str = "t") -> tuple[str, str]:
    """(JA3, JA4) of a ClientHello; `transport` as for ja4().  JA4 does not
    depend on the order of the extensions, which some clients shuffle on
    every connection (Chrome since 2023): its memo key has them sorted.
    (Runs for every hello: _no_grease() is inlined.)"""
    grease = GREASE
    values = hello.ciphers
    ciphers = tuple(values) if grease.isdisjoint(values) else tuple(
        [v for v in values if v not in grease])
    values = [kind for kind, _ in hello.extensions]
    extensions = tuple(values) if grease.isdisjoint(values) else tuple(
        [v for v in values if v not in grease])
    values = hello.groups
    groups = tuple(values) if grease.isdisjoint(values) else tuple(
        [v for v in values if v not in grease])
    values = hello.point_formats
    formats = tuple(values) if grease.isdisjoint(values) else tuple(
        [v for v in values if v not in grease])
    key = (hello.version, ciphers, extensions, groups, formats)
    ja3_value = _ja3_memo.get(key)
    if ja3_value is None:
        ja3_value = _remember(_ja3_memo, key, _hashlib().md5(_ja3_text(*key).encode()).hexdigest())
    values = hello.supported_versions
    if values:
        versions = values if grease.isdisjoint(values) else [
            v for v in values if v not in grease]
        version = max(versions) if versions else hello.version
    else:
        version = hello.version
    values = hello.signature_algorithms
    signatures = tuple(values) if grease.isdisjoint(values) else tuple(
        [v for v in values if v not in grease])
    alpn = hello.alpn
    key = (transport, JA4_VERSIONS.get(version, "00"), alpn[0] if alpn else b"", ciphers,
           tuple(sorted(extensions)), signatures)
    ja4_value = _ja4_memo.get(key)
    if ja4_value is None:
        ja4_value = _remember(_ja4_memo, key, _ja4_text(*key))
    return ja3_value, ja4_value


def _ja3_text(version: int, *lists: tuple[int, ...]) -> str:
    return "%d,%s" % (version, ",".join(["-".join(map(str, values)) for values in lists]))


def ja3_string(hello: ClientHello) -> str:
    """Salesforce's JA3 text: version,ciphers,extensions,groups,point formats
    (decimal, '-'-joined, GREASE left out)."""
    return _ja3_text(hello.version, _no_grease(hello.ciphers),
                     _no_grease(hello.extension_types), _no_grease(hello.groups),
                     _no_grease(hello.point_formats))


def ja3(hello: ClientHello) -> str:
    """JA3: MD5 of ja3_string()."""
    return client_fingerprints(hello)[0]


def ja3s(hello: ServerHello) -> str:
    """JA3S: MD5 of version,cipher,extensions of the ServerHello."""
    kinds = [kind for kind, _ in hello.extensions]
    key = (hello.version, hello.cipher, tuple(kinds) if GREASE.isdisjoint(kinds)
           else tuple([v for v in kinds if v not in GREASE]))
    value = _ja3s_memo.get(key)
    if value is None:
        text = "%d,%d,%s" % (hello.version, hello.cipher, "-".join(map(str, key[2])))
        value = _remember(_ja3s_memo, key, _hashlib().md5(text.encode()).hexdigest())
    return value


def _alnum(byte: int) -> bool:
    return 0x30 <= byte <= 0x39 or 0x41 <= byte <= 0x5A or 0x61 <= byte <= 0x7A


def _ja4_alpn(value: bytes) -> str:
    """JA4's two characters of the first ALPN protocol (empty: none)."""
    if not value:
        return "00"
    if _alnum(value[0]) and _alnum(value[-1]):
        return chr(value[0]) + chr(value[-1])
    text = value.hex()
    return text[0] + text[-1]


def _sha12(text: str) -> str:
    return _hashlib().sha256(text.encode()).hexdigest()[:12]


_hex4 = "%04x".__mod__                 # 0x1301 -> "1301", as JA4 spells numbers


def ja4(hello: ClientHello, transport: str = "t") -> str:
    """FoxIO's JA4 (technical_details/JA4.md): transport (t TCP, q QUIC, d
    DTLS), version, SNI d/i, cipher and extension counts, ALPN first/last
    characters; then the truncated SHA-256 of the sorted ciphers, and of the
    sorted extensions without SNI and ALPN followed by the signature
    algorithms in their order.  GREASE is left out everywhere."""
    return client_fingerprints(hello, transport)[1]


def _ja4_text(transport: str, version: str, alpn: bytes, ciphers: tuple[int, ...],
              extensions: tuple[int, ...], signatures: tuple[int, ...]) -> str:
    sni = "d" if EXT_SERVER_NAME in extensions else "i"
    a = "%s%s%s%02d%02d%s" % (transport, version, sni, min(len(ciphers), 99),
                              min(len(extensions), 99), _ja4_alpn(alpn))
    b = _sha12(",".join(map(_hex4, sorted(ciphers)))) if ciphers else "0" * 12
    kept = sorted(e for e in extensions if e not in JA4_UNSORTED_EXTENSIONS)
    text = ",".join(map(_hex4, kept))
    if signatures:
        text += "_" + ",".join(map(_hex4, signatures))
    c = _sha12(text) if kept else "0" * 12
    return "%s_%s_%s" % (a, b, c)


# -- ssl.log ----------------------------------------------------------------------------------

SSL_LOG = (
    Field("ts", "time", "time of the first TLS record"),
    Field("uid", "string", "the connection"),
    *conn_id_fields("client", "server"),
    Field("version", "string", "version the server chose (TLSv12, TLSv13, ...)"),
    Field("cipher", "string", "cipher suite the server chose"),
    Field("curve", "string", "ECDH group: ServerKeyExchange's curve (<= 1.2), "
                             "key_share's group (1.3)"),
    Field("server_name", "string", "the client's SNI"),
    Field("resumed", "bool", "the session was resumed"),
    Field("last_alert", "string", "last alert seen in the clear"),
    Field("next_protocol", "string", "ALPN protocol the server chose"),
    Field("established", "bool", "the handshake completed (both sides encrypted)"),
    Field("ssl_history", "string", "handshake messages and records, Zeek's letters; "
                                   "upper case = client"),
    Field("cert_chain_fps", "vector[string]", "SHA-256 of the server's certificates"),
    Field("client_cert_chain_fps", "vector[string]", "SHA-256 of the client's certificates"),
    Field("sni_matches_cert", "bool", "unset (certificates are not parsed)"),
    Field("ja3", "string", "JA3 of the ClientHello"),
    Field("ja4", "string", "JA4 of the ClientHello"),
    Field("ja3s", "string", "JA3S of the ServerHello"),
)


class LazyHello:
    """An analyser attribute holding a hello that is parsed only when read:
    `_NAME_message` keeps the message until then, `_NAME` the parsed hello.
    Setting it stores a parsed hello (or None)."""

    def __init__(self, parse):
        self.parse = parse

    def __set_name__(self, owner, name):
        self.value, self.message = "_" + name, "_" + name + "_message"

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        hello = getattr(obj, self.value)
        if hello is None:
            message = getattr(obj, self.message)
            if message is not None:
                hello = self.parse(message)
                setattr(obj, self.value, hello)
        return hello

    def __set__(self, obj, hello) -> None:
        setattr(obj, self.value, hello)
        setattr(obj, self.message, None)


class TlsCore(AnalyserCore):
    """The TLS analyser's per-record half: each chunk of a side cut into
    records, the records in the clear handled (handshake messages, change
    cipher spec, alerts) until the connection is established.  It runs for
    every record of every TLS connection, so the build makes it an extension
    type (tls.pxd): its state is struct fields and its calls C calls.  `Tls`
    below adds the declarations, the reads of main() and ssl.log."""

    def setup(self) -> None:
        self.encrypted = [False, False]
        self.handshake_buffers = [bytearray(), bytearray()]
        self.handshake_broken = [False, False]
        self.certificates = [[], []]     # DER certificates per side
        self.stream_bytes = [0, 0]       # bytes taken from the stream per side
        self.pending = [b"", b""]        # of those, read but not handled yet
        self.row = None                  # ssl.log row, made at the first record
        self.logged = False
        self.established = False
        self.done = False                # the handshake is over: established or given up
        self.limited = False             # reading at most DETECTION_BUFFER a chunk
        self.records = 0                 # records taken in the clear
        self.client_side = ORIG
        self.version = None              # the negotiated version (Zeek's chosen_version)
        self.cipher = None
        self.record_layer_known = False
        self.sslv2 = False
        self.client_session_id = ""
        self.ticket_with_empty_session = False
        self.client_key_exchange_seen = False
        self.client_psk_seen = False
        self.hello_retry_seen = False

    # -- the record loop -------------------------------------------------------------------

    def feed_side(self, side: int, data: bytes) -> bool:
        """read_any_into's handler: a chunk of a side, cut into records.  True
        once the handshake is over, or when the bytes were just confirmed TLS
        (the reads may then take more at a time)."""
        if type(data) is not bytes:
            data = bytes(data)
        self.stream_bytes[side] += len(data)
        pending = self.pending
        held = pending[side]
        pending[side] = held + data if held else data
        self.take_records(side)
        return self.done or (self.limited and self._confirmed)

    def take_records(self, side: int) -> None:
        """Every whole record of a side's pending bytes, in order, until one
        is not whole yet (its rest comes in a later chunk) or the handshake is
        over.  The header's checks run as soon as it is there; an encrypted
        record (or one too long) needs only its header: the rest of it not
        yet read is skipped in compiled code.  The records are read at an
        offset into the pending bytes, which are cut once, on the way out."""
        pending = self.pending
        encrypted = self.encrypted
        data = pending[side]
        pos = 0
        try:
            while not self.done:
                n = len(data) - pos
                if n < RECORD_HEADER_SIZE:
                    return                                  # the header's rest: wait for it
                if self.records >= MAX_HANDSHAKE_RECORDS:
                    self.weird("SSL_handshake_too_long", records=self.records + 1)
                    self.done = True
                    return
                if self.row is None:
                    self.start_row()
                if not self.record_layer_known:
                    if data[pos] & 0x80:
                        pending[side] = data = data[pos:]   # (sslv2_record cuts them itself)
                        pos = 0
                        taken = self.sslv2_record(side, data)
                        data = pending[side]
                        if not taken:
                            return                          # its rest: wait for it
                        self.records += 1
                        continue
                    self.check_first_record(data[pos:pos + RECORD_HEADER_SIZE])
                content = data[pos]
                version = data[pos + 1] << 8 | data[pos + 2]
                length = data[pos + 3] << 8 | data[pos + 4]
                if version not in RECORD_VERSIONS:
                    self.violation("Invalid version late in TLS connection. Packet reported "
                                   "version: %d" % version, data[pos:pos + RECORD_HEADER_SIZE])
                end = RECORD_HEADER_SIZE + length
                if length > MAX_RECORD:
                    self.records += 1
                    self.weird("SSL_record_too_large", length=length)
                    pos = self.drop_at(side, data, pos, end)
                    data = pending[side] if pos == 0 else data
                    continue
                if encrypted[side] or (content == APPLICATION_DATA
                                       and self.version not in LEGACY_VERSIONS):
                    # An application-data record in the clear turns its side
                    # encrypted once the chosen version is not a legacy one
                    # (Zeek's determine_state).
                    self.records += 1
                    encrypted[side] = True
                    pos = self.drop_at(side, data, pos, end)
                    data = pending[side] if pos == 0 else data
                    if encrypted[1 - side]:
                        self.established = True
                        self.done = True
                    continue
                if n < end:
                    return                                  # the body's rest: wait for it
                self.records += 1
                body = data[pos + RECORD_HEADER_SIZE:pos + end]
                pos += end
                if content == HANDSHAKE:
                    self.handshake_record(side, body)
                elif content == CHANGE_CIPHER_SPEC:
                    self.change_cipher_spec(side)
                elif content == ALERT:
                    self.alerts(side, body)
                elif content == HEARTBEAT:
                    self.history(side, "b")
                elif content == APPLICATION_DATA:
                    if self.version is not None:
                        self.weird("ssl_early_application_data")
                else:
                    self.violation("unknown SSL record type (%d) from %s"
                                   % (content, "originator" if side == ORIG else "responder"),
                                   data[pos - end:pos - end + RECORD_HEADER_SIZE])
        finally:
            if pos:
                pending[side] = data[pos:]

    def drop_at(self, side: int, data: bytes, pos: int, n: int) -> int:
        """take_records()' drop(): the next n bytes of a side, from `pos` in
        its pending `data`, discarded.  Where the records go on in `data`;
        0 when all of it went (the side's pending bytes are then empty, and
        what is still to come is skipped in compiled code)."""
        if len(data) - pos >= n:
            return pos + n
        self.pending[side] = data[pos:]
        self.drop(side, n)
        return 0

    def drop(self, side: int, n: int) -> None:
        """Discard the next n bytes of a side: pending ones, and the rest
        skipped in compiled code (never read)."""
        pending = self.pending
        data = pending[side]
        if len(data) >= n:
            pending[side] = data[n:]
            return
        pending[side] = b""
        self.skip(side, n - len(data))
        self.stream_bytes[side] += n - len(data)

    def check_first_record(self, head: bytes) -> None:
        """Zeek's record-layer check of a connection's first record."""
        content, version, _ = RECORD_HEADER.unpack(head)
        if version not in RECORD_VERSIONS:
            self.violation("Invalid version in TLS connection. Version: %d" % version, head)
        if content not in FIRST_RECORD_TYPES:
            self.violation("Invalid type in TLS connection. Version: %d, Type: %d"
                           % (version, content), head)
        self.record_layer_known = True

    def sslv2_record(self, side: int, data: bytes) -> bool:
        """An SSLv2-compatible ClientHello (2-byte header) at the start of
        `data`, a side's pending bytes: logged with its letter, no
        fingerprint.  Anything else in SSLv2 is not analysed.  False while
        the record is not whole."""
        head = data[:RECORD_HEADER_SIZE]
        length = ((head[0] & 0x7F) << 8 | head[1]) - 3
        if side != ORIG or head[2] != 1 or length < 6:
            self.violation("Invalid headers in SSL connection. Head1: %d, head2: %d, "
                           "head3: %d" % (head[1], head[2], head[3]), head)
        end = RECORD_HEADER_SIZE + length
        if len(data) < end:
            return False
        body = data[RECORD_HEADER_SIZE:end]
        self.pending[side] = data[end:]
        try:
            hello = parse_v2_client_hello(head[3:5] + body)
        except TlsError as exc:
            self.violation("malformed SSLv2 client hello: %s" % exc, body)
        if hello.version not in LEGACY_VERSIONS:
            self.violation("Invalid version in SSL client hello. Version: %d" % hello.version,
                           head)
        self.weird("SSL_v2_client_hello")
        self.confirm()
        self.history(side, "c")
        self.sslv2 = True
        self.record_layer_known = True
        return True

    # -- records in the clear ---------------------------------------------------------------

    def handshake_record(self, side: int, body: bytes) -> None:
        """Cut the handshake messages out of a record (with what an earlier
        record of the side left: a message may span records), and handle
        each: the hellos, certificates and key exchange parsed, every one a
        letter of ssl_history.  (One call per record: the messages are
        handled inline, and only those parsed are copied out.)"""
        if self.handshake_broken[side]:
            return
        buf = self.handshake_buffers[side]
        if buf:
            buf += body
            body = bytes(buf)
            buf.clear()
        row = self.row
        pos, end = 0, len(body)
        while end - pos >= HANDSHAKE_HEADER_SIZE:
            size = body[pos + 1] << 16 | body[pos + 2] << 8 | body[pos + 3]
            if size > MAX_HANDSHAKE_MESSAGE:
                self.weird("SSL_handshake_message_too_large", size=size)
                self.handshake_broken[side] = True
                return
            start = pos + HANDSHAKE_HEADER_SIZE
            if end - start < size:
                break
            kind = body[pos]
            pos = start + size
            client_side = self.client_side
            if kind == CLIENT_HELLO or kind == SERVER_HELLO or kind == CERTIFICATE or (
                    kind == SERVER_KEY_EXCHANGE and side != client_side):
                message = body[start:pos]
                try:
                    if kind == CLIENT_HELLO:
                        facts = _client_hello_facts(message)
                        if facts is not None:
                            self.client_hello_seen(side, message, facts)
                        else:
                            self.on_client_hello(side, _checked_client_hello(message))
                        client_side = self.client_side
                    elif kind == SERVER_HELLO:
                        facts = _server_hello_facts(message)
                        if facts is not None:
                            self.server_hello_seen(message, facts)
                        else:
                            self.on_server_hello(_checked_server_hello(message))
                    elif kind == CERTIFICATE:
                        certs = parse_certificates(message, is_tls13(self.version))
                        self.certificates[side] = certs[:MAX_CERTIFICATES]
                    else:
                        self.on_server_key_exchange(message)
                except TlsError as exc:
                    if not self.confirmed:
                        self.violation("malformed handshake message %d: %s" % (kind, exc),
                                       message)
                    self.weird("SSL_malformed_handshake_message", message_type=kind,
                               reason=str(exc))
            if side == client_side:
                if kind == CLIENT_KEY_EXCHANGE:
                    self.client_key_exchange_seen = True
                letters = CLIENT_HISTORY_LETTERS
            else:
                letters = HISTORY_LETTERS
            if kind == SERVER_HELLO and self.hello_retry_seen:
                letter = "J" if side == client_side else "j"
                self.hello_retry_seen = False
            else:
                letter = letters.get(kind)
                if letter is None:
                    letter = UNKNOWN_HANDSHAKE_LETTER.upper() if side == client_side \
                        else UNKNOWN_HANDSHAKE_LETTER
            history = row["ssl_history"]                # add_history(), inlined
            if len(history) < MAX_HISTORY:
                history += letter
                row["ssl_history"] = history
                if len(history) == MAX_HISTORY:
                    self.weird("SSL_max_ssl_history_length_reached")
        if pos < end:
            buf += body[pos:]

    def on_client_hello(self, side: int, hello: ClientHello) -> None:
        """A ClientHello parsed (one that the one-pass look did not take)."""
        self.client_hello_seen(side, b"", (
            hello.version, hello.session_id, hello.server_names, hello.session_ticket,
            EXT_PRE_SHARED_KEY in hello.extension_types, None), hello)

    def client_hello_seen(self, side: int, message: bytes, facts: tuple,
                          hello: ClientHello | None = None) -> None:
        """A ClientHello: from what _client_hello_facts() took of `message`
        (then the ClientHello itself is parsed only if `client_hello` is
        read), or `hello` parsed and `facts` taken from it."""
        version, session_id, names, ticket, psk, key = facts
        if version not in LEGACY_VERSIONS:
            self.violation("unsupported client SSL version 0x%04x" % version)
        if side != self.client_side:                  # the responder speaks first as client
            self.client_side = side
            self.add_history("^")
        self.confirm()
        if hello is not None:
            self.client_hello = hello
            if hello.malformed_extensions:
                self.weird("SSL_malformed_extension",
                           extensions=",".join(map(str, hello.malformed_extensions)))
            fingerprints = client_fingerprints(hello)
        else:
            self._client_hello = None
            self._client_hello_message = message
            fingerprints = _hello_fingerprints_memo.get(key)
            if fingerprints is None:
                fingerprints = _remember(_hello_fingerprints_memo, key,
                                         client_fingerprints(self.client_hello))
        row = self.row
        if names:
            row["server_name"] = names[0]
            if len(names) > 1:
                self.weird("SSL_many_server_names", names=",".join(names))
        if ticket:
            self.ticket_with_empty_session = True
        if psk:
            self.client_psk_seen = True
        if session_id and session_id != EMPTY_SESSION_ID:
            self.client_session_id = session_id.hex()
            self.ticket_with_empty_session = False
        row["ja3"], row["ja4"] = fingerprints

    def on_server_hello(self, hello: ServerHello) -> None:
        """A ServerHello parsed (one that the one-pass look did not take)."""
        self.server_hello_seen(b"", (
            hello.version, hello.random, hello.session_id, hello.cipher,
            hello.selected_version, hello.key_share_group, hello.alpn,
            tuple(hello.extension_types)), hello)

    def server_hello_seen(self, message: bytes, facts: tuple,
                          hello: ServerHello | None = None) -> None:
        """A ServerHello: from what _server_hello_facts() took of `message`
        (then the ServerHello itself is parsed only if `server_hello` is
        read), or `hello` parsed and `facts` taken from it."""
        legacy, random, session_id, cipher, selected, group, alpn, kinds = facts
        if legacy not in LEGACY_VERSIONS:
            self.violation("unsupported server SSL version 0x%04x" % legacy)
        if not self.confirmed:
            self.confirm()                            # the ClientHello was not seen
        row = self.row
        # Zeek keeps the first version it learns: supported_versions, else the field.
        version = self.version
        if version is None:
            version = self.version = selected or legacy
        if selected is not None or row["version"] is None:
            name = VERSION_NAMES.get(selected or legacy)
            row["version"] = name if name is not None else version_name(selected or legacy)
        self.cipher = cipher
        name = CIPHER_SUITES.get(cipher)                # name_of(), inlined
        row["cipher"] = name if name is not None else "unknown-%d" % cipher
        if random == HELLO_RETRY_RANDOM:
            self.hello_retry_seen = True
        if group is not None:
            name = NAMED_GROUPS.get(group)
            row["curve"] = name if name is not None else "unknown-%d" % group
        if alpn is not None:
            row["next_protocol"] = alpn.decode("utf-8", "backslashreplace")
        if self.client_psk_seen and EXT_PRE_SHARED_KEY in kinds:
            row["resumed"] = True
        if (self.client_session_id and self.client_session_id == session_id.hex()
                and version // 0xFF != 0x7F and version != TLS13):
            row["resumed"] = True
        if hello is not None:
            self.server_hello = hello
            row["ja3s"] = ja3s(hello)
            return
        self._server_hello = None
        self._server_hello_message = message
        key = (legacy, cipher, kinds)
        value = _server_fingerprints_memo.get(key)
        if value is None:
            value = _remember(_server_fingerprints_memo, key, ja3s(self.server_hello))
        row["ja3s"] = value

    def on_server_key_exchange(self, message: bytes) -> None:
        name = name_of(CIPHER_SUITES, self.cipher) if self.cipher is not None else ""
        if name.startswith(("TLS_ECDHE_", "TLS_ECDH_anon_")):
            curve = ecdhe_curve(message)
            if curve is not None:
                self.row["curve"] = name_of(NAMED_GROUPS, curve)

    def change_cipher_spec(self, side: int) -> None:
        row = self.row
        is_client = side == self.client_side
        history = row["ssl_history"]                    # history(), inlined
        if len(history) < MAX_HISTORY:
            history += "I" if is_client else "i"
            row["ssl_history"] = history
            if len(history) == MAX_HISTORY:
                self.weird("SSL_max_ssl_history_length_reached")
        version = self.version
        if version is None or not (version == TLS13 or version // 0xFF == 0x7F):
            self.encrypted[side] = True
        if is_client and self.ticket_with_empty_session and not self.client_key_exchange_seen:
            row["resumed"] = True

    def alerts(self, side: int, body: bytes) -> None:
        cap = 2 if is_tls13(self.version) else 2 * MAX_ALERTS_PER_RECORD
        if len(body) > cap:
            self.weird("SSL_excessive_alerts_in_record", alerts=len(body) // 2)
            body = body[:cap]
        for i in range(0, len(body) - 1, 2):
            self.history(side, "l")
            self.row["last_alert"] = name_of(ALERT_DESCRIPTIONS, body[i + 1])

    # -- the ssl.log row ------------------------------------------------------------------

    def history(self, side: int, letter: str) -> None:
        """A letter of ssl_history: upper case for the client."""
        self.add_history(letter.upper() if side == self.client_side else letter)

    def add_history(self, letters: str) -> None:
        row = self.row
        if len(row["ssl_history"]) < MAX_HISTORY:
            row["ssl_history"] += letters
            if len(row["ssl_history"]) == MAX_HISTORY:
                self.weird("SSL_max_ssl_history_length_reached")

    def start_row(self) -> None:
        if self.row is None:
            conn = self.conn
            cid = conn.id
            self.row = {"ts": self.ts, "uid": conn.uid, "id.orig_h": cid.orig_h,
                        "id.orig_p": cid.orig_p, "id.resp_h": cid.resp_h,
                        "id.resp_p": cid.resp_p, "version": None, "resumed": False,
                        "established": False, "ssl_history": ""}


class Tls(TlsCore, Analyser):
    """One TLS connection: handshake in the clear, ssl.log, fingerprints."""
    name = "ssl"                     # as Zeek names it (conn.log service, analyzer.log)
    ports = ZEEK_SSL_PORTS
    # A handshake record holding a ClientHello (client) or ServerHello
    # (server, when the client's start was missed), any record version, any
    # length, then a hello version 3.x; `?` is any byte.
    signatures = (Signature(ORIG, b"\x16\x03???\x01???\x03", wildcard=True),
                  Signature(RESP, b"\x16\x03???\x02???\x03", wildcard=True))
    logs = {"ssl": SSL_LOG}
    payload_fields = frozenset({"server_name"})
    options = {
        "messages": (False, "after the handshake, a tls_message event per record "
                            "(side, length, content_type, exchange)"),
        "exchanges": (False, "after the handshake, a tls_exchange event per "
                             "request/response (the client's records until the server "
                             "answers, and the server's answer)"),
    }

    # -- main ----------------------------------------------------------------------------

    def main(self):
        self.run_tls()

    def run_tls(self) -> None:
        """The whole connection: handshake, ssl.log, then after_handshake()."""
        self.setup()
        try:
            self.handshake()
        except Gap:
            pass                         # Zeek stops parsing at a gap; so do we
        except StreamEnd:
            return
        finally:
            self.write_row()
        if self.established:
            self.after_handshake()
        else:
            self.bulk()
        # Nothing more is read: what a read took ahead (up to READ_CHUNK per
        # side) is not kept while the connection lasts.
        self.pending = [b"", b""]

    # -- reads in main() ----------------------------------------------------------------
    #
    # During the handshake the engine hands each chunk of either side to
    # feed_side() (read_any_into: no greenlet switch per chunk).  After it,
    # count_records() reads on: the bytes a chunk held past the end of the
    # handshake are in `self.pending` and come first.  `stream_bytes`
    # counts what was taken from the stream: read (pending or handled) or
    # skipped.

    def take(self, side: int, n: int) -> bytes:
        """The next n bytes of a side: pending ones first, then the stream's
        (waits for them)."""
        pending = self.pending
        data = pending[side]
        if len(data) >= n:
            pending[side] = data[n:]
            return data[:n]
        pending[side] = b""
        more = self.read(side, n - len(data))
        self.stream_bytes[side] += len(more)
        return data + more if data else more

    def next_side(self, limit: int) -> int:
        """The side whose record comes next: one with pending bytes, else
        the first to have some (reading at most `limit` of them)."""
        pending = self.pending
        if pending[ORIG]:
            return ORIG
        if pending[RESP]:
            return RESP
        side, data = self.read_any(limit)
        self.stream_bytes[side] += len(data)
        pending[side] = data
        return side

    def read_record_header(self) -> tuple[int, bytes]:
        """The next record header of either side (its body stays unread)."""
        side = self.next_side(RECORD_HEADER_SIZE)
        return side, self.take(side, RECORD_HEADER_SIZE)

    def handshake(self) -> None:
        """Records until the connection is established (or ends, or the
        handshake is given up).  Until the bytes are confirmed TLS a chunk is
        at most what a candidate's recording keeps, so another candidate can
        read them again."""
        while not self.done:
            self.limited = not self._confirmed
            self.read_any_into(self.feed_side,
                               DETECTION_BUFFER if self.limited else READ_CHUNK)

    # The ClientHello and ServerHello: parsed when first read, if they were
    # taken in one pass (their messages kept until then); None until seen.
    client_hello = LazyHello(lambda message: parse_client_hello(message))
    server_hello = LazyHello(lambda message: parse_server_hello(message))
    _client_hello: ClientHello | None = None
    _client_hello_message: bytes | None = None
    _server_hello: ServerHello | None = None
    _server_hello_message: bytes | None = None

    # -- ssl.log ---------------------------------------------------------------------------

    def write_row(self) -> None:
        """Once: at establishment, or when analysis ends without it (only if
        the bytes were TLS)."""
        if self.logged or self.row is None or not self.confirmed:
            return
        self.logged = True
        row = self.row
        row["established"] = self.established
        certificates = self.certificates
        if certificates[0] or certificates[1]:
            server = certificates[1 - self.client_side]
            client = certificates[self.client_side]
            row["cert_chain_fps"] = [_hashlib().sha256(c).hexdigest() for c in server]
            row["client_cert_chain_fps"] = [_hashlib().sha256(c).hexdigest() for c in client]
        self.log("ssl", row)

    # -- after the handshake ----------------------------------------------------------------

    def after_handshake(self) -> None:
        """Extension point: what to do once the connection is established.
        Default: count it in compiled code, or count its records on request."""
        if self.config.get("messages") or self.config.get("exchanges"):
            self.count_records()
        else:
            self.bulk()

    def count_records(self) -> None:
        """One 5-byte header read per record, the body skipped in C; records
        grouped into exchanges (the client's records until the server answers,
        then the server's until the client speaks again)."""
        messages = bool(self.config.get("messages"))
        exchanges = bool(self.config.get("exchanges"))
        client = self.client_side
        exchange = 0
        previous = None
        tally = None
        while True:
            try:
                side, head = self.read_record_header()
            except (Gap, StreamEnd):
                break
            content, version, length = RECORD_HEADER.unpack(head)
            if version not in RECORD_VERSIONS:
                self.weird("SSL_invalid_record_late", version=version)
                break
            self.drop(side, length)
            if side == client and previous != client:
                if tally is not None and exchanges:
                    self.emit_exchange(tally)
                exchange += 1
                tally = {"exchange": exchange, "start": self.ts, "orig_records": 0,
                         "orig_bytes": 0, "resp_records": 0, "resp_bytes": 0}
            previous = side
            if tally is not None:
                prefix = "orig" if side == ORIG else "resp"
                tally[prefix + "_records"] += 1
                tally[prefix + "_bytes"] += length
                tally["end"] = self.ts
            if messages:
                self.emit("tls_message", side="orig" if side == ORIG else "resp",
                          length=length, content_type=content, exchange=exchange)
        if tally is not None and exchanges:
            self.emit_exchange(tally)
        self.bulk()

    def emit_exchange(self, tally: dict) -> None:
        start = tally.pop("start")
        self.emit("tls_exchange", duration=round(tally.pop("end", start) - start, 6), **tally)
