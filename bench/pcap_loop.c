/*
 * The benchmark's reference point: the cheapest useful thing one can do with a
 * trace file, a plain libpcap read loop.
 *
 * Opens the file with pcap_open_offline, reads every record with pcap_next_ex,
 * touches the first byte of each packet (so the data is really brought in) and
 * sums caplen and wire length (so the compiler cannot drop the loop).  Prints one
 * line that bench/run_bench.py parses:
 *
 *     packets=N caplen_bytes=B wire_bytes=W first_byte_sum=X seconds=S
 *
 * Build: gcc -O2 bench/pcap_loop.c -lpcap -o bench/out/pcap_loop
 */
#include <pcap/pcap.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    char errbuf[PCAP_ERRBUF_SIZE];
    struct pcap_pkthdr *hdr;
    const u_char *data;
    uint64_t packets = 0, caplen = 0, wirelen = 0, touch = 0;
    int rc;

    if (argc != 2) {
        fprintf(stderr, "usage: %s TRACE.pcap\n", argv[0]);
        return 2;
    }
    double t0 = now();
    pcap_t *p = pcap_open_offline(argv[1], errbuf);
    if (p == NULL) {
        fprintf(stderr, "pcap_open_offline: %s\n", errbuf);
        return 1;
    }
    while ((rc = pcap_next_ex(p, &hdr, &data)) == 1) {
        packets++;
        caplen += hdr->caplen;
        wirelen += hdr->len;
        if (hdr->caplen > 0)
            touch += data[0];
    }
    if (rc == PCAP_ERROR) {
        fprintf(stderr, "pcap_next_ex: %s\n", pcap_geterr(p));
        pcap_close(p);
        return 1;
    }
    pcap_close(p);
    double secs = now() - t0;
    printf("packets=%llu caplen_bytes=%llu wire_bytes=%llu first_byte_sum=%llu seconds=%.6f\n",
           (unsigned long long)packets, (unsigned long long)caplen,
           (unsigned long long)wirelen, (unsigned long long)touch, secs);
    return 0;
}
