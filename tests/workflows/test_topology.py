"""The production topology as local processes: PostgreSQL, moto's S3 server standing in for
MinIO, and a real `mlflow server` proxying artifacts. heimdall reaches it over HTTP with no
S3 credentials, exactly like a GPU box (docker/docker-compose.yml runs the same three roles)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.services import free_port
from tests.training.conftest import TINY, run_heimdall

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TINY_TRAIN = [*TINY, "--epochs", "1"]
SMALL_MODEL = {"HEIMDALL_TRAINING__BACKBONE": "test_convnext", "HEIMDALL_TRAINING__PRETRAINED": "false"}


@pytest.fixture
def gpu_box_env(mlflow_server, tmp_path) -> dict[str, str]:
    """What a GPU box has: the server's URL, an experiment and model name. No AWS_* at all."""
    name = f"topology-{tmp_path.name}"
    env = {"MLFLOW_TRACKING_URI": mlflow_server.url, "HEIMDALL_TRACKING__EXPERIMENT": name,
           "HEIMDALL_TRACKING__MODEL_NAME": f"{name}-model", **SMALL_MODEL}
    assert not any(k.startswith("AWS_") for k in os.environ)
    return env


def rest(url: str, path: str, body: dict) -> dict:
    """Call the MLflow REST API: GET with a query for get-… endpoints, POST with JSON otherwise."""
    if "/get" in path:
        from urllib.parse import urlencode

        request = urllib.request.Request(f"{url}/api/2.0/mlflow/{path}?{urlencode(body)}")
    else:
        request = urllib.request.Request(f"{url}/api/2.0/mlflow/{path}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_gpu_box_path_verify_train_best_register_promote_consume(gpu_box_env, mlflow_server, s3_server, tmp_path):
    verify = run_heimdall(["verify", "--full", "--json"], gpu_box_env, tmp_path)
    report = json.loads(verify.stdout)
    assert verify.returncode == 0, [c for c in report["checks"] if not c["ok"]]

    trained = run_heimdall(["train", *TINY_TRAIN, "--json", "--progress", "none"], gpu_box_env, tmp_path)
    assert trained.returncode == 0, trained.stderr[-2000:]
    run_id = trained.json()["run_id"]

    best = run_heimdall(["runs", "best", "--metric", "val/loss", "-q"], gpu_box_env, tmp_path)
    assert best.returncode == 0 and best.stdout.strip() == run_id, best.stderr
    version = run_heimdall(["model", "register", "--run-id", run_id, "-q"], gpu_box_env, tmp_path)
    assert version.returncode == 0, version.stderr
    promoted = run_heimdall(["model", "promote", "--version", version.stdout.strip(), "--stage", "Production",
                             "--require", "metrics.best/val_loss < 100", "-q"], gpu_box_env, tmp_path)
    assert promoted.returncode == 0, promoted.stderr

    # Artifacts went through the server into the bucket.
    keys = s3_server.list_keys("heimdall-mlflow")
    assert any(run_id in k and k.endswith("model/MLmodel") for k in keys)

    # A consumer loads the production model with plain MLflow, over the same server.
    model_name = gpu_box_env["HEIMDALL_TRACKING__MODEL_NAME"]
    code = (
        "import mlflow, numpy as np\n"
        "from heimdall_cli.data.synth import example_input\n"
        f"m = mlflow.pyfunc.load_model('models:/{model_name}@production')\n"
        "p = np.asarray(m.predict(example_input(3, 5)))\n"
        "print(p.shape, bool((p[:, 0] > 42).all() and (p[:, 2:] > 0).all()))\n"
    )
    consumer = subprocess.run([sys.executable, "-c", code], env={**os.environ, **gpu_box_env}, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
    assert consumer.returncode == 0, consumer.stderr[-2000:]
    assert consumer.stdout.strip() == "(3, 4) True"

    # The UI is the server: its REST API lists the heimdall experiment and the run.
    experiment = rest(mlflow_server.url, "experiments/get-by-name",
                      {"experiment_name": gpu_box_env["HEIMDALL_TRACKING__EXPERIMENT"]})["experiment"]
    runs = rest(mlflow_server.url, "runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
    assert [r["info"]["run_id"] for r in runs] == [run_id]


def test_heimdall_ui_on_the_database_keeps_credentials_off_the_command_line(postgres_db, s3_server, tmp_path):
    password = "Ui-Pa55word-Never-Shown"
    env = {"MLFLOW_TRACKING_URI": postgres_db.uri_with_password(password),
           "HEIMDALL_TRACKING__EXPERIMENT": "ui-check", **s3_server.heimdall_env("s3://heimdall-mlflow/ui"),
           **SMALL_MODEL}
    made = run_heimdall(["verify", "--full", "--json"], env, tmp_path)
    assert made.returncode == 0, made.stdout[-2000:]
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).with_name("heimdall")), "ui", "--port", str(port)],
                            env={**os.environ, **env}, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        printed = proc.stdout.readline().strip()
        assert printed.startswith(f"http://localhost:{port}/#/experiments/")  # opens the training view
        assert printed.endswith("/runs?workflowType=machine_learning")
        url = printed.split("/#", 1)[0]
        deadline = time.monotonic() + 90
        while True:
            try:
                experiment = rest(url, "experiments/get-by-name", {"experiment_name": "ui-check"})["experiment"]
                break
            except OSError:
                assert time.monotonic() < deadline, "UI did not come up"
                time.sleep(1)
        assert experiment["name"] == "ui-check"
        cmdlines = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True).stdout
        assert f"--port {port}" in cmdlines
        assert password not in cmdlines and "AWS_SECRET" not in cmdlines
    finally:
        os.killpg(proc.pid, 15)
        out, err = proc.communicate(timeout=30)
    assert password not in out + err


def test_example_pipeline_script_runs_green_on_the_cpu(gpu_box_env, tmp_path):
    env = {**gpu_box_env, "HEIMDALL_CONFIG": str(ROOT / "configs" / "quickstart.yaml"), "RUN_NAME": "pipeline-ci",
           "HEIMDALL": str(Path(sys.executable).with_name("heimdall")),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "pipeline.sh"), "data.samples=600", "--epochs", "1"],
                          env={**os.environ, **env}, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    version = proc.stdout.strip()
    assert version.isdigit()
    assert "is now production" in proc.stderr
