"""Progress views of ``heimdall train``, on stderr: a live Rich display, or timestamped plain lines.

They implement :class:`~heimdall_cli.training.progress.ProgressView`, so they show exactly
the metrics the logger sends to MLflow (same names, values and steps).
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from heimdall_cli.training.progress import ProgressView

Mode = Literal["auto", "rich", "plain", "none"]


def format_value(value: float) -> str:
    """How every view prints a metric value (6 significant digits)."""
    return f"{value:.6g}"


class PlainView(ProgressView):
    """Timestamped lines for log files: every ``interval`` seconds and at each epoch end."""

    def __init__(self, interval: float = 30.0, stream: TextIO | None = None) -> None:
        self.interval = interval
        self.stream = stream or sys.stderr
        self.latest: dict[str, tuple[float, int]] = {}
        self._last_print = 0.0
        self._epoch = self._batch = self._step = 0
        self._epochs = self._batches = 0

    def _line(self, text: str) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        self.stream.write(f"{stamp} {text}\n")
        self.stream.flush()

    def _status(self) -> str:
        values = " ".join(f"{k}={format_value(v)}@{s}" for k, (v, s) in sorted(self.latest.items()))
        return (f"epoch {self._epoch + 1}/{self._epochs} batch {self._batch + 1}/{self._batches} "
                f"step {self._step} {values}").rstrip()

    def start(self, total_epochs: int, batches_per_epoch: int, run_id: str | None) -> None:
        self._epochs, self._batches = total_epochs, batches_per_epoch
        self._last_print = time.monotonic()
        self._line(f"training started: run {run_id or '(not tracked)'}, {total_epochs} epoch(s), "
                   f"{batches_per_epoch} batches per epoch")

    def batch(self, epoch: int, batch: int, step: int) -> None:
        self._epoch, self._batch, self._step = epoch, batch, step
        if time.monotonic() - self._last_print >= self.interval:
            self._last_print = time.monotonic()
            self._line(self._status())

    def metrics(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.latest[key] = (value, step)

    def epoch_end(self, epoch: int) -> None:
        self._epoch = epoch
        self._last_print = time.monotonic()
        self._line(f"epoch {epoch + 1} done: " + self._status())

    def message(self, text: str) -> None:
        self._line(text)

    def stop(self) -> None:
        self._line("training stopped: " + self._status())


class RichView(ProgressView):
    """A live Rich display on a terminal: progress bars plus the values just logged."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.latest: dict[str, tuple[float, int]] = {}
        self._live: Any = None
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}

    def _render(self) -> Any:
        from rich.console import Group
        from rich.table import Table

        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        table.add_column("metric")
        table.add_column("value", justify="right")
        table.add_column("step", justify="right")
        for key, (value, step) in sorted(self.latest.items()):
            table.add_row(key, format_value(value), str(step))
        return Group(self._progress, table)

    def start(self, total_epochs: int, batches_per_epoch: int, run_id: str | None) -> None:
        from rich.live import Live
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), console=self.console)
        self._tasks["epoch"] = self._progress.add_task("epochs", total=total_epochs)
        self._tasks["batch"] = self._progress.add_task("batches", total=batches_per_epoch)
        self.console.print(f"run [bold]{run_id or '(not tracked)'}[/bold]")
        self._live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
        self._live.start()

    def batch(self, epoch: int, batch: int, step: int) -> None:
        if self._progress is not None:
            self._progress.update(self._tasks["batch"], completed=batch + 1,
                                  description=f"epoch {epoch + 1} batches")

    def metrics(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.latest[key] = (value, step)
        if self._live is not None:
            self._live.update(self._render())

    def epoch_end(self, epoch: int) -> None:
        if self._progress is not None:
            self._progress.update(self._tasks["epoch"], completed=epoch + 1)

    def message(self, text: str) -> None:
        self.console.print(text)

    def stop(self) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.stop()
            self._live = None


def make_view(mode: Mode, interval: float = 30.0) -> ProgressView:
    """The view for ``--progress``: auto is Rich on a terminal, plain lines otherwise."""
    if mode == "auto":
        mode = "rich" if sys.stderr.isatty() else "plain"
    if mode == "rich":
        return RichView()
    if mode == "plain":
        return PlainView(interval)
    return ProgressView()
