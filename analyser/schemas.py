"""Log schemas: every log's fields, Zeek types and meanings, declared once.

Role in the data flow: sinks.  The TSV and JSON writers (analyser/logs.py)
and the README's field tables all read these lists; add a field here and
every writer follows.

Core declares only the logs of the engine itself (conn.log, analyzer.log).
A protocol's logs are declared by its analyser class (`Analyser.logs`, see
analyser/runtime.py), in its own module: `schemas_of()` collects them for a
run, and checks that two analysers do not declare one log two ways.
"""
from collections import namedtuple
from collections.abc import Iterable, Sequence


# collections.namedtuple, not typing.NamedTuple: the same class without
# importing typing at start-up (2 ms of every run).
class Field(namedtuple("Field", ("name", "zeek_type", "doc"))):
    """One column of a log: its name, Zeek type and meaning."""
    __slots__ = ()


def conn_id_fields(orig: str = "originator", resp: str = "responder",
                   orig_port: str = "", resp_port: str = "") -> tuple[Field, ...]:
    """Zeek's `id` record (id.orig_h, id.orig_p, id.resp_h, id.resp_p), its
    docs naming the two ends as a log sees them ("client", "server")."""
    return (Field("id.orig_h", "addr", "%s address" % orig),
            Field("id.orig_p", "port", "%s port%s" % (orig, orig_port)),
            Field("id.resp_h", "addr", "%s address" % resp),
            Field("id.resp_p", "port", "%s port%s" % (resp, resp_port)))


CONN = (
    Field("ts", "time", "time of the first packet"),
    Field("uid", "string", "unique id of the connection"),
    *conn_id_fields(orig_port=" (ICMP: message type)",
                    resp_port=" (ICMP: answering type, or code)"),
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

ANALYZER = (
    Field("ts", "time", "time of the violation"),
    Field("cause", "string", "violation (Zeek 7's field; Zeek 8 leaves it out)"),
    Field("analyzer_kind", "string", "protocol (an analyser of a connection's streams)"),
    Field("analyzer_name", "string", "the analyser, upper case as Zeek names them (FTP)"),
    Field("uid", "string", "the connection"),
    Field("fuid", "string", "file id (unset)"),
    *conn_id_fields(),
    Field("proto", "enum", "transport protocol"),
    Field("failure_reason", "string", "why the analyser gave up (its violation)"),
    Field("failure_data", "string", "the input that did not fit (at most 100 bytes)"),
)

# tunnel.log (analyser/tunnels.py): Zeek's Tunnel::Info.
TUNNEL = (
    Field("ts", "time", "when the tunnel was discovered, closed or expired"),
    Field("uid", "string", "the tunnel's uid: a UDP tunnel's own connection, or one per "
                           "address pair for IP in IP and GRE"),
    *conn_id_fields(orig_port=" (0 for IP in IP and GRE)",
                    resp_port=" (0 for IP in IP and GRE)"),
    Field("tunnel_type", "enum", "Tunnel::IP, GRE, VXLAN, GENEVE, GTPv1, TEREDO or AYIYA"),
    Field("action", "enum", "Tunnel::DISCOVER, Tunnel::CLOSE or Tunnel::EXPIRE"),
)

# transfers.log: one row per bulk transfer, whichever protocol moved it (FTP
# and GridFTP files and listings, HTTP bodies).  Not a core log: declared here
# once so that every protocol writing it declares the same fields
# (`logs = {"transfers": TRANSFERS}`).
TRANSFERS = (
    Field("ts", "time", "time of the request or command that started the transfer"),
    Field("uid", "string", "uid of the connection that asked for it (FTP: the control "
                           "connection)"),
    *conn_id_fields("client", "server"),
    Field("protocol", "string", "ftp, gridftp or http"),
    Field("command", "string", "RETR, STOR, STOU, APPE, LIST, NLST, MLSD, ...; HTTP: the "
                               "method"),
    Field("file", "string", "the command's argument as sent; HTTP: the URI"),
    Field("size_announced", "count", "size announced: FTP's '(N bytes)' in the 150/125 "
                                     "reply, a 213 reply to SIZE of the same file, or ALLO "
                                     "(GridFTP uploads); HTTP's Content-Length"),
    Field("bytes", "count", "payload bytes of the file itself: FTP: the sender's payload "
                            "bytes of the data connection(s); MODE E: sum of block counts "
                            "(headers excluded); HTTP: the body after transfer decoding "
                            "(chunk headers excluded); unset when no data was seen"),
    Field("streams", "count", "data connections that carried it (MODE E: parallel/striped)"),
    Field("data_uids", "set[string]", "uids of those data connections"),
    Field("duration", "interval", "from the command to the final reply (to the report when "
                                  "no final reply was seen); HTTP: request to end of body"),
    Field("reply_code", "count", "the final reply's code (FTP: 226, 4xx, 5xx; HTTP: the "
                                 "status); unset when the control connection ended or went "
                                 "encrypted first"),
    Field("missed_bytes", "count", "bytes never captured"),
)

CORE_LOGS = {"conn": CONN, "analyzer": ANALYZER, "tunnel": TUNNEL}

# Zeek's log types (the #types line); a set or vector of any of them too.
ZEEK_TYPES = frozenset({"time", "interval", "string", "addr", "subnet", "port", "enum",
                        "count", "int", "double", "bool"})


def field_of(spec) -> Field:
    """A Field from a Field, (name, type) or (name, type, doc)."""
    if isinstance(spec, Field):
        f = spec
    elif isinstance(spec, (tuple, list)) and len(spec) in (2, 3):
        f = Field(spec[0], spec[1], spec[2] if len(spec) == 3 else "")
    else:
        raise ValueError("a log field is (name, type) or (name, type, doc), not %r" % (spec,))
    if not isinstance(f.name, str) or not f.name:
        raise ValueError("a log field needs a name: %r" % (spec,))
    base = f.zeek_type
    for wrapper in ("set[", "vector["):
        if base.startswith(wrapper) and base.endswith("]"):
            base = base[len(wrapper):-1]
    if base not in ZEEK_TYPES:
        raise ValueError("field %s: unknown Zeek type %r (known: %s, set[T], vector[T])"
                         % (f.name, f.zeek_type, ", ".join(sorted(ZEEK_TYPES))))
    return f


def schema_of(path: str, fields: Sequence) -> tuple[Field, ...]:
    """A log's declared fields, checked: known types, no name twice."""
    if not isinstance(path, str) or not path.replace("_", "").replace("-", "").isalnum():
        raise ValueError("a log name is letters, digits, - and _, not %r" % (path,))
    schema = tuple(field_of(f) for f in fields)
    names = [f.name for f in schema]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError("log %s declares %s twice" % (path, ", ".join(twice)))
    if not schema:
        raise ValueError("log %s declares no fields" % path)
    return schema


def schemas_of(classes: Iterable) -> dict[str, tuple[Field, ...]]:
    """Core logs plus every log the given analyser classes declare."""
    found = dict(CORE_LOGS)
    owner = {path: "core" for path in CORE_LOGS}
    for cls in classes:
        for path, schema in getattr(cls, "declared_logs", {}).items():
            if path in found and found[path] != schema:
                raise ValueError("log %s is declared by both %s and %s, differently"
                                 % (path, owner[path], cls.name))
            found.setdefault(path, schema)
            owner.setdefault(path, cls.name)
    return found
