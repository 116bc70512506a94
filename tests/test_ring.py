"""The packet ring (ringbuf.ring): the three DAG pointers and what they guarantee.

Pinned here: pointer order (acknowledged <= processed <= write), byte-exact
data through arena wrap-around, retained records never overwritten (refused
under "wait", dropped and counted under "drop"), acknowledging frees room,
oversize packets refused and counted.
"""
import random

import pytest

from ringbuf.ring import Ring


def packet(rng, index, max_length):
    """Recognisable bytes: the index up front, random filler after."""
    length = rng.randint(0, max_length)
    head = index.to_bytes(8, "little")[:length]
    return head + bytes(rng.getrandbits(8) for _ in range(length - len(head)))


def test_sizes_are_rounded_up_to_powers_of_two():
    ring = Ring(record_capacity=100, arena_bytes=5000)
    assert ring.record_capacity == 128
    assert ring.arena_bytes == 8192
    assert ring.free_bytes == 8192
    assert ring.occupancy == 0


def test_bad_policy_is_rejected():
    with pytest.raises(ValueError, match="policy"):
        Ring(policy="overwrite")


def test_written_record_reads_back_with_all_fields():
    ring = Ring(16, 1024)
    assert ring.write(1_700_000_000_123_456_789, 1514, 1, b"\x01\x02\x03", iface=3)
    assert ring.read() == (0, 1_700_000_000_123_456_789, 3, 1514, 1, 3, b"\x01\x02\x03")
    assert ring.read() is None


def test_processed_records_are_retained_until_acknowledged():
    ring = Ring(16, 1024)
    for i in range(5):
        ring.write(i, 10, 1, bytes([i]) * 10)
    for _ in range(3):
        ring.read()
    assert (ring.acknowledged_index, ring.processed_index, ring.write_index) == (0, 3, 5)
    assert ring.retained_records == 3
    assert ring.retained_bytes == 30
    assert ring.occupancy == 5
    # Retained records stay addressable by index.
    assert ring.peek(1) == bytes([1]) * 10
    ring.ack(2)
    assert ring.retained_records == 1
    assert ring.retained_bytes == 10
    assert ring.peek(1) is None          # acknowledged: no longer addressable
    assert ring.peek(2) == bytes([2]) * 10


def test_acknowledge_is_clamped_to_processed_and_never_moves_back():
    ring = Ring(16, 1024)
    for i in range(4):
        ring.write(i, 1, 1, b"x")
    ring.read()
    ring.read()
    ring.ack(10)                          # beyond processed: clamped
    assert ring.acknowledged_index == 2
    ring.ack(1)                           # backwards: ignored
    assert ring.acknowledged_index == 2


@pytest.mark.parametrize("policy", ["wait", "drop"])
def test_full_record_slots_refuse_writes_without_overwriting(policy):
    ring = Ring(record_capacity=8, arena_bytes=1 << 16, policy=policy)
    written = [bytes([i]) * 20 for i in range(8)]
    for data in written:
        assert ring.write(0, 20, 1, data)
    for _ in range(8):
        ring.read()                       # all processed, all retained
    for _ in range(5):
        assert not ring.write(0, 20, 1, b"\xff" * 20)
    stats = ring.stats()
    if policy == "wait":
        assert (stats["overflow_waits"], stats["overflow_drops"]) == (5, 0)
    else:
        assert (stats["overflow_drops"], stats["overflow_waits"]) == (5, 0)
    assert [ring.peek(i) for i in range(8)] == written
    ring.ack(3)
    assert ring.write(0, 20, 1, b"\xee" * 20)
    assert [ring.peek(i) for i in range(3, 8)] == written[3:]


@pytest.mark.parametrize("policy", ["wait", "drop"])
def test_full_arena_refuses_writes_and_keeps_retained_bytes_intact(policy):
    rng = random.Random(7)
    ring = Ring(record_capacity=1024, arena_bytes=4096, policy=policy)
    written = []
    while True:
        data = bytes(rng.getrandbits(8) for _ in range(300))
        if not ring.write(len(written), 300, 1, data):
            break
        written.append(data)
    assert len(written) == 4096 // 300
    assert ring.free_bytes < 300
    while ring.read() is not None:
        pass
    assert ring.retained_records == len(written)
    refused = 1 + sum(not ring.write(0, 300, 1, b"\x00" * 300) for _ in range(9))
    assert refused == 10
    counter = "overflow_waits" if policy == "wait" else "overflow_drops"
    assert ring.stats()[counter] == 10
    assert ring.stats()["records_written"] == len(written)
    assert [ring.peek(i) for i in range(len(written))] == written
    # Acknowledging the two oldest frees exactly enough room for two more.
    ring.ack(2)
    assert ring.write(0, 300, 1, b"\x01" * 300)
    assert ring.write(0, 300, 1, b"\x02" * 300)
    assert not ring.write(0, 300, 1, b"\x03" * 300)
    assert [ring.peek(i) for i in range(2, len(written))] == written[2:]


def test_packet_bytes_stay_contiguous_across_the_arena_wrap():
    ring = Ring(record_capacity=64, arena_bytes=1024)
    assert ring.write(0, 600, 1, b"A" * 600)
    assert ring.write(0, 100, 1, b"B" * 100)
    ring.read()
    ring.read()
    ring.ack(1)                          # "B" stays retained at bytes 600..700
    # 324 bytes remain before the end of the arena: a 400-byte packet must
    # start at the next lap, and the skipped tail stays used until acknowledged.
    third = bytes(range(256)) + bytes(range(144))
    assert ring.write(1, 400, 1, third)
    assert ring.free_bytes == 1024 - 100 - 324 - 400
    assert ring.read()[6] == third
    assert ring.peek(1) == b"B" * 100
    ring.ack(2)                          # frees "B" and the skipped tail
    assert ring.free_bytes == 1024 - 400
    ring.ack(3)
    assert ring.free_bytes == 1024


def test_a_packet_as_large_as_the_arena_fits_an_empty_ring():
    ring = Ring(record_capacity=4, arena_bytes=256)
    assert ring.write(0, 10, 1, b"z" * 10)
    ring.read()
    assert not ring.write(0, 256, 1, b"y" * 256)    # the 10 bytes are retained
    ring.ack(1)
    assert ring.write(0, 256, 1, b"y" * 256)
    assert ring.read()[6] == b"y" * 256


@pytest.mark.parametrize("policy", ["wait", "drop"])
def test_oversize_packets_are_refused_and_counted(policy):
    ring = Ring(record_capacity=4, arena_bytes=256, policy=policy)
    assert not ring.write(0, 300, 1, b"x" * 257)
    stats = ring.stats()
    assert stats["oversize_drops"] == 1
    assert stats["overflow_drops"] == stats["overflow_waits"] == 0
    assert ring.write_index == 0
    assert ring.write(0, 3, 1, b"abc")             # the ring still works


def test_max_occupancy_is_a_high_water_mark():
    ring = Ring(16, 1024)
    for i in range(6):
        ring.write(i, 1, 1, b"x")
    while ring.read() is not None:
        pass
    ring.ack(6)
    ring.write(0, 1, 1, b"x")
    assert ring.occupancy == 1
    assert ring.stats()["max_occupancy"] == 6


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("policy", ["wait", "drop"])
def test_random_operation_sequences_keep_every_invariant(seed, policy):
    rng = random.Random(seed)
    ring = Ring(record_capacity=rng.choice([4, 16, 64]),
                arena_bytes=rng.choice([512, 2048, 8192]), policy=policy)
    by_index = {}          # ring index -> bytes it was written with
    next_ring_index = 0
    refusals = oversize = 0
    for _ in range(3000):
        operation = rng.random()
        if operation < 0.45:
            data = packet(rng, next_ring_index, rng.choice([64, 300, 700]))
            free_before = ring.free_bytes
            if ring.write(next_ring_index * 1000, len(data) + 4, 1, data):
                by_index[next_ring_index] = data
                next_ring_index += 1
            elif len(data) > ring.arena_bytes:
                oversize += 1
            else:
                refusals += 1
                # A refusal is never for lack of space that was really free.
                assert (ring.occupancy == ring.record_capacity
                        or free_before < 2 * len(data))
        elif operation < 0.8:
            record = ring.read()
            if record is not None:
                index, ts_ns, caplen, wirelen, linktype, iface, data = record
                assert data == by_index[index]
                assert (ts_ns, caplen, wirelen, linktype) == (
                    index * 1000, len(data), len(data) + 4, 1)
        else:
            target = rng.randint(ring.acknowledged_index, ring.processed_index + 2)
            ring.ack(target)
        assert ring.acknowledged_index <= ring.processed_index <= ring.write_index
        assert ring.occupancy <= ring.record_capacity
        assert 0 <= ring.free_bytes <= ring.arena_bytes
        assert ring.retained_bytes <= ring.arena_bytes
        # Everything not yet acknowledged is intact, byte for byte.
        for index in range(ring.acknowledged_index, ring.write_index):
            assert ring.peek(index) == by_index[index]
    stats = ring.stats()
    assert stats["records_written"] == next_ring_index
    assert stats["oversize_drops"] == oversize
    counter = "overflow_waits" if policy == "wait" else "overflow_drops"
    assert stats[counter] == refusals
    assert refusals > 0, "the sequence never filled the ring: the test proves nothing"
