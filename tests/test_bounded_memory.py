"""Bounded memory under hostile traffic (bench/gen_hostile.py's scenarios,
scaled down): a SYN flood from spoofed sources, half-open connections,
out-of-order segments that never fill a hole, a fragment flood, analysers
that never read.  Peak memory stays within the configured budgets
(--flow-memory, --stream-memory, the fragment table), what was given up is
counted, and the engine keeps a rate.  bench/bench_hostile.py runs the full
sizes."""
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import bench_hostile  # noqa: E402
import gen_hostile  # noqa: E402
from hostile_analysers import NeverReads  # noqa: E402

# A floor far below what the engine does (100k-300k packets/s on a shared
# 2-core machine), so that only a collapse fails: the SYN flood of a port
# with an analyser ran at 12k packets/s when every SYN started one.
MIN_PACKETS_PER_SECOND = 40_000


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    return bench_hostile.measure_baseline(str(tmp_path_factory.mktemp("base")),
                                          bench_hostile.FLOW_MEMORY_MB,
                                          bench_hostile.STREAM_MEMORY_MB)


@pytest.mark.parametrize("scenario, sizes, counter", [
    ("syn_flood", (120_000,), "evictions"),
    ("half_open", (60_000,), "max_active_flows"),
    ("ooo", (300, 30), "ring_copied_out_bytes"),
    ("fragments", (100_000,), "fragment_datagrams_evicted"),
    ("never_read", (100, 1_000_000), "ring_given_up_bytes"),
])
def test_hostile_traffic_stays_within_the_memory_budgets(tmp_path, baseline, scenario, sizes,
                                                         counter):
    r = bench_hostile.measure(scenario, sizes, str(tmp_path), baseline=baseline)
    assert r["analyser_errors"] == 0 and r["engine_errors"] == 0
    assert r["packets"] == r["trace_packets"]
    assert r[counter] > 0, "the bound at work is counted"
    assert r["stream_owned_bytes_peak"] <= bench_hostile.STREAM_MEMORY_MB << 20
    assert r["max_active_flows"] <= r["flow_capacity"]
    assert r["over_baseline_mb"] <= r["budget_mb"] + bench_hostile.SLACK_MB, r
    assert r["packets_per_second"] >= MIN_PACKETS_PER_SECOND, r


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


def test_analysers_that_never_read_hold_at_most_the_stream_budget(replay, tmp_path):
    """Copy-outs were bounded per side only (1 MiB): 200 connections whose
    analyser never reads held 200 MiB of copies.  All streams together now
    hold at most `max_owned_total`; the rest is given up as gaps, counted."""
    path = tmp_path / "never.pcap"
    gen_hostile.generate("never_read", str(path), 30, 600_000)
    budget = 4 << 20
    replay(path, analysers=[(NeverReads, {})], max_owned_total=budget)
    stats = replay.result.stats
    assert stats["analysers_started"] == 30
    assert 0 < stats["stream_owned_bytes_peak"] <= budget
    assert stats["ring_copied_out_bytes"] <= budget
    assert stats["ring_given_up_bytes"] > 30 * 600_000 - budget - (4 << 20)   # ring held the rest
    assert stats["stream_owned_bytes"] == 0            # all freed at the end
    assert stats["analyser_errors"] == 0


def test_a_side_nobody_reads_keeps_one_descriptor_per_run_of_lost_bytes(replay, tmp_path):
    """Bytes given up (ring pressure past the copy-out budget) became one gap
    descriptor per segment, kept while nobody read: 2,000 connections of 1.5
    MB held 2 million descriptors (242 MiB peak).  Neighbouring gaps are one
    descriptor now."""
    import analyser.replay as rp
    from analyser.events import Monitor
    path = tmp_path / "never.pcap"
    packets = gen_hostile.generate("never_read", str(path), 20, 3_000_000)
    held, holder = [], {}
    monitor = Monitor()
    counter = iter(range(10**9))
    monitor.on("packet", lambda ev: next(counter) % 500 or held.append(
        holder["engine"].streams.segments_held()))
    original = rp.Engine

    def keep(*args, **kwargs):
        holder["engine"] = original(*args, **kwargs)
        return holder["engine"]
    rp.Engine = keep
    try:
        replay(path, analysers=[(NeverReads, {})], monitor=monitor, ring_bytes=1 << 20,
               max_owned_total=1 << 20)
    finally:
        rp.Engine = original
    stats = replay.result.stats
    assert stats["ring_given_up_bytes"] > 50_000_000
    assert len(held) > 50
    # Per side at most: the segments still pinned in the 1 MiB ring, the
    # copied-out ones, a gap between runs, 64 out of order.
    assert max(held) < 3000, max(held)
    assert packets > 40_000
