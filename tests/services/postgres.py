"""Fixture ``postgres_db`` (session) and :func:`require_postgres`; the classes are in ``devtools.services.postgres``.

PostgreSQL unreachable: tests that need it are skipped, or fail when ``CI=true``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from devtools.services.postgres import (  # noqa: F401  (re-exported for tests)
    PostgresDatabase,
    PrivatePostgres,
    database_exists,
    postgres_available,
)

# --------------------------------------------------------------------------- fixtures

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
    """A :class:`PostgresDatabase`, dropped at the end of the session."""
    require_postgres()
    db = PostgresDatabase()
    try:
        yield db
    finally:
        db.drop()
