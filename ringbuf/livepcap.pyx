# cython: language_level=3
"""Live capture through libpcap: an interface as a packet source.

Role in the data flow::

    [interface] ──libpcap──► capture thread ──► ring (write ptr, policy "drop") ──► decode ──► ...

``PcapLiveSource(interface, ...)`` opens a libpcap handle through libpcap's
C API (``pcap_create`` → snaplen, promiscuous mode, buffer size, timeout,
nanosecond timestamps → ``pcap_activate``), sets the BPF filter (libpcap
compiles it, the kernel runs it) and makes the handle non-blocking.

How it is driven (ringbuf/source.pyx): in ``analyser live`` a capture thread
runs ``capture_loop`` without the GIL: ``pcap_next_ex`` hands over each
packet of libpcap's buffer, which is copied into the ring (reserve, memcpy,
commit) at once, whatever the engine is doing; when libpcap has nothing the
thread ``poll()``s the handle's descriptor for at most ``poll_timeout_ms``
and looks at its stop flag.  So libpcap's buffer (the kernel's) only has to
absorb the thread's scheduling delays; a burst the engine cannot analyse as
fast waits in the ring.  ``fill(ring, n)`` does the same copy from the
engine's thread, when asked (tests, single-threaded use).

Why non-blocking plus our own poll: with TPACKET_V3 libpcap's blocking read
polls without a timeout when its current block is empty, so an idle
interface would block forever and a stop request would never be seen.

- ``timeout_ms`` (default 10 ms) is libpcap's buffer timeout: the kernel
  hands a partly filled block over after it, which bounds the delivery
  latency on a quiet link; on a busy one blocks fill long before.
- Timestamps are nanoseconds when libpcap can (else microseconds).

Statistics: ``stats()`` adds libpcap's ``pcap_stats`` (received, dropped by
the kernel, dropped by the interface) to our own counters (ring drops: the
ring had no room).  While the thread runs, only it calls ``pcap_stats``
(every poll and at least every ``STATS_EVERY_NS``); the engine reads the
copy it keeps.

Errors a user can meet raise ``LiveCaptureError`` (one line, for the CLI)
or ``ValueError`` for a filter that does not compile.  This module also
holds what both live sources share: the error class and the interface
lookup (``interface_info``).
"""
import os
import socket

from libc.errno cimport errno, EINTR
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from libc.string cimport memcpy, strncpy
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from ringbuf.ring cimport Ring, PacketRecord, OVERFLOW_WAIT, MAXIMUM_SNAPLEN
from ringbuf.source cimport Source
from ringbuf.includes.atomics cimport rb_count, rb_flag_get, rb_load_relaxed
from ringbuf.includes.pcap cimport (
    pcap_t, pcap_pkthdr, pcap_stat, bpf_program, pcap_create, pcap_set_snaplen,
    pcap_set_promisc, pcap_set_timeout, pcap_set_buffer_size, pcap_set_tstamp_precision,
    pcap_activate, pcap_datalink, pcap_setfilter, pcap_setnonblock, pcap_get_selectable_fd,
    pcap_next_ex, pcap_stats, pcap_statustostr, pcap_compile, pcap_freecode, pcap_geterr,
    pcap_close, PCAP_NETMASK_UNKNOWN, PCAP_TSTAMP_PRECISION_NANO,
)
from ringbuf.includes.linux_packet cimport pollfd, poll, POLLIN, POLLERR

cdef enum:
    DEFAULT_SNAPLEN = MAXIMUM_SNAPLEN
    NANOSECONDS_PER_MICROSECOND = 1000
    NANOSECONDS = 1000000000
    # The capture thread refreshes its copy of pcap_stats at least this often.
    STATS_EVERY_NS = 100000000
    # capture_loop's results (describe_error).
    CAPTURE_PCAP_ERROR = 1
    CAPTURE_POLL_ERROR = 2

# libpcap activate() status codes (pcap/pcap.h).
PCAP_ERROR = -1
PCAP_ERROR_NO_SUCH_DEVICE = -5
PCAP_ERROR_RFMON_NOTSUP = -6
PCAP_ERROR_PERM_DENIED = -8
PCAP_ERROR_IFACE_NOT_UP = -9
PCAP_ERROR_PROMISC_PERM_DENIED = -11

# ARPHRD_* (linux/if_arp.h) -> LINKTYPE_* of the frames an AF_PACKET socket of
# type SOCK_RAW delivers: Ethernet headers for Ethernet, veth and loopback
# (lo has an all-zero Ethernet header), none at all for tun-like devices.
ARPHRD_LINKTYPES = {1: 1, 772: 1, 65534: 101}


class LiveCaptureError(Exception):
    """A live capture that cannot start or go on: one human-readable line."""


def interface_info(str name):
    """(ifindex, ARPHRD type) of a network interface; LiveCaptureError when
    there is no such interface."""
    if not name or len(name) >= 16 or "/" in name or name in (".", ".."):
        raise LiveCaptureError(f"no such network interface '{name}'")
    try:
        index = socket.if_nametoindex(name)
    except OSError:
        raise LiveCaptureError(f"no such network interface '{name}'") from None
    try:
        with open(f"/sys/class/net/{name}/type") as f:
            hatype = int(f.read().strip())
    except (OSError, ValueError):
        hatype = -1          # unknown: only the AF_PACKET source needs it
    return index, hatype


def permission_message(str interface, str source):
    return (f"permission denied: capturing on '{interface}' ({source}) needs root "
            "or the CAP_NET_RAW capability")


cdef inline int64_t monotonic_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * NANOSECONDS + ts.tv_nsec


cdef class PcapLiveSource(Source):
    """A network interface read through libpcap into a Ring."""

    def __cinit__(self, *args, **kwargs):
        self.handle = NULL
        self.fd = -1

    def __init__(self, str interface, *, uint32_t snaplen=DEFAULT_SNAPLEN,
                 bint promisc=True, buffer_bytes=32 << 20, int timeout_ms=10,
                 str bpf=None, int poll_timeout_ms=100, uint64_t max_packets=0):
        cdef char errbuf[512]
        cdef bytes name = interface.encode()
        cdef pcap_t* handle
        cdef int status
        self.interface = interface
        self.snaplen = snaplen
        self.poll_timeout_ms = poll_timeout_ms
        self.max_packets = max_packets
        interface_info(interface)          # a clear message before libpcap's
        if snaplen < 16:
            raise ValueError(f"snaplen must be at least 16, not {snaplen}")
        errbuf[0] = 0
        handle = pcap_create(name, errbuf)
        if handle == NULL:
            raise LiveCaptureError(f"cannot capture on '{interface}': "
                                   f"{(<bytes>errbuf).decode(errors='replace')}")
        self.handle = handle
        pcap_set_snaplen(handle, snaplen)
        pcap_set_promisc(handle, 1 if promisc else 0)
        pcap_set_timeout(handle, timeout_ms)
        if buffer_bytes:
            pcap_set_buffer_size(handle, <int>min(int(buffer_bytes), 0x7fffffff))
        self.ts_nanoseconds = pcap_set_tstamp_precision(
            handle, PCAP_TSTAMP_PRECISION_NANO) == 0
        status = pcap_activate(handle)
        if status < 0:
            message = (<bytes>pcap_geterr(handle)).decode(errors="replace")
            self.close()
            if status == PCAP_ERROR_NO_SUCH_DEVICE:
                raise LiveCaptureError(f"no such network interface '{interface}'")
            if status in (PCAP_ERROR_PERM_DENIED, PCAP_ERROR_PROMISC_PERM_DENIED):
                raise LiveCaptureError(permission_message(interface, "libpcap"))
            if status == PCAP_ERROR_IFACE_NOT_UP:
                raise LiveCaptureError(f"cannot capture on '{interface}': the interface is down")
            raise LiveCaptureError(
                f"cannot capture on '{interface}': "
                f"{message or (<bytes>pcap_statustostr(status)).decode()}")
        self.linktype = pcap_datalink(handle)
        if bpf:
            self._set_filter(bpf)
        if pcap_setnonblock(handle, 1, errbuf) < 0:
            self.close()
            raise LiveCaptureError(f"cannot capture on '{interface}': "
                                   f"{(<bytes>errbuf).decode(errors='replace')}")
        self.fd = pcap_get_selectable_fd(handle)
        if self.fd < 0:
            self.close()
            raise LiveCaptureError(f"cannot capture on '{interface}': no selectable descriptor")

    def _set_filter(self, str expression):
        cdef bpf_program program
        cdef bytes encoded = expression.encode()
        cdef int result
        if pcap_compile(self.handle, &program, encoded, 1, PCAP_NETMASK_UNKNOWN) != 0:
            message = (<bytes>pcap_geterr(self.handle)).decode(errors="replace")
            self.close()
            raise ValueError(f"bad filter expression {expression!r}: {message}")
        result = pcap_setfilter(self.handle, &program)
        pcap_freecode(&program)
        if result != 0:
            message = (<bytes>pcap_geterr(self.handle)).decode(errors="replace")
            self.close()
            raise LiveCaptureError(f"cannot capture on '{self.interface}': the filter was "
                                   f"refused: {message}")

    # ------------------------------------------------------------ the hot path

    cdef void copy_packet(self, Ring ring, const pcap_pkthdr* header,
                                 const uint8_t* data) noexcept nogil:
        """One packet of libpcap's buffer into the ring, or counted as a ring drop."""
        cdef uint32_t caplen = header.caplen
        cdef PacketRecord* rec = ring.reserve(caplen)
        if rec == NULL:
            # No room left in the ring: the newest packet is lost and counted
            # (the ring counts it too, under its "drop" policy).
            rb_count(&self.ring_drops, 1)
            return
        rec.ts_ns = <int64_t>header.ts.tv_sec * NANOSECONDS + (
            <int64_t>header.ts.tv_usec if self.ts_nanoseconds
            else <int64_t>header.ts.tv_usec * NANOSECONDS_PER_MICROSECOND)
        rec.wirelen = header.len
        rec.linktype = self.linktype
        rec.iface = 0
        if caplen:
            memcpy(ring.data_of(rec), data, caplen)
        ring.commit()
        rb_count(&self.packets, 1)
        rb_count(&self.bytes, caplen)

    cdef bint count_reached(self) noexcept nogil:
        return self.max_packets != 0 and self.packets + self.ring_drops >= self.max_packets

    cdef int wait_readable(self) noexcept nogil:
        """poll() the handle for at most poll_timeout_ms: 1 readable, 0 timeout
        or a signal, -1 an error (errno)."""
        cdef pollfd waiting
        cdef int r
        waiting.fd = self.fd
        waiting.events = POLLIN
        waiting.revents = 0
        rb_count(&self.polls, 1)
        r = poll(&waiting, 1, self.poll_timeout_ms)
        if r < 0:
            return 0 if errno == EINTR else -1
        if r == 0:
            rb_count(&self.poll_timeouts, 1)
        return r

    cdef void refresh_stats(self) noexcept nogil:
        cdef pcap_stat st
        if self.handle != NULL and pcap_stats(self.handle, &st) == 0:
            self.stat_received = st.ps_recv
            self.stat_dropped = st.ps_drop
            self.stat_ifdropped = st.ps_ifdrop

    cdef int capture_loop(self, Ring ring) noexcept nogil:
        cdef pcap_pkthdr* header
        cdef const uint8_t* data
        cdef int r
        cdef int64_t next_stats = monotonic_ns() + STATS_EVERY_NS
        cdef int64_t now
        cdef int result = 0
        cdef uint32_t since_clock = 0
        if self.handle == NULL:
            self.eof = True
            return 0
        while not rb_flag_get(&self.stop_flag):
            if self.count_reached():
                self.eof = True
                break
            r = pcap_next_ex(self.handle, &header, &data)
            if r == 1:
                self.copy_packet(ring, header, data)
                since_clock += 1
                if since_clock < 1024:
                    continue
            elif r == 0:
                self.refresh_stats()
                next_stats = monotonic_ns() + STATS_EVERY_NS
                if self.wait_readable() < 0:
                    self.saved_errno = errno
                    result = CAPTURE_POLL_ERROR
                    break
                continue
            else:
                strncpy(self.error_text, pcap_geterr(self.handle), sizeof(self.error_text) - 1)
                result = CAPTURE_PCAP_ERROR
                break
            since_clock = 0
            now = monotonic_ns()
            if now >= next_stats:
                self.refresh_stats()
                next_stats = now + STATS_EVERY_NS
        self.refresh_stats()
        return result

    def describe_error(self, int code):
        if code == CAPTURE_POLL_ERROR:
            return f"capture on '{self.interface}' failed: {os.strerror(self.saved_errno)}"
        text = (<bytes>self.error_text).decode(errors="replace")
        return f"capture on '{self.interface}' failed: {text or 'libpcap error'}"

    cdef int fill(self, Ring ring, int max_records) except -1:
        """Copy up to max_records packets from the engine's thread (no capture
        thread): waits at most poll_timeout_ms when libpcap has nothing."""
        cdef pcap_pkthdr* header
        cdef const uint8_t* data
        cdef int r, waited = 0
        cdef uint64_t before = self.packets
        if self.handle == NULL:
            self.eof = True
            return 0
        while <int>(self.packets - before) < max_records:
            if self.count_reached():
                self.eof = True
                break
            r = pcap_next_ex(self.handle, &header, &data)
            if r == 1:
                self.copy_packet(ring, header, data)
            elif r == 0:
                if waited or self.packets != before:
                    break
                waited = 1
                with nogil:
                    r = self.wait_readable()
                if r < 0:
                    raise LiveCaptureError(f"capture on '{self.interface}' failed: "
                                           f"{os.strerror(errno)}")
                if r == 0:
                    break
            else:
                raise LiveCaptureError(f"capture on '{self.interface}' failed: "
                                       f"{(<bytes>pcap_geterr(self.handle)).decode()}")
        return <int>(self.packets - before)

    def fill_ring(self, Ring ring, int max_records=256):
        """fill() for Python callers (tests)."""
        return self.fill(ring, max_records)

    def kernel_stats(self):
        """libpcap's counters: (received, dropped by the kernel, dropped by the
        interface).  While the capture thread runs, the copy it keeps."""
        if self.handle != NULL and not self.capturing:
            self.refresh_stats()
        return (rb_load_relaxed(&self.stat_received), rb_load_relaxed(&self.stat_dropped),
                rb_load_relaxed(&self.stat_ifdropped))

    def stats(self):
        received, dropped, ifdropped = self.kernel_stats()
        return {
            "source": "pcap",
            "interface": self.interface,
            "linktype": self.linktype,
            "snaplen": self.snaplen,
            "packets": self.packets,
            "bytes": self.bytes,
            "ring_drops": self.ring_drops,
            "kernel_received": received,
            "kernel_drops": dropped,
            "interface_drops": ifdropped,
            "polls": self.polls,
            "poll_timeouts": self.poll_timeouts,
        }

    def close(self):
        self.stop_capture()
        if self.handle != NULL and not self.capturing:
            self.refresh_stats()              # the last counters, before the handle goes
            pcap_close(self.handle)
            self.handle = NULL
            self.fd = -1

    def __dealloc__(self):
        if self.handle != NULL:
            pcap_close(self.handle)
            self.handle = NULL

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return f"<PcapLiveSource {self.interface!r} packets={self.packets}>"
