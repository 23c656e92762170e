"""`heimdall train` end to end on the embedded backend: what lands in MLflow, and the progress mirror."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.training.conftest import TINY, client, history, local_env, run_heimdall, shown_points

pytestmark = pytest.mark.slow

EPOCHS = 2


@pytest.fixture(scope="module")
def trained(module_dir):
    env = local_env(module_dir)
    result = run_heimdall(["train", *TINY, "--epochs", str(EPOCHS), "--run-name", "e2e-sqlite", "--json",
                           "--progress", "plain", "training.progress_interval_s=0.1",
                           "tracking.system_metrics_interval_s=1"], env, module_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return env, result


def test_json_summary_is_the_only_stdout(trained):
    _, result = trained
    summary = result.json()
    assert summary["status"] == "FINISHED"
    assert summary["run_id"] and summary["model_uri"] == f"runs:/{summary['run_id']}/model"
    assert summary["epochs"] == EPOCHS and summary["steps"] > 0
    assert "best/val_loss" in summary["best"] and "test/error_m_p50" in summary["test"]
    assert "Traceback" not in result.stderr


def test_exactly_one_run_with_params_dataset_and_tags(trained):
    env, result = trained
    c = client(env)
    experiment = c.get_experiment_by_name("e2e")
    runs = c.search_runs([experiment.experiment_id])
    assert len(runs) == 1, "one MLflow run per training"
    run = runs[0]
    assert run.info.run_id == result.json()["run_id"] and run.info.status == "FINISHED"
    assert run.info.run_name == "e2e-sqlite"
    params = run.data.params
    assert params["training.backbone"] == "test_convnext"
    assert params["training.pretrained"] == "False"
    assert params["data.samples"] == "600" and len(params["data.digest"]) == 64
    assert not any("password" in k or "secret" in k or "access_key" in k for k in params)
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}  # context -> dataset
    assert sorted(inputs) == ["test", "training", "validation"]
    assert all(d.name.startswith("synthetic-") for d in inputs.values())


def test_metrics_have_the_documented_names_and_counts(trained):
    env, result = trained
    c, run_id, steps = client(env), result.json()["run_id"], result.json()["steps"]
    train_loss = history(c, run_id, "train/loss")
    assert [s for s, _ in train_loss] == list(range(steps)), "train/loss once per step, no gaps, no duplicates"
    for key in ("val/loss", "val/error_m_mean", "val/error_m_p50", "val/error_m_p68", "val/error_m_p95",
                "val/coverage_68", "lr"):
        assert len(history(c, run_id, key)) == EPOCHS, key
    for key in ("test/loss", "test/error_m_p50", "test/error_m_p95", "test/coverage_68",
                "test/baseline_centre_error_m_p50", "test/baseline_rssi_error_m_p50"):
        assert len(history(c, run_id, key)) == 1, key
    val_loss = [v for _, v in history(c, run_id, "val/loss")]
    assert c.get_run(run_id).data.metrics["best/val_loss"] == pytest.approx(min(val_loss))
    p50 = c.get_run(run_id).data.metrics["val/error_m_p50"]
    assert 1_000 < p50 < 400_000, "errors are metres (haversine), not degrees"
    for key in ("perf/steps_per_s", "perf/samples_per_s"):
        points = history(c, run_id, key)
        assert len(points) == EPOCHS and all(v > 0 for _, v in points), key
    rates = dict(history(c, run_id, "perf/samples_per_s"))
    assert rates == pytest.approx({s: 32 * v for s, v in history(c, run_id, "perf/steps_per_s")}), "batch 32"


def test_system_metrics_from_mlflows_monitors_through_the_tracker(trained):
    env, result = trained
    c, run_id = client(env), result.json()["run_id"]
    metrics = c.get_run(run_id).data.metrics
    system = {k for k in metrics if k.startswith("system/")}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes",
            "system/disk_usage_percentage", "system/network_receive_megabytes"} <= system
    assert not any(k.startswith("system/gpu_") for k in system), "no GPU in this run: none monitored"
    cpu = history(c, run_id, "system/cpu_utilization_percentage")
    assert [s for s, _ in cpu] == list(range(len(cpu))) and len(cpu) >= 2, "one series of samples, no duplicates"
    assert not any(k.startswith("system/") for k, _, _ in shown_points(result.stderr)), "not training progress"


def test_system_metrics_show_in_runs_show_and_runs_compare(trained, module_dir):
    env, result = trained
    run_id = result.json()["run_id"]
    shown = run_heimdall(["runs", "show", run_id[:8], "--json"], env, module_dir)
    assert shown.returncode == 0, shown.stderr
    cpu = shown.json()["metrics"]["system/cpu_utilization_percentage"]
    assert 0 <= cpu <= 100 * 64
    human = run_heimdall(["runs", "show", run_id[:8]], env, module_dir)
    assert human.returncode == 0 and "system/system_memory_usage_megabytes" in human.stdout
    compared = run_heimdall(["runs", "compare", run_id, run_id[:8], "--json"], env, module_dir)
    assert compared.returncode == 0, compared.stderr
    assert compared.json()["metrics"]["system/cpu_utilization_percentage"] == [cpu, cpu]


def test_artifacts_config_checkpoints_model_plots(trained):
    env, result = trained
    c, run_id = client(env), result.json()["run_id"]

    def files(path=None):
        out = []
        for info in c.list_artifacts(run_id, path):
            out += files(info.path) if info.is_dir else [info.path]
        return out

    stored = set(files())
    assert "config/resolved.yaml" in stored
    assert {"plots/error_cdf.png", "plots/prediction_map.png", "model/MLmodel"} <= stored
    checkpoints = sorted(p for p in stored if p.startswith("checkpoints/"))
    assert "checkpoints/last.ckpt.alias.json" in checkpoints, "last.ckpt equals the top-1 file: stored once"
    assert len(checkpoints) == 2, f"top-1 plus last, evicted ones deleted: {checkpoints}"
    assert sorted(f"runs:/{run_id}/{p}" for p in checkpoints) == sorted(result.json()["checkpoints"])


def test_logged_model_predicts_latitude_longitude_and_sigma(trained):
    env, result = trained
    import mlflow.pyfunc
    from mlflow.models import Model

    from heimdall_cli.data.synth import example_input

    uri = result.json()["model_uri"]
    with mlflow_tracking(env):
        info = Model.load(uri)
        assert info.signature is not None
        model = mlflow.pyfunc.load_model(uri)
    pred = np.asarray(model.predict(example_input(5, seed=123)))
    assert pred.shape == (5, 4)
    assert np.all((pred[:, 0] > 42) & (pred[:, 0] < 48) & (pred[:, 1] > 5) & (pred[:, 1] < 12))
    assert np.all(pred[:, 2:] > 0)


def test_progress_mirrors_exactly_what_mlflow_holds(trained):
    env, result = trained
    c, run_id = client(env), result.json()["run_id"]
    shown = shown_points(result.stderr)
    assert len({k for k, _, _ in shown}) >= 10, "plain progress shows the logged metrics"
    for key, step, printed in shown:
        stored = dict(history(c, run_id, key))
        assert step in stored, f"{key}@{step} shown but not in MLflow"
        assert math.isclose(float(printed), stored[step], rel_tol=5e-6), (key, step, printed, stored[step])


def test_dry_run_logs_nothing(module_dir, tmp_path):
    env = local_env(tmp_path)
    result = run_heimdall(["train", *TINY, "--dry-run", "--json"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    doc = result.json()
    assert doc["model"]["backbone"] == "test_convnext" and doc["model"]["parameters"] > 0
    assert doc["settings"]["training"]["backbone"] == "test_convnext"
    assert not (tmp_path / "mlflow.db").exists()


class mlflow_tracking:
    """Point MLflow's global tracking URI at the test store for the duration of a block."""

    def __init__(self, env: dict[str, str]) -> None:
        self.uri = env["HEIMDALL_TRACKING__URI"]

    def __enter__(self):
        import mlflow

        self.old = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(self.uri)

    def __exit__(self, *exc):
        import mlflow

        mlflow.set_tracking_uri(self.old)
