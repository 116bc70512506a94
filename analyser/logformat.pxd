# Declarations of the compiled Zeek TSV row writer (see logformat.pyx), so that
# compiled modules (flows.pyx writes conn.log rows from its structs) append to
# a log's buffer at C speed.
from libc.stdint cimport uint64_t

cdef class TsvRows:
    cdef list names
    cdef int* kinds
    cdef int n
    cdef char* buf
    cdef size_t len
    cdef size_t cap
    cdef object out
    cdef readonly uint64_t rows
    cdef void reserve(self, size_t extra) except *
    cdef void put(self, const char* s, size_t n) except *
    cdef void put_escaped(self, object value) except *
    cdef void put_element(self, object value) except *
    cdef void put_count(self, object value) except *
    cdef void end_row(self) except *
