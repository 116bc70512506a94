# Declarations of the AF_PACKET TPACKET_V3 live source (see afpacket.pyx).
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from ringbuf.ring cimport Ring
from ringbuf.source cimport Source

cdef class AfPacketSource(Source):
    cdef int fd
    cdef uint8_t* map                   # the kernel's block ring, mmap'ed
    cdef size_t map_bytes
    cdef readonly str interface
    cdef readonly int ifindex
    cdef readonly uint32_t linktype
    cdef readonly uint32_t snaplen
    cdef readonly uint32_t block_size
    cdef readonly uint32_t block_count
    cdef readonly uint32_t frame_size
    cdef readonly uint32_t retire_timeout_ms
    cdef readonly int poll_timeout_ms
    cdef readonly object fanout_group
    cdef readonly bint loopback         # outgoing copies are skipped (seen twice on lo)
    cdef readonly uint64_t max_packets  # 0: no limit; else eof after this many
    # Walking position in the kernel ring.
    cdef uint32_t current_block         # next block to look at / being walked
    cdef bint in_block                  # current_block is ours and partly walked
    cdef uint32_t packets_left          # in the block being walked
    cdef uint8_t* next_packet           # its next tpacket3_hdr
    # Counters.
    cdef readonly uint64_t packets      # written into the ring
    cdef readonly uint64_t bytes        # captured bytes written into the ring
    cdef readonly uint64_t ring_drops   # refused by the ring (policy "drop") or oversize
    cdef readonly uint64_t blocks_released   # blocks handed back to the kernel
    cdef readonly uint64_t outgoing_skipped  # loopback: the outgoing copy of each packet
    cdef readonly uint64_t kernel_truncated  # cut short by the kernel (larger than a block)
    cdef readonly uint64_t polls
    cdef readonly uint64_t poll_timeouts
    # Kernel statistics, accumulated (PACKET_STATISTICS resets on every read).
    cdef readonly uint64_t kernel_packets
    cdef readonly uint64_t kernel_drops
    cdef readonly uint64_t kernel_freezes

    cdef int saved_errno                # of a failure in the capture thread
    cdef int fill(self, Ring ring, int max_records) except -1
    cdef int capture_loop(self, Ring ring) noexcept nogil
    cdef int walk_block(self, Ring ring, int budget) noexcept nogil
    cdef void release_block(self) noexcept nogil
    cdef int read_kernel_stats(self) except -1
    cdef void read_kernel_stats_c(self) noexcept nogil
    cdef void unmap_and_close(self) noexcept
