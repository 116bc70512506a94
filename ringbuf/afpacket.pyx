# cython: language_level=3
"""Live capture through an AF_PACKET TPACKET_V3 memory-mapped ring (Linux).

Role in the data flow::

    [interface] ──kernel block ring──► ring (write ptr, policy "drop") ──► decode ──► ...
                      ▲                       │
                      └── block handed back ◄─┘ (as soon as its packets are copied)

``AfPacketSource(interface, ...)`` opens ``socket(AF_PACKET, SOCK_RAW)``,
selects ``TPACKET_V3``, asks for a ``PACKET_RX_RING`` of ``block_count``
blocks of ``block_size`` bytes (``retire_timeout_ms``: how long the kernel
keeps a partly filled block before handing it over), maps it, attaches the
BPF filter (compiled by libpcap for the interface's link type) and only then
binds to the interface, so that no unfiltered packet reaches the ring.
Optionally it joins a ``PACKET_FANOUT`` group (hash) so that several
analyser processes share one interface, each seeing whole flows.

In ``analyser live`` a capture thread (ringbuf/source.pyx) runs
``capture_loop`` without the GIL: it walks the blocks the kernel has marked
``TP_STATUS_USER`` as soon as they are retired, copies their packets into the
project's Ring and hands them back, whatever the engine is doing, so the
kernel's ring only has to absorb the thread's scheduling delays; while the
thread runs, only it reads ``PACKET_STATISTICS`` (every ``STATS_EVERY_NS``).
``fill(ring, n)`` (tests, single-threaded use) does the same from the
engine's thread when asked: it walks the blocks the kernel has marked ``TP_STATUS_USER``
in order, copies each packet (``tpacket3_hdr``: seconds, nanoseconds,
captured and wire length, offset of the frame) into the project's Ring with
``reserve``/``memcpy``/``commit``, and writes ``TP_STATUS_KERNEL`` back into
the block's status word once every packet of it has been copied: that
hand-back is the *acknowledge* step of the kernel's ring.  When no block is
ready it ``poll()``s for at most ``poll_timeout_ms`` and returns 0 without
eof, so the engine can expire flows by wall-clock time and see a stop request.

Design note: who owns retention.  The DAG model would keep a kernel block
until every record in it is acknowledged, so that analysers read packet
bytes in place in the kernel's memory.  We do not: the project's Ring already
owns retention (pinned records, copy-out or give-up under pressure, all
counted), and a kernel block held by one slow flow would stop the kernel
from writing anything into it -- a stalled analyser would turn into kernel
drops for every flow.  So a block goes back as soon as its packets are
copied: the kernel never starves, at the price of one memcpy per packet
(the same copy the libpcap source makes).  What the Ring cannot hold is
dropped and counted there (``ring_drops``), never silently.

Other Linux details handled here:

- VLAN tags: the kernel strips the outer 802.1Q tag into ``tp_vlan_tci``;
  it is put back into the frame (as libpcap does) so that decode sees the
  packet as it was on the wire.  The kernel's BPF runs on the stripped
  frame, so a ``vlan`` filter does not match here (use the pcap source).
- Loopback: every packet passes ``lo`` twice (outgoing and incoming); the
  outgoing copy is skipped and counted, as libpcap does.
- Snaplen: the filter libpcap compiles returns ``snaplen``, so the kernel
  truncates; without a filter the copy is truncated here.
- Statistics: ``PACKET_STATISTICS`` (``tpacket_stats_v3``) resets on every
  read, so it is accumulated: packets the socket accepted, packets the
  kernel dropped because no block was free, and how often the queue froze.

Errors a user can meet raise ``LiveCaptureError`` (one line): no such
interface, no permission (no root / CAP_NET_RAW), a link type we cannot
decode, a ring the kernel refuses; ``ValueError`` for a filter libpcap
cannot compile.
"""
import os

from libc.errno cimport errno, EINTR, EPERM, EACCES, ENETDOWN
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.string cimport memcpy, memset
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from ringbuf.includes.atomics cimport rb_count, rb_flag_get, rb_load_relaxed

from ringbuf.ring cimport Ring, PacketRecord, OVERFLOW_WAIT, MAXIMUM_SNAPLEN
from ringbuf.source cimport Source
from ringbuf.includes.pcap cimport (
    pcap_t, bpf_program, pcap_open_dead, pcap_close, pcap_compile, pcap_freecode,
    pcap_geterr, PCAP_NETMASK_UNKNOWN, DLT_EN10MB, DLT_RAW,
)
from ringbuf.includes.linux_packet cimport *

from ringbuf.livepcap import LiveCaptureError, interface_info, permission_message, \
    ARPHRD_LINKTYPES

cdef enum:
    DEFAULT_SNAPLEN = MAXIMUM_SNAPLEN
    LINKTYPE_ETHERNET = 1
    LINKTYPE_RAW = 101
    ARPHRD_LOOPBACK = 772
    NANOSECONDS = 1000000000
    VLAN_TAG_BYTES = 4
    ETH_ADDRESSES = 12        # destination and source MAC: the tag goes after them
    ETH_P_8021Q = 0x8100
    PAGE_BYTES = 4096
    MIN_BLOCK_BYTES = 4096
    MAX_BLOCK_BYTES = 1 << 30  # one block may not exceed what the kernel allocates
    BLOCK_OVERHEAD = 256       # block descriptor + tpacket3_hdr + sockaddr_ll, rounded up
    # The capture thread reads PACKET_STATISTICS at least this often.
    STATS_EVERY_NS = 100000000
    # capture_loop's results (describe_error).
    CAPTURE_POLL_ERROR = 1
    CAPTURE_SOCKET_ERROR = 2
    SO_ERROR = 4


cdef inline int64_t monotonic_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * NANOSECONDS + ts.tv_nsec


def host_pair_program() -> bytes:
    """Classic BPF for PACKET_FANOUT_CBPF: the XOR of the IPv4 or IPv6 source
    and destination addresses, folded, as the index of the process (the
    kernel takes it modulo their number).  The same for both directions and
    for every connection between two hosts; anything else goes to the first.

    Loads are relative to the network header (SKF_NET_OFF) and the protocol
    comes from the socket buffer (SKF_AD_PROTOCOL): when the fanout runs, a
    received packet's data starts at its IP header but a sent one's at its
    Ethernet header, and VLAN tags may or may not be in the data."""
    import struct
    LDH, LDW, JEQ, TAX, XORX, RETA, RETK = 0x28, 0x20, 0x15, 0x07, 0xac, 0x16, 0x06
    ST, LDM, RSH = 0x02, 0x60, 0x74
    NET = 0x100000000 - 0x100000                   # SKF_NET_OFF
    PROTOCOL = 0x100000000 - 0x1000                # SKF_AD_OFF + SKF_AD_PROTOCOL
    fold = [(ST, 0), (RSH, 16), (TAX, 0), (LDM, 0), (XORX, 0),
            (ST, 0), (RSH, 8), (TAX, 0), (LDM, 0), (XORX, 0), (RETA, 0)]

    def addresses(first: int, words: int) -> list:
        body = [(LDW, NET + first)]
        for w in range(1, words):
            body += [(TAX, 0), (LDW, NET + first + 4 * w), (XORX, 0)]
        return body + fold

    v4, v6 = addresses(12, 2), addresses(8, 8)
    # (code, jt, jf, k); a jump counts from the next instruction: IPv4's block
    # starts two after the first jeq, IPv6's right after IPv4's.
    program = [(LDH, 0, 0, PROTOCOL),
               (JEQ, 2, 0, 0x0800),
               (JEQ, 1 + len(v4), 0, 0x86DD),
               (RETK, 0, 0, 0)]
    program += [(code, 0, 0, k) for code, k in v4 + v6]
    return b"".join(struct.pack("=HBBI", *insn) for insn in program)


cdef inline uint32_t tpacket_align(uint32_t size) noexcept nogil:
    return (size + TPACKET_ALIGNMENT - 1) & ~(TPACKET_ALIGNMENT - 1)


cdef inline tpacket_block_desc* block_at(uint8_t* base, uint32_t size, uint32_t index) noexcept nogil:
    return <tpacket_block_desc*>(base + <size_t>size * index)


cdef class AfPacketSource(Source):
    """A network interface read through a TPACKET_V3 mmap ring into a Ring."""

    def __cinit__(self, *args, **kwargs):
        self.fd = -1
        self.map = NULL
        self.map_bytes = 0

    def __init__(self, str interface, *, uint32_t snaplen=DEFAULT_SNAPLEN,
                 bint promisc=True, buffer_bytes=32 << 20, uint32_t block_size=1 << 20,
                 block_count=None, uint32_t frame_size=2048,
                 uint32_t retire_timeout_ms=10, str bpf=None, fanout_group=None,
                 int poll_timeout_ms=100, uint64_t max_packets=0, str fanout_by="flow"):
        """buffer_bytes: total kernel ring (block_count = buffer_bytes // block_size
        unless block_count is given).  fanout_group: None, or a 16-bit group id
        shared by the processes that split this interface's traffic.  fanout_by:
        "flow" (the kernel's flow hash) or "hosts" (a classic BPF program hashes
        the pair of IP addresses, so every connection between two hosts goes to
        one process: FTP data channels stay with their control session)."""
        cdef int version = TPACKET_V3
        cdef tpacket_req3 req
        cdef sockaddr_ll address
        cdef packet_mreq membership
        cdef int fanout_arg
        cdef sock_fprog fprog
        cdef bytes program
        cdef void* mapped
        self.interface = interface
        self.snaplen = snaplen
        self.poll_timeout_ms = poll_timeout_ms
        self.max_packets = max_packets
        self.fanout_group = fanout_group
        if snaplen < 16:
            raise ValueError(f"snaplen must be at least 16, not {snaplen}")
        if (block_size < MIN_BLOCK_BYTES or block_size > MAX_BLOCK_BYTES
                or block_size & (block_size - 1)):
            raise ValueError(f"block size must be a power of two between {MIN_BLOCK_BYTES} "
                             f"and {MAX_BLOCK_BYTES} bytes, not {block_size}")
        # A packet must fit in one block, or the kernel cuts it short: allow
        # for whole 64 KiB packets (loopback, GSO/GRO) unless snaplen is smaller.
        if block_size < (snaplen if snaplen < 65536 else 65536) + BLOCK_OVERHEAD:
            raise ValueError(f"block size {block_size} is too small for packets of "
                             f"{min(snaplen, 65536)} bytes (use at least "
                             f"{min(snaplen, 65536) + BLOCK_OVERHEAD}, a power of two)")
        if frame_size < 64 or frame_size % TPACKET_ALIGNMENT or block_size % frame_size:
            raise ValueError(f"frame size {frame_size} must be a multiple of "
                             f"{TPACKET_ALIGNMENT} dividing the block size")
        if block_count is None:
            block_count = max(2, int(buffer_bytes) // block_size)
        if not 2 <= block_count <= 65536:
            raise ValueError(f"block count must be between 2 and 65536, not {block_count}")
        if fanout_group is not None and not 0 <= fanout_group <= 0xffff:
            raise ValueError(f"fanout group must be 0..65535, not {fanout_group}")
        self.block_size = block_size
        self.block_count = block_count
        self.frame_size = frame_size
        self.retire_timeout_ms = retire_timeout_ms

        self.ifindex, hatype = interface_info(interface)
        if hatype not in ARPHRD_LINKTYPES:
            raise LiveCaptureError(
                f"cannot capture on '{interface}' with AF_PACKET: link type ARPHRD {hatype} "
                "is not supported (try --source pcap)")
        self.linktype = ARPHRD_LINKTYPES[hatype]
        self.loopback = hatype == ARPHRD_LOOPBACK

        # Protocol 0: the socket receives nothing until bind() names ETH_P_ALL,
        # after the ring and the filter are in place.
        self.fd = socket(AF_PACKET, SOCK_RAW, 0)
        if self.fd < 0:
            if errno in (EPERM, EACCES):
                raise LiveCaptureError(permission_message(interface, "AF_PACKET"))
            self._fail("cannot open an AF_PACKET socket")
        if setsockopt(self.fd, SOL_PACKET, PACKET_VERSION, &version, sizeof(version)) < 0:
            self._fail("this kernel does not support TPACKET_V3")
        if bpf:
            self._attach_filter(bpf)
        memset(&req, 0, sizeof(req))
        req.tp_block_size = block_size
        req.tp_block_nr = block_count
        req.tp_frame_size = frame_size
        req.tp_frame_nr = (block_size // frame_size) * block_count
        req.tp_retire_blk_tov = retire_timeout_ms
        if setsockopt(self.fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) < 0:
            self._fail(f"the kernel refused a ring of {block_count} blocks of "
                       f"{block_size} bytes")
        self.map_bytes = <size_t>block_size * block_count
        mapped = mmap(NULL, self.map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, self.fd, 0)
        if mapped == MAP_FAILED:
            self.map_bytes = 0
            self._fail("cannot map the capture ring")
        self.map = <uint8_t*>mapped

        memset(&address, 0, sizeof(address))
        address.sll_family = AF_PACKET
        address.sll_protocol = htons(ETH_P_ALL)
        address.sll_ifindex = self.ifindex
        if bind(self.fd, <sockaddr*>&address, sizeof(address)) < 0:
            self._fail("cannot bind to the interface")
        if promisc:
            memset(&membership, 0, sizeof(membership))
            membership.mr_ifindex = self.ifindex
            membership.mr_type = PACKET_MR_PROMISC
            if setsockopt(self.fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &membership,
                          sizeof(membership)) < 0:
                self._fail("cannot switch on promiscuous mode")
        if fanout_group is not None:
            if fanout_by not in ("flow", "hosts"):
                raise ValueError(f"fanout_by must be flow or hosts, not {fanout_by!r}")
            fanout_arg = <int>fanout_group | (
                (PACKET_FANOUT_CBPF if fanout_by == "hosts" else PACKET_FANOUT_HASH) << 16)
            if setsockopt(self.fd, SOL_PACKET, PACKET_FANOUT, &fanout_arg,
                          sizeof(fanout_arg)) < 0:
                self._fail(f"cannot join fanout group {fanout_group}")
            if fanout_by == "hosts":
                program = host_pair_program()
                fprog.len = len(program) // 8
                fprog.filter = <sock_filter*><char*>program
                if setsockopt(self.fd, SOL_PACKET, PACKET_FANOUT_DATA, &fprog,
                              sizeof(fprog)) < 0:
                    self._fail("cannot set the fanout program")

    def _fail(self, str what):
        cdef int error = errno
        self.close()
        raise LiveCaptureError(f"cannot capture on '{self.interface}': {what}: "
                               f"{os.strerror(error)}")

    def _attach_filter(self, str expression):
        """libpcap compiles the expression for our link type; the kernel runs it."""
        cdef bpf_program program
        cdef sock_fprog fprog
        cdef pcap_t* dead = pcap_open_dead(
            DLT_EN10MB if self.linktype == LINKTYPE_ETHERNET else DLT_RAW, self.snaplen)
        cdef bytes encoded = expression.encode()
        cdef int result
        if dead == NULL:
            self.close()
            raise LiveCaptureError("libpcap could not open a handle to compile the filter")
        if pcap_compile(dead, &program, encoded, 1, PCAP_NETMASK_UNKNOWN) != 0:
            message = (<bytes>pcap_geterr(dead)).decode(errors="replace")
            pcap_close(dead)
            self.close()
            raise ValueError(f"bad filter expression {expression!r}: {message}")
        pcap_close(dead)
        fprog.len = <unsigned short>program.bf_len
        fprog.filter = <sock_filter*>program.bf_insns
        result = setsockopt(self.fd, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof(fprog))
        pcap_freecode(&program)       # the kernel keeps its own copy
        if result < 0:
            self._fail("the kernel refused the filter")

    # ------------------------------------------------------------ the hot path

    cdef int fill(self, Ring ring, int max_records) except -1:
        cdef int written = 0
        cdef int budget = max_records
        cdef int r
        cdef pollfd waiting
        cdef tpacket_block_desc* block
        if self.map == NULL:
            self.eof = True
            return 0
        if self.max_packets:
            if self.packets + self.ring_drops >= self.max_packets:
                self.eof = True
                return 0
            if <uint64_t>budget > self.max_packets - self.packets - self.ring_drops:
                budget = <int>(self.max_packets - self.packets - self.ring_drops)
        while written < budget:
            if not self.in_block:
                block = block_at(self.map, self.block_size, self.current_block)
                if not (block.hdr.bh1.block_status & TP_STATUS_USER):
                    if written:
                        break           # deliver what we have; poll on the next call
                    # Wait once, bounded, then hand control back to the engine.
                    waiting.fd = self.fd
                    waiting.events = POLLIN | POLLERR
                    waiting.revents = 0
                    self.polls += 1
                    with nogil:
                        r = poll(&waiting, 1, self.poll_timeout_ms)
                    if r < 0:
                        if errno == EINTR:
                            return 0    # a signal: the engine looks at its stop flag
                        self._fail("poll failed")
                    if waiting.revents & POLLERR:
                        self._socket_error()
                    ringbuf_full_barrier()
                    if not (block.hdr.bh1.block_status & TP_STATUS_USER):
                        if r == 0:
                            self.poll_timeouts += 1
                        return 0
                # Read the block's header only after seeing its status.
                ringbuf_full_barrier()
                self.in_block = True
                self.packets_left = block.hdr.bh1.num_pkts
                self.next_packet = <uint8_t*>block + block.hdr.bh1.offset_to_first_pkt
            r = self.walk_block(ring, budget - written)
            if r < 0:
                break                   # "wait" ring is full: same packet next time
            written += r
            if self.packets_left == 0:
                self.release_block()
        return written

    cdef int capture_loop(self, Ring ring) noexcept nogil:
        """The capture thread: drain retired blocks into the ring until the
        stop flag, the packet count, or an error (poll, socket)."""
        cdef pollfd waiting
        cdef int r
        cdef tpacket_block_desc* block
        cdef int64_t now, next_stats = monotonic_ns() + STATS_EVERY_NS
        cdef int budget
        cdef int error = 0
        cdef socklen_t size
        if self.map == NULL:
            self.eof = True
            return 0
        while not rb_flag_get(&self.stop_flag):
            budget = 0x7fffffff
            if self.max_packets:
                if self.packets + self.ring_drops >= self.max_packets:
                    self.eof = True
                    break
                if self.max_packets - self.packets - self.ring_drops < <uint64_t>budget:
                    budget = <int>(self.max_packets - self.packets - self.ring_drops)
            if not self.in_block:
                block = block_at(self.map, self.block_size, self.current_block)
                if not (block.hdr.bh1.block_status & TP_STATUS_USER):
                    self.read_kernel_stats_c()
                    next_stats = monotonic_ns() + STATS_EVERY_NS
                    waiting.fd = self.fd
                    waiting.events = POLLIN | POLLERR
                    waiting.revents = 0
                    rb_count(&self.polls, 1)
                    r = poll(&waiting, 1, self.poll_timeout_ms)
                    if r < 0:
                        if errno == EINTR:
                            continue
                        self.saved_errno = errno
                        self.read_kernel_stats_c()
                        return CAPTURE_POLL_ERROR
                    if waiting.revents & POLLERR:
                        size = sizeof(error)
                        getsockopt(self.fd, SOL_SOCKET, SO_ERROR, &error, &size)
                        if error:
                            self.saved_errno = error
                            self.read_kernel_stats_c()
                            return CAPTURE_SOCKET_ERROR
                    if r == 0:
                        rb_count(&self.poll_timeouts, 1)
                    continue
                ringbuf_full_barrier()      # the block's header after its status
                self.in_block = True
                self.packets_left = block.hdr.bh1.num_pkts
                self.next_packet = <uint8_t*>block + block.hdr.bh1.offset_to_first_pkt
            self.walk_block(ring, budget)
            if self.packets_left == 0:
                self.release_block()
            now = monotonic_ns()
            if now >= next_stats:
                self.read_kernel_stats_c()
                next_stats = now + STATS_EVERY_NS
        self.read_kernel_stats_c()
        return 0

    def describe_error(self, int code):
        if self.saved_errno == ENETDOWN:
            return f"capture on '{self.interface}' stopped: the interface went down"
        return f"capture on '{self.interface}' failed: {os.strerror(self.saved_errno)}"

    cdef int walk_block(self, Ring ring, int budget) noexcept nogil:
        """Copy up to `budget` packets of the current block into the ring.
        Returns how many were written; -1 when a "wait" ring refused one."""
        cdef int written = 0
        cdef tpacket3_hdr* h
        cdef sockaddr_ll* link
        cdef PacketRecord* rec
        cdef uint8_t* frame
        cdef uint8_t* out
        cdef uint32_t caplen, wirelen, length, head
        cdef uint8_t tag[VLAN_TAG_BYTES]
        cdef uint16_t tpid
        cdef bint vlan
        while self.packets_left and written < budget:
            h = <tpacket3_hdr*>self.next_packet
            link = <sockaddr_ll*>(self.next_packet + tpacket_align(sizeof(tpacket3_hdr)))
            if self.loopback and link.sll_pkttype == PACKET_OUTGOING:
                rb_count(&self.outgoing_skipped, 1)
            else:
                frame = self.next_packet + h.tp_mac
                caplen = h.tp_snaplen
                wirelen = h.tp_len
                if caplen < wirelen and caplen < self.snaplen:
                    rb_count(&self.kernel_truncated, 1)     # did not fit a block
                vlan = ((h.tp_status & TP_STATUS_VLAN_VALID) != 0
                        and self.linktype == LINKTYPE_ETHERNET and caplen >= ETH_ADDRESSES)
                if vlan:
                    caplen += VLAN_TAG_BYTES
                    wirelen += VLAN_TAG_BYTES
                length = caplen if caplen < self.snaplen else self.snaplen
                rec = ring.reserve(length)
                if rec == NULL:
                    if ring.policy == OVERFLOW_WAIT and length <= ring.arena_bytes:
                        return written if written else -1
                    # No room left in the ring: the newest packet is dropped
                    # and counted (by the ring too).
                    rb_count(&self.ring_drops, 1)
                else:
                    rec.ts_ns = <int64_t>h.tp_sec * NANOSECONDS + h.tp_nsec
                    rec.wirelen = wirelen
                    rec.linktype = self.linktype
                    rec.iface = 0
                    out = ring.data_of(rec)
                    if vlan:
                        # Put the tag the kernel stripped back after the MAC addresses.
                        tpid = <uint16_t>(h.hv1.tp_vlan_tpid
                                          if h.tp_status & TP_STATUS_VLAN_TPID_VALID
                                          else ETH_P_8021Q)
                        tag[0] = tpid >> 8
                        tag[1] = tpid & 0xff
                        tag[2] = (h.hv1.tp_vlan_tci >> 8) & 0xff
                        tag[3] = h.hv1.tp_vlan_tci & 0xff
                        head = ETH_ADDRESSES if length > ETH_ADDRESSES else length
                        memcpy(out, frame, head)
                        if length > head:
                            memcpy(out + head, tag,
                                   VLAN_TAG_BYTES if length - head > VLAN_TAG_BYTES
                                   else length - head)
                        if length > head + VLAN_TAG_BYTES:
                            memcpy(out + head + VLAN_TAG_BYTES, frame + head,
                                   length - head - VLAN_TAG_BYTES)
                    else:
                        memcpy(out, frame, length)
                    ring.commit()
                    rb_count(&self.packets, 1)
                    rb_count(&self.bytes, length)
                    written += 1
            self.packets_left -= 1
            if self.packets_left:
                self.next_packet += h.tp_next_offset
        return written

    cdef void release_block(self) noexcept nogil:
        """Hand the current block back to the kernel: the acknowledge step."""
        cdef tpacket_block_desc* block = block_at(self.map, self.block_size,
                                                  self.current_block)
        ringbuf_full_barrier()          # our reads of the block happen before
        block.hdr.bh1.block_status = TP_STATUS_KERNEL
        rb_count(&self.blocks_released, 1)
        self.in_block = False
        self.current_block = (self.current_block + 1) % self.block_count

    def _socket_error(self):
        cdef int error = 0
        cdef socklen_t size = sizeof(error)
        getsockopt(self.fd, SOL_SOCKET, 4, &error, &size)     # SO_ERROR
        if error == ENETDOWN:
            raise LiveCaptureError(f"capture on '{self.interface}' stopped: the interface "
                                   "went down")
        if error:
            raise LiveCaptureError(f"capture on '{self.interface}' failed: "
                                   f"{os.strerror(error)}")

    cdef int read_kernel_stats(self) except -1:
        # While the capture thread runs it alone reads (and so resets) the
        # kernel's counters; we show what it accumulated.
        if not self.capturing:
            self.read_kernel_stats_c()
        return 0

    cdef void read_kernel_stats_c(self) noexcept nogil:
        cdef tpacket_stats_v3 st
        cdef socklen_t size = sizeof(st)
        if self.fd < 0:
            return
        if getsockopt(self.fd, SOL_PACKET, PACKET_STATISTICS, &st, &size) == 0:
            # tp_packets already includes tp_drops; both reset on each read.
            rb_count(&self.kernel_packets, st.tp_packets)
            rb_count(&self.kernel_drops, st.tp_drops)
            rb_count(&self.kernel_freezes, st.tp_freeze_q_cnt)

    # ------------------------------------------------------ Python-side API

    def fill_ring(self, Ring ring, int max_records=256):
        """fill() for Python callers (tests)."""
        return self.fill(ring, max_records)

    def kernel_stats(self):
        """(received, dropped by the kernel, queue freezes), accumulated since opening."""
        self.read_kernel_stats()
        return self.kernel_packets, self.kernel_drops, self.kernel_freezes

    @property
    def blocks_owned(self):
        """Blocks the kernel has handed to us and we have not yet handed back."""
        cdef uint32_t i, count = 0
        if self.map == NULL:
            return 0
        for i in range(self.block_count):
            if block_at(self.map, self.block_size, i).hdr.bh1.block_status & TP_STATUS_USER:
                count += 1
        return count

    def stats(self):
        received, dropped, freezes = self.kernel_stats()
        return {
            "source": "afpacket",
            "interface": self.interface,
            "linktype": self.linktype,
            "snaplen": self.snaplen,
            "packets": self.packets,
            "bytes": self.bytes,
            "ring_drops": self.ring_drops,
            "kernel_received": received,
            "kernel_drops": dropped,
            "interface_drops": 0,
            "kernel_queue_freezes": freezes,
            "blocks_released": self.blocks_released,
            "block_size": self.block_size,
            "block_count": self.block_count,
            "outgoing_skipped": self.outgoing_skipped,
            "kernel_truncated": self.kernel_truncated,
            "polls": self.polls,
            "poll_timeouts": self.poll_timeouts,
            "fanout_group": self.fanout_group,
        }

    def close(self):
        self.stop_capture()
        if self.capturing:
            return                        # the thread would not end: leave it the socket
        if self.fd >= 0:
            self.read_kernel_stats()      # the last counters, before the socket goes
        self.unmap_and_close()

    def __dealloc__(self):
        if not self.capturing:
            self.unmap_and_close()

    cdef void unmap_and_close(self) noexcept:
        if self.map != NULL:
            munmap(self.map, self.map_bytes)
            self.map = NULL
        if self.fd >= 0:
            close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return (f"<AfPacketSource {self.interface!r} {self.block_count}x{self.block_size} "
                f"packets={self.packets} released={self.blocks_released}>")
