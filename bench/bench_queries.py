"""Everyday commands in a fresh process, beside the same question asked with MLflow's own CLI or client.

Run: ``.venv/bin/python bench/bench_queries.py [--quick] [--runs 1000 10000] [--repeat 5]
[--backends sqlite postgres http]``

Each experiment holds N runs logged through MLflow's client (20-point val/loss histories,
the ``best/val_loss`` summary, two params; see ``bench_runs_best.populate``), plus one
registered model version. Stores are kept between invocations (PostgreSQL database
``heimdall_bench_runs_best``, SQLite file under ``$TMPDIR/heimdall-bench-queries``); the
http backend is an ``mlflow server`` on the PostgreSQL store. Every command is started as a
new process ``repeat`` times; the table shows median wall seconds, and for each command the
peer (MLflow's CLI ``mlflow runs list`` or an ``MlflowClient`` one-liner asking the same
question) and the ratio peer / heimdall, measured in the same run. Targets (issue 12): under
1.0 s for queries and registry commands, under 2 s for not-found answers. ``model promote`` on
SQLite and PostgreSQL is measured twice: writing in-process (``tracking.registry_server=false``,
what the first write does) and through heimdall's local registry server once it runs.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import _common as c
from bench_runs_best import DB_NAME, populate

from devtools.services import MlflowServer, PostgresDatabase, clean_child_env, database_exists

ROOT = c.ROOT
BIN = ROOT / ".venv" / "bin"
MODEL = "bench-queries-model"

_CLIENT = "from mlflow import MlflowClient as C; import os; c = C(os.environ['MLFLOW_TRACKING_URI']); "
PEERS = {
    "best": _CLIENT + "e = c.get_experiment_by_name('{exp}').experiment_id; "
            "print(c.search_runs([e], order_by=['metrics.`best/val_loss` ASC'], max_results=1)[0].info.run_id)",
    "show": _CLIENT + "r = c.get_run('{run}'); c.list_artifacts('{run}'); print(r.info.status)",
    "model list": _CLIENT + "print([v.version for v in c.search_model_versions(\"name = '{model}'\")])",
    "promote": _CLIENT + "c.set_registered_model_alias('{model}', 'staging', '1'); "
               "c.set_model_version_tag('{model}', '1', 'stage', 'Staging')",
    "not found": _CLIENT + "import sys\ntry: c.get_run('0123456789abcdef0123456789abcdef')\nexcept Exception: "
                 "sys.exit(4)",
}


def wall(argv: list[str], env: dict[str, str], repeat: int, ok: tuple[int, ...] = (0,)) -> float:
    """Median wall seconds of ``argv`` as a fresh process (after one warm-up run)."""
    times = []
    for i in range(repeat + 1):
        t0 = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        if done.returncode not in ok:
            raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-500:]}")
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def registered(uri: str, experiment: str) -> tuple[str, str]:
    """Two run ids of the experiment, the first registered as a version of MODEL (once)."""
    from mlflow import MlflowClient

    client = MlflowClient(uri, registry_uri=uri)
    exp = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([exp], max_results=2)
    if not client.search_registered_models(f"name = '{MODEL}'"):
        client.create_registered_model(MODEL)
    if not client.search_model_versions(f"name = '{MODEL}'"):
        client.create_model_version(MODEL, f"runs:/{runs[0].info.run_id}/model", run_id=runs[0].info.run_id)
    return runs[0].info.run_id, runs[1].info.run_id


def measure(uri: str, experiment: str, repeat: int) -> list[tuple[str, float, float | None]]:
    run_a, run_b = registered(uri, experiment)
    env = clean_child_env(HEIMDALL_TRACKING__URI=uri, HEIMDALL_TRACKING__EXPERIMENT=experiment,
                          HEIMDALL_TRACKING__MODEL_NAME=MODEL, MLFLOW_TRACKING_URI=uri)
    h = [str(BIN / "heimdall")]
    py = [str(BIN / "python"), "-c"]
    fill = {"exp": experiment, "run": run_a, "model": MODEL}
    exp_id = subprocess.run([*py, _CLIENT + f"print(c.get_experiment_by_name('{experiment}').experiment_id)"],
                            env=env, capture_output=True, text=True, check=True).stdout.strip()
    rows = [
        ("runs best -q", [*h, "runs", "best", "--metric", "val/loss", "-q"], [*py, PEERS["best"].format(**fill)]),
        ("runs list", [*h, "runs", "list"], [str(BIN / "mlflow"), "runs", "list", "--experiment-id", exp_id]),
        ("runs show ID", [*h, "runs", "show", run_a], [*py, PEERS["show"].format(**fill)]),
        ("runs show PREFIX", [*h, "runs", "show", run_a[:8]], None),
        ("runs compare A B", [*h, "runs", "compare", run_a, run_b], None),
        ("model list", [*h, "model", "list"], [*py, PEERS["model list"].format(**fill)]),
        ("config show", [*h, "config", "show"], None),
        ("runs show UNKNOWN (4)", [*h, "runs", "show", "0123456789abcdef0123456789abcdef"],
         [*py, PEERS["not found"]]),
        ("model export --version 99 (4)", [*h, "model", "export", "--version", "99"], None),
        ("train --resume UNKNOWN (4)", [*h, "train", "--resume", "0123456789abcdef0123456789abcdef"], None),
        ("model promote (write)", [*h, "model", "promote", "--version", "1", "--stage", "Staging", "-q"],
         [*py, PEERS["promote"].format(**fill)]),
    ]
    if not uri.startswith("http"):  # the same write through the local registry server, once it runs
        rows.append(("model promote (registry server)", rows[-1][1], rows[-1][2]))
    out = []
    for label, argv, peer in rows:
        ok = (4,) if "(4)" in label else (0,)
        if "registry server" in label:
            env = {**env, **warm_registry_server(uri, experiment, env)}
        ours = wall(argv, env, repeat, ok)
        theirs = wall(peer, env, repeat, (0, 1, 4)) if peer else None
        out.append((label, ours, theirs))
        print(f"  {label:32s} heimdall {ours:6.2f} s" + (f"   MLflow {theirs:6.2f} s   ratio {theirs / ours:5.1f}x"
                                                         if theirs else ""), flush=True)
    return out


def warm_registry_server(uri: str, experiment: str, env: dict[str, str]) -> dict[str, str]:
    """Start heimdall's local registry server for ``uri`` (as the first write would) and wait until it answers."""
    from heimdall_cli.settings import load_settings
    from heimdall_cli.tracking.readers.registry_server import _healthy, paths_for, start

    run_dir = Path(tempfile.gettempdir()) / "heimdall-bench-run"
    run_dir.mkdir(mode=0o700, exist_ok=True)
    os.environ["XDG_RUNTIME_DIR"] = str(run_dir)
    settings = load_settings(flags={"tracking": {"uri": uri, "experiment": experiment, "model_name": MODEL}},
                             env_file=None)
    paths = paths_for(settings)
    assert paths is not None, "no private folder for the registry server"
    t0 = time.perf_counter()
    start(settings, paths)
    while not _healthy(paths.sock, 1.0):
        if time.perf_counter() - t0 > 120:
            raise SystemExit(f"the registry server did not start: {paths.log.read_text()[-2000:]}")
        time.sleep(0.2)
    print(f"  (registry server up in {time.perf_counter() - t0:.1f} s, in the background)", flush=True)
    return {"HEIMDALL_TRACKING__REGISTRY_SERVER": "true", "XDG_RUNTIME_DIR": str(run_dir)}


def main() -> None:
    parser = c.bench_parser(__doc__, quick="200 runs, 2 processes per command, sqlite and PostgreSQL (a few minutes)")
    parser.add_argument("--runs", type=int, nargs="+", help="experiment sizes (default 1000 10000, quick 200)")
    parser.add_argument("--repeat", type=int, help="fresh processes per command (default 5, quick 2)")
    parser.add_argument("--backends", nargs="+", help="sqlite postgres http (default all three; quick: no http)")
    args = parser.parse_args()
    args.runs = args.runs or ([200] if args.quick else [1000, 10000])
    args.repeat = args.repeat or (2 if args.quick else 5)
    args.backends = args.backends or (["sqlite", "postgres"] if args.quick else ["sqlite", "postgres", "http"])
    rows: list[tuple[str, float, float | None]] = []
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    folder = Path(tempfile.gettempdir()) / "heimdall-bench-queries"
    folder.mkdir(exist_ok=True)
    db = PostgresDatabase(DB_NAME, create=not database_exists(DB_NAME)) if {"postgres", "http"} & set(args.backends) \
        else None
    server = None
    try:
        if "http" in args.backends and db is not None:
            server = MlflowServer(db.uri, artifacts_destination=str(folder / "server-artifacts"), workers=2,
                                  job_execution=False)
        uris = {"sqlite": f"sqlite:///{folder / 'mlflow.db'}", "postgres": db.uri if db else None,
                "http": server.url if server else None}
        for n in args.runs:
            experiment = f"bench-{n}"
            for backend in args.backends:
                uri = uris[backend]
                if backend != "http":  # the server shows the PostgreSQL store's runs
                    took = populate(uri, experiment, n, workers=1 if backend == "sqlite" else 6)
                    if took:
                        print(f"  (logged {n} runs into {backend} in {took:.0f} s)")
                print(f"{backend}, {n} runs (median of {args.repeat} fresh processes):", flush=True)
                rows += measure(uri, experiment, args.repeat)
    finally:
        if server is not None:
            server.stop()
        from heimdall_cli.tracking.readers.registry_server import stop_all

        stop_all(Path(tempfile.gettempdir()) / "heimdall-bench-run" / "heimdall")
    # The first write to a SQL store runs in-process while it starts the registry server: unmet by design.
    queries = [t for label, t, _ in rows if "(4)" not in label and "(write)" not in label]
    missing = [t for label, t, _ in rows if "(4)" in label]
    first_write = [t for label, t, _ in rows if "(write)" in label]
    c.print_verdict("bench_queries", max(queries) < 1.0 and max(missing) < 2.0,
                    f"slowest query or registry command {max(queries):.2f} s, not-found {max(missing):.2f} s "
                    f"(first write {max(first_write):.2f} s, not judged)", "< 1.0 s, < 2.0 s")


if __name__ == "__main__":
    main()
