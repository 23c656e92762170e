"""What training tells whoever watches it: the progress-view interface (silent by default).

The :class:`~heimdall_cli.training.logger.TrackerLogger` calls ``view.metrics(values, step)``
in the same call that queues ``values`` for MLflow, so a view shows exactly what is in
the tracking store (names, values, steps). Counters (epoch, batch) come from a Lightning
callback. The views that print (Rich, plain lines) belong to the command line:
:mod:`heimdall_cli.cli.progress`.
"""

from __future__ import annotations


class ProgressView:
    """No output; the command line's views override these."""

    def start(self, total_epochs: int, batches_per_epoch: int, run_id: str | None) -> None:
        """Training begins."""

    def batch(self, epoch: int, batch: int, step: int) -> None:
        """A training batch finished."""

    def metrics(self, values: dict[str, float], step: int) -> None:
        """Values were just logged to the tracker at ``step``."""

    def epoch_end(self, epoch: int) -> None:
        """An epoch (including validation) finished."""

    def message(self, text: str) -> None:
        """A warning or status line; without a progress display it goes to the log (stderr)."""
        import logging

        logging.getLogger("heimdall").warning(text)

    def stop(self) -> None:
        """Training ended."""
