"""A real ``mlflow server`` process for the HTTP tracking path (proxied artifacts in moto's S3).

``mlflow server`` starts uvicorn plus a job runner that starts ~7 huey consumer
processes. All stay in the session started with ``start_new_session=True``; a plain
kill of the parent leaves them running, so :meth:`MlflowServer.stop` signals the whole
process group and waits until no process of the session is left. SIGTERM shuts the
server down in about 5 s. ``/health`` answers after 6–15 s. MLflow 3 checks the Host
header; the default allowed hosts are localhost, 127.0.0.1 (any port) and private IP
ranges, so ``http://127.0.0.1:PORT`` works without ``--allowed-hosts``.

The pytest fixtures ``mlflow_server`` and ``make_mlflow_server`` are in ``tests/services/mlflow_server.py``.
``job_execution=False`` (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``) is what heimdall needs: it uses no
MLflow jobs, and the job runner's huey consumers cost ~10 CPU-s to start and ~0.4 CPU-s per second idle
on a 2-core machine.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from devtools.services.processes import (
    clean_child_env,
    free_port,
    http_ok,
    log_tail,
    port_open,
    refuse_without_services,
    session_processes,
    stop_process_group,
    venv_executable,
)
from devtools.services.s3 import MotoS3Server


class MlflowServer:
    """A real ``mlflow server`` subprocess with proxied artifacts, in its own session.

    Clients need only :attr:`url`; the server alone holds the S3 credentials (from ``s3``
    or ``server_env``). Logs go to :attr:`log_path` (appended across restarts).
    """

    def __init__(
        self,
        backend_store_uri: str,
        *,
        artifacts_destination: str | None = None,
        s3: MotoS3Server | None = None,
        server_env: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        workers: int = 1,
        allowed_hosts: str | None = None,
        job_execution: bool = True,
        extra_args: list[str] | None = None,
        log_dir: str | Path | None = None,
        startup_timeout_s: float = 90.0,
        start: bool = True,
    ) -> None:
        self.backend_store_uri = backend_store_uri
        self.artifacts_destination = artifacts_destination
        self.host = host
        self.port = port or free_port(host)
        self.workers = workers
        self.allowed_hosts = allowed_hosts
        self.job_execution = job_execution
        self.extra_args = list(extra_args or [])
        self.startup_timeout_s = startup_timeout_s
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="heimdall-mlflow-server-"))
        self.log_path = self.log_dir / f"mlflow-server-{self.port}.log"
        self.env = clean_child_env(**(s3.server_env() if s3 else {}), **(server_env or {}))
        if not job_execution:
            self.env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_s: float | None = None
        self._huey_dirs: set[str] = set()
        if start:
            self.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            venv_executable("mlflow"),
            "server",
            "--backend-store-uri",
            self.backend_store_uri,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        if self.artifacts_destination:
            cmd += ["--serve-artifacts", "--artifacts-destination", self.artifacts_destination]
        if self.allowed_hosts:
            cmd += ["--allowed-hosts", self.allowed_hosts]
        return cmd + self.extra_args

    def healthy(self, timeout: float = 1.0) -> bool:
        return http_ok(f"{self.url}/health", timeout=timeout)

    def start(self) -> float:
        """Start the server and wait for ``/health``; returns the seconds it took."""
        if self.running:
            return 0.0
        refuse_without_services("an mlflow server")
        if port_open(self.host, self.port):
            raise RuntimeError(f"port {self.port} is already in use; cannot start mlflow server there")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== starting: {' '.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        deadline = started + self.startup_timeout_s
        while not self.healthy():
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.stop()
                raise RuntimeError(f"mlflow server exited with {code} before /health:\n{log_tail(self.log_path)}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(
                    f"mlflow server not healthy after {self.startup_timeout_s} s:\n{log_tail(self.log_path)}"
                )
            time.sleep(0.2)
        self.startup_s = time.monotonic() - started
        return self.startup_s

    def processes(self) -> list[dict[str, Any]]:
        """Live processes of this server's session (uvicorn, job runner, huey consumers…)."""
        return session_processes(self.proc.pid) if self.proc is not None else []

    def _remember_huey_dirs(self) -> None:
        # mlflow server mkdtemp()s a huey queue folder in /dev/shm and never removes it.
        for p in self.processes():
            with contextlib.suppress(OSError):
                for item in Path(f"/proc/{p['pid']}/environ").read_bytes().split(b"\0"):
                    if item.startswith(b"_MLFLOW_HUEY_STORAGE_PATH="):
                        self._huey_dirs.add(item.split(b"=", 1)[1].decode())

    def _cleanup_huey_dirs(self) -> None:
        for path in self._huey_dirs:
            if path.startswith(("/dev/shm/", tempfile.gettempdir())):
                shutil.rmtree(path, ignore_errors=True)
        self._huey_dirs.clear()

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM the whole process group, SIGKILL after ``grace_s``; no child survives."""
        if self.proc is None:
            return
        self._remember_huey_dirs()
        stop_process_group(self.proc, grace_s=grace_s)
        self._cleanup_huey_dirs()

    def kill(self) -> None:
        """Crash the server: SIGKILL the whole process group at once (for outage tests)."""
        self.stop(grace_s=0)

    def restart(self, grace_s: float = 15.0) -> float:
        """Stop and start again on the same port and store; returns the startup seconds."""
        self.stop(grace_s=grace_s)
        return self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        return log_tail(self.log_path, lines)

    def __enter__(self) -> MlflowServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"MlflowServer({self.url!r}, running={self.running})"
