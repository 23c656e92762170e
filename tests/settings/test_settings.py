"""Settings: precedence and merging, sources, validation messages, secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from heimdall_cli.errors import ConfigError
from heimdall_cli.settings import explain, load_settings, parse_overrides, run_params

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_are_the_embedded_backend_and_seed_values():
    s = load_settings(env_file=None)
    assert s.tracking.uri == "sqlite:///mlflow.db"
    assert s.tracking.experiment == "heimdall-localization"
    assert (s.training.backbone, s.training.learning_rate, s.training.batch_size, s.training.epochs) == (
        "convnext_large", 1e-3, 32, 100)
    assert s.training.pretrained is True


def test_precedence_flags_env_dotenv_file_defaults(tmp_path, monkeypatch):
    cfg = write(tmp_path / "c.yaml", "training:\n  epochs: 5\n  batch_size: 8\n  seed: 1\n  learning_rate: 0.5\n")
    write(tmp_path / ".env", "HEIMDALL_TRAINING__BATCH_SIZE=16\nHEIMDALL_TRAINING__SEED=2\n"
                             "HEIMDALL_TRAINING__LEARNING_RATE=0.25\n")
    monkeypatch.setenv("HEIMDALL_TRAINING__SEED", "3")
    monkeypatch.setenv("HEIMDALL_TRAINING__LEARNING_RATE", "0.125")
    r = load_settings(cfg, {"training": {"learning_rate": 0.0625}}, env_file=tmp_path / ".env")
    t = r.training
    assert (t.epochs, t.batch_size, t.seed, t.learning_rate, t.weight_decay) == (5, 16, 3, 0.0625, 0.05)
    assert r.sources["training.epochs"] == f"file {cfg}"
    assert r.sources["training.batch_size"] == str(tmp_path / ".env")
    assert r.sources["training.seed"].startswith("environment (HEIMDALL_")
    assert r.sources["training.learning_rate"] == "flag"
    rows = {key: source for key, _, source, _ in explain(r)}
    assert rows["training.weight_decay"] == "default"


def test_nested_sections_merge_instead_of_replacing(tmp_path, monkeypatch):
    cfg = write(tmp_path / "c.json", json.dumps({"data": {"world": {"shadowing_db": 4.0}, "samples": 100}}))
    monkeypatch.setenv("HEIMDALL_DATA__WORLD__N_MELS", "16")
    s = load_settings(cfg, env_file=None)
    assert (s.data.world.shadowing_db, s.data.world.n_mels, s.data.samples) == (4.0, 16, 100)
    assert s.data.world.path_loss_exponent == 2.5


def test_standard_variables_and_heimdall_variables(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracker:5000")
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-key")
    s = load_settings(env_file=None)
    assert s.tracking.uri == "http://tracker:5000"
    assert s.storage.s3_endpoint_url == "http://minio:9000"
    assert s.storage.secret_access_key.get_secret_value() == "very-secret-key"
    monkeypatch.setenv("HEIMDALL_TRACKING__URI", "sqlite:///other.db")
    assert load_settings(env_file=None).tracking.uri == "sqlite:///other.db"


def test_password_in_uri_is_moved_to_a_secret(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql+psycopg://heimdall:pa55word-XYZ@db:5432/mlflow")
    r = load_settings(env_file=None)
    t = r.tracking
    assert t.uri == "postgresql+psycopg://heimdall@db:5432/mlflow"
    assert t.password.get_secret_value() == "pa55word-XYZ"
    assert t.connection_uri() == "postgresql+psycopg://heimdall:pa55word-XYZ@db:5432/mlflow"
    shown = " ".join(f"{k}={v}" for k, v, _, _ in explain(r))
    assert "pa55word-XYZ" not in shown
    assert "pa55word-XYZ" not in json.dumps(run_params(r), default=str)
    assert "tracking.password" not in run_params(r)


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    cfg = write(tmp_path / "bad.yaml", "training:\n  epochs: 3\n  batch_size: [1, 2\n")
    with pytest.raises(ConfigError) as e:
        load_settings(cfg, env_file=None)
    assert str(cfg) in e.value.message and ":4:" in e.value.message
    assert e.value.exit_code == 2


def test_unknown_key_and_wrong_type_name_field_value_and_source(tmp_path):
    cfg = write(tmp_path / "c.yaml", "training:\n  epochz: 3\n  batch_size: many\n")
    with pytest.raises(ConfigError) as e:
        load_settings(cfg, env_file=None)
    msg = e.value.message
    assert "training.epochz" in msg and "unknown setting" in msg
    assert "training.batch_size = 'many'" in msg and f"file {cfg}" in msg


def test_secret_values_are_masked_in_validation_errors(monkeypatch):
    monkeypatch.setenv("HEIMDALL_STORAGE__SECRET_ACCESS_KEY", "s3cr3t-value")
    monkeypatch.setenv("HEIMDALL_STORAGE__ADDRESSING_STYLE", "sideways")
    with pytest.raises(ConfigError) as e:
        load_settings(env_file=None)
    assert "storage.addressing_style" in e.value.message
    assert "s3cr3t-value" not in e.value.message


def test_double_scheme_artifact_root_is_rejected():
    with pytest.raises(ConfigError, match="more than one scheme"):
        load_settings(flags={"storage": {"artifact_root": "s3://s3://bucket"}}, env_file=None)


def test_bool_values_from_strings_are_real_booleans(monkeypatch):
    monkeypatch.setenv("HEIMDALL_TRAINING__PRETRAINED", "false")
    assert load_settings(env_file=None).training.pretrained is False
    flags = parse_overrides(["training.pretrained=false"])
    assert load_settings(flags=flags, env_file=None).training.pretrained is False


def test_overrides_parse_nested_keys_and_reject_garbage():
    assert parse_overrides(["training.weight_decay=0.01", "data.world.n_mels=16"]) == {
        "training": {"weight_decay": "0.01"}, "data": {"world": {"n_mels": "16"}}}
    with pytest.raises(ConfigError):
        parse_overrides(["no-equals-sign"])
    with pytest.raises(ConfigError, match="unknown section"):
        parse_overrides(["bogus.key=1"])


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads(path):
    s = load_settings(path, env_file=None)
    assert s.training.backbone
    first = path.read_text().splitlines()[0]
    assert first.startswith("#"), "each config starts with a comment saying what it is for"
    text = path.read_text()
    assert f"--config configs/{path.name}" in text and ("heimdall train" in text or "heimdall sweep start" in text), \
        "and the command that runs it"
