"""``TrialPruning``: report the per-epoch validation metric to a sweep and stop the trial when told.

The callback knows nothing of the sweep engine: it gets ``report(value, step) -> prune?``
(the sweep wires Optuna's ``trial.report`` / ``trial.should_prune`` into it). The value is
read from ``trainer.callback_metrics`` at the end of each validation, the same value the
:class:`~heimdall_cli.training.logger.TrackerLogger` sent to MLflow in that epoch. Under
DDP only global rank 0 reports; its decision is broadcast and every rank stops at the
same epoch boundary (Lightning's ``should_stop``, as early stopping does).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import lightning as L
from lightning.pytorch.callbacks import Callback

ReportFn = Callable[[float, int], bool]


class TrialPruning(Callback):
    """Feed ``monitor`` to ``report`` after every validation; stop training when it says prune."""

    def __init__(self, monitor: str, report: ReportFn | None, mode: str = "min") -> None:
        self.monitor = monitor
        self.report = report  # None on ranks other than 0
        self.mode = mode
        self.pruned = False
        self.pruned_at: int | None = None
        self.best: float | None = None
        self.reported = 0

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        prune = False
        if trainer.is_global_zero:
            value = trainer.callback_metrics.get(self.monitor)
            if value is not None:
                v = float(value)
                better = self.best is None or (v < self.best if self.mode == "min" else v > self.best)
                if not math.isnan(v) and better:
                    self.best = v
                step = trainer.current_epoch + 1  # epochs done: Hyperband's resource
                self.reported += 1
                prune = bool(self.report(v, step)) if self.report is not None else False
        if trainer.world_size > 1:
            prune = bool(trainer.strategy.broadcast(prune, src=0))
        if prune:
            self.pruned, self.pruned_at = True, trainer.current_epoch + 1
            trainer.should_stop = True
