"""Fixtures for the ``runs`` / ``model`` command tests: real backends, a real tiny training.

``sqlite_world`` and ``pg_s3_world`` (session): a tracking backend (sqlite + local
artifacts, or PostgreSQL + S3 on moto) holding one finished tiny training
(test_convnext, 600 samples, 1 epoch), plus runs carrying a copy of its logged model,
made through the Tracker API in the experiment ``<experiment>-clones`` (``clones``:
two FINISHED, one FAILED).

``world`` (function, parametrized: sqlite, and postgres_s3 as integration) applies one
of them to the environment with model names unique to the test; ``sqlite_only`` and
``pg_world`` apply one. ``cli(...)`` runs ``heimdall`` in-process with typer's
CliRunner (stdout and stderr apart); ``heimdall(world, ...)`` runs the console script.
``run_dir`` (function): a private XDG_RUNTIME_DIR for tests that turn the local registry
server on; servers started there are stopped afterwards.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import S3_BUCKET
from tests.services import DUMMY_ACCESS_KEY_ID, DUMMY_SECRET_ACCESS_KEY

HEIMDALL = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "heimdall")
TINY_TRAINING = {
    "training": {"backbone": "test_convnext", "pretrained": False, "epochs": 1, "batch_size": 32,
                 "progress": "none", "early_stopping_patience": 0, "save_top_k": 1},
    "data": {"samples": 600},
}
_FOREIGN = ("HEIMDALL_", "MLFLOW_", "AWS_")


@dataclass
class World:
    """A tracking backend with a trained run in it."""

    kind: str  # sqlite | postgres_s3
    env: dict[str, str]  # HEIMDALL_* variables selecting the backend
    experiment: str
    run_id: str = ""  # the tiny training
    clones: dict[str, str] = field(default_factory=dict)  # name -> run id (model copied from run_id)
    model_dir: Path | None = None  # local copy of the trained model
    tmp: Path | None = None

    def flags(self, **extra: Any) -> dict[str, Any]:
        """Settings flags equivalent to ``env`` (for load_settings without the environment)."""
        flags: dict[str, Any] = {}
        for name, value in {**self.env, **extra}.items():
            section, key = name.removeprefix("HEIMDALL_").lower().split("__", 1)
            flags.setdefault(section, {})[key] = value
        return flags

    def settings(self, **extra: str) -> Any:
        from heimdall_cli.settings import load_settings

        return load_settings(flags=self.flags(**extra), env_file=None)

    def tracker(self, **extra: str) -> Any:
        from heimdall_cli.tracking import open_tracker

        return open_tracker(self.settings(**extra))

    @property
    def uri(self) -> str:
        return self.env["HEIMDALL_TRACKING__URI"]

    def consumer_env(self) -> dict[str, str]:
        """What a plain MLflow consumer needs: the tracking URI (and S3 endpoint + keys)."""
        env = {"MLFLOW_TRACKING_URI": self.uri}
        if self.kind == "postgres_s3":
            env.update({"MLFLOW_S3_ENDPOINT_URL": self.env["HEIMDALL_STORAGE__S3_ENDPOINT_URL"],
                        "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_ACCESS_KEY,
                        "AWS_DEFAULT_REGION": "us-east-1"})
        return env


@contextmanager
def _clean_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith(_FOREIGN):
                mp.delenv(name)
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


def _build(world: World, tmp: Path) -> World:
    """Train once, then copy the logged model into clone runs through the Tracker API."""
    from heimdall_cli.settings import load_settings
    from heimdall_cli.training.fit import fit

    world.tmp = tmp
    flags = world.flags()
    for section, values in TINY_TRAINING.items():
        flags.setdefault(section, {}).update(values)
    flags["training"].update(output_dir=str(tmp / "outputs"), run_name="tiny-training")
    with pytest.MonkeyPatch.context() as mp, _clean_env():
        mp.chdir(tmp)
        result = fit(load_settings(flags=flags, env_file=None))
        assert result.status == "FINISHED" and result.model_uri, result
        world.run_id = result.run_id
        tracker = world.tracker()
        world.model_dir = tracker.download_artifacts("model", tmp / "model-copy", run_id=world.run_id)
        for name, status, best in (("clone-a", "FINISHED", 0.5), ("clone-b", "FINISHED", 0.7),
                                   ("clone-failed", "FAILED", 0.6)):
            world.clones[name] = clone_model_run(tracker, world, name, status=status, best=best)
    return world


def clone_model_run(tracker: Any, world: World, name: str, *, status: str = "FINISHED", best: float = 0.5,
                    experiment: str | None = None, params: dict[str, Any] | None = None) -> str:
    """A run (logged through the Tracker) carrying a copy of the trained model and a val/loss history."""
    run_id = tracker.start_run(name, experiment=experiment or f"{world.experiment}-clones")
    tracker.log_params({"clone_of": world.run_id, **(params or {})})
    for step, value in enumerate([best + 0.3, best, best + 0.1]):
        tracker.log_metrics({"val/loss": value}, step=step)
    tracker.log_metrics({"best/val_loss": best}, step=2)
    tracker.log_artifacts(world.model_dir, "model")
    tracker.end_run(status)
    return run_id


@pytest.fixture(scope="session")
def sqlite_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    tmp = tmp_path_factory.mktemp("sqlite-world")
    env = {"HEIMDALL_TRACKING__URI": f"sqlite:///{tmp / 'mlflow.db'}",
           "HEIMDALL_STORAGE__ARTIFACT_ROOT": str(tmp / "artifacts"),
           "HEIMDALL_TRACKING__EXPERIMENT": "cli-world"}
    return _build(World("sqlite", env, "cli-world"), tmp)


@pytest.fixture(scope="session")
def pg_s3_world(postgres_db: Any, s3_server: Any, tmp_path_factory: pytest.TempPathFactory) -> World:
    tmp = tmp_path_factory.mktemp("pg-s3-world")
    prefix = f"cli-world-{uuid.uuid4().hex[:8]}"
    env = {"HEIMDALL_TRACKING__URI": postgres_db.uri, "HEIMDALL_TRACKING__EXPERIMENT": prefix,
           **s3_server.heimdall_env(f"s3://{S3_BUCKET}/{prefix}")}
    return _build(World("postgres_s3", env, prefix), tmp)


def _unique(request: pytest.FixtureRequest, prefix: str = "m") -> str:
    test = re.sub(r"[^A-Za-z0-9]+", "-", request.node.originalname or request.node.name).strip("-")[:30]
    return f"{prefix}-{test}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(params=["sqlite", pytest.param("postgres_s3", marks=pytest.mark.integration)])
def world(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> World:
    """One world applied to the environment, with model names unique to this test."""
    base: World = request.getfixturevalue("sqlite_world" if request.param == "sqlite" else "pg_s3_world")
    return _apply(base, request, monkeypatch)


@pytest.fixture
def sqlite_only(sqlite_world: World, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> World:
    """The sqlite world applied to the environment (for cheap bad-input tests)."""
    return _apply(sqlite_world, request, monkeypatch)


@pytest.fixture
def pg_world(pg_s3_world: World, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> World:
    """The PostgreSQL + S3 world applied to the environment."""
    return _apply(pg_s3_world, request, monkeypatch)


def _apply(base: World, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> World:
    model = _unique(request)
    env = {**base.env, "HEIMDALL_TRACKING__MODEL_NAME": model, "HEIMDALL_TRACKING__ONNX_MODEL_NAME": f"{model}-onnx"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return World(base.kind, env, base.experiment, base.run_id, dict(base.clones), base.model_dir, base.tmp)


@pytest.fixture
def fresh_experiment(request: pytest.FixtureRequest) -> str:
    return _unique(request, "exp")


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A short private folder for XDG_RUNTIME_DIR, where a test's registry servers live (stopped afterwards).

    Short: a socket's path must stay under about 100 bytes.
    """
    import shutil
    import tempfile
    import time

    from heimdall_cli.tracking.readers.registry_server import stop_all

    folder = Path(tempfile.mkdtemp(prefix="hrs-"))
    yield folder
    stop_all(folder / "heimdall")
    time.sleep(1)
    shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------- running heimdall


def cli(*args: str, input: str | None = None) -> Any:
    """Run ``heimdall ARGS`` in-process; the result has exit_code, stdout, stderr."""
    from typer.testing import CliRunner

    from heimdall_cli.cli import app

    # A wide "terminal" so human tables do not fold the values the tests look for.
    return CliRunner().invoke(app, list(args), input=input, catch_exceptions=False, env={"COLUMNS": "200"})


def subprocess_env(world: World, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
    env.update({"MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1",
                "HEIMDALL_TRACKING__REGISTRY_SERVER": "false", **world.env, **extra})
    return env


def heimdall(world: World, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the installed ``heimdall`` console script as a real process."""
    return subprocess.run([HEIMDALL, *args], env=subprocess_env(world), capture_output=True, text=True,
                          timeout=timeout)


def assert_schema(data: Any, schema: dict[str, Any], where: str = "$") -> None:
    """``data`` has every key of ``schema`` with a value of the given type(s) (None allowed where listed)."""
    assert isinstance(data, dict), f"{where}: expected an object, got {type(data).__name__}"
    for key, expected in schema.items():
        assert key in data, f"{where}: missing key {key!r} (has {sorted(data)})"
        value = data[key]
        if isinstance(expected, dict):
            assert_schema(value, expected, f"{where}.{key}")
        elif isinstance(expected, list):  # [schema] = list of objects with that schema
            assert isinstance(value, list), f"{where}.{key}: expected a list"
            for i, item in enumerate(value):
                assert_schema(item, expected[0], f"{where}.{key}[{i}]") if isinstance(expected[0], dict) \
                    else _check_type(item, expected[0], f"{where}.{key}[{i}]")
        else:
            _check_type(value, expected, f"{where}.{key}")


def _check_type(value: Any, expected: Any, where: str) -> None:
    types = expected if isinstance(expected, tuple) else (expected,)
    types = tuple(type(None) if t is None else t for t in types)
    if float in types and int not in types and isinstance(value, int) and not isinstance(value, bool):
        return  # JSON integers are fine where a number is expected
    assert isinstance(value, types), f"{where}: {value!r} is not {types}"
