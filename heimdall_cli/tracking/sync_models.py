"""``runs sync`` for logged models: replay a spooled run's LoggedModels into the backend, exactly once.

A model is copied once: its copy carries ``heimdall.synced_from = <spool id>/<model id>``,
and a later sync skips it. A copy left PENDING by an interrupted sync is deleted and made
again. The copy keeps the name, kind, params, tags, files, its step as the run's output,
and its metrics with their dataset links (the same points as the run's, so the run's
history gains nothing twice).
"""

from __future__ import annotations

import tempfile
from typing import TYPE_CHECKING, Any

from heimdall_cli.tracking.spool import SYNCED_FROM

if TYPE_CHECKING:
    from mlflow import MlflowClient


def sync_models(source: MlflowClient, client: MlflowClient, run: Any, target_id: str, spool_id: str,
                dry_run: bool) -> tuple[int, int]:
    """Copy the live logged models of spooled ``run`` into ``target_id``; (copied, skipped)."""
    source_id = run.info.run_id
    models = list(source.search_logged_models([run.info.experiment_id],
                                              filter_string=f"source_run_id = '{source_id}'"))
    if not models:
        return 0, 0
    experiment_id = client.get_run(target_id).info.experiment_id
    copies = {m.tags.get(SYNCED_FROM): m for m in client.search_logged_models(
        [experiment_id], filter_string=f"source_run_id = '{target_id}'")}
    steps = {o.model_id: o.step for o in (run.outputs.model_outputs if run.outputs else [])}
    copied = skipped = 0
    for model in sorted(models, key=lambda m: m.creation_timestamp or 0):
        origin = f"{spool_id}/{model.model_id}"
        copy = copies.get(origin)
        if copy is not None and str(getattr(copy.status, "value", copy.status)) != "PENDING":
            skipped += 1
            continue
        copied += 1
        if dry_run:
            continue
        if copy is not None:  # an interrupted sync's partial copy
            client.delete_logged_model(copy.model_id)
        _copy(source, client, model, experiment_id, target_id, origin, steps.get(model.model_id, 0))
    return copied, skipped


def _copy(source: MlflowClient, client: MlflowClient, model: Any, experiment_id: str, target_id: str,
          origin: str, step: int) -> None:
    from mlflow.artifacts import download_artifacts
    from mlflow.entities import LoggedModelOutput, Metric

    new = client.create_logged_model(experiment_id, name=model.name, source_run_id=target_id,
                                     tags={**(model.tags or {}), SYNCED_FROM: origin}, params=dict(model.params or {}),
                                     model_type=model.model_type)
    client.log_outputs(target_id, [LoggedModelOutput(new.model_id, step)])
    with tempfile.TemporaryDirectory(prefix="heimdall-sync-model-") as tmp:
        local = download_artifacts(artifact_uri=model.artifact_location, dst_path=tmp,
                                   tracking_uri=source.tracking_uri)
        client.log_model_artifacts(new.model_id, local)
    metrics = [Metric(m.key, m.value, m.timestamp, m.step, model_id=new.model_id, dataset_name=m.dataset_name,
                      dataset_digest=m.dataset_digest) for m in (model.metrics or [])]
    for i in range(0, len(metrics), 1000):
        client.log_batch(target_id, metrics=metrics[i : i + 1000])
    status = str(getattr(model.status, "value", model.status))
    client.finalize_logged_model(new.model_id, "READY" if status == "READY" else "FAILED")
