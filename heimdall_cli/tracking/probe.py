"""Fast reachability probes: fail in seconds where MLflow would retry for minutes."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from heimdall_cli.backend_errors import translate
from heimdall_cli.errors import BackendUnavailable, ConfigError
from heimdall_cli.redact import mask_uri
from heimdall_cli.storage import s3_client, split_s3_uri

if TYPE_CHECKING:
    from heimdall_cli.settings import StorageSettings, TrackingSettings


@dataclass
class ProbeResult:
    """What a probe found: a one-line description and how long it took."""

    detail: str
    seconds: float


def probe_tracking(tracking: TrackingSettings, timeout: float) -> ProbeResult:
    """Check that the tracking backend answers within ``timeout`` seconds."""
    start = time.monotonic()
    backend = tracking.backend
    if backend == "sqlite":
        path = sqlite_path(tracking.uri)
        folder = path.parent if path.parent != Path("") else Path(".")
        if not folder.exists():
            raise BackendUnavailable(f"SQLite folder {folder} does not exist.", "Create it or fix tracking.uri.")
        detail = f"sqlite file {path} ({'exists' if path.exists() else 'will be created'})"
    elif backend == "postgresql":
        detail = _probe_postgres(tracking, timeout)
    elif backend == "http":
        detail = _probe_http(tracking, timeout)
    else:
        raise ConfigError(
            f"Unsupported tracking URI scheme in {mask_uri(tracking.uri)!r}.",
            "Use sqlite:///FILE, postgresql+psycopg://USER@HOST/DB or http(s)://SERVER.",
        )
    return ProbeResult(detail, time.monotonic() - start)


def sqlite_path(uri: str) -> Path:
    """The file of a ``sqlite:///…`` URI."""
    return Path(uri.split("sqlite:///", 1)[-1] or "mlflow.db")


def _probe_postgres(tracking: TrackingSettings, timeout: float) -> str:
    import psycopg

    parts = urlsplit(tracking.uri)
    host = f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
    conninfo = "postgresql://" + tracking.connection_uri().split("://", 1)[1]
    conninfo = conninfo.split("?", 1)[0]
    try:
        version = _within(timeout + 1.0, lambda: _postgres_version(psycopg, conninfo, timeout))
    except TimeoutError:
        raise BackendUnavailable(
            f"PostgreSQL at {host} did not answer within {timeout:.0f} s.",
            "Check that the host is up and tracking.uri (host, port) is right.",
        ) from None
    except psycopg.OperationalError as e:
        # libpq's message spans lines ("…failed: Connection refused\n\tIs the server running…"): one line.
        reason = " ".join(str(e).split())[:300] or type(e).__name__
        raise BackendUnavailable(
            f"PostgreSQL at {host} is unreachable or refused: {reason}",
            "Check that the server runs and tracking.uri (host, port, database, user) is right.",
        ) from None
    return f"PostgreSQL {version[0] if version else '?'} at {host}{parts.path}"


def _probe_http(tracking: TrackingSettings, timeout: float) -> str:
    import base64
    import urllib.error
    import urllib.request
    from urllib.parse import unquote

    uri = tracking.uri
    parts = urlsplit(tracking.connection_uri())
    # urllib cannot take user:password@ in the URL: send it as basic auth, as MLflow does.
    url = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl().rstrip("/") + "/health"
    request = urllib.request.Request(url)
    if parts.username:
        token = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(token).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(64).decode("utf-8", "replace").strip()
    except urllib.error.HTTPError as e:
        raise BackendUnavailable(
            f"Tracking server {mask_uri(uri)} answered {e.code} on /health.",
            "If it names a host problem, start the server with --allowed-hosts including this name.",
        ) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise BackendUnavailable(
            f"Tracking server {mask_uri(uri)} is unreachable: {reason}",
            "Check that `mlflow server` runs and MLFLOW_TRACKING_URI is right.",
        ) from None
    return f"MLflow server {mask_uri(uri)} ({body or 'OK'})"


def _postgres_version(psycopg: Any, conninfo: str, timeout: float) -> Any:
    with psycopg.connect(conninfo, connect_timeout=max(1, int(timeout))) as conn:
        return conn.execute("SHOW server_version").fetchone()


def _within(seconds: float, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a daemon thread; TimeoutError if it has not returned after ``seconds``.

    libpq applies connect_timeout per address (``localhost`` is two) and per phase, so a
    dead host can take a multiple of it; this bounds the whole probe. The abandoned
    thread ends when libpq gives up and never blocks the process from exiting.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:
            box["error"] = e

    thread = threading.Thread(target=target, name="heimdall-probe", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {seconds:.0f} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def probe_tcp(host: str, port: int, timeout: float) -> None:
    """Raise BackendUnavailable unless ``host:port`` accepts a TCP connection."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as e:
        raise BackendUnavailable(f"{host}:{port} is unreachable: {e.strerror or e}") from None


def probe_artifacts(storage: StorageSettings, timeout: float, key_prefix: str = ".heimdall-probe") -> str:
    """Write, read back and delete a probe object in the artifact store."""
    import uuid

    token = uuid.uuid4().hex
    if not storage.is_s3:
        folder = Path(storage.artifact_root).expanduser()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f"{key_prefix}-{token}"
            probe.write_text(token)
            ok = probe.read_text() == token
            probe.unlink()
        except OSError as e:
            raise BackendUnavailable(f"Artifact folder {folder} is not writable: {e.strerror}") from None
        if not ok:
            raise BackendUnavailable(f"Artifact folder {folder} returned different bytes than written.")
        return f"local folder {folder.resolve()}"

    bucket, prefix = split_s3_uri(storage.artifact_root)
    key = f"{prefix.rstrip('/')}/{key_prefix}-{token}".lstrip("/")
    client = s3_client(storage, connect_timeout=timeout, max_attempts=1, read_timeout=timeout)
    try:
        client.put_object(Bucket=bucket, Key=key, Body=token.encode())
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        client.delete_object(Bucket=bucket, Key=key)
    except Exception as e:
        err = translate(e, f"Artifact store s3://{bucket}")
        raise BackendUnavailable(err.message, err.hint) from None
    if body != token:
        raise BackendUnavailable(f"s3://{bucket}/{key} returned different bytes than written.")
    return f"s3://{bucket}/{prefix} at {storage.s3_endpoint_url or 'AWS'}"
