"""Hostile and random input: the engine neither crashes nor hangs nor grows
without bound, and what it dropped is counted."""
import random

import pytest

from analyser import ORIG, RESP, Analyser, Gap
from packets import ACK, FIN, PSH, RST, SYN, tcp_packet, udp_packet


class Greedy(Analyser):
    """Reads both sides every way the API allows, forever."""
    name = "greedy"
    ports = {80}

    def main(self):
        while True:
            try:
                self.read_line(ORIG, 100)
                self.read_and_skip(RESP, 5000, 10)
                self.read_any(50)
                self.read(ORIG, 3)
            except Gap:
                continue


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_tcp_segments_on_few_flows(replay, seed):
    rng = random.Random(seed)
    frames = []
    for i in range(4000):
        cport = 40000 + rng.randrange(4)
        a, b = ("10.0.0.1", "10.0.0.2") if rng.random() < 0.5 else ("10.0.0.2", "10.0.0.1")
        sport, dport = (cport, 80) if a == "10.0.0.1" else (80, cport)
        flags = rng.choice([SYN, SYN | ACK, ACK, ACK | PSH, FIN | ACK, RST, RST | ACK, 0, 0xff])
        payload = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 10, 300, 1400])))
        seq = rng.choice([rng.randrange(2**32), 1000 + rng.randrange(5000)])
        frames.append((1000 + i * 0.001, tcp_packet(a, b, sport, dport, flags, seq,
                                                    rng.randrange(2**32), payload)))
    rows = replay(frames, analysers=[(Greedy, {})])
    stats = replay.result.stats
    assert rows, "connections are still reported"
    assert stats["ring"]["pinned_records"] == 0          # nothing left held at the end
    assert stats["analyser_errors"] == 0


def test_overlap_flood_stays_bounded(replay):
    """The same region resent with different bytes, many times."""
    frames = [(1.0, tcp_packet("10.0.0.1", "10.0.0.2", 40000, 80, SYN, 99)),
              (1.1, tcp_packet("10.0.0.2", "10.0.0.1", 80, 40000, SYN | ACK, 999, 100)),
              (1.2, tcp_packet("10.0.0.1", "10.0.0.2", 40000, 80, ACK, 100, 1000))]
    for i in range(3000):
        frames.append((2.0 + i * 1e-4, tcp_packet("10.0.0.1", "10.0.0.2", 40000, 80, ACK,
                                                  100 + (i % 7) * 100, 1000,
                                                  bytes([i & 0xff]) * 1000)))
    replay(frames, analysers=[(Greedy, {})])
    stats = replay.result.stats
    assert stats["stream_overlap_conflicts"] > 0
    assert stats["ring"]["pinned_records"] == 0


def test_syn_flood_is_bounded_by_the_memory_budget(replay):
    from analyser.flows import FlowTable
    frames = [(1.0 + i * 1e-5, tcp_packet("10.0.%d.%d" % (i >> 8 & 255, i & 255), "10.9.9.9",
                                          1024 + (i % 60000), 80, SYN, i))
              for i in range(30000)]
    budget = FlowTable.bytes_per_flow() * 5000 / 2**20
    rows = replay(frames, flow_memory_mb=budget)
    stats = replay.result.stats
    assert stats["max_active_flows"] <= stats["flow_capacity"] <= 5000
    assert stats["evictions"] + stats["timeouts"] + stats["flow_capacity"] >= 30000 - 5000
    assert len(rows) == 30000
    assert all(r["conn_state"] == "S0" for r in rows)


def test_tiny_and_garbage_frames_are_counted(replay):
    rng = random.Random(9)
    frames = [(1.0 + i, bytes(rng.randrange(256) for _ in range(rng.randrange(0, 80))))
              for i in range(500)]
    frames.append((600.0, udp_packet("10.0.0.1", "10.0.0.2", 1, 2, b"ok")))
    rows = replay(frames)
    stats = replay.result.stats
    assert sum(stats["malformed"].values()) + stats["not_ip"] + stats["decoded"] + \
        stats["other_transport"] + stats["fragments_seen"] >= 500
    assert any(r["proto"] == "udp" and r["id.orig_p"] == 1 for r in rows)
