"""Checkpoints beside the top-k: every N seconds or N steps (mid-epoch), and what saving costs.

Lightning's ``ModelCheckpoint`` does the saving (``train_time_interval``,
``every_n_train_steps``); each kind keeps its newest file only, in its own folder
(``checkpoints/time``, ``checkpoints/steps``), uploaded in the background like the
top-k ones. :class:`CheckpointCost` sends the metrics logged so far before each
save (a checkpoint never holds a step the tracking store lacks, so a resume after
``kill -9`` leaves no gap) and logs the seconds the training loop spent on the saves of
each step as ``perf/checkpoint_seconds`` (their sum over the run is what checkpoints cost).
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

if TYPE_CHECKING:
    from heimdall_cli.settings import Settings

COST_KEY = "perf/checkpoint_seconds"


def interval_checkpoints(settings: Settings, run_dir: Path) -> dict[str, ModelCheckpoint]:
    """The time- and step-based checkpoints the settings ask for, by artifact folder."""
    t = settings.training
    out: dict[str, ModelCheckpoint] = {}
    common: dict[str, Any] = {"filename": "epoch{epoch:03d}-step{step:06d}", "auto_insert_metric_name": False,
                              "monitor": None, "save_top_k": 1, "save_last": False,
                              "save_on_train_epoch_end": False}
    if t.checkpoint_every_s > 0:
        out["checkpoints/time"] = ModelCheckpoint(dirpath=run_dir / "checkpoints" / "time",
                                                  train_time_interval=timedelta(seconds=t.checkpoint_every_s),
                                                  **common)
    if t.checkpoint_every_n_steps > 0:
        out["checkpoints/steps"] = ModelCheckpoint(dirpath=run_dir / "checkpoints" / "steps",
                                                   every_n_train_steps=t.checkpoint_every_n_steps, **common)
    return out


class CheckpointCost(Callback):
    """Seconds the training loop spent on checkpoints: sending queued metrics, gathering the state, writing it.

    ``on_save_checkpoint`` (Lightning) starts the clock, ``finished`` (the logger, once a checkpoint
    callback has written its file) stops it. The seconds of one step's saves are logged once, at
    that step. No state of its own goes into the checkpoint: the top-k file and ``last.ckpt`` of one
    step stay byte-identical (stored once, see uploads.py).
    """

    def __init__(self) -> None:
        self.total = 0.0  # this session's seconds, all saves
        self._pending = 0.0  # seconds of saves not logged yet
        self._t0: float | None = None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        self._t0 = time.perf_counter()
        flush = getattr(trainer.logger, "flush", None)
        if trainer.is_global_zero and flush is not None:
            flush()

    def finished(self) -> None:
        """A ModelCheckpoint's file is written (called by the logger's ``after_save_checkpoint``)."""
        if self._t0 is None:
            return
        seconds = time.perf_counter() - self._t0
        self._t0 = None
        self.total += seconds
        self._pending += seconds

    def _log(self, trainer: L.Trainer) -> None:
        if self._pending and trainer.is_global_zero and trainer.logger is not None:
            trainer.logger.log_metrics({COST_KEY: self._pending}, step=trainer.global_step)
        self._pending = 0.0

    # After every save of a step has happened: the next batch, or the end of training.
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._log(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer)
