"""The HTTP analyser's parsing (protocols/http.py) on scripted byte streams
with the author's harness: framing of bodies, pipelining, 1xx, HEAD, 304,
close-delimited bodies, tunnels, malformed lines, detection, transfers.log."""
from __future__ import annotations

from analyser import ORIG, RESP, Analyser, Signature
from analyser.testing import End, Hole, run
from protocols.http import Http, parse_request_line, unescape_uri


def rows(result):
    return result.logs.get("http", [])


def weirds(result):
    return [w["name"] for w in result.of("weird")]


GET = b"GET /a HTTP/1.1\r\nHost: example.com\r\nUser-Agent: test/1.0\r\n\r\n"


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def test_a_request_and_its_response_make_one_row_with_zeeks_fields():
    result = run(Http, [(ORIG, GET), (RESP, ok(b"hello"))])
    row, = rows(result)
    assert {k: row[k] for k in ("trans_depth", "method", "host", "uri", "version", "user_agent",
                                "request_body_len", "response_body_len", "status_code",
                                "status_msg")} == {
        "trans_depth": 1, "method": "GET", "host": "example.com", "uri": "/a", "version": "1.1",
        "user_agent": "test/1.0", "request_body_len": 0, "response_body_len": 5,
        "status_code": 200, "status_msg": "OK"}
    assert row["tags"] == [] and "info_code" not in row and "username" not in row
    assert result.confirmed and result.services == ["http"] and not result.errors


def test_pipelined_requests_pair_with_their_responses_in_order():
    result = run(Http, [(ORIG, GET.replace(b"/a", b"/1") + GET.replace(b"/a", b"/2")
                         + b"HEAD /3 HTTP/1.1\r\n\r\n"),
                        (RESP, ok(b"one") + ok(b"second") + b"HTTP/1.1 200 OK\r\n"
                         b"Content-Length: 1000\r\n\r\n" + ok(b"x"))])
    # The response to HEAD has no body although it announces 1000 bytes: the
    # next bytes are a fourth response, answering nothing, in a row of its own.
    assert [(r["trans_depth"], r.get("uri"), r["response_body_len"]) for r in rows(result)] == [
        (1, "/1", 3), (2, "/2", 6), (3, "/3", 0), (4, None, 1)]
    assert weirds(result) == []


def test_chunked_body_with_extensions_and_trailers_counts_chunk_data_only():
    body = (b"5;name=value\r\nhello\r\n1A\r\n" + b"z" * 26 + b"\r\n0\r\n"
            b"Trailer-Field: x\r\n\r\n")
    result = run(Http, [(ORIG, GET), (RESP, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked"
                                            b"\r\n\r\n"), (RESP, body),
                        (ORIG, GET.replace(b"/a", b"/next")), (RESP, ok(b"1234"))])
    assert [(r["uri"], r["response_body_len"]) for r in rows(result)] == [
        ("/a", 31), ("/next", 4)]
    assert weirds(result) == []


def test_a_chunk_split_across_packets_is_skipped_not_read():
    big = 300000
    result = run(Http, [(ORIG, GET), (RESP, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked"
                                            b"\r\n\r\n%x\r\n" % big + b"a" * 1000),
                        (RESP, b"b" * (big - 1000)), (RESP, b"\r\n0\r\n\r\n")])
    row, = rows(result)
    assert row["response_body_len"] == big
    # Python got the headers and the first packet, not the 299,000 other bytes.
    assert result.delivered[RESP] < 2000


def test_100_continue_then_the_final_response_share_one_row():
    result = run(Http, [(ORIG, b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n"
                               b"Expect: 100-continue\r\n\r\n"),
                        (RESP, b"HTTP/1.1 100 Continue\r\n\r\n"),
                        (ORIG, b"0123456789"),
                        (RESP, ok(b"done"))])
    row, = rows(result)
    assert (row["info_code"], row["info_msg"], row["status_code"], row["status_msg"],
            row["request_body_len"], row["response_body_len"]) == (
        100, "Continue", 200, "OK", 10, 4)


def test_204_and_304_have_no_body_even_with_a_content_length():
    result = run(Http, [(ORIG, GET + GET), (RESP, b"HTTP/1.1 304 Not Modified\r\n"
                                                  b"Content-Length: 50\r\n\r\n"
                                                  b"HTTP/1.1 204 No Content\r\n\r\n")])
    assert [(r["status_code"], r["response_body_len"]) for r in rows(result)] == [
        (304, 0), (204, 0)]


def test_a_body_without_length_ends_with_the_connection():
    result = run(Http, [(ORIG, b"GET / HTTP/1.0\r\n\r\n"),
                        (RESP, b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nabc"),
                        (RESP, b"defgh"), End(RESP)])
    row, = rows(result)
    assert (row["version"], row["response_body_len"]) == ("1.0", 8)


def test_a_request_without_response_is_written_at_the_end():
    result = run(Http, [(ORIG, b"POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")])
    row, = rows(result)
    assert (row["method"], row["request_body_len"], row.get("status_code")) == ("POST", 3, None)


def test_a_response_before_its_request_gets_its_own_row_as_zeek_does():
    result = run(Http, [(ORIG, GET), (RESP, ok(b"1") + ok(b"22")),
                        (ORIG, GET.replace(b"/a", b"/b")), (RESP, ok(b"333"))])
    assert [(r["trans_depth"], r.get("method"), r["response_body_len"])
            for r in rows(result)] == [(1, "GET", 1), (2, None, 2), (3, "GET", 3)]
    assert "HTTP_response_before_request" in weirds(result)


def test_basic_authorisation_user_and_password_only_with_the_option():
    auth = b"GET / HTTP/1.1\r\nAuthorization: Basic dXNlcjpwYTpzcw==\r\n\r\n"
    plain = rows(run(Http, [(ORIG, auth), (RESP, ok(b""))]))[0]
    assert plain["username"] == "user" and "password" not in plain
    told = rows(run(Http, [(ORIG, auth), (RESP, ok(b""))],
                    config={"capture_password": True}))[0]
    assert (told["username"], told["password"]) == ("user", "pa:ss")


def test_connect_success_stops_parsing_the_tunnel():
    result = run(Http, [(ORIG, b"CONNECT mail.example:25 HTTP/1.0\r\n\r\n"),
                        (RESP, b"HTTP/1.0 200 Connection established\r\n\r\n"),
                        (RESP, b"220 mail ESMTP\r\n"), (ORIG, b"EHLO x\r\n")])
    row, = rows(result)
    assert (row["method"], row["uri"], row["status_code"], row["response_body_len"]) == (
        "CONNECT", "mail.example:25", 200, 0)
    assert [e["status_code"] for e in result.of("http_tunnel")] == [200]
    assert result.delivered[RESP] == len(b"HTTP/1.0 200 Connection established\r\n\r\n")


def test_101_switching_protocols_stops_parsing():
    result = run(Http, [(ORIG, b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n"
                               b"Connection: Upgrade\r\n\r\n"),
                        (RESP, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                               b"Connection: Upgrade\r\n\r\n\x81\x05hello"),
                        (ORIG, b"\x81\x85abcdefghi")])
    row, = rows(result)
    assert (row["status_code"], row["info_code"], row["info_msg"]) == (
        101, 101, "Switching Protocols")
    assert not result.errors and not result.violations


def test_malformed_lines_are_weirds_and_zeek_still_logs_the_response():
    result = run(Http, [(ORIG, b"OPTIONSHTTP/1.1\r\nHost: h\r\n\r\n"),
                        (RESP, ok(b"bad", b"Connection: close\r\n"))])
    row, = rows(result)
    assert (row.get("method"), row["status_code"], row["response_body_len"]) == (None, 200, 3)
    assert weirds(result) == ["bad_HTTP_request"]
    assert not result.violations and not result.errors


def test_uri_escapes_and_their_weirds_follow_zeek():
    seen = []
    assert unescape_uri(b"/a%20b%u00e9%zz%", seen.append) == b"/a b\xe9%zz%"
    assert seen == ["unescaped_%_in_URI", "illegal_%_at_end_of_URI"]
    line = parse_request_line(b"CONNECT host:25 / HTTP/1.0", seen.append)
    assert (line.method, line.uri, line.version) == (b"CONNECT", b"host:25 /", (1, 0))
    assert parse_request_line(b"GET /HTTP/1.1", seen.append).version == (0, 9)
    assert parse_request_line(b"\x01\x02 / HTTP/1.1", seen.append).error == \
        "bad_HTTP_request_with_version"


def test_bad_content_length_and_chunk_size_are_weirds_not_errors():
    result = run(Http, [(ORIG, b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"
                               b"GET /next HTTP/1.1\r\n\r\n"),
                        (RESP, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                               b"zz\r\n\r\n" + ok(b"ab"))])
    assert [(r["uri"], r["response_body_len"]) for r in rows(result)] == [("/", 0), ("/next", 2)]
    assert weirds(result) == ["HTTP_bad_content_length", "HTTP_bad_chunk_size"]
    assert not result.errors


def test_a_gap_inside_a_body_is_counted_and_parsing_goes_on():
    result = run(Http, [(ORIG, GET + GET), (RESP, ok(b"x" * 100)[:-60]), Hole(RESP, 50),
                        (RESP, b"x" * 10 + ok(b"2"))])
    assert [r["response_body_len"] for r in rows(result)] == [100, 1]


def test_a_gap_in_the_headers_stops_the_side_with_a_weird():
    result = run(Http, [(ORIG, GET), (RESP, b"HTTP/1.1 200 OK\r\nCont"), Hole(RESP, 30),
                        (RESP, b"more\r\n\r\n")])
    assert weirds(result) == ["HTTP_content_gap"]
    row, = rows(result)
    assert row["status_code"] == 200 and not result.errors


class Other(Analyser):
    """A candidate that takes what HTTP gives up."""
    name = "other"
    signatures = (Signature(ORIG, b"HELO"),)

    def main(self):
        self.read_line(ORIG)
        self.confirm()


def test_a_non_http_start_is_a_violation_and_the_next_candidate_gets_it():
    result = run(Http, [(RESP, b"220 smtp.example ESMTP\r\n"), (ORIG, b"HELO x\r\n")],
                 candidates=[Other])
    assert [v["failure_reason"] for v in result.violations] == ["not a http reply line"]
    assert result.services == ["other"] and not rows(result)


def test_large_bodies_are_transfers():
    size = 3 << 20
    result = run(Http, [(ORIG, b"PUT /big HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % size),
                        (ORIG, b"u" * 1000), (ORIG, b"u" * (size - 1000)),
                        (RESP, b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
                        (ORIG, GET), (RESP, ok(b"small"))],
                 config={"transfer_min_bytes": 1 << 20})
    transfer, = result.logs["transfers"]
    assert {k: transfer[k] for k in ("protocol", "command", "file", "size_announced", "bytes",
                                     "reply_code", "streams", "data_uids")} == {
        "protocol": "http", "command": "PUT", "file": "/big", "size_announced": size,
        "bytes": size, "reply_code": 201, "streams": 1, "data_uids": ["CHarness1"]}
    assert [r["request_body_len"] for r in rows(result)] == [size, 0]


# Header blocks the parser cuts at once when a packet holds them whole, and
# line by line otherwise: both ways must give the same rows and weirds.
ODD_HEADER_BLOCKS = [
    b"Host: a.example\nUser-Agent: lf/1.0\n\n",                      # LF alone
    b"Host: a.example\r\nUser-Agent: mixed\n\r\n",                   # CRLF, LF, blank CRLF
    b"Host: a.example\r\nReferer: http://r/\r\n\n",                  # blank line a bare LF
    b"Host: lf\nUser-Agent: then CRLF\r\n\r\n",                       # LF, then CRLF CRLF
    b"Host: h\nContent-Length: 6\n\nab\r\n\r\n",                       # CRLF CRLF in the body
    b"Host: cr\r\r\nUser-Agent: two CRs\r\n\r\n",                    # a CR kept in the value
    b"Host: a.example\r\nno colon here\r\nOrigin: o\r\n\r\n",        # a line without colon
    b"User-Agent: folded\r\n  on two lines\r\nHost: h\r\n\r\n",      # obsolete folding
    b" Host : spaced \t\r\nuser-agent:\tlower\r\n\r\n",              # white space, case
    b"Host: h\r\nContent-Length: 0003\r\n\r\nabc",                   # leading zeros, a body
    b"Host: h\r\nX-Forwarded-For: 10.1.1.1\r\nVIA: 1.1 p\r\n"
    b"Authorization: Basic dXNlcjpwYXNz\r\n\r\n",                     # proxied, user
    b"Host: h\r\nConnection: Keep-Alive, Upgrade\r\nExpect: 100-continue\r\n"
    b"Content-Length: 2\r\n\r\nab",
    b"Host: " + b"x" * 16380 + b"\r\nUser-Agent: after a long line\r\n\r\n",  # MAX_LINE
]


def test_a_header_block_in_one_packet_gives_what_it_gives_line_by_line():
    for block in ODD_HEADER_BLOCKS:
        request = b"POST /p HTTP/1.1\r\n" + block
        response = b"HTTP/1.1 200 OK\r\nServer: s\nContent-Length: 2\r\n\r\nok"
        whole = run(Http, [(ORIG, request), (RESP, response)], step=0.0)
        pieces = run(Http, [(ORIG, request[i:i + 7]) for i in range(0, len(request), 7)]
                     + [(RESP, response[i:i + 3]) for i in range(0, len(response), 3)],
                     step=0.0)
        assert rows(whole) == rows(pieces), block[:40]
        assert [(w["name"], w.get("detail")) for w in whole.of("weird")] == \
            [(w["name"], w.get("detail")) for w in pieces.of("weird")], block[:40]
        assert len(rows(whole)) == 1 and not whole.errors


def test_header_values_of_a_block_cut_at_once_are_zeeks():
    result = run(Http, [(ORIG, b"GET /a HTTP/1.1\r\n Host : spaced \t\r\nuser-agent:\tlower"
                                b"\r\n\r\n"), (RESP, ok(b""))])
    row, = rows(result)
    assert (row["host"], row["user_agent"]) == ("spaced", "lower")
    result = run(Http, [(ORIG, b"GET /a HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.1.1.1\r\n"
                                b"VIA: 1.1 p\r\nAuthorization: Basic dXNlcjpwYXNz\r\n\r\n"),
                        (RESP, ok(b""))])
    row, = rows(result)
    assert (row["proxied"], row["username"]) == (["X-FORWARDED-FOR -> 10.1.1.1", "VIA -> 1.1 p"],
                                                 "user")


def test_a_header_block_that_does_not_end_in_a_packet_is_not_searched_again_per_line(
        monkeypatch):
    # 13,000 short header lines in one packet, their end in the next: a search
    # for the end from each line would cost 13,000 scans of 16 KiB.
    import protocols.http as http
    searches = []

    def counted(data, pos):
        searches.append(pos)
        return http_header_block(data, pos)

    http_header_block = http.header_block
    monkeypatch.setattr(http, "header_block", counted)
    result = run(Http, [(ORIG, b"GET / HTTP/1.1\r\n" + b"a:b\r\n" * 13000), (ORIG, b"\r\n"),
                        (RESP, ok(b""))])
    # Once per packet of the request; the reply's block is cut with its
    # status line (Http.feed), without header_block().
    assert searches == [16, 0]
    assert weirds(result) == ["HTTP_too_many_headers"] and len(rows(result)) == 1


def test_header_lines_seen_before_give_what_they_gave_and_their_table_stays_bounded(
        monkeypatch):
    import protocols.http as http
    # The general path's table (plain heads are read in C, and never reach it).
    monkeypatch.setattr(http, "HEADS", None)
    request = (b"GET /a HTTP/1.1\r\nHost: h.example\r\nUser-Agent: " + b"u" * 300 +
               b"\r\nConnection: close\r\n\r\n")
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    first = run(Http, [(ORIG, request), (RESP, response)], step=0.0)
    assert b"Host: h.example" in http.HEADER_LINES
    assert not any(len(line) > http.MAX_KNOWN_LINE for line in http.HEADER_LINES)
    # Distinct lines past the bound: the table is emptied, never larger.
    many = b"".join(b"X-%d: %d\r\n" % (i, i) for i in range(500))
    for k in range(http.MAX_HEADER_LINES_KNOWN // 500 + 2):
        run(Http, [(ORIG, b"GET /%d HTTP/1.1\r\n%s\r\n" % (k, many)), (RESP, ok(b""))],
            step=0.0)
        assert len(http.HEADER_LINES) <= http.MAX_HEADER_LINES_KNOWN
    # The same lines again (some known, some not): the same row, framing and all.
    again = run(Http, [(ORIG, request), (RESP, response)], step=0.0)
    again_twice = run(Http, [(ORIG, request), (RESP, response)], step=0.0)
    row, = rows(first)
    assert (row["host"], row["user_agent"], row["response_body_len"]) == \
        ("h.example", "u" * 300, 2)
    assert rows(again) == rows(first) == rows(again_twice)


def compressed(data: bytes, wbits: int) -> bytes:
    import zlib
    c = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return c.compress(data) + c.flush()


def test_gzip_and_deflate_bodies_count_decompressed_as_zeek_counts_them():
    """response_body_len of a gzip or deflate body is its decompressed size
    (Zeek's ZIP analyzer under HTTP_Entity), whether the body comes in one
    packet, across packets, or chunked; deflate without the zlib header too.
    transfers.log counts the bytes as sent."""
    import random
    plain = bytes(random.Random(3).choice(b"abc\n") for _ in range(200_000))
    gz = compressed(plain, 31)
    raw = compressed(plain, -15)
    zl = compressed(plain, 15)
    half = len(gz) // 2
    chunked = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, gz[:half], len(gz) - half, gz[half:])
    result = run(Http, [
        (ORIG, GET), (RESP, ok(gz, b"Content-Encoding: gzip\r\n")),
        (ORIG, GET), (RESP, ok(raw, b"Content-Encoding: deflate\r\n")[:300]),
        (RESP, ok(raw, b"Content-Encoding: deflate\r\n")[300:]),
        (ORIG, GET), (RESP, ok(zl, b"Content-Encoding: Deflate\r\n")),
        (ORIG, GET), (RESP, b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n" + chunked),
        (ORIG, GET), (RESP, ok(gz, b"Content-Encoding: x-gzip\r\n"))],
        config={"transfer_min_bytes": 1})
    assert [r["response_body_len"] for r in rows(result)] == [
        len(plain), len(plain), len(plain), len(plain), len(gz)]
    assert [t["bytes"] for t in result.logs["transfers"]] == [
        len(gz), len(raw), len(zl), len(gz), len(gz)]
    assert weirds(result) == []


def test_a_body_that_does_not_decompress_is_a_weird_and_counts_what_did():
    import zlib
    plain = b"0123456789" * 1000
    gz = compressed(plain, 31)
    broken = gz[:len(gz) // 2] + b"\xff" * 64 + gz[len(gz) // 2 + 64:]
    result = run(Http, [(ORIG, GET), (RESP, ok(b"not compressed at all",
                                               b"Content-Encoding: gzip\r\n")),
                        (ORIG, GET), (RESP, ok(broken[:len(gz) // 2],
                                               b"Content-Encoding: gzip\r\n")[:-1]),
                        (RESP, broken[len(gz) // 2 - 1:])])
    first, second = rows(result)
    assert first["response_body_len"] == 0
    d = zlib.decompressobj(47)
    expected = len(d.decompress(broken[:len(gz) // 2]))
    assert second["response_body_len"] == expected < len(plain)
    # The first is taken for headerless deflate (Zeek's retry), which finds
    # no block end in it: nothing out, no error.  The second breaks mid-way.
    assert weirds(result) == ["inflate_failed"]


def test_a_decompression_bomb_is_counted_up_to_a_bound(monkeypatch):
    import protocols.http as http
    monkeypatch.setattr(http, "MAX_INFLATED_BODY", 1 << 20)
    bomb = compressed(b"\0" * (8 << 20), 31)           # 8 MiB from about 8 KiB
    result = run(Http, [(ORIG, GET), (RESP, ok(bomb, b"Content-Encoding: gzip\r\n"))])
    row, = rows(result)
    assert (1 << 20) < row["response_body_len"] <= (1 << 20) + http.INFLATE_STEP
    assert weirds(result) == ["HTTP_inflated_body_too_large"]


def test_a_body_cut_by_the_end_counts_what_came_of_it():
    """The skipped rest of a body that the capture cuts short is not counted
    (Zeek's response_body_len is what it saw), in http.log and transfers.log."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 5000000\r\n\r\n"
    result = run(Http, [(ORIG, GET), (RESP, head + b"x" * 100), (RESP, b"y" * 250_000),
                        (RESP, b"z" * 1000), End(RESP)],
                 config={"transfer_min_bytes": 1000})
    row, = rows(result)
    assert row["response_body_len"] == 100 + 250_000 + 1000
    transfer, = result.logs["transfers"]
    assert transfer["bytes"] == 251_100
