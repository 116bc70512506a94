"""Protothread analysers on crafted segment sequences: blocking reads across
and within segments, a read on one side while the other piles up, reordering,
retransmissions, overlaps, gaps, end of stream, skipping in compiled code,
expectations and error isolation."""


from analyser import ORIG, RESP, Analyser, Gap, Signature, StreamEnd
from packets import ACK, FIN, RST, TcpPeer, close, handshake, timed


def peers(port=7000):
    c = TcpPeer("10.0.0.1", 40000, 1000)
    s = TcpPeer("10.0.0.2", port, 5000)
    c.connect(s)
    return c, s


class Recorder(Analyser):
    """Reads as the test's `script` says and records what it got."""
    name = "recorder"
    ports = {7000}
    script = []
    log = []

    def main(self):
        for op, *args in self.script:
            try:
                if op == "read":
                    self.log.append(("data", args[0], self.read(*args)))
                elif op == "line":
                    self.log.append(("line", args[0], self.read_line(*args)))
                elif op == "skip":
                    self.log.append(("kept", args[0], self.read_and_skip(*args)))
                elif op == "any":
                    side, data = self.read_any()
                    self.log.append(("any", side, data))
                elif op == "bulk":
                    self.bulk(*args)
            except Gap as g:
                self.log.append(("gap", g.side, g.size, g.data))
            except StreamEnd as e:
                self.log.append(("end", e.side, e.data))


def run(replay, frames, script, **kw):
    Recorder.script = script
    Recorder.log = []
    replay(timed(frames), analysers=[(Recorder, {})], **kw)
    return Recorder.log


def test_reads_split_across_many_segments_and_within_one(replay):
    c, s = peers()
    frames = handshake(c, s)
    frames += [c.send(ACK, b"ab"), c.send(ACK, b"cd"), c.send(ACK, b"efghij")]
    frames += [s.send(ACK)] + close(c, s)
    log = run(replay, frames, [("read", ORIG, 5), ("read", ORIG, 1), ("read", ORIG, 4),
                               ("read", ORIG, 1)])
    assert log == [("data", ORIG, b"abcde"), ("data", ORIG, b"f"), ("data", ORIG, b"ghij"),
                   ("end", ORIG, b"")]


def test_read_on_resp_blocks_while_orig_piles_up_and_stays_intact(replay):
    c, s = peers()
    frames = handshake(c, s)
    body = bytes(range(256)) * 40                      # 10 KB from the client first
    for i in range(0, len(body), 1000):
        frames.append(c.send(ACK, body[i:i + 1000]))
    frames.append(s.send(ACK, b"RESULT"))
    frames += close(c, s)
    result = {}

    class Blocked(Recorder):
        def main(self):
            result["resp"] = self.read(RESP, 6)              # blocks while ORIG piles up
            result["orig"] = self.read(ORIG, len(body))
            result["retained_while_blocked"] = result.get("retained")

    # Watch the ring while the analyser is blocked: the client's bytes are retained.
    seen = []
    from analyser.events import Monitor
    m = Monitor()
    m.on("new_data", lambda ev: seen.append(replay_engine_ring()))
    holder = {}

    def replay_engine_ring():
        return holder["engine"].ring.retained_records if "engine" in holder else None

    import analyser.replay as rp
    orig_engine = rp.Engine

    def capture(*a, **k):
        e = orig_engine(*a, **k)
        holder["engine"] = e
        return e
    rp.Engine = capture
    try:
        replay(timed(frames), analysers=[(Blocked, {})], monitor=m)
    finally:
        rp.Engine = orig_engine
    assert result["resp"] == b"RESULT"
    assert result["orig"] == body
    # While RESP was awaited, the ten ORIG segments were held in the ring.
    assert max(x for x in seen if x is not None) >= 10


def test_out_of_order_and_retransmitted_segments(replay):
    c, s = peers()
    frames = handshake(c, s)
    a = c.send(ACK, b"first-")
    b = c.send(ACK, b"second-")
    d = c.send(ACK, b"third")
    frames += [b, d, a, a, b]                           # reordered, then both again
    frames += [s.send(ACK)] + close(c, s)
    log = run(replay, frames, [("read", ORIG, 18)])
    assert log == [("data", ORIG, b"first-second-third")]


def test_overlap_with_equal_and_different_bytes(replay):
    from analyser.events import Monitor
    c, s = peers()
    frames = handshake(c, s)
    start = c.seq
    frames.append(c.send(ACK, b"GOOD-DATA"))            # arrives first, wins
    frames.append(c.send(ACK, b"GOOD", seq=start))      # same bytes again: no conflict
    frames.append(c.send(ACK, b"EVIL", seq=start))      # different bytes at the same place
    frames.append(c.send(ACK, b"!"))
    frames += [s.send(ACK)] + close(c, s)
    conflicts = []
    m = Monitor()
    m.on("overlap_differs", conflicts.append)
    Recorder.script = [("read", RESP, 1), ("read", ORIG, 10)]   # not reading yet keeps it buffered
    Recorder.log = []
    replay(timed(frames), analysers=[(Recorder, {})], monitor=m)
    assert Recorder.log[-1] == ("data", ORIG, b"GOOD-DATA!")
    assert len(conflicts) == 1 and conflicts[0].side == ORIG


def test_gap_raises_with_its_size_and_reading_resumes_after_it(replay):
    c, s = peers()
    frames = handshake(c, s)
    frames.append(c.send(ACK, b"head"))
    c.seq += 1000                                       # 1000 bytes never captured
    frames.append(c.send(ACK, b"tail"))
    frames.append(s.send(ACK))                          # acknowledges everything
    frames += close(c, s)
    log = run(replay, frames, [("read", ORIG, 10), ("read", ORIG, 4)])
    assert log == [("gap", ORIG, 1000, b"head"), ("data", ORIG, b"tail")]


def test_hole_inside_skipped_bytes_is_not_a_gap(replay):
    c, s = peers()
    frames = handshake(c, s)
    frames.append(c.send(ACK, b"HDR:" + b"x" * 96))
    c.seq += 5000                                        # lost, but inside the skipped body
    frames.append(c.send(ACK, b"y" * 100))
    frames.append(c.send(ACK, b"NEXT"))
    frames.append(s.send(ACK))
    frames += close(c, s)
    log = run(replay, frames, [("skip", ORIG, 5200, 4), ("read", ORIG, 4)])
    assert log == [("kept", ORIG, b"HDR:"), ("data", ORIG, b"NEXT")]


def test_end_of_stream_delivers_what_is_left(replay):
    c, s = peers()
    frames = handshake(c, s) + [c.send(ACK, b"abc"), s.send(ACK)] + close(c, s)
    log = run(replay, frames, [("read", ORIG, 10)])
    assert log == [("end", ORIG, b"abc")]


def test_reset_ends_the_stream(replay):
    c, s = peers()
    frames = handshake(c, s) + [c.send(ACK, b"ab"), s.send(RST | ACK)]
    log = run(replay, frames, [("read", RESP, 1)])
    assert log == [("end", RESP, b"")]


def test_read_line_and_read_any(replay):
    c, s = peers()
    frames = handshake(c, s)
    frames += [c.send(ACK, b"USER al"), c.send(ACK, b"ice\r\nPASS"), s.send(ACK, b"331 ok\r\n")]
    frames += close(c, s)
    log = run(replay, frames, [("line", ORIG, 100), ("any",), ("line", ORIG, 3)])
    assert log[0] == ("line", ORIG, b"USER alice\r\n")
    # Both sides have data waiting; the client's comes first.
    assert log[1] == ("any", ORIG, b"PASS")
    # A line longer than the limit comes back cut; here the stream has ended.
    assert log[2] == ("end", ORIG, b"")


def test_overlong_line_is_cut_at_the_limit(replay):
    c, s = peers()
    frames = handshake(c, s) + [c.send(ACK, b"x" * 50 + b"\nrest\n"), s.send(ACK)] + close(c, s)
    log = run(replay, frames, [("line", ORIG, 20), ("line", ORIG, 100), ("line", ORIG, 100)])
    assert log == [("line", ORIG, b"x" * 20), ("line", ORIG, b"x" * 30 + b"\n"),
                   ("line", ORIG, b"rest\n")]


def test_bulk_side_wakes_python_a_handful_of_times(replay):
    c, s = peers()
    frames = handshake(c, s) + [c.send(ACK, b"GET big\n")]
    for _ in range(500):
        frames.append(s.send(ACK, b"z" * 1400))
        frames.append(c.send(ACK))
    frames += close(c, s)
    Recorder.script = [("line", ORIG, 100), ("bulk", RESP), ("line", ORIG, 100)]
    Recorder.log = []
    replay(timed(frames), analysers=[(Recorder, {})])
    stats = replay.result.stats
    assert stats["analyser_wakeups"] <= 3
    assert stats["stream_skipped_bytes"] == 500 * 1400
    assert stats["ring"]["pinned_records"] == 0


def test_an_exception_ends_only_that_analyser(replay):
    events = []

    class Broken(Analyser):
        name = "broken"
        ports = {7000}

        def main(self):
            self.read(ORIG, 2)
            raise ValueError("bad input")

    c, s = peers()
    frames = handshake(c, s) + [c.send(ACK, b"hello")] + close(c, s)
    c2, s2 = TcpPeer("10.0.0.3", 40001, 1), TcpPeer("10.0.0.2", 7000, 2)
    c2.connect(s2)
    frames += handshake(c2, s2) + [c2.send(ACK, b"again")] + close(c2, s2)
    rows = replay(timed(frames), analysers=[(Broken, {})], on_event=events.append)
    errors = [e for e in events if e["event"] == "analyser_error"]
    assert len(errors) == 2
    assert errors[0]["error"] == "ValueError: bad input"
    assert "in main" in errors[0]["where"]
    assert replay.result.stats["analyser_errors"] == 2
    assert [r["conn_state"] for r in rows] == ["SF", "SF"]


def test_greenlets_are_reused_by_the_next_connections_whatever_ended_their_analyser(replay):
    """A greenlet whose analyser has returned, failed or been stopped at the
    end of its connection runs the next connection's analyser; every
    analyser still runs from its start, each with its own reads."""
    import greenlet
    got, workers, events = [], [], []            # the greenlets themselves: ids stay unique

    class Turns(Analyser):
        name = "turns"
        ports = {7000}

        def main(self):
            workers.append(greenlet.getcurrent())
            line = self.read_line(ORIG)
            got.append(line)
            if line.startswith(b"fail"):
                raise ValueError(line.decode().strip())
            if line.startswith(b"wait"):
                self.read(RESP, 10)            # the server never sends: ends at finish()

    frames = []
    for n in range(12):
        c, s = TcpPeer("10.0.1.%d" % (n + 1), 40000 + n, 1000), TcpPeer("10.0.0.2", 7000, 5000)
        c.connect(s)
        kind = ("ok", "fail", "wait")[n % 3]
        frames += handshake(c, s) + [c.send(ACK, b"%s %d\n" % (kind.encode(), n))]
        frames += close(c, s)
    rows = replay(timed(frames), analysers=[(Turns, {})], on_event=events.append)
    assert got == [b"%s %d\n" % (("ok", "fail", "wait")[n % 3].encode(), n) for n in range(12)]
    assert [e["error"] for e in events if e["event"] == "analyser_error"] == [
        "ValueError: fail %d" % n for n in range(1, 12, 3)]
    assert len(rows) == 12 and len({id(g) for g in workers}) < 12


def test_expected_connection_is_linked_and_counted_in_bulk(replay):
    ended = []

    class Control(Analyser):
        name = "control"
        ports = {7000}

        def main(self):
            line = self.read_line(RESP)
            port = int(line.split()[1])
            self.expect(self.id.resp_h, port, orig_h=self.id.orig_h, service="data",
                        file="x.bin")
            self.read_line(ORIG)

        def expected_ended(self, row, meta):
            ended.append((row, meta))

    events = []
    c, s = peers()
    frames = handshake(c, s) + [s.send(ACK, b"PORT 6000\n")]
    d_c, d_s = TcpPeer("10.0.0.1", 40002, 1), TcpPeer("10.0.0.2", 6000, 9)
    d_c.connect(d_s)
    frames += handshake(d_c, d_s)
    for _ in range(20):
        frames.append(d_s.send(ACK, b"q" * 1000))
    frames += close(d_c, d_s)
    frames += [c.send(ACK, b"DONE\n")] + close(c, s)
    rows = replay(timed(frames), analysers=[(Control, {})], on_event=events.append)
    data_row = next(r for r in rows if r["id.resp_p"] == 6000)
    control_row = next(r for r in rows if r["id.resp_p"] == 7000)
    assert data_row["service"] == "data"
    link = next(e for e in events if e["event"] == "expected_connection")
    assert link["parent_uid"] == control_row["uid"] and link["uid"] == data_row["uid"]
    assert link["file"] == "x.bin"
    assert len(ended) == 1 and ended[0][0]["resp_bytes"] == 20000
    assert ended[0][1]["file"] == "x.bin"


def test_a_signature_chooses_an_analyser_by_content_on_any_port(replay):
    got = []

    class Magic(Analyser):
        name = "magic"
        signatures = (Signature(ORIG, b"MAGI"),)

        def main(self):
            got.append(self.read(ORIG, 9))

    # The first payload is shorter than the pattern: what is there matches.
    c, s = peers(port=9999)
    frames = handshake(c, s) + [c.send(ACK, b"MA"), c.send(ACK, b"GIC-1234")] + close(c, s)
    # A flow whose first payload does not fit gets no analyser and no stream.
    c2, s2 = TcpPeer("10.0.0.5", 40000, 1), TcpPeer("10.0.0.2", 9999, 2)
    c2.connect(s2)
    other = handshake(c2, s2) + [c2.send(ACK, b"XMAGIC-1234")] + close(c2, s2)
    replay(timed(frames + other), analysers=[(Magic, {})])
    assert got == [b"MAGIC-123"]
    assert replay.result.stats["stream_pairs"] == 1
    assert replay.result.stats["detections"] == 1

    # Detection by ports only: the same trace finds nothing.
    got.clear()
    replay(timed(frames + other), analysers=[(Magic, {})], detect="ports")
    assert got == [] and replay.result.stats["stream_pairs"] == 0


def test_a_violation_hands_both_streams_from_their_start_to_the_next_candidate(replay):
    got = []

    class ByPort(Analyser):
        """Named by the port, but the bytes are not its protocol."""
        name = "byport"
        ports = {9999}

        def main(self):
            line = self.read_line(ORIG)
            if not line.startswith(b"LOGIN"):
                self.violation("no LOGIN", line)

    class Hello(Analyser):
        name = "hello"
        signatures = (Signature(ORIG, b"hello", nocase=True),)

        def main(self):
            got.append((self.read_line(ORIG), self.read_line(RESP), self.read_line(ORIG)))
            self.confirm()

    c, s = peers(port=9999)
    frames = handshake(c, s) + [c.send(ACK, b"HELLO there\r\nmore\r\n"),
                                s.send(ACK, b"WELCOME\r\n")] + close(c, s)
    events = []
    rows = replay(timed(frames), analysers=[(ByPort, {}), (Hello, {})], on_event=events.append)
    assert got == [(b"HELLO there\r\n", b"WELCOME\r\n", b"more\r\n")]
    violation, = [e for e in events if e["event"] == "analyzer_violation"]
    assert (violation["analyzer_name"], violation["reason"], violation["data"]) == (
        "BYPORT", "no LOGIN", "HELLO there\r\n")
    assert [e["analyser"] for e in events if e["event"] == "analyzer_confirmation"] == ["hello"]
    assert rows[0]["service"] == "hello"
    assert replay.result.stats["candidates_tried"] == 1


def test_a_candidate_that_skipped_bytes_cannot_be_followed(replay):
    class Skipper(Analyser):
        name = "skipper"
        ports = {9999}

        def main(self):
            self.read(ORIG, 1)
            self.skip(ORIG, 2)
            self.violation("gave up after skipping")

    class Next(Analyser):
        name = "next"
        signatures = (Signature(ORIG, b"abc"),)

        def main(self):
            raise AssertionError("must not run: the skipped bytes cannot be replayed")

    c, s = peers(port=9999)
    frames = handshake(c, s) + [c.send(ACK, b"abcdef")] + close(c, s)
    events = []
    replay(timed(frames), analysers=[(Skipper, {}), (Next, {})], on_event=events.append)
    assert [e["event"] for e in events] == ["analyzer_violation"]
    assert replay.result.stats["candidates_not_replayable"] == 1


class Waiter(Analyser):
    """Reads the responder first while the originator's bytes pile up."""
    name = "waiter"
    ports = {7000}
    got = {}

    def main(self):
        Waiter.got["resp"] = self.read(RESP, 2)
        try:
            Waiter.got["orig"] = self.read(ORIG, Waiter.size)
        except Gap as g:
            Waiter.got["gap"] = (g.size, len(g.data))


def piled_up_trace(size):
    c, s = peers()
    frames = handshake(c, s)
    body = bytes((i * 31) & 0xff for i in range(size))
    for i in range(0, size, 1400):
        frames.append(c.send(ACK, body[i:i + 1400]))
    frames += [s.send(ACK, b"OK")] + close(c, s)
    return timed(frames, step=1e-4), body


def test_ring_pressure_copies_retained_bytes_out_intact(replay):
    Waiter.size, Waiter.got = 300_000, {}
    frames, body = piled_up_trace(Waiter.size)
    # A 64 KiB ring cannot hold 300 KB of retained segments: they are copied out.
    replay(frames, analysers=[(Waiter, {})], ring_bytes=64 << 10, max_owned_bytes=1 << 20)
    assert Waiter.got["resp"] == b"OK" and Waiter.got["orig"] == body
    stats = replay.result.stats
    assert stats["ring"]["pressure_events"] > 0
    assert stats["ring_copied_out_bytes"] > 0 and stats["ring_given_up_bytes"] == 0


def test_ring_pressure_beyond_the_copy_budget_gives_up_as_a_gap(replay):
    Waiter.size, Waiter.got = 300_000, {}
    frames, body = piled_up_trace(Waiter.size)
    replay(frames, analysers=[(Waiter, {})], ring_bytes=64 << 10, max_owned_bytes=32 << 10)
    stats = replay.result.stats
    assert stats["ring_given_up_bytes"] > 0
    size, kept = Waiter.got["gap"]
    # What was given up is exactly what the analyser is told is missing.
    assert size + kept <= Waiter.size and size > 0


def test_side_buffer_limit_turns_excess_into_a_counted_gap(replay):
    Waiter.size, Waiter.got = 300_000, {}
    frames, body = piled_up_trace(Waiter.size)
    replay(frames, analysers=[(Waiter, {})], max_stream_bytes=100_000)
    stats = replay.result.stats
    assert stats["stream_overflow_bytes"] >= 200_000 - 1400
    size, kept = Waiter.got["gap"]
    assert kept <= 100_000 and kept + size <= Waiter.size


def test_release_frees_buffers_and_counting_goes_on(replay):
    class Releaser(Analyser):
        name = "releaser"
        ports = {7000}

        def main(self):
            self.read(ORIG, 4)
            self.release()
            self.read(ORIG, 1)          # nothing comes any more: end

    c, s = peers()
    frames = handshake(c, s) + [c.send(ACK, b"abcd" + b"x" * 5000)]
    for _ in range(10):
        frames.append(c.send(ACK, b"y" * 1400))
    frames += [s.send(ACK)] + close(c, s)
    rows = replay(timed(frames), analysers=[(Releaser, {})])
    stats = replay.result.stats
    assert rows[0]["orig_bytes"] == 5004 + 14000
    assert stats["stream_delivered_bytes"] == 4
    assert stats["ring"]["pinned_records"] == 0


def test_an_analyser_that_reads_on_after_the_end_is_stopped_not_hung(replay):
    events = []

    class Stubborn(Analyser):
        name = "stubborn"
        ports = {7000}

        def main(self):
            while True:
                try:
                    self.read(ORIG, 10)
                except StreamEnd:
                    continue            # wrong: the stream will never have more

    c, s = peers()
    frames = handshake(c, s) + [c.send(ACK, b"abc")] + close(c, s)
    rows = replay(timed(frames), analysers=[(Stubborn, {})], on_event=events.append)
    errors = [e for e in events if e["event"] == "analyser_error"]
    assert len(errors) == 1 and "after the end of the stream" in errors[0]["error"]
    assert rows[0]["conn_state"] == "SF"


def test_read_any_goes_on_with_the_side_that_has_not_ended(replay):
    got = []

    class Both(Analyser):
        name = "both"
        ports = {7000}

        def main(self):
            while True:
                got.append(self.read_any())

    c, s = peers()
    frames = handshake(c, s) + [c.send(ACK, b"q"), c.send(FIN | ACK), s.send(ACK, b"late"),
                                s.send(FIN | ACK), c.send(ACK)]
    replay(timed(frames), analysers=[(Both, {})])
    assert got == [(ORIG, b"q"), (RESP, b"late")]


def test_expectations_can_be_cancelled_or_match_any_port(replay):
    seen = []

    class Control(Analyser):
        name = "control"
        ports = {7000}

        def main(self):
            self.read_line(RESP)
            first = self.expect(self.id.resp_h, 6000, orig_h=self.id.orig_h, tag="cancelled")
            assert first.cancel() and not first.cancel()
            self.expect(self.id.resp_h, None, orig_h=self.id.orig_h, tag="any-port")
            self.read_line(ORIG)

        def expected_started(self, conn, meta):
            seen.append((conn.id.resp_p, meta["tag"]))

    c, s = peers()
    frames = handshake(c, s) + [s.send(ACK, b"go\n")]
    d_c, d_s = TcpPeer("10.0.0.1", 40002, 1), TcpPeer("10.0.0.2", 6000, 9)
    d_c.connect(d_s)
    frames += handshake(d_c, d_s) + close(d_c, d_s)
    frames += [c.send(ACK, b"done\n")] + close(c, s)
    events = []
    replay(timed(frames), analysers=[(Control, {})], on_event=events.append)
    assert seen == [(6000, "any-port")]
    assert not [e for e in events if e["event"] == "analyser_error"]


def test_read_lines_returns_every_complete_line_in_one_wakeup(replay):
    got = []

    class Lines(Analyser):
        name = "lines"
        ports = {7000}

        def main(self):
            while True:
                try:
                    got.append(self.read_lines(ORIG))
                except Gap as gap:
                    got.append(("gap", gap.size))
                except StreamEnd as end:
                    got.append(("end", end.data))
                    return

    c, s = peers()
    frames = handshake(c, s) + [c.send(ACK, b"one\r\ntwo\r\nthr"), c.send(ACK, b"ee\r\nfour\n")]
    hole = c.send(ACK, b"lost\n")                       # never captured
    frames += [c.send(ACK, b"after\ntail"), s.send(ACK)] + close(c, s)
    replay(timed(frames), analysers=[(Lines, {})])
    del hole
    assert got == [[b"one\r\n", b"two\r\n"], [b"three\r\n", b"four\n"], ("gap", 5),
                   [b"after\n"], ("end", b"tail")]
    # One wake-up per segment that completed lines, not one per line.
    assert replay.result.stats["analyser_wakeups"] <= 5


class LineEcho(Analyser):
    """A well-behaved analyser next to failing ones: keeps every line on 7200."""
    name = "echo"
    ports = {7200}
    got: list = []

    def main(self):
        while True:
            self.got.append(self.read_line(ORIG))


def test_a_runaway_analyser_is_stopped_and_the_others_go_on(replay):
    got = LineEcho.got = []

    class Spinner(Analyser):
        name = "spinner"
        ports = {7100}

        def main(self):
            self.read_line(ORIG)
            n = 0
            while True:                      # never reads again
                try:
                    n += 1
                except Exception:            # cannot swallow the time limit
                    pass

    c1, s1 = peers(port=7100)
    c2, s2 = TcpPeer("10.0.0.7", 41000, 1), TcpPeer("10.0.0.2", 7200, 2)
    c2.connect(s2)
    frames = handshake(c1, s1) + handshake(c2, s2) + [c1.send(ACK, b"spin\n"),
                                                      c2.send(ACK, b"one\n"),
                                                      c2.send(ACK, b"two\n")]
    frames += close(c1, s1) + close(c2, s2)
    events = []
    replay(timed(frames), analysers=[(Spinner, {}), (LineEcho, {})], on_event=events.append,
           analyser_time_limit=0.3)
    error, = [e for e in events if e["event"] == "analyser_error"]
    assert error["analyser"] == "spinner" and error["error"].startswith("AnalyserTimeout")
    assert got == [b"one\n", b"two\n"]


def test_analysers_that_recurse_forever_or_ask_for_4_gib_are_stopped_alone(replay):
    got = LineEcho.got = []

    class Recurser(Analyser):
        name = "recurser"
        ports = {7300}

        def deeper(self, n):
            return self.deeper(n + 1) + 1

        def main(self):
            self.read_line(ORIG)
            self.deeper(0)

    class Greedy(Analyser):
        name = "greedy"
        ports = {7400}

        def main(self):
            self.read(ORIG, 4 << 30)

    conns = [(peers(port=p)) for p in (7300, 7400)]
    c3, s3 = TcpPeer("10.0.0.7", 41000, 1), TcpPeer("10.0.0.2", 7200, 2)
    c3.connect(s3)
    frames = []
    for c, s in conns + [(c3, s3)]:
        frames += handshake(c, s)
    frames += [conns[0][0].send(ACK, b"go\n"), conns[1][0].send(ACK, b"x" * 100),
               c3.send(ACK, b"still here\n")]
    for c, s in conns + [(c3, s3)]:
        frames += close(c, s)
    events = []
    replay(timed(frames), analysers=[(Recurser, {}), (Greedy, {}), (LineEcho, {})],
           on_event=events.append)
    errors = {e["analyser"]: e["error"] for e in events if e["event"] == "analyser_error"}
    assert errors["recurser"].startswith("RecursionError")
    assert errors["greedy"].startswith("ValueError: read of 4294967296 bytes: at most")
    assert got == [b"still here\n"]


def test_a_greenlet_whose_analyser_returned_serves_the_next_connection_undisturbed(replay):
    """The greenlet of an analyser that returned while its connection lives
    on runs the next connection's analyser; that first connection's end must
    not stop it (it no longer belongs to the first)."""
    import greenlet
    runs = []

    class OneLine(Analyser):
        name = "oneline"
        ports = {7000}

        def main(self):
            runs.append([greenlet.getcurrent()])
            while True:
                line = self.read_line(ORIG)
                runs[-1].append(line)
                if line == b"first\n":
                    return              # the connection goes on without us

    c1, s1 = peers()
    c2, s2 = TcpPeer("10.0.0.3", 40001, 1), TcpPeer("10.0.0.2", 7000, 2)
    c2.connect(s2)
    frames = handshake(c1, s1) + [c1.send(ACK, b"first\n")]
    frames += handshake(c2, s2) + [c2.send(ACK, b"one\n")]
    frames += close(c1, s1)
    # The first connection ends (its linger passes) before the second goes on.
    later = [c2.send(ACK, b"two\n")] + close(c2, s2)
    replay(timed(frames) + timed(later, start=1010.0), analysers=[(OneLine, {})])
    (g1, *lines1), (g2, *lines2) = runs
    assert lines1 == [b"first\n"]
    assert lines2 == [b"one\n", b"two\n"]
    assert g2 is g1


def chatty_trace():
    """A client and a server taking turns, a few chunks each, with a gap."""
    c, s = peers()
    frames = handshake(c, s)
    frames += [c.send(ACK, b"one\n"), s.send(ACK, b"1 ok\n"), c.send(ACK, b"two"),
               c.send(ACK, b"\nthree\n"), s.send(ACK, b"2 ok\n3 ok\n")]
    c.seq += 100                                   # 100 bytes never captured
    frames += [c.send(ACK, b"four\n"), s.send(ACK, b"4 ok\n")] + close(c, s)
    return frames


class IntoRecorder(Analyser):
    """read_any_into() with a handler that records what it gets, and where it
    runs (the analyser's greenlet, or the engine's)."""
    name = "into"
    ports = {7000}
    log = []

    def main(self):
        import greenlet
        mine = greenlet.getcurrent()

        def handler(side, data):
            self.log.append(("chunk", side, data, greenlet.getcurrent() is mine))
            return data == b"stop\n"
        while True:
            try:
                self.read_any_into(handler)
            except Gap as g:
                self.log.append(("gap", g.side, g.size, g.data))
                continue
            except StreamEnd as e:
                self.log.append(("end", e.side, e.data))
                return
            self.log.append(("returned",))
            self.log.append(("line", ORIG, self.read_line(ORIG)))


def test_read_any_into_hands_over_what_read_any_would_without_switching(replay):
    frames = chatty_trace()
    log = run(replay, frames, [("any",)] * 12)
    IntoRecorder.log = []
    replay(timed(frames), analysers=[(IntoRecorder, {})])
    # The same chunks, sides, gap and end as a read_any() loop gets ...
    expected = [("chunk", e[1], e[2]) if e[0] == "any" else e for e in log]
    expected = expected[:expected.index(("end", ORIG, b"")) + 1]
    assert [e[:3] if e[0] == "chunk" else e for e in IntoRecorder.log] == expected
    assert ("gap", ORIG, 100, b"") in IntoRecorder.log
    # ... but each chunk that came while the analyser waited was given to the
    # handler by the engine, not by a switch into the greenlet (after the gap,
    # the chunk already there is handed over in the greenlet, at once).
    before_gap = IntoRecorder.log[:IntoRecorder.log.index(("gap", ORIG, 100, b""))]
    assert len(before_gap) == 5 and not any(e[3] for e in before_gap)
    assert ("chunk", ORIG, b"four\n", True) in IntoRecorder.log


def test_read_any_into_returns_when_the_handler_says_so(replay):
    c, s = peers()
    frames = handshake(c, s) + [c.send(ACK, b"stop\n"), c.send(ACK, b"after\n"),
                                s.send(ACK, b"x\n")] + close(c, s)
    IntoRecorder.log = []
    replay(timed(frames), analysers=[(IntoRecorder, {})])
    assert IntoRecorder.log[:3] == [("chunk", ORIG, b"stop\n", False), ("returned",),
                                    ("line", ORIG, b"after\n")]


def test_what_a_read_any_into_handler_raises_is_raised_in_main(replay):
    events = []

    class Strict(Analyser):
        name = "strict"
        ports = {7000}

        def main(self):
            def handler(side, data):
                if data.startswith(b"bad"):
                    raise ValueError("bad chunk")
                if data.startswith(b"read"):
                    self.read(ORIG, 1)               # a handler cannot read
            self.read_any_into(handler)

    frames = []
    for port, first in ((40000, b"bad\n"), (40001, b"read\n")):
        c, s = TcpPeer("10.0.0.1", port, 1000), TcpPeer("10.0.0.2", 7000, 5000)
        c.connect(s)
        frames += handshake(c, s) + [s.send(ACK, b"hi\n"), c.send(ACK, first)] + close(c, s)
    replay(timed(frames), analysers=[(Strict, {})], on_event=events.append)
    errors = [e for e in events if e["event"] == "analyser_error"]
    assert [e["error"] for e in errors] == [
        "ValueError: bad chunk", "RuntimeError: analyser reads must happen inside main()"]
    assert "in handler" in errors[0]["where"]
    assert replay.result.stats["analyser_errors"] == 2


def test_a_violation_in_a_read_any_into_handler_hands_the_streams_on(replay):
    import greenlet
    got, where = [], []

    class Picky(Analyser):
        name = "picky"
        ports = {9999}

        def main(self):
            def handler(side, data):
                where.append(greenlet.getcurrent() is mine)
                if side == ORIG and not data.startswith(b"LOGIN"):
                    self.violation("no LOGIN", data)
            mine = greenlet.getcurrent()
            self.read_any_into(handler)

    class Hello(Analyser):
        name = "hello"
        signatures = (Signature(ORIG, b"hello", nocase=True),)

        def main(self):
            got.append((self.read_line(ORIG), self.read_line(RESP)))
            self.confirm()

    c, s = peers(port=9999)
    # The server speaks first: the client's line reaches the handler in the
    # engine, and the violation it raises there ends the analyser in main().
    frames = handshake(c, s) + [s.send(ACK, b"WELCOME\r\n"), c.send(ACK, b"HELLO there\r\n")]
    frames += close(c, s)
    events = []
    rows = replay(timed(frames), analysers=[(Picky, {}), (Hello, {})], on_event=events.append)
    assert got == [(b"HELLO there\r\n", b"WELCOME\r\n")]
    assert len(where) == 2 and where[-1] is False      # the HELLO chunk: in the engine
    assert [e["reason"] for e in events if e["event"] == "analyzer_violation"] == ["no LOGIN"]
    assert rows[0]["service"] == "hello"
