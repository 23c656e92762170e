"""Background batching of metric points, so per-step logging never waits on the network.

``add()`` only appends to an in-memory queue. One worker thread sends the queue
with ``MlflowClient.log_batch`` (at most 1000 metrics per request, MLflow's limit)
every ``interval`` seconds, or sooner when a full batch is waiting. Points keep
their original step and timestamp and are sent in the order they were logged.
A failed send is retried with backoff; ``flush()`` waits for the queue to drain
and raises the last error if points could not be delivered.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

MAX_BATCH = 1000  # MLflow's limit of metrics per log_batch request


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

    def __init__(self, send: SendFn, interval: float = 1.0, retries: int = 5, backoff: float = 0.5) -> None:
        self._send = send
        self._interval = interval
        self._retries = retries
        self._backoff = backoff
        self._queue: deque[Point] = deque()
        self._cond = threading.Condition()
        self._in_flight = 0
        self._error: BaseException | None = None
        self._closed = False
        self.sent = 0
        self._thread = threading.Thread(target=self._run, name="heimdall-metrics", daemon=True)
        self._thread.start()

    def add(self, points: list[Point]) -> None:
        """Queue points; returns at once."""
        with self._cond:
            if self._closed:
                raise RuntimeError("metric batcher is closed")
            self._queue.extend(points)
            if len(self._queue) >= MAX_BATCH:
                self._cond.notify_all()

    @property
    def pending(self) -> int:
        """Points not yet acknowledged by the backend."""
        with self._cond:
            return len(self._queue) + self._in_flight

    def flush(self, timeout: float | None = None) -> None:
        """Send everything queued so far; raise if the backend kept failing."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._cond.notify_all()
            while (self._queue or self._in_flight) and self._error is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"{len(self._queue) + self._in_flight} metric points still unsent")
                self._cond.wait(timeout=remaining)
            error, self._error = self._error, None
        if error is not None:
            raise error

    def close(self, timeout: float | None = None) -> None:
        """Flush, then stop the worker thread."""
        try:
            self.flush(timeout)
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            self._thread.join(timeout=5)

    def _take(self) -> list[Point]:
        with self._cond:
            while not self._closed:
                if len(self._queue) >= MAX_BATCH:
                    break
                if self._queue and self._error is None:
                    # Wait for the interval to gather a batch, unless a flush asks for it now.
                    self._cond.wait(timeout=self._interval)
                    break
                self._cond.wait(timeout=self._interval)
            n = min(MAX_BATCH, len(self._queue))
            batch = [self._queue.popleft() for _ in range(n)]
            self._in_flight = n
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                with self._cond:
                    self._in_flight = 0
                    self._cond.notify_all()
                    if self._closed:
                        return
                continue
            error = self._deliver(batch)
            with self._cond:
                self._in_flight = 0
                if error is None:
                    self.sent += len(batch)
                else:
                    # Keep the points (in order) so nothing already logged is lost.
                    self._queue.extendleft(reversed(batch))
                    self._error = error
                self._cond.notify_all()
                if error is not None:
                    # Let flush() see the error before trying again.
                    self._cond.wait(timeout=self._interval)

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
