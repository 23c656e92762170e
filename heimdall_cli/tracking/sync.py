"""``heimdall runs sync``: replay the runs of a spool (:mod:`heimdall_cli.tracking.spool`) into the backend.

Sync is a diff, so it is idempotent and resumable: the target run is found by the tag
``heimdall.synced_from = <spool id>/<run id>``; only params, metric points
(key, step, timestamp, value), artifacts (path, size), inputs and logged models
(:mod:`~heimdall_cli.tracking.sync_models`) that the target does not have yet are sent,
and the run's status is set last.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heimdall_cli.backend_errors import translated
from heimdall_cli.errors import NotFound
from heimdall_cli.tracking.spool import ORIGIN_RUN_ID, SYNCED_FROM, Spool
from heimdall_cli.tracking.sync_models import sync_models

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from heimdall_cli.tracking.runs import RunTracker

_BATCH = 1000


@dataclass
class SyncReport:
    """What syncing one spooled run did (or, with dry_run, would do)."""

    source_run_id: str
    target_run_id: str | None
    run_name: str
    status: str
    created: bool = False
    params: int = 0
    metric_points: int = 0
    artifacts: int = 0
    artifact_bytes: int = 0
    inputs: int = 0
    models: int = 0  # logged models copied
    skipped: dict[str, int] = field(default_factory=dict)


def sync_spool(target: RunTracker, spool: Spool, *, dry_run: bool = False) -> list[SyncReport]:
    """Replay every run of ``spool`` into ``target``'s backend."""
    from mlflow import MlflowClient

    source = MlflowClient(tracking_uri=spool.tracking_uri)
    reports = []
    with translated(f"Reading spool {spool.path}"):
        experiments = source.search_experiments()
        runs = [(e.name, r) for e in experiments for r in source.search_runs([e.experiment_id], max_results=50000)]
    for experiment_name, run in sorted(runs, key=lambda t: t[1].info.start_time or 0):
        reports.append(_sync_run(source, run, experiment_name, target, spool, dry_run))
    return reports


def _sync_run(source: MlflowClient, run: Any, experiment_name: str, target: RunTracker, spool: Spool,
              dry_run: bool) -> SyncReport:
    origin = f"{spool.spool_id}/{run.info.run_id}"
    client = target.client
    report = SyncReport(run.info.run_id, None, run.info.run_name or "", run.info.status)
    with translated(f"Syncing run {run.info.run_id}"):
        existing = _find_target(target, experiment_name, origin, run.data.tags.get(ORIGIN_RUN_ID))
        if existing is None:
            report.created = True
            if dry_run:
                report.params = len(run.data.params)
                report.metric_points = sum(len(source.get_metric_history(run.info.run_id, k)) for k in run.data.metrics)
                report.artifacts = len(_files(source, run.info.run_id))
                return report
            experiment_id = target.get_or_create_experiment(experiment_name)
            tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.") or k in _KEPT_TAGS}
            tags[SYNCED_FROM] = origin
            tags["heimdall.source"] = f"offline spool {spool.path.resolve()}"
            created = client.create_run(experiment_id, start_time=run.info.start_time, tags=tags,
                                        run_name=run.info.run_name)
            target_id = created.info.run_id
        else:
            target_id = existing.info.run_id
        report.target_run_id = target_id
        _sync_params(client, run, target_id, report, dry_run)
        _sync_metrics(source, client, run, target_id, report, dry_run)
        _sync_inputs(client, run, target_id, existing, report, dry_run)
        _sync_artifacts(source, client, run.info.run_id, target_id, report, dry_run)
        report.models, report.skipped["models"] = sync_models(source, client, run, target_id, spool.spool_id,
                                                              dry_run)
        if not dry_run and existing is not None and SYNCED_FROM not in existing.data.tags:
            client.set_tag(target_id, SYNCED_FROM, origin)
        if not dry_run and run.info.status != "RUNNING":
            client.set_terminated(target_id, status=run.info.status, end_time=run.info.end_time)
    return report


_KEPT_TAGS = {"mlflow.runName", "mlflow.source.name", "mlflow.user", "mlflow.note.content"}


def _find_target(target: RunTracker, experiment_name: str, origin: str, origin_run_id: str | None = None) -> Any:
    """The run to merge into: the one a diverted run came from, else a previous sync's copy."""
    if origin_run_id:
        try:
            with translated(f"Run '{origin_run_id}'"):
                return target.client.get_run(origin_run_id)
        except NotFound:
            pass  # the original run was deleted meanwhile: sync into a new one
    experiment = target.client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    runs = target.client.search_runs([experiment.experiment_id], filter_string=f"tags.`{SYNCED_FROM}` = '{origin}'",
                                     max_results=1)
    return runs[0] if runs else None


def _sync_params(client: MlflowClient, run: Any, target_id: str, report: SyncReport, dry_run: bool) -> None:
    from mlflow.entities import Param

    have = client.get_run(target_id).data.params
    missing = [Param(k, v) for k, v in run.data.params.items() if k not in have]
    report.params = len(missing)
    report.skipped["params"] = len(run.data.params) - len(missing)
    if not dry_run:
        for i in range(0, len(missing), 100):
            client.log_batch(target_id, params=missing[i : i + 100])


def _sync_metrics(source: MlflowClient, client: MlflowClient, run: Any, target_id: str, report: SyncReport,
                  dry_run: bool) -> None:
    from mlflow.entities import Metric

    skipped = 0
    for key in sorted(run.data.metrics):
        points = source.get_metric_history(run.info.run_id, key)
        have = {(m.step, m.timestamp) for m in client.get_metric_history(target_id, key)}
        missing = [Metric(key, m.value, m.timestamp, m.step) for m in points if (m.step, m.timestamp) not in have]
        skipped += len(points) - len(missing)
        report.metric_points += len(missing)
        if not dry_run:
            missing.sort(key=lambda m: (m.step, m.timestamp))
            for i in range(0, len(missing), _BATCH):
                client.log_batch(target_id, metrics=missing[i : i + _BATCH])
    report.skipped["metric_points"] = skipped


def _sync_inputs(client: MlflowClient, run: Any, target_id: str, existing: Any, report: SyncReport,
                 dry_run: bool) -> None:
    inputs = list(getattr(run.inputs, "dataset_inputs", []) or [])
    have = set()
    if existing is not None:
        have = {(d.dataset.name, d.dataset.digest) for d in (existing.inputs.dataset_inputs or [])}
    missing = [d for d in inputs if (d.dataset.name, d.dataset.digest) not in have]
    report.inputs = len(missing)
    if missing and not dry_run:
        client.log_inputs(target_id, datasets=missing)


def _files(client: MlflowClient, run_id: str, path: str | None = None) -> dict[str, int]:
    out: dict[str, int] = {}
    for info in client.list_artifacts(run_id, path):
        if info.is_dir:
            out.update(_files(client, run_id, info.path))
        else:
            out[info.path] = int(info.file_size or 0)
    return out


def _sync_artifacts(source: MlflowClient, client: MlflowClient, source_id: str, target_id: str,
                    report: SyncReport, dry_run: bool) -> None:
    import tempfile

    wanted = _files(source, source_id)
    have = _files(client, target_id)
    missing = {p: size for p, size in wanted.items() if have.get(p) != size}
    report.artifacts = len(missing)
    report.artifact_bytes = sum(missing.values())
    report.skipped["artifacts"] = len(wanted) - len(missing)
    if dry_run:
        return
    with tempfile.TemporaryDirectory(prefix="heimdall-sync-") as tmp:
        for path in sorted(missing):
            local = source.download_artifacts(source_id, path, tmp)
            folder = str(Path(path).parent) if "/" in path else None
            client.log_artifact(target_id, local, folder)
            Path(local).unlink(missing_ok=True)
