"""Log schemas: every log's fields, Zeek types and meanings, declared once.

Role in the data flow: sinks.  The TSV and JSON writers (analyser/logs.py)
and the README's field tables all read these lists; add a field here and
every writer follows.
"""
from typing import NamedTuple


class Field(NamedTuple):
    name: str
    zeek_type: str
    doc: str


CONN = (
    Field("ts", "time", "time of the first packet"),
    Field("uid", "string", "unique id of the connection"),
    Field("id.orig_h", "addr", "originator address"),
    Field("id.orig_p", "port", "originator port (ICMP: message type)"),
    Field("id.resp_h", "addr", "responder address"),
    Field("id.resp_p", "port", "responder port (ICMP: answering type, or code)"),
    Field("proto", "enum", "transport protocol: tcp, udp or icmp"),
    Field("service", "string", "application protocols found by analysers"),
    Field("duration", "interval", "last packet time minus first (unset when 0)"),
    Field("orig_bytes", "count", "originator payload bytes; TCP: from sequence numbers"),
    Field("resp_bytes", "count", "responder payload bytes; TCP: from sequence numbers"),
    Field("conn_state", "string", "S0 S1 SF REJ S2 S3 RSTO RSTR RSTOS0 RSTRH SH SHR OTH"),
    Field("local_orig", "bool", "originator address is private address space"),
    Field("local_resp", "bool", "responder address is private address space"),
    Field("missed_bytes", "count", "bytes acknowledged by the peer but never seen"),
    Field("history", "string", "state history letters; upper case = originator"),
    Field("orig_pkts", "count", "packets from the originator"),
    Field("orig_ip_bytes", "count", "IP-level bytes from the originator"),
    Field("resp_pkts", "count", "packets from the responder"),
    Field("resp_ip_bytes", "count", "IP-level bytes from the responder"),
    Field("tunnel_parents", "set[string]", "uids of encapsulating connections"),
    Field("ip_proto", "count", "IP protocol number"),
)

LOGS = {"conn": CONN}
