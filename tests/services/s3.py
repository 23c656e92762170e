"""Fixtures ``s3_server`` and ``s3_auth_server`` (session); the class is in ``devtools.services.s3``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.services.s3 import (  # noqa: F401  (re-exported for tests)
    DUMMY_ACCESS_KEY_ID,
    DUMMY_SECRET_ACCESS_KEY,
    S3_BUCKET,
    S3_REGION,
    MotoS3Server,
)

# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3Server]:
    """A moto server (any credentials accepted) with :data:`S3_BUCKET`."""
    server = MotoS3Server(log_dir=tmp_path_factory.mktemp("moto"))
    try:
        server.create_bucket(S3_BUCKET)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3Server]:
    """A moto server that only accepts its own IAM key pair, with :data:`S3_BUCKET`."""
    server = MotoS3Server(require_auth=True, log_dir=tmp_path_factory.mktemp("moto-auth"))
    try:
        server.create_bucket(S3_BUCKET)
        yield server
    finally:
        server.stop()
