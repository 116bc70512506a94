# cython: language_level=3
"""Zeek TSV rows formatted in compiled code, into a buffer written in bulk.

Role in the data flow: sinks.  analyser/logs.py keeps the files (headers,
`#close`, JSON); this module turns each row (a dict keyed by field names,
None = unset) into one TSV line the way Zeek writes it, with no Python-level
loop per field:

- time and interval: 6 decimals; bool: T/F; count, port, int: decimal;
- string-like values: non-printable bytes, tab and backslash as \\xNN, the
  empty string `(empty)`, a lone `-` as `\\x2d` (it would read as unset);
- sets and vectors: elements escaped and joined by `,`, empty `(empty)`;
- unset: `-`.

Lines accumulate in a C buffer that is written to the file object when it
passes FLUSH_BYTES (and by `flush()`), so a busy log costs one write per
64 KiB, not one per row.
"""
from libc.stdint cimport uint8_t, uint64_t
from libc.stdio cimport snprintf
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.dict cimport PyDict_GetItemWithError, PyDict_Next
from cpython.ref cimport Py_INCREF, Py_XDECREF
from libc.stdint cimport uintptr_t
from cpython.float cimport PyFloat_AsDouble
from cpython.long cimport PyLong_CheckExact
from cpython.object cimport PyObject, PyObject_IsTrue
from cpython.unicode cimport PyUnicode_CheckExact

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size) except NULL
    # A str held as one byte per character, all ASCII: its bytes are its UTF-8.
    bint PyUnicode_IS_COMPACT_ASCII(object s)
    Py_ssize_t PyUnicode_GET_LENGTH(object s)
    void* PyUnicode_DATA(object s)
    long long PyLong_AsLongLongAndOverflow(object o, int* overflow) except? -1

cdef enum:
    FLUSH_BYTES = 65536
    # Row keys remembered by address per log (write()): far more than any
    # schema has fields; a key past them is looked up by name each time.
    KEY_CACHE = 256
    KEY_PROBES = 8
    SMALL_FIELD = 40     # room for a separator and a time, count, bool or "-"

cdef enum FieldKind:
    K_STRING = 0
    K_TIME = 1
    K_BOOL = 2
    K_COUNT = 3
    K_SET = 4

cdef const char* HEX = b"0123456789abcdef"

cdef extern from "<math.h>" nogil:
    double floor(double x)
    double fma(double x, double y, double z)

# Below 2**53 a double's integer part is exact, and so are the steps of
# format_time(); other values (and negative ones) go through snprintf.
cdef double EXACT_LIMIT = 9007199254740992.0


cdef int format_count(char* out, uint64_t v) noexcept nogil:
    cdef char digits[24]
    cdef int n = 0, i
    while True:
        digits[n] = 48 + <char>(v % 10)
        n += 1
        v //= 10
        if v == 0:
            break
    for i in range(n):
        out[i] = digits[n - 1 - i]
    return n


cdef int format_time(char* out, double v) noexcept nogil:
    """printf's "%.6f" without printf (a tenth of its cost): the exact value
    rounded to 6 decimals, ties to even, as glibc rounds.  The fraction
    times 10**6 and the rounding error of that product (fma) give the exact
    value's position against the half-way point."""
    cdef double whole, frac, scaled, err, below, rest
    cdef uint64_t micros
    cdef int n, i
    cdef bint up
    if not (v >= 0.0 and v < EXACT_LIMIT):
        # Negative, huge, NaN: printf's text, cut to the buffer's 32 bytes
        # (a time past 10**25 is nonsense anyway).
        n = snprintf(out, 32, b"%.6f", v)
        return n if n < 32 else 31
    whole = floor(v)
    frac = v - whole                               # exact
    scaled = frac * 1e6
    err = fma(frac, 1e6, -scaled)                  # exact: frac * 1e6 == scaled + err
    below = floor(scaled)
    rest = scaled - below                          # exact
    if rest > 0.5:
        up = True
    elif rest < 0.5:
        up = False
    elif err > 0.0:
        up = True
    elif err < 0.0:
        up = False
    else:
        up = (<uint64_t>below) & 1                 # an exact tie: to even
    micros = <uint64_t>below + (1 if up else 0)
    if micros == 1000000:
        micros = 0
        whole += 1.0
    n = format_count(out, <uint64_t>whole)
    out[n] = 46                                    # "."
    for i in range(6, 0, -1):
        out[n + i] = 48 + <char>(micros % 10)
        micros //= 10
    return n + 7


def format_time_text(double v) -> bytes:
    """format_time() for tests: the text of `v` with 6 decimals."""
    cdef char tmp[40]
    return PyBytes_FromStringAndSize(tmp, format_time(tmp, v))


cdef int kind_of(str zeek_type):
    if zeek_type in ("time", "interval"):
        return K_TIME
    if zeek_type == "bool":
        return K_BOOL
    if zeek_type in ("count", "port", "int"):
        return K_COUNT
    if zeek_type.startswith(("set[", "vector[")):
        return K_SET
    return K_STRING


cdef class TsvRows:
    """Formats rows of one log (its schema's names and Zeek types) into `out`,
    a binary file object.  Compiled writers (the flow table's conn.log rows)
    append to the same buffer through the cdef methods of logformat.pxd."""

    def __cinit__(self, fields, out):
        cdef int i
        self.names = [f.name for f in fields]
        self.n = len(self.names)
        self.kinds = <int*>malloc(sizeof(int) * max(1, self.n))
        self.cap = FLUSH_BYTES * 2
        self.buf = <char*>malloc(self.cap)
        if self.kinds == NULL or self.buf == NULL:
            raise MemoryError()
        for i, f in enumerate(fields):
            self.kinds[i] = kind_of(f.zeek_type)
        self.len = 0
        self.rows = 0
        self.out = out
        self.index = {name: i for i, name in enumerate(self.names)}
        self.values = <PyObject**>malloc(sizeof(PyObject*) * max(1, self.n))
        self.cache_keys = <PyObject**>malloc(sizeof(PyObject*) * KEY_CACHE)
        self.cache_index = <int*>malloc(sizeof(int) * KEY_CACHE)
        if self.values == NULL or self.cache_keys == NULL or self.cache_index == NULL:
            raise MemoryError()
        for i in range(KEY_CACHE):
            self.cache_keys[i] = NULL

    def __dealloc__(self):
        cdef int i
        if self.cache_keys != NULL:
            for i in range(KEY_CACHE):
                Py_XDECREF(self.cache_keys[i])
        free(self.kinds)
        free(self.buf)
        free(self.values)
        free(self.cache_keys)
        free(self.cache_index)

    cdef int slot_of(self, PyObject* key) except -2:
        """The field index of a row key (-1: not a field of this log).  A key
        met before is found by its address: rows are made with the same key
        objects (the analysers' constants) again and again.  A remembered key
        is kept referenced, so its address is never another object's."""
        cdef uintptr_t h = (<uintptr_t>key >> 4) * <uintptr_t>0x9E3779B1
        cdef int k, j, free_slot = -1
        cdef PyObject* found
        for k in range(KEY_PROBES):
            j = <int>((h + k) & (KEY_CACHE - 1))
            if self.cache_keys[j] == key:
                return self.cache_index[j]
            if self.cache_keys[j] == NULL:
                free_slot = j
                break
        found = PyDict_GetItemWithError(self.index, <object>key)
        if found == NULL:
            k = -1
        else:
            k = <int><object>found
        if free_slot >= 0:
            Py_INCREF(<object>key)
            self.cache_keys[free_slot] = key
            self.cache_index[free_slot] = k
        return k

    cdef void reserve(self, size_t extra) except *:
        cdef size_t cap = self.cap
        cdef char* grown
        if self.len + extra <= cap:
            return
        while self.len + extra > cap:
            cap *= 2
        grown = <char*>realloc(self.buf, cap)
        if grown == NULL:
            raise MemoryError()
        self.buf = grown
        self.cap = cap

    cdef void put(self, const char* s, size_t n) except *:
        self.reserve(n)
        memcpy(self.buf + self.len, s, n)
        self.len += n

    cdef void put_escaped(self, object value) except *:
        """A value as Zeek writes a string: escaped, (empty) or \\x2d."""
        cdef Py_ssize_t size
        cdef const char* s
        cdef Py_ssize_t i
        cdef uint8_t c
        cdef bytes encoded
        if not PyUnicode_CheckExact(value):
            value = str(value)
        if PyUnicode_IS_COMPACT_ASCII(value):
            s = <const char*>PyUnicode_DATA(value)      # most strings: no call
            size = PyUnicode_GET_LENGTH(value)
        else:
            try:
                s = PyUnicode_AsUTF8AndSize(value, &size)
            except UnicodeEncodeError:
                encoded = (<str>value).encode("utf-8", "backslashreplace")
                s = encoded
                size = len(encoded)
        if size == 0:
            self.put(b"(empty)", 7)
            return
        if size == 1 and s[0] == b'-':
            self.put(b"\\x2d", 4)
            return
        for i in range(size):
            c = <uint8_t>s[i]
            if c < 0x20 or c == 0x7f or c == 0x5c:
                break
        else:
            self.put(s, size)            # the usual string: nothing to escape
            return
        self.reserve(<size_t>size * 4)
        for i in range(size):
            c = <uint8_t>s[i]
            if c < 0x20 or c == 0x7f or c == 0x5c:
                self.buf[self.len] = b'\\'
                self.buf[self.len + 1] = b'x'
                self.buf[self.len + 2] = HEX[c >> 4]
                self.buf[self.len + 3] = HEX[c & 15]
                self.len += 4
            else:
                self.buf[self.len] = <char>c
                self.len += 1

    cdef void put_element(self, object value) except *:
        """One element of a set: escaped, but an empty one stays empty."""
        cdef str text = value if PyUnicode_CheckExact(value) else str(value)
        if text == "":
            return
        if text == "-":
            self.put(b"-", 1)
            return
        self.put_escaped(text)

    cdef void put_count(self, object value) except *:
        cdef char tmp[32]
        cdef int overflow = 0
        cdef long long v
        cdef int n
        if PyLong_CheckExact(value):
            v = PyLong_AsLongLongAndOverflow(value, &overflow)
            if not overflow:
                if v >= 0:
                    self.reserve(24)                # straight into the buffer
                    self.len += format_count(self.buf + self.len, <uint64_t>v)
                else:
                    n = snprintf(tmp, 32, b"%lld", v)
                    self.put(tmp, n)
                return
        text = str(int(value)).encode("ascii")
        self.put(text, len(text))

    def write(self, dict row):
        """Append one row (a line) to the buffer; written out past FLUSH_BYTES."""
        cdef int i
        cdef PyObject* item
        cdef PyObject* key
        cdef Py_ssize_t pos = 0
        cdef object value
        cdef int n
        # The row's values by field, in one pass over the row (keys that are no
        # field of the log are left out, as before).
        for i in range(self.n):
            self.values[i] = NULL
        while PyDict_Next(row, &pos, &key, &item):
            i = self.slot_of(key)
            if i >= 0:
                self.values[i] = item
        for i in range(self.n):
            if self.len + SMALL_FIELD > self.cap:
                self.reserve(SMALL_FIELD)
            if i:
                self.buf[self.len] = 9            # tab
                self.len += 1
            item = self.values[i]
            if item == NULL or <object>item is None:
                self.buf[self.len] = 45           # "-"
                self.len += 1
                continue
            value = <object>item
            if self.kinds[i] == K_TIME:
                self.len += format_time(self.buf + self.len, PyFloat_AsDouble(value))
            elif self.kinds[i] == K_COUNT:
                self.put_count(value)
            elif self.kinds[i] == K_BOOL:
                self.put(b"T" if PyObject_IsTrue(value) else b"F", 1)
            elif self.kinds[i] == K_SET:
                if not value:
                    self.put(b"(empty)", 7)
                else:
                    first = True
                    for element in value:
                        if not first:
                            self.put(b",", 1)
                        first = False
                        self.put_element(element)
            else:
                self.put_escaped(value)
        self.end_row()

    cdef void end_row(self) except *:
        """The newline of a row; the buffer goes out past FLUSH_BYTES."""
        self.put(b"\n", 1)
        self.rows += 1
        if self.len >= FLUSH_BYTES:
            self.flush()

    @property
    def pending(self):
        """Bytes formatted but not yet written to the file."""
        return self.len

    def retarget(self, out):
        """Write to another file from now on (after rotation)."""
        self.flush()
        self.out = out

    def flush(self):
        """Write what the buffer holds to the file."""
        if self.len:
            self.out.write(PyBytes_FromStringAndSize(self.buf, self.len))
            self.len = 0
