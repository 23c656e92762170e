"""Background batching of metric points, so per-step logging never waits on the network.

``add()`` only appends to an in-memory queue. One worker thread sends the queue
with ``MlflowClient.log_batch`` (at most 1000 metrics per request, MLflow's limit)
every ``interval`` seconds, or sooner when a full batch is waiting. Points keep
their original step and timestamp and are sent in the order they were logged.
A failed send is retried with backoff; ``flush()`` sends at once, waits for the
queue to drain and raises the error if a delivery failed meanwhile. Points that
could not be delivered stay queued, in order, and the worker keeps trying (with
growing pauses), so they reach the backend once it is back.

Memory stays bounded during a long outage: past ``max_memory_points`` queued points,
newer points go to a spill file (JSON lines) and are read back, in order, as the
in-memory queue drains.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import astuple, dataclass
from pathlib import Path

MAX_BATCH = 1000  # MLflow's limit of metrics per log_batch request
_log = logging.getLogger("heimdall")


@dataclass(frozen=True)
class Point:
    """One metric value at a step, with the wall-clock time it was logged."""

    key: str
    value: float
    timestamp_ms: int
    step: int


SendFn = Callable[[list[Point]], None]


class MetricBatcher:
    """Queue metric points and send them from one background thread."""

    def __init__(self, send: SendFn, interval: float = 1.0, retries: int = 5, backoff: float = 0.5,
                 max_memory_points: int = 200_000, spill_dir: Path | None = None) -> None:
        self._send = send
        self._max_memory = max(MAX_BATCH, max_memory_points)
        self._spill = _Spill(spill_dir) if spill_dir is not None else None
        self._interval = interval
        self._retries = retries
        self._backoff = backoff
        self._queue: deque[Point] = deque()
        self._cond = threading.Condition()
        self._in_flight = 0
        self._error: BaseException | None = None
        self._failures = 0  # failed deliveries since the last success (each after all retries)
        self._flushing = 0  # flush() calls waiting: send now instead of gathering a batch
        self._closed = False
        self.sent = 0
        self._thread = threading.Thread(target=self._run, name="heimdall-metrics", daemon=True)
        self._thread.start()

    def add(self, points: list[Point]) -> None:
        """Queue points; returns at once."""
        with self._cond:
            if self._closed:
                raise RuntimeError("metric batcher is closed")
            if self._spill is not None and (self._spill.count or len(self._queue) + len(points) > self._max_memory):
                self._spill.write(points)  # keep order: once spilling, newer points follow the spilled ones
            else:
                self._queue.extend(points)
            if len(self._queue) >= MAX_BATCH:
                self._cond.notify_all()

    @property
    def pending(self) -> int:
        """Points not yet acknowledged by the backend."""
        with self._cond:
            return len(self._queue) + self._in_flight + (self._spill.count if self._spill else 0)

    @property
    def spilled(self) -> int:
        """Points currently waiting on disk."""
        with self._cond:
            return self._spill.count if self._spill else 0

    def _refill(self) -> None:
        """Move spilled points back into memory as room frees up (caller holds the lock)."""
        if self._spill is not None and self._spill.count and len(self._queue) < self._max_memory // 2:
            self._queue.extend(self._spill.read(self._max_memory // 2))

    def flush(self, timeout: float | None = None) -> None:
        """Send everything queued so far now; raise if a delivery failed while waiting.

        After an error the points are still queued (see :attr:`pending`); a later
        ``flush()`` tries again.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            failures = self._failures
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._queue or self._in_flight or (self._spill and self._spill.count):
                    if self._failures > failures and self._error is not None:
                        raise self._error
                    if self._closed:
                        raise RuntimeError(f"metric batcher is closed; {self.pending} points unsent")
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError(f"{len(self._queue) + self._in_flight} metric points still unsent")
                    self._cond.wait(timeout=remaining)
            finally:
                self._flushing -= 1

    def close(self, timeout: float | None = None) -> None:
        """Flush, then stop the worker thread (also when the flush raises)."""
        try:
            self.flush(timeout)
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop the worker thread without sending what is still queued."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        if self._spill is not None:
            self._spill.close()

    def _pause(self) -> float:
        """Seconds to gather a batch; after failed deliveries, a growing pause before the next try."""
        if not self._failures:
            return self._interval
        return min(self._interval * 2**self._failures, 60.0)

    def _take(self) -> list[Point] | None:
        """The next batch to send, or None when closed."""
        with self._cond:
            deadline = time.monotonic() + self._pause()
            while not self._closed:
                self._refill()
                now = time.monotonic()
                full = len(self._queue) >= MAX_BATCH and not self._failures
                if self._queue and (self._flushing or full or now >= deadline):
                    n = min(MAX_BATCH, len(self._queue))
                    batch = [self._queue.popleft() for _ in range(n)]
                    self._in_flight = n
                    return batch
                if now >= deadline:
                    deadline = now + self._interval
                self._cond.wait(timeout=deadline - now)
            return None

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            error = self._deliver(batch)
            with self._cond:
                self._in_flight = 0
                if error is None:
                    self.sent += len(batch)
                    self._failures, self._error = 0, None
                else:
                    # Keep the points (in order) so nothing already logged is lost.
                    self._queue.extendleft(reversed(batch))
                    self._failures += 1
                    self._error = error
                self._cond.notify_all()

    def _deliver(self, batch: list[Point]) -> BaseException | None:
        delay = self._backoff
        for attempt in range(self._retries + 1):
            try:
                self._send(batch)
                return None
            except Exception as e:
                if attempt == self._retries:
                    return e
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
        return None  # pragma: no cover


class _Spill:
    """An append-only JSON-lines file of points, read back in order."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path: Path | None = None
        self.count = 0
        self._offset = 0

    def write(self, points: list[Point]) -> None:
        if self.path is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.path = self.folder / f"metrics-{time.time_ns()}.jsonl"
        with self.path.open("a", encoding="utf-8") as f:
            f.writelines(json.dumps(astuple(p)) + "\n" for p in points)
        self.count += len(points)

    def read(self, limit: int) -> list[Point]:
        if self.path is None or not self.count:
            return []
        out: list[Point] = []
        with self.path.open("r", encoding="utf-8") as f:
            f.seek(self._offset)
            while len(out) < limit:
                line = f.readline()
                if not line:
                    break
                out.append(Point(*json.loads(line)))
            self._offset = f.tell()
        self.count -= len(out)
        if not self.count:
            self.close()
        return out

    def close(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
        self.path, self.count, self._offset = None, 0, 0
