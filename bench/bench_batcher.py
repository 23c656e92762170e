"""The latencies the batcher and system-metrics tests used to assert as wall time, measured and printed.

The tests (tests/tracking/test_batcher.py, tests/training/test_monitoring.py) now check only
behaviour: add() returns while a send is stuck, flush() does not wait for the interval, the
sampler samples on its own. How fast each of those is depends on the machine's load, so the
numbers live here, with the bounds the tests used to hold (a number over it is reported,
not raised):

* ``add()`` per point while the backend is blocked in a send (was: 2,000 adds < 0.5 s);
* ``flush()`` of 3 points with a 60 s interval (was: < 1 s);
* the SystemSampler's time between samples at a 0.1 s interval (was: >= 2 samples in 0.35 s),
  and the time to its first sample.

Run: ``.venv/bin/python bench/bench_batcher.py [--quick] [--reps N]``
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time

import _common as c

from heimdall_cli.tracking.batcher import MetricBatcher, Point
from heimdall_cli.tracking.system_metrics import SystemSampler


def points(n: int, start: int = 0) -> list[Point]:
    return [Point("m", float(i), 1_700_000_000_000 + i, i) for i in range(start, start + n)]


def add_while_blocked(n: int = 2000) -> float:
    """Seconds for ``n`` single-point add() calls while the worker is stuck inside a send."""
    gate, entered = threading.Event(), threading.Event()

    def send(batch: list[Point]) -> None:
        entered.set()
        gate.wait()

    batcher = MetricBatcher(send, interval=0.01, retries=0)
    try:
        batcher.add(points(1))
        entered.wait(30)
        start = time.perf_counter()
        for i in range(1, n + 1):
            batcher.add(points(1, start=i))
        return time.perf_counter() - start
    finally:
        gate.set()
        batcher.close(timeout=30)


def flush_latency() -> float:
    """Seconds for flush() of 3 points with a 60 s interval."""
    batcher = MetricBatcher(lambda batch: None, interval=60.0, retries=0)
    try:
        batcher.add(points(3))
        start = time.perf_counter()
        batcher.flush(timeout=30)
        return time.perf_counter() - start
    finally:
        batcher.stop()


def sampler_intervals(interval: float = 0.1, samples: int = 5) -> tuple[float, list[float]]:
    """(seconds to the first sample, gaps between the next ones) of a SystemSampler at ``interval``."""
    stamps: list[float] = []
    sampler = SystemSampler(lambda metrics, step: stamps.append(time.perf_counter()), interval)
    start = time.perf_counter()
    sampler.start()
    deadline = start + 60
    while len(stamps) < samples and time.perf_counter() < deadline:
        time.sleep(0.01)
    sampler.stop(final_sample=False)
    if not stamps:
        return float("nan"), []
    return stamps[0] - start, [b - a for a, b in itertools.pairwise(stamps)]


def main() -> None:
    parser = c.bench_parser(__doc__, quick="2 repetitions (a few seconds)")
    parser.add_argument("--reps", type=int, help="repetitions of each measurement (default 5, quick 2)")
    args = parser.parse_args()
    args.reps = args.reps or (2 if args.quick else 5)
    adds = [add_while_blocked() for _ in range(args.reps)]
    flushes = [flush_latency() for _ in range(args.reps)]
    first, gaps = zip(*(sampler_intervals() for _ in range(args.reps)), strict=True)
    all_gaps = [g for run in gaps for g in run]
    print(f"add() while the backend is blocked: 2,000 points in {statistics.median(adds) * 1000:.1f} ms median "
          f"(max {max(adds) * 1000:.1f} ms; the old test bound: 500 ms) = "
          f"{statistics.median(adds) / 2000 * 1e6:.2f} us per point")
    print(f"flush() with a 60 s interval: {statistics.median(flushes) * 1000:.2f} ms median "
          f"(max {max(flushes) * 1000:.2f} ms; the old test bound: 1,000 ms)")
    print(f"SystemSampler at 0.1 s: first sample after {statistics.median(first) * 1000:.0f} ms median, "
          f"gaps {statistics.median(all_gaps) * 1000:.0f} ms median (max {max(all_gaps) * 1000:.0f} ms); "
          f"the old test wanted 2 samples within 350 ms")
    add_ms, flush_ms = statistics.median(adds) * 1000, statistics.median(flushes) * 1000
    gap_ms = statistics.median(all_gaps) * 1000  # 2 samples within 350 ms = a gap of at most 175 ms
    c.print_verdict("bench_batcher", add_ms < 500 and flush_ms < 1000 and gap_ms <= 175,
                    f"2,000 blocked adds {add_ms:.1f} ms, flush {flush_ms:.2f} ms, sampler gap {gap_ms:.0f} ms",
                    "< 500 ms, < 1,000 ms, <= 175 ms")


if __name__ == "__main__":
    main()
