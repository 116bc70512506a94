# Typed layout of http.py's per-packet classes, for the build only.
#
# http.py stays plain Python (it runs as source with ANALYSER_FROM_SOURCE=1);
# when the build compiles it, Cython reads this file beside it and makes the
# classes every packet of an HTTP connection goes through extension types:
# HttpCore (cutting a side into lines and bodies, request and status lines,
# header blocks, message ends), Side (one direction's parser state) and
# Request.  Their state becomes struct fields and the calls between them C
# calls.  The rest of the analyser (Http: gaps, chunks, decompression,
# tunnels, transfers) stays Python, called as methods.
cimport cython
from analyser.runtime cimport AnalyserCore

# A side's parser states and body expectations: C ints in the build.
cdef int FIRST, HEADERS, BODY, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, TRAILER, UNTIL_CLOSE
cdef int HTTP09, NOTHING
cdef int BODY_NOT_EXPECTED, BODY_MAYBE, BODY_EXPECTED


@cython.locals(line=bytes)
cpdef bint folded(list lines)


cdef class Request:
    cdef public double ts
    cdef public str method
    cdef public str uri
    cdef public object content_length
    cdef public Py_ssize_t body_length
    cdef public object end_ts


cdef class Side:
    cdef public bint is_orig
    cdef public int state
    cdef public bytes partial
    cdef public bint cutting
    cdef public list headers
    cdef public Py_ssize_t remaining
    cdef public Py_ssize_t body_length
    cdef public Py_ssize_t content_length
    cdef public bint chunked
    cdef public int expect_body
    cdef public object version
    cdef public bint ongoing
    cdef public double start_ts
    cdef public bint encoded
    cdef public Request request
    cdef public long code
    cdef public bint expect_100
    cdef public bint headers_dropped
    cdef public bint folded
    cdef public object inflater
    cdef public Py_ssize_t inflated

    cpdef new_message(self, double ts)


cdef class ZeekHttpLog:
    cdef public object id
    cdef public str uid
    cdef public object write
    cdef public object weird
    cdef public bint capture_password
    cdef public dict pending
    cdef public Py_ssize_t current_request
    cdef public Py_ssize_t current_response
    cdef public Py_ssize_t trans_depth
    cdef public dict new_row

    @cython.locals(row=dict)
    cpdef dict _new(self, double ts)
    @cython.locals(index=Py_ssize_t, row=dict)
    cpdef dict _state(self, double ts, bint is_orig)
    @cython.locals(index=Py_ssize_t, row=dict)
    cpdef request(self, double ts, str method, str uri)
    @cython.locals(row=dict, current=dict)
    cpdef reply(self, double ts, str version, long code, str reason)
    cpdef dict header_row(self, double ts, bint is_orig)
    cpdef client_header(self, dict row, name, value)
    @cython.locals(pending=dict, index=Py_ssize_t, row=dict)
    cpdef message_done(self, double ts, bint is_orig, Py_ssize_t body_length)
    cpdef finalize(self)


cdef class HttpCore(AnalyserCore):
    cdef public ZeekHttpLog zeek
    cdef public tuple sides
    cdef public object unanswered
    cdef public bint stopped
    cdef public Py_ssize_t num_requests
    cdef public object transfer_min
    cdef public tuple upgrade_headers
    cdef public bint keep_alive
    cdef public bint connection_close
    cdef public bint connect_request
    cdef public bint upgrade
    cdef public str upgrade_protocol
    cdef public bint request_failed
    cdef public str tunnel
    cdef public object upgrade_uri
    cdef public dict unread

    cpdef setup_connection(self)
    cpdef bint feed_side(self, int side, object data) except -1
    @cython.locals(pos=Py_ssize_t, n=Py_ssize_t, ts=double, whole_blocks=bint, state=int,
                   take=Py_ssize_t, remaining=Py_ssize_t, end=Py_ssize_t, nl=Py_ssize_t,
                   block=bytes, lines=list, first=bytes, line=bytes, rest=bytes,
                   parts=tuple)
    cdef feed(self, Side s, bytes data)
    @cython.locals(state=int)
    cdef line(self, Side s, bytes line)
    cdef request_line(self, Side s, bytes line, ts=*)
    @cython.locals(num_requests=Py_ssize_t, request=Request)
    cdef start_request(self, Side s, method, uri, version, ts)
    cdef status_line(self, Side s, bytes line, ts=*)
    cdef start_response(self, Side s, version, long code, reason, ts)
    @cython.locals(is_orig=bint, headers=list, known_lines=dict, names=dict, h=bytes,
                   zeek=ZeekHttpLog)
    cdef headers_done(self, Side s, ts=*)
    @cython.locals(is_orig=bint)
    cdef head_done(self, Side s, ts)
    @cython.locals(is_orig=bint, zeek=ZeekHttpLog, row=dict, upgrade=dict, k=Py_ssize_t)
    cdef plain_head(self, Side s, list values, list lines, Py_ssize_t count, double ts)
    cdef framing_header(self, Side s, bytes upper, bytes value)
    cdef connection_token(self, Side s, bytes token)
    @cython.locals(is_orig=bint, body_length=Py_ssize_t, request=Request)
    cpdef message_done(self, Side s, ts=*)
    @cython.locals(current=tuple)
    cdef set_version(self, Side s, tuple version)
