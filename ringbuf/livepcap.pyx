# cython: language_level=3
"""Live capture through libpcap (pcapy-ng): an interface as a packet source.

Role in the data flow::

    [interface] ──libpcap──► ring (write ptr, policy "drop") ──► decode ──► ...

``PcapLiveSource(interface, ...)`` opens a libpcap handle with pcapy-ng
(``create`` → snaplen, promiscuous mode, buffer size, timeout → ``activate``),
sets the BPF filter (libpcap compiles it, the kernel runs it), and on every
``fill(ring, n)`` copies up to ``n`` packets into the ring.  Each record keeps
libpcap's timestamp, captured and wire length and the handle's link type.

How it waits: pcapy-ng's blocking ``dispatch`` cannot be bounded on Linux
(with TPACKET_V3 libpcap polls without a timeout when its current block is
empty, so an idle interface blocks forever and a stop request is never
seen).  So the handle is non-blocking and we ``poll()`` its descriptor
ourselves for at most ``poll_timeout_ms``: ``fill`` returns 0 without eof on
an idle interface, and the engine expires flows by wall-clock time and
checks its stop flag between calls.

What pcapy-ng cannot do, and what we do instead:

- ``pcap_set_immediate_mode`` is not exposed.  Without it libpcap hands a
  kernel block over when it is full or when the handle's timeout retires it,
  so ``timeout_ms`` (default 10 ms) bounds the delivery latency on a quiet
  link; on a busy one blocks fill long before.  (The AF_PACKET source sets
  the same retire timeout directly.)
- Timestamps are microseconds (no ``pcap_set_tstamp_precision``).
- ``activate()`` returns libpcap's status instead of raising; it is mapped to
  one-line errors below (no such device, permission denied, interface down).
- Packets cross into Python once each (``dispatch(n, callback)``): the
  callback is compiled and does only the reserve/copy/commit into the ring.

Statistics: ``stats()`` adds libpcap's ``pcap_stats`` (received, dropped by
the kernel, dropped by the interface) to our own counters (ring drops: the
ring refused a packet because retained records filled it).

Errors a user can meet raise ``LiveCaptureError`` (one line, for the CLI)
or ``ValueError`` for a filter that does not compile.  This module also
holds what both live sources share: the error class and the interface
lookup (``interface_info``).
"""
import os
import select
import socket

from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from libc.string cimport memcpy

from ringbuf.ring cimport Ring, PacketRecord, OVERFLOW_WAIT, MAXIMUM_SNAPLEN
from ringbuf.source cimport Source

cdef enum:
    DEFAULT_SNAPLEN = MAXIMUM_SNAPLEN
    NANOSECONDS_PER_MICROSECOND = 1000
    NANOSECONDS = 1000000000

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


cdef class PcapLiveSource(Source):
    """A network interface read through libpcap (pcapy-ng) into a Ring."""

    def __init__(self, str interface, *, uint32_t snaplen=DEFAULT_SNAPLEN,
                 bint promisc=True, buffer_bytes=32 << 20, int timeout_ms=10,
                 str bpf=None, int poll_timeout_ms=100, uint64_t max_packets=0):
        import pcapy
        self.interface = interface
        self.snaplen = snaplen
        self.poll_timeout_ms = poll_timeout_ms
        self.max_packets = max_packets
        self.fd = -1
        interface_info(interface)          # a clear message before libpcap's
        if snaplen < 16:
            raise ValueError(f"snaplen must be at least 16, not {snaplen}")
        try:
            handle = pcapy.create(interface)
            handle.set_snaplen(snaplen)
            handle.set_promisc(1 if promisc else 0)
            handle.set_timeout(timeout_ms)
            if buffer_bytes:
                handle.set_buffer_size(int(buffer_bytes))
            status = handle.activate()
        except pcapy.PcapError as exc:
            raise LiveCaptureError(f"cannot capture on '{interface}': {exc}") from None
        if status is not None and status < 0:
            if status == PCAP_ERROR_NO_SUCH_DEVICE:
                raise LiveCaptureError(f"no such network interface '{interface}'")
            if status in (PCAP_ERROR_PERM_DENIED, PCAP_ERROR_PROMISC_PERM_DENIED):
                raise LiveCaptureError(permission_message(interface, "libpcap"))
            if status == PCAP_ERROR_IFACE_NOT_UP:
                raise LiveCaptureError(f"cannot capture on '{interface}': the interface is down")
            raise LiveCaptureError(
                f"cannot capture on '{interface}': libpcap error {status}")
        self.handle = handle
        self.linktype = handle.datalink()
        if bpf:
            try:
                handle.setfilter(bpf)
            except pcapy.PcapError as exc:
                self.close()
                raise ValueError(f"bad filter expression {bpf!r}: {exc}") from None
        handle.setnonblock(1)
        self.fd = handle.getfd()
        self.poller = select.poll()
        self.poller.register(self.fd, select.POLLIN)
        self.last_kernel_stats = (0, 0, 0)

    cdef int fill(self, Ring ring, int max_records) except -1:
        cdef int budget = max_records
        cdef int got
        cdef uint64_t before = self.packets
        if self.handle is None:
            self.eof = True
            return 0
        if self.max_packets:
            if self.packets + self.ring_drops >= self.max_packets:
                self.eof = True
                return 0
            if <uint64_t>budget > self.max_packets - self.packets - self.ring_drops:
                budget = <int>(self.max_packets - self.packets - self.ring_drops)
        self.target = ring
        try:
            got = self.handle.dispatch(budget, self._packet)
            if got == 0:
                # Nothing ready: wait (bounded) for the kernel to retire a block.
                self.polls += 1
                try:
                    if not self.poller.poll(self.poll_timeout_ms):
                        self.poll_timeouts += 1
                        return 0
                except InterruptedError:
                    return 0       # a signal: let the engine look at its stop flag
                got = self.handle.dispatch(budget, self._packet)
        finally:
            self.target = None
        if got < 0:
            raise LiveCaptureError(f"capture on '{self.interface}' failed (libpcap error)")
        return <int>(self.packets - before)

    def _packet(self, header, data):
        """pcapy-ng's per-packet callback: copy into the ring, nothing else."""
        cdef const uint8_t[::1] view = data
        cdef uint32_t caplen = <uint32_t>view.shape[0]
        cdef PacketRecord* rec
        cdef Ring ring = self.target
        sec, usec = header.getts()
        self.seen += 1
        rec = ring.reserve(caplen)
        if rec == NULL:
            # A live interface cannot wait: the packet is lost and counted
            # (the ring counts it too, under its "drop" policy).
            self.ring_drops += 1
            return
        rec.ts_ns = <int64_t>sec * NANOSECONDS + <int64_t>usec * NANOSECONDS_PER_MICROSECOND
        rec.wirelen = header.getlen()
        rec.linktype = self.linktype
        rec.iface = 0
        if caplen:
            memcpy(ring.data_of(rec), &view[0], caplen)
        ring.commit()
        self.packets += 1
        self.bytes += caplen

    def fill_ring(self, Ring ring, int max_records=256):
        """fill() for Python callers (tests)."""
        return self.fill(ring, max_records)

    def kernel_stats(self):
        """libpcap's counters: (received, dropped by the kernel, dropped by the interface)."""
        if self.handle is None:
            return self.last_kernel_stats or (0, 0, 0)
        received, dropped, ifdropped = self.handle.stats()
        self.last_kernel_stats = (received, dropped, ifdropped)
        return self.last_kernel_stats

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
        if self.handle is not None:
            self.kernel_stats()
            self.poller = None
            try:
                self.handle.close()
            except Exception:
                pass
            self.handle = None
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return f"<PcapLiveSource {self.interface!r} packets={self.packets}>"
