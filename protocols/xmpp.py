"""XMPP: the stream headers and STARTTLS negotiation, hand-over to TLS.

Role in the data flow: flows -> streams -> **analysers (protocols.xmpp)** ->
events; after `<proceed/>` the connection goes on to the TLS analyser
(`ssl`), which reads the handshake from the next byte.

Theory of operation:

1. Only the element tags matter (RFC 6120 §5.4: `<starttls/>`, `<proceed/>`,
   `<failure/>`), so each side's bytes are searched for tags with one regular
   expression per chunk (`read_any`), and only the tag names are looked at.
2. Detection: the client's `<stream:stream` and the server's `<stream:stream`
   (an XML declaration may come first) confirm the session (conn.log
   `xmpp`).  A first client element that is not a stream header is a
   violation.
3. After the client's `<starttls`, the client waits for the server, so the
   server is read byte-exact (up to each `>`): at the end of `<proceed ...>`
   `self.hand_over("ssl")` gives the connection to the TLS analyser (Zeek's
   XMPP analyser switches at the same tag).  `<failure` goes on in the clear.
4. Once the session is past the point where STARTTLS can happen (Zeek's
   list: `success`, `message`, `db:result`, `db:verify`, `presence`), the
   rest of the connection is only counted (`bulk()`), as Zeek skips it.

Not done: xmpp has no log in Zeek either; SASL and stanzas are not parsed.
"""
from __future__ import annotations

import re

from analyser import ORIG, RESP, Analyser, Gap, Signature, StreamEnd

# -- limits ---------------------------------------------------------------------

READ_CHUNK = 16384              # bytes asked of the stream layer per read
MAX_TAIL = 4096                 # bytes of an unfinished tag kept between chunks
MAX_PROCEED_BYTES = 4096        # server bytes read after <starttls> waiting for <proceed>
MAX_PREAMBLE = 65536            # client bytes before its stream header (not XMPP beyond)

# A start or empty-element tag's name (`<stream:stream ...>`, `<proceed/>`);
# declarations (`<?xml`), comments and end tags are not names.
TAG = re.compile(rb"<([A-Za-z_][\w:.-]*)")
TLS_ANALYSER = "ssl"
# Zeek (src/analyzer/protocol/xmpp/xmpp-analyzer.pac): after these, no STARTTLS.
PAST_STARTTLS = frozenset({b"success", b"message", b"db:result", b"db:verify", b"presence"})


def local_name(tag: bytes) -> bytes:
    """The tag without its namespace prefix (`tls:proceed` -> `proceed`)."""
    return tag.rpartition(b":")[2]


class Xmpp(Analyser):
    """One XMPP stream: stream headers, STARTTLS; then TLS takes over."""
    name = "xmpp"
    ports = {5222, 5269}             # Zeek's XMPP::ports (client, server-to-server)
    signatures = (Signature(ORIG, b"<?xml", skip_space=True),
                  Signature(ORIG, b"<stream:stream", skip_space=True))

    def main(self):
        self.tails = [b"", b""]
        self.stream_seen = [False, False]
        self.client_starttls = False
        self.client_bytes = 0
        try:
            while True:
                side, chunk = self.read_any(READ_CHUNK)
                data = self.tails[side] + chunk
                last = data.rfind(b"<")
                # An unfinished tag at the end is kept for the next chunk.
                if last >= 0 and b">" not in data[last:]:
                    self.tails[side] = data[last:][-MAX_TAIL:]
                    data = data[:last]
                else:
                    self.tails[side] = b""
                for m in TAG.finditer(data):
                    if self.tag(side, m.group(1), data[m.start():m.start() + 100]):
                        return
                if side == ORIG and not self.stream_seen[ORIG]:
                    self.client_bytes += len(chunk)
                    if self.client_bytes > MAX_PREAMBLE:
                        self.violation("no XMPP stream header", data[:100])
        except Gap as gap:
            self.weird("xmpp_content_gap", side="orig" if gap.side == ORIG else "resp",
                       size=gap.size)
        except StreamEnd:
            pass

    def tag(self, side: int, name: bytes, raw: bytes) -> bool:
        """One start tag; True when the analysis is over (counted from now on)."""
        if not self.stream_seen[side]:
            if name != b"stream:stream":
                if not self.confirmed:
                    self.violation("not an XMPP stream header", raw)
                return False
            self.stream_seen[side] = True
            if all(self.stream_seen):
                self.confirm()
            return False
        if name in PAST_STARTTLS:
            self.bulk()
            return True
        if side == ORIG and local_name(name) == b"starttls":
            self.client_starttls = True
            self.await_proceed()
        elif side == RESP and local_name(name) == b"proceed":
            self.weird("XMPP: proceed without starttls")
        return False

    def await_proceed(self) -> None:
        """Server bytes, exactly, up to the end of <proceed ...> (then TLS)
        or of <failure ...> (stay in the clear)."""
        buf = self.tails[RESP]
        self.tails[RESP] = b""
        for _ in range(MAX_PROCEED_BYTES):
            end = buf.find(b">")
            if end >= 0:
                m = TAG.search(buf, 0, end)
                if m is not None:
                    name = local_name(m.group(1))
                    if name == b"proceed":
                        if buf[end + 1:]:
                            self.weird("xmpp_data_after_proceed", size=len(buf) - end - 1)
                        self.emit("xmpp_starttls")
                        self.hand_over(TLS_ANALYSER)
                    if name == b"failure":
                        self.tails[RESP] = buf[end + 1:]
                        return
                buf = buf[end + 1:]
                continue
            buf += self.read(RESP, 1)      # one byte at a time: the switch is exact
        self.weird("xmpp_starttls_no_proceed")
