"""PostgreSQL for tests: fresh databases on the shared server, and private clusters a test may stop.

PostgreSQL here uses ``trust`` auth for 127.0.0.1. A password in the URI is accepted and
simply never sent: the server does not ask for one (``conn.pgconn.used_password`` is
False). So a test can put a recognisable password into a URI (to check that it is never
printed) and still connect. Under trust a *wrong* password cannot be refused; an unknown
role or database is (``FATAL: role "…" does not exist``), see :meth:`PostgresDatabase.uri_with`.

The ``postgres_db`` fixture and ``require_postgres`` are in ``tests/services/postgres.py``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from devtools.services.processes import free_port, refuse_without_services

PG_HOST = os.environ.get("TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("TEST_PG_USER", "postgres")
PG_CONNECT_TIMEOUT_S = 3


def _admin_connect(dbname: str = "postgres", **kwargs: Any) -> Any:
    import psycopg

    refuse_without_services("PostgreSQL")

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


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (initdb on a free port), which a test may stop and start.

    The shared server on 5432 is never restarted by tests. initdb refuses to run as root,
    so the cluster belongs to the ``postgres`` OS user.
    """

    def __init__(self) -> None:
        import glob
        import pwd

        refuse_without_services("a private PostgreSQL")
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
