"""DNS over UDP and TCP: messages, query/response pairing, dns.log as Zeek writes it.

Role in the data flow: flows -> datagrams (UDP) or streams (TCP) ->
**analysers (protocols.dns)** -> sinks (`dns.log`, `weird` events).

One `Dns` analyser runs per flow.  On UDP each datagram is one message; on
TCP each message is a 2-byte length and the message (RFC 1035 4.2.2), cut
from both sides in arrival order.  Three parts, each testable alone:

* `MessageParser` reads one message the way Zeek's DNS analyzer does
  (src/analyzer/protocol/dns/DNS.cc): the header, the question section, the
  answer section (or, for dynamic updates, the zone, prerequisite and update
  sections), each record rendered as Zeek's base scripts put it in
  `answers` ("RRSIG 48 paypal.com", "DNSKEY 5", "TXT 5 hello", ...).  Names
  are read with compression pointers, which must point backwards (a pointer
  to itself or further on, the only way to build a loop, is Zeek's
  `DNS_label_forward_compress_offset`); chains are cut at 20 pointers,
  labels above 63 bytes and names above 255 are weirds with Zeek's names.
  The authority and additional sections are not read (Zeek skips them by
  default: `dns_skip_all_auth`, `dns_skip_all_addl`).
* `ZeekDnsLog` reproduces scripts/base/protocols/dns/main.zeek: a row per
  query/response pair matched by transaction id (a fast path for one
  outstanding query, then queues per id, as Zeek's `set_session` does),
  written when both are seen; what is left unmatched (a query without
  response, a duplicate response) is written when the flow ends.  `query`
  is lowercased, as Zeek does; a row for a response alone takes `query`
  from its first answer's name.
* `Dns.main()` feeds them and decides detection: a first message that is
  clearly not DNS (shorter than a header, an unknown opcode, more than 25
  questions, a question section that does not parse) is a violation before
  confirmation, a weird after; `confirm()` once a message's questions and
  answers parse (where Zeek confirms).

Bad input is a weird (Zeek's names and `addl`), never an exception.
Everything kept per flow is bounded: pending queries and responses per id
and ids (Zeek's `DNS::max_pending_msgs`, `max_pending_query_ids`), one
TCP message per side (at most 65,535 bytes).
"""
from __future__ import annotations

import ipaddress
from collections import deque

from greenlet import GreenletExit

from analyser import ORIG, RESP, Analyser, Field, Gap, StreamEnd, conn_id_fields

# -- limits (Zeek's defaults, scripts/base/init-bare.zeek and dns/main.zeek) ------------

MAX_QUERIES = 25                # dns_max_queries: more questions is not DNS
MAX_COMPRESSION_DEPTH = 20      # dns_max_compression_chain_depth
MAX_PENDING_MSGS = 50           # DNS::max_pending_msgs (per transaction id)
MAX_PENDING_QUERY_IDS = 50      # DNS::max_pending_query_ids
NAME_BUFFER = 512               # Zeek extracts a name into 513 bytes (one for NUL)
MAX_NAME = 255                  # RFC 1035 2.3.4; longer is DNS_NAME_too_long
MAX_LABEL = 63                  # RFC 1035 2.3.4; NetBIOS (port 137) allows more
READ_CHUNK = 65536              # bytes asked of the stream layer per TCP read

HEADER_LEN = 12
NETBIOS_PORT = 137
ZEEK_PORTS = frozenset({53, 137, 5353, 5355})   # DNS::ports (TCP: 53 only in Zeek)

# -- wire constants ------------------------------------------------------------------------

OP_QUERY, OP_NOTIFY, OP_UPDATE = 0, 4, 5
TRACKED_OPCODES = frozenset({OP_QUERY, OP_NOTIFY, OP_UPDATE})
CLASS_NONE, CLASS_ANY, TYPE_ANY = 254, 255, 255
# Answer types (Zeek's DNS_AnswerType): which section a record came from.
ANSWER, PREREQUISITE, UPDATE = 1, 4, 5
T_A, T_NS, T_CNAME, T_SOA, T_WKS, T_PTR, T_HINFO, T_MX, T_TXT = 1, 2, 5, 6, 11, 12, 13, 15, 16
T_AAAA, T_LOC, T_NBS, T_SRV, T_NAPTR, T_A6, T_EDNS = 28, 29, 32, 33, 35, 38, 41
T_DS, T_SSHFP, T_RRSIG, T_NSEC, T_DNSKEY, T_NSEC3, T_NSEC3PARAM = 43, 44, 46, 47, 48, 50, 51
T_SVCB, T_HTTPS, T_SPF, T_TKEY, T_TSIG, T_CAA, T_BINDS = 64, 65, 99, 249, 250, 257, 65534
# Types Zeek's base scripts have no event handler for: their data is skipped.
SKIPPED_TYPES = frozenset({T_HINFO, T_NBS, T_CAA, T_TKEY})
# DNSSEC algorithms Zeek accepts quietly (RFC 8624); others are weirds.
DNSSEC_ALGORITHMS = frozenset({2, 3, 4, 5, 6, 7, 8, 10, 12, 13, 14, 15, 16})
DNSSEC_ALGORITHM_WEIRDS = {1: "NotRecommended", 252: "Indirect", 253: "PrivateDNS",
                           254: "PrivateOID"}
DS_DIGESTS = frozenset({1, 2, 3, 4})
MULTICAST = (ipaddress.ip_network("224.0.0.0/4"), ipaddress.ip_network("ff00::/8"))

# -- Zeek's names (scripts/base/protocols/dns/consts.zeek) ----------------------------------

QUERY_TYPES = {
    1: "A", 2: "NS", 3: "MD", 4: "MF", 5: "CNAME", 6: "SOA", 7: "MB", 8: "MG", 9: "MR",
    10: "NULL", 11: "WKS", 12: "PTR", 13: "HINFO", 14: "MINFO", 15: "MX", 16: "TXT",
    17: "RP", 18: "AFSDB", 19: "X25", 20: "ISDN", 21: "RT", 22: "NSAP", 23: "NSAP-PTR",
    24: "SIG", 25: "KEY", 26: "PX", 27: "GPOS", 28: "AAAA", 29: "LOC", 30: "NXT",
    31: "EID", 32: "NIMLOC", 33: "SRV", 34: "ATMA", 35: "NAPTR", 36: "KX", 37: "CERT",
    38: "A6", 39: "DNAME", 40: "SINK", 41: "OPT", 42: "APL", 43: "DS", 44: "SSHFP",
    45: "IPSECKEY", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 49: "DHCID", 50: "NSEC3",
    51: "NSEC3PARAM", 52: "TLSA", 53: "SMIMEA", 55: "HIP", 56: "NINFO", 57: "RKEY",
    58: "TALINK", 59: "CDS", 60: "CDNSKEY", 61: "OPENPGPKEY", 62: "CSYNC", 63: "ZONEMD",
    64: "SVCB", 65: "HTTPS", 99: "SPF", 100: "UINFO", 101: "UID", 102: "GID",
    103: "UNSPEC", 104: "NID", 105: "L32", 106: "L64", 107: "LP", 108: "EUI48",
    109: "EUI64", 249: "TKEY", 250: "TSIG", 251: "IXFR", 252: "AXFR", 253: "MAILB",
    254: "MAILA", 255: "*", 256: "URI", 257: "CAA", 32768: "TA", 32769: "DLV",
    65281: "WINS", 65282: "WINS-R", 65422: "XPF", 65521: "INTEGRITY"}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP",
          5: "REFUSED", 6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSet", 9: "NOTAUTH",
          10: "NOTZONE", 11: "unassigned-11", 12: "unassigned-12", 13: "unassigned-13",
          14: "unassigned-14", 15: "unassigned-15"}
CLASSES = {1: "C_INTERNET", 2: "C_CSNET", 3: "C_CHAOS", 4: "C_HESIOD", 254: "C_NONE",
           255: "C_ANY"}
OPCODES = {0: "query", 1: "iquery", 2: "server-status", 4: "notify", 5: "dynamic-update",
           6: "dso"}
NETBIOS_OPCODES = {0: "netbios-query", 5: "netbios-registration", 6: "netbios-release",
                   7: "netbios-wack", 8: "netbios-refresh"}


def query_type_name(qtype: int) -> str:
    return QUERY_TYPES.get(qtype) or "query-%d" % qtype


# -- the log (Zeek's DNS::Info, the fields marked &log) -------------------------------------

DNS_LOG = (
    Field("ts", "time", "time of the first message of the exchange"),
    Field("uid", "string", "uid of the flow"),
    *conn_id_fields("client", "server"),
    Field("proto", "enum", "udp or tcp"),
    Field("trans_id", "count", "transaction id"),
    Field("rtt", "interval", "first answer's time minus the query's (unset when 0)"),
    Field("query", "string", "the question's name, lowercased (a response alone: its "
                             "first answer's name)"),
    Field("qclass", "count", "the question's class"),
    Field("qclass_name", "string", "its name (C_INTERNET ...)"),
    Field("qtype", "count", "the question's type"),
    Field("qtype_name", "string", "its name (A, AAAA, MX, *, query-N ...)"),
    Field("rcode", "count", "the response code"),
    Field("rcode_name", "string", "its name (NOERROR, NXDOMAIN ...)"),
    Field("AA", "bool", "authoritative answer (from a response with answers)"),
    Field("TC", "bool", "truncated (from the query)"),
    Field("RD", "bool", "recursion desired (from the query)"),
    Field("RA", "bool", "recursion available (from a response with answers)"),
    Field("Z", "count", "the query's 3 reserved bits (Z, AD, CD)"),
    Field("answers", "vector[string]", "the answer records, as Zeek renders them"),
    Field("TTLs", "vector[interval]", "their TTLs"),
    Field("rejected", "bool", "the server rejected the query"),
    Field("opcode", "count", "the opcode"),
    Field("opcode_name", "string", "its name (query, notify, dynamic-update ...)"),
)
LOG_FIELDS = tuple(f.name for f in DNS_LOG)


# -- rendering helpers -----------------------------------------------------------------------

class Interval(float):
    """A TTL in `TTLs`: the TSV writer formats a vector's elements with str(),
    so this float prints as Zeek writes an interval (6 decimals); JSON still
    gets a number."""
    __slots__ = ()

    def __str__(self) -> str:
        return "%.6f" % self


def text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def address(raw: bytes) -> str:
    """An address as Zeek prints it (an IPv4-mapped IPv6 address as IPv4)."""
    if len(raw) == 4:
        return "%d.%d.%d.%d" % tuple(raw)
    if raw[:12] == b"\0" * 10 + b"\xff\xff":
        return "%d.%d.%d.%d" % tuple(raw[12:])
    return str(ipaddress.IPv6Address(raw))


def decode_netbios_name(name: bytes) -> bytes:
    """Zeek's decode_netbios_name(): 32 letters A-P -> up to 15 bytes; b"" when
    the name is not in that encoding."""
    if len(name) != 32:
        return b""
    out = bytearray()
    for i in range(0, 32, 2):
        c0, c1 = name[i] & 0xDF, name[i + 1] & 0xDF          # toupper
        if not (65 <= c0 <= 80 and 65 <= c1 <= 80):
            return b""
        byte = ((c0 - 65) << 4) + (c1 - 65)
        if 0x21 <= byte <= 0x7E or byte == 0x20 or byte < 3:
            out.append(byte)
        else:
            break
    del out[15:]
    return bytes(out).rstrip(b" \0")


class Header:
    """The 12-byte header of a message."""
    __slots__ = ("id", "opcode", "rcode", "QR", "AA", "TC", "RD", "RA", "Z",
                 "qdcount", "ancount", "nscount", "arcount", "netbios")

    def __init__(self, data: bytes, netbios: bool):
        self.id = data[0] << 8 | data[1]
        flags = data[2] << 8 | data[3]
        self.QR = bool(flags & 0x8000)
        self.opcode = (flags >> 11) & 0xF
        self.AA = bool(flags & 0x0400)
        self.TC = bool(flags & 0x0200)
        self.RD = bool(flags & 0x0100)
        self.RA = bool(flags & 0x0080)
        self.Z = (flags >> 4) & 0x7
        self.rcode = flags & 0xF
        self.qdcount = data[4] << 8 | data[5]
        self.ancount = data[6] << 8 | data[7]
        self.nscount = data[8] << 8 | data[9]
        self.arcount = data[10] << 8 | data[11]
        self.netbios = netbios

    @property
    def dynamic_update(self) -> bool:
        return self.opcode == OP_UPDATE and not self.netbios


class Parsed:
    """What one message gave, in the order Zeek's events come: its header
    (None: no dns_message event), questions, answer records, whether
    dns_end came, whether it parsed (confirmation) and what broke it."""
    __slots__ = ("header", "questions", "records", "ended", "parsed", "problem")

    def __init__(self):
        self.header = None
        self.questions = []     # (name, original name, qtype, qclass)
        self.records = []       # (answer_type, owner name, ttl, reply or None)
        self.ended = False
        self.parsed = False
        self.problem = None     # the weird that makes a first message "not DNS"


class MessageParser:
    """Parses messages of one flow as Zeek's DNS_Interpreter does; `weird(name,
    addl)` reports anomalies."""

    def __init__(self, weird, netbios: bool, resp_port: int):
        self.weird = weird
        self.netbios = netbios
        self.netbios_server = resp_port == NETBIOS_PORT

    # -- names ---------------------------------------------------------------------------

    def name(self, data: bytes, pos: int, end: int, downcase: bool = True):
        """(name bytes or None, position after it)."""
        out = bytearray()
        room = [NAME_BUFFER]
        ok, pos = self._name(data, pos, end, out, room, 0)
        if not ok:
            return None, pos
        name = bytes(out)
        return (name.lower() if downcase else name), pos

    def _name(self, data, pos, end, out, room, depth):
        if depth > MAX_COMPRESSION_DEPTH:
            self.weird("DNS_max_compression_chain_depth_exceeded", str(depth))
            return True, pos
        start = len(out)
        while True:
            if pos >= end:
                self.weird("dns_invalid_name")
                return False, pos
            label_at = pos
            size = data[pos]
            pos += 1
            if size == 0:
                break
            if size & 0xC0 == 0xC0:
                if pos >= end:
                    self.weird("dns_invalid_name")
                    return False, pos
                offset = (size & 0x3F) << 8 | data[pos]
                pos += 1
                if offset >= label_at:
                    self.weird("DNS_label_forward_compress_offset")
                    return False, pos
                before = len(out)
                ok, _ = self._name(data, offset, label_at, out, room, depth + 1)
                if not ok:
                    return False, pos
                # The pointed-to name is lowercased (Zeek's recursion downcases).
                out[before:] = bytes(out[before:]).lower()
                break
            if size > end - pos:
                self.weird("DNS_label_len_gt_pkt")
                return False, end
            if size > MAX_LABEL and not self.netbios_server:
                self.weird("DNS_label_too_long")
                return False, pos
            if size >= room[0]:
                self.weird("DNS_label_len_gt_name_len")
                return False, pos
            out += data[pos:pos + size]
            out.append(0x2E)
            room[0] -= size + 1
            pos += size
        n = len(out) - start
        if n >= MAX_NAME:
            self.weird("DNS_NAME_too_long")
        if n >= 2 and out[-1] == 0x2E:
            del out[-1]
            room[0] += 1
        return True, pos

    # -- messages ------------------------------------------------------------------------

    def parse(self, data: bytes) -> Parsed:
        result = Parsed()
        if len(data) < HEADER_LEN:
            self.weird("DNS_truncated_len_lt_hdr_len")
            result.problem = "DNS_truncated_len_lt_hdr_len"
            return result
        hdr = Header(data, self.netbios)
        if hdr.opcode not in TRACKED_OPCODES and not self.netbios:
            self.weird("DNS_unknown_opcode", str(hdr.opcode))
            result.problem = "DNS_unknown_opcode"
            return result
        result.header = hdr
        result.ended = True
        if hdr.qdcount > MAX_QUERIES:
            self.weird("DNS_Conn_count_too_large", str(hdr.qdcount))
            result.problem = "DNS_Conn_count_too_large"
            return result
        end = len(data)
        pos = HEADER_LEN
        if hdr.dynamic_update:
            return self._update(data, pos, end, hdr, result)
        for _ in range(hdr.qdcount):
            ok, pos = self._question(data, pos, end, hdr, result)
            if not ok:
                result.problem = "question section does not parse"
                return result
        for _ in range(hdr.ancount):
            ok, pos = self._record(data, pos, end, hdr, ANSWER, result, None)
            if not ok:
                return result
        result.parsed = True
        return result

    def _question(self, data, pos, end, hdr, result):
        name, pos = self.name(data, pos, end, downcase=False)
        if name is None:
            return False, pos
        if end - pos < 4:
            self.weird("DNS_truncated_quest_too_short")
            return False, pos
        qtype = data[pos] << 8 | data[pos + 1]
        qclass = data[pos + 2] << 8 | data[pos + 3]
        result.questions.append((name.lower(), name, qtype, qclass))
        return True, pos + 4

    def _update(self, data, pos, end, hdr, result):
        """A dynamic update: zone, prerequisites, updates (RFC 2136)."""
        if hdr.qdcount != 1:
            self.weird("DNS_DU_invalid_zone_count", str(hdr.qdcount))
            return result
        zone, pos = self.name(data, pos, end)
        if zone is None:
            return result
        if end - pos < 4:
            self.weird("DNS_truncated_ans_too_short")
            return result
        if data[pos] << 8 | data[pos + 1] != T_SOA:
            self.weird("DNS_DU_incorrect_zone_type")
            result.ended = False                    # Zeek returns without dns_end
            return result
        zclass = data[pos + 2] << 8 | data[pos + 3]
        pos += 4
        for section, count in ((PREREQUISITE, hdr.ancount), (UPDATE, hdr.nscount)):
            for _ in range(count):
                ok, pos = self._record(data, pos, end, hdr, section, result, zclass)
                if not ok:
                    return result
        result.parsed = True
        return result

    def _record(self, data, pos, end, hdr, section, result, zclass):
        """One resource record: (parsed, position after it as Zeek counts)."""
        owner, pos = self.name(data, pos, end)
        if owner is None:
            return False, pos
        if end - pos < 4:
            self.weird("DNS_truncated_ans_too_short")
            return False, pos
        rtype = data[pos] << 8 | data[pos + 1]
        rclass = data[pos + 2] << 8 | data[pos + 3]
        pos += 4
        ttl = 0
        if end - pos >= 4:
            ttl = int.from_bytes(data[pos:pos + 4], "big")
            pos += 4
        rdlength = 0
        if end - pos >= 2:
            rdlength = data[pos] << 8 | data[pos + 1]
            pos += 2
        if rdlength > end - pos:
            self.weird("DNS_truncated_RR_rdlength_lt_len")
            return False, pos
        records = result.records
        if hdr.dynamic_update:
            if section == UPDATE:
                if rclass == CLASS_ANY and ttl == 0 and rdlength == 0:
                    if rtype == TYPE_ANY:
                        what = "RRSet * %s" % text(owner)
                    else:
                        what = "RRSet %s" % query_type_name(rtype)
                    records.append((section, owner, ttl, "del: " + what))
                    return True, pos
                if not ((rclass == CLASS_NONE and ttl == 0) or rclass == zclass):
                    self.weird("DNS_dynamic_update_invalid_update")
                    return True, pos
            else:
                if ttl != 0:
                    self.weird("DNS_dynamic_update_prereq_nonzero_ttl", str(ttl))
                elif (rclass in (CLASS_ANY, CLASS_NONE) and rdlength == 0) or rclass == zclass:
                    if rclass == CLASS_NONE and rtype == TYPE_ANY:
                        what = "NameNotInUse %s" % text(owner)
                    elif rclass == CLASS_ANY and rtype == TYPE_ANY:
                        what = "NameInUse %s" % text(owner)
                    elif rclass == CLASS_NONE:
                        what = "NoRRSet %s %s" % (query_type_name(rtype), text(owner))
                    else:
                        what = "RRSetExists %s %s" % (query_type_name(rtype), text(owner))
                    records.append((section, owner, ttl, "pre: " + what))
                else:
                    self.weird("DNS_dynamic_update_invalid_prereq")
                # Zeek reads no data out of prerequisites (and does not skip it).
                return True, pos
        if rdlength == 0 and end > pos:
            if hdr.dynamic_update:
                return True, pos
            self.weird("DNS_zero_rdlength")
            return False, pos
        ok, pos, reply = self._rdata(data, pos, end, rdlength, rtype, owner, hdr)
        if reply is not None:
            if hdr.dynamic_update and section == UPDATE and not reply.startswith("del:"):
                reply = "add: " + reply
            records.append((section, owner, ttl, reply))
        return ok, pos

    def _rdata(self, data, pos, end, rdlength, rtype, owner, hdr):
        """(parsed, position, reply string or None) for one record's data,
        with the reply Zeek's base scripts log for its type."""
        start = pos
        stop = pos + rdlength
        if rtype == T_A:
            if rdlength != 4:
                self.weird("DNS_RR_bad_length")
                return False, pos, None
            addr = address(data[pos:pos + 4])
            if hdr.dynamic_update:
                addr = "A %s %s" % (text(owner), addr)
            return True, stop, addr
        if rtype in (T_AAAA, T_A6):
            raw = bytearray(16)
            for i in range(0, 16, 4):               # Zeek reads 4 longs, whatever rdlength
                if end - pos >= 4:
                    raw[i:i + 4] = data[pos:pos + 4]
                    pos += 4
            addr = address(bytes(raw))
            if hdr.dynamic_update:
                addr = "%s %s %s" % ("AAAA" if rtype == T_AAAA else "A6", text(owner), addr)
            return True, pos, addr
        if rtype in (T_NS, T_CNAME, T_PTR):
            name, pos = self.name(data, pos, end)
            if name is None:
                return False, pos, None
            if pos - start != rdlength:
                self.weird("DNS_RR_length_mismatch")
            return True, pos, text(name)
        if rtype == T_SOA:
            mname, pos = self.name(data, pos, end)
            if mname is None:
                return False, pos, None
            rname, pos = self.name(data, pos, end)
            if rname is None or end - pos < 20:
                return False, pos, None
            pos += 20
            if pos - start != rdlength:
                self.weird("DNS_RR_length_mismatch")
            return True, pos, text(mname)
        if rtype == T_MX or (rtype == T_SRV and not self.netbios_server):
            fixed = 2 if rtype == T_MX else 6
            pos += min(fixed, (end - pos) & ~1)
            name, pos = self.name(data, pos, end)
            if name is None:
                return False, pos, None
            if pos - start != rdlength:
                self.weird("DNS_RR_length_mismatch")
            return True, pos, text(name)
        if rtype in (T_TXT, T_SPF):
            strings, pos, left = self._char_strings(data, pos, rdlength)
            kind = "TXT" if rtype == T_TXT else "SPF"
            reply = " ".join("%s %d %s" % (kind, len(s), text(s)) for s in strings)
            return left == 0, pos, reply
        if rtype == T_RRSIG:
            if end - pos < 18:
                return False, pos, None
            covered = data[pos] << 8 | data[pos + 1]
            algorithm = data[pos + 2]
            pos += 18
            signer_at = pos
            signer, pos = self.name(data, pos, end)
            if signer is None:
                return False, pos, None
            pos += min(end - pos, max(0, rdlength - (pos - signer_at + 18)))
            self._algorithm("RRSIG", algorithm)
            return True, pos, "RRSIG %d %s" % (covered, text(signer) if signer else "<Root>")
        if rtype == T_DNSKEY:
            if end - pos < 4:
                return False, pos, None
            flags = data[pos] << 8 | data[pos + 1]
            protocol, algorithm = data[pos + 2], data[pos + 3]
            pos += 4 + min(end - pos - 4, max(0, rdlength - 4))
            if flags & 0xFE7E:
                self.weird("DNSSEC_DNSKEY_Invalid_Flag", str(flags))
            if flags & 0x0181 == 0x0181:
                self.weird("DNSSEC_DNSKEY_Revoked_KSK", str(flags))
            if protocol != 3:
                self.weird("DNSSEC_DNSKEY_Invalid_Protocol", str(protocol))
            self._algorithm("DNSKEY", algorithm)
            return True, pos, "DNSKEY %d" % algorithm
        if rtype == T_DS:
            if end - pos < 4:
                return False, pos, None
            algorithm, digest = data[pos + 2], data[pos + 3]
            pos += 4 + min(end - pos - 4, max(0, rdlength - 4))
            if digest == 0:
                self.weird("DNSSEC_DS_ReservedDigestType", str(digest))
            elif digest not in DS_DIGESTS:
                self.weird("DNSSEC_DS_unknown_DigestType", str(digest))
            return True, pos, "DS %d %d" % (algorithm, digest)
        if rtype == T_NSEC:
            next_name, pos = self.name(data, pos, end)
            if next_name is None:
                return False, pos, None
            pos = self._bitmaps(data, pos, end, rdlength - (pos - start), "NSEC")
            return True, pos, "NSEC %s %s" % (text(owner), text(next_name))
        if rtype in (T_NSEC3, T_NSEC3PARAM):
            if end - pos < (6 if rtype == T_NSEC3 else 5):
                return False, pos, None
            pos += 4
            for _ in range(2 if rtype == T_NSEC3 else 1):     # salt, then the hash
                size = 0
                if end > pos:
                    size = data[pos]
                    pos += 1
                pos += min(end - pos, size)
            if rtype == T_NSEC3PARAM:
                return True, pos, "NSEC3PARAM"
            pos = self._bitmaps(data, pos, end, rdlength - (pos - start), "NSEC3")
            return True, pos, "NSEC3"
        if rtype == T_BINDS:
            if end - pos < 5:
                return False, pos, None
            return True, pos + 5, "BIND9 signing signal"
        if rtype == T_SSHFP:
            if end - pos < 2:
                return False, pos, None
            take = min(end - pos - 2, max(0, rdlength - 2))
            fingerprint = data[pos + 2:pos + 2 + take]
            return True, pos + 2 + take, "SSHFP: " + fingerprint.hex()
        if rtype == T_LOC:
            if rdlength != 16:
                self.weird("dns_invalid_loc_length")
                return False, pos, None
            if data[pos] != 0:
                self.weird("DNS_LOC_version_unrecognized", str(data[pos]))
            return True, stop, "LOC:  %d %d %d" % (data[pos + 1], data[pos + 2], data[pos + 3])
        if rtype == T_WKS:
            return True, pos, ""         # Zeek logs nothing and reads none of it
        if rtype == T_NAPTR:
            pos += min(4, (end - pos) & ~1)
            left = rdlength - 4
            if end <= pos or left <= 0:
                self.weird("DNS_NAPTR_too_short")
                return False, pos, None
            fields = []
            for _ in range(3):
                s, pos, left = self._char_string(data, pos, left)
                fields.append(s)
            replacement, pos = self.name(data, pos, end, downcase=False)
            if None in fields or replacement is None:
                self.weird("DNS_NAPTR_RR_too_short")
                return False, pos, None
            order = data[start] << 8 | data[start + 1]
            pref = data[start + 2] << 8 | data[start + 3]
            tail = " ".join(text(s) for s in (fields[2], replacement) if s)
            return True, pos, "NAPTR %d %d %s %s %s" % (order, pref, text(fields[0]),
                                                       text(fields[1]), tail)
        if rtype == T_EDNS:
            return self._edns(data, pos, rdlength), stop, None
        if rtype == T_TSIG:
            name, pos = self.name(data, pos, end)
            if name is None:
                return False, pos, None
            for size in (4, 2, 2, None, 2, 2, None):       # Zeek's TSIG layout
                if size is None:                            # 2-byte length, octets
                    n = 0
                    if end - pos >= 2:
                        n = data[pos] << 8 | data[pos + 1]
                        pos += 2
                    pos += min(end - pos, n)
                elif end - pos >= size:
                    pos += size
            return True, pos, None
        if rtype in (T_SVCB, T_HTTPS):
            if rdlength < 3:
                self.weird("DNS_SVCB_wrong_length")
                return False, pos, None
            return True, stop, None
        if rtype in SKIPPED_TYPES or (rtype == T_SRV and self.netbios_server):
            return True, (pos if rtype == T_SRV else stop), None
        self.weird("DNS_RR_unknown_type", str(rtype))
        return True, stop, "<unknown type=%d>" % rtype

    def _char_string(self, data, pos, left):
        """One <character-string> within `left` bytes of rdata: (bytes or None,
        position, bytes left)."""
        if left <= 0:
            return None, pos, left
        size = data[pos]
        pos += 1
        left -= 1
        if size > left:
            self.weird("DNS_TXT_char_str_past_rdlen")
            return None, pos, left
        return data[pos:pos + size], pos + size, left - size

    def _char_strings(self, data, pos, left):
        strings = []
        while True:
            s, pos, left = self._char_string(data, pos, left)
            if s is None:
                return strings, pos, left
            strings.append(s)

    def _bitmaps(self, data, pos, end, left, kind):
        """NSEC/NSEC3 type bitmaps: skipped, with Zeek's weird for an empty one."""
        while left > 0 and end > pos:
            window = length = 0
            if end - pos >= 2:
                window, length = data[pos], data[pos + 1]
                pos += 2
            if length == 0:
                self.weird("DNSSEC_%s_bitmapLen0" % kind, str(window))
                break
            pos += min(end - pos, length)
            left -= 2 + length
        return pos

    def _algorithm(self, kind, algorithm):
        if algorithm not in DNSSEC_ALGORITHMS:
            what = DNSSEC_ALGORITHM_WEIRDS.get(algorithm, "unknown")
            self.weird("DNSSEC_%s_%s_ZoneSignAlgo" % (kind, what), str(algorithm))

    def _edns(self, data, pos, rdlength):
        """EDNS options: only their framing is checked."""
        left = rdlength
        while left >= 4:
            size = data[pos + 2] << 8 | data[pos + 3]
            pos += 4
            left -= 4
            if size > left:
                self.weird("EDNS_truncated_option")
                return False
            pos += size
            left -= size
        if left:
            self.weird("EDNS_truncated_option")
            return False
        return True


class Info:
    """One dns.log row being built (Zeek's DNS::Info) and its two flags."""
    __slots__ = ("row", "saw_query", "saw_reply")

    def __init__(self, row: dict):
        self.row = row
        self.saw_query = self.saw_reply = False


class ZeekDnsLog:
    """Zeek's scripts/base/protocols/dns/main.zeek for one flow: `message()`
    takes what MessageParser gave, `finish()` writes what is left unmatched;
    rows go to `write(row)`."""

    def __init__(self, write, conn_fields: dict, multicast: bool, netbios_server: bool):
        self.write = write
        self.conn_fields = conn_fields        # uid, id.*, proto
        self.multicast = multicast
        self.netbios_server = netbios_server
        self.current: Info | None = None      # Zeek's c$dns
        self.pending_query: Info | None = None
        self.pending_queries: dict[int, deque] = {}
        self.pending_replies: dict[int, deque] = {}

    def _new(self, trans_id: int, now: float) -> Info:
        row = dict.fromkeys(LOG_FIELDS)
        row.update(self.conn_fields)
        row.update(ts=now, trans_id=trans_id, AA=False, TC=False, RD=False, RA=False, Z=0,
                   rejected=False)
        return Info(row)

    def _enqueue(self, table: dict, trans_id: int, info: Info) -> None:
        queue = table.get(trans_id)
        if queue is None:
            if len(table) > MAX_PENDING_QUERY_IDS:
                self._write_all(table)          # assumed never to be matched
            queue = table[trans_id] = deque()
        elif len(queue) > MAX_PENDING_MSGS:
            self._write_queue(queue)
            queue = table[trans_id] = deque()
        queue.append(info)

    @staticmethod
    def _pop(table: dict, trans_id: int) -> Info:
        queue = table[trans_id]
        info = queue.popleft()
        if not queue:
            del table[trans_id]
        return info

    def _write_queue(self, queue) -> None:
        for info in queue:
            self.write(info.row)

    def _write_all(self, table: dict) -> None:
        for queue in table.values():
            self._write_queue(queue)
        table.clear()

    def _session(self, hdr: Header, now: float) -> Info:
        """Zeek's set_session hook: the row a message belongs to."""
        tid = hdr.id
        if self.multicast:
            info = self._new(tid, now)
            info.saw_query = info.saw_reply = True
        elif not hdr.QR:
            if self.pending_replies.get(tid):
                info = self._pop(self.pending_replies, tid)
            else:
                info = self._new(tid, now)
                if self.pending_query is None:
                    self.pending_query = info
                else:
                    self._enqueue(self.pending_queries, tid, info)
        elif self.pending_query is not None and self.pending_query.row["trans_id"] == tid:
            info, self.pending_query = self.pending_query, None
            queues = self.pending_queries
            if queues:
                # Refill the fast path, the same id first, to keep queue order.
                if queues.get(tid):
                    self.pending_query = self._pop(queues, tid)
                else:
                    for other, queue in queues.items():
                        if queue:
                            self.pending_query = self._pop(queues, other)
                            break
        elif self.pending_queries.get(tid):
            info = self._pop(self.pending_queries, tid)
        else:
            info = self._new(tid, now)
            self._enqueue(self.pending_replies, tid, info)
        row = info.row
        if hdr.QR:
            row["rcode"] = hdr.rcode
            row["rcode_name"] = RCODES.get(hdr.rcode) or "rcode-%d" % hdr.rcode
            if hdr.rcode != 0 and hdr.qdcount == 0:
                row["rejected"] = True
        row["opcode"] = hdr.opcode
        names = NETBIOS_OPCODES if hdr.netbios else OPCODES
        row["opcode_name"] = names.get(hdr.opcode) or "%sopcode-%d" % (
            "netbios-" if hdr.netbios else "", hdr.opcode)
        return info

    def message(self, parsed: Parsed, now: float) -> None:
        """The events of one message, in Zeek's order: dns_message,
        dns_request / dns_rejected, the replies, dns_end."""
        hdr = parsed.header
        if hdr is not None and hdr.opcode in TRACKED_OPCODES:
            self.current = self._session(hdr, now)
            row = self.current.row
            for name, _original, qtype, qclass in parsed.questions:
                if not hdr.QR:
                    self._request(row, hdr, name, qtype, qclass)
                elif not (hdr.ancount or hdr.nscount or hdr.arcount):
                    row["rejected"] = True                  # dns_rejected
            if hdr.QR:
                for section, owner, ttl, reply in parsed.records:
                    self._reply(row, hdr, owner, ttl, reply, now)
        if parsed.ended and self.current is not None:
            info = self.current
            if hdr.QR:
                info.saw_reply = True
            else:
                info.saw_query = True
            if info.saw_query and info.saw_reply:
                self.write(info.row)
                self.current = None

    def _request(self, row, hdr, name, qtype, qclass) -> None:
        row["RD"] = hdr.RD
        row["TC"] = hdr.TC
        row["qclass"] = qclass
        row["qclass_name"] = CLASSES.get(qclass) or "qclass-%d" % qclass
        row["qtype"] = qtype
        row["qtype_name"] = query_type_name(qtype)
        row["Z"] = hdr.Z
        if self.netbios_server:
            decoded = decode_netbios_name(name)
            if decoded:
                name = decoded
            if row["qtype_name"] == "SRV":
                row["qtype_name"] = "NBSTAT"
        row["query"] = text(name)

    @staticmethod
    def _reply(row, hdr, owner, ttl, reply, now) -> None:
        """Zeek's DNS::do_reply hook."""
        if row["query"] is None:
            row["query"] = text(owner)
        row["AA"] = hdr.AA
        row["RA"] = hdr.RA
        if row["rtt"] is None:
            rtt = now - row["ts"]
            row["rtt"] = rtt if rtt != 0 else None
        if reply:
            if row["answers"] is None:
                row["answers"], row["TTLs"] = [], []
            row["answers"].append(reply)
            row["TTLs"].append(Interval(ttl))

    def finish(self) -> None:
        """The flow ended: what is still unmatched is written (Zeek's
        finalize_dns)."""
        if self.pending_query is not None:
            self.write(self.pending_query.row)
            self.pending_query = None
        self._write_all(self.pending_queries)
        self._write_all(self.pending_replies)


class Dns(Analyser):
    """DNS over UDP (one message per datagram) and TCP (length-prefixed)."""
    name = "dns"
    protocol = ("udp", "tcp")
    ports = ZEEK_PORTS
    logs = {"dns": DNS_LOG}
    payload_fields = frozenset({"query", "answers"})

    def main(self):
        cid = self.id
        try:
            multicast = any(ipaddress.ip_address(cid.resp_h) in net for net in MULTICAST)
        except ValueError:
            multicast = False
        self.netbios = NETBIOS_PORT in (cid.orig_p, cid.resp_p)
        self.parser = MessageParser(self._weird, self.netbios, cid.resp_p)
        self.multicast = multicast
        self.first = True
        self.zeek = None
        try:
            if cid.proto == "udp":
                while True:
                    side, data = self.read_datagram()
                    self._message(data, side)
            else:
                self._stream()
        except (StreamEnd, GreenletExit):
            pass
        finally:
            if self.zeek is not None:
                self.zeek.finish()

    def _stream(self) -> None:
        """TCP: each message is a 2-byte length and the message, per side."""
        buffers = [bytearray(), bytearray()]
        lost = [False, False]
        try:
            while True:
                try:
                    side, data = self.read_any(READ_CHUNK)
                except Gap as gap:
                    # The framing of that side is lost with the missing bytes.
                    self.weird("dns_tcp_content_gap", addl=str(gap.size))
                    lost[gap.side] = True
                    buffers[gap.side] = bytearray()
                    continue
                if lost[side]:
                    continue
                buf = buffers[side]
                buf += data
                pos, have = 0, len(buf)
                while have - pos >= 2:
                    size = buf[pos] << 8 | buf[pos + 1]
                    if have - pos - 2 < size:
                        break
                    self._message(bytes(buf[pos + 2:pos + 2 + size]), side)
                    pos += 2 + size
                if pos:
                    del buf[:pos]
        except StreamEnd:
            # Zeek parses a message cut by the end of the connection as it is.
            for side in (ORIG, RESP):
                if len(buffers[side]) > 2:
                    self._message(bytes(buffers[side][2:]), None)
            raise

    def _message(self, data: bytes, side) -> None:
        parsed = self.parser.parse(data)
        hdr = parsed.header
        if self.first and hdr is not None:
            self.first = False
            # Zeek flips the roles of a flow whose first message is a response
            # sent by its originator (not for multicast).
            flip = hdr.QR and side == ORIG and not self.multicast
            self._start_log(flip)
        if self.zeek is not None:
            self.zeek.message(parsed, self.ts)
        if parsed.problem and not self.confirmed:
            if self.zeek is not None:
                self.zeek.finish()          # Zeek logs what it had started
                self.zeek = None
            self.violation(parsed.problem, data[:HEADER_LEN + 20])
        if parsed.parsed:
            self.confirm()

    def _start_log(self, flip: bool) -> None:
        cid = self.id
        if flip:
            ids = {"id.orig_h": cid.resp_h, "id.orig_p": cid.resp_p,
                   "id.resp_h": cid.orig_h, "id.resp_p": cid.orig_p}
        else:
            ids = {"id.orig_h": cid.orig_h, "id.orig_p": cid.orig_p,
                   "id.resp_h": cid.resp_h, "id.resp_p": cid.resp_p}
        ids.update(uid=self.uid, proto=cid.proto)
        self.zeek = ZeekDnsLog(self._write, ids, self.multicast,
                               self.parser.netbios_server)

    def _write(self, row: dict) -> None:
        self.log("dns", row)

    def _weird(self, name: str, addl: str | None = None) -> None:
        if addl is None:
            self.weird(name)
        else:
            self.weird(name, addl=addl)
