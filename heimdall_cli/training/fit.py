"""``fit(settings) -> FitResult``: the training run that the CLI, tests and benchmarks call.

:func:`prepare` validates and builds everything (data, model, tracker run, trainer);
:func:`run` trains, tests, evaluates the baselines, logs the model and plots, waits
for uploads and ends the run: FINISHED, FAILED on an exception, KILLED on SIGINT/SIGTERM.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from heimdall_cli.errors import ConfigError, Interrupted, NotFound, WorkFailed
from heimdall_cli.redact import scrub

if TYPE_CHECKING:
    from heimdall_cli.data.dataset import Splits
    from heimdall_cli.settings import Settings
    from heimdall_cli.tracking import Tracker
    from heimdall_cli.training.factory import TrainerParts
    from heimdall_cli.training.model import LocalizationLitModule
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
    output_dir: str = ""
    epochs: int = 0
    steps: int = 0
    seconds: float = 0.0
    upload_errors: list[str] = field(default_factory=list)
    spool: str | None = None  # where the run is, when offline or diverted by a long outage


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


def fit(settings: Settings, *, resume_run_id: str | None = None, view: ProgressView | None = None) -> FitResult:
    """Train with ``settings``; one MLflow run per call (or the resumed one)."""
    return run(prepare(settings, resume_run_id=resume_run_id, view=view))


def is_global_zero() -> bool:
    """True in the process that talks to MLflow (global rank 0), known before the Trainer exists."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def prepare(settings: Settings, *, resume_run_id: str | None = None, view: ProgressView | None = None) -> Prepared:
    """Validate, then build data, model, tracker run and trainer (nothing trains yet)."""
    import lightning as L

    from heimdall_cli.data.dataset import build_splits
    from heimdall_cli.training.backbone import resolve_name
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
    model = build_model(settings)  # before the data: missing weights fail in seconds
    splits = build_splits(settings.data, settings.storage)

    tracker = None
    skip_until: dict[str, int] = {}
    if settings.tracking.enabled and is_global_zero():
        tracker, skip_until = _start_run(settings, splits, resume_run_id, view)
    elif resume_run_id and not settings.tracking.enabled:
        raise ConfigError("--resume needs tracking enabled.", "Drop tracking.enabled=false.")
    try:
        run_dir = Path(t.output_dir) / (tracker.run_id if tracker else (resume_run_id or "untracked"))
        parts = build_trainer(settings, tracker, view=view, run_dir=run_dir, skip_until=skip_until)
        resume_ckpt = _find_resume_checkpoint(tracker, run_dir) if resume_run_id else None
    except BaseException:
        if tracker is not None:
            tracker.end_run("FAILED")
        raise
    loaders = _loaders(settings, splits)
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


def build_model(settings: Settings) -> LocalizationLitModule:
    """The LightningModule for the configured backbone."""
    from heimdall_cli.data.receivers import RECEIVERS
    from heimdall_cli.training.model import LocalizationLitModule

    t = settings.training
    return LocalizationLitModule(
        t.backbone,
        pretrained=t.pretrained,
        pretrained_path=t.pretrained_path,
        in_chans=len(RECEIVERS),
        freeze_backbone=t.freeze_backbone,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        warmup_fraction=t.warmup_fraction,
    )


def model_summary(settings: Settings) -> dict[str, Any]:
    """What ``--dry-run`` shows about the model (built without loading weights)."""
    from lightning.pytorch.utilities.model_summary import ModelSummary

    from heimdall_cli.data.receivers import RECEIVERS
    from heimdall_cli.training.backbone import resolve_name

    t, w = settings.training, settings.data.world
    model = build_model(settings.model_copy(update={"training": t.model_copy(update={"pretrained": False})}))
    summary = ModelSummary(model, max_depth=2)
    weights = "random init"
    if t.pretrained:
        weights = f"pretrained from {t.pretrained_path}" if t.pretrained_path else "pretrained (Hugging Face hub)"
    return {
        "backbone": resolve_name(t.backbone),
        "weights": weights,
        "frozen backbone": t.freeze_backbone,
        "input": f"[batch, {len(RECEIVERS)} receivers, {w.n_mels} mels, {w.n_frames} frames]",
        "output": "east/north (km) and per-axis sigma (km); logged model outputs lat, lon, sigma_m",
        "parameters": summary.total_parameters,
        "trainable parameters": summary.trainable_parameters,
        "size (MB)": round(summary.model_size, 1),
    }


def _start_run(settings: Settings, splits: Splits, resume_run_id: str | None,
               view: ProgressView | None = None) -> tuple[Tracker, dict[str, int]]:
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
        tracker.set_tags({"heimdall.resumed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        return tracker, skip_until
    tags = {"heimdall.version": __version__, "backbone": t.backbone, "data.source": settings.data.source,
            "mlflow.source.name": "heimdall train"}
    tracker.start_run(t.run_name, tags=tags)
    try:
        tracker.log_params(run_params(settings))
        ident = splits.identity
        tracker.log_params({"data.name": ident.name, "data.digest": ident.digest, "data.samples": ident.samples,
                            "data.train_samples": len(splits.train)})
        tracker.log_dataset(ident.name, ident.digest, ident.source,
                            profile={"samples": ident.samples, "kind": ident.kind})
        tracker.log_dict(to_display_dict(settings), "config/resolved.yaml")
        tracker.log_dict({"norm": splits.norm.to_json(), "origin": list(splits.origin)}, "config/normalisation.json")
    except BaseException:
        tracker.end_run("FAILED")
        raise
    return tracker, {}


def _find_resume_checkpoint(tracker: Tracker | None, run_dir: Path) -> Path:
    """``last.ckpt`` of the run: local if this box has it, else the run's checkpoints from the store."""
    folder = run_dir / "checkpoints"
    local = folder / "last.ckpt"
    if local.is_file():
        return local
    if tracker is None:
        raise NotFound(f"No checkpoint to resume from at {local}.")
    names = [p for p, _ in tracker.list_artifacts("checkpoints")]
    if "checkpoints/last.ckpt" not in names:
        raise NotFound(f"Run '{tracker.run_id}' has no checkpoints/last.ckpt to resume from.",
                       "Start a new run instead of --resume.")
    # All of them: ModelCheckpoint keeps managing (and evicting) the top-k after the resume.
    tracker.download_artifacts("checkpoints", run_dir)
    return local


def _loaders(settings: Settings, splits: Splits) -> dict[str, Any]:
    import torch
    from torch.utils.data import DataLoader

    t = settings.training
    common: dict[str, Any] = {"batch_size": t.batch_size, "num_workers": t.num_workers,
                              "persistent_workers": t.num_workers > 0}
    generator = torch.Generator().manual_seed(t.seed)
    if len(splits.train) < t.batch_size:
        raise ConfigError(f"training.batch_size {t.batch_size} is larger than the train split "
                          f"({len(splits.train)} samples).", "Lower --batch-size or use more data.samples.")
    return {
        "train": DataLoader(splits.train, shuffle=True, drop_last=True, generator=generator, **common),
        "val": DataLoader(splits.val, shuffle=False, **common),
        "test": DataLoader(splits.test, shuffle=False, **common),
    }


def run(prep: Prepared) -> FitResult:
    """Train, test, log results, end the run."""
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
        _evaluate(prep, result)
        status = "FINISHED"
    except (StopRequested, SIGTERMException, KeyboardInterrupt) as e:
        parts.graceful.uninstall()
        checkpoint = parts.graceful.saved
        if checkpoint is not None and checkpoint.exists() and parts.checkpoint_sync is not None:
            parts.checkpoint_sync.upload_file(checkpoint)
        _finish(prep, result, "KILLED", started)
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
    if parts.uploader is not None:
        result.upload_errors = parts.uploader.close()
        result.checkpoints = [f"runs:/{result.run_id}/{p}" for p in _stored_checkpoints(prep)]
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
    return sorted(f"{sync.artifact_dir}/{name}" for name in sync._stored) if sync else []


def _best_values(prep: Prepared) -> dict[str, float]:
    from heimdall_cli.tracking.tracker import best_key
    from heimdall_cli.training.callbacks import BestMetrics

    for callback in prep.parts.trainer.callbacks:
        if isinstance(callback, BestMetrics):
            return {best_key(k): v for k, v in callback.best.items()}
    return {}


def _evaluate(prep: Prepared, result: FitResult) -> None:
    """Test the best checkpoint, evaluate the baselines, log the model and the plots."""
    parts, splits = prep.parts, prep.splits
    trainer = parts.trainer
    best = parts.checkpoint.best_model_path
    ckpt = "best" if best and Path(best).is_file() else None
    metrics = trainer.test(prep.model, prep.loaders["test"], ckpt_path=ckpt, verbose=False)
    result.test = {k: float(v) for k, v in (metrics[0] if metrics else {}).items()}
    if not trainer.is_global_zero:
        return
    pred_latlon = _predict_latlon(prep)
    baselines = _baselines(splits)
    from heimdall_cli.data.baselines import errors_m

    true = splits.test.tx_latlon
    extra = {f"test/baseline_{name}_error_m_p50": float(np.median(errors_m(pred, true)))
             for name, pred in baselines.items()}
    parts.logger.log_metrics(extra, step=trainer.global_step)
    result.test.update(extra)
    if prep.tracker is None or parts.uploader is None:
        return
    _log_plots(prep, pred_latlon, baselines)
    result.model_uri = _log_model(prep)


def _predict_latlon(prep: Prepared) -> np.ndarray:
    import torch

    model = prep.model.eval()
    outs = []
    with torch.no_grad():
        for batch in prep.loaders["test"]:
            mu, _ = model(batch["x"].to(model.device))
            outs.append(mu.float().cpu().numpy())
    return prep.splits.to_latlon(np.concatenate(outs))


def _baselines(splits: Splits) -> dict[str, np.ndarray]:
    from heimdall_cli.data.baselines import centre_baseline, rssi_multilateration

    n = len(splits.test)
    out = {"centre": centre_baseline(n, splits.receivers)}
    if splits.world is not None:
        out["rssi"] = rssi_multilateration(splits.test.rx_power_dbm, splits.world, splits.receivers)
    return out


def _log_plots(prep: Prepared, pred_latlon: np.ndarray, baselines: dict[str, np.ndarray]) -> None:
    from heimdall_cli.data.baselines import errors_m
    from heimdall_cli.training.plots import error_cdf, prediction_map

    true = prep.splits.test.tx_latlon
    folder = prep.parts.run_dir / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    curves = {"model": errors_m(pred_latlon, true)}
    curves.update({f"{k} baseline": errors_m(v, true) for k, v in baselines.items()})
    receivers = [(r.name, r.lat, r.lon) for r in prep.splits.receivers]
    for path in (error_cdf(curves, folder / "error_cdf.png"),
                 prediction_map(true, pred_latlon, receivers, folder / "prediction_map.png")):
        prep.parts.uploader.upload(path, "plots")


def _log_model(prep: Prepared) -> str:
    import torch

    from heimdall_cli.training.export import OUTPUT_COLUMNS, DeployedLocalizer

    splits = prep.splits
    deployed = DeployedLocalizer(prep.model.net.cpu().eval(), splits.norm.mean, splits.norm.std, splits.origin,
                                 splits.label_scale_m).eval()
    raw = np.stack([splits.test.store.spec(int(i)) for i in splits.test.indices[:2]]).astype(np.float32)
    with torch.no_grad():
        deployed(torch.from_numpy(raw))
    folder = prep.parts.run_dir / "model"
    shutil.rmtree(folder, ignore_errors=True)
    prep.tracker.save_pytorch_model(
        deployed, folder, input_example=raw,
        metadata={"outputs": list(OUTPUT_COLUMNS), "input": "log-mel dB [batch, receivers, n_mels, n_frames]",
                  "receivers": [r.name for r in splits.receivers]},
    )
    # Through the upload queue, like checkpoints: it waits out an outage instead of failing the run.
    prep.parts.uploader.upload(folder, "model", snapshot=False)
    return f"runs:/{prep.tracker.run_id}/model"
