"""``TrackerLogger``: the Lightning logger that feeds both MLflow and the progress view.

There is exactly one MLflow run per training: this logger never creates runs; it
writes into the tracker's run. Only global rank 0 holds a tracker; on other ranks
every method is a no-op (Lightning's ``rank_zero_only``).
"""

from __future__ import annotations

import contextlib
from argparse import Namespace
from typing import TYPE_CHECKING, Any

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from heimdall_cli.training.progress import ProgressView

if TYPE_CHECKING:
    from heimdall_cli.tracking import Tracker
    from heimdall_cli.training.checkpoints import CheckpointCost
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
        folder_syncs: dict[str, CheckpointSync] | None = None,
        cost: CheckpointCost | None = None,
    ) -> None:
        super().__init__()
        self.tracker = tracker
        self.view = view or ProgressView()
        self._run_id = run_id or (tracker.run_id if tracker else None)
        self._save_dir = save_dir
        # On resume: the last step already stored per metric, so replayed steps are not duplicated.
        self.skip_until = dict(skip_until or {})
        self.checkpoints = checkpoints
        # Checkpoint callbacks that save elsewhere (time/step ones): their own sync, by local folder.
        self.folder_syncs = dict(folder_syncs or {})
        self.cost = cost
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
        if self.cost is not None:
            self.cost.finished()
        sync = self.folder_syncs.get(str(getattr(checkpoint_callback, "dirpath", "")), self.checkpoints)
        if sync is not None:
            sync.sync(checkpoint_callback)

    @rank_zero_only
    def flush(self, timeout: float = 10.0) -> None:
        """Send the metrics logged so far (before a checkpoint); an outage only delays them."""
        if self.tracker is not None:
            with contextlib.suppress(Exception):  # queued points stay queued; the checkpoint matters more
                self.tracker.flush(timeout)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Metrics are flushed by ``fit`` before the run ends; nothing to do per stage."""
