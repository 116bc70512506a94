# Typed layout of ftp.py's per-line classes, for the build only.
#
# ftp.py stays plain Python (it runs as source with ANALYSER_FROM_SOURCE=1);
# when the build compiles it, Cython reads this file beside it and makes the
# classes every control line goes through extension types: FtpCore (line
# cutting, command and reply parsing, reply pairing), ZeekFtpLog (Zeek's
# ftp.log bookkeeping) and the small records they keep per command and reply.
# Their state becomes struct fields and the calls between them C calls.  The
# rest of the analyser (Ftp: channels, expectations, transfers; GridFTP's
# extension points) stays Python, called as methods.
cimport cython
from analyser.runtime cimport AnalyserCore


@cython.locals(start=Py_ssize_t, end=Py_ssize_t)
cpdef extract_last_count(str text)


@cython.locals(n=Py_ssize_t, i=Py_ssize_t, k=Py_ssize_t, start=Py_ssize_t, v=long,
               negative=bint, values=list)
cpdef parse_port_numbers(str text)


cdef class CmdArg:
    cdef public double ts
    cdef public str cmd
    cdef public str arg
    cdef public Py_ssize_t seq
    cdef public bint cwd_consumed


cdef class ZeekFtpLog:
    cdef public object id
    cdef public str uid
    cdef public object write
    cdef public object weird
    cdef public object logged_commands
    cdef public bint capture_password
    cdef public bint started
    cdef public str user
    cdef public bint user_seen
    cdef public bint hide_password
    cdef public object password
    cdef public object command
    cdef public object arg
    cdef public object file_size
    cdef public object reply_code
    cdef public object reply_msg
    cdef public object data_channel
    cdef public str cwd
    cdef public CmdArg cmdarg
    cdef public dict pending
    cdef public Py_ssize_t command_seq
    cdef public bint logged_command_seen
    cdef public double ts
    cdef public dict new_row

    cdef _session(self, double ts)
    cdef bint _hide_password(self)
    @cython.locals(best=CmdArg, ca=CmdArg, score=Py_ssize_t, pending=dict)
    cdef CmdArg _best_pending(self, long code, str msg, double ts)
    @cython.locals(command=str, arg=str, hide=bint)
    cdef _message(self, CmdArg ca)
    @cython.locals(row=dict)
    cpdef dict row(self, double ts)
    @cython.locals(pending=dict, cmdarg=CmdArg, seq=Py_ssize_t)
    cpdef request(self, double ts, str cmd, str arg)
    cdef _announce(self, passive, orig_h, resp_h, resp_p)
    @cython.locals(cmdarg=CmdArg, cmd=str, i=Py_ssize_t)
    cpdef reply(self, double ts, long code, str msg, bint continued)
    cpdef finalize(self)


cdef class Awaiting:
    cdef public str cmd
    cdef public str arg
    cdef public double ts
    cdef public object transfer


cdef class Reply:
    cdef public long code
    cdef public str text
    cdef public list lines
    cdef public double ts


cdef class FtpCore(AnalyserCore):
    cdef public ZeekFtpLog zeek
    cdef public list buffers          # by side: the unfinished line
    cdef public list discarding       # by side: dropping the rest of a cut line
    cdef public bint stopped
    cdef public object awaiting       # deque of Awaiting
    cdef public list reply_lines
    cdef public long reply_code_pending
    cdef public object reply_first
    cdef public str auth_requested
    cdef public str mode
    cdef public dict sizes

    @cython.locals(buf=bytearray, chunk=bytes, line=bytes, start=Py_ssize_t, nl=Py_ssize_t)
    cpdef bint feed(self, int side, object data) except -1
    @cython.locals(n=Py_ssize_t, text=str)
    cdef handle_line(self, int side, bytes raw)
    @cython.locals(stripped=str, word=str, arg=str, cmd=str, ts=double, waiting=Awaiting,
                   end=Py_ssize_t, n=Py_ssize_t)
    cpdef handle_command_line(self, str line)
    @cython.locals(n=Py_ssize_t, code=long, c0=Py_UCS4, c1=Py_UCS4, c2=Py_UCS4, ts=double,
                   text=str)
    cpdef handle_reply_line(self, str line)
    cdef collect_reply_line(self, str text)
    cdef zeek_reply(self, double ts, long code, str text, bint continued)
    cdef invalid_reply(self, str reason, str line)
    @cython.locals(head=Awaiting)
    cdef complete_reply(self, Reply reply)
    cdef preliminary_reply(self, Awaiting head, Reply reply)
    @cython.locals(cmd=str, code=long)
    cdef final_reply(self, Awaiting head, Reply reply)
