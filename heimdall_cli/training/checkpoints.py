"""Checkpoints beside the top-k: every N seconds or N steps (mid-epoch), and what saving costs.

Lightning's ``ModelCheckpoint`` does the saving (``train_time_interval``,
``every_n_train_steps``); each kind keeps its newest file only, in its own folder
(``checkpoints/time``, ``checkpoints/steps``), uploaded in the background like the
top-k ones. :class:`CheckpointCost` sends the metrics logged so far before each
save (a checkpoint never holds a step the tracking store lacks, so a resume after
``kill -9`` leaves no gap), adds up the seconds the training loop spent on it and logs
the total as ``system/checkpoint_seconds`` (and the count as ``system/checkpoints``).
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

COST_KEYS = ("system/checkpoint_seconds", "system/checkpoints")


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
    """Seconds spent writing checkpoints: from the state being gathered to the file written.

    ``started`` is called by Lightning (``on_save_checkpoint``), ``finished`` by the logger
    once the checkpoint callback has written the file; the totals are logged once per step.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.count = 0
        self._t0: float | None = None
        self._pending = False

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
        self.seconds += time.perf_counter() - self._t0
        self.count += 1
        self._t0 = None
        self._pending = True

    def _log(self, trainer: L.Trainer) -> None:
        if self._pending and trainer.is_global_zero and trainer.logger is not None:
            trainer.logger.log_metrics({COST_KEYS[0]: self.seconds, COST_KEYS[1]: float(self.count)},
                                       step=trainer.global_step)
        self._pending = False

    # After every save of a step has happened: the next batch, or the end of training.
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._log(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "count": self.count}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.seconds = float(state_dict.get("seconds", 0.0))
        self.count = int(state_dict.get("count", 0))
