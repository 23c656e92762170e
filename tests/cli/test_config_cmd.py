"""``heimdall config show [--json] [--explain]``: resolved values, their sources, secrets masked."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from heimdall_cli.cli import app

PASSWORD = "Sup3r-S3cret-PW"
S3_SECRET = "S3-Secr3t-Key-XYZ"
S3_KEY_ID = "AKIA-Secr3t-ID"
WIDE = {"COLUMNS": "250"}  # no wrapping of Rich tables in assertions


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, ["config", "show", *args], env={**WIDE, **(env or {})})


def test_show_prints_the_embedded_defaults(runner):
    result = invoke(runner)
    assert result.exit_code == 0, result.output
    assert "tracking.uri" in result.stdout and "sqlite:///mlflow.db" in result.stdout
    assert "training.backbone" in result.stdout and "convnext_large" in result.stdout
    assert "description" not in result.stdout  # only with --explain
    assert result.stderr == ""


def test_show_json_is_one_document_on_stdout(runner):
    result = invoke(runner, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"tracking", "storage", "training", "data", "sweep"}
    assert data["tracking"]["uri"] == "sqlite:///mlflow.db"
    assert data["tracking"]["experiment"] == "heimdall-localization"
    assert data["training"]["epochs"] == 100
    assert data["data"]["world"]["tx_power_dbm"] == [30.0, 40.0]
    assert result.stderr == ""


def test_explain_names_every_kind_of_source(runner, tmp_path):
    config = tmp_path / "profile.yaml"
    config.write_text("training:\n  epochs: 5\n  batch_size: 8\n  seed: 1\n  learning_rate: 0.5\n")
    (tmp_path / ".env").write_text("HEIMDALL_TRAINING__BATCH_SIZE=16\nMLFLOW_S3_ENDPOINT_URL=http://minio:9000\n")
    env = {"HEIMDALL_TRAINING__SEED": "3", "MLFLOW_TRACKING_URI": "sqlite:///env.db"}
    result = invoke(runner, "training.learning_rate=0.25", "--config", str(config), "--explain", "--json",
                    "--tracking-uri", "sqlite:///flag.db", env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    values, sources = data["settings"], data["sources"]
    assert sources["training.weight_decay"] == "default" and values["training"]["weight_decay"] == 0.05
    assert sources["training.epochs"] == f"file {config}" and values["training"]["epochs"] == 5
    assert sources["training.batch_size"] == ".env" and values["training"]["batch_size"] == 16
    assert sources["storage.s3_endpoint_url"] == ".env (MLFLOW_S3_ENDPOINT_URL)"
    assert sources["training.seed"] == "environment (HEIMDALL_TRAINING__SEED)" and values["training"]["seed"] == 3
    assert sources["training.learning_rate"] == "flag" and values["training"]["learning_rate"] == 0.25
    assert sources["tracking.uri"] == "flag" and values["tracking"]["uri"] == "sqlite:///flag.db"
    assert set(sources) >= {"data.world.n_mels", "storage.secret_access_key", "training.progress"}


def test_explain_table_shows_sources_and_descriptions(runner, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("tracking:\n  experiment: from-file\n")
    result = invoke(runner, "--config", str(config), "--explain", env={"MLFLOW_TRACKING_URI": "sqlite:///x.db"})
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") >= 4}
    assert f"file {config}" in lines["tracking.experiment"] and "from-file" in lines["tracking.experiment"]
    assert "environment (MLFLOW_TRACKING_URI)" in lines["tracking.uri"]
    assert "default" in lines["training.epochs"] and "Maximum number of epochs" in lines["training.epochs"]


def test_environment_beats_config_file_and_flag_beats_environment(runner, tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"tracking": {"experiment": "file"}, "training": {"epochs": 2}}))
    env = {"HEIMDALL_TRACKING__EXPERIMENT": "env", "HEIMDALL_TRAINING__EPOCHS": "4"}
    result = invoke(runner, "training.epochs=6", "--config", str(config), "--json", env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["tracking"]["experiment"], data["training"]["epochs"]) == ("env", 6)


@pytest.mark.parametrize("mode", [[], ["--explain"], ["--json"], ["--json", "--explain"]])
def test_secrets_are_masked_everywhere(runner, tmp_path, mode):
    (tmp_path / ".env").write_text(f"HEIMDALL_STORAGE__ACCESS_KEY_ID={S3_KEY_ID}\n")
    env = {
        "MLFLOW_TRACKING_URI": f"postgresql+psycopg://heimdall:{PASSWORD}@db.example:5432/mlflow",
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
    }
    result = invoke(runner, *mode, env=env)
    assert result.exit_code == 0, result.output
    for secret in (PASSWORD, S3_SECRET, S3_KEY_ID):
        assert secret not in result.stdout and secret not in result.stderr
    assert "***" in result.stdout
    assert "postgresql+psycopg://heimdall@db.example:5432/mlflow" in result.stdout  # password moved out
    if "--json" in mode:
        data = json.loads(result.stdout)
        settings = data.get("settings", data)
        assert settings["tracking"]["password"] == "***"
        assert settings["storage"]["secret_access_key"] == "***"
        assert settings["storage"]["access_key_id"] == "***"
        if "--explain" in mode:
            assert data["sources"]["tracking.password"] == "environment (MLFLOW_TRACKING_URI)"
            assert data["sources"]["storage.secret_access_key"] == "environment (AWS_SECRET_ACCESS_KEY)"


def test_bad_override_and_missing_file_are_usage_errors(runner, tmp_path):
    result = invoke(runner, "training.epochs")
    assert result.exit_code == 2 and "KEY=VALUE" in result.stderr
    result = invoke(runner, "nosection.x=1")
    assert result.exit_code == 2 and "nosection" in result.stderr
    result = invoke(runner, "--config", str(tmp_path / "absent.yaml"))
    assert result.exit_code == 2 and "absent.yaml" in result.stderr
    assert result.stdout == ""
