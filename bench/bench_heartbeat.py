"""What the liveness heartbeat (``tracking.heartbeat_interval_s``) costs a training run.

A beat is one tag write (``heimdall.heartbeat``) from a daemon thread. This measures one
beat's wall time and CPU time against the quickstart's embedded store (sqlite) and against
PostgreSQL where one answers at 127.0.0.1:5432 (trust auth, user postgres), then states the
share of a training run's time that the default interval (30 s) and an aggressive one (1 s)
would spend on it. The training thread does not wait for a beat; the CPU share is what a
beat takes from the training thread on a busy box at most.

Target: < 0.1 % of the run's CPU time at the default interval.

Run: ``.venv/bin/python bench/bench_heartbeat.py [--quick] [--beats N]``
"""

from __future__ import annotations

import statistics
import sys
import time

import _common as c

TARGET = 0.001  # a share of the run's time


def measure(uri: str, tmp: str, beats: int) -> tuple[float, float]:
    """(median wall seconds, median CPU seconds) of one beat against ``uri``."""
    from heimdall_cli.settings import load_settings
    from heimdall_cli.tracking import open_tracker

    settings = load_settings(None, flags={"tracking": {"uri": uri, "experiment": "bench-heartbeat",
                                                       "heartbeat_interval_s": 3600, "registry_server": False},
                                          "storage": {"artifact_root": f"{tmp}/artifacts"}}, env_file=None)
    tracker = open_tracker(settings)
    tracker.start_run("beats")
    heartbeat = tracker._heartbeat  # the run's own heartbeat object: its beat is what is timed
    assert heartbeat is not None
    walls, cpus = [], []
    for _ in range(beats):
        wall, cpu = time.perf_counter(), time.process_time()
        heartbeat._beat()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    assert heartbeat.failures == 0
    tracker.end_run()
    return statistics.median(walls), statistics.median(cpus)


def main() -> int:
    parser = c.bench_parser(__doc__, quick="50 beats per store (seconds)")
    parser.add_argument("--beats", type=int, help="beats timed per store (default 300, quick 50)")
    args = parser.parse_args()
    beats = args.beats or (50 if args.quick else 300)
    c.isolate_environment()
    print(f"machine: {c.machine_line()}")
    stores = {}
    with c.scratch_dir("heartbeat") as tmp:
        stores["sqlite"] = f"sqlite:///{tmp}/mlflow.db"
        try:
            import psycopg

            with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True,
                                 connect_timeout=3) as conn:
                conn.execute("DROP DATABASE IF EXISTS heimdall_bench_heartbeat")
                conn.execute("CREATE DATABASE heimdall_bench_heartbeat")
            stores["postgresql"] = "postgresql+psycopg://postgres@127.0.0.1:5432/heimdall_bench_heartbeat"
        except Exception as e:  # no server here: sqlite only
            print(f"PostgreSQL not measured: {type(e).__name__}")
        worst = 0.0
        for name, uri in stores.items():
            wall, cpu = measure(uri, tmp, beats)
            shares = {interval: cpu / interval for interval in (30.0, 1.0)}
            worst = max(worst, shares[30.0])
            print(f"{name:10s}: one beat {wall * 1000:6.2f} ms wall, {cpu * 1000:6.2f} ms CPU (median of {beats}); "
                  f"CPU share of a run at 30 s: {shares[30.0] * 100:.4f} %, at 1 s: {shares[1.0] * 100:.3f} %",
                  flush=True)
    c.print_verdict("bench_heartbeat", worst < TARGET, f"{worst * 100:.4f} % of a run's CPU at the 30 s default",
                    f"< {TARGET * 100:.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
