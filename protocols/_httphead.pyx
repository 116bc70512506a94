# cython: language_level=3
"""HTTP message heads read in C, for protocols/http.py.

Role in the data flow: analysers (protocols.http) -> **here** -> back to
protocols.http.  Nothing else uses it.

Nearly every HTTP message starts with a plain head: "GET /path HTTP/1.1" or
"HTTP/1.1 200 OK", then header lines each ending in CRLF, none folded, and
among the headers that matter only a plain Content-Length, Connection and
the ones http.log copies (Host, User-Agent, ...).  `HeadScanner.request()`
and `.response()` read such a head in one pass over the packet: where it
ends, the first line's parts, and for each header http.py names (`read`) its
value (a number, a lower-cased token, or text) and, if asked, its whole line.
Every other header costs a comparison of its name and creates nothing.

Whatever is not plain (a bare LF, a folded line, a header without a colon,
a name of `bail`, a Content-Length with a sign or leading zeros, the same
read header twice, a % in the URI, HTTP/0.9, too many lines, a head that
does not end within `max_line` bytes or in this packet) returns None, and
http.py's general path reads the head as it always did: this module never
decides anything that path would decide differently, and never reports a
weird.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdlib cimport malloc, free
from libc.string cimport memchr

ctypedef const unsigned char* cbytes

# What a read header's value becomes.
NUMBER, TOKEN, TEXT = 1, 2, 3
cdef enum:
    K_NUMBER = 1
    K_TOKEN = 2
    K_TEXT = 3
    MAX_NAME = 64            # longer names are no configured name
    MAX_NUMBER_DIGITS = 18   # what http.py reads without overflow (len < 19)

# Character classes (http.py's regular expressions, as tables).
cdef unsigned char TOKEN_CHARS[256]      # RFC 9110 tchar
cdef unsigned char URI_CHARS[256]        # what Zeek accepts in a URI
cdef unsigned char VALUE_STOP[256]       # what ends a MIME token (get_value_token)
cdef unsigned char NAME_SPACE[256]       # what bytes.strip() strips


cdef void fill(unsigned char* table, bytes chars):
    cdef Py_ssize_t i
    for i in range(len(chars)):
        table[<unsigned char>chars[i]] = 1


cdef void init_tables():
    cdef int c
    for c in range(256):
        TOKEN_CHARS[c] = URI_CHARS[c] = VALUE_STOP[c] = NAME_SPACE[c] = 0
    alnum = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    fill(TOKEN_CHARS, alnum + b"!#$%&'*+-.^_`|~")
    fill(URI_CHARS, alnum + b":/?#[]@!$&'()*+,;=-_.~%")
    for c in range(0x21):
        VALUE_STOP[c] = 1
    VALUE_STOP[0x7f] = 1
    fill(VALUE_STOP, b"()<>@,;:\\\"/[]?=")
    fill(NAME_SPACE, b" \t\n\r\x0b\x0c")


init_tables()

# (major, minor) for every d.d version: made once.
VERSIONS = tuple(tuple((major, minor) for minor in range(10)) for major in range(10))


cdef inline unsigned char upper(unsigned char c) noexcept:
    return c - 32 if 97 <= c <= 122 else c


cdef inline unsigned char lower(unsigned char c) noexcept:
    return c + 32 if 65 <= c <= 90 else c


cdef Py_ssize_t first_line(cbytes d, Py_ssize_t pos, Py_ssize_t n) noexcept:
    """Where the line at `pos` ends (its CR), -1 when it has no CR LF in
    `d[pos:n]`, is empty, or ends in a bare LF."""
    cdef const unsigned char* found
    cdef Py_ssize_t le
    if pos >= n:
        return -1
    found = <const unsigned char*>memchr(d + pos, 10, n - pos)
    if found == NULL:
        return -1
    le = found - d
    if le == pos or d[le - 1] != 13:
        return -1
    return le - 1


cdef inline bint is_version(cbytes p) noexcept:
    """The 8 bytes at `p` are "HTTP/d.d"."""
    return (p[0] == 72 and p[1] == 84 and p[2] == 84 and p[3] == 80 and p[4] == 47
            and p[6] == 46 and 48 <= p[5] <= 57 and 48 <= p[7] <= 57)


cdef class HeadScanner:
    """Reads plain heads.  `read`: (upper-case name, NUMBER | TOKEN | TEXT
    or 0, keep the line) per header whose value or line the caller wants, in
    the order of the lists returned; `bail`: upper-case names whose presence
    makes a head not plain; `bail_prefix`: a name prefix that does too;
    `tokens`: TOKEN values taken whole (lower-cased) when the whole value is
    one of them, else the value's first MIME token is; `max_line`: the
    head's end must lie within that many bytes of its start; `max_lines`:
    header lines at most."""

    cdef int n_read
    cdef int n_bail
    cdef char** names           # n_read + n_bail upper-case names
    cdef int* lengths
    cdef int* kinds
    cdef bint* keep
    cdef bytes prefix
    cdef frozenset tokens
    cdef Py_ssize_t max_line
    cdef Py_ssize_t max_lines
    cdef list _keep_alive       # the bytes objects `names` point into

    def __cinit__(self, read, bail, bytes bail_prefix, tokens, Py_ssize_t max_line,
                  Py_ssize_t max_lines):
        cdef int i, total
        entries = [(bytes(name), int(kind), bool(keep_line)) for name, kind, keep_line in read]
        entries += [(bytes(name), 0, False) for name in bail]
        self.n_read = len(read)
        self.n_bail = len(entries) - self.n_read
        total = len(entries)
        self.names = <char**>malloc(sizeof(char*) * max(1, total))
        self.lengths = <int*>malloc(sizeof(int) * max(1, total))
        self.kinds = <int*>malloc(sizeof(int) * max(1, total))
        self.keep = <bint*>malloc(sizeof(bint) * max(1, total))
        if not (self.names and self.lengths and self.kinds and self.keep):
            raise MemoryError()
        self._keep_alive = []
        for i, (name, kind, keep_line) in enumerate(entries):
            if name != name.upper() or not 0 < len(name) <= MAX_NAME:
                raise ValueError("header name %r: upper case, 1 to %d bytes" % (name, MAX_NAME))
            self._keep_alive.append(name)
            self.names[i] = PyBytes_AS_STRING(name)
            self.lengths[i] = <int>len(name)
            self.kinds[i] = kind
            self.keep[i] = keep_line
        self.prefix = bail_prefix.upper()
        self.tokens = frozenset(bytes(t).lower() for t in tokens)
        self.max_line = max_line
        self.max_lines = max_lines

    def __dealloc__(self):
        free(self.names)
        free(self.lengths)
        free(self.kinds)
        free(self.keep)

    cdef int match(self, cbytes name, Py_ssize_t n) noexcept:
        """Index of the configured name `name` is (case-insensitive), -1 for
        none, -2 for a name that makes the head not plain."""
        cdef int i, j
        cdef cbytes want
        cdef Py_ssize_t p = PyBytes_GET_SIZE(self.prefix)
        for i in range(self.n_read + self.n_bail):
            if self.lengths[i] != n:
                continue
            want = <cbytes>self.names[i]
            for j in range(n):
                if upper(name[j]) != want[j]:
                    break
            else:
                return i if i < self.n_read else -2
        if p and n >= p:
            want = <cbytes>PyBytes_AS_STRING(self.prefix)
            for j in range(p):
                if upper(name[j]) != want[j]:
                    return -1
            return -2
        return -1

    cdef object value(self, int kind, cbytes v, Py_ssize_t n):
        """A read header's value (stripped of spaces and tabs), or None: not plain."""
        cdef Py_ssize_t i, t
        cdef long long number = 0
        cdef char tmp[MAX_NAME]
        cdef bytes whole
        if kind == K_NUMBER:
            if n == 0 or n > MAX_NUMBER_DIGITS or (n > 1 and v[0] == 48):
                return None
            for i in range(n):
                if not 48 <= v[i] <= 57:
                    return None
                number = number * 10 + (v[i] - 48)
            return number
        if kind == K_TOKEN:
            if n <= MAX_NAME:
                for i in range(n):
                    tmp[i] = <char>lower(v[i])
                whole = PyBytes_FromStringAndSize(tmp, n)
                if whole in self.tokens:
                    return whole
            t = 0
            while t < n and t < MAX_NAME and not VALUE_STOP[v[t]]:
                tmp[t] = <char>lower(v[t])
                t += 1
            if t == MAX_NAME:
                return None
            return PyBytes_FromStringAndSize(tmp, t)
        if kind == K_TEXT:
            return PyUnicode_DecodeUTF8(<const char*>v, n, "backslashreplace")
        return True

    cdef object headers(self, cbytes data, Py_ssize_t pos, Py_ssize_t n, Py_ssize_t start,
                        bint texts, Py_ssize_t* end):
        """The header lines from `pos` (`start`: where the head began) to the
        empty line: [values, lines, count]; *end is after that line.  None:
        not plain."""
        cdef Py_ssize_t limit = start + self.max_line
        cdef Py_ssize_t ls = pos, le, nl, count = 0
        cdef Py_ssize_t ns, ne, vs, ve
        cdef const unsigned char* colon
        cdef const unsigned char* found
        cdef int k
        values = None
        lines = None
        while True:
            if ls >= n:
                return None
            found = <const unsigned char*>memchr(data + ls, 10, n - ls)
            if found == NULL:
                return None
            nl = found - data
            if nl == ls or data[nl - 1] != 13:
                return None                      # a bare LF
            le = nl - 1
            if le == ls:
                # The empty line: the head ends here, within max_line of its start
                # (its CR LF CR LF, as http.py's find() bounds it).
                if ls + 2 > limit:
                    return None
                end[0] = nl + 1
                return [values, lines, count]
            if nl + 1 > limit:
                return None
            count += 1
            if count > self.max_lines or data[ls] == 32 or data[ls] == 9:
                return None                      # too many, or folded
            colon = <const unsigned char*>memchr(data + ls, 58, le - ls)
            if colon == NULL:
                return None
            ns = ls
            ne = colon - data
            while ns < ne and NAME_SPACE[data[ns]]:
                ns += 1
            while ne > ns and NAME_SPACE[data[ne - 1]]:
                ne -= 1
            k = self.match(data + ns, ne - ns)
            if k == -2:
                return None
            if k >= 0:
                if values is None:
                    values = [None] * self.n_read
                    lines = [None] * self.n_read
                if values[k] is not None:
                    return None                  # twice: the general path decides
                vs = colon - data + 1
                ve = le
                while vs < ve and (data[vs] == 32 or data[vs] == 9):
                    vs += 1
                while ve > vs and (data[ve - 1] == 32 or data[ve - 1] == 9):
                    ve -= 1
                if self.kinds[k] == K_TEXT and not texts:
                    v = True
                else:
                    v = self.value(self.kinds[k], data + vs, ve - vs)
                    if v is None:
                        return None
                values[k] = v
                if self.keep[k]:
                    lines[k] = PyBytes_FromStringAndSize(<const char*>data + ls, le - ls)
            ls = nl + 1

    def request(self, bytes data, Py_ssize_t pos):
        """A plain request head at `pos`: (end, end of the request line,
        method, URI, version, values, lines, header count) or None.  TEXT
        values are read (a request's are logged)."""
        cdef cbytes d = <cbytes>PyBytes_AS_STRING(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        cdef Py_ssize_t i = pos, ms, me, us, ue, end = 0
        cdef Py_ssize_t le = first_line(d, pos, n)
        cdef int major, minor
        if le < 0:
            return None
        ms = i
        while i < le and TOKEN_CHARS[d[i]]:
            i += 1
        me = i
        if me == ms or i >= le or not (d[i] == 32 or d[i] == 9):
            return None
        while i < le and (d[i] == 32 or d[i] == 9):
            i += 1
        us = i
        while i < le and URI_CHARS[d[i]]:
            if d[i] == 37:                    # %: unescaped, with weirds, by http.py
                return None
            i += 1
        ue = i
        if ue == us or i >= le or not (d[i] == 32 or d[i] == 9):
            return None
        while i < le and (d[i] == 32 or d[i] == 9):
            i += 1
        if le - i != 8 or not is_version(d + i):
            return None                       # not "HTTP/d.d" at the end
        major = d[i + 5] - 48
        minor = d[i + 7] - 48
        if major == 0 and minor == 9:
            return None
        if ue - us >= 5 and (d[us] | 32) == 104 and upper(d[us + 1]) == 84 \
                and upper(d[us + 2]) == 84 and upper(d[us + 3]) == 80 and d[us + 4] == 47:
            return None                       # a URI that reads like a version
        head = self.headers(d, le + 2, n, pos, True, &end)
        if head is None:
            return None
        return (end, le + 2, PyBytes_FromStringAndSize(<const char*>d + ms, me - ms),
                PyBytes_FromStringAndSize(<const char*>d + us, ue - us),
                VERSIONS[major][minor], head[0], head[1], head[2])

    def response(self, bytes data, Py_ssize_t pos):
        """A plain response head at `pos`: (end, end of the status line,
        version, status code, reason, values, lines, header count) or None.
        TEXT values are not read (a response's are not logged)."""
        cdef cbytes d = <cbytes>PyBytes_AS_STRING(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        cdef Py_ssize_t i = pos, end = 0
        cdef Py_ssize_t le = first_line(d, pos, n)
        cdef int code
        if le < 0:
            return None
        if le - i < 13 or not is_version(d + i) or not (d[i + 8] == 32 or d[i + 8] == 9):
            return None                       # "HTTP/d.d" and a blank
        i += 8
        while i < le and (d[i] == 32 or d[i] == 9):
            i += 1
        if le - i < 4 or not (48 <= d[i] <= 57 and 48 <= d[i + 1] <= 57
                              and 48 <= d[i + 2] <= 57) or not (d[i + 3] == 32 or d[i + 3] == 9):
            return None                       # three digits and a blank
        code = (d[i] - 48) * 100 + (d[i + 1] - 48) * 10 + d[i + 2] - 48
        i += 3
        while i < le and (d[i] == 32 or d[i] == 9):
            i += 1
        head = self.headers(d, le + 2, n, pos, False, &end)
        if head is None:
            return None
        return (end, le + 2, VERSIONS[d[pos + 5] - 48][d[pos + 7] - 48], code,
                PyBytes_FromStringAndSize(<const char*>d + i, le - i),
                head[0], head[1], head[2])
