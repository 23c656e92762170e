"""The cost of logging kept checkpoints and the final model as MLflow LoggedModels. Target: ≤ 1 % of training.

Two arms of heimdall's own training path on the quickstart profile (test_convnext, CPU),
each a whole run with evaluation (the final model is logged there), tracked to a fresh
embedded store (SQLite + local artifacts) per run:

- ``artifacts``: ``tracking.log_models=false``: checkpoints and the model as plain run artifacts (as before);
- ``models``: ``tracking.log_models=true``: the same, plus each kept checkpoint and the final model as a
  LoggedModel (files, params, step, linked metrics), and evicted checkpoints' models deleted.

The arms alternate (A B B A …) after one warm-up run of each. Reported per arm: the run's wall
time (from ``run()`` to the end of the run, uploads drained) and this process's CPU time; the
paired ratio models/artifacts of both; and the seconds the upload thread spent on logged models.

Run: ``.venv/bin/python bench/bench_logged_models.py [--quick] [--pairs N] [--epochs N]``
"""

from __future__ import annotations

import time

import _common as c

TARGET = 1.01


def one_run(log_models: bool, epochs: int, samples: int) -> tuple[float, float, float, int]:
    """(wall s, process CPU s, upload-thread seconds on logged models, models logged) of one tracked run."""
    from heimdall_cli.training.fit import run
    from heimdall_cli.training.prepare import prepare

    with c.scratch_dir("models") as tmp:
        settings = c.load(tracking={"uri": f"sqlite:///{tmp}/mlflow.db", "log_models": log_models,
                                    "system_metrics": False, "experiment": "bench-models"},
                          storage={"artifact_root": f"{tmp}/artifacts"},
                          training={"epochs": epochs, "output_dir": f"{tmp}/outputs", "early_stopping_patience": 0},
                          data={"samples": samples})
        prep = prepare(settings, splits=c.splits_for(settings))
        models = prep.parts.checkpoint_sync.models if prep.parts.checkpoint_sync else None
        wall0, cpu0 = time.perf_counter(), time.process_time()
        run(prep, evaluate=True)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        logged = (len(models.ids) + (1 if models.final_id else 0)) if models else 0
        return wall, cpu, models.seconds if models else 0.0, logged


def main() -> None:
    parser = c.bench_parser(__doc__, quick="1 pair, 2 epochs, 2,000 samples")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--samples", type=int, default=8000)
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.epochs, args.samples = 1, 2, 2000
    c.isolate_environment()
    print(c.machine_line())
    results: dict[str, list[tuple[float, float, float, int]]] = {"artifacts": [], "models": []}
    for arm, counted in c.schedule(("artifacts", "models"), args.pairs):
        measured = one_run(arm == "models", args.epochs, args.samples)
        print(f"  {arm:9s} wall {measured[0]:7.2f} s  cpu {measured[1]:7.2f} s  logged-model thread "
              f"{measured[2]:5.2f} s  models {measured[3]}{'' if counted else '  (warm-up)'}", flush=True)
        if counted:
            results[arm].append(measured)
    a, m = results["artifacts"], results["models"]
    wall = c.median(c.paired_ratios([x[0] for x in m], [x[0] for x in a]))
    cpu = c.median(c.paired_ratios([x[1] for x in m], [x[1] for x in a]))
    thread = c.median([x[2] for x in m])
    share = thread / c.median([x[0] for x in m])
    print(f"median wall: artifacts {c.median([x[0] for x in a]):.2f} s, models {c.median([x[0] for x in m]):.2f} s; "
          f"ratio models/artifacts wall {wall:.4f}, cpu {cpu:.4f}")
    print(f"upload thread on logged models: {thread:.2f} s per run ({share:.2%} of the run's wall time, "
          f"in the background); {c.load_now()}")
    c.print_verdict("bench_logged_models", wall <= TARGET and cpu <= TARGET,
                    f"wall ×{wall:.3f}, cpu ×{cpu:.3f}", f"≤ ×{TARGET:.2f} (≤ 1 % of training)")


if __name__ == "__main__":
    main()
