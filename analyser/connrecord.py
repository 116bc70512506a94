"""Connection records: the flow table's raw record -> Zeek conn.log fields.

Role in the data flow: between flows and sinks.  `analyser/flows.pyx`
reports each finished connection as a raw dict (addresses as 16 bytes, TCP
end states by name, sizes); this module derives what conn.log shows.
conn_state is a pure function of the two end states, written as Zeek
documents it, so it lives here as a table of rules.
"""
from __future__ import annotations

import re
import socket

PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp"}

_RSTOS0 = re.compile(r"\^?S[^HAFGIQ]*R.*")


def address(raw: bytes, ip_version: int) -> str:
    """Text form of a 16-byte address (IPv4 is stored v4-mapped)."""
    if ip_version == 4:
        return socket.inet_ntop(socket.AF_INET, raw[12:])
    return socket.inet_ntop(socket.AF_INET6, raw)


def tcp_conn_state(os: str, rs: str, orig_size: int, resp_size: int, history: str) -> str:
    """Zeek's conn_state from the two TCP end states (rules in Zeek's order)."""
    o_inactive = os in ("INACTIVE", "PARTIAL")
    r_inactive = rs in ("INACTIVE", "PARTIAL")
    if rs == "RESET":
        if os in ("SYN_SENT", "SYN_ACK_SENT") or (
                os == "RESET" and orig_size == 0 and resp_size == 0):
            return "REJ"
        return "RSTRH" if o_inactive else "RSTR"
    if os == "RESET":
        if r_inactive:
            return "RSTOS0" if _RSTOS0.fullmatch(history) else "OTH"
        return "RSTO"
    if os == "CLOSED" and rs == "CLOSED":
        return "SF"
    if os == "CLOSED":
        return "SH" if r_inactive else "S2"
    if rs == "CLOSED":
        return "SHR" if o_inactive else "S3"
    if os == "SYN_SENT" and rs == "INACTIVE":
        return "S0"
    if os == "ESTABLISHED" and rs == "ESTABLISHED":
        return "S1"
    return "OTH"


def udp_conn_state(os: str, rs: str) -> str:
    if os == "ACTIVE":
        return "SF" if rs == "ACTIVE" else "S0"
    return "SHR" if rs == "ACTIVE" else "OTH"


def conn_fields(raw: dict, services: tuple[str, ...] = ()) -> dict:
    """The conn.log row (Zeek field names) for one raw flow record.
    Unset fields are None."""
    proto = PROTO_NAMES.get(raw["proto"], "unknown_transport")
    orig_h = address(raw["orig_addr"], raw["ip_version"])
    resp_h = address(raw["resp_addr"], raw["ip_version"])
    duration = raw["last_time"] - raw["start_time"]
    history = raw["history"]
    if proto == "tcp":
        state = tcp_conn_state(raw["orig_state"], raw["resp_state"], raw["orig_bytes"],
                               raw["resp_bytes"], history)
    elif proto == "udp":
        state = udp_conn_state(raw["orig_state"], raw["resp_state"])
    else:
        state = "OTH"
    productive = duration > 0
    return {
        "ts": raw["start_time"],
        "uid": raw["uid"],
        "id.orig_h": orig_h,
        "id.orig_p": raw["orig_port"],
        "id.resp_h": resp_h,
        "id.resp_p": raw["resp_port"],
        "proto": proto,
        "service": ",".join(services) if services else None,
        # Zeek leaves duration and sizes unset for zero-length connections.
        "duration": duration if productive else None,
        "orig_bytes": raw["orig_bytes"] if productive else None,
        "resp_bytes": raw["resp_bytes"] if productive else None,
        "conn_state": state,
        "local_orig": raw["local_orig"],
        "local_resp": raw["local_resp"],
        "missed_bytes": raw["missed_bytes"],
        "history": history or None,
        "orig_pkts": raw["orig_pkts"],
        "orig_ip_bytes": raw["orig_ip_bytes"],
        "resp_pkts": raw["resp_pkts"],
        "resp_ip_bytes": raw["resp_ip_bytes"],
        "tunnel_parents": None,
        "ip_proto": raw["proto"],
    }
