"""MetricBatcher: order, batch size, retries with backoff, errors on flush, nothing lost, close()."""

from __future__ import annotations

import threading
import time

import pytest

from heimdall_cli.errors import BackendUnavailable
from heimdall_cli.tracking.batcher import MAX_BATCH, MetricBatcher, Point


class Backend:
    """A fake send function: records batches, can be switched down or slowed."""

    def __init__(self, fail_times: int = 0, delay: float = 0.0) -> None:
        self.batches: list[list[Point]] = []
        self.attempts: list[float] = []
        self.fail_times = fail_times
        self.down = False
        self.delay = delay
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, points: list[Point]) -> None:
        self.attempts.append(time.monotonic())
        self.gate.wait()
        time.sleep(self.delay)
        if self.down or self.fail_times > 0:
            self.fail_times -= 1
            raise ConnectionError("backend down")
        self.batches.append(list(points))

    @property
    def delivered(self) -> list[Point]:
        return [p for batch in self.batches for p in batch]


def points(n: int, start: int = 0, key: str = "m") -> list[Point]:
    return [Point(key, float(i), 1_700_000_000_000 + i, i) for i in range(start, start + n)]


@pytest.fixture
def make():
    made: list[MetricBatcher] = []

    def factory(backend: Backend, **kwargs) -> MetricBatcher:
        batcher = MetricBatcher(backend, **{"interval": 60.0, "retries": 2, "backoff": 0.01, **kwargs})
        made.append(batcher)
        return batcher

    yield factory
    for batcher in made:
        batcher.stop()


def test_points_arrive_in_order_in_batches_of_at_most_1000(make):
    backend = Backend()
    batcher = make(backend)
    batcher.add(points(2500))
    for i in range(2500, 2600):  # and one at a time
        batcher.add(points(1, start=i))
    batcher.flush(timeout=10)
    assert backend.delivered == points(2600)
    assert max(len(b) for b in backend.batches) == MAX_BATCH
    assert all(len(b) <= MAX_BATCH for b in backend.batches)
    assert batcher.pending == 0 and batcher.sent == 2600


def test_without_flush_points_are_sent_after_the_interval(make):
    backend = Backend()
    batcher = make(backend, interval=0.1)
    batcher.add(points(5))
    deadline = time.monotonic() + 30  # a bound against a hang, not a timing target
    while batcher.pending and time.monotonic() < deadline:
        time.sleep(0.02)
    assert backend.delivered == points(5)


def test_a_full_batch_is_sent_without_waiting_for_the_interval(make):
    backend = Backend()
    batcher = make(backend, interval=60.0)
    batcher.add(points(MAX_BATCH))
    deadline = time.monotonic() + 30  # a bound against a hang, not a timing target
    while not backend.batches and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(backend.batches) == 1 and len(backend.batches[0]) == MAX_BATCH


def test_flush_sends_at_once(make):
    # An hour's interval: a flush that waited for it would raise TimeoutError after 30 s. No wall-time bound
    # below that (how long a flush takes is bench/bench_batcher.py's number).
    backend = Backend()
    batcher = make(backend, interval=3600.0)
    for round_ in range(3):
        batcher.add(points(3, start=3 * round_))
        batcher.flush(timeout=30)
        assert backend.delivered == points(3 * (round_ + 1))
    assert [len(b) for b in backend.batches] == [3, 3, 3]  # one send per flush, none held back


def test_add_never_waits_for_a_slow_backend(make):
    """add() returns while a send is stuck in the backend (no wall-time bound: that is bench/bench_batcher.py)."""
    backend = Backend()
    backend.gate.clear()  # every send blocks until the gate opens
    batcher = make(backend, interval=0.01)
    batcher.add(points(1))
    deadline = time.monotonic() + 60
    while not backend.attempts:  # the worker is now inside the backend call, blocked
        assert time.monotonic() < deadline, "the worker never tried to send"
        time.sleep(0.01)
    added = threading.Event()

    def add_more() -> None:
        for i in range(1, 2001):
            batcher.add(points(1, start=i))
        added.set()

    adder = threading.Thread(target=add_more, daemon=True)
    adder.start()
    finished = added.wait(timeout=30)  # a hang means add() waits for the blocked send
    still_blocked, queued = not backend.batches, batcher.pending
    backend.gate.set()
    adder.join(timeout=60)
    assert finished and still_blocked, "add() waited for the backend"
    assert queued == 2001  # all queued (one in flight), none sent: the backend was still stuck
    batcher.flush(timeout=60)
    assert backend.delivered == points(2001)


def test_transient_failures_are_retried_with_backoff(make):
    backend = Backend(fail_times=3)
    batcher = make(backend, retries=3, backoff=0.05)
    batcher.add(points(10))
    batcher.flush(timeout=10)  # no error: the 4th attempt succeeds
    assert backend.delivered == points(10)
    gaps = [b - a for a, b in zip(backend.attempts, backend.attempts[1:], strict=False)]
    assert len(gaps) == 3
    assert gaps[0] >= 0.04 and gaps[1] >= 0.09 and gaps[2] >= 0.19  # 0.05, 0.1, 0.2: doubling


def test_error_surfaces_on_flush_and_nothing_is_lost(make):
    backend = Backend()
    batcher = make(backend, retries=1)
    batcher.add(points(5))
    batcher.flush(timeout=10)
    backend.down = True
    batcher.add(points(1500, start=5))
    with pytest.raises(ConnectionError, match="backend down"):
        batcher.flush(timeout=10)
    assert batcher.pending == 1500  # still queued, in order
    batcher.add(points(5, start=1505))  # logging goes on during the outage
    backend.down = False
    batcher.flush(timeout=10)
    assert backend.delivered == points(1510)  # every point exactly once, in order
    assert batcher.pending == 0


def test_queued_points_reach_a_recovered_backend_without_a_flush(make):
    backend = Backend()
    backend.down = True
    batcher = make(backend, interval=0.05, retries=0)
    batcher.add(points(20))
    deadline = time.monotonic() + 30  # a bound against a hang, not a timing target
    while len(backend.attempts) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(backend.attempts) >= 2  # the worker keeps trying on its own
    backend.down = False
    deadline = time.monotonic() + 10
    while batcher.pending and time.monotonic() < deadline:
        time.sleep(0.02)
    assert backend.delivered == points(20)


def test_flush_timeout_while_the_backend_hangs(make):
    backend = Backend()
    backend.gate.clear()  # every send blocks
    batcher = make(backend)
    batcher.add(points(3))
    with pytest.raises(TimeoutError, match="3 metric points"):
        batcher.flush(timeout=0.2)
    backend.gate.set()
    batcher.flush(timeout=10)
    assert backend.delivered == points(3)


def test_close_flushes_then_stops(make):
    backend = Backend()
    batcher = make(backend)
    batcher.add(points(7))
    batcher.close(timeout=10)
    assert backend.delivered == points(7)
    assert not batcher._thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.add(points(1))


def test_close_raises_when_points_cannot_be_delivered_but_still_stops(make):
    backend = Backend()
    backend.down = True
    batcher = make(backend, retries=0)
    batcher.add(points(2))
    with pytest.raises(ConnectionError):
        batcher.close(timeout=10)
    assert not batcher._thread.is_alive()


@pytest.mark.integration
@pytest.mark.slow
def test_tracker_keeps_metrics_across_a_tracking_server_outage(make_mlflow_server, monkeypatch):
    """A real outage: points logged while the server is down reach it after a restart."""
    from heimdall_cli.settings import load_settings
    from heimdall_cli.tracking import open_tracker

    server = make_mlflow_server()
    monkeypatch.setenv("HEIMDALL_TRACKING__URI", server.url)
    monkeypatch.setenv("HEIMDALL_TRACKING__EXPERIMENT", "outage")
    tracker = open_tracker(load_settings())
    run_id = tracker.start_run("outage")
    tracker.log_metrics({"train/loss": 0.0}, step=0)
    tracker.flush()
    server.kill()
    for step in range(1, 51):
        tracker.log_metrics({"train/loss": float(step)}, step=step)
    with pytest.raises(BackendUnavailable):
        tracker.flush(timeout=3)
    assert tracker.pending_metrics == 50
    server.start()
    tracker.flush(timeout=60)
    tracker.end_run()
    history = tracker.metric_history("train/loss", run_id=run_id)
    assert [(s, v) for s, v, _ in history] == [(s, float(s)) for s in range(51)]
