"""``RunTracker``: experiments, runs, params, tags, metrics and artifacts of one MLflow backend.

It uses ``MlflowClient`` with an explicit tracking URI (never ``mlflow.set_tracking_uri``,
which would copy the URI, password included, into the process environment). Writes of
the active run go through the outage-tolerant :class:`~heimdall_cli.tracking.outage.RunWriter`;
metrics are queued and sent in batches (:mod:`heimdall_cli.tracking.batcher`).
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heimdall_cli.backend_errors import translated
from heimdall_cli.errors import BackendUnavailable, ConfigError, NotFound
from heimdall_cli.redact import mask_uri
from heimdall_cli.tracking.batcher import MetricBatcher, Point
from heimdall_cli.tracking.heartbeat import Heartbeat, start_heartbeat, stop_heartbeat
from heimdall_cli.tracking.models import save_pytorch_model
from heimdall_cli.tracking.names import generate_run_name
from heimdall_cli.tracking.outage import EventFn, RunWriter
from heimdall_cli.tracking.records import END_STATUSES, RunRecord, flatten_params

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from heimdall_cli.settings import Settings

MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
MAX_PARAMS_PER_BATCH = 100


class RunTracker:
    """Experiments, runs, params, metrics and artifacts (the registry and search take one of these)."""

    def __init__(self, settings: Settings, client: MlflowClient, on_event: EventFn | None = None) -> None:
        self.settings = settings
        self.client = client
        self.experiment_id: str | None = None
        self.run_id: str | None = None
        self.on_event = on_event  # outage warnings (default: logged as WARNING on stderr)
        self._batcher: MetricBatcher | None = None
        self._writer: RunWriter | None = None
        self._heartbeat: Heartbeat | None = None
        self.last_points: dict[str, Point] = {}  # the last value queued per metric key (linked to logged models)
        self.logged_params: dict[str, str] = {}  # the params this process logged (copied to logged models)

    # ------------------------------------------------------------------ identity
    @property
    def tracking_uri(self) -> str:
        """The tracking URI with any password masked (safe to print)."""
        return mask_uri(self.settings.tracking.uri)

    def _require_run(self, run_id: str | None = None) -> str:
        run_id = run_id or self.run_id
        if not run_id:
            raise ConfigError("No active run.", "Call start_run() first.")
        return run_id

    # ------------------------------------------------------------------ experiments
    def get_or_create_experiment(self, name: str | None = None) -> str:
        """Return the id of experiment ``name`` (default from settings), creating it if needed."""
        name = name or self.settings.tracking.experiment
        with translated(f"Experiment '{name}'"):
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                try:
                    experiment_id = self.client.create_experiment(name, artifact_location=self._artifact_location(name))
                except Exception as e:  # another process may have created it meanwhile
                    experiment = self.client.get_experiment_by_name(name)
                    if experiment is None:
                        raise e
                    experiment_id = experiment.experiment_id
            else:
                if experiment.lifecycle_stage == "deleted":
                    raise ConfigError(
                        f"Experiment '{name}' is deleted.", "Restore it in MLflow or choose another experiment name."
                    )
                experiment_id = experiment.experiment_id
        self.experiment_id = experiment_id
        return experiment_id

    def find_experiment(self, name: str | None = None) -> str:
        """The id of an existing experiment; NotFound when there is none."""
        name = name or self.settings.tracking.experiment
        with translated(f"Experiment '{name}'"):
            experiment = self.client.get_experiment_by_name(name)
        if experiment is None or experiment.lifecycle_stage == "deleted":
            raise NotFound(f"Experiment '{name}' not found.", "List experiments in the MLflow UI: heimdall ui")
        return experiment.experiment_id

    def _artifact_location(self, name: str) -> str | None:
        storage, backend = self.settings.storage, self.settings.tracking.backend
        if backend == "http":
            return None  # the server decides (proxied artifacts)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        if storage.is_s3:
            return f"{storage.artifact_root.rstrip('/')}/{safe}"
        return (Path(storage.artifact_root).expanduser().resolve() / safe).as_uri()

    # ------------------------------------------------------------------ runs
    def start_run(
        self,
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        experiment: str | None = None,
    ) -> str:
        """Start a new run, or attach to ``run_id`` (resume). Returns the run id."""
        self.close()  # metrics still queued for a previous run go to that run, not this one
        if run_id:
            with translated(f"Run '{run_id}'", missing=run_not_found(run_id)):
                run = self.client.get_run(run_id)
                if run.info.status != "RUNNING":
                    self.client.update_run(run_id, status="RUNNING")
            self.experiment_id = run.info.experiment_id
            self.run_id = run_id
        else:
            experiment_id = self.get_or_create_experiment(experiment)
            with translated("Starting a run"):
                run = self.client.create_run(
                    experiment_id, run_name=run_name or generate_run_name(),
                    tags={k: str(v) for k, v in (tags or {}).items()},
                )
            self.run_id = run.info.run_id
        tracking = self.settings.tracking
        batcher = MetricBatcher(lambda points: self._send_points(writer, points),
                                interval=tracking.flush_interval_s,
                                max_memory_points=tracking.queue_memory_points,
                                spill_dir=self.spool_dir / "queue")
        writer = RunWriter(self.client, self.run_id, experiment_name=tracking.experiment,
                           run_name=run.info.run_name, spool_dir=self.spool_dir, bound_s=tracking.outage_bound_s,
                           pending=lambda: batcher.pending, on_event=self.on_event)
        writer.remember(tags=run.data.tags)
        self._batcher, self._writer = batcher, writer
        self._heartbeat = start_heartbeat(self.client, self.run_id, self.settings.tracking.heartbeat_interval_s,
                                          run.data.tags)
        return self.run_id

    @property
    def spool_dir(self) -> Path:
        """The local spool for offline runs and long outages."""
        return self.settings.spool_dir

    @property
    def diverted(self) -> bool:
        """True when the active run continues in the local spool (the backend stayed down too long)."""
        return self._writer is not None and self._writer.diverted

    def _write(self, action: str, fn: Callable[[MlflowClient, str], Any], run_id: str | None = None, *,
               artifact: bool = False) -> Any:
        """A write to a run: through the outage-tolerant writer for the active run, else direct."""
        run_id = self._require_run(run_id)
        if self._writer is not None and run_id == self.run_id:
            return self._writer.call(action, fn, proves_backend=not artifact)
        with translated(action):
            return fn(self.client, run_id)

    def end_run(self, status: str = "FINISHED") -> None:
        """Flush everything queued, then mark the run FINISHED, FAILED or KILLED."""
        status = status.upper()
        if status not in END_STATUSES:
            raise ConfigError(f"Run status {status!r} is not one of {', '.join(END_STATUSES)}.")
        run_id = self._require_run()
        self._heartbeat = stop_heartbeat(self._heartbeat)
        if status == "KILLED" and self._writer is not None and self._writer.down_since is not None:
            self._writer.divert()  # stopping on a signal: no time to wait out an outage; spool the rest
        try:
            self._drain()
        finally:
            # Mark the run ended even when metrics could not be sent; the flush error still propagates.
            batcher, self._batcher = self._batcher, None
            if batcher is not None:
                batcher.stop()
            try:
                self._write(f"Ending run '{run_id}'", lambda c, r: c.set_terminated(r, status=status))
            finally:
                self.run_id, self._writer = None, None

    def _drain(self) -> None:
        """Flush; during an outage wait for the backend (or for the diversion to the spool)."""
        if self._batcher is None:
            return
        while True:
            try:
                self.flush()
                return
            except BackendUnavailable:
                if self._writer is None:
                    raise
                # The writer diverts to the spool once the outage outlasts the bound; keep waiting.
                time.sleep(min(5.0, max(0.2, self.settings.tracking.flush_interval_s)))

    def get_run(self, run_id: str | None = None) -> RunRecord:
        """Status, params, latest metrics and tags of a run."""
        run_id = self._require_run(run_id)
        with translated(f"Run '{run_id}'", missing=run_not_found(run_id)):
            run = self.client.get_run(run_id)
        return RunRecord.from_mlflow(run)

    def delete_run(self, run_id: str) -> None:
        """Mark a run deleted (MLflow keeps it restorable until garbage collection)."""
        with translated(f"Deleting run '{run_id}'", missing=run_not_found(run_id)):
            self.client.delete_run(run_id)

    # ------------------------------------------------------------------ params and tags
    def log_params(self, params: Mapping[str, Any], run_id: str | None = None) -> None:
        """Log flattened params. Values over 6,000 characters go to ``params/<key>.txt`` instead."""
        from mlflow.entities import Param

        run_id = self._require_run(run_id)
        flat = flatten_params(params)
        too_long = {k: v for k, v in flat.items() if len(v) > MAX_PARAM_LENGTH}
        for key, value in too_long.items():
            self.log_text(value, f"params/{key.replace('/', '_')}.txt", run_id=run_id)
            flat[key] = f"(in artifact params/{key.replace('/', '_')}.txt, {len(value)} characters)"
        items = [Param(k, v) for k, v in flat.items()]
        self.logged_params.update(flat)
        if self._writer is not None and run_id == self.run_id:
            self._writer.remember(params=flat)
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            chunk = items[i : i + MAX_PARAMS_PER_BATCH]
            self._write("Logging params", lambda c, r, chunk=chunk: c.log_batch(r, params=chunk), run_id)

    def set_tags(self, tags: Mapping[str, Any], run_id: str | None = None) -> None:
        """Set run tags."""
        from mlflow.entities import RunTag

        run_id = self._require_run(run_id)
        if self._writer is not None and run_id == self.run_id:
            self._writer.remember(tags=dict(tags))
        items = [RunTag(k, str(v)) for k, v in tags.items()]
        self._write("Setting tags", lambda c, r: c.log_batch(r, tags=items), run_id)

    # ------------------------------------------------------------------ metrics
    def log_metrics(
        self, metrics: Mapping[str, float], step: int | None = None, timestamp_ms: int | None = None
    ) -> None:
        """Queue metric values; they are sent in batches in the background (see :meth:`flush`)."""
        self._require_run()
        if self._batcher is None:
            raise ConfigError("No active run.", "Call start_run() first.")
        ts = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
        points = []
        for key, value in metrics.items():
            v = float(value)
            if math.isnan(v) or math.isinf(v):
                # MLflow stores NaN/inf inconsistently across backends; keep them visible as such.
                v = float("nan") if math.isnan(v) else math.copysign(1.7976931348623157e308, v)
            points.append(Point(key, v, ts, int(step or 0)))
        self.last_points.update((p.key, p) for p in points)
        self._batcher.add(points)

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        """Queue one metric value."""
        self.log_metrics({key: value}, step=step)

    def flush(self, timeout: float | None = None) -> None:
        """Block until every queued metric has reached the backend."""
        if self._batcher is not None:
            with translated("Sending metrics"):
                self._batcher.flush(timeout)

    @property
    def pending_metrics(self) -> int:
        """Metric points queued but not yet acknowledged."""
        return self._batcher.pending if self._batcher else 0

    @staticmethod
    def _send_points(writer: RunWriter, points: list[Point]) -> None:
        from mlflow.entities import Metric

        metrics = [Metric(p.key, p.value, p.timestamp_ms, p.step) for p in points]
        writer.call("Sending metrics", lambda c, r: c.log_batch(r, metrics=metrics, synchronous=True))

    def metric_history(self, key: str, run_id: str | None = None) -> list[tuple[int, float, int]]:
        """(step, value, timestamp_ms) of every point of ``key``, in step order."""
        run_id = self._require_run(run_id)
        with translated(f"Metric history of '{key}'"):
            history = self.client.get_metric_history(run_id, key)
        return sorted(((m.step, m.value, m.timestamp) for m in history), key=lambda t: (t[0], t[2]))

    # ------------------------------------------------------------------ artifacts
    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        """Upload one file (or a whole directory) to the run's artifacts."""
        path = Path(local_path)
        if not path.exists():
            raise NotFound(f"Artifact {path} does not exist.")
        def upload(client: MlflowClient, run: str) -> None:
            if path.is_dir():
                client.log_artifacts(run, str(path), artifact_path)
            else:
                client.log_artifact(run, str(path), artifact_path)

        self._write(f"Uploading {path.name}", upload, artifact=True)

    def log_artifacts(self, local_dir: str | Path, artifact_path: str | None = None,
                      run_id: str | None = None) -> None:
        """Upload the contents of a directory (into the active run, or ``run_id``)."""
        self._write(f"Uploading {Path(local_dir).name}",
                    lambda c, r: c.log_artifacts(r, str(local_dir), artifact_path), run_id, artifact=True)

    def log_text(self, text: str, artifact_file: str, run_id: str | None = None) -> None:
        """Write ``text`` to the artifact ``artifact_file``."""
        self._write(f"Uploading {artifact_file}", lambda c, r: c.log_text(r, text, artifact_file), run_id,
                    artifact=True)

    def delete_artifact(self, artifact_path: str, run_id: str | None = None) -> None:
        """Delete an artifact file or folder of a run (e.g. an evicted checkpoint)."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        def delete(client: MlflowClient, run: str) -> None:
            artifact_uri = client.get_run(run).info.artifact_uri
            # mlflow-artifacts:/ (proxied by a server) needs our tracking URI, not the global one.
            repo = get_artifact_repository(artifact_uri, tracking_uri=client.tracking_uri)
            with contextlib.suppress(FileNotFoundError):  # e.g. a run diverted to the spool never had it
                repo.delete_artifacts(artifact_path)

        self._write(f"Deleting artifact {artifact_path}", delete, run_id, artifact=True)

    def list_artifacts(self, path: str | None = None, run_id: str | None = None) -> list[tuple[str, int | None]]:
        """Every artifact file under ``path`` as (path, size in bytes), recursively."""
        run_id = self._require_run(run_id)
        out: list[tuple[str, int | None]] = []
        with translated("Listing artifacts"):
            stack = [path]
            while stack:
                for info in self.client.list_artifacts(run_id, stack.pop()):
                    if info.is_dir:
                        stack.append(info.path)
                    else:
                        out.append((info.path, info.file_size))
        return sorted(out)

    def download_artifacts(self, artifact_path: str, dst: str | Path, run_id: str | None = None) -> Path:
        """Download an artifact file or folder (or a logged model, ``models:/m-…``) to ``dst``; the local path."""
        if artifact_path.startswith("models:/"):  # a logged model's files (models:/m-…)
            from mlflow.artifacts import download_artifacts

            with translated(f"Downloading {artifact_path}"):
                location = self.client.get_logged_model(artifact_path.removeprefix("models:/")).artifact_location
                return Path(download_artifacts(artifact_uri=location, dst_path=str(dst),
                                               tracking_uri=self.client.tracking_uri))
        run_id = self._require_run(run_id)
        with translated(f"Downloading {artifact_path}"):
            return Path(self.client.download_artifacts(run_id, artifact_path, str(dst)))

    def log_dict(self, data: Any, artifact_file: str) -> None:
        """Write ``data`` as JSON or YAML (by extension) to an artifact."""
        self._write(f"Uploading {artifact_file}", lambda c, r: c.log_dict(r, data, artifact_file), artifact=True)

    def log_dataset(self, name: str, digest: str, source: str, *, context: str = "training",
                    profile: Mapping[str, Any] | None = None) -> None:
        """Record the dataset (name, content hash, source) as an MLflow dataset input."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(
            name=name,
            digest=digest[:36],
            source_type="heimdall",
            source=json.dumps({"uri": source}),
            profile=json.dumps(dict(profile or {}), default=str),
        )
        inputs = [DatasetInput(dataset, [InputTag("mlflow.data.context", context)])]
        self._write("Logging dataset input", lambda c, r: c.log_inputs(r, datasets=inputs))

    # ------------------------------------------------------------------ models
    def log_pytorch_model(self, model: Any, artifact_path: str = "model", *, input_example: Any,
                          signature: Any = None, metadata: Mapping[str, Any] | None = None) -> str:
        """Save ``model`` with the ``mlflow.pytorch`` flavour and upload it; returns the ``runs:/…`` URI."""
        run_id = self._require_run()
        with tempfile.TemporaryDirectory(prefix="heimdall-model-") as tmp:
            local = save_pytorch_model(model, Path(tmp) / "model", input_example=input_example,
                                       signature=signature, metadata=metadata)
            self.log_artifacts(local, artifact_path)
        return f"runs:/{run_id}/{artifact_path}"

    def close(self) -> None:
        """Flush and stop background work; does not end the run."""
        self._heartbeat = stop_heartbeat(self._heartbeat)
        if self._batcher is not None:
            try:
                self.flush()
            finally:
                batcher, self._batcher = self._batcher, None
                batcher.stop()


def run_not_found(run_id: str) -> NotFound:
    """The one message for an unknown run id."""
    return NotFound(f"Run '{run_id}' not found.", "List runs: heimdall runs list")
