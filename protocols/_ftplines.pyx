# cython: language_level=3
"""FTP control lines cut out of a chunk in C, for protocols/ftp.py.

Role in the data flow: analysers (protocols.ftp) -> **here** -> back to
protocols.ftp.  Nothing else uses it.

A control chunk usually holds whole lines.  `next_line()` finds the next LF
with memchr and decodes the line straight from the chunk, without its CR,
the way ftp.py's `handle_line()` does (UTF-8, undecodable bytes as
backslash escapes): one string per line, no intermediate bytes objects.  A
line longer than the caller's limit is left to ftp.py, which reports it and
cuts it as before.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.string cimport memchr


def next_line(bytes chunk, Py_ssize_t start, Py_ssize_t max_line):
    """The line of `chunk` that starts at `start`, as (text, lf): `lf` is
    the index of its LF, `text` the line decoded without a final CR ("" for
    an empty line), or None when the line is longer than `max_line` bytes
    (before its CR is dropped: the caller cuts it).  None when no LF follows
    `start`."""
    cdef Py_ssize_t size = PyBytes_GET_SIZE(chunk)
    if start < 0 or start >= size:
        return None
    cdef const char* data = PyBytes_AS_STRING(chunk)
    cdef const char* lf = <const char*>memchr(data + start, 10, size - start)
    if lf == NULL:
        return None
    cdef Py_ssize_t end = lf - data
    cdef Py_ssize_t n = end - start
    if n > max_line:
        return (None, end)
    if n and data[end - 1] == 13:            # CR LF
        n -= 1
    if not n:
        return ("", end)
    return (PyUnicode_DecodeUTF8(data + start, n, "backslashreplace"), end)
