"""``mlflow server`` as a child process: its command line (no secrets), its environment, stopping it.

``heimdall ui`` runs one in the foreground; the registry server
(:mod:`heimdall_cli.tracking.readers.registry_server`) keeps one in the background on a private
socket. Credentials reach the server through its environment, never its command line, which
``ps`` shows to every user of the machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from heimdall_cli.settings import Settings


def server_command(settings: Settings, *, host: str = "127.0.0.1", port: int = 5000,
                   socket: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """The ``mlflow server`` command for the resolved backend and artifact store, and the secrets' environment.

    With ``socket``, the server listens on that Unix socket instead of ``host:port``.
    The environment returned holds only what the server needs on top of the caller's.
    """
    tracking, storage = settings.tracking, settings.storage
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    command = [mlflow, "server", "--backend-store-uri", tracking.uri, "--workers", "1"]
    command += ["--host", host, "--port", str(port)] if socket is None else ["--uvicorn-opts", f"--uds {socket}"]
    if not storage.is_s3:
        command += ["--default-artifact-root", Path(storage.artifact_root).expanduser().resolve().as_uri()]
    else:
        command += ["--default-artifact-root", storage.artifact_root]
    env = {"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    if tracking.password is not None:
        env["PGPASSWORD"] = tracking.password.get_secret_value()  # libpq reads it; the URI stays clean
    if storage.s3_endpoint_url:
        env["MLFLOW_S3_ENDPOINT_URL"] = storage.s3_endpoint_url
    if storage.access_key_id and storage.secret_access_key:
        env["AWS_ACCESS_KEY_ID"] = storage.access_key_id.get_secret_value()
        env["AWS_SECRET_ACCESS_KEY"] = storage.secret_access_key.get_secret_value()
    if storage.addressing_style != "auto":
        env["MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE"] = storage.addressing_style
    return command, env


def group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` is left."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGTERM the server's process group and wait until every member is gone (SIGKILL after ``grace_s``).

    Waiting for the direct child is not enough: ``mlflow server`` runs uvicorn in the same
    group, and it would outlive its parent (holding the caller's stdout) while it shuts down.
    The server must have been started in a session of its own (``start_new_session=True``).
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if proc.poll() is not None and not group_alive(proc.pid):
            return
        time.sleep(0.1)
    if group_alive(proc.pid):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
