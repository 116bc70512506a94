# Linux declarations for the AF_PACKET TPACKET_V3 source (ringbuf/afpacket.pyx).
# Only what we call is declared; see linux/if_packet.h, packet(7) and
# Documentation/networking/packet_mmap.rst in the kernel tree.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    int AF_PACKET
    int SOCK_RAW
    int SOL_SOCKET
    int SO_ATTACH_FILTER
    int socket(int domain, int type, int protocol)
    int setsockopt(int fd, int level, int name, const void* value, socklen_t length)
    int getsockopt(int fd, int level, int name, void* value, socklen_t* length)
    struct sockaddr:
        pass
    int bind(int fd, const sockaddr* address, socklen_t length)

cdef extern from "<arpa/inet.h>" nogil:
    uint16_t htons(uint16_t value)

cdef extern from "<linux/if_ether.h>" nogil:
    int ETH_P_ALL

cdef extern from "<linux/filter.h>" nogil:
    # Same layout as libpcap's struct bpf_insn: code, jt, jf, k.
    struct sock_filter:
        uint16_t code
        uint8_t jt
        uint8_t jf
        uint32_t k
    struct sock_fprog:
        unsigned short len
        sock_filter* filter

cdef extern from "<linux/if_packet.h>" nogil:
    int SOL_PACKET
    int PACKET_ADD_MEMBERSHIP
    int PACKET_RX_RING
    int PACKET_STATISTICS
    int PACKET_VERSION
    int PACKET_FANOUT
    int PACKET_FANOUT_HASH
    int PACKET_FANOUT_CBPF
    int PACKET_FANOUT_DATA
    int PACKET_FANOUT_FLAG_DEFRAG
    int PACKET_MR_PROMISC
    int PACKET_OUTGOING
    int TPACKET_V3
    unsigned int TP_STATUS_KERNEL
    unsigned int TP_STATUS_USER
    unsigned int TP_STATUS_VLAN_VALID
    unsigned int TP_STATUS_VLAN_TPID_VALID
    unsigned int TPACKET_ALIGNMENT

    struct sockaddr_ll:
        unsigned short sll_family
        unsigned short sll_protocol
        int sll_ifindex
        unsigned short sll_hatype
        unsigned char sll_pkttype
        unsigned char sll_halen
        unsigned char sll_addr[8]

    struct packet_mreq:
        int mr_ifindex
        unsigned short mr_type
        unsigned short mr_alen
        unsigned char mr_address[8]

    struct tpacket_req3:
        unsigned int tp_block_size
        unsigned int tp_block_nr
        unsigned int tp_frame_size
        unsigned int tp_frame_nr
        unsigned int tp_retire_blk_tov
        unsigned int tp_sizeof_priv
        unsigned int tp_feature_req_word

    struct tpacket_stats_v3:
        unsigned int tp_packets
        unsigned int tp_drops
        unsigned int tp_freeze_q_cnt

    struct tpacket_hdr_variant1:
        uint32_t tp_rxhash
        uint32_t tp_vlan_tci
        uint16_t tp_vlan_tpid

    # hv1 sits in an anonymous union in C; it is addressed as a plain member.
    struct tpacket3_hdr:
        uint32_t tp_next_offset
        uint32_t tp_sec
        uint32_t tp_nsec
        uint32_t tp_snaplen
        uint32_t tp_len
        uint32_t tp_status
        uint16_t tp_mac
        uint16_t tp_net
        tpacket_hdr_variant1 hv1

    struct tpacket_hdr_v1:
        uint32_t block_status
        uint32_t num_pkts
        uint32_t offset_to_first_pkt
        uint32_t blk_len
        uint64_t seq_num

    # bh1 sits in a union (hdr) in C.
    union tpacket_bd_header_u:
        tpacket_hdr_v1 bh1

    struct tpacket_block_desc:
        uint32_t version
        uint32_t offset_to_priv
        tpacket_bd_header_u hdr

cdef extern from "<sys/mman.h>" nogil:
    int PROT_READ
    int PROT_WRITE
    int MAP_SHARED
    int MAP_LOCKED
    void* MAP_FAILED
    void* mmap(void* address, size_t length, int prot, int flags, int fd, long offset)
    int munmap(void* address, size_t length)

cdef extern from "<poll.h>" nogil:
    short POLLIN
    short POLLERR
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd* fds, unsigned long nfds, int timeout)

cdef extern from "<unistd.h>" nogil:
    int close(int fd)

cdef extern from "<net/if.h>" nogil:
    unsigned int if_nametoindex(const char* name)

cdef extern from *:
    """
    /* Order the kernel's writes to a block before our reads of it, and our
       reads before handing the block back (the kernel/user handshake of
       packet_mmap is the status word; see packet_mmap.rst). */
    static inline void ringbuf_full_barrier(void) { __sync_synchronize(); }
    """
    void ringbuf_full_barrier() nogil
