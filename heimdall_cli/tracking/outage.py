"""Writes of one run that survive tracking-backend outages.

Every write of a running run (metric batches, params, tags, artifacts, the final
status) goes through :class:`RunWriter`:

- while the backend answers, to the backend;
- during an outage the write raises :class:`BackendUnavailable` and the caller's
  queue keeps it (the metric batcher and the artifact uploader retry with backoff,
  in order); one warning says the backend is unreachable and how much is queued,
  another when it has recovered;
- once the backend has been unreachable for longer than ``tracking.outage_bound_s``,
  the run is diverted to the local spool (an embedded MLflow store): a spool run
  tagged with the original run id receives the params and tags logged so far and
  every later write. ``heimdall runs sync`` merges it back into the original run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from heimdall_cli.backend_errors import is_unreachable, translate
from heimdall_cli.errors import BackendUnavailable
from heimdall_cli.tracking.spool import ORIGIN_RUN_ID, open_spool

if TYPE_CHECKING:
    from mlflow import MlflowClient

T = TypeVar("T")
EventFn = Callable[[str], None]
_log = logging.getLogger("heimdall.tracking")


class RunWriter:
    """Routes a run's writes to the backend, or to the spool after a long outage."""

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        *,
        experiment_name: str,
        run_name: str | None,
        spool_dir: Path,
        bound_s: float,
        pending: Callable[[], int] = lambda: 0,
        on_event: EventFn | None = None,
    ) -> None:
        self.client = client
        self.run_id = run_id
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.spool_dir = spool_dir
        self.bound_s = bound_s
        self.pending = pending
        self.on_event = on_event or (lambda message: _log.warning(message))
        self.params: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.down_since: float | None = None
        self.spool_client: MlflowClient | None = None
        self.spool_run_id: str | None = None
        self._lock = threading.RLock()

    @property
    def diverted(self) -> bool:
        """True once the run continues in the local spool."""
        return self.spool_run_id is not None

    def call(self, action: str, fn: Callable[[MlflowClient, str], T], *, proves_backend: bool = True) -> T:
        """Run ``fn(client, run_id)`` on the current destination; see the module docstring.

        ``proves_backend=False`` for artifact writes: MLflow caches a run's artifact location,
        so an upload can succeed while the tracking store is down; it does not end an outage.
        """
        with self._lock:
            if self.spool_client is not None and self.spool_run_id is not None:
                return fn(self.spool_client, self.spool_run_id)
        try:
            result = fn(self.client, self.run_id)
        except Exception as e:
            if not is_unreachable(e):
                raise translate(e, action) from e
            return self._unreachable(action, fn, e)
        with self._lock:
            if self.down_since is not None and proves_backend:
                down = time.monotonic() - self.down_since
                self.down_since = None
                self.on_event(f"tracking backend recovered after {down:.0f} s; sending the "
                              f"{self.pending()} queued metric points in order")
        return result

    def _unreachable(self, action: str, fn: Callable[[MlflowClient, str], T], exc: Exception) -> T:
        with self._lock:
            now = time.monotonic()
            if self.down_since is None:
                self.down_since = now
                self.on_event(f"tracking backend unreachable ({translate(exc, action).message}); training goes "
                              f"on, {self.pending()} metric points queued, retrying with backoff")
            if now - self.down_since < self.bound_s:
                raise BackendUnavailable(f"{action}: tracking backend unreachable") from exc
            self.divert()
            assert self.spool_client is not None and self.spool_run_id is not None
            return fn(self.spool_client, self.spool_run_id)

    def divert(self) -> None:
        """Continue this run in the local spool (idempotent)."""
        with self._lock:
            if self.diverted:
                return
            from mlflow import MlflowClient
            from mlflow.entities import Param

            spool = open_spool(self.spool_dir, create=True)
            client = MlflowClient(tracking_uri=spool.tracking_uri)
            experiment = client.get_experiment_by_name(self.experiment_name)
            if experiment is None:
                location = (spool.artifact_root.resolve() / self.experiment_name).as_uri()
                experiment_id = client.create_experiment(self.experiment_name, artifact_location=location)
            else:
                experiment_id = experiment.experiment_id
            tags = {**self.tags, ORIGIN_RUN_ID: self.run_id}
            run = client.create_run(experiment_id, run_name=self.run_name, tags=tags)
            params = [Param(k, v) for k, v in self.params.items()]
            for i in range(0, len(params), 100):
                client.log_batch(run.info.run_id, params=params[i : i + 100])
            self.spool_client, self.spool_run_id = client, run.info.run_id
            self.on_event(f"tracking backend unreachable for over {self.bound_s:.0f} s: run {self.run_id} continues "
                          f"in the local spool {spool.path}; afterwards: heimdall runs sync {spool.path}")

    def remember(self, params: dict[str, str] | None = None, tags: dict[str, Any] | None = None) -> None:
        """Keep params and tags, so a diverted run starts with them."""
        with self._lock:
            self.params.update(params or {})
            self.tags.update({k: str(v) for k, v in (tags or {}).items()})
