"""Shared fixtures: a clean environment for every test, and real services.

Fixtures
--------
``clean_environment`` (autouse)
    Removes HEIMDALL_*, MLFLOW_* tracking/S3/run variables and AWS_* from the
    environment, chdir's into ``tmp_path`` (so the embedded ``sqlite:///mlflow.db`` and a
    ``.env`` land there), sets ``MLFLOW_DISABLE_TELEMETRY=true`` and ``HF_HUB_OFFLINE=1``.
    Afterwards it ends active MLflow runs and resets MLflow's global tracking URI.
``postgres_db`` (session)
    A :class:`~tests.services.PostgresDatabase`, dropped at the end of the session.
``s3_server`` (session)
    A :class:`~tests.services.MotoS3Server` (any credentials accepted) with the bucket
    :data:`S3_BUCKET` created.
``s3_auth_server`` (session)
    A moto server that only accepts its own IAM key pair (``.access_key_id``,
    ``.secret_access_key``), with :data:`S3_BUCKET`; for "wrong credentials" tests.
``mlflow_server`` (session)
    A :class:`~tests.services.MlflowServer` on its own PostgreSQL database, proxying
    artifacts to ``s3://heimdall-mlflow/artifacts`` on ``s3_server``. Started with
    ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``: heimdall uses no MLflow jobs, and the
    job runner's ~7 huey consumers cost ~10 CPU-s to start, ~0.4 CPU-s per second while
    idle and 5-10 s to stop on this 2-core machine (without: ~7 s start, ~1 s stop).
``make_mlflow_server`` (function)
    Factory ``make(job_execution=False)`` for a private MLflow server (own database, same
    S3 server) that the test may ``kill()``, ``start()`` and ``restart()``; everything is
    stopped and dropped after the test.
``backend_env`` (function, parametrized: sqlite, postgres, postgres_s3, http)
    A :class:`BackendEnv` (a ``dict`` of environment variables, already applied with
    ``monkeypatch``; pass it to subprocesses as ``{**os.environ, **backend_env}``) with a
    unique experiment and model name per test.

PostgreSQL unreachable: tests that need it are skipped, or fail when ``CI=true``.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.services import (
    MlflowServer,
    MotoS3Server,
    PostgresDatabase,
    postgres_available,
)

S3_BUCKET = "heimdall-mlflow"
BACKENDS = ("sqlite", "postgres", "postgres_s3", "http")

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


# --------------------------------------------------------------------------- environment


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(_STRIPPED_PREFIXES) or name in _STRIPPED_NAMES:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
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


_pg_status: tuple[bool, str] | None = None


def require_postgres() -> None:
    """Skip (or fail when CI=true) if the test PostgreSQL server is unreachable."""
    global _pg_status
    if _pg_status is None:
        _pg_status = postgres_available()
    ok, reason = _pg_status
    if not ok:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_db() -> Iterator[PostgresDatabase]:
    require_postgres()
    db = PostgresDatabase()
    try:
        yield db
    finally:
        db.drop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3Server]:
    server = MotoS3Server(log_dir=tmp_path_factory.mktemp("moto"))
    try:
        server.create_bucket(S3_BUCKET)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3Server]:
    server = MotoS3Server(require_auth=True, log_dir=tmp_path_factory.mktemp("moto-auth"))
    try:
        server.create_bucket(S3_BUCKET)
        yield server
    finally:
        server.stop()


def _start_mlflow_server(
    s3: MotoS3Server, log_dir: Path, *, job_execution: bool = False
) -> tuple[MlflowServer, PostgresDatabase]:
    require_postgres()
    db = PostgresDatabase()
    try:
        server = MlflowServer(
            db.uri,
            artifacts_destination=f"s3://{S3_BUCKET}/artifacts",
            s3=s3,
            job_execution=job_execution,
            log_dir=log_dir,
        )
    except Exception:
        db.drop()
        raise
    return server, db


@pytest.fixture(scope="session")
def mlflow_server(s3_server: MotoS3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server, db = _start_mlflow_server(s3_server, tmp_path_factory.mktemp("mlflow-server"))
    try:
        yield server
    finally:
        try:
            server.stop()
        finally:
            db.drop()


@pytest.fixture
def make_mlflow_server(
    s3_server: MotoS3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., MlflowServer]]:
    """Start private MLflow servers (own database each) that a test may kill/restart."""
    started: list[tuple[MlflowServer, PostgresDatabase]] = []

    def make(*, job_execution: bool = False) -> MlflowServer:
        log_dir = tmp_path_factory.mktemp("mlflow-server-private")
        server, db = _start_mlflow_server(s3_server, log_dir, job_execution=job_execution)
        started.append((server, db))
        return server

    yield make
    for server, db in reversed(started):
        try:
            server.stop()
        finally:
            db.drop()


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
