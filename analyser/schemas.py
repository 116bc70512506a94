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

FTP = (
    Field("ts", "time", "time of the command"),
    Field("uid", "string", "uid of the control connection"),
    Field("id.orig_h", "addr", "client address"),
    Field("id.orig_p", "port", "client port"),
    Field("id.resp_h", "addr", "server address"),
    Field("id.resp_p", "port", "server port"),
    Field("user", "string", "user name of the session"),
    Field("password", "string", "password; `<hidden>` unless the user is a guest id "
                                "(anonymous, ftp, ftpuser, guest), as Zeek does"),
    Field("command", "string", "the command (Zeek's FTP::logged_commands; more with "
                               "--analyser ftp:log_commands=A+B)"),
    Field("arg", "string", "its argument; for file commands (RETR, STOR, CWD, ...) "
                           "ftp://server/path from the tracked working directory, as Zeek "
                           "writes it"),
    Field("mime_type", "string", "file type (not determined: always unset)"),
    Field("file_size", "count", "size announced by the server: the last number of the 150 "
                                "reply to RETR or of the 213 reply to SIZE (Zeek's rule)"),
    Field("reply_code", "count", "the final reply's code"),
    Field("reply_msg", "string", "the final reply's text"),
    Field("data_channel.passive", "bool", "the data channel is passive (PASV/EPSV); set on "
                                          "the PASV/EPSV/PORT/EPRT row only"),
    Field("data_channel.orig_h", "addr", "data channel originator"),
    Field("data_channel.resp_h", "addr", "data channel responder"),
    Field("data_channel.resp_p", "port", "data channel responder port"),
    Field("fuid", "string", "file id (unset)"),
)

TRANSFERS = (
    Field("ts", "time", "time of the command that started the transfer"),
    Field("uid", "string", "uid of the control connection"),
    Field("id.orig_h", "addr", "control connection client"),
    Field("id.orig_p", "port", "control connection client port"),
    Field("id.resp_h", "addr", "control connection server"),
    Field("id.resp_p", "port", "control connection server port"),
    Field("protocol", "string", "ftp or gridftp"),
    Field("command", "string", "RETR, STOR, STOU, APPE, LIST, NLST, MLSD, ..."),
    Field("file", "string", "the command's argument as sent"),
    Field("size_announced", "count", "size announced: '(N bytes)' in the 150/125 reply, "
                                     "a 213 reply to SIZE of the same file, or ALLO (GridFTP "
                                     "uploads)"),
    Field("bytes", "count", "payload bytes of the file itself: the sender's payload bytes "
                            "of the data connection(s); MODE E: sum of block counts (headers "
                            "excluded); unset when no data connection was seen"),
    Field("streams", "count", "data connections that carried it (MODE E: parallel/striped)"),
    Field("data_uids", "set[string]", "uids of those data connections"),
    Field("duration", "interval", "from the command to the final reply (to the report when "
                                  "no final reply was seen)"),
    Field("reply_code", "count", "the final reply's code (226, 4xx, 5xx); unset when the "
                                 "control connection ended or went encrypted first"),
    Field("missed_bytes", "count", "bytes of the data connections never captured"),
)

LOGS = {"conn": CONN, "ftp": FTP, "transfers": TRANSFERS}
