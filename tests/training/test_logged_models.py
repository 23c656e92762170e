"""MLflow 3 LoggedModels end to end: a real tiny training, then what a user and two consumers see.

One training per backend (the embedded default and a real ``mlflow server``), then:
the kept checkpoint and the final model are LoggedModels of the run with their files, step
and metrics linked to the validation or test split; evicted checkpoints' models are gone;
the three splits are the run's dataset inputs; ``runs show`` lists the models;
``model register --model`` links a version to its logged model; and a consumer written from
the contract of Heimdall's inference service (plain MLflow + onnxruntime, no heimdall import:
a version in stage Production, ``models:/NAME/Production``, ``model.onnx``, output 0 = lat/lon,
output 1 = σ) reads σ from the ONNX export.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.training.conftest import TINY, run_heimdall

#: Heimdall's inference service, written from its documented contract (not its code).
UPSTREAM_CONSUMER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import mlflow
    import onnxruntime as ort
    from mlflow import MlflowClient

    uri, name, samples = sys.argv[1:4]
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    production = [v for v in client.search_model_versions(f"name='{name}'") if v.current_stage == "Production"]
    if not production:
        sys.exit("no version in stage Production")
    local = mlflow.artifacts.download_artifacts(f"models:/{name}/Production")
    session = ort.InferenceSession(f"{local}/model.onnx", providers=["CPUExecutionProvider"])
    x = np.load(samples).astype(np.float32)
    outputs = session.run([o.name for o in session.get_outputs()], {session.get_inputs()[0].name: x})
    print(json.dumps({"version": production[0].version, "outputs": len(outputs),
                      "prediction": outputs[0].tolist(), "uncertainty": outputs[1].tolist()}))
""")


@pytest.mark.slow
@pytest.mark.parametrize("backend_env", ["sqlite", pytest.param("http", marks=pytest.mark.integration)],
                         indirect=True)
def test_checkpoints_and_final_model_are_logged_models_and_upstream_reads_sigma(backend_env, tmp_path):
    from mlflow import MlflowClient

    env = dict(backend_env)
    trained = run_heimdall(["train", *TINY, "--epochs", "3", "--json"], env, tmp_path)
    assert trained.returncode == 0, trained.stderr
    result = trained.json()
    run_id, final_uri = result["run_id"], result["logged_model"]
    assert final_uri.startswith("models:/m-")

    client = MlflowClient(tracking_uri=backend_env.tracking_uri)
    run = client.get_run(run_id)
    experiment_id = run.info.experiment_id
    models = {m.model_id: m for m in client.search_logged_models([experiment_id],
                                                                 filter_string=f"source_run_id = '{run_id}'")}
    kinds = sorted(m.tags["heimdall.kind"] for m in models.values())
    assert kinds == ["checkpoint", "final"]  # save_top_k=1: one kept checkpoint, and the final model
    # Every validation made a checkpoint model (3 outputs + the final); the evicted ones were deleted.
    outputs = run.outputs.model_outputs
    assert len(outputs) == 4 and len({o.model_id for o in outputs}) == 4
    assert {o.model_id for o in outputs} >= set(models)

    checkpoint = next(m for m in models.values() if m.tags["heimdall.kind"] == "checkpoint")
    final = models[final_uri.removeprefix("models:/")]
    ckpt_name = checkpoint.tags["heimdall.checkpoint"]
    assert [a.path for a in client.list_logged_model_artifacts(checkpoint.model_id)] == [ckpt_name]
    assert f"checkpoints/{ckpt_name}" in [a.path for a in client.list_artifacts(run_id, "checkpoints")]
    assert str(checkpoint.status) in ("READY", "LoggedModelStatus.READY") and checkpoint.params == final.params
    assert checkpoint.params["training.backbone"] == "test_convnext"
    val = {m.key: m for m in checkpoint.metrics}
    assert {"val/loss", "val/error_m_p50"} <= set(val) and val["val/loss"].dataset_name.endswith("/val")
    # the same point as the run's (no second point in the run's history)
    history = client.get_metric_history(run_id, "val/loss")
    assert any(h.step == val["val/loss"].step and h.value == val["val/loss"].value for h in history)
    assert len(history) == 3
    test = {m.key: m for m in final.metrics}
    assert test["test/error_m_p50"].dataset_name.endswith("/test")
    assert test["test/error_m_p50"].value == pytest.approx(result["test"]["test/error_m_p50"])
    assert final.tags["heimdall.from_checkpoint_step"] == checkpoint.tags["heimdall.step"]
    assert "MLmodel" in [a.path for a in client.list_logged_model_artifacts(final.model_id)]

    contexts = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert set(contexts) == {"training", "validation", "test"}
    assert len({d.digest for d in contexts.values()}) == 3 and contexts["validation"].name.endswith("/val")

    shown = run_heimdall(["runs", "show", run_id, "--json", "--no-artifacts"], env, tmp_path)
    assert shown.returncode == 0, shown.stderr
    listed = {m["model_id"]: m for m in shown.json()["logged_models"]}
    assert set(listed) == set(models) and listed[checkpoint.model_id]["step"] == int(checkpoint.tags["heimdall.step"])
    assert listed[checkpoint.model_id]["metrics"]["val/loss"] == pytest.approx(val["val/loss"].value)

    # A checkpoint is not deployable; the final model is, and registering it twice gives one version.
    refused = run_heimdall(["model", "register", "--model", checkpoint.model_id], env, tmp_path)
    assert refused.returncode == 2 and "checkpoint" in refused.stderr and "Traceback" not in refused.stderr
    first = run_heimdall(["model", "register", "--model", final_uri, "-q"], env, tmp_path)
    again = run_heimdall(["model", "register", "--model", final.model_id, "-q"], env, tmp_path)
    by_best = run_heimdall(["model", "register", "--run-id", run_id, "--best-checkpoint", "val/loss", "-q"], env,
                           tmp_path)
    assert first.returncode == again.returncode == by_best.returncode == 0, first.stderr + again.stderr
    version = first.stdout.strip()
    assert again.stdout.strip() == by_best.stdout.strip() == version
    mv = client.get_model_version(backend_env.model_name, version)
    assert mv.tags["heimdall.model_id"] == final.model_id and mv.run_id == run_id
    linked = json.loads(client.get_logged_model(final.model_id).tags["mlflow.modelVersions"])
    assert {"name": backend_env.model_name, "version": int(version)} in linked

    # Upstream's loader: stage Production, models:/NAME/Production, model.onnx, outputs 0 and 1.
    assert run_heimdall(["model", "promote", "--version", version, "--stage", "Production", "-q"], env,
                        tmp_path).returncode == 0
    exported = run_heimdall(["model", "export", "--format", "onnx", "--version", version, "--register", "-q"], env,
                            tmp_path)
    assert exported.returncode == 0, exported.stderr
    onnx_name = env["HEIMDALL_TRACKING__ONNX_MODEL_NAME"]
    promoted = run_heimdall(["model", "promote", "--name", onnx_name, "--version", exported.stdout.strip(),
                             "--stage", "Production", "-q"], env, tmp_path)
    assert promoted.returncode == 0, promoted.stderr
    from mlflow.artifacts import download_artifacts

    example = json.loads(Path(download_artifacts(f"runs:/{run_id}/model/input_example.json",
                                                 tracking_uri=backend_env.tracking_uri)).read_text())
    x = np.asarray(example["inputs"] if isinstance(example, dict) else example, dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "consumer.py").write_text(UPSTREAM_CONSUMER)
    done = subprocess.run([sys.executable, str(tmp_path / "consumer.py"), backend_env.tracking_uri, onnx_name,
                           str(tmp_path / "x.npy")], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    prediction, uncertainty = np.asarray(seen["prediction"]), np.asarray(seen["uncertainty"])
    assert seen["outputs"] == 2 and uncertainty.shape == (len(x), 3)
    assert np.all(np.abs(prediction[:, 0] - 45) < 3) and np.all(np.abs(prediction[:, 1] - 8.5) < 4)  # lat, lon
    np.testing.assert_allclose(uncertainty[:, :2], prediction[:, 2:4])  # σ east/north in metres
    assert np.all(uncertainty[:, :2] > 0) and np.all(uncertainty[:, 2] == 0)
