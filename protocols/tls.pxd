# Typed locals of tls.py's one-pass hello walks, for the build only.
#
# tls.py stays plain Python (it runs as source with ANALYSER_FROM_SOURCE=1);
# when the build compiles it, Cython reads this file beside it: the walks
# over a ClientHello or ServerHello (every TLS session meets both) do their
# offset arithmetic and byte reads in C.  They take bytes only; their
# callers hand them bytes.
cimport cython


@cython.locals(end=Py_ssize_t, pos=Py_ssize_t, stop=Py_ssize_t, block_end=Py_ssize_t,
               start=Py_ssize_t, size=Py_ssize_t, names_end=Py_ssize_t,
               shares_end=Py_ssize_t, i=Py_ssize_t, j=Py_ssize_t, k=Py_ssize_t,
               psk=bint, kind=int, version=int, x_sni=int, x_groups=int, x_formats=int,
               x_signatures=int, x_alpn=int, x_ticket=int, x_psk=int, x_versions=int,
               x_key_share=int, x_key_share_old=int)
cpdef tuple _client_hello_walk(bytes body, bint build)


@cython.locals(end=Py_ssize_t, pos=Py_ssize_t, stop=Py_ssize_t, block_end=Py_ssize_t,
               start=Py_ssize_t, names_end=Py_ssize_t, i=Py_ssize_t, k=Py_ssize_t,
               kind=int, x_alpn=int, x_versions=int, x_key_share=int, x_key_share_old=int)
cpdef tuple _server_hello_walk(bytes body, bint keep_data)


# The analyser's per-record half.  Its helpers are C methods: a subclass of
# Tls overrides the Python ones (after_handshake, write_row, ...), not these.
from analyser.runtime cimport AnalyserCore


cdef class TlsCore(AnalyserCore):
    cdef public list encrypted
    cdef public list handshake_buffers
    cdef public list handshake_broken
    cdef public list certificates
    cdef public list stream_bytes
    cdef public list pending
    cdef public dict row
    cdef public bint logged
    cdef public bint established
    cdef public bint done
    cdef public bint limited
    cdef public Py_ssize_t records
    cdef public int client_side
    cdef public object version
    cdef public object cipher
    cdef public bint record_layer_known
    cdef public bint sslv2
    cdef public str client_session_id
    cdef public bint ticket_with_empty_session
    cdef public bint client_key_exchange_seen
    cdef public bint client_psk_seen
    cdef public bint hello_retry_seen

    cpdef bint feed_side(self, int side, object data) except -1
    @cython.locals(data=bytes, n=Py_ssize_t, content=int, version=int, length=Py_ssize_t,
                   end=Py_ssize_t, body=bytes, pending=list, encrypted=list, pos=Py_ssize_t,
                   taken=bint)
    cdef take_records(self, int side)
    cdef Py_ssize_t drop_at(self, int side, bytes data, Py_ssize_t pos, Py_ssize_t n) except -1
    @cython.locals(data=bytes, pending=list)
    cpdef drop(self, int side, Py_ssize_t n)
    cdef check_first_record(self, bytes head)
    @cython.locals(pos=Py_ssize_t, end=Py_ssize_t, size=Py_ssize_t, start=Py_ssize_t,
                   kind=int, client_side=int, buf=bytearray, row=dict, history=str,
                   letters=dict, message=bytes)
    cdef handshake_record(self, int side, bytes body)
    cdef client_hello_seen(self, int side, bytes message, tuple facts, hello=*)
    @cython.locals(row=dict)
    cdef server_hello_seen(self, bytes message, tuple facts, hello=*)
    @cython.locals(row=dict, history=str, is_client=bint)
    cdef change_cipher_spec(self, int side)
    cdef history(self, int side, str letter)
    cdef add_history(self, str letters)
    cdef start_row(self)
