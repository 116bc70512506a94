"""Plain HTTP heads read in C (protocols/_httphead.pyx) against the general
path of protocols/http.py: on every head, plain or not, the two must write
the same rows, report the same weirds and events, and confirm alike; the
scanner itself takes the plain heads and leaves every other to that path."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import protocols.http as http
from analyser import ORIG, RESP
from analyser.testing import End, run
from protocols.http import Http

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


class Counting:
    """HEADS, counting the heads it reads whole."""

    def __init__(self, heads):
        self.heads, self.plain = heads, 0

    def request(self, data, pos):
        head = self.heads.request(data, pos)
        self.plain += head is not None
        return head

    def response(self, data, pos):
        head = self.heads.response(data, pos)
        self.plain += head is not None
        return head


def outcome(script, heads):
    saved = http.HEADS
    http.HEADS = heads
    try:
        result = run(Http, script)
    finally:
        http.HEADS = saved
    events = [{k: v for k, v in e.items() if k != "ts"} for e in result.events]
    return (result.logs, events, result.services, result.confirmed, result.violations,
            result.errors)


def same_both_ways(script) -> int:
    """The script's outcome with plain heads read in C and without; how many
    heads were read in C."""
    counting = Counting(http.HEADS)
    fast = outcome(script, counting)
    assert fast == outcome(script, None)
    assert not fast[5], fast[5]                  # no analyser error either way
    return counting.plain


# -- what a head is made of ---------------------------------------------------------

METHODS = [b"GET", b"POST", b"HEAD", b"PUT", b"CONNECT", b"BREW", b"G@T", b""]
URIS = [b"/", b"/a/b?c=d", b"/x%20y", b"/%", b"http://h/x", b"HTTP/1.1", b"/a b", b"*"]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/0.9", b"HTTP/2.0", b"HTTP/1.11", b"http/1.1", b""]
SPACES = [b" ", b"\t", b"  "]
HEADERS = [
    b"Host: example.com", b"host:example.com ", b"HOST :  h.example\t", b"User-Agent: t/1.0",
    b"Origin: http://o", b"Referer: /r", b"Accept: */*", b"X-Thing: \xff\xfe",
    b"Content-Length: 0", b"Content-Length: 5", b"content-length: 12", b"Content-Length: 007",
    b"Content-Length: -1", b"Content-Length: 5x", b"Content-Length: 99999999999999999999",
    b"Content-Length:", b"Connection: keep-alive", b"Connection: close",
    b"Connection: Keep-Alive, Upgrade", b"Connection: upgrade", b"Connection: te",
    b"Transfer-Encoding: chunked", b"Content-Encoding: gzip", b"Expect: 100-continue",
    b"Upgrade: websocket", b"Sec-WebSocket-Key: abc", b"Authorization: Basic dTpw",
    b"Via: proxy", b"no colon here", b" folded continuation", b"\tfolded", b": empty name",
]
REASONS = [b"OK", b"", b"Not Found", b"\xe9t\xe9", b"Switching Protocols"]
CODES = [b"200", b"204", b"304", b"100", b"101", b"404", b"2000", b"20"]


@st.composite
def heads(draw, request: bool):
    if request:
        first = (draw(st.sampled_from(METHODS)) + draw(st.sampled_from(SPACES))
                 + draw(st.sampled_from(URIS)) + draw(st.sampled_from(SPACES))
                 + draw(st.sampled_from(VERSIONS)))
    else:
        first = (draw(st.sampled_from(VERSIONS)) + draw(st.sampled_from(SPACES))
                 + draw(st.sampled_from(CODES)) + draw(st.sampled_from(SPACES + [b""]))
                 + draw(st.sampled_from(REASONS)))
    lines = [first] + draw(st.lists(st.sampled_from(HEADERS), max_size=6))
    ends = [draw(st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r\r\n"]))
            for _ in lines] + [draw(st.sampled_from([b"\r\n", b"\r\n", b"\n"]))]
    head = b"".join(line + end for line, end in zip(lines, ends)) + ends[-1]
    return head + draw(st.sampled_from([b"", b"hello", b"x" * 12]))


@st.composite
def exchanges(draw):
    script = []
    for _ in range(draw(st.integers(1, 3))):
        script.append((ORIG, draw(heads(True))))
        script.append((RESP, draw(heads(False))))
    if draw(st.booleans()):
        # Both requests before either response (pipelining), in one packet.
        requests = b"".join(data for side, data in script if side == ORIG)
        script = [(ORIG, requests)] + [item for item in script if item[0] == RESP]
    return script + [End(ORIG), End(RESP)]


@SETTINGS
@given(exchanges())
def test_any_head_gives_what_the_general_path_gives(script):
    same_both_ways(script)


def test_plain_heads_are_read_in_c_and_give_the_general_paths_rows():
    request = (b"GET /index.html HTTP/1.1\r\nHost: www.example\r\nUser-Agent: curl/8\r\n"
               b"Accept: */*\r\nConnection: keep-alive\r\n\r\n")
    response = b"HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 5\r\n\r\nhello"
    post = (b"POST /up HTTP/1.1\r\nHost: www.example\r\nContent-Length: 3\r\n"
            b"Origin: http://o.example\r\nReferer: /index.html\r\n\r\nabc")
    script = [(ORIG, request), (RESP, response), (ORIG, post),
              (RESP, b"HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n")]
    assert same_both_ways(script) == 4
    rows = outcome(script, http.HEADS)[0]["http"]
    assert [(r["method"], r["uri"], r["host"], r.get("user_agent"), r.get("origin"),
             r.get("referrer"), r["request_body_len"], r["response_body_len"],
             r["status_code"], r["status_msg"]) for r in rows] == [
        ("GET", "/index.html", "www.example", "curl/8", None, None, 0, 5, 200, "OK"),
        ("POST", "/up", "www.example", None, "http://o.example", "/index.html", 3, 0, 304,
         "Not Modified")]


@pytest.mark.parametrize("head", [
    b"GET /a%20b HTTP/1.1\r\n\r\n",                          # unescaped by the general path
    b"GET /a HTTP/0.9\r\n\r\n",
    b"GET http/1.1 HTTP/1.1\r\n\r\n",
    b"GET /a HTTP/1.1\nHost: h\r\n\r\n",                     # a bare LF
    b"GET /a HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",
    b"GET /a HTTP/1.1\r\nno colon\r\n\r\n",
    b"GET /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET /a HTTP/1.1\r\nSec-WebSocket-Version: 13\r\n\r\n",
    b"GET /a HTTP/1.1\r\nContent-Length: 010\r\n\r\n",
    b"GET /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: h\r\n",                        # not ended in this packet
])
def test_a_head_that_is_not_plain_is_left_to_the_general_path(head):
    assert http.HEADS.request(head, 0) is None


def test_the_scanner_reports_where_a_head_ends_and_what_it_read():
    data = (b"xxHTTP/1.0 404  Not here\r\nCONNECTION: Keep-Alive, x\r\nContent-Length: 4\r\n"
            b"Host: ignored in a response\r\n\r\nbody")
    end, first_end, version, code, reason, values, lines, count = http.HEADS.response(data, 2)
    assert data[end:] == b"body" and data[first_end:].startswith(b"CONNECTION")
    assert (version, code, reason, count) == ((1, 0), 404, b"Not here", 3)
    names = [name for name, _ in http.PLAIN_READ]
    assert values[names.index(b"CONTENT-LENGTH")] == 4
    assert values[names.index(b"CONNECTION")] == b"keep-alive"
    assert lines[names.index(b"CONNECTION")] == b"CONNECTION: Keep-Alive, x"
    assert lines[names.index(b"HOST")] == b"Host: ignored in a response"
    # A head must end within MAX_LINE bytes of its start, as the general path finds it.
    long = b"GET / HTTP/1.1\r\nX: " + b"a" * http.MAX_LINE + b"\r\n\r\n"
    assert http.HEADS.request(long, 0) is None
