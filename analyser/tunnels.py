"""tunnel.log: the tunnels traffic came through, as Zeek's tunnels framework
(base/frameworks/tunnels/main.zeek) logs them.

Role in the data flow: sinks.  The decoder (analyser/decode.pyx) opens the
encapsulations and the flow table (analyser/flows.pyx) gives each tunnel a
uid (a UDP tunnel's own connection's; for IP in IP and GRE, one per address
pair); this module is called once per connection, never per packet:

- DISCOVER when a connection starts inside a tunnel (or its encapsulation
  changes) and the tunnel is not active yet;
- CLOSE when a UDP tunnel's own connection ends while the tunnel is active;
- EXPIRE when no new connection came through an active tunnel for
  EXPIRATION seconds of trace time (IP and GRE tunnels have no connection
  to end: they are never closed, as in Zeek).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from analyser.decode import TUNNEL_NAMES

# Zeek's Tunnel::expiration_interval (the `active` table's read expiry).
EXPIRATION = 3600.0


class TunnelLog:
    """Active tunnels, by uid, in the order they were last seen; rows go to
    `write(path, row)`."""

    def __init__(self, write: Callable[[str, dict], None]):
        self.write = write
        self.active: OrderedDict[str, list] = OrderedDict()   # uid -> [row, last seen]

    def discover(self, t: float, layers) -> None:
        """A connection started in (or moved to) these tunnels, outermost
        first: (kind, uid, orig_h, orig_p, resp_h, resp_p) each."""
        self.expire(t)
        for kind, uid, orig_h, orig_p, resp_h, resp_p in layers:
            entry = self.active.get(uid)
            if entry is not None:
                entry[1] = t
                self.active.move_to_end(uid)
                continue
            row = {"ts": t, "uid": uid, "id.orig_h": orig_h, "id.orig_p": orig_p,
                   "id.resp_h": resp_h, "id.resp_p": resp_p,
                   "tunnel_type": TUNNEL_NAMES[kind], "action": "Tunnel::DISCOVER"}
            self.active[uid] = [row, t]
            self.write("tunnel", dict(row))

    def closed(self, t: float, uid: str) -> None:
        """A UDP tunnel's own connection ended."""
        self.expire(t)
        entry = self.active.pop(uid, None)
        if entry is not None:
            self.write("tunnel", dict(entry[0], ts=t, action="Tunnel::CLOSE"))

    def expire(self, t: float) -> None:
        while self.active:
            uid, (row, last) = next(iter(self.active.items()))
            if t - last < EXPIRATION:
                break
            del self.active[uid]
            self.write("tunnel", dict(row, ts=last + EXPIRATION, action="Tunnel::EXPIRE"))
