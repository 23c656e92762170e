"""``heimdall model register`` + ``model promote`` wall time (sqlite and PostgreSQL).

Run: ``.venv/bin/python bench/bench_registry.py [--quick] [--models 5] [--concurrent 10]``

For each backend: log ``--models`` runs carrying a small ``mlflow.pytorch`` model
(through the Tracker API), then time, as fresh processes, ``heimdall model register
--run-id R -q`` and ``heimdall model promote --version V --stage Production -q``
(median), the same two calls in-process on a warm tracker (what the CLI adds is
Python start-up and imports), and ``--concurrent`` promote processes started at
once (serialised by the registry lock). Numbers are printed, not asserted.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time

import _common as c

from devtools.services import PostgresDatabase, clean_child_env

ROOT = c.ROOT

HEIMDALL = str(ROOT / ".venv" / "bin" / "heimdall")


def _settings(uri: str, artifacts: str, model: str):
    from heimdall_cli.settings import load_settings

    return load_settings(flags={"tracking": {"uri": uri, "experiment": "bench-registry", "model_name": model},
                                "storage": {"artifact_root": artifacts}}, env_file=None)


def _runs_with_models(settings, n: int) -> list[str]:
    import numpy as np
    import torch

    from heimdall_cli.tracking import open_tracker

    tracker = open_tracker(settings)
    ids = []
    for i in range(n):
        run_id = tracker.start_run(f"bench-model-{i}")
        tracker.log_metrics({"val/loss": 1.0 / (i + 1), "best/val_loss": 1.0 / (i + 1)}, step=0)
        tracker.log_pytorch_model(torch.nn.Linear(8, 4), "model",
                                  input_example=np.random.default_rng(i).random((2, 8), dtype=np.float32))
        tracker.end_run()
        ids.append(run_id)
    return ids


def _cli(env: dict[str, str], *args: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run([HEIMDALL, *args], env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"heimdall {' '.join(args)}: {done.stderr}")
    return time.perf_counter() - t0, done.stdout.strip()


def bench(kind: str, uri: str, artifacts: str, models: int, concurrent: int) -> dict[str, float]:
    from heimdall_cli.tracking import open_tracker, registry

    model = f"bench-{kind}-{os.getpid()}"
    settings = _settings(uri, artifacts, model)
    runs = _runs_with_models(settings, models + concurrent)
    env = clean_child_env(HEIMDALL_TRACKING__URI=uri, HEIMDALL_STORAGE__ARTIFACT_ROOT=artifacts,
                          HEIMDALL_TRACKING__EXPERIMENT="bench-registry", HEIMDALL_TRACKING__MODEL_NAME=model)
    register_s, promote_s = [], []
    for run_id in runs[:models]:
        seconds, version = _cli(env, "model", "register", "--run-id", run_id, "-q")
        register_s.append(seconds)
        seconds, _ = _cli(env, "model", "promote", "--version", version, "--stage", "Production", "-q")
        promote_s.append(seconds)
    again_s, _ = _cli(env, "model", "register", "--run-id", runs[0], "-q")  # idempotent retry

    tracker = open_tracker(settings, patient=False)
    api_model = model + "-api"
    t0 = time.perf_counter()
    versions = [registry.register(tracker, model_name=api_model, run_id=r).version.version for r in runs[:models]]
    api_register = (time.perf_counter() - t0) / models
    t0 = time.perf_counter()
    for v in versions:
        registry.promote(tracker, model_name=api_model, version=v, stage="Production")
    api_promote = (time.perf_counter() - t0) / models

    conc_versions = [registry.register(tracker, run_id=r).version.version for r in runs[models:]]
    t0 = time.perf_counter()
    procs = [subprocess.Popen([HEIMDALL, "model", "promote", "--version", str(v), "--stage", "Production", "-q"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for v in conc_versions]
    failed = sum(p.wait() != 0 for p in procs)
    concurrent_s = time.perf_counter() - t0
    rows = registry.list_versions(tracker, model)
    holders = [r.version.version for r in rows if r.version.tags.get("stage") == "Production"]
    assert holders == [registry.model_aliases(tracker, model)["production"]], holders
    return {"register_cli": statistics.median(register_s), "promote_cli": statistics.median(promote_s),
            "register_again_cli": again_s, "register_api": api_register, "promote_api": api_promote,
            "concurrent_s": concurrent_s, "concurrent_failed": failed, "holders": len(holders)}


def main() -> None:
    parser = c.bench_parser(__doc__, quick="2 models, 3 concurrent promotes (about a minute)")
    parser.add_argument("--models", type=int, help="models registered and promoted (default 5, quick 2)")
    parser.add_argument("--concurrent", type=int, help="promote processes started at once (default 10, quick 3)")
    args = parser.parse_args()
    args.models = args.models or (2 if args.quick else 5)
    args.concurrent = args.concurrent or (3 if args.quick else 10)
    slowest = 0.0
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    print(f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; {args.models} models, "
          f"{args.concurrent} concurrent promotes")
    print(f"{'backend':>10} | {'register':>8} | {'promote':>8} | {'reg+prom':>8} | {'re-register':>11} | "
          f"{'API register':>12} | {'API promote':>11} | concurrent promotes")
    with tempfile.TemporaryDirectory(prefix="heimdall-bench-") as tmp, PostgresDatabase() as db:
        backends = {"sqlite": f"sqlite:///{tmp}/mlflow.db", "postgresql": db.uri}
        for kind, uri in backends.items():
            r = bench(kind, uri, f"{tmp}/artifacts", args.models, args.concurrent)
            slowest = max(slowest, r["register_cli"], r["promote_cli"])
            print(f"{kind:>10} | {r['register_cli']:>6.2f} s | {r['promote_cli']:>6.2f} s | "
                  f"{r['register_cli'] + r['promote_cli']:>6.2f} s | {r['register_again_cli']:>9.2f} s | "
                  f"{r['register_api'] * 1000:>9.0f} ms | {r['promote_api'] * 1000:>8.0f} ms | "
                  f"{args.concurrent} in {r['concurrent_s']:.1f} s, {r['concurrent_failed']} failed, "
                  f"{r['holders']} tagged Production", flush=True)
    c.print_verdict("bench_registry", None, f"slowest register or promote command {slowest:.2f} s (median)",
                    "none (numbers only)")


if __name__ == "__main__":
    main()
