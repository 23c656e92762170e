"""Metric logging against PostgreSQL: per-call sync ``MlflowClient.log_metric`` vs the tracker's batched path.

1,000 steps × 4 metrics into a fresh PostgreSQL database (created and dropped here).

* sync: ``MlflowClient.log_metric`` once per value, as a plain MLflow script does; the
  training loop waits for every database round trip.
* batched: ``Tracker.log_metrics(…, step=)`` once per step (it only queues), then
  ``Tracker.flush()`` at the end; a background thread sends up to 1,000 points per
  ``log_batch`` request.

Reported: ms per step end to end (the batched total includes the final flush), the
ratio, and the per-step cost the training loop itself sees with the batched path (the
``log_metrics`` calls alone). Both runs are read back to check that every point arrived.

Run: ``.venv/bin/python bench/bench_metrics.py [--quick] [--steps N] [--reps N]``
"""

from __future__ import annotations

import statistics
import sys
import time

import _common as c

TARGET = "none (numbers only)"
KEYS = ("train/loss", "val/loss", "lr", "val/error_m_p50")


def values(step: int) -> dict[str, float]:
    return {"train/loss": 1.0 / (step + 1), "val/loss": 2.0 / (step + 1), "lr": 1e-3 * 0.99**step,
            "val/error_m_p50": 90_000.0 / (step + 1)}


def sync_arm(uri: str, experiment_id: str, steps: int) -> tuple[float, str]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    run_id = client.create_run(experiment_id, run_name="sync").info.run_id
    start = time.perf_counter()
    for step in range(steps):
        for key, value in values(step).items():
            client.log_metric(run_id, key, value, step=step)
    total = time.perf_counter() - start
    client.set_terminated(run_id)
    return total, run_id


def batched_arm(uri: str, experiment: str, steps: int) -> tuple[float, float, str]:
    from heimdall_cli.tracking import open_tracker

    tracker = open_tracker(c.load(None, tracking={"uri": uri, "experiment": experiment}), patient=True)
    run_id = tracker.start_run("batched")
    start = time.perf_counter()
    for step in range(steps):
        tracker.log_metrics(values(step), step=step)
    loop = time.perf_counter() - start
    tracker.flush()
    total = time.perf_counter() - start
    tracker.end_run()
    return total, loop, run_id


def check(uri: str, run_id: str, steps: int) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    for key in KEYS:
        history = client.get_metric_history(run_id, key)
        assert sorted(m.step for m in history) == list(range(steps)), f"{run_id} {key}: {len(history)} points"


def main() -> int:
    parser = c.bench_parser(__doc__, quick="200 steps (a few seconds)")
    parser.add_argument("--steps", type=int, help="steps (default 1000, quick 200; 4 metrics each)")
    parser.add_argument("--reps", type=int, default=1, help="repetitions of each arm, alternated (default 1)")
    args = parser.parse_args()
    args.steps = args.steps or (200 if args.quick else 1000)

    c.isolate_environment()
    from devtools.services import PostgresDatabase, postgres_available

    ok, why = postgres_available()
    if not ok:
        c.print_verdict("bench_metrics", None, f"not measured ({why})", TARGET)
        return 0
    from mlflow import MlflowClient

    with PostgresDatabase() as db:
        experiment = "bench-metrics"
        client = MlflowClient(tracking_uri=db.uri)  # creates the schema (not timed)
        experiment_id = client.create_experiment(experiment)
        sync, batched, loop = [], [], []
        for arm in c.interleaved(("sync", "batched"), args.reps):
            if arm == "sync":
                total, run_id = sync_arm(db.uri, experiment_id, args.steps)
                sync.append(total)
            else:
                total, in_loop, run_id = batched_arm(db.uri, experiment, args.steps)
                batched.append(total)
                loop.append(in_loop)
            check(db.uri, run_id, args.steps)
        s, b, lp = (statistics.median(x) * 1000 / args.steps for x in (sync, batched, loop))
        print(f"metric logging to PostgreSQL, {args.steps} steps x {len(KEYS)} metrics, median of {args.reps} "
              f"({c.load_now()}):")
        print(f"  sync MlflowClient.log_metric per value : {s:8.3f} ms/step  ({statistics.median(sync):.2f} s total)")
        total_b = statistics.median(batched)
        print(f"  tracker batched, incl. final flush      : {b:8.3f} ms/step  ({total_b:.2f} s total)")
        print(f"  ratio sync / batched                    : {s / b:8.1f}x")
        print(f"  training loop's cost per step (batched) : {lp:8.4f} ms/step  (log_metrics calls alone; "
              f"{s / lp:,.0f}x less than sync)")
        print("  every point of every run read back: OK")
    c.print_verdict("bench_metrics", None, f"training loop {lp:.4f} ms/step batched, sync {s:.1f} ms/step "
                    f"({s / lp:,.0f}x)", TARGET)
    return 0


if __name__ == "__main__":
    sys.exit(main())
