"""heimdall's own Lightning callbacks (the rest are Lightning's: checkpoint, early stop, LR)."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from heimdall_cli.training.progress import ProgressView


class ProgressCounters(Callback):
    """Feeds epoch and batch counters to the progress view (metric values come from the logger)."""

    def __init__(self, view: ProgressView) -> None:
        self.view = view

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            batches = trainer.num_training_batches
            epochs = trainer.max_epochs or 0
            if trainer.max_steps and trainer.max_steps > 0 and batches:
                epochs = min(epochs or 10**9, -(-trainer.max_steps // int(batches)))
            logger = trainer.logger
            self.view.start(int(epochs), int(batches) if batches != float("inf") else 0,
                            getattr(logger, "version", None))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.is_global_zero:
            self.view.batch(trainer.current_epoch, args[-1] if args else 0, trainer.global_step)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self.view.epoch_end(trainer.current_epoch)


class StepLoss(Callback):
    """``train/loss`` of every step, at the batch's own (0-based) step, as ``self.log`` would.

    It goes straight to the logger: ``self.log`` costs about 0.7 ms a call in Lightning's
    result bookkeeping, 2 % of a quickstart step on a CPU, and nothing monitors this value.
    A callback, not the module's hook: Lightning runs it before the checkpoint callbacks, so a
    checkpoint saved at this batch's end already counts its logged loss.
    """

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, *args: Any) -> None:
        if trainer.logger is not None and isinstance(outputs, dict) and "loss" in outputs:
            trainer.logger.log_metrics({"train/loss": float(outputs["loss"])}, step=trainer.global_step - 1)


class BestMetrics(Callback):
    """Keeps ``best/<metric>`` summaries (e.g. ``best/val_loss``) current after every validation.

    MLflow orders runs by a metric's latest value; the summary makes "best run"
    mean the best value reached, even for a run that was killed mid-way.
    """

    def __init__(self, monitors: dict[str, str]) -> None:
        self.monitors = monitors  # metric -> "min" | "max"
        self.best: dict[str, float] = {}

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or trainer.logger is None:
            return
        from heimdall_cli.tracking import best_key

        improved = {}
        for metric, mode in self.monitors.items():
            value = trainer.callback_metrics.get(metric)
            if value is None:
                continue
            v = float(value)
            old = self.best.get(metric)
            if old is None or (v < old if mode == "min" else v > old):
                self.best[metric] = v
                improved[best_key(metric)] = v
        if improved:
            trainer.logger.log_metrics(improved, step=trainer.global_step)

    def state_dict(self) -> dict[str, Any]:
        return {"best": dict(self.best)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = dict(state_dict.get("best", {}))


class StopRequested(Exception):
    """Raised inside the loop after a checkpoint was saved on SIGINT/SIGTERM."""

    def __init__(self, signame: str, checkpoint: Path | None) -> None:
        super().__init__(signame)
        self.signame = signame
        self.checkpoint = checkpoint


class GracefulStop(Callback):
    """On SIGINT/SIGTERM: save ``last.ckpt`` at the next batch boundary and stop with :class:`StopRequested`.

    Lightning turns a KeyboardInterrupt into ``sys.exit(1)`` and aborts validation on
    SIGTERM (a checkpoint taken then cannot resume cleanly). These handlers replace
    Lightning's while training runs: a running validation finishes, and the stop
    happens when the next training batch would start, after the finished batch's
    metrics have reached the tracker, so the checkpoint counts exactly the logged steps.
    Under DDP the ranks agree on the stop with one boolean reduction per batch.

    SLURM's requeue signal (SIGUSR1, where Lightning's SLURM environment handles it) is
    deferred the same way: at the batch boundary Lightning's own handler runs (it saves
    ``hpc_ckpt_N.ckpt`` and calls ``scontrol requeue``), then training stops. Run inside
    the signal, that handler saves mid-step, and the resumed run logs one step late.
    """

    def __init__(self, checkpoint_path: Path) -> None:
        self.checkpoint_path = checkpoint_path
        self.signame: str | None = None
        self.saved: Path | None = None
        self._previous: dict[int, Any] = {}
        self._requeue: Any = None  # Lightning's SLURM handler, when it installed one

    def install(self) -> None:
        """Install the SIGINT/SIGTERM (and SLURM requeue) handlers (main thread only; elsewhere a no-op)."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
            # ValueError: not the main thread (e.g. tests calling fit from a thread)
            with contextlib.suppress(ValueError):
                current = signal.getsignal(sig)
                if sig == signal.SIGUSR1:
                    if not callable(current) or current == self._handle:
                        continue  # no requeue handler: SIGUSR1 keeps its default
                    self._requeue = current
                previous = signal.signal(sig, self._handle)
                self._previous.setdefault(sig, previous)

    def uninstall(self) -> None:
        """Restore the handlers found by the first :meth:`install`."""
        for sig, handler in self._previous.items():
            with contextlib.suppress(ValueError):
                signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signame is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl+C: stop now
        self.signame = signal.Signals(signum).name

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.install()  # Lightning registered its own SIGTERM handler when fit started

    # Checkpoints are saved where Lightning's own are (train batch end, validation end), so a
    # resume continues at the right step; the stop is raised at the next hook, after the
    # finished batch's metrics have been logged.
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._maybe_save(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._maybe_save(trainer)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._raise_if_saved()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit":
            self._raise_if_saved()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._raise_if_saved()

    def _maybe_save(self, trainer: L.Trainer) -> None:
        if self.saved is not None:
            return
        stop = self.signame is not None
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            self._save(trainer)

    def _raise_if_saved(self) -> None:
        if self.saved is not None:
            raise StopRequested(self.signame or "SIGTERM", self.saved)

    def _save(self, trainer: L.Trainer) -> None:
        if self.signame == "SIGUSR1" and self._requeue is not None:
            self._requeue(signal.SIGUSR1, None)  # Lightning: hpc_ckpt_N.ckpt in default_root_dir, then requeue
            saved = sorted(Path(trainer.default_root_dir).glob("hpc_ckpt_*.ckpt"), key=lambda p: p.stat().st_mtime)
            self.saved = saved[-1] if saved else None
            if self.saved is not None:
                return
        trainer.save_checkpoint(self.checkpoint_path)
        self.saved = self.checkpoint_path

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """Stopped another way (Lightning's SIGTERM outside training, a second Ctrl+C): note the signal."""
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if isinstance(exception, SIGTERMException):
            self.signame = self.signame or "SIGTERM"
        elif isinstance(exception, KeyboardInterrupt):
            self.signame = self.signame or "SIGINT"


class ShareRunId(Callback):
    """Broadcast rank 0's run id so every DDP rank reports the same single run."""

    def __init__(self) -> None:
        self.run_id: str | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        logger = trainer.logger
        local = getattr(logger, "version", None) if trainer.is_global_zero else None
        self.run_id = trainer.strategy.broadcast(local, src=0)


class CompileBackbone(Callback):
    """``training.compile``: the backbone's forward through ``torch.compile`` when fitting starts.

    ``nn.Module.compile`` compiles in place: the parameters and their ``state_dict`` names stay those
    of the eager model, so the checkpoints and the logged model load without torch.compile.
    """

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        backbone = getattr(getattr(pl_module, "net", None), "backbone", None)
        if stage == "fit" and backbone is not None:
            backbone.compile()
