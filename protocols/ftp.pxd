# Typed layout of ftp.py's per-line and per-transfer classes, for the build only.
#
# ftp.py stays plain Python (it runs as source with ANALYSER_FROM_SOURCE=1);
# when the build compiles it, Cython reads this file beside it and makes the
# classes every control line and every transfer goes through extension
# types: FtpCore (line cutting, command and reply parsing, reply pairing,
# data channels, expectations, transfers), ZeekFtpLog (Zeek's ftp.log
# bookkeeping) and the small records they keep per command, reply, channel
# and transfer.  Their state becomes struct fields and the calls between them
# C calls.  The extension points are cpdef: GridFTP (a Python subclass)
# overrides them as plain methods.  Ftp itself (declarations, the session's
# start and end) stays Python.
cimport cython
from analyser.runtime cimport AnalyserCore


@cython.locals(start=Py_ssize_t, end=Py_ssize_t)
cpdef extract_last_count(str text)


cpdef bint is_absolute_path(str name)
cpdef str build_path_compressed(str directory, str name)


@cython.locals(n=Py_ssize_t)
cpdef Py_ssize_t blanks_end(str line, Py_ssize_t i) except -1
cpdef str text_from(str line, Py_ssize_t i)


@cython.locals(n=Py_ssize_t, i=Py_ssize_t, start=Py_ssize_t, c=Py_UCS4, lower=bint,
               printable=bint)
cpdef tuple split_command(str line)


@cython.locals(n=Py_ssize_t, i=Py_ssize_t, k=Py_ssize_t, start=Py_ssize_t, v=long,
               negative=bint, values=list)
cpdef parse_port_numbers(str text)


@cython.locals(i=Py_ssize_t, start=Py_ssize_t)
cpdef parse_pasv_reply(str msg)


cdef class CmdArg:
    cdef public double ts
    cdef public str cmd
    cdef public str arg
    cdef public Py_ssize_t seq
    cdef public bint cwd_consumed


cdef class DataChannelAnnouncement:
    cdef public bint passive
    cdef public object orig_h
    cdef public object resp_h
    cdef public object resp_p


cdef class Transfer


cdef class StreamCount:
    cdef public str uid
    cdef public object bytes
    cdef public object missed_bytes
    cdef public bint ended
    cdef public bint end_of_data
    cdef public object duration


cdef class Channel:
    cdef public Py_ssize_t number
    cdef public bint passive
    cdef public object orig_h
    cdef public list endpoints
    cdef public str mode
    cdef public bint parsed
    cdef public dict started
    cdef public Transfer transfer
    cdef public bint used
    cdef public object early
    cdef public dict expected
    cdef public list pending


cdef class Transfer:
    cdef public double ts
    cdef public str command
    cdef public object file
    cdef public str protocol
    cdef public Channel channel
    cdef public Py_ssize_t number
    cdef public object size_announced
    cdef public object reply_code
    cdef public object reply_ts
    cdef public dict streams
    cdef public object blocks
    cdef public bint control_ended
    cdef public bint done


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
    cdef public frozenset transfer_command_set
    cdef public bint extends_commands  # a subclass has extension_command
    cdef public bint extends_replies   # ... extension_reply
    cdef public bint encrypted
    cdef public bint tls_record_unread
    cdef public dict channels          # number -> Channel
    cdef public Py_ssize_t channel_count
    cdef public Channel current_channel
    cdef public list transfers         # open ones
    cdef public Py_ssize_t transfer_count
    cdef public list live_expectations
    cdef public bint closed
    cdef public bint ended

    @cython.locals(buf=bytearray, chunk=bytes, line=bytes, start=Py_ssize_t, nl=Py_ssize_t,
                   text=str, found=tuple)
    cpdef bint feed(self, int side, object data) except -1
    @cython.locals(n=Py_ssize_t)
    cdef handle_line(self, int side, bytes raw)
    cdef handle_text(self, int side, str text)
    @cython.locals(word=str, arg=str, cmd=str, ts=double, waiting=Awaiting, lower=bint,
                   printable=bint, announced=DataChannelAnnouncement)
    cdef handle_command_line(self, str line)
    @cython.locals(n=Py_ssize_t, code=long, c0=Py_UCS4, c1=Py_UCS4, c2=Py_UCS4, ts=double,
                   text=str)
    cdef handle_reply_line(self, str line)
    cdef collect_reply_line(self, str text)
    @cython.locals(announced=DataChannelAnnouncement)
    cdef zeek_reply(self, double ts, long code, str text, bint continued)
    cdef invalid_reply(self, str reason, str line)
    @cython.locals(head=Awaiting)
    cdef complete_reply(self, Reply reply)
    cdef preliminary_reply(self, Awaiting head, Reply reply)
    @cython.locals(cmd=str, code=long)
    cdef final_reply(self, Awaiting head, Reply reply)

    # Data channels, expectations and transfers: once per channel or data
    # connection, C calls between them; GridFTP's overrides still win.
    @cython.locals(ch=Channel, t=Transfer, i=Py_ssize_t, per_endpoint=Py_ssize_t)
    cpdef Channel open_channel(self, bint passive, object orig_h, object endpoints,
                               object mode=*)
    @cython.locals(endpoint=tuple)
    cpdef expect_endpoint(self, Channel ch, object resp_h, object resp_p, object analyser)
    @cython.locals(live=list, now=double)
    cdef expect_bounded(self, object resp_h, object resp_p, object orig_h, object analyser,
                         dict meta)
    @cython.locals(i=Py_ssize_t)
    cpdef expectation_met(self, dict meta, object pending=*)
    @cython.locals(withdrawn=Py_ssize_t)
    cpdef cancel_all(self, list expectations)
    cpdef withdraw(self, Channel ch)
    cdef bint superseded(self, Channel ch)
    @cython.locals(ch=Channel)
    cdef forget_old_channels(self)
    cpdef data_analyser(self, Channel ch)
    cpdef data_service(self, Channel ch)
    cpdef initial_expectations(self, Channel ch)
    @cython.locals(ch=Channel, t=Transfer, endpoint=tuple)
    cdef stream_started(self, object conn, dict meta)
    cpdef extension_stream_started(self, Channel ch, object conn, object meta)
    cpdef extension_unknown_stream(self, object conn, object meta)
    @cython.locals(ch=Channel, t=Transfer, stream=StreamCount, sender_is_orig=bint)
    cdef stream_ended(self, dict row, dict meta)
    @cython.locals(ch=Channel, t=Transfer)
    cdef start_transfer(self, double ts, str cmd, str arg)
    @cython.locals(previous=Transfer)
    cdef attach_transfer(self, Transfer t, Channel ch)
    cpdef bind_transfer(self, Transfer t)
    cpdef transfer_protocol(self)
    @cython.locals(s=StreamCount)
    cpdef check_transfer(self, Transfer t)
    cpdef bint stream_finished(self, Transfer t, StreamCount s)
    @cython.locals(s=StreamCount, end_ts=double, duration=double)
    cdef report_transfer(self, Transfer t)
    cpdef finish_blocks(self, Transfer t)
    cpdef extra_transfer_fields(self, Transfer t)
    cpdef setup_session(self)
    @cython.locals(t=Transfer, ch=Channel)
    cpdef end_session(self)
