"""Training-loop throughput during a tracking-server outage, against normal operation.

A loop of fixed CPU work per step (a stand-in for a training step, ~50 ms) calls
``Tracker.log_metrics`` with 4 metrics every step, against a real ``mlflow server`` on
PostgreSQL with proxied S3 artifacts (moto). Arm "normal": server up. Arm "outage":
the server process killed before the loop starts. Target: outage/normal >= 0.95, so
the queue never stalls the loop. Afterwards the server restarts and we measure how long
the backlog takes to drain, and check that every point arrived exactly once.

The issue's scenario is a 10-minute outage at one step per 50 ms (12,000 steps x 4 =
48,000 points). The throughput arms run ``--outage-s`` seconds (60) of that at the real
step rate; then the rest of the 12,000 steps' points are queued at once (same steps,
no waiting), so the drain measured after recovery is that of the full 48,000-point
backlog. ``--outage-s 600`` runs all 10 minutes at the real rate.

``--quick``: a 10 s outage and a backlog of 2 × its steps (about a minute with the servers' start-up).

Run: ``.venv/bin/python bench/bench_outage.py [--quick] [--outage-s 60] [--step-ms 50]``
"""

from __future__ import annotations

import os
import sys
import time

import _common as c
import numpy as np

from devtools.services import MlflowServer, MotoS3Server, PostgresDatabase

METRICS = ("train/loss", "train/grad_norm", "lr", "train/samples_per_s")
FULL_STEPS = 12_000  # 10 minutes at one step per 50 ms


def busy_step(target_s: float, a: np.ndarray) -> None:
    """Fixed work standing in for a training step (matrix products until target_s has passed)."""
    end = time.perf_counter() + target_s
    while time.perf_counter() < end:
        a @ a


def loop(tracker, steps: int, step_s: float, start_step: int = 0) -> float:
    """Run ``steps`` steps, logging 4 metrics each; returns steps per second."""
    a = np.random.default_rng(0).standard_normal((64, 64))
    t0 = time.perf_counter()
    for i in range(start_step, start_step + steps):
        busy_step(step_s, a)
        tracker.log_metrics({k: 1.0 / (i + 1) for k in METRICS}, step=i)
    return steps / (time.perf_counter() - t0)


def main() -> int:
    parser = c.bench_parser(__doc__, quick="a 10 s outage, a small backlog (about a minute)")
    parser.add_argument("--outage-s", type=float,
                        help="outage length (default 60, quick 10; 600 = the issue's scenario)")
    parser.add_argument("--step-ms", type=float, default=50.0, help="work per training step")
    args = parser.parse_args()
    args.outage_s = args.outage_s or (10.0 if args.quick else 60.0)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    step_s = args.step_ms / 1000
    steps = int(args.outage_s / step_s)
    full_steps = 2 * steps if args.quick else FULL_STEPS

    from heimdall_cli.settings import load_settings
    from heimdall_cli.tracking import open_tracker

    with PostgresDatabase() as db, MotoS3Server() as s3:
        s3.create_bucket("heimdall-mlflow")
        with MlflowServer(db.uri, s3=s3, artifacts_destination="s3://heimdall-mlflow/artifacts",
                          job_execution=False) as server:
            settings = load_settings(flags={"tracking": {"uri": server.url, "experiment": "bench-outage",
                                                         "outage_bound_s": args.outage_s * 10}}, env_file=None)
            tracker = open_tracker(settings, patient=True)
            events: list[str] = []
            tracker.on_event = events.append
            run_id = tracker.start_run("bench-outage")

            normal = loop(tracker, steps, step_s)
            tracker.flush()
            server.kill()
            outage = loop(tracker, steps, step_s, start_step=steps)
            rest = max(0, full_steps - steps)
            loop(tracker, rest, 0.0, start_step=2 * steps)
            backlog = tracker.pending_metrics
            server.start()
            t0 = time.perf_counter()
            tracker.flush()
            while tracker.pending_metrics:
                time.sleep(0.05)
            drain_s = time.perf_counter() - t0
            tracker.end_run()

            from mlflow import MlflowClient

            client = MlflowClient(tracking_uri=server.url)
            counts = {k: len(client.get_metric_history(run_id, k)) for k in METRICS}

    ratio = outage / normal
    print(f"step work {args.step_ms:.0f} ms, 4 metrics per step, {steps} steps per arm, mlflow server on PostgreSQL")
    print(f"normal: {normal:.2f} steps/s   outage: {outage:.2f} steps/s   ratio outage/normal: {ratio:.3f} "
          f"(target >= 0.95)")
    expected = steps + max(full_steps, steps)
    print(f"backlog of {full_steps} steps at {args.step_ms:.0f} ms/step: {backlog} points; drained {drain_s:.1f} s "
          f"after the server "
          f"answered again ({backlog / max(drain_s, 1e-9):.0f} points/s, including the retry backoff)")
    print(f"points per key in the backend: {counts} (expected {expected} each)")
    print("warnings seen:", *events, sep="\n  ")
    exact = all(v == expected for v in counts.values())
    if not exact:
        print("points were lost or duplicated")
    c.print_verdict("bench_outage", ratio >= 0.95 and exact,
                    f"outage/normal {ratio:.3f}, every point once: {'yes' if exact else 'NO'}",
                    ">= 0.95, every point once")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
