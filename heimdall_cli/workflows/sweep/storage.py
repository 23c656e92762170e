"""Where a study lives (Optuna's RDB storage) and the lock that keeps workers from over-asking.

- PostgreSQL tracking: schema ``heimdall_optuna`` of the tracking database (created on
  first use; Optuna's tables, its ``alembic_version`` included, stay out of MLflow's).
- The embedded default (``sqlite:///mlflow.db``): ``mlflow-sweeps.db`` beside it.
- An http tracking server: ``--storage``/``sweep.storage`` names it (exit 2 otherwise).

The password travels in ``sweep.storage_password`` / ``tracking.password`` (SecretStr,
registered for scrubbing) and is put into the URL only when the engine is built.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from heimdall_cli.backend_errors import translated
from heimdall_cli.errors import ConfigError, NotFound
from heimdall_cli.redact import mask_uri

if TYPE_CHECKING:
    import optuna

    from heimdall_cli.settings import Settings

SCHEMA = "heimdall_optuna"
ATTR = "heimdall"  # the study's user attribute holding what every worker needs


@dataclass(frozen=True)
class StudyStorage:
    """A resolved study storage: URL without password, the password, and a PostgreSQL schema."""

    url: str  # safe to show
    password: str | None
    schema: str | None  # PostgreSQL only

    @property
    def kind(self) -> str:
        return "postgresql" if self.url.startswith("postgres") else "sqlite"

    @property
    def shown(self) -> str:
        """The URL as heimdall prints it (schema named, never a password)."""
        return mask_uri(self.url) + (f" (schema {self.schema})" if self.schema else "")

    def connection_url(self) -> str:
        if self.password is None:
            return self.url
        parts = urlsplit(self.url)
        user, _, host = parts.netloc.rpartition("@")
        return urlunsplit(parts._replace(netloc=f"{user}:{quote(self.password, safe='')}@{host}"))


def resolve_storage(settings: Settings) -> StudyStorage:
    """The study storage for ``settings`` (explicit ``sweep.storage`` first, else from tracking)."""
    sweep, tracking = settings.sweep, settings.tracking
    password = sweep.storage_password.get_secret_value() if sweep.storage_password else None
    if sweep.storage:
        url = sweep.storage
        scheme = urlsplit(url).scheme.split("+")[0]
        if scheme.startswith("postgres"):
            return StudyStorage(_sqlalchemy_pg(url), password, SCHEMA)
        if scheme == "sqlite":
            return StudyStorage(url, None, None)
        raise ConfigError(f"sweep.storage {mask_uri(url)!r}: only postgresql://… and sqlite:///FILE are supported.",
                          "Example: --storage postgresql+psycopg://heimdall@db/heimdall")
    if tracking.offline:
        raise ConfigError("A sweep cannot run with tracking.offline.", "Drop --offline / tracking.offline.")
    if tracking.backend == "postgresql":
        pw = tracking.password.get_secret_value() if tracking.password else None
        return StudyStorage(_sqlalchemy_pg(tracking.uri), pw, SCHEMA)
    if tracking.backend == "sqlite":
        path = _sqlite_path(tracking.uri)
        beside = path.with_name(f"{path.stem}-sweeps.db")
        return StudyStorage(f"sqlite:///{beside}", None, None)
    raise ConfigError(f"Tracking backend {mask_uri(tracking.uri)!r} cannot hold the study.",
                      "Name its storage: heimdall sweep … --storage postgresql+psycopg://USER@HOST/DB")


def _sqlalchemy_pg(url: str) -> str:
    scheme, rest = url.split("://", 1)
    if "+" not in scheme:
        scheme = "postgresql+psycopg"
    return f"{scheme}://{rest}"


def _sqlite_path(uri: str) -> Path:
    path = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else uri.split("://", 1)[1]
    return Path(path.split("?", 1)[0])


def open_storage(store: StudyStorage, *, heartbeat_s: int | None = None, stale_after_s: int | None = None,
                 on_stale: Any = None) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage for ``store`` (creating the schema or file on first use)."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if store.kind == "postgresql":
        _create_schema(store)
        engine_kwargs["connect_args"] = {"options": f"-csearch_path={store.schema}", "connect_timeout": 10}
    else:
        Path(_sqlite_path(store.url)).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs["connect_args"] = {"timeout": 60}
    with translated(f"Sweep storage {store.shown}"):
        return optuna.storages.RDBStorage(store.connection_url(), engine_kwargs=engine_kwargs,
                                          heartbeat_interval=heartbeat_s, grace_period=stale_after_s,
                                          heartbeat_stale_trial_callback=on_stale)


def _create_schema(store: StudyStorage) -> None:
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    engine = sqlalchemy.create_engine(store.connection_url(), poolclass=NullPool,
                                      connect_args={"connect_timeout": 10})
    try:
        with translated(f"Sweep storage {store.shown}"), engine.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{store.schema}"')
    finally:
        engine.dispose()


@contextlib.contextmanager
def study_lock(store: StudyStorage, study: str) -> Iterator[None]:
    """Held while a worker counts the study's trials and asks for one, so N finished means N.

    PostgreSQL: a session advisory lock (works across boxes). SQLite: a file lock beside
    the database (a SQLite study is one box's anyway).
    """
    key = int.from_bytes(hashlib.sha256(f"heimdall-sweep:{study}".encode()).digest()[:8], "big", signed=True)
    if store.kind == "postgresql":
        import sqlalchemy
        from sqlalchemy.pool import NullPool

        engine = sqlalchemy.create_engine(store.connection_url(), poolclass=NullPool,
                                          connect_args={"connect_timeout": 10})
        try:
            with translated(f"Sweep storage {store.shown}"):
                conn = engine.connect()
            try:
                conn.exec_driver_sql(f"SELECT pg_advisory_lock({key})")
                yield
            finally:
                with contextlib.suppress(Exception):
                    conn.exec_driver_sql(f"SELECT pg_advisory_unlock({key})")
                conn.close()
        finally:
            engine.dispose()
        return
    lock_path = _sqlite_path(store.url).with_suffix(".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def load_study(storage: Any, name: str, settings: Settings | None = None) -> optuna.Study:
    """Study ``name`` (NotFound when the storage has none); ``settings`` give its sampler and pruner."""
    import optuna

    sampler = pruner = None
    if settings is not None:
        sweep = settings.sweep
        sampler = optuna.samplers.TPESampler(seed=sweep.sampler_seed, constant_liar=True)
        if sweep.pruner == "median":
            pruner = optuna.pruners.MedianPruner(n_startup_trials=sweep.pruner_startup_trials,
                                                 n_warmup_steps=sweep.pruner_warmup_epochs)
        elif sweep.pruner == "hyperband":
            pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=settings.training.epochs)
        else:
            pruner = optuna.pruners.NopPruner()
    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        raise NotFound(f"Study '{name}' not found.", "Start it: heimdall sweep start --config FILE --name "
                       f"{name}") from None
