"""``TrackerLogger``: the Lightning logger that feeds both MLflow and the progress view.

There is exactly one MLflow run per training: this logger never creates runs; it
writes into the tracker's run. Only global rank 0 holds a tracker; on other ranks
every method is a no-op (Lightning's ``rank_zero_only``).
"""

from __future__ import annotations

from argparse import Namespace
from typing import TYPE_CHECKING, Any

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from heimdall_cli.training.progress import ProgressView

if TYPE_CHECKING:
    from heimdall_cli.tracking import Tracker
    from heimdall_cli.training.uploads import CheckpointSync


class TrackerLogger(Logger):
    """Send Lightning's metrics to the tracker and, in the same call, to the progress view."""

    def __init__(
        self,
        tracker: Tracker | None,
        view: ProgressView | None = None,
        *,
        run_id: str | None = None,
        save_dir: str | None = None,
        skip_until: dict[str, int] | None = None,
        checkpoints: CheckpointSync | None = None,
    ) -> None:
        super().__init__()
        self.tracker = tracker
        self.view = view or ProgressView()
        self._run_id = run_id or (tracker.run_id if tracker else None)
        self._save_dir = save_dir
        # On resume: the last step already stored per metric, so replayed steps are not duplicated.
        self.skip_until = dict(skip_until or {})
        self.checkpoints = checkpoints
        self.logged_points = 0

    @property
    def name(self) -> str:
        return "heimdall"

    @property
    def version(self) -> str:
        return self._run_id or "untracked"

    @property
    def save_dir(self) -> str | None:
        return self._save_dir

    @property
    def experiment(self) -> Tracker | None:
        return self.tracker

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        """Ignored: heimdall logs the resolved settings as params when the run starts."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        step = int(step or 0)
        values = {k: float(v) for k, v in metrics.items() if k != "epoch" and step > self.skip_until.get(k, -1)}
        if not values:
            return
        if self.tracker is not None:
            self.tracker.log_metrics(values, step=step)
        self.logged_points += len(values)
        self.view.metrics(values, step)

    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        if self.checkpoints is not None:
            self.checkpoints.sync(checkpoint_callback)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Metrics are flushed by ``fit`` before the run ends; nothing to do per stage."""
