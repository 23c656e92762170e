"""``fit(settings) -> FitResult``: the training run that the CLI, tests and benchmarks call.

:func:`~heimdall_cli.training.prepare.prepare` builds everything; :func:`run` trains,
evaluates (:mod:`heimdall_cli.training.evaluate`), waits for uploads and ends the run:
FINISHED, FAILED on an exception, KILLED on SIGINT/SIGTERM.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from heimdall_cli.errors import Interrupted, WorkFailed
from heimdall_cli.redact import scrub
from heimdall_cli.training.ddp import leave_process_group
from heimdall_cli.training.prepare import Prepared, prepare

if TYPE_CHECKING:
    from heimdall_cli.data.dataset import Splits
    from heimdall_cli.settings import Settings
    from heimdall_cli.training.progress import ProgressView


@dataclass
class FitResult:
    """What a training produced; ``--json`` prints it."""

    run_id: str | None
    status: str
    experiment: str
    best: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)
    checkpoints: list[str] = field(default_factory=list)
    model_uri: str | None = None
    logged_model: str | None = None  # models:/m-… of the final model
    output_dir: str = ""
    epochs: int = 0
    steps: int = 0
    seconds: float = 0.0
    upload_errors: list[str] = field(default_factory=list)
    spool: str | None = None  # where the run is, when offline or diverted by a long outage


def fit(settings: Settings, *, resume_run_id: str | None = None, view: ProgressView | None = None,
        splits: Splits | None = None, evaluate: bool = True, tags: dict[str, str] | None = None) -> FitResult:
    """Train with ``settings``; one MLflow run per call (or the resumed one). ``tags``: set on the run."""
    return run(prepare(settings, resume_run_id=resume_run_id, view=view, splits=splits, tags=tags),
               evaluate=evaluate)


def run(prep: Prepared, *, evaluate: bool = True) -> FitResult:
    """Train, then (``evaluate``) test, score baselines, log plots and the model; end the run."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from heimdall_cli.training.callbacks import StopRequested

    settings, parts, tracker = prep.settings, prep.parts, prep.tracker
    started = time.monotonic()
    result = FitResult(tracker.run_id if tracker else None, "RUNNING", settings.tracking.experiment,
                       output_dir=str(parts.run_dir))
    parts.graceful.install()
    try:
        parts.trainer.fit(prep.model, prep.loaders["train"], prep.loaders["val"],
                          ckpt_path=str(prep.resume_ckpt) if prep.resume_ckpt else None)
        if parts.graceful.signame:  # the signal came during the last epoch's validation
            raise StopRequested(parts.graceful.signame, None)
        parts.graceful.uninstall()
        if parts.share.run_id:
            result.run_id = parts.share.run_id
        if evaluate:
            from heimdall_cli.training.evaluate import evaluate as evaluate_run

            result.test, result.model_uri = evaluate_run(prep)
        status = "FINISHED"
    except (StopRequested, SIGTERMException, KeyboardInterrupt) as e:
        parts.graceful.uninstall()
        checkpoint = parts.graceful.saved
        if checkpoint is not None and checkpoint.exists() and parts.checkpoint_sync is not None:
            parts.checkpoint_sync.upload_file(checkpoint)
        _finish(prep, result, "KILLED", started)
        leave_process_group()
        signame = parts.graceful.signame or getattr(e, "signame", "SIGINT")
        raise Interrupted(
            f"Training stopped by {signame}; checkpoint saved, run {result.run_id} marked KILLED.",
            f"Continue it: heimdall train --resume {result.run_id}" if result.run_id else None,
        ) from None
    except BaseException:
        parts.graceful.uninstall()
        _finish(prep, result, "FAILED", started)
        raise
    _finish(prep, result, status, started)
    leave_process_group()
    if result.upload_errors:
        raise WorkFailed(f"Training finished but {len(result.upload_errors)} upload(s) failed: "
                         f"{result.upload_errors[0]}", f"Run {result.run_id} is FINISHED; check the artifact store.")
    return result


def _finish(prep: Prepared, result: FitResult, status: str, started: float) -> None:
    """Wait for uploads, flush metrics, end the run with ``status``."""
    parts, tracker = prep.parts, prep.tracker
    trainer = parts.trainer
    result.epochs, result.steps = trainer.current_epoch, trainer.global_step
    prep.view.stop()
    if parts.system_metrics is not None:
        parts.system_metrics.stop()  # its last sample is queued before the run's final flush
    if parts.uploader is not None:
        result.upload_errors = parts.uploader.close()
        result.checkpoints = [f"runs:/{result.run_id}/{p}" for p in _stored_checkpoints(prep)]
        models = parts.checkpoint_sync.models if parts.checkpoint_sync is not None else None
        if models is not None and models.final_id:
            result.logged_model = f"models:/{models.final_id}"
    result.best = {k: float(v) for k, v in _best_values(prep).items()}
    result.status = status
    result.seconds = round(time.monotonic() - started, 2)
    if tracker is not None and (tracker.diverted or prep.settings.tracking.offline):
        result.spool = str(tracker.spool_dir)
    if tracker is not None and tracker.run_id:
        try:
            tracker.end_run(status if status != "FINISHED" or not result.upload_errors else "FINISHED")
        except Exception as e:
            if status == "FINISHED":
                raise
            prep.view.message(scrub(f"could not end the run: {e}"))


def _stored_checkpoints(prep: Prepared) -> list[str]:
    sync = prep.parts.checkpoint_sync
    return sorted(f"{sync.artifact_dir}/{name}" for name in sync.stored) if sync else []


def _best_values(prep: Prepared) -> dict[str, float]:
    from heimdall_cli.tracking import best_key
    from heimdall_cli.training.callbacks import BestMetrics

    for callback in prep.parts.trainer.callbacks:
        if isinstance(callback, BestMetrics):
            return {best_key(k): v for k, v in callback.best.items()}
    return {}
