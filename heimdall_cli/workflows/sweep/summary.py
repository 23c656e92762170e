"""The parent run of a study: its summary (best trial, ``best/…``, counts) and Optuna's plots.

Every worker refreshes it after each trial it finishes; MLflow params cannot change,
so the current best trial's values are tags (``heimdall.sweep.best.<setting>``) until
the study has all its trials, when they are also logged as params (``best.<setting>``).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heimdall_cli.errors import HeimdallError
from heimdall_cli.redact import scrub

if TYPE_CHECKING:
    import optuna

    from heimdall_cli.tracking import Tracker

log = logging.getLogger("heimdall.sweep")
PLOTS = ("optimization_history", "param_importances", "parallel_coordinate")


@dataclass
class Counts:
    """Trials of a study by state."""

    complete: int = 0
    pruned: int = 0
    running: int = 0
    failed: int = 0
    waiting: int = 0

    @property
    def finished(self) -> int:
        """What counts towards ``--trials``: complete and pruned trials."""
        return self.complete + self.pruned


def count_trials(study: optuna.Study) -> Counts:
    from optuna.trial import TrialState

    c = Counts()
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.COMPLETE:
            c.complete += 1
        elif t.state == TrialState.PRUNED:
            c.pruned += 1
        elif t.state == TrialState.RUNNING:
            c.running += 1
        elif t.state == TrialState.FAIL:
            c.failed += 1
        elif t.state == TrialState.WAITING:
            c.waiting += 1
    return c


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The best complete trial (None before the first one completes)."""
    try:
        return study.best_trial
    except ValueError:
        return None


@dataclass
class ParentRun:
    """This worker's handle on the study's parent run."""

    tracker: Tracker
    run_id: str
    summary_key: str  # e.g. best/val_loss
    plots_interval_s: float
    _last_plots: float = field(default_factory=time.monotonic)  # first plots one interval in, and at the end
    skipped_plots: dict[str, str] = field(default_factory=dict)

    def refresh(self, study: optuna.Study, *, final: bool = False) -> None:
        """Best trial, ``best/…``, counts; plots when due. Failures are warnings, never the sweep's end."""
        try:
            self._summary(study, final=final)
        except HeimdallError as e:
            log.warning(scrub(f"could not update the sweep's parent run {self.run_id}: {e.message}"))
        now = time.monotonic()
        if final or now - self._last_plots >= self.plots_interval_s:
            self._last_plots = now
            try:
                self._plots(study)
            except HeimdallError as e:
                log.warning(scrub(f"could not upload the sweep's plots: {e.message}"))

    def _summary(self, study: optuna.Study, *, final: bool) -> None:
        counts = count_trials(study)
        tracker = self.tracker
        tracker.start_run(run_id=self.run_id)  # attach (other workers write to it too); detached below
        metrics = {"sweep/finished": counts.finished, "sweep/complete": counts.complete,
                   "sweep/pruned": counts.pruned, "sweep/failed": counts.failed}
        best = best_trial(study)
        tags: dict[str, Any] = {"heimdall.sweep.finished": counts.finished}
        if best is not None and best.value is not None:
            metrics[self.summary_key] = float(best.value)
            tags.update({"heimdall.sweep.best_trial": best.number, "heimdall.sweep.best_value": repr(best.value),
                         "heimdall.sweep.best_run_id": best.user_attrs.get("heimdall.run_id", "")})
            tags.update({f"heimdall.sweep.best.{k}": v for k, v in best.params.items()})
        tracker.set_tags(tags)
        tracker.log_metrics(metrics, step=counts.finished)
        if final and best is not None:
            params = {f"best.{k}": v for k, v in best.params.items()}
            params.update({"best.trial": best.number, "best.value": best.value})
            with contextlib.suppress(HeimdallError):  # another worker logged the same final params first
                tracker.log_params(params)
        tracker.close()

    def _plots(self, study: optuna.Study) -> None:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as ovm

        complete = count_trials(study).complete
        makers = {"optimization_history": ovm.plot_optimization_history,
                  "param_importances": ovm.plot_param_importances,
                  "parallel_coordinate": ovm.plot_parallel_coordinate}
        with tempfile.TemporaryDirectory(prefix="heimdall-sweep-plots-") as tmp:
            written = 0
            for name, make in makers.items():
                if name == "param_importances" and complete < 2:
                    self.skipped_plots[name] = "needs 2 complete trials"
                    continue
                if complete < 1:
                    self.skipped_plots[name] = "needs a complete trial"
                    continue
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # matplotlib on a one-valued axis, experimental plots
                        ax = make(study)
                    figure = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
                    figure.set_size_inches(9, 5.5)
                    figure.tight_layout()
                    figure.savefig(Path(tmp) / f"{name}.png", dpi=90)
                    plt.close(figure)
                    written += 1
                    self.skipped_plots.pop(name, None)
                except Exception as e:  # e.g. importances of a one-dimensional or constant study
                    self.skipped_plots[name] = scrub(f"{type(e).__name__}: {e}".splitlines()[0])
                    plt.close("all")
            if written:
                self.tracker.log_artifacts(tmp, "plots", run_id=self.run_id)
        if self.skipped_plots:
            self.tracker.set_tags({f"heimdall.sweep.plot.{k}": f"skipped: {v}"[:250]
                                   for k, v in self.skipped_plots.items()}, run_id=self.run_id)

    def end(self, status: str = "FINISHED") -> None:
        """End the parent run: the study has all its trials."""
        self.tracker.start_run(run_id=self.run_id)
        self.tracker.end_run(status)
