"""Real services for integration tests and benchmarks: PostgreSQL, an S3 server, an MLflow server.

Plain functions and classes (no pytest here), so fixtures in ``tests/conftest.py`` and
scripts under ``bench/`` use the same code::

    from tests.services import MlflowServer, MotoS3Server, PostgresDatabase

    with PostgresDatabase() as db, MotoS3Server() as s3:
        s3.create_bucket("heimdall-mlflow")
        with MlflowServer(db.uri, s3=s3, artifacts_destination="s3://heimdall-mlflow/artifacts") as server:
            ...  # MlflowClient(tracking_uri=server.url)

Facts these helpers rely on (checked with mlflow 3.17.2, moto 5.2.5, PostgreSQL 15):

* PostgreSQL here uses ``trust`` auth for 127.0.0.1. A password in the URI is accepted and
  simply never sent: the server does not ask for one (``conn.pgconn.used_password`` is
  False). So a test can put a recognisable password into a URI (to check that it is never
  printed) and still connect. Under trust a *wrong* password cannot be refused; an unknown
  role or database is (``FATAL: role "…" does not exist``), see :meth:`PostgresDatabase.uri_with`.
* moto's server accepts any credentials by default. :class:`MotoS3Server` with
  ``require_auth=True`` creates an IAM user with an ``s3:*`` policy and a real key pair,
  then switches on moto's IAM authentication (``POST /moto-api/reset-auth`` with ``0``,
  the runtime form of the ``INITIAL_NO_AUTH_ACTION_COUNT`` setting). From then on an
  unknown key id gets ``InvalidAccessKeyId`` (403), a wrong secret ``SignatureDoesNotMatch``
  (403); unsigned requests get a 500 from moto.
* ``mlflow server`` starts uvicorn plus a job runner that starts ~7 huey consumer
  processes. All stay in the session started with ``start_new_session=True``; a plain
  kill of the parent leaves them running, so :meth:`MlflowServer.stop` signals the whole
  process group and waits until no process of the session is left. SIGTERM shuts the
  server down in about 5 s. ``/health`` answers after 6–15 s.
* MLflow 3 checks the Host header; the default allowed hosts are localhost, 127.0.0.1
  (any port) and private IP ranges, so ``http://127.0.0.1:PORT`` works without
  ``--allowed-hosts``. Pass ``allowed_hosts=`` to reach it by another name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

PG_HOST = os.environ.get("TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("TEST_PG_USER", "postgres")
PG_CONNECT_TIMEOUT_S = 3

#: Dummy credentials moto accepts unless ``require_auth`` is on.
DUMMY_ACCESS_KEY_ID = "testing"
DUMMY_SECRET_ACCESS_KEY = "testing"
S3_REGION = "us-east-1"

#: Variables that would point a child process at some other tracking store or S3 account.
_FOREIGN_ENV_PREFIXES = ("HEIMDALL_", "AWS_", "MLFLOW_")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host`` (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def venv_executable(name: str) -> str:
    """The console script ``name`` of this interpreter's environment (e.g. ``mlflow``)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found next to {sys.executable} or on PATH")
    return found


def clean_child_env(**extra: str) -> dict[str, str]:
    """``os.environ`` without HEIMDALL_*, AWS_* and MLFLOW_* variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN_ENV_PREFIXES)}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (OSError, urllib.error.URLError):
        return False


def _tail(path: Path | None, lines: int = 60) -> str:
    if path is None or not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --------------------------------------------------------------------------- processes


def session_processes(sid: int) -> list[dict[str, Any]]:
    """Live processes whose session id is ``sid`` (zombies excluded), read from /proc.

    Each entry: ``pid``, ``ppid``, ``pgid``, ``state`` and ``cmdline``.
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        # The command name may contain spaces and parentheses: split after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        state, ppid, pgid, session = fields[0], int(fields[1]), int(fields[2]), int(fields[3])
        if session == sid and state not in ("Z", "X"):
            found.append({"pid": int(entry), "ppid": ppid, "pgid": pgid, "state": state, "cmdline": cmdline.strip()})
    return found


def ps_session(sid: int) -> list[str]:
    """``ps`` lines (pid, sid, stat, args) of the non-zombie processes in session ``sid``."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,sid=,stat=,args="], capture_output=True, text=True, check=True).stdout
    lines = []
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) >= 3 and parts[1] == str(sid) and not parts[2].startswith("Z"):
            lines.append(line.strip())
    return lines


def stop_process_group(proc: subprocess.Popen[Any], *, grace_s: float = 15.0) -> None:
    """SIGTERM the process group led by ``proc``, SIGKILL what is left after ``grace_s``.

    Returns when no (non-zombie) process of the session remains, so no child
    survives (the session leader must have been started with ``start_new_session``).
    """
    sid = proc.pid
    if grace_s > 0:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            proc.poll()
            if not session_processes(sid):
                break
            time.sleep(0.1)
    # SIGKILL the group and any straggler of the session that changed its group.
    for _ in range(50):
        left = session_processes(sid)
        if not left:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sid, signal.SIGKILL)
        for p in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p["pid"], signal.SIGKILL)
        time.sleep(0.1)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    left = session_processes(sid)
    if left:
        raise RuntimeError(f"processes of session {sid} survived SIGKILL: {left}")


# --------------------------------------------------------------------------- PostgreSQL


def _admin_connect(dbname: str = "postgres", **kwargs: Any) -> Any:
    import psycopg

    return psycopg.connect(
        host=kwargs.pop("host", PG_HOST),
        port=kwargs.pop("port", PG_PORT),
        user=kwargs.pop("user", PG_USER),
        dbname=dbname,
        connect_timeout=PG_CONNECT_TIMEOUT_S,
        autocommit=True,
        **kwargs,
    )


def postgres_available(host: str = PG_HOST, port: int = PG_PORT, user: str = PG_USER) -> tuple[bool, str]:
    """(True, version) when PostgreSQL answers within 3 s, else (False, why not)."""
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:  # pragma: no cover - psycopg is a dependency
        return False, f"psycopg not installed: {exc}"
    try:
        with _admin_connect(host=host, port=port, user=user) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
        return True, f"PostgreSQL {version} at {host}:{port}"
    except Exception as exc:
        return False, f"PostgreSQL at {host}:{port} as {user} unreachable: {type(exc).__name__}: {exc}".strip()


def database_exists(name: str) -> bool:
    """True when a database called ``name`` exists on the test server."""
    with _admin_connect() as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


class PostgresDatabase:
    """A fresh, uniquely named database on the test PostgreSQL server.

    ``password`` only changes the URIs: under trust auth the server never asks for it,
    so any recognisable string works (see the module docstring).
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        password: str | None = None,
        host: str = PG_HOST,
        port: int = PG_PORT,
        user: str = PG_USER,
        create: bool = True,
    ) -> None:
        self.name = name or f"heimdall_test_{uuid.uuid4().hex[:12]}"
        self.password = password
        self.host, self.port, self.user = host, port, user
        self.created = False
        if create:
            self.create()

    def uri_with(
        self,
        *,
        password: str | None = None,
        user: str | None = None,
        dbname: str | None = None,
        driver: str = "psycopg",
    ) -> str:
        """A SQLAlchemy URI for this server, e.g. with another password, role or database."""
        user = quote(user or self.user, safe="")
        auth = f"{user}:{quote(password, safe='')}" if password is not None else user
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{auth}@{self.host}:{self.port}/{dbname or self.name}"

    @property
    def uri(self) -> str:
        """``postgresql+psycopg://postgres[:password]@127.0.0.1:5432/<name>`` (for MLflow)."""
        return self.uri_with(password=self.password)

    @property
    def uri_without_password(self) -> str:
        return self.uri_with()

    def uri_with_password(self, password: str) -> str:
        """This database's URI carrying ``password`` (ignored by the server under trust)."""
        return self.uri_with(password=password)

    @property
    def libpq_uri(self) -> str:
        """``postgresql://…`` for psycopg/libpq (no SQLAlchemy driver suffix)."""
        return self.uri_with(password=self.password, driver="")

    def connect(self) -> Any:
        """An autocommit psycopg connection to this database."""
        import psycopg

        return psycopg.connect(self.libpq_uri, connect_timeout=PG_CONNECT_TIMEOUT_S, autocommit=True)

    def create(self) -> None:
        from psycopg import sql

        with _admin_connect(host=self.host, port=self.port, user=self.user) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        self.created = True

    def exists(self) -> bool:
        with _admin_connect(host=self.host, port=self.port, user=self.user) as conn:
            row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.name,)).fetchone()
        return row is not None

    def drop(self) -> None:
        """Terminate every session on the database, then drop it (idempotent)."""
        from psycopg import sql

        with _admin_connect(host=self.host, port=self.port, user=self.user) as conn:
            for attempt in range(20):
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (self.name,),
                )
                try:
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(self.name)))
                    break
                except Exception as exc:  # a client reconnected in between: terminate again
                    if "being accessed by other users" not in str(exc) or attempt == 19:
                        raise
                    time.sleep(0.1)
        self.created = False

    def __enter__(self) -> PostgresDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.drop()

    def __repr__(self) -> str:
        return f"PostgresDatabase({self.uri_without_password!r})"


# --------------------------------------------------------------------------- S3 (moto)


class MotoS3Server:
    """moto's standalone S3 server over HTTP, in its own process session.

    With ``require_auth=True`` it only accepts the IAM key pair it creates
    (``access_key_id`` / ``secret_access_key``); otherwise any credentials work and
    those attributes hold the dummy ``testing``/``testing``.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        require_auth: bool = False,
        log_dir: str | Path | None = None,
        startup_timeout_s: float = 30.0,
        start: bool = True,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.require_auth = require_auth
        self.startup_timeout_s = startup_timeout_s
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="heimdall-moto-"))
        self.log_path = self.log_dir / f"moto-{self.port}.log"
        self.access_key_id = DUMMY_ACCESS_KEY_ID
        self.secret_access_key = DUMMY_SECRET_ACCESS_KEY
        self.region = S3_REGION
        self.proc: subprocess.Popen[bytes] | None = None
        if start:
            self.start()

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean_child_env(),
                start_new_session=True,
            )
        deadline = time.monotonic() + self.startup_timeout_s
        while not _http_ok(f"{self.endpoint_url}/moto-api/"):
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.proc.returncode}:\n{_tail(self.log_path)}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"moto server not up after {self.startup_timeout_s} s:\n{_tail(self.log_path)}")
            time.sleep(0.1)
        if self.require_auth:
            self._enable_auth()

    def _enable_auth(self) -> None:
        iam = self.client("iam")
        user = "heimdall-test"
        iam.create_user(UserName=user)
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName=user, PolicyName="s3-all", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        # Content-Type text/plain: moto reads the raw body (a form type would be parsed away).
        request = urllib.request.Request(
            f"{self.endpoint_url}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()
        self.access_key_id = key["AccessKeyId"]
        self.secret_access_key = key["SecretAccessKey"]

    def client(
        self,
        service: str = "s3",
        *,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        max_attempts: int = 2,
    ) -> Any:
        """A boto3 client for this server (path-style addressing, this server's credentials)."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=access_key_id or self.access_key_id,
            aws_secret_access_key=secret_access_key or self.secret_access_key,
            config=Config(
                s3={"addressing_style": "path"},
                connect_timeout=3,
                read_timeout=30,
                retries={"max_attempts": max_attempts, "mode": "standard"},
            ),
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """All object keys in ``bucket`` under ``prefix``."""
        paginator = self.client().get_paginator("list_objects_v2")
        return [
            obj["Key"] for page in paginator.paginate(Bucket=bucket, Prefix=prefix) for obj in page.get("Contents", [])
        ]

    def heimdall_env(self, artifact_root: str) -> dict[str, str]:
        """HEIMDALL_STORAGE__* variables pointing heimdall at ``artifact_root`` on this server."""
        return {
            "HEIMDALL_STORAGE__ARTIFACT_ROOT": artifact_root,
            "HEIMDALL_STORAGE__S3_ENDPOINT_URL": self.endpoint_url,
            "HEIMDALL_STORAGE__ACCESS_KEY_ID": self.access_key_id,
            "HEIMDALL_STORAGE__SECRET_ACCESS_KEY": self.secret_access_key,
            "HEIMDALL_STORAGE__ADDRESSING_STYLE": "path",
        }

    def server_env(self) -> dict[str, str]:
        """The variables MLflow's own S3 client (e.g. in ``mlflow server``) reads."""
        return {
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc, grace_s=5.0)

    def __enter__(self) -> MotoS3Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"MotoS3Server({self.endpoint_url!r}, require_auth={self.require_auth})"


# --------------------------------------------------------------------------- MLflow server


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
        return _http_ok(f"{self.url}/health", timeout=timeout)

    def start(self) -> float:
        """Start the server and wait for ``/health``; returns the seconds it took."""
        if self.running:
            return 0.0
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
                raise RuntimeError(f"mlflow server exited with {code} before /health:\n{_tail(self.log_path)}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(
                    f"mlflow server not healthy after {self.startup_timeout_s} s:\n{_tail(self.log_path)}"
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
        return _tail(self.log_path, lines)

    def __enter__(self) -> MlflowServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"MlflowServer({self.url!r}, running={self.running})"


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (initdb on a free port), which a test may stop and start.

    The shared server on 5432 is never restarted by tests. initdb refuses to run as root,
    so the cluster belongs to the ``postgres`` OS user.
    """

    def __init__(self) -> None:
        import glob
        import pwd

        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.bin = Path(bins[-1])
        # Not under pytest's tmp_path: the postgres user cannot enter root's 0700 folders.
        self.folder = Path(tempfile.mkdtemp(prefix="heimdall-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.user = pwd.getpwnam("postgres")
        os.chmod(self.folder, 0o755)
        os.chown(self.folder, self.user.pw_uid, self.user.pw_gid)
        self._as_postgres([str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                           "--no-sync"])

    @property
    def uri(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, args: list[str]) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "log.txt"),
                           "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1", "-w", "start"])

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def __enter__(self) -> PrivatePostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)
