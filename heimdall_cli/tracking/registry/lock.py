"""A per-model lock for registry read-modify-write (promote, rollback).

A PostgreSQL advisory lock (the server releases it even if the process dies), or an
exclusive file lock next to an SQLite database. An http tracking server offers no lock.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from heimdall_cli.errors import BackendUnavailable, WorkFailed
from heimdall_cli.tracking.probe import sqlite_path

if TYPE_CHECKING:
    from heimdall_cli.settings import TrackingSettings

LOCK_TIMEOUT_S = 120.0


@contextmanager
def registry_lock(tracking: TrackingSettings, name: str, timeout: float = LOCK_TIMEOUT_S) -> Iterator[str | None]:
    """Serialise registry read-modify-write for model ``name``; yields how (or None: not possible)."""
    if tracking.backend == "postgresql":
        with _pg_lock(tracking, name, timeout):
            yield "postgresql advisory lock"
    elif tracking.backend == "sqlite":
        path = sqlite_path(tracking.uri)
        with _file_lock(path.with_name(path.name + ".heimdall-registry.lock"), timeout):
            yield "file lock"
    else:
        yield None


@contextmanager
def _pg_lock(tracking: TrackingSettings, name: str, timeout: float) -> Iterator[None]:
    import psycopg

    conninfo = "postgresql://" + tracking.connection_uri().split("://", 1)[1].split("?", 1)[0]
    key = zlib.crc32(f"heimdall-registry:{name}".encode())
    key = key - 2**32 if key >= 2**31 else key
    try:
        conn = psycopg.connect(conninfo, connect_timeout=max(1, int(tracking.query_timeout_s)), autocommit=True)
    except psycopg.OperationalError as e:
        raise BackendUnavailable(f"Registry lock: PostgreSQL unreachable: {str(e).strip().splitlines()[-1]}") from None
    try:
        deadline, delay = time.monotonic() + timeout, 0.02
        while not conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (0x4844, key)).fetchone()[0]:
            if time.monotonic() > deadline:
                raise WorkFailed(f"Another promotion of '{name}' held the registry lock for {timeout:.0f} s.")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        yield
    finally:
        conn.close()  # closing the session releases the advisory lock


@contextmanager
def _file_lock(path: Path, timeout: float) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Linux
        yield
        return
    with open(path, "a+") as handle:
        deadline, delay = time.monotonic() + timeout, 0.02
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise WorkFailed(f"Another promotion held the registry lock {path} for {timeout:.0f} s.") from None
                time.sleep(delay)
                delay = min(delay * 1.5, 0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
