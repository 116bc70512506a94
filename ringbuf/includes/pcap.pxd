# libpcap declarations used by the capture side (ringbuf/bpf.pyx, live sources).
# Only what we call is declared; see pcap/pcap.h and pcap/bpf.h for the rest.

cdef extern from "pcap/pcap.h" nogil:
    ctypedef unsigned int bpf_u_int32

    struct bpf_insn:
        unsigned short code
        unsigned char jt
        unsigned char jf
        bpf_u_int32 k

    struct bpf_program:
        unsigned int bf_len
        bpf_insn* bf_insns

    struct timeval:
        long tv_sec
        long tv_usec

    struct pcap_pkthdr:
        timeval ts
        bpf_u_int32 caplen
        bpf_u_int32 len

    ctypedef struct pcap_t:
        pass

    bpf_u_int32 PCAP_NETMASK_UNKNOWN
    int PCAP_ERRBUF_SIZE

    # Data link types (DLT_*) whose numeric value differs from the LINKTYPE_*
    # value stored in capture files on some platforms.
    int DLT_EN10MB
    int DLT_ATM_RFC1483
    int DLT_RAW
    int DLT_SLIP_BSDOS
    int DLT_PPP_BSDOS
    int DLT_ATM_CLIP
    int DLT_LOOP
    int DLT_ENC
    int DLT_HDLC
    int DLT_PFSYNC
    int DLT_PKTAP

    struct pcap_stat:
        unsigned int ps_recv
        unsigned int ps_drop
        unsigned int ps_ifdrop

    int PCAP_ERROR
    int PCAP_ERROR_BREAK
    int PCAP_TSTAMP_PRECISION_NANO

    # Live capture (ringbuf/livepcap.pyx).
    pcap_t* pcap_create(const char* source, char* errbuf)
    int pcap_set_snaplen(pcap_t* p, int snaplen)
    int pcap_set_promisc(pcap_t* p, int promisc)
    int pcap_set_timeout(pcap_t* p, int to_ms)
    int pcap_set_buffer_size(pcap_t* p, int buffer_size)
    int pcap_set_tstamp_precision(pcap_t* p, int precision)
    int pcap_activate(pcap_t* p)
    int pcap_datalink(pcap_t* p)
    int pcap_setfilter(pcap_t* p, bpf_program* fp)
    int pcap_setnonblock(pcap_t* p, int nonblock, char* errbuf)
    int pcap_get_selectable_fd(pcap_t* p)
    int pcap_next_ex(pcap_t* p, pcap_pkthdr** header, const unsigned char** data)
    int pcap_stats(pcap_t* p, pcap_stat* ps)
    const char* pcap_statustostr(int error)

    pcap_t* pcap_open_dead(int linktype, int snaplen)
    void pcap_close(pcap_t* p)
    int pcap_compile(pcap_t* p, bpf_program* fp, const char* expression,
                     int optimize, bpf_u_int32 netmask)
    void pcap_freecode(bpf_program* fp)
    char* pcap_geterr(pcap_t* p)
    const char* pcap_lib_version()
    int pcap_offline_filter(const bpf_program* fp, const pcap_pkthdr* header,
                            const unsigned char* packet)
    # Runs a compiled program over one packet: nonzero when it matches.
    unsigned int bpf_filter(const bpf_insn* program, const unsigned char* packet,
                            unsigned int wirelen, unsigned int caplen)
