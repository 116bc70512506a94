"""RDP (MS-RDPBCGR) connection start: the negotiation in the clear, then TLS.

Role in the data flow: flows -> streams -> **analysers (protocols.rdp)** ->
the TLS analyser (`ssl`) once the negotiation chose an encrypted security
protocol -> sinks (`rdp.log`, then ssl.log from `ssl`).

An RDP connection starts with an X.224 Connection Request (in a TPKT:
version 3, a 16-bit length) carrying an optional `Cookie: mstshash=...`
line and an RDP negotiation request; the server's Connection Confirm
carries the negotiation response, whose `selectedProtocol` says what
follows: standard RDP security (the rest is RDP's own encryption: not
parsed), or TLS (SSL, HYBRID = CredSSP over TLS, HYBRID_EX, RDSTLS), which
this analyser hands to `ssl` at the exact byte.  rdp.log gets Zeek's row
for what is known at that point (cookie, result `encrypted`, the security
protocol); the client's core data (build, name, desktop size) travels
inside TLS in those cases and stays unset.
"""
from __future__ import annotations

from analyser import ORIG, RESP, Analyser, Gap, Signature, conn_id_fields

# A TPKT longer than this before the negotiation is not RDP's connection
# request (MS-RDPBCGR: the request is tens of bytes; the cookie at most a line).
MAX_TPKT = 4096
X224_CONNECTION_REQUEST = 0xE0
X224_CONNECTION_CONFIRM = 0xD0
NEG_RESPONSE, NEG_FAILURE = 0x02, 0x03
# MS-RDPBCGR 2.2.1.2.1 selectedProtocol, named as Zeek's RDP::security_protocols.
SECURITY_PROTOCOLS = {0: "RDP", 1: "SSL", 2: "HYBRID", 4: "RDSTLS", 8: "HYBRID_EX"}
TLS_PROTOCOLS = frozenset({1, 2, 4, 8})
COOKIE = b"Cookie: mstshash="


class Rdp(Analyser):
    """RDP's negotiation; TLS after it is handed to `ssl`."""
    name = "rdp"
    ports = {3389}
    # TPKT version 3, then (after the length) an X.224 Connection Request.
    signatures = (Signature(ORIG, b"\x03\x00???\xe0", wildcard=True),)
    logs = {"rdp": [
        ("ts", "time", "time of the connection request"),
        ("uid", "string", "the connection"),
        *conn_id_fields("client", "server"),
        ("cookie", "string", "the mstshash cookie of the request (empty when none)"),
        ("result", "string", "encrypted (TLS follows), or the negotiation failure"),
        ("security_protocol", "string", "RDP, SSL, HYBRID, RDSTLS or HYBRID_EX"),
        ("cert_count", "count", "server certificates seen in RDP's own security (0)"),
    ]}
    payload_fields = frozenset({"cookie"})

    def tpkt(self, side: int) -> bytes:
        head = self.read(side, 4)
        length = int.from_bytes(head[2:4], "big")
        if head[0] != 3 or not 7 <= length <= MAX_TPKT:
            self.violation("not a TPKT header", head)
        return self.read(side, length - 4)

    def main(self):
        try:
            self.negotiation()
        except Gap as gap:
            # Bytes of the negotiation were never captured: nothing after
            # them can be parsed (as the other analysers after a content gap).
            self.weird("rdp_content_gap", side="orig" if gap.side == ORIG else "resp",
                       size=gap.size)

    def negotiation(self):
        ts = self.ts
        request = self.tpkt(ORIG)
        if len(request) < 2 or request[1] & 0xF0 != X224_CONNECTION_REQUEST:
            self.violation("no X.224 connection request", request[:16])
        at = request.find(COOKIE)
        cookie = ""
        if at >= 0:
            end = request.find(b"\r\n", at)
            cookie = request[at + len(COOKIE):end if end >= 0 else None].decode(
                "utf-8", "replace")
        confirm = self.tpkt(RESP)
        if len(confirm) < 2 or confirm[1] & 0xF0 != X224_CONNECTION_CONFIRM:
            self.violation("no X.224 connection confirm", confirm[:16])
        self.confirm()
        row = {"ts": ts, "uid": self.uid, "id.orig_h": self.id.orig_h,
               "id.orig_p": self.id.orig_p, "id.resp_h": self.id.resp_h,
               "id.resp_p": self.id.resp_p, "cookie": cookie, "cert_count": 0}
        neg = confirm[7:]                   # after the X.224 fixed part
        selected = None
        if len(neg) >= 8 and neg[0] == NEG_RESPONSE:
            selected = int.from_bytes(neg[4:8], "little")
            row["security_protocol"] = SECURITY_PROTOCOLS.get(selected, str(selected))
        elif len(neg) >= 8 and neg[0] == NEG_FAILURE:
            row["result"] = "negotiation failure %d" % int.from_bytes(neg[4:8], "little")
        if selected in TLS_PROTOCOLS:
            row["result"] = "encrypted"
            self.log("rdp", row)
            self.hand_over("ssl")
        self.log("rdp", row)
        self.release()                      # RDP's own security: nothing more to read
