"""The tracker service against all four backends (sqlite, PostgreSQL, PostgreSQL + S3, http server).

Every test runs once per backend through the ``backend_env`` fixture; nothing is mocked.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from heimdall_cli.errors import ConfigError, NotFound
from heimdall_cli.settings import load_settings
from heimdall_cli.tracking import Tracker, open_tracker
from heimdall_cli.tracking.runs import MAX_PARAM_LENGTH
from tests.conftest import S3_BUCKET


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """An empty MLflow sqlite store, migrated once: each sqlite test starts from a copy (saves ~4 s each)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("sqlite-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracker(backend_env, sqlite_template) -> Tracker:
    if backend_env.kind == "sqlite":
        shutil.copyfile(sqlite_template, backend_env.tracking_uri.removeprefix("sqlite:///"))
    tracker = open_tracker(load_settings())
    yield tracker
    if tracker.run_id:
        tracker.end_run("KILLED")
    tracker.close()


def _s3_keys(request, backend_env, run_id: str) -> list[str] | None:
    """Object keys of ``run_id`` in the S3 bucket, where the backend stores artifacts in S3."""
    if backend_env.kind == "postgres_s3":
        prefix = backend_env.s3_prefix + "/"
    elif backend_env.kind == "http":
        prefix = "artifacts/"
    else:
        return None
    s3 = request.getfixturevalue("s3_server")
    return [k for k in s3.list_keys(S3_BUCKET, prefix) if f"/{run_id}/" in k]


# --------------------------------------------------------------------------- experiments


def test_experiment_get_or_create_is_idempotent(tracker, backend_env, request):
    first = tracker.get_or_create_experiment()
    assert tracker.get_or_create_experiment(backend_env.experiment) == first
    assert tracker.find_experiment() == first
    location = tracker.client.get_experiment(first).artifact_location
    if backend_env.kind == "postgres_s3":
        assert location == f"s3://{S3_BUCKET}/{backend_env.s3_prefix}/{backend_env.experiment}"
    elif backend_env.kind == "http":
        assert location.startswith("mlflow-artifacts:")  # the server decides and proxies
    else:
        assert location == (Path(backend_env.artifact_root).resolve() / backend_env.experiment).as_uri()

    run_id = tracker.start_run("landing")
    Path("probe.txt").write_text("hello")
    tracker.log_artifact("probe.txt")
    tracker.end_run()
    keys = _s3_keys(request, backend_env, run_id)
    if keys is not None:  # the object really landed in the bucket, under the configured prefix
        assert any(k.endswith(f"{run_id}/artifacts/probe.txt") for k in keys), keys
    else:
        assert (Path(backend_env.artifact_root) / backend_env.experiment / run_id / "artifacts/probe.txt").is_file()


def test_find_experiment_that_does_not_exist_is_not_found(tracker):
    with pytest.raises(NotFound, match="no-such-experiment"):
        tracker.find_experiment("no-such-experiment-x")


# --------------------------------------------------------------------------- runs


def test_run_start_get_end_with_each_status(tracker, backend_env):
    ids = {}
    for status in ("FINISHED", "FAILED", "KILLED"):
        run_id = tracker.start_run(f"run-{status.lower()}", tags={"phase": "5.6", "n": 1})
        info = tracker.get_run()
        assert (info.run_id, info.name, info.status) == (run_id, f"run-{status.lower()}", "RUNNING")
        assert info.tags["phase"] == "5.6" and info.tags["n"] == "1"
        assert info.experiment_id == tracker.find_experiment()
        tracker.end_run(status.lower())  # case-insensitive
        assert tracker.run_id is None
        ids[status] = run_id
    for status, run_id in ids.items():
        info = tracker.get_run(run_id)
        assert info.status == status
        assert info.end_time is not None and info.end_time >= info.start_time


def test_attach_to_existing_run_resumes_it(tracker):
    run_id = tracker.start_run("to-resume")
    tracker.log_metrics({"train/loss": 2.0}, step=0)
    tracker.end_run("KILLED")

    other = open_tracker(load_settings())  # a new process would do the same
    assert other.start_run(run_id=run_id) == run_id
    assert other.get_run().status == "RUNNING"
    other.log_metrics({"train/loss": 1.0}, step=1)
    other.end_run("FINISHED")
    assert other.get_run(run_id).status == "FINISHED"
    assert [(s, v) for s, v, _ in other.metric_history("train/loss", run_id=run_id)] == [(0, 2.0), (1, 1.0)]


def test_unknown_run_and_bad_status_are_typed_errors(tracker):
    with pytest.raises(NotFound, match="0123456789abcdef"):
        tracker.get_run("0123456789abcdef0123456789abcdef")
    with pytest.raises(NotFound):
        tracker.start_run(run_id="0123456789abcdef0123456789abcdef")
    with pytest.raises(ConfigError, match="No active run"):
        tracker.log_metrics({"x": 1.0})
    tracker.start_run("bad-status")
    with pytest.raises(ConfigError, match="DONE"):
        tracker.end_run("DONE")
    assert tracker.run_id is not None  # the run is still ours to end properly
    tracker.end_run("FINISHED")


# --------------------------------------------------------------------------- params


def test_params_flattened_json_and_long_values_to_artifact(tracker, tmp_path):
    long_value = "".join(f"{i:05d}," for i in range(1200))  # 7,200 characters
    assert len(long_value) > MAX_PARAM_LENGTH
    tracker.start_run("params")
    tracker.log_params({
        "training": {"learning_rate": 1e-3, "batch_size": 32, "tx_power_dbm": [30.0, 40.0], "nested": {"a": True}},
        "backbone": "ConvNeXt-Large",
        "optional": None,
        "path": Path("outputs"),
        "mapping_list": [{"a": 1}],
        "notes": long_value,
    })
    tracker.log_params({f"bulk.{i}": i for i in range(150)})  # more than one log_batch request
    params = tracker.get_run().params
    assert params["training.learning_rate"] == "0.001"
    assert params["training.batch_size"] == "32"
    assert json.loads(params["training.tx_power_dbm"]) == [30.0, 40.0]
    assert params["training.nested.a"] == "True"
    assert params["backbone"] == "ConvNeXt-Large"
    assert params["optional"] == ""
    assert params["path"] == "outputs"
    assert json.loads(params["mapping_list"]) == [{"a": 1}]
    assert params["bulk.149"] == "149" and len([k for k in params if k.startswith("bulk.")]) == 150
    assert "params/notes.txt" in params["notes"]
    back = tracker.download_artifacts("params/notes.txt", tmp_path / "dl")
    assert back.read_text() == long_value  # complete, not truncated
    tracker.end_run()


# --------------------------------------------------------------------------- metrics


def test_metrics_are_batched_and_exact_after_flush(tracker):
    run_id = tracker.start_run("metrics")
    steps = 400  # 3 x 400 = 1,200 points: more than one 1,000-point batch
    base = 1_700_000_000_000
    for step in range(steps):
        tracker.log_metrics(
            {"train/loss": 1.0 / (step + 1), "val/loss": 2.0 - step * 1e-3, "lr": step * 1e-5},
            step=step,
            timestamp_ms=base + step * 10,
        )
    tracker.flush()
    assert tracker.pending_metrics == 0
    for key, expected in (("train/loss", lambda s: 1.0 / (s + 1)), ("val/loss", lambda s: 2.0 - s * 1e-3),
                          ("lr", lambda s: s * 1e-5)):
        history = tracker.metric_history(key)
        assert len(history) == steps, key
        assert [s for s, _, _ in history] == list(range(steps))
        assert [t for _, _, t in history] == [base + s * 10 for s in range(steps)]
        assert [v for _, v, _ in history] == pytest.approx([expected(s) for s in range(steps)], rel=1e-12)
    latest = tracker.get_run().metrics
    assert latest["val/loss"] == pytest.approx(2.0 - (steps - 1) * 1e-3)
    tracker.log_metric("test/loss", 0.5, step=7)
    tracker.end_run()  # end_run flushes what is still queued
    assert [h[:2] for h in tracker.metric_history("test/loss", run_id=run_id)] == [(7, 0.5)]


def test_log_metrics_does_not_wait_for_the_backend(tracker):
    import time

    tracker.start_run("fast-path")
    start = time.perf_counter()
    for step in range(200):
        tracker.log_metrics({"a": step, "b": -step}, step=step)
    queued = time.perf_counter() - start
    assert queued < 1.0, f"200 log_metrics calls took {queued:.2f} s: they should only queue"
    tracker.flush()
    assert len(tracker.metric_history("b")) == 200
    tracker.end_run()


# --------------------------------------------------------------------------- artifacts


def test_artifacts_files_and_directories_list_download_delete(tracker, tmp_path):
    src = tmp_path / "src"
    (src / "plots" / "deep").mkdir(parents=True)
    (src / "plots" / "cdf.txt").write_text("cdf")
    (src / "plots" / "deep" / "map.txt").write_text("map")
    (src / "config.yaml").write_text("training: {epochs: 1}\n")
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"\x00\x01" * 1000)

    tracker.start_run("artifacts")
    tracker.log_artifact(ckpt, "checkpoints")
    tracker.log_artifact(src / "plots", "eval")  # a directory through log_artifact
    tracker.log_artifacts(src, "snapshot")
    tracker.log_text("hello", "notes/hello.txt")
    tracker.log_dict({"a": 1}, "notes/a.json")
    listed = dict(tracker.list_artifacts())
    assert set(listed) == {
        "checkpoints/last.ckpt", "eval/cdf.txt", "eval/deep/map.txt", "notes/a.json", "notes/hello.txt",
        "snapshot/config.yaml", "snapshot/plots/cdf.txt", "snapshot/plots/deep/map.txt",
    }
    assert listed["checkpoints/last.ckpt"] == 2000
    assert [p for p, _ in tracker.list_artifacts("eval")] == ["eval/cdf.txt", "eval/deep/map.txt"]

    folder = tracker.download_artifacts("eval", tmp_path / "dl")
    assert (folder / "deep" / "map.txt").read_text() == "map"
    assert tracker.download_artifacts("checkpoints/last.ckpt", tmp_path / "dl2").read_bytes() == ckpt.read_bytes()

    tracker.delete_artifact("checkpoints/last.ckpt")
    tracker.delete_artifact("eval/deep")
    remaining = {p for p, _ in tracker.list_artifacts()}
    assert "checkpoints/last.ckpt" not in remaining and "eval/deep/map.txt" not in remaining
    assert "eval/cdf.txt" in remaining
    with pytest.raises(NotFound):
        tracker.log_artifact(tmp_path / "missing.bin")
    tracker.end_run()


# --------------------------------------------------------------------------- best run


def _logged_run(tracker: Tracker, name: str, values: list[float], *, summary: bool, experiment: str | None = None):
    run_id = tracker.start_run(name, experiment=experiment)
    for step, value in enumerate(values):
        tracker.log_metrics({"val/loss": value}, step=step)
    if summary:
        tracker.log_metrics({"best/val_loss": min(values)}, step=len(values))
    tracker.end_run()
    return run_id


def test_best_run_uses_the_best_value_not_the_last(tracker):
    # "spiky": best 0.10 but ends at 0.90; "steady": ends best-of-last at 0.30.
    spiky = _logged_run(tracker, "spiky", [1.0, 0.10, 0.90], summary=True)
    steady = _logged_run(tracker, "steady", [1.0, 0.50, 0.30], summary=True)
    best = tracker.get_best_run("val/loss")
    assert best.run_id == spiky
    assert best.metrics["best/val_loss"] == pytest.approx(0.10)
    assert best.metrics["val/loss"] == pytest.approx(0.90)  # its last value is the worse one
    assert tracker.get_best_run("val/loss", "max").run_id in {spiky, steady}
    with pytest.raises(NotFound, match="val/nope"):
        tracker.get_best_run("val/nope")
    with pytest.raises(ConfigError):
        tracker.get_best_run("val/loss", "lowest")


def test_best_run_without_summary_falls_back_to_history(tracker, backend_env):
    experiment = backend_env.experiment + "-nosummary"
    spiky = _logged_run(tracker, "spiky", [1.0, 0.10, 0.90], summary=False, experiment=experiment)
    _logged_run(tracker, "steady", [1.0, 0.50, 0.30], summary=False, experiment=experiment)
    best = tracker.get_best_run("val/loss", experiment=experiment)
    assert best.run_id == spiky
    assert best.metrics["best/val_loss"] == pytest.approx(0.10)
    worst_peak = tracker.get_best_run("val/loss", "max", experiment=experiment)
    assert worst_peak.metrics["best/val_loss"] == pytest.approx(1.0)


# --------------------------------------------------------------------------- models


def test_model_register_and_promote(tracker, backend_env):
    import torch

    torch.manual_seed(0)
    run_id = tracker.start_run("model")
    uri = tracker.log_pytorch_model(torch.nn.Linear(3, 2), "model",
                                    input_example=np.random.default_rng(0).random((2, 3), dtype=np.float32))
    assert uri == f"runs:/{run_id}/model"
    assert {"model/MLmodel", "model/input_example.json"} <= {p for p, _ in tracker.list_artifacts("model")}

    version = tracker.register_model(backend_env.model_name, f"runs://{run_id}/model", description="seed URI")
    assert version == 1
    assert tracker.register_model(model_uri=uri) == 1  # idempotent, default name from settings
    mv = tracker.client.get_model_version(backend_env.model_name, "1")
    assert mv.status == "READY" and mv.run_id == run_id and mv.description == "seed URI"

    tracker.transition_model_stage(backend_env.model_name, version, "Production")
    assert tracker.client.get_model_version_by_alias(backend_env.model_name, "production").version in (1, "1")
    tracker.transition_model_stage(version=version, stage="staging")
    aliases = tracker.client.get_model_version(backend_env.model_name, "1").aliases
    assert {"production", "staging"} <= set(aliases)

    with pytest.raises(ConfigError, match="Nowhere"):
        tracker.transition_model_stage(backend_env.model_name, version, "Nowhere")
    with pytest.raises(NotFound):
        tracker.transition_model_stage(backend_env.model_name, 99, "Production")
    tracker.end_run()

    empty = tracker.start_run("no-model")
    with pytest.raises(NotFound, match="no model"):
        tracker.register_model(model_uri=f"runs:/{empty}/model")
    tracker.end_run()
