"""MLflow 3 LoggedModels of a run: kept checkpoints and the final model, with their metrics and datasets.

A training run logs each kept (top-k) checkpoint and its final model as a LoggedModel
(``models:/m-…``): the run's output at a step, with the run's params, tags
``heimdall.kind`` (``checkpoint`` | ``final``), ``heimdall.step``, ``heimdall.epoch``, its
files (the ``.ckpt``, or the MLflow model folder), and the metrics of that step linked
to the model and to the dataset split they were measured on. A checkpoint evicted from
the top-k has its logged model deleted: its file is deleted from the store too, and a live
model whose file is gone would be a broken link in the Models tab.

Writes of the active run go through the outage-tolerant writer (:meth:`RunTracker._write`),
so a long outage or ``--offline`` puts them in the spool, and ``runs sync`` replays them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heimdall_cli.backend_errors import translated
from heimdall_cli.tracking.batcher import Point

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from heimdall_cli.tracking.runs import RunTracker

KIND_TAG = "heimdall.kind"
STEP_TAG = "heimdall.step"
EPOCH_TAG = "heimdall.epoch"
CHECKPOINT_TAG = "heimdall.checkpoint"  # the checkpoint file's name (kind checkpoint)
FROM_CHECKPOINT_TAG = "heimdall.from_checkpoint_step"  # the final model: the step of the checkpoint it was built from
MAX_MODEL_PARAMS = 1000
STATUSES = {0: "UNSPECIFIED", 1: "PENDING", 2: "READY", 3: "FAILED"}  # MLflow's stored status numbers


def model_id_of(reference: str) -> str | None:
    """The logged model id in ``m-<32 hex>`` or ``models:/m-<32 hex>``; None for anything else
    (a registered model may well be called ``m-something``)."""
    import re

    found = re.fullmatch(r"(?:models:/)?(m-[0-9a-f]{32})", reference.strip())
    return found[1] if found else None


@dataclass(frozen=True)
class DatasetRef:
    """One dataset split as MLflow knows it: the name and digest that metrics link to."""

    name: str
    digest: str
    context: str  # "training" | "validation" | "test"


@dataclass
class LoggedModelRecord:
    """One logged model of a run, as ``runs show`` prints it."""

    model_id: str
    name: str
    kind: str
    status: str
    step: int | None
    epoch: int | None
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    created_ms: int = 0

    @property
    def uri(self) -> str:
        return f"models:/{self.model_id}"

    @classmethod
    def from_mlflow(cls, m: Any) -> LoggedModelRecord:
        tags = dict(m.tags or {})

        def number(key: str) -> int | None:
            try:
                return int(tags[key])
            except (KeyError, ValueError):
                return None

        latest: dict[str, tuple[int, int, float]] = {}
        for metric in m.metrics or []:
            seen = latest.get(metric.key)
            if seen is None or (metric.step, metric.timestamp) >= seen[:2]:
                latest[metric.key] = (metric.step, metric.timestamp, float(metric.value))
        status = getattr(m.status, "value", m.status)
        return cls(m.model_id, m.name or "", tags.get(KIND_TAG, m.model_type or ""), str(status),
                   number(STEP_TAG), number(EPOCH_TAG), {k: v[2] for k, v in sorted(latest.items())}, tags,
                   int(m.creation_timestamp or 0))

    def to_json(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "uri": self.uri, "name": self.name, "kind": self.kind,
                "status": self.status, "step": self.step, "epoch": self.epoch, "metrics": self.metrics}


def _metrics(points: Sequence[Point], model_id: str, dataset: DatasetRef | None) -> list[Any]:
    from mlflow.entities import Metric

    return [Metric(p.key, p.value, p.timestamp_ms, p.step, model_id=model_id,
                   dataset_name=dataset.name if dataset else None, dataset_digest=dataset.digest if dataset else None)
            for p in points]


class LoggedModels:
    """Mixin of :class:`~heimdall_cli.tracking.service.Tracker`: the run's logged models."""

    def log_split_inputs(self: RunTracker, splits: Mapping[str, DatasetRef], *, source: str,
                         schema: Mapping[str, Any], profiles: Mapping[str, Mapping[str, Any]]) -> None:
        """Log each split (train, validation, test) as a dataset input of the run, with its context."""
        import json

        from mlflow.entities import Dataset, DatasetInput, InputTag

        inputs = [DatasetInput(Dataset(name=ref.name, digest=ref.digest[:36], source_type="heimdall",
                                       source=json.dumps({"uri": source}), schema=json.dumps(dict(schema)),
                                       profile=json.dumps(dict(profiles.get(key, {})), default=str)),
                               [InputTag("mlflow.data.context", ref.context)])
                  for key, ref in splits.items()]
        self._write("Logging dataset inputs", lambda c, r: c.log_inputs(r, datasets=inputs))

    def create_logged_model(self: RunTracker, name: str, *, kind: str, step: int, epoch: int | None,
                            params: Mapping[str, str], tags: Mapping[str, str] | None = None) -> str:
        """A new (PENDING) logged model of the active run, output at ``step``; returns its id."""
        from mlflow.entities import LoggedModelOutput

        all_tags = {KIND_TAG: kind, STEP_TAG: str(step), **({EPOCH_TAG: str(epoch)} if epoch is not None else {}),
                    **{k: str(v) for k, v in (tags or {}).items()}}
        first = dict(list(params.items())[:MAX_MODEL_PARAMS])

        def create(c: MlflowClient, run_id: str) -> str:
            experiment_id = c.get_run(run_id).info.experiment_id
            model = c.create_logged_model(experiment_id, name=name, source_run_id=run_id, tags=all_tags,
                                          params=first, model_type=kind)
            c.log_outputs(run_id, [LoggedModelOutput(model.model_id, step)])
            return model.model_id

        return self._write(f"Logging model {name}", create)

    def log_model_files(self: RunTracker, model_id: str, local: str | Path, *, ready: bool = True) -> None:
        """Upload a file, or a folder's contents, as the model's artifacts; then mark it READY."""
        path = Path(local)

        def upload(c: MlflowClient, run_id: str) -> None:
            if path.is_dir():
                c.log_model_artifacts(model_id, str(path))
            else:
                c.log_model_artifact(model_id, str(path))
            if ready:
                c.finalize_logged_model(model_id, "READY")

        self._write(f"Uploading model {model_id}", upload, artifact=True)

    def link_model_metrics(self: RunTracker, model_id: str, points: Sequence[Point],
                           dataset: DatasetRef | None) -> None:
        """Link metric points (as logged to the run) to ``model_id`` and the dataset they were measured on."""
        if not points:
            return
        metrics = _metrics(points, model_id, dataset)
        self._write("Linking metrics to a model", lambda c, r: c.log_batch(r, metrics=metrics, synchronous=True))

    def delete_logged_model(self: RunTracker, model_id: str) -> None:
        """Delete a logged model (an evicted checkpoint)."""
        def delete(c: MlflowClient, run_id: str) -> None:
            try:
                c.delete_logged_model(model_id)
            except Exception as e:
                # Created in the backend before the run was diverted to the spool (or the reverse): not here.
                if getattr(e, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
                    raise

        self._write(f"Deleting model {model_id}", delete, artifact=True)

    def logged_models(self: RunTracker, run_id: str | None = None) -> list[LoggedModelRecord]:
        """The live logged models of a run, by step then creation."""
        run_id = self._require_run(run_id)
        with translated(f"Logged models of run '{run_id}'"):
            experiment_id = self.client.get_run(run_id).info.experiment_id
            found = _all_pages(lambda token: self.client.search_logged_models(
                [experiment_id], filter_string=f"source_run_id = '{run_id}'", page_token=token))
        records = [LoggedModelRecord.from_mlflow(m) for m in found]
        return sorted(records, key=lambda r: (r.step if r.step is not None else -1, r.created_ms))

    def get_logged_model(self: RunTracker, model_id: str) -> LoggedModelRecord:
        """One logged model by id (``m-…``)."""
        from heimdall_cli.errors import NotFound

        missing = NotFound(f"Logged model '{model_id}' not found.",
                           "List a run's models: heimdall runs show RUN_ID")
        with translated(f"Logged model '{model_id}'", missing=missing):
            return LoggedModelRecord.from_mlflow(self.client.get_logged_model(model_id))

    def source_run_of(self: RunTracker, model_id: str) -> str:
        """The run that logged ``model_id``."""
        with translated(f"Logged model '{model_id}'"):
            return str(self.client.get_logged_model(model_id).source_run_id)


def _all_pages(search: Any) -> list[Any]:
    out: list[Any] = []
    token = None
    while True:
        page = search(token)
        out.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return out
