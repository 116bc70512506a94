"""The two examples of the seed material, run as tests.

1. The protothread RPC analyser (read a function id and an argument count
   from the originator, each argument's length and its first 200 bytes, then a
   4-byte result from the responder), on a trace built here.
2. mOS's example: count retransmitted SYNs with a user-defined event built
   from the retransmission event and the filter "SYN without ACK"."""
import struct

from analyser import ORIG, RESP, Analyser, Monitor
from packets import ACK, SYN, TcpPeer, close, handshake, timed


class Rpc(Analyser):
    name = "rpc"
    ports = {7000}

    def main(self):
        while True:
            func_id, nargs = struct.unpack("!HH", self.read(ORIG, 4))
            for _ in range(nargs):
                (length,) = struct.unpack("!I", self.read(ORIG, 4))
                head = self.read_and_skip(ORIG, length, 200)   # keep 200, skip the rest  # noqa: F841
            (result,) = struct.unpack("!I", self.read(RESP, 4))  # may block meanwhile
            self.emit("rpc_call", func=func_id, args=nargs, result=result)


def rpc_trace():
    """Two calls; the second has a 1 MB argument that arrives in 1448-byte
    segments, split at awkward places; the first result arrives only after
    the second call's bytes (the analyser blocks on RESP meanwhile)."""
    c, s = TcpPeer("10.9.0.1", 41000, 7), TcpPeer("10.9.0.2", 7000, 70)
    c.connect(s)
    call1 = struct.pack("!HH", 17, 2) + struct.pack("!I", 5) + b"hello" + \
        struct.pack("!I", 300) + bytes(range(256)) + bytes(44)
    big = bytes((i * 7) & 0xff for i in range(1_000_000))
    call2 = struct.pack("!HH", 42, 1) + struct.pack("!I", len(big)) + big
    stream = call1 + call2
    frames = handshake(c, s)
    for i in range(0, len(stream), 1448):
        frames.append(c.send(ACK, stream[i:i + 1448]))
        if i % (1448 * 20) == 0:
            frames.append(s.send(ACK))
    frames.append(s.send(ACK, struct.pack("!I", 1)))
    frames.append(s.send(ACK, struct.pack("!I", 0xdeadbeef)))
    frames += close(c, s)
    return timed(frames, step=1e-4)


def test_rpc_protothread_example(replay):
    events = []
    replay(rpc_trace(), analysers=[(Rpc, {})], on_event=events.append)
    calls = [(e["func"], e["args"], e["result"]) for e in events if e["event"] == "rpc_call"]
    assert calls == [(17, 2, 1), (42, 1, 0xdeadbeef)]
    stats = replay.result.stats
    # The 1 MB argument went past in compiled code: 200 bytes kept, the rest skipped.
    assert stats["stream_skipped_bytes"] >= 1_000_000 - 200
    assert stats["stream_delivered_bytes"] < 2000
    assert stats["analyser_errors"] == 0


def syn_trace():
    """Three SYN retransmissions without ACK, one SYN-ACK retransmission."""
    frames = []
    a, b = TcpPeer("10.8.0.1", 50000, 100), TcpPeer("10.8.0.2", 80, 900)
    a.connect(b)
    syn = a.send(SYN)
    frames += [(1.0, syn), (2.0, syn), (4.0, syn)]                 # two retransmissions
    synack = b.send(SYN | ACK)
    frames += [(4.1, synack), (4.5, synack), (4.6, a.send(ACK))]   # SYN-ACK again: has ACK
    c, d = TcpPeer("10.8.0.3", 50001, 5), TcpPeer("10.8.0.2", 80, 6)
    c.connect(d)
    syn2 = c.send(SYN)
    frames += [(5.0, syn2), (6.0, syn2), (6.2, d.send(SYN | ACK)), (6.3, c.send(ACK))]
    return frames


def test_mos_syn_retransmission_user_defined_event(replay):
    m = Monitor()
    syn_rexmit = m.define("retransmission", lambda ev: ev.syn and not ev.ack,
                          name="syn_retransmission")
    counted = []
    m.on(syn_rexmit, counted.append)
    all_rexmits = []
    m.on("retransmission", all_rexmits.append)
    replay(syn_trace(), monitor=m)
    assert len(counted) == 3
    assert {ev.uid for ev in counted} and all(ev.syn and not ev.ack for ev in counted)
    assert len(all_rexmits) == 4               # the SYN-ACK repeat is one too
    assert m.counts["syn_retransmission"] == 3


def test_before_callbacks_see_the_state_before_the_update(replay):
    m = Monitor()
    seen = []
    m.on("packet", lambda ev: seen.append(("before", ev.states)), when="before")
    m.on("packet", lambda ev: seen.append(("after", ev.states)))
    c, s = TcpPeer("10.8.0.1", 50000, 100), TcpPeer("10.8.0.2", 80, 900)
    c.connect(s)
    replay([(1.0, c.send(SYN))], monitor=m)
    assert seen == [("before", ("INACTIVE", "INACTIVE")), ("after", ("SYN_SENT", "INACTIVE"))]


def test_scoped_callbacks_and_stop_monitoring(replay):
    m = Monitor()
    by_filter, all_pkts = [], []
    m.on("packet", by_filter.append, scope="tcp port 81")
    m.on("packet", lambda ev: (all_pkts.append(ev), ev.stop_monitoring()))
    frames = []
    for port in (80, 81):
        c, s = TcpPeer("10.8.0.1", 50000 + port, 100), TcpPeer("10.8.0.2", port, 900)
        c.connect(s)
        frames += handshake(c, s)
    replay(timed(frames), monitor=m)
    # stop_monitoring() after the first packet of each connection.
    assert len(all_pkts) == 2
    assert len(by_filter) == 1 and by_filter[0].id.resp_p == 81


def test_stop_monitoring_one_side(replay):
    m = Monitor()
    seen = []

    def watch(ev):
        seen.append(ev.side)
        if ev.side == 1:
            ev.stop_monitoring(side=1)       # no more responder events
    m.on("packet", watch)
    c, s = TcpPeer("10.8.0.1", 50000, 100), TcpPeer("10.8.0.2", 80, 900)
    c.connect(s)
    frames = handshake(c, s) + [c.send(ACK, b"a"), s.send(ACK, b"b"), c.send(ACK)]
    replay(timed(frames), monitor=m)
    assert seen == [0, 1, 0, 0, 0]


def test_before_is_refused_for_events_of_the_update():
    m = Monitor()
    import pytest
    with pytest.raises(ValueError, match="during the TCP update"):
        m.on("state_change", print, when="before")
