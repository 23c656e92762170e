"""Bad input to `heimdall train`: the documented exit code, one line, no traceback, no run."""

from __future__ import annotations

import time

import numpy as np
import pytest
from typer.testing import CliRunner

from heimdall_cli.cli import app
from tests.training.conftest import TINY, local_env

runner = CliRunner()


def invoke(args, env):
    return runner.invoke(app, args, env=env)


def assert_clean_failure(result, code: int, *needles: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout == "", "errors go to stderr"
    assert result.stderr.startswith("Error: ")
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


@pytest.fixture
def env(tmp_path):
    return local_env(tmp_path)


def no_run_was_created(tmp_path) -> bool:
    db = tmp_path / "mlflow.db"
    if not db.exists():
        return True
    from mlflow import MlflowClient

    c = MlflowClient(f"sqlite:///{db}")
    return all(not c.search_runs([e.experiment_id]) for e in c.search_experiments())


@pytest.mark.parametrize(
    ("args", "code", "needles"),
    [
        (["--backbone", "convnxt_large"], 2, ["Unknown backbone", "convnext_large"]),
        (["--batch-size", "0"], 2, ["training.batch_size = 0 from flag"]),
        (["--epochs", "-3"], 2, ["training.epochs"]),
        (["--devices", "two"], 2, ["training.devices"]),
        (["--data", "/no/such/dataset"], 2, ["/no/such/dataset"]),
        (["training.not_a_field=1"], 2, ["training.not_a_field", "unknown setting"]),
        (["garbage-without-equals"], 2, ["KEY=VALUE"]),
        (["--progress", "fancy"], 2, ["training.progress"]),
    ],
    ids=["unknown-backbone", "batch-size-0", "negative-epochs", "bad-devices", "missing-data-dir",
         "unknown-override", "malformed-override", "bad-progress"],
)
def test_bad_input_exit_code_and_one_line(tmp_path, env, args, code, needles):
    result = invoke(["train", *TINY, *args], env)
    assert_clean_failure(result, code, *needles)
    assert no_run_was_created(tmp_path)


def test_pretrained_weights_offline_fail_in_seconds_naming_the_way_out(tmp_path, env):
    start = time.monotonic()
    result = invoke(["train", "--backbone", "resnet18", "--pretrained", "data.samples=100"], env)
    assert_clean_failure(result, 2, "--pretrained-path", "--no-pretrained")
    assert time.monotonic() - start < 20
    assert no_run_was_created(tmp_path)


def test_corrupt_shard_is_a_configuration_error(tmp_path, env):
    result = invoke(["data", "synth", "--out", str(tmp_path / "ds"), "--samples", "300", "--shard-size", "100"], env)
    assert result.exit_code == 0, result.stderr
    shard = sorted((tmp_path / "ds").glob("shard-*"))[1]
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    shard.write_bytes(bytes(raw))
    result = invoke(["train", *TINY, "--data", str(tmp_path / "ds")], env)
    assert_clean_failure(result, 2, shard.name)
    assert no_run_was_created(tmp_path)


def test_data_synth_is_deterministic_and_trainable_format(tmp_path, env):
    for name in ("a", "b"):
        result = invoke(["data", "synth", "--out", str(tmp_path / name), "--samples", "200", "--seed", "7",
                         "--json"], env)
        assert result.exit_code == 0, result.stderr
    import json

    a = json.loads((tmp_path / "a" / "manifest.json").read_text())
    b = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert a["content_hash"] == b["content_hash"]
    assert a["generator"]["world"]["shadowing_db"] == 6.0
    info = invoke(["data", "info", str(tmp_path / "a"), "--json"], env)
    assert info.exit_code == 0 and json.loads(info.stdout)["samples"] == 200
    first = sorted((tmp_path / "a").glob("shard-*"))[0]
    assert np.load(first)  # a plain numpy archive anyone can read
