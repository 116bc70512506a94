# Declarations of the compiled Zeek TSV row writer (see logformat.pyx), so that
# compiled modules (flows.pyx writes conn.log rows from its structs) append to
# a log's buffer at C speed.
from libc.stdint cimport uint64_t
from cpython.object cimport PyObject

# Decimal text of a count, and of a time or interval with 6 decimals exactly
# as printf's "%.6f" (what the TSV writer used before): into `out` (at least
# 32 bytes); return the length.
cdef int format_count(char* out, uint64_t v) noexcept nogil
cdef int format_time(char* out, double v) noexcept nogil

cdef class TsvRows:
    cdef list names
    cdef int* kinds
    cdef int n
    cdef char* buf
    cdef size_t len
    cdef size_t cap
    cdef object out
    cdef readonly uint64_t rows
    # write(): a field's index by its name, the row's values by field index,
    # and the keys seen before by their address (each kept referenced).
    cdef dict index
    cdef PyObject** values
    cdef PyObject** cache_keys
    cdef int* cache_index
    cdef int slot_of(self, PyObject* key) except -2
    cdef void reserve(self, size_t extra) except *
    cdef void put(self, const char* s, size_t n) except *
    cdef void put_escaped(self, object value) except *
    cdef void put_element(self, object value) except *
    cdef void put_count(self, object value) except *
    cdef void end_row(self) except *
