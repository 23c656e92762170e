"""Fixtures ``mlflow_server`` (session) and ``make_mlflow_server``; the class is in ``devtools.services.mlflow_server``.

``mlflow_server`` runs with ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`` (heimdall uses no MLflow jobs);
``make_mlflow_server`` makes private servers, own database each, that a test may ``kill()``,
``start()`` and ``restart()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devtools.services.mlflow_server import MlflowServer
from devtools.services.postgres import PostgresDatabase
from devtools.services.s3 import S3_BUCKET, MotoS3Server
from tests.services.postgres import require_postgres

# --------------------------------------------------------------------------- fixtures


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
    """An :class:`MlflowServer` on its own database, proxying artifacts to ``s3://heimdall-mlflow/artifacts``."""
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
