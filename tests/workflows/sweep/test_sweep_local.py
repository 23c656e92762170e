"""Sweeps without services: the embedded default, pruning, SIGTERM and join, and bad search spaces."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import yaml

from tests.workflows.sweep.conftest import children, report, spawn, tiny_config


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _cli(*args: str):
    from typer.testing import CliRunner

    from heimdall_cli.cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "200"})


@pytest.mark.slow
def test_embedded_default_sigterm_then_join_finishes_the_study(tmp_path):
    """No tracking configured: mlflow.db and the study's mlflow-sweeps.db beside it, in the working folder."""
    config = tiny_config(tmp_path, trials=2)
    a = spawn(["start", "-c", str(config), "--name", "local", "--progress", "plain",
               "training.progress_interval_s=0.1"], {}, tmp_path, "a")
    a.wait_for(r" step [1-9]")
    a.kill(signal.SIGTERM)
    rc, _, err = a.wait(60)
    assert rc == 130, err
    assert "Sweep 'local' stopped by SIGTERM; trial 0 marked failed, its run " in err
    assert "Hint: Continue the study: heimdall sweep join local" in err
    assert (tmp_path / "mlflow.db").is_file() and (tmp_path / "mlflow-sweeps.db").is_file()

    b = spawn(["join", "local", "--json"], {}, tmp_path, "b")
    rc, out, err = b.wait()
    assert rc == 0, err
    r = report(out)
    assert (r["finished"], r["complete"], r["failed"]) == (2, 2, 1)
    assert r["storage"] == "sqlite:///mlflow-sweeps.db"

    c = _client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    kids = children(c, "heimdall-localization", r["parent_run_id"])
    states = sorted((int(k.data.params["sweep.trial"]), k.info.status, k.data.tags["heimdall.sweep.state"])
                    for k in kids)
    assert states == [(0, "KILLED", "interrupted"), (1, "FINISHED", "complete"), (2, "FINISHED", "complete")]
    show = spawn(["show", "local", "--json"], {}, tmp_path, "show")
    rc, out, err = show.wait(60)
    assert rc == 0, err
    view = report(out)
    assert [t["state"] for t in view["trials"]] == ["fail", "complete", "complete"]
    assert view["best"]["run_id"] == r["best_run_id"]
    assert c.get_run(r["parent_run_id"]).data.metrics["best/val_loss"] == view["best"]["value"]


def _pruning_sweep(tmp_path: Path, name: str, trials: int, **sweep) -> tuple[dict, dict[str, str], object]:
    """A sweep of 3-epoch trials whose learning rate is either good (3e-3) or hopeless (1e-7).

    Returns its ``--json`` report, the environment and an MLflow client on its store.
    """
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {"HEIMDALL_TRACKING__URI": uri, "HEIMDALL_STORAGE__ARTIFACT_ROOT": str(tmp_path / "artifacts")}
    config = tiny_config(tmp_path, trials=trials, sampler_seed=13,
                         space={"training.learning_rate": {"choice": [3e-3, 1e-7]}}, **sweep)
    data = yaml.safe_load(config.read_text())
    data["training"]["epochs"] = 3
    config.write_text(yaml.safe_dump(data))
    w = spawn(["start", "-c", str(config), "--name", name, "--storage", f"sqlite:///{tmp_path / 'study.db'}",
               "--json"], env, tmp_path, "w")
    rc, out, err = w.wait()
    assert rc == 0, err
    r = report(out)
    assert r["finished"] == trials and r["pruned"] >= 1 and r["complete"] >= 1, r["trials"]
    c = _client(uri)
    for trial in r["trials"]:
        run = c.get_run(trial["run_id"])
        epochs = len(c.get_metric_history(trial["run_id"], "val/loss"))
        assert run.info.status == "FINISHED"
        assert run.data.tags["heimdall.sweep.state"] == trial["state"]
        assert epochs == (3 if trial["state"] == "complete" else trial["epochs"])
        if trial["state"] == "pruned":
            assert run.data.params["training.learning_rate"] == "1e-07"
    return r, env, c


@pytest.mark.slow
def test_median_pruner_stops_bad_trials_from_the_logged_val_loss(tmp_path):
    """A pruned trial stops early, counts as finished, its run ends FINISHED with heimdall.sweep.state=pruned."""
    r, env, _ = _pruning_sweep(tmp_path, "prune", 4, pruner="median", pruner_startup_trials=1)
    assert all(t["epochs"] < 3 for t in r["trials"] if t["state"] == "pruned"), r["trials"]
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    for command, expected in (("show", r["parent_run_id"]), ("best", r["best_run_id"])):
        q = spawn([command, "prune", "--storage", storage, "-q"], env, tmp_path, f"q-{command}")
        rc, out, err = q.wait(60)
        assert (rc, out) == (0, expected + "\n"), err  # -q: the bare id, nothing else on stdout


@pytest.mark.slow
def test_hyperband_prunes_from_the_logged_val_loss(tmp_path):
    """Hyperband (epochs as its resource): trials of a hopeless learning rate stop as pruned."""
    r, _, c = _pruning_sweep(tmp_path, "hb", 6, pruner="hyperband")
    best = c.get_run(r["best_run_id"])
    assert best.data.tags["heimdall.sweep.state"] == "complete"
    assert best.data.params["training.learning_rate"] == "0.003"


@pytest.mark.parametrize(("space", "expected"), [
    ({"training.learnig_rate": {"log_uniform": [1e-4, 1e-2]}},
     "training.learnig_rate: unknown setting (did you mean training.learning_rate?)"),
    ({"training.learning_rate": {"log_uniform": [1e-2, 1e-4]}}, "training.learning_rate: empty range [0.01, 0.0001]"),
    ({"training.batch_size": {"uniform": [16, 64]}}, "training.batch_size is an integer setting; use int"),
    ({"training.batch_size": {"int": [0, 64]}}, "training.batch_size: bound 0 is not valid"),
    ({"training.backbone": {"int": [1, 2]}}, "training.backbone: int needs a numeric setting; use choice"),
    ({"tracking.uri": {"choice": ["sqlite:///x.db"]}}, "tracking.uri: tracking.* settings cannot be searched"),
])
def test_a_bad_search_space_is_exit_2_in_one_line_before_anything_starts(tmp_path: Path, space, expected):
    config = tiny_config(tmp_path, space=space)
    result = _cli("sweep", "start", "-c", str(config), "--name", "bad")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("Error: Invalid sweep.space: ") and expected in lines[0], lines
    assert len(lines) == 2 and lines[1].startswith("Hint: ")
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlflow-sweeps.db").exists()


def test_every_problem_of_a_space_is_reported_together(tmp_path: Path):
    config = tiny_config(tmp_path, space={"training.nope": {"choice": [1]}, "training.epochs": {"int": [5, 1]}})
    result = _cli("sweep", "start", "-c", str(config), "--name", "bad")
    assert result.exit_code == 2
    line = result.stderr.splitlines()[0]
    assert "training.nope: unknown setting" in line and "training.epochs: empty range [5, 1]" in line


def test_join_or_show_of_an_unknown_study_is_not_found(tmp_path: Path):
    for args in (["join", "nope"], ["show", "nope"], ["best", "nope", "-q"]):
        result = _cli("sweep", *args)
        assert result.exit_code == 4, result.output
        assert "Study 'nope' not found." in result.stderr


def test_a_worker_trains_on_one_device(tmp_path: Path):
    config = tiny_config(tmp_path)
    result = _cli("sweep", "start", "-c", str(config), "--name", "x", "training.devices=2")
    assert result.exit_code == 2
    assert "A sweep worker trains on one device" in result.stderr
    assert not (tmp_path / "mlflow-sweeps.db").exists()


def test_an_http_tracking_server_needs_a_storage(tmp_path: Path):
    config = tiny_config(tmp_path)
    result = _cli("sweep", "start", "-c", str(config), "--name", "x", "--tracking-uri", "http://127.0.0.1:9")
    assert result.exit_code == 2
    assert "cannot hold the study" in result.stderr and "--storage" in result.stderr


def test_the_storage_password_is_masked(tmp_path: Path):
    config = tiny_config(tmp_path)
    result = _cli("sweep", "show", "x", "-c", str(config), "--storage",
                  "postgresql+psycopg://heimdall:Sw33p-s3cret@127.0.0.1:9/db")
    assert result.exit_code == 3, result.output
    assert "Sw33p-s3cret" not in result.stderr + result.stdout


def test_the_shipped_sweep_config_is_valid():
    from heimdall_cli.settings import load_settings
    from heimdall_cli.workflows.sweep import parse_space

    path = Path(__file__).resolve().parents[3] / "configs" / "sweep.yaml"
    dims = parse_space(load_settings(path))
    assert {d.key for d in dims} == {"training.learning_rate", "training.batch_size", "training.weight_decay"}
