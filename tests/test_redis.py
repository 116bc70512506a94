"""--redis: every log row and event also goes to Redis streams, read back
from a real redis-server (Debian's package) on 127.0.0.1; when the server
goes away in the middle, the run finishes, says how many records it could
not send, and its log files lose nothing."""
from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest

from conftest import REPO, read_zeek_log
from test_metrics import paced_ftp_trace

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="Debian's redis-server is not installed (make install does)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_server(tmp_path):
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert proc.poll() is None and time.monotonic() < deadline, "no redis-server"
            time.sleep(0.1)
    yield port, client, proc
    proc.kill()
    proc.wait()


def stream(client, name):
    return [(fields[b"sensor"].decode(), json.loads(fields[b"record"]))
            for _, fields in client.xrange("analyser:" + name)]


def zeek_rows(path):
    """TSV rows as the JSON records carry them: unset fields left out."""
    return [{k: v for k, v in r.items() if v != "-"} for r in read_zeek_log(path)]


def as_text(record):
    out = {}
    for k, v in record.items():
        if isinstance(v, bool):
            out[k] = "T" if v else "F"
        elif isinstance(v, float):
            out[k] = "%.6f" % v
        elif isinstance(v, list):
            out[k] = ",".join(v) if v else "(empty)"
        else:
            out[k] = str(v)
    return out


def test_redis_streams_hold_exactly_the_records_of_the_logs(run_cli, tmp_path, redis_server):
    port, client, _ = redis_server
    out = tmp_path / "logs"
    p = run_cli("replay", REPO / "traces" / "ftp-loopback.pcap", "--logs", out,
                "--events", out / "events.json", "--redis", "redis://127.0.0.1:%d/0" % port,
                "--sensor", "tap-7")
    assert p.returncode == 0, p.stderr
    for name in ("conn", "ftp", "transfers"):
        records = stream(client, name)
        assert records and {sensor for sensor, _ in records} == {"tap-7"}
        assert sorted(json.dumps(as_text(r), sort_keys=True) for _, r in records) == \
            sorted(json.dumps(r, sort_keys=True) for r in zeek_rows(out / ("%s.log" % name)))
    events = [json.loads(l) for l in (out / "events.json").read_text().splitlines()]
    assert [r for _, r in stream(client, "events")] == events
    sent = sum(client.xlen("analyser:" + n) for n in ("conn", "ftp", "transfers", "events"))
    assert re.search(r"redis\s+%s records sent, 0 dropped" % format(sent, ","), p.stderr)


def test_redis_going_away_loses_nothing_from_the_logs(tmp_path, redis_server):
    port, client, proc = redis_server
    trace = paced_ftp_trace(tmp_path / "ftp.pcap", transfers=8, gap=0.4)
    out = tmp_path / "logs"
    run = subprocess.Popen(
        [sys.executable, "-m", "analyser", "replay", trace, "--logs", out, "--speed", "1",
         "--redis", "redis://127.0.0.1:%d/0" % port],
        cwd=REPO, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while client.xlen("analyser:events") < 6:             # Redis got some records ...
        assert time.monotonic() < deadline, "nothing reached Redis"
        time.sleep(0.05)
    proc.kill()                                          # ... then goes away
    proc.wait()
    _, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert "Traceback" not in err
    sent, dropped = (int(x.replace(",", "")) for x in re.search(
        r"redis\s+([\d,]+) records sent, ([\d,]+) dropped", err).groups())
    assert sent > 0 and dropped > 0, err[-700:]
    # The log files are complete all the same: every transfer, every connection.
    transfers = read_zeek_log(out / "transfers.log")
    assert len(transfers) == 8 and all(t["reply_code"] == "226" for t in transfers)
    assert len(read_zeek_log(out / "conn.log")) == 9
