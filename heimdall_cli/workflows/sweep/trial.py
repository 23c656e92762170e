"""One trial: the sampled settings, one ``prepare`` + ``run`` (the same as ``heimdall train``), one child run.

The trial's run is a child of the study's parent run (the standard ``mlflow.parentRunId``
tag) and carries the trial number and sampled values as params. Pruning reads the
per-epoch validation metric that goes to MLflow (:class:`~heimdall_cli.training.pruning.TrialPruning`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from heimdall_cli.backend_errors import translated
from heimdall_cli.errors import ConfigError, HeimdallError, Interrupted, WorkFailed
from heimdall_cli.redact import scrub
from heimdall_cli.workflows.sweep.space import Dimension, apply_values

if TYPE_CHECKING:
    import optuna

    from heimdall_cli.data.dataset import Splits
    from heimdall_cli.settings import Settings
    from heimdall_cli.tracking import Tracker
    from heimdall_cli.training.progress import ProgressView

log = logging.getLogger("heimdall.sweep")
EventFn = Callable[[str], None]
STATE_TAG = "heimdall.sweep.state"


def monitor_of(metric: str) -> tuple[str, str]:
    """(per-epoch metric, its best/… summary) for ``sweep.metric`` (``best/val_loss`` or ``val/loss``)."""
    from heimdall_cli.tracking import best_key

    if metric.startswith("best/val_"):
        monitor = "val/" + metric[len("best/val_"):]
    elif metric.startswith("val/"):
        monitor = metric
    else:
        raise ConfigError(f"sweep.metric {metric!r} is not a validation metric.",
                          "Use a per-epoch val/… metric or its best/… summary, e.g. best/val_loss.")
    return monitor, best_key(monitor)


def data_key(settings: Settings) -> str:
    """Trials whose data settings are equal share one dataset."""
    return json.dumps(settings.data.model_dump(mode="json"), sort_keys=True)


@dataclass
class TrialOutcome:
    """What one trial did (``sweep start/join --json`` lists this worker's)."""

    number: int
    state: str  # complete | pruned | failed | interrupted
    value: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    epochs: int = 0
    seconds: float = 0.0
    error: str | None = None


class Heartbeat:
    """Records the trial's heartbeat in the study while it runs, so a dead worker's trial goes stale."""

    def __init__(self, storage: Any, trial_id: int, interval_s: float) -> None:
        self.storage, self.trial_id, self.interval_s = storage, trial_id, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heimdall-sweep-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception as e:  # an outage: the trial's own tracker reports it; keep beating
                log.debug(scrub(f"heartbeat failed: {e}"))


@dataclass
class TrialContext:
    """What every trial of one worker shares."""

    settings: Settings
    study_name: str
    parent_run_id: str
    dims: list[Dimension]
    storage: Any
    view_factory: Callable[[], ProgressView | None]
    on_event: EventFn
    tracker: Tracker  # for tags on ended runs (the parent run's handle, detached between summaries)
    splits: dict[str, Splits] = field(default_factory=dict)  # by data settings: one dataset per worker


def run_trial(ctx: TrialContext, trial: optuna.trial.Trial) -> TrialOutcome:
    """Train one trial and tell the study how it ended. Raises Interrupted on SIGINT/SIGTERM."""
    from optuna.trial import TrialState

    from heimdall_cli.training.fit import run
    from heimdall_cli.training.prepare import prepare
    from heimdall_cli.training.pruning import TrialPruning

    sweep = ctx.settings.sweep
    monitor, summary = monitor_of(sweep.metric)
    started = time.monotonic()
    outcome = TrialOutcome(trial.number, "failed")
    study = trial.study
    try:
        values = {d.key: d.suggest(trial) for d in ctx.dims}
        outcome.params = values
        ctx.on_event(f"trial {trial.number} started: " + ", ".join(f"{k}={v}" for k, v in values.items()))
        settings = apply_values(ctx.settings, {**values, "training.run_name": f"{ctx.study_name}-trial-{trial.number}"})

        def report(value: float, step: int) -> bool:
            trial.report(value, step)
            return trial.should_prune()

        pruning = TrialPruning(monitor, report, sweep.direction)
        key = data_key(settings)
        prep = prepare(settings, view=ctx.view_factory(), splits=ctx.splits.get(key), callbacks=[pruning])
        ctx.splits = {key: prep.splits}  # the next trial with the same data reuses it
        tracker = prep.tracker
        if tracker is not None and tracker.run_id:
            outcome.run_id = tracker.run_id
            trial.set_user_attr("heimdall.run_id", tracker.run_id)
            tracker.set_tags({"mlflow.parentRunId": ctx.parent_run_id, "heimdall.sweep.study": ctx.study_name,
                              "heimdall.sweep.trial": trial.number, "mlflow.source.name": "heimdall sweep",
                              STATE_TAG: "running"})
            tracker.log_params({"sweep.trial": trial.number, "sweep.study": ctx.study_name,
                                **{f"sweep.sampled.{k}": v for k, v in values.items()}})
        result = run(prep, evaluate=sweep.evaluate)
        outcome.epochs = result.epochs
        best = result.best.get(summary) if sweep.direction == "min" else None
        outcome.value = best if best is not None else pruning.best
        with translated(f"Reporting trial {trial.number} to the study"):
            if pruning.pruned:
                outcome.state = "pruned"
                study.tell(trial, state=TrialState.PRUNED)
            elif outcome.value is None:
                outcome.state, outcome.error = "failed", f"no {monitor} was logged"
                study.tell(trial, state=TrialState.FAIL)
            else:
                outcome.state = "complete"
                study.tell(trial, outcome.value)
    except Interrupted:
        outcome.state = "interrupted"
        _fail(study, trial)
        _tag(ctx, outcome)
        raise
    except (KeyboardInterrupt, SystemExit):
        outcome.state = "interrupted"
        _fail(study, trial)
        _tag(ctx, outcome)
        raise
    except WorkFailed as e:  # a diverged trial: the study goes on
        outcome.error = e.message
        _fail(study, trial)
    except BaseException as e:
        outcome.error = scrub(str(e).splitlines()[0] if str(e) else type(e).__name__)
        _fail(study, trial)
        _tag(ctx, outcome)
        raise
    finally:
        outcome.seconds = round(time.monotonic() - started, 2)
    _tag(ctx, outcome)
    return outcome


def _fail(study: optuna.Study, trial: optuna.trial.Trial) -> None:
    from optuna.trial import TrialState

    with contextlib.suppress(Exception):  # already told, or the storage is gone: the heartbeat expires it
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def _tag(ctx: TrialContext, outcome: TrialOutcome) -> None:
    """The trial's end state on its (already ended) run: complete, pruned, failed or interrupted."""
    if not outcome.run_id:
        return
    try:
        tags = {STATE_TAG: outcome.state}
        if outcome.value is not None:
            tags["heimdall.sweep.value"] = repr(outcome.value)
        ctx.tracker.set_tags(tags, run_id=outcome.run_id)
    except HeimdallError as e:
        log.warning(scrub(f"could not tag run {outcome.run_id} {outcome.state}: {e.message}"))
