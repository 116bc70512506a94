# Typed layout of runtime.py's two hot classes, for the build only.
#
# runtime.py stays plain Python (it runs as source with ANALYSER_FROM_SOURCE=1);
# when the build compiles it, Cython reads this file beside it and makes
# AnalyserCore (the per-connection half of Analyser) and Runtime extension
# types: the attributes every wake-up touches become struct fields instead of
# dictionary entries, and the wake-up path's own calls (_request, _wake,
# _feed_into) are C calls.  Every other attribute (and a subclass's own) lives
# in the instance __dict__ as before.
cimport cython
from libc.stdint cimport int32_t, uint64_t
from analyser.streams cimport Streams, StreamReader
from analyser.flows cimport FlowTable


@cython.locals(compiled=Streams)
cdef object stream_request(object streams, Py_ssize_t slot, int side, int want, object n)


cdef class Stopwatch:
    cdef public double seconds


cdef class Connection:
    cdef dict __dict__
    cdef public str uid
    cdef public object id
    cdef public double start_time
    cdef public object parent_uid
    cdef public object expectation
    cdef public list services
    cdef public dict session


cdef class AnalyserCore:
    cdef dict __dict__
    cdef public Runtime _rt
    cdef public Py_ssize_t _slot
    cdef public Connection conn
    cdef public object config
    cdef public object _confirmed
    cdef public object _candidates
    cdef public object _recording
    cdef public object _replay
    cdef public Py_ssize_t _ends_in_a_row
    cdef public Py_ssize_t _last_side
    cdef public object _deferred
    cdef public object _waiting_datagram
    cdef public object _finished
    cdef public object _into
    cdef public object _greenlet
    # confirm() named the service (so a violation takes back only its own).
    cdef public bint _named_service
    # Connections it expect()ed that are still open (it is kept for them).
    cdef public Py_ssize_t _children
    cdef public Stopwatch _stopwatch

    cdef _request(self, int side, int want, object n)
    # Every row of an analyser's logs (a C call from compiled analysers).
    cpdef log(self, str path, dict row)


cdef class Runtime(StreamReader):
    cdef dict __dict__
    # analyser.streams.Streams, or the Python stream layer of the test
    # harness (analyser/bytestreams.py): not typed.
    cdef public object streams
    cdef public object main_greenlet
    cdef public dict instances
    cdef public object now
    # The engine's flow table when it is the clock: now_ts() reads its time
    # as a C field (analysers ask it per line), not through a call.
    cdef public FlowTable trace_clock
    cdef public dict counters
    cdef public dict _stopwatches
    cdef public double wakeup_started
    cdef public Py_ssize_t wakeup_seq
    cdef public Py_ssize_t timed_out_seq
    cdef public object watchdog
    cdef public dict _replacements
    # What every analysed connection's start, confirmation and end read.
    cdef public bint no_payload
    cdef public dict by_uid
    cdef public list _free_slots
    cdef public Py_ssize_t _next_slot
    cdef public object _emit
    cdef public object _log
    cdef public dict _log_writers
    cdef public dict events_by_kind
    cdef public object pcap_rule
    cdef public bint detecting
    cdef public list _idle_workers
    cdef public bint _keeps_workers
    cdef public dict _host_pairs

    cpdef new_slot(self)
    cpdef double now_ts(self) except? -1.0
    @cython.locals(a=AnalyserCore)
    cpdef start(self, object cls, object slot, Connection conn, object config,
                object candidates=*, object replay=*, bint detect=*)
    cpdef confirmed(self, AnalyserCore a)
    cpdef _run(self, AnalyserCore a)
    @cython.locals(a=AnalyserCore)
    cpdef finish(self, object slot)
    @cython.locals(a=AnalyserCore)
    cpdef services(self, object slot)
    cpdef _leave_host_pair(self, Connection conn)
    cpdef emit(self, AnalyserCore a, str kind, dict fields)
    cpdef log(self, str path, dict row)
    cpdef _count_event(self, str kind)

    @cython.locals(a=AnalyserCore, into=object)
    cpdef ready(self, int32_t slot, int code, int side, object payload, uint64_t extra)
    cdef _wake(self, AnalyserCore a, object value, bint throw=*)
    cdef _feed_into(self, AnalyserCore a, tuple into, int side, object payload)
