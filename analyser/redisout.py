"""Log records and events to Redis streams, for many sensors and one collector.

Role in the data flow: sinks.  Every row a log gets (conn, ftp, transfers,
analyzer, an analyser's own) and every event is also added to a Redis
stream: `analyser:<log>` (for example `analyser:conn`), `analyser:events`,
each entry with the fields `sensor` (`--sensor`, default the host name) and
`record` (the row as JSON, Zeek's field names, unset fields left out; an
event as the events file writes it).

The engine never waits for Redis:

1. `put()` hands a record to a bounded queue and returns; when the queue is
   full (Redis slow or gone), the record is counted as dropped.
2. A thread takes up to BATCH records at a time and sends them in one
   pipeline of XADDs, each stream capped at `maxlen` entries (approximate
   trimming, as Redis recommends).
3. When Redis cannot be reached, the batch is counted as dropped and the
   thread retries after RETRY_SECONDS; sending resumes when Redis is back.
4. `close()` sends what is queued (for at most CLOSE_SECONDS) and reports
   sent and dropped records; the log files are written as always, whatever
   Redis does.
"""
from __future__ import annotations

import json
import queue
import socket
import threading
import time

QUEUE_RECORDS = 100_000     # records waiting for Redis before new ones are dropped
BATCH = 500                 # XADDs per pipeline
RETRY_SECONDS = 0.5         # after a failed send
CLOSE_SECONDS = 5.0         # at most this long to send what is queued at the end
DEFAULT_MAXLEN = 1_000_000  # entries kept per stream (approximately)
STREAM_PREFIX = "analyser:"


def _plain(value):
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


class RedisSink:
    """Sends records to Redis streams from a thread of its own."""

    def __init__(self, url: str, sensor: str | None = None, maxlen: int = DEFAULT_MAXLEN):
        import redis                                  # only when --redis is asked for
        self.url = url
        self.sensor = sensor or socket.gethostname()
        self.maxlen = maxlen
        try:
            self.client = redis.Redis.from_url(url, socket_timeout=2,
                                               socket_connect_timeout=2)
        except ValueError as exc:
            raise ValueError("bad --redis URL %r: %s" % (url, exc)) from None
        self.errors = (redis.RedisError, OSError)
        self.queue: queue.Queue = queue.Queue(maxsize=QUEUE_RECORDS)
        self.sent = 0
        self.dropped = 0
        self.failures = 0            # sends that failed (Redis gone or refusing)
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="redis-sender", daemon=True)
        self._thread.start()

    # -- the engine's side ----------------------------------------------------------

    def put(self, stream: str, record: dict) -> None:
        """Queue one record (a log row or an event); never blocks."""
        try:
            self.queue.put_nowait((stream, record))
        except queue.Full:
            self.dropped += 1

    def log(self, path: str, row: dict) -> None:
        self.put(path, row)

    def event(self, record: dict) -> None:
        self.put("events", record)

    def close(self) -> dict:
        """Send what is queued (bounded in time), stop; returns the figures."""
        deadline = time.monotonic() + CLOSE_SECONDS
        while not self.queue.empty() and time.monotonic() < deadline and \
                self._thread.is_alive():
            time.sleep(0.01)
        self._stop.set()
        self._thread.join(timeout=CLOSE_SECONDS)
        while True:                                   # what could not be sent in time
            try:
                self.queue.get_nowait()
                self.dropped += 1
            except queue.Empty:
                break
        return self.stats()

    def stats(self) -> dict:
        return {"redis_sent": self.sent, "redis_dropped": self.dropped,
                "redis_failures": self.failures}

    # -- the sender thread -------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set() or not self.queue.empty():
            batch = []
            try:
                batch.append(self.queue.get(timeout=0.1))
            except queue.Empty:
                continue
            while len(batch) < BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            self._send(batch)

    def _send(self, batch: list) -> None:
        try:
            pipe = self.client.pipeline(transaction=False)
            for stream, record in batch:
                if stream != "events":          # a log row: unset fields left out
                    record = {k: v for k, v in record.items() if v is not None}
                body = json.dumps(record, separators=(",", ":"), default=_plain)
                pipe.xadd(STREAM_PREFIX + stream, {"sensor": self.sensor, "record": body},
                          maxlen=self.maxlen, approximate=True)
            pipe.execute()
            self.sent += len(batch)
        except self.errors as exc:
            self.dropped += len(batch)
            self.failures += 1
            self.last_error = str(exc)
            if not self._stop.is_set():
                self._stop.wait(RETRY_SECONDS)
