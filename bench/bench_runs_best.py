"""``heimdall runs best`` at scale: 10,000 (and 1,000) runs in PostgreSQL, 20-point val/loss histories.

Run: ``.venv/bin/python bench/bench_runs_best.py [--quick] [--runs 1000 10000] [--repeat 5] [--drop]``

The runs are logged once through MLflow's client (``create_run`` + one ``log_batch`` of
params, 20 val/loss points and the ``best/val_loss`` summary heimdall's training keeps,
+ ``set_terminated``), in a database that is kept between invocations
(``heimdall_bench_runs_best``; ``--drop`` removes it). Then, in the same process:

* query: :func:`heimdall_cli.tracking.search.find_best` (ordering in the backend,
  ``max_results=1``, plus the one "challenger" query for runs without a summary);
* naive: pull every run of the experiment and pick the lowest ``best/val_loss`` in
  Python (charitable: it does not even read histories); on the 1,000-run experiment
  also the really naive "read every history" variant;
* CLI: wall time of ``heimdall runs best --metric val/loss -q`` as a fresh process,
  next to the bare ``python -c "import mlflow"`` floor.

Targets from issue 4: query < 0.2 s, whole command < 1.5 s. Numbers are printed, not asserted.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import _common as c

from devtools.services import PostgresDatabase, clean_child_env, database_exists

ROOT = c.ROOT

DB_NAME = "heimdall_bench_runs_best"
POINTS = 20
BACKBONES = ("convnext_large", "convnext_base", "efficientnet_b3")


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def populate(uri: str, experiment: str, n: int, workers: int = 6) -> float:
    """Log ``n`` runs with 20-point val/loss histories; returns seconds taken (0 when already there)."""
    import numpy as np
    from mlflow.entities import Metric, Param

    client = _client(uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    have = len(client.search_runs([exp_id], max_results=50000, filter_string="attributes.status = 'FINISHED'"))
    if have >= n:
        return 0.0
    started = time.perf_counter()

    def one(i: int) -> None:
        rng = np.random.default_rng(i)
        start = rng.uniform(2.0, 6.0)
        floor = rng.uniform(0.05, 1.5)
        curve = floor + (start - floor) * np.exp(-np.arange(POINTS) / rng.uniform(2, 8))
        curve += rng.normal(0, 0.05, POINTS)  # noisy: the last point is rarely the best
        now = int(time.time() * 1000)
        run = client.create_run(exp_id, run_name=f"bench-{i}")
        metrics = [Metric("val/loss", float(v), now + s, s) for s, v in enumerate(curve)]
        metrics.append(Metric("best/val_loss", float(curve.min()), now + POINTS, POINTS))
        params = [Param("training.backbone", BACKBONES[i % len(BACKBONES)]), Param("training.seed", str(i))]
        client.log_batch(run.info.run_id, metrics=metrics, params=params)
        client.set_terminated(run.info.run_id, "FINISHED")

    with ThreadPoolExecutor(workers) as pool:
        for done, _ in enumerate(pool.map(one, range(have, n)), start=have + 1):
            if done % 1000 == 0:
                print(f"  {experiment}: {done}/{n} runs ({time.perf_counter() - started:.0f} s)", flush=True)
    return time.perf_counter() - started


def timed(fn, repeat: int) -> tuple[float, object]:
    """Median seconds of ``repeat`` calls (after one warm-up) and the last result."""
    result = fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def measure(uri: str, experiment: str, n: int, repeat: int) -> dict[str, float]:
    from heimdall_cli.settings import load_settings
    from heimdall_cli.tracking import open_tracker
    from heimdall_cli.tracking.search import find_best

    settings = load_settings(flags={"tracking": {"uri": uri, "experiment": experiment}}, env_file=None)
    tracker = open_tracker(settings, patient=False)
    query_s, best = timed(lambda: find_best(tracker, "val/loss"), repeat)
    filtered_s, _ = timed(lambda: find_best(tracker, "val/loss",
                                            filter_string="params.training.backbone = 'convnext_large'"), repeat)
    exp_id = tracker.find_experiment()

    def naive() -> str:
        runs = tracker.client.search_runs([exp_id], max_results=50000)
        return min(runs, key=lambda r: r.data.metrics.get("best/val_loss", float("inf"))).info.run_id

    naive_s, naive_id = timed(naive, max(1, repeat // 2))
    assert naive_id == best.run.run_id, (naive_id, best.run.run_id)
    out = {"runs": n, "query_s": query_s, "filtered_query_s": filtered_s, "naive_s": naive_s}
    if n <= 1000:
        def naive_history() -> str:
            runs = tracker.client.search_runs([exp_id], max_results=50000)
            scored = [(min(m.value for m in tracker.client.get_metric_history(r.info.run_id, "val/loss")),
                       r.info.run_id) for r in runs]
            return min(scored)[1]

        out["naive_history_s"], hist_id = timed(naive_history, 1)
        assert hist_id == best.run.run_id
    env = clean_child_env(HEIMDALL_TRACKING__URI=uri, HEIMDALL_TRACKING__EXPERIMENT=experiment)
    heimdall = str(ROOT / ".venv" / "bin" / "heimdall")
    cli_times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        done = subprocess.run([heimdall, "runs", "best", "--metric", "val/loss", "-q"], env=env,
                              capture_output=True, text=True, check=True)
        cli_times.append(time.perf_counter() - t0)
        assert done.stdout.strip() == best.run.run_id
    out["cli_s"] = statistics.median(cli_times)
    return out


def import_floor(repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import mlflow; from mlflow import MlflowClient"], check=True,
                       env=clean_child_env())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = c.bench_parser(__doc__, quick="200 runs, 2 repetitions (about a minute)")
    parser.add_argument("--runs", type=int, nargs="+", help="experiment sizes (default 1000 10000, quick 200)")
    parser.add_argument("--repeat", type=int, help="repetitions (default 5, quick 2)")
    parser.add_argument("--drop", action="store_true", help="Drop the benchmark database and exit.")
    args = parser.parse_args()
    args.runs = args.runs or ([200] if args.quick else [1000, 10000])
    args.repeat = args.repeat or (2 if args.quick else 5)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    exists = database_exists(DB_NAME)
    db = PostgresDatabase(DB_NAME, create=not exists)
    if args.drop:
        db.drop()
        print(f"dropped {DB_NAME}")
        return
    print(f"PostgreSQL database {DB_NAME} ({'reused' if exists else 'created'}); load {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")
    for n in args.runs:
        seconds = populate(db.uri, f"bench-{n}", n)
        if seconds:
            print(f"  logged {n} runs in {seconds:.0f} s ({n / seconds:.0f} runs/s)")
    floor = import_floor(args.repeat)
    print(f"\nimport floor (fresh python: import mlflow): {floor:.2f} s")
    print(f"{'runs':>6} | {'find_best':>9} | {'+ filter':>8} | {'naive (pull all)':>16} | {'ratio':>6} | "
          f"{'CLI wall':>8} | naive (histories)")
    worst_query = worst_cli = 0.0
    for n in args.runs:
        r = measure(db.uri, f"bench-{n}", n, args.repeat)
        worst_query, worst_cli = max(worst_query, r["query_s"]), max(worst_cli, r["cli_s"])
        hist = f"{r['naive_history_s']:.2f} s" if "naive_history_s" in r else "-"
        print(f"{n:>6} | {r['query_s'] * 1000:>6.1f} ms | {r['filtered_query_s'] * 1000:>5.1f} ms | "
              f"{r['naive_s']:>14.2f} s | {r['naive_s'] / r['query_s']:>5.0f}x | {r['cli_s']:>6.2f} s | {hist}",
              flush=True)
    c.print_verdict("bench_runs_best", worst_query < 0.2 and worst_cli < 1.5,
                    f"query {worst_query:.3f} s, command {worst_cli:.2f} s at up to {max(args.runs)} runs",
                    "< 0.2 s, < 1.5 s")


if __name__ == "__main__":
    main()
