"""Connection records from crafted TCP/UDP exchanges: states, history, sizes,
gaps, timeouts, role decisions and the memory budget.

Expected values follow Zeek's documented conn.log semantics (conn_state,
history letters, sizes from sequence numbers)."""
from packets import (ACK, FIN, PSH, RST, SYN, TcpPeer, close, handshake, timed,
                     tcp_packet, udp_packet)


def one(rows):
    assert len(rows) == 1, rows
    return rows[0]


def peers(isn_c=1000, isn_s=5000, cport=40000, sport=8080):
    c = TcpPeer("10.0.0.1", cport, isn_c)
    s = TcpPeer("10.0.0.2", sport, isn_s)
    c.connect(s)
    return c, s


def test_complete_connection_is_SF_with_payload_sizes(replay):
    c, s = peers()
    frames = handshake(c, s)
    frames += [c.send(ACK | PSH, b"x" * 100), s.send(ACK, b"y" * 3000), c.send(ACK)]
    frames += close(c, s)
    r = one(replay(timed(frames)))
    # The responder never sends a bare ACK, so no "a".
    assert (r["conn_state"], r["history"]) == ("SF", "ShADdFf")
    assert (r["orig_bytes"], r["resp_bytes"]) == (100, 3000)
    assert (r["orig_pkts"], r["resp_pkts"]) == (6, 3)
    assert r["orig_ip_bytes"] == 6 * 40 + 100 and r["resp_ip_bytes"] == 3 * 40 + 3000
    assert r["missed_bytes"] == 0
    assert abs(r["duration"] - 0.07) < 1e-6
    assert (r["id.orig_h"], r["id.orig_p"], r["id.resp_h"], r["id.resp_p"]) == \
        ("10.0.0.1", 40000, "10.0.0.2", 8080)


def test_rejected_connection_is_REJ(replay):
    c, s = peers()
    frames = [c.send(SYN), s.send(RST | ACK)]
    r = one(replay(timed(frames)))
    assert (r["conn_state"], r["history"]) == ("REJ", "Sr")


def test_unanswered_syn_is_S0_and_a_late_retry_is_a_new_connection(replay):
    c, s = peers()
    syn = c.send(SYN, advance=False)
    # Zeek gives up on an unanswered SYN after 5 s: the retry at +6 s is new.
    rows = replay([(100.0, syn), (101.0, syn), (106.5, syn)])
    assert [r["conn_state"] for r in rows] == ["S0", "S0"]
    assert [r["orig_pkts"] for r in rows] == [2, 1]
    assert rows[0]["uid"] != rows[1]["uid"]
    assert replay.result.stats["timeouts"] == 1


def test_reset_by_originator_after_data_is_RSTO(replay):
    c, s = peers()
    frames = handshake(c, s) + [c.send(ACK, b"hello"), s.send(ACK), c.send(RST | ACK)]
    r = one(replay(timed(frames)))
    assert (r["conn_state"], r["history"]) == ("RSTO", "ShADaR")
    assert r["orig_bytes"] == 5


def test_reset_by_responder_is_RSTR(replay):
    c, s = peers()
    frames = handshake(c, s) + [c.send(ACK, b"hello"), s.send(RST | ACK)]
    assert one(replay(timed(frames)))["conn_state"] == "RSTR"


def test_established_without_close_is_S1_and_half_close_is_S2_or_S3(replay):
    c, s = peers()
    assert one(replay(timed(handshake(c, s))))["conn_state"] == "S1"
    c, s = peers()
    assert one(replay(timed(handshake(c, s) + [c.send(FIN | ACK)])))["conn_state"] == "S2"
    c, s = peers()
    assert one(replay(timed(handshake(c, s) + [s.send(FIN | ACK)])))["conn_state"] == "S3"


def test_midstream_connection_from_a_server_port_is_flipped(replay):
    # First packet seen comes from port 80 (a likely server port): Zeek turns
    # the connection around and marks the history with '^'.
    c, s = peers(cport=51000, sport=80)
    frames = [s.send(ACK | PSH, b"HTTP/1.1 200 OK\r\n\r\n"), c.send(ACK)]
    r = one(replay(timed(frames)))
    assert (r["id.orig_p"], r["id.resp_p"]) == (51000, 80)
    assert r["history"].startswith("^")
    assert r["resp_bytes"] == len(b"HTTP/1.1 200 OK\r\n\r\n")


def test_retransmissions_are_counted_logarithmically(replay):
    c, s = peers()
    frames = handshake(c, s)
    seg_seq = c.seq
    frames.append(c.send(ACK, b"z" * 10))
    for n in range(1, 101):
        frames.append(c.send(ACK, b"z" * 10, seq=seg_seq))
    frames.append(s.send(ACK))
    r = one(replay(timed(frames, step=0.001)))
    # 100 retransmissions: T at the 1st, 10th and 100th.
    assert r["history"].count("T") == 3
    assert r["orig_bytes"] == 10


def test_bytes_acknowledged_but_never_seen_are_missed(replay):
    c, s = peers()
    frames = handshake(c, s)
    frames.append(s.send(ACK, b"a" * 1000))
    s.seq += 2000                       # 2000 bytes the monitor never sees
    frames.append(s.send(ACK, b"b" * 500))
    frames.append(c.send(ACK))          # acknowledges all 3500
    frames += close(c, s)
    r = one(replay(timed(frames)))
    assert r["missed_bytes"] == 2000
    assert "g" in r["history"]
    assert r["resp_bytes"] == 3500      # sizes come from sequence numbers


def test_out_of_order_segments_are_not_gaps(replay):
    c, s = peers()
    frames = handshake(c, s)
    first = s.send(ACK, b"a" * 1000)
    second = s.send(ACK, b"b" * 1000)
    frames += [second, first, c.send(ACK)] + close(c, s)
    r = one(replay(timed(frames)))
    assert r["missed_bytes"] == 0 and "g" not in r["history"]
    assert r["resp_bytes"] == 2000


def test_sizes_beyond_4_GiB_survive_sequence_wraparound(replay):
    c, s = peers(isn_s=0xfffff000)
    frames = handshake(c, s)
    total = 0
    for _ in range(6):                  # 6 x 1 GB, crossing 2^32 more than once
        frames.append(s.send(ACK, b"d" * 1000))
        s.seq += 1_000_000_000 - 1000
        total += 1_000_000_000
        frames.append(c.send(ACK))
    frames += close(c, s)
    r = one(replay(timed(frames)))
    assert r["resp_bytes"] == total
    assert r["conn_state"] == "SF"


def test_udp_request_response_and_inactivity_timeout(replay):
    q = udp_packet("10.0.0.1", "10.0.0.53", 33333, 53, b"q" * 20)
    a = udp_packet("10.0.0.53", "10.0.0.1", 53, 33333, b"a" * 60)
    rows = replay([(10.0, q), (10.1, a), (200.0, q)])   # 60 s UDP timeout
    assert len(rows) == 2
    first = rows[0]
    assert (first["conn_state"], first["history"]) == ("SF", "Dd")
    assert (first["orig_bytes"], first["resp_bytes"]) == (20, 60)
    assert (first["orig_ip_bytes"], first["resp_ip_bytes"]) == (48, 88)
    assert rows[1]["conn_state"] == "S0" and rows[1]["duration"] is None


def test_udp_reply_seen_first_from_a_server_port_is_flipped(replay):
    a = udp_packet("10.0.0.53", "10.0.0.1", 53, 33333, b"a" * 60)
    r = one(replay([(10.0, a)]))
    assert (r["id.orig_h"], r["id.resp_p"]) == ("10.0.0.1", 53)
    assert (r["conn_state"], r["history"]) == ("SHR", "^d")


def test_timeouts_can_be_set(replay):
    q = udp_packet("10.0.0.1", "10.0.0.2", 1111, 2222, b"x")
    assert len(replay([(0.0, q), (30.0, q)])) == 1
    assert len(replay([(0.0, q), (30.0, q)], timeouts={"udp": 10})) == 2


def test_memory_budget_evicts_and_counts_without_losing_records(replay):
    frames = []
    for i in range(3000):
        frames.append((1.0 + i * 1e-3, udp_packet("10.0.0.1", "10.0.0.2", 1024 + i, 9999, b"x")))
    # A budget for about a thousand flows.
    from analyser.flows import FlowTable
    rows = replay(frames, flow_memory_mb=FlowTable.bytes_per_flow() * 1100 / 2**20)
    assert len(rows) == 3000
    assert replay.result.stats["evictions"] >= 1800
    assert len({r["uid"] for r in rows}) == 3000


def test_ipv6_connection(replay):
    c = TcpPeer("2001:db8::1", 40000, 1, v6=True)
    s = TcpPeer("2001:db8::2", 21, 2, v6=True)
    c.connect(s)
    frames = handshake(c, s) + [c.send(ACK, b"USER x\r\n"), s.send(ACK)] + close(c, s)
    r = one(replay(timed(frames)))
    assert (r["id.orig_h"], r["id.resp_h"], r["conn_state"]) == ("2001:db8::1", "2001:db8::2", "SF")
    assert r["orig_ip_bytes"] == 5 * 60 + 8


def test_checksum_verification_drops_and_marks_bad_segments(replay):
    good = tcp_packet("10.0.0.1", "10.0.0.2", 1234, 80, SYN, seq=1)
    bad = bytearray(good)
    bad[-1] ^= 0xff                                   # corrupt the TCP header
    bad = bytes(bad)
    r = one(replay([(1.0, bad)], ignore_checksums=False))
    assert (r["conn_state"], r["history"], r["orig_pkts"]) == ("OTH", "C", 0)
    r = one(replay([(1.0, bad)]))                     # default: not verified
    assert (r["conn_state"], r["orig_pkts"]) == ("S0", 1)


def test_more_conn_states_from_their_end_states(replay):
    # SYN then RST from the originator, nothing back: RSTOS0.
    c, s = peers()
    r = one(replay(timed([c.send(SYN), c.send(RST)])))
    assert (r["conn_state"], r["history"]) == ("RSTOS0", "SR")
    # SYN then FIN from the originator, nothing back: SH.
    c, s = peers()
    r = one(replay(timed([c.send(SYN), c.send(FIN | ACK)])))
    assert r["conn_state"] == "SH"
    # Midstream: both sides send data without any handshake seen: OTH.
    c, s = peers()
    r = one(replay(timed([c.send(ACK, b"a"), s.send(ACK, b"b")])))
    assert r["conn_state"] == "OTH"


def test_ipv4_addresses_are_written_as_inet_ntop_writes_them(replay, run_cli, tmp_path):
    """Every octet value, one to three digits, in both the rows made as dicts
    and the rows the flow table writes straight into conn.log."""
    import ipaddress
    from packets import write_pcap
    from conftest import read_zeek_log
    pairs = [("%d.%d.%d.%d" % (o, (o * 7) % 256, 255 - o, (o * 13) % 256),
              "%d.%d.%d.%d" % ((o * 3) % 256, o, (o * 11) % 256, 0)) for o in range(256)]
    frames = [udp_packet(src, dst, 40000, 9999, b"x") for src, dst in pairs]
    rows = replay(timed(frames))
    expected = {(str(ipaddress.ip_address(s)), str(ipaddress.ip_address(d))) for s, d in pairs}
    assert {(r["id.orig_h"], r["id.resp_h"]) for r in rows} == expected
    path = tmp_path / "octets.pcap"
    write_pcap(path, timed(frames))
    p = run_cli("replay", path, "--logs", tmp_path / "logs", "-q")
    assert p.returncode == 0, p.stderr
    written = read_zeek_log(tmp_path / "logs" / "conn.log")
    assert {(r["id.orig_h"], r["id.resp_h"]) for r in written} == expected
