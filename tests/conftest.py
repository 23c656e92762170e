"""Shared fixtures: a clean environment for every test, and real services.

Fixtures
--------
``clean_environment`` (autouse)
    Removes HEIMDALL_*, MLFLOW_* tracking/S3/run variables and AWS_* from the
    environment, chdir's into ``tmp_path`` (so the embedded ``sqlite:///mlflow.db`` and a
    ``.env`` land there), sets ``MLFLOW_DISABLE_TELEMETRY=true`` and ``HF_HUB_OFFLINE=1``.
    Afterwards it ends active MLflow runs and resets MLflow's global tracking URI.
``postgres_db``, ``s3_server``, ``s3_auth_server``, ``mlflow_server``, ``make_mlflow_server``
    The real services, from ``tests/services/{postgres,s3,mlflow_server}.py`` (see there).
``backend_env`` (function, parametrized: sqlite, postgres, postgres_s3, http)
    A :class:`BackendEnv` (a ``dict`` of environment variables, already applied with
    ``monkeypatch``; pass it to subprocesses as ``{**os.environ, **backend_env}``) with a
    unique experiment and model name per test.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import MlflowServer, MotoS3Server, PostgresDatabase
from tests.services.mlflow_server import make_mlflow_server, mlflow_server  # noqa: F401  (fixtures)
from tests.services.postgres import postgres_db, require_postgres  # noqa: F401  (fixture, helper)
from tests.services.s3 import S3_BUCKET, s3_auth_server, s3_server  # noqa: F401  (fixtures)

BACKENDS = ("sqlite", "postgres", "postgres_s3", "http")
# Tests write to many throw-away stores: no background registry server for each of them
# (tests/tracking/test_registry_server.py turns it on where it is the subject).
NO_REGISTRY_SERVER = ("HEIMDALL_TRACKING__REGISTRY_SERVER", "false")
# Registry servers that tests start keep their sockets here, not in the user's folder; any left
# running when the session ends are stopped (pytest_sessionfinish).
RUNTIME_DIR = Path(tempfile.mkdtemp(prefix="heimdall-tests-run-"))
os.environ["XDG_RUNTIME_DIR"] = str(RUNTIME_DIR)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from heimdall_cli.tracking.readers.registry_server import stop_all

    stop_all(RUNTIME_DIR / "heimdall")
    shutil.rmtree(RUNTIME_DIR, ignore_errors=True)

_STRIPPED_PREFIXES = ("HEIMDALL_", "AWS_")
_STRIPPED_NAMES = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_S3_ENDPOINT_URL",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_RUN_ID",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
)


# --------------------------------------------------------------------------- lanes
# Two lanes (markers registered in pyproject.toml):
#   make test-fast  pytest -m "not slow and not integration": unit tests and CLI tests on the
#                   embedded sqlite backend; no PostgreSQL, no S3 server, no mlflow server.
#   make test       every test (CI).
# ``integration`` = uses a real service. It is added here to every test whose fixtures reach
# one of SERVICE_FIXTURES, so a new test cannot slip a service into the fast lane by
# forgetting the marker; tests that start a service by hand mark themselves.
# ``slow`` = more than a few seconds on a 2-core box (a real training, a server process).
SERVICE_FIXTURES = frozenset({"postgres_db", "s3_server", "s3_auth_server", "mlflow_server", "make_mlflow_server"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


# --------------------------------------------------------------------------- environment


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(_STRIPPED_PREFIXES) or name in _STRIPPED_NAMES:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(*NO_REGISTRY_SERVER)
    monkeypatch.chdir(tmp_path)
    yield
    _reset_mlflow_globals()


def _reset_mlflow_globals() -> None:
    """Undo process-wide MLflow state a test may leave behind (only if mlflow was imported)."""
    if "mlflow" not in sys.modules:
        return
    import mlflow
    from mlflow.tracking import fluent

    # Forget runs a test left active without contacting the backend: it may be gone
    # (outage tests), and mlflow's HTTP retries would then take minutes.
    fluent._active_run_stack.set([])
    mlflow.set_tracking_uri(None)  # also unsets MLFLOW_TRACKING_URI that mlflow exported
    mlflow.set_registry_uri(None)
    repo = sys.modules.get("heimdall_cli.tracking.s3_repository")
    if repo is not None:
        repo.activate(None)


# --------------------------------------------------------------------------- services
# Each real service's fixtures live in its own module under tests/services/.

# --------------------------------------------------------------------------- backend_env


class BackendEnv(dict[str, str]):
    """Environment variables selecting one tracking backend, plus handy attributes."""

    kind: str
    experiment: str
    model_name: str
    tracking_uri: str
    artifact_root: str | None
    s3_prefix: str | None  # key prefix in S3_BUCKET for the postgres_s3 backend

    def __init__(self, kind: str, values: dict[str, str], *, s3_prefix: str | None = None) -> None:
        super().__init__(values)
        self.kind = kind
        self.experiment = values["HEIMDALL_TRACKING__EXPERIMENT"]
        self.model_name = values["HEIMDALL_TRACKING__MODEL_NAME"]
        self.tracking_uri = values["HEIMDALL_TRACKING__URI"]
        self.artifact_root = values.get("HEIMDALL_STORAGE__ARTIFACT_ROOT")
        self.s3_prefix = s3_prefix


def _unique_name(request: pytest.FixtureRequest, prefix: str) -> str:
    test = re.sub(r"[^A-Za-z0-9]+", "-", request.node.originalname or request.node.name).strip("-")[:40]
    return f"{prefix}-{test}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.integration),
        pytest.param("postgres_s3", marks=pytest.mark.integration),
        pytest.param("http", marks=[pytest.mark.integration, pytest.mark.slow]),
    ]
)
def backend_env(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BackendEnv:
    kind: str = request.param
    unique = _unique_name(request, "test")
    values = {
        "HEIMDALL_TRACKING__EXPERIMENT": unique,
        # Postgres and the server are shared by the session: keep registries apart too.
        "HEIMDALL_TRACKING__MODEL_NAME": f"{unique}-model",
        "HEIMDALL_TRACKING__ONNX_MODEL_NAME": f"{unique}-onnx",
    }
    local_artifacts = str(tmp_path / "artifacts")
    s3_prefix = None
    if kind == "sqlite":
        values["HEIMDALL_TRACKING__URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
        values["HEIMDALL_STORAGE__ARTIFACT_ROOT"] = local_artifacts
    elif kind == "postgres":
        db: PostgresDatabase = request.getfixturevalue("postgres_db")
        values["HEIMDALL_TRACKING__URI"] = db.uri
        values["HEIMDALL_STORAGE__ARTIFACT_ROOT"] = local_artifacts
    elif kind == "postgres_s3":
        db = request.getfixturevalue("postgres_db")
        s3: MotoS3Server = request.getfixturevalue("s3_server")
        s3_prefix = unique
        values["HEIMDALL_TRACKING__URI"] = db.uri
        # endpoint, path addressing and the dummy testing/testing credentials
        values.update(s3.heimdall_env(f"s3://{S3_BUCKET}/{s3_prefix}"))
    elif kind == "http":
        server: MlflowServer = request.getfixturevalue("mlflow_server")
        values["HEIMDALL_TRACKING__URI"] = server.url  # no S3 settings: the server proxies artifacts
    else:  # pragma: no cover
        raise ValueError(kind)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return BackendEnv(kind, values, s3_prefix=s3_prefix)
