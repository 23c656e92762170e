"""A per-model lock for registry read-modify-write (promote, rollback).

A PostgreSQL advisory lock (the server releases it even if the process dies), or an
exclusive file lock next to an SQLite database. Through an http tracking server, whose
public API has no lock, the mutex is a registered model ``<name>.heimdall-lock``:
creating a registered model is atomic in the server's database (a second create fails
with RESOURCE_ALREADY_EXISTS), so the process whose create succeeds holds the lock and
deletes it when done. The lock model carries its owner and a lease; one whose lease ran
out (its holder died) is deleted by the next waiter.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from heimdall_cli.backend_errors import translated
from heimdall_cli.errors import BackendUnavailable, WorkFailed
from heimdall_cli.tracking.probe import sqlite_path

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from heimdall_cli.settings import TrackingSettings

LOCK_TIMEOUT_S = 120.0
#: How long a lock model counts as held without its holder finishing (a promotion takes seconds).
LEASE_S = 60.0
LOCK_SUFFIX = ".heimdall-lock"


@contextmanager
def registry_lock(tracking: TrackingSettings, name: str, timeout: float = LOCK_TIMEOUT_S, *,
                  client: MlflowClient | None = None) -> Iterator[str | None]:
    """Serialise registry read-modify-write for model ``name``; yields how (or None: not possible)."""
    if tracking.backend == "http" and client is not None:
        with _model_lock(client, name, timeout):
            yield "lock model (atomic create through the server)"
    elif tracking.backend == "postgresql":
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


@contextmanager
def _model_lock(client: MlflowClient, name: str, timeout: float, lease_s: float = LEASE_S) -> Iterator[None]:
    import os
    import socket
    import uuid

    lock = name + LOCK_SUFFIX
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    deadline, delay = time.monotonic() + timeout, 0.05
    while True:
        expires = str(int((time.time() + lease_s) * 1000))
        try:
            client.create_registered_model(lock, tags={"heimdall.lock.owner": owner,
                                                       "heimdall.lock.expires_ms": expires},
                                           description=f"heimdall: a promotion of '{name}' is in progress")
            break
        except Exception as e:
            code = _error_code(e)
            # MLflow's store answers a create that lost the race by reading the existing model;
            # not found: its holder deleted it in between, the lock is free again: try at once.
            if code == "RESOURCE_DOES_NOT_EXIST" and time.monotonic() <= deadline:
                continue
            if code not in ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"):
                with translated(f"Registry lock for '{name}'"):
                    raise
        held = _lock_tags(client, lock)
        if held is not None and int(held.get("heimdall.lock.expires_ms", "0") or 0) < time.time() * 1000:
            stale_owner = held.get("heimdall.lock.owner")
            again = _lock_tags(client, lock)  # narrow the window in which another waiter re-took it
            if again is not None and again.get("heimdall.lock.owner") == stale_owner:
                with translated(f"Breaking the stale registry lock of '{name}'"):
                    _delete(client, lock)  # its holder died; the next create decides who goes
            continue
        if time.monotonic() > deadline:
            who = (held or {}).get("heimdall.lock.owner", "?")
            raise WorkFailed(f"Another promotion of '{name}' ({who}) held the registry lock for {timeout:.0f} s.",
                             f"If its process is gone, the lock ({lock}) expires {lease_s:.0f} s after it was taken.")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    try:
        yield
    finally:
        held = _lock_tags(client, lock)
        if held is not None and held.get("heimdall.lock.owner") == owner:
            with translated(f"Releasing the registry lock of '{name}'"):
                _delete(client, lock)


def _error_code(exc: Exception) -> str | None:
    """The backend's error code: ``MlflowException.error_code``, or the REST client's, which has the same."""
    return getattr(exc, "error_code", None)


def _lock_tags(client: MlflowClient, lock: str) -> dict[str, str] | None:
    try:
        return dict(client.get_registered_model(lock).tags or {})
    except Exception as e:
        if _error_code(e) == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def _delete(client: MlflowClient, lock: str) -> None:
    try:
        client.delete_registered_model(lock)
    except Exception as e:
        if _error_code(e) != "RESOURCE_DOES_NOT_EXIST":
            raise
