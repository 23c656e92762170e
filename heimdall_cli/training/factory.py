"""The one Lightning trainer factory. ``heimdall train``, the tests and ``bench/`` all use it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

from heimdall_cli.training.callbacks import BestMetrics, GracefulStop, ProgressCounters, ShareRunId, StepLoss
from heimdall_cli.training.checkpoints import CheckpointCost, interval_checkpoints
from heimdall_cli.training.logger import TrackerLogger
from heimdall_cli.training.monitoring import SystemMetrics, Throughput, system_start_step
from heimdall_cli.training.progress import ProgressView
from heimdall_cli.training.uploads import ArtifactUploader, CheckpointSync

if TYPE_CHECKING:
    from heimdall_cli.settings import Settings
    from heimdall_cli.tracking import Tracker

BEST_MONITORS = {"val/loss": "min", "val/error_m_p50": "min"}


@dataclass
class TrainerParts:
    """The trainer and the pieces of it that ``fit`` talks to."""

    trainer: L.Trainer
    logger: TrackerLogger
    checkpoint: ModelCheckpoint
    graceful: GracefulStop
    share: ShareRunId
    uploader: ArtifactUploader | None
    checkpoint_sync: CheckpointSync | None
    run_dir: Path
    system_metrics: SystemMetrics | None = None


def build_trainer(
    settings: Settings,
    tracker: Tracker | None,
    *,
    view: ProgressView | None = None,
    run_dir: Path | None = None,
    skip_until: dict[str, int] | None = None,
    extra_callbacks: list[Any] | None = None,
) -> TrainerParts:
    """Build the Trainer from settings: callbacks, precision, devices, strategy, logger.

    ``tracker`` is None on ranks other than 0 and when tracking is disabled.
    """
    t = settings.training
    view = view or ProgressView()
    run_id = tracker.run_id if tracker else None
    run_dir = run_dir or Path(t.output_dir) / (run_id or "untracked")
    uploader = sync = None
    if tracker is not None:
        uploader = ArtifactUploader(tracker, run_dir / ".staging")
        sync = CheckpointSync(uploader)
    intervals = interval_checkpoints(settings, run_dir)  # every N s / N steps, beside the top-k
    folder_syncs = {str(cb.dirpath): CheckpointSync(uploader, folder) for folder, cb in intervals.items()} \
        if uploader is not None else {}
    cost = CheckpointCost()
    logger = TrackerLogger(tracker, view, run_id=run_id, save_dir=str(run_dir), skip_until=skip_until,
                           checkpoints=sync, folder_syncs=folder_syncs, cost=cost)
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="epoch{epoch:03d}-step{step:06d}",
        auto_insert_metric_name=False,
        monitor=t.monitor,
        mode="min",
        save_top_k=t.save_top_k,
        save_last=True,
    )
    # The checkpoint's own state names last.ckpt from the first save on, so the top-k file and
    # last.ckpt written at the same step are the same bytes (and uploaded once, see uploads.py).
    checkpoint.last_model_path = checkpoint.format_checkpoint_name({}, checkpoint.CHECKPOINT_NAME_LAST)
    if sync is not None and tracker is not None and settings.tracking.log_models:
        from heimdall_cli.training.checkpoint_models import CheckpointModels

        sync.models = CheckpointModels(tracker, uploader, checkpoint)
    graceful = GracefulStop(run_dir / "checkpoints" / "last.ckpt")
    share = ShareRunId()
    callbacks: list[Any] = [StepLoss(), checkpoint, LearningRateMonitor(logging_interval="epoch"),
                            BestMetrics({**BEST_MONITORS, t.monitor: "min"}), ProgressCounters(view), Throughput(),
                            graceful, share, *intervals.values(), cost]
    system = None
    if tracker is not None and settings.tracking.system_metrics:
        system = SystemMetrics(tracker, settings.tracking.system_metrics_interval_s,
                               start_step=system_start_step(skip_until or {}))
        callbacks.append(system)
    if t.early_stopping_patience > 0:
        callbacks.append(EarlyStopping(monitor=t.monitor, mode="min", patience=t.early_stopping_patience,
                                       check_on_train_epoch_end=False))
    if t.compile:
        from heimdall_cli.training.callbacks import CompileBackbone

        callbacks.append(CompileBackbone())
    callbacks.extend(extra_callbacks or [])
    trainer = L.Trainer(
        default_root_dir=run_dir,
        max_epochs=t.epochs,
        max_steps=t.max_steps,
        accelerator=t.accelerator,
        devices=t.device_spec,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,  # type: ignore[arg-type]
        gradient_clip_val=t.grad_clip or None,
        logger=logger,
        callbacks=callbacks,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    return TrainerParts(trainer, logger, checkpoint, graceful, share, uploader, sync, run_dir, system)
