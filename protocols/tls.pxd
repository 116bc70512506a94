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
               psk=bint)
cpdef tuple _client_hello_walk(bytes body, bint build)


@cython.locals(end=Py_ssize_t, pos=Py_ssize_t, stop=Py_ssize_t, block_end=Py_ssize_t,
               start=Py_ssize_t, names_end=Py_ssize_t, i=Py_ssize_t, k=Py_ssize_t)
cpdef tuple _server_hello_walk(bytes body, bint keep_data)
