"""Bounded memory under hostile traffic (bench/gen_hostile.py's scenarios,
scaled down): a SYN flood from spoofed sources, half-open connections,
out-of-order segments that never fill a hole, a fragment flood, analysers
that never read.  Peak memory stays within the configured budgets
(--flow-memory, --stream-memory, the fragment table), what was given up is
counted, and the engine keeps a rate.  bench/bench_hostile.py runs the full
sizes."""
import sys
from pathlib import Path


BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import gen_hostile  # noqa: E402

def test_syn_flood_to_an_analysed_port_starts_no_analyser(replay, tmp_path):
    """Every SYN to port 80 used to start HTTP's analyser (a greenlet, ~11 kB
    of Python each, outside the flow table's budget): 200,000 SYNs took
    957 MiB with --flow-memory 64, at 12k packets/s.  It starts with the
    first payload now."""
    from analyser import registry
    path = tmp_path / "syn.pcap"
    gen_hostile.generate("syn_flood", str(path), 5000)
    analysers, _ = registry.select()
    rows = replay(path, analysers=analysers)
    stats = replay.result.stats
    assert len(rows) == 5000 and {r["conn_state"] for r in rows} == {"S0"}
    assert stats.get("analysers_started", 0) == 0
    assert stats.get("stream_pairs", 0) == 0


def test_port_analyser_still_reads_a_connection_from_its_first_byte(replay):
    """Started with the first payload, the port-hinted analyser still gets
    the stream from its first byte, whichever side speaks first."""
    from analyser import ORIG, RESP, Analyser
    from packets import ACK, PSH, TcpPeer, close, handshake, timed

    got = []

    class Banner(Analyser):
        name = "banner-test"
        ports = {4444}

        def main(self):
            got.append(self.read(RESP, 5))
            got.append(self.read(ORIG, 3))

    c, s = TcpPeer("10.0.0.1", 40000, 100), TcpPeer("10.0.0.2", 4444, 900)
    c.connect(s)
    frames = handshake(c, s) + [s.send(ACK | PSH, b"hello"), c.send(ACK | PSH, b"abc")]
    replay(timed(frames + close(c, s)), analysers=[(Banner, {})])
    assert got == [b"hello", b"abc"]
    assert replay.result.stats["analysers_started"] == 1
