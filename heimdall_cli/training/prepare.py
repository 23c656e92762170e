"""Preparing a training: validate, then build data, model, tracker run, trainer and loaders.

Nothing trains here; :func:`heimdall_cli.training.fit.run` does. Failures come early
and typed: an unknown backbone or bad option exits 2, a dead backend 3, missing
pretrained weights 2, all before the data is generated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heimdall_cli.errors import ConfigError
from heimdall_cli.training.resume import adopt_stored, checkpoint_step, find_resume_checkpoint

if TYPE_CHECKING:
    from heimdall_cli.data.dataset import Splits
    from heimdall_cli.settings import Settings
    from heimdall_cli.tracking import Tracker
    from heimdall_cli.training.factory import TrainerParts
    from heimdall_cli.training.model import LocalizationLitModule
    from heimdall_cli.training.progress import ProgressView


@dataclass
class Prepared:
    """Everything built before the first step."""

    settings: Settings
    splits: Splits
    model: LocalizationLitModule
    tracker: Tracker | None
    parts: TrainerParts
    view: ProgressView
    resume_ckpt: Path | None = None
    loaders: dict[str, Any] = field(default_factory=dict)


def is_global_zero() -> bool:
    """True in the process that talks to MLflow (global rank 0), known before the Trainer exists."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def prepare(settings: Settings, *, resume_run_id: str | None = None, view: ProgressView | None = None,
            splits: Splits | None = None, callbacks: list[Any] | None = None,
            tags: dict[str, str] | None = None) -> Prepared:
    """Validate, then build data, model, tracker run and trainer (nothing trains yet).

    ``splits``: data already built from ``settings.data`` (benchmarks reuse it across runs).
    ``callbacks``: extra Lightning callbacks (a sweep's pruning).
    ``tags``: set on the run, new or resumed (a job key, what a resume changed).
    """
    import lightning as L

    from heimdall_cli.data.dataset import build_splits
    from heimdall_cli.training.backbone import resolve_name, weights_source
    from heimdall_cli.training.factory import build_trainer
    from heimdall_cli.training.progress import ProgressView as NoView

    _quiet_lightning()
    t = settings.training
    resolve_name(t.backbone)  # unknown backbone: exit 2 before any work
    if settings.tracking.enabled and not settings.tracking.offline and is_global_zero():
        from heimdall_cli.tracking.probe import probe_tracking

        probe_tracking(settings.tracking, settings.tracking.query_timeout_s)  # a dead backend: exit 3 in seconds
    view = view or NoView()
    L.seed_everything(t.seed, workers=True, verbose=False)
    if t.cpu_threads:
        import torch

        torch.set_num_threads(t.cpu_threads)
    weights_source(t.backbone, t.pretrained, t.pretrained_path)  # before the data: missing weights fail in seconds
    splits = splits or build_splits(settings.data, settings.storage,
                                    features_explicit=any(k.startswith("data.features.") for k in settings.sources))
    model = build_model(settings, splits)

    tracker = None
    skip_until: dict[str, int] = {}
    if settings.tracking.enabled and is_global_zero():
        tracker, skip_until = _start_run(settings, splits, resume_run_id, view, tags or {})
    elif resume_run_id and not settings.tracking.enabled:
        raise ConfigError("--resume needs tracking enabled.", "Drop tracking.enabled=false.")
    try:
        run_dir = Path(t.output_dir) / (tracker.run_id if tracker else (resume_run_id or "untracked"))
        parts = build_trainer(settings, tracker, view=view, run_dir=run_dir, skip_until=skip_until,
                              extra_callbacks=callbacks)
        resume_ckpt = find_resume_checkpoint(tracker, run_dir) if resume_run_id else None
        if resume_ckpt is not None and is_global_zero():
            view.message(f"Resuming from {resume_ckpt.relative_to(run_dir)} at step {checkpoint_step(resume_ckpt)}.")
        if resume_run_id and tracker is not None and parts.checkpoint_sync is not None:
            adopt_stored(tracker, {"checkpoints": parts.checkpoint_sync, **{
                sync.artifact_dir: sync for sync in parts.logger.folder_syncs.values()}}, run_dir)
        if parts.checkpoint_sync is not None and parts.checkpoint_sync.models is not None:
            from heimdall_cli.training.checkpoint_models import split_refs

            parts.checkpoint_sync.models.datasets = split_refs(splits)
            if resume_run_id and tracker is not None:
                parts.checkpoint_sync.models.adopt(tracker.logged_models())
    except BaseException:
        if tracker is not None:
            tracker.end_run("FAILED")
        raise
    loaders = make_loaders(settings, splits)
    return Prepared(settings, splits, model, tracker, parts, view, resume_ckpt, loaders)


def _quiet_lightning() -> None:
    """Lightning sets its loggers to INFO on import; its chatter is not heimdall's output."""
    import logging
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Advice that does not apply: epoch metrics are computed from all_gather'ed predictions,
    # checkpoint folders are per run, and the loaders are rebuilt deterministically on resume.
    for message in (r".*sync_dist=True.*", r".*isinstance\(treespec, LeafSpec\).*",
                    r".*Checkpoint directory .* exists and is not empty.*", r".*dataloader is not resumable.*",
                    r".*does not have many workers.*"):
        warnings.filterwarnings("ignore", message=message)


def build_model(settings: Settings, splits: Splits | None = None) -> LocalizationLitModule:
    """The LightningModule for the configured backbone, shaped (and normalised) for ``splits``' data."""
    from heimdall_cli.training.model import LocalizationLitModule

    t = settings.training
    if splits is not None:
        shape = {"slots": splits.slots, "bands": splits.layout.bands, "frames": splits.layout.frames,
                 "origin": splits.origin, "stats": splits.stats.to_json(), "extent_km": splits.extent_km}
        if t.mixture_components:
            import numpy as np

            from heimdall_cli.training.outputs import anchors_of

            labels_km = splits.train.y_km.astype(np.float64) * splits.label_scale_m / 1000.0
            shape["anchors_km"] = anchors_of(labels_km, t.mixture_components, seed=t.seed).tolist()
    else:  # what the settings' synthetic world would give
        from heimdall_cli.data.receivers import NETWORK_CENTRE
        from heimdall_cli.data.synth import slots

        w, f = settings.data.world, settings.data.features
        bands, frames = (w.n_mels, w.n_frames) if w.version == 1 else (f.bands, f.frames)
        shape = {"slots": slots(w), "bands": bands, "frames": frames, "origin": NETWORK_CENTRE}
        if t.mixture_components:  # where the anchors go is known only from data; their number shapes the model
            shape["anchors_km"] = [[0.0, 0.0]] * t.mixture_components
    return LocalizationLitModule(
        t.backbone,
        pretrained=t.pretrained,
        pretrained_path=t.pretrained_path,
        freeze_backbone=t.freeze_backbone,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        warmup_fraction=t.warmup_fraction,
        architecture=t.architecture,
        receiver_dropout=t.receiver_dropout,
        ensemble=t.ensemble,
        head_hidden=t.head_width,
        **shape,
    )


def model_summary(settings: Settings) -> dict[str, Any]:
    """What ``--dry-run`` shows about the model (built without loading weights or data)."""
    from lightning.pytorch.utilities.model_summary import ModelSummary

    from heimdall_cli.data.packing import TAIL
    from heimdall_cli.training.backbone import resolve_name

    t = settings.training
    model = build_model(settings.model_copy(update={"training": t.model_copy(update={"pretrained": False})}))
    summary = ModelSummary(model, max_depth=2)
    weights = "random init"
    if t.pretrained:
        weights = f"pretrained from {t.pretrained_path}" if t.pretrained_path else "pretrained (Hugging Face hub)"
    net = model.net
    receivers = "any number of receivers" if t.architecture == "set" else f"{net.slots} receiver slots"
    return {
        "architecture": t.architecture,
        "backbone": resolve_name(t.backbone),
        "weights": weights,
        "frozen backbone": t.freeze_backbone,
        "input": f"[batch, {receivers}, {net.bands} bands x {net.frames} frames + {TAIL} values]",
        "output": "east/north (km) and per-axis sigma (km); logged model outputs lat, lon, sigma_m",
        "parameters": summary.total_parameters,
        "trainable parameters": summary.trainable_parameters,
        "size (MB)": round(summary.model_size, 1),
    }


def _start_run(settings: Settings, splits: Splits, resume_run_id: str | None,
               view: ProgressView | None = None, extra_tags: dict[str, str] | None = None,
               ) -> tuple[Tracker, dict[str, int]]:
    from heimdall_cli import __version__
    from heimdall_cli.settings import run_params, to_display_dict
    from heimdall_cli.tracking import open_tracker

    tracker = open_tracker(settings, patient=True)
    tracker.on_event = view.message if view is not None else None
    t = settings.training
    if resume_run_id:
        record = tracker.get_run(resume_run_id)
        tracker.start_run(run_id=resume_run_id)
        skip_until = {key: max(s for s, _, _ in tracker.metric_history(key)) for key in record.metrics}
        tracker.set_tags({"heimdall.resumed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                          **(extra_tags or {})})
        return tracker, skip_until
    tags = {"heimdall.version": __version__, "backbone": t.backbone, "data.source": settings.data.source,
            "mlflow.source.name": "heimdall train", **(extra_tags or {})}
    tracker.start_run(t.run_name, tags=tags)
    try:
        tracker.log_params(run_params(settings))
        ident = splits.identity
        tracker.log_params({"data.name": ident.name, "data.digest": ident.digest,
                            "data.dataset_samples": ident.samples, "data.train_samples": len(splits.train),
                            "data.unlabelled_samples": splits.unlabelled, "data.dataset_features": splits.features})
        from heimdall_cli.training.checkpoint_models import log_splits

        log_splits(tracker, splits)  # train, validation and test as the run's dataset inputs
        tracker.log_dict(to_display_dict(settings), "config/resolved.yaml")
        tracker.log_dict({"stats": splits.stats.to_json(), "origin": list(splits.origin), "features": splits.features},
                         "config/normalisation.json")
    except BaseException:
        tracker.end_run("FAILED")
        raise
    return tracker, {}


def make_loaders(settings: Settings, splits: Splits) -> dict[str, Any]:
    """train (shuffled, seeded, last partial batch dropped), val and test DataLoaders."""
    import torch
    from torch.utils.data import DataLoader

    from heimdall_cli.data.batch import collate

    t = settings.training
    # Batches are read in one pass (RFDataset.__getitems__) and, for a GPU, staged in pinned memory.
    common: dict[str, Any] = {"batch_size": t.batch_size, "num_workers": t.num_workers,
                              "persistent_workers": t.num_workers > 0, "collate_fn": collate,
                              "pin_memory": t.accelerator != "cpu" and torch.cuda.is_available()}
    generator = torch.Generator().manual_seed(t.seed)
    if len(splits.train) < t.batch_size:
        raise ConfigError(f"training.batch_size {t.batch_size} is larger than the train split "
                          f"({len(splits.train)} samples).", "Lower --batch-size or use more data.samples.")
    return {
        "train": DataLoader(splits.train, shuffle=True, drop_last=True, generator=generator, **common),
        "val": DataLoader(splits.val, shuffle=False, **common),
        "test": DataLoader(splits.test, shuffle=False, **common),
    }
