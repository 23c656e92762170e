"""`heimdall train` against PostgreSQL + S3 (direct) and against an `mlflow server` (proxied artifacts)."""

from __future__ import annotations

import pytest

from tests.training.conftest import TINY, history, run_heimdall

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def resolve_alias_from(c, run_id: str, dst):
    """Download the run's checkpoints and follow last.ckpt's alias, as ``train --resume`` does."""
    from heimdall_cli.training.uploads import resolve_alias

    c.download_artifacts(run_id, "checkpoints", str(dst))
    found = resolve_alias(dst / "checkpoints", "last.ckpt")
    assert found is not None
    return found


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


@pytest.mark.parametrize("backend_env", ["postgres_s3"], indirect=True)
def test_train_postgres_s3_with_a_dataset_read_from_s3(backend_env, s3_server, tmp_path):
    dataset = f"s3://heimdall-mlflow/{backend_env.s3_prefix}/datasets/rf-600"
    made = run_heimdall(["data", "synth", "--out", dataset, "--samples", "600", "--shard-size", "256"],
                        backend_env, tmp_path)
    assert made.returncode == 0, made.stderr
    result = run_heimdall(["train", *TINY, "--data", dataset, "--epochs", "2", "--json", "--progress", "none"],
                          backend_env, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = result.json()
    c = _client(backend_env.tracking_uri)
    run = c.get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith(f"s3://heimdall-mlflow/{backend_env.s3_prefix}/")
    assert sorted(i.dataset.name for i in run.inputs.dataset_inputs) == ["rf-600/test", "rf-600/train", "rf-600/val"]
    assert [s for s, _ in history(c, summary["run_id"], "train/loss")] == list(range(summary["steps"]))
    keys = s3_server.list_keys("heimdall-mlflow", prefix=backend_env.s3_prefix)
    run_keys = [k for k in keys if summary["run_id"] in k]
    assert any(k.endswith("checkpoints/last.ckpt.alias.json") for k in run_keys), "last = top-1, stored once"
    assert any(k.endswith("model/MLmodel") for k in run_keys)
    assert any(k.endswith("plots/error_cdf.png") for k in run_keys)
    checkpoints = [k for k in run_keys if "/checkpoints/" in k]
    assert len(checkpoints) == 2, "top-1 + last; evicted deleted from S3"
    s3 = s3_server.client()
    ckpt = [k for k in checkpoints if k.endswith(".ckpt")]
    assert len(ckpt) == 1 and s3.head_object(Bucket="heimdall-mlflow", Key=ckpt[0])["ContentLength"] > 100_000

    # Resume on another box: last.ckpt comes from S3 through the alias; registering finds the model.
    resumed = run_heimdall(["train", *TINY, "--data", dataset, "--epochs", "3", "--resume", summary["run_id"],
                            "--json", "--progress", "none", "training.output_dir=elsewhere"], backend_env, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.json()["steps"] > summary["steps"] and resumed.json()["epochs"] == 3
    assert [s for s, _ in history(c, summary["run_id"], "train/loss")] == list(range(resumed.json()["steps"]))
    keys = [k for k in s3_server.list_keys("heimdall-mlflow", prefix=backend_env.s3_prefix)
            if summary["run_id"] in k and "/checkpoints/" in k]
    assert len(keys) == 2 and any(k.endswith("last.ckpt.alias.json") for k in keys), keys
    registered = run_heimdall(["model", "register", "--run-id", summary["run_id"], "--json"], backend_env, tmp_path)
    assert registered.returncode == 0, registered.stderr[-2000:]


@pytest.mark.parametrize("backend_env", ["http"], indirect=True)
def test_train_through_the_tracking_server_without_s3_credentials(backend_env, s3_server, tmp_path):
    assert not any(k.startswith("AWS_") or "S3" in k for k in backend_env)
    result = run_heimdall(["train", *TINY, "--epochs", "1", "--json", "--progress", "none",
                           "tracking.system_metrics=false"], backend_env, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_id = result.json()["run_id"]
    c = _client(backend_env.tracking_uri)
    run = c.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert not any(k.startswith("system/") for k in run.data.metrics), "system metrics off"
    assert "perf/steps_per_s" in run.data.metrics
    names = [a.path for a in c.list_artifacts(run_id, "checkpoints")]
    assert "checkpoints/last.ckpt.alias.json" in names
    with_alias = resolve_alias_from(c, run_id, tmp_path / "dl")
    assert with_alias.stat().st_size > 100_000
    assert any(run_id in k and k.endswith("model/MLmodel") for k in s3_server.list_keys("heimdall-mlflow"))
