"""HTTP/1.x: requests and responses, http.log as Zeek writes it, large bodies
as transfers.

Role in the data flow: flows -> streams -> **analysers (protocols.http)** ->
sinks (`http.log`, `transfers.log`, `transfer_end` and `weird` events).

Theory of operation:

1. One `Http` analyser runs per connection.  `main()` reads both sides in
   arrival order (`read_any`), so a response that comes before its request
   (a desynchronised server) or pipelined requests are seen in the order of
   the wire, as Zeek sees them, and every row gets the time of its packet.
2. Each side is a small state machine (`Side`): first line, header lines,
   then the body: by Content-Length, by chunks, until the close, or none.
   A plain head (a plain first line, CRLF header lines, no framing header
   but a plain Content-Length and Connection) is read whole in C by
   protocols/_httphead.pyx, which creates objects only for the headers that
   matter; any other head is cut into lines here (one `split` per packet).  A body is
   counted, never copied: what the current packet holds of it is counted,
   the rest is `skip()`ped in compiled code except its last byte, whose
   arrival wakes the analyser at the exact end of the body (one wake-up per
   body, or per chunk).  Only a body that ends with the connection (no
   length, no chunks) is read, packet by packet, to be counted.
3. The request and response machines share what RFC 9112 and Zeek make them
   share: the queue of unanswered requests (a response to HEAD has no body;
   1xx responses do not answer a request), the keep-alive and close flags,
   and CONNECT and 101 (Switching Protocols): after a successful one the
   rest of the connection is no longer HTTP, and parsing stops there.
4. `ZeekHttpLog` is Zeek's `base/protocols/http/main.zeek` bookkeeping kept
   apart and pure: the table of pending transactions, `trans_depth`, which
   request a response belongs to, when a row is written (at the end of a
   final response; what is still pending when the connection ends), the
   headers it logs (Host, Referer, User-Agent, Origin, proxy headers, Basic
   authorisation).  The parsing rules above follow Zeek's HTTP analyser
   (src/analyzer/protocol/http/HTTP.cc): its request-line grammar and URI
   unescaping, its Content-Length and chunk-size rules, its weirds.
5. Detection: the client's first bytes are a method and a space, or the
   server's are `HTTP/`.  A request line with a version (`HTTP/1.1`) or a
   status line answering a request confirms.  A first response that is not a
   status line is a violation; a bad first request line is a weird, and the
   response side decides (Zeek logs the response to a malformed request).

Everything kept per connection is bounded: the line being assembled
(MAX_LINE), header lines per message (MAX_HEADER_LINES), unanswered requests
and pending rows (MAX_PENDING_REQUESTS).
"""
from __future__ import annotations

import base64
import binascii
import re
import zlib
from collections import deque

from analyser import (ORIG, RESP, TRANSFERS, Analyser, Field, Gap, Signature, StreamEnd,
                      conn_id_fields)
# The public AnalyserCore, named by the module that defines it: http.pxd
# cimports it from there to derive HttpCore's struct (as ftp.py does).
from analyser.runtime import AnalyserCore
from protocols._httphead import NUMBER, TEXT, TOKEN, HeadScanner

# -- limits ---------------------------------------------------------------------

READ_CHUNK = 65536              # bytes asked of the stream layer per read
MAX_LINE = 16384                # bytes of one request, status or header line kept
MAX_HEADER_LINES = 512          # header lines of one message parsed (the rest: weird)
MAX_PENDING_REQUESTS = 100      # Zeek's HTTP::max_pending_requests
TRANSFER_MIN_BYTES = 1 << 20    # default of the transfer_min_bytes option
# Bodies in these content codings are counted decompressed in http.log, as
# Zeek's HTTP_Entity does through its ZIP analyzer (zlib or gzip header
# detected; deflate without a header tried when the first data fails).
INFLATED_CODINGS = frozenset({b"gzip", b"deflate"})
INFLATE_STEP = 1 << 16          # bytes of output per decompression step (then discarded)
# Decompressed bytes counted per body: past this, a weird, and the count
# stops (a small body that inflates without bound is a decompression bomb).
MAX_INFLATED_BODY = 256 << 20

# -- Zeek's tables (scripts/base/protocols/http/main.zeek) ---------------------------

ZEEK_HTTP_METHODS = frozenset({
    "GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE", "CONNECT", "PROPFIND",
    "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "POLL", "REPORT", "SUBSCRIBE",
    "BMOVE", "SEARCH", "QUERY"})
PROXY_HEADERS = frozenset({"FORWARDED", "X-FORWARDED-FOR", "X-FORWARDED-FROM", "CLIENT-IP",
                           "VIA", "XROXY-CONNECTION", "PROXY-CONNECTION"})
BASIC_PREFIX = re.compile(r"^[bB][aA][sS][iI][cC] ")
BASIC_STRIP = re.compile(r"[bB][aA][sS][iI][cC][ \t]+")

# What a header is read for, by its upper-cased name (bits): the message's
# framing (Http.framing_header), the row Zeek logs from a request's headers
# (ZeekHttpLog.client_header), the analyser an upgrade hands the connection to
# (with every Sec-WebSocket-* header).  A header named in none of them costs
# one dictionary lookup.
FRAMING, LOGGED, UPGRADE = 1, 2, 4
HEADER_USES = {
    b"CONTENT-LENGTH": FRAMING, b"TRANSFER-ENCODING": FRAMING, b"CONTENT-ENCODING": FRAMING,
    b"EXPECT": FRAMING, b"CONNECTION": FRAMING | UPGRADE, b"UPGRADE": FRAMING | UPGRADE,
    b"HOST": LOGGED | UPGRADE, b"USER-AGENT": LOGGED | UPGRADE, b"ORIGIN": LOGGED | UPGRADE,
    b"REFERER": LOGGED, b"AUTHORIZATION": LOGGED, b"PROXY-AUTHORIZATION": LOGGED,
    **{name.encode(): LOGGED for name in PROXY_HEADERS}}
# Every Sec-WebSocket-* header is kept for an upgrade too.
WEBSOCKET_HEADER = b"SEC-WEBSOCKET-"
# http.log fields that are a request header's value as it is.
CLIENT_HEADER_FIELDS = {b"HOST": "host", b"REFERER": "referrer", b"ORIGIN": "origin",
                        b"USER-AGENT": "user_agent"}
CONNECTION_TOKENS = frozenset({b"keep-alive", b"close", b"upgrade"})
# The plain head (HEADS, protocols/_httphead.pyx): what it reads of which
# header.  Any other header of HEADER_USES (a framing one whose rules are not
# these two, a logged one that is not a field) makes a head not plain: the
# general path reads it.
PLAIN_READ = ((b"CONTENT-LENGTH", NUMBER), (b"CONNECTION", TOKEN),
              *((name, TEXT) for name in CLIENT_HEADER_FIELDS))
PLAIN_LENGTH, PLAIN_CONNECTION = 0, 1
PLAIN_FIELDS = tuple((k, CLIENT_HEADER_FIELDS[name]) for k, (name, kind) in enumerate(PLAIN_READ)
                     if kind == TEXT)
PLAIN_KEPT = tuple((k, name) for k, (name, _) in enumerate(PLAIN_READ)
                   if HEADER_USES[name] & UPGRADE)
# A header name as it comes (before strip and upper-casing) -> (the upper-cased
# name, its HEADER_USES bits or 0): the few names a trace uses are cut once.
# Bounded: past MAX_HEADER_NAMES distinct names they are cut every time.
MAX_HEADER_NAMES = 4096
HEADER_NAMES: dict[bytes, tuple[bytes, int]] = {}
# A whole header line as it comes -> what headers_done needs of it
# (header_line()): the lines a client or a server sends in every message
# (Accept..., Server, Connection) are cut once.  Emptied when it holds
# MAX_HEADER_LINES_KNOWN lines (lines that never repeat, Date..., pass through);
# lines longer than MAX_KNOWN_LINE are not kept (about 8 MiB at most).
MAX_HEADER_LINES_KNOWN = 8192
MAX_KNOWN_LINE = 200
HEADER_LINES: dict[bytes, tuple] = {}
# Methods whose request line starts a client's first payload (Zeek's dpd.sig
# lists these and more; the port hints and the server's `HTTP/` find the rest).
SIGNATURE_METHODS = (b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"CONNECT",
                     b"PATCH", b"TRACE", b"PROPFIND", b"PROPPATCH", b"MKCOL", b"COPY", b"MOVE",
                     b"LOCK", b"UNLOCK", b"REPORT", b"SEARCH", b"QUERY")

# -- logs -------------------------------------------------------------------------------

HTTP_LOG = (
    Field("ts", "time", "time of the request (of the response when there was none)"),
    Field("uid", "string", "unique id of the connection"),
    *conn_id_fields("client", "server"),
    Field("trans_depth", "count", "the transaction's number in the connection (pipelining "
                                  "depth)"),
    Field("method", "string", "request method (GET, POST, ...)"),
    Field("host", "string", "the Host header, port included"),
    Field("uri", "string", "request URI, %-escapes decoded as Zeek does"),
    Field("referrer", "string", "the Referer header"),
    Field("version", "string", "HTTP version of the response (0.9 for a bare one)"),
    Field("user_agent", "string", "the User-Agent header"),
    Field("origin", "string", "the Origin header"),
    Field("request_body_len", "count", "request body bytes after transfer decoding "
                                       "(chunk headers excluded)"),
    Field("response_body_len", "count", "response body bytes after transfer decoding "
                                        "(chunk headers excluded)"),
    Field("status_code", "count", "status code of the response"),
    Field("status_msg", "string", "reason phrase of the response"),
    Field("info_code", "count", "last 1xx status code before the final response"),
    Field("info_msg", "string", "its reason phrase"),
    Field("tags", "set[enum]", "Zeek's HTTP::Tags (always empty)"),
    Field("username", "string", "user name of Basic authorisation"),
    Field("password", "string", "its password, with the capture_password option only"),
    Field("proxied", "set[string]", "proxy headers seen, as 'NAME -> value'"),
    Field("orig_fuids", "vector[string]", "file ids (no file analysis: unset)"),
    Field("orig_filenames", "vector[string]", "unset"),
    Field("orig_mime_types", "vector[string]", "unset"),
    Field("resp_fuids", "vector[string]", "unset"),
    Field("resp_filenames", "vector[string]", "unset"),
    Field("resp_mime_types", "vector[string]", "unset"),
)

# -- wire grammar (HTTP.cc) -------------------------------------------------------------

# RFC 9110 token characters: what a method is made of.
TOKEN_CHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
TOKEN = re.compile(TOKEN_CHAR + b"*")
# Characters Zeek accepts in a URI before it looks for " HTTP/" (RFC 3986
# reserved and unreserved, and '%').
URI_CHAR = rb"[A-Za-z0-9:/?#\[\]@!$&'()*+,;=\-_.~%]"
URI_CHARS = re.compile(URI_CHAR + b"*")
# The lines nearly every message starts with, "GET /path HTTP/1.1" and
# "HTTP/1.1 200 OK": one match gives what the general parsers below would
# (they still decide every other line, and the cases noted there).
PLAIN_REQUEST = re.compile(rb"(%s+)[ \t]+(%s+)[ \t]+HTTP/([0-9])\.([0-9])"
                           % (TOKEN_CHAR, URI_CHAR))
PLAIN_STATUS = re.compile(rb"HTTP/([0-9])\.([0-9])[ \t]+([0-9]{3})[ \t]+(.*)")
WHITESPACE = b" \t"
HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
INT64_MAX = (1 << 63) - 1
DIGITS = re.compile(rb"-?[0-9]+")
HEX_NUMBER = re.compile(rb"-?[0-9a-fA-F]+")
# A MIME token (what Zeek's get_value_token returns): up to a space or tspecial.
VALUE_TOKEN = re.compile(rb"[^\x00-\x20()<>@,;:\\\"/\[\]?=\x7f]*")

# Reads plain heads in C (protocols/_httphead.pyx); None: the general path
# reads every head (the tests compare the two).
HEADS = HeadScanner([(name, kind, HEADER_USES[name] & UPGRADE) for name, kind in PLAIN_READ],
                    [name for name in HEADER_USES if name not in dict(PLAIN_READ)],
                    WEBSOCKET_HEADER, CONNECTION_TOKENS, MAX_LINE, MAX_HEADER_LINES)

# Side states.
FIRST, HEADERS, BODY, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, TRAILER, UNTIL_CLOSE, \
    HTTP09, NOTHING = range(10)
# Whether a message may have a body (HTTP.cc's HTTP_BODY_*).
BODY_NOT_EXPECTED, BODY_MAYBE, BODY_EXPECTED = range(3)
NO_VERSION = (0, 0)
HTTP_1_0 = (1, 0)               # a version above it means keep-alive


def atoi(data: bytes, pattern=DIGITS, base: int = 10) -> int | None:
    """std::from_chars as Zeek's atoi_n uses it: the leading number (int64),
    None when there is none or it overflows."""
    m = pattern.match(data)
    if not m or m.group() in (b"", b"-"):
        return None
    value = int(m.group(), base)
    if not -INT64_MAX - 1 <= value <= INT64_MAX:
        return None
    return value


def text(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace")


def header_text(line: bytes) -> tuple[str, str]:
    """(name in lower case, value) of a header line, as headers_done reads it."""
    name, _, value = line.partition(b":")
    return text(name.strip()).lower(), text(value.strip(b" \t"))


def version_of(data: bytes) -> tuple[int, int]:
    """HTTP.cc's HTTP_Version: only d.d is recognised; (0, 0) otherwise."""
    if len(data) >= 3 and 48 <= data[0] <= 57 and data[1] == 46 and 48 <= data[2] <= 57:
        return (data[0] - 48, data[2] - 48)
    return NO_VERSION


def version_text(v: tuple[int, int]) -> str:
    known = VERSION_TEXTS.get(v)
    return known if known is not None else "%.1f" % (v[0] + v[1] * 0.1)


VERSION_TEXTS = {(major, minor): "%.1f" % (major + minor * 0.1)
                 for major in range(10) for minor in range(10)}


def unescape_uri(uri: bytes, weird) -> bytes:
    """Zeek's unescape_URI: %XX and %uXXXX decoded, with its weirds."""
    if b"%" not in uri:
        return uri
    out = bytearray()
    i, n = 0, len(uri)
    while i < n:
        c = uri[i]
        if c != 37:                                   # '%'
            out.append(c)
            i += 1
            continue
        i += 1
        if i == n:
            out.append(37)
            weird("illegal_%_at_end_of_URI")
            break
        if i + 1 == n:
            out += b"%" + uri[i:i + 1]
            weird("partial_escape_at_end_of_URI")
            break
        if uri[i] == 37:
            weird("double_%_in_URI")                  # the first '%' is dropped
            continue
        if uri[i] in HEX_DIGITS and uri[i + 1] in HEX_DIGITS:
            out.append(int(uri[i:i + 2], 16))
            i += 2
        elif n - i >= 5 and uri[i] == 117 and all(b in HEX_DIGITS for b in uri[i + 1:i + 5]):
            if uri[i + 1:i + 3] != b"00":
                out.append(int(uri[i + 1:i + 3], 16))
            out.append(int(uri[i + 3:i + 5], 16))
            i += 5
        else:
            weird("unescaped_%_in_URI")
            out += b"%" + uri[i:i + 1]
            i += 1
    return bytes(out)


def header_block(data: bytes, pos: int) -> tuple[list[bytes], int] | None:
    """The header lines from `pos` to the empty line that ends them, and where
    the bytes after it start; None when the block does not end in `data`, is
    longer than MAX_LINE or has a line starting with white space (then it is
    cut line by line, with the limits' weirds, and folded lines are marked).
    Lines end at LF, one CR before it dropped, as Http.feed cuts them."""
    if data.startswith(b"\r\n", pos):
        return [], pos + 2
    if data.startswith(b"\n", pos):
        return [], pos + 1
    # Every line ending a CRLF, as nearly always: one search, one split.
    end = data.find(b"\r\n\r\n", pos, pos + MAX_LINE + 4)
    if end >= 0:
        block = data[pos:end]
        lines = block.split(b"\r\n")
        if block.count(b"\n") == len(lines) - 1:      # no LF alone before
            return None if folded(lines) else (lines, end + 4)
    crlf = data.find(b"\n\r\n", pos, pos + MAX_LINE + 3)
    lf = data.find(b"\n\n", pos, pos + MAX_LINE + 2)
    if lf >= 0 and (crlf < 0 or lf < crlf):
        end, after = lf + 1, lf + 2
    elif crlf >= 0:
        end, after = crlf + 1, crlf + 3
    else:
        return None
    block = data[pos:end]                         # the lines, each with its LF
    if block.count(b"\n") == block.count(b"\r\n"):
        lines = block[:-2].split(b"\r\n")
    else:
        lines = [line[:-1] if line.endswith(b"\r") else line
                 for line in block[:-1].split(b"\n")]
    return None if folded(lines) else (lines, after)


def header_name(name: bytes) -> tuple[bytes, int]:
    """(upper-cased name, HEADER_USES bits) of a header's raw name, cached."""
    upper = name.strip().upper()
    uses = HEADER_USES.get(upper, 0)
    if not uses and upper.startswith(WEBSOCKET_HEADER):
        uses = UPGRADE
    known = (upper, uses)
    if len(HEADER_NAMES) < MAX_HEADER_NAMES:
        HEADER_NAMES[name] = known
    return known


def header_line(name: tuple[bytes, int], value: bytes) -> tuple:
    """What headers_done needs of a header line: () when nothing reads the
    header; else (upper-cased name, value stripped, whether it is framing,
    logged, (http.log field, value as text) or None, kept for an upgrade)."""
    upper, uses = name
    if not uses:
        return ()
    value = value.strip(b" \t")
    field = CLIENT_HEADER_FIELDS.get(upper)
    return (upper, value, uses & FRAMING != 0, uses & LOGGED != 0,
            None if field is None else (field, text(value)), uses & UPGRADE != 0)


def folded(lines: list[bytes]) -> bool:
    """Whether a header line starts with white space: obsolete line folding.
    (A typed loop in the build: once per header block.)"""
    for line in lines:
        if line and line[0] in (32, 9):
            return True
    return False


class RequestLine:
    """A parsed request line (HTTP.cc's HTTP_RequestLine and ParseRequest)."""
    __slots__ = ("method", "uri", "version", "error")

    def __init__(self, method=b"", uri=b"", version=None, error=None):
        self.method, self.uri, self.version, self.error = method, uri, version, error


def parse_request_line(line: bytes, weird) -> RequestLine:
    """Zeek's grammar: a method token, whitespace, then everything up to the
    whitespace before the first `HTTP/` is the URI (URI characters first);
    no `HTTP/` is HTTP/0.9.  `version` is (major, minor), (0, 9), or None
    for an unreadable one; `error` names the weird of a line that is not a
    request."""
    plain = PLAIN_REQUEST.fullmatch(line)
    if plain is not None:
        method, uri, major, minor = plain.groups()
        version = (major[0] - 48, minor[0] - 48)
        # The grammar below reads a URI that starts like "HTTP/" as a
        # missing one, and an HTTP/0.9 line by other rules.
        if version != (0, 9) and uri[:5].upper() != b"HTTP/":
            return RequestLine(method, uri, version)
    end_method = TOKEN.match(line).end()
    if end_method == 0:
        if len(line) >= 9 and line[-9:-3].lower() == b" http/":
            return RequestLine(error="bad_HTTP_request_with_version")
        return RequestLine(error="bad_HTTP_request")
    rest = line[end_method:].lstrip(WHITESPACE)
    if len(rest) == len(line) - end_method:
        return RequestLine(error="bad_HTTP_request")
    end_uri = URI_CHARS.match(rest).end()
    starts = rest[:5]
    if starts != b"HTTP/" and starts.upper() == b"HTTP/":
        weird("lowercase_HTTP_keyword")
    if end_uri >= len(rest) and starts.upper() == b"HTTP/":
        weird("missing_HTTP_uri")
        end_uri = 0
    version_start = -1
    pos = end_uri
    n = len(rest)
    while pos < n:
        end_uri = pos
        start = pos
        while start < n and rest[start] in WHITESPACE:
            start += 1
        word = rest[start:start + 5]
        if word == b"HTTP/":
            version_start = start
            break
        if word.upper() == b"HTTP/":
            weird("lowercase_HTTP_keyword")
            version_start = start
            break
        pos = start + 1
    if version_start < 0:
        version = (0, 9)
    elif version_start + 8 <= n:
        version = version_of(rest[version_start + 5:])
    else:
        version = None                                # Zeek's bad_HTTP_version event
    uri = rest[:end_uri]
    if version == (0, 9) and (end_method < 3 or not uri):
        return RequestLine(error="bad_HTTP_request")
    return RequestLine(line[:end_method], uri, version)


def parse_status_line(line: bytes, weird):
    """HTTP.cc's HTTP_ReplyLine: (version, code, reason) or None when the line
    is not a status line.  `reason` None: none was given (Zeek logs <empty>)."""
    plain = PLAIN_STATUS.fullmatch(line)
    if plain is not None:
        major, minor, code, reason = plain.groups()
        return (major[0] - 48, minor[0] - 48), int(code), reason
    head = line[:5]
    if head != b"HTTP/":
        if head.upper() != b"HTTP/":
            return None
        weird("lowercase_HTTP_keyword")
    version = version_of(line[5:8])
    n = len(line)
    pos = 5
    while pos < n and line[pos] not in WHITESPACE:
        pos += 1
    if pos >= n:
        return None                                   # HTTP_reply_code_missing
    while pos < n and line[pos] in WHITESPACE:
        pos += 1
    if pos + 3 > n:
        return None
    digits = line[pos:pos + 3]
    code = int(digits) if digits.isdigit() else 0
    pos += 3
    while pos < n and line[pos] not in WHITESPACE:
        pos += 1
    if pos >= n:
        return version, code, None
    return version, code, line[pos:].lstrip(WHITESPACE)


# -- Zeek's http.log bookkeeping ------------------------------------------------------

class ZeekHttpLog:
    """Zeek's HTTP::State for one connection: `request`, `reply`, `header`,
    `message_done` and `finalize` are the script's http_request, http_reply,
    http_header, http_message_done handlers and its removal hook, in their
    effect on the rows.  Rows go to `write(row)`, anomalies to
    `weird(name, detail)`.  (An extension type in the build, http.pxd: its
    calls from HttpCore are C calls, its state struct fields.)"""

    def __init__(self, conn_id, uid: str, write, weird, capture_password: bool = False):
        self.id, self.uid = conn_id, uid
        self.write, self.weird = write, weird
        self.capture_password = capture_password
        self.pending: dict[int, dict] = {}
        self.current_request = 0
        self.current_response = 0
        self.trans_depth = 0
        # What every row of the connection starts with (copied per row).
        self.new_row = {"ts": 0.0, "uid": uid, "id.orig_h": conn_id.orig_h,
                        "id.orig_p": conn_id.orig_p, "id.resp_h": conn_id.resp_h,
                        "id.resp_p": conn_id.resp_p, "trans_depth": 0,
                        "request_body_len": 0, "response_body_len": 0, "tags": None}

    def _new(self, ts: float) -> dict:
        self.trans_depth += 1
        row = self.new_row.copy()         # (a copy and three stores: no keyword dict)
        row["ts"] = ts
        row["trans_depth"] = self.trans_depth
        row["tags"] = []
        return row

    def _state(self, ts: float, is_orig: bool) -> dict:
        index = self.current_request if is_orig else self.current_response
        row = self.pending.get(index)
        if row is None:
            row = self.pending[index] = self._new(ts)
        return row

    def request(self, ts: float, method: str, uri: str) -> None:
        if self.current_request < self.current_response:
            self.weird("HTTP_response_before_request", "")
            self.current_request = self.current_response
        if len(self.pending) > MAX_PENDING_REQUESTS:
            self.weird("HTTP_excessive_pipelining", str(len(self.pending)))
            if self.current_response == 0:
                self.current_response += 1
            while self.current_response < self.current_request:
                row = self.pending.pop(self.current_response, None)
                if row is not None:
                    self.write(row)
                self.current_response += 1
        index = self.current_request = self.current_request + 1
        row = self.pending.get(index)
        if row is None:
            row = self.pending[index] = self._new(ts)
        row["method"] = method
        row["uri"] = uri
        if method not in ZEEK_HTTP_METHODS:
            self.weird("unknown_HTTP_method", method)

    def reply(self, ts: float, version: str, code: int, reason: str) -> None:
        current = self.pending.get(self.current_response)
        if current is None or (current.get("status_code") is not None
                               and not 100 <= current["status_code"] <= 199):
            self.current_response += 1
        row = self._state(ts, False)
        row["status_code"] = code
        row["status_msg"] = reason
        row["version"] = version
        if 100 <= code <= 199:
            row["info_code"] = code
            row["info_msg"] = reason

    def header_row(self, ts: float, is_orig: bool) -> dict:
        """The row http_header works on: a message's first header (with a
        colon) creates it when the message has none (a response whose row was
        written already); it is the same row for every header of a block."""
        return self._state(ts, is_orig)

    def client_header(self, row: dict, name: bytes, value: bytes) -> None:
        """A request header the row logs (HEADER_USES' LOGGED names, upper
        case): Zeek's http_header for a client."""
        field = CLIENT_HEADER_FIELDS.get(name)
        if field is not None:
            row[field] = text(value)
            return
        name, value = text(name), text(value)
        if name in PROXY_HEADERS:
            proxied = row.setdefault("proxied", [])
            entry = "%s -> %s" % (name, value)
            if entry not in proxied:
                proxied.append(entry)
        elif name in ("AUTHORIZATION", "PROXY-AUTHORIZATION") and BASIC_PREFIX.match(value):
            userpass = self._base64(BASIC_STRIP.sub("", value, count=1))
            user, colon, password = userpass.partition(":")
            if colon:
                row["username"] = user
                if self.capture_password:
                    row["password"] = password
            else:
                row["username"] = "<problem-decoding> (%s)" % value
                if self.capture_password:
                    row["password"] = userpass

    def _base64(self, value: str) -> str:
        try:
            return text(base64.b64decode(value.strip() + "==="[:(-len(value.strip())) % 4]))
        except (binascii.Error, ValueError):
            self.weird("base64_illegal_encoding", value[:100])
            return ""

    def message_done(self, ts: float, is_orig: bool, body_length: int) -> None:
        pending = self.pending
        index = self.current_request if is_orig else self.current_response
        row = pending.get(index)
        if row is None:
            row = pending[index] = self._new(ts)
        if is_orig:
            row["request_body_len"] = body_length
            return
        row["response_body_len"] = body_length
        code = row.get("status_code")
        if code is None or not 100 <= code <= 199:
            self.write(row)
            pending.pop(index, None)

    def finalize(self) -> None:
        if not self.pending:
            return                        # (the usual end: every row written)
        for index in sorted(self.pending):
            if index:                     # Zeek never uses index 0
                self.write(self.pending[index])
        self.pending.clear()


# -- per-side state ----------------------------------------------------------------------

class Request:
    """A request as the response side and transfers.log need it."""
    __slots__ = ("ts", "method", "uri", "content_length", "body_length", "end_ts")

    def __init__(self, ts: float, method: str, uri: str):
        self.ts, self.method, self.uri = ts, method, uri
        self.content_length: int | None = None
        self.body_length = 0
        self.end_ts: float | None = None


class Side:
    """One direction's parser state: where it is in a message, and the
    message's framing (HTTP.cc's HTTP_Message and HTTP_Entity, reduced to
    what the logs need)."""
    __slots__ = ("is_orig", "state", "partial", "cutting", "headers", "remaining",
                 "body_length", "content_length", "chunked", "expect_body", "version",
                 "ongoing", "start_ts", "encoded", "request", "code", "expect_100",
                 "headers_dropped", "folded", "inflater", "inflated")

    def __init__(self, is_orig: bool):
        self.is_orig = is_orig
        self.state = FIRST
        self.partial = b""          # a line not yet complete
        self.cutting = False        # dropping the rest of an overlong line
        self.version = NO_VERSION   # HTTP.cc's request_version / reply_version
        self.ongoing = False
        self.request: Request | None = None
        # new_message(0.0), inlined: a connection costs less to start.
        self.headers: list[bytes] = []
        self.headers_dropped = False
        self.folded = False
        self.remaining = 0
        self.body_length = 0
        self.content_length = -1
        self.chunked = False
        self.expect_body = BODY_MAYBE
        self.start_ts = 0.0
        self.encoded = False
        self.code = 0
        self.expect_100 = False
        self.inflater = None        # the body's decompressor (False: ended or failed)
        self.inflated = -1          # its decompressed bytes; -1: not a compressed body

    def new_message(self, ts: float) -> None:
        self.headers: list[bytes] = []
        self.headers_dropped = False
        self.folded = False         # a header line starts with white space
        self.remaining = 0
        self.body_length = 0
        self.content_length = -1
        self.chunked = False
        self.expect_body = BODY_MAYBE
        self.start_ts = ts
        self.encoded = False
        self.code = 0
        self.expect_100 = False
        self.inflater = None
        self.inflated = -1


class HttpCore(AnalyserCore):
    """The HTTP analyser's per-packet half: a side's bytes cut into lines
    and bodies, request and status lines, header blocks, message ends.  It
    runs for every packet of every HTTP connection, so the build makes it
    an extension type (http.pxd): its state and the sides' are struct
    fields and its calls C calls.  `Http` below adds the declarations and
    the rarer paths (gaps, chunks, decompression, tunnels, transfers),
    which these methods call as plain methods."""

    def feed_side(self, side: int, data: bytes) -> bool:
        """read_any_into's handler: a chunk of a side.  True once parsing
        has stopped."""
        self.feed(self.sides[side], data if type(data) is bytes else bytes(data))
        return self.stopped

    def feed(self, s: Side, data: bytes) -> None:
        if s.partial:
            data = s.partial + data
            s.partial = b""
        elif s.state == FIRST and not s.is_orig and not self._confirmed:
            # Before confirmation, a response that does not start like a status
            # line is not HTTP: say so at once, not after MAX_LINE bytes.
            head = data[:64].lstrip(b"\r\n")[:5].upper()
            if head and b"HTTP/"[:len(head)] != head:
                self.end()
                self.violation("not a http reply line", data[:64])
        pos = 0
        n = len(data)
        ts = self._rt.now_ts()          # (the packet's: the same for all of it)
        whole_blocks = True             # header_block() may find the next block's end
        heads = HEADS                   # (None: every head takes the general path)
        while pos < n and not self.stopped:
            state = s.state
            if state == BODY or state == CHUNK_DATA:
                take = n - pos
                remaining = s.remaining
                if s.inflater:
                    # A compressed body is read, not skipped: it is counted
                    # decompressed.
                    self.inflate(s, data[pos:pos + remaining])
                if take >= remaining:
                    pos += remaining
                    s.body_length += remaining
                    s.remaining = 0
                    if state == BODY:
                        self.message_done(s, ts)
                    else:
                        s.state = CHUNK_END
                    continue
                remaining -= take
                if remaining > 1 and s.inflated < 0:
                    # The rest but its last byte is skipped in compiled code; the
                    # last byte wakes us when the body is complete.
                    self.skip(ORIG if s.is_orig else RESP, remaining - 1)
                    s.body_length += take + remaining - 1
                    s.remaining = 1
                else:
                    s.body_length += take
                    s.remaining = remaining
                break
            if state == UNTIL_CLOSE or state == HTTP09:
                if state == HTTP09 and not s.ongoing:
                    self.http09_reply(s)
                if s.inflater:
                    self.inflate(s, data[pos:] if pos else data)
                s.body_length += n - pos
                break
            if state == NOTHING:
                break
            if state == FIRST and not s.cutting and (not s.is_orig or not self.request_failed) \
                    and heads is not None:
                # The usual case, a plain head whole in this packet, read in C
                # (protocols/_httphead.pyx: anything else is None).
                parts = heads.request(data, pos) if s.is_orig else heads.response(data, pos)
                if parts is not None:
                    if s.is_orig:
                        self.start_request(s, parts[2], parts[3], parts[4], ts)
                    else:
                        self.start_response(s, parts[2], parts[3], parts[4], ts)
                    whole_blocks = True
                    if s.state != HEADERS:
                        pos = parts[1]          # (the headers, line by line)
                        continue
                    pos = parts[0]
                    self.plain_head(s, parts[5], parts[6], parts[7], ts)
                    if self.tunnel and not s.is_orig:
                        self.unread = {RESP: data[pos:]}
                        break
                    continue
            if state == FIRST and not s.cutting:
                # The usual case: a message's first line and its whole header
                # block in this packet, every line ending in CRLF: one search,
                # one split (what the line-by-line path below and
                # header_block() would cut, when they get the same lines).
                end = data.find(b"\r\n\r\n", pos, pos + MAX_LINE)
                if end > pos:
                    block = data[pos:end]
                    lines = block.split(b"\r\n")
                    first = lines[0]
                    if first and block.count(b"\n") == len(lines) - 1:
                        if s.is_orig:
                            self.request_line(s, first, ts)
                        else:
                            self.status_line(s, first, ts)
                        pos += len(first) + 2
                        whole_blocks = True
                        if s.state != HEADERS:
                            continue
                        del lines[0]
                        if lines and (len(lines) > MAX_HEADER_LINES or folded(lines)):
                            continue              # cut line by line below
                        s.headers = lines
                        pos = end + 4
                        self.headers_done(s, ts)
                        if self.tunnel and not s.is_orig:
                            self.unread = {RESP: data[pos:]}
                            break
                        continue
            if state == HEADERS and not s.cutting and whole_blocks:
                # The usual case: the packet holds the rest of the header block,
                # cut into lines at once.  Else the block is cut line by line,
                # not searched again (its end is not within reach).
                cut = header_block(data, pos)
                whole_blocks = False
                if cut is not None and len(s.headers) + len(cut[0]) <= MAX_HEADER_LINES:
                    whole_blocks = True
                    lines, pos = cut
                    if s.headers:
                        s.headers += lines
                    else:
                        s.headers = lines
                    self.headers_done(s)
                    if self.tunnel and not s.is_orig:
                        # What follows a response's header block is the tunnel's.
                        self.unread = {RESP: data[pos:]}
                        break
                    continue
            if s.cutting:
                nl = data.find(b"\n", pos)
                if nl < 0:
                    break
                s.cutting = False
                pos = nl + 1
                continue
            nl = data.find(b"\n", pos)
            if nl < 0:
                rest = data[pos:]
                if len(rest) > MAX_LINE:
                    self.weird("HTTP_line_too_long", side=self.side_name(s), limit=MAX_LINE)
                    s.cutting = True
                    self.line(s, rest[:MAX_LINE])
                else:
                    s.partial = rest
                break
            end = nl - 1 if nl > pos and data[nl - 1] == 13 else nl
            if end - pos > MAX_LINE:
                self.weird("HTTP_line_too_long", side=self.side_name(s), limit=MAX_LINE)
                end = pos + MAX_LINE
            line = data[pos:end]
            pos = nl + 1
            if state == HEADERS and not line and not s.is_orig:
                # A response's header block ends: if a tunnel follows, what
                # comes after it is the tunnel's.
                self.line(s, line)
                whole_blocks = True
                if self.tunnel:
                    self.unread = {RESP: data[pos:]}
                    break
                continue
            if state == HEADERS and line and s.state == HEADERS:
                if len(s.headers) < MAX_HEADER_LINES:
                    s.headers.append(line)
                    if line[0] in (32, 9):
                        s.folded = True
                elif not s.headers_dropped:
                    s.headers_dropped = True
                    self.weird("HTTP_too_many_headers", side=self.side_name(s),
                               limit=MAX_HEADER_LINES)
                continue
            self.line(s, line)
            whole_blocks = True             # a message may start here

    def line(self, s: Side, line: bytes) -> None:
        """A complete line of a side in a line state."""
        state = s.state
        if state == HEADERS:
            self.headers_done(s)                      # the empty line
        elif state == FIRST:
            if s.is_orig:
                self.request_line(s, line)
            else:
                self.status_line(s, line)
        elif state == CHUNK_SIZE:
            self.chunk_size(s, line)
        elif state == CHUNK_END:
            if line:
                self.weird("HTTP_chunk_data_before_CRLF", side=self.side_name(s))
            s.state = CHUNK_SIZE
        elif state == TRAILER:
            if not line:
                self.message_done(s)

    def request_line(self, s: Side, line: bytes, ts: float | None = None) -> None:
        if self.request_failed:
            return
        # "GET /path HTTP/1.1" as parse_request_line() reads it, without its
        # object (its own first test, inlined); any other line goes there.
        plain = PLAIN_REQUEST.fullmatch(line)
        if plain is not None:
            method, uri, major, minor = plain.groups()
            version = (major[0] - 48, minor[0] - 48)
            if version == (0, 9) or ((uri[0] | 32) == 104 and uri[:5].upper() == b"HTTP/"):
                plain = None
        if plain is None:
            req = parse_request_line(line, self._weird_plain)
            if req.error is not None:
                self.bad_request_line(s, line, req.error)
                return
            method, uri, version = req.method, req.uri, req.version
        self.start_request(s, method, uri, version, ts)

    def start_request(self, s: Side, method: bytes, uri: bytes, version, ts) -> None:
        """A request line read (`version` None: none was given): the request
        and its row begin, the side reads its headers."""
        if version is not None:
            self.set_version(s, version)
        num_requests = self.num_requests = self.num_requests + 1
        if num_requests > 1 and not self.keep_alive:
            self.weird("unexpected_multiple_HTTP_requests")
        if ts is None:
            ts = self._rt.now_ts()
        method = method.decode("utf-8", "backslashreplace")
        if uri.find(b"%") >= 0:               # (`in` on bytes raises and clears an error)
            uri = unescape_uri(uri, self._weird_plain)
        uri = uri.decode("utf-8", "backslashreplace")
        request = Request(ts, method, uri)
        unanswered = self.unanswered
        if len(unanswered) >= MAX_PENDING_REQUESTS:
            unanswered.popleft()
            self.weird("HTTP_too_many_unanswered_requests", limit=MAX_PENDING_REQUESTS)
        unanswered.append(request)
        if len(method) == 7 and method.upper() == "CONNECT":
            self.connect_request = True
        if version is not None and version != NO_VERSION and version != (0, 9) \
                and not self._confirmed:
            self.confirm()
        self.zeek.request(ts, method, uri)
        s.new_message(ts)
        s.request = request
        s.ongoing = True
        s.state = HEADERS
        if version == (0, 9):
            if method != "GET":
                self.weird("invalid_http_09_request_method", detail=method)
            r = self.sides[RESP]
            if r.ongoing:
                self.weird("http_09_reply_before_request")
                self.message_done(r)
            r.state = HTTP09
            r.partial = b""

    def status_line(self, s: Side, line: bytes, ts: float | None = None) -> None:
        # "HTTP/1.1 200 OK" as parse_status_line() reads it (its first test,
        # inlined); any other line goes there.
        plain = PLAIN_STATUS.fullmatch(line)
        if plain is not None:
            major, minor, code, reason = plain.groups()
            version = (major[0] - 48, minor[0] - 48)
            code = int(code)
        else:
            status = parse_status_line(line, self._weird_plain)
            if status is None:
                if not line:
                    return
                self.end()
                self.violation("not a http reply line", line)
            version, code, reason = status
        self.start_response(s, version, code, reason, ts)

    def start_response(self, s: Side, version, code: int, reason: bytes | None, ts) -> None:
        """A status line read (`reason` None: it had none): the row gets the
        status, the side reads its headers."""
        self.set_version(s, version)
        unanswered = self.unanswered
        if unanswered and not self._confirmed:
            self.confirm()
        if ts is None:
            ts = self._rt.now_ts()
        version = VERSION_TEXTS.get(s.version)
        self.zeek.reply(ts, version if version is not None else version_text(s.version), code,
                        "<empty>" if reason is None else
                        reason.decode("utf-8", "backslashreplace"))
        if self.connect_request and code // 100 != 2:
            self.connect_request = False
        s.new_message(ts)
        s.code = code
        s.ongoing = True
        s.state = HEADERS
        method = unanswered[0].method if unanswered else ""
        if 100 <= code < 200 or code == 204 or code == 304 or \
                (len(method) == 4 and method.upper() == "HEAD"):
            s.expect_body = BODY_NOT_EXPECTED
        else:
            s.expect_body = BODY_EXPECTED

    def headers_done(self, s: Side, ts: float | None = None) -> None:
        """The header block of a message is complete: Zeek's http_header for each,
        then the body's framing (HTTP_Entity::SubmitAllHeaders)."""
        is_orig = s.is_orig
        headers = s.headers
        if headers:
            if s.folded:
                headers = self.unfold(headers)
            zeek = self.zeek
            upgrade = self.upgrade_headers[is_orig]
            names = HEADER_NAMES
            known_lines = HEADER_LINES
            row = None
            for h in headers:
                known = known_lines.get(h)
                if known is None:
                    name, colon, value = h.partition(b":")
                    if not colon:
                        self.weird("HTTP_header_without_colon", side=self.side_name(s))
                        continue
                    known = header_line(names.get(name) or header_name(name), value)
                    if len(h) <= MAX_KNOWN_LINE:
                        if len(known_lines) >= MAX_HEADER_LINES_KNOWN:
                            known_lines.clear()
                        known_lines[h] = known
                if row is None:
                    # (header_row() when the row is not there yet)
                    row = zeek.pending.get(zeek.current_request if is_orig
                                           else zeek.current_response)
                    if row is None:
                        row = zeek.header_row(self._rt.now_ts() if ts is None else ts, is_orig)
                if not known:
                    continue                  # a header nothing reads
                upper, value, framing, logged, field, upgrades = known
                if framing:
                    self.framing_header(s, upper, value)
                if logged and is_orig:
                    if field is not None:     # client_header()'s first case, inlined
                        row[field[0]] = field[1]
                    else:
                        zeek.client_header(row, upper, value)
                if upgrades:
                    upgrade[upper] = h
            s.headers = []
            s.folded = False
        self.head_done(s, ts)

    def head_done(self, s: Side, ts) -> None:
        """A message's head is read: where its body ends (HTTP_Entity's
        framing), and whether a tunnel follows a response."""
        is_orig = s.is_orig
        if s.expect_body == BODY_NOT_EXPECTED:
            self.message_done(s, ts)
        elif s.chunked:
            s.state = CHUNK_SIZE
        elif s.content_length >= 0:
            if s.content_length > 0:
                s.state = BODY
                s.remaining = s.content_length
            else:
                self.message_done(s, ts)
        elif self.connection_close or s.encoded or s.expect_body == BODY_EXPECTED:
            # No length: the body runs to the close.
            s.state = UNTIL_CLOSE
        else:
            self.message_done(s, ts)
        if not is_orig and (self.connect_request or self.upgrade or self.upgrade_protocol
                            or s.code == 101) and self.tunnel_follows(s):
            self.stop()

    def plain_head(self, s: Side, values: list | None, lines: list | None, count: int,
                   ts: float) -> None:
        """headers_done() for a head HEADS read whole: its only framing
        headers are a plain Content-Length and Connection (framing_header()'s
        cases for them, which can report no weird here), a request's logged
        headers go to its row, the upgrade's lines are kept."""
        is_orig = s.is_orig
        if values is not None:
            n = values[PLAIN_LENGTH]
            if n is not None:
                s.content_length = n
                if is_orig and s.request is not None:
                    s.request.content_length = n
            token = values[PLAIN_CONNECTION]
            if token is not None:
                self.connection_token(s, token)
        if count:
            zeek = self.zeek
            row = zeek.pending.get(zeek.current_request if is_orig else zeek.current_response)
            if row is None:
                row = zeek.header_row(ts, is_orig)
            if values is not None:
                if is_orig:
                    for k, field in PLAIN_FIELDS:
                        if values[k] is not None:
                            row[field] = values[k]
                upgrade = self.upgrade_headers[is_orig]
                for k, name in PLAIN_KEPT:
                    if lines[k] is not None:
                        upgrade[name] = lines[k]
        self.head_done(s, ts)

    def framing_header(self, s: Side, upper: bytes, value: bytes) -> None:
        """What a header changes in the message's framing and the connection."""
        if upper == b"CONTENT-LENGTH":
            if s.chunked:
                self.weird("HTTP_content_length_and_chunked")
            # A plain number (what atoi reads without overflow) needs neither
            # regex.
            if value.isdigit() and len(value) < 19:
                token = value
                n = int(value)
            else:
                token = VALUE_TOKEN.match(value).group()
                n = atoi(token) if token else None
            if token:
                if n is not None and n >= 0:
                    if n > 0 and token[0] == 48:
                        self.weird("HTTP_content_length_leading_zeros", detail=text(token))
                    s.content_length = n
                    if s.request is not None and s.is_orig:
                        s.request.content_length = n
                    if n == 0 and s.expect_100:
                        self.weird("HTTP_content_length_0_and_expect_100_cont")
                else:
                    self.weird("HTTP_bad_content_length", detail=text(token))
                    s.content_length = 0
        elif upper == b"TRANSFER-ENCODING":
            token = VALUE_TOKEN.match(value).group()
            # Zeek honours chunked in HTTP/1.1 messages only.
            if token.lower() == b"chunked" and s.version == (1, 1):
                s.chunked = True
                if value[len(token):].strip():
                    self.weird("HTTP_chunked_multi", detail=text(value[len(token):]))
                if s.content_length >= 0:
                    self.weird("HTTP_content_length_and_chunked")
        elif upper == b"CONTENT-ENCODING":
            token = VALUE_TOKEN.match(value).group().lower()
            if token in (b"gzip", b"x-gzip", b"deflate"):
                s.encoded = True
            if token in INFLATED_CODINGS:
                s.inflater = zlib.decompressobj(zlib.MAX_WBITS + 32)
                s.inflated = 0
        elif upper == b"CONNECTION":
            token = value.lower()
            if token not in CONNECTION_TOKENS:      # else the whole value is the token
                token = VALUE_TOKEN.match(value).group().lower()
            self.connection_token(s, token)
        elif upper == b"EXPECT" and s.is_orig:
            token = VALUE_TOKEN.match(value).group()
            if token.lower() != b"100-continue":
                self.weird("HTTP_expect_not_100_continue", detail=text(token))
            s.expect_100 = True
            if s.content_length == 0:
                self.weird("HTTP_content_length_0_and_expect_100_cont")
        elif upper == b"UPGRADE" and not s.is_orig:
            self.upgrade_protocol = text(VALUE_TOKEN.match(value).group())

    def connection_token(self, s: Side, token: bytes) -> None:
        """What a Connection header's (lower-cased) token changes: a client's
        keep-alive; a server's close or upgrade."""
        if s.is_orig:
            if token == b"keep-alive":
                self.keep_alive = True
        elif token == b"close":
            self.connection_close = True
        elif token == b"upgrade":
            self.upgrade = True

    def message_done(self, s: Side, ts: float | None = None) -> None:
        if not s.ongoing:
            return
        s.ongoing = False
        if ts is None:
            ts = self._rt.now_ts()
        if s.state != NOTHING:
            s.state = FIRST
        s.remaining = 0
        is_orig = s.is_orig
        body_length = s.body_length          # as sent: what transfers.log counts
        self.zeek.message_done(ts, is_orig, body_length if s.inflated < 0 else s.inflated)
        if is_orig:
            request = s.request
            if request is not None:
                request.body_length = body_length
                request.end_ts = ts
            s.request = None
            return
        if 100 <= s.code < 200:
            return                            # not the final response
        unanswered = self.unanswered
        request = unanswered.popleft() if unanswered else None
        transfer_min = self.transfer_min
        if body_length >= transfer_min or \
                (request is not None and request.body_length >= transfer_min):
            self.check_transfer(request, s, ts)

    def set_version(self, s: Side, version: tuple[int, int]) -> None:
        """HTTP.cc's SetVersion: a change within a connection is a weird; a
        version above 1.0 means keep-alive."""
        current = s.version
        if current is not version:          # (the scanner's versions are shared)
            if current == NO_VERSION:
                s.version = version
            elif current != version:
                self.weird("HTTP_version_mismatch")
                s.version = version
        if not self.keep_alive and s.version > HTTP_1_0:
            self.keep_alive = True

    def setup_connection(self) -> None:
        """The connection's state, before anything is read (struct fields
        of HttpCore in the build)."""
        self.keep_alive = False
        self.connection_close = False
        self.connect_request = False
        self.upgrade = False            # the response said Connection: upgrade
        self.upgrade_protocol = ""      # ... and Upgrade: this
        self.request_failed = False     # a bad first request line (not confirmed yet)
        # After a CONNECT or an upgrade: "websocket" or "detect" (content
        # detection), the request's URI, and the bytes the response side sent
        # past the HTTP part ({RESP: bytes}: replaced, never changed in place).
        self.tunnel = ""
        self.upgrade_uri = None
        self.unread = {}
        self.zeek = ZeekHttpLog(self.conn.id, self.conn.uid, self._write_http_row,
                                self._zeek_weird, bool(self.config.get("capture_password")))
        self.transfer_min = int(self.config.get("transfer_min_bytes", TRANSFER_MIN_BYTES))
        self.sides = (Side(True), Side(False))
        self.num_requests = 0
        self.stopped = False
        self.unanswered = deque()
        # [is_orig]: upper-cased name -> the last header line of that name
        # (read again only if an upgrade hands the connection over).
        self.upgrade_headers = ({}, {})

    def _write_http_row(self, row: dict) -> None:
        self.log("http", row)


class Http(HttpCore, Analyser):
    """HTTP/1.x: http.log as Zeek writes it, one transfers.log row per large
    body; bodies are counted in compiled code."""
    name = "http"
    service = "http"
    # Zeek's HTTP::ports.
    ports = {80, 81, 631, 1080, 3128, 8000, 8080, 8888}
    signatures = tuple(Signature(ORIG, m + b" ", skip_space=True) for m in SIGNATURE_METHODS) + (
        Signature(RESP, b"HTTP/", nocase=True),)
    logs = {"http": HTTP_LOG, "transfers": TRANSFERS}
    payload_fields = frozenset({"host", "uri", "referrer", "user_agent", "origin", "username",
                                "password", "proxied", "status_msg", "info_msg", "file",
                                "detail"})
    options = {
        "capture_password": (False, "log the password of Basic authorisation too (Zeek's "
                                    "HTTP::default_capture_password)"),
        "transfer_min_bytes": (TRANSFER_MIN_BYTES, "bodies of at least this many bytes are "
                                                   "reported in transfers.log"),
    }

    # -- main ----------------------------------------------------------------------

    def main(self):
        self.setup_connection()
        try:
            self.read_both_sides()
        finally:
            self.end()
        if self.tunnel:
            self.tunnel_to_next()

    def tunnel_to_next(self) -> None:
        """The rest of the connection belongs to the protocol the upgrade
        named (WebSocket) or that its content names (CONNECT: TLS, SMTP...).
        Does not return unless nothing takes it (then the streams are freed)."""
        unread = dict(self.unread)
        other = self.sides[ORIG if RESP in unread else RESP]
        if other.partial:
            unread[ORIG if other.is_orig else RESP] = other.partial
        if self.tunnel == "websocket" and "websocket" in self._rt.classes:
            request, response = (dict(header_text(line) for line in lines.values())
                                 for lines in (self.upgrade_headers[True],
                                               self.upgrade_headers[False]))
            self.session["http_upgrade"] = {
                "ts": self.ts, "host": request.get("host"), "uri": self.upgrade_uri,
                "user_agent": request.get("user-agent"), "request_headers": request,
                "response_headers": response}
            self.hand_over("websocket", unread=unread)
        self.detect_rest(unread)

    def read_both_sides(self) -> None:
        sides = self.sides
        while not self.stopped:
            try:
                # Each chunk of either side to feed() as it comes (the engine
                # calls it: no greenlet switch per chunk).
                self.read_any_into(self.feed_side, READ_CHUNK)
            except Gap as gap:
                if gap.data:
                    self.feed_side(gap.side, gap.data)
                if not self.stopped:
                    self.gap(sides[gap.side], gap.size)
                continue
            except StreamEnd as end:
                if end.data:
                    self.feed_side(end.side, end.data)
                for s in sides:
                    # A body cut by the end: what was skipped is what came
                    # (its count took the whole span when the skip was asked).
                    short = self.unskipped(ORIG if s.is_orig else RESP)
                    if short and s.state in (BODY, CHUNK_DATA):
                        s.body_length -= short
                break

    def end(self) -> None:
        """The connection is over (or no longer HTTP): messages in progress end
        (interrupted), and Zeek's pending rows are written."""
        if self.zeek is None:
            return
        for s in self.sides:
            if s.ongoing:
                self.message_done(s)
        for request in self.unanswered:
            self.check_transfer(request, None, None)
        self.unanswered.clear()
        self.zeek.finalize()
        self.zeek = None               # it holds bound methods: no cycle left behind

    # -- what the per-packet half hands on ------------------------------------------------

    def gap(self, s: Side, size: int) -> None:
        """Bytes of a side were never captured.  Inside a body they are counted
        (Zeek counts them too); elsewhere the side's parsing stops, and a
        request side's gap stops the responses as well (whether they have
        bodies depends on the requests)."""
        if s.inflater:
            s.inflater = False                # a hole: nothing after it decompresses
        if s.state in (BODY, CHUNK_DATA) and size <= s.remaining:
            s.remaining -= size
            s.body_length += size
            if s.remaining == 0:
                if s.state == BODY:
                    self.message_done(s)
                else:
                    s.state = CHUNK_END
            return
        if s.state in (UNTIL_CLOSE, HTTP09):
            s.body_length += size
            return
        self.weird("HTTP_content_gap", side=self.side_name(s), size=size)
        if s.is_orig or self.sides[ORIG].state == NOTHING:
            for x in self.sides:
                if x.ongoing:
                    self.message_done(x)
            self.stop()
            return
        if s.ongoing:
            self.message_done(s)
        s.state = NOTHING
        s.partial = b""
        self.release(RESP)

    # -- requests ------------------------------------------------------------------------

    def bad_request_line(self, s: Side, line: bytes, error: str) -> None:
        expected = self.num_requests == 0 or self.keep_alive
        if line:
            self.weird(error)
        if not expected:
            return                                    # Zeek: crud after the last request
        if not line:
            self.weird("empty_http_request")
            return
        if self.confirmed:
            self.end()
            self.violation("not a http request line", line)
        # Not confirmed: the response side decides (Zeek logs the response
        # to a malformed request); no more requests are parsed.
        self.request_failed = True
        s.state = NOTHING

    # -- responses -----------------------------------------------------------------------

    def http09_reply(self, s: Side) -> None:
        """A response to an HTTP/0.9 request: no status line, the body runs to
        the close (HTTP.cc's EXPECT_REPLY_HTTP09)."""
        s.version = (0, 9)
        self.connection_close = True
        s.new_message(self.ts)
        s.ongoing = True
        self.zeek.reply(self.ts, "0.9", 0, "<empty>")

    # -- headers ---------------------------------------------------------------------------

    def unfold(self, headers: list[bytes]) -> list[bytes]:
        out: list[bytes] = []
        for h in headers:
            if h[0] in (32, 9) and out:
                self.weird("HTTP_obsolete_line_folding")
                out[-1] = out[-1] + b" " + h.strip(b" \t")
            else:
                out.append(h)
        return out

    def tunnel_follows(self, s: Side) -> bool:
        """After a successful CONNECT's response headers, or a 101 with
        Connection: upgrade, the connection is no longer HTTP."""
        if self.connect_request and s.code // 100 == 2:
            self.emit("http_tunnel", method="CONNECT", status_code=s.code)
            self.tunnel = "detect"
            return True
        if s.code == 101 and self.upgrade and self.upgrade_protocol and \
                len(self.unanswered) <= 1:
            self.emit("http_tunnel", method=self.unanswered[0].method if self.unanswered
                      else None, status_code=101)
            self.tunnel = "websocket" if self.upgrade_protocol.lower() == "websocket" \
                else "detect"
            self.upgrade_uri = self.unanswered[0].uri if self.unanswered else None
            return True
        self.upgrade = False
        self.upgrade_protocol = ""
        return False

    # -- chunks ----------------------------------------------------------------------------

    def chunk_size(self, s: Side, line: bytes) -> None:
        size = atoi(line, HEX_NUMBER, 16)
        if size is None:
            self.weird("HTTP_bad_chunk_size", detail=text(line[:100]))
            size = 0
        if size > 0:
            s.state = CHUNK_DATA
            s.remaining = size
        else:
            s.state = TRAILER                 # the last chunk: trailer lines follow

    def inflate(self, s: Side, piece: bytes) -> None:
        """Count what a piece of a compressed body decompresses to (the
        output itself is dropped), as Zeek's ZIP analyzer: a first failure
        in a piece before any output of it starts again as headerless
        deflate; another is a weird, and the rest of the body is not
        decompressed; so is what follows the end of the compressed data."""
        d = s.inflater
        data = piece
        may_restart = True
        while data:
            try:
                out = d.decompress(data, INFLATE_STEP)
            except zlib.error:
                if may_restart:
                    d = s.inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                    may_restart = False
                    data = piece
                    continue
                self.weird("inflate_failed", side=self.side_name(s))
                s.inflater = False
                return
            may_restart = False
            s.inflated += len(out)
            if s.inflated > MAX_INFLATED_BODY:
                self.weird("HTTP_inflated_body_too_large", side=self.side_name(s),
                           limit=MAX_INFLATED_BODY)
                s.inflater = False
                return
            if d.eof:
                s.inflater = False
                return
            data = d.unconsumed_tail

    # -- the end of a message ----------------------------------------------------------------

    def check_transfer(self, request: Request | None, response: Side | None, end_ts) -> None:
        """transfers.log: a request body, a response body, of at least
        transfer_min_bytes."""
        code = response.code if response is not None else None
        if request is not None and request.body_length >= self.transfer_min:
            self.report_transfer(request, request.content_length, request.body_length,
                                 request.end_ts, code)
        if response is not None and response.body_length >= self.transfer_min:
            self.report_transfer(request, response.content_length
                                 if response.content_length >= 0 else None,
                                 response.body_length, end_ts, code,
                                 start=response.start_ts)

    def report_transfer(self, request: Request | None, announced, size: int, end_ts, code,
                        start: float | None = None) -> None:
        ts = request.ts if request is not None else start
        end_ts = end_ts if end_ts is not None else self.ts
        fields = {"ts": ts, "uid": self.uid, "id.orig_h": self.id.orig_h,
                  "id.orig_p": self.id.orig_p, "id.resp_h": self.id.resp_h,
                  "id.resp_p": self.id.resp_p, "protocol": "http",
                  "command": request.method if request is not None else None,
                  "file": request.uri if request is not None else None,
                  "size_announced": announced, "bytes": size, "streams": 1,
                  "data_uids": [self.uid], "duration": max(0.0, end_ts - ts),
                  "reply_code": code, "missed_bytes": None}
        self.emit("transfer_end", **{k: v for k, v in fields.items()
                                     if not k.startswith("id.") and k not in ("ts", "uid")})
        self.log("transfers", fields)

    # -- helpers ---------------------------------------------------------------------------------

    def stop(self) -> None:
        """The rest of the connection is not HTTP (a tunnel, an upgrade, or
        both sides unreadable): stop reading it, write what is pending."""
        self.stopped = True
        for s in self.sides:
            s.state = NOTHING
        self.end()
        if not self.tunnel:
            self.release()

    @staticmethod
    def side_name(s: Side) -> str:
        return "orig" if s.is_orig else "resp"

    def _weird_plain(self, name: str) -> None:
        self.weird(name)

    def _zeek_weird(self, name: str, detail: str) -> None:
        if detail:
            self.weird(name, detail=detail)
        else:
            self.weird(name)
