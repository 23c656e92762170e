"""The fast query path: run queries answered without importing MLflow (about 1.5 s of a fresh process).

:func:`open_source` gives the query commands a :class:`~heimdall_cli.tracking.search.RunSource`:
a tracking server is asked through its public REST API, a SQLite or PostgreSQL store with
read-only SQL at a schema revision checked against MLflow's. Whatever the fast reader does not
handle (a filter clause it does not parse, an artifact scheme, an unknown schema revision)
raises ``Unsupported`` and that one call goes to the MLflow-backed tracker instead, so answers
and error messages stay MLflow's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from heimdall_cli.tracking.grammar import Unsupported
from heimdall_cli.tracking.probe import probe_tracking

if TYPE_CHECKING:
    from heimdall_cli.settings import Settings
    from heimdall_cli.tracking.search import RunSource
    from heimdall_cli.tracking.service import Tracker


class FastSource:
    """A fast reader with the MLflow-backed tracker behind it for what the reader does not handle."""

    def __init__(self, settings: Settings, reader: Any | None) -> None:
        self.settings = settings
        self.reader = reader
        self._tracker: Tracker | None = None
        self._writer: Any = None  # the local registry server's client, False: none this time

    @property
    def tracker(self) -> Tracker:
        """The MLflow-backed tracker (opened on first use)."""
        if self._tracker is None:
            from heimdall_cli.tracking.connect import open_tracker

            self._tracker = open_tracker(self.settings, patient=False, probe=False)
        return self._tracker

    @property
    def client(self) -> Any:
        """What registry changes are written with: a server's REST API where there is one (the tracking
        server, or the local registry server of a SQL store; no MLflow import), ``MlflowClient`` otherwise."""
        from heimdall_cli.tracking.readers.registry_server import registry_writer
        from heimdall_cli.tracking.readers.rest import RestReader
        from heimdall_cli.tracking.readers.rest_registry import RestRegistryClient

        if isinstance(self.reader, RestReader):
            return RestRegistryClient(self.reader)
        if self._writer is None:
            self._writer = registry_writer(self.settings, self.settings.tracking.query_timeout_s) or False
        return RestRegistryClient(self._writer) if self._writer else self.tracker.client

    def _ask(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self.reader is not None:
            try:
                return getattr(self.reader, name)(*args, **kwargs)
            except Unsupported:
                pass
        return getattr(self.tracker, name)(*args, **kwargs)

    def find_experiment(self, name: str | None = None) -> str:
        return self._ask("find_experiment", name)

    def experiment_name(self, experiment_id: str) -> str:
        return self._ask("experiment_name", experiment_id)

    def search(self, experiment_ids: list[str], filter_string: str | None = None,
               order_by: list[str] | None = None, max_results: int = 100) -> list[Any]:
        return self._ask("search", experiment_ids, filter_string, order_by, max_results)

    def match_run_ids(self, prefix: str, limit: int = 2) -> list[str]:
        return self._ask("match_run_ids", prefix, limit)

    def get_run(self, run_id: str | None = None) -> Any:
        return self._ask("get_run", run_id)

    def metric_history(self, key: str, run_id: str | None = None) -> list[tuple[int, float, int]]:
        return self._ask("metric_history", key, run_id)

    def list_artifacts(self, path: str | None = None, run_id: str | None = None) -> list[tuple[str, int | None]]:
        return self._ask("list_artifacts", path, run_id)

    def logged_models(self, run_id: str | None = None) -> list[Any]:
        if self.reader is not None and hasattr(self.reader, "logged_models"):
            return self._ask("logged_models", run_id)
        return self.tracker.logged_models(run_id)

    def registered_model_aliases(self, name: str) -> dict[str, int] | None:
        return self._ask("registered_model_aliases", name)

    def model_version(self, name: str, version: int) -> Any:
        return self._ask("model_version", name, version)

    def version_by_alias(self, name: str, alias: str) -> Any:
        return self._ask("version_by_alias", name, alias)

    def search_versions(self, name: str, limit: int = 100) -> list[Any]:
        return self._ask("search_versions", name, limit)


def open_source(settings: Settings) -> RunSource:
    """The query source for ``settings``: fast where it can be, MLflow otherwise (offline: the spool)."""
    timeout = settings.tracking.query_timeout_s
    if settings.tracking.offline:
        from heimdall_cli.tracking.connect import offline_settings

        settings = offline_settings(settings)
    probe_tracking(settings.tracking, timeout)  # the same one-line answer for a dead backend as every command
    reader: Any = None
    try:
        if settings.tracking.backend in ("sqlite", "postgresql"):
            from heimdall_cli.tracking.readers.sql import SqlReader

            reader = SqlReader(settings, timeout)
        elif settings.tracking.backend == "http":
            from heimdall_cli.tracking.readers.rest import RestReader

            reader = RestReader(settings, timeout)
    except Unsupported:
        reader = None
    return FastSource(settings, reader)
