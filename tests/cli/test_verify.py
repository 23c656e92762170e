"""``heimdall verify``: passes on every backend, fails with the right exit code and reason on broken ones."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from heimdall_cli.cli import app
from tests.conftest import S3_BUCKET, require_postgres
from tests.services import PostgresDatabase, free_port, venv_executable

CHECKS = {"configuration", "tracking backend", "experiment", "artifact store", "torch / GPUs", "libraries",
          "backbone"}
PASSWORD = "Sup3r-S3cret-PW"
# Offline box: the default ConvNeXt-Large has no cached pretrained weights (its own test below).
NO_DOWNLOAD = {"HEIMDALL_TRAINING__PRETRAINED": "false", "COLUMNS": "200"}


def verify(*args: str, env: dict[str, str] | None = None):
    result = CliRunner().invoke(app, ["verify", *args], env={**NO_DOWNLOAD, **(env or {})})
    assert "Traceback" not in result.output
    return result


def verify_json(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict]:
    result = verify("--json", *args, env=env)
    data = json.loads(result.stdout)  # one JSON document, nothing else on stdout
    assert data["exit_code"] == result.exit_code
    return result.exit_code, {c["name"]: c for c in data["checks"]} | {"_data": data}


def run_cli(*args: str, env: dict[str, str], timeout: float = 30) -> tuple[subprocess.CompletedProcess, float]:
    """The installed console script in a fresh process, timed."""
    start = time.monotonic()
    proc = subprocess.run([venv_executable("heimdall"), *args], env={**os.environ, **NO_DOWNLOAD, **env},
                          capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - start


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A 'dead host': accepts TCP connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in accepted:
        conn.close()
    sock.close()


# --------------------------------------------------------------------------- passing


@pytest.mark.slow
def test_verify_passes_on_the_embedded_sqlite_default(tmp_path):
    result = verify()
    assert result.exit_code == 0, result.output
    for name in CHECKS:
        assert name in result.stdout
    assert "✗" not in result.stdout and result.stdout.count("✓") == len(CHECKS)
    assert "all checks passed" in result.stdout
    assert (tmp_path / "mlflow.db").is_file()  # the default store, created where we stand


def test_verify_json_schema():
    code, checks = verify_json()
    data = checks.pop("_data")
    assert code == 0 and data["ok"] is True and isinstance(data["seconds"], float)
    assert set(checks) == CHECKS
    for check in checks.values():
        assert set(check) == {"name", "ok", "detail", "hint", "seconds", "exit_code"}
        assert check["ok"] is True and check["exit_code"] == 0 and check["detail"]
    assert "sqlite" in checks["tracking backend"]["detail"] and "schema current" in checks["tracking backend"]["detail"]
    assert "random init" in checks["backbone"]["detail"]


@pytest.mark.slow
def test_verify_full_on_every_backend(backend_env, request):
    code, checks = verify_json("--full")
    assert code == 0, checks
    assert checks["throwaway run"]["ok"], checks["throwaway run"]
    assert backend_env.experiment in checks["experiment"]["detail"]

    from mlflow import MlflowClient

    from heimdall_cli.settings import load_settings

    client = MlflowClient(load_settings().tracking.connection_uri())
    experiment = client.get_experiment_by_name(backend_env.experiment)
    runs = client.search_runs([experiment.experiment_id], run_view_type=3)  # ALL, deleted included
    assert [r.info.lifecycle_stage for r in runs] == ["deleted"]  # the throwaway run is gone
    if backend_env.kind == "postgres_s3":
        s3 = request.getfixturevalue("s3_server")
        keys = s3.list_keys(S3_BUCKET, backend_env.s3_prefix + "/")
        assert not [k for k in keys if ".heimdall-probe" in k or k.endswith("probe.txt")], keys


def test_offline_default_pretrained_weights_fail_the_backbone_check():
    result = CliRunner().invoke(app, ["verify", "--json"], env={"COLUMNS": "200"})
    data = json.loads(result.stdout)
    backbone = next(c for c in data["checks"] if c["name"] == "backbone")
    assert result.exit_code == 1 and not backbone["ok"]
    assert "--no-pretrained" in backbone["hint"]


# --------------------------------------------------------------------------- dead backends

# Not minutes of retries: verify fails in seconds. Its wall time also holds the torch and timm
# imports of the runtime checks (about 6 s on the 2-core box, more when CI is loaded).
VERIFY_BOUND_S = 20


@pytest.mark.parametrize("where", ["closed port", "silent host"])
@pytest.mark.slow
def test_dead_postgres_fails_with_exit_3_in_seconds(where, silent_server):
    port = free_port() if where == "closed port" else silent_server
    uri = f"postgresql+psycopg://heimdall:{PASSWORD}@127.0.0.1:{port}/mlflow"
    proc, seconds = run_cli("verify", env={"MLFLOW_TRACKING_URI": uri})
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert seconds < VERIFY_BOUND_S, f"verify took {seconds:.1f} s against a {where}"
    assert f"127.0.0.1:{port}" in proc.stdout
    assert PASSWORD not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_silent_tracking_server_fails_with_exit_3_in_seconds(silent_server):
    proc, seconds = run_cli("verify", "--json", env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{silent_server}"})
    assert proc.returncode == 3 and seconds < VERIFY_BOUND_S, (seconds, proc.stderr)
    tracking = next(c for c in json.loads(proc.stdout)["checks"] if c["name"] == "tracking backend")
    assert not tracking["ok"] and tracking["exit_code"] == 3
    assert tracking["seconds"] < 10, tracking


@pytest.mark.integration
def test_wrong_s3_credentials_exit_3_naming_the_bucket(s3_auth_server):
    env = {**s3_auth_server.heimdall_env(f"s3://{S3_BUCKET}/x"),
           "HEIMDALL_STORAGE__SECRET_ACCESS_KEY": "wrong-" + PASSWORD}
    code, checks = verify_json(env=env)
    assert code == 3
    artifacts = checks["artifact store"]
    assert not artifacts["ok"] and artifacts["exit_code"] == 3
    assert f"s3://{S3_BUCKET}" in artifacts["detail"] and "SignatureDoesNotMatch" in artifacts["detail"]
    assert PASSWORD not in json.dumps(checks)
    assert checks["tracking backend"]["ok"]  # only the failing part is blamed


@pytest.mark.integration
def test_right_s3_credentials_pass(s3_auth_server):
    code, checks = verify_json(env=s3_auth_server.heimdall_env(f"s3://{S3_BUCKET}/ok"))
    assert code == 0 and checks["artifact store"]["ok"], checks["artifact store"]


@pytest.mark.integration
def test_missing_bucket_exit_3_naming_the_bucket(s3_server):
    code, checks = verify_json(env=s3_server.heimdall_env("s3://no-such-bucket-heimdall/prefix"))
    assert code == 3
    artifacts = checks["artifact store"]
    assert not artifacts["ok"] and "no-such-bucket-heimdall" in artifacts["detail"]
    assert "does not exist" in artifacts["detail"] and "Create the bucket" in artifacts["hint"]


@pytest.mark.integration
def test_old_schema_exit_3_naming_mlflow_db_upgrade():
    require_postgres()
    with PostgresDatabase() as db:
        from mlflow import MlflowClient

        MlflowClient(db.uri).search_experiments()  # MLflow creates the current schema
        with db.connect() as conn:  # ... which we then make look old
            conn.execute("UPDATE alembic_version SET version_num = '0c779009ac13'")
        code, checks = verify_json(env={"MLFLOW_TRACKING_URI": db.uri})
    tracking = checks["tracking backend"]
    assert code == 3 and not tracking["ok"] and tracking["exit_code"] == 3
    assert "out of date" in tracking["detail"]
    assert "mlflow db upgrade" in tracking["hint"]
