"""``heimdall runs best|list|show|compare`` against real backends (sqlite; PostgreSQL + S3)."""

from __future__ import annotations

import json
import time

import pytest

from tests.cli.conftest import World, assert_schema, cli

# The documented --json schemas (docs/runs_and_models.md).
TIMES = {"start_time": (str, None), "end_time": (str, None), "duration_s": (float, None)}
BEST_SCHEMA = {
    "run_id": str, "run_name": str, "experiment": str, "status": str, "metric": str, "mode": str,
    "best_key": str, "best_value": float, "best_source": str, "last_value": (float, None), **TIMES,
    "model_uri": str, "metrics": dict, "params": dict,
}
LIST_SCHEMA = {"experiment": str, "count": int,
               "runs": [{"run_id": str, "run_name": str, "status": str, **TIMES, "metrics": dict, "tags": dict}]}
SHOW_SCHEMA = {
    "run_id": str, "run_name": str, "experiment_id": str, "experiment": str, "status": str, **TIMES,
    "artifact_uri": str, "params": dict, "metrics": dict, "best": dict, "tags": dict,
    "artifacts": [{"path": str, "size_bytes": (int, None)}],
}
COMPARE_SCHEMA = {"runs": [{"run_id": str, "run_name": str, "status": str, "duration_s": (float, None)}],
                  "params": dict, "differing_params": [str], "metrics": dict}


def _log(tracker, experiment: str, name: str, values: list[float], *, summary: bool, status: str = "FINISHED",
         params: dict[str, str] | None = None) -> str:
    run_id = tracker.start_run(name, experiment=experiment)
    tracker.log_params(params or {})
    for step, value in enumerate(values):
        tracker.log_metrics({"val/loss": value, "val/error_m_p50": 1000 * value}, step=step)
    if summary:  # what heimdall's training keeps current every epoch
        tracker.log_metrics({"best/val_loss": min(values)}, step=len(values))
    tracker.end_run(status)
    time.sleep(0.01)  # distinct start times
    return run_id


@pytest.fixture
def logged(world: World, fresh_experiment: str) -> dict[str, str]:
    """Four runs in a fresh experiment, logged through the Tracker API."""
    tracker = world.tracker()
    runs = {
        # best 0.10 but ends at 0.90: "best" must not mean "last"
        "spiky": _log(tracker, fresh_experiment, "spiky", [1.0, 0.10, 0.90], summary=True,
                      params={"backbone": "a", "lr": "0.001"}),
        "steady": _log(tracker, fresh_experiment, "steady", [1.0, 0.5, 0.3], summary=True,
                       params={"backbone": "b", "lr": "0.001"}),
        "crashed": _log(tracker, fresh_experiment, "crashed", [0.5, 0.02], summary=True, status="FAILED",
                        params={"backbone": "a", "lr": "0.01"}),
        # logged by another tool: no best/ summary, judged by its history
        "foreign": _log(tracker, fresh_experiment, "foreign", [0.6, 0.06], summary=False,
                        params={"backbone": "c", "lr": "0.001"}),
    }
    tracker.close()
    return {**runs, "experiment": fresh_experiment}


def _json(result) -> dict:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


# --------------------------------------------------------------------------- runs best


def test_runs_best_uses_best_value_with_status_and_filter(logged):
    e = logged["experiment"]
    data = _json(cli("runs", "best", "--metric", "val/loss", "-e", e, "--json"))
    assert_schema(data, BEST_SCHEMA)
    assert (data["run_id"], data["best_value"], data["best_source"]) == (logged["crashed"], 0.02, "summary")

    # Among FINISHED runs the foreign run (no summary; latest 0.06 beats spiky's best 0.10) wins via its history.
    data = _json(cli("runs", "best", "-e", e, "--status", "FINISHED", "--json"))
    assert (data["run_id"], data["best_value"], data["best_source"]) == (logged["foreign"], 0.06, "history")

    data = _json(cli("runs", "best", "-e", e, "--status", "finished", "--filter", "params.backbone = 'a'",
                     "--json"))
    assert data["run_id"] == logged["spiky"]
    assert (data["best_value"], data["last_value"]) == (pytest.approx(0.10), pytest.approx(0.90))

    # --mode max reads histories (the summaries are minima).
    data = _json(cli("runs", "best", "-e", e, "--mode", "max", "--status", "FINISHED", "--json"))
    assert data["run_id"] in (logged["spiky"], logged["steady"]) and data["best_value"] == 1.0

    quiet = cli("runs", "best", "-e", e, "--status", "FINISHED", "--filter", "params.backbone = 'b'", "-q")
    assert quiet.exit_code == 0 and quiet.stdout == logged["steady"] + "\n"
    human = cli("runs", "best", "-e", e)
    assert human.exit_code == 0 and logged["crashed"] in human.stdout and "best/val_loss" in human.stdout


def test_runs_best_on_the_trained_run(world):
    data = _json(cli("runs", "best", "--metric", "val/error_m_p50", "--json"))
    assert data["run_id"] == world.run_id and data["best_key"] == "best/val_error_m_p50"
    assert data["experiment"] == world.experiment and data["model_uri"] == f"runs:/{world.run_id}/model"
    assert data["params"]["training.backbone"] == "test_convnext"


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--metric", "val/nope"], 4, "Metrics that exist: val/error_m_p50, val/loss"),
        (["--filter", "params.backbone = 'zzz'"], 4, "No run in experiment"),
        (["--filter", "params.backbone = = 'a'"], 2, "Malformed --filter"),
        (["--filter", "metrics.val/loss < 1 or params.backbone = 'a'"], 2, "Invalid clause(s) in filter string"),
        (["--filter", "metrics.val/loss <> 1"], 2, "invalid comparator '<>'"),
        (["--status", "DONE"], 2, "Valid statuses: RUNNING, SCHEDULED, FINISHED, FAILED, KILLED"),
        (["--mode", "lowest"], 2, "is not min or max"),
    ],
)
def test_runs_best_bad_input(logged, args, code, needle):
    result = cli("runs", "best", "-e", logged["experiment"], *args)
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert needle in " ".join(result.stderr.split()), result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr


def test_unknown_experiment_and_unreachable_backend(sqlite_only):
    result = cli("runs", "best", "-e", "no-such-experiment-x")
    assert result.exit_code == 4 and "no-such-experiment-x" in result.stderr
    started = time.monotonic()
    result = cli("runs", "list", "--tracking-uri", "postgresql+psycopg://postgres@127.0.0.1:9/none")
    assert result.exit_code == 3, result.stderr
    assert time.monotonic() - started < 15


# --------------------------------------------------------------------------- runs list


def test_runs_list_filters_orders_and_limits(logged):
    e = logged["experiment"]
    data = _json(cli("runs", "list", "-e", e, "--json"))
    assert_schema(data, LIST_SCHEMA)
    assert data["count"] == 4
    assert [r["run_name"] for r in data["runs"]] == ["foreign", "crashed", "steady", "spiky"]  # newest first

    data = _json(cli("runs", "list", "-e", e, "--order-by", "metrics.best/val_loss ASC", "--limit", "2", "--json"))
    assert [r["run_id"] for r in data["runs"]] == [logged["crashed"], logged["spiky"]]

    quiet = cli("runs", "list", "-e", e, "--status", "FAILED", "-q")
    assert quiet.exit_code == 0 and quiet.stdout.split() == [logged["crashed"]]
    quiet = cli("runs", "list", "-e", e, "--filter", "metrics.best/val_loss < 0.5", "-q")
    assert sorted(quiet.stdout.split()) == sorted([logged["spiky"], logged["steady"], logged["crashed"]])

    human = cli("runs", "list", "-e", e)
    assert human.exit_code == 0 and "best/val_loss" in human.stdout
    assert logged["spiky"][:8] in human.stdout and logged["spiky"] not in human.stdout  # short ids, as git shows
    assert logged["spiky"] in cli("runs", "list", "-e", e, "--wide").stdout
    assert max(len(line) for line in cli("runs", "list", "-e", e).stdout.splitlines()) <= 80  # fits 80 columns

    bad = cli("runs", "list", "-e", e, "--order-by", "metrics.val/loss SIDEWAYS")
    assert bad.exit_code == 2 and "Malformed --order-by" in bad.stderr


# --------------------------------------------------------------------------- runs show


def test_runs_show_trained_run(world):
    data = _json(cli("runs", "show", world.run_id, "--json"))
    assert_schema(data, SHOW_SCHEMA)
    assert data["status"] == "FINISHED" and data["experiment"] == world.experiment
    assert data["duration_s"] > 0
    assert set(data["best"]) == {"best/val_loss", "best/val_error_m_p50"}
    assert "val/loss" in data["metrics"] and "best/val_loss" not in data["metrics"]
    assert data["params"]["data.samples"] == "600"
    paths = {a["path"] for a in data["artifacts"]}
    assert {"model/MLmodel", "model/data/model.pt2", "config/resolved.yaml"} <= paths
    assert all(a["size_bytes"] for a in data["artifacts"] if a["path"] == "model/MLmodel")

    quiet = cli("runs", "show", world.run_id, "-q")
    assert quiet.stdout == "FINISHED\n"
    human = cli("runs", "show", world.run_id)
    assert human.exit_code == 0 and "model/MLmodel" in human.stdout and "Params" in human.stdout


@pytest.mark.parametrize("run_id", ["0123456789abcdef0123456789abcdef", "not a run id!"])
def test_runs_show_unknown_run_is_not_found(sqlite_only, run_id):
    result = cli("runs", "show", run_id)
    assert result.exit_code == 4, result.stderr
    assert "not found" in result.stderr and "heimdall runs list" in result.stderr


# --------------------------------------------------------------------------- runs compare


def test_runs_compare(logged):
    data = _json(cli("runs", "compare", logged["spiky"], logged["steady"], logged["crashed"], "--json"))
    assert_schema(data, COMPARE_SCHEMA)
    assert [r["run_id"] for r in data["runs"]] == [logged["spiky"], logged["steady"], logged["crashed"]]
    assert data["differing_params"] == ["backbone", "lr"]
    assert data["params"]["backbone"] == ["a", "b", "a"]
    assert data["metrics"]["best/val_loss"] == [pytest.approx(0.10), pytest.approx(0.30), pytest.approx(0.02)]

    quiet = cli("runs", "compare", logged["spiky"], logged["steady"], "-q")
    assert quiet.stdout.split() == ["backbone"]
    human = cli("runs", "compare", logged["spiky"], logged["steady"])
    assert human.exit_code == 0 and "spiky" in human.stdout and "steady" in human.stdout
    assert "1 differ" in human.stdout


def test_runs_compare_bad_input(logged):
    one = cli("runs", "compare", logged["spiky"])
    assert one.exit_code == 2 and "at least two" in one.stderr
    unknown = cli("runs", "compare", logged["spiky"], "0123456789abcdef0123456789abcdef")
    assert unknown.exit_code == 4 and "0123456789abcdef0123456789abcdef" in unknown.stderr
